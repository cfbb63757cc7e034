//! The tile-level kernel IR that templates build and dialects lower.
//!
//! A kernel is a block-level program: global tensors (the launch ABI), shared tiles (with a
//! number of pipeline *stages*), register fragments distributed over a grid of warps, a
//! *mainloop* over K that copies global tiles into shared tiles and feeds MMA *atoms*, row
//! reductions and elementwise ops, and an *epilogue* chain ending in a predicated store.
//! The IR says *what* happens; `tessera-codegen` decides *how* for each vendor.

use crate::dtype::DType;
use crate::epilogue::EpilogueOp;
use crate::layout::Layout;
use crate::problem::OpKind;
use crate::space::Variant;
use serde::{Deserialize, Serialize};

/// The role of a global tensor in an op's launch ABI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operand {
    A,
    B,
    C,
    D,
    Bias,
    Residual,
    /// Row-wise ops: the input matrix, the output, the affine vectors and the additive mask.
    X,
    Y,
    Gamma,
    Beta,
    Mask,
    /// Attention: queries, keys, values and the output, each `[batch, heads, seq, head_dim]`.
    Q,
    K,
    V,
    O,
    /// Embedding: the per-token ids (i32), the three tables gathered by them.
    InputIds,
    TokenTypeIds,
    PositionIds,
    Word,
    Position,
    TokenType,
}

impl Operand {
    pub const ALL: [Operand; 21] = [
        Operand::A,
        Operand::B,
        Operand::C,
        Operand::D,
        Operand::Bias,
        Operand::Residual,
        Operand::X,
        Operand::Y,
        Operand::Gamma,
        Operand::Beta,
        Operand::Mask,
        Operand::Q,
        Operand::K,
        Operand::V,
        Operand::O,
        Operand::InputIds,
        Operand::TokenTypeIds,
        Operand::PositionIds,
        Operand::Word,
        Operand::Position,
        Operand::TokenType,
    ];

    /// The operand whose ABI name is `name` (the op table's operand names).
    pub fn from_name(name: &str) -> Option<Operand> {
        Self::ALL.into_iter().find(|o| o.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Operand::A => "a",
            Operand::B => "b",
            Operand::C => "c",
            Operand::D => "d",
            Operand::Bias => "bias",
            Operand::Residual => "residual",
            Operand::X => "x",
            Operand::Y => "y",
            Operand::Gamma => "gamma",
            Operand::Beta => "beta",
            Operand::Mask => "mask",
            Operand::Q => "q",
            Operand::K => "k",
            Operand::V => "v",
            Operand::O => "o",
            Operand::InputIds => "input_ids",
            Operand::TokenTypeIds => "token_type_ids",
            Operand::PositionIds => "position_ids",
            Operand::Word => "word",
            Operand::Position => "position",
            Operand::TokenType => "token_type",
        }
    }
}

/// A global (device-memory) tensor the kernel reads or writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalTensor {
    pub operand: Operand,
    pub dtype: DType,
    pub layout: Layout,
    pub written: bool,
}

/// A tile in shared memory (LDS), `stages` deep for the pipelined mainloop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedTile {
    pub name: String,
    /// The global tensor it stages.
    pub source: Operand,
    pub dtype: DType,
    /// Logical rows × cols (for B: k × n).
    pub rows: u32,
    pub cols: u32,
    /// Which dimension is contiguous (taken from the global tensor's layout).
    pub layout: Layout,
    /// Elements of padding after each contiguous line (against bank conflicts).
    pub pad: u32,
    pub stages: u32,
}

impl SharedTile {
    /// (lines, elements per line including padding).
    pub fn storage(&self) -> (u32, u32) {
        match self.layout {
            Layout::Row => (self.rows, self.cols + self.pad),
            Layout::Col => (self.cols, self.rows + self.pad),
        }
    }

    /// Bytes of one stage.
    pub fn stage_bytes(&self) -> u32 {
        let (lines, per_line) = self.storage();
        lines * per_line * self.dtype.size_bytes()
    }

    pub fn bytes(&self) -> u32 {
        self.stage_bytes() * self.stages
    }
}

/// A register tile distributed over a `warps_m × warps_n` grid of warps: each warp owns a
/// `(rows / warps_m) × (cols / warps_n)` warp tile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fragment {
    pub name: String,
    pub dtype: DType,
    pub rows: u32,
    pub cols: u32,
    pub warps_m: u32,
    pub warps_n: u32,
}

