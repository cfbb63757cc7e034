//! The ops a template can implement, and each op's operands (its launch ABI's tensors).
//!
//! A table, not a match: adding layernorm, softmax or attention is one more [`Op`] row (plus
//! `KernelBuilder` support in tessera-dsl).

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
    /// The kernel stores to it (only `epilogue` may name it).
    pub written: bool,
}

/// An op: its name in `op = ...` and the `::tessera_dsl::OpKind` variant it maps to.
#[derive(Debug)]
pub struct Op {
    pub name: &'static str,
    pub kind: &'static str,
    pub operands: &'static [Operand],
}

const fn operand(name: &'static str, role: Role, written: bool) -> Operand {
    Operand {
        name,
        role,
        written,
    }
}

pub const OPS: &[Op] = &[Op {
    name: "gemm",
    kind: "Gemm",
    operands: &[
        operand("a", Role::Input, false),
        operand("b", Role::Input, false),
        operand("c", Role::Output, false),
        operand("d", Role::Output, true),
        operand("bias", Role::Output, false),
        operand("residual", Role::Output, false),
    ],
}];

pub fn find(name: &str) -> Option<&'static Op> {
    OPS.iter().find(|op| op.name == name)
}

pub fn names() -> Vec<&'static str> {
    OPS.iter().map(|op| op.name).collect()
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
