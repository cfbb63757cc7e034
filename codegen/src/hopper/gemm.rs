//! The sm_90a GEMM mainloop: warp-specialized TMA + `wgmma`.
//!
//! Warpgroup 0 produces: after `setmaxnreg.dec`, one thread waits for a free stage (`empty`
//! barrier), announces its bytes on the stage's `full` barrier and issues the TMA box copies
//! (A: `tile_m × tile_k`, B: `tile_n × tile_k`, both K-major, swizzled by the tensor map; a
//! K step deeper than one 128-byte line is copied as several 64-wide panels, side by side).
//! Warpgroups 1.. consume: after `setmaxnreg.inc`, each waits on `full`, issues its chain of
//! `wgmma.m64nNk16` over the stage, keeps one group in flight and releases the previous
//! stage on `empty`. Edges need no predication in the mainloop: TMA fills out-of-bounds
//! elements with zeros. The epilogue is the shared one ([`crate::kernel::EpilogueStore`]),
//! fed with wgmma's accumulator layout.

use super::descriptor::SmemDescriptor;
use crate::dialect::{AccGroup, Dialect};
use crate::kernel::{
    emit_cluster_tile_counts, emit_cluster_tile_origin, EpilogueStore, KernelSource, TileSchedule,
};
use crate::source::Source;
use crate::CodegenError;
use tessera_dsl::ir::Stmt;
use tessera_dsl::{
    register_split, ConsumerSchedule, EpilogueMode, GemmTile, KernelIr, Swizzle, TensorMapArg,
    WarpgroupPlan, TMA_STORE_ALIGN, TMA_STORE_PANEL,
};

/// The maps the producer loads a stage through (A's and B's); a TMA-stored D's follows them.
const LOAD_MAPS: usize = 2;

