//! Compiling HIP source for AMD targets without an AMD GPU, two ways:
//! - [`HipToolchain`]: `hipcc` (ROCm's or Debian's) writes a bundled code object; the compiler's
//!   resource report (VGPRs, AGPRs, SGPRs, scratch, spills, LDS, occupancy) and, on request, its
//!   disassembly (`clang-offload-bundler` + `llvm-objdump`);
//! - [`ClangHip`]: a bare clang with HIP support (Debian's `clang-19`) writes assembly (`-S`) with
//!   the ROCm device-library bitcode linked in by hand, for targets Debian's hipcc (LLVM 15)
//!   predates: gfx942. Same resource report; the assembly is the output (no code object).
//!
//! Tools are found once, on `PATH` or in `/usr/lib/llvm-*/bin`, by the `discover` functions.
//! It depends only on `std` and this crate's error type; it never loads a HIP runtime.

use crate::error::DeviceError;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tessera_dsl::{Target, Vendor};

/// Paths of the tools the HIP compile path runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HipToolchain {
    pub hipcc: PathBuf,
    pub bundler: Option<PathBuf>,
    pub objdump: Option<PathBuf>,
}

/// The compiler's report for one kernel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HipReport {
    pub kernel: String,
    pub target: Option<Target>,
    /// The bundled code object `hipcc -c` wrote (empty for [`ClangHip`]).
    pub code_object: Vec<u8>,
    /// The assembly [`ClangHip`] wrote (empty for hipcc).
    pub assembly: String,
    pub vgprs: Option<u32>,
    pub agprs: Option<u32>,
    pub sgprs: Option<u32>,
    /// Scratch (private) memory per lane, bytes: nonzero means spills or stack.
    pub scratch_bytes: Option<u32>,
    pub vgpr_spills: Option<u32>,
    pub sgpr_spills: Option<u32>,
    /// Static LDS per block, bytes (dynamic LDS is not included).
    pub lds_bytes: Option<u32>,
    pub occupancy_waves: Option<u32>,
    pub seconds: f64,
    pub log: String,
}

impl HipReport {
    /// Whether the compiler reported any spill or scratch use.
    pub fn spills(&self) -> bool {
        self.vgpr_spills.unwrap_or(0) > 0
            || self.sgpr_spills.unwrap_or(0) > 0
            || self.scratch_bytes.unwrap_or(0) > 0
    }
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn llvm_tool(name: &str) -> Option<PathBuf> {
    which(name).or_else(|| {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib")
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("llvm-"))
            })
            .collect();
        dirs.sort();
        dirs.into_iter()
            .rev()
            .map(|d| d.join("bin").join(name))
            .find(|p| p.is_file())
    })
}

impl HipToolchain {
    /// Find hipcc (required) and the bundler and disassembler (optional).
    pub fn discover() -> Result<HipToolchain, DeviceError> {
        let hipcc = which("hipcc")
            .or_else(|| Some(PathBuf::from("/opt/rocm/bin/hipcc")).filter(|p| p.is_file()));
        let hipcc = hipcc.ok_or_else(|| DeviceError::NoCompiler {
            message: "hipcc not found on PATH or in /opt/rocm/bin; on Debian: apt-get install hipcc libamdhip64-dev".into(),
        })?;
        Ok(HipToolchain {
            hipcc,
            bundler: llvm_tool("clang-offload-bundler"),
            objdump: llvm_tool("llvm-objdump"),
        })
    }
}

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// A private scratch folder, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch, DeviceError> {
        let dir = std::env::temp_dir().join(format!(
            "tessera-hipcc-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| DeviceError::NoCompiler {
            message: format!("cannot create {}: {e}", dir.display()),
        })?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn offload_target(target: Target) -> Result<&'static str, DeviceError> {
    match target.vendor() {
        Vendor::Amd => Ok(target.name()),
        Vendor::Nvidia => Err(DeviceError::Unsupported {
            message: format!("hipcc compiles AMD targets; {target} is NVIDIA (use nvrtc_compile)"),
        }),
    }
}

