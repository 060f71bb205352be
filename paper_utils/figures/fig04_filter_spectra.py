"""Figure 4 (notebook 03): frequency responses of the dual filters, and path sparsity.

Paper claim (Sahiner et al. 2021, Sec. 5.1, Fig. 4): the dual network is piecewise linear filtering
(eq. 8): each pixel applies the sum of the filters ``w_i - z_i`` whose sign pattern ``d_i(p)`` is on.
The frequency responses of 600 randomly chosen dual filters ``w_i`` (3 x 3, zero-padded to 28 x 28),
sigma = 0.5, show what they do, and "because of the path sparsity induced by the group-lasso penalty on
the dual weights, some of these dual filters are essentially null filters" (eq. 7).

A filter is null when its norm is below :data:`~paper_utils.report.interpret.NULL_REL_TOL` times the
largest norm of its set (:func:`paper_utils.report.interpret.count_null_filters`). Two bases: the Adam +
hinge dual of Figure 2 (``published``) and the certified optimum of the same sampled dual
(``optimum``, whose null paths are exact zeros by complementary slackness); both from notebook 01's
cache (:func:`paper_utils.training.denoisers.train_denoisers`,
:func:`paper_utils.training.denoisers.load_or_solve_exact`).

Letter key: P sampled patterns, d = 9; dual weights ``W``, ``Z`` (P, d); spectra (min(600, P), 28, 28),
``|FFT2(pad(w_i))|`` centred (:func:`paper_utils.report.interpret.filter_spectra`).
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch

from paper_utils.pipeline import config, runtime
from paper_utils.report.claims import Claim
from paper_utils.report.interpret import NULL_REL_TOL, count_null_filters, filter_norms, filter_spectra, tile_images
from paper_utils.training.denoisers import DenoiseRun, load_or_solve_exact, train_denoisers

__all__ = ["SIGMA", "N_SHOW", "SIZE", "EXACT_TOL", "Fig4Result", "run", "plot"]

#: the noise level of Fig. 4
SIGMA = 0.5
#: the paper's 600 filters, zero-padded to the 28 x 28 image size
N_SHOW, SIZE = 600, (28, 28)
#: the certified solution of notebook 01 (same cache entry)
EXACT_TOL = 1e-6
SOURCE = "Figure 2's dual network and certified solution from the cache (computed there when missing)"


@dataclass
class Fig4Result:
    """Dual filters (Adam + hinge ``W``, ``Z``; certified ``W_opt``), the shown filters' spectra tiled
    into one mosaic, the tables and the claims."""

    scale: str
    run: DenoiseRun
    W: torch.Tensor
    Z: torch.Tensor
    W_opt: torch.Tensor
    exactly_zero: int
    shown: np.ndarray
    spectra: torch.Tensor
    mosaic: np.ndarray
    device_name: str
    claims: list[Claim]
    sizes: dict
    null_rows: list[dict]
    norm_rows: list[dict]
    optimum_rows: list[dict]
    spectra_rows: list[dict]
    source: str | None = SOURCE


def run(scale: str, *, seed: int = 0, device="auto", progress: bool = True) -> Fig4Result:
    """Load (or train) Figure 2's dual at sigma = 0.5, count null filters (Adam + hinge, then the
    certified optimum), and compute the spectra of ``min(600, P)`` filters drawn with ``seed``."""
    dev = runtime.resolve_device(device)
    cfg = config.mnist_denoise_config(scale, SIGMA, seed=seed)
    run_ = train_denoisers(cfg, device=dev, progress=progress)

    W, Z = run_.dual.W.detach().cpu(), run_.dual.Z.detach().cpu()
    sets = {"w_i": W, "z_i": Z, "all paths (w_i and z_i)": torch.cat([W, Z]), "w_i - z_i (eq. 8)": W - Z}
    counts = {name: count_null_filters(f, NULL_REL_TOL) for name, f in sets.items()}
    null_rows = [{"filters": name, "null": c.n_null, "of": c.n_filters, "null %": 100 * c.fraction,
                  "threshold (x max norm)": c.rel_tol, "max norm": c.max_norm} for name, c in counts.items()]
    rel = filter_norms(W) / filter_norms(W).max()
    norm_rows = [{"quantity": "norm of w_i / largest norm", "min": float(rel.min()), "10% quantile": float(rel.quantile(0.1)),
                  "median": float(rel.median())}]
    null_w = counts["w_i"]
    claims = [Claim(name="fig4.path_sparsity.null_filters",
                    statement="Fig. 4 / eq. (7): the group-lasso penalty makes some dual filters w_i essentially null",
                    measured=null_w.fraction, tolerance=0.0, holds=null_w.n_null > 0,
                    units=f"fraction of the {null_w.n_filters} filters w_i with norm < {NULL_REL_TOL:g} x max norm",
                    details={name: {"n_null": c.n_null, "n_filters": c.n_filters, "max_norm": c.max_norm}
                             for name, c in counts.items()})]

    exact = load_or_solve_exact(run_, tol=EXACT_TOL)
    W_opt = exact.solution.W.detach().cpu().float()
    null_opt = count_null_filters(W_opt, NULL_REL_TOL)
    exactly_zero = int((filter_norms(W_opt) == 0).sum())
    optimum_rows = [{"filters": "w_i at the certified optimum", "null": null_opt.n_null, "of": null_opt.n_filters,
                     "null %": 100 * null_opt.fraction, "exactly zero": exactly_zero,
                     "certified gap": exact.solution.gap}]
    claims.append(Claim(name="fig4.optimum.path_sparsity.null_filters",
                        statement="Fig. 4 / eq. (7) at the certified optimum: many dual filters w_i are null",
                        measured=null_opt.fraction, tolerance=0.0, holds=null_opt.n_null > 0,
                        units=f"fraction of the {null_opt.n_filters} filters w_i with norm < {NULL_REL_TOL:g} x max norm",
                        details={"n_null": null_opt.n_null, "exactly_zero": exactly_zero, "cert_gap": exact.solution.gap},
                        basis="optimum"))

    rng = np.random.default_rng(seed)
    shown = np.sort(rng.choice(W.shape[0], size=min(N_SHOW, W.shape[0]), replace=False))
    spectra = filter_spectra(W[shown], SIZE)
    n_cols = int(np.ceil(np.sqrt(1.5 * len(shown))))
    mosaic = tile_images(spectra, n_cols=n_cols, pad=2)
    spectra_rows = [{"filters shown": len(shown), "of": W.shape[0], "null among them": int((rel[shown] < NULL_REL_TOL).sum()),
                     "largest magnitude": float(spectra.max())}]

    sizes = {"n_train": cfg.n_train, "m": cfg.n_filters, "P": cfg.n_patterns, "epochs": cfg.epochs, "sigma": SIGMA,
             "filters shown": len(shown)}
    return Fig4Result(scale, run_, W, Z, W_opt, exactly_zero, shown, spectra, mosaic, str(dev), claims, sizes,
                      null_rows, norm_rows, optimum_rows, spectra_rows)


def plot(result: Fig4Result):
    """(a) Magnitude frequency responses of the shown ``w_i`` (zero frequency at each tile's centre,
    one colour scale); (b) all norms ``||w_i||``, ``||z_i||`` and the certified optimum's ``||w_i||``
    relative to the largest and sorted, with the null threshold. Returns the figure."""
    fig, (ax, ax_n) = plt.subplots(1, 2, figsize=(14, 6.5), gridspec_kw={"width_ratios": [3, 1]})
    cmap = plt.get_cmap("magma").copy()
    cmap.set_bad("white")
    im = ax.imshow(result.mosaic, cmap=cmap, vmin=0, vmax=float(result.spectra.max()), interpolation="nearest")
    ax.set_xticks([]); ax.set_yticks([])
    ax.set_title(f"(a) |FFT| of {len(result.shown)} random dual filters w_i (3x3 zero-padded to 28x28), sigma = {SIGMA:g}")
    fig.colorbar(im, ax=ax, fraction=0.03, label="magnitude")
    for name, f in (("w_i", result.W), ("z_i", result.Z), ("w_i at the certified optimum", result.W_opt)):
        norms = filter_norms(f)
        ax_n.semilogy(np.sort((norms / norms.max()).numpy())[::-1], label=name, ls=":" if "optimum" in name else "-")
    ax_n.axhline(NULL_REL_TOL, color="k", ls="--", lw=1, label=f"null threshold {NULL_REL_TOL:g}")
    ax_n.set_xlabel("filter (sorted)"); ax_n.set_ylabel("norm / largest norm"); ax_n.legend()
    ax_n.set_title(f"(b) path norms ({result.exactly_zero} exact zeros at the optimum)", fontsize=9)
    ax_n.grid(alpha=0.3, which="both")
    fig.suptitle(f"Figure 4: dual filters, P = {result.run.cfg.n_patterns}, scale = {result.scale}")
    fig.tight_layout()
    return fig
