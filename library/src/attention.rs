//! The fused attention template: per (batch, head), `O = softmax(scale · Q·Kᵀ) · V` with
//! fp32 accumulation and fp32 softmax statistics, never writing the scores to memory. A block
//! owns `block_q` queries: it loads their Q block once, then walks the keys `block_kv` at a
//! time (`stages` K/V blocks in flight), computing the scores, masking keys past `seq_kv`
//! (and causal or padding positions), updating the online softmax and accumulating `P·V`;
//! finally it divides by the running sum and stores O for the queries below `seq_q`.
//!
//! On sm_90a the `persistent` knob makes a warp-specialized plan of one block per SM persistent
//! (at most one block per SM walking the tiles); kernel names show it only off its default
//! (`..._s2_persistent1_bhsd_...`). Its `split_kv` knob (2, 4, 8) splits each tile's keys over a
//! cluster of that many one-consumer blocks, which combine their partial softmaxes through
//! distributed shared memory: for decode-shaped problems whose (query block, head, batch) tiles
//! are fewer than the multiprocessors (`..._s2_split_kv4_bhsd_...`).

use tessera_dsl::gpu_template;

/// Fused multi-head attention (online softmax) on tensor cores, with causal or padding masks.
#[gpu_template(name = "attention", op = attention, label = "q{block_q}_kv{block_kv}_w{warps}_s{stages}")]
pub mod attention {
    params! {
        block_q in [64, 128] + sm_90a [192],
        block_kv in [32, 64, 128],
        warps in [4, 8] + sm_90a [12],
        stages in [2, 3],
        // the grid schedule of the sm_90a TMA + wgmma pipeline: 1 makes a one-block-per-SM plan
        // persistent (blocks walk the tiles, prefetching the next tile's Q and K/V); a target
        // knob, named `_persistent1` only off its default
        persistent in [0] + sm_90a [1],
        // split-KV (sm_90a): each tile's keys walked by a cluster of this many blocks, their
        // partial softmaxes combined through distributed shared memory; named `_split_kv4` etc.
        // only off its default
        split_kv in [1] + sm_90a [2, 4, 8],
        // grouped heads (sm_90a): a tile's rows are a K/V head's group of query heads, each
        // with its queries, so grouped-query decode reads each K/V head once per group; named
        // `_group_heads1` only off its default
        group_heads in [0] + sm_90a [1],
    }
    constraints! { block_q % (warps * 16) == 0 }
    dtypes! { input: [f16, bf16], acc: f32, output: [f16, bf16] }
    kernel! {
        shared sq: q[block_q, head_dim];
        shared sk: k[block_kv, head_dim] x stages;
        shared sv: v[block_kv, head_dim] x stages;
        fragment s: acc[block_q, block_kv] warps [warps, 1];
        fragment acc: acc[block_q, head_dim] warps [warps, 1];
        load q -> sq;
        mainloop kv step block_kv stages stages schedule persistent split split_kv group group_heads {
            load k -> sk;
            load v -> sv;
            mma s = sq * sk^T;
            mask s;
            softmax s online acc;
            mma acc += s * sv;
        }
        normalize acc;
        epilogue acc -> o;
    }

    use tessera_dsl::{
        AttentionPipeline, AttentionTile, Config, DeviceCaps, Problem, Reject, RejectKind, Template,
    };

    /// f32 accumulators (scores and output) one thread may hold: with operands, addresses and
    /// softmax statistics on top, more than this overflows ~160 registers and spills.
    pub const MAX_ACC_PER_THREAD: u32 = 160;

