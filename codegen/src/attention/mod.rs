//! Fused attention (FlashAttention-2 style): `O = softmax(scale · Q·Kᵀ) · V` in one kernel.
//!
//! One block owns `block_q` queries of one (batch, head): `blockIdx.x` is the query block,
//! `y` the head, `z` the batch. Each warp owns `block_q / warps` query rows. The block copies
//! its Q tile into shared memory once, then walks the key blocks (`block_kv` keys each) with a
//! `stages`-deep copy pipeline for K and V and one barrier per key block:
//!
//! 1. `S = Q·Kᵀ` into register accumulators (the dialect's MMA atom);
//! 2. scale by `scale · log2(e)`; on edge blocks only, keys `≥ kv_end` (sequence end, padding
//!    length, causal bound of the block) and causal positions `key > query` become −∞;
//! 3. online softmax per accumulator row: the running max `m` (reduced over the threads that
//!    share a row) and a thread-partial running sum `l`; `O` and `l` are rescaled by
//!    `exp2(m_old − m_new)`, `S` becomes `P = exp2(S − m_new)`;
//! 4. `O += P·V` with P converted to the input dtype (the dialect decides whether P goes
//!    straight from the accumulators or through shared memory).
//!
//! Key blocks at or past `kv_end` are never visited: with the causal mask the loop stops at
//! the diagonal of the query block, with padding at `kv_lens[b]`. At the end `l` is reduced
//! over the row's threads, `O` divided by it and stored for queries `< seq_q`, at
//! `[b][h][q][..]` or, token-major (`AttentionLayout::Bshd`), at `[b][q][h][..]`: the layout
//! changes only the output's base and row stride.
//!
//! Grouped-query attention: K and V have `kv_heads` heads and query head `h` reads K/V head
//! `h / (heads / kv_heads)`; only K's and V's base offsets change. A packed batch (variant
//! layout `thd`) finds sequence `b` through `cu_seqlens_q` / `cu_seqlens_kv`: Q, O are
//! `[tokens, heads, head_dim]` and K, V `[tokens, kv_heads, head_dim]` (rows `heads·head_dim`
//! or `kv_heads·head_dim` apart), `seq_q` / `seq_kv` become the sequence's own lengths (the
//! launch bounds are the longest), and a block whose queries start past its sequence's end
//! returns before its first barrier. Masks count positions from the sequence's start.
//!
//! Everything vendor-specific (MMA, fragment layouts, row reductions, P's route) is behind
//! [`Dialect`]; this file never asks which vendor it writes for. Where the attention dispatch
//! policy ([`AttentionPipeline`]) picks the warp-specialized TMA + `wgmma` mainloop (sm_90a),
//! [`crate::hopper::attention`] writes the kernel, with this file's block origin, masking,
//! online softmax and store.

pub mod plan;

use crate::dialect::{for_each_filled_acc, Dialect, MmaPlan};
use crate::kernel::{abi_params, KernelSource};
use crate::source::Source;
use crate::CodegenError;
use plan::{AttnPlan, AttnShape};
use tessera_dsl::ir::{abi, SharedTile};
use tessera_dsl::{
    AttentionLayout, AttentionPipeline, AttentionSchedule, AttentionTile, KernelIr, Mask,
};

/// Byte alignment of each region inside the dynamic shared-memory block.
const SMEM_ALIGN: u32 = 128;
/// Elements per global → shared copy (16 bytes of 16-bit elements).
const CHUNK: u32 = 8;

/// Shared-memory layout: (Q offset, K offset, V offset, P scratch offset, total bytes).
fn smem_layout(sh: &AttnShape, d: &dyn Dialect, p: &AttnPlan) -> (u32, u32, u32, u32, u32) {
    let round = |b: u32| b.div_ceil(SMEM_ALIGN) * SMEM_ALIGN;
    let q = 0;
    let k = q + round(sh.sq.bytes());
    let v = k + round(sh.sk.bytes());
    let scratch = v + round(sh.sv.bytes());
    let total = scratch + round(d.attn_p_scratch_bytes(p, sh.s.warps_m));
    (q, k, v, scratch, total)
}

