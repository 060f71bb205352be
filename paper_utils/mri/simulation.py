r"""Simulation of multi-coil k-space from a real magnitude image.

``x = |x| exp(i phi)`` with a smooth random phase, ``y_c = F S_c x + e_c`` with C randomly placed
birdcage coils and complex white Gaussian noise ``e`` (see :data:`DEFAULT_NOISE_STD` for the level).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .optional import require
from .constants import DEFAULT_NOISE_STD, IMAGE_SIZE, N_COILS
from .sense import sense_forward

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
    require("sigpy")
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

