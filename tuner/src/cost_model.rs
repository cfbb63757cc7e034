//! The cost model the pruning stage ranks candidates with: for one config of one template on
//! one problem and device, an estimate of its run time from what can be known without
//! compiling it.
//!
//! Per op it counts the FLOPs the tiles execute (padding included) and the bytes they move,
//! then plays a roofline over the device's capabilities ([`DeviceCaps`]: SM count, dense f16
//! tensor throughput, DRAM bandwidth; the per-SM tensor rate is peak ÷ SMs, so the clock is
//! implicit) wave by wave:
//!
//! * **Occupancy**: blocks per SM from threads, shared memory and registers.
//! * **Tile and wave quantization**: `tiles` blocks run as full waves of `SMs × blocks/SM`
//!   and one partial wave whose SMs hold `ceil(rest / SMs)` blocks; a partial wave costs as
//!   long as its busiest SM. [`Estimate::wave_efficiency`] is `tiles ÷ (SMs × blocks/SM ×
//!   waves)`.
//! * **Per step of the main loop**: the longer of the tensor work (at a fraction of the peak
//!   that depends on the dispatch policy: warp `mma.sync`, warpgroup `wgmma` cooperative or
//!   pingpong) and feeding the operands from L2, slowed when the pipeline (`stages - 1` tiles
//!   in flight per block, times the blocks per SM) holds too few bytes to cover the memory
//!   latency.
//! * **Per wave**: pipeline fill and the epilogue's stores.
//! * Row-wise ops (layernorm, softmax, embedding) are bandwidth-bound: bytes per wave over
//!   the SMs' share of DRAM bandwidth (worse for narrow vectors and idle lanes), and never
//!   less than one row's latency.
//!
//! The whole is `max(Σ waves, compulsory bytes ÷ bandwidth) + launch overhead`. It is
//! deterministic, pure arithmetic (no I/O, no code generation) and only as good as a ranking
//! needs: the candidates it keeps are still compiled, verified and timed, and
//! `tessera tune --prune-audit` measures how often it would have dropped the true winner.
//!
//! Constants that [`DeviceCaps`] does not carry (L2 bandwidth, memory latency, launch
//! overhead, per-policy tensor efficiency) are named below with the figures they assume.

use tessera_dsl::{
    BuildError, Config, ConsumerSchedule, DeviceCaps, EpilogueOp, GemmPipeline, GemmTile, Problem,
    Target, Template,
};

/// Kernel launch and prologue, seconds.
const LAUNCH_S: f64 = 3e-6;
/// DRAM/L2 latency, seconds (first bytes of a tile to shared memory).
const MEM_LATENCY_S: f64 = 0.8e-6;
/// The time a ring's bytes in flight must cover to keep the L2 feed busy, seconds: latency
/// plus the jitter of many SMs contending (deep rings win on Hopper in measurements).
const RING_COVER_S: f64 = 1.5e-6;
/// L2 → SM bandwidth as a multiple of DRAM bandwidth (not in [`DeviceCaps`]; about 2× on
/// A100/H100-class parts).
const L2_OVER_DRAM: f64 = 2.0;
/// Fixed cost of one attention main-loop step (barriers, online-softmax rescale), seconds.
const ATTENTION_STEP_S: f64 = 0.05e-6;
/// Split-KV's combine: two cluster barriers and each block's partial softmax read back through
/// distributed shared memory, seconds.
const SPLIT_COMBINE_S: f64 = 2.0e-6;
/// Split-K's fixed cost beside the partials' transfer: cluster launch and three cluster
/// barriers, seconds (a split kernel took about 2 µs more than a whole-K one with the same
/// blocks on the H200, 21e2dad).
const SPLIT_K_COMBINE_S: f64 = 2.0e-6;
/// Fixed cost of one GEMM main-loop step (barrier or mbarrier wait, address updates), seconds:
/// deeper K steps amortise it.
const GEMM_STEP_S: f64 = 0.02e-6;
/// A TMA-stored tile's fence, warpgroup barrier and bulk-copy issue, seconds per wave: what
/// a block pays before its stores run on their own (on the H200 a TMA store cost the
/// one-tile-per-block 384-row GEMMs 0.3-0.4 µs and won 1-4 % where blocks walk several
/// tiles, 3682b2e).
const TMA_STORE_S: f64 = 0.35e-6;
/// The part of a TMA-stored tile's write the block still waits for: the rest overlaps the
/// next tile's mainloop (the last wave's has no next tile and is waited for whole).
const TMA_STORE_EXPOSED: f64 = 0.5;
/// A B-multicast cluster's fixed cost per wave, seconds: cluster launch, the cluster barriers at
/// its start and end and the remote releases of each stage (on the H200 one-tile-per-block
/// kernels took 0.5-1.9 us longer than their plain twins, 08afa7a).
const MULTICAST_S: f64 = 1.0e-6;
/// Threads and blocks one SM (CU) holds at most.
const THREADS_PER_SM: u32 = 2048;
const BLOCKS_PER_SM: u32 = 32;
/// Shared memory the driver reserves per block, bytes.
const SMEM_RESERVED: u32 = 1024;
/// Registers a Hopper consumer / producer thread keeps after `setmaxnreg`.
const CONSUMER_REGS: u32 = 232;
const PRODUCER_REGS: u32 = 40;
/// Registers a thread needs besides its accumulators (addresses, fragments, loop state).
const OVERHEAD_REGS: u32 = 64;

