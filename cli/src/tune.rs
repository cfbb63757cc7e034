//! `tessera tune --gpu NAME --shapes FILE`: tune every template for every problem of a shapes
//! file on the named GPU (or `--sim` it, or `--compile-only` for it), store every result and
//! the winners in the cache, show progress and a summary.
//!
//! Every GPU of the host of the requested model is used (or those `--gpus` names): one
//! measuring worker per GPU, problems handed out from one queue, compilation shared (see
//! `tessera_tuner::fleet`). Problems are claimed in the cache and GPUs locked beside it, so
//! several `tessera tune` processes can share one cache and one host. With `--sim` the host has
//! [`SIM_GPUS`] simulated GPUs (`TESSERA_SIM_GPUS` overrides) and GPU 0 is used unless `--gpus`
//! names others.

use crate::settings::open_cache;
use crate::usage::usage;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tessera_cache::{Cache, DeviceFingerprint};
use tessera_device::{cuda, hip, Device, DeviceInfo, SimDevice};
use tessera_dsl::{GpuModel, Target, Template};
use tessera_tuner::audit::{self, ProblemAudit};
use tessera_tuner::fleet::{self, Fleet, FleetReport, Gpu, GpuReport, Job};
use tessera_tuner::footprint::MemoryLimits;
use tessera_tuner::measure::TimingPlan;
use tessera_tuner::prune::PruneConfig;
use tessera_tuner::shapes::{self, NamedProblem};
use tessera_tuner::supervisor::{call_all, WorkerSpec};
use tessera_tuner::sweep::{Observer, ProblemSummary, TuneSettings};
use tessera_tuner::worker::{PlantedFault, Request};

