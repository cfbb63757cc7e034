//! Validation: resolve the parsed template against its parameters, op and dtypes, then check
//! the whole parameter space (see `space` and `feasibility`). Every error is spanned at the
//! offending tokens and says how to fix it.

use crate::diagnostics::{did_you_mean, list, Diagnostics};
use crate::dtype::{DType, DTypes};
use crate::expr::{self, Context, Kind, Node};
use crate::kernel::{Statement, TileOp};
use crate::label::Label;
use crate::op::{self, Family, Op, Operand, Shape};
use crate::parse::{Attr, DTypeEntry, ParamSyntax, Source};
use crate::row_expr::{Gather, IndexTree, RowTree};
use crate::target::TARGETS;
use crate::template::{camel_case, Constraint, Param, Template};
use proc_macro2::Span;
use quote::{format_ident, ToTokens};
use syn::{Expr, Ident, Item, Lit, UnOp};

const ATTR_EXAMPLE: &str = "#[gpu_template(name = \"gemm\", op = gemm)]";

/// Whether `name` can start kernel symbols: lowercase ASCII, digits and `_`, letter first.
pub fn is_valid_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The generated struct's name: CamelCase of the template name, or of the module's name
/// when the template name is missing or invalid (the fallback stub needs one).
pub fn struct_ident(attr: &Attr, module: &Ident) -> Ident {
    match &attr.name {
        Some(n) if is_valid_name(&n.value()) => format_ident!("{}", camel_case(&n.value())),
        _ => format_ident!(
            "{}",
            camel_case(module.to_string().trim_start_matches("r#"))
        ),
    }
}

/// An error about the attribute as a whole: at its arguments, or at the whole attribute
/// when it has none.
fn attr_error(attr: &Attr, message: String) -> syn::Error {
    if attr.tokens.is_empty() {
        syn::Error::new(Span::call_site(), message)
    } else {
        syn::Error::new_spanned(&attr.tokens, message)
    }
}

/// The first non-empty line of the module's doc comments.
fn about(source: &Source) -> String {
    for attr in &source.shell.attrs {
        if !attr.path().is_ident("doc") {
            continue;
        }
        if let syn::Meta::NameValue(nv) = &attr.meta {
            if let Expr::Lit(syn::ExprLit {
                lit: Lit::Str(s), ..
            }) = &nv.value
            {
                if let Some(line) = s.value().lines().map(str::trim).find(|l| !l.is_empty()) {
                    return line.to_string();
                }
            }
        }
    }
    String::new()
}

/// Resolve and check everything; `Err` carries every error found.
pub fn template(attr: &Attr, source: &Source) -> syn::Result<Template> {
    let mut diags = Diagnostics::default();
    let head = source.shell.head();

    let name = match &attr.name {
        None => {
            diags.push(attr_error(
                attr,
                format!(
                    "missing `name`: give the template a unique name, the first word of its kernel names, \
                     e.g. `{ATTR_EXAMPLE}`"
                ),
            ));
            None
        }
        Some(n) if !is_valid_name(&n.value()) => {
            diags.error(
                n,
                format!(
                    "template name `{}` must be lowercase ASCII letters, digits and `_`, starting with a \
                     letter: it begins every kernel symbol; e.g. `name = \"gemm_bias\"`",
                    n.value()
                ),
            );
            None
        }
        Some(n) => Some(n.value()),
    };
    let op = match &attr.op {
        None => {
            diags.push(attr_error(
                attr,
                format!(
                    "missing `op`: say which operation the template implements, e.g. `{ATTR_EXAMPLE}`; \
                     ops are: {}",
                    op::names().join(", ")
                ),
            ));
            None
        }
        Some(ident) => {
            let found = op::find(&ident.to_string());
            if found.is_none() {
                diags.error(
                    ident,
                    format!(
                        "unknown op `{ident}`; {}ops are: {}",
                        did_you_mean(&ident.to_string(), op::names()),
                        op::names().join(", ")
                    ),
                );
            }
            found
        }
    };

    let params = match &source.params {
        Some(block) => params(&block.body, &mut diags),
        None => Vec::new(),
    };
    let idents: Vec<Ident> = params.iter().map(|p| p.ident.clone()).collect();

    let mut constraints = Vec::new();
    for e in source.constraints.iter().flat_map(|b| &b.body) {
        if let Some(node) = diags.take(expr::resolve(e, &idents, Kind::Bool, Context::Constraint)) {
            constraints.push(Constraint {
                node,
                text: e.to_token_stream().to_string(),
            });
        }
    }

    let dtypes = match &source.dtypes {
        Some(block) => dtypes(&block.path, &block.body, &mut diags),
        None => {
            diags.error(
                &head,
                "missing `dtypes!` block: say which dtypes the template takes, e.g. \
                 `dtypes! { input: [f16, bf16], acc: f32, output: [f16, bf16, f32] }`",
            );
            None
        }
    };

    let label = match &attr.label {
        Some(format) => diags.take(Label::parse(format, &idents)),
        None => Some(Label::default_for(&idents)),
    }
    .map(|l| l.with_knobs(&params));

    let kernel = match (&source.kernel, op) {
        (None, _) => {
            diags.error(
                &head,
                "missing `kernel!` block: describe the kernel's tiles, e.g. `kernel! { shared sa: \
                 a[tile_m, tile_k] x stages; ... mainloop k step tile_k stages stages { ... } \
                 epilogue acc -> d; }`",
            );
            None
        }
        (Some(block), Some(op)) => {
            let mut scope = Scope {
                op,
                params: &idents,
                shared: Vec::new(),
                fragments: Vec::new(),
                loaded_once: Vec::new(),
                row_tile: None,
                scalars: Vec::new(),
                present: Vec::new(),
                diags: &mut diags,
            };
            let body = scope.statements(&block.body, None);
            required_statements(op, &block.path, &block.body, &mut diags);
            Some(body)
        }
        (Some(_), None) => None,
    };

    if let Some(check) = &source.check {
        if check.sig.inputs.len() != 3 {
            diags.error(
                &check.sig,
                "`fn check` is called as `Template::check`; give it the signature \
                 `fn check(config: &Config, problem: &Problem, caps: &DeviceCaps) -> Result<(), Reject>`",
            );
        }
    }

    let struct_ident = struct_ident(attr, &source.shell.ident);
    for item in &source.shell.items {
        let ident = match item {
            Item::Struct(i) => Some(&i.ident),
            Item::Enum(i) => Some(&i.ident),
            Item::Static(i) => Some(&i.ident),
            Item::Const(i) => Some(&i.ident),
            Item::Type(i) => Some(&i.ident),
            Item::Fn(i) => Some(&i.sig.ident),
            Item::Union(i) => Some(&i.ident),
            Item::Trait(i) => Some(&i.ident),
            _ => None,
        };
        if let Some(ident) = ident {
            if *ident == struct_ident || *ident == "TEMPLATE" {
                diags.error(
                    ident,
                    format!("`{ident}` is generated by #[gpu_template] in this module; rename this item"),
                );
            }
        }
    }

    diags.finish()?;
    let (Some(name), Some(op), Some(dtypes), Some(label), Some(kernel)) =
        (name, op, dtypes, label, kernel)
    else {
        unreachable!("every missing piece recorded an error");
    };
    let template = Template {
        name,
        struct_ident,
        op,
        about: about(source),
        params,
        constraints,
        dtypes,
        label,
        kernel,
        check: source.check.clone(),
    };
    crate::feasibility::check(&template, &head)?;
    Ok(template)
}

