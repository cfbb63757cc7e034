//! The executor: a plan directory made runnable on one device.
//!
//! [`Executor::load`] reads the plan for the device (`Plan::load_for_device`), generates every
//! kernel again from its template and config (`KernelChoice::rebuild`, then the tuner's
//! `Candidate` and `measure::compile`, which goes through the device's module cache), uploads
//! the weights once into one buffer, allocates the one activation arena, creates a stream,
//! and turns every bucket's launch list into launches with argument views (grid from the
//! kernel source and the problem). Each bucket whose launches can all run is run once eagerly
//! (warm-up: module loads, shared-memory opt-ins) and captured into a CUDA graph.
//!
//! [`Executor::run`] checks the inputs, picks the bucket, pads the inputs to it (a padded
//! bucket) or packs the real tokens back to back with their positions and the sequence offsets
//! (a packed bucket), uploads them into the plan's input slots, replays the bucket's graph (or,
//! with graphs off or `debug_nodes`, runs the same launches eagerly, syncing and keeping every
//! node's output in debug mode) and downloads the last hidden state of the real tokens,
//! scattered back to `[batch, seq, hidden]` (padding zero; [`Output::packed`] gives it packed).
//!
//! Which kind of bucket a batch runs in is [`Padding`]: `padded`, `packed`, or `auto`, which
//! takes the packed one of the two buckets that fit the batch when it replayed at least
//! [`bucket::AUTO_PACKED_MARGIN`] faster than the padded one, by the graph-replay times
//! measured on this device when the plan is loaded ([`Executor::bucket_ms`]; a bucket is timed
//! with its representative lengths, so the rule follows the device, not a fixed padding
//! threshold), else the padded one ([`bucket::faster`]).
//!
//! Plans from this build are kernels only (the embedding is a kernel, attention writes
//! token-major, the pooler is not compiled). A launch with no kernel (a `glue` step, or an
//! attention problem whose output layout does not match the plan's store) is never faked: the
//! bucket is marked blocked and running it is an [`ExecError::NoKernel`] naming the node. A
//! caller may register a host implementation of a glue step ([`Executor::set_host_glue`],
//! eager runs only).
//!
//! Inputs stay valid across replays: the memory plan keeps input slots live through the whole
//! launch list, so timing replays the captured graph on the inputs uploaded once.
//!
//! It depends on the plan, the bucket choice, the tuner's candidate/compile path and the
//! device trait; it must not depend on the CLI or on a concrete device.

use crate::bucket::{self, Bucket, BucketError};
use crate::graph::{AttentionStore, InputKind, OutputKind};
use crate::lower::Glue;
use crate::plan::{self, Callee, Plan, PlanError, View};
use crate::tuning::RebuildError;
use std::collections::BTreeMap;
use std::path::Path;
use tessera_device::{
    ArgValue, Buffer, BufferView, Device, DeviceError, Graph, Launch, Module, Stream, Timing,
};
use tessera_dsl::ir::Arg;
use tessera_dsl::{DType, Problem};
use tessera_library::host::HostTensor;
use tessera_library::operands::{OpInputs, Scalar};
use tessera_library::reference::GemmStrides;
use tessera_tuner::sweep::device_fingerprint;
use tessera_tuner::Candidate;

/// Which kind of bucket a batch runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Padding {
    /// The smallest padded bucket that holds the batch.
    Padded,
    /// The smallest packed bucket that holds its real tokens.
    Packed,
    /// The faster of the two by the times measured at load (either, when only one fits).
    #[default]
    Auto,
}

impl Padding {
    pub fn name(self) -> &'static str {
        match self {
            Padding::Padded => "padded",
            Padding::Packed => "packed",
            Padding::Auto => "auto",
        }
    }
}

/// Replays per bucket when [`Padding::Auto`] times the buckets at load (after one warm-up).
const AUTO_TIMING_ITERS: u32 = 3;

/// How the executor runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecOptions {
    /// Capture one graph per bucket at load and replay it (off: the same launches, eagerly).
    pub graphs: bool,
    /// Run eagerly, synchronize after every launch (a fault names its node) and keep every
    /// node's output.
    pub debug_nodes: bool,
    /// Padded or packed buckets, or the measured choice.
    pub padding: Padding,
}

impl Default for ExecOptions {
    fn default() -> Self {
        ExecOptions {
            graphs: true,
            debug_nodes: false,
            padding: Padding::Auto,
        }
    }
}

/// What a launch's time counts as in a breakdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KernelKind {
    Gemm,
    Attention,
    Layernorm,
    Other,
}

impl KernelKind {
    pub fn name(self) -> &'static str {
        match self {
            KernelKind::Gemm => "gemm",
            KernelKind::Attention => "attention",
            KernelKind::Layernorm => "layernorm",
            KernelKind::Other => "other",
        }
    }

    fn of(problem: &Problem) -> KernelKind {
        match problem {
            Problem::Gemm(_) => KernelKind::Gemm,
            Problem::Attention(_) => KernelKind::Attention,
            Problem::Layernorm(_) => KernelKind::Layernorm,
            _ => KernelKind::Other,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Rebuild(#[from] RebuildError),
    #[error("kernel {kernel}: cannot generate its source: {message}")]
    Codegen { kernel: String, message: String },
    #[error("node `{node}`: {source}")]
    Device { node: String, source: DeviceError },
    #[error(transparent)]
    Bucket(#[from] BucketError),
    #[error("node `{node}`: {what}; this build has no kernel for it, so the plan cannot run yet")]
    NoKernel { node: String, what: String },
    #[error("node `{node}`: the plan is malformed: {what}")]
    Malformed { node: String, what: String },
    #[error("input: {0}")]
    Input(String),
    #[error("{0}")]
    Mode(String),
}

fn dev(node: &str) -> impl FnOnce(DeviceError) -> ExecError + '_ {
    move |source| ExecError::Device {
        node: node.to_string(),
        source,
    }
}

/// One launch, ready to enqueue.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub node: String,
    pub kind: KernelKind,
    /// Index into the plan's kernels.
    pub kernel: usize,
    pub launch: Launch,
    pub args: Vec<ArgValue>,
    /// The written operand.
    pub output: BufferView,
}

/// One step of a bucket.
#[derive(Debug, Clone)]
enum Step {
    Kernel(Prepared),
    /// A glue step: run by a registered host implementation (eager only), else blocked.
    Glue {
        node: String,
        glue: Glue,
        launch: usize,
    },
    Blocked {
        node: String,
        what: String,
    },
}

struct BucketExec {
    steps: Vec<Step>,
    graph: Option<Graph>,
}

/// What a glue step's host implementation gets: every read operand's bytes by ABI name, and
/// the step's scalars. It returns the written operand's bytes.
pub struct GlueCall<'a> {
    pub node: &'a str,
    pub inputs: BTreeMap<String, Vec<u8>>,
    pub scalars: &'a BTreeMap<String, f64>,
    pub output_bytes: u64,
}