/// Generate a fused-attention kernel: the sm_90a warp-specialized one where the dispatch
/// policy gives the config that pipeline, else the multistage one (this module).
pub fn emit(ir: &KernelIr, d: &dyn Dialect) -> Result<KernelSource, CodegenError> {
    let sh = plan::shape(ir)?;
    let layout = output_layout(ir)?;
    let tile = AttentionTile {
        block_q: sh.block_q,
        block_kv: sh.block_kv,
        head_dim: sh.head_dim,
        warps: sh.s.warps_m,
        stages: sh.stages,
        schedule: if ir.persistent {
            AttentionSchedule::Persistent
        } else {
            AttentionSchedule::TilePerBlock
        },
        split_kv: ir.split,
        group_heads: ir.group_heads,
    };
    if let AttentionPipeline::Warpspecialized(plan) =
        AttentionPipeline::select(d.target(), &tile, &ir.variant)
    {
        return crate::hopper::attention::emit(ir, d, &sh, &plan, layout);
    }
    if ir.persistent || ir.split != 1 || ir.group_heads {
        let why = AttentionPipeline::hopper_plan(&tile, &ir.variant)
            .err()
            .unwrap_or_else(|| format!("{} has no warp-specialized pipeline", d.target()));
        let what = if ir.persistent {
            "a persistent attention schedule".to_string()
        } else if ir.group_heads {
            "grouped heads (a K/V group's query heads per tile)".to_string()
        } else {
            format!("split {} (keys over a cluster)", ir.split)
        };
        return Err(CodegenError::Unsupported(format!(
            "{what} needs the sm_90a warp-specialized pipeline: {why}"
        )));
    }
    emit_multistage(ir, d, &sh, layout)
}

/// The variant's checks, and the layout O is stored in (a packed O is token-major rows).
fn output_layout(ir: &KernelIr) -> Result<AttentionLayout, CodegenError> {
    if !ir.variant.align.is_multiple_of(CHUNK) {
        return Err(CodegenError::Unsupported(format!(
            "attention copies 16-byte chunks; alignment {} is too small",
            ir.variant.align
        )));
    }
    if ir.variant.output != ir.variant.input {
        return Err(CodegenError::Unsupported(format!(
            "attention stores O as its input dtype {}, not {}",
            ir.variant.input, ir.variant.output
        )));
    }
    if matches!(ir.variant.mask, Mask::Additive) {
        return Err(CodegenError::Unsupported(
            "attention takes a causal or padding mask, not an additive one".into(),
        ));
    }
    let packed = ir.variant.attention_packed();
    if packed && ir.variant.mask == Mask::Padding {
        return Err(CodegenError::Unsupported(
            "a packed batch has no key padding: its sequences have their own lengths".into(),
        ));
    }
    // a packed O is [tokens, heads, head_dim]: stored as token-major rows from its base
    Ok(match ir.variant.attention_layout() {
        _ if packed => AttentionLayout::Bshd,
        Some(l) => l,
        None => {
            return Err(CodegenError::Malformed(format!(
                "attention variant has layout `{}`, not an attention layout",
                ir.variant.layout
            )))
        }
    })
}

