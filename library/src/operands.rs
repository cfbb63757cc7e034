//! The operands of a row-wise, attention or embedding problem on the host, in the order of the op's
//! launch ABI (`tessera_dsl::ir::abi`): fresh random inputs (never zeros), absent optional
//! operands, the output's size, and the scalar arguments.
//!
//! One generic description serves the tuner (upload and launch), the simulated device
//! (emulation) and the references, so nothing lists an op's operands twice.

use crate::host::{HostTensor, Rng};
use tessera_dsl::ir::{abi, Arg};
use tessera_dsl::problem::LAYERNORM_EPS;
use tessera_dsl::template::variant_for;
use tessera_dsl::{DType, Mask, Problem};

/// One pointer argument.
#[derive(Debug, Clone, PartialEq)]
pub enum Slot {
    Input(HostTensor),
    /// An optional operand the problem does not use: a null pointer.
    Absent,
    /// The output: `len` elements of `dtype`.
    Output {
        dtype: DType,
        len: u64,
    },
    /// i32 data: attention's per-batch key lengths or packed-sequence offsets, an
    /// embedding's per-token ids.
    Ints(Vec<i32>),
}

/// One scalar argument.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar {
    I32(i32),
    F32(f32),
}

/// Host operands of one non-GEMM problem.
#[derive(Debug, Clone, PartialEq)]
pub struct OpInputs {
    pub problem: Problem,
    pub slots: Vec<(&'static str, Slot)>,
    pub scalars: Vec<(&'static str, Scalar)>,
}

/// A problem OpInputs does not describe (GEMMs have `GemmInputs`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}: use GemmInputs for GEMM problems")]
pub struct NotAnOp(pub String);

fn i32_of(v: u64) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

impl OpInputs {
    /// The operands of `problem` without data: every input an empty tensor of its dtype, key
    /// lengths empty (for code that fills them from elsewhere, e.g. device buffers).
    pub fn layout(problem: &Problem) -> Result<OpInputs, NotAnOp> {
        if matches!(problem, Problem::Gemm(_)) {
            return Err(NotAnOp(problem.key()));
        }
        let variant = variant_for(DType::F32, problem);
        let mut slots = Vec::new();
        let mut scalars = Vec::new();
        for arg in abi(problem.op(), &variant) {
            match arg {
                Arg::Ptr {
                    name,
                    dtype,
                    written,
                } => {
                    let slot = if written {
                        Slot::Output {
                            dtype,
                            len: output_len(problem),
                        }
                    } else if input_len(problem, name).is_some() {
                        Slot::Input(HostTensor {
                            dtype,
                            values: Vec::new(),
                        })
                    } else {
                        Slot::Absent
                    };
                    slots.push((name, slot));
                }
                Arg::I32Ptr(name) => {
                    let slot = match int_operand(problem, name) {
                        Some(_) => Slot::Ints(Vec::new()),
                        None => Slot::Absent,
                    };
                    slots.push((name, slot));
                }
                Arg::I32(name) | Arg::I64(name) => {
                    scalars.push((name, Scalar::I32(int_arg(problem, name))))
                }
                Arg::F32(name) => scalars.push((name, Scalar::F32(float_arg(problem, name)))),
            }
        }
        Ok(OpInputs {
            problem: problem.clone(),
            slots,
            scalars,
        })
    }

    /// Fresh random operands for `problem`, reproducible from `seed`.
    pub fn random(problem: &Problem, seed: u64) -> Result<OpInputs, NotAnOp> {
        let mut x = OpInputs::layout(problem)?;
        let mut rng = Rng::new(seed);
        for (name, slot) in &mut x.slots {
            match slot {
                Slot::Input(t) => {
                    let len = input_len(problem, name).unwrap_or(0);
                    *t = random_input(name, t.dtype, len, &mut rng);
                }
                Slot::Ints(ints) => match int_operand(problem, name) {
                    Some(Ints::Random { count, lo, hi }) => {
                        // uniform in lo..=hi; the last value is hi (attention: the last batch
                        // attends every key; an embedding: the largest id is read)
                        *ints = (0..count)
                            .map(|i| {
                                let v = if i + 1 == count {
                                    hi
                                } else {
                                    lo + rng.below(hi - lo + 1)
                                };
                                i32_of(v)
                            })
                            .collect();
                    }
                    Some(Ints::Fixed(values)) => *ints = values,
                    None => {}
                },
                Slot::Absent | Slot::Output { .. } => {}
            }
        }
        Ok(x)
    }

    pub fn tensor(&self, name: &str) -> Option<&HostTensor> {
        self.slots.iter().find_map(|(n, s)| match s {
            Slot::Input(t) if *n == name => Some(t),
            _ => None,
        })
    }

    pub fn tensor_mut(&mut self, name: &str) -> Option<&mut HostTensor> {
        self.slots.iter_mut().find_map(|(n, s)| match s {
            Slot::Input(t) if *n == name => Some(t),
            _ => None,
        })
    }

    /// The values of an input (empty when absent).
    pub fn values(&self, name: &str) -> &[f32] {
        self.tensor(name).map_or(&[], |t| &t.values)
    }

    pub fn f32_arg(&self, name: &str) -> f32 {
        self.scalars
            .iter()
            .find_map(|(n, s)| match s {
                Scalar::F32(v) if *n == name => Some(*v),
                _ => None,
            })
            .unwrap_or(0.0)
    }

    pub fn kv_lens(&self) -> Option<&[i32]> {
        self.ints("kv_lens")
    }

    /// The values of an i32 operand (key lengths, ids), if the problem uses it.
    pub fn ints(&self, name: &str) -> Option<&[i32]> {
        self.slots.iter().find_map(|(n, s)| match s {
            Slot::Ints(l) if *n == name => Some(l.as_slice()),
            _ => None,
        })
    }

    /// The output's dtype and element count.
    pub fn output(&self) -> (DType, u64) {
        self.slots
            .iter()
            .find_map(|(_, s)| match s {
                Slot::Output { dtype, len } => Some((*dtype, *len)),
                _ => None,
            })
            .unwrap_or((DType::F16, 0))
    }
}

/// Elements of the output.
pub fn output_len(problem: &Problem) -> u64 {
    match problem {
        Problem::Gemm(g) => g.batch * g.m * g.n,
        Problem::Layernorm(l) => l.rows * l.cols,
        Problem::Softmax(s) => s.rows * s.cols,
        Problem::Attention(a) => a.q_len(),
        Problem::Embedding(e) => e.tokens * e.hidden,
    }
}

/// The values of an i32 operand the problem uses.
enum Ints {
    /// `count` values drawn uniformly from `lo..=hi` (fresh per seed).
    Random { count: u64, lo: u64, hi: u64 },
    /// Values the problem fixes (a packed batch's sequence offsets).
    Fixed(Vec<i32>),
}

/// An i32 operand the problem uses, or `None` when absent.
fn int_operand(problem: &Problem, name: &str) -> Option<Ints> {
    let random = |count, lo, hi| Some(Ints::Random { count, lo, hi });
    let offsets = |lens: &[u64]| {
        let cu = tessera_dsl::Packing::offsets(lens);
        Some(Ints::Fixed(cu.into_iter().map(i32_of).collect()))
    };
    match (problem, name) {
        (Problem::Attention(a), "kv_lens") if a.mask == Mask::Padding => {
            random(a.batch, 1, a.seq_kv)
        }
        (Problem::Attention(a), "cu_seqlens_q") => {
            a.packed.as_ref().and_then(|p| offsets(&p.lens_q))
        }
        (Problem::Attention(a), "cu_seqlens_kv") => {
            a.packed.as_ref().and_then(|p| offsets(&p.lens_kv))
        }
        (Problem::Embedding(e), "input_ids") => random(e.tokens, 0, e.vocab.saturating_sub(1)),
        (Problem::Embedding(e), "token_type_ids") => random(e.tokens, 0, e.types.saturating_sub(1)),
        (Problem::Embedding(e), "position_ids") => random(e.tokens, 0, e.seq.saturating_sub(1)),
        _ => None,
    }
}

/// Elements of an input operand, or `None` when the problem does not use it.
fn input_len(problem: &Problem, name: &str) -> Option<u64> {
    match (problem, name) {
        (Problem::Layernorm(l), "x") => Some(l.rows * l.cols),
        (Problem::Layernorm(l), "residual") => l.residual.then_some(l.rows * l.cols),
        (Problem::Layernorm(l), "bias") => l.bias.then_some(l.cols),
        (Problem::Layernorm(l), "gamma" | "beta") => Some(l.cols),
        (Problem::Softmax(s), "x") => Some(s.rows * s.cols),
        (Problem::Softmax(s), "mask") => s.mask_period.map(|p| s.rows / p.max(1) * s.cols),
        (Problem::Attention(a), "q") => Some(a.q_len()),
        (Problem::Attention(a), "k" | "v") => Some(a.kv_len()),
        (Problem::Embedding(e), "word") => Some(e.vocab * e.hidden),
        (Problem::Embedding(e), "position") => Some(e.positions * e.hidden),
        (Problem::Embedding(e), "token_type") => Some(e.types * e.hidden),
        (Problem::Embedding(e), "gamma" | "beta") => Some(e.hidden),
        _ => None,
    }
}

fn random_input(name: &str, dtype: DType, len: u64, rng: &mut Rng) -> HostTensor {
    let mut t = HostTensor::random(dtype, len as usize, rng);
    if name == "mask" {
        // an additive key mask: about one key in four masked out, BERT-style
        for v in &mut t.values {
            *v = if rng.below(4) == 0 { -10000.0 } else { 0.0 };
        }
    }
    t
}

fn int_arg(problem: &Problem, name: &str) -> i32 {
    let v = match (problem, name) {
        (Problem::Layernorm(l), "rows") => l.rows,
        (Problem::Layernorm(l), "cols") => l.cols,
        (Problem::Softmax(s), "rows") => s.rows,
        (Problem::Softmax(s), "cols") => s.cols,
        (Problem::Softmax(s), "mask_period") => s.mask_period.unwrap_or(1),
        (Problem::Attention(a), "batch") => a.batch,
        (Problem::Attention(a), "heads") => a.heads,
        (Problem::Attention(a), "kv_heads") => a.kv_heads,
        (Problem::Attention(a), "seq_q") => a.seq_q,
        (Problem::Attention(a), "seq_kv") => a.seq_kv,
        (Problem::Embedding(e), "rows") => e.tokens,
        (Problem::Embedding(e), "cols") => e.hidden,
        (Problem::Embedding(e), "seq") => e.seq,
        _ => 0,
    };
    i32_of(v)
}

fn float_arg(problem: &Problem, name: &str) -> f32 {
    match (problem, name) {
        (Problem::Layernorm(_) | Problem::Embedding(_), "eps") => LAYERNORM_EPS,
        // spreads inputs in [-1, 1] over a few units so the softmax is far from uniform
        (Problem::Softmax(_), "scale") => 3.0,
        (Problem::Attention(a), "scale") => 1.0 / (a.head_dim as f32).sqrt(),
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_dsl::{AttentionProblem, LayernormProblem};

    #[test]
    fn slots_follow_the_abi_and_the_problem() {
        let mut l = LayernormProblem::new(4, 64);
        l.bias = true;
        let x = OpInputs::random(&Problem::Layernorm(l), 1).unwrap();
        let names: Vec<&str> = x.slots.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["x", "residual", "bias", "gamma", "beta", "y"]);
        assert!(x.tensor("residual").is_none());
        assert_eq!(x.values("bias").len(), 64);
        assert_eq!(x.output(), (DType::F16, 256));
        assert_eq!(x.f32_arg("eps"), LAYERNORM_EPS);

        let mut a = AttentionProblem::new(3, 2, 5, 64);
        a.mask = Mask::Padding;
        let x = OpInputs::random(&Problem::Attention(a), 2).unwrap();
        let lens = x.kv_lens().unwrap();
        assert_eq!(lens.len(), 3);
        assert_eq!(lens[2], 5);
        assert!(lens.iter().all(|&l| (1..=5).contains(&l)));
        assert!(
            OpInputs::random(&Problem::Gemm(tessera_dsl::GemmProblem::new(1, 1, 2)), 0).is_err()
        );

        // grouped-query and packed attention: K/V sized by kv_heads, offsets fixed by the lengths
        let mut g = AttentionProblem::new(2, 8, 1, 32)
            .with_packing(tessera_dsl::Packing::uniform_self(vec![3, 5]));
        g.kv_heads = 2;
        let x = OpInputs::random(&Problem::Attention(g), 4).unwrap();
        let names: Vec<&str> = x.slots.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "q",
                "k",
                "v",
                "o",
                "kv_lens",
                "cu_seqlens_q",
                "cu_seqlens_kv"
            ]
        );
        assert_eq!(x.values("q").len(), 8 * 8 * 32);
        assert_eq!(x.values("k").len(), 8 * 2 * 32);
        assert_eq!(x.output(), (DType::F16, 8 * 8 * 32));
        assert_eq!(x.ints("cu_seqlens_q"), Some(&[0, 3, 8][..]));
        assert_eq!(x.ints("cu_seqlens_kv"), Some(&[0, 3, 8][..]));
        assert!(x.kv_lens().is_none());
        let ints: Vec<(&str, Scalar)> = x.scalars[..5].to_vec();
        assert_eq!(
            ints,
            [
                ("batch", Scalar::I32(2)),
                ("heads", Scalar::I32(8)),
                ("kv_heads", Scalar::I32(2)),
                ("seq_q", Scalar::I32(5)),
                ("seq_kv", Scalar::I32(5))
            ]
        );
        let plain =
            OpInputs::random(&Problem::Attention(AttentionProblem::new(1, 2, 4, 32)), 4).unwrap();
        assert!(plain.ints("cu_seqlens_q").is_none() && plain.ints("cu_seqlens_kv").is_none());

        let mut e = tessera_dsl::EmbeddingProblem::new(40, 64, 8);
        (e.vocab, e.positions, e.types) = (50, 16, 3);
        let x = OpInputs::random(&Problem::Embedding(e), 3).unwrap();
        let names: Vec<&str> = x.slots.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "input_ids",
                "token_type_ids",
                "position_ids",
                "word",
                "position",
                "token_type",
                "gamma",
                "beta",
                "y"
            ]
        );
        let ids = x.ints("input_ids").unwrap();
        assert_eq!(ids.len(), 40);
        assert!(ids.iter().all(|&i| (0..50).contains(&i)));
        assert_eq!(ids[39], 49, "the largest id is read");
        assert!(ids.iter().collect::<std::collections::BTreeSet<_>>().len() > 10);
        let types = x.ints("token_type_ids").unwrap();
        assert!(types.iter().all(|&i| (0..3).contains(&i)) && types.contains(&0));
        let positions = x.ints("position_ids").unwrap();
        assert!(positions.iter().all(|&i| (0..8).contains(&i)) && positions.contains(&7));
        assert_eq!(x.values("word").len(), 50 * 64);
        assert_eq!(x.values("position").len(), 16 * 64);
        assert_eq!(x.output(), (DType::F16, 40 * 64));
        assert_eq!(x.f32_arg("eps"), LAYERNORM_EPS);
    }
}
