//! AMD GPUs seen from Tessera: runtime initialisation, device properties (name, `gcnArchName`,
//! compute units, LDS, wavefront size, clocks), the mapping from an architecture string to a
//! Tessera target, and the [`DeviceCaps`] and [`DeviceInfo`] built from them.
//!
//! Nothing here holds state; [`HipDevice`](super::HipDevice) builds on it. This module depends
//! on the runtime-loaded bindings ([`api`](super::api)) and `tessera-dsl`'s targets.

use super::api::{self, attr, Hip};
use crate::error::DeviceError;
use crate::info::DeviceInfo;
use std::ffi::{c_char, c_int};
use tessera_dsl::{DeviceCaps, Target};

/// The Tessera target of an AMD architecture as HIP reports it (`gfx90a:sramecc+:xnack-`):
/// the processor before the first `:` (the target features after it do not change which code
/// object loads). gfx90a (MI210/MI250) and gfx942 (MI300) are targets; nothing else is.
pub fn target_for_arch(gcn_arch_name: &str) -> Option<Target> {
    let processor = gcn_arch_name.split(':').next().unwrap_or("").trim();
    match processor {
        "gfx90a" => Some(Target::Gfx90a),
        "gfx942" => Some(Target::Gfx942),
        _ => None,
    }
}

/// Dense f16 matrix FLOPs per compute unit per clock (MFMA): CDNA2 1024, CDNA3 2048.
fn f16_flops_per_cu_clock(target: Target) -> f64 {
    match target {
        Target::Gfx942 => 2048.0,
        _ => 1024.0,
    }
}

/// Load the runtime and initialise it. A runtime that reports no GPU is `NoDevice`.
pub(crate) fn init() -> Result<&'static Hip, DeviceError> {
    let hip = api::runtime()?;
    // SAFETY: hipInit takes flags (0) and may be called more than once.
    match unsafe { (hip.api.hipInit)(0) } {
        api::SUCCESS => Ok(hip),
        code @ (api::ERROR_NO_DEVICE | api::ERROR_INVALID_DEVICE) => Err(DeviceError::NoDevice {
            message: format!(
                "the HIP runtime ({}) reports no AMD GPU ({})",
                hip.library,
                hip.describe(code)
            ),
        }),
        code => Err(DeviceError::Hip {
            call: "hipInit",
            message: hip.describe(code),
        }),
    }
}

/// GPUs the runtime sees (0 when it reports none).
pub(crate) fn device_count(hip: &Hip) -> Result<u32, DeviceError> {
    let mut n: c_int = 0;
    // SAFETY: valid out-pointer.
    match unsafe { (hip.api.hipGetDeviceCount)(&mut n) } {
        api::SUCCESS => Ok(u32::try_from(n).unwrap_or(0)),
        api::ERROR_NO_DEVICE | api::ERROR_INVALID_DEVICE => Ok(0),
        code => Err(DeviceError::Hip {
            call: "hipGetDeviceCount",
            message: hip.describe(code),
        }),
    }
}

/// `HIP 6.2.41133 (60241133)`, from the runtime's version number
/// (major · 10⁷ + minor · 10⁵ + patch).
pub(crate) fn runtime_version(hip: &Hip) -> Result<String, DeviceError> {
    let mut v: c_int = 0;
    // SAFETY: valid out-pointer.
    hip.check("hipRuntimeGetVersion", unsafe {
        (hip.api.hipRuntimeGetVersion)(&mut v)
    })?;
    Ok(format_version(v))
}

fn format_version(v: c_int) -> String {
    format!(
        "HIP {}.{}.{} ({v})",
        v / 10_000_000,
        (v / 100_000) % 100,
        v % 100_000
    )
}

