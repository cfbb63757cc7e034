//! [`CudaDevice`]: one NVIDIA GPU through the driver API.
//!
//! It compiles with NVRTC for the GPU's own architecture (through the on-disk module cache),
//! loads CUBINs, allocates and copies memory, launches on the legacy default stream and times
//! with CUDA events. For executors it also creates non-blocking streams, enqueues launches and
//! view copies on them without waiting, captures a stream's launches into a CUDA graph
//! (`THREAD_LOCAL` capture mode, instantiated at the end of the capture) and replays it, and
//! records events on streams. `launch` and `time` keep their behaviour: every such launch waits for the kernel, so a fault (an illegal address, say) is
//! reported as a `Launch` error naming the kernel that caused it. A fault poisons the CUDA
//! context for the rest of the process: later calls fail with `Driver` errors, which is why the
//! tuner measures in worker processes it can restart.
//!
//! This module depends on cudarc's driver bindings, the NVRTC front end and the module cache.

use super::driver::{self, call_err, describe};
use super::l2_scrub;
use super::nvrtc;
use super::tensor_map;
use crate::compile::{
    CompileReport, CompileRequest, ImageFormat, Module, ModuleReport, ResourceUsage,
};
use crate::config::DeviceConfig;
use crate::error::DeviceError;
use crate::info::DeviceInfo;
use crate::launch::{
    check_args, pack_args, resolve_tensor_maps, ArgSlot, ArgValue, Launch, ResolvedTensorMap,
};
use crate::memory::{Buffer, BufferView};
use crate::module_cache::ModuleCache;
use crate::stream::{Event, Graph, Stream};
use crate::timing::Timing;
use crate::Device;
use cudarc::driver::result::{self as cu, DriverError};
use cudarc::driver::safe::CudaContext;
use cudarc::driver::sys;
use std::collections::HashMap;
use std::ffi::{c_void, CString};
use std::sync::{Arc, Mutex, MutexGuard};
use sys::CUfunction_attribute_enum as FuncAttr;
use tessera_dsl::DeviceCaps;

/// Dynamic shared memory a kernel may use without opting in, bytes.
const DEFAULT_SMEM_LIMIT: u32 = 48 * 1024;

/// A module loaded in the context.
struct Loaded {
    module: sys::CUmodule,
    function: sys::CUfunction,
    static_smem: u32,
    /// The largest dynamic shared memory opted in so far (`MAX_DYNAMIC_SHARED_SIZE_BYTES`).
    dynamic_smem_limit: u32,
}

#[derive(Clone, Copy)]
struct Allocation {
    ptr: sys::CUdeviceptr,
    len: u64,
}

/// A created stream, and whether it is capturing.
struct StreamState {
    raw: sys::CUstream,
    capturing: bool,
}

/// An instantiated graph (the graph itself is kept until the exec is destroyed).
struct GraphState {
    graph: sys::CUgraph,
    exec: sys::CUgraphExec,
}

#[derive(Default)]
struct State {
    buffers: HashMap<u64, Allocation>,
    modules: HashMap<u64, Loaded>,
    flush: Option<Allocation>,
    /// The L2 scrub's module and kernel, loaded at the first flushed timing.
    scrub: Option<(sys::CUmodule, sys::CUfunction)>,
    streams: HashMap<u64, StreamState>,
    graphs: HashMap<u64, GraphState>,
    events: HashMap<u64, sys::CUevent>,
}

// SAFETY: the raw module, function, stream, graph and event handles are plain identifiers
// valid in the one context this device owns, from any thread that binds it (every method binds
// it under the lock).
unsafe impl Send for State {}

/// An NVIDIA GPU.
pub struct CudaDevice {
    ctx: Arc<CudaContext>,
    caps: DeviceCaps,
    info: DeviceInfo,
    arch: &'static str,
    cache: Option<ModuleCache>,
    flush_bytes: u64,
    state: Mutex<State>,
}

/// The legacy default stream: every operation of the device is ordered on it.
fn stream() -> sys::CUstream {
    std::ptr::null_mut()
}

/// Destroys events on every exit path.
struct Events(Vec<sys::CUevent>);

impl Drop for Events {
    fn drop(&mut self) {
        for e in self.0.drain(..) {
            // SAFETY: created by cuEventCreate, destroyed once here.
            let _ = unsafe { cu::event::destroy(e) };
        }
    }
}

