//! The vendor-neutral kernel emitter: walks a `KernelIr` and writes the kernel's structure
//! (launch ABI, tile rasterisation, shared-memory carve-up, copy loops, the multi-stage
//! mainloop skeleton and the predicated epilogue), asking the [`Dialect`] for every
//! vendor-specific piece.

use crate::dialect::AccGroup;
use crate::dialect::{Dialect, MmaPlan, SmemOperand};
use crate::epilogue::{self, EpilogueOperands};
use crate::source::Source;
use crate::CodegenError;
use tessera_dsl::ir::{abi, Arg, Operand, SharedTile, Stmt, TileCopy};
use tessera_dsl::{
    EpilogueOp, GemmPipeline, GemmTile, KernelIr, Layout, OpKind, Problem, Store, Target,
    TensorMapArg,
};

/// Generated source of one kernel and what its launch needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelSource {
    pub name: String,
    pub target: Target,
    pub source: String,
    pub threads: u32,
    /// Dynamic shared memory, bytes.
    pub smem_bytes: u32,
    pub tile_m: u32,
    pub tile_n: u32,
    /// TMA tensor maps the pipeline takes after the ABI arguments (empty for pipelines that
    /// copy with ordinary loads).
    pub tensor_maps: Vec<TensorMapArg>,
    pub schedule: TileSchedule,
    /// Attention: whose queries a tile's rows are (other ops: [`TileRows::QueryHead`]).
    pub rows: TileRows,
}

/// Attention: the rows of a tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TileRows {
    /// One query head's queries: tiles are (query block, head, batch).
    #[default]
    QueryHead,
    /// A K/V head's group of query heads, head-major, each with its queries: tiles are (row
    /// block, K/V head, batch) over `heads / kv_heads × seq_q` rows.
    KvGroup,
}

/// How a kernel's blocks map to its output tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileSchedule {
    /// One block per tile.
    PerBlock,
    /// At most one block per multiprocessor (per batch), each looping over tiles
    /// `blockIdx.x, blockIdx.x + gridDim.x, ...` of its batch `blockIdx.z` (attention: of all
    /// its (query block, head, batch) tiles).
    Persistent,
    /// One tile per cluster of `ctas` blocks along x (`__cluster_dims__(ctas, 1, 1)` in the
    /// source), which share its reduction range (attention: its keys, split-KV): the grid's x
    /// is `ctas` times the tiles'.
    Clustered { ctas: u32 },
    /// [`TileSchedule::Persistent`] by clusters of `ctas` blocks along x
    /// (`__cluster_dims__(ctas, 1, 1)`): each cluster walks tiles of `ctas` M-tiles (one per
    /// block, by cluster rank) and its blocks share each B tile: at most one block per
    /// multiprocessor (per batch), the grid's x a multiple of `ctas`.
    PersistentClusters { ctas: u32 },
}

impl TileSchedule {
    /// Blocks per cluster the launch keeps together (1: no cluster).
    pub fn cluster_size(&self) -> u32 {
        match self {
            TileSchedule::PerBlock | TileSchedule::Persistent => 1,
            TileSchedule::Clustered { ctas } | TileSchedule::PersistentClusters { ctas } => {
                (*ctas).max(1)
            }
        }
    }
}

