//! The HIP dialect: AMD CDNA (gfx90a, gfx942) with MFMA atoms, LDS tiles and wavefronts of 64.
//!
//! Two f16/bf16 MFMA atoms lower the GEMM mainloop: `16x16x16` (the default, 4 f32 per lane)
//! and `32x32x8` (asked for with `mma ... atom 32`, 16 f32 per lane: the same wavefront work
//! with half the operand traffic per flop). Both have one operand layout, parameterised by the
//! atom's rows `m` (see [`Mfma`]); attention keeps the 16x16x16 atom.
//!
//! Global → LDS copies are plain vector loads and stores (CDNA2 has no asynchronous copy into
//! LDS), so commit/wait are no-ops and the pipeline skeleton's barriers order the stages.

use crate::dialect::{AccGroup, CopyPipeline, InstructionSet, MathFn, MmaPlan, WarpMma};
use crate::source::Source;
use crate::CodegenError;
use tessera_dsl::{DType, Layout, MmaAtom, Target};

pub struct Hip {
    pub target: Target,
}

/// The geometry of one f16/bf16 MFMA atom (`m`x`m`x`k`, `m` = 16 or 32), as CDNA's matrix
/// instruction documentation lays it out for a wavefront of 64 lanes:
///
/// * A (`m`x`k`): lane `l` holds `A[l % m][4(l / m) .. +4]` (4 elements, one 64-bit register);
/// * B (`k`x`m`): lane `l` holds `B[4(l / m) .. +4][l % m]`;
/// * D (`m`x`m`, f32): lane `l`, element `r` (`0..m·m/64`) holds
///   `D[8(r / 4)·(m / 32) + 4(l / m) + r % 4][l % m]` — for 16x16x16 `D[4(l/16) + r][l % 16]`,
///   for 32x32x8 four groups of 4 rows, `D[8(r/4) + 4(l/32) + r % 4][l % 32]`.
///
/// The methods return C expressions in the emitted kernel's names (`lane`, the loop variables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mfma {
    /// Rows (= columns) of the atom: 16 or 32.
    pub m: u32,
    /// K of the atom: 16 or 8 (4 elements per lane × 64 / m lane groups).
    pub k: u32,
}

impl Mfma {
    /// The atom of `atom` (`None` for a shape CDNA has no f16/bf16 MFMA of).
    pub fn of(atom: MmaAtom) -> Option<Mfma> {
        match (atom.m, atom.n, atom.k) {
            (16, 16, 16) | (32, 32, 8) => Some(Mfma {
                m: atom.m,
                k: atom.k,
            }),
            _ => None,
        }
    }

    /// f32 accumulators per lane.
    pub fn acc_regs(self) -> u32 {
        self.m * self.m / 64
    }

    /// `lane % m`: the A row / B column / D column of a lane inside the atom.
    pub fn lane_line(self) -> String {
        format!("(lane & {})", self.m - 1)
    }

    /// `lane / m`: the lane's group of 4 along K (and of 4 D rows).
    pub fn lane_group(self) -> String {
        format!("(lane >> {})", self.m.trailing_zeros())
    }

    /// The accumulator vector type.
    pub fn acc_type(self) -> &'static str {
        if self.m == 32 {
            "tsr_float16"
        } else {
            "tsr_float4"
        }
    }

    /// The builtin for an input dtype.
    pub fn builtin(self, input: DType) -> &'static str {
        match (self.m, input) {
            (32, DType::BF16) => "__builtin_amdgcn_mfma_f32_32x32x8bf16_1k",
            (32, _) => "__builtin_amdgcn_mfma_f32_32x32x8f16",
            (_, DType::BF16) => "__builtin_amdgcn_mfma_f32_16x16x16bf16_1k",
            _ => "__builtin_amdgcn_mfma_f32_16x16x16f16",
        }
    }

    /// Element offset in a line-major shared tile of the first of the 4 contiguous K elements
    /// lane `lane` contributes to atom-step `kk` for the atom at line `line0` (`warp_row +
    /// i·m` for A, `warp_col + j·m` for K-contiguous B).
    pub fn k_contiguous_offset(self, line0: &str, stride: u32, kk: &str) -> String {
        format!(
            "({line0} + {}) * {stride} + ({kk}) * {} + {} * 4",
            self.lane_line(),
            self.k,
            self.lane_group()
        )
    }

    /// Element offset in an N-contiguous (row-major) B tile of the first of the lane's 4 K
    /// elements (the next ones are `stride` apart) for the atom at column `col0`.
    pub fn n_contiguous_offset(self, col0: &str, stride: u32, kk: &str) -> String {
        format!(
            "(({kk}) * {} + {} * 4) * {stride} + {col0} + {}",
            self.k,
            self.lane_group(),
            self.lane_line()
        )
    }

    /// Row of accumulator element `e` (a C expression in `0..acc_regs`) inside the atom.
    pub fn acc_row(self, e: &str) -> String {
        if self.m == 16 {
            format!("{} * 4 + {e}", self.lane_group())
        } else {
            format!("({e} >> 2) * 8 + {} * 4 + ({e} & 3)", self.lane_group())
        }
    }
}

