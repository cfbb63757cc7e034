//! The dispatch policies: which mainloop pipeline and MMA lowering a kernel gets on a target.
//! The GEMM's is here; attention's is in [`attention`].
//!
//! The GEMM dispatch policy: which mainloop pipeline and MMA lowering a kernel gets on a
//! target (CUTLASS-style: the kernel and its epilogue stay the same, the policy picks the
//! mainloop).
//!
//! - [`GemmPipeline::Multistage`]: per-thread asynchronous copies (`cp.async` / LDS loads)
//!   into padded shared tiles, warp-level MMA (`mma.sync`, MFMA). Every target.
//! - [`GemmPipeline::Warpspecialized`]: sm_90a only. A producer warp copies tiles with TMA into
//!   swizzled shared stages guarded by an mbarrier full/empty ring; consumer warpgroups run
//!   `wgmma` with both operands read through shared-memory descriptors.
//!
//! A config that the Hopper pipeline cannot serve (B not K-major, rows not 16-byte aligned,
//! a warpgroup tile the instruction has no shape for) keeps the multistage pipeline, which
//! runs on sm_90a too; [`GemmPipeline::hopper_plan`] says why.
//!
//! The policy lives here, beside the IR, because two crates need the same answer: codegen
//! (which mainloop to emit) and the GEMM template's validation (which resource rules apply).
//! Pure arithmetic: no code generation, no device.

pub mod attention;

use crate::{Store, Swizzle, Target, Variant};

/// How the consumer warpgroups of the Hopper pipeline share the block tile, and the rest of
/// its geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarpgroupPlan {
    /// Consumer warpgroups (1 or 2); one more warpgroup produces.
    pub consumers: u32,
    /// Rows × columns of the output one consumer warpgroup owns.
    pub wg_m: u32,
    pub wg_n: u32,
    /// How the consumers share the work.
    pub schedule: ConsumerSchedule,
    pub stages: u32,
    /// Swizzle of the shared tiles: one line holds one panel of the K step (at most 64
    /// 16-bit elements, the 128-byte swizzle span).
    pub swizzle: Swizzle,
    /// Panels of one K step: a stage holds A's and B's tiles as this many `lines × panel`
    /// boxes side by side in K (1 up to a 64-deep step; a 256-deep step has 4), so each
    /// weight row is read in `tile_k`-long runs per stage.
    pub panels: u32,
    pub epilogue: EpilogueMode,
    /// Split-K: a cluster of this many blocks walks each tile, one share of K each; the other
    /// blocks' partial accumulators meet in the first block's shared memory (over its ring,
    /// which every block's mainloop has left by then) before that block's epilogue. 1: one
    /// block per tile on a persistent grid.
    pub split_k: u32,
    /// B multicast: a cluster of this many blocks, adjacent along M, walks its tiles in step;
    /// each block copies `1 / multicast` of every B stage and TMA multicasts it into every
    /// block of the cluster, so B crosses L2 once per cluster. A stage is free again only when
    /// every block's consumers have released it (they arrive on each block's `empty` barrier).
    /// 1: each block copies its own.
    pub multicast: u32,
}

/// How consumers write their tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpilogueMode {
    /// Each thread stores its accumulator pairs straight to global memory (any output store).
    Direct,
    /// Pairs go to a per-warpgroup staging tile in shared memory (rows padded by 16 bytes, so
    /// neither side conflicts on banks), then out in coalesced 16-byte stores: 16-bit outputs,
    /// row-major or into heads of a head_dim that is a multiple of 8, when the staging fits
    /// beside the stages.
    Staged,
    /// Staged like [`EpilogueMode::Staged`], but in 64-column panels swizzled 128 B (the
    /// layout of a TMA box of [`TMA_STORE_PANEL`] 16-bit columns), and one thread of the
    /// warpgroup stores each panel with a TMA bulk copy (`cp.async.bulk.tensor`), which clips
    /// rows and columns past the edges: the warpgroup leaves its epilogue as soon as its
    /// values are in shared memory and waits for the copies to have read them only before it
    /// stages its next tile. 16-bit row-major outputs whose warpgroup tile is a whole number of
    /// panels wide, where the kernel asks for it ([`GemmTile::bulk_store`]).
    TmaStore,
}

