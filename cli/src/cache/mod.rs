//! `tessera cache`: inspect and share tuning caches.
//!
//! * `ls`, `why` ([`show`]): what a cache holds, and why each winner won.
//! * `export`, `import`, `merge`, `diff` ([`share`]): moving results between people and
//!   machines. Every file read by import, merge and diff is untrusted: the cache crate
//!   validates each row field by field (and refuses an `ok` row with no recorded error, or a
//!   winner row with no verified result behind it, as unverified), and [`CandidateChecker`]
//!   then re-derives it from this build's templates (template version, problem key from its
//!   description, config, kernel name, config JSON, throughput under the device's roof, error
//!   within tolerance); rows that fail are refused and reported with a typed reason. An import
//!   never replaces rows measured on this machine unless `--replace-local` is given, and never
//!   removes a file.
//! * `gc`: drop rows of template versions that are no longer current.
//!
//! Every subcommand takes `--cache PATH` (default: `TESSERA_CACHE`, else
//! `~/.cache/tessera/tune.db`). Bad input — a missing, damaged, foreign or too-new file, an
//! output file that already exists, a filter that matches nothing — is a usage error (exit
//! code 2) whose message says what to do; a damaged file is always left untouched.

mod share;
mod show;
mod table;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use clap::Subcommand;
use tessera_cache::{
    Cache, CacheError, Candidate, OpenOptions, Refusal, RefusalKind, Status, TemplateKey,
    ThroughputUnit, UnknownTemplates,
};
use tessera_dsl::{ParamSpace, Problem, Target};

use crate::settings;
use crate::usage::usage;

#[derive(clap::Args)]
pub struct Args {
    /// The cache file (default: $TESSERA_CACHE, else ~/.cache/tessera/tune.db).
    #[arg(long, global = true, value_name = "PATH")]
    cache: Option<PathBuf>,
    #[command(subcommand)]
    command: Sub,
}

#[derive(Subcommand)]
enum Sub {
    /// List every winner (device, template version, problem, kernel, time, provenance).
    #[command(
        after_help = "Examples:\n  tessera cache ls\n  tessera cache ls --json --cache team.db"
    )]
    Ls {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Every column, however wide (by default a terminal's width drops the origin and
        /// time columns, then puts devices in headings).
        #[arg(long)]
        wide: bool,
    },
    /// Show every candidate behind a choice, fastest first, rejected ones with their reasons.
    #[command(
        after_help = "Examples:\n  tessera cache why 'm=384 n=768'\n  tessera cache why gemm_f16_f32acc_128x128x32_w2x2_s2_rcr_a8 --json"
    )]
    Why {
        /// A substring of a problem key (e.g. `m=384 n=768`) or an exact kernel name.
        filter: String,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Write the cache (or one device's rows) to a new shareable file.
    #[command(
        after_help = "Examples:\n  tessera cache export -o all.db\n  tessera cache export --device H100 -o h100.db"
    )]
    Export {
        /// The file to write; it must not exist.
        #[arg(short = 'o', long, value_name = "FILE")]
        out: PathBuf,
        /// Only devices whose description contains this text (case-insensitive), e.g. `H100`.
        #[arg(long, value_name = "SUBSTRING")]
        device: Option<String>,
    },
    /// Take the rows of a shared cache file into this cache. Every row is re-derived and
    /// checked first (kernel name, config, problem, throughput under the device's roof, a
    /// recorded error within tolerance for every ok row, a verified result behind every
    /// winner); rows measured on this machine are never replaced by default.
    #[command(
        after_help = "Examples:\n  tessera cache import h100.db\n  tessera cache import h100.db --cache team.db --json"
    )]
    Import {
        /// A cache file written by `tessera cache export` (or any Tessera cache).
        file: PathBuf,
        /// Let better-supported imported rows replace rows measured on this machine.
        #[arg(long)]
        replace_local: bool,
        /// Print the summary, every replaced and every refused row as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Merge two cache files into a new one (every row validated first).
    #[command(after_help = "Examples:\n  tessera cache merge mine.db theirs.db -o team.db")]
    Merge {
        a: PathBuf,
        b: PathBuf,
        /// The file to write; it must not exist.
        #[arg(short = 'o', long = "out", value_name = "FILE")]
        out: PathBuf,
    },
    /// Compare the winners of two cache files: changed kernels and times, keys on one side only.
    #[command(
        after_help = "Examples:\n  tessera cache diff old.db new.db\n  tessera cache diff old.db new.db --json"
    )]
    Diff {
        /// The old cache file.
        a: PathBuf,
        /// The new cache file.
        b: PathBuf,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Drop rows of template versions that are not this build's, then compact the file.
    #[command(after_help = "Examples:\n  tessera cache gc\n  tessera cache gc --drop-unknown")]
    Gc {
        /// Also drop rows of templates this build does not know (kept by default: they may
        /// come from another build).
        #[arg(long)]
        drop_unknown: bool,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    // Link and register every template: import checks and gc look them up by name.
    tessera_library::templates();
    let path = settings::cache_path(args.cache)?;
    match args.command {
        Sub::Ls { json, wide } => show::ls(&open_existing(&path, Access::Read)?, json, wide),
        Sub::Why { filter, json } => show::why(&open_existing(&path, Access::Read)?, &filter, json),
        Sub::Export { out, device } => {
            sqlite_output("export", &out)?;
            share::export(&open_existing(&path, Access::Read)?, &out, device)
        }
        Sub::Import {
            file,
            replace_local,
            json,
        } => share::import(&path, &file, replace_local, json),
        Sub::Merge { a, b, out } => {
            sqlite_output("merge", &out)?;
            share::merge(&a, &b, &out)
        }
        Sub::Diff { a, b, json } => share::diff(&a, &b, json),
        Sub::Gc { drop_unknown } => gc(&open_existing(&path, Access::Write)?, drop_unknown),
    }
}

/// The extensions an export or merge output may have: it is a SQLite cache file.
const SQLITE_EXTENSIONS: [&str; 3] = ["db", "sqlite", "sqlite3"];

/// Refuses an export or merge output named like another format (`f.json`, `f.csv`): the
/// file would be a SQLite cache whatever its name says.
fn sqlite_output(command: &str, out: &Path) -> anyhow::Result<()> {
    let Some(ext) = out.extension() else {
        return Ok(());
    };
    let ext = ext.to_string_lossy();
    if SQLITE_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()) {
        return Ok(());
    }
    Err(usage(format!(
        "{}: `tessera cache {command}` writes a SQLite cache file (what `import`, `merge` and \
         `diff` read), not .{ext}; name it .db (e.g. {}). For JSON use `tessera cache ls --json` \
         or `tessera cache why FILTER --json`",
        out.display(),
        out.with_extension("db").display()
    )))
}