impl CudaDevice {
    /// Open GPU `config.ordinal`. Errors: `NoDriver` without libcuda, `NoDevice` without a GPU
    /// (or one whose architecture is not sm_80-class or sm_90), `DriverTooOld`.
    pub fn open(config: &DeviceConfig) -> Result<CudaDevice, DeviceError> {
        driver::init()?;
        let count = driver::device_count()?;
        if count == 0 {
            return Err(DeviceError::NoDevice {
                message: "the NVIDIA driver reports no GPU".into(),
            });
        }
        if config.ordinal >= count {
            return Err(DeviceError::NoDevice {
                message: format!(
                    "GPU {} was asked for but only {count} present",
                    config.ordinal
                ),
            });
        }
        let props = driver::props(config.ordinal)?;
        let target = driver::target_for(props.cc).ok_or_else(|| DeviceError::NoDevice {
            message: format!(
                "GPU {} ({}) is sm_{}{}; Tessera targets sm_80-class (8.x) and sm_90 GPUs",
                config.ordinal, props.name, props.cc.0, props.cc.1
            ),
        })?;
        let arch = nvrtc::arch_for(target)?;
        let ctx = CudaContext::new(config.ordinal as usize)
            .map_err(call_err("cuDevicePrimaryCtxRetain"))?;
        let toolchain = nvrtc::toolchain().unwrap_or_else(|_| "none (NVRTC not found)".into());
        let info = driver::info(&props, config.ordinal, driver::driver_version()?, toolchain);
        let caps = driver::caps(&props, target);
        let flush_bytes = config
            .l2_flush_bytes
            .unwrap_or(2 * caps.l2_bytes)
            .max(1 << 20);
        Ok(CudaDevice {
            ctx,
            caps,
            info,
            arch,
            cache: config.module_cache_dir.as_ref().map(ModuleCache::new),
            flush_bytes,
            state: Mutex::new(State::default()),
        })
    }