/// Every node's output (node name, bytes as written), in launch order.
pub type NodeOutputs = Vec<(String, Vec<u8>)>;

pub type HostGlue = Box<dyn Fn(&GlueCall) -> Result<Vec<u8>, String> + Send + Sync>;

/// A model input: `batch` sequences of `seq` tokens, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs {
    pub batch: u64,
    pub seq: u64,
    pub input_ids: Vec<i64>,
    /// Hugging Face's 0/1 mask; each row must be ones then zeros. `None`: all ones.
    pub attention_mask: Option<Vec<i64>>,
    /// `None`: all zeros.
    pub token_type_ids: Option<Vec<i64>>,
}

impl Inputs {
    /// A batch of `lens.len()` sequences of these lengths padded to `seq`: ids 0, the mask
    /// from the lengths (what `tessera bench --lens` times).
    pub fn with_lengths(seq: u64, lens: &[u64]) -> Inputs {
        let n = lens.len() * seq as usize;
        let mask = lens
            .iter()
            .flat_map(|&l| (0..seq).map(move |t| i64::from(t < l)))
            .collect();
        Inputs {
            batch: lens.len() as u64,
            seq,
            input_ids: vec![0; n],
            attention_mask: Some(mask),
            token_type_ids: None,
        }
    }
}

/// The two candidates of [`Padding::Auto`] for one input, each with its replay time measured
/// at load (`None`: not measured), and the one taken.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AutoChoice {
    pub padded: Option<(Bucket, Option<f64>)>,
    pub packed: Option<(Bucket, Option<f64>)>,
    pub chosen: Bucket,
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub bucket: Bucket,
    pub batch: u64,
    pub seq: u64,
    pub hidden: u64,
    /// Real tokens of each sequence (from the mask).
    pub lengths: Vec<u64>,
    /// `[batch, seq, hidden]`; positions past a sequence's length are zero.
    pub last_hidden_state: Vec<f32>,
    /// With `debug_nodes`: every node's output as written, in launch order.
    pub nodes: NodeOutputs,
}

impl Output {
    /// The real tokens only, back to back (`[total, hidden]`), and the `batch + 1` offsets
    /// where each sequence starts (then the total).
    pub fn packed(&self) -> (Vec<f32>, Vec<u64>) {
        let offsets = tessera_dsl::Packing::offsets(&self.lengths);
        let h = self.hidden as usize;
        let mut rows = Vec::with_capacity(offsets.last().copied().unwrap_or(0) as usize * h);
        for (r, &len) in self.lengths.iter().enumerate() {
            let start = r * self.seq as usize * h;
            rows.extend_from_slice(&self.last_hidden_state[start..start + len as usize * h]);
        }
        (rows, offsets)
    }
}

/// A plan loaded on a device, ready to run.
pub struct Executor<'d> {
    device: &'d dyn Device,
    plan: Plan,
    options: ExecOptions,
    modules: Vec<Module>,
    weights: Buffer,
    arena: Buffer,
    stream: Stream,
    buckets: Vec<BucketExec>,
    host_glue: std::collections::HashMap<Glue, HostGlue>,
    /// Per bucket, the median replay time measured at load ([`Padding::Auto`] only).
    bucket_ms: Vec<Option<f64>>,
}

