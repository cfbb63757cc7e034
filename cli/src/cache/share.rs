//! `tessera cache export | import | merge | diff`.

use std::path::Path;

use serde_json::{json, Value};
use tessera_cache::{
    Cache, CacheError, Candidate, DiffReport, ImportPolicy, ImportSummary, Incoming, SkipLog,
    WinnerChange,
};

use super::show::{device_json, device_labels};
use super::table::{count, ms, Table};
use super::{cache_error, same_file, CandidateChecker};
use crate::usage::usage;

/// How many skipped or replaced rows the text report describes (all are counted; `--json`
/// lists every one).
const SKIPS_SHOWN: usize = 10;

/// Prefixes an error about a file the user named with what was being done.
fn doing(what: String) -> impl FnOnce(CacheError) -> anyhow::Error {
    move |e| match e {
        // Already names the file and says it was not overwritten.
        CacheError::OutputExists { .. } => cache_error(e),
        e => {
            let wrapped = cache_error(e);
            if wrapped.downcast_ref::<crate::usage::UsageError>().is_some() {
                usage(format!("{what}: {wrapped}"))
            } else {
                wrapped.context(what)
            }
        }
    }
}

pub fn export(cache: &Cache, out: &Path, device: Option<String>) -> anyhow::Result<()> {
    if std::fs::symlink_metadata(out).is_ok() {
        return Err(usage(format!(
            "{} already exists; it was not overwritten (choose a new --out)",
            out.display()
        )));
    }
    let needle = device.as_ref().map(|d| d.to_lowercase());
    let matches = |d: &tessera_cache::DeviceFingerprint| {
        needle
            .as_ref()
            .is_none_or(|n| d.to_string().to_lowercase().contains(n.as_str()))
    };
    if let Some(d) = &device {
        let devices = cache.devices().map_err(cache_error)?;
        if !devices.iter().any(matches) {
            let known: Vec<String> = devices.iter().map(|d| format!("  {d}")).collect();
            return Err(usage(if known.is_empty() {
                format!("no device matches `{d}`: the cache holds no devices")
            } else {
                format!(
                    "no device matches `{d}`; the cache holds:\n{}",
                    known.join("\n")
                )
            }));
        }
    }
    let filter: Option<&dyn Fn(&tessera_cache::DeviceFingerprint) -> bool> = match device {
        Some(_) => Some(&matches),
        None => None,
    };
    let s = cache
        .export(out, filter)
        .map_err(doing(format!("cannot export to {}", out.display())))?;
    println!(
        "exported {}, {} of {} from {} to {}",
        count(s.results as u64, "result"),
        count(s.winners as u64, "winner"),
        count(s.devices as u64, "device"),
        cache.path().display(),
        s.path.display()
    );
    Ok(())
}

/// The skipped rows of an untrusted file: the first reasons and how many more.
fn skip_lines(log: &SkipLog, indent: &str) -> String {
    let mut s = String::new();
    for k in log.rows.iter().take(SKIPS_SHOWN) {
        let kernel = k
            .kernel_name
            .as_deref()
            .map_or_else(String::new, |n| format!(" ({n})"));
        s.push_str(&format!(
            "{indent}{} row {}{kernel}: {}\n",
            k.table, k.rowid, k.reason
        ));
    }
    if log.count() > SKIPS_SHOWN {
        s.push_str(&format!(
            "{indent}... and {} more (--json lists every one)\n",
            log.count() - SKIPS_SHOWN
        ));
    }
    s
}

fn import_report(s: &ImportSummary) -> String {
    let mut out = format!(
        "{}: results {} added, {} replaced, {} kept (the local row is as well or better \
         supported); winners {} offered, {} changed; {} skipped\n",
        s.source.display(),
        s.results_added,
        s.results_replaced(),
        s.results_kept_local,
        s.winners_offered,
        s.winners_changed,
        count(s.skipped.count() as u64, "invalid row"),
    );
    for r in s.replaced.iter().take(SKIPS_SHOWN) {
        out.push_str(&format!(
            "  replaced {} for {}: {} ({}) -> {} ({})\n",
            r.old.kernel_name,
            r.old.problem.key,
            r.old.provenance.origin_host,
            r.old.timing.map_or_else(|| "-".into(), |t| ms(t.median_ms)),
            r.new.provenance.origin_host,
            r.new.timing.map_or_else(|| "-".into(), |t| ms(t.median_ms)),
        ));
    }
    if s.replaced.len() > SKIPS_SHOWN {
        out.push_str(&format!(
            "  ... and {} more replaced (--json lists every one)\n",
            s.replaced.len() - SKIPS_SHOWN
        ));
    }
    out.push_str(&skip_lines(&s.skipped, "  skipped "));
    out
}

