//! The compiler on a tiny random BERT written by the shared fixture, on the simulated device
//! (no GPU): the graph after the passes, a `--no-tune` plan and its JSON round trip, the
//! `--strict` failure, and the importer's errors for broken checkpoints.
//!
//! Compiling with tuning needs tuner worker processes (the `tessera` binary), so that path is
//! tested in `cli/tests/compile_cmd.rs`.

mod common;

use std::path::Path;
use tessera_cache::{Cache, DeviceFingerprint};
use tessera_compiler::fixture::Fixture;
use tessera_compiler::graph::{AttentionQkv, AttentionStore, InputKind, LinearStore, Op};
use tessera_compiler::plan::{Buffer, Callee, PlanError, View};
use tessera_compiler::tuning::{TuningError, TuningStatus};
use tessera_compiler::{compile, optimize, CompileError, Compiled, Lookup, Mode, Options, Plan};
use tessera_device::{Device, SimDevice};
use tessera_dsl::{AttentionLayout, DType, EpilogueOp, Mask, Problem, Store, Target};
use tessera_tuner::sweep::{device_fingerprint, Silent};

fn options(dir: &Path) -> Options {
    Options {
        model_dir: dir.to_path_buf(),
        dtype: DType::F16,
        batches: vec![1, 2],
        seqs: vec![16, 32],
        packed_steps: common::PACKED_STEPS,
        packed_granule: 0,
        fill_configs: tessera_compiler::tuning::FillConfigs::Borrow,
        dump_graph: None,
    }
}

fn sim() -> (DeviceFingerprint, tessera_dsl::DeviceCaps) {
    let d = SimDevice::new(Target::Sm90a);
    (
        device_fingerprint(&d.info(), Target::Sm90a),
        d.caps().clone(),
    )
}

fn compile_with(dir: &Path, cache: &Cache, mode: Mode) -> Result<Compiled, CompileError> {
    let (fingerprint, caps) = sim();
    let lookup = Lookup {
        cache,
        fingerprint: &fingerprint,
        caps: &caps,
    };
    compile(&options(dir), &lookup, mode, &mut Silent)
}

