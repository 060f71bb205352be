r"""Fourier transforms, SENSE operators and JSENSE coil maps.

.. math::
    A x = (M F S_c x)_{c=1}^{C}, \qquad A^H y = \sum_c \overline{S_c} \, F^H (M y_c)

``F`` the centred orthonormal 2-D DFT (``sigpy.fft``), ``S_c`` (C, H, W) coil maps, ``M`` (H, W) mask.

References:
    Pruessmann et al. (1999). SENSE: sensitivity encoding for fast MRI. MRM 42(5), 952-962.
    Ying, L., & Sheng, J. (2007). Joint image reconstruction and sensitivity estimation in
    SENSE (JSENSE). MRM 57(6), 1196-1202.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .optional import require
from .constants import JSENSE_KWARGS
from .masks import calibration_slices

def fft2c(x: np.ndarray) -> np.ndarray:
    """Centred orthonormal 2-D DFT over the last two axes (``sigpy.fft``).

    Args:
        x: (..., H, W) array.

    Returns:
        (..., H, W) complex array.
    """
    require("sigpy")
    import sigpy

    return sigpy.fft(np.asarray(x), axes=(-2, -1), center=True, norm="ortho")


def ifft2c(k: np.ndarray) -> np.ndarray:
    """Centred orthonormal inverse 2-D DFT over the last two axes (``sigpy.ifft``).

    Args:
        k: (..., H, W) array.

    Returns:
        (..., H, W) complex array.
    """
    require("sigpy")
    import sigpy

    return sigpy.ifft(np.asarray(k), axes=(-2, -1), center=True, norm="ortho")


def _check_maps_mask(maps: np.ndarray, mask: np.ndarray | None, image_shape: tuple[int, ...]) -> None:
    if maps.ndim != 3:
        raise ValueError(f"maps must have shape (C, H, W), got {maps.shape}")
    if maps.shape[1:] != tuple(image_shape):
        raise ValueError(f"maps spatial shape {maps.shape[1:]} does not match image shape {tuple(image_shape)}")
    if mask is not None and np.shape(mask) != tuple(image_shape):
        raise ValueError(f"mask must have shape {tuple(image_shape)}, got {np.shape(mask)}")


def sense_forward(image: np.ndarray, maps: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """SENSE forward operator ``A x = M F S x``.

    Args:
        image: (H, W) complex image x.
        maps: (C, H, W) coil sensitivity maps S.
        mask: (H, W) real sampling mask M (bool or 0/1); ``None`` means fully sampled.

    Returns:
        (C, H, W) complex128 multi-coil k-space.
    """
    image = np.asarray(image)
    maps = np.asarray(maps)
    if image.ndim != 2:
        raise ValueError(f"image must have shape (H, W), got {image.shape}")
    _check_maps_mask(maps, mask, image.shape)
    ksp = fft2c(maps * image[None])
    if mask is not None:
        ksp = ksp * np.asarray(mask, dtype=ksp.real.dtype)
    return ksp


def sense_adjoint(kspace: np.ndarray, maps: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """SENSE adjoint ``A^H y = sum_c conj(S_c) F^H (M y_c)``.

    With undersampled k-space this is the zero-filled SENSE-combined image (the network input).

    Args:
        kspace: (C, H, W) multi-coil k-space y.
        maps: (C, H, W) coil sensitivity maps S.
        mask: (H, W) real sampling mask M; ``None`` means no masking (coil combination only).

    Returns:
        (H, W) complex128 image.
    """
    kspace = np.asarray(kspace)
    maps = np.asarray(maps)
    if kspace.ndim != 3:
        raise ValueError(f"kspace must have shape (C, H, W), got {kspace.shape}")
    if maps.shape != kspace.shape:
        raise ValueError(f"maps shape {maps.shape} does not match kspace shape {kspace.shape}")
    _check_maps_mask(maps, mask, kspace.shape[1:])
    if mask is not None:
        kspace = kspace * np.asarray(mask, dtype=np.float64)
    return np.sum(np.conj(maps) * ifft2c(kspace), axis=0)


def sense_combine(kspace: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """SENSE coil combination ``sum_c conj(S_c) F^H y_c`` of (fully sampled) k-space.

    Args:
        kspace: (C, H, W) multi-coil k-space.
        maps: (C, H, W) coil sensitivity maps.

    Returns:
        (H, W) complex128 image.
    """
    return sense_adjoint(kspace, maps, mask=None)

def estimate_maps_jsense(kspace: np.ndarray, **jsense_kwargs: Any) -> np.ndarray:
    """Coil sensitivity maps by JSENSE from the fully sampled calibration region.

    Runs ``sigpy.mri.app.JsenseRecon(kspace, **JSENSE_KWARGS, show_pbar=False)``; JSENSE crops
    k-space to the central ``ksp_calib_width`` square, so only the calibration region matters.
    The maps are normalised by sigpy to unit root-sum-of-squares at every pixel and carry the
    usual ambiguity of a smooth per-pixel phase.

    Args:
        kspace: (C, H, W) complex k-space whose central calibration square is fully sampled.
        **jsense_kwargs: overrides of :data:`JSENSE_KWARGS`.

    Returns:
        (C, H, W) complex64 maps.
    """
    require("sigpy")
    import sigpy.mri.app

    kspace = np.asarray(kspace)
    if kspace.ndim != 3:
        raise ValueError(f"kspace must have shape (C, H, W), got {kspace.shape}")
    kw = {**JSENSE_KWARGS, **jsense_kwargs}
    if min(kspace.shape[1:]) < kw["ksp_calib_width"]:
        raise ValueError(f"kspace {kspace.shape} is smaller than the calibration width {kw['ksp_calib_width']}")
    calib = np.zeros(kspace.shape[1:], dtype=bool)
    calib[calibration_slices(kspace.shape[1:], (kw["ksp_calib_width"],) * 2)] = True
    if not np.all(np.abs(kspace[:, calib]).sum(axis=0) > 0):
        raise ValueError("the calibration region of kspace is not fully sampled")
    maps = sigpy.mri.app.JsenseRecon(np.ascontiguousarray(kspace, dtype=np.complex64), show_pbar=False, **kw).run()
    return np.asarray(maps, dtype=np.complex64)