/// Columns of one TMA-stored panel: 128 bytes of 16-bit outputs, one swizzled line.
pub const TMA_STORE_PANEL: u32 = 64;
/// The alignment a 128-byte-swizzled staging tile needs (one swizzle atom), bytes.
pub const TMA_STORE_ALIGN: u32 = 1024;

/// How consumer warpgroups share a block's tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerSchedule {
    /// All consumers work on one tile, each on its own rows.
    Cooperative,
    /// Two consumers take alternate tiles, each a whole tile: one's epilogue overlaps the
    /// other's mainloop (the ring's stages go to them in tile order).
    Pingpong,
}

/// Registers a consumer thread gets and a producer thread keeps (`setmaxnreg`), for
/// `consumers` consumer warpgroups beside one producer warpgroup (Σ threads · registers ≤ 64K),
/// or `None` for an unsupported count. The GEMM's and the attention's pipelines share it.
pub fn register_split(consumers: u32) -> Option<(u32, u32)> {
    match consumers {
        1 => Some((232, 40)),
        2 => Some((240, 24)),
        3 => Some((160, 24)),
        _ => None,
    }
}

impl WarpgroupPlan {
    /// m64 wgmma instructions per k16 step of one warpgroup.
    pub fn m_atoms(&self) -> u32 {
        self.wg_m / 64
    }

    /// f32 accumulators one consumer thread holds.
    pub fn accumulators(&self) -> u32 {
        self.wg_m * self.wg_n / 128
    }

    pub fn threads(&self) -> u32 {
        128 * (self.consumers + 1)
    }

    /// Blocks of one cluster (`__cluster_dims__`): a split-K tile's or a B-multicast group's;
    /// 1 without a cluster.
    pub fn cluster_ctas(&self) -> u32 {
        self.split_k.max(self.multicast).max(1)
    }
}

/// The GEMM geometry the policy looks at: block tile, K step, warps and pipeline depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmTile {
    pub tile_m: u32,
    pub tile_n: u32,
    pub tile_k: u32,
    pub warps: u32,
    pub stages: u32,
    /// Blocks of one cluster that share each tile's K range (1: the whole range per block).
    pub split_k: u32,
    /// The output tile leaves by TMA ([`EpilogueMode::TmaStore`], `epilogue ... bulk 1`);
    /// otherwise by the warpgroups' own stores, staged where they can be.
    pub bulk_store: bool,
    /// Blocks of one cluster that share each B tile ([`WarpgroupPlan::multicast`]; 1: none).
    pub multicast: u32,
}

impl GemmTile {
    /// Bytes of one stage of A and of B.
    pub fn stage_bytes(&self, variant: &Variant) -> (u32, u32) {
        let elem = variant.input.size_bytes();
        (
            self.tile_m * self.tile_k * elem,
            self.tile_n * self.tile_k * elem,
        )
    }
}

/// The most f32 accumulators a consumer thread may hold (of the 240 registers it gets).
const MAX_ACCUMULATORS: u32 = 128;
/// Shared memory a block may use on sm_90a.
const SMEM_LIMIT: u32 = 227 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GemmPipeline {
    Multistage,
    Warpspecialized(WarpgroupPlan),
}

impl GemmPipeline {
    /// The policy: the Hopper pipeline wherever it applies on sm_90a, else the multistage one.
    pub fn select(target: Target, tile: &GemmTile, variant: &Variant) -> GemmPipeline {
        match target {
            Target::Sm90a => match Self::hopper_plan(tile, variant) {
                Ok(plan) => GemmPipeline::Warpspecialized(plan),
                Err(_) => GemmPipeline::Multistage,
            },
            Target::Sm80 | Target::Gfx90a | Target::Gfx942 => GemmPipeline::Multistage,
        }
    }

