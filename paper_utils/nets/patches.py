"""The patch matrix of eq. (3): one row per output pixel.

For images ``Y`` of shape (N, C, H, W) and an odd kernel size k (zero padding k // 2, stride 1),
``Yp`` has shape (M, d) with ``M = N * H * W`` and ``d = C * k * k``; row ``n * H * W + i * W + j``
is the k x k neighbourhood of pixel (i, j) of image n, flattened in the order of a
``conv2d`` weight ``(C, k, k)``. Hence ``Yp @ u.reshape(-1) == conv2d(Y, u).flatten()``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def extract_patches(images: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Patch matrix ``Yp`` (M, d) of images (N, C, H, W); see the module docstring."""
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    if kernel_size < 1 or kernel_size % 2 != 1:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
    n, c, h, w = images.shape
    cols = F.unfold(images, kernel_size, padding=kernel_size // 2)  # (N, d, H*W)
    return cols.transpose(1, 2).reshape(n * h * w, c * kernel_size * kernel_size)


def pixels(images: torch.Tensor) -> torch.Tensor:
    """Targets as a vector (M,) in the row order of :func:`extract_patches` (single channel)."""
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"expected single-channel images (N, 1, H, W), got {tuple(images.shape)}")
    return images.reshape(-1)


def to_images(values: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Inverse of :func:`pixels`: a vector (M,) back to images (N, 1, H, W) for ``shape=(N, H, W)``."""
    n, h, w = shape
    return values.reshape(n, 1, h, w)
