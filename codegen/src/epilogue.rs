//! Lowering of epilogue ops to per-element C expressions (vendor-neutral except for math
//! function names, which come from the dialect).

use crate::dialect::{Dialect, MathFn};
use tessera_dsl::{DType, EpilogueOp};

/// Operand loads an epilogue needs at element (`row`, `col`): C expressions of the stored values.
pub struct EpilogueOperands<'a> {
    pub c: &'a str,
    pub bias: &'a str,
    pub residual: &'a str,
}

/// The statement that applies `op` to the float variable `v`.
pub fn apply(
    d: &dyn Dialect,
    op: EpilogueOp,
    v: &str,
    out: DType,
    at: &EpilogueOperands,
) -> String {
    match op {
        EpilogueOp::BetaC => format!("{v} += beta * {};", d.to_float(out, at.c)),
        EpilogueOp::Bias => format!("{v} += {};", d.to_float(out, at.bias)),
        EpilogueOp::Relu => format!("{v} = {v} > 0.f ? {v} : 0.f;"),
        EpilogueOp::Gelu => format!(
            "{v} = 0.5f * {v} * (1.f + {}({v} * 0.70710678118654752f));",
            d.math(MathFn::Erf)
        ),
        // 0.5·v·(1 + tanh(u)) = v / (1 + exp(-2u)): one fast exponential and a reciprocal
        // instead of a precise tanh (about 20 instructions, fully unrolled per accumulator),
        // and no cancellation where tanh(u) nears -1.
        EpilogueOp::GeluTanh => format!(
            "{v} = {};",
            d.fast_div(
                v,
                &format!(
                    "1.f + {}(-1.5957691216057308f * ({v} + 0.044715f * {v} * {v} * {v}))",
                    d.math(MathFn::Exp)
                )
            )
        ),
        EpilogueOp::Silu => format!("{v} = {v} / (1.f + {}(-{v}));", d.math(MathFn::Exp)),
        EpilogueOp::Residual => format!("{v} += {};", d.to_float(out, at.residual)),
    }
}
