r"""Step 1 of :func:`paper_utils.dual_solver.solve_dual`: the ray lasso, solved exactly.

Algorithm (chosen from measurements on MNIST sigma = 0.5 patches, beta = 1e-5; CPU numbers from this
project's shared 2-core machine, so wall times are approximate):


1. *Ray lasso.* Restricting every block to its generator's ray, ``w_i = a_i g_i / ||g_i||``,
   ``z_i = c_i g_i / ||g_i||`` (``g_i`` lies in ``K_i``, so the point is feasible by construction),
   turns eq. (4) into a lasso over the P ReLU features ``(Yp g_i)_+``. Its P x P Gram matrix costs
   ``2 M P^2`` flops in one matmul-bound pass, and the lasso is solved exactly (active-set Newton
   steps with a feature-sign line search). The cones ``K_i`` are cells of the arrangement of the M
   patch hyperplanes, thin cones around ``g_i`` (measured angular radius ~0.03 rad at M = 784,
   shrinking with M), so the restriction loses less and less. Excess of the ray point over ``d_P``:
   1.4 at M = 784 (P = 30), 0.14 at 3,136 (P = 100), 2.3e-3 at 15,680 (P = 300), 2.7e-4 at 78,400
   (P = 300), 2.6e-5 at 470,400 (P = 2,000, ``cpu`` scale). Its certificate is looser than that
   (gap 3.1e-4 at ``cpu`` scale): the ray point's residual violates the dual constraints of the
   full cones by ``max_j c_j / beta = 1.0116``, because the optimum tilts the directions.

Letter key: M patches, d patch dimension C k k, P patterns, B = 2P blocks (the w's then the z's).
"""

from __future__ import annotations

import math

import torch

from .data import F64


# ----------------------------------------------------------------------------------------------
# step 1: the ray lasso, solved exactly
# ----------------------------------------------------------------------------------------------
def _lasso(Q: torch.Tensor, q: torch.Tensor, lam: float, fista_iters: int = 300,
           max_rounds: int = 2000, theta0: torch.Tensor | None = None, warm_steps: int = 64) -> torch.Tensor:
    """``argmin_theta 1/2 theta^T Q theta - q^T theta + lam ||theta||_1`` (float64, exact).

    Without ``theta0``: :func:`_lasso_grow` (forward growth of the support). With it: active-set
    Newton steps from ``theta0`` (:func:`_lasso_run`); a warm start that ends without the KKT
    conditions is solved again by growth: warm-started active-set steps can stall far from the
    optimum when new, nearly collinear features join (measured at paper scale, P = 8,000: the working-set loop's lasso kept
    the same 4,019 features active while 2,164 violated patterns joined, and its objective rose).
    The warm start gets ``warm_steps`` active-set steps (one Cholesky factorisation each): after a
    round that tilted most directions its line searches cross zero one feature at a time (measured at
    M = 15,680, P = 1,440: about 250 steps per lasso, 7.5 s of a 14.5 s solve, against 0.4 s by
    growth), while at paper scale the refinement steps' warm starts converge within a few steps and
    growth from zero took 45 s more per solve (certified at 271 s instead of 210 s).
    """
    if theta0 is not None:
        theta, kkt = _lasso_run(Q, q, lam, fista_iters, warm_steps, theta0)
        if kkt:
            return theta
    theta, kkt = _lasso_grow(Q, q, lam)
    if not kkt:                                # never worse than the whole-set solver from scratch
        other, _ = _lasso_run(Q, q, lam, fista_iters, max_rounds, None)
        if _objective(Q, q, lam, other) < _objective(Q, q, lam, theta):
            theta = other
    return theta


def _objective(Q: torch.Tensor, q: torch.Tensor, lam: float, theta: torch.Tensor) -> float:
    return float(0.5 * (theta @ (Q @ theta)) - q @ theta + lam * theta.abs().sum())


