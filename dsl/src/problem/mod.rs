//! Problems: one concrete operation a kernel must compute (shape, dtypes, layouts, epilogue).
//!
//! A problem is what the tuner tunes for and what the cache keys winners by; a config is valid
//! for a problem when the template's `validate` accepts the pair.

mod attention;
mod embedding;
mod gemm;
mod rows;

pub use attention::{
    head_dims_text, AttentionLayout, AttentionProblem, Mask, Packing, HEAD_DIMS, PACKED_LAYOUT,
};
pub use embedding::EmbeddingProblem;
pub use gemm::{GemmProblem, Store};
pub use rows::{LayernormProblem, SoftmaxProblem, LAYERNORM_EPS, MAX_ROW};

use crate::dtype::DType;
use crate::epilogue::EpilogueOp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The kind of operation a template implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    Gemm,
    Layernorm,
    Softmax,
    Attention,
    Embedding,
}

impl OpKind {
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Gemm => "gemm",
            OpKind::Layernorm => "layernorm",
            OpKind::Softmax => "softmax",
            OpKind::Attention => "attention",
            OpKind::Embedding => "embedding",
        }
    }

    /// This op's row of the op table (operands, scalars, extents), shared with the macro.
    pub fn spec(self) -> &'static tessera_ops::Op {
        // every OpKind has a row (tested below); the table is constant data, not input
        tessera_ops::find(self.name()).expect("every OpKind has a row in the op table")
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A problem that cannot be computed at all (before any template is asked).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProblemError {
    #[error("{op}: dimension `{dim}` must be positive (got {value})")]
    NonPositive {
        op: OpKind,
        dim: &'static str,
        value: i64,
    },
    #[error("{op}: dimension `{dim}` = {value} is too large (limit {limit})")]
    TooLarge {
        op: OpKind,
        dim: &'static str,
        value: u64,
        limit: u64,
    },
    #[error("{op}: input dtype must be f16 or bf16 (got {got})")]
    InputDType { op: OpKind, got: DType },
    #[error("{op}: epilogue op `{epi}` appears twice")]
    RepeatedEpilogue { op: OpKind, epi: EpilogueOp },
    #[error("{op}: head store {what}")]
    HeadStore { op: OpKind, what: String },
    #[error("{op}: {what}")]
    Mask { op: OpKind, what: String },
    #[error(
        "{op}: kv_heads {kv_heads} must divide heads {heads} (each K/V head serves \
         heads / kv_heads query heads)"
    )]
    KvHeads {
        op: OpKind,
        heads: u64,
        kv_heads: u64,
    },
    #[error("{op}: packed batch: {what}")]
    Packing { op: OpKind, what: String },
}

