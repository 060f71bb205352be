r"""An exact, certified solver for the sampled convex dual program, eq. (4).

For the patch matrix ``Yp`` (M, d), targets ``x`` (M,) and generators ``G`` (d, P) with sign
patterns ``D_i = diag(1[Yp g_i >= 0])``, :func:`solve_dual` solves

.. math::
    d_P = \min_{w_i, z_i \in K_i} \frac{1}{2M} \Big\| \sum_{i=1}^P D_i Yp (w_i - z_i) - x \Big\|_2^2
          + \beta \sum_{i=1}^P \left( \|w_i\|_2 + \|z_i\|_2 \right),
    \qquad K_i = \{ w : (2D_i - I)\, Yp\, w \ge 0 \},

returns a point that satisfies every one of the ``2 M P`` cone constraints (up to floating point;
``max_violation`` reports the largest, as :meth:`paper_utils.dual.DualNet.max_violation` defines it),
so that the ReLU network of eq. (5) (:meth:`DualSolution.to_primal`) reproduces its predictions and
its objective, and certifies it with a lower bound on ``d_P``.

Certificate (Lagrangian dual of eq. (4)). With ``r = sum_i D_i Yp v_i - x`` the residual of any
point and ``lam = -r / M``, for every ``t >= 0`` such that ``t c_j <= beta`` for all 2P blocks,

.. math::
    d_P \;\ge\; t\, \lambda^\top x - \tfrac{M}{2} t^2 \|\lambda\|^2,
    \qquad c_j = \max_{w \in K_i, \|w\| \le 1} \pm \lambda^\top D_i Yp\, w = \| \Pi_{K_i}(\pm Yp^\top D_i \lambda) \|,

(``+`` for the ``w_i``, ``-`` for the ``z_i`` blocks). ``Pi_K`` is the Euclidean projection onto
the polyhedral cone, computed exactly by Lawson-Hanson on ``min_{mu >= 0} ||s + C^T mu||``, where
``C`` holds the cone's constraint normals (a d-dimensional problem with at most d active
constraints). A projection onto a cone with only some of the M constraints (a *working set*) is
also valid, merely looser, since ``K_i`` is contained in it; constraints are added by scanning all M
rows for the most violated one ("cutting planes") until the projection is exact. The reported
``gap = (objective - lower_bound) / objective`` is therefore a certified relative optimality gap.
Near the optimum it behaves like ``delta^2`` where ``1 + delta = max_j c_j / beta``: a
residual-based certificate only closes on a *very* accurate point, which is what decided the algorithm.

Algorithm (chosen from measurements; numbers on 1 core of the 2-core CPU of this project, MNIST
sigma 0.5 patches, beta = 1e-5):

1. *Ray lasso.* Restricting every block to its generator's ray, ``w_i = a_i g_i / ||g_i||``,
   ``z_i = c_i g_i / ||g_i||`` (``g_i`` lies in ``K_i``, so this is feasible by construction), turns
   eq. (4) into a lasso over the P ReLU features ``(Yp g_i)_+``; its P x P Gram matrix costs
   ``2 M P^2`` flops (one matmul, at the machine's matmul rate) and the lasso is solved exactly by an
   active-set (feature-sign) method. The cells ``K_i`` of the hyperplane arrangement of the M
   patches are thin cones (measured angular radius ~0.03 rad at M = 784, shrinking with M), so this
   restriction loses less and less: relative excess over ``d_P`` 1.4 at M = 784, 0.14 at M = 3,136,
   2.3e-3 at M = 15,680 (P = 300).
2. *Barrier interior-point refinement.* Where the certified gap of step 1 exceeds ``tol``, a
   primal log-barrier method on the cone constraints (``beta ||w||`` kept in the objective; iterates
   stay in the interior of the cones, where the norm is smooth), with Newton systems reduced to the
   P d variables ``v_i = w_i - z_i``: ``(tau H + Phi) dv = rhs`` with ``H`` the (P d)^2 Gram matrix of
   the gated features and ``Phi`` block diagonal. At the exact central point for ``tau`` the
   residual-based dual point above is feasible and the certified gap is about ``0.45 m / tau`` (m
   barrier terms), so the certificate tracks the barrier parameter: measured 1.8e-8 after 128
   Newton steps at M = 15,680, P = 300; the objective agreed with CVXPY/Clarabel to 2e-8 on
   M = 784, P = 30. The cone constraints in the barrier are all non-zero rows when there are at most
   ``exact_rows`` of them, otherwise a working set per block (the rows whose hyperplanes pass closest to
   ``g_i``, 64 of them already gave the optimum to 4e-5 at M = 3,136) grown by cutting planes.
3. *Restoration.* The final point is projected exactly onto the full cones (the cutting-plane
   Lawson-Hanson above), so the eq. (5) network reproduces it, and certified again.

What was measured and rejected: FISTA with restarts on the constrained problem (exact cone
projections) and ADMM with exact linear solves both still had relative gaps near 1 after 2,000 and
600 iterations at M = 784, P = 30. Two effects make first-order methods hopeless here: ``H`` is
ill-conditioned (condition number 2.5e6 at M = 15,680, P = 300; 1e4 after a Kronecker-factored
preconditioner), and because the cones are thin the optimum pairs large, nearly cancelling ``w_i``
and ``z_i`` (norms ~4, within 0.03 rad of each other) whose growth first-order methods drive with
forces of size ``beta``. Second-order information is needed, and a certificate additionally needs
the near-exact point only a Newton-type method delivers. The price: step 2 needs the dense (P d)^2
matrix ``H`` (``2 M (P d)^2`` flops to build), so it runs only while ``3 (P d)^2`` float64 numbers fit
in ``dense_bytes``; above that (e.g. ``cpu`` scale, P d = 18,000) the solver returns the exact,
feasible step-1 point with its certified gap and says so in ``status``.

Kernels: no (M, P) tensor is ever built for the whole data set. Every pass over the data runs in
row chunks: ``D_c = 1[Yp_c G >= 0]`` is formed in place in a preallocated (c, P) buffer, the
prediction is ``rowsum(Yp_c * (D_c V))`` computed as ``(V^T D_c^T)`` and the adjoint as
``(r_c Yp_c)^T D_c`` (both skinny matmuls in the layout that runs near the matmul rate).

Dtype policy: passes over the data run in float64 when an input is float64 or ``M P <= 2^25``, else
in float32 (``dtype=`` overrides); everything of size P, d, P d or smaller (lasso, barrier Newton
systems, cone projections, certificate) is float64. ``W``, ``Z`` come back in the dtype of ``Yp``
(float64 for numpy input of float64). Devices: everything runs on ``device`` (default: the device of
``Yp``); nothing calls ``.cuda()``.

Letter key: M patches, d patch dimension C k k, P patterns, B = 2P blocks (the w's then the z's).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["DualSolution", "solve_dual"]

F64 = torch.float64


# ----------------------------------------------------------------------------------------------
# result
# ----------------------------------------------------------------------------------------------
@dataclass
class DualSolution:
    """Result of :func:`solve_dual`.

    Attributes:
        W, Z: the dual weights (P, d), exactly feasible (see ``max_violation``).
        objective: eq. (4) at (W, Z): ``loss + reg``.
        loss: ``1/(2M) ||sum_i D_i Yp (w_i - z_i) - x||^2``.
        reg: ``beta sum_i (||w_i|| + ||z_i||)``.
        lower_bound: a certified lower bound on the optimum of eq. (4) for these patterns.
        gap: ``(objective - lower_bound) / objective``, the certified relative optimality gap.
        max_violation: largest ``relu(-(2D_i - I) Yp w_i)`` (and z) over all rows and blocks,
            relative to the largest ``|Yp w_i|``, ``|Yp z_i|``.
        converged: ``gap <= tol``.
        status: a sentence saying how the solver stopped.
        history: per step ``time`` (s since the call), ``objective``, ``lower_bound``, ``gap``,
            ``phase`` (``"ray"``, ``"warm"``, ``"ipm"``, ``"final"``); every entry is a feasible point.
        newton_steps: barrier Newton steps taken.
        seconds: wall time of the call.
        beta, G: the problem's ``beta`` and generator matrix (d, P).
    """

    W: torch.Tensor
    Z: torch.Tensor
    objective: float
    loss: float
    reg: float
    lower_bound: float
    gap: float
    max_violation: float
    converged: bool
    status: str
    history: dict = field(default_factory=dict)
    newton_steps: int = 0
    seconds: float = 0.0
    beta: float = 0.0
    G: torch.Tensor | None = None

    def patch_weights(self, tol: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. (5) in patch form: ``U`` (m, d) and ``v`` (m,), one hidden unit per ``w_i`` and per
        ``z_i`` with norm ``> tol`` (``u = w / sqrt(||w||), v = sqrt(||w||)``, ``v = -sqrt(||z||)``)."""
        U, v = [], []
        for weights, sign in ((self.W, 1.0), (self.Z, -1.0)):
            norms = torch.linalg.vector_norm(weights, dim=1)
            keep = norms > tol
            root = norms[keep].sqrt()
            U.append(weights[keep] / root.unsqueeze(1))
            v.append(sign * root)
        return torch.cat(U), torch.cat(v)

    def to_primal(self, kernel_size: int | None = None, channels: int = 1, residual: bool = False,
                  tol: float = 0.0):
        """The ReLU network of eq. (5).

        With ``kernel_size=None`` returns the patch-form pair ``(U (m, d), v (m,))`` of
        :meth:`patch_weights`; otherwise a :class:`paper_utils.primal.PrimalNet` built by
        :func:`paper_utils.dual.dual_to_primal` (``d`` must equal ``channels * kernel_size**2``).
        """
        if kernel_size is None:
            return self.patch_weights(tol)
        from .dual import dual_to_primal  # late import: paper_utils.dual re-exports this module

        return dual_to_primal(self.W, self.Z, kernel_size, channels, residual=residual, tol=tol)

    def predict_patches(self, Yp: torch.Tensor, chunk_rows: int = 4096) -> torch.Tensor:
        """``sum_i D_i Yp (w_i - z_i)`` (M,) for a patch matrix ``Yp`` (M, d) (eq. 8)."""
        G = self.G.to(device=Yp.device, dtype=Yp.dtype)
        V = (self.W - self.Z).to(device=Yp.device, dtype=Yp.dtype).T
        out = torch.empty(Yp.shape[0], dtype=Yp.dtype, device=Yp.device)
        for s in range(0, Yp.shape[0], chunk_rows):
            Yc = Yp[s:s + chunk_rows]
            out[s:s + chunk_rows] = torch.where(Yc @ G >= 0, Yc @ V, 0.0).sum(1)
        return out


