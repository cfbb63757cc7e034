"""Fused-epilogue GEMM benchmark, PyTorch side, and the comparison with the Tessera side of the
same run. D = GELU(x @ W.T + b) at 12288x3072x768 f16: F.gelu(F.linear(...)) (cuBLAS + a GELU
kernel), its tanh form, torch._addmm_activation(b, x, W.T, use_gelu=True) (cuBLASLt's
fused GELU epilogue) and the plain product x @ W.T (cuBLAS), beside Tessera's plain GEMM of the
same shape, so each side's epilogue cost is its fused time less its plain time. Same method as Tessera: warm-up, CUDA events, L2 flushed, median of 30.
Usage: python3 gemm_epilogue_vendor.py TESSERA.json OUT.json COMMIT COMMAND"""
import datetime, json, statistics, sys
import torch
import torch.nn.functional as F

from timing import timed

m, n, k = 12288, 3072, 768
x = torch.rand(m, k, device="cuda", dtype=torch.float16) * 2 - 1
w = torch.rand(n, k, device="cuda", dtype=torch.float16) * 2 - 1
b = torch.rand(n, device="cuda", dtype=torch.float16) * 2 - 1


vendor = {
    "F.gelu(F.linear) erf (unfused)": timed(lambda: F.gelu(F.linear(x, w, b))),
    "F.gelu(F.linear) tanh (unfused)": timed(lambda: F.gelu(F.linear(x, w, b), approximate="tanh")),
    "torch._addmm_activation use_gelu (cuBLASLt fused)": timed(lambda: torch._addmm_activation(b, x, w.t(), use_gelu=True)),
    "F.linear no bias (cuBLAS plain)": timed(lambda: F.linear(x, w)),
}
ours = json.load(open(sys.argv[1]))
flops = 2 * m * n * k
rows = []
print(f"{'implementation':52} {'ms':>8} {'TFLOP/s':>8}")
for name, ms in vendor.items():
    rows.append({"impl": name, "median_ms": ms, "tflops": flops / (ms * 1e-3) / 1e12})
for r in ours["results"]:
    rows.append({"impl": f"tessera {r['variant']} ({r['best_kernel']})", "median_ms": r["median_ms"], "tflops": r["tflops"]})
for r in rows:
    print(f"{r['impl'][:52]:52} {r['median_ms']:8.4f} {r['tflops']:8.1f}")
fused = vendor["torch._addmm_activation use_gelu (cuBLASLt fused)"]
tanh = next(r for r in ours["results"] if r["variant"] == "bias_gelu_tanh")
erf = next(r for r in ours["results"] if r["variant"] == "bias_gelu_erf")
plain = next(r for r in ours["results"] if r["variant"] == "plain")
cublas = vendor["F.linear no bias (cuBLAS plain)"]
summary = {"tessera_tanh_vs_cublaslt_fused": fused / tanh["median_ms"], "tessera_erf_vs_unfused_erf": vendor["F.gelu(F.linear) erf (unfused)"] / erf["median_ms"],
           "tessera_plain_vs_cublas": cublas / plain["median_ms"],
           "epilogue_ms_tessera_tanh": tanh["median_ms"] - plain["median_ms"], "epilogue_ms_cublaslt": fused - cublas}
summary["cases"] = {"bias_gelu_tanh": {"vs_cublaslt_fused": summary["tessera_tanh_vs_cublaslt_fused"]},
                    "bias_gelu_erf": {"vs_unfused_erf": summary["tessera_erf_vs_unfused_erf"]},
                    "plain": {"vs_cublas": summary["tessera_plain_vs_cublas"]}}
print("ratios (vendor time / tessera time, >1 means Tessera is faster):", {k: round(v, 3) for k, v in summary.items() if k != "cases"})
json.dump({"benchmark": "gemm_epilogue", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "commit": sys.argv[3],
           "command": sys.argv[4], "device": ours["device"], "torch": torch.__version__, "timing": ours["timing"], "summary": summary, "results": rows},
          open(sys.argv[2], "w"), indent=1)
