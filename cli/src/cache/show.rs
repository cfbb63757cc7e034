//! `tessera cache ls` and `tessera cache why`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{json, Value};
use tessera_cache::policy::NEAR_TIE;
use tessera_cache::{
    Cache, CacheSummary, DeviceFingerprint, Explanation, ResultRow, Status, WinnerRow,
};

use super::table::{self, count, ms, opt_ms, Table};
use super::{cache_error, template_status};
use crate::usage::usage;

/// Short device labels for a table: `name arch` (plus `simulated`), or the full description
/// where two different fingerprints would share a short label.
pub(crate) fn device_labels<'a>(
    devices: impl IntoIterator<Item = &'a DeviceFingerprint>,
) -> HashMap<DeviceFingerprint, String> {
    let distinct: BTreeSet<&DeviceFingerprint> = devices.into_iter().collect();
    let short = |d: &DeviceFingerprint| {
        let sim = if d.simulated { " simulated" } else { "" };
        format!("{} {}{sim}", d.name, d.arch)
    };
    let mut uses: HashMap<String, usize> = HashMap::new();
    for d in &distinct {
        *uses.entry(short(d)).or_default() += 1;
    }
    distinct
        .into_iter()
        .map(|d| {
            let s = short(d);
            let label = if uses[&s] > 1 { d.to_string() } else { s };
            (d.clone(), label)
        })
        .collect()
}

pub(crate) fn device_json(d: &DeviceFingerprint) -> Value {
    json!({
        "name": d.name,
        "arch": d.arch,
        "sm_count": d.sm_count,
        "driver": d.driver,
        "toolchain": d.toolchain,
        "simulated": d.simulated,
    })
}

/// `gemm@b777e358b6a64b7a`, with `(stale)` / `(unknown)` when it is not this build's version.
fn template_cell(t: &tessera_cache::TemplateKey) -> String {
    match template_status(t) {
        "current" => t.to_string(),
        other => format!("{t} ({other})"),
    }
}

/// `12 results (10 ok, 2 compile_error), 3 winners, 1 device, 1 template version, 3 problems`.
fn summary_line(s: &CacheSummary) -> String {
    let by_status: Vec<String> = s
        .results_by_status
        .iter()
        .map(|(st, n)| format!("{n} {st}"))
        .collect();
    let statuses = if by_status.is_empty() {
        String::new()
    } else {
        format!(" ({})", by_status.join(", "))
    };
    format!(
        "{}{statuses}, {}, {}, {}, {} in {}",
        count(s.results, "result"),
        count(s.winners, "winner"),
        count(s.devices, "device"),
        count(s.templates, "template version"),
        count(s.problems, "problem"),
        s.path.display()
    )
}

fn summary_json(s: &CacheSummary) -> Value {
    let by_status: serde_json::Map<String, Value> = s
        .results_by_status
        .iter()
        .map(|(st, n)| (st.as_str().to_string(), json!(n)))
        .collect();
    json!({
        "path": s.path.display().to_string(),
        "schema_version": s.schema_version,
        "results": s.results,
        "results_by_status": by_status,
        "winners": s.winners,
        "devices": s.devices,
        "templates": s.templates,
        "problems": s.problems,
    })
}

/// How `cache ls` lays out its table, widest first: the first that fits the terminal is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LsLayout {
    /// `2025-06-01T12:00:00Z` (else `2025-06-01 12:00`).
    full_time: bool,
    origin: bool,
    measured_at: bool,
    /// A DEVICE column (else one section per device, under its name).
    device_column: bool,
    /// A TEMPLATE column (else one section per device and template version, and problems
    /// without their op's name).
    template_column: bool,
    /// The kernel name on a line of its own under its row (else a KERNEL column).
    kernel_below: bool,
}

