//! The prune audit: how often would pruning have dropped the true winner?
//!
//! Given the measured rows of a full, unpruned sweep of one (template, problem) on one device
//! (what `tessera tune --no-prune` stores), [`audit`] ranks the same valid candidates the way
//! the pruning stage would ([`crate::prune::plan`]) and reports whether the measured winner
//! is among the kept ones and, if not, how much slower the best kept candidate measured
//! (`ratio = best kept median ÷ winner median`, 1 when the winner is kept). [`summarize`]
//! folds many problems into one line: winners kept, worst and geometric-mean ratio.
//!
//! It measures nothing: rows come from the cache. A sweep that was itself pruned (rows of
//! status `pruned`, or valid candidates with no row) is reported as incomplete, because its
//! winner may not be the true one.

use crate::error::TunerError;
use crate::prune::{plan, validate_space, PruneConfig};
use std::collections::{BTreeMap, BTreeSet};
use tessera_cache::{policy, ResultRow, Status};
use tessera_dsl::{DeviceCaps, Problem, Template};

/// The audit of one (template, problem).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProblemAudit {
    pub problem_key: String,
    pub template: String,
    /// Valid candidates of the template's space for this problem and device.
    pub candidates: usize,
    /// Of them, how many the pruning stage keeps (top K plus the policy floor).
    pub kept: usize,
    /// Valid candidates with a row that is not `pruned` (measured, or failed trying).
    pub measured: usize,
    /// Every valid candidate was tried: the winner below is the true one.
    pub complete: bool,
    /// The measured winner (the cache policy's choice among `ok` rows).
    pub winner: Option<String>,
    pub winner_ms: Option<f64>,
    /// The cost model's 1-based rank of the measured winner.
    pub winner_rank: Option<usize>,
    pub winner_kept: Option<bool>,
    /// The fastest measured candidate among the kept ones.
    pub best_kept: Option<String>,
    pub best_kept_ms: Option<f64>,
    /// `best_kept_ms ÷ winner_ms` (1 when the winner is kept; `None` when nothing kept was
    /// measured `ok`, i.e. pruning would have left the problem without a kernel).
    pub ratio: Option<f64>,
}

/// Audit one (template, problem) from the rows of its sweep on one device (`rows` of other
/// kernels, templates or problems are ignored by kernel name).
pub fn audit(
    t: &dyn Template,
    problem: &Problem,
    caps: &DeviceCaps,
    rows: &[ResultRow],
    prune: PruneConfig,
) -> Result<ProblemAudit, TunerError> {
    let (valid, _) = validate_space(t, problem, caps)?;
    let plan = plan(t, problem, caps, valid, prune);
    let names: BTreeSet<String> = plan
        .kept
        .iter()
        .chain(&plan.pruned)
        .map(|p| p.name())
        .collect();
    let mine: Vec<ResultRow> = rows
        .iter()
        .filter(|r| r.template.name == t.name() && r.problem.key == problem.key())
        .filter(|r| names.contains(&r.kernel_name))
        .cloned()
        .collect();
    let measured: BTreeSet<&str> = mine
        .iter()
        .filter(|r| r.status != Status::Pruned)
        .map(|r| r.kernel_name.as_str())
        .collect();
    let ranks: BTreeMap<String, (usize, bool)> = plan
        .kept
        .iter()
        .chain(&plan.pruned)
        .map(|p| (p.name(), (p.verdict.rank(), p.verdict.is_kept())))
        .collect();
    let winner = policy::choose_winner(&mine);
    let kept_rows: Vec<ResultRow> = mine
        .iter()
        .filter(|r| ranks.get(&r.kernel_name).is_some_and(|&(_, kept)| kept))
        .cloned()
        .collect();
    let best_kept = policy::choose_winner(&kept_rows);
    let ms = |r: Option<&ResultRow>| r.and_then(|r| r.timing).map(|t| t.median_ms);
    let (winner_ms, best_kept_ms) = (ms(winner), ms(best_kept));
    let winner_rank = winner.and_then(|w| ranks.get(&w.kernel_name).copied());
    Ok(ProblemAudit {
        problem_key: problem.key(),
        template: t.name().to_string(),
        candidates: plan.len(),
        kept: plan.kept.len(),
        measured: measured.len(),
        complete: measured.len() == plan.len(),
        winner: winner.map(|w| w.kernel_name.clone()),
        winner_ms,
        winner_rank: winner_rank.map(|(r, _)| r),
        winner_kept: winner_rank.map(|(_, k)| k),
        best_kept: best_kept.map(|r| r.kernel_name.clone()),
        best_kept_ms,
        ratio: match (best_kept_ms, winner_ms) {
            (Some(b), Some(w)) if w > 0.0 => Some(b / w),
            _ => None,
        },
    })
}

/// Many problems' audits in one line.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditSummary {
    /// Problems with a measured winner from a complete sweep.
    pub audited: usize,
    /// Problems skipped: no winner, or the stored sweep was pruned or unfinished.
    pub incomplete: usize,
    /// Of the audited, those whose winner the pruning stage keeps.
    pub winner_kept: usize,
    /// Of the audited, those where pruning leaves no measured `ok` candidate.
    pub no_kept_kernel: usize,
    /// Worst and geometric-mean `ratio` over the audited problems that keep a kernel.
    pub worst_ratio: Option<f64>,
    pub geomean_ratio: Option<f64>,
}

pub fn summarize(audits: &[ProblemAudit]) -> AuditSummary {
    let audited: Vec<&ProblemAudit> = audits
        .iter()
        .filter(|a| a.complete && a.winner.is_some())
        .collect();
    let ratios: Vec<f64> = audited.iter().filter_map(|a| a.ratio).collect();
    AuditSummary {
        audited: audited.len(),
        incomplete: audits.len() - audited.len(),
        winner_kept: audited
            .iter()
            .filter(|a| a.winner_kept == Some(true))
            .count(),
        no_kept_kernel: audited.iter().filter(|a| a.ratio.is_none()).count(),
        worst_ratio: ratios.iter().copied().max_by(f64::total_cmp),
        geomean_ratio: if ratios.is_empty() {
            None
        } else {
            Some((ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp())
        },
    }
}
