r"""MRI reconstruction with the primal and dual networks: Figures 6, 7 and 11 (paper Sec. 5.2, App. B.4-B.5).

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

Evaluation (Figure 7) is on the complex test slices: the network's outputs for the real and the
imaginary part of a slice are recombined (:func:`paper_utils.mri.pairs_to_complex`) and compared
in magnitude with the target's magnitude: PSNR with the target magnitude's maximum as data range
(:func:`magnitude_psnr`), SSIM by ``skimage.metrics.structural_similarity`` with the same explicit
data range (:func:`magnitude_ssim`), averaged over test slices. Four reconstructions are scored
(:data:`METHODS`): the primal network, the dual network, the ReLU network rebuilt from the dual by
eq. (5), and the zero-filled input itself (the baseline both networks must beat).

Figure 11 shows the magnitude frequency responses of dual filters ``w_i`` (k x k, zero-padded to
80 x 80, centred spectrum) with the helpers of :mod:`paper_utils.report.interpret` (``filter_spectra``,
``count_null_filters``, ``tile_images``, the conventions of Figure 4); :func:`select_filters` draws
the filters shown and :func:`peak_frequencies` / :func:`frequency_bands` summarise where each
response peaks.

Baselines (:mod:`paper_utils.mri.linear_filter`): the zero-filled input, the best linear 7 x 7 residual
filter (closed-form least squares on the training set) and SigPy's L1-wavelet reconstruction are
scored with the networks. The optimum basis (:mod:`paper_utils.mri.optimum`): the sampled dual solved
exactly with a certified gap and the primal trained to its stopping rule, passed to
:func:`evaluate_mri` as ``optimum``.

Letter key: N slices (2N real single-channel examples), H = W = 80, k kernel size, d = k k patch
dimension, P patterns, m primal filters.

Caching: the data are cached by :func:`paper_utils.mri.load_mri_datasets`; models by
:func:`paper_utils.training.denoisers.load_or_train_primal` / ``load_or_train_dual`` in a model cache
whose folder is named after the dataset's cache file (:func:`model_cache`), so models trained on
different data (simulated vs fastMRI, another seed or slice count) never collide.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from paper_utils import mri
from paper_utils.pipeline.cache import Cache
from paper_utils.pipeline.config import DenoiseConfig
from paper_utils.data.mnist import DenoisingSet
from paper_utils.training.denoisers import DenoiseRun, load_or_train_dual, load_or_train_primal
from paper_utils.pipeline.paths import cache_dir
from paper_utils.mri.filters import FREQUENCY_BANDS, frequency_bands, peak_frequencies, select_filters
from paper_utils.mri.metrics import complex_magnitudes, magnitude_psnr, magnitude_ssim

__all__ = [
    "METHODS",
    "OPTIMUM_METHODS",
    "baseline_details",
    "baseline_losses",
    "FIG7_ACCELERATIONS",
    "FIG11_ACCELERATION",
    "FIG11_N_FILTERS",
    "MRIRun",
    "MRIScores",
    "mri_denoising_sets",
    "load_mri_data",
    "model_cache",
    "train_mri",
    "train_mri_runs",
    "complex_magnitudes",
    "magnitude_psnr",
    "magnitude_ssim",
    "predict_pairs",
    "evaluate_mri",
    "score_rows",
    "gap_rows",
    "format_scores",
    "data_summary",
    "timing_rows",
    "representative_slice",
    "select_filters",
    "peak_frequencies",
    "FREQUENCY_BANDS",
    "frequency_bands",
    "source_label",
]

#: the reconstructions scored by :func:`evaluate_mri`, in table order: the paper's networks (as
#: published), the baselines (:mod:`paper_utils.mri.linear_filter`), then the optimum basis when given
METHODS = ("primal", "dual", "rebuilt", "zero-filled", "linear 7x7", "L1-wavelet")
OPTIMUM_METHODS = ("exact dual", "converged primal")
#: Figure 7's accelerations (paper: "undersampling R = 2, 4")
FIG7_ACCELERATIONS = (2, 4)
#: Figure 11's acceleration and number of filters shown (paper App. B.5: 250 filters, R = 4)
FIG11_ACCELERATION = 4
FIG11_N_FILTERS = 250


# --------------------------------------------------------------------------------------------
# Data and training
# --------------------------------------------------------------------------------------------


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
# Evaluation on complex slices (Figure 7); metrics in paper_utils.mri.metrics, Figure 11 helpers in
# paper_utils.mri.filters (both re-exported here)
# --------------------------------------------------------------------------------------------


def predict_pairs(net: torch.nn.Module, inputs: torch.Tensor, *, batch_size: int = 8) -> torch.Tensor:
    """A network's output (2N, 1, H, W) on ``inputs`` (2N, 1, H, W), in batches, on the net's device, no gradient."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    param = next(iter(net.parameters()), None)
    buffer = next(iter(net.buffers()), None)
    device = (param if param is not None else buffer).device
    outs = []
    with torch.no_grad():
        for i in range(0, inputs.shape[0], batch_size):
            outs.append(net(inputs[i:i + batch_size].to(device)).cpu())
    return torch.cat(outs)


