"""Figure-level runs: build the data, train (or load from the cache) the primal and dual networks.

:func:`train_denoisers` is what the figure modules call (:mod:`paper_utils.figures`). Each trained
network is cached separately under ``<cache>/models/`` by
:meth:`paper_utils.pipeline.config.DenoiseConfig.key`, so a run interrupted after the primal finished
resumes with the dual, and later notebooks (Figures 3-5) reuse Figure 2's models.
:func:`load_or_solve_exact` solves a run's sampled dual exactly (cached under ``<cache>/exact/``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from paper_utils.pipeline.cache import Cache
from paper_utils.pipeline import config
from paper_utils.pipeline.config import DenoiseConfig
from paper_utils.data.mnist import DenoisingSet, load_mnist, mnist_denoising
from paper_utils.nets.dual import DualNet, sample_generators
from paper_utils.dual_solver import SOLVER_VERSION, DualSolution, solve_dual
from paper_utils.nets.patches import extract_patches
from paper_utils.nets.primal import PrimalNet, primal_objective
from paper_utils.training.adam import History, train_dual, train_primal


@dataclass
class DenoiseRun:
    """Trained primal and dual networks of one configuration, with their data and curves."""

    cfg: DenoiseConfig
    train: DenoisingSet
    test: DenoisingSet
    primal: PrimalNet
    dual: DualNet
    primal_history: History
    dual_history: History


def fast_kernels(cfg: DenoiseConfig) -> bool:
    """The dual's fast kernels (the fused numba kernels on CPU for d <= 16, ``torch.compile``d chunks otherwise)
    except at ``smoke`` scale, where the compile time would exceed the training time (and CI keeps to the
    eager chunked path)."""
    return cfg.scale != "smoke"


def _primal_payload(net: PrimalNet, hist: History, cfg: DenoiseConfig) -> dict:
    return {"config": cfg.as_dict(), "state": {k: v.cpu() for k, v in net.state_dict().items()},
            "history": hist.as_dict()}


def _dual_payload(net: DualNet, hist: History, cfg: DenoiseConfig) -> dict:
    return {"config": cfg.as_dict(), "G": net.G.cpu(), "W": net.W.detach().cpu(), "Z": net.Z.detach().cpu(),
            "history": hist.as_dict()}


def load_or_train_primal(cfg: DenoiseConfig, train: DenoisingSet, test: DenoisingSet, *, device: torch.device,
                         cache: Cache | None = None, progress: bool = True) -> tuple[PrimalNet, History]:
    """The primal network of ``cfg``: from the cache if present, else trained and cached."""
    cache = cache or Cache()
    name = f"{cfg.label()}-{cfg.key()}"
    payload = cache.load("primal", name)
    if payload is None:
        net, hist = train_primal(cfg, train, test, device=device, progress=progress)
        cache.save("primal", name, _primal_payload(net, hist, cfg))
        return net, hist
    net = PrimalNet(cfg.n_filters, cfg.kernel_size, residual=cfg.residual)
    net.load_state_dict(payload["state"])
    return net.to(device), History.from_dict(payload["history"])


def load_or_train_dual(cfg: DenoiseConfig, train: DenoisingSet, test: DenoisingSet, *, device: torch.device,
                       cache: Cache | None = None, progress: bool = True) -> tuple[DualNet, History]:
    """The dual network of ``cfg`` (Adam + hinge): from the cache if present, else trained and cached."""
    cache = cache or Cache()
    name = f"{cfg.label()}-{cfg.key()}"
    payload = cache.load("dual", name)
    if payload is None:
        net, hist = train_dual(cfg, train, test, device=device, progress=progress, fast=fast_kernels(cfg))
        cache.save("dual", name, _dual_payload(net, hist, cfg))
        return net, hist
    net = DualNet(payload["G"].to(device), cfg.kernel_size, residual=cfg.residual, fast=fast_kernels(cfg))
    with torch.no_grad():
        net.W.copy_(payload["W"]); net.Z.copy_(payload["Z"])
    return net.to(device), History.from_dict(payload["history"])


def train_denoisers(cfg: DenoiseConfig, *, device: torch.device, cache: Cache | None = None,
                    progress: bool = True) -> DenoiseRun:
    """Figure 2's experiment for one configuration: MNIST data, then primal and dual (cached)."""
    train, test = mnist_denoising(cfg.n_train, cfg.n_test, cfg.noise, cfg.noise_level, seed=cfg.seed,
                                  arrays=load_mnist())
    primal, ph = load_or_train_primal(cfg, train, test, device=device, cache=cache, progress=progress)
    dual, dh = load_or_train_dual(cfg, train, test, device=device, cache=cache, progress=progress)
    return DenoiseRun(cfg, train, test, primal, dual, ph, dh)


