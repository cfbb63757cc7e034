//! The attention reference: one query row of `softmax(scale · Q·Kᵀ + mask) · V`.
//!
//! Grouped-query attention reads K/V head [`AttentionProblem::kv_head`] for query head `h`;
//! a packed batch finds each sequence's tokens through its [`Packing`](tessera_dsl::Packing)
//! (the same offsets the kernel receives as `cu_seqlens_q` / `cu_seqlens_kv`), and masks
//! count positions from the sequence's start.

use crate::operands::OpInputs;
use tessera_dsl::{AttentionProblem, Mask};

/// The keys query `s` of batch (sequence) `b` may attend to: `0..end`.
pub fn visible_keys(p: &AttentionProblem, x: &OpInputs, b: u64, s: u64) -> u64 {
    let (_, len_kv) = p.lens(b);
    match p.mask {
        Mask::Causal => (s + 1).min(len_kv),
        Mask::Padding => x.kv_lens().map_or(len_kv, |l| {
            l.get(b as usize)
                .and_then(|&v| u64::try_from(v).ok())
                .unwrap_or(0)
                .min(len_kv)
        }),
        Mask::None | Mask::Additive => len_kv,
    }
}

/// `O[b][h][s][..]` (head_dim values).
pub fn attention_row(p: &AttentionProblem, x: &OpInputs, b: u64, h: u64, s: u64) -> Vec<f64> {
    let d = p.head_dim as usize;
    let scale = f64::from(x.f32_arg("scale"));
    let (q, k, v) = (x.values("q"), x.values("k"), x.values("v"));
    let at = |t: &[f32], i: usize| t.get(i).map_or(f64::NAN, |&v| f64::from(v));
    let q0 = p.q_index(b, h, s, 0) as usize;
    let kvh = p.kv_head(h);
    let end = visible_keys(p, x, b, s);
    let scores: Vec<f64> = (0..end)
        .map(|j| {
            let k0 = p.kv_index(b, kvh, j, 0) as usize;
            let dot: f64 = (0..d).map(|t| at(q, q0 + t) * at(k, k0 + t)).sum();
            scale * dot
        })
        .collect();
    let top = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = scores.iter().map(|s| (s - top).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut out = vec![0.0f64; d];
    for (j, w) in weights.iter().enumerate() {
        let v0 = p.kv_index(b, kvh, j as u64, 0) as usize;
        for (t, o) in out.iter_mut().enumerate() {
            *o += w / total * at(v, v0 + t);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tessera_dsl::{Packing, Problem};

    #[test]
    fn one_visible_key_returns_its_value() {
        let mut p = AttentionProblem::new(2, 3, 5, 64);
        p.mask = Mask::Causal;
        let x = OpInputs::random(&Problem::Attention(p.clone()), 1).unwrap();
        // query 0 under a causal mask sees key 0 only: O = V[0]
        let o = attention_row(&p, &x, 1, 2, 0);
        let v0 = p.kv_index(1, 2, 0, 0) as usize;
        for (t, got) in o.iter().enumerate() {
            assert!((got - f64::from(x.values("v")[v0 + t])).abs() < 1e-12);
        }
        // the last query sees every key: outputs are convex combinations of V
        let o = attention_row(&p, &x, 0, 0, 4);
        assert!(o.iter().all(|v| v.abs() <= 1.0));
    }

    #[test]
    fn padding_limits_keys_per_batch() {
        let mut p = AttentionProblem::new(3, 1, 7, 64);
        p.mask = Mask::Padding;
        let x = OpInputs::random(&Problem::Attention(p.clone()), 2).unwrap();
        let lens = x.kv_lens().unwrap();
        for b in 0..3 {
            let end = visible_keys(&p, &x, b, 0);
            assert_eq!(end, lens[b as usize] as u64);
            assert!((1..=7).contains(&end));
        }
    }

    /// Inputs of `p` whose tensors are given (scalars as `OpInputs` sets them).
    fn with_tensors(p: &AttentionProblem, q: Vec<f32>, k: Vec<f32>, v: Vec<f32>) -> OpInputs {
        let mut x = OpInputs::layout(&Problem::Attention(p.clone())).unwrap();
        for (name, values) in [("q", q), ("k", k), ("v", v)] {
            x.tensor_mut(name).unwrap().values = values;
        }
        x
    }

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Grouped-query attention equals ordinary attention over K/V with every head
        /// repeated `heads / kv_heads` times.
        #[test]
        fn gqa_equals_repeated_kv_heads(
            batch in 1u64..3,
            kv_heads in 1u64..4,
            group in 1u64..4,
            seq_q in 1u64..9,
            seq_kv in 1u64..9,
            causal in any::<bool>(),
            seed in 0u64..1000,
        ) {
            let heads = kv_heads * group;
            let mut g = AttentionProblem::new(batch, heads, seq_q, 32);
            g.seq_kv = seq_kv;
            g.kv_heads = kv_heads;
            g.mask = if causal { Mask::Causal } else { Mask::None };
            g.check().unwrap();
            let x = OpInputs::random(&Problem::Attention(g.clone()), seed).unwrap();
            let mut full = g.clone();
            full.kv_heads = heads;
            let repeat = |t: &[f32]| {
                let mut out = vec![0f32; full.kv_len() as usize];
                for b in 0..batch {
                    for h in 0..heads {
                        for j in 0..seq_kv {
                            for d in 0..32 {
                                out[full.kv_index(b, h, j, d) as usize] =
                                    t[g.kv_index(b, g.kv_head(h), j, d) as usize];
                            }
                        }
                    }
                }
                out
            };
            let y = with_tensors(
                &full,
                x.values("q").to_vec(),
                repeat(x.values("k")),
                repeat(x.values("v")),
            );
            for b in 0..batch {
                for h in 0..heads {
                    for s in 0..seq_q {
                        prop_assert!(close(
                            &attention_row(&g, &x, b, h, s),
                            &attention_row(&full, &y, b, h, s)
                        ));
                    }
                }
            }
        }

        /// A packed batch equals running each sequence alone as a batch of one.
        #[test]
        fn packed_equals_each_sequence_alone(
            lens_q in proptest::collection::vec(1u64..12, 1..4),
            kv_extra in proptest::collection::vec(0u64..5, 4),
            cross in any::<bool>(),
            kv_heads in 1u64..3,
            causal in any::<bool>(),
            seed in 0u64..1000,
        ) {
            let lens_kv: Vec<u64> = if cross {
                lens_q.iter().zip(&kv_extra).map(|(&l, &e)| (l + e).saturating_sub(2).max(1)).collect()
            } else {
                lens_q.clone()
            };
            let heads = 2 * kv_heads;
            let mut p = AttentionProblem::new(1, heads, 1, 32).with_packing(Packing {
                lens_q: lens_q.clone(),
                lens_kv: lens_kv.clone(),
            });
            p.kv_heads = kv_heads;
            p.mask = if causal { Mask::Causal } else { Mask::None };
            p.check().unwrap();
            let x = OpInputs::random(&Problem::Attention(p.clone()), seed).unwrap();
            for (b, (&lq, &lk)) in lens_q.iter().zip(&lens_kv).enumerate() {
                let b = b as u64;
                let mut one = AttentionProblem::new(1, heads, lq, 32);
                one.seq_kv = lk;
                one.kv_heads = kv_heads;
                one.mask = p.mask;
                let copy = |t: &[f32], n: u64, len: u64, index: &dyn Fn(u64, u64, u64) -> (u64, u64)| {
                    let mut out = vec![0f32; (n * len * 32) as usize];
                    for h in 0..n {
                        for s in 0..len {
                            for d in 0..32 {
                                let (to, from) = index(h, s, d);
                                out[to as usize] = t[from as usize];
                            }
                        }
                    }
                    out
                };
                let q = copy(x.values("q"), heads, lq, &|h, s, d| {
                    (one.q_index(0, h, s, d), p.q_index(b, h, s, d))
                });
                let kv_at = |h, s, d| (one.kv_index(0, h, s, d), p.kv_index(b, h, s, d));
                let k = copy(x.values("k"), kv_heads, lk, &kv_at);
                let v = copy(x.values("v"), kv_heads, lk, &kv_at);
                let y = with_tensors(&one, q, k, v);
                for h in 0..heads {
                    for s in 0..lq {
                        prop_assert!(close(
                            &attention_row(&p, &x, b, h, s),
                            &attention_row(&one, &y, 0, h, s)
                        ));
                    }
                }
            }
        }
    }

    #[test]
    fn packed_causal_counts_from_each_sequence_start() {
        let mut p = AttentionProblem::new(1, 1, 1, 32).with_packing(Packing {
            lens_q: vec![4, 3],
            lens_kv: vec![2, 6],
        });
        p.mask = Mask::Causal;
        let x = OpInputs::random(&Problem::Attention(p.clone()), 3).unwrap();
        // top-left aligned within each sequence, capped at its key length
        let ends: Vec<u64> = (0..4).map(|s| visible_keys(&p, &x, 0, s)).collect();
        assert_eq!(ends, [1, 2, 2, 2]);
        let ends: Vec<u64> = (0..3).map(|s| visible_keys(&p, &x, 1, s)).collect();
        assert_eq!(ends, [1, 2, 3]);
        // query 0 of sequence 1 sees key 0 of sequence 1 (token 2 of K): O = V[token 2]
        let o = attention_row(&p, &x, 1, 0, 0);
        let v0 = p.kv_index(1, 0, 0, 0) as usize;
        assert_eq!(v0, 2 * 32);
        for (t, got) in o.iter().enumerate() {
            assert!((got - f64::from(x.values("v")[v0 + t])).abs() < 1e-12);
        }
    }
}
