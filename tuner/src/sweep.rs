//! One tuning run over problems: enumerate → validate → prune (the cost model keeps the best
//! few per problem, [`crate::prune`]; the rest are stored as `pruned` rows and never compiled)
//! → compile (parallel worker processes) → verify → time (one measuring worker, early stop for
//! candidates over 3× the best so far) → select → store. [`crate::fleet`] runs one session per
//! GPU over a shared job queue, each problem claimed in the cache while its session works. A problem whose winner is cached
//! costs one lookup: nothing is enumerated, compiled or measured. Every finished candidate is written to the cache at once, so
//! a run that is killed loses nothing it finished, and `resume` picks up where it stopped.
//! [`pick_among`] is the narrow form a compile's packed fill buckets can ask for: a few
//! candidates measured and stored, no rejected or pruned rows and no winner ([`SweepScope`]).

use crate::candidate::{sim_cost, Candidate};
use crate::error::TunerError;
use crate::measure::TimingPlan;
use crate::prune::{plan, validate_space, PruneConfig, Verdict};
use crate::shapes::NamedProblem;
use crate::supervisor::{call_all, Worker, WorkerFailure, WorkerSpec};
use crate::worker::{PlantedFault, Reply, Request};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tessera_cache::{
    policy, Cache, DeviceFingerprint, ProblemRecord, Provenance, ResultRow, Status, TemplateKey,
    Throughput, ThroughputUnit, Timestamp, Timing, WinnerRow,
};
use tessera_dsl::{Config, DeviceCaps, Problem, Template};

/// How to tune.
#[derive(Debug, Clone)]
pub struct TuneSettings {
    /// Parallel compile workers.
    pub jobs: usize,
    pub plan: TimingPlan,
    /// Candidates whose quick probe is over this multiple of the best so far are not timed.
    pub slow_factor: f64,
    /// Per-candidate limit for one worker request.
    pub timeout: Duration,
    /// Keep finished candidates of unfinished problems instead of measuring them again.
    pub resume: bool,
    /// Stop starting new candidates after this long.
    pub budget: Option<Duration>,
    /// Seed of this run's random inputs (fresh per run).
    pub seed: u64,
    /// Planted faults, for tests of the failure paths: (kernel-name substring, fault).
    pub faults: Vec<(String, PlantedFault)>,
    /// How many candidates per problem survive the pruning stage (before compiling).
    pub prune: PruneConfig,
}

/// The device a session measures on, and who it is.
pub struct Session<'a> {
    pub cache: &'a Cache,
    pub fingerprint: DeviceFingerprint,
    pub caps: DeviceCaps,
    pub measure: Worker,
    /// Compile workers run ahead of measurement (NVRTC / hipcc); `None` lets the measuring
    /// worker compile (the simulated device, whose compile is free).
    pub compile: Option<WorkerSpec>,
    pub settings: TuneSettings,
    pub origin_host: String,
    pub tool_version: String,
    pub started: Instant,
    /// The cache claim this session holds on the problem it measures (multi-GPU and
    /// multi-process tuning, [`crate::fleet`]): refreshed while candidates are measured, so a
    /// long problem's claim never looks stale.
    pub claim: Option<ActiveClaim>,
    /// Compile slots shared with other sessions of this process (one per GPU), so that all of
    /// them together run at most `jobs` compiles; `None`: this session's own `jobs`.
    pub compile_slots: Option<std::sync::Arc<crate::pool::Slots>>,
}

/// A claim a session holds (see [`tessera_cache::claims`]).
#[derive(Debug, Clone)]
pub struct ActiveClaim {
    pub key: String,
    pub owner: tessera_cache::ClaimOwner,
    /// Refresh `claimed_at` after this long.
    pub refresh_every: Duration,
    pub refreshed: Instant,
}

/// The cache's identity for a device: who measured (name, arch, SMs, driver, toolchain, and
/// whether it is the simulated device).
pub fn device_fingerprint(
    info: &tessera_device::DeviceInfo,
    target: tessera_dsl::Target,
) -> DeviceFingerprint {
    DeviceFingerprint {
        name: info.name.clone(),
        arch: target.name().to_string(),
        sm_count: info.sm_count,
        driver: info.driver_version.clone(),
        toolchain: info.toolchain.clone(),
        simulated: info.simulated,
    }
}

