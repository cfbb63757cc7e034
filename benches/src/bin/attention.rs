//! Fused attention benchmark, Tessera side: `softmax(Q·Kᵀ/√d)·V` in f16 at B32 H12 S384 D64,
//! B8 H16 S2048 D64 and B4 H16 S4096 D128, causal and not; best of the whole space, each
//! candidate verified (against the f64 reference on sampled query rows) before it is timed.
//!
//! Each candidate is labelled with the mainloop the attention dispatch policy gives it on this
//! device (`multistage`: `mma.sync` FlashAttention-2 style; `wgmma`: the sm_90a TMA + wgmma
//! warp-specialized one, one tile per block; `wgmma-persistent`: the same with `persistent = 1`,
//! one block per SM walking the tiles), and the best of each is reported: the first rung of the
//! ladder.
//!
//! Usage: `attention OUT.json`; `scripts/gpu-run.sh attention` runs it beside
//! `F.scaled_dot_product_attention`.

use anyhow::Context;
use serde_json::json;
use std::collections::HashMap;
use tessera_benches::{time_candidates, Search};
use tessera_device::cuda::CudaDevice;
use tessera_device::{Device, DeviceConfig};
use tessera_dsl::{AttentionPipeline, AttentionProblem, AttentionTile, Mask, Problem, Template};
use tessera_tuner::measure::TimingPlan;

fn main() -> anyhow::Result<()> {
    let out = std::env::args()
        .nth(1)
        .context("usage: attention OUT.json")?;
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
    // (batch, heads, seq_q, seq_kv, head_dim, masks); the last is decode: one query row
    // against a long KV, bound by reading K and V
    let both = [Mask::None, Mask::Causal];
    for (b, h, sq, skv, d, masks) in [
        (32u64, 12u64, 384u64, 384u64, 64u64, &both[..]),
        (8, 16, 2048, 2048, 64, &both[..]),
        (4, 16, 4096, 4096, 128, &both[..]),
        (8, 16, 1, 8192, 128, &both[..1]),
    ] {
        for &mask in masks {
            let mut a = AttentionProblem::new(b, h, sq, d);
            a.seq_kv = skv;
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
            rows.push(json!({"batch": b, "heads": h, "seq": sq, "seq_q": sq, "seq_kv": skv, "head_dim": d, "causal": mask == Mask::Causal,
                             "kv_bytes": 2 * b * h * skv * d * 2,
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
    let doc = json!({"benchmark": "attention", "side": "tessera", "device": info,
                     "timing": {"warmup": plan.warmup, "iters": plan.iters, "l2_flush": plan.l2_flush}, "results": rows});
    std::fs::write(&out, serde_json::to_string_pretty(&doc)?)?;
    Ok(())
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
            AttentionPipeline::Warpspecialized(_) => "wgmma",
            AttentionPipeline::Multistage => "multistage",
        };
        out.insert(c.kernel_name(), name);
    }
    out
}
