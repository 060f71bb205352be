"""The MRI optimum's certified solve at the paper's size (or ``cpu`` scale's), on CPU: where it ends and in how many seconds.

Notebooks 05, 06 and 09 solve eq. (4) for the MRI problem on the optimum basis
(:func:`paper_utils.mri.optimum.load_or_solve_mri_optimum`): at ``paper`` scale 16 training slices of
80 x 80, real and imaginary parts as examples (M = 204,800 patches of d = 49), P = 5,000 patterns from the
run's generators, beta = 1e-5, ``tol = 1e-6``. The barrier refinement cannot run at this size (its dense
(P d)^2 Newton matrices would need 1,440 GB), so the ray lasso and the tilted rays have to certify it.

``--make-inputs`` builds the problem (patches, residual targets, generators) from the R = 4 network
in the dry-run cache (``benchmarks/memory_plan.py`` trains it; the generators are those the paper run
samples, since ``sample_generators`` depends on the training patches and the seed only, not on training)
and saves it to ``build/bench/mri_optimum_inputs_paper.pt``; ``--scale cpu`` builds the ``cpu`` scale's
problem (2 slices, M = 25,600, P = 250) from the cache or the committed results store instead. Then one
solve, with the solver's progress lines, its time, objective, certified gap and status. Run it on quiet
cores: nothing else heavy at the same time.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_mri_optimum.py --make-inputs [--scale cpu] [--acceleration 4]
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_mri_optimum.py [--scale cpu]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def inputs_path(scale: str) -> Path:
    return ROOT / "build" / "bench" / f"mri_optimum_inputs_{scale}.pt"


def make_inputs(scale: str, acceleration: int) -> None:
    """The optimum problem of ``scale`` at acceleration R: at ``paper`` scale from the dry-run cache's MRI
    run, at ``cpu`` scale from the cache or the results store."""
    if scale == "paper":
        os.environ["PAPER_UTILS_DRY_RUN"] = "1"
        os.environ.setdefault("PAPER_UTILS_CACHE", str(ROOT / "build" / "dry-run" / "cache"))
    else:
        os.environ.setdefault("PAPER_UTILS_STORE_MODE", "fallback")
    from paper_utils.mri.optimum import optimum_subset
    from paper_utils.mri.runs import train_mri
    from paper_utils.nets.patches import extract_patches
    from paper_utils.pipeline import config

    cfg = config.mri_config(scale, acceleration)
    run = train_mri(cfg, "cpu")
    opt = config.mri_optimum_settings(scale)
    sub = optimum_subset(run.train, opt["n_slices"], opt["crop"])
    path = inputs_path(scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"Yp": extract_patches(sub.noisy, cfg.kernel_size), "x": (sub.clean - sub.noisy).reshape(-1),
                "G": run.dual.G.detach().cpu(), "beta": cfg.beta, "R": acceleration,
                "n_slices": opt["n_slices"], "scale": scale}, path)
    print(f"saved {path.relative_to(ROOT)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--make-inputs", action="store_true", help="build the inputs first (see above)")
    ap.add_argument("--scale", default="paper", choices=("cpu", "paper"))
    ap.add_argument("--acceleration", type=int, default=4, choices=(2, 4, 8))
    ap.add_argument("--tol", type=float, default=1e-6)
    args = ap.parse_args()
    if args.make_inputs:
        make_inputs(args.scale, args.acceleration)
    path = inputs_path(args.scale)
    if not path.exists():
        raise SystemExit(f"{path.relative_to(ROOT)} is missing: run with --make-inputs")
    from paper_utils.dual_solver import solve_dual

    inp = torch.load(path)
    M, d = inp["Yp"].shape
    print(f"MRI optimum, {args.scale} scale: R = {inp['R']}, {inp['n_slices']} slices, M = {M}, d = {d}, "
          f"P = {inp['G'].shape[1]}, beta = {inp['beta']:g}, tol = {args.tol:g}, threads {torch.get_num_threads()}",
          flush=True)
    t = time.perf_counter()
    sol = solve_dual(inp["Yp"], inp["x"], inp["G"], inp["beta"], tol=args.tol, progress=True)
    secs = time.perf_counter() - t
    active = int((sol.W.norm(dim=1) > 0).sum() + (sol.Z.norm(dim=1) > 0).sum())
    print(f"{secs:.1f} s: objective {sol.objective:.10e}, lower bound {sol.lower_bound:.10e}, certified gap "
          f"{sol.gap:.2e}, max violation {sol.max_violation:.1e}, {active} non-zero groups; {sol.status}")


if __name__ == "__main__":
    main()