impl<'d> Executor<'d> {
    /// Load the plan directory `dir` for `device` (see the module docs).
    pub fn load(
        dir: &Path,
        device: &'d dyn Device,
        options: ExecOptions,
    ) -> Result<Executor<'d>, ExecError> {
        let caps = device.caps().clone();
        let fingerprint = device_fingerprint(&device.info(), caps.target);
        let plan = Plan::load_for_device(dir, &fingerprint)?;
        let weight_bytes = plan.read_weights(dir)?;
        let mut modules = Vec::with_capacity(plan.kernels.len());
        let mut sources = Vec::with_capacity(plan.kernels.len());
        for k in &plan.kernels {
            let (template, config) = k.rebuild(&caps)?;
            let c =
                Candidate::new(template, config, caps.target).map_err(|e| ExecError::Codegen {
                    kernel: k.kernel_name.clone(),
                    message: e.to_string(),
                })?;
            let module = tessera_tuner::measure::compile(device, &c, &k.problem, None)
                .map_err(dev(&k.kernel_name))?;
            modules.push(module);
            sources.push(c);
        }
        let weights = device
            .alloc(weight_bytes.len() as u64)
            .map_err(dev("weights"))?;
        device
            .upload(&weights, &weight_bytes)
            .map_err(dev("weights"))?;
        let arena = device
            .alloc(plan.arena.bytes.max(1))
            .map_err(dev("arena"))?;
        let stream = device.create_stream().map_err(dev("stream"))?;
        let mut buckets = Vec::with_capacity(plan.buckets.len());
        for b in &plan.buckets {
            let mut steps = Vec::with_capacity(b.launches.len());
            for (i, l) in b.launches.iter().enumerate() {
                steps.push(prepare(
                    &plan,
                    l,
                    i,
                    &modules,
                    &sources,
                    weights,
                    arena,
                    caps.sm_count,
                )?);
            }
            buckets.push(BucketExec { steps, graph: None });
        }
        let mut exec = Executor {
            device,
            plan,
            options,
            modules,
            weights,
            arena,
            stream,
            buckets,
            host_glue: std::collections::HashMap::new(),
            bucket_ms: Vec::new(),
        };
        if options.graphs && !options.debug_nodes {
            for i in 0..exec.buckets.len() {
                exec.capture(i)?;
            }
        }
        if options.padding == Padding::Auto {
            let mut ms = Vec::with_capacity(exec.buckets.len());
            for i in 0..exec.buckets.len() {
                let b = exec.plan.buckets[i].bucket;
                ms.push(match exec.kernels_only(i) {
                    Ok(()) => Some(exec.time(b, 1, AUTO_TIMING_ITERS)?.median()),
                    Err(_) => None,
                });
            }
            exec.bucket_ms = ms;
        }
        Ok(exec)
    }

    /// The replay time of each bucket measured at load, in plan order (`None`: not measured,
    /// because the padding is not `auto` or the bucket cannot run on kernels alone).
    pub fn bucket_ms(&self) -> Vec<Option<f64>> {
        (0..self.plan.buckets.len())
            .map(|i| self.bucket_ms.get(i).copied().flatten())
            .collect()
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    pub fn options(&self) -> ExecOptions {
        self.options
    }

    /// Whether bucket `i` was captured into a graph.
    pub fn has_graph(&self, i: usize) -> bool {
        self.buckets.get(i).is_some_and(|b| b.graph.is_some())
    }

    /// Why bucket `i` cannot run on kernels alone (the first launch without one), if so.
    pub fn blocked(&self, i: usize) -> Option<ExecError> {
        self.buckets.get(i)?.steps.iter().find_map(|s| match s {
            Step::Blocked { node, what } => Some(ExecError::NoKernel {
                node: node.clone(),
                what: what.clone(),
            }),
            Step::Glue { node, glue, .. } if !self.host_glue.contains_key(glue) => {
                Some(ExecError::NoKernel {
                    node: node.clone(),
                    what: format!("glue step `{}`", glue_name(*glue)),
                })
            }
            _ => None,
        })
    }

    /// Run `glue` steps on the host with `f` (eager runs only; a bucket with such a step is
    /// never captured).
    pub fn set_host_glue(&mut self, glue: Glue, f: HostGlue) {
        self.host_glue.insert(glue, f);
    }

    /// The launches of bucket `i` that have kernels, in order (for timing breakdowns).
    pub fn launches(&self, i: usize) -> Vec<&Prepared> {
        self.buckets.get(i).map_or(Vec::new(), |b| {
            b.steps
                .iter()
                .filter_map(|s| match s {
                    Step::Kernel(p) => Some(p),
                    _ => None,
                })
                .collect()
        })
    }

    pub fn module(&self, kernel: usize) -> Option<&Module> {
        self.modules.get(kernel)
    }

    fn bucket_index(&self, b: Bucket) -> Result<usize, ExecError> {
        self.plan
            .buckets
            .iter()
            .position(|p| p.bucket == b)
            .ok_or(ExecError::Bucket(BucketError::NoFit {
                batch: b.batch,
                seq: b.seq,
                max_batch: 0,
                max_seq: 0,
            }))
    }

    /// Inputs that are valid for bucket `i` (ids 0; a padded bucket's tokens all real, a
    /// packed one's at its representative lengths), uploaded.
    fn upload_default_inputs(&self, i: usize) -> Result<(), ExecError> {
        let b = self.plan.buckets[i].bucket;
        let n = (b.batch * b.seq) as usize;
        let lens = b.representative_lens();
        let inputs = Inputs {
            batch: b.batch,
            seq: b.seq,
            input_ids: vec![0; n],
            attention_mask: None,
            token_type_ids: None,
        };
        self.upload_inputs(i, &inputs, &lens)
    }

    /// Warm bucket `i` up eagerly, then capture it (skipped for buckets that cannot run on
    /// kernels alone: running one is the error).
    fn capture(&mut self, i: usize) -> Result<(), ExecError> {
        if self.buckets[i]
            .steps
            .iter()
            .any(|s| !matches!(s, Step::Kernel(_)))
        {
            return Ok(());
        }
        self.upload_default_inputs(i)?;
        self.eager(i, false, &mut Vec::new())?;
        let device = self.device;
        device
            .begin_capture(&self.stream)
            .map_err(dev("graph capture"))?;
        let mut failed = None;
        for s in &self.buckets[i].steps {
            if let Step::Kernel(p) = s {
                if let Err(e) =
                    device.launch_async(&self.stream, &self.modules[p.kernel], &p.launch, &p.args)
                {
                    failed = Some(dev(&p.node)(e));
                    break;
                }
            }
        }
        let graph = device.end_capture(&self.stream);
        if let Some(e) = failed {
            if let Ok(g) = graph {
                let _ = device.destroy_graph(g);
            }
            return Err(e);
        }
        self.buckets[i].graph = Some(graph.map_err(dev("graph capture"))?);
        Ok(())
    }

    /// Run bucket `i`'s launches eagerly on the stream; with `keep`, synchronize after each
    /// and return every node's output.
    fn eager(&self, i: usize, keep: bool, nodes: &mut NodeOutputs) -> Result<(), ExecError> {
        let bp = &self.plan.buckets[i];
        for s in &self.buckets[i].steps {
            match s {
                Step::Kernel(p) => {
                    self.device
                        .launch_async(&self.stream, &self.modules[p.kernel], &p.launch, &p.args)
                        .map_err(dev(&p.node))?;
                    if keep {
                        self.device
                            .synchronize_stream(&self.stream)
                            .map_err(dev(&p.node))?;
                        let mut out = vec![0u8; p.output.len() as usize];
                        self.device
                            .download_view(&self.stream, &p.output, &mut out)
                            .map_err(dev(&p.node))?;
                        nodes.push((p.node.clone(), out));
                    }
                }
                Step::Glue { node, glue, launch } => {
                    let f = self
                        .host_glue
                        .get(glue)
                        .ok_or_else(|| ExecError::NoKernel {
                            node: node.clone(),
                            what: format!("glue step `{}`", glue_name(*glue)),
                        })?;
                    let l = &bp.launches[*launch];
                    let (out_arg, reads) =
                        l.args.split_last().ok_or_else(|| ExecError::Malformed {
                            node: node.clone(),
                            what: "a glue step without operands".into(),
                        })?;
                    let mut inputs = BTreeMap::new();
                    for a in reads {
                        let v = self.view(node, &a.view)?;
                        let mut bytes = vec![0u8; v.len() as usize];
                        self.device
                            .download_view(&self.stream, &v, &mut bytes)
                            .map_err(dev(node))?;
                        inputs.insert(a.name.clone(), bytes);
                    }
                    let call = GlueCall {
                        node,
                        inputs,
                        scalars: &l.scalars,
                        output_bytes: out_arg.view.bytes,
                    };
                    let out = f(&call).map_err(|what| ExecError::Malformed {
                        node: node.clone(),
                        what: format!("host glue failed: {what}"),
                    })?;
                    let v = self.view(node, &out_arg.view)?;
                    self.device
                        .upload_view(&self.stream, &v, &out)
                        .map_err(dev(node))?;
                    if keep {
                        nodes.push((node.clone(), out));
                    }
                }
                Step::Blocked { node, what } => {
                    return Err(ExecError::NoKernel {
                        node: node.clone(),
                        what: what.clone(),
                    })
                }
            }
        }
        self.device
            .synchronize_stream(&self.stream)
            .map_err(dev("run"))
    }

    fn view(&self, node: &str, v: &View) -> Result<BufferView, ExecError> {
        let buffer = match v.buffer {
            plan::Buffer::Arena => self.arena,
            plan::Buffer::Weights => self.weights,
        };
        buffer.view(v.offset, v.bytes).map_err(dev(node))
    }

    fn upload_inputs(&self, i: usize, x: &Inputs, lens: &[u64]) -> Result<(), ExecError> {
        let bp = &self.plan.buckets[i];
        let rows = Rows::of(bp.bucket, x, lens);
        let positions: Vec<i64> = (0..x.batch * x.seq).map(|t| (t % x.seq) as i64).collect();
        for slot in &bp.inputs {
            let values: Vec<i32> = match slot.kind {
                InputKind::InputIds => rows.place(&x.input_ids),
                InputKind::TokenTypeIds => match &x.token_type_ids {
                    Some(t) => rows.place(t),
                    None => vec![0; bp.bucket.tokens() as usize],
                },
                InputKind::PositionIds => rows.place(&positions),
                InputKind::SeqLens => rows.lens_operand(),
            };
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            let name = format!("input {:?}", slot.kind);
            let view = self.view(&name, &slot.view)?;
            if view.len() != bytes.len() as u64 {
                return Err(ExecError::Malformed {
                    node: name,
                    what: format!(
                        "the slot holds {} bytes, the bucket's input {}",
                        view.len(),
                        bytes.len()
                    ),
                });
            }
            self.device
                .upload_view(&self.stream, &view, &bytes)
                .map_err(dev(&name))?;
        }
        Ok(())
    }

    /// Check `x` against the model: shapes, id ranges, the mask's form. Returns each
    /// sequence's real length.
    pub fn check_inputs(&self, x: &Inputs) -> Result<Vec<u64>, ExecError> {
        check_inputs(&self.plan, x)
    }

    /// The bucket `x` runs in, by the [`Padding`] option (see the module docs).
    pub fn bucket_for(&self, x: &Inputs) -> Result<Bucket, ExecError> {
        Ok(self.placed(x)?.1)
    }

    /// `x` checked: its lengths, the bucket it runs in and that bucket's index.
    fn placed(&self, x: &Inputs) -> Result<(Vec<u64>, Bucket, usize), ExecError> {
        let lens = self.check_inputs(x)?;
        let b = self.choose(x, &lens)?;
        Ok((lens, b, self.bucket_index(b)?))
    }

    fn choose(&self, x: &Inputs, lens: &[u64]) -> Result<Bucket, ExecError> {
        let list = self.plan.bucket_list();
        match self.options.padding {
            Padding::Padded => Ok(bucket::choose(&list, x.batch, x.seq)?),
            Padding::Packed => Ok(bucket::choose_packed(&list, lens)?),
            Padding::Auto => Ok(self.auto_choice(x, lens)?.chosen),
        }
    }

    /// What `--padding auto` weighs for `x`: the padded and the packed bucket that fit it,
    /// each with its replay time measured at load, and the one it takes
    /// ([`bucket::faster`]).
    pub fn auto_choice(&self, x: &Inputs, lens: &[u64]) -> Result<AutoChoice, ExecError> {
        let list = self.plan.bucket_list();
        let timed = |b: Bucket| {
            let i = list.iter().position(|l| *l == b);
            (b, i.and_then(|i| self.bucket_ms.get(i).copied().flatten()))
        };
        let padded = bucket::choose(&list, x.batch, x.seq);
        let packed = bucket::choose_packed(&list, lens);
        let (a, p) = (
            padded.as_ref().ok().map(|&b| timed(b)),
            packed.as_ref().ok().map(|&b| timed(b)),
        );
        let chosen = match bucket::faster(a, p) {
            Some(b) => b,
            None => {
                return Err(padded
                    .err()
                    .map_or(ExecError::Mode("no bucket".into()), Into::into))
            }
        };
        Ok(AutoChoice {
            padded: a,
            packed: p,
            chosen,
        })
    }

    /// Run the model on `x` (see the module docs).
    pub fn run(&self, x: &Inputs) -> Result<Output, ExecError> {
        let mut nodes = Vec::new();
        let mut out = self.run_into(x, &mut nodes)?;
        out.nodes = nodes;
        Ok(out)
    }

    /// [`Executor::run`] for bisection: the outputs of every node that ran (with
    /// `debug_nodes`), also when a later node failed.
    pub fn run_debug(&self, x: &Inputs) -> (NodeOutputs, Result<Output, ExecError>) {
        let mut nodes = Vec::new();
        let out = self.run_into(x, &mut nodes);
        (nodes, out)
    }

    fn run_into(&self, x: &Inputs, nodes: &mut NodeOutputs) -> Result<Output, ExecError> {
        let (lens, b, i) = self.placed(x)?;
        if !self.options.debug_nodes {
            if let Some(e) = self.blocked(i) {
                return Err(e);
            }
        }
        self.upload_inputs(i, x, &lens)?;
        match (&self.buckets[i].graph, self.options.debug_nodes) {
            (Some(g), false) => {
                self.device
                    .launch_graph(g, &self.stream)
                    .map_err(dev("graph replay"))?;
                self.device
                    .synchronize_stream(&self.stream)
                    .map_err(dev("graph replay"))?;
            }
            (_, keep) => self.eager(i, keep, nodes)?,
        }
        let bp = &self.plan.buckets[i];
        let slot = bp
            .outputs
            .iter()
            .find(|o| o.kind == OutputKind::LastHiddenState)
            .ok_or_else(|| ExecError::Malformed {
                node: "outputs".into(),
                what: "no last hidden state output".into(),
            })?;
        let hidden = self.plan.model.hidden;
        let view = self.view("last_hidden_state", &slot.view)?;
        let mut bytes = vec![0u8; view.len() as usize];
        self.device
            .download_view(&self.stream, &view, &mut bytes)
            .map_err(dev("last_hidden_state"))?;
        let all =
            HostTensor::from_bytes(self.plan.dtype, &bytes).map_err(|e| ExecError::Malformed {
                node: "last_hidden_state".into(),
                what: e.to_string(),
            })?;
        let mut out = vec![0f32; (x.batch * x.seq * hidden) as usize];
        let rows = Rows::of(b, x, &lens);
        for (r, &len) in lens.iter().enumerate() {
            for t in 0..len as usize {
                let src = rows.row(r, t) * hidden as usize;
                let dst = (r * x.seq as usize + t) * hidden as usize;
                let row = all.values.get(src..src + hidden as usize).ok_or_else(|| {
                    ExecError::Malformed {
                        node: "last_hidden_state".into(),
                        what: format!("the output holds {} values", all.values.len()),
                    }
                })?;
                out[dst..dst + hidden as usize].copy_from_slice(row);
            }
        }
        Ok(Output {
            bucket: b,
            batch: x.batch,
            seq: x.seq,
            hidden,
            lengths: lens,
            last_hidden_state: out,
            nodes: Vec::new(),
        })
    }

    /// The first step of bucket `i` without a kernel (host glue included), as an error.
    fn kernels_only(&self, i: usize) -> Result<(), ExecError> {
        match self.buckets[i]
            .steps
            .iter()
            .find(|s| !matches!(s, Step::Kernel(_)))
        {
            Some(Step::Blocked { node, what }) => Err(ExecError::NoKernel {
                node: node.clone(),
                what: what.clone(),
            }),
            Some(Step::Glue { node, glue, .. }) => Err(ExecError::NoKernel {
                node: node.clone(),
                what: format!(
                    "glue step `{}` (a host implementation is not timed)",
                    glue_name(*glue)
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Time bucket `b`: `iters` runs (graph replays, or the eager launch list) each between
    /// two events, after `warmup` untimed runs. Every launch must have a kernel.
    pub fn time(&self, b: Bucket, warmup: u32, iters: u32) -> Result<Timing, ExecError> {
        let i = self.bucket_index(b)?;
        self.kernels_only(i)?;
        self.upload_default_inputs(i)?;
        self.replays(i, warmup, iters)
    }

    /// Time the bucket input `x` runs in (chosen as [`Executor::run`] chooses), on `x`
    /// itself: its tokens, lengths and offsets uploaded once, then as [`Executor::time`].
    pub fn time_input(
        &self,
        x: &Inputs,
        warmup: u32,
        iters: u32,
    ) -> Result<(Bucket, Timing), ExecError> {
        let (lens, b, i) = self.placed(x)?;
        self.kernels_only(i)?;
        self.upload_inputs(i, x, &lens)?;
        Ok((b, self.replays(i, warmup, iters)?))
    }

    /// `x` timed in each of `buckets`, in `rounds` interleaved rounds (bucket after bucket,
    /// each round `warmup` untimed and `iters` timed replays per bucket, the inputs uploaded
    /// before each), so that the buckets meet the same device state (clocks, temperature, what
    /// ran just before) instead of each its own process: the fair comparison of the two
    /// buckets `--padding auto` weighs. Each bucket must hold `x` (a padded one its shape, a
    /// packed one its lengths); one [`Timing`] per bucket, with every round's samples.
    pub fn time_input_rounds(
        &self,
        x: &Inputs,
        buckets: &[Bucket],
        warmup: u32,
        iters: u32,
        rounds: u32,
    ) -> Result<Vec<Timing>, ExecError> {
        let lens = self.check_inputs(x)?;
        let mut slots = Vec::with_capacity(buckets.len());
        for &b in buckets {
            let holds = if b.is_packed() {
                b.admits(&lens)
            } else {
                b.fits(x.batch, x.seq)
            };
            if !holds {
                return Err(ExecError::Mode(format!(
                    "bucket {b} does not hold a batch of {} sequences of {} tokens",
                    x.batch, x.seq
                )));
            }
            let i = self.bucket_index(b)?;
            self.kernels_only(i)?;
            slots.push(i);
        }
        let mut samples: Vec<Vec<f64>> = vec![Vec::new(); slots.len()];
        let mut flags = (false, false);
        for _ in 0..rounds.max(1) {
            for (k, &i) in slots.iter().enumerate() {
                self.upload_inputs(i, x, &lens)?;
                let t = self.replays(i, warmup, iters)?;
                flags = (t.simulated(), t.l2_flushed());
                samples[k].extend_from_slice(t.samples_ms());
            }
        }
        samples
            .into_iter()
            .map(|s| Timing::new(s, flags.0, flags.1).map_err(dev("timing")))
            .collect()
    }

    /// `iters` timed runs of bucket `i` on the uploaded inputs, after `warmup` untimed ones.
    fn replays(&self, i: usize, warmup: u32, iters: u32) -> Result<Timing, ExecError> {
        if iters == 0 {
            return Err(ExecError::Mode(
                "timing needs at least one iteration".into(),
            ));
        }
        let once = || -> Result<(), ExecError> {
            match &self.buckets[i].graph {
                Some(g) => self
                    .device
                    .launch_graph(g, &self.stream)
                    .map_err(dev("graph replay")),
                None => self.enqueue_all(i),
            }
        };
        for _ in 0..warmup {
            once()?;
        }
        let mut samples = Vec::with_capacity(iters as usize);
        for _ in 0..iters {
            let start = self
                .device
                .record_event(&self.stream)
                .map_err(dev("timing"))?;
            once()?;
            let end = self
                .device
                .record_event(&self.stream)
                .map_err(dev("timing"))?;
            let ms = self.device.elapsed_ms(&start, &end).map_err(dev("timing"));
            let _ = self.device.destroy_event(start);
            let _ = self.device.destroy_event(end);
            samples.push(ms?);
        }
        Timing::new(samples, self.device.info().simulated, false).map_err(dev("timing"))
    }

    /// Enqueue every kernel launch of bucket `i` (callers check `kernels_only`).
    fn enqueue_all(&self, i: usize) -> Result<(), ExecError> {
        for p in self.launches(i) {
            self.device
                .launch_async(&self.stream, &self.modules[p.kernel], &p.launch, &p.args)
                .map_err(dev(&p.node))?;
        }
        Ok(())
    }

    /// Each launch of bucket `b` timed alone (eagerly, device events, median of `iters`), in
    /// launch order.
    pub fn breakdown(&self, b: Bucket, iters: u32) -> Result<Breakdown, ExecError> {
        let i = self.bucket_index(b)?;
        self.kernels_only(i)?;
        self.upload_default_inputs(i)?;
        let mut launches = Vec::new();
        for p in self.launches(i) {
            let t = self
                .device
                .time(
                    &self.modules[p.kernel],
                    &p.launch,
                    &p.args,
                    1,
                    iters.max(1),
                    false,
                )
                .map_err(dev(&p.node))?;
            let kernel = self
                .plan
                .kernels
                .get(p.kernel)
                .map_or_else(|| format!("kernel{}", p.kernel), |k| k.kernel_name.clone());
            launches.push(LaunchTime {
                node: p.node.clone(),
                kind: p.kind,
                kernel,
                ms: t.median(),
            });
        }
        Ok(Breakdown { launches })
    }
}

/// One launch timed alone.
#[derive(Debug, Clone)]
pub struct LaunchTime {
    pub node: String,
    pub kind: KernelKind,
    /// The plan kernel's name (template and config).
    pub kernel: String,
    pub ms: f64,
}

/// Every launch of a bucket timed alone, in launch order.
#[derive(Debug, Clone)]
pub struct Breakdown {
    pub launches: Vec<LaunchTime>,
}

impl Breakdown {
    /// Total of every launch, in ms.
    pub fn total_ms(&self) -> f64 {
        self.launches.iter().map(|l| l.ms).sum()
    }

    /// Milliseconds per kernel kind.
    pub fn by_kind(&self) -> BTreeMap<KernelKind, f64> {
        let mut out = BTreeMap::new();
        for l in &self.launches {
            *out.entry(l.kind).or_insert(0.0) += l.ms;
        }
        out
    }

    /// Per kernel: how many launches use it and their total ms, slowest total first.
    pub fn by_kernel(&self) -> Vec<KernelTotal> {
        let mut map: BTreeMap<&str, KernelTotal> = BTreeMap::new();
        for l in &self.launches {
            let e = map.entry(&l.kernel).or_insert_with(|| KernelTotal {
                kernel: l.kernel.clone(),
                kind: l.kind,
                launches: 0,
                total_ms: 0.0,
            });
            e.launches += 1;
            e.total_ms += l.ms;
        }
        let mut out: Vec<KernelTotal> = map.into_values().collect();
        out.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms));
        out
    }
}

/// One kernel's share of a breakdown.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelTotal {
    pub kernel: String,
    pub kind: KernelKind,
    pub launches: usize,
    pub total_ms: f64,
}

impl Drop for Executor<'_> {
    fn drop(&mut self) {
        for b in &mut self.buckets {
            if let Some(g) = b.graph.take() {
                let _ = self.device.destroy_graph(g);
            }
        }
        let _ = self.device.destroy_stream(self.stream);
        let _ = self.device.free(self.arena);
        let _ = self.device.free(self.weights);
        for m in &self.modules {
            let _ = self.device.unload(m);
        }
    }
}

fn glue_name(g: Glue) -> &'static str {
    match g {
        Glue::Pooler => "pooler",
    }
}

