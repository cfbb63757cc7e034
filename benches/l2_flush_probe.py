"""L2 flush probe: how a flush that writes (zero_) and one that reads (sum) change a memory-bound
kernel's time (cuBLAS decode GEMMs, a 64 MB sum, a 1 GiB copy). Usage: python3 benches/l2_flush_probe.py
Result of 2026-11-30 on the H200: benches/results/l2-flush-probe-2026-11-30-h200.txt."""
import statistics
import torch
import torch.nn.functional as F

dev = "cuda"
flush = torch.empty(256 << 20, dtype=torch.uint8, device=dev)
flush_f = torch.ones(64 << 20, dtype=torch.float32, device=dev)  # 256 MiB, read-only flush


def t(f, mode, n=30):
    for _ in range(3):
        f()
    ts = []
    for _ in range(n):
        if mode == "zero":
            flush.zero_()
        elif mode == "read":
            flush_f.sum()
        s, e = torch.cuda.Event(True), torch.cuda.Event(True)
        s.record(); f(); e.record(); torch.cuda.synchronize(); ts.append(s.elapsed_time(e))
    return statistics.median(ts) * 1e-3


src = torch.empty(1 << 30, dtype=torch.uint8, device=dev)
dst = torch.empty_like(src)
for mode in ["zero", "read"]:
    c = 2 * (1 << 30) / t(lambda: dst.copy_(src), mode) / 1e9
    print(f"flush={mode}: copy {c:.0f} GB/s")
    for m in [1, 8, 64, 128]:
        x = torch.randn(m, 4096, device=dev, dtype=torch.float16)
        w = torch.randn(8192, 4096, device=dev, dtype=torch.float16)
        dt = t(lambda: F.linear(x, w), mode)
        gbps = w.numel() * 2 / dt / 1e9
        print(f"  M={m}: cuBLAS {dt*1e6:.1f} us, weights {gbps:.0f} GB/s = {gbps/c:.2f} of copy")
    w = torch.randn(8192, 4096, device=dev, dtype=torch.float16)
    dt = t(lambda: w.sum(dtype=torch.float32), mode)
    print(f"  sum(64 MB): {w.numel()*2/dt/1e9:.0f} GB/s")
