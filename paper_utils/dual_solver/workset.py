r"""Steps 1 and 2 of :func:`paper_utils.dual_solver.solve_dual` over a working set of patterns.

The full-Gram path (:mod:`.lasso`, :mod:`.tilt`) forms the P x P Gram matrix of the ray features
(``2 M P^2`` flops, float32 at scale), then recomputes it in float64 and again for the tilted rows:
at ``cpu`` scale (M = 470,400, P = 2,000) 2,000 + 2,000 + 539 rows of ``2 M P`` flops each, while
1,536 patterns are active at the optimum (4,022 of 8,000 at paper scale). Here the lasso is solved
over a working set S of patterns whose Gram rows are computed against S only, and the rest are priced
by the fused operator pass (``2 M P d`` flops per matmul, :meth:`_Data.loss_grad`: the lasso
gradient of feature i is ``a_i . grad_i``):

1. *Ray phase.* Start from ``init`` evenly spaced patterns (a random sample: the generators are
   random); solve the ray lasso over S (from zero, by forward growth of its support,
   :func:`._lasso_grow`), price every pattern by ``|a_i . grad_i|`` (exact, float64) and add those
   above ``beta (1 + slack)``, most violated first (at most half of ``max(init, |S|)`` per round),
   until at most ``P / 20`` are left (step 2 prices them exactly). Before a round's rows are
   computed, members at zero amplitude whose constraint is slack by more than 5% leave S (they rejoin
   when priced violated again). At ``cpu`` scale stopping at ``P / 20`` (56 left) instead of
   ``P / 100`` (2 left) saves one round (about 5 s); the tilts then join 59 patterns in round 1 and
   tilt 13 in round 2 (round 2 leaves violations below the margin of
   :meth:`.tilt._RoundRule.margin` alone). ``P / 5`` (358 left) made the tilts need a third round.
   Rows in the fast dtype (float32 at scale; ``slack`` = 2% covers the float32 Gram's misstatement of
   the constraints, measured up to 1.1% at ``cpu`` scale), computed against S only; the symmetric
   block as its upper triangle (:meth:`_Data.set_gram_rows`), so that growing S to its final size
   costs about ``M |S|^2`` flops. Each lasso after the first uses the exact gradient of the last
   operator pass (the model of :func:`_refine_lasso`).
2. *Tilted rays over S* (as :mod:`.tilt`). Every round computes the certificate over ALL P patterns
   (as every other step does); the patterns whose dual constraint is violated by more than the
   margin of :meth:`.tilt._RoundRule.margin` (violations that cost under half of ``tol``) get their
   best-response direction; those outside S join it (most violated first), and the tilted rows are recomputed
   against S in the fast dtype. Patterns with zero amplitude and no violation leave S before the rows
   are computed (they rejoin when priced violated). The lasso over S is then made exact by
   :func:`_refine_lasso`: an operator pass at the tilted point gives the exact gradient, and the lasso
   whose quadratic is the float32 ``Q`` and whose gradient there is exact is solved; one step took the
   exact KKT violation from about 20 beta to 1e-5 beta at both scales, after which the lasso's own
   stopping rule is the limit; steps continue until the violation is below the margin.

The certificate, and therefore the result, is the same as on the full-Gram path: every point is
feasible for the full cones, and its lower bound comes from the residual's dual constraints over all
P patterns. Only the master problem is smaller and in float32.

Measured on 2 quiet cores (sigma 0.5, beta 1e-5, one process, nothing else running;
``benchmarks/results/bench_solver_paths_cpu_2cores_quiet.txt`` and
``bench_solver_paths_paper_P8000_2cores.txt``):

- ``cpu`` scale (P = 2,000, 1,536 active): certified at 29.6-34.3 s in four runs (median 31 s;
  this host's memory-bound passes switch between a fast and a 1.6x slower mode, the dense matmul
  rate does not) against 74.7 s on the full path, objectives 3e-9 apart relatively; 3,416 float32
  Gram rows against S (3.0 TFLOP in blocks of 256 rows; 3.6 TFLOP in blocks of 1,024) instead of
  2,000 float32 + 2,371 float64 rows against all P; nine operator passes (the first tilted round
  refines from the float32 model's optimum, :func:`_refine_lasso`). The variants behind these choices
  and their times are in ``benchmarks/README.md``.
- paper scale (P = 8,000, 4,025 active): certified gap 7.4e-8 at 196.6 s and 208.8 s in two runs
  (wall 199.1 s, 211.3 s), 9,926 float32 rows at 0.8-0.9 of the dense float32 rate (114-122 s);
  212.5 s in blocks of 1,024 rows; every lasso from zero by growth instead of the capped warm
  start: 270.7 s.
- Measured and dropped: the ray phase's Gram rows on a random quarter of the rows (the lasso made
  exact by refinement on the full operator pass: the contraction per step is about 0.35 there, so
  the ray phase took 8 rounds instead of 6 plus 4 refinement passes, 22 s instead of 21 s; solving
  the ray phase wholly on the quarter left the full problem's KKT violation at 88 beta); the Gram
  product in bfloat16 (4.2x the float32 matmul rate on this CPU, but its rounded (k, n) products made
  Q indefinite and the lasso diverge); the tilted directions' float32 features formed by clamping,
  ``(Yp a)_+``, instead of applying the pattern (one product per chunk fewer: the 1,536 rows of the
  first tilted round at ``cpu`` scale in 7.75-8.0 s instead of 8.2-8.35 s). A tilted direction meets
  its cone only to the projection's tolerance, relative to ``|s_j| / c_j``; at paper scale the second
  round's refinement then stopped at a KKT violation of 1.5e-5 beta instead of 7.8e-7 (certified gap
  4.2e-7 instead of 7.4e-8) and that round took 30 s instead of 10 s.
- On a loaded machine (load 4-8, ``bench_solver_paths_cpu_2cores_run*.txt``, older code) the chunked
  passes ran at 5-15% of the dense rate and the working set lost to the full path on wall time: time
  it on quiet cores.

Letter key: M patches, d patch dimension C k k, P patterns, B = 2P blocks (the w's then the z's);
n = |S| patterns in the working set.
"""

