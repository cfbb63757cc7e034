"""Layernorm benchmark, PyTorch side, and the comparison with the Tessera side of the same run.
F.layer_norm (and F.layer_norm(x + r) for the fused residual) in f16 at the Tessera sizes, plus a
device-to-device copy of the same matrix (y.copy_(x)) as the bandwidth ceiling. Same method as
Tessera: warm-up, CUDA events, L2 flushed, median of 30. GB/s counts compulsory bytes (x, r and
y once, gamma/beta once).
Usage: python3 layernorm_vendor.py TESSERA.json OUT.json COMMIT COMMAND"""
import datetime, json, statistics, sys
import torch
import torch.nn.functional as F

from timing import timed

ours = json.load(open(sys.argv[1]))
rows, summary = [], {}
print(f"{'problem':34} {'impl':44} {'ms':>8} {'GB/s':>7} {'of copy':>8}")
for r in ours["results"]:
    m, n, res = r["rows"], r["cols"], r["residual"]
    x = torch.rand(m, n, device="cuda", dtype=torch.float16) * 2 - 1
    rr = torch.rand(m, n, device="cuda", dtype=torch.float16) * 2 - 1
    g = torch.rand(n, device="cuda", dtype=torch.float16)
    b = torch.rand(n, device="cuda", dtype=torch.float16)
    y = torch.empty_like(x)
    copy_ms = timed(lambda: y.copy_(x))
    copy_gbs = 2 * m * n * 2 / (copy_ms * 1e-3) / 1e9
    if res:
        torch_ms = timed(lambda: F.layer_norm(x + rr, (n,), g, b, 1e-5))
    else:
        torch_ms = timed(lambda: F.layer_norm(x, (n,), g, b, 1e-5))
    nbytes = r["bytes"]
    key = f"{m}x{n}{' +residual' if res else ''}"
    entries = [("device-to-device copy (y.copy_(x))", copy_ms, copy_gbs),
               ("F.layer_norm" + ("(x + r)" if res else ""), torch_ms, nbytes / (torch_ms * 1e-3) / 1e9),
               (f"tessera {r['best_kernel']}", r["median_ms"], r["gbs"])]
    for name, ms, gbs in entries:
        rows.append({"problem": key, "impl": name, "median_ms": ms, "gbs": gbs, "fraction_of_copy": gbs / copy_gbs})
        print(f"{key:34} {name[:44]:44} {ms:8.4f} {gbs:7.0f} {gbs / copy_gbs:8.3f}")
    summary[key] = {"tessera_fraction_of_copy": r["gbs"] / copy_gbs, "tessera_vs_torch": torch_ms / r["median_ms"]}
print("summary (fraction of copy bandwidth; torch time / tessera time, >1 means Tessera is faster):")
for k, v in summary.items():
    print(f"  {k:24} {v['tessera_fraction_of_copy']:.3f} of copy, {v['tessera_vs_torch']:.3f}x torch")
json.dump({"benchmark": "layernorm", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "commit": sys.argv[3],
           "command": sys.argv[4], "device": ours["device"], "torch": torch.__version__, "timing": ours["timing"], "summary": summary,
           "results": rows, "tessera": ours["results"]}, open(sys.argv[2], "w"), indent=1)
