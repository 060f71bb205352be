r"""An exact, certified solver for the sampled convex dual program, eq. (4).

For the patch matrix ``Yp`` (M, d), targets ``x`` (M,) and generators ``G`` (d, P) with sign
patterns ``D_i = diag(1[Yp g_i >= 0])``, :func:`solve_dual` solves

.. math::
    d_P = \min_{w_i, z_i \in K_i} \frac{1}{2M} \Big\| \sum_{i=1}^P D_i Yp (w_i - z_i) - x \Big\|_2^2
          + \beta \sum_{i=1}^P \left( \|w_i\|_2 + \|z_i\|_2 \right),
    \qquad K_i = \{ w : (2D_i - I)\, Yp\, w \ge 0 \},

returns a point that satisfies every one of the ``2 M P`` cone constraints (up to floating point;
``max_violation`` reports the largest, as :meth:`paper_utils.nets.dual.DualNet.max_violation` defines it),
so that the ReLU network of eq. (5) (:meth:`DualSolution.to_primal`) reproduces its predictions and
its objective, and certifies it with a lower bound on ``d_P``.

Algorithm (chosen from measurements on MNIST sigma = 0.5 patches, beta = 1e-5; CPU numbers from this
project's shared 2-core machine, so wall times are approximate):

1. *Ray lasso* (:mod:`.lasso`). 2. *Tilted rays* (:mod:`.tilt`). 3. *Barrier interior-point
   refinement* (:mod:`.barrier`), when the certified gap is still above ``tol``; the certificate is
   :mod:`.cones`, the chunked passes :mod:`.data`. Steps 1-2 run either on the P x P Gram matrix of
   all features (``gram="full"``) or over a working set of patterns grown by pricing
   (``gram="working"``, :mod:`.workset`; the default from P = 1,000 on): the same certificate over all
   P patterns, a smaller master problem whose float32 Gram rows are made exact by iterative
   refinement on the float64 operator pass. At ``cpu`` scale (P = 2,000, 1,536 active) the working
   set computes about half the Gram matmul flops, all in float32; see :mod:`.workset`.
4. *Restoration and sparsity.* A barrier point is projected exactly onto the full cones (the
   cutting-plane Lawson-Hanson above) and certified; blocks strictly inside the dual constraint
   (``c_j < beta``: zero at the optimum by complementary slackness), which the barrier leaves tiny but
   non-zero, are set to zero when that keeps the objective or the certified ``tol``.

Measured and rejected: FISTA with restarts on the constrained problem (exact cone projections) and
ADMM with exact linear solves still had relative gaps near 1 after 2,000 and 600 iterations at
M = 784, P = 30. First-order methods fail here twice over: ``H`` is ill-conditioned (condition
number 2.5e6 at M = 15,680, P = 300; 1e4 after a Kronecker-factored (K-FAC) preconditioner), and,
the cones being thin, the optimum pairs large, nearly cancelling ``w_i`` and ``z_i`` (norms ~4,
0.03 rad apart at M = 784: their difference is the gated filter), whose growth first-order methods
drive with forces of size ``beta``. The residual-based certificate also needs a near-exact point.
Matrix-free Newton (PCG on ``tau H + Phi``) took 24 to 448 iterations per Newton system at M = 3,136,
P = 100 with the best preconditioner tried (K-FAC plus ``Phi``), against one dense Cholesky. Column
generation that *adds* atoms (unit vectors of the cones priced by the certificate's projections) to a
lasso master instead of replacing a pattern's direction: it stalls, because nearly parallel atoms of
one cone make the master degenerate and the atomic l1 norm overcharges their combinations (M = 39,200,
P = 300: 14 rounds moved ``max_j c_j / beta`` from 1.2322 to 1.2292; at ``cpu`` scale 600 atoms per
round left the master lasso unsolved, objective +7% after one round).

Limitations: with ``beta = 0`` no certificate is possible (``c_j <= 0`` cannot be met by a
floating-point residual; ``lower_bound`` is then 0 unless the objective is) and the barrier's
iterates are unbounded along ``w_i = z_i``; such a call stops at ``max_iter`` with a feasible point.

Letter key: M patches, d patch dimension C k k, P patterns, B = 2P blocks (the w's then the z's).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from .barrier import _refine
from .cones import INSIDE, _WorkingSets, _certificate, _project_cones
from .data import F64, _as_tensor, _Data
from .lasso import _blocks, _lasso
from .result import DualSolution
from .tilt import _tilt
from .workset import _ray_workset, _tilt_workset


# ----------------------------------------------------------------------------------------------
# the solver
# ----------------------------------------------------------------------------------------------
def solve_dual(Yp, x, G, beta: float, *, tol: float = 1e-6, max_iter: int = 400,
               time_limit: float | None = None, device=None, dtype: torch.dtype | None = None,
               W0=None, Z0=None, progress: bool = False, chunk_rows: int | None = None,
               working_set: int = 128, exact_rows: int = 512, dense_bytes: float = 2e9,
               barrier_factor: float = 10.0, max_tilts: int = 30, gram: str = "auto",
               working_init: int | None = None, accept_gap: float | None = None) -> DualSolution:
    r"""Solve eq. (4) over the sign patterns of ``G`` exactly and certify the answer.

    Args:
        Yp: patch matrix (M, d), numpy array or torch tensor (float32 / float64).
        x: targets (M,) (for a residual network, ``X - Y``).
        G: generators (d, P); pattern i is ``1[Yp @ G[:, i] >= 0]``.
        beta: regularisation weight (>= 0; not averaged over samples, paper App. B).
        tol: stop when the certified relative gap ``(objective - lower_bound) / objective <= tol``.
        max_iter: most barrier Newton steps.
        time_limit: stop refining after this many seconds (the result is still feasible and
            certified, with ``converged`` False). It is checked between steps (the ray Gram matrix
            and lasso, each tilted-ray round, each Newton step): the step in progress finishes, so the
            solve can overrun it by one step (one tilted-ray round: up to about 15 s at ``cpu`` scale).
        device: where to compute (default: the device of ``Yp`` when it is a tensor, else CPU).
        dtype: dtype of the ray Gram and ranking passes (default: see the module docstring);
            everything else runs in float64.
        W0, Z0: optional warm start (P, d), e.g. from the paper's Adam + hinge training: it is made
            feasible by exact projection onto the cones and used when its objective beats the ray
            lasso's.
        progress: print one line per step.
        chunk_rows: rows of ``Yp`` per chunk (default: (chunk, P) blocks of about 512K numbers on CPU, at least 64 rows).
        working_set: constraint rows per block in the barrier when there are more than ``exact_rows``.
        exact_rows: up to this many non-zero rows, every row is in every working set.
        dense_bytes: memory allowed for the barrier's dense (P d)^2 float64 matrices; above it the
            refinement is skipped (``status`` says so).
        barrier_factor: growth of the barrier parameter per outer step.
        max_tilts: most tilted-ray rounds (step 2; 0 skips it).
        gram: ``"full"``: steps 1-2 on the P x P Gram matrix of all features (:mod:`.lasso`,
            :mod:`.tilt`); ``"working"``: over a working set of patterns grown by pricing
            (:mod:`.workset`; the certificate still covers all P patterns); ``"auto"``: ``"working"``
            when ``P >= 1000``, else ``"full"``. Measured at ``cpu`` scale (P = 2,000) on 2 quiet
            cores: certified in 29.6-34.3 s (four runs) against 75-78 s on the full path, the same
            optimum to 3e-9 (``benchmarks/results/bench_solver_paths_cpu_2cores_quiet.txt``); at paper
            scale (P = 8,000) in 197-209 s (``bench_solver_paths_paper_P8000_2cores.txt``). Below P = 1,000
            the first working set (``P // 4``, at least 256) is a large share of the patterns.
        working_init: patterns in the first working set (default ``max(256, P // 4)``).
        accept_gap: a certified gap that is good enough: steps 1-2 still aim at ``tol``, but when
            they end above ``tol`` and at most ``accept_gap`` their point is returned with its
            certificate (``converged`` False), and the barrier, when it runs, stops at
            ``accept_gap``. For :func:`paper_utils.dual_solver.solve_global`'s early rounds: on small
            problems the tilted rays can cycle a little above ``tol`` (M = 15,680, P = 400: certified
            gap 8.8e-5 after 1 s, then 23 s of barrier to reach 1e-6). Default None: refine to ``tol``.

    Returns:
        :class:`DualSolution`.

    Raises:
        ValueError: on bad shapes, NaN or Inf inputs, ``beta < 0``, ``tol <= 0`` or a zero generator.
    """
    t_start = time.perf_counter()
    if device is None:
        device = Yp.device if isinstance(Yp, torch.Tensor) else torch.device("cpu")
    device = torch.device(device)
    in_dtypes = [a.dtype for a in (Yp, x, G) if isinstance(a, torch.Tensor)]
    in_dtypes += [F64 for a in (Yp, x, G) if isinstance(a, np.ndarray) and a.dtype == np.float64]
    Yp = _as_tensor(Yp, "Yp", device)
    x = _as_tensor(x, "x", device)
    G = _as_tensor(G, "G", device)
    if Yp.ndim != 2 or Yp.shape[0] < 1 or Yp.shape[1] < 1:
        raise ValueError(f"Yp must have shape (M, d) with M, d >= 1, got {tuple(Yp.shape)}")
    M, d = Yp.shape
    if x.ndim != 1 or x.shape[0] != M:
        raise ValueError(f"x must have shape (M,) = ({M},), got {tuple(x.shape)}")
    if G.ndim != 2 or G.shape[0] != d or G.shape[1] < 1:
        raise ValueError(f"G must have shape (d, P) = ({d}, P) with P >= 1, got {tuple(G.shape)}")
    if bool((torch.linalg.vector_norm(G, dim=0) == 0).any()):
        raise ValueError("G has an all-zero column: a generator must be a non-zero vector")
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta < 0:
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol must be > 0, got {tol!r}")
    if gram not in ("auto", "full", "working"):
        raise ValueError(f"gram must be 'auto', 'full' or 'working', got {gram!r}")
    if accept_gap is not None and not (isinstance(accept_gap, (int, float)) and accept_gap >= 0):
        raise ValueError(f"accept_gap must be a number >= 0 or None, got {accept_gap!r}")
    if working_init is not None and (isinstance(working_init, bool) or not isinstance(working_init, int)
                                     or working_init < 1):
        raise ValueError(f"working_init must be an int >= 1, got {working_init!r}")
    P = G.shape[1]
    use_ws = gram == "working" or (gram == "auto" and P >= 1000)
    out_dtype = Yp.dtype
    if dtype is None:
        dtype = F64 if (F64 in in_dtypes or M * P <= (1 << 25)) else torch.float32
    data = _Data(Yp, x, G, dtype, chunk_rows)
    beta = float(beta)
    c0 = float(data.x @ data.x) / (2 * M)
    hist = {"time": [], "objective": [], "lower_bound": [], "gap": [], "phase": []}
    state = {"U": None, "obj": math.inf, "lb": -math.inf, "newton": 0, "bound": None}

    def log(msg):
        if progress:
            print(f"[solve_dual {time.perf_counter() - t_start:7.1f}s] {msg}", flush=True)

    def out_of_time():
        return time_limit is not None and time.perf_counter() - t_start > time_limit

    def gap_now():
        obj, lb = state["obj"], min(state["lb"], state["obj"])
        return (obj - lb) / obj if obj > 0 else 0.0

    ws = _WorkingSets(data, working_set, exact_rows)
    ws_cert = ws.copy()

    def assess(U, phase, fresh=None):
        """Objective and certificate at a point U (2P, d) feasible for the full cones; record it.
        ``fresh``: ``data.loss_grad`` at U when the caller has it already."""
        sq, rx, grad = fresh if fresh is not None else data.loss_grad(U[:P] - U[P:])
        sq, rx = float(sq), float(rx)
        obj = sq / (2 * M) + beta * float(torch.linalg.vector_norm(U, dim=1).sum())
        lb, ratio, bound = _certificate(data, ws_cert, beta, sq, rx, grad)
        state["last"] = (grad, bound)
        if obj < state["obj"]:
            state["U"], state["obj"], state["bound"], state["phase"] = U, obj, bound, phase
        state["lb"] = max(state["lb"], lb)
        gap = gap_now()
        hist["time"].append(time.perf_counter() - t_start)
        hist["objective"].append(state["obj"])
        hist["lower_bound"].append(min(state["lb"], state["obj"]))
        hist["gap"].append(gap)
        hist["phase"].append(phase)
        log(f"{phase:5s} objective {obj:.10e}  lower bound {lb:.10e}  certified gap {gap:.2e}  "
            f"(max_j c_j / beta = {ratio:.6f}, {data.passes} passes)")
        return gap

    # -- step 1: the ray lasso (exact, feasible by construction) ------------------------------------
    Gh = data.Gh.T
    if use_ws:
        init = working_init if working_init is not None else max(256, P // 4)
        pset = _ray_workset(data, beta, init, log, out_of_time)
        theta = pset.full_theta()
        log(f"ray   lasso over a working set of {pset.S.numel()} patterns solved: "
            f"{int((theta != 0).sum())} of {P} rays active, {pset.rows} Gram rows")
        assess(_blocks(theta, Gh), "ray", pset.last)
    else:
        Q, q = data.relu_gram()
        log(f"ray   Gram matrix of the {P} ray features ({data.fast}, chunks of {data.chunk} rows)")
        theta = _lasso(Q, q, beta)
        log(f"ray   lasso solved: {int((theta != 0).sum())} of {P} rays active")
        assess(_blocks(theta, Gh), "ray")
    ray_point = (theta, state["last"])
    status = "the ray lasso is certified to tol" if gap_now() <= tol else "ray lasso only (tilted rays skipped)"

    # -- optional warm start ------------------------------------------------------------------------
    if W0 is not None or Z0 is not None:
        if W0 is None or Z0 is None:
            raise ValueError("give both W0 and Z0, or neither")
        W0 = _as_tensor(W0, "W0", device).to(F64)
        Z0 = _as_tensor(Z0, "Z0", device).to(F64)
        if W0.shape != (P, d) or Z0.shape != (P, d):
            raise ValueError(f"W0 and Z0 must have shape (P, d) = ({P}, {d}), got "
                             f"{tuple(W0.shape)} and {tuple(Z0.shape)}")
        U0, done = _project_cones(data, ws, torch.cat([W0, Z0]))
        if bool(done.all()):
            assess(U0, "warm")

    # -- step 2: tilted rays ------------------------------------------------------------------------------
    if gap_now() > tol and max_tilts > 0 and beta > 0 and not out_of_time():
        theta, (grad, bound) = ray_point
        if use_ws:
            status = _tilt_workset(data, ws_cert, beta, tol, pset, grad, bound, max_tilts, state, assess,
                                   log, out_of_time, gap_now)
            log(f"tilt  working set: {pset.S.numel()} patterns, {pset.rows} Gram rows in all "
                f"({pset.flops / 1e12:.2f} TFLOP)")
        else:
            status = _tilt(data, ws_cert, beta, tol, Q, q, theta, Gh, grad, bound, max_tilts, state, assess,
                           log, out_of_time, gap_now)
    if not use_ws:
        del Q, q

    # -- step 3: barrier refinement -----------------------------------------------------------------------
    n = P * d
    if tol < gap_now() <= (accept_gap or 0.0):
        status += f"; accepted at certified gap {gap_now():.1e} <= accept_gap={accept_gap:g} without the barrier"
    elif gap_now() > tol:
        if 3.0 * n * n * 8 > dense_bytes:
            status += (f"; the barrier refinement needs {3 * n * n * 8 / 1e9:.1f} GB of dense (P d)^2 "
                       f"matrices (dense_bytes={dense_bytes:.2g}) and was skipped")
        elif out_of_time():
            status = "time limit reached before the barrier refinement"
        else:
            target = max(tol, accept_gap or 0.0)
            status = _refine(data, ws, beta, c0, target, max_iter, barrier_factor, state, assess, log,
                             out_of_time, gap_now)
            if target > tol:
                status = status.replace("to tol", f"to accept_gap={accept_gap:g}")

    # -- final: exact restoration and report ----------------------------------------------------------
    U = state["U"]
    if state["phase"] in ("warm", "ipm"):        # ray and tilted points are in the full cones already
        U, done = _project_cones(data, ws, U)
        if not bool(done.all()):
            U = state["U"]

    def evaluate(U):
        W, Z = U[:P].to(out_dtype), U[P:].to(out_dtype)
        W64, Z64 = W.to(F64), Z.to(F64)
        sq, worst, scale = data.evaluate(W64, Z64)
        reg = beta * float(torch.linalg.vector_norm(W64, dim=1).sum() + torch.linalg.vector_norm(Z64, dim=1).sum())
        return W, Z, sq / (2 * M), reg, worst, scale

    W, Z, loss, reg, worst, scale = evaluate(U)
    # Blocks strictly inside the dual constraint (c_j < beta) are zero at the optimum (complementary
    # slackness); the barrier leaves them tiny but non-zero. Zero them (exact path sparsity, a smaller
    # eq. (5) network) when the objective does not rise, or the point stays certified to tol.
    inside = (state["bound"] < INSIDE * beta) & (torch.linalg.vector_norm(U, dim=1) > 0)
    if bool(inside.any()):
        cand = evaluate(torch.where(inside.unsqueeze(1), 0.0, U))
        c_obj, obj0 = cand[2] + cand[3], loss + reg
        if c_obj <= obj0 * (1 + 1e-3 * tol) or (c_obj - min(state["lb"], c_obj)) <= tol * c_obj:
            W, Z, loss, reg, worst, scale = cand
            log(f"final {int(inside.sum())} blocks with c_j < beta set to zero: objective {obj0:.10e} -> {c_obj:.10e}")
    obj = loss + reg
    lb = min(state["lb"], obj)
    gap = (obj - lb) / obj if obj > 0 else 0.0
    hist["time"].append(time.perf_counter() - t_start)
    hist["objective"].append(obj)
    hist["lower_bound"].append(lb)
    hist["gap"].append(gap)
    hist["phase"].append("final")
    converged = gap <= tol
    if converged and not status.endswith("to tol"):
        status = "certified to tol"
    elif not converged:
        # the step's own sentence may say "certified to tol" for the float64 point, before zeroing and
        # the cast to the input dtype: the returned point is what counts
        status = status.replace("certified to tol", f"certified to tol before the cast to {out_dtype}")
        status = f"NOT certified to tol={tol:g} (certified gap {gap:.2e}): {status}"
    violation = worst / scale if scale > 0 else 0.0
    log(f"final objective {obj:.10e}  lower bound {lb:.10e}  certified gap {gap:.2e}  "
        f"max violation {violation:.1e}: {status}")
    return DualSolution(W=W, Z=Z, objective=obj, loss=loss, reg=reg, lower_bound=lb, gap=gap,
                        max_violation=violation, converged=converged, status=status, history=hist,
                        newton_steps=state["newton"], seconds=time.perf_counter() - t_start, beta=beta,
                        G=data.G.to(out_dtype))