/// What the runtime says about one GPU.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Props {
    pub name: String,
    /// `gcnArchName`, e.g. `gfx90a:sramecc+:xnack-`.
    pub gcn_arch: String,
    pub cu_count: u32,
    pub memory_bytes: u64,
    pub lds_per_block: u32,
    pub regs_per_cu: u32,
    pub max_threads_per_block: u32,
    pub warp_size: u32,
    pub l2_bytes: u64,
    pub clock_khz: u32,
    pub mem_clock_khz: u32,
    pub bus_width_bits: u32,
}

/// The NUL-terminated `gcnArchName` in raw `hipDeviceProp_t` bytes, when it is one: a
/// layout that does not match the library would read some other field, which this refuses.
pub(crate) fn arch_name_in(bytes: &[u8], layout: api::PropsLayout) -> Option<String> {
    let field = bytes.get(layout.gcn_arch_name..layout.gcn_arch_name + 256)?;
    let end = field.iter().position(|&b| b == 0)?;
    let name = std::str::from_utf8(&field[..end]).ok()?;
    name.starts_with("gfx").then(|| name.to_string())
}

pub(crate) fn props(hip: &Hip, ordinal: u32) -> Result<Props, DeviceError> {
    let dev = c_int::try_from(ordinal).map_err(|_| DeviceError::NoDevice {
        message: format!("device ordinal {ordinal} is out of range"),
    })?;
    let attr = |a: c_int, call: &'static str| -> Result<u32, DeviceError> {
        let mut v: c_int = 0;
        // SAFETY: valid out-pointer; `dev` is checked by the runtime.
        hip.check(call, unsafe {
            (hip.api.hipDeviceGetAttribute)(&mut v, a, dev)
        })?;
        Ok(u32::try_from(v).unwrap_or(0))
    };
    // Clocks only feed the roofline; a runtime that does not report them is not an error.
    let soft = |a: c_int| attr(a, "hipDeviceGetAttribute").unwrap_or(0);

    let mut name = [0 as c_char; 256];
    // SAFETY: the buffer holds 256 bytes and the runtime writes at most that many.
    hip.check("hipDeviceGetName", unsafe {
        (hip.api.hipDeviceGetName)(name.as_mut_ptr(), 256, dev)
    })?;
    name[255] = 0;
    // SAFETY: NUL-terminated above.
    let name = unsafe { api::text(name.as_ptr()) };

    // u64 storage: the struct holds size_t fields, so it needs 8-byte alignment.
    let words = hip.props.layout.size.max(4096).div_ceil(8);
    let mut raw = vec![0u64; words];
    // SAFETY: the buffer is zeroed, aligned and larger than the layout the symbol writes.
    hip.check("hipGetDeviceProperties", unsafe {
        (hip.props.get)(raw.as_mut_ptr().cast(), dev)
    })?;
    let bytes: Vec<u8> = raw.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let gcn_arch = arch_name_in(&bytes, hip.props.layout).ok_or_else(|| DeviceError::Hip {
        call: "hipGetDeviceProperties",
        message: format!(
            "GPU {ordinal} ({name}): no gfx architecture name where {} keeps gcnArchName; \
                 this HIP runtime's hipDeviceProp_t layout is not one Tessera knows",
            hip.library
        ),
    })?;

    let mut total: usize = 0;
    // SAFETY: valid out-pointer.
    hip.check("hipDeviceTotalMem", unsafe {
        (hip.api.hipDeviceTotalMem)(&mut total, dev)
    })?;
    Ok(Props {
        name,
        gcn_arch,
        cu_count: attr(attr::MULTIPROCESSOR_COUNT, "hipDeviceGetAttribute")?,
        memory_bytes: total as u64,
        lds_per_block: attr(attr::MAX_SHARED_MEMORY_PER_BLOCK, "hipDeviceGetAttribute")?,
        regs_per_cu: soft(attr::MAX_REGISTERS_PER_MULTIPROCESSOR),
        max_threads_per_block: attr(attr::MAX_THREADS_PER_BLOCK, "hipDeviceGetAttribute")?,
        warp_size: attr(attr::WARP_SIZE, "hipDeviceGetAttribute")?,
        l2_bytes: u64::from(soft(attr::L2_CACHE_SIZE)),
        clock_khz: soft(attr::CLOCK_RATE),
        mem_clock_khz: soft(attr::MEMORY_CLOCK_RATE),
        bus_width_bits: soft(attr::MEMORY_BUS_WIDTH),
    })
}

