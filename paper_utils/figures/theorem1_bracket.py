r"""Theorem 1 put to the test on Figure 2's data: the primal against the best convex solution found.

Theorem 1: a two-layer ReLU network of width ``m >= m*`` trained to its *global* optimum has the
objective ``p*`` of the convex program of eq. (4) over *every* sign pattern. Neither side of that
equality is computable at image sizes, so this module brackets it, on Figure 2's 600 training images
(MNIST, Gaussian sigma, ``beta = 1e-5``, k = 3):

- **upper bounds** (feasible points, each a value of the same objective, so each ``>= p*``):
  the primal of eq. (2) at ``m = 512`` trained long from several seeds (continuing the ``cpu`` optimum
  basis's converged seeds with a long L-BFGS budget); the primal at other widths; the sampled convex
  program of eq. (4) solved exactly at P = 2,000 random patterns (``d_P``, notebook 01); and column
  generation (:func:`paper_utils.dual_solver.solve_global`) started from the primal's own patterns and
  from random ones. ``U`` (the best-known upper bound) is the smallest of them.
- **a lower bound** on ``p*``: the weak-duality bound of column generation with a *proven* bound on
  the largest constraint violation (:mod:`paper_utils.dual_solver.pricing`); sound and very loose.
- **the search**: the largest violation ``c(u) / beta`` column generation's last search found
  (a search, not a bound: a value above 1 proves that U is not ``p*``; 1 would prove nothing).

Everything is computed by the command

    python -m paper_utils.figures.theorem1_bracket [--sigma 0.5]      (about an hour on 2 cores)

which caches each run (kind ``bracket``; a rerun resumes) and writes ``results/cpu/bracket_sigma0.5.json``
(the numbers) and ``results/cpu/bracket_sigma0.5.npz`` (the best convex point ``G`` (d, P), ``W``, ``Z``
(P, d), the best primal ``U`` (m, d), ``v`` (m,), the images ``noisy``, ``clean`` (600, 28, 28) float32 in
the normalised units, and the scalars), from which both objectives and the convex point's feasibility
can be recomputed without this package (``tests/test_bracket.py`` does). Notebook 11 draws the
bracket from these files; it does not run the long command.

Letter key: N images, M = 784 N patches, d = 9 patch dimension, P patterns, m filters.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from paper_utils.data.mnist import load_mnist, mnist_denoising
from paper_utils.dual_solver import SOLVER_VERSION, solve_global
from paper_utils.nets.patches import extract_patches
from paper_utils.pipeline import config
from paper_utils.pipeline.cache import Cache
from paper_utils.pipeline.paths import project_root
from paper_utils.dual_solver.sparsify import count_neurons
from paper_utils.nets.balance import balanced_regulariser, trained_regulariser
from paper_utils.report.claims import Claim
from paper_utils.training.convergence import CONVERGENCE_CODE_VERSION, ConvergedPrimal, converge_primal
from paper_utils.training.denoisers import load_or_solve_exact, load_or_solve_exact_data, train_denoisers
from paper_utils.training.optimum import converged_primals

__all__ = ["SETTINGS", "bracket_paths", "run_bracket", "save_bracket", "load_bracket", "bracket_claims",
           "bracket_rows", "plot_bracket",
           "patterns_within", "main"]

#: the bracket's budgets: iterations and rounds, not the clock (``time_limit`` is a safety net per run).
#: Measured on 2 cores: 62 minutes in all (seeds 480-504 s each, about 0.3 s per L-BFGS iteration at
#: m = 512; m = 128 93 s; m = 2,048 941 s, 1.4-1.6 s per iteration; generation 705 s and 488 s, rounds of
#: 0.5-3 minutes growing with the patterns).
SETTINGS = dict(
    seeds=(0, 1, 2),             # m = 512 seeds, continued from the cpu optimum basis's converged seeds
    seed_lbfgs_iter=1500,        # further L-BFGS iterations per seed
    widths=(128, 2048),          # the width sweep besides m = 512 (Kaiming seed 0, the cpu Adam epochs first)
    width_lbfgs_iter=600,
    gen_rounds=6,                # column generation rounds from each start, adding gen_add patterns each
    gen_add=256,
    gen_n_init=256,              # random start: initial random patterns
    stop_violation=0.1,          # stop early when the search finds no c(u) above beta (1 + 0.1)
    time_limit=4 * 3600.0,
)
#: "the primal reaches the convex optimum": within 5% of U; "patterns needed": within 1% of U
PRIMAL_TOL, PATTERNS_TOL = 0.05, 0.01


def bracket_paths(sigma: float, root: Path | None = None) -> tuple[Path, Path]:
    """``(json, npz)`` paths of the committed bracket for ``sigma``."""
    folder = (root or project_root()) / "results" / "cpu"
    return folder / f"bracket_sigma{sigma:g}.json", folder / f"bracket_sigma{sigma:g}.npz"


def _primal_record(c: ConvergedPrimal, m: int, label: str) -> dict:
    return {"label": label, "m": m, "objective": c.objective, "converged": bool(c.converged),
            "stop_reason": c.stop_reason, "grad_norm": c.grad_norm,
            "lbfgs_iterations": c.history["phase"].count("lbfgs"), "seconds": c.seconds}


def _cached_primal(cache: Cache, name: str, compute) -> ConvergedPrimal:
    payload = cache.load("bracket", name)
    if payload is not None:
        return ConvergedPrimal.from_dict(payload["result"])
    result = compute()
    cache.save("bracket", name, {"result": result.as_dict()})
    return result


def _cached_generation(cache: Cache, name: str, compute) -> dict:
    payload = cache.load("bracket", name)
    if payload is not None:
        return payload
    t0 = time.perf_counter()
    sol = compute()
    payload = {"objective": sol.objective, "patterns": int(sol.G.shape[1]), "rounds": sol.rounds,
               "stop_reason": sol.stop_reason, "lower_bound": sol.lower_bound,
               "violation_bound": sol.violation_bound, "seconds": time.perf_counter() - t0,
               "G": torch.as_tensor(sol.G).double().cpu(), "W": torch.as_tensor(sol.W).double().cpu(),
               "Z": torch.as_tensor(sol.Z).double().cpu()}
    cache.save("bracket", name, payload)
    return payload


def run_bracket(sigma: float = 0.5, *, scale: str = "cpu", settings: dict | None = None, device="cpu",
                cache: Cache | None = None, progress: bool = True, log=print) -> dict:
    """Every run of the bracket (module docstring) on Figure 2's data at ``scale`` (``cpu``: 600 images;
    ``smoke`` for tests) for ``sigma``, with :data:`SETTINGS` updated by ``settings``; cached.

    Returns the summary written to the JSON file plus, under ``"arrays"``, the arrays of the npz.
    """
    s = {**SETTINGS, **(settings or {})}
    cache = cache or Cache()
    dev = torch.device(device)
    cfg = config.mnist_denoise_config(scale, sigma, seed=0)
    budget = config.optimum_budget(scale)
    tag = f"{cfg.label()}-{cfg.key()}-v{CONVERGENCE_CODE_VERSION}-s{SOLVER_VERSION}"
    run = train_denoisers(cfg, device=dev, cache=cache, progress=progress)          # notebook 01's models
    train = run.train
    Yp = extract_patches(train.noisy, cfg.kernel_size)
    x = train.clean.reshape(-1)
    exact = load_or_solve_exact(run, cache=cache)
    log(f"d_P at P = {run.dual.n_patterns} random patterns: {exact.solution.objective:.6e} "
        f"(certified gap {exact.solution.gap:.1e})")

    # -- the primal at m = 512, long, from the cpu budget's converged seeds
    starts = converged_primals(run, budget, device=dev, cache=cache, progress=progress)
    seeds = []
    for start in starts:
        if start.init_seed not in s["seeds"]:
            continue
        name = f"{tag}-primal-seed{start.init_seed}-from-l{budget.lbfgs_max_iter}-plus{s['seed_lbfgs_iter']}"
        c = _cached_primal(cache, name, lambda start=start: converge_primal(
            Yp.to(dev), x.to(dev), cfg.beta, U0=start.U, v0=start.v, adam_epochs=0, init_seed=None,
            lbfgs_max_iter=s["seed_lbfgs_iter"], time_limit=s["time_limit"], progress=progress))
        seeds.append((start.init_seed, c))
        log(f"primal m = {cfg.n_filters} seed {start.init_seed}: {c.objective:.6e} ({c.stop_reason}; {c.seconds:.0f} s)")
    widths = {}
    for m in s["widths"]:
        name = f"{tag}-primal-width{m}-kaiming0-a{budget.adam_epochs}-l{s['width_lbfgs_iter']}"
        widths[m] = _cached_primal(cache, name, lambda m=m: converge_primal(
            Yp.to(dev), x.to(dev), cfg.beta, n_filters=m, init_seed=0, adam_epochs=budget.adam_epochs,
            lr=cfg.lr_primal, batch_size=cfg.batch_size, rows_per_image=train.noisy[0].numel(), lbfgs_max_iter=s["width_lbfgs_iter"],
            time_limit=s["time_limit"], progress=progress))
        log(f"primal m = {m}: {widths[m].objective:.6e} ({widths[m].stop_reason}; {widths[m].seconds:.0f} s)")
    best_seed, best_primal = min(seeds, key=lambda t: t[1].objective)

    # -- column generation, from the best primal's patterns and from random ones
    Yp64, x64 = Yp.double(), x.double()
    common = dict(tol=s["stop_violation"], solve_tol=1e-5, max_rounds=s["gen_rounds"], add_per_round=s["gen_add"],
                  exact=False, antipodes=False, seed=0, time_limit=s["time_limit"], progress=progress)
    gen_tag = f"{tag}-gen-r{s['gen_rounds']}-a{s['gen_add']}-v{s['stop_violation']}"
    gen_primal = _cached_generation(cache, f"{gen_tag}-from-primal-seed{best_seed}-plus{s['seed_lbfgs_iter']}",
                                    lambda: solve_global(Yp64, x64, cfg.beta, G0=best_primal.U.double().T, **common))
    log(f"generation from the primal's patterns: {gen_primal['objective']:.6e} with {gen_primal['patterns']} patterns")
    gen_random = _cached_generation(cache, f"{gen_tag}-from-random{s['gen_n_init']}",
                                    lambda: solve_global(Yp64, x64, cfg.beta, n_init=s["gen_n_init"], **common))
    log(f"generation from random patterns: {gen_random['objective']:.6e} with {gen_random['patterns']} patterns")

    # -- the random-pattern curve of Figure 10 (certified d_P per P, cached by notebook 08)
    random_curve = {}
    for P in config.ablation_pattern_counts(scale):
        sol = load_or_solve_exact_data(config.ablation_config(scale, sigma, P, seed=0), train, tol=1e-6,
                                       time_limit=budget.exact_time_limit, cache=cache).solution
        random_curve[int(P)] = sol.objective

    return _summary(sigma, cfg, s, train, exact, seeds, widths, best_seed, best_primal, gen_primal, gen_random,
                    random_curve)


def _summary(sigma, cfg, s, train, exact, seeds, widths, best_seed, best_primal, gen_primal, gen_random,
             random_curve) -> dict:
    convex = {"from_primal": gen_primal, "from_random": gen_random}
    best_convex_key = min(convex, key=lambda k: convex[k]["objective"])
    best_convex = convex[best_convex_key]
    primal_best = best_primal.objective
    U = min(primal_best, best_convex["objective"], exact.solution.objective,
            *(w.objective for w in widths.values()))
    lower = max(gen_primal["lower_bound"], gen_random["lower_bound"])
    final_violation = best_convex["rounds"][-1]["best_violation"]        # the best point's last search
    summary = {
        "sigma": sigma, "scale": cfg.scale, "seed": cfg.seed, "n_images": len(train), "M": int(train.clean.numel()), "beta": cfg.beta,
        "m": cfg.n_filters, "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in s.items()},
        "best_known": U,
        "primal_seeds": {str(seed): _primal_record(c, cfg.n_filters, f"seed {seed}") for seed, c in seeds},
        "primal_widths": {str(m): _primal_record(c, m, f"m = {m}") for m, c in widths.items()}
        | {str(cfg.n_filters): _primal_record(best_primal, cfg.n_filters, f"seed {best_seed}")},
        "best_primal_seed": best_seed,
        "convex_random_P2000": {"objective": exact.solution.objective, "gap": exact.solution.gap,
                                "patterns": int(exact.solution.G.shape[1])},
        "convex_random_curve": {str(P): v for P, v in random_curve.items()},
        "convex_from_primal": {k: v for k, v in gen_primal.items() if k not in ("G", "W", "Z")},
        "convex_from_random": {k: v for k, v in gen_random.items() if k not in ("G", "W", "Z")},
        "best_convex": best_convex_key,
        "final_search_violation_beta": final_violation,
        "proven_lower_bound": lower,
    }
    arrays = {"G": best_convex["G"].numpy(), "W": best_convex["W"].numpy(), "Z": best_convex["Z"].numpy(),
              "U": best_primal.U.double().numpy(), "v": best_primal.v.double().numpy(),
              "noisy": train.noisy[:, 0].float().numpy(), "clean": train.clean[:, 0].float().numpy(),
              "beta": np.float64(cfg.beta), "sigma": np.float64(sigma), "seed": np.int64(cfg.seed),
              "n_images": np.int64(len(train)), "objective_convex": np.float64(best_convex["objective"]),
              "objective_primal": np.float64(primal_best)}
    return summary | {"arrays": arrays}


def save_bracket(summary: dict, root: Path | None = None) -> tuple[Path, Path]:
    """Write the JSON summary and the npz of :func:`run_bracket`'s result; returns their paths."""
    path_json, path_npz = bracket_paths(summary["sigma"], root)
    path_json.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path_npz, **summary["arrays"])
    path_json.write_text(json.dumps({k: v for k, v in summary.items() if k != "arrays"}, indent=1, default=float))
    return path_json, path_npz


