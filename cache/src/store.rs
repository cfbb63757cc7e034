//! The cache file: opening it safely, writing rows, and looking them up.
//!
//! Owns [`Cache`] (one SQLite connection to one file) and [`OpenOptions`]. Opening an existing
//! file first inspects it through a read-only connection (SQLite header, schema version,
//! application id, `PRAGMA quick_check`): a damaged, foreign or newer file is refused and left
//! byte-for-byte untouched. Then the file is opened read-write in WAL mode with a busy
//! timeout, and missing migrations are applied in one transaction.
//!
//! A cache opened with [`OpenOptions::read_only`] (listing, explaining, exporting, plotting)
//! is never created, migrated or written (`SQLITE_OPEN_READ_ONLY`), and works in a directory
//! the user can't write: there the file is opened as immutable (SQLite can't create its
//! `-wal`/`-shm` files). Where the directory is writable, SQLite creates those two files for a
//! read-only connection too and, being read-only, can't remove them: they stay, empty, until
//! the next writer closes the cache. A
//! cache opened for writing is checked up front: a file or directory that can't be written
//! is a [`CacheError::NotWritable`] naming the path, before any work starts.
//!
//! Every write runs in a `BEGIN IMMEDIATE` transaction (so lock waits go through SQLite's
//! busy handler instead of failing at the upgrade from reader to writer), and the whole
//! transaction is retried with backoff while SQLite reports `SQLITE_BUSY`/`SQLITE_LOCKED`,
//! up to [`OpenOptions::retry_for`]. Many processes can write one cache at once.
//!
//! Depends on [`crate::schema`], `table`, [`crate::record`], [`crate::key`],
//! [`crate::settings`], [`crate::error`] and rusqlite.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::error::{CacheError, FieldError};
use crate::key::{DeviceFingerprint, TemplateKey, WinnerKey};
use crate::record::{ResultRow, Status, WinnerRow};
use crate::schema::{self, APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION};
use crate::settings::CacheSettings;
use crate::table::{self, ProblemConflict};

/// How a cache is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenOptions {
    /// How long one statement waits for another connection's lock (SQLite busy timeout).
    pub busy_timeout: Duration,
    /// How long a whole transaction is retried while the database stays busy.
    pub retry_for: Duration,
    /// Create the file (and its parent directories) when it does not exist.
    pub create: bool,
    /// Only read: never create, migrate or write the file (which must exist and have this
    /// build's schema version). Works in a read-only directory.
    pub read_only: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            busy_timeout: Duration::from_secs(10),
            retry_for: Duration::from_secs(60),
            create: true,
            read_only: false,
        }
    }
}

/// How the file journals: WAL for a live cache, a rollback journal for a file that is
/// handed to others (a single self-contained file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Journal {
    Wal,
    Delete,
}

/// Counts of what a cache holds (for `tessera cache ls`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSummary {
    pub path: PathBuf,
    pub schema_version: i64,
    pub devices: u64,
    pub templates: u64,
    pub problems: u64,
    pub results: u64,
    pub winners: u64,
    pub results_by_status: BTreeMap<Status, u64>,
}

/// An open tuning cache. `Send` but not `Sync`: give each thread its own `Cache` (they may
/// all point at one file) or share one behind a `Mutex`.
pub struct Cache {
    conn: Connection,
    path: PathBuf,
    options: OpenOptions,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

impl Cache {
    /// The cache path the settings select (see [`CacheSettings::path`]).
    pub fn default_path(settings: &CacheSettings) -> Result<PathBuf, CacheError> {
        settings.path()
    }

    /// Opens (or creates, with parent directories) the cache at `path` with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Cache, CacheError> {
        Cache::open_with(path, &OpenOptions::default())
    }

    /// Opens the cache at `path`. An existing file that is not a healthy Tessera cache of
    /// this or an older schema version is refused and never modified.
    pub fn open_with(path: impl AsRef<Path>, options: &OpenOptions) -> Result<Cache, CacheError> {
        Cache::open_journal(path.as_ref(), options, Journal::Wal)
    }

