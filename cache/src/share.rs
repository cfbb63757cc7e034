//! Sharing caches between machines and people: export, import, merge, diff.
//!
//! Owns [`Cache::export`], [`Cache::import`], [`merge`], [`diff`] and their summaries.
//!
//! * A shared file is a cache file like any other (same schema, rollback journal so it is one
//!   self-contained file) holding parameters and measurements only — there is no code column
//!   anywhere, so importing a cache cannot make Tessera run anything new.
//! * Every file read by import, merge or diff is **untrusted**: it is opened read-only with
//!   SQLite's defensive mode on and schema-defined functions distrusted, checked (SQLite
//!   header, `quick_check`, application id, schema version no newer than ours, the expected
//!   tables), read through parameterized SQL with every text value bounded, and each row is
//!   validated field by field ([`crate::ResultRow::validate`], every time bounded), then for
//!   evidence of verification, and then by the caller's optional [`CandidateCheck`] (the CLI
//!   re-derives kernel name, config, problem key, throughput roof and error tolerance from
//!   this build's templates). Rows that fail are skipped and reported, every one of them,
//!   with a typed [`Refusal`]; they do not fail the import.
//! * Evidence of verification (contract 4): an `ok` result row must carry its recorded error
//!   against the reference, and a winner row (which carries none) is taken only with an `ok`
//!   result row of the same key and kernel accepted from the same file; both are refused
//!   otherwise with [`RefusalKind::Unverified`]. Rows of other statuses (`pruned`, failures)
//!   claim no verification and need none. Diff only compares winners and checks no evidence.
//! * The whole file is read and checked ([`Incoming::read`]) before the destination is
//!   written ([`Cache::absorb`], one transaction): a failing import has written nothing and
//!   never needs to remove anything. Nothing here ever unlinks a cache file.
//! * Conflicts follow [`crate::policy`]: the better-supported measurement of a candidate is
//!   kept — except that, under [`ImportPolicy::for_host`], a local row measured on this
//!   machine is never replaced (sample counts and dates are written by the sender, so they
//!   must not be able to displace a local measurement); such rows are refused with
//!   [`RefusalKind::LocalMeasurement`], and every replaced row is reported. An imported
//!   problem description never replaces the local one. The winner of every key touched is
//!   recomputed as the fastest `ok` result (near-ties to the smallest kernel name). Rows keep
//!   their own provenance (origin host, measured-at, tool version). Merging two files is
//!   commutative and idempotent.
//! * Output files are written to a temporary name and linked into place only when complete;
//!   an existing file is never overwritten.
//!
//! Depends on [`crate::store`], `table`, [`crate::policy`], [`crate::schema`],
//! [`crate::record`], [`crate::refusal`], [`crate::key`], [`crate::error`] and rusqlite.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};

use crate::error::{CacheError, FieldError};
use crate::key::{DeviceFingerprint, WinnerKey};
use crate::policy;
use crate::record::{CandidateCheck, Provenance, ResultRow, Status, WinnerRow};
use crate::refusal::{Refusal, RefusalKind};
use crate::schema::{self, APPLICATION_ID, SCHEMA_VERSION, TABLES};
use crate::store::{self, Cache, OpenOptions};
use crate::table::{self, ProblemConflict};

/// A row of an untrusted file that was not taken, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// `results` or `winners`.
    pub table: &'static str,
    /// The row's rowid in the source file.
    pub rowid: i64,
    /// The kernel the row names, when it could be read (for reports).
    pub kernel_name: Option<String>,
    pub reason: Refusal,
}

/// Every row refused while reading or absorbing an untrusted file, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SkipLog {
    pub rows: Vec<Skipped>,
}

impl SkipLog {
    fn push(
        &mut self,
        table: &'static str,
        rowid: i64,
        kernel_name: Option<&str>,
        reason: Refusal,
    ) {
        self.rows.push(Skipped {
            table,
            rowid,
            kernel_name: kernel_name.map(str::to_owned),
            reason,
        });
    }

    /// How many rows were refused.
    pub fn count(&self) -> usize {
        self.rows.len()
    }
}

/// A local result an import replaced: the row that was there and the one that took its place.
#[derive(Debug, Clone, PartialEq)]
pub struct Replacement {
    pub old: ResultRow,
    pub new: ResultRow,
}

