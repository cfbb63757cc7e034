//! The sm_90a attention mainloop: warp-specialized TMA + `wgmma`, FlashAttention-3 style.
//!
//! Warpgroup 0 produces: after `setmaxnreg.dec`, one thread loads the block's Q tile once, then
//! walks the key blocks, copying K and V with TMA into the next stage, each on its own `full`
//! and `empty` barriers: the scores can start before V lands, and a K stage is free again as
//! soon as its scores are computed, so K runs a block ahead even with two stages. Tiles are stored
//! as column panels of `rows × panel` head-dim elements (one swizzled line per row, one TMA box
//! per panel); rows past the tensor's end arrive as zeros.
//!
//! Warpgroups 1.. consume, 64 query rows each: after `setmaxnreg.inc`, per key block `kt`
//! 1. issue `S = Q·Kᵀ` for block `kt`: `head_dim / 16` `wgmma.m64n{block_kv}k16`, both
//!    operands through K-major descriptors;
//! 2. issue `O += P·V` for block `kt − 1` behind it: P (converted to 16-bit pairs in registers,
//!    which are the wgmma A fragments: the RS form), V through an N-major descriptor
//!    (`imm-trans-b`);
//! 3. once S has landed, mask and online softmax of block `kt` while that `P·V` still runs
//!    (intra-warpgroup overlap), using the vendor-neutral code of [`crate::attention`], since a
//!    warp's share of a wgmma accumulator (16 rows) has exactly the `mma.sync` m16n8 layout;
//! 4. once `P·V` is done, block `kt − 1`'s V stage goes back to the producer (its K stage went
//!    back when its scores landed), O is rescaled and block `kt`'s P packed.
//!
//! Tiles are (query block, head, batch); a block owns one by default. A plan with one block per
//! multiprocessor may be persistent instead ([`AttentionSchedule::Persistent`], the template's
//! `persistent = 1`): at most one block per SM walks the tiles `gridDim.x` apart, the producer
//! loading the next tile's Q (once the consumers have computed the last scores of the current
//! one, on a `q_empty` barrier) and K/V while the consumers finish the current tile, so short
//! sequences do not pay a prologue and a store per block with the tensor cores idle. Under a
//! causal mask the walk takes the query blocks slowest and heaviest first, so every block gets
//! its share of the long tiles. A plan with one consumer whose state fits half the register
//! file instead runs two blocks per multiprocessor, one tile each (no `setmaxnreg` then): for
//! short sequences too.
//!
//! [`AttentionSchedule::Persistent`]: tessera_dsl::AttentionSchedule::Persistent
//!
//! A split-KV plan ([`AttentionWarpgroupPlan::split_kv`] = n, one consumer, one tile per
//! block) launches each tile as a cluster of n blocks (`__cluster_dims__(n, 1, 1)`, adjacent
//! along x): block `rank` walks key blocks `rank·kv_blocks/n ..` `(rank+1)·kv_blocks/n`, then
//! leaves its partial softmax in its own shared memory (unnormalized O in f32 over the drained
//! K/V ring, each row's max and sum where Q was). After a cluster barrier the cluster's
//! consumer threads share the tile's valid (row, 4-column) pieces: each reads every block's
//! max, sum and O piece through distributed shared memory (`mapa`, `ld.shared::cluster`),
//! rescales them to the common max, divides by the combined sum and stores O; a second
//! barrier keeps every block's shared memory alive until all have read it. The producer
//! warpgroup takes part in both barriers.
//!
//! With two consumers the GEMM issue alternates between them (pingpong, two named barriers),
//! so one warpgroup's softmax runs while the other's GEMMs hold the tensor cores. The store is
//! the shared one, straight from registers. Three consumers run free; under a causal mask each
//! stops at the key blocks its own 64 rows reach (the tile's first consumer does one block of
//! 128 keys fewer than its last) and hands the later slots of the tile back unread, after
//! waiting for each to fill so its arrivals land in that slot's phase: the tensor cores it
//! leaves go to the others.
//!
//! A packed batch (`thd`: Q, O `[tokens, heads, head_dim]`, K, V `[tokens, kv_heads,
//! head_dim]`, sequence `b` at `cu_seqlens_*[b]`) is the token-major layout with one batch of
//! all tokens: its maps view the tensors as `[heads][tokens][head_dim]`, their token count
//! taken from the bound buffer ([`Extent::RegionLines`]), and a tile loads Q rows from token
//! `tq0 + q0` and K/V rows from `tk0 + kt · block_kv` of its (K/V) head. The sequence's own
//! lengths bound the key loop, the key mask (keys past the sequence are the next sequence's
//! tokens, not zeros, and are masked to −∞ like any key past `seq_kv`) and the causal mask
//! (positions from the sequence's start, as in the multistage pipeline); O is stored for the
//! sequence's queries only, at token `tq0 + row`. A tile whose queries start past its
//! sequence's end is skipped: one tile per block returns before the barriers are set up; a
//! persistent block's producer and consumers skip it alike (`continue`) and count only the
//! tiles they serve for the Q barriers' phases. A packed batch has no key-padding mask.

use super::descriptor::SmemDescriptor;
use crate::attention::plan::{AttnPlan, AttnShape};
use crate::attention::{
    emit_block_origin, emit_key_range, emit_mask_and_softmax, emit_normalize_and_store,
    emit_rescale_o, TileIndex,
};
use crate::dialect::{for_each_filled_acc, Dialect, MmaPlan, SmemOperand};
use crate::kernel::{KernelSource, TileRows, TileSchedule};
use crate::source::Source;
use crate::CodegenError;
use tessera_dsl::pipeline::attention::ROWS_PER_CONSUMER;
use tessera_dsl::{
    AttentionLayout, AttentionWarpgroupPlan, DType, Extent, KernelIr, Layout, Mask, TensorMapArg,
};