/// Progress callbacks (the CLI draws bars; tests count).
pub trait Observer {
    fn problem_started(&mut self, _name: &str, _key: &str, _candidates: usize) {}
    fn phase(&mut self, _what: &str) {}
    fn candidate_done(&mut self, _kernel: &str, _status: &str, _median_ms: Option<f64>) {}
    fn problem_done(&mut self, _summary: &ProblemSummary) {}
}

/// An observer that ignores everything.
pub struct Silent;
impl Observer for Silent {}

/// What happened to one problem.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ProblemSummary {
    pub name: String,
    pub key: String,
    pub template: String,
    /// A winner was already cached: nothing was measured.
    pub cached: bool,
    pub winner: Option<String>,
    pub median_ms: Option<f64>,
    /// TFLOP/s of the winner (compute-bound ops).
    pub tflops: Option<f64>,
    /// GB/s of the winner (memory-bound ops: layernorm, softmax).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gbs: Option<f64>,
    /// Candidates by status (this run's rows only; `pruned`: dropped before compiling).
    pub counts: BTreeMap<String, usize>,
    /// Candidates the pruning stage kept (compiled and measured unless already done).
    #[serde(skip_serializing_if = "is_zero")]
    pub kept: usize,
    pub compile_s: f64,
    pub verify_s: f64,
    pub time_s: f64,
    pub wall_s: f64,
    pub budget_exhausted: bool,
    pub worker_restarts: u32,
    /// The GPU that measured this problem (`cuda:1`, `sim:h100:0`); absent when cached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
    /// The stale claim this run took over before measuring (a killed or vanished tuner).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub took_over_claim: Option<String>,
    /// Candidates an earlier, unfinished run already stored for this problem (no winner yet)
    /// that this run measured again because `resume` was off; `--resume` keeps them.
    #[serde(skip_serializing_if = "is_zero")]
    pub resumable: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn status_of(word: &str) -> Status {
    match word {
        "ok" => Status::Ok,
        "compile_error" => Status::CompileError,
        "wrong_result" => Status::WrongResult,
        "skipped_slow" => Status::SkippedSlow,
        "timeout" => Status::Timeout,
        "rejected" => Status::Rejected,
        "pruned" => Status::Pruned,
        _ => Status::LaunchError,
    }
}

impl Session<'_> {
    fn row(
        &self,
        t: &dyn Template,
        problem: &Problem,
        config: &Config,
        status: Status,
        reason: String,
    ) -> ResultRow {
        // target knobs at their default are left out (`ParamSpace::written`)
        let space = t.space();
        let params: serde_json::Map<String, serde_json::Value> = space
            .written(&config.values())
            .into_iter()
            .map(|(n, v)| (n, serde_json::Value::from(v)))
            .collect();
        let v = &config.variant;
        let guards = serde_json::json!({
            "align": v.align, "input": v.input.name(), "output": v.output.name(), "layout": v.layout,
            "epilogue": v.epilogue.iter().map(|e| e.name()).collect::<Vec<_>>(),
        });
        ResultRow {
            device: self.fingerprint.clone(),
            template: TemplateKey::new(t.name(), t.source_hash()),
            problem: ProblemRecord::new(
                problem.key(),
                problem.op().name(),
                serde_json::to_string(problem).unwrap_or_default(),
            ),
            kernel_name: config.kernel_name(),
            config: space.assignment(&config.values()),
            config_json: serde_json::Value::Object(params).to_string(),
            guards_json: guards.to_string(),
            status,
            reason: if status != Status::Ok && reason.is_empty() {
                status.as_str().to_string()
            } else {
                reason
            },
            timing: None,
            throughput: None,
            max_rel_error: None,
            compile_s: None,
            provenance: Provenance {
                origin_host: self.origin_host.clone(),
                tool_version: self.tool_version.clone(),
                measured_at: Timestamp::now(),
            },
        }
    }

    fn fault_for(&self, kernel: &str) -> Option<PlantedFault> {
        self.settings
            .faults
            .iter()
            .find(|(s, _)| kernel.contains(s.as_str()))
            .map(|&(_, f)| f)
    }

    fn over_budget(&self) -> bool {
        self.settings
            .budget
            .is_some_and(|b| self.started.elapsed() >= b)
    }
}

