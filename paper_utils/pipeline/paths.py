"""Where the project keeps data, caches, executed notebooks and figures.

The project root is the folder holding ``paper_utils/`` (the package is installed in editable
mode). ``PAPER_UTILS_ROOT`` overrides it, e.g. when the package is installed elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The repository root (parent of the ``paper_utils`` package, or ``$PAPER_UTILS_ROOT``)."""
    env = os.environ.get("PAPER_UTILS_ROOT")
    if env:
        return Path(env).resolve()
    return Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """``data/``: downloaded and converted datasets (git-ignored)."""
    return project_root() / "data"


def cache_dir() -> Path:
    """``build/cache/``: trained models and prepared datasets, keyed by configuration."""
    return Path(os.environ.get("PAPER_UTILS_CACHE", project_root() / "build" / "cache"))


#: the committed results stores, one per scale that has one, and the variable that overrides each folder
STORE_ENV = {"cpu": "PAPER_UTILS_STORE", "paper": "PAPER_UTILS_PAPER_STORE"}


def store_dir(scale: str = "cpu") -> Path:
    """``results/<scale>/store/``: the committed results store of ``scale`` (``cpu`` or ``paper``: trained
    models, certified solutions, converged seeds), read when an entry is missing from :func:`cache_dir`
    (see :mod:`paper_utils.pipeline.store`); ``$PAPER_UTILS_STORE`` (cpu) and ``$PAPER_UTILS_PAPER_STORE``
    (paper) override them."""
    if scale not in STORE_ENV:
        raise ValueError(f"scale {scale!r} has no results store; expected one of {tuple(STORE_ENV)}")
    env = os.environ.get(STORE_ENV[scale])
    return Path(env) if env else project_root() / "results" / scale / "store"


def store_dirs() -> list[Path]:
    """Every scale's results store, in the order a cache miss reads them (cpu, then paper). Entries are
    keyed by configuration, which includes the scale; the few whose name is the same at both scales
    (Theorem 1's small problems) are kept in the cpu store only (:func:`paper_utils.pipeline.store.refresh`)."""
    return [store_dir(scale) for scale in STORE_ENV]


def output_dir(scale: str) -> Path:
    """Where figures and claim records of a run at ``scale`` go.

    ``smoke`` runs never overwrite the committed figures: they write to ``build/smoke/figures/``.
    ``cpu`` runs (the default of ``make figures``) write to ``figures/``; ``paper`` runs to
    ``figures/paper/``, so the two committed sets live side by side. ``$PAPER_UTILS_OUTPUT``
    overrides all three (``make test`` re-executes the committed notebooks into ``build/``).
    """
    if os.environ.get("PAPER_UTILS_OUTPUT"):
        path = Path(os.environ["PAPER_UTILS_OUTPUT"])
    elif scale == "smoke":
        path = project_root() / "build" / "smoke" / "figures"
    elif scale == "paper":
        path = project_root() / "figures" / "paper"
    else:
        path = project_root() / "figures"
    path.mkdir(parents=True, exist_ok=True)
    return path
