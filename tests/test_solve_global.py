"""The full program (every sign pattern): cell enumeration, proven bounds, and solve_global against
CVXPY on every cell of small arrangements (random data in general position and MNIST pixels)."""

import math
import warnings

import numpy as np
import pytest
import torch

from paper_utils.dual_solver import solve_global as solve_global_from_dual
from paper_utils.dual_solver import GlobalSolution, solve_dual, solve_global
from paper_utils.dual_solver.arrangement import count_cells_bound, enumerate_cells, hyperplanes
from paper_utils.dual_solver.pricing import (best_response_search, exact_max_violation, full_lower_bound,
                                             violation_bound, violation_values)

cp = pytest.importorskip("cvxpy")


def _gaussian(M, d, seed):
    rng = np.random.default_rng(seed)
    Y = rng.standard_normal((M, d))
    x = np.maximum(Y @ rng.standard_normal(d), 0) - 0.5 * np.maximum(Y @ rng.standard_normal(d), 0)
    return Y, x + 0.1 * rng.standard_normal(M)


def _mnist_windows(M, seed):
    """2 x 2 windows (d = 4) of a real MNIST digit around its strokes (zero rows, repeated rows: not in
    general position), target: the pixel below-right of each window."""
    from paper_utils.data.mnist import load_mnist

    try:
        img = load_mnist().train_images[seed].astype(np.float64) / 255.0
    except (FileNotFoundError, ValueError) as exc:
        pytest.skip(f"MNIST not available: {exc}")
    rows, target = [], []
    for i in range(6, 20):
        for j in range(6, 20):
            rows.append([img[i, j], img[i, j + 1], img[i + 1, j], img[i + 1, j + 1]])
            target.append(img[i + 2, j + 2])
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(rows), M, replace=False)
    return np.array(rows)[pick], np.array(target)[pick]


def _full_cvxpy(Y, x, beta):
    """Eq. (4) over the pattern of every cell of the arrangement, solved by Clarabel."""
    _, pats, _ = enumerate_cells(Y)
    D = pats.T.astype(float)
    M, d = Y.shape
    P = D.shape[1]
    W, Z = cp.Variable((P, d)), cp.Variable((P, d))
    pred, cons = 0, []
    for i in range(P):
        pred = pred + (D[:, i:i + 1] * Y) @ (W[i] - Z[i])
        S = (2 * D[:, i:i + 1] - 1) * Y
        cons += [S @ W[i] >= 0, S @ Z[i] >= 0]
    obj = cp.sum_squares(pred - x) / (2 * M) + beta * (cp.sum(cp.norm(W, 2, axis=1)) + cp.sum(cp.norm(Z, 2, axis=1)))
    prob = cp.Problem(cp.Minimize(obj), cons)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        prob.solve(solver="CLARABEL", tol_gap_abs=1e-12, tol_gap_rel=1e-11, tol_feas=1e-11)
    return prob.value


# ---------------------------------------------------------------------------------------------
# enumeration of the arrangement
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("M,d", [(9, 2), (12, 3), (10, 4), (8, 5)])
def test_vertex_and_lp_enumerations_agree_and_count(M, d):
    Y, _ = _gaussian(M, d, seed=M + d)
    Uv, Pv, used = enumerate_cells(Y, method="vertex")
    Ul, Pl, _ = enumerate_cells(Y, method="lp")
    assert used == "vertex"
    assert len(Pv) == count_cells_bound(M, d)                  # general position: the bound is attained
    assert {p.tobytes() for p in Pv} == {p.tobytes() for p in Pl}
    assert len({p.tobytes() for p in Pv}) == len(Pv)           # each cell once


@pytest.mark.parametrize("M,seed", [(14, 0), (18, 3)])
def test_enumeration_is_complete_on_degenerate_image_patches(M, seed):
    Y, _ = _mnist_windows(M, seed)
    U, pats, used = enumerate_cells(Y)
    found = {p.tobytes() for p in pats}
    H = hyperplanes(Y)[0].shape[0]
    assert len(found) == len(pats) <= count_cells_bound(H, Y.shape[1])
    # every pattern that 20,000 random directions realise (a.s. interior points) is among the cells
    R = np.random.default_rng(seed).standard_normal((20000, Y.shape[1]))
    assert {p.tobytes() for p in (R @ Y.T >= 0)} <= found


def test_enumeration_rejects_large_arrangements():
    Y, _ = _gaussian(60, 6, seed=0)
    with pytest.raises(ValueError, match="max_cells"):
        enumerate_cells(Y, max_cells=1000)
    with pytest.raises(ValueError):
        enumerate_cells(Y, method="nope")