/// Fills `row` from the measuring worker's reply. `compiled_s` is the compile time the
/// parallel compile step measured for this kernel, when there was one: the measuring worker
/// then only loads the compiled module (from the module cache), and its own `compile_s` is
/// that load, not the compile.
fn apply_reply(row: &mut ResultRow, reply: &Reply, problem: &Problem, compiled_s: Option<f64>) {
    row.status = status_of(&reply.status);
    row.reason = if row.status != Status::Ok && reply.reason.is_empty() {
        reply.status.clone()
    } else {
        reply.reason.clone()
    };
    row.max_rel_error = reply.rel_err.filter(|e| e.is_finite());
    row.compile_s = Some(compiled_s.unwrap_or(reply.compile_s));
    if let (Some(median_ms), Some(p10_ms), Some(p90_ms)) =
        (reply.median_ms, reply.p10_ms, reply.p90_ms)
    {
        let timing = Timing {
            median_ms,
            p10_ms,
            p90_ms,
            samples: reply.samples,
        };
        // Every stored time is bounded (the cache refuses others): an implausible
        // measurement is a failed candidate with its reason, not a timing.
        if let Err(e) = timing.validate() {
            if row.status == Status::Ok {
                row.status = Status::LaunchError;
                row.reason = format!("implausible timing: {e}");
            }
        } else {
            row.timing = Some(timing);
            row.throughput = Some(Throughput {
                value: problem.throughput(median_ms),
                unit: if problem.memory_bound() {
                    ThroughputUnit::Gbs
                } else {
                    ThroughputUnit::Tflops
                },
            });
        }
    }
    if row.status == Status::Ok && row.timing.is_none() {
        row.status = Status::LaunchError;
        if row.reason.is_empty() {
            row.reason = "verified but not timed".into();
        }
    }
}

/// What one problem's sweep measures and stores.
#[derive(Debug, Clone, PartialEq)]
pub enum SweepScope {
    /// The template's space: every rejected and pruned candidate stored as a row with its
    /// reason, the kept ones measured, the winner stored (`tessera tune`, a compile's misses).
    Space,
    /// A narrow pick: the cost model's best `keep` (and each dispatch policy's best) plus the
    /// candidates named in `also`, measured unless the cache already holds their rows; only
    /// their rows are stored, and no winner (the pick is not a sweep of the space, so a later
    /// `tessera tune` of the problem still sweeps it). A packed fill bucket's kernels.
    Among { keep: usize, also: BTreeSet<String> },
}

/// Tune `template` for one problem and store the results and the winner.
pub fn tune_problem(
    s: &mut Session,
    named: &NamedProblem,
    t: &'static dyn Template,
    obs: &mut dyn Observer,
) -> Result<ProblemSummary, TunerError> {
    sweep(s, named, t, &SweepScope::Space, obs).map(|(summary, _)| summary)
}

/// The fastest of a [`SweepScope::Among`] pick for one problem (its rows stored, no winner):
/// the summary, and the chosen config (`None` when no candidate measured ok). A problem
/// whose winner is cached returns that winner's summary and no config: the caller reads the
/// cache.
pub fn pick_among(
    s: &mut Session,
    named: &NamedProblem,
    t: &'static dyn Template,
    keep: usize,
    also: BTreeSet<String>,
    obs: &mut dyn Observer,
) -> Result<(ProblemSummary, Option<Config>), TunerError> {
    sweep(s, named, t, &SweepScope::Among { keep, also }, obs)
}

