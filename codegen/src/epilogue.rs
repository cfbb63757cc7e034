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
        // v·Φ(v) with Φ from erfc's rational approximation (Abramowitz & Stegun 7.1.26,
        // |error| ≤ 1.5e-7): q = ½·erfc(|v|/√2) = t·P(t)·exp(-v²/2), t = 1 / (1 + p·|v|/√2),
        // with p/√2 and ½ folded into the constants; Φ = 1 - q for v ≥ 0 and q below, so the
        // negative side has no cancellation. A reciprocal, an exponential and six FMAs instead
        // of a precise erff per accumulator.
        EpilogueOp::Gelu => format!(
            "{{ const float tsr_t = {}; \
             const float tsr_q = tsr_t * (0.127414796f + tsr_t * (-0.142248368f + tsr_t * \
             (0.7107068705f + tsr_t * (-0.7265760135f + tsr_t * 0.5307027145f)))) * {}({v} * (-0.5f * {v})); \
             {v} *= {v} >= 0.f ? 1.f - tsr_q : tsr_q; }}",
            d.fast_div("1.f", &format!("1.f + 0.2316418882663604f * fabsf({v})")),
            d.math(MathFn::Exp)
        ),
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
