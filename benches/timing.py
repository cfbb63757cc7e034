"""Timing shared by the PyTorch sides of the benchmarks: the method Tessera's side uses
(warm-up, CUDA events, a 256 MiB L2 flush before every run, median of ITERS)."""
import statistics
import torch

WARMUP, ITERS = 5, 30
_flush = None


def timed(fn):
    global _flush
    if _flush is None:
        _flush = torch.empty(256 << 20, dtype=torch.uint8, device="cuda")
    for _ in range(WARMUP):
        fn()
    times = []
    for _ in range(ITERS):
        _flush.zero_()
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record(); fn(); e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e))
    return statistics.median(times)
