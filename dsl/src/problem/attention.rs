//! Fused multi-head attention: `O = softmax(scale · Q·Kᵀ + mask) · V` per (batch, head), with
//! Q laid out `[batch, heads, seq_q, head_dim]` and K, V `[batch, kv_heads, seq_kv, head_dim]`
//! (the layout a QKV GEMM with a head store writes); O is `[batch, heads, seq_q, head_dim]` or,
//! token-major, `[batch, seq_q, heads, head_dim]` ([`AttentionLayout`]).
//!
//! Grouped-query attention (GQA; multi-query with one K/V head): `kv_heads` divides `heads`
//! and query head `h` reads K/V head `h / (heads / kv_heads)` ([`AttentionProblem::kv_head`]).
//!
//! Packed (padding-free, "varlen") batches ([`Packing`]): sequences of different lengths
//! stored back to back, token-major: Q and O `[tokens_q, heads, head_dim]`, K and V
//! `[tokens_kv, kv_heads, head_dim]`, sequence `b` owning tokens `cu_seqlens[b] ..
//! cu_seqlens[b + 1]` (the `cu_seqlens_q` / `cu_seqlens_kv` operands, `batch + 1` i32 offsets);
//! `seq_q` and `seq_kv` are then the longest lengths (the launch bound). Masks apply per
//! sequence with positions counted from the sequence's start, so the causal convention is
//! the same as without packing.
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
    /// Query `i` attends keys `j <= i` (top-left aligned, as `is_causal` in PyTorch; when
    /// seq_q ≠ seq_kv, query `i` still sees keys `0..=i`, not FlashAttention's bottom-right
    /// alignment). Packed batches apply it per sequence, positions counted from its start.
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

/// The variant layout code of packed attention (FlashAttention's `thd`: tokens, heads,
/// head_dim): Q, K, V and O token-major, sequences found through `cu_seqlens`.
pub const PACKED_LAYOUT: &str = "thd";

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

/// The lengths of a packed (padding-free) batch: one query and one key length per sequence,
/// each at least 1. Self-attention has `lens_kv == lens_q` (serialized without `lens_kv`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "PackingRepr", into = "PackingRepr")]
pub struct Packing {
    pub lens_q: Vec<u64>,
    pub lens_kv: Vec<u64>,
}

/// [`Packing`] as serialized: `lens_kv` only where it differs from `lens_q`.
#[derive(Serialize, Deserialize)]
struct PackingRepr {
    lens_q: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lens_kv: Option<Vec<u64>>,
}

impl From<PackingRepr> for Packing {
    fn from(r: PackingRepr) -> Packing {
        let lens_kv = r.lens_kv.unwrap_or_else(|| r.lens_q.clone());
        Packing {
            lens_q: r.lens_q,
            lens_kv,
        }
    }
}

impl From<Packing> for PackingRepr {
    fn from(p: Packing) -> PackingRepr {
        let lens_kv = (p.lens_kv != p.lens_q).then_some(p.lens_kv);
        PackingRepr {
            lens_q: p.lens_q,
            lens_kv,
        }
    }
}

/// Problem keys list a packed batch's lengths up to this many characters, else a digest.
const PACKING_LABEL_MAX: usize = 200;

impl Packing {
    /// Self-attention over sequences of these lengths.
    pub fn uniform_self(lens: Vec<u64>) -> Packing {
        Packing {
            lens_kv: lens.clone(),
            lens_q: lens,
        }
    }

    pub fn is_self(&self) -> bool {
        self.lens_q == self.lens_kv
    }

    /// `lens.len() + 1` offsets: where each sequence starts, then the total.
    pub fn offsets(lens: &[u64]) -> Vec<u64> {
        let mut out = Vec::with_capacity(lens.len() + 1);
        let mut at = 0u64;
        out.push(0);
        for &l in lens {
            at = at.saturating_add(l);
            out.push(at);
        }
        out
    }

    /// First query token of sequence `b`.
    pub fn start_q(&self, b: u64) -> u64 {
        self.lens_q.iter().take(b as usize).sum()
    }

    /// First key token of sequence `b`.
    pub fn start_kv(&self, b: u64) -> u64 {
        self.lens_kv.iter().take(b as usize).sum()
    }

