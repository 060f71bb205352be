"""Notebook 11's experiment: how many sign patterns the full program needs, random vs generated.

On Figure 2's data (MNIST, sigma = 0.5, beta = 1e-5, k = 3: d = 9) the sampled dual (eq. 4) is solved
exactly (:func:`paper_utils.dual_solver.solve_dual`) for random pattern samples of growing size P,
and the full program is approached by column generation (:func:`paper_utils.dual_solver.solve_global`,
best-response pricing; at d = 9 and M in the tens of thousands no proof of global optimality is
possible, see :mod:`paper_utils.dual_solver.pricing`). A small problem whose arrangement can be
enumerated (2 x 2 windows of one MNIST digit, d = 4) shows the certified case.

Per scale (:data:`SETTINGS`): ``n_images`` training images of the scale's configuration are used (at
``cpu`` scale a subset of its 600, to fit the notebook's budget of a few minutes on 2 cores). Results
are cached (:class:`paper_utils.pipeline.cache.Cache`, kind ``generation``).

Letter key: M patches, d patch dimension, P patterns.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from paper_utils.pipeline.cache import Cache
from paper_utils.pipeline.config import DenoiseConfig, optimum_budget
from paper_utils.training.convergence import CONVERGENCE_CODE_VERSION, converge_primal
from paper_utils.data.mnist import load_mnist, mnist_denoising
from paper_utils.nets.dual import sample_generators
from paper_utils.dual_solver import SOLVER_VERSION, solve_dual, solve_global
from paper_utils.nets.patches import extract_patches

__all__ = ["SETTINGS", "GenerationResult", "run_generation", "converged_primal_objectives", "small_certified",
           "patterns_to_reach", "plot_generation"]

#: per scale: images used, random sample sizes, initial random patterns, rounds and patterns added per
#: round, and a wall-clock safety net (s). The initial sample has no antipodes here: with g and -g both
#: present the tilted rays of solve_dual stall (opposite-sign blocks) and the barrier takes over, 40x
#: slower at this size (measured at smoke size: 32 s against 0.8 s). The number of rounds decides, so
#: a rerun on any host reaches the same patterns; the time limit is set far above the expected time
#: (``cpu``: 25 rounds, 1,600 patterns, about 240 s on 2 cores) and a run stopped by it says so.
SETTINGS = {
    "smoke": dict(n_images=20, random_P=(32, 64, 128, 256), n_init=32, rounds=4, add=32, time_limit=None),
    "cpu": dict(n_images=50, random_P=(64, 128, 256, 512, 1024, 2048), n_init=64, rounds=25, add=64, time_limit=1800),
    "paper": dict(n_images=600, random_P=(500, 1000, 2000, 4000, 8000), n_init=500, rounds=20, add=500,
                  time_limit=3600),
}


@dataclass
class GenerationResult:
    """Objectives of random samples (``random_P``, ``random_objective``, certified ``random_gap``) and
    the generation's rounds (dicts of :attr:`paper_utils.dual_solver.GlobalSolution.rounds`)."""

    M: int
    random_P: list
    random_objective: list
    random_gap: list
    random_seconds: list
    rounds: list
    stop_reason: str
    lower_bound: float
    violation_bound: float

    @property
    def best_objective(self) -> float:
        return min(min(self.random_objective), min(r["objective"] for r in self.rounds))


def _problem(cfg: DenoiseConfig, n_images: int, device):
    train, _ = mnist_denoising(cfg.n_train, 1, cfg.noise, cfg.noise_level, seed=cfg.seed, arrays=load_mnist())
    noisy, clean = train.noisy[:n_images], train.clean[:n_images]
    Yp = extract_patches(noisy, cfg.kernel_size).to(device=device, dtype=torch.float64)
    x = (clean - noisy if cfg.residual else clean).reshape(-1).to(device=device, dtype=torch.float64)
    return Yp, x


def run_generation(cfg: DenoiseConfig, scale: str, *, device="cpu", cache: Cache | None = None,
                   progress: bool = False) -> GenerationResult:
    """Random samples solved exactly, then column generation, on ``cfg``'s data (cached)."""
    s = SETTINGS[scale]
    cache = cache or Cache()
    name = f"{cfg.label()}-{cfg.key()}-{scale}-" + "-".join(f"{k}{v}" for k, v in s.items() if k != "random_P") \
        + "-P" + "_".join(map(str, s["random_P"])) + f"-s{SOLVER_VERSION}"
    payload = cache.load("generation", name)
    if payload is not None:
        return GenerationResult(**payload["result"])
    Yp, x = _problem(cfg, s["n_images"], device)
    rp, ro, rg, rs = [], [], [], []
    for P in s["random_P"]:
        t = time.perf_counter()
        sol = solve_dual(Yp, x, sample_generators(Yp, P, seed=cfg.seed), cfg.beta, tol=1e-5)
        rp.append(P), ro.append(sol.objective), rg.append(sol.gap), rs.append(time.perf_counter() - t)
    glob = solve_global(Yp, x, cfg.beta, tol=1e-3, n_init=s["n_init"], seed=cfg.seed, max_rounds=s["rounds"],
                        add_per_round=s["add"], exact=False, solve_tol=1e-5, antipodes=False, time_limit=s["time_limit"],
                        progress=progress)
    res = GenerationResult(M=Yp.shape[0], random_P=rp, random_objective=ro, random_gap=rg, random_seconds=rs,
                           rounds=glob.rounds, stop_reason=glob.stop_reason, lower_bound=glob.lower_bound,
                           violation_bound=glob.violation_bound)
    cache.save("generation", name, {"result": res.__dict__})
    return res


