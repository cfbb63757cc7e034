//! Element types as `dtypes!` names them, and the MMA rules they must follow.

/// Mirrors `::tessera_dsl::DType` (the macro cannot depend on tessera-dsl: it depends on us).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    F16,
    BF16,
    F32,
}

pub const ALL: [DType; 3] = [DType::F16, DType::BF16, DType::F32];

impl DType {
    pub fn parse(name: &str) -> Option<DType> {
        ALL.into_iter().find(|d| d.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::F32 => "f32",
        }
    }

    /// The `::tessera_dsl::DType` variant.
    pub fn variant(self) -> &'static str {
        match self {
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::F32 => "F32",
        }
    }

    pub fn size_bytes(self) -> i64 {
        match self {
            DType::F16 | DType::BF16 => 2,
            DType::F32 => 4,
        }
    }

    /// Whether tensor cores / matrix cores take it as an MMA input.
    pub fn is_mma_input(self) -> bool {
        matches!(self, DType::F16 | DType::BF16)
    }
}

/// The validated `dtypes!` block.
#[derive(Debug, Clone)]
pub struct DTypes {
    pub input: Vec<DType>,
    pub acc: DType,
    pub output: Vec<DType>,
}

impl DTypes {
    /// Smallest element of any dtype `role` may have: shared-memory sizes are lower bounds.
    pub fn min_size(&self, role: crate::op::Role) -> i64 {
        let list = match role {
            crate::op::Role::Input => &self.input,
            crate::op::Role::Output => &self.output,
        };
        list.iter().map(|d| d.size_bytes()).min().unwrap_or(2)
    }
}