def load_bracket(sigma: float = 0.5, root: Path | None = None) -> dict | None:
    """The committed bracket summary for ``sigma`` (None when the command has not been run)."""
    path_json, _ = bracket_paths(sigma, root)
    return json.loads(path_json.read_text()) if path_json.exists() else None


def patterns_within(rounds_or_curve, target: float) -> int | None:
    """Fewest patterns whose objective is ``<= target``: from generation rounds (dicts with ``patterns``
    and ``objective``) or from a ``{P: objective}`` curve; None if none reaches it."""
    pairs = ([(r["patterns"], r["objective"]) for r in rounds_or_curve] if isinstance(rounds_or_curve, list)
             else [(int(P), o) for P, o in rounds_or_curve.items()])
    hits = [P for P, o in pairs if o <= target]
    return min(hits) if hits else None


def bracket_balance(b: dict, root: Path | None = None) -> dict:
    """The bracket's widths and balance: ``m_star_U`` (neurons of U's solution,
    :func:`paper_utils.dual_solver.sparsify.count_neurons`), and the best m = 512 seed balanced
    (:mod:`paper_utils.nets.balance`), from ``b["arrays"]`` or the committed npz; empty when neither is there."""
    arrays = b.get("arrays")
    if arrays is None:
        _, path_npz = bracket_paths(b["sigma"], root)
        if not path_npz.exists():
            return {}
        with np.load(path_npz) as z:
            arrays = {k: z[k] for k in ("W", "Z", "U", "v", "beta", "objective_primal")}
    U_, v_ = np.asarray(arrays["U"], dtype=np.float64), np.asarray(arrays["v"], dtype=np.float64)
    beta = float(arrays["beta"])
    obj = float(arrays["objective_primal"])
    bal = obj - trained_regulariser(U_, v_, beta) + balanced_regulariser(U_, v_, beta)
    return {"m_star_U": count_neurons(arrays["W"], arrays["Z"]), "m": int(U_.shape[0]),
            "best_primal_trained": obj, "best_primal_balanced": bal}


