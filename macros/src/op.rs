//! The ops a template can implement: each op's operands (its launch ABI's tensors), which of
//! them are optional (`when OPERAND { ... }`), its runtime f32 arguments, its size extents
//! (problem sizes a tile may name, like attention's `head_dim`) and the statements its
//! kernels are written with.
//!
//! A table, not a match: adding an op is one more [`Op`] row (plus `KernelBuilder` support in
//! tessera-dsl).

/// Which dtype an operand has: the problem's input dtype or its output dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Input,
    Output,
}

/// One global tensor of an op.
#[derive(Debug)]
pub struct Operand {
    pub name: &'static str,
    pub role: Role,
    /// The kernel stores to it (only `epilogue` / `store` may name it).
    pub written: bool,
    /// The problem may leave it out (a fused residual or bias, a mask): read it only inside
    /// `when NAME { ... }`.
    pub optional: bool,
}

/// How an op's kernels are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Shared tiles, fragments, a mainloop of MMAs and an epilogue (gemm, attention).
    Tiles,
    /// One row tile per block, elementwise maps and row reductions (layernorm, softmax).
    Rows,
}

/// A problem size a tile size may name, e.g. attention's `head_dim`.
#[derive(Debug)]
pub struct Extent {
    pub name: &'static str,
    /// The largest value it takes: what compile-time checks (shared memory, shapes) use.
    pub max: i64,
}

/// An op: its name in `op = ...` and the `::tessera_dsl::OpKind` variant it maps to.
#[derive(Debug)]
pub struct Op {
    pub name: &'static str,
    pub kind: &'static str,
    pub family: Family,
    pub operands: &'static [Operand],
    /// Runtime f32 arguments of the launch ABI that row expressions may read.
    pub args: &'static [&'static str],
    pub extents: &'static [Extent],
    /// The statement words its kernels may use (`=` for `NAME = EXPR;`).
    pub statements: &'static [&'static str],
}

const fn operand(name: &'static str, role: Role, written: bool) -> Operand {
    Operand {
        name,
        role,
        written,
        optional: false,
    }
}

const fn optional(name: &'static str, role: Role) -> Operand {
    Operand {
        name,
        role,
        written: false,
        optional: true,
    }
}

const GEMM_STATEMENTS: &[&str] = &["shared", "fragment", "mainloop", "load", "mma", "epilogue"];
const ATTENTION_STATEMENTS: &[&str] = &[
    "shared",
    "fragment",
    "mainloop",
    "load",
    "mma",
    "mask",
    "softmax",
    "normalize",
    "epilogue",
];
const ROW_STATEMENTS: &[&str] = &["rows", "when", "=", "reduce", "let", "store"];

pub const OPS: &[Op] = &[
    Op {
        name: "gemm",
        kind: "Gemm",
        family: Family::Tiles,
        operands: &[
            operand("a", Role::Input, false),
            operand("b", Role::Input, false),
            operand("c", Role::Output, false),
            operand("d", Role::Output, true),
            operand("bias", Role::Output, false),
            operand("residual", Role::Output, false),
        ],
        args: &[],
        extents: &[],
        statements: GEMM_STATEMENTS,
    },
    Op {
        name: "layernorm",
        kind: "Layernorm",
        family: Family::Rows,
        operands: &[
            operand("x", Role::Input, false),
            optional("residual", Role::Input),
            optional("bias", Role::Input),
            operand("gamma", Role::Input, false),
            operand("beta", Role::Input, false),
            operand("y", Role::Output, true),
        ],
        args: &["eps"],
        extents: &[],
        statements: ROW_STATEMENTS,
    },
    Op {
        name: "softmax",
        kind: "Softmax",
        family: Family::Rows,
        operands: &[
            operand("x", Role::Input, false),
            optional("mask", Role::Input),
            operand("y", Role::Output, true),
        ],
        args: &["scale"],
        extents: &[],
        statements: ROW_STATEMENTS,
    },
    Op {
        name: "attention",
        kind: "Attention",
        family: Family::Tiles,
        operands: &[
            operand("q", Role::Input, false),
            operand("k", Role::Input, false),
            operand("v", Role::Input, false),
            operand("o", Role::Output, true),
        ],
        args: &[],
        extents: &[Extent {
            name: "head_dim",
            max: 128,
        }],
        statements: ATTENTION_STATEMENTS,
    },
];

pub fn find(name: &str) -> Option<&'static Op> {
    OPS.iter().find(|op| op.name == name)
}

pub fn names() -> Vec<&'static str> {
    OPS.iter().map(|op| op.name).collect()
}

/// The ops whose kernels may use statement `word`.
pub fn ops_with(word: &str) -> Vec<&'static str> {
    OPS.iter()
        .filter(|op| op.statements.contains(&word))
        .map(|op| op.name)
        .collect()
}

impl Op {
    pub fn operand(&self, name: &str) -> Option<&'static Operand> {
        self.operands.iter().find(|o| o.name == name)
    }

    /// Names of the operands for which `pick` holds.
    pub fn operand_names(&self, pick: impl Fn(&Operand) -> bool) -> Vec<&'static str> {
        self.operands
            .iter()
            .filter(|o| pick(o))
            .map(|o| o.name)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_ops_declare_their_optional_operands_and_args() {
        let ln = find("layernorm").unwrap();
        assert_eq!(ln.operand_names(|o| o.optional), ["residual", "bias"]);
        assert_eq!(ln.operand_names(|o| o.written), ["y"]);
        assert_eq!(ln.args, ["eps"]);
        let sm = find("softmax").unwrap();
        assert_eq!(sm.operand_names(|o| o.optional), ["mask"]);
        assert_eq!(sm.args, ["scale"]);
        let at = find("attention").unwrap();
        assert_eq!((at.extents[0].name, at.extents[0].max), ("head_dim", 128));
        assert!(at.operand_names(|o| o.optional).is_empty());
        assert_eq!(ops_with("rows"), ["layernorm", "softmax"]);
        assert_eq!(ops_with("normalize"), ["attention"]);
    }
}
