"""Figure helpers. Each takes an ``ax`` and returns it; none writes global rcParams."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from paper_utils.pipeline.paths import output_dir
from paper_utils.training.adam import History

PRIMAL_STYLE = dict(color="tab:blue", lw=2.0, label="primal (non-convex)")
DUAL_STYLE = dict(color="tab:orange", lw=2.0, ls="--", label="dual (convex, eq. 4)")


def plot_curve(ax, history: History, key: str, *, logy: bool = True, **style):
    """Plot ``history.<key>`` against epoch (0 = initialisation)."""
    ax.plot(history.epoch, getattr(history, key), **style)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    return ax


def plot_primal_dual(ax, primal: History, dual: History, key: str, *, title: str = "", ylabel: str = ""):
    """Primal vs dual curve of ``key`` on one axis (e.g. Figure 2's train or test loss)."""
    plot_curve(ax, primal, key, **PRIMAL_STYLE)
    plot_curve(ax, dual, key, **DUAL_STYLE)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    return ax


def show_image(ax, image, *, title: str = "", cmap: str = "gray", vmin=None, vmax=None):
    """Show a (H, W) or (1, H, W) image without ticks."""
    img = image.detach().cpu().squeeze() if hasattr(image, "detach") else image
    ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([]); ax.set_yticks([])
    return ax


def save_figure(fig, name: str, scale: str) -> list[Path]:
    """Save ``fig`` as ``<name>.png`` and ``<name>.pdf`` under ``figures/`` (``build/smoke/figures/`` at smoke)."""
    folder = output_dir(scale)
    paths = [folder / f"{name}.png", folder / f"{name}.pdf"]
    for p in paths:
        fig.savefig(p, bbox_inches="tight", dpi=150 if p.suffix == ".png" else None)
    return paths
