//! The compile pipeline end to end, in order: import → graph passes → lower every bucket →
//! dedup problems → resolve tuning → plan memory → lay out weights → assemble the [`Plan`].
//! Each stage lives in its own module; this one only sequences them and reports progress.

use crate::bucket::{self, Bucket, BucketError};
use crate::graph::{Graph, ValueId, ValueKind};
use crate::import::{self, ImportError, Model};
use crate::lower::{self, LowerError, Step};
use crate::memory::{self, Lifetime, ALIGN};
use crate::passes::{self, PassError, PassReport};
use crate::plan::{
    self, ArenaSummary, BucketPlan, Buffer, Callee, InputSlot, Launch, LaunchArg, OutputSlot, Plan,
    PlanDevice, PlanError, View, WeightEntry, WeightTable,
};
use crate::tuning::{self, Lookup, Mode, TuningError};
use crate::weights::WeightStore;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tessera_dsl::DType;
use tessera_library::host::HostTensor;
use tessera_tuner::sweep::Observer;

/// What to compile.
#[derive(Debug, Clone)]
pub struct Options {
    pub model_dir: PathBuf,
    pub dtype: DType,
    pub batches: Vec<u64>,
    pub seqs: Vec<u64>,
    /// Write the graph before and after every pass here.
    pub dump_graph: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("--dtype {0}: weights and activations must be f16 or bf16")]
    DType(DType),
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Bucket(#[from] BucketError),
    #[error(transparent)]
    Pass(#[from] PassError),
    #[error(transparent)]
    Lower(#[from] LowerError),
    #[error(transparent)]
    Tuning(#[from] TuningError),
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// An imported model after the graph passes.
pub struct Optimized {
    pub model: Model,
    pub passes: Vec<PassReport>,
    pub buckets: Vec<Bucket>,
}

/// A compiled model: the plan and the weights file's bytes, not yet written.
pub struct Compiled {
    pub plan: Plan,
    pub graph: Graph,
    pub weights: Vec<u8>,
}

impl Compiled {
    /// Write the plan directory (atomically: see [`Plan::save`]).
    pub fn write(&self, out: &Path) -> Result<(), PlanError> {
        self.plan.save(&self.weights, out)
    }
}

/// Import the model and run the graph passes (no device needed).
pub fn optimize(options: &Options, obs: &mut dyn Observer) -> Result<Optimized, CompileError> {
    if !options.dtype.is_mma_input() {
        return Err(CompileError::DType(options.dtype));
    }
    obs.phase(&format!("import {}", options.model_dir.display()));
    let mut model = import::import(&options.model_dir, options.dtype)?;
    let buckets = bucket::cross(&options.batches, &options.seqs, model.config.max_positions)?;
    obs.phase("graph passes");
    let passes = passes::optimize(
        &mut model.graph,
        &mut model.weights,
        options.dump_graph.as_deref(),
    )?;
    Ok(Optimized {
        model,
        passes,
        buckets,
    })
}

/// Compile end to end; `mode` says what to do about kernels the cache has no winner for.
pub fn compile(
    options: &Options,
    lookup: &Lookup,
    mode: Mode,
    obs: &mut dyn Observer,
) -> Result<Compiled, CompileError> {
    let Optimized {
        model,
        passes,
        buckets,
    } = optimize(options, obs)?;
    let graph = &model.graph;
    obs.phase(&format!("lower {} bucket(s)", buckets.len()));
    let lists: Vec<Vec<Step>> = buckets
        .iter()
        .map(|&b| lower::lower(graph, b, options.dtype))
        .collect::<Result<_, _>>()?;
    let (problems, refs) = passes::dedup_problems::run(&lists);
    let launches = refs
        .iter()
        .flatten()
        .filter(|c| matches!(c, Callee::Kernel { .. }))
        .count();
    obs.phase(&format!(
        "{launches} kernel launches, {} distinct problems: resolving tuning",
        problems.len()
    ));
    let kernels = tuning::resolve(&problems, lookup, mode, obs)?;
    obs.phase("memory plan");
    let (weights_bytes, table, weight_views) = lay_out_weights(graph, &model.weights);
    let mut bucket_plans = Vec::with_capacity(buckets.len());
    for ((&b, steps), callees) in buckets.iter().zip(&lists).zip(&refs) {
        bucket_plans.push(plan_bucket(graph, b, steps, callees, &weight_views));
    }
    let arena = ArenaSummary {
        bytes: bucket_plans
            .iter()
            .map(|b| b.arena_bytes)
            .max()
            .unwrap_or(0),
        naive_bytes: bucket_plans
            .iter()
            .map(|b| b.naive_bytes)
            .max()
            .unwrap_or(0),
        alignment: ALIGN,
    };
    let plan = Plan {
        schema_version: plan::SCHEMA_VERSION,
        tessera_version: env!("CARGO_PKG_VERSION").to_string(),
        source: model.source.clone(),
        model: model.config.clone(),
        dtype: options.dtype,
        device: PlanDevice::from(lookup.fingerprint),
        passes,
        kernels,
        arena,
        weights: table,
        buckets: bucket_plans,
    };
    Ok(Compiled {
        plan,
        graph: model.graph,
        weights: weights_bytes,
    })
}

/// The weights the graph reads, in first-use order, each at an aligned offset of one blob.
fn lay_out_weights(
    graph: &Graph,
    store: &WeightStore,
) -> (Vec<u8>, WeightTable, BTreeMap<ValueId, View>) {
    let mut blob = Vec::new();
    let mut tensors = Vec::new();
    let mut views = BTreeMap::new();
    for v in graph.nodes.iter().flat_map(|n| n.inputs.iter().copied()) {
        let ValueKind::Weight(id) = graph.value(v).kind else {
            continue;
        };
        if views.contains_key(&v) {
            continue;
        }
        let w = store.get(id);
        let bytes = HostTensor {
            dtype: store.dtype,
            values: w.values.clone(),
        }
        .to_bytes();
        let offset = memory::align_up(blob.len() as u64, ALIGN);
        blob.resize(offset as usize, 0);
        blob.extend_from_slice(&bytes);
        views.insert(
            v,
            View {
                buffer: Buffer::Weights,
                offset,
                bytes: bytes.len() as u64,
            },
        );
        tensors.push(WeightEntry {
            name: w.name.clone(),
            shape: w.shape.clone(),
            offset,
            bytes: bytes.len() as u64,
        });
    }
    let table = WeightTable {
        file: plan::WEIGHTS_FILE.to_string(),
        dtype: store.dtype,
        bytes: blob.len() as u64,
        sha256: import::sha256_hex(&blob),
        tensors,
    };
    (blob, table, views)
}

/// Liveness over the launch order, placement in the arena, and the launch list with views.
fn plan_bucket(
    graph: &Graph,
    b: Bucket,
    steps: &[Step],
    callees: &[Callee],
    weights: &BTreeMap<ValueId, View>,
) -> BucketPlan {
    // every non-weight value a step touches: inputs live from the start, outputs to the end
    let last_step = steps.len().saturating_sub(1);
    let mut life: BTreeMap<ValueId, Lifetime> = BTreeMap::new();
    for (i, s) in steps.iter().enumerate() {
        for o in &s.operands {
            let value = graph.value(o.value);
            if matches!(value.kind, ValueKind::Weight(_)) {
                continue;
            }
            let first = if matches!(value.kind, ValueKind::Input(_)) {
                0
            } else {
                i
            };
            let l = life.entry(o.value).or_insert(Lifetime {
                first,
                last: i,
                bytes: value.bytes(b.batch, b.seq),
            });
            l.first = l.first.min(first);
            l.last = l.last.max(i);
        }
    }
    for &(_, v) in &graph.outputs {
        if let Some(l) = life.get_mut(&v) {
            l.last = last_step;
        }
    }
    let ids: Vec<ValueId> = life.keys().copied().collect();
    let records: Vec<Lifetime> = life.values().copied().collect();
    let placement = memory::place(&records);
    let arena: BTreeMap<ValueId, u64> = ids
        .iter()
        .copied()
        .zip(placement.offsets.iter().copied())
        .collect();
    let view = |v: ValueId, offset: u64, bytes: Option<u64>| -> View {
        match weights.get(&v) {
            Some(w) => *w,
            None => View {
                buffer: Buffer::Arena,
                offset: arena.get(&v).copied().unwrap_or(0) + offset,
                bytes: bytes
                    .unwrap_or_else(|| graph.value(v).bytes(b.batch, b.seq).saturating_sub(offset)),
            },
        }
    };
    let shape = |v: ValueId| {
        graph
            .value(v)
            .shape
            .iter()
            .map(|d| d.bind(b.batch, b.seq))
            .collect::<Vec<u64>>()
    };
    let inputs = graph
        .values
        .iter()
        .enumerate()
        .filter_map(|(i, value)| match value.kind {
            ValueKind::Input(kind) if arena.contains_key(&ValueId(i)) => Some(InputSlot {
                kind,
                shape: shape(ValueId(i)),
                view: view(ValueId(i), 0, None),
            }),
            _ => None,
        })
        .collect();
    let outputs = graph
        .outputs
        .iter()
        .map(|&(kind, v)| OutputSlot {
            kind,
            shape: shape(v),
            view: view(v, 0, None),
        })
        .collect();
    let launches = steps
        .iter()
        .zip(callees)
        .map(|(s, &callee)| Launch {
            node: s.node.clone(),
            callee,
            args: s
                .operands
                .iter()
                .map(|o| LaunchArg {
                    name: o.name.clone(),
                    view: view(o.value, o.offset, o.bytes),
                })
                .collect(),
            scalars: s.scalars.clone(),
            attention_store: s.attention_store,
        })
        .collect();
    BucketPlan {
        bucket: b,
        arena_bytes: placement.arena_bytes,
        naive_bytes: memory::naive_bytes(&records),
        inputs,
        outputs,
        launches,
    }
}
