//! The AMD compile check that `hipcc_gfx90a.rs` (hipcc, code objects) and `clang_gfx942.rs`
//! (clang-19, assembly) share: every template × representative config × problem class valid on
//! the target is compiled, and each kernel must compile, not call out of the kernel, not spill,
//! fit LDS and, for the MMA templates (GEMM, attention), contain `v_mfma` instructions — for a
//! GEMM with `mfma = 32`, `v_mfma_f32_32x32x8` ones only.

use crate::{
    fused_configs, gemm, required, valid_config, variants, REPRESENTATIVE, REPRESENTATIVE_MFMA32,
};
use tessera_device::hipcc::{ClangHip, HipReport, HipToolchain};
use tessera_device::DeviceError;
use tessera_dsl::{Config, Target, Template};
use tessera_tuner::pool::parallel_map;

/// The templates whose kernels must use the matrix cores.
const MMA_TEMPLATES: [&str; 2] = ["gemm", "attention"];

/// The compiler a check runs.
pub enum AmdCompiler {
    /// `hipcc -c`: code objects, disassembled for the instruction check.
    Hipcc(HipToolchain),
    /// `clang++-19 -S` with the device libraries linked: assembly.
    Clang(ClangHip),
}

impl AmdCompiler {
    /// hipcc, or `None` (the test is skipped) when it is missing and TESSERA_REQUIRE_HIPCC is unset.
    pub fn hipcc_or_skip() -> Option<AmdCompiler> {
        or_skip(HipToolchain::discover().map(AmdCompiler::Hipcc), "HIPCC")
    }

    /// clang-19 and the device libraries, or `None` (skipped) when missing and
    /// TESSERA_REQUIRE_GFX942 is unset.
    pub fn clang_or_skip() -> Option<AmdCompiler> {
        or_skip(ClangHip::discover().map(AmdCompiler::Clang), "GFX942")
    }

    fn compile(
        &self,
        source: &str,
        kernel: &str,
        target: Target,
    ) -> Result<HipReport, DeviceError> {
        match self {
            AmdCompiler::Hipcc(t) => t.compile(source, kernel, target),
            AmdCompiler::Clang(c) => c.compile(source, kernel, target),
        }
    }

    /// The kernel's instructions: the disassembled code object, or the assembly.
    fn assembly(&self, report: &HipReport) -> Result<String, DeviceError> {
        match self {
            AmdCompiler::Hipcc(t) => t.disassemble(report),
            AmdCompiler::Clang(_) => Ok(report.assembly.clone()),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            AmdCompiler::Hipcc(_) => "hipcc",
            AmdCompiler::Clang(_) => "clang-19",
        }
    }
}

fn or_skip(found: Result<AmdCompiler, DeviceError>, gate: &str) -> Option<AmdCompiler> {
    match found {
        Ok(c) => Some(c),
        Err(e) => {
            assert!(!required(gate), "TESSERA_REQUIRE_{gate} is set but {e}");
            eprintln!("skipped: {e}");
            None
        }
    }
}

/// Every template × representative config × problem class valid on `target`: the GEMM's
/// [`REPRESENTATIVE`] points (and, on AMD, the [`REPRESENTATIVE_MFMA32`] ones) × [`variants`],
/// then the fused fixtures.
pub fn representative_configs(target: Target) -> Vec<(&'static dyn Template, Config)> {
    let mut jobs = Vec::new();
    for (_, problem) in variants() {
        for v in REPRESENTATIVE.iter().chain(&REPRESENTATIVE_MFMA32) {
            if let Some(c) = valid_config(gemm(), v, &problem, target) {
                jobs.push((gemm(), c));
            }
        }
    }
    jobs.extend(fused_configs(target).into_iter().map(|(t, c, _)| (t, c)));
    jobs
}

/// Compile [`representative_configs`] for `target` (two at a time) and check every kernel;
/// panics listing each failure with its kernel and reason. Every registered template must have
/// at least `min_per_template` kernels. Returns how many kernels were compiled.
pub fn check_representative(tools: &AmdCompiler, target: Target, min_per_template: usize) -> usize {
    let jobs = representative_configs(target);
    for t in tessera_library::templates() {
        let n = jobs.iter().filter(|(j, _)| j.name() == t.name()).count();
        assert!(
            n >= min_per_template,
            "{}: {n} representative configs fit {target}, want at least {min_per_template}",
            t.name()
        );
    }
    let lds_limit = target.nominal_caps().smem_per_block;
    let start = std::time::Instant::now();
    let results = parallel_map(&jobs, 2, |(t, c)| {
        let src = tessera_codegen::generate(*t, c, target).expect("codegen");
        let report = tools.compile(&src.source, &src.name, target)?;
        let asm = tools.assembly(&report)?;
        Ok::<_, DeviceError>((report, asm, src.smem_bytes))
    });
    let mut failures = Vec::new();
    for ((t, c), r) in jobs.iter().zip(results) {
        let name = format!("{} ({target}, {})", c.kernel_name(), tools.name());
        let (report, asm, smem) = match r {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                continue;
            }
        };
        let mut fail = |why: String| failures.push(format!("{name}: {why}"));
        if report.spills() {
            fail(format!(
                "spills: {} VGPR, {} SGPR, scratch {} bytes/lane",
                report.vgpr_spills.unwrap_or(0),
                report.sgpr_spills.unwrap_or(0),
                report.scratch_bytes.unwrap_or(0)
            ));
        }
        let lds = smem + report.lds_bytes.unwrap_or(0);
        if lds > lds_limit {
            fail(format!(
                "LDS {lds} bytes ({smem} dynamic + {} static) over {lds_limit}",
                report.lds_bytes.unwrap_or(0)
            ));
        }
        if asm.contains("s_swappc_b64") {
            fail(
                "calls a function (s_swappc_b64): its registers and stack are not in the report"
                    .into(),
            );
        }
        let mfma = asm.lines().filter(|l| l.contains("v_mfma")).count();
        if MMA_TEMPLATES.contains(&t.name()) && mfma == 0 {
            fail("no v_mfma instruction".into());
        }
        // the `mfma` knob picks the atom: 32 must lower to the 32x32x8 instruction alone
        let (wide, narrow) = (
            asm.matches("v_mfma_f32_32x32x8").count(),
            asm.matches("v_mfma_f32_16x16x16").count(),
        );
        match c.get("mfma") {
            Some(32) if wide == 0 || narrow != 0 => fail(format!(
                "mfma = 32: {wide} v_mfma_f32_32x32x8 and {narrow} v_mfma_f32_16x16x16"
            )),
            Some(16) if wide != 0 => fail(format!("mfma = 16: {wide} v_mfma_f32_32x32x8")),
            _ => {}
        }
        println!(
            "{name}: {} VGPRs, {} AGPRs, {lds} bytes LDS, {mfma} v_mfma",
            report.vgprs.unwrap_or(0),
            report.agprs.unwrap_or(0),
        );
    }
    println!(
        "{}: {} kernels compiled for {target} in {:.1} s",
        tools.name(),
        jobs.len(),
        start.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {} kernels failed for {target}:\n{}",
        failures.len(),
        jobs.len(),
        failures.join("\n")
    );
    jobs.len()
}
