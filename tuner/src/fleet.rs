//! Tuning on several GPUs, and beside other tuners on one cache.
//!
//! One thread per GPU, each with its own measuring worker process (`cuda:N`, `hip:N`,
//! `sim:MODEL:N`) and its own connection to the cache, takes jobs (a problem × a template) from
//! one queue. All candidates of a job are timed on the GPU that took it (timings are compared
//! within a problem, never across GPUs); compilation is shared: at most `jobs` compile
//! processes run at once over all GPUs ([`crate::pool::Slots`]), and the on-disk module cache
//! means every kernel is compiled once whichever GPU measures it.
//!
//! Before measuring a job a thread
//! 1. skips it when its winner is cached (nothing to measure, no GPU needed);
//! 2. takes its GPU's lock ([`tessera_cache::GpuLock`], a `flock` under the cache's directory),
//!    so no other tuner times on that GPU meanwhile;
//! 3. claims the job in the cache ([`tessera_cache::Cache::claim`]): if another live tuner holds
//!    it, the job goes back to the end of the queue and the GPU lock is released; a stale claim
//!    (a dead process of this host, or one not refreshed within the time-to-live) is taken over
//!    and reported;
//! 4. tunes it ([`crate::sweep::tune_problem`], which finds the winner cached if another tuner
//!    finished it meanwhile), refreshing the claim as candidates finish, then releases the
//!    claim and the lock.

use crate::error::TunerError;
use crate::shapes::NamedProblem;
use crate::supervisor::{Worker, WorkerSpec};
use crate::sweep::{tune_problem, ActiveClaim, Observer, ProblemSummary, Session, TuneSettings};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tessera_cache::{
    claim_key, Cache, ClaimOutcome, ClaimOwner, DeviceFingerprint, GpuLock, TemplateKey,
};
use tessera_dsl::{DeviceCaps, Template};

/// One GPU to measure on.
#[derive(Debug, Clone)]
pub struct Gpu {
    /// What progress, claims and reports call it: `cuda:1`, `hip:0`, `sim:h100:1`.
    pub label: String,
    /// Its measuring worker.
    pub worker: WorkerSpec,
}

/// One job: a template for a problem.
#[derive(Clone, Copy)]
pub struct Job<'p> {
    pub named: &'p NamedProblem,
    pub template: &'static dyn Template,
}

/// What every GPU's session shares.
pub struct Fleet {
    pub cache_path: PathBuf,
    pub fingerprint: DeviceFingerprint,
    pub caps: DeviceCaps,
    pub compile: Option<WorkerSpec>,
    pub settings: TuneSettings,
    pub origin_host: String,
    pub tool_version: String,
    pub started: Instant,
    /// A claim not refreshed for this long is stale (claims are refreshed at a quarter of it).
    pub claim_ttl: Duration,
}

/// What one GPU did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GpuReport {
    pub gpu: String,
    /// Problems it measured.
    pub problems: usize,
    /// Candidates it stored for them.
    pub candidates: usize,
    /// Seconds it spent on its problems.
    pub busy_s: f64,
    /// Seconds from the start of the run until it ran out of work.
    pub wall_s: f64,
    pub worker_restarts: u32,
}

/// Every job's summary, in job order, and each GPU's report.
#[derive(Debug, Clone, Default)]
pub struct FleetReport {
    pub summaries: Vec<ProblemSummary>,
    pub gpus: Vec<GpuReport>,
}

/// Makes one GPU's progress observer (called once per GPU, with its label).
pub type ObserverFactory<'o> = dyn Fn(&str) -> Box<dyn Observer + Send> + Sync + 'o;

