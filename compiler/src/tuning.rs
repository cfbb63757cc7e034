//! Tuning resolution: every distinct kernel problem gets a template and a config. The cache is
//! asked first (for this device and toolchain, every template of the problem's op, fastest
//! winner kept, its config re-validated for the problem); on a miss the [`Mode`] decides: tune it
//! now with the tuner (within its budget), use the cost model's first candidate and mark it
//! untuned, or fail listing every miss. A packed fill bucket's problem that misses takes its
//! anchor bucket's config instead (marked borrowed), so finer token buckets cost no tuning;
//! with [`FillConfigs::Pick`] a tuning compile measures that config beside the cost model's
//! best at the fill's own size and takes the fastest (marked picked).
//!
//! Everything here goes through the tuner's and the cache's own APIs: `tune_problem`,
//! `pick_among`, `first_by_prediction`, `Cache::winner`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tessera_cache::{Cache, DeviceFingerprint, TemplateKey};
use tessera_dsl::{Config, DeviceCaps, Problem, Template};
use tessera_tuner::shapes::NamedProblem;
use tessera_tuner::sweep::{first_by_prediction, pick_among, tune_problem, Observer, Session};
use tessera_tuner::TunerError;

/// What to do about a problem the cache has no winner for.
pub enum Mode<'s, 'c> {
    /// Tune it now on the session's device (the session's budget applies).
    Tune(&'s mut Session<'c>),
    /// Use the cost model's first candidate; the plan marks it untuned.
    NoTune,
    /// Fail, listing every miss.
    Strict,
}

/// How a kernel's config was chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TuningStatus {
    /// A winner already in the cache.
    Cached { median_ms: f64 },
    /// Tuned during this compile.
    Tuned { median_ms: f64 },
    /// Not measured: the cost model's first candidate.
    Untuned { reason: String },
    /// Not measured at this size: the config of problem `from` (a packed fill bucket's kernel
    /// takes its anchor bucket's, whose problem differs by the token count alone).
    Borrowed { from: String },
    /// A packed fill bucket's kernel measured at its own size among a few candidates (the cost
    /// model's best there and its anchor's config, [`FillConfigs::Pick`]); the cache keeps
    /// their rows but no winner, as for a sweep of the space.
    Picked {
        median_ms: f64,
        /// Candidates it was chosen among.
        among: usize,
        /// The anchor's kernel, one of them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        anchor: Option<String>,
    },
}

/// How a packed fill bucket's kernels that the cache has no winner for get their configs.
///
/// Measured on the H200 at 03e09cc (`benches/bert_fill_configs.sh`: BERT-base, `--batch 8,32
/// --seq 384 --packed-buckets 8 --packed-granule 128`, 599 fill kernels, each compile from
/// empty caches): `Pick` ran the ragged batches of `benches/bert_bench.py` 1–5 % faster packed
/// (batch 8: 0.925 → 0.907 ms uniform, 0.544 → 0.519 short-heavy; batch 32: 2.776 → 2.745,
/// 0.840 → 0.806; in one process −2 to +8 %, short-heavy batches gaining most), but the
/// compile took 286 s against `Borrow`'s 92 s. So borrowing stays the default and picking is
/// asked for (`tessera compile --fill-configs pick`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FillConfigs {
    /// Take the anchor bucket's config unmeasured ([`TuningStatus::Borrowed`]): no tuning.
    #[default]
    Borrow,
    /// When tuning: measure the anchor's config beside the cost model's best
    /// [`FILL_PICK_KEEP`] at the fill's own size and take the fastest
    /// ([`TuningStatus::Picked`]); otherwise borrow.
    Pick,
}

/// How many of the cost model's best candidates a fill's pick measures (besides each dispatch
/// policy's best and the anchor's config). Every 128-token bucket of BERT-base at batch 8 tuned
/// in full (`--packed-buckets 24`, H200, f379038) ran the batch-8 ragged batches 3 % (uniform
/// lengths) and 6 % (short-heavy) faster than with borrowed configs, mostly from tiles that
/// fit the fill's own token count (FFN-up at 1664 tokens: 128 × 160, 260 tiles in 1.97 waves
/// of 132 SMs, against the 1920-token anchor's 128 × 192, 208 tiles in 1.58).
pub const FILL_PICK_KEEP: usize = 2;

