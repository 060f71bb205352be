r"""The MRI networks of Figures 6, 7 and 11 (paper Sec. 5.2, App. B.4-B.5): data, training, curves.

The networks are the *residual* ones of eq. (6) / Corollary 1.1: the input ``Y`` is the real or the
imaginary part of the SENSE-combined zero-filled image (:mod:`paper_utils.mri`), the target ``X``
the same part of the fully sampled SENSE image, and both networks learn the correction
``X - Y``:

.. math::
    \hat X = Y + f(Y), \qquad
    f(Y) = \sum_{j=1}^{m} (Y \circledast u_j)_+ \circledast v_j \ \text{(primal, eq. 2)}, \qquad
    f(y_p) = \sum_{i=1}^{P} d_i(p)\, y_p^\top (w_i - z_i) \ \text{(dual, eq. 4 and 8)}.

Paper settings (App. B.4, :func:`paper_utils.pipeline.config.mri_config`): k = 7 (padding 3), primal m = 1024
(Adam lr 1e-3), dual P = 5000 sampled patterns (Adam lr 5e-7, hinge penalty), batch 2, 25 epochs,
beta = 1e-5; R in {2, 4, 8}.

This module prepares the data (:func:`load_mri_data`), trains or loads both networks
(:func:`train_mri`, :func:`train_mri_runs`) and tabulates what a run holds: Figure 6's final
losses and gaps (:func:`gap_rows`), the data (:func:`split_rows`, :func:`acceleration_rows`) and
the time per stage (:func:`timing_rows`). Scores on the complex test slices are in
:mod:`paper_utils.mri.evaluation`, the optimum basis in :mod:`paper_utils.mri.optimum`.

Letter key: N slices (2N real single-channel examples), H = W = 80, k kernel size, d = k k patch
dimension, P patterns, m primal filters.

Caching: the data are cached by :func:`paper_utils.mri.load_mri_datasets`; models by
:func:`paper_utils.training.denoisers.load_or_train_primal` / ``load_or_train_dual`` in a model cache
whose folder is named after the dataset's cache file (:func:`model_cache`), so models trained on
different data (simulated vs fastMRI, another seed or slice count) never collide.

Command line (train and cache the models without Jupyter, e.g. on a GPU machine):
``python -m paper_utils.mri --scale paper --device cuda`` (:mod:`paper_utils.mri.__main__`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from paper_utils import mri
from paper_utils.data.mnist import DenoisingSet
from paper_utils.pipeline.cache import Cache
from paper_utils.pipeline.config import DenoiseConfig
from paper_utils.pipeline.paths import cache_dir
from paper_utils.training.denoisers import DenoiseRun, load_or_train_dual, load_or_train_primal

__all__ = [
    "MRIRun",
    "source_label",
    "mri_denoising_sets",
    "load_mri_data",
    "model_cache",
    "train_mri",
    "train_mri_runs",
    "gap_rows",
    "split_rows",
    "acceleration_rows",
    "volumes_note",
    "timing_rows",
    "cache_note",
]


def source_label(data: mri.MRIDataset) -> str:
    """The honesty label of the data (e.g. :data:`paper_utils.mri.SIMULATED_SOURCE_LABEL`)."""
    return str(data.description["source_label"])


def mri_denoising_sets(data: mri.MRIDataset) -> tuple[DenoisingSet, DenoisingSet]:
    """The train and test splits of ``data`` as :class:`~paper_utils.data.mnist.DenoisingSet` pairs.

    ``noisy`` is the zero-filled input ``Y`` and ``clean`` the target ``X``, both (2N, 1, 80, 80)
    float32 with real and imaginary parts as separate examples (paper Sec. 5.2). The MRI data are
    already normalised per slice (:mod:`paper_utils.mri`), hence ``mean = 0``, ``std = 1``.
    """
    train = DenoisingSet(noisy=data.train_input, clean=data.train_target, mean=0.0, std=1.0)
    test = DenoisingSet(noisy=data.test_input, clean=data.test_target, mean=0.0, std=1.0)
    return train, test


def _check_mri_config(cfg: DenoiseConfig) -> None:
    if not isinstance(cfg, DenoiseConfig):
        raise ValueError(f"expected a DenoiseConfig, got {type(cfg).__name__}")
    if cfg.dataset != "mri":
        raise ValueError(f"configuration {cfg.label()} is not an MRI one (dataset={cfg.dataset!r}); "
                         "use paper_utils.pipeline.config.mri_config")


def load_mri_data(cfgs: Sequence[DenoiseConfig], *, source: str = "simulated", fastmri_path=None,
                  cache_dir: str | Path | None = None, progress: bool = False) -> dict[float, mri.MRIDataset]:
    """The prepared datasets of several MRI configurations, built in one pass (one JSENSE per slice).

    Args:
        cfgs: MRI configurations (:func:`paper_utils.pipeline.config.mri_config`) that differ only in the
            acceleration R (``noise_level``); ``n_train`` / ``n_test`` count slices, ``seed``
            seeds the simulation and the masks.
        source: ``"simulated"`` or ``"fastmri"`` (see :func:`paper_utils.mri.load_mri_datasets`).
        fastmri_path: for ``source="fastmri"``: a folder of ``.h5`` files (``""`` counts as none).
        cache_dir: data cache folder (default ``build/cache/mri``).
        progress: show a progress bar while preparing slices.

    Returns:
        dict mapping each ``cfg.noise_level`` (R) to its :class:`paper_utils.mri.MRIDataset`.
    """
    cfgs = list(cfgs)
    if not cfgs:
        raise ValueError("cfgs must hold at least one configuration")
    for cfg in cfgs:
        _check_mri_config(cfg)
    sizes = {(c.n_train, c.n_test, c.seed) for c in cfgs}
    if len(sizes) != 1:
        raise ValueError(f"configurations to load together must share n_train, n_test and seed, got {sorted(sizes)}")
    n_train, n_test, seed = sizes.pop()
    return mri.load_mri_datasets([c.noise_level for c in cfgs], n_train_slices=n_train, n_test_slices=n_test,
                                 seed=seed, source=source, fastmri_path=fastmri_path or None,
                                 cache_dir=cache_dir, progress=progress)


def model_cache(data: mri.MRIDataset, root: str | Path | None = None) -> Cache:
    """The model cache of networks trained on ``data``: ``<root>/mri_models/<dataset file stem>``.

    The dataset's cache file name carries its source, R and a hash of its configuration, so the
    model cache key (:meth:`paper_utils.pipeline.config.DenoiseConfig.key`, which does not know the data
    source) cannot mix up models trained on different data.
    """
    root = Path(root) if root is not None else cache_dir()
    stem = data.cache_path.stem if data.cache_path is not None else f"mri-uncached-R{data.R:g}"
    return Cache(root / "mri_models" / stem)


@dataclass
class MRIRun(DenoiseRun):
    """One acceleration R: data, both trained networks and their per-epoch curves (a
    :class:`paper_utils.training.denoisers.DenoiseRun` plus the MRI dataset and timings).

    Attributes:
        cfg: the configuration (:func:`paper_utils.pipeline.config.mri_config`).
        data: the prepared dataset at R.
        train, test: ``data`` as denoising sets (2N, 1, 80, 80).
        primal, dual: the trained networks (residual, eq. 6).
        primal_history, dual_history: per-epoch curves (:class:`paper_utils.training.adam.History`).
        seconds: wall-clock seconds of this process: ``data`` (shared by the runs loaded together),
            ``primal`` and ``dual`` (training, or loading from the cache).
        from_cache: whether ``data``, ``primal`` and ``dual`` were loaded rather than computed.
    """

    data: mri.MRIDataset
    seconds: dict[str, float] = field(default_factory=dict)
    from_cache: dict[str, bool] = field(default_factory=dict)

    @property
    def R(self) -> float:
        return float(self.cfg.noise_level)


def _model_name(cfg: DenoiseConfig) -> str:
    # the name paper_utils.training.denoisers uses for its cache entries
    return f"{cfg.label()}-{cfg.key()}"


def train_mri(cfg: DenoiseConfig, device: torch.device | str = "cpu", *, data: mri.MRIDataset | None = None,
              source: str = "simulated", fastmri_path=None, cache_root: str | Path | None = None,
              progress: bool = True) -> MRIRun:
    """Data and both networks of one MRI configuration, loaded from the caches or trained.

    Args:
        cfg: an MRI configuration (:func:`paper_utils.pipeline.config.mri_config`).
        device: where to train (``torch.device`` or name).
        data: the prepared dataset, if already loaded (e.g. by :func:`load_mri_data`); otherwise it
            is loaded (or built) here from ``source`` / ``fastmri_path``.
        source, fastmri_path: see :func:`load_mri_data`.
        cache_root: root of both caches (data under ``<root>/mri``, models under
            ``<root>/mri_models``); default ``build/cache``.
        progress: progress bars.

    Returns:
        :class:`MRIRun`.
    """
    _check_mri_config(cfg)
    device = torch.device(device)
    seconds, cached = {}, {}
    if data is None:
        t0 = time.perf_counter()
        data_dir = Path(cache_root) / "mri" if cache_root is not None else None
        data = load_mri_data([cfg], source=source, fastmri_path=fastmri_path, cache_dir=data_dir,
                             progress=progress)[cfg.noise_level]
        seconds["data"] = time.perf_counter() - t0
    elif abs(float(data.R) - float(cfg.noise_level)) > 1e-9:
        raise ValueError(f"data are at R = {data.R:g} but the configuration asks for R = {cfg.noise_level:g}")
    elif data.n_train_slices != cfg.n_train or data.n_test_slices != cfg.n_test:
        raise ValueError(f"data hold {data.n_train_slices}/{data.n_test_slices} train/test slices, the configuration "
                         f"asks for {cfg.n_train}/{cfg.n_test}")
    cached["data"] = bool(data.from_cache)
    train, test = mri_denoising_sets(data)
    cache = model_cache(data, cache_root)
    cached["primal"] = cache.path("primal", _model_name(cfg)).exists()
    t0 = time.perf_counter()
    primal, ph = load_or_train_primal(cfg, train, test, device=device, cache=cache, progress=progress)
    seconds["primal"] = time.perf_counter() - t0
    cached["dual"] = cache.path("dual", _model_name(cfg)).exists()
    t0 = time.perf_counter()
    dual, dh = load_or_train_dual(cfg, train, test, device=device, cache=cache, progress=progress)
    seconds["dual"] = time.perf_counter() - t0
    return MRIRun(cfg, train, test, primal, dual, ph, dh, data=data, seconds=seconds, from_cache=cached)


def train_mri_runs(cfgs: Sequence[DenoiseConfig], device: torch.device | str = "cpu", *, source: str = "simulated",
                   fastmri_path=None, cache_root: str | Path | None = None, progress: bool = True) -> list[MRIRun]:
    """:func:`train_mri` for several accelerations, with the data of all of them built in one pass.

    ``seconds["data"]`` of every run is the time of that shared pass.
    """
    cfgs = list(cfgs)
    t0 = time.perf_counter()
    data_dir = Path(cache_root) / "mri" if cache_root is not None else None
    datasets = load_mri_data(cfgs, source=source, fastmri_path=fastmri_path, cache_dir=data_dir, progress=progress)
    t_data = time.perf_counter() - t0
    runs = []
    for cfg in cfgs:
        run = train_mri(cfg, device, data=datasets[cfg.noise_level], cache_root=cache_root, progress=progress)
        run.seconds = {"data": t_data, **run.seconds}
        runs.append(run)
    return runs


# --------------------------------------------------------------------------------------------
# Tables of runs
# --------------------------------------------------------------------------------------------


def gap_rows(runs: Sequence[MRIRun]) -> list[dict]:
    """Final-epoch numbers of Figure 6 per R: train objectives, test losses and relative gaps
    ``(dual - primal) / primal``, the zero-filled baseline ``zf_*`` (the dual at initialisation,
    W = Z = 0, predicts ``Y``), the rebuilt network's objective, the dual's largest constraint
    violation and ``dual_change``, the relative change of the dual's train objective since
    initialisation (how far the dual moved from the zero-filled input)."""
    rows = []
    for run in runs:
        ph, dh = run.primal_history, run.dual_history
        p_tr, d_tr, p_te, d_te = ph.train_objective[-1], dh.train_objective[-1], ph.test_loss[-1], dh.test_loss[-1]
        rows.append({
            "R": f"{run.R:g}",
            "zf_train": dh.train_loss[0], "primal_train": p_tr, "dual_train": d_tr, "gap_train": (d_tr - p_tr) / p_tr,
            "zf_test": dh.test_loss[0], "primal_test": p_te, "dual_test": d_te, "gap_test": (d_te - p_te) / p_te,
            "rebuilt_train": dh.rebuilt_objective[-1], "max_violation": dh.max_violation[-1],
            "dual_change": (d_tr - dh.train_objective[0]) / dh.train_objective[0],
        })
    return rows


def split_rows(data: mri.MRIDataset) -> list[dict]:
    """What each split of ``data`` holds: slices, real single-channel examples, distinct and
    augmented slices, and the subjects used (of those available)."""
    rows = []
    for split in ("train", "test"):
        s = data.description[split]
        rows.append({"split": split, "slices": s["n_slices"], "examples": s["n_examples"],
                     "distinct": s["n_distinct_slices"], "augmented": s["n_augmented"],
                     "subjects": f"{s['n_subjects']} of {len(s['available_subjects'])}",
                     "subjects used": ", ".join(s["subjects"])})
    return rows


def volumes_note(data: mri.MRIDataset) -> str:
    """The data's source label, volume count and the volumes found in both splits (one line)."""
    d = data.description
    return (f"{d['source_label']}: {d.get('n_volumes')} volumes (files); in both splits: "
            f"{', '.join(d.get('volumes_in_both_splits', [])) or 'none'}"
            + (f" ({d['split_note']})" if d.get("split_note") else ""))


