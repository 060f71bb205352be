r"""Figure 11 (notebook 09): frequency responses of the MRI dual filters, R = 4.

Paper (Sahiner et al. 2021, App. B.5, Fig. 11): the magnitude frequency responses of 250 randomly
selected learned dual filters ``w_i`` of the MRI reconstruction network at R = 4 (7 x 7, zero-padded
to 80 x 80): "these filters select for a variety of frequencies". As for Figure 4 we also count the
null filters the group-lasso penalty of the dual (eq. 4, path sparsity as in eq. 7) produces: a filter
is null when its norm is below ``NULL_REL_TOL`` (1 %) of the largest in its set
(:func:`paper_utils.report.interpret.count_null_filters`), and "many" means at least
:data:`~paper_utils.figures.fig04_filter_spectra.MANY_NULL_SHARE` (10 %) of them
(:func:`~paper_utils.figures.fig04_filter_spectra.many_null`; the retired ``fig11.*null_filters`` held
with a single null filter).

Variety of frequencies: the radial frequency of each shown non-null filter's largest response
(:func:`paper_utils.mri.filters.peak_frequencies`) is counted per band of
:data:`paper_utils.mri.filters.FREQUENCY_BANDS`; the claim holds when at least 3 of the 4 bands up to
the Nyquist radius each hold at least :data:`MIN_SHARE` of the peaks
(:func:`paper_utils.figures.fig04_filter_spectra.frequency_variety`, the rule Figure 4 shares).

Two bases (:class:`paper_utils.report.claims.Claim`): ``published``, the Adam-trained dual of Figure
6 at R = 4 (notebook 05's model cache); ``optimum``, the exact certified solution of the same
sampled dual on the optimum basis's few training slices (:mod:`paper_utils.mri.optimum`).

Letter key: P sampled sign patterns, d = k^2 = 49 (k = 7); dual filters ``W``, ``Z`` (P, d); their
spectra (n, 80, 80) for the n = min(250, P) filters shown.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch

from paper_utils.figures.fig04_filter_spectra import MANY_NULL_SHARE, MIN_BANDS, frequency_variety, many_null
from paper_utils.mri.evaluation import baseline_details, evaluate_mri
from paper_utils.mri.filters import FREQUENCY_BANDS, frequency_bands, peak_frequencies, select_filters
from paper_utils.mri.optimum import MRIOptimum, load_or_solve_optima
from paper_utils.mri.runs import MRIRun, acceleration_rows, cache_note, split_rows, timing_rows, train_mri, volumes_note
from paper_utils.pipeline import config, runtime
from paper_utils.report.claims import Claim
from paper_utils.report.interpret import NULL_REL_TOL, count_null_filters, filter_norms, filter_spectra, tile_images

__all__ = ["ACCELERATION", "N_FILTERS", "SIZE", "MIN_SHARE", "Fig11Result", "run", "plot"]

#: Figure 11's acceleration and number of filters shown (paper App. B.5: 250 filters, R = 4)
ACCELERATION = 4
N_FILTERS = 250
#: 7 x 7 filters zero-padded to the 80 x 80 image size
SIZE = (80, 80)
#: a band counts when it holds at least this share of the non-null filters' peaks (Figure 4's rule too)
MIN_SHARE = 0.05


@dataclass
class Fig11Result:
    """Figure 11's run, optimum, filters, spectra, tables (lists of dicts) and claims."""

    scale: str
    device: str               # the resolved torch device, as recorded with the claims
    device_name: str
    label: str
    run: MRIRun
    optimum: MRIOptimum
    n_optimum_slices: int
    filters: dict[str, torch.Tensor]      # "W", "Z" (Adam), "W_exact", "Z_exact": (P, d)
    n_shown: int
    spectra: torch.Tensor                 # (n, 80, 80), Adam-trained w_i shown
    spectra_exact: torch.Tensor           # (n, 80, 80), exact w_i shown
    mosaic: np.ndarray
    mosaic_exact: np.ndarray
    claims: list[Claim]
    sizes: dict
    source: str
    shown_note: str
    exact_note: str
    data_note: str
    split_rows: list[dict]
    acceleration_rows: list[dict]
    null_rows: list[dict]
    band_rows: list[dict]
    exact_null_rows: list[dict]
    exact_band_rows: list[dict]
    timing_rows: list[dict]


def _null_row(name: str, c) -> dict:
    return {"filters": name, "null": c.n_null, "of": c.n_filters, "null (%)": round(100 * c.fraction, 1)}


