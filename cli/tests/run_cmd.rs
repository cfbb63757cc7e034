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

/// A safetensors file's header and its data bytes.
fn safetensors_header(path: &Path) -> (serde_json::Value, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    (header, bytes[8 + n..].to_vec())
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
        let mut args = vec![
            "run",
            p,
            "--input",
            i,
            "--out",
            o,
            "--sim",
            "--padding",
            "padded",
        ];
        args.extend_from_slice(extra);
        let r = tessera(&args);
        assert!(r.status.success(), "{}", text(&r));
        assert!(text(&r).contains("bucket batch 1 × seq 32"), "{}", text(&r));
        let (header, _) = safetensors_header(&out);
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

/// Packed execution from the command line: `run --padding packed --packed-output` writes the
/// real rows and their offsets, `auto` reports its choice, `bench --lens` times a ragged batch
/// in a packed bucket, and `inspect` lists the packed buckets and the auto rule.
#[test]
fn packed_runs_write_real_rows_and_bench_ragged_batches() {
    let dir = tempfile::tempdir().unwrap();
    let plan = compiled(dir.path());
    let p = plan.to_str().unwrap();
    let input = dir.path().join("in.safetensors");
    let out = dir.path().join("out.safetensors");
    let mask: Vec<i64> = (0..2 * 20)
        .map(|i| i64::from(i % 20 < if i < 20 { 20 } else { 3 }))
        .collect();
    write_ints(
        &input,
        &[
            ("input_ids", "I64", vec![2, 20], ids(2, 20)),
            ("attention_mask", "I64", vec![2, 20], mask),
        ],
    );
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());
    let r = tessera(&[
        "run",
        p,
        "--input",
        i,
        "--out",
        o,
        "--sim",
        "--padding",
        "packed",
        "--packed-output",
    ]);
    assert!(r.status.success(), "{}", text(&r));
    assert!(
        text(&r).contains("bucket packed 64 tokens (≤ 2 sequences of ≤ 32)"),
        "{}",
        text(&r)
    );
    assert!(text(&r).contains("padding packed"), "{}", text(&r));
    let (header, data) = safetensors_header(&out);
    assert_eq!(
        header["last_hidden_state"]["shape"],
        serde_json::json!([23, 128])
    );
    assert_eq!(header["cu_seqlens"]["dtype"], "I64");
    let at = header["cu_seqlens"]["data_offsets"][0].as_u64().unwrap() as usize;
    let offsets: Vec<i64> = data[at..at + 24]
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(offsets, [0, 20, 23]);
    let r = tessera(&["run", p, "--input", i, "--out", o, "--sim"]);
    assert!(r.status.success(), "{}", text(&r));
    assert!(text(&r).contains("padding auto"), "{}", text(&r));
    assert!(
        text(&r).contains(
            "padding auto, by the replay times measured at load: padded batch 2 × seq 32 ("
        ) && text(&r).contains("packed packed 64 tokens (≤ 2 sequences of ≤ 32) ("),
        "{}",
        text(&r)
    );
    let r = tessera(&[
        "run",
        p,
        "--input",
        i,
        "--out",
        o,
        "--sim",
        "--padding",
        "sideways",
    ]);
    assert_eq!(r.status.code(), Some(2), "{}", text(&r));

    let r = tessera(&[
        "bench",
        p,
        "--seq",
        "32",
        "--lens",
        "32,5",
        "--padding",
        "packed",
        "--sim",
        "--json",
        "--iters",
        "3",
    ]);
    assert!(r.status.success(), "{}", text(&r));
    let j: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(j["packed_tokens"], 64);
    assert_eq!(j["padding"], "packed");
    assert_eq!(j["lens"], serde_json::json!([32, 5]));
    assert!(j["auto"].is_null(), "only auto reports its candidates");
    let r = tessera(&[
        "bench", p, "--seq", "32", "--lens", "32,5", "--sim", "--json", "--iters", "3",
    ]);
    assert!(r.status.success(), "{}", text(&r));
    let j: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    let auto = &j["auto"];
    assert_eq!(auto["padded"]["bucket"], "batch 2 × seq 32");
    assert_eq!(
        auto["packed"]["bucket"],
        "packed 64 tokens (≤ 2 sequences of ≤ 32)"
    );
    assert!(auto["padded"]["load_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(auto["chosen"], j["bucket"]);
    assert!(j["median_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(j["candidates"], serde_json::json!([]), "only when asked");
    // both buckets auto weighs, timed in one process: 5 rounds of ceil(7 / 5) = 2 replays
    let r = tessera(&[
        "bench",
        p,
        "--seq",
        "32",
        "--lens",
        "32,5",
        "--sim",
        "--json",
        "--iters",
        "7",
        "--candidates",
    ]);
    assert!(r.status.success(), "{}", text(&r));
    let j: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    let c = j["candidates"].as_array().expect("candidates");
    assert_eq!(c.len(), 2, "{j}");
    assert_eq!(c[0]["bucket"], "batch 2 × seq 32");
    assert_eq!(c[0]["packed"], false);
    assert_eq!(c[1]["bucket"], "packed 64 tokens (≤ 2 sequences of ≤ 32)");
    assert_eq!(c[1]["packed"], true);
    for k in c {
        assert_eq!(k["samples"], 10, "{k}");
        assert!(k["median_ms"].as_f64().unwrap() > 0.0, "{k}");
    }
    // --candidates needs --lens
    let r = tessera(&[
        "bench",
        p,
        "--seq",
        "32",
        "--batch",
        "2",
        "--sim",
        "--candidates",
    ]);
    assert_eq!(r.status.code(), Some(2), "{}", text(&r));
    assert!(text(&r).contains("give --lens"), "{}", text(&r));
    let r = tessera(&["bench", p, "--seq", "16", "--lens", "17", "--sim"]);
    assert_eq!(r.status.code(), Some(2), "{}", text(&r));
    assert!(
        text(&r).contains("--lens: length 17 is outside 1..=16"),
        "{}",
        text(&r)
    );

    let r = tessera(&["inspect", p]);
    assert!(r.status.success(), "{}", text(&r));
    assert!(
        text(&r).contains(
            "packed buckets (tokens/sequences/longest): 16/1/16, 32/1/32, 32/2/16, 64/2/32"
        ),
        "{}",
        text(&r)
    );
    assert!(text(&r).contains("--padding auto"), "{}", text(&r));
}
