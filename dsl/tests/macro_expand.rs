//! `#[gpu_template]` end to end: a GEMM template defined here registers itself, and its
//! space, label, dtypes, build and check behave as written.

use tessera_dsl::{
    find, gpu_template, registry, BuildError, DType, GemmProblem, OpKind, Problem, RejectKind,
    Target, Template,
};

/// GEMM: D = epilogue(alpha·A·B) on tensor cores.
///
/// More prose that `about()` leaves out.
#[gpu_template(name = "test_gemm", op = gemm, label = "{tile_m}x{tile_n}x{tile_k}_w{warps_m}x{warps_n}_s{stages}")]
pub mod test_gemm {
    use tessera_dsl::{Config, DeviceCaps, Problem, Reject, RejectKind};

    params! {
        tile_m in [64, 128, 256],
        tile_n in [64, 128, 256],
        tile_k in [32, 64],
        warps_m in [1, 2, 4],
        warps_n in [1, 2, 4],
        stages in [2, 3, 4],
    }
    constraints! {
        tile_m % (warps_m * 16) == 0,
        tile_n % (warps_n * 16) == 0,
        warps_m * warps_n >= 4 && warps_m * warps_n <= 8,
    }
    dtypes! { input: [f16, bf16], acc: f32, output: [f16, bf16, f32] }
    kernel! {
        shared sa: a[tile_m, tile_k] x stages;
        shared sb: b[tile_k, tile_n] x stages;
        fragment acc: acc[tile_m, tile_n] warps [warps_m, warps_n];
        mainloop k step tile_k stages stages {
            load a -> sa;
            load b -> sb;
            mma acc += sa * sb;
        }
        epilogue acc -> d;
    }

    /// Items other than the DSL blocks pass through unchanged.
    pub const SMALLEST_M: u64 = 256;

    /// Tiles taller than the problem waste a whole block row: reject them.
    pub fn check(config: &Config, problem: &Problem, _caps: &DeviceCaps) -> Result<(), Reject> {
        let Some(g) = problem.as_gemm() else {
            return Err(Reject::new(RejectKind::Unsupported, "GEMM only"));
        };
        let tile_m = config.get("tile_m").unwrap_or(0) as u64;
        if tile_m > g.m {
            return Err(Reject::new(
                RejectKind::Shape,
                format!("tile_m = {tile_m} exceeds m = {}", g.m),
            ));
        }
        Ok(())
    }
}

// A second template with the default label, one stage-less shared tile and no `fn check`.
#[gpu_template(name = "test_gemm_small", op = gemm)]
mod small {
    params! { tile in [32, 64], warps_n in [2] }
    constraints! { tile / warps_n >= 16 }
    dtypes! { input: [bf16], acc: f32, output: [f32] }
    kernel! {
        shared sa: a[tile, 32] x 2;
        shared sb: b[32, tile];
        fragment acc: acc[tile, tile] warps [1, warps_n];
        mainloop k step 32 stages 1 {
            load a -> sa;
            load b -> sb;
            mma acc += sa * sb;
        }
        epilogue acc -> d;
    }
}

fn problem(m: u64, n: u64, k: u64) -> Problem {
    Problem::Gemm(GemmProblem::new(m, n, k))
}

#[test]
fn registers_itself() {
    let t = find("test_gemm").expect("registered");
    assert_eq!(t.name(), "test_gemm");
    assert_eq!(t.op(), OpKind::Gemm);
    assert!(registry().iter().any(|t| t.name() == "test_gemm"));
    assert!(registry().iter().any(|t| t.name() == "test_gemm_small"));
    assert!(std::ptr::eq(
        t as *const dyn Template as *const u8,
        &test_gemm::TEMPLATE as *const test_gemm::TestGemm as *const u8
    ));
    assert_eq!(t.about(), "GEMM: D = epilogue(alpha·A·B) on tensor cores.");
    assert_eq!(small::TEMPLATE.about(), "");
    assert_eq!(test_gemm::SMALLEST_M, 256);
}