/// The tensor maps of A (`tile_m × panel` boxes of the row-major M×K tensor) and B
/// (`tile_n × panel` boxes of the K-major N×K tensor, or a block's `tile_n / multicast` lines
/// of them where a cluster multicasts B), where a panel is the K step or, for a deeper step,
/// one 128-byte swizzled line of it), then, with a TMA-store epilogue, D's
/// (`wg_m × 64` boxes of the row-major M×N output).
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
            box_inner: ir.tile_k / plan.panels,
            box_lines,
            box_lines_cap: None,
            swizzle: plan.swizzle,
        }
    };
    vec![
        // a small M copies only its lines (rounded up to 8) of the tile, not tile_m
        TensorMapArg {
            box_lines_cap: Some("M".into()),
            ..map("tmap_a", "a", "M", "lda", "stride_a", ir.tile_m)
        },
        map(
            "tmap_b",
            "b",
            "N",
            "ldb",
            "stride_b",
            ir.tile_n / plan.multicast,
        ),
    ]
    .into_iter()
    .chain(
        (plan.epilogue == EpilogueMode::TmaStore).then(|| TensorMapArg {
            // D's boxes: one warpgroup's rows by a 64-column panel, swizzled as staged
            name: "tmap_d".into(),
            tensor: "d".into(),
            dtype: ir.variant.output,
            inner: "N".into(),
            lines: "M".into(),
            line_stride: "ldd".into(),
            batch_stride: "stride_d".into(),
            batches: None,
            box_inner: TMA_STORE_PANEL,
            box_lines: plan.wg_m,
            box_lines_cap: None,
            swizzle: Swizzle::B128,
        }),
    )
    .collect()
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
    let ctas = plan.cluster_ctas();
    if ctas > 1 {
        w.lines(super::CLUSTER_PRELUDE);
    }
    if plan.multicast > 1 {
        w.lines(super::MULTICAST_PRELUDE);
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
    let cluster = if ctas > 1 {
        format!(" __cluster_dims__({ctas}, 1, 1)")
    } else {
        String::new()
    };
    w.line(format!("{}{cluster} {}(", d.kernel_head(threads), ir.name));
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
            TileSchedule::Clustered { ctas }
        } else if plan.multicast > 1 {
            TileSchedule::PersistentClusters { ctas }
        } else {
            TileSchedule::Persistent
        },
        rows: crate::kernel::TileRows::QueryHead,
    })
}

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
    let panels = plan.panels;
    // B's box is a block's share of the stage where the cluster multicasts it
    let tx_bytes: u32 = panels * (maps[0].box_bytes() + maps[1].box_bytes() * plan.multicast);
    if tx_bytes != a_bytes + b_bytes {
        return Err(CodegenError::Malformed(format!(
            "TMA boxes of {tx_bytes} bytes do not fill a {}-byte stage",
            a_bytes + b_bytes
        )));
    }
    let (consumer_regs, producer_regs) = register_split(plan.consumers).ok_or_else(|| {
        CodegenError::Malformed(format!("{} consumer warpgroups", plan.consumers))
    })?;
    w.line("extern __shared__ __align__(1024) unsigned char smem[];");
    w.line("const int tid = threadIdx.x;");
    w.line("const int wg = tid / 128;");
    emit_cluster_tile_counts(w, ir, plan.multicast);
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
    match plan.epilogue {
        EpilogueMode::Staged => {
            w.line(format!(
                "const unsigned staging = s_b + {}; // {} x {}x{} outputs, rows of {} bytes",
                stages * b_bytes,
                plan.consumers,
                plan.wg_m,
                plan.wg_n,
                plan.staging_pitch()
            ));
            after_b = "staging".into();
            after_b_bytes = plan.consumers * plan.staging_tile_bytes();
        }
        EpilogueMode::TmaStore => {
            w.line(format!(
                "const unsigned staging = (s_b + {} + {}) & ~{}u; // {} x {}x{} outputs in {}-column panels swizzled 128 B",
                stages * b_bytes,
                TMA_STORE_ALIGN - 1,
                TMA_STORE_ALIGN - 1,
                plan.consumers,
                plan.wg_m,
                plan.wg_n,
                TMA_STORE_PANEL
            ));
            after_b = "staging".into();
            after_b_bytes = plan.consumers * plan.staging_tile_bytes();
        }
        EpilogueMode::Direct => {}
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
    w.open("if (tid == 0)");
    w.open(format!("for (int s = 0; s < {stages}; ++s)"));
    w.line("tsr_mbar_init(full + s * 8, 1);");
    let releasers = match plan.schedule {
        ConsumerSchedule::Cooperative => plan.consumers,
        ConsumerSchedule::Pingpong => 1,
    };
    if plan.multicast > 1 {
        w.line(format!(
            "tsr_mbar_init(empty + s * 8, {}); // every block's consumers release a stage: each block's producer fills part of it in all",
            releasers * plan.multicast
        ));
    } else {
        w.line(format!("tsr_mbar_init(empty + s * 8, {releasers});"));
    }
    w.close("");
    if pingpong {
        w.line("tsr_mbar_init(order, 1);");
        w.line("tsr_mbar_init(order + 8, 1);");
    }
    w.line("asm volatile(\"fence.mbarrier_init.release.cluster;\" ::: \"memory\");");
    w.close("");
    if plan.multicast > 1 {
        w.line("// the cluster's barriers are initialised before any block copies into another's stages");
        w.line("tsr_cluster_sync();");
        w.line("const int rank = (int)tsr_cluster_rank();");
    } else {
        w.line("__syncthreads();");
    }
    w.line(format!(
        "const int k_tiles = (K + {0} - 1) / {0};",
        ir.tile_k
    ));
    let split = plan.split_k;
    if split > 1 {
        w.line(format!(
            "// split-K: a cluster of {split} blocks per tile, adjacent along x; this block walks K steps [k_begin, k_end)"
        ));
        w.line("const int rank = (int)tsr_cluster_rank();");
        w.line(format!(
            "const int k_begin = rank * k_tiles / {split}, k_end = (rank + 1) * k_tiles / {split};"
        ));
    }
    w.open("if (wg == 0)");
    w.line(format!(
        "asm volatile(\"setmaxnreg.dec.sync.aligned.u32 {producer_regs};\");"
    ));
    emit_producer(w, ir, tile, plan, &maps[..LOAD_MAPS]);
    if split > 1 {
        w.line("// the producer warpgroup keeps the consumers' three cluster barriers");
        for _ in 0..SPLIT_BARRIERS {
            w.line("tsr_cluster_sync();");
        }
    }
    if plan.multicast > 1 {
        w.line(
            "// and their last one: no block leaves while another may still arrive on its barriers",
        );
        w.line("tsr_cluster_sync();");
    }
    w.close("");
    w.open("else");
    w.line(format!(
        "asm volatile(\"setmaxnreg.inc.sync.aligned.u32 {consumer_regs};\");"
    ));
    emit_consumer(w, ir, tile, plan, store, acc)?;
    w.close("");
    Ok(())
}