/// The tensor maps of Q (`block_q × panel` boxes) and K, V (`block_kv × panel` boxes), each a
/// 3-D view `[batch × heads][seq][head_dim]` (K, V: `batch × kv_heads`). A packed batch's
/// tensors are `[tokens][heads][head_dim]`, viewed as `[heads][tokens][head_dim]` (rows a
/// token's heads apart, heads `head_dim` apart; K, V: `kv_heads`), with as many tokens as the
/// bound buffer holds: no argument carries the total.
///
/// With grouped heads Q is viewed as `[batch][heads × seq_q][head_dim]`: a tile's rows, a K/V
/// group's query heads with their queries, are consecutive lines.
fn tensor_maps(input: DType, plan: &AttentionWarpgroupPlan, packed: bool) -> Vec<TensorMapArg> {
    let hd = u64::from(plan.head_dim);
    let map = |name: &str, tensor: &str, seq: &str, heads: &str, box_lines: u32| TensorMapArg {
        name: name.into(),
        tensor: tensor.into(),
        dtype: input,
        inner: Extent::Const(hd),
        lines: if packed {
            Extent::RegionLines
        } else {
            seq.into()
        },
        line_stride: if packed {
            Extent::Scaled(heads.into(), hd)
        } else {
            Extent::Const(hd)
        },
        batch_stride: if packed {
            Extent::Const(hd)
        } else {
            Extent::Scaled(seq.into(), hd)
        },
        batches: Some(if packed {
            heads.into()
        } else {
            Extent::Product("batch".into(), heads.into())
        }),
        box_inner: plan.panel,
        box_lines,
        box_lines_cap: None,
        swizzle: plan.swizzle,
    };
    let q = if plan.group_heads {
        TensorMapArg {
            lines: Extent::Product("heads".into(), "seq_q".into()),
            batch_stride: Extent::ProductScaled("heads".into(), "seq_q".into(), hd),
            batches: Some("batch".into()),
            ..map("tmap_q", "q", "seq_q", "heads", plan.block_q)
        }
    } else {
        map("tmap_q", "q", "seq_q", "heads", plan.block_q)
    };
    vec![
        q,
        map("tmap_k", "k", "seq_kv", "kv_heads", plan.block_kv),
        map("tmap_v", "v", "seq_kv", "kv_heads", plan.block_kv),
    ]
}

/// A warp's share of a consumer's accumulators as the dialect's warp-tile plan (16 rows of the
/// warpgroup's 64, all columns), so the shared mask, softmax and store code walks it.
fn warp_plans(sh: &AttnShape, d: &dyn Dialect) -> Result<AttnPlan, CodegenError> {
    let atom = d.atom(sh.sq.dtype)?;
    let unused = || SmemOperand {
        ptr: String::new(),
        stride: 0,
        layout: Layout::Row,
    };
    let warp_tile = |wn: u32, tile_k: u32, acc: String| MmaPlan {
        input: sh.sq.dtype,
        atom,
        wm: 16,
        wn,
        tile_k,
        warp_row: "wr0".into(),
        warp_col: "0".into(),
        a: unused(),
        b: unused(),
        acc,
    };
    if atom.m != 16 || atom.n != 8 {
        return Err(CodegenError::Unsupported(format!(
            "the wgmma accumulator layout is the m16n8 one; {} has a {}x{} atom",
            d.target(),
            atom.m,
            atom.n
        )));
    }
    Ok(AttnPlan {
        s: warp_tile(sh.block_kv, sh.head_dim, format!("f_{}", sh.s.name)),
        o: warp_tile(sh.head_dim, sh.block_kv, format!("f_{}", sh.acc.name)),
        q_resident: false,
    })
}

pub fn emit(
    ir: &KernelIr,
    d: &dyn Dialect,
    sh: &AttnShape,
    plan: &AttentionWarpgroupPlan,
    layout: AttentionLayout,
) -> Result<KernelSource, CodegenError> {
    let p = warp_plans(sh, d)?;
    let threads = plan.threads();
    let maps = tensor_maps(ir.variant.input, plan, ir.variant.attention_packed());
    let mut w = Source::new();
    d.prelude(&mut w);
    super::attention_prelude(&mut w, ir.variant.input, plan.block_kv, plan.head_dim);
    if plan.splits_keys() {
        w.lines(super::CLUSTER_PRELUDE);
    }
    w.line("");
    w.line(format!(
        "// {} for {}: {} queries x {}-key blocks, head_dim {}, TMA + wgmma, 1 producer + {} consumer warpgroups, {} stages, mask {}",
        ir.name,
        d.target(),
        plan.block_q,
        plan.block_kv,
        plan.head_dim,
        plan.consumers,
        plan.stages,
        ir.variant.mask
    ));
    // sm_90a only: the launch bounds carry the blocks per multiprocessor the plan counts on
    let cluster = if plan.splits_keys() {
        format!(" __cluster_dims__({}, 1, 1)", plan.split_kv)
    } else {
        String::new()
    };
    w.line(format!(
        "extern \"C\" __global__ void __launch_bounds__({threads}, {}){cluster} {}(",
        plan.blocks_per_sm, ir.name
    ));
    w.lines(&super::params_with_tensor_maps(d, ir, &maps));
    w.open(")");
    emit_body(&mut w, ir, d, plan, &p, layout)?;
    w.close("");
    Ok(KernelSource {
        name: ir.name.clone(),
        target: d.target(),
        source: w.finish(),
        threads,
        smem_bytes: plan.smem_bytes(),
        tile_m: plan.block_q,
        tile_n: plan.head_dim,
        tensor_maps: maps,
        schedule: if plan.persistent() {
            TileSchedule::Persistent
        } else if plan.splits_keys() {
            TileSchedule::Clustered {
                ctas: plan.split_kv,
            }
        } else {
            TileSchedule::PerBlock
        },
        rows: if plan.group_heads {
            TileRows::KvGroup
        } else {
            TileRows::QueryHead
        },
    })
}

