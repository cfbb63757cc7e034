//! The embedding step of an encoder: per token `t` (of a padded `[batch, seq]` batch, or of a
//! packed one whose sequences sit back to back),
//! `h = word[input_ids[t]] + position[position_ids[t]] + token_type[token_type_ids[t]]`, then
//! layernorm (`gamma`, `beta`, eps as a runtime scalar), written `[tokens, hidden]` in the
//! tables' dtype. Ids are i32; every id must index a row of its table (the caller's contract,
//! as in PyTorch's `nn.Embedding`): the kernel does not bounds-check them.
//!
//! Part of the vocabulary: no GPU, no I/O.

use super::{check_dims, ProblemError};
use crate::dtype::DType;
use crate::layout::max_alignment;
use crate::problem::{OpKind, MAX_ROW};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EmbeddingProblem {
    /// Rows of the output: `batch · seq`, or a packed batch's token count.
    pub tokens: u64,
    /// Row length of every table and of the output.
    pub hidden: u64,
    /// The longest sequence: position ids lie in `0..seq` (a padded batch's token `t` has
    /// position `t % seq`).
    pub seq: u64,
    /// Rows of the word table (valid `input_ids` are `0..vocab`).
    pub vocab: u64,
    /// Rows of the position table (at least `seq`).
    pub positions: u64,
    /// Rows of the token-type table (valid `token_type_ids` are `0..types`).
    pub types: u64,
    pub dtype: DType,
}

impl EmbeddingProblem {
    /// BERT-base tables (30522 words, 512 positions, 2 token types) over `tokens` tokens of
    /// `seq`-token sequences, f16.
    pub fn new(tokens: u64, hidden: u64, seq: u64) -> Self {
        EmbeddingProblem {
            tokens,
            hidden,
            seq,
            vocab: 30522,
            positions: 512,
            types: 2,
            dtype: DType::F16,
        }
    }

    pub fn check(&self) -> Result<(), ProblemError> {
        let op = OpKind::Embedding;
        check_dims(
            op,
            &[
                ("tokens", self.tokens),
                ("hidden", self.hidden),
                ("seq", self.seq),
                ("vocab", self.vocab),
                ("positions", self.positions),
                ("types", self.types),
            ],
        )?;
        if self.hidden > MAX_ROW {
            return Err(ProblemError::TooLarge {
                op,
                dim: "hidden",
                value: self.hidden,
                limit: MAX_ROW,
            });
        }
        if self.seq > self.positions {
            return Err(ProblemError::Mask {
                op,
                what: format!(
                    "seq {} needs {} positions; the position table has {}",
                    self.seq, self.seq, self.positions
                ),
            });
        }
        if !self.dtype.is_mma_input() {
            return Err(ProblemError::InputDType {
                op,
                got: self.dtype,
            });
        }
        Ok(())
    }

    pub fn alignment(&self) -> u32 {
        max_alignment(&[self.hidden])
    }

    /// Compulsory traffic: three table rows read and one row written per token, three ids
    /// read per token, gamma and beta read once.
    pub fn bytes(&self) -> f64 {
        let e = self.dtype.size_bytes() as f64;
        let rows = 4.0 * (self.tokens * self.hidden) as f64 * e;
        rows + 12.0 * self.tokens as f64 + 2.0 * self.hidden as f64 * e
    }

    /// About ten flops per element (two adds, the two reductions, the affine transform).
    pub fn flops(&self) -> f64 {
        10.0 * (self.tokens * self.hidden) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_sizes_tables_and_dtype() {
        let p = EmbeddingProblem::new(4 * 128, 768, 128);
        p.check().unwrap();
        let mut long = p.clone();
        long.seq = 513;
        assert!(long
            .check()
            .unwrap_err()
            .to_string()
            .contains("seq 513 needs 513 positions; the position table has 512"));
        let mut zero = p.clone();
        zero.vocab = 0;
        assert_eq!(
            zero.check().unwrap_err().to_string(),
            "embedding: dimension `vocab` must be positive (got 0)"
        );
        let mut f32_tables = p;
        f32_tables.dtype = DType::F32;
        assert!(f32_tables.check().is_err());
    }
}
