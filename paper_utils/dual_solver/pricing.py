r"""Pricing for the full program: which sign patterns are missing, and proven bounds on it.

At an exact solution of the sampled program with residual ``r = f - x`` (M,) and ``lam = -r / M``,
the full program's dual constraints (eq. (4) over every pattern) read

.. math::
    c(u) = \big| \lambda^\top (Yp\, u)_+ \big| \le \beta \quad \text{for every unit } u \in R^d .

A direction with ``c(u) > beta`` is a missing pattern ``1[Yp u >= 0]`` whose addition lowers the
objective. Inside one cell (fixed pattern D), ``lam^T D Yp u`` is linear in u, so the cell's best unit
direction is ``Pi_K(+-Yp^T D lam)`` normalised (the tilted-ray best response of :mod:`.tilt`).

- :func:`best_response_search`: the cheap ascent ``u <- normalise(+-Yp^T diag(1[Yp u >= 0]) lam)``
  (the maximiser on the current cell *without* the cone, which may leave the cell), batched over many
  starts, two skinny matmuls per step and one pass over the M rows. A search: a value above ``beta``
  soundly proves the sampled optimum is not the global one, but a search that finds none proves
  nothing. Measured on MNIST sigma = 0.5 (beta = 1e-5): ``c(u)`` = 190 beta at ``smoke`` scale
  (M = 39,200, P = 256) and 30 beta at ``cpu`` scale (M = 470,400, P = 2,000).
- :func:`violation_bound`: a *proven* upper bound on ``max_u c(u)``. For unit u, with ``Y_+`` the rows
  where ``lam > 0`` and ``Y_-`` where ``lam < 0``,
  ``lam^T (Yp u)_+ <= sum_{lam_j > 0} lam_j (y_j^T u)_+ <= ||lam_+|| ||Y_+ u|| <= ||lam_+|| sigma_max(Y_+)``
  (Cauchy-Schwarz, then ``|(a)_+| <= |a|``), and the same for ``-lam``; and, writing
  ``(a)_+ = (a + |a|) / 2``, ``+-lam^T (Yp u)_+ <= (||Yp^T lam|| + max_+- ||lam_+-|| sigma_max(Y_+-)) / 2``.
  The smaller of the two is returned. It is sound and very loose at MNIST sizes: the constraint is
  a tiny difference of large sums (``sum_j |lam_j| ||y_j||`` is about 5e4 beta there), and so is any
  bound over regions of directions (of the order of 1e17 regions on the sphere for d = 9).
- :func:`exact_max_violation`: ``max_u c(u)`` exactly, on small problems whose cells are enumerated
  (:mod:`.arrangement`): ``max over cells of ||Pi_K(+-Yp^T D lam)||`` (on a cell's closure
  ``(Yp u)_+ = D Yp u``, so this is the maximum of a linear function over ``K cap`` unit ball, i.e. the
  norm of the projection, Moreau), computed by the exact Lawson-Hanson projection of :mod:`.cones`.

Weak duality turns any upper bound ``C >= max_u c(u)`` into a lower bound on the full optimum p*:
for ``t = min(lam^T x / (M ||lam||^2), beta / C) >= 0``, ``p* >= t lam^T x - (M/2) t^2 ||lam||^2``
(:func:`full_lower_bound`). Never plug a search's best value in as ``C``.

Letter key: M patches, d patch dimension, S search directions, n cells.
"""

from __future__ import annotations

import math

import torch

from .cones import _nnls_project
from .data import F64

__all__ = ["best_response_search", "violation_values", "violation_bound", "exact_max_violation",
           "full_lower_bound"]


