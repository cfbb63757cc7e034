//! The CUDA dialect: sm_80-style tensor-core path (`mma.sync.m16n8k16` fed by `ldmatrix`,
//! `cp.async` multi-stage copies), also used on sm_90a until the `wgmma`/TMA mainloop lands.
//!
//! Output is self-contained (no `#include`): f16/bf16 are stored as `unsigned short` and
//! converted with PTX `cvt`, so it compiles with a bare NVRTC.

use crate::dialect::{AccGroup, CopyPipeline, InstructionSet, MathFn, MmaPlan, WarpMma};
use crate::source::Source;
use crate::CodegenError;
use tessera_dsl::{DType, Layout, MmaAtom, Target};

pub struct Cuda {
    pub target: Target,
}

const PRELUDE: &str = r#"// Tessera generated CUDA (self-contained: no headers)
#pragma nv_diag_suppress 177
typedef unsigned short tsr_half;
static __device__ __forceinline__ float tsr_f16_to_f32(unsigned short h) {
  float f; asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h)); return f;
}
static __device__ __forceinline__ unsigned short tsr_f32_to_f16(float f) {
  unsigned short h; asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h;
}
static __device__ __forceinline__ float tsr_bf16_to_f32(unsigned short h) {
  float f; unsigned u = ((unsigned)h) << 16; asm("mov.b32 %0, %1;" : "=f"(f) : "r"(u)); return f;
}
static __device__ __forceinline__ unsigned short tsr_f32_to_bf16(float f) {
  unsigned short h; asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f)); return h;
}
static __device__ __forceinline__ unsigned tsr_smem_addr(const void* p) {
  unsigned a; asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p)); return a;
}
static __device__ __forceinline__ void tsr_cp_async16(void* dst, const void* src, bool pred) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" :: "r"(tsr_smem_addr(dst)), "l"(src), "r"(pred ? 16 : 0) : "memory");
}
static __device__ __forceinline__ void tsr_cp_async8(void* dst, const void* src, bool pred) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;" :: "r"(tsr_smem_addr(dst)), "l"(src), "r"(pred ? 8 : 0) : "memory");
}
static __device__ __forceinline__ void tsr_cp_async4(void* dst, const void* src, bool pred) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" :: "r"(tsr_smem_addr(dst)), "l"(src), "r"(pred ? 4 : 0) : "memory");
}
static __device__ __forceinline__ void tsr_ldmatrix_x4(unsigned (&r)[4], unsigned addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr) : "memory");
}
static __device__ __forceinline__ void tsr_ldmatrix_x4_trans(unsigned (&r)[4], unsigned addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr) : "memory");
}
static __device__ __forceinline__ void tsr_mma_f16(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
static __device__ __forceinline__ void tsr_mma_bf16(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
static __device__ __forceinline__ float tsr_neg_inf() { return __int_as_float(0xff800000); }
static __device__ __forceinline__ float tsr_exp2(float x) {
  float y; asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x)); return y;
}
// two floats -> one register of 16-bit values: `lo` in bits 0..15, `hi` in bits 16..31
static __device__ __forceinline__ unsigned tsr_pack_f16x2(float lo, float hi) {
  unsigned r; asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo)); return r;
}
static __device__ __forceinline__ unsigned tsr_pack_bf16x2(float lo, float hi) {
  unsigned r; asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo)); return r;
}"#;

impl InstructionSet for Cuda {
    fn target(&self) -> Target {
        self.target
    }

    fn warp_size(&self) -> u32 {
        32
    }

    fn prelude(&self, w: &mut Source) {
        w.lines(PRELUDE);
    }

    fn kernel_head(&self, threads: u32) -> String {
        format!("extern \"C\" __global__ void __launch_bounds__({threads}, 1)")
    }

    fn smem_decl(&self) -> &'static str {
        "extern __shared__ __align__(128) unsigned char smem[];"
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
            2 => "uint2",
            _ => "uint4",
        }
    }

    fn shfl_xor(&self, value: &str, lane_mask: u32) -> String {
        format!("__shfl_xor_sync(0xffffffffu, {value}, {lane_mask})")
    }

    fn infinity(&self) -> &'static str {
        "__int_as_float(0x7f800000)"
    }

    fn fast_div(&self, a: &str, b: &str) -> String {
        format!("__fdividef({a}, {b})")
    }
}

impl WarpMma for Cuda {
    fn atom(&self, input: DType) -> Result<MmaAtom, CodegenError> {
        match input {
            DType::F16 | DType::BF16 => Ok(MmaAtom::new(16, 8, 16, input)),
            DType::F32 => Err(CodegenError::Unsupported(format!(
                "{}: no mma.sync atom for f32 inputs",
                self.target
            ))),
        }
    }

