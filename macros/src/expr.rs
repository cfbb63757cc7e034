//! Expressions over parameters: integer sizes (`tile_m / warps_m`) and boolean constraints
//! (`tile_m % (warps_m * 16) == 0 && stages >= 2`).
//!
//! The grammar is integer literals, parameters, `+ - * / %`, unary `-`, parentheses,
//! comparisons `== != < <= > >=` and `&& || !`. [`resolve`] turns a `syn::Expr` into a typed
//! [`Node`] (rejecting anything else, spanned), [`Node::eval`] evaluates it in i64 for one
//! point of the space at compile time, and [`Node::tokens`] writes it back as Rust that
//! computes the same thing at run time.

use crate::diagnostics::list;
use proc_macro2::{Literal, TokenStream};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{BinOp, Expr, Ident, Lit, UnOp};

/// What an expression computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

impl Op {
    fn from_syn(op: &BinOp) -> Option<Op> {
        Some(match op {
            BinOp::Add(_) => Op::Add,
            BinOp::Sub(_) => Op::Sub,
            BinOp::Mul(_) => Op::Mul,
            BinOp::Div(_) => Op::Div,
            BinOp::Rem(_) => Op::Rem,
            BinOp::Eq(_) => Op::Eq,
            BinOp::Ne(_) => Op::Ne,
            BinOp::Lt(_) => Op::Lt,
            BinOp::Le(_) => Op::Le,
            BinOp::Gt(_) => Op::Gt,
            BinOp::Ge(_) => Op::Ge,
            BinOp::And(_) => Op::And,
            BinOp::Or(_) => Op::Or,
            _ => return None,
        })
    }

