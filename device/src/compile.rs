//! Compilation vocabulary shared by every device: what to compile ([`CompileRequest`]), what a
//! compiler produced ([`CompileReport`], [`ResourceUsage`]) and the handle a device returns for
//! a loaded kernel ([`Module`], with its [`ModuleReport`]).
//!
//! This module depends on `tessera-dsl` (targets, the ABI) and on the simulated memory type
//! that an [`Emulation`] works on; it calls no compiler and no driver.

use crate::launch::{ArgValue, Cost};
use crate::sim::SimMemory;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tessera_dsl::ir::Arg;
use tessera_dsl::{Target, TensorMapArg};

/// A CPU stand-in for a kernel on the simulated device: reads and writes the simulated buffers
/// named by the launch arguments. The tuner passes the op's CPU reference, so the simulated
/// device really computes outputs. An `Err` becomes a `Launch` error naming the kernel.
pub type Emulation = Arc<dyn Fn(&mut SimMemory, &[ArgValue]) -> Result<(), String> + Send + Sync>;

/// One kernel to compile.
#[derive(Clone)]
pub struct CompileRequest {
    /// Complete, self-contained source text.
    pub source: String,
    /// The `extern "C"` symbol to load (`Config::kernel_name()`).
    pub kernel_name: String,
    pub target: Target,
    /// Extra compiler options, appended after the device's own (`--gpu-architecture`, `-std`).
    pub options: Vec<String>,
    /// The launch ABI every launch of this kernel is checked against.
    pub abi: Vec<Arg>,
    /// CPU emulation, used only by the simulated device.
    pub emulation: Option<Emulation>,
    /// Work of one launch, used only by the simulated device's timing (a launch may override it).
    pub cost: Option<Cost>,
    /// TMA tensor maps the kernel takes after its ABI arguments, built by the device at each
    /// launch from the ABI values they name.
    pub tensor_maps: Vec<TensorMapArg>,
}

impl CompileRequest {
    pub fn new(
        kernel_name: impl Into<String>,
        source: impl Into<String>,
        target: Target,
        abi: Vec<Arg>,
    ) -> CompileRequest {
        CompileRequest {
            source: source.into(),
            kernel_name: kernel_name.into(),
            target,
            options: Vec::new(),
            abi,
            emulation: None,
            cost: None,
            tensor_maps: Vec::new(),
        }
    }

    pub fn with_tensor_maps(mut self, maps: Vec<TensorMapArg>) -> CompileRequest {
        self.tensor_maps = maps;
        self
    }

    pub fn with_options(mut self, options: Vec<String>) -> CompileRequest {
        self.options = options;
        self
    }

    pub fn with_emulation(mut self, emulation: Emulation) -> CompileRequest {
        self.emulation = Some(emulation);
        self
    }

    pub fn with_cost(mut self, cost: Cost) -> CompileRequest {
        self.cost = Some(cost);
        self
    }
}

impl fmt::Debug for CompileRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompileRequest")
            .field("kernel_name", &self.kernel_name)
            .field("target", &self.target)
            .field("options", &self.options)
            .field("abi", &self.abi)
            .field("source_bytes", &self.source.len())
            .field("emulation", &self.emulation.is_some())
            .field("cost", &self.cost)
            .finish()
    }
}

/// Per-thread and per-block resources of a compiled kernel. `None` where the compiler or driver
/// did not say (the simulated device knows none of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceUsage {
    pub registers: Option<u32>,
    pub spill_store_bytes: Option<u32>,
    pub spill_load_bytes: Option<u32>,
    /// Statically declared shared memory per block, bytes.
    pub static_smem_bytes: Option<u32>,
    /// Stack frame (local memory) per thread, bytes.
    pub stack_frame_bytes: Option<u32>,
}

impl ResourceUsage {
    /// Spill traffic, stores plus loads, when known.
    pub fn spill_bytes(&self) -> Option<u32> {
        match (self.spill_store_bytes, self.spill_load_bytes) {
            (Some(s), Some(l)) => Some(s.saturating_add(l)),
            (Some(s), None) => Some(s),
            (None, Some(l)) => Some(l),
            (None, None) => None,
        }
    }

    /// Fill fields this one lacks from another source (e.g. driver attributes after load).
    pub fn or(self, other: ResourceUsage) -> ResourceUsage {
        ResourceUsage {
            registers: self.registers.or(other.registers),
            spill_store_bytes: self.spill_store_bytes.or(other.spill_store_bytes),
            spill_load_bytes: self.spill_load_bytes.or(other.spill_load_bytes),
            static_smem_bytes: self.static_smem_bytes.or(other.static_smem_bytes),
            stack_frame_bytes: self.stack_frame_bytes.or(other.stack_frame_bytes),
        }
    }
}