def _band_rows(bands) -> list[dict]:
    edges = FREQUENCY_BANDS
    return [{"peak frequency (cycles/pixel)": f"[{lo:g}, {hi:g})", "non-null filters": int(n)}
            for lo, hi, n in zip(edges[:-1], edges[1:], bands)]


def _n_bands(bands) -> int:
    return frequency_variety(bands, MIN_SHARE, MIN_BANDS)[0]


def run(scale: str, *, seed: int = 0, device="auto", mri_source: str = "simulated", fastmri_path: str = "") -> Fig11Result:
    """Load (or train) Figure 6's networks at R = 4 and the optimum solution, count null filters, take
    the spectra of ``min(250, P)`` seeded random filters ``w_i`` and count their peak frequencies per
    band, for the Adam-trained and the exact dual; tables and claims. Arguments as
    :func:`paper_utils.figures.fig06_mri_loss_curves.run`."""
    dev = runtime.resolve_device(device)
    cfg = config.mri_config(scale, ACCELERATION, seed=seed)
    run_ = train_mri(cfg, dev, source=mri_source, fastmri_path=fastmri_path)
    opt = config.mri_optimum_settings(scale)
    if run_.R not in opt["accelerations"]:
        raise ValueError(f"R = {run_.R:g} has no optimum basis at scale {scale!r} (accelerations {opt['accelerations']})")
    optimum = load_or_solve_optima([run_], opt)[run_.R]
    sol = optimum.exact.solution

    W, Z = run_.dual.W.detach().cpu(), run_.dual.Z.detach().cpu()
    sets = {"w_i": W, "z_i": Z, "all paths (w_i and z_i)": torch.cat([W, Z]), "w_i - z_i (eq. 8)": W - Z}
    counts = {name: count_null_filters(f, NULL_REL_TOL) for name, f in sets.items()}
    rel = filter_norms(W) / filter_norms(W).max()
    shown = select_filters(W.shape[0], N_FILTERS, seed=seed)
    spectra = filter_spectra(W[shown], SIZE)
    active = rel[shown] >= NULL_REL_TOL
    bands = frequency_bands(peak_frequencies(spectra[active]))
    n_bands = _n_bands(bands)
    n_cols = 25 if len(shown) >= 100 else int(np.ceil(np.sqrt(2 * len(shown))))
    mosaic = tile_images(spectra, n_cols=n_cols, pad=2)

    W_ex, Z_ex = sol.W.detach().cpu().float(), sol.Z.detach().cpu().float()
    null_ex = count_null_filters(W_ex, NULL_REL_TOL)
    rel_ex = filter_norms(W_ex) / filter_norms(W_ex).max()
    spectra_ex = filter_spectra(W_ex[shown], SIZE)
    bands_ex = frequency_bands(peak_frequencies(spectra_ex[rel_ex[shown] >= NULL_REL_TOL]))
    n_bands_ex = _n_bands(bands_ex)
    mosaic_ex = tile_images(spectra_ex, n_cols=n_cols, pad=2)

    label, null_w = run_.data.description["source_label"], counts["w_i"]
    claims = [
        Claim(name="fig11.path_sparsity.many_null_filters", measured=null_w.fraction, tolerance=MANY_NULL_SHARE,
              holds=many_null(null_w.n_null, null_w.n_filters),
              statement=f"Eq. (7), App. B.5: the group lasso makes many MRI dual filters w_i null (many: at least "
                        f"{MANY_NULL_SHARE:.0%} of them), R = 4 ({label})",
              units=f"fraction of the {null_w.n_filters} filters w_i with norm < {NULL_REL_TOL:g} x max norm",
              details={name: {"n_null": c.n_null, "n_filters": c.n_filters} for name, c in counts.items()}, kind="paper"),
        Claim(name="fig11.frequency_variety", measured=float(n_bands), tolerance=float(MIN_BANDS), holds=n_bands >= MIN_BANDS,
              statement=f"Fig. 11: the MRI dual filters select for a variety of frequencies, R = 4 ({label})",
              units=f"radial bands up to Nyquist holding >= {MIN_SHARE:.0%} of the non-null filters' peaks",
              details={"bands": list(FREQUENCY_BANDS), "counts": bands.tolist(), "data": label}, kind="paper"),
    ]
    base = baseline_details(evaluate_mri(run_), run_.data)
    for cl in claims:
        cl.details.update(base)
    det_ex = {"d_P": sol.objective, "cert_gap": sol.gap, "solver_s": sol.seconds, "n_slices": opt["n_slices"], **base}
    claims += [
        Claim(name="fig11.optimum.path_sparsity.many_null_filters", measured=null_ex.fraction, tolerance=MANY_NULL_SHARE,
              holds=many_null(null_ex.n_null, null_ex.n_filters), basis="optimum",
              statement=f"Eq. (7): at the exact optimum of the sampled MRI dual many filters w_i are null (many: at "
                        f"least {MANY_NULL_SHARE:.0%} of them), R = 4 ({label})",
              units=f"fraction of the {null_ex.n_filters} exact w_i with norm < {NULL_REL_TOL:g} x max norm", details=det_ex, kind="paper"),
        Claim(name="fig11.optimum.frequency_variety", measured=float(n_bands_ex), tolerance=float(MIN_BANDS),
              holds=n_bands_ex >= MIN_BANDS, basis="optimum",
              statement=f"Fig. 11 at the optimum: the exact MRI dual filters select for a variety of frequencies, R = 4 ({label})",
              units=f"radial bands holding >= {MIN_SHARE:.0%} of the non-null exact filters' peaks",
              details={**det_ex, "counts": bands_ex.tolist()}, kind="paper"),
    ]

    sizes = {"R": ACCELERATION, "train slices": cfg.n_train, "test slices": cfg.n_test, "P": cfg.n_patterns,
             "epochs": cfg.epochs, "filters shown": len(shown), "optimum": f"{opt['n_slices']} slice(s)"}
    device_name = f"cuda ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else dev.type
    shown_note = f"{len(shown)} of {W.shape[0]} filters w_i shown, {int((~active).sum())} of them null"
    exact_note = (f"exact dual: d_P = {sol.objective:.4g}, certified gap {sol.gap:.1e}, {sol.seconds:.0f} s; "
                  f"{len(shown)} exact filters w_i shown")
    return Fig11Result(
        scale, str(dev), device_name, label, run_, optimum, opt["n_slices"],
        {"W": W, "Z": Z, "W_exact": W_ex, "Z_exact": Z_ex}, len(shown), spectra, spectra_ex, mosaic, mosaic_ex,
        claims, sizes, f"{label}; {cache_note([run_])}", shown_note, exact_note, volumes_note(run_.data),
        split_rows(run_.data), acceleration_rows([run_.data]), [_null_row(name, c) for name, c in counts.items()],
        _band_rows(bands), [_null_row("exact w_i", null_ex)], _band_rows(bands_ex), timing_rows([run_]))


