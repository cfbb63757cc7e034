//! `tessera compile` and `tessera inspect` on the simulated device (CI): a tiny random BERT from
//! the compiler's fixture, compiled without tuning, with tuning through real worker processes,
//! then again with `--strict` from the warm cache; and bad input that must leave nothing behind.

use std::path::Path;
use std::process::{Command, Output};
use tessera_compiler::fixture::Fixture;

fn tessera(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .env_remove("TESSERA_CACHE")
        .output()
        .expect("run tessera")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn compile(model: &Path, out: &Path, cache: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "compile",
        model.to_str().unwrap(),
        "--gpu",
        "h200",
        "--sim",
        "--out",
        out.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    tessera(&args)
}

fn only_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn sim_compile_no_tune_then_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("bert");
    Fixture::tiny().write(&model).unwrap();
    let out = dir.path().join("bert.tsr");
    let o = compile(
        &model,
        &out,
        &dir.path().join("tune.db"),
        &["--batch", "1,2", "--seq", "16,32", "--no-tune"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("8 bucket(s), 31 kernels (0 cached, 0 tuned now, 31 untuned)"),
        "{t}"
    );
    assert!(
        t.contains("lower 8 bucket(s)") && t.contains("warning: 31 kernel(s) are untuned"),
        "{t}"
    );
    let o = tessera(&["inspect", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    for want in [
        "2 layers, hidden 128, 2 heads of 64",
        "SIMULATED",
        "buckets (batch x seq): 1x16, 1x32, 2x16, 2x32",
        "packed buckets (tokens/sequences/longest): 16/1/16, 32/1/32, 32/2/16, 64/2/32",
        "--padding auto",
        "vs naive",
        "UNTUNED",
        "store=heads2x64_seq32",
        "fused=residual",
        "embedding",
        "merge_qkv (2)",
    ] {
        assert!(t.contains(want), "inspect lacks `{want}`:\n{t}");
    }
    let o = tessera(&["inspect", out.to_str().unwrap(), "--json"]);
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(plan["schema_version"], 2);
    assert_eq!(only_entries(&out), ["plan.json", "weights.bin"]);
}

#[test]
fn sim_compile_tunes_misses_then_strict_compiles_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("bert");
    Fixture::tiny().write(&model).unwrap();
    let out = dir.path().join("bert.tsr");
    let cache = dir.path().join("tune.db");
    let buckets = ["--batch", "1", "--seq", "16"];
    let o = compile(&model, &out, &cache, &buckets);
    assert!(o.status.success(), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("9 kernels (0 cached, 9 tuned now, 0 untuned)"),
        "{t}"
    );
    assert!(
        t.contains("tuning gemm m=16 n=384 k=128"),
        "progress names what it tunes:\n{t}"
    );
    let strict = [&buckets[..], &["--strict"]].concat();
    let o = compile(&model, &out, &cache, &strict);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("9 kernels (9 cached, 0 tuned now, 0 untuned)"),
        "{}",
        text(&o)
    );
    let o = tessera(&["inspect", out.to_str().unwrap()]);
    let t = text(&o);
    assert!(t.contains("cached") && !t.contains("UNTUNED"), "{t}");
}

#[test]
fn sim_fill_buckets_pick_at_their_own_size_or_borrow() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("bert");
    Fixture::tiny().write(&model).unwrap();
    let out = dir.path().join("bert.tsr");
    let cache = dir.path().join("tune.db");
    // one padded bucket of 256 tokens, its one packed anchor (256) and a 128-token fill
    let buckets = [
        "--batch",
        "4",
        "--seq",
        "64",
        "--packed-buckets",
        "1",
        "--packed-granule",
        "128",
        "--fill-configs",
        "pick",
    ];
    let o = compile(&model, &out, &cache, &buckets);
    assert!(o.status.success(), "{}", text(&o));
    let first = text(&o);
    assert!(first.contains("picked for fill buckets"), "{first}");
    let inspect = |out: &Path| text(&tessera(&["inspect", out.to_str().unwrap()]));
    let t = inspect(&out);
    assert!(
        t.contains("picked: a packed fill bucket's problem measured at its own token count"),
        "{t}"
    );
    let plan: serde_json::Value =
        serde_json::from_slice(&tessera(&["inspect", out.to_str().unwrap(), "--json"]).stdout)
            .unwrap();
    let picked: Vec<&serde_json::Value> = plan["kernels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["status"] == "picked")
        .collect();
    assert!(!picked.is_empty(), "{plan}");
    for k in &picked {
        // measured among more than one candidate, the anchor's among them
        assert!(k["among"].as_u64().unwrap() >= 2, "{k}");
        assert!(k["median_ms"].as_f64().unwrap() > 0.0, "{k}");
        assert!(k["anchor"].is_string(), "{k}");
    }
    // a pick stores its candidates' rows but no winner: the fill's problems are not cached
    // winners, so --strict (which borrows for fills) still compiles, and a second tuned
    // compile picks the same kernels from the stored rows
    let ls = text(&tessera(&[
        "cache",
        "--cache",
        cache.to_str().unwrap(),
        "ls",
    ]));
    assert!(
        ls.contains("gemm m=256 ") && !ls.contains("gemm m=128 "),
        "the anchor's problems have winners, the fill's none:\n{ls}"
    );
    let o = compile(&model, &out, &cache, &buckets);
    assert!(o.status.success(), "{}", text(&o));
    let again: serde_json::Value =
        serde_json::from_slice(&tessera(&["inspect", out.to_str().unwrap(), "--json"]).stdout)
            .unwrap();
    // the same kernels; the anchors' now cached, the fills' picked again
    let names = |p: &serde_json::Value, status: &str| -> Vec<String> {
        p["kernels"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|k| status.is_empty() || k["status"] == status)
            .map(|k| k["kernel_name"].to_string())
            .collect()
    };
    assert_eq!(names(&plan, ""), names(&again, ""));
    assert_eq!(names(&plan, "picked"), names(&again, "picked"));
    assert_eq!(names(&again, "tuned"), Vec::<String>::new());
    // the default borrows
    let borrow = &buckets[..buckets.len() - 2];
    let o = compile(&model, &out, &cache, borrow);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("borrowed by fill buckets"),
        "{}",
        text(&o)
    );
    assert!(inspect(&out).contains("borrowed"), "{}", inspect(&out));
}