from __future__ import annotations

import torch

from .data import F64, GRAM_BLOCK
from .lasso import _blocks, _lasso
from .tilt import _RoundRule, _left_alone, _violated_best_responses


class _PatternSet:
    """The working set S (n,) of pattern indices, the Gram matrix ``Q[S, S]`` (n, n) and ``q[S]`` of
    the features of the directions ``dirs`` (P, d), and the amplitudes ``theta[S]``."""

    def __init__(self, data, dirs: torch.Tensor):
        self.data, self.P, dev = data, data.P, data.device
        self.dirs = dirs
        self.S = torch.zeros(0, dtype=torch.long, device=dev)
        self.Q = torch.zeros(0, 0, dtype=F64, device=dev)
        self.q = torch.zeros(0, dtype=F64, device=dev)
        self.theta = torch.zeros(0, dtype=F64, device=dev)
        self.rows = 0                                     # Gram rows computed (k per call, summed)
        self.flops = 0.0                                  # their matmul flops
        self.last = None                                  # loss_grad at the current point, when fresh

    def member(self) -> torch.Tensor:
        m = torch.zeros(self.P, dtype=torch.bool, device=self.S.device)
        m[self.S] = True
        return m

    def full_theta(self) -> torch.Tensor:
        th = torch.zeros(self.P, dtype=F64, device=self.S.device)
        th[self.S] = self.theta
        return th

    def keep(self, mask: torch.Tensor) -> None:
        """Keep the members where ``mask`` (n,) is True."""
        idx = mask.nonzero().squeeze(1)
        self.S, self.q, self.theta = self.S[idx], self.q[idx], self.theta[idx]
        self.Q = self.Q[idx][:, idx]

    def update(self, pats: torch.Tensor, dtype: torch.dtype, rays: bool = False) -> None:
        """(Re)compute the rows of the patterns ``pats`` (k,) (members or not) against S plus ``pats``
        with the current directions; new patterns join S with amplitude 0. ``rays``: the directions are
        the unit generators, whose features are formed as ``(Yp a_j)_+`` (:meth:`_Data.set_gram_rows`'
        ``clamp``; for tilted directions that was measured and dropped, module docstring)."""
        if pats.numel() == 0:
            return
        n_old = self.S.numel()
        inS = self.member()
        new = pats[~inS[pats]]
        S = torch.cat([self.S, new])
        k, n = pats.numel(), S.numel()
        pos = torch.full((self.P,), -1, dtype=torch.long, device=S.device)
        pos[S] = torch.arange(n, device=S.device)
        is_row = torch.zeros(self.P, dtype=torch.bool, device=S.device)
        is_row[pats] = True
        cols = torch.cat([pats, S[~is_row[S]]])                     # rows first
        Qr, qr = self.data.set_gram_rows(self.dirs[cols], cols, k, dtype, GRAM_BLOCK, rays)  # positional: benchmarks wrap it
        self.rows += k
        tri = sum((min(b0 + GRAM_BLOCK, k) - b0) * (n - b0) for b0 in range(0, k, GRAM_BLOCK))
        self.flops += 2.0 * self.data.M * (tri + (1 if rays else 2) * n * self.data.d)
        Q = torch.zeros(n, n, dtype=F64, device=S.device)
        Q[:n_old, :n_old] = self.Q
        pr, pc = pos[pats], pos[cols]
        Q[pc.unsqueeze(1), pr.unsqueeze(0)] = Qr.T
        Q[pr.unsqueeze(1), pc.unsqueeze(0)] = Qr
        q = torch.zeros(n, dtype=F64, device=S.device)
        q[:n_old] = self.q
        q[pr] = qr
        self.S, self.Q, self.q = S, Q, q
        self.theta = torch.cat([self.theta, torch.zeros(new.numel(), dtype=F64, device=S.device)])

    def solve(self, beta: float, warm: bool = True, g_exact: torch.Tensor | None = None) -> None:
        """The lasso over S with the Gram rows ``Q``; with ``g_exact`` (n,), the exact loss gradient at
        the current amplitudes (from a float64 operator pass), over the model whose gradient there is
        ``g_exact`` (linear term ``Q theta - g_exact`` instead of ``q``): one step of iterative
        refinement, so that rows in float32 still lead to the float64 optimum (:func:`_refine_lasso`).

        ``warm``: start at the current amplitudes (at most ``warm_steps`` active-set steps of
        :func:`._lasso`, then from zero by growth)."""
        q = self.q if g_exact is None else self.Q @ self.theta - g_exact
        self.theta = _lasso(self.Q, q, beta, theta0=self.theta if warm else None)

    def point(self) -> torch.Tensor:
        """``v_i = theta_i a_i`` (P, d) of the current amplitudes and directions."""
        return self.full_theta().unsqueeze(1) * self.dirs

    def exact_gradient(self, grad: torch.Tensor) -> torch.Tensor:
        """``a_i . grad_i`` (n,) over S: the loss gradient of the lasso over S, from the operator pass's
        ``grad`` (P, d) (float64, exact)."""
        return (self.dirs[self.S] * grad[self.S]).sum(1)

    def exact_kkt(self, fresh, beta: float) -> tuple[torch.Tensor, float]:
        """The exact gradient ``a_i . grad_i`` (n,) of the loss over S from the operator pass ``fresh``
        (:meth:`_Data.loss_grad` at :meth:`point`), and the largest violation of the lasso's KKT
        conditions over S relative to ``beta``: ``|g_i + beta sign theta_i|`` on the support,
        ``|g_i| - beta`` off it."""
        g = self.exact_gradient(fresh[2])
        act = self.theta != 0
        err = torch.where(act, (g + beta * torch.sign(self.theta)).abs(), (g.abs() - beta).clamp_min(0))
        return g, (float(err.max()) / max(beta, 1e-300) if err.numel() else 0.0)


