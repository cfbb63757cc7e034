//! Epilogue operations: what happens to an accumulator tile between the mainloop and the store.
//!
//! A GEMM's epilogue chain is `alpha·acc`, then each op in order, then a conversion to the output
//! dtype. Ops are vendor-neutral; the code generator lowers each to one expression per element.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One step of an epilogue chain, applied per element `v` at (row, col) of the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EpilogueOp {
    /// `v += beta · C[row, col]` (C has the output's dtype and layout).
    BetaC,
    /// `v += bias[col]` (a row vector of the output's dtype).
    Bias,
    /// `v = max(v, 0)`.
    Relu,
    /// `v = 0.5·v·(1 + erf(v/√2))`.
    Gelu,
    /// `v = 0.5·v·(1 + tanh(√(2/π)·(v + 0.044715·v³)))`.
    GeluTanh,
    /// `v = v · sigmoid(v)`.
    Silu,
    /// `v += R[row, col]` (a residual of the output's dtype and layout).
    Residual,
}

impl EpilogueOp {
    pub const ALL: [EpilogueOp; 7] = [
        EpilogueOp::BetaC,
        EpilogueOp::Bias,
        EpilogueOp::Relu,
        EpilogueOp::Gelu,
        EpilogueOp::GeluTanh,
        EpilogueOp::Silu,
        EpilogueOp::Residual,
    ];

    /// The token used in kernel names and shape files.
    pub fn name(self) -> &'static str {
        match self {
            EpilogueOp::BetaC => "beta_c",
            EpilogueOp::Bias => "bias",
            EpilogueOp::Relu => "relu",
            EpilogueOp::Gelu => "gelu",
            EpilogueOp::GeluTanh => "gelu_tanh",
            EpilogueOp::Silu => "silu",
            EpilogueOp::Residual => "residual",
        }
    }

    /// Apply this op to one value on the CPU (the reference semantics).
    /// `c`, `bias` and `residual` are the operand values at this element (0 when absent).
    pub fn apply(self, v: f64, beta: f64, c: f64, bias: f64, residual: f64) -> f64 {
        match self {
            EpilogueOp::BetaC => v + beta * c,
            EpilogueOp::Bias => v + bias,
            EpilogueOp::Relu => v.max(0.0),
            EpilogueOp::Gelu => 0.5 * v * (1.0 + erf(v / std::f64::consts::SQRT_2)),
            EpilogueOp::GeluTanh => {
                let k = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * v * (1.0 + (k * (v + 0.044715 * v * v * v)).tanh())
            }
            EpilogueOp::Silu => v / (1.0 + (-v).exp()),
            EpilogueOp::Residual => v + residual,
        }
    }
}

impl fmt::Display for EpilogueOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An epilogue op name that Tessera does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown epilogue op `{0}`; use beta_c, bias, relu, gelu, gelu_tanh, silu or residual")]
pub struct UnknownEpilogueOp(pub String);

impl FromStr for EpilogueOp {
    type Err = UnknownEpilogueOp;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EpilogueOp::ALL
            .into_iter()
            .find(|op| op.name() == s)
            .ok_or_else(|| UnknownEpilogueOp(s.to_string()))
    }
}

/// The error function, to double precision (Abramowitz–Stegun 7.1.26 is too coarse for a
/// reference, so this uses the complementary-error continued fraction / series split).
pub fn erf(x: f64) -> f64 {
    if x < 0.0 {
        return -erf(-x);
    }
    if x < 2.5 {
        // Maclaurin series: erf(x) = 2/√π Σ (-1)^n x^(2n+1) / (n! (2n+1))
        let mut sum: f64 = 0.0;
        let mut term = x;
        let mut n = 0.0;
        while term.abs() > 1e-17 * sum.abs().max(1e-300) || n < 3.0 {
            sum += term / (2.0 * n + 1.0);
            n += 1.0;
            term *= -x * x / n;
            if n > 200.0 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // Continued fraction for erfc, converges fast for x >= 2.5.
        let mut f = 0.0;
        for k in (1..60).rev() {
            f = (k as f64 / 2.0) / (x + f);
        }
        1.0 - (-x * x).exp() / std::f64::consts::PI.sqrt() / (x + f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_known_values() {
        let cases = [
            (0.0, 0.0),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (3.0, 0.999_977_909_503_001_4),
            (-1.0, -0.842_700_792_949_714_9),
        ];
        for (x, want) in cases {
            assert!(
                (erf(x) - want).abs() < 1e-12,
                "erf({x}) = {} want {want}",
                erf(x)
            );
        }
    }

    #[test]
    fn names_parse_back() {
        for op in EpilogueOp::ALL {
            assert_eq!(op.name().parse::<EpilogueOp>().unwrap(), op);
        }
        assert!("gleu".parse::<EpilogueOp>().is_err());
    }

    #[test]
    fn gelu_forms_agree_roughly() {
        for x in [-3.0, -1.0, -0.1, 0.0, 0.3, 1.0, 2.5] {
            let a = EpilogueOp::Gelu.apply(x, 0.0, 0.0, 0.0, 0.0);
            let b = EpilogueOp::GeluTanh.apply(x, 0.0, 0.0, 0.0, 0.0);
            assert!((a - b).abs() < 2e-3, "{x}: {a} vs {b}");
        }
    }
}