    /// The warp-specialized plan of a GEMM kernel, or why it has none.
    pub fn hopper_plan(tile: &GemmTile, variant: &Variant) -> Result<WarpgroupPlan, String> {
        if variant.layout.as_bytes().get(1) != Some(&b'c') {
            return Err("the TMA/wgmma pipeline needs a K-major B (layout rcr)".into());
        }
        if variant.align != 8 || variant.input.size_bytes() != 2 {
            return Err(format!(
                "TMA needs 16-byte aligned rows (alignment {} elements)",
                variant.align
            ));
        }
        // a K step deeper than one 128-byte swizzled line takes several panels of one line
        let line_bytes = tile.tile_k * 2;
        let panels = line_bytes.div_ceil(Swizzle::B128.span()).max(1);
        let swizzle = match Swizzle::for_line_bytes(line_bytes / panels) {
            Some(s) if panels == 1 && s != Swizzle::B32 => s,
            Some(Swizzle::B128) if panels <= 4 => Swizzle::B128,
            _ => return Err(format!("tile_k {} is not 32, 64, 128 or 256", tile.tile_k)),
        };
        let consumers = match tile.warps {
            4 => 1,
            8 => 2,
            w => return Err(format!("{w} warps are not 1 or 2 consumer warpgroups")),
        };
        let (tm, tn) = (tile.tile_m, tile.tile_n);
        let (wg_m, wg_n, schedule) = if consumers == 2 && tm * tn / 128 <= MAX_ACCUMULATORS {
            (tm, tn, ConsumerSchedule::Pingpong)
        } else {
            (tm / consumers, tn, ConsumerSchedule::Cooperative)
        };
        if wg_m % 64 != 0 || wg_n % 8 != 0 || wg_n == 0 || wg_n > 256 || tm > 256 || tn > 256 {
            return Err(format!(
                "no wgmma shape for a {wg_m}x{wg_n} warpgroup tile of {tm}x{tn}"
            ));
        }
        if tile.stages < 2 {
            return Err("the ring needs at least 2 stages".into());
        }
        if tile.split_k > 1 {
            if !matches!(tile.split_k, 2 | 4) {
                return Err(format!(
                    "split_k {}: a cluster of 2 or 4 blocks",
                    tile.split_k
                ));
            }
            if schedule == ConsumerSchedule::Pingpong {
                return Err(format!(
                    "split_k {}: one tile per cluster, but pingpong consumers take two tiles each",
                    tile.split_k
                ));
            }
            let (a, b) = tile.stage_bytes(variant);
            let partials = tm * tn * 4;
            if partials > tile.stages * (a + b) {
                return Err(format!(
                    "split_k {}: a {tm}x{tn} tile's f32 partials ({partials} bytes) do not fit the {}-byte ring",
                    tile.split_k,
                    tile.stages * (a + b)
                ));
            }
        }
        if tile.multicast > 1 {
            if tile.multicast != 2 {
                return Err(format!(
                    "multicast {}: a cluster of 2 blocks",
                    tile.multicast
                ));
            }
            if tile.split_k > 1 {
                return Err(format!(
                    "multicast {} with split_k {}: a block is in one cluster",
                    tile.multicast, tile.split_k
                ));
            }
            // each block's share of B is whole swizzle atoms (8 lines), so the shares side by
            // side are the layout of one box
            if !(tn / tile.multicast).is_multiple_of(8) {
                return Err(format!(
                    "multicast {}: a {tn}-wide B tile does not split into shares of whole 8-line swizzle atoms",
                    tile.multicast
                ));
            }
        }
        let mut plan = WarpgroupPlan {
            consumers,
            wg_m,
            wg_n,
            schedule,
            stages: tile.stages,
            swizzle,
            panels,
            epilogue: EpilogueMode::Direct,
            split_k: tile.split_k.max(1),
            multicast: tile.multicast.max(1),
        };
        // 16-bit outputs leave the staging tile in 16-byte chunks: row-major, or into heads
        // whose head_dim keeps every chunk inside one head
        let stageable = variant.output.size_bytes() == 2
            && match variant.store {
                Store::Rows => true,
                Store::Heads { head_dim, .. } => head_dim % 8 == 0,
            };
        if tile.bulk_store {
            // a TMA store: whole 64-column panels of a 16-bit row-major output; the tuner
            // times it against the staged stores (it pays where a block stores several tiles)
            if !(stageable && matches!(variant.store, Store::Rows)) {
                return Err("a TMA store needs a 16-bit row-major output".into());
            }
            if !plan.wg_n.is_multiple_of(TMA_STORE_PANEL) {
                return Err(format!(
                    "a TMA store needs whole {TMA_STORE_PANEL}-column panels (a warpgroup's tile is {} wide)",
                    plan.wg_n
                ));
            }
            plan.epilogue = EpilogueMode::TmaStore;
        } else if stageable {
            // the warpgroup's own coalesced stores through a staging tile, where it fits
            let staged = WarpgroupPlan {
                epilogue: EpilogueMode::Staged,
                ..plan
            };
            if staged.smem_bytes(tile, variant) <= SMEM_LIMIT {
                plan = staged;
            }
        }
        if plan.accumulators() > MAX_ACCUMULATORS {
            return Err(format!(
                "{} accumulators per thread (at most {MAX_ACCUMULATORS})",
                plan.accumulators()
            ));
        }
        let smem = plan.smem_bytes(tile, variant);
        if smem > SMEM_LIMIT {
            return Err(format!("{smem} bytes of shared memory"));
        }
        Ok(plan)
    }
}

