//! Fused-attention kernels compiled by NVRTC (sm_80, sm_90a: every config of the space for
//! head_dim 64 and 128 and each mask) and by hipcc (gfx90a: a representative subset). No
//! kernel may fail to compile, spill, or exceed its target's shared memory; kernels whose
//! tiles do not fit the target's shared memory are skipped (the template's validation rejects
//! them), and so are the warp tiles codegen rejects for its register budget.
//! CI sets TESSERA_REQUIRE_NVRTC / TESSERA_REQUIRE_HIPCC.

use tessera_codegen::{emit, CodegenError, KernelSource};
use tessera_device::cuda::{nvrtc_available, nvrtc_compile};
use tessera_device::hipcc::HipToolchain;
use tessera_dsl::template::variant_for;
use tessera_dsl::{
    AttentionProblem, Config, DType, KernelBuilder, KernelIr, Mask, OpKind, Problem, Target,
};
use tessera_tests::required;
use tessera_tuner::pool::{default_jobs, parallel_map};

/// (block_q, block_kv, warps, stages)
type Point = (i64, i64, i64, i64);

fn config(p: Point, head_dim: u64, mask: Mask, dtype: DType) -> Config {
    let (bq, bkv, warps, stages) = p;
    let mut problem = AttentionProblem::new(2, 3, 257, head_dim);
    problem.mask = mask;
    problem.dtype = dtype;
    Config {
        template: "attention".into(),
        params: vec![
            ("block_q".into(), bq),
            ("block_kv".into(), bkv),
            ("warps".into(), warps),
            ("stages".into(), stages),
        ],
        label: format!("q{bq}_kv{bkv}_w{warps}_s{stages}"),
        variant: variant_for(DType::F32, &Problem::Attention(problem)),
    }
}

/// The IR of the attention template for a config.
fn build(c: &Config) -> KernelIr {
    let (bq, bkv, warps, stages) = (
        c.get("block_q").unwrap_or(64),
        c.get("block_kv").unwrap_or(64),
        c.get("warps").unwrap_or(4),
        c.get("stages").unwrap_or(2),
    );
    let hd = i64::from(c.variant.extent);
    let mut b = KernelBuilder::new(c, OpKind::Attention);
    let steps: [Result<(), tessera_dsl::BuildError>; 16] = [
        b.shared("sq", "q", bq, hd, 1),
        b.shared("sk", "k", bkv, hd, stages),
        b.shared("sv", "v", bkv, hd, stages),
        b.fragment("s", DType::F32, bq, bkv, warps, 1),
        b.fragment("acc", DType::F32, bq, hd, warps, 1),
        b.load("q", "sq"),
        b.begin_mainloop(bkv, stages),
        b.load("k", "sk"),
        b.load("v", "sv"),
        b.mma_with("s", "sq", "sk", true, true),
        b.mask("s"),
        b.online_softmax("s", "acc"),
        b.mma_with("acc", "s", "sv", false, false),
        b.end_mainloop(),
        b.normalize("acc"),
        b.epilogue("acc", "o"),
    ];
    for s in steps {
        s.expect("attention IR");
    }
    b.finish().expect("attention IR")
}

fn space() -> Vec<Point> {
    let mut out = Vec::new();
    for bq in [64, 128] {
        for bkv in [32, 64, 128] {
            for warps in [4, 8] {
                for stages in [2, 3] {
                    if bq % (warps * 16) == 0 {
                        out.push((bq, bkv, warps, stages));
                    }
                }
            }
        }
    }
    out
}

/// The kernels to compile for `target`: (config, source), skipping what does not fit.
fn kernels(
    target: Target,
    points: &[Point],
    dtypes: &[DType],
) -> (Vec<(Config, KernelSource)>, usize) {
    let mut out = Vec::new();
    let mut skipped = 0;
    let limit = target.nominal_caps().smem_per_block;
    for &p in points {
        for hd in [64, 128] {
            for mask in [Mask::None, Mask::Causal, Mask::Padding] {
                for &dt in dtypes {
                    let c = config(p, hd, mask, dt);
                    match emit(&build(&c), target) {
                        Ok(k) if k.smem_bytes <= limit => out.push((c, k)),
                        Ok(_) => skipped += 1,
                        Err(CodegenError::Unsupported(m)) if m.contains("budget") => skipped += 1,
                        Err(e) => panic!("{} ({target}): {e}", c.kernel_name()),
                    }
                }
            }
        }
    }
    (out, skipped)
}