/// Parse `-Rpass-analysis=kernel-resource-usage` remarks for `kernel`.
pub fn parse_remarks(log: &str, kernel: &str, report: &mut HipReport) {
    let mut current = false;
    for line in log.lines() {
        let Some(rest) = line.split("remark:").nth(1) else {
            continue;
        };
        let rest = rest.rsplit_once(" [-Rpass").map_or(rest, |(r, _)| r).trim();
        if let Some(name) = rest.strip_prefix("Function Name:") {
            current = name.trim() == kernel;
            continue;
        }
        if !current {
            continue;
        }
        let Some((key, value)) = rest.split_once(':') else {
            continue;
        };
        let value: Option<u32> = value.trim().parse().ok();
        match key.trim() {
            "VGPRs" => report.vgprs = value,
            "AGPRs" => report.agprs = value,
            "SGPRs" => report.sgprs = value,
            "ScratchSize [bytes/lane]" | "ScratchSize" => report.scratch_bytes = value,
            "VGPRs Spill" => report.vgpr_spills = value,
            "SGPRs Spill" => report.sgpr_spills = value,
            "LDS Size [bytes/block]" | "LDS Size" => report.lds_bytes = value,
            "Occupancy [waves/SIMD]" | "Occupancy" => report.occupancy_waves = value,
            _ => {}
        }
    }
}

fn write(path: &Path, text: &str) -> Result<(), DeviceError> {
    std::fs::write(path, text).map_err(|e| DeviceError::NoCompiler {
        message: format!("cannot write {}: {e}", path.display()),
    })
}

/// Run `compiler` (argument list `args`, then the source, `-o` and the output path) on `source`
/// in the scratch folder `dir`; return the output file and the report parsed from the remarks
/// (`-Rpass-analysis=kernel-resource-usage` is added here).
fn compile_hip(
    dir: &Path,
    compiler: &Path,
    args: &[String],
    out_name: &str,
    source: &str,
    kernel: &str,
    target: Target,
) -> Result<(Vec<u8>, HipReport), DeviceError> {
    let src = dir.join("kernel.hip");
    let out_path = dir.join(out_name);
    write(&src, source)?;
    let start = Instant::now();
    let out = Command::new(compiler)
        .args(args)
        .arg("-Rpass-analysis=kernel-resource-usage")
        .arg(&src)
        .arg("-o")
        .arg(&out_path)
        .output()
        .map_err(|e| DeviceError::NoCompiler {
            message: format!("cannot run {}: {e}", compiler.display()),
        })?;
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(DeviceError::Compile {
            kernel: kernel.into(),
            log,
        });
    }
    let output = std::fs::read(&out_path).map_err(|e| DeviceError::Compile {
        kernel: kernel.into(),
        log: format!("{log}\nno output file: {e}"),
    })?;
    let mut report = HipReport {
        kernel: kernel.into(),
        target: Some(target),
        seconds: start.elapsed().as_secs_f64(),
        ..HipReport::default()
    };
    parse_remarks(&log, kernel, &mut report);
    if report.vgprs.is_none() {
        return Err(DeviceError::Compile {
            kernel: kernel.into(),
            log: format!("{log}\nno resource report for `{kernel}` (is it extern \"C\"?)"),
        });
    }
    report.log = log;
    Ok((output, report))
}

impl HipToolchain {
    /// Compile `source` for an AMD `target` (device code only, -O3) and report its resources.
    /// A compiler diagnostic is a `Compile` error carrying the log.
    pub fn compile(
        &self,
        source: &str,
        kernel: &str,
        target: Target,
    ) -> Result<HipReport, DeviceError> {
        let args = [
            format!("--offload-arch={}", offload_target(target)?),
            "--cuda-device-only".into(),
            "-O3".into(),
            "-c".into(),
        ];
        let dir = Scratch::new()?;
        let (code_object, report) = compile_hip(
            &dir.0,
            &self.hipcc,
            &args,
            "kernel.co",
            source,
            kernel,
            target,
        )?;
        Ok(HipReport {
            code_object,
            ..report
        })
    }

