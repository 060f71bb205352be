"""Our figure beyond the paper: the exact certified solver against the paper's Adam + hinge and the
primal's Adam, on the same data (notebook 10).

Every method is judged by the training objective of the ReLU network it yields: for the primal its
own eq. (2) objective, for the dual methods the network rebuilt by eq. (5) (for Adam + hinge this
differs from the dual's eq. (4) value whenever constraints are violated; for the exact solver the
two agree, since its points are feasible). Times: the Adam curves record training time per epoch
(evaluation excluded, :mod:`paper_utils.training`), the solver its wall time per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .dual_solver import DualSolution
from .experiments import DenoiseRun, load_or_solve_exact


@dataclass
class SolverComparison:
    """Curves (seconds, objective of the ReLU network) of the three methods and the solver's result."""

    solution: DualSolution
    curves: dict[str, tuple[list[float], list[float]]]
    rebuilt_objective: float      # eq. (2) objective of the solver's eq. (5) network, float64
    adam_hinge_violation: float   # largest relative violation left by Adam + hinge
    best: float                   # lowest objective any method reached

    def excess(self, method: str) -> tuple[list[float], list[float]]:
        """``(seconds, (objective - best) / best)`` for plotting on a log axis."""
        t, y = self.curves[method]
        return t, [max((v - self.best) / self.best, 1e-12) for v in y]

    def rows(self) -> list[dict]:
        """Final objective, relative excess over the best and time of each method."""
        out = []
        for method, (t, y) in self.curves.items():
            out.append({"method": method, "final_objective": y[-1], "excess": (y[-1] - self.best) / self.best,
                        "seconds": t[-1]})
        return out


def compare_solvers(run: DenoiseRun, *, tol: float = 1e-4, time_limit: float | None = None,
                    progress: bool = False) -> SolverComparison:
    """Solve ``run``'s sampled dual (same patterns ``G``, data and beta) exactly (or load the solution
    notebook 01 cached, :func:`paper_utils.experiments.load_or_solve_exact`) and collect all curves."""
    exact = load_or_solve_exact(run, tol=tol, time_limit=time_limit, progress=progress)
    sol = exact.solution
    ph, dh = run.primal_history, run.dual_history
    curves = {
        "primal Adam (eq. 2)": (ph.seconds, ph.train_objective),
        "dual Adam + hinge, rebuilt by eq. (5)": (dh.seconds, dh.rebuilt_objective),
        "exact solver (ours), feasible points": (list(sol.history["time"]), list(sol.history["objective"])),
    }
    best = min(min(y) for _, y in curves.values())
    return SolverComparison(sol, curves, exact.rebuilt_objective, dh.max_violation[-1], best)


def plot_comparison(ax, comparison: SolverComparison):
    """Objective excess over the best found, against time, for the three methods; the solver's
    certified gap as a dotted line. Returns ``ax``."""
    styles = {"primal Adam (eq. 2)": dict(color="tab:blue"),
              "dual Adam + hinge, rebuilt by eq. (5)": dict(color="tab:orange", ls="--"),
              "exact solver (ours), feasible points": dict(color="tab:green", marker=".")}
    for method in comparison.curves:
        t, e = comparison.excess(method)
        ax.plot([max(v, 1e-3) for v in t], e, label=method, **styles.get(method, {}))
    h = comparison.solution.history
    ax.plot([max(v, 1e-3) for v in h["time"]], [max(g, 1e-12) for g in h["gap"]], color="tab:green", ls=":",
            label="exact solver: certified relative gap")
    ax.set_xscale("log"); ax.set_yscale("log")
    ax.set_xlabel("seconds"); ax.set_ylabel("(objective - best) / best")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return ax
