//! The sm_90a GEMM mainloop: warp-specialized TMA + `wgmma`.
//!
//! Warpgroup 0 produces: after `setmaxnreg.dec`, one thread waits for a free stage (`empty`
//! barrier), announces its bytes on the stage's `full` barrier and issues two TMA box copies
//! (A: `tile_m × tile_k`, B: `tile_n × tile_k`, both K-major, swizzled by the tensor map).
//! Warpgroups 1.. consume: after `setmaxnreg.inc`, each waits on `full`, issues its chain of
//! `wgmma.m64nNk16` over the stage, keeps one group in flight and releases the previous
//! stage on `empty`. Edges need no predication in the mainloop: TMA fills out-of-bounds
//! elements with zeros. The epilogue is the shared one ([`crate::kernel::EpilogueStore`]),
//! fed with wgmma's accumulator layout.
//!
//! **Split-K** (`split_k = 2`, [`TileSchedule::PersistentClusters`]): the kernel runs in 2-CTA
//! clusters (`__cluster_dims__(2, 1, 1)`) that walk the tiles together, cluster `blockIdx.x / 2`
//! of `gridDim.x / 2`; rank r (`%cluster_ctarank`) loads and multiplies k-tiles
//! `[r·half, min(k_tiles, (r+1)·half))`, `half = ⌈k_tiles / 2⌉` (ring positions count this
//! rank's own k-tiles; a rank may get none and hands over zeros). After a tile's mainloop each
//! consumer warpgroup `cw` of rank 1 waits until its slot of the reduction buffer is free
//! (`red_empty[cw]`, its own barrier, parity of its previous tile), writes its f32 accumulators
//! there (16-byte vectors indexed `(vector · 128 + thread)`, so a warp's stores are contiguous
//! and conflict-free), and every thread arrives on rank 0's `red_full[cw]` remotely (`mapa` +
//! `mbarrier.arrive.release.cluster`); it skips the epilogue. Rank 0's warpgroup `cw` waits on
//! `red_full[cw]` (parity of its tile count, acquire at cluster scope), adds rank 1's slot with
//! `ld.shared::cluster`, arrives on rank 1's `red_empty[cw]` and runs the epilogue. Both barriers
//! count 128 arrivals (one warpgroup, each thread releasing its own accesses); one slot per
//! consumer warpgroup serves the cooperative and the pingpong schedule alike. Barriers are
//! initialised, fenced (`fence.mbarrier_init.release.cluster`) and published by a full cluster
//! barrier before any warp specialises. Exit: rank 0 consumes every arrival rank 1 makes on it
//! before it can finish, and rank 1's warpgroups wait, after their last tile, until rank 0 has
//! read their slot, so neither CTA leaves while its peer still touches its shared memory.

use super::descriptor::SmemDescriptor;
use crate::dialect::{AccGroup, Dialect};
use crate::kernel::{
    emit_tile_counts, emit_tile_origin, EpilogueStore, KernelSource, TileSchedule,
};
use crate::source::Source;
use crate::CodegenError;
use tessera_dsl::ir::Stmt;
use tessera_dsl::{
    ConsumerSchedule, EpilogueMode, GemmTile, KernelIr, TensorMapArg, WarpgroupPlan,
};

/// Registers a producer thread keeps, and a consumer thread gets (Σ threads·regs ≤ 64K).
fn register_split(consumers: u32) -> (u32, u32) {
    match consumers {
        1 => (40, 232),
        _ => (24, 240),
    }
}

/// The tensor maps of A (`tile_m × tile_k` boxes of the row-major M×K tensor) and B
/// (`tile_n × tile_k` boxes of the K-major N×K tensor).
fn tensor_maps(ir: &KernelIr, plan: &WarpgroupPlan) -> Vec<TensorMapArg> {
    let map = |name: &str, tensor: &str, lines: &str, ld: &str, stride: &str, box_lines: u32| {
        TensorMapArg {
            name: name.into(),
            tensor: tensor.into(),
            dtype: ir.variant.input,
            inner: "K".into(),
            lines: lines.into(),
            line_stride: ld.into(),
            batch_stride: stride.into(),
            batches: None,
            box_inner: ir.tile_k,
            box_lines,
            swizzle: plan.swizzle,
        }
    };
    vec![
        map("tmap_a", "a", "M", "lda", "stride_a", ir.tile_m),
        map("tmap_b", "b", "N", "ldb", "stride_b", ir.tile_n),
    ]
}

