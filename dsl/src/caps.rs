//! Targets (an instruction-set generation) and device capabilities (what one GPU offers).
//!
//! A [`Target`] is what code is generated and compiled for; [`DeviceCaps`] is what a real or
//! simulated device reports, and what `Template::validate` checks a config against.

use crate::dtype::DType;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// GPU vendor: selects the code generator's dialect and the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    Nvidia,
    Amd,
}

/// A compilation target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Target {
    /// NVIDIA Ampere (A100): `mma.sync`, `ldmatrix`, `cp.async`.
    #[serde(rename = "sm_80")]
    Sm80,
    /// NVIDIA Hopper (H100/H200) with arch-specific features; runs the sm_80 path today.
    #[serde(rename = "sm_90a")]
    Sm90a,
    /// AMD CDNA2 (MI250): MFMA, LDS, wavefront 64.
    #[serde(rename = "gfx90a")]
    Gfx90a,
    /// AMD CDNA3 (MI300): MFMA, LDS, wavefront 64.
    #[serde(rename = "gfx942")]
    Gfx942,
}

impl Target {
    pub const ALL: [Target; 4] = [Target::Sm80, Target::Sm90a, Target::Gfx90a, Target::Gfx942];

    pub fn name(self) -> &'static str {
        match self {
            Target::Sm80 => "sm_80",
            Target::Sm90a => "sm_90a",
            Target::Gfx90a => "gfx90a",
            Target::Gfx942 => "gfx942",
        }
    }

    pub fn vendor(self) -> Vendor {
        match self {
            Target::Sm80 | Target::Sm90a => Vendor::Nvidia,
            Target::Gfx90a | Target::Gfx942 => Vendor::Amd,
        }
    }

    /// Capabilities of the flagship part of this target, for compile-only work where no
    /// device of the target is present.
    pub fn nominal_caps(self) -> DeviceCaps {
        let nvidia_atoms = vec![
            MmaAtom::new(16, 8, 16, DType::F16),
            MmaAtom::new(16, 8, 16, DType::BF16),
        ];
        // CDNA's MFMA: 16x16x16 is the default atom, 32x32x8 the one a kernel may ask for
        // (`mma ... atom 32`): the same flops per instruction group with half the operand
        // traffic per flop
        let amd_atoms = vec![
            MmaAtom::new(16, 16, 16, DType::F16),
            MmaAtom::new(16, 16, 16, DType::BF16),
            MmaAtom::new(32, 32, 8, DType::F16),
            MmaAtom::new(32, 32, 8, DType::BF16),
        ];
        match self {
            Target::Sm80 => DeviceCaps {
                name: "NVIDIA A100 (nominal)".into(),
                target: self,
                sm_count: 108,
                smem_per_block: 166_912,
                regs_per_thread: 255,
                regs_per_sm: 65_536,
                max_threads_per_block: 1024,
                warp_size: 32,
                mma_atoms: nvidia_atoms,
                peak_tflops_f16: 312.0,
                mem_bandwidth_gbs: 2039.0,
                l2_bytes: 40 << 20,
            },
            Target::Sm90a => DeviceCaps {
                name: "NVIDIA H100 SXM (nominal)".into(),
                target: self,
                sm_count: 132,
                smem_per_block: 232_448,
                regs_per_thread: 255,
                regs_per_sm: 65_536,
                max_threads_per_block: 1024,
                warp_size: 32,
                mma_atoms: nvidia_atoms,
                peak_tflops_f16: 989.0,
                mem_bandwidth_gbs: 3350.0,
                l2_bytes: 50 << 20,
            },
            Target::Gfx90a => DeviceCaps {
                name: "AMD Instinct MI250 (nominal, one GCD)".into(),
                target: self,
                sm_count: 104,
                smem_per_block: 65_536,
                regs_per_thread: 512,
                regs_per_sm: 131_072,
                max_threads_per_block: 1024,
                warp_size: 64,
                mma_atoms: amd_atoms,
                peak_tflops_f16: 181.0,
                mem_bandwidth_gbs: 1638.0,
                l2_bytes: 8 << 20,
            },
            Target::Gfx942 => DeviceCaps {
                name: "AMD Instinct MI300X (nominal)".into(),
                target: self,
                sm_count: 304,
                smem_per_block: 65_536,
                regs_per_thread: 512,
                regs_per_sm: 131_072,
                max_threads_per_block: 1024,
                warp_size: 64,
                mma_atoms: amd_atoms,
                peak_tflops_f16: 1307.0,
                mem_bandwidth_gbs: 5300.0,
                l2_bytes: 4 << 20,
            },
        }
    }

    /// The largest shared memory (LDS) per block of any supported target, in bytes.
    pub fn max_smem_any_target() -> u32 {
        Target::ALL
            .iter()
            .map(|t| t.nominal_caps().smem_per_block)
            .max()
            .unwrap_or(0)
    }
}