/// `v` (`x.batch × x.seq`) padded to the bucket with `fill`, as i32.
/// Where an input's tokens sit in a bucket's rows: padded, sequence `r` at row `r · seq`;
/// packed, the real tokens back to back from the offsets.
struct Rows {
    bucket: Bucket,
    /// The input's padded length (its row stride).
    seq: usize,
    lens: Vec<u64>,
    offsets: Vec<u64>,
}

impl Rows {
    fn of(bucket: Bucket, x: &Inputs, lens: &[u64]) -> Rows {
        Rows {
            bucket,
            seq: x.seq as usize,
            lens: lens.to_vec(),
            offsets: tessera_dsl::Packing::offsets(lens),
        }
    }

    /// The bucket row of token `t` of sequence `r`.
    fn row(&self, r: usize, t: usize) -> usize {
        if self.bucket.is_packed() {
            self.offsets[r] as usize + t
        } else {
            r * self.bucket.seq as usize + t
        }
    }

    /// A `[batch, seq]` input's values at the bucket's rows (0 elsewhere): every token of a
    /// padded bucket, the real ones of a packed bucket.
    fn place(&self, v: &[i64]) -> Vec<i32> {
        let mut out = vec![0; self.bucket.tokens() as usize];
        for (r, &len) in self.lens.iter().enumerate() {
            let n = if self.bucket.is_packed() {
                len as usize
            } else {
                self.seq
            };
            for t in 0..n {
                if let (Some(&id), Some(o)) = (v.get(r * self.seq + t), out.get_mut(self.row(r, t)))
                {
                    *o = id as i32;
                }
            }
        }
        out
    }

