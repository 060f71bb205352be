"""Column generation started from a trained primal network's sign patterns, on notebook 11's problem.

Notebook 11 (``cpu`` scale: MNIST sigma 0.5, the first 50 training images, M = 39,200 patches,
beta = 1e-5) starts :func:`paper_utils.dual_solver.solve_global` from random generators and compares it
with primal networks (m = 512) stopped by a 150 s budget. This script asks what a longer primal run
says about the full program, in three steps on the same data:

1. the primal of eq. (2) (m = 512, seed 0; 5 Adam epochs, then L-BFGS) for ``--primal-seconds``;
   its objective is an upper bound on the full program's optimum p*;
2. eq. (4) over the primal's own m sign patterns (generators = its first-layer filters), solved by
   :func:`paper_utils.dual_solver.solve_dual` (tol 1e-5): a feasible dual point, another upper bound;
3. ``solve_global`` started from those patterns (``G0``), 64 patterns per round, for
   ``--generation-seconds``: one line per round (patterns, objective, largest violation found).

    python benchmarks/bench_generation_from_primal.py [--primal-seconds 600] [--generation-seconds 240]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from paper_utils.pipeline import config
from paper_utils.training.convergence import converge_primal
from paper_utils.dual_solver import solve_dual, solve_global
from paper_utils.figures.pattern_generation import SETTINGS, _problem


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--primal-seconds", type=float, default=600.0)
    ap.add_argument("--generation-seconds", type=float, default=240.0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = config.mnist_denoise_config("cpu", 0.5)
    s = SETTINGS["cpu"]
    Yp, x = _problem(cfg, s["n_images"], "cpu")
    print(f"# M = {Yp.shape[0]}, beta = {cfg.beta:g}, threads = {torch.get_num_threads()}, "
          f"OMP_NUM_THREADS = {os.environ.get('OMP_NUM_THREADS')}", flush=True)
    r = converge_primal(Yp.float(), x.float(), cfg.beta, n_filters=cfg.n_filters, init_seed=0, adam_epochs=5,
                        lr=cfg.lr_primal, batch_size=cfg.batch_size, rows_per_image=Yp.shape[0] // s["n_images"],
                        lbfgs_max_iter=100000, time_limit=args.primal_seconds, progress=False)
    print(json.dumps({"primal_objective": r.objective, "converged": r.converged, "stop_reason": r.stop_reason,
                      "seconds": r.seconds}), flush=True)
    U, v = r.U.to(torch.float64), r.v.to(torch.float64)
    G = U[(U.norm(dim=1) > 0) & (v.abs() > 0)].T.contiguous()                # (d, m) the primal's patterns
    t = time.perf_counter()
    sol = solve_dual(Yp, x, G, cfg.beta, tol=1e-5)
    print(json.dumps({"P_primal_patterns": int(G.shape[1]), "d_P": sol.objective, "gap": sol.gap,
                      "seconds": time.perf_counter() - t, "status": sol.status}), flush=True)
    t = time.perf_counter()
    glob = solve_global(Yp, x, cfg.beta, tol=1e-3, G0=G, seed=cfg.seed, max_rounds=60, add_per_round=s["add"],
                        exact=False, solve_tol=1e-5, antipodes=False, time_limit=args.generation_seconds,
                        progress=True)
    print("global", glob.objective, glob.stop_reason, time.perf_counter() - t, flush=True)


if __name__ == "__main__":
    main()
