"""The working-set path of the exact solver (``solve_dual(gram="working")``, :mod:`.workset`): the same
certified optimum as the full-Gram path, growth from a too-small start, its Gram kernel, warm lasso."""

import numpy as np
import pytest
import torch

from paper_utils.dual_solver import _Data, _lasso, solve_dual

from test_dual_solver import _cvxpy_optimum, _problem  # tests/ is on sys.path (rootdir conftest)


def _active(res):
    return int((res.W.norm(dim=1) > 0).sum() + (res.Z.norm(dim=1) > 0).sum())


def test_working_set_reaches_the_full_gram_optimum():
    """Thin cones (M >> P), tilted rays only: both paths certify the same optimum; the working set
    starts with 16 patterns, so most of the active ones must be priced in."""
    Y, x, G = _problem(20000, 9, 120, 0)
    full = solve_dual(Y, x, G, 1e-3, tol=1e-9, dense_bytes=1.0, gram="full")
    work = solve_dual(Y, x, G, 1e-3, tol=1e-9, dense_bytes=1.0, gram="working", working_init=16)
    assert full.converged and work.converged, (full.status, work.status)
    assert "tilt" in work.history["phase"] and "ipm" not in work.history["phase"]
    assert abs(work.objective - full.objective) <= 1e-8 * full.objective
    # each certificate bounds the other path's objective from below
    assert work.lower_bound <= full.objective * (1 + 1e-12)
    assert full.lower_bound <= work.objective * (1 + 1e-12)
    assert work.max_violation <= 1e-6
    assert _active(work) > 16


def test_working_set_grows_from_a_tiny_start_and_hands_over_to_the_barrier():
    """Wide cones (small M): 3 starting patterns, priced growth, then the barrier over all P finishes;
    the result agrees with CVXPY."""
    Y, x, G = _problem(200, 9, 20, 2)
    ref = _cvxpy_optimum(Y, x, G, 1e-3)
    res = solve_dual(Y, x, G, 1e-3, tol=1e-7, gram="working", working_init=3)
    assert res.converged, res.status
    assert abs(res.objective - ref) <= 1e-5 * ref
    assert res.lower_bound <= ref * (1 + 1e-9)
    assert res.max_violation <= 1e-6
    assert _active(res) > 3


@pytest.mark.parametrize("dtype,clamp,tilted", [(torch.float64, False, False), (torch.float32, False, False),
                                                (torch.float32, True, False), (torch.float64, True, False),
                                                (torch.float64, False, True), (torch.float64, True, True),
                                                (torch.float32, True, True)])
def test_set_gram_rows_match_the_full_rows(dtype, clamp, tilted):
    """Rows of a working set (upper block triangle mirrored) equal the full kernel's entries (which
    applies each pattern explicitly), for rays and for tilted directions (exact projections of random
    vectors onto the cones), with the feature formed by the pattern or by clamping."""
    from paper_utils.dual_solver.cones import _WorkingSets, _project_cones

    Y, x, G = _problem(5000, 6, 30, 4)
    data = _Data(torch.from_numpy(Y), torch.from_numpy(x), torch.from_numpy(G), torch.float64, 700)
    A = data.Gh.T.contiguous()
    if tilted:
        s = A + 0.7 * torch.from_numpy(np.random.default_rng(5).standard_normal((30, 6)))
        proj, done = _project_cones(data, _WorkingSets(data, 64, 512), s, torch.arange(30))
        assert bool(done.all())
        c = torch.linalg.vector_norm(proj, dim=1)
        # a projection near zero (s points away from a thin cone) normalises to rounding noise: such
        # patterns keep their ray (the solver tilts only to projections of norm above beta)
        big = c > 1e-6 * torch.linalg.vector_norm(s, dim=1)
        assert int(big.sum()) >= 20 and float((proj[big] / c[big].unsqueeze(1) - A[big]).abs().max()) > 1e-3
        A = torch.where(big.unsqueeze(1), proj / c.clamp_min(1e-300).unsqueeze(1), A)
        # the tilted directions lie on faces of their cones: rows where the clamp and the pattern meet
        margins = (data.Y @ A[big].T).abs()
        assert bool((margins.amin(0) < 1e-9).all())
    ref_Q, ref_q = data.direction_gram_rows(A, torch.arange(30))
    cols = torch.tensor([7, 3, 29, 11, 0, 18, 5, 22, 14])
    k = 5
    Qr, qr = data.set_gram_rows(A[cols], cols, k, dtype, block=2, clamp=clamp)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    scale = float(ref_Q.abs().max())
    assert torch.allclose(Qr, ref_Q[cols[:k]][:, cols], atol=tol * scale, rtol=0)
    assert torch.allclose(qr, ref_q[cols[:k]], atol=tol * float(ref_q.abs().max()), rtol=0)