def bracket_claims(b: dict) -> list[Claim]:
    """Theorem 1's bracket (kind ``ours``): the widest primal against U, balanced, with m and m* of U. U stays the
    best point of the bracket's own run (:func:`run_bracket`); the grown primal never redefines it, so the rule is
    not decided by its own reference.

    The widest primal is the grown one (:func:`grow_bracket`) when it has been run, else the best m = 512 seed; at
    m = 512 against U's m* = 1,760 Theorem 1's premise does not hold, and the claim says so. The former
    ``fig10.optimum.patterns_to_U`` (circular: U is the generated run's own end point) is retired, replaced by
    :mod:`paper_utils.figures.fig10_pattern_ablation`'s comparison at equal P."""
    U = b["best_known"]
    widths = bracket_balance(b)
    primal_trained = min(r["objective"] for r in b["primal_seeds"].values())
    primal_best = widths.get("best_primal_balanced", primal_trained)
    grown = b.get("primal_grown")
    if grown is not None:                # the widest primal: the m = 512 seed grown to m >= m* of U, balanced
        widths["best_primal_512_balanced"] = primal_best
        widths["m"], primal_best = grown["m"], grown["objective"]
    excess = (primal_best - U) / U
    d_p = b["convex_random_P2000"]["objective"]
    sigma = b["sigma"]
    details = {
        "n_images": b["n_images"], "best_known": U,
        "primal_seeds": {k: r["objective"] for k, r in b["primal_seeds"].items()},
        "primal_converged": [k for k, r in b["primal_seeds"].items() if r["converged"]],
        "primal_widths": {k: r["objective"] for k, r in b["primal_widths"].items()},
        "convex_from_primal": b["convex_from_primal"]["objective"],
        "convex_from_random": b["convex_from_random"]["objective"],
        "convex_random_P2000": d_p,
        "final_search_violation_beta": b["final_search_violation_beta"],
        "proven_lower_bound": b["proven_lower_bound"],
        "primal_best_vs_dP": (primal_best - d_p) / d_p,
        "primal_best_trained_vs_U": (primal_trained - U) / U,
        **widths,
        "m_star": widths.get("m_star_U"),
        "primal_grown": grown,
    }
    m, ms = widths.get("m", b["m"]), widths.get("m_star_U")
    premise = ("" if ms is None else
               f" [m = {m:,} < m* = {ms:,} of U: Theorem 1's premise does not hold at this width]" if m < ms
               else f" [m = {m:,} >= m* = {ms:,} of U]")
    if grown is not None:
        trained = (f"m = 512 seed grown to {grown['m']:,} units, " +
                   ("converged" if grown["converged"] else f"after {grown['lbfgs_iterations']:,} L-BFGS iterations (not converged)"))
    else:
        n_conv = len(details["primal_converged"])
        trained = "converged" if n_conv == len(b["primal_seeds"]) else "trained long, after its budget (not converged)"
    return [
        Claim(f"theorem1.bracket.sigma{sigma:g}",
              f"Theorem 1 / Fig. 2: the primal ({trained}), balanced, reaches the convex optimum: best primal within "
              f"5% of U, the best point of the bracket's run (the smallest feasible objective of its convex and m = 512 "
              f"primal runs; a primal below it is better than any convex point found){premise}",
              excess, PRIMAL_TOL, excess <= PRIMAL_TOL, "(best balanced primal - U) / U", details=details,
              basis="optimum", kind="ours"),
    ]


