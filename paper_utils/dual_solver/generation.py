r"""The full convex program by column generation over sign patterns: :func:`solve_global`.

Theorem 1 is about eq. (4) over *every* sign pattern ``D(u) = diag(1[Yp u >= 0])``; its optimum p*
equals the non-convex network's global optimum at any width m >= m*. A random sample of P patterns
gives ``d_P >= p*``, by an amount sampling never measures. Column generation does:

1. solve the sampled program exactly (:func:`paper_utils.dual_solver.solve_dual`, warm started from
   the previous round's point, which stays feasible when patterns are added);
2. price (:mod:`.pricing`): with ``lam = -r / M`` from its residual, search for unit u with
   ``c(u) = |lam^T (Yp u)_+| > beta (1 + tol)`` by best-response ascent started from the active
   directions of the solution, their antipodes and random directions; on small problems whose
   arrangement is enumerated (:mod:`.arrangement`), price every cell exactly as well;
3. add the ``add_per_round`` most violating new patterns (deduplicated by their sign pattern), repeat
   until none is found, ``max_rounds`` or ``time_limit``.

Soundness: ``objective`` is the value of a feasible point (an upper bound on p*). ``lower_bound`` is
the best weak-duality bound over the rounds, ``t lam^T x - (M/2) t^2 ||lam||^2`` with
``t max_u c(u) <= beta``, where ``max_u c(u)`` is replaced by a *proven* upper bound: the exact
maximum over enumerated cells when available, else :func:`.pricing.violation_bound` (sound, very
loose at image sizes). The search's best value is never used in a bound. ``certified`` is True only
when that bound proves the relative gap ``<= tol``; ``stop_reason`` says whether a proof or a search
ended the run. The initial random sample includes each generator's antipode ``-g`` (``antipodes``):
with both ``g`` and ``-g`` present the optimality of the sampled program gives
``|lam^T Yp g| <= 2 beta ||g||`` along those directions, which removes the ``||Yp^T lam|| / 2`` lower
bound on the largest violation (measured 24.6 beta at ``smoke`` scale without them).

Measured on MNIST sigma = 0.5, beta = 1e-5, ``smoke`` scale (before this module, with the same
pricing): four rounds adding 64 patterns each took the objective from 2.114e-2 (256 random patterns)
to 1.820e-2 with 512 patterns, better than 1,024 random ones (1.847e-2).

Letter key: M patches, d patch dimension C k k, P patterns (generators), S search starts.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from .arrangement import count_cells_bound, enumerate_cells, hyperplanes
from .data import F64, _as_tensor
from .pricing import best_response_search, exact_max_violation, full_lower_bound, violation_bound
from .result import DualSolution
from .solve import solve_dual

__all__ = ["GlobalSolution", "solve_global"]

#: loose sampled solves (``solve_global(loose_gap=...)``) while the last search found ``c(u)`` above
#: ``beta (1 + LOOSE_ABOVE)``
LOOSE_ABOVE = 0.1


@dataclass
class GlobalSolution(DualSolution):
    """Result of :func:`solve_global`: a :class:`DualSolution` of the last sampled program whose
    ``lower_bound`` and ``gap`` refer to the FULL program (every sign pattern).

    Extra attributes:
        certified: ``gap <= tol`` is proven (exact pricing or the rigorous bound).
        stop_reason: plain text: what ended the run, and whether a proof or a search decided it.
        sampled_lower_bound, sampled_gap: the certificate of the last sampled program (``d_P``).
        best_violation: largest ``c(u) / beta`` the last pricing found (search, or exact when enumerated).
        violation_bound: the proven upper bound on ``max_u c(u) / beta`` used for ``lower_bound``.
        exact: whether ``violation_bound`` came from exact enumeration of every cell.
        rounds: per round, dicts with ``round``, ``patterns``, ``objective``, ``sampled_gap``,
            ``best_violation``, ``violation_bound``, ``lower_bound``, ``added``, ``seconds`` (since the call),
            ``loose`` (the sampled solve was accepted above ``solve_tol``: ``solve_global(loose_gap=...)``).
    """

    certified: bool = False
    stop_reason: str = ""
    sampled_lower_bound: float = -math.inf
    sampled_gap: float = math.inf
    best_violation: float = math.nan
    violation_bound: float = math.inf
    exact: bool = False
    rounds: list = field(default_factory=list)


def _fingerprints(Y: torch.Tensor, G: torch.Tensor, keys: torch.Tensor) -> list[tuple[float, float]]:
    """Exact integer hashes of each pattern ``1[Yp g >= 0]``: ``keys`` (2, M) integers < 2^20 in float64,
    so sums over M < 2^33 rows are exact."""
    out = torch.zeros(2, G.shape[1], dtype=F64, device=Y.device)
    step = max(256, (1 << 22) // max(G.shape[1], 1))
    for s in range(0, Y.shape[0], step):
        out += keys[:, s:s + step] @ (Y[s:s + step] @ G >= 0).to(F64)
    return [(float(a), float(b)) for a, b in out.T.cpu().tolist()]


def _nonempty(Y: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """``(Y @ G > 0).any(0)`` (P,) on CPU, in row blocks of about 2^22 numbers (no (M, P) array)."""
    out = torch.zeros(G.shape[1], dtype=torch.bool, device=Y.device)
    step = max(256, (1 << 22) // max(G.shape[1], 1))
    for s in range(0, Y.shape[0], step):
        out |= (Y[s:s + step] @ G > 0).any(0)
    return out.cpu()


def _check_args(beta, tol, max_rounds, add_per_round):
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta <= 0:
        raise ValueError(f"beta must be a finite number > 0 (no certificate exists at beta = 0), got {beta!r}")
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol must be > 0, got {tol!r}")
    if int(max_rounds) < 0 or int(add_per_round) < 1:
        raise ValueError("max_rounds must be >= 0 and add_per_round >= 1")


def solve_global(Yp, x, beta: float, *, tol: float = 1e-6, G0=None, n_init: int = 64, antipodes: bool = True,
                 seed: int = 0, max_rounds: int = 20, add_per_round: int = 64, n_random: int = 256,
                 search_steps: int = 15, exact: str | bool = "auto", max_cells: int = 5000,
                 solve_tol: float | None = None, loose_gap: float | None = 1e-3, time_limit: float | None = None,
                 device=None, progress: bool = False) -> GlobalSolution:
    r"""Solve eq. (4) over every sign pattern (Theorem 1's full program) by column generation.

    .. math::
        p^* = \min_{w_D, z_D \in K_D} \frac{1}{2M} \Big\| \sum_{D} D\, Yp (w_D - z_D) - x \Big\|^2
              + \beta \sum_D (\|w_D\| + \|z_D\|), \quad D \in \{\mathrm{diag}(1[Yp u \ge 0]) : u \in R^d\}.

    Args:
        Yp: patch matrix (M, d); x: targets (M,); beta: > 0 (not averaged, paper App. B).
        tol: relative tolerance: certification target for the gap, and the pricing threshold
            ``c(u) > beta (1 + tol)`` for adding a pattern.
        G0: initial generators (d, P0); default ``n_init`` Gaussian ones drawn with ``seed``.
        antipodes: add ``-g`` for every initial generator (see the module docstring).
        seed: seeds the initial generators, the random search starts and the pattern hashes.
        max_rounds: most pricing rounds (each adds at most ``add_per_round`` patterns).
        n_random: random search starts per round (besides the active directions and their antipodes).
        search_steps: best-response steps per start.
        exact: enumerate every cell and price exactly (``"auto"``: when the arrangement has at most
            ``max_cells`` cells by the bound ``2 sum_{k<d} C(H-1, k)``; True: always; False: never).
        solve_tol: certified gap asked of each sampled solve (default ``tol / 10``).
        loose_gap: in round 0 and while the last search found violations above ``beta (1 +
            LOOSE_ABOVE)`` (10%), a sampled solve is good enough at a certified gap of ``loose_gap``
            (``solve_dual(accept_gap=...)``): the tilted rays still aim at ``solve_tol``, but their
            point is kept when certified within ``loose_gap``, and the barrier, when it runs, stops
            there. The point is feasible and certified; the violations of patterns already present
            are off by about ``gap obj / reg``, and the search only needs the patterns far above
            ``beta``. A round whose search finds no new violation after a loose solve is solved again
            to ``solve_tol`` before the run may stop; the last round (``max_rounds``) is never loose;
            a run that ends on ``time_limit`` reports its loose solve (``sampled_gap`` and ``loose``
            in its round record). Where the barrier cannot run (its dense matrices above
            ``solve_dual``'s ``dense_bytes``, P d above about 9,000) a round can end above
            ``loose_gap``: 2.3e-3 once at P = 2,912 in the run below. None: every solve to ``solve_tol``. Measured at M = 15,680
            (notebook 11's ``smoke`` data, 64 patterns added per round, 2 cores): 800 patterns after 65 s
            instead of 560 s, 2,976 after 860 s (objective 6.63e-3, 2.3x below 800 patterns;
            ``benchmarks/results/bench_generation_smoke_images20_2cores.txt``). With every round solved
            to ``solve_tol`` the tilted rays, cycling a little above it, hand each round to the
            barrier (104-131 s per round at P = 736-800).
        time_limit: seconds; no round is started that would end past it, estimating the next round's
            time by the last one's (rounds grow with the patterns), so the run ends within it unless
            a round takes much longer than the one before.
        device: where to compute (default: ``Yp``'s device).
        progress: print one line per round.

    Returns:
        :class:`GlobalSolution`; ``to_primal()`` gives the eq. (5) network.

    Raises:
        ValueError: on bad shapes, NaN/Inf, ``beta <= 0``, ``tol <= 0``, or ``exact=True`` on a
            problem too large to enumerate.
    """
    t0 = time.perf_counter()
    _check_args(beta, tol, max_rounds, add_per_round)
    if device is None:
        device = Yp.device if isinstance(Yp, torch.Tensor) else torch.device("cpu")
    device = torch.device(device)
    Y = _as_tensor(Yp, "Yp", device).to(F64)
    x = _as_tensor(x, "x", device).to(F64)
    if Y.ndim != 2 or x.shape != (Y.shape[0],):
        raise ValueError(f"Yp must be (M, d) and x (M,), got {tuple(Y.shape)} and {tuple(x.shape)}")
    M, d = Y.shape
    beta, solve_tol = float(beta), float(solve_tol if solve_tol is not None else tol / 10)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    if G0 is None:
        G = torch.randn(d, n_init, generator=gen, dtype=F64).to(device)
    else:
        G = _as_tensor(G0, "G0", device).to(F64)
        if G.ndim != 2 or G.shape[0] != d:
            raise ValueError(f"G0 must have shape (d={d}, P0), got {tuple(G.shape)}")
    if antipodes:
        G = torch.cat([G, -G], dim=1)
    keys = torch.randint(0, 1 << 20, (2, M), generator=gen, dtype=torch.int64).to(device=device, dtype=F64)
    # distinct, non-empty patterns only
    seen, keep = set(), []
    nonempty = _nonempty(Y, G)
    for i, fp in enumerate(_fingerprints(Y, G, keys)):
        if fp not in seen and bool(nonempty[i]):
            seen.add(fp)
            keep.append(i)
    G = G[:, keep].contiguous()
    if G.shape[1] == 0:
        raise ValueError("no generator gives a non-empty sign pattern")

    cells = cell_points = None
    if exact is not False:
        H = hyperplanes(Y.cpu().numpy())[0].shape[0]
        if exact is True or count_cells_bound(H, d) <= max_cells:
            Uc, pats, _ = enumerate_cells(Y.cpu().numpy(), max_cells=10**7 if exact is True else max_cells)
            cells, cell_points = torch.from_numpy(pats).to(device), torch.from_numpy(Uc).to(device)

    def log(msg):
        if progress:
            print(f"[solve_global {time.perf_counter() - t0:7.1f}s] {msg}", flush=True)

    rounds, best_lb, W0, Z0 = [], -math.inf, None, None
    stop, certified, sol, tightened = "", False, None, 0
    last_best, exact_next = math.inf, False          # the last search's largest c(u) / beta
    for rnd in range(int(max_rounds) + 1):
        loose = (loose_gap is not None and last_best > 1 + LOOSE_ABOVE and not exact_next
                 and rnd < int(max_rounds))
        exact_next = False
        sol = solve_dual(Y, x, G, beta, tol=solve_tol, W0=W0, Z0=Z0, device=device,
                         accept_gap=loose_gap if loose else None)
        # a loose solve that missed solve_tol: solved again to solve_tol before the run may stop
        resolve = loose and sol.gap > solve_tol
        r = sol.predict_patches(Y) - x
        lam = -r / M
        a, b = float(lam @ x), float(r @ r) / M
        # proven upper bound on max_u c(u), and the search
        if cells is not None:
            C, c_cells, _ = exact_max_violation(Y, lam, cells)
        else:
            C = violation_bound(Y, lam)
        best_lb = max(best_lb, full_lower_bound(a, b, beta, C))
        lb = min(best_lb, sol.objective)
        gap = (sol.objective - lb) / sol.objective if sol.objective > 0 else 0.0
        starts = [torch.cat([sol.W, sol.Z]).to(F64)]
        starts[0] = starts[0][torch.linalg.vector_norm(starts[0], dim=1) > 0]
        starts += [-starts[0], torch.randn(n_random, d, generator=gen, dtype=F64).to(device)]
        U, c = best_response_search(Y, lam, torch.cat(starts), steps=search_steps,
                                    dtype=F64 if M * (len(starts[0]) + n_random) < (1 << 27) else torch.float32)
        if cells is not None:                      # exact pricing: every cell's interior point
            U, c = torch.cat([U, cell_points]), torch.cat([c, c_cells])
        best = float(c.max()) if c.numel() else 0.0
        certified = gap <= tol
        rec = {"round": rnd, "patterns": G.shape[1], "objective": sol.objective, "sampled_gap": sol.gap,
               "best_violation": best / beta, "violation_bound": C / beta, "lower_bound": lb, "added": 0,
               "seconds": time.perf_counter() - t0, "loose": resolve}
        rounds.append(rec)
        log(f"round {rnd}: {G.shape[1]} patterns, objective {sol.objective:.10e} (sampled gap {sol.gap:.1e}"
            f"{', loose' if resolve else ''}), best c/beta {best / beta:.6f}, "
            f"proven bound c/beta <= {C / beta:.4g}, full gap {gap:.2e}")
        last_best = best / beta
        if certified:
            stop = (f"certified: the {'exact enumeration of every cell' if cells is not None else 'rigorous bound'}"
                    f" proves the full program's relative gap {gap:.2e} <= tol")
            break
        viol = c > beta * (1 + tol)
        new = []                                   # indices into cand of patterns not yet present
        if bool(viol.any()):
            order = torch.argsort(c[viol], descending=True)
            cand = U[viol][order]
            for i, fp in enumerate(_fingerprints(Y, cand.T.contiguous(), keys)):
                if fp not in seen:
                    seen.add(fp)
                    new.append(i)
                if len(new) == add_per_round:
                    break
        if not new and resolve:                    # nothing new to add: no stop on a loose solve
            W0, Z0, exact_next = sol.W.to(F64), sol.Z.to(F64), True
            rec["note"] = f"loose solve (sampled gap {sol.gap:.1e}): re-solved to solve_tol {solve_tol:.0e}"
            continue
        if not bool(viol.any()):
            stop = (f"the search found no pattern with c(u) > beta (1 + tol) (best {best / beta:.6f} beta); "
                    f"a search, not a proof: the proven gap is {gap:.2e}")
            break
        if not new:
            if tightened < 2 and rnd < int(max_rounds):
                # the violations are on patterns already present: the sampled solve is not accurate
                # enough for the certificate; solve it again more tightly (warm started)
                tightened, solve_tol = tightened + 1, solve_tol / 100
                W0, Z0 = sol.W.to(F64), sol.Z.to(F64)
                rec["note"] = f"re-solved with solve_tol {solve_tol:.0e}"
                continue
            stop = (f"every violating direction found (best {best / beta:.6f} beta) is a pattern already present "
                    f"(the sampled solve's tolerance); proven gap {gap:.2e}")
            break
        if rnd == int(max_rounds):
            stop = f"max_rounds reached with violations up to {best / beta:.4f} beta; proven gap {gap:.2e}"
            break
        last = rec["seconds"] - (rounds[-2]["seconds"] if len(rounds) > 1 else 0.0)
        if time_limit is not None and rec["seconds"] + last > time_limit:
            # rounds only grow: one as long as the last would end past the limit (measured before this
            # rule: a 1,200 s budget ended at 1,450 s, its last round taking 283 s)
            stop = (f"time_limit: another round (the last took {last:.0f} s) would end past {time_limit:g} s; "
                    f"violations up to {best / beta:.4f} beta; proven gap {gap:.2e}")
            break
        rec["added"] = len(new)
        G = torch.cat([G, cand[new].T], dim=1).contiguous()
        pad = torch.zeros(len(new), d, dtype=F64, device=device)
        W0, Z0 = torch.cat([sol.W.to(F64), pad]), torch.cat([sol.Z.to(F64), pad])

    fields = sol.as_dict()
    fields.update(lower_bound=lb, gap=gap, converged=certified, status=stop, seconds=time.perf_counter() - t0,
                  W=sol.W, Z=sol.Z, G=sol.G)
    return GlobalSolution(**fields, certified=certified, stop_reason=stop, sampled_lower_bound=sol.lower_bound,
                          sampled_gap=sol.gap, best_violation=best / beta, violation_bound=C / beta,
                          exact=cells is not None, rounds=rounds)
