//! tessera-tests: fixtures shared by the workspace tests (representative configs, problems and
//! toolchain gates). The tests themselves live in `tests/tests/`.

use tessera_dsl::{Config, DType, EpilogueOp, GemmProblem, Layout, Problem, Target, Template};

pub fn gemm() -> &'static dyn Template {
    tessera_library::templates();
    tessera_dsl::find("gemm").expect("the gemm template is registered")
}

/// Representative points of the GEMM space (tile_m, tile_n, tile_k, warps_m, warps_n, stages).
pub const REPRESENTATIVE: [[i64; 6]; 3] = [
    [64, 64, 32, 2, 2, 2],
    [128, 128, 32, 2, 2, 3],
    [128, 256, 32, 2, 4, 3],
];

/// Representative problem classes: (label, problem).
pub fn variants() -> Vec<(&'static str, Problem)> {
    let plain = GemmProblem::new(4096, 4096, 4096);
    let mut fused = GemmProblem::new(4096, 3072, 768);
    fused.input = DType::BF16;
    fused.output = DType::BF16;
    fused.layout_b = Layout::Row;
    fused.epilogue = vec![EpilogueOp::Bias, EpilogueOp::Gelu];
    let mut ragged = GemmProblem::new(257, 382, 520);
    ragged.output = DType::F32;
    ragged.epilogue = vec![EpilogueOp::BetaC, EpilogueOp::Residual, EpilogueOp::Silu];
    let mut qkv = GemmProblem::new(768, 2304, 768);
    qkv.epilogue = vec![EpilogueOp::Bias];
    qkv.store = tessera_dsl::Store::Heads {
        heads: 12,
        head_dim: 64,
        seq: 384,
    };
    vec![
        ("f16_rcr", Problem::Gemm(plain)),
        ("bf16_rrr_bias_gelu", Problem::Gemm(fused)),
        ("f16_f32out_a2", Problem::Gemm(ragged)),
        ("f16_qkv_heads", Problem::Gemm(qkv)),
    ]
}

/// The config for `values` specialised to `problem`, if it is valid on `target`.
pub fn config_for(values: &[i64], problem: &Problem, target: Target) -> Option<Config> {
    let t = gemm();
    let c = t.config(values, problem).ok()?;
    t.validate(&c, problem, &target.nominal_caps())
        .ok()
        .map(|_| c)
}

/// Whether a toolchain check must run (CI sets `TESSERA_REQUIRE_<NAME>`) or may be skipped here.
pub fn required(name: &str) -> bool {
    std::env::var_os(format!("TESSERA_REQUIRE_{name}")).is_some()
}
