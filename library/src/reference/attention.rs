//! The attention reference: one query row of `softmax(scale · Q·Kᵀ + mask) · V`.

use crate::operands::OpInputs;
use tessera_dsl::{AttentionProblem, Mask};

/// The keys query `s` of batch `b` may attend to: `0..end`.
pub fn visible_keys(p: &AttentionProblem, x: &OpInputs, b: u64, s: u64) -> u64 {
    match p.mask {
        Mask::Causal => (s + 1).min(p.seq_kv),
        Mask::Padding => x.kv_lens().map_or(p.seq_kv, |l| {
            u64::try_from(l[b as usize]).unwrap_or(0).min(p.seq_kv)
        }),
        Mask::None | Mask::Additive => p.seq_kv,
    }
}

/// `O[b][h][s][..]` (head_dim values).
pub fn attention_row(p: &AttentionProblem, x: &OpInputs, b: u64, h: u64, s: u64) -> Vec<f64> {
    let d = p.head_dim as usize;
    let scale = f64::from(x.f32_arg("scale"));
    let (q, k, v) = (x.values("q"), x.values("k"), x.values("v"));
    let q0 = p.index(p.seq_q, b, h, s, 0) as usize;
    let end = visible_keys(p, x, b, s);
    let scores: Vec<f64> = (0..end)
        .map(|j| {
            let k0 = p.index(p.seq_kv, b, h, j, 0) as usize;
            let dot: f64 = (0..d)
                .map(|t| f64::from(q[q0 + t]) * f64::from(k[k0 + t]))
                .sum();
            scale * dot
        })
        .collect();
    let top = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = scores.iter().map(|s| (s - top).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut out = vec![0.0f64; d];
    for (j, w) in weights.iter().enumerate() {
        let v0 = p.index(p.seq_kv, b, h, j as u64, 0) as usize;
        for (t, o) in out.iter_mut().enumerate() {
            *o += w / total * f64::from(v[v0 + t]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_dsl::Problem;

    #[test]
    fn one_visible_key_returns_its_value() {
        let mut p = AttentionProblem::new(2, 3, 5, 64);
        p.mask = Mask::Causal;
        let x = OpInputs::random(&Problem::Attention(p.clone()), 1).unwrap();
        // query 0 under a causal mask sees key 0 only: O = V[0]
        let o = attention_row(&p, &x, 1, 2, 0);
        let v0 = p.index(p.seq_kv, 1, 2, 0, 0) as usize;
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
}