    pub fn tokens_q(&self) -> u64 {
        self.lens_q.iter().sum()
    }

    pub fn tokens_kv(&self) -> u64 {
        self.lens_kv.iter().sum()
    }

    /// The lengths as a problem key fragment: `packed=1,77,100` (self-attention),
    /// `packed_q=.. packed_kv=..` (cross), or, for long lists, a digest
    /// `packed=n32,t6144,fnv1a64-0123456789abcdef` (sequences, tokens, FNV-1a of the lengths).
    pub fn label(&self) -> String {
        let list = |l: &[u64]| l.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        let text = if self.is_self() {
            format!("packed={}", list(&self.lens_q))
        } else {
            format!(
                "packed_q={} packed_kv={}",
                list(&self.lens_q),
                list(&self.lens_kv)
            )
        };
        if text.len() <= PACKING_LABEL_MAX {
            return text;
        }
        // FNV-1a over the lengths (query, a separator, keys): stable across builds
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let lens = self.lens_q.iter().chain([&u64::MAX]).chain(&self.lens_kv);
        for byte in lens.flat_map(|l| l.to_le_bytes()) {
            h ^= u64::from(byte);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!(
            "packed=n{},t{},fnv1a64-{h:016x}",
            self.lens_q.len(),
            self.tokens_q()
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "AttentionRepr", into = "AttentionRepr")]
pub struct AttentionProblem {
    /// Sequences (the number of [`Packing`] lengths when packed).
    pub batch: u64,
    /// Query (and output) heads.
    pub heads: u64,
    /// K/V heads: a divisor of `heads` (grouped-query attention), `heads` without grouping.
    pub kv_heads: u64,
    /// Query rows per sequence (the longest when packed).
    pub seq_q: u64,
    /// Keys per sequence (the longest when packed).
    pub seq_kv: u64,
    pub head_dim: u64,
    pub dtype: DType,
    pub mask: Mask,
    /// O's layout; absent (and so unchanged in keys and caches) for `bhsd`. Packed problems
    /// are token-major throughout and keep the default.
    pub layout: AttentionLayout,
    /// A packed batch's lengths; `None` for a padded `[batch, heads, seq, head_dim]` batch.
    pub packed: Option<Packing>,
}

/// [`AttentionProblem`] as serialized: `kv_heads` only when it differs from `heads`, `mask`,
/// `layout` and `packed` only when not the default, so problems without these options keep
/// their JSON (and cache keys).
#[derive(Serialize, Deserialize)]
struct AttentionRepr {
    batch: u64,
    heads: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kv_heads: Option<u64>,
    seq_q: u64,
    seq_kv: u64,
    head_dim: u64,
    dtype: DType,
    #[serde(default, skip_serializing_if = "Mask::is_none")]
    mask: Mask,
    #[serde(default, skip_serializing_if = "AttentionLayout::is_bhsd")]
    layout: AttentionLayout,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    packed: Option<Packing>,
}

impl From<AttentionRepr> for AttentionProblem {
    fn from(r: AttentionRepr) -> AttentionProblem {
        AttentionProblem {
            batch: r.batch,
            heads: r.heads,
            kv_heads: r.kv_heads.unwrap_or(r.heads),
            seq_q: r.seq_q,
            seq_kv: r.seq_kv,
            head_dim: r.head_dim,
            dtype: r.dtype,
            mask: r.mask,
            layout: r.layout,
            packed: r.packed,
        }
    }
}

impl From<AttentionProblem> for AttentionRepr {
    fn from(p: AttentionProblem) -> AttentionRepr {
        AttentionRepr {
            batch: p.batch,
            heads: p.heads,
            kv_heads: (p.kv_heads != p.heads).then_some(p.kv_heads),
            seq_q: p.seq_q,
            seq_kv: p.seq_kv,
            head_dim: p.head_dim,
            dtype: p.dtype,
            mask: p.mask,
            layout: p.layout,
            packed: p.packed,
        }
    }
}

impl AttentionProblem {
    /// The variant layout code: O's [`AttentionLayout`] code, or [`PACKED_LAYOUT`].
    pub fn layout_code(&self) -> &'static str {
        match self.packed {
            Some(_) => PACKED_LAYOUT,
            None => self.layout.code(),
        }
    }

    /// Self-attention: seq_q = seq_kv = seq, f16, no mask, one K/V head per query head.
    pub fn new(batch: u64, heads: u64, seq: u64, head_dim: u64) -> Self {
        AttentionProblem {
            batch,
            heads,
            kv_heads: heads,
            seq_q: seq,
            seq_kv: seq,
            head_dim,
            dtype: DType::F16,
            mask: Mask::None,
            layout: AttentionLayout::Bhsd,
            packed: None,
        }
    }

    /// This problem over a packed batch: `batch`, `seq_q` and `seq_kv` follow the lengths.
    pub fn with_packing(mut self, packing: Packing) -> Self {
        self.batch = packing.lens_q.len() as u64;
        self.seq_q = packing.lens_q.iter().copied().max().unwrap_or(0);
        self.seq_kv = packing.lens_kv.iter().copied().max().unwrap_or(0);
        self.packed = Some(packing);
        self
    }

    /// The K/V head query head `h` reads.
    pub fn kv_head(&self, h: u64) -> u64 {
        h / (self.heads / self.kv_heads.max(1)).max(1)
    }

    pub fn check(&self) -> Result<(), ProblemError> {
        let op = OpKind::Attention;
        check_dims(
            op,
            &[
                ("batch", self.batch),
                ("heads", self.heads),
                ("kv_heads", self.kv_heads),
                ("seq_q", self.seq_q),
                ("seq_kv", self.seq_kv),
                ("head_dim", self.head_dim),
            ],
        )?;
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(ProblemError::KvHeads {
                op,
                heads: self.heads,
                kv_heads: self.kv_heads,
            });
        }
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
        if let Some(p) = &self.packed {
            self.check_packing(p)?;
        }
        Ok(())
    }

