//! The GEMM reference: f64 accumulation, then the epilogue chain in order, unrounded.

use crate::host::{HostTensor, Rng};
use tessera_dsl::{EpilogueOp, GemmProblem, Layout};

/// The operands of one GEMM problem, packed: A is `batch×M×K`, B `batch×K×N` (or `batch×N×K`
/// when column-major), C / residual `batch×M×N`, bias `N`.
#[derive(Debug, Clone)]
pub struct GemmInputs {
    pub a: HostTensor,
    pub b: HostTensor,
    pub c: Option<HostTensor>,
    pub bias: Option<HostTensor>,
    pub residual: Option<HostTensor>,
    pub alpha: f32,
    pub beta: f32,
}

/// Leading dimensions and batch strides (elements) of the packed operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmStrides {
    pub lda: i64,
    pub ldb: i64,
    pub ldc: i64,
    pub ldd: i64,
    pub stride_a: i64,
    pub stride_b: i64,
    pub stride_c: i64,
    pub stride_d: i64,
}

impl GemmStrides {
    pub fn packed(p: &GemmProblem) -> Self {
        let (m, n, k) = (p.m as i64, p.n as i64, p.k as i64);
        GemmStrides {
            lda: k,
            ldb: match p.layout_b {
                Layout::Row => n,
                Layout::Col => k,
            },
            ldc: n,
            ldd: n,
            stride_a: m * k,
            stride_b: k * n,
            stride_c: m * n,
            stride_d: m * n,
        }
    }
}

impl GemmInputs {
    /// Fresh random operands (never zeros) for `p`, reproducible from `seed`.
    pub fn random(p: &GemmProblem, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let (m, n, k, b) = (p.m as usize, p.n as usize, p.k as usize, p.batch as usize);
        let a = HostTensor::random(p.input, b * m * k, &mut rng);
        let bm = HostTensor::random(p.input, b * k * n, &mut rng);
        let has = |e: EpilogueOp| p.epilogue.contains(&e);
        let c = has(EpilogueOp::BetaC).then(|| HostTensor::random(p.output, b * m * n, &mut rng));
        let bias = has(EpilogueOp::Bias).then(|| HostTensor::random(p.output, n, &mut rng));
        let residual =
            has(EpilogueOp::Residual).then(|| HostTensor::random(p.output, b * m * n, &mut rng));
        let alpha = 0.5 + (rng.unit() + 1.0) / 2.0;
        let beta = 0.5 + (rng.unit() + 1.0) / 2.0;
        GemmInputs {
            a,
            b: bm,
            c,
            bias,
            residual,
            alpha,
            beta,
        }
    }
}

/// One element `D[batch][row][col]` of the reference result.
pub fn gemm_element(p: &GemmProblem, x: &GemmInputs, batch: u64, row: u64, col: u64) -> f64 {
    let s = GemmStrides::packed(p);
    let a0 = (batch as i64 * s.stride_a + row as i64 * s.lda) as usize;
    let b0 = (batch as i64 * s.stride_b) as usize;
    let mut acc = 0.0f64;
    for kk in 0..p.k as usize {
        let bv = match p.layout_b {
            Layout::Row => x.b.values[b0 + kk * s.ldb as usize + col as usize],
            Layout::Col => x.b.values[b0 + col as usize * s.ldb as usize + kk],
        };
        acc += f64::from(x.a.values[a0 + kk]) * f64::from(bv);
    }
    let at = (batch as i64 * s.stride_d + row as i64 * s.ldd + col as i64) as usize;
    let pick =
        |t: &Option<HostTensor>, i: usize| t.as_ref().map_or(0.0, |t| f64::from(t.values[i]));
    let c = pick(&x.c, at);
    let bias = pick(&x.bias, col as usize);
    let residual = pick(&x.residual, at);
    let mut v = f64::from(x.alpha) * acc;
    for op in &p.epilogue {
        v = op.apply(v, f64::from(x.beta), c, bias, residual);
    }
    v
}

/// The whole reference result, `batch×M×N` row-major.
pub fn gemm(p: &GemmProblem, x: &GemmInputs) -> Vec<f64> {
    let mut out = Vec::with_capacity((p.batch * p.m * p.n) as usize);
    for b in 0..p.batch {
        for i in 0..p.m {
            for j in 0..p.n {
                out.push(gemm_element(p, x, b, i, j));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_dsl::DType;

    fn tensor(dtype: DType, values: &[f32]) -> HostTensor {
        HostTensor {
            dtype,
            values: values.to_vec(),
        }
    }

    #[test]
    fn small_gemm_by_hand() {
        // A = [[1,2],[3,4]], B = [[5,6],[7,8]] row-major; A·B = [[19,22],[43,50]]
        let mut p = GemmProblem::new(2, 2, 2);
        p.layout_b = Layout::Row;
        p.epilogue = vec![EpilogueOp::Bias, EpilogueOp::Relu];
        let x = GemmInputs {
            a: tensor(DType::F16, &[1., 2., 3., 4.]),
            b: tensor(DType::F16, &[5., 6., 7., 8.]),
            c: None,
            bias: Some(tensor(DType::F16, &[-30., 1.])),
            residual: None,
            alpha: 1.0,
            beta: 0.0,
        };
        assert_eq!(gemm(&p, &x), vec![0.0, 23.0, 13.0, 51.0]);
        // the same B stored column-major gives the same product
        p.layout_b = Layout::Col;
        let xc = GemmInputs {
            b: tensor(DType::F16, &[5., 7., 6., 8.]),
            ..x
        };
        assert_eq!(gemm(&p, &xc), vec![0.0, 23.0, 13.0, 51.0]);
    }

    #[test]
    fn batches_are_independent() {
        let mut p = GemmProblem::new(3, 5, 7);
        p.batch = 2;
        p.epilogue = vec![EpilogueOp::BetaC, EpilogueOp::Residual];
        let x = GemmInputs::random(&p, 1);
        let full = gemm(&p, &x);
        assert_eq!(full.len(), 30);
        for (idx, v) in full.iter().enumerate() {
            let (b, rem) = (idx / 15, idx % 15);
            assert_eq!(
                *v,
                gemm_element(&p, &x, b as u64, (rem / 5) as u64, (rem % 5) as u64)
            );
        }
    }
}
