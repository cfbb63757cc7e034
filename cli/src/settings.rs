//! Settings every command shares, read in one place: the cache path (`--cache`, else
//! `TESSERA_CACHE`, else `~/.cache/tessera/tune.db`).

use crate::usage::usage;
use std::path::PathBuf;
use tessera_cache::{Cache, CacheSettings};

/// The cache file these flags and this environment select.
pub fn cache_path(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let settings = CacheSettings::from_lookup(explicit, |k| std::env::var_os(k));
    Cache::default_path(&settings).map_err(usage)
}

/// Open (or create) the selected cache. A corrupt or foreign file is an error that leaves the
/// file untouched.
pub fn open_cache(explicit: Option<PathBuf>) -> anyhow::Result<Cache> {
    let path = cache_path(explicit)?;
    Cache::open(&path).map_err(crate::cache::cache_error)
}

/// Open the selected cache to read it only: read-only when it exists (so a cache in a
/// read-only directory works), else created empty as [`open_cache`] does.
pub fn open_cache_for_reading(explicit: Option<PathBuf>) -> anyhow::Result<Cache> {
    let path = cache_path(explicit)?;
    if path.exists() {
        Cache::open_read_only(&path).map_err(crate::cache::cache_error)
    } else {
        Cache::open(&path).map_err(crate::cache::cache_error)
    }
}

/// A flag of seconds: finite and greater than zero (`inf`, `nan`, `0` and negatives are usage
/// errors, not silently clamped).
pub fn seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(format!(
            "`{s}`: give a finite number of seconds greater than 0"
        ))
    }
}

/// A count flag that must be at least 1 (`--jobs`, `--iters`).
pub fn at_least_one(s: &str) -> Result<u32, String> {
    let v: u32 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a whole number"))?;
    if v >= 1 {
        Ok(v)
    } else {
        Err(format!("`{s}`: give at least 1"))
    }
}