    /// The architecture NVRTC compiles for on this device (`sm_90a`).
    pub fn arch(&self) -> &'static str {
        self.arch
    }

    /// Lock the state and make the context current on this thread.
    fn enter(&self) -> Result<MutexGuard<'_, State>, DeviceError> {
        let guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.ctx
            .bind_to_thread()
            .map_err(call_err("cuCtxSetCurrent"))?;
        Ok(guard)
    }

    /// Load an image and find its kernel; driver attributes fill the usage the compiler didn't give.
    fn load(&self, report: &CompileReport) -> Result<(Loaded, ResourceUsage), DeviceError> {
        let kernel = &report.kernel;
        let rejected = |e: DriverError| DeviceError::Compile {
            kernel: kernel.clone(),
            log: format!(
                "the driver rejected the compiled {:?} image: {}",
                report.format,
                describe(e)
            ),
        };
        let mut image = report.image.clone();
        if report.format == ImageFormat::Ptx && image.last() != Some(&0) {
            image.push(0);
        }
        let (module, function) = load_kernel(&image, kernel, rejected, |e| {
            DeviceError::Compile {
            kernel: kernel.clone(),
            log: format!("no kernel `{kernel}` in the compiled module ({}); declare it `extern \"C\" __global__`", describe(e)),
        }
        })?;
        // SAFETY: `function` belongs to the loaded module.
        let attr = |a: FuncAttr| {
            unsafe { cu::function::get_function_attribute(function, a) }
                .ok()
                .map(|v| v.max(0) as u32)
        };
        let from_driver = ResourceUsage {
            registers: attr(FuncAttr::CU_FUNC_ATTRIBUTE_NUM_REGS),
            static_smem_bytes: attr(FuncAttr::CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES),
            stack_frame_bytes: attr(FuncAttr::CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES),
            ..ResourceUsage::default()
        };
        let loaded = Loaded {
            module,
            function,
            static_smem: from_driver.static_smem_bytes.unwrap_or(0),
            dynamic_smem_limit: 0,
        };
        Ok((loaded, from_driver))
    }

    fn allocation(state: &State, buffer: &Buffer) -> Result<Allocation, DeviceError> {
        state
            .buffers
            .get(&buffer.id())
            .copied()
            .ok_or(DeviceError::InvalidBuffer { id: buffer.id() })
    }

    /// Each argument as 8 bytes of storage (the driver reads as many as the parameter's size),
    /// then each tensor map, encoded for this launch's buffers.
    fn params(
        state: &State,
        kernel: &str,
        args: &[ArgValue],
        maps: &[ResolvedTensorMap],
    ) -> Result<Vec<ParamSlot>, DeviceError> {
        let mut slots: Vec<ParamSlot> =
            pack_args(args, |b| Self::allocation(state, b).map(|a| a.ptr))?
                .into_iter()
                .map(ParamSlot::Word)
                .collect();
        for m in maps {
            let ptr = Self::allocation(state, &m.buffer)?.ptr + m.offset;
            slots.push(ParamSlot::TensorMap(Box::new(
                tensor_map::encode(ptr, m).map_err(|message| DeviceError::Launch {
                    kernel: kernel.to_string(),
                    message,
                })?,
            )));
        }
        Ok(slots)
    }

    /// Checks shared by `launch` and `time`; opts in to large dynamic shared memory.
    fn prepare(
        &self,
        state: &mut State,
        module: &Module,
        launch: &Launch,
        args: &[ArgValue],
    ) -> Result<(sys::CUfunction, Vec<ParamSlot>), DeviceError> {
        let kernel = module.kernel_name();
        launch.check_shape(kernel)?;
        check_args(kernel, module.abi(), args)?;
        let maps = resolve_tensor_maps(kernel, module.abi(), module.tensor_maps(), args, launch)?;
        launch.check_limits(kernel, &self.caps)?;
        let params = Self::params(state, kernel, args, &maps)?;
        let loaded =
            state
                .modules
                .get_mut(&module.id())
                .ok_or_else(|| DeviceError::UnknownModule {
                    kernel: kernel.to_string(),
                })?;
        launch.check_total_smem(kernel, loaded.static_smem, &self.caps)?;
        let total = u64::from(launch.dynamic_smem) + u64::from(loaded.static_smem);
        if total > u64::from(DEFAULT_SMEM_LIMIT) && launch.dynamic_smem > loaded.dynamic_smem_limit
        {
            let bytes =
                i32::try_from(launch.dynamic_smem).map_err(|_| DeviceError::InvalidRequest {
                    message: format!("dynamic shared memory {} is too large", launch.dynamic_smem),
                })?;
            // SAFETY: `function` belongs to a loaded module.
            unsafe {
                cu::function::set_function_attribute(
                    loaded.function,
                    FuncAttr::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    bytes,
                )
            }
            .map_err(|e| DeviceError::Launch {
                kernel: kernel.to_string(),
                message: format!(
                    "cannot opt in to {bytes} bytes of dynamic shared memory: {}",
                    describe(e)
                ),
            })?;
            loaded.dynamic_smem_limit = launch.dynamic_smem;
        }
        Ok((loaded.function, params))
    }

    /// Enqueue one launch on the default stream.
    fn enqueue(
        function: sys::CUfunction,
        launch: &Launch,
        params: &mut [ParamSlot],
    ) -> Result<(), DriverError> {
        Self::enqueue_on(function, launch, params, stream())
    }

    /// Enqueue one launch on `on`.
    fn enqueue_on(
        function: sys::CUfunction,
        launch: &Launch,
        params: &mut [ParamSlot],
        on: sys::CUstream,
    ) -> Result<(), DriverError> {
        let mut ptrs: Vec<*mut c_void> = params.iter_mut().map(ParamSlot::as_mut_ptr).collect();
        let [gx, gy, gz] = launch.grid;
        let [bx, by, bz] = launch.block;
        // SAFETY: the arguments were checked against the kernel's ABI (count and kinds), every
        // pointer names a live allocation of this context, and `params` outlives the call (the
        // driver copies parameter values at launch).
        unsafe {
            cu::launch_kernel(
                function,
                (gx, gy, gz),
                (bx, by, bz),
                launch.dynamic_smem,
                on,
                &mut ptrs,
            )
        }
    }

    fn flush_buffer(&self, state: &mut State) -> Result<Allocation, DeviceError> {
        if let Some(f) = state.flush {
            return Ok(f);
        }
        let len = usize::try_from(self.flush_bytes).map_err(|_| DeviceError::OutOfMemory {
            bytes: self.flush_bytes,
        })?;
        // SAFETY: plain allocation in the bound context.
        let ptr = unsafe { cu::malloc_sync(len) }
            .map_err(|e| oom_or(e, self.flush_bytes, "cuMemAlloc"))?;
        let f = Allocation {
            ptr,
            len: self.flush_bytes,
        };
        state.flush = Some(f);
        // written once, so the scrub's checksum is known (0) and its sink never stored
        // SAFETY: the allocation holds `len` bytes.
        unsafe { cu::memset_d8_sync(f.ptr, 0, len) }.map_err(call_err("cuMemsetD8"))?;
        Ok(f)
    }

    /// The L2 scrub kernel ([`l2_scrub`]), loaded on first use.
    fn scrub(state: &mut State) -> Result<sys::CUfunction, DeviceError> {
        if let Some((_, f)) = state.scrub {
            return Ok(f);
        }
        let ptx = CString::new(l2_scrub::PTX).map_err(|_| DeviceError::Compile {
            kernel: l2_scrub::KERNEL.into(),
            log: "the scrub's PTX contains a NUL byte".into(),
        })?;
        let rejected = |e: DriverError| DeviceError::Compile {
            kernel: l2_scrub::KERNEL.into(),
            log: format!("the driver rejected the L2 scrub's PTX: {}", describe(e)),
        };
        let loaded = load_kernel(
            ptx.as_bytes_with_nul(),
            l2_scrub::KERNEL,
            rejected,
            rejected,
        )?;
        state.scrub = Some(loaded);
        Ok(loaded.1)
    }

    /// Enqueue one read of the whole flush buffer on the default stream.
    fn enqueue_scrub(&self, f: Allocation, scrub: sys::CUfunction) -> Result<(), DriverError> {
        let blocks = self.caps.sm_count.max(1) * l2_scrub::BLOCKS_PER_SM;
        let launch = Launch::new([blocks, 1, 1], [l2_scrub::THREADS, 1, 1]);
        let mut params = [
            ParamSlot::Word(f.ptr.to_le_bytes()),
            ParamSlot::Word((f.len / 16).to_le_bytes()),
            // the sink: the buffer's first word, stored only on an impossible checksum
            ParamSlot::Word(f.ptr.to_le_bytes()),
        ];
        Self::enqueue(scrub, &launch, &mut params)
    }
}