#[test]
fn attention_compiles_with_nvrtc_without_spills() {
    if !nvrtc_available() {
        assert!(
            !required("NVRTC"),
            "TESSERA_REQUIRE_NVRTC is set but libnvrtc cannot be loaded"
        );
        eprintln!("skipped: libnvrtc not found (run scripts/test.sh to install it)");
        return;
    }
    let mut jobs = Vec::new();
    let mut skipped = 0;
    for target in [Target::Sm80, Target::Sm90a] {
        // f16 everywhere; bf16 on the sm_90a half (same code but for the atom and packing)
        let dtypes: &[DType] = if target == Target::Sm90a {
            &[DType::F16, DType::BF16]
        } else {
            &[DType::F16]
        };
        let (k, s) = kernels(target, &space(), dtypes);
        skipped += s;
        jobs.extend(k.into_iter().map(|(c, k)| (c, k, target)));
    }
    let results = parallel_map(&jobs, default_jobs(), |(_, k, target)| {
        nvrtc_compile(&k.source, &k.name, *target, &[])
    });
    let mut failures = Vec::new();
    for ((c, k, target), r) in jobs.iter().zip(&results) {
        let name = format!("{} ({target})", c.kernel_name());
        match r {
            Err(e) => failures.push(format!("{name}: {e}")),
            Ok(report) => {
                let spills = report.usage.spill_bytes();
                if spills != Some(0) {
                    failures.push(format!("{name}: spills {spills:?} bytes"));
                }
                let total = k.smem_bytes + report.usage.static_smem_bytes.unwrap_or(0);
                if total > target.nominal_caps().smem_per_block {
                    failures.push(format!("{name}: {total} bytes of shared memory"));
                }
                println!(
                    "{name}: {} registers, {} bytes smem",
                    report.usage.registers.unwrap_or(0),
                    total
                );
            }
        }
    }
    println!(
        "nvrtc: compiled {} attention kernels, skipped {skipped}",
        jobs.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n{}",
        failures.len(),
        jobs.len(),
        failures.join("\n")
    );
    assert!(
        jobs.len() >= 100,
        "too few kernels compiled: {}",
        jobs.len()
    );
}

#[test]
fn attention_compiles_for_gfx90a_with_mfma_and_no_spills() {
    let tools = match HipToolchain::discover() {
        Ok(t) => t,
        Err(e) => {
            assert!(!required("HIPCC"), "TESSERA_REQUIRE_HIPCC is set but {e}");
            eprintln!("skipped: {e}");
            return;
        }
    };
    let target = Target::Gfx90a;
    let points = [(64, 32, 4, 2), (128, 64, 8, 2), (128, 32, 4, 3)];
    let (mut jobs, _) = kernels(target, &points, &[DType::F16, DType::BF16]);
    // representative: each mask and dtype, both head sizes, a few tiles
    jobs.retain(|(c, _)| {
        let bf = c.variant.input == DType::BF16;
        let causal = c.variant.mask == Mask::Causal;
        !bf || causal
    });
    assert!(jobs.len() >= 8, "too few AMD kernels: {}", jobs.len());
    let results = parallel_map(&jobs, 4, |(_, k)| tools.compile(&k.source, &k.name, target));
    for ((c, k), r) in jobs.iter().zip(results) {
        let report = r.unwrap_or_else(|e| panic!("{} ({target}): {e}", c.kernel_name()));
        assert!(!report.spills(), "{} spills: {report:?}", c.kernel_name());
        assert!(
            k.smem_bytes + report.lds_bytes.unwrap_or(0) <= 65536,
            "{}: LDS {}",
            c.kernel_name(),
            k.smem_bytes
        );
        let asm = tools.disassemble(&report).expect("disassemble");
        let mfma = asm.lines().filter(|l| l.contains("v_mfma")).count();
        assert!(mfma > 0, "{}: no v_mfma instruction", c.kernel_name());
        println!(
            "{}: {} VGPRs, {} AGPRs, {mfma} v_mfma",
            c.kernel_name(),
            report.vgprs.unwrap_or(0),
            report.agprs.unwrap_or(0)
        );
    }
}
