"""Figure 4 (notebook 03): frequency responses of the dual filters, and path sparsity.

Paper claim (Sahiner et al. 2021, Sec. 5.1, Fig. 4): the dual network is piecewise linear filtering
(eq. 8): each pixel applies the sum of the filters ``w_i - z_i`` whose sign pattern ``d_i(p)`` is on.
The frequency responses of 600 randomly chosen dual filters ``w_i`` (3 x 3, zero-padded to 28 x 28),
sigma = 0.5, show what they do, and "because of the path sparsity induced by the group-lasso penalty on
the dual weights, some of these dual filters are essentially null filters" (eq. 7).

A filter is null when its norm is below :data:`~paper_utils.report.interpret.NULL_REL_TOL` times the
largest norm of its set (:func:`paper_utils.report.interpret.count_null_filters`). "Many" null filters
means at least :data:`MANY_NULL_SHARE` (10%) of them (:func:`many_null`); the retired
``fig4.*path_sparsity.null_filters`` held with a single null filter. The same rule on the primal side
(Sec. 4.1, eq. 7: weight decay drives whole units to zero) counts units whose path weight
``|v_j| ||u_j||`` (the norm of the balanced unit, which rescaling leaves unchanged) is below
``NULL_REL_TOL`` times the largest.

Frequency content: the paper reads the dual filters' spectra as a variety of frequency responses. As for
Figure 11's MRI filters (:mod:`paper_utils.figures.fig11_mri_filters`), the radial frequency of each shown
non-null filter's largest response is counted per band of :data:`paper_utils.mri.filters.FREQUENCY_BANDS`;
the claim holds when at least :data:`MIN_BANDS` of the 4 bands up to the Nyquist radius each hold at
least :data:`MIN_SHARE` of the peaks (:func:`frequency_variety`). Two bases: the Adam +
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

from paper_utils.mri.filters import FREQUENCY_BANDS, frequency_bands, peak_frequencies
from paper_utils.pipeline import config, runtime
from paper_utils.report.claims import Claim
from paper_utils.report.interpret import (NULL_REL_TOL, count_null_filters, filter_norms, filter_spectra,
                                          primal_path_norms, tile_images)
from paper_utils.training.denoisers import DenoiseRun, load_or_solve_exact, train_denoisers

__all__ = ["SIGMA", "N_SHOW", "SIZE", "EXACT_TOL", "MANY_NULL_SHARE", "MIN_SHARE", "MIN_BANDS", "Fig4Result",
           "many_null", "frequency_variety", "run", "plot"]

#: the noise level of Fig. 4
SIGMA = 0.5
#: the paper's 600 filters, zero-padded to the 28 x 28 image size
N_SHOW, SIZE = 600, (28, 28)
#: the certified solution of notebook 01 (same cache entry)
EXACT_TOL = 1e-6
SOURCE = "Figure 2's dual network and certified solution from the cache (computed there when missing)"
#: "many" null filters (eq. 7): at least this share of the filters (or of the primal's units) null
MANY_NULL_SHARE = 0.10
#: a frequency band counts when it holds at least this share of the non-null filters' peaks (Figure 11's rule)
MIN_SHARE = 0.05
#: "a variety of frequencies": at least this many of the 4 bands up to the Nyquist radius count
MIN_BANDS = 3


def many_null(n_null: int, n_filters: int, share: float = MANY_NULL_SHARE) -> bool:
    """"Many" filters are null: at least ``share`` of the ``n_filters`` (False for an empty set)."""
    return n_filters > 0 and n_null >= share * n_filters


def frequency_variety(bands, min_share: float = MIN_SHARE, min_bands: int = MIN_BANDS) -> tuple[int, bool]:
    """Figure 11's rule for "a variety of frequencies", from peak counts per band
    (:func:`paper_utils.mri.filters.frequency_bands`, 5 bands, the last beyond Nyquist).

    Returns:
        ``(n_bands, holds)``: how many of the first 4 bands hold at least ``min_share`` of all peaks, and
        whether that is at least ``min_bands`` (False without any peak)."""
    b = np.asarray(bands, dtype=np.float64)
    total = b.sum()
    if total <= 0:
        return 0, False
    n = int((b[:4] / total >= min_share).sum())
    return n, n >= min_bands


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
    claims = [Claim(name="fig4.path_sparsity.many_null_filters",
                    statement=f"Fig. 4 / eq. (7): the group-lasso penalty makes many dual filters w_i essentially null "
                              f"(many: at least {MANY_NULL_SHARE:.0%} of them)",
                    measured=null_w.fraction, tolerance=MANY_NULL_SHARE, holds=many_null(null_w.n_null, null_w.n_filters),
                    units=f"fraction of the {null_w.n_filters} filters w_i with norm < {NULL_REL_TOL:g} x max norm",
                    details={name: {"n_null": c.n_null, "n_filters": c.n_filters, "max_norm": c.max_norm}
                             for name, c in counts.items()}, kind="paper")]
    path = primal_path_norms(run_.primal).detach().cpu()
    n_units, null_units = int(path.numel()), int((path < NULL_REL_TOL * path.max()).sum()) if path.numel() else 0
    claims.append(Claim(name="fig4.primal.path_sparsity.many_null_units",
                        statement=f"Sec. 4.1 / eq. (7), primal side: weight decay drives many whole units of the primal "
                                  f"to zero (path weight |v_j| ||u_j||, unchanged by balancing; many: at least "
                                  f"{MANY_NULL_SHARE:.0%} of the m = {n_units} units)",
                        measured=null_units / n_units if n_units else None, tolerance=MANY_NULL_SHARE,
                        holds=many_null(null_units, n_units),
                        units=f"fraction of the {n_units} units with |v_j| ||u_j|| < {NULL_REL_TOL:g} x the largest",
                        details={"n_null": null_units, "m": n_units, "max_path": float(path.max()) if n_units else 0.0},
                        kind="paper"))

    exact = load_or_solve_exact(run_, tol=EXACT_TOL)
    W_opt = exact.solution.W.detach().cpu().float()
    null_opt = count_null_filters(W_opt, NULL_REL_TOL)
    exactly_zero = int((filter_norms(W_opt) == 0).sum())
    optimum_rows = [{"filters": "w_i at the certified optimum", "null": null_opt.n_null, "of": null_opt.n_filters,
                     "null %": 100 * null_opt.fraction, "exactly zero": exactly_zero,
                     "certified gap": exact.solution.gap}]
    claims.append(Claim(name="fig4.optimum.path_sparsity.many_null_filters",
                        statement=f"Fig. 4 / eq. (7) at the certified optimum: many dual filters w_i are null (many: at "
                                  f"least {MANY_NULL_SHARE:.0%} of them)",
                        measured=null_opt.fraction, tolerance=MANY_NULL_SHARE,
                        holds=many_null(null_opt.n_null, null_opt.n_filters),
                        units=f"fraction of the {null_opt.n_filters} filters w_i with norm < {NULL_REL_TOL:g} x max norm",
                        details={"n_null": null_opt.n_null, "exactly_zero": exactly_zero, "cert_gap": exact.solution.gap},
                        basis="optimum", kind="paper"))

    rng = np.random.default_rng(seed)
    shown = np.sort(rng.choice(W.shape[0], size=min(N_SHOW, W.shape[0]), replace=False))
    spectra = filter_spectra(W[shown], SIZE)
    n_cols = int(np.ceil(np.sqrt(1.5 * len(shown))))
    mosaic = tile_images(spectra, n_cols=n_cols, pad=2)
    spectra_rows = [{"filters shown": len(shown), "of": W.shape[0], "null among them": int((rel[shown] < NULL_REL_TOL).sum()),
                     "largest magnitude": float(spectra.max())}]
    rel_opt = filter_norms(W_opt) / filter_norms(W_opt).max()
    for basis, filt, rel_b in (("published", W, rel), ("optimum", W_opt, rel_opt)):
        spec = spectra if basis == "published" else filter_spectra(W_opt[shown], SIZE)
        active = rel_b[shown] >= NULL_REL_TOL
        bands = frequency_bands(peak_frequencies(spec[active]))
        n_bands, holds = frequency_variety(bands)
        tag, what = ("", "Adam + hinge") if basis == "published" else ("optimum.", "certified optimum's")
        claims.append(Claim(
            name=f"fig4.{tag}frequency_variety",
            statement=f"Fig. 4: the {what} dual filters w_i have a variety of frequency responses (peaks of the shown "
                      f"non-null filters in at least {MIN_BANDS} of 4 radial bands up to Nyquist, each with at least "
                      f"{MIN_SHARE:.0%} of them; Fig. 11's rule)",
            measured=float(n_bands), tolerance=float(MIN_BANDS), holds=holds,
            units=f"radial bands up to Nyquist holding >= {MIN_SHARE:.0%} of the non-null shown filters' peaks",
            details={"bands": list(FREQUENCY_BANDS), "counts": bands.tolist(), "non_null_shown": int(active.sum()),
                     "shown": len(shown)}, basis=basis, kind="paper"))

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
