//! Problem sets that more than one check shares: the GPU correctness tests (`tuner/tests`), the
//! NVRTC compile tests (`tests/`) and the benchmarks draw the same fixtures from here, so a case
//! added to one is checked by all. Pure data: no device, no I/O.

use tessera_dsl::{AttentionProblem, DType, Mask, Packing, Problem};

/// `n` deterministic lengths in `1..=max` (xorshift from `seed`, which must not be 0).
pub fn random_lens(n: usize, max: u64, seed: u64) -> Vec<u64> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            1 + state % max.max(1)
        })
        .collect()
}

/// The packed (padding-free) attention problems of the GPU check
/// (`gpu_attention_packed_matches_reference`) and of the NVRTC compile test of the sm_90a
/// attention configs: lengths 1, 77, 100, 197 and the maximum in one batch, a seeded random
/// batch up to 384, cross lengths (seq_q ≠ seq_kv per sequence), causal and not, with and
/// without grouped K/V heads, head_dim 32/64/128, f16 and bf16.
pub fn packed_attention() -> Vec<Problem> {
    let ragged = vec![1, 77, 100, 197, 384];
    let random = random_lens(16, 384, 0x5EED);
    let short = vec![197, 1, 100, 77];
    // (lens_q, lens_kv, heads, kv_heads, head_dim, mask)
    type PackedCase = (Vec<u64>, Vec<u64>, u64, u64, u64, Mask);
    let cases: Vec<PackedCase> = vec![
        (ragged.clone(), ragged.clone(), 4, 4, 64, Mask::None),
        (ragged.clone(), ragged, 4, 2, 128, Mask::Causal),
        (short.clone(), short.clone(), 8, 1, 32, Mask::Causal),
        (short.clone(), short, 8, 4, 32, Mask::None),
        (
            vec![1, 77, 100, 197],
            vec![100, 1, 197, 384],
            4,
            2,
            64,
            Mask::Causal,
        ),
        (vec![384, 5], vec![7, 384], 2, 2, 128, Mask::None),
        (vec![1], vec![1], 2, 1, 64, Mask::Causal),
        (random.clone(), random, 12, 12, 64, Mask::None),
    ];
    let mut problems = Vec::new();
    for dtype in [DType::F16, DType::BF16] {
        for (lens_q, lens_kv, heads, kv_heads, head_dim, mask) in &cases {
            let mut a = AttentionProblem::new(1, *heads, 1, *head_dim).with_packing(Packing {
                lens_q: lens_q.clone(),
                lens_kv: lens_kv.clone(),
            });
            a.kv_heads = *kv_heads;
            a.dtype = dtype;
            a.mask = *mask;
            problems.push(Problem::Attention(a));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_fixtures_are_valid_problems_and_lengths_are_deterministic() {
        assert_eq!(random_lens(4, 384, 7), random_lens(4, 384, 7));
        assert!(random_lens(1000, 5, 3).iter().all(|l| (1..=5).contains(l)));
        let all = packed_attention();
        assert_eq!(all.len(), 16);
        for p in &all {
            let Problem::Attention(a) = p else {
                panic!("{p}")
            };
            assert!(a.packed.is_some(), "{p}");
            a.check().unwrap();
        }
    }
}
