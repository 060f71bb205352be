"""The exact solver of eq. (4): agreement with CVXPY, exact feasibility, eq. (5), certificate, API."""

import math
import warnings

import numpy as np
import pytest
import torch

from paper_utils.nets.dual import DualNet
from paper_utils.dual_solver import DualSolution, _lasso, _nnls_project, solve_dual
from paper_utils.nets.patches import extract_patches, pixels
from paper_utils.nets.primal import primal_objective

cp = pytest.importorskip("cvxpy")


def _problem(M, d, P, seed):
    """Random patches with a ReLU-network target plus noise."""
    rng = np.random.default_rng(seed)
    Y = rng.standard_normal((M, d))
    x = np.maximum(Y @ rng.standard_normal(d), 0) - 0.5 * np.maximum(Y @ rng.standard_normal(d), 0)
    x = x + 0.1 * rng.standard_normal(M)
    return Y, x, rng.standard_normal((d, P))


def _cvxpy_optimum(Y, x, G, beta):
    """Eq. (4) written out for CVXPY and solved by Clarabel with tight tolerances."""
    M, d = Y.shape
    P = G.shape[1]
    D = (Y @ G >= 0).astype(float)
    W, Z = cp.Variable((P, d)), cp.Variable((P, d))
    pred, cons = 0, []
    for i in range(P):
        pred = pred + (D[:, i:i + 1] * Y) @ (W[i] - Z[i])
        S = (2 * D[:, i:i + 1] - 1) * Y
        cons += [S @ W[i] >= 0, S @ Z[i] >= 0]
    obj = cp.sum_squares(pred - x) / (2 * M) + beta * (cp.sum(cp.norm(W, 2, axis=1)) + cp.sum(cp.norm(Z, 2, axis=1)))
    prob = cp.Problem(cp.Minimize(obj), cons)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)       # "may be inaccurate" at these tolerances
        prob.solve(solver="CLARABEL", tol_gap_abs=1e-11, tol_gap_rel=1e-11, tol_feas=1e-11)
    return prob.value


def _relu_net(res: DualSolution, Y):
    """Prediction and objective of the eq. (5) network in patch form, in float64."""
    U, v = (t.to(torch.float64) for t in res.to_primal())
    Yt = torch.as_tensor(Y, dtype=torch.float64)
    return torch.relu(Yt @ U.T) @ v, 0.5 * res.beta * float(U.pow(2).sum() + v.pow(2).sum())


CASES = [(60, 4, 5, 1e-3, 0), (120, 6, 12, 1e-2, 1), (200, 9, 20, 1e-5, 2)]


@pytest.fixture(scope="module", params=CASES, ids=lambda c: f"M{c[0]}-d{c[1]}-P{c[2]}-beta{c[3]:g}")
def solved(request):
    M, d, P, beta, seed = request.param
    Y, x, G = _problem(M, d, P, seed)
    res = solve_dual(Y, x, G, beta, tol=1e-7)
    return Y, x, G, beta, res, _cvxpy_optimum(Y, x, G, beta)


def test_agrees_with_cvxpy(solved):
    *_, res, ref = solved
    assert res.converged, res.status
    assert abs(res.objective - ref) <= 1e-5 * ref


def test_certificate(solved):
    *_, beta, res, ref = solved
    assert res.lower_bound <= ref * (1 + 1e-9)          # a lower bound on the true optimum
    assert res.lower_bound <= res.objective
    assert res.gap <= 1e-7
    assert res.gap == pytest.approx((res.objective - res.lower_bound) / res.objective, rel=1e-9)


def test_exactly_feasible(solved):
    Y, x, G, beta, res, _ = solved
    assert res.max_violation <= 1e-6
    Yt = torch.as_tensor(Y)
    D = Yt @ torch.as_tensor(G) >= 0                     # (M, P)
    sgn = torch.where(D, 1.0, -1.0).to(torch.float64)
    for U in (res.W, res.Z):
        S = Yt @ U.T                                     # (M, P): Yp w_i
        worst = float((-(sgn * S)).clamp_min(0).max())
        assert worst <= 1e-6 * float(S.abs().max())


