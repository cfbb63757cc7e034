//! Compiling CUDA source with NVRTC, with or without a GPU.
//!
//! [`nvrtc_compile`] needs only `libnvrtc` (plus its builtins library) on the library path: no
//! driver, no device. It compiles for a real architecture (`sm_80`, `sm_90a`), so NVRTC runs
//! `ptxas` and returns a CUBIN; `--ptxas-options=-v` makes it write registers, spills and static
//! shared memory to the program log, which [`ptxas_log`](super::ptxas_log) parses, and the
//! CUBIN's `.nv.info` records ([`cubin`](super::cubin)) fill in what the log lacks.
//!
//! This module depends on cudarc's NVRTC bindings and this crate's vocabulary; not on the driver.

use super::{cubin, loader, ptxas_log};
use crate::compile::{CacheOutcome, CompileReport, ImageFormat};
use crate::error::DeviceError;
use crate::module_cache::{compile_cached_with, ModuleCache, ModuleKey};
use cudarc::nvrtc::sys as nv;
use std::ffi::{c_char, c_int, CStr, CString};
use std::time::Instant;
use tessera_dsl::Target;

/// Whether NVRTC can be loaded here.
pub fn nvrtc_available() -> bool {
    loader::nvrtc().is_ok()
}

/// NVRTC's (major, minor) version.
pub fn nvrtc_version() -> Result<(u32, u32), DeviceError> {
    loader::nvrtc()?;
    let (mut major, mut minor): (c_int, c_int) = (0, 0);
    // SAFETY: the library and symbol were checked by `loader::nvrtc`; out-pointers are valid.
    let r = unsafe { nv::nvrtcVersion(&mut major, &mut minor) };
    if r != nv::nvrtcResult::NVRTC_SUCCESS {
        return Err(DeviceError::NoCompiler {
            message: format!("nvrtcVersion failed: {r:?}"),
        });
    }
    Ok((major.max(0) as u32, minor.max(0) as u32))
}

/// The toolchain string that goes into cache keys and reports, e.g. `nvrtc 13.0`.
pub fn toolchain() -> Result<String, DeviceError> {
    let (major, minor) = nvrtc_version()?;
    Ok(format!("nvrtc {major}.{minor}"))
}

/// The `--gpu-architecture` value for a target (NVIDIA targets only).
pub fn arch_for(target: Target) -> Result<&'static str, DeviceError> {
    match target {
        Target::Sm80 => Ok("sm_80"),
        Target::Sm90a => Ok("sm_90a"),
        Target::Gfx90a | Target::Gfx942 => Err(DeviceError::Unsupported {
            message: format!("NVRTC cannot compile for {target}, an AMD target (use hipcc/hiprtc)"),
        }),
    }
}

/// The options every compile gets, before the caller's: architecture, C++17, verbose ptxas,
/// and, for NVRTC 12.9 and newer, `--no-cache`. Those versions reuse CUBINs from the driver's
/// compute cache when a driver is present, and a reused CUBIN comes back with an *empty* log:
/// no registers, no spills (seen on the GPU machine). Tessera caches modules itself (with their
/// usage), so NVRTC's cache would only cost information.
/// (`--use_fast_math` is deliberately absent: it changes results.)
pub fn base_options(arch: &str, nvrtc_version: (u32, u32)) -> Vec<String> {
    let mut o = vec![
        format!("--gpu-architecture={arch}"),
        "-std=c++17".to_string(),
        "--ptxas-options=-v".to_string(),
    ];
    if nvrtc_version >= (12, 9) {
        o.push("--no-cache".to_string());
    }
    o
}

/// Destroys an NVRTC program on every exit path.
struct Program(nv::nvrtcProgram);

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: created by nvrtcCreateProgram and destroyed only here. A failure to destroy
        // leaks the program; there is nothing better to do in a destructor.
        let _ = unsafe { nv::nvrtcDestroyProgram(&mut self.0) };
    }
}

fn to_cstring(kernel: &str, what: &str, s: &str) -> Result<CString, DeviceError> {
    CString::new(s).map_err(|e| DeviceError::Compile {
        kernel: kernel.to_string(),
        log: format!("{what} contains a NUL byte at offset {}", e.nul_position()),
    })
}

