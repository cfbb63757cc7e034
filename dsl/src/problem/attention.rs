//! Fused multi-head attention: `O = softmax(scale · Q·Kᵀ + mask) · V` per (batch, head), with
//! Q laid out `[batch, heads, seq_q, head_dim]` and K, V `[batch, heads, seq_kv, head_dim]`
//! (the layout a QKV GEMM with a head store writes); O is `[batch, heads, seq_q, head_dim]` or,
//! token-major, `[batch, seq_q, heads, head_dim]` ([`AttentionLayout`]).
//!
//! Part of the vocabulary: no GPU, no I/O, nothing from codegen or the library.

use super::{check_dims, ProblemError};
use crate::dtype::DType;
use crate::problem::OpKind;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Which keys a query may attend to (beyond `key < seq_kv`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Mask {
    #[default]
    None,
    /// Query `i` attends keys `j <= i` (top-left aligned, as `is_causal` in PyTorch).
    Causal,
    /// Key padding: batch `b` attends keys `j < kv_lens[b]` (an i32 vector of `batch` lengths,
    /// each in `1..=seq_kv`).
    Padding,
    /// An additive `[rows / period, cols]` mask (softmax).
    Additive,
}

impl Mask {
    pub fn name(self) -> &'static str {
        match self {
            Mask::None => "none",
            Mask::Causal => "causal",
            Mask::Padding => "padding",
            Mask::Additive => "mask",
        }
    }

    pub fn is_none(&self) -> bool {
        *self == Mask::None
    }
}

impl fmt::Display for Mask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where attention writes O. Q, K and V are always `[batch, heads, seq, head_dim]`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum AttentionLayout {
    /// `[batch, heads, seq_q, head_dim]`: the layout of Q.
    #[default]
    Bhsd,
    /// `[batch, seq_q, heads, head_dim]`, token-major: what an output projection GEMM reads
    /// as `[batch·seq_q, heads·head_dim]`.
    Bshd,
}

impl AttentionLayout {
    pub const ALL: [AttentionLayout; 2] = [AttentionLayout::Bhsd, AttentionLayout::Bshd];

    /// The code in kernel names, problem keys and shapes files (`bhsd`, `bshd`).
    pub fn code(self) -> &'static str {
        match self {
            AttentionLayout::Bhsd => "bhsd",
            AttentionLayout::Bshd => "bshd",
        }
    }

    /// The layout whose [`code`](Self::code) is `code`.
    pub fn from_code(code: &str) -> Option<AttentionLayout> {
        Self::ALL.into_iter().find(|l| l.code() == code)
    }

    pub fn is_bhsd(&self) -> bool {
        *self == AttentionLayout::Bhsd
    }
}

impl fmt::Display for AttentionLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Head sizes the attention kernels are specialised for.
pub const HEAD_DIMS: [u64; 3] = [32, 64, 128];

/// [`HEAD_DIMS`] as a sentence fragment (`32, 64 or 128`), for errors.
pub fn head_dims_text() -> String {
    let names: Vec<String> = HEAD_DIMS.iter().map(u64::to_string).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => names.join(""),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AttentionProblem {
    pub batch: u64,
    pub heads: u64,
    pub seq_q: u64,
    pub seq_kv: u64,
    pub head_dim: u64,
    pub dtype: DType,
    #[serde(default, skip_serializing_if = "Mask::is_none")]
    pub mask: Mask,
    /// O's layout; absent (and so unchanged in keys and caches) for `bhsd`.
    #[serde(default, skip_serializing_if = "AttentionLayout::is_bhsd")]
    pub layout: AttentionLayout,
}

impl AttentionProblem {
    /// Self-attention: seq_q = seq_kv = seq, f16, no mask.
    pub fn new(batch: u64, heads: u64, seq: u64, head_dim: u64) -> Self {
        AttentionProblem {
            batch,
            heads,
            seq_q: seq,
            seq_kv: seq,
            head_dim,
            dtype: DType::F16,
            mask: Mask::None,
            layout: AttentionLayout::Bhsd,
        }
    }

    pub fn check(&self) -> Result<(), ProblemError> {
        let op = OpKind::Attention;
        check_dims(
            op,
            &[
                ("batch", self.batch),
                ("heads", self.heads),
                ("seq_q", self.seq_q),
                ("seq_kv", self.seq_kv),
                ("head_dim", self.head_dim),
            ],
        )?;
        if !HEAD_DIMS.contains(&self.head_dim) {
            return Err(ProblemError::Mask {
                op,
                what: format!(
                    "head_dim {} is not supported; use {}",
                    self.head_dim,
                    head_dims_text()
                ),
            });
        }
        if !self.dtype.is_mma_input() {
            return Err(ProblemError::InputDType {
                op,
                got: self.dtype,
            });
        }
        if self.mask == Mask::Additive {
            return Err(ProblemError::Mask {
                op,
                what: "takes a causal or padding mask, not an additive one".into(),
            });
        }
        Ok(())
    }

    /// Two GEMMs of `seq_q × seq_kv × head_dim` per head (halved when causal).
    pub fn flops(&self) -> f64 {
        let f = 4.0
            * (self.batch * self.heads) as f64
            * self.seq_q as f64
            * self.seq_kv as f64
            * self.head_dim as f64;
        if self.mask == Mask::Causal {
            f / 2.0
        } else {
            f
        }
    }

    /// Q, K, V read once and O written once.
    pub fn bytes(&self) -> f64 {
        let bh = (self.batch * self.heads) as f64;
        let e = self.dtype.size_bytes() as f64;
        bh * self.head_dim as f64 * e * (2.0 * self.seq_q as f64 + 2.0 * self.seq_kv as f64)
    }

    /// Element index of `[b][h][s][d]` in a `[batch, heads, seq, head_dim]` tensor.
    pub fn index(&self, seq: u64, b: u64, h: u64, s: u64, d: u64) -> u64 {
        ((b * self.heads + h) * seq + s) * self.head_dim + d
    }

    /// Element index of `O[b][h][s][d]` in the output, as [`layout`](Self::layout) places it.
    pub fn output_index(&self, b: u64, h: u64, s: u64, d: u64) -> u64 {
        match self.layout {
            AttentionLayout::Bhsd => self.index(self.seq_q, b, h, s, d),
            AttentionLayout::Bshd => ((b * self.seq_q + s) * self.heads + h) * self.head_dim + d,
        }
    }
}