/// Which main loop a candidate runs: the dispatch policy. The pruning stage keeps at least
/// one candidate of each policy present, so the model cannot starve a path (e.g. the Hopper
/// TMA pipeline) whose constants it gets wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Dispatch {
    /// `cp.async` / LDS multistage ring, warp-level `mma.sync` or MFMA.
    Multistage,
    /// sm_90a TMA + mbarrier ring, consumer warpgroups sharing one tile.
    TmaCooperative,
    /// sm_90a TMA + mbarrier ring, two consumer warpgroups on alternate tiles.
    TmaPingpong,
    /// Fused attention: Q block resident, K/V blocks through a ring.
    FusedAttention,
    /// sm_90a fused attention: TMA producer warpgroup, `wgmma` consumer warpgroups.
    TmaAttention,
    /// Row-wise kernels (layernorm, softmax, embedding).
    RowWise,
}

impl Dispatch {
    pub fn as_str(self) -> &'static str {
        match self {
            Dispatch::Multistage => "multistage",
            Dispatch::TmaCooperative => "tma_cooperative",
            Dispatch::TmaPingpong => "tma_pingpong",
            Dispatch::FusedAttention => "fused_attention",
            Dispatch::TmaAttention => "tma_attention",
            Dispatch::RowWise => "row_wise",
        }
    }
}

impl std::fmt::Display for Dispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The model's verdict on one candidate.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Estimate {
    /// Estimated time per launch, milliseconds.
    pub ms: f64,
    pub dispatch: Dispatch,
    /// FLOPs the tiles execute, padding included (≥ the problem's).
    pub flops: f64,
    /// Compulsory DRAM bytes.
    pub bytes: f64,
    /// Blocks launched.
    pub tiles: u64,
    /// The block's tile: output rows × columns (GEMM), queries × keys per step (attention),
    /// rows × threads per row (row-wise ops). Pruning keeps few candidates per tile.
    pub tile: (u64, u64),
    /// Blocks one SM holds at once.
    pub blocks_per_sm: u32,
    /// Waves, the last possibly partial.
    pub waves: u64,
    /// `tiles ÷ (SMs × blocks/SM × waves)`: 1 when every wave is full.
    pub wave_efficiency: f64,
}

/// Why a candidate has no estimate (a template the model does not know how to read, or a
/// config the template cannot build). The pruning stage ranks such a candidate last.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CostError {
    #[error("config of `{template}` has no parameter `{param}`")]
    MissingParam {
        template: String,
        param: &'static str,
    },
    #[error("config of `{template}`: parameter `{param}` = {value} is not a positive size")]
    BadParam {
        template: String,
        param: &'static str,
        value: i64,
    },
    #[error("template `{template}` ({op}) does not compute a {problem} problem")]
    OpMismatch {
        template: String,
        op: &'static str,
        problem: &'static str,
    },
    #[error("the cost model cannot read `{template}`: {why}")]
    Unmodelled { template: String, why: String },
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// The device as the model sees it.
#[derive(Debug, Clone, Copy)]
struct Machine {
    target: Target,
    sm_count: u32,
    /// Dense f16 FLOP/s of one SM.
    sm_flops: f64,
    /// DRAM bytes/s of the whole device, and one SM's share of it and of L2.
    dram: f64,
    dram_per_sm: f64,
    l2_per_sm: f64,
    smem_per_sm: u32,
    regs_per_sm: u32,
    regs_per_thread: u32,
    warp_size: u32,
}

