r"""Every sign pattern of a small problem: the cells of the hyperplane arrangement of the patches.

The full convex program (eq. (4) over *all* sign patterns, Theorem 1) has one pattern per cell of
the central arrangement of the M hyperplanes ``{u : y_j^T u = 0}`` in R^d (``y_j`` the rows of
``Yp`` (M, d)): ``D(u) = diag(1[Yp u >= 0])`` is constant on each open cell. There are at most
``2 sum_{k<d} C(H-1, k)`` cells for H distinct hyperplanes (equality in general position), so only
small problems (d = 2..4, H up to a few dozen) can be enumerated; at MNIST sizes (d = 9, M = 39,200)
the count is astronomically large. Here the enumeration is the reference for tests and the exact
pricing oracle behind :func:`paper_utils.dual_solver.solve_global`'s certificate on small problems.

Two methods, both *complete* (they return every cell, each once, as a strict sign vector and a
strictly interior point):

- ``"vertex"`` (fast, vectorised; needs verified general position). Let N (H, d) be the unit normals
  of the distinct hyperplanes, of rank d. Every cell's closure is then a pointed polyhedral cone of
  dimension d (its lineality space is the intersection of all hyperplanes, {0}), so for d >= 2 it has
  an extreme ray r, which lies on d - 1 linearly independent hyperplanes S. In general position
  (every d - 1 normals independent, and no other hyperplane through the ray of any such S, both
  checked here with a margin of ``1e-9``) exactly those d - 1 contain r, and near r all ``2^(d-1)``
  sign choices on S are realised: the points ``r + delta N_S^+ sigma`` have sign vector
  ``(sign(N_k r) for k not in S, sigma on S)``. Enumerating every (d-1)-subset, both rays ``+-r`` and
  every ``sigma`` therefore yields every cell (and only cells). If the check fails, ``"lp"`` is used.
- ``"lp"`` (general, slower): the standard incremental construction. Inserting hyperplane k splits a
  cell of the first k - 1 iff both sides keep a strictly interior point; one side is known (the
  cell's interior point), the other is decided by the linear program
  ``max t s.t. s_i n_i^T u >= t, |u|_inf <= 1, t <= 1``, strictly feasible iff ``t* > 1e-9``.
  By induction every cell of the full arrangement is found.

Rows of ``Yp`` that are zero lie on no hyperplane (their pattern entry is irrelevant: the row adds 0);
parallel or anti-parallel rows share a hyperplane.

Letter key: M patches, d patch dimension, H distinct hyperplanes, n cells.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

__all__ = ["hyperplanes", "enumerate_cells", "count_cells_bound"]

_EPS = 1e-9


def hyperplanes(Yp) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct hyperplanes of the rows of ``Yp`` (M, d).

    Returns ``N`` (H, d) unit normals (canonical sign: first non-zero entry positive), ``index`` (M,)
    the hyperplane of each row (-1 for a zero row) and ``orient`` (M,) in {+1, -1, 0} with
    ``y_j = orient_j ||y_j|| N[index_j]``.
    """
    Y = np.asarray(Yp, dtype=np.float64)
    if Y.ndim != 2:
        raise ValueError(f"Yp must have shape (M, d), got {Y.shape}")
    norms = np.linalg.norm(Y, axis=1)
    nz = norms > 0
    Yh = np.zeros_like(Y)
    Yh[nz] = Y[nz] / norms[nz, None]
    first = np.argmax(np.abs(Yh) > 1e-12, axis=1)
    orient = np.where(nz, np.sign(Yh[np.arange(len(Y)), first]), 0.0)
    canon = Yh * np.where(orient == 0, 1.0, orient)[:, None]
    keys = np.round(canon[nz], 12)
    _, first_idx, inv = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    N = canon[nz][first_idx]
    index = np.full(len(Y), -1)
    index[nz] = inv.reshape(-1)
    return N, index, orient.astype(np.int8)


def count_cells_bound(H: int, d: int) -> int:
    """Largest number of cells of a central arrangement of H hyperplanes in R^d: ``2 sum_{k<d} C(H-1, k)``."""
    if H == 0:
        return 1
    return 2 * sum(math.comb(H - 1, k) for k in range(d))


