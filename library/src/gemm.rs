//! The GEMM template: `D = epilogue(alpha·A·B)` with A row-major, B row- or column-major,
//! f16/bf16 inputs, f32 accumulation and f16/bf16/f32 output; any M, N, K whose contiguous
//! dimensions meet the config's alignment (edges are predicated). On AMD the `mfma` knob picks
//! the MFMA atom (16x16x16 or 32x32x8); NVIDIA offers only its default, and kernel names show
//! it only off the default (`..._s3_mfma32_rcr_a8`).

use tessera_dsl::gpu_template;

/// GEMM with a fused epilogue on tensor cores: multi-stage pipelined mainloop over K.
#[gpu_template(name = "gemm", op = gemm, label = "{tile_m}x{tile_n}x{tile_k}_w{warps_m}x{warps_n}_s{stages}")]
pub mod gemm {
    params! {
        tile_m in [64, 128, 256],
        tile_n in [64, 128, 256] + sm_90a [96, 160, 192],
        tile_k in [32, 64] + sm_90a [128, 256],
        warps_m in [1, 2, 4],
        warps_n in [1, 2, 4],
        stages in [2, 3, 4] + sm_90a [6, 8],
        // the MFMA atom's rows on AMD: 16x16x16 everywhere, 32x32x8 (half the operand traffic
        // per flop) on CDNA; a target knob, named `_mfma32` only off its default
        mfma in [16] + gfx90a [32] + gfx942 [32],
        // split-K (sm_90a): each tile's K range walked by a cluster of this many blocks, whose
        // partial accumulators meet in the first block's shared memory (distributed shared
        // memory) before its epilogue; for long-K problems whose tiles leave three quarters
        // of the multiprocessors idle. Named `_split_k2` etc. only off its default
        split_k in [1] + sm_90a [2, 4],
        // TMA store (sm_90a): the output tile leaves shared memory by bulk tensor copies, so a
        // persistent block's next mainloop starts while its last tile is still being written;
        // measured faster where blocks store several tiles, slower for one tile per block, so
        // the tuner times both. Named `_tma_store1` only off its default
        tma_store in [0] + sm_90a [1],
        // B multicast (sm_90a): clusters of this many blocks, adjacent along M, walk their
        // tiles in step and share each B stage, every block copying its part by TMA into all
        // of them (B crosses L2 once per cluster). Named `_multicast2` only off its default
        multicast in [1] + sm_90a [2],
    }
    constraints! {
        tile_m % (warps_m * 16) == 0,
        tile_n % (warps_n * 16) == 0,
        warps_m * warps_n == 4 || warps_m * warps_n == 8,
        tile_m * tile_n <= 128 * 32 * warps_m * warps_n,
        tile_m / warps_m >= 32 && tile_n / warps_n >= 32,
        tile_m / warps_m + tile_n / warps_n <= 128,
        warps_m >= 2 && warps_n >= 2,
    }
    dtypes! { input: [f16, bf16], acc: f32, output: [f16, bf16, f32] }
    kernel! {
        shared sa: a[tile_m, tile_k] x stages;
        shared sb: b[tile_k, tile_n] x stages;
        fragment acc: acc[tile_m, tile_n] warps [warps_m, warps_n];
        mainloop k step tile_k stages stages split split_k multicast multicast {
            load a -> sa;
            load b -> sb;
            mma acc += sa * sb atom mfma;
        }
        epilogue acc -> d bulk tma_store;
    }

    use tessera_dsl::{
        Config, DeviceCaps, EpilogueOp, GemmPipeline, GemmTile, Problem, Reject, RejectKind,
        Template,
    };

    /// The most rows of A for which a K step deeper than 64 is offered.
    const DEEP_K_MAX_M: u64 = 128;