fn skipped_json(l: &SkipLog) -> Value {
    json!({
        "count": l.count(),
        "rows": l.rows.iter().map(|k| json!({
            "table": k.table,
            "rowid": k.rowid,
            "kernel": k.kernel_name,
            "kind": k.reason.kind.as_str(),
            "reason": k.reason.detail,
        })).collect::<Vec<_>>(),
    })
}

fn import_json(s: &ImportSummary) -> Value {
    let row = |r: &tessera_cache::ResultRow| {
        json!({
            "kernel": r.kernel_name,
            "status": r.status.as_str(),
            "median_ms": r.timing.map(|t| t.median_ms),
            "samples": r.timing.map(|t| t.samples),
            "origin_host": r.provenance.origin_host,
            "measured_at": r.provenance.measured_at.to_string(),
        })
    };
    json!({
        "source": s.source.display().to_string(),
        "schema_version": s.schema_version,
        "results_added": s.results_added,
        "results_replaced": s.results_replaced(),
        "results_kept_local": s.results_kept_local,
        "winners_offered": s.winners_offered,
        "winners_changed": s.winners_changed,
        "replaced": s.replaced.iter().map(|r| json!({
            "device": device_json(&r.old.device),
            "template": r.old.template.to_string(),
            "problem_key": r.old.problem.key,
            "old": row(&r.old),
            "new": row(&r.new),
        })).collect::<Vec<_>>(),
        "refused": skipped_json(&s.skipped),
    })
}

/// `tessera cache import`: the file is read and every row checked before the cache is opened
/// (or created), then the rows are written in one transaction. A failure at any point leaves
/// the cache as it was, and nothing is ever removed: another process (a `tune`) may hold the
/// cache file, even one this import created.
pub fn import(
    cache_path: &Path,
    file: &Path,
    replace_local: bool,
    json_out: bool,
) -> anyhow::Result<()> {
    if same_file(cache_path, file) {
        return Err(usage(format!(
            "{} is the cache itself; import another file (or choose the cache with --cache)",
            file.display()
        )));
    }
    if !file.exists() {
        return Err(usage(format!(
            "cannot import {}: no such file",
            file.display()
        )));
    }
    let checker = CandidateChecker::default();
    let check = |c: &Candidate<'_>| checker.check(c);
    let incoming = Incoming::read(file, Some(&check))
        .map_err(doing(format!("cannot import {}", file.display())))?;
    let cache = Cache::open(cache_path).map_err(doing(format!(
        "cannot open the cache {}",
        cache_path.display()
    )))?;
    let policy = ImportPolicy {
        replace_local,
        ..ImportPolicy::for_host(crate::tune::origin_host())
    };
    let s = cache
        .absorb(incoming, &policy)
        .map_err(doing(format!("cannot import {}", file.display())))?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&import_json(&s))?);
    } else {
        print!(
            "imported into {}\n{}",
            cache.path().display(),
            import_report(&s)
        );
    }
    Ok(())
}

pub fn merge(a: &Path, b: &Path, out: &Path) -> anyhow::Result<()> {
    for input in [a, b] {
        if !input.exists() {
            return Err(usage(format!(
                "cannot merge {}: no such file",
                input.display()
            )));
        }
    }
    if std::fs::symlink_metadata(out).is_ok() {
        return Err(usage(format!(
            "{} already exists; it was not overwritten (choose a new -o)",
            out.display()
        )));
    }
    let checker = CandidateChecker::default();
    let check = |c: &Candidate<'_>| checker.check(c);
    let s = tessera_cache::merge(a, b, out, Some(&check)).map_err(doing(format!(
        "cannot merge {} and {}",
        a.display(),
        b.display()
    )))?;
    print!(
        "merged into {}: {}, {}\n{}{}",
        s.out.display(),
        count(s.results, "result"),
        count(s.winners, "winner"),
        import_report(&s.from_a),
        import_report(&s.from_b)
    );
    Ok(())
}