impl Fragment {
    pub fn warp_tile(&self) -> (u32, u32) {
        (self.rows / self.warps_m, self.cols / self.warps_n)
    }
}

/// Reduction operators for row reductions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReduceOp {
    Sum,
    Max,
}

/// The rows of a row-wise kernel: a block handles `rows` rows; each row is spread over
/// `threads` threads that access `vector` contiguous elements at a time. The row length is the
/// variant's `extent`, so every thread holds `ceil(extent / (threads·vector))` vectors of the
/// row in registers (as f32).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowTile {
    pub name: String,
    pub rows: u32,
    pub threads: u32,
    pub vector: u32,
}

impl RowTile {
    /// Vectors of the row each thread holds for a row of `extent` elements.
    pub fn chunks(&self, extent: u32) -> u32 {
        extent.div_ceil(self.threads * self.vector).max(1)
    }
}

/// Binary operators of row expressions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Max,
}

/// Functions of row expressions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RowFn {
    Exp,
    Rsqrt,
    Sqrt,
}

/// Which row of a table a gather reads for kernel row `row`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RowIndex {
    /// `ids[row]`, from an i32 operand with one id per row (`input_ids`).
    Ids(Operand),
    /// `row % SIZE`, SIZE an i32 argument of the launch ABI (`seq`: the position of a token
    /// in its sequence).
    RowMod(String),
}

/// An f32 expression evaluated per element of a row tile (or per row, for row scalars).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RowExpr {
    /// The current element of a row tile.
    Tile(String),
    /// A row scalar (the result of a reduction or a `let`).
    Row(String),
    /// The element at the same (row, col) of a full-size global tensor (`residual`), or of a
    /// broadcast one (`mask`: row `r` reads mask row `r / mask_period`).
    At(Operand),
    /// The element at this column of a per-column vector (`bias`, `gamma`, `beta`).
    Col(Operand),
    /// The element at this column of the table row the index picks (`word[input_ids]`).
    Gather {
        table: Operand,
        index: RowIndex,
    },
    /// A runtime f32 argument of the launch ABI (`eps`, `scale`).
    Arg(String),
    /// The row length, as f32.
    Extent,
    Lit(f32),
    Bin(BinOp, Box<RowExpr>, Box<RowExpr>),
    Call(RowFn, Box<RowExpr>),
}

impl RowExpr {
    pub fn bin(op: BinOp, a: RowExpr, b: RowExpr) -> RowExpr {
        RowExpr::Bin(op, Box::new(a), Box::new(b))
    }

    /// Every global operand the expression reads.
    pub fn operands(&self, out: &mut Vec<Operand>) {
        match self {
            RowExpr::At(o) | RowExpr::Col(o) => out.push(*o),
            RowExpr::Gather { table, index } => {
                out.push(*table);
                if let RowIndex::Ids(ids) = index {
                    out.push(*ids);
                }
            }
            RowExpr::Bin(_, a, b) => {
                a.operands(out);
                b.operands(out);
            }
            RowExpr::Call(_, a) => a.operands(out),
            _ => {}
        }
    }

    /// Whether the expression depends on the element (not only on the row).
    pub fn per_element(&self) -> bool {
        match self {
            RowExpr::Tile(_) | RowExpr::At(_) | RowExpr::Col(_) | RowExpr::Gather { .. } => true,
            RowExpr::Bin(_, a, b) => a.per_element() || b.per_element(),
            RowExpr::Call(_, a) => a.per_element(),
            _ => false,
        }
    }
}