def test_operator_passes_over_active_columns_match_dense_formulas():
    """``loss_grad`` (prediction over the patterns with ``v_i != 0`` only) and ``evaluate`` (non-zero
    blocks only) equal the dense formulas over all P patterns, with zero patterns, patterns with both
    blocks non-zero and infeasible blocks (a positive violation) in the mix, in several chunk sizes."""
    rng = np.random.default_rng(3)
    Y, x, G = _problem(3000, 6, 25, 7)
    Yt, xt, Gt = (torch.from_numpy(a) for a in (Y, x, G))
    D = (Yt @ Gt >= 0).to(torch.float64)                                            # (M, P)
    W = torch.from_numpy(rng.standard_normal((25, 6)))
    Z = torch.from_numpy(rng.standard_normal((25, 6)))
    W[rng.choice(25, 9, replace=False)] = 0.0
    Z[rng.choice(25, 15, replace=False)] = 0.0
    W[4], Z[4] = 0.0, 0.0
    V = W - Z
    r = (D * (Yt @ V.T)).sum(1) - xt
    grad = (D * r.unsqueeze(1)).T @ Yt / Yt.shape[0]                                 # (P, d)
    sgn = 2 * D - 1
    TW, TZ = Yt @ W.T, Yt @ Z.T
    worst = float(torch.cat([sgn * TW, sgn * TZ], 1).amin().neg().clamp_min(0))
    scale = float(torch.cat([TW, TZ], 1).abs().max())
    assert worst > 0
    for chunk in (None, 100, 2999):
        data = _Data(Yt, xt, Gt, torch.float64, chunk)
        sq, rx, g = data.loss_grad(V)
        assert abs(float(sq) - float(r @ r)) <= 1e-12 * float(r @ r)
        assert abs(float(rx) - float(r @ xt)) <= 1e-12 * float(r.abs() @ xt.abs())
        assert torch.allclose(g, grad, rtol=0, atol=1e-12 * float(grad.abs().max()))
        e_sq, e_worst, e_scale = data.evaluate(W, Z)
        assert abs(e_sq - float(r @ r)) <= 1e-12 * float(r @ r)
        assert abs(e_worst - worst) <= 1e-12 * scale and abs(e_scale - scale) <= 1e-12 * scale
    zero = torch.zeros(25, 6, dtype=torch.float64)
    assert data.evaluate(zero, zero) == (float(xt @ xt), 0.0, 0.0)
    sq, rx, g = data.loss_grad(zero)
    assert abs(float(sq) - float(xt @ xt)) <= 1e-12 * float(xt @ xt)
    assert torch.allclose(g, -(D * xt.unsqueeze(1)).T @ Yt / Yt.shape[0], rtol=0, atol=1e-12 * float(g.abs().max()))


def test_lasso_warm_start_reaches_the_cold_solution():
    rng = np.random.default_rng(0)
    F = torch.from_numpy(rng.standard_normal((200, 40)))
    y = torch.from_numpy(rng.standard_normal(200))
    Q, q = F.T @ F / 200, F.T @ y / 200
    cold = _lasso(Q, q, 0.05)
    for start in (torch.zeros(40, dtype=torch.float64), torch.from_numpy(rng.standard_normal(40))):
        warm = _lasso(Q, q, 0.05, theta0=start)
        assert torch.allclose(warm, cold, atol=1e-10)
    assert _lasso(Q[:0, :0], q[:0], 0.05).numel() == 0


