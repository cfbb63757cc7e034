//! The `kernel!` block: tile-op statements and their grammar.
//!
//! A [`Statement`] is generic over its size expressions: `syn::Expr` as parsed, and
//! `crate::expr::Node` once validation has resolved them against the parameters. Row
//! expressions are parsed into [`RowTree`]s here; their names are resolved by validation.

use crate::diagnostics::did_you_mean;
use crate::row_expr::{self, Reduce, RowTree};
use proc_macro2::{Punct, Spacing, TokenStream};
use quote::{quote, ToTokens};
use syn::ext::IdentExt;
use syn::parse::ParseStream;
use syn::{braced, bracketed, token, Expr, Ident, Token};

/// The words a statement may start with (besides `NAME = EXPR;`).
pub const TILE_OPS: &[&str] = &[
    "shared",
    "fragment",
    "mainloop",
    "load",
    "mma",
    "mask",
    "softmax",
    "normalize",
    "epilogue",
    "rows",
    "when",
    "reduce",
    "let",
    "store",
];

fn grammar(word: &str) -> &'static str {
    match word {
        "shared" => "`shared NAME: OPERAND[ROWS, COLS] x STAGES;`, e.g. `shared sa: a[tile_m, tile_k] x stages;`",
        "fragment" => "`fragment NAME: acc[ROWS, COLS] warps [WM, WN];`, e.g. `fragment acc: acc[tile_m, tile_n] warps [warps_m, warps_n];`",
        "mainloop" => "`mainloop VAR step STEP stages STAGES { ... }`, optionally `... stages STAGES schedule SCHEDULE { ... }` (1: a persistent grid) and `... split SPLIT { ... }` (each tile's reduction range split over SPLIT blocks of a cluster) and `... multicast CTAS { ... }` (CTAS blocks of a cluster share each B tile) and `... group GROUP { ... }` (1: a tile's rows span a K/V group's query heads), e.g. `mainloop k step tile_k stages stages { load a -> sa; ... }`",
        "load" => "`load OPERAND -> SHARED;`, e.g. `load a -> sa;`",
        "mma" => "`mma ACC += A * B;` or `mma ACC = A * B^T;`, optionally ending in `atom M` (the MMA atom's rows), e.g. `mma acc += sa * sb;` or `mma acc += sa * sb atom mfma;`",
        "mask" => "`mask FRAGMENT;`, e.g. `mask s;`",
        "softmax" => "`softmax SCORES online ACC;`, e.g. `softmax s online acc;`",
        "normalize" => "`normalize ACC;`, e.g. `normalize acc;`",
        "rows" => "`rows NAME: OPERAND[ROWS] threads THREADS vector VECTOR;` or, from a gathered table, `rows NAME: TABLE[IDS][ROWS] ...;`, e.g. `rows h: x[rows_per_block] threads threads_per_row vector vector;` or `rows h: word[input_ids][rows_per_block] threads threads_per_row vector vector;`",
        "when" => "`when OPERAND { ... }`, e.g. `when bias { h = h + bias; }`",
        "reduce" => "`reduce NAME = sum(EXPR);` or `max(EXPR)`, e.g. `reduce total = sum(h);`",
        "let" => "`let NAME = EXPR;`, e.g. `let mean = total / cols;`",
        "store" => "`store NAME -> OPERAND;`, e.g. `store h -> y;`",
        "=" => "`NAME = EXPR;`, e.g. `h = h * scale;`",
        _ => "`epilogue ACC -> OPERAND;`, optionally `... -> OPERAND bulk BULK;` (1: the output tile leaves by bulk tensor copies where the pipeline has them), e.g. `epilogue acc -> d;` or `epilogue acc -> d bulk tma_store;`",
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
        /// The loop variable (only named, never read).
        var: Ident,
        step: E,
        stages: E,
        /// `schedule S`: 1 asks for a persistent grid (blocks walking tiles), 0 (or no clause)
        /// one tile per block.
        schedule: Option<E>,
        /// `split S`: each tile's reduction range (attention: its keys) split over S cooperating
        /// blocks of a cluster, combined through distributed shared memory; 1 (or no clause)
        /// keeps it whole.
        split: Option<E>,
        /// `multicast C`: C blocks of a cluster, adjacent along M, share each B tile (each
        /// copies 1/C of it for all); 1 (or no clause): every block copies its own.
        multicast: Option<E>,
        /// `group G`: 1 makes a tile's rows the query heads of one K/V head's group (each with
        /// its queries), so grouped-query attention reads each K/V head once per group; 0 (or
        /// no clause) keeps one query head per tile.
        group: Option<E>,
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
        /// `B^T`.
        b_transposed: bool,
        /// `=` (zero the accumulator first) rather than `+=`.
        fresh: bool,
        /// `atom M`: the rows of the MMA atom to use (16, or 32 for AMD's 32x32x8); the
        /// target's default atom when absent.
        atom: Option<E>,
    },
    Epilogue {
        acc: Ident,
        operand: Ident,
        /// `bulk B`: 1 stores the output tile with bulk tensor copies where the target's
        /// pipeline has them; absent or 0, the warps' own stores.
        bulk: Option<E>,
    },
    /// `mask S;`
    Mask {
        frag: Ident,
    },
    /// `softmax S online ACC;`
    Softmax {
        scores: Ident,
        acc: Ident,
    },
    /// `normalize ACC;`
    Normalize {
        acc: Ident,
    },
    /// `rows NAME: OPERAND[ROWS] threads T vector V;`, or `OPERAND[INDEX][ROWS]`: the tile
    /// starts as a gather of a table operand.
    Rows {
        name: Ident,
        operand: Ident,
        index: Option<row_expr::IndexTree>,
        rows: E,
        threads: E,
        vector: E,
    },
    /// `when OPERAND { ... }`
    When {
        operand: Ident,
        body: Vec<Statement<E>>,
    },
    /// `NAME = EXPR;`
    Map {
        name: Ident,
        expr: RowTree,
    },
    /// `reduce NAME = sum(EXPR);`
    Reduce {
        name: Ident,
        op: Reduce,
        expr: RowTree,
    },
    /// `let NAME = EXPR;`
    Let {
        name: Ident,
        expr: RowTree,
    },
    /// `store NAME -> OPERAND;`
    Store {
        name: Ident,
        operand: Ident,
    },
}