/// Whether any statement, at any depth, is of the kind `pick` accepts (as written, so a
/// statement with errors of its own still counts).
fn any_statement(stmts: &[Statement<Expr>], pick: &dyn Fn(&TileOp<Expr>) -> bool) -> bool {
    stmts
        .iter()
        .any(|s| pick(&s.op) || s.op.body().is_some_and(|b| any_statement(b, pick)))
}

/// The statements every kernel of `op`'s family needs: GEMM and attention a fragment and an
/// epilogue; row-wise ops a row tile and a store.
fn required_statements(op: &Op, path: &Ident, body: &[Statement<Expr>], diags: &mut Diagnostics) {
    let outputs = op.operand_names(|o| o.written);
    let has = |pick: &dyn Fn(&TileOp<Expr>) -> bool| any_statement(body, pick);
    match op.family {
        Family::Tiles => {
            if !has(&|op| matches!(op, TileOp::Fragment { .. })) {
                diags.error(
                    path,
                    "`kernel!` declares no fragment; add the accumulator, e.g. \
                     `fragment acc: acc[tile_m, tile_n] warps [warps_m, warps_n];`",
                );
            }
            if !has(&|op| matches!(op, TileOp::Epilogue { .. })) {
                diags.error(
                    path,
                    format!(
                        "`kernel!` never stores its result; end it with e.g. `epilogue acc -> {}`",
                        outputs[0]
                    ),
                );
            }
        }
        Family::Rows => {
            let inputs = op.operand_names(|o| !o.written && !o.optional);
            if !has(&|op| matches!(op, TileOp::Rows { .. })) {
                diags.error(
                    path,
                    format!(
                        "`kernel!` declares no row tile; start it with e.g. \
                         `rows h: {}[rows_per_block] threads threads_per_row vector vector;`",
                        inputs[0]
                    ),
                );
            }
            if !has(&|op| matches!(op, TileOp::Store { .. })) {
                diags.error(
                    path,
                    format!(
                        "`kernel!` never stores its result; end it with e.g. `store h -> {};`",
                        outputs[0]
                    ),
                );
            }
        }
    }
}

/// The op-table word of a statement (`=` for `NAME = EXPR;`).
fn statement_key<E>(op: &TileOp<E>) -> &'static str {
    match op {
        TileOp::Shared { .. } => "shared",
        TileOp::Fragment { .. } => "fragment",
        TileOp::Mainloop { .. } => "mainloop",
        TileOp::Load { .. } => "load",
        TileOp::Mma { .. } => "mma",
        TileOp::Epilogue { .. } => "epilogue",
        TileOp::Mask { .. } => "mask",
        TileOp::Softmax { .. } => "softmax",
        TileOp::Normalize { .. } => "normalize",
        TileOp::Rows { .. } => "rows",
        TileOp::When { .. } => "when",
        TileOp::Map { .. } => "=",
        TileOp::Reduce { .. } => "reduce",
        TileOp::Let { .. } => "let",
        TileOp::Store { .. } => "store",
    }
}

/// An integer literal, possibly negated.
fn int_literal(e: &Expr) -> Option<syn::Result<i64>> {
    match e {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Int(i), ..
        }) => Some(i.base10_parse::<i64>()),
        Expr::Unary(u) if matches!(u.op, UnOp::Neg(_)) => int_literal(&u.expr).map(|r| {
            r.and_then(|v| {
                v.checked_neg()
                    .ok_or_else(|| syn::Error::new_spanned(e, "value overflows i64"))
            })
        }),
        Expr::Group(g) => int_literal(&g.expr),
        _ => None,
    }
}