fn error_of(f: &Fixture) -> String {
    let dir = tempfile::tempdir().unwrap();
    f.write(dir.path()).unwrap();
    match optimize(&options(dir.path()), &mut Silent) {
        Ok(_) => panic!("expected an import error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn passes_leave_one_fused_qkv_gemm_per_layer_and_fused_epilogues() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Fixture::tiny();
    fixture.write(dir.path()).unwrap();
    let dump = dir.path().join("dump");
    let mut opts = options(dir.path());
    opts.dump_graph = Some(dump.clone());
    let out = optimize(&opts, &mut Silent).unwrap();
    let g = &out.model.graph;
    let layers = fixture.config.layers as usize;
    for gone in [
        "dropout",
        "bias_add",
        "add",
        "activation",
        "split_heads",
        "merge_heads",
    ] {
        assert_eq!(
            g.count(gone),
            0,
            "`{gone}` left after the passes:\n{}",
            g.dump()
        );
    }
    assert_eq!(g.count("attention"), layers);
    assert_eq!(g.count("layernorm"), 2 * layers);
    assert_eq!(g.count("linear"), 4 * layers);
    assert_eq!(
        g.nodes.len(),
        1 + 7 * layers,
        "embedding, 7 per layer (the pooler is not compiled)"
    );
    let h = fixture.config.hidden;
    let linears: Vec<_> = g.nodes.iter().filter(|n| n.op.kind() == "linear").collect();
    for layer in linears.chunks(4) {
        let [qkv, out_proj, up, down] = layer else {
            unreachable!()
        };
        let heads = LinearStore::Heads {
            heads: 2,
            head_dim: 64,
        };
        assert_eq!(
            qkv.op,
            Op::Linear {
                epilogue: vec![EpilogueOp::Bias],
                store: heads
            }
        );
        // the QKV weight is the three projections stacked: [3·hidden, hidden]
        let w = g.value(qkv.inputs[1]);
        assert!(w.name.ends_with("attention.qkv.weight"), "{}", w.name);
        assert_eq!(
            w.shape,
            vec![
                tessera_compiler::graph::Dim::Fixed(3 * h),
                tessera_compiler::graph::Dim::Fixed(h)
            ]
        );
        assert_eq!(
            out_proj.op,
            Op::Linear {
                epilogue: vec![EpilogueOp::Bias],
                store: LinearStore::Rows
            }
        );
        assert_eq!(
            up.op,
            Op::Linear {
                epilogue: vec![EpilogueOp::Bias, EpilogueOp::Gelu],
                store: LinearStore::Rows
            }
        );
        assert_eq!(
            down.op,
            Op::Linear {
                epilogue: vec![EpilogueOp::Bias],
                store: LinearStore::Rows
            }
        );
    }
    for n in g.nodes.iter() {
        match &n.op {
            Op::LayerNorm { residual, .. } => assert!(residual, "{} has no fused residual", n.name),
            Op::Attention { qkv, store, .. } => {
                assert_eq!(
                    (*qkv, *store),
                    (AttentionQkv::Packed, AttentionStore::Tokens),
                    "{}",
                    n.name
                );
                let packed = g.value(n.inputs[0]);
                assert!(
                    packed.name.ends_with(".qkv"),
                    "attention reads the QKV GEMM's output, got {}",
                    packed.name
                );
            }
            _ => {}
        }
    }
    // the embedding stays a node with all its operands (a later kernel slots in there)
    let emb = &g.nodes[0];
    assert_eq!((emb.op.kind(), emb.inputs.len()), ("embedding", 8));
    // every pass reported and dumped
    let names: Vec<&str> = out.passes.iter().map(|p| p.pass.as_str()).collect();
    assert_eq!(
        names,
        [
            "drop_noops",
            "merge_qkv",
            "fuse_residual_layernorm",
            "fuse_epilogue",
            "absorb_layout"
        ]
    );
    assert!(
        out.passes.iter().all(|p| p.rewrites > 0),
        "{:?}",
        out.passes
    );
    let first = std::fs::read_to_string(dump.join("00-import.txt")).unwrap();
    assert!(
        first.contains("= dropout[") && first.contains("= split_heads["),
        "{first}"
    );
    let last = std::fs::read_to_string(dump.join("05-absorb_layout.txt")).unwrap();
    assert_eq!(last, g.dump());
    assert!(last.contains("linear[bias,store=heads2x64]"), "{last}");
}

#[test]
fn no_tune_plan_has_every_launch_untuned_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    Fixture::tiny().write(dir.path()).unwrap();
    let cache = Cache::open(dir.path().join("tune.db")).unwrap();
    let compiled = compile_with(dir.path(), &cache, Mode::NoTune).unwrap();
    let plan = &compiled.plan;
    // 4 padded buckets, and under each one packed bucket (their token counts are under one
    // granule): 16, 32, 32 and 64 tokens
    assert_eq!(plan.buckets.len(), 8);
    let packed: Vec<_> = plan
        .buckets
        .iter()
        .filter(|b| b.bucket.is_packed())
        .collect();
    assert_eq!(
        packed.iter().map(|b| b.bucket.tokens()).collect::<Vec<_>>(),
        [16, 32, 32, 64]
    );
    // per padded bucket: embedding, qkv, attention, out-proj, layernorm, ffn up, ffn down
    // (both layers and both layernorms share them); buckets 1×32 and 2×16 have the same 32
    // rows, so their out-proj, layernorm and FFN problems are shared too (the embedding's
    // positions, QKV's head store and attention know seq). A packed bucket shares its
    // token-count's embedding, out-proj, layernorm and FFN problems, and adds its QKV GEMM
    // (a head store of one-token sequences: [3, tokens, heads, head_dim]; one per token count)
    // and its packed attention.
    assert_eq!(plan.kernels.len(), 7 * 4 - 4 + 3 + 4);
    for k in &plan.kernels {
        assert!(matches!(k.status, TuningStatus::Untuned { .. }), "{k:?}");
        assert!(k.kernel_name.starts_with(&k.template), "{}", k.kernel_name);
    }
    let qkv = plan.kernels.iter().find_map(|k| match &k.problem {
        Problem::Gemm(g) if g.n == 3 * 128 && g.m == 2 * 32 => Some(g.clone()),
        _ => None,
    });
    assert_eq!(
        qkv.unwrap().store,
        Store::Heads {
            heads: 2,
            head_dim: 64,
            seq: 32
        }
    );
    // attention writes O token-major, which the output projection reads as [tokens, hidden]
    let attention: Vec<_> = plan
        .kernels
        .iter()
        .filter_map(|k| match &k.problem {
            Problem::Attention(a) => Some((a.clone(), k.kernel_name.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(attention.len(), 8, "one attention problem per bucket");
    for (a, name) in &attention {
        if a.packed.is_some() {
            assert_eq!(a.mask, Mask::None);
            assert!(name.contains("_thd_"), "{name}");
        } else {
            assert_eq!((a.layout, a.mask), (AttentionLayout::Bshd, Mask::Padding));
            assert!(name.contains("_bshd_"), "{name}");
        }
    }
    for b in &packed {
        let kernel = |node: &str| {
            b.launches
                .iter()
                .find(|l| l.node.ends_with(node))
                .and_then(|l| match l.callee {
                    Callee::Kernel { kernel } => Some((l, &plan.kernels[kernel].problem)),
                    Callee::Glue { .. } => None,
                })
                .unwrap_or_else(|| panic!("{}: no kernel `{node}`", b.bucket))
        };
        let (_, qkv) = kernel(".qkv");
        let Problem::Gemm(g) = qkv else {
            panic!("{qkv}")
        };
        assert_eq!(
            (g.m, g.store),
            (
                b.bucket.tokens(),
                Store::Heads {
                    heads: 2,
                    head_dim: 64,
                    seq: 1
                }
            )
        );
        let (l, at) = kernel(".attention");
        let Problem::Attention(a) = at else {
            panic!("{at}")
        };
        assert_eq!(a.batch, b.bucket.batch);
        assert_eq!(a.seq_q, b.bucket.longest());
        let lens = b
            .inputs
            .iter()
            .find(|s| s.kind == InputKind::SeqLens)
            .unwrap();
        assert_eq!(lens.shape, [b.bucket.batch + 1], "the offsets");
        for name in ["cu_seqlens_q", "cu_seqlens_kv"] {
            let arg = l.args.iter().find(|a| a.name == name).unwrap();
            assert_eq!(arg.view, lens.view, "{name}");
        }
        assert!(l.args.iter().all(|a| a.name != "kv_lens"));
        let ids = b
            .inputs
            .iter()
            .find(|s| s.kind == InputKind::PositionIds)
            .unwrap();
        assert_eq!(ids.shape, [1, b.bucket.tokens()]);
    }
    for b in &plan.buckets {
        for l in &b.launches {
            if let (Some(store), Callee::Kernel { kernel }) = (l.attention_store, &l.callee) {
                assert_eq!(store, AttentionStore::Tokens);
                match &plan.kernels[*kernel].problem {
                    Problem::Attention(a) => assert!(
                        a.packed.is_some() || a.layout == AttentionLayout::Bshd,
                        "{a:?}"
                    ),
                    other => panic!("{} has an attention store but runs {other}", l.node),
                }
            }
        }
    }
    for b in &plan.buckets {
        assert_eq!(b.launches.len(), 15);
        // the embedding is a kernel; the pooler is not compiled, so no glue is left
        let Callee::Kernel { kernel } = b.launches[0].callee else {
            panic!("embedding first, as a kernel: {:?}", b.launches[0].callee)
        };
        match &plan.kernels[kernel].problem {
            Problem::Embedding(e) => {
                assert_eq!(
                    (e.tokens, e.seq, e.hidden),
                    (b.bucket.tokens(), b.bucket.longest(), 128)
                );
                assert_eq!(b.launches[0].scalars.keys().collect::<Vec<_>>(), ["eps"]);
            }
            other => panic!("embedding first, got {other}"),
        }
        let glue: Vec<_> = b
            .launches
            .iter()
            .filter_map(|l| match l.callee {
                Callee::Glue { glue } => Some(glue),
                Callee::Kernel { .. } => None,
            })
            .collect();
        assert!(glue.is_empty(), "no glue launches: {glue:?}");
        // no launch writes over an input: a captured graph replays on the same inputs
        // (activations are the only other arena views, and each is written by a launch)
        let inputs: Vec<&View> = b.inputs.iter().map(|s| &s.view).collect();
        for l in &b.launches {
            for a in l.args.iter().filter(|a| a.view.buffer == Buffer::Arena) {
                if inputs.contains(&&a.view) {
                    continue;
                }
                for i in &inputs {
                    let apart = a.view.offset + a.view.bytes <= i.offset
                        || i.offset + i.bytes <= a.view.offset;
                    assert!(apart, "{} `{}` overlaps an input slot", l.node, a.name);
                }
            }
        }
        assert!(b.arena_bytes <= b.naive_bytes && b.arena_bytes > 0);
        for l in &b.launches {
            if let Callee::Kernel { kernel } = l.callee {
                assert!(kernel < plan.kernels.len());
            }
            for a in &l.args {
                if a.view.buffer == Buffer::Weights {
                    assert_eq!(a.view.offset % 256, 0);
                    assert!(a.view.offset + a.view.bytes <= plan.weights.bytes);
                } else {
                    assert!(
                        a.view.offset + a.view.bytes <= b.arena_bytes,
                        "{} {}",
                        l.node,
                        a.name
                    );
                }
            }
        }
    }
    assert!(plan.arena.bytes < plan.arena.naive_bytes);
    // every kernel can be rebuilt from template + config (what an executor generates code from)
    let (_, caps) = sim();
    for k in &plan.kernels {
        let (t, config) = k.rebuild(&caps).unwrap();
        assert_eq!(
            (t.name(), config.kernel_name()),
            (k.template.as_str(), k.kernel_name.clone())
        );
    }
    let mut stale = plan.kernels[0].clone();
    stale.template_hash = "0000".into();
    let e = match stale.rebuild(&caps) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a changed template must not rebuild"),
    };
    assert!(e.contains("changed since the plan was compiled"), "{e}");
    // the plan directory round-trips
    let out = dir.path().join("model.tsr");
    compiled.write(&out).unwrap();
    let loaded = Plan::load(&out).unwrap();
    assert_eq!(&loaded, plan);
    let (fingerprint, _) = sim();
    loaded.check_device(&fingerprint).unwrap();
    let mut other = fingerprint.clone();
    other.name = "NVIDIA A100".into();
    assert!(matches!(
        loaded.check_device(&other),
        Err(PlanError::Device { .. })
    ));
    let mut other = fingerprint.clone();
    other.toolchain = "nvrtc 99.0".into();
    let e = loaded.check_device(&other).unwrap_err().to_string();
    assert!(e.contains("nvrtc 99.0"), "{e}");
    // a compile over an existing plan replaces it; damage is detected on load
    compiled.write(&out).unwrap();
    let text = std::fs::read_to_string(out.join("plan.json")).unwrap();
    std::fs::write(
        out.join("plan.json"),
        text.replace("\"schema_version\": 2", "\"schema_version\": 99"),
    )
    .unwrap();
    let e = Plan::load(&out).unwrap_err().to_string();
    assert!(
        e.contains("schema version 99") && e.contains("reads version 2"),
        "{e}"
    );
    compiled.write(&out).unwrap();
    let mut w = std::fs::read(out.join("weights.bin")).unwrap();
    w[10] ^= 1;
    std::fs::write(out.join("weights.bin"), w).unwrap();
    assert!(matches!(Plan::load(&out), Err(PlanError::Weights { .. })));
    // no temporary directory is left behind
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn strict_lists_every_miss() {
    let dir = tempfile::tempdir().unwrap();
    Fixture::tiny().write(dir.path()).unwrap();
    let cache = Cache::open(dir.path().join("tune.db")).unwrap();
    match compile_with(dir.path(), &cache, Mode::Strict) {
        Err(CompileError::Tuning(TuningError::Strict(misses))) => {
            assert_eq!(
                misses.len(),
                31,
                "every distinct problem, padded and packed"
            );
            assert!(
                misses
                    .iter()
                    .any(|m| m.starts_with("attention batch=2 heads=2 seq_q=32")),
                "{misses:?}"
            );
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("--strict with an empty cache must fail"),
    }
}

#[test]
fn wrapped_bf16_checkpoints_import_and_heads_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = Fixture::tiny();
    f.wrapped = true;
    f.pooler = false;
    f.dtype = DType::BF16;
    f.config.activation = tessera_compiler::import::Activation::Relu;
    f.write(dir.path()).unwrap();
    let mut opts = options(dir.path());
    opts.dtype = DType::BF16;
    let out = optimize(&opts, &mut Silent).unwrap();
    assert_eq!(out.model.graph.count("pooler"), 0);
    assert_eq!(out.model.graph.outputs.len(), 1);
    let up = out
        .model
        .graph
        .nodes
        .iter()
        .find(|n| n.name == "layer0.ffn_up")
        .unwrap();
    assert_eq!(
        up.op,
        Op::Linear {
            epilogue: vec![EpilogueOp::Bias, EpilogueOp::Relu],
            store: LinearStore::Rows
        }
    );
}

#[test]
fn broken_checkpoints_name_the_problem() {
    let mut f = Fixture::tiny();
    f.drop = Some("encoder.layer.1.attention.self.key.bias".into());
    let e = error_of(&f);
    assert!(
        e.contains("`encoder.layer.1.attention.self.key.bias` is missing"),
        "{e}"
    );

    let mut f = Fixture::tiny();
    f.reshape = Some((
        "encoder.layer.0.intermediate.dense.weight".into(),
        vec![128, 256],
    ));
    let e = error_of(&f);
    assert!(
        e.contains(
            "`encoder.layer.0.intermediate.dense.weight` has shape [128, 256], expected [256, 128]"
        ),
        "{e}"
    );

    let dir = tempfile::tempdir().unwrap();
    Fixture::tiny().write(dir.path()).unwrap();
    let st = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() - 100]).unwrap();
    let e = optimize(&options(dir.path()), &mut Silent)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("model.safetensors: truncated") && e.contains("ends at byte"),
        "{e}"
    );
    std::fs::write(&st, &bytes[..5]).unwrap();
    let e = optimize(&options(dir.path()), &mut Silent)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("shorter than the 8-byte header length"), "{e}");
    std::fs::remove_file(&st).unwrap();
    let e = optimize(&options(dir.path()), &mut Silent)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("model.safetensors: cannot read"), "{e}");

    let cfg = dir.path().join("config.json");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("\"bert\"", "\"llama\"")).unwrap();
    let e = optimize(&options(dir.path()), &mut Silent)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("unsupported model_type `llama`; supported: bert"),
        "{e}"
    );
    std::fs::write(&cfg, text.replace("\"gelu\"", "\"silu\"")).unwrap();
    let e = optimize(&options(dir.path()), &mut Silent)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("unsupported hidden_act `silu`") && e.contains("gelu_new"),
        "{e}"
    );
}

