//! Generated source is deterministic and reviewed like code: one snapshot per representative
//! config × problem class × target. `tessera emit` prints exactly these (cli/tests/emit.rs).

use tessera_dsl::Target;
use tessera_tests::{config_for, gemm, variants, REPRESENTATIVE, REPRESENTATIVE_MFMA32};

#[test]
fn gemm_sources_match_snapshots() {
    let mut taken = 0;
    for target in [Target::Sm80, Target::Sm90a, Target::Gfx90a] {
        for (label, problem) in variants() {
            for values in REPRESENTATIVE {
                let Some(config) = config_for(&values, &problem, target) else {
                    continue;
                };
                let src = tessera_codegen::generate(gemm(), &config, target).expect("codegen");
                let again = tessera_codegen::generate(gemm(), &config, target).expect("codegen");
                assert_eq!(src.source, again.source, "generation is not deterministic");
                insta::assert_snapshot!(
                    format!("{}__{}__{}", config.kernel_name(), target, label),
                    src.source
                );
                taken += 1;
            }
        }
    }
    assert!(taken >= 18, "only {taken} snapshots");
}

/// AMD's 32x32x8 MFMA atom (`mfma = 32`): one GEMM per CDNA target, K-contiguous B on
/// gfx90a, N-contiguous B with a fused epilogue on gfx942.
#[test]
fn mfma32_gemm_sources_match_snapshots() {
    let all = variants();
    for (target, values, label) in [
        (Target::Gfx90a, REPRESENTATIVE_MFMA32[1], "f16_rcr"),
        (
            Target::Gfx942,
            REPRESENTATIVE_MFMA32[0],
            "bf16_rrr_bias_gelu",
        ),
    ] {
        let (_, problem) = all.iter().find(|(l, _)| *l == label).expect("variant");
        let config = config_for(&values, problem, target).expect("valid on AMD");
        assert!(config.kernel_name().contains("_mfma32_"), "{config}");
        let src = tessera_codegen::generate(gemm(), &config, target).expect("codegen");
        assert!(src.source.contains("__builtin_amdgcn_mfma_f32_32x32x8"));
        assert!(!src.source.contains("__builtin_amdgcn_mfma_f32_16x16x16"));
        insta::assert_snapshot!(
            format!("{}__{}__{}", config.kernel_name(), target, label),
            src.source
        );
    }
}

/// sm_90a-only GEMM geometry: a decode GEMM with 256-deep K steps (4 panels a stage) and a
/// 384-row BERT GEMM with 160-wide tiles; BERT's first FFN GEMM with bias + tanh GELU, the
/// epilogue benchmark's case, with the warpgroups' stores and with a TMA store; its second
/// at 128 tokens split over 4-block clusters; and 4096^3 with B multicast over 2-block clusters.
#[test]
fn sm90a_deep_k_and_wide_tile_gemm_sources_match_snapshots() {
    use tessera_dsl::{EpilogueOp, GemmProblem, Problem};
    let decode = Problem::Gemm(GemmProblem::new(1, 8192, 4096));
    let bert = Problem::Gemm(GemmProblem::new(384, 3072, 768));
    let mut ffn1 = GemmProblem::new(12288, 3072, 768);
    ffn1.epilogue = vec![EpilogueOp::Bias, EpilogueOp::GeluTanh];
    let ffn1 = Problem::Gemm(ffn1);
    let mut ffn2 = GemmProblem::new(128, 768, 3072);
    ffn2.epilogue = vec![EpilogueOp::Bias];
    let ffn2 = Problem::Gemm(ffn2);
    let square = Problem::Gemm(GemmProblem::new(4096, 4096, 4096));
    for (values, problem, label, marker) in [
        (
            [64, 64, 256, 2, 2, 3, 16, 1, 0, 1],
            &decode,
            "f16_decode",
            "4 panels of 64 K each",
        ),
        (
            [64, 160, 64, 2, 2, 6, 16, 1, 0, 1],
            &bert,
            "f16_bert_384",
            "tsr_wgmma_m64n160(",
        ),
        (
            [128, 128, 64, 4, 2, 4, 16, 1, 0, 1],
            &ffn1,
            "f16_bias_gelu_tanh",
            "tsr_exp2(v0 * (-2.3022082f + -0.10294324f * (v0 * v0)))",
        ),
        (
            [128, 128, 64, 4, 2, 4, 16, 1, 1, 1],
            &ffn1,
            "f16_bias_gelu_tanh_tma_store",
            "cp.async.bulk.tensor.3d.global.shared::cta.bulk_group",
        ),
        (
            [64, 64, 64, 2, 2, 8, 16, 4, 0, 1],
            &ffn2,
            "f16_split_k_bert_128",
            "__cluster_dims__(4, 1, 1)",
        ),
        (
            [128, 256, 64, 2, 4, 3, 16, 1, 1, 2],
            &square,
            "f16_multicast_4096",
            ".multicast::cluster",
        ),
    ] {
        let config = config_for(&values, problem, Target::Sm90a).expect("valid on sm_90a");
        let src = tessera_codegen::generate(gemm(), &config, Target::Sm90a).expect("codegen");
        assert!(src.source.contains(marker), "{config}: no `{marker}`");
        insta::assert_snapshot!(
            format!("{}__{}__{}", config.kernel_name(), Target::Sm90a, label),
            src.source
        );
    }
}

