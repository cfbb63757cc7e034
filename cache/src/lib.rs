//! tessera-cache: the tuning cache every Tessera run reads and writes.
//!
//! It owns one SQLite file (bundled SQLite, WAL journal) holding every candidate's result and
//! every winner, keyed exactly as contract 2 says: device fingerprint (name, arch, SM count,
//! driver, toolchain, simulated), template name + source hash, problem key, kernel name, and
//! the schema version. Per contract 3 failures are rows with a reason, not errors; only
//! infrastructure problems (a corrupt file, a newer schema, I/O) are [`CacheError`]s.
//!
//! * [`store`]: [`Cache`] — opening safely (a damaged file is refused and left untouched),
//!   writing with retry on lock contention, lookups (`winner`, `results_for`, `has_result`).
//! * [`schema`]: tables, version, migrations. [`key`], [`record`]: what a row holds.
//! * [`policy`]: which measurement is kept and which kernel wins (the merge policy).
//! * [`share`]: export / import (untrusted input, validated, never replacing this machine's
//!   measurements by default) / merge / diff; [`refusal`]: why a row was not taken.
//! * [`claims`]: a tuner claims a problem before measuring it (stale claims are taken over)
//!   and locks the GPU it times on.
//! * [`explain`]: `why` a kernel won. [`gc`]: dropping stale template versions.
//! * [`settings`]: where the file lives. [`timestamp`], `field`, `table`: plumbing.
//!
//! It must not depend on any other Tessera crate: it stores plain strings and numbers
//! (names, hashes, `name=value` configs, JSON), and callers convert their own types.
//!
//! ```no_run
//! use tessera_cache::{Cache, CacheSettings};
//! let settings = CacheSettings::from_lookup(None, |k| std::env::var_os(k));
//! let cache = Cache::open(Cache::default_path(&settings)?)?;
//! for w in cache.list_winners()? {
//!     println!("{} -> {} ({:.3} ms)", w.key(), w.kernel_name, w.median_ms);
//! }
//! # Ok::<(), tessera_cache::CacheError>(())
//! ```

pub mod claims;
pub mod error;
pub mod explain;
mod field;
pub mod gc;
pub mod key;
pub mod policy;
pub mod record;
pub mod refusal;
pub mod schema;
pub mod settings;
pub mod share;
pub mod store;
mod table;
pub mod timestamp;

pub use claims::{claim_key, pid_alive, Claim, ClaimOutcome, ClaimOwner, GpuLock};
pub use error::{CacheError, FieldError};
pub use explain::Explanation;
pub use gc::{GcSummary, UnknownTemplates};
pub use key::{DeviceFingerprint, DeviceId, ProblemRecord, TemplateKey, WinnerKey};
pub use record::{
    Candidate, CandidateCheck, Provenance, ResultRow, Status, Throughput, ThroughputUnit, Timing,
    WinnerRow, MAX_TIMING_MS, MIN_TIMING_MS,
};
pub use refusal::{Refusal, RefusalKind};
pub use schema::SCHEMA_VERSION;
pub use settings::CacheSettings;
pub use share::{
    diff, merge, DiffReport, ExportSummary, ImportPolicy, ImportSummary, Incoming, MergeSummary,
    Replacement, SkipLog, Skipped, WinnerChange, WinnerDiff,
};
pub use store::{Cache, CacheSummary, OpenOptions};
pub use timestamp::Timestamp;
