//! The database schema, its version, and the migrations that build it.
//!
//! Owns [`SCHEMA_VERSION`], [`APPLICATION_ID`], the ordered [`MIGRATIONS`] and `migrate`,
//! which applies the missing ones in one transaction. The version lives in
//! `PRAGMA user_version`; `PRAGMA application_id` marks the file as a Tessera cache. A file
//! whose version is newer than this build's is refused, never touched.
//!
//! Tables (version 1), all `STRICT`:
//!
//! * `devices(id PK, name, arch, sm_count, driver, toolchain, simulated)`: `id` is derived
//!   from the other fields ([`crate::DeviceFingerprint::id`]).
//! * `templates(name, source_hash)`: each template version seen.
//! * `problems(key PK, op, json)`.
//! * `results`: one row per (device, template name + hash, problem key, kernel name):
//!   config (assignment and JSON), guards JSON, status, reason, median/p10/p90 ms, samples,
//!   throughput + unit, max relative error, compile seconds, measured_at, origin host, tool
//!   version.
//! * `winners`: one row per (device, template name + hash, problem key): kernel name, config,
//!   median ms, guards JSON, provenance.
//!
//! Version 2 adds the `pruned` status (a candidate the cost model dropped before compiling;
//! the status column is checked by the code, not by SQL) and an index of a key's results by
//! status.
//!
//! Version 3 adds `claims(key PK, host, pid, gpu, claimed_at)`: a tuner claims a problem
//! (device id + template version + problem key) before measuring it, so two tuners on one
//! cache never measure it twice (see [`crate::claims`]). `claimed_at` is Unix seconds,
//! refreshed while the owner works.
//!
//! There is no column for code: shared caches carry parameters and measurements only.
//!
//! Depends on [`crate::error`] and rusqlite.

use std::path::Path;

use rusqlite::Connection;

use crate::error::CacheError;

/// `PRAGMA application_id` of a Tessera cache: "TSRA".
pub const APPLICATION_ID: i64 = 0x5453_5241;

/// One step of the schema.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The `user_version` after this step (steps are numbered 1, 2, ...).
    pub version: i64,
    pub description: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order. Append only: never edit one that has shipped.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "devices, templates, problems, results, winners",
        sql: r#"
CREATE TABLE devices (
    id        TEXT PRIMARY KEY NOT NULL,
    name      TEXT NOT NULL,
    arch      TEXT NOT NULL,
    sm_count  INTEGER NOT NULL CHECK (sm_count >= 0),
    driver    TEXT NOT NULL,
    toolchain TEXT NOT NULL,
    simulated INTEGER NOT NULL CHECK (simulated IN (0, 1))
) STRICT;

CREATE TABLE templates (
    name        TEXT NOT NULL,
    source_hash TEXT NOT NULL,
    PRIMARY KEY (name, source_hash)
) STRICT, WITHOUT ROWID;

CREATE TABLE problems (
    key  TEXT PRIMARY KEY NOT NULL,
    op   TEXT NOT NULL,
    json TEXT NOT NULL
) STRICT;

CREATE TABLE results (
    device_id       TEXT NOT NULL REFERENCES devices(id),
    template_name   TEXT NOT NULL,
    template_hash   TEXT NOT NULL,
    problem_key     TEXT NOT NULL REFERENCES problems(key),
    kernel_name     TEXT NOT NULL,
    config          TEXT NOT NULL,
    config_json     TEXT NOT NULL,
    guards_json     TEXT NOT NULL,
    status          TEXT NOT NULL,
    reason          TEXT NOT NULL,
    median_ms       REAL,
    p10_ms          REAL,
    p90_ms          REAL,
    samples         INTEGER NOT NULL CHECK (samples >= 0),
    throughput      REAL,
    throughput_unit TEXT,
    max_rel_error   REAL,
    compile_s       REAL,
    measured_at     TEXT NOT NULL,
    origin_host     TEXT NOT NULL,
    tool_version    TEXT NOT NULL,
    PRIMARY KEY (device_id, template_name, template_hash, problem_key, kernel_name),
    FOREIGN KEY (template_name, template_hash) REFERENCES templates(name, source_hash)
) STRICT;
CREATE INDEX results_by_problem ON results(problem_key);
CREATE INDEX results_by_kernel ON results(kernel_name);
CREATE INDEX results_by_template ON results(template_name, template_hash);

