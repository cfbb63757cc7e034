//! tessera-tests: fixtures shared by the workspace tests (representative configs, problems and
//! toolchain gates). The tests themselves live in `tests/tests/`.

pub mod amd;

use tessera_dsl::{Config, DType, EpilogueOp, GemmProblem, Layout, Problem, Target, Template};

pub fn gemm() -> &'static dyn Template {
    tessera_library::templates();
    tessera_dsl::find("gemm").expect("the gemm template is registered")
}

/// Representative points of the GEMM space (tile_m, tile_n, tile_k, warps_m, warps_n, stages,
/// mfma).
pub const REPRESENTATIVE: [[i64; 10]; 3] = [
    [64, 64, 32, 2, 2, 2, 16, 1, 0, 1],
    [128, 128, 32, 2, 2, 3, 16, 1, 0, 1],
    [128, 256, 32, 2, 4, 3, 16, 1, 0, 1],
];

/// Representative points with AMD's 32x32x8 MFMA atom (`mfma = 32`, gfx90a and gfx942 only).
pub const REPRESENTATIVE_MFMA32: [[i64; 10]; 2] = [
    [64, 64, 32, 2, 2, 2, 32, 1, 0, 1],
    [128, 128, 32, 2, 2, 3, 32, 1, 0, 1],
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
    valid_config(gemm(), values, problem, target)
}

/// `t`'s config for `values` specialised to `problem`, if it is valid on `target`.
pub fn valid_config(
    t: &dyn Template,
    values: &[i64],
    problem: &Problem,
    target: Target,
) -> Option<Config> {
    let c = t.config(values, problem).ok()?;
    t.validate(&c, problem, &target.nominal_caps())
        .ok()
        .map(|_| c)
}

/// Whether a toolchain check must run (CI sets `TESSERA_REQUIRE_<NAME>`) or may be skipped here.
pub fn required(name: &str) -> bool {
    std::env::var_os(format!("TESSERA_REQUIRE_{name}")).is_some()
}