    /// Reject configs whose score and output fragments need more than
    /// [`MAX_ACC_PER_THREAD`] f32 registers per thread on this device's warp size. A config
    /// the sm_90a TMA + wgmma pipeline serves has passed that pipeline's own register and
    /// shared-memory budgets instead.
    fn check(config: &Config, problem: &Problem, caps: &DeviceCaps) -> Result<(), Reject> {
        let ir = TEMPLATE
            .build(config)
            .map_err(|e| Reject::new(RejectKind::Unsupported, e.to_string()))?;
        let tile = AttentionTile::of(config);
        if let AttentionPipeline::Warpspecialized(_) =
            AttentionPipeline::select(caps.target, &tile, &config.variant)
        {
            super::split_keys_pays(&tile, problem, caps)?;
            return super::grouped_heads_pay(&tile, problem);
        }
        // `+ sm_90a` above: three consumer warpgroups of 64 rows
        crate::tma_values::reject_unserved(&TEMPLATE.space(), config, || {
            AttentionPipeline::hopper_plan(&tile, &config.variant)
                .err()
                .unwrap_or_else(|| format!("{} has no TMA pipeline", caps.target.name()))
        })?;
        // Wavefront-64 targets (MFMA) re-layout P through LDS: one padded block_q × block_kv
        // tile of 16-bit probabilities beside the Q, K and V tiles.
        if caps.warp_size == 64 {
            let scratch = ir.tile_m * (ir.tile_n + tessera_dsl::builder::SHARED_PAD) * 2;
            let total = ir.smem_bytes() + scratch;
            if total > caps.smem_per_block {
                return Err(Reject::new(
                    RejectKind::Resources,
                    format!(
                        "needs {total} bytes of LDS with the P scratch; {} allows {}",
                        caps.name, caps.smem_per_block
                    ),
                ));
            }
        }
        let acc = ir.acc_per_thread(caps.warp_size.max(1));
        if acc > MAX_ACC_PER_THREAD {
            return Err(Reject::new(
                RejectKind::Resources,
                format!(
                    "the score and output fragments need {acc} f32 registers per thread \
                     (limit {MAX_ACC_PER_THREAD}); use more warps or smaller blocks"
                ),
            ));
        }
        Ok(())
    }
}

/// Whether splitting each tile's keys over `split_kv` blocks can pay on this problem: only when
/// the tiles alone leave multiprocessors idle, and every block of a cluster gets a key block.
/// (The tuner times the rest; these only keep configs that cannot win out of the space.)
fn split_keys_pays(
    tile: &tessera_dsl::AttentionTile,
    problem: &tessera_dsl::Problem,
    caps: &tessera_dsl::DeviceCaps,
) -> Result<(), tessera_dsl::Reject> {
    use tessera_dsl::{Problem, Reject, RejectKind};
    let (n, Problem::Attention(a)) = (u64::from(tile.split_kv), problem) else {
        return Ok(());
    };
    if n <= 1 {
        return Ok(());
    }
    let tiles = attention_tiles(tile, a);
    if tiles >= u64::from(caps.sm_count) {
        return Err(Reject::new(
            RejectKind::Unsupported,
            format!(
                "split_kv {n}: {tiles} tiles already fill {} multiprocessors",
                caps.sm_count
            ),
        ));
    }
    let key_blocks = a.seq_kv.div_ceil(u64::from(tile.block_kv.max(1)));
    if key_blocks < n {
        return Err(Reject::new(
            RejectKind::Unsupported,
            format!("split_kv {n}: {key_blocks} key blocks cannot go round {n} blocks"),
        ));
    }
    Ok(())
}

/// The (row block, head, batch) tiles of an attention config: a query head's queries per tile,
/// or (grouped heads) a K/V head's group of query heads with their queries.
pub fn attention_tiles(
    tile: &tessera_dsl::AttentionTile,
    a: &tessera_dsl::AttentionProblem,
) -> u64 {
    let (rows, heads) = if tile.group_heads {
        (a.seq_q * (a.heads / a.kv_heads.max(1)), a.kv_heads)
    } else {
        (a.seq_q, a.heads)
    };
    rows.div_ceil(u64::from(tile.block_q.max(1))) * heads * a.batch
}