# ----------------------------------------------------------------------------------------------
# input checking
# ----------------------------------------------------------------------------------------------
def _as_tensor(a, name: str, device) -> torch.Tensor:
    if isinstance(a, np.ndarray):
        if a.dtype.kind not in "fiu":
            raise ValueError(f"{name} must be a real array, got dtype {a.dtype}")
        a = torch.from_numpy(np.ascontiguousarray(a))
    elif not isinstance(a, torch.Tensor):
        raise ValueError(f"{name} must be a numpy array or a torch tensor, got {type(a).__name__}")
    if a.is_complex() or a.dtype == torch.bool:
        raise ValueError(f"{name} must be real, got dtype {a.dtype}")
    if not a.is_floating_point():
        a = a.to(F64)
    elif a.dtype not in (torch.float32, F64):
        a = a.to(torch.float32)
    a = a.detach()
    if device is not None:
        a = a.to(device)
    if not bool(torch.isfinite(a).all()):
        raise ValueError(f"{name} contains NaN or Inf")
    return a


# ----------------------------------------------------------------------------------------------
# the data and its chunked passes
# ----------------------------------------------------------------------------------------------
class _Data:
    """``Yp``, ``x``, ``G`` on one device in the compute dtype, and every pass over the M rows."""

    def __init__(self, Yp: torch.Tensor, x: torch.Tensor, G: torch.Tensor, dtype: torch.dtype,
                 chunk_rows: int | None):
        self.device = Yp.device
        self.dtype = dtype
        self.M, self.d = Yp.shape
        self.P = G.shape[1]
        self.Y = Yp.to(dtype).contiguous()
        self.YT = self.Y.T.contiguous()
        self.x = x.to(dtype).contiguous()
        self.x64 = x.to(F64)
        self.G = G.to(dtype).contiguous()
        self.G64 = G.to(F64)
        self.Gh64 = self.G64 / torch.linalg.vector_norm(self.G64, dim=0)        # (d, P) unit generators
        self.Gh = self.Gh64.to(dtype)
        norms = torch.linalg.vector_norm(self.Y, dim=1, keepdim=True)
        self.nonzero = norms.squeeze(1) > 0
        self.Yh = torch.where(norms > 0, self.Y / norms.clamp_min(torch.finfo(dtype).tiny), 0.0)
        if chunk_rows is None:
            budget = (1 << 21) if self.device.type == "cpu" else (1 << 26)
            chunk_rows = int(min(max(256, budget // max(self.P, 1)), 65536))
        self.chunk = max(1, int(chunk_rows))
        self.passes = 0

    def chunks(self):
        for s in range(0, self.M, self.chunk):
            yield s, min(s + self.chunk, self.M)

    # -- loss and gradient at v = w - z ----------------------------------------------------------
    def loss_grad(self, V64: torch.Tensor, with_grad: bool = True):
        """``sq = ||r||^2``, ``rx = r^T x`` and ``grad = A^T r / M`` (P, d) for ``r = A v - x``."""
        self.passes += 1
        dt, P = self.dtype, self.P
        VT = V64.T.to(dt).contiguous()                                           # (d, P)
        gT = torch.zeros(self.d, P, dtype=F64, device=self.device)
        sq = torch.zeros((), dtype=F64, device=self.device)
        rx = torch.zeros((), dtype=F64, device=self.device)
        buf = torch.empty(self.chunk, P, dtype=dt, device=self.device)
        for s, e in self.chunks():
            c = e - s
            D = torch.mm(self.Y[s:e], self.G, out=buf[:c]).ge_(0)                # (c, P) of 1.0 / 0.0
            YcT = self.YT[:, s:e]
            pred = (torch.mm(VT, D.T) * YcT).sum(0)
            r = pred - self.x[s:e]
            sq += torch.dot(r, r).to(F64)
            rx += torch.dot(r, self.x[s:e]).to(F64)
            if with_grad:
                gT += torch.mm(r * YcT, D).to(F64)
        return sq, rx, (gT.T / self.M if with_grad else None)

    # -- the ray lasso's Gram matrix ---------------------------------------------------------------
    def relu_gram(self):
        """``Q = F^T F / M`` (P, P) and ``q = F^T x / M`` for the features ``F = (Yp g_i / ||g_i||)_+``."""
        self.passes += 1
        P, dt = self.P, self.dtype
        Q = torch.zeros(P, P, dtype=F64, device=self.device)
        q = torch.zeros(P, dtype=F64, device=self.device)
        buf = torch.empty(self.chunk, P, dtype=dt, device=self.device)
        for s, e in self.chunks():
            Fc = torch.mm(self.Y[s:e], self.Gh, out=buf[:e - s]).clamp_min_(0)
            Q += torch.mm(Fc.T, Fc).to(F64)
            q += torch.mv(Fc.T, self.x[s:e]).to(F64)
        return Q / self.M, q / self.M

    # -- dense Gram matrix of the gated features (barrier Newton systems) --------------------------
    def hessian(self):
        """``H = A^T A / M`` ((P d), (P d)) and ``b = A^T x / M`` (P, d) in float64, row-chunked."""
        self.passes += 1
        P, d = self.P, self.d
        n = P * d
        H = torch.zeros(n, n, dtype=F64, device=self.device)
        b = torch.zeros(n, dtype=F64, device=self.device)
        step = max(1, min(self.chunk, (1 << 23) // max(n, 1)))
        Y64, x64 = self.Y.to(F64), self.x64
        for s in range(0, self.M, step):
            Yc = Y64[s:s + step]
            Dc = (Yc @ self.G64 >= 0).to(F64)
            A = (Dc.unsqueeze(2) * Yc.unsqueeze(1)).reshape(Yc.shape[0], n)
            H.addmm_(A.T, A)
            b.addmv_(A.T, x64[s:s + step])
        H /= self.M
        b /= self.M
        return H, b.reshape(P, d)

    # -- constraints ---------------------------------------------------------------------------
    def most_violated(self, U64: torch.Tensor):
        """For each block (2P, d) the smallest normalised margin ``(2D_i - 1) yhat_p . u`` over all
        rows, and its row. Zero rows have margin 0."""
        self.passes += 1
        dt, P, B = self.dtype, self.P, U64.shape[0]
        UT = U64.T.to(dt).contiguous()
        best = torch.full((B,), math.inf, dtype=F64, device=self.device)
        arg = torch.zeros(B, dtype=torch.long, device=self.device)
        buf = torch.empty(self.chunk, P, dtype=dt, device=self.device)
        for s, e in self.chunks():
            sgn = torch.mm(self.Y[s:e], self.G, out=buf[:e - s]).ge_(0).mul_(2).sub_(1)
            T = self.Yh[s:e] @ UT                                                  # (c, B)
            T[:, :P] *= sgn
            T[:, P:] *= sgn
            val, idx = T.min(0)
            val = val.to(F64)
            better = val < best
            best = torch.where(better, val, best)
            arg = torch.where(better, idx + s, arg)
        return best, arg

    def nearest_rows(self, K: int) -> torch.Tensor:
        """(P, K) indices of the non-zero rows whose hyperplanes ``yhat_p^perp`` pass closest to ``g_i``."""
        self.passes += 1
        P = self.P
        bval = torch.empty(0, P, dtype=self.dtype, device=self.device)
        bidx = torch.empty(0, P, dtype=torch.long, device=self.device)
        for s, e in self.chunks():
            A = (self.Yh[s:e] @ self.Gh).abs_()
            A[~self.nonzero[s:e]] = math.inf
            idx = torch.arange(s, e, device=self.device).unsqueeze(1).expand(e - s, P)
            val = torch.cat([bval, A])
            ind = torch.cat([bidx, idx])
            k = min(K, val.shape[0])
            top, pos = val.topk(k, dim=0, largest=False)
            bval, bidx = top, ind.gather(0, pos)
        return bidx.T.contiguous()

    def rows_normals(self, rows: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
        """Unit constraint normals ``(2D_i - 1) yhat_p`` (float64) for row indices ``rows`` of ``pattern``s."""
        y = self.Yh[rows].to(F64)
        marg = (self.Y[rows].to(F64) * self.G64.T[pattern].unsqueeze(-2).expand_as(y) if y.ndim == 3
                else self.Y[rows].to(F64) * self.G64.T[pattern])
        sgn = torch.where(marg.sum(-1) >= 0, 1.0, -1.0).to(F64)
        return y * sgn.unsqueeze(-1)

    def evaluate(self, W64: torch.Tensor, Z64: torch.Tensor):
        """``(sq, worst, scale)``: squared residual, largest violation and largest ``|Yp u|`` (DualNet's
        definition of the relative violation is ``worst / scale``)."""
        self.passes += 1
        dt, P = self.dtype, self.P
        right = torch.cat([self.G, W64.T.to(dt), Z64.T.to(dt)], dim=1)
        sq = torch.zeros((), dtype=F64, device=self.device)
        worst = torch.zeros((), dtype=F64, device=self.device)
        scale = torch.zeros((), dtype=F64, device=self.device)
        for s, e in self.chunks():
            S = self.Y[s:e] @ right
            on = S[:, :P] >= 0
            SW, SZ = S[:, P:2 * P], S[:, 2 * P:]
            r = torch.where(on, SW - SZ, 0.0).sum(1) - self.x[s:e]
            sq += torch.dot(r, r).to(F64)
            worst = torch.maximum(worst, torch.maximum(torch.where(on, -SW, SW).amax(),
                                                       torch.where(on, -SZ, SZ).amax()).clamp_min(0).to(F64))
            scale = torch.maximum(scale, S[:, P:].abs().amax().to(F64))
        return float(sq), float(worst), float(scale)


# ----------------------------------------------------------------------------------------------
# projection onto polyhedral cones: batched Lawson-Hanson, and cutting planes over all rows
# ----------------------------------------------------------------------------------------------
def _nnls_project(C: torch.Tensor, valid: torch.Tensor, v: torch.Tensor, tol: float = 1e-13):
    """Project ``v[b]`` (B, d) onto ``{w : C[b, k] . w >= 0 for valid k}`` (C (B, K, d), float64).

    Lawson-Hanson on ``min_{mu >= 0} ||v + C^T mu||^2``; passive sets live in d slots (at most d
    linearly independent active constraints). Returns the projection (B, d).
    """
    B, K, d = C.shape
    dev, dt = C.device, C.dtype
    if K == 0 or B == 0:
        return v.clone()
    ar = torch.arange(B, device=dev)
    slots = torch.full((B, d), -1, dtype=torch.long, device=dev)
    mu = torch.zeros(B, d, dtype=dt, device=dev)
    scale = torch.linalg.vector_norm(v, dim=1).clamp_min(1e-300)
    eye = torch.eye(d, dtype=dt, device=dev)
    w = v.clone()

    def gather(sl):
        on = sl >= 0
        return on, torch.where(on.unsqueeze(2), C[ar.unsqueeze(1), sl.clamp_min(0)], 0.0)

    def lsq(sl):
        on, Cp = gather(sl)
        Qm = Cp @ Cp.transpose(1, 2) + torch.diag_embed((~on).to(dt)) + 1e-13 * eye
        rhs = -(Cp @ v.unsqueeze(2)).squeeze(2)
        return torch.linalg.solve(Qm, rhs) * on

    for _ in range(4 * (K + d)):
        cv = (C @ w.unsqueeze(2)).squeeze(2)                                       # (B, K)
        passive = torch.zeros(B, K, dtype=torch.bool, device=dev)
        on = slots >= 0
        passive[ar.unsqueeze(1).expand(B, d)[on], slots[on]] = True
        cv = torch.where(valid & ~passive, cv, math.inf)
        m, j = cv.min(1)
        act = (m < -tol * scale) & ~on.all(1)
        if not bool(act.any()):
            break
        free = (~on).to(torch.int8).argmax(1)
        slots[act, free[act]] = j[act]
        for _inner in range(d + 1):
            z = lsq(slots)
            on = slots >= 0
            neg = on & (z <= 0) & act.unsqueeze(1)
            bad = neg.any(1)
            mu = torch.where((act & ~bad).unsqueeze(1), z, mu)
            if not bool(bad.any()):
                break
            ratio = torch.where(neg, mu / (mu - z), math.inf)
            alpha = ratio.min(1).values.clamp(0, 1)
            mu = torch.where(bad.unsqueeze(1), mu + alpha.unsqueeze(1) * (z - mu), mu)
            drop = bad.unsqueeze(1) & on & (mu <= 1e-15 * scale.unsqueeze(1))
            drop[bad, ratio.argmin(1)[bad]] = True
            slots = torch.where(drop, -1, slots)
            mu = torch.where(drop, 0.0, mu)
            act = bad
        _, Cp = gather(slots)
        w = v + (mu.unsqueeze(1) @ Cp).squeeze(1)
    return w


class _WorkingSets:
    """Per block (2P blocks) a set of at most K unit constraint normals, float64.

    ``exact``: the set holds every non-zero row (small M), so no cutting planes are needed.
    """

    def __init__(self, data: _Data, K: int, exact_rows: int):
        P, d, dev = data.P, data.d, data.device
        nz = data.nonzero.nonzero().squeeze(1)
        self.exact = nz.numel() <= exact_rows
        if self.exact:
            rows = nz.unsqueeze(0).expand(P, -1)
        else:
            rows = data.nearest_rows(min(K, nz.numel()))
        pat = torch.arange(P, device=dev).unsqueeze(1).expand_as(rows)
        normals = data.rows_normals(rows, pat[:, 0])                               # (P, K, d)
        self.C = torch.cat([normals, normals]).contiguous()
        self.rows = torch.cat([rows, rows]).contiguous()
        self.valid = torch.ones(self.C.shape[:2], dtype=torch.bool, device=dev)
        self.P = P

    def copy(self) -> "_WorkingSets":
        new = object.__new__(_WorkingSets)
        new.exact, new.P = self.exact, self.P
        new.C, new.rows, new.valid = self.C.clone(), self.rows.clone(), self.valid.clone()
        return new

    def add(self, data: _Data, blocks: torch.Tensor, rows: torch.Tensor, U: torch.Tensor) -> None:
        """Put row ``rows[k]`` into block ``blocks[k]``: into an empty slot, or over the constraint with
        the largest slack at ``U`` (the least likely to be active)."""
        if blocks.numel() == 0:
            return
        normals = data.rows_normals(rows, blocks % self.P)
        present = (self.rows[blocks] == rows.unsqueeze(1)) & self.valid[blocks]
        keep = ~present.any(1)
        blocks, rows, normals = blocks[keep], rows[keep], normals[keep]
        if blocks.numel() == 0:
            return
        slack = (self.C[blocks] @ U[blocks].unsqueeze(2)).squeeze(2)
        slack = torch.where(self.valid[blocks], slack, math.inf)
        slot = slack.argmax(1)
        self.C[blocks, slot] = normals
        self.rows[blocks, slot] = rows
        self.valid[blocks, slot] = True


def _project_cones(data: _Data, ws: _WorkingSets, V: torch.Tensor, max_rounds: int = 60,
                   tol: float = 1e-12) -> tuple[torch.Tensor, bool]:
    """Project each row of ``V`` (2P, d) onto its full cone ``K_i``.

    Lawson-Hanson on the working set, then a pass over all M rows; violated rows join the working
    set (cutting planes) until none is left. Returns (projection, exact). When ``exact`` is False
    the result is the projection onto the working-set cone, a superset of ``K_i`` (still a valid
    upper bound for the certificate, not a feasible point).
    """
    Vn = torch.linalg.vector_norm(V, dim=1)
    for _ in range(max_rounds):
        Wp = _nnls_project(ws.C, ws.valid, V)
        if ws.exact:
            return Wp, True
        val, arg = data.most_violated(Wp)
        bad = val < -10 * tol * Vn - 1e-300
        if not bool(bad.any()):
            return Wp, True
        b = bad.nonzero().squeeze(1)
        ws.add(data, b, arg[b], Wp)
    return Wp, False


# ----------------------------------------------------------------------------------------------
# certificate
# ----------------------------------------------------------------------------------------------
def _certificate(data: _Data, ws: _WorkingSets, beta: float, sq: float, rx: float, grad: torch.Tensor):
    """Lower bound on eq. (4) from the residual: ``lam = -r/M``; returns (lower_bound, max_j c_j / beta)."""
    M = data.M
    s = torch.cat([-grad, grad])                       # A_j^T lam: w-blocks then z-blocks
    Ps, _ = _project_cones(data, ws, s)                # exact, or a superset cone (looser, still valid)
    c = float(torch.linalg.vector_norm(Ps, dim=1).max())
    a = -rx / M                                        # lam^T x
    b = sq / M                                         # M ||lam||^2
    t = a / b if b > 0 else 0.0
    if c > 0:
        t = min(t, beta / c)
    t = max(t, 0.0)
    return t * a - 0.5 * t * t * b, (c / beta if beta > 0 else math.inf)


# ----------------------------------------------------------------------------------------------
# step 1: the ray lasso, solved exactly
# ----------------------------------------------------------------------------------------------
def _lasso(Q: torch.Tensor, q: torch.Tensor, lam: float, theta: torch.Tensor | None = None,
           fista_iters: int = 300, max_rounds: int = 500) -> torch.Tensor:
    """``argmin_theta 1/2 theta^T Q theta - q^T theta + lam ||theta||_1`` (float64, exact).

    FISTA for a support guess, then feature-sign search (Lee et al., NIPS 2006): Newton steps on the
    current sign pattern with an exact line search over the zero crossings; finite and monotone.
    """
    P = Q.shape[0]
    dev = Q.device
    theta = torch.zeros(P, dtype=F64, device=dev) if theta is None else theta.clone()
    L = float(torch.linalg.eigvalsh(Q)[-1]) if P <= 4096 else float(torch.linalg.matrix_norm(Q, 2))
    if L <= 0:
        return torch.zeros(P, dtype=F64, device=dev)
    y, t_k, prev = theta.clone(), 1.0, theta.clone()
    for _ in range(fista_iters):
        u = y - (Q @ y - q) / L
        new = torch.sign(u) * (u.abs() - lam / L).clamp_min(0)
        t_n = (1 + math.sqrt(1 + 4 * t_k * t_k)) / 2
        y = new + (t_k - 1) / t_n * (new - prev)
        prev, t_k = new, t_n
    theta = prev
    scale = max(float(q.abs().max()), lam, 1e-300)
    ridge = 1e-14 * float(torch.diagonal(Q).max())

    def f(th):
        return float(0.5 * th @ (Q @ th) - q @ th + lam * th.abs().sum())

    for _ in range(max_rounds):
        g = Q @ theta - q
        active = theta != 0
        viol = ~active & (g.abs() > lam * (1 + 1e-12) + 1e-15 * scale)
        stat = (g + lam * torch.sign(theta))[active].abs().max() if bool(active.any()) else torch.zeros(())
        if not bool(viol.any()) and float(stat) <= 1e-11 * scale:
            break
        s = torch.sign(theta)
        s[viol] = -torch.sign(g[viol])
        A = active | viol
        for _inner in range(P + 1):
            idx = A.nonzero().squeeze(1)
            if idx.numel() == 0:
                theta = torch.zeros_like(theta)
                break
            QA = Q[idx][:, idx] + ridge * torch.eye(idx.numel(), dtype=F64, device=dev)
            tA = torch.linalg.solve(QA, q[idx] - lam * s[idx])
            target = torch.zeros_like(theta)
            target[idx] = tA
            if bool((torch.sign(tA) == s[idx]).all()):
                if f(target) <= f(theta) + 1e-15 * scale:
                    theta = target
                break
            dlt = target - theta
            cross = (theta != 0) & (theta * dlt < 0)
            steps = torch.cat([(-theta[cross] / dlt[cross]).clamp(0, 1), torch.ones(1, dtype=F64, device=dev)])
            steps = steps[steps > 0]
            best, best_a = f(theta), 0.0
            for a in steps.tolist():
                val = f(theta + a * dlt)
                if val < best:
                    best, best_a = val, a
            if best_a == 0.0:
                break
            theta = theta + best_a * dlt
            hit = cross & ((theta.abs() <= 1e-14 * theta.abs().max()) | (torch.sign(theta) != s))
            theta[hit] = 0.0
            A = (theta != 0) | (A & (theta == 0) & ~cross & (s != 0) & viol)
            s = torch.where(theta != 0, torch.sign(theta), s)
            if bool((A == (theta != 0)).all()) and not bool(((theta == 0) & A).any()):
                pass
    return theta


# ----------------------------------------------------------------------------------------------
# step 2: primal log-barrier interior-point refinement (dense Newton systems in v = w - z)
# ----------------------------------------------------------------------------------------------
class _Barrier:
    """``min tau (F(w - z) + beta sum ||u_j||) - sum_{j,k} log(c_jk . u_j)`` over the working-set cones."""

    def __init__(self, H: torch.Tensor, b: torch.Tensor, c0: float, beta: float, ws: _WorkingSets):
        self.H, self.b, self.c0, self.beta = H, b, c0, beta
        self.P, self.d = b.shape
        self.C, self.valid = ws.C, ws.valid
        self.m = int(ws.valid.sum())

    def F(self, V):
        v = V.reshape(-1)
        return float(0.5 * v @ (self.H @ v) - self.b.reshape(-1) @ v) + self.c0

    def objective(self, U):
        P = self.P
        return self.F(U[:P] - U[P:]) + self.beta * float(torch.linalg.vector_norm(U, dim=1).sum())

    def slacks(self, U):
        return torch.where(self.valid, (self.C @ U.unsqueeze(2)).squeeze(2), 1.0)

    def newton(self, U, tau):
        """Newton direction (2P, d) and squared decrement for the barrier problem at ``tau``."""
        P, d = self.P, self.d
        n = P * d
        V = U[:P] - U[P:]
        gF = (self.H @ V.reshape(n) - self.b.reshape(n)).reshape(P, d)
        s = self.slacks(U)
        Cs = torch.where(self.valid.unsqueeze(2), self.C / s.unsqueeze(2), 0.0)
        nu = torch.linalg.vector_norm(U, dim=1, keepdim=True)
        uh = U / nu
        eye = torch.eye(d, dtype=F64, device=U.device)
        g = tau * (torch.cat([gF, -gF]) + self.beta * uh) - Cs.sum(1)
        Bm = Cs.transpose(1, 2) @ Cs + (tau * self.beta / nu).unsqueeze(2) * (eye - uh.unsqueeze(2) * uh.unsqueeze(1))
        Bw, Bz, gw, gz = Bm[:P], Bm[P:], g[:P], g[P:]
        S = Bw + Bz
        Phi = Bw @ torch.linalg.solve(S, Bz)
        Phi = 0.5 * (Phi + Phi.transpose(1, 2))
        Sg = torch.linalg.solve(S, (gw + gz).unsqueeze(2)).squeeze(2)
        rhs = (-gw + (Bw @ Sg.unsqueeze(2)).squeeze(2)).reshape(n)
        Mx = tau * self.H
        Mv = Mx.view(P, d, P, d)
        idx = torch.arange(P, device=U.device)
        Mv[idx, :, idx, :] += Phi
        jitter = 0.0
        for _ in range(8):
            L, info = torch.linalg.cholesky_ex(Mx)
            if int(info) == 0:
                break
            jitter = max(jitter * 100, 1e-14 * float(torch.diagonal(Mx).abs().max()))
            Mx.diagonal().add_(jitter)
        dV = torch.cholesky_solve(rhs.unsqueeze(1), L).squeeze(1).reshape(P, d)
        dZ = torch.linalg.solve(S, (-(gw + gz) - (Bw @ dV.unsqueeze(2)).squeeze(2)).unsqueeze(2)).squeeze(2)
        dU = torch.cat([dZ + dV, dZ])
        lam2 = -float((g * dU).sum())
        return dU, lam2, gF, dV

    def step(self, U, dU, lam2, gF, dV, tau):
        """Damped step: fraction to the boundary, then backtracking on the exact barrier decrease."""
        s = self.slacks(U)
        ds = torch.where(self.valid, (self.C @ dU.unsqueeze(2)).squeeze(2), 0.0)
        a = 1.0
        neg = ds < 0
        if bool(neg.any()):
            a = min(1.0, 0.99 * float((-s[neg] / ds[neg]).min()))
        n = dV.numel()
        gd = float((gF.reshape(n) * dV.reshape(n)).sum())
        dHd = float(dV.reshape(n) @ (self.H @ dV.reshape(n)))
        nu = torch.linalg.vector_norm(U, dim=1)
        rel = torch.where(self.valid, ds / s, 0.0)
        ud = (U * dU).sum(1)
        dd = (dU * dU).sum(1)

        def change(a):
            un = torch.linalg.vector_norm(U + a * dU, dim=1)
            dnorm = float(((2 * a * ud + a * a * dd) / (un + nu)).sum())
            return tau * (a * gd + 0.5 * a * a * dHd + self.beta * dnorm) - float(torch.log1p(a * rel).sum())

        while a > 1e-12:
            if change(a) <= -0.25 * a * lam2:
                return U + a * dU, a
            a *= 0.5
        return U, 0.0


def _interior_start(U: torch.Tensor, data: _Data, ws: _WorkingSets, shrink: float = 1e-3):
    """Move each block strictly inside its working-set cone: toward its generator ``g_i``."""
    P = data.P
    gh = torch.cat([data.Gh64.T, data.Gh64.T])                                     # (2P, d)
    norms = torch.linalg.vector_norm(U, dim=1)
    floor = shrink * (float(norms.max()) if float(norms.max()) > 0 else 1.0)
    U = U + (shrink * norms + floor).unsqueeze(1) * gh
    s = torch.where(ws.valid, (ws.C @ U.unsqueeze(2)).squeeze(2), 1.0)
    ok = (s > 0).all(1)
    if not bool(ok.all()):                                                          # ties on g_i: push harder
        for boost in (1e-2, 1e-1, 1.0, 10.0):
            Ub = U + boost * (torch.linalg.vector_norm(U, dim=1) + floor).unsqueeze(1) * gh
            sb = torch.where(ws.valid, (ws.C @ Ub.unsqueeze(2)).squeeze(2), 1.0)
            okb = (sb > 0).all(1)
            U = torch.where((okb & ~ok).unsqueeze(1), Ub, U)
            ok = ok | okb
            if bool(ok.all()):
                break
    return U, ok


# ----------------------------------------------------------------------------------------------
# the solver
# ----------------------------------------------------------------------------------------------
def solve_dual(Yp, x, G, beta: float, *, tol: float = 1e-6, max_iter: int = 400,
               time_limit: float | None = None, device=None, dtype: torch.dtype | None = None,
               W0=None, Z0=None, progress: bool = False, chunk_rows: int | None = None,
               working_set: int = 128, exact_rows: int = 512, dense_bytes: float = 2e9,
               barrier_factor: float = 10.0) -> DualSolution:
    r"""Solve eq. (4) over the sign patterns of ``G`` exactly and certify the answer.

    Args:
        Yp: patch matrix (M, d), numpy array or torch tensor (float32 / float64).
        x: targets (M,) (for a residual network, ``X - Y``).
        G: generators (d, P); pattern i is ``1[Yp @ G[:, i] >= 0]``.
        beta: regularisation weight (>= 0; not averaged over samples, paper App. B).
        tol: stop when the certified relative gap ``(objective - lower_bound) / objective <= tol``.
        max_iter: most barrier Newton steps.
        time_limit: stop the refinement after this many seconds (the result is still feasible and
            certified, with ``converged`` False).
        device: where to compute (default: the device of ``Yp`` when it is a tensor, else CPU).
        dtype: dtype of the passes over the data (default: see the module docstring).
        W0, Z0: optional warm start (P, d), e.g. from the paper's Adam + hinge training: it is made
            feasible by exact projection and used when its objective beats the ray lasso's.
        progress: print one line per step.
        chunk_rows: rows of ``Yp`` per chunk (default: (chunk, P) blocks of about 2M numbers on CPU).
        working_set: constraint rows per block kept in the barrier when ``M`` is large.
        exact_rows: up to this many non-zero rows, every row is in every working set.
        dense_bytes: memory allowed for the barrier's dense (P d)^2 float64 matrices; above it the
            refinement is skipped (see ``status``).
        barrier_factor: growth of the barrier parameter per outer step.

    Returns:
        :class:`DualSolution`.
    """
    t_start = time.perf_counter()
    if device is None:
        device = Yp.device if isinstance(Yp, torch.Tensor) else torch.device("cpu")
    device = torch.device(device)
    in_dtypes = [a.dtype for a in (Yp, x, G) if isinstance(a, torch.Tensor)]
    in_dtypes += [torch.float64 if a.dtype == np.float64 else torch.float32 for a in (Yp, x, G)
                  if isinstance(a, np.ndarray) and a.dtype.kind == "f"]
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
    if not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta < 0:
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
    if not (tol > 0):
        raise ValueError(f"tol must be > 0, got {tol!r}")
    P = G.shape[1]
    out_dtype = Yp.dtype
    if dtype is None:
        dtype = F64 if (F64 in in_dtypes or M * P <= (1 << 25)) else torch.float32
    data = _Data(Yp, x, G, dtype, chunk_rows)
    beta = float(beta)
    c0 = float(data.x64 @ data.x64) / (2 * M)
    hist = {"time": [], "objective": [], "lower_bound": [], "gap": [], "phase": []}
    newton = 0

    def log(msg):
        if progress:
            print(f"[solve_dual {time.perf_counter() - t_start:7.1f}s] {msg}", flush=True)

    def out_of_time():
        return time_limit is not None and time.perf_counter() - t_start > time_limit

    ws = _WorkingSets(data, working_set, exact_rows)
    ws_cert = ws.copy()

    def assess(U, phase):
        """Objective and certificate of a feasible point U (2P, d); records history."""
        sq, rx, grad = data.loss_grad(U[:P] - U[P:])
        sq, rx = float(sq), float(rx)
        obj = sq / (2 * M) + beta * float(torch.linalg.vector_norm(U, dim=1).sum())
        lb, ratio = _certificate(data, ws_cert, beta, sq, rx, grad)
        lb = min(lb, obj)
        gap = (obj - lb) / obj if obj > 0 else 0.0
        hist["time"].append(time.perf_counter() - t_start)
        hist["objective"].append(obj)
        hist["lower_bound"].append(lb)
        hist["gap"].append(gap)
        hist["phase"].append(phase)
        log(f"{phase:5s} objective {obj:.10e}  lower bound {lb:.10e}  gap {gap:.2e}  (max c/beta {ratio:.6f})")
        return obj, lb, gap

    # -- step 1: ray lasso ----------------------------------------------------------------------
    Q, q = data.relu_gram()
    theta = _lasso(Q, q, beta)
    Gh = data.Gh64.T
    U = torch.cat([theta.clamp_min(0).unsqueeze(1) * Gh, (-theta).clamp_min(0).unsqueeze(1) * Gh])
    best = (U, *assess(U, "ray"))
    status = "the ray lasso is certified optimal to tol"

    # -- optional warm start ----------------------------------------------------------------------
    if W0 is not None or Z0 is not None:
        if W0 is None or Z0 is None:
            raise ValueError("give both W0 and Z0 (or neither)")
        W0 = _as_tensor(W0, "W0", device).to(F64)
        Z0 = _as_tensor(Z0, "Z0", device).to(F64)
        if W0.shape != (P, d) or Z0.shape != (P, d):
            raise ValueError(f"W0 and Z0 must have shape (P, d) = ({P}, {d}), got {tuple(W0.shape)}, {tuple(Z0.shape)}")
        U0, exact = _project_cones(data, ws, torch.cat([W0, Z0]))
        if exact:
            cand = (U0, *assess(U0, "warm"))
            if cand[1] < best[1]:
                best = cand

    # -- step 2: barrier refinement -----------------------------------------------------------------
    n = P * d
    if best[3] > tol:
        if 3.0 * n * n * 8 > dense_bytes:
            status = (f"certified gap {best[3]:.2e} > tol; the barrier refinement needs "
                      f"{3 * n * n * 8 / 1e9:.1f} GB of dense (P d)^2 matrices (dense_bytes={dense_bytes:.2g}); "
                      f"returning the exact ray-lasso point")
        elif out_of_time():
            status = "time limit reached before the barrier refinement"
        else:
            status = "barrier refinement stopped at max_iter before reaching tol"
            H, b = data.hessian()
            lb_best = max(hist["lower_bound"])
            for _round in range(20):                       # working-set (cutting-plane) rounds
                bar = _Barrier(H, b, c0, beta, ws)
                U, ok = _interior_start(best[0], data, ws)
                if not bool(ok.all()):
                    U = torch.where(ok.unsqueeze(1), U, 0.0)
                obj0 = bar.objective(U)
                gap_abs = max(obj0 - lb_best, 1e-3 * tol * obj0)
                tau = bar.m / gap_abs
                done = stalled = False
                while not done:
                    for _ in range(60):
                        dU, lam2, gF, dV = bar.newton(U, tau)
                        dU = torch.where(ok.unsqueeze(1), dU, 0.0)
                        newton += 1
                        if lam2 < 2e-9:
                            break
                        U, a = bar.step(U, dU, lam2, gF, dV, tau)
                        if a == 0.0 or newton >= max_iter or out_of_time():
                            break
                    if ws.exact:
                        Uf = U
                    else:
                        val, _ = data.most_violated(U)
                        Uf = U if bool((val >= 0).all()) else None
                    if Uf is not None:
                        cand = (Uf, *assess(Uf, "ipm"))
                        lb_best = max(lb_best, cand[2])
                        if cand[1] < best[1] or cand[3] < best[3]:
                            best = cand if cand[1] <= best[1] else (best[0], best[1], max(best[2], cand[2]),
                                                                     (best[1] - max(best[2], cand[2])) / best[1])
                        if cand[3] <= tol:
                            status = "barrier refinement certified to tol"
                            done = True
                            break
                    else:
                        log("ipm   iterate violates rows outside the working set: adding cutting planes")
                        break
                    if bar.m / tau < 1e-4 * tol * bar.objective(U):
                        stalled = True
                        status = "barrier refinement stalled (numerical precision) before tol"
                        break
                    if newton >= max_iter or out_of_time():
                        status = ("time limit reached" if out_of_time() else "max_iter reached") + \
                                 " during the barrier refinement"
                        break
                    tau *= barrier_factor
                if done or stalled or newton >= max_iter or out_of_time() or ws.exact:
                    break
                # cutting planes: add the violated rows and restart from the restored point
                Ur, _ = _project_cones(data, ws, U)
                if Ur is not None:
                    cand = (Ur, *assess(Ur, "ipm"))
                    lb_best = max(lb_best, cand[2])
                    if cand[1] < best[1]:
                        best = cand
                    if cand[3] <= tol:
                        status = "barrier refinement certified to tol"
                        break
            del H

    # -- final: exact restoration and report -----------------------------------------------------------
    U = best[0]
    Uf, exact = _project_cones(data, ws, U)
    if not exact:
        Uf = U
    W = Uf[:P].to(out_dtype)
    Z = Uf[P:].to(out_dtype)
    W64, Z64 = W.to(F64), Z.to(F64)
    sq, worst, scale = data.evaluate(W64, Z64)
    loss = sq / (2 * M)
    reg = beta * float(torch.linalg.vector_norm(W64, dim=1).sum() + torch.linalg.vector_norm(Z64, dim=1).sum())
    obj = loss + reg
    lb = max(hist["lower_bound"])
    lb = min(lb, obj)
    gap = (obj - lb) / obj if obj > 0 else 0.0
    hist["time"].append(time.perf_counter() - t_start)
    hist["objective"].append(obj)
    hist["lower_bound"].append(lb)
    hist["gap"].append(gap)
    hist["phase"].append("final")
    converged = gap <= tol
    if converged and not status.endswith("to tol"):
        status = "certified to tol"
    log(f"final objective {obj:.10e}  lower bound {lb:.10e}  gap {gap:.2e}  max violation {worst / scale if scale else 0:.1e}")
    return DualSolution(W=W, Z=Z, objective=obj, loss=loss, reg=reg, lower_bound=lb, gap=gap,
                        max_violation=worst / scale if scale > 0 else 0.0, converged=converged, status=status,
                        history=hist, newton_steps=newton, seconds=time.perf_counter() - t_start, beta=beta,
                        G=data.G64.to(out_dtype))
