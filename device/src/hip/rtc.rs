//! Compiling HIP source to a code object that `hipModuleLoadData` loads: with hiprtc
//! (runtime-loaded, like NVRTC for CUDA) when it is present, else through hipcc
//! ([`HipToolchain`](crate::hipcc::HipToolchain)), whose offload bundle the runtime loads too.
//! Compiles go through the on-disk module cache when one is configured.
//!
//! This module depends on the runtime-loaded bindings ([`api`](super::api)), the hipcc route
//! and the module cache; it never touches a device.

use super::api::{self, Handle, Rtc};
use crate::compile::{CacheOutcome, CompileReport, ImageFormat, ResourceUsage};
use crate::error::DeviceError;
use crate::hipcc::HipToolchain;
use crate::module_cache::{compile_cached_with, ModuleCache, ModuleKey};
use std::ffi::{c_char, c_int, CString};
use std::time::Instant;
use tessera_dsl::{Target, Vendor};

/// The options every hiprtc compile gets, before the request's own.
pub fn base_options(target: Target) -> Result<Vec<String>, DeviceError> {
    if target.vendor() != Vendor::Amd {
        return Err(DeviceError::Unsupported {
            message: format!("the HIP runtime compiles AMD targets; {target} is NVIDIA"),
        });
    }
    Ok(vec![
        format!("--offload-arch={}", target.name()),
        "-O3".into(),
        "-std=c++17".into(),
    ])
}

/// `hiprtc 6.2` when hiprtc loads, else `hipcc` when hipcc is found: the compiler
/// [`compile`] uses.
pub fn toolchain() -> Result<String, DeviceError> {
    match api::rtc() {
        Ok((rtc, _)) => {
            let (mut major, mut minor): (c_int, c_int) = (0, 0);
            // SAFETY: valid out-pointers.
            let code = unsafe { (rtc.hiprtcVersion)(&mut major, &mut minor) };
            if code != api::SUCCESS {
                return Err(DeviceError::NoCompiler {
                    message: format!("hiprtcVersion failed: {}", rtc_error(rtc, code)),
                });
            }
            Ok(format!("hiprtc {major}.{minor}"))
        }
        Err(rtc_missing) => HipToolchain::discover()
            .map(|t| format!("hipcc ({})", t.hipcc.display()))
            .map_err(|hipcc_missing| DeviceError::NoCompiler {
                message: format!("{rtc_missing}; and {hipcc_missing}"),
            }),
    }
}

fn rtc_error(rtc: &Rtc, code: api::HipError) -> String {
    // SAFETY: returns a static string (or null) for any code.
    let s = unsafe { api::text((rtc.hiprtcGetErrorString)(code)) };
    api::describe_parts(code, "", &s)
}

fn to_cstring(kernel: &str, what: &str, s: &str) -> Result<CString, DeviceError> {
    CString::new(s).map_err(|_| DeviceError::Compile {
        kernel: kernel.to_string(),
        log: format!("{what} contains a NUL byte"),
    })
}

/// Destroys a hiprtc program on every exit path.
struct Program<'a> {
    rtc: &'a Rtc,
    raw: Handle,
}

impl Drop for Program<'_> {
    fn drop(&mut self) {
        // SAFETY: created by hiprtcCreateProgram, destroyed once here.
        let _ = unsafe { (self.rtc.hiprtcDestroyProgram)(&mut self.raw) };
    }
}