impl WarpgroupPlan {
    /// Dynamic shared memory: the stages, the barriers, and slack to align the base to the
    /// swizzle atom at run time.
    pub fn smem_bytes(&self, tile: &GemmTile, variant: &Variant) -> u32 {
        let (a, b) = tile.stage_bytes(variant);
        // full + empty per stage, and two order barriers for pingpong consumers
        let barriers = 16 * self.stages + 16;
        let align = match self.epilogue {
            EpilogueMode::TmaStore => TMA_STORE_ALIGN,
            EpilogueMode::Direct | EpilogueMode::Staged => 0,
        };
        let staging = self.consumers * self.staging_tile_bytes() + align;
        self.stages * (a + b) + staging + barriers + self.swizzle.atom_bytes()
    }

    /// Bytes of one consumer warpgroup's staging tile: padded rows ([`Self::staging_pitch`])
    /// for its own stores, unpadded 64-column panels for a TMA store, none for direct stores.
    pub fn staging_tile_bytes(&self) -> u32 {
        match self.epilogue {
            EpilogueMode::Direct => 0,
            EpilogueMode::Staged => self.wg_m * self.staging_pitch(),
            EpilogueMode::TmaStore => self.wg_m * self.wg_n * 2,
        }
    }

    /// Bytes between rows of a staging tile (16-bit elements, padded by 16 bytes).
    pub fn staging_pitch(&self) -> u32 {
        self.wg_n * 2 + 16
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DType, EpilogueOp};

    fn variant(layout: &str, align: u32) -> Variant {
        Variant {
            input: DType::F16,
            acc: DType::F32,
            output: DType::F16,
            layout: layout.into(),
            epilogue: vec![EpilogueOp::Bias],
            align,
            store: Default::default(),
            extent: 0,
            mask: Default::default(),
        }
    }

    fn tile(tile_m: u32, tile_n: u32, tile_k: u32, warps: u32, stages: u32) -> GemmTile {
        GemmTile {
            tile_m,
            tile_n,
            tile_k,
            warps,
            stages,
            split_k: 1,
            bulk_store: false,
            multicast: 1,
        }
    }

