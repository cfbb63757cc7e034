//! [`HipDevice`]: one AMD GPU through the runtime-loaded HIP runtime.
//!
//! It compiles with hiprtc (or hipcc) for the GPU's own target through the on-disk module
//! cache, loads code objects with `hipModuleLoadData`, allocates and copies memory, launches
//! with `hipModuleLaunchKernel` on the null stream, passing arguments exactly as the CUDA
//! device does ([`pack_args`]: one 8-byte slot per ABI argument), and times with HIP events.
//! For executors it creates non-blocking streams, enqueues launches and view copies on them,
//! and records events; stream capture into graphs is not offered (the trait's `Unsupported`).
//! `launch` and `time` wait for the kernel, so a fault is a `Launch` error naming the kernel
//! that caused it.
//!
//! This module depends on the runtime-loaded bindings, the HIP compile path and this crate's
//! shared launch vocabulary; it must not depend on cudarc or anything CUDA.

use super::api::{self, func_attr, Handle, Hip};
use super::{props, rtc};
use crate::compile::{CompileReport, CompileRequest, Module, ModuleReport, ResourceUsage};
use crate::config::DeviceConfig;
use crate::error::DeviceError;
use crate::info::DeviceInfo;
use crate::launch::{check_args, pack_args, ArgSlot, ArgValue, Launch};
use crate::memory::{Buffer, BufferView};
use crate::module_cache::ModuleCache;
use crate::stream::{Event, Stream};
use crate::timing::Timing;
use crate::Device;
use std::collections::HashMap;
use std::ffi::{c_float, c_int, c_void, CString};
use std::sync::{Mutex, MutexGuard};
use tessera_dsl::DeviceCaps;

/// A code object loaded on the device.
struct Loaded {
    module: Handle,
    function: Handle,
    static_smem: u32,
}

#[derive(Clone, Copy)]
struct Allocation {
    /// The device address.
    ptr: u64,
    len: u64,
}

impl Allocation {
    fn handle(&self) -> Handle {
        self.ptr as usize as Handle
    }
}

#[derive(Default)]
struct State {
    buffers: HashMap<u64, Allocation>,
    modules: HashMap<u64, Loaded>,
    flush: Option<Allocation>,
    streams: HashMap<u64, Handle>,
    events: HashMap<u64, Handle>,
}

// SAFETY: module, function, stream and event handles are plain identifiers valid on this
// device from any thread that selects it (every method selects it under the lock).
unsafe impl Send for State {}

/// An AMD GPU.
pub struct HipDevice {
    hip: &'static Hip,
    ordinal: c_int,
    caps: DeviceCaps,
    info: DeviceInfo,
    cache: Option<ModuleCache>,
    flush_bytes: u64,
    state: Mutex<State>,
}

/// The null stream: `launch`, `time` and the synchronous copies are ordered on it.
fn null_stream() -> Handle {
    std::ptr::null_mut()
}

/// Destroys events on every exit path.
struct Events<'a> {
    hip: &'a Hip,
    raw: Vec<Handle>,
}

impl Drop for Events<'_> {
    fn drop(&mut self) {
        for e in self.raw.drain(..) {
            // SAFETY: created by hipEventCreate, destroyed once here.
            let _ = unsafe { (self.hip.api.hipEventDestroy)(e) };
        }
    }
}

impl HipDevice {
    /// Open AMD GPU `config.ordinal`. Errors: `NoHipRuntime` without libamdhip64, `NoDevice`
    /// without an AMD GPU (or one that is not gfx90a or gfx942), `HipTooOld`, `Hip`.
    pub fn open(config: &DeviceConfig) -> Result<HipDevice, DeviceError> {
        let hip = props::init()?;
        let count = props::device_count(hip)?;
        if count == 0 {
            return Err(DeviceError::NoDevice {
                message: format!("the HIP runtime ({}) reports no AMD GPU", hip.library),
            });
        }
        if config.ordinal >= count {
            return Err(DeviceError::NoDevice {
                message: format!(
                    "AMD GPU {} was asked for but only {count} present",
                    config.ordinal
                ),
            });
        }
        let p = props::props(hip, config.ordinal)?;
        let target =
            props::target_for_arch(&p.gcn_arch).ok_or_else(|| DeviceError::NoDevice {
                message: format!(
                    "AMD GPU {} ({}) is {}; Tessera targets gfx90a (MI210/MI250) and gfx942 (MI300) GPUs",
                    config.ordinal, p.name, p.gcn_arch
                ),
            })?;
        let ordinal = c_int::try_from(config.ordinal).map_err(|_| DeviceError::NoDevice {
            message: format!("device ordinal {} is out of range", config.ordinal),
        })?;
        // SAFETY: a valid ordinal (checked against the count above).
        hip.check("hipSetDevice", unsafe { (hip.api.hipSetDevice)(ordinal) })?;
        let toolchain = rtc::toolchain().unwrap_or_else(|_| "none (hiprtc not found)".into());
        let info = props::info(&p, config.ordinal, props::runtime_version(hip)?, toolchain);
        let caps = props::caps(&p, target);
        let flush_bytes = config
            .l2_flush_bytes
            .unwrap_or(2 * caps.l2_bytes)
            .max(1 << 20);
        Ok(HipDevice {
            hip,
            ordinal,
            caps,
            info,
            cache: config.module_cache_dir.as_ref().map(ModuleCache::new),
            flush_bytes,
            state: Mutex::new(State::default()),
        })
    }