def test_eq5_network_reproduces_the_dual(solved):
    Y, x, G, beta, res, _ = solved
    pred_relu, reg_relu = _relu_net(res, Y)
    pred_dual = res.predict_patches(torch.as_tensor(Y))
    scale = float(pred_dual.abs().max())
    assert float((pred_relu - pred_dual).abs().max()) <= 1e-6 * scale
    obj_relu = float((pred_relu - torch.as_tensor(x)).pow(2).sum()) / (2 * len(x)) + reg_relu
    assert obj_relu == pytest.approx(res.objective, rel=1e-6)
    assert reg_relu == pytest.approx(res.reg, rel=1e-9)


def test_dualnet_agrees(solved):
    """The package's own evaluation of eq. (4) (DualNet) sees the same objective and feasibility."""
    Y, x, G, beta, res, _ = solved
    d = Y.shape[1]
    net = DualNet(torch.as_tensor(G), kernel_size=1, channels=d)
    with torch.no_grad():
        net.W.copy_(res.W)
        net.Z.copy_(res.Z)
    ev = net.evaluate(torch.as_tensor(Y), torch.as_tensor(x), beta)
    assert ev["objective"] == pytest.approx(res.objective, rel=1e-9)
    assert ev["max_violation"] <= 1e-6
    assert ev["rebuilt_objective"] == pytest.approx(res.objective, rel=1e-6)


def test_history_is_consistent(solved):
    *_, res, _ = solved
    h = res.history
    n = len(h["time"])
    assert n >= 2 and all(len(v) == n for v in h.values())
    assert h["phase"][0] == "ray" and h["phase"][-1] == "final"
    assert all(b >= a for a, b in zip(h["time"], h["time"][1:]))
    assert all(lb <= obj * (1 + 1e-12) for lb, obj in zip(h["lower_bound"], h["objective"]))
    assert h["objective"][-1] == pytest.approx(res.objective)


def test_cutting_planes_path_matches_cvxpy():
    """More rows than ``exact_rows``: small working sets grown by cutting planes give the same optimum."""
    Y, x, G = _problem(150, 6, 8, 3)
    ref = _cvxpy_optimum(Y, x, G, 1e-3)
    res = solve_dual(Y, x, G, 1e-3, tol=1e-7, exact_rows=10, working_set=12)
    assert res.converged, res.status
    assert abs(res.objective - ref) <= 1e-5 * ref
    assert res.lower_bound <= ref * (1 + 1e-9)
    assert res.max_violation <= 1e-6


def test_images_to_primal_network():
    """Patches of images: the PrimalNet of eq. (5) has the dual's objective (primal_objective)."""
    gen = torch.Generator().manual_seed(0)
    clean = torch.rand(2, 1, 6, 6, generator=gen, dtype=torch.float64)
    noisy = clean + 0.3 * torch.randn(2, 1, 6, 6, generator=gen, dtype=torch.float64)
    Yp, xt = extract_patches(noisy, 3), pixels(clean)
    G = torch.randn(9, 12, generator=gen, dtype=torch.float64)
    beta = 1e-4
    res = solve_dual(Yp, xt, G, beta, tol=1e-7)
    assert res.converged, res.status
    net = res.to_primal(kernel_size=3)
    assert net.n_filters == int((res.W.norm(dim=1) > 0).sum() + (res.Z.norm(dim=1) > 0).sum())
    assert primal_objective(net, noisy, clean, beta)["objective"] == pytest.approx(res.objective, rel=1e-6)


def test_numpy_and_torch_inputs_agree():
    Y, x, G = _problem(80, 5, 7, 4)
    a = solve_dual(Y, x, G, 1e-3)
    b = solve_dual(torch.from_numpy(Y), torch.from_numpy(x), torch.from_numpy(G), 1e-3)
    assert a.W.dtype == b.W.dtype == torch.float64
    assert a.objective == pytest.approx(b.objective, rel=1e-12)
    assert torch.allclose(a.W, b.W, atol=1e-12) and torch.allclose(a.Z, b.Z, atol=1e-12)