    #[test]
    fn hopper_plans_of_the_common_tiles() {
        let v = variant("rcr", 8);
        let t = tile(128, 256, 64, 8, 4);
        let p = GemmPipeline::hopper_plan(&t, &v).unwrap();
        let coop = ConsumerSchedule::Cooperative;
        assert_eq!(
            (p.consumers, p.wg_m, p.wg_n, p.schedule),
            (2, 64, 256, coop)
        );
        assert_eq!(p.accumulators(), 128);
        assert_eq!(p.threads(), 384);
        assert_eq!(p.swizzle, Swizzle::B128);
        // 4 stages leave no room for staging 2 x 64 x 256 outputs: direct stores
        assert_eq!(p.epilogue, EpilogueMode::Direct);
        assert_eq!(p.smem_bytes(&t, &v), 4 * 49152 + 64 + 16 + 1024);
        let p3 = GemmPipeline::hopper_plan(&tile(128, 256, 64, 8, 3), &v).unwrap();
        assert_eq!(p3.epilogue, EpilogueMode::Staged);
        assert_eq!(
            p3.smem_bytes(&tile(128, 256, 64, 8, 3), &v),
            3 * 49152 + 2 * 64 * 528 + 48 + 16 + 1024
        );
        let mut heads = v.clone();
        heads.store = Store::Heads {
            heads: 12,
            head_dim: 64,
            seq: 384,
        };
        // a head store stages too when no 16-byte chunk can straddle two heads
        let ph = GemmPipeline::hopper_plan(&tile(128, 256, 64, 8, 3), &heads).unwrap();
        assert_eq!(ph.epilogue, EpilogueMode::Staged);
        heads.store = Store::Heads {
            heads: 12,
            head_dim: 36,
            seq: 384,
        };
        let ph = GemmPipeline::hopper_plan(&tile(128, 256, 64, 8, 3), &heads).unwrap();
        assert_eq!(ph.epilogue, EpilogueMode::Direct);
        let mut wide = v.clone();
        wide.output = DType::F32;
        let pw = GemmPipeline::hopper_plan(&tile(128, 256, 64, 8, 3), &wide).unwrap();
        assert_eq!(pw.epilogue, EpilogueMode::Direct);
        // `bulk 1`: a TMA store of unpadded 64-column panels on a 1024-byte boundary, or no plan
        let bulk = |t: GemmTile| GemmTile {
            bulk_store: true,
            ..t
        };
        let pb = GemmPipeline::hopper_plan(&bulk(tile(128, 256, 64, 8, 3)), &v).unwrap();
        assert_eq!(pb.epilogue, EpilogueMode::TmaStore);
        assert_eq!(
            pb.smem_bytes(&tile(128, 256, 64, 8, 3), &v),
            3 * 49152 + 2 * 64 * 512 + 1024 + 48 + 16 + 1024
        );
        for (t, variant, why) in [
            (tile(128, 96, 64, 8, 4), &v, "whole 64-column panels"),
            (tile(128, 256, 64, 8, 3), &wide, "16-bit row-major output"),
            (tile(128, 256, 64, 8, 4), &v, "bytes of shared memory"),
        ] {
            let e = GemmPipeline::hopper_plan(&bulk(t), variant).unwrap_err();
            assert!(e.contains(why), "{t:?}: {e}");
        }
        // a tile one warpgroup can hold alone: two consumers take turns
        let p = GemmPipeline::hopper_plan(&tile(128, 128, 64, 8, 4), &v).unwrap();
        assert_eq!(
            (p.wg_m, p.wg_n, p.schedule),
            (128, 128, ConsumerSchedule::Pingpong)
        );
        assert_eq!(p.m_atoms(), 2);
        let p = GemmPipeline::hopper_plan(&tile(64, 256, 32, 8, 3), &v).unwrap();
        assert_eq!(
            (p.schedule, p.swizzle),
            (ConsumerSchedule::Pingpong, Swizzle::B64)
        );
        // one consumer never takes turns
        let p = GemmPipeline::hopper_plan(&tile(128, 128, 64, 4, 4), &v).unwrap();
        assert_eq!(p.schedule, ConsumerSchedule::Cooperative);
    }