/// The kind of code image a compiler produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// Machine code for one real architecture.
    Cubin,
    /// PTX text (NUL-terminated), JIT-compiled by the driver.
    Ptx,
    /// An AMD GPU code object (an ELF from hiprtc, or hipcc's offload bundle holding one),
    /// loaded by `hipModuleLoadData`.
    #[serde(rename = "code_object")]
    CodeObject,
}

/// What a runtime compiler produced for one kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct CompileReport {
    pub kernel: String,
    pub target: Target,
    /// The architecture string given to the compiler (`sm_90a`).
    pub arch: String,
    pub image: Vec<u8>,
    pub format: ImageFormat,
    pub usage: ResourceUsage,
    /// The compiler's log (with `ptxas` verbose output).
    pub log: String,
    /// Wall time of the compile, seconds.
    pub seconds: f64,
    /// Compiler and version, e.g. `nvrtc 13.0`.
    pub toolchain: String,
    /// The full option list the compiler was given.
    pub options: Vec<String>,
}

/// How the on-disk module cache took part in a compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from the cache; nothing was compiled.
    Hit,
    /// Not cached: compiled and stored.
    Miss,
    /// The cached file was unreadable or failed its checksum: compiled again and replaced.
    Corrupt { reason: String },
    /// Compiled, but storing the result failed (the compile itself succeeded).
    StoreFailed { reason: String },
    /// No cache configured (or a device that compiles nothing).
    Disabled,
}

/// What a device reports about a module it loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleReport {
    pub usage: ResourceUsage,
    /// Seconds the compile took when it ran (for a cache hit: the original compile's time).
    pub compile_seconds: f64,
    pub cache: CacheOutcome,
    pub toolchain: String,
    pub log: String,
}

/// A kernel compiled and loaded on one device. A plain handle: the device keeps the code and
/// frees it on [`Device::unload`](crate::Device::unload) or when the device is dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct Module {
    id: u64,
    kernel_name: String,
    target: Target,
    abi: Arc<[Arg]>,
    tensor_maps: Arc<[TensorMapArg]>,
    cost: Option<Cost>,
    report: ModuleReport,
}

impl Module {
    pub(crate) fn new(req: &CompileRequest, report: ModuleReport) -> Module {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Module {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            kernel_name: req.kernel_name.clone(),
            target: req.target,
            abi: req.abi.clone().into(),
            tensor_maps: req.tensor_maps.clone().into(),
            cost: req.cost,
            report,
        }
    }

    /// Process-unique id of this handle.
    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn kernel_name(&self) -> &str {
        &self.kernel_name
    }

    pub fn target(&self) -> Target {
        self.target
    }

    pub fn abi(&self) -> &[Arg] {
        &self.abi
    }

    /// The tensor maps each launch appends after the ABI arguments.
    pub fn tensor_maps(&self) -> &[TensorMapArg] {
        &self.tensor_maps
    }

    pub fn cost(&self) -> Option<Cost> {
        self.cost
    }

    pub fn report(&self) -> &ModuleReport {
        &self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_merges_and_sums_spills() {
        let log = ResourceUsage {
            registers: Some(40),
            spill_store_bytes: Some(8),
            spill_load_bytes: Some(4),
            ..Default::default()
        };
        let driver = ResourceUsage {
            registers: Some(41),
            static_smem_bytes: Some(1024),
            ..Default::default()
        };
        let m = log.or(driver);
        assert_eq!(m.registers, Some(40));
        assert_eq!(m.static_smem_bytes, Some(1024));
        assert_eq!(m.spill_bytes(), Some(12));
        assert_eq!(ResourceUsage::default().spill_bytes(), None);
    }

    #[test]
    fn module_ids_are_unique_and_debug_hides_source() {
        let req = CompileRequest::new(
            "k",
            "extern \"C\" __global__ void k() {}",
            Target::Sm80,
            vec![],
        );
        let report = ModuleReport {
            usage: ResourceUsage::default(),
            compile_seconds: 0.0,
            cache: CacheOutcome::Disabled,
            toolchain: "none".into(),
            log: String::new(),
        };
        let a = Module::new(&req, report.clone());
        let b = Module::new(&req, report);
        assert_ne!(a.id(), b.id());
        assert_eq!(a.kernel_name(), "k");
        let dbg = format!("{req:?}");
        assert!(dbg.contains("source_bytes") && !dbg.contains("__global__"));
    }
}