#[test]
fn head_dim_32_compiles_and_other_head_sizes_are_refused_at_import() {
    let dir = tempfile::tempdir().unwrap();
    let mut f = Fixture::tiny();
    f.config.hidden = 64;
    f.config.heads = 2;
    f.config.head_dim = 32;
    f.config.intermediate = 128;
    f.write(dir.path()).unwrap();
    let cache = Cache::open(dir.path().join("tune.db")).unwrap();
    let compiled = compile_with(dir.path(), &cache, Mode::NoTune).unwrap();
    let attention: Vec<_> = compiled
        .plan
        .kernels
        .iter()
        .filter_map(|k| match &k.problem {
            tessera_dsl::Problem::Attention(a) => Some(a.head_dim),
            _ => None,
        })
        .collect();
    assert!(
        !attention.is_empty() && attention.iter().all(|&d| d == 32),
        "{attention:?}"
    );
    // 16 heads of 4: no kernel has that head size; the importer says which ones exist
    let mut f = Fixture::tiny();
    f.config.hidden = 64;
    f.config.heads = 16;
    f.config.head_dim = 4;
    let e = error_of(&f);
    assert!(
        e.contains("head size 4") && e.contains("use 32, 64 or 128"),
        "{e}"
    );
}

#[test]
fn bad_buckets_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    Fixture::tiny().write(dir.path()).unwrap();
    let mut opts = options(dir.path());
    opts.seqs = vec![16, 128];
    let e = optimize(&opts, &mut Silent).err().unwrap().to_string();
    assert!(
        e.contains("sequence length 128 is longer than the model's 64 positions"),
        "{e}"
    );
    opts.seqs = vec![16];
    opts.packed_granule = 100;
    let e = optimize(&opts, &mut Silent).err().unwrap().to_string();
    assert!(
        e.contains("granule of 100 tokens: give a multiple of 128"),
        "{e}"
    );
    opts.packed_granule = 0;
    opts.dtype = DType::F32;
    let e = optimize(&opts, &mut Silent).err().unwrap().to_string();
    assert!(e.contains("must be f16 or bf16"), "{e}");
}