/// Caps of a real AMD GPU: limits from the runtime (LDS per block, wavefront size, threads
/// per block), MFMA atoms and register file from the target, peak throughput and bandwidth
/// from clocks (the target's nominal figures where clocks are unknown).
pub(crate) fn caps(p: &Props, target: Target) -> DeviceCaps {
    let nominal = target.nominal_caps();
    let peak = if p.clock_khz > 0 {
        f64::from(p.cu_count) * f64::from(p.clock_khz) * 1e3 * f16_flops_per_cu_clock(target) / 1e12
    } else {
        nominal.peak_tflops_f16
    };
    let bandwidth = if p.mem_clock_khz > 0 && p.bus_width_bits > 0 {
        f64::from(p.mem_clock_khz) * 1e3 * 2.0 * f64::from(p.bus_width_bits) / 8.0 / 1e9
    } else {
        nominal.mem_bandwidth_gbs
    };
    let or_nominal = |v: u32, n: u32| if v > 0 { v } else { n };
    DeviceCaps {
        name: p.name.clone(),
        target,
        sm_count: p.cu_count,
        smem_per_block: or_nominal(p.lds_per_block, nominal.smem_per_block),
        regs_per_thread: nominal.regs_per_thread,
        regs_per_sm: or_nominal(p.regs_per_cu, nominal.regs_per_sm),
        max_threads_per_block: or_nominal(p.max_threads_per_block, nominal.max_threads_per_block),
        warp_size: or_nominal(p.warp_size, nominal.warp_size),
        mma_atoms: nominal.mma_atoms,
        peak_tflops_f16: peak,
        mem_bandwidth_gbs: bandwidth,
        l2_bytes: if p.l2_bytes > 0 {
            p.l2_bytes
        } else {
            nominal.l2_bytes
        },
    }
}

