//! The attention dispatch policy: which mainloop a fused-attention kernel gets on a target.
//!
//! - [`AttentionPipeline::Multistage`]: every warp copies Q, K and V with per-thread
//!   asynchronous copies into padded shared tiles and runs warp-level MMAs (`mma.sync`, MFMA),
//!   FlashAttention-2 style. Every target.
//! - [`AttentionPipeline::Warpspecialized`]: sm_90a only, FlashAttention-3 style. A producer
//!   warpgroup loads Q once and K/V per key block with TMA into an mbarrier ring; each consumer
//!   warpgroup owns 64 query rows, computes `S = Q·Kᵀ` with `wgmma` from shared memory, the
//!   online softmax in registers, and `O += P·V` with P taken from registers (the RS form of
//!   `wgmma`, V read N-major through its descriptor).
//!
//! The Hopper pipeline's grid follows the config's [`AttentionSchedule`] (the template's
//! `persistent` knob, sm_90a only): one tile per block, or, for a plan that runs one block per
//! multiprocessor, persistent blocks walking the tiles.
//!
//! A one-tile-per-block Hopper plan may split each tile's keys over a cluster of 2, 4 or 8
//! blocks (the template's `split_kv` knob, sm_90a only): each block walks its share of the key
//! blocks and the cluster combines the partial softmaxes through distributed shared memory, so a
//! decode (a few query rows against thousands of keys, one tile per (batch, head)) streams K and
//! V with `split_kv` times as many multiprocessors. One consumer warpgroup only: the partial O
//! of its 64 rows (f32) is staged in the K/V ring once the last `P·V` has read it.
//!
//! A one-tile-per-block Hopper plan may also group heads (the template's `group_heads` knob,
//! sm_90a only): a tile's rows are then the query heads of one K/V head's group, head-major,
//! each with its queries (`heads / kv_heads × seq_q` rows per (K/V head, batch), contiguous in
//! `[batch, heads, seq_q, head_dim]`), so a grouped-query decode reads each K/V head once per
//! group instead of once per query head and fills more of a tile's 64 `wgmma` rows. Unmasked
//! or key-padded attention with O in `bhsd` only: a causal mask compares positions, which the
//! grouped rows do not keep in order.
//!
//! Both pipelines serve packed (padding-free, `thd`) batches, under either schedule: the
//! Hopper one maps the packed tensors token by token, taking the token count from the bound
//! buffer (`Extent::RegionLines`) and each sequence's offsets from `cu_seqlens_*`.
//!
//! A config the Hopper pipeline cannot serve keeps the multistage one, which runs on sm_90a too;
//! [`AttentionPipeline::hopper_plan`] says why. Pure arithmetic: no code generation, no device.

use super::register_split;
use crate::{Config, Mask, Swizzle, Target, Variant};

/// The attention geometry the policy looks at (from the template's config and the problem's
/// head size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionTile {
    pub block_q: u32,
    pub block_kv: u32,
    pub head_dim: u32,
    pub warps: u32,
    pub stages: u32,
    /// The grid schedule the config asks for.
    pub schedule: AttentionSchedule,
    /// Blocks (one cluster) sharing each tile's keys; 1: a block walks all of them.
    pub split_kv: u32,
    /// A tile's rows are a K/V group's query heads (each with its queries) rather than one
    /// query head's queries.
    pub group_heads: bool,
}

/// How an attention kernel's blocks map to its (query block, head, batch) tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttentionSchedule {
    /// One block per tile: a `ceil(seq_q / block_q) × heads × batch` grid.
    #[default]
    TilePerBlock,
    /// At most one block per multiprocessor, each walking the tiles `gridDim.x` apart, the
    /// producer prefetching the next tile's Q and K/V while the consumers finish the current
    /// one (the template's `persistent = 1`; only for plans that run one block per SM).
    Persistent,
}

impl AttentionSchedule {
    /// The schedule of the template's `persistent` knob value (0 or absent: one tile per block).
    pub fn of_knob(persistent: i64) -> AttentionSchedule {
        if persistent == 0 {
            AttentionSchedule::TilePerBlock
        } else {
            AttentionSchedule::Persistent
        }
    }
}

