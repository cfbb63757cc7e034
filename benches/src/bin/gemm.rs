//! GEMM benchmark, Tessera side: for each shape and dtype, the built-in shortlist is compiled
//! in parallel, every candidate verified against the reference, then timed (warm-up, device
//! events, median, L2 flushed before each run); the fastest verified candidate is reported.
//!
//! Usage: `gemm OUT.json` (on the GPU machine). `benches/gemm.sh` runs it beside cuBLAS.

use anyhow::{bail, Context};
use serde_json::json;
use tessera_device::cuda::CudaDevice;
use tessera_device::{Device, DeviceConfig};
use tessera_dsl::{DType, GemmProblem, Layout, Problem};
use tessera_tuner::measure::{compile, verify, TimingPlan};
use tessera_tuner::pool::{default_jobs, parallel_map};
use tessera_tuner::{shortlist, Candidate, GemmWorkload};

fn shapes() -> Vec<(u64, u64, u64)> {
    let mut v = Vec::new();
    for m in [384, 12288] {
        for (n, k) in [(2304, 768), (768, 768), (3072, 768), (768, 3072)] {
            v.push((m, n, k));
        }
    }
    v.push((4096, 4096, 4096));
    v.push((8192, 8192, 8192));
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
            };
            let p = Problem::Gemm(g.clone());
            let cands: Vec<Candidate> = shortlist::points(t, &p)
                .into_iter()
                .filter_map(|v| t.config(&v, &p).ok())
                .filter(|c| t.validate(c, &p, device.caps()).is_ok())
                .map(|c| Candidate::new(t, c, device.caps().target))
                .collect::<Result<_, _>>()?;
            let modules = parallel_map(&cands, default_jobs(), |c| compile(&device, c, &p, None));
            let w = GemmWorkload::new(&device, &g, m ^ n ^ k)?;
            let mut measured = Vec::new();
            for (c, module) in cands.iter().zip(modules) {
                let module = match module {
                    Ok(module) => module,
                    Err(e) => {
                        eprintln!("  {}: compile failed: {e}", c.name());
                        continue;
                    }
                };
                let verdict = verify(&device, &module, c, &w)?;
                if !verdict.pass {
                    bail!(
                        "{} is wrong on {p}: rel err {:.2e}",
                        c.name(),
                        verdict.rel_err
                    );
                }
                let timing = device.time(
                    &module,
                    &w.launch(c),
                    &w.args(),
                    plan.warmup,
                    plan.iters,
                    plan.l2_flush,
                )?;
                let regs = module.report().usage.registers;
                device.unload(&module)?;
                measured.push((
                    c.name(),
                    timing.median(),
                    timing.p10(),
                    timing.p90(),
                    verdict.rel_err,
                    regs,
                ));
            }
            w.free(&device)?;
            measured.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            let Some(best) = measured.first().cloned() else {
                bail!("no candidate ran for {p}")
            };
            let tflops = p.flops() / (best.1 * 1e-3) / 1e12;
            eprintln!(
                "{dtype} {m}x{n}x{k}: {} {:.3} ms {:.1} TFLOP/s ({} candidates)",
                best.0,
                best.1,
                tflops,
                measured.len()
            );
            rows.push(json!({
                "dtype": dtype.name(), "m": m, "n": n, "k": k, "layout": "rcr",
                "best_kernel": best.0, "median_ms": best.1, "p10_ms": best.2, "p90_ms": best.3,
                "tflops": tflops, "rel_err": best.4, "registers": best.5,
                "candidates": measured.iter().map(|c| json!({"kernel": c.0, "median_ms": c.1, "p10_ms": c.2, "p90_ms": c.3, "registers": c.5})).collect::<Vec<_>>(),
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