/// The producer warpgroup's one thread: waits for a free stage, announces its bytes on the
/// stage's `full` barrier and issues A's and B's TMA boxes (one per panel), tile after tile.
/// `maps` are the load maps only: a stage's transaction bytes are theirs, never D's.
fn emit_producer(
    w: &mut Source,
    ir: &KernelIr,
    tile: &GemmTile,
    plan: &WarpgroupPlan,
    maps: &[TensorMapArg],
) {
    let (a_bytes, b_bytes) = tile.stage_bytes(&ir.variant);
    let (stages, panels) = (plan.stages, plan.panels);
    w.line("// producer: one thread fills the ring, running ahead into the next tile");
    w.open("if (tid == 0)");
    w.line(format!(
        "// a stage's bytes: A's box holds min({}, M rounded up to {}) lines (a small M's TMA fills no more out-of-bounds lines than that), B's {b_bytes} bytes",
        ir.tile_m,
        TensorMapArg::CAP_LINES_MULTIPLE
    ));
    let tx_bytes: Vec<String> = maps.iter().map(|m| m.copy_bytes_expr(panels)).collect();
    let mc = plan.multicast;
    if mc > 1 {
        // the other blocks' shares of B arrive on this block's barrier too
        w.line(format!(
            "const unsigned tx_b = {}u; // B's whole stage: this block's share and {} multicast into it",
            panels * maps[1].box_bytes() * mc,
            mc - 1
        ));
        w.line(format!(
            "const unsigned tx_bytes = {} + tx_b;",
            maps[0].copy_bytes_expr(panels)
        ));
    } else {
        w.line(format!(
            "const unsigned tx_bytes = {};",
            tx_bytes.join(" + ")
        ));
    }
    w.line("int stage = 0, phase = 0;");
    w.open(tile_loop(plan));
    emit_cluster_tile_origin(w, ir, mc);
    if mc > 1 {
        w.line("// past M (the last cluster tile of an odd count): no A to copy, only B's share for the others");
        w.line("const bool a_live = row0 < M;");
    }
    w.open(k_loop(plan));
    w.line("tsr_mbar_wait(empty + stage * 8, phase ^ 1);");
    if mc > 1 {
        w.line("tsr_mbar_expect_tx(full + stage * 8, a_live ? tx_bytes : tx_b);");
    } else {
        w.line("tsr_mbar_expect_tx(full + stage * 8, tx_bytes);");
    }
    // a block's share of B: `tile_n / mc` lines at its rank's offset, multicast to the cluster
    let share = b_bytes / panels / mc;
    let b_copy = |dst: String, k: String| {
        if mc > 1 {
            format!(
                "tsr_tma_load_multicast({dst} + rank * {share}, &{}, {k}, col0 + rank * {}, (int)bz, full + stage * 8, (unsigned short){});",
                maps[1].name,
                ir.tile_n / mc,
                (1u32 << mc) - 1
            )
        } else {
            format!(
                "tsr_tma_load({dst}, &{}, {k}, col0, (int)bz, full + stage * 8);",
                maps[1].name
            )
        }
    };
    let a_guard = if mc > 1 { "if (a_live) " } else { "" };
    if panels == 1 {
        w.line(format!(
            "{a_guard}tsr_tma_load(s_a + stage * {a_bytes}, &{}, kt * {}, row0, (int)bz, full + stage * 8);",
            maps[0].name, ir.tile_k
        ));
        w.line(b_copy(
            format!("s_b + stage * {b_bytes}"),
            format!("kt * {}", ir.tile_k),
        ));
    } else {
        let panel = ir.tile_k / panels;
        w.line(format!(
            "// {panels} panels of {panel} K each, issued back to back: each row is read in runs of {} bytes",
            ir.tile_k * 2
        ));
        w.line("#pragma unroll");
        w.open(format!("for (int p = 0; p < {panels}; ++p)"));
        w.line(format!(
            "{a_guard}tsr_tma_load(s_a + stage * {a_bytes} + p * {}, &{}, kt * {} + p * {panel}, row0, (int)bz, full + stage * 8);",
            a_bytes / panels,
            maps[0].name,
            ir.tile_k
        ));
        w.line(b_copy(
            format!("s_b + stage * {b_bytes} + p * {}", b_bytes / panels),
            format!("kt * {} + p * {panel}", ir.tile_k),
        ));
        w.close("");
    }
    advance(w, stages);
    w.close("");
    w.close("");
    w.close("");
}

