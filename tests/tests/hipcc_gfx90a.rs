//! HIP source compiled for gfx90a by hipcc: it must compile, contain MFMA instructions, not
//! spill and fit LDS. Needs Debian's hipcc; CI sets TESSERA_REQUIRE_HIPCC. (Debian's hipcc 5.2
//! is LLVM 15, which predates gfx942: MI300 code needs ROCm 6's compiler and is not checked here.)

use tessera_device::hipcc::HipToolchain;
use tessera_dsl::Target;
use tessera_tests::{config_for, gemm, required, variants, REPRESENTATIVE};
use tessera_tuner::pool::parallel_map;

fn hipcc_or_skip() -> Option<HipToolchain> {
    match HipToolchain::discover() {
        Ok(t) => Some(t),
        Err(e) => {
            assert!(!required("HIPCC"), "TESSERA_REQUIRE_HIPCC is set but {e}");
            eprintln!("skipped: {e}");
            None
        }
    }
}

/// The fused fixtures (layernorm, softmax, attention × representative configs × problem
/// classes) compile for gfx90a without spills and within 64 KiB of LDS; attention uses MFMA.
#[test]
fn fused_templates_compile_for_amd_without_spills() {
    let Some(tools) = hipcc_or_skip() else {
        return;
    };
    let target = Target::Gfx90a;
    let jobs = tessera_tests::fused_configs(target);
    assert!(jobs.len() >= 12, "too few AMD configs: {}", jobs.len());
    for name in ["layernorm", "softmax", "attention"] {
        assert!(
            jobs.iter().any(|(t, _, _)| t.name() == name),
            "no {name} config fits gfx90a"
        );
    }
    let results = parallel_map(&jobs, 2, |(t, c, _)| {
        let src = tessera_codegen::generate(*t, c, target).expect("codegen");
        tools
            .compile(&src.source, &src.name, target)
            .map(|r| (r, src.smem_bytes))
    });
    for ((t, c, _), r) in jobs.iter().zip(results) {
        let (report, smem) = r.unwrap_or_else(|e| panic!("{} ({target}): {e}", c.kernel_name()));
        assert!(!report.spills(), "{} spills: {report:?}", c.kernel_name());
        assert!(
            smem + report.lds_bytes.unwrap_or(0) <= 65536,
            "{}: LDS {smem}",
            c.kernel_name()
        );
        if t.name() == "attention" {
            let asm = tools.disassemble(&report).expect("disassemble");
            assert!(
                asm.lines().any(|l| l.contains("v_mfma")),
                "{}: no v_mfma instruction",
                c.kernel_name()
            );
        }
        println!(
            "{} ({target}): {} VGPRs",
            c.kernel_name(),
            report.vgprs.unwrap_or(0)
        );
    }
}

#[test]
fn gemm_compiles_for_amd_with_mfma_and_no_spills() {
    let Some(tools) = hipcc_or_skip() else {
        return;
    };
    let mut jobs = Vec::new();
    for target in [Target::Gfx90a] {
        for (_, problem) in variants() {
            for v in REPRESENTATIVE {
                if let Some(c) = config_for(&v, &problem, target) {
                    jobs.push((c, target));
                }
            }
        }
    }
    assert!(jobs.len() >= 4, "too few AMD configs: {}", jobs.len());
    let results = parallel_map(&jobs, 2, |(c, target)| {
        let src = tessera_codegen::generate(gemm(), c, *target).expect("codegen");
        tools
            .compile(&src.source, &src.name, *target)
            .map(|r| (r, src.smem_bytes))
    });
    for ((c, target), r) in jobs.iter().zip(results) {
        let (report, smem) = r.unwrap_or_else(|e| panic!("{} ({target}): {e}", c.kernel_name()));
        assert!(
            !report.spills(),
            "{} ({target}) spills: {report:?}",
            c.kernel_name()
        );
        assert!(
            smem + report.lds_bytes.unwrap_or(0) <= 65536,
            "{}: LDS {smem}",
            c.kernel_name()
        );
        let asm = tools.disassemble(&report).expect("disassemble");
        let mfma = asm.lines().filter(|l| l.contains("v_mfma")).count();
        assert!(
            mfma > 0,
            "{} ({target}): no v_mfma instruction",
            c.kernel_name()
        );
        println!(
            "{} ({target}): {} VGPRs, {} AGPRs, {mfma} v_mfma",
            c.kernel_name(),
            report.vgprs.unwrap_or(0),
            report.agprs.unwrap_or(0)
        );
    }
}