/// The MFMA atom of a plan; the dialect only plans atoms [`Mfma::of`] knows.
fn mfma(p: &MmaPlan) -> Mfma {
    Mfma::of(p.atom).unwrap_or(Mfma { m: 16, k: 16 })
}

/// The MFMA operand vector type for an input dtype.
fn fragment_type(input: DType) -> &'static str {
    match input {
        DType::BF16 => "tsr_short4",
        _ => "tsr_half4",
    }
}

const PRELUDE: &str = r#"// Tessera generated HIP
#include <hip/hip_runtime.h>
typedef _Float16 tsr_half4 __attribute__((ext_vector_type(4)));
typedef short tsr_short4 __attribute__((ext_vector_type(4)));
typedef float tsr_float4 __attribute__((ext_vector_type(4)));
typedef unsigned tsr_u32x4 __attribute__((ext_vector_type(4)));
typedef unsigned tsr_u32x2 __attribute__((ext_vector_type(2)));
static __device__ inline float tsr_f16_to_f32(unsigned short h) { return (float)__builtin_bit_cast(_Float16, h); }
static __device__ inline unsigned short tsr_f32_to_f16(float f) { return __builtin_bit_cast(unsigned short, (_Float16)f); }
static __device__ inline float tsr_bf16_to_f32(unsigned short h) { return __builtin_bit_cast(float, ((unsigned)h) << 16); }
static __device__ inline unsigned short tsr_f32_to_bf16(float f) {
  unsigned u = __builtin_bit_cast(unsigned, f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (unsigned short)(u >> 16);
}
static __device__ inline void tsr_copy16(void* dst, const void* src, bool pred) {
  tsr_u32x4 v = {0u, 0u, 0u, 0u};
  if (pred) v = *(const tsr_u32x4*)src;
  *(tsr_u32x4*)dst = v;
}
static __device__ inline void tsr_copy8(void* dst, const void* src, bool pred) {
  tsr_u32x2 v = {0u, 0u};
  if (pred) v = *(const tsr_u32x2*)src;
  *(tsr_u32x2*)dst = v;
}
static __device__ inline void tsr_copy4(void* dst, const void* src, bool pred) {
  *(unsigned*)dst = pred ? *(const unsigned*)src : 0u;
}
static __device__ inline float tsr_neg_inf() { return -__builtin_huge_valf(); }
static __device__ inline float tsr_exp2(float x) { return exp2f(x); }"#;

impl InstructionSet for Hip {
    fn target(&self) -> Target {
        self.target
    }

    fn warp_size(&self) -> u32 {
        64
    }

    fn prelude(&self, w: &mut Source) {
        w.lines(PRELUDE);
    }

    fn kernel_head(&self, threads: u32) -> String {
        format!("extern \"C\" __global__ void __launch_bounds__({threads})")
    }

    fn smem_decl(&self) -> &'static str {
        "extern __shared__ __attribute__((aligned(128))) unsigned char smem[];"
    }

    fn barrier(&self, w: &mut Source) {
        w.line("__syncthreads();");
    }

    fn math(&self, f: MathFn) -> &'static str {
        match f {
            MathFn::Exp => "__expf",
            MathFn::Rsqrt => "rsqrtf",
            MathFn::Sqrt => "sqrtf",
        }
    }

    fn word_vector(&self, words: u32) -> &'static str {
        match words {
            1 => "unsigned",
            2 => "tsr_u32x2",
            _ => "tsr_u32x4",
        }
    }

    fn shfl_xor(&self, value: &str, lane_mask: u32) -> String {
        format!("__shfl_xor({value}, {lane_mask})")
    }

    fn infinity(&self) -> &'static str {
        "__builtin_inff()"
    }

    fn fast_div(&self, a: &str, b: &str) -> String {
        format!("__fdividef({a}, {b})")
    }
}

