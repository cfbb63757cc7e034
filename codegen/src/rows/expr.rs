//! Lowering of row expressions (`RowExpr`) to C f32 expressions.
//!
//! An expression is evaluated either per element (inside the loops over a thread's chunks
//! `c` and vector elements `j`) or per row (row scalars: `let`). Row tiles become
//! `t_NAME[c][j]`, row scalars `r_NAME`; global operands were loaded by the caller into
//! registers and are given here as ready C expressions. Math goes through the dialect.

use crate::dialect::{Dialect, MathFn};
use crate::CodegenError;
use tessera_dsl::ir::{BinOp, RowExpr, RowFn};

/// What names mean where an expression is lowered.
pub struct Scope<'a> {
    /// Row tiles declared so far.
    pub tiles: &'a [String],
    /// Row scalars defined so far.
    pub scalars: &'a [String],
    /// f32 arguments of the launch ABI.
    pub args: &'a [&'static str],
    /// Per element: the f32 value at (c, j) of each global read (`At`, `Col`, `Gather`) the caller
    /// loaded. Empty per row.
    pub operands: &'a [(RowExpr, String)],
    /// Whether the expression is evaluated per element (tiles and operands allowed).
    pub per_element: bool,
}

/// C name of a row tile.
pub fn tile_var(name: &str) -> String {
    format!("t_{name}")
}

/// C name of a row scalar.
pub fn scalar_var(name: &str) -> String {
    format!("r_{name}")
}

/// Whether `name` can be spliced into C as (part of) an identifier.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A C float literal that reads back as exactly `v`.
pub fn literal(v: f32, d: &dyn Dialect) -> Result<String, CodegenError> {
    if v.is_nan() {
        return Err(CodegenError::Unsupported(
            "NaN literal in a row expression".into(),
        ));
    }
    if v.is_infinite() {
        let inf = d.infinity();
        return Ok(if v < 0.0 {
            format!("(-{inf})")
        } else {
            inf.to_string()
        });
    }
    // `{:e}` is the shortest representation that round-trips (`1e-5`, `2e0`): valid C with `f`.
    let s = format!("{v:e}f");
    Ok(if v < 0.0 { format!("({s})") } else { s })
}