# ---------------------------------------------------------------------------------------------
# pricing: exact maximum, rigorous bound, search
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("M,d,seed", [(12, 3, 0), (10, 4, 1), (40, 2, 2)])
def test_exact_max_violation_bounds_sampled_values_and_rigorous_bound_bounds_it(M, d, seed):
    Y, _ = _gaussian(M, d, seed)
    Yt = torch.from_numpy(Y)
    _, pats, _ = enumerate_cells(Y)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(5):
        lam = torch.randn(M, generator=gen, dtype=torch.float64)
        C, c, _ = exact_max_violation(Yt, lam, torch.from_numpy(pats))
        R = torch.randn(50000, d, generator=gen, dtype=torch.float64)
        R /= torch.linalg.vector_norm(R, dim=1, keepdim=True)
        sampled = float(violation_values(Yt, lam, R).abs().max())
        assert sampled <= C                                    # exact maximum over the sphere
        assert sampled >= 0.97 * C                             # dense sampling gets close to it
        S0 = torch.randn(32, d, generator=gen, dtype=torch.float64)
        U, cs = best_response_search(Yt, lam, S0)
        c0 = violation_values(Yt, lam, S0 / torch.linalg.vector_norm(S0, dim=1, keepdim=True))
        assert float(cs.max()) <= C                            # a search value is a value of c(u)
        assert bool((cs[:32] >= c0 - 1e-12).all() and (cs[32:] >= -c0 - 1e-12).all())  # ascent from each start
        assert float(cs.max()) >= 0.5 * C
        assert torch.allclose(violation_values(Yt, lam, U).abs(), cs)
        assert violation_bound(Yt, lam) >= C                   # the rigorous bound is an upper bound


def test_full_lower_bound_is_weak_duality():
    # with C = the exact max, t = beta / C is feasible: the bound is the dual objective at t lam
    a, b, beta = 2.0, 4.0, 1.0
    assert full_lower_bound(a, b, beta, C=0.1) == pytest.approx(0.5)        # t = a / b = 0.5
    assert full_lower_bound(a, b, beta, C=10.0) == pytest.approx(0.2 - 0.02)  # t = 0.1
    assert full_lower_bound(-1.0, b, beta, C=1.0) == 0.0


# ---------------------------------------------------------------------------------------------
# solve_global against CVXPY on every cell
# ---------------------------------------------------------------------------------------------
GAUSS = [(12, 3, 1e-2, 0), (10, 4, 1e-2, 1), (20, 2, 1e-3, 2), (16, 3, 3e-3, 3)]


@pytest.mark.parametrize("M,d,beta,seed", GAUSS, ids=lambda v: str(v))
def test_solve_global_matches_full_program_gaussian(M, d, beta, seed):
    Y, x = _gaussian(M, d, seed)
    ref = _full_cvxpy(Y, x, beta)
    res = solve_global(Y, x, beta, n_init=3, seed=seed, add_per_round=8)
    assert isinstance(res, GlobalSolution) and res.exact
    assert res.objective == pytest.approx(ref, rel=1e-6)
    assert res.objective >= ref * (1 - 1e-9)                   # a feasible point of the full program
    for rnd in res.rounds:                                     # every reported bound is sound
        assert rnd["lower_bound"] <= ref * (1 + 1e-9)
        assert rnd["objective"] >= ref * (1 - 1e-9)
    assert res.certified and "certified" in res.stop_reason
    assert (res.objective - ref) / res.objective <= res.gap + 1e-9 <= 1e-6 + 1e-9
    assert len(res.rounds) >= 2                                # three random patterns were not enough
    assert res.rounds[0]["best_violation"] > 1.0


@pytest.mark.parametrize("M,seed,beta", [(14, 0, 1e-3), (13, 5, 1e-2)])
def test_solve_global_matches_full_program_mnist_windows(M, seed, beta):
    Y, x = _mnist_windows(M, seed)
    ref = _full_cvxpy(Y, x, beta)
    res = solve_global(Y, x, beta, n_init=2, seed=seed)
    assert res.objective == pytest.approx(ref, rel=1e-6)
    assert all(r["lower_bound"] <= ref * (1 + 1e-9) for r in res.rounds)
    assert res.certified == (res.gap <= 1e-6)
    assert res.certified