/// Split-K: the cluster's blocks hold partial accumulators of one tile. Each block other than
/// rank 0 writes its consumers' accumulators over its own ring (free once every mainloop is
/// done), `[vec4][thread]` so that rank 0's thread with the same index and registers reads
/// them back with 16-byte `ld.shared::cluster` loads and adds them; then only rank 0 goes on
/// to the epilogue.
fn emit_split_combine(w: &mut Source, plan: &WarpgroupPlan, acc: &str, mi: u32, regs: u32) {
    let quads = regs / 4;
    let wg_bytes = mi * regs * 128 * 4;
    w.line(format!(
        "// split-K: the cluster's {} partial tiles meet in rank 0",
        plan.split_k
    ));
    w.line(format!(
        "const unsigned part = s_a + cw * {wg_bytes}; // this warpgroup's partials: [vec4][thread]"
    ));
    w.line("tsr_cluster_sync(); // every block's mainloop is done: the rings are free");
    w.open("if (rank != 0)");
    w.line("#pragma unroll");
    w.open(format!("for (int i = 0; i < {mi}; ++i)"));
    w.line("#pragma unroll");
    w.open(format!("for (int q = 0; q < {quads}; ++q)"));
    w.line(format!(
        "asm volatile(\"st.shared.v4.f32 [%0], {{%1, %2, %3, %4}};\" :: \"r\"(part + ((i * {quads} + q) * 128 + tid % 128) * 16), \"f\"({acc}[i][q * 4]), \"f\"({acc}[i][q * 4 + 1]), \"f\"({acc}[i][q * 4 + 2]), \"f\"({acc}[i][q * 4 + 3]) : \"memory\");"
    ));
    w.close("");
    w.close("");
    w.close("");
    w.line("tsr_cluster_sync(); // the partials are written");
    w.open("if (rank == 0)");
    w.open(format!("for (int r = 1; r < {}; ++r)", plan.split_k));
    w.line("#pragma unroll");
    w.open(format!("for (int i = 0; i < {mi}; ++i)"));
    w.line("#pragma unroll");
    w.open(format!("for (int q = 0; q < {quads}; ++q)"));
    w.line("float x, y, z, t;");
    w.line(format!(
        "tsr_ld_cluster_v4(tsr_mapa(part + ((i * {quads} + q) * 128 + tid % 128) * 16, r), x, y, z, t);"
    ));
    w.line(format!(
        "{acc}[i][q * 4] += x; {acc}[i][q * 4 + 1] += y; {acc}[i][q * 4 + 2] += z; {acc}[i][q * 4 + 3] += t;"
    ));
    w.close("");
    w.close("");
    w.close("");
    w.close("");
    w.line("tsr_cluster_sync(); // rank 0 has read every partial: the other blocks may leave");
    w.line("if (rank != 0) break;");
}

