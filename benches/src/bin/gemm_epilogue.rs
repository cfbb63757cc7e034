//! Fused-epilogue GEMM benchmark, Tessera side: `D = GELU(x·Wᵀ + b)` at BERT's FFN-up shape
//! (12288×3072×768, f16), with the erf GELU and the tanh GELU, and the plain `D = x·Wᵀ` of the
//! same shape (what the epilogue costs, in the same run), best of the whole space, each
//! candidate verified before it is timed.
//!
//! Usage: `gemm_epilogue OUT.json [--only PART]`; `--only` times just the configs whose kernel
//! name contains PART (one config, to run under a profiler). `scripts/gpu-run.sh epilogue` runs
//! it beside PyTorch's unfused `F.gelu(F.linear(...))`, cuBLASLt's fused
//! `torch._addmm_activation(..., use_gelu=True)` and cuBLAS's plain product.

use serde_json::json;
use tessera_benches::{time_candidates, Search};
use tessera_device::cuda::CudaDevice;
use tessera_device::{Device, DeviceConfig};
use tessera_dsl::{DType, EpilogueOp, GemmProblem, Layout, Problem};
use tessera_tuner::measure::TimingPlan;

fn main() -> anyhow::Result<()> {
    const USAGE: &str = "usage: gemm_epilogue OUT.json [--only PART]";
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (out, only) = match args.as_slice() {
        [out] => (out, None),
        [out, flag, part] if flag == "--only" => (out, Some(part.as_str())),
        _ => anyhow::bail!(USAGE),
    };
    let search = only.map_or(Search::WholeSpace, Search::Matching);
    let device = CudaDevice::open(&DeviceConfig::default())?;
    let info = device.info();
    tessera_library::templates();
    let t = tessera_dsl::find("gemm")?;
    let plan = TimingPlan {
        warmup: 5,
        iters: 30,
        l2_flush: true,
    };
    let (m, n, k) = (12288u64, 3072u64, 768u64);
    let mut rows = Vec::new();
    for (label, epilogue) in [
        ("bias_gelu_erf", vec![EpilogueOp::Bias, EpilogueOp::Gelu]),
        (
            "bias_gelu_tanh",
            vec![EpilogueOp::Bias, EpilogueOp::GeluTanh],
        ),
        ("plain", vec![]),
    ] {
        let g = GemmProblem {
            m,
            n,
            k,
            batch: 1,
            input: DType::F16,
            output: DType::F16,
            layout_b: Layout::Col,
            epilogue,
            store: Default::default(),
        };
        let p = Problem::Gemm(g);
        let measured = time_candidates(&device, t, &p, plan, search)?;
        let best = &measured[0];
        let tflops = p.flops() / (best.median_ms * 1e-3) / 1e12;
        eprintln!(
            "{label} {m}x{n}x{k}: {} {:.4} ms {:.1} TFLOP/s ({} candidates)",
            best.kernel,
            best.median_ms,
            tflops,
            measured.len()
        );
        rows.push(json!({"variant": label, "m": m, "n": n, "k": k, "dtype": "f16", "best_kernel": best.kernel, "median_ms": best.median_ms,
                         "p10_ms": best.p10_ms, "p90_ms": best.p90_ms, "tflops": tflops, "rel_err": best.rel_err, "candidates": measured.len()}));
    }
    let doc = json!({"benchmark": "gemm_epilogue", "side": "tessera", "device": info,
                     "timing": {"warmup": plan.warmup, "iters": plan.iters, "l2_flush": plan.l2_flush}, "results": rows});
    std::fs::write(out, serde_json::to_string_pretty(&doc)?)?;
    Ok(())
}