/// What an import may replace.
///
/// By default ([`ImportPolicy::for_host`]) a local row measured on this machine (its origin
/// host is `this_host`) is never replaced, whatever the imported row claims: the fields that
/// decide which measurement is better supported (sample count, noise, date) are written by
/// the sender. Only other machines' rows are replaced by better-supported ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportPolicy {
    /// This machine's host name, as its own rows record it; `None`: no row is local.
    pub this_host: Option<String>,
    /// Let better-supported imported rows replace this machine's rows too.
    pub replace_local: bool,
}

impl ImportPolicy {
    /// The default policy on a machine called `host`: its own measurements are kept.
    pub fn for_host(host: impl Into<String>) -> ImportPolicy {
        ImportPolicy {
            this_host: Some(host.into()),
            replace_local: false,
        }
    }

    /// Whether a local row with this provenance is protected from replacement.
    fn protects(&self, p: &Provenance) -> bool {
        !self.replace_local && self.this_host.as_deref() == Some(p.origin_host.as_str())
    }
}

/// What [`Cache::import`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportSummary {
    pub source: PathBuf,
    /// The source file's schema version.
    pub schema_version: i64,
    /// Results new to this cache.
    pub results_added: usize,
    /// Results that replaced a less well supported local row (all of them).
    pub replaced: Vec<Replacement>,
    /// Results not taken because the local row is as well or better supported.
    pub results_kept_local: usize,
    /// Winner rows the source file offered (valid ones).
    pub winners_offered: usize,
    /// Keys whose stored winner changed (recomputed from the merged results).
    pub winners_changed: usize,
    /// Every refused row with its reason: invalid, failing the caller's check, or competing
    /// with a measurement of this machine.
    pub skipped: SkipLog,
}

impl ImportSummary {
    /// How many local results were replaced.
    pub fn results_replaced(&self) -> usize {
        self.replaced.len()
    }
}

/// What [`Cache::export`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    pub path: PathBuf,
    pub devices: usize,
    pub results: usize,
    pub winners: usize,
}

/// What [`merge`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeSummary {
    pub out: PathBuf,
    pub from_a: ImportSummary,
    pub from_b: ImportSummary,
    pub results: u64,
    pub winners: u64,
}

/// How a key's winner differs between two caches.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // a handful per diff; boxing buys nothing
pub enum WinnerChange {
    /// Both have a winner and the kernel, config or median differs.
    Changed {
        old: WinnerRow,
        new: WinnerRow,
    },
    OnlyInOld(WinnerRow),
    OnlyInNew(WinnerRow),
}

/// One key whose winner differs between two caches.
#[derive(Debug, Clone, PartialEq)]
pub struct WinnerDiff {
    pub key: WinnerKey,
    pub change: WinnerChange,
}

impl WinnerDiff {
    /// `old median / new median` (above 1: the new winner is faster), when both exist.
    pub fn speedup(&self) -> Option<f64> {
        match &self.change {
            WinnerChange::Changed { old, new } => Some(old.median_ms / new.median_ms),
            _ => None,
        }
    }

    /// Whether a different kernel won.
    pub fn kernel_changed(&self) -> bool {
        match &self.change {
            WinnerChange::Changed { old, new } => old.kernel_name != new.kernel_name,
            _ => true,
        }
    }
}

/// What [`diff`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct DiffReport {
    /// Keys whose winner differs, ordered by key.
    pub changes: Vec<WinnerDiff>,
    /// Keys with the same winner in both.
    pub unchanged: usize,
    /// Invalid winner rows skipped in the old and the new file.
    pub skipped_old: SkipLog,
    pub skipped_new: SkipLog,
}

/// Result rows refused while reading a file, by (key, kernel): their winner rows go too.
type RefusedResults = BTreeMap<(WinnerKey, String), Refusal>;

/// The status of every result row accepted from a file, by (key, kernel): what a winner row
/// of that file needs behind it.
type AcceptedResults = BTreeMap<(WinnerKey, String), Status>;

