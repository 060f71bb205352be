r"""The primal network trained to convergence: the "optimum" basis of the claims (``docs/findings.md``).

The paper trains the non-convex network of eq. (2) with Adam for a fixed budget. Whether non-convex
training *reaches* the convex optimum (Theorem 1) is a separate question, and it can only be asked of
a network trained until it stops improving. :func:`converge_primal` minimises, in the patch form of
eq. (3),

.. math::
    p(U, v) = \frac{1}{2M} \big\| (Yp\, U^\top)_+ v - x \big\|_2^2
              + \frac{\beta}{2} \left( \|U\|_F^2 + \|v\|_2^2 \right),

``Yp`` (M, d) the patch matrix, ``x`` (M,) the targets (``X``, or ``X - Y`` for the residual network of
eq. 6), ``U`` (m, d) the first-layer filters and ``v`` (m,) the second layer: exactly the objective of
:func:`paper_utils.nets.primal.primal_objective` (same normalisation: loss averaged over pixels, ``beta`` not).

Schedule (a training that really converges):

1. *Adam with learning-rate decay*: ``adam_epochs`` epochs of minibatch Adam (the paper's learning rate
   and batch size), the rate decaying by cosine annealing to 1% of its start, so the iterate settles.
2. *Full-batch L-BFGS* (SciPy's L-BFGS-B, float64 objective and gradient sums computed in row chunks), until
   the **stopping rule** holds: the objective decreased by less than ``rel_tol`` (relative) over the last
   ``window`` iterations (and, if ``grad_tol`` is given, the gradient's Euclidean norm is at most
   ``grad_tol``). When the budget (``max_iter`` or ``time_limit``) ends first, or the line search makes
   no further progress before the rule holds, the result says so (``converged = False`` and
   ``stop_reason``): a budget stop is never reported as convergence. The gradient norm at the end is
   always reported.

Why the gradient norm is not part of the default rule (measured, ``tests/test_optimum.py``): the
objective is only piecewise smooth, and its local minima typically sit on kinks, where a hidden unit's
hyperplane ``u_j^T y = 0`` passes through training patches (the cone boundaries of eq. 4, where the
certified dual optimum's directions also sit). There the gradient does not vanish: on a 384-patch
problem, 1,500 float64 L-BFGS iterations left the gradient norm at 1e-3 while the objective changed by
3e-10 per 100 iterations. A gradient-norm test would call such a point unconverged forever.

A converged primal is a *local* solution. Compared with the certified optimum ``d_P`` of the sampled dual
(:func:`paper_utils.nets.dual.solve_dual`), it must be balanced first (:mod:`paper_utils.nets.balance`; or
run with ``rebalance=True``), and its width m set against m* of the convex solution: Theorem 1 gives
``p* <= d_P`` and a primal global optimum equal to p* only for m >= m*. A primal above ``d_P`` may be stuck (a
poor stationary point), unconverged, unbalanced or too narrow; one number cannot tell these apart. A
primal below ``d_P`` uses sign patterns the sample lacks.

Letter key: M patches (output pixels), d = C k k patch dimension, m hidden filters, N images.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from paper_utils.pipeline.cache import Cache
from paper_utils.pipeline.config import DenoiseConfig
from paper_utils.data.mnist import DenoisingSet
from paper_utils.nets.balance import balance_units
from paper_utils.nets.patches import extract_patches
from paper_utils.nets.primal import PrimalNet, primal_objective
from paper_utils.nets.relu_patch import ReluPatchNet, relu_patch_grads, relu_patch_sq_grad

#: bump when a change alters converged networks, so stale cache entries are not reused
CONVERGENCE_CODE_VERSION = "2"


def patch_objective(Yp: torch.Tensor, x: torch.Tensor, U: torch.Tensor, v: torch.Tensor, beta: float, *,
                    grad: bool = False, chunk_rows: int | None = None, compute_dtype: torch.dtype | None = None,
                    fused: bool | None = None):
    """The objective of eq. (2) in patch form, and optionally its gradient, by the fused kernels
    (:func:`paper_utils.nets.relu_patch.relu_patch_sq_grad`).

    Args:
        Yp: patch matrix (M, d).
        x: targets (M,).
        U: first-layer filters (m, d).
        v: second-layer weights (m,).
        beta: weight decay (not averaged over samples).
        grad: also return the gradients ``(gU (m, d), gv (m,))``.
        chunk_rows: rows per chunk (default: :func:`paper_utils.nets.relu_patch.default_chunk_rows`).
        compute_dtype: dtype of the chunk products (default float32: half the traffic of the (c, m)
            blocks); sums over chunks and the regulariser are accumulated in float64.
        fused: the numba kernels (True) or the chunked matmul form (False); default: numba where it runs.

    Returns:
        ``(objective, loss)`` as Python floats, plus ``(gU, gv)`` (dtype of ``U``) when ``grad``.
    """
    if Yp.ndim != 2 or x.shape != (Yp.shape[0],) or U.ndim != 2 or U.shape[1] != Yp.shape[1] or v.shape != (U.shape[0],):
        raise ValueError(f"need Yp (M, d), x (M,), U (m, d), v (m,); got {tuple(Yp.shape)}, {tuple(x.shape)}, "
                         f"{tuple(U.shape)}, {tuple(v.shape)}")
    M = Yp.shape[0]
    if Yp.device.type == "cpu" and M * U.shape[0] <= SMALL_PROBLEM_ELEMENTS:
        return _small_patch_objective(Yp, x, U, v, beta, grad)
    work = torch.float32 if compute_dtype is None else compute_dtype
    sq, g = relu_patch_sq_grad(Yp, x, U, v, grad=grad, chunk_rows=chunk_rows, compute_dtype=work, fused=fused)
    loss = sq / (2 * M)
    reg = 0.5 * beta * (U.double().pow(2).sum() + v.double().pow(2).sum())
    out = (float(loss + reg), float(loss))
    if grad:
        gU, gv = relu_patch_grads(U, v, g, work)
        gU = (gU / M + beta * U.double()).to(U.dtype)
        gv = (gv / M + beta * v.double()).to(v.dtype)
        return out + (gU, gv)
    return out


#: problems with at most this many (row, unit) products take the plain float64 path of
#: :func:`_small_patch_objective` (about 40 us per evaluation at M = 20, m = 10, against 4.5 ms through the
#: chunked kernel, whose fixed cost dominates there)
SMALL_PROBLEM_ELEMENTS = 1 << 16


def _small_patch_objective(Yp, x, U, v, beta, grad):
    """:func:`patch_objective` for small problems on the CPU, in float64 numpy (same formula, same returns)."""
    Y, xn = Yp.detach().double().numpy(), x.detach().double().numpy()
    Un, vn = U.detach().double().numpy(), v.detach().double().numpy()
    M = Y.shape[0]
    Zp = Y @ Un.T                                                      # (M, m) pre-activations
    H = np.maximum(Zp, 0.0)
    r = H @ vn - xn
    loss = float(r @ r) / (2 * M)
    out = (loss + 0.5 * beta * float(np.sum(Un * Un) + vn @ vn), loss)
    if not grad:
        return out
    gv = H.T @ r / M + beta * vn
    gU = ((Zp > 0) * (r[:, None] * vn[None, :])).T @ Y / M + beta * Un
    return out + (torch.from_numpy(gU).to(U.dtype), torch.from_numpy(gv).to(v.dtype))


@dataclass
class ConvergedPrimal:
    """A primal network of eq. (2) trained by :func:`converge_primal`.

    Attributes:
        U: first-layer filters (m, d), float32, CPU.
        v: second-layer weights (m,).
        objective: final eq. (2) training objective (float64 evaluation).
        loss: its data term ``1/(2M) ||f - x||^2``.
        grad_norm: Euclidean norm of the gradient at the end.
        converged: True when the stopping rule held (never for a budget stop).
        stop_reason: why it stopped, in words.
        init_seed: seed of the Kaiming-uniform initialisation (``None``: started from a given network).
        history: per phase: ``phase`` ("adam" / "lbfgs"), ``step`` (epoch or iteration), ``objective``,
            ``seconds`` (wall time since the start).
        seconds: wall time of the whole run.
        test_loss: test loss of the final network (when a test set was given).
    """

    U: torch.Tensor
    v: torch.Tensor
    objective: float
    loss: float
    grad_norm: float
    converged: bool
    stop_reason: str
    init_seed: int | None
    history: dict = field(default_factory=dict)
    seconds: float = 0.0
    test_loss: float | None = None
    restarts: int = 0

    def to_primal(self, kernel_size: int, channels: int = 1, *, residual: bool = False) -> PrimalNet:
        """The :class:`paper_utils.nets.primal.PrimalNet` with these weights."""
        return PrimalNet.from_patch_weights(self.U, self.v, kernel_size, channels, residual=residual)

    def as_dict(self) -> dict:
        return {k: (v.cpu() if isinstance(v, torch.Tensor) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "ConvergedPrimal":
        return cls(**d)


def kaiming_init(n_filters: int, d: int, *, seed: int, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """``U`` (m, d) and ``v`` (m,) drawn like :class:`paper_utils.nets.primal.PrimalNet` (Kaiming uniform,
    ``U(-b, b)`` with ``b = sqrt(6 / fan_in)``: fan-in d for ``U``, m for ``v``; the same draws in the same
    order, so for d = k^2 the weights equal ``PrimalNet``'s bit for bit). Any d >= 1 (e.g. 2 x 2 windows)."""
    if n_filters < 1 or d < 1:
        raise ValueError(f"need n_filters >= 1 and d >= 1, got {n_filters} and {d}")
    gen = torch.Generator().manual_seed(seed)
    b1, b2 = (6.0 / d) ** 0.5, (6.0 / n_filters) ** 0.5
    U = torch.rand((n_filters, d), generator=gen) * 2 * b1 - b1
    v = torch.rand((n_filters,), generator=gen) * 2 * b2 - b2
    return U.to(dtype), v.to(dtype)


def converge_primal(Yp: torch.Tensor, x: torch.Tensor, beta: float, *, n_filters: int | None = None,
                    init_seed: int | None = 0, U0: torch.Tensor | None = None, v0: torch.Tensor | None = None,
                    adam_epochs: int = 20, lr: float = 1e-3, batch_size: int = 25, rows_per_image: int = 784,
                    lbfgs_max_iter: int = 2000,
                    rel_tol: float = 1e-6, grad_tol: float | None = None, window: int = 10,
                    time_limit: float | None = None, eval_every: int = 10, compute_dtype: torch.dtype = torch.float32,
                    rebalance: bool = False, restarts: int = 0, progress: bool = True) -> ConvergedPrimal:
    """Train the primal network of eq. (2) (patch form, eq. 3) until the stopping rule holds.

    Args:
        Yp: patch matrix (M, d) of the training images (the device of ``Yp`` is used).
        x: targets (M,).
        beta: weight decay.
        n_filters: m, for a random start (ignored when ``U0``/``v0`` are given).
        init_seed: seed of the Kaiming-uniform start (paper App. B); the minibatch order uses it too.
        U0, v0: start from these weights instead (e.g. the paper's Adam-trained network).
        adam_epochs: epochs of minibatch Adam with cosine decay before L-BFGS (0: L-BFGS only).
        lr: Adam's initial learning rate (paper: 1e-3 for Figure 2).
        batch_size: images per Adam step (paper: 25), drawn at random each epoch.
        rows_per_image: patch rows of one image (h w; 784 for MNIST): ``Yp`` holds the images' rows in order.
        lbfgs_max_iter: L-BFGS iteration budget.
        rel_tol, grad_tol, window: the stopping rule (module docstring); ``grad_tol=None``: no gradient test.
        time_limit: wall-clock budget in seconds for the whole run (``None``: no limit). Iteration
            budgets are reproducible; a time limit is not (use it as a safety net).
        eval_every: Adam epochs between full-batch objective evaluations (logged in ``history``).
        compute_dtype: dtype of the L-BFGS chunk products (:func:`patch_objective`; sums are float64 either
            way). float32 halves the memory traffic of the (chunk, m) blocks; float64 gives the line search
            exact gradients down to gradient norms of ~1e-8 (small problems, tests); the returned weights
            are then float64 too (float32 otherwise).
        rebalance: balance every unit (:func:`paper_utils.nets.balance.balance_units`: ``||u_j|| = |v_j|``,
            the same function at the smallest weight decay) before L-BFGS, at every restart and at the
            end. A free step: the objective drops by the unbalanced part of the weight decay.
        restarts: when L-BFGS's line search stalls (it cannot decrease the objective further, typically at
            a kink where a unit's hyperplane meets training patches) before the rule holds, restart it
            from that point with a fresh memory, at most this many times, while a restart still lowers
            the objective (relative ``rel_tol``); the iteration budget counts all of them.

    Returns:
        :class:`ConvergedPrimal`.
    """
    if (U0 is None) != (v0 is None):
        raise ValueError("give both U0 and v0, or neither")
    if U0 is None and n_filters is None:
        raise ValueError("give n_filters (random start) or U0, v0")
    if Yp.ndim != 2 or x.shape != (Yp.shape[0],):
        raise ValueError(f"need Yp (M, d) and x (M,), got {tuple(Yp.shape)} and {tuple(x.shape)}")
    dev, M, d = Yp.device, Yp.shape[0], Yp.shape[1]
    if M % rows_per_image:
        raise ValueError(f"Yp has {M} rows, not a multiple of rows_per_image = {rows_per_image}")
    random_start = U0 is None
    if U0 is None:
        U0, v0 = kaiming_init(n_filters, d, seed=init_seed)
    start = time.perf_counter()
    elapsed = lambda: time.perf_counter() - start  # noqa: E731
    hist = {"phase": [], "step": [], "objective": [], "seconds": []}

    def log(phase, step, obj):
        hist["phase"].append(phase); hist["step"].append(step); hist["objective"].append(obj)
        hist["seconds"].append(elapsed())

    U = U0.detach().to(dev, torch.float32).clone().requires_grad_(True)
    v = v0.detach().to(dev, torch.float32).clone().requires_grad_(True)
    log("adam", 0, patch_objective(Yp, x, U.detach().double(), v.detach().double(), beta)[0])
    stop_reason = None
    if adam_epochs > 0:
        opt = torch.optim.Adam([U, v], lr=lr)
        n_images = M // rows_per_image
        Y_img, x_img = Yp.reshape(n_images, rows_per_image, d), x.reshape(n_images, rows_per_image)
        n_batches = math.ceil(n_images / batch_size)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=adam_epochs * n_batches, eta_min=0.01 * lr)
        gen = torch.Generator().manual_seed(0 if init_seed is None else init_seed)
        bar = tqdm(range(1, adam_epochs + 1), desc="primal Adam (cosine decay)", disable=not progress, leave=False)
        for epoch in bar:
            for idx in torch.randperm(n_images, generator=gen).split(batch_size):
                idx = idx.to(dev)
                Yb, xb = Y_img[idx].reshape(-1, d), x_img[idx].reshape(-1)
                r = ReluPatchNet.apply(Yb, U, v) - xb
                obj = 0.5 * r.pow(2).mean() + 0.5 * beta * (U.pow(2).sum() + v.pow(2).sum())
                opt.zero_grad(set_to_none=True)
                obj.backward()
                opt.step(); sched.step()
            if epoch % eval_every and epoch != adam_epochs:
                continue
            full = patch_objective(Yp, x, U.detach().double(), v.detach().double(), beta)[0]
            if not math.isfinite(full):
                raise RuntimeError(f"primal objective became {full} in Adam epoch {epoch}; lower the learning rate")
            log("adam", epoch, full)
            bar.set_postfix(objective=f"{full:.6g}")
            if time_limit is not None and elapsed() > time_limit:
                stop_reason = f"time limit {time_limit:g} s reached during Adam (epoch {epoch})"
                break

    m = U.shape[0]

    def unpack(theta: np.ndarray):
        t = torch.from_numpy(theta).to(dev)
        return t[:m * d].reshape(m, d), t[m * d:]

    recent: deque = deque(maxlen=window + 1)
    state = {"obj": None, "grad_norm": None, "theta": None, "converged": False}

    last = {"theta": None, "value": None}

    def fun(theta):
        if last["theta"] is not None and np.array_equal(theta, last["theta"]):
            return last["value"]
        Ut, vt = unpack(theta)
        obj, _, gU, gv = patch_objective(Yp, x, Ut, vt, beta, grad=True, compute_dtype=compute_dtype)
        g = torch.cat([gU.reshape(-1), gv]).cpu().numpy()
        last.update(theta=theta.copy(), value=(obj, g))
        return obj, g

    class _Stop(Exception):
        pass

    def rule_holds() -> bool:
        return (len(recent) > window and (recent[0] - recent[-1]) <= rel_tol * abs(recent[-1])
                and (grad_tol is None or state["grad_norm"] <= grad_tol))

    def callback(intermediate_result):
        theta = intermediate_result.x
        obj, g = fun(theta)   # the line search's last evaluation (memoised) unless it ended elsewhere
        state.update(obj=obj, grad_norm=float(np.linalg.norm(g)), theta=theta.copy())
        recent.append(obj)
        log("lbfgs", len(hist["phase"]), obj)
        if bar2 is not None:
            bar2.update(1); bar2.set_postfix(objective=f"{obj:.8g}", grad=f"{state['grad_norm']:.1e}")
        if rule_holds():
            state["converged"] = True
            raise _Stop
        if time_limit is not None and elapsed() > time_limit:
            raise _Stop

    U0b, v0b = U.detach(), v.detach()
    if rebalance:
        U0b, v0b = balance_units(U0b.double(), v0b.double())
    theta0 = torch.cat([U0b.reshape(-1), v0b]).double().cpu().numpy()
    state["theta"] = theta0
    lbfgs_message = ""
    bar2 = None
    n_restarts = 0
    if stop_reason is None and lbfgs_max_iter > 0:
        from scipy.optimize import minimize

        bar2 = tqdm(total=lbfgs_max_iter, desc="primal L-BFGS (full batch, float64)", disable=not progress,
                    leave=False)
        start_theta = theta0
        while True:
            done_before = hist["phase"].count("lbfgs")
            left = lbfgs_max_iter - done_before
            obj_before = fun(start_theta)[0]
            try:
                res = minimize(fun, start_theta, jac=True, method="L-BFGS-B", callback=callback,
                               options={"maxiter": left, "maxcor": 20, "ftol": 0.0, "gtol": 0.0, "maxfun": 4 * left})
                state["theta"] = res.x
                lbfgs_message = str(res.message)
                state["converged"] = rule_holds()     # e.g. the line search stalled once the rule already held
            except _Stop:
                break
            used = hist["phase"].count("lbfgs") - done_before
            progressed = fun(state["theta"])[0] < obj_before * (1 - rel_tol)
            if (state["converged"] or n_restarts >= restarts or hist["phase"].count("lbfgs") >= lbfgs_max_iter
                    or used == 0 or not progressed):
                break
            # the line search stalled (typically at a kink of the ReLU) before the rule held: restart
            # L-BFGS from here with a fresh memory (and balanced units)
            n_restarts += 1
            start_theta = state["theta"]
            if rebalance:
                Ur, vr = balance_units(*unpack(start_theta))
                start_theta = torch.cat([Ur.reshape(-1), vr]).cpu().numpy()
        bar2.close()
    if rebalance:
        Ub, vb = balance_units(*unpack(state["theta"]))
        state["theta"] = torch.cat([Ub.reshape(-1), vb]).cpu().numpy()
    Ut, vt = unpack(state["theta"])
    obj, loss, gU, gv = patch_objective(Yp, x, Ut, vt, beta, grad=True, compute_dtype=torch.float64)
    gnorm = float(torch.cat([gU.reshape(-1), gv]).norm())
    if state["converged"]:
        stop_reason = (f"stopping rule met: objective change over {window} L-BFGS iterations <= {rel_tol:g} "
                       f"(relative)" + (f" and gradient norm <= {grad_tol:g}" if grad_tol is not None else "")
                       + f"; gradient norm {gnorm:.2e}")
    elif stop_reason is None:
        if time_limit is not None and elapsed() > time_limit:
            stop_reason = f"time limit {time_limit:g} s reached (gradient norm {gnorm:.2e}); NOT converged by the rule"
        else:
            stop_reason = (f"L-BFGS stopped ({lbfgs_message or 'iteration budget'}; gradient norm {gnorm:.2e}) "
                           "before the stopping rule held; NOT converged by the rule")
    if n_restarts:
        stop_reason += f" ({n_restarts} L-BFGS restart{'s' if n_restarts > 1 else ''} after a stalled line search)"
    keep = torch.float64 if compute_dtype == torch.float64 else torch.float32
    return ConvergedPrimal(U=Ut.to(keep).cpu(), v=vt.to(keep).cpu(), objective=obj, loss=loss, grad_norm=gnorm,
                           converged=bool(state["converged"]), stop_reason=stop_reason,
                           init_seed=init_seed if random_start else None,
                           history=hist, seconds=elapsed(), restarts=n_restarts)


