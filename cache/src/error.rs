//! The cache's error type.
//!
//! Owns [`CacheError`], the one error every fallible operation of this crate returns, and
//! [`FieldError`], the reason one value was refused. Per contract 3, only infrastructure
//! problems are errors: a corrupt or foreign database file, a database from a newer Tessera,
//! I/O, SQLite failing, a row the caller asked to store that is not valid. A bad row inside an
//! imported file is not an error: it is skipped and reported (see [`crate::share`]).
//!
//! Depends on no other module of this crate and on none of Tessera's crates.

use std::path::PathBuf;
use std::time::Duration;

/// Why one value (of a row being stored, or read from a file) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// The field, e.g. `kernel_name` or `timing.p90_ms`.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl FieldError {
    pub(crate) fn new(field: &'static str, reason: impl Into<String>) -> FieldError {
        FieldError {
            field,
            reason: reason.into(),
        }
    }
}

/// Everything that can go wrong with a cache file.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The file exists but is not a readable SQLite database (garbage, truncated, damaged).
    /// The file is never modified, overwritten or recreated.
    #[error(
        "cache file {path} is damaged or not a SQLite database ({detail}). \
         It was left untouched. Move it aside (e.g. `mv '{path}' '{path}.bad'`) to start a new \
         cache there, or choose another cache path (--cache or TESSERA_CACHE)",
        path = path.display()
    )]
    Corrupt { path: PathBuf, detail: String },

    /// The file is a healthy SQLite database, but not a Tessera cache.
    #[error(
        "{path} is a SQLite database but not a Tessera cache ({detail}). It was left \
         untouched; choose another cache path (--cache or TESSERA_CACHE)",
        path = path.display()
    )]
    Foreign { path: PathBuf, detail: String },

    /// The file was written by a newer Tessera with a schema this build does not know.
    #[error(
        "cache file {path} has schema version {found}, newer than the {supported} this build of \
         Tessera understands. It was left untouched; upgrade Tessera or use another cache path",
        path = path.display()
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },

    /// An imported/merged file is a Tessera cache, but its tables are not the expected ones.
    #[error("{path} is not a usable Tessera cache: {detail}", path = path.display())]
    Incompatible { path: PathBuf, detail: String },

    /// A row in this cache's own file fails validation; something other than Tessera wrote it.
    #[error(
        "cache file {path} holds a malformed {table} row: {detail}. Run `tessera cache gc` or \
         move the file aside",
        path = path.display()
    )]
    Malformed {
        path: PathBuf,
        table: &'static str,
        detail: String,
    },

    /// The caller asked to store a row that is not valid. Nothing was written.
    #[error("refusing to store an invalid {what}: {source}")]
    Invalid {
        what: &'static str,
        #[source]
        source: FieldError,
    },

    /// Other processes kept the database locked longer than the retry budget.
    #[error(
        "cache file {path} stayed locked by other writers for {waited:?}; try again",
        path = path.display()
    )]
    Busy { path: PathBuf, waited: Duration },

    /// No cache path could be determined (no explicit path, no TESSERA_CACHE, no home).
    #[error("no cache path: pass --cache PATH or set TESSERA_CACHE (no home directory is known)")]
    NoCachePath,

    /// The cache file does not exist and creating it was not allowed.
    #[error("cache file {path} does not exist", path = path.display())]
    NotFound { path: PathBuf },

    /// A command that writes the cache was given a file or directory it can't write. Nothing
    /// was measured or changed.
    #[error(
        "cache {what} {path} is not writable ({source}); fix its permissions or choose another \
         cache path (--cache or TESSERA_CACHE). Reading it (`tessera cache ls`, `why`, \
         `export`, `tessera plot`) still works",
        path = path.display()
    )]
    NotWritable {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },

    /// A cache opened read-only has an older schema; only a command that writes upgrades it.
    #[error(
        "cache file {path} has schema version {found}, older than this build's {current}, and \
         reading does not upgrade it: run a command that writes it (e.g. `tessera cache gc`) \
         where it is writable",
        path = path.display()
    )]
    Outdated {
        path: PathBuf,
        found: i64,
        current: i64,
    },

    /// An output file (export, merge) already exists; it is never overwritten.
    #[error("{path} already exists; it was not overwritten", path = path.display())]
    OutputExists { path: PathBuf },

    /// A file-system operation failed.
    #[error("{op} {path}: {source}", path = path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// SQLite itself failed.
    #[error("cache {path}: {context}: {source}", path = path.display())]
    Sqlite {
        path: PathBuf,
        context: &'static str,
        #[source]
        source: rusqlite::Error,
    },
}

impl CacheError {
    /// Whether this is SQLite saying another connection holds the lock (worth retrying).
    pub(crate) fn is_busy(&self) -> bool {
        match self {
            CacheError::Sqlite { source, .. } => is_busy(source),
            _ => false,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CacheError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Wraps a SQLite error; damage reported by SQLite becomes [`CacheError::Corrupt`].
    pub(crate) fn sqlite(
        path: impl Into<PathBuf>,
        context: &'static str,
        e: rusqlite::Error,
    ) -> Self {
        let path = path.into();
        if is_damage(&e) {
            return CacheError::Corrupt {
                path,
                detail: format!("{context}: {e}"),
            };
        }
        CacheError::Sqlite {
            path,
            context,
            source: e,
        }
    }
}

pub(crate) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_message_says_untouched_and_how_to_move_aside() {
        let e = CacheError::Corrupt {
            path: "/tmp/x/tune.db".into(),
            detail: "file is not a database".into(),
        };
        let s = e.to_string();
        assert!(s.contains("left untouched"), "{s}");
        assert!(
            s.contains("mv '/tmp/x/tune.db' '/tmp/x/tune.db.bad'"),
            "{s}"
        );
        assert!(s.contains("TESSERA_CACHE"), "{s}");
    }

    #[test]
    fn sqlite_damage_codes_become_corrupt() {
        let e = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_NOTADB),
            None,
        );
        assert!(matches!(
            CacheError::sqlite("/x", "open", e),
            CacheError::Corrupt { .. }
        ));
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert!(CacheError::sqlite("/x", "write", busy).is_busy());
    }
}
