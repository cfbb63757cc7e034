//! Parsing: the attribute's keys and the module's DSL blocks (`params!`, `constraints!`,
//! `dtypes!`, `kernel!`) into syntax trees. Only the grammar is checked here; names, types
//! and the parameter space are checked by `validate`.

use crate::diagnostics::{did_you_mean, Diagnostics};
use crate::kernel::{parse_statements, Statement};
use proc_macro2::TokenStream;
use quote::quote;
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{
    bracketed, token, Attribute, Expr, Ident, Item, ItemFn, ItemMod, LitStr, Token, Visibility,
};

/// The attribute's keys, in the order the docs list them.
pub const KEYS: &[&str] = &["name", "op", "label"];

/// The DSL blocks a template module may contain.
pub const BLOCKS: &[&str] = &["params", "constraints", "dtypes", "kernel"];

/// `#[gpu_template(name = "...", op = ..., label = "...")]`, each key optional here.
#[derive(Default)]
pub struct Attr {
    pub name: Option<LitStr>,
    pub op: Option<Ident>,
    pub label: Option<LitStr>,
    /// The arguments as written.
    pub tokens: TokenStream,
}

/// The module minus its DSL blocks: what is kept as written, in the expansion and the stub.
pub struct Shell {
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub mod_token: Token![mod],
    pub ident: Ident,
    pub items: Vec<Item>,
}