    /// The attention lengths operand: padded, each sequence's length (1 for the bucket's
    /// empty rows); packed, the `batch + 1` offsets (sequences past the input's are empty).
    fn lens_operand(&self) -> Vec<i32> {
        let n = self.bucket.batch as usize;
        let i32_of = |v: u64| i32::try_from(v).unwrap_or(i32::MAX);
        if self.bucket.is_packed() {
            let total = self.offsets.last().copied().unwrap_or(0);
            (0..=n)
                .map(|r| i32_of(self.offsets.get(r).copied().unwrap_or(total)))
                .collect()
        } else {
            (0..n)
                .map(|r| i32_of(self.lens.get(r).copied().unwrap_or(1)))
                .collect()
        }
    }
}

/// The attention kernel of this build writes `[b, h, s, d]`; a plan that asks for the
/// token-major output needs the kernel that writes it. The problem names its output layout
/// once the template has one (any problem field whose value names tokens), so this check
/// follows the library without a change here.
fn attention_writes(problem: &Problem, store: AttentionStore) -> bool {
    let Problem::Attention(a) = problem else {
        return true;
    };
    let token_major = a.packed.is_some() || a.layout == tessera_dsl::problem::AttentionLayout::Bshd;
    match store {
        AttentionStore::Heads => !token_major,
        AttentionStore::Tokens => token_major,
    }
}