fn sweep(
    s: &mut Session,
    named: &NamedProblem,
    t: &'static dyn Template,
    scope: &SweepScope,
    obs: &mut dyn Observer,
) -> Result<(ProblemSummary, Option<Config>), TunerError> {
    let started = Instant::now();
    let among = matches!(scope, SweepScope::Among { .. });
    let problem = &named.problem;
    let key = problem.key();
    let tk = TemplateKey::new(t.name(), t.source_hash());
    let mut summary = ProblemSummary {
        name: named.name.clone(),
        key: key.clone(),
        template: t.name().into(),
        ..Default::default()
    };
    if let Some(w) = s.cache.winner(&s.fingerprint, &tk, &key)? {
        summary.cached = true;
        summary.winner = Some(w.kernel_name);
        summary.median_ms = Some(w.median_ms);
        set_throughput(&mut summary, problem, w.median_ms);
        obs.problem_done(&summary);
        return Ok((summary, None));
    }
    // rows an earlier run stored for this key: `--resume` keeps the measured ones (a pruned
    // row is a decision, not work done: it is planned again)
    let stored = s.cache.results_for(&key, &s.fingerprint, Some(&tk))?;
    let earlier: BTreeSet<String> = stored
        .iter()
        .filter(|r| r.status != Status::Pruned)
        .map(|r| r.kernel_name.clone())
        .collect();
    // a narrow pick never measures a candidate twice: its rows are what it keeps
    let done: BTreeSet<String> = if s.settings.resume || among {
        earlier.clone()
    } else {
        summary.resumable = earlier.len();
        BTreeSet::new()
    };
    // enumerate → validate
    let (valid, invalid) = validate_space(t, problem, &s.caps)?;
    let rejected: Vec<ResultRow> = invalid
        .iter()
        .filter(|_| !among)
        .filter(|(c, _)| !done.contains(&c.kernel_name()))
        .map(|(c, r)| s.row(t, problem, c, Status::Rejected, r.to_string()))
        .collect();
    s.cache.record_results(&rejected)?;
    if !among {
        *summary.counts.entry("rejected".into()).or_default() += rejected.len();
    }
    // prune: rank every valid candidate (done ones too, so a resumed sweep keeps the same
    // set) by the cost model; keep the best few, store the rest as `pruned` rows with their
    // rank and estimate. Nothing pruned is generated or compiled.
    obs.phase("prune");
    let plan = match scope {
        SweepScope::Space => plan(t, problem, &s.caps, valid, s.settings.prune),
        SweepScope::Among { keep, also } => {
            let mut p = plan(t, problem, &s.caps, valid, PruneConfig::top(*keep));
            p.keep_also(also);
            p
        }
    };
    let pruned: Vec<ResultRow> = plan
        .pruned
        .iter()
        .filter(|_| !among)
        .filter(|p| !earlier.contains(&p.name()))
        .filter_map(|p| match p.verdict {
            Verdict::Pruned(why) => {
                Some(s.row(t, problem, &p.config, Status::Pruned, why.to_string()))
            }
            Verdict::Kept { .. } => None,
        })
        .collect();
    s.cache.record_results(&pruned)?;
    if !pruned.is_empty() {
        *summary.counts.entry("pruned".into()).or_default() += pruned.len();
    }
    summary.kept = plan.kept.len();
    // a narrow pick chooses among its kept candidates only (their configs by kernel name)
    let kept_configs: BTreeMap<String, Config> = if among {
        plan.kept
            .iter()
            .map(|p| (p.name(), p.config.clone()))
            .collect()
    } else {
        BTreeMap::new()
    };
    // the kept candidates still to measure, best estimate first (so the best-so-far, and the
    // early stop, come early)
    let ordered: Vec<(Vec<i64>, Config)> = plan
        .kept
        .into_iter()
        .filter(|p| !done.contains(&p.name()))
        .map(|p| (p.values, p.config))
        .collect();
    obs.problem_started(&named.name, &key, ordered.len());
    // compile in parallel worker processes (a compiler crash costs one worker)
    let mut compile_failed: BTreeMap<String, ResultRow> = BTreeMap::new();
    let mut compiled_s: BTreeMap<String, f64> = BTreeMap::new();
    if let Some(spec) = s.compile.clone() {
        obs.phase("compile");
        let t0 = Instant::now();
        let requests: Vec<Request> = ordered
            .iter()
            .map(|(values, _)| Request::Compile {
                template: t.name().into(),
                values: values.clone(),
                problem: problem.clone(),
                target: s.caps.target,
            })
            .collect();
        let replies = match &s.compile_slots {
            Some(slots) => crate::supervisor::call_all_shared(
                &spec,
                s.settings.jobs,
                &requests,
                s.settings.timeout,
                slots,
                || {},
            ),
            None => call_all(&spec, s.settings.jobs, &requests, s.settings.timeout, || {}),
        };
        for ((_, c), r) in ordered.iter().zip(replies) {
            let name = c.kernel_name();
            let failure = match r {
                Ok(reply) if reply.status == "ok" => {
                    compiled_s.insert(name.clone(), reply.compile_s);
                    None
                }
                Ok(reply) => Some(reply.reason),
                Err(e) => Some(format!("compiler process failed: {e}")),
            };
            if let Some(reason) = failure {
                compile_failed.insert(name, s.row(t, problem, c, Status::CompileError, reason));
            }
        }
        summary.compile_s = t0.elapsed().as_secs_f64();
    }
    // verify → time, one candidate at a time on the measuring worker
    obs.phase("measure");
    let mut best: Option<f64> = stored
        .iter()
        .filter(|r| r.status == Status::Ok)
        .filter_map(|r| r.timing.map(|t| t.median_ms))
        .min_by(f64::total_cmp);
    for (values, config) in &ordered {
        let name = config.kernel_name();
        let mut row = s.row(t, problem, config, Status::LaunchError, String::new());
        if let Some(failed) = compile_failed.remove(&name) {
            s.cache.record_result(&failed)?;
            *summary.counts.entry("compile_error".into()).or_default() += 1;
            obs.candidate_done(&name, "compile_error", None);
            continue;
        }
        if s.over_budget() {
            summary.budget_exhausted = true;
            break;
        }
        let req = Request::Measure {
            template: t.name().into(),
            values: values.clone(),
            problem: problem.clone(),
            seed: s.settings.seed,
            plan: s.settings.plan,
            stop_above_ms: best.map(|b| b * s.settings.slow_factor),
            fault: s.fault_for(&name),
        };
        match s.measure.call(&req, s.settings.timeout) {
            Ok(reply) if reply.status == "protocol_error" => {
                return Err(TunerError::Invalid(format!("worker: {}", reply.reason)))
            }
            Ok(reply) => {
                apply_reply(&mut row, &reply, problem, compiled_s.get(&name).copied());
                summary.verify_s += reply.verify_s;
                summary.time_s += reply.time_s;
            }
            Err(WorkerFailure::Timeout(d)) => {
                row.status = Status::Timeout;
                row.reason = format!("no answer within {d:?}; worker killed and restarted");
            }
            Err(WorkerFailure::Spawn(e)) => {
                return Err(TunerError::Invalid(format!("cannot start a worker: {e}")))
            }
            Err(e) => {
                row.status = Status::LaunchError;
                row.reason = format!("{e}; worker restarted");
            }
        }
        if row.status == Status::Ok {
            let m = row.timing.map(|t| t.median_ms);
            best = match (best, m) {
                (Some(b), Some(m)) => Some(b.min(m)),
                (None, m) => m,
                (b, None) => b,
            };
        }
        s.cache.record_result(&row)?;
        if let Some(c) = s.claim.as_mut() {
            if c.refreshed.elapsed() >= c.refresh_every {
                s.cache.refresh_claim(&c.key, &c.owner)?;
                c.refreshed = Instant::now();
            }
        }
        *summary
            .counts
            .entry(row.status.as_str().into())
            .or_default() += 1;
        obs.candidate_done(&name, row.status.as_str(), row.timing.map(|t| t.median_ms));
    }
    summary.worker_restarts = s.measure.starts.saturating_sub(1);
    // select → store the winner (near-ties broken by kernel name, as the cache's policy does)
    let mut rows = s.cache.results_for(&key, &s.fingerprint, Some(&tk))?;
    if among {
        rows.retain(|r| kept_configs.contains_key(&r.kernel_name));
    }
    let mut chosen = None;
    if let Some(w) = policy::choose_winner(&rows).and_then(WinnerRow::from_result) {
        summary.winner = Some(w.kernel_name.clone());
        summary.median_ms = Some(w.median_ms);
        set_throughput(&mut summary, problem, w.median_ms);
        if among {
            chosen = kept_configs.get(&w.kernel_name).cloned();
        } else if !summary.budget_exhausted {
            s.cache.record_winner(&w)?;
        }
    }
    summary.wall_s = started.elapsed().as_secs_f64();
    obs.problem_done(&summary);
    Ok((summary, chosen))
}

