"""The prepared data set: its tensor layout, the cached files and the loaders."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from paper_utils.pipeline.cache import sha256_file
from .constants import (ACCEL_REL_TOL, CALIB_SIZE, DEFAULT_NOISE_STD, IMAGE_SIZE, JSENSE_KWARGS, MIN_FOREGROUND_FRACTION,
                        MRI_CODE_VERSION, N_COILS)
from .fastmri import _fastmri_num_slices, fastmri_files, split_fastmri_files
from .masks import _check_R
from .sources import SIMULATED_SUBJECTS
from .baselines import L1_LAMBDAS, L1_MAX_ITER, L1_N_TUNE
from .build import _build

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
        test_l1_complex: (N_test, 80, 80) complex64 L1-wavelet reconstructions of the test slices
            (:mod:`paper_utils.mri.baselines`, lambda chosen on training slices), same scale as the target.
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
    test_l1_complex: torch.Tensor | None = None
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
    (:func:`paper_utils.pipeline.paths.cache_dir`, which honours ``$PAPER_UTILS_CACHE``)."""
    from paper_utils.pipeline.paths import cache_dir

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


def _r_key(R: float) -> str:
    return f"{float(R):g}"


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
        source_ids = [[m.name, m.split, sha256_file(m.path()), [list(b) for b in m.block or ()], list(m.orientations)]
                      for m in SIMULATED_SUBJECTS]
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
        "l1_wavelet": [list(L1_LAMBDAS), L1_MAX_ITER, L1_N_TUNE],
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
        test_l1_complex=torch.from_numpy(np.ascontiguousarray(arrays["test_l1"])) if "test_l1" in arrays else None,
        cache_path=path,
        from_cache=from_cache,
    )