/// One plan launch made ready: module, grid, arguments in ABI order (views for pointers,
/// scalars from the problem and the plan).
#[allow(clippy::too_many_arguments)]
fn prepare(
    plan: &Plan,
    l: &plan::Launch,
    index: usize,
    modules: &[Module],
    sources: &[Candidate],
    weights: Buffer,
    arena: Buffer,
    sm_count: u32,
) -> Result<Step, ExecError> {
    let node = l.node.clone();
    let kernel = match l.callee {
        Callee::Glue { glue } => {
            return Ok(Step::Glue {
                node,
                glue,
                launch: index,
            })
        }
        Callee::Kernel { kernel } => kernel,
    };
    let malformed = |what: String| ExecError::Malformed {
        node: node.clone(),
        what,
    };
    let (Some(choice), Some(module), Some(c)) = (
        plan.kernels.get(kernel),
        modules.get(kernel),
        sources.get(kernel),
    ) else {
        return Err(malformed(format!(
            "kernel index {kernel} of {}",
            plan.kernels.len()
        )));
    };
    let problem = &choice.problem;
    if let (Problem::Attention(_), Some(store)) = (problem, l.attention_store) {
        if !attention_writes(problem, store) {
            return Ok(Step::Blocked {
                node,
                what: format!(
                    "attention with a token-major output ([batch, seq, heads·head_dim]); kernel `{}` writes [batch, heads, seq, head_dim]",
                    choice.kernel_name
                ),
            });
        }
    }
    let view = |v: &View| -> Result<BufferView, ExecError> {
        let b = match v.buffer {
            plan::Buffer::Arena => arena,
            plan::Buffer::Weights => weights,
        };
        b.view(v.offset, v.bytes).map_err(dev(&node))
    };
    let scalars = scalar_args(problem, &l.scalars);
    let abi = module.abi();
    for a in &l.args {
        if !abi.iter().any(|x| x.name() == a.name) {
            return Err(malformed(format!(
                "operand `{}` is not an argument of kernel `{}`",
                a.name, choice.kernel_name
            )));
        }
    }
    let mut args = Vec::with_capacity(abi.len());
    let mut output = None;
    for arg in abi {
        let name = arg.name();
        let scalar = || {
            scalars.get(name).copied().ok_or_else(|| {
                malformed(format!(
                    "no value for scalar argument `{name}` of kernel `{}`",
                    choice.kernel_name
                ))
            })
        };
        let value = match arg {
            Arg::Ptr { .. } | Arg::I32Ptr(_) => match l.args.iter().find(|a| a.name == name) {
                Some(a) => {
                    let v = view(&a.view)?;
                    if matches!(arg, Arg::Ptr { written: true, .. }) {
                        output = Some(v);
                    }
                    ArgValue::View(v)
                }
                None => ArgValue::null(),
            },
            Arg::I32(_) => ArgValue::I32(
                i32::try_from(scalar()? as i64)
                    .map_err(|_| malformed(format!("scalar `{name}` does not fit i32")))?,
            ),
            Arg::I64(_) => ArgValue::I64(scalar()? as i64),
            Arg::F32(_) => ArgValue::F32(scalar()? as f32),
        };
        args.push(value);
    }
    let output = output.ok_or_else(|| malformed("no written operand".into()))?;
    let grid = c.source.grid(problem, sm_count);
    let launch = Launch::new(grid, [c.source.threads, 1, 1]).with_dynamic_smem(c.source.smem_bytes);
    Ok(Step::Kernel(Prepared {
        node,
        kind: KernelKind::of(problem),
        kernel,
        launch,
        args,
        output,
    }))
}

