"""Figure-level runs "at the optimum" (DESIGN.md section 9, issue 12): the second basis of every claim.

The paper's runs (Adam at its learning rates for a fixed budget: the ``published`` basis) answer
"does the paper's procedure, as written, show the claim". This module answers the paper's science on
the same data and the same sampled patterns:

- the sampled dual (eq. 4) solved exactly with a certificate (:func:`paper_utils.training.denoisers.load_or_solve_exact`,
  ``d_P`` within ``[lower_bound, objective]``), its eq. (5) ReLU network (:func:`exact_dual_net`,
  :func:`exact_primal_net`) and that network's loss (:func:`network_loss`);
- the primal of eq. (2) at the paper's width trained until its stopping rule holds, from several
  initialisations (:func:`converged_primals`, :mod:`paper_utils.training.convergence`), each seed's final
  objective relative to ``d_P`` (:func:`seed_details`).

Comparing a primal with ``d_P`` (``../shared/DESIGN.md`` section 11): the primal's objective is compared
*balanced* (:func:`balanced`; the same function at the smallest weight decay), and its width m against
``m*`` of the convex solution (:func:`width_details`). Theorem 1 gives ``p* <= d_P`` and, for m >= m*, a
primal global optimum equal to p*. A primal above ``d_P`` may be stuck at a poor stationary point, not
yet converged (each result carries ``converged``), unbalanced, or too narrow (m < m*): one number cannot
tell these apart. One below ``d_P`` uses sign patterns the sample lacks. Figure 2's tables of these
numbers are in :mod:`paper_utils.figures.fig02_duality_gap`.
"""

from __future__ import annotations

from typing import Sequence

import torch

from paper_utils.dual_solver.sparsify import count_neurons
from paper_utils.nets.balance import balanced_objective
from paper_utils.pipeline.cache import Cache
from paper_utils.pipeline.config import OptimumBudget
from paper_utils.training.convergence import ConvergedPrimal, load_or_converge_primal
from paper_utils.data.mnist import DenoisingSet
from paper_utils.nets.dual import DualNet
from paper_utils.training.denoisers import DenoiseRun, ExactDual
from paper_utils.nets.primal import PrimalNet, primal_objective


def converged_primals(run: DenoiseRun, budget: OptimumBudget, *, device: torch.device, all_seeds: bool = True,
                      cache: Cache | None = None, progress: bool = True) -> list[ConvergedPrimal]:
    """The primal of ``run.cfg`` (m = ``n_filters``) trained to convergence from ``budget.seeds``.

    ``all_seeds=False`` keeps only the first seed when ``budget.extra_seeds_all_noises`` is False (the
    ``cpu`` scale's 2-core budget spends its three seeds on the headline noise level only). Each result
    is cached (atomic, verified) by configuration, seed, schedule and stopping rule.
    """
    seeds = budget.seeds if (all_seeds or budget.extra_seeds_all_noises) else budget.seeds[:1]
    return [load_or_converge_primal(run.cfg, run.train, run.test, init_seed=s, device=device,
                                    adam_epochs=budget.adam_epochs, lbfgs_max_iter=budget.lbfgs_max_iter,
                                    time_limit=budget.time_limit, cache=cache, progress=progress)
            for s in seeds]


def exact_primal_net(run: DenoiseRun, ex: ExactDual) -> PrimalNet:
    """The ReLU network of eq. (5) rebuilt from the exact dual solution (float32, on the run's device)."""
    net = ex.solution.to_primal(kernel_size=run.cfg.kernel_size, residual=run.cfg.residual)
    return net.float().to(run.dual.G.device)


def exact_dual_net(run: DenoiseRun, ex: ExactDual) -> DualNet:
    """A :class:`paper_utils.nets.dual.DualNet` holding the exact solution (same ``G``), for the dual's
    interpretation tools (codes, effective filters: :mod:`paper_utils.report.interpret`)."""
    sol = ex.solution
    G = run.dual.G.detach()
    net = DualNet(G, run.cfg.kernel_size, residual=run.cfg.residual)
    with torch.no_grad():
        net.W.copy_(torch.as_tensor(sol.W).to(net.W)); net.Z.copy_(torch.as_tensor(sol.Z).to(net.Z))
    return net


def network_loss(net: PrimalNet, data: DenoisingSet, beta: float) -> float:
    """``1/(2M) ||f(Y) - X||^2`` of ``net`` on ``data`` (float64 sums; batches bounded to ~1e8 activations)."""
    dev = next(net.parameters()).device
    batch = max(1, min(500, int(1e8 // max(1, net.n_filters * data.noisy[0].numel()))))
    return primal_objective(net, data.noisy.to(dev), data.clean.to(dev), beta, batch_size=batch)["loss"]


def balanced(c: ConvergedPrimal, beta: float) -> float:
    """The eq. (2) objective of ``c``'s balanced twin, ``loss + beta sum_j ||u_j|| |v_j|``
    (:mod:`paper_utils.nets.balance`): the same network function at the smallest weight decay."""
    return balanced_objective(c.loss, c.U, c.v, beta)


def width_details(m: int, W, Z) -> dict:
    """``m`` (the primal's width), ``m_star_dense`` (neurons of the convex solution ``W``, ``Z`` (P, d) as solved,
    :func:`paper_utils.dual_solver.sparsify.count_neurons`) and ``m_star`` (the sparsest solution found: here the
    same, since :func:`paper_utils.dual_solver.sparsify.sparsify` is not attempted at image sizes, where the
    features are in general position), and whether Theorem 1's premise ``m >= m*`` holds."""
    dense = count_neurons(W, Z)
    return {"m": int(m), "m_star": dense, "m_star_dense": dense, "premise_m_ge_m_star": bool(m >= dense)}


def premise_note(widths: dict) -> str:
    """A statement's suffix saying where Theorem 1's premise does not hold (``widths``: :func:`width_details`)."""
    if widths["premise_m_ge_m_star"]:
        return f"[m = {widths['m']:,} >= m* = {widths['m_star']:,}]"
    return (f"[m = {widths['m']:,} < m* = {widths['m_star']:,} of the convex solution found: Theorem 1's premise "
            "m >= m* is not established; the paper's comparison at the paper's width]")


def seed_details(seeds: Sequence[ConvergedPrimal], d_p: float, beta: float | None = None) -> dict:
    """Per seed: objective (as trained, and balanced when ``beta`` is given), relative excess over ``d_P``,
    converged flag, gradient norm, stop reason, seconds (for a claim's ``details``)."""
    out = {}
    for c in seeds:
        row = {"objective": c.objective, "vs_dP": (c.objective - d_p) / d_p}
        if beta is not None:
            b = balanced(c, beta)
            row.update(balanced_objective=b, balanced_vs_dP=(b - d_p) / d_p)
        row.update(converged=c.converged, grad_norm=c.grad_norm, stop_reason=c.stop_reason,
                   lbfgs_iterations=c.history["phase"].count("lbfgs"), seconds=c.seconds)
        out[f"seed{c.init_seed}"] = row
    return out