impl AttentionTile {
    /// The geometry of an attention config (`block_q`, `block_kv`, `warps`, `stages`; the head
    /// size from its variant) and its schedule (`persistent`, 0 when absent). A missing or
    /// out-of-range parameter reads as 0, which no plan accepts.
    pub fn of(config: &Config) -> AttentionTile {
        let u = |n: &str| u32::try_from(config.get(n).unwrap_or(0)).unwrap_or(0);
        AttentionTile {
            block_q: u("block_q"),
            block_kv: u("block_kv"),
            head_dim: config.variant.extent,
            warps: u("warps"),
            stages: u("stages"),
            schedule: AttentionSchedule::of_knob(config.get("persistent").unwrap_or(0)),
            split_kv: u32::try_from(config.get("split_kv").unwrap_or(1)).unwrap_or(0),
            group_heads: config.get("group_heads").unwrap_or(0) != 0,
        }
    }
}

/// The geometry of the warp-specialized attention kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionWarpgroupPlan {
    /// Consumer warpgroups, 64 query rows each; one more warpgroup produces.
    pub consumers: u32,
    pub block_q: u32,
    pub block_kv: u32,
    pub head_dim: u32,
    pub stages: u32,
    /// Swizzle of every shared tile: one line holds one panel row.
    pub swizzle: Swizzle,
    /// Head-dim elements per panel: tiles are stored as `head_dim / panel` column panels of
    /// `rows × panel` elements, each one TMA box (a box line may not exceed the swizzle span).
    pub panel: u32,
    /// Blocks resident per multiprocessor: 2 where one consumer's state fits half the register
    /// file and two blocks fit the shared memory, so one block's prologue, softmax and store
    /// hide behind the other's GEMMs (short sequences); then no register reallocation.
    pub blocks_per_sm: u32,
    /// One tile per block, or (one block per SM only) persistent blocks walking the tiles.
    pub schedule: AttentionSchedule,
    /// Blocks of one cluster sharing each tile's keys (1: no cluster); their partial softmaxes
    /// are combined through distributed shared memory.
    pub split_kv: u32,
    /// A tile's rows are the query heads of one K/V head's group, head-major.
    pub group_heads: bool,
}

/// Query rows one consumer warpgroup owns (the M of `wgmma`).
pub const ROWS_PER_CONSUMER: u32 = 64;
/// Registers one consumer thread may spend on S, O and P (of the 240 it gets with two
/// consumers, the rest going to addresses and softmax state).
const MAX_STATE_REGS: u32 = 176;
/// Registers a consumer thread keeps beside S, O and P (addresses, descriptors, softmax state,
/// loop counters). With three consumers (160 registers each) this lets S, O and P take 128:
/// 192 queries by 128-key blocks at head_dim 64 (and 64-key blocks at 128), which NVRTC 13.0
/// compiles without spills for every mask, persistent or not, on padded batches. On the H200
/// (5dcdf02, one benchmark run) they beat every plan a 64-register slack allowed: at head_dim
/// 64 by 8 % (B32 H12 S384, B8 H16 S2048) and 15 % (S2048 causal), at head_dim 128 by 2 %.
const STATE_SLACK_REGS: u32 = 32;
/// The slack of a persistent walk over a packed (`thd`) batch, which keeps each tile's
/// sequence bounds and offsets live besides: with 32, NVRTC 13.0 spilled 8 bytes (84 causal)
/// of the 192 × 128-key plans at head_dim 64, so these keep the 64 they had.
const PACKED_PERSISTENT_SLACK_REGS: u32 = 64;
/// Shared memory a block may use on sm_90a.
const SMEM_LIMIT: u32 = 227 * 1024;
/// Registers per thread when two 256-thread blocks share a multiprocessor (64K / 512); 48 of
/// them go to addresses, softmax state and loop counters, the rest may hold S, O and P.
const SHARED_SM_REGS: u32 = 128;

impl AttentionWarpgroupPlan {
    pub fn threads(&self) -> u32 {
        128 * (self.consumers + 1)
    }

    /// Registers a consumer thread gets and a producer thread keeps (`setmaxnreg`), or `None`
    /// where two blocks share a multiprocessor and every thread keeps its even share.
    pub fn register_split(&self) -> Option<(u32, u32)> {
        match self.blocks_per_sm {
            1 => register_split(self.consumers),
            _ => None,
        }
    }

