"""Fused attention benchmark, PyTorch side, and the comparison with the Tessera side of the same
run. F.scaled_dot_product_attention on [B, H, S, D] f16 tensors (on the H100 PyTorch picks cuDNN
or FlashAttention; the backend it chose is not forced), causal and not. Same method as Tessera:
warm-up, CUDA events, L2 flushed, median of 30. FLOPs: 4·B·H·S²·D, halved when causal.
Usage: python3 attention_vendor.py TESSERA.json OUT.json COMMIT COMMAND"""
import datetime, json, statistics, sys
import torch
import torch.nn.functional as F

from timing import timed

def sdpa_backend(q, k, v, causal):
    """The backend SDPA ran, read off the CUDA kernel names of one profiled call."""
    from torch.profiler import profile, ProfilerActivity
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        torch.cuda.synchronize()
    names = [e.key.lower() for e in prof.key_averages()]
    for tag, backend in [("cudnn", "cudnn"), ("flash", "flash"), ("fmha", "efficient"), ("efficient", "efficient")]:
        if any(tag in n for n in names):
            return backend
    return "math: " + ", ".join(names[:3])


ours = json.load(open(sys.argv[1]))
rows, summary = [], {}
print(f"{'problem':28} {'impl':54} {'ms':>8} {'TFLOP/s':>8}")
for r in ours["results"]:
    b, h, s, d, causal = r["batch"], r["heads"], r["seq"], r["head_dim"], r["causal"]
    q, k, v = (torch.rand(b, h, s, d, device="cuda", dtype=torch.float16) * 2 - 1 for _ in range(3))
    sdpa_ms = timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
    backend = sdpa_backend(q, k, v, causal)
    flops = r["flops"]
    key = f"B{b} H{h} S{s} D{d}{' causal' if causal else ''}"
    for name, ms in [("F.scaled_dot_product_attention", sdpa_ms), (f"tessera {r['best_kernel']}", r["median_ms"])]:
        rows.append({"problem": key, "impl": name, "median_ms": ms, "tflops": flops / (ms * 1e-3) / 1e12})
        print(f"{key:28} {name[:54]:54} {ms:8.4f} {flops / (ms * 1e-3) / 1e12:8.1f}")
    summary[key] = {"vs_sdpa": sdpa_ms / r["median_ms"], "sdpa_backend": backend,
                    "tflops": flops / (r["median_ms"] * 1e-3) / 1e12, "sdpa_tflops": flops / (sdpa_ms * 1e-3) / 1e12,
                    "pipeline": r.get("pipeline"),
                    "ladder_tflops": {k: round(x["tflops"], 1) for k, x in r.get("best_per_pipeline", {}).items()}}
print("ratios (SDPA time / tessera time, >1 means Tessera is faster):", {k: round(v["vs_sdpa"], 3) for k, v in summary.items()})
for k, v in summary.items():
    print(f"{k:28} sdpa={v['sdpa_backend']:10} best={v['pipeline']:10} ladder TFLOP/s {v['ladder_tflops']}")
json.dump({"benchmark": "attention", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "commit": sys.argv[3],
           "command": sys.argv[4], "device": ours["device"], "torch": torch.__version__, "timing": ours["timing"],
           "summary": summary, "results": rows, "tessera": ours["results"]}, open(sys.argv[2], "w"), indent=1)