    fn check_packing(&self, p: &Packing) -> Result<(), ProblemError> {
        let op = OpKind::Attention;
        let bad = |what: String| Err(ProblemError::Packing { op, what });
        if self.mask == Mask::Padding {
            return bad(
                "a packed batch has no padding: its key lengths are the sequence lengths; \
                 drop `mask: padding`"
                    .into(),
            );
        }
        if !self.layout.is_bhsd() {
            return bad(format!(
                "a packed batch is token-major throughout ([tokens, heads, head_dim]); \
                 drop `layout: {}`",
                self.layout
            ));
        }
        for (what, lens, longest) in [
            ("query", &p.lens_q, self.seq_q),
            ("key", &p.lens_kv, self.seq_kv),
        ] {
            if lens.len() as u64 != self.batch {
                return bad(format!(
                    "{} {what} lengths for batch {}",
                    lens.len(),
                    self.batch
                ));
            }
            if let Some(i) = lens.iter().position(|&l| l == 0) {
                return bad(format!(
                    "sequence {i} has {what} length 0 (lengths start at 1)"
                ));
            }
            let max = lens.iter().copied().max().unwrap_or(0);
            if max != longest {
                let dim = if what == "query" { "seq_q" } else { "seq_kv" };
                return bad(format!(
                    "{dim} {longest} is not the longest {what} length ({max})"
                ));
            }
            let total: u64 = lens.iter().sum();
            if total > i32::MAX as u64 {
                return bad(format!(
                    "{total} {what} tokens do not fit the i32 offsets (limit {})",
                    i32::MAX
                ));
            }
        }
        Ok(())
    }

    /// Query tokens: `batch · seq_q`, or the packed total.
    pub fn tokens_q(&self) -> u64 {
        self.packed
            .as_ref()
            .map_or(self.batch * self.seq_q, Packing::tokens_q)
    }

    /// Key tokens: `batch · seq_kv`, or the packed total.
    pub fn tokens_kv(&self) -> u64 {
        self.packed
            .as_ref()
            .map_or(self.batch * self.seq_kv, Packing::tokens_kv)
    }

    /// The real query and key lengths of sequence `b` (`seq_q`, `seq_kv` unless packed).
    pub fn lens(&self, b: u64) -> (u64, u64) {
        match &self.packed {
            Some(p) => (
                p.lens_q.get(b as usize).copied().unwrap_or(0),
                p.lens_kv.get(b as usize).copied().unwrap_or(0),
            ),
            None => (self.seq_q, self.seq_kv),
        }
    }