    /// Opens the existing cache at `path` for reading only (see [`OpenOptions::read_only`]).
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Cache, CacheError> {
        let options = OpenOptions {
            create: false,
            read_only: true,
            ..OpenOptions::default()
        };
        Cache::open_with(path, &options)
    }

    /// Creates a new file for export or merge output: rollback journal, so the finished file
    /// is self-contained, and no syncs (the caller syncs the finished file once). The caller
    /// makes sure `path` is fresh.
    pub(crate) fn create_standalone(path: &Path) -> Result<Cache, CacheError> {
        Cache::open_journal(path, &OpenOptions::default(), Journal::Delete)
    }

    fn open_journal(
        path: &Path,
        options: &OpenOptions,
        journal: Journal,
    ) -> Result<Cache, CacheError> {
        match fs::metadata(path) {
            Ok(m) if m.is_dir() => {
                return Err(CacheError::io(
                    "opening",
                    path,
                    std::io::Error::other("is a directory, not a cache file"),
                ))
            }
            Ok(_) => {
                inspect_existing(path, options)?;
                if options.read_only {
                    return Cache::open_reader(path, options);
                }
                check_writable(path)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !options.create || options.read_only {
                    return Err(CacheError::NotFound {
                        path: path.to_path_buf(),
                    });
                }
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    fs::create_dir_all(dir)
                        .map_err(|e| CacheError::io("creating directory", dir, e))?;
                }
                check_dir_writable(path)?;
            }
            Err(e) => return Err(CacheError::io("reading metadata of", path, e)),
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| CacheError::sqlite(path, "opening", e))?;
        let cache = Cache {
            conn,
            path: path.to_path_buf(),
            options: options.clone(),
        };
        cache.configure(journal)?;
        cache.write(|tx| schema::migrate(tx, &cache.path, MIGRATIONS))?;
        Ok(cache)
    }

    /// The read-only connection of [`OpenOptions::read_only`]; the file has been inspected.
    fn open_reader(path: &Path, options: &OpenOptions) -> Result<Cache, CacheError> {
        let cache = Cache {
            conn: read_only_connection(path)?,
            path: path.to_path_buf(),
            options: options.clone(),
        };
        cache
            .conn
            .busy_timeout(options.busy_timeout)
            .map_err(cache.sql("configuring the connection"))?;
        let found = cache.schema_version()?;
        if found != SCHEMA_VERSION {
            return Err(CacheError::Outdated {
                path: path.to_path_buf(),
                found,
                current: SCHEMA_VERSION,
            });
        }
        Ok(cache)
    }

    fn configure(&self, journal: Journal) -> Result<(), CacheError> {
        let sql = self.sql("configuring the connection");
        self.conn
            .busy_timeout(self.options.busy_timeout)
            .map_err(&sql)?;
        self.conn
            .pragma_update(None, "foreign_keys", true)
            .map_err(&sql)?;
        // WAL + NORMAL: a crash of the process never loses a committed transaction; a power
        // loss may lose the last ones but never corrupts the file. A standalone output file
        // is written under a temporary name and synced once when complete, so it needs no
        // syncs on the way.
        let sync = match journal {
            Journal::Wal => "NORMAL",
            Journal::Delete => "OFF",
        };
        self.conn
            .pragma_update(None, "synchronous", sync)
            .map_err(&sql)?;
        let mode = match journal {
            Journal::Wal => "wal",
            Journal::Delete => "delete",
        };
        let got: String = self.retry(|c| {
            c.query_row(&format!("PRAGMA journal_mode = {mode}"), [], |r| r.get(0))
                .map_err(self.sql("setting the journal mode"))
        })?;
        if !got.eq_ignore_ascii_case(mode) {
            return Err(CacheError::Sqlite {
                path: self.path.clone(),
                context: "setting the journal mode",
                source: rusqlite::Error::InvalidQuery,
            });
        }
        Ok(())
    }

    /// The file this cache lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version of the file (always [`SCHEMA_VERSION`] once open).
    pub fn schema_version(&self) -> Result<i64, CacheError> {
        self.retry(|c| schema::user_version(c).map_err(self.sql("reading the schema version")))
    }

    #[cfg(test)]
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    pub(crate) fn sql(&self, context: &'static str) -> impl Fn(rusqlite::Error) -> CacheError + '_ {
        move |e| CacheError::sqlite(&self.path, context, e)
    }

    /// Runs `f`, again and again with backoff while the database is busy.
    pub(crate) fn retry<T>(
        &self,
        mut f: impl FnMut(&Connection) -> Result<T, CacheError>,
    ) -> Result<T, CacheError> {
        let start = Instant::now();
        let mut delay = Duration::from_millis(2);
        loop {
            match f(&self.conn) {
                Err(e) if e.is_busy() => {
                    let waited = start.elapsed();
                    if waited >= self.options.retry_for {
                        return Err(CacheError::Busy {
                            path: self.path.clone(),
                            waited,
                        });
                    }
                    std::thread::sleep(delay + jitter(delay));
                    delay = (delay * 2).min(Duration::from_millis(250));
                }
                other => return other,
            }
        }
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction and commits, retrying while busy. Any
    /// error rolls the transaction back.
    pub(crate) fn write<T>(
        &self,
        mut f: impl FnMut(&Connection) -> Result<T, CacheError>,
    ) -> Result<T, CacheError> {
        self.retry(|conn| {
            let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
                .map_err(self.sql("starting a write transaction"))?;
            let v = f(&tx)?;
            tx.commit().map_err(self.sql("committing"))?;
            Ok(v)
        })
    }

    /// Runs `f` in a read transaction (one consistent snapshot), retrying while busy.
    pub(crate) fn read<T>(
        &self,
        mut f: impl FnMut(&Connection) -> Result<T, CacheError>,
    ) -> Result<T, CacheError> {
        self.retry(|conn| {
            let tx = Transaction::new_unchecked(conn, TransactionBehavior::Deferred)
                .map_err(self.sql("starting a read transaction"))?;
            let v = f(&tx)?;
            tx.commit().map_err(self.sql("ending a read transaction"))?;
            Ok(v)
        })
    }

    /// A decoded row of this cache's own file, validated; a bad one means someone else wrote
    /// the file.
    pub(crate) fn own<T>(
        &self,
        table: &'static str,
        (rowid, decoded): (i64, Result<T, FieldError>),
        validate: impl Fn(&T) -> Result<(), FieldError>,
    ) -> Result<T, CacheError> {
        decoded
            .and_then(|v| validate(&v).map(|()| v))
            .map_err(|e| CacheError::Malformed {
                path: self.path.clone(),
                table,
                detail: format!("row {rowid}: {e}"),
            })
    }

    /// Stores one candidate's outcome, replacing an earlier row of the same key (device,
    /// template name + hash, problem key, kernel name). The row is validated first.
    pub fn record_result(&self, row: &ResultRow) -> Result<(), CacheError> {
        self.record_results(std::slice::from_ref(row))
    }

    /// Stores many outcomes in one transaction (all or nothing).
    pub fn record_results(&self, rows: &[ResultRow]) -> Result<(), CacheError> {
        for r in rows {
            r.validate().map_err(|source| CacheError::Invalid {
                what: "result",
                source,
            })?;
        }
        self.write(|tx| {
            let sql = self.sql("storing a result");
            for r in rows {
                table::put_parents(
                    tx,
                    &r.device,
                    &r.template,
                    &r.problem,
                    ProblemConflict::Replace,
                )
                .map_err(&sql)?;
                table::put_result(tx, r).map_err(&sql)?;
            }
            Ok(())
        })
    }

    /// Stores the winner of its key, replacing the previous one. Validated first.
    pub fn record_winner(&self, row: &WinnerRow) -> Result<(), CacheError> {
        row.validate().map_err(|source| CacheError::Invalid {
            what: "winner",
            source,
        })?;
        self.write(|tx| {
            let sql = self.sql("storing a winner");
            table::put_parents(
                tx,
                &row.device,
                &row.template,
                &row.problem,
                ProblemConflict::Replace,
            )
            .map_err(&sql)?;
            table::put_winner(tx, row).map_err(&sql)
        })
    }

    /// Every result for a problem on a device, optionally of one template version: `ok` rows
    /// fastest first, then the others by status and kernel name.
    pub fn results_for(
        &self,
        problem_key: &str,
        device: &DeviceFingerprint,
        template: Option<&TemplateKey>,
    ) -> Result<Vec<ResultRow>, CacheError> {
        let (name, hash) = template.map_or((None, None), |t| (Some(&t.name), Some(&t.source_hash)));
        let sql = format!(
            "{} WHERE r.problem_key = ?1 AND r.device_id = ?2 \
             AND (?3 IS NULL OR (r.template_name = ?3 AND r.template_hash = ?4)) \
             ORDER BY r.status <> 'ok', r.median_ms IS NULL, r.median_ms, r.status, r.kernel_name, r.template_name",
            table::result_select()
        );
        self.read(|c| {
            let err = self.sql("reading results");
            let mut stmt = c.prepare_cached(&sql).map_err(&err)?;
            let rows = stmt
                .query_map(
                    params![problem_key, device.id().as_str(), name, hash],
                    table::decode_result,
                )
                .map_err(&err)?;
            rows.map(|r| self.own("results", r.map_err(&err)?, ResultRow::validate))
                .collect()
        })
    }

    /// The winner for exactly this device (fingerprint and toolchain), template version and
    /// problem key; `None` when any part differs from what was tuned.
    pub fn winner(
        &self,
        device: &DeviceFingerprint,
        template: &TemplateKey,
        problem_key: &str,
    ) -> Result<Option<WinnerRow>, CacheError> {
        let key = WinnerKey {
            device: device.clone(),
            template: template.clone(),
            problem_key: problem_key.to_owned(),
        };
        self.read(|c| {
            match table::winner_by_key(c, &key).map_err(self.sql("reading a winner"))? {
                Some(found) => self.own("winners", found, WinnerRow::validate).map(Some),
                None => Ok(None),
            }
        })
    }

    /// Whether a result (of any status) is stored for this kernel: `--resume` skips it.
    pub fn has_result(
        &self,
        device: &DeviceFingerprint,
        template: &TemplateKey,
        problem_key: &str,
        kernel_name: &str,
    ) -> Result<bool, CacheError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM results WHERE device_id = ?1 AND template_name = ?2 \
                 AND template_hash = ?3 AND problem_key = ?4 AND kernel_name = ?5)",
            )
            .and_then(|mut s| {
                s.query_row(
                    params![
                        device.id().as_str(),
                        template.name,
                        template.source_hash,
                        problem_key,
                        kernel_name
                    ],
                    |r| r.get(0),
                )
            })
            .map_err(self.sql("looking up a result"))
        })
    }

    /// The kernel names that already have a result for this key (for `--resume`).
    pub fn done_kernels(
        &self,
        device: &DeviceFingerprint,
        template: &TemplateKey,
        problem_key: &str,
    ) -> Result<BTreeSet<String>, CacheError> {
        self.read(|c| {
            let err = self.sql("listing finished kernels");
            let mut stmt = c
                .prepare_cached(
                    "SELECT kernel_name FROM results WHERE device_id = ?1 AND template_name = ?2 \
                     AND template_hash = ?3 AND problem_key = ?4",
                )
                .map_err(&err)?;
            let rows = stmt
                .query_map(
                    params![
                        device.id().as_str(),
                        template.name,
                        template.source_hash,
                        problem_key
                    ],
                    |r| r.get::<_, String>(0),
                )
                .map_err(&err)?;
            rows.collect::<Result<_, _>>().map_err(&err)
        })
    }

    /// Every winner, ordered by device, template, problem key.
    pub fn list_winners(&self) -> Result<Vec<WinnerRow>, CacheError> {
        let sql = format!(
            "{} ORDER BY d.name, d.arch, w.device_id, w.template_name, w.template_hash, w.problem_key",
            table::winner_select()
        );
        self.read(|c| {
            let err = self.sql("listing winners");
            let mut stmt = c.prepare_cached(&sql).map_err(&err)?;
            let rows = stmt.query_map([], table::decode_winner).map_err(&err)?;
            rows.map(|r| self.own("winners", r.map_err(&err)?, WinnerRow::validate))
                .collect()
        })
    }

    /// Every device the cache has rows for.
    pub fn devices(&self) -> Result<Vec<DeviceFingerprint>, CacheError> {
        self.read(|c| {
            let err = self.sql("listing devices");
            let mut stmt = c
                .prepare_cached(
                    "SELECT name, arch, sm_count, driver, toolchain, simulated FROM devices \
                     ORDER BY name, arch, id",
                )
                .map_err(&err)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(DeviceFingerprint {
                        name: r.get(0)?,
                        arch: r.get(1)?,
                        sm_count: r.get(2)?,
                        driver: r.get(3)?,
                        toolchain: r.get(4)?,
                        simulated: r.get(5)?,
                    })
                })
                .map_err(&err)?;
            rows.collect::<Result<_, _>>().map_err(&err)
        })
    }

    /// Row counts, for `tessera cache ls`.
    pub fn summary(&self) -> Result<CacheSummary, CacheError> {
        self.read(|c| {
            let err = self.sql("counting rows");
            let count = |t: &str| -> Result<u64, CacheError> {
                c.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| {
                    r.get::<_, i64>(0)
                })
                .map(|n| n.max(0) as u64)
                .map_err(&err)
            };
            let mut by_status = BTreeMap::new();
            let mut stmt = c
                .prepare("SELECT status, count(*) FROM results GROUP BY status")
                .map_err(&err)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .map_err(&err)?;
            for row in rows {
                let (word, n) = row.map_err(&err)?;
                let status: Status =
                    word.parse()
                        .map_err(|e: FieldError| CacheError::Malformed {
                            path: self.path.clone(),
                            table: "results",
                            detail: e.to_string(),
                        })?;
                by_status.insert(status, n.max(0) as u64);
            }
            Ok(CacheSummary {
                path: self.path.clone(),
                schema_version: schema::user_version(c).map_err(&err)?,
                devices: count("devices")?,
                templates: count("templates")?,
                problems: count("problems")?,
                results: count("results")?,
                winners: count("winners")?,
                results_by_status: by_status,
            })
        })
    }
}

