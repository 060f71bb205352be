r"""Figure 7 (notebook 06): an MRI test slice reconstructed by the primal and the dual network, R = 2, 4.

Paper claim (Sahiner et al. 2021, Sec. 5.2, Fig. 7): on a representative test slice the dual (eq. 4,
applied by eq. 8) and the primal (eq. 2) residual networks (eq. 6) of Figure 6 reach "the same
PSNR", both visibly improving on the zero-filled (ZF) input.

Scores (:func:`paper_utils.mri.evaluation.evaluate_mri`): each network's outputs for the real and
imaginary parts of a slice are recombined into one complex image; PSNR and SSIM on magnitudes
against the target magnitude (data range: its maximum), averaged over the test slices. Scored
besides the two networks: the ReLU network rebuilt from the dual by eq. (5), the ZF input, the best
linear 7 x 7 residual filter and SigPy's L1-wavelet, and on the optimum basis
(:mod:`paper_utils.mri.optimum`) the exact dual's eq. (5) network and the primal trained to its stopping
rule or its budget (labelled "converged primal" in the score tables; the claims' statements say whether
its rule held).

Two bases (:class:`paper_utils.report.claims.Claim`): ``published`` compares the Adam-trained primal
and dual (same PSNR within :data:`PSNR_TOLERANCE` dB; each above the ZF input), ``optimum`` asks the
same of the optimum basis's primal and the exact dual's network. The models and optimum solutions are
Figure 6's (notebook 05's model cache, :func:`paper_utils.mri.runs.model_cache`).

Letter key: N test slices, (N, 80, 80) magnitude images; networks on (2N, 1, 80, 80) real and
imaginary parts; m primal filters, P sampled sign patterns, d = 49.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch

from paper_utils.mri.evaluation import (OPTIMUM_METHODS, MRIScores, baseline_details, evaluate_mri, mean_score_rows,
                                        representative_slice, score_rows)
from paper_utils.mri.optimum import MRIOptimum, load_or_solve_optima
from paper_utils.mri.runs import (MRIRun, acceleration_rows, cache_note, split_rows, timing_rows, train_mri_runs,
                                  volumes_note)
from paper_utils.pipeline import config, runtime
from paper_utils.pipeline.config import DenoiseConfig
from paper_utils.report.claims import Claim, training_note
from paper_utils.report.plotting import show_image

__all__ = ["ACCELERATIONS", "PSNR_TOLERANCE", "SHOWN", "Fig7Result", "claims_for", "run", "plot"]

#: Figure 7's accelerations (paper: "undersampling R = 2, 4")
ACCELERATIONS = (2, 4)
#: "same PSNR": the mean test PSNRs agree within this many dB
PSNR_TOLERANCE = 0.5
#: the reconstructions drawn after the ground truth, in column order
SHOWN = ("zero-filled", "linear 7x7", "L1-wavelet", "primal", "dual", "exact dual", "converged primal")


@dataclass
class Fig7Result:
    """Figure 7's runs, scores, tables (lists of dicts) and claims; ``slice_index`` is the slice shown."""

    scale: str
    device: str               # the resolved torch device, as recorded with the claims
    device_name: str
    label: str
    cfgs: list[DenoiseConfig]
    runs: list[MRIRun]
    optima: dict[float, MRIOptimum]
    scores: list[MRIScores]
    claims: list[Claim]
    sizes: dict
    source: str
    n_optimum_slices: int
    slice_index: int
    subject: str
    subject_slice: int | str
    data_note: str
    split_rows: list[dict]
    acceleration_rows: list[dict]
    wide_score_rows: list[dict]
    score_rows: list[dict]
    slice_rows: list[dict]
    timing_rows: list[dict]


def claims_for(rows: list[dict], runs: list[MRIRun], scores: list[MRIScores], optima: dict, label: str) -> list[Claim]:
    """Per R (``rows``: :func:`score_rows`): same PSNR for primal and dual, and each above the ZF input;
    on the optimum basis (R with an optimum) the same for the optimum basis's primal (trained to its stopping
    rule or its budget; the statement says which) and the exact dual."""
    claims = []
    for row, run_, s in zip(rows, runs, scores):
        R, det = row["R"], {**row, **baseline_details(s, run_.data)}
        bases = [("published", "primal", "dual")] + ([("optimum", "converged primal", "exact dual")] if run_.R in optima else [])
        for basis, p, d in bases:
            tag = "" if basis == "published" else "optimum."
            shown = {"primal": "primal", "dual": "dual", "exact dual": "exact dual"}
            if basis == "optimum":
                shown["converged primal"] = f"primal ({training_note([optima[run_.R].converged[0].converged])})"
            diff = round(row[f"psnr_{p}"] - row[f"psnr_{d}"], 2)
            claims.append(Claim(name=f"fig7.{tag}same_psnr.R{R}", measured=diff, tolerance=PSNR_TOLERANCE, basis=basis,
                                statement=f"Fig. 7: primal and dual reach the same test PSNR, R = {R} ({label})"
                                          + ("" if basis == "published" else f"; {shown[p]} against the {d}"),
                                holds=abs(diff) <= PSNR_TOLERANCE, units=f"mean PSNR {p} - {d} (dB)", details=det,
                                kind="paper"))
            for net in (p, d):
                gain = round(row[f"psnr_{net}"] - row["psnr_zero-filled"], 2)
                claims.append(Claim(name=f"fig7.{tag}{net.split()[-1]}_beats_zf.R{R}", measured=gain, tolerance=0.0,
                                    holds=gain > 0,
                                    statement=f"Fig. 7: the {shown[net]} network improves on the zero-filled input, R = {R} ({label})",
                                    units=f"mean PSNR {net} - zero-filled (dB)", basis=basis, details=det, kind="paper"))
    return claims