/// One statement of a kernel body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Stmt {
    /// Declare a zero-initialised register fragment.
    Fragment(Fragment),
    /// The pipelined loop over K (or over key blocks): every iteration copies one `step`-wide
    /// slice of each source into its shared tile (`stages` slices in flight), then runs `body`.
    Mainloop {
        step: u32,
        stages: u32,
        copies: Vec<TileCopy>,
        body: Vec<Stmt>,
    },
    /// `acc += a · b` (or `a · bᵀ` when `b_transposed`) over the current shared stage, in MMA
    /// atoms. `a` names a shared tile or a fragment (attention's P, converted to the input
    /// dtype); with `fresh` the accumulator is zeroed first (`=` instead of `+=`). `atom`
    /// asks for the atom with that many rows (`mma ... atom 32`: MFMA 32x32x8 on AMD); `None`
    /// takes the target's default atom.
    Mma {
        acc: String,
        a: String,
        b: String,
        #[serde(default)]
        b_transposed: bool,
        #[serde(default)]
        fresh: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        atom: Option<u32>,
    },
    /// Copy a whole tile from global memory into a one-stage shared tile, outside any mainloop
    /// (attention's Q block).
    LoadOnce { src: Operand, dst: String },
    /// Apply the variant's mask to a score fragment: keys past the sequence end, and causal or
    /// padding positions, become −∞.
    Mask { frag: String },
    /// The online-softmax step on a score fragment: scale, track the running row max and sum,
    /// rescale `acc` by `exp(max_old − max_new)` and turn the scores into probabilities.
    OnlineSoftmax { scores: String, acc: String },
    /// Divide each row of `acc` by the running sum of the online softmax that fed it.
    Normalize { acc: String },
    /// Apply the epilogue chain to a fragment and store it to a global tensor, predicated on
    /// the problem bounds.
    Epilogue {
        acc: String,
        dst: Operand,
        ops: Vec<EpilogueOp>,
    },
    /// Declare the rows of a row-wise kernel.
    Rows(RowTile),
    /// Load this block's rows of a global matrix into a row tile (as f32).
    RowLoad { dst: String, src: Operand },
    /// `dst[i] = expr` for every element of the row tile `dst`.
    Map { dst: String, expr: RowExpr },
    /// `dst = reduce(expr)` over each row: a new row scalar.
    RowReduce {
        dst: String,
        op: ReduceOp,
        expr: RowExpr,
    },
    /// `dst = expr` per row: a new row scalar from other row scalars.
    RowLet { dst: String, expr: RowExpr },
    /// Store a row tile to a global matrix (converted to its dtype), predicated on the bounds.
    RowStore { src: String, dst: Operand },
}

/// An asynchronous global → shared copy of one K slice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TileCopy {
    pub src: Operand,
    pub dst: String,
}

/// A whole kernel, ready for a dialect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelIr {
    /// `Config::kernel_name()`: the symbol.
    pub name: String,
    pub op: OpKind,
    pub variant: Variant,
    /// Block tile (rows × cols of the output per block) and K step.
    pub tile_m: u32,
    pub tile_n: u32,
    pub tile_k: u32,
    pub warps_m: u32,
    pub warps_n: u32,
    pub globals: Vec<GlobalTensor>,
    pub shared: Vec<SharedTile>,
    pub body: Vec<Stmt>,
    /// The kernel asks for a persistent grid (`mainloop ... schedule S` with `S` nonzero): at
    /// most one block per multiprocessor, each walking several tiles. A pipeline that cannot
    /// walk tiles refuses it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub persistent: bool,
    /// Blocks of one cluster that share each tile's reduction range (`mainloop ... split S`;
    /// attention: its keys, each block walking a share and the cluster combining the partial
    /// softmaxes through distributed shared memory). 1 keeps the range whole; a pipeline that
    /// cannot split refuses anything else.
    #[serde(default = "whole_range", skip_serializing_if = "is_whole_range")]
    pub split: u32,
    /// Attention: each tile's rows are the query heads of one K/V head's group, head-major,
    /// each with its queries (`mainloop ... group 1`), so grouped-query attention reads each
    /// K/V head once per group. A pipeline that cannot group refuses it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub group_heads: bool,
    /// The output tile leaves by bulk tensor copies (`epilogue ... bulk 1`: on sm_90a a TMA
    /// store from a swizzled staging tile) rather than the warps' own stores. A pipeline that
    /// cannot refuses it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bulk_store: bool,
    /// Blocks of one cluster, adjacent along M, that share each B tile they all read
    /// (`mainloop ... multicast C`: on sm_90a each block copies 1/C of it, multicast by TMA
    /// into every block of the cluster). 1: every block copies its own; a pipeline that cannot
    /// multicast refuses anything else.
    #[serde(default = "whole_range", skip_serializing_if = "is_whole_range")]
    pub multicast: u32,
}

/// [`KernelIr::split`] of a kernel whose blocks each walk their tile's whole range.
fn whole_range() -> u32 {
    1
}

fn is_whole_range(split: &u32) -> bool {
    *split == 1
}

impl KernelIr {
    pub fn warps(&self) -> u32 {
        self.warps_m * self.warps_n
    }

