//! Where the cache file lives.
//!
//! Owns [`CacheSettings`] and the default-path rule: an explicit path (`--cache`) wins, then
//! `TESSERA_CACHE`, then `$XDG_CACHE_HOME/tessera/tune.db`, then `~/.cache/tessera/tune.db`.
//! The crate never reads the environment itself: the binary fills the settings, directly or
//! through [`CacheSettings::from_lookup`] with its own lookup function.
//!
//! Depends on [`crate::error`].

use std::ffi::OsString;
use std::path::PathBuf;

use crate::error::CacheError;

/// The inputs to the cache-path rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheSettings {
    /// `--cache PATH` on the command line.
    pub explicit_path: Option<PathBuf>,
    /// The value of `TESSERA_CACHE`.
    pub env_path: Option<PathBuf>,
    /// The value of `XDG_CACHE_HOME` (used only when absolute, per the XDG spec).
    pub xdg_cache_home: Option<PathBuf>,
    /// The user's home directory.
    pub home: Option<PathBuf>,
}

impl CacheSettings {
    /// Settings from an environment lookup (the binary passes `|k| std::env::var_os(k)`) and
    /// an optional explicit path. Empty values count as unset.
    pub fn from_lookup(
        explicit_path: Option<PathBuf>,
        lookup: impl Fn(&str) -> Option<OsString>,
    ) -> Self {
        let get = |k: &str| lookup(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        CacheSettings {
            explicit_path: explicit_path.filter(|p| !p.as_os_str().is_empty()),
            env_path: get("TESSERA_CACHE"),
            xdg_cache_home: get("XDG_CACHE_HOME"),
            home: get("HOME"),
        }
    }

    /// The cache path these settings select.
    pub fn path(&self) -> Result<PathBuf, CacheError> {
        if let Some(p) = self.explicit_path.clone().or_else(|| self.env_path.clone()) {
            return Ok(p);
        }
        if let Some(x) = self.xdg_cache_home.as_ref().filter(|x| x.is_absolute()) {
            return Ok(x.join("tessera").join("tune.db"));
        }
        match &self.home {
            Some(h) => Ok(h.join(".cache").join("tessera").join("tune.db")),
            None => Err(CacheError::NoCachePath),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn precedence_is_explicit_env_xdg_home() {
        let all = [
            ("TESSERA_CACHE", "/e/t.db"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ];
        let s = CacheSettings::from_lookup(Some("/c/t.db".into()), env(&all));
        assert_eq!(s.path().unwrap(), Path::new("/c/t.db"));
        let s = CacheSettings::from_lookup(None, env(&all));
        assert_eq!(s.path().unwrap(), Path::new("/e/t.db"));
        let s = CacheSettings::from_lookup(None, env(&all[1..]));
        assert_eq!(s.path().unwrap(), Path::new("/x/tessera/tune.db"));
        let s = CacheSettings::from_lookup(None, env(&all[2..]));
        assert_eq!(s.path().unwrap(), Path::new("/h/.cache/tessera/tune.db"));
    }

    #[test]
    fn empty_and_relative_values_are_ignored() {
        let vars = [
            ("TESSERA_CACHE", ""),
            ("XDG_CACHE_HOME", "rel"),
            ("HOME", "/h"),
        ];
        let s = CacheSettings::from_lookup(Some(PathBuf::new()), env(&vars));
        assert_eq!(s.path().unwrap(), Path::new("/h/.cache/tessera/tune.db"));
    }

    #[test]
    fn no_home_is_a_clear_error() {
        let e = CacheSettings::default().path().unwrap_err();
        assert!(matches!(e, CacheError::NoCachePath));
        assert!(e.to_string().contains("TESSERA_CACHE"));
    }
}