def run(scale: str, *, seed: int = 0, device="auto", mri_source: str = "simulated", fastmri_path: str = "") -> Fig7Result:
    """Load (or train) Figure 6's networks and optimum solutions at R = 2, 4, score every reconstruction
    on the test slices, pick the slice shown (median primal PSNR at R = 4); tables and claims.
    Arguments as :func:`paper_utils.figures.fig06_mri_loss_curves.run`."""
    dev = runtime.resolve_device(device)
    cfgs = [config.mri_config(scale, R, seed=seed) for R in ACCELERATIONS]
    runs = train_mri_runs(cfgs, dev, source=mri_source, fastmri_path=fastmri_path)
    opt = config.mri_optimum_settings(scale)
    optima = load_or_solve_optima(runs, opt)
    scores = [evaluate_mri(run_, optimum=optima.get(run_.R)) for run_ in runs]
    rows = score_rows(scores)
    label = runs[0].data.description["source_label"]
    claims = claims_for(rows, runs, scores, optima, label)
    i = representative_slice(scores[-1])
    subject, index, _draw = runs[0].data.description["test"]["slices"][i]
    c0 = cfgs[0]
    sizes = {"R": ", ".join(f"{r:g}" for r in ACCELERATIONS), "train slices": c0.n_train, "test slices": c0.n_test,
             "m": c0.n_filters, "P": c0.n_patterns, "epochs": c0.epochs,
             "optimum": f"R = {', '.join(f'{r:g}' for r in opt['accelerations'] if r in ACCELERATIONS)} "
                        f"on {opt['n_slices']} slice(s)"}
    device_name = f"cuda ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else dev.type
    slice_rows = [{"test slice": i, "subject": subject, "slice": index, "chosen by": "median primal PSNR at R = 4"}]
    return Fig7Result(scale, str(dev), device_name, label, cfgs, runs, optima, scores, claims, sizes,
                      f"{label}; {cache_note(runs)}", opt["n_slices"], i, subject, index, volumes_note(runs[0].data),
                      split_rows(runs[0].data), acceleration_rows([r.data for r in runs]), rows,
                      mean_score_rows(scores), slice_rows, timing_rows(runs, scores))


def plot(result: Fig7Result):
    """One row per R: ground truth, then the reconstructions of :data:`SHOWN` (the optimum basis framed
    in black, where computed), all magnitudes of the chosen test slice on the ground truth's grey
    scale with each image's PSNR/SSIM. Returns the figure."""
    runs, scores, i, c0 = result.runs, result.scores, result.slice_index, result.cfgs[0]
    methods = list(SHOWN)
    fig, axes = plt.subplots(len(runs), 1 + len(methods), figsize=(2.1 * (1 + len(methods)), 2.6 * len(runs)), squeeze=False)
    for r, (run_, s) in enumerate(zip(runs, scores)):
        target = s.magnitudes["target"][i]
        vmax = float(target.max())
        show_image(axes[r, 0], target, title=f"ground truth, R = {run_.R:g}", vmin=0, vmax=vmax)
        for col, m in enumerate(methods, start=1):
            ax = axes[r, col]
            if m not in s.psnr:
                ax.axis("off"); continue
            show_image(ax, s.magnitudes[m][i], vmin=0, vmax=vmax, title=f"{m}\n{s.psnr[m][i]:.2f} dB, SSIM {s.ssim[m][i]:.3f}")
            if m in OPTIMUM_METHODS:
                ax.axis("on"); ax.set_xticks([]); ax.set_yticks([])
                for sp in ax.spines.values():
                    sp.set_linewidth(2.5)
    for ax in axes.flat:
        ax.title.set_fontsize(7)
    fig.suptitle(f"Figure 7: test slice ({result.subject}, slice {result.subject_slice}), {result.label}; primal m = "
                 f"{c0.n_filters}, dual P = {c0.n_patterns}, scale = {result.scale}; optimum basis (framed) trained on "
                 f"{result.n_optimum_slices} slice(s)", fontsize=9)
    fig.tight_layout()
    return fig