/// A cache error as the CLI reports it: problems with the files the user named (missing,
/// damaged, foreign, too new, an output that exists, a path that can't be used) are usage
/// errors; SQLite failing, lock timeouts and internal refusals are failures.
pub(crate) fn cache_error(e: CacheError) -> anyhow::Error {
    match e {
        CacheError::Busy { .. } | CacheError::Sqlite { .. } | CacheError::Invalid { .. } => {
            anyhow::Error::new(e)
        }
        _ => usage(e),
    }
}

/// Whether a subcommand only reads the cache (opened read-only: works in a read-only
/// directory) or writes it (refused up front when the file or directory isn't writable).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

/// Opens the selected cache, which must exist (listing or exporting a cache that was never
/// written would only create an empty file).
pub(crate) fn open_existing(path: &Path, access: Access) -> anyhow::Result<Cache> {
    let options = OpenOptions {
        create: false,
        read_only: access == Access::Read,
        ..OpenOptions::default()
    };
    Cache::open_with(path, &options).map_err(|e| match e {
        CacheError::NotFound { .. } => usage(format!(
            "{e}: nothing has been tuned into it yet. Run `tessera tune`, or choose another \
             cache with --cache PATH or TESSERA_CACHE"
        )),
        e => cache_error(e),
    })
}

/// Whether `a` and `b` name the same existing file.
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Whether a template version is this build's: `current`, `stale` (known template, other
/// source hash) or `unknown`.
pub(crate) fn template_status(t: &TemplateKey) -> &'static str {
    match tessera_dsl::find(&t.name) {
        Ok(cur) if cur.source_hash() == t.source_hash => "current",
        Ok(_) => "stale",
        Err(_) => "unknown",
    }
}

/// How far above the nominal roof of its architecture's flagship part an imported row may
/// claim to run: parts of one architecture differ (an H200 has 1.43x the H100's bandwidth),
/// so the bound is loose, but a time implying several times the roof is refused.
pub(crate) const ROOF_SLACK: f64 = 1.5;

/// Relative difference allowed between a stored throughput and the one its median implies.
const THROUGHPUT_MATCH: f64 = 1e-6;