/// Representative configs and problem classes of one of the fused templates.
pub struct Fixture {
    pub template: &'static str,
    /// Points in the template's parameter order.
    pub points: Vec<Vec<i64>>,
    pub problems: Vec<(&'static str, Problem)>,
}

/// The fused templates' fixtures: layernorm, softmax and embedding (rows_per_block,
/// threads_per_row, vector), attention (block_q, block_kv, warps, stages, persistent).
pub fn fused_fixtures() -> Vec<Fixture> {
    use tessera_dsl::{
        AttentionLayout, AttentionProblem, EmbeddingProblem, LayernormProblem, Mask, Packing,
        SoftmaxProblem,
    };
    let row_points = vec![vec![4, 128, 8], vec![2, 256, 8], vec![1, 1024, 4]];
    let mut ln = LayernormProblem::new(12288, 768);
    ln.residual = true;
    ln.bias = true;
    let mut ln_wide = LayernormProblem::new(16384, 4096);
    ln_wide.dtype = DType::BF16;
    let mut sm = SoftmaxProblem::new(2 * 12 * 384, 384);
    sm.mask_period = Some(12 * 384);
    let mut sm_odd = SoftmaxProblem::new(1000, 1000);
    sm_odd.dtype = DType::BF16;
    let mut att = AttentionProblem::new(8, 12, 384, 64);
    att.mask = Mask::Padding;
    let mut att_wide = AttentionProblem::new(2, 16, 2048, 128);
    att_wide.dtype = DType::BF16;
    att_wide.mask = Mask::Causal;
    let mut att_tokens = AttentionProblem::new(8, 12, 128, 64);
    att_tokens.mask = Mask::Padding;
    att_tokens.layout = AttentionLayout::Bshd;
    // head_dim 32 (BERT-small geometries), token-major like a compiled plan
    let mut att_narrow = AttentionProblem::new(4, 12, 128, 32);
    att_narrow.mask = Mask::Padding;
    att_narrow.layout = AttentionLayout::Bshd;
    // grouped-query attention (LLaMA-class: 32 query heads over 8 K/V heads)
    let mut att_gqa = AttentionProblem::new(2, 32, 512, 64);
    att_gqa.kv_heads = 8;
    // a packed batch (ragged lengths, cross lengths for K/V), causal, 2 K/V heads
    let mut att_packed = AttentionProblem::new(1, 8, 1, 64).with_packing(Packing {
        lens_q: vec![1, 77, 100, 197, 384],
        lens_kv: vec![1, 77, 100, 197, 384],
    });
    att_packed.kv_heads = 2;
    att_packed.mask = Mask::Causal;
    // decode: one query row against 8192 keys, 16 heads (16 tiles for 132 SMs); and a few
    // query rows of a GQA batch with key padding, token-major
    let mut att_decode = AttentionProblem::new(1, 16, 1, 128);
    att_decode.seq_kv = 8192;
    let mut att_decode_gqa = AttentionProblem::new(2, 8, 4, 64);
    att_decode_gqa.seq_kv = 3000;
    att_decode_gqa.kv_heads = 2;
    att_decode_gqa.dtype = DType::BF16;
    att_decode_gqa.mask = Mask::Padding;
    att_decode_gqa.layout = AttentionLayout::Bshd;
    // the same decodes with O in bhsd, where grouped heads apply
    let att_grouped = AttentionProblem {
        heads: 32,
        kv_heads: 8,
        batch: 2,
        seq_kv: 4096,
        ..att_decode.clone()
    };
    let att_grouped_padding = AttentionProblem {
        layout: AttentionLayout::Bhsd,
        ..att_decode_gqa.clone()
    };
    let emb = EmbeddingProblem::new(32 * 128, 768, 128);
    let mut emb_wide = EmbeddingProblem::new(8 * 512, 1024, 512);
    emb_wide.dtype = DType::BF16;
    vec![
        Fixture {
            template: "layernorm",
            points: row_points.clone(),
            problems: vec![
                ("f16_h768_residual_bias", Problem::Layernorm(ln)),
                ("bf16_h4096", Problem::Layernorm(ln_wide)),
            ],
        },
        Fixture {
            template: "softmax",
            points: row_points,
            problems: vec![
                ("f16_c384_mask", Problem::Softmax(sm)),
                ("bf16_c1000", Problem::Softmax(sm_odd)),
            ],
        },
        Fixture {
            template: "attention",
            points: vec![
                vec![64, 64, 4, 2, 0, 1, 0],
                vec![128, 64, 4, 2, 0, 1, 0],
                vec![128, 128, 8, 3, 0, 1, 0],
            ],
            problems: vec![
                ("f16_d64_padding", Problem::Attention(att)),
                ("bf16_d128_causal", Problem::Attention(att_wide)),
            ],
        },
        Fixture {
            template: "embedding",
            points: vec![vec![4, 128, 8], vec![2, 256, 8], vec![1, 1024, 4]],
            problems: vec![
                ("f16_h768", Problem::Embedding(emb)),
                ("bf16_h1024", Problem::Embedding(emb_wide)),
            ],
        },
        // token-major O (the compiled BERT plan's attention): one config per target
        Fixture {
            template: "attention",
            points: vec![vec![64, 64, 4, 2, 0, 1, 0]],
            problems: vec![
                ("f16_d64_padding_bshd", Problem::Attention(att_tokens)),
                ("f16_d32_padding_bshd", Problem::Attention(att_narrow)),
            ],
        },
        // grouped-query and packed attention: one config per target
        Fixture {
            template: "attention",
            points: vec![vec![64, 64, 4, 2, 0, 1, 0]],
            problems: vec![
                ("f16_d64_gqa", Problem::Attention(att_gqa)),
                ("f16_d64_packed_causal", Problem::Attention(att_packed)),
            ],
        },
        // split-KV decode (sm_90a only: `split_kv` is a Hopper knob): clusters of 4 and 8
        Fixture {
            template: "attention",
            points: vec![vec![64, 128, 4, 2, 0, 4, 0], vec![64, 64, 4, 3, 0, 8, 0]],
            problems: vec![
                ("f16_d128_decode", Problem::Attention(att_decode)),
                (
                    "bf16_d64_decode_gqa_padding",
                    Problem::Attention(att_decode_gqa),
                ),
            ],
        },
        // grouped heads (sm_90a only): a K/V group's query heads in one tile, whole and split
        Fixture {
            template: "attention",
            points: vec![vec![64, 128, 4, 2, 0, 1, 1], vec![64, 64, 4, 3, 0, 4, 1]],
            problems: vec![
                (
                    "f16_d128_decode_gqa_grouped",
                    Problem::Attention(att_grouped),
                ),
                (
                    "bf16_d64_decode_gqa_padding_grouped",
                    Problem::Attention(att_grouped_padding),
                ),
            ],
        },
    ]
}

/// Persistent sm_90a attention points (block_q, block_kv, warps, stages, persistent = 1,
/// split_kv = 1) and the fixture problem class each is snapshotted on: the benchmark's best one-tile-per-block
/// tiles (two consumers at D128, three at D64), made persistent, and a packed batch's (whose
/// blocks skip the tiles past their sequences).
pub const PERSISTENT_ATTENTION: [([i64; 7], &str); 5] = [
    ([128, 128, 8, 2, 1, 1, 0], "bf16_d128_causal"),
    ([192, 64, 12, 2, 1, 1, 0], "f16_d64_padding"),
    // three consumers with 128-key blocks: S, O and P in 128 of their 160 registers
    ([192, 128, 12, 3, 1, 1, 0], "f16_d64_padding"),
    ([128, 128, 8, 2, 1, 1, 0], "f16_d64_packed_causal"),
    // three causal consumers: each stops at the key blocks its own 64 rows reach
    ([192, 64, 12, 2, 1, 1, 0], "f16_d64_packed_causal"),
];

/// Every (template, config, label) of the fused fixtures that is valid on `target`.
pub fn fused_configs(target: Target) -> Vec<(&'static dyn Template, Config, &'static str)> {
    tessera_library::templates();
    let mut out = Vec::new();
    for f in fused_fixtures() {
        let t = tessera_dsl::find(f.template).expect("fused template registered");
        for (label, problem) in &f.problems {
            for v in &f.points {
                if let Some(c) = valid_config(t, v, problem, target) {
                    out.push((t, c, *label));
                }
            }
        }
    }
    out
}
