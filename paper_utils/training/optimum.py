"""Figure-level runs "at the optimum" (DESIGN.md section 9, issue 12): the second basis of every claim.

The paper's runs (Adam at its learning rates for a fixed budget: the ``published`` basis) answer
"does the paper's procedure, as written, show the claim". This module answers the paper's science on
the same data and the same sampled patterns:

- the sampled dual (eq. 4) solved exactly with a certificate (:func:`paper_utils.training.denoisers.load_or_solve_exact`,
  ``d_P`` within ``[lower_bound, objective]``), its eq. (5) ReLU network (:func:`exact_dual_net`,
  :func:`exact_primal_net`) and that network's test loss;
- the primal of eq. (2) at the paper's width trained until its stopping rule holds, from several
  initialisations (:func:`converged_primals`, :mod:`paper_utils.training.convergence`), each seed's final
  objective relative to ``d_P``.

Theorem 1 with sampled patterns gives ``p* = d <= d_P``: a converged primal above ``d_P`` by more than
the tolerance is stuck (or not yet converged: each result carries ``converged``), one below ``d_P``
uses sign patterns the sample lacks.
"""

from __future__ import annotations

from typing import Sequence

import torch

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


def optimum_rows(runs: Sequence[DenoiseRun], exact: Sequence[ExactDual],
                 converged: Sequence[Sequence[ConvergedPrimal]]) -> list[dict]:
    """Per run: the certified ``d_P``, each converged primal seed against it, and the test losses.

    ``seed{s}_vs_dP`` is ``(primal objective - d_P) / d_P`` of seed ``s`` (``d_P``: the solver's feasible
    objective, within ``cert_gap`` of the optimum); ``best_vs_dP`` the lowest over seeds; ``n_converged``
    how many seeds met the stopping rule. ``exact_test`` is the test loss of the exact dual's eq. (5)
    network, ``primal_test`` that of the best seed, ``gap_test`` = (exact_test - primal_test) / primal_test.
    """
    rows = []
    for run, ex, seeds in zip(runs, exact, converged):
        sol = ex.solution
        d_p = sol.objective
        row = {"noise": f"{run.cfg.noise} {run.cfg.noise_level:g}", "d_P": d_p, "cert_gap": sol.gap}
        for c in seeds:
            row[f"seed{c.init_seed}_vs_dP"] = (c.objective - d_p) / d_p
        best = min(seeds, key=lambda c: c.objective)
        row["best_vs_dP"] = (best.objective - d_p) / d_p
        row["n_converged"] = f"{sum(c.converged for c in seeds)}/{len(seeds)}"
        exact_test = network_loss(exact_primal_net(run, ex), run.test, run.cfg.beta)
        row["exact_test"] = exact_test
        row["primal_test"] = best.test_loss if best.test_loss is not None else float("nan")
        row["gap_test"] = (exact_test - row["primal_test"]) / row["primal_test"]
        rows.append(row)
    # the same columns in every row (noise levels may have different numbers of seeds): the widest row's order
    widest = max(rows, key=len) if rows else {}
    return [{k: row.get(k, float("nan")) for k in widest} for row in rows]


def seed_details(seeds: Sequence[ConvergedPrimal], d_p: float) -> dict:
    """Per seed: objective, relative excess over ``d_P``, converged flag, gradient norm, stop reason, seconds
    (for a claim's ``details``)."""
    return {f"seed{c.init_seed}": {"objective": c.objective, "vs_dP": (c.objective - d_p) / d_p,
                                   "converged": c.converged, "grad_norm": c.grad_norm, "stop_reason": c.stop_reason,
                                   "lbfgs_iterations": c.history["phase"].count("lbfgs"), "seconds": c.seconds}
            for c in seeds}