impl WarpMma for Hip {
    fn atom(&self, input: DType) -> Result<MmaAtom, CodegenError> {
        self.atom_with(input, None)
    }

    fn atom_with(&self, input: DType, m: Option<u32>) -> Result<MmaAtom, CodegenError> {
        match (input, m) {
            (DType::F16 | DType::BF16, None | Some(16)) => Ok(MmaAtom::new(16, 16, 16, input)),
            (DType::F16 | DType::BF16, Some(32)) => Ok(MmaAtom::new(32, 32, 8, input)),
            (DType::F16 | DType::BF16, Some(m)) => Err(CodegenError::Unsupported(format!(
                "{}: no {m}-row MFMA atom (16x16x16 and 32x32x8 exist)",
                self.target
            ))),
            (DType::F32, _) => Err(CodegenError::Unsupported(format!(
                "{}: no MFMA atom for f32 inputs in Tessera",
                self.target
            ))),
        }
    }

    fn declare_acc(&self, w: &mut Source, p: &MmaPlan) {
        let (mi, ni) = (p.wm / p.atom.m, p.wn / p.atom.n);
        let f = mfma(p);
        let ty = f.acc_type();
        if f.m == 32 {
            w.line("typedef float tsr_float16 __attribute__((ext_vector_type(16)));");
        }
        w.line(format!("{ty} {}[{mi}][{ni}];", p.acc));
        w.line("#pragma unroll");
        w.open(format!("for (int i = 0; i < {mi}; ++i)"));
        w.line("#pragma unroll");
        w.open(format!("for (int j = 0; j < {ni}; ++j)"));
        if f.m == 32 {
            w.line(format!("{}[i][j] = {ty}{{}};", p.acc));
        } else {
            w.line(format!(
                "{}[i][j] = tsr_float4{{0.f, 0.f, 0.f, 0.f}};",
                p.acc
            ));
        }
        w.close("");
        w.close("");
    }

    fn declare_fragments(&self, w: &mut Source, p: &MmaPlan) {
        let (mi, ni) = (p.wm / p.atom.m, p.wn / p.atom.n);
        let frag = fragment_type(p.input);
        w.line(format!("{frag} af[2][{mi}];"));
        w.line(format!("{frag} bf[2][{ni}];"));
    }

    fn load_fragments(&self, w: &mut Source, p: &MmaPlan, buf: &str, kk: &str) {
        let (mi, ni) = (p.wm / p.atom.m, p.wn / p.atom.n);
        let frag = fragment_type(p.input);
        let f = mfma(p);
        let m = f.m;
        // MFMA operands: lane l holds A[l%m][4(l/m)..+4] and B[4(l/m)..+4][l%m].
        w.line("#pragma unroll");
        w.open(format!("for (int i = 0; i < {mi}; ++i)"));
        w.line(format!(
            "af[{buf}][i] = *(const {frag}*)({} + {});",
            p.a.ptr,
            f.k_contiguous_offset(&format!("{} + i * {m}", p.warp_row), p.a.stride, kk)
        ));
        w.close("");
        w.line("#pragma unroll");
        w.open(format!("for (int j = 0; j < {ni}; ++j)"));
        match p.b.layout {
            Layout::Col => w.line(format!(
                "bf[{buf}][j] = *(const {frag}*)({} + {});",
                p.b.ptr,
                f.k_contiguous_offset(&format!("{} + j * {m}", p.warp_col), p.b.stride, kk)
            )),
            Layout::Row => {
                w.line(format!(
                    "const unsigned short* bp = {} + {};",
                    p.b.ptr,
                    f.n_contiguous_offset(&format!("{} + j * {m}", p.warp_col), p.b.stride, kk)
                ));
                w.line(format!(
                    "bf[{buf}][j] = __builtin_bit_cast({frag}, (unsigned long long)bp[0] | ((unsigned long long)bp[{s}] << 16) | ((unsigned long long)bp[2 * {s}] << 32) | ((unsigned long long)bp[3 * {s}] << 48));",
                    s = p.b.stride
                ));
            }
        }
        w.close("");
    }