/// The multistage (FlashAttention-2 style) kernel: Q once into shared memory, K and V
/// through a `stages`-deep copy pipeline, one barrier per key block.
fn emit_multistage(
    ir: &KernelIr,
    d: &dyn Dialect,
    sh: &AttnShape,
    layout: AttentionLayout,
) -> Result<KernelSource, CodegenError> {
    let packed = ir.variant.attention_packed();
    let p = plan::plan(sh, d)?;
    let threads = sh.s.warps_m * d.warp_size();
    let (q_off, k_off, v_off, p_off, smem_bytes) = smem_layout(sh, d, &p);
    let mut w = Source::new();
    d.prelude(&mut w);
    w.line("");
    w.line(format!(
        "// {} for {}: {} queries x {}-key blocks, head_dim {}, {} warps, {} stages, mask {}, Q {}",
        ir.name,
        d.target(),
        sh.block_q,
        sh.block_kv,
        sh.head_dim,
        sh.s.warps_m,
        sh.stages,
        ir.variant.mask,
        if p.q_resident {
            "in registers"
        } else {
            "re-read from shared memory"
        }
    ));
    w.line(format!("{} {}(", d.kernel_head(threads), ir.name));
    w.lines(&abi_params(d, &abi(ir.op, &ir.variant)));
    w.open(")");
    let ty = d.storage_type(sh.sq.dtype);
    let (bq, bkv, hd) = (sh.block_q, sh.block_kv, sh.head_dim);
    w.line(d.smem_decl());
    w.line("const int tid = threadIdx.x;");
    w.line(format!("const int lane = tid % {};", d.warp_size()));
    w.line(format!("const int warp = tid / {};", d.warp_size()));
    w.line(format!("const int wr0 = warp * {};", p.s.wm));
    let (ldq, ldkv) = emit_block_origin(
        &mut w,
        &TileIndex::grid(),
        ir.variant.mask,
        layout,
        packed.then_some("return"),
        bq,
        bkv,
        hd,
    );
    for (t, off) in [(sh.sq, q_off), (sh.sk, k_off), (sh.sv, v_off)] {
        w.line(format!(
            "{ty}* const s_{} = ({ty}*)(smem + {off}); // {} stages x {} bytes",
            t.name,
            t.stages,
            t.stage_bytes()
        ));
    }
    if d.attn_p_scratch_bytes(&p, sh.s.warps_m) > 0 {
        w.line(format!(
            "{ty}* const s_p_w = ({ty}*)(smem + {p_off}) + warp * {}; // this warp's P",
            p.s.wm * plan::p_stride(bkv)
        ));
    }
    let threads_copy = threads;
    w.line("// Q tile (rows past seq_q are zero)");
    emit_copy(
        &mut w,
        d,
        sh.sq,
        &format!("s_{}", sh.sq.name),
        "q",
        "q0",
        "seq_q",
        &ldq,
        threads_copy,
    )?;
    d.copy_commit(&mut w);
    w.line("// copy key block kt into pipeline stage `stage` (keys past kv_end are zero)");
    w.open("auto load_stage = [&](int stage, int kt)");
    w.line(format!("const int kv0 = kt * {bkv};"));
    for (t, src) in [(sh.sk, "k"), (sh.sv, "v")] {
        let dst = format!("s_{} + stage * {}", t.name, t.stage_bytes() / 2);
        emit_copy(
            &mut w,
            d,
            t,
            &dst,
            src,
            "kv0",
            "kv_end",
            &ldkv,
            threads_copy,
        )?;
    }
    w.close(";");
    let stages = sh.stages;
    w.line(format!("// prologue: {} key blocks in flight", stages - 1));
    w.line("#pragma unroll");
    w.open(format!("for (int st = 0; st < {}; ++st)", stages - 1));
    w.line("if (st < kv_blocks) load_stage(st, st);");
    d.copy_commit(&mut w);
    w.close("");
    d.copy_wait(&mut w, stages - 1);
    d.barrier(&mut w);
    d.declare_acc(&mut w, &p.s);
    d.declare_acc(&mut w, &p.o);
    let (slots, _) = d.acc_row_slots(&p.s);
    w.line(format!(
        "// online-softmax state of this thread's {slots} accumulator rows (log2 domain)"
    ));
    w.line(format!("float row_m[{slots}], row_l[{slots}];"));
    w.line("#pragma unroll");
    w.line(format!(
        "for (int r = 0; r < {slots}; ++r) {{ row_m[r] = tsr_neg_inf(); row_l[r] = 0.f; }}"
    ));
    if p.q_resident {
        d.attn_load_q(&mut w, &p);
    }
    emit_kv_loop(&mut w, ir, d, sh, &p)?;
    emit_normalize_and_store(&mut w, d, &p, &ir.variant, layout, hd)?;
    w.close("");
    Ok(KernelSource {
        name: ir.name.clone(),
        target: d.target(),
        source: w.finish(),
        threads,
        smem_bytes,
        tile_m: bq,
        tile_n: hd,
        tensor_maps: Vec::new(),
        schedule: crate::kernel::TileSchedule::PerBlock,
        rows: crate::kernel::TileRows::QueryHead,
    })
}