/// A little pseudo-random extra wait, so competing writers do not retry in lockstep.
fn jitter(base: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mix = nanos ^ std::process::id().wrapping_mul(2_654_435_761);
    base.mul_f64(f64::from(mix % 1000) / 1000.0)
}

/// Checks an existing file before anything may write to it: SQLite header, readable schema,
/// version, application id, `quick_check`. Uses a read-only connection. If the file is
/// damaged, the empty `-wal` and the `-shm` that this connection created for a WAL-mode file
/// are removed again, so a damaged file is left exactly as it was found. (For a healthy file
/// refused as newer or foreign they stay: another program may be using them.)
pub(crate) fn inspect_existing(path: &Path, options: &OpenOptions) -> Result<(), CacheError> {
    let side: Vec<PathBuf> = ["-wal", "-shm"]
        .iter()
        .map(|s| {
            let mut p = path.as_os_str().to_owned();
            p.push(s);
            PathBuf::from(p)
        })
        .filter(|p| fs::symlink_metadata(p).is_err())
        .collect();
    let verdict = inspect(path, options);
    if let Err(CacheError::Corrupt { .. }) = verdict {
        let [wal, shm] = ["-wal", "-shm"].map(|s| {
            let mut p = path.as_os_str().to_owned();
            p.push(s);
            PathBuf::from(p)
        });
        let empty_wal = fs::metadata(&wal).is_ok_and(|m| m.len() == 0);
        if side.contains(&wal) && empty_wal {
            let _ = fs::remove_file(&wal);
        }
        if side.contains(&shm) && fs::symlink_metadata(&wal).is_err() {
            let _ = fs::remove_file(&shm);
        }
    }
    verdict
}

