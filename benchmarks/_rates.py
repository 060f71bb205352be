"""Shared by the benchmark scripts: the dense matmul rate every kernel rate is divided by."""

from __future__ import annotations

import time

import torch


def sync(device: torch.device) -> None:
    """Wait for queued GPU work (a no-op on CPU), so wall-clock timings are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 2048, reps: int = 4) -> float:
    """Dense matmul FLOP/s of this process on ``device`` in ``dtype`` (n x n x n products, after warm-up)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return reps * 2 * n ** 3 / (time.perf_counter() - t)
