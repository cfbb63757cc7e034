//! The executor on the simulated device (no GPU): a `--no-tune` plan of the tiny random BERT
//! loaded (kernels rebuilt and compiled, weights uploaded, launches with views, one graph per
//! bucket), input checks, a whole padded batch against an f64 forward pass of the checkpoint,
//! and graph capture/replay/timing.
//!
//! The simulated device runs each kernel as its CPU reference, so this checks the executor and
//! the plan (bindings, views, buckets, padding, the order of launches), not the kernels; the
//! GPU test `gpu_executor` in this crate checks the same run with the real kernels.

mod common;

use common::{f16s, weight};
use std::path::Path;
use tessera_compiler::executor::{ExecError, KernelKind, Padding};
use tessera_compiler::fixture::Fixture;
use tessera_compiler::{ExecOptions, Executor, Inputs};
use tessera_device::SimDevice;
use tessera_dsl::Target;

fn plan_dir(dir: &Path) -> std::path::PathBuf {
    common::compile_tiny(&SimDevice::new(Target::Sm90a), dir)
}

fn inputs(batch: u64, seq: u64) -> Inputs {
    Inputs {
        batch,
        seq,
        input_ids: (0..batch * seq).map(|i| (i * 7 % 100) as i64).collect(),
        attention_mask: None,
        token_type_ids: None,
    }
}

