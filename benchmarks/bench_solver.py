"""Exact dual solver vs the paper's Adam + hinge dual vs primal Adam, on the same data, in one run.

MNIST Gaussian denoising (sigma 0.5), k = 3, beta = 1e-5, sizes of ``mnist_denoise_config(scale, 0.5)``
(default ``cpu``: 600 images, M = 470,400 patches, P = 2,000 patterns; primal m = 512):

(a) Adam + hinge on eq. (4) (``DualNet.penalized_loss``, lr 1e-5, batch 25 images, as in
    :mod:`paper_utils.training.adam`),
(b) :func:`paper_utils.dual_solver.solve_dual`,
(c) the primal network (m = 512, Kaiming-uniform init, Adam lr 1e-3, batch 25).

Every method is judged by the training objective of the ReLU network it yields (eq. 2, evaluated with
:func:`paper_utils.nets.primal.primal_objective`): for the dual methods the network rebuilt by eq. (5),
the only fair measure when a method violates the constraints. For each method: the wall time until
its network first comes within ``--rel`` (1e-3) of the best objective any method found, "not
reached" if never within its time cap. Evaluation time is excluded from the Adam methods' clocks
(they are evaluated once per epoch, curves recorded as in the training module); the solver's history
points are feasible points whose objective is the rebuilt network's.

Kernel rate: the operator ``v -> sum_i D_i Yp v_i`` and its adjoint (4 M P d matmul flops per
application pair, the fused chunked pass the solver uses; the pass also recomputes the sign patterns
``Yp_c G``, another 2 M P d matmul flops, printed as the "all matmul flops" rate) and the ray-lasso Gram matrix (2 M P^2),
over this process's dense fp32 and fp64 matmul rates, measured in the same run. Then, for the solver
run itself, every chunked data pass is timed (:class:`PassProfile`): its share of the solver's wall
time, its FLOP/s (matmul flops only) and its ratio to the dense rate of its dtype; the line "all
passes" is the solver's achieved FLOP/s over its data passes relative to dense float64.

    python benchmarks/bench_solver.py [--scale cpu] [--images N] [--patterns P] [--threads 2]
                                      [--cap auto] [--solver-cap 300] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from _rates import matmul_rate, sync  # benchmarks/ is on sys.path when run as a script
from paper_utils.pipeline import config
from paper_utils.data.mnist import mnist_denoising
from paper_utils.nets.dual import DualNet, sample_generators
from paper_utils.dual_solver import _Data, solve_dual
from paper_utils.nets.patches import extract_patches, pixels
from paper_utils.nets.primal import PrimalNet, primal_objective


def kernel_rates(Yp, x, G, device, reps: int = 3) -> dict:
    """FLOP/s of the solver's data kernels: the fused operator + adjoint pass (the solver runs it in
    float64, which its certificate needs; float32 shown for the same kernel) and the ray-lasso Gram
    pass (float32 at scale), counting matmul flops only (4 M P d and 2 M P^2)."""
    fast = torch.float32 if Yp.shape[0] * G.shape[1] > (1 << 25) else torch.float64
    data = _Data(Yp.to(device), x.to(device), G.to(device), fast, None)
    M, d, P = data.M, data.d, data.P
    V = torch.randn(P, d, dtype=torch.float64, device=device) * 0.01
    out = {"fast": str(fast).replace("torch.", "")}
    for dt in (torch.float64, torch.float32):
        data.loss_grad(V, dt)
        sync(device)
        t = time.perf_counter()
        for _ in range(reps):
            data.loss_grad(V, dt)
        sync(device)
        out[str(dt)] = reps * 4 * M * P * d / (time.perf_counter() - t)
    t = time.perf_counter()
    data.relu_gram()
    sync(device)
    out["gram"] = 2 * M * P * P / (time.perf_counter() - t)
    return out


class PassProfile:
    """Times every chunked data pass of one :func:`solve_dual` call (wrapping :class:`_Data`'s methods)
    and counts its matmul flops from the problem's sizes: where the solver's time goes, and at what
    fraction of the dense matmul rate of the pass's dtype."""

    FLOPS = {  # matmul flops of one call: (M, d, P, args) -> flops
        "relu_gram": lambda M, d, P, a: 2 * M * d * P + 2 * M * P * P,
        "direction_gram_rows": lambda M, d, P, a: 4 * M * d * P + 2 * M * a[1].numel() * P,
        # the prediction reads only the patterns with v_i != 0 (data.loss_grad)
        "loss_grad": lambda M, d, P, a: 2 * M * d * (2 * P + int((a[0] != 0).any(1).sum())),
        "most_violated": lambda M, d, P, a: 2 * M * d * (
            (P if a[1] is None else int(torch.unique(a[1] % P).numel())) + a[0].shape[0]),
        "nearest_rows": lambda M, d, P, a: 2 * M * d * P,
        # three products over the non-zero blocks of W and Z (data.evaluate)
        "evaluate": lambda M, d, P, a: 6 * M * d * int((a[0] != 0).any(1).sum() + (a[1] != 0).any(1).sum()),
        "hessian": lambda M, d, P, a: 2 * M * (P * d) ** 2 + 2 * M * d * P,
    }

    def __init__(self, device):
        self.device = device
        self.stats = {name: [0, 0.0, 0.0] for name in self.FLOPS}      # calls, seconds, flops
        self._saved = {}

    def __enter__(self):
        for name in self.FLOPS:
            original = getattr(_Data, name)
            self._saved[name] = original

            def timed(data, *args, _name=name, _original=original):
                sync(self.device)
                t = time.perf_counter()
                out = _original(data, *args)
                sync(self.device)
                st = self.stats[_name]
                st[0] += 1
                st[1] += time.perf_counter() - t
                st[2] += self.FLOPS[_name](data.M, data.d, data.P, (args + (None,))[:max(2, len(args))])
                return out

            setattr(_Data, name, timed)
        return self

    def __exit__(self, *exc):
        for name, original in self._saved.items():
            setattr(_Data, name, original)

    def report(self, wall: float, dense: dict, fast: str) -> None:
        dtypes = {"relu_gram": fast, "nearest_rows": fast}
        total_t = total_f = 0.0
        print(f"{'pass':20s} {'calls':>5s} {'seconds':>8s} {'share':>6s} {'GFLOP/s':>8s}  dtype    ratio to dense")
        for name, (calls, secs, flops) in self.stats.items():
            if not calls:
                continue
            dt = dtypes.get(name, "float64")
            rate = flops / secs
            total_t += secs
            total_f += flops
            print(f"{name:20s} {calls:5d} {secs:8.1f} {secs / wall:6.1%} {rate / 1e9:8.1f}  {dt:8s} {rate / dense[dt]:.2f}")
        print(f"{'all passes':20s} {'':5s} {total_t:8.1f} {total_t / wall:6.1%} {total_f / total_t / 1e9:8.1f}  "
              f"         {total_f / total_t / dense['float64']:.2f} of dense float64 "
              f"(rest of the {wall:.1f} s: lasso, cone projections, bookkeeping)")


def first_within(times, objectives, target):
    for t, o in zip(times, objectives):
        if o <= target:
            return t
    return None


def run_adam_hinge(cfg, Yp, x, G, noisy, clean, device, cap, fast):
    """The paper's dual training, time-capped; returns per-epoch (time, rebuilt objective) curves."""
    net = DualNet(G.to(device), cfg.kernel_size, fast=fast)
    n_img = noisy.shape[0]
    hw = noisy.shape[-1] * noisy.shape[-2]
    Yp_img, x_img = Yp.reshape(n_img, hw, -1), x.reshape(n_img, hw)
    if fast:                                                    # compile outside the clock
        warm = DualNet(G.to(device), cfg.kernel_size, fast=True)
        idx = torch.arange(min(cfg.batch_size, n_img))
        warm.penalized_loss(Yp_img[idx].reshape(-1, Yp.shape[1]), x_img[idx].reshape(-1), cfg.beta,
                            cfg.hinge_weight)["total"].backward()
        warm.evaluate(Yp, x, cfg.beta)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr_dual)
    gen = torch.Generator().manual_seed(cfg.seed)
    times, objs, info = [0.0], [net.evaluate(Yp, x, cfg.beta)["rebuilt_objective"]], {}
    clock, epochs = 0.0, 0
    while clock < cap:
        sync(device)
        t0 = time.perf_counter()
        for idx in torch.randperm(n_img, generator=gen).split(cfg.batch_size):
            parts = net.penalized_loss(Yp_img[idx].reshape(-1, Yp.shape[1]), x_img[idx].reshape(-1),
                                       cfg.beta, cfg.hinge_weight)
            opt.zero_grad(set_to_none=True)
            parts["total"].backward()
            opt.step()
        sync(device)
        clock += time.perf_counter() - t0
        epochs += 1
        ev = net.evaluate(Yp, x, cfg.beta)
        times.append(clock)
        objs.append(ev["rebuilt_objective"])
        info = {"epochs": epochs, "dual_objective": ev["objective"], "max_violation": ev["max_violation"]}
    info["primal_objective"] = primal_objective(net.to_primal(), noisy, clean, cfg.beta)["objective"]
    return times, objs, info