pub fn emit(
    ir: &KernelIr,
    d: &dyn Dialect,
    tile: &GemmTile,
    plan: &WarpgroupPlan,
) -> Result<KernelSource, CodegenError> {
    let (acc, ops) = ir
        .body
        .iter()
        .find_map(|s| match s {
            Stmt::Epilogue { acc, dst, ops } => Some((acc, (dst, ops))),
            _ => None,
        })
        .ok_or_else(|| CodegenError::Unsupported("a GEMM without an epilogue".into()))?;
    let (dst, ops) = ops;
    let store = EpilogueStore::new(ir, d, *dst, ops)?;
    let threads = plan.threads();
    let maps = tensor_maps(ir, plan);
    let mut w = Source::new();
    d.prelude(&mut w);
    super::prelude(&mut w, ir.variant.input, &[plan.wg_n]);
    if plan.split_k > 1 {
        w.lines(SPLIT_PRELUDE);
    }
    w.line("");
    w.line(format!(
        "// {} for {}: tile {}x{}x{}, TMA + wgmma, 1 producer + {} consumer warpgroups of {}x{}, {} stages",
        ir.name,
        d.target(),
        ir.tile_m,
        ir.tile_n,
        ir.tile_k,
        plan.consumers,
        plan.wg_m,
        plan.wg_n,
        plan.stages
    ));
    if plan.split_k > 1 {
        w.line(format!(
            "// split-K: the {} CTAs of a cluster each run a share of every tile's K range, reduced through distributed shared memory",
            plan.cluster_size()
        ));
        w.line(format!(
            "{} __cluster_dims__({}, 1, 1) {}(",
            d.kernel_head(threads),
            plan.cluster_size(),
            ir.name
        ));
    } else {
        w.line(format!("{} {}(", d.kernel_head(threads), ir.name));
    }
    w.lines(&super::params_with_tensor_maps(d, ir, &maps));
    w.open(")");
    emit_body(&mut w, ir, tile, plan, &maps, &store, acc)?;
    w.close("");
    Ok(KernelSource {
        name: ir.name.clone(),
        target: d.target(),
        source: w.finish(),
        threads,
        smem_bytes: plan.smem_bytes(tile, &ir.variant),
        tile_m: ir.tile_m,
        tile_n: ir.tile_n,
        tensor_maps: maps,
        schedule: if plan.split_k > 1 {
            TileSchedule::PersistentClusters {
                ctas: plan.cluster_size(),
            }
        } else {
            TileSchedule::Persistent
        },
    })
}

/// The PTX helpers of split-K (after the Hopper prelude): cluster rank and barrier, `mapa`,
/// cluster-scope mbarrier arrive/wait, and the reduction buffer's 16-byte accesses.
const SPLIT_PRELUDE: &str = r#"// split-K: 2-CTA clusters, distributed shared memory
static __device__ __forceinline__ unsigned tsr_cluster_rank() {
  unsigned r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
  return r;
}
// every thread of every CTA of the cluster: what each did before is visible to all after
static __device__ __forceinline__ void tsr_cluster_sync() {
  asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}
