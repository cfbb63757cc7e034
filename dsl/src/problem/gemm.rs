//! The GEMM problem: shape, dtypes, B's layout, the epilogue chain and the output store.

use super::{check_dims, OpKind, ProblemError};
use crate::dtype::DType;
use crate::epilogue::EpilogueOp;
use crate::layout::{max_alignment, Layout};
use serde::{Deserialize, Serialize};

/// `D[b] = epilogue(alpha · A[b] · B[b])`, A is M×K row-major, B is K×N (row- or column-major),
/// C / residual / D are M×N row-major, `batch` independent products with packed strides.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GemmProblem {
    pub m: u64,
    pub n: u64,
    pub k: u64,
    #[serde(default = "one")]
    pub batch: u64,
    /// dtype of A and B.
    pub input: DType,
    /// dtype of D (and of C, bias and residual).
    pub output: DType,
    /// layout of B; A and D are row-major.
    pub layout_b: Layout,
    #[serde(default)]
    pub epilogue: Vec<EpilogueOp>,
    /// Where D's elements go (row-major, or permuted into attention heads).
    #[serde(default, skip_serializing_if = "Store::is_rows")]
    pub store: Store,
}

fn one() -> u64 {
    1
}

/// The memory order of a GEMM's output D.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Store {
    /// D is M×N row-major.
    #[default]
    Rows,
    /// Multi-head layout: with row = b·seq + s and col = part·heads·head_dim + h·head_dim + d,
    /// D[row, col] is stored at `[part][b][h][s][d]`. A QKV projection (N = 3·heads·head_dim)
    /// writes Q, K and V as `[batch, heads, seq, head_dim]` each, with no transpose kernel.
    Heads { heads: u64, head_dim: u64, seq: u64 },
}

impl Store {
    pub fn is_rows(&self) -> bool {
        *self == Store::Rows
    }

    /// The token in kernel names and problem keys (`heads12x64_seq384`); empty for rows.
    pub fn label(&self) -> String {
        match self {
            Store::Rows => String::new(),
            Store::Heads {
                heads,
                head_dim,
                seq,
            } => format!("heads{heads}x{head_dim}_seq{seq}"),
        }
    }
}

impl GemmProblem {
    /// A plain problem: f16 in and out, B column-major (`rcr`), no epilogue.
    pub fn new(m: u64, n: u64, k: u64) -> Self {
        GemmProblem {
            m,
            n,
            k,
            batch: 1,
            input: DType::F16,
            output: DType::F16,
            layout_b: Layout::Col,
            epilogue: Vec::new(),
            store: Store::Rows,
        }
    }

    /// Check the problem is computable at all.
    pub fn check(&self) -> Result<(), ProblemError> {
        check_dims(
            OpKind::Gemm,
            &[
                ("m", self.m),
                ("n", self.n),
                ("k", self.k),
                ("batch", self.batch),
            ],
        )?;
        if !self.input.is_mma_input() {
            return Err(ProblemError::InputDType {
                op: OpKind::Gemm,
                got: self.input,
            });
        }
        if let Store::Heads {
            heads,
            head_dim,
            seq,
        } = self.store
        {
            let bad = |what: String| {
                Err(ProblemError::HeadStore {
                    op: OpKind::Gemm,
                    what,
                })
            };
            if heads == 0 || head_dim == 0 || seq == 0 {
                return bad(format!(
                    "sizes must be positive (heads {heads}, head_dim {head_dim}, seq {seq})"
                ));
            }
            if !self.m.is_multiple_of(seq) {
                return bad(format!(
                    "needs m = {} to be a multiple of seq = {seq} (m = batch·seq)",
                    self.m
                ));
            }
            if !self.n.is_multiple_of(heads * head_dim) {
                return bad(format!(
                    "needs n = {} to be a multiple of heads·head_dim = {}",
                    self.n,
                    heads * head_dim
                ));
            }
            if head_dim % 2 != 0 {
                return bad(format!("needs an even head_dim (got {head_dim})"));
            }
        }
        for (i, e) in self.epilogue.iter().enumerate() {
            if self.epilogue[..i].contains(e) {
                return Err(ProblemError::RepeatedEpilogue {
                    op: OpKind::Gemm,
                    epi: *e,
                });
            }
        }
        Ok(())
    }