/// Compile with hiprtc. A diagnostic is a `Compile` error carrying hiprtc's log.
fn compile_rtc(
    rtc: &Rtc,
    toolchain: String,
    source: &str,
    kernel: &str,
    target: Target,
    options: Vec<String>,
) -> Result<CompileReport, DeviceError> {
    let src = to_cstring(kernel, "the source", source)?;
    let name = to_cstring(kernel, "the kernel name", &format!("{kernel}.hip"))?;
    let c_opts = options
        .iter()
        .map(|o| to_cstring(kernel, "a compiler option", o))
        .collect::<Result<Vec<_>, _>>()?;
    let opt_ptrs: Vec<*const c_char> = c_opts.iter().map(|c| c.as_ptr()).collect();
    let n_opts = c_int::try_from(opt_ptrs.len()).map_err(|_| DeviceError::InvalidRequest {
        message: format!("{} compiler options are too many", opt_ptrs.len()),
    })?;
    let start = Instant::now();
    let mut prog = Program {
        rtc,
        raw: std::ptr::null_mut(),
    };
    let failed = |call: &str, code| DeviceError::NoCompiler {
        message: format!("{call} failed: {}", rtc_error(rtc, code)),
    };
    // SAFETY: valid C strings that outlive the call; no headers.
    let code = unsafe {
        (rtc.hiprtcCreateProgram)(
            &mut prog.raw,
            src.as_ptr(),
            name.as_ptr(),
            0,
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if code != api::SUCCESS {
        return Err(failed("hiprtcCreateProgram", code));
    }
    // SAFETY: a live program; the option strings outlive the call.
    let compiled = unsafe { (rtc.hiprtcCompileProgram)(prog.raw, n_opts, opt_ptrs.as_ptr()) };
    let log = program_log(rtc, prog.raw);
    if compiled != api::SUCCESS {
        return Err(DeviceError::Compile {
            kernel: kernel.to_string(),
            log: format!("{}\n{log}", rtc_error(rtc, compiled)),
        });
    }
    let mut size = 0usize;
    // SAFETY: a compiled program; valid out-pointer.
    let code = unsafe { (rtc.hiprtcGetCodeSize)(prog.raw, &mut size) };
    if code != api::SUCCESS {
        return Err(failed("hiprtcGetCodeSize", code));
    }
    let mut image = vec![0u8; size];
    if size > 0 {
        // SAFETY: the buffer holds `size` bytes, as hiprtc said the code needs.
        let code = unsafe { (rtc.hiprtcGetCode)(prog.raw, image.as_mut_ptr().cast()) };
        if code != api::SUCCESS {
            return Err(failed("hiprtcGetCode", code));
        }
    }
    if image.is_empty() {
        return Err(DeviceError::Compile {
            kernel: kernel.to_string(),
            log: format!("{log}\nhiprtc produced no code object"),
        });
    }
    Ok(CompileReport {
        kernel: kernel.to_string(),
        target,
        arch: target.name().to_string(),
        image,
        format: ImageFormat::CodeObject,
        // registers and LDS come from the loaded function's attributes
        usage: ResourceUsage::default(),
        log,
        seconds: start.elapsed().as_secs_f64(),
        toolchain,
        options,
    })
}

/// The program's log (empty when hiprtc has none or cannot give it).
fn program_log(rtc: &Rtc, prog: Handle) -> String {
    let mut size = 0usize;
    // SAFETY: a live program; valid out-pointer.
    if unsafe { (rtc.hiprtcGetProgramLogSize)(prog, &mut size) } != api::SUCCESS || size == 0 {
        return String::new();
    }
    let mut buf = vec![0u8; size];
    // SAFETY: the buffer holds `size` bytes.
    if unsafe { (rtc.hiprtcGetProgramLog)(prog, buf.as_mut_ptr().cast()) } != api::SUCCESS {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).trim_end().to_string()
}

/// Compile with hipcc (when hiprtc is missing): its offload bundle is the image.
fn compile_hipcc(
    hipcc: &HipToolchain,
    source: &str,
    kernel: &str,
    target: Target,
) -> Result<CompileReport, DeviceError> {
    let r = hipcc.compile(source, kernel, target)?;
    let spill = r.vgpr_spills.unwrap_or(0) + r.sgpr_spills.unwrap_or(0);
    Ok(CompileReport {
        kernel: kernel.to_string(),
        target,
        arch: target.name().to_string(),
        image: r.code_object,
        format: ImageFormat::CodeObject,
        usage: ResourceUsage {
            registers: r.vgprs,
            spill_store_bytes: r.scratch_bytes.or((spill > 0).then_some(spill)),
            spill_load_bytes: None,
            static_smem_bytes: r.lds_bytes,
            stack_frame_bytes: r.scratch_bytes,
        },
        log: r.log,
        seconds: r.seconds,
        toolchain: format!("hipcc ({})", hipcc.hipcc.display()),
        options: vec![format!("--offload-arch={}", target.name()), "-O3".into()],
    })
}

/// Compile `source` for an AMD `target` to a loadable code object, through `cache` when one
/// is given: hiprtc with [`base_options`] plus `extra`, or hipcc when hiprtc is missing
/// (`extra` is then not supported: an `Unsupported` error rather than options silently lost).
pub fn compile(
    cache: Option<&ModuleCache>,
    source: &str,
    kernel: &str,
    target: Target,
    extra: &[String],
) -> Result<(CompileReport, CacheOutcome), DeviceError> {
    let mut options = base_options(target)?;
    options.extend(extra.iter().cloned());
    match api::rtc() {
        Ok((rtc, _)) => {
            let toolchain = toolchain()?;
            compile_cached_with(
                cache,
                kernel,
                target,
                || {
                    Ok(ModuleKey::new(
                        source,
                        kernel,
                        &options,
                        &toolchain,
                        target.name(),
                    ))
                },
                || {
                    compile_rtc(
                        rtc,
                        toolchain.clone(),
                        source,
                        kernel,
                        target,
                        options.clone(),
                    )
                },
            )
        }
        Err(rtc_missing) => {
            let hipcc =
                HipToolchain::discover().map_err(|hipcc_missing| DeviceError::NoCompiler {
                    message: format!("{rtc_missing}; and {hipcc_missing}"),
                })?;
            if !extra.is_empty() {
                return Err(DeviceError::Unsupported {
                    message: format!(
                        "compiling `{kernel}` with options {extra:?} needs hiprtc ({rtc_missing})"
                    ),
                });
            }
            let toolchain = format!("hipcc ({})", hipcc.hipcc.display());
            compile_cached_with(
                cache,
                kernel,
                target,
                || {
                    Ok(ModuleKey::new(
                        source,
                        kernel,
                        &options,
                        &toolchain,
                        target.name(),
                    ))
                },
                || compile_hipcc(&hipcc, source, kernel, target),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_name_the_offload_arch() {
        assert_eq!(
            base_options(Target::Gfx90a).unwrap(),
            ["--offload-arch=gfx90a", "-O3", "-std=c++17"]
        );
        assert_eq!(
            base_options(Target::Gfx942).unwrap()[0],
            "--offload-arch=gfx942"
        );
        assert!(matches!(
            base_options(Target::Sm90a),
            Err(DeviceError::Unsupported { .. })
        ));
        assert!(matches!(
            compile(None, "", "k", Target::Sm80, &[]),
            Err(DeviceError::Unsupported { .. })
        ));
    }

    #[test]
    fn nul_bytes_are_compile_errors_not_panics() {
        let e = to_cstring("k", "the source", "a\0b").unwrap_err();
        assert!(
            matches!(&e, DeviceError::Compile { kernel, log } if kernel == "k" && log.contains("NUL")),
            "{e:?}"
        );
    }

    const AXPY: &str = "#include <hip/hip_runtime.h>\n\
        extern \"C\" __global__ void axpy(float a, const float* x, float* y, int n) {\n\
            int i = blockIdx.x * blockDim.x + threadIdx.x;\n\
            if (i < n) y[i] = a * x[i] + y[i];\n\
        }\n";

    /// hiprtc needs no GPU: where it loads (ROCm, or Debian's libamdhip64 5.2, which carries
    /// it), a kernel compiles to an ELF code object for each AMD target hiprtc knows, a bad one
    /// is a `Compile` error with hiprtc's log, and the module cache is hit the second time.
    #[test]
    fn hiprtc_compiles_code_objects_without_a_gpu() {
        let Ok((rtc, library)) = api::rtc() else {
            eprintln!("hiprtc not loadable here; skipped");
            return;
        };
        let toolchain = toolchain().expect("hiprtc loaded, so it has a version");
        eprintln!("{toolchain} from {library}");
        let (r, outcome) = compile(None, AXPY, "axpy", Target::Gfx90a, &[]).unwrap();
        assert_eq!(outcome, CacheOutcome::Disabled);
        assert!(r.image.starts_with(b"\x7fELF"), "not an ELF code object");
        assert_eq!(
            (r.format, r.arch.as_str()),
            (ImageFormat::CodeObject, "gfx90a")
        );
        assert_eq!(r.toolchain, toolchain);

        let bad = AXPY.replace("y[i] = a", "y[i] = undeclared_name");
        let e = compile_rtc(
            rtc,
            toolchain,
            &bad,
            "axpy",
            Target::Gfx90a,
            base_options(Target::Gfx90a).unwrap(),
        )
        .unwrap_err();
        assert!(
            matches!(&e, DeviceError::Compile { kernel, log } if kernel == "axpy" && log.contains("undeclared_name")),
            "{e}"
        );

        let dir = std::env::temp_dir().join(format!("tessera-hiprtc-test-{}", std::process::id()));
        let cache = ModuleCache::new(&dir);
        let (first, miss) = compile(Some(&cache), AXPY, "axpy", Target::Gfx90a, &[]).unwrap();
        let (second, hit) = compile(Some(&cache), AXPY, "axpy", Target::Gfx90a, &[]).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!((miss, hit), (CacheOutcome::Miss, CacheOutcome::Hit));
        assert_eq!(first.image, second.image);
        assert_eq!(second.format, ImageFormat::CodeObject);
    }

    /// Whatever this machine has (hiprtc, hipcc, neither), the toolchain query is a name or a
    /// `NoCompiler` error, never a panic.
    #[test]
    fn toolchain_is_named_or_missing() {
        match toolchain() {
            Ok(t) => assert!(t.starts_with("hiprtc ") || t.starts_with("hipcc "), "{t}"),
            Err(e) => assert!(matches!(e, DeviceError::NoCompiler { .. }), "{e:?}"),
        }
    }
}