impl LsLayout {
    const ALL: [LsLayout; 6] = [
        LsLayout {
            full_time: true,
            origin: true,
            measured_at: true,
            device_column: true,
            template_column: true,
            kernel_below: false,
        },
        LsLayout {
            full_time: false,
            origin: false,
            measured_at: true,
            device_column: true,
            template_column: true,
            kernel_below: false,
        },
        LsLayout {
            full_time: false,
            origin: false,
            measured_at: false,
            device_column: true,
            template_column: true,
            kernel_below: false,
        },
        LsLayout {
            full_time: false,
            origin: false,
            measured_at: false,
            device_column: false,
            template_column: true,
            kernel_below: false,
        },
        LsLayout {
            full_time: false,
            origin: false,
            measured_at: false,
            device_column: false,
            template_column: false,
            kernel_below: false,
        },
        LsLayout {
            full_time: false,
            origin: false,
            measured_at: false,
            device_column: false,
            template_column: false,
            kernel_below: true,
        },
    ];
}

/// The `cache ls` table of `winners` (already sorted) in one layout.
fn ls_render<'a>(
    layout: &LsLayout,
    winners: &[&'a WinnerRow],
    labels: &HashMap<DeviceFingerprint, String>,
    result_of: &dyn Fn(&WinnerRow) -> Option<&'a ResultRow>,
) -> String {
    let mut columns = Vec::new();
    if layout.device_column {
        columns.push(("DEVICE", false));
    }
    if layout.template_column {
        columns.push(("TEMPLATE", false));
    }
    columns.push(("PROBLEM", false));
    if !layout.kernel_below {
        columns.push(("KERNEL", false));
    }
    columns.extend([("MEDIAN ms", true), ("THROUGHPUT", true)]);
    if layout.measured_at {
        columns.push(("MEASURED AT", false));
    }
    if layout.origin {
        columns.push(("ORIGIN", false));
    }
    let row = |w: &WinnerRow| {
        let mut cells = Vec::new();
        if layout.device_column {
            cells.push(labels[&w.device].clone());
        }
        if layout.template_column {
            cells.push(template_cell(&w.template));
            cells.push(w.problem.key.clone());
        } else {
            let key = &w.problem.key;
            cells.push(
                key.strip_prefix(&format!("{} ", w.problem.op))
                    .unwrap_or(key)
                    .to_string(),
            );
        }
        if !layout.kernel_below {
            cells.push(w.kernel_name.clone());
        }
        cells.extend([
            ms(w.median_ms),
            table::throughput(result_of(w).and_then(|r| r.throughput.as_ref())),
        ]);
        if layout.measured_at {
            let at = w.provenance.measured_at.to_string();
            cells.push(if layout.full_time {
                at
            } else {
                at.get(..16).map_or(at.clone(), |s| s.replace('T', " "))
            });
        }
        if layout.origin {
            cells.push(format!(
                "{} ({})",
                w.provenance.origin_host, w.provenance.tool_version
            ));
        }
        cells
    };
    // Sections: one per device (and per template version when it has no column).
    let heading = |w: &WinnerRow| {
        let mut h = String::new();
        if !layout.device_column {
            h.push_str(&labels[&w.device]);
        }
        if !layout.template_column {
            h.push_str(": ");
            h.push_str(&template_cell(&w.template));
        }
        h
    };
    let mut out = String::new();
    let mut i = 0;
    while i < winners.len() {
        let h = heading(winners[i]);
        let mut t = Table::new(&columns);
        let mut kernels = Vec::new();
        while i < winners.len() && heading(winners[i]) == h {
            t.push(row(winners[i]));
            kernels.push(&winners[i].kernel_name);
            i += 1;
        }
        let indent = if h.is_empty() { "" } else { "  " };
        if !h.is_empty() {
            out.push_str(&h);
            out.push('\n');
        }
        let rendered = t.render(indent);
        if !layout.kernel_below {
            out.push_str(&rendered);
            continue;
        }
        // header, then each row followed by its kernel, indented one step further
        let mut lines = rendered.lines();
        if let Some(header) = lines.next() {
            out.push_str(header);
            out.push('\n');
        }
        for (line, kernel) in lines.zip(kernels) {
            out.push_str(&format!("{line}\n{indent}  {kernel}\n"));
        }
    }
    out
}

