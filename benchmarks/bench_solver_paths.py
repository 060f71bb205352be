"""The exact solver's two paths on the same data, in one process: full P x P Gram vs working set.

MNIST Gaussian denoising (default sigma 0.5, ``cpu`` scale: 600 images, M = 470,400 patches,
P = 2,000 patterns from ``sample_generators(Yp, P, seed=0)``), beta = 1e-5. Runs
:func:`paper_utils.dual_solver.solve_dual` with ``gram="full"`` (steps 1-2 on the P x P Gram matrix:
float32 ray Gram, then float64 rows) and ``gram="working"`` (:mod:`paper_utils.dual_solver.workset`:
Gram rows over a working set of patterns, the rest priced by the fused operator pass; certificate over
all P), back to back, in the order given by ``--order``. For each: time to the first certified gap
<= ``--tol``, the final objective, gap and status, the Gram rows computed and their matmul flops,
and every chunked data pass's time and rate against the dense matmul rate of its dtype measured in the
same process just before that path ran (:class:`bench_solver.PassProfile`). The machine is shared:
compare the two paths by flops and by the rate ratios, and read wall times with the printed load.

    python benchmarks/bench_solver_paths.py [--scale cpu] [--patterns P] [--threads 2] [--order working,full]
                                            [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from _rates import matmul_rate, sync  # benchmarks/ is on sys.path when run as a script
from bench_solver import PassProfile
from paper_utils.pipeline import config
from paper_utils.data.mnist import mnist_denoising
from paper_utils.nets.dual import sample_generators
from paper_utils.dual_solver import solve_dual
from paper_utils.dual_solver.data import GRAM_BLOCK
from paper_utils.nets.patches import extract_patches, pixels


def _set_rows_flops(M, d, P, a):
    """Matmul flops of :meth:`_Data.set_gram_rows`: features of n patterns (2 products of 2 M n d) and
    the upper block triangle of the (k, n) rows."""
    n, k = a[1].numel(), int(a[2])
    tri = sum((min(b0 + GRAM_BLOCK, k) - b0) * (n - b0) for b0 in range(0, k, GRAM_BLOCK))
    clamp = len(a) > 5 and bool(a[5])
    return 2 * M * (tri + (1 if clamp else 2) * n * d)


class PathProfile(PassProfile):
    """:class:`PassProfile` with the working-set Gram kernel, and a count of Gram rows."""

    FLOPS = dict(PassProfile.FLOPS, set_gram_rows=_set_rows_flops)

    def gram_rows(self, P: int) -> dict:
        return {"relu_gram (fast dtype)": self.stats["relu_gram"][0] * P,
                "float64 / set rows": self.rows}

    def __enter__(self):
        self.rows = 0
        from paper_utils.dual_solver import _Data

        out = super().__enter__()
        self.by_dtype = {}
        for name, count in (("direction_gram_rows", lambda a: a[1].numel()),
                            ("set_gram_rows", lambda a: int(a[2]))):
            timed = getattr(_Data, name)

            def counted(data, *args, _timed=timed, _count=count, _name=name):
                self.rows += _count(args)
                t = time.perf_counter()
                out = _timed(data, *args)
                if _name == "set_gram_rows":       # the ray phase runs in the fast dtype, the tilts in float64
                    dt = str(args[3] if len(args) > 3 else torch.float64).replace("torch.", "")
                    st = self.by_dtype.setdefault(dt, [0, 0.0, 0.0, 0])
                    st[0] += 1
                    st[1] += time.perf_counter() - t
                    st[2] += _set_rows_flops(data.M, data.d, data.P, args)
                    st[3] += _count(args)
                return out

            setattr(_Data, name, counted)
        return out

    def report_set_rows(self, dense: dict) -> None:
        for dt, (calls, secs, flops, rows) in sorted(self.by_dtype.items()):
            rate = flops / secs
            print(f"  set_gram_rows in {dt:8s}: {calls} calls, {rows} rows, {secs:.1f} s, {rate / 1e9:.1f} GFLOP/s, "
                  f"ratio to dense {dt} {rate / dense[dt]:.2f}")


def load_line() -> str:
    try:
        return "load average " + " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "load average unknown"


def time_to(hist, tol):
    for t, g in zip(hist["time"], hist["gap"]):
        if g <= tol:
            return t
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", default="cpu", choices=config.SCALES)
    ap.add_argument("--sigma", type=float, default=0.5)
    ap.add_argument("--patterns", type=int, default=None, help="P (default: the scale's)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--order", default="working,full", help="paths to run, in order")
    ap.add_argument("--time-limit", type=float, default=None, help="solve_dual's time_limit per path")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=1,
                    help="run the paths this many times (interleaved) and print the spread: memory-bound "
                         "passes on a shared host vary up to 1.6x between runs")
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = config.mnist_denoise_config(args.scale, args.sigma)
    if args.patterns:
        cfg = cfg.replace(n_patterns=args.patterns)
    print(f"# {cfg.label()}  beta={cfg.beta:g}  threads={torch.get_num_threads()}  device={device}  "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}  tol={args.tol:g}")
    train, _ = mnist_denoising(cfg.n_train, 1, cfg.noise, cfg.noise_level, seed=cfg.seed)
    Yp = extract_patches(train.noisy, cfg.kernel_size).to(device)
    x = pixels(train.clean).to(device)
    G = sample_generators(Yp, cfg.n_patterns, seed=cfg.seed)
    M, d, P = Yp.shape[0], Yp.shape[1], G.shape[1]
    fast = "float32" if M * P > (1 << 25) else "float64"
    print(f"# M = {M}, d = {d}, P = {P}; ray Gram dtype {fast}")
    results, spread = {}, {}
    runs = [(rep, path) for rep in range(args.repeats) for path in args.order.split(",")]
    for rep, path in runs:
        if args.repeats > 1:
            print(f"\n# run {rep + 1} of {args.repeats}")
        fp32, fp64 = matmul_rate(device, torch.float32), matmul_rate(device, torch.float64)
        print(f"\n## path {path!r}  ({load_line()}; dense matmul now: fp32 {fp32 / 1e9:.1f}, "
              f"fp64 {fp64 / 1e9:.1f} GFLOP/s)", flush=True)
        sync(device)
        t0 = time.perf_counter()
        with PathProfile(device) as prof:
            res = solve_dual(Yp, x, G, cfg.beta, tol=args.tol, progress=True, gram=path,
                             time_limit=args.time_limit)
        sync(device)
        wall = time.perf_counter() - t0
        prof.report(wall, {"float32": fp32, "float64": fp64}, fast)
        prof.report_set_rows({"float32": fp32, "float64": fp64})
        rows = prof.gram_rows(P)
        gram_flops = sum(prof.stats[k][2] for k in ("relu_gram", "direction_gram_rows", "set_gram_rows"))
        t_tol = time_to(res.history, args.tol)
        print(f"path {path!r}: wall {wall:.1f} s, certified gap <= {args.tol:g} after "
              f"{'not reached' if t_tol is None else f'{t_tol:.1f} s'}; objective {res.objective:.12e}, "
              f"lower bound {res.lower_bound:.12e}, gap {res.gap:.2e}, max violation {res.max_violation:.1e}, "
              f"{int((res.W.norm(dim=1) > 0).sum() + (res.Z.norm(dim=1) > 0).sum())} non-zero blocks; {res.status}")
        print(f"path {path!r}: Gram rows {rows} (a full Gram matrix is {P} rows), Gram matmul "
              f"{gram_flops / 1e12:.2f} TFLOP ({load_line()})", flush=True)
        results[path] = (res, wall, t_tol, gram_flops, fp64)
        spread.setdefault(path, []).append((t_tol, wall))
    if args.repeats > 1:
        print()
        for path, rs in spread.items():
            tt = [t for t, _ in rs if t is not None]
            print(f"## path {path!r} over {len(rs)} runs: certified after "
                  + (", ".join(f"{t:.1f}" for t in tt) + f" s (median {statistics.median(tt):.1f} s)" if tt else "never")
                  + f"; wall {', '.join(f'{w:.1f}' for _, w in rs)} s (median "
                  + f"{statistics.median(w for _, w in rs):.1f} s)")
    if len(results) == 2 and "full" in results and "working" in results:
        (a, wa, ta, fa, ra), (b, wb, tb, fb, rb) = results["full"], results["working"]
        print(f"\n## working vs full: objective relative difference {(b.objective - a.objective) / a.objective:+.2e}; "
              f"certified intervals full [{a.lower_bound:.12e}, {a.objective:.12e}], "
              f"working [{b.lower_bound:.12e}, {b.objective:.12e}]")
        print(f"wall ratio full / working {wa / wb:.2f}; time-to-tol ratio "
              f"{(ta / tb) if (ta and tb) else float('nan'):.2f}; Gram flop ratio {fa / max(fb, 1):.2f}; "
              f"wall normalised by each path's dense fp64 rate: full {wa * ra / 1e12:.1f}, working "
              f"{wb * rb / 1e12:.1f} (TFLOP-equivalents of dense fp64)")


if __name__ == "__main__":
    main()
