//! GEMM benchmark, Tessera side: for each shape and dtype, the built-in shortlist is compiled
//! in parallel, every candidate verified against the reference, then timed (warm-up, device
//! events, median, L2 flushed before each run); the fastest verified candidate is reported.
//!
//! Usage: `gemm OUT.json` (on the GPU machine). `scripts/gpu-run.sh bench` runs it beside cuBLAS.

use anyhow::Context;
use serde_json::json;
use tessera_benches::{time_candidates, Search};
use tessera_device::cuda::CudaDevice;
use tessera_device::{Device, DeviceConfig};
use tessera_dsl::{DType, GemmProblem, Layout, Problem};
use tessera_tuner::measure::TimingPlan;

fn shapes() -> Vec<(u64, u64, u64)> {
    let mut v = Vec::new();
    for m in [384, 12288] {
        for (n, k) in [(2304, 768), (768, 768), (3072, 768), (768, 3072)] {
            v.push((m, n, k));
        }
    }
    v.push((4096, 4096, 4096));
    v.push((8192, 8192, 8192));
    // decode: a few tokens against a 64 MB weight (bound by streaming the weight)
    for m in [1, 8, 64, 128] {
        v.push((m, 8192, 4096));
    }
    v
}

fn main() -> anyhow::Result<()> {
    let out = std::env::args().nth(1).context("usage: gemm OUT.json")?;
    let device = CudaDevice::open(&DeviceConfig::default())?;
    let info = device.info();
    eprintln!("device: {} ({}), {}", info.name, info.arch, info.toolchain);
    tessera_library::templates();
    let t = tessera_dsl::find("gemm")?;
    let plan = TimingPlan {
        warmup: 5,
        iters: 30,
        l2_flush: true,
    };
    let mut rows = Vec::new();
    for dtype in [DType::F16, DType::BF16] {
        for (m, n, k) in shapes() {
            let g = GemmProblem {
                m,
                n,
                k,
                batch: 1,
                input: dtype,
                output: dtype,
                layout_b: Layout::Col,
                epilogue: vec![],
                store: Default::default(),
            };
            let p = Problem::Gemm(g);
            let measured = time_candidates(&device, t, &p, plan, Search::Shortlist)?;
            let best = &measured[0];
            let tflops = p.flops() / (best.median_ms * 1e-3) / 1e12;
            eprintln!(
                "{dtype} {m}x{n}x{k}: {} {:.3} ms {:.1} TFLOP/s ({} candidates)",
                best.kernel,
                best.median_ms,
                tflops,
                measured.len()
            );
            rows.push(json!({
                "dtype": dtype.name(), "m": m, "n": n, "k": k, "layout": "rcr",
                "best_kernel": best.kernel, "median_ms": best.median_ms, "p10_ms": best.p10_ms, "p90_ms": best.p90_ms,
                "tflops": tflops, "rel_err": best.rel_err, "registers": best.registers,
                "candidates": measured.iter().map(|c| c.json()).collect::<Vec<_>>(),
            }));
        }
    }
    let doc = json!({
        "benchmark": "gemm", "side": "tessera", "device": info, "timing": {"warmup": plan.warmup, "iters": plan.iters, "l2_flush": plan.l2_flush, "statistic": "median of CUDA-event times"},
        "results": rows,
    });
    std::fs::write(&out, serde_json::to_string_pretty(&doc)?)?;
    Ok(())
}
