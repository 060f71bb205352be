r"""How much there is to learn on the MRI data: the baselines of Figures 6 and 7.

Three reconstructions every network must be read against, all scored on the complex test slices
like the networks (:func:`paper_utils.mri.evaluation.evaluate_mri`):

- **zero-filled**: the SENSE-combined zero-filled input ``Y = A^H y`` itself;
- **best linear 7 x 7 filter** (:func:`fit_linear_filter`): the residual linear filter ``w`` (d = 49)
  minimising the training loss of ``Y + Y * w`` in closed form (least squares on the patch matrix,
  eq. 3 without the ReLU: the network the paper's residual model reduces to with one linear path),

  .. math:: w = \arg\min_w \tfrac{1}{2M} \| Y_p w - (x - y) \|^2 = (Y_p^\top Y_p)^{-1} Y_p^\top (x - y),

  with ``Y_p`` (M, 49) the training patches, real and imaginary parts as separate examples;
- **L1-wavelet** compressed sensing (SigPy ``L1WaveletRecon``, :mod:`paper_utils.mri.baselines`),
  computed when the data set is built (lambda chosen per R on training slices).

Letter key: N slices (2N real examples), H = W = 80, M = 2N H W patches, d = 49.
"""

from __future__ import annotations

import torch

from paper_utils.data.mnist import DenoisingSet
from paper_utils.nets.patches import extract_patches

__all__ = ["fit_linear_filter", "apply_linear_filter", "linear_filter_loss"]


def fit_linear_filter(train: DenoisingSet, kernel_size: int = 7, *, chunk: int = 16) -> torch.Tensor:
    """The best residual linear ``k x k`` filter on ``train`` (closed-form least squares, float64).

    Args:
        train: noisy ``Y`` (zero-filled) and clean ``X`` (target), (2N, 1, H, W).
        kernel_size: k (odd).
        chunk: examples per patch chunk (bounds memory: ``chunk * H * W * d`` numbers).

    Returns:
        (d,) float64 filter in the patch order of :func:`paper_utils.nets.patches.extract_patches`.
    """
    if train.noisy.ndim != 4 or train.noisy.shape[1] != 1:
        raise ValueError(f"expected single-channel images (2N, 1, H, W), got {tuple(train.noisy.shape)}")
    d = kernel_size * kernel_size
    A = torch.zeros(d, d, dtype=torch.float64)
    b = torch.zeros(d, dtype=torch.float64)
    for i in range(0, train.noisy.shape[0], chunk):
        Yp = extract_patches(train.noisy[i:i + chunk].double().cpu(), kernel_size)
        r = (train.clean[i:i + chunk] - train.noisy[i:i + chunk]).double().cpu().reshape(-1)
        A += Yp.T @ Yp
        b += Yp.T @ r
    return torch.linalg.solve(A + 1e-12 * torch.trace(A) / d * torch.eye(d, dtype=torch.float64), b)


def apply_linear_filter(w: torch.Tensor, noisy: torch.Tensor, *, chunk: int = 16) -> torch.Tensor:
    """``Y + Y * w`` for images (2N, 1, H, W): (2N, 1, H, W) float32."""
    k = int(round(w.numel() ** 0.5))
    outs = []
    for i in range(0, noisy.shape[0], chunk):
        y = noisy[i:i + chunk].double().cpu()
        outs.append(y + (extract_patches(y, k) @ w).reshape(y.shape))
    return torch.cat(outs).float()


def linear_filter_loss(w: torch.Tensor, data: DenoisingSet) -> float:
    """``1/(2M) ||Y + Y * w - X||^2`` (the networks' loss, no regulariser)."""
    pred = apply_linear_filter(w, data.noisy).double()
    return float(0.5 * torch.mean((pred - data.clean.double().cpu()) ** 2))
