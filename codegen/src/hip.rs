//! The HIP dialect: AMD CDNA (gfx90a, gfx942) with MFMA `16x16x16` atoms, LDS tiles and
//! wavefronts of 64.
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
            MathFn::Erf => "erff",
            MathFn::Tanh => "tanhf",
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
        match input {
            DType::F16 | DType::BF16 => Ok(MmaAtom::new(16, 16, 16, input)),
            DType::F32 => Err(CodegenError::Unsupported(format!(
                "{}: no MFMA atom for f32 inputs in Tessera",
                self.target
            ))),
        }
    }

    fn declare_acc(&self, w: &mut Source, p: &MmaPlan) {
        let (mi, ni) = (p.wm / p.atom.m, p.wn / p.atom.n);
        w.line(format!("tsr_float4 {}[{mi}][{ni}];", p.acc));
        w.line("#pragma unroll");
        w.open(format!("for (int i = 0; i < {mi}; ++i)"));
        w.line("#pragma unroll");
        w.open(format!("for (int j = 0; j < {ni}; ++j)"));
        w.line(format!(
            "{}[i][j] = tsr_float4{{0.f, 0.f, 0.f, 0.f}};",
            p.acc
        ));
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
        // 16x16x16 MFMA operands: lane l holds A[l%16][4(l/16)..+4] and B[4(l/16)..+4][l%16].
        w.line("#pragma unroll");
        w.open(format!("for (int i = 0; i < {mi}; ++i)"));
        w.line(format!(
            "af[{buf}][i] = *(const {frag}*)({} + ({} + i * 16 + (lane & 15)) * {} + ({kk}) * 16 + (lane >> 4) * 4);",
            p.a.ptr, p.warp_row, p.a.stride
        ));
        w.close("");
        w.line("#pragma unroll");
        w.open(format!("for (int j = 0; j < {ni}; ++j)"));
        match p.b.layout {
            Layout::Col => w.line(format!(
                "bf[{buf}][j] = *(const {frag}*)({} + ({} + j * 16 + (lane & 15)) * {} + ({kk}) * 16 + (lane >> 4) * 4);",
                p.b.ptr, p.warp_col, p.b.stride
            )),
            Layout::Row => {
                w.line(format!(
                    "const unsigned short* bp = {} + (({kk}) * 16 + (lane >> 4) * 4) * {} + {} + j * 16 + (lane & 15);",
                    p.b.ptr, p.b.stride, p.warp_col
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
        let mfma = match p.input {
            DType::BF16 => "__builtin_amdgcn_mfma_f32_16x16x16bf16_1k",
            _ => "__builtin_amdgcn_mfma_f32_16x16x16f16",
        };
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
        // 16x16 accumulator: lane l, element r holds D[4(l/16) + r][l%16].
        w.line("#pragma unroll");
        w.open(format!("for (int i = 0; i < {mi}; ++i)"));
        w.line("#pragma unroll");
        w.open(format!("for (int j = 0; j < {ni}; ++j)"));
        w.line("#pragma unroll");
        w.open("for (int e = 0; e < 4; ++e)");
        body(
            w,
            &AccGroup {
                regs: vec![format!("{}[i][j][e]", p.acc)],
                row: format!("{} + i * 16 + (lane >> 4) * 4 + e", p.warp_row),
                col: format!("{} + j * 16 + (lane & 15)", p.warp_col),
                block_end: format!("j == {} && e == 3", ni - 1),
            },
        );
        w.close("");
        w.close("");
        w.close("");
    }

    fn acc_row_slots(&self, p: &MmaPlan) -> (u32, String) {
        // for_each_acc visits (i, j, e): rows i·16 + 4(lane/16) + e, so slot i·4 + e
        (p.wm / p.atom.m * 4, "i * 4 + e".into())
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