impl KernelSource {
    /// Grid for a problem on a device with `sm_count` multiprocessors: tiles are rasterised
    /// along x (grouped along M for L2 reuse), batches along z.
    pub fn grid(&self, problem: &Problem, sm_count: u32) -> [u32; 3] {
        let blocks = |n: u64, tile: u32| {
            u32::try_from(n.div_ceil(u64::from(tile.max(1)))).unwrap_or(u32::MAX)
        };
        let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        match problem {
            Problem::Gemm(g) => {
                let tm = g.m.div_ceil(u64::from(self.tile_m));
                let tn = g.n.div_ceil(u64::from(self.tile_n));
                let blocks = match self.schedule {
                    TileSchedule::PerBlock => tm * tn,
                    TileSchedule::Clustered { ctas } => tm * tn * u64::from(ctas.max(1)),
                    TileSchedule::Persistent => {
                        let per_batch = u64::from(sm_count) / g.batch.max(1);
                        (tm * tn).min(per_batch.max(1))
                    }
                    TileSchedule::PersistentClusters { ctas } => {
                        let ctas = u64::from(ctas.max(1));
                        let clusters = (u64::from(sm_count) / g.batch.max(1) / ctas).max(1);
                        (tm.div_ceil(ctas) * tn).min(clusters) * ctas
                    }
                };
                [clamp(blocks), 1, clamp(g.batch)]
            }
            // row-wise kernels: `tile_m` rows per block
            Problem::Layernorm(l) => [blocks(l.rows, self.tile_m), 1, 1],
            Problem::Softmax(s) => [blocks(s.rows, self.tile_m), 1, 1],
            Problem::Embedding(e) => [blocks(e.tokens, self.tile_m), 1, 1],
            // attention: `tile_m` queries of one head per block, or (persistent) at most one
            // block per multiprocessor walking the (query block, head, batch) tiles
            Problem::Attention(a) => match self.schedule {
                TileSchedule::PerBlock | TileSchedule::Clustered { .. } => {
                    let (rows, heads) = match self.rows {
                        TileRows::QueryHead => (a.seq_q, a.heads),
                        TileRows::KvGroup => {
                            let group = a.heads / a.kv_heads.max(1);
                            (a.seq_q * group, a.kv_heads)
                        }
                    };
                    // a cluster of `ctas` blocks per tile, adjacent along x
                    let ctas = u64::from(self.schedule.cluster_size());
                    [
                        clamp(u64::from(blocks(rows, self.tile_m)) * ctas),
                        clamp(heads),
                        clamp(a.batch),
                    ]
                }
                // (no attention pipeline walks tiles by clusters)
                TileSchedule::Persistent | TileSchedule::PersistentClusters { .. } => {
                    let tiles = u64::from(blocks(a.seq_q, self.tile_m)) * a.heads * a.batch;
                    [clamp(tiles.min(u64::from(sm_count)).max(1)), 1, 1]
                }
            },
        }
    }
}

/// M-tiles per rasterisation group.
pub(crate) const GROUP_M: u32 = 8;
/// Byte alignment of each shared tile inside the dynamic shared-memory block.
const SMEM_ALIGN: u32 = 128;

/// Generate the source of any kernel: each op has its own lowering.
pub fn emit(ir: &KernelIr, d: &dyn Dialect) -> Result<KernelSource, CodegenError> {
    match ir.op {
        OpKind::Gemm => emit_gemm(ir, d),
        OpKind::Layernorm | OpKind::Softmax | OpKind::Embedding => crate::rows::emit(ir, d),
        OpKind::Attention => crate::attention::emit(ir, d),
    }
}

/// The kernel's parameter list, one per line, from its launch ABI.
pub(crate) fn abi_params(d: &dyn Dialect, abi: &[Arg]) -> String {
    let params: Vec<String> = abi
        .iter()
        .map(|a| match a {
            Arg::Ptr {
                name,
                dtype,
                written,
            } => {
                let ty = d.storage_type(*dtype);
                if *written {
                    format!("    {ty}* __restrict__ {name}")
                } else {
                    format!("    const {ty}* __restrict__ {name}")
                }
            }
            Arg::I32Ptr(n) => format!("    const int* __restrict__ {n}"),
            Arg::I32(n) => format!("    int {n}"),
            Arg::I64(n) => format!("    long long {n}"),
            Arg::F32(n) => format!("    float {n}"),
        })
        .collect();
    params.join(",\n")
}

fn emit_gemm(ir: &KernelIr, d: &dyn Dialect) -> Result<KernelSource, CodegenError> {
    check(ir, d)?;
    let tile = gemm_tile(ir)?;
    if let GemmPipeline::Warpspecialized(plan) =
        GemmPipeline::select(d.target(), &tile, &ir.variant)
    {
        return crate::hopper::gemm::emit(ir, d, &tile, &plan);
    }
    if ir.split != 1 {
        return Err(CodegenError::Unsupported(format!(
            "split {}: only the sm_90a TMA pipeline splits a tile's K range",
            ir.split
        )));
    }
    if ir.bulk_store {
        return Err(CodegenError::Unsupported(
            "bulk 1: only the sm_90a TMA pipeline stores a tile with bulk tensor copies".into(),
        ));
    }
    if ir.multicast != 1 {
        return Err(CodegenError::Unsupported(format!(
            "multicast {}: only the sm_90a TMA pipeline multicasts B tiles over a cluster",
            ir.multicast
        )));
    }
    let threads = ir.threads(d.warp_size());
    let mut w = Source::new();
    d.prelude(&mut w);
    w.line("");
    w.line(format!(
        "// {} for {}: tile {}x{}x{}, {}x{} warps",
        ir.name,
        d.target(),
        ir.tile_m,
        ir.tile_n,
        ir.tile_k,
        ir.warps_m,
        ir.warps_n
    ));
    w.line(format!("{} {}(", d.kernel_head(threads), ir.name));
    w.lines(&abi_params(d, &abi(ir.op, &ir.variant)));
    w.open(")");
    emit_body(&mut w, ir, d, threads)?;
    w.close("");
    Ok(KernelSource {
        name: ir.name.clone(),
        target: d.target(),
        source: w.finish(),
        threads,
        smem_bytes: smem_layout(ir).1,
        tile_m: ir.tile_m,
        tile_n: ir.tile_n,
        tensor_maps: Vec::new(),
        schedule: TileSchedule::PerBlock,
        rows: TileRows::QueryHead,
    })
}