fn program_log(prog: &Program) -> String {
    let mut size = 0usize;
    // SAFETY: valid program; out-pointer valid.
    if unsafe { nv::nvrtcGetProgramLogSize(prog.0, &mut size) } != nv::nvrtcResult::NVRTC_SUCCESS
        || size == 0
    {
        return String::new();
    }
    let mut buf = vec![0u8; size];
    // SAFETY: `buf` holds the `size` bytes NVRTC asked for.
    if unsafe { nv::nvrtcGetProgramLog(prog.0, buf.as_mut_ptr() as *mut c_char) }
        != nv::nvrtcResult::NVRTC_SUCCESS
    {
        return String::new();
    }
    CStr::from_bytes_until_nul(&buf)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_else(|_| String::from_utf8_lossy(&buf).into_owned())
}

/// The compiled image: CUBIN for a real architecture, else PTX (NUL-terminated).
fn program_image(prog: &Program, kernel: &str) -> Result<(Vec<u8>, ImageFormat), DeviceError> {
    let fail = |call: &str, r: nv::nvrtcResult| DeviceError::Compile {
        kernel: kernel.to_string(),
        log: format!("{call} failed: {r:?}"),
    };
    let mut size = 0usize;
    // SAFETY: valid, compiled program; out-pointer valid.
    let r = unsafe { nv::nvrtcGetCUBINSize(prog.0, &mut size) };
    if r == nv::nvrtcResult::NVRTC_SUCCESS && size > 0 {
        let mut buf = vec![0u8; size];
        // SAFETY: `buf` holds `size` bytes.
        let r = unsafe { nv::nvrtcGetCUBIN(prog.0, buf.as_mut_ptr() as *mut c_char) };
        if r != nv::nvrtcResult::NVRTC_SUCCESS {
            return Err(fail("nvrtcGetCUBIN", r));
        }
        return Ok((buf, ImageFormat::Cubin));
    }
    // SAFETY: as above.
    let r = unsafe { nv::nvrtcGetPTXSize(prog.0, &mut size) };
    if r != nv::nvrtcResult::NVRTC_SUCCESS || size == 0 {
        return Err(fail("nvrtcGetPTXSize", r));
    }
    let mut buf = vec![0u8; size];
    // SAFETY: `buf` holds `size` bytes (including the terminating NUL).
    let r = unsafe { nv::nvrtcGetPTX(prog.0, buf.as_mut_ptr() as *mut c_char) };
    if r != nv::nvrtcResult::NVRTC_SUCCESS {
        return Err(fail("nvrtcGetPTX", r));
    }
    Ok((buf, ImageFormat::Ptx))
}

/// Compile `source` for `target` with NVRTC and report the CUBIN, registers, spills, static
/// shared memory, log and wall time. Needs only libnvrtc: no driver, no GPU. `options` are
/// appended to [`base_options`]. A kernel that is not defined as `extern "C"` under
/// `kernel_name` is a `Compile` error, as is any compiler diagnostic.
pub fn nvrtc_compile(
    source: &str,
    kernel_name: &str,
    target: Target,
    options: &[String],
) -> Result<CompileReport, DeviceError> {
    let arch = arch_for(target)?;
    compile_for_arch(source, kernel_name, target, arch, options)
}

/// [`nvrtc_compile`] through an on-disk module cache: a hit compiles nothing; a corrupt entry
/// is recompiled and replaced; `None` compiles every time.
pub fn nvrtc_compile_cached(
    cache: Option<&ModuleCache>,
    source: &str,
    kernel_name: &str,
    target: Target,
    options: &[String],
) -> Result<(CompileReport, CacheOutcome), DeviceError> {
    let arch = arch_for(target)?;
    compile_cached(cache, source, kernel_name, target, arch, options)
}

pub(crate) fn compile_cached(
    cache: Option<&ModuleCache>,
    source: &str,
    kernel: &str,
    target: Target,
    arch: &str,
    extra: &[String],
) -> Result<(CompileReport, CacheOutcome), DeviceError> {
    compile_cached_with(
        cache,
        kernel,
        target,
        || {
            Ok(ModuleKey::new(
                source,
                kernel,
                &full_options(arch, nvrtc_version()?, extra),
                &toolchain()?,
                arch,
            ))
        },
        || compile_for_arch(source, kernel, target, arch, extra),
    )
}

