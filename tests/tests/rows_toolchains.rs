//! Generated row-wise kernels (layernorm with and without residual/bias, softmax with and
//! without mask) compiled by NVRTC for sm_80 and sm_90a and by hipcc for gfx90a: they must
//! compile without spills. Needs libnvrtc / Debian's hipcc; CI sets TESSERA_REQUIRE_NVRTC and
//! TESSERA_REQUIRE_HIPCC.

#[path = "../../codegen/tests/support/rows_ir.rs"]
mod rows_ir;

use rows_ir::{layernorm, layernorm_problem, softmax, softmax_problem, Shape};
use tessera_device::cuda::{nvrtc_available, nvrtc_compile};
use tessera_device::hipcc::HipToolchain;
use tessera_dsl::{DType, KernelIr, Target};
use tessera_tests::required;
use tessera_tuner::pool::{default_jobs, parallel_map};

/// (rows per block, threads per row, vector) × row length: sub-warp, one-warp and multi-warp
/// rows, 2/4/8-element vectors, rows that are and are not multiples of a block's span.
const CASES: [(Shape, u64); 10] = [
    ((1, 128, 8), 1024),
    ((4, 32, 8), 768),
    ((2, 64, 4), 1000),
    ((1, 1024, 8), 4096),
    ((4, 256, 2), 4096),
    ((8, 128, 4), 1024),
    ((1, 512, 8), 4096),
    ((2, 128, 8), 4096),
    ((8, 128, 8), 1024),
    ((1, 1024, 8), 16384),
];

fn kernels() -> Vec<KernelIr> {
    let mut out = Vec::new();
    for (i, (shape, cols)) in CASES.into_iter().enumerate() {
        let dtype = if i % 2 == 0 { DType::F16 } else { DType::BF16 };
        let fused = i % 3 != 0;
        let p = layernorm_problem(4096, cols, dtype, fused, fused);
        out.push(layernorm(shape, &p));
        let p = softmax_problem(4096, cols, dtype, fused.then_some(64));
        out.push(softmax(shape, &p));
    }
    out
}

#[test]
fn row_kernels_compile_with_nvrtc_without_spills() {
    if !nvrtc_available() {
        assert!(
            !required("NVRTC"),
            "TESSERA_REQUIRE_NVRTC is set but libnvrtc cannot be loaded"
        );
        eprintln!("skipped: libnvrtc not found (run scripts/test.sh to install it)");
        return;
    }
    let mut jobs = Vec::new();
    for target in [Target::Sm80, Target::Sm90a] {
        for ir in kernels() {
            jobs.push((ir, target));
        }
    }
    let results = parallel_map(&jobs, default_jobs(), |(ir, target)| {
        let src = tessera_codegen::emit(ir, *target).expect("codegen");
        nvrtc_compile(&src.source, &src.name, *target, &[])
    });
    let mut failures = Vec::new();
    for ((ir, target), r) in jobs.iter().zip(&results) {
        let name = format!("{} ({target})", ir.name);
        match r {
            Err(e) => failures.push(format!("{name}: {e}")),
            Ok(report) => {
                let spills = report.usage.spill_bytes();
                if spills != Some(0) {
                    failures.push(format!("{name}: spills {spills:?} bytes"));
                }
                let regs = report.usage.registers.unwrap_or(0);
                if regs == 0 {
                    failures.push(format!("{name}: no register count reported"));
                }
                println!(
                    "{name}: {regs} registers, {} B static shared",
                    report.usage.static_smem_bytes.unwrap_or(0)
                );
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        jobs.len(),
        failures.join("\n")
    );
}

#[test]
fn row_kernels_compile_for_amd_without_spills() {
    let tools = match HipToolchain::discover() {
        Ok(t) => t,
        Err(e) => {
            assert!(!required("HIPCC"), "TESSERA_REQUIRE_HIPCC is set but {e}");
            eprintln!("skipped: {e}");
            return;
        }
    };
    let target = Target::Gfx90a;
    let jobs = kernels();
    let results = parallel_map(&jobs, 2, |ir| {
        let src = tessera_codegen::emit(ir, target).expect("codegen");
        tools.compile(&src.source, &src.name, target)
    });
    for (ir, r) in jobs.iter().zip(results) {
        let report = r.unwrap_or_else(|e| panic!("{} ({target}): {e}", ir.name));
        assert!(
            !report.spills(),
            "{} ({target}) spills: {report:?}",
            ir.name
        );
        assert!(
            report.lds_bytes.unwrap_or(0) <= 65536,
            "{}: LDS {:?}",
            ir.name,
            report.lds_bytes
        );
        println!(
            "{} ({target}): {} VGPRs, {} B LDS",
            ir.name,
            report.vgprs.unwrap_or(0),
            report.lds_bytes.unwrap_or(0)
        );
    }
}