    fn mma_step(&self, w: &mut Source, p: &MmaPlan, buf: &str) {
        let (mi, ni) = (p.wm / p.atom.m, p.wn / p.atom.n);
        let mfma = mfma(p).builtin(p.input);
        w.line("#pragma unroll");
        w.open(format!("for (int i = 0; i < {mi}; ++i)"));
        w.line("#pragma unroll");
        w.open(format!("for (int j = 0; j < {ni}; ++j)"));
        w.line(format!(
            "{0}[i][j] = {mfma}(af[{buf}][i], bf[{buf}][j], {0}[i][j], 0, 0, 0);",
            p.acc
        ));
        w.close("");
        w.close("");
    }

    fn for_each_acc(
        &self,
        w: &mut Source,
        p: &MmaPlan,
        body: &mut dyn FnMut(&mut Source, &AccGroup),
    ) {
        let (mi, ni) = (p.wm / p.atom.m, p.wn / p.atom.n);
        let f = mfma(p);
        let (m, regs) = (f.m, f.acc_regs());
        // m x m accumulator: lane l, element e holds D[acc_row(e)][l % m] (see `Mfma`); one
        // value per group, the block of rows ends at the last column atom's last element
        w.line("#pragma unroll");
        w.open(format!("for (int i = 0; i < {mi}; ++i)"));
        w.line("#pragma unroll");
        w.open(format!("for (int j = 0; j < {ni}; ++j)"));
        w.line("#pragma unroll");
        w.open(format!("for (int e = 0; e < {regs}; ++e)"));
        body(
            w,
            &AccGroup {
                regs: vec![format!("{}[i][j][e]", p.acc)],
                row: format!("{} + i * {m} + {}", p.warp_row, f.acc_row("e")),
                col: format!("{} + j * {m} + {}", p.warp_col, f.lane_line()),
                block_end: format!("j == {} && e == {}", ni - 1, regs - 1),
            },
        );
        w.close("");
        w.close("");
        w.close("");
    }

    fn acc_row_slots(&self, p: &MmaPlan) -> (u32, String) {
        // for_each_acc visits (i, j, e): each element e of atom row-block i is its own row
        // (16x16: rows i·16 + 4(lane/16) + e), so slot i·regs + e
        let regs = mfma(p).acc_regs();
        (p.wm / p.atom.m * regs, format!("i * {regs} + e"))
    }

    fn row_allreduce(&self, w: &mut Source, var: &str, max: bool) {
        // a row of a 16x16 accumulator lives in the 16 lanes that share lane / 16
        for o in [1, 2, 4, 8] {
            let other = format!("__shfl_xor({var}, {o})");
            if max {
                w.line(format!("{var} = fmaxf({var}, {other});"));
            } else {
                w.line(format!("{var} += {other};"));
            }
        }
    }

    fn attn_p_scratch_bytes(&self, p: &crate::attention::plan::AttnPlan, warps: u32) -> u32 {
        // P goes through LDS: each wavefront writes its wm x block_kv probabilities
        warps * p.o.wm * p.o.a.stride * p.o.input.size_bytes()
    }

    fn attn_load_q(&self, w: &mut Source, p: &crate::attention::plan::AttnPlan) {
        let s = &p.s;
        let (mi, ks) = (s.wm / s.atom.m, s.tile_k / s.atom.k);
        let frag = fragment_type(s.input);
        // MFMA A operand: lane l holds Q[l % 16][4(l / 16)..+4] of each 16x16 piece
        w.line(format!("{frag} qf[{ks}][{mi}];"));
        w.line("#pragma unroll");
        w.open(format!("for (int kk = 0; kk < {ks}; ++kk)"));
        w.line("#pragma unroll");
        w.open(format!("for (int i = 0; i < {mi}; ++i)"));
        w.line(format!(
            "qf[kk][i] = *(const {frag}*)({} + ({} + i * 16 + (lane & 15)) * {} + kk * 16 + (lane >> 4) * 4);",
            s.a.ptr, s.warp_row, s.a.stride
        ));
        w.close("");
        w.close("");
    }