fn params(syntax: &[ParamSyntax], diags: &mut Diagnostics) -> Vec<Param> {
    let mut out: Vec<Param> = Vec::new();
    for p in syntax {
        let name = p.name.to_string();
        if out.iter().any(|q| q.ident == p.name) {
            diags.error(
                &p.name,
                format!(
                    "parameter `{name}` is declared twice; remove one declaration or rename it"
                ),
            );
            continue;
        }
        // A parameter with errors stays declared, so references to it report nothing more.
        if !is_valid_name(&name) {
            diags.error(
                &p.name,
                format!(
                    "parameter `{name}` must be lowercase snake_case starting with a letter (it names \
                     a local and appears in kernel labels), e.g. `{}`",
                    name.trim_start_matches('_').to_lowercase()
                ),
            );
        }
        if p.values.is_empty() {
            diags.push(syn::Error::new(
                p.bracket.span.join(),
                format!("parameter `{name}` has no candidate values; give at least one, e.g. `{name} in [64, 128]`"),
            ));
        }
        let mut values = Vec::new();
        for v in &p.values {
            if let Some(x) = param_value(&name, v, diags) {
                if values.contains(&x) {
                    diags.error(
                        v,
                        format!("value {x} appears twice in `{name}`; remove one"),
                    );
                } else {
                    values.push(x);
                }
            }
        }
        let base = values.clone();
        let mut literals = p.values.clone();
        let mut target_values: Vec<(&'static str, Vec<i64>)> = Vec::new();
        let mut seen_targets: Vec<String> = Vec::new();
        for t in &p.targets {
            let written = t.target.to_string();
            let Some(&(_, variant)) = TARGETS.iter().find(|(n, _)| *n == written) else {
                let names: Vec<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
                diags.error(
                    &t.target,
                    format!(
                        "unknown target `{written}`; {}targets are: {}",
                        did_you_mean(&written, names.iter().copied()),
                        names.join(", ")
                    ),
                );
                continue;
            };
            if seen_targets.contains(&written) {
                diags.error(
                    &t.target,
                    format!("`{name}` lists `+ {written}` twice; merge the two value lists"),
                );
                continue;
            }
            seen_targets.push(written.clone());
            if t.values.is_empty() {
                diags.push(syn::Error::new(
                    t.bracket.span.join(),
                    format!("`+ {written}` gives `{name}` no values; list what {written} alone offers, e.g. `+ {written} [6, 8]`, or remove it"),
                ));
            }
            let mut own = Vec::new();
            for v in &t.values {
                let Some(x) = param_value(&name, v, diags) else {
                    continue;
                };
                if base.contains(&x) {
                    diags.error(
                        v,
                        format!("{x} is already a value of `{name}` on every target; remove it from `+ {written} [...]`"),
                    );
                } else if own.contains(&x) {
                    diags.error(
                        v,
                        format!("value {x} appears twice in `+ {written} [...]`; remove one"),
                    );
                } else {
                    own.push(x);
                    if !values.contains(&x) {
                        values.push(x);
                        literals.push(v.clone());
                    }
                }
            }
            target_values.push((variant, own));
        }
        let default = (base.len() == 1 && !target_values.is_empty()).then(|| base[0]);
        out.push(Param {
            ident: p.name.clone(),
            values,
            target_values,
            literals,
            default,
        });
    }
    out
}

/// One candidate value: an integer literal, else a spanned error.
fn param_value(name: &str, v: &syn::Expr, diags: &mut Diagnostics) -> Option<i64> {
    match int_literal(v) {
        Some(Ok(x)) => Some(x),
        Some(Err(e)) => {
            diags.push(e);
            None
        }
        None => {
            diags.error(
                v,
                format!(
                    "parameter values must be integer literals, but `{}` is not one; e.g. `{name} in [64, 128]`",
                    v.to_token_stream()
                ),
            );
            None
        }
    }
}

fn dtypes(path: &Ident, entries: &[DTypeEntry], diags: &mut Diagnostics) -> Option<DTypes> {
    const KEYS: [&str; 3] = ["input", "acc", "output"];
    let mut input = None;
    let mut acc = None;
    let mut output = None;
    let mut ok = true;
    for entry in entries {
        let key = entry.key.to_string();
        let mut list = Vec::new();
        for n in &entry.names {
            match DType::parse(&n.to_string()) {
                Some(d) if list.iter().any(|(x, _)| *x == d) => {
                    diags.error(n, format!("dtype {n} is listed twice; remove one"));
                    ok = false;
                }
                Some(d) => list.push((d, n)),
                None => {
                    diags.error(n, format!("unknown dtype `{n}`; use f16, bf16 or f32"));
                    ok = false;
                }
            }
        }
        if entry.names.is_empty() {
            diags.push(syn::Error::new(
                entry.bracket.map_or(entry.key.span(), |b| b.span.join()),
                format!("`{key}` lists no dtype; give at least one, e.g. `{key}: [f16]`"),
            ));
            ok = false;
        }
        let slot = match key.as_str() {
            "input" => {
                for (d, n) in &list {
                    if !d.is_mma_input() {
                        diags.error(
                            n,
                            format!(
                                "input dtype {} cannot feed an MMA atom; use f16 or bf16",
                                d.name()
                            ),
                        );
                        ok = false;
                    }
                }
                &mut input
            }
            "acc" => {
                if entry.bracket.is_some() || entry.names.len() > 1 {
                    diags.error(
                        &entry.key,
                        "`acc` takes one dtype, not a list: write `acc: f32`",
                    );
                    ok = false;
                }
                if let Some((d, n)) = list.first() {
                    if *d != DType::F32 {
                        diags.error(
                            n,
                            format!("acc: {} is not supported: MMA atoms accumulate in f32; use `acc: f32`", d.name()),
                        );
                        ok = false;
                    }
                }
                &mut acc
            }
            "output" => &mut output,
            _ => {
                diags.error(
                    &entry.key,
                    format!(
                        "unknown dtypes key `{key}`; {}keys are: {}",
                        did_you_mean(&key, KEYS),
                        KEYS.join(", ")
                    ),
                );
                ok = false;
                continue;
            }
        };
        if slot
            .replace(list.iter().map(|(d, _)| *d).collect::<Vec<_>>())
            .is_some()
        {
            diags.error(
                &entry.key,
                format!("`{key}` is given twice in `dtypes!`; keep one"),
            );
            ok = false;
        }
    }
    let example = |key: &str| match key {
        "input" => "input: [f16, bf16]",
        "acc" => "acc: f32",
        _ => "output: [f16, bf16, f32]",
    };
    for (key, slot) in [("input", &input), ("acc", &acc), ("output", &output)] {
        if slot.is_none() {
            diags.error(
                path,
                format!("`dtypes!` is missing `{key}`; add e.g. `{}`", example(key)),
            );
            ok = false;
        }
    }
    if !ok {
        return None;
    }
    Some(DTypes {
        input: input?,
        acc: *acc?.first()?,
        output: output?,
    })
}

/// Names declared so far while resolving a kernel body.
struct Scope<'a> {
    op: &'static Op,
    params: &'a [Ident],
    /// Declared shared tiles and the operand each stages (`None` where that was an error).
    shared: Vec<(Ident, Option<&'static Operand>)>,
    fragments: Vec<Ident>,
    /// Shared tiles loaded once, outside any mainloop (attention's Q block).
    loaded_once: Vec<Ident>,
    /// The row tile of a row-wise kernel, and the row scalars declared so far.
    row_tile: Option<Ident>,
    scalars: Vec<Ident>,
    /// The optional operands of the `when` blocks around the current statement.
    present: Vec<String>,
    diags: &'a mut Diagnostics,
}

/// What a mainloop body has loaded so far.
#[derive(Default)]
struct LoopScope {
    loaded: Vec<Ident>,
}

impl Scope<'_> {
    /// An optional clause's size (`mainloop ... split S`): `Ok(None)` when it is left out,
    /// `Err(())` when it does not resolve (its diagnostic is already emitted).
    fn clause(&mut self, e: &Option<Expr>) -> Result<Option<Node>, ()> {
        match e {
            Some(e) => self.size(e).map(Some).ok_or(()),
            None => Ok(None),
        }
    }

    fn size(&mut self, e: &Expr) -> Option<Node> {
        self.diags.take(expr::resolve_in(
            e,
            self.params,
            self.op.extents,
            Kind::Int,
            Context::Size,
        ))
    }

    fn operand(&mut self, ident: &Ident) -> Option<&'static Operand> {
        let found = self.op.operand(&ident.to_string());
        if found.is_none() {
            let names = self.op.operand_names(|_| true);
            self.diags.error(
                ident,
                format!(
                    "unknown operand `{ident}` for op {}; {}operands are: {}",
                    self.op.name,
                    did_you_mean(&ident.to_string(), names.iter().copied()),
                    list(&names)
                ),
            );
        }
        found
    }

    fn declare(&mut self, name: &Ident) -> bool {
        if self.shared.iter().any(|(n, _)| n == name)
            || self.fragments.contains(name)
            || self.row_tile.as_ref() == Some(name)
            || self.scalars.contains(name)
        {
            self.diags.error(
                name,
                format!("`{name}` is already declared; give each tile its own name"),
            );
            return false;
        }
        true
    }

    fn shared_names(&self) -> Vec<String> {
        self.shared.iter().map(|(n, _)| n.to_string()).collect()
    }

    fn fragment_names(&self) -> Vec<String> {
        self.fragments.iter().map(Ident::to_string).collect()
    }

    /// The operand a declared shared tile stages: `Err` (recorded) if it is not declared,
    /// `Ok(None)` if its declaration had errors.
    fn shared_tile(&mut self, ident: &Ident, role: &str) -> Result<Option<&'static Operand>, ()> {
        if let Some((_, o)) = self.shared.iter().find(|(n, _)| n == ident) {
            return Ok(*o);
        }
        let hint = if self.fragments.contains(ident) {
            format!("`{ident}` is a fragment, but {role} reads a shared tile; declared shared tiles: {}", list(&self.shared_names()))
        } else {
            format!(
                "`{ident}` is not a declared shared tile; declared: {}",
                list(&self.shared_names())
            )
        };
        self.diags.error(ident, hint);
        Err(())
    }

    fn fragment(&mut self, ident: &Ident, role: &str) -> bool {
        if self.fragments.contains(ident) {
            return true;
        }
        let hint = if self.shared.iter().any(|(n, _)| n == ident) {
            format!(
                "`{ident}` is a shared tile, but {role} needs a fragment; declared fragments: {}",
                list(&self.fragment_names())
            )
        } else {
            format!(
                "`{ident}` is not a declared fragment; declared: {}",
                list(&self.fragment_names())
            )
        };
        self.diags.error(ident, hint);
        false
    }

    /// A statement whose word `op`'s kernels do not use: say which ops use it.
    fn foreign_statement(&mut self, s: &Statement<Expr>, key: &str) {
        let ours: Vec<&str> = self.op.statements.to_vec();
        let what = if key == "=" {
            format!("`{} = ...` (an update of a row tile)", s.word)
        } else {
            format!("`{key}`")
        };
        let owners = op::ops_with(key);
        self.diags.error(
            &s.at,
            format!(
                "{what} is not a statement of {} kernels (it belongs to {}); {} kernels are written with: {}",
                self.op.name,
                list(&owners),
                self.op.name,
                list(&ours).replace("=,", "`NAME = EXPR;`,")
            ),
        );
    }

    /// Names of this op's operands of `shape`.
    fn shaped(&self, shape: Shape) -> Vec<&'static str> {
        self.op.operand_names(|o| o.shape == shape)
    }

    /// An error for reading a table, ids or lengths operand by itself; `true` if `o` is read
    /// directly (a matrix or a vector).
    fn direct(&mut self, ident: &Ident, o: &Operand) -> bool {
        let hint = match o.shape {
            Shape::Matrix | Shape::Vector => return true,
            Shape::Table => {
                let ids = self.shaped(Shape::Ids);
                let example = ids.first().map_or_else(
                    || format!("{ident}[row % SIZE]"),
                    |i| format!("{ident}[{i}]"),
                );
                format!("`{ident}` is a table of {}; read a row of it through a gather, e.g. `{example}`", self.op.name)
            }
            Shape::Ids => {
                let tables = self.shaped(Shape::Table);
                let example = tables.first().unwrap_or(&"TABLE");
                format!(
                    "`{ident}` holds one i32 id per row of {}; use it as a gather's index, e.g. `{example}[{ident}]`",
                    self.op.name
                )
            }
            Shape::Lens | Shape::Offsets => format!(
                "`{ident}` holds i32 lengths or sequence offsets that the kernel applies itself; it is not read in the body"
            ),
        };
        self.diags.error(ident, hint);
        false
    }

    /// A gather `TABLE[IDS]` or `TABLE[row % SIZE]`: a table operand of this op, an id operand
    /// or an i32 size argument.
    fn gather(&mut self, g: &Gather) -> bool {
        let tables = self.shaped(Shape::Table);
        let mut ok = true;
        if !tables.contains(&g.table.to_string().as_str()) {
            let name = g.table.to_string();
            let fix = if tables.is_empty() {
                format!("{} has no table operand", self.op.name)
            } else {
                format!(
                    "{}tables of {}: {}",
                    did_you_mean(&name, tables.iter().copied()),
                    self.op.name,
                    list(&tables)
                )
            };
            self.diags.error(
                &g.table,
                format!("`{name}` is not a table, so it is not gathered; {fix}"),
            );
            ok = false;
        }
        match &g.index {
            IndexTree::Ids(ids) => {
                let all = self.shaped(Shape::Ids);
                let name = ids.to_string();
                if !all.contains(&name.as_str()) {
                    let fix = if all.is_empty() {
                        format!("{} has no id operand", self.op.name)
                    } else {
                        format!(
                            "{}id operands of {}: {}",
                            did_you_mean(&name, all.iter().copied()),
                            self.op.name,
                            list(&all)
                        )
                    };
                    self.diags.error(
                        ids,
                        format!("`{name}` is not an id operand, so it cannot index a gather; {fix}; or `row % SIZE`"),
                    );
                    ok = false;
                }
            }
            IndexTree::RowMod(size) => {
                let name = size.to_string();
                if !self.op.ints.contains(&name.as_str()) {
                    self.diags.error(
                        size,
                        format!(
                            "`{name}` is not an i32 size of {}; {}sizes: {}",
                            self.op.name,
                            did_you_mean(&name, self.op.ints.iter().copied()),
                            list(self.op.ints)
                        ),
                    );
                    ok = false;
                }
            }
        }
        ok
    }

    /// The operand a `rows` statement loads: a required input.
    fn row_source(&mut self, operand: &Ident) -> bool {
        let Some(o) = self.operand(operand) else {
            return false;
        };
        if !self.direct(operand, o) {
            return false;
        }
        if o.written || o.optional {
            let inputs = self.op.operand_names(|o| !o.written && !o.optional);
            let why = if o.written { "the output" } else { "optional" };
            self.diags.error(
                operand,
                format!(
                    "`{operand}` is {why} in {}; `rows` loads a required input: {}",
                    self.op.name,
                    list(&inputs)
                ),
            );
            return false;
        }
        true
    }

    /// The target of `NAME = EXPR;` or `store NAME -> ...`: the row tile.
    fn row_target(&mut self, name: &Ident) -> bool {
        match &self.row_tile {
            Some(t) if t == name => true,
            tile => {
                let tile = tile
                    .as_ref()
                    .map_or_else(|| "none yet".to_string(), |t| format!("`{t}`"));
                let hint = if self.scalars.contains(name) {
                    format!("`{name}` is a row scalar, set once by `let` or `reduce`; elements are updated through the row tile ({tile})")
                } else {
                    format!("`{name}` is not the row tile (declared: {tile}); declare it with `rows {name}: ...;` first")
                };
                self.diags.error(name, hint);
                false
            }
        }
    }

    /// Resolve the names of a row expression: `Some(first per-element name)` when it is
    /// valid (`Some(None)` when it reads row scalars and constants only), `None` after
    /// recording an error.
    fn row_expr(&mut self, expr: &RowTree) -> Option<Option<Ident>> {
        let mut names = Vec::new();
        expr.names(&mut names);
        let mut ok = true;
        let mut per_element = None;
        for ident in names {
            let name = ident.to_string();
            let element = if self.row_tile.as_ref() == Some(ident) {
                true
            } else if self.scalars.contains(ident)
                || name == "cols"
                || self.op.args.contains(&name.as_str())
            {
                false
            } else if let Some(o) = self.op.operand(&name) {
                if !self.direct(ident, o) {
                    ok = false;
                    continue;
                }
                if o.written {
                    let inputs = self.op.operand_names(|o| !o.written);
                    self.diags.error(
                        ident,
                        format!(
                            "`{name}` is the output of {}; row expressions read inputs: {}",
                            self.op.name,
                            list(&inputs)
                        ),
                    );
                    ok = false;
                    continue;
                }
                if o.optional && !self.present.contains(&name) {
                    self.diags.error(
                        ident,
                        format!(
                            "`{name}` is optional in {} (the problem may leave it out); read it \
                             inside `when {name} {{ ... }}`",
                            self.op.name
                        ),
                    );
                    ok = false;
                    continue;
                }
                true
            } else {
                let mut known: Vec<String> = Vec::new();
                known.extend(self.row_tile.iter().map(Ident::to_string));
                known.extend(self.scalars.iter().map(Ident::to_string));
                known.extend(
                    self.op
                        .operand_names(|o| !o.written)
                        .iter()
                        .map(|s| s.to_string()),
                );
                known.extend(self.op.args.iter().map(|s| s.to_string()));
                known.push("cols".to_string());
                self.diags.error(
                    ident,
                    format!(
                        "unknown name `{name}` in a row expression; {}names in scope: {}",
                        did_you_mean(&name, known.iter().map(String::as_str)),
                        list(&known)
                    ),
                );
                ok = false;
                continue;
            };
            if element && per_element.is_none() {
                per_element = Some(ident.clone());
            }
        }
        let mut gathers = Vec::new();
        expr.gathers(&mut gathers);
        for g in gathers {
            ok &= self.gather(g);
            if per_element.is_none() {
                per_element = Some(g.table.clone());
            }
        }
        ok.then_some(per_element)
    }

    fn statements(
        &mut self,
        stmts: &[Statement<Expr>],
        mut in_loop: Option<&mut LoopScope>,
    ) -> Vec<Statement<Node>> {
        let mut out = Vec::new();
        for s in stmts {
            if !self.placed(s, in_loop.is_some()) {
                continue;
            }
            if let Some(op) = self.statement(s, in_loop.as_deref_mut()) {
                out.push(Statement {
                    word: s.word.clone(),
                    at: s.at.clone(),
                    op,
                });
            }
        }
        out
    }

    /// Whether `s` may stand where it is: a statement of this op, outside `when` blocks (other
    /// than updates), and inside or outside the mainloop as its kind requires. Emits the
    /// diagnostic otherwise.
    fn placed(&mut self, s: &Statement<Expr>, in_loop: bool) -> bool {
        let word = s.word.to_string();
        let key = statement_key(&s.op);
        if !self.op.statements.contains(&key) {
            self.foreign_statement(s, key);
            return false;
        }
        if !self.present.is_empty() && !matches!(s.op, TileOp::Map { .. }) {
            let operand = self.present.last().cloned().unwrap_or_default();
            self.diags.error(
                &s.at,
                format!(
                    "`{word}` is not allowed inside `when {operand}`: only `NAME = EXPR;` updates \
                     may depend on an optional operand (anything declared or stored there would \
                     be missing when `{operand}` is absent); move it out of the block"
                ),
            );
            return false;
        }
        let misplaced = match (&s.op, in_loop) {
            (TileOp::Shared { .. }, true) => {
                Some("declare shared tiles before the mainloop, at the top level of `kernel!`")
            }
            (TileOp::Fragment { .. }, true) => {
                Some("declare fragments before the mainloop, at the top level of `kernel!`")
            }
            (TileOp::Mainloop { .. }, true) => {
                Some("mainloops do not nest; close the first one before opening another")
            }
            (TileOp::Epilogue { .. }, true) => {
                Some("`epilogue` runs once after the mainloop; move it after the loop's `}`")
            }
            (TileOp::Normalize { .. }, true) => {
                Some("`normalize` runs once after the mainloop; move it after the loop's `}`")
            }
            (TileOp::Mma { .. }, false) => {
                Some("`mma` reads the current K slice; move it into a `mainloop k ... { }`")
            }
            (TileOp::Mask { .. }, false) => {
                Some("`mask` works on the current key block's scores; move it into the mainloop")
            }
            (TileOp::Softmax { .. }, false) => Some(
                "`softmax ... online` updates running statistics per key block; move it into the mainloop",
            ),
            _ => None,
        };
        if let Some(hint) = misplaced {
            self.diags
                .error(&s.at, format!("`{word}` is not allowed here: {hint}"));
            return false;
        }
        true
    }

    /// One statement with its sizes resolved and its names checked, or `None` where a
    /// diagnostic was emitted.
    fn statement(
        &mut self,
        s: &Statement<Expr>,
        in_loop: Option<&mut LoopScope>,
    ) -> Option<TileOp<Node>> {
        Some(match &s.op {
            TileOp::Shared {
                name,
                operand,
                rows,
                cols,
                stages,
            } => {
                let operand_def = self.operand(operand);
                let fresh = self.declare(name);
                let (rows, cols) = (self.size(rows), self.size(cols));
                let stages = self.clause(stages);
                if fresh {
                    self.shared.push((name.clone(), operand_def));
                }
                let (Some(_), true, Some(rows), Some(cols), Ok(stages)) =
                    (operand_def, fresh, rows, cols, stages)
                else {
                    return None;
                };
                TileOp::Shared {
                    name: name.clone(),
                    operand: operand.clone(),
                    rows,
                    cols,
                    stages,
                }
            }
            TileOp::Fragment {
                name,
                rows,
                cols,
                warps_m,
                warps_n,
            } => {
                let fresh = self.declare(name);
                let dims = (
                    self.size(rows),
                    self.size(cols),
                    self.size(warps_m),
                    self.size(warps_n),
                );
                if fresh {
                    self.fragments.push(name.clone());
                }
                let (true, (Some(rows), Some(cols), Some(warps_m), Some(warps_n))) = (fresh, dims)
                else {
                    return None;
                };
                TileOp::Fragment {
                    name: name.clone(),
                    rows,
                    cols,
                    warps_m,
                    warps_n,
                }
            }
            TileOp::Mainloop {
                var,
                step,
                stages,
                schedule,
                split,
                multicast,
                group,
                body,
            } => {
                let (step, stages) = (self.size(step), self.size(stages));
                let (Ok(schedule), Ok(split), Ok(multicast), Ok(group)) = (
                    self.clause(schedule),
                    self.clause(split),
                    self.clause(multicast),
                    self.clause(group),
                ) else {
                    return None;
                };
                let mut scope = LoopScope::default();
                let body = self.statements(body, Some(&mut scope));
                TileOp::Mainloop {
                    var: var.clone(),
                    step: step?,
                    stages: stages?,
                    schedule,
                    split,
                    multicast,
                    group,
                    body,
                }
            }
            TileOp::Load { operand, shared } => {
                self.load(s, operand, shared, in_loop)?;
                TileOp::Load {
                    operand: operand.clone(),
                    shared: shared.clone(),
                }
            }
            TileOp::Mma {
                acc,
                a,
                b,
                b_transposed,
                fresh,
                atom,
            } => {
                let atom = self.clause(atom).ok()?;
                self.mma_operands(acc, a, b, in_loop.as_deref())?;
                TileOp::Mma {
                    acc: acc.clone(),
                    a: a.clone(),
                    b: b.clone(),
                    b_transposed: *b_transposed,
                    fresh: *fresh,
                    atom,
                }
            }
            TileOp::Mask { frag } => {
                self.fragment(frag, "`mask`").then_some(())?;
                TileOp::Mask { frag: frag.clone() }
            }
            TileOp::Softmax { scores, acc } => {
                let ok =
                    self.fragment(scores, "`softmax`") & self.fragment(acc, "`softmax ... online`");
                ok.then_some(())?;
                TileOp::Softmax {
                    scores: scores.clone(),
                    acc: acc.clone(),
                }
            }
            TileOp::Normalize { acc } => {
                self.fragment(acc, "`normalize`").then_some(())?;
                TileOp::Normalize { acc: acc.clone() }
            }
            TileOp::Rows {
                name,
                operand,
                index,
                rows,
                threads,
                vector,
            } => {
                let sizes = (self.size(rows), self.size(threads), self.size(vector));
                let source = match index {
                    None => self.row_source(operand),
                    Some(index) => self.gather(&Gather {
                        table: operand.clone(),
                        index: index.clone(),
                    }),
                };
                let fresh = self.row_tile_decl(s, name);
                let (true, true, (Some(rows), Some(threads), Some(vector))) =
                    (source, fresh, sizes)
                else {
                    return None;
                };
                TileOp::Rows {
                    name: name.clone(),
                    operand: operand.clone(),
                    index: index.clone(),
                    rows,
                    threads,
                    vector,
                }
            }
            TileOp::When { operand, body } => {
                self.optional_operand(operand)?;
                self.present.push(operand.to_string());
                let body = self.statements(body, in_loop);
                self.present.pop();
                TileOp::When {
                    operand: operand.clone(),
                    body,
                }
            }
            TileOp::Map { name, expr } => {
                let target = self.row_target(name);
                let reads = self.row_expr(expr);
                let (true, Some(_)) = (target, reads) else {
                    return None;
                };
                TileOp::Map {
                    name: name.clone(),
                    expr: expr.clone(),
                }
            }
            TileOp::Reduce { name, op, expr } => {
                let reads = self.row_expr(expr);
                let (true, Some(_)) = (self.row_scalar_decl(name), reads) else {
                    return None;
                };
                TileOp::Reduce {
                    name: name.clone(),
                    op: *op,
                    expr: expr.clone(),
                }
            }
            TileOp::Let { name, expr } => {
                self.row_let(name, expr)?;
                TileOp::Let {
                    name: name.clone(),
                    expr: expr.clone(),
                }
            }
            TileOp::Store { name, operand } => {
                let target = self.row_target(name);
                self.output(operand, "`store` writes an output")?;
                target.then_some(())?;
                TileOp::Store {
                    name: name.clone(),
                    operand: operand.clone(),
                }
            }
            TileOp::Epilogue { acc, operand, bulk } => {
                let acc_ok = self.fragment(acc, "`epilogue`");
                let bulk = self.clause(bulk).ok()?;
                self.output(operand, "`epilogue` stores to an output")?;
                acc_ok.then_some(())?;
                TileOp::Epilogue {
                    acc: acc.clone(),
                    operand: operand.clone(),
                    bulk,
                }
            }
        })
    }

    /// `load OPERAND -> SHARED;`: an input operand into the shared tile that stages it, recorded
    /// as loaded in this mainloop (or once, before it). `None` where a diagnostic was emitted.
    fn load(
        &mut self,
        s: &Statement<Expr>,
        operand: &Ident,
        shared: &Ident,
        mut in_loop: Option<&mut LoopScope>,
    ) -> Option<()> {
        let o = self.operand(operand)?;
        if o.written {
            let inputs = self.op.operand_names(|o| !o.written);
            self.diags.error(
                operand,
                format!(
                    "`{operand}` is an output of {}; `load` reads an input: {}",
                    self.op.name,
                    list(&inputs)
                ),
            );
            return None;
        }
        let Ok(Some(staged)) = self.shared_tile(shared, "`load`") else {
            return None;
        };
        if staged.name != o.name {
            let intended = self
                .shared
                .iter()
                .find(|(_, x)| x.is_some_and(|x| x.name == o.name))
                .map(|(n, _)| n.clone());
            let fix = match &intended {
                Some(t) => format!("did you mean `load {operand} -> {t};`?"),
                None => format!("write `load {} -> {shared};`", staged.name),
            };
            self.diags.error(
                &s.at,
                format!(
                    "`{shared}` stages operand `{}`, not `{operand}`; {fix}",
                    staged.name
                ),
            );
            // Count the intended tile as loaded: this error is the one to fix.
            if let (Some(l), Some(t)) = (in_loop.as_deref_mut(), intended) {
                l.loaded.push(t);
            }
            return None;
        }
        match in_loop {
            Some(l) => l.loaded.push(shared.clone()),
            None => self.loaded_once.push(shared.clone()),
        }
        Some(())
    }

    /// The operands of `mma ACC += A * B`: ACC a fragment; A a fragment other than ACC
    /// (attention's probabilities feeding the second MMA) or a shared tile; B a shared tile;
    /// every shared tile loaded in this mainloop or once before it. `None` where a diagnostic
    /// was emitted.
    fn mma_operands(
        &mut self,
        acc: &Ident,
        a: &Ident,
        b: &Ident,
        in_loop: Option<&LoopScope>,
    ) -> Option<()> {
        let acc_ok = self.fragment(acc, "`mma` accumulating into it");
        let a_def = if self.fragments.contains(a) {
            if a == acc {
                self.diags.error(
                    a,
                    format!(
                        "`mma` cannot read `{a}` while accumulating into it; use another fragment"
                    ),
                );
                Err(())
            } else {
                Ok(None)
            }
        } else {
            match self.shared_tile(a, "`mma`") {
                Ok(Some(d)) => Ok(Some(d)),
                _ => Err(()),
            }
        };
        let b_def = self.shared_tile(b, "`mma`");
        let (true, Ok(a_def), Ok(Some(b_def))) = (acc_ok, a_def, b_def) else {
            return None;
        };
        let loaded = in_loop.map(|l| l.loaded.clone()).unwrap_or_default();
        let mut ok = true;
        let tiles = a_def.map(|d| (a, d)).into_iter().chain([(b, b_def)]);
        for (tile, def) in tiles {
            if !loaded.contains(tile) && !self.loaded_once.contains(tile) {
                self.diags.error(
                    tile,
                    format!(
                        "`{tile}` is read by `mma` but not loaded in this mainloop; add `load {} -> {tile};` before the `mma`",
                        def.name
                    ),
                );
                ok = false;
            }
        }
        ok.then_some(())
    }

    /// Declares the kernel's one row tile (`rows NAME: ...`); false (with a diagnostic) for a
    /// second one or a name already taken.
    fn row_tile_decl(&mut self, s: &Statement<Expr>, name: &Ident) -> bool {
        let fresh = if let Some(first) = &self.row_tile {
            self.diags.error(
                &s.at,
                format!("a kernel has one row tile and `{first}` is already declared; update it with `{first} = EXPR;` instead"),
            );
            false
        } else {
            self.declare(name)
        };
        if fresh {
            self.row_tile = Some(name.clone());
        }
        fresh
    }

    /// Declares a per-row scalar (`reduce NAME = ...`, `let NAME = ...`); false where the name
    /// is taken.
    fn row_scalar_decl(&mut self, name: &Ident) -> bool {
        let fresh = self.declare(name);
        if fresh {
            self.scalars.push(name.clone());
        }
        fresh
    }

    /// `let NAME = EXPR;`: one value per row, from row scalars only. `None` where a diagnostic
    /// was emitted.
    fn row_let(&mut self, name: &Ident, expr: &RowTree) -> Option<()> {
        let reads = self.row_expr(expr);
        let (true, Some(per_element)) = (self.row_scalar_decl(name), reads) else {
            return None;
        };
        if let Some(element) = per_element {
            self.diags.error(
                &element,
                format!(
                    "`let {name}` reads `{element}`, which differs per element; `let` \
                     computes one value per row from row scalars: reduce the row first, \
                     e.g. `reduce total = sum({element});`"
                ),
            );
            return None;
        }
        Some(())
    }

    /// `when OPERAND`: an optional operand of the op. `None` where a diagnostic was emitted.
    fn optional_operand(&mut self, operand: &Ident) -> Option<()> {
        let o = self.operand(operand)?;
        if o.optional {
            return Some(());
        }
        let optional = self.op.operand_names(|o| o.optional);
        let fix = if optional.is_empty() {
            format!(
                "{} has no optional operand; remove the `when`",
                self.op.name
            )
        } else {
            format!(
                "`when` takes an optional operand of {}: {}",
                self.op.name,
                list(&optional)
            )
        };
        self.diags.error(
            operand,
            format!("`{operand}` is always present in {}; {fix}", self.op.name),
        );
        None
    }

    /// The operand a `store` or `epilogue` writes: an output of the op (`what` says how the
    /// statement uses it). `None` where a diagnostic was emitted.
    fn output(&mut self, operand: &Ident, what: &str) -> Option<()> {
        let o = self.operand(operand)?;
        if o.written {
            return Some(());
        }
        let outputs = self.op.operand_names(|o| o.written);
        self.diags.error(
            operand,
            format!(
                "`{operand}` is an input of {}; {what}: {}",
                self.op.name,
                list(&outputs)
            ),
        );
        None
    }
}