/// Load `image` (a complete CUBIN, or NUL-terminated PTX) into the bound context and find its
/// kernel `kernel`; a module without it is unloaded again. `rejected` and `missing` word the
/// driver's refusal of the image and of the name.
fn load_kernel(
    image: &[u8],
    kernel: &str,
    rejected: impl Fn(DriverError) -> DeviceError,
    missing: impl Fn(DriverError) -> DeviceError,
) -> Result<(sys::CUmodule, sys::CUfunction), DeviceError> {
    let name = CString::new(kernel).map_err(|_| DeviceError::Compile {
        kernel: kernel.to_string(),
        log: "kernel name contains a NUL byte".into(),
    })?;
    // SAFETY: `image` is a complete CUBIN (or NUL-terminated PTX) and outlives the call.
    let module =
        unsafe { cu::module::load_data(image.as_ptr() as *const c_void) }.map_err(rejected)?;
    // SAFETY: `module` was just loaded.
    match unsafe { cu::module::get_function(module, name) } {
        Ok(f) => Ok((module, f)),
        Err(e) => {
            // SAFETY: loaded above, unloaded once.
            let _ = unsafe { cu::module::unload(module) };
            Err(missing(e))
        }
    }
}

fn stream_of(state: &State, s: &Stream) -> Result<(sys::CUstream, bool), DeviceError> {
    state
        .streams
        .get(&s.id())
        .map(|st| (st.raw, st.capturing))
        .ok_or(DeviceError::stale_handle("stream", s.id()))
}

fn idle_stream(state: &State, s: &Stream, what: &str) -> Result<sys::CUstream, DeviceError> {
    let (raw, capturing) = stream_of(state, s)?;
    if capturing {
        return Err(DeviceError::InvalidHandle {
            what: "stream",
            id: s.id(),
            message: format!("is capturing; {what} is not allowed during a capture"),
        });
    }
    Ok(raw)
}

fn event_of(state: &State, e: &Event) -> Result<sys::CUevent, DeviceError> {
    state
        .events
        .get(&e.id())
        .copied()
        .ok_or(DeviceError::stale_handle("event", e.id()))
}

/// The device address of a view, checked against the allocation.
fn view_ptr(state: &State, v: &BufferView) -> Result<sys::CUdeviceptr, DeviceError> {
    let a = CudaDevice::allocation(state, &v.buffer())?;
    v.address_in(a.ptr, a.len)
}

fn oom_or(e: DriverError, bytes: u64, call: &'static str) -> DeviceError {
    if e.0 == sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY {
        DeviceError::OutOfMemory { bytes }
    } else {
        call_err(call)(e)
    }
}

fn launch_err(kernel: &str) -> impl Fn(DriverError) -> DeviceError + '_ {
    move |e| DeviceError::Launch {
        kernel: kernel.to_string(),
        message: describe(e),
    }
}

