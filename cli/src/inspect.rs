//! `tessera inspect PLAN`: what a compiled plan holds: the model and its source hashes, the
//! device it was compiled for, the passes, the buckets, every kernel with its tuning status and
//! how often it launches, and the arena against the naive sum. `--shapes` prints the plan's
//! distinct kernel problems as a shapes file instead, for `tessera tune --shapes` to prepare a
//! cache for them (padded and packed buckets alike) ahead of time.

use crate::usage::usage;
use std::path::PathBuf;
use tessera_compiler::plan::Callee;
use tessera_compiler::tuning::TuningStatus;
use tessera_compiler::Plan;
use tessera_tuner::shapes::{to_yaml, NamedProblem};

#[derive(clap::Args)]
pub struct Args {
    /// The plan directory `tessera compile --out` wrote.
    plan: PathBuf,
    /// Print the plan JSON (after validation) instead of the summary.
    #[arg(long)]
    json: bool,
    /// Print the plan's distinct kernel problems as a shapes file (for `tessera tune --shapes`)
    /// instead of the summary.
    #[arg(long, conflicts_with = "json")]
    shapes: bool,
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let plan = Plan::load(&args.plan).map_err(usage)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
        return Ok(());
    }
    if args.shapes {
        print!("{}", shapes_file(&plan, &args.plan));
        return Ok(());
    }
    let m = &plan.model;
    println!(
        "plan {} (schema {}, tessera {})",
        args.plan.display(),
        plan.schema_version,
        plan.tessera_version
    );
    println!(
        "model: BERT, {} layers, hidden {}, {} heads of {}, FFN {} ({:?}), vocab {}, {} positions; {}",
        m.layers, m.hidden, m.heads, m.head_dim, m.intermediate, m.activation, m.vocab, m.max_positions, plan.dtype
    );
    println!(
        "source: {} (config sha256 {}, weights sha256 {})",
        plan.source.dir,
        &plan.source.config_sha256[..16.min(plan.source.config_sha256.len())],
        &plan.source.weights_sha256[..16.min(plan.source.weights_sha256.len())]
    );
    let d = &plan.device;
    println!(
        "device: {} ({}, {} SMs, driver {}, {}){}",
        d.name,
        d.arch,
        d.sm_count,
        d.driver,
        d.toolchain,
        if d.simulated { " SIMULATED" } else { "" }
    );
    let passes: Vec<String> = plan
        .passes
        .iter()
        .map(|p| format!("{} ({})", p.pass, p.rewrites))
        .collect();
    println!("passes: {}", passes.join(", "));
    let buckets: Vec<String> = plan
        .buckets
        .iter()
        .filter(|b| !b.bucket.is_packed())
        .map(|b| format!("{}x{}", b.bucket.batch, b.bucket.seq))
        .collect();
    println!("buckets (batch x seq): {}", buckets.join(", "));
    let packed: Vec<String> = plan
        .buckets
        .iter()
        .filter(|b| b.bucket.is_packed())
        .map(|b| {
            format!(
                "{}/{}/{}",
                b.bucket.tokens(),
                b.bucket.batch,
                b.bucket.longest()
            )
        })
        .collect();
    if packed.is_empty() {
        println!(
            "packed buckets: none (compiled with --packed-buckets 0): every batch runs padded"
        );
    } else {
        println!(
            "packed buckets (tokens/sequences/longest): {}",
            packed.join(", ")
        );
        println!(
            "padding: `--padding auto` (the default of run and bench) runs a batch in the smallest packed bucket that holds it when that measured at least {:.0} % faster than the smallest padded bucket that holds it, else in the padded one, by the graph replay times the executor measures for every bucket when it loads the plan on the device (packed buckets timed at their representative lengths: one longest sequence, the other tokens spread evenly); `--padding padded|packed` forces one",
            100.0 * tessera_compiler::bucket::AUTO_PACKED_MARGIN
        );
    }
    println!(
        "memory: arena {} ({} bytes) vs naive {} ({} bytes), {:.1}% of naive, alignment {} B; weights {} in {}",
        mib(plan.arena.bytes),
        plan.arena.bytes,
        mib(plan.arena.naive_bytes),
        plan.arena.naive_bytes,
        100.0 * plan.arena.bytes as f64 / plan.arena.naive_bytes.max(1) as f64,
        plan.arena.alignment,
        mib(plan.weights.bytes),
        plan.weights.file
    );
    let mut launches = vec![0usize; plan.kernels.len()];
    let mut glue = std::collections::BTreeMap::new();
    for b in &plan.buckets {
        for l in &b.launches {
            match l.callee {
                Callee::Kernel { kernel } => {
                    if let Some(n) = launches.get_mut(kernel) {
                        *n += 1;
                    }
                }
                Callee::Glue { glue: g } => {
                    *glue
                        .entry(format!("{g:?}").to_lowercase())
                        .or_insert(0usize) += 1
                }
            }
        }
    }
    println!(
        "\n{:>3}  {:<10} {:>9} {:>8}  {:<64} problem",
        "#", "status", "ms", "launches", "kernel"
    );
    for (i, k) in plan.kernels.iter().enumerate() {
        let (status, ms) = match &k.status {
            TuningStatus::Cached { median_ms } => ("cached", format!("{median_ms:.4}")),
            TuningStatus::Tuned { median_ms } => ("tuned", format!("{median_ms:.4}")),
            TuningStatus::Untuned { .. } => ("UNTUNED", "-".to_string()),
            TuningStatus::Borrowed { .. } => ("borrowed", "-".to_string()),
            TuningStatus::Picked { median_ms, .. } => ("picked", format!("{median_ms:.4}")),
        };
        println!(
            "{i:>3}  {status:<10} {ms:>9} {:>8}  {:<64} {}",
            launches[i],
            k.kernel_name,
            k.problem.key()
        );
    }
    for (g, n) in &glue {
        println!(
            "  -  {:<10} {:>9} {n:>8}  {:<64} (no kernel template yet)",
            "glue", "-", g
        );
    }
    let untuned: Vec<&str> = plan
        .kernels
        .iter()
        .filter_map(|k| match &k.status {
            TuningStatus::Untuned { reason } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    if let Some(reason) = untuned.first() {
        println!("\n{} kernel(s) untuned: {reason}", untuned.len());
    }
    // how a packed fill bucket's kernels got their configs (compile --fill-configs)
    let (borrowed, picked) = plan
        .kernels
        .iter()
        .fold((0, 0), |(b, p), k| match k.status {
            TuningStatus::Borrowed { .. } => (b + 1, p),
            TuningStatus::Picked { .. } => (b, p + 1),
            _ => (b, p),
        });
    for (n, what) in [
        (
            borrowed,
            "borrowed: a packed fill bucket's problem runs the config tuned for the same problem at the next packed bucket up (compile --packed-granule), measured there, not at its own token count",
        ),
        (
            picked,
            "picked: a packed fill bucket's problem measured at its own token count among its anchor's config and the cost model's best there (compile --fill-configs pick), not a sweep of the space",
        ),
    ] {
        if n > 0 {
            println!("\n{n} kernel(s) {what}");
        }
    }
    Ok(())
}

/// The plan's distinct kernel problems as a shapes file, in kernel order, each named after its
/// first kernel and that kernel's first launch: `k3 layer0.qkv @ 2x32` (padded bucket
/// batch x seq) or `k3 layer0.qkv @ packed 64/2/32` (tokens/sequences/longest).
fn shapes_file(plan: &Plan, dir: &std::path::Path) -> String {
    let mut first_use: Vec<Option<String>> = vec![None; plan.kernels.len()];
    for b in &plan.buckets {
        let bucket = if b.bucket.is_packed() {
            format!(
                "packed {}/{}/{}",
                b.bucket.tokens(),
                b.bucket.batch,
                b.bucket.longest()
            )
        } else {
            format!("{}x{}", b.bucket.batch, b.bucket.seq)
        };
        for l in &b.launches {
            if let Callee::Kernel { kernel } = l.callee {
                if let Some(slot @ None) = first_use.get_mut(kernel) {
                    *slot = Some(format!("{} @ {bucket}", l.node));
                }
            }
        }
    }
    let mut problems: Vec<NamedProblem> = Vec::new();
    for (i, k) in plan.kernels.iter().enumerate() {
        if problems.iter().any(|p| p.problem == k.problem) {
            continue;
        }
        let name = match &first_use[i] {
            Some(used) => format!("k{i} {used}"),
            None => format!("k{i}"),
        };
        problems.push(NamedProblem {
            name,
            problem: k.problem.clone(),
        });
    }
    format!(
        "# The {} distinct kernel problems of plan {} ({} kernels), for\n\
         # `tessera tune --gpu GPU --shapes THIS_FILE` to tune ahead of time.\n{}",
        problems.len(),
        dir.display().to_string().replace(['\n', '\r'], " "),
        plan.kernels.len(),
        to_yaml(&problems)
    )
}
