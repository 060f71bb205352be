r"""Scores of the MRI reconstructions on the complex test slices (Figures 6 and 7, paper Sec. 5.2).

The networks' outputs for the real and the imaginary part of a slice (residual networks, eq. 6,
trained by :mod:`paper_utils.mri.runs`) are recombined (:func:`paper_utils.mri.pairs_to_complex`)
and compared in magnitude with the target's magnitude: PSNR with the target magnitude's maximum
as data range (:func:`paper_utils.mri.metrics.magnitude_psnr`), SSIM by
``skimage.metrics.structural_similarity`` with the same explicit data range
(:func:`paper_utils.mri.metrics.magnitude_ssim`), averaged over test slices. Four reconstructions are
scored on the published basis: the primal network (eq. 2), the dual network (eq. 4 and 8), the
ReLU network rebuilt from the dual by eq. (5), and the zero-filled input itself (the baseline both
networks must beat); then the baselines of :mod:`paper_utils.mri.linear_filter` (best linear 7 x 7
residual filter, SigPy's L1-wavelet) and, when given, the optimum basis
(:mod:`paper_utils.mri.optimum`: the exact dual's eq. (5) network and the converged primal).

Figure 6's horizontal lines are the baselines' losses ``1/(2M) ||out - X||^2``
(:func:`baseline_losses`), and every MRI claim records the data counts and the baselines' mean
test PSNR (:func:`baseline_details`).

Letter key: N slices (2N real single-channel examples), H = W = 80, M = 2N H W patches.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from paper_utils import mri
from paper_utils.mri.linear_filter import apply_linear_filter, fit_linear_filter, linear_filter_loss
from paper_utils.mri.metrics import complex_magnitudes, magnitude_psnr, magnitude_ssim
from paper_utils.mri.runs import MRIRun

__all__ = [
    "METHODS",
    "OPTIMUM_METHODS",
    "MRIScores",
    "predict_pairs",
    "evaluate_mri",
    "baseline_losses",
    "baseline_details",
    "score_rows",
    "mean_score_rows",
    "representative_slice",
]

#: the reconstructions scored by :func:`evaluate_mri`, in table order: the paper's networks (as
#: published), the baselines (:mod:`paper_utils.mri.linear_filter`), then the optimum basis when given
METHODS = ("primal", "dual", "rebuilt", "zero-filled", "linear 7x7", "L1-wavelet")
OPTIMUM_METHODS = ("exact dual", "converged primal")


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
    w = fit_linear_filter(run.train, run.cfg.kernel_size)
    zf = tuple(float(0.5 * torch.mean((d.clean.double() - d.noisy.double()) ** 2)) for d in (run.train, run.test))
    out = {"zero-filled": zf, "linear 7x7": (linear_filter_loss(w, run.train), linear_filter_loss(w, run.test))}
    if run.data.test_l1_complex is not None:
        l1 = mri.complex_to_pairs(run.data.test_l1_complex).double()
        out["L1-wavelet"] = (None, float(0.5 * torch.mean((l1 - run.test.clean.double()) ** 2)))
    return out


def baseline_details(scores: MRIScores, data: mri.MRIDataset, digits: int = 2) -> dict:
    """The numbers every MRI claim records: data counts and the baselines' mean test PSNR (dB)."""
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


def mean_score_rows(scores: Sequence[MRIScores], digits: int = 2) -> list[dict]:
    """Mean test PSNR (dB, ``digits`` decimals) and SSIM (``digits + 1`` decimals), one row per R
    and method."""
    return [{"R": f"{s.R:g}", "method": m, "PSNR (dB)": round(s.mean("psnr", m), digits),
             "SSIM": round(s.mean("ssim", m), digits + 1)} for s in scores for m in s.psnr]


def representative_slice(scores: MRIScores, method: str = "primal") -> int:
    """Index of the test slice whose ``method`` PSNR is the median one (lower median for an even count)."""
    values = scores.psnr[method]
    order = np.argsort(values, kind="stable")
    return int(order[(len(values) - 1) // 2])