#[derive(clap::Args)]
pub struct Args {
    /// GPU to tune for: h100, h200, a100, mi250 or mi300 (checked against the GPUs present).
    #[arg(long, visible_alias = "device")]
    gpu: String,
    /// Measure on these GPUs (ordinals, comma separated) [default: every GPU of the --gpu
    /// model; with --sim, simulated GPU 0]. Each GPU measures whole problems.
    #[arg(long, value_delimiter = ',', value_name = "N,N")]
    gpus: Vec<u32>,
    /// Seconds after which another tuner's claim on a problem that was not refreshed counts as
    /// stale and is taken over (a dead tuner of this host is taken over at once).
    #[arg(long, default_value_t = 600.0, value_parser = crate::settings::seconds)]
    claim_timeout: f64,
    /// YAML file listing the problems (see examples/shapes/bert.yaml).
    #[arg(long)]
    shapes: PathBuf,
    /// Only these templates (comma separated); default: every template for each problem's op.
    #[arg(long, visible_alias = "template", value_delimiter = ',')]
    templates: Vec<String>,
    /// Stop starting new candidates after this many seconds (unfinished problems keep their
    /// measured rows; finish them later with --resume).
    #[arg(long, allow_negative_numbers = true, value_parser = crate::settings::seconds)]
    budget: Option<f64>,
    /// Cache file (default: $TESSERA_CACHE, else ~/.cache/tessera/tune.db).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Parallel compile processes (default: the CPU count).
    #[arg(long, value_parser = crate::settings::at_least_one)]
    jobs: Option<u32>,
    /// Compile every candidate for the GPU's target and report; needs no GPU, writes no cache.
    #[arg(long)]
    compile_only: bool,
    /// Keep the finished candidates of problems a previous run did not finish.
    #[arg(long)]
    resume: bool,
    /// Compile and measure only the N candidates per problem the cost model ranks best (at
    /// most 3 per tile while other tiles are left, plus the best of each dispatch policy);
    /// the rest are stored as `pruned` rows, never compiled [default: 8].
    #[arg(long, value_name = "N", value_parser = crate::settings::at_least_one)]
    keep: Option<u32>,
    /// Compile and measure every valid candidate (a full sweep).
    #[arg(long, conflicts_with = "keep")]
    no_prune: bool,
    /// Tune with no pruning (use a fresh cache), then report per problem whether pruning to
    /// --keep N would have kept the measured winner, and how much slower the best kept
    /// candidate is.
    #[arg(long, conflicts_with = "no_prune")]
    prune_audit: bool,
    /// Run on a simulated GPU of that kind (CPU reference outputs, modelled timings; every row
    /// is labelled simulated).
    #[arg(long)]
    sim: bool,
    /// Let --sim write into a cache that holds real measurements.
    #[arg(long, requires = "sim")]
    mix_simulated: bool,
    /// Timed runs per candidate (median of these).
    #[arg(long, default_value_t = 20, value_parser = crate::settings::at_least_one)]
    iters: u32,
    /// Seconds a candidate may take before its worker is killed.
    #[arg(long, default_value_t = 60.0, allow_negative_numbers = true, value_parser = crate::settings::seconds)]
    timeout: f64,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Test hook: plant a fault in kernels whose name contains SUBSTR (wrong_value,
    /// launch_failure, crash, hang). Simulated devices only.
    #[arg(long, hide = true, value_name = "SUBSTR=KIND")]
    plant_fault: Vec<String>,
}

/// The GPU model `--gpu` names (`h100`, `h200`, `a100`, `mi250`, `mi300`).
pub(crate) fn gpu_kind(name: &str) -> anyhow::Result<GpuModel> {
    GpuModel::parse(name).ok_or_else(|| {
        let names: Vec<&str> = GpuModel::ALL.iter().map(|m| m.key()).collect();
        usage(format!(
            "unknown GPU `{name}`; use one of {}",
            names.join(", ")
        ))
    })
}

/// `--sim` rows stay out of a cache that holds real measurements unless `mix` says otherwise
/// (`--mix-simulated`): a simulated winner must never be taken for a measured one.
pub(crate) fn check_simulated_mix(cache: &Cache, sim: bool, mix: bool) -> anyhow::Result<()> {
    if !sim || mix {
        return Ok(());
    }
    let devices = cache.devices().map_err(crate::cache::cache_error)?;
    let real: Vec<String> = devices
        .iter()
        .filter(|d| !d.simulated)
        .map(|d| d.name.clone())
        .collect();
    if real.is_empty() {
        return Ok(());
    }
    Err(usage(format!(
        "{} holds measurements of real GPUs ({}); simulated rows are kept out of it. Use another \
         cache (--cache sim.db) or pass --mix-simulated",
        cache.path().display(),
        real.join(", ")
    )))
}

pub(crate) fn fingerprint(info: &DeviceInfo, target: Target) -> DeviceFingerprint {
    tessera_tuner::sweep::device_fingerprint(info, target)
}

/// GPUs the simulated host has (`--sim`), unless `TESSERA_SIM_GPUS` says otherwise.
pub(crate) const SIM_GPUS: u32 = 8;

/// The GPUs of the `--gpu` model to measure on, with the worker device and label of each:
/// those `--gpus` names (each must be present and of that model) or every one present.
fn find_gpus(args: &Args, model: GpuModel) -> anyhow::Result<(DeviceInfo, Vec<Gpu>)> {
    if args.sim {
        let info = SimDevice::for_model(model).info();
        let count = std::env::var("TESSERA_SIM_GPUS")
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(SIM_GPUS)
            .max(1);
        let chosen = if args.gpus.is_empty() {
            vec![0]
        } else {
            args.gpus.clone()
        };
        if let Some(bad) = chosen.iter().find(|&&g| g >= count) {
            return Err(usage(format!(
                "--gpus {bad}: no such GPU; GPUs present: 0..{} ({count} x {})",
                count - 1,
                info.name
            )));
        }
        let gpus = dedup(chosen)
            .into_iter()
            .map(|n| {
                let label = format!("sim:{}:{n}", model.key());
                Ok(Gpu {
                    worker: worker_spec(&label)?,
                    label,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        return Ok((info, gpus));
    }
    let first = find_gpu(&args.gpu, model)?;
    let present = match first.target.map(Target::vendor) {
        Some(tessera_dsl::Vendor::Amd) => hip::list(),
        _ => cuda::list(),
    }
    .unwrap_or_default();
    let fits = |d: &DeviceInfo| {
        d.target == Some(model.target()) && d.name.to_uppercase().contains(model.name_fragment())
    };
    let chosen: Vec<DeviceInfo> = if args.gpus.is_empty() {
        present.iter().filter(|d| fits(d)).cloned().collect()
    } else {
        let list = || {
            present
                .iter()
                .map(|d| format!("{}: {} ({})", d.ordinal, d.name, d.arch))
                .collect::<Vec<_>>()
                .join("; ")
        };
        dedup(args.gpus.clone())
            .into_iter()
            .map(|n| match present.iter().find(|d| d.ordinal == n) {
                None => Err(usage(format!(
                    "--gpus {n}: no such GPU; GPUs present: {}",
                    list()
                ))),
                Some(d) if !fits(d) => Err(usage(format!(
                    "--gpus {n}: GPU {n} is a {}, not a {}; GPUs present: {}",
                    d.name,
                    model.name_fragment(),
                    list()
                ))),
                Some(d) => Ok(d.clone()),
            })
            .collect::<anyhow::Result<_>>()?
    };
    let chosen = if chosen.is_empty() {
        vec![first]
    } else {
        chosen
    };
    let gpus = chosen
        .iter()
        .map(|d| {
            let label = worker_device(d);
            Ok(Gpu {
                worker: worker_spec(&label)?,
                label,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok((chosen[0].clone(), gpus))
}

fn dedup(mut v: Vec<u32>) -> Vec<u32> {
    let mut seen = std::collections::BTreeSet::new();
    v.retain(|g| seen.insert(*g));
    v
}

/// The GPU present that matches `--gpu`, or a usage error listing what is present. AMD models
/// are looked for through the HIP runtime, NVIDIA ones through the CUDA driver.
pub(crate) fn find_gpu(name: &str, model: GpuModel) -> anyhow::Result<DeviceInfo> {
    let (target, fragment) = (model.target(), model.name_fragment());
    let amd = target.vendor() == tessera_dsl::Vendor::Amd;
    // what to do instead, for a model that is not here
    let instead = if amd {
        format!("use --compile-only to build and check every candidate for {target}, or --sim")
    } else {
        "use --compile-only or --sim".to_string()
    };
    let present = if amd { hip::list() } else { cuda::list() }.map_err(|e| {
        usage(format!(
            "--gpu {name}: no GPU can be used here ({e}); {instead}"
        ))
    })?;
    present
        .iter()
        .find(|d| d.target == Some(target) && d.name.to_uppercase().contains(fragment))
        .cloned()
        .ok_or_else(|| {
            let list: Vec<String> = present
                .iter()
                .map(|d| format!("{}: {} ({})", d.ordinal, d.name, d.arch))
                .collect();
            usage(format!(
                "--gpu {name}: no {fragment} here; GPUs present: {}{}",
                if list.is_empty() {
                    "none".to_string()
                } else {
                    list.join("; ")
                },
                if amd {
                    format!("; {instead}")
                } else {
                    String::new()
                }
            ))
        })
}

/// The `tessera worker --device` that measures on a GPU [`find_gpu`] found: `hip:N` for an AMD
/// GPU, `cuda:N` for an NVIDIA one.
pub(crate) fn worker_device(info: &DeviceInfo) -> String {
    match info.target.map(Target::vendor) {
        Some(tessera_dsl::Vendor::Amd) => format!("hip:{}", info.ordinal),
        _ => format!("cuda:{}", info.ordinal),
    }
}

/// Compile workers for a real GPU: NVRTC ones for NVIDIA; none for AMD, whose measuring
/// worker compiles with the GPU's own hiprtc (the compile-only hipcc/clang route may not be
/// installed beside ROCm).
pub(crate) fn compile_workers(target: Target) -> anyhow::Result<Option<WorkerSpec>> {
    match target.vendor() {
        tessera_dsl::Vendor::Amd => Ok(None),
        tessera_dsl::Vendor::Nvidia => Ok(Some(worker_spec("none")?)),
    }
}

fn templates_for(
    args: &Args,
    problems: &[NamedProblem],
) -> anyhow::Result<Vec<&'static dyn Template>> {
    let all = tessera_library::templates();
    if args.templates.is_empty() {
        let ops: Vec<_> = problems.iter().map(|p| p.problem.op()).collect();
        return Ok(all.into_iter().filter(|t| ops.contains(&t.op())).collect());
    }
    let chosen: Vec<&'static dyn Template> = args
        .templates
        .iter()
        .map(|n| tessera_dsl::find(n).map_err(usage))
        .collect::<anyhow::Result<_>>()?;
    let ops: std::collections::BTreeSet<&str> =
        problems.iter().map(|p| p.problem.op().name()).collect();
    let (matching, idle): (Vec<_>, Vec<_>) = chosen
        .into_iter()
        .partition(|t| problems.iter().any(|p| p.problem.op() == t.op()));
    let describe = |ts: &[&'static dyn Template]| {
        ts.iter()
            .map(|t| format!("{} ({})", t.name(), t.op().name()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let ops = ops.into_iter().collect::<Vec<_>>().join(", ");
    if matching.is_empty() {
        return Err(usage(format!(
            "--templates {}: no problem in {} is of that op (its problems are: {ops}); \
             `tessera templates` lists each template's op",
            describe(&idle),
            args.shapes.display()
        )));
    }
    if !idle.is_empty() {
        eprintln!(
            "warning: --templates {}: no problem in {} is of that op (its problems are: {ops})",
            describe(&idle),
            args.shapes.display()
        );
    }
    Ok(matching)
}

fn faults(args: &Args) -> anyhow::Result<Vec<(String, PlantedFault)>> {
    args.plant_fault
        .iter()
        .map(|f| {
            let (sub, kind) = f.split_once('=').ok_or_else(|| usage(format!("--plant-fault `{f}`: expected SUBSTR=KIND")))?;
            let kind: PlantedFault = serde_json::from_value(serde_json::Value::String(kind.into()))
                .map_err(|_| usage(format!("--plant-fault kind `{kind}`: use wrong_value, launch_failure, crash or hang")))?;
            Ok((sub.to_string(), kind))
        })
        .collect()
}

/// This machine's name, as result rows record it.
pub(crate) fn origin_host() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

pub(crate) fn worker_spec(device: &str) -> anyhow::Result<WorkerSpec> {
    Ok(WorkerSpec {
        program: std::env::current_exe()?,
        args: vec!["worker".into(), "--device".into(), device.into()],
    })
}

struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    current: Option<ProgressBar>,
    /// The GPU this observer reports for.
    gpu: String,
}

impl Observer for Bars {
    fn problem_started(&mut self, name: &str, _key: &str, candidates: usize) {
        let bar = self.multi.add(ProgressBar::new(candidates as u64));
        bar.set_style(
            ProgressStyle::with_template(
                "  {prefix:.bold} [{bar:30}] {pos}/{len} {msg} (eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("[{}] {name}", self.gpu));
        self.current = Some(bar);
    }
    fn phase(&mut self, what: &str) {
        if let Some(b) = &self.current {
            b.set_message(what.to_string());
        }
    }
    fn candidate_done(&mut self, kernel: &str, status: &str, _ms: Option<f64>) {
        if let Some(b) = &self.current {
            b.set_message(format!("{status}: {kernel}"));
            b.inc(1);
        }
    }
    fn problem_done(&mut self, s: &ProblemSummary) {
        if let Some(b) = self.current.take() {
            b.finish_and_clear();
        }
        let what = match (&s.winner, throughput(s)) {
            (Some(w), Some(t)) => format!("{w} {t}{}", if s.cached { " (cached)" } else { "" }),
            _ => "no winner".into(),
        };
        let on = if s.cached {
            String::new()
        } else {
            format!(" [{}]", self.gpu)
        };
        self.overall.println(format!("{}: {what}{on}", s.name));
        self.overall.inc(1);
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let model = gpu_kind(&args.gpu)?;
    let target = model.target();
    let problems = shapes::parse_file(&args.shapes).map_err(usage)?;
    let templates = templates_for(&args, &problems)?;
    let faults = faults(&args)?;
    if !faults.is_empty() && !args.sim {
        return Err(usage(
            "--plant-fault works on simulated devices only (add --sim)",
        ));
    }
    let jobs = args
        .jobs
        .map_or_else(tessera_tuner::pool::default_jobs, |j| j as usize)
        .max(1);
    if args.compile_only {
        return compile_only(&args, target, &problems, &templates, jobs, started);
    }
    let (info, gpus) = find_gpus(&args, model)?;
    let compile = if args.sim {
        None
    } else {
        compile_workers(target)?
    };
    let limits = MemoryLimits::of_device(&info.name, info.memory_bytes);
    for named in &problems {
        limits.check(&named.name, &named.problem).map_err(usage)?;
    }
    let cache = open_cache(args.cache.clone())?;
    check_simulated_mix(&cache, args.sim, args.mix_simulated)?;
    let settings = TuneSettings {
        jobs,
        plan: TimingPlan {
            warmup: 3,
            iters: args.iters,
            l2_flush: true,
        },
        slow_factor: 3.0,
        timeout: Duration::from_secs_f64(args.timeout),
        resume: args.resume,
        budget: args.budget.map(Duration::from_secs_f64),
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
        faults,
        prune: if args.no_prune || args.prune_audit {
            PruneConfig::off()
        } else {
            keep_config(&args)
        },
    };
    let fleet = Fleet {
        cache_path: cache.path().to_path_buf(),
        fingerprint: fingerprint(&info, target),
        caps: model.caps(),
        compile,
        settings,
        origin_host: origin_host(),
        tool_version: format!("tessera {}", env!("CARGO_PKG_VERSION")),
        started,
        claim_ttl: Duration::from_secs_f64(args.claim_timeout),
    };
    let total = (problems.len() * templates.len()) as u64;
    let multi = MultiProgress::with_draw_target(if args.quiet || args.json {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    });
    let overall = multi.add(ProgressBar::new(total));
    overall.set_style(
        ProgressStyle::with_template(
            "{prefix:.bold} [{bar:40}] {pos}/{len} problems, {elapsed} elapsed, eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let labels: Vec<&str> = gpus.iter().map(|g| g.label.as_str()).collect();
    overall.set_prefix(format!(
        "tune {} ({}) on {}",
        args.gpu,
        info.name,
        labels.join(", ")
    ));
    let jobs: Vec<Job> = problems
        .iter()
        .flat_map(|named| {
            templates
                .iter()
                .filter(|t| t.op() == named.problem.op())
                .map(move |&template| Job { named, template })
        })
        .collect();
    let factory = |gpu: &str| -> Box<dyn Observer + Send> {
        Box::new(Bars {
            multi: multi.clone(),
            overall: overall.clone(),
            current: None,
            gpu: gpu.to_string(),
        })
    };
    let FleetReport {
        summaries,
        gpus: per_gpu,
    } = fleet::tune_on_gpus(&fleet, &gpus, &jobs, &factory)?;
    overall.finish_and_clear();
    let audits = if args.prune_audit {
        let mut out = Vec::new();
        for named in &problems {
            for &t in templates.iter().filter(|t| t.op() == named.problem.op()) {
                let tk = tessera_cache::TemplateKey::new(t.name(), t.source_hash());
                let rows = cache
                    .results_for(&named.problem.key(), &fleet.fingerprint, Some(&tk))
                    .map_err(crate::cache::cache_error)?;
                let a = audit::audit(t, &named.problem, &fleet.caps, &rows, keep_config(&args))?;
                out.push((named.name.clone(), a));
            }
        }
        Some(out)
    } else {
        None
    };
    report(
        &args,
        &info,
        &summaries,
        &per_gpu,
        audits.as_deref(),
        started.elapsed().as_secs_f64(),
        cache.path().display().to_string(),
    )
}

/// The pruning `--keep` asks for (the default when absent).
fn keep_config(args: &Args) -> PruneConfig {
    args.keep
        .map_or_else(PruneConfig::default, |k| PruneConfig::top(k as usize))
}

/// `--prune-audit`: one line per problem and a summary.
fn print_audit(audits: &[(String, ProblemAudit)], keep: PruneConfig) {
    let k = keep.keep.unwrap_or(0);
    println!();
    println!(
        "prune audit (keep {k} per problem, at most {} per tile, plus each dispatch policy's best):",
        keep.per_tile.unwrap_or(0)
    );
    println!(
        "{:<24} {:>5} {:>5} {:>9} {:>8} {:>7}  winner",
        "problem", "valid", "kept", "win rank", "kept?", "ratio"
    );
    for (name, a) in audits {
        println!(
            "{:<24} {:>5} {:>5} {:>9} {:>8} {:>7}  {}",
            name,
            a.candidates,
            a.kept,
            a.winner_rank.map_or("-".into(), |r| r.to_string()),
            match (a.complete, a.winner_kept) {
                (false, _) => "partial",
                (true, Some(true)) => "yes",
                (true, Some(false)) => "NO",
                (true, None) => "-",
            },
            a.ratio.map_or("-".into(), |r| format!("{r:.3}")),
            a.winner.as_deref().unwrap_or("-"),
        );
    }
    let just: Vec<ProblemAudit> = audits.iter().map(|(_, a)| a.clone()).collect();
    let s = audit::summarize(&just);
    println!(
        "pruning would keep the winner of {} of {} fully swept problems; best kept vs winner: worst {}, geomean {}{}",
        s.winner_kept,
        s.audited,
        s.worst_ratio.map_or("-".into(), |r| format!("{r:.3}x")),
        s.geomean_ratio.map_or("-".into(), |r| format!("{r:.3}x")),
        if s.incomplete > 0 {
            format!(
                "; {} problems not audited (no winner, or their stored sweep was pruned: tune them into a fresh cache with --prune-audit)",
                s.incomplete
            )
        } else {
            String::new()
        }
    );
}

fn report(
    args: &Args,
    info: &DeviceInfo,
    summaries: &[ProblemSummary],
    per_gpu: &[GpuReport],
    audits: Option<&[(String, ProblemAudit)]>,
    wall: f64,
    cache: String,
) -> anyhow::Result<()> {
    let sum = |f: fn(&ProblemSummary) -> f64| summaries.iter().map(f).sum::<f64>();
    let measured = summaries.iter().filter(|s| !s.cached).count();
    let candidates: usize = summaries.iter().flat_map(|s| s.counts.values()).sum();
    if args.json {
        let doc = serde_json::json!({
            "device": info, "cache": cache, "wall_s": wall, "problems": summaries.len(), "measured_problems": measured,
            "candidates": candidates, "compile_s": sum(|s| s.compile_s), "verify_s": sum(|s| s.verify_s), "time_s": sum(|s| s.time_s),
            "results": summaries,
            "gpus": per_gpu,
            "prune": match (args.no_prune || args.prune_audit, keep_config(args)) {
                (true, _) => serde_json::json!({"keep": null}),
                (false, k) => serde_json::json!({"keep": k.keep, "per_tile": k.per_tile}),
            },
        });
        let mut doc = doc;
        if let Some(audits) = audits {
            let just: Vec<ProblemAudit> = audits.iter().map(|(_, a)| a.clone()).collect();
            doc["prune_audit"] = serde_json::json!({
                "keep": keep_config(args).keep,
                "summary": audit::summarize(&just),
                "problems": audits.iter().map(|(name, a)| {
                    let mut v = serde_json::to_value(a).unwrap_or_default();
                    v["name"] = serde_json::Value::String(name.clone());
                    v
                }).collect::<Vec<_>>(),
            });
        }
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    if !args.quiet {
        println!(
            "{:<24} {:<58} {:>9} {:>14}  candidates",
            "problem", "winner", "ms", "throughput"
        );
        for s in summaries {
            let counts: Vec<String> = s.counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
            println!(
                "{:<24} {:<58} {:>9} {:>14}  {}",
                s.name,
                s.winner.as_deref().unwrap_or("-"),
                s.median_ms.map_or("-".into(), |m| format!("{m:.4}")),
                throughput(s).unwrap_or_else(|| "-".into()),
                if s.cached {
                    "cached".to_string()
                } else {
                    counts.join(", ")
                }
            );
        }
    }
    let simulated = if info.simulated {
        " (SIMULATED device: modelled timings)"
    } else {
        ""
    };
    println!(
        "tuned {} problems ({} measured, {} cached, {} candidates) on {}{} in {:.1} s: compile {:.1} s, verify {:.1} s, time {:.1} s; cache {}",
        summaries.len(),
        measured,
        summaries.len() - measured,
        candidates,
        info.name,
        simulated,
        wall,
        sum(|s| s.compile_s),
        sum(|s| s.verify_s),
        sum(|s| s.time_s),
        cache
    );
    if per_gpu.len() > 1 || summaries.iter().any(|s| s.took_over_claim.is_some()) {
        let each: Vec<String> = per_gpu
            .iter()
            .map(|g| {
                format!(
                    "{}: {} problems, {} candidates, busy {:.1} s of {:.1} s",
                    g.gpu, g.problems, g.candidates, g.busy_s, g.wall_s
                )
            })
            .collect();
        println!("per GPU: {}", each.join("; "));
    }
    for s in summaries {
        if let Some(who) = &s.took_over_claim {
            println!(
                "{}: took over the stale claim of {who} (a tuner that died or stopped refreshing it)",
                s.name
            );
        }
    }
    let resumable: Vec<&ProblemSummary> = summaries.iter().filter(|s| s.resumable > 0).collect();
    if !resumable.is_empty() {
        let names: Vec<&str> = resumable.iter().map(|s| s.name.as_str()).collect();
        println!(
            "hint: an earlier run left {} unfinished ({} candidates already stored); they were measured again. Pass --resume to keep finished candidates",
            names.join(", "),
            resumable.iter().map(|s| s.resumable).sum::<usize>()
        );
    }
    if summaries.iter().any(|s| s.budget_exhausted) {
        println!(
            "the --budget ran out: unfinished problems have no winner yet; run again with --resume"
        );
    }
    if let Some(audits) = audits {
        print_audit(audits, keep_config(args));
    }
    Ok(())
}

/// `--compile-only`: every valid candidate of every problem, compiled for the target in
/// parallel worker processes; nothing is measured or cached.
fn compile_only(
    args: &Args,
    target: Target,
    problems: &[NamedProblem],
    templates: &[&'static dyn Template],
    jobs: usize,
    started: Instant,
) -> anyhow::Result<()> {
    let caps = target.nominal_caps();
    let mut reqs = Vec::new();
    let mut rejected = 0usize;
    let mut seen = std::collections::BTreeSet::new();
    for named in problems {
        for &t in templates.iter().filter(|t| t.op() == named.problem.op()) {
            let space = t.space();
            for values in space.enumerate() {
                // a target knob's value the target lacks is not rejected, it is not there
                if space.foreign_knob(&values, target) {
                    continue;
                }
                let Ok(config) = t.config(&values, &named.problem) else {
                    continue;
                };
                if t.validate(&config, &named.problem, &caps).is_err() {
                    rejected += 1;
                    continue;
                }
                // problems sharing a variant share kernels: compile each kernel once
                if seen.insert(config.kernel_name()) {
                    reqs.push(Request::Compile {
                        template: t.name().into(),
                        values,
                        problem: named.problem.clone(),
                        target,
                    });
                }
            }
        }
    }
    let bar = if args.quiet || args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(reqs.len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("compile for {prefix} [{bar:40}] {pos}/{len} (eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(target.name());
    let timeout = Duration::from_secs_f64(args.timeout);
    let replies = call_all(&worker_spec("none")?, jobs, &reqs, timeout, || bar.inc(1));
    bar.finish_and_clear();
    let (mut ok, mut spilled, mut failed) = (0usize, 0usize, Vec::new());
    let mut seconds: Vec<f64> = Vec::new();
    for r in &replies {
        match r {
            Ok(reply) if reply.status == "ok" => {
                ok += 1;
                seconds.push(reply.compile_s);
                if reply.spill_bytes.unwrap_or(0) > 0 {
                    spilled += 1;
                }
            }
            Ok(reply) => failed.push(format!("{}: {}", reply.kernel, reply.reason)),
            Err(e) => failed.push(e.to_string()),
        }
    }
    seconds.sort_by(f64::total_cmp);
    let median = seconds.get(seconds.len() / 2).copied().unwrap_or(0.0);
    let doc = serde_json::json!({"target": target.name(), "kernels": reqs.len(), "compiled": ok, "spilled": spilled, "failed": failed.len(), "rejected_configs": rejected, "median_compile_s": median, "wall_s": started.elapsed().as_secs_f64()});
    if args.json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        for f in failed.iter().take(20) {
            println!("failed: {f}");
        }
        println!(
            "compile-only for {} ({}): {} kernels, {ok} compiled, {spilled} with spills, {} failed, {rejected} configs rejected before compiling; median {median:.2} s per kernel, {:.1} s wall",
            args.gpu, target, reqs.len(), failed.len(), started.elapsed().as_secs_f64()
        );
    }
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "{} of {} kernels failed to compile",
            failed.len(),
            reqs.len()
        )
    }
}

/// `512.3 TFLOP/s`, or `2849 GB/s` for a memory-bound op.
fn throughput(s: &ProblemSummary) -> Option<String> {
    match (s.tflops, s.gbs) {
        (Some(t), _) => Some(format!("{t:.1} TFLOP/s")),
        (None, Some(g)) => Some(format!("{g:.0} GB/s")),
        _ => None,
    }
}