impl Machine {
    fn of(caps: &DeviceCaps) -> Machine {
        let sm_count = caps.sm_count.max(1);
        let sms = f64::from(sm_count);
        let dram = caps.mem_bandwidth_gbs.max(1.0) * 1e9;
        Machine {
            target: caps.target,
            sm_count,
            sm_flops: caps.peak_tflops_f16.max(1e-3) * 1e12 / sms,
            dram,
            dram_per_sm: dram / sms,
            l2_per_sm: L2_OVER_DRAM * dram / sms,
            smem_per_sm: caps.smem_per_block.saturating_add(SMEM_RESERVED),
            regs_per_sm: caps.regs_per_sm.max(1),
            regs_per_thread: caps.regs_per_thread.max(1),
            warp_size: caps.warp_size.max(1),
        }
    }

    /// Blocks of this shape one SM holds (at least 1: validation has already refused configs
    /// that do not fit at all).
    fn blocks_per_sm(&self, threads: u32, smem: u32, regs_per_thread: u32) -> u32 {
        let threads = threads.max(1);
        let by_threads = THREADS_PER_SM / threads;
        let by_smem = self.smem_per_sm / smem.saturating_add(SMEM_RESERVED).max(1);
        let regs = regs_per_thread.min(self.regs_per_thread).max(1);
        let by_regs = self.regs_per_sm / regs.saturating_mul(threads).max(1);
        by_threads.min(by_smem).min(by_regs).clamp(1, BLOCKS_PER_SM)
    }

    /// Fraction of one SM's L2 feed rate a ring of `in_flight` bytes (over all its blocks)
    /// sustains: Little's law against the memory latency.
    fn latency_hiding(&self, in_flight: f64) -> f64 {
        let needed = self.l2_per_sm * RING_COVER_S;
        (in_flight / needed).clamp(0.05, 1.0)
    }
}

/// How `tiles` blocks spread over the SMs: the wave count, the efficiency, and the total
/// time given the time of one wave as a function of the blocks each SM runs in it.
fn waves(
    m: &Machine,
    tiles: u64,
    blocks_per_sm: u32,
    wave_s: impl Fn(u32) -> f64,
) -> (u64, f64, f64) {
    let tiles = tiles.max(1);
    let per_wave = u64::from(m.sm_count) * u64::from(blocks_per_sm);
    let full = tiles / per_wave;
    let rest = tiles % per_wave;
    let mut total = full as f64 * wave_s(blocks_per_sm);
    if rest > 0 {
        // the busiest SM of the last wave decides its length
        let busiest = rest.div_ceil(u64::from(m.sm_count));
        total += wave_s(u32::try_from(busiest).unwrap_or(blocks_per_sm));
    }
    let count = full + u64::from(rest > 0);
    let efficiency = tiles as f64 / (count as f64 * per_wave as f64);
    (count, efficiency, total)
}

fn param(t: &dyn Template, config: &Config, name: &'static str) -> Result<u64, CostError> {
    let v = config.get(name).ok_or_else(|| CostError::MissingParam {
        template: t.name().to_string(),
        param: name,
    })?;
    u64::try_from(v)
        .ok()
        .filter(|&x| x > 0)
        .ok_or_else(|| CostError::BadParam {
            template: t.name().to_string(),
            param: name,
            value: v,
        })
}

fn u32_of(x: u64) -> u32 {
    u32::try_from(x).unwrap_or(u32::MAX)
}

/// Estimate one config of `t` for `problem` on a device with `caps`.
pub fn estimate(
    t: &dyn Template,
    config: &Config,
    problem: &Problem,
    caps: &DeviceCaps,
) -> Result<Estimate, CostError> {
    if t.op() != problem.op() {
        return Err(CostError::OpMismatch {
            template: t.name().to_string(),
            op: t.op().name(),
            problem: problem.op().name(),
        });
    }
    let m = Machine::of(caps);
    match problem {
        Problem::Gemm(_) => gemm(t, config, problem, &m),
        Problem::Attention(_) => attention(t, config, problem, &m),
        Problem::Layernorm(_) | Problem::Softmax(_) | Problem::Embedding(_) => {
            rows(t, config, problem, &m)
        }
    }
}

/// Fraction of the tensor peak a warp-level (`mma.sync` / MFMA) main loop sustains when fed,
/// for a warp tile of `wm × wn`: small warp tiles re-read shared memory for every MMA.
fn warp_mma_efficiency(target: Target, wm: f64, wn: f64) -> f64 {
    let base = match target {
        // mma.sync reaches about 60 % of what wgmma does on Hopper
        Target::Sm90a => 0.6,
        Target::Sm80 => 0.85,
        Target::Gfx90a | Target::Gfx942 => 0.75,
    };
    // operand bytes per MMA relative to a 64×64 warp tile
    let reuse = ((wm * wn / (wm + wn)) / 32.0).clamp(0.05, 1.0);
    base * reuse.sqrt()
}

