//! The validated template: everything `expand` needs, with names resolved and the space
//! checked.

use crate::dtype::DTypes;
use crate::expr::Node;
use crate::kernel::Statement;
use crate::label::Label;
use crate::op::Op;
use syn::{Expr, Ident, ItemFn};

/// One parameter and its candidate values, in the order written.
pub struct Param {
    pub ident: Ident,
    /// Every candidate: those every target offers, then the target-only ones.
    pub values: Vec<i64>,
    /// Values one target alone offers: the `tessera_dsl::Target` variant and the values.
    pub target_values: Vec<(&'static str, Vec<i64>)>,
    /// The value literals as written (where per-value errors point).
    pub literals: Vec<Expr>,
    /// The value every target offers when it is the only one and `+ TARGET [...]` lists add
    /// others (`mfma in [16] + gfx90a [32] + gfx942 [32]`): a target knob, left out of kernel
    /// names and `--config` strings at this value.
    pub default: Option<i64>,
}

pub struct Constraint {
    pub node: Node,
    /// The constraint as written, for `Constraint::text`.
    pub text: String,
}

pub struct Template {
    pub name: String,
    pub struct_ident: Ident,
    pub op: &'static Op,
    pub about: String,
    pub params: Vec<Param>,
    pub constraints: Vec<Constraint>,
    pub dtypes: DTypes,
    pub label: Label,
    pub kernel: Vec<Statement<Node>>,
    /// The module's `fn check`, which `Template::check` forwards to.
    pub check: Option<ItemFn>,
}

impl Template {
    pub fn param_idents(&self) -> Vec<Ident> {
        self.params.iter().map(|p| p.ident.clone()).collect()
    }
}

/// `tile_m = 64, tile_n = 128, ...`: one point, for messages.
pub fn point_text(params: &[Param], point: &[i64]) -> String {
    if params.is_empty() {
        return "the only config".to_string();
    }
    params
        .iter()
        .zip(point)
        .map(|(p, v)| format!("{} = {v}", p.ident))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `gemm_bias` -> `GemmBias`.
pub fn camel_case(name: &str) -> String {
    name.split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}