/// The storage of one kernel parameter for `cuLaunchKernel`.
enum ParamSlot {
    /// A pointer or scalar (the driver reads the parameter's size from the front).
    Word(ArgSlot),
    /// A 128-byte TMA descriptor, passed by value.
    TensorMap(Box<sys::CUtensorMap>),
}

impl ParamSlot {
    fn as_mut_ptr(&mut self) -> *mut c_void {
        match self {
            ParamSlot::Word(w) => w.as_mut_ptr() as *mut c_void,
            ParamSlot::TensorMap(m) => m.as_mut() as *mut sys::CUtensorMap as *mut c_void,
        }
    }
}

impl Device for CudaDevice {
    fn caps(&self) -> &DeviceCaps {
        &self.caps
    }

    fn info(&self) -> DeviceInfo {
        self.info.clone()
    }

    fn compile(&self, req: &CompileRequest) -> Result<Module, DeviceError> {
        if req.target != self.caps.target {
            return Err(DeviceError::Unsupported {
                message: format!(
                    "this GPU runs {}; cannot load `{}` compiled for {} (use nvrtc_compile for compile-only checks)",
                    self.caps.target, req.kernel_name, req.target
                ),
            });
        }
        // NVRTC runs without the lock, so several threads can compile at once.
        let (report, cache) = nvrtc::compile_cached(
            self.cache.as_ref(),
            &req.source,
            &req.kernel_name,
            req.target,
            self.arch,
            &req.options,
        )?;
        let mut state = self.enter()?;
        let (loaded, from_driver) = self.load(&report)?;
        let module = Module::new(
            req,
            ModuleReport {
                usage: report.usage.or(from_driver),
                compile_seconds: report.seconds,
                cache,
                toolchain: report.toolchain.clone(),
                log: report.log.clone(),
            },
        );
        state.modules.insert(module.id(), loaded);
        Ok(module)
    }

    fn unload(&self, module: &Module) -> Result<(), DeviceError> {
        let mut state = self.enter()?;
        let loaded =
            state
                .modules
                .remove(&module.id())
                .ok_or_else(|| DeviceError::UnknownModule {
                    kernel: module.kernel_name().to_string(),
                })?;
        // SAFETY: loaded by this device, removed from the table, unloaded once.
        unsafe { cu::module::unload(loaded.module) }.map_err(call_err("cuModuleUnload"))
    }

    fn alloc(&self, bytes: u64) -> Result<Buffer, DeviceError> {
        if bytes > self.info.memory_bytes {
            return Err(DeviceError::OutOfMemory { bytes });
        }
        let len = usize::try_from(bytes.max(1)).map_err(|_| DeviceError::OutOfMemory { bytes })?;
        let mut state = self.enter()?;
        // SAFETY: plain allocation in the bound context.
        let ptr = unsafe { cu::malloc_sync(len) }.map_err(|e| oom_or(e, bytes, "cuMemAlloc"))?;
        let buffer = Buffer::fresh(bytes);
        state
            .buffers
            .insert(buffer.id(), Allocation { ptr, len: bytes });
        Ok(buffer)
    }

    fn free(&self, buffer: Buffer) -> Result<(), DeviceError> {
        let mut state = self.enter()?;
        let a = state
            .buffers
            .remove(&buffer.id())
            .ok_or(DeviceError::InvalidBuffer { id: buffer.id() })?;
        // SAFETY: allocated by this device, removed from the table, freed once.
        unsafe { cu::free_sync(a.ptr) }.map_err(call_err("cuMemFree"))
    }

    fn upload(&self, buffer: &Buffer, data: &[u8]) -> Result<(), DeviceError> {
        let state = self.enter()?;
        let a = Self::allocation(&state, buffer)?;
        if a.len != data.len() as u64 {
            return Err(DeviceError::SizeMismatch {
                buffer_bytes: a.len,
                host_bytes: data.len() as u64,
            });
        }
        if data.is_empty() {
            return Ok(());
        }
        // SAFETY: the allocation holds exactly `data.len()` bytes.
        unsafe { cu::memcpy_htod_sync(a.ptr, data) }.map_err(call_err("cuMemcpyHtoD"))
    }

    fn download(&self, buffer: &Buffer, out: &mut [u8]) -> Result<(), DeviceError> {
        let state = self.enter()?;
        let a = Self::allocation(&state, buffer)?;
        if a.len != out.len() as u64 {
            return Err(DeviceError::SizeMismatch {
                buffer_bytes: a.len,
                host_bytes: out.len() as u64,
            });
        }
        if out.is_empty() {
            return Ok(());
        }
        // SAFETY: the allocation holds exactly `out.len()` bytes.
        unsafe { cu::memcpy_dtoh_sync(out, a.ptr) }.map_err(call_err("cuMemcpyDtoH"))
    }

