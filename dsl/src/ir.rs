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
}

impl Operand {
    pub fn name(self) -> &'static str {
        match self {
            Operand::A => "a",
            Operand::B => "b",
            Operand::C => "c",
            Operand::D => "d",
            Operand::Bias => "bias",
            Operand::Residual => "residual",
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

/// Elementwise operators on a fragment (softmax and layernorm building blocks).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum UnaryOp {
    Scale(f32),
    Exp,
    /// Subtract the row value held in a named row vector.
    SubRow,
    /// Multiply by the row value held in a named row vector.
    MulRow,
    Rsqrt,
}

/// One statement of a kernel body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Stmt {
    /// Declare a zero-initialised register fragment.
    Fragment(Fragment),
    /// The pipelined loop over K: every iteration copies one `step`-wide slice of each source
    /// into its shared tile (`stages` slices in flight), then runs `body`.
    Mainloop {
        step: u32,
        stages: u32,
        copies: Vec<TileCopy>,
        body: Vec<Stmt>,
    },
    /// `acc += a · b` over the current shared stage, in MMA atoms.
    Mma { acc: String, a: String, b: String },
    /// Reduce each row of a fragment into a row vector.
    RowReduce {
        src: String,
        dst: String,
        op: ReduceOp,
    },
    /// Apply an elementwise op to a fragment (with an optional row-vector operand).
    Elementwise {
        dst: String,
        op: UnaryOp,
        row: Option<String>,
    },
    /// Apply the epilogue chain to a fragment and store it to a global tensor, predicated on
    /// the problem bounds.
    Epilogue {
        acc: String,
        dst: Operand,
        ops: Vec<EpilogueOp>,
    },
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
}

impl KernelIr {
    pub fn warps(&self) -> u32 {
        self.warps_m * self.warps_n
    }

    /// Threads per block on a device with this warp size.
    pub fn threads(&self, warp_size: u32) -> u32 {
        self.warps() * warp_size
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
    I32(&'static str),
    I64(&'static str),
    F32(&'static str),
}

impl Arg {
    pub fn name(&self) -> &'static str {
        match self {
            Arg::Ptr { name, .. } | Arg::I32(name) | Arg::I64(name) | Arg::F32(name) => name,
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
