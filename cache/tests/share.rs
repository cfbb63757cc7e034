//! Export, import (of untrusted files), merge and diff.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use rusqlite::params;
use tessera_cache::schema::{APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION};
use tessera_cache::{
    diff, merge, Cache, CacheError, ImportPolicy, Refusal, RefusalKind, Status, WinnerChange,
    WinnerRow,
};

use common::{build, failed, h100, result, sim};

fn sample_rows() -> Vec<tessera_cache::ResultRow> {
    vec![
        result(&h100(), 384, "k_a", 1.0, 100),
        result(&h100(), 384, "k_b", 0.8, 100),
        failed(
            &h100(),
            384,
            "k_c",
            Status::CompileError,
            "ptxas: too much shared memory",
        ),
        result(&h100(), 768, "k_a", 2.0, 50),
        result(&sim(), 384, "k_a", 1.5, 10),
    ]
}

#[test]
fn export_then_import_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let src = build(&dir.path().join("src.db"), &sample_rows());
    let out = dir.path().join("shared/export.db");
    let s = src.export(&out, None).unwrap();
    assert_eq!((s.devices, s.results, s.winners), (2, 5, 3));
    let dst = Cache::open(dir.path().join("dst.db")).unwrap();
    let i = dst.import(&out, None, &ImportPolicy::default()).unwrap();
    assert_eq!(
        (i.results_added, i.results_replaced(), i.skipped.count()),
        (5, 0, 0)
    );
    assert_eq!(i.schema_version, SCHEMA_VERSION);
    assert_eq!(dst.why("").unwrap(), src.why("").unwrap());
    // Importing the same file again changes nothing.
    let again = dst.import(&out, None, &ImportPolicy::default()).unwrap();
    assert_eq!(
        (
            again.results_added,
            again.results_replaced(),
            again.results_kept_local
        ),
        (0, 0, 5)
    );
    assert_eq!(again.winners_changed, 0);
}

#[test]
fn export_filters_by_device_and_is_one_self_contained_file() {
    let dir = tempfile::tempdir().unwrap();
    let src = build(&dir.path().join("src.db"), &sample_rows());
    let out = dir.path().join("sim.db");
    let s = src
        .export(
            &out,
            Some(&|d: &tessera_cache::DeviceFingerprint| d.simulated),
        )
        .unwrap();
    assert_eq!((s.devices, s.results, s.winners), (1, 1, 1));
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("sim.db-") || n.starts_with(".sim.db")),
        "{names:?}"
    );
    let conn = rusqlite::Connection::open(&out).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "delete");
    // Parameters and measurements only: these are every column there is.
    let mut cols = BTreeSet::new();
    for t in ["devices", "templates", "problems", "results", "winners"] {
        let mut st = conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{t}')"))
            .unwrap();
        for c in st.query_map([], |r| r.get::<_, String>(0)).unwrap() {
            cols.insert(format!("{t}.{}", c.unwrap()));
        }
    }
    let expected: BTreeSet<String> = [
        "devices.id",
        "devices.name",
        "devices.arch",
        "devices.sm_count",
        "devices.driver",
        "devices.toolchain",
        "devices.simulated",
        "templates.name",
        "templates.source_hash",
        "problems.key",
        "problems.op",
        "problems.json",
        "results.device_id",
        "results.template_name",
        "results.template_hash",
        "results.problem_key",
        "results.kernel_name",
        "results.config",
        "results.config_json",
        "results.guards_json",
        "results.status",
        "results.reason",
        "results.median_ms",
        "results.p10_ms",
        "results.p90_ms",
        "results.samples",
        "results.throughput",
        "results.throughput_unit",
        "results.max_rel_error",
        "results.compile_s",
        "results.measured_at",
        "results.origin_host",
        "results.tool_version",
        "winners.device_id",
        "winners.template_name",
        "winners.template_hash",
        "winners.problem_key",
        "winners.kernel_name",
        "winners.config",
        "winners.config_json",
        "winners.median_ms",
        "winners.guards_json",
        "winners.measured_at",
        "winners.origin_host",
        "winners.tool_version",
    ]
    .map(String::from)
    .into();
    assert_eq!(cols, expected);
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    // the five of the data and `claims` (schema 3), which an export leaves empty
    assert_eq!(tables, 6);
    let claims: i64 = conn
        .query_row("SELECT count(*) FROM claims", [], |r| r.get(0))
        .unwrap();
    assert_eq!(claims, 0);
}