    /// Disassemble a compiled kernel's code object (`llvm-objdump -d` of the unbundled image).
    pub fn disassemble(&self, report: &HipReport) -> Result<String, DeviceError> {
        let missing = |t: &str| DeviceError::NoCompiler {
            message: format!("{t} not found (Debian: clang-tools-15 and llvm)"),
        };
        let bundler = self
            .bundler
            .as_deref()
            .ok_or_else(|| missing("clang-offload-bundler"))?;
        let objdump = self
            .objdump
            .as_deref()
            .ok_or_else(|| missing("llvm-objdump"))?;
        let target = report.target.ok_or_else(|| DeviceError::InvalidRequest {
            message: "report has no target".into(),
        })?;
        let dir = Scratch::new()?;
        let bundle = dir.0.join("kernel.co");
        let image = dir.0.join("kernel.gfx");
        std::fs::write(&bundle, &report.code_object).map_err(|e| DeviceError::NoCompiler {
            message: e.to_string(),
        })?;
        run(
            Command::new(bundler)
                .args(["--unbundle", "--type=o"])
                .arg(format!(
                    "--targets=hipv4-amdgcn-amd-amdhsa--{}",
                    offload_target(target)?
                ))
                .arg(format!("--input={}", bundle.display()))
                .arg(format!("--output={}", image.display())),
            bundler,
        )?;
        run(Command::new(objdump).arg("-d").arg(&image), objdump)
    }
}

/// A bare clang with HIP support and the ROCm device libraries it links by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClangHip {
    /// `clang++-19` (Debian's), or LLVM 19's `clang++`.
    pub clang: PathBuf,
    /// The folder of `ockl.bc`, `ocml.bc`, ... (Debian's `rocm-device-libs`, or ROCm's).
    pub device_libs: PathBuf,
}

/// The device libraries a HIP compile links (wave64, IEEE math, code object v5), in link
/// order, before the target's `oclc_isa_version_*` (see [`ClangHip::compile`]).
const DEVICE_LIBS: [&str; 9] = [
    "hip",
    "ocml",
    "ockl",
    "oclc_daz_opt_off",
    "oclc_unsafe_math_off",
    "oclc_finite_only_off",
    "oclc_correctly_rounded_sqrt_on",
    "oclc_wavefrontsize64_on",
    "oclc_abi_version_500",
];

/// `__oclc_ISA_version` of a `gfx<major><minor><stepping>` target: gfx942 → 9402, gfx90a → 9010.
fn isa_version(arch: &str) -> Option<u32> {
    let digits = arch.strip_prefix("gfx")?;
    let (major, rest) = digits.split_at(digits.len().checked_sub(2)?);
    let hex = |i: usize| u32::from_str_radix(&rest[i..=i], 16).ok();
    Some(major.parse::<u32>().ok()? * 1000 + hex(0)? * 100 + hex(1)?)
}

impl ClangHip {
    /// Find `clang++-19` and the device-library bitcode (`ockl.bc`).
    pub fn discover() -> Result<ClangHip, DeviceError> {
        let clang = which("clang++-19")
            .or_else(|| Some(PathBuf::from("/usr/lib/llvm-19/bin/clang++")).filter(|p| p.is_file()))
            .ok_or_else(|| DeviceError::NoCompiler {
                message: "clang++-19 not found on PATH or in /usr/lib/llvm-19/bin; on Debian: apt-get install clang-19".into(),
            })?;
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib")
            .map(|d| {
                d.flatten()
                    .map(|e| e.path().join("amdgcn/bitcode"))
                    .collect()
            })
            .unwrap_or_default();
        dirs.sort();
        dirs.push(PathBuf::from("/opt/rocm/amdgcn/bitcode"));
        let device_libs = dirs
            .into_iter()
            .find(|d| d.join("ockl.bc").is_file())
            .ok_or_else(|| DeviceError::NoCompiler {
                message: "no ROCm device libraries (ockl.bc in /usr/lib/*/amdgcn/bitcode or /opt/rocm/amdgcn/bitcode); on Debian: apt-get install rocm-device-libs".into(),
            })?;
        Ok(ClangHip { clang, device_libs })
    }

