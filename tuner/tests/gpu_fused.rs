//! `gpu_*`: the layernorm, softmax, attention and embedding templates on a real GPU (run on the GPU
//! machine with `--features gpu`). Every config that fits each problem is verified against the
//! f64 CPU reference on fresh random inputs with the output poisoned first; sizes include
//! rows, sequence lengths and hidden sizes that are not multiples of any block size.
#![cfg(feature = "gpu")]

mod gpu_common;

use gpu_common::{report, verify_points};
use tessera_device::cuda::CudaDevice;
use tessera_device::{Device, DeviceConfig};
use tessera_dsl::{
    AttentionLayout, AttentionProblem, Config, DType, EmbeddingProblem, LayernormProblem, Mask,
    Problem, SoftmaxProblem, Template,
};

/// Every point of the template's space that fits `p` on this device (at most 24, spread evenly),
/// then every fitting point that `always` picks.
fn points_for(
    t: &dyn Template,
    device: &dyn Device,
    p: &Problem,
    always: &dyn Fn(&Config) -> bool,
) -> Vec<Vec<i64>> {
    let valid: Vec<Vec<i64>> = t
        .space()
        .enumerate()
        .into_iter()
        .filter(|v| {
            t.config(v, p)
                .map(|c| t.validate(&c, p, device.caps()).is_ok())
                .unwrap_or(false)
        })
        .collect();
    let n = valid.len();
    if n <= 24 {
        return valid;
    }
    let mut points: Vec<Vec<i64>> = (0..24).map(|i| valid[i * n / 24].clone()).collect();
    for v in &valid {
        if !points.contains(v) && t.config(v, p).is_ok_and(|c| always(&c)) {
            points.push(v.clone());
        }
    }
    // every value of every parameter that some valid config takes is verified at least once
    // (a per-target knob such as attention's `persistent` is not left to the sampling)
    for v in &valid {
        let new_value = v
            .iter()
            .enumerate()
            .any(|(i, x)| !points.iter().any(|p| p[i] == *x));
        if new_value {
            points.push(v.clone());
        }
    }
    points
}

fn run_all(test: &str, template: &str, problems: &[Problem]) {
    run_all_and(test, template, problems, &|_| false);
}

/// [`run_all`], verifying besides the sampled points every fitting config `always` picks.
fn run_all_and(test: &str, template: &str, problems: &[Problem], always: &dyn Fn(&Config) -> bool) {
    let device = CudaDevice::open(&DeviceConfig::default()).expect("open GPU 0");
    tessera_library::templates();
    let t = tessera_dsl::find(template).unwrap();
    let (mut runs, mut configs, mut failures) = (0usize, 0usize, Vec::new());
    for (i, p) in problems.iter().enumerate() {
        let points = points_for(t, &device, p, always);
        assert!(!points.is_empty(), "no config of {template} fits {p}");
        configs = configs.max(points.len());
        let (n, f) = verify_points(&device, t, &points, p, 1000 + i as u64);
        runs += n;
        failures.extend(f);
    }
    report(test, runs, configs, &failures);
}

#[test]
fn gpu_layernorm_matches_reference() {
    let mut problems = Vec::new();
    for dtype in [DType::F16, DType::BF16] {
        for (rows, cols) in [
            (1, 768),
            (333, 768),
            (1000, 1024),
            (129, 1000),
            (77, 4096),
            (5, 8192),
        ] {
            for (residual, bias) in [(false, false), (true, false), (true, true)] {
                problems.push(Problem::Layernorm(LayernormProblem {
                    rows,
                    cols,
                    dtype,
                    residual,
                    bias,
                }));
            }
        }
    }
    run_all("gpu_layernorm_matches_reference", "layernorm", &problems);
}

#[test]
fn gpu_softmax_matches_reference() {
    let mut problems = Vec::new();
    for dtype in [DType::F16, DType::BF16] {
        for (rows, cols, mask_period) in [
            (2 * 12 * 384, 384, Some(12 * 384)),
            (1000, 128, None),
            (37, 1000, Some(37)),
            (8, 4096, None),
            (3, 2050, Some(1)),
        ] {
            problems.push(Problem::Softmax(SoftmaxProblem {
                rows,
                cols,
                dtype,
                mask_period,
            }));
        }
    }
    run_all("gpu_softmax_matches_reference", "softmax", &problems);
}

