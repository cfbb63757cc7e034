//! The `kernel!` block: tile-op statements and their grammar.
//!
//! A [`Statement`] is generic over its size expressions: `syn::Expr` as parsed, and
//! `crate::expr::Node` once validation has resolved them against the parameters.

use crate::diagnostics::did_you_mean;
use proc_macro2::{Punct, Spacing, TokenStream};
use quote::{quote, ToTokens};
use syn::ext::IdentExt;
use syn::parse::ParseStream;
use syn::{braced, bracketed, token, Expr, Ident, Token};

/// The words a statement may start with.
pub const TILE_OPS: &[&str] = &["shared", "fragment", "mainloop", "load", "mma", "epilogue"];

fn grammar(word: &str) -> &'static str {
    match word {
        "shared" => "`shared NAME: OPERAND[ROWS, COLS] x STAGES;`, e.g. `shared sa: a[tile_m, tile_k] x stages;`",
        "fragment" => "`fragment NAME: acc[ROWS, COLS] warps [WM, WN];`, e.g. `fragment acc: acc[tile_m, tile_n] warps [warps_m, warps_n];`",
        "mainloop" => "`mainloop k step STEP stages STAGES { ... }`, e.g. `mainloop k step tile_k stages stages { load a -> sa; ... }`",
        "load" => "`load OPERAND -> SHARED;`, e.g. `load a -> sa;`",
        "mma" => "`mma ACC += A * B;`, e.g. `mma acc += sa * sb;`",
        _ => "`epilogue ACC -> OPERAND;`, e.g. `epilogue acc -> d;`",
    }
}

#[derive(Debug, Clone)]
pub enum TileOp<E> {
    Shared {
        name: Ident,
        operand: Ident,
        rows: E,
        cols: E,
        /// `x STAGES`; one stage when left out.
        stages: Option<E>,
    },
    Fragment {
        name: Ident,
        rows: E,
        cols: E,
        warps_m: E,
        warps_n: E,
    },
    Mainloop {
        step: E,
        stages: E,
        body: Vec<Statement<E>>,
    },
    Load {
        operand: Ident,
        shared: Ident,
    },
    Mma {
        acc: Ident,
        a: Ident,
        b: Ident,
    },
    Epilogue {
        acc: Ident,
        operand: Ident,
    },
}

#[derive(Debug, Clone)]
pub struct Statement<E> {
    /// The tile-op word.
    pub word: Ident,
    /// From the word to the closing `;` or `}`: where statement-level errors point.
    pub at: TokenStream,
    pub op: TileOp<E>,
}

/// Parse statements until the stream ends.
pub fn parse_statements(input: ParseStream) -> syn::Result<Vec<Statement<Expr>>> {
    let mut out = Vec::new();
    while !input.is_empty() {
        out.push(parse_statement(input)?);
    }
    Ok(out)
}