    /// The arguments of a compile for `target`, before the source and `-o`: device code only,
    /// -O3, assembly, no automatic device libraries (`-nogpulib`: the driver would look for an
    /// `oclc_isa_version` file that Debian's set lacks) and [`DEVICE_LIBS`] plus `isa_lib`
    /// linked as builtins, so `threadIdx`, `__syncthreads` and the math functions are inlined
    /// rather than left as calls whose registers and stack the resource report cannot count.
    pub fn args(&self, target: Target, isa_lib: &Path) -> Result<Vec<String>, DeviceError> {
        let arch = offload_target(target)?;
        let mut args: Vec<String> = [
            "-x",
            "hip",
            &format!("--offload-arch={arch}"),
            "--cuda-device-only",
            "-nogpulib",
            "-O3",
            "-S",
        ]
        .map(String::from)
        .into();
        // a library this set lacks (ROCm 6 has no hip.bc) is left out: a symbol that needed it
        // stays undefined, which `compile` refuses
        let libs = DEVICE_LIBS.map(|l| self.device_libs.join(format!("{l}.bc")));
        let present = libs.iter().filter(|p| p.is_file()).map(PathBuf::as_path);
        for lib in present.chain([isa_lib]) {
            args.extend(["-Xclang", "-mlink-builtin-bitcode", "-Xclang"].map(String::from));
            args.push(lib.display().to_string());
        }
        Ok(args)
    }

    /// Compile `source` for an AMD `target` to assembly and report its resources. The target's
    /// `oclc_isa_version_*.bc` is taken from the device libraries, or (Debian's 5.2 set stops at
    /// gfx940) built here from its one constant. A compiler diagnostic, or a symbol the
    /// assembly uses but does not define (one the linked libraries lack), is a `Compile` error.
    pub fn compile(
        &self,
        source: &str,
        kernel: &str,
        target: Target,
    ) -> Result<HipReport, DeviceError> {
        let arch = offload_target(target)?;
        let dir = Scratch::new()?;
        let mut isa_lib = self.device_libs.join(format!(
            "oclc_isa_version_{}.bc",
            arch.trim_start_matches("gfx")
        ));
        if !isa_lib.is_file() {
            let version = isa_version(arch).ok_or_else(|| DeviceError::Unsupported {
                message: format!("no ISA version for {arch}"),
            })?;
            let cl = dir.0.join("isa_version.cl");
            isa_lib = dir.0.join("isa_version.bc");
            write(
                &cl,
                &format!("const __constant int __oclc_ISA_version = {version};\n"),
            )?;
            run(
                Command::new(&self.clang)
                    .args(["-x", "cl", "-cl-std=CL2.0", "--target=amdgcn-amd-amdhsa"])
                    .arg(format!("-mcpu={arch}"))
                    .args(["-nogpulib", "-c", "-emit-llvm"])
                    .arg(&cl)
                    .arg("-o")
                    .arg(&isa_lib),
                &self.clang,
            )?;
        }
        let args = self.args(target, &isa_lib)?;
        let (asm, report) = compile_hip(
            &dir.0,
            &self.clang,
            &args,
            "kernel.s",
            source,
            kernel,
            target,
        )?;
        let assembly = String::from_utf8_lossy(&asm).into_owned();
        let undefined = undefined_symbols(&assembly);
        if !undefined.is_empty() {
            return Err(DeviceError::Compile {
                kernel: kernel.into(),
                log: format!(
                    "{}\nundefined symbols in the assembly (not in the device libraries of {}): {}",
                    report.log,
                    self.device_libs.display(),
                    undefined.join(", ")
                ),
            });
        }
        Ok(HipReport { assembly, ..report })
    }
}

/// The AMD compiler that serves `target` on this machine: hipcc (code objects) for gfx90a, and
/// clang-19 with the ROCm device libraries (assembly: Debian's hipcc 5.2 predates gfx942) for
/// gfx942. Its name and the report.
pub fn compile_amd(
    source: &str,
    kernel: &str,
    target: Target,
) -> Result<(&'static str, HipReport), DeviceError> {
    match target {
        Target::Gfx942 => ClangHip::discover()?
            .compile(source, kernel, target)
            .map(|r| ("clang-19", r)),
        _ => HipToolchain::discover()?
            .compile(source, kernel, target)
            .map(|r| ("hipcc", r)),
    }
}