    /// Bytes of one panel line (the swizzle span).
    pub fn line_bytes(&self) -> u32 {
        self.panel * 2
    }

    /// Bytes of the Q tile.
    pub fn q_bytes(&self) -> u32 {
        self.block_q * self.head_dim * 2
    }

    /// Bytes of one K (or V) stage.
    pub fn kv_bytes(&self) -> u32 {
        self.block_kv * self.head_dim * 2
    }

    /// Registers per consumer thread for S and O (f32) and P (two 16-bit values a register).
    pub fn state_regs(&self) -> u32 {
        let rows = ROWS_PER_CONSUMER;
        (rows * self.block_kv + rows * self.head_dim) / 128 + rows * self.block_kv / 256
    }

    /// Whether the consumers take turns issuing their GEMMs (pingpong: two consumers, named
    /// barriers 1 and 2), so one's softmax runs under the other's GEMMs.
    pub fn pingpong(&self) -> bool {
        self.consumers == 2
    }

    /// Whether a cluster of blocks shares each tile's keys.
    pub fn splits_keys(&self) -> bool {
        self.split_kv > 1
    }

    /// Bytes of one block's partial O (f32, 64 rows), staged at the K ring's start for the
    /// cluster's combine; the per-row max and sum (2 × 64 f32) go where Q was.
    pub fn partial_o_bytes(&self) -> u32 {
        ROWS_PER_CONSUMER * self.head_dim * 4
    }

    /// Whether blocks walk the tiles (persistent) rather than own one each.
    pub fn persistent(&self) -> bool {
        self.schedule == AttentionSchedule::Persistent
    }