#[test]
fn source_hash_is_16_hex_digits_and_differs_per_template() {
    for t in [&test_gemm::TEMPLATE as &dyn Template, &small::TEMPLATE] {
        let h = t.source_hash();
        assert_eq!(h.len(), 16, "{h}");
        assert!(h.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')), "{h}");
    }
    assert_ne!(
        test_gemm::TEMPLATE.source_hash(),
        small::TEMPLATE.source_hash()
    );
}

#[test]
fn space_matches_brute_force() {
    let space = test_gemm::TEMPLATE.space();
    assert_eq!(
        space.param_names(),
        ["tile_m", "tile_n", "tile_k", "warps_m", "warps_n", "stages"]
    );
    assert_eq!(space.raw_len(), 3 * 3 * 2 * 3 * 3 * 3);
    let mut expected = Vec::new();
    for tile_m in [64i64, 128, 256] {
        for tile_n in [64i64, 128, 256] {
            for tile_k in [32i64, 64] {
                for warps_m in [1i64, 2, 4] {
                    for warps_n in [1i64, 2, 4] {
                        for stages in [2i64, 3, 4] {
                            let w = warps_m * warps_n;
                            if tile_m % (warps_m * 16) == 0
                                && tile_n % (warps_n * 16) == 0
                                && (4..=8).contains(&w)
                            {
                                expected
                                    .push(vec![tile_m, tile_n, tile_k, warps_m, warps_n, stages]);
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(space.len(), expected.len());
    assert_eq!(space.enumerate(), expected);
    let texts: Vec<&str> = space.constraints.iter().map(|c| c.text).collect();
    assert_eq!(
        texts,
        [
            "tile_m % (warps_m * 16) == 0",
            "tile_n % (warps_n * 16) == 0",
            "warps_m * warps_n >= 4 && warps_m * warps_n <= 8",
        ]
    );
    assert_eq!(
        space.violated(&[64, 64, 32, 8, 1, 2]),
        Some("tile_m % (warps_m * 16) == 0")
    );

    let small = small::TEMPLATE.space();
    assert_eq!((small.raw_len(), small.len()), (2, 2));
}

#[test]
fn labels_follow_the_format_or_the_default() {
    assert_eq!(
        test_gemm::TEMPLATE.label(&[128, 64, 32, 2, 2, 4]),
        "128x64x32_w2x2_s4"
    );
    assert_eq!(small::TEMPLATE.label(&[64, 2]), "tile64_warps_n2");
}

#[test]
fn dtypes_are_the_declared_ones() {
    let d = test_gemm::TEMPLATE.dtypes();
    assert_eq!(d.inputs, [DType::F16, DType::BF16]);
    assert_eq!(d.acc, DType::F32);
    assert_eq!(d.outputs, [DType::F16, DType::BF16, DType::F32]);
    assert_eq!(small::TEMPLATE.dtypes().inputs, [DType::BF16]);
}

#[test]
fn build_lowers_a_config_to_ir() {
    let t = &test_gemm::TEMPLATE;
    let config = t
        .config(&[128, 64, 32, 2, 2, 3], &problem(512, 512, 512))
        .unwrap();
    assert_eq!(config.label, "128x64x32_w2x2_s3");
    assert_eq!(
        config.kernel_name(),
        "test_gemm_f16_f32acc_128x64x32_w2x2_s3_rcr_a8"
    );
    let ir = t.build(&config).unwrap();
    assert_eq!((ir.tile_m, ir.tile_n, ir.tile_k), (128, 64, 32));
    assert_eq!((ir.warps_m, ir.warps_n), (2, 2));
    assert_eq!(ir.name, config.kernel_name());
    assert_eq!(ir.shared.len(), 2);
    assert_eq!(ir.fragments().len(), 1);
    assert_eq!(ir.fragments()[0].dtype, DType::F32);
    // A is row-major: 128 lines of 32 + 8 padding; B is column-major (rcr): 64 lines of 32 + 8.
    // f16 is 2 bytes, 3 stages each.
    let expected = (128 * (32 + 8) + 64 * (32 + 8)) * 2 * 3;
    assert_eq!(ir.smem_bytes(), expected);
    assert_eq!(ir.shared[0].stages, 3);

    let small = &small::TEMPLATE;
    let mut g = GemmProblem::new(256, 256, 256);
    g.input = DType::BF16;
    g.output = DType::F32;
    let config = small.config(&[64, 2], &Problem::Gemm(g)).unwrap();
    let ir = small.build(&config).unwrap();
    assert_eq!(
        (ir.tile_m, ir.tile_n, ir.tile_k, ir.warps_m, ir.warps_n),
        (64, 64, 32, 1, 2)
    );
    assert_eq!(ir.shared[1].stages, 1);
    assert_eq!(ir.smem_bytes(), (64 * (32 + 8) * 2 + 64 * (32 + 8)) * 2);
}

#[test]
fn build_rejects_foreign_configs() {
    let other = small::TEMPLATE
        .config(&[64, 2], &problem(256, 256, 256))
        .unwrap();
    assert_eq!(
        test_gemm::TEMPLATE.build(&other),
        Err(BuildError::WrongTemplate {
            want: "test_gemm".into(),
            got: "test_gemm_small".into()
        })
    );
    let mut short = test_gemm::TEMPLATE
        .config(&[128, 64, 32, 2, 2, 3], &problem(256, 256, 256))
        .unwrap();
    short.params.pop();
    assert_eq!(
        test_gemm::TEMPLATE.build(&short),
        Err(BuildError::Arity {
            template: "test_gemm".into(),
            want: 6,
            got: 5
        })
    );
}

#[test]
fn the_modules_check_is_called() {
    let t = &test_gemm::TEMPLATE;
    let caps = Target::Sm90a.nominal_caps();
    let small_m = problem(64, 512, 512);
    let config = t.config(&[128, 64, 32, 2, 2, 3], &small_m).unwrap();
    let reject = t.check(&config, &small_m, &caps).unwrap_err();
    assert_eq!(reject.kind, RejectKind::Shape);
    assert_eq!(reject.reason, "tile_m = 128 exceeds m = 64");
    // validate runs the generic checks, then the module's check.
    assert_eq!(t.validate(&config, &small_m, &caps).unwrap_err(), reject);
    let big_m = problem(512, 512, 512);
    let config = t.config(&[128, 64, 32, 2, 2, 3], &big_m).unwrap();
    t.validate(&config, &big_m, &caps).unwrap();
    // Without a `fn check`, the default accepts.
    let small_config = small::TEMPLATE.config(&[64, 2], &small_m).unwrap();
    assert!(small::TEMPLATE
        .check(&small_config, &small_m, &caps)
        .is_ok());
}