/// Copy a warpgroup's staged tile to global memory in 16-byte row chunks (N is a multiple of 8
/// wherever the Hopper pipeline runs, and a head store's head_dim too, so no chunk straddles two
/// heads), between two barriers of the warpgroup's own.
fn emit_staged_copy_out(w: &mut Source, plan: &WarpgroupPlan, store: &EpilogueStore) {
    let per_row = plan.wg_n / 8;
    let pitch = plan.staging_pitch();
    w.line("// the staged tile leaves in coalesced 16-byte stores");
    w.line(WARPGROUP_SYNC);
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
    w.line(WARPGROUP_SYNC);
}

/// The loop over this block's tiles (stage and phase carry across tiles): a persistent walk,
/// or a split-K cluster's one tile.
fn tile_loop(plan: &WarpgroupPlan) -> String {
    match plan.cluster_ctas() {
        1 => "for (int pid = blockIdx.x; pid < tiles_m * tiles_n; pid += gridDim.x)".into(),
        n => format!(
            "for (int pid = blockIdx.x / {n}; pid < tiles_m * tiles_n; pid += gridDim.x / {n})"
        ),
    }
}

/// The loop over a tile's K steps: all of them, or a split-K block's share.
fn k_loop(plan: &WarpgroupPlan) -> &'static str {
    match plan.split_k {
        1 => "for (int kt = 0; kt < k_tiles; ++kt)",
        _ => "for (int kt = k_begin; kt < k_end; ++kt)",
    }
}

/// Cluster barriers of a split-K tile: mainloops done (rings free), partials written,
/// partials read. Every thread of every block passes each.
const SPLIT_BARRIERS: usize = 3;

/// `stage`/`phase` to the next slot of the ring.
fn advance(w: &mut Source, stages: u32) {
    w.line(format!(
        "if (++stage == {stages}) {{ stage = 0; phase ^= 1; }}"
    ));
}

/// A wgmma m64nN accumulator's layout: register 4j + 2h + e of an m64 atom `i` holds row
/// 16·warp + lane/4 + 8h, column 8j + 2·(lane%4) + e (of the warpgroup's tile).
const LOCAL_ROW: &str = "i * 64 + wq * 16 + (lane >> 2) + h * 8";
const LOCAL_COL: &str = "j * 8 + (lane & 3) * 2";