/// The geometry the GEMM dispatch policy looks at.
pub(crate) fn gemm_tile(ir: &KernelIr) -> Result<GemmTile, CodegenError> {
    let stages = ir
        .body
        .iter()
        .find_map(|s| match s {
            Stmt::Mainloop { stages, .. } => Some(*stages),
            _ => None,
        })
        .ok_or_else(|| CodegenError::Malformed("a GEMM without a mainloop".into()))?;
    Ok(GemmTile {
        tile_m: ir.tile_m,
        tile_n: ir.tile_n,
        tile_k: ir.tile_k,
        warps: ir.warps(),
        stages,
        split_k: ir.split,
        bulk_store: ir.bulk_store,
        multicast: ir.multicast,
    })
}

/// Structural checks the emitter relies on.
pub(crate) fn check(ir: &KernelIr, d: &dyn Dialect) -> Result<(), CodegenError> {
    let bad = |m: String| Err(CodegenError::Malformed(m));
    if ir.global(Operand::A).map(|g| g.layout) != Some(Layout::Row) {
        return bad("GEMM A must be row-major".into());
    }
    for s in &ir.shared {
        if s.dtype.size_bytes() != 2 {
            return bad(format!("shared tile {} must hold 16-bit elements", s.name));
        }
        let (_, line) = s.storage();
        let contiguous = line - s.pad;
        if contiguous % ir.variant.align != 0 {
            return bad(format!(
                "shared tile {} lines are not a multiple of the alignment",
                s.name
            ));
        }
    }
    for f in ir.fragments() {
        let atom = d.atom_with(ir.variant.input, ir.mma_atom(&f.name))?;
        // the B operand is loaded for two n8 atoms at a time on NVIDIA (n16), for 32 columns
        // at a time on AMD's 16x16 atom, one atom's columns for wider atoms
        let n_step = (atom.n * 2).clamp(16, 32).max(atom.n);
        let (wm, wn) = f.warp_tile();
        if wm % atom.m != 0 || wn % n_step != 0 {
            return Err(CodegenError::Unsupported(format!(
                "warp tile {wm}x{wn} is not a multiple of {}x{n_step} on {}",
                atom.m,
                d.target()
            )));
        }
        if !ir.tile_k.is_multiple_of(atom.k) {
            return Err(CodegenError::Unsupported(format!(
                "tile_k {} is not a multiple of the atom K {}",
                ir.tile_k, atom.k
            )));
        }
    }
    if let Store::Heads { head_dim, .. } = ir.variant.store {
        if head_dim % 2 != 0 {
            return Err(CodegenError::Unsupported(format!(
                "head store with odd head_dim {head_dim}"
            )));
        }
    }
    if !matches!(ir.variant.align, 2 | 4 | 8) {
        return Err(CodegenError::Unsupported(format!(
            "alignment {} (needs 2, 4 or 8 elements)",
            ir.variant.align
        )));
    }
    Ok(())
}

/// Offsets (bytes) of each shared tile and the total.
fn smem_layout(ir: &KernelIr) -> (Vec<u32>, u32) {
    let mut offsets = Vec::new();
    let mut at = 0u32;
    for s in &ir.shared {
        offsets.push(at);
        at += s.bytes().div_ceil(SMEM_ALIGN) * SMEM_ALIGN;
    }
    (offsets, at)
}

/// (line index base, line limit, contiguous base, contiguous limit, leading dimension) of the
/// global tensor a shared tile stages.
fn copy_geometry(
    s: &SharedTile,
) -> Result<
    (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    ),
    CodegenError,
> {
    Ok(match (s.source, s.layout) {
        (Operand::A, Layout::Row) => ("row0", "M", "k0", "K", "lda"),
        (Operand::B, Layout::Col) => ("col0", "N", "k0", "K", "ldb"),
        (Operand::B, Layout::Row) => ("k0", "K", "col0", "N", "ldb"),
        (src, layout) => {
            return Err(CodegenError::Unsupported(format!(
                "staging {} ({layout}-major) into shared memory",
                src.name()
            )))
        }
    })
}