def run_primal(cfg, noisy, clean, device, cap, m):
    gen = torch.Generator().manual_seed(cfg.seed)
    net = PrimalNet(m, cfg.kernel_size, generator=gen).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr_primal)
    times, objs = [0.0], [primal_objective(net, noisy, clean, cfg.beta)["objective"]]
    clock, epochs = 0.0, 0
    while clock < cap:
        sync(device)
        t0 = time.perf_counter()
        for idx in torch.randperm(noisy.shape[0], generator=gen).split(cfg.batch_size):
            out = net(noisy[idx])
            loss = 0.5 * (out - clean[idx]).pow(2).mean() + net.regularizer(cfg.beta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sync(device)
        clock += time.perf_counter() - t0
        epochs += 1
        times.append(clock)
        objs.append(primal_objective(net, noisy, clean, cfg.beta)["objective"])
    return times, objs, {"epochs": epochs}


def fmt_time(t):
    return "not reached" if t is None else f"{t:8.1f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", default="cpu", choices=config.SCALES)
    ap.add_argument("--sigma", type=float, default=0.5)
    ap.add_argument("--images", type=int, default=None, help="training images (default: the scale's)")
    ap.add_argument("--patterns", type=int, default=None, help="P (default: the scale's)")
    ap.add_argument("--filters", type=int, default=None, help="primal m (default: the scale's, 512)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (default: torch's, i.e. $OMP_NUM_THREADS); on a machine shared with "
                         "other jobs use 1: the chunked kernels' many short parallel regions stall")
    ap.add_argument("--cap", type=float, default=None,
                    help="wall-time cap of each Adam method (s); default: 10.5 x the exact solver's time to "
                         "reach within --rel of its own final objective (at least 60 s), so that a method "
                         "that has not reached the target by then is measured to be more than 10x slower")
    ap.add_argument("--solver-cap", type=float, default=300.0, help="time limit of solve_dual (s)")
    ap.add_argument("--tol", type=float, default=1e-6, help="solve_dual's certified-gap tolerance")
    ap.add_argument("--rel", type=float, default=1e-3, help="'reached' = within this of the best objective")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dense-bytes", type=float, default=2e9, help="solve_dual's dense_bytes")
    ap.add_argument("--eager", action="store_true", help="Adam + hinge without torch.compile")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True, warn_only=True)
    device = torch.device(args.device)
    cfg = config.mnist_denoise_config(args.scale, args.sigma)
    changes = {k: v for k, v in (("n_train", args.images), ("n_patterns", args.patterns),
                                 ("n_filters", args.filters)) if v is not None}
    cfg = cfg.replace(**changes) if changes else cfg
    print(f"# {cfg.label()}  beta={cfg.beta:g}  threads={args.threads}  device={device}  "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")

    train, _ = mnist_denoising(cfg.n_train, 1, cfg.noise, cfg.noise_level, seed=cfg.seed)
    noisy, clean = train.noisy.to(device), train.clean.to(device)
    Yp = extract_patches(noisy, cfg.kernel_size)
    x = pixels(clean)
    t = time.perf_counter()
    G = sample_generators(Yp, cfg.n_patterns, seed=cfg.seed)
    print(f"# M = {Yp.shape[0]}, d = {Yp.shape[1]}, P = {G.shape[1]}; patterns sampled in "
          f"{time.perf_counter() - t:.1f} s")

    fp32 = matmul_rate(device, torch.float32)
    fp64 = matmul_rate(device, torch.float64)
    rates = kernel_rates(Yp, x, G, device)
    print(f"\n## kernel rates ({args.threads} threads; chunk (c, P) blocks as the solver runs them)")
    print(f"dense matmul              fp32 {fp32 / 1e9:7.1f} GFLOP/s   fp64 {fp64 / 1e9:7.1f} GFLOP/s")
    for dt, dense in ((torch.float64, fp64), (torch.float32, fp32)):
        name = "fp64, as solved" if dt == torch.float64 else "fp32"
        r = rates[str(dt)]
        print(f"operator+adjoint ({name:15s}) {r / 1e9:7.1f} GFLOP/s   ratio to dense of the same "
              f"dtype {r / dense:.2f}, to dense fp32 {r / fp32:.2f}   [all matmul flops, 6 M P d incl. the "
              f"sign-pattern product Yp G: {1.5 * r / 1e9:.1f} GFLOP/s, ratio to same dtype {1.5 * r / dense:.2f}]")
    print(f"ray Gram ({rates['fast']})       {rates['gram'] / 1e9:7.1f} GFLOP/s   ratio to dense fp32 "
          f"{rates['gram'] / fp32:.2f}, to dense fp64 {rates['gram'] / fp64:.2f}")

    results = {}
    print("\n## (b) exact solver")
    sync(device)
    t0 = time.perf_counter()
    with PassProfile(device) as profile:
        res = solve_dual(Yp, x, G, cfg.beta, tol=args.tol, time_limit=args.solver_cap, progress=True,
                         dense_bytes=args.dense_bytes)
    sync(device)
    wall = time.perf_counter() - t0
    print(f"\n## where the solver's {wall:.1f} s went (timed passes, matmul flops only)")
    profile.report(wall, {"float32": fp32, "float64": fp64}, rates["fast"])
    net = res.to_primal(kernel_size=cfg.kernel_size)
    rebuilt = primal_objective(net, noisy, clean, cfg.beta)["objective"]
    print(f"solver: {wall:.1f} s, objective {res.objective:.8e}, rebuilt network (eq. 5) {rebuilt:.8e} "
          f"(relative difference {abs(rebuilt - res.objective) / res.objective:.1e}), certified gap {res.gap:.2e}, "
          f"max violation {res.max_violation:.1e}, {net.n_filters} hidden units; {res.status}")
    results["exact solver"] = (res.history["time"], res.history["objective"])
    if args.cap is None:
        t_own = first_within(res.history["time"], res.history["objective"], res.objective * (1 + args.rel))
        args.cap = max(60.0, 10.5 * t_own)
        print(f"solver within {args.rel:g} of its final objective after {t_own:.1f} s: Adam caps set to {args.cap:.0f} s")

    print(f"\n## (a) Adam + hinge (lr {cfg.lr_dual:g}, batch {cfg.batch_size}, cap {args.cap:.0f} s)")
    fast = (not args.eager) and cfg.scale != "smoke"
    times, objs, info = run_adam_hinge(cfg, Yp, x, G, noisy, clean, device, args.cap, fast)
    print(f"{info['epochs']} epochs; rebuilt-network objective {objs[-1]:.8e} (primal_objective "
          f"{info['primal_objective']:.8e}); its dual objective {info['dual_objective']:.8e}, "
          f"max violation {info['max_violation']:.2e}")
    results["Adam + hinge dual"] = (times, objs)

    print(f"\n## (c) primal Adam (m = {cfg.n_filters}, lr {cfg.lr_primal:g}, batch {cfg.batch_size}, cap {args.cap:.0f} s)")
    times, objs, info = run_primal(cfg, noisy, clean, device, args.cap, cfg.n_filters)
    print(f"{info['epochs']} epochs; objective {objs[-1]:.8e} (best {min(objs):.8e})")
    results["primal Adam"] = (times, objs)

    best = min(min(o) for _, o in results.values())
    target = best * (1 + args.rel)
    print(f"\n## time to reach within {args.rel:g} of the best objective found ({best:.8e})")
    report(results, target, args.cap)
    # the two dual methods solve the same sampled program: compare them on it as well
    duals = {k: v for k, v in results.items() if k != "primal Adam"}
    best_dual = min(min(o) for _, o in duals.values())
    print(f"\n## dual methods (the same sampled program, optimum d_P in [{res.lower_bound:.8e}, {res.objective:.8e}], "
          f"certified): time to reach within {args.rel:g} of the best dual network found ({best_dual:.8e})")
    report(duals, best_dual * (1 + args.rel), args.cap)
    p_best = min(results["primal Adam"][1])
    print(f"\nprimal Adam's best objective relative to d_P: {(p_best - res.objective) / res.objective:+.2e} to "
          f"{(p_best - res.lower_bound) / res.lower_bound:+.2e} (negative: the primal found a network the sampled "
          f"program cannot express; d_P >= p* with P sampled patterns)")


def report(results: dict, target: float, cap: float) -> None:
    reach = {}
    for name, (ts, objs) in results.items():
        reach[name] = first_within(ts, objs, target)
        print(f"{name:20s} {fmt_time(reach[name])}   best {min(objs):.8e}  ({(min(objs) - target) / target:+.1e} vs target)")
    t_new = reach["exact solver"]
    for name in results:
        if name == "exact solver":
            continue
        t_other = reach[name]
        if t_new is None:
            print(f"ratio {name} / exact solver: undefined (the exact solver did not reach the target)")
        elif t_other is None:
            print(f"ratio {name} / exact solver: > {cap / t_new:.1f} (not reached within its {cap:.0f} s cap)")
        else:
            print(f"ratio {name} / exact solver: {t_other / t_new:.1f}")


if __name__ == "__main__":
    main()
