//! Settings for opening a device, in one struct. This is the only place the device layer reads
//! the environment (to find the default module cache folder); everything else takes its
//! settings from a [`DeviceConfig`].
//!
//! This module depends on nothing but `std`.

use std::path::PathBuf;

/// How to open a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConfig {
    /// Which GPU (driver ordinal).
    pub ordinal: u32,
    /// Folder of the on-disk module cache; `None` disables it (every compile runs NVRTC).
    pub module_cache_dir: Option<PathBuf>,
    /// Bytes read between timed runs to flush L2 (a read leaves no dirty lines for the timed
    /// kernel to write back); `None` means twice the device's L2 size.
    pub l2_flush_bytes: Option<u64>,
}

impl Default for DeviceConfig {
    /// Ordinal 0, the default module cache folder, L2 flush of twice the L2 size.
    fn default() -> Self {
        DeviceConfig {
            ordinal: 0,
            module_cache_dir: default_module_cache_dir(),
            l2_flush_bytes: None,
        }
    }
}

impl DeviceConfig {
    /// Defaults with no module cache (tests, one-off runs).
    pub fn without_cache() -> Self {
        DeviceConfig {
            module_cache_dir: None,
            ..DeviceConfig::default()
        }
    }
}

/// `$XDG_CACHE_HOME/tessera/modules`, else `$HOME/.cache/tessera/modules`; `None` when neither
/// variable is set.
pub fn default_module_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("tessera").join("modules"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_cache_disables_it() {
        let c = DeviceConfig::without_cache();
        assert_eq!(c.module_cache_dir, None);
        assert_eq!(c.ordinal, 0);
        if let Some(dir) = default_module_cache_dir() {
            assert!(dir.ends_with("tessera/modules"));
        }
    }
}