/// Tunes every job on `gpus` (see the module docs).
pub fn tune_on_gpus(
    fleet: &Fleet,
    gpus: &[Gpu],
    jobs: &[Job],
    observer: &ObserverFactory,
) -> Result<FleetReport, TunerError> {
    if gpus.is_empty() {
        return Err(TunerError::Invalid("no GPU to measure on".into()));
    }
    let queue: Mutex<VecDeque<usize>> = Mutex::new((0..jobs.len()).collect());
    let results: Mutex<Vec<Option<ProblemSummary>>> = Mutex::new(vec![None; jobs.len()]);
    let failed: Mutex<Option<TunerError>> = Mutex::new(None);
    let stop = AtomicBool::new(false);
    let slots = Arc::new(crate::pool::Slots::new(fleet.settings.jobs));
    let reports: Vec<GpuReport> = std::thread::scope(|scope| {
        let handles: Vec<_> = gpus
            .iter()
            .map(|gpu| {
                let (queue, results, failed, stop, slots) =
                    (&queue, &results, &failed, &stop, slots.clone());
                scope.spawn(move || {
                    let mut report = GpuReport {
                        gpu: gpu.label.clone(),
                        ..GpuReport::default()
                    };
                    let run = run_gpu(
                        fleet,
                        gpu,
                        jobs,
                        queue,
                        results,
                        stop,
                        slots,
                        observer,
                        &mut report,
                    );
                    if let Err(e) = run {
                        stop.store(true, Ordering::SeqCst);
                        let mut f = failed.lock().unwrap_or_else(|p| p.into_inner());
                        f.get_or_insert(e);
                    }
                    report.wall_s = fleet.started.elapsed().as_secs_f64();
                    report
                })
            })
            .collect();
        handles
            .into_iter()
            .zip(gpus)
            .map(|(h, g)| {
                h.join().unwrap_or_else(|_| GpuReport {
                    gpu: g.label.clone(),
                    ..GpuReport::default()
                })
            })
            .collect()
    });
    if let Some(e) = failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let summaries: Vec<ProblemSummary> = results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .collect::<Option<_>>()
        .ok_or_else(|| TunerError::Invalid("a GPU's thread ended without its jobs".into()))?;
    Ok(FleetReport {
        summaries,
        gpus: reports,
    })
}

#[allow(clippy::too_many_arguments)]
fn run_gpu(
    fleet: &Fleet,
    gpu: &Gpu,
    jobs: &[Job],
    queue: &Mutex<VecDeque<usize>>,
    results: &Mutex<Vec<Option<ProblemSummary>>>,
    stop: &AtomicBool,
    slots: Arc<crate::pool::Slots>,
    observer: &ObserverFactory,
    report: &mut GpuReport,
) -> Result<(), TunerError> {
    let cache = Cache::open(&fleet.cache_path)?;
    let me = ClaimOwner::this_process(fleet.origin_host.clone(), gpu.label.clone());
    let mut obs = observer(&gpu.label);
    let mut session = Session {
        cache: &cache,
        fingerprint: fleet.fingerprint.clone(),
        caps: fleet.caps.clone(),
        measure: Worker::new(gpu.worker.clone()),
        compile: fleet.compile.clone(),
        settings: fleet.settings.clone(),
        origin_host: fleet.origin_host.clone(),
        tool_version: fleet.tool_version.clone(),
        started: fleet.started,
        claim: None,
        compile_slots: Some(slots),
    };
    let device_id = fleet.fingerprint.id();
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
        let Some(i) = next else { return Ok(()) };
        let job = jobs[i];
        let t = job.template;
        let key = job.named.problem.key();
        let tk = TemplateKey::new(t.name(), t.source_hash());
        let done = |summary: ProblemSummary| {
            results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(summary);
        };
        if cache.winner(&fleet.fingerprint, &tk, &key)?.is_some() {
            done(tune_problem(&mut session, job.named, t, obs.as_mut())?);
            continue;
        }
        let Some(lock) = GpuLock::acquire(
            &fleet.cache_path,
            &fleet.origin_host,
            &gpu.label,
            Duration::MAX,
        )?
        else {
            continue;
        };
        let ck = claim_key(device_id.as_str(), t.name(), t.source_hash(), &key);
        let took_over = match cache.claim(&ck, &me, fleet.claim_ttl)? {
            ClaimOutcome::Held(_) => {
                // another tuner measures it: come back to it later (its winner, most likely)
                drop(lock);
                queue.lock().unwrap_or_else(|p| p.into_inner()).push_back(i);
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            ClaimOutcome::Claimed { took_over } => took_over,
        };
        session.claim = Some(ActiveClaim {
            key: ck.clone(),
            owner: me.clone(),
            refresh_every: fleet.claim_ttl / 4,
            refreshed: Instant::now(),
        });
        let tuned = tune_problem(&mut session, job.named, t, obs.as_mut());
        session.claim = None;
        let released = cache.release_claim(&ck, &me);
        drop(lock);
        let mut summary = tuned?;
        released?;
        if !summary.cached {
            summary.gpu = Some(gpu.label.clone());
            summary.took_over_claim = took_over.map(|c| c.owner.to_string());
            report.problems += 1;
            report.candidates += summary.counts.values().sum::<usize>();
            report.busy_s += summary.wall_s;
        }
        report.worker_restarts = session.measure.starts.saturating_sub(1);
        done(summary);
    }
}