#[test]
fn outputs_are_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.db");
    let src = build(&a, &sample_rows());
    let out = dir.path().join("taken.db");
    fs::write(&out, b"precious").unwrap();
    assert!(matches!(
        src.export(&out, None),
        Err(CacheError::OutputExists { .. })
    ));
    assert!(matches!(
        merge(&a, &a, &out, None),
        Err(CacheError::OutputExists { .. })
    ));
    assert!(matches!(
        merge(&a, &a, &a, None),
        Err(CacheError::OutputExists { .. })
    ));
    assert_eq!(fs::read(&out).unwrap(), b"precious");
}

/// A file an attacker wrote: the right version and application id, but loose (non-STRICT)
/// tables, so any value of any type can be in any column.
fn hostile_file(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    let sql = MIGRATIONS[0]
        .sql
        .replace(") STRICT, WITHOUT ROWID;", ") WITHOUT ROWID;")
        .replace(") STRICT;", ");");
    conn.execute_batch(&sql).unwrap();
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)
        .unwrap();
    conn.pragma_update(None, "application_id", APPLICATION_ID)
        .unwrap();
    conn.pragma_update(None, "ignore_check_constraints", true)
        .unwrap();
    conn.pragma_update(None, "foreign_keys", false).unwrap();
    conn
}

const INSERT_RESULT: &str = "INSERT INTO results (device_id, template_name, template_hash, problem_key, \
    kernel_name, config, config_json, guards_json, status, reason, median_ms, p10_ms, p90_ms, samples, \
    throughput, throughput_unit, max_rel_error, compile_s, measured_at, origin_host, tool_version) \
    VALUES (?1, 'gemm', '3f2a9c', ?2, ?3, ?4, '{}', '{}', ?5, ?6, ?7, ?8, ?9, ?10, NULL, NULL, 1e-3, NULL, ?11, 'evil-host', 'tessera 0.1.0')";