/// Lower `e` in `scope`.
pub fn lower(e: &RowExpr, d: &dyn Dialect, scope: &Scope<'_>) -> Result<String, CodegenError> {
    let bad = |m: String| Err(CodegenError::Malformed(m));
    Ok(match e {
        RowExpr::Tile(n) => {
            if !scope.per_element {
                return bad(format!("row tile `{n}` read in a row scalar"));
            }
            if !scope.tiles.contains(n) {
                return bad(format!("unknown row tile `{n}`"));
            }
            format!("{}[c][j]", tile_var(n))
        }
        RowExpr::Row(n) => {
            if !scope.scalars.contains(n) {
                return bad(format!("row scalar `{n}` used before it is defined"));
            }
            scalar_var(n)
        }
        RowExpr::At(o) | RowExpr::Col(o) | RowExpr::Gather { table: o, .. } => {
            match scope.operands.iter().find(|(r, _)| r == e) {
                Some((_, v)) => v.clone(),
                None if !scope.per_element => {
                    return bad(format!("operand `{}` read in a row scalar", o.name()))
                }
                None => return bad(format!("operand `{}` was not loaded", o.name())),
            }
        }
        RowExpr::Arg(n) => {
            if !scope.args.contains(&n.as_str()) {
                return bad(format!("`{n}` is not an f32 argument of the launch ABI"));
            }
            n.clone()
        }
        RowExpr::Extent => "(float)cols".to_string(),
        RowExpr::Lit(v) => literal(*v, d)?,
        RowExpr::Bin(op, a, b) => {
            let (a, b) = (lower(a, d, scope)?, lower(b, d, scope)?);
            match op {
                BinOp::Add => format!("({a} + {b})"),
                BinOp::Sub => format!("({a} - {b})"),
                BinOp::Mul => format!("({a} * {b})"),
                BinOp::Div => d.fast_div(&a, &b),
                BinOp::Max => format!("fmaxf({a}, {b})"),
            }
        }
        RowExpr::Call(f, a) => {
            let a = lower(a, d, scope)?;
            let f = match f {
                RowFn::Exp => MathFn::Exp,
                RowFn::Rsqrt => MathFn::Rsqrt,
                RowFn::Sqrt => MathFn::Sqrt,
            };
            format!("{}({a})", d.math(f))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cuda::Cuda;
    use tessera_dsl::ir::Operand;
    use tessera_dsl::Target;

    fn scope<'a>(
        tiles: &'a [String],
        scalars: &'a [String],
        operands: &'a [(RowExpr, String)],
        per_element: bool,
    ) -> Scope<'a> {
        Scope {
            tiles,
            scalars,
            args: &["eps"],
            operands,
            per_element,
        }
    }

    #[test]
    fn lowers_a_layernorm_scale() {
        let d = Cuda {
            target: Target::Sm80,
        };
        let (tiles, scalars) = (vec!["h".to_string()], vec!["rstd".to_string()]);
        let ops = vec![(RowExpr::Col(Operand::Gamma), "g(c, j)".to_string())];
        let e = RowExpr::bin(
            BinOp::Mul,
            RowExpr::bin(
                BinOp::Mul,
                RowExpr::Tile("h".into()),
                RowExpr::Row("rstd".into()),
            ),
            RowExpr::Col(Operand::Gamma),
        );
        let s = lower(&e, &d, &scope(&tiles, &scalars, &ops, true)).expect("lowers");
        assert_eq!(s, "((t_h[c][j] * r_rstd) * g(c, j))");
        let r = RowExpr::Call(
            RowFn::Rsqrt,
            Box::new(RowExpr::bin(
                BinOp::Add,
                RowExpr::bin(BinOp::Div, RowExpr::Row("rstd".into()), RowExpr::Extent),
                RowExpr::Arg("eps".into()),
            )),
        );
        let s = lower(&r, &d, &scope(&tiles, &scalars, &[], false)).expect("row");
        assert_eq!(s, "rsqrtf((__fdividef(r_rstd, (float)cols) + eps))");
    }

    #[test]
    fn rejects_elements_in_row_scalars_and_unknown_names() {
        let d = Cuda {
            target: Target::Sm80,
        };
        let (tiles, none) = (vec!["h".to_string()], Vec::new());
        let row = scope(&tiles, &[], &none, false);
        assert!(lower(&RowExpr::Tile("h".into()), &d, &row).is_err());
        assert!(lower(&RowExpr::At(Operand::Residual), &d, &row).is_err());
        assert!(lower(&RowExpr::Row("mean".into()), &d, &row).is_err());
        assert!(lower(&RowExpr::Arg("scale".into()), &d, &row).is_err());
        let el = scope(&tiles, &[], &none, true);
        assert!(lower(&RowExpr::Tile("s".into()), &d, &el).is_err());
    }

    #[test]
    fn literals_round_trip() {
        let d = Cuda {
            target: Target::Sm80,
        };
        for v in [1e-5f32, 2.0, 0.1, -3.5, 65504.0, f32::MIN_POSITIVE] {
            let s = literal(v, &d).expect("finite");
            let t = s.trim_start_matches('(').trim_end_matches(')');
            let back: f32 = t.trim_end_matches('f').parse().expect("parses");
            assert_eq!(back, v, "{s}");
        }
        assert_eq!(
            literal(f32::NEG_INFINITY, &d).expect("inf"),
            "(-__int_as_float(0x7f800000))"
        );
        assert!(literal(f32::NAN, &d).is_err());
        assert!(is_identifier("h_2") && !is_identifier("2h") && !is_identifier("a-b"));
    }
}