/// Every size must be positive and fit an i32 (the kernels' index type).
pub(crate) fn check_dims(op: OpKind, dims: &[(&'static str, u64)]) -> Result<(), ProblemError> {
    const LIMIT: u64 = i32::MAX as u64;
    for &(dim, value) in dims {
        if value == 0 {
            return Err(ProblemError::NonPositive { op, dim, value: 0 });
        }
        if value > LIMIT {
            return Err(ProblemError::TooLarge {
                op,
                dim,
                value,
                limit: LIMIT,
            });
        }
    }
    Ok(())
}

/// Any problem Tessera can tune.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Problem {
    Gemm(GemmProblem),
    Layernorm(LayernormProblem),
    Softmax(SoftmaxProblem),
    Attention(AttentionProblem),
    Embedding(EmbeddingProblem),
}

impl Problem {
    pub fn op(&self) -> OpKind {
        match self {
            Problem::Gemm(_) => OpKind::Gemm,
            Problem::Layernorm(_) => OpKind::Layernorm,
            Problem::Softmax(_) => OpKind::Softmax,
            Problem::Attention(_) => OpKind::Attention,
            Problem::Embedding(_) => OpKind::Embedding,
        }
    }

    pub fn check(&self) -> Result<(), ProblemError> {
        match self {
            Problem::Gemm(g) => g.check(),
            Problem::Layernorm(l) => l.check(),
            Problem::Softmax(s) => s.check(),
            Problem::Attention(a) => a.check(),
            Problem::Embedding(e) => e.check(),
        }
    }

    pub fn flops(&self) -> f64 {
        match self {
            Problem::Gemm(g) => g.flops(),
            Problem::Layernorm(l) => l.flops(),
            Problem::Softmax(s) => s.flops(),
            Problem::Attention(a) => a.flops(),
            Problem::Embedding(e) => e.flops(),
        }
    }

    pub fn bytes(&self) -> f64 {
        match self {
            Problem::Gemm(g) => g.bytes(),
            Problem::Layernorm(l) => l.bytes(),
            Problem::Softmax(s) => s.bytes(),
            Problem::Attention(a) => a.bytes(),
            Problem::Embedding(e) => e.bytes(),
        }
    }

    /// The dtype of the inputs.
    pub fn input(&self) -> DType {
        match self {
            Problem::Gemm(g) => g.input,
            Problem::Layernorm(l) => l.dtype,
            Problem::Softmax(s) => s.dtype,
            Problem::Attention(a) => a.dtype,
            Problem::Embedding(e) => e.dtype,
        }
    }

    /// Layernorm and softmax move bytes, they barely compute: their throughput is GB/s.
    pub fn memory_bound(&self) -> bool {
        matches!(
            self,
            Problem::Layernorm(_) | Problem::Softmax(_) | Problem::Embedding(_)
        )
    }

    /// Throughput at `ms` milliseconds: GB/s of compulsory traffic for a memory-bound op
    /// ([`Problem::memory_bound`]), TFLOP/s otherwise.
    pub fn throughput(&self, ms: f64) -> f64 {
        if self.memory_bound() {
            self.bytes() / (ms * 1e-3) / 1e9
        } else {
            self.flops() / (ms * 1e-3) / 1e12
        }
    }

    /// The GEMM, if this is one.
    pub fn as_gemm(&self) -> Option<&GemmProblem> {
        match self {
            Problem::Gemm(g) => Some(g),
            _ => None,
        }
    }

    /// A stable, human-readable key (used in logs, the cache and the CLI).
    pub fn key(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Gemm(g) => {
                write!(f, "gemm m={} n={} k={}", g.m, g.n, g.k)?;
                if g.batch != 1 {
                    write!(f, " batch={}", g.batch)?;
                }
                write!(f, " {}->{} {}", g.input, g.output, g.layout_code())?;
                if !g.epilogue.is_empty() {
                    let names: Vec<_> = g.epilogue.iter().map(|e| e.name()).collect();
                    write!(f, " epilogue={}", names.join(","))?;
                }
                if !g.store.is_rows() {
                    write!(f, " store={}", g.store.label())?;
                }
                Ok(())
            }
            Problem::Layernorm(l) => {
                write!(f, "layernorm rows={} cols={} {}", l.rows, l.cols, l.dtype)?;
                let fused: Vec<&str> = [(l.residual, "residual"), (l.bias, "bias")]
                    .iter()
                    .filter(|(on, _)| *on)
                    .map(|&(_, n)| n)
                    .collect();
                if !fused.is_empty() {
                    write!(f, " fused={}", fused.join(","))?;
                }
                Ok(())
            }
            Problem::Softmax(s) => {
                write!(f, "softmax rows={} cols={} {}", s.rows, s.cols, s.dtype)?;
                if let Some(p) = s.mask_period {
                    write!(f, " mask_period={p}")?;
                }
                Ok(())
            }
            Problem::Attention(a) => {
                write!(f, "attention batch={} heads={}", a.batch, a.heads)?;
                if a.kv_heads != a.heads {
                    write!(f, " kv_heads={}", a.kv_heads)?;
                }
                write!(
                    f,
                    " seq_q={} seq_kv={} head_dim={} {}",
                    a.seq_q, a.seq_kv, a.head_dim, a.dtype
                )?;
                if !a.mask.is_none() {
                    write!(f, " mask={}", a.mask)?;
                }
                if !a.layout.is_bhsd() {
                    write!(f, " layout={}", a.layout)?;
                }
                if let Some(p) = &a.packed {
                    write!(f, " {}", p.label())?;
                }
                Ok(())
            }
            Problem::Embedding(e) => write!(
                f,
                "embedding tokens={} hidden={} seq={} vocab={} positions={} types={} {}",
                e.tokens, e.hidden, e.seq, e.vocab, e.positions, e.types, e.dtype
            ),
        }
    }
}