/// The result row behind each winner (for its throughput), by (key, kernel).
fn winner_results(cache: &Cache) -> anyhow::Result<HashMap<(String, String), ResultRow>> {
    let mut out = HashMap::new();
    for e in cache.why("").map_err(cache_error)? {
        let Some(w) = &e.winner else { continue };
        if let Some(r) = e
            .candidates
            .into_iter()
            .find(|r| r.kernel_name == w.kernel_name)
        {
            out.insert((e.key.to_string(), w.kernel_name.clone()), r);
        }
    }
    Ok(out)
}

pub fn ls(cache: &Cache, json_out: bool, wide: bool) -> anyhow::Result<()> {
    let winners = cache.list_winners().map_err(cache_error)?;
    let behind = winner_results(cache)?;
    let summary = cache.summary().map_err(cache_error)?;
    let result_of = |w: &WinnerRow| behind.get(&(w.key().to_string(), w.kernel_name.clone()));
    if json_out {
        let rows: Vec<Value> = winners
            .iter()
            .map(|w| {
                json!({
                    "device": device_json(&w.device),
                    "template": {
                        "name": w.template.name,
                        "source_hash": w.template.source_hash,
                        "status": template_status(&w.template),
                    },
                    "problem_key": w.problem.key,
                    "kernel": w.kernel_name,
                    "config": w.config,
                    "median_ms": w.median_ms,
                    "throughput": table::throughput_json(result_of(w).and_then(|r| r.throughput.as_ref())),
                    "measured_at": w.provenance.measured_at.to_string(),
                    "origin_host": w.provenance.origin_host,
                    "tool_version": w.provenance.tool_version,
                })
            })
            .collect();
        let out = json!({"winners": rows, "summary": summary_json(&summary)});
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let labels = device_labels(winners.iter().map(|w| &w.device));
    let mut winners: Vec<&WinnerRow> = winners.iter().collect();
    winners.sort_by_cached_key(|w| {
        (
            labels[&w.device].clone(),
            w.template.name.clone(),
            w.template.source_hash.clone(),
            table::natural(&w.problem.key),
            w.kernel_name.clone(),
        )
    });
    if winners.is_empty() {
        println!("no winners yet");
    } else {
        let limit = if wide { None } else { table::terminal_width() };
        let layout = LsLayout::ALL
            .iter()
            .copied()
            .find(|l| {
                let widest = ls_render(l, &winners, &labels, &result_of)
                    .lines()
                    .map(|line| line.chars().count())
                    .max()
                    .unwrap_or(0);
                limit.is_none_or(|w| widest <= w)
            })
            .unwrap_or(LsLayout::ALL[LsLayout::ALL.len() - 1]);
        print!("{}", ls_render(&layout, &winners, &labels, &result_of));
        if layout != LsLayout::ALL[0] {
            println!(
                "(narrowed to fit {} columns; --wide or --json shows every column)",
                limit.unwrap_or(0)
            );
        }
    }
    let line = summary_line(&summary);
    match table::terminal_width().filter(|_| !wide) {
        Some(width) => print!("{}", table::wrap_list(&line, width)),
        None => println!("{line}"),
    }
    Ok(())
}

/// Candidates in the order a person reads them: eligible (`ok`, timed) fastest first, then
/// the others by status and kernel name.
fn ranked(candidates: &[ResultRow]) -> Vec<&ResultRow> {
    let mut v: Vec<&ResultRow> = candidates.iter().collect();
    v.sort_by(|a, b| {
        let ma = a.timing.filter(|_| a.is_eligible()).map(|t| t.median_ms);
        let mb = b.timing.filter(|_| b.is_eligible()).map(|t| t.median_ms);
        match (ma, mb) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.status.cmp(&b.status),
        }
        .then_with(|| a.kernel_name.cmp(&b.kernel_name))
    });
    v
}

