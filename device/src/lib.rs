//! tessera-device: where kernels meet hardware.
//!
//! It owns the [`Device`] trait (capabilities, compile, memory, launch, event timing) and its
//! implementations: [`cuda`] over cudarc (the driver and NVRTC, both loaded at run time, so a
//! binary built here runs on machines with or without a GPU), and [`sim`], a deterministic
//! simulated device with an analytic cost model for CI, always labelled as simulated. It also
//! owns the on-disk [`module_cache`] and [`cuda::nvrtc_compile`], which compiles CUDA source on
//! machines that have only libnvrtc (no driver, no GPU).
//!
//! It depends only on `tessera-dsl` (targets, caps, the kernel ABI) among Tessera's crates; it
//! must not depend on code generation, templates, the tuner or the cache database.
//!
//! Ownership rules: a [`Buffer`] or [`Module`] is a plain handle; the device that made it owns
//! the memory or code and releases it on [`Device::free`] / [`Device::unload`], or, for all that
//! is left, when the device is dropped.

pub mod compile;
pub mod config;
pub mod cuda;
pub mod error;
pub mod hipcc;
pub mod info;
pub mod launch;
pub mod memory;
pub mod module_cache;
pub mod sim;
pub mod timing;

pub use compile::{
    CacheOutcome, CompileReport, CompileRequest, Emulation, ImageFormat, Module, ModuleReport,
    ResourceUsage,
};
pub use config::DeviceConfig;
pub use error::DeviceError;
pub use info::DeviceInfo;
pub use launch::{check_args, resolve_tensor_maps, ArgValue, Cost, Launch, ResolvedTensorMap};
pub use memory::Buffer;
pub use sim::{SimDevice, SimMemory};
pub use timing::Timing;

use tessera_dsl::DeviceCaps;

/// One GPU (real or simulated). Object-safe and shareable across threads: every method takes
/// `&self` and the implementations serialise their own state.
pub trait Device: Send + Sync {
    /// What the device offers kernels (what `Template::validate` checks configs against).
    fn caps(&self) -> &DeviceCaps;

    /// Name, target, SM count, memory, driver and toolchain versions, and whether it is simulated.
    fn info(&self) -> DeviceInfo;

    /// Compile `req.source` for this device and load `req.kernel_name` from it. The returned
    /// module carries the compile report (registers, spills, static shared memory, seconds)
    /// where the device knows it.
    fn compile(&self, req: &CompileRequest) -> Result<Module, DeviceError>;

    /// Release a module's code. Using the handle afterwards is `UnknownModule`.
    fn unload(&self, module: &Module) -> Result<(), DeviceError>;

    /// Allocate `bytes` of device memory (contents unspecified). Too much is `OutOfMemory`.
    fn alloc(&self, bytes: u64) -> Result<Buffer, DeviceError>;

    /// Release a buffer. Buffers never freed are released when the device is dropped.
    fn free(&self, buffer: Buffer) -> Result<(), DeviceError>;

    /// Copy host bytes into a buffer; `data.len()` must equal the buffer's length.
    fn upload(&self, buffer: &Buffer, data: &[u8]) -> Result<(), DeviceError>;

    /// Copy a buffer to host memory; `out.len()` must equal the buffer's length.
    fn download(&self, buffer: &Buffer, out: &mut [u8]) -> Result<(), DeviceError>;

    /// Set every byte of a buffer (used to poison outputs before a run).
    fn fill(&self, buffer: &Buffer, byte: u8) -> Result<(), DeviceError>;

    /// Run one launch and wait for it, so a fault is reported against the kernel that caused it.
    /// Arguments are checked against the module's ABI first (`ArgMismatch`).
    fn launch(
        &self,
        module: &Module,
        launch: &Launch,
        args: &[ArgValue],
    ) -> Result<(), DeviceError>;

    /// Time a launch: `warmup` untimed runs, then `iters` runs each bracketed by device events,
    /// with L2 flushed before each timed run when `l2_flush` is set. Returns every sample, ms.
    fn time(
        &self,
        module: &Module,
        launch: &Launch,
        args: &[ArgValue],
        warmup: u32,
        iters: u32,
        l2_flush: bool,
    ) -> Result<Timing, DeviceError>;

    /// Wait for all work on the device to finish.
    fn synchronize(&self) -> Result<(), DeviceError>;
}