#[test]
fn gpu_attention_matches_reference() {
    let mut problems = Vec::new();
    let shapes: [(u64, u64, u64, u64, u64, Mask); 11] = [
        (2, 12, 128, 128, 32, Mask::Padding),
        (1, 3, 77, 200, 32, Mask::None),
        (2, 2, 100, 100, 32, Mask::Causal),
        (2, 3, 384, 384, 64, Mask::None),
        (2, 3, 100, 100, 64, Mask::Causal),
        (3, 2, 77, 77, 64, Mask::Padding),
        (1, 2, 200, 333, 128, Mask::None),
        (2, 2, 130, 130, 128, Mask::Causal),
        (2, 2, 257, 257, 128, Mask::Padding),
        (1, 1, 1, 1, 64, Mask::None),
        (1, 4, 1000, 1000, 64, Mask::Causal),
    ];
    for dtype in [DType::F16, DType::BF16] {
        for &(batch, heads, seq_q, seq_kv, head_dim, mask) in &shapes {
            problems.push(Problem::Attention(AttentionProblem {
                batch,
                heads,
                kv_heads: heads,
                seq_q,
                seq_kv,
                head_dim,
                dtype,
                mask,
                layout: AttentionLayout::Bhsd,
                packed: None,
            }));
        }
    }
    // token-major O ([batch, seq_q, heads, head_dim]), as the compiled BERT plan stores it:
    // several heads and batches so a wrong row stride or head offset cannot pass
    let token_major: [(u64, u64, u64, u64, Mask); 5] = [
        (2, 12, 128, 64, Mask::Padding),
        (4, 12, 128, 32, Mask::Padding),
        (3, 2, 77, 64, Mask::Padding),
        (2, 3, 100, 128, Mask::Causal),
        (1, 4, 257, 128, Mask::None),
    ];
    for dtype in [DType::F16, DType::BF16] {
        for &(batch, heads, seq, head_dim, mask) in &token_major {
            let mut a = AttentionProblem::new(batch, heads, seq, head_dim);
            a.dtype = dtype;
            a.mask = mask;
            a.layout = AttentionLayout::Bshd;
            problems.push(Problem::Attention(a));
        }
    }
    // every three-consumer plan (192 query rows): their S, O and P take 128 of a consumer's 160
    // registers at head_dim 64, so none is left to the sampling
    run_all_and(
        "gpu_attention_matches_reference",
        "attention",
        &problems,
        &|c: &Config| c.get("warps") == Some(12),
    );
}

/// A GQA case: (batch, heads, kv_heads, seq_q, seq_kv, head_dim, mask, layout).
type GqaCase = (u64, u64, u64, u64, u64, u64, Mask, AttentionLayout);

/// Panic unless every problem admits at least one sm_90a attention config that `wanted`
/// picks (so [`points_for`], which covers every value some valid config takes, verifies it).
fn assert_each_admits(
    problems: &[Problem],
    what: &str,
    wanted: impl Fn(&tessera_dsl::Config) -> bool,
) {
    tessera_library::templates();
    let t = tessera_dsl::find("attention").unwrap();
    let hopper = tessera_dsl::Target::Sm90a.nominal_caps();
    for p in problems {
        let admitted = t
            .space()
            .enumerate()
            .into_iter()
            .filter_map(|v| t.config(&v, p).ok())
            .filter(|c| wanted(c) && t.validate(c, p, &hopper).is_ok())
            .count();
        assert!(admitted > 0, "{p} admits no {what} config");
    }
}

/// Each case as an f16 and a bf16 problem.
fn case_problems(cases: &[GqaCase]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for dtype in [DType::F16, DType::BF16] {
        for &(batch, heads, kv_heads, seq_q, seq_kv, head_dim, mask, layout) in cases {
            let mut a = AttentionProblem::new(batch, heads, seq_q, head_dim);
            a.seq_kv = seq_kv;
            a.kv_heads = kv_heads;
            a.dtype = dtype;
            a.mask = mask;
            a.layout = layout;
            a.check().expect("a valid attention case");
            problems.push(Problem::Attention(a));
        }
    }
    problems
}

/// Grouped-query and multi-query attention: kv_heads 1, 2 and heads / 2 (and one group of 4),
/// odd and unequal lengths, every mask, both output layouts, head_dim 32/64/128, f16 and bf16.
#[test]
fn gpu_attention_gqa_matches_reference() {
    let shapes: [GqaCase; 9] = [
        (2, 8, 1, 77, 77, 32, Mask::None, AttentionLayout::Bhsd),
        (2, 8, 2, 100, 100, 64, Mask::Causal, AttentionLayout::Bhsd),
        (1, 8, 4, 197, 333, 128, Mask::None, AttentionLayout::Bhsd),
        (2, 6, 3, 128, 128, 64, Mask::Padding, AttentionLayout::Bhsd),
        (1, 4, 1, 1, 1000, 64, Mask::None, AttentionLayout::Bhsd),
        (2, 4, 2, 257, 257, 128, Mask::Causal, AttentionLayout::Bhsd),
        (3, 16, 4, 200, 77, 32, Mask::Causal, AttentionLayout::Bhsd),
        (2, 8, 2, 100, 100, 64, Mask::Padding, AttentionLayout::Bshd),
        (1, 12, 6, 384, 384, 128, Mask::None, AttentionLayout::Bshd),
    ];
    let problems = case_problems(&shapes);
    run_all(
        "gpu_attention_gqa_matches_reference",
        "attention",
        &problems,
    );
}