/// The simulated device's cost ([`sim_cost`]) for one config of `t` on `problem` (lower is
/// better); `None` when no source can be generated for it. Sweeps rank with
/// [`crate::cost_model`] instead; this older order still picks a compile's untuned kernels.
pub fn predicted_cost(
    t: &'static dyn Template,
    config: &Config,
    problem: &Problem,
    target: tessera_dsl::Target,
) -> Option<f64> {
    let cand = Candidate::new(t, config.clone(), target).ok()?;
    Some(problem.flops() / sim_cost(&cand, problem).efficiency)
}

/// Best [`predicted_cost`] first, ties by kernel name.
fn by_prediction(a: (f64, &Config), b: (f64, &Config)) -> std::cmp::Ordering {
    a.0.total_cmp(&b.0)
        .then_with(|| a.1.kernel_name().cmp(&b.1.kernel_name()))
}

/// The valid config of `t` for `problem` that [`predicted_cost`] ranks best (what a compile
/// without tuning uses). `None` if no config is valid.
pub fn first_by_prediction(
    t: &'static dyn Template,
    problem: &Problem,
    caps: &DeviceCaps,
) -> Result<Option<Config>, TunerError> {
    let mut best: Option<(f64, Config)> = None;
    for values in t.space().enumerate() {
        let config = t
            .config(&values, problem)
            .map_err(|r| TunerError::Invalid(format!("{}: {r}", t.name())))?;
        if t.validate(&config, problem, caps).is_err() {
            continue;
        }
        let Some(cost) = predicted_cost(t, &config, problem, caps.target) else {
            continue;
        };
        let better = best.as_ref().is_none_or(|(c, b)| {
            by_prediction((cost, &config), (*c, b)) == std::cmp::Ordering::Less
        });
        if better {
            best = Some((cost, config));
        }
    }
    Ok(best.map(|(_, c)| c))
}

