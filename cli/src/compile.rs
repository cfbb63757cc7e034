//! `tessera compile MODEL_DIR --gpu NAME --batch ... --seq ... --out PLAN`: import a model,
//! run the graph passes, lower every shape bucket, resolve every kernel through the cache
//! (tuning misses on the spot unless `--no-tune` or `--strict`), plan memory and write the plan
//! directory. Progress goes to stderr, the summary to stdout.

use crate::settings::open_cache;
use crate::tune::{
    check_simulated_mix, find_gpu, fingerprint, gpu_kind, origin_host, worker_device, worker_spec,
};
use crate::usage::usage;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tessera_compiler::tuning::{FillConfigs, TuningStatus};
use tessera_compiler::{CompileError, Lookup, Mode, Options};
use tessera_device::{Device, SimDevice};
use tessera_dsl::DType;
use tessera_tuner::measure::TimingPlan;
use tessera_tuner::supervisor::Worker;
use tessera_tuner::sweep::{Observer, ProblemSummary, Session, TuneSettings};

#[derive(Clone, Copy, clap::ValueEnum)]
enum FillChoice {
    Pick,
    Borrow,
}

#[derive(clap::Args)]
pub struct Args {
    /// Directory with config.json and model.safetensors (Hugging Face BertModel or a checkpoint
    /// wrapping one).
    model_dir: PathBuf,
    /// GPU to compile for: h100, h200, a100 (with --sim, a simulated one).
    #[arg(long, visible_alias = "device")]
    gpu: String,
    /// Batch sizes of the shape buckets (comma separated).
    #[arg(long, value_delimiter = ',', required = true)]
    batch: Vec<u64>,
    /// Sequence lengths of the shape buckets (comma separated).
    #[arg(long, value_delimiter = ',', required = true)]
    seq: Vec<u64>,
    /// Packed (padding-free) buckets under each (batch, seq) bucket: token counts in N even
    /// steps up to batch × seq, rounded up to 128; 0 compiles padded buckets only.
    #[arg(long, value_name = "N", default_value_t = tessera_compiler::bucket::DEFAULT_PACKED_STEPS)]
    packed_buckets: u64,
    /// Packed fill buckets between those, every TOKENS tokens (a multiple of 128): their
    /// kernels take the configs tuned for the next packed bucket up, so they add no tuning
    /// (see --fill-configs); 0: none.
    #[arg(long, value_name = "TOKENS", default_value_t = tessera_compiler::bucket::DEFAULT_PACKED_GRANULE)]
    packed_granule: u64,
    /// How a fill bucket's kernels that the cache has no winner for get their configs:
    /// `borrow` takes the anchor's config unmeasured; `pick` (when tuning) measures, at the
    /// fill's own token count, the anchor's config beside the cost model's two best (their
    /// rows go to the cache, no winner): packed BERT batches 1–5 % faster on an H200 (most
    /// for short-heavy ones), for about 3× the compile time of a plan with many fills.
    /// Without tuning, fills borrow.
    #[arg(long, value_enum, default_value = "borrow")]
    fill_configs: FillChoice,
    /// The plan directory to write (replaced if it holds an earlier plan).
    #[arg(short = 'o', long)]
    out: PathBuf,
    /// Weight and activation dtype: f16 or bf16.
    #[arg(long, default_value = "f16")]
    dtype: String,
    /// Kernels missing from the cache get the cost model's first candidate (marked untuned).
    #[arg(long, conflicts_with = "strict")]
    no_tune: bool,
    /// Fail, listing the kernels missing from the cache, instead of tuning them.
    #[arg(long)]
    strict: bool,
    /// Compile for a simulated GPU of that kind (modelled timings; the plan says so).
    #[arg(long)]
    sim: bool,
    /// Let --sim tune into a cache that holds real measurements.
    #[arg(long, requires = "sim")]
    mix_simulated: bool,
    /// Cache file (default: $TESSERA_CACHE, else ~/.cache/tessera/tune.db).
    #[arg(long)]
    cache: Option<PathBuf>,
    /// Tuning budget in seconds for the whole compile (misses left then get the cost model's pick).
    #[arg(long, allow_negative_numbers = true, value_parser = crate::settings::seconds)]
    budget: Option<f64>,
    /// Timed runs per candidate when tuning.
    #[arg(long, default_value_t = 10, value_parser = crate::settings::at_least_one)]
    iters: u32,
    /// Write the graph before and after every pass into this directory.
    #[arg(long)]
    dump_graph: Option<PathBuf>,
    /// No progress output.
    #[arg(long)]
    quiet: bool,
}

/// Progress as plain lines on stderr.
struct Progress {
    quiet: bool,
    started: Instant,
}

impl Observer for Progress {
    fn phase(&mut self, what: &str) {
        if !self.quiet && what != "compile" && what != "measure" {
            eprintln!("[{:6.1}s] {what}", self.started.elapsed().as_secs_f64());
        }
    }
    fn problem_started(&mut self, _name: &str, key: &str, candidates: usize) {
        if !self.quiet {
            eprintln!(
                "[{:6.1}s] tuning {key}: {candidates} candidates",
                self.started.elapsed().as_secs_f64()
            );
        }
    }
    fn problem_done(&mut self, s: &ProblemSummary) {
        if !self.quiet && !s.cached {
            let what = match (&s.winner, s.median_ms) {
                (Some(w), Some(ms)) => format!("{w} {ms:.4} ms"),
                _ => "no winner".into(),
            };
            eprintln!(
                "[{:6.1}s]   -> {what}",
                self.started.elapsed().as_secs_f64()
            );
        }
    }
}