/// One sentence on why the stored winner won (or why there is none).
fn verdict(e: &Explanation) -> String {
    let eligible: Vec<&ResultRow> = e.candidates.iter().filter(|r| r.is_eligible()).collect();
    let fastest = ranked(&e.candidates)
        .into_iter()
        .find(|r| r.is_eligible())
        .and_then(|r| r.timing.map(|t| (r, t.median_ms)));
    let rejected = e.candidates.len() - eligible.len();
    let pruned = e
        .candidates
        .iter()
        .filter(|r| r.status == Status::Pruned)
        .count();
    let Some(w) = &e.winner else {
        return match fastest {
            Some((r, m)) => format!(
                "no winner recorded; the fastest verified candidate is {} ({} ms)",
                r.kernel_name,
                ms(m)
            ),
            // Pruned candidates were never tried: they did not fail anything.
            None if pruned > 0 => format!(
                "no winner: none of the {} tried passed verification and timing; {pruned} \
                 more were pruned before compiling by the cost model (tune with --no-prune \
                 to measure them)",
                count((e.candidates.len() - pruned) as u64, "candidate")
            ),
            None => format!(
                "no winner: none of the {} candidates passed verification and timing",
                e.candidates.len()
            ),
        };
    };
    let mut s = match fastest {
        Some((r, _)) if r.kernel_name == w.kernel_name => format!(
            "{} won: fastest of {} verified candidates",
            w.kernel_name,
            eligible.len()
        ),
        Some((r, m)) if w.median_ms <= m * (1.0 + NEAR_TIE) => format!(
            "{} won: within {:.1}% of the fastest ({}, {} ms), and near-ties go to the \
             smallest kernel name",
            w.kernel_name,
            NEAR_TIE * 100.0,
            r.kernel_name,
            ms(m)
        ),
        Some((r, m)) => format!(
            "{} is the stored winner, but {} is faster ({} ms vs {} ms); the winner was \
             recorded before that result (re-tune or import to recompute)",
            w.kernel_name,
            r.kernel_name,
            ms(m),
            ms(w.median_ms)
        ),
        None => format!(
            "{} is the stored winner ({} ms); no verified result for this key is stored \
             beside it",
            w.kernel_name,
            ms(w.median_ms)
        ),
    };
    if rejected > 0 {
        s.push_str(&format!(
            "; {} not eligible (below)",
            count(rejected as u64, "candidate")
        ));
    }
    if pruned > 0 {
        s.push_str(&format!(
            ", of them {pruned} pruned before compiling by the cost model (tune with --no-prune to measure them)"
        ));
    }
    s
}

fn candidate_json(r: &ResultRow, winner: Option<&WinnerRow>) -> Value {
    json!({
        "kernel": r.kernel_name,
        "config": r.config,
        "status": r.status.as_str(),
        "reason": r.reason,
        "winner": winner.is_some_and(|w| w.kernel_name == r.kernel_name),
        "median_ms": r.timing.map(|t| t.median_ms),
        "p10_ms": r.timing.map(|t| t.p10_ms),
        "p90_ms": r.timing.map(|t| t.p90_ms),
        "samples": r.timing.map(|t| t.samples),
        "throughput": table::throughput_json(r.throughput.as_ref()),
        "max_rel_error": r.max_rel_error,
        "compile_s": r.compile_s,
        "measured_at": r.provenance.measured_at.to_string(),
        "origin_host": r.provenance.origin_host,
        "tool_version": r.provenance.tool_version,
    })
}