/// An untrusted `ok` result row must carry the evidence that it passed the correctness gate:
/// its recorded error against the reference. Whether that error is within the tolerance
/// depends on the template's output dtype, which the caller's check knows.
fn verified(r: &ResultRow) -> Result<(), Refusal> {
    if r.status == Status::Ok && r.max_rel_error.is_none() {
        return Err(Refusal::new(
            RefusalKind::Unverified,
            "an ok row with no recorded error against the reference (max_rel_error): \
             nothing shows it passed verification",
        ));
    }
    Ok(())
}

/// A winner row carries no error against the reference, so an untrusted one is taken only
/// with an accepted `ok` result row of the same key and kernel from the same file.
fn backed(w: &WinnerRow, accepted: &AcceptedResults) -> Result<(), Refusal> {
    let detail = match accepted.get(&(w.key(), w.kernel_name.clone())) {
        Some(Status::Ok) => return Ok(()),
        Some(status) => format!("its result row in the file is {status}, not ok"),
        None => "no result row in the file measured and verified it (a winner row carries \
                 no error against the reference)"
            .to_string(),
    };
    Err(Refusal::new(RefusalKind::Unverified, detail))
}

/// An untrusted cache file, open read-only and checked.
struct Untrusted {
    conn: Connection,
    path: PathBuf,
    version: i64,
}