fn gemm(
    t: &dyn Template,
    config: &Config,
    problem: &Problem,
    m: &Machine,
) -> Result<Estimate, CostError> {
    let Problem::Gemm(g) = problem else {
        unreachable!("gemm() is called for GEMM problems only")
    };
    let (tm, tn, tk) = (
        param(t, config, "tile_m")?,
        param(t, config, "tile_n")?,
        param(t, config, "tile_k")?,
    );
    let (wm, wn) = (param(t, config, "warps_m")?, param(t, config, "warps_n")?);
    let stages = param(t, config, "stages")?;
    let tile = GemmTile {
        tile_m: u32_of(tm),
        tile_n: u32_of(tn),
        tile_k: u32_of(tk),
        warps: u32_of(wm * wn),
        stages: u32_of(stages),
        split_k: u32_of(param(t, config, "split_k")?),
        bulk_store: config.get("tma_store") == Some(1),
        multicast: u32_of(param(t, config, "multicast").unwrap_or(1)),
    };
    let v = &config.variant;
    let elem = v.input.size_bytes() as f64;
    let out = v.output.size_bytes() as f64;
    let (dispatch, threads, smem, regs, mma_eff, feed_eff) =
        match GemmPipeline::select(m.target, &tile, v) {
            GemmPipeline::Warpspecialized(plan) => {
                let (dispatch, eff) = match plan.schedule {
                    ConsumerSchedule::Cooperative => (Dispatch::TmaCooperative, 0.80),
                    ConsumerSchedule::Pingpong => (Dispatch::TmaPingpong, 0.90),
                };
                // wgmma with a narrow N issues more instructions per FLOP
                let narrow = (f64::from(plan.wg_n.min(128)) / 128.0).powf(0.3);
                let regs = (CONSUMER_REGS * plan.consumers + PRODUCER_REGS) / (plan.consumers + 1);
                (
                    dispatch,
                    plan.threads(),
                    plan.smem_bytes(&tile, v),
                    regs,
                    eff * narrow,
                    1.0,
                )
            }
            GemmPipeline::Multistage => {
                let ir = t.build(config)?;
                let threads = ir.threads(m.warp_size);
                let regs = ir.acc_per_thread(m.warp_size) + OVERHEAD_REGS;
                let eff = warp_mma_efficiency(m.target, (tm / wm) as f64, (tn / wn) as f64);
                (
                    Dispatch::Multistage,
                    threads,
                    ir.smem_bytes(),
                    regs,
                    eff,
                    1.0,
                )
            }
        };
    let bps = m.blocks_per_sm(threads, smem, regs);
    let tiles = g.m.div_ceil(tm) * g.n.div_ceil(tn) * g.batch.max(1);
    let k_steps = g.k.div_ceil(tk);
    // split-K: `split` blocks per tile, each walking its share of the K steps, then the
    // cluster's partials read into the first block
    let split = u64::from(tile.split_k.max(1));
    // B multicast: clusters take whole groups of M-tiles (the last may reach past M)
    let mc_ctas = u64::from(tile.multicast.max(1));
    let cluster_tiles =
        g.m.div_ceil(tm).div_ceil(mc_ctas) * mc_ctas * g.n.div_ceil(tn) * g.batch.max(1);
    let (blocks, block_steps) = (cluster_tiles * split, k_steps.div_ceil(split));
    let (tm, tn, tk) = (tm as f64, tn as f64, tk as f64);
    let combine = if split > 1 {
        SPLIT_K_COMBINE_S + (split - 1) as f64 * tm * tn * 4.0 / m.l2_per_sm
    } else {
        0.0
    };
    let stage_bytes = (tm + tn) * tk * elem;
    // what one block copies of a stage through L2: B multicast over a cluster copies a share
    // (an upper bound on its gain: the H200 measured -2..+1 % where blocks walk several tiles,
    // 08afa7a, and it is offered nowhere else; the pruned tune keeps the twins and times them)
    let mc = f64::from(tile.multicast.max(1));
    let copied_bytes = (tm + tn / mc) * tk * elem;
    // C and a residual are read beside D's store
    let extra = v
        .epilogue
        .iter()
        .filter(|e| matches!(e, EpilogueOp::BetaC | EpilogueOp::Residual))
        .count() as f64;
    // a wave's epilogue stores, `b` blocks per SM
    let stores_s = |b: u32| {
        let epilogue = tm * tn * out * (1.0 + extra) * f64::from(b) / m.dram_per_sm;
        if dispatch == Dispatch::TmaPingpong {
            0.3 * epilogue // overlapped with the other consumer's main loop
        } else {
            epilogue
        }
    };
    let wave_s = |b: u32| {
        let per_sm = f64::from(b);
        let hide = m.latency_hiding((stages as f64 - 1.0).max(0.5) * stage_bytes * per_sm);
        let compute = 2.0 * tm * tn * tk * per_sm / (m.sm_flops * mma_eff);
        let feed = copied_bytes * per_sm / (m.l2_per_sm * hide * feed_eff);
        let epilogue = if tile.bulk_store {
            TMA_STORE_EXPOSED * stores_s(b) + TMA_STORE_S
        } else {
            stores_s(b)
        };
        let cluster = if mc > 1.0 { MULTICAST_S } else { 0.0 };
        block_steps as f64 * (compute.max(feed) + GEMM_STEP_S)
            + MEM_LATENCY_S
            + epilogue
            + combine
            + cluster
    };
    let (count, efficiency, mut total) = waves(m, blocks, bps, wave_s);
    if tile.bulk_store {
        // the last wave's TMA stores overlap no further mainloop
        total += (1.0 - TMA_STORE_EXPOSED) * stores_s(bps);
    }
    let flops = 2.0 * tiles as f64 * tm * tn * (k_steps as f64 * tk);
    Ok(finish(
        dispatch,
        (tm as u64, tn as u64),
        flops,
        problem.bytes(),
        blocks,
        bps,
        count,
        efficiency,
        total,
        m,
    ))
}

