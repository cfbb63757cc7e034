//! Element types: what a tile holds. Inputs are f16 or bf16, accumulation is f32.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An element type of a global, shared or register tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F16,
    BF16,
    F32,
}

impl DType {
    /// Every dtype Tessera knows, in a fixed order.
    pub const ALL: [DType; 3] = [DType::F16, DType::BF16, DType::F32];

    /// The short name used in kernel names, shape files and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::F32 => "f32",
        }
    }

    /// Bytes per element.
    pub fn size_bytes(self) -> u32 {
        match self {
            DType::F16 | DType::BF16 => 2,
            DType::F32 => 4,
        }
    }

    /// Whether this dtype can feed a tensor-core / matrix-core MMA atom.
    pub fn is_mma_input(self) -> bool {
        matches!(self, DType::F16 | DType::BF16)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A dtype name that is not one of `f16`, `bf16`, `f32`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dtype `{0}`; use f16, bf16 or f32")]
pub struct UnknownDType(pub String);

impl FromStr for DType {
    type Err = UnknownDType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "f16" | "fp16" | "half" => Ok(DType::F16),
            "bf16" => Ok(DType::BF16),
            "f32" | "fp32" | "float" => Ok(DType::F32),
            other => Err(UnknownDType(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in DType::ALL {
            assert_eq!(d.name().parse::<DType>().unwrap(), d);
        }
        let err = "f64".parse::<DType>().unwrap_err();
        assert!(err.to_string().contains("use f16, bf16 or f32"));
    }
}