fn err(r: Result<tessera_compiler::Output, ExecError>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn loads_checks_inputs_and_refuses_launches_without_kernels_by_node() {
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_dir(dir.path());
    let d = SimDevice::new(Target::Sm90a);
    let exec = Executor::load(&plan, &d, ExecOptions::default()).unwrap();
    // weights, arena and one module per kernel are on the device
    let p = exec.plan().clone();
    assert!(d.used_bytes() >= p.weights.bytes + p.arena.bytes);
    assert!(exec.module(p.kernels.len() - 1).is_some());
    // every bucket runs the embedding kernel, then each layer's QKV GEMM, attention, output
    // projection, layernorm, FFN up and down, layernorm; and is captured into a graph
    use KernelKind::{Attention, Gemm, Layernorm, Other};
    for i in 0..p.buckets.len() {
        assert!(exec.has_graph(i));
        assert!(exec.blocked(i).is_none());
        let kinds: Vec<KernelKind> = exec.launches(i).iter().map(|l| l.kind).collect();
        let layer = [Gemm, Attention, Gemm, Layernorm, Gemm, Gemm, Layernorm];
        assert_eq!(kinds, [&[Other][..], &layer, &layer].concat());
    }
    exec.run(&inputs(2, 10)).unwrap();
    // input errors come before any launch and name the input and its shape
    let mut x = inputs(2, 10);
    x.input_ids[13] = 100;
    let e = err(exec.run(&x));
    assert!(
        e.contains("`input_ids`[1, 3] = 100") && e.contains("vocabulary [0, 100)"),
        "{e}"
    );
    let mut x = inputs(2, 10);
    x.input_ids.pop();
    let e = err(exec.run(&x));
    assert!(
        e.contains("`input_ids` has 19 values; batch 2 × seq 10 needs 20"),
        "{e}"
    );
    let mut x = inputs(2, 10);
    x.token_type_ids = Some(vec![2; 20]);
    assert!(err(exec.run(&x)).contains("token types [0, 2)"));
    let mut x = inputs(2, 4);
    x.attention_mask = Some(vec![1, 1, 0, 1, 1, 1, 1, 1]);
    assert!(err(exec.run(&x)).contains("row 0 is not ones then zeros"));
    x.attention_mask = Some(vec![0, 0, 0, 0, 1, 1, 1, 1]);
    assert!(err(exec.run(&x)).contains("row 0 masks every token"));
    x.attention_mask = Some(vec![1, 2, 0, 0, 1, 1, 1, 1]);
    assert!(err(exec.run(&x)).contains("holds 2"));
    let e = err(exec.run(&inputs(3, 8)));
    assert!(
        e.contains("does not fit the largest bucket (batch 2, seq 32)"),
        "{e}"
    );
    let e = err(exec.run(&inputs(1, 65)));
    assert!(e.contains("64 positions"), "{e}");
    // a plan for another device is refused at load
    let other = SimDevice::new(Target::Sm80);
    let e = Executor::load(&plan, &other, ExecOptions::default())
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(e.contains("compile the model for this device"), "{e}");
}

/// A padded batch through the whole model (graph replay, and eager with every node kept) against
/// the f64 forward pass; in debug mode the first two nodes are the embedding and the fused QKV
/// GEMM, written in the heads layout Q | K | V, which matches an f64 product of the first.
#[test]
fn tiny_bert_matches_the_f64_forward_pass() {
    let dir = tempfile::tempdir().unwrap();
    let plan_path = plan_dir(dir.path());
    let fixture = Fixture::tiny();
    let w = common::checkpoint(dir.path());
    let (x, lens) = common::padded_batch();
    let d = SimDevice::new(Target::Sm90a);
    let padded = ExecOptions {
        padding: Padding::Padded,
        ..ExecOptions::default()
    };
    let exec = Executor::load(&plan_path, &d, padded).unwrap();
    let out = exec.run(&x).unwrap();
    assert!(!out.bucket.is_packed());
    let (cos, err) = common::against_reference(&out, &w, &fixture, &x, &lens);
    assert!(cos >= 0.9999 && err < 0.05, "cosine {cos}, abs error {err}");
    drop(exec);
    let exec = Executor::load(
        &plan_path,
        &d,
        ExecOptions {
            graphs: false,
            debug_nodes: true,
            padding: Padding::Padded,
        },
    )
    .unwrap();
    let (nodes, result) = exec.run_debug(&x);
    let eager = result.unwrap();
    assert_eq!(
        eager.last_hidden_state, out.last_hidden_state,
        "graph and eager differ"
    );
    let names: Vec<&str> = nodes.iter().take(2).map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["embeddings", "layer0.qkv"]);
    let plan = exec.plan();
    let (bs, h, heads, hd) = (32u64, 128usize, 2usize, 64usize); // bucket 2 × 32
    let weights = std::fs::read(plan_path.join("weights.bin")).unwrap();
    let wq = weight(plan, &weights, "layer0.attention.qkv.weight");
    let bias = weight(plan, &weights, "layer0.attention.qkv.bias");
    let emb = f16s(&nodes[0].1);
    let qkv = f16s(&nodes[1].1);
    assert_eq!(qkv.len(), 3 * 2 * bs as usize * h);
    let mut worst = 0f64;
    for t in 0..(2 * bs) as usize {
        let (bi, si) = (t / bs as usize, t % bs as usize);
        for j in 0..3 * h {
            let want: f64 = (0..h).map(|k| emb[t * h + k] * wq[j * h + k]).sum::<f64>() + bias[j];
            let (which, head, dd) = (j / h, (j % h) / hd, j % hd);
            let idx = (((which * 2 + bi) * heads + head) * bs as usize + si) * hd + dd;
            worst = worst.max((qkv[idx] - want).abs() / want.abs().max(1.0));
        }
    }
    assert!(
        worst < 5e-3,
        "QKV GEMM differs from the reference by {worst}"
    );
}

