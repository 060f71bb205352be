"""Image-quality metrics. Images are tensors (N, 1, H, W) or (H, W) in any units."""

from __future__ import annotations

import torch


def half_mse(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """``1/(2M) ||prediction - target||^2``: the paper's per-pixel loss (App. B)."""
    return float((prediction - target).double().pow(2).mean() / 2)


def psnr(prediction: torch.Tensor, target: torch.Tensor, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB, ``10 log10(range^2 / MSE)``.

    ``data_range`` defaults to ``target.max() - target.min()`` of this image.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"shapes differ: {tuple(prediction.shape)} vs {tuple(target.shape)}")
    mse = float((prediction - target).double().pow(2).mean())
    rng = float(target.max() - target.min()) if data_range is None else float(data_range)
    return float("inf") if mse == 0 else 10.0 * torch.log10(torch.tensor(rng ** 2 / mse)).item()


def psnr_per_image(prediction: torch.Tensor, target: torch.Tensor, data_range: float | None = None) -> list[float]:
    """PSNR of each image of a batch (N, C, H, W)."""
    return [psnr(p, t, data_range) for p, t in zip(prediction, target)]
