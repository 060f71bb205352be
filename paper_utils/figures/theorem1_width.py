r"""Theorem 1 where it applies (notebook 12): the primal's width m against m*, on problems whose optimum is proven.

Theorem 1 (paper Sec. 3): the non-convex network of eq. (2) has the convex program's optimum p* as its
global optimum once its width m is at least m*, the number of neurons of an optimal solution of eq. (4)
over *every* sign pattern (each nonzero ``w_i`` or ``z_i`` is one ReLU unit by eq. 5). It says nothing
about narrower networks, nor that training finds the global optimum. The comparisons of Figures 2 and
8-10 are made at m = 512 or 25, far below the m* of the convex solutions they are compared with
(:mod:`paper_utils.dual_solver.sparsify`), and against sampled programs (``d_P >= p*``).

Here the question is asked where it can be answered exactly. Each *proven small problem* is a patch
regression from one MNIST digit: a ``h x w`` crop of the normalised image with Gaussian noise
(``sigma``), its 2 x 2 windows as rows of ``Yp`` (M = (h - 1)(w - 1), d = 4) and the clean pixel at each
window's top-left corner as the target. Its hyperplane arrangement is small enough to enumerate
(:mod:`paper_utils.dual_solver.arrangement`: a few thousand cells), so

1. :func:`paper_utils.dual_solver.solve_global` with exact pricing over every cell solves the *full*
   program and proves its relative gap (``lower`` is a proven lower bound on p*, ``objective`` the value
   of a feasible point: the certificate, not a search);
2. :func:`paper_utils.dual_solver.sparsify.sparsify` removes neurons at equal objective (Caratheodory),
   giving ``m_star`` (the sparsest optimal solution found; the true m* is at most this) beside
   ``m_star_dense`` (as solved);
3. the primal of eq. (2) is trained at widths below m*, at m*, 2 m* and 4 m*, from ``n_seeds`` Kaiming
   starts each, by :func:`paper_utils.training.convergence.converge_primal` (full-batch float64 L-BFGS,
   balanced units, restarts after a stalled line search) until its stopping rule holds or its iteration
   budget ends (each seed says which). Every final objective is *balanced* (:mod:`paper_utils.nets.balance`).

Per width: the fraction of seeds within 1e-4 and within 1e-6 (relative) of p*, best and median, and
``m_crit``, the smallest width whose best seed comes within 1e-4. Objectives:

- primal: ``1/(2M) ||relu(Yp U^T) v - x||^2 + beta/2 (||U||^2 + ||v||^2)`` (balanced);
- convex: ``1/(2M) ||sum_i D_i Yp (w_i - z_i) - x||^2 + beta sum_i (||w_i|| + ||z_i||)``.

Letter key: M patches, d = 4 patch dimension, P patterns (cells), m primal width, K widths, S seeds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from tqdm.auto import tqdm

from paper_utils.data.mnist import load_mnist, mnist_normalization
from paper_utils.dual_solver import SOLVER_VERSION, solve_global
from paper_utils.dual_solver.sparsify import convex_objective, sparsify
from paper_utils.nets.balance import balanced_objective
from paper_utils.pipeline.cache import Cache
from paper_utils.pipeline.config import check_scale
from paper_utils.pipeline.paths import project_root
from paper_utils.report.claims import Claim
from paper_utils.training.convergence import CONVERGENCE_CODE_VERSION, converge_primal

__all__ = ["REACH_TOL", "KINK_TOL", "CERT_TOL", "SmallProblem", "ProvenOptimum", "WidthSweep", "Theorem1Result",
           "small_problems", "solve_proven", "widths_for", "width_sweep", "run", "claims", "save_npz", "plot",
           "primal_objective_np", "NPZ_NAME"]

#: "reaches p*": the best balanced seed within this relative distance
REACH_TOL = 1e-4
#: seeds between KINK_TOL and REACH_TOL are taken to be limited by the optimiser's precision at a kink
KINK_TOL = 1e-6
#: the proven relative gap asked of every small problem's full program
CERT_TOL = 1e-7
#: the committed arrays (``results/cpu/``)
NPZ_NAME = "theorem1_width.npz"
#: bump when a change alters the small problems' solutions or primal runs (cache names carry it)
THEOREM1_CODE_VERSION = "1"

# (train image index, crop row, crop column, crop height, crop width) and the noise level, per digit
_CROPS = ((0, 8, 8, 5, 6), (7, 10, 9, 5, 5))
_SIGMA = 0.5
_BETAS = (1e-1, 3e-2, 1e-2)
_SCALE_SETTINGS = {   # digits, betas, seeds per width, L-BFGS iteration budget per seed
    "smoke": {"crops": _CROPS[:1], "betas": _BETAS[:2], "n_seeds": 3, "lbfgs_max_iter": 2000},
    "cpu": {"crops": _CROPS, "betas": _BETAS, "n_seeds": 20, "lbfgs_max_iter": 20000},
    "paper": {"crops": _CROPS, "betas": _BETAS, "n_seeds": 20, "lbfgs_max_iter": 20000},
}
#: the primal's stopping rule (relative objective change over ``window`` iterations)
RULE = {"rel_tol": 1e-12, "window": 20, "restarts": 100}


@dataclass(frozen=True)
class SmallProblem:
    """A patch regression small enough to enumerate every sign pattern.

    Attributes:
        name: e.g. ``"digit0-beta0.1"``.
        image, row, col, height, width: the MNIST training image and its crop.
        sigma: Gaussian noise level (normalised units); ``noise_seed`` seeds it.
        beta: weight decay of eq. (2) / eq. (4).
        Yp: 2 x 2 windows of the noisy crop (M, 4), float64.
        x: the clean pixel at each window's top-left corner (M,), float64.
    """

    name: str
    image: int
    row: int
    col: int
    height: int
    width: int
    sigma: float
    noise_seed: int
    beta: float
    Yp: np.ndarray = field(repr=False, compare=False)
    x: np.ndarray = field(repr=False, compare=False)


def _crop_problem(arrays, mean: float, std: float, crop, sigma: float, beta: float, noise_seed: int = 0) -> SmallProblem:
    image, r0, c0, h, w = crop
    clean = (arrays.train_images[image].astype(np.float64) / 255.0 - mean) / std
    clean = clean[r0:r0 + h, c0:c0 + w]
    noisy = clean + sigma * np.random.default_rng(noise_seed).standard_normal(clean.shape)
    Yp = np.stack([noisy[i:i + 2, j:j + 2].ravel() for i in range(h - 1) for j in range(w - 1)])
    x = np.array([clean[i, j] for i in range(h - 1) for j in range(w - 1)])
    return SmallProblem(f"digit{image}-beta{beta:g}", image, r0, c0, h, w, sigma, noise_seed, beta, Yp, x)


def small_problems(scale: str) -> list[SmallProblem]:
    """The proven small problems of ``scale``: every crop of ``_CROPS`` (cpu: 2 digits, 20 and 16 patches)
    at every beta of ``_BETAS`` (cpu: 1e-1, 3e-2, 1e-2), noise ``sigma = 0.5``."""
    s = _SCALE_SETTINGS[check_scale(scale)]
    arrays = load_mnist()
    mean, std = mnist_normalization(arrays)
    return [_crop_problem(arrays, mean, std, crop, _SIGMA, beta) for crop in s["crops"] for beta in s["betas"]]


def primal_objective_np(Yp, x, U, v, beta: float) -> float:
    """Eq. (2) in patch form, float64 numpy: ``1/(2M) ||relu(Yp U^T) v - x||^2 + beta/2 (||U||^2 + ||v||^2)``."""
    Y, xv, Un, vn = (np.asarray(a, dtype=np.float64) for a in (Yp, x, U, v))
    r = np.maximum(Y @ Un.T, 0.0) @ vn - xv
    return float(r @ r / (2 * len(xv)) + 0.5 * beta * (np.sum(Un * Un) + vn @ vn))


@dataclass
class ProvenOptimum:
    """The full program of a small problem, solved with a proven certificate, and its sparsest solution found.

    Attributes:
        G: generators (d, P) of the patterns in the final program; W, Z (P, d): the sparsest solution.
        objective: eq. (4) at (W, Z) (a feasible point: an upper bound on p*).
        lower: proven lower bound on p* (exact pricing over every cell of the arrangement).
        gap: ``(objective - lower) / objective``; certified: ``gap <= CERT_TOL``.
        m_star: neurons of (W, Z); m_star_dense: of the solution as solved.
        n_cells: cells of the arrangement (every sign pattern); seconds: solve + pruning time.
        stop_reason: the solver's.
    """

    G: np.ndarray
    W: np.ndarray
    Z: np.ndarray
    objective: float
    lower: float
    gap: float
    certified: bool
    m_star: int
    m_star_dense: int
    n_cells: int
    seconds: float
    stop_reason: str


def solve_proven(problem: SmallProblem, *, tol: float = CERT_TOL * 0.1, max_rounds: int = 60) -> ProvenOptimum:
    """Solve the full program of ``problem`` with exact pricing over every cell, then sparsify."""
    import time

    from paper_utils.dual_solver.arrangement import count_cells_bound, hyperplanes

    t0 = time.perf_counter()
    Y, x = torch.from_numpy(problem.Yp), torch.from_numpy(problem.x)
    sol = solve_global(Y, x, problem.beta, tol=tol, exact=True, max_rounds=max_rounds)
    G = sol.G.detach().double().numpy()
    sp = sparsify(problem.Yp, problem.x, G, sol.W, sol.Z, problem.beta)
    objective = convex_objective(problem.Yp, problem.x, G, sp.W, sp.Z, problem.beta)[0]
    lower = min(float(sol.lower_bound), objective)
    gap = (objective - lower) / objective
    H = hyperplanes(problem.Yp)[0].shape[0]
    return ProvenOptimum(G, sp.W, sp.Z, objective, lower, gap, gap <= CERT_TOL, sp.m_star, sp.m_star_dense,
                         count_cells_bound(H, problem.Yp.shape[1]), time.perf_counter() - t0, sol.stop_reason)


def widths_for(m_star: int) -> list[int]:
    """The widths tried: ``m*/4, m*/2, m* - 1`` (those >= 1), ``m*, 2 m*, 4 m*``; ``3 m*`` added when fewer than 5."""
    ws = {max(1, m_star // 4), max(1, m_star // 2), max(1, m_star - 1), m_star, 2 * m_star, 4 * m_star}
    if len(ws) < 5:
        ws.add(3 * m_star)
    return sorted(ws)


@dataclass
class WidthSweep:
    """The primal of a small problem at several widths, from ``S`` seeds each.

    Attributes:
        widths: (K,) int.
        objective: (K, S) final balanced eq. (2) objectives.
        converged: (K, S) bool: the stopping rule held (else the iteration budget ended, or L-BFGS's line
            search stalled and a restart no longer lowered the objective).
        iterations: (K, S) int: L-BFGS iterations, restarts included (``budget``: a seed that used them all).
        best_U, best_v: per width, the best seed's balanced weights (m_k, d), (m_k,), float64.
        seconds: wall time of the sweep.
        budget: the L-BFGS iteration budget per seed.
    """

    widths: np.ndarray
    objective: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray
    best_U: list
    best_v: list
    seconds: float
    budget: int = 0


def width_sweep(problem: SmallProblem, widths: Sequence[int], *, n_seeds: int, lbfgs_max_iter: int,
                progress: bool = True) -> WidthSweep:
    """Train the primal of ``problem`` at each width from seeds ``0 .. n_seeds - 1`` (module docstring)."""
    import time

    t0 = time.perf_counter()
    Y, x = torch.from_numpy(problem.Yp), torch.from_numpy(problem.x)
    K = len(widths)
    obj, conv, its = np.zeros((K, n_seeds)), np.zeros((K, n_seeds), dtype=bool), np.zeros((K, n_seeds), dtype=int)
    best_U, best_v = [], []
    bar = tqdm(total=K * n_seeds, desc=f"primal seeds, {problem.name}", disable=not progress, leave=False)
    for k, m in enumerate(widths):
        best = None
        for s in range(n_seeds):
            c = converge_primal(Y, x, problem.beta, n_filters=int(m), init_seed=s, adam_epochs=0,
                                rows_per_image=Y.shape[0], lbfgs_max_iter=lbfgs_max_iter, rel_tol=RULE["rel_tol"],
                                window=RULE["window"], restarts=RULE["restarts"], rebalance=True,
                                compute_dtype=torch.float64, progress=False)
            U, v = c.U.double().numpy(), c.v.double().numpy()
            obj[k, s] = balanced_objective(c.loss, U, v, problem.beta)
            conv[k, s] = c.converged
            its[k, s] = c.history["phase"].count("lbfgs")
            if best is None or obj[k, s] < obj[k, best[0]]:
                best = (s, U, v)
            bar.update(1)
        best_U.append(best[1]); best_v.append(best[2])
    bar.close()
    return WidthSweep(np.asarray(widths, dtype=int), obj, conv, its, best_U, best_v, time.perf_counter() - t0,
                      lbfgs_max_iter)


@dataclass
class Theorem1Result:
    """Notebook 12's problems, proven optima, width sweeps, tables and claims."""

    scale: str
    problems: list[SmallProblem]
    optima: list[ProvenOptimum]
    sweeps: list[WidthSweep]
    claims: list[Claim]
    problem_rows: list[dict]
    width_rows: list[dict]
    settings: dict
    mnist50: dict | None = None
    bracket: dict | None = None