pub(crate) fn info(
    p: &Props,
    ordinal: u32,
    runtime_version: String,
    toolchain: String,
) -> DeviceInfo {
    DeviceInfo {
        ordinal,
        name: p.name.clone(),
        target: target_for_arch(&p.gcn_arch),
        arch: p.gcn_arch.clone(),
        sm_count: p.cu_count,
        memory_bytes: p.memory_bytes,
        driver_version: runtime_version,
        toolchain,
        simulated: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arch_strings_map_to_targets() {
        assert_eq!(target_for_arch("gfx90a"), Some(Target::Gfx90a));
        assert_eq!(
            target_for_arch("gfx90a:sramecc+:xnack-"),
            Some(Target::Gfx90a)
        );
        assert_eq!(
            target_for_arch("gfx942:sramecc+:xnack-"),
            Some(Target::Gfx942)
        );
        assert_eq!(target_for_arch("gfx942"), Some(Target::Gfx942));
        // MI100, MI300 pre-production parts, consumer RDNA: code for the targets won't load
        for other in [
            "gfx908:sramecc+:xnack-",
            "gfx940",
            "gfx941",
            "gfx1100",
            "gfx90",
            "",
            ":",
        ] {
            assert_eq!(target_for_arch(other), None, "{other}");
        }
    }

    #[test]
    fn versions_read_like_rocm_prints_them() {
        assert_eq!(format_version(50221153), "HIP 5.2.21153 (50221153)");
        assert_eq!(format_version(60241133), "HIP 6.2.41133 (60241133)");
    }

    #[test]
    fn arch_name_is_read_only_where_the_layout_puts_it() {
        for layout in [api::PROPS_R0000, api::PROPS_R0600] {
            let mut bytes = vec![0u8; layout.size];
            bytes[..6].copy_from_slice(b"AMD X\0");
            let arch = b"gfx942:sramecc+:xnack-\0";
            bytes[layout.gcn_arch_name..layout.gcn_arch_name + arch.len()].copy_from_slice(arch);
            assert_eq!(
                arch_name_in(&bytes, layout).as_deref(),
                Some("gfx942:sramecc+:xnack-")
            );
        }
        // the wrong layout reads zeros or some other field: refused, not guessed
        let mut bytes = vec![0u8; api::PROPS_R0600.size];
        let at = api::PROPS_R0600.gcn_arch_name;
        bytes[at..at + 7].copy_from_slice(b"gfx90a\0");
        assert_eq!(arch_name_in(&bytes, api::PROPS_R0000), None);
        bytes[api::PROPS_R0000.gcn_arch_name..][..4].copy_from_slice(b"\x01\x02\x03\x04");
        assert_eq!(arch_name_in(&bytes, api::PROPS_R0000), None);
        // no NUL within the field, or a buffer too short: refused
        let unterminated = vec![b'g'; api::PROPS_R0000.size];
        assert_eq!(arch_name_in(&unterminated, api::PROPS_R0000), None);
        assert_eq!(arch_name_in(&[0u8; 16], api::PROPS_R0000), None);
    }

    fn mi250_gcd() -> Props {
        Props {
            name: "AMD Instinct MI250X".into(),
            gcn_arch: "gfx90a:sramecc+:xnack-".into(),
            cu_count: 110,
            memory_bytes: 64 << 30,
            lds_per_block: 65_536,
            regs_per_cu: 131_072,
            max_threads_per_block: 1024,
            warp_size: 64,
            l2_bytes: 8 << 20,
            clock_khz: 1_700_000,
            mem_clock_khz: 1_600_000,
            bus_width_bits: 4096,
        }
    }

    #[test]
    fn caps_from_mi250_like_props() {
        let p = mi250_gcd();
        let c = caps(&p, Target::Gfx90a);
        assert_eq!(
            (c.sm_count, c.warp_size, c.smem_per_block),
            (110, 64, 65_536)
        );
        assert_eq!(c.target, Target::Gfx90a);
        // 110 CUs · 1.7 GHz · 1024 = 191.5 TFLOP/s (half the MI250X's 383)
        assert!(
            (c.peak_tflops_f16 - 191.488).abs() < 0.01,
            "{}",
            c.peak_tflops_f16
        );
        // 1.6 GHz DDR · 4096 bits = 1638.4 GB/s per GCD
        assert!(
            (c.mem_bandwidth_gbs - 1638.4).abs() < 0.01,
            "{}",
            c.mem_bandwidth_gbs
        );
        assert_eq!(c.mma_atoms, Target::Gfx90a.nominal_caps().mma_atoms);
        // unknown clocks and limits fall back to the target's nominal figures
        let bare = Props {
            clock_khz: 0,
            mem_clock_khz: 0,
            lds_per_block: 0,
            l2_bytes: 0,
            ..p.clone()
        };
        let c = caps(&bare, Target::Gfx90a);
        let n = Target::Gfx90a.nominal_caps();
        assert_eq!(
            (
                c.peak_tflops_f16,
                c.mem_bandwidth_gbs,
                c.smem_per_block,
                c.l2_bytes
            ),
            (
                n.peak_tflops_f16,
                n.mem_bandwidth_gbs,
                n.smem_per_block,
                n.l2_bytes
            )
        );
        let i = info(&p, 1, "HIP 6.2.0 (60200000)".into(), "hiprtc 6.2".into());
        assert_eq!(
            (
                i.ordinal,
                i.target,
                i.arch.as_str(),
                i.sm_count,
                i.simulated
            ),
            (
                1,
                Some(Target::Gfx90a),
                "gfx90a:sramecc+:xnack-",
                110,
                false
            )
        );
        assert_eq!(
            i.fingerprint(),
            "AMD Instinct MI250X|gfx90a|110sm|HIP 6.2.0 (60200000)"
        );
    }
}