/// One tile's origin from the tile counter `tile`: its (query block, head, batch), the
/// arguments moved from their saved values, and the TMA coordinates of its Q and K/V heads.
/// A packed batch's tile past its sequence's end is skipped (`continue`, by the producer and
/// every consumer alike), and `it` counts the tiles served, for the Q barriers' phases.
///
/// Tiles are numbered query blocks fastest, so a head's query blocks run side by side and share
/// its K/V in L2. Under a causal mask a tile's work grows with its query block, and with query
/// blocks fastest a block striding the tiles `gridDim.x` apart meets the same query block every
/// time whenever `gridDim.x` is a multiple of their count (132 SMs, 3 blocks of 128 at S384):
/// some blocks would walk only the heaviest tiles. Causal tiles are therefore numbered query
/// blocks slowest and heaviest first (longest-processing-time order): every block takes about
/// as many heavy tiles as light ones.
fn emit_tile_origin(
    w: &mut Source,
    ir: &KernelIr,
    layout: AttentionLayout,
    plan: &AttentionWarpgroupPlan,
) {
    if ir.variant.mask == Mask::Causal {
        w.line("// causal: query blocks slowest, heaviest (last) first, so blocks share the heavy tiles");
        w.line("const int t_q = q_blocks - 1 - tile / (heads * batch), t_h = tile % heads, t_b = (tile / heads) % batch;");
    } else {
        w.line("const int t_q = tile % q_blocks, t_h = (tile / q_blocks) % heads, t_b = tile / (q_blocks * heads);");
    }
    w.line("q = q_arg; k = k_arg; v = v_arg; o = o_arg;");
    let index = TileIndex {
        query_block: "t_q".into(),
        head: "t_h".into(),
        batch: "t_b".into(),
    };
    emit_block_origin(
        w,
        &index,
        ir.variant.mask,
        layout,
        ir.variant.attention_packed().then_some("continue"),
        plan.block_q,
        plan.block_kv,
        plan.head_dim,
    );
    emit_tma_heads(w, ir, &index.head);
    if ir.variant.attention_packed() {
        w.line("++it; // tiles served (skipped ones not counted): the Q barriers' phases");
    }
}

/// A grouped-heads tile's place (one tile per block): rows `q0 ..` of K/V head `blockIdx.y`'s
/// group of `heads / kv_heads` query heads (head-major, `sq1` queries each) in batch
/// `blockIdx.z`. From here on `seq_q` counts the group's rows, so the shared store (rows below
/// `seq_q`, `head_dim` apart from the group's first) and split-KV's combine serve it unchanged;
/// Q's TMA row is `q_row0 + q0` of batch `b` in its `[batch][heads × seq_q]` view. The same
/// variables as [`emit_block_origin`] (no causal mask here), and `bh32`, `bkvh32`.
fn emit_group_origin(w: &mut Source, ir: &KernelIr, query_block: &str, bq: u32, bkv: u32, hd: u32) {
    w.line("// grouped heads: a tile's rows are the heads / kv_heads query heads of K/V head");
    w.line("// blockIdx.y, head-major, each with its seq_q queries (contiguous in [b, h, s, d])");
    w.line(format!("const int q0 = {query_block} * {bq};"));
    w.line("const int b = blockIdx.z;");
    w.line("const int kvh = blockIdx.y;");
    w.line("const int group = heads / kv_heads;");
    w.line("const int sq1 = seq_q; // one head's queries");
    w.line("seq_q = group * sq1; // from here on: the group's rows");
    w.line("const long long bkvh = (long long)b * kv_heads + kvh;");
    w.line(format!(
        "q += ((long long)b * heads + (long long)kvh * group) * sq1 * {hd};"
    ));
    w.line(format!(
        "o += ((long long)b * heads + (long long)kvh * group) * sq1 * {hd};"
    ));
    w.line(format!("k += bkvh * seq_kv * {hd};"));
    w.line(format!("v += bkvh * seq_kv * {hd};"));
    // the plan refuses a causal mask for grouped heads
    emit_key_range(w, ir.variant.mask, bq, bkv);
    w.line("// Q's TMA view is [batch][heads x seq_q]: the group starts at line kvh * group * sq1");
    w.line("const int bh32 = b, bkvh32 = (int)bkvh;");
    w.line("const int q_row0 = kvh * group * sq1;");
}

/// `bh32` and `bkvh32`, the outermost TMA coordinates of the tile's Q and K/V: the (batch ×
/// heads) index, or for a packed batch (whose maps' batches are heads) the heads themselves.
fn emit_tma_heads(w: &mut Source, ir: &KernelIr, head: &str) {
    if ir.variant.attention_packed() {
        w.line("// packed maps are [heads][tokens][head_dim]: a tile's rows are tokens tq0 + q0.. (Q) and");
        w.line("// tk0 + kv0.. (K, V) of its head");
        w.line(format!("const int bh32 = (int){head}, bkvh32 = kvh;"));
    } else {
        w.line("const int bh32 = (int)bh, bkvh32 = (int)bkvh;");
    }
}

/// The header of a persistent block's tile loop; a packed batch counts the tiles it serves
/// (`it`) in [`emit_tile_origin`], after skipping those past their sequence's end.
fn tile_loop(ir: &KernelIr) -> &'static str {
    if ir.variant.attention_packed() {
        "for (int tile = first_tile, it = -1; tile < tiles; tile += tile_step)"
    } else {
        "for (int tile = first_tile, it = 0; tile < tiles; tile += tile_step, ++it)"
    }
}

/// Issue `O += P·V` for the key block in ring slot `stage` (V N-major through its descriptor,
/// P from `pa`), once V has landed; committed as one group, not waited for.
fn emit_pv(w: &mut Source, plan: &AttentionWarpgroupPlan, stage: &str, phase: &str) {
    let (bkv, hd) = (plan.block_kv, plan.head_dim);
    w.line(format!("tsr_mbar_wait(v_full + {stage} * 8, {phase});"));
    w.line(format!(
        "const unsigned v_stage = s_v + {stage} * {};",
        plan.kv_bytes()
    ));
    w.line("tsr_wgmma_fence();");
    w.line("#pragma unroll");
    w.open(format!("for (int kk = 0; kk < {}; ++kk)", bkv / 16));
    w.line(format!(
        "const unsigned long long dv = desc_v | (((v_stage + kk * {}) & 0x3FFFF) >> 4);",
        16 * plan.line_bytes()
    ));
    w.line(format!("tsr_wgmma_rs_m64n{hd}(o_acc, pa[kk], dv);"));
    w.close("");
    w.line("tsr_wgmma_commit();");
}

/// The key blocks a block walks: all of its tile's, or (split-KV) its rank's share.
fn key_range(plan: &AttentionWarpgroupPlan) -> (&'static str, &'static str) {
    if plan.splits_keys() {
        ("kt_begin", "kt_end")
    } else {
        ("0", "kv_blocks")
    }
}

