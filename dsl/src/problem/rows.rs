//! Row-wise problems: layernorm (with an optional fused residual and bias) and softmax (with a
//! scale and an optional additive mask). Both read a `rows × cols` row-major matrix and write
//! one of the same shape and dtype; statistics are computed in f32.

use super::{check_dims, ProblemError};
use crate::dtype::DType;
use crate::layout::max_alignment;
use crate::problem::OpKind;
use serde::{Deserialize, Serialize};

/// Largest row a row-wise kernel keeps in registers.
pub const MAX_ROW: u64 = 16384;

/// `y = (h - mean(h)) / sqrt(var(h) + eps) · gamma + beta` per row, where
/// `h = x (+ residual) (+ bias)`. gamma, beta and bias are `cols`-vectors; eps is 1e-5.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LayernormProblem {
    pub rows: u64,
    pub cols: u64,
    pub dtype: DType,
    #[serde(default)]
    pub residual: bool,
    #[serde(default)]
    pub bias: bool,
}

/// The epsilon every layernorm uses (BERT's).
pub const LAYERNORM_EPS: f32 = 1e-5;

impl LayernormProblem {
    pub fn new(rows: u64, cols: u64) -> Self {
        LayernormProblem {
            rows,
            cols,
            dtype: DType::F16,
            residual: false,
            bias: false,
        }
    }

    pub fn check(&self) -> Result<(), ProblemError> {
        check_rows(OpKind::Layernorm, self.rows, self.cols, self.dtype)
    }

    pub fn alignment(&self) -> u32 {
        max_alignment(&[self.cols])
    }

    /// Compulsory traffic: x (and residual) read, y written, vectors read once.
    pub fn bytes(&self) -> f64 {
        let e = self.dtype.size_bytes() as f64;
        let mat = (self.rows * self.cols) as f64 * e;
        let vecs = (2 + u64::from(self.bias)) as f64 * self.cols as f64 * e;
        mat * (2.0 + f64::from(u8::from(self.residual))) + vecs
    }

    /// About eight flops per element (adds, the two reductions, the affine transform).
    pub fn flops(&self) -> f64 {
        8.0 * (self.rows * self.cols) as f64
    }
}

/// `y = softmax(scale · x + mask)` per row. The additive mask is `[rows / period, cols]` of
/// the same dtype: row `r` uses mask row `r / period` (for attention scores laid out
/// `[batch, heads, seq_q, seq_k]` with a `[batch, seq_k]` key mask, `period = heads·seq_q`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SoftmaxProblem {
    pub rows: u64,
    pub cols: u64,
    pub dtype: DType,
    /// Rows that share one mask row; `None` for no mask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_period: Option<u64>,
}

impl SoftmaxProblem {
    pub fn new(rows: u64, cols: u64) -> Self {
        SoftmaxProblem {
            rows,
            cols,
            dtype: DType::F16,
            mask_period: None,
        }
    }

    pub fn check(&self) -> Result<(), ProblemError> {
        check_rows(OpKind::Softmax, self.rows, self.cols, self.dtype)?;
        if let Some(p) = self.mask_period {
            if p == 0 || !self.rows.is_multiple_of(p) {
                return Err(ProblemError::Mask {
                    op: OpKind::Softmax,
                    what: format!(
                        "mask period {p} must be positive and divide rows = {}",
                        self.rows
                    ),
                });
            }
        }
        Ok(())
    }

    pub fn alignment(&self) -> u32 {
        max_alignment(&[self.cols])
    }

    pub fn bytes(&self) -> f64 {
        let e = self.dtype.size_bytes() as f64;
        let mut b = 2.0 * (self.rows * self.cols) as f64 * e;
        if let Some(p) = self.mask_period {
            b += (self.rows / p.max(1) * self.cols) as f64 * e;
        }
        b
    }

    pub fn flops(&self) -> f64 {
        5.0 * (self.rows * self.cols) as f64
    }
}

fn check_rows(op: OpKind, rows: u64, cols: u64, dtype: DType) -> Result<(), ProblemError> {
    check_dims(op, &[("rows", rows), ("cols", cols)])?;
    if cols > MAX_ROW {
        return Err(ProblemError::TooLarge {
            op,
            dim: "cols",
            value: cols,
            limit: MAX_ROW,
        });
    }
    if !dtype.is_mma_input() {
        return Err(ProblemError::InputDType { op, got: dtype });
    }
    Ok(())
}