    fn fill(&self, buffer: &Buffer, byte: u8) -> Result<(), DeviceError> {
        let state = self.enter()?;
        let a = Self::allocation(&state, buffer)?;
        let len =
            usize::try_from(a.len).map_err(|_| DeviceError::InvalidBuffer { id: buffer.id() })?;
        if len == 0 {
            return Ok(());
        }
        // SAFETY: the allocation holds `len` bytes.
        unsafe { cu::memset_d8_sync(a.ptr, byte, len) }.map_err(call_err("cuMemsetD8"))
    }

    fn launch(
        &self,
        module: &Module,
        launch: &Launch,
        args: &[ArgValue],
    ) -> Result<(), DeviceError> {
        let kernel = module.kernel_name();
        let mut state = self.enter()?;
        let (function, mut params) = self.prepare(&mut state, module, launch, args)?;
        Self::enqueue(function, launch, &mut params).map_err(launch_err(kernel))?;
        cu::ctx::synchronize().map_err(launch_err(kernel))
    }

    fn time(
        &self,
        module: &Module,
        launch: &Launch,
        args: &[ArgValue],
        warmup: u32,
        iters: u32,
        l2_flush: bool,
    ) -> Result<Timing, DeviceError> {
        let kernel = module.kernel_name();
        if iters == 0 {
            return Err(DeviceError::InvalidRequest {
                message: format!("timing `{kernel}` needs at least one iteration"),
            });
        }
        let mut state = self.enter()?;
        let (function, mut params) = self.prepare(&mut state, module, launch, args)?;
        let flush = if l2_flush {
            Some((self.flush_buffer(&mut state)?, Self::scrub(&mut state)?))
        } else {
            None
        };
        for _ in 0..warmup {
            Self::enqueue(function, launch, &mut params).map_err(launch_err(kernel))?;
        }
        cu::ctx::synchronize().map_err(launch_err(kernel))?;

        let mut events = Events(Vec::with_capacity(2 * iters as usize));
        for _ in 0..2 * iters {
            events.0.push(
                cu::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT)
                    .map_err(call_err("cuEventCreate"))?,
            );
        }
        for pair in events.0.chunks_exact(2) {
            if let Some((f, scrub)) = flush {
                // read (never write) the flush buffer: L2 is left holding clean lines only
                self.enqueue_scrub(f, scrub)
                    .map_err(call_err("cuLaunchKernel (L2 scrub)"))?;
            }
            // SAFETY: events created above, recorded on the default stream.
            unsafe { cu::event::record(pair[0], stream()) }.map_err(call_err("cuEventRecord"))?;
            Self::enqueue(function, launch, &mut params).map_err(launch_err(kernel))?;
            // SAFETY: as above.
            unsafe { cu::event::record(pair[1], stream()) }.map_err(call_err("cuEventRecord"))?;
        }
        cu::ctx::synchronize().map_err(launch_err(kernel))?;
        let mut samples = Vec::with_capacity(iters as usize);
        for pair in events.0.chunks_exact(2) {
            // SAFETY: both events were recorded and have completed (synchronized above).
            let ms = unsafe { cu::event::elapsed(pair[0], pair[1]) }
                .map_err(call_err("cuEventElapsedTime"))?;
            samples.push(f64::from(ms));
        }
        Timing::new(samples, false, l2_flush)
    }

    fn synchronize(&self) -> Result<(), DeviceError> {
        let _state = self.enter()?;
        cu::ctx::synchronize().map_err(call_err("cuCtxSynchronize"))
    }

    fn create_stream(&self) -> Result<Stream, DeviceError> {
        let mut state = self.enter()?;
        let raw = cu::stream::create(cu::stream::StreamKind::NonBlocking)
            .map_err(call_err("cuStreamCreate"))?;
        let s = Stream::fresh();
        state.streams.insert(
            s.id(),
            StreamState {
                raw,
                capturing: false,
            },
        );
        Ok(s)
    }

    fn destroy_stream(&self, s: Stream) -> Result<(), DeviceError> {
        let mut state = self.enter()?;
        let raw = idle_stream(&state, &s, "destroying it")?;
        state.streams.remove(&s.id());
        // SAFETY: created by this device, removed from the table, destroyed once (the driver
        // lets queued work finish first).
        unsafe { cu::stream::destroy(raw) }.map_err(call_err("cuStreamDestroy"))
    }

    fn launch_async(
        &self,
        s: &Stream,
        module: &Module,
        launch: &Launch,
        args: &[ArgValue],
    ) -> Result<(), DeviceError> {
        let kernel = module.kernel_name();
        let mut state = self.enter()?;
        let (raw, _) = stream_of(&state, s)?;
        let (function, mut params) = self.prepare(&mut state, module, launch, args)?;
        Self::enqueue_on(function, launch, &mut params, raw).map_err(launch_err(kernel))
    }

    fn upload_view(&self, s: &Stream, view: &BufferView, data: &[u8]) -> Result<(), DeviceError> {
        let state = self.enter()?;
        let raw = idle_stream(&state, s, "a copy")?;
        if data.len() as u64 != view.len() {
            return Err(DeviceError::SizeMismatch {
                buffer_bytes: view.len(),
                host_bytes: data.len() as u64,
            });
        }
        let ptr = view_ptr(&state, view)?;
        if data.is_empty() {
            return Ok(());
        }
        // SAFETY: the view lies inside a live allocation of `data.len()` bytes from `ptr`;
        // the stream is synchronized before `data` can be dropped.
        unsafe { cu::memcpy_htod_async(ptr, data, raw) }.map_err(call_err("cuMemcpyHtoDAsync"))?;
        // SAFETY: a live stream of this context.
        unsafe { cu::stream::synchronize(raw) }.map_err(call_err("cuStreamSynchronize"))
    }

    fn download_view(
        &self,
        s: &Stream,
        view: &BufferView,
        out: &mut [u8],
    ) -> Result<(), DeviceError> {
        let state = self.enter()?;
        let raw = idle_stream(&state, s, "a copy")?;
        if out.len() as u64 != view.len() {
            return Err(DeviceError::SizeMismatch {
                buffer_bytes: view.len(),
                host_bytes: out.len() as u64,
            });
        }
        let ptr = view_ptr(&state, view)?;
        if out.is_empty() {
            return Ok(());
        }
        // SAFETY: as in `upload_view`; `out` is written before the synchronize returns.
        unsafe { cu::memcpy_dtoh_async(out, ptr, raw) }.map_err(call_err("cuMemcpyDtoHAsync"))?;
        // SAFETY: a live stream of this context.
        unsafe { cu::stream::synchronize(raw) }.map_err(call_err("cuStreamSynchronize"))
    }

    fn synchronize_stream(&self, s: &Stream) -> Result<(), DeviceError> {
        let state = self.enter()?;
        let raw = idle_stream(&state, s, "a synchronize")?;
        // SAFETY: a live stream of this context.
        unsafe { cu::stream::synchronize(raw) }.map_err(call_err("cuStreamSynchronize"))
    }

    fn begin_capture(&self, s: &Stream) -> Result<(), DeviceError> {
        let mut state = self.enter()?;
        let raw = idle_stream(&state, s, "a second capture")?;
        // SAFETY: a live, created (not legacy) stream of this context.
        unsafe {
            cu::stream::begin_capture(
                raw,
                sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL,
            )
        }
        .map_err(call_err("cuStreamBeginCapture"))?;
        if let Some(st) = state.streams.get_mut(&s.id()) {
            st.capturing = true;
        }
        Ok(())
    }

    fn end_capture(&self, s: &Stream) -> Result<Graph, DeviceError> {
        let mut state = self.enter()?;
        let (raw, capturing) = stream_of(&state, s)?;
        if !capturing {
            return Err(DeviceError::InvalidHandle {
                what: "stream",
                id: s.id(),
                message: "is not capturing".into(),
            });
        }
        if let Some(st) = state.streams.get_mut(&s.id()) {
            st.capturing = false;
        }
        // SAFETY: the stream is capturing (begun by `begin_capture`).
        let graph =
            unsafe { cu::stream::end_capture(raw) }.map_err(call_err("cuStreamEndCapture"))?;
        // SAFETY: `graph` was just captured.
        let exec = match unsafe { cu::graph::instantiate(graph, sys::CUgraphInstantiate_flags(0)) }
        {
            Ok(e) => e,
            Err(e) => {
                // SAFETY: captured above, destroyed once.
                let _ = unsafe { cu::graph::destroy(graph) };
                return Err(call_err("cuGraphInstantiateWithFlags")(e));
            }
        };
        // SAFETY: `exec` was just instantiated; uploading only prepares it on the stream.
        unsafe { cu::graph::upload(exec, raw) }.map_err(call_err("cuGraphUpload"))?;
        let g = Graph::fresh();
        state.graphs.insert(g.id(), GraphState { graph, exec });
        Ok(g)
    }

    fn launch_graph(&self, g: &Graph, s: &Stream) -> Result<(), DeviceError> {
        let state = self.enter()?;
        let raw = idle_stream(&state, s, "a graph launch")?;
        let exec = state
            .graphs
            .get(&g.id())
            .map(|gs| gs.exec)
            .ok_or(DeviceError::stale_handle("graph", g.id()))?;
        // SAFETY: a live graph exec and stream of this context.
        unsafe { cu::graph::launch(exec, raw) }.map_err(call_err("cuGraphLaunch"))
    }

    fn destroy_graph(&self, g: Graph) -> Result<(), DeviceError> {
        let mut state = self.enter()?;
        let gs = state
            .graphs
            .remove(&g.id())
            .ok_or(DeviceError::stale_handle("graph", g.id()))?;
        // SAFETY: instantiated by this device, removed from the table, destroyed once.
        unsafe { cu::graph::exec_destroy(gs.exec) }.map_err(call_err("cuGraphExecDestroy"))?;
        // SAFETY: as above.
        unsafe { cu::graph::destroy(gs.graph) }.map_err(call_err("cuGraphDestroy"))
    }

    fn record_event(&self, s: &Stream) -> Result<Event, DeviceError> {
        let mut state = self.enter()?;
        let raw = idle_stream(&state, s, "an event record")?;
        let ev = cu::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT)
            .map_err(call_err("cuEventCreate"))?;
        // SAFETY: a fresh event and a live stream of this context.
        if let Err(e) = unsafe { cu::event::record(ev, raw) } {
            // SAFETY: created above, destroyed once.
            let _ = unsafe { cu::event::destroy(ev) };
            return Err(call_err("cuEventRecord")(e));
        }
        let e = Event::fresh();
        state.events.insert(e.id(), ev);
        Ok(e)
    }

    fn elapsed_ms(&self, start: &Event, end: &Event) -> Result<f64, DeviceError> {
        let state = self.enter()?;
        let (a, b) = (event_of(&state, start)?, event_of(&state, end)?);
        // SAFETY: both events are live and recorded.
        unsafe { cu::event::synchronize(b) }.map_err(call_err("cuEventSynchronize"))?;
        // SAFETY: as above; `b` has completed, and `a` was recorded before it on its stream.
        let ms = unsafe { cu::event::elapsed(a, b) }.map_err(call_err("cuEventElapsedTime"))?;
        Ok(f64::from(ms))
    }

    fn destroy_event(&self, e: Event) -> Result<(), DeviceError> {
        let mut state = self.enter()?;
        let ev = state
            .events
            .remove(&e.id())
            .ok_or(DeviceError::stale_handle("event", e.id()))?;
        // SAFETY: created by this device, removed from the table, destroyed once.
        unsafe { cu::event::destroy(ev) }.map_err(call_err("cuEventDestroy"))
    }
}