def _lasso_grow(Q: torch.Tensor, q: torch.Tensor, lam: float, frac: float = 0.05, k_min: int = 32,
                max_outer: int = 100000) -> tuple[torch.Tensor, bool]:
    """The lasso of :func:`_lasso` from zero by forward growth of a working set of features.

    Each round adds the ``max(k_min, frac * |support|)`` features whose KKT condition is most violated
    (``|g_i| > lam``, largest first) to the support and solves the lasso over that set exactly
    (:func:`_lasso_run`, warm-started at the previous amplitudes; the objective falls every round);
    it stops when no feature outside is violated, i.e. on the exact KKT conditions of the whole
    problem. Measured on the working-set ray lassos at paper scale (P = 8,000 patterns, MNIST sigma
    0.5, n = 4,000 / 6,485 / 6,840 features with 2,589 / 3,721 / 3,991 active; 2 cores): 3.8 s /
    12.5 s / 17.9 s, against 37.6 s (FISTA start) and 83.8 s / 32.3 s (warm start at the previous
    round's solution) for :func:`_lasso_run` on the whole set, the same objective to the last digit.
    There the whole-set Newton targets differ from the support by up to 1,600 features and the line
    search accepts a small step each time (128-139 Cholesky factorisations of 3,000-5,000 features);
    small, nearly solved sets keep each step's change small. When an inner solve stalls (nearly
    collinear features) the batch is halved and the round retried from the same point; ``kkt`` is
    False only when a batch of one stalls or the objective stops falling (:func:`_lasso` then also
    tries the whole-set solver and keeps the better point). Returns ``(theta, kkt)``."""
    n = Q.shape[0]
    theta = torch.zeros(n, dtype=F64, device=Q.device)
    f_now, cap = 0.0, n
    for _ in range(max_outer):
        g = Q @ theta - q
        support = theta != 0
        viol = (~support & (g.abs() > lam * (1 + 1e-11))).nonzero().squeeze(1)
        if viol.numel() == 0:
            return theta, True                 # every inner solve below met its KKT conditions
        k = min(cap, max(k_min, int(frac * int(support.sum()))))
        add = viol[(g[viol].abs()).argsort(descending=True)[:k]]
        support[add] = True
        idx = support.nonzero().squeeze(1)
        QW, qW = Q[idx][:, idx], q[idx]
        tW, ok = _lasso_run(QW, qW, lam, theta0=theta[idx])
        if not ok:                             # a stalled warm start: from scratch
            tW, ok = _lasso_run(QW, qW, lam)
        if not ok:
            # nearly collinear features: retry from the same point with half the batch (measured on
            # ReLU features with 1e-2 near-duplicates: batches of 32 stall, batches of 2 do not)
            if k > 1:
                cap = max(1, k // 2)
                continue
            return theta, False
        new = torch.zeros_like(theta)
        new[idx] = tW
        f_new = _objective(Q, q, lam, new)
        if not f_new < f_now:                  # no progress: give up (the caller falls back)
            return theta, False
        theta, f_now, cap = new, f_new, min(n, 2 * cap)
    return theta, False


def _lasso_run(Q: torch.Tensor, q: torch.Tensor, lam: float, fista_iters: int = 300,
               max_rounds: int = 2000, theta0: torch.Tensor | None = None) -> tuple[torch.Tensor, bool]:
    """``argmin_theta 1/2 theta^T Q theta - q^T theta + lam ||theta||_1`` (float64, exact).

    FISTA for a start, then active-set Newton steps: the support and signs predicted by one
    coordinate-wise prox step (a primal-dual active-set step), the Newton point of that sign pattern
    (a Cholesky solve on the support), accepted when it lowers the objective, else an exact line
    search over the zero crossings on the way to it (feature-sign search, Lee et al. NIPS 2006).
    Monotone; stops on the exact KKT conditions. Measured at P = 2,000 (MNIST rays): 75 solves, 9 s
    on one core, against 358 solves for plain feature-sign search.

    ``theta0`` (P,): a warm start (the working-set loop of :mod:`.workset` passes the previous round's
    amplitudes); FISTA and its eigenvalue computation are then skipped.
    Returns ``(theta, kkt)``: ``kkt`` is True when the loop stopped on the KKT conditions (False when
    the feature-sign search found no decrease or ``max_rounds`` ran out).
    """
    P = Q.shape[0]
    dev = Q.device
    if P == 0:
        return torch.zeros(0, dtype=F64, device=dev), True
    if theta0 is not None:
        if float(torch.diagonal(Q).max()) <= 0:
            return torch.zeros(P, dtype=F64, device=dev), True
        theta = theta0.to(F64).clone()
    else:
        L = float(torch.linalg.eigvalsh(Q)[-1])
        if L <= 0:
            return torch.zeros(P, dtype=F64, device=dev), True
        y = torch.zeros(P, dtype=F64, device=dev)
        prev, t_k = y.clone(), 1.0
        for _ in range(fista_iters):
            u = y - (Q @ y - q) / L
            new = torch.sign(u) * (u.abs() - lam / L).clamp_min(0)
            t_n = (1 + math.sqrt(1 + 4 * t_k * t_k)) / 2
            y = new + (t_k - 1) / t_n * (new - prev)
            prev, t_k = new, t_n
        theta = prev
    dq = torch.diagonal(Q).clamp_min(1e-300)
    scale = max(float(q.abs().max()), lam, 1e-300)
    ridge = 1e-15 * float(dq.max())

    def f(th):
        return float(0.5 * (th @ (Q @ th)) - q @ th + lam * th.abs().sum())

    def newton_point(A, s):
        idx = A.nonzero().squeeze(1)
        target = torch.zeros_like(theta)
        if idx.numel():
            QA = Q[idx][:, idx]
            QA.diagonal().add_(ridge)
            Lc, info = torch.linalg.cholesky_ex(QA)
            rhs = (q[idx] - lam * s[idx]).unsqueeze(1)
            sol = torch.cholesky_solve(rhs, Lc) if int(info) == 0 else torch.linalg.lstsq(QA, rhs).solution
            target[idx] = sol.squeeze(1)
        return target

    fs_mode, kkt = False, False
    for _ in range(max_rounds):
        g = Q @ theta - q
        active = theta != 0
        viol = ~active & (g.abs() > lam * (1 + 1e-11))
        stat = float((g + lam * torch.sign(theta))[active].abs().max()) if bool(active.any()) else 0.0
        if not bool(viol.any()) and stat <= 1e-10 * scale:
            kkt = True
            break
        if fs_mode:                                    # feature-sign: support, signs, and the violators
            s = torch.sign(theta)
            s[viol] = -torch.sign(g[viol])
            A = active | viol
        else:                                          # primal-dual active-set prediction
            u = theta - g / dq
            A = u.abs() > lam / dq
            s = torch.sign(u)
        target = newton_point(A, s)
        f0 = f(theta)
        if f(target) < f0:
            theta, fs_mode = target, False
            continue
        dlt = target - theta
        cross = (theta != 0) & (torch.sign(theta + dlt) != torch.sign(theta))
        steps = torch.cat([-theta[cross] / dlt[cross], torch.ones(1, dtype=F64, device=dev)]).clamp(0, 1)
        gd, dQd = float(g @ dlt), float(dlt @ (Q @ dlt))
        vals = steps * gd + 0.5 * steps * steps * dQd \
            + lam * ((theta.unsqueeze(0) + steps.unsqueeze(1) * dlt.unsqueeze(0)).abs().sum(1) - theta.abs().sum())
        k = int(vals.argmin())
        if float(vals[k]) >= 0:                        # no decrease along this direction
            if fs_mode:
                break
            fs_mode = True
            continue
        new = theta + float(steps[k]) * dlt
        if k < int(cross.sum()):                       # stopped at a zero crossing: make it exact
            new[cross.nonzero().squeeze(1)[k]] = 0.0
        theta = new
    return theta, kkt




def _blocks(theta: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """The point (2P, d) of the signed amplitudes ``theta`` (P,) along unit directions ``dirs`` (P, d):
    ``w_i = theta_i+ a_i``, ``z_i = theta_i- a_i``."""
    return torch.cat([theta.clamp_min(0).unsqueeze(1) * dirs, (-theta).clamp_min(0).unsqueeze(1) * dirs])
