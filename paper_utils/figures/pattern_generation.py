r"""Our figure beyond the paper (notebook 11): how many sign patterns the full program needs, random
sampling against pattern generation (Figure 10, sharpened).

Theorem 1 is about eq. (4) over *every* sign pattern; the paper samples P of them at random, and a
random sample's optimum ``d_P`` is an upper bound on the full program's ``p*`` by an amount sampling
never measures. On Figure 2's data (MNIST, sigma = 0.5, beta = 1e-5, k = 3: d = 9) the sampled dual
(eq. 4) is solved exactly (:func:`paper_utils.dual_solver.solve_dual`) for random pattern samples of
growing size P, and the full program is approached by column generation
(:func:`paper_utils.dual_solver.solve_global`): at each round the residual prices the missing patterns
(``c(u) = |lam^T (Yp u)_+| > beta``, best-response search) and the most violating ones are added. At
d = 9 and M in the tens of thousands no proof of global optimality is possible (see
:mod:`paper_utils.dual_solver.pricing`). A small problem whose arrangement can be enumerated (2 x 2
windows of one MNIST digit, d = 4) shows the certified case. The primal of eq. (2) at the paper's width,
trained on the same images until its stopping rule holds or its budget ends (the tables say which), is a
further upper bound on ``p*``.

Generated against random patterns: compared at equal pattern counts
(:func:`compare_at_equal_patterns`: each random sample against the generated set of at most as many
patterns). The earlier rule, "generated patterns reach within 1e-3 of the best objective found with
fewer patterns" (``generation.patterns_to_best``, retired), was circular: the best found is usually the
generated run's own end point, which its curve reaches by definition.

Per scale (:data:`SETTINGS`): ``n_images`` training images of the scale's configuration are used (at
``cpu`` scale a subset of its 600, to fit the notebook's budget of a few minutes on 2 cores), and the
number of generation rounds decides where the generation stops. Results are cached
(:class:`paper_utils.pipeline.cache.Cache`, kind ``generation``). Claims are on the *optimum* basis.

Shapes: patches Yp (M, d); targets x (M,); generators G (d, P). Letter key: N images, M patches,
d patch dimension, P patterns, m filters.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch

from paper_utils.pipeline import config, runtime
from paper_utils.pipeline.cache import Cache
from paper_utils.pipeline.config import DRY_RUN_SOLVE_SECONDS, DenoiseConfig, dry_run, optimum_budget
from paper_utils.figures import theorem1_bracket
from paper_utils.report.claims import Claim, training_note
from paper_utils.training.convergence import CONVERGENCE_CODE_VERSION, converge_primal, load_or_converge_primal
from paper_utils.data.mnist import load_mnist, mnist_denoising
from paper_utils.nets.dual import sample_generators
from paper_utils.dual_solver import SOLVER_VERSION, GlobalSolution, solve_dual, solve_global
from paper_utils.nets.patches import extract_patches

__all__ = ["SETTINGS", "GenerationResult", "PatternGenerationResult", "run_generation", "converged_primal_objectives",
           "small_certified", "patterns_to_reach", "compare_at_equal_patterns", "run", "plot",
           "plot_generation", "plot_bracket"]


#: per scale: images used, random sample sizes, initial random patterns, rounds and patterns added per
#: round, and a wall-clock safety net (s). The initial sample has no antipodes here: with g and -g both
#: present the tilted rays of solve_dual stall (opposite-sign blocks) and the barrier takes over, 40x
#: slower at this size (measured at smoke size: 32 s against 0.8 s). The number of rounds decides, so
#: a rerun on any host reaches the same patterns; the time limit is set far above the expected time
#: (``cpu``: 25 rounds, 1,600 patterns, about 240 s on 2 cores) and a run stopped by it says so.
def settings(scale: str) -> dict:
    """``SETTINGS[scale]``; a dry run (:func:`paper_utils.pipeline.config.dry_run`) keeps one round."""
    s = dict(SETTINGS[scale])
    if dry_run(scale):
        s.update(rounds=1, time_limit=DRY_RUN_SOLVE_SECONDS)
    return s


SETTINGS = {
    "smoke": dict(n_images=20, random_P=(32, 64, 128, 256), n_init=32, rounds=4, add=32, time_limit=None),
    "cpu": dict(n_images=50, random_P=(64, 128, 256, 512, 1024, 2048), n_init=64, rounds=25, add=64, time_limit=1800),
    # paper: Figure 2's 600 images; 15 rounds of 500 reach the largest random sample (8,000 patterns)
    "paper": dict(n_images=600, random_P=(500, 1000, 2000, 4000, 8000), n_init=500, rounds=15, add=500,
                  time_limit=7200),
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
    s = settings(scale)
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
    """The primal of eq. (2) at the paper's width (m = ``cfg.n_filters``) trained on the same images as
    :func:`run_generation` until its stopping rule holds or its budget ends, from each seed of the scale's optimum budget
    (:func:`paper_utils.pipeline.config.optimum_budget`: Adam, then L-BFGS until the stopping rule or the
    budget); cached. Each entry: ``seed``, ``objective`` (eq. 2 with weight decay ``beta``: an upper
    bound on the full program's ``p*``, as trained: not balanced, see ``../shared/DESIGN.md`` section 11),
    ``converged`` (the stopping rule held; False: stopped by the budget),
    ``stop_reason``, ``seconds``. When the scale uses every training image (``paper``), these are notebook
    01's converged primals of the same seeds (:func:`_primal_of_figure2`)."""
    s, budget = settings(scale), optimum_budget(scale)
    cache = cache or Cache()
    if s["n_images"] == cfg.n_train:
        return _primal_of_figure2(cfg, budget, device=device, cache=cache, progress=progress)
    name = (f"{cfg.label()}-{cfg.key()}-{scale}-primal-n_images{s['n_images']}-seeds{'_'.join(map(str, budget.seeds))}"
            f"-a{budget.adam_epochs}-l{budget.lbfgs_max_iter}-t{budget.time_limit}-v{CONVERGENCE_CODE_VERSION}")
    payload = cache.load("generation", name)
    if payload is not None:
        return payload["seeds"]
    out = _primal_of_subset(cfg, s["n_images"], budget, device=device, progress=progress)
    cache.save("generation", name, {"seeds": out})
    return out


def _seed_row(seed: int, r) -> dict:
    return {"seed": seed, "objective": r.objective, "converged": r.converged, "stop_reason": r.stop_reason,
            "seconds": r.seconds}


def _primal_of_subset(cfg: DenoiseConfig, n_images: int, budget, *, device, progress: bool) -> list[dict]:
    """The seeds of :func:`converged_primal_objectives` trained on the first ``n_images`` training images
    (not cached here)."""
    Yp, x = _problem(cfg, n_images, device)
    return [_seed_row(seed, converge_primal(
        Yp.float(), x.float(), cfg.beta, n_filters=cfg.n_filters, init_seed=seed, adam_epochs=budget.adam_epochs,
        lr=cfg.lr_primal, batch_size=cfg.batch_size, rows_per_image=Yp.shape[0] // n_images,
        lbfgs_max_iter=budget.lbfgs_max_iter, time_limit=budget.time_limit, progress=progress))
        for seed in budget.seeds]


def _primal_of_figure2(cfg: DenoiseConfig, budget, *, device, cache: Cache, progress: bool) -> list[dict]:
    """The seeds of :func:`converged_primal_objectives` when the generation uses every training image of
    ``cfg``: the same computation as notebook 01's converged primals (``converged/`` entries of
    :func:`paper_utils.training.convergence.load_or_converge_primal`: same data, initialisations and
    budget), so they are read from, or written to, those entries (with their test losses)."""
    train, test = mnist_denoising(cfg.n_train, cfg.n_test, cfg.noise, cfg.noise_level, seed=cfg.seed,
                                  arrays=load_mnist())
    return [_seed_row(seed, load_or_converge_primal(
        cfg, train, test, init_seed=seed, device=device, adam_epochs=budget.adam_epochs,
        lbfgs_max_iter=budget.lbfgs_max_iter, time_limit=budget.time_limit, cache=cache, progress=progress))
        for seed in budget.seeds]


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


def compare_at_equal_patterns(gen_P, gen_objective, rand_P, rand_objective, *, start_P: int | None = None) -> dict:
    """Generated against random patterns at equal pattern count, with no reference taken from either curve.

    Each random sample of ``P_r`` patterns is matched with the generated set of the most patterns
    ``P_g <= P_r`` (so the random sample never has fewer patterns); generated sets of at most ``start_P``
    patterns (the generation's random start) are left out. Generated beats random when its objective is
    lower at every matched count.

    Args:
        gen_P, gen_objective: the generation's pattern counts and objectives (e.g. its rounds).
        rand_P, rand_objective: the random samples' counts and certified objectives ``d_P``.
        start_P: the generation's initial random sample size (None: keep every generated set).

    Returns:
        ``{"matches": [{"P_random", "P_generated", "random", "generated", "rel"}], "worst": largest ``rel`` =
        (generated - random) / random or None without a match, "holds": a match exists and every ``rel`` < 0}``.
    """
    if len(gen_P) != len(gen_objective) or len(rand_P) != len(rand_objective):
        raise ValueError("counts and objectives differ in length")
    gen = sorted((int(p), float(o)) for p, o in zip(gen_P, gen_objective) if start_P is None or p > start_P)
    matches = []
    for P_r, o_r in sorted((int(p), float(o)) for p, o in zip(rand_P, rand_objective)):
        below = [(p, o) for p, o in gen if p <= P_r]
        if not below:
            continue
        P_g, o_g = below[-1]
        matches.append({"P_random": P_r, "P_generated": P_g, "random": o_r, "generated": o_g, "rel": (o_g - o_r) / o_r})
    worst = max((m["rel"] for m in matches), default=None)
    return {"matches": matches, "worst": worst, "holds": bool(matches) and worst < 0}


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


@dataclass
class PatternGenerationResult:
    """Everything notebook 11 shows: the generation, the primal seeds (trained to their stopping rule or
    budget), the small certified problem, their tables and the claims."""

    scale: str
    cfg: DenoiseConfig
    device: torch.device
    device_name: str
    generation: GenerationResult
    primal: list
    small: GlobalSolution
    random_rows: list
    round_rows: list
    primal_rows: list
    small_rows: list
    reach_rows: list
    claims: list
    sizes: dict
    source: str
    #: Theorem 1's bracket on Figure 2's 600 images (:mod:`paper_utils.figures.theorem1_bracket`), from the
    #: committed ``results/cpu/bracket_sigma0.5.json``; None at ``smoke`` scale or before the command ran
    bracket: dict | None = None
    bracket_rows: list | None = None
    #: why ``bracket`` is None (empty when it is not)
    bracket_note: str = ""


def _claims(res: GenerationResult, primal: list, small: GlobalSolution) -> tuple[dict, list[Claim]]:
    primal_obj = [r["objective"] for r in primal]
    cmp = compare_at_equal_patterns([r["patterns"] for r in res.rounds], [r["objective"] for r in res.rounds],
                                    res.random_P, res.random_objective, start_P=res.rounds[0]["patterns"])
    final_violation = res.rounds[-1]["best_violation"]
    note = training_note([r["converged"] for r in primal]) if primal else "none"
    claims = [
        Claim("generation.beats_random_at_equal_P",
              "Ours: generated patterns give a lower eq. (4) objective than a random sample with at least as many "
              "patterns, at every matched pattern count",
              cmp["worst"], 0.0, cmp["holds"],
              "largest (generated - random) / random over matched counts (negative: generated lower everywhere)",
              details={"matches": cmp["matches"], "primal_objectives_as_trained": primal_obj, "primal_training": note},
              basis="optimum", kind="ours"),
        Claim("generation.final_violation", "Ours: the final search finds no missing pattern (largest c(u) <= beta (1 + 1e-3))",
              final_violation, 1 + 1e-3, final_violation <= 1 + 1e-3, "largest c(u) / beta found", basis="optimum",
              kind="ours"),
        Claim("generation.small_certified_gap", "Ours: on an enumerable problem the full program is solved with a certified gap",
              small.gap, 1e-6, bool(small.certified), "certified relative gap (full program)", basis="optimum",
              kind="check"),
    ]
    reach = {"matched counts": len(cmp["matches"]),
             "generated lower at": sum(m["rel"] < 0 for m in cmp["matches"]),
             "largest (generated - random) / random": cmp["worst"], "final_violation_beta": final_violation}
    return reach, claims


def run(scale: str, *, seed: int = 0, device="auto") -> PatternGenerationResult:
    """Random samples and pattern generation (:func:`run_generation`), the primal seeds
    (:func:`converged_primal_objectives`) and the small certified problem (:func:`small_certified`), with
    notebook 11's tables and claims (all cached)."""
    dev = runtime.resolve_device(device)
    cfg = config.mnist_denoise_config(scale, 0.5, seed=seed)
    s = settings(scale)
    res = run_generation(cfg, scale, device=dev)
    primal = converged_primal_objectives(cfg, scale, device=dev)
    small = small_certified()
    reach, claims = _claims(res, primal, small)
    bracket, bracket_note = _bracket_at(scale)
    if bracket is not None:
        claims += theorem1_bracket.bracket_claims(bracket)
    return PatternGenerationResult(
        scale=scale, cfg=cfg, device=dev, device_name=str(dev), generation=res, primal=primal, small=small,
        random_rows=[{"P": P, "objective": o, "certified_gap": g, "seconds": t} for P, o, g, t in
                     zip(res.random_P, res.random_objective, res.random_gap, res.random_seconds)],
        round_rows=[{"round": r["round"], "P": r["patterns"], "objective": r["objective"],
                     "sampled_gap": r["sampled_gap"], "loose": bool(r.get("loose")),
                     "largest_violation_beta": r["best_violation"], "seconds": r["seconds"]} for r in res.rounds],
        primal_rows=[{"seed": r["seed"], "m": cfg.n_filters, "objective": r["objective"],
                      "stop": "converged" if r["converged"] else "after its budget (not converged): " + r["stop_reason"],
                      "seconds": r["seconds"]} for r in primal],
        small_rows=[{"objective": small.objective, "proven_lower_bound": small.lower_bound,
                     "certified": bool(small.certified), "gap": "<= 1e-6" if small.gap <= 1e-6 else "> 1e-6"}],
        reach_rows=[reach], claims=claims,
        sizes={"n_images": s["n_images"], "M": res.M, "d": cfg.kernel_size ** 2, "beta": cfg.beta,
               "random_P": ", ".join(map(str, s["random_P"])), "n_init": s["n_init"], "rounds": s["rounds"],
               "added_per_round": s["add"], "m": cfg.n_filters, "primal_seeds": len(primal)},
        source=("generation from the cache (kind generation) when present; primal seeds: notebook 01's converged "
                "primals (kind converged)" if s["n_images"] == cfg.n_train
                else "generation and primal seeds from the cache (kind generation) when present")
               + ("; Theorem 1's bracket from results/cpu/bracket_sigma0.5.json" if bracket else ""),
        bracket=bracket, bracket_rows=theorem1_bracket.bracket_rows(bracket) if bracket else None,
        bracket_note=bracket_note)


def _bracket_at(scale: str) -> tuple[dict | None, str]:
    """Theorem 1's bracket at sigma 0.5 when it was computed at ``scale`` (as notebook 08 reads it), else
    None with a line saying why."""
    if scale == "smoke":
        return None, "no bracket at smoke scale"
    bracket = theorem1_bracket.load_bracket(0.5)
    if bracket is None:
        return None, "no bracket stored: run python -m paper_utils.figures.theorem1_bracket"
    if bracket.get("scale", scale) != scale:
        return None, (f"Theorem 1's bracket is computed at {bracket['scale']} scale "
                      f"(results/cpu/bracket_sigma0.5.json); its table, figure and claim are in that scale's run")
    return bracket, ""


def plot_bracket(result: PatternGenerationResult):
    """Theorem 1's bracket (:func:`paper_utils.figures.theorem1_bracket.plot_bracket`); None without one."""
    if result.bracket is None:
        return None
    fig, ax = plt.subplots(figsize=(8, 5))
    theorem1_bracket.plot_bracket(ax, result.bracket)
    fig.tight_layout()
    return fig


def plot(result: PatternGenerationResult):
    """(a) objective against the number of patterns, random vs generated, with the primal seeds (as
    trained); (b) the largest violation the search finds per round. Returns the matplotlib figure."""
    res, primal, cfg = result.generation, result.primal, result.cfg
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    plot_generation(ax, res, primal=[r["objective"] for r in primal],
                    primal_label=f"primal (m = {cfg.n_filters}), {len(primal)} seeds, as trained: "
                                 + training_note([r["converged"] for r in primal]))
    ax.set_title(f"(a) MNIST sigma = 0.5, M = {res.M} patches: random vs generated patterns")
    ax2.semilogy([r["patterns"] for r in res.rounds], [r["best_violation"] for r in res.rounds], "s-")
    ax2.axhline(1.0, color="k", ls=":", lw=1)
    ax2.set_xlabel("number of sign patterns P")
    ax2.set_ylabel("largest c(u) / beta found")
    ax2.set_title("(b) the largest violation the search finds per round")
    fig.suptitle(f"Toward the full program (Theorem 1) by pattern generation; scale = {result.scale}")
    fig.tight_layout()
    return fig
