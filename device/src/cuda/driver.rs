//! The CUDA driver, seen from Tessera: initialisation, device properties, the mapping from a
//! compute capability to a Tessera target, and driver errors turned into readable messages.
//!
//! Nothing here holds state or a context; [`CudaDevice`](super::CudaDevice) builds on it.
//! This module depends on cudarc's driver bindings (through [`loader`](super::loader) first).

use super::loader;
use crate::error::DeviceError;
use crate::info::DeviceInfo;
use cudarc::driver::result::{self as cu, DriverError};
use cudarc::driver::sys;
use sys::CUdevice_attribute_enum as Attr;
use tessera_dsl::{DeviceCaps, Target};

/// `CUDA_ERROR_ILLEGAL_ADDRESS: an illegal memory access was encountered`.
pub(crate) fn describe(e: DriverError) -> String {
    let name = e
        .error_name()
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_else(|_| format!("{:?}", e.0));
    match e.error_string() {
        Ok(s) => format!("{name}: {}", s.to_string_lossy()),
        Err(_) => name,
    }
}

/// A failed driver call that is not about one kernel.
pub(crate) fn call_err(call: &'static str) -> impl Fn(DriverError) -> DeviceError {
    move |e| DeviceError::Driver {
        call,
        message: describe(e),
    }
}

/// Load the driver and initialise it. "No device" is `NoDevice`.
pub(crate) fn init() -> Result<(), DeviceError> {
    loader::driver()?;
    match cu::init() {
        Ok(()) => Ok(()),
        Err(e) if e.0 == sys::CUresult::CUDA_ERROR_NO_DEVICE => Err(DeviceError::NoDevice {
            message: "the NVIDIA driver is installed but reports no GPU".into(),
        }),
        Err(e) => Err(call_err("cuInit")(e)),
    }
}

pub(crate) fn device_count() -> Result<u32, DeviceError> {
    let n = cu::device::get_count().map_err(call_err("cuDeviceGetCount"))?;
    Ok(n.max(0) as u32)
}

/// `CUDA 13.0 (13000)`.
pub(crate) fn driver_version() -> Result<String, DeviceError> {
    let mut v: std::ffi::c_int = 0;
    // SAFETY: the driver was loaded and checked by `init`; the out-pointer is valid.
    unsafe { sys::cuDriverGetVersion(&mut v) }
        .result()
        .map_err(call_err("cuDriverGetVersion"))?;
    Ok(format!("CUDA {}.{} ({v})", v / 1000, (v % 1000) / 10))
}

/// What the driver says about one GPU (no context needed).
#[derive(Debug, Clone)]
pub(crate) struct Props {
    pub name: String,
    pub cc: (u32, u32),
    pub sm_count: u32,
    pub memory_bytes: u64,
    pub smem_optin: u32,
    pub regs_per_sm: u32,
    pub max_threads_per_block: u32,
    pub warp_size: u32,
    pub l2_bytes: u64,
    pub clock_khz: u32,
    pub mem_clock_khz: u32,
    pub bus_width_bits: u32,
}