#[test]
fn fused_sources_match_snapshots() {
    let mut taken = 0;
    for target in [Target::Sm80, Target::Sm90a, Target::Gfx90a] {
        for (t, config, label) in tessera_tests::fused_configs(target) {
            let src = tessera_codegen::generate(t, &config, target).expect("codegen");
            let again = tessera_codegen::generate(t, &config, target).expect("codegen");
            assert_eq!(src.source, again.source, "generation is not deterministic");
            insta::assert_snapshot!(
                format!("{}__{}__{}", config.kernel_name(), target, label),
                src.source
            );
            taken += 1;
        }
    }
    assert!(taken >= 36, "only {taken} snapshots");
}

/// The persistent sm_90a attention (`persistent = 1`): one block per SM walking the tiles.
/// Only sm_90a offers the knob; its default keeps every other snapshot's name and source.
#[test]
fn persistent_attention_sources_match_snapshots() {
    tessera_library::templates();
    let t = tessera_dsl::find("attention").expect("registered");
    let fixtures = tessera_tests::fused_fixtures();
    for (values, label) in tessera_tests::PERSISTENT_ATTENTION {
        let (_, problem) = fixtures
            .iter()
            .flat_map(|f| &f.problems)
            .find(|(l, _)| *l == label)
            .expect("fixture problem");
        for target in [Target::Sm80, Target::Gfx90a] {
            assert!(
                tessera_tests::valid_config(t, &values, problem, target).is_none(),
                "{target} offers persistent = 1"
            );
        }
        let target = Target::Sm90a;
        let config = tessera_tests::valid_config(t, &values, problem, target).expect("valid");
        assert!(config.kernel_name().contains("_persistent1_"), "{config}");
        let src = tessera_codegen::generate(t, &config, target).expect("codegen");
        let again = tessera_codegen::generate(t, &config, target).expect("codegen");
        assert_eq!(src.source, again.source, "generation is not deterministic");
        assert_eq!(src.schedule, tessera_codegen::TileSchedule::Persistent);
        assert!(src.source.contains("tsr_mbar_arrive(q_empty)"));
        insta::assert_snapshot!(
            format!("{}__{}__{}", config.kernel_name(), target, label),
            src.source
        );
    }
}

/// Every (config, problem, point) of the fused attention fixtures valid on sm_90a.
fn sm90a_attention_fixtures() -> Vec<(tessera_dsl::Config, tessera_dsl::Problem, Vec<i64>)> {
    tessera_library::templates();
    let t = tessera_dsl::find("attention").expect("registered");
    let mut out = Vec::new();
    for f in tessera_tests::fused_fixtures() {
        for (_, problem) in &f.problems {
            for v in &f.points {
                if let Some(c) = tessera_tests::valid_config(t, v, problem, Target::Sm90a) {
                    out.push((c, problem.clone(), v.clone()));
                }
            }
        }
    }
    out
}

