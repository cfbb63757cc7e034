//! `tessera emit` prints exactly what the snapshot holds; bad input is exit code 2 with a
//! message naming the valid choices, never a panic.

use std::process::Command;

fn tessera(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .output()
        .expect("run tessera");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The body of an insta snapshot file (after its `---` header).
fn snapshot_body(name: &str) -> String {
    let path = format!(
        "{}/../tests/tests/snapshots/snapshots__{name}.snap",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let body = text.splitn(3, "---\n").nth(2).expect("snapshot header");
    body.to_string()
}

#[test]
fn emit_prints_the_snapshot() {
    let cases = [
        (
            "sm_80",
            "gemm_f16_f32acc_128x128x32_w2x2_s3_rcr_a8__sm_80__f16_rcr",
            "tile_m=128,tile_n=128,tile_k=32,warps_m=2,warps_n=2,stages=3",
            vec![],
        ),
        (
            "sm_90a",
            "gemm_f16_f32acc_128x256x32_w2x4_s3_rcr_a8__sm_90a__f16_rcr",
            "tile_m=128,tile_n=256,tile_k=32,warps_m=2,warps_n=4,stages=3",
            vec![],
        ),
        (
            "sm_90a",
            "gemm_f16_f32acc_128x128x64_w4x2_s4_rcr_bias_gelu_tanh_a8__sm_90a__f16_bias_gelu_tanh",
            "tile_m=128,tile_n=128,tile_k=64,warps_m=4,warps_n=2,stages=4",
            vec!["--shape", "12288x3072x768", "--epilogue", "bias,gelu_tanh"],
        ),
        (
            "sm_90a",
            "gemm_f16_f32acc_128x128x64_w4x2_s4_tma_store1_rcr_bias_gelu_tanh_a8__sm_90a__f16_bias_gelu_tanh_tma_store",
            "tile_m=128,tile_n=128,tile_k=64,warps_m=4,warps_n=2,stages=4,tma_store=1",
            vec!["--shape", "12288x3072x768", "--epilogue", "bias,gelu_tanh"],
        ),
        (
            "sm_90a",
            "gemm_f16_f32acc_128x256x64_w2x4_s3_tma_store1_multicast2_rcr_a8__sm_90a__f16_multicast_4096",
            "tile_m=128,tile_n=256,tile_k=64,warps_m=2,warps_n=4,stages=3,tma_store=1,multicast=2",
            vec!["--shape", "4096x4096x4096"],
        ),
        (
            "gfx90a",
            "gemm_bf16_f32acc_64x64x32_w2x2_s2_rrr_bias_gelu_a8__gfx90a__bf16_rrr_bias_gelu",
            "tile_m=64,tile_n=64,tile_k=32,warps_m=2,warps_n=2,stages=2",
            vec![
                "--shape",
                "4096x3072x768",
                "--dtype",
                "bf16",
                "--layout",
                "rrr",
                "--epilogue",
                "bias,gelu",
            ],
        ),
    ];
    for (target, snap, config, extra) in cases {
        let mut args = vec!["emit", "gemm", "--config", config, "--target", target];
        args.extend(extra);
        let (code, out, err) = tessera(&args);
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            out.trim_end(),
            snapshot_body(snap).trim_end(),
            "emit differs from snapshot {snap}"
        );
    }
}

#[test]
fn emit_prints_fused_snapshots_for_any_op() {
    let cases = [
        (
            "attention",
            "block_q=128,block_kv=64,warps=4,stages=2",
            "sm_90a",
            "{op: attention, batch: 8, heads: 12, seq: 384, head_dim: 64, mask: padding}",
            "attention_f16_f32acc_q128_kv64_w4_s2_bhsd_d64_padding_a8__sm_90a__f16_d64_padding",
        ),
        (
            "attention",
            "block_q=64,block_kv=64,warps=4,stages=2",
            "sm_80",
            "{op: attention, batch: 8, heads: 12, seq: 128, head_dim: 64, mask: padding, layout: bshd}",
            "attention_f16_f32acc_q64_kv64_w4_s2_bshd_d64_padding_a8__sm_80__f16_d64_padding_bshd",
        ),
        (
            "attention",
            "block_q=64,block_kv=64,warps=4,stages=2",
            "sm_80",
            "{op: attention, heads: 8, kv_heads: 2, head_dim: 64, mask: causal, packed: true, lens: [1, 77, 100, 197, 384]}",
            "attention_f16_f32acc_q64_kv64_w4_s2_thd_d64_causal_a8__sm_80__f16_d64_packed_causal",
        ),
        (
            "attention",
            "block_q=64,block_kv=64,warps=4,stages=2",
            "gfx90a",
            "{op: attention, batch: 2, heads: 32, kv_heads: 8, seq: 512, head_dim: 64}",
            "attention_f16_f32acc_q64_kv64_w4_s2_bhsd_d64_a8__gfx90a__f16_d64_gqa",
        ),
        (
            "gemm",
            "tile_m=64,tile_n=64,tile_k=256,warps_m=2,warps_n=2,stages=3",
            "sm_90a",
            "{op: gemm, m: 1, n: 8192, k: 4096}",
            "gemm_f16_f32acc_64x64x256_w2x2_s3_rcr_a8__sm_90a__f16_decode",
        ),
        (
            "embedding",
            "rows_per_block=4,threads_per_row=128,vector=8",
            "sm_80",
            "{op: embedding, batch: 32, seq: 128, hidden: 768}",
            "embedding_f16_f32acc_r4_t128_v8_h768_a8__sm_80__f16_h768",
        ),
        (
            "layernorm",
            "rows_per_block=4,threads_per_row=128,vector=8",
            "gfx90a",
            "{op: layernorm, rows: 12288, cols: 768, fused: [residual, bias]}",
            "layernorm_f16_f32acc_r4_t128_v8_residual_bias_h768_a8__gfx90a__f16_h768_residual_bias",
        ),
    ];
    for (template, config, target, problem, snap) in cases {
        let (code, out, err) = tessera(&[
            "emit",
            template,
            "--config",
            config,
            "--target",
            target,
            "--problem",
            problem,
        ]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            out.trim_end(),
            snapshot_body(snap).trim_end(),
            "emit differs from snapshot {snap}"
        );
    }
    // a wrong attention layout is a usage error naming the valid ones
    let (code, _, err) = tessera(&[
        "emit",
        "attention",
        "--config",
        "block_q=64,block_kv=64,warps=4,stages=2",
        "--problem",
        "{op: attention, batch: 1, heads: 2, seq: 64, head_dim: 64, layout: bsdh}",
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("unknown layout `bsdh`") && err.contains("bshd"),
        "{err}"
    );
    // a problem of another op, or several problems, is a usage error
    let (code, _, err) = tessera(&[
        "emit",
        "layernorm",
        "--config",
        "rows_per_block=4,threads_per_row=128,vector=8",
        "--problem",
        "{op: softmax, rows: 8, cols: 768}",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("implements layernorm, not softmax"), "{err}");
    let (code, _, err) = tessera(&[
        "emit",
        "layernorm",
        "--config",
        "rows_per_block=4,threads_per_row=128,vector=8",
        "--problem",
        "{op: layernorm, rows: [8, 16], cols: 768}",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("describes several problems"), "{err}");
}

#[test]
fn bad_input_exits_2_naming_choices() {
    let cfg = "tile_m=128,tile_n=128,tile_k=32,warps_m=2,warps_n=2,stages=3";
    let cases: [(&[&str], &str); 8] = [
        (
            &["emit", "gemx", "--config", cfg],
            "templates are: attention, embedding, gemm, layernorm, softmax",
        ),
        (
            &["emit", "gemm", "--config", cfg, "--target", "sm_75"],
            "use sm_80, sm_90a, gfx90a or gfx942",
        ),
        (
            &[
                "emit",
                "gemm",
                "--config",
                "tile_m=96,tile_n=128,tile_k=32,warps_m=2,warps_n=2,stages=3",
            ],
            "choose one of 64, 128, 256",
        ),
        (
            &["emit", "gemm", "--config", "tile_m:128"],
            "expected `name=value,name=value,...`",
        ),
        (
            &["emit", "gemm", "--config", cfg, "--dtype", "f64"],
            "use f16, bf16 or f32",
        ),
        (
            &["emit", "gemm", "--config", cfg, "--shape", "0x768x768"],
            "`m` must be positive",
        ),
        (
            &["emit", "gemm", "--config", cfg, "--epilogue", "gleu"],
            "use beta_c, bias, relu",
        ),
        (
            &["emit", "gemm", "--config", cfg, "--shape", "384x768"],
            "expected MxNxK",
        ),
    ];
    for (args, want) in cases {
        let (code, _, err) = tessera(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn templates_lists_the_gemm_space() {
    let (code, out, _) = tessera(&["templates"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("gemm") && out.contains("space:") && out.contains("tile_m"),
        "{out}"
    );
}

#[test]
fn devices_without_a_gpu_says_so_and_exits_0() {
    let (code, out, _) = tessera(&["devices"]);
    assert_eq!(code, 0);
    assert!(!out.trim().is_empty());
}