@dataclass
class ExactDual:
    """The sampled dual of a run solved by :func:`paper_utils.dual_solver.solve_dual` (same data, patterns
    and beta as the run's Adam + hinge dual), with the eq. (2) objective of its eq. (5) ReLU network."""

    solution: DualSolution
    rebuilt_objective: float      # eq. (2) objective of the eq. (5) network, float64, on the training set


def load_or_solve_exact(run: DenoiseRun, *, tol: float = 1e-6, time_limit: float | None = None,
                        cache: Cache | None = None, progress: bool = False) -> ExactDual:
    """Solve ``run``'s sampled dual (eq. 4) exactly with a certificate, or load the cached solution.

    Same data, patterns ``G`` and ``beta`` as the run's Adam + hinge dual; see :func:`load_or_solve_exact_data`.
    """
    return load_or_solve_exact_data(run.cfg, run.train, run.dual.G.detach(), tol=tol, time_limit=time_limit,
                                    cache=cache, progress=progress)


def load_or_solve_exact_data(cfg: DenoiseConfig, train: DenoisingSet, G: torch.Tensor | None = None, *,
                             tol: float = 1e-6, time_limit: float | None = None, cache: Cache | None = None,
                             progress: bool = False) -> ExactDual:
    """The sampled dual of ``cfg`` on ``train`` solved exactly (:func:`paper_utils.dual_solver.solve_dual`).

    ``G`` (d, P) defaults to the generators the paper's dual training samples for ``cfg``
    (:func:`paper_utils.nets.dual.sample_generators` on the training patches with ``cfg.seed``), so a sweep
    that never built a :class:`DenoiseRun` solves the same program as its trained dual. The solve runs
    on the device of ``G``. Cached under ``exact/`` by the configuration key, ``tol`` and the solver's
    :data:`~paper_utils.dual_solver.SOLVER_VERSION`. ``time_limit`` only bounds the work, so a solution
    that stopped on it is cached too (its ``converged`` and ``status`` say so), and reused by a call with
    the same or a shorter limit; a call with a longer limit (or none) solves again. The solver's history
    keeps the wall times of the run that computed it.
    """
    cache = cache or Cache()
    if config.dry_run(cfg.scale):  # a memory dry run: the solve's first steps only
        time_limit = min(time_limit or config.DRY_RUN_SOLVE_SECONDS, config.DRY_RUN_SOLVE_SECONDS)
    name = f"{cfg.label()}-{cfg.key()}-tol{tol:g}-s{SOLVER_VERSION}"
    payload = cache.load("exact", name)
    if payload is not None:
        sol = DualSolution.from_dict(payload["solution"])
        limit = payload.get("time_limit")
        longer = limit is not None and (time_limit is None or time_limit > limit)
        if sol.converged or not longer:
            return ExactDual(sol, payload["rebuilt_objective"])
    Yp = extract_patches(train.noisy, cfg.kernel_size)
    if G is None:
        G = sample_generators(Yp, cfg.n_patterns, seed=cfg.seed)
    dev = G.device                                 # solve where the run trained (GPU at paper scale)
    Yp = Yp.to(dev)
    x = (train.clean - train.noisy if cfg.residual else train.clean).reshape(-1).to(dev)
    sol = solve_dual(Yp, x, G.detach(), cfg.beta, tol=tol, time_limit=time_limit, progress=progress)
    net = sol.to_primal(kernel_size=cfg.kernel_size, residual=cfg.residual).double()
    # the eq. (5) network has up to 2P hidden units: bound its float64 activations to ~2e8 numbers
    # (1.6 GB) per batch (at paper scale, 8000 units x 784 pixels x 500 images would need 25 GB)
    pixels_per_image = train.noisy[0].numel()
    batch = max(1, min(500, int(2e8 // max(1, net.n_filters * pixels_per_image))))
    rebuilt = primal_objective(net, train.noisy.cpu().double(), train.clean.cpu().double(),
                               cfg.beta, batch_size=batch)["objective"]
    cache.save("exact", name, {"config": cfg.as_dict(), "tol": tol, "time_limit": time_limit, "solution": sol.as_dict(),
                               "rebuilt_objective": rebuilt})
    return ExactDual(sol, rebuilt)


def duality_gap_rows(runs: list[DenoiseRun]) -> list[dict]:
    """Final-epoch numbers of Figure 2 per run: primal vs dual losses and objectives, relative gaps.

    ``*_loss`` is the data term ``1/(2M) ||f - X||^2`` (train) and the test loss; ``*_obj`` adds the
    regulariser: eq. (2) for the primal, eq. (4) at the dual's final weights for the dual (what the
    paper's theory compares). ``gap_*`` is ``(dual - primal) / primal``. ``rebuilt_vs_dual`` compares
    the objective of the ReLU network rebuilt from the dual by eq. (5) (what a user of the dual gets)
    with the dual's own objective (they are equal when the constraints hold);
    ``max_violation`` is the largest constraint violation the hinge penalty left.
    """
    rows = []
    for run in runs:
        ph, dh = run.primal_history, run.dual_history
        p_l, d_l = ph.train_loss[-1], dh.train_loss[-1]
        p_o, d_o = ph.train_objective[-1], dh.train_objective[-1]
        p_t, d_t = ph.test_loss[-1], dh.test_loss[-1]
        rows.append({
            "noise": f"{run.cfg.noise} {run.cfg.noise_level:g}",
            "primal_loss": p_l, "dual_loss": d_l, "gap_loss": (d_l - p_l) / p_l,
            "primal_test": p_t, "dual_test": d_t, "gap_test": (d_t - p_t) / p_t,
            "primal_obj": p_o, "dual_obj": d_o, "gap_obj": (d_o - p_o) / p_o,
            "rebuilt_vs_dual": (dh.rebuilt_objective[-1] - d_o) / d_o,
            "max_violation": dh.max_violation[-1],
        })
    return rows


def format_rows(rows: list[dict], digits: int = 4) -> str:
    """A fixed-width text table of ``rows`` (floats to ``digits`` significant digits)."""
    if not rows:
        return "(no rows)"
    cols = list(rows[0])
    cells = [[f"{r[c]:.{digits}g}" if isinstance(r[c], float) else str(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Train (and cache) Figure 2's models without Jupyter, e.g. on a GPU machine:

        python -m paper_utils.training.denoisers --scale paper --device cuda
    """
    import argparse

    from paper_utils.pipeline import runtime

    parser = argparse.ArgumentParser(description="Train and cache Figure 2's primal and dual networks.")
    parser.add_argument("--scale", default="cpu", choices=config.SCALES)
    parser.add_argument("--device", default="auto", choices=runtime.DEVICES)
    parser.add_argument("--sigmas", type=float, nargs="*", default=list(config.FIG2_SIGMAS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bars (for logs)")
    args = parser.parse_args(argv)
    runtime.setup(args.seed)
    dev = runtime.resolve_device(args.device)
    runs = []
    for sigma in args.sigmas:
        runs.append(train_denoisers(config.mnist_denoise_config(args.scale, sigma, seed=args.seed), device=dev,
                                    progress=not args.no_progress))
        print(format_rows(duality_gap_rows(runs[-1:])), flush=True)
    print(format_rows(duality_gap_rows(runs)))
    for run in runs:
        print(run.cfg.label(), "primal s/epoch", f"{run.primal_history.seconds[-1] / run.cfg.epochs:.2f}",
              "dual s/epoch", f"{run.dual_history.seconds[-1] / run.cfg.epochs:.2f}")


if __name__ == "__main__":
    main()