def test_float32_input():
    Y, x, G = _problem(80, 5, 7, 4)
    ref = solve_dual(Y, x, G, 1e-3)
    res = solve_dual(torch.tensor(Y, dtype=torch.float32), torch.tensor(x, dtype=torch.float32),
                     torch.tensor(G, dtype=torch.float32), 1e-3)
    assert res.W.dtype == torch.float32 and res.G.dtype == torch.float32
    assert res.objective == pytest.approx(ref.objective, rel=1e-5)
    assert res.max_violation <= 1e-6


def test_deterministic():
    Y, x, G = _problem(90, 5, 9, 5)
    a, b = solve_dual(Y, x, G, 1e-3), solve_dual(Y, x, G, 1e-3)
    assert torch.equal(a.W, b.W) and torch.equal(a.Z, b.Z) and a.lower_bound == b.lower_bound


def test_warm_start():
    Y, x, G = _problem(90, 5, 9, 6)
    ref = solve_dual(Y, x, G, 1e-3, tol=1e-7)
    gen = torch.Generator().manual_seed(1)
    W0 = torch.randn(9, 5, generator=gen, dtype=torch.float64)
    res = solve_dual(Y, x, G, 1e-3, tol=1e-7, W0=W0, Z0=0.5 * W0)
    assert "warm" in res.history["phase"]
    assert res.converged
    assert res.objective == pytest.approx(ref.objective, rel=1e-6)


def test_dense_limit_returns_certified_feasible_point():
    """Without memory for the refinement: the best feasible point of steps 1-2, with an honest gap."""
    Y, x, G = _problem(100, 5, 10, 7)
    res = solve_dual(Y, x, G, 1e-3, dense_bytes=1.0)
    assert "dense" in res.status
    assert res.max_violation <= 1e-6
    assert res.lower_bound <= res.objective
    assert res.converged == (res.gap <= 1e-6)


def test_beta_zero_and_all_zero_targets():
    Y, x, G = _problem(60, 4, 5, 8)
    res = solve_dual(Y, x, G, 0.0, max_iter=60)
    assert res.max_violation <= 1e-6 and math.isfinite(res.objective)
    zero = solve_dual(Y, np.zeros(60), G, 1e-3)
    assert zero.objective == 0.0 and float(zero.W.abs().max()) == 0.0 and zero.converged


@pytest.mark.parametrize("bad", ["Y1d", "x_len", "G_rows", "nan", "inf", "beta", "tol", "zero_col", "warm"])
def test_bad_inputs(bad):
    Y, x, G = _problem(30, 4, 3, 9)
    kwargs = {}
    if bad == "Y1d":
        Y = Y[:, 0]
    elif bad == "x_len":
        x = x[:-1]
    elif bad == "G_rows":
        G = G[:-1]
    elif bad == "nan":
        Y = Y.copy()
        Y[3, 1] = np.nan
    elif bad == "inf":
        x = x.copy()
        x[0] = np.inf
    elif bad == "beta":
        kwargs["beta"] = -1e-3
    elif bad == "tol":
        kwargs["tol"] = 0.0
    elif bad == "zero_col":
        G = G.copy()
        G[:, 1] = 0
    elif bad == "warm":
        kwargs["W0"], kwargs["Z0"] = np.zeros((3, 3)), np.zeros((3, 3))
    beta = kwargs.pop("beta", 1e-3)
    with pytest.raises(ValueError):
        solve_dual(Y, x, G, beta, **kwargs)