fn emit_copy(
    w: &mut Source,
    d: &dyn Dialect,
    ir: &KernelIr,
    c: &TileCopy,
    threads: u32,
) -> Result<(), CodegenError> {
    let s = ir
        .shared_tile(&c.dst)
        .ok_or_else(|| CodegenError::Malformed(format!("unknown shared tile {}", c.dst)))?;
    let (line0, line_lim, c0, c_lim, ld) = copy_geometry(s)?;
    let (lines, stride) = s.storage();
    let contiguous = stride - s.pad;
    let align = ir.variant.align;
    let per_line = contiguous / align;
    let total = lines * per_line;
    let iters = total.div_ceil(threads);
    let src = s.source.name();
    w.line(format!(
        "// {src} -> {}: {lines} lines x {contiguous} elements, {} bytes per copy",
        s.name,
        align * 2
    ));
    if threads.is_multiple_of(per_line) {
        // Every pass covers whole lines: one column and one base pointer per thread; pass `it`
        // moves `rows_per_pass` lines down (few live registers: no per-pass 64-bit pointers).
        let rows_per_pass = threads / per_line;
        w.open("");
        w.line(format!("const int r0 = tid / {per_line};"));
        w.line(format!("const int c = (tid % {per_line}) * {align};"));
        w.line(format!("const int gc = {c0} + c;"));
        w.line(format!("const bool pc = gc < {c_lim};"));
        w.line(format!(
            "const {}* src0 = {src} + (long long)({line0} + r0) * {ld} + gc;",
            d.storage_type(s.dtype)
        ));
        w.line("#pragma unroll");
        w.open(format!("for (int it = 0; it < {iters}; ++it)"));
        w.line(format!("const int r = r0 + it * {rows_per_pass};"));
        if !total.is_multiple_of(threads) {
            w.line(format!("if (r >= {lines}) break;"));
        }
        w.line(format!("const bool p = pc && {line0} + r < {line_lim};"));
        d.copy_chunk(
            w,
            &format!("s_{}_w + r * {stride} + c", s.name),
            &format!("p ? src0 + (long long)(it * {rows_per_pass}) * {ld} : {src}"),
            align * 2,
            "p",
        );
        w.close("");
        w.close("");
        return Ok(());
    }
    w.line("#pragma unroll");
    w.open(format!("for (int it = 0; it < {iters}; ++it)"));
    w.line(format!("const int idx = tid + it * {threads};"));
    if !total.is_multiple_of(threads) {
        w.line(format!("if (idx >= {total}) break;"));
    }
    w.line(format!("const int r = idx / {per_line};"));
    w.line(format!("const int c = (idx % {per_line}) * {align};"));
    w.line(format!("const int gl = {line0} + r;"));
    w.line(format!("const int gc = {c0} + c;"));
    w.line(format!("const bool p = gl < {line_lim} && gc < {c_lim};"));
    d.copy_chunk(
        w,
        &format!("s_{}_w + r * {stride} + c", s.name),
        &format!("p ? {src} + (long long)gl * {ld} + gc : {src}"),
        align * 2,
        "p",
    );
    w.close("");
    Ok(())
}

fn plan_for(
    ir: &KernelIr,
    d: &dyn Dialect,
    acc: &str,
    a: &str,
    b: &str,
) -> Result<MmaPlan, CodegenError> {
    let frag = ir
        .fragments()
        .into_iter()
        .find(|f| f.name == acc)
        .ok_or_else(|| CodegenError::Malformed(format!("unknown fragment {acc}")))?;
    let operand = |name: &str| -> Result<SmemOperand, CodegenError> {
        let s = ir
            .shared_tile(name)
            .ok_or_else(|| CodegenError::Malformed(format!("unknown shared tile {name}")))?;
        Ok(SmemOperand {
            ptr: format!("s_{}_r", s.name),
            stride: s.storage().1,
            layout: s.layout,
        })
    };
    let (wm, wn) = frag.warp_tile();
    Ok(MmaPlan {
        input: ir.variant.input,
        atom: d.atom_with(ir.variant.input, ir.mma_atom(acc))?,
        wm,
        wn,
        tile_k: ir.tile_k,
        warp_row: "wr0".into(),
        warp_col: "wc0".into(),
        a: operand(a)?,
        b: operand(b)?,
        acc: frag.name.clone(),
    })
}

/// The MMA statement that feeds each fragment (its plan is needed where it is declared).
fn find_mma(stmts: &[Stmt], acc: &str) -> Option<(String, String)> {
    stmts.iter().find_map(|s| match s {
        Stmt::Mma { acc: x, a, b, .. } if x == acc => Some((a.clone(), b.clone())),
        Stmt::Mainloop { body, .. } => find_mma(body, acc),
        _ => None,
    })
}