/// Decode-shaped attention, where sm_90a's split-KV configs (`split_kv` 2, 4, 8: a cluster of
/// blocks per tile combining partial softmaxes through distributed shared memory) are valid:
/// one to a few query rows against long and odd key lengths, GQA, every mask (causal leaves
/// most of a cluster's blocks without keys; padding lengths vary per batch), both layouts,
/// head_dim 32/64/128, f16 and bf16.
#[test]
fn gpu_attention_split_kv_matches_reference() {
    let shapes: [GqaCase; 7] = [
        (1, 16, 16, 1, 4100, 128, Mask::None, AttentionLayout::Bhsd),
        (2, 8, 2, 4, 3000, 64, Mask::Padding, AttentionLayout::Bshd),
        (1, 4, 4, 16, 1000, 32, Mask::Causal, AttentionLayout::Bhsd),
        (1, 8, 1, 77, 2000, 64, Mask::None, AttentionLayout::Bhsd),
        (3, 2, 2, 1, 130, 128, Mask::Padding, AttentionLayout::Bhsd),
        (1, 32, 8, 1, 8192, 128, Mask::None, AttentionLayout::Bshd),
        (2, 4, 4, 100, 333, 64, Mask::Causal, AttentionLayout::Bshd),
    ];
    let problems = case_problems(&shapes);
    // every problem admits split configs on sm_90a, so the sampling verifies them
    assert_each_admits(&problems, "split-KV", |c| {
        c.get("split_kv").unwrap_or(1) > 1
    });
    run_all(
        "gpu_attention_split_kv_matches_reference",
        "attention",
        &problems,
    );
}

/// Grouped heads (sm_90a `group_heads = 1`: a K/V head's group of query heads in one tile's
/// rows, whole or with split keys): decode-shaped GQA and MQA problems with O in bhsd, groups of
/// 3 to 16 heads, 1 to 16 queries per head (a group filling 64 rows exactly), unmasked and
/// key-padded, head_dim 32/64/128, f16 and bf16.
#[test]
fn gpu_attention_grouped_heads_matches_reference() {
    let shapes: [GqaCase; 6] = [
        (1, 32, 8, 1, 4100, 128, Mask::None, AttentionLayout::Bhsd),
        (2, 8, 2, 4, 3000, 64, Mask::Padding, AttentionLayout::Bhsd),
        (3, 16, 1, 1, 1000, 32, Mask::None, AttentionLayout::Bhsd),
        (2, 12, 4, 5, 777, 64, Mask::Padding, AttentionLayout::Bhsd),
        (1, 8, 2, 16, 300, 128, Mask::None, AttentionLayout::Bhsd),
        (2, 64, 8, 1, 2000, 128, Mask::Padding, AttentionLayout::Bhsd),
    ];
    let problems = case_problems(&shapes);
    // every problem admits grouped configs on sm_90a, so the sampling verifies them
    assert_each_admits(&problems, "grouped-heads", |c| {
        c.get("group_heads") == Some(1)
    });
    run_all(
        "gpu_attention_grouped_heads_matches_reference",
        "attention",
        &problems,
    );
}

/// Packed (padding-free) batches, the shared fixture (`tessera_library::fixtures::packed_attention`):
/// lengths 1, 77, 100, 197 and the maximum in one batch, a seeded random batch up to 384, cross
/// lengths (seq_q ≠ seq_kv per sequence), causal and not, with and without grouped K/V heads,
/// head_dim 32/64/128, f16 and bf16.
#[test]
fn gpu_attention_packed_matches_reference() {
    let problems = tessera_library::fixtures::packed_attention();
    for p in &problems {
        if let Problem::Attention(a) = p {
            a.check().expect("a valid packed problem");
        }
    }
    run_all(
        "gpu_attention_packed_matches_reference",
        "attention",
        &problems,
    );
}

#[test]
fn gpu_embedding_matches_reference() {
    let mut problems = Vec::new();
    // (batch, seq, hidden, vocab, positions, types): BERT-base and -large rows, ragged token
    // counts, small vocabularies (every id and position is read) and hidden sizes that are
    // not multiples of any block's width
    let shapes: [(u64, u64, u64, u64, u64, u64); 6] = [
        (4, 128, 768, 30522, 512, 2),
        (3, 77, 768, 1000, 512, 2),
        (2, 512, 1024, 30522, 512, 2),
        (5, 33, 1000, 64, 40, 3),
        (1, 1, 256, 7, 1, 1),
        (7, 19, 4096, 300, 64, 2),
    ];
    for dtype in [DType::F16, DType::BF16] {
        for &(batch, seq, hidden, vocab, positions, types) in &shapes {
            problems.push(Problem::Embedding(EmbeddingProblem {
                tokens: batch * seq,
                hidden,
                seq,
                vocab,
                positions,
                types,
                dtype,
            }));
        }
    }
    run_all("gpu_embedding_matches_reference", "embedding", &problems);
}
