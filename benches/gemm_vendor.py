"""GEMM benchmark, vendor side: cuBLAS through PyTorch (F.linear, i.e. the rcr layout) for the
same shapes, with the same method as the Tessera side (benches/timing.py): warm-up, CUDA events
around each run, L2 flushed before each timed run (a 256 MiB buffer is read), median of 30.
Usage: python3 gemm_vendor.py OUT.json"""
import json, statistics, sys
import torch
import torch.nn.functional as F

from timing import WARMUP, ITERS, timed
shapes = [(m, n, k) for m in (384, 12288) for (n, k) in ((2304, 768), (768, 768), (3072, 768), (768, 3072))]
shapes += [(4096, 4096, 4096), (8192, 8192, 8192)]
shapes += [(m, 8192, 4096) for m in (1, 8, 64, 128)]  # decode: a few tokens against a 64 MB weight
rows = []
for dtype, name in ((torch.float16, "f16"), (torch.bfloat16, "bf16")):
    for m, n, k in shapes:
        a = torch.rand(m, k, device="cuda", dtype=dtype) * 2 - 1
        w = torch.rand(n, k, device="cuda", dtype=dtype) * 2 - 1
        med = timed(lambda: F.linear(a, w))
        rows.append({"dtype": name, "m": m, "n": n, "k": k, "median_ms": med, "tflops": 2 * m * n * k / (med * 1e-3) / 1e12})
        print(f"cublas {name} {m}x{n}x{k}: {med:.3f} ms {rows[-1]['tflops']:.1f} TFLOP/s", file=sys.stderr)
# the ceiling for the decode shapes: a device-to-device copy of 1 GiB (bytes read + written)
src, dst = torch.empty(1 << 30, dtype=torch.uint8, device="cuda"), torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
for _ in range(WARMUP):
    dst.copy_(src)
times = []
for _ in range(ITERS):
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record(); dst.copy_(src); e.record()
    torch.cuda.synchronize()
    times.append(s.elapsed_time(e))
copy_gbps = 2 * (1 << 30) / (statistics.median(times) * 1e-3) / 1e9
print(f"device copy: {copy_gbps:.0f} GB/s (read + write)", file=sys.stderr)
json.dump({"benchmark": "gemm", "side": "cublas (torch.nn.functional.linear)", "torch": torch.__version__,
           "cuda": torch.version.cuda, "device": torch.cuda.get_device_name(0), "copy_gbps": copy_gbps,
           "results": rows}, open(sys.argv[1], "w"), indent=1)
