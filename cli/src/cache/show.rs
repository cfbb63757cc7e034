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

pub fn ls(cache: &Cache, json_out: bool) -> anyhow::Result<()> {
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
    let mut t = Table::new(&[
        ("DEVICE", false),
        ("TEMPLATE", false),
        ("PROBLEM", false),
        ("KERNEL", false),
        ("MEDIAN ms", true),
        ("THROUGHPUT", true),
        ("MEASURED AT", false),
        ("ORIGIN", false),
    ]);
    for w in &winners {
        t.push(vec![
            labels[&w.device].clone(),
            template_cell(&w.template),
            w.problem.key.clone(),
            w.kernel_name.clone(),
            ms(w.median_ms),
            table::throughput(result_of(w).and_then(|r| r.throughput.as_ref())),
            w.provenance.measured_at.to_string(),
            format!(
                "{} ({})",
                w.provenance.origin_host, w.provenance.tool_version
            ),
        ]);
    }
    if t.is_empty() {
        println!("no winners yet");
    } else {
        print!("{}", t.render(""));
    }
    println!("{}", summary_line(&summary));
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
    let Some(w) = &e.winner else {
        return match fastest {
            Some((r, m)) => format!(
                "no winner recorded; the fastest verified candidate is {} ({} ms)",
                r.kernel_name,
                ms(m)
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
                r.compile_s
                    .map_or_else(|| "-".into(), |x| format!("{x:.2}")),
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