// the address of shared-memory location `addr` in the cluster's CTA `rank`
static __device__ __forceinline__ unsigned tsr_mapa(unsigned addr, unsigned rank) {
  unsigned r;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(r) : "r"(addr), "r"(rank));
  return r;
}
// arrive on a barrier of any CTA of the cluster (an address from tsr_mapa), releasing this
// thread's earlier accesses at cluster scope
static __device__ __forceinline__ void tsr_mbar_arrive_cluster(unsigned bar) {
  asm volatile("mbarrier.arrive.release.cluster.shared::cluster.b64 _, [%0];" :: "r"(bar) : "memory");
}
// wait on this CTA's barrier for the phase of parity `phase`, acquiring what the arrivals released
static __device__ __forceinline__ void tsr_mbar_wait_cluster(unsigned bar, unsigned phase) {
  unsigned done;
  do {
    asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.acquire.cluster.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
                 : "=r"(done) : "r"(bar), "r"(phase) : "memory");
  } while (!done);
}
static __device__ __forceinline__ void tsr_st_shared_v4(unsigned addr, float x, float y, float z, float t) {
  asm volatile("st.shared.v4.f32 [%0], {%1, %2, %3, %4};" :: "r"(addr), "f"(x), "f"(y), "f"(z), "f"(t) : "memory");
}
// x..t += the four floats at `addr` (distributed shared memory)
static __device__ __forceinline__ void tsr_add_cluster_v4(unsigned addr, float& x, float& y, float& z, float& t) {
  float a, b, c, e;
  asm volatile("ld.shared::cluster.v4.f32 {%0, %1, %2, %3}, [%4];" : "=f"(a), "=f"(b), "=f"(c), "=f"(e) : "r"(addr) : "memory");
  x += a; y += b; z += c; t += e;
}"#;