def _ray_workset(data, beta: float, init: int, log, out_of_time, slack: float = 0.02,
                 max_rounds: int = 100, few: int | None = None, grow_frac: float = 0.5,
                 prune: float = 0.05) -> _PatternSet:
    """Step 1 over a working set: the ray lasso over S, S grown by pricing every ray until at most
    ``few`` (default ``P // 20``) ray features outside S correlate with the residual above
    ``beta (1 + slack)`` (module docstring; the tilts price those exactly and add them). Returns the
    pattern set (its ``dirs`` are the unit generators; ``last`` the operator pass at its point)."""
    P = data.P
    if few is None:
        few = P // 20
    fast = data.fast
    if fast == F64:
        slack = 1e-9
    ps = _PatternSet(data, data.Gh.T.contiguous().clone())
    n0 = min(P, max(1, init))
    # evenly spaced patterns (the generators are random, so this is a random sample): the features that
    # correlate most with x are near-duplicates, and starting from them was measured to need more rounds
    start = torch.linspace(0, P - 1, n0, device=data.device).round().long().unique()
    ps.update(start, fast, rays=True)
    ps.solve(beta, warm=False)
    for rnd in range(1, max_rounds + 1):
        ps.last = data.loss_grad(ps.point())
        grad = ps.last[2]
        corr = (ps.dirs * grad).sum(1).abs()                      # |f_i^T r| / M for every pattern
        corr_all = corr.clone()
        corr[ps.S] = 0.0
        viol = (corr > beta * (1 + slack)).nonzero().squeeze(1)
        log(f"ray   working set round {rnd}: {ps.S.numel()} patterns, {int((ps.theta != 0).sum())} active, "
            f"{viol.numel()} priced violated (max |f_i^T r| / (M beta) {float(corr.max()) / max(beta, 1e-300):.4f})")
        if viol.numel() <= few or out_of_time():               # the tilts price the last few exactly
            break
        ps.last = None
        # members at zero whose constraint is slack by more than ``prune`` leave S before the new
        # rows are computed (they rejoin when priced violated again): rows cost |S| each
        drop = (ps.theta == 0) & (corr_all[ps.S] < beta * (1 - prune))
        ps.keep(~drop)
        grow = max(1, int(grow_frac * max(init, ps.S.numel())))
        add = viol[corr[viol].argsort(descending=True)[:grow]]
        ps.update(add, fast, rays=True)
        # rows in float32: solve the model with the exact gradient at the current point (iterative
        # refinement, :func:`_refine_lasso`); the new members' gradient is their pricing
        # (solved from zero by growth, :func:`._lasso_grow`: warm starts took 2-5x longer at paper scale)
        ps.solve(beta, warm=False, g_exact=None if fast == F64 else ps.exact_gradient(grad))
    return ps


