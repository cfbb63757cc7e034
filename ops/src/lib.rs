//! tessera-ops: the op table. Each op's launch operands (in ABI order, with their shape:
//! a full matrix, a per-column vector, a gathered table, per-row ids, per-batch lengths),
//! which of them are optional, its runtime scalars (i32 sizes, then f32 arguments, in ABI
//! order), its size extents and the statements its kernels are written with.
//!
//! One table, read by both the `#[gpu_template]` macro (tessera-macros: validation, spanned
//! errors) and the DSL (tessera-dsl: the launch ABI `ir::abi`, the `KernelBuilder`'s global
//! tensors and name resolution). Adding an op is one more [`Op`] row here plus its problem
//! type and lowering.
//!
//! Plain `const` data: it depends on nothing (a proc-macro crate may depend on it, and it must
//! never depend on the DSL or the macro).

/// Which dtype an operand has: the problem's input dtype or its output dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Input,
    Output,
}

/// What an operand holds and how a kernel indexes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A `[rows, cols]` matrix (or a tensor a tile op stages), read at the element's position.
    Matrix,
    /// A `[cols]` vector, read at the element's column (`bias`, `gamma`, `beta`).
    Vector,
    /// A `[n, cols]` table whose row is chosen per kernel row by an index: only read through
    /// a gather, `TABLE[IDS]` or `TABLE[row % SIZE]` (an embedding table).
    Table,
    /// One i32 per kernel row: the index a gather takes (`input_ids`).
    Ids,
    /// One i32 per batch: attention's key lengths (null when the problem has no padding).
    Lens,
    /// `batch + 1` cumulative i32 offsets: where each sequence of a packed (padding-free)
    /// batch starts, the last entry being the token total (attention's `cu_seqlens_q`,
    /// `cu_seqlens_kv`; null when the problem is not packed).
    Offsets,
}

impl Shape {
    /// Whether the operand is i32 data (an index, a length), not elements of the op's dtype.
    pub fn is_int(self) -> bool {
        matches!(self, Shape::Ids | Shape::Lens | Shape::Offsets)
    }
}

/// One global tensor of an op.
#[derive(Debug)]
pub struct Operand {
    pub name: &'static str,
    pub role: Role,
    pub shape: Shape,
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
    /// Runtime i32 size arguments of the launch ABI, in order (after the operands). A gather
    /// `TABLE[row % SIZE]` may name one.
    pub ints: &'static [&'static str],
    /// Runtime f32 arguments of the launch ABI (after the ints) that row expressions may read.
    pub args: &'static [&'static str],
    pub extents: &'static [Extent],
    /// The statement words its kernels may use (`=` for `NAME = EXPR;`).
    pub statements: &'static [&'static str],
}

const fn operand(name: &'static str, role: Role, written: bool) -> Operand {
    shaped(name, role, Shape::Matrix, written)
}

const fn shaped(name: &'static str, role: Role, shape: Shape, written: bool) -> Operand {
    Operand {
        name,
        role,
        shape,
        written,
        optional: false,
    }
}

const fn optional(name: &'static str, role: Role, shape: Shape) -> Operand {
    Operand {
        name,
        role,
        shape,
        written: false,
        optional: true,
    }
}

const fn vector(name: &'static str) -> Operand {
    shaped(name, Role::Input, Shape::Vector, false)
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

/// The table. Operands are in launch-ABI order; a GEMM's ABI adds strides and `alpha`,
/// `beta` (`tessera_dsl::ir::gemm_abi`), every other op's is its operands, `ints`, `args`.
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
        ints: &[],
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
            optional("residual", Role::Input, Shape::Matrix),
            optional("bias", Role::Input, Shape::Vector),
            vector("gamma"),
            vector("beta"),
            operand("y", Role::Output, true),
        ],
        ints: &["rows", "cols"],
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
            // row r reads mask row r / mask_period
            optional("mask", Role::Input, Shape::Matrix),
            operand("y", Role::Output, true),
        ],
        ints: &["rows", "cols", "mask_period"],
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
            optional("kv_lens", Role::Input, Shape::Lens),
            // packed batches: Q, O are [tokens_q, heads, head_dim], K, V [tokens_kv, kv_heads,
            // head_dim]; sequence b owns tokens cu_seqlens[b]..cu_seqlens[b + 1]
            optional("cu_seqlens_q", Role::Input, Shape::Offsets),
            optional("cu_seqlens_kv", Role::Input, Shape::Offsets),
        ],
        // kv_heads: K/V heads (grouped-query attention; = heads without grouping), query head
        // h reads K/V head h / (heads / kv_heads); seq_q, seq_kv: the longest sequence when packed
        ints: &["batch", "heads", "kv_heads", "seq_q", "seq_kv"],
        args: &["scale"],
        extents: &[Extent {
            name: "head_dim",
            max: 128,
        }],
        statements: ATTENTION_STATEMENTS,
    },
    Op {
        name: "embedding",
        kind: "Embedding",
        family: Family::Rows,
        operands: &[
            shaped("input_ids", Role::Input, Shape::Ids, false),
            shaped("token_type_ids", Role::Input, Shape::Ids, false),
            shaped("position_ids", Role::Input, Shape::Ids, false),
            shaped("word", Role::Input, Shape::Table, false),
            shaped("position", Role::Input, Shape::Table, false),
            shaped("token_type", Role::Input, Shape::Table, false),
            vector("gamma"),
            vector("beta"),
            operand("y", Role::Output, true),
        ],
        // rows = tokens (a padded [batch, seq] batch, or a packed one); token t sits at
        // position position_ids[t], each in 0..seq
        ints: &["rows", "cols", "seq"],
        args: &["eps"],
        extents: &[],
        statements: ROW_STATEMENTS,
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
        assert_eq!(
            at.operand_names(|o| o.optional),
            ["kv_lens", "cu_seqlens_q", "cu_seqlens_kv"]
        );
        assert_eq!(ops_with("rows"), ["layernorm", "softmax", "embedding"]);
        assert_eq!(
            at.operand_names(|o| o.shape.is_int()),
            ["kv_lens", "cu_seqlens_q", "cu_seqlens_kv"]
        );
        assert_eq!(
            at.operand_names(|o| o.shape == Shape::Offsets),
            ["cu_seqlens_q", "cu_seqlens_kv"]
        );
        assert_eq!(at.ints, ["batch", "heads", "kv_heads", "seq_q", "seq_kv"]);
        let emb = find("embedding").unwrap();
        assert_eq!(
            emb.operand_names(|o| o.shape == Shape::Table),
            ["word", "position", "token_type"]
        );
        assert_eq!(
            emb.operand_names(|o| o.shape == Shape::Ids),
            ["input_ids", "token_type_ids", "position_ids"]
        );
        assert_eq!(
            (emb.ints, emb.args),
            (&["rows", "cols", "seq"][..], &["eps"][..])
        );
    }

    #[test]
    fn every_op_has_one_output_and_unique_names() {
        for op in OPS {
            assert_eq!(op.operand_names(|o| o.written).len(), 1, "{}", op.name);
            let mut names = op.operand_names(|_| true);
            names.extend(op.ints);
            names.extend(op.args);
            let n = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), n, "{}: a name is used twice", op.name);
        }
        assert_eq!(ops_with("normalize"), ["attention"]);
    }
}
