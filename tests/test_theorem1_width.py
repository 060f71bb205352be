"""Theorem 1 where it applies (notebook 12): the committed arrays, checked with numpy alone, and the
balancing, neuron counting and pruning they rest on."""

from pathlib import Path

import numpy as np
import pytest
import torch

from paper_utils.dual_solver.arrangement import enumerate_cells
from paper_utils.dual_solver.sparsify import convex_objective, count_neurons, sparsify
from paper_utils.figures import theorem1_width as t1
from paper_utils.nets.balance import (active_units, balance_units, balanced_objective, balanced_regulariser,
                                      trained_regulariser)
from paper_utils.training.convergence import converge_primal, kaiming_init, patch_objective

NPZ = Path(__file__).resolve().parents[1] / "results" / "cpu" / t1.NPZ_NAME


def _primal_np(Yp, x, U, v, beta):
    r = np.maximum(Yp @ U.T, 0.0) @ v - x
    return r @ r / (2 * len(x)) + 0.5 * beta * (np.sum(U * U) + v @ v)


def _convex_np(Yp, x, G, W, Z, beta):
    D = Yp @ G >= 0                                                   # (M, P)
    pred = np.sum(D * (Yp @ (W - Z).T), axis=1)
    loss = np.sum((pred - x) ** 2) / (2 * len(x))
    return loss + beta * (np.linalg.norm(W, axis=1).sum() + np.linalg.norm(Z, axis=1).sum())


def test_committed_arrays_recompute_with_numpy():
    """Every stored objective, the certificate's ordering, feasibility, m* and the best seeds' balance,
    recomputed from the committed file with numpy alone."""
    z = np.load(NPZ)
    n = int(z["n_problems"])
    assert n >= 6
    betas = set()
    for i in range(n):
        Yp, x, beta = z[f"p{i}_Yp"], z[f"p{i}_x"], float(z[f"p{i}_beta"])
        G, W, Z = z[f"p{i}_G"], z[f"p{i}_W"], z[f"p{i}_Z"]
        betas.add(beta)
        obj = _convex_np(Yp, x, G, W, Z, beta)
        assert abs(obj - float(z[f"p{i}_objective"])) <= 1e-10 * obj
        lower = float(z[f"p{i}_lower"])
        assert lower <= obj and (obj - lower) / obj <= t1.CERT_TOL
        # feasibility of eq. (4)'s cones: (2 D_i - I) Yp w_i >= 0, same for z_i
        S = np.where(Yp @ G >= 0, 1.0, -1.0)                          # (M, P)
        scale = max(np.abs(Yp @ W.T).max(), np.abs(Yp @ Z.T).max())
        assert (S * (Yp @ W.T)).min() >= -1e-9 * scale and (S * (Yp @ Z.T)).min() >= -1e-9 * scale
        norms = np.concatenate([np.linalg.norm(W, axis=1), np.linalg.norm(Z, axis=1)])
        assert int(z[f"p{i}_m_star"]) == int(np.sum(norms > 1e-8 * norms.max()))
        # eq. (5): the m*-unit ReLU network of (W, Z) attains p* (so p* is a value of eq. (2) at width m*)
        keep = norms > 1e-8 * norms.max()
        B = np.vstack([W, Z])[keep]
        root = np.sqrt(np.linalg.norm(B, axis=1))
        U5, v5 = B / root[:, None], np.concatenate([root[: int(keep[:len(W)].sum())], -root[int(keep[:len(W)].sum()):]])
        assert len(v5) == int(z[f"p{i}_m_star"])
        assert abs(_primal_np(Yp, x, U5, v5, beta) - obj) <= 1e-9 * obj
        widths, prim = z[f"p{i}_widths"], z[f"p{i}_primal_objective"]
        assert prim.shape[0] == len(widths) and prim.shape[1] >= 20 and len(widths) >= 5
        assert (widths < int(z[f"p{i}_m_star"])).any() and {1, 2, 4} <= {w // int(z[f"p{i}_m_star"]) for w in widths
                                                                         if w % int(z[f"p{i}_m_star"]) == 0}
        for k in range(len(widths)):
            U, v = z[f"p{i}_U{k}"], z[f"p{i}_v{k}"]
            assert U.shape == (widths[k], Yp.shape[1])
            val = _primal_np(Yp, x, U, v, beta)
            assert abs(val - prim[k].min()) <= 1e-10 * val                 # the best seed, stored balanced
            alive = np.abs(v) > 0
            assert np.allclose(np.linalg.norm(U[alive], axis=1), np.abs(v[alive]), rtol=1e-9)
            assert prim[k].min() >= lower * (1 - 1e-12)                  # no primal below the proven bound
    assert len(betas) >= 3