/// A plan edited so every launch has a kernel (glue launches dropped, attention stored by
/// heads): every bucket is captured at load, replays on run, and times by device events (on
/// the simulated device: the sum of the launches' modelled times, as the breakdown says).
#[test]
fn all_kernel_plans_capture_replay_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let plan_path = plan_dir(dir.path());
    common::all_kernel_plan(&plan_path);
    let d = SimDevice::new(Target::Sm90a);
    let padded = ExecOptions {
        padding: Padding::Padded,
        ..ExecOptions::default()
    };
    let exec = Executor::load(&plan_path, &d, padded).unwrap();
    for i in 0..exec.plan().buckets.len() {
        assert!(exec.has_graph(i), "bucket {i} captured");
    }
    let out = exec.run(&inputs(2, 12)).unwrap();
    assert_eq!((out.bucket.batch, out.bucket.seq, out.hidden), (2, 16, 128));
    assert_eq!(out.last_hidden_state.len(), 2 * 12 * 128);
    assert!(out.last_hidden_state.iter().all(|v| v.is_finite()));
    let b = out.bucket;
    let t = exec.time(b, 1, 5).unwrap();
    assert!(t.simulated() && t.median() > 0.0);
    let breakdown = exec.breakdown(b, 3).unwrap();
    let parts = breakdown.by_kind();
    let sum: f64 = parts.values().sum();
    assert!(
        (sum - t.median()).abs() / t.median() < 0.05,
        "breakdown {parts:?} vs graph {}",
        t.median()
    );
    assert!(parts.contains_key(&KernelKind::Gemm) && parts.contains_key(&KernelKind::Layernorm));
    // per kernel: every launch counted once, slowest total first, names from the plan
    let kernels = breakdown.by_kernel();
    assert_eq!(
        kernels.iter().map(|k| k.launches).sum::<usize>(),
        breakdown.launches.len()
    );
    assert!(kernels.windows(2).all(|w| w[0].total_ms >= w[1].total_ms));
    let names: Vec<&str> = exec
        .plan()
        .kernels
        .iter()
        .map(|k| k.kernel_name.as_str())
        .collect();
    assert!(
        kernels.iter().all(|k| names.contains(&k.kernel.as_str())),
        "{kernels:?}"
    );
    assert!((kernels.iter().map(|k| k.total_ms).sum::<f64>() - sum).abs() < 1e-9);
    // eager timing of the same list agrees with the graph on the simulated clock
    let eager = Executor::load(
        &plan_path,
        &d,
        ExecOptions {
            graphs: false,
            debug_nodes: false,
            padding: Padding::Padded,
        },
    )
    .unwrap();
    assert!(!eager.has_graph(0));
    let te = eager.time(b, 0, 3).unwrap();
    assert!((te.median() - t.median()).abs() < 1e-9);
    // graph replay writes what the eager list writes, from the same history (a zeroed arena,
    // every bucket once in order, as the graph executor's warm-up does at load)
    let d2 = SimDevice::new(Target::Sm90a);
    let graph = Executor::load(&plan_path, &d2, padded).unwrap();
    let g = graph.run(&inputs(2, 12)).unwrap();
    let d3 = SimDevice::new(Target::Sm90a);
    let eager = Executor::load(
        &plan_path,
        &d3,
        ExecOptions {
            graphs: false,
            debug_nodes: false,
            padding: Padding::Padded,
        },
    )
    .unwrap();
    for bucket in eager.plan().bucket_list() {
        eager.time(bucket, 0, 1).unwrap();
    }
    let e = eager.run(&inputs(2, 12)).unwrap();
    assert_eq!(g.last_hidden_state, e.last_hidden_state);
    assert!(g.last_hidden_state.iter().any(|v| *v != 0.0));
}

/// A batch whose tokens fit a fill bucket (128 tokens, configs borrowed from the 256-token
/// anchor) runs there and matches the f64 forward pass.
#[test]
fn fill_buckets_run_and_match_the_f64_forward_pass() {
    let dir = tempfile::tempdir().unwrap();
    let d = SimDevice::new(Target::Sm90a);
    let plan_path = common::compile_tiny_with(&d, dir.path(), &[4], &[64], (1, 128));
    let fixture = Fixture::tiny();
    let w = common::checkpoint(dir.path());
    let exec = Executor::load(
        &plan_path,
        &d,
        ExecOptions {
            padding: Padding::Packed,
            ..ExecOptions::default()
        },
    )
    .unwrap();
    let (x, lens) = common::ragged_batch(4, 30, 5);
    let out = exec.run(&x).unwrap();
    assert_eq!(out.bucket.packed_tokens, Some(128), "{}", out.bucket);
    let (cos, err) = common::against_reference(&out, &w, &fixture, &x, &lens);
    assert!(
        cos >= 0.9999 && err < 0.05,
        "{lens:?}: cosine {cos}, abs error {err}"
    );
}