fn inspect(path: &Path, options: &OpenOptions) -> Result<(), CacheError> {
    let corrupt = |detail: String| CacheError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    check_header(path)?;
    let conn = read_only_connection(path)?;
    conn.busy_timeout(options.busy_timeout)
        .map_err(|e| CacheError::sqlite(path, "configuring", e))?;
    // One statement, one snapshot: another process may commit the schema of a new cache
    // between two separate reads, which would look like "version 0 with tables present".
    let (version, app_id, objects): (i64, i64, i64) = conn
        .query_row(
            "SELECT (SELECT user_version FROM pragma_user_version), \
                    (SELECT application_id FROM pragma_application_id), \
                    (SELECT count(*) FROM sqlite_schema)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .map_err(|e| CacheError::sqlite(path, "reading the schema version", e))?;
    if version > 0 && app_id != APPLICATION_ID {
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
    if version == 0 && objects > 0 {
        return Err(CacheError::Foreign {
            path: path.to_path_buf(),
            detail: format!(
                "schema version 0 but {objects} tables, indexes or views already present"
            ),
        });
    }
    let mut stmt = conn
        .prepare("PRAGMA quick_check(5)")
        .map_err(|e| CacheError::sqlite(path, "checking integrity", e))?;
    let findings: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| CacheError::sqlite(path, "checking integrity", e))?;
    if findings != ["ok"] {
        return Err(corrupt(format!("integrity check: {}", findings.join("; "))));
    }
    Ok(())
}

/// A connection that can only read `path`. In a directory this process can't write, SQLite
/// could not create the `-wal`/`-shm` files a WAL-mode file needs, so the file is opened as
/// immutable: SQLite reads the main file as it is (a writer would need those files too, so
/// there is none of this process's users; changes another user's writer has not yet
/// checkpointed are not seen).
fn read_only_connection(path: &Path) -> Result<Connection, CacheError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let immutable = match (dir_writable(path), path.to_str()) {
        (Ok(()), _) | (Err(_), None) => None,
        (Err(_), Some(p)) => Some(immutable_uri(p)),
    };
    match immutable {
        None => Connection::open_with_flags(path, flags),
        Some(uri) => Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI),
    }
    .map_err(|e| CacheError::sqlite(path, "opening", e))
}