fn emit_body(
    w: &mut Source,
    ir: &KernelIr,
    d: &dyn Dialect,
    threads: u32,
) -> Result<(), CodegenError> {
    let ws = d.warp_size();
    let (tm, tn) = (ir.tile_m, ir.tile_n);
    w.line(d.smem_decl());
    w.line("const int tid = threadIdx.x;");
    w.line(format!("const int lane = tid % {ws};"));
    w.line(format!("const int warp = tid / {ws};"));
    w.line(format!(
        "const int wr0 = (warp % {}) * {};",
        ir.warps_m,
        tm / ir.warps_m
    ));
    w.line(format!(
        "const int wc0 = (warp / {}) * {};",
        ir.warps_m,
        tn / ir.warps_n
    ));
    emit_raster(w, ir);
    w.line("a += bz * stride_a;");
    w.line("b += bz * stride_b;");
    w.line("d += bz * stride_d;");
    w.line("if (c) c += bz * stride_c;");
    w.line("if (residual) residual += bz * stride_d;");
    let (offsets, _) = smem_layout(ir);
    for (s, off) in ir.shared.iter().zip(&offsets) {
        let ty = d.storage_type(s.dtype);
        w.line(format!(
            "{ty}* const s_{} = ({ty}*)(smem + {off}); // {} stages x {} bytes",
            s.name,
            s.stages,
            s.stage_bytes()
        ));
    }
    for stmt in &ir.body {
        emit_stmt(w, ir, d, stmt, threads)?;
    }
    Ok(())
}