def _random_cones(gen, B: int, K: int, d: int, keep: float):
    """B cones of K unit normals in d dimensions (a share ``keep`` of them valid), each holding g (B, d)."""
    g = torch.randn(B, d, generator=gen, dtype=torch.float64)
    C = torch.randn(B, K, d, generator=gen, dtype=torch.float64)
    C = C * torch.sign((C @ g.unsqueeze(2)).squeeze(2)).unsqueeze(2)          # g is inside every cone
    C = C / C.norm(dim=2, keepdim=True)
    return g, C, torch.rand(B, K, generator=gen) > 1 - keep


def test_cone_projection_kkt():
    """Batched Lawson-Hanson projection onto polyhedral cones satisfies the KKT conditions."""
    gen = torch.Generator().manual_seed(0)
    B, K, d = 50, 20, 6
    g, C, valid = _random_cones(gen, B, K, d, 0.8)
    v = 3 * torch.randn(B, d, generator=gen, dtype=torch.float64)
    w = _nnls_project(C, valid, v)
    cw = (C @ w.unsqueeze(2)).squeeze(2)
    assert float(torch.where(valid, cw, 0.0).min()) >= -1e-11 * float(v.norm(dim=1).max())  # feasible
    # v - w lies in the polar cone: v - w = -C_act^T mu with mu >= 0 (checked by NNLS)
    from scipy.optimize import nnls

    for b in range(0, B, 7):
        act = valid[b] & (cw[b].abs() <= 1e-10)
        A = (-C[b][act].T).numpy()
        r = (v[b] - w[b]).numpy()
        if A.shape[1] == 0:
            assert np.abs(r).max() <= 1e-9
        else:
            assert nnls(A, r)[1] <= 1e-9 * max(1.0, np.linalg.norm(r))


def test_cone_projection_norms_match_scipy_nnls_and_floor_gives_upper_bounds(monkeypatch):
    """``||Pi_K(v)|| = min_{mu >= 0} ||v + C^T mu||`` (Moreau) computed independently by SciPy's NNLS, on
    blocks whose projections need many active constraints (v deep in the polar cone, as at the MRI
    optimum); batches split by the Gram budget give the same rows; with ``floor`` every row is an upper
    bound, at most ``floor`` where it stopped early, and the rows above ``floor`` are the projections."""
    from scipy.optimize import nnls

    from paper_utils.dual_solver import cones

    gen = torch.Generator().manual_seed(1)
    B, K, d = 40, 30, 8
    g, C, valid = _random_cones(gen, B, K, d, 0.9)
    mix = torch.rand(B, K, 1, generator=gen, dtype=torch.float64) * valid.unsqueeze(2)
    t = torch.linspace(0, 1, B, dtype=torch.float64).unsqueeze(1)           # from deep in the polar cone to inside
    v = (1 - t) * -(C * mix).sum(1) + t * 3 * g / g.norm(dim=1, keepdim=True) \
        + 0.3 * torch.randn(B, d, generator=gen, dtype=torch.float64)
    exact = _nnls_project(C, valid, v).norm(dim=1)
    ref = torch.tensor([nnls((-C[b][valid[b]].T).numpy(), v[b].numpy())[1] for b in range(B)], dtype=torch.float64)
    assert torch.allclose(exact, ref, rtol=1e-9, atol=1e-10)
    assert int((exact < 1e-9).sum()) >= 5 and int((exact > 0.1).sum()) >= 5   # both regimes present
    monkeypatch.setattr(cones, "NNLS_GRAM_NUMBERS", 7 * (K + d) ** 2)           # batches of 7 blocks
    assert torch.allclose(_nnls_project(C, valid, v).norm(dim=1), exact, rtol=1e-12, atol=1e-15)
    floor = float(exact.median())
    bound = _nnls_project(C, valid, v, floor=floor).norm(dim=1)
    assert bool((bound >= exact * (1 - 1e-9) - 1e-15).all())
    above = bound > floor
    assert torch.allclose(bound[above], exact[above], rtol=1e-9, atol=1e-15)
    assert bool((exact[~above] <= floor * (1 + 1e-9)).all())