@dataclass
class MRIScores:
    """Per-slice scores of the reconstructions of one run (see :func:`evaluate_mri`).

    Attributes:
        R: acceleration.
        psnr, ssim: method -> (N_test,) array (methods of :data:`METHODS`, then :data:`OPTIMUM_METHODS`).
        magnitudes: ``"target"`` and each method -> (N_test, H, W) float64 magnitude images.
        seconds: wall-clock time of the evaluation.
    """

    R: float
    psnr: dict[str, np.ndarray]
    ssim: dict[str, np.ndarray]
    magnitudes: dict[str, torch.Tensor]
    seconds: float = 0.0

    def mean(self, metric: str, method: str) -> float:
        """Mean over test slices of ``metric`` (``"psnr"`` or ``"ssim"``) for ``method``."""
        if metric not in ("psnr", "ssim"):
            raise ValueError(f"metric must be 'psnr' or 'ssim', got {metric!r}")
        return float(np.mean(getattr(self, metric)[method]))


def evaluate_mri(run: MRIRun, *, batch_size: int = 8, optimum=None) -> MRIScores:
    """PSNR and SSIM on the complex test slices of every reconstruction of :data:`METHODS`
    (and :data:`OPTIMUM_METHODS` when ``optimum``, a :class:`paper_utils.mri.optimum.MRIOptimum`, is given).

    Each method's outputs for the real and imaginary parts are recombined into complex images
    (:func:`paper_utils.mri.pairs_to_complex`), their magnitude is compared with the target's
    magnitude (:func:`magnitude_psnr`, :func:`magnitude_ssim`) slice by slice. The linear filter is
    fitted on the run's training set here; the L1-wavelet images come with the data set.
    """
    from paper_utils.mri.linear_filter import apply_linear_filter, fit_linear_filter

    t0 = time.perf_counter()
    inputs = run.data.test_input
    outputs = {
        "primal": predict_pairs(run.primal, inputs, batch_size=batch_size),
        "dual": predict_pairs(run.dual, inputs, batch_size=batch_size),
        "rebuilt": predict_pairs(run.dual.to_primal().to(run.dual.G.device), inputs, batch_size=batch_size),
        "zero-filled": inputs,
        "linear 7x7": apply_linear_filter(fit_linear_filter(run.train, run.cfg.kernel_size), inputs),
    }
    if optimum is not None:
        outputs["exact dual"] = predict_pairs(optimum.exact_net.to(run.dual.G.device), inputs, batch_size=batch_size)
        outputs["converged primal"] = predict_pairs(optimum.converged_nets[0].to(run.dual.G.device), inputs,
                                                    batch_size=batch_size)
    target = run.data.test_target_complex.abs().double()
    mags = {"target": target, **{m: complex_magnitudes(o) for m, o in outputs.items()}}
    if run.data.test_l1_complex is not None:
        mags["L1-wavelet"] = run.data.test_l1_complex.abs().double()
    methods = [m for m in (*METHODS, *OPTIMUM_METHODS) if m in mags]
    scores_psnr = {m: np.array([magnitude_psnr(p, t) for p, t in zip(mags[m], target)]) for m in methods}
    scores_ssim = {m: np.array([magnitude_ssim(p, t) for p, t in zip(mags[m], target)]) for m in methods}
    return MRIScores(run.R, scores_psnr, scores_ssim, mags, seconds=time.perf_counter() - t0)


