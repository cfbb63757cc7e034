//! The sm_90a lowerings: TMA copies into swizzled shared stages, an mbarrier full/empty ring
//! between a producer warp and consumer warpgroups, and `wgmma` reading both operands through
//! shared-memory descriptors ([`descriptor`]).
//!
//! Everything here is NVIDIA Hopper only and header-free (inline PTX), so a bare NVRTC
//! compiles it. It depends on the vendor-neutral parts of codegen (the epilogue, the tile
//! rasterisation) and never on the AMD dialect.

pub mod attention;
pub mod descriptor;
pub mod gemm;

use crate::dialect::Dialect;
use crate::kernel::abi_params;
use crate::source::Source;
use tessera_dsl::ir::abi;
use tessera_dsl::{DType, KernelIr, TensorMapArg};

/// The kernel's parameter list: its launch ABI, then one `__grid_constant__` tensor map per
/// TMA-copied operand, in declaration order.
pub(crate) fn params_with_tensor_maps(
    d: &dyn Dialect,
    ir: &KernelIr,
    maps: &[TensorMapArg],
) -> String {
    let mut params = abi_params(d, &abi(ir.op, &ir.variant));
    for m in maps {
        params.push_str(&format!(
            ",\n    const __grid_constant__ tsr_tmap {}",
            m.name
        ));
    }
    params
}

/// The PTX helpers of the Hopper pipeline (after the dialect's own prelude).
const PRELUDE: &str = r#"// Hopper: TMA, mbarriers, wgmma
struct __align__(64) tsr_tmap { unsigned long long opaque[16]; };
static __device__ __forceinline__ void tsr_mbar_init(unsigned bar, unsigned count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" :: "r"(bar), "r"(count) : "memory");
}
static __device__ __forceinline__ void tsr_mbar_expect_tx(unsigned bar, unsigned bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" :: "r"(bar), "r"(bytes) : "memory");
}
static __device__ __forceinline__ void tsr_mbar_arrive(unsigned bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" :: "r"(bar) : "memory");
}
// wait until the phase of parity `phase` has completed
static __device__ __forceinline__ void tsr_mbar_wait(unsigned bar, unsigned phase) {
  unsigned done;
  do {
    asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
                 : "=r"(done) : "r"(bar), "r"(phase) : "memory");
  } while (!done);
}
static __device__ __forceinline__ void tsr_tma_load(unsigned dst, const tsr_tmap* map, int c0, int c1, int c2, unsigned bar) {
  asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];"
               :: "r"(dst), "l"((unsigned long long)map), "r"(c0), "r"(c1), "r"(c2), "r"(bar) : "memory");
}
static __device__ __forceinline__ void tsr_wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;" ::: "memory"); }
static __device__ __forceinline__ void tsr_wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory"); }
template <int N> static __device__ __forceinline__ void tsr_wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;" :: "n"(N) : "memory");
}"#;

/// The PTX helpers of a cluster that combines partial results through distributed shared
/// memory (after the Hopper prelude): the block's rank, a cluster-wide barrier, `mapa`, and
/// local stores and remote loads of f32.
pub(crate) const CLUSTER_PRELUDE: &str = r#"// clusters: distributed shared memory
static __device__ __forceinline__ unsigned tsr_cluster_rank() {
  unsigned r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
  return r;
}
// every thread of every block of the cluster: what each wrote before is visible to all after
static __device__ __forceinline__ void tsr_cluster_sync() {
  asm volatile("barrier.cluster.arrive.release;\n\tbarrier.cluster.wait.acquire;" ::: "memory");
}
// the address of shared-memory location `addr` in the cluster's block `rank`
static __device__ __forceinline__ unsigned tsr_mapa(unsigned addr, unsigned rank) {
  unsigned r;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(r) : "r"(addr), "r"(rank));
  return r;
}
static __device__ __forceinline__ void tsr_st_shared_f32(unsigned addr, float x) {
  asm volatile("st.shared.f32 [%0], %1;" :: "r"(addr), "f"(x) : "memory");
}
static __device__ __forceinline__ float tsr_ld_cluster_f32(unsigned addr) {
  float x;
  asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(x) : "r"(addr) : "memory");
  return x;
}
static __device__ __forceinline__ void tsr_ld_cluster_v4(unsigned addr, float& x, float& y, float& z, float& t) {
  asm volatile("ld.shared::cluster.v4.f32 {%0, %1, %2, %3}, [%4];" : "=f"(x), "=f"(y), "=f"(z), "=f"(t) : "r"(addr) : "memory");
}"#;

