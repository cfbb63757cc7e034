//! NVIDIA GPUs through cudarc: the driver API and NVRTC, both loaded at run time.
//!
//! - [`CudaDevice`]: the [`Device`](crate::Device) for one GPU (compile, memory, launch, timing).
//! - [`list`]: every GPU the driver sees, for `tessera devices`.
//! - [`nvrtc_compile`]: compile CUDA source to a CUBIN with registers/spills/shared memory,
//!   needing only libnvrtc (no driver, no GPU): the CLI's `emit --compile` and CI use it.
//!
//! Resource usage comes from `ptxas -v` output in NVRTC's log ([`ptxas_log`]), completed from
//! the CUBIN's `.nv.info` records ([`cubin`]) and, once loaded, from `cuFuncGetAttribute`.
//!
//! This module depends on cudarc and this crate's vocabulary; nothing here may be reached by
//! the simulated device.

pub mod cubin;
mod device;
mod driver;
mod l2_scrub;
mod loader;
mod nvrtc;
pub mod ptxas_log;
mod tensor_map;

pub use device::CudaDevice;
pub use driver::target_for;
pub use nvrtc::{
    arch_for, base_options, nvrtc_available, nvrtc_compile, nvrtc_compile_cached, nvrtc_version,
    toolchain,
};

use crate::error::DeviceError;
use crate::info::DeviceInfo;

/// Every GPU the driver sees (including ones Tessera can't target: their `target` is `None`).
/// No driver is `NoDriver`; a driver without GPUs is an empty list.
pub fn list() -> Result<Vec<DeviceInfo>, DeviceError> {
    match driver::init() {
        Ok(()) => {}
        Err(DeviceError::NoDevice { .. }) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    }
    let version = driver::driver_version()?;
    let toolchain = toolchain().unwrap_or_else(|_| "none (NVRTC not found)".into());
    (0..driver::device_count()?)
        .map(|i| {
            Ok(driver::info(
                &driver::props(i)?,
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

    /// Without a GPU (this machine, CI) opening and listing are typed errors, never panics;
    /// with one, they work.
    #[test]
    fn open_and_list_never_panic() {
        match CudaDevice::open(&DeviceConfig::without_cache()) {
            Ok(d) => eprintln!("found {}", crate::Device::info(&d).name),
            Err(e) => {
                assert!(e.is_infrastructure(), "{e:?}");
                eprintln!("no GPU here: {e}");
            }
        }
        match list() {
            Ok(devices) => eprintln!("{} GPU(s)", devices.len()),
            Err(e) => assert!(
                matches!(e, DeviceError::NoDriver | DeviceError::DriverTooOld { .. }),
                "{e:?}"
            ),
        }
    }
}