/// The kernel chosen for one problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelChoice {
    pub problem: Problem,
    pub template: String,
    pub template_hash: String,
    pub kernel_name: String,
    /// Parameter values by name (the template's space order is recovered from the template).
    pub config: BTreeMap<String, i64>,
    #[serde(flatten)]
    pub status: TuningStatus,
}

/// Why a plan's kernel cannot be rebuilt here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RebuildError {
    #[error("kernel {kernel}: no template `{template}` in this build")]
    UnknownTemplate { kernel: String, template: String },
    #[error("kernel {kernel}: template `{template}` changed since the plan was compiled (source hash {plan} then, {here} now); compile the model again")]
    TemplateChanged {
        kernel: String,
        template: String,
        plan: String,
        here: String,
    },
    #[error("kernel {kernel}: its config is not a valid point of `{template}` for {problem} on this device")]
    InvalidConfig {
        kernel: String,
        template: String,
        problem: String,
    },
}

impl KernelChoice {
    /// The template and config this choice names, checked against this build's template (same
    /// source hash) and this device: what an executor generates and compiles the kernel from.
    pub fn rebuild(
        &self,
        caps: &DeviceCaps,
    ) -> Result<(&'static dyn Template, Config), RebuildError> {
        let t = tessera_dsl::find(&self.template).map_err(|_| RebuildError::UnknownTemplate {
            kernel: self.kernel_name.clone(),
            template: self.template.clone(),
        })?;
        if t.source_hash() != self.template_hash {
            return Err(RebuildError::TemplateChanged {
                kernel: self.kernel_name.clone(),
                template: self.template.clone(),
                plan: self.template_hash.clone(),
                here: t.source_hash().to_string(),
            });
        }
        let config = config_from(t, &self.config, &self.problem, caps).ok_or_else(|| {
            RebuildError::InvalidConfig {
                kernel: self.kernel_name.clone(),
                template: self.template.clone(),
                problem: self.problem.key(),
            }
        })?;
        Ok((t, config))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TuningError {
    #[error("no template implements {op} (problem {key})")]
    NoTemplate { op: String, key: String },
    #[error("no config of any {op} template is valid for {key} on this device")]
    NoValidConfig { op: String, key: String },
    #[error("--strict: {} kernel problem(s) have no tuned winner in the cache for this device; tune them first (or drop --strict):\n  {}", .0.len(), .0.join("\n  "))]
    Strict(Vec<String>),
    #[error(transparent)]
    Tuner(#[from] TunerError),
    #[error(transparent)]
    Cache(#[from] tessera_cache::CacheError),
}

/// Where winners are looked up.
pub struct Lookup<'a> {
    pub cache: &'a Cache,
    pub fingerprint: &'a DeviceFingerprint,
    pub caps: &'a DeviceCaps,
}

fn templates_for(problem: &Problem) -> Vec<&'static dyn Template> {
    tessera_library::templates()
        .into_iter()
        .filter(|t| t.op() == problem.op())
        .collect()
}

fn choice(
    t: &dyn Template,
    problem: &Problem,
    config: &Config,
    status: TuningStatus,
) -> KernelChoice {
    KernelChoice {
        problem: problem.clone(),
        template: t.name().to_string(),
        template_hash: t.source_hash().to_string(),
        kernel_name: config.kernel_name(),
        // target knobs at their default left out, as caches write them
        config: t.space().written(&config.values()).into_iter().collect(),
        status,
    }
}

/// The config `params` (by name) stands for, if the template still has that point and it is
/// valid for the problem (a stale or foreign winner is a miss, not an error).
fn config_from(
    t: &dyn Template,
    params: &BTreeMap<String, i64>,
    problem: &Problem,
    caps: &DeviceCaps,
) -> Option<Config> {
    let values: Vec<i64> = t
        .space()
        .params
        .iter()
        .map(|p| params.get(&p.name).copied().or(p.default))
        .collect::<Option<_>>()?;
    let config = t.config(&values, problem).ok()?;
    t.validate(&config, problem, caps).ok()?;
    Some(config)
}

/// The fastest cached winner over the problem's templates.
fn cached(
    lookup: &Lookup,
    problem: &Problem,
    cached_status: bool,
) -> Result<Option<KernelChoice>, TuningError> {
    let mut best: Option<KernelChoice> = None;
    for t in templates_for(problem) {
        let key = TemplateKey::new(t.name(), t.source_hash());
        let Some(w) = lookup
            .cache
            .winner(lookup.fingerprint, &key, &problem.key())?
        else {
            continue;
        };
        let Ok(params) = serde_json::from_str::<BTreeMap<String, i64>>(&w.config_json) else {
            continue;
        };
        let Some(config) = config_from(t, &params, problem, lookup.caps) else {
            continue;
        };
        let status = if cached_status {
            TuningStatus::Cached {
                median_ms: w.median_ms,
            }
        } else {
            TuningStatus::Tuned {
                median_ms: w.median_ms,
            }
        };
        let faster = |b: &KernelChoice| match b.status {
            TuningStatus::Cached { median_ms }
            | TuningStatus::Tuned { median_ms }
            | TuningStatus::Picked { median_ms, .. } => w.median_ms < median_ms,
            TuningStatus::Untuned { .. } | TuningStatus::Borrowed { .. } => true,
        };
        if best.as_ref().is_none_or(faster) {
            best = Some(choice(t, problem, &config, status));
        }
    }
    Ok(best)
}

/// The cost model's first valid candidate over the problem's templates.
fn predicted(
    lookup: &Lookup,
    problem: &Problem,
    reason: &str,
) -> Result<KernelChoice, TuningError> {
    let templates = templates_for(problem);
    if templates.is_empty() {
        return Err(TuningError::NoTemplate {
            op: problem.op().to_string(),
            key: problem.key(),
        });
    }
    for t in templates {
        if let Some(config) = first_by_prediction(t, problem, lookup.caps)? {
            return Ok(choice(
                t,
                problem,
                &config,
                TuningStatus::Untuned {
                    reason: reason.to_string(),
                },
            ));
        }
    }
    Err(TuningError::NoValidConfig {
        op: problem.op().to_string(),
        key: problem.key(),
    })
}

/// A kernel for every problem (in order), resolved as the module docs say. A problem with a
/// donor (`donors[i]`: the index of the problem it may take its config from, a packed fill
/// bucket's kernel and its anchor's) that the cache has no winner for takes the donor's config
/// when that config is valid for it ([`TuningStatus::Borrowed`]); otherwise it is resolved like
/// any other. Donors are resolved first.
pub fn resolve(
    problems: &[Problem],
    donors: &[Option<usize>],
    fills: FillConfigs,
    lookup: &Lookup,
    mut mode: Mode,
    obs: &mut dyn Observer,
) -> Result<Vec<KernelChoice>, TuningError> {
    let donor = |i: usize| donors.get(i).copied().flatten();
    let mut out: Vec<Option<KernelChoice>> = vec![None; problems.len()];
    let mut misses = Vec::new();
    for (i, problem) in problems.iter().enumerate() {
        if donor(i).is_none() {
            out[i] = resolve_one(i, problem, lookup, &mut mode, obs, &mut misses)?;
        }
    }
    let (mut borrowed, mut picked) = (0usize, 0usize);
    for (i, problem) in problems.iter().enumerate() {
        let Some(d) = donor(i) else { continue };
        if let Some(hit) = cached(lookup, problem, true)? {
            out[i] = Some(hit);
            continue;
        }
        let anchor = out
            .get(d)
            .and_then(Option::as_ref)
            .and_then(|from| borrow(from, &problems[d], problem, lookup.caps));
        if let (FillConfigs::Pick, Mode::Tune(session)) = (fills, &mut mode) {
            if let Some(choice) = pick_fill(session, i, problem, anchor.as_ref(), obs)? {
                picked += 1;
                out[i] = Some(choice);
                continue;
            }
        }
        if let Some(choice) = anchor {
            borrowed += 1;
            out[i] = Some(choice);
            continue;
        }
        out[i] = resolve_miss(i, problem, lookup, &mut mode, obs, &mut misses)?;
    }
    if borrowed > 0 {
        obs.phase(&format!(
            "{borrowed} packed fill-bucket kernel(s) take their anchor bucket's configs"
        ));
    }
    if picked > 0 {
        obs.phase(&format!(
            "{picked} packed fill-bucket kernel(s) picked among their anchor's config and the cost model's best at their own size"
        ));
    }
    if !misses.is_empty() {
        return Err(TuningError::Strict(misses));
    }
    Ok(out.into_iter().flatten().collect())
}

/// A fill's kernel measured at its own size ([`FillConfigs::Pick`]): per template, the cost
/// model's best [`FILL_PICK_KEEP`] and the anchor's config (`anchor`, when of that template),
/// the fastest over templates. `None` when nothing measured ok.
fn pick_fill(
    session: &mut Session,
    i: usize,
    problem: &Problem,
    anchor: Option<&KernelChoice>,
    obs: &mut dyn Observer,
) -> Result<Option<KernelChoice>, TuningError> {
    let named = NamedProblem {
        name: format!("kernel{i}"),
        problem: problem.clone(),
    };
    let mut best: Option<(f64, KernelChoice)> = None;
    for t in templates_for(problem) {
        let own = anchor.filter(|a| a.template == t.name());
        let also = own.map(|a| a.kernel_name.clone()).into_iter().collect();
        let (summary, config) = pick_among(session, &named, t, FILL_PICK_KEEP, also, obs)?;
        let (Some(config), Some(ms)) = (config, summary.median_ms) else {
            continue;
        };
        if best.as_ref().is_none_or(|(b, _)| ms < *b) {
            let status = TuningStatus::Picked {
                median_ms: ms,
                among: summary.kept,
                anchor: own.map(|a| a.kernel_name.clone()),
            };
            best = Some((ms, choice(t, problem, &config, status)));
        }
    }
    Ok(best.map(|(_, c)| c))
}

/// `from`'s template and config for `problem`, if valid there.
fn borrow(
    from: &KernelChoice,
    from_problem: &Problem,
    problem: &Problem,
    caps: &DeviceCaps,
) -> Option<KernelChoice> {
    if from_problem.op() != problem.op() {
        return None;
    }
    let t = tessera_dsl::find(&from.template).ok()?;
    let config = config_from(t, &from.config, problem, caps)?;
    Some(choice(
        t,
        problem,
        &config,
        TuningStatus::Borrowed {
            from: from_problem.key(),
        },
    ))
}

/// One problem without a donor: the cache, else what `mode` says (a strict miss is recorded
/// in `misses` and gives `None`).
fn resolve_one(
    i: usize,
    problem: &Problem,
    lookup: &Lookup,
    mode: &mut Mode,
    obs: &mut dyn Observer,
    misses: &mut Vec<String>,
) -> Result<Option<KernelChoice>, TuningError> {
    if let Some(hit) = cached(lookup, problem, true)? {
        obs.phase(&format!(
            "cache hit: {} -> {}",
            problem.key(),
            hit.kernel_name
        ));
        return Ok(Some(hit));
    }
    resolve_miss(i, problem, lookup, mode, obs, misses)
}

/// A problem the cache has no winner for: what `mode` says.
fn resolve_miss(
    i: usize,
    problem: &Problem,
    lookup: &Lookup,
    mode: &mut Mode,
    obs: &mut dyn Observer,
    misses: &mut Vec<String>,
) -> Result<Option<KernelChoice>, TuningError> {
    let resolved = match mode {
        Mode::Strict => {
            misses.push(problem.key());
            return Ok(None);
        }
        Mode::NoTune => predicted(lookup, problem, "--no-tune: not in the cache")?,
        Mode::Tune(session) => {
            let named = NamedProblem {
                name: format!("kernel{i}"),
                problem: problem.clone(),
            };
            for t in templates_for(problem) {
                tune_problem(session, &named, t, obs)?;
            }
            match cached(lookup, problem, false)? {
                Some(tuned) => tuned,
                None => predicted(
                    lookup,
                    problem,
                    "tuning stored no winner (budget ran out or every candidate failed)",
                )?,
            }
        }
    };
    Ok(Some(resolved))
}