/// The fused operands a row-wise problem asks for, as epilogue-op tokens (kernel names, variants).
pub fn fused_ops(problem: &Problem) -> Vec<EpilogueOp> {
    match problem {
        Problem::Gemm(g) => g.epilogue.clone(),
        Problem::Layernorm(l) => {
            let mut v = Vec::new();
            if l.residual {
                v.push(EpilogueOp::Residual);
            }
            if l.bias {
                v.push(EpilogueOp::Bias);
            }
            v
        }
        Problem::Softmax(_) | Problem::Attention(_) | Problem::Embedding(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_kind_has_a_table_row() {
        for op in [
            OpKind::Gemm,
            OpKind::Layernorm,
            OpKind::Softmax,
            OpKind::Attention,
            OpKind::Embedding,
        ] {
            assert_eq!(op.spec().name, op.name());
            assert_eq!(op.spec().kind, format!("{op:?}"));
        }
        assert_eq!(
            Problem::Embedding(EmbeddingProblem::new(256, 768, 128)).key(),
            "embedding tokens=256 hidden=768 seq=128 vocab=30522 positions=512 types=2 f16"
        );
    }

    #[test]
    fn new_ops_have_readable_keys_and_checks() {
        let mut l = LayernormProblem::new(12288, 768);
        l.residual = true;
        assert_eq!(
            Problem::Layernorm(l.clone()).key(),
            "layernorm rows=12288 cols=768 f16 fused=residual"
        );
        l.cols = 0;
        assert_eq!(
            l.check().unwrap_err().to_string(),
            "layernorm: dimension `cols` must be positive (got 0)"
        );
        let mut a = AttentionProblem::new(32, 12, 384, 64);
        a.mask = Mask::Causal;
        assert_eq!(
            Problem::Attention(a.clone()).key(),
            "attention batch=32 heads=12 seq_q=384 seq_kv=384 head_dim=64 f16 mask=causal"
        );
        a.layout = AttentionLayout::Bshd;
        assert_eq!(
            Problem::Attention(a.clone()).key(),
            "attention batch=32 heads=12 seq_q=384 seq_kv=384 head_dim=64 f16 mask=causal \
             layout=bshd"
        );
        let mut g = AttentionProblem::new(2, 32, 512, 128);
        g.kv_heads = 8;
        assert_eq!(
            Problem::Attention(g.clone()).key(),
            "attention batch=2 heads=32 kv_heads=8 seq_q=512 seq_kv=512 head_dim=128 f16"
        );
        let packed = g.with_packing(Packing::uniform_self(vec![1, 77, 512]));
        assert_eq!(
            Problem::Attention(packed).key(),
            "attention batch=3 heads=32 kv_heads=8 seq_q=512 seq_kv=512 head_dim=128 f16 \
             packed=1,77,512"
        );
        a.head_dim = 96;
        assert!(a
            .check()
            .unwrap_err()
            .to_string()
            .contains("use 32, 64 or 128"));
        let mut s = SoftmaxProblem::new(10, 384);
        s.mask_period = Some(3);
        assert!(s.check().unwrap_err().to_string().contains("divide rows"));
    }
}