def converged_primal_objectives(cfg: DenoiseConfig, scale: str, *, device="cpu", cache: Cache | None = None,
                                progress: bool = False) -> list[dict]:
    """The primal of eq. (2) at the paper's width (m = ``cfg.n_filters``) trained to convergence on the
    same images as :func:`run_generation`, from each seed of the scale's optimum budget
    (:func:`paper_utils.pipeline.config.optimum_budget`: Adam, then L-BFGS until the stopping rule or the
    budget); cached. Each entry: ``seed``, ``objective`` (eq. 2 with weight decay ``beta``: an upper
    bound on the full program's ``p*``, comparable with eq. (4)'s objectives), ``converged``,
    ``stop_reason``, ``seconds``."""
    s, budget = SETTINGS[scale], optimum_budget(scale)
    cache = cache or Cache()
    name = (f"{cfg.label()}-{cfg.key()}-{scale}-primal-n_images{s['n_images']}-seeds{'_'.join(map(str, budget.seeds))}"
            f"-a{budget.adam_epochs}-l{budget.lbfgs_max_iter}-t{budget.time_limit}-v{CONVERGENCE_CODE_VERSION}")
    payload = cache.load("generation", name)
    if payload is not None:
        return payload["seeds"]
    Yp, x = _problem(cfg, s["n_images"], device)
    out = []
    for seed in budget.seeds:
        r = converge_primal(Yp.float(), x.float(), cfg.beta, n_filters=cfg.n_filters, init_seed=seed,
                            adam_epochs=budget.adam_epochs, lr=cfg.lr_primal, batch_size=cfg.batch_size,
                            rows_per_image=Yp.shape[0] // s["n_images"], lbfgs_max_iter=budget.lbfgs_max_iter,
                            time_limit=budget.time_limit, progress=progress)
        out.append({"seed": seed, "objective": r.objective, "converged": r.converged,
                    "stop_reason": r.stop_reason, "seconds": r.seconds})
    cache.save("generation", name, {"seeds": out})
    return out


def small_certified(*, image: int = 0, M: int = 16, beta: float = 1e-3, seed: int = 0):
    """solve_global on an enumerable problem: ``M`` 2 x 2 windows (d = 4) of one MNIST training digit
    around its strokes, target the pixel diagonally below; returns the :class:`GlobalSolution`."""
    img = load_mnist().train_images[image].astype(np.float64) / 255.0
    rows, target = [], []
    for i in range(6, 20):
        for j in range(6, 20):
            rows.append([img[i, j], img[i, j + 1], img[i + 1, j], img[i + 1, j + 1]])
            target.append(img[i + 2, j + 2])
    pick = np.random.default_rng(seed).choice(len(rows), M, replace=False)
    return solve_global(np.array(rows)[pick], np.array(target)[pick], beta, n_init=2, seed=seed)


def patterns_to_reach(P: list, objective: list, target: float) -> int | None:
    """The smallest P whose objective is ``<= target`` (None if none is)."""
    hits = [p for p, o in zip(P, objective) if o <= target]
    return min(hits) if hits else None


def plot_generation(ax, res: GenerationResult, *, primal: list | None = None, primal_label: str = "primal"):
    """Objective against the number of patterns: random samples vs generated patterns, with the
    objectives of primal networks (``primal``, labelled ``primal_label``) as lines; returns ``ax``."""
    ax.plot(res.random_P, res.random_objective, "o-", label="random patterns (certified d_P)")
    gp = [r["patterns"] for r in res.rounds]
    ax.plot(gp, [r["objective"] for r in res.rounds], "s-", label="generated patterns (solve_global rounds)")
    best = min([res.best_objective] + list(primal or []))
    ax.axhline(best, color="k", ls=":", lw=1, label=f"best found by any method {best:.5g}")
    for i, obj in enumerate(primal or []):
        ax.axhline(obj, color="C3", ls="--", lw=1,
                   label=primal_label if i == 0 else None)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("number of sign patterns P")
    ax.set_ylabel("objective of eq. (4) (feasible point)")
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi + 0.35 * (hi - lo))            # room for the legend above every curve
    ax.legend(fontsize=8, loc="upper right")
    return ax