/// The walk over the key blocks: wait for block kt, start copying block kt + stages - 1,
/// scores, mask and online softmax, rescale O, `O += P·V`.
fn emit_kv_loop(
    w: &mut Source,
    ir: &KernelIr,
    d: &dyn Dialect,
    sh: &AttnShape,
    p: &AttnPlan,
) -> Result<(), CodegenError> {
    let ty = d.storage_type(sh.sq.dtype);
    let (bq, bkv, hd, stages) = (sh.block_q, sh.block_kv, sh.head_dim, sh.stages);
    for t in [sh.sk, sh.sv] {
        w.line(format!("const {ty}* s_{0}_r = s_{0};", t.name));
    }
    w.line("int read = 0;");
    w.line(format!("int write = {};", stages - 1));
    w.open("for (int kt = 0; kt < kv_blocks; ++kt)");
    d.copy_wait(w, stages - 2);
    w.line("// key block kt has landed; every warp is done with block kt - 1's stage");
    d.barrier(w);
    w.line(format!(
        "if (kt + {0} < kv_blocks) load_stage(write, kt + {0});",
        stages - 1
    ));
    d.copy_commit(w);
    let advance = |w: &mut Source, var: &str| {
        w.line(format!("{var} = {var} + 1 == {stages} ? 0 : {var} + 1;"))
    };
    for t in [sh.sk, sh.sv] {
        w.line(format!(
            "s_{0}_r = s_{0} + read * {1};",
            t.name,
            t.stage_bytes() / 2
        ));
    }
    w.line(format!("const int kv0 = kt * {bkv};"));
    // Causal: a warp whose queries all precede this key block would add exactly nothing (its
    // scores are all -inf, the rescale is 1), so it skips the block. Only where the warp's work
    // has no block-wide barrier inside (P stays in registers), and only where such a block can
    // exist: key blocks shorter than the query block (otherwise the branch only costs).
    let warp_skip =
        ir.variant.mask == Mask::Causal && bkv < bq && d.attn_p_scratch_bytes(p, sh.s.warps_m) == 0;
    if warp_skip {
        w.line("// causal: skip a key block that lies entirely after this warp's queries");
        w.open(format!("if (kv0 <= q0 + wr0 + {})", p.s.wm - 1));
    }
    w.line(format!("// S = Q K^T ({} x {bkv} per warp)", p.s.wm));
    d.attn_scores(w, p);
    emit_mask_and_softmax(w, d, p, ir.variant.mask, bkv)?;
    emit_rescale_o(w, d, p);
    w.line(format!("// O += P V ({} x {hd} per warp)", p.o.wm));
    d.attn_pv(w, p);
    if warp_skip {
        w.close("");
    }
    advance(w, "read");
    advance(w, "write");
    w.close("");
    Ok(())
}

/// Where a tile's (query block, head, batch) indices come from: the block's own grid position,
/// or a persistent block's tile counter.
pub(crate) struct TileIndex {
    pub query_block: String,
    pub head: String,
    pub batch: String,
}

impl TileIndex {
    /// One block per tile: `(blockIdx.x, blockIdx.y, blockIdx.z)`.
    pub(crate) fn grid() -> TileIndex {
        TileIndex {
            query_block: "blockIdx.x".into(),
            head: "blockIdx.y".into(),
            batch: "blockIdx.z".into(),
        }
    }
}