def acceleration_rows(datasets: Sequence[mri.MRIDataset]) -> list[dict]:
    """Per R: the realised acceleration of the masks (mean, min, max), the imaginary part's median
    share of the targets' energy and the L1-wavelet baseline's lambda."""
    rows = []
    for ds in datasets:
        r, l1 = ds.description["R_realised"], ds.description.get("l1_wavelet", {})
        rows.append({"R": f"{ds.R:g}", "realised R": round(r["mean"], 2), "min": round(r["min"], 2),
                     "max": round(r["max"], 2),
                     "imaginary share of target energy (median)": f"{ds.description['target_imag_energy_fraction_median']:.2%}",
                     "L1-wavelet lambda": l1.get("lambda")})
    return rows


def timing_rows(runs: Sequence[MRIRun], scores: Sequence | None = None) -> list[dict]:
    """Seconds per stage and run: data preparation, primal and dual training (or cache load) and
    evaluation (``scores``: :class:`paper_utils.mri.evaluation.MRIScores`); ``cached`` lists what
    came from a cache."""
    by_r = {s.R: s for s in scores or ()}
    rows = []
    for run in runs:
        row = {"R": f"{run.R:g}", **{f"{k}_s": round(v, 2) for k, v in run.seconds.items()}}
        if run.R in by_r:
            row["eval_s"] = round(by_r[run.R].seconds, 2)
        row["cached"] = ",".join(k for k, v in run.from_cache.items() if v) or "-"
        rows.append(row)
    return rows


def cache_note(runs: Sequence[MRIRun]) -> str:
    """Where the runs' data and networks came from, in a few words (for a notebook's status cell)."""
    flags = [v for run in runs for v in run.from_cache.values()]
    if all(flags):
        return "MRI data and networks loaded from the cache"
    if not any(flags):
        return "MRI data prepared and networks trained in this run (now cached)"
    return "MRI data and networks partly loaded from the cache (see the time per stage)"