#[test]
fn hostile_rows_are_skipped_with_reasons_and_good_rows_taken() {
    let dir = tempfile::tempdir().unwrap();
    let evil = dir.path().join("evil.db");
    {
        let conn = hostile_file(&evil);
        let dev = h100();
        conn.execute(
            "INSERT INTO devices VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                "whatever-id",
                dev.name,
                dev.arch,
                dev.sm_count,
                dev.driver,
                dev.toolchain,
                0
            ],
        )
        .unwrap();
        conn.execute("INSERT INTO templates VALUES ('gemm', '3f2a9c')", [])
            .unwrap();
        let p = common::problem(384);
        conn.execute(
            "INSERT INTO problems VALUES (?1, ?2, ?3)",
            params![p.key, p.op, p.json],
        )
        .unwrap();
        let at = "2025-06-01T12:00:00Z";
        let ins = |kernel: &str,
                   config: &dyn rusqlite::ToSql,
                   status: &str,
                   reason: &str,
                   m: Option<f64>,
                   p10: Option<f64>,
                   p90: Option<f64>,
                   n: i64,
                   at: &str| {
            conn.execute(
                INSERT_RESULT,
                params![
                    "whatever-id",
                    p.key,
                    kernel,
                    config,
                    status,
                    reason,
                    m,
                    p10,
                    p90,
                    n,
                    at
                ],
            )
            .unwrap();
        };
        ins(
            "k_good",
            &"BM=128",
            "ok",
            "",
            Some(1.0),
            Some(0.9),
            Some(1.1),
            10,
            at,
        );
        ins(
            "k_good_fail",
            &"BM=64",
            "timeout",
            "over 2 s",
            None,
            None,
            None,
            0,
            at,
        );
        ins(
            "k_status",
            &"BM=128",
            "pwned",
            "",
            Some(1.0),
            Some(0.9),
            Some(1.1),
            10,
            at,
        );
        ins(
            "k_negative",
            &"BM=128",
            "ok",
            "",
            Some(-1.0),
            Some(-2.0),
            Some(1.1),
            10,
            at,
        );
        ins(
            "k_order",
            &"BM=128",
            "ok",
            "",
            Some(1.0),
            Some(1.5),
            Some(1.1),
            10,
            at,
        );
        ins(
            "k_inf",
            &"BM=128",
            "ok",
            "",
            Some(f64::INFINITY),
            Some(0.9),
            Some(f64::INFINITY),
            10,
            at,
        );
        ins("k_no_timing", &"BM=128", "ok", "", None, None, None, 0, at);
        ins(
            "k; rm -rf ~",
            &"BM=128",
            "ok",
            "",
            Some(1.0),
            Some(0.9),
            Some(1.1),
            10,
            at,
        );
        ins(
            "k_config",
            &"BM=128;$(reboot)",
            "ok",
            "",
            Some(1.0),
            Some(0.9),
            Some(1.1),
            10,
            at,
        );
        ins(
            "k_blob",
            &vec![0u8, 159, 146, 150],
            "ok",
            "",
            Some(1.0),
            Some(0.9),
            Some(1.1),
            10,
            at,
        );
        ins(
            "k_reason",
            &"BM=128",
            "timeout",
            &"x".repeat(100_000),
            None,
            None,
            None,
            0,
            at,
        );
        ins(
            "k_ctrl",
            &"BM=128",
            "timeout",
            "bell\u{7}",
            None,
            None,
            None,
            0,
            at,
        );
        ins(
            "k_date",
            &"BM=128",
            "ok",
            "",
            Some(1.0),
            Some(0.9),
            Some(1.1),
            10,
            "yesterday",
        );
        ins(
            "k_samples",
            &"BM=128",
            "ok",
            "",
            Some(1.0),
            Some(0.9),
            Some(1.1),
            -5,
            at,
        );
        ins(
            &"k".repeat(10_000),
            &"BM=128",
            "ok",
            "",
            Some(1.0),
            Some(0.9),
            Some(1.1),
            10,
            at,
        );
        // A row whose device is missing from `devices`.
        conn.execute(
            INSERT_RESULT,
            params![
                "no-such-device",
                p.key,
                "k_orphan",
                "BM=128",
                "ok",
                "",
                1.0,
                0.9,
                1.1,
                10,
                at
            ],
        )
        .unwrap();
        // A text where a number belongs.
        conn.execute(
            INSERT_RESULT,
            params![
                "whatever-id",
                p.key,
                "k_text_num",
                "BM=128",
                "ok",
                "",
                "fast",
                0.9,
                1.1,
                10,
                at
            ],
        )
        .unwrap();
        // A winner pointing at a hostile kernel name.
        conn.execute(
            "INSERT INTO winners VALUES ('whatever-id', 'gemm', '3f2a9c', ?1, 'k`id`', 'BM=128', '{}', 0.1, '{}', ?2, 'evil-host', 'tessera 0.1.0')",
            params![p.key, at],
        )
        .unwrap();
    }
    let dst = Cache::open(dir.path().join("dst.db")).unwrap();
    let s = dst.import(&evil, None, &ImportPolicy::default()).unwrap();
    assert_eq!(s.results_added, 2, "{s:#?}");
    assert_eq!(s.skipped.count(), 16, "{s:#?}");
    let reasons: Vec<String> = s
        .skipped
        .rows
        .iter()
        .map(|k| k.reason.to_string())
        .collect();
    for needle in [
        "status: \"pwned\" is not a known status",
        "timing.median_ms: -1 is negative",
        "need p10 <= median <= p90",
        "inf is not finite",
        "an ok result needs a timing",
        "kernel_name: has ';'",
        "config: has ';'",
        "config: is Blob, not text",
        "reason: is 16385 bytes long",
        "reason: has '\\u{7}'",
        "measured_at",
        "timing.samples",
        "kernel_name: is 10000 bytes long",
        "device.name: is missing",
        "median_ms: is Text, not a number",
        "kernel_name: has '`'",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(needle)),
            "no reason mentions {needle:?}: {reasons:#?}"
        );
    }
    // The winner is recomputed from the good rows; the hostile one is gone.
    let w = dst
        .winner(
            &h100(),
            &result(&h100(), 384, "x", 1.0, 1).template,
            &common::problem(384).key,
        )
        .unwrap()
        .unwrap();
    assert_eq!(w.kernel_name, "k_good");
    // The device id is recomputed from the fingerprint, never taken from the file.
    assert_eq!(dst.devices().unwrap(), vec![h100()]);
}

