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


def store_dir() -> Path:
    """``results/cpu/store/``: the committed results store (trained models, certified solutions,
    converged seeds), read when an entry is missing from :func:`cache_dir` (see
    :mod:`paper_utils.pipeline.store`); ``$PAPER_UTILS_STORE`` overrides it."""
    return Path(os.environ.get("PAPER_UTILS_STORE", project_root() / "results" / "cpu" / "store"))


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