/// Packed buckets run the real tokens only and give the padded plan's answer: ragged batches
/// (a full-length sequence, one of length 1, random others) against the f64 forward pass,
/// packed, padded and auto; the packed output is the real rows; an input no packed bucket
/// holds is a clear error.
#[test]
fn packed_buckets_match_the_f64_forward_pass() {
    let dir = tempfile::tempdir().unwrap();
    let plan_path = plan_dir(dir.path());
    let fixture = Fixture::tiny();
    let w = common::checkpoint(dir.path());
    let d = SimDevice::new(Target::Sm90a);
    let load = |padding| {
        Executor::load(
            &plan_path,
            &d,
            ExecOptions {
                padding,
                ..ExecOptions::default()
            },
        )
        .unwrap()
    };
    let packed = load(Padding::Packed);
    let padded = load(Padding::Padded);
    let auto = load(Padding::Auto);
    assert!(
        auto.bucket_ms().iter().all(Option::is_some),
        "auto times every bucket"
    );
    assert!(packed.bucket_ms().iter().all(Option::is_none));
    for (batch, seq, seed) in [(2, 32, 1), (2, 20, 2), (1, 7, 3)] {
        let (x, lens) = common::ragged_batch(batch, seq, seed);
        let p = packed.run(&x).unwrap();
        let total: usize = lens.iter().sum();
        assert!(
            p.bucket.is_packed() && p.bucket.tokens() >= total as u64,
            "{}",
            p.bucket
        );
        let (cos, err) = common::against_reference(&p, &w, &fixture, &x, &lens);
        assert!(
            cos >= 0.9999 && err < 0.05,
            "packed {lens:?}: cosine {cos}, abs error {err}"
        );
        let q = padded.run(&x).unwrap();
        assert!(!q.bucket.is_packed());
        let (cos, err) = common::against_reference(&q, &w, &fixture, &x, &lens);
        assert!(
            cos >= 0.9999 && err < 0.05,
            "padded {lens:?}: cosine {cos}, abs error {err}"
        );
        let a = auto.run(&x).unwrap();
        let (cos, _) = common::against_reference(&a, &w, &fixture, &x, &lens);
        assert!(cos >= 0.9999, "auto ({}) {lens:?}: cosine {cos}", a.bucket);
        // padding rows stay zero, and the packed form is the real rows back to back
        let h = p.hidden as usize;
        for (r, &len) in lens.iter().enumerate() {
            let row =
                &p.last_hidden_state[(r * seq as usize + len) * h..(r + 1) * seq as usize * h];
            assert!(row.iter().all(|&v| v == 0.0), "padding of sequence {r}");
        }
        let (rows, offsets) = p.packed();
        assert_eq!(rows.len(), total * h);
        assert_eq!(*offsets.last().unwrap(), total as u64);
        let last = lens.len() - 1;
        let at = (last * seq as usize) * h;
        assert_eq!(
            &rows[offsets[last] as usize * h..(offsets[last] as usize + 1) * h],
            &p.last_hidden_state[at..at + h]
        );
    }
    // three sequences fit no bucket of batch ≤ 2, packed or padded
    let (x, _) = common::ragged_batch(3, 8, 4);
    let e = err(packed.run(&x));
    assert!(e.contains("no packed bucket holds 3 sequences"), "{e}");
    let (b, t) = packed
        .time_input(&Inputs::with_lengths(32, &[32, 5]), 1, 3)
        .unwrap();
    assert_eq!(b.tokens(), 64);
    assert!(t.simulated() && t.median() > 0.0);
}
