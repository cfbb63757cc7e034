//! A device's identity as shown to people (`tessera devices`) and as used in cache keys.
//!
//! This module depends on `tessera-dsl` (targets) and `serde`; it queries nothing.

use serde::{Deserialize, Serialize};
use tessera_dsl::Target;

/// What a device is: enough to print a device list and to fingerprint cache rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Ordinal among the driver's devices (0 for the simulated device).
    pub ordinal: u32,
    pub name: String,
    /// The Tessera target code is compiled for; `None` when the GPU's architecture is not one
    /// (then it can be listed but not opened).
    pub target: Option<Target>,
    /// The hardware architecture as the vendor names it (`sm_90`, `sm_86`).
    pub arch: String,
    pub sm_count: u32,
    pub memory_bytes: u64,
    /// Driver version, e.g. `CUDA 13.0 (13000)`; `simulated` for the simulated device.
    pub driver_version: String,
    /// Runtime compiler and version, e.g. `nvrtc 13.0`; `none` when unavailable.
    pub toolchain: String,
    /// True for the simulated device: its timings are a cost model, not measurements.
    pub simulated: bool,
}

impl DeviceInfo {
    /// The device part of a cache key: name, architecture, SM count, driver (and `sim:` for the
    /// simulated device, so simulated rows can never be mistaken for measured ones).
    pub fn fingerprint(&self) -> String {
        format!(
            "{}{}|{}|{}sm|{}",
            if self.simulated { "sim:" } else { "" },
            self.name,
            self.target.map(|t| t.name()).unwrap_or(self.arch.as_str()),
            self.sm_count,
            self.driver_version
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_marks_simulation() {
        let mut info = DeviceInfo {
            ordinal: 0,
            name: "NVIDIA H100 80GB HBM3".into(),
            target: Some(Target::Sm90a),
            arch: "sm_90".into(),
            sm_count: 132,
            memory_bytes: 80 << 30,
            driver_version: "CUDA 13.0 (13000)".into(),
            toolchain: "nvrtc 13.0".into(),
            simulated: false,
        };
        assert_eq!(
            info.fingerprint(),
            "NVIDIA H100 80GB HBM3|sm_90a|132sm|CUDA 13.0 (13000)"
        );
        info.simulated = true;
        assert!(info.fingerprint().starts_with("sim:"));
        let json = serde_json::to_string(&info).unwrap();
        assert_eq!(serde_json::from_str::<DeviceInfo>(&json).unwrap(), info);
    }
}