fn attention(
    t: &dyn Template,
    config: &Config,
    problem: &Problem,
    m: &Machine,
) -> Result<Estimate, CostError> {
    let Problem::Attention(a) = problem else {
        unreachable!("attention() is called for attention problems only")
    };
    let bq = param(t, config, "block_q")?;
    let bkv = param(t, config, "block_kv")?;
    let stages = param(t, config, "stages")? as f64;
    let ir = t.build(config)?;
    let tile = tessera_dsl::AttentionTile::of(config);
    let hopper = tessera_dsl::AttentionPipeline::select(m.target, &tile, &config.variant);
    // split-KV: `split` blocks per tile, each walking its share of the key blocks
    let mut split = 1;
    let (dispatch, bps, mma_eff) = match hopper {
        // one block of warpgroups per SM; wgmma from shared memory
        tessera_dsl::AttentionPipeline::Warpspecialized(plan) => {
            split = plan.split_kv.max(1);
            (Dispatch::TmaAttention, plan.blocks_per_sm, 0.75)
        }
        tessera_dsl::AttentionPipeline::Multistage => {
            let threads = ir.threads(m.warp_size);
            let regs = ir.acc_per_thread(m.warp_size) + OVERHEAD_REGS;
            (
                Dispatch::FusedAttention,
                m.blocks_per_sm(threads, ir.smem_bytes(), regs),
                warp_mma_efficiency(m.target, 64.0, 64.0),
            )
        }
    };
    let tiles = tessera_library::attention::attention_tiles(&tile, a).max(1);
    let mut kv_steps = a.seq_kv.div_ceil(bkv) as f64;
    if a.mask == tessera_dsl::Mask::Causal {
        kv_steps = (kv_steps / 2.0).ceil().max(1.0);
    }
    let flops = 4.0 * tiles as f64 * bq as f64 * (kv_steps * bkv as f64) * a.head_dim as f64;
    let blocks = tiles * u64::from(split);
    let (combine, kv_steps) = if split > 1 {
        (SPLIT_COMBINE_S, (kv_steps / f64::from(split)).ceil())
    } else {
        (0.0, kv_steps)
    };
    let (bq, bkv, d) = (bq as f64, bkv as f64, a.head_dim as f64);
    let elem = a.dtype.size_bytes() as f64;
    // exp and rescale cost beside the two products; the block's occupancy and ring decide
    // the rest
    let eff = mma_eff / (1.0 + 16.0 / d);
    let step_bytes = 2.0 * bkv * d * elem;
    let wave_s = |b: u32| {
        let b = f64::from(b);
        let hide = m.latency_hiding((stages - 1.0).max(0.5) * step_bytes * b);
        let compute = 4.0 * bq * bkv * d * b / (m.sm_flops * eff);
        let feed = step_bytes * b / (m.l2_per_sm * hide);
        let fill = MEM_LATENCY_S + bq * d * elem * b / m.l2_per_sm;
        let store = bq * d * elem * b / m.dram_per_sm;
        kv_steps * (compute.max(feed) + ATTENTION_STEP_S) + fill + store + combine
    };
    let (count, efficiency, total) = waves(m, blocks, bps, wave_s);
    Ok(finish(
        dispatch,
        (bq as u64, bkv as u64),
        flops,
        problem.bytes(),
        blocks,
        bps,
        count,
        efficiency,
        total,
        m,
    ))
}

