r"""Neurons of a convex solution (m*), and a Caratheodory pruning that removes neurons at equal objective.

Theorem 1 (paper Sec. 3): the non-convex network of eq. (2) reaches the convex optimum p* when its
width m is at least m*, the number of neurons of an optimal solution of eq. (4): by eq. (5) every
nonzero ``w_i`` and every nonzero ``z_i`` is one ReLU unit. An interior-point or lasso solution need
not be the sparsest optimum, so :func:`sparsify` prunes it (Pilanci & Ergen 2020, the Caratheodory
argument behind their m* <= M + 1):

Write each active block b (a ``w_i`` with sign +1 or a ``z_i`` with sign -1) as ``t_b = ||w_b||`` times
its unit feature ``a_b = s_b D_i Yp w_b / ||w_b||`` (M,). The prediction is ``sum_b t_b a_b`` and the
penalty ``beta sum_b t_b``. For any ``c`` in the null space of ``[a_b; 1]`` (an (M + 1, n) matrix),
``t + s c`` keeps both; the step ``s`` that first drives some ``t_b`` to zero removes that neuron, and
the cone constraints hold because every kept block is only rescaled by ``t_b' / t_b >= 0``. Repeated
until the columns are independent, this leaves at most M + 1 neurons at the same objective.

The null space is read off the singular values of the (M + 1, n) matrix (small M) or of its Gram matrix
(chunked, for larger M); a direction is accepted only if the objective, recomputed from scratch, stays
within ``obj_rtol``. At image sizes (M = 470,400, n ~ 1,500) the features are in general position and
the Gram matrix alone costs ``2 M n^2`` flops, so :func:`sparsify` skips the attempt above
``max_flops`` and says so (``attempted = False``): ``m_star`` is then the dense count, an upper bound on
the sparsest optimum's.

Letter key: M patches, d patch dimension, P patterns, n active blocks (neurons).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["count_neurons", "SparseSolution", "sparsify", "convex_objective"]


def _np(a) -> np.ndarray:
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.float64)


def count_neurons(W, Z, rel_tol: float = 1e-8) -> int:
    """m of the eq. (5) network of ``(W, Z)`` (P, d): rows of ``W`` and of ``Z`` whose norm exceeds
    ``rel_tol`` times the largest row norm of both."""
    norms = np.concatenate([np.linalg.norm(_np(W), axis=1), np.linalg.norm(_np(Z), axis=1)])
    if norms.size == 0 or norms.max() <= 0:
        return 0
    return int(np.sum(norms > rel_tol * norms.max()))


def _masked_products(Y, G, V, chunk_rows=8192):
    """``(D_i Yp v_i)`` summed over i and per block: yields (rows slice, D (c, P) bool, YV (c, P))."""
    for s in range(0, Y.shape[0], chunk_rows):
        Yc = Y[s:s + chunk_rows]
        yield slice(s, s + len(Yc)), Yc @ G >= 0, Yc @ V.T


def convex_objective(Yp, x, G, W, Z, beta: float, chunk_rows: int = 8192) -> tuple[float, float]:
    """Eq. (4)'s objective (float64, numpy): ``1/(2M) ||sum_i D_i Yp (w_i - z_i) - x||^2
    + beta sum_i (||w_i|| + ||z_i||)``, with ``D_i = diag(1[Yp g_i >= 0])``. Returns ``(objective, loss)``."""
    Y, xv, Gn, Wn, Zn = _np(Yp), _np(x), _np(G), _np(W), _np(Z)
    pred = np.empty(len(Y))
    for rows, D, YV in _masked_products(Y, Gn, Wn - Zn, chunk_rows):
        pred[rows] = np.where(D, YV, 0.0).sum(1)
    loss = float(np.sum((pred - xv) ** 2) / (2 * len(Y)))
    reg = float(beta * (np.linalg.norm(Wn, axis=1).sum() + np.linalg.norm(Zn, axis=1).sum()))
    return loss + reg, loss


@dataclass
class SparseSolution:
    """Result of :func:`sparsify`.

    Attributes:
        W, Z: the pruned weights (P, d) float64 (the input's when nothing was removed).
        m_star: neurons of the pruned solution (:func:`count_neurons`).
        m_star_dense: neurons of the solution as given.
        objective, objective_dense: eq. (4) after and before (float64, recomputed).
        steps: pruning steps taken (each removes at least one neuron).
        attempted: False when the size exceeded ``max_flops`` (then ``m_star = m_star_dense``).
        note: what happened, in words.
    """

    W: np.ndarray
    Z: np.ndarray
    m_star: int
    m_star_dense: int
    objective: float
    objective_dense: float
    steps: int
    attempted: bool
    note: str


def _features(Y, G, blocks, chunk_rows=8192):
    """Gram matrix of the unit features ``[a_b; 1]`` (n, n) and the rows ``A`` themselves when small."""
    idx, sgn, Wb = blocks
    n = len(idx)
    Gb = G[:, idx]                                                      # (d, n) each block's generator
    K = np.ones((n, n))
    A = [] if len(Y) <= 4096 else None
    for s in range(0, len(Y), chunk_rows):
        Yc = Y[s:s + chunk_rows]
        Ac = np.where(Yc @ Gb >= 0, Yc @ Wb.T, 0.0) * sgn[None, :]      # (c, n)
        K += Ac.T @ Ac
        if A is not None:
            A.append(Ac)
    if A is not None:
        A = np.vstack(A + [np.ones((1, n))])
    return K, A


def sparsify(Yp, x, G, W, Z, beta: float, *, rel_tol: float = 1e-8, obj_rtol: float = 1e-9,
             null_rtol: float = 1e-9, max_flops: float = 2e11, max_steps: int | None = None) -> SparseSolution:
    """Remove neurons of an eq. (4) solution ``(W, Z)`` without changing its objective (module docstring).

    Args:
        Yp: patch matrix (M, d); x: targets (M,); G: generators (d, P) of the patterns.
        W, Z: the solution (P, d) (numpy or torch), feasible for the cones of ``G``.
        beta: the weight decay of eq. (4).
        rel_tol: neurons counted as in :func:`count_neurons`; smaller rows are set to zero first
            (when that keeps the objective within ``obj_rtol``).
        obj_rtol: largest relative change of the objective a step may make (else it is undone and
            the pruning stops).
        null_rtol: a singular value below ``null_rtol`` times the largest spans the null space.
        max_flops: skip the attempt when forming the features costs more (``2 M n^2``).
        max_steps: at most this many steps (default: no limit).

    Returns:
        :class:`SparseSolution`.
    """
    Y, xv, Gn = _np(Yp), _np(x), _np(G)
    W0, Z0 = _np(W).copy(), _np(Z).copy()
    if Y.ndim != 2 or xv.shape != (Y.shape[0],) or Gn.shape[0] != Y.shape[1] or W0.shape != (Gn.shape[1], Y.shape[1]) \
            or Z0.shape != W0.shape:
        raise ValueError(f"need Yp (M, d), x (M,), G (d, P), W and Z (P, d); got {Y.shape}, {xv.shape}, {Gn.shape}, "
                         f"{W0.shape}, {Z0.shape}")
    m_dense = count_neurons(W0, Z0, rel_tol)
    obj0 = convex_objective(Y, xv, Gn, W0, Z0, beta)[0]
    P = W0.shape[0]
    B = np.vstack([W0, Z0])                                             # (2P, d): the w's then the z's
    norms = np.linalg.norm(B, axis=1)
    small = (norms > 0) & (norms <= rel_tol * norms.max()) if norms.max() > 0 else norms > 0
    if small.any():
        trial = B.copy(); trial[small] = 0.0
        if abs(convex_objective(Y, xv, Gn, trial[:P], trial[P:], beta)[0] - obj0) <= obj_rtol * abs(obj0):
            B = trial
    if 2.0 * len(Y) * m_dense ** 2 > max_flops:
        return SparseSolution(B[:P], B[P:], count_neurons(B[:P], B[P:], rel_tol), m_dense, obj0, obj0, 0, False,
                              f"not attempted: 2 M n^2 = {2.0 * len(Y) * m_dense ** 2:.2g} flops > {max_flops:.2g}")
    steps = 0
    note = "columns [a_b; 1] independent: no neuron can be removed at equal objective"
    while max_steps is None or steps < max_steps:
        norms = np.linalg.norm(B, axis=1)
        act = np.flatnonzero(norms > 0)
        if len(act) <= 1:
            break
        pat = act % P
        sgn = np.where(act < P, 1.0, -1.0)
        t = norms[act]
        K, A = _features(Y, Gn, (pat, sgn, B[act] / t[:, None]))
        if A is not None:
            _, sv, vt = np.linalg.svd(A, full_matrices=True)
            sv_full = np.zeros(len(act)); sv_full[:len(sv)] = sv
            null = vt[sv_full <= null_rtol * sv.max()]
        else:
            ev, vec = np.linalg.eigh(K)
            null = vec[:, ev <= (null_rtol ** 2) * ev.max()].T
        if len(null) == 0:
            break
        c = null[0]
        if not (c < 0).any():
            c = -c
        neg = c < 0
        ratios = np.full(len(c), np.inf)
        ratios[neg] = t[neg] / -c[neg]
        k = int(np.argmin(ratios))
        t_new = np.maximum(t + ratios[k] * c, 0.0)
        t_new[k] = 0.0
        trial = B.copy()
        trial[act] = B[act] * (t_new / t)[:, None]
        obj = convex_objective(Y, xv, Gn, trial[:P], trial[P:], beta)[0]
        if abs(obj - obj0) > obj_rtol * abs(obj0):
            note = (f"stopped: the next step would change the objective by {abs(obj - obj0) / abs(obj0):.1e} "
                    f"(> {obj_rtol:g}, relative)")
            break
        B = trial
        steps += 1
    else:
        note = f"stopped after max_steps = {max_steps}"
    obj = convex_objective(Y, xv, Gn, B[:P], B[P:], beta)[0]
    m = count_neurons(B[:P], B[P:], rel_tol)
    if steps and note.startswith("columns"):
        note = f"{steps} steps, {m_dense} -> {m} neurons; then " + note
    return SparseSolution(B[:P], B[P:], m, m_dense, obj, obj0, steps, True, note)
