"""Building the data set: one pass over the slices (simulate or read k-space, JSENSE, masks, SENSE)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .constants import ACCEL_REL_TOL, CALIB_SIZE, IMAGE_SIZE, JSENSE_KWARGS, MRI_CODE_VERSION, N_COILS
from .constants import FASTMRI_SOURCE_LABEL, SIMULATED_SOURCE_LABEL
from .baselines import L1_LAMBDAS, L1_MAX_ITER, L1_N_TUNE, l1_wavelet_recon, magnitude_psnr_np
from .fastmri import load_fastmri_kspace
from .masks import calibration_slices, poisson_mask
from .sense import estimate_maps_jsense, sense_adjoint, sense_combine
from .simulation import simulate_multicoil_kspace
from .sources import SIMULATED_SUBJECTS, MagnitudeSlice, load_magnitude_slices

_SPLIT_IDS = {"train": 0, "test": 1}


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


#: environment variable: worker processes for the per-slice preparation (default 1: in the calling
#: process). The workers are spawned, so a script that sets it must guard its entry point with
#: ``if __name__ == "__main__":``; ``run_notebooks --scale paper`` sets it to the number of cores.
WORKERS_ENV = "PAPER_UTILS_MRI_WORKERS"


@dataclass(frozen=True)
class _SliceTask:
    """What one slice's preparation needs: its k-space source (a magnitude image to simulate from, or a
    fastMRI (file, slice)), the seeds of its phase, coils, noise and masks, and whether it tunes the
    L1-wavelet lambda (training) or is reconstructed with the tuned ``lam`` (test)."""
    split: str
    source: str
    seed: int
    pool_index: int
    draw: int
    noise_std: float
    rks: tuple[str, ...]
    magnitude: np.ndarray | None
    fastmri_slice: tuple[str, int] | None
    tune: bool = False
    lam: dict[str, float] | None = None


@dataclass
class _SliceResult:
    n_coils: int
    masks: dict[str, np.ndarray]
    per_r: dict[str, tuple[np.ndarray, np.ndarray, float]]
    tune_psnr: dict[str, list[float]] | None
    test_l1: dict[str, np.ndarray] | None


def _prepare_task(task: _SliceTask) -> _SliceResult:
    """One slice: simulate or read its k-space, one Poisson mask per R, JSENSE and SENSE
    (:func:`_prepare_slice`), and its L1-wavelet reconstructions. A pure function of ``task``: the
    random streams are seeded per slice (:func:`_example_rng`), so the order and the process that runs
    it do not change the result."""
    if task.source == "simulated":
        sim = simulate_multicoil_kspace(task.magnitude, _example_rng(task.seed, task.split, task.pool_index, task.draw,
                                                                     stream=0), noise_std=task.noise_std)
        ksp = sim.kspace
    else:
        fname, sl = task.fastmri_slice
        ksp = load_fastmri_kspace(fname, [sl])[0]
    masks = {}
    for rk in task.rks:
        mseed = int(_example_rng(task.seed, task.split, task.pool_index, task.draw, stream=1, R=float(rk)).integers(2**31))
        masks[rk] = poisson_mask(float(rk), ksp.shape[1:], seed=mseed)
    maps, per_r = _prepare_slice(ksp, masks)
    tune_psnr = test_l1 = None
    if task.tune:
        tune_psnr = {rk: [magnitude_psnr_np(l1_wavelet_recon(ksp * per_r[rk][2], maps, masks[rk], lm), per_r[rk][1])
                          for lm in L1_LAMBDAS] for rk in task.rks}
    elif task.lam is not None:
        test_l1 = {rk: l1_wavelet_recon(ksp * per_r[rk][2], maps, masks[rk], task.lam[rk]) for rk in task.rks}
    return _SliceResult(int(ksp.shape[0]), masks, per_r, tune_psnr, test_l1)


def default_workers() -> int:
    """Worker processes for the per-slice preparation: ``$PAPER_UTILS_MRI_WORKERS``, else 1. JSENSE takes
    about 1 s per slice on one core, so the paper's 1,200 slices take 20 min in one process."""
    env = os.environ.get(WORKERS_ENV, "").strip()
    if not env:
        return 1
    try:
        n = int(env)
    except ValueError:
        raise ValueError(f"${WORKERS_ENV}={env!r}: expected a positive integer") from None
    if n < 1:
        raise ValueError(f"${WORKERS_ENV}={env!r}: expected a positive integer")
    return n