    /// Threads per block on a device with this warp size (a row-wise kernel's come from its
    /// row tile, whatever the warp size).
    pub fn threads(&self, warp_size: u32) -> u32 {
        match self.row_tile() {
            Some(r) => r.rows * r.threads,
            None => self.warps() * warp_size,
        }
    }

    /// The row tile of a row-wise kernel.
    pub fn row_tile(&self) -> Option<&RowTile> {
        self.body.iter().find_map(|s| match s {
            Stmt::Rows(r) => Some(r),
            _ => None,
        })
    }

    /// Shared memory the kernel needs, bytes.
    pub fn smem_bytes(&self) -> u32 {
        self.shared.iter().map(SharedTile::bytes).sum()
    }

    pub fn shared_tile(&self, name: &str) -> Option<&SharedTile> {
        self.shared.iter().find(|s| s.name == name)
    }

    pub fn global(&self, operand: Operand) -> Option<&GlobalTensor> {
        self.globals.iter().find(|g| g.operand == operand)
    }

    /// Every fragment declared anywhere in the body.
    pub fn fragments(&self) -> Vec<&Fragment> {
        fn walk<'a>(stmts: &'a [Stmt], out: &mut Vec<&'a Fragment>) {
            for s in stmts {
                match s {
                    Stmt::Fragment(f) => out.push(f),
                    Stmt::Mainloop { body, .. } => walk(body, out),
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.body, &mut out);
        out
    }

    /// The atom rows the MMA statement feeding fragment `acc` asks for (`None`: the target's
    /// default atom).
    pub fn mma_atom(&self, acc: &str) -> Option<u32> {
        fn walk(stmts: &[Stmt], acc: &str) -> Option<u32> {
            stmts.iter().find_map(|s| match s {
                Stmt::Mma { acc: x, atom, .. } if x == acc => *atom,
                Stmt::Mainloop { body, .. } => walk(body, acc),
                _ => None,
            })
        }
        walk(&self.body, acc)
    }

    /// Accumulator values each thread holds (a first register-pressure estimate).
    pub fn acc_per_thread(&self, warp_size: u32) -> u32 {
        self.fragments()
            .iter()
            .map(|f| f.rows * f.cols / (self.threads(warp_size)).max(1))
            .sum()
    }
}

/// One argument of a kernel's launch ABI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Arg {
    /// A device pointer to elements of this dtype; `written` if the kernel stores through it.
    Ptr {
        name: &'static str,
        dtype: DType,
        written: bool,
    },
    /// A device pointer to i32 values (attention's per-batch key lengths or packed-sequence
    /// offsets; may be null).
    I32Ptr(&'static str),
    I32(&'static str),
    I64(&'static str),
    F32(&'static str),
}

impl Arg {
    pub fn name(&self) -> &'static str {
        match self {
            Arg::Ptr { name, .. }
            | Arg::I32Ptr(name)
            | Arg::I32(name)
            | Arg::I64(name)
            | Arg::F32(name) => name,
        }
    }
}

/// The fixed launch ABI of a GEMM kernel (unused operand pointers may be null):
/// `a, b, c, d, bias, residual, M, N, K, lda, ldb, ldc, ldd, stride_a, stride_b, stride_c,
/// stride_d, alpha, beta`. The grid is `(ceil(M/tile_m)·ceil(N/tile_n), 1, batch)`.
pub fn gemm_abi(variant: &Variant) -> Vec<Arg> {
    let (i, o) = (variant.input, variant.output);
    vec![
        Arg::Ptr {
            name: "a",
            dtype: i,
            written: false,
        },
        Arg::Ptr {
            name: "b",
            dtype: i,
            written: false,
        },
        Arg::Ptr {
            name: "c",
            dtype: o,
            written: false,
        },
        Arg::Ptr {
            name: "d",
            dtype: o,
            written: true,
        },
        Arg::Ptr {
            name: "bias",
            dtype: o,
            written: false,
        },
        Arg::Ptr {
            name: "residual",
            dtype: o,
            written: false,
        },
        Arg::I32("M"),
        Arg::I32("N"),
        Arg::I32("K"),
        Arg::I64("lda"),
        Arg::I64("ldb"),
        Arg::I64("ldc"),
        Arg::I64("ldd"),
        Arg::I64("stride_a"),
        Arg::I64("stride_b"),
        Arg::I64("stride_c"),
        Arg::I64("stride_d"),
        Arg::F32("alpha"),
        Arg::F32("beta"),
    ]
}

/// The launch ABI of any op, from its row of the op table (`tessera_ops`): the operands in
/// table order (element pointers of the input or output dtype; i32 pointers for ids and
/// lengths), then the i32 sizes, then the f32 arguments; a GEMM's is [`gemm_abi`]. Row-wise
/// kernels launch `ceil(rows / tile rows)` blocks; attention launches
/// `(ceil(seq_q / block_q), heads, batch)`.
///
/// - layernorm: `x, residual, bias, gamma, beta, y, rows, cols, eps`
/// - softmax: `x, mask, y, rows, cols, mask_period, scale`
/// - attention: `q, k, v, o, kv_lens, cu_seqlens_q, cu_seqlens_kv, batch, heads, kv_heads,
///   seq_q, seq_kv, scale`
/// - embedding: `input_ids, token_type_ids, position_ids, word, position, token_type, gamma,
///   beta, y, rows, cols, seq, eps`
pub fn abi(op: OpKind, variant: &Variant) -> Vec<Arg> {
    if op == OpKind::Gemm {
        return gemm_abi(variant);
    }
    let spec = op.spec();
    let mut out = Vec::new();
    for o in spec.operands {
        out.push(if o.shape.is_int() {
            Arg::I32Ptr(o.name)
        } else {
            Arg::Ptr {
                name: o.name,
                dtype: match o.role {
                    tessera_ops::Role::Input => variant.input,
                    tessera_ops::Role::Output => variant.output,
                },
                written: o.written,
            }
        });
    }
    out.extend(spec.ints.iter().map(|n| Arg::I32(n)));
    out.extend(spec.args.iter().map(|n| Arg::F32(n)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::problem::Problem;
    use crate::template::variant_for;

    fn names(op: OpKind, p: &Problem) -> Vec<&'static str> {
        abi(op, &variant_for(DType::F32, p))
            .iter()
            .map(Arg::name)
            .collect()
    }

    #[test]
    fn abis_follow_the_op_table() {
        use crate::problem::{AttentionProblem, EmbeddingProblem, LayernormProblem};
        let ln = Problem::Layernorm(LayernormProblem::new(8, 64));
        assert_eq!(
            names(OpKind::Layernorm, &ln),
            ["x", "residual", "bias", "gamma", "beta", "y", "rows", "cols", "eps"]
        );
        let at = Problem::Attention(AttentionProblem::new(1, 2, 8, 64));
        let abi_at = abi(OpKind::Attention, &variant_for(DType::F32, &at));
        assert_eq!(abi_at[4], Arg::I32Ptr("kv_lens"));
        assert_eq!(abi_at[5], Arg::I32Ptr("cu_seqlens_q"));
        assert_eq!(abi_at[6], Arg::I32Ptr("cu_seqlens_kv"));
        assert_eq!(abi_at[9], Arg::I32("kv_heads"));
        assert_eq!(
            names(OpKind::Attention, &at),
            [
                "q",
                "k",
                "v",
                "o",
                "kv_lens",
                "cu_seqlens_q",
                "cu_seqlens_kv",
                "batch",
                "heads",
                "kv_heads",
                "seq_q",
                "seq_kv",
                "scale"
            ]
        );
        let mut emb = EmbeddingProblem::new(16, 64, 8);
        emb.dtype = DType::BF16;
        let emb = Problem::Embedding(emb);
        let abi_emb = abi(OpKind::Embedding, &variant_for(DType::F32, &emb));
        assert_eq!(
            abi_emb.iter().map(Arg::name).collect::<Vec<_>>(),
            [
                "input_ids",
                "token_type_ids",
                "position_ids",
                "word",
                "position",
                "token_type",
                "gamma",
                "beta",
                "y",
                "rows",
                "cols",
                "seq",
                "eps"
            ]
        );
        assert_eq!(abi_emb[0], Arg::I32Ptr("input_ids"));
        assert_eq!(
            abi_emb[8],
            Arg::Ptr {
                name: "y",
                dtype: DType::BF16,
                written: true
            }
        );
        // every table operand name is an IR operand or an i32 pointer
        for op in tessera_ops::OPS {
            for o in op.operands {
                assert!(
                    o.shape.is_int() || Operand::from_name(o.name).is_some(),
                    "{}",
                    o.name
                );
            }
        }
    }
}