/// Whether grouping a K/V head's query heads into one tile's rows can pay: only with groups
/// (fewer K/V heads than query heads) whose rows fit one tile (decode-shaped: a few queries per
/// head), where each tile would otherwise read its K/V head again and fill few of its rows.
fn grouped_heads_pay(
    tile: &tessera_dsl::AttentionTile,
    problem: &tessera_dsl::Problem,
) -> Result<(), tessera_dsl::Reject> {
    use tessera_dsl::{Problem, Reject, RejectKind};
    let Problem::Attention(a) = problem else {
        return Ok(());
    };
    if !tile.group_heads {
        return Ok(());
    }
    let group = a.heads / a.kv_heads.max(1);
    if group <= 1 {
        return Err(Reject::new(
            RejectKind::Unsupported,
            format!(
                "group_heads: {} query heads over {} K/V heads have no group to share",
                a.heads, a.kv_heads
            ),
        ));
    }
    let rows = group * a.seq_q;
    if rows > u64::from(tile.block_q) {
        return Err(Reject::new(
            RejectKind::Unsupported,
            format!(
                "group_heads: a group's {rows} rows ({group} heads × {} queries) exceed one \
                 tile of {}; grouping is for decode-shaped problems",
                a.seq_q, tile.block_q
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::attention::TEMPLATE;
    use tessera_dsl::ir::{Operand, Stmt, TileCopy};
    use tessera_dsl::{AttentionProblem, Mask, Problem, RejectKind, Target, Template};

    fn problem(head_dim: u64) -> Problem {
        let mut p = AttentionProblem::new(2, 12, 384, head_dim);
        p.mask = Mask::Causal;
        Problem::Attention(p)
    }

    #[test]
    fn builds_the_fused_loop() {
        let config = TEMPLATE
            .config(&[128, 64, 8, 2, 0, 1, 0], &problem(64))
            .unwrap();
        let ir = TEMPLATE.build(&config).unwrap();
        // head_dim comes from the problem.
        let dims: Vec<_> = ir
            .shared
            .iter()
            .map(|s| (s.name.as_str(), s.source, s.rows, s.cols, s.stages))
            .collect();
        assert_eq!(
            dims,
            [
                ("sq", Operand::Q, 128, 64, 1),
                ("sk", Operand::K, 64, 64, 2),
                ("sv", Operand::V, 64, 64, 2),
            ]
        );
        // tile_m is block_q: the grid is ceil(seq_q / block_q) × heads × batch.
        assert_eq!((ir.tile_m, ir.warps_m, ir.warps_n), (128, 8, 1));
        assert!(matches!(&ir.body[0], Stmt::Fragment(f) if f.name == "s" && f.cols == 64));
        assert!(matches!(&ir.body[1], Stmt::Fragment(f) if f.name == "acc" && f.cols == 64));
        assert_eq!(
            ir.body[2],
            Stmt::LoadOnce {
                src: Operand::Q,
                dst: "sq".into()
            }
        );
        let Stmt::Mainloop {
            step,
            stages,
            copies,
            body,
        } = &ir.body[3]
        else {
            panic!("{:?}", ir.body[3]);
        };
        assert_eq!((*step, *stages), (64, 2));
        assert_eq!(
            copies,
            &[
                TileCopy {
                    src: Operand::K,
                    dst: "sk".into()
                },
                TileCopy {
                    src: Operand::V,
                    dst: "sv".into()
                }
            ]
        );
        assert_eq!(
            body,
            &[
                Stmt::Mma {
                    acc: "s".into(),
                    a: "sq".into(),
                    b: "sk".into(),
                    b_transposed: true,
                    fresh: true,
                    atom: None
                },
                Stmt::Mask { frag: "s".into() },
                Stmt::OnlineSoftmax {
                    scores: "s".into(),
                    acc: "acc".into()
                },
                Stmt::Mma {
                    acc: "acc".into(),
                    a: "s".into(),
                    b: "sv".into(),
                    b_transposed: false,
                    fresh: false,
                    atom: None
                },
            ]
        );
        assert_eq!(ir.body[4], Stmt::Normalize { acc: "acc".into() });
        assert!(matches!(
            &ir.body[5],
            Stmt::Epilogue { acc, dst: Operand::O, .. } if acc == "acc"
        ));
        assert_eq!(ir.body.len(), 6);
        let wide = TEMPLATE
            .config(&[128, 64, 8, 2, 0, 1, 0], &problem(128))
            .unwrap();
        let wide = TEMPLATE.build(&wide).unwrap();
        assert_eq!(wide.shared[0].cols, 128);
    }

    #[test]
    fn register_hungry_configs_are_rejected() {
        let caps = Target::Sm90a.nominal_caps();
        let p = problem(128);
        // 128 × (128 + 128) / (4 · 32) = 256 accumulators per thread.
        let config = TEMPLATE.config(&[128, 128, 4, 2, 0, 1, 0], &p).unwrap();
        let reject = TEMPLATE.check(&config, &p, &caps).unwrap_err();
        assert_eq!(reject.kind, RejectKind::Resources);
        assert!(reject.reason.contains("256 f32"), "{}", reject.reason);
        // 64 × (64 + 128) / (4 · 32) = 96.
        let config = TEMPLATE.config(&[64, 64, 4, 2, 0, 1, 0], &p).unwrap();
        TEMPLATE.check(&config, &p, &caps).unwrap();
        assert_eq!(TEMPLATE.build(&config).unwrap().acc_per_thread(32), 96);
        // The same config passes the generic validation too.
        TEMPLATE.validate(&config, &p, &caps).unwrap();
    }

    #[test]
    fn three_consumer_values_exist_for_the_tma_pipeline_only() {
        let p = problem(64);
        let hopper = Target::Sm90a.nominal_caps();
        // 3 consumer warpgroups of 64 rows: S, O and P of 64 and of 128 keys at head_dim 64
        // (80 and 128 registers) fit beside the 32 a consumer keeps of its 160
        for keys in [64, 128] {
            let c = TEMPLATE.config(&[192, keys, 12, 2, 0, 1, 0], &p).unwrap();
            TEMPLATE.check(&c, &p, &hopper).unwrap();
        }
        // 128 keys at head_dim 128 (160 registers) do not: the value has no pipeline to run
        // on, and says why
        let wide = problem(128);
        let c = TEMPLATE.config(&[192, 128, 12, 2, 0, 1, 0], &wide).unwrap();
        let r = TEMPLATE.check(&c, &wide, &hopper).unwrap_err();
        assert!(r.reason.contains("TMA-pipeline value"), "{}", r.reason);
        assert!(
            r.reason.contains("registers per consumer thread"),
            "{}",
            r.reason
        );
        // other targets are never offered 192 queries or 12 warps
        let space = TEMPLATE.space();
        assert!(space.params[0].only_on(192).is_some());
        assert!(space.params[2].only_on(12).is_some());
        assert!(space.params[0].only_on(128).is_none());
    }

    #[test]
    fn persistent_is_an_sm90a_knob_for_one_block_per_sm_plans() {
        let p = problem(128);
        let space = TEMPLATE.space();
        let knob = space
            .params
            .iter()
            .find(|p| p.name == "persistent")
            .unwrap();
        assert_eq!((knob.values.clone(), knob.default), (vec![0, 1], Some(0)));
        assert_eq!(knob.only_on(1), Some(vec![Target::Sm90a]));
        let tiled = TEMPLATE.config(&[128, 128, 8, 2, 0, 1, 0], &p).unwrap();
        let walking = TEMPLATE.config(&[128, 128, 8, 2, 1, 1, 0], &p).unwrap();
        // the default keeps the name (and `--config` string) of every kernel before the knob
        assert_eq!(
            tiled.kernel_name(),
            "attention_f16_f32acc_q128_kv128_w8_s2_bhsd_d128_causal_a8"
        );
        assert_eq!(
            space.assignment(&tiled.values()),
            "block_q=128,block_kv=128,warps=8,stages=2"
        );
        assert_eq!(
            walking.kernel_name(),
            "attention_f16_f32acc_q128_kv128_w8_s2_persistent1_bhsd_d128_causal_a8"
        );
        assert_eq!(
            space.parse_point("block_q=128,block_kv=128,warps=8,stages=2,persistent=1"),
            Ok(walking.values())
        );
        let hopper = Target::Sm90a.nominal_caps();
        TEMPLATE.validate(&walking, &p, &hopper).unwrap();
        assert!(TEMPLATE.build(&walking).unwrap().persistent);
        assert!(!TEMPLATE.build(&tiled).unwrap().persistent);
        // other targets are never offered it
        let r = TEMPLATE
            .validate(&walking, &p, &Target::Sm80.nominal_caps())
            .unwrap_err();
        assert_eq!(r.kind, RejectKind::OutsideSpace, "{r:?}");
        // a plan of two blocks an SM (one consumer, 64 keys of head_dim 64) is not persistent
        let p64 = problem(64);
        let two = TEMPLATE.config(&[64, 64, 4, 2, 1, 1, 0], &p64).unwrap();
        let r = TEMPLATE.validate(&two, &p64, &hopper).unwrap_err();
        assert_eq!(r.kind, RejectKind::Unsupported, "{r:?}");
        assert!(r.reason.contains("persistent = 1"), "{}", r.reason);
        assert!(r.reason.contains("two blocks per SM"), "{}", r.reason);
        // nor is a config the TMA pipeline does not serve at all (4 warps for 128 rows)
        let multistage = TEMPLATE.config(&[128, 64, 4, 2, 1, 1, 0], &p64).unwrap();
        let r = TEMPLATE.validate(&multistage, &p64, &hopper).unwrap_err();
        assert!(r.reason.contains("TMA-pipeline value"), "{}", r.reason);
    }

    #[test]
    fn split_kv_is_an_sm90a_knob_for_decode_shaped_problems() {
        let space = TEMPLATE.space();
        let knob = space.params.iter().find(|p| p.name == "split_kv").unwrap();
        assert_eq!(
            (knob.values.clone(), knob.default),
            (vec![1, 2, 4, 8], Some(1))
        );
        assert_eq!(knob.only_on(4), Some(vec![Target::Sm90a]));
        // decode: 16 tiles for 132 SMs, 64 key blocks of 128
        let mut a = AttentionProblem::new(1, 16, 1, 128);
        a.seq_kv = 8192;
        let decode = Problem::Attention(a);
        let split = TEMPLATE.config(&[64, 128, 4, 2, 0, 4, 0], &decode).unwrap();
        assert_eq!(
            split.kernel_name(),
            "attention_f16_f32acc_q64_kv128_w4_s2_split_kv4_bhsd_d128_a8"
        );
        assert_eq!(
            space.parse_point("block_q=64,block_kv=128,warps=4,stages=2,split_kv=4"),
            Ok(split.values())
        );
        let hopper = Target::Sm90a.nominal_caps();
        TEMPLATE.validate(&split, &decode, &hopper).unwrap();
        assert_eq!(TEMPLATE.build(&split).unwrap().split, 4);
        let whole = TEMPLATE.config(&[64, 128, 4, 2, 0, 1, 0], &decode).unwrap();
        assert_eq!(TEMPLATE.build(&whole).unwrap().split, 1);
        // other targets are never offered it
        let r = TEMPLATE
            .validate(&split, &decode, &Target::Sm80.nominal_caps())
            .unwrap_err();
        assert_eq!(r.kind, RejectKind::OutsideSpace, "{r:?}");
        // two consumers cannot split: the TMA pipeline's reason
        let wide = TEMPLATE.config(&[128, 64, 8, 2, 0, 2, 0], &decode).unwrap();
        let r = TEMPLATE.validate(&wide, &decode, &hopper).unwrap_err();
        assert!(r.reason.contains("one consumer"), "{}", r.reason);
        // a problem whose tiles already fill the device gains nothing from splitting
        let mut prefill = AttentionProblem::new(4, 16, 4096, 128);
        prefill.seq_kv = 4096;
        let prefill = Problem::Attention(prefill);
        let split_prefill = TEMPLATE
            .config(&[64, 128, 4, 2, 0, 4, 0], &prefill)
            .unwrap();
        let r = TEMPLATE
            .validate(&split_prefill, &prefill, &hopper)
            .unwrap_err();
        assert_eq!(r.kind, RejectKind::Unsupported, "{r:?}");
        assert!(r.reason.contains("already fill"), "{}", r.reason);
        // nor one with fewer key blocks than blocks in the cluster
        let mut short = AttentionProblem::new(1, 16, 1, 128);
        short.seq_kv = 300;
        let short = Problem::Attention(short);
        let eight = TEMPLATE.config(&[64, 128, 4, 2, 0, 8, 0], &short).unwrap();
        let r = TEMPLATE.validate(&eight, &short, &hopper).unwrap_err();
        assert!(r.reason.contains("3 key blocks"), "{}", r.reason);
    }

    #[test]
    fn group_heads_is_an_sm90a_knob_for_grouped_decode() {
        let space = TEMPLATE.space();
        let knob = space
            .params
            .iter()
            .find(|p| p.name == "group_heads")
            .unwrap();
        assert_eq!((knob.values.clone(), knob.default), (vec![0, 1], Some(0)));
        assert_eq!(knob.only_on(1), Some(vec![Target::Sm90a]));
        // LLaMA-class decode: 32 query heads over 8 K/V heads, one query each
        let mut a = AttentionProblem::new(1, 32, 1, 128);
        a.seq_kv = 16384;
        a.kv_heads = 8;
        let decode = Problem::Attention(a.clone());
        let grouped = TEMPLATE.config(&[64, 128, 4, 2, 0, 4, 1], &decode).unwrap();
        assert_eq!(
            grouped.kernel_name(),
            "attention_f16_f32acc_q64_kv128_w4_s2_split_kv4_group_heads1_bhsd_d128_a8"
        );
        let hopper = Target::Sm90a.nominal_caps();
        TEMPLATE.validate(&grouped, &decode, &hopper).unwrap();
        assert!(TEMPLATE.build(&grouped).unwrap().group_heads);
        // 8 tiles (one per K/V head) rather than 32
        let tile = tessera_dsl::AttentionTile::of(&grouped);
        assert_eq!(crate::attention::attention_tiles(&tile, &a), 8);
        let r = TEMPLATE
            .validate(&grouped, &decode, &Target::Sm80.nominal_caps())
            .unwrap_err();
        assert_eq!(r.kind, RejectKind::OutsideSpace, "{r:?}");
        // no group to share, or more rows than a tile: rejected with the reason
        let mut mha = AttentionProblem::new(1, 32, 1, 128);
        mha.seq_kv = 16384;
        let mha = Problem::Attention(mha);
        let c = TEMPLATE.config(&[64, 128, 4, 2, 0, 1, 1], &mha).unwrap();
        let r = TEMPLATE.validate(&c, &mha, &hopper).unwrap_err();
        assert!(r.reason.contains("no group to share"), "{}", r.reason);
        let mut prefill = a.clone();
        prefill.seq_q = 128;
        let prefill = Problem::Attention(prefill);
        let c = TEMPLATE
            .config(&[64, 128, 4, 2, 0, 1, 1], &prefill)
            .unwrap();
        let r = TEMPLATE.validate(&c, &prefill, &hopper).unwrap_err();
        assert!(r.reason.contains("decode-shaped"), "{}", r.reason);
    }
}
