"""Pattern generation on the whole ``cpu``-scale problem of Figure 2, within a time budget.

Figure 2's sigma = 0.5 training set at ``cpu`` scale (600 MNIST images, M = 470,400 patches, d = 9,
beta = 1e-5): :func:`paper_utils.dual_solver.solve_global` (column generation with best-response
pricing; each round's sampled program solved to a certified gap ``--solve-tol``) from ``--n-init``
Gaussian generators, adding at most ``--add`` violating patterns per round until ``--budget`` seconds
have passed (the round in progress finishes). Then, in the same process, the random-sampling
reference at the generation's final P: ``sample_generators(Yp, P, seed=0)`` (the sampler the paper's
dual uses) solved exactly. Printed: one line per round (patterns, objective, largest violation the
search found, the proven bound on the violation, the proven lower bound on the full program,
cumulative time), the random reference, and, when ``figures/claims/01_mnist_duality_gap.json`` holds
``cpu``-scale results, notebook 01's certified d_P at P = 2,000 random patterns and the converged
primal seeds (m = 512) for comparison. Every violation is a search result, never a bound; the lower
bound is proven (:mod:`paper_utils.dual_solver.pricing`).

    python benchmarks/bench_generation.py [--budget 1200] [--n-init 256] [--add 256] [--threads 2] [--images N]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from paper_utils.pipeline import config
from paper_utils.data.mnist import load_mnist, mnist_denoising
from paper_utils.nets.dual import sample_generators
from paper_utils.dual_solver import solve_dual, solve_global
from paper_utils.nets.patches import extract_patches
from paper_utils.pipeline.paths import project_root


def notebook01_reference(sigma: float) -> dict | None:
    """Notebook 01's cpu-scale optimum basis for ``sigma`` (certified d_P at P = 2,000, seeds), if recorded."""
    path = project_root() / "figures" / "claims" / "01_mnist_duality_gap.json"
    if not path.exists():
        return None
    rec = json.loads(path.read_text())
    if rec.get("scale") != "cpu":
        return None
    for c in rec["claims"]:
        if c["name"] == f"fig2.optimum.zero_gap.gaussian{sigma:g}.obj":
            det = c["details"]
            seeds = {k: det[k] for k in det if k.startswith("seed") and k.endswith("_vs_dP")}
            return {"d_P": det["d_P"], "cert_gap": det["cert_gap"], "seeds_vs_dP": seeds,
                    "code_version": rec.get("code_version")}
    return None


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sigma", type=float, default=0.5)
    ap.add_argument("--budget", type=float, default=1200.0, help="seconds before no new round starts")
    ap.add_argument("--n-init", type=int, default=256)
    ap.add_argument("--add", type=int, default=256, help="patterns added per round at most")
    ap.add_argument("--max-rounds", type=int, default=50)
    ap.add_argument("--solve-tol", type=float, default=1e-5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-random", action="store_true", help="skip the random reference solve")
    ap.add_argument("--images", type=int, default=None,
                    help="use only the first N training images (20: notebook 11's smoke problem, M = 15,680)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    cfg = config.mnist_denoise_config("cpu", args.sigma)
    train, _ = mnist_denoising(cfg.n_train, 1, cfg.noise, cfg.noise_level, seed=cfg.seed, arrays=load_mnist())
    n_img = args.images or cfg.n_train
    noisy, clean = train.noisy[:n_img], train.clean[:n_img]
    Yp = extract_patches(noisy, cfg.kernel_size).to(torch.float64)
    x = (clean - noisy if cfg.residual else clean).reshape(-1).to(torch.float64)
    M, d = Yp.shape
    print(f"Figure 2, sigma = {args.sigma:g}, cpu scale: {n_img} images, M = {M:,}, d = {d}, beta = {cfg.beta:g}; "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}")
    print(f"solve_global: n_init = {args.n_init} (no antipodes), add <= {args.add} per round, budget {args.budget:g} s, "
          f"each sampled solve to certified gap {args.solve_tol:g}")

    t0 = time.perf_counter()
    glob = solve_global(Yp, x, cfg.beta, tol=1e-3, n_init=args.n_init, antipodes=False, seed=cfg.seed,
                        max_rounds=args.max_rounds, add_per_round=args.add, exact=False, solve_tol=args.solve_tol,
                        time_limit=args.budget, progress=True)
    total = time.perf_counter() - t0
    print(f"\n{'round':>5} {'patterns':>8} {'objective':>14} {'sampled gap':>11} {'search c/beta':>13} "
          f"{'proven c/beta <=':>16} {'proven full LB':>14} {'time s':>8}")
    for r in glob.rounds:
        print(f"{r['round']:5d} {r['patterns']:8d} {r['objective']:14.6e} {r['sampled_gap']:11.1e} "
              f"{r['best_violation']:13.2f} {r['violation_bound']:16.4g} {r['lower_bound']:14.4e} {r['seconds']:8.1f}")
    print(f"stop: {glob.stop_reason} ({total:.0f} s)")
    final_P, final_obj = glob.rounds[-1]["patterns"], glob.rounds[-1]["objective"]

    if not args.no_random:
        t = time.perf_counter()
        sol = solve_dual(Yp, x, sample_generators(Yp, final_P, seed=cfg.seed), cfg.beta, tol=1e-6)
        sec = time.perf_counter() - t
        print(f"\nrandom sampling at equal P = {final_P}: certified d_P {sol.objective:.6e} (gap {sol.gap:.1e}, {sec:.0f} s); "
              f"generated / random - 1 = {final_obj / sol.objective - 1:+.2%}")
    ref = notebook01_reference(args.sigma) if n_img == cfg.n_train else None
    if ref is not None:
        print(f"notebook 01 (cpu, code {ref['code_version']}): certified d_P at P = 2,000 random patterns "
              f"{ref['d_P']:.6e} (gap {ref['cert_gap']:.1e}); generated (P = {final_P}) / that - 1 = "
              f"{final_obj / ref['d_P'] - 1:+.2%}")
        for k, v in ref["seeds_vs_dP"].items():
            obj = ref["d_P"] * (1 + v)
            print(f"  converged primal {k[:-6]} (m = 512, after its cpu budget): {obj:.6e}; generated / primal - 1 = "
                  f"{final_obj / obj - 1:+.2%}")


if __name__ == "__main__":
    main()
