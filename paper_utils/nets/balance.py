r"""Balanced primal networks: the rescaling that makes eq. (2)'s objective comparable with eq. (4)'s.

ReLU is positively homogeneous, so for every unit j and every ``a > 0`` the rescaling
``u_j -> a u_j, v_j -> v_j / a`` leaves the network of eq. (2) (patch form, eq. 3)

.. math::
    f(Y) = \sum_j (Yp\, u_j)_+ v_j

unchanged. Its weight decay ``beta/2 (||u_j||^2 + v_j^2)`` is smallest at ``a = sqrt(|v_j| / ||u_j||)``,
where it equals ``beta ||u_j|| |v_j|``: the group-lasso penalty that eq. (5) maps each ``w_i`` or ``z_i``
to (``||w_i|| = ||u|| |v|``). A primal's objective is therefore comparable with a convex objective
(``d_P``, ``p*``) only once balanced (``../shared/DESIGN.md`` section 11). The balanced objective of a
network is ``loss + beta sum_j ||u_j|| |v_j|``: a point of eq. (2), computing the same function, whose
objective is never above the objective as trained.

Units with ``u_j = 0`` or ``v_j = 0`` contribute nothing to ``f``; balancing sets both to zero (their
optimal regulariser is 0).

Letter key: M patches, d patch dimension, m hidden units (``U`` (m, d), ``v`` (m,)).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["balance_units", "trained_regulariser", "balanced_regulariser", "balanced_objective",
           "balance_gap", "active_units"]


def _check(U, v):
    if U.ndim != 2 or v.ndim != 1 or v.shape[0] != U.shape[0]:
        raise ValueError(f"need U (m, d) and v (m,), got {tuple(U.shape)} and {tuple(v.shape)}")


def balance_units(U, v):
    """The balanced twin of the network ``(U, v)``: ``u_j a_j``, ``v_j / a_j`` with ``a_j = sqrt(|v_j| / ||u_j||)``.

    Args:
        U: first-layer filters (m, d), numpy array or torch tensor.
        v: second-layer weights (m,), same kind.

    Returns:
        ``(U_b, v_b)`` of the same kind, dtype and device, with ``||u_j|| = |v_j|`` for every unit; units
        with ``u_j = 0`` or ``v_j = 0`` become zero. The network's output is unchanged (exactly, up to
        rounding of the rescaling).
    """
    _check(U, v)
    if isinstance(U, np.ndarray):
        Ut, vt = torch.from_numpy(U), torch.from_numpy(np.asarray(v))
        Ub, vb = balance_units(Ut, vt)
        return Ub.numpy(), vb.numpy()
    norms = torch.linalg.vector_norm(U, dim=1)
    alive = (norms > 0) & (v != 0)
    a = torch.where(alive, (v.abs() / torch.where(alive, norms, torch.ones_like(norms))).sqrt(), torch.zeros_like(norms))
    vb = torch.where(alive, v / torch.where(alive, a, torch.ones_like(a)), torch.zeros_like(v))
    return U * a.unsqueeze(1), vb


def _norms(U, v):
    _check(U, v)
    if isinstance(U, np.ndarray):
        return np.linalg.norm(U.astype(np.float64), axis=1), np.abs(np.asarray(v, dtype=np.float64))
    return (torch.linalg.vector_norm(U.double(), dim=1).cpu().numpy(), v.double().abs().cpu().numpy())


def trained_regulariser(U, v, beta: float) -> float:
    """``beta/2 (||U||_F^2 + ||v||^2)``: eq. (2)'s weight decay of the network as it is (float64)."""
    nu, av = _norms(U, v)
    return float(0.5 * beta * (np.sum(nu ** 2) + np.sum(av ** 2)))


def balanced_regulariser(U, v, beta: float) -> float:
    """``beta sum_j ||u_j|| |v_j|``: the weight decay of the balanced twin (float64); the convex penalty."""
    nu, av = _norms(U, v)
    return float(beta * np.sum(nu * av))


def balanced_objective(loss: float, U, v, beta: float) -> float:
    """Eq. (2)'s objective of the balanced twin of ``(U, v)``: ``loss + beta sum_j ||u_j|| |v_j|``.

    ``loss`` is the network's data term ``1/(2M) ||f - x||^2`` (unchanged by balancing)."""
    return float(loss) + balanced_regulariser(U, v, beta)


def balance_gap(U, v, beta: float) -> float:
    """``trained - balanced`` regulariser: what a free rescaling removes from the objective (>= 0)."""
    return trained_regulariser(U, v, beta) - balanced_regulariser(U, v, beta)


def active_units(U, v, rel_tol: float = 1e-8) -> int:
    """Units whose path weight ``||u_j|| |v_j|`` exceeds ``rel_tol`` times the largest (the width in use)."""
    nu, av = _norms(U, v)
    path = nu * av
    if path.size == 0 or path.max() <= 0:
        return 0
    return int(np.sum(path > rel_tol * path.max()))