/// A consumer warpgroup: its tiles (every tile with its own rows when cooperative, alternate
/// tiles when pingpong), each one mainloop and one epilogue, then the block's last waits.
fn emit_consumer(
    w: &mut Source,
    ir: &KernelIr,
    tile: &GemmTile,
    plan: &WarpgroupPlan,
    store: &EpilogueStore,
    acc: &str,
) -> Result<(), CodegenError> {
    let line = plan.swizzle.span();
    let (mi, regs) = (plan.m_atoms(), plan.wg_n / 2);
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
    w.line(
        "// this warpgroup's tiles: the it-th of the block's starts at ring position it * k_tiles",
    );
    w.open(format!("for (int it = {first}; ; it += {step})"));
    if plan.cluster_ctas() > 1 {
        let n = plan.cluster_ctas();
        w.line(format!(
            "const int pid = blockIdx.x / {n} + it * (gridDim.x / {n});"
        ));
        w.line("if (pid >= tiles_m * tiles_n) break;");
        if plan.split_k > 1 {
            w.line("const unsigned pos = (unsigned)it * (unsigned)(k_end - k_begin);");
        } else {
            w.line("const unsigned pos = (unsigned)it * (unsigned)k_tiles;");
        }
    } else {
        w.line("const int pid = blockIdx.x + it * gridDim.x;");
        w.line("if (pid >= tiles_m * tiles_n) break;");
        w.line("const unsigned pos = (unsigned)it * (unsigned)k_tiles;");
    }
    w.line(format!(
        "int stage = pos % {}, phase = (pos / {}) & 1;",
        plan.stages, plan.stages
    ));
    emit_cluster_tile_origin(w, ir, plan.multicast);
    // the tile's epilogue reads this copy of the store, which knows about the prefetch
    let mut store = store.clone();
    store.prefetch_bias(w, plan.wg_n / 8, LOCAL_COL, "j");
    w.line("#pragma unroll");
    w.open(format!("for (int i = 0; i < {mi}; ++i)"));
    w.line("#pragma unroll");
    w.line(format!(
        "for (int j = 0; j < {regs}; ++j) {acc}[i][j] = 0.f;"
    ));
    w.close("");
    emit_consumer_mainloop(w, ir, tile, plan, acc);
    if plan.split_k > 1 {
        emit_split_combine(w, plan, acc, mi, regs);
    }
    emit_tile_store(w, plan, &store, acc, mi)?;
    w.close("");
    if plan.epilogue == EpilogueMode::TmaStore {
        // only the shared-memory reads need to finish before the block leaves: the global
        // writes complete with the grid, and waiting for them put a store's whole latency on
        // the tail of every short kernel (one tile per block: 384-row GEMMs 3-4 % slower)
        w.line("// the last TMA stores have read their staging tile before the block leaves");
        w.line("if (tid % 128 == 0) asm volatile(\"cp.async.bulk.wait_group.read 0;\" ::: \"memory\");");
    }
    if plan.multicast > 1 {
        w.line("// no block leaves while another may still arrive on its barriers");
        w.line("tsr_cluster_sync();");
    }
    Ok(())
}

/// One tile's mainloop in a consumer warpgroup: wait for each stage, issue its chain of
/// `wgmma`s, keep one group in flight and release the stage before it; at the end wait for
/// the last group and release its stage.
fn emit_consumer_mainloop(
    w: &mut Source,
    ir: &KernelIr,
    tile: &GemmTile,
    plan: &WarpgroupPlan,
    acc: &str,
) {
    let (a_bytes, b_bytes) = tile.stage_bytes(&ir.variant);
    let line = plan.swizzle.span();
    let mi = plan.m_atoms();
    let ksteps = ir.tile_k / 16;
    w.line("int held = -1;");
    if plan.schedule == ConsumerSchedule::Pingpong {
        // A full-barrier wait is by parity, so it may not run more than one round ahead of the
        // ring: a consumer starts its mainloop only once the other has passed all of its waits.
        w.line("if (it > 0) tsr_mbar_wait(order + cw * 8, ((it - 1) / 2) & 1);");
    }
    w.open(k_loop(plan));
    w.line("tsr_mbar_wait(full + stage * 8, phase);");
    w.line(format!(
        "const unsigned a0 = s_a + stage * {a_bytes} + wr0 * {line};"
    ));
    w.line(format!("const unsigned b0 = s_b + stage * {b_bytes};"));
    // the low word of the stage's descriptors (LBO and the start address); each k16 step and
    // m atom adds its offset >> 4 to it: shared addresses stay below 2^18 bytes, so the
    // 14-bit address field never carries, and the high word stays the constant
    w.line("const unsigned da_lo = (unsigned)desc_hi | ((a0 & 0x3FFFF) >> 4);");
    w.line("const unsigned db_lo = (unsigned)desc_hi | ((b0 & 0x3FFFF) >> 4);");
    w.line("tsr_wgmma_fence();");
    w.line("#pragma unroll");
    w.open(format!("for (int kk = 0; kk < {ksteps}; ++kk)"));
    // a k16 step's operands: 32 bytes into its panel's line (panels follow one another)
    let per_panel = ir.tile_k / plan.panels / 16;
    let k_offset = |stage_bytes: u32| {
        if plan.panels == 1 {
            "kk * 32".to_string()
        } else {
            let panel_bytes = stage_bytes / plan.panels;
            format!("(kk / {per_panel}) * {panel_bytes} + (kk % {per_panel}) * 32")
        }
    };
    let (k_a, k_b) = (k_offset(a_bytes), k_offset(b_bytes));
    w.line(format!(
        "const unsigned long long db = (desc_hi & 0xFFFFFFFF00000000ull) | (db_lo + ({k_b}) / 16);"
    ));
    w.line("#pragma unroll");
    w.open(format!("for (int i = 0; i < {mi}; ++i)"));
    w.line(format!(
        "const unsigned long long da = (desc_hi & 0xFFFFFFFF00000000ull) | (da_lo + (i * {} + {k_a}) / 16);",
        64 * line
    ));
    w.line(format!("tsr_wgmma_m64n{}({acc}[i], da, db);", plan.wg_n));
    w.close("");
    w.close("");
    w.line("tsr_wgmma_commit();");
    w.line("tsr_wgmma_wait<1>();");
    w.line("// the previous stage's wgmma has finished reading it");
    release(w, plan);
    w.line("held = stage;");
    advance(w, plan.stages);
    w.close("");
    if plan.schedule == ConsumerSchedule::Pingpong {
        w.line("if (tid % 128 == 0) tsr_mbar_arrive(order + (1 - cw) * 8);");
    }
    w.line("tsr_wgmma_wait<0>();");
    release(w, plan);
}