def plot(result: Fig11Result):
    """(a) Spectra of the shown ``w_i`` of the Adam-trained dual, (b) of the exact dual's ``w_i`` for the
    same patterns (zero frequency at each tile's centre, one colour scale per panel), (c) all path norms
    relative to the largest, sorted, with the null threshold. Returns the figure."""
    f, cfg, sol = result.filters, result.run.cfg, result.optimum.exact.solution
    fig, (ax, ax_ex, ax_n) = plt.subplots(1, 3, figsize=(20, 6.5), gridspec_kw={"width_ratios": [3.2, 3.2, 1.4]})
    cmap = plt.get_cmap("magma").copy()
    cmap.set_bad("white")
    for a, m, sp, title in ((ax, result.mosaic, result.spectra, "(a) published: Adam-trained dual"),
                            (ax_ex, result.mosaic_exact, result.spectra_exact, "(b) optimum: exact dual")):
        im = a.imshow(m, cmap=cmap, vmin=0, vmax=float(sp.max()), interpolation="nearest")
        a.set_xticks([]); a.set_yticks([])
        a.set_title(f"{title}: |FFT| of {result.n_shown} filters w_i (7x7 -> 80x80), R = 4", fontsize=10)
        fig.colorbar(im, ax=a, fraction=0.02)
    for name, w, ls in (("w_i Adam", f["W"], "-"), ("z_i Adam", f["Z"], "-"), ("w_i exact", f["W_exact"], "--"),
                        ("z_i exact", f["Z_exact"], "--")):
        norms = filter_norms(w)
        ax_n.semilogy(np.sort((norms / norms.max()).clamp_min(1e-12).numpy())[::-1], ls=ls, label=name)
    ax_n.axhline(NULL_REL_TOL, color="k", ls=":", lw=1, label=f"null threshold {NULL_REL_TOL:g}")
    ax_n.set_xlabel("filter (sorted)"); ax_n.set_ylabel("norm / largest norm"); ax_n.legend(fontsize=8)
    ax_n.set_title("(c) path norms"); ax_n.grid(alpha=0.3, which="both")
    fig.suptitle(f"Figure 11: MRI dual filters on {result.label}, P = {cfg.n_patterns}, {cfg.n_train} training slices "
                 f"(exact dual: {result.n_optimum_slices}, certified gap {sol.gap:.1e}), scale = {result.scale}")
    fig.tight_layout()
    return fig