/// `file:PATH?immutable=1`, with the characters a URI path can't hold escaped.
fn immutable_uri(path: &str) -> String {
    let mut uri = String::from("file:");
    for c in path.chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    uri
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Whether a new file can be created beside `path` (SQLite creates its journal there): tried
/// for real with a probe file that is removed at once, because permission bits don't tell
/// (root, read-only mounts, immutable directories).
fn dir_writable(path: &Path) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map_or_else(|| "cache".into(), |n| n.to_string_lossy().into_owned());
    static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let probe = parent_dir(path).join(format!(".{name}.{}.{n}.probe", std::process::id()));
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    fs::remove_file(&probe)
}

/// A cache about to be opened for writing: the directory must take new files.
fn check_dir_writable(path: &Path) -> Result<(), CacheError> {
    dir_writable(path).map_err(|source| CacheError::NotWritable {
        path: parent_dir(path).to_path_buf(),
        what: "directory",
        source,
    })
}

/// An existing cache about to be opened for writing: the file and its directory must both
/// be writable. Opening for writing changes nothing in the file.
fn check_writable(path: &Path) -> Result<(), CacheError> {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|source| CacheError::NotWritable {
            path: path.to_path_buf(),
            what: "file",
            source,
        })?;
    check_dir_writable(path)
}