/// Bad input (the model, the buckets, the dtype) exits with 2; the rest with 1.
fn compile_error(e: CompileError) -> anyhow::Error {
    match e {
        CompileError::Import(_) | CompileError::Bucket(_) | CompileError::DType(_) => usage(e),
        e => anyhow::Error::new(e),
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let model = gpu_kind(&args.gpu)?;
    let target = model.target();
    let dtype: DType = args
        .dtype
        .parse()
        .map_err(|_| usage(format!("--dtype {}: use f16 or bf16", args.dtype)))?;
    let (info, caps, measure_device, compile_workers) = if args.sim {
        let sim = SimDevice::for_model(model);
        (
            sim.info(),
            sim.caps().clone(),
            format!("sim:{}", model.key()),
            None,
        )
    } else {
        let info = find_gpu(&args.gpu, model)?;
        let device = worker_device(&info);
        (
            info,
            model.caps(),
            device,
            crate::tune::compile_workers(target)?,
        )
    };
    let fp = fingerprint(&info, target);
    // Without tuning the cache is only read: a read-only shared cache works.
    let cache = if args.no_tune || args.strict {
        crate::settings::open_cache_for_reading(args.cache.clone())?
    } else {
        let cache = open_cache(args.cache.clone())?;
        check_simulated_mix(&cache, args.sim, args.mix_simulated)?;
        cache
    };
    let options = Options {
        model_dir: args.model_dir.clone(),
        dtype,
        batches: args.batch.clone(),
        seqs: args.seq.clone(),
        packed_steps: args.packed_buckets,
        packed_granule: args.packed_granule,
        fill_configs: match args.fill_configs {
            FillChoice::Pick => FillConfigs::Pick,
            FillChoice::Borrow => FillConfigs::Borrow,
        },
        dump_graph: args.dump_graph.clone(),
    };
    let lookup = Lookup {
        cache: &cache,
        fingerprint: &fp,
        caps: &caps,
    };
    let mut progress = Progress {
        quiet: args.quiet,
        started,
    };
    let mut session;
    let mode = if args.no_tune {
        Mode::NoTune
    } else if args.strict {
        Mode::Strict
    } else {
        session = Session {
            cache: &cache,
            fingerprint: fp.clone(),
            caps: caps.clone(),
            measure: Worker::new(worker_spec(&measure_device)?),
            compile: compile_workers,
            settings: TuneSettings {
                jobs: tessera_tuner::pool::default_jobs().max(1),
                plan: TimingPlan {
                    warmup: 3,
                    iters: args.iters,
                    l2_flush: true,
                },
                slow_factor: 3.0,
                timeout: Duration::from_secs(60),
                resume: true,
                budget: args.budget.map(Duration::from_secs_f64),
                seed: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64),
                faults: Vec::new(),
                prune: tessera_tuner::prune::PruneConfig::default(),
            },
            origin_host: origin_host(),
            tool_version: format!("tessera {}", env!("CARGO_PKG_VERSION")),
            started,
            claim: None,
            compile_slots: None,
        };
        Mode::Tune(&mut session)
    };
    let compiled =
        tessera_compiler::compile(&options, &lookup, mode, &mut progress).map_err(compile_error)?;
    progress.phase(&format!("write {}", args.out.display()));
    compiled.write(&args.out)?;
    let plan = &compiled.plan;
    let count = |f: fn(&TuningStatus) -> bool| plan.kernels.iter().filter(|k| f(&k.status)).count();
    let untuned = count(|s| matches!(s, TuningStatus::Untuned { .. }));
    println!(
        "compiled {} ({} layers, hidden {}, {}) for {}{} in {:.1} s: {} bucket(s), {} kernels ({} cached, {} tuned now, {}{} untuned), arena {} bytes (naive {}), weights {} bytes -> {}",
        args.model_dir.display(),
        plan.model.layers,
        plan.model.hidden,
        dtype,
        info.name,
        if info.simulated { " (SIMULATED)" } else { "" },
        started.elapsed().as_secs_f64(),
        plan.buckets.len(),
        plan.kernels.len(),
        count(|s| matches!(s, TuningStatus::Cached { .. })),
        count(|s| matches!(s, TuningStatus::Tuned { .. })),
        match (
            count(|s| matches!(s, TuningStatus::Picked { .. })),
            count(|s| matches!(s, TuningStatus::Borrowed { .. })),
        ) {
            (0, 0) => String::new(),
            (0, b) => format!("{b} borrowed by fill buckets, "),
            (p, 0) => format!("{p} picked for fill buckets, "),
            (p, b) => format!("{p} picked and {b} borrowed for fill buckets, "),
        },
        untuned,
        plan.arena.bytes,
        plan.arena.naive_bytes,
        plan.weights.bytes,
        args.out.display()
    );
    if untuned > 0 {
        eprintln!("warning: {untuned} kernel(s) are untuned (cost model's pick); `tessera inspect` lists them");
    }
    Ok(())
}