def test_lasso_exact():
    gen = torch.Generator().manual_seed(0)
    A = torch.randn(40, 15, generator=gen, dtype=torch.float64)
    y = torch.randn(40, generator=gen, dtype=torch.float64)
    Q, q, lam = A.T @ A / 40, A.T @ y / 40, 0.05
    th = _lasso(Q, q, lam)
    g = Q @ th - q
    on = th != 0
    assert 0 < int(on.sum()) < 15
    assert float((g[on] + lam * torch.sign(th[on])).abs().max()) <= 1e-10
    assert float(g[~on].abs().max()) <= lam * (1 + 1e-9)
    # a warm start far from the optimum, cut off after one active-set step, still ends exact (growth)
    far = torch.randn(15, generator=gen, dtype=torch.float64)
    for steps in (1, 64):
        warm = _lasso(Q, q, lam, theta0=far, warm_steps=steps)
        assert torch.allclose(warm, th, atol=1e-10, rtol=0)


def test_solution_round_trips_through_a_dict():
    Y, x, G = _problem(60, 4, 5, 3)
    res = solve_dual(Y, x, G, 1e-3, tol=1e-6)
    back = DualSolution.from_dict(res.as_dict())
    assert back.objective == res.objective and back.gap == res.gap and torch.equal(back.W, res.W)
    assert torch.equal(back.predict_patches(torch.as_tensor(Y)), res.predict_patches(torch.as_tensor(Y)))
    with pytest.raises(ValueError, match="unknown fields"):
        DualSolution.from_dict({**res.as_dict(), "bogus": 1})