    /// Dynamic shared memory: Q, the K and V stages, the barriers (Q full, and Q empty when
    /// persistent; full and empty of K and of V per stage) and slack to align the base to the
    /// swizzle atom at run time.
    pub fn smem_bytes(&self) -> u32 {
        self.q_bytes()
            + 2 * self.stages * self.kv_bytes()
            + 8 * (1 + u32::from(self.persistent()) + 4 * self.stages)
            + self.swizzle.atom_bytes()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionPipeline {
    Multistage,
    Warpspecialized(AttentionWarpgroupPlan),
}

impl AttentionPipeline {
    /// The policy: the Hopper pipeline wherever it applies on sm_90a, else the multistage one.
    pub fn select(target: Target, tile: &AttentionTile, variant: &Variant) -> AttentionPipeline {
        match target {
            Target::Sm90a => match Self::hopper_plan(tile, variant) {
                Ok(plan) => AttentionPipeline::Warpspecialized(plan),
                Err(_) => AttentionPipeline::Multistage,
            },
            Target::Sm80 | Target::Gfx90a | Target::Gfx942 => AttentionPipeline::Multistage,
        }
    }

    /// The warp-specialized plan of an attention kernel, or why it has none.
    pub fn hopper_plan(
        tile: &AttentionTile,
        variant: &Variant,
    ) -> Result<AttentionWarpgroupPlan, String> {
        if variant.input.size_bytes() != 2 || variant.output != variant.input {
            return Err(format!(
                "wgmma attention takes 16-bit inputs and stores O in the same dtype ({} -> {})",
                variant.input, variant.output
            ));
        }
        if variant.mask == Mask::Additive {
            return Err("an additive mask has no TMA path".into());
        }
        if !tile.warps.is_multiple_of(4) || tile.block_q != tile.warps * 16 {
            return Err(format!(
                "{} warps for {} query rows: each consumer warpgroup owns {ROWS_PER_CONSUMER} rows",
                tile.warps, tile.block_q
            ));
        }
        let consumers = tile.warps / 4;
        let (consumer_regs, _) = register_split(consumers)
            .ok_or_else(|| format!("{consumers} consumer warpgroups (1 to 3)"))?;
        let hd = tile.head_dim;
        if hd == 0 || !hd.is_multiple_of(16) || hd > 256 {
            return Err(format!("head_dim {hd} is not a multiple of 16 up to 256"));
        }
        if tile.block_kv == 0 || !tile.block_kv.is_multiple_of(16) || tile.block_kv > 256 {
            return Err(format!(
                "block_kv {} is not a multiple of 16 up to 256",
                tile.block_kv
            ));
        }
        if tile.stages < 2 {
            return Err("the K/V ring needs at least 2 stages".into());
        }
        let panel = [64, 32, 16]
            .into_iter()
            .find(|p| hd.is_multiple_of(*p))
            .unwrap_or(16);
        let swizzle = Swizzle::for_line_bytes(panel * 2)
            .ok_or_else(|| format!("head_dim {hd} has no swizzled panel"))?;
        let plan = AttentionWarpgroupPlan {
            consumers,
            block_q: tile.block_q,
            block_kv: tile.block_kv,
            head_dim: hd,
            stages: tile.stages,
            swizzle,
            panel,
            blocks_per_sm: 1,
            schedule: tile.schedule,
            split_kv: tile.split_kv,
            group_heads: tile.group_heads,
        };
        split_keys_check(&plan, variant)?;
        group_heads_check(&plan, variant)?;
        let slack = if plan.persistent() && variant.attention_packed() {
            PACKED_PERSISTENT_SLACK_REGS
        } else {
            STATE_SLACK_REGS
        };
        let budget = MAX_STATE_REGS.min(consumer_regs - slack);
        if plan.state_regs() > budget {
            return Err(format!(
                "S, O and P need {} registers per consumer thread (at most {budget})",
                plan.state_regs()
            ));
        }
        let smem = plan.smem_bytes();
        if smem > SMEM_LIMIT {
            return Err(format!("{smem} bytes of shared memory"));
        }
        if consumers == 1 && plan.state_regs() + 48 <= SHARED_SM_REGS && 2 * smem <= SMEM_LIMIT {
            if plan.persistent() {
                return Err(format!(
                    "a persistent schedule is for plans of one block per SM; one consumer with {} \
                     state registers runs two blocks per SM, one tile each",
                    plan.state_regs()
                ));
            }
            return Ok(AttentionWarpgroupPlan {
                blocks_per_sm: 2,
                ..plan
            });
        }
        Ok(plan)
    }
}

/// Clusters of at most 8 blocks are portable.
const MAX_SPLIT_KV: u32 = 8;

/// Whether a plan's `split_kv` is one the pipeline can run: a power of two up to
/// [`MAX_SPLIT_KV`], one tile per block, one consumer (the combine reads 64 rows per block), a
/// padded batch (a packed tile's key count is its sequence's), and a K/V ring large enough to
/// stage the partial O.
fn split_keys_check(plan: &AttentionWarpgroupPlan, variant: &Variant) -> Result<(), String> {
    let n = plan.split_kv;
    if n == 1 {
        return Ok(());
    }
    if n == 0 || !n.is_power_of_two() || n > MAX_SPLIT_KV {
        return Err(format!(
            "split_kv {n}: a cluster of 2, 4 or 8 blocks (at most {MAX_SPLIT_KV} are portable)"
        ));
    }
    if plan.persistent() {
        return Err(format!(
            "split_kv {n} splits one tile per cluster; a persistent schedule walks tiles instead"
        ));
    }
    if plan.consumers != 1 {
        return Err(format!(
            "split_kv {n} combines one consumer's 64 rows; {} consumers (block_q {}) are for \
             sequences with enough query blocks to fill the device",
            plan.consumers, plan.block_q
        ));
    }
    if variant.attention_packed() {
        return Err(format!(
            "split_kv {n} is for padded batches, not packed ones"
        ));
    }
    let ring = 2 * plan.stages * plan.kv_bytes();
    if plan.partial_o_bytes() > ring {
        return Err(format!(
            "split_kv {n}: the partial O ({} bytes) does not fit the K/V ring ({ring} bytes)",
            plan.partial_o_bytes()
        ));
    }
    Ok(())
}

/// Whether a plan that groups heads can run: one tile per block, a padded batch, no causal mask
/// (a tile's rows are several heads' queries, not one head's in order) and O in `bhsd` (where a
/// group's rows are contiguous).
fn group_heads_check(plan: &AttentionWarpgroupPlan, variant: &Variant) -> Result<(), String> {
    if !plan.group_heads {
        return Ok(());
    }
    if plan.persistent() {
        return Err("group_heads is for one tile per block, not a persistent schedule".into());
    }
    if variant.attention_packed() {
        return Err("group_heads is for padded batches, not packed ones".into());
    }
    if variant.mask == Mask::Causal {
        return Err(
            "group_heads mixes several heads' queries in a tile; a causal mask needs them in order"
                .into(),
        );
    }
    if variant.attention_layout() != Some(crate::problem::AttentionLayout::Bhsd) {
        return Err(format!(
            "group_heads stores a group's rows contiguously: O in bhsd, not {}",
            variant.layout
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;
    use proptest::prelude::*;

    fn variant(mask: Mask) -> Variant {
        Variant {
            input: DType::F16,
            acc: DType::F32,
            output: DType::F16,
            layout: "bhsd".into(),
            epilogue: vec![],
            align: 8,
            store: Default::default(),
            extent: 64,
            mask,
        }
    }

    fn tile(block_q: u32, block_kv: u32, head_dim: u32, warps: u32, stages: u32) -> AttentionTile {
        AttentionTile {
            block_q,
            block_kv,
            head_dim,
            warps,
            stages,
            schedule: AttentionSchedule::TilePerBlock,
            split_kv: 1,
            group_heads: false,
        }
    }

    /// Three consumers give S, O and P 128 registers (192 × 128-key blocks at head_dim 64),
    /// except on a persistent walk over a packed batch, which keeps its sequence bounds live.
    #[test]
    fn three_consumers_take_128_key_blocks_except_packed_persistent_walks() {
        let t = tile(192, 128, 64, 12, 2);
        let persistent = AttentionTile {
            schedule: AttentionSchedule::Persistent,
            ..t
        };
        let mut packed = variant(Mask::None);
        packed.layout = crate::problem::PACKED_LAYOUT.into();
        for (t, v) in [
            (t, variant(Mask::None)),
            (persistent, variant(Mask::Causal)),
            (t, packed.clone()),
        ] {
            let p = AttentionPipeline::hopper_plan(&t, &v).unwrap();
            assert_eq!((p.consumers, p.state_regs()), (3, 128));
        }
        let e = AttentionPipeline::hopper_plan(&persistent, &packed).unwrap_err();
        assert!(
            e.contains("need 128 registers per consumer thread (at most 96)"),
            "{e}"
        );
    }

    #[test]
    fn persistence_is_for_one_block_per_sm_plans() {
        let v = variant(Mask::Causal);
        let persistent = |t: AttentionTile| AttentionTile {
            schedule: AttentionSchedule::Persistent,
            ..t
        };
        let p = AttentionPipeline::hopper_plan(&persistent(tile(128, 128, 128, 8, 2)), &v).unwrap();
        assert_eq!(
            (p.blocks_per_sm, p.schedule),
            (1, AttentionSchedule::Persistent)
        );
        // one more barrier (Q empty) than the one-tile-per-block plan
        assert_eq!(p.smem_bytes(), 32768 + 131072 + 80 + 1024);
        let long =
            AttentionPipeline::hopper_plan(&persistent(tile(64, 128, 64, 4, 2)), &v).unwrap();
        assert!(long.persistent());
        // two blocks an SM: no persistent plan, and the reason says so
        let e =
            AttentionPipeline::hopper_plan(&persistent(tile(64, 64, 64, 4, 2)), &v).unwrap_err();
        assert!(e.contains("two blocks per SM"), "{e}");
        assert_eq!(
            AttentionPipeline::select(Target::Sm90a, &persistent(tile(64, 64, 64, 4, 2)), &v),
            AttentionPipeline::Multistage
        );
    }

    #[test]
    fn hopper_serves_one_warpgroup_per_64_rows() {
        let v = variant(Mask::Causal);
        let AttentionPipeline::Warpspecialized(p) =
            AttentionPipeline::select(Target::Sm90a, &tile(128, 128, 128, 8, 2), &v)
        else {
            panic!("no Hopper plan");
        };
        assert_eq!((p.consumers, p.panel, p.swizzle), (2, 64, Swizzle::B128));
        assert_eq!(p.threads(), 384);
        // 32 KiB of Q, 2 × 2 × 32 KiB of K/V, 9 barriers, 1 KiB of alignment slack
        assert_eq!(p.smem_bytes(), 32768 + 131072 + 72 + 1024);
        // 64 S + 64 O + 32 P
        assert_eq!(p.state_regs(), 160);
        assert_eq!((p.blocks_per_sm, p.register_split()), (1, Some((240, 24))));
        let hd32 = AttentionPipeline::hopper_plan(&tile(64, 64, 32, 4, 3), &v).unwrap();
        assert_eq!((hd32.panel, hd32.swizzle), (32, Swizzle::B64));
        // one consumer with 64 keys of head_dim 64: 80 state registers, two blocks an SM
        let short = AttentionPipeline::hopper_plan(&tile(64, 64, 64, 4, 2), &v).unwrap();
        assert_eq!((short.state_regs(), short.blocks_per_sm), (80, 2));
        assert_eq!(short.register_split(), None);
        let long = AttentionPipeline::hopper_plan(&tile(64, 128, 64, 4, 2), &v).unwrap();
        assert_eq!(long.blocks_per_sm, 1);
        // other targets, and geometries the pipeline has no shape for, stay multistage
        for (target, t) in [
            (Target::Sm80, tile(128, 128, 64, 8, 2)),
            (Target::Sm90a, tile(128, 64, 64, 4, 2)),
            (Target::Sm90a, tile(64, 32, 64, 8, 2)),
            (Target::Sm90a, tile(128, 64, 64, 8, 1)),
        ] {
            assert_eq!(
                AttentionPipeline::select(target, &t, &v),
                AttentionPipeline::Multistage,
                "{t:?}"
            );
        }
        let e = AttentionPipeline::hopper_plan(&tile(128, 256, 128, 8, 2), &v).unwrap_err();
        assert!(e.contains("registers per consumer thread"), "{e}");
        let e =
            AttentionPipeline::hopper_plan(&tile(128, 128, 128, 8, 3), &variant(Mask::Additive))
                .unwrap_err();
        assert!(e.contains("additive"), "{e}");
    }

    /// Split keys: clusters of 2, 4 or 8 one-consumer blocks, one tile per block, padded batches;
    /// every other combination says why it has no plan.
    #[test]
    fn split_keys_are_for_one_consumer_tiles() {
        let v = variant(Mask::None);
        let split = |t: AttentionTile, n: u32| AttentionTile { split_kv: n, ..t };
        for n in [2, 4, 8] {
            let p =
                AttentionPipeline::hopper_plan(&split(tile(64, 128, 128, 4, 2), n), &v).unwrap();
            assert!(p.splits_keys());
            assert_eq!((p.split_kv, p.consumers), (n, 1));
            // 64 rows of 128 f32 in a ring of 2 × 2 × 32 KiB
            assert_eq!(p.partial_o_bytes(), 32768);
        }
        let no = |t: AttentionTile, v: &Variant| AttentionPipeline::hopper_plan(&t, v).unwrap_err();
        for (t, why) in [
            (split(tile(64, 128, 128, 4, 2), 3), "2, 4 or 8"),
            (split(tile(64, 128, 128, 4, 2), 16), "2, 4 or 8"),
            (split(tile(128, 64, 64, 8, 2), 2), "one consumer"),
            (
                AttentionTile {
                    schedule: AttentionSchedule::Persistent,
                    ..split(tile(64, 128, 128, 4, 2), 2)
                },
                "persistent",
            ),
        ] {
            let e = no(t, &v);
            assert!(e.contains(why), "{t:?}: {e}");
        }
        let packed = Variant {
            layout: crate::problem::PACKED_LAYOUT.into(),
            ..variant(Mask::None)
        };
        assert!(no(split(tile(64, 64, 64, 4, 2), 2), &packed).contains("packed"));
        // the multistage pipeline never splits: a split config there has no pipeline at all,
        // which the template's check reports (sm_90a-only values)
        assert_eq!(
            AttentionPipeline::select(Target::Sm90a, &split(tile(128, 64, 64, 8, 2), 2), &v),
            AttentionPipeline::Multistage
        );
    }

    /// Grouped heads: one tile per block, padded `bhsd` batches without a causal mask; split
    /// keys combine with it.
    #[test]
    fn grouped_heads_are_for_unmasked_bhsd_tiles() {
        let grouped = |t: AttentionTile| AttentionTile {
            group_heads: true,
            ..t
        };
        let t = grouped(tile(64, 128, 128, 4, 2));
        for mask in [Mask::None, Mask::Padding] {
            let p = AttentionPipeline::hopper_plan(&t, &variant(mask)).unwrap();
            assert!(p.group_heads);
        }
        let split = AttentionTile { split_kv: 4, ..t };
        assert!(AttentionPipeline::hopper_plan(&split, &variant(Mask::None)).is_ok());
        let no = |t: &AttentionTile, v: &Variant| AttentionPipeline::hopper_plan(t, v).unwrap_err();
        assert!(no(&t, &variant(Mask::Causal)).contains("causal"));
        let bshd = Variant {
            layout: "bshd".into(),
            ..variant(Mask::None)
        };
        assert!(no(&t, &bshd).contains("bhsd"));
        let packed = Variant {
            layout: crate::problem::PACKED_LAYOUT.into(),
            ..variant(Mask::None)
        };
        assert!(no(&t, &packed).contains("packed"));
        let walking = AttentionTile {
            schedule: AttentionSchedule::Persistent,
            ..grouped(tile(128, 128, 128, 8, 2))
        };
        assert!(no(&walking, &variant(Mask::None)).contains("persistent"));
    }

    /// A packed batch (`thd`) takes the Hopper pipeline like any other layout, under both
    /// schedules; an additive mask still has none.
    #[test]
    fn packed_batches_take_the_hopper_pipeline() {
        let packed = |mask| Variant {
            layout: crate::problem::PACKED_LAYOUT.into(),
            ..variant(mask)
        };
        assert!(packed(Mask::Causal).attention_packed());
        let t = tile(128, 128, 128, 8, 2);
        assert_eq!(
            AttentionPipeline::hopper_plan(&t, &packed(Mask::Causal)),
            AttentionPipeline::hopper_plan(&t, &variant(Mask::Causal))
        );
        let walking = AttentionTile {
            schedule: AttentionSchedule::Persistent,
            ..t
        };
        let p = AttentionPipeline::hopper_plan(&walking, &packed(Mask::None)).unwrap();
        assert!(p.persistent());
        assert!(matches!(
            AttentionPipeline::select(Target::Sm90a, &tile(64, 64, 64, 4, 2), &packed(Mask::None)),
            AttentionPipeline::Warpspecialized(_)
        ));
        assert!(AttentionPipeline::hopper_plan(&t, &packed(Mask::Additive)).is_err());
    }

    proptest! {
        /// Every plan the policy hands out fits the register and shared-memory budgets, has
        /// whole panels and a thread count the register split covers.
        #[test]
        fn plans_fit_their_budgets(
            bq in prop::sample::select(vec![64u32, 128, 192, 256]),
            bkv in (1u32..=16).prop_map(|x| x * 16),
            hd in prop::sample::select(vec![32u32, 64, 96, 128, 256]),
            warps in prop::sample::select(vec![4u32, 8, 12, 16]),
            stages in 1u32..=8,
        ) {
            if let Ok(p) = AttentionPipeline::hopper_plan(&tile(bq, bkv, hd, warps, stages), &variant(Mask::None)) {
                prop_assert!(p.smem_bytes() <= SMEM_LIMIT);
                prop_assert_eq!(p.head_dim % p.panel, 0);
                prop_assert_eq!(p.line_bytes(), p.swizzle.span());
                let (c, pr) = register_split(p.consumers).unwrap();
                prop_assert!(128 * pr + 128 * p.consumers * c <= 65536);
                prop_assert!(p.state_regs() + STATE_SLACK_REGS <= c);
                prop_assert_eq!(p.block_q, 64 * p.consumers);
                prop_assert!(p.partial_o_bytes() <= 2 * p.stages * p.kv_bytes() || !p.splits_keys());
                if p.blocks_per_sm == 2 {
                    prop_assert!(2 * p.smem_bytes() <= SMEM_LIMIT);
                    prop_assert!(p.state_regs() + 48 <= SHARED_SM_REGS);
                    prop_assert_eq!(p.threads() * 2 * SHARED_SM_REGS, 65536);
                }
            }
        }
    }
}
