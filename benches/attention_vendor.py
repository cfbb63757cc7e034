"""Fused attention benchmark, PyTorch side, and the comparison with the Tessera side of the same
run. F.scaled_dot_product_attention on [B, H, S, D] f16 tensors (on the H100 PyTorch picks cuDNN
or FlashAttention; the backend it chose is not forced), causal and not. Same method as Tessera:
warm-up, CUDA events, L2 flushed, median of 30. FLOPs: 4·B·H·Sq·Skv·D, halved when causal. Decode
(Sq = 1) also reports K/V read bandwidth beside a device copy of the same bytes. The packed case
(rows with `packed_lens`): SDPA on the padded [B, H, S, D] batch with the boolean key-padding
mask of those lengths; its FLOPs are the real tokens' (the Tessera row's), summary ratios
`vs_sdpa` (SDPA on the padded batch / Tessera packed) and `vs_padded_kernel` (Tessera's padded
kernel with key padding / Tessera packed).
Usage: python3 attention_vendor.py TESSERA.json OUT.json COMMIT COMMAND"""
import datetime, json, statistics, sys
import torch
import torch.nn.functional as F

from timing import timed

def sdpa_backend(q, k, v, causal, mask=None, **kw):
    """The backend SDPA ran, read off the CUDA kernel names of one profiled call."""
    from torch.profiler import profile, ProfilerActivity
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, **kw)
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
    b, h, d, causal = r["batch"], r["heads"], r["head_dim"], r["causal"]
    sq, skv = r.get("seq_q", r["seq"]), r.get("seq_kv", r["seq"])
    kvh = r.get("kv_heads", h)
    q = torch.rand(b, h, sq, d, device="cuda", dtype=torch.float16) * 2 - 1
    k, v = (torch.rand(b, kvh, skv, d, device="cuda", dtype=torch.float16) * 2 - 1 for _ in range(2))
    # grouped-query attention: SDPA's own GQA path (each K/V head serves heads / kv_heads)
    gqa = {"enable_gqa": True} if kvh != h else {}
    lens = r.get("packed_lens")
    mask = None
    if lens:
        mask = (torch.arange(skv, device="cuda")[None, :] < torch.tensor(lens, device="cuda")[:, None])[:, None, None, :]
    sdpa_ms = timed(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, **gqa))
    backend = sdpa_backend(q, k, v, causal, mask, **gqa)
    flops = r["flops"]
    key = (f"B{b} H{h} S{sq} D{d}" if sq == skv else f"B{b} H{h} Sq{sq} Skv{skv} D{d}") + (" causal" if causal else "")
    if kvh != h:
        key = key.replace(f"H{h} ", f"H{h} KV{kvh} ")
    if lens:
        key += f" packed ({100 * r['padding_fraction']:.0f} % padding)"
        pk = r["padded_kernel"]
        name = f"tessera padded {pk['kernel']}"
        rows.append({"problem": key, "impl": name, "median_ms": pk["median_ms"], "tflops": flops / (pk["median_ms"] * 1e-3) / 1e12})
        print(f"{key:28} {name[:54]:54} {pk['median_ms']:8.4f} {flops / (pk['median_ms'] * 1e-3) / 1e12:8.1f}")
    for name, ms in [("F.scaled_dot_product_attention", sdpa_ms), (f"tessera {r['best_kernel']}", r["median_ms"])]:
        rows.append({"problem": key, "impl": name, "median_ms": ms, "tflops": flops / (ms * 1e-3) / 1e12})
        print(f"{key:28} {name[:54]:54} {ms:8.4f} {flops / (ms * 1e-3) / 1e12:8.1f}")
    if sq != skv:
        # decode is bound by reading K and V: their bandwidth beside a device copy of the same bytes
        kv_bytes = r["kv_bytes"]
        src = torch.empty(kv_bytes, dtype=torch.uint8, device="cuda")
        dst = torch.empty_like(src)
        copy_ms = timed(lambda: dst.copy_(src))
        copy_bw = 2 * kv_bytes / (copy_ms * 1e-3)  # read + write
        kv_bw = kv_bytes / (r["median_ms"] * 1e-3)
        print(f"{key:28} K/V read {kv_bw / 1e9:.0f} GB/s; copy {copy_bw / 1e9:.0f} GB/s; ratio {kv_bw / copy_bw:.2f}")
        r["kv_read_vs_copy"] = kv_bw / copy_bw
    summary[key] = {"vs_sdpa": sdpa_ms / r["median_ms"], "sdpa_backend": backend,
                    **({"kv_read_vs_copy": r["kv_read_vs_copy"]} if "kv_read_vs_copy" in r else {}),
                    **({"vs_padded_kernel": r["padded_kernel"]["median_ms"] / r["median_ms"]} if lens else {}),
                    "tflops": flops / (r["median_ms"] * 1e-3) / 1e12, "sdpa_tflops": flops / (sdpa_ms * 1e-3) / 1e12,
                    "pipeline": r.get("pipeline"),
                    "ladder_tflops": {k: round(x["tflops"], 1) for k, x in r.get("best_per_pipeline", {}).items()}}
print("ratios (SDPA time / tessera time, >1 means Tessera is faster):", {k: round(v["vs_sdpa"], 3) for k, v in summary.items()})
for k, v in summary.items():
    print(f"{k:28} sdpa={v['sdpa_backend']:10} best={v['pipeline']:10} ladder TFLOP/s {v['ladder_tflops']}")
json.dump({"benchmark": "attention", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "commit": sys.argv[3],
           "command": sys.argv[4], "device": ours["device"], "torch": torch.__version__, "timing": ours["timing"],
           "summary": summary, "results": rows, "tessera": ours["results"]}, open(sys.argv[2], "w"), indent=1)