/// One tile's epilogue in a consumer warpgroup: its accumulators through the shared epilogue,
/// stored directly, staged and copied out, or staged and stored by TMA.
fn emit_tile_store(
    w: &mut Source,
    plan: &WarpgroupPlan,
    store: &EpilogueStore,
    acc: &str,
    mi: u32,
) -> Result<(), CodegenError> {
    let chunks = plan.wg_n / 8;
    let (local_row, local_col) = (LOCAL_ROW, LOCAL_COL);
    store.comment(w);
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
    if plan.epilogue != EpilogueMode::Direct {
        w.line(format!(
            "const unsigned stg = staging + cw * {};",
            plan.staging_tile_bytes()
        ));
    }
    if plan.epilogue == EpilogueMode::TmaStore {
        w.line("// the TMA store of this warpgroup's last tile has read its staging tile");
        w.line("if (tid % 128 == 0) asm volatile(\"cp.async.bulk.wait_group.read 0;\" ::: \"memory\");");
        w.line(WARPGROUP_SYNC);
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
        EpilogueMode::TmaStore => store.group_to_shared(
            w,
            &group,
            &format!(
                "stg + (j / 8) * {} + ({local_row}) * 128 + (((j % 8) ^ (lane >> 2)) * 16) + (lane & 3) * 4",
                plan.wg_m * 128
            ),
        )?,
    }
    w.close("");
    w.close("");
    w.close("");
    match plan.epilogue {
        EpilogueMode::Staged => emit_staged_copy_out(w, plan, store),
        EpilogueMode::TmaStore => emit_tma_store(w, plan),
        EpilogueMode::Direct => {}
    }
    Ok(())
}

/// A consumer warpgroup frees the stage it held: on its own block's `empty` barrier, or where
/// the cluster multicasts B, on that barrier in every block of the cluster (each block's
/// producer fills part of the stage in all of them).
fn release(w: &mut Source, plan: &WarpgroupPlan) {
    if plan.multicast > 1 {
        w.open("if (held >= 0 && tid % 128 == 0)");
        w.line("#pragma unroll");
        w.line(format!(
            "for (int r = 0; r < {}; ++r) tsr_mbar_arrive_cluster(empty + held * 8, r);",
            plan.multicast
        ));
        w.close("");
    } else {
        w.line("if (held >= 0 && tid % 128 == 0) tsr_mbar_arrive(empty + held * 8);");
    }
}

