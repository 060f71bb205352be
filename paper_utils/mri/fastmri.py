"""Real fastMRI multi-coil HDF5 files (dataset ``kspace`` of shape (slices, coils, H, W) complex64).

Zbontar et al. (2018). fastMRI: An open dataset and benchmarks for accelerated MRI. arXiv:1811.08839.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .optional import require
from .constants import FASTMRI_TEST_FRACTION, IMAGE_SIZE
from .sense import fft2c, ifft2c

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
    require("h5py")
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
    require("h5py")
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