    /// A K step deeper than one 64-wide panel (several panels per stage) is for a small M,
    /// where the GEMM streams its weights from memory and each weight row should be read in
    /// long runs; elsewhere it only halves the stages that fit, so the space leaves it out.
    fn deep_k_pays(tile: &GemmTile, problem: &Problem) -> Result<(), Reject> {
        match problem {
            Problem::Gemm(g) if tile.tile_k > 64 && g.m > DEEP_K_MAX_M => Err(Reject::new(
                RejectKind::Unsupported,
                format!(
                    "tile_k {} streams weights for M <= {DEEP_K_MAX_M} only (M = {})",
                    tile.tile_k, g.m
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The fewest K steps each block of a split-K cluster walks: a split kernel pays about
    /// 2 µs of cluster launch, barriers and partials (measured on the H200, 21e2dad), which
    /// only a long share of K repays.
    const SPLIT_K_MIN_STEPS: u64 = 8;

    /// The smallest tile the space offers (`tile_m`, `tile_n`): the finest tiling of a
    /// problem, its most whole-K tiles.
    fn smallest_tile() -> (u64, u64) {
        let space = TEMPLATE.space();
        let smallest = |knob: &str| {
            space
                .params
                .iter()
                .find(|p| p.name == knob)
                .and_then(|p| p.values.iter().copied().min())
                .and_then(|v| u64::try_from(v).ok())
                .unwrap_or(1)
                .max(1)
        };
        (smallest("tile_m"), smallest("tile_n"))
    }

    /// Splitting each tile's K range over a cluster of `split_k` blocks is for problems that
    /// leave at least three quarters of the multiprocessors idle even at the space's smallest
    /// tile (so a whole-K kernel cannot fill the device with smaller tiles instead, and the
    /// clusters fit one wave), and each block must get a long share of K. On the H200 a split
    /// kernel lost wherever 64x64 tiles half-filled the device (384x768x3072: 72 tiles; the
    /// best split kernel 13.8 µs against 12.9 whole-K at 64x64, 21e2dad and f04d3d8) and won
    /// with 24 tiles (128x768x3072: 4-way split, 10.1 µs against 11.3).
    /// (The tuner times the rest; these only keep configs that cannot win out of the space.)
    fn split_k_pays(tile: &GemmTile, problem: &Problem, caps: &DeviceCaps) -> Result<(), Reject> {
        let (n, Problem::Gemm(g)) = (u64::from(tile.split_k), problem) else {
            return Ok(());
        };
        if n <= 1 {
            return Ok(());
        }
        let (tm, tn) = smallest_tile();
        let tiles = g.m.div_ceil(tm) * g.n.div_ceil(tn) * g.batch.max(1);
        if tiles * 4 > u64::from(caps.sm_count) {
            return Err(Reject::new(
                RejectKind::Unsupported,
                format!(
                    "split_k {n}: {tiles} whole-K tiles of {tm}x{tn} already fill more than a quarter of {} multiprocessors",
                    caps.sm_count
                ),
            ));
        }
        let steps = g.k.div_ceil(u64::from(tile.tile_k.max(1)));
        if steps < SPLIT_K_MIN_STEPS * n {
            return Err(Reject::new(
                RejectKind::Unsupported,
                format!(
                    "split_k {n}: {steps} K steps leave a block fewer than {SPLIT_K_MIN_STEPS}"
                ),
            ));
        }
        Ok(())
    }

    /// B multicast over a cluster is offered where the config's tiles fill at least one wave
    /// (blocks walk several tiles) and M has a tile for each block of a cluster. On the H200
    /// (08afa7a beside its plain twins) it cost one-tile-per-block kernels 0.5-1.9 us (cluster
    /// launch and barriers: 384-row BERT GEMMs 3-11 % slower) and was within -2..+1 % where
    /// blocks walk several tiles, so only those are worth timing.
    fn multicast_pays(tile: &GemmTile, problem: &Problem, caps: &DeviceCaps) -> Result<(), Reject> {
        let (n, Problem::Gemm(g)) = (u64::from(tile.multicast), problem) else {
            return Ok(());
        };
        if n <= 1 {
            return Ok(());
        }
        let tiles_m = g.m.div_ceil(u64::from(tile.tile_m.max(1)));
        if tiles_m < n {
            return Err(Reject::new(
                RejectKind::Unsupported,
                format!(
                    "multicast {n}: {tiles_m} M-tile(s) of {} rows leave a cluster of {n} nothing to share",
                    tile.tile_m
                ),
            ));
        }
        let tiles = tiles_m * g.n.div_ceil(u64::from(tile.tile_n.max(1))) * g.batch.max(1);
        if tiles < u64::from(caps.sm_count) {
            return Err(Reject::new(
                RejectKind::Unsupported,
                format!(
                    "multicast {n}: {tiles} tiles of {}x{} do not fill one wave of {} multiprocessors (a cluster's launch and barriers cost a one-tile block more than sharing B saves)",
                    tile.tile_m,
                    tile.tile_n,
                    caps.sm_count
                ),
            ));
        }
        Ok(())
    }

    /// Resource rules of the pipeline the target's dispatch policy picks for this config.
    ///
    /// The multistage (`mma.sync` / MFMA) pipeline double-buffers operand fragments in
    /// registers: a 64-deep K step fits only warp tiles of at most 2048 elements, and an
    /// epilogue that reads both C and a residual keeps two extra operands per accumulator live,
    /// which a 64×64 warp tile (128 f32 accumulators per thread) cannot afford. Both are
    /// rejected rather than left to spill. The warp-specialized Hopper pipeline keeps its
    /// operands in shared memory and checks its own budget when it plans the warpgroups.
    fn check(config: &Config, problem: &Problem, caps: &DeviceCaps) -> Result<(), Reject> {
        let v = |n: &str| config.get(n).unwrap_or(1);
        let u = |n: &str| u32::try_from(v(n)).unwrap_or(0);
        let tile = GemmTile {
            tile_m: u("tile_m"),
            tile_n: u("tile_n"),
            tile_k: u("tile_k"),
            warps: u("warps_m") * u("warps_n"),
            stages: u("stages"),
            split_k: u("split_k"),
            bulk_store: v("tma_store") == 1,
            multicast: u("multicast"),
        };
        if let GemmPipeline::Warpspecialized(_) =
            GemmPipeline::select(caps.target, &tile, &config.variant)
        {
            deep_k_pays(&tile, problem)?;
            multicast_pays(&tile, problem, caps)?;
            return split_k_pays(&tile, problem, caps);
        }
        // `+ sm_90a` above: deep rings, 192-wide tiles, deep K steps
        crate::tma_values::reject_unserved(&TEMPLATE.space(), config, || {
            GemmPipeline::hopper_plan(&tile, &config.variant)
                .err()
                .unwrap_or_else(|| format!("{} has no TMA pipeline", caps.target.name()))
        })?;
        let warp_tile = (v("tile_m") / v("warps_m")) * (v("tile_n") / v("warps_n"));
        if v("tile_k") > 32 && warp_tile > 2048 {
            return Err(Reject::new(
                RejectKind::Resources,
                "a 64-deep K step needs a warp tile of at most 2048 elements on the multistage pipeline (its double-buffered fragments spill)",
            ));
        }
        let epi = &config.variant.epilogue;
        if warp_tile > 2048
            && epi.contains(&EpilogueOp::BetaC)
            && epi.contains(&EpilogueOp::Residual)
        {
            return Err(Reject::new(
                RejectKind::Resources,
                "an epilogue reading C and a residual needs a warp tile of at most 2048 elements (64x64 spills)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::gemm::TEMPLATE;
    use tessera_dsl::{GemmProblem, Layout, Problem, RejectKind, Target, Template};

    /// A decode-shaped problem: one token against a 64 MB weight.
    fn decode() -> Problem {
        Problem::Gemm(GemmProblem::new(1, 8192, 4096))
    }

    #[test]
    fn deep_rings_and_192_wide_tiles_are_offered_to_the_tma_pipeline_only() {
        let p = decode();
        // `stages in [2, 3, 4] + sm_90a [6, 8]`: one list of values, two offered on sm_90a alone
        let space = TEMPLATE.space();
        let stages = space.params.iter().find(|p| p.name == "stages").unwrap();
        assert_eq!(stages.values, vec![2, 3, 4, 6, 8]);
        assert_eq!(stages.only_on(6), Some(vec![Target::Sm90a]));
        assert_eq!(stages.only_on(4), None);
        // 64x64x64, one consumer warpgroup, 8 stages
        let deep = TEMPLATE
            .config(&[64, 64, 64, 2, 2, 8, 16, 1, 0, 1], &p)
            .unwrap();
        let hopper = Target::Sm90a.nominal_caps();
        assert_eq!(TEMPLATE.validate(&deep, &p, &hopper), Ok(()));
        // sm_80 and gfx90a do not offer 8 stages (`+ sm_90a [6, 8]`)
        for target in [Target::Sm80, Target::Gfx90a] {
            let r = TEMPLATE
                .validate(&deep, &p, &target.nominal_caps())
                .unwrap_err();
            assert_eq!(r.kind, RejectKind::OutsideSpace, "{r:?}");
            assert!(
                r.reason.contains("stages = 8 is offered on sm_90a only"),
                "{}",
                r.reason
            );
        }
        // on sm_90a, a deep ring the TMA pipeline cannot serve (B row-major) has no pipeline
        let mut rrr = GemmProblem::new(1, 8192, 4096);
        rrr.layout_b = Layout::Row;
        let rrr = Problem::Gemm(rrr);
        let deep_rrr = TEMPLATE
            .config(&[64, 64, 64, 2, 2, 8, 16, 1, 0, 1], &rrr)
            .unwrap();
        let r = TEMPLATE.validate(&deep_rrr, &rrr, &hopper).unwrap_err();
        assert_eq!(r.kind, RejectKind::Unsupported, "{r:?}");
        assert!(
            r.reason.contains("stages = 8 is a TMA-pipeline value")
                && r.reason.contains("K-major B"),
            "{}",
            r.reason
        );
        // 4 stages stay in the multistage space
        let four = TEMPLATE
            .config(&[64, 64, 64, 2, 2, 4, 16, 1, 0, 1], &p)
            .unwrap();
        assert_eq!(
            TEMPLATE.validate(&four, &p, &Target::Sm80.nominal_caps()),
            Ok(())
        );
        // 192-wide tiles: a wgmma N on sm_90a, not a multistage width
        let wide = TEMPLATE
            .config(&[128, 192, 64, 2, 4, 4, 16, 1, 0, 1], &p)
            .unwrap();
        assert_eq!(TEMPLATE.validate(&wide, &p, &hopper), Ok(()));
        let narrow_k = TEMPLATE
            .config(&[128, 192, 32, 2, 4, 3, 16, 1, 0, 1], &p)
            .unwrap();
        assert_eq!(TEMPLATE.validate(&narrow_k, &p, &hopper), Ok(()));
        let r = TEMPLATE
            .validate(&narrow_k, &p, &Target::Sm80.nominal_caps())
            .unwrap_err();
        assert!(
            r.reason.contains("tile_n = 192 is offered on sm_90a only"),
            "{}",
            r.reason
        );
        // a deep ring of big tiles does not fit Hopper's shared memory
        let big = TEMPLATE
            .config(&[128, 256, 64, 2, 4, 8, 16, 1, 0, 1], &p)
            .unwrap();
        let r = TEMPLATE.validate(&big, &p, &hopper).unwrap_err();
        assert!(r.reason.contains("bytes of shared memory"), "{}", r.reason);
    }

    /// K steps of 128 and 256 are sm_90a values, and offered for a small M only.
    #[test]
    fn deep_k_steps_stream_weights_for_a_small_m() {
        let hopper = Target::Sm90a.nominal_caps();
        let tile_k = TEMPLATE
            .space()
            .params
            .into_iter()
            .find(|p| p.name == "tile_k")
            .unwrap();
        assert_eq!(tile_k.values, vec![32, 64, 128, 256]);
        assert_eq!(tile_k.only_on(256), Some(vec![Target::Sm90a]));
        let decode = decode();
        for (values, ok) in [
            // 64 x 64 tiles, 256-deep steps, 3 stages of 64 KiB
            ([64, 64, 256, 2, 2, 3, 16, 1, 0, 1], true),
            ([64, 128, 128, 2, 2, 4, 16, 1, 0, 1], true),
            // 4 stages of 64 KiB do not fit
            ([64, 64, 256, 2, 2, 4, 16, 1, 0, 1], false),
        ] {
            let c = TEMPLATE.config(&values, &decode).unwrap();
            assert_eq!(
                TEMPLATE.validate(&c, &decode, &hopper).is_ok(),
                ok,
                "{values:?}"
            );
        }
        let c = TEMPLATE
            .config(&[64, 64, 256, 2, 2, 3, 16, 1, 0, 1], &decode)
            .unwrap();
        // off sm_90a, no pipeline serves a 256-deep step
        let r = TEMPLATE
            .validate(&c, &decode, &Target::Sm80.nominal_caps())
            .unwrap_err();
        assert!(r.reason.contains("offered on sm_90a only"), "{}", r.reason);
        // a large M does not stream weights: the space leaves deep steps out
        for m in [129, 384, 4096] {
            let big = Problem::Gemm(GemmProblem::new(m, 8192, 4096));
            let r = TEMPLATE.validate(&c, &big, &hopper).unwrap_err();
            assert_eq!(r.kind, RejectKind::Unsupported, "{r:?}");
            assert!(
                r.reason.contains("tile_k 256 streams weights for M <= 128"),
                "{}",
                r.reason
            );
        }
        let at128 = Problem::Gemm(GemmProblem::new(128, 8192, 4096));
        assert_eq!(TEMPLATE.validate(&c, &at128, &hopper), Ok(()));
    }

    #[test]
    fn mfma_32x32x8_is_an_amd_knob_that_renames_no_default_kernel() {
        let p = Problem::Gemm(GemmProblem::new(4096, 4096, 4096));
        let space = TEMPLATE.space();
        let mfma = space.params.iter().find(|p| p.name == "mfma").unwrap();
        assert_eq!(mfma.values, vec![16, 32]);
        assert_eq!(mfma.default, Some(16));
        assert_eq!(mfma.only_on(32), Some(vec![Target::Gfx90a, Target::Gfx942]));
        let at16 = TEMPLATE
            .config(&[128, 128, 32, 2, 2, 3, 16, 1, 0, 1], &p)
            .unwrap();
        let at32 = TEMPLATE
            .config(&[128, 128, 32, 2, 2, 3, 32, 1, 0, 1], &p)
            .unwrap();
        // the default keeps the name (and `--config` string) every target had before the knob
        assert_eq!(
            at16.kernel_name(),
            "gemm_f16_f32acc_128x128x32_w2x2_s3_rcr_a8"
        );
        assert_eq!(
            space.assignment(&at16.values()),
            "tile_m=128,tile_n=128,tile_k=32,warps_m=2,warps_n=2,stages=3"
        );
        assert_eq!(
            space.parse_point(&space.assignment(&at16.values())),
            Ok(at16.values())
        );
        assert_eq!(
            at32.kernel_name(),
            "gemm_f16_f32acc_128x128x32_w2x2_s3_mfma32_rcr_a8"
        );
        assert_eq!(
            space.parse_point(&space.assignment(&at32.values())),
            Ok(at32.values())
        );
        for target in [Target::Gfx90a, Target::Gfx942] {
            let caps = target.nominal_caps();
            assert_eq!(TEMPLATE.validate(&at32, &p, &caps), Ok(()), "{target}");
            assert_eq!(TEMPLATE.validate(&at16, &p, &caps), Ok(()), "{target}");
        }
        for target in [Target::Sm80, Target::Sm90a] {
            let r = TEMPLATE
                .validate(&at32, &p, &target.nominal_caps())
                .unwrap_err();
            assert_eq!(r.kind, RejectKind::OutsideSpace, "{r:?}");
            assert!(
                r.reason
                    .contains("mfma = 32 is offered on gfx90a, gfx942 only"),
                "{}",
                r.reason
            );
        }
        // the IR asks for the atom; a device without a 32-row atom for the dtype rejects it
        let mut caps = Target::Gfx942.nominal_caps();
        caps.mma_atoms.retain(|a| a.m == 16);
        let r = TEMPLATE.validate(&at32, &p, &caps).unwrap_err();
        assert_eq!(r.kind, RejectKind::Unsupported, "{r:?}");
        assert!(r.reason.contains("no 32-row MMA atom"), "{}", r.reason);
    }

    /// `split_k` (2, 4) is an sm_90a knob: a cluster of blocks per tile for long-K problems
    /// whose tiles leave multiprocessors idle, with cooperative consumers, named `_split_k2`.
    #[test]
    fn split_k_clusters_long_k_problems_with_few_tiles() {
        let hopper = Target::Sm90a.nominal_caps();
        let split = TEMPLATE
            .space()
            .params
            .into_iter()
            .find(|p| p.name == "split_k")
            .unwrap();
        assert_eq!(split.values, vec![1, 2, 4]);
        assert_eq!(split.only_on(2), Some(vec![Target::Sm90a]));
        // BERT's second FFN GEMM at 128 tokens: 24 tiles of 64x64, 48 K steps
        let ffn2 = Problem::Gemm(GemmProblem::new(128, 768, 3072));
        let two = TEMPLATE
            .config(&[64, 64, 64, 2, 2, 6, 16, 2, 0, 1], &ffn2)
            .unwrap();
        assert_eq!(
            two.kernel_name(),
            "gemm_f16_f32acc_64x64x64_w2x2_s6_split_k2_rcr_a8"
        );
        assert_eq!(TEMPLATE.validate(&two, &ffn2, &hopper), Ok(()));
        // off sm_90a the value is not offered
        let four_stages = TEMPLATE
            .config(&[64, 64, 64, 2, 2, 4, 16, 2, 0, 1], &ffn2)
            .unwrap();
        let r = TEMPLATE
            .validate(&four_stages, &ffn2, &Target::Sm80.nominal_caps())
            .unwrap_err();
        assert!(r.reason.contains("split_k = 2"), "{}", r.reason);
        let reason = |values: [i64; 10], p: &Problem| {
            let c = TEMPLATE.config(&values, p).unwrap();
            TEMPLATE.validate(&c, p, &hopper).unwrap_err().reason
        };
        // at 384 tokens, 72 tiles of 64x64 already fill more than a quarter of 132 SMs, so no
        // tile splits, not even one of 128x128 (18 tiles)
        let ffn2_384 = Problem::Gemm(GemmProblem::new(384, 768, 3072));
        for values in [
            [64, 64, 64, 2, 2, 6, 16, 2, 0, 1],
            [128, 128, 64, 2, 2, 6, 16, 2, 0, 1],
        ] {
            let r = reason(values, &ffn2_384);
            assert!(r.contains("72 whole-K tiles of 64x64 already fill"), "{r}");
        }
        // a short K leaves each of 2 blocks fewer than 8 steps
        let short = Problem::Gemm(GemmProblem::new(128, 768, 960));
        let r = reason([64, 64, 64, 2, 2, 6, 16, 2, 0, 1], &short);
        assert!(r.contains("15 K steps"), "{r}");
        // pingpong consumers walk two tiles each: no split
        let r = reason([64, 128, 64, 2, 4, 6, 16, 2, 0, 1], &ffn2);
        assert!(r.contains("pingpong"), "{r}");
        // the ring must hold a tile's f32 partials
        let r = reason(
            [128, 256, 64, 2, 4, 2, 16, 2, 0, 1],
            &Problem::Gemm(GemmProblem::new(128, 256, 8192)),
        );
        assert!(r.contains("do not fit"), "{r}");
    }

    /// `tma_store` (1) is an sm_90a knob, named `_tma_store1`: the tuner times the TMA store
    /// beside the warpgroups' own stores where the output is 16-bit row-major and a
    /// warpgroup's tile is whole 64-column panels, and the rest is rejected with the reason.
    #[test]
    fn tma_store_is_an_sm90a_knob_for_whole_panels_of_16_bit_rows() {
        let hopper = Target::Sm90a.nominal_caps();
        let space = TEMPLATE.space();
        let knob = space.params.iter().find(|p| p.name == "tma_store").unwrap();
        assert_eq!((knob.values.clone(), knob.default), (vec![0, 1], Some(0)));
        assert_eq!(knob.only_on(1), Some(vec![Target::Sm90a]));
        let ffn1 = Problem::Gemm(GemmProblem::new(12288, 3072, 768));
        let tma = TEMPLATE
            .config(&[128, 128, 64, 4, 2, 4, 16, 1, 1, 1], &ffn1)
            .unwrap();
        assert_eq!(
            tma.kernel_name(),
            "gemm_f16_f32acc_128x128x64_w4x2_s4_tma_store1_rcr_a8"
        );
        assert_eq!(TEMPLATE.validate(&tma, &ffn1, &hopper), Ok(()));
        let r = TEMPLATE
            .validate(&tma, &ffn1, &Target::Sm80.nominal_caps())
            .unwrap_err();
        assert!(r.reason.contains("tma_store = 1"), "{}", r.reason);
        let reason = |values: [i64; 10], p: &Problem| {
            let c = TEMPLATE.config(&values, p).unwrap();
            TEMPLATE.validate(&c, p, &hopper).unwrap_err().reason
        };
        // 96 columns are one and a half panels
        let r = reason([128, 96, 64, 4, 2, 4, 16, 1, 1, 1], &ffn1);
        assert!(r.contains("whole 64-column panels"), "{r}");
        // an f32 output is not a 16-bit TMA box
        let mut wide = GemmProblem::new(12288, 3072, 768);
        wide.output = tessera_dsl::DType::F32;
        let r = reason([128, 128, 64, 4, 2, 4, 16, 1, 1, 1], &Problem::Gemm(wide));
        assert!(r.contains("16-bit row-major output"), "{r}");
    }
}