fn parse_statement(input: ParseStream) -> syn::Result<Statement<Expr>> {
    if !input.peek(Ident::peek_any) {
        return Err(input.error(format!(
            "expected a tile op; tile ops are: {}",
            TILE_OPS.join(", ")
        )));
    }
    let word = input.call(Ident::parse_any)?;
    let name = word.to_string();
    if !TILE_OPS.contains(&name.as_str()) {
        return Err(syn::Error::new_spanned(
            &word,
            format!(
                "unknown tile op `{name}`; {}tile ops are: {}",
                did_you_mean(&name, TILE_OPS.iter().copied()),
                TILE_OPS.join(", ")
            ),
        ));
    }
    let (op, end) = parse_op(&name, input).map_err(|failure| match failure {
        Failure::Grammar(e) => syn::Error::new(e.span(), format!("{e}; write {}", grammar(&name))),
        Failure::Nested(e) => e,
    })?;
    let at = quote!(#word #end);
    Ok(Statement { word, at, op })
}

/// Parse `word` (an identifier with exactly this text).
fn keyword(input: ParseStream, word: &str) -> syn::Result<Ident> {
    let got: Option<Ident> = input.fork().call(Ident::parse_any).ok();
    match got {
        Some(i) if i == word => input.call(Ident::parse_any),
        _ => Err(input.error(format!("expected `{word}`"))),
    }
}

/// `[E, E]`
fn pair(input: ParseStream) -> syn::Result<(Expr, Expr)> {
    let content;
    bracketed!(content in input);
    let first: Expr = content.parse()?;
    content.parse::<Token![,]>()?;
    let second: Expr = content.parse()?;
    if !content.is_empty() {
        return Err(content.error("expected `]`: a tile has exactly two dimensions"));
    }
    Ok((first, second))
}

/// `{ ... }`: the braces (a grammar error if missing) and the nested statements.
fn mainloop_body(
    input: ParseStream,
) -> syn::Result<(token::Brace, syn::Result<Vec<Statement<Expr>>>)> {
    let content;
    let brace = braced!(content in input);
    Ok((brace, parse_statements(&content)))
}

/// Why a statement did not parse: its own grammar (the fix is its syntax), or a statement
/// nested in its body (which carries its own fix).
enum Failure {
    Grammar(syn::Error),
    Nested(syn::Error),
}

impl From<syn::Error> for Failure {
    fn from(e: syn::Error) -> Self {
        Failure::Grammar(e)
    }
}

fn parse_op(word: &str, input: ParseStream) -> Result<(TileOp<Expr>, TokenStream), Failure> {
    let semi = |input: ParseStream| -> syn::Result<TokenStream> {
        Ok(input.parse::<Token![;]>()?.to_token_stream())
    };
    Ok(match word {
        "shared" => {
            let name: Ident = input.parse()?;
            input.parse::<Token![:]>()?;
            let operand = input.call(Ident::parse_any)?;
            let (rows, cols) = pair(input)?;
            let stages = if input.peek(Token![;]) {
                None
            } else {
                keyword(input, "x")?;
                Some(input.parse::<Expr>()?)
            };
            let end = semi(input)?;
            (
                TileOp::Shared {
                    name,
                    operand,
                    rows,
                    cols,
                    stages,
                },
                end,
            )
        }
        "fragment" => {
            let name: Ident = input.parse()?;
            input.parse::<Token![:]>()?;
            let role = input.call(Ident::parse_any)?;
            if role != "acc" {
                return Err(Failure::Grammar(syn::Error::new_spanned(
                    &role,
                    format!(
                        "unknown fragment role `{role}`: fragments hold the accumulator, `acc`"
                    ),
                )));
            }
            let (rows, cols) = pair(input)?;
            keyword(input, "warps")?;
            let (warps_m, warps_n) = pair(input)?;
            let end = semi(input)?;
            (
                TileOp::Fragment {
                    name,
                    rows,
                    cols,
                    warps_m,
                    warps_n,
                },
                end,
            )
        }
        "mainloop" => {
            let var = input.call(Ident::parse_any)?;
            if var != "k" {
                return Err(Failure::Grammar(syn::Error::new_spanned(
                    &var,
                    format!("mainloops run over the reduction dimension `k`, not `{var}`"),
                )));
            }
            keyword(input, "step")?;
            let step = Expr::parse_without_eager_brace(input)?;
            keyword(input, "stages")?;
            let stages = Expr::parse_without_eager_brace(input)?;
            let (brace, body) = mainloop_body(input)?;
            let body = body.map_err(Failure::Nested)?;
            let mut close = Punct::new(';', Spacing::Alone);
            close.set_span(brace.span.close());
            (
                TileOp::Mainloop { step, stages, body },
                close.into_token_stream(),
            )
        }
        "load" => {
            let operand = input.call(Ident::parse_any)?;
            input.parse::<Token![->]>()?;
            let shared: Ident = input.parse()?;
            let end = semi(input)?;
            (TileOp::Load { operand, shared }, end)
        }
        "mma" => {
            let acc: Ident = input.parse()?;
            input.parse::<Token![+=]>()?;
            let a: Ident = input.parse()?;
            input.parse::<Token![*]>()?;
            let b: Ident = input.parse()?;
            let end = semi(input)?;
            (TileOp::Mma { acc, a, b }, end)
        }
        _ => {
            let acc: Ident = input.parse()?;
            input.parse::<Token![->]>()?;
            let operand = input.call(Ident::parse_any)?;
            let end = semi(input)?;
            (TileOp::Epilogue { acc, operand }, end)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse::Parser;

    fn parse(src: &str) -> syn::Result<Vec<Statement<Expr>>> {
        parse_statements.parse_str(src)
    }

    #[test]
    fn parses_the_gemm_body() {
        let body = parse(
            "shared sa: a[tile_m, tile_k] x stages;
             shared sb: b[tile_k, tile_n] x stages;
             fragment acc: acc[tile_m, tile_n] warps [warps_m, warps_n];
             mainloop k step tile_k stages stages { load a -> sa; load b -> sb; mma acc += sa * sb; }
             epilogue acc -> d;",
        )
        .unwrap();
        assert_eq!(body.len(), 5);
        match &body[3].op {
            TileOp::Mainloop { body, .. } => assert_eq!(body.len(), 3),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_carry_the_grammar() {
        let e = parse("mmaa acc += sa * sb;").unwrap_err().to_string();
        assert!(
            e.starts_with("unknown tile op `mmaa`; did you mean `mma`?"),
            "{e}"
        );
        let e = parse("mainloop k step 16 stages 2 { mmaa acc += sa * sb; }")
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("tile ops are: shared, fragment, mainloop, load, mma, epilogue"),
            "{e}"
        );
        let e = parse("shared sa: a[tile_m] x 2;").unwrap_err().to_string();
        assert!(
            e.contains("write `shared NAME: OPERAND[ROWS, COLS] x STAGES;`"),
            "{e}"
        );
        let e = parse("load a sa;").unwrap_err().to_string();
        assert!(e.contains("expected `->`"), "{e}");
    }
}