/// Fill buckets (every 128 tokens between the tuned packed buckets) take the configs of the
/// same problems in their anchor bucket instead of being tuned: batch 4 × seq 64 with one
/// packed step has the anchor of 256 tokens and the fill of 128.
#[test]
fn fill_buckets_borrow_their_anchors_configs() {
    let dir = tempfile::tempdir().unwrap();
    Fixture::tiny().write(dir.path()).unwrap();
    let cache = Cache::open(dir.path().join("tune.db")).unwrap();
    let (fingerprint, caps) = sim();
    let lookup = Lookup {
        cache: &cache,
        fingerprint: &fingerprint,
        caps: &caps,
    };
    let mut opts = options(dir.path());
    (opts.batches, opts.seqs) = (vec![4], vec![64]);
    (opts.packed_steps, opts.packed_granule) = (1, 128);
    let plan = compile(&opts, &lookup, Mode::NoTune, &mut Silent)
        .unwrap()
        .plan;
    let packed: Vec<u64> = plan
        .bucket_list()
        .iter()
        .filter(|b| b.is_packed())
        .map(|b| b.tokens())
        .collect();
    assert_eq!(packed, [256, 128]);
    let borrowed: Vec<_> = plan
        .kernels
        .iter()
        .filter_map(|k| match &k.status {
            TuningStatus::Borrowed { from } => Some((k, from)),
            _ => None,
        })
        .collect();
    // the fill's QKV, out-proj, FFN up (256 wide) and down GEMMs, layernorm, embedding and
    // attention
    // all differ from the anchor's by the token count
    assert_eq!(borrowed.len(), 7, "{borrowed:?}");
    for (k, from) in &borrowed {
        let donor = plan
            .kernels
            .iter()
            .find(|d| &d.problem.key() == *from)
            .unwrap_or_else(|| panic!("no donor {from}"));
        assert!(matches!(donor.status, TuningStatus::Untuned { .. }));
        assert_eq!(donor.problem.op(), k.problem.op());
        assert_eq!((&donor.template, &donor.config), (&k.template, &k.config));
        assert_ne!(donor.problem, k.problem);
    }
    assert!(borrowed
        .iter()
        .any(|(k, _)| matches!(&k.problem, Problem::Gemm(g) if g.m == 128 && g.n == 256)));
}

