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