/// The tile's place in the problem, shared by every attention pipeline: `q0` (first query),
/// `b`, `kvh` (its K/V head: grouped-query attention shares one among `heads / kv_heads` query
/// heads), `bh` and `bkvh` (the batch × heads indices of Q and of K/V; not for packed batches),
/// Q/K/V/O moved to this (batch, head), `kv_end` (keys at or past it take no part for any
/// query of the block), `kv_blocks` and `sl2` (the scale in the log2 domain). Returns the row
/// strides of Q (and O) and of K, V: `head_dim`, or (packed) a token's heads apart. `packed`
/// is, for a packed batch, the statement that leaves a tile past its sequence's end: `return`
/// (one tile per block, before any barrier) or `continue` (a persistent block's tile loop).
#[allow(clippy::too_many_arguments)]
pub(crate) fn emit_block_origin(
    w: &mut Source,
    tile: &TileIndex,
    mask: Mask,
    layout: AttentionLayout,
    packed: Option<&str>,
    bq: u32,
    bkv: u32,
    hd: u32,
) -> (String, String) {
    let TileIndex {
        query_block: x,
        head: y,
        batch: z,
    } = tile;
    w.line(format!("const int q0 = {x} * {bq};"));
    w.line(format!("const int b = {z};"));
    w.line("// grouped-query attention: heads / kv_heads query heads share one K/V head");
    w.line(format!("const int kvh = {y} / (heads / kv_heads);"));
    let strides = if let Some(leave) = packed {
        emit_packed_bases(w, y, hd, leave);
        ("ldq".to_string(), "ldkv".to_string())
    } else {
        w.line(format!("const long long bh = (long long)b * heads + {y};"));
        w.line("const long long bkvh = (long long)b * kv_heads + kvh;");
        w.line(format!("q += bh * seq_q * {hd};"));
        match layout {
            AttentionLayout::Bhsd => w.line(format!("o += bh * seq_q * {hd};")),
            AttentionLayout::Bshd => {
                w.line("// O is token-major [batch, seq_q, heads, head_dim]");
                w.line(format!("o += ((long long)b * seq_q * heads + {y}) * {hd};"))
            }
        }
        w.line(format!("k += bkvh * seq_kv * {hd};"));
        w.line(format!("v += bkvh * seq_kv * {hd};"));
        (hd.to_string(), hd.to_string())
    };
    emit_key_range(w, mask, bq, bkv);
    strides
}

/// The keys a tile of `bq` queries from `q0` in batch `b` takes part with: `kv_end` (none at
/// or past it, by length, key padding or the causal mask), `kv_blocks` of `bkv` keys, and
/// `sl2` (the scale in the log2 domain).
pub(crate) fn emit_key_range(w: &mut Source, mask: Mask, bq: u32, bkv: u32) {
    w.line("// keys >= kv_end take no part for any query of this block");
    w.line("int kv_end = seq_kv;");
    match mask {
        Mask::Padding => w.line("kv_end = min(kv_end, kv_lens[b]);"),
        Mask::Causal => w.line(format!("kv_end = min(kv_end, q0 + {bq});")),
        _ => {}
    }
    w.line(format!(
        "const int kv_blocks = (kv_end + {bkv} - 1) / {bkv};"
    ));
    w.line("const float sl2 = scale * 1.4426950408889634f; // exp(x) = exp2(x log2 e)");
}

/// The bases of a packed batch's sequence `b` (`cu_seqlens_q`, `cu_seqlens_kv`): Q, O, K and
/// V moved to the sequence's first token and this block's head, the row strides `ldq` and
/// `ldkv`, `seq_q` / `seq_kv` narrowed to the sequence's lengths, and `leave` (`return`, or
/// `continue` in a persistent tile loop) for a tile past the sequence's end (uniform over the
/// block, before any barrier of the tile).
fn emit_packed_bases(w: &mut Source, head: &str, hd: u32, leave: &str) {
    w.line("// packed batch: sequence b owns query tokens cu_seqlens_q[b] .. cu_seqlens_q[b + 1]");
    w.line("// and key tokens cu_seqlens_kv[b] .. cu_seqlens_kv[b + 1]");
    w.line("const int tq0 = cu_seqlens_q[b];");
    w.line("const int tk0 = cu_seqlens_kv[b];");
    w.line(
        "// from here on seq_q and seq_kv are this sequence's lengths (the arguments: the longest)",
    );
    w.line("seq_q = cu_seqlens_q[b + 1] - tq0;");
    w.line("seq_kv = cu_seqlens_kv[b + 1] - tk0;");
    let whole = if leave == "return" { "block" } else { "tile" };
    w.line(format!(
        "if (q0 >= seq_q) {leave}; // the whole {whole} is past its sequence's end"
    ));
    w.line("// Q, O: [tokens, heads, head_dim]; K, V: [tokens, kv_heads, head_dim]");
    w.line(format!("const int ldq = heads * {hd};"));
    w.line(format!("const int ldkv = kv_heads * {hd};"));
    w.line(format!("q += ((long long)tq0 * heads + {head}) * {hd};"));
    w.line(format!("o += ((long long)tq0 * heads + {head}) * {hd};"));
    w.line(format!("k += ((long long)tk0 * kv_heads + kvh) * {hd};"));
    w.line(format!("v += ((long long)tk0 * kv_heads + kvh) * {hd};"));
}