/// A non-empty file must start with the SQLite header; an empty one is a new database.
fn check_header(path: &Path) -> Result<(), CacheError> {
    let mut head = Vec::with_capacity(100);
    fs::File::open(path)
        .and_then(|f| f.take(100).read_to_end(&mut head))
        .map_err(|e| CacheError::io("reading", path, e))?;
    let corrupt = |detail: String| CacheError::Corrupt {
        path: path.to_path_buf(),
        detail,
    };
    match head.len() {
        0 => Ok(()),
        n if n < 100 => Err(corrupt(format!(
            "only {n} bytes, shorter than a SQLite header"
        ))),
        _ if head[..16] != SQLITE_MAGIC[..] => {
            Err(corrupt("does not start with the SQLite header".into()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::{device, ok_row};
    use crate::record::Timing;

    fn temp() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/dir/tune.db");
        (dir, p)
    }

    #[test]
    fn open_creates_parents_schema_and_wal() {
        let (_d, p) = temp();
        let c = Cache::open(&p).unwrap();
        assert!(p.exists());
        assert_eq!(c.schema_version().unwrap(), SCHEMA_VERSION);
        let mode: String = c
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(c);
        Cache::open(&p).unwrap(); // reopening is fine
    }

    #[test]
    fn create_false_refuses_a_missing_file() {
        let (_d, p) = temp();
        let o = OpenOptions {
            create: false,
            ..OpenOptions::default()
        };
        assert!(matches!(
            Cache::open_with(&p, &o),
            Err(CacheError::NotFound { .. })
        ));
        assert!(!p.exists());
    }

    #[test]
    fn read_only_opens_never_create_or_write() {
        let (_d, p) = temp();
        assert!(matches!(
            Cache::open_read_only(&p),
            Err(CacheError::NotFound { .. })
        ));
        assert!(!p.exists());
        Cache::open(&p)
            .unwrap()
            .record_result(&ok_row("k_a", 1.0))
            .unwrap();
        let r = Cache::open_read_only(&p).unwrap();
        assert_eq!(r.summary().unwrap().results, 1);
        assert!(r.record_result(&ok_row("k_b", 1.0)).is_err());
        assert_eq!(Cache::open(&p).unwrap().summary().unwrap().results, 1);
    }

    #[test]
    fn immutable_uris_escape_what_a_uri_path_cannot_hold() {
        assert_eq!(
            immutable_uri("/a b/50%?#.db"),
            "file:/a b/50%25%3f%23.db?immutable=1"
        );
    }

    #[test]
    fn record_and_look_up() {
        let (_d, p) = temp();
        let c = Cache::open(&p).unwrap();
        let a = ok_row("k_a", 1.0);
        let b = ok_row("k_b", 0.5);
        let mut bad = ok_row("k_c", 0.1);
        bad.status = Status::CompileError;
        bad.reason = "ptxas: out of registers".into();
        bad.timing = None;
        c.record_results(&[a.clone(), b.clone(), bad.clone()])
            .unwrap();
        let got = c.results_for(&a.problem.key, &a.device, None).unwrap();
        let names: Vec<_> = got.iter().map(|r| r.kernel_name.as_str()).collect();
        assert_eq!(names, ["k_b", "k_a", "k_c"]);
        assert_eq!(got[0], b);
        assert_eq!(got[2], bad);
        assert!(c
            .has_result(&a.device, &a.template, &a.problem.key, "k_c")
            .unwrap());
        assert!(!c
            .has_result(&a.device, &a.template, &a.problem.key, "k_z")
            .unwrap());
        assert_eq!(
            c.done_kernels(&a.device, &a.template, &a.problem.key)
                .unwrap(),
            ["k_a", "k_b", "k_c"].map(String::from).into()
        );
        let other_template = TemplateKey::new("gemm", "h2");
        assert!(c
            .results_for(&a.problem.key, &a.device, Some(&other_template))
            .unwrap()
            .is_empty());
        assert_eq!(
            c.results_for(&a.problem.key, &a.device, Some(&a.template))
                .unwrap()
                .len(),
            3
        );
    }

    #[test]
    fn re_recording_replaces_the_row() {
        let (_d, p) = temp();
        let c = Cache::open(&p).unwrap();
        let mut r = ok_row("k", 1.0);
        c.record_result(&r).unwrap();
        r.timing = Some(Timing {
            median_ms: 0.9,
            p10_ms: 0.85,
            p90_ms: 0.95,
            samples: 7,
        });
        c.record_result(&r).unwrap();
        let got = c.results_for(&r.problem.key, &r.device, None).unwrap();
        assert_eq!(got, vec![r]);
    }

    #[test]
    fn invalid_rows_are_refused_and_nothing_is_written() {
        let (_d, p) = temp();
        let c = Cache::open(&p).unwrap();
        let good = ok_row("k_good", 1.0);
        let mut bad = ok_row("k bad", 1.0);
        bad.kernel_name = "k; DROP TABLE results".into();
        let e = c.record_results(&[good.clone(), bad]).unwrap_err();
        assert!(
            matches!(e, CacheError::Invalid { what: "result", .. }),
            "{e}"
        );
        assert!(c
            .results_for(&good.problem.key, &good.device, None)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_winner_is_found_only_under_its_exact_key() {
        let (_d, p) = temp();
        let c = Cache::open(&p).unwrap();
        let w = WinnerRow::from_result(&ok_row("k_a", 1.0)).unwrap();
        c.record_winner(&w).unwrap();
        let key = &w.problem.key;
        assert_eq!(
            c.winner(&w.device, &w.template, key).unwrap(),
            Some(w.clone())
        );
        let other_toolchain = DeviceFingerprint {
            toolchain: "nvrtc 12.8".into(),
            ..device()
        };
        assert_eq!(c.winner(&other_toolchain, &w.template, key).unwrap(), None);
        let other_driver = DeviceFingerprint {
            driver: "575.1".into(),
            ..device()
        };
        assert_eq!(c.winner(&other_driver, &w.template, key).unwrap(), None);
        let other_gpu = DeviceFingerprint {
            name: "NVIDIA A100-SXM4-80GB".into(),
            arch: "sm_80".into(),
            ..device()
        };
        assert_eq!(c.winner(&other_gpu, &w.template, key).unwrap(), None);
        assert_eq!(
            c.winner(&w.device, &TemplateKey::new("gemm", "h2"), key)
                .unwrap(),
            None
        );
        assert_eq!(
            c.winner(&w.device, &w.template, "gemm m=1 n=1 k=1 f16->f16 rcr")
                .unwrap(),
            None
        );
        assert_eq!(c.list_winners().unwrap(), vec![w]);
    }

    #[test]
    fn summary_counts_rows() {
        let (_d, p) = temp();
        let c = Cache::open(&p).unwrap();
        let mut t = ok_row("k_t", 1.0);
        t.status = Status::Timeout;
        t.reason = "over 2 s".into();
        c.record_results(&[ok_row("k_a", 1.0), t]).unwrap();
        c.record_winner(&WinnerRow::from_result(&ok_row("k_a", 1.0)).unwrap())
            .unwrap();
        let s = c.summary().unwrap();
        assert_eq!(
            (s.devices, s.templates, s.problems, s.results, s.winners),
            (1, 1, 1, 2, 1)
        );
        assert_eq!(s.results_by_status[&Status::Ok], 1);
        assert_eq!(s.results_by_status[&Status::Timeout], 1);
        assert_eq!(c.devices().unwrap(), vec![device()]);
    }

    #[test]
    fn a_tampered_row_is_reported_not_panicked_on() {
        let (_d, p) = temp();
        let c = Cache::open(&p).unwrap();
        let r = ok_row("k_a", 1.0);
        c.record_result(&r).unwrap();
        c.conn
            .execute("UPDATE results SET status = 'fast'", [])
            .unwrap();
        let e = c.results_for(&r.problem.key, &r.device, None).unwrap_err();
        assert!(
            matches!(
                e,
                CacheError::Malformed {
                    table: "results",
                    ..
                }
            ),
            "{e}"
        );
        c.conn
            .execute("UPDATE results SET status = 'ok', median_ms = -1", [])
            .unwrap();
        assert!(c.results_for(&r.problem.key, &r.device, None).is_err());
    }

    #[test]
    fn a_directory_is_not_a_cache() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Cache::open(dir.path()),
            Err(CacheError::Io { .. })
        ));
    }

    #[test]
    fn an_empty_file_becomes_a_new_cache() {
        let (_d, p) = temp();
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, b"").unwrap();
        let c = Cache::open(&p).unwrap();
        assert_eq!(c.schema_version().unwrap(), SCHEMA_VERSION);
    }
}