    fn attn_scores(&self, w: &mut Source, p: &crate::attention::plan::AttnPlan) {
        let s = &p.s;
        let (mi, ni, ks) = (s.wm / s.atom.m, s.wn / s.atom.n, s.tile_k / s.atom.k);
        let frag = fragment_type(s.input);
        let mfma = match s.input {
            DType::BF16 => "__builtin_amdgcn_mfma_f32_16x16x16bf16_1k",
            _ => "__builtin_amdgcn_mfma_f32_16x16x16f16",
        };
        w.line("#pragma unroll");
        w.open(format!("for (int i = 0; i < {mi}; ++i)"));
        w.line("#pragma unroll");
        w.open(format!("for (int j = 0; j < {ni}; ++j)"));
        w.line(format!(
            "{}[i][j] = tsr_float4{{0.f, 0.f, 0.f, 0.f}};",
            s.acc
        ));
        w.close("");
        w.close("");
        w.line("#pragma unroll");
        w.open(format!("for (int kk = 0; kk < {ks}; ++kk)"));
        let a = if p.q_resident {
            "qf[kk][i]"
        } else {
            w.line(format!("{frag} qa[{mi}];"));
            w.line("#pragma unroll");
            w.open(format!("for (int i = 0; i < {mi}; ++i)"));
            w.line(format!(
                "qa[i] = *(const {frag}*)({} + ({} + i * 16 + (lane & 15)) * {} + kk * 16 + (lane >> 4) * 4);",
                s.a.ptr, s.warp_row, s.a.stride
            ));
            w.close("");
            "qa[i]"
        };
        // B = Kᵀ: lane l holds K[key j·16 + l % 16][4(l / 16)..+4], contiguous in the K tile
        w.line("#pragma unroll");
        w.open(format!("for (int j = 0; j < {ni}; ++j)"));
        w.line(format!(
            "const {frag} kb = *(const {frag}*)({} + (j * 16 + (lane & 15)) * {} + kk * 16 + (lane >> 4) * 4);",
            s.b.ptr, s.b.stride
        ));
        w.line("#pragma unroll");
        w.open(format!("for (int i = 0; i < {mi}; ++i)"));
        w.line(format!(
            "{0}[i][j] = {mfma}({a}, kb, {0}[i][j], 0, 0, 0);",
            s.acc
        ));
        w.close("");
        w.close("");
        w.close("");
    }

    fn attn_pv(&self, w: &mut Source, p: &crate::attention::plan::AttnPlan) {
        let (s, o) = (&p.s, &p.o);
        let (mi, si, ks, nj) = (
            o.wm / o.atom.m,
            s.wn / s.atom.n,
            o.tile_k / o.atom.k,
            o.wn / o.atom.n,
        );
        let frag = fragment_type(o.input);
        let mfma = match o.input {
            DType::BF16 => "__builtin_amdgcn_mfma_f32_16x16x16bf16_1k",
            _ => "__builtin_amdgcn_mfma_f32_16x16x16f16",
        };
        let ps = o.a.stride;
        // The accumulator layout (lane l, element e = P[4(l/16) + e][l % 16]) is not the A
        // operand layout (lane l = P[l % 16][4(l/16)..+4]): P goes through this wave's LDS.
        w.line("#pragma unroll");
        w.open(format!("for (int i = 0; i < {mi}; ++i)"));
        w.line("#pragma unroll");
        w.open(format!("for (int j = 0; j < {si}; ++j)"));
        w.line("#pragma unroll");
        w.open("for (int e = 0; e < 4; ++e)");
        w.line(format!(
            "{}[(i * 16 + (lane >> 4) * 4 + e) * {ps} + j * 16 + (lane & 15)] = {};",
            o.a.ptr,
            self.to_storage(o.input, &format!("{}[i][j][e]", s.acc))
        ));
        w.close("");
        w.close("");
        w.close("");
        self.barrier(w);
        w.line("#pragma unroll");
        w.open(format!("for (int kk = 0; kk < {ks}; ++kk)"));
        w.line(format!("{frag} pa[{mi}];"));
        w.line("#pragma unroll");
        w.open(format!("for (int i = 0; i < {mi}; ++i)"));
        w.line(format!(
            "pa[i] = *(const {frag}*)({} + (i * 16 + (lane & 15)) * {ps} + kk * 16 + (lane >> 4) * 4);",
            o.a.ptr
        ));
        w.close("");
        // B = V: lane l holds V[key kk·16 + 4(l/16)..+4][j·16 + l % 16], a strided gather
        w.line("#pragma unroll");
        w.open(format!("for (int j = 0; j < {nj}; ++j)"));
        w.line(format!(
            "const unsigned short* vp = {} + (kk * 16 + (lane >> 4) * 4) * {} + j * 16 + (lane & 15);",
            o.b.ptr, o.b.stride
        ));
        w.line(format!(
            "const {frag} vb = __builtin_bit_cast({frag}, (unsigned long long)vp[0] | ((unsigned long long)vp[{st}] << 16) | ((unsigned long long)vp[2 * {st}] << 32) | ((unsigned long long)vp[3 * {st}] << 48));",
            st = o.b.stride
        ));
        w.line("#pragma unroll");
        w.open(format!("for (int i = 0; i < {mi}; ++i)"));
        w.line(format!(
            "{0}[i][j] = {mfma}(pa[i], vb, {0}[i][j], 0, 0, 0);",
            o.acc
        ));
        w.close("");
        w.close("");
        w.close("");
    }
}

