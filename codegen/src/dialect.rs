//! The target seams of the warp-level emitters, one small trait per facet:
//! [`InstructionSet`] (types, conversions, shuffles, math, barriers), [`WarpMma`] (the MMA atom,
//! operand fragments, the accumulator layout) and [`CopyPipeline`] (global → shared copies and
//! their completion). [`Dialect`] is their sum, which every target implements.
//!
//! The kernel emitter ([`crate::kernel`]) writes the vendor-neutral structure of a kernel
//! (indexing, pipeline skeleton, copy loops, epilogue math) and asks these facets for each
//! vendor-specific piece. Templates never see a dialect. The sm_90a warp-specialized GEMM
//! (TMA, mbarriers, wgmma) is its own lowering ([`crate::hopper`]), picked by the dispatch
//! policy in `tessera_dsl::pipeline`.

use crate::source::Source;
use crate::CodegenError;
use tessera_dsl::{DType, Layout, MmaAtom, Target};

/// [`WarpMma::for_each_acc`] over `plan`'s accumulator groups, then an error if any group had
/// no registers (a malformed dialect: the body's per-register work would silently vanish).
pub(crate) fn for_each_filled_acc(
    d: &dyn Dialect,
    w: &mut Source,
    plan: &MmaPlan,
    body: &mut dyn FnMut(&mut Source, &AccGroup),
) -> Result<(), CodegenError> {
    let mut empty = false;
    d.for_each_acc(w, plan, &mut |w, g| {
        empty |= g.regs.is_empty();
        body(w, g);
    });
    if empty {
        return Err(CodegenError::Malformed("empty accumulator group".into()));
    }
    Ok(())
}

/// A shared-memory operand of the MMA: a pointer expression to the current stage and its
/// storage geometry.
#[derive(Debug, Clone)]
pub struct SmemOperand {
    /// C expression of the stage's base pointer (element type = storage type).
    pub ptr: String,
    /// Elements between consecutive lines (contiguous extent + padding).
    pub stride: u32,
    /// Which logical dimension is contiguous: for A (m×k) `Row` means k-contiguous; for B
    /// (k×n) `Row` means n-contiguous, `Col` means k-contiguous.
    pub layout: Layout,
}

/// Everything a dialect needs to emit the MMA work of one warp on one shared stage.
#[derive(Debug, Clone)]
pub struct MmaPlan {
    pub input: DType,
    pub atom: MmaAtom,
    /// Warp tile.
    pub wm: u32,
    pub wn: u32,
    pub tile_k: u32,
    /// Expressions of the warp tile's first row / column inside the block tile.
    pub warp_row: String,
    pub warp_col: String,
    pub a: SmemOperand,
    pub b: SmemOperand,
    /// Accumulator array name.
    pub acc: String,
}

/// A group of accumulator values of one thread that sit in consecutive output columns.
#[derive(Debug, Clone)]
pub struct AccGroup {
    /// C lvalues of the values, in column order.
    pub regs: Vec<String>,
    /// Row and first column inside the block tile (C expressions).
    pub row: String,
    pub col: String,
    /// C condition, constant after unrolling, true for the last group of one block of rows:
    /// the epilogue fences memory there so fused-operand loads are not all hoisted at once.
    pub block_end: String,
}

/// Math functions the row kernels' expressions may call (the GEMM epilogue's exponentials
/// take the preludes' `tsr_exp2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MathFn {
    Exp,
    Rsqrt,
    Sqrt,
}

/// The vendor's instruction set: types and conversions, shuffles, math, barriers, the kernel
/// head and the shared-memory declaration. Every kernel uses it.
pub trait InstructionSet {
    fn target(&self) -> Target;

    /// Threads per warp (wavefront).
    fn warp_size(&self) -> u32;

    /// Includes, typedefs and helper functions the kernel relies on.
    fn prelude(&self, w: &mut Source);

    /// Everything before the kernel's name: `extern "C" __global__ ...`.
    fn kernel_head(&self, threads: u32) -> String;

    /// The type that stores one element of `d` in memory. Both dialects store f16/bf16 as
    /// 16-bit integers and convert through the prelude's `tsr_*` helpers (same names in each).
    fn storage_type(&self, d: DType) -> &'static str {
        match d {
            DType::F16 | DType::BF16 => "unsigned short",
            DType::F32 => "float",
        }
    }

    /// A C expression converting a stored element to `float`.
    fn to_float(&self, d: DType, expr: &str) -> String {
        match d {
            DType::F16 => format!("tsr_f16_to_f32({expr})"),
            DType::BF16 => format!("tsr_bf16_to_f32({expr})"),
            DType::F32 => format!("({expr})"),
        }
    }

    /// A C expression converting a `float` to the storage type of `d`.
    fn to_storage(&self, d: DType, expr: &str) -> String {
        match d {
            DType::F16 => format!("tsr_f32_to_f16({expr})"),
            DType::BF16 => format!("tsr_f32_to_bf16({expr})"),
            DType::F32 => format!("({expr})"),
        }
    }

    /// Declaration of the dynamic shared-memory byte array named `smem`.
    fn smem_decl(&self) -> &'static str;

    /// Block-wide barrier.
    fn barrier(&self, w: &mut Source);

    /// The name of a single-precision math function.
    fn math(&self, f: MathFn) -> &'static str;

    /// A type of `words` 32-bit words (1, 2 or 4) for one vector global access: `unsigned`
    /// for one word, else a vector type with components `.x .y (.z .w)`.
    fn word_vector(&self, words: u32) -> &'static str;

    /// A C expression: the f32 `value` of the lane whose index is this lane's xor `lane_mask`
    /// (a butterfly step; every lane of the warp executes it).
    fn shfl_xor(&self, value: &str, lane_mask: u32) -> String;

    /// A C expression of f32 positive infinity (the identity of a max reduction is its negation).
    fn infinity(&self) -> &'static str;

    /// A C expression of `a / b` in f32 with the vendor's fast (approximate) division.
    fn fast_div(&self, a: &str, b: &str) -> String;
}