def test_without_enumeration_the_bound_is_sound_and_the_stop_says_search():
    M, d, beta = 14, 3, 1e-2
    Y, x = _gaussian(M, d, 7)
    ref = _full_cvxpy(Y, x, beta)
    res = solve_global(Y, x, beta, n_init=3, exact=False, seed=1)
    assert not res.exact
    assert res.objective == pytest.approx(ref, rel=1e-5)       # the search finds the missing patterns here
    assert all(r["lower_bound"] <= ref * (1 + 1e-9) for r in res.rounds)
    assert res.violation_bound >= 1.0                          # rigorous, loose
    if not res.certified:
        assert "search" in res.stop_reason or "max_rounds" in res.stop_reason
    else:
        assert (res.objective - ref) / res.objective <= 1e-6 + 1e-9


def test_time_limit_starts_no_round_that_would_end_past_it():
    """A limit shorter than one round: the first round's result comes back and the stop says why
    (no further round is started), with the bound still sound."""
    M, d, beta = 14, 3, 1e-2
    Y, x = _gaussian(M, d, 7)
    ref = _full_cvxpy(Y, x, beta)
    res = solve_global(Y, x, beta, n_init=3, exact=False, seed=1, time_limit=1e-9)
    assert len(res.rounds) == 1 and res.rounds[0]["added"] == 0
    assert res.stop_reason.startswith("time_limit") or "search" in res.stop_reason
    assert res.lower_bound <= ref * (1 + 1e-9)


def test_sampled_optimum_is_above_full_and_solution_api():
    M, d, beta = 12, 3, 1e-2
    Y, x = _gaussian(M, d, 0)
    G = np.random.default_rng(0).standard_normal((d, 4))
    sampled = solve_dual(Y, x, G, beta, tol=1e-8)
    res = solve_global(Y, x, beta, G0=G, antipodes=False, max_rounds=0)
    assert res.rounds[0]["objective"] == pytest.approx(sampled.objective, rel=1e-6)
    assert res.lower_bound <= sampled.objective and not res.certified
    assert "max_rounds" in res.stop_reason
    U, v = res.to_primal()
    pred = torch.relu(torch.from_numpy(Y) @ U.T.to(torch.float64)) @ v.to(torch.float64)
    assert torch.allclose(pred, res.predict_patches(torch.from_numpy(Y)), atol=1e-8)
    assert solve_global_from_dual is solve_global


def test_loose_rounds_reach_the_same_optimum_and_are_recorded():
    """Loose sampled solves (``loose_gap``, the default) in early rounds: the same full optimum as
    solving every round to ``solve_tol``; a round is marked ``loose`` exactly when its sampled gap is
    above ``solve_tol``, and the run never stops on a loose round's search."""
    M, d, beta = 16, 3, 3e-3
    Y, x = _gaussian(M, d, 3)
    ref = _full_cvxpy(Y, x, beta)
    strict = solve_global(Y, x, beta, n_init=3, seed=3, add_per_round=8, loose_gap=None)
    loose = solve_global(Y, x, beta, n_init=3, seed=3, add_per_round=8, loose_gap=1.0)
    for res in (strict, loose):
        assert res.objective == pytest.approx(ref, rel=1e-6) and res.certified
        assert all(r["lower_bound"] <= ref * (1 + 1e-9) for r in res.rounds)
        for r in res.rounds:
            assert r["loose"] == (r["sampled_gap"] > 1e-7)     # solve_tol = tol / 10
    assert not any(r["loose"] for r in strict.rounds)
    assert not loose.rounds[-1]["loose"]


def test_bad_input():
    Y, x = _gaussian(10, 3, 0)
    with pytest.raises(ValueError, match="beta"):
        solve_global(Y, x, 0.0)
    with pytest.raises(ValueError, match="tol"):
        solve_global(Y, x, 1e-2, tol=0)
    with pytest.raises(ValueError):
        solve_global(Y, x[:-1], 1e-2)
    with pytest.raises(ValueError, match="G0"):
        solve_global(Y, x, 1e-2, G0=np.ones((2, 3)))
    assert math.isfinite(solve_global(Y, x, 1e-2, max_rounds=0).objective)


def test_nonempty_patterns_in_row_blocks_equal_the_dense_test():
    import torch

    from paper_utils.dual_solver.generation import _nonempty

    gen = torch.Generator().manual_seed(0)
    Y = torch.randn(5000, 4, generator=gen, dtype=torch.float64).abs()      # every row in the positive orthant
    G = torch.randn(4, 300, generator=gen, dtype=torch.float64)
    G[:, :20] = -G[:, :20].abs()                                              # empty patterns
    assert torch.equal(_nonempty(Y, G), ((Y @ G) > 0).any(0))
    assert not _nonempty(Y, G)[:20].any()