fn set_throughput(summary: &mut ProblemSummary, problem: &Problem, median_ms: f64) {
    let value = problem.throughput(median_ms);
    if problem.memory_bound() {
        summary.gbs = Some(value);
    } else {
        summary.tflops = Some(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_dsl::GemmProblem;

    fn blank_row(problem: &Problem) -> ResultRow {
        ResultRow {
            device: DeviceFingerprint {
                name: "sim".into(),
                arch: "sm_90a".into(),
                sm_count: 132,
                driver: "simulated".into(),
                toolchain: "none (simulated)".into(),
                simulated: true,
            },
            template: TemplateKey::new("gemm", "h"),
            problem: ProblemRecord::new(problem.key(), "gemm", "{}"),
            kernel_name: "gemm_k".into(),
            config: "a=1".into(),
            config_json: "{}".into(),
            guards_json: "{}".into(),
            status: Status::Ok,
            reason: String::new(),
            timing: None,
            throughput: None,
            max_rel_error: None,
            compile_s: None,
            provenance: Provenance {
                origin_host: "h".into(),
                tool_version: "tessera".into(),
                measured_at: Timestamp::now(),
            },
        }
    }

    fn reply(median: f64) -> Reply {
        Reply {
            kernel: "gemm_k".into(),
            status: "ok".into(),
            rel_err: Some(1e-4),
            median_ms: Some(median),
            p10_ms: Some(median),
            p90_ms: Some(median),
            samples: 20,
            ..Reply::default()
        }
    }

    #[test]
    fn implausible_timings_are_failed_candidates_not_stored_times() {
        let problem = Problem::Gemm(GemmProblem::new(384, 768, 768));
        for median in [1e307, f64::INFINITY, f64::NAN, 0.0, -1.0, 1e-9] {
            let mut row = blank_row(&problem);
            apply_reply(&mut row, &reply(median), &problem, None);
            assert_eq!(row.status, Status::LaunchError, "{median}");
            assert!(row.timing.is_none(), "{median}");
            assert!(
                row.reason.contains("implausible timing"),
                "{median}: {}",
                row.reason
            );
            row.validate().unwrap();
        }
        let mut row = blank_row(&problem);
        apply_reply(&mut row, &reply(0.05), &problem, None);
        assert_eq!(row.status, Status::Ok);
        assert_eq!(row.timing.unwrap().median_ms, 0.05);
        row.validate().unwrap();
    }

    #[test]
    fn the_compile_step_s_time_is_the_row_s_compile_time() {
        let problem = Problem::Gemm(GemmProblem::new(64, 64, 64));
        let mut row = blank_row(&problem);
        let reply = Reply {
            compile_s: 0.002, // the measuring worker's module-cache load
            ..reply(0.05)
        };
        apply_reply(&mut row, &reply, &problem, Some(1.25));
        assert_eq!(row.compile_s, Some(1.25));
        apply_reply(&mut row, &reply, &problem, None);
        assert_eq!(row.compile_s, Some(0.002));
    }
}
