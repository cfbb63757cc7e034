//! tessera-device: where kernels meet hardware.
//!
//! It owns the [`Device`] trait (capabilities, compile, memory, launch, event timing) and its
//! implementations: [`cuda`] over cudarc (the driver and NVRTC, both loaded at run time, so a
//! binary built here runs on machines with or without a GPU), [`hip`] over the HIP runtime and
//! hiprtc (loaded at run time with `libloading` the same way), and [`sim`], a deterministic
//! simulated device with an analytic cost model for CI, always labelled as simulated. It also
//! owns the on-disk [`module_cache`] and [`cuda::nvrtc_compile`], which compiles CUDA source on
//! machines that have only libnvrtc (no driver, no GPU).
//!
//! It depends only on `tessera-dsl` (targets, caps, the kernel ABI) among Tessera's crates; it
//! must not depend on code generation, templates, the tuner or the cache database.
//!
//! Beside one-shot launches (`launch`, `time`: each waits for its kernel) the trait offers what
//! an executor needs: created [`Stream`]s, asynchronous launches and copies of [`BufferView`]s
//! on them, stream capture into replayable [`Graph`]s, and [`Event`]s for timing. The CUDA and
//! simulated devices implement all of it (the simulated one records captures and replays them
//! through its emulations); the HIP device implements streams, copies and events, not capture.
//!
//! Ownership rules: a [`Buffer`] or [`Module`] is a plain handle; the device that made it owns
//! the memory or code and releases it on [`Device::free`] / [`Device::unload`], or, for all that
//! is left, when the device is dropped.

pub mod compile;
pub mod config;
pub mod cuda;
pub mod error;
pub mod hip;
pub mod hipcc;
pub mod info;
pub mod launch;
pub mod memory;
pub mod module_cache;
pub mod sim;
pub mod stream;
pub mod timing;

pub use compile::{
    CacheOutcome, CompileReport, CompileRequest, Emulation, ImageFormat, Module, ModuleReport,
    ResourceUsage,
};
pub use config::DeviceConfig;
pub use error::DeviceError;
pub use info::DeviceInfo;
pub use launch::{
    check_args, pack_args, resolve_tensor_maps, ArgSlot, ArgValue, Cost, Launch, ResolvedTensorMap,
};
pub use memory::{Buffer, BufferView};
pub use sim::{SimDevice, SimMemory};
pub use stream::{Event, Graph, Stream};
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

    /// Create a stream (non-blocking with respect to the legacy default stream).
    fn create_stream(&self) -> Result<Stream, DeviceError> {
        Err(unsupported(self, "streams"))
    }

    /// Wait for the stream's work, then release it.
    fn destroy_stream(&self, stream: Stream) -> Result<(), DeviceError> {
        let _ = stream;
        Err(unsupported(self, "streams"))
    }

    /// Enqueue one launch on `stream` and return without waiting (checked like
    /// [`Device::launch`]). While the stream is capturing, the launch is recorded, not run.
    fn launch_async(
        &self,
        stream: &Stream,
        module: &Module,
        launch: &Launch,
        args: &[ArgValue],
    ) -> Result<(), DeviceError> {
        let _ = (stream, module, launch, args);
        Err(unsupported(self, "asynchronous launches"))
    }

    /// Copy host bytes into a view, ordered on `stream` after its earlier work; returns once
    /// the host slice may be reused. `data.len()` must equal the view's. Not while capturing.
    fn upload_view(
        &self,
        stream: &Stream,
        view: &BufferView,
        data: &[u8],
    ) -> Result<(), DeviceError> {
        let _ = (stream, view, data);
        Err(unsupported(self, "stream copies"))
    }

    /// Copy a view to the host after `stream`'s earlier work; returns with `out` filled.
    fn download_view(
        &self,
        stream: &Stream,
        view: &BufferView,
        out: &mut [u8],
    ) -> Result<(), DeviceError> {
        let _ = (stream, view, out);
        Err(unsupported(self, "stream copies"))
    }

    /// Wait for the stream's work; a kernel fault surfaces here as a `Driver` error.
    fn synchronize_stream(&self, stream: &Stream) -> Result<(), DeviceError> {
        let _ = stream;
        Err(unsupported(self, "streams"))
    }

    /// Start recording the stream's launches into a graph instead of running them.
    fn begin_capture(&self, stream: &Stream) -> Result<(), DeviceError> {
        let _ = stream;
        Err(unsupported(self, "graph capture"))
    }

    /// Stop recording and instantiate what was recorded.
    fn end_capture(&self, stream: &Stream) -> Result<Graph, DeviceError> {
        let _ = stream;
        Err(unsupported(self, "graph capture"))
    }

    /// Replay a captured graph on `stream`, asynchronously.
    fn launch_graph(&self, graph: &Graph, stream: &Stream) -> Result<(), DeviceError> {
        let _ = (graph, stream);
        Err(unsupported(self, "graph capture"))
    }

    fn destroy_graph(&self, graph: Graph) -> Result<(), DeviceError> {
        let _ = graph;
        Err(unsupported(self, "graph capture"))
    }

    /// Record a new event on `stream` after its earlier work.
    fn record_event(&self, stream: &Stream) -> Result<Event, DeviceError> {
        let _ = stream;
        Err(unsupported(self, "events"))
    }

    /// Milliseconds of device time between two recorded events (waits for `end`).
    fn elapsed_ms(&self, start: &Event, end: &Event) -> Result<f64, DeviceError> {
        let _ = (start, end);
        Err(unsupported(self, "events"))
    }

    fn destroy_event(&self, event: Event) -> Result<(), DeviceError> {
        let _ = event;
        Err(unsupported(self, "events"))
    }
}

fn unsupported<D: Device + ?Sized>(device: &D, what: &str) -> DeviceError {
    DeviceError::Unsupported {
        message: format!("{} does not offer {what}", device.info().name),
    }
}
