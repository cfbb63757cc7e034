//! Row expressions: the f32 math of row-wise kernels (`h * rstd * gamma + beta`,
//! `rsqrt(squares / cols + eps)`, `exp(s - top)`).
//!
//! The grammar is `+ - * /`, unary `-`, parentheses, float and integer literals, names, the
//! calls `exp(e)`, `rsqrt(e)`, `sqrt(e)` and `max(a, b)`, and gathers `TABLE[IDS]` /
//! `TABLE[row % SIZE]` (a row of a table operand picked per kernel row by an id operand, or by
//! the row index modulo an i32 size argument). [`parse`] turns a `syn::Expr`
//! into a [`RowTree`] while parsing `kernel!` (rejecting anything else, spanned);
//! validation resolves its names; [`RowTree::tokens`] writes the `::tessera_dsl::ir::RowExpr`
//! that the expansion hands to the `KernelBuilder`.

use crate::diagnostics::did_you_mean;
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{BinOp, Expr, Ident, Lit, UnOp};

/// The functions a row expression may call, with their arity.
pub const FUNCTIONS: &[(&str, usize)] = &[("exp", 1), ("rsqrt", 1), ("sqrt", 1), ("max", 2)];

/// The reductions `reduce NAME = F(EXPR);` may apply.
pub const REDUCTIONS: &[&str] = &["sum", "max"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bin {
    Add,
    Sub,
    Mul,
    Div,
    Max,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Exp,
    Rsqrt,
    Sqrt,
}

/// Which row a gather reads.
#[derive(Debug, Clone)]
pub enum IndexTree {
    /// `TABLE[IDS]`: `IDS[row]`.
    Ids(Ident),
    /// `TABLE[row % SIZE]`.
    RowMod(Ident),
}

/// A gather `TABLE[INDEX]`.
#[derive(Debug, Clone)]
pub struct Gather {
    pub table: Ident,
    pub index: IndexTree,
}

impl Gather {
    /// `__k.gather_ids(..)?` or `__k.gather_row_mod(..)?`: the `RowExpr` it reads.
    pub fn tokens(&self) -> TokenStream {
        let table = self.table.to_string();
        match &self.index {
            IndexTree::Ids(ids) => {
                let ids = ids.to_string();
                quote_spanned!(self.table.span()=> __k.gather_ids(#table, #ids)?)
            }
            IndexTree::RowMod(size) => {
                let size = size.to_string();
                quote_spanned!(self.table.span()=> __k.gather_row_mod(#table, #size)?)
            }
        }
    }
}

const GATHER_GRAMMAR: &str =
    "a gather is `TABLE[IDS]` (IDS an id operand) or `TABLE[row % SIZE]` (SIZE an i32 size)";

/// Parse the index of a gather: `IDS` or `row % SIZE`.
pub fn parse_index(e: &Expr) -> syn::Result<IndexTree> {
    let ident = |e: &Expr| match e {
        Expr::Path(p) if p.qself.is_none() => p.path.get_ident().cloned(),
        _ => None,
    };
    match e {
        Expr::Paren(p) => parse_index(&p.expr),
        Expr::Group(g) => parse_index(&g.expr),
        _ if ident(e).is_some() => Ok(IndexTree::Ids(ident(e).expect("checked"))),
        Expr::Binary(b) if matches!(b.op, BinOp::Rem(_)) => {
            match (ident(&b.left), ident(&b.right)) {
                (Some(row), Some(size)) if row == "row" => Ok(IndexTree::RowMod(size)),
                _ => Err(syn::Error::new_spanned(
                    e,
                    format!("a gather index modulo a size is `row % SIZE`; {GATHER_GRAMMAR}"),
                )),
            }
        }
        _ => Err(syn::Error::new_spanned(
            e,
            format!("this index is not allowed; {GATHER_GRAMMAR}"),
        )),
    }
}

/// A parsed row expression; names are resolved by validation.
#[derive(Debug, Clone)]
pub enum RowTree {
    Name(Ident),
    Gather(Gather),
    Lit(f32, TokenStream),
    Bin(Bin, Box<RowTree>, Box<RowTree>),
    Call(Func, Box<RowTree>),
}

/// Which reduction a `reduce` applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduce {
    Sum,
    Max,
}

const GRAMMAR: &str = "`+ - * /`, parentheses, numbers, names and the calls exp(e), rsqrt(e), \
                       sqrt(e), max(a, b)";

fn number(lit: &Lit) -> Option<syn::Result<f32>> {
    match lit {
        Lit::Float(f) => Some(f.base10_parse::<f32>()),
        Lit::Int(i) => Some(i.base10_parse::<f32>()),
        _ => None,
    }
}

/// The callee's name, if `e` calls a plain identifier.
fn callee(call: &syn::ExprCall) -> Option<&Ident> {
    match &*call.func {
        Expr::Path(p) if p.qself.is_none() => p.path.get_ident(),
        _ => None,
    }
}

/// Parse a row expression.
pub fn parse(e: &Expr) -> syn::Result<RowTree> {
    match e {
        Expr::Paren(p) => parse(&p.expr),
        Expr::Group(g) => parse(&g.expr),
        Expr::Lit(l) => match number(&l.lit) {
            Some(v) => Ok(RowTree::Lit(v?, l.to_token_stream())),
            None => Err(syn::Error::new_spanned(
                l,
                format!(
                    "`{}` is not a number; row expressions use {GRAMMAR}",
                    l.to_token_stream()
                ),
            )),
        },
        Expr::Path(p) if p.qself.is_none() && p.path.get_ident().is_some() => {
            Ok(RowTree::Name(p.path.get_ident().cloned().expect("checked")))
        }
        Expr::Index(ix) => {
            let table = match &*ix.expr {
                Expr::Path(p) if p.qself.is_none() => p.path.get_ident().cloned(),
                _ => None,
            };
            let Some(table) = table else {
                return Err(syn::Error::new_spanned(
                    &ix.expr,
                    format!("only a table operand is indexed; {GATHER_GRAMMAR}"),
                ));
            };
            Ok(RowTree::Gather(Gather {
                table,
                index: parse_index(&ix.index)?,
            }))
        }
        Expr::Unary(u) if matches!(u.op, UnOp::Neg(_)) => match parse(&u.expr)? {
            RowTree::Lit(v, _) => Ok(RowTree::Lit(-v, e.to_token_stream())),
            x => Ok(RowTree::Bin(
                Bin::Sub,
                Box::new(RowTree::Lit(0.0, e.to_token_stream())),
                Box::new(x),
            )),
        },
        Expr::Binary(b) => {
            let op = match b.op {
                BinOp::Add(_) => Bin::Add,
                BinOp::Sub(_) => Bin::Sub,
                BinOp::Mul(_) => Bin::Mul,
                BinOp::Div(_) => Bin::Div,
                _ => {
                    return Err(syn::Error::new_spanned(
                        b.op,
                        format!(
                            "operator `{}` is not supported in a row expression; use {GRAMMAR}",
                            b.op.to_token_stream()
                        ),
                    ))
                }
            };
            Ok(RowTree::Bin(
                op,
                Box::new(parse(&b.left)?),
                Box::new(parse(&b.right)?),
            ))
        }
        Expr::Call(call) => {
            let Some(f) = callee(call) else {
                return Err(syn::Error::new_spanned(
                    &call.func,
                    format!(
                        "call a row function by name; row functions are: {}",
                        names()
                    ),
                ));
            };
            let name = f.to_string();
            let Some(&(_, arity)) = FUNCTIONS.iter().find(|(n, _)| *n == name) else {
                let hint = if REDUCTIONS.contains(&name.as_str()) {
                    format!(
                        "`{name}` reduces a whole row: write `reduce NAME = {name}(...);` as its own \
                         statement and use NAME here; "
                    )
                } else {
                    did_you_mean(&name, FUNCTIONS.iter().map(|(n, _)| *n))
                };
                return Err(syn::Error::new_spanned(
                    f,
                    format!(
                        "unknown row function `{name}`; {hint}row functions are: {}",
                        names()
                    ),
                ));
            };
            if call.args.len() != arity {
                let want = if arity == 1 {
                    "one argument"
                } else {
                    "two arguments"
                };
                return Err(syn::Error::new_spanned(
                    call,
                    format!("`{name}` takes {want}, but {} are given", call.args.len()),
                ));
            }
            let mut args = call.args.iter().map(parse);
            let first = args.next().expect("arity >= 1")?;
            Ok(match name.as_str() {
                "max" => RowTree::Bin(
                    Bin::Max,
                    Box::new(first),
                    Box::new(args.next().expect("arity 2")?),
                ),
                "exp" => RowTree::Call(Func::Exp, Box::new(first)),
                "rsqrt" => RowTree::Call(Func::Rsqrt, Box::new(first)),
                _ => RowTree::Call(Func::Sqrt, Box::new(first)),
            })
        }
        _ => Err(syn::Error::new_spanned(
            e,
            format!("this expression form is not allowed in a row expression; use {GRAMMAR}"),
        )),
    }
}

fn names() -> String {
    FUNCTIONS
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parse the right-hand side of `reduce NAME = F(EXPR);`.
pub fn parse_reduction(e: &Expr) -> syn::Result<(Reduce, RowTree)> {
    let fix = "write `reduce NAME = sum(EXPR);` or `reduce NAME = max(EXPR);`";
    let Expr::Call(call) = e else {
        return Err(syn::Error::new_spanned(
            e,
            format!("`reduce` applies a reduction to a row; {fix}"),
        ));
    };
    let Some(f) = callee(call) else {
        return Err(syn::Error::new_spanned(&call.func, fix));
    };
    let name = f.to_string();
    let op = match name.as_str() {
        "sum" => Reduce::Sum,
        "max" => Reduce::Max,
        _ => {
            let extra = match name.as_str() {
                "mean" | "avg" | "average" => {
                    "; for a mean, write `reduce total = sum(h);` then `let mean = total / cols;`"
                }
                _ => "",
            };
            return Err(syn::Error::new_spanned(
                f,
                format!(
                    "`reduce` takes sum or max, not `{name}`; {}{fix}{extra}",
                    did_you_mean(&name, REDUCTIONS.iter().copied())
                ),
            ));
        }
    };
    if call.args.len() != 1 {
        return Err(syn::Error::new_spanned(
            call,
            format!("`{name}` reduces one row expression; {fix}"),
        ));
    }
    Ok((op, parse(&call.args[0])?))
}

impl RowTree {
    /// Every name the expression reads, in order.
    pub fn names<'a>(&'a self, out: &mut Vec<&'a Ident>) {
        match self {
            RowTree::Name(i) => out.push(i),
            RowTree::Lit(..) | RowTree::Gather(_) => {}
            RowTree::Bin(_, a, b) => {
                a.names(out);
                b.names(out);
            }
            RowTree::Call(_, a) => a.names(out),
        }
    }

    /// Every gather the expression reads, in order.
    pub fn gathers<'a>(&'a self, out: &mut Vec<&'a Gather>) {
        match self {
            RowTree::Gather(g) => out.push(g),
            RowTree::Name(_) | RowTree::Lit(..) => {}
            RowTree::Bin(_, a, b) => {
                a.gathers(out);
                b.gathers(out);
            }
            RowTree::Call(_, a) => a.gathers(out),
        }
    }

    /// The `::tessera_dsl::ir::RowExpr` this computes, built with `__k.name_expr(..)?` for
    /// names and `__k.gather_ids(..)?` / `__k.gather_row_mod(..)?` for gathers.
    pub fn tokens(&self) -> TokenStream {
        let ir = quote!(::tessera_dsl::ir);
        match self {
            RowTree::Name(i) => {
                let n = i.to_string();
                quote_spanned!(i.span()=> __k.name_expr(#n)?)
            }
            RowTree::Gather(g) => g.tokens(),
            RowTree::Lit(v, source) => {
                let abs = proc_macro2::Literal::f32_suffixed(v.abs());
                let sign = if *v < 0.0 { quote!(-) } else { quote!() };
                quote_spanned!(source.span()=> #ir::RowExpr::Lit(#sign #abs))
            }
            RowTree::Bin(op, a, b) => {
                let op = match op {
                    Bin::Add => quote!(Add),
                    Bin::Sub => quote!(Sub),
                    Bin::Mul => quote!(Mul),
                    Bin::Div => quote!(Div),
                    Bin::Max => quote!(Max),
                };
                let (a, b) = (a.tokens(), b.tokens());
                quote!(#ir::RowExpr::bin(#ir::BinOp::#op, #a, #b))
            }
            RowTree::Call(f, a) => {
                let f = match f {
                    Func::Exp => quote!(Exp),
                    Func::Rsqrt => quote!(Rsqrt),
                    Func::Sqrt => quote!(Sqrt),
                };
                let a = a.tokens();
                quote!(#ir::RowExpr::Call(#ir::RowFn::#f, ::std::boxed::Box::new(#a)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(src: &str) -> syn::Result<RowTree> {
        parse(&syn::parse_str(src).unwrap())
    }

    #[test]
    fn parses_the_layernorm_math() {
        let t = row("rsqrt(squares / cols + eps)").unwrap();
        let mut names = Vec::new();
        t.names(&mut names);
        assert_eq!(names, ["squares", "cols", "eps"]);
        let out = row("h * rstd * gamma + beta").unwrap().tokens().to_string();
        assert!(
            out.starts_with(
                ":: tessera_dsl :: ir :: RowExpr :: bin (:: tessera_dsl :: ir :: BinOp :: Add"
            ),
            "{out}"
        );
        assert!(out.contains("__k . name_expr (\"gamma\") ?"), "{out}");
        let out = row("max(s, -1.5) / 2").unwrap().tokens().to_string();
        assert!(out.contains("BinOp :: Max"), "{out}");
        assert!(out.contains("RowExpr :: Lit (- 1.5f32)"), "{out}");
        assert!(out.contains("RowExpr :: Lit (2f32)"), "{out}");
    }

    #[test]
    fn parses_gathers() {
        let t = row("word[input_ids] + position[row % seq] + h").unwrap();
        let mut names = Vec::new();
        t.names(&mut names);
        assert_eq!(names, ["h"]);
        let mut g = Vec::new();
        t.gathers(&mut g);
        assert_eq!(g.len(), 2);
        assert!(matches!(&g[1].index, IndexTree::RowMod(s) if s == "seq"));
        let out = t.tokens().to_string();
        assert!(
            out.contains("__k . gather_ids (\"word\" , \"input_ids\") ?"),
            "{out}"
        );
        assert!(
            out.contains("__k . gather_row_mod (\"position\" , \"seq\") ?"),
            "{out}"
        );
    }

    #[test]
    fn rejects_other_forms_with_a_fix() {
        for (src, needle) in [
            ("exq(h)", "unknown row function `exq`; did you mean `exp`?"),
            ("sum(h) / cols", "`sum` reduces a whole row"),
            ("h % 2", "operator `%` is not supported"),
            ("max(h)", "`max` takes two arguments, but 1 are given"),
            ("h[0]", "this index is not allowed"),
            ("word[ids + 1]", "this index is not allowed"),
            (
                "position[t % seq]",
                "a gather index modulo a size is `row % SIZE`",
            ),
            ("f(x)[ids]", "only a table operand is indexed"),
            ("\"a\" + h", "is not a number"),
        ] {
            let e = row(src).unwrap_err().to_string();
            assert!(e.contains(needle), "{src}: {e}");
        }
        let r = |s: &str| parse_reduction(&syn::parse_str(s).unwrap());
        assert_eq!(r("sum(h * h)").unwrap().0, Reduce::Sum);
        assert_eq!(r("max(s)").unwrap().0, Reduce::Max);
        let e = r("mean(h)").unwrap_err().to_string();
        assert!(
            e.contains("not `mean`") && e.contains("let mean = total / cols"),
            "{e}"
        );
        let e = r("h + 1").unwrap_err().to_string();
        assert!(e.contains("`reduce` applies a reduction"), "{e}");
    }
}
