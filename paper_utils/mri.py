r"""The MRI data pipeline of the paper's reconstruction experiments (Sec. 5.2, Figures 6, 7, 11).

The paper trains the primal and dual networks as *residual* networks (eq. 6): the input is the
SENSE-combined zero-filled image of undersampled multi-coil k-space, the target is the
SENSE-combined fully sampled image, and the network learns ``target - input``. Real and imaginary
parts are separate single-channel examples.

Forward model (paper, Sec. 5.2), per slice and coil :math:`c = 1, \dots, C`:

.. math::
    y_c = M F S_c x + e_c, \qquad
    A x = (M F S_c x)_{c=1}^{C}, \qquad
    A^H y = \sum_c \overline{S_c} \, F^H (M y_c)

with ``x`` the (H, W) complex image, ``S_c`` the coil sensitivity maps, ``F`` the centred
orthonormal 2-D DFT (``sigpy.fft(..., axes=(-2, -1))``), ``M`` a Poisson-disc mask with a fully
sampled 16 x 16 calibration region (``sigpy.mri.poisson``). The maps are estimated by JSENSE
(``sigpy.mri.app.JsenseRecon`` with ``ksp_calib_width=16``) from the calibration region; the
network input is ``A^H y`` (zero-filled, SENSE-combined), the target is
``sum_c conj(S_c) F^H y_full_c`` with the *same* estimated maps, so both live in the same
coil-combined frame. JSENSE sees only the calibration region, which every mask samples fully, so
one JSENSE run per slice serves every acceleration R (:func:`load_mri_datasets`).

Data sources
------------
``source="simulated"`` (default), labelled everywhere :data:`SIMULATED_SOURCE_LABEL`. No raw
k-space and no knee data can be downloaded here, so real *magnitude* MRI shipped inside PyPI
wheels (dipy, nibabel, pydicom, matplotlib; no run-time download, see
:data:`SIMULATED_SUBJECTS`) is turned into multi-coil k-space: each slice is centre-cropped to a
square, resized to 80 x 80 (cubic spline, Gaussian anti-aliasing when downsampling, clipped at 0),
scaled so its 99th magnitude percentile is 1, multiplied by a smooth random phase
(:func:`smooth_random_phase`) and by 15 randomly placed birdcage coil maps
(:func:`random_birdcage_maps`, normalised so that :math:`\sum_c |S_c|^2 = 1` at every pixel),
Fourier transformed, and corrupted with complex white Gaussian noise of standard deviation
``noise_std`` per k-space sample (default 0.01, i.e. 1 % of the image's 99th magnitude percentile:
with orthonormal FFT and unit-RSS maps this is also the per-pixel noise std of the fully
sampled SENSE-combined image, a peak-ish SNR of 40 dB). Each file is one subject; train and test
are split by file, never by slice (the ``split`` column of :data:`SIMULATED_SUBJECTS`). A
training set larger than the distinct slices is augmented with fresh draws of phase, coil
placement, noise and mask for the same magnitude slices (recorded as ``draw`` > 0).

``source="fastmri"``: real fastMRI multi-coil HDF5 files (dataset ``kspace``, shape
(slices, coils, H, W) complex64), e.g. the multicoil knee data of the paper (15 coils, from
https://fastmri.med.nyu.edu). Each slice is reduced to 80 x 80 by :func:`reduce_kspace` (coil
images centre-cropped to a square in image space, then the central 80 x 80 of their k-space:
a genuine lower-resolution acquisition of the same field of view). Files are split by name
(sorted; the last ``max(1, round(n_files * 10 / 59))`` are the test subjects, the paper's 49/10
patient ratio).

Units and normalisation
-----------------------
Each slice (input and target together) is divided by the 99th percentile of the magnitude of
its zero-filled input, so the input's 99th magnitude percentile is 1 and input and target share
the factor (the residual stays meaningful). The factors are kept (``*_scale`` in the cache;
``description["normalisation"]``).

Tensor layout (letters: N slices, C coils, H = W = 80)
------------------------------------------------------
:class:`MRIDataset` holds float32 tensors of shape (2N, 1, H, W) with real and imaginary parts
interleaved (example ``2i`` is the real part of slice ``i``, ``2i + 1`` its imaginary part; see
:func:`complex_to_pairs` / :func:`pairs_to_complex`), the complex test images (N, H, W), the
masks (N, H, W) bool and a JSON-serialisable ``description``.

Prepared datasets are cached as ``.npz`` files (no pickle) under ``cache_dir`` (default
``build/cache/mri/``), keyed by a hash of the configuration, written atomically and verified by
a stored SHA-256 on load (a corrupt file is reported and rebuilt).

References:
    Sahiner, Mardani, Ozturkler, Pilanci, Pauly. Convex Regularization behind Neural
    Reconstruction. ICLR 2021.
    Ying, L., & Sheng, J. (2007). Joint image reconstruction and sensitivity estimation in
    SENSE (JSENSE). Magnetic Resonance in Medicine, 57(6), 1196-1202.
    Zbontar et al. (2018). fastMRI: An open dataset and benchmarks for accelerated MRI.
    Ong, F., & Lustig, M. (2019). SigPy: a python package for high performance iterative
    reconstruction. ISMRM.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import os
import tempfile
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .cache import sha256_file

__all__ = [
    "SIMULATED_SOURCE_LABEL",
    "FASTMRI_SOURCE_LABEL",
    "MRI_CODE_VERSION",
    "IMAGE_SIZE",
    "N_COILS",
    "CALIB_SIZE",
    "DEFAULT_NOISE_STD",
    "JSENSE_KWARGS",
    "SIMULATED_SUBJECTS",
    "MagnitudeSubject",
    "MagnitudeSlice",
    "SimulatedSlice",
    "MRIDataset",
    "fft2c",
    "ifft2c",
    "sense_forward",
    "sense_adjoint",
    "sense_combine",
    "calibration_slices",
    "poisson_mask",
    "smooth_random_phase",
    "random_birdcage_maps",
    "simulate_multicoil_kspace",
    "estimate_maps_jsense",
    "prepare_magnitude",
    "load_magnitude_slices",
    "reduce_kspace",
    "load_fastmri_kspace",
    "fastmri_files",
    "split_fastmri_files",
    "complex_to_pairs",
    "pairs_to_complex",
    "default_cache_dir",
    "load_mri_dataset",
    "load_mri_datasets",
]

#: Honesty label of the default source; it appears in every description and figure caption.
SIMULATED_SOURCE_LABEL = "simulated multi-coil k-space from real magnitude MRI"
#: Label of the real-data source.
FASTMRI_SOURCE_LABEL = "fastMRI multi-coil k-space"
#: Bump when a code change alters prepared datasets, so stale cache files are not reused.
MRI_CODE_VERSION = "1"

IMAGE_SIZE = 80  #: H = W of every slice (paper: 80 x 80)
N_COILS = 15  #: simulated receiver coils (paper: fastMRI knee, 15 coils)
CALIB_SIZE = 16  #: fully sampled calibration region CALIB_SIZE x CALIB_SIZE (paper: 16 x 16)
DEFAULT_NOISE_STD = 0.01  #: simulated k-space noise std, relative to the image's 99th percentile
#: Realised acceleration must lie within this relative tolerance of R.
ACCEL_REL_TOL = 0.02
#: Fraction of fastMRI files held out for testing (paper: 10 test of 59 patients).
FASTMRI_TEST_FRACTION = 10 / 59
#: A 3-D volume slice is kept if at least this fraction of its pixels exceeds 10 % of the
#: volume's 99.5th percentile (drops nearly empty slices at the ends of a volume).
MIN_FOREGROUND_FRACTION = 0.15

#: JSENSE settings (``sigpy.mri.app.JsenseRecon``). ``ksp_calib_width=16`` keeps JSENSE inside the
#: 16 x 16 calibration region (sigpy's default 24 would reach into undersampled k-space).
#: ``mps_ker_width=8``: the maps' k-space kernel; sigpy's default 16 equals the calibration width
#: and fitted the noise more (projection error about twice as large in our measurements).
JSENSE_KWARGS: Mapping[str, Any] = {
    "ksp_calib_width": CALIB_SIZE,
    "mps_ker_width": 8,
    "lamda": 0.0,
    "max_iter": 10,
    "max_inner_iter": 10,
}

_SPLIT_IDS = {"train": 0, "test": 1}


# --------------------------------------------------------------------------------------------
# Fourier transforms and SENSE operators
# --------------------------------------------------------------------------------------------


def fft2c(x: np.ndarray) -> np.ndarray:
    """Centred orthonormal 2-D DFT over the last two axes (``sigpy.fft``).

    Args:
        x: (..., H, W) array.

    Returns:
        (..., H, W) complex array.
    """
    import sigpy

    return sigpy.fft(np.asarray(x), axes=(-2, -1), center=True, norm="ortho")


def ifft2c(k: np.ndarray) -> np.ndarray:
    """Centred orthonormal inverse 2-D DFT over the last two axes (``sigpy.ifft``).

    Args:
        k: (..., H, W) array.

    Returns:
        (..., H, W) complex array.
    """
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


# --------------------------------------------------------------------------------------------
# Sampling masks
# --------------------------------------------------------------------------------------------


def calibration_slices(shape: tuple[int, int], calib: tuple[int, int] = (CALIB_SIZE, CALIB_SIZE)) -> tuple[slice, slice]:
    """Index of the centred calibration region (the convention of ``sigpy.resize`` and
    ``sigpy.mri.poisson``; rows ``H//2 - c//2`` to ``H//2 - c//2 + c``)."""
    return tuple(slice(n // 2 - c // 2, n // 2 - c // 2 + c) for n, c in zip(shape, calib))  # type: ignore[return-value]


def poisson_mask(
    R: float,
    shape: tuple[int, int] = (IMAGE_SIZE, IMAGE_SIZE),
    calib: tuple[int, int] = (CALIB_SIZE, CALIB_SIZE),
    seed: int = 0,
    rel_tol: float = ACCEL_REL_TOL,
    max_tries: int = 100,
) -> np.ndarray:
    """Variable-density Poisson-disc mask with a fully sampled calibration region.

    Calls ``sigpy.mri.poisson(shape, accel=R, calib=calib, seed=s)`` for ``s = seed, seed + 1,
    ...`` until the realised acceleration ``H * W / mask.sum()`` lies within ``rel_tol * R`` of R
    and the calibration region is fully sampled (sigpy alone only guarantees 0.1 absolute, up
    to 5 % at R = 2). sigpy reseeds its own RNG but restores NumPy's global state.

    Args:
        R: target acceleration, ``1 < R < H * W / (calib area)``.
        shape: (H, W) of k-space.
        calib: calibration region size.
        seed: first seed tried (non-negative int).
        rel_tol: tolerance on the realised acceleration, relative to R.
        max_tries: seeds tried before giving up.

    Returns:
        (H, W) bool mask.

    Raises:
        ValueError: invalid R or shape, or no mask met the tolerance.
    """
    import sigpy.mri

    shape = tuple(int(s) for s in shape)
    calib = tuple(int(c) for c in calib)
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"shape must be (H, W), got {shape}")
    if len(calib) != 2 or any(c < 0 or c > s for c, s in zip(calib, shape)):
        raise ValueError(f"calib {calib} must be two sizes within shape {shape}")
    R = _check_R(R, shape, calib)
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    cal = calibration_slices(shape, calib)
    for k in range(max_tries):
        s = (int(seed) + k) % 2**32
        try:
            m = sigpy.mri.poisson(shape, R, calib=calib, dtype=np.float32, seed=s, tol=0.5 * rel_tol * R)
        except ValueError:
            continue
        m = m != 0
        realised = m.size / m.sum()
        if abs(realised - R) <= rel_tol * R and m[cal].all():
            return m
    raise ValueError(f"no Poisson-disc mask with acceleration within {rel_tol:.0%} of R={R} after {max_tries} seeds")


def _check_R(R: float, shape: tuple[int, int] = (IMAGE_SIZE, IMAGE_SIZE), calib: tuple[int, int] = (CALIB_SIZE, CALIB_SIZE)) -> float:
    if isinstance(R, bool) or not isinstance(R, (int, float, np.integer, np.floating)):
        raise ValueError(f"R must be a number, got {R!r}")
    R = float(R)
    r_max = shape[0] * shape[1] / max(calib[0] * calib[1], 1)
    if not np.isfinite(R) or R <= 1 or R >= r_max:
        raise ValueError(f"acceleration R must satisfy 1 < R < {r_max:g} (the calibration region alone), got {R}")
    return R


# --------------------------------------------------------------------------------------------
# Simulation of multi-coil k-space from a magnitude image
# --------------------------------------------------------------------------------------------


def smooth_random_phase(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    r"""Smooth random phase map: a random quadratic polynomial on :math:`[-1, 1]^2`.

    .. math::
        \phi(u, v) = c_0 + c_1 u + c_2 v + c_3 u^2 + c_4 u v + c_5 v^2,

    :math:`c_0 \sim U(-\pi, \pi)`, :math:`c_{1,2} \sim N(0, 1)`, :math:`c_{3,4,5} \sim N(0, 0.5^2)`
    (radians), the slowly varying phase of B0 inhomogeneity and receive chains.

    Args:
        shape: (H, W).
        rng: NumPy generator (consumed).

    Returns:
        (H, W) float64 phase in radians.
    """
    h, w = shape
    v, u = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    c0 = rng.uniform(-np.pi, np.pi)
    c1, c2 = rng.normal(0.0, 1.0, size=2)
    c3, c4, c5 = rng.normal(0.0, 0.5, size=3)
    return c0 + c1 * u + c2 * v + c3 * u**2 + c4 * u * v + c5 * v**2


def random_birdcage_maps(rng: np.random.Generator, n_coils: int = N_COILS, shape: tuple[int, int] = (IMAGE_SIZE, IMAGE_SIZE)) -> np.ndarray:
    """Randomly placed birdcage coil maps (``sigpy.mri.birdcage_maps``), unit root-sum-of-squares.

    sigpy places ``n_coils`` coils on a circle of relative radius ``r`` around the grid centre.
    Randomisation (the augmentation of the coil geometry): ``r ~ U(1.5, 2.0)`` relative to a grid
    10 % larger on each side, a random crop of that grid (the array centre moves by up to 10 % of
    the field of view), a random quarter-turn rotation (square images), and a random constant
    phase per coil. The coils stay outside the grid (``r >= 1.5 > sqrt(2)``), so the maps are
    finite. Finally each pixel is normalised so that ``sum_c |S_c|^2 = 1``.

    Args:
        rng: NumPy generator (consumed).
        n_coils: C.
        shape: (H, W).

    Returns:
        (C, H, W) complex128 maps.
    """
    import sigpy.mri

    h, w = shape
    pad = max(1, round(0.1 * max(h, w)))
    r = rng.uniform(1.5, 2.0)
    big = sigpy.mri.birdcage_maps((n_coils, h + 2 * pad, w + 2 * pad), r=r, dtype=np.complex128)
    oy, ox = rng.integers(0, 2 * pad + 1, size=2)
    maps = big[:, oy : oy + h, ox : ox + w]
    k = int(rng.integers(4)) if h == w else 2 * int(rng.integers(2))
    maps = np.rot90(maps, k=k, axes=(1, 2))
    maps = maps * np.exp(1j * rng.uniform(0, 2 * np.pi, size=n_coils))[:, None, None]
    maps = maps / np.sqrt(np.sum(np.abs(maps) ** 2, axis=0, keepdims=True))
    return np.ascontiguousarray(maps)


@dataclass(frozen=True)
class SimulatedSlice:
    """One simulated slice.

    Attributes:
        kspace: (C, H, W) complex64 fully sampled noisy k-space ``F S x + e``.
        maps: (C, H, W) complex64 true coil maps S (unit RSS).
        image: (H, W) complex64 true image x = magnitude * exp(i phase).
        noise_std: std of the complex noise per k-space sample (absolute units).
    """

    kspace: np.ndarray
    maps: np.ndarray
    image: np.ndarray
    noise_std: float


def simulate_multicoil_kspace(
    magnitude: np.ndarray,
    rng: np.random.Generator,
    *,
    n_coils: int = N_COILS,
    noise_std: float = DEFAULT_NOISE_STD,
) -> SimulatedSlice:
    """Simulate fully sampled multi-coil k-space from a real magnitude image.

    ``x = magnitude * exp(i phi)`` (:func:`smooth_random_phase`), maps from
    :func:`random_birdcage_maps`, ``y = F S x + e`` with complex white Gaussian ``e``,
    ``E|e|^2 = sigma^2``, ``sigma = noise_std * percentile_99(magnitude)``.

    Args:
        magnitude: (H, W) non-negative real image.
        rng: NumPy generator; the phase, the maps and the noise are drawn from it in that order.
        n_coils: C.
        noise_std: noise level relative to the 99th percentile of ``magnitude`` (>= 0).

    Returns:
        :class:`SimulatedSlice`.
    """
    magnitude = np.asarray(magnitude)
    if magnitude.ndim != 2:
        raise ValueError(f"magnitude must have shape (H, W), got {magnitude.shape}")
    if np.iscomplexobj(magnitude) or not np.all(np.isfinite(magnitude)) or magnitude.min() < 0:
        raise ValueError("magnitude must be real, finite and non-negative")
    if not noise_std >= 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    if n_coils < 1:
        raise ValueError(f"n_coils must be >= 1, got {n_coils}")
    image = magnitude.astype(np.float64) * np.exp(1j * smooth_random_phase(magnitude.shape, rng))
    maps = random_birdcage_maps(rng, n_coils, magnitude.shape)
    ksp = sense_forward(image, maps)
    sigma = float(noise_std) * float(np.percentile(magnitude, 99))
    noise = (rng.standard_normal(ksp.shape) + 1j * rng.standard_normal(ksp.shape)) * (sigma / np.sqrt(2))
    return SimulatedSlice(
        kspace=(ksp + noise).astype(np.complex64),
        maps=maps.astype(np.complex64),
        image=image.astype(np.complex64),
        noise_std=sigma,
    )


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


# --------------------------------------------------------------------------------------------
# Real magnitude MRI shipped inside wheels
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MagnitudeSubject:
    """One file of real magnitude MRI inside an installed package (one subject).

    Attributes:
        name: subject identifier used in descriptions.
        package: importable package holding the file (located without importing it).
        relpath: path of the file inside the package folder.
        reader: ``"nifti"``, ``"npy"``, ``"dicom"`` or ``"ima_gz"`` (raw 256 x 256 uint16, gzipped).
        split: ``"train"`` or ``"test"``.
        contrast: human-readable contrast / orientation.
        slices: which 2-D slices (along the last spatial axis) to consider; ``None`` = all.
        rot90: quarter turns applied to each slice for display (upright anatomy).
    """

    name: str
    package: str
    relpath: str
    reader: str
    split: str
    contrast: str
    slices: tuple[int, ...] | None = None
    rot90: int = 0

    def path(self) -> Path:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise ValueError(f"package {self.package!r} (holding MRI subject {self.name!r}) is not installed; "
                             "install the project's requirements.txt")
        path = Path(list(spec.submodule_search_locations)[0]) / self.relpath
        if not path.is_file():
            raise ValueError(f"MRI subject {self.name!r}: {path} is missing from the installed {self.package!r}")
        return path


#: The real magnitude MRI used by ``source="simulated"``: every file ships inside a wheel of a
#: pinned requirement (nothing is fetched at run time). Distinct files are treated as distinct
#: subjects (their provenance does not say otherwise; dipy's ``ascm_out_test`` is left out
#: because it is a denoised copy of ``aniso_vox``, and pydicom's ``MR_small_*`` variants because
#: they re-encode ``MR_small``). The test subjects cover both contrasts (T1 and b0/T2 EPI).
SIMULATED_SUBJECTS: tuple[MagnitudeSubject, ...] = (
    MagnitudeSubject("dipy_t1_coronal_slice", "dipy", "data/files/t1_coronal_slice.npy", "npy", "test",
                     "T1-weighted brain, coronal, 1 slice (256 x 256)"),
    MagnitudeSubject("dipy_S0_10slices", "dipy", "data/files/S0_10slices.nii.gz", "nifti", "test",
                     "b0 (T2-weighted EPI) brain, axial, 10 slices (128 x 128)", rot90=1),
    MagnitudeSubject("dipy_aniso_vox", "dipy", "data/files/aniso_vox.nii.gz", "nifti", "train",
                     "b0 (T2-weighted EPI) brain, axial, 4 x 4 x 5 mm (58 x 58 x 24)", rot90=1),
    MagnitudeSubject("nibabel_example4d", "nibabel", "tests/data/example4d.nii.gz", "nifti", "train",
                     "fMRI EPI brain, axial, first volume (128 x 96 x 24)", rot90=1),
    MagnitudeSubject("nibabel_anatomical", "nibabel", "tests/data/anatomical.nii", "nifti", "train",
                     "T1-weighted brain crop, 2 mm (33 x 41 x 25)", rot90=1),
    MagnitudeSubject("dipy_test_piesno", "dipy", "data/files/test_piesno.nii.gz", "nifti", "train",
                     "diffusion MRI brain, axial, first of 14 volumes of one slice (96 x 96)", slices=(0,), rot90=1),
    MagnitudeSubject("matplotlib_s1045", "matplotlib", "mpl-data/sample_data/s1045.ima.gz", "ima_gz", "train",
                     "T1-weighted head, sagittal, 1 slice (256 x 256)"),
    MagnitudeSubject("pydicom_MR_small", "pydicom", "data/test_files/MR_small.dcm", "dicom", "train",
                     "MR (NEMA WG04 MR1, downsized), 1 slice (64 x 64)"),
)


@dataclass(frozen=True)
class MagnitudeSlice:
    """A prepared magnitude slice.

    Attributes:
        subject: :attr:`MagnitudeSubject.name`.
        index: slice index in the subject's file.
        image: (80, 80) float64, 99th percentile 1, non-negative.
    """

    subject: str
    index: int
    image: np.ndarray = field(repr=False)


def _read_volume(subject: MagnitudeSubject) -> np.ndarray:
    """(X, Y, Z) float64 magnitude volume (2-D files get Z = 1; 4-D: first volume)."""
    path = subject.path()
    if subject.reader == "nifti":
        import nibabel

        vol = np.asarray(nibabel.load(str(path)).get_fdata(dtype=np.float64))
        while vol.ndim > 3:
            vol = vol[..., 0]
    elif subject.reader == "npy":
        vol = np.load(path, allow_pickle=False).astype(np.float64)
    elif subject.reader == "dicom":
        import pydicom

        vol = pydicom.dcmread(str(path)).pixel_array.astype(np.float64)
    elif subject.reader == "ima_gz":
        with gzip.open(path, "rb") as f:
            vol = np.frombuffer(f.read(), dtype="<u2").reshape(256, 256).astype(np.float64)
    else:
        raise ValueError(f"unknown reader {subject.reader!r}")
    if vol.ndim == 2:
        vol = vol[..., None]
    return np.abs(vol)


def prepare_magnitude(image: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Centre-crop a 2-D magnitude image to a square and resize it to ``size x size``.

    Resizing: ``skimage.transform.resize`` with a cubic spline (``order=3``), reflective
    boundaries and Gaussian anti-aliasing when downsampling; negative overshoot is clipped to 0.
    The result is *not* rescaled (see :func:`load_magnitude_slices`).

    Args:
        image: (H, W) real image.
        size: output side.

    Returns:
        (size, size) float64 non-negative image.
    """
    from skimage.transform import resize

    image = np.abs(np.asarray(image, dtype=np.float64))
    if image.ndim != 2:
        raise ValueError(f"image must have shape (H, W), got {image.shape}")
    h, w = image.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    image = image[top : top + side, left : left + side]
    if side != size:
        image = resize(image, (size, size), order=3, mode="reflect", anti_aliasing=side > size, preserve_range=True)
    return np.clip(image, 0.0, None)


def load_magnitude_slices(subjects: Iterable[MagnitudeSubject] = SIMULATED_SUBJECTS, size: int = IMAGE_SIZE) -> list[MagnitudeSlice]:
    """All usable magnitude slices of ``subjects``, in order (subject, then slice index).

    Slices are 2-D sections along the last axis of each volume, rotated upright, prepared by
    :func:`prepare_magnitude`; in volumes with several slices, nearly empty ones (foreground
    fraction below :data:`MIN_FOREGROUND_FRACTION`, foreground = above 10 % of the volume's
    99.5th percentile) are skipped. Each slice is scaled to a 99th percentile of 1.

    Args:
        subjects: the files to read.
        size: output side.

    Returns:
        list of :class:`MagnitudeSlice`.
    """
    out = []
    for subject in subjects:
        vol = _read_volume(subject)
        indices = range(vol.shape[2]) if subject.slices is None else subject.slices
        prepared = [(int(i), prepare_magnitude(np.rot90(vol[:, :, i], k=subject.rot90), size)) for i in indices]
        ref = np.percentile(np.stack([p for _, p in prepared]), 99.5)
        for i, img in prepared:
            if len(prepared) > 1 and np.mean(img > 0.1 * ref) < MIN_FOREGROUND_FRACTION:
                continue
            p99 = np.percentile(img, 99)
            if p99 <= 0:
                continue
            out.append(MagnitudeSlice(subject.name, i, img / p99))
    return out


# --------------------------------------------------------------------------------------------
# fastMRI multi-coil HDF5
# --------------------------------------------------------------------------------------------

_FASTMRI_HELP = (
    "source='fastmri' needs fastMRI multi-coil HDF5 files (dataset 'kspace' of shape "
    "(slices, coils, H, W) complex64), e.g. the multicoil knee training set of "
    "https://fastmri.med.nyu.edu (the paper used 59 patients, 15 coils). Download and extract it, "
    "then pass fastmri_path=<a folder of .h5 files, or a list of .h5 files> (at least two files: "
    "train and test are split by file)."
)


class MissingMRIDataError(FileNotFoundError, ValueError):
    """A required MRI file or folder is missing (both a ``FileNotFoundError`` and a ``ValueError``)."""


def fastmri_files(path: str | os.PathLike | Sequence[str | os.PathLike] | None) -> list[Path]:
    """The fastMRI ``.h5`` files named by ``path`` (a file, a folder of ``.h5`` files, or a list).

    Returns:
        sorted list of paths.

    Raises:
        MissingMRIDataError: ``path`` is ``None``, missing or holds no ``.h5`` file.
    """
    if path is None:
        raise MissingMRIDataError(f"fastmri_path is None. {_FASTMRI_HELP}")
    paths = [Path(path)] if isinstance(path, (str, os.PathLike)) else [Path(p) for p in path]
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(p.glob("*.h5"))
            if not found:
                raise MissingMRIDataError(f"no .h5 file in {p}. {_FASTMRI_HELP}")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise MissingMRIDataError(f"{p} does not exist. {_FASTMRI_HELP}")
    return sorted(set(files))


def split_fastmri_files(files: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """Deterministic split by file (subject): sorted names, the last
    ``max(1, round(n * 10 / 59))`` files are the test set.

    Raises:
        ValueError: fewer than two files.
    """
    files = sorted(files)
    if len(files) < 2:
        raise ValueError(f"splitting train/test by subject needs at least two fastMRI files, got {len(files)}. {_FASTMRI_HELP}")
    n_test = max(1, round(len(files) * FASTMRI_TEST_FRACTION))
    return list(files[:-n_test]), list(files[-n_test:])


def reduce_kspace(kspace: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Reduce one multi-coil k-space slice to ``size x size``.

    Coil images ``F^H y_c`` are centre-cropped in image space to a square of side ``min(H, W)``
    (this removes fastMRI's readout oversampling), transformed back, and the central
    ``size x size`` of their k-space is kept: the k-space a ``size x size`` acquisition of the
    same square field of view would record (values keep the file's units with orthonormal FFTs;
    :func:`load_mri_dataset` rescales per slice).

    Args:
        kspace: (C, H, W) complex k-space, ``min(H, W) >= size``.
        size: output side.

    Returns:
        (C, size, size) complex64 k-space.
    """
    kspace = np.asarray(kspace)
    if kspace.ndim != 3:
        raise ValueError(f"kspace slice must have shape (C, H, W), got {kspace.shape}")
    _, h, w = kspace.shape
    side = min(h, w)
    if side < size:
        raise ValueError(f"kspace {kspace.shape} is smaller than the target size {size}")
    img = ifft2c(kspace)
    top, left = (h - side) // 2, (w - side) // 2
    ksq = fft2c(img[:, top : top + side, left : left + side])
    start = side // 2 - size // 2
    return np.ascontiguousarray(ksq[:, start : start + size, start : start + size], dtype=np.complex64)


def _fastmri_num_slices(path: Path) -> int:
    import h5py

    with h5py.File(path, "r") as f:
        if "kspace" not in f:
            raise ValueError(f"{path} has no dataset 'kspace'. {_FASTMRI_HELP}")
        ds = f["kspace"]
        if ds.ndim != 4 or not np.issubdtype(ds.dtype, np.complexfloating):
            raise ValueError(f"{path}: 'kspace' must be complex of shape (slices, coils, H, W), got {ds.dtype} {ds.shape}")
        return int(ds.shape[0])


def load_fastmri_kspace(path: str | os.PathLike, slices: Sequence[int] | None = None, size: int = IMAGE_SIZE) -> np.ndarray:
    """Read fastMRI multi-coil k-space and reduce each slice with :func:`reduce_kspace`.

    Args:
        path: ``.h5`` file with dataset ``kspace`` of shape (slices, coils, H, W), complex.
        slices: slice indices to read (``None``: all).
        size: output side.

    Returns:
        (S, C, size, size) complex64 k-space.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise MissingMRIDataError(f"{path} does not exist. {_FASTMRI_HELP}")
    n = _fastmri_num_slices(path)
    idx = list(range(n)) if slices is None else [int(i) for i in slices]
    if any(i < 0 or i >= n for i in idx):
        raise ValueError(f"slice indices {idx} out of range for {path} with {n} slices")
    with h5py.File(path, "r") as f:
        ds = f["kspace"]
        out = [reduce_kspace(np.asarray(ds[i]), size) for i in idx]
    if not out:
        return np.zeros((0, 0, size, size), dtype=np.complex64)
    return np.stack(out)


# --------------------------------------------------------------------------------------------
# Tensor layout helpers
# --------------------------------------------------------------------------------------------


def complex_to_pairs(z: torch.Tensor | np.ndarray) -> torch.Tensor:
    """(N, H, W) complex -> (2N, 1, H, W) float32, real and imaginary parts interleaved
    (example ``2i`` = real part of slice ``i``, ``2i + 1`` = its imaginary part)."""
    z = torch.as_tensor(np.asarray(z) if isinstance(z, np.ndarray) else z)
    if z.ndim != 3 or not z.is_complex():
        raise ValueError(f"expected a complex tensor of shape (N, H, W), got {tuple(z.shape)} {z.dtype}")
    n, h, w = z.shape
    return torch.view_as_real(z.to(torch.complex64)).permute(0, 3, 1, 2).reshape(2 * n, 1, h, w).contiguous()


def pairs_to_complex(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`complex_to_pairs`: (2N, 1, H, W) real -> (N, H, W) complex."""
    x = torch.as_tensor(x)
    if x.ndim != 4 or x.shape[1] != 1 or x.shape[0] % 2 or x.is_complex():
        raise ValueError(f"expected a real tensor of shape (2N, 1, H, W), got {tuple(x.shape)} {x.dtype}")
    n2, _, h, w = x.shape
    return torch.complex(x[0::2, 0], x[1::2, 0])


# --------------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, repr=False, eq=False)
class MRIDataset:
    """The prepared MRI reconstruction data at one acceleration R.

    Attributes:
        R: target acceleration.
        train_input, train_target: (2 N_train, 1, 80, 80) float32: real/imaginary parts
            (interleaved) of the zero-filled SENSE input ``A^H y`` and of the fully sampled SENSE
            target. The residual network regresses ``target - input``.
        test_input, test_target: (2 N_test, 1, 80, 80) float32, same layout.
        test_input_complex, test_target_complex: (N_test, 80, 80) complex64.
        train_masks, test_masks: (N, 80, 80) bool sampling masks (one per slice).
        description: JSON-serialisable provenance (source label, subjects and slice counts per
            split, realised R, noise, normalisation, JSENSE settings, per-slice list).
        cache_path: the cache file this dataset lives in (``None`` if not cached).
        from_cache: whether it was loaded rather than computed.
    """

    R: float
    train_input: torch.Tensor
    train_target: torch.Tensor
    test_input: torch.Tensor
    test_target: torch.Tensor
    test_input_complex: torch.Tensor
    test_target_complex: torch.Tensor
    train_masks: torch.Tensor
    test_masks: torch.Tensor
    description: dict
    cache_path: Path | None = None
    from_cache: bool = False

    @property
    def n_train_slices(self) -> int:
        return int(self.train_masks.shape[0])

    @property
    def n_test_slices(self) -> int:
        return int(self.test_masks.shape[0])

    def __repr__(self) -> str:
        d = self.description
        return (f"MRIDataset(R={self.R:g}, source={d.get('source_label')!r}, "
                f"train={self.n_train_slices} slices / {d['train']['n_subjects']} subjects, "
                f"test={self.n_test_slices} slices / {d['test']['n_subjects']} subjects, "
                f"R realised {d['R_realised']['mean']:.3f}, from_cache={self.from_cache})")


def default_cache_dir() -> Path:
    """``<cache root>/mri``: ``build/cache/mri`` under the project root by default
    (:func:`paper_utils.paths.cache_dir`, which honours ``$PAPER_UTILS_CACHE``)."""
    from .paths import cache_dir

    return Path(cache_dir()) / "mri"


def _payload_digest(arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(arrays):
        if key == "sha256":
            continue
        a = np.ascontiguousarray(arrays[key])
        h.update(key.encode())
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _save_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    arrays = dict(arrays)
    arrays["sha256"] = np.array(_payload_digest(arrays))
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name + ".", suffix=".tmp", delete=False) as tmp:
        try:
            np.savez_compressed(tmp, **arrays)
            tmp.flush()
            os.fsync(tmp.fileno())
        except BaseException:
            tmp.close()
            os.unlink(tmp.name)
            raise
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp.name, 0o666 & ~umask)  # NamedTemporaryFile creates 0600; give the usual permissions
    os.replace(tmp.name, path)


def _load_npz_verified(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays, or ``None`` (with a warning, the file removed) if unreadable or corrupt."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        stored = str(arrays["sha256"])
        if stored != _payload_digest(arrays):
            raise ValueError("checksum mismatch")
        return arrays
    except Exception as exc:  # noqa: BLE001 - any unreadable cache file is rebuilt
        warnings.warn(f"MRI cache file {path} is corrupt ({type(exc).__name__}: {exc}); removing it, it will be rebuilt",
                      stacklevel=3)
        path.unlink(missing_ok=True)
        return None


def _select(pool_size: int, n: int | None, allow_augment: bool, what: str) -> list[tuple[int, int]]:
    """(pool index, draw) pairs: all slices, an evenly spaced subset, or augmented passes."""
    if n is None:
        return [(i, 0) for i in range(pool_size)]
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{what} must be a positive int or None, got {n!r}")
    if pool_size == 0:
        raise ValueError(f"no {what.split('_')[1]} slices available")
    if n > pool_size and not allow_augment:
        raise ValueError(f"{what}={n} exceeds the {pool_size} distinct slices available for this split")
    passes, rest = divmod(int(n), pool_size)
    out = [(i, d) for d in range(passes) for i in range(pool_size)]
    if rest:
        out += [(int(i), passes) for i in np.linspace(0, pool_size - 1, rest).round().astype(int)]
    return out


def _example_rng(seed: int, split: str, pool_index: int, draw: int, stream: int, R: float | None = None) -> np.random.Generator:
    key = [int(seed), _SPLIT_IDS[split], int(pool_index), int(draw), int(stream)]
    if R is not None:
        key.append(int(round(R * 1000)))
    return np.random.default_rng(key)


def _r_key(R: float) -> str:
    return f"{float(R):g}"


def _prepare_slice(ksp_full: np.ndarray, masks: Mapping[str, np.ndarray]) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, np.ndarray, float]]]:
    """JSENSE maps and, per R, (zero-filled input, target, scale), both scaled by ``scale``."""
    cal = np.zeros(ksp_full.shape[1:], dtype=bool)
    cal[calibration_slices(ksp_full.shape[1:])] = True
    # JSENSE only reads the calibration region, which every mask samples fully: one run serves all R
    maps = estimate_maps_jsense(ksp_full * cal)
    target = sense_combine(ksp_full, maps)
    out = {}
    for rk, mask in masks.items():
        zf = sense_adjoint(ksp_full, maps, mask)
        p99 = float(np.percentile(np.abs(zf), 99))
        scale = 1.0 / p99 if p99 > 0 else 1.0
        out[rk] = ((zf * scale).astype(np.complex64), (target * scale).astype(np.complex64), scale)
    return maps, out


def _normalise_source(source: str) -> str:
    if source not in ("simulated", "fastmri"):
        raise ValueError(f"unknown MRI source {source!r}; expected 'simulated' or 'fastmri'")
    return source


def load_mri_datasets(
    Rs: Iterable[float],
    *,
    n_train_slices: int | None = None,
    n_test_slices: int | None = None,
    seed: int = 0,
    source: str = "simulated",
    fastmri_path: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    noise_std: float = DEFAULT_NOISE_STD,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[float, MRIDataset]:
    """Prepared MRI datasets for several accelerations, sharing one JSENSE run per slice.

    For each R the dataset is loaded from ``cache_dir`` if a valid file exists for this
    configuration; the missing ones are built in a single pass over the slices (simulate or read
    k-space, JSENSE, one Poisson mask per slice and R, SENSE combination) and cached. A dataset
    for a given R is identical whether it is built alone or together with other R.

    Args:
        Rs: accelerations, each ``1 < R < 25`` (paper: 2, 4, 8).
        n_train_slices: training slices N_train; ``None``: every distinct slice of the training
            subjects. For ``source="simulated"`` a larger number is reached by augmentation
            (fresh phase, coils, noise and mask for the same magnitude slices); fewer slices are an
            evenly spaced subset (the subset does not depend on ``seed``).
        n_test_slices: test slices; ``None``: all distinct test slices (never augmented).
        seed: non-negative int: seeds the phase, coil geometry, noise and masks (per slice,
            through ``numpy.random.default_rng([seed, split, slice, draw, stream])``).
        source: ``"simulated"`` (:data:`SIMULATED_SOURCE_LABEL`) or ``"fastmri"``.
        fastmri_path: for ``source="fastmri"``: a folder of ``.h5`` files or a list of files.
        noise_std: simulated noise std relative to each image's 99th magnitude percentile
            (ignored for fastMRI, whose noise is the acquired one).
        cache_dir: folder of cached datasets; default :func:`default_cache_dir`.
        progress: show a tqdm progress bar over the slices being prepared.

    Returns:
        dict mapping each R (as given) to its :class:`MRIDataset`.
    """
    Rs = list(Rs)
    if not Rs:
        raise ValueError("Rs must name at least one acceleration")
    r_values = sorted({_r_key(_check_R(R)) for R in Rs}, key=float)
    source = _normalise_source(source)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if isinstance(noise_std, bool) or not (isinstance(noise_std, (int, float)) and noise_std >= 0):
        raise ValueError(f"noise_std must be a non-negative number, got {noise_std!r}")
    for what, n in (("n_train_slices", n_train_slices), ("n_test_slices", n_test_slices)):
        if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
            raise ValueError(f"{what} must be a positive int or None, got {n!r}")
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()

    # ---- the slice pools, per split, and what identifies them in the cache key
    if source == "simulated":
        subjects = {s: [m for m in SIMULATED_SUBJECTS if m.split == s] for s in ("train", "test")}
        source_ids = [[m.name, m.split, sha256_file(m.path())] for m in SIMULATED_SUBJECTS]
        pools: dict[str, list[tuple[str, int]]] | None = None  # filled lazily (needs reading files)
        files_by_split = {s: [m.name for m in subjects[s]] for s in subjects}
    else:
        files = fastmri_files(fastmri_path)
        train_files, test_files = split_fastmri_files(files)
        files_by_split = {"train": [str(p) for p in train_files], "test": [str(p) for p in test_files]}
        source_ids = [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
        pools = {s: [(f, i) for f in files_by_split[s] for i in range(_fastmri_num_slices(Path(f)))] for s in ("train", "test")}

    config = {
        "code_version": MRI_CODE_VERSION,
        "source": source,
        "source_ids": source_ids,
        "n_train_slices": n_train_slices,
        "n_test_slices": n_test_slices,
        "seed": int(seed),
        "noise_std": float(noise_std) if source == "simulated" else None,
        "image_size": IMAGE_SIZE,
        "n_coils": N_COILS if source == "simulated" else None,
        "calib": CALIB_SIZE,
        "accel_rel_tol": ACCEL_REL_TOL,
        "min_foreground": MIN_FOREGROUND_FRACTION,
        "jsense": dict(JSENSE_KWARGS),
    }
    paths = {}
    for rk in r_values:
        key = hashlib.sha256(json.dumps({**config, "R": rk}, sort_keys=True).encode()).hexdigest()[:16]
        paths[rk] = cache / f"mri-{source}-R{rk}-{key}.npz"

    result: dict[str, MRIDataset] = {}
    missing = []
    for rk, path in paths.items():
        arrays = _load_npz_verified(path)
        if arrays is None:
            missing.append(rk)
        else:
            result[rk] = _dataset_from_arrays(float(rk), arrays, path, from_cache=True)
    if missing:
        built = _build(missing, source, files_by_split, pools, n_train_slices, n_test_slices, int(seed), float(noise_std),
                       config, progress)
        for rk in missing:
            _save_npz_atomic(paths[rk], built[rk])
            result[rk] = _dataset_from_arrays(float(rk), built[rk], paths[rk], from_cache=False)
    return {R: result[_r_key(R)] for R in Rs}


def load_mri_dataset(
    R: float,
    *,
    n_train_slices: int | None = None,
    n_test_slices: int | None = None,
    seed: int = 0,
    source: str = "simulated",
    fastmri_path: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    noise_std: float = DEFAULT_NOISE_STD,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> MRIDataset:
    """The prepared MRI dataset at acceleration R (see :func:`load_mri_datasets` for the arguments).

    Example:
        >>> ds = load_mri_dataset(4, n_train_slices=8, n_test_slices=2, progress=False)  # doctest: +SKIP
        >>> ds.train_input.shape                                                        # doctest: +SKIP
        torch.Size([16, 1, 80, 80])
    """
    return load_mri_datasets(
        [R], n_train_slices=n_train_slices, n_test_slices=n_test_slices, seed=seed, source=source,
        fastmri_path=fastmri_path, noise_std=noise_std, cache_dir=cache_dir, progress=progress,
    )[R]


def _build(
    rks: list[str],
    source: str,
    files_by_split: dict[str, list[str]],
    pools: dict[str, list[tuple[str, int]]] | None,
    n_train: int | None,
    n_test: int | None,
    seed: int,
    noise_std: float,
    config: dict,
    progress: bool,
) -> dict[str, dict[str, np.ndarray]]:
    from tqdm import tqdm

    magnitudes: dict[str, list[MagnitudeSlice]] = {}
    if source == "simulated":
        for split in ("train", "test"):
            magnitudes[split] = load_magnitude_slices([m for m in SIMULATED_SUBJECTS if m.split == split])
        pools = {s: [(m.subject, m.index) for m in magnitudes[s]] for s in magnitudes}
    assert pools is not None
    selection = {
        "train": _select(len(pools["train"]), n_train, allow_augment=(source == "simulated"), what="n_train_slices"),
        "test": _select(len(pools["test"]), n_test, allow_augment=False, what="n_test_slices"),
    }
    out: dict[str, dict[str, list]] = {rk: {} for rk in rks}
    coils: set[int] = set()
    bar = tqdm(total=sum(len(v) for v in selection.values()), desc=f"MRI {source}: JSENSE", disable=not progress,
               unit="slice")
    for split in ("train", "test"):
        for rk in rks:
            for name in ("zf", "target", "masks", "scale"):
                out[rk][f"{split}_{name}"] = []
        for pool_index, draw in selection[split]:
            if source == "simulated":
                sim = simulate_multicoil_kspace(magnitudes[split][pool_index].image,
                                                _example_rng(seed, split, pool_index, draw, stream=0), noise_std=noise_std)
                ksp = sim.kspace
            else:
                fname, sl = pools[split][pool_index]
                ksp = load_fastmri_kspace(fname, [sl])[0]
            coils.add(int(ksp.shape[0]))
            masks = {}
            for rk in rks:
                mseed = int(_example_rng(seed, split, pool_index, draw, stream=1, R=float(rk)).integers(2**31))
                masks[rk] = poisson_mask(float(rk), ksp.shape[1:], seed=mseed)
            _, per_r = _prepare_slice(ksp, masks)
            for rk in rks:
                zf, tgt, scale = per_r[rk]
                out[rk][f"{split}_zf"].append(zf)
                out[rk][f"{split}_target"].append(tgt)
                out[rk][f"{split}_masks"].append(masks[rk])
                out[rk][f"{split}_scale"].append(scale)
            bar.update(1)
    bar.close()

    result = {}
    for rk in rks:
        arrays: dict[str, np.ndarray] = {}
        for split in ("train", "test"):
            arrays[f"{split}_zf"] = np.stack(out[rk][f"{split}_zf"]).astype(np.complex64)
            arrays[f"{split}_target"] = np.stack(out[rk][f"{split}_target"]).astype(np.complex64)
            arrays[f"{split}_masks"] = np.stack(out[rk][f"{split}_masks"]).astype(bool)
            arrays[f"{split}_scale"] = np.asarray(out[rk][f"{split}_scale"], dtype=np.float64)
        masks_all = np.concatenate([arrays["train_masks"], arrays["test_masks"]])
        realised = masks_all[0].size / masks_all.reshape(len(masks_all), -1).sum(axis=1)
        description = _describe(float(rk), source, files_by_split, pools, selection, realised, noise_std, coils, config)
        tgt = np.concatenate([arrays["train_target"], arrays["test_target"]])
        imag_fraction = np.sum(tgt.imag.astype(np.float64) ** 2, axis=(1, 2)) / np.sum(np.abs(tgt.astype(np.complex128)) ** 2, axis=(1, 2))
        # JSENSE maps absorb the smooth image phase, so the SENSE-combined images are nearly real
        description["target_imag_energy_fraction_median"] = float(np.median(imag_fraction))
        arrays["description"] = np.array(json.dumps(description, sort_keys=True))
        result[rk] = arrays
    return result


def _describe(R, source, files_by_split, pools, selection, realised, noise_std, coils, config) -> dict:
    desc: dict[str, Any] = {
        "source": source,
        "source_label": SIMULATED_SOURCE_LABEL if source == "simulated" else FASTMRI_SOURCE_LABEL,
        "R_target": R,
        "R_realised": {"mean": float(realised.mean()), "min": float(realised.min()), "max": float(realised.max())},
        "image_size": IMAGE_SIZE,
        "n_coils": sorted(coils),
        "calibration": [CALIB_SIZE, CALIB_SIZE],
        "mask": "sigpy.mri.poisson variable-density Poisson disc, one per slice, realised R within "
                f"{ACCEL_REL_TOL:.0%} of R, {CALIB_SIZE}x{CALIB_SIZE} calibration fully sampled",
        "coil_maps": "JSENSE (sigpy.mri.app.JsenseRecon) from the calibration region, unit root-sum-of-squares",
        "jsense": dict(JSENSE_KWARGS),
        "input": "zero-filled SENSE combination A^H y = sum_c conj(S_c) F^H (M y_c)",
        "target": "SENSE combination of the fully sampled k-space with the same maps",
        "normalisation": "per slice, input and target divided by the 99th percentile of |input|",
        "layout": "(2N, 1, 80, 80) float32, example 2i = real part, 2i+1 = imaginary part of slice i",
        "seed": config["seed"],
        "code_version": MRI_CODE_VERSION,
    }
    if source == "simulated":
        desc["noise_std"] = noise_std
        desc["noise"] = (f"complex white Gaussian, std {noise_std:g} x the 99th magnitude percentile per k-space sample "
                         "(= per-pixel std of the fully sampled SENSE image with orthonormal FFT and unit-RSS maps)")
        desc["phase"] = "random quadratic polynomial (smooth_random_phase)"
        desc["simulated_coils"] = f"{N_COILS} sigpy birdcage maps, random radius/offset/quarter-turn/per-coil phase"
        desc["magnitude_preparation"] = "centre-crop to square, cubic resize to 80x80 (anti-aliased), 99th percentile = 1"
    else:
        desc["noise_std"] = None
        desc["noise"] = "acquired (fastMRI)"
        desc["reduction"] = "coil images centre-cropped to a square, central 80x80 of their k-space"
    for split in ("train", "test"):
        chosen = [(pools[split][i][0], int(pools[split][i][1]), int(d)) for i, d in selection[split]]
        used = sorted({c[0] for c in chosen}, key=[p[0] for p in pools[split]].index)
        desc[split] = {
            "subjects": used,
            "n_subjects": len(used),
            "available_subjects": list(files_by_split[split]),
            "n_available_slices": len(pools[split]),
            "n_slices": len(chosen),
            "n_distinct_slices": len({c[:2] for c in chosen}),
            "n_augmented": sum(1 for c in chosen if c[2] > 0),
            "n_examples": 2 * len(chosen),
            "slices": [list(c) for c in chosen],
        }
    return desc


def _dataset_from_arrays(R: float, arrays: Mapping[str, np.ndarray], path: Path | None, from_cache: bool) -> MRIDataset:
    description = json.loads(str(arrays["description"]))
    test_zf = torch.from_numpy(np.ascontiguousarray(arrays["test_zf"]))
    test_tgt = torch.from_numpy(np.ascontiguousarray(arrays["test_target"]))
    return MRIDataset(
        R=R,
        train_input=complex_to_pairs(arrays["train_zf"]),
        train_target=complex_to_pairs(arrays["train_target"]),
        test_input=complex_to_pairs(test_zf),
        test_target=complex_to_pairs(test_tgt),
        test_input_complex=test_zf,
        test_target_complex=test_tgt,
        train_masks=torch.from_numpy(np.ascontiguousarray(arrays["train_masks"])),
        test_masks=torch.from_numpy(np.ascontiguousarray(arrays["test_masks"])),
        description=description,
        cache_path=path,
        from_cache=from_cache,
    )
