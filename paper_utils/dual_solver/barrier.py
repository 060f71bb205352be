r"""Step 3 of :func:`paper_utils.dual_solver.solve_dual`: the primal log-barrier refinement.

Algorithm (chosen from measurements on MNIST sigma = 0.5 patches, beta = 1e-5; CPU numbers from this
project's shared 2-core machine, so wall times are approximate):


3. *Barrier interior-point refinement*, when the certified gap is still above ``tol``: a primal
   log-barrier method on the cone constraints, ``beta ||u||`` kept in the objective (iterates stay in
   the open cones, where the norm is smooth), Newton steps with an exact line search, and Newton
   systems reduced to the P d variables ``v_i = w_i - z_i``: ``(tau H + Phi) dv = rhs``, ``H`` the
   dense (P d)^2 Gram matrix of the gated features, ``Phi`` block diagonal (d x d). At the central
   point for ``tau`` the residual-based dual point above is feasible, so the certified gap tracks the
   barrier parameter (about ``0.45 m / tau``, m barrier terms) down to 1e-7 and below. The barrier
   holds every non-zero row when there are at most ``exact_rows`` of them, otherwise a working set
   per block (the ``working_set`` rows whose hyperplanes pass closest to ``g_i``) grown by cutting
   planes; 64 such rows already gave the optimum to 4e-5 at M = 3,136. Measured (barrier alone,
   before step 2 existed): M = 784, P = 30: 0.6 s, objective equal to CVXPY/Clarabel's (3.7 s) to
   2e-8; M = 3,136, P = 100: 2 s, certified gap 7e-8 (Clarabel: 385 s); M = 78,400, P = 300: 42 s,
   gap 1.9e-7; ``smoke`` scale: 39 s, gap 1e-6; ``cpu`` scale on one H100: 13 s, gap 2.3e-7, peak
   GPU memory 10.7 GB. It runs only within ``dense_bytes`` (default 2 GB: P d up to ~9,000), so at
   ``cpu`` scale and above it is a fallback that step 2 makes unnecessary.

Letter key: M patches, d patch dimension C k k, P patterns, B = 2P blocks (the w's then the z's).
"""

from __future__ import annotations

import torch

from .cones import _WorkingSets, _project_cones
from .data import F64, _Data


# ----------------------------------------------------------------------------------------------
# step 2: primal log-barrier interior-point refinement (dense Newton systems in v = w - z)
# ----------------------------------------------------------------------------------------------
class _Barrier:
    """``min tau (F(w - z) + beta sum_j ||u_j||) - sum_{j,k} log(c_jk . u_j)`` over the working-set
    cones; blocks with ``free[j]`` False are held at zero (their cone had no usable interior point)."""

    def __init__(self, H: torch.Tensor, b: torch.Tensor, c0: float, beta: float, ws: _WorkingSets,
                 free: torch.Tensor):
        self.H, self.b, self.c0, self.beta = H, b, c0, beta
        self.P, self.d = b.shape
        self.free = free
        self.C = ws.C
        self.valid = ws.valid & free.unsqueeze(1)
        self.m = int(self.valid.sum())

    def F(self, V):
        v = V.reshape(-1)
        return float(0.5 * v @ (self.H @ v) - self.b.reshape(-1) @ v) + self.c0

    def objective(self, U):
        return self.F(U[:self.P] - U[self.P:]) + self.beta * float(torch.linalg.vector_norm(U, dim=1).sum())

    def slacks(self, U):
        return torch.where(self.valid, (self.C @ U.unsqueeze(2)).squeeze(2), 1.0)

    def newton(self, U, tau):
        """Newton direction (2P, d), squared decrement, gradient of F (P, d) and the v-part of the step."""
        P, d = self.P, self.d
        n = P * d
        V = U[:P] - U[P:]
        gF = (self.H @ V.reshape(n) - self.b.reshape(n)).reshape(P, d)
        s = self.slacks(U)
        Cs = torch.where(self.valid.unsqueeze(2), self.C / s.unsqueeze(2), 0.0)
        nu = torch.linalg.vector_norm(U, dim=1, keepdim=True)
        uh = U / nu.clamp_min(1e-300)
        eye = torch.eye(d, dtype=F64, device=U.device)
        g = tau * (torch.cat([gF, -gF]) + self.beta * uh) - Cs.sum(1)
        Bm = Cs.transpose(1, 2) @ Cs + (tau * self.beta / nu.clamp_min(1e-300)).unsqueeze(2) \
            * (eye - uh.unsqueeze(2) * uh.unsqueeze(1))
        if not bool(self.free.all()):                      # frozen blocks: a stiff spring at zero
            stiff = 1e6 * (tau * float(torch.diagonal(self.H).max()) + 1.0)
            Bm = torch.where(self.free.view(-1, 1, 1), Bm, stiff * eye)
            g = torch.where(self.free.unsqueeze(1), g, 0.0)
        Bw, Bz, gw, gz = Bm[:P], Bm[P:], g[:P], g[P:]
        S = Bw + Bz
        Phi = Bw @ torch.linalg.solve(S, Bz)
        Phi = 0.5 * (Phi + Phi.transpose(1, 2))
        Sg = torch.linalg.solve(S, (gw + gz).unsqueeze(2)).squeeze(2)
        rhs = (-gw + (Bw @ Sg.unsqueeze(2)).squeeze(2)).reshape(n)
        Mx = tau * self.H
        idx = torch.arange(P, device=U.device)
        Mv = Mx.view(P, d, P, d)
        Mv[idx, :, idx, :] += Phi
        jitter = 0.0
        for _ in range(12):
            L, info = torch.linalg.cholesky_ex(Mx)
            if int(info) == 0:
                break
            add = max(jitter * 9, 1e-14 * float(torch.diagonal(Mx).abs().max()))
            Mx.diagonal().add_(add)
            jitter += add
        dV = torch.cholesky_solve(rhs.unsqueeze(1), L).squeeze(1).reshape(P, d)
        dZ = torch.linalg.solve(S, (-(gw + gz) - (Bw @ dV.unsqueeze(2)).squeeze(2)).unsqueeze(2)).squeeze(2)
        dU = torch.cat([dZ + dV, dZ])
        dU = torch.where(self.free.unsqueeze(1), dU, 0.0)
        lam2 = -float((g * dU).sum())
        return dU, lam2, gF, dU[:P] - dU[P:]

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
            dnorm = float(((2 * a * ud + a * a * dd) / (un + nu).clamp_min(1e-300)).sum())
            return tau * (a * gd + 0.5 * a * a * dHd + self.beta * dnorm) - float(torch.log1p(a * rel).sum())

        while a > 1e-12:
            if change(a) <= -0.25 * a * lam2:
                return U + a * dU, a
            a *= 0.5
        return U, 0.0