def test_balancing_keeps_the_function_and_lowers_the_decay():
    g = torch.Generator().manual_seed(0)
    Yp, U = torch.randn(200, 9, generator=g, dtype=torch.float64), torch.randn(30, 9, generator=g, dtype=torch.float64) * 3
    v = torch.randn(30, generator=g, dtype=torch.float64) * 0.1
    v[3] = 0.0
    Ub, vb = balance_units(U, v)
    f, fb = torch.relu(Yp @ U.T) @ v, torch.relu(Yp @ Ub.T) @ vb
    assert torch.allclose(f, fb, rtol=0, atol=1e-12 * f.abs().max())
    assert torch.allclose(torch.linalg.vector_norm(Ub, dim=1), vb.abs(), rtol=1e-12)
    assert float(Ub[3].abs().max()) == 0.0 and active_units(Ub, vb) == 29
    beta = 1e-3
    assert balanced_regulariser(U, v, beta) == pytest.approx(trained_regulariser(Ub, vb, beta), rel=1e-12)
    assert balanced_regulariser(U, v, beta) < trained_regulariser(U, v, beta)
    Un, vn = balance_units(U.numpy(), v.numpy())
    assert np.allclose(Un, Ub.numpy(), rtol=0, atol=1e-15)
    loss = float(((f - 1.0) ** 2).mean() / 2)
    assert balanced_objective(loss, U, v, beta) == pytest.approx(loss + balanced_regulariser(U, v, beta))
    with pytest.raises(ValueError):
        balance_units(U, v[:5])


def test_kaiming_init_any_patch_dimension():
    U, v = kaiming_init(7, 4, seed=1, dtype=torch.float64)
    assert U.shape == (7, 4) and v.shape == (7,)
    assert float(U.abs().max()) <= (6 / 4) ** 0.5 and float(v.abs().max()) <= (6 / 7) ** 0.5
    assert torch.equal(U, kaiming_init(7, 4, seed=1, dtype=torch.float64)[0])


