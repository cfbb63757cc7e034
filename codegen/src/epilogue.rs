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

/// The erf GELU's constants, as the source spells them: `p/√2` of Abramowitz & Stegun 7.1.26
/// (`p = 0.3275911`), and its coefficients `a1..a5` halved (the GELU needs ½·erfc).
const GELU_ERF_P: &str = "0.2316418882663604";
const GELU_ERF_A: [&str; 5] = [
    "0.127414796",
    "-0.142248368",
    "0.7107068705",
    "-0.7265760135",
    "0.5307027145",
];
/// The tanh GELU's `2·√(2/π)` (the exponent's doubled scale) and cubic coefficient.
const GELU_TANH_2K: &str = "1.5957691216057308";
const GELU_TANH_C: &str = "0.044715";

/// `a[0] + t·(a[1] + t·(…))` in C, float literals.
fn horner(a: &[&str], t: &str) -> String {
    match a {
        [] => "0.f".into(),
        [last] => format!("{last}f"),
        [first, last] => format!("{first}f + {t} * {last}f"),
        [first, rest @ ..] => format!("{first}f + {t} * ({})", horner(rest, t)),
    }
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
             const float tsr_q = tsr_t * ({}) * {}({v} * (-0.5f * {v})); \
             {v} *= {v} >= 0.f ? 1.f - tsr_q : tsr_q; }}",
            d.fast_div("1.f", &format!("1.f + {GELU_ERF_P}f * fabsf({v})")),
            horner(&GELU_ERF_A, "tsr_t"),
            d.math(MathFn::Exp)
        ),
        // 0.5·v·(1 + tanh(u)) = v / (1 + exp(-2u)): one fast exponential and a reciprocal
        // instead of a precise tanh (about 20 instructions, fully unrolled per accumulator),
        // and no cancellation where tanh(u) nears -1.
        EpilogueOp::GeluTanh => format!(
            "{v} = {};",
            d.fast_div(
                v,
                &format!(
                    "1.f + {}(-{GELU_TANH_2K}f * ({v} + {GELU_TANH_C}f * {v} * {v} * {v}))",
                    d.math(MathFn::Exp)
                )
            )
        ),
        EpilogueOp::Silu => format!("{v} = {v} / (1.f + {}(-{v}));", d.math(MathFn::Exp)),
        EpilogueOp::Residual => format!("{v} += {};", d.to_float(out, at.residual)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_dsl::epilogue::erf;

    fn constant(text: &str) -> f32 {
        text.parse().expect("a float literal")
    }

    /// The erf GELU's formula, evaluated in f32 as the kernel does (exact division and
    /// exponential standing in for the fast ones), against the f64 reference on [-12, 12].
    #[test]
    fn erf_gelu_approximation_is_within_5e_7() {
        let p = constant(GELU_ERF_P);
        let a: Vec<f32> = GELU_ERF_A.iter().map(|c| constant(c)).collect();
        let mut worst = 0f64;
        for i in 0..=24_000 {
            let v = -12.0 + i as f32 * 1e-3;
            let t = 1.0 / (1.0 + p * v.abs());
            let poly = a.iter().rev().fold(0f32, |acc, &c| acc * t + c);
            let q = t * poly * (v * (-0.5 * v)).exp();
            let got = v * if v >= 0.0 { 1.0 - q } else { q };
            let x = f64::from(v);
            let want = 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2));
            worst = worst.max((f64::from(got) - want).abs());
        }
        assert!(worst < 5e-7, "worst absolute error {worst:e}");
    }

    /// The tanh GELU's constants are 2·√(2/π) and 0.044715, and v / (1 + exp(-2u)) is the
    /// textbook 0.5·v·(1 + tanh(u)) to f32 rounding.
    #[test]
    fn tanh_gelu_is_the_sigmoid_form() {
        let k = (2.0 / std::f64::consts::PI).sqrt();
        let (two_k, c) = (constant(GELU_TANH_2K), constant(GELU_TANH_C));
        assert!((f64::from(two_k) - 2.0 * k).abs() < 1e-7);
        assert_eq!(c, 0.044715);
        for i in 0..=2_400 {
            let v = -12.0 + i as f32 * 1e-2;
            let got = v / (1.0 + (-two_k * (v + c * v * v * v)).exp());
            let x = f64::from(v);
            let want = 0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh());
            assert!(
                (f64::from(got) - want).abs() <= 1e-6 * want.abs().max(1.0),
                "v = {v}: {got} against {want}"
            );
        }
    }

    #[test]
    fn horner_nests_the_coefficients() {
        assert_eq!(horner(&["1", "2", "3"], "t"), "1f + t * (2f + t * 3f)");
    }
}