impl Drop for CudaDevice {
    /// Release every buffer and module still held. Errors are ignored: after a kernel fault the
    /// context is unusable and the driver reclaims everything with it.
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        if self.ctx.bind_to_thread().is_err() {
            return;
        }
        let _ = cu::ctx::synchronize();
        for (_, g) in state.graphs.drain() {
            // SAFETY: instantiated by this device, destroyed once.
            let _ = unsafe { cu::graph::exec_destroy(g.exec) };
            // SAFETY: as above.
            let _ = unsafe { cu::graph::destroy(g.graph) };
        }
        for (_, e) in state.events.drain() {
            // SAFETY: created by this device, destroyed once.
            let _ = unsafe { cu::event::destroy(e) };
        }
        for (_, st) in state.streams.drain() {
            // SAFETY: created by this device, destroyed once.
            let _ = unsafe { cu::stream::destroy(st.raw) };
        }
        for (_, a) in state.buffers.drain() {
            // SAFETY: allocated by this device, freed once.
            let _ = unsafe { cu::free_sync(a.ptr) };
        }
        if let Some(f) = state.flush.take() {
            // SAFETY: as above.
            let _ = unsafe { cu::free_sync(f.ptr) };
        }
        if let Some((module, _)) = state.scrub.take() {
            // SAFETY: loaded by this device, unloaded once.
            let _ = unsafe { cu::module::unload(module) };
        }
        for (_, m) in state.modules.drain() {
            // SAFETY: loaded by this device, unloaded once.
            let _ = unsafe { cu::module::unload(m.module) };
        }
    }
}