    /// Lock the state and select this GPU on this thread.
    fn enter(&self) -> Result<MutexGuard<'_, State>, DeviceError> {
        let guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: the ordinal was valid when the device was opened.
        self.check("hipSetDevice", unsafe {
            (self.hip.api.hipSetDevice)(self.ordinal)
        })?;
        Ok(guard)
    }

    fn check(&self, call: &'static str, code: api::HipError) -> Result<(), DeviceError> {
        self.hip.check(call, code)
    }

    /// A failure of a call made for `kernel` (a launch, or a wait for it).
    fn launch_err(&self, kernel: &str, code: api::HipError) -> Result<(), DeviceError> {
        if code == api::SUCCESS {
            return Ok(());
        }
        Err(DeviceError::Launch {
            kernel: kernel.to_string(),
            message: self.hip.describe(code),
        })
    }

    /// Load a code object and find its kernel; function attributes fill in the usage the
    /// compiler did not report.
    fn load(&self, report: &CompileReport) -> Result<(Loaded, ResourceUsage), DeviceError> {
        let api = &self.hip.api;
        let kernel = &report.kernel;
        let mut module: Handle = std::ptr::null_mut();
        // SAFETY: the image is a complete code object (or offload bundle) that outlives the call.
        let code = unsafe { (api.hipModuleLoadData)(&mut module, report.image.as_ptr().cast()) };
        if code != api::SUCCESS {
            return Err(DeviceError::Compile {
                kernel: kernel.clone(),
                log: format!(
                    "the HIP runtime rejected the compiled code object: {}",
                    self.hip.describe(code)
                ),
            });
        }
        let name = CString::new(kernel.as_str()).map_err(|_| DeviceError::Compile {
            kernel: kernel.clone(),
            log: "kernel name contains a NUL byte".into(),
        });
        let mut function: Handle = std::ptr::null_mut();
        let found = name.and_then(|name| {
            // SAFETY: `module` was just loaded; the name outlives the call.
            let code = unsafe { (api.hipModuleGetFunction)(&mut function, module, name.as_ptr()) };
            if code == api::SUCCESS {
                Ok(())
            } else {
                Err(DeviceError::Compile {
                    kernel: kernel.clone(),
                    log: format!(
                        "no kernel `{kernel}` in the compiled module ({}); declare it `extern \"C\" __global__`",
                        self.hip.describe(code)
                    ),
                })
            }
        });
        if let Err(e) = found {
            // SAFETY: loaded above, unloaded once.
            let _ = unsafe { (api.hipModuleUnload)(module) };
            return Err(e);
        }
        let attr = |a: c_int| {
            let mut v: c_int = 0;
            // SAFETY: `function` belongs to the loaded module; valid out-pointer.
            (unsafe { (api.hipFuncGetAttribute)(&mut v, a, function) } == api::SUCCESS)
                .then(|| u32::try_from(v).unwrap_or(0))
        };
        let from_runtime = ResourceUsage {
            registers: attr(func_attr::NUM_REGS),
            static_smem_bytes: attr(func_attr::SHARED_SIZE_BYTES),
            stack_frame_bytes: attr(func_attr::LOCAL_SIZE_BYTES),
            ..ResourceUsage::default()
        };
        let loaded = Loaded {
            module,
            function,
            static_smem: from_runtime
                .static_smem_bytes
                .or(report.usage.static_smem_bytes)
                .unwrap_or(0),
        };
        Ok((loaded, from_runtime))
    }

    fn allocation(state: &State, buffer: &Buffer) -> Result<Allocation, DeviceError> {
        state
            .buffers
            .get(&buffer.id())
            .copied()
            .ok_or(DeviceError::InvalidBuffer { id: buffer.id() })
    }

    /// The checks `launch`, `time` and `launch_async` share, then the packed arguments.
    fn prepare(
        &self,
        state: &State,
        module: &Module,
        launch: &Launch,
        args: &[ArgValue],
    ) -> Result<(Handle, Vec<ArgSlot>), DeviceError> {
        let kernel = module.kernel_name();
        launch.check_shape(kernel)?;
        check_args(kernel, module.abi(), args)?;
        launch.check_limits(kernel, &self.caps)?;
        let slots = pack_args(args, |b| Self::allocation(state, b).map(|a| a.ptr))?;
        let loaded = state
            .modules
            .get(&module.id())
            .ok_or_else(|| DeviceError::UnknownModule {
                kernel: kernel.to_string(),
            })?;
        launch.check_total_smem(kernel, loaded.static_smem, &self.caps)?;
        Ok((loaded.function, slots))
    }

    /// Enqueue one launch on `stream`; the runtime copies the argument values at the call.
    fn enqueue(
        &self,
        function: Handle,
        launch: &Launch,
        slots: &mut [ArgSlot],
        stream: Handle,
    ) -> api::HipError {
        let mut ptrs: Vec<*mut c_void> = slots.iter_mut().map(|s| s.as_mut_ptr().cast()).collect();
        let [gx, gy, gz] = launch.grid;
        let [bx, by, bz] = launch.block;
        // SAFETY: the arguments were checked against the kernel's ABI (count and kinds), every
        // pointer names a live allocation of this device, and `slots` outlives the call.
        unsafe {
            (self.hip.api.hipModuleLaunchKernel)(
                function,
                gx,
                gy,
                gz,
                bx,
                by,
                bz,
                launch.dynamic_smem,
                stream,
                ptrs.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        }
    }

    fn malloc(&self, bytes: u64) -> Result<Allocation, DeviceError> {
        let len = usize::try_from(bytes.max(1)).map_err(|_| DeviceError::OutOfMemory { bytes })?;
        let mut ptr: Handle = std::ptr::null_mut();
        // SAFETY: valid out-pointer; this GPU is selected by the caller.
        match unsafe { (self.hip.api.hipMalloc)(&mut ptr, len) } {
            api::SUCCESS => Ok(Allocation {
                ptr: ptr as usize as u64,
                len: bytes,
            }),
            api::ERROR_OUT_OF_MEMORY => Err(DeviceError::OutOfMemory { bytes }),
            code => Err(DeviceError::Hip {
                call: "hipMalloc",
                message: self.hip.describe(code),
            }),
        }
    }

    fn flush_buffer(&self, state: &mut State) -> Result<Allocation, DeviceError> {
        if let Some(f) = state.flush {
            return Ok(f);
        }
        let f = self.malloc(self.flush_bytes)?;
        state.flush = Some(f);
        Ok(f)
    }

    fn stream_of(state: &State, s: &Stream) -> Result<Handle, DeviceError> {
        state
            .streams
            .get(&s.id())
            .copied()
            .ok_or(DeviceError::stale_handle("stream", s.id()))
    }

    fn event_of(state: &State, e: &Event) -> Result<Handle, DeviceError> {
        state
            .events
            .get(&e.id())
            .copied()
            .ok_or(DeviceError::stale_handle("event", e.id()))
    }

    /// The device address of a view, checked against its allocation.
    fn view_ptr(state: &State, v: &BufferView) -> Result<Handle, DeviceError> {
        let a = Self::allocation(state, &v.buffer())?;
        Ok(v.address_in(a.ptr, a.len)? as usize as Handle)
    }
}