def baseline_losses(run: MRIRun) -> dict[str, tuple[float | None, float]]:
    """The networks' loss ``1/(2M) ||out - X||^2`` (train, test) of the baselines, for Figure 6's
    horizontal lines: zero-filled input, best linear 7 x 7 filter (fitted on the training set) and
    L1-wavelet (test only: it is computed for the test slices)."""
    from paper_utils.mri.linear_filter import fit_linear_filter, linear_filter_loss

    w = fit_linear_filter(run.train, run.cfg.kernel_size)
    zf = tuple(float(0.5 * torch.mean((d.clean.double() - d.noisy.double()) ** 2)) for d in (run.train, run.test))
    out = {"zero-filled": zf, "linear 7x7": (linear_filter_loss(w, run.train), linear_filter_loss(w, run.test))}
    if run.data.test_l1_complex is not None:
        l1 = mri.complex_to_pairs(run.data.test_l1_complex).double()
        out["L1-wavelet"] = (None, float(0.5 * torch.mean((l1 - run.test.clean.double()) ** 2)))
    return out


def baseline_details(scores: MRIScores, data: mri.MRIDataset, digits: int = 2) -> dict:
    """The numbers every MRI claim records (issue 15): data counts and the baselines' mean test PSNR (dB)."""
    d = data.description

    def mean(m):
        return round(scores.mean("psnr", m), digits) if m in scores.psnr else None

    return {"n_train_slices": data.n_train_slices, "n_test_slices": data.n_test_slices,
            "n_volumes": d.get("n_volumes"), "image_size": d["image_size"], "R": f"{scores.R:g}",
            "zero_filled_psnr": mean("zero-filled"), "linear_filter_psnr": mean("linear 7x7"),
            "l1_wavelet_psnr": mean("L1-wavelet"), "data": d["source_label"]}


def score_rows(scores: Sequence[MRIScores], digits: int = 2) -> list[dict]:
    """Mean test PSNR (dB) and SSIM per method, one row per R, rounded to ``digits`` decimals
    (SSIM to ``digits + 1``), plus the primal - dual PSNR difference."""
    rows = []
    for s in scores:
        row: dict = {"R": f"{s.R:g}"}
        for m in s.psnr:
            row[f"psnr_{m}"] = round(s.mean("psnr", m), digits)
        for m in s.psnr:
            row[f"ssim_{m}"] = round(s.mean("ssim", m), digits + 1)
        row["psnr_primal_minus_dual"] = round(s.mean("psnr", "primal") - s.mean("psnr", "dual"), digits)
        rows.append(row)
    return rows


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


def format_scores(scores: Sequence[MRIScores], digits: int = 2) -> str:
    """A text table of mean test PSNR (``digits`` decimals) and SSIM (``digits + 1`` decimals) per R and method."""
    lines = [f"{'R':>3s}  {'method':<16s} {'PSNR (dB)':>9s}  {'SSIM':>6s}"]
    for s in scores:
        for m in s.psnr:
            lines.append(f"{s.R:>3g}  {m:<16s} {s.mean('psnr', m):>9.{digits}f}  {s.mean('ssim', m):>6.{digits + 1}f}")
    return "\n".join(lines)


