//! Dropping stale rows: template versions that are no longer current.
//!
//! Owns [`Cache::invalidate_template`] (a template's source hash changed: drop its other
//! versions' rows, and only that template's), [`Cache::gc`] (the same for every template given
//! the current hashes, then orphans, then `VACUUM`) and [`GcSummary`]. Lookups of an old hash
//! already miss (the hash is part of every key); these only reclaim space.
//!
//! Depends on [`crate::store`], `table`, [`crate::error`].

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{params, Connection};

use crate::error::CacheError;
use crate::store::Cache;
use crate::table;

/// What a clean-up removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcSummary {
    pub results_deleted: usize,
    pub winners_deleted: usize,
    pub templates_deleted: usize,
    pub problems_deleted: usize,
    pub devices_deleted: usize,
    /// Size of the database and its WAL before and after (`gc` only; 0 otherwise).
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// What [`Cache::gc`] does with templates the map of current hashes does not mention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownTemplates {
    /// Leave them (they may come from a crate this binary does not link).
    Keep,
    /// Drop them.
    Drop,
}

fn delete_version(
    conn: &Connection,
    name: &str,
    hash: &str,
    s: &mut GcSummary,
) -> rusqlite::Result<()> {
    s.results_deleted += conn.execute(
        "DELETE FROM results WHERE template_name = ?1 AND template_hash = ?2",
        params![name, hash],
    )?;
    s.winners_deleted += conn.execute(
        "DELETE FROM winners WHERE template_name = ?1 AND template_hash = ?2",
        params![name, hash],
    )?;
    s.templates_deleted += conn.execute(
        "DELETE FROM templates WHERE name = ?1 AND source_hash = ?2",
        params![name, hash],
    )?;
    Ok(())
}

fn template_versions(conn: &Connection) -> rusqlite::Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare(
        "SELECT name, source_hash FROM templates UNION SELECT template_name, template_hash FROM results \
         UNION SELECT template_name, template_hash FROM winners",
    )?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

fn remove_orphans(conn: &Connection, s: &mut GcSummary) -> rusqlite::Result<()> {
    let (problems, devices, templates) = table::delete_orphans(conn)?;
    s.problems_deleted += problems;
    s.devices_deleted += devices;
    s.templates_deleted += templates;
    Ok(())
}

fn file_bytes(path: &Path) -> u64 {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    [path.to_path_buf(), wal.into()]
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

impl Cache {
    /// Deletes every row of template `name` whose source hash is not `keep_hash`; rows of other
    /// templates are untouched. Call it when a template's hash changed.
    pub fn invalidate_template(
        &self,
        name: &str,
        keep_hash: &str,
    ) -> Result<GcSummary, CacheError> {
        self.write(|tx| {
            let mut s = GcSummary::default();
            let err = self.sql("invalidating a template");
            for (n, h) in template_versions(tx).map_err(&err)? {
                if n == name && h != keep_hash {
                    delete_version(tx, &n, &h, &mut s).map_err(&err)?;
                }
            }
            remove_orphans(tx, &mut s).map_err(&err)?;
            Ok(s)
        })
    }

    /// Deletes rows of every template version that is not current: `current` maps template
    /// names to their current source hash; templates it does not name are kept or dropped per
    /// `unknown`. Then deletes problems and devices nothing refers to, and compacts the file.
    pub fn gc(
        &self,
        current: &BTreeMap<String, String>,
        unknown: UnknownTemplates,
    ) -> Result<GcSummary, CacheError> {
        let bytes_before = file_bytes(self.path());
        let mut s = self.write(|tx| {
            let mut s = GcSummary::default();
            let err = self.sql("collecting garbage");
            for (name, hash) in template_versions(tx).map_err(&err)? {
                let stale = match current.get(&name) {
                    Some(cur) => *cur != hash,
                    None => unknown == UnknownTemplates::Drop,
                };
                if stale {
                    delete_version(tx, &name, &hash, &mut s).map_err(&err)?;
                }
            }
            remove_orphans(tx, &mut s).map_err(&err)?;
            Ok(s)
        })?;
        self.retry(|c| c.execute_batch("VACUUM").map_err(self.sql("compacting")))?;
        self.retry(|c| {
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                .map_err(self.sql("checkpointing"))
        })?;
        s.bytes_before = bytes_before;
        s.bytes_after = file_bytes(self.path());
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::TemplateKey;
    use crate::record::tests::ok_row;
    use crate::record::{ResultRow, WinnerRow};

    fn row(template: &str, hash: &str, kernel: &str) -> ResultRow {
        let mut r = ok_row(kernel, 1.0);
        r.template = TemplateKey::new(template, hash);
        r
    }

    fn setup() -> (tempfile::TempDir, Cache) {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(dir.path().join("t.db")).unwrap();
        let rows = [
            row("gemm", "old", "k1"),
            row("gemm", "old", "k2"),
            row("gemm", "new", "k1"),
            row("softmax", "s1", "k9"),
            row("layernorm", "l1", "k7"),
        ];
        c.record_results(&rows).unwrap();
        for r in &rows {
            c.record_winner(&WinnerRow::from_result(r).unwrap())
                .unwrap();
        }
        (dir, c)
    }

    fn count(c: &Cache, sql: &str) -> i64 {
        c.conn().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn invalidating_one_template_keeps_every_other_row() {
        let (_d, c) = setup();
        let s = c.invalidate_template("gemm", "new").unwrap();
        assert_eq!(
            (s.results_deleted, s.winners_deleted, s.templates_deleted),
            (2, 1, 1)
        );
        assert_eq!(
            count(
                &c,
                "SELECT count(*) FROM results WHERE template_name = 'gemm'"
            ),
            1
        );
        assert_eq!(
            count(
                &c,
                "SELECT count(*) FROM results WHERE template_name <> 'gemm'"
            ),
            2
        );
        assert_eq!(count(&c, "SELECT count(*) FROM winners"), 3);
        let r = row("gemm", "new", "k1");
        assert!(c
            .winner(&r.device, &r.template, &r.problem.key)
            .unwrap()
            .is_some());
    }

    #[test]
    fn gc_drops_stale_versions_and_optionally_unknown_templates() {
        let (_d, c) = setup();
        let current: BTreeMap<String, String> = [("gemm", "new"), ("softmax", "s2")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .into();
        let s = c.gc(&current, UnknownTemplates::Keep).unwrap();
        assert_eq!(s.results_deleted, 3);
        assert_eq!(
            count(&c, "SELECT count(*) FROM results"),
            2,
            "gemm@new and layernorm stay"
        );
        assert!(s.bytes_after > 0);
        let s = c.gc(&current, UnknownTemplates::Drop).unwrap();
        assert_eq!(s.results_deleted, 1);
        assert_eq!(count(&c, "SELECT count(*) FROM results"), 1);
        assert_eq!(count(&c, "SELECT count(*) FROM templates"), 1);
        assert_eq!(count(&c, "SELECT count(*) FROM problems"), 1);
        let s = c.gc(&BTreeMap::new(), UnknownTemplates::Drop).unwrap();
        assert_eq!(s.devices_deleted, 1);
        assert_eq!(count(&c, "SELECT count(*) FROM problems"), 0);
    }
}