    /// The layout code `rcr` / `rrr` (A, B, D).
    pub fn layout_code(&self) -> String {
        format!("r{}r", self.layout_b.letter())
    }

    /// Widest vector (elements) every global access of this problem can use.
    pub fn alignment(&self) -> u32 {
        let b_contiguous = match self.layout_b {
            Layout::Row => self.n,
            Layout::Col => self.k,
        };
        max_alignment(&[self.k, b_contiguous, self.n])
    }

    /// Element index in the output buffer of logical element D[batch][row][col].
    pub fn output_index(&self, batch: u64, row: u64, col: u64) -> u64 {
        let base = batch * self.m * self.n;
        match self.store {
            Store::Rows => base + row * self.n + col,
            Store::Heads {
                heads,
                head_dim,
                seq,
            } => {
                let (b, s) = (row / seq, row % seq);
                let width = heads * head_dim;
                let (part, rem) = (col / width, col % width);
                let (h, d) = (rem / head_dim, rem % head_dim);
                base + part * self.m * width + ((b * heads + h) * seq + s) * head_dim + d
            }
        }
    }

    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64 * self.batch as f64
    }

    /// Compulsory DRAM traffic: read A, B (and C / bias / residual), write D once.
    pub fn bytes(&self) -> f64 {
        let (m, n, k, b) = (
            self.m as f64,
            self.n as f64,
            self.k as f64,
            self.batch as f64,
        );
        let inp = self.input.size_bytes() as f64;
        let out = self.output.size_bytes() as f64;
        let mut bytes = b * (m * k + k * n) * inp + b * m * n * out;
        for e in &self.epilogue {
            bytes += match e {
                EpilogueOp::BetaC | EpilogueOp::Residual => b * m * n * out,
                EpilogueOp::Bias => n * out,
                _ => 0.0,
            };
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::Problem;

    #[test]
    fn zero_sizes_name_the_op_and_dim() {
        let mut p = GemmProblem::new(0, 768, 768);
        let e = p.check().unwrap_err().to_string();
        assert_eq!(e, "gemm: dimension `m` must be positive (got 0)");
        p.m = 1;
        p.k = 0;
        assert!(p.check().unwrap_err().to_string().contains("`k`"));
    }

    #[test]
    fn key_is_stable_and_readable() {
        let mut g = GemmProblem::new(384, 768, 3072);
        g.epilogue = vec![EpilogueOp::Bias, EpilogueOp::Gelu];
        assert_eq!(
            Problem::Gemm(g).key(),
            "gemm m=384 n=768 k=3072 f16->f16 rcr epilogue=bias,gelu"
        );
    }

    #[test]
    fn head_store_permutes_into_qkv_heads() {
        let mut g = GemmProblem::new(2 * 3, 3 * 2 * 4, 8); // batch 2 × seq 3; Q,K,V × 2 heads × 4
        g.store = Store::Heads {
            heads: 2,
            head_dim: 4,
            seq: 3,
        };
        g.check().unwrap();
        // row 4 = batch 1, s 1; col 13 = part 1 (K), head 1, d 1
        // K block starts at 1·m·8 = 48; [b=1][h=1][s=1][d=1] = ((1·2+1)·3+1)·4+1 = 41
        assert_eq!(g.output_index(0, 4, 13), 48 + 41);
        let mut seen: Vec<u64> = (0..6)
            .flat_map(|i| (0..24).map(move |j| (i, j)))
            .map(|(i, j)| g.output_index(0, i, j))
            .collect();
        seen.sort_unstable();
        assert_eq!(
            seen,
            (0..144).collect::<Vec<_>>(),
            "a permutation of the buffer"
        );
        assert!(Problem::Gemm(g.clone())
            .key()
            .ends_with("store=heads2x4_seq3"));
        g.m = 7;
        assert!(g
            .check()
            .unwrap_err()
            .to_string()
            .contains("multiple of seq"));
    }

    #[test]
    fn alignment_follows_contiguous_dims() {
        let mut g = GemmProblem::new(1000, 1000, 1000);
        assert_eq!(g.alignment(), 8);
        g.k = 1001;
        assert_eq!(g.alignment(), 1);
        g.k = 1002;
        g.n = 1004;
        assert_eq!(g.alignment(), 2);
    }
}
