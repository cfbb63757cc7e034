//! The compile pipeline end to end, in order: import → graph passes → lower every bucket →
//! dedup problems → resolve tuning (fill buckets' problems take their anchors' configs) →
//! plan memory → lay out weights → assemble the [`Plan`].
//! Each stage lives in its own module; this one only sequences them and reports progress.

use crate::binding;
use crate::bucket::{self, Bucket, BucketError};
use crate::graph::Graph;
use crate::import::{self, ImportError, Model};
use crate::lower::{self, LowerError, Step};
use crate::memory::ALIGN;
use crate::passes::{self, PassError, PassReport};
use crate::plan::{self, ArenaSummary, Callee, Plan, PlanDevice, PlanError};
use crate::tuning::{self, FillConfigs, Lookup, Mode, TuningError};
use std::path::{Path, PathBuf};
use tessera_dsl::DType;
use tessera_tuner::sweep::Observer;

/// What to compile.
#[derive(Debug, Clone)]
pub struct Options {
    pub model_dir: PathBuf,
    pub dtype: DType,
    pub batches: Vec<u64>,
    pub seqs: Vec<u64>,
    /// Packed buckets under each padded one (`bucket::packed_under`); 0: padded buckets only.
    pub packed_steps: u64,
    /// Packed fill buckets every this many tokens between them (`bucket::packed_fill`; their
    /// kernels take the anchors' configs, or pick by `fill_configs`); 0: none.
    pub packed_granule: u64,
    /// How fill buckets' kernels missing from the cache get their configs.
    pub fill_configs: FillConfigs,
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
    /// Per bucket: the index of the bucket its kernels may take configs from (a fill's anchor).
    pub donors: Vec<Option<usize>>,
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
    let padded = bucket::cross(&options.batches, &options.seqs, model.config.max_positions)?;
    let fills = bucket::packed_fill(&padded, options.packed_steps, options.packed_granule)?;
    let anchors = bucket::packed_under(&padded, options.packed_steps);
    let mut buckets = padded;
    buckets.extend(anchors);
    let tuned = buckets.len();
    buckets.extend(fills.iter().map(|f| f.bucket));
    let donors = (0..buckets.len())
        .map(|i| {
            let fill = i.checked_sub(tuned).and_then(|j| fills.get(j))?;
            buckets[..tuned].iter().position(|b| *b == fill.donor)
        })
        .collect();
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
        donors,
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
        donors,
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
    let problem_donors = problem_donors(&refs, &donors, problems.len());
    let kernels = tuning::resolve(
        &problems,
        &problem_donors,
        options.fill_configs,
        lookup,
        mode,
        obs,
    )?;
    obs.phase("memory plan");
    let (weights_bytes, table, weight_views) = binding::lay_out_weights(graph, &model.weights);
    let mut bucket_plans = Vec::with_capacity(buckets.len());
    for ((&b, steps), callees) in buckets.iter().zip(&lists).zip(&refs) {
        bucket_plans.push(binding::plan_bucket(
            graph,
            b,
            steps,
            callees,
            &weight_views,
        ));
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

/// Per problem: the problem it may take its config from. Only a problem that no tuned bucket
/// launches has one: at its first launch in a fill bucket, the problem at the same step of the
/// fill's donor bucket (both are lowerings of one graph, so their launch lists align).
fn problem_donors(
    refs: &[Vec<Callee>],
    bucket_donors: &[Option<usize>],
    problems: usize,
) -> Vec<Option<usize>> {
    let kernel = |c: &Callee| match c {
        Callee::Kernel { kernel } => Some(*kernel),
        Callee::Glue { .. } => None,
    };
    let mut tuned = vec![false; problems];
    for (callees, donor) in refs.iter().zip(bucket_donors) {
        if donor.is_none() {
            for k in callees.iter().filter_map(kernel) {
                tuned[k] = true;
            }
        }
    }
    let mut out = vec![None; problems];
    for (callees, donor) in refs.iter().zip(bucket_donors) {
        let Some(from) = donor.and_then(|d| refs.get(d)) else {
            continue;
        };
        if from.len() != callees.len() {
            continue;
        }
        for (c, f) in callees.iter().zip(from) {
            if let (Some(k), Some(d)) = (kernel(c), kernel(f)) {
                if !tuned[k] && out[k].is_none() && tuned[d] {
                    out[k] = Some(d);
                }
            }
        }
    }
    out
}