pub fn why(cache: &Cache, filter: &str, json_out: bool) -> anyhow::Result<()> {
    if filter.trim().is_empty() {
        return Err(usage(
            "`tessera cache why` needs a filter: a part of a problem key (e.g. `m=384 n=768`) \
             or an exact kernel name; `tessera cache ls` lists them",
        ));
    }
    let found = cache.why(filter).map_err(cache_error)?;
    if found.is_empty() {
        return Err(usage(format!(
            "nothing in {} matches `{filter}`: no problem key contains it and no kernel is \
             named so; `tessera cache ls` lists the winners",
            cache.path().display()
        )));
    }
    if json_out {
        let out: Vec<Value> = found
            .iter()
            .map(|e| {
                json!({
                    "device": device_json(&e.key.device),
                    "template": {
                        "name": e.key.template.name,
                        "source_hash": e.key.template.source_hash,
                        "status": template_status(&e.key.template),
                    },
                    "problem_key": e.key.problem_key,
                    "winner": e.winner.as_ref().map(|w| json!({
                        "kernel": w.kernel_name,
                        "config": w.config,
                        "median_ms": w.median_ms,
                    })),
                    "policy_choice": e.policy_choice().map(|r| r.kernel_name.clone()),
                    "verdict": verdict(e),
                    "candidates": ranked(&e.candidates)
                        .into_iter()
                        .map(|r| candidate_json(r, e.winner.as_ref()))
                        .collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let mut first = true;
    for e in &found {
        if !first {
            println!();
        }
        first = false;
        println!("{}", e.key.problem_key);
        println!("  device:   {}", e.key.device);
        println!("  template: {}", template_cell(&e.key.template));
        println!("  {}", verdict(e));
        let winner = e.winner.as_ref();
        let best = winner.map(|w| w.median_ms);
        let mut t = Table::new(&[
            ("", false),
            ("KERNEL", false),
            ("STATUS", false),
            ("MEDIAN ms", true),
            ("P10", true),
            ("P90", true),
            ("VS WIN", true),
            ("THROUGHPUT", true),
            ("REL ERR", true),
            ("COMPILE s", true),
            ("REASON", false),
        ]);
        for r in ranked(&e.candidates) {
            let is_winner = winner.is_some_and(|w| w.kernel_name == r.kernel_name);
            let timing = r.timing;
            let vs = match (timing, best) {
                (Some(t), Some(b)) => format!("{:.2}x", t.median_ms / b),
                _ => "-".into(),
            };
            t.push(vec![
                if is_winner { "*".into() } else { String::new() },
                r.kernel_name.clone(),
                r.status.to_string(),
                opt_ms(timing.map(|t| t.median_ms)),
                opt_ms(timing.map(|t| t.p10_ms)),
                opt_ms(timing.map(|t| t.p90_ms)),
                vs,
                table::throughput(r.throughput.as_ref()),
                r.max_rel_error
                    .map_or_else(|| "-".into(), |x| format!("{x:.1e}")),
                r.compile_s.map_or_else(|| "-".into(), table::seconds),
                table::one_line(&r.reason, 100),
            ]);
        }
        if let Some(w) = winner {
            if !e.candidates.iter().any(|r| r.kernel_name == w.kernel_name) {
                t.push(vec![
                    "*".into(),
                    w.kernel_name.clone(),
                    "winner only".into(),
                    ms(w.median_ms),
                    "-".into(),
                    "-".into(),
                    "1.00x".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "no result row stored for it".into(),
                ]);
            }
        }
        print!("{}", t.render("  "));
    }
    let mut statuses: BTreeMap<Status, usize> = BTreeMap::new();
    for r in found.iter().flat_map(|e| &e.candidates) {
        *statuses.entry(r.status).or_default() += 1;
    }
    let parts: Vec<String> = statuses.iter().map(|(s, n)| format!("{n} {s}")).collect();
    println!();
    println!(
        "{} matching `{filter}`; {} ({})",
        count(found.len() as u64, "key"),
        count(
            found.iter().map(|e| e.candidates.len() as u64).sum::<u64>(),
            "candidate"
        ),
        parts.join(", ")
    );
    Ok(())
}