impl CopyPipeline for Hip {
    fn copy_chunk(&self, w: &mut Source, dst: &str, src: &str, bytes: u32, pred: &str) {
        w.line(format!("tsr_copy{bytes}({dst}, {src}, {pred});"));
    }

    fn copy_commit(&self, _w: &mut Source) {}

    fn copy_wait(&self, _w: &mut Source, _pending: u32) {}
}

#[cfg(test)]
mod tests {
    //! A CPU simulation of one wavefront's GEMM mainloop and epilogue walk: the operand
    //! offsets and accumulator coordinates the emitter writes (C expressions, evaluated here)
    //! feed a model of the MFMA instruction written from CDNA's documented layout; the
    //! result must equal A·B for both atoms and both B layouts.

    use super::*;
    use crate::dialect::SmemOperand;
    use std::collections::HashMap;

    /// Evaluate an integer C expression of `+ - * / % >> << &`, parentheses, literals and
    /// the variables in `vars`.
    fn eval(expr: &str, vars: &HashMap<&str, i64>) -> i64 {
        let mut toks = Vec::new();
        let b = expr.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let c = b[i] as char;
            if c.is_whitespace() {
                i += 1;
            } else if c.is_ascii_alphanumeric() || c == '_' {
                let s = i;
                while i < b.len() && ((b[i] as char).is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                toks.push(expr[s..i].to_string());
            } else if expr[i..].starts_with(">>") || expr[i..].starts_with("<<") {
                toks.push(expr[i..i + 2].to_string());
                i += 2;
            } else {
                toks.push(c.to_string());
                i += 1;
            }
        }
        fn prec(op: &str) -> Option<u8> {
            match op {
                "*" | "/" | "%" => Some(4),
                "+" | "-" => Some(3),
                ">>" | "<<" => Some(2),
                "&" => Some(1),
                _ => None,
            }
        }
        fn atom(t: &[String], at: &mut usize, vars: &HashMap<&str, i64>) -> i64 {
            let tok = t[*at].clone();
            *at += 1;
            if tok == "(" {
                let v = binary(t, at, vars, 0);
                assert_eq!(t[*at], ")");
                *at += 1;
                v
            } else if let Ok(v) = tok.parse() {
                v
            } else {
                *vars
                    .get(tok.as_str())
                    .unwrap_or_else(|| panic!("unbound `{tok}`"))
            }
        }
        fn binary(t: &[String], at: &mut usize, vars: &HashMap<&str, i64>, min: u8) -> i64 {
            let mut lhs = atom(t, at, vars);
            while let Some(p) = t.get(*at).and_then(|op| prec(op)).filter(|&p| p > min) {
                let op = t[*at].clone();
                *at += 1;
                let rhs = binary(t, at, vars, p);
                lhs = match op.as_str() {
                    "*" => lhs * rhs,
                    "/" => lhs / rhs,
                    "%" => lhs % rhs,
                    "+" => lhs + rhs,
                    "-" => lhs - rhs,
                    ">>" => lhs >> rhs,
                    "<<" => lhs << rhs,
                    _ => lhs & rhs,
                };
            }
            lhs
        }
        let mut at = 0;
        let v = binary(&toks, &mut at, vars, 0);
        assert_eq!(at, toks.len(), "trailing tokens in `{expr}`");
        v
    }

    #[test]
    fn evaluator_follows_c_precedence() {
        let vars = HashMap::from([("lane", 45i64), ("e", 6)]);
        assert_eq!(
            eval("(e >> 2) * 8 + (lane >> 5) * 4 + (e & 3)", &vars),
            8 + 4 + 2
        );
        assert_eq!(eval("1 + 2 * 3 & 7", &vars), 7);
        assert_eq!(eval("lane >> 1 + 1", &vars), 11);
    }