    /// Two GEMMs of `seq_q × seq_kv × head_dim` per head and sequence (halved when causal).
    pub fn flops(&self) -> f64 {
        let pairs: f64 = match &self.packed {
            Some(p) => p
                .lens_q
                .iter()
                .zip(&p.lens_kv)
                .map(|(&q, &k)| q as f64 * k as f64)
                .sum(),
            None => self.batch as f64 * self.seq_q as f64 * self.seq_kv as f64,
        };
        let f = 4.0 * self.heads as f64 * pairs * self.head_dim as f64;
        if self.mask == Mask::Causal {
            f / 2.0
        } else {
            f
        }
    }

    /// Q, K, V read once and O written once.
    pub fn bytes(&self) -> f64 {
        let e = self.dtype.size_bytes() as f64 * self.head_dim as f64;
        let q = self.tokens_q() as f64 * self.heads as f64;
        let kv = self.tokens_kv() as f64 * self.kv_heads as f64;
        e * (2.0 * q + 2.0 * kv)
    }

    /// Elements of Q (and of O).
    pub fn q_len(&self) -> u64 {
        self.tokens_q() * self.heads * self.head_dim
    }

    /// Elements of K (and of V).
    pub fn kv_len(&self) -> u64 {
        self.tokens_kv() * self.kv_heads * self.head_dim
    }

    /// Element index of `Q[b][h][s][d]`: `[batch, heads, seq_q, head_dim]`, or token-major
    /// `[tokens_q, heads, head_dim]` when packed.
    pub fn q_index(&self, b: u64, h: u64, s: u64, d: u64) -> u64 {
        match &self.packed {
            Some(p) => ((p.start_q(b) + s) * self.heads + h) * self.head_dim + d,
            None => ((b * self.heads + h) * self.seq_q + s) * self.head_dim + d,
        }
    }

    /// Element index of `K[b][kv_head][j][d]` (and of V): `[batch, kv_heads, seq_kv,
    /// head_dim]`, or token-major `[tokens_kv, kv_heads, head_dim]` when packed.
    pub fn kv_index(&self, b: u64, kv_head: u64, j: u64, d: u64) -> u64 {
        match &self.packed {
            Some(p) => ((p.start_kv(b) + j) * self.kv_heads + kv_head) * self.head_dim + d,
            None => ((b * self.kv_heads + kv_head) * self.seq_kv + j) * self.head_dim + d,
        }
    }

