//! Fused attention benchmark, Tessera side: `softmax(Q·Kᵀ/√d)·V` in f16 at B32 H12 S384 D64,
//! B8 H16 S2048 D64 and B4 H16 S4096 D128, causal and not; best of the whole space, each
//! candidate verified (against the f64 reference on sampled query rows) before it is timed.
//!
//! Each candidate is labelled with the mainloop the attention dispatch policy gives it on this
//! device (`multistage`: `mma.sync` FlashAttention-2 style; `wgmma`: the sm_90a TMA + wgmma
//! warp-specialized one, one tile per block; `wgmma-persistent`: the same with `persistent = 1`,
//! one block per SM walking the tiles; `wgmma-split-kv`: `split_kv` 2/4/8, a cluster of blocks
//! per tile sharing its keys), and the best of each is reported: the first rung of the ladder.
//! The decode cases (one query row) report K/V read bandwidth beside a device copy.
//!
//! The packed case (issue 10's "packed batch"): 32 sequences of seeded random lengths in 1..=384
//! (about half padding), B32 H12 D64, as a packed (`thd`, `cu_seqlens`) problem, beside the
//! padded kernel on a padded batch of the same shape with key padding (`kv_lens` drawn by the
//! operand generator from the same uniform 1..=384); FLOPs and TFLOP/s count the real tokens'
//! work (Σ len²) for both, so the ratio is a time ratio. The PyTorch side runs SDPA on the padded
//! batch with the boolean key-padding mask.
//!
//! Usage: `attention OUT.json [--prefill]` (`--prefill`: the six prefill cases only);
//! `scripts/gpu-run.sh attention` runs all of them beside `F.scaled_dot_product_attention`.

use anyhow::Context;
use serde_json::json;
use std::collections::HashMap;
use tessera_benches::{time_candidates, Search};
use tessera_device::cuda::CudaDevice;
use tessera_device::{Device, DeviceConfig};
use tessera_dsl::{
    AttentionPipeline, AttentionProblem, AttentionTile, Mask, Packing, Problem, Template,
};
use tessera_tuner::measure::TimingPlan;

fn main() -> anyhow::Result<()> {
    let usage = "usage: attention OUT.json [--prefill]";
    let out = std::env::args().nth(1).context(usage)?;
    let prefill_only = match std::env::args().nth(2).as_deref() {
        None => false,
        Some("--prefill") => true,
        Some(other) => anyhow::bail!("unknown argument {other:?}; {usage}"),
    };
    let device = CudaDevice::open(&DeviceConfig::default())?;
    let info = device.info();
    tessera_library::templates();
    let t = tessera_dsl::find("attention")?;
    let plan = TimingPlan {
        warmup: 5,
        iters: 30,
        l2_flush: true,
    };
    let mut rows = Vec::new();
    // (batch, heads, seq_q, seq_kv, head_dim, masks); the last two are decode: one query row
    // against a long KV, bound by reading K and V
    let both = [Mask::None, Mask::Causal];
    for (b, h, kvh, sq, skv, d, masks) in [
        (32u64, 12u64, 12u64, 384u64, 384u64, 64u64, &both[..]),
        (8, 16, 16, 2048, 2048, 64, &both[..]),
        (4, 16, 16, 4096, 4096, 128, &both[..]),
        (8, 16, 16, 1, 8192, 128, &both[..1]),
        // a single sequence's decode: 16 (batch, head) tiles for 132 SMs, where split-KV's
        // clusters put more multiprocessors on the K/V stream
        (1, 16, 16, 1, 16384, 128, &both[..1]),
        // grouped-query decode (LLaMA-class, 32 query heads over 8 K/V heads), where grouped
        // heads read each K/V head once per group
        (1, 32, 8, 1, 16384, 128, &both[..1]),
        (8, 32, 8, 1, 8192, 128, &both[..1]),
    ] {
        if prefill_only && sq == 1 {
            continue;
        }
        for &mask in masks {
            let mut a = AttentionProblem::new(b, h, sq, d);
            a.seq_kv = skv;
            a.kv_heads = kvh;
            a.mask = mask;
            let p = Problem::Attention(a);
            let measured = time_candidates(&device, t, &p, plan, Search::WholeSpace)?;
            let best = &measured[0];
            let pipelines = pipelines(t, &p, device.caps().target);
            let pipeline = |kernel: &str| pipelines.get(kernel).copied().unwrap_or("unknown");
            let mut ladder = serde_json::Map::new();
            for m in &measured {
                ladder.entry(pipeline(&m.kernel)).or_insert_with(|| {
                    json!({"kernel": m.kernel, "median_ms": m.median_ms,
                                              "tflops": p.flops() / (m.median_ms * 1e-3) / 1e12})
                });
            }
            let tflops = p.flops() / (best.median_ms * 1e-3) / 1e12;
            eprintln!(
                "{p}: {} {:.4} ms {:.1} TFLOP/s ({} candidates)",
                best.kernel,
                best.median_ms,
                tflops,
                measured.len()
            );
            rows.push(json!({"batch": b, "heads": h, "kv_heads": kvh, "seq": sq, "seq_q": sq, "seq_kv": skv, "head_dim": d, "causal": mask == Mask::Causal,
                             "kv_bytes": 2 * b * kvh * skv * d * 2,
                             "dtype": "f16", "flops": p.flops(), "best_kernel": best.kernel,
                             "median_ms": best.median_ms, "p10_ms": best.p10_ms, "p90_ms": best.p90_ms,
                             "tflops": tflops, "rel_err": best.rel_err, "registers": best.registers,
                             "pipeline": pipeline(&best.kernel), "best_per_pipeline": ladder,
                             "candidates": measured.len(),
                             "all": measured.iter().map(|m| {
                                 let mut j = m.json();
                                 j["pipeline"] = json!(pipeline(&m.kernel));
                                 j
                             }).collect::<Vec<_>>()}));
        }
    }
    if !prefill_only {
        rows.push(packed_case(&device, t, plan)?);
    }
    let doc = json!({"benchmark": "attention", "side": "tessera", "device": info,
                     "timing": {"warmup": plan.warmup, "iters": plan.iters, "l2_flush": plan.l2_flush}, "results": rows});
    std::fs::write(&out, serde_json::to_string_pretty(&doc)?)?;
    Ok(())
}