fn change_json(c: &WinnerChange) -> Value {
    let w = |w: &tessera_cache::WinnerRow| {
        json!({
            "kernel": w.kernel_name,
            "config": w.config,
            "median_ms": w.median_ms,
            "measured_at": w.provenance.measured_at.to_string(),
            "origin_host": w.provenance.origin_host,
        })
    };
    match c {
        WinnerChange::Changed { old, new } => {
            json!({"kind": "changed", "old": w(old), "new": w(new)})
        }
        WinnerChange::OnlyInOld(o) => json!({"kind": "only_in_a", "old": w(o), "new": null}),
        WinnerChange::OnlyInNew(n) => json!({"kind": "only_in_b", "old": null, "new": w(n)}),
    }
}

fn diff_json(r: &DiffReport) -> Value {
    let skipped = skipped_json;
    json!({
        "changes": r.changes.iter().map(|d| {
            let mut v = change_json(&d.change);
            v["device"] = device_json(&d.key.device);
            v["template"] = json!({"name": d.key.template.name, "source_hash": d.key.template.source_hash});
            v["problem_key"] = json!(d.key.problem_key);
            v["speedup"] = json!(d.speedup());
            v["kernel_changed"] = json!(d.kernel_changed());
            v
        }).collect::<Vec<_>>(),
        "unchanged": r.unchanged,
        "skipped_a": skipped(&r.skipped_old),
        "skipped_b": skipped(&r.skipped_new),
    })
}

pub fn diff(a: &Path, b: &Path, json_out: bool) -> anyhow::Result<()> {
    for input in [a, b] {
        if !input.exists() {
            return Err(usage(format!(
                "cannot diff {}: no such file",
                input.display()
            )));
        }
    }
    let r = tessera_cache::diff(a, b).map_err(doing(format!(
        "cannot diff {} and {}",
        a.display(),
        b.display()
    )))?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&diff_json(&r))?);
        return Ok(());
    }
    let labels = device_labels(r.changes.iter().map(|d| &d.key.device));
    let (mut changed, mut only_a, mut only_b) = (0usize, 0usize, 0usize);
    let mut t = Table::new(&[
        ("", false),
        ("DEVICE", false),
        ("TEMPLATE", false),
        ("PROBLEM", false),
        ("A KERNEL", false),
        ("A ms", true),
        ("B KERNEL", false),
        ("B ms", true),
        ("A/B", true),
    ]);
    for d in &r.changes {
        let (mark, old, new) = match &d.change {
            WinnerChange::Changed { old, new } => {
                changed += 1;
                ("~", Some(old), Some(new))
            }
            WinnerChange::OnlyInOld(o) => {
                only_a += 1;
                ("-", Some(o), None)
            }
            WinnerChange::OnlyInNew(n) => {
                only_b += 1;
                ("+", None, Some(n))
            }
        };
        let kernel = |w: Option<&tessera_cache::WinnerRow>| {
            w.map_or_else(|| "-".into(), |w| w.kernel_name.clone())
        };
        let new_kernel = match (old, new) {
            (Some(o), Some(n)) if o.kernel_name == n.kernel_name => "(same kernel)".into(),
            _ => kernel(new),
        };
        t.push(vec![
            mark.into(),
            labels[&d.key.device].clone(),
            d.key.template.to_string(),
            d.key.problem_key.clone(),
            kernel(old),
            old.map_or_else(|| "-".into(), |w| ms(w.median_ms)),
            new_kernel,
            new.map_or_else(|| "-".into(), |w| ms(w.median_ms)),
            d.speedup()
                .map_or_else(|| "-".into(), |s| format!("{s:.2}x")),
        ]);
    }
    if t.is_empty() {
        println!(
            "the winners of {} and {} are the same",
            a.display(),
            b.display()
        );
    } else {
        println!("A = {}, B = {}", a.display(), b.display());
        print!("{}", t.render(""));
    }
    println!(
        "{changed} changed (~), {only_a} only in A (-), {only_b} only in B (+), {} unchanged",
        r.unchanged
    );
    for (name, log) in [("A", &r.skipped_old), ("B", &r.skipped_new)] {
        if log.count() > 0 {
            print!(
                "skipped {} of {name}:\n{}",
                count(log.count() as u64, "invalid winner row"),
                skip_lines(log, "  ")
            );
        }
    }
    Ok(())
}