    fn declare_acc(&self, w: &mut Source, p: &MmaPlan) {
        let (mi, ni) = (p.wm / p.atom.m, p.wn / p.atom.n);
        w.line(format!("float {}[{mi}][{ni}][4];", p.acc));
        w.line("#pragma unroll");
        w.open(format!("for (int i = 0; i < {mi}; ++i)"));
        w.line("#pragma unroll");
        w.open(format!("for (int j = 0; j < {ni}; ++j)"));
        w.line(format!(
            "{0}[i][j][0] = 0.f; {0}[i][j][1] = 0.f; {0}[i][j][2] = 0.f; {0}[i][j][3] = 0.f;",
            p.acc
        ));
        w.close("");
        w.close("");
    }

    fn declare_fragments(&self, w: &mut Source, p: &MmaPlan) {
        let (mi, ni) = (p.wm / p.atom.m, p.wn / p.atom.n);
        w.line(format!("unsigned af[2][{mi}][4];"));
        w.line(format!("unsigned bf[2][{}][4];", ni / 2));
    }

    fn load_fragments(&self, w: &mut Source, p: &MmaPlan, buf: &str, kk: &str) {
        let (mi, ni) = (p.wm / p.atom.m, p.wn / p.atom.n);
        // Shared addresses are converted once per stage base; offsets are in bytes.
        w.line(format!(
            "const unsigned a_base = tsr_smem_addr({});",
            p.a.ptr
        ));
        w.line(format!(
            "const unsigned b_base = tsr_smem_addr({});",
            p.b.ptr
        ));
        // A (row-major, k-contiguous): ldmatrix.x4 of a 16×16 piece; lane → row lane%16, k (lane/16)·8.
        w.line("#pragma unroll");
        w.open(format!("for (int i = 0; i < {mi}; ++i)"));
        w.line(format!(
            "tsr_ldmatrix_x4(af[{buf}][i], a_base + 2 * (({} + i * 16 + (lane & 15)) * {} + ({kk}) * 16 + (lane >> 4) * 8));",
            p.warp_row, p.a.stride
        ));
        w.close("");
        // B: one ldmatrix.x4 covers two n8 atoms × k16.
        w.line("#pragma unroll");
        w.open(format!("for (int j = 0; j < {}; ++j)", ni / 2));
        match p.b.layout {
            Layout::Col => w.line(format!(
                "tsr_ldmatrix_x4(bf[{buf}][j], b_base + 2 * (({} + j * 16 + (lane & 7) + (lane >> 4) * 8) * {} + ({kk}) * 16 + ((lane >> 3) & 1) * 8));",
                p.warp_col, p.b.stride
            )),
            Layout::Row => w.line(format!(
                "tsr_ldmatrix_x4_trans(bf[{buf}][j], b_base + 2 * ((({kk}) * 16 + (lane & 15)) * {} + {} + j * 16 + (lane >> 4) * 8));",
                p.b.stride, p.warp_col
            )),
        }
        w.close("");
    }