/// The warp-level MMA lowering (`mma.sync` on NVIDIA, MFMA on AMD): the atom, operand
/// fragments loaded from shared tiles, the accumulator layout, and what attention builds on it
/// (row reductions over accumulator rows, Q·Kᵀ and P·V steps).
pub trait WarpMma: InstructionSet {
    /// The MMA atom this dialect uses for an input dtype.
    fn atom(&self, input: DType) -> Result<MmaAtom, CodegenError>;

    /// The atom with `m` rows a kernel asks for (`mma ... atom M`), or the default one
    /// ([`WarpMma::atom`]) when `m` is `None`. By default only the default atom's rows are
    /// offered; a dialect with several atoms (MFMA 16x16x16 and 32x32x8) overrides this.
    fn atom_with(&self, input: DType, m: Option<u32>) -> Result<MmaAtom, CodegenError> {
        let atom = self.atom(input)?;
        match m {
            Some(m) if m != atom.m => Err(CodegenError::Unsupported(format!(
                "{}: no {m}-row MMA atom for {input} (the atom is {}x{}x{})",
                self.target(),
                atom.m,
                atom.n,
                atom.k
            ))),
            _ => Ok(atom),
        }
    }

    /// Declare and zero the accumulators of one warp tile.
    fn declare_acc(&self, w: &mut Source, plan: &MmaPlan);

    /// Declare the double-buffered operand fragments (`buffer` 0 and 1) of one warp.
    fn declare_fragments(&self, w: &mut Source, plan: &MmaPlan);

    /// Load the operand fragments of atom-step `kk` (a C expression in `0..tile_k/atom.k`) of the
    /// shared stage that `plan.a.ptr` / `plan.b.ptr` point at, into fragment buffer `buffer`.
    fn load_fragments(&self, w: &mut Source, plan: &MmaPlan, buffer: &str, kk: &str);

    /// Issue the MMAs of one atom-step from fragment buffer `buffer` into the accumulators.
    fn mma_step(&self, w: &mut Source, plan: &MmaPlan, buffer: &str);

    /// Emit loops over this thread's accumulators; `body` writes the code for one group.
    fn for_each_acc(
        &self,
        w: &mut Source,
        plan: &MmaPlan,
        body: &mut dyn FnMut(&mut Source, &AccGroup),
    );

    /// Attention: how many accumulator rows of a warp tile one thread holds values of, and
    /// the C expression of the row slot (`0..slots`) of the group [`WarpMma::for_each_acc`]
    /// is visiting (written in that method's loop variables, so valid only inside its body).
    fn acc_row_slots(&self, p: &MmaPlan) -> (u32, String);

    /// Attention: reduce the f32 lvalue `var` in place (max, else sum) over the threads that
    /// hold values of the same accumulator row; each of them ends with the result.
    fn row_allreduce(&self, w: &mut Source, var: &str, max: bool);

    /// Attention: shared-memory bytes the P·V step needs for a block of `warps` warps to
    /// re-layout P (0 when P goes from the score accumulators straight into A fragments).
    fn attn_p_scratch_bytes(&self, p: &crate::attention::plan::AttnPlan, warps: u32) -> u32;

    /// Attention: declare Q's A fragments (all `head_dim / atom.k` steps) and load them from
    /// the Q tile `p.s.a`; they stay in registers for the whole key loop.
    fn attn_load_q(&self, w: &mut Source, p: &crate::attention::plan::AttnPlan);

    /// Attention: `S = Q·Kᵀ` into `p.s.acc` (zeroed first) from the current K stage `p.s.b`;
    /// Q comes from the resident fragments or, without them, from the Q tile.
    fn attn_scores(&self, w: &mut Source, p: &crate::attention::plan::AttnPlan);

    /// Attention: `O += P·V` into `p.o.acc`, P being the score accumulators `p.s.acc`
    /// (probabilities, converted to the input dtype), V the current stage `p.o.b`.
    fn attn_pv(&self, w: &mut Source, p: &crate::attention::plan::AttnPlan);
}

/// The per-thread copy pipeline (multistage `cp.async` on NVIDIA, plain LDS stores on AMD):
/// one chunk copied global → shared, groups committed and awaited.
pub trait CopyPipeline {
    /// Copy `bytes` (4, 8 or 16) from global `src` to shared `dst` when `pred`, else write zeros.
    /// May be asynchronous; completion is awaited with [`CopyPipeline::copy_wait`].
    fn copy_chunk(&self, w: &mut Source, dst: &str, src: &str, bytes: u32, pred: &str);

    /// Close the group of copies issued since the last commit.
    fn copy_commit(&self, w: &mut Source);

    /// Wait until at most `pending` committed groups are still in flight.
    fn copy_wait(&self, w: &mut Source, pending: u32);
}

/// Everything a target gives the vendor-neutral emitters: its instruction set, its warp MMA
/// lowering and its copy pipeline. (The sm_90a warp-specialized GEMM pipeline — TMA, mbarriers,
/// wgmma — is a separate lowering in [`crate::hopper`], chosen by the dispatch policy in
/// `tessera_dsl::pipeline`.)
pub trait Dialect: InstructionSet + WarpMma + CopyPipeline {}

impl<T: InstructionSet + WarpMma + CopyPipeline> Dialect for T {}