impl Shell {
    /// `mod NAME`: where errors about the module as a whole point.
    pub fn head(&self) -> TokenStream {
        let (m, i) = (&self.mod_token, &self.ident);
        quote!(#m #i)
    }
}

/// `NAME in [V, ...]`, then any number of `+ TARGET [V, ...]` (values one target alone offers).
pub struct ParamSyntax {
    pub name: Ident,
    pub bracket: token::Bracket,
    pub values: Vec<Expr>,
    pub targets: Vec<TargetValuesSyntax>,
}

/// `+ sm_90a [6, 8]`
pub struct TargetValuesSyntax {
    pub target: Ident,
    pub bracket: token::Bracket,
    pub values: Vec<Expr>,
}

/// `input: [...]`, `acc: ...`, `output: [...]`: the key and the dtype names after it.
pub struct DTypeEntry {
    pub key: Ident,
    /// Set when the names were bracketed.
    pub bracket: Option<token::Bracket>,
    pub names: Vec<Ident>,
}

/// A DSL block as written: its `name!` path (for spans) and its parsed body.
pub struct Block<T> {
    pub path: Ident,
    pub body: T,
}

/// The whole template as written.
pub struct Source {
    pub shell: Shell,
    pub params: Option<Block<Vec<ParamSyntax>>>,
    pub constraints: Option<Block<Vec<Expr>>>,
    pub dtypes: Option<Block<Vec<DTypeEntry>>>,
    pub kernel: Option<Block<Vec<Statement<Expr>>>>,
    /// The module's own `fn check`, if any.
    pub check: Option<ItemFn>,
}

/// Parse the attribute arguments. Errors are recorded; whatever parsed is returned.
pub fn attr(tokens: TokenStream, diags: &mut Diagnostics) -> Attr {
    let mut out = Attr {
        tokens: tokens.clone(),
        ..Attr::default()
    };
    let parser = |input: ParseStream| -> syn::Result<()> {
        while !input.is_empty() {
            let key = input.call(Ident::parse_any)?;
            let name = key.to_string();
            if !input.peek(Token![=]) {
                return Err(syn::Error::new_spanned(
                    &key,
                    format!(
                        "expected `=` after `{name}`; write keys as `name = \"gemm\", op = gemm`"
                    ),
                ));
            }
            input.parse::<Token![=]>()?;
            let value: Expr = input.parse()?;
            let dup = match name.as_str() {
                "name" => {
                    string_value(&key, &value, diags).is_some_and(|s| out.name.replace(s).is_some())
                }
                "label" => string_value(&key, &value, diags)
                    .is_some_and(|s| out.label.replace(s).is_some()),
                "op" => match &value {
                    Expr::Path(p) if p.path.get_ident().is_some() => {
                        let ident = p.path.get_ident().cloned().expect("checked");
                        out.op.replace(ident).is_some()
                    }
                    _ => {
                        diags.error(
                            &value,
                            format!(
                                "`op` takes an op name without quotes, e.g. `op = gemm`; ops are: {}",
                                crate::op::names().join(", ")
                            ),
                        );
                        false
                    }
                },
                _ => {
                    diags.error(
                        &key,
                        format!(
                            "unknown attribute key `{name}`; {}valid keys are: {}",
                            did_you_mean(&name, KEYS.iter().copied()),
                            KEYS.join(", ")
                        ),
                    );
                    false
                }
            };
            if dup {
                diags.error(&key, format!("`{name}` is given twice; keep one"));
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(())
    };
    if let Err(e) = parser.parse2(tokens) {
        diags.error_at(e, "; write `#[gpu_template(name = \"gemm\", op = gemm)]`");
    }
    out
}

fn string_value(key: &Ident, value: &Expr, diags: &mut Diagnostics) -> Option<LitStr> {
    match value {
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(s),
            ..
        }) => Some(s.clone()),
        _ => {
            let example = if key == "name" {
                "name = \"gemm\""
            } else {
                "label = \"{tile_m}x{tile_n}\""
            };
            diags.error(
                value,
                format!("`{key}` takes a string literal, e.g. `{example}`"),
            );
            None
        }
    }
}

/// Split the module into its shell and DSL blocks, parsing each block's grammar.
pub fn module(module: ItemMod, diags: &mut Diagnostics) -> Source {
    let ItemMod {
        attrs,
        vis,
        mod_token,
        ident,
        content,
        ..
    } = module;
    let items = content.map(|(_, items)| items).unwrap_or_default();
    let mut source = Source {
        shell: Shell {
            attrs,
            vis,
            mod_token,
            ident,
            items: Vec::new(),
        },
        params: None,
        constraints: None,
        dtypes: None,
        kernel: None,
        check: None,
    };
    for item in items {
        let Item::Macro(m) = &item else {
            if let Item::Fn(f) = &item {
                if f.sig.ident == "check" {
                    source.check = Some(f.clone());
                }
            }
            source.shell.items.push(item);
            continue;
        };
        let Some(path) = m.mac.path.get_ident().cloned() else {
            source.shell.items.push(item);
            continue;
        };
        let name = path.to_string();
        let tokens = m.mac.tokens.clone();
        macro_rules! block {
            ($slot:expr, $parser:expr, $hint:expr) => {{
                if $slot.is_some() {
                    diags.error(
                        &path,
                        format!("`{name}!` appears twice; merge the two blocks into one"),
                    );
                }
                match $parser.parse2(tokens) {
                    Ok(body) => $slot = Some(Block { path, body }),
                    Err(e) => diags.error_at(e, $hint),
                }
            }};
        }
        match name.as_str() {
            "params" => block!(source.params, params, "; write parameters as `tile_m in [64, 128], stages in [2, 3]`"),
            "constraints" => block!(
                source.constraints,
                constraints,
                "; write constraints as comma-separated conditions, e.g. `tile_m % (warps_m * 16) == 0, stages >= 2`"
            ),
            "dtypes" => block!(source.dtypes, dtypes, "; write `dtypes! { input: [f16, bf16], acc: f32, output: [f16, bf16, f32] }`"),
            "kernel" => block!(source.kernel, parse_statements, ""),
            _ => {
                if let Some(block) = crate::diagnostics::closest(&name, BLOCKS.iter().copied()) {
                    diags.error(
                        &path,
                        format!("unknown block `{name}!`; did you mean `{block}!`? blocks are: params!, constraints!, dtypes!, kernel!"),
                    );
                } else {
                    source.shell.items.push(item);
                }
            }
        }
    }
    source
}

fn params(input: ParseStream) -> syn::Result<Vec<ParamSyntax>> {
    let list = Punctuated::<ParamSyntax, Token![,]>::parse_terminated_with(input, |input| {
        let name: Ident = input.parse()?;
        if !input.peek(Token![in]) {
            return Err(input.error(format!("expected `in` after `{name}`")));
        }
        input.parse::<Token![in]>()?;
        if !input.peek(token::Bracket) {
            return Err(input.error("expected a bracketed list of values"));
        }
        let content;
        let bracket = bracketed!(content in input);
        let values = Punctuated::<Expr, Token![,]>::parse_terminated(&content)?;
        let mut targets = Vec::new();
        while input.peek(Token![+]) {
            input.parse::<Token![+]>()?;
            if !input.peek(Ident::peek_any) {
                return Err(input.error(
                    "expected a target after `+`, e.g. `stages in [2, 3] + sm_90a [6, 8]`",
                ));
            }
            let target = input.call(Ident::parse_any)?;
            if !input.peek(token::Bracket) {
                return Err(input.error(format!(
                    "expected a bracketed list of the values `{target}` alone offers"
                )));
            }
            let content;
            let bracket = bracketed!(content in input);
            let values = Punctuated::<Expr, Token![,]>::parse_terminated(&content)?;
            targets.push(TargetValuesSyntax {
                target,
                bracket,
                values: values.into_iter().collect(),
            });
        }
        Ok(ParamSyntax {
            name,
            bracket,
            values: values.into_iter().collect(),
            targets,
        })
    })?;
    Ok(list.into_iter().collect())
}

fn constraints(input: ParseStream) -> syn::Result<Vec<Expr>> {
    Ok(Punctuated::<Expr, Token![,]>::parse_terminated(input)?
        .into_iter()
        .collect())
}

fn dtypes(input: ParseStream) -> syn::Result<Vec<DTypeEntry>> {
    let list = Punctuated::<DTypeEntry, Token![,]>::parse_terminated_with(input, |input| {
        let key = input.call(Ident::parse_any)?;
        input.parse::<Token![:]>()?;
        if input.peek(token::Bracket) {
            let content;
            let bracket = bracketed!(content in input);
            let names =
                Punctuated::<Ident, Token![,]>::parse_terminated_with(&content, Ident::parse_any)?;
            Ok(DTypeEntry {
                key,
                bracket: Some(bracket),
                names: names.into_iter().collect(),
            })
        } else {
            let name = input.call(Ident::parse_any)?;
            Ok(DTypeEntry {
                key,
                bracket: None,
                names: vec![name],
            })
        }
    })?;
    Ok(list.into_iter().collect())
}