fn size_mismatch(buffer_bytes: u64, host_bytes: usize) -> DeviceError {
    DeviceError::SizeMismatch {
        buffer_bytes,
        host_bytes: host_bytes as u64,
    }
}

impl Device for HipDevice {
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
                    "this GPU runs {}; cannot load `{}` compiled for {}",
                    self.caps.target, req.kernel_name, req.target
                ),
            });
        }
        if !req.tensor_maps.is_empty() {
            return Err(DeviceError::Unsupported {
                message: format!(
                    "`{}` takes tensor maps (TMA), which AMD GPUs do not have",
                    req.kernel_name
                ),
            });
        }
        // hiprtc runs without the lock, so several threads can compile at once.
        let (report, cache) = rtc::compile(
            self.cache.as_ref(),
            &req.source,
            &req.kernel_name,
            req.target,
            &req.options,
        )?;
        let mut state = self.enter()?;
        let (loaded, from_runtime) = self.load(&report)?;
        let module = Module::new(
            req,
            ModuleReport {
                usage: report.usage.or(from_runtime),
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
        self.check("hipModuleUnload", unsafe {
            (self.hip.api.hipModuleUnload)(loaded.module)
        })
    }

    fn alloc(&self, bytes: u64) -> Result<Buffer, DeviceError> {
        if bytes > self.info.memory_bytes {
            return Err(DeviceError::OutOfMemory { bytes });
        }
        let mut state = self.enter()?;
        let a = self.malloc(bytes)?;
        let buffer = Buffer::fresh(bytes);
        state.buffers.insert(buffer.id(), a);
        Ok(buffer)
    }

    fn free(&self, buffer: Buffer) -> Result<(), DeviceError> {
        let mut state = self.enter()?;
        let a = state
            .buffers
            .remove(&buffer.id())
            .ok_or(DeviceError::InvalidBuffer { id: buffer.id() })?;
        // SAFETY: allocated by this device, removed from the table, freed once.
        self.check("hipFree", unsafe { (self.hip.api.hipFree)(a.handle()) })
    }

    fn upload(&self, buffer: &Buffer, data: &[u8]) -> Result<(), DeviceError> {
        let state = self.enter()?;
        let a = Self::allocation(&state, buffer)?;
        if a.len != data.len() as u64 {
            return Err(size_mismatch(a.len, data.len()));
        }
        if data.is_empty() {
            return Ok(());
        }
        // SAFETY: the allocation holds exactly `data.len()` bytes; HIP only reads the source.
        self.check("hipMemcpyHtoD", unsafe {
            (self.hip.api.hipMemcpyHtoD)(a.handle(), data.as_ptr() as *mut c_void, data.len())
        })
    }

    fn download(&self, buffer: &Buffer, out: &mut [u8]) -> Result<(), DeviceError> {
        let state = self.enter()?;
        let a = Self::allocation(&state, buffer)?;
        if a.len != out.len() as u64 {
            return Err(size_mismatch(a.len, out.len()));
        }
        if out.is_empty() {
            return Ok(());
        }
        // SAFETY: the allocation and `out` both hold exactly `out.len()` bytes.
        self.check("hipMemcpyDtoH", unsafe {
            (self.hip.api.hipMemcpyDtoH)(out.as_mut_ptr().cast(), a.handle(), out.len())
        })
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
        self.check("hipMemsetD8", unsafe {
            (self.hip.api.hipMemsetD8)(a.handle(), byte, len)
        })
    }

    fn launch(
        &self,
        module: &Module,
        launch: &Launch,
        args: &[ArgValue],
    ) -> Result<(), DeviceError> {
        let kernel = module.kernel_name();
        let state = self.enter()?;
        let (function, mut slots) = self.prepare(&state, module, launch, args)?;
        self.launch_err(
            kernel,
            self.enqueue(function, launch, &mut slots, null_stream()),
        )?;
        // SAFETY: no arguments.
        self.launch_err(kernel, unsafe { (self.hip.api.hipDeviceSynchronize)() })
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
        let api = &self.hip.api;
        let mut state = self.enter()?;
        let (function, mut slots) = self.prepare(&state, module, launch, args)?;
        let flush = if l2_flush {
            Some(self.flush_buffer(&mut state)?)
        } else {
            None
        };
        for _ in 0..warmup {
            self.launch_err(
                kernel,
                self.enqueue(function, launch, &mut slots, null_stream()),
            )?;
        }
        // SAFETY: no arguments.
        self.launch_err(kernel, unsafe { (api.hipDeviceSynchronize)() })?;

        let mut events = Events {
            hip: self.hip,
            raw: Vec::with_capacity(2 * iters as usize),
        };
        for _ in 0..2 * iters {
            let mut ev: Handle = std::ptr::null_mut();
            // SAFETY: valid out-pointer.
            self.check("hipEventCreate", unsafe { (api.hipEventCreate)(&mut ev) })?;
            events.raw.push(ev);
        }
        for (i, pair) in events.raw.chunks_exact(2).enumerate() {
            if let Some(f) = flush {
                let len = usize::try_from(f.len)
                    .map_err(|_| DeviceError::OutOfMemory { bytes: f.len })?;
                // A different byte each time, so no layer can skip the write.
                // SAFETY: the flush allocation holds `len` bytes.
                self.check("hipMemsetD8Async", unsafe {
                    (api.hipMemsetD8Async)(f.handle(), i as u8, len, null_stream())
                })?;
            }
            // SAFETY: events created above, recorded on the null stream.
            self.check("hipEventRecord", unsafe {
                (api.hipEventRecord)(pair[0], null_stream())
            })?;
            self.launch_err(
                kernel,
                self.enqueue(function, launch, &mut slots, null_stream()),
            )?;
            // SAFETY: as above.
            self.check("hipEventRecord", unsafe {
                (api.hipEventRecord)(pair[1], null_stream())
            })?;
        }
        // SAFETY: no arguments.
        self.launch_err(kernel, unsafe { (api.hipDeviceSynchronize)() })?;
        let mut samples = Vec::with_capacity(iters as usize);
        for pair in events.raw.chunks_exact(2) {
            let mut ms: c_float = 0.0;
            // SAFETY: both events were recorded and have completed (synchronized above).
            self.check("hipEventElapsedTime", unsafe {
                (api.hipEventElapsedTime)(&mut ms, pair[0], pair[1])
            })?;
            samples.push(f64::from(ms));
        }
        Timing::new(samples, false, l2_flush)
    }

    fn synchronize(&self) -> Result<(), DeviceError> {
        let _state = self.enter()?;
        // SAFETY: no arguments.
        self.check("hipDeviceSynchronize", unsafe {
            (self.hip.api.hipDeviceSynchronize)()
        })
    }

    fn create_stream(&self) -> Result<Stream, DeviceError> {
        let mut state = self.enter()?;
        let mut raw: Handle = std::ptr::null_mut();
        // SAFETY: valid out-pointer.
        self.check("hipStreamCreateWithFlags", unsafe {
            (self.hip.api.hipStreamCreateWithFlags)(&mut raw, api::STREAM_NON_BLOCKING)
        })?;
        let s = Stream::fresh();
        state.streams.insert(s.id(), raw);
        Ok(s)
    }

    fn destroy_stream(&self, s: Stream) -> Result<(), DeviceError> {
        let mut state = self.enter()?;
        let raw = Self::stream_of(&state, &s)?;
        state.streams.remove(&s.id());
        // SAFETY: created by this device, removed from the table, destroyed once (queued work
        // finishes first).
        self.check("hipStreamDestroy", unsafe {
            (self.hip.api.hipStreamDestroy)(raw)
        })
    }

    fn launch_async(
        &self,
        s: &Stream,
        module: &Module,
        launch: &Launch,
        args: &[ArgValue],
    ) -> Result<(), DeviceError> {
        let kernel = module.kernel_name();
        let state = self.enter()?;
        let raw = Self::stream_of(&state, s)?;
        let (function, mut slots) = self.prepare(&state, module, launch, args)?;
        self.launch_err(kernel, self.enqueue(function, launch, &mut slots, raw))
    }

    fn upload_view(&self, s: &Stream, view: &BufferView, data: &[u8]) -> Result<(), DeviceError> {
        let state = self.enter()?;
        let raw = Self::stream_of(&state, s)?;
        if data.len() as u64 != view.len() {
            return Err(size_mismatch(view.len(), data.len()));
        }
        let ptr = Self::view_ptr(&state, view)?;
        if data.is_empty() {
            return Ok(());
        }
        // SAFETY: the view lies inside a live allocation; the stream is synchronized before
        // `data` can be dropped; HIP only reads the source.
        self.check("hipMemcpyHtoDAsync", unsafe {
            (self.hip.api.hipMemcpyHtoDAsync)(ptr, data.as_ptr() as *mut c_void, data.len(), raw)
        })?;
        // SAFETY: a live stream of this device.
        self.check("hipStreamSynchronize", unsafe {
            (self.hip.api.hipStreamSynchronize)(raw)
        })
    }

    fn download_view(
        &self,
        s: &Stream,
        view: &BufferView,
        out: &mut [u8],
    ) -> Result<(), DeviceError> {
        let state = self.enter()?;
        let raw = Self::stream_of(&state, s)?;
        if out.len() as u64 != view.len() {
            return Err(size_mismatch(view.len(), out.len()));
        }
        let ptr = Self::view_ptr(&state, view)?;
        if out.is_empty() {
            return Ok(());
        }
        // SAFETY: as in `upload_view`; `out` is written before the synchronize returns.
        self.check("hipMemcpyDtoHAsync", unsafe {
            (self.hip.api.hipMemcpyDtoHAsync)(out.as_mut_ptr().cast(), ptr, out.len(), raw)
        })?;
        // SAFETY: a live stream of this device.
        self.check("hipStreamSynchronize", unsafe {
            (self.hip.api.hipStreamSynchronize)(raw)
        })
    }

    fn synchronize_stream(&self, s: &Stream) -> Result<(), DeviceError> {
        let state = self.enter()?;
        let raw = Self::stream_of(&state, s)?;
        // SAFETY: a live stream of this device.
        self.check("hipStreamSynchronize", unsafe {
            (self.hip.api.hipStreamSynchronize)(raw)
        })
    }

    fn record_event(&self, s: &Stream) -> Result<Event, DeviceError> {
        let mut state = self.enter()?;
        let raw = Self::stream_of(&state, s)?;
        let api = &self.hip.api;
        let mut ev: Handle = std::ptr::null_mut();
        // SAFETY: valid out-pointer.
        self.check("hipEventCreate", unsafe { (api.hipEventCreate)(&mut ev) })?;
        // SAFETY: a fresh event and a live stream of this device.
        if let Err(e) = self.check("hipEventRecord", unsafe { (api.hipEventRecord)(ev, raw) }) {
            // SAFETY: created above, destroyed once.
            let _ = unsafe { (api.hipEventDestroy)(ev) };
            return Err(e);
        }
        let e = Event::fresh();
        state.events.insert(e.id(), ev);
        Ok(e)
    }

    fn elapsed_ms(&self, start: &Event, end: &Event) -> Result<f64, DeviceError> {
        let state = self.enter()?;
        let (a, b) = (Self::event_of(&state, start)?, Self::event_of(&state, end)?);
        // SAFETY: a live, recorded event.
        self.check("hipEventSynchronize", unsafe {
            (self.hip.api.hipEventSynchronize)(b)
        })?;
        let mut ms: c_float = 0.0;
        // SAFETY: both events are live and recorded; `b` has completed.
        self.check("hipEventElapsedTime", unsafe {
            (self.hip.api.hipEventElapsedTime)(&mut ms, a, b)
        })?;
        Ok(f64::from(ms))
    }

    fn destroy_event(&self, e: Event) -> Result<(), DeviceError> {
        let mut state = self.enter()?;
        let ev = state
            .events
            .remove(&e.id())
            .ok_or(DeviceError::stale_handle("event", e.id()))?;
        // SAFETY: created by this device, removed from the table, destroyed once.
        self.check("hipEventDestroy", unsafe {
            (self.hip.api.hipEventDestroy)(ev)
        })
    }
}