/// Split-KV's end of a consumer: leave this block's partial softmax in its shared memory, then
/// (after a cluster barrier) combine the valid rows' pieces of every block of the cluster
/// through distributed shared memory and store O; a last barrier keeps each block's shared
/// memory until the whole cluster has read it. One consumer: rows `0..64` of the tile.
fn emit_split_combine(
    w: &mut Source,
    ir: &KernelIr,
    d: &dyn Dialect,
    plan: &AttentionWarpgroupPlan,
    p: &AttnPlan,
    layout: AttentionLayout,
) -> Result<(), CodegenError> {
    let (n, hd, rows) = (plan.split_kv, plan.head_dim, ROWS_PER_CONSUMER);
    let (slots, slot) = d.acc_row_slots(&p.o);
    w.line("// split-KV: this block's partial softmax of its rows below seq_q into its own shared");
    w.line(format!(
        "// memory: O unnormalized (f32, {rows} x {hd}) over the drained K/V ring, each row's max (log2 domain) and sum where Q was"
    ));
    w.line("#pragma unroll");
    w.open(format!("for (int r = 0; r < {slots}; ++r)"));
    d.row_allreduce(w, "row_l[r]", false);
    w.close("");
    w.line("const unsigned s_po = s_k, s_max = s_q, s_sum = s_q + 256;");
    for_each_filled_acc(d, w, &p.o, &mut |w, g| {
        w.line(format!("const int pr = {}, pc = {};", g.row, g.col));
        w.open("if (q0 + pr < seq_q)");
        for (k, reg) in g.regs.iter().enumerate() {
            w.line(format!(
                "tsr_st_shared_f32(s_po + (pr * {hd} + pc + {k}) * 4, {reg});"
            ));
        }
        w.line(format!(
            "if (pc == 0) {{ tsr_st_shared_f32(s_max + pr * 4, row_m[{slot}]); tsr_st_shared_f32(s_sum + pr * 4, row_l[{slot}]); }}"
        ));
        w.close("");
    })?;
    w.line("tsr_cluster_sync();");
    let quads = hd / 4;
    let ld = match layout {
        AttentionLayout::Bhsd => format!("{hd}"),
        AttentionLayout::Bshd => format!("heads * {hd}"),
    };
    let out = ir.variant.output;
    w.line(format!(
        "// combine: the tile's valid rows x {quads} four-column pieces, shared by the cluster's {} consumer threads",
        128 * n
    ));
    w.line(format!("const int rows_here = min({rows}, seq_q - q0);"));
    w.open(format!(
        "for (int it = rank * 128 + (tid - 128); it < rows_here * {quads}; it += {})",
        128 * n
    ));
    w.line(format!(
        "const int r = it / {quads}, c = (it % {quads}) * 4;"
    ));
    w.line(format!("float mk[{n}], m = tsr_neg_inf();"));
    w.line("#pragma unroll");
    w.open(format!("for (int k = 0; k < {n}; ++k)"));
    w.line("mk[k] = tsr_ld_cluster_f32(tsr_mapa(s_max + r * 4, k));");
    w.line("m = fmaxf(m, mk[k]);");
    w.close("");
    w.line(
        "// a row no block saw a key of keeps max -inf: subtract 0 so every weight is 0, not NaN",
    );
    w.line("const float mu = m == tsr_neg_inf() ? 0.f : m;");
    w.line("float l = 0.f, o0 = 0.f, o1 = 0.f, o2 = 0.f, o3 = 0.f;");
    w.line("#pragma unroll");
    w.open(format!("for (int k = 0; k < {n}; ++k)"));
    w.line("const float wk = tsr_exp2(mk[k] - mu);");
    w.line("l += wk * tsr_ld_cluster_f32(tsr_mapa(s_sum + r * 4, k));");
    w.line("float x, y, z, t;");
    w.line(format!(
        "tsr_ld_cluster_v4(tsr_mapa(s_po + (r * {hd} + c) * 4, k), x, y, z, t);"
    ));
    w.line("o0 += wk * x; o1 += wk * y; o2 += wk * z; o3 += wk * t;");
    w.close("");
    w.line("const float inv = l > 0.f ? 1.f / l : 0.f;");
    w.line(format!(
        "const long long di = (long long)(q0 + r) * {ld} + c;"
    ));
    for k in 0..4 {
        w.line(format!(
            "o[di + {k}] = {};",
            d.to_storage(out, &format!("(o{k} * inv)"))
        ));
    }
    w.close("");
    w.line("// every block's shared memory stays until the cluster has read it");
    w.line("tsr_cluster_sync();");
    Ok(())
}

/// `stage`/`phase` to the next slot of the ring.
fn advance(w: &mut Source, stages: u32) {
    w.line(format!(
        "if (++stage == {stages}) {{ stage = 0; phase ^= 1; }}"
    ));
}

/// The kernel's body: the tile schedule, the shared-memory carve-out with its barriers, then
/// the producer warpgroup (`wg == 0`) and the consumers.
fn emit_body(
    w: &mut Source,
    ir: &KernelIr,
    d: &dyn Dialect,
    plan: &AttentionWarpgroupPlan,
    p: &AttnPlan,
    layout: AttentionLayout,
) -> Result<(), CodegenError> {
    w.line("extern __shared__ __align__(1024) unsigned char smem[];");
    w.line("const int tid = threadIdx.x;");
    w.line("const int wg = tid / 128;");
    emit_schedule(w, ir, plan, layout);
    emit_smem_carve(w, plan);
    emit_producer(w, ir, plan, layout);
    w.open("else");
    match plan.register_split() {
        Some((consumer_regs, _)) => w.line(format!(
            "asm volatile(\"setmaxnreg.inc.sync.aligned.u32 {consumer_regs};\");"
        )),
        None => w.line(format!(
            "// {} blocks share a multiprocessor: every thread keeps its even register share",
            plan.blocks_per_sm
        )),
    }
    emit_consumer(w, ir, d, plan, p, layout)?;
    w.close("");
    Ok(())
}