def _vertex_cells(N: np.ndarray):
    """Sign vectors (n, H) and interior points (n, d) by the vertex method, or None when the general
    position it needs does not hold."""
    H, d = N.shape
    if d < 2 or H < d or np.linalg.matrix_rank(N, tol=_EPS) < d:
        return None
    signs, points = {}, []
    sig_all = np.array(list(itertools.product((-1.0, 1.0), repeat=d - 1)))   # (2^(d-1), d-1)
    for S in itertools.combinations(range(H), d - 1):
        NS = N[list(S)]
        _, sv, vt = np.linalg.svd(NS, full_matrices=True)
        if sv[-1] < _EPS:
            return None
        r = vt[-1]
        others = np.ones(H, dtype=bool)
        others[list(S)] = False
        m = N[others] @ r
        if np.abs(m).min() < _EPS:
            return None
        pinv = np.linalg.pinv(NS)                                                  # (d, d-1)
        steps = sig_all @ pinv.T                                                   # (2^(d-1), d)
        for rr, mm in ((r, m), (-r, -m)):
            delta = 0.5 * np.abs(mm).min() / max(np.linalg.norm(steps, axis=1).max(), 1e-300)
            U = rr[None, :] + delta * steps
            s = np.empty((len(sig_all), H))
            s[:, others] = np.sign(mm)
            s[:, list(S)] = sig_all
            chk = np.sign(U @ N.T)
            if not np.array_equal(chk, s):
                return None
            for k in range(len(s)):
                key = s[k].astype(np.int8).tobytes()
                if key not in signs:
                    signs[key] = len(points)
                    points.append(U[k] / np.linalg.norm(U[k]))
    S = np.array([np.frombuffer(k, dtype=np.int8) for k in signs]).astype(np.int8)
    return S, np.array(points)


def _lp_cells(N: np.ndarray):
    """Sign vectors (n, H) and interior points (n, d) by incremental insertion with LP feasibility."""
    from scipy.optimize import linprog

    H, d = N.shape
    c = np.zeros(d + 1)
    c[-1] = -1.0
    bounds = [(-1.0, 1.0)] * d + [(None, 1.0)]

    def interior(rows, sgn):
        A = np.hstack([-(sgn[:, None] * rows), np.ones((len(rows), 1))])
        res = linprog(c, A_ub=A, b_ub=np.zeros(len(rows)), bounds=bounds, method="highs")
        if res.status != 0 or -res.fun <= _EPS:
            return None
        return res.x[:d]

    rng = np.random.default_rng(0)
    u0 = rng.standard_normal(d)
    cells = [(np.zeros(0, dtype=np.int8), u0)]
    for k in range(H):
        new = []
        for s, u in cells:
            m = float(N[k] @ u)
            for side in ((1, -1) if abs(m) <= _EPS else ((1 if m > 0 else -1), -(1 if m > 0 else -1))):
                s2 = np.append(s, np.int8(side))
                if side * m > _EPS:
                    new.append((s2, u))
                    continue
                v = interior(N[:k + 1], s2.astype(np.float64))
                if v is not None:
                    new.append((s2, v))
        cells = new
    S = np.array([s for s, _ in cells], dtype=np.int8).reshape(len(cells), H)
    U = np.array([u / np.linalg.norm(u) for _, u in cells]).reshape(len(cells), d)
    return S, U


def enumerate_cells(Yp, *, method: str = "auto", max_cells: int = 200_000):
    """Every cell of the arrangement of the rows of ``Yp`` (M, d).

    Args:
        Yp: patch matrix (M, d) (numpy or torch; float64 is used).
        method: ``"vertex"``, ``"lp"`` or ``"auto"`` (vertex when its general position holds, else LP).
        max_cells: refuse (ValueError) when ``count_cells_bound(H, d)`` exceeds this.

    Returns:
        ``(U, patterns, method_used)``: ``U`` (n, d) unit interior points, one per cell;
        ``patterns`` (n, M) bool, ``1[Yp u >= 0]`` at each (zero rows: True); the method used.
    """
    Y = Yp.detach().cpu().numpy() if hasattr(Yp, "detach") else np.asarray(Yp)
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim != 2 or Y.shape[1] < 1:
        raise ValueError(f"Yp must have shape (M, d), got {Y.shape}")
    if method not in ("auto", "vertex", "lp"):
        raise ValueError(f"method must be 'auto', 'vertex' or 'lp', got {method!r}")
    N, index, orient = hyperplanes(Y)
    H, d = N.shape
    if count_cells_bound(H, d) > max_cells:
        raise ValueError(f"the arrangement of {H} hyperplanes in R^{d} may have "
                         f"{count_cells_bound(H, d)} cells (> max_cells={max_cells})")
    if H == 0:
        U = np.eye(d)[:1]
        return U, np.ones((1, len(Y)), dtype=bool), "trivial"
    out, used = None, method
    if method in ("auto", "vertex"):
        out, used = _vertex_cells(N), "vertex"
        if out is None and method == "vertex":
            raise ValueError("the hyperplanes are not in general position: use method='lp'")
    if out is None:
        out, used = _lp_cells(N), "lp"
    S, U = out
    margins = U @ Y.T                                                              # (n, M)
    nz = index >= 0
    expect = np.where(nz[None, :], S[:, np.maximum(index, 0)] * orient[None, :], 1)
    if not np.array_equal(np.where(nz[None, :], np.sign(margins), 1), expect):
        raise RuntimeError("an interior point does not realise its sign vector")
    return U, margins >= 0, used