/// B multicast (`multicast = 2`, sm_90a only): a persistent grid of 2-block clusters, each
/// block copying half of every B stage (its tensor map's box is half the tile's lines), the
/// grid a whole number of clusters that walk pairs of M-tiles (an odd count rounds up).
#[test]
fn multicast_gemm_is_a_persistent_grid_of_block_pairs() {
    use tessera_dsl::{GemmProblem, Problem};
    let square = Problem::Gemm(GemmProblem::new(4096, 4096, 4096));
    let values = [128, 256, 64, 2, 4, 4, 16, 1, 0, 2];
    let config = config_for(&values, &square, Target::Sm90a).expect("valid on sm_90a");
    assert!(config.kernel_name().contains("_multicast2"), "{config}");
    let src = tessera_codegen::generate(gemm(), &config, Target::Sm90a).expect("codegen");
    assert_eq!(
        src.schedule,
        tessera_codegen::TileSchedule::PersistentClusters { ctas: 2 }
    );
    assert_eq!(src.schedule.cluster_size(), 2);
    assert!(src.source.contains("__cluster_dims__(2, 1, 1)"));
    assert_eq!(src.tensor_maps[1].box_lines, 128);
    // 32 x 16 tiles: 256 tile pairs, more than the 66 clusters of 132 SMs
    assert_eq!(src.grid(&square, 132), [132, 1, 1]);
    // 5 x 2 tiles: 3 pairs of M-tiles (the last half past M) by 2
    let odd = Problem::Gemm(GemmProblem::new(640, 512, 256));
    assert_eq!(src.grid(&odd, 132), [12, 1, 1]);
    // two batches share the SMs: 33 clusters each
    let mut batched = GemmProblem::new(4096, 4096, 4096);
    batched.batch = 2;
    assert_eq!(src.grid(&Problem::Gemm(batched), 132), [66, 1, 2]);
    // a problem of one M-tile has nothing to share, and no other target offers the knob
    let one_tile = Problem::Gemm(GemmProblem::new(128, 4096, 4096));
    assert!(config_for(&values, &one_tile, Target::Sm90a).is_none());
    assert!(config_for(&values, &square, Target::Sm80).is_none());
}

/// Split-KV attention (`split_kv` 4 and 8, sm_90a only): one cluster of that many blocks per
/// tile, `__cluster_dims__` in the source, the grid's x that many times the tiles'.
#[test]
fn split_kv_attention_is_a_cluster_per_tile() {
    let t = tessera_dsl::find("attention").expect("registered");
    let mut taken = 0;
    for (config, problem, v) in sm90a_attention_fixtures() {
        let Some(n) = config.get("split_kv").filter(|n| *n > 1) else {
            continue;
        };
        // grouped tiles' grid: `grouped_heads_tile_a_kv_group`
        if config.get("group_heads") == Some(1) {
            continue;
        }
        let n = u32::try_from(n).unwrap();
        let src = tessera_codegen::generate(t, &config, Target::Sm90a).expect("codegen");
        assert_eq!(
            src.schedule,
            tessera_codegen::TileSchedule::Clustered { ctas: n }
        );
        assert!(src.source.contains(&format!("__cluster_dims__({n}, 1, 1)")));
        assert!(src.source.contains("tsr_ld_cluster_v4"));
        let tessera_dsl::Problem::Attention(a) = &problem else {
            panic!("{config}")
        };
        let q_blocks = a.seq_q.div_ceil(64) as u32;
        assert_eq!(
            src.grid(&problem, 132),
            [q_blocks * n, a.heads as u32, a.batch as u32],
            "{config}"
        );
        // and no other target offers the value
        assert!(tessera_tests::valid_config(t, &v, &problem, Target::Sm80).is_none());
        taken += 1;
    }
    assert!(taken >= 4, "only {taken} split-KV fixtures");
}

/// Grouped heads (`group_heads = 1`, sm_90a only): tiles are (row block, K/V head, batch) over
/// a group's `heads / kv_heads × seq_q` rows, Q read through a `[batch][heads × seq_q]` view.
#[test]
fn grouped_heads_tile_a_kv_group() {
    let t = tessera_dsl::find("attention").expect("registered");
    let mut taken = 0;
    for (config, problem, v) in sm90a_attention_fixtures() {
        if config.get("group_heads") != Some(1) {
            continue;
        }
        let src = tessera_codegen::generate(t, &config, Target::Sm90a).expect("codegen");
        assert_eq!(src.rows, tessera_codegen::TileRows::KvGroup);
        assert!(src.source.contains("q_row0 + q0"));
        let tessera_dsl::Problem::Attention(a) = &problem else {
            panic!("{config}")
        };
        let ctas = src.schedule.cluster_size();
        let rows = a.seq_q * (a.heads / a.kv_heads);
        assert_eq!(
            src.grid(&problem, 132),
            [
                rows.div_ceil(64) as u32 * ctas,
                a.kv_heads as u32,
                a.batch as u32
            ],
            "{config}"
        );
        assert_eq!(
            src.tensor_maps[0].lines,
            tessera_dsl::Extent::Product("heads".into(), "seq_q".into())
        );
        assert!(tessera_tests::valid_config(t, &v, &problem, Target::Sm80).is_none());
        taken += 1;
    }
    assert!(taken >= 4, "only {taken} grouped-heads fixtures");
}