pub(crate) fn full_options(arch: &str, nvrtc_version: (u32, u32), extra: &[String]) -> Vec<String> {
    let mut all = base_options(arch, nvrtc_version);
    all.extend(extra.iter().cloned());
    all
}

pub(crate) fn compile_for_arch(
    source: &str,
    kernel: &str,
    target: Target,
    arch: &str,
    extra: &[String],
) -> Result<CompileReport, DeviceError> {
    let toolchain = toolchain()?;
    let options = full_options(arch, nvrtc_version()?, extra);
    let src = to_cstring(kernel, "the source", source)?;
    let name = to_cstring(kernel, "the kernel name", &format!("{kernel}.cu"))?;
    let c_opts = options
        .iter()
        .map(|o| to_cstring(kernel, "a compiler option", o))
        .collect::<Result<Vec<_>, _>>()?;
    let opt_ptrs: Vec<*const c_char> = c_opts.iter().map(|c| c.as_ptr()).collect();
    let n_opts = c_int::try_from(opt_ptrs.len()).map_err(|_| DeviceError::InvalidRequest {
        message: "too many compiler options".into(),
    })?;

    let start = Instant::now();
    let mut raw: nv::nvrtcProgram = std::ptr::null_mut();
    // SAFETY: library checked by `toolchain()`; `src` and `name` outlive the program (they are
    // dropped after `prog` at the end of this function); no headers.
    let r = unsafe {
        nv::nvrtcCreateProgram(
            &mut raw,
            src.as_ptr(),
            name.as_ptr(),
            0,
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if r != nv::nvrtcResult::NVRTC_SUCCESS {
        return Err(DeviceError::Compile {
            kernel: kernel.to_string(),
            log: format!("nvrtcCreateProgram failed: {r:?}"),
        });
    }
    let prog = Program(raw);
    // SAFETY: valid program; `opt_ptrs` point into `c_opts`, alive for the call.
    let r = unsafe { nv::nvrtcCompileProgram(prog.0, n_opts, opt_ptrs.as_ptr()) };
    let log = program_log(&prog);
    match r {
        nv::nvrtcResult::NVRTC_SUCCESS => {}
        nv::nvrtcResult::NVRTC_ERROR_BUILTIN_OPERATION_FAILURE => {
            return Err(DeviceError::NoCompiler {
                message: format!(
                    "NVRTC could not load its builtins library (libnvrtc-builtins.so.*): put its folder on LD_LIBRARY_PATH. {log}"
                ),
            })
        }
        nv::nvrtcResult::NVRTC_ERROR_COMPILATION => {
            return Err(DeviceError::Compile {
                kernel: kernel.to_string(),
                log,
            })
        }
        other => {
            return Err(DeviceError::Compile {
                kernel: kernel.to_string(),
                log: format!("nvrtcCompileProgram failed: {other:?} (options: {})\n{log}", options.join(" ")),
            })
        }
    }
    let (image, format) = program_image(&prog, kernel)?;
    let seconds = start.elapsed().as_secs_f64();
    drop(prog);

    let mut usage = ptxas_log::usage_for(&log, kernel).unwrap_or_default();
    if format == ImageFormat::Cubin {
        match cubin::usage(&image, kernel) {
            Ok(Some(from_elf)) => usage = usage.or(from_elf),
            Ok(None) => {
                if !cubin::has_symbol(&image, kernel).unwrap_or(true) {
                    return Err(DeviceError::Compile {
                        kernel: kernel.to_string(),
                        log: format!(
                            "the source compiled but defines no kernel `{kernel}` (declare it `extern \"C\" __global__`)\n{log}"
                        ),
                    });
                }
            }
            // An unreadable ELF only costs the fallback; the driver still gets the image.
            Err(_) => {}
        }
    }
    Ok(CompileReport {
        kernel: kernel.to_string(),
        target,
        arch: arch.to_string(),
        image,
        format,
        usage,
        log,
        seconds,
        toolchain,
        options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module_cache::ModuleCache;

    /// NVRTC present → true. Missing → false with a message, unless NVRTC is required (feature
    /// `nvrtc-tests` or `TESSERA_REQUIRE_NVRTC` set, as CI does), where the test fails.
    fn nvrtc_or_skip(test: &str) -> bool {
        if nvrtc_available() {
            return true;
        }
        let why = loader::nvrtc()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        if cfg!(feature = "nvrtc-tests") || std::env::var_os("TESSERA_REQUIRE_NVRTC").is_some() {
            panic!("{test}: NVRTC is required (TESSERA_REQUIRE_NVRTC / nvrtc-tests) but missing: {why}");
        }
        eprintln!("skipping {test}: {why}");
        false
    }

    /// Self-contained (no #include: the NVRTC wheel has no headers).
    const AXPY: &str = r#"
extern "C" __global__ void axpy(float a, const float* x, float* y, int n) {
    __shared__ float tile[256];
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    tile[threadIdx.x] = i < n ? x[i] : 0.f;
    __syncthreads();
    if (i < n) y[i] = a * tile[255 - threadIdx.x] + y[i];
}
"#;

    /// Keeps 64 accumulators live across a loop; capped at 32 registers it must spill.
    const SPILLER: &str = r#"
extern "C" __global__ void spiller(const float* x, float* y, int n) {
    float acc[64];
    #pragma unroll
    for (int j = 0; j < 64; ++j) acc[j] = x[j * n + threadIdx.x];
    for (int k = 0; k < n; ++k) {
        #pragma unroll
        for (int j = 0; j < 64; ++j) acc[j] = acc[j] * x[k] + acc[(j + 1) & 63];
    }
    float s = 0.f;
    #pragma unroll
    for (int j = 0; j < 64; ++j) s += acc[j];
    y[threadIdx.x] = s;
}
"#;

    #[test]
    fn nvrtc_reports_registers_for_sm80_and_sm90a() {
        if !nvrtc_or_skip("nvrtc_reports_registers_for_sm80_and_sm90a") {
            return;
        }
        assert!(toolchain().unwrap().starts_with("nvrtc "));
        for target in [Target::Sm80, Target::Sm90a] {
            let r = nvrtc_compile(AXPY, "axpy", target, &[]).unwrap();
            assert_eq!(r.format, ImageFormat::Cubin);
            assert_eq!(&r.image[..4], b"\x7fELF");
            assert_eq!(r.arch, arch_for(target).unwrap());
            assert!(
                r.log.contains("Used"),
                "{target}: no ptxas -v output in the log:\n{}",
                r.log
            );
            let regs = r.usage.registers.expect("registers");
            assert!(regs > 0, "{target}: {regs} registers");
            assert_eq!(r.usage.static_smem_bytes, Some(1024), "{target}");
            assert_eq!(r.usage.spill_bytes(), Some(0), "{target}");
            assert!(r.seconds > 0.0);
            // Both routes agree: the log and the CUBIN's .nv.info records.
            let from_log = ptxas_log::usage_for(&r.log, "axpy").unwrap();
            let from_elf = cubin::usage(&r.image, "axpy").unwrap().unwrap();
            assert_eq!(from_log.registers, from_elf.registers, "{target}");
            eprintln!(
                "{target}: axpy uses {regs} registers, compiled in {:.3}s",
                r.seconds
            );
            // Compiling the same source again still reports usage (NVRTC's own cache, which
            // answers with an empty log, is off).
            let again = nvrtc_compile(AXPY, "axpy", target, &[]).unwrap();
            assert_eq!(
                again.usage, r.usage,
                "{target}: second compile lost the report:\n{}",
                again.log
            );
        }
    }

    #[test]
    fn nvrtc_reports_spills() {
        if !nvrtc_or_skip("nvrtc_reports_spills") {
            return;
        }
        let r = nvrtc_compile(
            SPILLER,
            "spiller",
            Target::Sm80,
            &["--maxrregcount=32".to_string()],
        )
        .unwrap();
        assert!(r.usage.registers.unwrap() <= 32, "{:?}", r.usage);
        assert!(
            r.usage.spill_store_bytes.unwrap() > 0,
            "{:?}\n{}",
            r.usage,
            r.log
        );
    }

    #[test]
    fn nvrtc_errors_name_the_kernel() {
        if !nvrtc_or_skip("nvrtc_errors_name_the_kernel") {
            return;
        }
        let bad = "extern \"C\" __global__ void broken(float* x) { x[0] = undefined_name; }";
        match nvrtc_compile(bad, "broken", Target::Sm90a, &[]) {
            Err(DeviceError::Compile { kernel, log }) => {
                assert_eq!(kernel, "broken");
                assert!(log.contains("undefined_name"), "{log}");
            }
            other => panic!("expected a compile error, got {other:?}"),
        }
        match nvrtc_compile(AXPY, "not_there", Target::Sm80, &[]) {
            Err(DeviceError::Compile { kernel, log }) => {
                assert_eq!(kernel, "not_there");
                assert!(log.contains("defines no kernel"), "{log}");
            }
            other => panic!("expected a compile error, got {other:?}"),
        }
        assert!(matches!(
            nvrtc_compile(
                AXPY,
                "axpy",
                Target::Sm80,
                &["--no-such-option".to_string()]
            ),
            Err(DeviceError::Compile { .. })
        ));
        assert!(matches!(
            nvrtc_compile("a\0b", "axpy", Target::Sm80, &[]),
            Err(DeviceError::Compile { .. })
        ));
        assert!(matches!(
            nvrtc_compile(AXPY, "axpy", Target::Gfx942, &[]),
            Err(DeviceError::Unsupported { .. })
        ));
    }

    #[test]
    fn second_compile_is_a_cache_hit_and_corruption_recompiles() {
        if !nvrtc_or_skip("second_compile_is_a_cache_hit_and_corruption_recompiles") {
            return;
        }
        let dir = std::env::temp_dir().join(format!("tessera-nvrtc-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let cache = ModuleCache::new(&dir);
        let (first, o1) =
            nvrtc_compile_cached(Some(&cache), AXPY, "axpy", Target::Sm90a, &[]).unwrap();
        assert_eq!(o1, CacheOutcome::Miss);
        let (second, o2) =
            nvrtc_compile_cached(Some(&cache), AXPY, "axpy", Target::Sm90a, &[]).unwrap();
        assert_eq!(o2, CacheOutcome::Hit);
        assert_eq!(first, second, "a hit returns exactly what was compiled");
        // Another architecture is another entry.
        let (_, o3) = nvrtc_compile_cached(Some(&cache), AXPY, "axpy", Target::Sm80, &[]).unwrap();
        assert_eq!(o3, CacheOutcome::Miss);
        // Corrupt every file: the next compile notices, recompiles and repairs.
        for f in std::fs::read_dir(&dir).unwrap() {
            let p = f.unwrap().path();
            let mut b = std::fs::read(&p).unwrap();
            let mid = b.len() / 2;
            b[mid] ^= 0x55;
            std::fs::write(&p, b).unwrap();
        }
        let (again, o4) =
            nvrtc_compile_cached(Some(&cache), AXPY, "axpy", Target::Sm90a, &[]).unwrap();
        assert!(matches!(o4, CacheOutcome::Corrupt { .. }), "{o4:?}");
        assert_eq!(again.image, first.image);
        let (_, o5) = nvrtc_compile_cached(Some(&cache), AXPY, "axpy", Target::Sm90a, &[]).unwrap();
        assert_eq!(o5, CacheOutcome::Hit);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn arch_and_options() {
        assert_eq!(arch_for(Target::Sm80).unwrap(), "sm_80");
        assert_eq!(arch_for(Target::Sm90a).unwrap(), "sm_90a");
        assert!(matches!(
            arch_for(Target::Gfx90a),
            Err(DeviceError::Unsupported { .. })
        ));
        let o = full_options("sm_90a", (13, 0), &["-lineinfo".to_string()]);
        assert_eq!(
            o,
            [
                "--gpu-architecture=sm_90a",
                "-std=c++17",
                "--ptxas-options=-v",
                "--no-cache",
                "-lineinfo"
            ]
        );
        assert!(!o.iter().any(|x| x.contains("fast_math")));
        assert!(!base_options("sm_80", (12, 4)).contains(&"--no-cache".to_string()));
    }
}
