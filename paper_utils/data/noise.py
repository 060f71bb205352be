"""Noise models of the paper: i.i.d. Gaussian (Sec. 5.1) and exponential (App. B.1).

The exponential noise of App. B.1 ("i.i.d. exponentially distributed noise, with lambda = 1.15")
has mean 1/lambda and variance 1/lambda^2: it is NOT zero-mean. We keep it as the paper gives it
(a positive bias the network must also learn to remove).
"""

from __future__ import annotations

import torch

NOISES = ("gaussian", "exponential")


def add_noise(clean: torch.Tensor, kind: str, level: float, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Return ``clean + noise``.

    Args:
        clean: any float tensor, e.g. images (N, 1, H, W).
        kind: ``"gaussian"`` (std ``level``) or ``"exponential"`` (rate ``level``, mean 1/level).
        level: Gaussian sigma or exponential rate lambda, > 0.
        generator: torch RNG on the tensor's device (explicit randomness; no global seeding).
    """
    if level <= 0:
        raise ValueError(f"noise level must be > 0, got {level}")
    if kind == "gaussian":
        noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype, device=clean.device) * level
    elif kind == "exponential":
        u = torch.rand(clean.shape, generator=generator, dtype=torch.float64, device=clean.device)
        noise = (-torch.log1p(-u) / level).to(clean.dtype)  # inverse CDF, u in [0, 1)
    else:
        raise ValueError(f"unknown noise {kind!r}; expected one of {NOISES}")
    return clean + noise