/// Copy `lines` rows of `head_dim` elements from global `src` (rows `row0 + r`, `ld` elements
/// apart) into the shared tile at `dst`, 16 bytes per copy; rows at or past `limit` are
/// zero-filled, never read.
#[allow(clippy::too_many_arguments)]
fn emit_copy(
    w: &mut Source,
    d: &dyn Dialect,
    t: &SharedTile,
    dst: &str,
    src: &str,
    row0: &str,
    limit: &str,
    ld: &str,
    threads: u32,
) -> Result<(), CodegenError> {
    let (lines, stride) = t.storage();
    let width = t.cols;
    let per_line = width / CHUNK;
    // head_dim is a multiple of 16 and blocks have 128..1024 threads: whole lines per pass
    if per_line == 0 || !threads.is_multiple_of(per_line) {
        return Err(CodegenError::Unsupported(format!(
            "{threads} threads do not copy whole {width}-element lines"
        )));
    }
    let rows_per_pass = threads / per_line;
    let iters = lines.div_ceil(rows_per_pass);
    let total = lines * per_line;
    w.open("");
    w.line(format!("const int r0 = tid / {per_line};"));
    w.line(format!("const int c = (tid % {per_line}) * {CHUNK};"));
    w.line(format!(
        "const {}* const src0 = {src} + (long long)({row0} + r0) * {ld} + c;",
        d.storage_type(t.dtype)
    ));
    w.line("#pragma unroll");
    w.open(format!("for (int it = 0; it < {iters}; ++it)"));
    w.line(format!("const int r = r0 + it * {rows_per_pass};"));
    if !total.is_multiple_of(threads) {
        w.line(format!("if (r >= {lines}) break;"));
    }
    w.line(format!("const bool p = {row0} + r < {limit};"));
    d.copy_chunk(
        w,
        &format!("{dst} + r * {stride} + c"),
        &format!("p ? src0 + (long long)(it * {rows_per_pass}) * {ld} : {src}"),
        CHUNK * 2,
        "p",
    );
    w.close("");
    w.close("");
    Ok(())
}

/// Scale, mask (edge blocks only) and the online-softmax update of one key block: P in the
/// score registers, `alpha` per row for [`emit_rescale_o`].
pub(crate) fn emit_mask_and_softmax(
    w: &mut Source,
    d: &dyn Dialect,
    p: &AttnPlan,
    mask: Mask,
    bkv: u32,
) -> Result<(), CodegenError> {
    let (slots, slot) = d.acc_row_slots(&p.s);
    let causal = mask == Mask::Causal;
    // a block needs masking if it reaches past kv_end, or (causal) past this warp's first query
    let edge = if causal {
        format!("kv0 + {bkv} > kv_end || kv0 + {} > q0 + wr0", bkv - 1)
    } else {
        format!("kv0 + {bkv} > kv_end")
    };
    w.line(format!("const bool edge = {edge};"));
    w.line("// on edge blocks masked keys become -inf (scores stay unscaled: the scale is folded");
    w.line("// into the exponent's FMA below)");
    for_each_filled_acc(d, w, &p.s, &mut |w, g| {
        w.open("if (edge)");
        w.line(format!("const int key = kv0 + {};", g.col));
        if causal {
            w.line(format!("const int qi = q0 + {};", g.row));
        }
        for (k, reg) in g.regs.iter().enumerate() {
            let cond = if causal {
                format!("key + {k} >= kv_end || key + {k} > qi")
            } else {
                format!("key + {k} >= kv_end")
            };
            w.line(format!("if ({cond}) {reg} = tsr_neg_inf();"));
        }
        w.close("");
    })?;
    w.line("// new row max over this block (log2 domain), shared by the threads of each row");
    w.line(format!("float mx[{slots}];"));
    w.line("#pragma unroll");
    w.line(format!(
        "for (int r = 0; r < {slots}; ++r) mx[r] = tsr_neg_inf();"
    ));
    d.for_each_acc(w, &p.s, &mut |w, g| {
        for reg in &g.regs {
            w.line(format!("mx[{slot}] = fmaxf(mx[{slot}], {reg});"));
        }
    });
    w.line(format!("float alpha[{slots}];"));
    w.line("#pragma unroll");
    w.open(format!("for (int r = 0; r < {slots}; ++r)"));
    d.row_allreduce(w, "mx[r]", true);
    w.line("// scale > 0, so the max of the scaled scores is the scaled max");
    w.line("mx[r] = fmaxf(row_m[r], mx[r] * sl2);");
    w.line("// a row with no key yet keeps max -inf: subtract 0 so exp2 gives 0, not NaN");
    w.line("const float mu = mx[r] == tsr_neg_inf() ? 0.f : mx[r];");
    w.line("alpha[r] = tsr_exp2(row_m[r] - mu);");
    w.line("row_m[r] = mx[r];");
    w.line("mx[r] = mu;");
    w.line("row_l[r] *= alpha[r];");
    w.close("");
    w.line("// P = exp2(S·scale·log2 e - m), one FMA per score; l += this thread's part of the row sum");
    d.for_each_acc(w, &p.s, &mut |w, g| {
        for reg in &g.regs {
            w.line(format!("{reg} = tsr_exp2(fmaf({reg}, sl2, -mx[{slot}]));"));
            w.line(format!("row_l[{slot}] += {reg};"));
        }
    });
    Ok(())
}