impl Drop for HipDevice {
    /// Release everything still held. Errors are ignored: after a kernel fault the device is
    /// unusable and the runtime reclaims everything at exit.
    fn drop(&mut self) {
        let hip: &'static Hip = self.hip;
        let api = &hip.api;
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        // SAFETY: the ordinal was valid when the device was opened.
        if unsafe { (api.hipSetDevice)(self.ordinal) } != api::SUCCESS {
            return;
        }
        // SAFETY: no arguments.
        let _ = unsafe { (api.hipDeviceSynchronize)() };
        for (_, e) in state.events.drain() {
            // SAFETY: created by this device, destroyed once.
            let _ = unsafe { (api.hipEventDestroy)(e) };
        }
        for (_, s) in state.streams.drain() {
            // SAFETY: created by this device, destroyed once.
            let _ = unsafe { (api.hipStreamDestroy)(s) };
        }
        for (_, a) in state
            .buffers
            .drain()
            .chain(state.flush.take().map(|f| (0, f)))
        {
            // SAFETY: allocated by this device, freed once.
            let _ = unsafe { (api.hipFree)(a.handle()) };
        }
        for (_, m) in state.modules.drain() {
            // SAFETY: loaded by this device, unloaded once.
            let _ = unsafe { (api.hipModuleUnload)(m.module) };
        }
    }
}