def bracket_rows(b: dict) -> list[dict]:
    """One row per upper bound (method, size, objective, excess over U, how it stopped, seconds), then the
    search's largest violation and the proven lower bound."""
    U = b["best_known"]
    rows = []

    def add(method, size, objective, stop, seconds):
        rows.append({"method": method, "patterns / width": size, "objective": objective,
                     "vs U": (objective - U) / U, "stop": stop, "seconds": seconds})

    for k, r in b["primal_seeds"].items():
        add(f"primal, seed {k}", f"m = {r['m']}", r["objective"],
            "rule met" if r["converged"] else f"budget ({r['lbfgs_iterations']} L-BFGS it.)", r["seconds"])
    for k, r in b["primal_widths"].items():
        if int(k) != b["m"]:
            add("primal, Kaiming seed 0", f"m = {k}", r["objective"],
                "rule met" if r["converged"] else f"budget ({r['lbfgs_iterations']} L-BFGS it.)", r["seconds"])
    grown = b.get("primal_grown")
    if grown is not None:
        add(f"primal, {grown['label']} (balanced)", f"m = {grown['m']}", grown["objective"],
            "rule met" if grown["converged"] else f"budget ({grown['lbfgs_iterations']} L-BFGS it.)", grown["seconds"])
    rnd = b["convex_random_P2000"]
    add("convex, random patterns (certified d_P)", rnd["patterns"], rnd["objective"], f"gap {rnd['gap']:.1e}", None)
    for key, label in (("convex_from_primal", "convex, generated from the primal's patterns"),
                       ("convex_from_random", "convex, generated from random patterns")):
        g = b[key]
        add(label, g["patterns"], g["objective"], f"{len(g['rounds']) - 1} rounds; last search "
            f"{g['rounds'][-1]['best_violation']:.2f} beta", g["seconds"])
    rows.append({"method": "proven lower bound on p* (weak duality)", "patterns / width": "",
                 "objective": b["proven_lower_bound"], "vs U": (b["proven_lower_bound"] - U) / U,
                 "stop": "", "seconds": None})
    return rows


