//! The CUDA dialect: sm_80-style tensor-core path (`mma.sync.m16n8k16` fed by `ldmatrix`,
//! `cp.async` multi-stage copies), also used on sm_90a until the `wgmma`/TMA mainloop lands.
//!
//! Output is self-contained (no `#include`): f16/bf16 are stored as `unsigned short` and
//! converted with PTX `cvt`, so it compiles with a bare NVRTC.

use crate::dialect::{AccGroup, Dialect, MathFn, MmaPlan};
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
}"#;

impl Dialect for Cuda {
    fn target(&self) -> Target {
        self.target
    }

    fn warp_size(&self) -> u32 {
        32
    }

    fn atom(&self, input: DType) -> Result<MmaAtom, CodegenError> {
        match input {
            DType::F16 | DType::BF16 => Ok(MmaAtom::new(16, 8, 16, input)),
            DType::F32 => Err(CodegenError::Unsupported(format!(
                "{}: no mma.sync atom for f32 inputs",
                self.target
            ))),
        }
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

    fn barrier(&self, w: &mut Source) {
        w.line("__syncthreads();");
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
