//! Lowering of epilogue ops to per-element C expressions (vendor-neutral: conversions and the
//! fast division come from the dialect, and both dialects' preludes define `tsr_exp2`).

use crate::dialect::Dialect;
use tessera_dsl::{DType, EpilogueOp};

/// Operand loads an epilogue needs at element (`row`, `col`): C expressions of the stored values.
pub struct EpilogueOperands<'a> {
    pub c: &'a str,
    pub bias: &'a str,
    pub residual: &'a str,
}

/// The erf GELU's constants: `p/√2` of Abramowitz & Stegun 7.1.26 (`p = 0.3275911`), and its
/// coefficients `a1..a5` halved (the GELU needs ½·erfc).
const GELU_ERF_P: f64 = 0.3275911 * std::f64::consts::FRAC_1_SQRT_2;
const GELU_ERF_A: [f64; 5] = [
    0.254829592 / 2.0,
    -0.284496736 / 2.0,
    1.421413741 / 2.0,
    -1.453152027 / 2.0,
    1.061405429 / 2.0,
];
/// The tanh GELU's `√(2/π)` and cubic coefficient.
const GELU_TANH_K: f64 = 0.797_884_560_802_865_4;
const GELU_TANH_C: f64 = 0.044715;
const LOG2_E: f64 = std::f64::consts::LOG2_E;

/// A float literal in C: the shortest decimal that reads back as the same `f32`.
fn lit(x: f64) -> String {
    format!("{:?}f", x as f32)
}

/// `a[0] + t·(a[1] + t·(…))` in C, float literals.
fn horner(a: &[f64], t: &str) -> String {
    match a {
        [] => "0.f".into(),
        [last] => lit(*last),
        [first, last] => format!("{} + {t} * {}", lit(*first), lit(*last)),
        [first, rest @ ..] => format!("{} + {t} * ({})", lit(*first), horner(rest, t)),
    }
}

/// The tanh GELU's exponent in base 2, `-2u·log2 e = v·(c1 + c2·v²)` with
/// `u = √(2/π)·(v + 0.044715·v³)`: the scale and log2 e folded into the two constants.
fn gelu_tanh_exponent() -> (f64, f64) {
    let scale = -2.0 * GELU_TANH_K * LOG2_E;
    (scale, scale * GELU_TANH_C)
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
        // with p/√2 and ½ folded into the constants and exp(-v²/2) taken as exp2(v·(-½·log2 e)·v)
        // (the fast base-2 exponential, one instruction on NVIDIA); Φ = 1 - q for v ≥ 0 and q
        // below, so the negative side has no cancellation. A reciprocal, an exponential and
        // six FMAs instead of a precise erff per accumulator.
        EpilogueOp::Gelu => format!(
            "{{ const float tsr_t = {}; \
             const float tsr_q = tsr_t * ({}) * tsr_exp2({v} * ({} * {v})); \
             {v} *= {v} >= 0.f ? 1.f - tsr_q : tsr_q; }}",
            d.fast_div("1.f", &format!("1.f + {} * fabsf({v})", lit(GELU_ERF_P))),
            horner(&GELU_ERF_A, "tsr_t"),
            lit(-0.5 * LOG2_E)
        ),
        // 0.5·v·(1 + tanh(u)) = v / (1 + exp(-2u)) = v / (1 + exp2(v·(c1 + c2·v²))): one fast
        // base-2 exponential and a reciprocal instead of a precise tanh (about 20 instructions,
        // fully unrolled per accumulator), and no cancellation where tanh(u) nears -1.
        EpilogueOp::GeluTanh => {
            let (c1, c2) = gelu_tanh_exponent();
            format!(
                "{v} = {};",
                d.fast_div(
                    v,
                    &format!(
                        "1.f + tsr_exp2({v} * ({} + {} * ({v} * {v})))",
                        lit(c1),
                        lit(c2)
                    )
                )
            )
        }
        // v·sigmoid(v) = v / (1 + exp2(-v·log2 e))
        EpilogueOp::Silu => format!(
            "{v} = {};",
            d.fast_div(v, &format!("1.f + tsr_exp2({v} * {})", lit(-LOG2_E)))
        ),
        EpilogueOp::Residual => format!("{v} += {};", d.to_float(out, at.residual)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_dsl::epilogue::erf;

    /// The value the kernel's literal for `x` holds.
    fn as_emitted(x: f64) -> f32 {
        let text = lit(x);
        text.strip_suffix('f')
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("{text} is not a C float literal"))
    }

    /// The erf GELU's formula, evaluated in f32 as the kernel does with its emitted literals
    /// (exact division and exponential standing in for the fast ones), against the f64
    /// reference on [-12, 12].
    #[test]
    fn erf_gelu_approximation_is_within_5e_7() {
        let p = as_emitted(GELU_ERF_P);
        let a: Vec<f32> = GELU_ERF_A.iter().map(|&c| as_emitted(c)).collect();
        let half_log2e = as_emitted(-0.5 * LOG2_E);
        let mut worst = 0f64;
        for i in 0..=24_000 {
            let v = -12.0 + i as f32 * 1e-3;
            let t = 1.0 / (1.0 + p * v.abs());
            let poly = a.iter().rev().fold(0f32, |acc, &c| acc * t + c);
            let q = t * poly * (v * (half_log2e * v)).exp2();
            let got = v * if v >= 0.0 { 1.0 - q } else { q };
            let x = f64::from(v);
            let want = 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2));
            worst = worst.max((f64::from(got) - want).abs());
        }
        assert!(worst < 5e-7, "worst absolute error {worst:e}");
    }

    /// v / (1 + exp2(v·(c1 + c2·v²))) with the emitted constants is the textbook
    /// 0.5·v·(1 + tanh(√(2/π)·(v + 0.044715·v³))) to f32 rounding.
    #[test]
    fn tanh_gelu_is_the_sigmoid_form() {
        let k = (2.0 / std::f64::consts::PI).sqrt();
        assert!((GELU_TANH_K - k).abs() < 1e-15);
        let (c1, c2) = gelu_tanh_exponent();
        let (c1, c2) = (as_emitted(c1), as_emitted(c2));
        for i in 0..=2_400 {
            let v = -12.0 + i as f32 * 1e-2;
            let got = v / (1.0 + (v * (c1 + c2 * (v * v))).exp2());
            let x = f64::from(v);
            let want = 0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh());
            assert!(
                (f64::from(got) - want).abs() <= 1e-6 * want.abs().max(1.0),
                "v = {v}: {got} against {want}"
            );
        }
    }

    #[test]
    fn silu_is_v_times_the_sigmoid() {
        let c = as_emitted(-LOG2_E);
        for i in 0..=2_400 {
            let v = -12.0 + i as f32 * 1e-2;
            let got = v / (1.0 + (v * c).exp2());
            let x = f64::from(v);
            let want = x / (1.0 + (-x).exp());
            assert!((f64::from(got) - want).abs() <= 1e-6 * want.abs().max(1.0));
        }
    }

    #[test]
    fn literals_read_back_as_the_same_f32() {
        for x in [GELU_ERF_P, GELU_TANH_C, -LOG2_E, 1.0, 1e-7, -3.5e12] {
            assert_eq!(as_emitted(x), x as f32, "{}", lit(x));
        }
        assert_eq!(lit(1.0), "1.0f");
    }

    #[test]
    fn horner_nests_the_coefficients() {
        assert_eq!(
            horner(&[1.0, 2.0, 3.0], "t"),
            "1.0f + t * (2.0f + t * 3.0f)"
        );
    }
}