fn rows(
    t: &dyn Template,
    config: &Config,
    problem: &Problem,
    m: &Machine,
) -> Result<Estimate, CostError> {
    let n_rows = match problem {
        Problem::Layernorm(l) => l.rows,
        Problem::Softmax(s) => s.rows,
        Problem::Embedding(e) => e.tokens,
        Problem::Gemm(_) | Problem::Attention(_) => {
            unreachable!("rows() is called for row-wise problems only")
        }
    };
    let ir = t.build(config)?;
    let rt = ir.row_tile().ok_or_else(|| CostError::Unmodelled {
        template: t.name().to_string(),
        why: "a row-wise op whose kernel has no row tile".into(),
    })?;
    let extent = config.variant.extent.max(1);
    let chunks = rt.chunks(extent);
    let lanes = f64::from(rt.threads.max(1)) * f64::from(rt.vector.max(1));
    let util = f64::from(extent) / (f64::from(chunks) * lanes);
    let access = f64::from(rt.vector) * config.variant.input.size_bytes() as f64;
    let vector_eff = match access as u32 {
        16.. => 1.0,
        8..=15 => 0.9,
        _ => 0.75,
    };
    let threads = ir.threads(m.warp_size);
    let regs = chunks * rt.vector + OVERHEAD_REGS / 2;
    let bps = m.blocks_per_sm(threads, ir.smem_bytes(), regs);
    let rows_per_block = u64::from(rt.rows.max(1));
    let tiles = n_rows.max(1).div_ceil(rows_per_block);
    let bytes = problem.bytes();
    let row_bytes = bytes / n_rows.max(1) as f64;
    // one row: its loads, two reductions (shuffles, and a shared-memory round across warps)
    let shuffles = f64::from(rt.threads.max(1)).log2().ceil();
    let cross_warp = if rt.threads > m.warp_size {
        0.1e-6
    } else {
        0.0
    };
    let row_latency =
        MEM_LATENCY_S + 2.0 * (shuffles * 0.02e-6 + cross_warp) + f64::from(chunks) * 0.01e-6;
    let wave_s = |b: u32| {
        let in_wave = f64::from(b) * rows_per_block as f64 * row_bytes;
        let rate = m.dram_per_sm * vector_eff * (0.5 + 0.5 * util);
        (in_wave / rate).max(row_latency)
    };
    let (count, efficiency, total) = waves(m, tiles, bps, wave_s);
    Ok(finish(
        Dispatch::RowWise,
        (rows_per_block, u64::from(rt.threads)),
        problem.flops(),
        bytes,
        tiles,
        bps,
        count,
        efficiency,
        total,
        m,
    ))
}