def _interior_start(U: torch.Tensor, data: _Data, ws: _WorkingSets, shrink: float = 1e-3):
    """Move each block strictly inside its working-set cone, toward its generator ``g_i``.

    Returns the moved blocks and a mask of the blocks that made it (a block whose cone has no
    interior point in the direction of ``g_i`` is reported False and will be held at zero).
    """
    gh = torch.cat([data.Gh.T, data.Gh.T])                                     # (2P, d)
    norms = torch.linalg.vector_norm(U, dim=1)
    top = float(norms.max())
    floor = shrink * (top if top > 0 else 1.0)
    ok = torch.zeros(U.shape[0], dtype=torch.bool, device=U.device)
    out = U.clone()
    for push in (shrink, 1e-2, 1e-1, 1.0, 10.0):
        Ub = U + (push * norms + floor).unsqueeze(1) * gh
        sb = torch.where(ws.valid, (ws.C @ Ub.unsqueeze(2)).squeeze(2), 1.0)
        okb = (sb > 0).all(1) & ~ok
        out = torch.where(okb.unsqueeze(1), Ub, out)
        ok = ok | okb
        if bool(ok.all()):
            break
    out = torch.where(ok.unsqueeze(1), out, 0.0)
    return out, ok




def _refine(data, ws, beta, c0, tol, max_iter, factor, state, assess, log, out_of_time, gap_now) -> str:
    """Step 3: the barrier method from the best point so far, with cutting-plane rounds when the
    working sets do not hold every row. Updates ``state``; returns the status sentence."""
    H, b = data.hessian()
    U = state["U"]
    tau = None
    for _round in range(50):
        U, free = _interior_start(U, data, ws)
        bar = _Barrier(H, b, c0, beta, ws, free)
        if tau is None:
            obj0 = bar.objective(U)
            tau = bar.m / max(obj0 - state["lb"], 1e-3 * tol * obj0, 1e-300)
        need_cuts = False
        while True:
            for _ in range(50):
                dU, lam2, gF, dV = bar.newton(U, tau)
                state["newton"] += 1
                if lam2 < 2e-9:
                    break
                U, a = bar.step(U, dU, lam2, gF, dV, tau)
                if a == 0.0 or state["newton"] >= max_iter or out_of_time():
                    break
            if not ws.exact:
                val, _ = data.most_violated(U)
                if bool((val < 0).any()):
                    need_cuts = True
                    break
            if assess(U, "ipm") <= 0.1 * tol:              # a margin for zeroing the tiny blocks
                return "barrier refinement certified to tol"
            if state["newton"] >= max_iter:
                return "max_iter reached during the barrier refinement"
            if out_of_time():
                return "time limit reached during the barrier refinement"
            if bar.m / tau < 1e-4 * tol * bar.objective(U):
                return "barrier refinement stalled (numerical precision) before reaching tol"
            tau *= factor
        if not need_cuts:
            break
        log("ipm   the iterate violates rows outside the working sets: adding cutting planes")
        U, done = _project_cones(data, ws, U)
        if bool(done.all()) and assess(U, "ipm") <= tol:
            return "barrier refinement certified to tol"
    return "barrier refinement stopped before reaching tol"
