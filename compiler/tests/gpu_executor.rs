//! The executor on a real GPU (`--features gpu`, the GPU machine): the tiny random BERT
//! compiled without tuning for this GPU, run with a padded batch (graph replay and eager), its
//! last hidden state compared with an f64 CPU forward pass of the same checkpoint written here
//! (embeddings, attention with the padding mask, exact-erf GELU FFN, post-layernorms); and
//! ragged batches run packed, padded and auto against the same reference.
//!
#![cfg(feature = "gpu")]

mod common;

use tessera_compiler::executor::Padding;
use tessera_compiler::fixture::Fixture;
use tessera_compiler::{ExecOptions, Executor, Inputs};
use tessera_device::cuda::CudaDevice;
use tessera_device::DeviceConfig;

fn all_real(batch: u64, seq: u64) -> Inputs {
    Inputs {
        batch,
        seq,
        input_ids: (0..batch * seq).map(|i| (i * 11 % 100) as i64).collect(),
        attention_mask: None,
        token_type_ids: None,
    }
}

/// The first two launches on the GPU: the embedding kernel, then the fused QKV GEMM of layer 0 (views into the weight blob and the arena, heads store) matches an f64 reference.
#[test]
fn gpu_executor_qkv_gemm_matches_reference() {
    let device = CudaDevice::open(&DeviceConfig::default()).expect("a GPU");
    let dir = tempfile::tempdir().unwrap();
    let plan_path = common::compile_tiny(&device, dir.path());
    let exec = Executor::load(
        &plan_path,
        &device,
        ExecOptions {
            graphs: false,
            debug_nodes: true,
            padding: Padding::Padded,
        },
    )
    .unwrap();
    let (nodes, result) = exec.run_debug(&all_real(2, 16));
    eprintln!("run: {:?}", result.as_ref().err().map(|e| e.to_string()));
    assert!(nodes.len() >= 2, "embedding and QKV ran: {:?}", nodes.len());
    let plan = exec.plan();
    let weights = std::fs::read(plan_path.join("weights.bin")).unwrap();
    let w = common::weight(plan, &weights, "layer0.attention.qkv.weight");
    let bias = common::weight(plan, &weights, "layer0.attention.qkv.bias");
    let emb = common::f16s(&nodes[0].1);
    let qkv = common::f16s(&nodes[1].1);
    let (bs, h, heads, hd) = (16usize, 128usize, 2usize, 64usize);
    let mut worst = 0f64;
    for t in 0..2 * bs {
        let (bi, si) = (t / bs, t % bs);
        for j in 0..3 * h {
            let want: f64 = (0..h).map(|k| emb[t * h + k] * w[j * h + k]).sum::<f64>() + bias[j];
            let (which, head, dd) = (j / h, (j % h) / hd, j % hd);
            let idx = (((which * 2 + bi) * heads + head) * bs + si) * hd + dd;
            worst = worst.max((qkv[idx] - want).abs() / want.abs().max(1.0));
        }
    }
    eprintln!("QKV GEMM worst relative error {worst:.2e}");
    assert!(
        worst < 5e-3,
        "QKV GEMM differs from the reference by {worst}"
    );
}

/// On a plan edited to hold only kernel launches: the captured graph's replay writes exactly
/// what the eager launch list writes. The arena is shared by the buckets and the edited plan
/// reads a region nothing writes, so both executors start from the same history: a zeroed
/// arena, then every bucket run once in order (the graph executor's warm-up at load). Bench
/// timing and the per-kind breakdown work on the GPU.
#[test]
fn gpu_executor_graph_replay_equals_eager() {
    let device = CudaDevice::open(&DeviceConfig::default()).expect("a GPU");
    let dir = tempfile::tempdir().unwrap();
    let plan_path = common::compile_tiny(&device, dir.path());
    common::all_kernel_plan(&plan_path);
    let x = all_real(2, 32);
    let graph = Executor::load(&plan_path, &device, ExecOptions::default()).unwrap();
    assert!(graph.has_graph(3));
    let g = graph.run(&x).unwrap();
    let b = g.bucket;
    let t = graph.time(b, 3, 20).unwrap();
    let parts = graph.breakdown(b, 5).unwrap().by_kind();
    eprintln!(
        "graph replay {:.4} ms, launches alone {parts:?}",
        t.median()
    );
    assert!(t.median() > 0.0 && !t.simulated());
    let buckets = graph.plan().bucket_list();
    drop(graph);
    let eager = Executor::load(
        &plan_path,
        &device,
        ExecOptions {
            graphs: false,
            debug_nodes: false,
            padding: Padding::Padded,
        },
    )
    .unwrap();
    for bucket in buckets {
        eager.time(bucket, 0, 1).unwrap(); // one eager run of the bucket, default inputs
    }
    let e = eager.run(&x).unwrap();
    assert_eq!(g.last_hidden_state.len(), e.last_hidden_state.len());
    let differ = g
        .last_hidden_state
        .iter()
        .zip(&e.last_hidden_state)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .count();
    assert_eq!(
        differ, 0,
        "graph replay and eager launches differ in {differ} values"
    );
}