/// Which tiles this block serves: a persistent walk (the arguments saved for each tile's
/// origin), or one tile from the grid index (with a split-KV block's rank and share of keys).
fn emit_schedule(
    w: &mut Source,
    ir: &KernelIr,
    plan: &AttentionWarpgroupPlan,
    layout: AttentionLayout,
) {
    let (bq, bkv, hd) = (plan.block_q, plan.block_kv, plan.head_dim);
    if plan.persistent() {
        w.line(
            "// tiles: (query block, head, batch), query blocks fastest; a persistent block walks",
        );
        w.line("// them gridDim.x apart, the ring and its phases running on across tiles");
        w.line(format!("const int q_blocks = (seq_q + {bq} - 1) / {bq};"));
        w.line("const int tiles = q_blocks * heads * batch;");
        w.line("const int first_tile = blockIdx.x, tile_step = gridDim.x;");
        w.line("// the arguments each tile's origin moves from");
        w.line(
            "const auto q_arg = q; const auto k_arg = k; const auto v_arg = v; const auto o_arg = o;",
        );
    } else {
        let mut index = TileIndex::grid();
        if plan.splits_keys() {
            w.line(format!(
                "// split-KV: a cluster of {} blocks per tile, adjacent along x; this block's rank",
                plan.split_kv
            ));
            w.line("const int rank = (int)tsr_cluster_rank();");
            index.query_block = format!("(blockIdx.x / {})", plan.split_kv);
        }
        if plan.group_heads {
            emit_group_origin(w, ir, &index.query_block, bq, bkv, hd);
        } else {
            emit_block_origin(
                w,
                &index,
                ir.variant.mask,
                layout,
                ir.variant.attention_packed().then_some("return"),
                bq,
                bkv,
                hd,
            );
            emit_tma_heads(w, ir, &index.head);
        }
        if plan.splits_keys() {
            let n = plan.split_kv;
            w.line("// this block's share of the tile's key blocks");
            w.line(format!(
                "const int kt_begin = rank * kv_blocks / {n}, kt_end = (rank + 1) * kv_blocks / {n};"
            ));
        }
    }
}

/// Shared memory: Q, the K and V rings, then the mbarriers (Q's, and per stage K/V full and
/// empty), initialized by thread 0 before every warpgroup starts.
fn emit_smem_carve(w: &mut Source, plan: &AttentionWarpgroupPlan) {
    let (stages, panel) = (plan.stages, plan.panel);
    let (q_bytes, kv_bytes) = (plan.q_bytes(), plan.kv_bytes());
    let panels = plan.head_dim / panel;
    let atom = plan.swizzle.atom_bytes();
    let persistent = plan.persistent();
    w.line(format!(
        "// Q ({q_bytes} B), {stages} stages of K and V ({kv_bytes} B each), in {panels} panel(s) of {panel} columns, swizzled {} B, on a {atom}-byte boundary; then the barriers",
        plan.swizzle.span()
    ));
    w.line(format!(
        "const unsigned s_q = (tsr_smem_addr(smem) + {}) & ~{}u;",
        atom - 1,
        atom - 1
    ));
    w.line(format!("const unsigned s_k = s_q + {q_bytes};"));
    w.line(format!("const unsigned s_v = s_k + {};", stages * kv_bytes));
    w.line(format!(
        "const unsigned q_full = s_v + {};",
        stages * kv_bytes
    ));
    if persistent {
        w.line("const unsigned q_empty = q_full + 8;");
        w.line("const unsigned k_full = q_empty + 8; // per stage");
    } else {
        w.line("const unsigned k_full = q_full + 8; // per stage");
    }
    w.line(format!(
        "const unsigned v_full = k_full + {}; // per stage",
        stages * 8
    ));
    w.line(format!(
        "const unsigned k_empty = v_full + {}; // per stage",
        stages * 8
    ));
    w.line(format!(
        "const unsigned v_empty = k_empty + {}; // per stage",
        stages * 8
    ));
    w.open("if (tid == 0)");
    w.line("tsr_mbar_init(q_full, 1);");
    if persistent {
        w.line(format!("tsr_mbar_init(q_empty, {});", plan.consumers));
    }
    w.open(format!("for (int s = 0; s < {stages}; ++s)"));
    w.line("tsr_mbar_init(k_full + s * 8, 1);");
    w.line("tsr_mbar_init(v_full + s * 8, 1);");
    w.line(format!(
        "tsr_mbar_init(k_empty + s * 8, {});",
        plan.consumers
    ));
    w.line(format!(
        "tsr_mbar_init(v_empty + s * 8, {});",
        plan.consumers
    ));
    w.close("");
    w.line("asm volatile(\"fence.mbarrier_init.release.cluster;\" ::: \"memory\");");
    w.close("");
    w.line("__syncthreads();");
}

/// The producer warpgroup: one thread loads each tile's Q (once the consumers are done with
/// the last, when persistent), then fills the K/V ring stage by stage.
fn emit_producer(
    w: &mut Source,
    ir: &KernelIr,
    plan: &AttentionWarpgroupPlan,
    layout: AttentionLayout,
) {
    let (bq, bkv, stages) = (plan.block_q, plan.block_kv, plan.stages);
    let (q_bytes, kv_bytes) = (plan.q_bytes(), plan.kv_bytes());
    let (line, panel) = (plan.line_bytes(), plan.panel);
    let panels = plan.head_dim / panel;
    let persistent = plan.persistent();
    let packed = ir.variant.attention_packed();
    w.open("if (wg == 0)");
    if let Some((_, producer_regs)) = plan.register_split() {
        w.line(format!(
            "asm volatile(\"setmaxnreg.dec.sync.aligned.u32 {producer_regs};\");"
        ));
    }
    if persistent {
        w.line(
            "// producer: one thread loads each tile's Q once the consumers are done with the last,",
        );
        w.line("// then fills the K/V ring");
        w.open("if (tid == 0)");
        w.line("int stage = 0, phase = 0;");
        w.open(tile_loop(ir));
        emit_tile_origin(w, ir, layout, plan);
        w.line("tsr_mbar_wait(q_empty, (it & 1) ^ 1);");
    } else {
        w.line("// producer: one thread loads Q, then fills the K/V ring");
        w.open("if (tid == 0)");
    }
    w.line(format!("tsr_mbar_expect_tx(q_full, {q_bytes});"));
    let (q_row, kv_row) = if packed {
        ("tq0 + q0", format!("tk0 + kt * {bkv}"))
    } else if plan.group_heads {
        ("q_row0 + q0", format!("kt * {bkv}"))
    } else {
        ("q0", format!("kt * {bkv}"))
    };
    for pn in 0..panels {
        w.line(format!(
            "tsr_tma_load(s_q + {}, &tmap_q, {}, {q_row}, bh32, q_full);",
            pn * bq * line,
            pn * panel
        ));
    }
    if !persistent {
        w.line("int stage = 0, phase = 0;");
    }
    if packed {
        // the last block's rows past the sequence are the next sequence's tokens (or TMA's zero
        // fill past the buffer's end): their keys are masked to -inf, so P is 0 there and those V
        // rows, finite values, add nothing to O
        w.line("// rows past the sequence's keys: the next sequence's tokens or zeros past the buffer;");
        w.line("// masked keys (P = 0) make those K and V rows add nothing");
    }
    let (kt0, kt1) = key_range(plan);
    w.open(format!("for (int kt = {kt0}; kt < {kt1}; ++kt)"));
    for (tensor, base, full, empty) in [
        ("k", "s_k", "k_full", "k_empty"),
        ("v", "s_v", "v_full", "v_empty"),
    ] {
        w.line(format!("tsr_mbar_wait({empty} + stage * 8, phase ^ 1);"));
        w.line(format!(
            "tsr_mbar_expect_tx({full} + stage * 8, {kv_bytes});"
        ));
        for pn in 0..panels {
            w.line(format!(
                "tsr_tma_load({base} + stage * {kv_bytes} + {}, &tmap_{tensor}, {}, {kv_row}, bkvh32, {full} + stage * 8);",
                pn * bkv * line,
                pn * panel
            ));
        }
    }
    advance(w, stages);
    w.close("");
    if persistent {
        w.close("");
    }
    w.close("");
    if plan.splits_keys() {
        w.line("// the cluster's combine: partials written, then read");
        w.line("tsr_cluster_sync();");
        w.line("tsr_cluster_sync();");
    }
    w.close("");
}