#[test]
fn structurally_wrong_files_are_refused_as_a_whole() {
    let dir = tempfile::tempdir().unwrap();
    let dst = Cache::open(dir.path().join("dst.db")).unwrap();

    let view = dir.path().join("view.db");
    {
        let conn = hostile_file(&view);
        conn.execute_batch("DROP TABLE results; CREATE VIEW results AS SELECT * FROM winners;")
            .unwrap();
    }
    assert!(matches!(
        dst.import(&view, None, &ImportPolicy::default()),
        Err(CacheError::Incompatible { .. })
    ));

    let missing_col = dir.path().join("missing.db");
    {
        let conn = hostile_file(&missing_col);
        conn.execute_batch("ALTER TABLE results DROP COLUMN reason;")
            .unwrap();
    }
    let e = dst
        .import(&missing_col, None, &ImportPolicy::default())
        .unwrap_err();
    assert!(matches!(e, CacheError::Incompatible { .. }), "{e}");

    let newer = dir.path().join("newer.db");
    hostile_file(&newer)
        .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
        .unwrap();
    assert!(matches!(
        dst.import(&newer, None, &ImportPolicy::default()),
        Err(CacheError::TooNew { .. })
    ));

    let plain = dir.path().join("plain.db");
    rusqlite::Connection::open(&plain)
        .unwrap()
        .execute_batch("CREATE TABLE x (y);")
        .unwrap();
    assert!(matches!(
        dst.import(&plain, None, &ImportPolicy::default()),
        Err(CacheError::Foreign { .. })
    ));

    assert!(matches!(
        dst.import(
            &dir.path().join("absent.db"),
            None,
            &ImportPolicy::default()
        ),
        Err(CacheError::NotFound { .. })
    ));
    assert_eq!(dst.summary().unwrap().results, 0, "nothing was imported");
}

#[test]
fn the_callers_check_can_refuse_configs() {
    let dir = tempfile::tempdir().unwrap();
    let mut odd = result(&h100(), 384, "k_odd", 0.5, 100);
    odd.config = "BM=96".into();
    let a = dir.path().join("a.db");
    drop(build(&a, &[result(&h100(), 384, "k_a", 1.0, 100), odd]));
    let dst = Cache::open(dir.path().join("dst.db")).unwrap();
    let check = |c: &tessera_cache::Candidate<'_>| {
        if c.config.contains("BM=96") {
            Err(Refusal::new(
                RefusalKind::ConfigOutsideSpace,
                format!("{} is not in the space of {}", c.config, c.template.name),
            ))
        } else {
            Ok(())
        }
    };
    let s = dst
        .import(&a, Some(&check), &ImportPolicy::default())
        .unwrap();
    assert_eq!(s.results_added, 1);
    // The result row and the winner row of k_odd are both refused.
    assert_eq!(s.skipped.count(), 2, "{s:#?}");
    assert!(s.skipped.rows[0]
        .reason
        .to_string()
        .contains("config_outside_space: BM=96 is not in the space of gemm"));
    assert_eq!(
        s.skipped.rows[0].reason.kind,
        RefusalKind::ConfigOutsideSpace
    );
    assert_eq!(s.skipped.rows[0].kernel_name.as_deref(), Some("k_odd"));
    let w = dst
        .winner(&h100(), &odd_template(), &common::problem(384).key)
        .unwrap()
        .unwrap();
    assert_eq!(w.kernel_name, "k_a");
}

fn odd_template() -> tessera_cache::TemplateKey {
    result(&h100(), 384, "x", 1.0, 1).template
}