pub(crate) fn props(ordinal: u32) -> Result<Props, DeviceError> {
    let ord = std::ffi::c_int::try_from(ordinal).map_err(|_| DeviceError::NoDevice {
        message: format!("device ordinal {ordinal} is out of range"),
    })?;
    let dev = cu::device::get(ord).map_err(call_err("cuDeviceGet"))?;
    let attr = |a: Attr| -> Result<u32, DeviceError> {
        // SAFETY: `dev` came from cuDeviceGet.
        let v = unsafe { cu::device::get_attribute(dev, a) }
            .map_err(call_err("cuDeviceGetAttribute"))?;
        Ok(v.max(0) as u32)
    };
    // Clock attributes may be unsupported on some parts; they only feed the roofline.
    let soft = |a: Attr| attr(a).unwrap_or(0);
    Ok(Props {
        name: cu::device::get_name(dev).map_err(call_err("cuDeviceGetName"))?,
        cc: (
            attr(Attr::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
            attr(Attr::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
        ),
        sm_count: attr(Attr::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?,
        // SAFETY: `dev` came from cuDeviceGet.
        memory_bytes: unsafe { cu::device::total_mem(dev) }.map_err(call_err("cuDeviceTotalMem"))?
            as u64,
        smem_optin: attr(Attr::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?,
        regs_per_sm: attr(Attr::CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_MULTIPROCESSOR)?,
        max_threads_per_block: attr(Attr::CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK)?,
        warp_size: attr(Attr::CU_DEVICE_ATTRIBUTE_WARP_SIZE)?,
        l2_bytes: u64::from(attr(Attr::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)?),
        clock_khz: soft(Attr::CU_DEVICE_ATTRIBUTE_CLOCK_RATE),
        mem_clock_khz: soft(Attr::CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE),
        bus_width_bits: soft(Attr::CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH),
    })
}

/// The Tessera target a compute capability runs: 8.x → sm_80 (its CUBIN runs on every 8.x
/// part), 9.0 → sm_90a. Anything else is not a target.
pub fn target_for(cc: (u32, u32)) -> Option<Target> {
    match cc {
        (8, _) => Some(Target::Sm80),
        (9, 0) => Some(Target::Sm90a),
        _ => None,
    }
}

/// Dense f16 tensor FLOPs per SM per clock.
fn f16_flops_per_sm_clock(cc: (u32, u32)) -> f64 {
    match cc {
        (8, 0) => 2048.0,
        (8, _) => 1024.0,
        (9, _) => 4096.0,
        _ => 1024.0,
    }
}

/// Caps of a real GPU: measured limits from the driver, MMA atoms from the target, peak
/// throughput and bandwidth from clocks (the target's nominal figures where clocks are unknown).
pub(crate) fn caps(p: &Props, target: Target) -> DeviceCaps {
    let nominal = target.nominal_caps();
    let peak = if p.clock_khz > 0 {
        f64::from(p.sm_count) * f64::from(p.clock_khz) * 1e3 * f16_flops_per_sm_clock(p.cc) / 1e12
    } else {
        nominal.peak_tflops_f16
    };
    let bandwidth = if p.mem_clock_khz > 0 && p.bus_width_bits > 0 {
        f64::from(p.mem_clock_khz) * 1e3 * 2.0 * f64::from(p.bus_width_bits) / 8.0 / 1e9
    } else {
        nominal.mem_bandwidth_gbs
    };
    DeviceCaps {
        name: p.name.clone(),
        target,
        sm_count: p.sm_count,
        smem_per_block: p.smem_optin,
        regs_per_thread: nominal.regs_per_thread,
        regs_per_sm: p.regs_per_sm,
        max_threads_per_block: p.max_threads_per_block,
        warp_size: p.warp_size,
        mma_atoms: nominal.mma_atoms,
        peak_tflops_f16: peak,
        mem_bandwidth_gbs: bandwidth,
        l2_bytes: p.l2_bytes,
    }
}

pub(crate) fn info(
    p: &Props,
    ordinal: u32,
    driver_version: String,
    toolchain: String,
) -> DeviceInfo {
    DeviceInfo {
        ordinal,
        name: p.name.clone(),
        target: target_for(p.cc),
        arch: format!("sm_{}{}", p.cc.0, p.cc.1),
        sm_count: p.sm_count,
        memory_bytes: p.memory_bytes,
        driver_version,
        toolchain,
        simulated: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compute_capability_to_target() {
        assert_eq!(target_for((8, 0)), Some(Target::Sm80));
        assert_eq!(target_for((8, 9)), Some(Target::Sm80));
        assert_eq!(target_for((9, 0)), Some(Target::Sm90a));
        assert_eq!(target_for((7, 5)), None);
        assert_eq!(target_for((10, 0)), None);
    }

    #[test]
    fn caps_from_h100_like_props() {
        let p = Props {
            name: "NVIDIA H100 80GB HBM3".into(),
            cc: (9, 0),
            sm_count: 132,
            memory_bytes: 80 << 30,
            smem_optin: 232_448,
            regs_per_sm: 65_536,
            max_threads_per_block: 1024,
            warp_size: 32,
            l2_bytes: 50 << 20,
            clock_khz: 1_830_000,
            mem_clock_khz: 2_619_000,
            bus_width_bits: 5120,
        };
        let c = caps(&p, Target::Sm90a);
        assert!(
            (c.peak_tflops_f16 - 989.5).abs() < 1.0,
            "{}",
            c.peak_tflops_f16
        );
        assert!(
            (c.mem_bandwidth_gbs - 3352.3).abs() < 1.0,
            "{}",
            c.mem_bandwidth_gbs
        );
        assert_eq!(c.smem_per_block, 232_448);
        assert_eq!(c.name, "NVIDIA H100 80GB HBM3");
        let unknown_clocks = Props {
            clock_khz: 0,
            mem_clock_khz: 0,
            ..p.clone()
        };
        let c = caps(&unknown_clocks, Target::Sm90a);
        assert_eq!(
            c.peak_tflops_f16,
            Target::Sm90a.nominal_caps().peak_tflops_f16
        );
        let i = info(&p, 0, "CUDA 13.0 (13000)".into(), "nvrtc 13.0".into());
        assert_eq!(
            (i.arch.as_str(), i.target, i.simulated),
            ("sm_90", Some(Target::Sm90a), false)
        );
    }
}