/// The packed batch beside the padded kernel (see the module docs).
fn packed_case(
    device: &CudaDevice,
    t: &'static dyn Template,
    plan: TimingPlan,
) -> anyhow::Result<serde_json::Value> {
    let (b, h, s, d) = (32u64, 12u64, 384u64, 64u64);
    let lens = tessera_library::fixtures::random_lens(b as usize, s, 0x5EED_0A77);
    let packed = Problem::Attention(
        AttentionProblem::new(1, h, 1, d).with_packing(Packing::uniform_self(lens.clone())),
    );
    let mut padded = AttentionProblem::new(b, h, s, d);
    padded.mask = Mask::Padding;
    let padded = Problem::Attention(padded);
    let flops = packed.flops();
    let mut best = Vec::new();
    for p in [&packed, &padded] {
        let measured = time_candidates(device, t, p, plan, Search::WholeSpace)?;
        let pipelines = pipelines(t, p, device.caps().target);
        let pipeline = |kernel: &str| pipelines.get(kernel).copied().unwrap_or("unknown");
        let mut ladder = serde_json::Map::new();
        for m in &measured {
            ladder.entry(pipeline(&m.kernel)).or_insert_with(|| {
                json!({"kernel": m.kernel, "median_ms": m.median_ms,
                       "tflops": flops / (m.median_ms * 1e-3) / 1e12})
            });
        }
        let m = &measured[0];
        eprintln!(
            "{p}: {} {:.4} ms {:.1} useful TFLOP/s ({} candidates)",
            m.kernel,
            m.median_ms,
            flops / (m.median_ms * 1e-3) / 1e12,
            measured.len()
        );
        best.push(
            json!({"kernel": m.kernel, "median_ms": m.median_ms, "p10_ms": m.p10_ms,
                         "p90_ms": m.p90_ms, "rel_err": m.rel_err, "registers": m.registers,
                         "pipeline": pipeline(&m.kernel), "best_per_pipeline": ladder,
                         "candidates": measured.len()}),
        );
    }
    let tokens: u64 = lens.iter().sum();
    Ok(
        json!({"batch": b, "heads": h, "seq": s, "seq_q": s, "seq_kv": s, "head_dim": d,
              "causal": false, "dtype": "f16", "flops": flops,
              "packed_lens": lens, "padding_fraction": 1.0 - tokens as f64 / (b * s) as f64,
              "best_kernel": best[0]["kernel"], "median_ms": best[0]["median_ms"],
              "p10_ms": best[0]["p10_ms"], "p90_ms": best[0]["p90_ms"],
              "tflops": flops / (best[0]["median_ms"].as_f64().unwrap_or(f64::NAN) * 1e-3) / 1e12,
              "rel_err": best[0]["rel_err"], "registers": best[0]["registers"],
              "pipeline": best[0]["pipeline"], "best_per_pipeline": best[0]["best_per_pipeline"],
              "candidates": best[0]["candidates"], "padded_kernel": best[1]}),
    )
}

/// Kernel name → the mainloop the dispatch policy gives that config on `target`.
fn pipelines(
    t: &'static dyn Template,
    p: &Problem,
    target: tessera_dsl::Target,
) -> HashMap<String, &'static str> {
    let mut out = HashMap::new();
    for v in t.space().enumerate() {
        let Ok(c) = t.config(&v, p) else { continue };
        let name = match AttentionPipeline::select(target, &AttentionTile::of(&c), &c.variant) {
            AttentionPipeline::Warpspecialized(plan) if plan.persistent() => "wgmma-persistent",
            AttentionPipeline::Warpspecialized(plan) if plan.group_heads && plan.splits_keys() => {
                "wgmma-grouped-split-kv"
            }
            AttentionPipeline::Warpspecialized(plan) if plan.group_heads => "wgmma-grouped",
            AttentionPipeline::Warpspecialized(plan) if plan.splits_keys() => "wgmma-split-kv",
            AttentionPipeline::Warpspecialized(_) => "wgmma",
            AttentionPipeline::Multistage => "multistage",
        };
        out.insert(c.kernel_name(), name);
    }
    out
}