impl Untrusted {
    fn open(path: &Path) -> Result<Untrusted, CacheError> {
        let meta = fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => CacheError::NotFound {
                path: path.to_path_buf(),
            },
            _ => CacheError::io("reading metadata of", path, e),
        })?;
        if !meta.is_file() || meta.len() == 0 {
            return Err(CacheError::Incompatible {
                path: path.to_path_buf(),
                detail: "not a non-empty regular file".into(),
            });
        }
        // Header, version, application id and quick_check, on its own read-only connection.
        store::inspect_existing(path, &OpenOptions::default())?;
        let sql = |ctx: &'static str| move |e| CacheError::sqlite(path, ctx, e);
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(sql("opening"))?;
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)
            .map_err(sql("configuring"))?;
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)
            .map_err(sql("configuring"))?;
        conn.busy_timeout(OpenOptions::default().busy_timeout)
            .map_err(sql("configuring"))?;
        let version = schema::user_version(&conn).map_err(sql("reading the schema version"))?;
        let app_id = schema::application_id(&conn).map_err(sql("reading the application id"))?;
        if version == 0 || app_id != APPLICATION_ID {
            return Err(CacheError::Foreign {
                path: path.to_path_buf(),
                detail: format!("application id {app_id:#x}, schema version {version}"),
            });
        }
        if version > SCHEMA_VERSION {
            return Err(CacheError::TooNew {
                path: path.to_path_buf(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        for t in TABLES {
            let kind: Option<String> = conn
                .query_row("SELECT type FROM sqlite_schema WHERE name = ?1", [t], |r| {
                    r.get(0)
                })
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })
                .map_err(sql("reading the schema"))?;
            if kind.as_deref() != Some("table") {
                return Err(CacheError::Incompatible {
                    path: path.to_path_buf(),
                    detail: format!("`{t}` is not a table"),
                });
            }
        }
        Ok(Untrusted {
            conn,
            path: path.to_path_buf(),
            version,
        })
    }

    fn incompatible(&self, e: rusqlite::Error) -> CacheError {
        match CacheError::sqlite(&self.path, "reading", e) {
            CacheError::Sqlite { source, .. } => CacheError::Incompatible {
                path: self.path.clone(),
                detail: format!(
                    "its tables cannot be read as schema version {}: {source}",
                    self.version
                ),
            },
            other => other,
        }
    }

    /// Every result row that passes validation and `check`, with its rowid; the others are
    /// logged.
    fn results(
        &self,
        check: Option<CandidateCheck<'_>>,
        skipped: &mut SkipLog,
        refused: &mut RefusedResults,
    ) -> Result<Vec<(i64, ResultRow)>, CacheError> {
        let sql = format!("{} ORDER BY r.rowid", table::result_select());
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.incompatible(e))?;
        let rows = stmt
            .query_map([], table::decode_result)
            .map_err(|e| self.incompatible(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (rowid, decoded) = row.map_err(|e| self.incompatible(e))?;
            let id = decoded
                .as_ref()
                .ok()
                .map(|r| (r.winner_key(), r.kernel_name.clone()));
            let valid = |r: &ResultRow| {
                r.validate()?;
                verified(r)
            };
            match accept(decoded, valid, |r| r.candidate(), check) {
                Ok(r) => out.push((rowid, r)),
                Err(reason) => {
                    skipped.push(
                        "results",
                        rowid,
                        id.as_ref().map(|i| i.1.as_str()),
                        reason.clone(),
                    );
                    if let Some(id) = id {
                        refused.entry(id).or_insert(reason);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Every winner row that passes validation and `check`, with its rowid; the others are
    /// logged.
    /// A winner row whose own result row (same key and kernel) was refused is refused for
    /// the same reason: a winner row carries no error or throughput to check, so it must
    /// not let a refused measurement in by the back door. With `accepted` (the result rows
    /// taken from the same file), a winner row with no `ok` result row behind it is refused
    /// as [`RefusalKind::Unverified`]; `None` (diff) checks no evidence.
    fn winners(
        &self,
        check: Option<CandidateCheck<'_>>,
        skipped: &mut SkipLog,
        refused: &RefusedResults,
        accepted: Option<&AcceptedResults>,
    ) -> Result<Vec<(i64, WinnerRow)>, CacheError> {
        let sql = format!("{} ORDER BY w.rowid", table::winner_select());
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.incompatible(e))?;
        let rows = stmt
            .query_map([], table::decode_winner)
            .map_err(|e| self.incompatible(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (rowid, decoded) = row.map_err(|e| self.incompatible(e))?;
            let name = decoded.as_ref().ok().map(|w| w.kernel_name.clone());
            let valid = |w: &WinnerRow| w.validate().map_err(Refusal::from);
            match accept(decoded, valid, |w| w.candidate(), check) {
                Ok(w) => match refused.get(&(w.key(), w.kernel_name.clone())) {
                    Some(why) => skipped.push(
                        "winners",
                        rowid,
                        name.as_deref(),
                        Refusal::new(
                            why.kind,
                            format!("its result row was refused: {}", why.detail),
                        ),
                    ),
                    None => match accepted.map_or(Ok(()), |a| backed(&w, a)) {
                        Ok(()) => out.push((rowid, w)),
                        Err(why) => skipped.push("winners", rowid, name.as_deref(), why),
                    },
                },
                Err(reason) => skipped.push("winners", rowid, name.as_deref(), reason),
            }
        }
        Ok(out)
    }
}

fn accept<T>(
    decoded: Result<T, FieldError>,
    validate: impl Fn(&T) -> Result<(), Refusal>,
    candidate: impl for<'a> Fn(&'a T) -> crate::record::Candidate<'a>,
    check: Option<CandidateCheck<'_>>,
) -> Result<T, Refusal> {
    let v = decoded?;
    validate(&v)?;
    if let Some(check) = check {
        check(&candidate(&v))?;
    }
    Ok(v)
}

/// The rows of an untrusted cache file, read and checked, not yet written anywhere.
///
/// Reading everything first means an import that fails (a damaged, foreign or too-new file,
/// an unreadable table) fails before the destination cache is opened or created, so the
/// failure path never has anything of the destination to clean up.
#[derive(Debug, Clone)]
pub struct Incoming {
    source: PathBuf,
    schema_version: i64,
    results: Vec<(i64, ResultRow)>,
    winners: Vec<(i64, WinnerRow)>,
    skipped: SkipLog,
}

impl Incoming {
    /// Opens `path` read-only as an untrusted file (see the module docs), validates every row
    /// and runs `check` on those that pass.
    pub fn read(path: &Path, check: Option<CandidateCheck<'_>>) -> Result<Incoming, CacheError> {
        let src = Untrusted::open(path)?;
        let mut skipped = SkipLog::default();
        let mut refused = RefusedResults::new();
        let results = src.results(check, &mut skipped, &mut refused)?;
        let accepted: AcceptedResults = results
            .iter()
            .map(|(_, r)| ((r.winner_key(), r.kernel_name.clone()), r.status))
            .collect();
        let winners = src.winners(check, &mut skipped, &refused, Some(&accepted))?;
        Ok(Incoming {
            source: path.to_path_buf(),
            schema_version: src.version,
            results,
            winners,
            skipped,
        })
    }

    /// The file the rows came from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Rows accepted so far (results, winners).
    pub fn accepted(&self) -> (usize, usize) {
        (self.results.len(), self.winners.len())
    }

    /// Rows refused while reading.
    pub fn skipped(&self) -> &SkipLog {
        &self.skipped
    }
}

/// What one absorb pass did (recomputed on each retry of the transaction).
#[derive(Default)]
struct Absorbed {
    added: usize,
    replaced: Vec<Replacement>,
    kept: usize,
    refused: SkipLog,
    winners_changed: usize,
}

impl Cache {
    /// Takes the rows of another cache file into this one (see the module docs for the trust
    /// model and the conflict policy). `check` is run on every row that passes the cache's own
    /// validation; `Err(refusal)` skips the row. The file is read and checked completely
    /// before anything is written.
    pub fn import(
        &self,
        other: &Path,
        check: Option<CandidateCheck<'_>>,
        policy: &ImportPolicy,
    ) -> Result<ImportSummary, CacheError> {
        let incoming = Incoming::read(other, check)?;
        self.absorb(incoming, policy)
    }

    /// Writes rows read by [`Incoming::read`] into this cache in one transaction, following
    /// `policy`, and recomputes the winner of every key touched. An imported problem
    /// description never replaces the one this cache holds for the same key.
    pub fn absorb(
        &self,
        incoming: Incoming,
        policy: &ImportPolicy,
    ) -> Result<ImportSummary, CacheError> {
        self.absorb_with(incoming, policy, ProblemConflict::KeepExisting)
    }

    fn absorb_with(
        &self,
        incoming: Incoming,
        policy: &ImportPolicy,
        problems: ProblemConflict,
    ) -> Result<ImportSummary, CacheError> {
        let a = self.absorb_rows(&incoming.results, &incoming.winners, policy, problems)?;
        let mut skipped = incoming.skipped;
        skipped.rows.extend(a.refused.rows);
        Ok(ImportSummary {
            source: incoming.source,
            schema_version: incoming.schema_version,
            results_added: a.added,
            replaced: a.replaced,
            results_kept_local: a.kept,
            winners_offered: incoming.winners.len(),
            winners_changed: a.winners_changed,
            skipped,
        })
    }

    /// Writes validated foreign rows in one transaction and recomputes the touched winners.
    fn absorb_rows(
        &self,
        results: &[(i64, ResultRow)],
        winners: &[(i64, WinnerRow)],
        policy: &ImportPolicy,
        problems: ProblemConflict,
    ) -> Result<Absorbed, CacheError> {
        self.write(|tx| {
            let err = self.sql("importing");
            let mut a = Absorbed::default();
            let mut touched: BTreeSet<WinnerKey> = BTreeSet::new();
            for (rowid, r) in results {
                let key = r.winner_key();
                table::put_parents(tx, &r.device, &r.template, &r.problem, problems)
                    .map_err(&err)?;
                let existing = table::result_by_key(tx, &key, &r.kernel_name).map_err(&err)?;
                let local = existing.and_then(|(_, d)| d.ok().filter(|l| l.validate().is_ok()));
                match local {
                    None => {
                        table::put_result(tx, r).map_err(&err)?;
                        a.added += 1;
                    }
                    Some(l) if policy::support_order(r, &l).is_gt() => {
                        if policy.protects(&l.provenance) {
                            a.refused.push(
                                "results",
                                *rowid,
                                Some(&r.kernel_name),
                                Refusal::new(
                                    RefusalKind::LocalMeasurement,
                                    format!(
                                        "{} was measured on this machine ({}); an import never                                          replaces it (--replace-local allows it)",
                                        r.kernel_name, l.provenance.origin_host
                                    ),
                                ),
                            );
                        } else {
                            table::put_result(tx, r).map_err(&err)?;
                            a.replaced.push(Replacement {
                                old: l,
                                new: r.clone(),
                            });
                        }
                    }
                    Some(_) => a.kept += 1,
                }
                touched.insert(key);
            }
            let mut offered: BTreeMap<WinnerKey, Vec<WinnerRow>> = BTreeMap::new();
            for (_, w) in winners {
                table::put_parents(tx, &w.device, &w.template, &w.problem, problems)
                    .map_err(&err)?;
                touched.insert(w.key());
                offered.entry(w.key()).or_default().push(w.clone());
            }
            for key in &touched {
                let rows: Vec<ResultRow> = table::results_of_key(tx, key)
                    .map_err(&err)?
                    .into_iter()
                    .filter_map(|(_, d)| d.ok().filter(|r| r.validate().is_ok()))
                    .collect();
                let current = table::winner_by_key(tx, key)
                    .map_err(&err)?
                    .and_then(|(_, d)| d.ok().filter(|w| w.validate().is_ok()));
                let chosen = match policy::choose_winner(&rows) {
                    Some(best) => WinnerRow::from_result(best),
                    // A winner of this machine with no results behind it stays.
                    None if current
                        .as_ref()
                        .is_some_and(|w| policy.protects(&w.provenance)) =>
                    {
                        current.clone()
                    }
                    None => {
                        let mut candidates: Vec<WinnerRow> = current.iter().cloned().collect();
                        candidates.extend(offered.remove(key).unwrap_or_default());
                        policy::choose_winner_row(&candidates).cloned()
                    }
                };
                if chosen != current {
                    match &chosen {
                        Some(w) => table::put_winner(tx, w).map_err(&err)?,
                        None => table::delete_winner(tx, key).map_err(&err)?,
                    }
                    a.winners_changed += 1;
                }
            }
            Ok(a)
        })
    }

    /// Writes a new shareable cache file at `out` holding this cache's devices, template
    /// versions, problems, results and winners — optionally only those of devices `device`
    /// accepts. `out` must not exist.
    pub fn export(
        &self,
        out: &Path,
        device: Option<&dyn Fn(&DeviceFingerprint) -> bool>,
    ) -> Result<ExportSummary, CacheError> {
        let keep = |d: &DeviceFingerprint| device.is_none_or(|f| f(d));
        let (results, winners) = self.read(|c| {
            let err = self.sql("reading rows to export");
            let mut results = Vec::new();
            let mut stmt = c
                .prepare(&format!("{} ORDER BY r.rowid", table::result_select()))
                .map_err(&err)?;
            for row in stmt.query_map([], table::decode_result).map_err(&err)? {
                let r = self.own("results", row.map_err(&err)?, ResultRow::validate)?;
                if keep(&r.device) {
                    results.push(r);
                }
            }
            let mut winners = Vec::new();
            let mut stmt = c
                .prepare(&format!("{} ORDER BY w.rowid", table::winner_select()))
                .map_err(&err)?;
            for row in stmt.query_map([], table::decode_winner).map_err(&err)? {
                let w = self.own("winners", row.map_err(&err)?, WinnerRow::validate)?;
                if keep(&w.device) {
                    winners.push(w);
                }
            }
            Ok((results, winners))
        })?;
        let devices: BTreeSet<_> = results
            .iter()
            .map(|r| r.device.id())
            .chain(winners.iter().map(|w| w.device.id()))
            .collect();
        write_new_file(out, |c| {
            c.write(|tx| {
                let err = c.sql("exporting");
                for r in &results {
                    table::put_parents(
                        tx,
                        &r.device,
                        &r.template,
                        &r.problem,
                        ProblemConflict::Replace,
                    )
                    .map_err(&err)?;
                    table::put_result(tx, r).map_err(&err)?;
                }
                for w in &winners {
                    table::put_parents(
                        tx,
                        &w.device,
                        &w.template,
                        &w.problem,
                        ProblemConflict::Replace,
                    )
                    .map_err(&err)?;
                    table::put_winner(tx, w).map_err(&err)?;
                }
                Ok(())
            })
        })?;
        Ok(ExportSummary {
            path: out.to_path_buf(),
            devices: devices.len(),
            results: results.len(),
            winners: winners.len(),
        })
    }
}

/// Merges two cache files into a new file `out` (which must not exist): every row of both,
/// the better-supported measurement where both have one, winners recomputed. Both inputs
/// are untrusted and opened read-only. `merge(a, b)` and `merge(b, a)` hold the same rows.
pub fn merge(
    a: &Path,
    b: &Path,
    out: &Path,
    check: Option<CandidateCheck<'_>>,
) -> Result<MergeSummary, CacheError> {
    let merged = ImportPolicy::default();
    let from_a = Incoming::read(a, check)?;
    let from_b = Incoming::read(b, check)?;
    write_new_file(out, |c| {
        let from_a = c.absorb_with(from_a, &merged, ProblemConflict::KeepSmaller)?;
        let from_b = c.absorb_with(from_b, &merged, ProblemConflict::KeepSmaller)?;
        let s = c.summary()?;
        Ok(MergeSummary {
            out: out.to_path_buf(),
            from_a,
            from_b,
            results: s.results,
            winners: s.winners,
        })
    })
}

/// The winners that differ between an old and a new cache file (both untrusted, read-only):
/// per key, a changed kernel/config/median with the speedup, or a key only one side has.
pub fn diff(old: &Path, new: &Path) -> Result<DiffReport, CacheError> {
    let read = |p: &Path| -> Result<(BTreeMap<WinnerKey, WinnerRow>, SkipLog), CacheError> {
        let mut skipped = SkipLog::default();
        let rows = Untrusted::open(p)?.winners(None, &mut skipped, &RefusedResults::new(), None)?;
        let mut by_key: BTreeMap<WinnerKey, Vec<WinnerRow>> = BTreeMap::new();
        for (_, w) in rows {
            by_key.entry(w.key()).or_default().push(w);
        }
        let chosen = by_key
            .into_iter()
            .filter_map(|(k, v)| policy::choose_winner_row(&v).cloned().map(|w| (k, w)))
            .collect();
        Ok((chosen, skipped))
    };
    let (mut old_w, skipped_old) = read(old)?;
    let (new_w, skipped_new) = read(new)?;
    let mut changes = Vec::new();
    let mut unchanged = 0;
    for (key, n) in new_w {
        match old_w.remove(&key) {
            None => changes.push(WinnerDiff {
                key,
                change: WinnerChange::OnlyInNew(n),
            }),
            Some(o)
                if o.kernel_name == n.kernel_name
                    && o.config == n.config
                    && o.median_ms == n.median_ms =>
            {
                unchanged += 1
            }
            Some(o) => changes.push(WinnerDiff {
                key,
                change: WinnerChange::Changed { old: o, new: n },
            }),
        }
    }
    changes.extend(old_w.into_iter().map(|(key, o)| WinnerDiff {
        key,
        change: WinnerChange::OnlyInOld(o),
    }));
    changes.sort_by(|x, y| x.key.cmp(&y.key));
    Ok(DiffReport {
        changes,
        unchanged,
        skipped_old,
        skipped_new,
    })
}

/// Builds a new cache file at a temporary name beside `out`, then links it into place; `out`
/// is never overwritten and never seen half-written.
fn write_new_file<T>(
    out: &Path,
    fill: impl FnOnce(&Cache) -> Result<T, CacheError>,
) -> Result<T, CacheError> {
    if fs::symlink_metadata(out).is_ok() {
        return Err(CacheError::OutputExists {
            path: out.to_path_buf(),
        });
    }
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "cache".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = out.with_file_name(format!(".{name}.tmp-{}-{nanos}", std::process::id()));
    let cleanup = |tmp: &Path| {
        let _ = fs::remove_file(tmp);
        let mut j = tmp.as_os_str().to_owned();
        j.push("-journal");
        let _ = fs::remove_file(PathBuf::from(j));
    };
    let result = (|| {
        let cache = Cache::create_standalone(&tmp)?;
        let v = fill(&cache)?;
        drop(cache);
        fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| CacheError::io("syncing", &tmp, e))?;
        match fs::hard_link(&tmp, out) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(CacheError::OutputExists {
                    path: out.to_path_buf(),
                });
            }
            // File systems without hard links: check, then rename (a small race).
            Err(_) if fs::symlink_metadata(out).is_err() => {
                fs::rename(&tmp, out).map_err(|e| CacheError::io("moving into place", out, e))?;
            }
            Err(_) => {
                return Err(CacheError::OutputExists {
                    path: out.to_path_buf(),
                })
            }
        }
        Ok(v)
    })();
    cleanup(&tmp);
    result
}