#[test]
fn import_keeps_the_better_supported_measurement_and_recomputes_winners() {
    let dir = tempfile::tempdir().unwrap();
    let local = build(
        &dir.path().join("local.db"),
        &[
            result(&h100(), 384, "k_a", 1.0, 100),
            result(&h100(), 384, "k_b", 1.2, 10),
        ],
    );
    let mut b_better = result(&h100(), 384, "k_b", 0.7, 200);
    b_better.provenance.origin_host = "gpu-box-2".into();
    let a_worse = result(&h100(), 384, "k_a", 0.5, 5);
    let other = dir.path().join("other.db");
    drop(build(&other, &[b_better.clone(), a_worse]));
    let s = local
        .import(&other, None, &ImportPolicy::default())
        .unwrap();
    assert_eq!(
        (s.results_added, s.results_replaced(), s.results_kept_local),
        (0, 1, 1)
    );
    assert_eq!(s.winners_changed, 1);
    let rows = local
        .results_for(&common::problem(384).key, &h100(), None)
        .unwrap();
    let b = rows.iter().find(|r| r.kernel_name == "k_b").unwrap();
    assert_eq!(b, &b_better, "provenance travels with the row");
    let a = rows.iter().find(|r| r.kernel_name == "k_a").unwrap();
    assert_eq!(a.timing.unwrap().samples, 100);
    let w = local
        .winner(&h100(), &odd_template(), &common::problem(384).key)
        .unwrap()
        .unwrap();
    assert_eq!(w.kernel_name, "k_b");
    assert_eq!(w.provenance.origin_host, "gpu-box-2");
    // Nothing of the sim device's winner leaks onto the real one, and vice versa.
    assert!(local
        .winner(&sim(), &odd_template(), &common::problem(384).key)
        .unwrap()
        .is_none());
}

#[test]
fn an_import_never_replaces_a_measurement_of_this_machine() {
    // Issue 14, item 1: a row claiming 1,000 samples replaced a real local 20-sample
    // measurement and flipped the winner.
    let dir = tempfile::tempdir().unwrap();
    let mut local_a = result(&h100(), 384, "k_a", 1.0, 20);
    local_a.provenance.origin_host = "this-box".into();
    let mut local_b = result(&h100(), 384, "k_b", 1.2, 20);
    local_b.provenance.origin_host = "this-box".into();
    let local = build(
        &dir.path().join("local.db"),
        &[local_a.clone(), local_b.clone()],
    );
    // The sender claims far more samples for k_b, and a faster median.
    let mut forged = result(&h100(), 384, "k_b", 0.5, 1000);
    forged.provenance.origin_host = "elsewhere".into();
    let other = dir.path().join("other.db");
    drop(build(&other, &[forged.clone()]));

    let s = local
        .import(&other, None, &ImportPolicy::for_host("this-box"))
        .unwrap();
    assert_eq!((s.results_added, s.results_replaced()), (0, 0), "{s:#?}");
    assert_eq!(s.winners_changed, 0, "{s:#?}");
    let refused: Vec<_> = s
        .skipped
        .rows
        .iter()
        .filter(|k| k.reason.kind == RefusalKind::LocalMeasurement)
        .collect();
    assert_eq!(refused.len(), 1, "{s:#?}");
    assert_eq!(refused[0].kernel_name.as_deref(), Some("k_b"));
    let rows = local
        .results_for(&common::problem(384).key, &h100(), None)
        .unwrap();
    assert!(rows.contains(&local_b), "the local measurement stays");
    let w = local
        .winner(&h100(), &odd_template(), &common::problem(384).key)
        .unwrap()
        .unwrap();
    assert_eq!(w.kernel_name, "k_a", "the winner did not flip");

    // Asked for explicitly, the better-supported row replaces it, and that is reported.
    let replace = ImportPolicy {
        replace_local: true,
        ..ImportPolicy::for_host("this-box")
    };
    let s = local.import(&other, None, &replace).unwrap();
    assert_eq!(s.replaced.len(), 1, "{s:#?}");
    assert_eq!(s.replaced[0].old, local_b);
    assert_eq!(s.replaced[0].new, forged);
}

#[test]
fn an_imported_problem_description_never_replaces_the_local_one() {
    let dir = tempfile::tempdir().unwrap();
    let mine = result(&h100(), 384, "k_a", 1.0, 100);
    let local = build(&dir.path().join("local.db"), std::slice::from_ref(&mine));
    // Same key, another (smaller-sorting) description.
    let mut theirs = result(&h100(), 384, "k_b", 1.1, 100);
    theirs.problem.json = r#"{"m":1}"#.into();
    let other = dir.path().join("other.db");
    drop(build(&other, &[theirs]));
    local
        .import(&other, None, &ImportPolicy::default())
        .unwrap();
    let rows = local.results_for(&mine.problem.key, &h100(), None).unwrap();
    assert_eq!(rows.len(), 2);
    for r in rows {
        assert_eq!(r.problem, mine.problem, "{}", r.kernel_name);
    }
}