def _refine_lasso(data, ps: _PatternSet, beta: float, eps: float = 1e-4, max_steps: int = 10,
                  model_first: bool = False):
    """Iterative refinement of the lasso over S when its Gram rows are in float32.

    The rows ``Q`` are then exact to about 1e-7 relatively, which misstates the lasso gradient by up
    to about 1% of ``beta`` at ``cpu`` scale (small differences of sums over M rows). The float64
    operator pass (:meth:`_Data.loss_grad`, ``4 M P d`` flops: ~1/200 of the Gram rows' cost at
    ``cpu`` scale) gives the exact gradient at the current amplitudes; each step solves the lasso whose
    quadratic is ``Q`` and whose gradient at the current point is the exact one. A fixed point meets
    the exact KKT conditions; the error contracts by about ``||Q^-1 (Q - Q_exact)||`` per step.
    Returns the operator pass at the final point (for the certificate) and the largest KKT violation
    relative to ``beta`` before each step and at the end (steps taken: its length minus one).

    ``model_first``: solve the float32 model (``Q``, ``q``) before the first operator pass, so that
    the first exact gradient is taken near the optimum rather than at the old amplitudes; the tilted
    rounds use it when they recompute more than half of S. Measured: at ``cpu`` scale the first tilted
    round then needs two operator passes instead of three (KKT violation 1.6e-2 -> 6.4e-6 beta in one
    step, against 22 -> 7.8e-5 -> 3.7e-8 from the old amplitudes); at paper scale three either way
    (1.8e-2 -> 2.0e-5 -> 2.5e-8, the margin being 1.8e-5). A round that tilts a few directions does
    better from the old amplitudes (paper scale, 7 of 4,026: 8.6e-2 -> 7.8e-7 in one step, against
    1.8e-2 -> 2.7e-5 -> 1.0e-7 from the model's optimum).
    """
    if model_first:
        ps.solve(beta)
    fresh = data.loss_grad(ps.point())
    errs = []
    for _ in range(max_steps):
        g, err = ps.exact_kkt(fresh, beta)
        errs.append(err)
        # stop at eps, or once a step no longer halves the violation: the lasso's own stopping rule
        # (1e-10 of its largest linear coefficient) is then the limit (measured: one step takes the
        # violation from 22 beta to 1.6e-5 beta, after which it stays)
        if err <= eps or (len(errs) > 1 and err > 0.5 * errs[-2]):
            break
        ps.solve(beta, g_exact=g)
        fresh = data.loss_grad(ps.point())
    else:
        errs.append(ps.exact_kkt(fresh, beta)[1])
    return fresh, errs