fn emit_body(
    w: &mut Source,
    ir: &KernelIr,
    tile: &GemmTile,
    plan: &WarpgroupPlan,
    maps: &[TensorMapArg],
    store: &EpilogueStore,
    acc: &str,
) -> Result<(), CodegenError> {
    let (a_bytes, b_bytes) = tile.stage_bytes(&ir.variant);
    let stages = plan.stages;
    let atom = plan.swizzle.atom_bytes();
    let tx_bytes: u32 = maps.iter().map(TensorMapArg::box_bytes).sum();
    if tx_bytes != a_bytes + b_bytes {
        return Err(CodegenError::Malformed(format!(
            "TMA boxes of {tx_bytes} bytes do not fill a {}-byte stage",
            a_bytes + b_bytes
        )));
    }
    let (producer_regs, consumer_regs) = register_split(plan.consumers);
    w.line("extern __shared__ __align__(1024) unsigned char smem[];");
    w.line("const int tid = threadIdx.x;");
    w.line("const int wg = tid / 128;");
    emit_tile_counts(w, ir);
    let split = plan.split_k > 1;
    if split {
        w.line("// split-K: this CTA's rank in its cluster; the clusters walk the tiles");
        w.line("const int rank = (int)tsr_cluster_rank();");
        w.line(format!(
            "const int cluster = blockIdx.x / {0}, clusters = gridDim.x / {0};",
            plan.cluster_size()
        ));
    }
    w.line("const long long bz = blockIdx.z;");
    w.line("d += bz * stride_d;");
    w.line("if (c) c += bz * stride_c;");
    w.line("if (residual) residual += bz * stride_d;");
    w.line(format!(
        "// {stages} stages of A ({a_bytes} B) and B ({b_bytes} B), swizzled {} B, on a {atom}-byte boundary; then the barriers",
        plan.swizzle.span()
    ));
    w.line(format!(
        "const unsigned s_a = (tsr_smem_addr(smem) + {}) & ~{}u;",
        atom - 1,
        atom - 1
    ));
    w.line(format!("const unsigned s_b = s_a + {};", stages * a_bytes));
    let mut after_b = "s_b".to_string();
    let mut after_b_bytes = stages * b_bytes;
    if plan.epilogue == EpilogueMode::Staged {
        w.line(format!(
            "const unsigned staging = s_b + {}; // {} x {}x{} outputs, rows of {} bytes",
            stages * b_bytes,
            plan.consumers,
            plan.wg_m,
            plan.wg_n,
            plan.staging_pitch()
        ));
        after_b = "staging".into();
        after_b_bytes = plan.consumers * plan.wg_m * plan.staging_pitch();
    }
    if split {
        w.line(format!(
            "const unsigned red = {after_b} + {after_b_bytes}; // split-K: {} slots of {} bytes, f32 partials by (vector, thread)",
            plan.consumers,
            plan.reduction_bytes() / plan.consumers
        ));
        after_b = "red".into();
        after_b_bytes = plan.reduction_bytes();
    }
    w.line(format!(
        "const unsigned full = {after_b} + {after_b_bytes}; // {stages} x 8 bytes"
    ));
    w.line(format!("const unsigned empty = full + {};", stages * 8));
    let pingpong = plan.schedule == ConsumerSchedule::Pingpong;
    if pingpong {
        w.line(format!(
            "const unsigned order = empty + {}; // 2 x 8 bytes: consumer c may start its mainloop",
            stages * 8
        ));
    }
    if split {
        w.line(format!(
            "const unsigned red_full = empty + {}; // {} x 8 bytes: rank 1's partials are in slot c (on rank 0)",
            stages * 8 + 16,
            plan.consumers
        ));
        w.line(format!(
            "const unsigned red_empty = red_full + {}; // {} x 8 bytes: rank 0 has read slot c (on rank 1)",
            plan.consumers * 8,
            plan.consumers
        ));
    }
    w.open("if (tid == 0)");
    w.open(format!("for (int s = 0; s < {stages}; ++s)"));
    w.line("tsr_mbar_init(full + s * 8, 1);");
    let releasers = match plan.schedule {
        ConsumerSchedule::Cooperative => plan.consumers,
        ConsumerSchedule::Pingpong => 1,
    };
    w.line(format!("tsr_mbar_init(empty + s * 8, {releasers});"));
    w.close("");
    if pingpong {
        w.line("tsr_mbar_init(order, 1);");
        w.line("tsr_mbar_init(order + 8, 1);");
    }
    if split {
        w.open(format!("for (int c = 0; c < {}; ++c)", plan.consumers));
        w.line("// every thread of one consumer warpgroup arrives");
        w.line("tsr_mbar_init(red_full + c * 8, 128);");
        w.line("tsr_mbar_init(red_empty + c * 8, 128);");
        w.close("");
    }
    w.line("asm volatile(\"fence.mbarrier_init.release.cluster;\" ::: \"memory\");");
    w.close("");
    if split {
        w.line("// both CTAs' barriers are initialised before any remote arrive");
        w.line("tsr_cluster_sync();");
    } else {
        w.line("__syncthreads();");
    }
    w.line(format!(
        "const int k_tiles = (K + {0} - 1) / {0};",
        ir.tile_k
    ));
    if split {
        w.line("// split-K: this rank's k-tiles [k_first, k_first + k_count), maybe none");
        w.line("const int k_half = (k_tiles + 1) / 2;");
        w.line("const int k_first = rank * k_half;");
        w.line("const int k_count = max(0, min(k_tiles, k_first + k_half) - k_first);");
    }
    w.open("if (wg == 0)");
    w.line(format!(
        "asm volatile(\"setmaxnreg.dec.sync.aligned.u32 {producer_regs};\");"
    ));
    w.line("// producer: one thread fills the ring, running ahead into the next tile");
    w.open("if (tid == 0)");
    w.line("int stage = 0, phase = 0;");
    if split {
        w.open(CLUSTER_TILE_LOOP);
        emit_tile_origin(w, ir);
        w.open("for (int kt = k_first; kt < k_first + k_count; ++kt)");
    } else {
        w.open(TILE_LOOP);
        emit_tile_origin(w, ir);
        w.open("for (int kt = 0; kt < k_tiles; ++kt)");
    }
    w.line("tsr_mbar_wait(empty + stage * 8, phase ^ 1);");
    w.line(format!("tsr_mbar_expect_tx(full + stage * 8, {tx_bytes});"));
    w.line(format!(
        "tsr_tma_load(s_a + stage * {a_bytes}, &{}, kt * {}, row0, (int)bz, full + stage * 8);",
        maps[0].name, ir.tile_k
    ));
    w.line(format!(
        "tsr_tma_load(s_b + stage * {b_bytes}, &{}, kt * {}, col0, (int)bz, full + stage * 8);",
        maps[1].name, ir.tile_k
    ));
    advance(w, stages);
    w.close("");
    w.close("");
    w.close("");
    w.close("");
    w.open("else");
    w.line(format!(
        "asm volatile(\"setmaxnreg.inc.sync.aligned.u32 {consumer_regs};\");"
    ));
    emit_consumer(w, ir, tile, plan, store, acc)?;
    w.close("");
    Ok(())
}