#[test]
fn imported_times_are_bounded() {
    // Issue 14, item 4: import accepted a median of 1e307 ms, which then hung `plot sweep`.
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.db");
    drop(build(
        &a,
        &[
            result(&h100(), 384, "k_a", 1.0, 10),
            result(&h100(), 384, "k_huge", 2.0, 10),
        ],
    ));
    let conn = rusqlite::Connection::open(&a).unwrap();
    conn.execute(
        "UPDATE results SET median_ms = 1e307, p10_ms = 0.001, p90_ms = 1e307 \
         WHERE kernel_name = 'k_huge'",
        [],
    )
    .unwrap();
    drop(conn);
    let dst = Cache::open(dir.path().join("dst.db")).unwrap();
    let s = dst.import(&a, None, &ImportPolicy::default()).unwrap();
    assert_eq!(s.results_added, 1, "{s:#?}");
    let k = &s.skipped.rows[0];
    assert_eq!(k.kernel_name.as_deref(), Some("k_huge"));
    assert_eq!(k.reason.kind, RefusalKind::InvalidField);
    assert!(k.reason.detail.contains("plausible range"), "{}", k.reason);
}

#[test]
fn every_refused_row_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<_> = (0..260)
        .map(|i| {
            result(
                &h100(),
                384,
                &format!("k_{i:03}"),
                1.0 + f64::from(i) * 1e-3,
                10,
            )
        })
        .collect();
    let a = dir.path().join("a.db");
    drop(build(&a, &rows));
    let dst = Cache::open(dir.path().join("dst.db")).unwrap();
    let refuse = |c: &tessera_cache::Candidate<'_>| {
        Err(Refusal::new(
            RefusalKind::AboveRoof,
            c.kernel_name.to_string(),
        ))
    };
    let s = dst
        .import(&a, Some(&refuse), &ImportPolicy::default())
        .unwrap();
    // 260 results and their winner row, every one described.
    assert_eq!(s.skipped.rows.len(), 261, "{}", s.skipped.rows.len());
    assert!(s
        .skipped
        .rows
        .iter()
        .all(|k| k.reason.kind == RefusalKind::AboveRoof));
}

#[test]
fn winners_without_results_are_refused_as_unverified() {
    // A winner row carries no error against the reference: alone, it would claim that a
    // kernel passed verification with nothing to show for it.
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.db");
    let b = dir.path().join("b.db");
    let wa = WinnerRow::from_result(&result(&h100(), 2048, "k_x", 3.0, 10)).unwrap();
    let wb = WinnerRow::from_result(&result(&h100(), 2048, "k_y", 2.0, 10)).unwrap();
    Cache::open(&a).unwrap().record_winner(&wa).unwrap();
    Cache::open(&b).unwrap().record_winner(&wb).unwrap();
    let ab = dir.path().join("ab.db");
    let s = merge(&a, &b, &ab, None).unwrap();
    assert_eq!((s.results, s.winners), (0, 0), "{s:#?}");
    for side in [&s.from_a, &s.from_b] {
        assert_eq!(side.skipped.count(), 1, "{side:#?}");
        assert_eq!(side.skipped.rows[0].table, "winners");
        assert_eq!(side.skipped.rows[0].reason.kind, RefusalKind::Unverified);
    }
    let dst = Cache::open(dir.path().join("dst.db")).unwrap();
    let s = dst.import(&a, None, &ImportPolicy::default()).unwrap();
    assert_eq!(s.skipped.rows[0].reason.kind, RefusalKind::Unverified);
    assert!(
        s.skipped.rows[0]
            .reason
            .detail
            .contains("no result row in the file"),
        "{}",
        s.skipped.rows[0].reason
    );
    assert!(dst.list_winners().unwrap().is_empty());
    let sum = dst.summary().unwrap();
    assert_eq!((sum.results, sum.winners, sum.problems), (0, 0, 0));
}