def load_or_converge_primal(cfg: DenoiseConfig, train: DenoisingSet, test: DenoisingSet | None = None, *,
                            init_seed: int, device: torch.device | str = "cpu", start: PrimalNet | None = None,
                            adam_epochs: int = 20, lbfgs_max_iter: int = 2000, time_limit: float | None = None,
                            rel_tol: float = 1e-6, grad_tol: float | None = None, cache: Cache | None = None,
                            progress: bool = True) -> ConvergedPrimal:
    """The converged primal (m = ``cfg.n_filters``) of ``cfg``'s data, from the cache or computed and cached.

    ``start`` (optional) is a network to start from instead of a fresh Kaiming-uniform draw with
    ``init_seed`` (e.g. the paper's Adam-trained primal of the same initialisation seed, which saves its
    epochs); the cache key records which. Cached under ``converged/`` by the configuration key, the
    initialisation, the schedule and the stopping rule (atomic, verified: :class:`paper_utils.pipeline.cache.Cache`).
    """
    cache = cache or Cache()
    origin = "start" if start is not None else "kaiming"
    name = (f"{cfg.label()}-{cfg.key()}-init{init_seed}{origin}-a{adam_epochs}-l{lbfgs_max_iter}"
            f"-t{time_limit if time_limit is not None else 'inf'}-r{rel_tol:g}-g{grad_tol}-v{CONVERGENCE_CODE_VERSION}")
    payload = cache.load("converged", name)
    if payload is not None:
        return ConvergedPrimal.from_dict(payload["result"])
    dev = torch.device(device)
    k = cfg.kernel_size
    Yp = extract_patches(train.noisy, k).to(dev)
    target = train.clean - train.noisy if cfg.residual else train.clean
    x = target.reshape(-1).to(dev)
    U0 = v0 = None
    if start is not None:
        U0, v0 = start.patch_weights()
    hw = train.noisy.shape[-1] * train.noisy.shape[-2]
    result = converge_primal(Yp, x, cfg.beta, n_filters=cfg.n_filters, init_seed=init_seed, U0=U0, v0=v0,
                             adam_epochs=adam_epochs, lr=cfg.lr_primal, batch_size=cfg.batch_size, rows_per_image=hw,
                             lbfgs_max_iter=lbfgs_max_iter, rel_tol=rel_tol, grad_tol=grad_tol,
                             time_limit=time_limit, progress=progress)
    if test is not None:
        net = result.to_primal(k, residual=cfg.residual).to(dev)
        result.test_loss = primal_objective(net, test.noisy.to(dev), test.clean.to(dev), cfg.beta)["loss"]
    cache.save("converged", name, {"config": cfg.as_dict(), "result": result.as_dict()})
    return result