/// The PTX helpers of a cluster whose blocks share B tiles (after the cluster prelude): a TMA
/// box copied into the same shared-memory offset of every block in `mask`, completing on the
/// barrier at the same offset in each, and an arrive on a barrier of another block.
pub(crate) const MULTICAST_PRELUDE: &str = r#"// clusters: TMA multicast
static __device__ __forceinline__ void tsr_tma_load_multicast(unsigned dst, const tsr_tmap* map, int c0, int c1, int c2, unsigned bar, unsigned short mask) {
  asm volatile("cp.async.bulk.tensor.3d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.multicast::cluster [%0], [%1, {%2, %3, %4}], [%5], %6;"
               :: "r"(dst), "l"((unsigned long long)map), "r"(c0), "r"(c1), "r"(c2), "r"(bar), "h"(mask) : "memory");
}
// arrive on the barrier at shared-memory offset `bar` of the cluster's block `rank` (a release
// at CTA scope, the default, as CUTLASS's cluster barrier arrives)
static __device__ __forceinline__ void tsr_mbar_arrive_cluster(unsigned bar, unsigned rank) {
  asm volatile("mbarrier.arrive.shared::cluster.b64 _, [%0];" :: "r"(tsr_mapa(bar, rank)) : "memory");
}"#;

/// The Hopper prelude plus one `tsr_wgmma_m64n{n}` function per instruction shape.
pub(crate) fn prelude(w: &mut Source, input: DType, shapes: &[u32]) {
    w.lines(PRELUDE);
    for &n in shapes {
        wgmma_fn(w, input, n);
    }
}

/// The Hopper prelude plus the wgmma functions of attention: `S = Q·Kᵀ` (both operands from
/// shared memory, N = `block_kv`) and `O += P·V` (P from registers, V N-major, N = `head_dim`).
pub(crate) fn attention_prelude(w: &mut Source, input: DType, block_kv: u32, head_dim: u32) {
    w.lines(PRELUDE);
    wgmma_fn(w, input, block_kv);
    wgmma_rs_fn(w, input, head_dim);
}

/// The accumulator operands `"+f"(d[0]), ...` of an `n`-wide wgmma, eight a line.
fn accumulator_operands(w: &mut Source, n: u32) {
    let outs: Vec<String> = (0..n / 2).map(|i| format!("\"+f\"(d[{i}])")).collect();
    let rows: Vec<String> = outs.chunks(8).map(|c| c.join(", ")).collect();
    w.lines(&format!("    : {}", rows.join(",\n      ")));
}

fn ptx_type(input: DType) -> &'static str {
    match input {
        DType::BF16 => "bf16",
        _ => "f16",
    }
}

/// `tsr_wgmma_rs_m64n{n}(d, a, desc_b)`: D (n/2 f32 per thread) += A·B, A 64×16 from four
/// 16-bit-pair registers per thread (the m64k16 A fragment), B 16×n from shared memory,
/// N-major (`imm-trans-b` = 1).
fn wgmma_rs_fn(w: &mut Source, input: DType, n: u32) {
    let ty = ptx_type(input);
    let regs = n / 2;
    let list: Vec<String> = (0..regs).map(|i| format!("%{i}")).collect();
    w.line(format!(
        "static __device__ __forceinline__ void tsr_wgmma_rs_m64n{n}(float (&d)[{regs}], const unsigned (&a)[4], unsigned long long db) {{"
    ));
    w.line(format!(
        "  asm volatile(\"{{ .reg .pred p; setp.ne.b32 p, %{}, 0; wgmma.mma_async.sync.aligned.m64n{n}k16.f32.{ty}.{ty} {{{}}}, {{%{}, %{}, %{}, %{}}}, %{}, p, 1, 1, 1; }}\"",
        regs + 5,
        list.join(", "),
        regs,
        regs + 1,
        regs + 2,
        regs + 3,
        regs + 4
    ));
    accumulator_operands(w, n);
    w.line("    : \"r\"(a[0]), \"r\"(a[1]), \"r\"(a[2]), \"r\"(a[3]), \"l\"(db), \"r\"(1));");
    w.line("}");
}

/// `tsr_wgmma_m64n{n}(d, desc_a, desc_b)`: D (n/2 f32 per thread) += A·B, A 64×16 and B 16×n
/// from shared memory, both K-major.
fn wgmma_fn(w: &mut Source, input: DType, n: u32) {
    let ty = ptx_type(input);
    let regs = n / 2;
    let list: Vec<String> = (0..regs).map(|i| format!("%{i}")).collect();
    w.line(format!(
        "static __device__ __forceinline__ void tsr_wgmma_m64n{n}(float (&d)[{regs}], unsigned long long da, unsigned long long db) {{"
    ));
    w.line(format!(
        "  asm volatile(\"{{ .reg .pred p; setp.ne.b32 p, %{}, 0; wgmma.mma_async.sync.aligned.m64n{n}k16.f32.{ty}.{ty} {{{}}}, %{}, %{}, p, 1, 1, 0, 0; }}\"",
        regs + 2,
        list.join(", "),
        regs,
        regs + 1
    ));
    accumulator_operands(w, n);
    w.line("    : \"l\"(da), \"l\"(db), \"r\"(1));");
    w.line("}");
}
