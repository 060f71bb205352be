r"""Sweeps over grids of configurations (Figures 8-10), resumable through the model cache.

A sweep is a list of jobs ``(model, cfg)``: the primal network of eq. (2) or the convex dual of
eq. (4) for one :class:`~paper_utils.pipeline.config.DenoiseConfig`. :func:`run_sweep` trains each job (or
loads it) through :func:`paper_utils.training.denoisers.load_or_train_primal` / ``load_or_train_dual``,
which save every network under its configuration key as soon as it is trained. A sweep interrupted
anywhere (a kill, a crash, a diverged run) therefore resumes where it stopped: finished entries load
from the cache and nothing finished is redone.

The result is tidy: one row (a dict) per job with the configuration's fields, its per-epoch curves
(:class:`~paper_utils.training.adam.History`) and its final numbers. :func:`curves_long` flattens rows to
the long format seaborn plots (a dict of equal-length lists, one entry per job, network, part and
epoch); :func:`select` filters it. No pandas is needed. The figures' summaries of the rows live
with their figures: :mod:`paper_utils.figures.fig08_09_noise_robustness` (margins of the dual below
the primal) and :mod:`paper_utils.figures.fig10_pattern_ablation` (the threshold rule over P).

Letter key: N images, M patches, d patch dimension, P patterns, m filters.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from tqdm.auto import tqdm

from paper_utils.training import denoisers as experiments
from paper_utils.pipeline.cache import Cache
from paper_utils.pipeline.config import DenoiseConfig, check_scale
from paper_utils.data.mnist import DenoisingSet, MnistArrays, load_mnist, mnist_denoising
from paper_utils.training.adam import History

MODELS = ("primal", "dual")

#: names of the curves in :func:`curves_long` (and the seaborn ``hue`` of the figures)
PRIMAL, DUAL, REBUILT = "primal", "dual (eq. 4)", "rebuilt (eq. 5)"
NETWORK_PALETTE = {PRIMAL: "tab:blue", DUAL: "tab:orange", REBUILT: "tab:green"}

#: seeds per scale when a notebook's ``n_seeds`` is ``None`` (the paper shows a single run)
DEFAULT_SEEDS = {
    "robustness": {"smoke": 2, "cpu": 3, "paper": 3},
    "ablation": {"smoke": 1, "cpu": 1, "paper": 1},
}

# History fields giving, per network, the train and test curves of the figures: the train curve is
# the training objective (loss + regulariser: eq. (2) for the primal, eq. (4) for the dual and the
# eq. (5) network's own objective for the rebuilt one), the test curve the data loss 1/(2M)||f - X||^2.
_CURVES = {
    "primal": ((PRIMAL, "train", "train_objective"), (PRIMAL, "test", "test_loss")),
    "dual": ((DUAL, "train", "train_objective"), (DUAL, "test", "test_loss"),
             (REBUILT, "train", "rebuilt_objective"), (REBUILT, "test", "rebuilt_test_loss")),
}


def seeds_for(experiment: str, scale: str, n_seeds: int | None = None, *, first: int = 0) -> list[int]:
    """The seeds ``first, first + 1, ...`` of a sweep: ``n_seeds`` of them, or the scale's default.

    Args:
        experiment: ``"robustness"`` or ``"ablation"`` (keys of :data:`DEFAULT_SEEDS`).
        scale: ``smoke``, ``cpu`` or ``paper``.
        n_seeds: how many; ``None`` takes ``DEFAULT_SEEDS[experiment][scale]``.
        first: the first seed (a notebook's ``seed`` parameter).
    """
    if experiment not in DEFAULT_SEEDS:
        raise ValueError(f"unknown experiment {experiment!r}; expected one of {tuple(DEFAULT_SEEDS)}")
    n = DEFAULT_SEEDS[experiment][check_scale(scale)] if n_seeds is None else int(n_seeds)
    if n < 1:
        raise ValueError(f"n_seeds must be >= 1, got {n_seeds}")
    return list(range(first, first + n))


def sweep_jobs(configs: Iterable[DenoiseConfig], models: Sequence[str] = MODELS) -> list[tuple[str, DenoiseConfig]]:
    """The jobs ``(model, cfg)`` for every configuration and every model in ``models`` (in that order)."""
    for model in models:
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}; expected one of {MODELS}")
    return [(model, cfg) for cfg in configs for model in models]


def cache_name(cfg: DenoiseConfig) -> str:
    """The cache entry name :mod:`paper_utils.training.denoisers` uses for ``cfg`` (``<label>-<key>``)."""
    return f"{cfg.label()}-{cfg.key()}"


def is_cached(cache: Cache, model: str, cfg: DenoiseConfig) -> bool:
    """Whether the ``model`` network of ``cfg`` is in ``cache`` (file and checksum present)."""
    path = cache.path(model, cache_name(cfg))
    return path.exists() and path.with_suffix(".sha256").exists()


def _data_key(cfg: DenoiseConfig) -> tuple:
    return cfg.dataset, cfg.n_train, cfg.n_test, cfg.noise, cfg.noise_level, cfg.seed


def _final(history: History, field: str) -> float | None:
    values = getattr(history, field)
    return float(values[-1]) if values else None


def _row(model: str, cfg: DenoiseConfig, history: History, from_cache: bool) -> dict:
    dual = model == "dual"
    return {
        "model": model, "label": cfg.label(), "key": cfg.key(), "scale": cfg.scale,
        "noise": f"{cfg.noise} {cfg.noise_level:g}", "noise_kind": cfg.noise, "noise_level": cfg.noise_level,
        "seed": cfg.seed, "n_train": cfg.n_train, "epochs": cfg.epochs,
        "n_filters": None if dual else cfg.n_filters, "n_patterns": cfg.n_patterns if dual else None,
        "lr": cfg.lr_dual if dual else cfg.lr_primal,
        "from_cache": from_cache, "train_seconds": _final(history, "seconds"),
        "train_loss": _final(history, "train_loss"), "train_objective": _final(history, "train_objective"),
        "test_loss": _final(history, "test_loss"),
        "rebuilt_objective": _final(history, "rebuilt_objective"),
        "rebuilt_test_loss": _final(history, "rebuilt_test_loss"),
        "max_violation": _final(history, "max_violation"),
        "history": history,
    }


def run_sweep(jobs: Sequence[tuple[str, DenoiseConfig]], *, device: torch.device, cache: Cache | None = None,
              arrays: MnistArrays | None = None, progress: bool = True, train_progress: bool = False) -> list[dict]:
    """Train or load every job of a grid; returns one tidy row per job, in order.

    Each network is cached as soon as it is trained, so rerunning an interrupted sweep loads the
    finished jobs (``row["from_cache"]`` is then ``True``) and trains only the rest. A job listed
    twice is trained once. Data sets are built once per (data, noise, seed) and shared by the jobs.

    Args:
        jobs: ``(model, cfg)`` pairs, ``model`` in :data:`MODELS` (see :func:`sweep_jobs`).
            Only MNIST configurations are supported.
        device: where to train.
        cache: the model cache (default ``build/cache``).
        arrays: MNIST arrays (default :func:`paper_utils.data.mnist.load_mnist`, loaded on first need).
        progress: a tqdm bar over the grid.
        train_progress: also the per-epoch bars of each training run.

    Returns:
        Rows (dicts) with the configuration's fields (``model``, ``noise``, ``noise_level``,
        ``seed``, ``n_filters`` (primal) or ``n_patterns`` (dual), ...), ``from_cache``, the final
        ``train_loss``, ``train_objective``, ``test_loss`` and, for the dual, ``rebuilt_objective``,
        ``rebuilt_test_loss`` and ``max_violation`` (``None`` for the primal), and the per-epoch
        ``history``.

    Raises:
        ValueError: an unknown model or a non-MNIST configuration.
        paper_utils.training.adam.TrainingDiverged: a run diverged (the finished ones stay cached).
    """
    jobs = list(jobs)
    for model, cfg in jobs:
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}; expected one of {MODELS}")
        if cfg.dataset != "mnist":
            raise ValueError(f"run_sweep handles MNIST configurations only, got dataset {cfg.dataset!r}")
    cache = cache or Cache()
    datasets: dict[tuple, tuple[DenoisingSet, DenoisingSet]] = {}
    rows = []
    bar = tqdm(jobs, desc="sweep", disable=not progress)
    for model, cfg in bar:
        bar.set_postfix_str(f"{model} {cfg.label()}")
        if _data_key(cfg) not in datasets:
            if arrays is None:
                arrays = load_mnist()
            datasets[_data_key(cfg)] = mnist_denoising(cfg.n_train, cfg.n_test, cfg.noise, cfg.noise_level,
                                                       seed=cfg.seed, arrays=arrays)
        train, test = datasets[_data_key(cfg)]
        from_cache = is_cached(cache, model, cfg)
        load_or_train = experiments.load_or_train_primal if model == "primal" else experiments.load_or_train_dual
        _, history = load_or_train(cfg, train, test, device=device, cache=cache, progress=train_progress)
        rows.append(_row(model, cfg, history, from_cache))
    return rows


# --------------------------------------------------------------------------- long format for seaborn

_ID_FIELDS = ("model", "noise", "noise_kind", "noise_level", "seed", "n_filters", "n_patterns", "key")


def curves_long(rows: Sequence[dict], *, final_only: bool = False) -> dict[str, list]:
    """Per-epoch curves of ``rows`` in long format: a dict of equal-length lists (seaborn ``data=``).

    One entry per row, network, part and evaluated epoch (a run with ``test_every > 1`` has test points
    only at the epochs it evaluated), with columns ``network`` (:data:`PRIMAL`,
    :data:`DUAL` or :data:`REBUILT`; a dual row gives both of the last two), ``part`` (``"train"``:
    the training objective; ``"test"``: the test loss), ``epoch``, ``value``, and the row's
    ``model``, ``noise``, ``noise_kind``, ``noise_level``, ``seed``, ``n_filters``, ``n_patterns``, ``key``.

    Args:
        rows: rows of :func:`run_sweep`.
        final_only: keep only the last epoch of each curve.
    """
    cols: dict[str, list] = {c: [] for c in ("network", "part", "epoch", "value", *_ID_FIELDS)}
    for row in rows:
        hist = row["history"]
        for network, part, field in _CURVES[row["model"]]:
            values = getattr(hist, field)
            pairs = [(e, v) for e, v in zip(hist.epoch, values) if math.isfinite(v)]  # NaN: test not evaluated
            for epoch, value in pairs[-1:] if final_only else pairs:
                cols["network"].append(network); cols["part"].append(part)
                cols["epoch"].append(epoch); cols["value"].append(float(value))
                for c in _ID_FIELDS:
                    cols[c].append(row[c])
    return cols


def select(long: dict[str, list], **where) -> dict[str, list]:
    """The entries of a long-format dict whose columns equal the given values, e.g. ``part="train"``."""
    for c in where:
        if c not in long:
            raise ValueError(f"no column {c!r}; columns are {list(long)}")
    n = len(next(iter(long.values()), []))
    keep = [i for i in range(n) if all(long[c][i] == v for c, v in where.items())]
    return {c: [vals[i] for i in keep] for c, vals in long.items()}