def test_lasso_meets_kkt_from_warm_starts_with_nearly_collinear_features():
    """Nearly parallel features (a tilted direction beside its ray) and warm starts far from the
    optimum: the result satisfies the KKT conditions (a stalled warm start is solved again cold)."""
    rng = np.random.default_rng(1)
    base = rng.standard_normal((300, 30))
    F = torch.from_numpy(np.concatenate([base, base + 1e-4 * rng.standard_normal((300, 30))], axis=1))
    y = torch.from_numpy(base @ rng.standard_normal(30) + 0.1 * rng.standard_normal(300))
    Q, q, lam = F.T @ F / 300, F.T @ y / 300, 1e-3
    cold = _lasso(Q, q, lam)
    obj = lambda th: float(0.5 * th @ (Q @ th) - q @ th + lam * th.abs().sum())  # noqa: E731
    for seed in range(6):
        start = torch.from_numpy(np.random.default_rng(seed).standard_normal(60) * 10)
        theta = cold if seed == 5 else _lasso(Q, q, lam, theta0=start)
        g = Q @ theta - q
        assert float(torch.cat([g[theta == 0].abs(), g.new_zeros(1)]).max()) <= lam * (1 + 1e-9)
        nz = theta != 0
        assert float(torch.cat([(g[nz] + lam * torch.sign(theta[nz])).abs(), g.new_zeros(1)]).max()) <= 1e-9
        assert obj(theta) <= obj(cold) + 1e-12 * abs(obj(cold))


def test_bad_gram_options():
    Y, x, G = _problem(60, 4, 5, 0)
    with pytest.raises(ValueError, match="gram"):
        solve_dual(Y, x, G, 1e-3, gram="sparse")
    with pytest.raises(ValueError, match="working_init"):
        solve_dual(Y, x, G, 1e-3, working_init=0)


def test_float32_rows_reach_the_float64_optimum_by_refinement(capsys):
    """Gram rows in float32 (``dtype=float32``): iterative refinement on the float64 operator pass
    makes the working-set lasso exact, so both dtypes certify the same optimum."""
    Y, x, G = _problem(20000, 9, 120, 0)
    ref = solve_dual(Y, x, G, 1e-3, tol=1e-9, dense_bytes=1.0, gram="full")
    res = solve_dual(Y, x, G, 1e-3, tol=1e-8, dense_bytes=1.0, gram="working", working_init=16,
                     dtype=torch.float32, progress=True)
    log = capsys.readouterr().out
    assert "(float32) against" in log and "refinement steps" in log
    assert res.converged, res.status
    assert abs(res.objective - ref.objective) <= 1e-8 * ref.objective
    assert res.lower_bound <= ref.objective * (1 + 1e-12)
    assert res.max_violation <= 1e-6


@pytest.mark.parametrize("seed,n,collinear", [(0, 60, False), (1, 150, True), (2, 300, False)])
def test_lasso_growth_reaches_kkt_and_the_cvxpy_optimum(seed, n, collinear):
    """The cold lasso by forward growth of the support (small batches, many rounds) meets the exact
    KKT conditions and CVXPY's optimum, on ReLU features (non-negative, strongly correlated, like the
    solver's), with and without near-duplicates (there the whole-set active-set solver alone stalls:
    measured 1.12 lam of KKT violation on the collinear case)."""
    cp = pytest.importorskip("cvxpy")
    from paper_utils.dual_solver.lasso import _lasso_grow

    rng = np.random.default_rng(seed)
    Yp = rng.standard_normal((2000, 9))
    A = rng.standard_normal((9, n))
    if collinear:
        A[:, n // 2:] = A[:, :n - n // 2] + 1e-2 * rng.standard_normal((9, n - n // 2))
    F = np.maximum(Yp @ A, 0)
    y = np.maximum(Yp @ rng.standard_normal(9), 0) + 0.1 * rng.standard_normal(2000)
    Q, q, lam = torch.from_numpy(F.T @ F / 2000), torch.from_numpy(F.T @ y / 2000), 1e-3
    obj = lambda th: float(0.5 * th @ (Q @ th) - q @ th + lam * th.abs().sum())  # noqa: E731
    grown, kkt = _lasso_grow(Q, q, lam, frac=0.05, k_min=2)
    assert kkt
    g = Q @ grown - q
    nz = grown != 0
    assert 0 < int(nz.sum()) < n
    assert float(g[~nz].abs().max()) <= lam * (1 + 1e-9)
    assert float((g[nz] + lam * torch.sign(grown[nz])).abs().max()) <= 1e-9 * float(q.abs().max())
    t = cp.Variable(n)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(F @ t - y) / 4000 + lam * cp.norm1(t)))
    prob.solve(solver=cp.CLARABEL)
    ref = prob.value - float(y @ y) / 4000                 # the same objective without its constant
    assert obj(grown) <= ref + 1e-7 * abs(ref)
    assert _lasso(Q, q, lam).allclose(grown)              # the public entry point takes this path


