//! The simulated device: a deterministic fake for CI and machines without a GPU.
//!
//! Memory is host byte vectors ([`SimMemory`]). `compile` records the source and calls no
//! compiler (it only checks the kernel's name appears in it). `launch` runs the request's
//! [`Emulation`](crate::Emulation), a CPU stand-in that reads and writes the buffers, so the
//! simulated device really computes outputs; without one it is a typed `Unsupported` error.
//! `time` runs nothing: it returns the analytic roofline of [`roofline`] with deterministic
//! noise. Streams run their work at once (in order, on the host); a capture records launches
//! (checked as they are recorded) and a graph replays them through the emulations; events read
//! a simulated clock that each launch advances by its roofline time. Kernels that take a
//! [`BufferView`] see it as a buffer of its own: the emulation gets a temporary copy of the
//! range, and the ranges the kernel writes are copied back. The device is always labelled simulated: `info().simulated`, every `Timing`, the
//! name (`simulated ...`) and the cache fingerprint.
//!
//! This module depends on `tessera-dsl` and this crate's vocabulary; never on a driver or NVRTC.

mod memory;
pub mod roofline;

pub use memory::SimMemory;

use crate::compile::{
    CacheOutcome, CompileRequest, Emulation, Module, ModuleReport, ResourceUsage,
};
use crate::error::DeviceError;
use crate::info::DeviceInfo;
use crate::launch::{check_args, resolve_tensor_maps, ArgValue, Launch};
use crate::memory::{Buffer, BufferView};
use crate::stream::{Event, Graph, Stream};
use crate::timing::Timing;
use crate::Device;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use tessera_dsl::{DeviceCaps, GpuModel, Target};

/// A module as the simulated device holds it.
struct SimModule {
    source: String,
    emulation: Option<Emulation>,
}

/// One launch as a capture records it.
struct Recorded {
    module: Module,
    launch: Launch,
    args: Vec<ArgValue>,
}

struct State {
    memory: SimMemory,
    modules: HashMap<u64, SimModule>,
    /// Streams, with the launches recorded while one is capturing.
    streams: HashMap<u64, Option<Vec<Recorded>>>,
    graphs: HashMap<u64, Vec<Recorded>>,
    /// The simulated clock (ms) at each event's record.
    events: HashMap<u64, f64>,
    clock_ms: f64,
}

/// A simulated GPU of one target.
pub struct SimDevice {
    caps: DeviceCaps,
    memory_bytes: u64,
    state: Mutex<State>,
}

/// Memory of the flagship part of each target, bytes.
impl SimDevice {
    /// A simulated device of the target's reference model (A100, H100, MI250, MI300).
    pub fn new(target: Target) -> SimDevice {
        SimDevice::for_model(GpuModel::reference_of(target))
    }

    /// A simulated device of `model`: its datasheet caps and memory, named `simulated <part>`
    /// (so an H200's rows never mix with an H100's in a cache).
    pub fn for_model(model: GpuModel) -> SimDevice {
        SimDevice::with_caps(model.caps(), model.memory_bytes())
    }

    /// Like [`SimDevice::new`] with a chosen memory capacity (to exercise out-of-memory paths).
    pub fn with_memory_bytes(target: Target, memory_bytes: u64) -> SimDevice {
        SimDevice::with_caps(target.nominal_caps(), memory_bytes)
    }

    fn with_caps(mut caps: DeviceCaps, memory_bytes: u64) -> SimDevice {
        caps.name = format!("simulated {}", caps.name);
        SimDevice {
            caps,
            memory_bytes,
            state: Mutex::new(State {
                memory: SimMemory::new(memory_bytes),
                modules: HashMap::new(),
                streams: HashMap::new(),
                graphs: HashMap::new(),
                events: HashMap::new(),
                clock_ms: 0.0,
            }),
        }
    }

    /// The source a module was compiled from (the simulated device keeps it for inspection).
    pub fn module_source(&self, module: &Module) -> Option<String> {
        self.lock()
            .modules
            .get(&module.id())
            .map(|m| m.source.clone())
    }

    /// Bytes currently allocated.
    pub fn used_bytes(&self) -> u64 {
        self.lock().memory.used()
    }