/// Scalar arguments by ABI name: the problem's own (sizes, strides, the library's defaults),
/// then the plan's (`eps`, `scale`) over them.
fn scalar_args(problem: &Problem, plan: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    match problem {
        Problem::Gemm(g) => {
            let s = GemmStrides::packed(g);
            for (k, v) in [
                ("M", g.m as f64),
                ("N", g.n as f64),
                ("K", g.k as f64),
                ("lda", s.lda as f64),
                ("ldb", s.ldb as f64),
                ("ldc", s.ldc as f64),
                ("ldd", s.ldd as f64),
                ("stride_a", s.stride_a as f64),
                ("stride_b", s.stride_b as f64),
                ("stride_c", s.stride_c as f64),
                ("stride_d", s.stride_d as f64),
                ("alpha", 1.0),
                ("beta", 0.0),
            ] {
                out.insert(k.to_string(), v);
            }
        }
        other => {
            if let Ok(layout) = OpInputs::layout(other) {
                for (name, s) in layout.scalars {
                    let v = match s {
                        Scalar::I32(v) => f64::from(v),
                        Scalar::F32(v) => f64::from(v),
                    };
                    out.insert(name.to_string(), v);
                }
            }
        }
    }
    for (k, v) in plan {
        out.insert(k.clone(), *v);
    }
    out
}