def test_round_rule_margin_scales_with_tol_and_shrinks_after_a_stalled_partial_round():
    """Violations below ``tol obj / (2 reg)`` are left alone (they cost < tol / 2 of certified gap);
    a round that left some alone and did not lower the gap divides the margin by 100."""
    from paper_utils.dual_solver.tilt import _RoundRule

    rule = _RoundRule(gap=1e-2, patience=3)
    assert rule.margin(1e-6, obj=2.0, reg=0.04) == pytest.approx(0.5 * 1e-6 * 2.0 / 0.04)
    assert rule.margin(1.0, obj=2.0, reg=0.04) == 1e-2                 # capped
    assert rule.margin(1e-6, obj=2.0, reg=0.0) == 0.0
    rule.stop(1e-4, 1e-6, lambda: False, skipped=True)                 # progress: not a miss
    assert rule.misses == 0
    rule.stop(2e-4, 1e-6, lambda: False, skipped=True)                 # no progress with some left alone
    assert rule.misses == 1
    assert rule.margin(1e-6, obj=2.0, reg=0.04) == pytest.approx(0.5 * 1e-6 * 2.0 / 0.04 / 100)
    rule.stop(4e-5, 1e-6, lambda: False, skipped=False)
    assert rule.misses == 1
    assert rule.stop(1e-7, 1e-6, lambda: False, skipped=True) == "tilted rays certified to tol"


def test_violated_best_responses_leave_small_violations_alone():
    """With a margin, exactly the violated patterns with ``c_j > beta (1 + margin)`` are returned, with
    the same best responses, and the others are counted (at least the violated ones below the margin:
    the count is of upper bounds above beta); without any above it, all violated ones."""
    from paper_utils.dual_solver.cones import _WorkingSets, _certificate
    from paper_utils.dual_solver.tilt import _violated_best_responses

    Y, x, G = _problem(3000, 6, 40, 5)
    data = _Data(torch.from_numpy(Y), torch.from_numpy(x), torch.from_numpy(G), torch.float64, None)
    ws = _WorkingSets(data, 64, 512)
    theta = torch.zeros(40, dtype=torch.float64)
    sq, rx, grad = data.loss_grad(torch.zeros(40, 6, dtype=torch.float64))
    beta = 0.5 * float(torch.linalg.vector_norm(grad, dim=1).max())
    _, ratio, bound = _certificate(data, ws, beta, float(sq), float(rx), grad)
    assert ratio > 1
    pats0, proj0, c0, skipped0, unfinished0 = _violated_best_responses(data, ws, beta, theta, grad, bound)
    assert skipped0 == 0 and unfinished0 == 0 and bool((c0 > beta).all()) and pats0.numel() >= 3
    margin = float(c0.median()) / beta - 1
    pats, proj, c, skipped, unfinished = _violated_best_responses(data, ws, beta, theta, grad, bound, margin)
    big = c0 > beta * (1 + margin)
    assert torch.equal(pats, pats0[big]) and unfinished == 0 and skipped >= int((~big).sum()) > 0
    assert torch.allclose(proj, proj0[big], rtol=0, atol=1e-10 * float(c0.max()))
    pats, _, _, skipped, _ = _violated_best_responses(data, ws, beta, theta, grad, bound, 10.0)
    assert torch.equal(pats, pats0) and skipped == 0


def test_tilted_rays_go_on_when_cone_projections_stop_at_their_cutting_plane_cap(monkeypatch, capsys):
    """Small working sets (16 rows per block over M = 20,000) and one cutting-plane round per projection:
    the blocks whose best response is unfinished keep their directions for a round (the rows they got stay
    in the working sets), the others tilt, and the solve still certifies the optimum of the uncapped run."""
    import paper_utils.dual_solver.cones as cones

    Y, x, G = _problem(20000, 9, 120, 0)
    kw = dict(tol=1e-9, dense_bytes=1.0, gram="working", working_init=16, working_set=16)
    ref = solve_dual(Y, x, G, 1e-3, **kw)
    monkeypatch.setattr(cones, "CUT_ROUNDS", 1)
    capped = solve_dual(Y, x, G, 1e-3, progress=True, **kw)
    log = capsys.readouterr().out
    assert "left for their unfinished projections" in log
    assert ref.converged and capped.converged, (ref.status, capped.status)
    assert abs(capped.objective - ref.objective) <= 1e-9 * ref.objective
    assert capped.lower_bound <= ref.objective * (1 + 1e-12)
    assert capped.max_violation <= 1e-9