    /// The MFMA instruction on a wavefront, from CDNA's layout (independent of [`Mfma`]):
    /// A(i, k) is element k % 4 of lane i + m·(k / 4), B(k, n) element k % 4 of lane
    /// n + m·(k / 4); element r of lane l accumulates D at (row, l % m) with row
    /// 4(l / 16) + r for 16x16x16 and 8(r / 4) + 4(l / 32) + r % 4 for 32x32x8.
    fn mfma_model(m: usize, a: &[[f32; 4]], b: &[[f32; 4]], acc: &mut [Vec<f32>]) {
        let k = 4 * 64 / m;
        let mut d = vec![vec![0f32; m]; m];
        for (i, row) in d.iter_mut().enumerate() {
            for (n, out) in row.iter_mut().enumerate() {
                for kk in 0..k {
                    *out += a[i + m * (kk / 4)][kk % 4] * b[n + m * (kk / 4)][kk % 4];
                }
            }
        }
        for (l, regs) in acc.iter_mut().enumerate() {
            for (r, v) in regs.iter_mut().enumerate() {
                let row = if m == 16 {
                    4 * (l / 16) + r
                } else {
                    8 * (r / 4) + 4 * (l / 32) + r % 4
                };
                *v += d[row][l % m];
            }
        }
    }

    /// One wavefront computes its `wm`x`wn` warp tile (at `wr0`, `wc0` of a block tile) over a
    /// `tile_k` slice with the emitter's offsets and accumulator coordinates.
    fn simulate(m: u32, b_layout: Layout) {
        let hip = Hip {
            target: Target::Gfx942,
        };
        let atom = hip.atom_with(DType::F16, Some(m)).unwrap();
        let f = Mfma::of(atom).unwrap();
        let (tm, tn, tk, pad) = (128usize, 128usize, 32usize, 8usize);
        let (wm, wn, wr0, wc0) = (64u32, 64u32, 64i64, 0i64);
        let val = |r: usize, c: usize, s: usize| ((r * 7 + c * 3 + s) % 11) as f32 - 5.0;
        let a_stride = tk + pad;
        let mut sa = vec![0f32; tm * a_stride];
        for r in 0..tm {
            for k in 0..tk {
                sa[r * a_stride + k] = val(r, k, 1);
            }
        }
        let b_at = |k: usize, n: usize| val(k, n, 2);
        let b_stride = match b_layout {
            Layout::Col => tk + pad,
            Layout::Row => tn + pad,
        };
        let mut sb = vec![0f32; tm.max(tn) * b_stride];
        for k in 0..tk {
            for n in 0..tn {
                match b_layout {
                    Layout::Col => sb[n * b_stride + k] = b_at(k, n),
                    Layout::Row => sb[k * b_stride + n] = b_at(k, n),
                }
            }
        }
        let plan = MmaPlan {
            input: DType::F16,
            atom,
            wm,
            wn,
            tile_k: tk as u32,
            warp_row: "wr0".into(),
            warp_col: "wc0".into(),
            a: SmemOperand {
                ptr: "sa".into(),
                stride: a_stride as u32,
                layout: Layout::Row,
            },
            b: SmemOperand {
                ptr: "sb".into(),
                stride: b_stride as u32,
                layout: b_layout,
            },
            acc: "acc".into(),
        };
        let (mi, ni) = ((wm / m) as usize, (wn / m) as usize);
        let regs = f.acc_regs() as usize;
        let mut acc = vec![vec![vec![vec![0f32; regs]; 64]; ni]; mi];
        for kk in 0..(tk as u32 / atom.k) as i64 {
            // each lane's fragments, from the offsets `load_fragments` emits
            let frag = |i: usize, lane: usize, a: bool| -> [f32; 4] {
                let vars = HashMap::from([
                    ("wr0", wr0),
                    ("wc0", wc0),
                    ("kk", kk),
                    ("lane", lane as i64),
                    ("i", i as i64),
                    ("j", i as i64),
                ]);
                let (src, line0, layout, stride) = if a {
                    (&sa, format!("wr0 + i * {m}"), Layout::Row, a_stride)
                } else {
                    (&sb, format!("wc0 + j * {m}"), b_layout, b_stride)
                };
                let mut out = [0f32; 4];
                match layout {
                    Layout::Row if !a => {
                        let at = eval(&f.n_contiguous_offset(&line0, stride as u32, "kk"), &vars);
                        for (e, o) in out.iter_mut().enumerate() {
                            *o = src[at as usize + e * stride];
                        }
                    }
                    _ => {
                        let at = eval(&f.k_contiguous_offset(&line0, stride as u32, "kk"), &vars);
                        for (e, o) in out.iter_mut().enumerate() {
                            *o = src[at as usize + e];
                        }
                    }
                }
                out
            };
            for (i, acc_i) in acc.iter_mut().enumerate() {
                let af: Vec<[f32; 4]> = (0..64).map(|l| frag(i, l, true)).collect();
                for (j, acc_ij) in acc_i.iter_mut().enumerate() {
                    let bf: Vec<[f32; 4]> = (0..64).map(|l| frag(j, l, false)).collect();
                    mfma_model(m as usize, &af, &bf, acc_ij);
                }
            }
        }
        // the epilogue's walk: every (i, j, e, lane) value lands at the coordinates
        // `for_each_acc` gives it
        let mut groups = Vec::new();
        let mut w = Source::new();
        hip.for_each_acc(&mut w, &plan, &mut |_, g| groups.push(g.clone()));
        assert_eq!(groups.len(), 1);
        let g = &groups[0];
        assert_eq!(g.regs, vec!["acc[i][j][e]".to_string()]);
        let mut d = vec![vec![None::<f32>; tn]; tm];
        for (i, acc_i) in acc.iter().enumerate() {
            for (j, acc_ij) in acc_i.iter().enumerate() {
                for (lane, values) in acc_ij.iter().enumerate() {
                    for (e, v) in values.iter().enumerate() {
                        let vars = HashMap::from([
                            ("wr0", wr0),
                            ("wc0", wc0),
                            ("lane", lane as i64),
                            ("i", i as i64),
                            ("j", j as i64),
                            ("e", e as i64),
                        ]);
                        let (r, c) = (eval(&g.row, &vars) as usize, eval(&g.col, &vars) as usize);
                        assert!(d[r][c].replace(*v).is_none(), "({r}, {c}) written twice");
                    }
                }
            }
        }
        for (r, row) in d.iter().enumerate() {
            for (c, got) in row.iter().enumerate() {
                let inside = (wr0 as usize..wr0 as usize + wm as usize).contains(&r)
                    && (wc0 as usize..wc0 as usize + wn as usize).contains(&c);
                if !inside {
                    assert!(got.is_none(), "({r}, {c}) outside the warp tile");
                    continue;
                }
                let want: f32 = (0..tk).map(|k| sa[r * a_stride + k] * b_at(k, c)).sum();
                assert_eq!(*got, Some(want), "D[{r}][{c}], atom {m}, B {b_layout:?}");
            }
        }
    }

