//! Layernorm benchmark, Tessera side: `y = LN(x (+ residual))·gamma + beta` in f16 at
//! 12288×768, 65536×1024 and 16384×4096, with and without the fused residual; best of the
//! whole space, each candidate verified before it is timed.
//!
//! Usage: `layernorm OUT.json`; `scripts/gpu-run.sh layernorm` runs it beside `F.layer_norm`
//! and a device-to-device copy of the same size.

use anyhow::Context;
use serde_json::json;
use tessera_benches::{time_candidates, Search};
use tessera_device::cuda::CudaDevice;
use tessera_device::{Device, DeviceConfig};
use tessera_dsl::{LayernormProblem, Problem};
use tessera_tuner::measure::TimingPlan;

fn main() -> anyhow::Result<()> {
    let out = std::env::args()
        .nth(1)
        .context("usage: layernorm OUT.json")?;
    let device = CudaDevice::open(&DeviceConfig::default())?;
    let info = device.info();
    tessera_library::templates();
    let t = tessera_dsl::find("layernorm")?;
    let plan = TimingPlan {
        warmup: 5,
        iters: 30,
        l2_flush: true,
    };
    let mut rows = Vec::new();
    for (r, c) in [(12288u64, 768u64), (65536, 1024), (16384, 4096)] {
        for residual in [false, true] {
            let mut l = LayernormProblem::new(r, c);
            l.residual = residual;
            let p = Problem::Layernorm(l);
            let measured = time_candidates(&device, t, &p, plan, Search::WholeSpace)?;
            let best = &measured[0];
            let gbs = p.bytes() / (best.median_ms * 1e-3) / 1e9;
            eprintln!(
                "{p}: {} {:.4} ms {:.0} GB/s ({} candidates)",
                best.kernel,
                best.median_ms,
                gbs,
                measured.len()
            );
            rows.push(json!({"rows": r, "cols": c, "residual": residual, "dtype": "f16", "bytes": p.bytes(),
                             "best_kernel": best.kernel, "median_ms": best.median_ms, "p10_ms": best.p10_ms,
                             "p90_ms": best.p90_ms, "gbs": gbs, "rel_err": best.rel_err, "registers": best.registers,
                             "candidates": measured.len(),
                             "all": measured.iter().map(|m| m.json()).collect::<Vec<_>>()}));
        }
    }
    let doc = json!({"benchmark": "layernorm", "side": "tessera", "device": info,
                     "timing": {"warmup": plan.warmup, "iters": plan.iters, "l2_flush": plan.l2_flush}, "results": rows});
    std::fs::write(&out, serde_json::to_string_pretty(&doc)?)?;
    Ok(())
}