CREATE TABLE winners (
    device_id     TEXT NOT NULL REFERENCES devices(id),
    template_name TEXT NOT NULL,
    template_hash TEXT NOT NULL,
    problem_key   TEXT NOT NULL REFERENCES problems(key),
    kernel_name   TEXT NOT NULL,
    config        TEXT NOT NULL,
    config_json   TEXT NOT NULL,
    median_ms     REAL NOT NULL CHECK (median_ms > 0),
    guards_json   TEXT NOT NULL,
    measured_at   TEXT NOT NULL,
    origin_host   TEXT NOT NULL,
    tool_version  TEXT NOT NULL,
    PRIMARY KEY (device_id, template_name, template_hash, problem_key),
    FOREIGN KEY (template_name, template_hash) REFERENCES templates(name, source_hash)
) STRICT;
CREATE INDEX winners_by_kernel ON winners(kernel_name);
"#,
    },
    Migration {
        version: 2,
        description: "pruned results: status `pruned`, and an index to find a key's rows by status",
        // Rows of status `pruned` (candidates the cost model dropped before compiling) exist
        // from this version on; a build that does not know the status refuses a version-2
        // file as too new instead of reading it as damaged. The index serves `--resume`,
        // which skips measured rows but not pruned ones.
        sql: r#"
CREATE INDEX results_by_key_status
    ON results(device_id, template_name, template_hash, problem_key, status);
"#,
    },
    Migration {
        version: 3,
        description: "claims: which tuner (host, pid, GPU) is measuring which problem",
        sql: r#"
CREATE TABLE claims (
    key        TEXT PRIMARY KEY NOT NULL,
    host       TEXT NOT NULL,
    pid        INTEGER NOT NULL CHECK (pid >= 0),
    gpu        TEXT NOT NULL,
    claimed_at INTEGER NOT NULL
) STRICT;
"#,
    },
];

/// The schema version this build writes: the last migration's.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// The tables a cache of [`SCHEMA_VERSION`] has.
pub(crate) const TABLES: [&str; 5] = ["devices", "templates", "problems", "results", "winners"];

pub(crate) fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

pub(crate) fn application_id(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA application_id", [], |r| r.get(0))
}