def data_summary(data: mri.MRIDataset | Sequence[mri.MRIDataset]) -> str:
    """What the datasets hold: source label, subjects and slices per split, realised accelerations,
    and the imaginary part's share of the targets' energy (a few lines of text)."""
    datasets = [data] if isinstance(data, mri.MRIDataset) else list(data)
    if not datasets:
        raise ValueError("no dataset to describe")
    d = datasets[0].description
    lines = [f"source: {d['source_label']}"]
    for split in ("train", "test"):
        s = d[split]
        lines.append(f"{split}: {s['n_slices']} slices ({s['n_examples']} real single-channel examples; "
                     f"{s['n_distinct_slices']} distinct, {s['n_augmented']} augmented) from {s['n_subjects']} "
                     f"of {len(s['available_subjects'])} subjects: {', '.join(s['subjects'])}")
    lines.append(f"{d.get('n_volumes')} volumes (files); in both splits: {', '.join(d.get('volumes_in_both_splits', [])) or 'none'}"
                 + (f" ({d['split_note']})" if d.get("split_note") else ""))
    for ds in datasets:
        r, imag = ds.description["R_realised"], ds.description["target_imag_energy_fraction_median"]
        l1 = ds.description.get("l1_wavelet", {})
        lines.append(f"R = {ds.R:g}: realised acceleration {r['mean']:.2f} (min {r['min']:.2f}, max {r['max']:.2f}); "
                     f"imaginary share of the target energy (median) {imag:.2%}; L1-wavelet lambda {l1.get('lambda')}")
    return "\n".join(lines)


def timing_rows(runs: Sequence[MRIRun], scores: Sequence[MRIScores] | None = None) -> list[dict]:
    """Seconds per stage and run: data preparation, primal and dual training (or cache load) and
    evaluation; ``cached`` lists what came from a cache."""
    by_r = {s.R: s for s in scores or ()}
    rows = []
    for run in runs:
        row = {"R": f"{run.R:g}", **{f"{k}_s": round(v, 2) for k, v in run.seconds.items()}}
        if run.R in by_r:
            row["eval_s"] = round(by_r[run.R].seconds, 2)
        row["cached"] = ",".join(k for k, v in run.from_cache.items() if v) or "-"
        rows.append(row)
    return rows


def representative_slice(scores: MRIScores, method: str = "primal") -> int:
    """Index of the test slice whose ``method`` PSNR is the median one (lower median for an even count)."""
    values = scores.psnr[method]
    order = np.argsort(values, kind="stable")
    return int(order[(len(values) - 1) // 2])



def main(argv: list[str] | None = None) -> None:
    """Train (and cache) the MRI models of Figures 6, 7 and 11 without Jupyter, e.g. on a GPU machine,
    and print the duality gaps, the test PSNR/SSIM and the time per stage:

        python -m paper_utils.mri.experiments --scale paper --device cuda
    """
    import argparse

    from paper_utils.pipeline import config
    from paper_utils.pipeline import runtime
    from paper_utils.training.denoisers import format_rows

    parser = argparse.ArgumentParser(description="Train and cache the MRI primal and dual networks (Fig. 6, 7, 11).")
    parser.add_argument("--scale", default="cpu", choices=config.SCALES)
    parser.add_argument("--device", default="auto", choices=runtime.DEVICES)
    parser.add_argument("--R", type=float, nargs="*", default=list(config.MRI_ACCELERATIONS), dest="accelerations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--source", default="simulated", choices=("simulated", "fastmri"))
    parser.add_argument("--fastmri-path", default="")
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bars (for logs)")
    args = parser.parse_args(argv)
    runtime.setup(args.seed)
    dev = runtime.resolve_device(args.device)
    cfgs = [config.mri_config(args.scale, R, seed=args.seed) for R in args.accelerations]
    print(cfgs[0], flush=True)
    runs = train_mri_runs(cfgs, dev, source=args.source, fastmri_path=args.fastmri_path,
                          progress=not args.no_progress)
    print(data_summary([run.data for run in runs]))
    print(format_rows(gap_rows(runs), digits=4), flush=True)
    scores = [evaluate_mri(run) for run in runs]
    print(format_scores(scores))
    print(format_rows(timing_rows(runs, scores), digits=4))
    for run in runs:
        print(run.cfg.label(), "primal s/epoch", f"{run.primal_history.seconds[-1] / run.cfg.epochs:.2f}",
              "dual s/epoch", f"{run.dual_history.seconds[-1] / run.cfg.epochs:.2f}")


if __name__ == "__main__":
    main()