    /// An emulation that panicked while holding the lock must not wedge the device: the state
    /// it guards stays consistent (buffers are plain bytes), so recover it.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn check_launch(
        &self,
        state: &State,
        module: &Module,
        launch: &Launch,
        args: &[ArgValue],
    ) -> Result<(), DeviceError> {
        let kernel = module.kernel_name();
        if !state.modules.contains_key(&module.id()) {
            return Err(DeviceError::UnknownModule {
                kernel: kernel.to_string(),
            });
        }
        launch.check_shape(kernel)?;
        check_args(kernel, module.abi(), args)?;
        resolve_tensor_maps(kernel, module.abi(), module.tensor_maps(), args, launch)?;
        for b in args.iter().filter_map(ArgValue::buffer) {
            if !state.memory.contains(&b) {
                return Err(DeviceError::InvalidBuffer { id: b.id() });
            }
        }
        launch.check_limits(kernel, &self.caps)
    }

    /// Check and run one launch through its emulation (views as temporary buffers), then
    /// advance the clock.
    fn run(
        &self,
        state: &mut State,
        module: &Module,
        launch: &Launch,
        args: &[ArgValue],
    ) -> Result<(), DeviceError> {
        self.check_launch(state, module, launch, args)?;
        let kernel = module.kernel_name();
        let emulation = state
            .modules
            .get(&module.id())
            .and_then(|m| m.emulation.clone())
            .ok_or_else(|| DeviceError::Unsupported {
                message: format!(
                    "the simulated device cannot run `{kernel}`: no emulation was supplied with its compile request"
                ),
            })?;
        // views become temporary buffers holding a copy of their range
        let mut temps: Vec<(usize, BufferView, Buffer)> = Vec::new();
        let mut plain = args.to_vec();
        let mut result = Ok(());
        for (i, a) in args.iter().enumerate() {
            if let ArgValue::View(v) = a {
                match Self::materialize(&mut state.memory, v) {
                    Ok(t) => {
                        plain[i] = ArgValue::ptr(&t);
                        temps.push((i, *v, t));
                    }
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
        }
        if result.is_ok() {
            result = emulation(&mut state.memory, &plain).map_err(|message| DeviceError::Launch {
                kernel: kernel.to_string(),
                message,
            });
        }
        for (i, v, t) in temps {
            let written = matches!(
                module.abi().get(i),
                Some(tessera_dsl::ir::Arg::Ptr { written: true, .. })
            );
            if written && result.is_ok() {
                if let Ok(bytes) = state.memory.bytes(&t).map(<[u8]>::to_vec) {
                    let start = v.offset() as usize;
                    if let Ok(dst) = state.memory.bytes_mut(&v.buffer()) {
                        dst[start..start + bytes.len()].copy_from_slice(&bytes);
                    }
                }
            }
            let _ = state.memory.free(&t);
        }
        result?;
        if let Some(cost) = launch.cost.or(module.cost()) {
            state.clock_ms += roofline::model_ms(&self.caps, &cost);
        }
        Ok(())
    }

    fn materialize(memory: &mut SimMemory, v: &BufferView) -> Result<Buffer, DeviceError> {
        let bytes = Self::view_bytes(memory, v)?.to_vec();
        let t = memory.alloc(v.len())?;
        memory.bytes_mut(&t)?.copy_from_slice(&bytes);
        Ok(t)
    }

    /// The bytes of a view (its buffer must be live here and still hold the range).
    fn view_bytes<'m>(memory: &'m SimMemory, v: &BufferView) -> Result<&'m [u8], DeviceError> {
        let all = memory.bytes(&v.buffer())?;
        let (start, end) = (v.offset() as usize, (v.offset() + v.len()) as usize);
        all.get(start..end).ok_or(DeviceError::InvalidView {
            buffer: v.buffer().id(),
            offset: v.offset(),
            message: "the range is outside the buffer".into(),
        })
    }

    fn stream_state<'s>(
        state: &'s mut State,
        stream: &Stream,
    ) -> Result<&'s mut Option<Vec<Recorded>>, DeviceError> {
        state
            .streams
            .get_mut(&stream.id())
            .ok_or(DeviceError::stale_handle("stream", stream.id()))
    }

    /// Copies are not allowed in a capture (as on CUDA, where they would be recorded).
    fn not_capturing(state: &mut State, stream: &Stream, what: &str) -> Result<(), DeviceError> {
        if Self::stream_state(state, stream)?.is_some() {
            return Err(DeviceError::InvalidHandle {
                what: "stream",
                id: stream.id(),
                message: format!("is capturing; {what} is not allowed during a capture"),
            });
        }
        Ok(())
    }
}