def test_solver_comparison_measures_from_the_certified_lower_bound():
    """Notebook 10's curves: excess over the certified lower bound, negatives floored, both bars drawn."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from paper_utils.figures.solver_certificate import SolverComparison, plot_comparison, plot_feasibility

    Y, x, G = _problem(60, 4, 5, 4)
    sol = solve_dual(Y, x, G, 1e-3, tol=1e-6)
    lb = sol.lower_bound
    curves = {"primal Adam (eq. 2)": ([0.0, 1.0], [2 * lb, 0.5 * lb]),
              "exact solver (ours), feasible points": ([0.5], [sol.objective])}
    comp = SolverComparison(sol, curves, sol.objective, 0.2, 0.5 * lb, adam_hinge_mismatch=1e-3)
    t, e = comp.excess("primal Adam (eq. 2)", floor=1e-7)
    assert t == [0.0, 1.0] and e[0] == pytest.approx(1.0) and e[1] == 1e-7
    rows = {r["method"]: r for r in comp.rows()}
    assert rows["primal Adam (eq. 2)"]["over_lower_bound"] == pytest.approx(-0.5)
    assert rows["exact solver (ours), feasible points"]["over_lower_bound"] == pytest.approx(
        (sol.objective - lb) / lb)
    assert comp.exact_mismatch == 0.0
    fig, (a1, a2) = plt.subplots(1, 2)
    plot_comparison(a1, comp)
    plot_feasibility(a2, comp)
    assert len(a2.patches) == 4
    plt.close(fig)


def test_tilted_rays_certify_without_the_barrier():
    """Thin cones (M >> P): step 2 alone (no dense refinement) reaches the optimum the barrier finds."""
    Y, x, G = _problem(20000, 9, 50, 0)
    tilted = solve_dual(Y, x, G, 1e-3, tol=1e-7, dense_bytes=1.0)
    barrier = solve_dual(Y, x, G, 1e-3, tol=1e-7, max_tilts=0)
    assert tilted.converged and "tilted rays certified" in tilted.status, tilted.status
    assert "tilt" in tilted.history["phase"] and "ipm" not in tilted.history["phase"]
    assert "ipm" in barrier.history["phase"]
    assert abs(tilted.objective - barrier.objective) <= 1e-6 * barrier.objective
    # each certificate bounds the other method's objective from below
    assert tilted.lower_bound <= barrier.objective * (1 + 1e-12)
    assert barrier.lower_bound <= tilted.objective * (1 + 1e-12)
    assert tilted.max_violation <= 1e-6


def test_tilted_rays_hand_over_to_the_barrier_when_they_stall():
    """Wide cones: the tilted rays stall (their gap is reported as it is) and the barrier finishes."""
    Y, x, G = _problem(8000, 9, 60, 0)
    stalled = solve_dual(Y, x, G, 1e-4, tol=1e-7, dense_bytes=1.0)
    assert not stalled.converged and "stalled" in stalled.status
    res = solve_dual(Y, x, G, 1e-4, tol=1e-7)
    assert res.converged, res.status
    phases = res.history["phase"]
    assert phases.index("ray") < phases.index("tilt") < phases.index("ipm")
    assert res.lower_bound <= stalled.objective * (1 + 1e-12)
    assert res.objective <= stalled.objective


def test_accept_gap_keeps_the_tilted_point_only_within_it():
    """``accept_gap`` above the tilted rays' certified gap returns their point (no barrier, honest
    status, sound certificate); below it the barrier runs and stops once certified to ``accept_gap``."""
    Y, x, G = _problem(8000, 9, 60, 0)
    stalled = solve_dual(Y, x, G, 1e-4, tol=1e-7, dense_bytes=1.0)
    assert stalled.gap > 1e-7
    loose = solve_dual(Y, x, G, 1e-4, tol=1e-7, accept_gap=10 * stalled.gap)
    assert "ipm" not in loose.history["phase"] and not loose.converged
    assert "accept_gap" in loose.status and "NOT certified" in loose.status
    assert loose.objective == pytest.approx(stalled.objective, rel=1e-12)
    assert loose.gap == pytest.approx(stalled.gap, rel=1e-9)
    mid = solve_dual(Y, x, G, 1e-4, tol=1e-7, accept_gap=0.1 * stalled.gap)
    assert "ipm" in mid.history["phase"] and mid.gap <= 0.1 * stalled.gap
    assert mid.converged == (mid.gap <= 1e-7)
    assert mid.converged or "accept_gap" in mid.status, mid.status
    tight = solve_dual(Y, x, G, 1e-4, tol=1e-7)
    assert tight.converged
    for res in (loose, mid):
        assert res.lower_bound <= tight.objective * (1 + 1e-12) and tight.objective <= res.objective * (1 + 1e-12)
    with pytest.raises(ValueError, match="accept_gap"):
        solve_dual(Y, x, G, 1e-4, accept_gap=-1.0)


def test_nearest_rows_match_a_full_sort():
    """The streaming top-K (several chunks) equals sorting every row's distance to each g_i."""
    from paper_utils.dual_solver import _Data

    Y, x, G = _problem(3000, 6, 7, 11)
    Y[5] = 0.0                                          # a zero row is never a constraint
    data = _Data(torch.from_numpy(Y), torch.from_numpy(x), torch.from_numpy(G), torch.float64, 256)
    got = data.nearest_rows(40)                        # 12 chunks of 256 rows
    dist = (data.Yh @ data.Gh).abs()
    dist[5] = math.inf
    want = dist.argsort(dim=0)[:40].T
    assert got.shape == (7, 40)
    assert torch.equal(got.sort(dim=1).values, want.sort(dim=1).values)


def test_status_never_claims_certification_above_tol():
    """A stop above tol says so: no 'certified to tol' status on a point whose gap exceeds tol."""
    Y, x, G = _problem(100, 5, 10, 7)
    for kwargs in (dict(max_tilts=0, dense_bytes=1.0), dict(dense_bytes=1.0), dict(time_limit=0.0)):
        res = solve_dual(Y, x, G, 1e-3, tol=1e-12, **kwargs)
        assert res.converged == (res.gap <= 1e-12)
        if not res.converged:
            assert res.status.startswith("NOT certified to tol"), (kwargs, res.status)
            assert f"{res.gap:.2e}" in res.status