#[allow(clippy::too_many_arguments)]
fn finish(
    dispatch: Dispatch,
    tile: (u64, u64),
    flops: f64,
    bytes: f64,
    tiles: u64,
    blocks_per_sm: u32,
    waves: u64,
    wave_efficiency: f64,
    waves_s: f64,
    m: &Machine,
) -> Estimate {
    let s = waves_s.max(bytes / m.dram) + LAUNCH_S;
    Estimate {
        ms: s * 1e3,
        dispatch,
        flops,
        bytes,
        tiles,
        tile,
        blocks_per_sm,
        waves,
        wave_efficiency,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_dsl::{AttentionProblem, GemmProblem, GpuModel, LayernormProblem, Mask};

    fn template(name: &str) -> &'static dyn Template {
        tessera_library::templates();
        tessera_dsl::find(name).expect("template registered")
    }

    fn gemm_problem(m: u64, n: u64, k: u64) -> Problem {
        let mut g = GemmProblem::new(m, n, k);
        g.epilogue = vec![EpilogueOp::Bias];
        Problem::Gemm(g)
    }

    /// Every valid config of `t` for `p`, with its estimate.
    fn all(t: &'static dyn Template, p: &Problem, caps: &DeviceCaps) -> Vec<(Config, Estimate)> {
        t.space()
            .enumerate()
            .into_iter()
            .filter_map(|v| t.config(&v, p).ok())
            .filter(|c| t.validate(c, p, caps).is_ok())
            .map(|c| {
                let e =
                    estimate(t, &c, p, caps).unwrap_or_else(|e| panic!("{}: {e}", c.kernel_name()));
                (c, e)
            })
            .collect()
    }

    #[test]
    fn every_valid_bert_candidate_gets_a_finite_estimate_above_the_roofline() {
        let problems = [
            (template("gemm"), gemm_problem(128, 2304, 768)),
            (template("gemm"), gemm_problem(12288, 768, 3072)),
            (template("attention"), {
                let mut a = AttentionProblem::new(8, 12, 384, 64);
                a.mask = Mask::Padding;
                Problem::Attention(a)
            }),
            (template("layernorm"), {
                let mut l = LayernormProblem::new(4096, 768);
                l.residual = true;
                Problem::Layernorm(l)
            }),
        ];
        for model in [GpuModel::H200, GpuModel::A100, GpuModel::Mi300] {
            let caps = model.caps();
            for (t, p) in &problems {
                let all = all(*t, p, &caps);
                assert!(!all.is_empty(), "{model} {p}");
                let roof = (p.flops() / (caps.peak_tflops_f16 * 1e12))
                    .max(p.bytes() / (caps.mem_bandwidth_gbs * 1e9))
                    * 1e3;
                for (c, e) in &all {
                    let name = c.kernel_name();
                    assert!(
                        e.ms.is_finite() && e.ms > roof,
                        "{model} {name}: {e:?} vs {roof}"
                    );
                    assert!(e.flops >= p.flops() * 0.999, "{name}: {e:?}");
                    assert!(e.wave_efficiency > 0.0 && e.wave_efficiency <= 1.0, "{e:?}");
                    assert!(
                        e.blocks_per_sm >= 1 && e.waves >= 1 && e.tiles >= 1,
                        "{e:?}"
                    );
                    assert_eq!(Ok(*e), estimate(*t, c, p, &caps), "deterministic");
                }
            }
        }
    }

    /// Split-KV puts more SMs on a decode's K/V stream: on the H200 a single sequence's decode
    /// (16 tiles) is estimated faster split than whole, and a problem that fills the device
    /// offers no split config at all.
    #[test]
    fn split_kv_is_estimated_faster_for_a_lone_decode() {
        let caps = GpuModel::H200.caps();
        let t = template("attention");
        let mut a = AttentionProblem::new(1, 16, 1, 128);
        a.seq_kv = 16384;
        let p = Problem::Attention(a);
        let all = all(t, &p, &caps);
        let best = |split: bool| {
            all.iter()
                .filter(|(c, _)| (c.get("split_kv").unwrap_or(1) > 1) == split)
                .map(|(_, e)| e.ms)
                .fold(f64::INFINITY, f64::min)
        };
        assert!(
            best(true) < 0.5 * best(false),
            "{} vs {}",
            best(true),
            best(false)
        );
        let split4 = all
            .iter()
            .find(|(c, _)| c.get("split_kv") == Some(4))
            .expect("a split-4 config");
        assert_eq!(split4.1.tiles, 64, "{:?}", split4.1);
        let mut prefill = AttentionProblem::new(4, 16, 4096, 128);
        prefill.seq_kv = 4096;
        let prefill = Problem::Attention(prefill);
        assert!(super::tests::all(t, &prefill, &caps)
            .iter()
            .all(|(c, _)| c.get("split_kv") == Some(1)));
    }

    #[test]
    fn hopper_dispatch_policies_are_told_apart_and_preferred_for_big_gemms() {
        let caps = GpuModel::H200.caps();
        let t = template("gemm");
        let p = gemm_problem(12288, 3072, 768);
        // K-major B, 16-byte rows: every config gets the TMA pipeline, both schedules occur
        assert_eq!(
            all_dispatches(t, &p, &caps),
            vec![Dispatch::TmaCooperative, Dispatch::TmaPingpong]
        );
        // B row-major: the multistage pipeline only, on sm_90a as on sm_80
        let mut rrr = GemmProblem::new(12288, 3072, 768);
        rrr.layout_b = tessera_dsl::Layout::Row;
        let rrr = Problem::Gemm(rrr);
        assert_eq!(all_dispatches(t, &rrr, &caps), vec![Dispatch::Multistage]);
        assert_eq!(
            all_dispatches(t, &p, &GpuModel::A100.caps()),
            vec![Dispatch::Multistage]
        );
        // the same tile is faster on the TMA pipeline than with mma.sync
        let best = |p: &Problem| {
            all(t, p, &caps)
                .into_iter()
                .map(|(_, e)| e.ms)
                .min_by(f64::total_cmp)
                .unwrap()
        };
        assert!(best(&p) < best(&rrr), "{} vs {}", best(&p), best(&rrr));
    }

    fn all_dispatches(t: &'static dyn Template, p: &Problem, caps: &DeviceCaps) -> Vec<Dispatch> {
        let mut d: Vec<Dispatch> = all(t, p, caps)
            .into_iter()
            .map(|(_, e)| e.dispatch)
            .collect();
        d.sort();
        d.dedup();
        d
    }

    /// The H200 estimate of the GEMM config with these point values, ms.
    fn h200_gemm_ms(values: [i64; 10], p: &Problem) -> f64 {
        let t = template("gemm");
        let c = t.config(&values, p).unwrap();
        estimate(t, &c, p, &GpuModel::H200.caps()).unwrap().ms
    }

    /// A TMA store pays where a block's next tile hides its writes (many waves of wide
    /// tiles), and costs its fence and barrier where each block stores one tile.
    #[test]
    fn a_tma_store_is_estimated_to_pay_only_across_waves() {
        let ms = h200_gemm_ms;
        let (staged, bulk) = (
            [128, 256, 64, 2, 4, 3, 16, 1, 0, 1],
            [128, 256, 64, 2, 4, 3, 16, 1, 1, 1],
        );
        let big = gemm_problem(12288, 3072, 768);
        assert!(ms(bulk, &big) < ms(staged, &big));
        let one_wave = gemm_problem(384, 768, 768);
        let (staged, bulk) = (
            [64, 64, 64, 2, 2, 8, 16, 1, 0, 1],
            [64, 64, 64, 2, 2, 8, 16, 1, 1, 1],
        );
        assert!(ms(bulk, &one_wave) > ms(staged, &one_wave));
    }

    /// B multicast: clusters take M-tiles in pairs, so an odd count runs one more block per
    /// N-tile (its second block past M), and each cluster pays its launch and barriers.
    #[test]
    fn multicast_clusters_take_m_tiles_in_pairs() {
        let t = template("gemm");
        let caps = GpuModel::H200.caps();
        let p = gemm_problem(1100, 4096, 264);
        let est = |mc: i64| {
            let c = t
                .config(&[128, 256, 64, 2, 4, 3, 16, 1, 0, mc], &p)
                .unwrap();
            estimate(t, &c, &p, &caps).unwrap()
        };
        // 9 M-tiles by 16 N-tiles; with pairs, 10 by 16
        assert_eq!(est(1).tiles, 144);
        assert_eq!(est(2).tiles, 160);
    }

    #[test]
    fn a_partial_wave_costs_a_wave() {
        let caps = GpuModel::H200.caps();
        let t = template("gemm");
        let c = |p: &Problem| t.config(&[128, 128, 64, 2, 2, 4, 16, 1, 0, 1], p).unwrap();
        // 132 tiles of 128x128 fill one wave of one block per SM; 133 need a second wave
        let full = gemm_problem(128 * 12, 128 * 11, 768);
        let spill = gemm_problem(128 * 12 + 1, 128 * 11, 768);
        let (a, b) = (
            estimate(t, &c(&full), &full, &caps).unwrap(),
            estimate(t, &c(&spill), &spill, &caps).unwrap(),
        );
        assert_eq!(a.tiles, 132);
        assert_eq!(b.tiles, 143);
        if a.blocks_per_sm == 1 {
            assert_eq!((a.waves, b.waves), (1, 2));
            assert!(b.ms > 1.5 * a.ms, "{a:?} {b:?}");
            assert!(b.wave_efficiency < 0.6, "{b:?}");
        }
        assert!(b.ms > a.ms);
    }

    #[test]
    fn a_wrong_op_or_missing_parameter_is_an_error_not_a_panic() {
        let caps = GpuModel::H100.caps();
        let t = template("gemm");
        let p = gemm_problem(64, 64, 64);
        let mut c = t.config(&[64, 64, 32, 2, 2, 2, 16, 1, 0, 1], &p).unwrap();
        let ln = Problem::Layernorm(LayernormProblem::new(8, 768));
        assert!(matches!(
            estimate(t, &c, &ln, &caps),
            Err(CostError::OpMismatch { .. })
        ));
        c.params.retain(|(n, _)| n != "stages");
        assert!(matches!(
            estimate(t, &c, &p, &caps),
            Err(CostError::MissingParam {
                param: "stages",
                ..
            })
        ));
        let mut c = t.config(&[64, 64, 32, 2, 2, 2, 16, 1, 0, 1], &p).unwrap();
        c.params[0].1 = -64;
        assert!(matches!(
            estimate(t, &c, &p, &caps),
            Err(CostError::BadParam { .. })
        ));
    }
}
