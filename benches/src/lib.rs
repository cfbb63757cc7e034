//! tessera-benches: benchmark programs for the GPU machine. Each writes JSON that a script
//! merges with the vendor library's numbers measured in the same run (see `scripts/gpu-run.sh`).
//!
//! This library holds what the programs share: the best verified candidate of a template's
//! built-in shortlist (or whole space) for one problem.

use anyhow::{bail, Context};
use serde_json::json;
use tessera_device::Device;
use tessera_dsl::{Problem, Template};
use tessera_tuner::measure::{compile, verify, TimingPlan};
use tessera_tuner::pool::{default_jobs, parallel_map};
use tessera_tuner::{shortlist, Candidate, Workload};

/// One timed candidate.
#[derive(Debug, Clone)]
pub struct Timed {
    pub kernel: String,
    pub median_ms: f64,
    pub p10_ms: f64,
    pub p90_ms: f64,
    pub rel_err: f64,
    pub registers: Option<u32>,
}

impl Timed {
    pub fn json(&self) -> serde_json::Value {
        json!({"kernel": self.kernel, "median_ms": self.median_ms, "p10_ms": self.p10_ms, "p90_ms": self.p90_ms, "rel_err": self.rel_err, "registers": self.registers})
    }
}

/// Which configs to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Search<'a> {
    Shortlist,
    WholeSpace,
    /// The whole space's configs whose kernel name contains this (one config to profile).
    Matching(&'a str),
}

/// Compile (in parallel), verify and time every candidate for `problem`; fastest first.
/// A candidate that fails verification aborts the benchmark: a wrong kernel is never reported.
pub fn time_candidates(
    device: &dyn Device,
    t: &'static dyn Template,
    problem: &Problem,
    plan: TimingPlan,
    search: Search,
) -> anyhow::Result<Vec<Timed>> {
    let points = match search {
        Search::Shortlist => shortlist::points(t, problem),
        Search::WholeSpace | Search::Matching(_) => t.space().enumerate(),
    };
    let cands: Vec<Candidate> = points
        .into_iter()
        .filter_map(|v| t.config(&v, problem).ok())
        .filter(|c| match search {
            Search::Matching(part) => c.kernel_name().contains(part),
            _ => true,
        })
        .filter(|c| t.validate(c, problem, device.caps()).is_ok())
        .map(|c| Candidate::new(t, c, device.caps().target))
        .collect::<Result<_, _>>()?;
    let modules = parallel_map(&cands, default_jobs(), |c| {
        compile(device, c, problem, None)
    });
    let seed = problem
        .key()
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31) ^ u64::from(b));
    let w = Workload::new(device, problem, seed).context("workload")?;
    let mut measured = Vec::new();
    for (c, module) in cands.iter().zip(modules) {
        let module = match module {
            Ok(module) => module,
            Err(e) => {
                eprintln!("  {}: compile failed: {e}", c.name());
                continue;
            }
        };
        let verdict = verify(device, &module, c, &w)?;
        if !verdict.pass {
            bail!(
                "{} is wrong on {problem}: rel err {:.2e}",
                c.name(),
                verdict.rel_err
            );
        }
        let timing = device.time(
            &module,
            &w.launch(c),
            &w.args(),
            plan.warmup,
            plan.iters,
            plan.l2_flush,
        )?;
        let registers = module.report().usage.registers;
        device.unload(&module)?;
        measured.push(Timed {
            kernel: c.name(),
            median_ms: timing.median(),
            p10_ms: timing.p10(),
            p90_ms: timing.p90(),
            rel_err: verdict.rel_err,
            registers,
        });
    }
    w.free(device)?;
    measured.sort_by(|a, b| {
        a.median_ms
            .total_cmp(&b.median_ms)
            .then(a.kernel.cmp(&b.kernel))
    });
    if measured.is_empty() {
        bail!("no candidate ran for {problem}");
    }
    Ok(measured)
}