/// Copy a warpgroup's staged tile to global memory in 16-byte row chunks (N is a multiple of 8
/// wherever the Hopper pipeline runs, and a head store's head_dim too, so no chunk straddles two
/// heads), between two barriers of the warpgroup's own.
fn emit_staged_copy_out(w: &mut Source, plan: &WarpgroupPlan, store: &EpilogueStore) {
    let per_row = plan.wg_n / 8;
    let pitch = plan.staging_pitch();
    let sync = "asm volatile(\"bar.sync %0, 128;\" :: \"r\"(1 + cw) : \"memory\");";
    w.line("// the staged tile leaves in coalesced 16-byte stores");
    w.line(sync);
    w.line("#pragma unroll 4");
    w.open(format!(
        "for (int idx = tid % 128; idx < {}; idx += 128)",
        plan.wg_m * per_row
    ));
    w.line(format!(
        "const int lr = idx / {per_row}, lc = (idx % {per_row}) * 8;"
    ));
    w.line("const int r = row0 + wr0 + lr, cc = col0 + lc;");
    w.line("unsigned x, y, z, t;");
    w.line(format!(
        "asm volatile(\"ld.shared.v4.b32 {{%0, %1, %2, %3}}, [%4];\" : \"=r\"(x), \"=r\"(y), \"=r\"(z), \"=r\"(t) : \"r\"(stg + lr * {pitch} + lc * 2));"
    ));
    w.open("if (r < M && cc < N)");
    store.destination(w);
    w.line("asm volatile(\"st.global.v4.b32 [%0], {%1, %2, %3, %4};\" :: \"l\"(d + di), \"r\"(x), \"r\"(y), \"r\"(z), \"r\"(t) : \"memory\");");
    w.close("");
    w.close("");
    w.line(sync);
}

/// The persistent loop over this block's tiles (stage and phase carry across tiles).
const TILE_LOOP: &str = "for (int pid = blockIdx.x; pid < tiles_m * tiles_n; pid += gridDim.x)";
/// Split-K: the loop over this cluster's tiles (both CTAs walk the same ones).
const CLUSTER_TILE_LOOP: &str = "for (int pid = cluster; pid < tiles_m * tiles_n; pid += clusters)";

/// `stage`/`phase` to the next slot of the ring.
fn advance(w: &mut Source, stages: u32) {
    w.line(format!(
        "if (++stage == {stages}) {{ stage = 0; phase ^= 1; }}"
    ));
}

