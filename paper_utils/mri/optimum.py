r"""The MRI networks at the optimum (DESIGN.md section 9; Figures 6, 7, 11 on the ``optimum`` basis).

Two questions the paper's Adam runs cannot answer, asked on the MRI problem itself (residual
network, eq. 6; k = 7, d = 49; real and imaginary parts as separate examples; beta = 1e-5):

1. **What is the sampled dual's optimum** ``d_P``? eq. (4) over the P sign patterns of the run's
   generators ``G`` (d, P), solved by :func:`paper_utils.nets.dual.solve_dual` with a certified lower
   bound (``d_P`` lies in ``[lower_bound, objective]``), and its eq. (5) ReLU network
   (``sol.to_primal(kernel_size=7, residual=True)``), scored on the test slices like the others.
2. **Does non-convex training reach it?** The primal of width ``m = cfg.n_filters`` trained to a
   stated stopping rule (:func:`paper_utils.training.convergence.load_or_converge_primal`: Adam with cosine
   decay, then full-batch float64 L-BFGS until the relative objective change and the gradient norm
   are small) from one or more Kaiming-uniform seeds; its final objective against ``d_P``
   (``p* <= d_P``, so a converged primal may end *below* ``d_P`` with P sampled patterns).

Both are solved on the same training problem: ``n_slices`` training slices chosen evenly spaced
among the run's training slices, optionally cropped to their central ``crop x crop`` pixels (the
exact solver's cost grows with the number of patches M = 2 n_slices crop^2 and with P;
:func:`paper_utils.pipeline.config.mri_optimum_settings` gives the per-scale sizes), so at reduced scales the
optimum networks see far less data than the Adam runs: say so with every number.

The converged primal starts from a Kaiming-uniform draw (seeded) with both layers scaled by
:data:`INIT_SCALE`: the plain Kaiming draw's output ``f(Y)`` is about ten times the residual
``X - Y`` to learn (notebook 05), which left a 40-iteration L-BFGS budget far above the zero network.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from paper_utils.data.mnist import DenoisingSet
from paper_utils.mri.runs import MRIRun, model_cache
from paper_utils.nets.primal import PrimalNet, primal_objective
from paper_utils.pipeline.cache import Cache
from paper_utils.training.convergence import ConvergedPrimal, load_or_converge_primal
from paper_utils.training.denoisers import DenoiseRun, ExactDual, load_or_solve_exact

#: scale of both layers of the converged primal's Kaiming-uniform start (output scaled by its square)
INIT_SCALE = 0.1

__all__ = ["INIT_SCALE", "MRIOptimum", "optimum_subset", "load_or_solve_mri_optimum", "load_or_solve_optima",
           "optimum_rows"]


@dataclass
class MRIOptimum:
    """The optimum-basis solutions of one acceleration R.

    Attributes:
        R: acceleration.
        n_slices: training slices of the optimum problem (2 n_slices examples).
        exact: the certified solution of the sampled dual (``exact.solution``: ``objective``,
            ``lower_bound``, ``gap``, ``max_violation``, ``seconds``) and its eq. (5) network's objective.
        exact_net: the eq. (5) ReLU network (residual, float32).
        converged: one :class:`paper_utils.training.convergence.ConvergedPrimal` per seed.
        converged_nets: their networks (residual).
        zero_objective: objective of the zero network (predicts the zero-filled input) on this problem.
        seconds: wall time of this call (solving or loading).
    """

    R: float
    n_slices: int
    exact: ExactDual
    exact_net: PrimalNet
    converged: list[ConvergedPrimal]
    converged_nets: list[PrimalNet]
    zero_objective: float
    seconds: float = 0.0
    seeds: list[int] = field(default_factory=list)
    crop: int | None = None
    exact_test_loss: float | None = None


def optimum_subset(train: DenoisingSet, n_slices: int, crop: int | None = None) -> DenoisingSet:
    """``n_slices`` slices (both parts of each) evenly spaced among the (2N, 1, H, W) training
    examples, cropped to their central ``crop x crop`` pixels when ``crop`` is given."""
    n_total = train.noisy.shape[0] // 2
    if not 1 <= n_slices <= n_total:
        raise ValueError(f"n_slices must be in [1, {n_total}], got {n_slices}")
    slices = np.unique(np.linspace(0, n_total - 1, n_slices).round().astype(int))
    idx = torch.as_tensor(np.stack([2 * slices, 2 * slices + 1], axis=1).reshape(-1))
    noisy, clean = train.noisy[idx], train.clean[idx]
    if crop is not None:
        h, w = noisy.shape[-2:]
        if not 1 <= crop <= min(h, w):
            raise ValueError(f"crop must be in [1, {min(h, w)}], got {crop}")
        top, left = (h - crop) // 2, (w - crop) // 2
        noisy = noisy[..., top:top + crop, left:left + crop].contiguous()
        clean = clean[..., top:top + crop, left:left + crop].contiguous()
    return DenoisingSet(noisy=noisy, clean=clean, mean=train.mean, std=train.std)


def load_or_solve_mri_optimum(run: DenoiseRun, cache: Cache, *, n_slices: int, crop: int | None = None, seeds=(0,),
                              time_limit: float = 120.0,
                              adam_epochs: int = 5, lbfgs_max_iter: int = 300, progress: bool = False) -> MRIOptimum:
    """Certified dual optimum and converged primal(s) of ``run``'s MRI problem on ``n_slices`` slices.

    Args:
        run: an MRI run (:class:`paper_utils.mri.runs.MRIRun`): its configuration, training
            set and the generators ``run.dual.G`` of its sampled patterns are used.
        cache: where solutions are cached (the run's model cache).
        n_slices: training slices of the optimum problem.
        crop: central crop of those slices (``None``: the whole 80 x 80).
        seeds: initialisation seeds of the converged primal.
        time_limit: seconds allowed to the exact solver and to each converged primal.
        adam_epochs, lbfgs_max_iter: the converged primal's schedule.
        progress: progress output.
    """
    t0 = time.perf_counter()
    cfg = run.cfg.replace(n_train=n_slices)  # one optimum problem per scale: its crop is fixed by the scale
    sub = optimum_subset(run.train, n_slices, crop)
    sub_run = DenoiseRun(cfg, sub, run.test, run.primal, run.dual, run.primal_history, run.dual_history)
    exact = load_or_solve_exact(sub_run, tol=1e-6, time_limit=time_limit, cache=cache, progress=progress)
    exact_net = exact.solution.to_primal(kernel_size=cfg.kernel_size, residual=True).float()
    dev = run.dual.G.device
    converged = [load_or_converge_primal(cfg, sub, run.test, init_seed=int(s), device=dev, start=_start(cfg, int(s)),
                                         adam_epochs=adam_epochs, lbfgs_max_iter=lbfgs_max_iter,
                                         time_limit=time_limit, cache=cache, progress=progress) for s in seeds]
    nets = [c.to_primal(cfg.kernel_size, residual=True).float() for c in converged]
    zero = float(0.5 * torch.mean((sub.clean.double() - sub.noisy.double()) ** 2))
    exact_test = primal_objective(exact_net.double().cpu(), run.test.noisy.double().cpu(), run.test.clean.double().cpu(),
                                  cfg.beta, batch_size=8)["loss"]
    exact_net = exact_net.float()
    return MRIOptimum(float(cfg.noise_level), n_slices, exact, exact_net, converged, nets, zero,
                      seconds=time.perf_counter() - t0, seeds=[int(s) for s in seeds], crop=crop,
                      exact_test_loss=exact_test)


def load_or_solve_optima(runs: Sequence[MRIRun], settings: dict) -> dict[float, MRIOptimum]:
    """:func:`load_or_solve_mri_optimum` for every run whose R is in ``settings["accelerations"]``, each
    cached in its run's model cache (:func:`paper_utils.mri.runs.model_cache`), so Figures 6, 7 and 11
    share one solution per R.

    Args:
        runs: MRI runs (:func:`paper_utils.mri.runs.train_mri_runs`).
        settings: :func:`paper_utils.pipeline.config.mri_optimum_settings` of the scale.

    Returns:
        dict mapping R to its :class:`MRIOptimum`, in the order of ``runs``.
    """
    return {run.R: load_or_solve_mri_optimum(run, model_cache(run.data), n_slices=settings["n_slices"],
                                             crop=settings["crop"], seeds=settings["seeds"],
                                             time_limit=settings["time_limit"], adam_epochs=settings["adam_epochs"],
                                             lbfgs_max_iter=settings["lbfgs_max_iter"])
            for run in runs if run.R in settings["accelerations"]}


def _start(cfg, seed: int) -> PrimalNet:
    net = PrimalNet(cfg.n_filters, cfg.kernel_size, residual=True, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        net.conv1.weight.mul_(INIT_SCALE)
        net.conv2.weight.mul_(INIT_SCALE)
    return net


def optimum_rows(optima: list[MRIOptimum]) -> list[dict]:
    """Per R and seed: ``d_P`` (exact objective), its certified gap and solver time, the converged
    primal's objective relative to ``d_P`` (``(p - d_P) / d_P``), whether its stopping rule held, and the
    zero network's (zero-filled input's) objective relative to ``d_P`` (how much the optimum learned)."""
    rows = []
    for o in optima:
        sol = o.exact.solution
        for s, c in zip(o.seeds, o.converged):
            rows.append({
                "R": f"{o.R:g}", "n_slices": o.n_slices, "crop": o.crop or 80, "d_P": sol.objective, "lower_bound": sol.lower_bound,
                "cert_gap": sol.gap, "solver_s": round(sol.seconds, 1),
                "rebuilt_vs_dP": (o.exact.rebuilt_objective - sol.objective) / sol.objective,
                "zf_vs_dP": (o.zero_objective - sol.objective) / sol.objective,
                "seed": s, "primal_vs_dP": (c.objective - sol.objective) / sol.objective,
                "converged": bool(c.converged), "primal_s": round(c.seconds, 1),
                "exact_test_loss": o.exact_test_loss, "primal_test_loss": c.test_loss,
            })
    return rows