/// Shapes, id ranges and the mask's form, checked before anything is uploaded; errors name
/// the input and its shape. Returns each sequence's real length.
pub fn check_inputs(plan: &Plan, x: &Inputs) -> Result<Vec<u64>, ExecError> {
    let bad = |s: String| ExecError::Input(s);
    if x.batch == 0 || x.seq == 0 {
        return Err(bad(format!(
            "empty input: batch {} × seq {}",
            x.batch, x.seq
        )));
    }
    let n = x
        .batch
        .checked_mul(x.seq)
        .ok_or_else(|| bad("batch × seq overflows".into()))?;
    let shape = |name: &str, v: &[i64]| -> Result<(), ExecError> {
        if v.len() as u64 != n {
            return Err(bad(format!(
                "`{name}` has {} values; batch {} × seq {} needs {n}",
                v.len(),
                x.batch,
                x.seq
            )));
        }
        Ok(())
    };
    let range = |name: &str, v: &[i64], limit: u64, what: &str| -> Result<(), ExecError> {
        if let Some((i, &id)) = v
            .iter()
            .enumerate()
            .find(|(_, &id)| id < 0 || id as u64 >= limit)
        {
            return Err(bad(format!(
                "`{name}`[{}, {}] = {id} is outside the model's {what} [0, {limit})",
                i as u64 / x.seq,
                i as u64 % x.seq
            )));
        }
        Ok(())
    };
    shape("input_ids", &x.input_ids)?;
    range("input_ids", &x.input_ids, plan.model.vocab, "vocabulary")?;
    if let Some(t) = &x.token_type_ids {
        shape("token_type_ids", t)?;
        range("token_type_ids", t, plan.model.token_types, "token types")?;
    }
    if x.seq > plan.model.max_positions {
        return Err(bad(format!(
            "seq {} is longer than the model's {} positions",
            x.seq, plan.model.max_positions
        )));
    }
    let mut lens = vec![x.seq; x.batch as usize];
    if let Some(m) = &x.attention_mask {
        shape("attention_mask", m)?;
        for (r, len) in lens.iter_mut().enumerate() {
            let row = &m[r * x.seq as usize..(r + 1) * x.seq as usize];
            if let Some(&v) = row.iter().find(|&&v| v != 0 && v != 1) {
                return Err(bad(format!(
                    "`attention_mask` row {r} holds {v}; only 0 and 1 are allowed"
                )));
            }
            let ones = row.iter().take_while(|&&v| v == 1).count();
            if row[ones..].contains(&1) {
                return Err(bad(format!(
                    "`attention_mask` row {r} is not ones then zeros (right padding); the kernels take a length per sequence"
                )));
            }
            if ones == 0 {
                return Err(bad(format!("`attention_mask` row {r} masks every token")));
            }
            *len = ones as u64;
        }
    }
    Ok(lens)
}

/// Activations of the plan as f32 (`bytes` in the plan's dtype).
pub fn decode(dtype: DType, bytes: &[u8]) -> Option<Vec<f32>> {
    HostTensor::from_bytes(dtype, bytes).ok().map(|t| t.values)
}