/// A GPU model by name (what `--gpu` takes): its target and its datasheet capabilities.
/// Models of one target differ in memory bandwidth and size (an H200 is an H100 with HBM3e),
/// so rooflines and simulated timings come from the model, never from the target alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuModel {
    A100,
    H100,
    H200,
    Mi250,
    Mi300,
}

impl GpuModel {
    pub const ALL: [GpuModel; 5] = [
        GpuModel::H100,
        GpuModel::H200,
        GpuModel::A100,
        GpuModel::Mi250,
        GpuModel::Mi300,
    ];

    /// The name `--gpu` takes.
    pub fn key(self) -> &'static str {
        match self {
            GpuModel::A100 => "a100",
            GpuModel::H100 => "h100",
            GpuModel::H200 => "h200",
            GpuModel::Mi250 => "mi250",
            GpuModel::Mi300 => "mi300",
        }
    }

    pub fn parse(key: &str) -> Option<GpuModel> {
        GpuModel::ALL
            .into_iter()
            .find(|m| m.key().eq_ignore_ascii_case(key))
    }

    pub fn target(self) -> Target {
        match self {
            GpuModel::A100 => Target::Sm80,
            GpuModel::H100 | GpuModel::H200 => Target::Sm90a,
            GpuModel::Mi250 => Target::Gfx90a,
            GpuModel::Mi300 => Target::Gfx942,
        }
    }

    /// What the driver's device name of this model contains (`NVIDIA H200` → `H200`).
    pub fn name_fragment(self) -> &'static str {
        match self {
            GpuModel::A100 => "A100",
            GpuModel::H100 => "H100",
            GpuModel::H200 => "H200",
            GpuModel::Mi250 => "MI250",
            GpuModel::Mi300 => "MI300",
        }
    }

    /// The model a device name (as the driver reports it, or a simulated device's) names.
    pub fn from_device_name(name: &str) -> Option<GpuModel> {
        let upper = name.to_uppercase();
        GpuModel::ALL
            .into_iter()
            .find(|m| upper.contains(m.name_fragment()))
    }

    /// Datasheet capabilities: the target's limits, this model's SMs, peak, bandwidth and L2.
    pub fn caps(self) -> DeviceCaps {
        let mut caps = self.target().nominal_caps();
        if self == GpuModel::H200 {
            // H200 SXM: the H100's die (132 SMs, 989 dense f16 TFLOP/s), 4.8 TB/s of HBM3e
            caps.name = "NVIDIA H200 SXM (nominal)".into();
            caps.mem_bandwidth_gbs = 4800.0;
        }
        caps
    }

    /// Datasheet memory capacity (one GCD of an MI250).
    pub fn memory_bytes(self) -> u64 {
        match self {
            GpuModel::A100 | GpuModel::H100 => 80 << 30,
            GpuModel::H200 => 141 << 30,
            GpuModel::Mi250 => 64 << 30,
            GpuModel::Mi300 => 192 << 30,
        }
    }

    /// The model whose figures [`Target::nominal_caps`] gives.
    pub fn reference_of(target: Target) -> GpuModel {
        match target {
            Target::Sm80 => GpuModel::A100,
            Target::Sm90a => GpuModel::H100,
            Target::Gfx90a => GpuModel::Mi250,
            Target::Gfx942 => GpuModel::Mi300,
        }
    }

    /// Where [`GpuModel::caps`]'s peak (dense f16) and bandwidth come from, for plot legends
    /// (the figures are Tessera's table of datasheets, this file).
    pub fn caps_source(self) -> String {
        let c = self.caps();
        format!(
            "{} datasheet: {} TFLOP/s, {} TB/s",
            self.name_fragment(),
            c.peak_tflops_f16,
            c.mem_bandwidth_gbs / 1000.0
        )
    }
}

