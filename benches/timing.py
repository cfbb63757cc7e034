"""Timing shared by the PyTorch sides of the benchmarks: the method Tessera's side uses
(warm-up, CUDA events, an L2 flush before every run, median of ITERS).

The flush reads a 256 MiB buffer (written once): a flush that writes (zero_()) leaves L2 full of
dirty lines whose write-back the timed kernel pays, which cost a 64 MB weight stream a fifth of
its bandwidth on an H200. Tessera's device flushes the same way (device/src/cuda/l2_scrub.rs)."""
import statistics
import torch

WARMUP, ITERS = 5, 30
_flush = None


def flush_l2():
    """Read a buffer of twice any L2 so the next kernel finds none of its data there, clean."""
    global _flush
    if _flush is None:
        _flush = torch.zeros(64 << 20, dtype=torch.int32, device="cuda")
    _flush.sum()


def timed(fn):
    for _ in range(WARMUP):
        fn()
    times = []
    for _ in range(ITERS):
        flush_l2()
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record(); fn(); e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e))
    return statistics.median(times)
