"""Variable-density Poisson-disc sampling masks with a fully sampled calibration region (``sigpy.mri.poisson``)."""

from __future__ import annotations

import numpy as np

from .optional import require
from .constants import ACCEL_REL_TOL, CALIB_SIZE, IMAGE_SIZE

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
    require("sigpy")
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
            m = _sigpy_poisson(shape, R, calib, s, tol=0.5 * rel_tol * R)
        except ValueError:
            continue
        realised = m.size / m.sum()
        if abs(realised - R) <= rel_tol * R and m[cal].all():
            return m
    raise ValueError(f"no Poisson-disc mask with acceleration within {rel_tol:.0%} of R={R} after {max_tries} seeds")


def _sigpy_poisson(shape: tuple[int, int], accel: float, calib: tuple[int, int], seed: int, tol: float,
                   max_attempts: int = 30) -> np.ndarray:
    """``sigpy.mri.poisson(shape, accel, calib, seed=seed, tol=tol) != 0``, with its search made finite.

    sigpy bisects the slope ``s`` of the sampling density ``1 / (1 + s |r|)`` until the realised
    acceleration lies within ``tol`` of ``accel``. The realised acceleration is a step function of the
    slope (a seeded Poisson-disc draw), so for some seeds no slope meets the tolerance: the bisection then
    narrows to two adjacent floats whose midpoint is one of them, and sigpy 0.1.27 loops forever (seed
    170615727 at R = 8 on 80 x 80, among the paper scale's 3,600 masks). This runs the same bisection,
    one draw per step with sigpy's own Poisson-disc kernel, so every mask sigpy returns is returned bit
    for bit; where sigpy would loop forever (or give up) it raises ``ValueError``, and
    :func:`poisson_mask` moves on to the next seed. Without sigpy's kernel (another sigpy version) it
    calls ``sigpy.mri.poisson`` itself."""
    import sigpy.mri

    try:
        from sigpy.mri.samp import _poisson
    except ImportError:  # pragma: no cover - another sigpy layout
        return sigpy.mri.poisson(shape, accel, calib=calib, dtype=np.float32, seed=seed, tol=tol) != 0
    ny, nx = shape
    rows, cols = np.mgrid[:ny, :nx]
    # normalised distance from the calibration region's edge, 0 inside it, 1 at the farthest corner axis
    dx = np.maximum(abs(cols - nx / 2) - calib[-1] / 2, 0)
    dx /= dx.max()
    dy = np.maximum(abs(rows - ny / 2) - calib[-2] / 2, 0)
    dy /= dy.max()
    radius = np.sqrt(dx ** 2 + dy ** 2)
    state = np.random.get_state()  # the kernel reseeds; NumPy's global state is left as it was
    try:
        low, high = 0, max(nx, ny)
        while low < high:
            slope = (high + low) / 2
            scale = 1 + radius * slope
            mask = _poisson(nx, ny, max_attempts, np.clip(scale * nx / max(nx, ny), 1, None),
                            np.clip(scale * ny / max(nx, ny), 1, None), calib, seed)
            mask *= radius < 1  # the corners beyond the largest inscribed radius stay empty
            realised = nx * ny / np.sum(mask)
            if abs(realised - accel) < tol:
                return mask.reshape(shape) != 0
            if slope in (low, high):  # adjacent floats: no slope between them, none meets tol
                break
            if realised < accel:
                low = slope
            else:
                high = slope
    finally:
        np.random.set_state(state)
    raise ValueError(f"no variable-density Poisson-disc mask within {tol:g} of R = {accel:g} for seed {seed}")


def _check_R(R: float, shape: tuple[int, int] = (IMAGE_SIZE, IMAGE_SIZE), calib: tuple[int, int] = (CALIB_SIZE, CALIB_SIZE)) -> float:
    if isinstance(R, bool) or not isinstance(R, (int, float, np.integer, np.floating)):
        raise ValueError(f"R must be a number, got {R!r}")
    R = float(R)
    r_max = shape[0] * shape[1] / max(calib[0] * calib[1], 1)
    if not np.isfinite(R) or R <= 1 or R >= r_max:
        raise ValueError(f"acceleration R must satisfy 1 < R < {r_max:g} (the calibration region alone), got {R}")
    return R