fn emit_stmt(
    w: &mut Source,
    ir: &KernelIr,
    d: &dyn Dialect,
    stmt: &Stmt,
    threads: u32,
) -> Result<(), CodegenError> {
    match stmt {
        Stmt::Fragment(f) => {
            let (a, b) = find_mma(&ir.body, &f.name).ok_or_else(|| {
                CodegenError::Unsupported(format!("fragment {} is not fed by an mma", f.name))
            })?;
            let plan = plan_for(ir, d, &f.name, &a, &b)?;
            d.declare_acc(w, &plan);
        }
        Stmt::Mainloop {
            step,
            stages,
            copies,
            body,
        } => emit_mainloop(w, ir, d, *step, *stages, copies, body, threads)?,
        Stmt::Mma { .. } => {
            return Err(CodegenError::Malformed("mma outside a mainloop".into()));
        }
        Stmt::Epilogue { acc, dst, ops } => emit_epilogue(w, ir, d, acc, *dst, ops)?,
        other => {
            return Err(CodegenError::Unsupported(format!(
                "a GEMM kernel cannot lower {other:?}"
            )))
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn emit_mainloop(
    w: &mut Source,
    ir: &KernelIr,
    d: &dyn Dialect,
    step: u32,
    stages: u32,
    copies: &[TileCopy],
    body: &[Stmt],
    threads: u32,
) -> Result<(), CodegenError> {
    if stages < 2 {
        return Err(CodegenError::Unsupported(
            "the mainloop needs at least 2 stages".into(),
        ));
    }
    w.line(format!("const int k_tiles = (K + {step} - 1) / {step};"));
    w.line("// copy K-tile kt into shared stage `stage`");
    w.open("auto load_stage = [&](int stage, int kt)");
    w.line(format!("const int k0 = kt * {step};"));
    for c in copies {
        let s = ir
            .shared_tile(&c.dst)
            .ok_or_else(|| CodegenError::Malformed(format!("unknown shared tile {}", c.dst)))?;
        let ty = d.storage_type(s.dtype);
        let stage_elems = s.stage_bytes() / s.dtype.size_bytes();
        w.line(format!(
            "{ty}* const s_{}_w = s_{} + stage * {stage_elems};",
            s.name, s.name
        ));
    }
    for c in copies {
        emit_copy(w, d, ir, c, threads)?;
    }
    w.close(";");
    let plans = body
        .iter()
        .map(|stmt| match stmt {
            Stmt::Mma { acc, a, b, .. } => plan_for(ir, d, acc, a, b),
            other => Err(CodegenError::Unsupported(format!(
                "{other:?} inside a mainloop"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ksteps = plans.first().map_or(1, |p| step / p.atom.k);
    let advance = |w: &mut Source, var: &str| {
        w.line(format!("{var} = {var} + 1 == {stages} ? 0 : {var} + 1;"))
    };
    w.line(format!("// prologue: {} stages in flight", stages - 1));
    w.line("#pragma unroll");
    w.open(format!("for (int s = 0; s < {}; ++s)", stages - 1));
    w.line("if (s < k_tiles) load_stage(s, s);");
    d.copy_commit(w);
    w.close("");
    d.copy_wait(w, stages - 2);
    d.barrier(w);
    w.line("int read = 0;");
    w.line(format!("int write = {};", stages - 1));
    for s in &ir.shared {
        let ty = d.storage_type(s.dtype);
        w.line(format!("const {ty}* s_{}_r = s_{};", s.name, s.name));
    }
    let restage = |w: &mut Source| {
        for s in &ir.shared {
            let stage_elems = s.stage_bytes() / s.dtype.size_bytes();
            w.line(format!(
                "s_{}_r = s_{} + read * {stage_elems};",
                s.name, s.name
            ));
        }
    };
    for p in &plans {
        d.declare_fragments(w, p);
        w.open("");
        d.load_fragments(w, p, "0", "0");
        w.close("");
    }
    w.line(format!(
        "// mainloop: fragments of atom-step kk+1 load while kk computes; the stage switches at kk = {}",
        ksteps - 1
    ));
    w.open("for (int kt = 0; kt < k_tiles; ++kt)");
    w.line("#pragma unroll");
    w.open(format!("for (int kk = 0; kk < {ksteps}; ++kk)"));
    w.open(format!("if (kk == {})", ksteps - 1));
    d.copy_wait(w, stages - 2);
    d.barrier(w);
    advance(w, "read");
    restage(w);
    w.close("");
    for p in &plans {
        w.open("");
        d.load_fragments(w, p, "(kk + 1) & 1", &format!("(kk + 1) % {ksteps}"));
        w.close("");
    }
    w.open("if (kk == 0)");
    w.line(format!(
        "if (kt + {0} < k_tiles) load_stage(write, kt + {0});",
        stages - 1
    ));
    d.copy_commit(w);
    advance(w, "write");
    w.close("");
    for p in &plans {
        d.mma_step(w, p, "kk & 1");
    }
    w.close("");
    w.close("");
    Ok(())
}

fn emit_epilogue(
    w: &mut Source,
    ir: &KernelIr,
    d: &dyn Dialect,
    acc: &str,
    dst: Operand,
    ops: &[EpilogueOp],
) -> Result<(), CodegenError> {
    let store = EpilogueStore::new(ir, d, dst, ops)?;
    let (a, b) = find_mma(&ir.body, acc)
        .ok_or_else(|| CodegenError::Unsupported(format!("fragment {acc} is not fed by an mma")))?;
    let plan = plan_for(ir, d, acc, &a, &b)?;
    store.comment(w);
    let mut failure = None;
    d.for_each_acc(w, &plan, &mut |w, g| {
        if let Err(e) = store.group(w, g) {
            failure = Some(e);
        }
    });
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The tile rasterisation of a one-tile-per-block GEMM: `row0`/`col0` of this block's output
/// tile ([`emit_tile_origin`]); `bz` is the batch index.
pub(crate) fn emit_raster(w: &mut Source, ir: &KernelIr) {
    emit_tile_counts(w, ir);
    w.line("const int pid = blockIdx.x;");
    emit_tile_origin(w, ir);
    w.line("if (row0 >= M || col0 >= N) return;");
    w.line("const long long bz = blockIdx.z;");
}

/// `tiles_m` and `tiles_n`: output tiles along M and N.
pub(crate) fn emit_tile_counts(w: &mut Source, ir: &KernelIr) {
    emit_cluster_tile_counts(w, ir, 1);
}

/// [`emit_tile_counts`] where a cluster of `ctas` blocks along M takes `ctas` M-tiles at a
/// time: `tiles_m` counts those cluster tiles (the last may reach past M).
pub(crate) fn emit_cluster_tile_counts(w: &mut Source, ir: &KernelIr, ctas: u32) {
    let (tm, tn) = (ir.tile_m * ctas, ir.tile_n);
    w.line(format!(
        "// tile rasterisation: groups of {GROUP_M} M-tiles share B tiles in L2"
    ));
    w.line(format!("const int tiles_m = (M + {tm} - 1) / {tm};"));
    w.line(format!("const int tiles_n = (N + {tn} - 1) / {tn};"));
}

/// `row0`/`col0` of output tile `pid` in the grouped order every GEMM pipeline shares: groups of
/// [`GROUP_M`] M-tiles walk N together, so they share B tiles in L2.
pub(crate) fn emit_tile_origin(w: &mut Source, ir: &KernelIr) {
    emit_cluster_tile_origin(w, ir, 1);
}

/// [`emit_tile_origin`] for clusters of `ctas` blocks along M: `pid` numbers cluster tiles
/// (`ctas` M-tiles by one N-tile, `tiles_m` counting them) in the same grouped order, and the
/// block of cluster rank `rank` takes its M-tile of the cluster's. One block (`ctas` 1) is
/// [`emit_tile_origin`].
pub(crate) fn emit_cluster_tile_origin(w: &mut Source, ir: &KernelIr, ctas: u32) {
    let (tm, tn) = (ir.tile_m, ir.tile_n);
    w.line(format!("const int group = {GROUP_M} * tiles_n;"));
    w.line(format!("const int first_m = (pid / group) * {GROUP_M};"));
    w.line(format!(
        "const int group_m = min(tiles_m - first_m, {GROUP_M});"
    ));
    if ctas > 1 {
        w.line(format!(
            "const int row0 = (first_m + (pid % group) % group_m) * {} + rank * {tm};",
            tm * ctas
        ));
    } else {
        w.line(format!(
            "const int row0 = (first_m + (pid % group) % group_m) * {tm};"
        ));
    }
    w.line(format!(
        "const int col0 = ((pid % group) / group_m) * {tn};"
    ));
}

/// The epilogue of one GEMM: applies the fused ops to groups of accumulator values and stores
/// them (row-major or into heads), predicated on the problem's edges. Every MMA lowering
/// hands it [`AccGroup`]s in its own accumulator layout.
#[derive(Clone)]
pub(crate) struct EpilogueStore<'a> {
    ir: &'a KernelIr,
    d: &'a dyn Dialect,
    ops: &'a [EpilogueOp],
    pair_store: bool,
    loads_operands: bool,
    /// Set by [`EpilogueStore::prefetch_bias`]: a C expression, in a group's scope, of the
    /// register holding that group's two bias values (low and high 16 bits).
    bias_pair: Option<String>,
}

impl<'a> EpilogueStore<'a> {
    pub(crate) fn new(
        ir: &'a KernelIr,
        d: &'a dyn Dialect,
        dst: Operand,
        ops: &'a [EpilogueOp],
    ) -> Result<EpilogueStore<'a>, CodegenError> {
        if dst != Operand::D {
            return Err(CodegenError::Unsupported(format!(
                "epilogue store to {}",
                dst.name()
            )));
        }
        Ok(EpilogueStore {
            ir,
            d,
            ops,
            pair_store: ir.variant.output.size_bytes() == 2 && ir.variant.align >= 2,
            loads_operands: ops
                .iter()
                .any(|o| matches!(o, EpilogueOp::BetaC | EpilogueOp::Residual)),
            bias_pair: None,
        })
    }

    /// Load this thread's bias values into registers where the caller emits it (before the
    /// mainloop, so the loads' latency hides behind it instead of stalling each group of the
    /// epilogue): `unsigned bias_pair[chunks]`, chunk `j` holding the two 16-bit values of
    /// columns `col0 + col(j)` and the next. Groups then read `bias_pair[slot]`, `slot` a C
    /// expression in their scope. Nothing is emitted (and groups load as before) unless the
    /// ops read a bias and the output is 16-bit, so that a pair fits one register.
    pub(crate) fn prefetch_bias(&mut self, w: &mut Source, chunks: u32, col: &str, slot: &str) {
        let out = self.ir.variant.output;
        if out.size_bytes() != 2 || !self.ops.contains(&EpilogueOp::Bias) {
            return;
        }
        w.line("// this thread's bias pairs, loaded ahead of the mainloop");
        w.line(format!("unsigned bias_pair[{chunks}];"));
        w.line("#pragma unroll");
        w.open(format!("for (int j = 0; j < {chunks}; ++j)"));
        w.line(format!("const int bc = col0 + {col};"));
        w.line(
            "bias_pair[j] = (unsigned)bias[min(bc, N - 1)] | ((unsigned)bias[min(bc + 1, N - 1)] << 16);",
        );
        w.close("");
        self.bias_pair = Some(format!("bias_pair[{slot}]"));
    }

    pub(crate) fn comment(&self, w: &mut Source) {
        w.line(format!(
            "// epilogue: alpha{} -> {}",
            self.ops
                .iter()
                .map(|o| format!(", {o}"))
                .collect::<String>(),
            self.ir.variant.output
        ));
    }

    /// `float v0, v1, ...`: the group's values with the ops applied; fused operands are read
    /// on row `row` (a C expression of a valid row).
    fn values(&self, w: &mut Source, g: &AccGroup, row: &str) {
        let (d, ops) = (self.d, self.ops);
        let out = self.ir.variant.output;
        for (k, reg) in g.regs.iter().enumerate() {
            w.line(format!("float v{k} = alpha * {reg};"));
            if !ops.is_empty() {
                // loads are clamped to a valid column; values past N are never stored
                w.line(format!("const long long ec{k} = min(cc + {k}, N - 1);"));
            }
            let c_at = format!("c[(long long){row} * ldc + ec{k}]");
            // a prefetched pair holds the group's first two columns; any further one loads
            let bias_at = match (&self.bias_pair, k) {
                (Some(pair), 0) => format!("(unsigned short)({pair} & 0xFFFFu)"),
                (Some(pair), 1) => format!("(unsigned short)({pair} >> 16)"),
                _ => format!("bias[ec{k}]"),
            };
            let res_at = format!("residual[(long long){row} * ldd + ec{k}]");
            let at = EpilogueOperands {
                c: &c_at,
                bias: &bias_at,
                residual: &res_at,
            };
            for op in ops {
                w.line(epilogue::apply(d, *op, &format!("v{k}"), out, &at));
            }
        }
    }

    /// Apply the ops to one group of two 16-bit outputs and write the pair to the staging tile
    /// at shared byte address `at` (rows past M compute on clamped operands; never stored).
    pub(crate) fn group_to_shared(
        &self,
        w: &mut Source,
        g: &AccGroup,
        at: &str,
    ) -> Result<(), CodegenError> {
        let out = self.ir.variant.output;
        if g.regs.len() != 2 || out.size_bytes() != 2 {
            return Err(CodegenError::Malformed(
                "a staged epilogue takes pairs of 16-bit outputs".into(),
            ));
        }
        w.line(format!("const int r = row0 + {};", g.row));
        w.line(format!("const int cc = col0 + {};", g.col));
        if self.loads_operands {
            w.line("const int rl = min(r, M - 1);");
        }
        self.values(w, g, if self.loads_operands { "rl" } else { "r" });
        w.line(format!(
            "asm volatile(\"st.shared.b32 [%0], %1;\" :: \"r\"({at}), \"r\"((unsigned){} | ((unsigned){} << 16)) : \"memory\");",
            self.d.to_storage(out, "v0"),
            self.d.to_storage(out, "v1")
        ));
        Ok(())
    }

    /// `const long long di`: the offset in D of element (`r`, `cc`), row-major or permuted into
    /// heads. Elements `cc .. cc + k` are contiguous in D when they stay within one head.
    pub(crate) fn destination(&self, w: &mut Source) {
        // destination of element (r, cc): row-major, or permuted into heads
        match self.ir.variant.store {
            Store::Rows => w.line("const long long di = (long long)r * ldd + cc;"),
            Store::Heads {
                heads,
                head_dim,
                seq,
            } => {
                let width = heads * head_dim;
                w.line(format!("const int hb = r / {seq}, hs = r % {seq};"));
                w.line(format!(
                    "const int hpart = cc / {width}, hrem = cc % {width};"
                ));
                w.line(format!(
                    "const long long di = (long long)hpart * ((long long)M * {width}) + (((long long)hb * {heads} + hrem / {head_dim}) * {seq} + hs) * {head_dim} + hrem % {head_dim};"
                ));
            }
        }
    }

    /// Apply the ops to one group and store it.
    pub(crate) fn group(&self, w: &mut Source, g: &AccGroup) -> Result<(), CodegenError> {
        let (ir, d) = (self.ir, self.d);
        let out = ir.variant.output;
        w.line(format!("const int r = row0 + {};", g.row));
        w.line(format!("const int cc = col0 + {};", g.col));
        w.open("if (r < M)");
        self.values(w, g, "r");
        self.destination(w);
        let store = |w: &mut Source, k: usize| {
            w.line(format!(
                "d[di + {k}] = {};",
                d.to_storage(out, &format!("v{k}"))
            ));
        };
        if self.loads_operands {
            w.line(format!(
                "if ({}) asm volatile(\"\" ::: \"memory\");",
                g.block_end
            ));
        }
        match (g.regs.len(), self.pair_store) {
            (2, true) => {
                w.open("if (cc + 1 < N)");
                w.line(format!(
                    "*(unsigned*)(d + di) = (unsigned){} | ((unsigned){} << 16);",
                    d.to_storage(out, "v0"),
                    d.to_storage(out, "v1")
                ));
                w.close("");
                w.open("else if (cc < N)");
                store(w, 0);
                w.close("");
            }
            (n, _) if n >= 1 => {
                for k in 0..n {
                    w.open(format!("if (cc + {k} < N)"));
                    store(w, k);
                    w.close("");
                }
            }
            _ => return Err(CodegenError::Malformed("empty accumulator group".into())),
        }
        w.close("");
        Ok(())
    }
}