def plot_bracket(ax, b: dict):
    """Objective against the number of patterns: random samples, generation from random and from the
    primal's patterns, the primal seeds and widths as markers, U as a line. Returns ``ax``."""
    curve = sorted((int(P), o) for P, o in b["convex_random_curve"].items())
    ax.plot(*zip(*curve), "o-", label="random patterns (certified d_P)")
    for key, label, marker in (("convex_from_random", "generated from random patterns", "s-"),
                               ("convex_from_primal", "generated from the primal's patterns", "^-")):
        rounds = b[key]["rounds"]
        ax.plot([r["patterns"] for r in rounds], [r["objective"] for r in rounds], marker, label=label)
    for k, r in b["primal_seeds"].items():
        ax.plot(r["m"], r["objective"], "D", color="C3", label="primal m = 512, seeds (x: width m)" if k == "0" else None)
    top = 1.3 * b["best_known"]          # the region around U; points above it are marked at the edge
    first = True
    for k, r in b["primal_widths"].items():
        if int(k) != b["m"]:
            y = min(r["objective"], top)
            ax.plot(r["m"], y, "v", color="C4", label="primal, other widths" if first else None)
            if r["objective"] > top:
                ax.annotate(f"m = {k}: {r['objective']:.3g} (off the axis)", (r["m"], y), fontsize=7,
                            textcoords="offset points", xytext=(-150, -12))
            first = False
    grown = b.get("primal_grown")
    if grown is not None:
        ax.plot(grown["m"], min(grown["objective"], top), "*", color="C3", ms=12,
                label=f"primal grown 512 -> {grown['m']}, balanced")
    ax.axhline(b["best_known"], color="k", ls=":", lw=1, label=f"U = {b['best_known']:.5g} (best point of the bracket's run)")
    ax.set_ylim(min(0.97 * b["best_known"], 0.98 * grown["objective"] if grown is not None else math.inf), top)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("number of sign patterns P (primal: width m)")
    ax.set_ylabel("objective (eq. 2 / eq. 4), feasible points")
    ax.set_title(f"Theorem 1 bracket, MNIST sigma = {b['sigma']:g}, {b['n_images']} images")
    ax.legend(fontsize=7, loc="lower left")
    return ax