/// The check every imported row passes (after the cache crate's own field validation). Every
/// part of the row that this build can compute is re-derived and compared:
///
/// * the template is one of this build's, at its current source hash;
/// * the problem description parses as a problem, is valid, and is the problem its key (and
///   op) names, and the template computes that op;
/// * the config parses as a point of the template's space; the kernel name, the canonical
///   config and its JSON are exactly what the template derives from (config, problem);
/// * a claimed median implies a throughput under the device's roof (its architecture's
///   nominal compute and bandwidth ceilings, scaled by its SM count, times [`ROOF_SLACK`]),
///   and a stored throughput is the one the median implies;
/// * an `ok` row's error against the reference is within the template's tolerance for the
///   output dtype (the tuner's own verification bound, [`tessera_library::verify::tolerance`]).
///   An `ok` row with no recorded error, and a winner row with no `ok` result row behind it,
///   never get here: the cache crate refuses them as [`RefusalKind::Unverified`].
///
/// Spaces are built once per template.
#[derive(Default)]
pub(crate) struct CandidateChecker {
    spaces: RefCell<HashMap<&'static str, ParamSpace>>,
}

impl CandidateChecker {
    pub(crate) fn check(&self, c: &Candidate<'_>) -> Result<(), Refusal> {
        use RefusalKind::*;
        let name = &c.template.name;
        let t = tessera_dsl::find(name).map_err(|_| {
            Refusal::new(
                UnknownTemplate,
                format!("unknown template `{name}` (this build cannot validate it)"),
            )
        })?;
        if t.source_hash() != c.template.source_hash {
            return Err(Refusal::new(
                StaleTemplate,
                format!(
                    "stale template version: {name}@{} but this build's {name} is @{}",
                    c.template.source_hash,
                    t.source_hash()
                ),
            ));
        }
        let problem = problem_of(c)?;
        if t.op() != problem.op() {
            return Err(Refusal::new(
                ProblemMismatch,
                format!(
                    "template {name} computes {}, not {}",
                    t.op().name(),
                    problem.op().name()
                ),
            ));
        }
        let (values, written) = {
            let mut spaces = self.spaces.borrow_mut();
            let space = spaces.entry(t.name()).or_insert_with(|| t.space());
            let values = space.parse_point(c.config).map_err(|e| {
                Refusal::new(
                    ConfigOutsideSpace,
                    format!("config `{}` is not in the space of {name}: {e}", c.config),
                )
            })?;
            // as this build writes it: target knobs at their default left out
            let written = space.written(&values);
            (values, written)
        };
        let assignment = written
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let config = t.config(&values, &problem).map_err(|e| {
            Refusal::new(
                ConfigOutsideSpace,
                format!(
                    "config `{}` does not apply to `{}`: {e}",
                    c.config,
                    problem.key()
                ),
            )
        })?;
        let derived = config.kernel_name();
        if derived != c.kernel_name {
            return Err(Refusal::new(
                KernelNameMismatch,
                format!(
                    "kernel name `{}` is not a kernel of template {name}: config `{}` for `{}` \
                     is `{derived}`",
                    c.kernel_name,
                    c.config,
                    problem.key()
                ),
            ));
        }
        if assignment != c.config {
            return Err(Refusal::new(
                ConfigMismatch,
                format!(
                    "config `{}` is not written as this build writes it (`{assignment}`)",
                    c.config,
                ),
            ));
        }
        let want_json = serde_json::Value::Object(
            written
                .into_iter()
                .map(|(n, v)| (n, serde_json::Value::from(v)))
                .collect(),
        );
        let got_json: Option<serde_json::Value> = serde_json::from_str(c.config_json).ok();
        if got_json.as_ref() != Some(&want_json) {
            return Err(Refusal::new(
                ConfigMismatch,
                format!(
                    "config_json {} is not the config `{}` (it would be {want_json})",
                    truncated(c.config_json),
                    c.config
                ),
            ));
        }
        if let Some(ms) = c.median_ms {
            check_roof(c, &problem, ms)?;
        }
        if c.status == Status::Ok {
            let tol = tessera_library::verify::tolerance(config.variant.output);
            if let Some(e) = c.max_rel_error.filter(|&e| e > tol) {
                return Err(Refusal::new(
                    AboveTolerance,
                    format!(
                        "an ok row with relative error {e:e}, above the {} tolerance {tol:e}",
                        config.variant.output
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The problem a row's description holds, checked against its key and op.
fn problem_of(c: &Candidate<'_>) -> Result<Problem, Refusal> {
    let mismatch = |detail: String| Refusal::new(RefusalKind::ProblemMismatch, detail);
    let key = &c.problem.key;
    let problem: Problem = serde_json::from_str(&c.problem.json)
        .map_err(|e| mismatch(format!("the description of `{key}` is not a problem: {e}")))?;
    problem
        .check()
        .map_err(|e| mismatch(format!("the description of `{key}` is not valid: {e}")))?;
    if problem.key() != *key {
        return Err(mismatch(format!(
            "the description is of `{}`, not of its key `{key}`",
            problem.key()
        )));
    }
    if problem.op().name() != c.problem.op {
        return Err(mismatch(format!(
            "op `{}` but the description is a {}",
            c.problem.op,
            problem.op().name()
        )));
    }
    Ok(problem)
}

/// A claimed median must not beat the device's roofline: neither its compute nor its memory
/// ceiling (times [`ROOF_SLACK`]); a stored throughput must be the one the median implies.
fn check_roof(c: &Candidate<'_>, problem: &Problem, ms: f64) -> Result<(), Refusal> {
    use RefusalKind::*;
    let target: Target = c.device.arch.parse().map_err(|_| {
        Refusal::new(
            UnknownDevice,
            format!(
                "architecture `{}` is unknown: its roof cannot be checked",
                c.device.arch
            ),
        )
    })?;
    let caps = target.nominal_caps();
    let scale =
        (f64::from(c.device.sm_count) / f64::from(caps.sm_count.max(1))).max(1.0) * ROOF_SLACK;
    let peak_tflops = caps.peak_tflops_f16 * scale;
    let peak_gbs = caps.mem_bandwidth_gbs * scale;
    let compute_ms = problem.flops() / (peak_tflops * 1e12) * 1e3;
    let memory_ms = problem.bytes() / (peak_gbs * 1e9) * 1e3;
    if ms < compute_ms.max(memory_ms) {
        let (tflops, gbs) = (
            problem.flops() / (ms * 1e-3) / 1e12,
            problem.bytes() / (ms * 1e-3) / 1e9,
        );
        return Err(Refusal::new(
            AboveRoof,
            format!(
                "{ms:e} ms implies {tflops:.0} TFLOP/s and {gbs:.0} GB/s, above the roof of {} \
                 ({} TFLOP/s, {} GB/s; {ROOF_SLACK}x allowed)",
                c.device.name, caps.peak_tflops_f16, caps.mem_bandwidth_gbs
            ),
        ));
    }
    if let Some(tp) = c.throughput {
        let unit = if problem.memory_bound() {
            ThroughputUnit::Gbs
        } else {
            ThroughputUnit::Tflops
        };
        let want = problem.throughput(ms);
        if tp.unit != unit || (tp.value - want).abs() > THROUGHPUT_MATCH * want.abs().max(1e-12) {
            return Err(Refusal::new(
                ThroughputMismatch,
                format!(
                    "throughput {} {} but {ms:e} ms means {want} {}",
                    tp.value,
                    tp.unit.as_str(),
                    unit.as_str()
                ),
            ));
        }
    }
    Ok(())
}

/// The first characters of untrusted text, for messages.
fn truncated(s: &str) -> String {
    let t: String = s.chars().take(80).collect();
    if t.len() < s.len() {
        format!("{t}...")
    } else {
        t
    }
}

fn gc(cache: &Cache, drop_unknown: bool) -> anyhow::Result<()> {
    let current: BTreeMap<String, String> = tessera_library::templates()
        .iter()
        .map(|t| (t.name().to_string(), t.source_hash().to_string()))
        .collect();
    // The template versions present before, to say what was dropped and what was kept.
    let versions: std::collections::BTreeSet<TemplateKey> = cache
        .why("")
        .map_err(cache_error)?
        .into_iter()
        .map(|e| e.key.template)
        .collect();
    let unknown = if drop_unknown {
        UnknownTemplates::Drop
    } else {
        UnknownTemplates::Keep
    };
    let s = cache.gc(&current, unknown).map_err(cache_error)?;
    let mut stale = Vec::new();
    let mut unknown_kept = Vec::new();
    for v in &versions {
        match template_status(v) {
            "stale" => stale.push(v.to_string()),
            "unknown" if drop_unknown => stale.push(v.to_string()),
            "unknown" => unknown_kept.push(v.to_string()),
            _ => {}
        }
    }
    println!(
        "gc {}: deleted {}, {}, {}, {}, {}; {} -> {} bytes",
        cache.path().display(),
        table::count(s.results_deleted as u64, "result"),
        table::count(s.winners_deleted as u64, "winner"),
        table::count(s.templates_deleted as u64, "template version"),
        table::count(s.problems_deleted as u64, "problem"),
        table::count(s.devices_deleted as u64, "device"),
        s.bytes_before,
        s.bytes_after
    );
    if !stale.is_empty() {
        println!("dropped template versions: {}", stale.join(", "));
    }
    if !unknown_kept.is_empty() {
        println!(
            "kept templates this build does not know (--drop-unknown drops them): {}",
            unknown_kept.join(", ")
        );
    }
    Ok(())
}