def _cache_name(problem: SmallProblem, settings: dict) -> str:
    return (f"{problem.name}-r{problem.row}c{problem.col}h{problem.height}w{problem.width}-s{problem.sigma:g}"
            f"n{problem.noise_seed}-S{settings['n_seeds']}-l{settings['lbfgs_max_iter']}-v{THEOREM1_CODE_VERSION}"
            f"-c{CONVERGENCE_CODE_VERSION}-sv{SOLVER_VERSION}")


def _tensors(value):
    """numpy arrays -> torch tensors, recursively (the cache loads with ``torch.load(weights_only=True)``)."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value)
    if isinstance(value, dict):
        return {k: _tensors(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_tensors(v) for v in value]
    return value


def _arrays(value):
    """The inverse of :func:`_tensors`."""
    if isinstance(value, torch.Tensor):
        return value.numpy()
    if isinstance(value, dict):
        return {k: _arrays(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_arrays(v) for v in value]
    return value


def _solve_and_sweep(problem: SmallProblem, settings: dict, cache: Cache, progress: bool):
    name = _cache_name(problem, settings)
    payload = cache.load("theorem1", name)
    if payload is None:
        opt = solve_proven(problem)
        sweep = width_sweep(problem, widths_for(opt.m_star), n_seeds=settings["n_seeds"],
                            lbfgs_max_iter=settings["lbfgs_max_iter"], progress=progress)
        payload = _tensors({"optimum": dict(opt.__dict__), "sweep": dict(sweep.__dict__)})
        cache.save("theorem1", name, payload)
    payload = _arrays(payload)
    return ProvenOptimum(**payload["optimum"]), WidthSweep(**payload["sweep"])


def _rows(problem: SmallProblem, opt: ProvenOptimum, sweep: WidthSweep) -> tuple[dict, list[dict]]:
    rel = (sweep.objective - opt.objective) / opt.objective                          # (K, S)
    reached = rel.min(1) <= REACH_TOL
    m_crit = int(sweep.widths[np.argmax(reached)]) if reached.any() else None
    prob = {"problem": problem.name, "M": problem.Yp.shape[0], "beta": problem.beta, "cells": opt.n_cells,
            "p*": opt.objective, "proven gap": opt.gap, "m_star_dense": opt.m_star_dense, "m_star": opt.m_star,
            "m_crit": m_crit if m_crit is not None else "not reached", "seconds": round(opt.seconds, 1)}
    rows = []
    for k, m in enumerate(sweep.widths):
        r = rel[k]
        rows.append({"problem": problem.name, "m": int(m), "m / m*": m / opt.m_star,
                     "within 1e-4": float(np.mean(r <= REACH_TOL)), "within 1e-6": float(np.mean(r <= KINK_TOL)),
                     "kink-limited (1e-6..1e-4)": int(np.sum((r > KINK_TOL) & (r <= REACH_TOL))),
                     "best": float(r.min()), "median": float(np.median(r)),
                     "rule met": f"{int(sweep.converged[k].sum())}/{len(r)}",
                     "budget stops": int(np.sum(sweep.iterations[k] >= sweep.budget)),
                     "median iterations": int(np.median(sweep.iterations[k]))})
    return prob, rows


def claims(problems, optima, sweeps) -> list[Claim]:
    """Per small problem i: ``theorem1.proven.reaches.{i}``, ``.fraction.{i}``, ``.critical_width.{i}`` (kind
    ``ours``, basis ``optimum``)."""
    out = []
    for i, (pb, opt, sw) in enumerate(zip(problems, optima, sweeps)):
        rel = (sw.objective - opt.objective) / opt.objective
        wide = sw.widths >= opt.m_star
        best_wide = float(rel[wide].min())
        k2 = np.flatnonzero(sw.widths == 2 * opt.m_star)
        frac2 = float(np.mean(rel[k2[0]] <= REACH_TOL)) if len(k2) else float("nan")
        reached = rel.min(1) <= REACH_TOL
        m_crit = int(sw.widths[np.argmax(reached)]) if reached.any() else None
        details = {"problem": pb.name, "M": int(pb.Yp.shape[0]), "beta": pb.beta, "p_star": opt.objective,
                   "proven_lower": opt.lower, "proven_gap": opt.gap, "certified": bool(opt.certified),
                   "m_star": opt.m_star, "m_star_dense": opt.m_star_dense, "m_crit": m_crit,
                   "widths": sw.widths.tolist(), "best_rel": rel.min(1).tolist(),
                   "median_rel": np.median(rel, 1).tolist(), "rule_met": sw.converged.sum(1).tolist(),
                   "seeds": int(rel.shape[1]), "lbfgs_max_iterations": int(sw.iterations.max())}
        note = "" if opt.certified else f" [p* NOT certified: proven gap {opt.gap:.1e}]"
        out += [
            Claim(f"theorem1.proven.reaches.{i}",
                  f"Theorem 1 on a proven small problem ({pb.name}, M = {pb.Yp.shape[0]}): at width m >= m* = {opt.m_star}, "
                  f"the best of {rel.shape[1]} random starts comes within {REACH_TOL:g} of p*{note}",
                  best_wide, REACH_TOL, bool(opt.certified and best_wide <= REACH_TOL),
                  "relative excess (best balanced primal at m >= m* - p*) / p*", details=details, basis="optimum",
                  kind="ours"),
            Claim(f"theorem1.proven.fraction.{i}",
                  f"Theorem 1 on a proven small problem ({pb.name}): at m = 2 m* = {2 * opt.m_star}, at least half of the "
                  f"random starts come within {REACH_TOL:g} of p*{note}",
                  frac2, 0.5, bool(opt.certified and frac2 >= 0.5), "fraction of seeds within 1e-4 of p* at 2 m*",
                  details=details, basis="optimum", kind="ours"),
            Claim(f"theorem1.proven.critical_width.{i}",
                  f"Theorem 1 on a proven small problem ({pb.name}): the smallest width whose best start reaches p* "
                  f"(within {REACH_TOL:g}), m_crit, is at most m* = {opt.m_star}{note}",
                  float(m_crit) if m_crit is not None else None, float(opt.m_star),
                  bool(opt.certified and m_crit is not None and m_crit <= opt.m_star), "width m_crit",
                  details=details, basis="optimum", kind="ours"),
        ]
    return out


def _read_json(name: str) -> dict | None:
    path = project_root() / "results" / "cpu" / name
    return json.loads(path.read_text()) if path.exists() else None


def bracket_summary() -> dict | None:
    """Figure 2's 600 images at sigma 0.5 (``make bracket``, ``results/cpu/bracket_sigma0.5.*``): U (the best
    convex point found), its m* and the best m = 512 seed balanced
    (:func:`paper_utils.figures.theorem1_bracket.bracket_balance`), each primal's objective as trained, and the
    grown primal when committed."""
    from paper_utils.figures import theorem1_bracket

    js = theorem1_bracket.load_bracket(0.5)
    widths = theorem1_bracket.bracket_balance(js) if js is not None else {}
    if not widths:
        return None
    points = {(r["m"], r["label"]): {"m": r["m"], "label": r["label"], "objective": r["objective"],
                                     "converged": r["converged"]}
              for r in list(js["primal_seeds"].values()) + list(js["primal_widths"].values())}
    return {"U": js["best_known"], "m_star_U": widths["m_star_U"], "m_best": widths["m"],
            "best_objective": widths["best_primal_trained"], "best_balanced": widths["best_primal_balanced"],
            "points": list(points.values()), "grown": js.get("primal_grown")}


def run(scale: str, *, progress: bool = True, cache: Cache | None = None) -> Theorem1Result:
    """Solve and sweep every small problem of ``scale`` (cached by problem and settings), and read the committed
    MNIST-50 and bracket results when present (``results/cpu/theorem1_mnist50.json``, ``bracket_sigma0.5.json``)."""
    settings = dict(_SCALE_SETTINGS[check_scale(scale)])
    cache = cache or Cache()
    problems = small_problems(scale)
    optima, sweeps, prob_rows, width_rows = [], [], [], []
    for pb in tqdm(problems, desc="proven small problems", disable=not progress):
        opt, sw = _solve_and_sweep(pb, settings, cache, progress)
        optima.append(opt); sweeps.append(sw)
        pr, wr = _rows(pb, opt, sw)
        prob_rows.append(pr); width_rows += wr
    settings = {**settings, "crops": [list(c) for c in settings["crops"]], "betas": list(settings["betas"]),
                "sigma": _SIGMA, "rule": RULE, "reach_tol": REACH_TOL, "kink_tol": KINK_TOL, "cert_tol": CERT_TOL}
    return Theorem1Result(scale, problems, optima, sweeps, claims(problems, optima, sweeps), prob_rows, width_rows,
                          settings, mnist50=_read_json("theorem1_mnist50.json"), bracket=bracket_summary())


def save_npz(result: Theorem1Result, path: str | Path) -> Path:
    """Write the arrays anyone can check (``tests/test_theorem1_width.py`` recomputes every objective and m*
    from them with numpy): per problem i ``p{i}_Yp, p{i}_x, p{i}_beta, p{i}_G, p{i}_W, p{i}_Z, p{i}_objective,
    p{i}_lower, p{i}_m_star, p{i}_widths, p{i}_primal_objective, p{i}_U{k}, p{i}_v{k}``, and ``n_problems``."""
    arrays = {"n_problems": np.array(len(result.problems))}
    for i, (pb, opt, sw) in enumerate(zip(result.problems, result.optima, result.sweeps)):
        arrays.update({f"p{i}_Yp": pb.Yp, f"p{i}_x": pb.x, f"p{i}_beta": np.array(pb.beta), f"p{i}_G": opt.G,
                       f"p{i}_W": opt.W, f"p{i}_Z": opt.Z, f"p{i}_objective": np.array(opt.objective),
                       f"p{i}_lower": np.array(opt.lower), f"p{i}_m_star": np.array(opt.m_star),
                       f"p{i}_m_star_dense": np.array(opt.m_star_dense), f"p{i}_widths": sw.widths,
                       f"p{i}_primal_objective": sw.objective, f"p{i}_converged": sw.converged})
        for k in range(len(sw.widths)):
            arrays[f"p{i}_U{k}"], arrays[f"p{i}_v{k}"] = sw.best_U[k], sw.best_v[k]
    path = Path(path)
    if path.exists():                     # an identical re-execution (nbval) leaves the committed file alone
        with np.load(path) as old:
            if set(old.files) == set(arrays) and all(np.array_equal(old[k], v) for k, v in arrays.items()):
                return path
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def plot(result: Theorem1Result):
    """(primal - p*) / p* against m / m* on log axes: every seed a dot, the best a line, m* (m/m* = 1) and each
    problem's m_crit marked; one panel for the proven small problems, and, when committed, one for MNIST 50
    images per beta and one for Figure 2's 600 images (the bracket, against U). Returns the figure."""
    extra = [k for k in ("mnist50", "bracket") if getattr(result, k)]
    fig, axes = plt.subplots(1, 1 + len(extra), figsize=(6.5 * (1 + len(extra)), 4.8), squeeze=False)
    ax = axes[0, 0]
    floor = 1e-9
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(result.problems)))
    for color, pb, opt, sw in zip(colors, result.problems, result.optima, result.sweeps):
        rel = np.maximum((sw.objective - opt.objective) / opt.objective, floor)
        ratio = sw.widths / opt.m_star
        jitter = np.exp(np.linspace(-0.04, 0.04, rel.shape[1]))
        ax.scatter((ratio[:, None] * jitter[None, :]).ravel(), rel.ravel(), s=6, color=color, alpha=0.35)
        ax.plot(ratio, rel.min(1), "-o", color=color, ms=4, label=f"{pb.name} (m* = {opt.m_star})")
        hit = rel.min(1) <= REACH_TOL
        if hit.any():
            k = int(np.argmax(hit))
            ax.plot(ratio[k], rel[k].min(), "*", color=color, ms=13, mec="k")
    ax.axvline(1.0, color="k", ls="--", lw=1, label="m = m*")
    ax.axhline(REACH_TOL, color="tab:red", ls=":", lw=1, label=f"reach tolerance {REACH_TOL:g}")
    ax.set(xscale="log", yscale="log", xlabel="m / m*", ylabel="(balanced primal - p*) / p*  (floor 1e-9)",
           title=f"(a) proven small problems (p* certified), {result.sweeps[0].objective.shape[1]} seeds per width\n"
                 "star: m_crit (smallest width whose best seed reaches p*)")
    ax.legend(fontsize=7, loc="upper right")
    for j, key in enumerate(extra, start=1):
        ax = axes[0, j]
        if key == "mnist50":
            for b in result.mnist50["betas"]:
                ms, U = b["m_star"], b["U"]
                pts = [(w["m"] / ms, (o - U) / U) for w in b["widths"] for o in w["objectives"]]
                ax.scatter(*zip(*pts), s=10, alpha=0.5)
                best = [(w["m"] / ms, (min(w["objectives"]) - U) / U) for w in b["widths"]]
                ax.plot(*zip(*best), "-o", ms=4, label=f"beta {b['beta']:g} (m* = {ms})")
            ax.set_title("(b) MNIST, 50 images: against U(beta) of column generation")
        else:
            br = result.bracket
            U, ms = br["U"], br["m_star_U"]
            top = 0.2                        # points above are drawn at the edge, with their value
            for p in br["points"]:
                rel = (p["objective"] - U) / U
                ax.plot(p["m"] / ms, min(rel, top), "o", mfc="none", color="tab:gray")
                if rel > top:
                    ax.annotate(f"m = {p['m']}: {rel:+.0%}", (p["m"] / ms, top), fontsize=7, textcoords="offset points",
                                xytext=(-60, -12))
            ax.plot([], [], "o", mfc="none", color="tab:gray", label="primal as trained (after its budget)")
            ax.plot(br["m_best"] / ms, (br["best_balanced"] - U) / U, "o", color="tab:blue",
                    label=f"best m = {br['m_best']} seed, balanced")
            if br.get("grown"):
                gr = br["grown"]
                ax.plot(gr["m"] / ms, (gr["objective"] - U) / U, "*", color="tab:red", ms=12,
                        label=f"m = 512 seed grown to {gr['m']}, balanced")
            lows = [(br["best_balanced"] - U) / U] + ([(br["grown"]["objective"] - U) / U] if br.get("grown") else [])
            ax.set_ylim(min(lows) - 0.02, top * 1.05)
            ax.axhline(0.0, color="k", ls=":", lw=1, label="U (best point of the bracket's run)")
            ax.set_title(f"(c) Figure 2's 600 images, sigma 0.5: against U (m* of U = {ms})")
        ax.axvline(1.0, color="k", ls="--", lw=1)
        ax.set(xscale="log", xlabel="m / m*", ylabel="(primal - U) / U")
        ax.legend(fontsize=7)
    fig.suptitle(f"Theorem 1 where it applies: the primal's width against m*; scale = {result.scale}")
    fig.tight_layout()
    return fig
