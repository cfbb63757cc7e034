//! `tessera run` and `tessera bench` on the simulated device (CI): a `--no-tune` plan of the
//! tiny random BERT is refused by node (its embedding is a glue step with no kernel yet), bad
//! inputs are usage errors naming the input, and a plan edited so every launch has a kernel
//! runs (graph and eager), writes its output and benches with a per-kind breakdown.

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

/// A safetensors file of integer tensors: (name, dtype name, shape, values).
fn write_ints(path: &Path, tensors: &[(&str, &str, Vec<u64>, Vec<i64>)]) {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, dtype, shape, values) in tensors {
        let begin = data.len();
        for v in values {
            match *dtype {
                "I64" => data.extend_from_slice(&v.to_le_bytes()),
                "I32" => data.extend_from_slice(&(*v as i32).to_le_bytes()),
                _ => data.extend_from_slice(&(*v as f32).to_le_bytes()),
            }
        }
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [begin, data.len()]}),
        );
    }
    let h = serde_json::Value::Object(header).to_string().into_bytes();
    let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(&h);
    bytes.extend_from_slice(&data);
    std::fs::write(path, bytes).unwrap();
}

fn compiled(dir: &Path) -> std::path::PathBuf {
    let model = dir.join("bert");
    Fixture::tiny().write(&model).unwrap();
    let out = dir.join("bert.tsr");
    let o = tessera(&[
        "compile",
        model.to_str().unwrap(),
        "--gpu",
        "h200",
        "--sim",
        "--out",
        out.to_str().unwrap(),
        "--cache",
        dir.join("tune.db").to_str().unwrap(),
        "--batch",
        "1,2",
        "--seq",
        "16,32",
        "--no-tune",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    out
}

fn ids(batch: u64, seq: u64) -> Vec<i64> {
    (0..batch * seq).map(|i| (i * 3 % 100) as i64).collect()
}

#[test]
fn run_writes_the_hidden_state_and_checks_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let plan = compiled(dir.path());
    let p = plan.to_str().unwrap();
    let input = dir.path().join("in.safetensors");
    let out = dir.path().join("out.safetensors");
    write_ints(
        &input,
        &[
            ("input_ids", "I64", vec![2, 10], ids(2, 10)),
            ("attention_mask", "I64", vec![2, 10], vec![1; 20]),
        ],
    );
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());
    let r = tessera(&["run", p, "--input", i, "--out", o, "--sim"]);
    assert!(r.status.success(), "{}", text(&r));
    assert!(out.exists());
    std::fs::remove_file(&out).unwrap();
    let r = tessera(&["run", p, "--input", i, "--out", o, "--sim", "--debug-nodes"]);
    assert!(r.status.success(), "{}", text(&r));
    assert!(dir.path().join("out.safetensors.nodes").is_dir());
    std::fs::remove_file(&out).unwrap();

    let mut bad = ids(2, 10);
    bad[1] = 500;
    write_ints(&input, &[("input_ids", "I32", vec![2, 10], bad)]);
    let r = tessera(&["run", p, "--input", i, "--out", o, "--sim"]);
    assert_eq!(r.status.code(), Some(2), "{}", text(&r));
    assert!(text(&r).contains("`input_ids`[0, 1] = 500"), "{}", text(&r));
    write_ints(&input, &[("input_ids", "F32", vec![2, 10], ids(2, 10))]);
    let r = tessera(&["run", p, "--input", i, "--out", o, "--sim"]);
    assert_eq!(r.status.code(), Some(2), "{}", text(&r));
    assert!(
        text(&r).contains("`input_ids` is F32; use I64 or I32"),
        "{}",
        text(&r)
    );
    write_ints(
        &input,
        &[
            ("input_ids", "I64", vec![2, 10], ids(2, 10)),
            ("attention_mask", "I64", vec![2, 5], vec![1; 10]),
        ],
    );
    let r = tessera(&["run", p, "--input", i, "--out", o, "--sim"]);
    assert_eq!(r.status.code(), Some(2), "{}", text(&r));
    assert!(
        text(&r).contains("`attention_mask` has shape [2, 5]"),
        "{}",
        text(&r)
    );

    let r = tessera(&["bench", p, "--batch", "1", "--seq", "16", "--sim"]);
    assert!(r.status.success(), "{}", text(&r));
    let r = tessera(&["bench", p, "--batch", "4", "--seq", "16", "--sim"]);
    assert_eq!(r.status.code(), Some(2), "{}", text(&r));
    assert!(
        text(&r).contains("has no bucket batch 4 × seq 16; it has 1x16, 1x32, 2x16, 2x32"),
        "{}",
        text(&r)
    );
}

/// `run` writes `last_hidden_state` (graph replay and eager) and `bench --json` reports a
/// breakdown by kernel kind.
#[test]
fn plans_run_and_bench() {
    let dir = tempfile::tempdir().unwrap();
    let plan = compiled(dir.path());
    let p = plan.to_str().unwrap();
    let input = dir.path().join("in.safetensors");
    let out = dir.path().join("out.safetensors");
    write_ints(&input, &[("input_ids", "I64", vec![1, 20], ids(1, 20))]);
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());
    for extra in [&[][..], &["--no-graph"][..]] {
        let mut args = vec!["run", p, "--input", i, "--out", o, "--sim"];
        args.extend_from_slice(extra);
        let r = tessera(&args);
        assert!(r.status.success(), "{}", text(&r));
        assert!(text(&r).contains("bucket batch 1 × seq 32"), "{}", text(&r));
        let bytes = std::fs::read(&out).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        assert_eq!(
            header["last_hidden_state"]["shape"],
            serde_json::json!([1, 20, 128])
        );
        std::fs::remove_file(&out).unwrap();
    }
    let r = tessera(&[
        "bench", p, "--batch", "2", "--seq", "32", "--sim", "--json", "--iters", "5",
    ]);
    assert!(r.status.success(), "{}", text(&r));
    let j: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(j["mode"], "graph");
    assert_eq!(j["simulated"], true);
    assert!(j["median_ms"].as_f64().unwrap() > 0.0);
    assert!(j["by_kind_ms"]["gemm"].as_f64().unwrap() > 0.0);
    assert!(j["by_kind_ms"]["attention"].as_f64().unwrap() > 0.0);
    let kernels = j["by_kernel"].as_array().unwrap();
    assert!(kernels.iter().any(|k| k["kind"] == "gemm"
        && k["kernel"].as_str().unwrap().starts_with("gemm_")
        && k["launches"].as_u64().unwrap() >= 1));
}
