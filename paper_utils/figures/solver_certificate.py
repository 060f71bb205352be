"""Our figure beyond the paper: the exact certified solver against the paper's Adam + hinge and the
primal's Adam, on the same data (notebook 10).

Every method is judged by the training objective of the ReLU network it yields: for the primal its
own eq. (2) objective, for the dual methods the network rebuilt by eq. (5) (for Adam + hinge this
differs from the dual's eq. (4) value whenever constraints are violated; for the exact solver the
two agree, since its points are feasible). Times: the Adam curves record training time per epoch
(evaluation excluded, :mod:`paper_utils.training.adam`), the solver its wall time per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from paper_utils.dual_solver import DualSolution
from paper_utils.training.denoisers import DenoiseRun, load_or_solve_exact


@dataclass
class SolverComparison:
    """Curves (seconds, objective of the ReLU network) of the three methods and the solver's result."""

    solution: DualSolution
    curves: dict[str, tuple[list[float], list[float]]]
    rebuilt_objective: float      # eq. (2) objective of the solver's eq. (5) network, float64
    adam_hinge_violation: float   # largest relative violation left by Adam + hinge
    best: float                   # lowest objective any method reached
    adam_hinge_mismatch: float = float("nan")  # |rebuilt eq. (5) - dual eq. (4)| / dual, Adam + hinge

    @property
    def exact_mismatch(self) -> float:
        """``|rebuilt eq. (5) - dual eq. (4)| / dual`` for the exact solver (float64)."""
        return abs(self.rebuilt_objective - self.solution.objective) / self.solution.objective

    def excess(self, method: str, floor: float = 1e-10) -> tuple[list[float], list[float]]:
        """``(seconds, (objective - L) / L)`` with ``L`` the solver's certified lower bound on the sampled
        program's optimum ``d_P``: a guaranteed upper bound on each point's relative distance to ``d_P``.
        Values below ``floor`` (including negative ones: a primal network can beat ``d_P``, the sampled
        program being a restriction) are drawn at ``floor`` on the log axis."""
        t, y = self.curves[method]
        lb = self.solution.lower_bound
        return t, [max((v - lb) / lb, floor) for v in y]

    def rows(self) -> list[dict]:
        """Per method: final objective, its relative excess over the certified lower bound on ``d_P``
        (negative: below the sampled optimum) and over the best any method found, and its time."""
        lb = self.solution.lower_bound
        out = []
        for method, (t, y) in self.curves.items():
            out.append({"method": method, "final_objective": y[-1], "over_lower_bound": (y[-1] - lb) / lb,
                        "over_best": (y[-1] - self.best) / self.best, "seconds": t[-1]})
        return out


def compare_solvers(run: DenoiseRun, *, tol: float = 1e-6, time_limit: float | None = None,
                    progress: bool = False) -> SolverComparison:
    """Solve ``run``'s sampled dual (same patterns ``G``, data and beta) exactly (or load the solution
    notebook 01 cached, :func:`paper_utils.training.denoisers.load_or_solve_exact`) and collect all curves."""
    exact = load_or_solve_exact(run, tol=tol, time_limit=time_limit, progress=progress)
    sol = exact.solution
    ph, dh = run.primal_history, run.dual_history
    curves = {
        "primal Adam (eq. 2)": (ph.seconds, ph.train_objective),
        "dual Adam + hinge, rebuilt by eq. (5)": (dh.seconds, dh.rebuilt_objective),
        "exact solver (ours), feasible points": (list(sol.history["time"]), list(sol.history["objective"])),
    }
    best = min(min(y) for _, y in curves.values())
    mismatch = abs(dh.rebuilt_objective[-1] - dh.train_objective[-1]) / dh.train_objective[-1]
    return SolverComparison(sol, curves, exact.rebuilt_objective, dh.max_violation[-1], best, mismatch)


def plot_comparison(ax, comparison: SolverComparison):
    """Each method's relative excess over the solver's certified lower bound on ``d_P`` (an upper
    bound on its distance to the optimum of the sampled program) against time. Returns ``ax``."""
    styles = {"primal Adam (eq. 2)": dict(color="tab:blue"),
              "dual Adam + hinge, rebuilt by eq. (5)": dict(color="tab:orange", ls="--"),
              "exact solver (ours), feasible points": dict(color="tab:green", marker="o")}
    for method in comparison.curves:
        t, e = comparison.excess(method)
        ax.plot([max(v, 1e-3) for v in t], e, label=method, **styles.get(method, {}))
    ax.set_xscale("log"); ax.set_yscale("log")
    ax.set_xlabel("seconds (Adam: training time, evaluation excluded)")
    ax.set_ylabel("(objective - certified lower bound) / lower bound")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return ax


def plot_feasibility(ax, comparison: SolverComparison, floor: float = 1e-16):
    """Bars (log scale) of what each dual method leaves behind: its largest constraint violation
    (relative to the largest filter response) and the relative mismatch between its eq. (4) objective
    and the eq. (2) objective of the network eq. (5) rebuilds from it. Returns ``ax``."""
    sol = comparison.solution
    groups = ("max constraint violation", "|rebuilt (eq. 5) - dual (eq. 4)| / dual")
    values = {"dual Adam + hinge (paper)": (comparison.adam_hinge_violation, comparison.adam_hinge_mismatch),
              "exact solver (ours)": (sol.max_violation, comparison.exact_mismatch)}
    colors = {"dual Adam + hinge (paper)": "tab:orange", "exact solver (ours)": "tab:green"}
    width = 0.38
    for k, (name, vals) in enumerate(values.items()):
        xs = [g + (k - 0.5) * width for g in range(len(groups))]
        bars = ax.bar(xs, [max(v, floor) for v in vals], width, label=name, color=colors[name])
        for bar, v in zip(bars, vals):
            ax.annotate(f"{v:.1e}", (bar.get_x() + bar.get_width() / 2, max(v, floor)), ha="center",
                        va="bottom", fontsize=8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(groups)), groups, fontsize=8)
    ax.set_ylabel("relative value (lower is better)")
    ax.grid(alpha=0.3, axis="y", which="both")
    ax.legend(fontsize=8)
    return ax