def _tilt_workset(data, ws, beta, tol, ps: _PatternSet, grad, bound, max_rounds, state, assess, log,
                  out_of_time, gap_now, patience: int = 3) -> str:
    """Step 2 over the working set (module docstring); the certificate of every point covers all P
    patterns. Stops as :func:`.tilt._tilt` does."""
    P = data.P
    fast = data.fast
    rule = _RoundRule(gap_now(), patience)
    for rnd in range(1, max_rounds + 1):
        margin = rule.margin(tol, state["obj"], beta * float(ps.theta.abs().sum()))
        found = _violated_best_responses(data, ws, beta, ps.full_theta(), grad, bound, margin)
        if isinstance(found, str):
            return found
        tilt, proj, c, skipped, unfinished = found
        inS = ps.member()
        outside = (~inS[tilt]).nonzero().squeeze(1)
        cap = max(256, ps.S.numel())
        if outside.numel() > cap:                                  # most violated first
            drop = outside[c[outside].argsort(descending=True)[cap:]]
            sel = torch.ones(tilt.numel(), dtype=torch.bool, device=tilt.device)
            sel[drop] = False
            tilt, proj, c = tilt[sel], proj[sel], c[sel]
        ps.dirs = ps.dirs.clone()
        ps.dirs[tilt] = proj / c.unsqueeze(1)
        # members with zero amplitude and no violation leave S before the rows are computed
        is_tilt = torch.zeros(P, dtype=torch.bool, device=tilt.device)
        is_tilt[tilt] = True
        ps.keep((ps.theta != 0) | is_tilt[ps.S])
        rows = tilt
        n_new = int((~ps.member()[tilt]).sum())
        ps.update(rows, fast)
        if fast == F64:
            ps.solve(beta)
            fresh, how = None, ""
        else:
            # amplitudes exact to the margin: a KKT violation delta (relative to beta) moves the c_j of
            # active patterns by up to delta, as a violation left alone does (a second step at 1e-4
            # made tol = 1e-8 stall at a gap of 2e-7: a round that tilts one direction took none)
            fresh, errs = _refine_lasso(data, ps, beta, eps=min(1e-4, margin) if margin > 0 else 1e-4,
                                        model_first=2 * rows.numel() > ps.S.numel())
            how = f", {len(errs) - 1} refinement steps (exact KKT violation / beta: " + \
                " -> ".join(f"{e:.1e}" for e in errs) + ")"
        log(f"tilt  round {rnd}: {tilt.numel()} directions tilted (max c_j / beta {float(c.max()) / beta:.6f}"
            f"{_left_alone(skipped, margin, unfinished)}), "
            f"{n_new} patterns joined, {rows.numel()} Gram rows ({str(fast).replace('torch.', '')}) against "
            f"{ps.S.numel()} patterns, {int((ps.theta != 0).sum())} of {P} features active{how}")
        gap = assess(_blocks(ps.full_theta(), ps.dirs), "tilt", fresh)
        grad, bound = state["last"]
        stop = rule.stop(gap, tol, out_of_time, skipped > 0)
        if stop is not None:
            return stop
    return f"tilted rays: {max_rounds} rounds"