impl fmt::Display for GpuModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A target name that Tessera cannot generate code for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown target `{0}`; use sm_80, sm_90a, gfx90a or gfx942")]
pub struct UnknownTarget(pub String);

impl FromStr for Target {
    type Err = UnknownTarget;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Target::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| UnknownTarget(s.to_string()))
    }
}

/// One matrix-multiply-accumulate instruction shape: `m×n×k` with the given input dtype, f32
/// accumulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MmaAtom {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub input: DType,
}

impl MmaAtom {
    pub const fn new(m: u32, n: u32, k: u32, input: DType) -> Self {
        MmaAtom { m, n, k, input }
    }
}

/// What one device offers a kernel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceCaps {
    pub name: String,
    pub target: Target,
    pub sm_count: u32,
    /// Largest shared memory (LDS) one block may use, bytes (opt-in maximum).
    pub smem_per_block: u32,
    pub regs_per_thread: u32,
    pub regs_per_sm: u32,
    pub max_threads_per_block: u32,
    /// 32 on NVIDIA, 64 on AMD CDNA.
    pub warp_size: u32,
    pub mma_atoms: Vec<MmaAtom>,
    /// Dense fp16 tensor throughput, TFLOP/s (for rooflines and the simulated device).
    pub peak_tflops_f16: f64,
    /// DRAM bandwidth, GB/s.
    pub mem_bandwidth_gbs: f64,
    pub l2_bytes: u64,
}

impl DeviceCaps {
    /// The MMA atom for an input dtype, if the device has one: the first listed (the default).
    pub fn atom_for(&self, input: DType) -> Option<MmaAtom> {
        self.mma_atoms.iter().copied().find(|a| a.input == input)
    }

    /// The MMA atom for an input dtype with `m` rows (a kernel's `mma ... atom M`), or the
    /// default one when `m` is `None`; `None` if the device has no such atom.
    pub fn atom_with(&self, input: DType, m: Option<u32>) -> Option<MmaAtom> {
        match m {
            None => self.atom_for(input),
            Some(m) => self
                .mma_atoms
                .iter()
                .copied()
                .find(|a| a.input == input && a.m == m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_of_one_target_differ_where_their_datasheets_do() {
        let (h100, h200) = (GpuModel::H100.caps(), GpuModel::H200.caps());
        assert_eq!((h100.target, h200.target), (Target::Sm90a, Target::Sm90a));
        assert_eq!(h100.sm_count, h200.sm_count);
        assert_eq!(h100.mem_bandwidth_gbs, 3350.0);
        assert_eq!(h200.mem_bandwidth_gbs, 4800.0);
        assert_ne!(h100.name, h200.name);
        for m in GpuModel::ALL {
            assert_eq!(GpuModel::parse(m.key()), Some(m));
            assert_eq!(m.caps().target, m.target());
            assert_eq!(GpuModel::from_device_name(&m.caps().name), Some(m), "{m}");
        }
        assert_eq!(
            GpuModel::from_device_name("NVIDIA H200"),
            Some(GpuModel::H200)
        );
        assert_eq!(
            GpuModel::from_device_name("simulated NVIDIA H100 SXM (nominal)"),
            Some(GpuModel::H100)
        );
        assert_eq!(GpuModel::from_device_name("NVIDIA GeForce RTX 4090"), None);
        assert!(GpuModel::H200.caps_source().contains("4.8 TB/s"));
        for t in Target::ALL {
            assert_eq!(GpuModel::reference_of(t).caps(), t.nominal_caps());
        }
    }

    #[test]
    fn targets_parse_and_name() {
        for t in Target::ALL {
            assert_eq!(t.name().parse::<Target>().unwrap(), t);
            let caps = t.nominal_caps();
            assert_eq!(caps.target, t);
            assert!(caps.atom_for(DType::F16).is_some());
        }
        let e = "sm_75".parse::<Target>().unwrap_err().to_string();
        assert!(e.contains("sm_80, sm_90a, gfx90a or gfx942"), "{e}");
        assert_eq!(Target::max_smem_any_target(), 232_448);
    }
}