fn emit_consumer(
    w: &mut Source,
    ir: &KernelIr,
    d: &dyn Dialect,
    plan: &AttentionWarpgroupPlan,
    p: &AttnPlan,
    layout: AttentionLayout,
) -> Result<(), CodegenError> {
    let (bkv, hd) = (plan.block_kv, plan.head_dim);
    let line = plan.line_bytes();
    let rows = ROWS_PER_CONSUMER;
    let keys = ConsumerKeys::of(ir, plan);
    let (kt0, kt1) = (keys.first, keys.end);
    w.line(format!(
        "// consumer warpgroup: {rows} query rows; warp wq owns 16 of them"
    ));
    w.line("const int cw = wg - 1;");
    w.line("const int lane = tid % 32;");
    w.line("const int wq = (tid / 32) % 4;");
    w.line(format!("const int wr0 = cw * {rows} + wq * 16;"));
    w.line(format!(
        "const unsigned long long desc_k = 0x{:016x}ull; // K-major, SBO {} B, swizzle {} B",
        SmemDescriptor::high_bits(plan.swizzle),
        plan.swizzle.atom_bytes(),
        plan.swizzle.span()
    ));
    w.line(format!(
        "const unsigned long long desc_v = 0x{:016x}ull; // N-major, panels {} B apart",
        SmemDescriptor::n_major_high_bits(plan.swizzle, bkv * line),
        bkv * line
    ));
    let persistent = plan.persistent();
    if persistent {
        w.line("int stage = 0, phase = 0; // the ring slot of key block kt");
        w.open(tile_loop(ir));
        emit_tile_origin(w, ir, layout, plan);
    }
    d.declare_acc(w, &p.s);
    d.declare_acc(w, &p.o);
    w.line("// a warp's 16 rows of a wgmma accumulator are its m16n8 tiles, in order");
    w.line(format!(
        "float (&s_acc)[{}] = *reinterpret_cast<float (*)[{}]>(&{}[0][0][0]);",
        bkv / 2,
        bkv / 2,
        p.s.acc
    ));
    w.line(format!(
        "float (&o_acc)[{}] = *reinterpret_cast<float (*)[{}]>(&{}[0][0][0]);",
        hd / 2,
        hd / 2,
        p.o.acc
    ));
    let (slots, _) = d.acc_row_slots(&p.s);
    w.line(format!(
        "// online-softmax state of this thread's {slots} rows (log2 domain)"
    ));
    w.line(format!("float row_m[{slots}], row_l[{slots}];"));
    w.line("#pragma unroll");
    w.line(format!(
        "for (int r = 0; r < {slots}; ++r) {{ row_m[r] = tsr_neg_inf(); row_l[r] = 0.f; }}"
    ));
    w.line(format!("const unsigned q_wg = s_q + cw * {};", rows * line));
    w.line(format!(
        "unsigned pa[{}][4]; // P of the previous key block: wgmma A fragments",
        bkv / 16
    ));
    if plan.pingpong() {
        w.line(
            "// pingpong: the two consumers issue their GEMMs in turn (named barriers 1 and 2),",
        );
        w.line("// so one's softmax runs while the other's GEMMs hold the tensor cores");
        w.line(format!(
            "if (cw == 1 && {kt1} > {kt0}) asm volatile(\"bar.arrive 1, 256;\" ::: \"memory\");"
        ));
    }
    if persistent {
        w.line("tsr_mbar_wait(q_full, it & 1);");
        w.line("// no key block (a zero key length): Q goes back at once");
        w.line("if (kv_blocks == 0 && tid % 128 == 0) tsr_mbar_arrive(q_empty);");
    } else {
        w.line("tsr_mbar_wait(q_full, 0);");
        w.line("int stage = 0, phase = 0; // key block kt");
    }
    emit_key_loop(w, ir, d, plan, p, &keys)?;
    emit_consumer_end(w, ir, d, plan, p, layout, &keys)?;
    if persistent {
        w.close("");
    }
    Ok(())
}

/// The key blocks a consumer walks, as C expressions: `first .. end` of its tile's
/// `first .. tile_end`. They differ only under a causal mask with three consumers (free-running,
/// no turns to keep): a consumer stops at the key blocks its own 64 rows reach (`own`) and
/// hands the rest of the tile's slots back uncomputed.
struct ConsumerKeys {
    first: &'static str,
    end: &'static str,
    tile_end: &'static str,
    own: bool,
}

impl ConsumerKeys {
    fn of(ir: &KernelIr, plan: &AttentionWarpgroupPlan) -> ConsumerKeys {
        let (first, tile_end) = key_range(plan);
        let own = ir.variant.mask == Mask::Causal && plan.consumers > 2;
        ConsumerKeys {
            first,
            end: if own { "kv_blocks_c" } else { tile_end },
            tile_end,
            own,
        }
    }
}

