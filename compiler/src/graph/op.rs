//! The operations of the graph IR, with the operand order each one reads.

use crate::import::Activation;
use serde::{Deserialize, Serialize};
use tessera_dsl::EpilogueOp;

/// Where a linear layer's output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinearStore {
    /// `[batch, seq, n]` token-major rows.
    Rows,
    /// Split into `n / (heads·head_dim)` parts of `[batch, heads, seq, head_dim]`
    /// (`tessera_dsl::Store::Heads` once the bucket's seq is known).
    Heads { heads: u64, head_dim: u64 },
}

/// How attention receives Q, K and V.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttentionQkv {
    /// Three values `q, k, v`, each `[batch, heads, seq, head_dim]`.
    Separate,
    /// One `[3, batch, heads, seq, head_dim]` value (Q, K, V are views into it).
    Packed,
}

/// Where attention writes its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttentionStore {
    /// `[batch, heads, seq, head_dim]`.
    Heads,
    /// `[batch, seq, heads·head_dim]`, what the output projection reads (no transpose).
    Tokens,
}

/// An operation. Operands, in order, are listed per variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Word + position + token-type embedding gather, then layernorm.
    /// Reads `input_ids, token_type_ids, position_ids, word, position, token_type, gamma, beta`.
    Embedding { eps: f64 },
    /// `x · Wᵀ` then the epilogue chain. Reads `x, weight [n, k]`, then one operand per
    /// epilogue op that takes one, in chain order (`bias` a vector, `residual` like the output).
    Linear {
        epilogue: Vec<EpilogueOp>,
        store: LinearStore,
    },
    /// `x + bias[col]`. Reads `x, bias`.
    BiasAdd,
    /// Reads `x`.
    Activation(Activation),
    /// Elementwise sum. Reads `a, b`.
    Add,
    /// Inference-time identity (kept by import so the graph mirrors the model).
    Dropout { p: f64 },
    /// Layernorm over the last dim of `x (+ residual)`. Reads `x, [residual,] gamma, beta`.
    LayerNorm { eps: f64, residual: bool },
    /// `[batch, seq, parts·heads·head_dim]` → (`parts` ×) `[batch, heads, seq, head_dim]`:
    /// a reshape and a permute. Reads `x`.
    SplitHeads {
        heads: u64,
        head_dim: u64,
        parts: u64,
    },
    /// Fused `softmax(scale·QKᵀ + key padding)·V`. Reads `q, k, v, seq_lens` (separate) or
    /// `qkv, seq_lens` (packed).
    Attention {
        heads: u64,
        head_dim: u64,
        scale: f64,
        qkv: AttentionQkv,
        store: AttentionStore,
    },
    /// `[batch, heads, seq, head_dim]` → `[batch, seq, heads·head_dim]`. Reads `x`.
    MergeHeads { heads: u64, head_dim: u64 },
    /// `tanh(h[:, 0] · Wᵀ + bias)`. Reads `h, weight, bias`.
    Pooler,
}

impl Op {
    /// A short name for dumps, counts and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Embedding { .. } => "embedding",
            Op::Linear { .. } => "linear",
            Op::BiasAdd => "bias_add",
            Op::Activation(_) => "activation",
            Op::Add => "add",
            Op::Dropout { .. } => "dropout",
            Op::LayerNorm { .. } => "layernorm",
            Op::SplitHeads { .. } => "split_heads",
            Op::Attention { .. } => "attention",
            Op::MergeHeads { .. } => "merge_heads",
            Op::Pooler => "pooler",
        }
    }

    /// How many operands the op reads (the variant docs list them).
    pub fn arity(&self) -> usize {
        match self {
            Op::Embedding { .. } => 8,
            Op::Linear { epilogue, .. } => {
                let operands = [EpilogueOp::Bias, EpilogueOp::Residual, EpilogueOp::BetaC];
                2 + epilogue.iter().filter(|e| operands.contains(e)).count()
            }
            Op::BiasAdd | Op::Add => 2,
            Op::Activation(_)
            | Op::Dropout { .. }
            | Op::SplitHeads { .. }
            | Op::MergeHeads { .. } => 1,
            Op::LayerNorm { residual, .. } => 3 + usize::from(*residual),
            Op::Attention { qkv, .. } => match qkv {
                AttentionQkv::Separate => 4,
                AttentionQkv::Packed => 2,
            },
            Op::Pooler => 3,
        }
    }

    /// The attributes, as the dump shows them.
    pub fn attributes(&self) -> String {
        match self {
            Op::Embedding { eps } => format!("eps={eps:e}"),
            Op::Linear { epilogue, store } => {
                let mut s: Vec<String> = epilogue.iter().map(|e| e.name().to_string()).collect();
                if let LinearStore::Heads { heads, head_dim } = store {
                    s.push(format!("store=heads{heads}x{head_dim}"));
                }
                s.join(",")
            }
            Op::Activation(a) => format!("{a:?}").to_lowercase(),
            Op::Dropout { p } => format!("p={p}"),
            Op::LayerNorm { eps, residual } => {
                format!("eps={eps:e}{}", if *residual { ",residual" } else { "" })
            }
            Op::SplitHeads {
                heads,
                head_dim,
                parts,
            } => format!("{parts}x{heads}x{head_dim}"),
            Op::Attention {
                heads,
                head_dim,
                scale,
                qkv,
                store,
            } => format!("{heads}x{head_dim},scale={scale:.6},qkv={qkv:?},store={store:?}")
                .to_lowercase(),
            Op::MergeHeads { heads, head_dim } => format!("{heads}x{head_dim}"),
            Op::BiasAdd | Op::Add | Op::Pooler => String::new(),
        }
    }
}