fn emit_consumer(
    w: &mut Source,
    ir: &KernelIr,
    tile: &GemmTile,
    plan: &WarpgroupPlan,
    store: &EpilogueStore,
    acc: &str,
) -> Result<(), CodegenError> {
    let (a_bytes, b_bytes) = tile.stage_bytes(&ir.variant);
    let line = plan.swizzle.span();
    let (mi, regs) = (plan.m_atoms(), plan.wg_n / 2);
    let ksteps = ir.tile_k / 16;
    w.line("// consumer warpgroup: wgmma over each stage, one group in flight");
    w.line("const int cw = wg - 1;");
    w.line("const int lane = tid % 32;");
    w.line("const int wq = (tid / 32) % 4;");
    let (wr, first, step) = match plan.schedule {
        ConsumerSchedule::Cooperative => (format!("cw * {}", plan.wg_m), "0", 1),
        ConsumerSchedule::Pingpong => ("0".to_string(), "cw", 2),
    };
    w.line(format!("const int wr0 = {wr};"));
    w.line(format!(
        "const unsigned long long desc_hi = 0x{:016x}ull; // SBO {} B, swizzle {} B",
        SmemDescriptor::high_bits(plan.swizzle),
        plan.swizzle.atom_bytes(),
        line
    ));
    w.line(format!("float {acc}[{mi}][{regs}];"));
    let split = plan.split_k > 1;
    let k_count = if split { "k_count" } else { "k_tiles" };
    if split {
        w.line("// split-K: this warpgroup's tiles so far (the parity of its reduction barriers)");
        w.line("int red_n = 0;");
        w.line(
            "// this warpgroup's tiles: the it-th of the cluster's starts at ring position it * k_count",
        );
        w.open(format!("for (int it = {first}; ; it += {step})"));
        w.line("const int pid = cluster + it * clusters;");
    } else {
        w.line(
            "// this warpgroup's tiles: the it-th of the block's starts at ring position it * k_tiles",
        );
        w.open(format!("for (int it = {first}; ; it += {step})"));
        w.line("const int pid = blockIdx.x + it * gridDim.x;");
    }
    w.line("if (pid >= tiles_m * tiles_n) break;");
    w.line(format!(
        "const unsigned pos = (unsigned)it * (unsigned){k_count};"
    ));
    w.line(format!(
        "int stage = pos % {}, phase = (pos / {}) & 1;",
        plan.stages, plan.stages
    ));
    emit_tile_origin(w, ir);
    w.line("#pragma unroll");
    w.open(format!("for (int i = 0; i < {mi}; ++i)"));
    w.line("#pragma unroll");
    w.line(format!(
        "for (int j = 0; j < {regs}; ++j) {acc}[i][j] = 0.f;"
    ));
    w.close("");
    w.line("int held = -1;");
    if plan.schedule == ConsumerSchedule::Pingpong {
        // A full-barrier wait is by parity, so it may not run more than one round ahead of the
        // ring: a consumer starts its mainloop only once the other has passed all of its waits.
        w.line("if (it > 0) tsr_mbar_wait(order + cw * 8, ((it - 1) / 2) & 1);");
    }
    w.open(format!("for (int kt = 0; kt < {k_count}; ++kt)"));
    w.line("tsr_mbar_wait(full + stage * 8, phase);");
    w.line(format!(
        "const unsigned a0 = s_a + stage * {a_bytes} + wr0 * {line};"
    ));
    w.line(format!("const unsigned b0 = s_b + stage * {b_bytes};"));
    w.line("tsr_wgmma_fence();");
    w.line("#pragma unroll");
    w.open(format!("for (int kk = 0; kk < {ksteps}; ++kk)"));
    w.line("const unsigned long long db = desc_hi | (((b0 + kk * 32) & 0x3FFFF) >> 4);");
    w.line("#pragma unroll");
    w.open(format!("for (int i = 0; i < {mi}; ++i)"));
    w.line(format!(
        "const unsigned long long da = desc_hi | (((a0 + i * {} + kk * 32) & 0x3FFFF) >> 4);",
        64 * line
    ));
    w.line(format!("tsr_wgmma_m64n{}({acc}[i], da, db);", plan.wg_n));
    w.close("");
    w.close("");
    w.line("tsr_wgmma_commit();");
    w.line("tsr_wgmma_wait<1>();");
    w.line("// the previous stage's wgmma has finished reading it");
    w.line("if (held >= 0 && tid % 128 == 0) tsr_mbar_arrive(empty + held * 8);");
    w.line("held = stage;");
    advance(w, plan.stages);
    w.close("");
    if plan.schedule == ConsumerSchedule::Pingpong {
        w.line("if (tid % 128 == 0) tsr_mbar_arrive(order + (1 - cw) * 8);");
    }
    w.line("tsr_wgmma_wait<0>();");
    w.line("if (held >= 0 && tid % 128 == 0) tsr_mbar_arrive(empty + held * 8);");
    if split {
        emit_split_reduction(w, plan, acc);
    }
    store.comment(w);
    // wgmma m64nN accumulator: register 4j + 2h + e of an m64 atom holds row
    // 16·warp + lane/4 + 8h, column 8j + 2·(lane%4) + e
    let chunks = plan.wg_n / 8;
    let local_row = "i * 64 + wq * 16 + (lane >> 2) + h * 8";
    let local_col = "j * 8 + (lane & 3) * 2";
    let group = AccGroup {
        regs: vec![
            format!("{acc}[i][j * 4 + h * 2]"),
            format!("{acc}[i][j * 4 + h * 2 + 1]"),
        ],
        row: format!("wr0 + {local_row}"),
        col: local_col.into(),
        block_end: format!("j == {} && h == 1", chunks - 1),
    };
    let pitch = plan.staging_pitch();
    if plan.epilogue == EpilogueMode::Staged {
        w.line(format!(
            "const unsigned stg = staging + cw * {};",
            plan.wg_m * pitch
        ));
    }
    w.line("#pragma unroll");
    w.open(format!("for (int i = 0; i < {mi}; ++i)"));
    w.line("#pragma unroll");
    w.open(format!("for (int j = 0; j < {chunks}; ++j)"));
    w.line("#pragma unroll");
    w.open("for (int h = 0; h < 2; ++h)");
    match plan.epilogue {
        EpilogueMode::Direct => store.group(w, &group)?,
        EpilogueMode::Staged => store.group_to_shared(
            w,
            &group,
            &format!("stg + ({local_row}) * {pitch} + ({local_col}) * 2"),
        )?,
    }
    w.close("");
    w.close("");
    w.close("");
    if plan.epilogue == EpilogueMode::Staged {
        emit_staged_copy_out(w, plan, store);
    }
    w.close("");
    if split {
        w.line("// split-K: rank 1 stays until rank 0 has read its last partials out of its shared memory");
        w.line("if (rank == 1 && red_n > 0) tsr_mbar_wait_cluster(red_empty + cw * 8, (red_n - 1) & 1);");
    }
    Ok(())
}

