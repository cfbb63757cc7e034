//! `tessera cache why`: every candidate behind a choice.
//!
//! Owns [`Explanation`] and [`Cache::why`], which gathers, for each key (device, template
//! version, problem) matching a filter, the stored winner and every candidate's row, ranked
//! the way the policy ranks them, so the CLI can show why one kernel won.
//!
//! Depends on [`crate::store`], `table`, [`crate::policy`], [`crate::record`],
//! [`crate::key`], [`crate::error`].

use std::collections::BTreeMap;

use rusqlite::params;

use crate::error::CacheError;
use crate::key::WinnerKey;
use crate::policy;
use crate::record::{ResultRow, WinnerRow};
use crate::store::Cache;
use crate::table;

/// One key's winner and candidates.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    pub key: WinnerKey,
    /// The winner as stored (`None` when no winner was recorded).
    pub winner: Option<WinnerRow>,
    /// Every candidate's row: `ok` rows fastest first, then the rest by status and kernel name.
    pub candidates: Vec<ResultRow>,
}

impl Explanation {
    /// The candidate the merge policy picks from these rows (fastest `ok`, near-ties to the
    /// smallest kernel name); normally the stored winner.
    pub fn policy_choice(&self) -> Option<&ResultRow> {
        policy::choose_winner(&self.candidates)
    }
}

const KEYS_MATCHING: &str =
    "SELECT device_id, template_name, template_hash, problem_key FROM results \
     WHERE instr(problem_key, ?1) > 0 OR kernel_name = ?1 \
     UNION SELECT device_id, template_name, template_hash, problem_key FROM winners \
     WHERE instr(problem_key, ?1) > 0 OR kernel_name = ?1";

impl Cache {
    /// Every key whose problem key contains `filter`, or that has a candidate or winner named
    /// exactly `filter`, with its winner and all candidates. An empty filter matches all.
    pub fn why(&self, filter: &str) -> Result<Vec<Explanation>, CacheError> {
        let results_sql = format!(
            "{} WHERE (r.device_id, r.template_name, r.template_hash, r.problem_key) IN ({KEYS_MATCHING}) \
             ORDER BY r.status <> 'ok', r.median_ms IS NULL, r.median_ms, r.status, r.kernel_name",
            table::result_select()
        );
        let winners_sql = format!(
            "{} WHERE (w.device_id, w.template_name, w.template_hash, w.problem_key) IN ({KEYS_MATCHING})",
            table::winner_select()
        );
        self.read(|c| {
            let err = self.sql("explaining");
            let mut groups: BTreeMap<WinnerKey, Explanation> = BTreeMap::new();
            let mut stmt = c.prepare(&winners_sql).map_err(&err)?;
            for row in stmt
                .query_map(params![filter], table::decode_winner)
                .map_err(&err)?
            {
                let w = self.own("winners", row.map_err(&err)?, WinnerRow::validate)?;
                groups.insert(
                    w.key(),
                    Explanation {
                        key: w.key(),
                        winner: Some(w),
                        candidates: Vec::new(),
                    },
                );
            }
            let mut stmt = c.prepare(&results_sql).map_err(&err)?;
            for row in stmt
                .query_map(params![filter], table::decode_result)
                .map_err(&err)?
            {
                let r = self.own("results", row.map_err(&err)?, ResultRow::validate)?;
                let key = r.winner_key();
                groups
                    .entry(key.clone())
                    .or_insert_with(|| Explanation {
                        key,
                        winner: None,
                        candidates: Vec::new(),
                    })
                    .candidates
                    .push(r);
            }
            Ok(groups.into_values().collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::ok_row;
    use crate::record::Status;

    #[test]
    fn why_groups_candidates_by_key_and_ranks_them() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::open(dir.path().join("t.db")).unwrap();
        let mut wrong = ok_row("k_fast_wrong", 0.1);
        wrong.status = Status::WrongResult;
        wrong.reason = "max rel error 0.3 > 0.01".into();
        let rows = vec![ok_row("k_slow", 2.0), ok_row("k_best", 1.0), wrong];
        c.record_results(&rows).unwrap();
        let mut other = ok_row("k_other", 1.0);
        other.problem.key = "gemm m=1 n=2 k=3 f16->f16 rcr".into();
        c.record_result(&other).unwrap();
        c.record_winner(&WinnerRow::from_result(&rows[1]).unwrap())
            .unwrap();

        let by_problem = c.why("m=384").unwrap();
        assert_eq!(by_problem.len(), 1);
        let e = &by_problem[0];
        assert_eq!(e.winner.as_ref().unwrap().kernel_name, "k_best");
        let names: Vec<_> = e
            .candidates
            .iter()
            .map(|r| r.kernel_name.as_str())
            .collect();
        assert_eq!(names, ["k_best", "k_slow", "k_fast_wrong"]);
        assert_eq!(e.policy_choice().unwrap().kernel_name, "k_best");

        let by_kernel = c.why("k_other").unwrap();
        assert_eq!(by_kernel.len(), 1);
        assert!(by_kernel[0].winner.is_none());
        assert_eq!(c.why("").unwrap().len(), 2);
        assert!(c.why("no such thing").unwrap().is_empty());
    }
}