    #[test]
    fn mfma_16x16x16_fragments_and_accumulators_compute_a_times_b() {
        simulate(16, Layout::Col);
        simulate(16, Layout::Row);
    }

    #[test]
    fn mfma_32x32x8_fragments_and_accumulators_compute_a_times_b() {
        simulate(32, Layout::Col);
        simulate(32, Layout::Row);
    }

    #[test]
    fn atoms_offered_and_emitted() {
        let hip = Hip {
            target: Target::Gfx90a,
        };
        assert_eq!(
            hip.atom_with(DType::BF16, Some(32)),
            Ok(MmaAtom::new(32, 32, 8, DType::BF16))
        );
        assert_eq!(
            hip.atom(DType::F16),
            Ok(MmaAtom::new(16, 16, 16, DType::F16))
        );
        assert!(hip.atom_with(DType::F16, Some(64)).is_err());
        let f = Mfma::of(MmaAtom::new(32, 32, 8, DType::F16)).unwrap();
        assert_eq!(f.acc_regs(), 16);
        assert_eq!(
            f.builtin(DType::F16),
            "__builtin_amdgcn_mfma_f32_32x32x8f16"
        );
        assert_eq!(
            f.builtin(DType::BF16),
            "__builtin_amdgcn_mfma_f32_32x32x8bf16_1k"
        );
        // the documented 32x32x8 accumulator rows: 4 groups of 4, lanes 32-63 four rows down
        let row =
            |lane: i64, e: i64| eval(&f.acc_row("e"), &HashMap::from([("lane", lane), ("e", e)]));
        assert_eq!((row(0, 0), row(0, 3), row(0, 4), row(0, 15)), (0, 3, 8, 27));
        assert_eq!((row(32, 0), row(63, 15)), (4, 31));
    }
}