/// A consumer's key loop: per block `kt`, issue its scores and block `kt − 1`'s `P·V`, then
/// mask, softmax, rescale O and pack P (the module docs' steps 1–4).
fn emit_key_loop(
    w: &mut Source,
    ir: &KernelIr,
    d: &dyn Dialect,
    plan: &AttentionWarpgroupPlan,
    p: &AttnPlan,
    keys: &ConsumerKeys,
) -> Result<(), CodegenError> {
    let (bkv, rows) = (plan.block_kv, ROWS_PER_CONSUMER);
    let (kt0, kt1) = (keys.first, keys.end);
    let pingpong = plan.pingpong();
    w.line("int pstage = 0, pphase = 0; // key block kt - 1, whose P is in pa");
    if keys.own {
        w.line(format!(
            "// causal: this consumer's rows end at q0 + {}(cw + 1); later key blocks are masked for all of them",
            rows
        ));
        w.line(
            "// (cw read through a shuffle, so the compiler knows it is warp-uniform and keeps the",
        );
        w.line("// loop's counters in uniform registers)");
        w.line(format!(
            "kv_end = min(kv_end, q0 + (__shfl_sync(0xffffffff, cw, 0) + 1) * {rows});"
        ));
        w.line(format!(
            "const int kv_blocks_c = (kv_end + {bkv} - 1) / {bkv};"
        ));
    }
    w.open(format!("for (int kt = {kt0}; kt < {kt1}; ++kt)"));
    w.line(format!("const int kv0 = kt * {bkv};"));
    w.line("tsr_mbar_wait(k_full + stage * 8, phase);");
    if pingpong {
        w.line("asm volatile(\"bar.sync %0, 256;\" :: \"r\"(1 + cw) : \"memory\");");
    }
    emit_scores_issue(w, plan);
    w.line("// and O += P V for block kt - 1 behind it: its softmax-rescaled O is ready");
    w.open(format!("if (kt > {kt0})"));
    emit_pv(w, plan, "pstage", "pphase");
    w.close("");
    w.line("// S has landed once at most the P V group is in flight");
    w.line(format!(
        "if (kt > {kt0}) tsr_wgmma_wait<1>(); else tsr_wgmma_wait<0>();"
    ));
    w.line("// K of block kt is read: its stage may take the next K block");
    w.line("if (tid % 128 == 0) tsr_mbar_arrive(k_empty + stage * 8);");
    if plan.persistent() {
        w.line("// after the tile's last scores Q is free for the next tile's");
        w.line(format!(
            "if (kt + 1 == {kt1} && tid % 128 == 0) tsr_mbar_arrive(q_empty);"
        ));
    }
    if pingpong {
        w.line("// the other consumer's turn to issue (its GEMMs queue behind this one's P V); consumer 1");
        w.line("// owes consumer 0 no turn after its last block. After the S wait, and predicated in PTX:");
        w.line(
            "// an arrive or a branch between issue and wait splits the wgmma pipeline stage and",
        );
        w.line("// ptxas serializes it");
        w.line(format!("asm volatile(\"{{ .reg .pred p; setp.ne.b32 p, %1, 0; @p bar.arrive %0, 256; }}\" :: \"r\"(2 - cw), \"r\"((int)(cw == 0 || kt + 1 < {kt1})) : \"memory\");"));
    }
    emit_mask_and_softmax(w, d, p, ir.variant.mask, bkv)?;
    w.line("tsr_wgmma_wait<0>();");
    w.line("// P V of block kt - 1 is done: its V stage goes back to the producer");
    w.line(format!(
        "if (kt > {kt0} && tid % 128 == 0) tsr_mbar_arrive(v_empty + pstage * 8);"
    ));
    emit_rescale_o(w, d, p);
    emit_pack_p(w, plan, ir.variant.input);
    w.line("pstage = stage; pphase = phase;");
    advance(w, plan.stages);
    w.close("");
    Ok(())
}

/// Issue `S = Q·Kᵀ` for key block `kt` (64 × `block_kv` per warpgroup), K from ring slot
/// `stage`; committed as one group, not waited for.
fn emit_scores_issue(w: &mut Source, plan: &AttentionWarpgroupPlan) {
    let (bq, bkv, hd) = (plan.block_q, plan.block_kv, plan.head_dim);
    let line = plan.line_bytes();
    let steps_per_panel = plan.panel / 16;
    w.line(format!(
        "// issue S = Q K^T ({} x {bkv} per warpgroup) for block kt",
        ROWS_PER_CONSUMER
    ));
    w.line("#pragma unroll");
    w.line(format!(
        "for (int j = 0; j < {}; ++j) s_acc[j] = 0.f;",
        bkv / 2
    ));
    w.line(format!(
        "const unsigned k_stage = s_k + stage * {};",
        plan.kv_bytes()
    ));
    w.line("tsr_wgmma_fence();");
    w.line("#pragma unroll");
    w.open(format!("for (int kk = 0; kk < {}; ++kk)", hd / 16));
    w.line(format!(
        "const unsigned pn = kk / {steps_per_panel}, k32 = (kk % {steps_per_panel}) * 32;"
    ));
    w.line(format!(
        "const unsigned long long da = desc_k | (((q_wg + pn * {} + k32) & 0x3FFFF) >> 4);",
        bq * line
    ));
    w.line(format!(
        "const unsigned long long db = desc_k | (((k_stage + pn * {} + k32) & 0x3FFFF) >> 4);",
        bkv * line
    ));
    w.line(format!("tsr_wgmma_m64n{bkv}(s_acc, da, db);"));
    w.close("");
    w.line("tsr_wgmma_commit();");
}

/// Block `kt`'s probabilities (in the score registers) packed into `pa`, the RS-form `wgmma`'s
/// A fragments.
fn emit_pack_p(w: &mut Source, plan: &AttentionWarpgroupPlan, input: DType) {
    let pack = match input {
        DType::BF16 => "tsr_pack_bf16x2",
        _ => "tsr_pack_f16x2",
    };
    w.line("// P of block kt as wgmma A fragments: keys 16kk..16kk+15 are n8 tiles 2kk and 2kk+1");
    w.line("#pragma unroll");
    w.open(format!(
        "for (int kk = 0; kk < {}; ++kk)",
        plan.block_kv / 16
    ));
    for r in 0..4 {
        w.line(format!(
            "pa[kk][{r}] = {pack}(s_acc[8 * kk + {}], s_acc[8 * kk + {}]);",
            2 * r,
            2 * r + 1
        ));
    }
    w.close("");
}