#[test]
fn launches_name_abi_operands_and_never_write_over_what_they_read() {
    let dir = tempfile::tempdir().unwrap();
    Fixture::tiny().write(dir.path()).unwrap();
    let cache = Cache::open(dir.path().join("tune.db")).unwrap();
    let plan = compile_with(dir.path(), &cache, Mode::NoTune).unwrap().plan;
    assert_eq!(
        plan.arena.bytes,
        plan.buckets.iter().map(|b| b.arena_bytes).max().unwrap(),
        "one arena sized for the largest bucket"
    );
    for b in &plan.buckets {
        for l in &b.launches {
            if let Callee::Kernel { kernel } = l.callee {
                let k = &plan.kernels[kernel];
                let variant = tessera_dsl::template::variant_for(DType::F32, &k.problem);
                let abi = tessera_dsl::ir::abi(k.problem.op(), &variant);
                let names: Vec<&str> = abi.iter().map(|a| a.name()).collect();
                for a in &l.args {
                    assert!(
                        names.contains(&a.name.as_str()),
                        "{}: `{}` is not in the ABI {names:?}",
                        l.node,
                        a.name
                    );
                }
            }
            // the written operand is the last; it overlaps no operand the launch reads
            let (written, read) = l.args.split_last().unwrap();
            assert_eq!(written.view.buffer, Buffer::Arena);
            for r in read.iter().filter(|r| r.view.buffer == Buffer::Arena) {
                let disjoint = r.view.offset + r.view.bytes <= written.view.offset
                    || written.view.offset + written.view.bytes <= r.view.offset;
                assert!(
                    disjoint,
                    "{} at {}: `{}` overlaps the output",
                    l.node, b.bucket, r.name
                );
            }
        }
        // Q, K and V are consecutive thirds of one buffer
        let att = b
            .launches
            .iter()
            .find(|l| l.node == "layer1.attention")
            .unwrap();
        let view = |n: &str| att.args.iter().find(|a| a.name == n).unwrap().view;
        let (q, k, v) = (view("q"), view("k"), view("v"));
        assert_eq!(
            (k.offset, v.offset),
            (q.offset + q.bytes, q.offset + 2 * q.bytes)
        );
        assert_eq!(q.bytes, b.bucket.batch * 2 * b.bucket.seq * 64 * 2);
    }
}