    /// Element index of `O[b][h][s][d]` in the output, as [`layout`](Self::layout) places it
    /// (packed: where Q has it).
    pub fn output_index(&self, b: u64, h: u64, s: u64, d: u64) -> u64 {
        if self.packed.is_some() {
            return self.q_index(b, h, s, d);
        }
        match self.layout {
            AttentionLayout::Bhsd => self.q_index(b, h, s, d),
            AttentionLayout::Bshd => ((b * self.seq_q + s) * self.heads + h) * self.head_dim + d,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_keeps_plain_problems_unchanged() {
        let p = AttentionProblem::new(2, 12, 384, 64);
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            r#"{"batch":2,"heads":12,"seq_q":384,"seq_kv":384,"head_dim":64,"dtype":"f16"}"#
        );
        let back: AttentionProblem = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
        assert_eq!(back.kv_heads, 12, "kv_heads defaults to heads");
        let mut g = p.clone();
        g.kv_heads = 4;
        let json = serde_json::to_string(&g).unwrap();
        assert!(json.contains(r#""heads":12,"kv_heads":4,"#), "{json}");
        assert_eq!(serde_json::from_str::<AttentionProblem>(&json).unwrap(), g);
        let packed = p.with_packing(Packing::uniform_self(vec![3, 1, 7]));
        let json = serde_json::to_string(&packed).unwrap();
        assert!(json.ends_with(r#""packed":{"lens_q":[3,1,7]}}"#), "{json}");
        assert_eq!(
            serde_json::from_str::<AttentionProblem>(&json).unwrap(),
            packed
        );
        let mut cross = packed.clone();
        cross.packed = Some(Packing {
            lens_q: vec![3, 1, 7],
            lens_kv: vec![2, 2, 9],
        });
        let json = serde_json::to_string(&cross).unwrap();
        assert!(json.contains(r#""lens_kv":[2,2,9]"#), "{json}");
        assert_eq!(
            serde_json::from_str::<AttentionProblem>(&json).unwrap(),
            cross
        );
    }

    #[test]
    fn kv_heads_must_divide_heads() {
        let mut p = AttentionProblem::new(1, 12, 64, 64);
        for (kv, ok) in [(12, true), (4, true), (1, true), (5, false), (24, false)] {
            p.kv_heads = kv;
            assert_eq!(p.check().is_ok(), ok, "kv_heads {kv}");
        }
        p.kv_heads = 5;
        assert_eq!(
            p.check().unwrap_err().to_string(),
            "attention: kv_heads 5 must divide heads 12 (each K/V head serves heads / kv_heads \
             query heads)"
        );
        p.kv_heads = 0;
        assert!(p.check().unwrap_err().to_string().contains("`kv_heads`"));
        p.kv_heads = 4;
        // query heads 0..3 read K/V head 0, 3..6 head 1, ...
        let map: Vec<u64> = (0..12).map(|h| p.kv_head(h)).collect();
        assert_eq!(map, [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]);
        p.kv_heads = 1;
        assert!((0..12).all(|h| p.kv_head(h) == 0), "multi-query");
    }

    #[test]
    fn packing_checks_and_indexes() {
        let mut p = AttentionProblem::new(1, 4, 1, 64).with_packing(Packing {
            lens_q: vec![1, 77, 5],
            lens_kv: vec![2, 3, 100],
        });
        p.kv_heads = 2;
        p.check().unwrap();
        assert_eq!((p.batch, p.seq_q, p.seq_kv), (3, 77, 100));
        assert_eq!((p.tokens_q(), p.tokens_kv()), (83, 105));
        assert_eq!(p.q_len(), 83 * 4 * 64);
        assert_eq!(p.kv_len(), 105 * 2 * 64);
        // sequence 2 starts at query token 78 and key token 5
        assert_eq!(p.q_index(2, 3, 1, 7), ((78 + 1) * 4 + 3) * 64 + 7);
        assert_eq!(p.kv_index(2, 1, 4, 7), ((5 + 4) * 2 + 1) * 64 + 7);
        assert_eq!(p.output_index(2, 3, 1, 7), p.q_index(2, 3, 1, 7));
        assert_eq!(Packing::offsets(&[1, 77, 5]), [0, 1, 78, 83]);
        assert_eq!(p.lens(1), (77, 3));
        let flops = 4.0 * 4.0 * 64.0 * (2.0 + 231.0 + 500.0);
        assert_eq!(p.flops(), flops);

        let err = |p: &AttentionProblem| p.check().unwrap_err().to_string();
        let mut q = p.clone();
        q.mask = Mask::Padding;
        assert!(err(&q).contains("drop `mask: padding`"), "{}", err(&q));
        let mut q = p.clone();
        q.layout = AttentionLayout::Bshd;
        assert!(err(&q).contains("drop `layout: bshd`"));
        let mut q = p.clone();
        q.seq_q = 80;
        assert!(err(&q).contains("seq_q 80 is not the longest query length (77)"));
        let mut q = p.clone();
        q.batch = 4;
        assert!(err(&q).contains("3 query lengths for batch 4"));
        let q = AttentionProblem::new(1, 4, 1, 64).with_packing(Packing::uniform_self(vec![3, 0]));
        assert!(
            err(&q).contains("sequence 1 has query length 0"),
            "{}",
            err(&q)
        );
    }

    #[test]
    fn packing_labels_list_lengths_or_a_digest() {
        let p = Packing::uniform_self(vec![1, 77, 100]);
        assert_eq!(p.label(), "packed=1,77,100");
        let c = Packing {
            lens_q: vec![1, 2],
            lens_kv: vec![3, 4],
        };
        assert_eq!(c.label(), "packed_q=1,2 packed_kv=3,4");
        let long = Packing::uniform_self((1..=100).collect());
        let label = long.label();
        assert!(label.starts_with("packed=n100,t5050,fnv1a64-"), "{label}");
        assert_eq!(label.len(), "packed=n100,t5050,fnv1a64-".len() + 16);
        let mut other = long.clone();
        other.lens_q[0] = 2;
        other.lens_kv[0] = 2;
        assert_ne!(other.label(), label, "different lengths, different keys");
    }
}