/// Split-K, after a tile's mainloop: rank 1 hands this warpgroup's partial sums over through
/// its slot of the reduction buffer and skips the epilogue; rank 0 adds them.
fn emit_split_reduction(w: &mut Source, plan: &WarpgroupPlan, acc: &str) {
    let (mi, vectors) = (plan.m_atoms(), plan.wg_n / 8);
    let slot = plan.reduction_bytes() / plan.consumers;
    // vector v of thread t lives at (v * 128 + t) * 16: a warp's 16-byte accesses are contiguous
    let at = |base: &str| format!("{base} + ((i * {vectors} + q) * 128 + tid % 128) * 16");
    let regs = |q: &str| {
        (0..4)
            .map(|e| format!("{acc}[i][{q} * 4 + {e}]"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    w.line(
        "// split-K: this warpgroup's partial sums meet in its slot of rank 1's reduction buffer",
    );
    w.line("const int red_phase = red_n & 1;");
    w.line("++red_n;");
    w.line(format!("const unsigned slot = red + cw * {slot};"));
    w.open("if (rank == 1)");
    w.line("// rank 0 has read the previous tile's partials out of the slot");
    w.line("if (red_n > 1) tsr_mbar_wait_cluster(red_empty + cw * 8, red_phase ^ 1);");
    w.line("#pragma unroll");
    w.open(format!("for (int i = 0; i < {mi}; ++i)"));
    w.line("#pragma unroll");
    w.line(format!(
        "for (int q = 0; q < {vectors}; ++q) tsr_st_shared_v4({}, {});",
        at("slot"),
        regs("q")
    ));
    w.close("");
    w.line("tsr_mbar_arrive_cluster(tsr_mapa(red_full + cw * 8, 0));");
    w.line("continue;");
    w.close("");
    w.line("tsr_mbar_wait_cluster(red_full + cw * 8, red_phase);");
    w.line("const unsigned peer = tsr_mapa(slot, 1);");
    w.line("#pragma unroll");
    w.open(format!("for (int i = 0; i < {mi}; ++i)"));
    w.line("#pragma unroll");
    w.line(format!(
        "for (int q = 0; q < {vectors}; ++q) tsr_add_cluster_v4({}, {});",
        at("peer"),
        regs("q")
    ));
    w.close("");
    w.line("// rank 1 may refill the slot");
    w.line("tsr_mbar_arrive_cluster(tsr_mapa(red_empty + cw * 8, 1));");
}