/// A consumer warpgroup's named barrier (ids 1 to 3; 0 is the block's).
const WARPGROUP_SYNC: &str = "asm volatile(\"bar.sync %0, 128;\" :: \"r\"(1 + cw) : \"memory\");";

/// Store a warpgroup's staged tile with one TMA bulk copy per 64-column panel: the generic-proxy
/// writes are made visible to the async proxy, the warpgroup meets, and one thread issues the
/// copies as one bulk group (TMA clips rows past M and columns past N). Staging the next tile
/// waits for this group to have read its shared memory.
fn emit_tma_store(w: &mut Source, plan: &WarpgroupPlan) {
    w.line("// the staged tile leaves by TMA, one bulk copy per 64-column panel");
    w.line("asm volatile(\"fence.proxy.async.shared::cta;\" ::: \"memory\");");
    w.line(WARPGROUP_SYNC);
    if plan.multicast > 1 {
        // a cluster tile's last block may lie wholly past M: it stores nothing
        w.open("if (tid % 128 == 0 && row0 + wr0 < M)");
    } else {
        w.open("if (tid % 128 == 0)");
    }
    w.line("#pragma unroll");
    w.open(format!(
        "for (int p = 0; p < {}; ++p)",
        plan.wg_n / TMA_STORE_PANEL
    ));
    w.line(format!(
        "asm volatile(\"cp.async.bulk.tensor.3d.global.shared::cta.bulk_group [%0, {{%1, %2, %3}}], [%4];\" :: \"l\"(&tmap_d), \"r\"(col0 + p * {TMA_STORE_PANEL}), \"r\"(row0 + wr0), \"r\"((int)bz), \"r\"(stg + p * {}) : \"memory\");",
        plan.wg_m * 128
    ));
    w.close("");
    w.line("asm volatile(\"cp.async.bulk.commit_group;\" ::: \"memory\");");
    w.close("");
}

#[cfg(test)]
mod tests {
    use tessera_dsl::Swizzle;

    /// The staging address the TMA-store epilogue writes a thread's pair to, as emitted:
    /// `(j / 8) * wg_m * 128 + row * 128 + (((j % 8) ^ (lane >> 2)) * 16) + (lane & 3) * 4`,
    /// for local row `row` and the pair's first column `j * 8 + (lane & 3) * 2`.
    fn emitted(wg_m: u32, row: u32, j: u32, lane: u32) -> u32 {
        (j / 8) * wg_m * 128 + row * 128 + (((j % 8) ^ (lane >> 2)) * 16) + (lane & 3) * 4
    }

    /// Every pair lands where a TMA box of 64 columns swizzled 128 B expects it (panel after
    /// panel, each `wg_m` lines of 128 bytes), and a warp's 32 pairs of one step hit 32
    /// different banks.
    #[test]
    fn tma_store_staging_is_the_box_layout_without_bank_conflicts() {
        let wg_m = 128;
        for (i, wq, h, j) in (0..2).flat_map(|i| {
            (0..4).flat_map(move |wq| (0..2).flat_map(move |h| (0..16).map(move |j| (i, wq, h, j))))
        }) {
            let mut banks = [false; 32];
            for lane in 0..32u32 {
                let row = i * 64 + wq * 16 + (lane >> 2) + h * 8;
                let col = j * 8 + (lane & 3) * 2;
                let (panel, in_panel) = (col / 64, col % 64);
                let want = panel * wg_m * 128 + Swizzle::B128.apply(row * 128 + in_panel * 2);
                assert_eq!(emitted(wg_m, row, j, lane), want, "row {row} col {col}");
                let bank = (want / 4 % 32) as usize;
                assert!(
                    !banks[bank],
                    "bank {bank} twice at i {i} wq {wq} h {h} j {j}"
                );
                banks[bank] = true;
            }
        }
    }
}