    fn mma_step(&self, w: &mut Source, p: &MmaPlan, buf: &str) {
        let (mi, ni) = (p.wm / p.atom.m, p.wn / p.atom.n);
        let mma = match p.input {
            DType::BF16 => "tsr_mma_bf16",
            _ => "tsr_mma_f16",
        };
        w.line("#pragma unroll");
        w.open(format!("for (int i = 0; i < {mi}; ++i)"));
        w.line("#pragma unroll");
        w.open(format!("for (int j = 0; j < {ni}; ++j)"));
        w.line(format!(
            "{mma}({}[i][j], af[{buf}][i], bf[{buf}][j >> 1][(j & 1) * 2], bf[{buf}][j >> 1][(j & 1) * 2 + 1]);",
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
        // m16n8 accumulator: c0,c1 at (g, 2t..2t+1), c2,c3 at (g+8, 2t..2t+1); g = lane/4, t = lane%4.
        w.line("#pragma unroll");
        w.open(format!("for (int i = 0; i < {mi}; ++i)"));
        w.line("#pragma unroll");
        w.open(format!("for (int j = 0; j < {ni}; ++j)"));
        w.line("#pragma unroll");
        w.open("for (int h = 0; h < 2; ++h)");
        body(
            w,
            &AccGroup {
                regs: vec![
                    format!("{}[i][j][h * 2]", p.acc),
                    format!("{}[i][j][h * 2 + 1]", p.acc),
                ],
                row: format!("{} + i * 16 + (lane >> 2) + h * 8", p.warp_row),
                col: format!("{} + j * 8 + (lane & 3) * 2", p.warp_col),
                block_end: format!("j == {} && h == 1", ni - 1),
            },
        );
        w.close("");
        w.close("");
        w.close("");
    }

    fn acc_row_slots(&self, p: &MmaPlan) -> (u32, String) {
        // for_each_acc visits (i, j, h): rows i·16 + g + 8h, so slot i·2 + h
        (p.wm / p.atom.m * 2, "i * 2 + h".into())
    }

    fn row_allreduce(&self, w: &mut Source, var: &str, max: bool) {
        // a row of an m16n8 accumulator lives in the 4 lanes 4g..4g+3
        for o in [1, 2] {
            let other = format!("__shfl_xor_sync(0xffffffffu, {var}, {o})");
            if max {
                w.line(format!("{var} = fmaxf({var}, {other});"));
            } else {
                w.line(format!("{var} += {other};"));
            }
        }
    }

    fn attn_p_scratch_bytes(&self, _p: &crate::attention::plan::AttnPlan, _warps: u32) -> u32 {
        0
    }

    fn attn_load_q(&self, w: &mut Source, p: &crate::attention::plan::AttnPlan) {
        let s = &p.s;
        let (mi, ks) = (s.wm / s.atom.m, s.tile_k / s.atom.k);
        // A fragment of m16n8k16 (row): a[0] rows g, k 2t..; a[1] rows g+8; a[2], a[3] the
        // same at k + 8. ldmatrix.x4: lanes 0-15 address rows 0-15 at k 0, lanes 16-31 at k 8,
        // so matrices 0..3 = (rows 0-7, k 0-7), (8-15, 0-7), (0-7, 8-15), (8-15, 8-15).
        w.line(format!("unsigned qf[{ks}][{mi}][4];"));
        w.open("");
        w.line(format!(
            "const unsigned q_base = tsr_smem_addr({});",
            s.a.ptr
        ));
        w.line("#pragma unroll");
        w.open(format!("for (int kk = 0; kk < {ks}; ++kk)"));
        w.line("#pragma unroll");
        w.open(format!("for (int i = 0; i < {mi}; ++i)"));
        w.line(format!(
            "tsr_ldmatrix_x4(qf[kk][i], q_base + 2 * (({} + i * 16 + (lane & 15)) * {} + kk * 16 + (lane >> 4) * 8));",
            s.warp_row, s.a.stride
        ));
        w.close("");
        w.close("");
        w.close("");
    }

    fn attn_scores(&self, w: &mut Source, p: &crate::attention::plan::AttnPlan) {
        let s = &p.s;
        let (mi, ni, ks) = (s.wm / s.atom.m, s.wn / s.atom.n, s.tile_k / s.atom.k);
        let mma = match s.input {
            DType::BF16 => "tsr_mma_bf16",
            _ => "tsr_mma_f16",
        };
        w.line("#pragma unroll");
        w.open(format!("for (int i = 0; i < {mi}; ++i)"));
        w.line("#pragma unroll");
        w.open(format!("for (int j = 0; j < {ni}; ++j)"));
        w.line(format!(
            "{0}[i][j][0] = 0.f; {0}[i][j][1] = 0.f; {0}[i][j][2] = 0.f; {0}[i][j][3] = 0.f;",
            s.acc
        ));
        w.close("");
        w.close("");
        w.open("");
        w.line(format!(
            "const unsigned k_base = tsr_smem_addr({});",
            s.b.ptr
        ));
        if !p.q_resident {
            w.line(format!(
                "const unsigned q_base = tsr_smem_addr({});",
                s.a.ptr
            ));
        }
        w.line("#pragma unroll");
        w.open(format!("for (int kk = 0; kk < {ks}; ++kk)"));
        let a = if p.q_resident {
            "qf[kk][i]"
        } else {
            w.line(format!("unsigned qa[{mi}][4];"));
            w.line("#pragma unroll");
            w.open(format!("for (int i = 0; i < {mi}; ++i)"));
            w.line(format!(
                "tsr_ldmatrix_x4(qa[i], q_base + 2 * (({} + i * 16 + (lane & 15)) * {} + kk * 16 + (lane >> 4) * 8));",
                s.warp_row, s.a.stride
            ));
            w.close("");
            "qa[i]"
        };
        // B = Kᵀ (k = head_dim, n = key), K rows k-contiguous: ldmatrix.x4 (no .trans) of keys
        // j·16 + 0-7 at k 0 / 8 (matrices 0, 1 = n-atom 2j) and keys + 8 (matrices 2, 3 = 2j+1).
        w.line("#pragma unroll");
        w.open(format!("for (int j = 0; j < {}; ++j)", ni / 2));
        w.line("unsigned kb[4];");
        w.line(format!(
            "tsr_ldmatrix_x4(kb, k_base + 2 * ((j * 16 + (lane & 7) + (lane >> 4) * 8) * {} + kk * 16 + ((lane >> 3) & 1) * 8));",
            s.b.stride
        ));
        w.line("#pragma unroll");
        w.open(format!("for (int i = 0; i < {mi}; ++i)"));
        w.line(format!("{mma}({}[i][2 * j], {a}, kb[0], kb[1]);", s.acc));
        w.line(format!(
            "{mma}({}[i][2 * j + 1], {a}, kb[2], kb[3]);",
            s.acc
        ));
        w.close("");
        w.close("");
        w.close("");
        w.close("");
    }

    fn attn_pv(&self, w: &mut Source, p: &crate::attention::plan::AttnPlan) {
        let (s, o) = (&p.s, &p.o);
        let (mi, ks, nj) = (o.wm / o.atom.m, o.tile_k / o.atom.k, o.wn / 16);
        let (mma, pack) = match o.input {
            DType::BF16 => ("tsr_mma_bf16", "tsr_pack_bf16x2"),
            _ => ("tsr_mma_f16", "tsr_pack_f16x2"),
        };
        w.open("");
        w.line(format!(
            "const unsigned v_base = tsr_smem_addr({});",
            o.b.ptr
        ));
        w.line("#pragma unroll");
        w.open(format!("for (int kk = 0; kk < {ks}; ++kk)"));
        // P as the A fragment of keys kk·16..+15, straight from the S accumulators: n8 tiles
        // 2kk (keys +0..7) and 2kk+1 (keys +8..15) hold (g, 2t..2t+1) in c0,c1 and (g+8, ..) in
        // c2,c3, which is exactly a[0], a[1] (k 0..7) and a[2], a[3] (k 8..15).
        w.line(format!("unsigned pa[{mi}][4];"));
        w.line("#pragma unroll");
        w.open(format!("for (int i = 0; i < {mi}; ++i)"));
        let acc = &s.acc;
        w.line(format!(
            "pa[i][0] = {pack}({acc}[i][2 * kk][0], {acc}[i][2 * kk][1]);"
        ));
        w.line(format!(
            "pa[i][1] = {pack}({acc}[i][2 * kk][2], {acc}[i][2 * kk][3]);"
        ));
        w.line(format!(
            "pa[i][2] = {pack}({acc}[i][2 * kk + 1][0], {acc}[i][2 * kk + 1][1]);"
        ));
        w.line(format!(
            "pa[i][3] = {pack}({acc}[i][2 * kk + 1][2], {acc}[i][2 * kk + 1][3]);"
        ));
        w.close("");
        // B = V (k = key, n = head_dim), n-contiguous: ldmatrix.x4.trans, lanes 0-15 address
        // keys kk·16 + 0-15 at column j·16, lanes 16-31 at j·16 + 8; r[0], r[1] = n-atom 2j
        // (keys 0-7, 8-15), r[2], r[3] = n-atom 2j+1.
        w.line("#pragma unroll");
        w.open(format!("for (int j = 0; j < {nj}; ++j)"));
        w.line("unsigned vb[4];");
        w.line(format!(
            "tsr_ldmatrix_x4_trans(vb, v_base + 2 * ((kk * 16 + (lane & 15)) * {} + j * 16 + (lane >> 4) * 8));",
            o.b.stride
        ));
        w.line("#pragma unroll");
        w.open(format!("for (int i = 0; i < {mi}; ++i)"));
        w.line(format!("{mma}({}[i][2 * j], pa[i], vb[0], vb[1]);", o.acc));
        w.line(format!(
            "{mma}({}[i][2 * j + 1], pa[i], vb[2], vb[3]);",
            o.acc
        ));
        w.close("");
        w.close("");
        w.close("");
        w.close("");
    }
}

impl CopyPipeline for Cuda {
    fn copy_chunk(&self, w: &mut Source, dst: &str, src: &str, bytes: u32, pred: &str) {
        w.line(format!("tsr_cp_async{bytes}({dst}, {src}, {pred});"));
    }

    fn copy_commit(&self, w: &mut Source) {
        w.line("asm volatile(\"cp.async.commit_group;\" ::: \"memory\");");
    }

    fn copy_wait(&self, w: &mut Source, pending: u32) {
        w.line(format!(
            "asm volatile(\"cp.async.wait_group {pending};\" ::: \"memory\");"
        ));
    }
}
