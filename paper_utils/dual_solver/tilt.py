r"""Step 2 of :func:`paper_utils.dual_solver.solve_dual`: tilted rays.

Algorithm (chosen from measurements on MNIST sigma = 0.5 patches, beta = 1e-5; CPU numbers from this
project's shared 2-core machine, so wall times are approximate):


2. *Tilted rays* (:func:`_tilt`). Each pattern keeps one unit direction ``a_i`` in its cone, at first
   ``g_i / ||g_i||``. A round replaces the direction of every pattern whose dual constraint is
   violated at the current residual by that block's best response ``Pi_{K_i}(s_j) / c_j`` (the exact
   cone projection the certificate computes anyway), recomputes those rows of the Gram matrix of the
   features ``D_i Yp a_i`` in float64, and solves the lasso over the P tilted features exactly again.
   Every point is feasible. A fixed point is the optimum of eq. (4) (optimal amplitudes, and every
   active direction a best response, i.e. the KKT conditions), and because the cones are thin, the
   residual, hence each best response, moves little between rounds. Measured at ``cpu`` scale on 2 CPU
   cores: the certified gap goes 3.1e-4 -> 5.7e-5 -> 4.2e-11 in two rounds (sigma 0.5; 0.25:
   6.5e-4 -> 3.0e-4 -> 4.6e-10; 0.75: 2.7e-4 -> 4.2e-5), 86 s in all for sigma = 0.5, of which 50 s in
   the two Gram passes; at ``smoke`` scale (M = 39,200, P = 256): 1.0e-1 -> 1.1e-5 -> 5.8e-7 in 0.8 s.
   The first round recomputes every row in float64 when step 1 ran in float32: the float32 Gram
   matrix alone misstates the ray constraints ``|f_i^T lam|`` by up to 1.1% of ``beta`` at ``cpu``
   scale. On small problems (M up to a few thousand: wide cones, a ray excess of order 1) the
   directions keep moving and the round stops once the gap has not halved in ``patience`` rounds.

Cycling on small problems, and what did not cure it (M = 15,680, P = 400 random patterns, 2 cores):
after two rounds the objective is within 1.2e-7 of the optimum, but ``max_j c_j / beta`` alternates
1.0055 <-> 1.020 (certified gap 8.8e-5) and the barrier needs 23 s to certify 1e-6. The best response
is linear and ignores each block's own curvature ``H_j = Yp^T D_j Yp / M``, but that is not the whole
cause. Measured and dropped: (a) each tilted block moved to the exact minimiser of its own objective
over the sector between its direction and the best response (``H_j`` by one pass): no cycle, but the
gap fell only 1.1e-4 -> 8.3e-5 in three rounds (the minimiser sits 6% of the way to the best
response); (b) each tilted block moved to its exact block minimiser over the whole cone (CVXPY with
all M constraints): 7.2e-4 -> 4.5e-4 -> 2.5e-4 -> 1.6e-4, then stalled. Jacobi-style block updates
are limited by the coupling between blocks; only the joint Newton step of the barrier resolves it.
:func:`paper_utils.dual_solver.solve_global` therefore accepts such points in its early rounds
(``solve_dual(accept_gap=...)``).

Letter key: M patches, d patch dimension C k k, P patterns, B = 2P blocks (the w's then the z's).
"""

from __future__ import annotations

import torch

from .cones import _project_cones
from .data import F64
from .lasso import _blocks, _lasso


def _violated_best_responses(data, ws, beta, theta, grad, bound, margin: float = 0.0):
    """The patterns to tilt at the current residual, shared by :func:`_tilt` and the working-set loop.

    For every pattern whose dual constraint is violated (``c_j > beta`` for its active block, or for
    the larger of its two blocks when it is inactive; ``theta`` (P,) the signed amplitudes, ``grad``
    (P, d) and ``bound`` (2P,) from the last certificate) the block's best response, the exact cone
    projection ``Pi_K(s_j)``. Only those with ``c_j > beta (1 + margin)`` are returned when there are
    any (:meth:`_RoundRule.margin`), else all with ``c_j > beta``. A block whose projection did not
    finish its cutting planes (:data:`.cones.CUT_ROUNDS`) keeps its direction this round: the rows its
    projection added stay in the working set, so the next round's projection goes on from them.
    Returns ``(pats, proj, c, skipped, unfinished)``: pattern indices (n,), projections (n, d), their
    norms (n,), how many patterns whose bound is above ``beta`` were left alone (each with
    ``c_j <= beta (1 + margin)``) and how many were left for an unfinished projection; or the stopping
    sentence when there is none to tilt.
    """
    P = data.P
    s = torch.cat([-grad, grad])
    use_z = (theta < 0) | ((theta == 0) & (bound[P:] > bound[:P]))
    ub = torch.where(use_z, bound[P:], bound[:P])                  # upper bounds on each pattern's c_j
    pats = (ub > beta).nonzero().squeeze(1)
    # ``bound`` is an upper bound on c_j: the exact projections are needed only above the margin
    # (at ``cpu`` scale 13 of about 700 after the first round), unless none of those is above it
    hi = pats[ub[pats] > beta * (1 + margin)] if margin > 0 else pats
    unfinished = 0
    for cand in ((hi, pats) if hi.numel() < pats.numel() else (pats,)):
        if cand.numel() == 0:
            continue
        blk = torch.where(use_z[cand], cand + P, cand)
        proj, done = _project_cones(data, ws, s[blk], blk)
        if not bool(done.any()):
            return "tilted rays stopped: no cone projection of a violated block finished its cutting planes"
        unfinished = int((~done).sum())
        c = torch.linalg.vector_norm(proj, dim=1)
        big = (c > beta * (1 + margin)) & done
        if bool(big.any()):
            skipped = (pats.numel() - int(big.sum()) - unfinished) if margin > 0 else 0
            return cand[big], proj[big], c[big], skipped, unfinished
    keep = (c > beta) & done if pats.numel() else torch.zeros(0, dtype=torch.bool, device=pats.device)
    if not bool(keep.any()):
        if unfinished:
            return "tilted rays stopped: the cone projections of the violated blocks did not finish their cutting planes"
        if bool((bound > beta).any()):
            return ("tilted rays stalled: the violated blocks are the opposite-sign blocks of active "
                    "patterns, which one direction per pattern cannot represent")
        return "tilted rays: no dual constraint is violated"
    return pats[keep], proj[keep], c[keep], 0, unfinished


