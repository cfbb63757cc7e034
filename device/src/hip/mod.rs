//! AMD GPUs through the HIP runtime and hiprtc, both loaded at run time (`libloading`), so a
//! binary built here runs on machines with or without ROCm.
//!
//! - [`HipDevice`]: the [`Device`](crate::Device) for one AMD GPU (compile, memory, launch,
//!   event timing), mirroring [`CudaDevice`](crate::cuda::CudaDevice).
//! - [`list`]: every AMD GPU the runtime sees, for `tessera devices` and `--gpu mi250|mi300`.
//! - [`compile`]: HIP source to a loadable code object (hiprtc, or hipcc without it).
//! - [`target_for_arch`]: `gcnArchName` (`gfx90a:sramecc+:xnack-`) to a Tessera target.
//!
//! Launch checking and argument packing are the crate's shared ones ([`crate::launch`]); this
//! module owns only the HIP calls. It must not depend on cudarc, on anything under
//! [`crate::cuda`], or be reached by the simulated device. Every test that needs a real AMD GPU
//! is a `gpu_hip_*` test (`device/tests/gpu_hip.rs`, feature `gpu`); everything here is
//! tested without one.

mod api;
mod device;
mod props;
mod rtc;

pub use device::HipDevice;
pub use props::target_for_arch;
pub use rtc::{base_options, compile, toolchain};

use crate::error::DeviceError;
use crate::info::DeviceInfo;

/// Every AMD GPU the HIP runtime sees (including ones Tessera can't target: their `target` is
/// `None`). No runtime is `NoHipRuntime`; a runtime without GPUs is an empty list.
pub fn list() -> Result<Vec<DeviceInfo>, DeviceError> {
    let hip = match props::init() {
        Ok(hip) => hip,
        Err(DeviceError::NoDevice { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let version = props::runtime_version(hip)?;
    let toolchain = toolchain().unwrap_or_else(|_| "none (hiprtc not found)".into());
    (0..props::device_count(hip)?)
        .map(|i| {
            Ok(props::info(
                &props::props(hip, i)?,
                i,
                version.clone(),
                toolchain.clone(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DeviceConfig;

    /// Without ROCm or an AMD GPU (this machine, CI) opening and listing are typed
    /// infrastructure errors (or an empty list), never panics; with one, they work.
    #[test]
    fn open_and_list_never_panic() {
        match HipDevice::open(&DeviceConfig::without_cache()) {
            Ok(d) => eprintln!("found {}", crate::Device::info(&d).name),
            Err(e) => {
                assert!(e.is_infrastructure(), "{e:?}");
                eprintln!("no AMD GPU here: {e}");
            }
        }
        match list() {
            Ok(devices) => eprintln!("{} AMD GPU(s)", devices.len()),
            Err(e) => assert!(
                matches!(
                    e,
                    DeviceError::NoHipRuntime { .. }
                        | DeviceError::HipTooOld { .. }
                        | DeviceError::Hip { .. }
                ),
                "{e:?}"
            ),
        }
    }
}