/// Rescale O by `alpha = exp2(m_old − m_new)` of the last [`emit_mask_and_softmax`].
pub(crate) fn emit_rescale_o(w: &mut Source, d: &dyn Dialect, p: &AttnPlan) {
    w.line("// rescale O by exp2(m_old - m_new)");
    let (_, oslot) = d.acc_row_slots(&p.o);
    d.for_each_acc(w, &p.o, &mut |w, g| {
        for reg in &g.regs {
            w.line(format!("{reg} *= alpha[{oslot}];"));
        }
    });
}

/// Reduce `l` over each row's threads, divide O by it and store rows `< seq_q`.
pub(crate) fn emit_normalize_and_store(
    w: &mut Source,
    d: &dyn Dialect,
    p: &AttnPlan,
    variant: &tessera_dsl::Variant,
    layout: AttentionLayout,
    hd: u32,
) -> Result<(), CodegenError> {
    let o: &MmaPlan = &p.o;
    let (slots, slot) = d.acc_row_slots(o);
    w.line("// normalize: O /= l (l summed over the threads of each row)");
    w.line("#pragma unroll");
    w.open(format!("for (int r = 0; r < {slots}; ++r)"));
    d.row_allreduce(w, "row_l[r]", false);
    w.line("row_l[r] = row_l[r] > 0.f ? 1.f / row_l[r] : 0.f;");
    w.close("");
    d.for_each_acc(w, o, &mut |w, g| {
        for reg in &g.regs {
            w.line(format!("{reg} *= row_l[{slot}];"));
        }
    });
    let out = variant.output;
    w.line(format!("// store O ({out}) for queries < seq_q"));
    let mut bad = None;
    d.for_each_acc(w, o, &mut |w, g| {
        w.line(format!("const int qi = q0 + {};", g.row));
        w.open("if (qi < seq_q)");
        w.line(match layout {
            AttentionLayout::Bhsd => {
                format!("const long long di = (long long)qi * {hd} + {};", g.col)
            }
            AttentionLayout::Bshd => format!(
                "const long long di = (long long)qi * heads * {hd} + {};",
                g.col
            ),
        });
        match g.regs.as_slice() {
            [a, b2] if out.size_bytes() == 2 => w.line(format!(
                "*(unsigned*)(o + di) = (unsigned){} | ((unsigned){} << 16);",
                d.to_storage(out, a),
                d.to_storage(out, b2)
            )),
            [] => bad = Some(CodegenError::Malformed("empty accumulator group".into())),
            regs => {
                for (k, reg) in regs.iter().enumerate() {
                    w.line(format!("o[di + {k}] = {};", d.to_storage(out, reg)));
                }
            }
        }
        w.close("");
    });
    match bad {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