#[test]
fn bad_input_is_a_clear_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("bert");
    Fixture::tiny().write(&model).unwrap();
    let out = dir.path().join("bert.tsr");
    let cache = dir.path().join("tune.db");
    let small = ["--batch", "1", "--seq", "16"];

    // --strict on an empty cache: a failure (1) listing the misses
    let strict = [&small[..], &["--strict"]].concat();
    let o = compile(&model, &out, &cache, &strict);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("--strict: 9 kernel problem(s) have no tuned winner"),
        "{}",
        text(&o)
    );

    // a truncated weights file: bad input (2), named
    let st = model.join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() / 2]).unwrap();
    let no_tune = [&small[..], &["--no-tune"]].concat();
    let o = compile(&model, &out, &cache, &no_tune);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("model.safetensors: truncated"),
        "{}",
        text(&o)
    );
    std::fs::write(&st, &bytes).unwrap();

    // too long a sequence for the model's positions
    let o = compile(
        &model,
        &out,
        &cache,
        &["--batch", "1", "--seq", "65", "--no-tune"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("longer than the model's 64 positions"),
        "{}",
        text(&o)
    );

    // a fill granule that is not a multiple of 128 tokens
    let o = compile(
        &model,
        &out,
        &cache,
        &[
            "--batch",
            "1",
            "--seq",
            "16",
            "--packed-granule",
            "100",
            "--no-tune",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("granule of 100 tokens: give a multiple of 128"),
        "{}",
        text(&o)
    );

    // no plan was written, not even a temporary directory (the cache is opened, that is all)
    let left: Vec<String> = only_entries(dir.path())
        .into_iter()
        .filter(|n| !n.starts_with("tune.db"))
        .collect();
    assert_eq!(left, ["bert"]);

    // an output path that is not a plan is never replaced
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let o = compile(&model, &out, &cache, &no_tune);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("is not a Tessera plan; refusing to replace it"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_to_string(out.join("notes.txt")).unwrap(),
        "mine"
    );

    // inspect of something that is not a plan
    let o = tessera(&["inspect", model.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("plan.json"), "{}", text(&o));
}

/// `tessera inspect PLAN --shapes` writes the plan's distinct kernel problems (padded and packed
/// buckets) as a shapes file: it parses back to exactly those problems, `tessera tune` tunes
/// them all, and a strict compile then finds every kernel in that cache.
#[test]
fn sim_inspect_shapes_tunes_the_plans_problems_ahead_of_time() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("bert");
    Fixture::tiny().write(&model).unwrap();
    let out = dir.path().join("bert.tsr");
    let buckets = ["--batch", "1,2", "--seq", "16,32"];
    let no_tune = [&buckets[..], &["--no-tune"]].concat();
    let o = compile(&model, &out, &dir.path().join("unused.db"), &no_tune);
    assert!(o.status.success(), "{}", text(&o));
    let plan = tessera_compiler::Plan::load(&out).unwrap();
    assert!(
        plan.buckets.iter().any(|b| b.bucket.is_packed()),
        "the plan has packed buckets"
    );

    let o = tessera(&["inspect", out.to_str().unwrap(), "--shapes"]);
    assert!(o.status.success(), "{}", text(&o));
    let yaml = String::from_utf8(o.stdout).unwrap();
    let shapes = dir.path().join("plan.yaml");
    std::fs::write(&shapes, &yaml).unwrap();
    let parsed = tessera_tuner::shapes::parse_file(&shapes).unwrap_or_else(|e| panic!("{e}"));
    let mut want: Vec<&tessera_dsl::Problem> = Vec::new();
    for k in &plan.kernels {
        if !want.contains(&&k.problem) {
            want.push(&k.problem);
        }
    }
    let got: Vec<&tessera_dsl::Problem> = parsed.iter().map(|p| &p.problem).collect();
    assert_eq!(got, want, "{yaml}");
    assert!(
        yaml.contains("packed: true, lens: [") && yaml.contains("op: embedding"),
        "{yaml}"
    );
    assert!(
        parsed
            .iter()
            .all(|p| p.name.starts_with('k') && p.name.contains(" @ ")),
        "{yaml}"
    );
    assert!(
        parsed.iter().any(|p| p.name.contains("@ packed ")),
        "{yaml}"
    );

    let cache = dir.path().join("ahead.db");
    let o = tessera(&[
        "tune",
        "--sim",
        "--gpu",
        "h200",
        "--shapes",
        shapes.to_str().unwrap(),
        "--cache",
        cache.to_str().unwrap(),
        "--quiet",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(doc["problems"], want.len(), "{doc}");
    assert_eq!(doc["measured_problems"], want.len(), "{doc}");

    // the cache tuned ahead of time holds every kernel the plan needs
    let strict = [&buckets[..], &["--strict"]].concat();
    let o = compile(&model, &out, &cache, &strict);
    assert!(o.status.success(), "{}", text(&o));
    let n = plan.kernels.len();
    assert!(
        text(&o).contains(&format!("{n} kernels ({n} cached, 0 tuned now, 0 untuned)")),
        "{}",
        text(&o)
    );
}
