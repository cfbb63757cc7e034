//! Compiling HIP source for AMD targets with `hipcc` (ROCm's or Debian's), without an AMD GPU:
//! the code object, the compiler's resource report (VGPRs, AGPRs, SGPRs, scratch, spills, LDS,
//! occupancy) and, on request, its disassembly (`clang-offload-bundler` + `llvm-objdump`).
//!
//! Tools are found once, on `PATH` or in `/usr/lib/llvm-*/bin`, by [`HipToolchain::discover`].
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
    /// The bundled code object `hipcc -c` wrote.
    pub code_object: Vec<u8>,
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

impl HipToolchain {
    /// Compile `source` for an AMD `target` (device code only, -O3) and report its resources.
    /// A compiler diagnostic is a `Compile` error carrying the log.
    pub fn compile(
        &self,
        source: &str,
        kernel: &str,
        target: Target,
    ) -> Result<HipReport, DeviceError> {
        let arch = offload_target(target)?;
        let dir = Scratch::new()?;
        let src = dir.0.join("kernel.hip");
        let obj = dir.0.join("kernel.co");
        std::fs::write(&src, source).map_err(|e| DeviceError::NoCompiler {
            message: format!("cannot write {}: {e}", src.display()),
        })?;
        let start = Instant::now();
        let out = Command::new(&self.hipcc)
            .arg(format!("--offload-arch={arch}"))
            .args([
                "--cuda-device-only",
                "-O3",
                "-c",
                "-Rpass-analysis=kernel-resource-usage",
            ])
            .arg(&src)
            .arg("-o")
            .arg(&obj)
            .output()
            .map_err(|e| DeviceError::NoCompiler {
                message: format!("cannot run {}: {e}", self.hipcc.display()),
            })?;
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            return Err(DeviceError::Compile {
                kernel: kernel.into(),
                log,
            });
        }
        let code_object = std::fs::read(&obj).map_err(|e| DeviceError::Compile {
            kernel: kernel.into(),
            log: format!("{log}\nno code object: {e}"),
        })?;
        let mut report = HipReport {
            kernel: kernel.into(),
            target: Some(target),
            code_object,
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
        Ok(report)
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
    fn nvidia_targets_are_refused() {
        assert!(matches!(
            offload_target(Target::Sm80),
            Err(DeviceError::Unsupported { .. })
        ));
    }
}
