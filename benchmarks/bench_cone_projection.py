"""The certificate's cone projections (``paper_utils.dual_solver.cones._nnls_project``) at the shapes
of the MRI optimum's certified solve, against the batched Lawson-Hanson it replaced.

The inputs are the first certificate of the MRI optimum at R = 4 (2P = 10,000 blocks, K = 128
working-set normals, d = 49 at paper size): ``--make-inputs`` builds them from notebook 05's (or 09's)
networks in the dry-run cache (``benchmarks/memory_plan.py`` trains them) and stops the solver at its
first certificate. Then a seeded sample of ``--blocks`` blocks is projected three ways in one process:

- ``reference``: the previous implementation (every step over every block of the batch; each
  least-squares system multiplied out and LU-solved), kept below for this comparison only;
- ``exact``: the current one (finished blocks leave the batch, the inner loop runs on the blocks
  with a negative multiplier, each system gathered from the batch's Gram matrices);
- ``floor``: the current one with ``floor = INSIDE beta`` (0.99 beta), as the certificate's first pass runs it.

It prints seconds, the speed-ups over ``reference``, the largest difference of the projections'
norms relative to ``beta`` and how many blocks lie above ``beta`` each way (they must agree).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_cone_projection.py --make-inputs --scale paper
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_cone_projection.py --blocks 2000
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
INPUTS = ROOT / "build" / "bench" / "certificate_inputs.pt"


def reference_nnls_project(C: torch.Tensor, valid: torch.Tensor, v: torch.Tensor, tol: float = 1e-13):
    """The batched Lawson-Hanson this project used before (same iterates, every block in every step)."""
    B, K, d = C.shape
    dev, dt = C.device, C.dtype
    ar = torch.arange(B, device=dev)
    slots = torch.full((B, d), -1, dtype=torch.long, device=dev)
    mu = torch.zeros(B, d, dtype=dt, device=dev)
    scale = torch.linalg.vector_norm(v, dim=1).clamp_min(1e-300)
    eye = torch.eye(d, dtype=dt, device=dev)
    w = v.clone()

    def gather(sl):
        on = sl >= 0
        return on, torch.where(on.unsqueeze(2), C[ar.unsqueeze(1), sl.clamp_min(0)], 0.0)

    def lsq(sl):
        on, Cp = gather(sl)
        Qm = Cp @ Cp.transpose(1, 2) + torch.diag_embed((~on).to(dt)) + 1e-13 * eye
        rhs = -(Cp @ v.unsqueeze(2)).squeeze(2)
        return torch.linalg.solve(Qm, rhs) * on

    for _ in range(4 * (K + d)):
        cv = (C @ w.unsqueeze(2)).squeeze(2)
        passive = torch.zeros(B, K, dtype=torch.bool, device=dev)
        on = slots >= 0
        passive[ar.unsqueeze(1).expand(B, d)[on], slots[on]] = True
        cv = torch.where(valid & ~passive, cv, math.inf)
        m, j = cv.min(1)
        act = (m < -tol * scale) & ~on.all(1)
        if not bool(act.any()):
            break
        free = (~on).to(torch.int8).argmax(1)
        slots[act, free[act]] = j[act]
        for _inner in range(d + 1):
            z = lsq(slots)
            on = slots >= 0
            neg = on & (z <= 0) & act.unsqueeze(1)
            bad = neg.any(1)
            mu = torch.where((act & ~bad).unsqueeze(1), z, mu)
            if not bool(bad.any()):
                break
            ratio = torch.where(neg, mu / (mu - z), math.inf)
            alpha = ratio.min(1).values.clamp(0, 1)
            mu = torch.where(bad.unsqueeze(1), mu + alpha.unsqueeze(1) * (z - mu), mu)
            drop = bad.unsqueeze(1) & on & (mu <= 1e-15 * scale.unsqueeze(1))
            drop[bad, ratio.argmin(1)[bad]] = True
            slots = torch.where(drop, -1, slots)
            mu = torch.where(drop, 0.0, mu)
            act = bad
        _, Cp = gather(slots)
        w = v + (mu.unsqueeze(1) @ Cp).squeeze(1)
    return w


def make_inputs(scale: str, acceleration: int) -> None:
    """Run the MRI optimum's certified solve of ``scale`` up to its first certificate; save its inputs."""
    if scale == "paper":
        os.environ["PAPER_UTILS_DRY_RUN"] = "1"
        os.environ.setdefault("PAPER_UTILS_CACHE", str(ROOT / "build" / "dry-run" / "cache"))
    import tempfile

    import paper_utils.dual_solver.solve as solve
    from paper_utils.mri.optimum import optimum_subset
    from paper_utils.mri.runs import train_mri
    from paper_utils.pipeline import config
    from paper_utils.pipeline.cache import Cache
    from paper_utils.training.denoisers import DenoiseRun, load_or_solve_exact

    class Stop(Exception):
        pass

    def capture(data, ws, beta, sq, rx, grad, *args, **kwargs):
        INPUTS.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"C": ws.C.cpu(), "valid": ws.valid.cpu(), "grad": grad.cpu(), "beta": beta,
                    "scale": scale, "R": acceleration}, INPUTS)
        raise Stop

    solve._certificate = capture
    run = train_mri(config.mri_config(scale, acceleration), "cpu")
    opt = config.mri_optimum_settings(scale)
    sub = optimum_subset(run.train, opt["n_slices"], opt["crop"])
    sub_run = DenoiseRun(run.cfg.replace(n_train=opt["n_slices"]), sub, run.test, run.primal, run.dual,
                         run.primal_history, run.dual_history)
    try:
        load_or_solve_exact(sub_run, tol=1e-6, time_limit=None, cache=Cache(tempfile.mkdtemp()))
    except Stop:
        print(f"saved {INPUTS}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--make-inputs", action="store_true", help="build the inputs (needs the MRI networks of --scale)")
    ap.add_argument("--scale", default="paper", choices=("cpu", "paper"))
    ap.add_argument("--blocks", type=int, default=1000, help="blocks sampled (seeded) from the 2P")
    ap.add_argument("--no-reference", action="store_true", help="skip the (slow) reference implementation")
    args = ap.parse_args()
    if args.make_inputs:
        make_inputs(args.scale, 4)
        return
    from paper_utils.dual_solver.cones import INSIDE, _nnls_project

    inp = torch.load(INPUTS)
    s = torch.cat([-inp["grad"], inp["grad"]])
    beta = inp["beta"]
    pick = torch.randperm(s.shape[0], generator=torch.Generator().manual_seed(0))[:args.blocks]
    C, valid, v = inp["C"][pick], inp["valid"][pick], s[pick]
    print(f"inputs: {inp['scale']} R = {inp['R']}, {C.shape[0]} of {s.shape[0]} blocks, K = {C.shape[1]}, "
          f"d = {C.shape[2]}, beta = {beta:g}, threads {torch.get_num_threads()}")
    runs = {"exact": lambda: _nnls_project(C, valid, v), "floor": lambda: _nnls_project(C, valid, v, floor=INSIDE * beta)}
    if not args.no_reference:
        runs = {"reference": lambda: reference_nnls_project(C, valid, v), **runs}
    norms, secs = {}, {}
    for name, fn in runs.items():
        t = time.perf_counter()
        norms[name] = torch.linalg.vector_norm(fn(), dim=1)
        secs[name] = time.perf_counter() - t
    base = norms.get("reference", norms["exact"])
    for name in runs:
        diff = float((norms[name] - base).abs().max()) / beta
        speed = f"  {secs['reference'] / secs[name]:5.1f}x" if "reference" in secs else ""
        print(f"{name:9s} {secs[name]:8.2f} s{speed}  max |norm - reference| / beta {diff:.1e}  "
              f"above beta {int((norms[name] > beta).sum())}  max / beta {float(norms[name].max()) / beta:.6f}")


if __name__ == "__main__":
    main()