#: the grown primal (``make bracket-grow``): width, L-BFGS budget, restarts, the new units' seed and |v| at the start
GROW = dict(m=2048, lbfgs_iter=1500, restarts=10, seed=0, v_init=1e-3, time_limit=3600.0)


def grow_units(U: torch.Tensor, v: torch.Tensor, m: int, *, seed: int, v_init: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Widen ``(U (m0, d), v (m0,))`` to ``m`` units: the new ``u_j`` drawn Kaiming-uniform (seeded), the new ``v_j``
    of size ``v_init`` with random signs, so the network's function moves by at most ``v_init`` per unit and
    no unit is dead (a unit with ``v_j = 0`` or ``u_j = 0`` gets no gradient). Random starts only: nothing of
    a convex solution enters."""
    from paper_utils.training.convergence import kaiming_init

    m0, d = U.shape
    if m <= m0:
        raise ValueError(f"grow to m > {m0}, got {m}")
    Un, _ = kaiming_init(m - m0, d, seed=seed, dtype=U.dtype)
    signs = torch.where(torch.rand(m - m0, generator=torch.Generator().manual_seed(seed + 1)) < 0.5, -1.0, 1.0)
    return torch.cat([U, Un]), torch.cat([v, (v_init * signs).to(v.dtype)])


def grow_bracket(sigma: float = 0.5, settings: dict | None = None, *, root: Path | None = None, cache: Cache | None = None,
                 progress: bool = True, log=print) -> dict:
    """Theorem 1's width question on the bracket's data (issue 34, item 4): the best m = 512 seed, grown to
    ``GROW["m"]`` units (>= m* of U) by :func:`grow_units` and trained by full-batch L-BFGS with balanced units
    (:func:`paper_utils.training.convergence.converge_primal`, ``rebalance=True``) for ``GROW["lbfgs_iter"]``
    iterations. Reads the committed ``bracket_sigma*.npz`` (its images and the m = 512 weights), adds
    ``"primal_grown"`` to the JSON and ``U_grown``, ``v_grown`` to the npz; cached (kind ``bracket``)."""
    g = {**GROW, **(settings or {})}
    cache = cache or Cache()
    path_json, path_npz = bracket_paths(sigma, root)
    b = json.loads(path_json.read_text())
    with np.load(path_npz) as z:
        arrays = {k: z[k] for k in z.files}
    cfg = config.mnist_denoise_config(b["scale"], sigma, seed=b["seed"])
    noisy = torch.from_numpy(arrays["noisy"]).float().unsqueeze(1)
    Yp = extract_patches(noisy, cfg.kernel_size)
    x = torch.from_numpy(arrays["clean"]).float().reshape(-1)
    U0, v0 = grow_units(torch.from_numpy(arrays["U"]).float(), torch.from_numpy(arrays["v"]).float(), g["m"],
                        seed=g["seed"], v_init=g["v_init"])
    name = (f"grown-sigma{sigma:g}-from{arrays['U'].shape[0]}-m{g['m']}-s{g['seed']}-v{g['v_init']:g}-l{g['lbfgs_iter']}"
            f"-r{g['restarts']}-c{CONVERGENCE_CODE_VERSION}")
    c = _cached_primal(cache, name, lambda: converge_primal(
        Yp, x, float(arrays["beta"]), U0=U0, v0=v0, adam_epochs=0, init_seed=None, lbfgs_max_iter=g["lbfgs_iter"],
        restarts=g["restarts"], rebalance=True, time_limit=g["time_limit"], progress=progress))
    rec = _primal_record(c, g["m"], f"seed {b['best_primal_seed']} grown {arrays['U'].shape[0]} -> {g['m']}")
    rec.update(balanced=True, settings=g)
    log(f"grown primal m = {g['m']}: {c.objective:.6e} balanced ({(c.objective - b['best_known']) / b['best_known']:+.2%} vs U; "
        f"{c.stop_reason}; {c.seconds:.0f} s)")
    b["primal_grown"] = rec
    arrays["U_grown"], arrays["v_grown"] = c.U.double().numpy(), c.v.double().numpy()
    np.savez_compressed(path_npz, **arrays)
    path_json.write_text(json.dumps(b, indent=1, default=float))
    return b


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Theorem 1's bracket on Figure 2's cpu data (long: about an hour on 2 cores)")
    parser.add_argument("--sigma", type=float, default=0.5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--grow", action="store_true",
                        help="only grow the committed m = 512 primal to GROW['m'] units and train it (GROW: budget)")
    args = parser.parse_args(argv)
    if args.grow:
        b = grow_bracket(args.sigma)
        for claim in bracket_claims(b):
            print(f"{claim.name}: measured {claim.measured}, holds {claim.holds}")
        return 0
    summary = run_bracket(args.sigma, device=args.device)
    for path in save_bracket(summary):
        print(f"wrote {path}")
    for claim in bracket_claims(summary):
        print(f"{claim.name}: measured {claim.measured}, holds {claim.holds}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