    fn symbol(self) -> &'static str {
        match self {
            Op::Add => "+",
            Op::Sub => "-",
            Op::Mul => "*",
            Op::Div => "/",
            Op::Rem => "%",
            Op::Eq => "==",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::And => "&&",
            Op::Or => "||",
        }
    }

    /// (operand kind, result kind).
    fn signature(self) -> (Kind, Kind) {
        match self {
            Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Rem => (Kind::Int, Kind::Int),
            Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge => (Kind::Int, Kind::Bool),
            Op::And | Op::Or => (Kind::Bool, Kind::Bool),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Tree {
    Lit(i64),
    /// Index into the parameter list.
    Param(usize),
    /// A problem size (`head_dim`): read from the config's variant at run time; its largest
    /// value at compile time.
    Extent(&'static crate::op::Extent),
    Neg(Box<Node>),
    Not(Box<Node>),
    Binary(Op, Box<Node>, Box<Node>),
}

/// A typed expression, with the tokens the author wrote (for spans and messages).
#[derive(Debug, Clone)]
pub struct Node {
    pub tree: Tree,
    pub kind: Kind,
    pub source: TokenStream,
}

/// Why an expression could not be evaluated at one point.
#[derive(Debug)]
pub struct Fault {
    /// The sub-expression that failed.
    pub source: TokenStream,
    pub message: String,
    /// A constraint that would exclude the failing points, e.g. `warps_m != 0`.
    pub guard: Option<String>,
}

/// Where an expression appears, for messages.
#[derive(Debug, Clone, Copy)]
pub enum Context {
    Constraint,
    Size,
}

const GRAMMAR: &str = "integer literals, parameters, `+ - * / %`, parentheses, \
                       comparisons `== != < <= > >=` and `&& || !`";

fn unsupported(e: &Expr, context: Context) -> syn::Error {
    let what = match context {
        Context::Constraint => "a constraint",
        Context::Size => "a tile size",
    };
    syn::Error::new_spanned(
        e,
        format!("this expression form is not allowed in {what}; use only {GRAMMAR}"),
    )
}

/// Source text of an expression, parenthesised unless it is a single token.
pub fn text(tokens: &TokenStream) -> String {
    let s = tokens.to_string();
    if tokens.clone().into_iter().count() > 1 {
        format!("({s})")
    } else {
        s
    }
}

fn describe(kind: Kind) -> &'static str {
    match kind {
        Kind::Int => "an integer expression",
        Kind::Bool => "a comparison",
    }
}

/// Type-check `e` against the parameter names and the `want`ed kind.
pub fn resolve(e: &Expr, params: &[Ident], want: Kind, context: Context) -> syn::Result<Node> {
    resolve_in(e, params, &[], want, context)
}

/// [`resolve`], where `e` may also name the op's size `extents` (tile sizes only).
pub fn resolve_in(
    e: &Expr,
    params: &[Ident],
    extents: &'static [crate::op::Extent],
    want: Kind,
    context: Context,
) -> syn::Result<Node> {
    let node = resolve_any(e, &Names { params, extents }, context)?;
    if node.kind != want {
        let msg = match (want, context) {
            (Kind::Bool, _) => format!(
                "a constraint must be true or false, but `{}` is an integer expression; \
                 compare it, e.g. `{} == 0`",
                node.source,
                text(&node.source)
            ),
            (Kind::Int, _) => format!(
                "expected an integer expression here, but `{}` is a comparison; \
                 sizes use only `+ - * / %` over parameters and literals",
                node.source
            ),
        };
        return Err(syn::Error::new_spanned(e, msg));
    }
    Ok(node)
}

/// The names an expression may use.
struct Names<'a> {
    params: &'a [Ident],
    extents: &'static [crate::op::Extent],
}

fn resolve_any(e: &Expr, names: &Names, context: Context) -> syn::Result<Node> {
    let params = names.params;
    let source = e.to_token_stream();
    let node = |tree, kind| Node {
        tree,
        kind,
        source: source.clone(),
    };
    match e {
        Expr::Paren(p) => resolve_any(&p.expr, names, context).map(|n| Node { source, ..n }),
        Expr::Group(g) => resolve_any(&g.expr, names, context),
        Expr::Lit(l) => match &l.lit {
            Lit::Int(i) => {
                if !i.suffix().is_empty() && i.suffix() != "i64" {
                    return Err(syn::Error::new_spanned(
                        i,
                        format!(
                            "drop the suffix `{}`: parameters and literals are i64",
                            i.suffix()
                        ),
                    ));
                }
                Ok(node(Tree::Lit(i.base10_parse::<i64>()?), Kind::Int))
            }
            _ => Err(syn::Error::new_spanned(
                l,
                format!(
                    "`{}` is not an integer; expressions use only {GRAMMAR}",
                    l.to_token_stream()
                ),
            )),
        },
        Expr::Path(p) if p.qself.is_none() && p.path.get_ident().is_some() => {
            let ident = p.path.get_ident().expect("checked above");
            if let Some(x) = names.extents.iter().find(|x| *ident == x.name) {
                return Ok(node(Tree::Extent(x), Kind::Int));
            }
            match params.iter().position(|q| q == ident) {
                Some(i) => Ok(node(Tree::Param(i), Kind::Int)),
                None if !names.extents.is_empty() => {
                    let mut known: Vec<String> = params.iter().map(Ident::to_string).collect();
                    known.extend(names.extents.iter().map(|x| x.name.to_string()));
                    Err(syn::Error::new_spanned(
                        ident,
                        format!(
                            "unknown parameter `{ident}`; sizes may name the parameters and the \
                             op's problem sizes: {}",
                            list(&known)
                        ),
                    ))
                }
                None => Err(syn::Error::new_spanned(
                    ident,
                    if params.is_empty() {
                        format!(
                            "unknown parameter `{ident}`; the template declares no parameters: \
                             add one to `params!`, e.g. `{ident} in [64, 128]`"
                        )
                    } else {
                        let names: Vec<String> = params.iter().map(Ident::to_string).collect();
                        format!(
                            "unknown parameter `{ident}`; parameters are: {}",
                            list(&names)
                        )
                    },
                )),
            }
        }
        Expr::Unary(u) => {
            let inner = resolve_any(&u.expr, names, context)?;
            match u.op {
                UnOp::Neg(_) if inner.kind == Kind::Int => {
                    Ok(node(Tree::Neg(Box::new(inner)), Kind::Int))
                }
                UnOp::Not(_) if inner.kind == Kind::Bool => {
                    Ok(node(Tree::Not(Box::new(inner)), Kind::Bool))
                }
                UnOp::Neg(_) => Err(syn::Error::new_spanned(
                    e,
                    "unary `-` negates an integer, not a comparison; use `!` to negate a comparison",
                )),
                UnOp::Not(_) => Err(syn::Error::new_spanned(
                    e,
                    format!(
                        "`!` negates a comparison, but `{}` is an integer expression; \
                         write `{} == 0` instead",
                        inner.source,
                        text(&inner.source)
                    ),
                )),
                _ => Err(unsupported(e, context)),
            }
        }
        Expr::Binary(b) => {
            let Some(op) = Op::from_syn(&b.op) else {
                return Err(syn::Error::new_spanned(
                    b.op,
                    format!(
                        "operator `{}` is not supported; use only {GRAMMAR}",
                        b.op.to_token_stream()
                    ),
                ));
            };
            let left = resolve_any(&b.left, names, context)?;
            let right = resolve_any(&b.right, names, context)?;
            let (operand, result) = op.signature();
            for side in [&left, &right] {
                if side.kind != operand {
                    let fix = match operand {
                        Kind::Int => "it needs integer operands (comparisons only combine with `&&`, `||` and `!`)",
                        Kind::Bool => "it joins comparisons, e.g. `tile_m >= 64 && stages <= 4`",
                    };
                    return Err(syn::Error::new_spanned(
                        &side.source,
                        format!(
                            "`{}` is {}, which `{}` cannot take: {fix}",
                            side.source,
                            describe(side.kind),
                            op.symbol()
                        ),
                    ));
                }
            }
            Ok(node(
                Tree::Binary(op, Box::new(left), Box::new(right)),
                result,
            ))
        }
        _ => Err(unsupported(e, context)),
    }
}

impl Node {
    /// The parameter this node is, if it is a bare parameter.
    pub fn param(&self) -> Option<usize> {
        match self.tree {
            Tree::Param(i) => Some(i),
            _ => None,
        }
    }

    /// Evaluate at one point (values in parameter order); booleans are 0 / 1. `&&` and `||`
    /// short-circuit, as they do at run time.
    pub fn eval(&self, point: &[i64]) -> Result<i64, Fault> {
        let fault = |message: String| Fault {
            source: self.source.clone(),
            message,
            guard: None,
        };
        match &self.tree {
            Tree::Lit(v) => Ok(*v),
            Tree::Param(i) => Ok(point[*i]),
            Tree::Extent(x) => Ok(x.max),
            Tree::Neg(x) => x
                .eval(point)?
                .checked_neg()
                .ok_or_else(|| fault(format!("`{}` overflows i64", self.source))),
            Tree::Not(x) => Ok(i64::from(x.eval(point)? == 0)),
            Tree::Binary(op, l, r) => {
                let a = l.eval(point)?;
                match op {
                    Op::And if a == 0 => return Ok(0),
                    Op::Or if a != 0 => return Ok(1),
                    _ => {}
                }
                let b = r.eval(point)?;
                if matches!(op, Op::Div | Op::Rem) && b == 0 {
                    return Err(Fault {
                        guard: Some(format!("{} != 0", text(&r.source))),
                        ..fault(format!(
                            "`{}` divides by zero: `{}` is 0",
                            self.source, r.source
                        ))
                    });
                }
                let value = match op {
                    Op::Add => a.checked_add(b),
                    Op::Sub => a.checked_sub(b),
                    Op::Mul => a.checked_mul(b),
                    Op::Div => a.checked_div(b),
                    Op::Rem => a.checked_rem(b),
                    Op::Eq => Some(i64::from(a == b)),
                    Op::Ne => Some(i64::from(a != b)),
                    Op::Lt => Some(i64::from(a < b)),
                    Op::Le => Some(i64::from(a <= b)),
                    Op::Gt => Some(i64::from(a > b)),
                    Op::Ge => Some(i64::from(a >= b)),
                    Op::And | Op::Or => Some(i64::from(b != 0)),
                };
                value.ok_or_else(|| fault(format!("`{}` overflows i64", self.source)))
            }
        }
    }

    /// Rust code computing this expression from `i64` locals named like the parameters.
    pub fn tokens(&self, params: &[Ident]) -> TokenStream {
        let span = self.source.span();
        match &self.tree {
            Tree::Lit(v) => {
                let mut lit = Literal::i64_suffixed(*v);
                lit.set_span(span);
                quote!(#lit)
            }
            Tree::Param(i) => {
                let mut ident = params[*i].clone();
                ident.set_span(span);
                quote!(#ident)
            }
            Tree::Extent(_) => {
                quote_spanned!(span=> ::core::primitive::i64::from(__config.variant.extent))
            }
            Tree::Neg(x) => {
                let x = x.tokens(params);
                quote_spanned!(span=> (-#x))
            }
            Tree::Not(x) => {
                let x = x.tokens(params);
                quote_spanned!(span=> (!#x))
            }
            Tree::Binary(op, l, r) => {
                let (l, r) = (l.tokens(params), r.tokens(params));
                let op: TokenStream = op.symbol().parse().expect("an operator token");
                quote_spanned!(span=> (#l #op #r))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::format_ident;

    fn params() -> Vec<Ident> {
        vec![format_ident!("tile_m"), format_ident!("warps_m")]
    }

    fn eval(src: &str, kind: Kind, point: &[i64]) -> Result<i64, String> {
        let e: Expr = syn::parse_str(src).unwrap();
        let n = resolve(&e, &params(), kind, Context::Constraint).map_err(|e| e.to_string())?;
        n.eval(point).map_err(|f| f.message)
    }

    #[test]
    fn evaluates_like_rust() {
        assert_eq!(
            eval("tile_m % (warps_m * 16) == 0", Kind::Bool, &[128, 2]),
            Ok(1)
        );
        assert_eq!(
            eval("tile_m % (warps_m * 16) == 0", Kind::Bool, &[64, 8]),
            Ok(0)
        );
        assert_eq!(eval("-tile_m / warps_m + 3", Kind::Int, &[64, 8]), Ok(-5));
        assert_eq!(
            eval("!(tile_m < 4) || warps_m > 1", Kind::Bool, &[2, 1]),
            Ok(0)
        );
        assert_eq!(
            eval("warps_m != 0 && tile_m / warps_m > 1", Kind::Bool, &[2, 0]),
            Ok(0)
        );
        assert!(eval("tile_m / warps_m", Kind::Int, &[2, 0])
            .unwrap_err()
            .contains("divides by zero"));
        assert!(eval("tile_m * warps_m", Kind::Int, &[i64::MAX, 2])
            .unwrap_err()
            .contains("overflows"));
    }

    #[test]
    fn rejects_other_forms() {
        for (src, kind, needle) in [
            (
                "tile_q + 1",
                Kind::Int,
                "unknown parameter `tile_q`; parameters are: tile_m, warps_m",
            ),
            ("tile_m << 1", Kind::Int, "operator `<<` is not supported"),
            ("f(tile_m)", Kind::Int, "expression form is not allowed"),
            ("tile_m", Kind::Bool, "must be true or false"),
            ("tile_m > 1", Kind::Int, "is a comparison"),
            ("tile_m && warps_m", Kind::Bool, "cannot take"),
            ("!tile_m", Kind::Bool, "`!` negates a comparison"),
            ("1.5 > tile_m", Kind::Bool, "`1.5` is not an integer"),
            ("tile_m > 1u32", Kind::Bool, "drop the suffix `u32`"),
        ] {
            let e = eval(src, kind, &[1, 1]).unwrap_err();
            assert!(e.contains(needle), "{src}: {e}");
        }
    }

    #[test]
    fn writes_back_fully_parenthesised_i64() {
        let e: Expr = syn::parse_str("tile_m % (warps_m * 16) == 0").unwrap();
        let n = resolve(&e, &params(), Kind::Bool, Context::Constraint).unwrap();
        assert_eq!(
            n.tokens(&params()).to_string(),
            "((tile_m % (warps_m * 16i64)) == 0i64)"
        );
    }
}