#[test]
fn ok_rows_without_a_recorded_error_are_refused_as_unverified() {
    let dir = tempfile::tempdir().unwrap();
    let good = result(&h100(), 384, "k_good", 1.0, 10);
    let mut bare = result(&h100(), 384, "k_bare", 0.5, 10);
    bare.max_rel_error = None;
    // Another problem whose only row is unverified: nothing of it may arrive.
    let mut alone = result(&h100(), 768, "k_alone", 0.5, 10);
    alone.max_rel_error = None;
    // Pruned and failed rows claim no verification: they need no error.
    let pruned = failed(
        &h100(),
        384,
        "k_pruned",
        Status::Pruned,
        "rank 12 of 40 (estimate 0.9 ms)",
    );
    let timeout = failed(&h100(), 384, "k_timeout", Status::Timeout, "over 2 s");
    let a = dir.path().join("a.db");
    drop(build(
        &a,
        &[good.clone(), bare, alone, pruned.clone(), timeout.clone()],
    ));
    let dst = Cache::open(dir.path().join("dst.db")).unwrap();
    let s = dst.import(&a, None, &ImportPolicy::default()).unwrap();
    assert_eq!(s.results_added, 3, "{s:#?}");
    // The two result rows and their winner rows.
    let refused: Vec<_> = s
        .skipped
        .rows
        .iter()
        .map(|k| {
            (
                k.table,
                k.kernel_name.as_deref().unwrap_or(""),
                k.reason.kind,
            )
        })
        .collect();
    assert_eq!(
        refused,
        vec![
            ("results", "k_bare", RefusalKind::Unverified),
            ("results", "k_alone", RefusalKind::Unverified),
            ("winners", "k_bare", RefusalKind::Unverified),
            ("winners", "k_alone", RefusalKind::Unverified),
        ],
        "{s:#?}"
    );
    assert!(
        s.skipped.rows[0]
            .reason
            .to_string()
            .starts_with("unverified: an ok row with no recorded error against the reference"),
        "{}",
        s.skipped.rows[0].reason
    );
    let w = dst.list_winners().unwrap();
    assert_eq!(w.len(), 1, "{w:#?}");
    assert_eq!(
        w[0].kernel_name, "k_good",
        "the faster unverified row did not win"
    );
    let mut kept = dst
        .results_for(&common::problem(384).key, &h100(), None)
        .unwrap();
    kept.sort_by(|x, y| x.kernel_name.cmp(&y.kernel_name));
    assert_eq!(kept, vec![good, pruned, timeout]);
    assert!(dst
        .results_for(&common::problem(768).key, &h100(), None)
        .unwrap()
        .is_empty());
    // Nothing of the refused problem arrived half-way (not even its description).
    assert_eq!(dst.summary().unwrap().problems, 1);
}

#[test]
fn diff_reports_changed_and_one_sided_winners() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("old.db");
    let new = dir.path().join("new.db");
    drop(build(
        &old,
        &[
            result(&h100(), 384, "k_a", 1.0, 100),
            result(&h100(), 768, "k_a", 2.0, 100),
            result(&h100(), 1024, "k_a", 3.0, 100),
        ],
    ));
    drop(build(
        &new,
        &[
            result(&h100(), 384, "k_b", 0.5, 100),
            result(&h100(), 768, "k_a", 2.0, 100),
            result(&h100(), 4096, "k_a", 9.0, 100),
        ],
    ));
    let d = diff(&old, &new).unwrap();
    assert_eq!(d.unchanged, 1);
    assert_eq!(d.changes.len(), 3);
    let by_m = |m: u32| {
        d.changes
            .iter()
            .find(|c| c.key.problem_key == common::problem(m).key)
            .unwrap()
    };
    let c = by_m(384);
    assert!(c.kernel_changed());
    assert_eq!(c.speedup(), Some(2.0));
    assert!(
        matches!(&c.change, WinnerChange::Changed { old, new } if old.kernel_name == "k_a" && new.kernel_name == "k_b")
    );
    assert!(matches!(by_m(1024).change, WinnerChange::OnlyInOld(_)));
    assert!(matches!(by_m(4096).change, WinnerChange::OnlyInNew(_)));
    assert_eq!(by_m(4096).speedup(), None);
    assert_eq!(d.skipped_old.count() + d.skipped_new.count(), 0);
}