/// Symbols that AMDGPU assembly refers to (`sym@rel32@lo`, `sym@gotpcrel32@lo`, ...) but never
/// defines as a label, sorted and deduplicated.
pub fn undefined_symbols(asm: &str) -> Vec<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '$');
    let defined: std::collections::HashSet<&str> = asm
        .lines()
        .filter_map(|l| l.strip_suffix(':'))
        .filter(|l| l.chars().all(ident))
        .collect();
    let mut used: Vec<String> = asm
        .lines()
        .map(|l| l.split(';').next().unwrap_or(""))
        .flat_map(|l| l.split(|c: char| !ident(c) && c != '@'))
        .filter_map(|token| {
            let (name, _) = token.split_once('@')?;
            (!name.is_empty() && !defined.contains(name)).then(|| name.to_string())
        })
        .collect();
    used.sort();
    used.dedup();
    used
}

fn run(cmd: &mut Command, tool: &Path) -> Result<String, DeviceError> {
    let out = cmd.output().map_err(|e| DeviceError::NoCompiler {
        message: format!("cannot run {}: {e}", tool.display()),
    })?;
    if !out.status.success() {
        return Err(DeviceError::NoCompiler {
            message: format!(
                "{} failed: {}",
                tool.display(),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remarks_are_parsed_per_kernel() {
        let log = "k.hip:1:1: remark: Function Name: other [-Rpass-analysis=kernel-resource-usage]\n\
                   k.hip:1:1: remark:     VGPRs: 7 [-Rpass-analysis=kernel-resource-usage]\n\
                   k.hip:52:1: remark: Function Name: gemm_x [-Rpass-analysis=kernel-resource-usage]\n\
                   k.hip:52:1: remark:     SGPRs: 39 [-Rpass-analysis=kernel-resource-usage]\n\
                   k.hip:52:1: remark:     VGPRs: 80 [-Rpass-analysis=kernel-resource-usage]\n\
                   k.hip:52:1: remark:     AGPRs: 64 [-Rpass-analysis=kernel-resource-usage]\n\
                   k.hip:52:1: remark:     ScratchSize [bytes/lane]: 0 [-Rpass-analysis=kernel-resource-usage]\n\
                   k.hip:52:1: remark:     VGPRs Spill: 0 [-Rpass-analysis=kernel-resource-usage]\n\
                   k.hip:52:1: remark:     LDS Size [bytes/block]: 0 [-Rpass-analysis=kernel-resource-usage]";
        let mut r = HipReport::default();
        parse_remarks(log, "gemm_x", &mut r);
        assert_eq!(
            (
                r.vgprs,
                r.agprs,
                r.sgprs,
                r.scratch_bytes,
                r.vgpr_spills,
                r.lds_bytes
            ),
            (Some(80), Some(64), Some(39), Some(0), Some(0), Some(0))
        );
        assert!(!r.spills());
    }

    #[test]
    fn undefined_symbols_are_found() {
        let asm = "k:\n\ts_getpc_b64 s[0:1]\n\ts_add_u32 s0, s0, __ockl_get_local_id@rel32@lo+4\n\
                   \ts_addc_u32 s1, s1, __ockl_get_local_id@rel32@hi+12\n\
                   \ts_add_u32 s2, s2, .Lbuf@rel32@lo+4 ; a@b in a comment\n.Lbuf:\n";
        assert_eq!(undefined_symbols(asm), ["__ockl_get_local_id"]);
    }

    #[test]
    fn isa_versions_follow_the_device_libraries() {
        assert_eq!(isa_version("gfx942"), Some(9402));
        assert_eq!(isa_version("gfx90a"), Some(9010));
        assert_eq!(isa_version("gfx1030"), Some(10300));
        assert_eq!(isa_version("sm_90a"), None);
    }

    #[test]
    fn nvidia_targets_are_refused() {
        assert!(matches!(
            offload_target(Target::Sm80),
            Err(DeviceError::Unsupported { .. })
        ));
    }
}