#[test]
fn gpu_executor_tiny_bert_matches_f64_reference() {
    let device = CudaDevice::open(&DeviceConfig::default()).expect("a GPU");
    let dir = tempfile::tempdir().unwrap();
    let fixture = Fixture::tiny();
    let plan = common::compile_tiny(&device, dir.path());
    let w = common::checkpoint(dir.path());
    let (x, lens) = common::padded_batch();
    for graphs in [true, false] {
        let exec = Executor::load(
            &plan,
            &device,
            ExecOptions {
                graphs,
                debug_nodes: false,
                padding: Padding::Padded,
            },
        )
        .unwrap();
        let out = exec.run(&x).expect("run the tiny BERT");
        let (worst_cos, worst_err) = common::against_reference(&out, &w, &fixture, &x, &lens);
        eprintln!("graphs {graphs}: worst cosine {worst_cos:.6}, worst abs error {worst_err:.4}");
        assert!(worst_cos >= 0.9999, "cosine {worst_cos}");
        assert!(worst_err < 0.05, "abs error {worst_err}");
    }
}

/// Packed execution on the GPU: the tiny BERT compiled with buckets of 1, 4 and 8 sequences
/// of up to 16 and 64 tokens and four packed buckets under each, run on ragged batches
/// (lengths 1 to the maximum, one of each extreme) packed, padded and auto, graphs on and
/// off, every real token checked against the f64 forward pass; packed and padded agree.
#[test]
fn gpu_executor_packed_batches_match_f64_reference() {
    let device = CudaDevice::open(&DeviceConfig::default()).expect("a GPU");
    let dir = tempfile::tempdir().unwrap();
    let fixture = Fixture::tiny();
    let plan = common::compile_tiny_with(&device, dir.path(), &[1, 4, 8], &[16, 64], (4, 0));
    let w = common::checkpoint(dir.path());
    for graphs in [true, false] {
        let load = |padding| {
            Executor::load(
                &plan,
                &device,
                ExecOptions {
                    graphs,
                    debug_nodes: false,
                    padding,
                },
            )
            .unwrap()
        };
        let runs = [
            (Padding::Packed, load(Padding::Packed)),
            (Padding::Padded, load(Padding::Padded)),
            (Padding::Auto, load(Padding::Auto)),
        ];
        for (batch, seq, seed) in [(8, 64, 1), (8, 40, 2), (4, 64, 3), (3, 16, 4), (1, 64, 5)] {
            let (x, lens) = common::ragged_batch(batch, seq, seed);
            let mut outs = Vec::new();
            for (padding, exec) in &runs {
                let out = exec.run(&x).expect("run the tiny BERT");
                match padding {
                    Padding::Packed => assert!(out.bucket.is_packed(), "{}", out.bucket),
                    Padding::Padded => assert!(!out.bucket.is_packed(), "{}", out.bucket),
                    Padding::Auto => {} // either, by the times measured at load
                }
                let (cos, err) = common::against_reference(&out, &w, &fixture, &x, &lens);
                eprintln!(
                    "graphs {graphs} {} {lens:?} in {}: worst cosine {cos:.6}, worst abs error {err:.4}",
                    padding.name(),
                    out.bucket
                );
                assert!(cos >= 0.9999, "{} {lens:?}: cosine {cos}", padding.name());
                assert!(err < 0.05, "{} {lens:?}: abs error {err}", padding.name());
                outs.push(out);
            }
            let diff = outs[0]
                .last_hidden_state
                .iter()
                .zip(&outs[1].last_hidden_state)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(diff < 0.05, "packed and padded differ by {diff}");
        }
    }
}
