//! `tessera tune` on the simulated device (CI): the whole flow through real worker processes,
//! and the failure paths a shared tuning service must survive.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use tessera_cache::{Cache, Status};

const SMALL: &str = "defaults: { op: gemm }\nproblems:\n  - { name: tiny, m: 64, n: 128, k: 64 }\n  - { name: fused, m: 96, n: 256, k: 128, epilogue: [bias, gelu] }\n  - { name: ragged, m: 57, n: 130, k: 72, dtype: bf16, out_dtype: f32, layout: rrr, epilogue: [beta_c, residual] }\n";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tessera")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn tune(args: &[&str]) -> Output {
    Command::new(bin())
        .arg("tune")
        .args(args)
        .env_remove("TESSERA_CACHE")
        .output()
        .expect("run tessera tune")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn rows(cache: &Path) -> Vec<tessera_cache::ResultRow> {
    let c = Cache::open(cache).unwrap();
    let mut all = Vec::new();
    for e in c.why("").unwrap() {
        all.extend(e.candidates);
    }
    all
}

#[test]
fn sim_tune_stores_results_and_a_warm_rerun_measures_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let shapes = write(dir.path(), "small.yaml", SMALL);
    let cache = dir.path().join("tune.db");
    let c = cache.to_str().unwrap();
    let o = tune(&[
        "--gpu",
        "h100",
        "--sim",
        "--shapes",
        shapes.to_str().unwrap(),
        "--cache",
        c,
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("3 measured, 0 cached") && out.contains("SIMULATED"),
        "{out}"
    );
    let winners = Cache::open(&cache).unwrap().list_winners().unwrap();
    assert_eq!(winners.len(), 3);
    assert!(winners.iter().all(|w| w.device.simulated));
    let all = rows(&cache);
    assert!(all
        .iter()
        .any(|r| r.status == Status::Rejected && !r.reason.is_empty()));
    assert!(all
        .iter()
        .filter(|r| r.status == Status::Ok)
        .all(|r| r.timing.is_some() && r.max_rel_error.is_some()));
    // warm: nothing measured
    let o = tune(&[
        "--gpu",
        "h100",
        "--sim",
        "--shapes",
        shapes.to_str().unwrap(),
        "--cache",
        c,
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["measured_problems"], 0, "{doc}");
    assert_eq!(doc["problems"], 3);
    assert_eq!(rows(&cache).len(), all.len(), "a warm run wrote rows");
}

#[test]
fn sim_kill_9_mid_sweep_then_resume_loses_no_finished_result() {
    let dir = tempfile::tempdir().unwrap();
    let shapes = write(
        dir.path(),
        "big.yaml",
        "defaults: { op: gemm }\nproblems:\n  - { name: a, m: 1024, n: 1024, k: 512 }\n  - { name: b, m: 1024, n: 768, k: 512 }\n",
    );
    let cache = dir.path().join("tune.db");
    let mut child = Command::new(bin())
        .args([
            "tune",
            "--gpu",
            "h100",
            "--sim",
            "--quiet",
            "--no-prune",
            "--shapes",
            shapes.to_str().unwrap(),
            "--cache",
            cache.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let ok = if cache.exists() {
            rows(&cache)
                .iter()
                .filter(|r| r.status == Status::Ok)
                .count()
        } else {
            0
        };
        if ok >= 3 || Instant::now() > deadline {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = rows(&cache);
    let finished: Vec<_> = before.iter().filter(|r| r.status == Status::Ok).collect();
    assert!(
        finished.len() >= 3,
        "the sweep finished only {} candidates before the kill",
        finished.len()
    );
    assert!(
        Cache::open(&cache).unwrap().list_winners().unwrap().len() < 2,
        "the kill came too late to test resume"
    );
    let o = tune(&[
        "--gpu",
        "h100",
        "--sim",
        "--resume",
        "--no-prune",
        "--quiet",
        "--shapes",
        shapes.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let after = rows(&cache);
    for r in finished {
        let same = after
            .iter()
            .find(|a| a.kernel_name == r.kernel_name && a.problem.key == r.problem.key)
            .expect("a finished row was lost");
        assert_eq!(
            same.provenance.measured_at, r.provenance.measured_at,
            "{} was measured again",
            r.kernel_name
        );
    }
    assert_eq!(
        Cache::open(&cache).unwrap().list_winners().unwrap().len(),
        2
    );
}

#[test]
fn sim_two_tuners_share_one_cache() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.yaml", "problems:\n  - { op: gemm, m: 64, n: 128, k: 64 }\n  - { op: gemm, m: 128, n: 128, k: 64 }\n");
    let b = write(dir.path(), "b.yaml", "problems:\n  - { op: gemm, m: 64, n: 256, k: 64 }\n  - { op: gemm, m: 256, n: 128, k: 64 }\n");
    let cache = dir.path().join("shared.db");
    let spawn = |s: &Path| {
        Command::new(bin())
            .args([
                "tune",
                "--gpu",
                "h100",
                "--sim",
                "--quiet",
                "--shapes",
                s.to_str().unwrap(),
                "--cache",
                cache.to_str().unwrap(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (ca, cb) = (spawn(&a), spawn(&b));
    for c in [ca, cb] {
        let o = c.wait_with_output().unwrap();
        let t = text(&o);
        assert!(o.status.success() && !t.contains("locked"), "{t}");
    }
    assert_eq!(
        Cache::open(&cache).unwrap().list_winners().unwrap().len(),
        4
    );
}

#[test]
fn sim_planted_faults_become_rows_and_the_sweep_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let shapes = write(
        dir.path(),
        "one.yaml",
        "problems:\n  - { op: gemm, m: 128, n: 128, k: 64 }\n",
    );
    let cache = dir.path().join("tune.db");
    let o = tune(&[
        "--gpu",
        "h100",
        "--sim",
        "--quiet",
        "--timeout",
        "3",
        "--shapes",
        shapes.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
        "--no-prune",
        "--plant-fault",
        "128x128x32_w2x2_s3=wrong_value",
        "--plant-fault",
        "64x64x32_w2x2_s2=crash",
        "--plant-fault",
        "64x64x32_w2x2_s3=hang",
        "--plant-fault",
        "64x128x32_w2x2_s2=launch_failure",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let all = rows(&cache);
    // the whole-K kernel of each config (its split-K twins share the label's prefix)
    let find = |s: &str| {
        all.iter()
            .find(|r| r.kernel_name.contains(&format!("{s}_rcr")))
            .unwrap_or_else(|| panic!("no row for {s}"))
    };
    let wrong = find("128x128x32_w2x2_s3");
    assert_eq!(wrong.status, Status::WrongResult, "{wrong:?}");
    assert!(wrong.timing.is_none(), "a wrong kernel was timed");
    assert_eq!(find("64x64x32_w2x2_s2").status, Status::LaunchError);
    assert!(find("64x64x32_w2x2_s2").reason.contains("crashed"));
    assert_eq!(find("64x64x32_w2x2_s3").status, Status::Timeout);
    assert_eq!(find("64x128x32_w2x2_s2").status, Status::LaunchError);
    let winners = Cache::open(&cache).unwrap().list_winners().unwrap();
    assert_eq!(winners.len(), 1);
    assert!(!winners[0].kernel_name.contains("128x128x32_w2x2_s3"));
}

#[test]
fn bad_input_is_exit_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.yaml", SMALL);
    let bad_yaml = write(
        dir.path(),
        "bad.yaml",
        "problems:\n  - { op: gemm, m: [1, 2\n",
    );
    let zero = write(
        dir.path(),
        "zero.yaml",
        "problems:\n  - { op: gemm, m: 0, n: 8, k: 8 }\n",
    );
    let garbage = write(
        dir.path(),
        "garbage.db",
        "this is not a database, but it is somebody's file\n",
    );
    let g = good.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "--gpu",
                "h100",
                "--sim",
                "--shapes",
                bad_yaml.to_str().unwrap(),
            ],
            "bad.yaml:",
        ),
        (
            vec!["--gpu", "h100", "--sim", "--shapes", zero.to_str().unwrap()],
            "gemm: dimension `m` must be positive",
        ),
        (
            vec!["--gpu", "h800", "--shapes", g],
            "use one of h100, h200, a100, mi250, mi300",
        ),
        (vec!["--gpu", "mi250", "--shapes", g], "--compile-only"),
        (
            vec![
                "--gpu",
                "h100",
                "--sim",
                "--shapes",
                g,
                "--templates",
                "gemx",
            ],
            "templates are: attention, embedding, gemm, layernorm, softmax",
        ),
        (
            vec![
                "--gpu",
                "h100",
                "--sim",
                "--shapes",
                g,
                "--cache",
                garbage.to_str().unwrap(),
            ],
            "untouched",
        ),
    ];
    for (args, want) in cases {
        let o = tune(&args);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {t}");
        assert!(t.contains(want), "{args:?}: {t}");
        assert!(!t.contains("panicked"), "{t}");
    }
    assert_eq!(
        std::fs::read_to_string(&garbage).unwrap(),
        "this is not a database, but it is somebody's file\n"
    );
    // A GPU that is not here: clear error naming what is (none here).
    let o = tune(&[
        "--gpu",
        "h100",
        "--shapes",
        g,
        "--cache",
        dir.path().join("x.db").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--gpu h100"), "{}", text(&o));
}

#[test]
fn compile_only_builds_every_candidate_for_the_named_gpu() {
    let nvrtc = tessera_device::cuda::nvrtc_available();
    if !nvrtc {
        assert!(
            std::env::var_os("TESSERA_REQUIRE_NVRTC").is_none(),
            "TESSERA_REQUIRE_NVRTC is set but NVRTC is missing"
        );
        eprintln!("skipped: no NVRTC");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let shapes = write(
        dir.path(),
        "one.yaml",
        "problems:\n  - { op: gemm, m: 384, n: 768, k: 768, epilogue: [bias] }\n",
    );
    let o = tune(&[
        "--gpu",
        "a100",
        "--compile-only",
        "--json",
        "--jobs",
        "2",
        "--shapes",
        shapes.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["target"], "sm_80");
    assert!(doc["compiled"].as_u64().unwrap() >= 30, "{doc}");
    assert_eq!(doc["failed"], 0);
    assert_eq!(doc["spilled"], 0);
}

#[test]
fn compile_only_for_mi250_uses_hipcc() {
    let found = tessera_device::hipcc::HipToolchain::discover().is_ok();
    if toolchain_present(found, "TESSERA_REQUIRE_HIPCC", "hipcc") {
        compile_only_for_amd("mi250", "gfx90a");
    }
}

/// Debian's hipcc predates gfx942: MI300 candidates go through clang-19 and the ROCm device
/// libraries (assembly, with the same resource report).
#[test]
fn compile_only_for_mi300_uses_clang_19() {
    let found = tessera_device::hipcc::ClangHip::discover().is_ok();
    if toolchain_present(
        found,
        "TESSERA_REQUIRE_GFX942",
        "clang-19 and the ROCm device libraries",
    ) {
        compile_only_for_amd("mi300", "gfx942");
    }
}

/// Whether a test can use a toolchain: a missing one skips the test, unless `require` is set
/// (as CI sets it), where it fails.
fn toolchain_present(found: bool, require: &str, what: &str) -> bool {
    if !found {
        assert!(
            std::env::var_os(require).is_none(),
            "{require} is set but {what} is missing"
        );
        eprintln!("skipped: no {what}");
    }
    found
}

/// `tune --compile-only` for an AMD GPU: every candidate of one BERT GEMM compiles, none
/// spills, and the LDS limit rejects some configs before compiling.
fn compile_only_for_amd(gpu: &str, target: &str) {
    let dir = tempfile::tempdir().unwrap();
    let shapes = write(
        dir.path(),
        "one.yaml",
        "problems:\n  - { op: gemm, m: 384, n: 768, k: 768, epilogue: [bias] }\n",
    );
    let o = tune(&[
        "--gpu",
        gpu,
        "--compile-only",
        "--json",
        "--jobs",
        "2",
        "--shapes",
        shapes.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["target"], target);
    assert!(doc["compiled"].as_u64().unwrap() >= 20, "{doc}");
    assert!(
        doc["rejected_configs"].as_u64().unwrap() > 0,
        "LDS limits should reject some configs: {doc}"
    );
    assert_eq!(doc["failed"], 0, "{doc}");
    assert_eq!(doc["spilled"], 0, "{doc}");
}

#[test]
fn sim_tune_covers_layernorm_softmax_attention_and_embedding() {
    let dir = tempfile::tempdir().unwrap();
    let shapes = write(
        dir.path(),
        "fused.yaml",
        "problems:\n\
         - { name: ln, op: layernorm, rows: 33, cols: 768, fused: [residual] }\n\
         - { name: sm, op: softmax, rows: 12, cols: 100, mask_period: 6 }\n\
         - { name: attn, op: attention, batch: 1, heads: 2, seq: 40, head_dim: 64, mask: padding }\n\
         - { name: attn_tok, op: attention, batch: 2, heads: 2, seq: 24, head_dim: 64, mask: padding, layout: bshd }\n\
         - { name: emb, op: embedding, batch: 3, seq: 20, hidden: 256, vocab: 500, positions: 32 }\n",
    );
    let cache = dir.path().join("fused.db");
    let o = tune(&[
        "--gpu",
        "h100",
        "--sim",
        "--shapes",
        shapes.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("5 measured, 0 cached"), "{out}");
    // each op is tuned by its own template; layernorm reports bandwidth, attention FLOP/s
    let winners = Cache::open(&cache).unwrap().list_winners().unwrap();
    let mut names: Vec<&str> = winners.iter().map(|w| w.kernel_name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names.len(), 5);
    assert!(
        names[0].starts_with("attention_f16_f32acc_") && names[0].contains("_bhsd_d64_padding")
    );
    assert!(
        names[1].starts_with("attention_f16_f32acc_") && names[1].contains("_bshd_d64_padding")
    );
    assert!(names[2].starts_with("embedding_f16_f32acc_") && names[2].ends_with("_h256_a8"));
    assert!(names[3].starts_with("layernorm_f16_f32acc_") && names[3].contains("_residual_h768"));
    assert!(names[4].starts_with("softmax_f16_f32acc_") && names[4].ends_with("_h100_mask_a4"));
    let emb_line = out
        .lines()
        .find(|l| l.starts_with("emb "))
        .expect("emb row");
    assert!(emb_line.contains("GB/s"), "{emb_line}");
    let ln_line = out.lines().find(|l| l.starts_with("ln ")).expect("ln row");
    assert!(ln_line.contains("GB/s"), "{ln_line}");
    let attn_line = out
        .lines()
        .find(|l| l.starts_with("attn "))
        .expect("attn row");
    assert!(attn_line.contains("TFLOP/s"), "{attn_line}");
    // rows whose vector exceeds the 4-element alignment of cols = 100 were rejected, with a reason
    assert!(rows(&cache)
        .iter()
        .any(|r| r.status == Status::Rejected && r.reason.contains("exceeds the rows' alignment")));
}

/// Numeric flags out of range are usage errors (exit 2, the flag named), never silently
/// clamped or accepted: before, `--budget nan`/`-1`, `--iters 0`, `--timeout 0` and `--jobs 0`
/// ran, and `--budget inf` panicked.
#[test]
fn out_of_range_numeric_flags_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let shapes = write(
        dir.path(),
        "s.yaml",
        "problems:\n  - { op: gemm, m: 64, n: 64, k: 64, dtype: f16 }\n",
    );
    let cache = dir.path().join("c.db");
    for (flag, value) in [
        ("--budget", "inf"),
        ("--budget", "nan"),
        ("--budget", "-1"),
        ("--budget", "0"),
        ("--iters", "0"),
        ("--timeout", "0"),
        ("--jobs", "0"),
    ] {
        let o = tune(&[
            "--gpu",
            "h100",
            "--sim",
            "--quiet",
            "--shapes",
            shapes.to_str().unwrap(),
            "--cache",
            cache.to_str().unwrap(),
            flag,
            value,
        ]);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}: {}", text(&o));
        assert!(text(&o).contains(flag), "{flag} {value}: {}", text(&o));
    }
    assert!(!cache.exists(), "a refused command writes no cache");
}

/// `--gpu h200 --sim` simulates an H200 (its own device in the cache, its own roof), and a
/// cache holding real measurements refuses simulated rows unless `--mix-simulated` says so.
#[test]
fn sim_h200_is_its_own_device_and_real_caches_keep_simulated_rows_out() {
    let dir = tempfile::tempdir().unwrap();
    let shapes = write(
        dir.path(),
        "one.yaml",
        "defaults: { op: gemm }\nproblems:\n  - { name: tiny, m: 64, n: 128, k: 64 }\n",
    );
    let (sh, sim_db) = (shapes.to_str().unwrap(), dir.path().join("sim.db"));
    let sim_c = sim_db.to_str().unwrap();
    let o = tune(&[
        "--gpu", "h200", "--sim", "--shapes", sh, "--cache", sim_c, "--quiet",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let h200_rows = rows(&sim_db);
    assert!(!h200_rows.is_empty());
    assert!(h200_rows
        .iter()
        .all(|r| r.device.simulated && r.device.name == "simulated NVIDIA H200 SXM (nominal)"));
    // the roofline of the simulated H200 uses the H200's 4.8 TB/s, and says where it comes from
    let svg = dir.path().join("roof.svg");
    let p = Command::new(bin())
        .args([
            "plot",
            "roofline",
            "--cache",
            sim_c,
            "-o",
            svg.to_str().unwrap(),
        ])
        .env_remove("TESSERA_CACHE")
        .output()
        .unwrap();
    assert!(p.status.success(), "{}", text(&p));
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert!(
        drawn.contains("4.8 TB/s") && drawn.contains("H200"),
        "roof source missing"
    );
    // an H100 simulation is another device of the same cache
    let o = tune(&[
        "--gpu", "h100", "--sim", "--shapes", sh, "--cache", sim_c, "--quiet",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let names: std::collections::BTreeSet<String> =
        rows(&sim_db).into_iter().map(|r| r.device.name).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    // a cache with one real measurement keeps simulated rows out ...
    let real_db = dir.path().join("real.db");
    let mut real = h200_rows[0].clone();
    real.device.simulated = false;
    real.device.name = "NVIDIA H200".into();
    Cache::open(&real_db).unwrap().record_result(&real).unwrap();
    let real_c = real_db.to_str().unwrap();
    let o = tune(&[
        "--gpu", "h200", "--sim", "--shapes", sh, "--cache", real_c, "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("holds measurements of real GPUs (NVIDIA H200)")
            && t.contains("--mix-simulated"),
        "{t}"
    );
    assert_eq!(rows(&real_db).len(), 1, "nothing was written");
    // ... unless asked
    let o = tune(&[
        "--gpu",
        "h200",
        "--sim",
        "--shapes",
        sh,
        "--cache",
        real_c,
        "--quiet",
        "--mix-simulated",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(rows(&real_db).len() > 1);
}

#[test]
fn sim_pruned_candidates_are_stored_with_their_rank_and_never_compiled() {
    let dir = tempfile::tempdir().unwrap();
    let shapes = write(
        dir.path(),
        "one.yaml",
        "problems:\n  - { op: gemm, m: 128, n: 256, k: 64 }\n",
    );
    let cache = dir.path().join("tune.db");
    let (s, c) = (shapes.to_str().unwrap(), cache.to_str().unwrap());
    let o = tune(&[
        "--gpu", "h200", "--sim", "--shapes", s, "--cache", c, "--keep", "4", "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["prune"]["keep"], 4, "{doc}");
    let all = rows(&cache);
    let pruned: Vec<_> = all.iter().filter(|r| r.status == Status::Pruned).collect();
    let measured: Vec<_> = all
        .iter()
        .filter(|r| !matches!(r.status, Status::Pruned | Status::Rejected))
        .collect();
    // 4 kept (the per-tile cap and the policy floor may add one per dispatch policy)
    assert!(
        (4..=6).contains(&measured.len()),
        "{} measured",
        measured.len()
    );
    assert!(pruned.len() > 100, "{} pruned", pruned.len());
    for r in &pruned {
        assert!(
            r.reason.starts_with("pruned before compiling: rank ")
                && r.reason.contains("by the cost model (estimate ")
                && r.reason.contains("keeps the top 4"),
            "{}",
            r.reason
        );
        assert!(r.timing.is_none() && r.compile_s.is_none(), "{r:?}");
    }
    assert_eq!(
        doc["results"][0]["counts"]["pruned"].as_u64(),
        Some(pruned.len() as u64)
    );
    // `cache why` explains them
    let why = Command::new(bin())
        .args(["cache", "why", "m=128 n=256", "--cache", c])
        .output()
        .unwrap();
    let w = text(&why);
    assert!(why.status.success(), "{w}");
    assert!(
        w.contains(&format!(
            "{} pruned before compiling by the cost model",
            pruned.len()
        )) && w.contains("pruned before compiling: rank"),
        "{w}"
    );
}

#[test]
fn sim_no_prune_measures_every_valid_candidate_and_a_warm_run_compiles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let shapes = write(
        dir.path(),
        "one.yaml",
        "problems:\n  - { op: gemm, m: 64, n: 128, k: 64 }\n  - { op: layernorm, rows: 16, cols: 768 }\n",
    );
    let cache = dir.path().join("tune.db");
    let (s, c) = (shapes.to_str().unwrap(), cache.to_str().unwrap());
    let o = tune(&[
        "--gpu",
        "h200",
        "--sim",
        "--shapes",
        s,
        "--cache",
        c,
        "--no-prune",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let all = rows(&cache);
    assert!(all.iter().all(|r| r.status != Status::Pruned));
    assert!(all.iter().filter(|r| r.status == Status::Ok).count() > 100);
    // --no-prune and --keep contradict each other
    let o = tune(&[
        "--gpu",
        "h200",
        "--sim",
        "--shapes",
        s,
        "--cache",
        c,
        "--no-prune",
        "--keep",
        "3",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // warm: every winner cached, nothing planned, compiled or measured, well under a second
    let started = Instant::now();
    let o = tune(&[
        "--gpu", "h200", "--sim", "--shapes", s, "--cache", c, "--json",
    ]);
    let wall = started.elapsed();
    assert!(o.status.success(), "{}", text(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["measured_problems"], 0, "{doc}");
    assert_eq!(doc["candidates"], 0, "{doc}");
    assert_eq!(doc["compile_s"], 0.0, "{doc}");
    assert!(
        doc["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["cached"] == true && r["counts"].as_object().unwrap().is_empty()),
        "{doc}"
    );
    assert_eq!(rows(&cache).len(), all.len(), "a warm run wrote rows");
    assert!(wall < Duration::from_secs(5), "warm run took {wall:?}");
}

#[test]
fn sim_prune_audit_reports_whether_the_winner_survives_pruning() {
    let dir = tempfile::tempdir().unwrap();
    let shapes = write(
        dir.path(),
        "one.yaml",
        "problems:\n  - { name: g, op: gemm, m: 256, n: 384, k: 64 }\n  - { name: ln, op: layernorm, rows: 32, cols: 768 }\n",
    );
    let cache = dir.path().join("full.db");
    let (s, c) = (shapes.to_str().unwrap(), cache.to_str().unwrap());
    let o = tune(&[
        "--gpu",
        "h200",
        "--sim",
        "--shapes",
        s,
        "--cache",
        c,
        "--prune-audit",
        "--keep",
        "5",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // the sweep itself was not pruned
    assert!(rows(&cache).iter().all(|r| r.status != Status::Pruned));
    let audit = &doc["prune_audit"];
    assert_eq!(audit["keep"], 5, "{doc}");
    let problems = audit["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2);
    for p in problems {
        assert_eq!(p["complete"], true, "{p}");
        assert!(p["kept"].as_u64().unwrap() >= 5, "{p}");
        let ratio = p["ratio"].as_f64().unwrap();
        assert!(ratio >= 1.0 - 0.006, "{p}"); // near-ties go to the smaller name
        let kept = p["winner_kept"].as_bool().unwrap();
        if kept {
            assert_eq!(p["best_kept"], p["winner"], "{p}");
        }
    }
    assert_eq!(audit["summary"]["audited"], 2, "{audit}");
    // text form, warm (nothing measured again), with a summary line
    let o = tune(&[
        "--gpu",
        "h200",
        "--sim",
        "--shapes",
        s,
        "--cache",
        c,
        "--prune-audit",
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("prune audit (keep 8 per problem") && t.contains("fully swept problems"),
        "{t}"
    );
    // a pruned sweep cannot be audited: it says so instead of guessing
    let pruned_cache = dir.path().join("pruned.db");
    let p = pruned_cache.to_str().unwrap();
    let o = tune(&[
        "--gpu", "h200", "--sim", "--shapes", s, "--cache", p, "--quiet",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = tune(&[
        "--gpu",
        "h200",
        "--sim",
        "--shapes",
        s,
        "--cache",
        p,
        "--prune-audit",
        "--json",
    ]);
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["prune_audit"]["summary"]["incomplete"], 2, "{doc}");
    assert!(doc["prune_audit"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["complete"] == false));
}

/// Four small problems, so two GPUs each get some.
const FOUR: &str = "defaults: { op: gemm }\nproblems:\n  - { name: p1, m: 64, n: 128, k: 64 }\n  - { name: p2, m: 96, n: 256, k: 128, epilogue: [bias, gelu] }\n  - { name: p3, m: 128, n: 256, k: 64 }\n  - { name: p4, m: 64, n: 256, k: 128 }\n";

fn tune_json(args: &[&str]) -> serde_json::Value {
    let o = tune(args);
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)))
}

fn winners(cache: &Path) -> Vec<(String, String, f64)> {
    let mut w: Vec<_> = Cache::open(cache)
        .unwrap()
        .list_winners()
        .unwrap()
        .into_iter()
        .map(|w| (w.problem.key.clone(), w.kernel_name, w.median_ms))
        .collect();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

#[test]
fn sim_two_gpus_split_the_problems_and_pick_the_winners_one_gpu_picks() {
    let dir = tempfile::tempdir().unwrap();
    let shapes = write(dir.path(), "four.yaml", FOUR);
    let (one, two) = (dir.path().join("one.db"), dir.path().join("two.db"));
    let run = |cache: &Path, gpus: &str| {
        tune_json(&[
            "--gpu",
            "h100",
            "--sim",
            "--gpus",
            gpus,
            "--shapes",
            shapes.to_str().unwrap(),
            "--cache",
            cache.to_str().unwrap(),
            "--json",
        ])
    };
    let a = run(&one, "0");
    let b = run(&two, "0,1");
    assert_eq!(a["gpus"].as_array().unwrap().len(), 1, "{a}");
    let gpus = b["gpus"].as_array().unwrap();
    assert_eq!(gpus.len(), 2, "{b}");
    let labels: Vec<&str> = gpus.iter().map(|g| g["gpu"].as_str().unwrap()).collect();
    assert_eq!(labels, ["sim:h100:0", "sim:h100:1"]);
    for g in gpus {
        assert!(g["problems"].as_u64().unwrap() >= 1, "a GPU idled: {b}");
        assert!(g["wall_s"].as_f64().unwrap() > 0.0, "{b}");
    }
    let total: u64 = gpus.iter().map(|g| g["problems"].as_u64().unwrap()).sum();
    assert_eq!(total, 4, "{b}");
    // every problem names the one GPU that timed all its candidates
    for r in b["results"].as_array().unwrap() {
        assert!(labels.contains(&r["gpu"].as_str().unwrap()), "{r}");
    }
    let (wa, wb) = (winners(&one), winners(&two));
    assert_eq!(wa.len(), 4);
    assert_eq!(wa, wb, "two GPUs chose other winners than one");
}

#[test]
fn sim_gpus_that_do_not_exist_are_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let shapes = write(dir.path(), "four.yaml", FOUR);
    let cache = dir.path().join("t.db");
    let o = tune(&[
        "--gpu",
        "h100",
        "--sim",
        "--gpus",
        "0,9",
        "--shapes",
        shapes.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("--gpus 9: no such GPU") && t.contains("GPUs present: 0..7"),
        "{t}"
    );
    assert!(!cache.exists(), "a refused run created the cache");
}

#[test]
fn sim_two_tuners_on_one_cache_measure_each_problem_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let shapes = write(dir.path(), "four.yaml", FOUR);
    let cache = dir.path().join("shared.db");
    let log = dir.path().join("workers.log");
    let spawn = || {
        Command::new(bin())
            .args([
                "tune",
                "--gpu",
                "h100",
                "--sim",
                "--gpus",
                "0,1",
                "--json",
                "--shapes",
                shapes.to_str().unwrap(),
                "--cache",
                cache.to_str().unwrap(),
            ])
            .env_remove("TESSERA_CACHE")
            .env("TESSERA_WORKER_LOG", &log)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let mut measured: std::collections::BTreeMap<String, usize> = Default::default();
    for c in [a, b] {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(doc["problems"], 4, "{doc}");
        for r in doc["results"].as_array().unwrap() {
            let n = measured
                .entry(r["key"].as_str().unwrap().to_string())
                .or_default();
            if r["cached"] == false {
                *n += 1;
            }
        }
    }
    assert_eq!(measured.len(), 4);
    assert!(
        measured.values().all(|&n| n == 1),
        "problems measured by both tuners (or neither): {measured:?}"
    );
    let c = Cache::open(&cache).unwrap();
    assert_eq!(c.list_winners().unwrap().len(), 4);
    assert!(c.claims().unwrap().is_empty(), "claims left behind");
    // the workers' own log: one line per candidate measured, and never two processes timing
    // on one GPU at once
    let text = std::fs::read_to_string(&log).unwrap();
    let jobs: Vec<(String, u32, u128, u128)> = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (
                f[0].to_string(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
            )
        })
        .collect();
    let measured_rows = rows(&cache)
        .iter()
        .filter(|r| !matches!(r.status, Status::Rejected | Status::Pruned))
        .count();
    assert_eq!(jobs.len(), measured_rows, "a candidate was measured twice");
    for gpu in ["sim:h100:0", "sim:h100:1"] {
        let mut on: Vec<_> = jobs.iter().filter(|j| j.0 == gpu).collect();
        on.sort_by_key(|j| j.2);
        for w in on.windows(2) {
            assert!(
                w[0].1 == w[1].1 || w[0].3 <= w[1].2,
                "two tuners timed on {gpu} at once: {:?} and {:?}",
                w[0],
                w[1]
            );
        }
    }
}

#[test]
fn sim_a_killed_tuner_s_claims_are_taken_over_by_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let shapes = write(
        dir.path(),
        "big.yaml",
        "defaults: { op: gemm }\nproblems:\n  - { name: a, m: 1024, n: 1024, k: 512 }\n  - { name: b, m: 1024, n: 768, k: 512 }\n",
    );
    let cache = dir.path().join("tune.db");
    let mut child = Command::new(bin())
        .args([
            "tune",
            "--gpu",
            "h100",
            "--sim",
            "--gpus",
            "0,1",
            "--quiet",
            "--shapes",
            shapes.to_str().unwrap(),
            "--cache",
            cache.to_str().unwrap(),
        ])
        .env_remove("TESSERA_CACHE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(120);
    let held = loop {
        std::thread::sleep(Duration::from_millis(200));
        let claims = if cache.exists() {
            Cache::open(&cache).unwrap().claims().unwrap()
        } else {
            Vec::new()
        };
        let ok = if cache.exists() {
            rows(&cache)
                .iter()
                .filter(|r| r.status == Status::Ok)
                .count()
        } else {
            0
        };
        if (claims.len() == 2 && ok >= 1) || Instant::now() > deadline {
            break claims;
        }
    };
    child.kill().unwrap(); // SIGKILL: no chance to release anything
    child.wait().unwrap();
    assert_eq!(held.len(), 2, "the tuner never held both claims");
    assert!(held.iter().all(|c| c.owner.pid == pid));
    assert!(
        Cache::open(&cache).unwrap().list_winners().unwrap().len() < 2,
        "the kill came too late"
    );
    let left = Cache::open(&cache).unwrap().claims().unwrap();
    assert!(!left.is_empty(), "a killed tuner's claims vanished");
    let doc = tune_json(&[
        "--gpu",
        "h100",
        "--sim",
        "--gpus",
        "0,1",
        "--json",
        "--shapes",
        shapes.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
    ]);
    let took: Vec<&str> = doc["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["took_over_claim"].as_str())
        .collect();
    assert_eq!(took.len(), left.len(), "{doc}");
    assert!(
        took.iter().all(|t| t.contains(&format!("pid {pid} "))),
        "{took:?}"
    );
    let c = Cache::open(&cache).unwrap();
    assert_eq!(c.list_winners().unwrap().len(), 2);
    assert!(c.claims().unwrap().is_empty());
}

#[test]
fn sim_stale_claims_of_a_dead_process_or_past_the_claim_timeout_are_taken_over() {
    let dir = tempfile::tempdir().unwrap();
    let shapes = write(
        dir.path(),
        "one.yaml",
        "problems:\n  - { op: gemm, m: 64, n: 128, k: 64 }\n",
    );
    let run = |cache: &Path| {
        tune_json(&[
            "--gpu",
            "h100",
            "--sim",
            "--json",
            "--shapes",
            shapes.to_str().unwrap(),
            "--cache",
            cache.to_str().unwrap(),
        ])
    };
    // learn the problem's claim key (device id, template version, problem key) from a first run
    let first = dir.path().join("first.db");
    run(&first);
    let w = Cache::open(&first)
        .unwrap()
        .list_winners()
        .unwrap()
        .remove(0);
    let key = tessera_cache::claim_key(
        w.device.id().as_str(),
        &w.template.name,
        &w.template.source_hash,
        &w.problem.key,
    );
    // a fresh cache where a process of this host that has since died claimed that problem
    let mut gone = Command::new("true").spawn().unwrap();
    let pid = gone.id();
    gone.wait().unwrap();
    let ghost = tessera_cache::ClaimOwner {
        host: w.provenance.origin_host.clone(),
        pid,
        gpu: "sim:h100:0".into(),
    };
    let cache = dir.path().join("stale.db");
    let c = Cache::open(&cache).unwrap();
    assert!(matches!(
        c.claim(&key, &ghost, Duration::from_secs(600)).unwrap(),
        tessera_cache::ClaimOutcome::Claimed { .. }
    ));
    drop(c);
    let doc = run(&cache);
    let r = &doc["results"][0];
    assert_eq!(r["cached"], false, "{doc}");
    assert!(
        r["took_over_claim"]
            .as_str()
            .is_some_and(|t| t.contains(&format!("pid {pid} on {}", ghost.host))),
        "{doc}"
    );
    let c = Cache::open(&cache).unwrap();
    assert_eq!(c.list_winners().unwrap().len(), 1);
    assert!(c.claims().unwrap().is_empty());

    // a live claim of another host blocks the problem until it is not refreshed for
    // --claim-timeout seconds; then it is taken over too
    let far = tessera_cache::ClaimOwner {
        host: "another-host".into(),
        pid: 1,
        gpu: "cuda:0".into(),
    };
    let cache = dir.path().join("expired.db");
    Cache::open(&cache)
        .unwrap()
        .claim(&key, &far, Duration::from_secs(600))
        .unwrap();
    let t0 = Instant::now();
    let doc = tune_json(&[
        "--gpu",
        "h100",
        "--sim",
        "--json",
        "--claim-timeout",
        "1",
        "--shapes",
        shapes.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
    ]);
    assert!(
        t0.elapsed() >= Duration::from_secs(1),
        "a live claim was ignored"
    );
    let took = doc["results"][0]["took_over_claim"].as_str().unwrap_or("");
    assert!(took.contains("another-host"), "{doc}");
}