impl Device for SimDevice {
    fn caps(&self) -> &DeviceCaps {
        &self.caps
    }

    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            ordinal: 0,
            name: self.caps.name.clone(),
            target: Some(self.caps.target),
            arch: self.caps.target.name().to_string(),
            sm_count: self.caps.sm_count,
            memory_bytes: self.memory_bytes,
            driver_version: "simulated".into(),
            toolchain: "none (simulated)".into(),
            simulated: true,
        }
    }

    fn compile(&self, req: &CompileRequest) -> Result<Module, DeviceError> {
        if req.target != self.caps.target {
            return Err(DeviceError::Unsupported {
                message: format!(
                    "this simulated device is {}; cannot compile `{}` for {}",
                    self.caps.target, req.kernel_name, req.target
                ),
            });
        }
        if !req.source.contains(req.kernel_name.as_str()) {
            return Err(DeviceError::Compile {
                kernel: req.kernel_name.clone(),
                log: format!("kernel `{}` is not defined in the source", req.kernel_name),
            });
        }
        if let Some(cost) = &req.cost {
            cost.check(&req.kernel_name)?;
        }
        let module = Module::new(
            req,
            ModuleReport {
                usage: ResourceUsage::default(),
                compile_seconds: 0.0,
                cache: CacheOutcome::Disabled,
                toolchain: "none (simulated)".into(),
                log: String::new(),
            },
        );
        self.lock().modules.insert(
            module.id(),
            SimModule {
                source: req.source.clone(),
                emulation: req.emulation.clone(),
            },
        );
        Ok(module)
    }

    fn unload(&self, module: &Module) -> Result<(), DeviceError> {
        self.lock()
            .modules
            .remove(&module.id())
            .map(|_| ())
            .ok_or_else(|| DeviceError::UnknownModule {
                kernel: module.kernel_name().to_string(),
            })
    }

    fn alloc(&self, bytes: u64) -> Result<Buffer, DeviceError> {
        self.lock().memory.alloc(bytes)
    }

    fn free(&self, buffer: Buffer) -> Result<(), DeviceError> {
        self.lock().memory.free(&buffer)
    }

    fn upload(&self, buffer: &Buffer, data: &[u8]) -> Result<(), DeviceError> {
        let mut state = self.lock();
        let dst = state.memory.bytes_mut(buffer)?;
        if dst.len() != data.len() {
            return Err(DeviceError::SizeMismatch {
                buffer_bytes: dst.len() as u64,
                host_bytes: data.len() as u64,
            });
        }
        dst.copy_from_slice(data);
        Ok(())
    }

    fn download(&self, buffer: &Buffer, out: &mut [u8]) -> Result<(), DeviceError> {
        let state = self.lock();
        let src = state.memory.bytes(buffer)?;
        if src.len() != out.len() {
            return Err(DeviceError::SizeMismatch {
                buffer_bytes: src.len() as u64,
                host_bytes: out.len() as u64,
            });
        }
        out.copy_from_slice(src);
        Ok(())
    }

    fn fill(&self, buffer: &Buffer, byte: u8) -> Result<(), DeviceError> {
        self.lock().memory.bytes_mut(buffer)?.fill(byte);
        Ok(())
    }

    fn launch(
        &self,
        module: &Module,
        launch: &Launch,
        args: &[ArgValue],
    ) -> Result<(), DeviceError> {
        let mut state = self.lock();
        self.run(&mut state, module, launch, args)
    }

    fn time(
        &self,
        module: &Module,
        launch: &Launch,
        args: &[ArgValue],
        _warmup: u32,
        iters: u32,
        l2_flush: bool,
    ) -> Result<Timing, DeviceError> {
        let kernel = module.kernel_name();
        {
            let state = self.lock();
            self.check_launch(&state, module, launch, args)?;
        }
        if iters == 0 {
            return Err(DeviceError::InvalidRequest {
                message: format!("timing `{kernel}` needs at least one iteration"),
            });
        }
        let cost = launch.cost.or(module.cost()).ok_or_else(|| DeviceError::Unsupported {
            message: format!(
                "the simulated device cannot time `{kernel}`: neither its launch nor its compile request carries a cost"
            ),
        })?;
        cost.check(kernel)?;
        Timing::new(
            roofline::samples_ms(&self.caps, &cost, kernel, iters),
            true,
            l2_flush,
        )
    }

    fn synchronize(&self) -> Result<(), DeviceError> {
        Ok(())
    }

    fn create_stream(&self) -> Result<Stream, DeviceError> {
        let s = Stream::fresh();
        self.lock().streams.insert(s.id(), None);
        Ok(s)
    }

    fn destroy_stream(&self, stream: Stream) -> Result<(), DeviceError> {
        let mut state = self.lock();
        Self::stream_state(&mut state, &stream)?;
        state.streams.remove(&stream.id());
        Ok(())
    }

    fn launch_async(
        &self,
        stream: &Stream,
        module: &Module,
        launch: &Launch,
        args: &[ArgValue],
    ) -> Result<(), DeviceError> {
        let mut state = self.lock();
        if Self::stream_state(&mut state, stream)?.is_some() {
            self.check_launch(&state, module, launch, args)?;
            if let Some(Some(rec)) = state.streams.get_mut(&stream.id()) {
                rec.push(Recorded {
                    module: module.clone(),
                    launch: *launch,
                    args: args.to_vec(),
                });
            }
            return Ok(());
        }
        self.run(&mut state, module, launch, args)
    }

    fn upload_view(
        &self,
        stream: &Stream,
        view: &BufferView,
        data: &[u8],
    ) -> Result<(), DeviceError> {
        let mut state = self.lock();
        Self::not_capturing(&mut state, stream, "a copy")?;
        if data.len() as u64 != view.len() {
            return Err(DeviceError::SizeMismatch {
                buffer_bytes: view.len(),
                host_bytes: data.len() as u64,
            });
        }
        Self::view_bytes(&state.memory, view)?;
        let start = view.offset() as usize;
        state.memory.bytes_mut(&view.buffer())?[start..start + data.len()].copy_from_slice(data);
        Ok(())
    }

    fn download_view(
        &self,
        stream: &Stream,
        view: &BufferView,
        out: &mut [u8],
    ) -> Result<(), DeviceError> {
        let mut state = self.lock();
        Self::not_capturing(&mut state, stream, "a copy")?;
        if out.len() as u64 != view.len() {
            return Err(DeviceError::SizeMismatch {
                buffer_bytes: view.len(),
                host_bytes: out.len() as u64,
            });
        }
        out.copy_from_slice(Self::view_bytes(&state.memory, view)?);
        Ok(())
    }

    fn synchronize_stream(&self, stream: &Stream) -> Result<(), DeviceError> {
        Self::stream_state(&mut self.lock(), stream).map(|_| ())
    }

    fn begin_capture(&self, stream: &Stream) -> Result<(), DeviceError> {
        let mut state = self.lock();
        let s = Self::stream_state(&mut state, stream)?;
        if s.is_some() {
            return Err(DeviceError::InvalidHandle {
                what: "stream",
                id: stream.id(),
                message: "is capturing already".into(),
            });
        }
        *s = Some(Vec::new());
        Ok(())
    }

    fn end_capture(&self, stream: &Stream) -> Result<Graph, DeviceError> {
        let mut state = self.lock();
        let recorded =
            Self::stream_state(&mut state, stream)?
                .take()
                .ok_or(DeviceError::InvalidHandle {
                    what: "stream",
                    id: stream.id(),
                    message: "is not capturing".into(),
                })?;
        let g = Graph::fresh();
        state.graphs.insert(g.id(), recorded);
        Ok(g)
    }

    fn launch_graph(&self, graph: &Graph, stream: &Stream) -> Result<(), DeviceError> {
        let mut state = self.lock();
        Self::not_capturing(&mut state, stream, "a graph launch")?;
        let recorded = state
            .graphs
            .remove(&graph.id())
            .ok_or(DeviceError::stale_handle("graph", graph.id()))?;
        let result = recorded
            .iter()
            .try_for_each(|r| self.run(&mut state, &r.module, &r.launch, &r.args));
        state.graphs.insert(graph.id(), recorded);
        result
    }

    fn destroy_graph(&self, graph: Graph) -> Result<(), DeviceError> {
        self.lock()
            .graphs
            .remove(&graph.id())
            .map(|_| ())
            .ok_or(DeviceError::stale_handle("graph", graph.id()))
    }

    fn record_event(&self, stream: &Stream) -> Result<Event, DeviceError> {
        let mut state = self.lock();
        Self::not_capturing(&mut state, stream, "an event record")?;
        let e = Event::fresh();
        let now = state.clock_ms;
        state.events.insert(e.id(), now);
        Ok(e)
    }

    fn elapsed_ms(&self, start: &Event, end: &Event) -> Result<f64, DeviceError> {
        let state = self.lock();
        let at = |e: &Event| {
            state
                .events
                .get(&e.id())
                .copied()
                .ok_or(DeviceError::stale_handle("event", e.id()))
        };
        Ok(at(end)? - at(start)?)
    }

    fn destroy_event(&self, event: Event) -> Result<(), DeviceError> {
        self.lock()
            .events
            .remove(&event.id())
            .map(|_| ())
            .ok_or(DeviceError::stale_handle("event", event.id()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launch::Cost;
    use std::sync::Arc;
    use tessera_dsl::ir::Arg;
    use tessera_dsl::DType;

    const SRC: &str = "extern \"C\" __global__ void scale(float* x, int n, float a) {}";

    fn abi() -> Vec<Arg> {
        vec![
            Arg::Ptr {
                name: "x",
                dtype: DType::F32,
                written: true,
            },
            Arg::I32("n"),
            Arg::F32("a"),
        ]
    }

    /// x[i] *= a for i < n, on the simulated memory.
    fn scale_emulation() -> Emulation {
        Arc::new(|mem: &mut SimMemory, args: &[ArgValue]| {
            let (Some(x), ArgValue::I32(n), ArgValue::F32(a)) =
                (args[0].buffer(), args[1], args[2])
            else {
                return Err("bad arguments".into());
            };
            let mut v = mem.read_f32(&x).map_err(|e| e.to_string())?;
            let n = usize::try_from(n).map_err(|_| "negative n".to_string())?;
            if n > v.len() {
                return Err(format!("out-of-bounds: n = {n} but x holds {}", v.len()));
            }
            v[..n].iter_mut().for_each(|e| *e *= a);
            mem.write_f32(&x, &v).map_err(|e| e.to_string())
        })
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn a_simulated_h200_is_not_a_simulated_h100() {
        let (h100, h200) = (
            SimDevice::new(Target::Sm90a),
            SimDevice::for_model(GpuModel::H200),
        );
        assert_eq!(h100.info().name, "simulated NVIDIA H100 SXM (nominal)");
        assert_eq!(h200.info().name, "simulated NVIDIA H200 SXM (nominal)");
        assert_eq!(h200.caps().mem_bandwidth_gbs, 4800.0);
        assert_eq!(h200.info().memory_bytes, 141 << 30);
        assert_eq!(h200.caps().target, Target::Sm90a);
    }

    #[test]
    fn info_is_labelled_simulated() {
        let d = SimDevice::new(Target::Sm90a);
        let info = d.info();
        assert!(info.simulated);
        assert!(info.name.starts_with("simulated NVIDIA H100"));
        assert_eq!(info.target, Some(Target::Sm90a));
        assert_eq!(d.caps().sm_count, 132);
        assert!(info.fingerprint().starts_with("sim:"));
    }

    #[test]
    fn alloc_upload_download_round_trip() {
        let d = SimDevice::new(Target::Sm80);
        let b = d.alloc(16).unwrap();
        assert_eq!(b.len(), 16);
        let data: Vec<u8> = (0..16).collect();
        d.upload(&b, &data).unwrap();
        let mut out = vec![0u8; 16];
        d.download(&b, &mut out).unwrap();
        assert_eq!(out, data);
        assert!(matches!(
            d.upload(&b, &[1, 2]),
            Err(DeviceError::SizeMismatch { .. })
        ));
        assert_eq!(d.used_bytes(), 16);
        d.free(b).unwrap();
        assert_eq!(d.used_bytes(), 0);
        assert_eq!(
            d.download(&b, &mut out),
            Err(DeviceError::InvalidBuffer { id: b.id() })
        );
    }

    #[test]
    fn fill_poisons_every_byte() {
        let d = SimDevice::new(Target::Sm80);
        let b = d.alloc(9).unwrap();
        d.fill(&b, 0xAB).unwrap();
        let mut out = vec![0u8; 9];
        d.download(&b, &mut out).unwrap();
        assert!(out.iter().all(|&x| x == 0xAB));
    }

    #[test]
    fn absurd_allocation_is_an_error_not_a_panic() {
        let d = SimDevice::new(Target::Sm90a);
        assert_eq!(
            d.alloc(u64::MAX),
            Err(DeviceError::OutOfMemory { bytes: u64::MAX })
        );
        let small = SimDevice::with_memory_bytes(Target::Sm80, 1024);
        let _a = small.alloc(1000).unwrap();
        assert_eq!(
            small.alloc(100),
            Err(DeviceError::OutOfMemory { bytes: 100 })
        );
    }

    #[test]
    fn emulation_computes_outputs() {
        let d = SimDevice::new(Target::Sm80);
        let req = CompileRequest::new("scale", SRC, Target::Sm80, abi())
            .with_emulation(scale_emulation());
        let m = d.compile(&req).unwrap();
        assert_eq!(d.module_source(&m).as_deref(), Some(SRC));
        assert_eq!(m.report().cache, CacheOutcome::Disabled);
        let x = d.alloc(16).unwrap();
        d.upload(&x, &f32_bytes(&[1.0, 2.0, 3.0, 4.0])).unwrap();
        let launch = Launch::new([1, 1, 1], [4, 1, 1]);
        d.launch(&m, &launch, &[ArgValue::ptr(&x), 3.into(), 2.0f32.into()])
            .unwrap();
        let mut out = vec![0u8; 16];
        d.download(&x, &mut out).unwrap();
        assert_eq!(out, f32_bytes(&[2.0, 4.0, 6.0, 4.0]));

        // An emulation failure is a launch error naming the kernel.
        let e = d
            .launch(&m, &launch, &[ArgValue::ptr(&x), 5.into(), 2.0f32.into()])
            .unwrap_err();
        assert!(
            matches!(&e, DeviceError::Launch { kernel, .. } if kernel == "scale"),
            "{e}"
        );
    }

    #[test]
    fn no_emulation_is_unsupported() {
        let d = SimDevice::new(Target::Sm80);
        let m = d
            .compile(&CompileRequest::new("scale", SRC, Target::Sm80, abi()))
            .unwrap();
        let x = d.alloc(16).unwrap();
        let e = d
            .launch(
                &m,
                &Launch::new([1, 1, 1], [4, 1, 1]),
                &[ArgValue::ptr(&x), 4.into(), 1.0f32.into()],
            )
            .unwrap_err();
        assert!(matches!(e, DeviceError::Unsupported { .. }), "{e}");
        assert!(e.to_string().contains("scale"));
    }

    #[test]
    fn arg_mismatch_and_stale_handles() {
        let d = SimDevice::new(Target::Sm80);
        let m = d
            .compile(
                &CompileRequest::new("scale", SRC, Target::Sm80, abi())
                    .with_emulation(scale_emulation()),
            )
            .unwrap();
        let x = d.alloc(16).unwrap();
        let l = Launch::new([1, 1, 1], [4, 1, 1]);
        let e = d
            .launch(&m, &l, &[ArgValue::ptr(&x), 4i64.into(), 1.0f32.into()])
            .unwrap_err();
        assert!(
            matches!(&e, DeviceError::ArgMismatch { kernel, .. } if kernel == "scale"),
            "{e}"
        );
        let e = d.launch(&m, &l, &[ArgValue::ptr(&x)]).unwrap_err();
        assert!(matches!(e, DeviceError::ArgMismatch { .. }));
        // A buffer from another device is not ours.
        let other = SimDevice::new(Target::Sm80);
        let y = other.alloc(16).unwrap();
        let e = d
            .launch(&m, &l, &[ArgValue::ptr(&y), 4.into(), 1.0f32.into()])
            .unwrap_err();
        assert_eq!(e, DeviceError::InvalidBuffer { id: y.id() });
        // Too many threads fails like a real launch.
        let e = d
            .launch(
                &m,
                &Launch::new([1, 1, 1], [2048, 1, 1]),
                &[ArgValue::ptr(&x), 4.into(), 1.0f32.into()],
            )
            .unwrap_err();
        assert!(matches!(e, DeviceError::Launch { .. }), "{e}");
        d.unload(&m).unwrap();
        let e = d
            .launch(&m, &l, &[ArgValue::ptr(&x), 4.into(), 1.0f32.into()])
            .unwrap_err();
        assert!(matches!(e, DeviceError::UnknownModule { .. }));
    }

    #[test]
    fn compile_checks_target_and_symbol() {
        let d = SimDevice::new(Target::Sm80);
        let e = d
            .compile(&CompileRequest::new("scale", SRC, Target::Sm90a, abi()))
            .unwrap_err();
        assert!(matches!(e, DeviceError::Unsupported { .. }));
        let e = d
            .compile(&CompileRequest::new("missing", SRC, Target::Sm80, abi()))
            .unwrap_err();
        assert!(matches!(&e, DeviceError::Compile { kernel, .. } if kernel == "missing"));
    }

    #[test]
    fn timing_is_deterministic_simulated_and_roofline_shaped() {
        let d = SimDevice::new(Target::Sm90a);
        let cost = Cost::new(2.0 * 4096f64.powi(3), 3.0 * 4096.0 * 4096.0 * 2.0, 0.7);
        let m = d
            .compile(&CompileRequest::new("scale", SRC, Target::Sm90a, abi()).with_cost(cost))
            .unwrap();
        let x = d.alloc(16).unwrap();
        let args = [ArgValue::ptr(&x), 4.into(), 1.0f32.into()];
        let l = Launch::new([1, 1, 1], [128, 1, 1]);
        let t1 = d.time(&m, &l, &args, 3, 25, true).unwrap();
        let t2 = d.time(&m, &l, &args, 3, 25, true).unwrap();
        assert_eq!(t1, t2);
        assert!(t1.simulated() && t1.l2_flushed());
        assert_eq!(t1.samples_ms().len(), 25);
        let model = roofline::model_ms(d.caps(), &cost);
        assert!(t1.p10() >= model && t1.p90() < model * 1.011);
        assert!(t1.p10() <= t1.median() && t1.median() <= t1.p90());
        // A launch cost overrides the module's: half the flops, about half the time.
        let l2 = l.with_cost(Cost::new(cost.flops / 2.0, cost.bytes, cost.efficiency));
        let t3 = d.time(&m, &l2, &args, 0, 25, false).unwrap();
        assert!(t3.median() < t1.median() * 0.6);
        assert!(d.time(&m, &l, &args, 0, 0, false).is_err());
        // Without any cost there is nothing to time.
        let m2 = d
            .compile(&CompileRequest::new("scale", SRC, Target::Sm90a, abi()))
            .unwrap();
        assert!(matches!(
            d.time(&m2, &l, &args, 0, 5, false),
            Err(DeviceError::Unsupported { .. })
        ));
    }

    /// A kernel on a view sees just that range; writes land at the view's offset and nowhere
    /// else.
    #[test]
    fn launches_on_views_touch_only_the_view() {
        let d = SimDevice::new(Target::Sm80);
        let m = d
            .compile(
                &CompileRequest::new("scale", SRC, Target::Sm80, abi())
                    .with_emulation(scale_emulation()),
            )
            .unwrap();
        let x = d.alloc(32).unwrap();
        d.upload(&x, &f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]))
            .unwrap();
        let l = Launch::new([1, 1, 1], [4, 1, 1]);
        let v = x.view(8, 12).unwrap();
        d.launch(&m, &l, &[ArgValue::view(v), 3.into(), 10.0f32.into()])
            .unwrap();
        let mut out = vec![0u8; 32];
        d.download(&x, &mut out).unwrap();
        assert_eq!(out, f32_bytes(&[1.0, 2.0, 30.0, 40.0, 50.0, 6.0, 7.0, 8.0]));
        // the emulation sees the view's 3 elements: n = 4 is out of its bounds
        let e = d
            .launch(&m, &l, &[ArgValue::view(v), 4.into(), 1.0f32.into()])
            .unwrap_err();
        assert!(e.to_string().contains("x holds 3"), "{e}");
        // temporaries are gone, misaligned views are refused before anything runs
        assert_eq!(d.used_bytes(), 32);
        let e = d
            .launch(
                &m,
                &l,
                &[
                    ArgValue::view(x.view(2, 8).unwrap()),
                    1.into(),
                    1.0f32.into(),
                ],
            )
            .unwrap_err();
        assert!(
            matches!(e, DeviceError::InvalidView { offset: 2, .. }),
            "{e}"
        );
    }

    #[test]
    fn capture_records_and_graphs_replay() {
        let d = SimDevice::new(Target::Sm80);
        let cost = Cost::new(1e9, 1e6, 0.5);
        let m = d
            .compile(
                &CompileRequest::new("scale", SRC, Target::Sm80, abi())
                    .with_emulation(scale_emulation())
                    .with_cost(cost),
            )
            .unwrap();
        let x = d.alloc(8).unwrap();
        let s = d.create_stream().unwrap();
        d.upload_view(&s, &x.whole(), &f32_bytes(&[1.0, 1.0]))
            .unwrap();
        let l = Launch::new([1, 1, 1], [4, 1, 1]);
        let args = [
            ArgValue::view(x.view(4, 4).unwrap()),
            1.into(),
            3.0f32.into(),
        ];
        d.begin_capture(&s).unwrap();
        assert!(d.begin_capture(&s).is_err());
        d.launch_async(&s, &m, &l, &args).unwrap();
        d.launch_async(&s, &m, &l, &args).unwrap();
        // nothing ran yet; copies are refused during a capture
        let mut out = vec![0u8; 8];
        let e = d.download_view(&s, &x.whole(), &mut out).unwrap_err();
        assert!(e.to_string().contains("is capturing"), "{e}");
        // a bad launch is refused as it is recorded
        assert!(d.launch_async(&s, &m, &l, &args[..1]).is_err());
        let g = d.end_capture(&s).unwrap();
        d.download_view(&s, &x.whole(), &mut out).unwrap();
        assert_eq!(out, f32_bytes(&[1.0, 1.0]));
        let t0 = d.record_event(&s).unwrap();
        d.launch_graph(&g, &s).unwrap();
        d.launch_graph(&g, &s).unwrap();
        let t1 = d.record_event(&s).unwrap();
        d.synchronize_stream(&s).unwrap();
        d.download_view(&s, &x.view(4, 4).unwrap(), &mut out[..4])
            .unwrap();
        assert_eq!(&out[..4], &f32_bytes(&[81.0])[..], "4 launches of ×3");
        let ms = d.elapsed_ms(&t0, &t1).unwrap();
        let one = roofline::model_ms(d.caps(), &cost);
        assert!((ms - 4.0 * one).abs() < 1e-9, "{ms} vs 4 × {one}");
        d.destroy_graph(g).unwrap();
        assert!(matches!(
            d.launch_graph(&g, &s),
            Err(DeviceError::InvalidHandle { what: "graph", .. })
        ));
        assert!(d.end_capture(&s).is_err(), "not capturing");
        d.destroy_event(t0).unwrap();
        assert!(d.elapsed_ms(&t0, &t1).is_err());
        d.destroy_stream(s).unwrap();
        assert!(d.launch_async(&s, &m, &l, &args).is_err());
        let e = d
            .upload_view(&d.create_stream().unwrap(), &x.whole(), &[0u8; 4])
            .unwrap_err();
        assert!(matches!(e, DeviceError::SizeMismatch { .. }));
    }

    #[test]
    fn device_is_object_safe_and_shareable() {
        fn assert_send_sync<T: Send + Sync + ?Sized>() {}
        assert_send_sync::<dyn Device>();
        let d: Box<dyn Device> = Box::new(SimDevice::new(Target::Gfx942));
        assert!(d.info().name.contains("MI300X"));
        d.synchronize().unwrap();
    }
}
