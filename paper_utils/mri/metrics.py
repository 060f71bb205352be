"""Image metrics of the MRI figures: magnitudes of real/imaginary pairs, PSNR and SSIM with the target
magnitude's maximum as data range (the fastMRI convention); used by :mod:`paper_utils.mri.evaluation`."""

from __future__ import annotations

import numpy as np
import torch

from paper_utils import mri
from paper_utils.report.metrics import psnr

__all__ = ["complex_magnitudes", "magnitude_psnr", "magnitude_ssim"]


def complex_magnitudes(pairs: torch.Tensor) -> torch.Tensor:
    """Magnitude images (N, H, W) float64 of real/imaginary pairs (2N, 1, H, W) (layout of
    :func:`paper_utils.mri.complex_to_pairs`): ``|real + i imag|`` per slice."""
    return mri.pairs_to_complex(torch.as_tensor(pairs).detach().cpu().float()).abs().double()


def _as_image(x, what: str) -> np.ndarray:
    a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{what} must be one (H, W) image, got shape {a.shape}")
    return a


def _image_pair(prediction, target, metric: str):
    """Both images as (H, W) arrays of one shape, and the target's maximum (the data range, > 0)."""
    p, t = _as_image(prediction, "prediction"), _as_image(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"shapes differ: {p.shape} vs {t.shape}")
    peak = float(t.max())
    if not peak > 0:
        raise ValueError(f"the target's maximum must be > 0 (it is the {metric}'s data range)")
    return p, t, peak


def magnitude_psnr(prediction, target) -> float:
    """PSNR in dB of one magnitude image, ``10 log10(max(target)^2 / MSE)``.

    The data range is the target magnitude's maximum (magnitudes are non-negative, so this is the
    range from 0), the convention of fastMRI's evaluation.

    Args:
        prediction, target: (H, W) real images (tensors or arrays).
    """
    p, t, peak = _image_pair(prediction, target, "PSNR")
    return psnr(torch.from_numpy(p), torch.from_numpy(t), data_range=peak)


def magnitude_ssim(prediction, target) -> float:
    """SSIM of one magnitude image: ``skimage.metrics.structural_similarity`` (7 x 7 uniform
    window, its defaults) with the explicit data range ``max(target)``.

    Args:
        prediction, target: (H, W) real images (tensors or arrays).
    """
    from skimage.metrics import structural_similarity

    p, t, peak = _image_pair(prediction, target, "SSIM")
    return float(structural_similarity(t, p, data_range=peak))