def _map_slices(tasks: list[_SliceTask], workers: int | None) -> Iterator[_SliceResult]:
    """:func:`_prepare_task` over ``tasks``, in order: in this process, or in ``workers`` spawned
    processes with one BLAS/OpenMP thread each (the results are the same bits either way)."""
    workers = default_workers() if workers is None else int(workers)
    if workers <= 1 or len(tasks) <= 1:
        yield from map(_prepare_task, tasks)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    one_thread = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}
    saved = {k: os.environ.get(k) for k in one_thread}

    def restore():
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    os.environ.update(one_thread)  # inherited by the workers, spawned while map submits the tasks
    try:
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks)),
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            results = pool.map(_prepare_task, tasks, chunksize=max(1, len(tasks) // (8 * workers)))
            restore()
            yield from results
    finally:
        restore()


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
    workers: int | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    from tqdm import tqdm

    magnitudes: dict[str, list[MagnitudeSlice]] = {}
    if source == "simulated":
        for split in ("train", "test"):
            magnitudes[split] = load_magnitude_slices([m for m in SIMULATED_SUBJECTS if m.split == split],
                                                      progress=progress)
        pools = {s: [(m.subject, m.index) for m in magnitudes[s]] for s in magnitudes}
    assert pools is not None
    selection = {
        "train": _select(len(pools["train"]), n_train, allow_augment=(source == "simulated"), what="n_train_slices"),
        "test": _select(len(pools["test"]), n_test, allow_augment=False, what="n_test_slices"),
    }
    out: dict[str, dict[str, list]] = {rk: {} for rk in rks}
    # L1-wavelet baseline: lambda chosen per R on L1_N_TUNE evenly spaced training slices
    n_tr = len(selection["train"])
    tune_at = set(np.linspace(0, n_tr - 1, min(L1_N_TUNE, n_tr)).round().astype(int).tolist())
    tune_psnr: dict[str, list[list[float]]] = {rk: [] for rk in rks}
    lam: dict[str, float] = {}
    coils: set[int] = set()
    bar = tqdm(total=sum(len(v) for v in selection.values()), desc=f"MRI {source}: JSENSE", disable=not progress,
               unit="slice")
    for split in ("train", "test"):
        for rk in rks:
            for name in ("zf", "target", "masks", "scale"):
                out[rk][f"{split}_{name}"] = []
        if split == "test":
            for rk in rks:
                means = np.mean(np.asarray(tune_psnr[rk]), axis=0)
                lam[rk] = float(L1_LAMBDAS[int(np.argmax(means))])
                out[rk]["l1_tune"] = means.tolist()
                out[rk]["test_l1"] = []
        tasks = [_SliceTask(split, source, seed, pool_index, draw, noise_std, tuple(rks),
                            magnitudes[split][pool_index].image if source == "simulated" else None,
                            pools[split][pool_index] if source != "simulated" else None,
                            tune=(split == "train" and position in tune_at),
                            lam=dict(lam) if split == "test" else None)
                 for position, (pool_index, draw) in enumerate(selection[split])]
        for done in _map_slices(tasks, workers):
            coils.add(done.n_coils)
            for rk in rks:
                zf, tgt, scale = done.per_r[rk]
                if done.tune_psnr is not None:
                    tune_psnr[rk].append(done.tune_psnr[rk])
                if done.test_l1 is not None:
                    out[rk]["test_l1"].append(done.test_l1[rk])
                out[rk][f"{split}_zf"].append(zf)
                out[rk][f"{split}_target"].append(tgt)
                out[rk][f"{split}_masks"].append(done.masks[rk])
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
        arrays["test_l1"] = np.stack(out[rk]["test_l1"]).astype(np.complex64)
        masks_all = np.concatenate([arrays["train_masks"], arrays["test_masks"]])
        realised = masks_all[0].size / masks_all.reshape(len(masks_all), -1).sum(axis=1)
        description = _describe(float(rk), source, files_by_split, pools, selection, realised, noise_std, coils, config)
        tgt = np.concatenate([arrays["train_target"], arrays["test_target"]])
        imag_fraction = np.sum(tgt.imag.astype(np.float64) ** 2, axis=(1, 2)) / np.sum(np.abs(tgt.astype(np.complex128)) ** 2, axis=(1, 2))
        # JSENSE maps absorb the smooth image phase, so the SENSE-combined images are nearly real
        description["target_imag_energy_fraction_median"] = float(np.median(imag_fraction))
        description["l1_wavelet"] = {
            "app": "sigpy.mri.app.L1WaveletRecon (Daubechies-4 wavelets), JSENSE maps, normalised k-space",
            "lambdas": list(L1_LAMBDAS), "tune_psnr_mean": out[rk]["l1_tune"], "lambda": lam[rk],
            "n_tune_slices": len(tune_at), "max_iter": L1_MAX_ITER,
        }
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
    volume_of = {m.name: m.volume_id for m in SIMULATED_SUBJECTS} if source == "simulated" else {}
    for split in ("train", "test"):
        chosen = [(pools[split][i][0], _index(pools[split][i][1]), int(d)) for i, d in selection[split]]
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
            "volumes": sorted({volume_of.get(c[0], c[0]) for c in chosen}),
            "slices": [list(c) for c in chosen],
        }
    desc["n_volumes"] = len(set(desc["train"]["volumes"]) | set(desc["test"]["volumes"]))
    shared = sorted(set(desc["train"]["volumes"]) & set(desc["test"]["volumes"]))
    desc["volumes_in_both_splits"] = shared
    if shared:
        desc["split_note"] = (f"{', '.join(shared)}: one subject split by slab (disjoint voxel blocks, "
                              "paper_utils.mri.sources.MNI152_SPLIT_Y); every other volume is in one split only")
    return desc


def _index(i):
    return i if isinstance(i, str) else int(i)
