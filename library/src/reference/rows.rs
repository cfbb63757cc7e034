//! Row-wise references: layernorm (with the fused residual and bias) and softmax (with the
//! scale and the additive mask), one row at a time.

use crate::operands::OpInputs;
use tessera_dsl::{LayernormProblem, SoftmaxProblem};

/// Row `row` of `y = LN(x + residual + bias) · gamma + beta` (population variance, eps inside
/// the square root).
pub fn layernorm_row(p: &LayernormProblem, x: &OpInputs, row: u64) -> Vec<f64> {
    let cols = p.cols as usize;
    let at = row as usize * cols;
    let get = |name: &str, i: usize| x.tensor(name).map_or(0.0, |t| f64::from(t.values[i]));
    let h: Vec<f64> = (0..cols)
        .map(|j| get("x", at + j) + get("residual", at + j) + get("bias", j))
        .collect();
    let mean = h.iter().sum::<f64>() / cols as f64;
    let var = h.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / cols as f64;
    let rstd = 1.0 / (var + f64::from(x.f32_arg("eps"))).sqrt();
    (0..cols)
        .map(|j| (h[j] - mean) * rstd * get("gamma", j) + get("beta", j))
        .collect()
}

/// Row `row` of `y = softmax(scale · x + mask[row / period])`.
pub fn softmax_row(p: &SoftmaxProblem, x: &OpInputs, row: u64) -> Vec<f64> {
    let cols = p.cols as usize;
    let at = row as usize * cols;
    let scale = f64::from(x.f32_arg("scale"));
    let mask_at = p
        .mask_period
        .map(|period| (row / period.max(1)) as usize * cols);
    let s: Vec<f64> = (0..cols)
        .map(|j| {
            let v = scale * f64::from(x.values("x")[at + j]);
            match (mask_at, x.tensor("mask")) {
                (Some(m), Some(t)) => v + f64::from(t.values[m + j]),
                _ => v,
            }
        })
        .collect();
    let top = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = s.iter().map(|v| (v - top).exp()).collect();
    let total: f64 = e.iter().sum();
    e.iter().map(|v| v / total).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_dsl::Problem;

    #[test]
    fn layernorm_rows_are_normalised() {
        let mut p = LayernormProblem::new(3, 96);
        p.residual = true;
        p.bias = true;
        let mut x = OpInputs::random(&Problem::Layernorm(p.clone()), 4).unwrap();
        // identity affine transform: mean 0, variance 1 (up to eps)
        for name in ["gamma", "beta"] {
            let one = f32::from(u8::from(name == "gamma"));
            x.tensor_mut(name)
                .unwrap()
                .values
                .iter_mut()
                .for_each(|v| *v = one);
        }
        for r in 0..3 {
            let y = layernorm_row(&p, &x, r);
            let mean = y.iter().sum::<f64>() / 96.0;
            let var = y.iter().map(|v| v * v).sum::<f64>() / 96.0;
            assert!(mean.abs() < 1e-9, "{mean}");
            assert!((var - 1.0).abs() < 1e-3, "{var}");
        }
    }

    #[test]
    fn softmax_rows_sum_to_one_and_follow_the_mask() {
        let mut p = SoftmaxProblem::new(4, 50);
        p.mask_period = Some(2);
        let x = OpInputs::random(&Problem::Softmax(p.clone()), 9).unwrap();
        for r in 0..4 {
            let y = softmax_row(&p, &x, r);
            assert!((y.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            let mask = &x.values("mask")[(r as usize / 2) * 50..][..50];
            for (v, m) in y.iter().zip(mask) {
                if *m < -1000.0 {
                    assert!(*v < 1e-30, "a masked key got weight {v}");
                }
            }
        }
    }
}