def _chunks(M: int, S: int, budget: int = 1 << 22):
    step = int(max(256, budget // max(S, 1)))
    for s in range(0, M, step):
        yield s, min(s + step, M)


def violation_values(Y: torch.Tensor, lam: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    """Signed ``lam^T (Yp u)_+`` (S,) for unit directions ``U`` (S, d), float64, row-chunked."""
    Y, lam, UT = Y.to(F64), lam.to(F64), U.to(F64).T.contiguous()
    out = torch.zeros(UT.shape[1], dtype=F64, device=Y.device)
    for s, e in _chunks(Y.shape[0], UT.shape[1]):
        out += lam[s:e] @ (Y[s:e] @ UT).clamp_min_(0)
    return out


def best_response_search(Y: torch.Tensor, lam: torch.Tensor, starts: torch.Tensor, *, steps: int = 15,
                         dtype: torch.dtype = F64) -> tuple[torch.Tensor, torch.Tensor]:
    """Best-response ascent on ``c(u) = |lam^T (Yp u)_+|`` from every start, for ``+lam`` and ``-lam``.

    Args:
        Y: patch matrix (M, d); lam: (M,); starts: (S, d) non-zero directions.
        steps: best-response steps per start.
        dtype: dtype of the search passes (float32 is twice as fast on CPU; the returned values are
            recomputed in float64).

    Returns:
        ``(U, c)``: the best direction found per run (2S, d), unit, and its ``c(u)`` (2S,) in float64
        (runs 0..S-1 ascend ``+lam``, S..2S-1 ``-lam``).
    """
    if starts.ndim != 2 or starts.shape[1] != Y.shape[1]:
        raise ValueError(f"starts must have shape (S, d={Y.shape[1]}), got {tuple(starts.shape)}")
    Yd, lamd = Y.to(dtype), lam.to(dtype)
    S = starts.shape[0]
    sgn = torch.cat([torch.ones(S, dtype=dtype, device=Y.device), -torch.ones(S, dtype=dtype, device=Y.device)])
    U = torch.cat([starts, starts]).to(dtype)
    U = U / torch.linalg.vector_norm(U, dim=1, keepdim=True).clamp_min(1e-300)
    best_u, best_v = U.clone(), torch.full((2 * S,), -math.inf, dtype=dtype, device=Y.device)
    for step in range(steps + 1):
        UT = U.T.contiguous()
        val = torch.zeros(2 * S, dtype=dtype, device=Y.device)
        V = torch.zeros(Y.shape[1], 2 * S, dtype=dtype, device=Y.device)
        for s, e in _chunks(Y.shape[0], 2 * S):
            A = Yd[s:e] @ UT                                                       # (c, 2S)
            val += lamd[s:e] @ A.clamp_min(0)
            if step < steps:
                V.addmm_(Yd[s:e].T, A.ge_(0).mul_(lamd[s:e].unsqueeze(1)))
        val = val * sgn
        better = val > best_v
        best_v = torch.where(better, val, best_v)
        best_u = torch.where(better.unsqueeze(1), U, best_u)
        if step < steps:
            V = (V * sgn).T
            n = torch.linalg.vector_norm(V, dim=1, keepdim=True)
            U = torch.where(n > 0, V / n.clamp_min(1e-300), U)
    best_u = best_u.to(F64)
    best_u = best_u / torch.linalg.vector_norm(best_u, dim=1, keepdim=True)
    return best_u, violation_values(Y, lam, best_u).abs()


def violation_bound(Y: torch.Tensor, lam: torch.Tensor) -> float:
    """A proven upper bound on ``max_{||u|| <= 1} |lam^T (Yp u)_+|`` (see the module docstring)."""
    Y, lam = Y.to(F64), lam.to(F64)
    d = Y.shape[1]
    Gp = torch.zeros(d, d, dtype=F64, device=Y.device)
    Gm = torch.zeros(d, d, dtype=F64, device=Y.device)
    for s, e in _chunks(Y.shape[0], d):
        Yc, lc = Y[s:e], lam[s:e]
        Gp += Yc.T @ (Yc * (lc > 0).to(F64).unsqueeze(1))
        Gm += Yc.T @ (Yc * (lc < 0).to(F64).unsqueeze(1))
    # eigvalsh is backward stable: the largest eigenvalue is accurate to ~ d eps ||G||; pad by 1e-12
    sp = math.sqrt(max(float(torch.linalg.eigvalsh(Gp)[-1]), 0.0) * (1 + 1e-12) + 1e-300)
    sm = math.sqrt(max(float(torch.linalg.eigvalsh(Gm)[-1]), 0.0) * (1 + 1e-12) + 1e-300)
    lp = float(torch.linalg.vector_norm(lam.clamp_min(0)))
    lm = float(torch.linalg.vector_norm(lam.clamp_max(0)))
    side = max(lp * sp, lm * sm)
    ytl = float(torch.linalg.vector_norm(Y.T @ lam))
    return min(side, 0.5 * (ytl + side)) * (1 + 1e-12)


def exact_max_violation(Y: torch.Tensor, lam: torch.Tensor, patterns: torch.Tensor,
                        chunk: int = 256) -> tuple[float, torch.Tensor, torch.Tensor]:
    """``max_u c(u)`` exactly, from every cell's pattern ``patterns`` (n, M) bool (:mod:`.arrangement`).

    Returns ``(c_max, c, sign)``: ``c`` (n,) the best value on each cell's closure and ``sign`` (n,) in
    {+1, -1} the side (``+lam`` or ``-lam``) that attains it.
    """
    Y, lam = Y.to(F64), lam.to(F64)
    norms = torch.linalg.vector_norm(Y, dim=1, keepdim=True)
    nz = norms.squeeze(1) > 0
    Yh = Y[nz] / norms[nz]
    out_c, out_s = [], []
    for s in range(0, patterns.shape[0], chunk):
        D = patterns[s:s + chunk].to(device=Y.device)
        Dn = D[:, nz].to(F64)
        C = (2 * Dn - 1).unsqueeze(2) * Yh.unsqueeze(0)                            # (b, M', d) cone normals
        v = (D.to(F64) * lam.unsqueeze(0)) @ Y                                     # (b, d) = Yp^T D lam
        valid = torch.ones(C.shape[:2], dtype=torch.bool, device=Y.device)
        cp = torch.linalg.vector_norm(_nnls_project(C, valid, v), dim=1)
        cm = torch.linalg.vector_norm(_nnls_project(C, valid, -v), dim=1)
        out_c.append(torch.maximum(cp, cm))
        out_s.append(torch.where(cp >= cm, 1, -1))
    c = torch.cat(out_c)
    # Lawson-Hanson stops at a 1e-13 relative violation: pad the maximum by 1e-9 relative
    return float(c.max()) * (1 + 1e-9), c, torch.cat(out_s)


def full_lower_bound(a: float, b: float, beta: float, C: float) -> float:
    """Weak duality: ``t a - t^2 b / 2`` with ``t = min(a / b, beta / C)``, ``a = lam^T x``,
    ``b = M ||lam||^2`` and ``C`` a proven upper bound on ``max_u c(u)``."""
    t = a / b if b > 0 else 0.0
    if C > 0:
        t = min(t, beta / C)
    t = max(t, 0.0)
    return t * a - 0.5 * t * t * b