def test_small_path_matches_the_kernel():
    g = torch.Generator().manual_seed(1)
    Yp, x = torch.randn(40, 9, generator=g, dtype=torch.float64), torch.randn(40, generator=g, dtype=torch.float64)
    U, v = torch.randn(6, 9, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    obj, loss, gU, gv = patch_objective(Yp, x, U, v, 1e-2, grad=True)
    assert obj == pytest.approx(_primal_np(Yp.numpy(), x.numpy(), U.numpy(), v.numpy(), 1e-2), rel=1e-13)
    Ua, va = U.clone().requires_grad_(True), v.clone().requires_grad_(True)
    val = 0.5 * ((torch.relu(Yp @ Ua.T) @ va - x) ** 2).mean() + 0.5e-2 * (Ua.pow(2).sum() + va.pow(2).sum())
    val.backward()
    assert torch.allclose(gU, Ua.grad, rtol=1e-12, atol=1e-14) and torch.allclose(gv, va.grad, rtol=1e-12, atol=1e-14)


def _tiny_problem(seed=0, M=10):
    rng = np.random.default_rng(seed)
    Yp = rng.standard_normal((M, 3))
    x = np.maximum(Yp @ np.array([1.0, -0.5, 0.3]), 0) - 0.7 * np.maximum(Yp @ np.array([-0.2, 1.0, 0.4]), 0)
    return Yp, x + 0.05 * rng.standard_normal(M)


def test_sparsify_keeps_the_objective_and_feasibility():
    """A solution with more neurons than M + 1 must lose some (Caratheodory), at equal objective, staying in
    the cones; independent columns are left alone."""
    Yp, x = _tiny_problem()
    U, pats, _ = enumerate_cells(Yp)
    G = U.T                                                           # (d, P) every pattern
    rng = np.random.default_rng(1)
    # a feasible dense point: each block a positive multiple of its own cell's interior point
    W = rng.uniform(0.01, 0.1, (G.shape[1], 1)) * U
    Z = rng.uniform(0.01, 0.1, (G.shape[1], 1)) * U
    beta = 1e-3
    n0 = count_neurons(W, Z)
    assert n0 == 2 * G.shape[1] > Yp.shape[0] + 1
    sp = sparsify(Yp, x, G, W, Z, beta)
    assert sp.attempted and sp.m_star <= Yp.shape[0] + 1 < n0 == sp.m_star_dense
    assert abs(sp.objective - convex_objective(Yp, x, G, W, Z, beta)[0]) <= 1e-9 * sp.objective
    S = np.where(Yp @ G >= 0, 1.0, -1.0)
    assert (S * (Yp @ sp.W.T)).min() >= -1e-12 and (S * (Yp @ sp.Z.T)).min() >= -1e-12
    again = sparsify(Yp, x, G, sp.W, sp.Z, beta)
    assert again.m_star == sp.m_star and again.steps == 0
    skipped = sparsify(Yp, x, G, W, Z, beta, max_flops=1.0)
    assert not skipped.attempted and skipped.m_star == n0


def test_proven_small_problem_and_a_wide_primal_reaches_it():
    """solve_proven certifies p* on a tiny enumerable problem, and a primal at 4 m* from a few starts reaches it;
    no primal goes below the proven lower bound."""
    Yp, x = _tiny_problem(2, M=8)
    pb = t1.SmallProblem("tiny", 0, 0, 0, 0, 0, 0.0, 0, 0.05, Yp, x)
    opt = t1.solve_proven(pb)
    assert opt.certified and opt.gap <= t1.CERT_TOL and 1 <= opt.m_star <= opt.m_star_dense
    sw = t1.width_sweep(pb, [4 * opt.m_star], n_seeds=4, lbfgs_max_iter=3000, progress=False)
    rel = (sw.objective - opt.objective) / opt.objective
    assert rel.min() >= -1e-9 and rel.min() <= t1.REACH_TOL
    cl = t1.claims([pb], [opt], [sw])
    assert [c.name for c in cl] == ["theorem1.proven.reaches.0", "theorem1.proven.fraction.0",
                                    "theorem1.proven.critical_width.0"]
    assert all(c.kind == "ours" and c.basis == "optimum" for c in cl) and cl[0].holds


def test_converge_primal_rebalance_and_restarts():
    Yp, x = _tiny_problem(3, M=12)
    Y, xt = torch.from_numpy(Yp), torch.from_numpy(x)
    c = converge_primal(Y, xt, 1e-2, n_filters=5, init_seed=0, adam_epochs=0, rows_per_image=12, lbfgs_max_iter=500,
                        rel_tol=1e-12, compute_dtype=torch.float64, rebalance=True, restarts=5, progress=False)
    assert c.U.dtype == torch.float64
    alive = c.v.abs() > 0
    assert torch.allclose(torch.linalg.vector_norm(c.U[alive], dim=1), c.v[alive].abs(), rtol=1e-9)
    assert c.objective == pytest.approx(balanced_objective(c.loss, c.U, c.v, 1e-2), rel=1e-12)
    assert c.restarts <= 5 and c.history["phase"].count("lbfgs") <= 500