/// Brings the database to the last of `migrations`, inside the caller's write transaction
/// (so either every missing step lands or none does). Returns how many steps were applied.
/// A database newer than the last step is refused untouched.
pub(crate) fn migrate(
    conn: &Connection,
    path: &Path,
    migrations: &[Migration],
) -> Result<usize, CacheError> {
    let sql = |ctx: &'static str| move |e| CacheError::sqlite(path, ctx, e);
    let target = migrations.last().map_or(0, |m| m.version);
    let current = user_version(conn).map_err(sql("reading the schema version"))?;
    if current > target {
        return Err(CacheError::TooNew {
            path: path.to_path_buf(),
            found: current,
            supported: target,
        });
    }
    if current == 0 {
        let objects: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
            .map_err(sql("reading the schema"))?;
        if objects > 0 {
            return Err(CacheError::Foreign {
                path: path.to_path_buf(),
                detail: format!(
                    "schema version 0 but {objects} tables, indexes or views already present"
                ),
            });
        }
    }
    let mut applied = 0;
    for m in migrations.iter().filter(|m| m.version > current) {
        conn.execute_batch(m.sql)
            .map_err(sql("applying a schema migration"))?;
        applied += 1;
    }
    if applied > 0 {
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(sql("setting the application id"))?;
        conn.pragma_update(None, "user_version", target)
            .map_err(sql("setting the schema version"))?;
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_one_by_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "{}", m.description);
        }
        assert_eq!(SCHEMA_VERSION, MIGRATIONS.len() as i64);
    }

    #[test]
    fn migrating_an_empty_database_creates_every_table_once() {
        let conn = Connection::open_in_memory().unwrap();
        let p = Path::new(":memory:");
        assert_eq!(migrate(&conn, p, MIGRATIONS).unwrap(), MIGRATIONS.len());
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
        assert_eq!(application_id(&conn).unwrap(), APPLICATION_ID);
        for t in TABLES {
            let n: i64 = conn
                .query_row(
                    "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
                    [t],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(n, 1, "{t}");
        }
        assert_eq!(
            migrate(&conn, p, MIGRATIONS).unwrap(),
            0,
            "second run is a no-op"
        );
    }

    #[test]
    fn later_steps_apply_in_order_on_an_older_database() {
        let conn = Connection::open_in_memory().unwrap();
        let p = Path::new(":memory:");
        migrate(&conn, p, &MIGRATIONS[..1]).unwrap();
        let extended = [
            MIGRATIONS[0],
            Migration {
                version: 2,
                description: "a",
                sql: "CREATE TABLE t2 (x INTEGER);",
            },
            Migration {
                version: 3,
                description: "b",
                sql: "ALTER TABLE t2 ADD COLUMN y INTEGER;",
            },
        ];
        assert_eq!(migrate(&conn, p, &extended).unwrap(), 2);
        assert_eq!(user_version(&conn).unwrap(), 3);
        conn.execute("INSERT INTO t2 (x, y) VALUES (1, 2)", [])
            .unwrap();
    }

    #[test]
    fn a_version_1_cache_gains_the_pruned_status_index_and_keeps_its_rows() {
        let conn = Connection::open_in_memory().unwrap();
        let p = Path::new(":memory:");
        migrate(&conn, p, &MIGRATIONS[..1]).unwrap();
        conn.execute_batch(
            "INSERT INTO problems VALUES ('k', 'gemm', '{}');
             INSERT INTO devices VALUES ('d', 'n', 'sm_90a', 132, 'drv', 'tc', 0);
             INSERT INTO templates VALUES ('gemm', 'h');
             INSERT INTO results (device_id, template_name, template_hash, problem_key, \
                 kernel_name, config, config_json, guards_json, status, reason, samples, \
                 measured_at, origin_host, tool_version) \
             VALUES ('d', 'gemm', 'h', 'k', 'gemm_x', 'a=1', '{}', '{}', 'timeout', 't', 0, \
                 '2024-01-01T00:00:00Z', 'h', 'tessera');",
        )
        .unwrap();
        assert_eq!(migrate(&conn, p, MIGRATIONS).unwrap(), MIGRATIONS.len() - 1);
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM results", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 1);
        let index: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'results_by_key_status'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(index, 1);
    }

    #[test]
    fn a_version_2_cache_gains_an_empty_claims_table() {
        let conn = Connection::open_in_memory().unwrap();
        let p = Path::new(":memory:");
        migrate(&conn, p, &MIGRATIONS[..2]).unwrap();
        assert_eq!(migrate(&conn, p, MIGRATIONS).unwrap(), 1);
        let n: i64 = conn
            .query_row("SELECT count(*) FROM claims", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn a_failing_step_leaves_the_database_as_it_was() {
        let mut conn = Connection::open_in_memory().unwrap();
        let p = Path::new(":memory:");
        let broken = [
            MIGRATIONS[0],
            Migration {
                version: 2,
                description: "bad",
                sql: "CREATE TABLE t2 (x); NOT SQL;",
            },
        ];
        let tx = conn.transaction().unwrap();
        assert!(migrate(&tx, p, &broken).is_err());
        drop(tx); // rolls back, as the store's write transaction does
        assert_eq!(user_version(&conn).unwrap(), 0);
        let n: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn a_newer_database_is_refused() {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let e = migrate(&conn, Path::new("x.db"), MIGRATIONS).unwrap_err();
        assert!(
            matches!(e, CacheError::TooNew { found, .. } if found == SCHEMA_VERSION + 1),
            "{e}"
        );
    }

    #[test]
    fn a_foreign_database_is_refused() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE notes (body TEXT);")
            .unwrap();
        let e = migrate(&conn, Path::new("x.db"), MIGRATIONS).unwrap_err();
        assert!(matches!(e, CacheError::Foreign { .. }), "{e}");
    }
}