def _left_alone(skipped: int, margin: float, unfinished: int) -> str:
    """The round log's note on the violated patterns a round did not tilt (empty when none)."""
    return ((f"; {skipped} at most 1 + {margin:.1e} left alone" if skipped else "")
            + (f"; {unfinished} left for their unfinished projections" if unfinished else ""))


class _RoundRule:
    """When the tilted-ray rounds stop (both loops): certified to ``tol``, out of time, or the
    certified gap has not halved in ``patience`` rounds; and which violated patterns a round tilts."""

    def __init__(self, gap: float, patience: int):
        self.best, self.since, self.patience = gap, 0, patience
        self.prev = gap
        self.misses = 0                     # rounds that left small violations alone and made no progress

    def margin(self, tol: float, obj: float, reg: float) -> float:
        """Relative violation ``c_j / beta - 1`` up to which a round leaves a pattern's direction alone.

        Near the optimum the certified gap is about ``(max_j c_j / beta - 1) reg / obj`` (the lower
        bound scales the residual by ``beta / max_j c_j``; ``lam^T A v = reg`` there), so violations
        below ``tol obj / (2 reg)`` cost less than half of ``tol``. After the first tilted round at
        ``cpu`` scale 822 active patterns sit above ``beta`` by 1e-9 to 1e-6 (the lasso's KKT tolerance)
        and one by 3.5e-3: tilting all of them recomputed 828 Gram rows, where 17 are above 1e-6
        (certified after tilting the 1 above the margin, 3.1e-5; with the ray phase stopping at
        ``P / 20`` the second round tilts 13 and leaves 696 alone). When none is above the margin, all
        violated patterns are tilted (:func:`_violated_best_responses`); each round that left some
        alone and did not lower the certified gap divides the margin by 100."""
        if reg <= 0 or obj <= 0:
            return 0.0
        return min(0.5 * tol * obj / reg, 1e-2) / 100.0 ** self.misses

    def stop(self, gap: float, tol: float, out_of_time, skipped: bool = False) -> str | None:
        if gap <= tol:
            return "tilted rays certified to tol"
        self.misses += int(skipped and gap >= self.prev)
        self.prev = gap
        if out_of_time():
            return "time limit reached during the tilted rays"
        if gap < 0.5 * self.best:
            self.best, self.since = gap, 0
        else:
            self.since += 1
            if self.since >= self.patience:
                return f"tilted rays stalled at certified gap {self.best:.2e}"
        return None


def _tilt(data, ws, beta, tol, Q, q, theta, dirs, grad, bound, max_rounds, state, assess, log,
          out_of_time, gap_now, patience: int = 3) -> str:
    """Step 2: tilted rays. Each pattern keeps one direction ``a_i`` in its cone; every pattern whose
    dual constraint is violated at the current residual (``c_j > beta`` for its active block, or for
    the larger of its two when it is inactive) gets the block's best response ``Pi_K(s_j) / c_j``
    (the exact cone projection the certificate computes), the Gram rows of the tilted features are
    recomputed in float64, and the lasso over the P tilted features is solved exactly again. Every
    point is feasible (directions in the cones). Stops when certified to ``tol``, when no constraint
    is violated, or when the gap has not halved in ``patience`` rounds. Updates ``Q``, ``q`` in place."""
    P = data.P
    exact_rows = data.fast == F64                 # are Q's rows float64-exact already?
    rule = _RoundRule(gap_now(), patience)
    for rnd in range(1, max_rounds + 1):
        margin = rule.margin(tol, state["obj"], beta * float(theta.abs().sum()))
        found = _violated_best_responses(data, ws, beta, theta, grad, bound, margin)
        if isinstance(found, str):
            return found
        tilt, proj, c, skipped, unfinished = found
        dirs = dirs.clone()
        dirs[tilt] = proj / c.unsqueeze(1)
        rows = tilt if exact_rows else torch.arange(P, device=dirs.device)
        exact_rows = True
        Qr, qr = data.direction_gram_rows(dirs, rows)
        Q[rows] = Qr
        Q[:, rows] = Qr.T
        q[rows] = qr
        theta = _lasso(Q, q, beta)
        log(f"tilt  round {rnd}: {tilt.numel()} directions tilted (max c_j / beta {float(c.max()) / beta:.6f}"
            f"{_left_alone(skipped, margin, unfinished)}), "
            f"{rows.numel()} Gram rows, {int((theta != 0).sum())} of {P} features active")
        gap = assess(_blocks(theta, dirs), "tilt")
        grad, bound = state["last"]
        stop = rule.stop(gap, tol, out_of_time, skipped > 0)
        if stop is not None:
            return stop
    return f"tilted rays: {max_rounds} rounds"