/// After the key loop: the last block's `P·V`, the ring slots of the tile's key blocks this
/// consumer skipped ([`ConsumerKeys::own`]), then the store (or split-KV's combine).
fn emit_consumer_end(
    w: &mut Source,
    ir: &KernelIr,
    d: &dyn Dialect,
    plan: &AttentionWarpgroupPlan,
    p: &AttnPlan,
    layout: AttentionLayout,
    keys: &ConsumerKeys,
) -> Result<(), CodegenError> {
    let (kt0, kt1) = (keys.first, keys.end);
    w.line("// the last block's O += P V");
    w.open(format!("if ({kt1} > {kt0})"));
    emit_pv(w, plan, "pstage", "pphase");
    w.line("tsr_wgmma_wait<0>();");
    w.line("if (tid % 128 == 0) tsr_mbar_arrive(v_empty + pstage * 8);");
    w.close("");
    if keys.own {
        w.line(
            "// the tile's key blocks past this consumer's rows: once each slot is full (so the",
        );
        w.line("// arrivals land in its phase) its K and V go back to the producer unread");
        w.open(format!(
            "for (int kt = {kt1}; kt < {}; ++kt)",
            keys.tile_end
        ));
        w.line("tsr_mbar_wait(k_full + stage * 8, phase);");
        w.line("tsr_mbar_wait(v_full + stage * 8, phase);");
        w.line("if (tid % 128 == 0) { tsr_mbar_arrive(k_empty + stage * 8); tsr_mbar_arrive(v_empty + stage * 8); }");
        advance(w, plan.stages);
        w.close("");
    }
    if plan.splits_keys() {
        emit_split_combine(w, ir, d, plan, p, layout)
    } else {
        emit_normalize_and_store(w, d, p, &ir.variant, layout, plan.head_dim)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_dsl::Swizzle;

    fn plan(block_kv: u32, head_dim: u32) -> AttentionWarpgroupPlan {
        let panel = head_dim.min(64);
        AttentionWarpgroupPlan {
            consumers: 2,
            block_q: 128,
            block_kv,
            head_dim,
            stages: 2,
            swizzle: Swizzle::for_line_bytes(panel * 2).unwrap(),
            panel,
            blocks_per_sm: 1,
            schedule: tessera_dsl::AttentionSchedule::TilePerBlock,
            split_kv: 1,
            group_heads: false,
        }
    }

    /// One TMA box per panel fills a stage exactly: the bytes each `expect_tx` announces.
    #[test]
    fn boxes_fill_the_tiles() {
        for (bkv, hd) in [(64, 32), (128, 64), (128, 128), (64, 128)] {
            let p = plan(bkv, hd);
            let maps = tensor_maps(DType::F16, &p, false);
            let panels = hd / p.panel;
            assert_eq!(maps[0].box_bytes() * panels, p.q_bytes());
            assert_eq!(maps[1].box_bytes() * panels, p.kv_bytes());
            assert_eq!(maps[2].box_bytes() * panels, p.kv_bytes());
            assert!(maps.iter().all(|m| m.box_inner * 2 == p.swizzle.span()));
            // a packed batch's maps have the same boxes, over the tokens of each head
            let packed = tensor_maps(DType::F16, &p, true);
            for (m, t) in packed.iter().zip(&maps) {
                assert_eq!(m.box_bytes(), t.box_bytes());
            }
        }
    }

    /// Grouped heads view Q as `[batch][heads × seq_q][head_dim]`, so a K/V group's query
    /// heads (with their queries) are consecutive lines; K and V keep their per-head view.
    #[test]
    fn grouped_q_map_views_a_batch_of_heads_times_queries() {
        let p = AttentionWarpgroupPlan {
            consumers: 1,
            block_q: 64,
            group_heads: true,
            ..plan(128, 128)
        };
        let maps = tensor_maps(DType::F16, &p, false);
        // batch 2, 32 query heads over 8 K/V heads, 4 queries, 4096 keys
        let args = |n: &str| match n {
            "batch" => Some(2),
            "heads" => Some(32),
            "kv_heads" => Some(8),
            "seq_q" => Some(4),
            "seq_kv" => Some(4096),
            _ => None,
        };
        let q = maps[0].resolve_in(&args, 2, None).unwrap();
        assert_eq!(q.dims, [128, 32 * 4, 2]);
        assert_eq!(q.strides, [128 * 2, 32 * 4 * 128 * 2]);
        assert_eq!(q.boxes, [64, 64, 1]);
        let k = maps[1].resolve_in(&args, 2, None).unwrap();
        assert_eq!(k.dims, [128, 4096, 2 * 8]);
        // and the one-head view without grouping
        let plain = tensor_maps(DType::F16, &plan(128, 128), false);
        let q = plain[0].resolve_in(&args, 2, None).unwrap();
        assert_eq!(q.dims, [128, 4, 2 * 32]);
    }

    /// Packed maps view `[tokens][heads][head_dim]` as `[heads][tokens][head_dim]`, the token
    /// count from the bound buffer: Q over `heads`, K and V over `kv_heads`.
    #[test]
    fn packed_maps_walk_tokens_of_a_head() {
        let maps = tensor_maps(DType::BF16, &plan(64, 128), true);
        let heads = ["heads", "kv_heads", "kv_heads"];
        for (m, h) in maps.iter().zip(heads) {
            assert_eq!(m.lines, Extent::RegionLines);
            assert_eq!(m.line_stride, Extent::Scaled(h.into(), 128));
            assert_eq!(m.batch_stride, Extent::Const(128));
            assert_eq!(m.batches, Some(Extent::Arg(h.into())));
        }
        // 300 tokens of 4 K/V heads
        let g = maps[1]
            .resolve_in(
                &|n| (n == "kv_heads").then_some(4),
                1,
                Some(300 * 4 * 128 * 2),
            )
            .unwrap();
        assert_eq!(g.dims, [128, 300, 4]);
        assert_eq!(g.boxes, [64, 64, 1]);
    }
}