impl<E> TileOp<E> {
    /// The nested statements of a block statement (`mainloop`, `when`).
    pub fn body(&self) -> Option<&[Statement<E>]> {
        match self {
            TileOp::Mainloop { body, .. } | TileOp::When { body, .. } => Some(body),
            _ => None,
        }
    }
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
            "expected a tile op; tile ops are: {}, or `NAME = EXPR;`",
            TILE_OPS.join(", ")
        )));
    }
    // `NAME = EXPR;` (not `==`): an update of a row tile.
    let ahead = input.fork();
    ahead.call(Ident::parse_any)?;
    if ahead.peek(Token![=]) && !ahead.peek(Token![==]) && !ahead.peek(Token![=>]) {
        let name: Ident = input.call(Ident::parse_any)?;
        let (op, end) = parse_map(name.clone(), input).map_err(|failure| match failure {
            Failure::Grammar(e) => {
                syn::Error::new(e.span(), format!("{e}; write {}", grammar("=")))
            }
            Failure::Nested(e) => e,
        })?;
        let at = quote!(#name #end);
        return Ok(Statement { word: name, at, op });
    }
    let word = input.call(Ident::parse_any)?;
    let name = word.to_string();
    if !TILE_OPS.contains(&name.as_str()) {
        return Err(syn::Error::new_spanned(
            &word,
            format!(
                "unknown tile op `{name}`; {}tile ops are: {}, or `NAME = EXPR;`",
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

/// A row expression up to the `;`: its syntax errors carry their own fix.
fn row_expression(input: ParseStream) -> Result<RowTree, Failure> {
    let e: Expr = input.parse()?;
    row_expr::parse(&e).map_err(Failure::Nested)
}

fn parse_map(name: Ident, input: ParseStream) -> Result<(TileOp<Expr>, TokenStream), Failure> {
    input.parse::<Token![=]>()?;
    let expr = row_expression(input)?;
    let end = input.parse::<Token![;]>()?.to_token_stream();
    Ok((TileOp::Map { name, expr }, end))
}

/// `B` or `B^T` (the `^` and `T` tokens, if any).
fn maybe_transposed(input: ParseStream) -> syn::Result<bool> {
    if !input.peek(Token![^]) {
        return Ok(false);
    }
    let caret = input.parse::<Token![^]>()?;
    let t: Option<Ident> = input.fork().call(Ident::parse_any).ok();
    match t {
        Some(t) if t == "T" => {
            input.call(Ident::parse_any)?;
            Ok(true)
        }
        Some(t) => Err(syn::Error::new_spanned(
            &t,
            format!("`^{t}` is not an operation; `^T` (transpose) is the only one: write `B^T`"),
        )),
        None => Err(syn::Error::new_spanned(
            caret,
            "`^` must be followed by `T` (transpose): write `B^T`",
        )),
    }
}

/// `{ ... }` with its closing brace as the statement's end token.
fn block(input: ParseStream) -> Result<(Vec<Statement<Expr>>, TokenStream), Failure> {
    let (brace, body) = mainloop_body(input)?;
    let body = body.map_err(Failure::Nested)?;
    let mut close = Punct::new(';', Spacing::Alone);
    close.set_span(brace.span.close());
    Ok((body, close.into_token_stream()))
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

/// `[E]`
fn single(input: ParseStream) -> syn::Result<Expr> {
    let content;
    bracketed!(content in input);
    let rows: Expr = content.parse()?;
    if !content.is_empty() {
        return Err(content.error("expected `]`: give the rows per block only"));
    }
    Ok(rows)
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
            keyword(input, "step")?;
            let step = Expr::parse_without_eager_brace(input)?;
            keyword(input, "stages")?;
            let stages = Expr::parse_without_eager_brace(input)?;
            let schedule = if keyword(input, "schedule").is_ok() {
                Some(Expr::parse_without_eager_brace(input)?)
            } else {
                None
            };
            let split = if keyword(input, "split").is_ok() {
                Some(Expr::parse_without_eager_brace(input)?)
            } else {
                None
            };
            let multicast = if keyword(input, "multicast").is_ok() {
                Some(Expr::parse_without_eager_brace(input)?)
            } else {
                None
            };
            let group = if keyword(input, "group").is_ok() {
                Some(Expr::parse_without_eager_brace(input)?)
            } else {
                None
            };
            let (body, end) = block(input)?;
            (
                TileOp::Mainloop {
                    var,
                    step,
                    stages,
                    schedule,
                    split,
                    multicast,
                    group,
                    body,
                },
                end,
            )
        }
        "when" => {
            let operand = input.call(Ident::parse_any)?;
            let (body, end) = block(input)?;
            (TileOp::When { operand, body }, end)
        }
        "rows" => {
            let name: Ident = input.parse()?;
            input.parse::<Token![:]>()?;
            let operand = input.call(Ident::parse_any)?;
            let first = single(input)?;
            // `TABLE[INDEX][ROWS]`: two brackets, the first the gather's index
            let (index, rows) = if input.peek(token::Bracket) {
                let index = row_expr::parse_index(&first).map_err(Failure::Nested)?;
                (Some(index), single(input)?)
            } else {
                (None, first)
            };
            keyword(input, "threads")?;
            let threads = input.parse::<Expr>()?;
            keyword(input, "vector")?;
            let vector = input.parse::<Expr>()?;
            let end = semi(input)?;
            (
                TileOp::Rows {
                    name,
                    operand,
                    index,
                    rows,
                    threads,
                    vector,
                },
                end,
            )
        }
        "reduce" => {
            let name: Ident = input.parse()?;
            input.parse::<Token![=]>()?;
            let e: Expr = input.parse()?;
            let (op, expr) = row_expr::parse_reduction(&e).map_err(Failure::Nested)?;
            let end = semi(input)?;
            (TileOp::Reduce { name, op, expr }, end)
        }
        "let" => {
            let name: Ident = input.parse()?;
            input.parse::<Token![=]>()?;
            let expr = row_expression(input)?;
            let end = semi(input)?;
            (TileOp::Let { name, expr }, end)
        }
        "store" => {
            let name: Ident = input.parse()?;
            input.parse::<Token![->]>()?;
            let operand = input.call(Ident::parse_any)?;
            let end = semi(input)?;
            (TileOp::Store { name, operand }, end)
        }
        "mask" => {
            let frag: Ident = input.parse()?;
            let end = semi(input)?;
            (TileOp::Mask { frag }, end)
        }
        "softmax" => {
            let scores: Ident = input.parse()?;
            keyword(input, "online")?;
            let acc: Ident = input.parse()?;
            let end = semi(input)?;
            (TileOp::Softmax { scores, acc }, end)
        }
        "normalize" => {
            let acc: Ident = input.parse()?;
            let end = semi(input)?;
            (TileOp::Normalize { acc }, end)
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
            let fresh = if input.peek(Token![+=]) {
                input.parse::<Token![+=]>()?;
                false
            } else if input.peek(Token![=]) {
                input.parse::<Token![=]>()?;
                true
            } else {
                return Err(Failure::Grammar(input.error("expected `+=` or `=`")));
            };
            let a: Ident = input.parse()?;
            if input.peek(Token![^]) {
                return Err(Failure::Nested(syn::Error::new(
                    input.span(),
                    "`mma` transposes only its right operand: write `mma ACC = A * B^T;`",
                )));
            }
            input.parse::<Token![*]>()?;
            let b: Ident = input.parse()?;
            let b_transposed = maybe_transposed(input).map_err(Failure::Nested)?;
            let atom = match input.fork().call(Ident::parse_any) {
                Ok(word) if word == "atom" => {
                    input.call(Ident::parse_any)?;
                    if input.peek(Token![;]) || input.is_empty() {
                        return Err(Failure::Nested(syn::Error::new_spanned(
                            &word,
                            "`atom` needs the atom's rows: write `atom 32` or `atom PARAM`, e.g. `mma acc += sa * sb atom mfma;`",
                        )));
                    }
                    Some(input.parse::<Expr>()?)
                }
                Ok(word) => {
                    return Err(Failure::Nested(syn::Error::new_spanned(
                        &word,
                        format!("unexpected `{word}` after `mma ... * {b}`; only `atom M` (the MMA atom's rows) may follow, e.g. `mma acc += sa * sb atom mfma;`"),
                    )))
                }
                Err(_) => None,
            };
            let end = semi(input)?;
            (
                TileOp::Mma {
                    acc,
                    a,
                    b,
                    b_transposed,
                    fresh,
                    atom,
                },
                end,
            )
        }
        _ => {
            let acc: Ident = input.parse()?;
            input.parse::<Token![->]>()?;
            let operand = input.call(Ident::parse_any)?;
            let bulk = if keyword(input, "bulk").is_ok() {
                Some(input.parse::<Expr>()?)
            } else {
                None
            };
            let end = semi(input)?;
            (TileOp::Epilogue { acc, operand, bulk }, end)
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
            e.ends_with("rows, when, reduce, let, store, or `NAME = EXPR;`"),
            "{e}"
        );
        let e = parse("shared sa: a[tile_m] x 2;").unwrap_err().to_string();
        assert!(
            e.contains("write `shared NAME: OPERAND[ROWS, COLS] x STAGES;`"),
            "{e}"
        );
        let e = parse("load a sa;").unwrap_err().to_string();
        assert!(e.contains("expected `->`"), "{e}");
        let e = parse("mma s = sq * sk^U;").unwrap_err().to_string();
        assert!(e.contains("`^U` is not an operation"), "{e}");
        let e = parse("mma s = sq^T * sk;").unwrap_err().to_string();
        assert!(e.contains("transposes only its right operand"), "{e}");
        let e = parse("reduce t = mean(h);").unwrap_err().to_string();
        assert!(e.contains("`reduce` takes sum or max, not `mean`"), "{e}");
        let e = parse("h = exq(h);").unwrap_err().to_string();
        assert!(e.contains("did you mean `exp`?"), "{e}");
    }

    #[test]
    fn parses_the_row_and_attention_statements() {
        let body = parse(
            "rows h: x[rows_per_block] threads threads_per_row vector vector;
             when residual { h = h + residual; }
             reduce total = sum(h);
             let mean = total / cols;
             h = h - mean;
             store h -> y;",
        )
        .unwrap();
        assert_eq!(body.len(), 6);
        assert!(matches!(&body[0].op, TileOp::Rows { name, .. } if name == "h"));
        assert!(matches!(&body[1].op, TileOp::When { body, .. } if body.len() == 1));
        assert!(matches!(
            &body[2].op,
            TileOp::Reduce {
                op: Reduce::Sum,
                ..
            }
        ));
        assert!(matches!(&body[3].op, TileOp::Let { .. }));
        assert!(matches!(&body[4].op, TileOp::Map { name, .. } if name == "h"));
        assert!(matches!(&body[5].op, TileOp::Store { .. }));
        let body = parse(
            "load q -> sq;
             mainloop kv step block_kv stages stages {
                 mma s = sq * sk^T; mask s; softmax s online acc; mma acc += s * sv;
             }
             normalize acc;",
        )
        .unwrap();
        let TileOp::Mainloop {
            var,
            body: inner,
            schedule,
            ..
        } = &body[1].op
        else {
            panic!("{:?}", body[1].op)
        };
        assert_eq!(var, "kv");
        assert!(schedule.is_none());
        assert!(matches!(
            &inner[0].op,
            TileOp::Mma {
                b_transposed: true,
                fresh: true,
                ..
            }
        ));
        assert!(matches!(
            &inner[3].op,
            TileOp::Mma {
                b_transposed: false,
                fresh: false,
                ..
            }
        ));
        assert!(matches!(&body[2].op, TileOp::Normalize { .. }));
        // `schedule S` after the stages: the grid schedule (1: persistent)
        let body =
            parse("mainloop kv step block_kv stages stages schedule persistent { load k -> sk; }")
                .unwrap();
        assert!(matches!(
            &body[0].op,
            TileOp::Mainloop { schedule: Some(_), body, .. } if body.len() == 1
        ));
        // `split S` after the stages: the reduction range split over a cluster's blocks
        let body =
            parse("mainloop kv step block_kv stages stages split split_kv { load k -> sk; }")
                .unwrap();
        assert!(matches!(
            &body[0].op,
            TileOp::Mainloop {
                schedule: None,
                split: Some(_),
                ..
            }
        ));
        // `multicast C` after the split: C blocks of a cluster share each B tile
        let body = parse(
            "mainloop k step tile_k stages stages split split_k multicast multicast { load b -> sb; }",
        )
        .unwrap();
        assert!(matches!(
            &body[0].op,
            TileOp::Mainloop {
                split: Some(_),
                multicast: Some(_),
                group: None,
                ..
            }
        ));
        // `bulk B` after the output: how the tile leaves (1: bulk tensor copies)
        let body = parse("epilogue acc -> d bulk tma_store; epilogue acc -> d;").unwrap();
        assert!(matches!(
            &body[0].op,
            TileOp::Epilogue { bulk: Some(_), .. }
        ));
        assert!(matches!(&body[1].op, TileOp::Epilogue { bulk: None, .. }));
    }
}
