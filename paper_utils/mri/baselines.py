r"""The compressed-sensing baseline an MRI reader knows: SigPy's L1-wavelet reconstruction.

.. math::
    \hat x = \arg\min_x \tfrac12 \| M F S x - y \|_2^2 + \lambda \| \Psi x \|_1

(``sigpy.mri.app.L1WaveletRecon``: ``Psi`` a Daubechies-4 wavelet transform, solved by FISTA /
proximal gradient), with the JSENSE maps ``S`` and the undersampled k-space ``y`` of each slice.
``lambda`` is chosen per acceleration R on a few *training* slices (:data:`L1_N_TUNE`) from the grid
:data:`L1_LAMBDAS` by mean magnitude PSNR, then used on every test slice. k-space is scaled by the
slice's normalisation factor first (:mod:`paper_utils.mri.build`), so ``lambda`` is in the units of
the normalised images (99th percentile of ``|zero-filled|`` = 1) for every source.

Reference:
    Lustig, Donoho, Pauly (2007). Sparse MRI: the application of compressed sensing for rapid MR
    imaging. MRM 58(6), 1182-1195.
"""

from __future__ import annotations

import numpy as np

from .optional import require

__all__ = ["L1_LAMBDAS", "L1_MAX_ITER", "L1_N_TUNE", "l1_wavelet_recon", "magnitude_psnr_np"]

#: regularisation weights tried on the training slices (normalised units)
L1_LAMBDAS = (3e-4, 1e-3, 3e-3, 1e-2)
#: proximal-gradient iterations (measured: 30 iterations reach the 100-iteration PSNR within 0.1 dB
#: at the chosen lambda on an 80 x 80, 15-coil slice; about 0.1-0.2 s per slice on one core)
L1_MAX_ITER = 30
#: training slices used to choose lambda (evenly spaced among the training selection)
L1_N_TUNE = 4


def l1_wavelet_recon(kspace: np.ndarray, maps: np.ndarray, mask: np.ndarray, lamda: float,
                     max_iter: int = L1_MAX_ITER) -> np.ndarray:
    """L1-wavelet reconstruction of one slice.

    Args:
        kspace: (C, H, W) complex k-space (fully sampled or already masked; ``mask`` is applied).
        maps: (C, H, W) complex coil maps.
        mask: (H, W) bool sampling mask.
        lamda: the L1 weight (> 0).
        max_iter: iterations.

    Returns:
        (H, W) complex64 image.
    """
    require("sigpy")
    import sigpy.mri.app

    kspace, maps, mask = np.asarray(kspace), np.asarray(maps), np.asarray(mask)
    if kspace.ndim != 3 or maps.shape != kspace.shape or mask.shape != kspace.shape[1:]:
        raise ValueError(f"need kspace (C, H, W), maps of the same shape and mask (H, W); got "
                         f"{kspace.shape}, {maps.shape}, {mask.shape}")
    if not lamda > 0:
        raise ValueError(f"lamda must be > 0, got {lamda}")
    y = np.ascontiguousarray(kspace * mask, dtype=np.complex64)
    # sigpy's step size comes from a power iteration started at NumPy's *global* random state: fix it
    # (deterministic result) and restore the caller's state afterwards (no global reseeding leaks)
    state = np.random.get_state()
    try:
        np.random.seed(0)
        x = sigpy.mri.app.L1WaveletRecon(y, np.ascontiguousarray(maps, dtype=np.complex64), float(lamda),
                                         max_iter=int(max_iter), show_pbar=False).run()
    finally:
        np.random.set_state(state)
    return np.asarray(x, dtype=np.complex64)


def magnitude_psnr_np(prediction: np.ndarray, target: np.ndarray) -> float:
    """PSNR (dB) of ``|prediction|`` against ``|target|``, data range ``max |target|`` (fastMRI convention)."""
    p, t = np.abs(np.asarray(prediction, dtype=np.complex128)), np.abs(np.asarray(target, dtype=np.complex128))
    mse = float(np.mean((p - t) ** 2))
    return float(10 * np.log10(t.max() ** 2 / mse)) if mse > 0 else float("inf")