    /// `multicast 2`: a cluster pair shares B in shares of whole swizzle atoms; never with a
    /// split K range.
    #[test]
    fn multicast_plans() {
        let v = variant("rcr", 8);
        let mc = |t: GemmTile, n: u32| GemmTile { multicast: n, ..t };
        let p = GemmPipeline::hopper_plan(&mc(tile(128, 256, 64, 8, 4), 2), &v).unwrap();
        assert_eq!(p.multicast, 2);
        assert_eq!(
            p.smem_bytes(&tile(128, 256, 64, 8, 4), &v),
            GemmPipeline::hopper_plan(&tile(128, 256, 64, 8, 4), &v)
                .unwrap()
                .smem_bytes(&tile(128, 256, 64, 8, 4), &v)
        );
        assert_eq!(
            GemmPipeline::hopper_plan(&tile(128, 256, 64, 8, 4), &v)
                .unwrap()
                .multicast,
            1
        );
        for (t, why) in [
            (mc(tile(128, 256, 64, 8, 4), 4), "a cluster of 2 blocks"),
            (
                GemmTile {
                    split_k: 2,
                    ..mc(tile(128, 256, 64, 8, 4), 2)
                },
                "a block is in one cluster",
            ),
            (mc(tile(64, 8, 64, 4, 4), 2), "whole 8-line swizzle atoms"),
        ] {
            let e = GemmPipeline::hopper_plan(&t, &v).unwrap_err();
            assert!(e.contains(why), "{t:?}: {e}");
        }
    }

    /// A K step deeper than one 128-byte line is split into 64-wide panels, each swizzled 128 B.
    #[test]
    fn deep_k_steps_take_panels() {
        let v = variant("rcr", 8);
        for (tile_k, panels, swizzle) in [
            (32, 1, Swizzle::B64),
            (64, 1, Swizzle::B128),
            (128, 2, Swizzle::B128),
            (256, 4, Swizzle::B128),
        ] {
            let t = tile(64, 64, tile_k, 4, 3);
            let p = GemmPipeline::hopper_plan(&t, &v).unwrap();
            assert_eq!((p.panels, p.swizzle), (panels, swizzle), "tile_k {tile_k}");
            // the stages hold the whole K step: panels side by side
            assert_eq!(
                p.smem_bytes(&t, &v),
                3 * 2 * 64 * tile_k * 2
                    + 3 * 16
                    + 16
                    + p.swizzle.atom_bytes()
                    + match p.epilogue {
                        EpilogueMode::Staged => 64 * 144,
                        EpilogueMode::TmaStore => 64 * 64 * 2 + 1024,
                        EpilogueMode::Direct => 0,
                    }
            );
        }
        for tile_k in [16, 48, 96, 512] {
            let e = GemmPipeline::hopper_plan(&tile(64, 64, tile_k, 4, 3), &v).unwrap_err();
            assert!(e.contains("is not 32, 64, 128 or 256"), "{tile_k}: {e}");
        }
    }

    #[test]
    fn the_multistage_pipeline_serves_what_hopper_cannot() {
        let t = tile(128, 128, 64, 4, 4);
        for (v, why) in [
            (variant("rrr", 8), "K-major B"),
            (variant("rcr", 4), "16-byte aligned rows"),
        ] {
            let e = GemmPipeline::hopper_plan(&t, &v).unwrap_err();
            assert!(e.contains(why), "{e}");
            assert_eq!(
                GemmPipeline::select(Target::Sm90a, &t, &v),
                GemmPipeline::Multistage
            );
        }
        let v = variant("rcr", 8);
        let e = GemmPipeline::hopper_plan(&tile(256, 256, 64, 8, 4), &v).unwrap_err();
        assert!(e.contains("256 accumulators"), "{e}");
        let e = GemmPipeline::hopper_plan(&tile(256, 128, 64, 8, 5), &v).unwrap_err();
        assert!(e.contains("bytes of shared memory"), "{e}");
        assert!(matches!(
            GemmPipeline::select(Target::Sm90a, &t, &v),
            GemmPipeline::Warpspecialized(_)
        ));
        for target in [Target::Sm80, Target::Gfx90a, Target::Gfx942] {
            assert_eq!(
                GemmPipeline::select(target, &t, &v),
                GemmPipeline::Multistage
            );
        }
    }
}
