"""Theorem 1's bracket can be checked from its arrays alone (numpy, no paper_utils in the checker).

``recompute`` below rebuilds the patches of eq. (3) from the images (``unfold(k = 3, padding = 1)``
order: row n H W + i W + j, column ki * 3 + kj), then both objectives and the convex point's
feasibility. It is checked against the package on a small problem, then applied to the committed
``results/cpu/bracket_sigma0.5.npz`` when present.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "results" / "cpu" / "bracket_sigma0.5.npz"


def numpy_patches(images: np.ndarray, k: int = 3) -> np.ndarray:
    """(N, H, W) -> (N H W, k k): zero padding k // 2, column ki * k + kj (a conv2d weight's order)."""
    n, h, w = images.shape
    p = k // 2
    padded = np.pad(images.astype(np.float64), ((0, 0), (p, p), (p, p)))
    cols = [padded[:, ki:ki + h, kj:kj + w].reshape(-1) for ki in range(k) for kj in range(k)]
    return np.stack(cols, axis=1)


def recompute(arrays, chunk: int = 20000) -> dict:
    """Both objectives and the convex point's largest constraint violation, from the arrays alone.

    convex (eq. 4): 1/(2M) ||sum_i D_i Yp (w_i - z_i) - x||^2 + beta sum_i (||w_i|| + ||z_i||),
    D_i = diag(1[Yp g_i >= 0]); feasibility (2 D_i - I) Yp w_i >= 0 and the same for z_i.
    primal (eq. 2): 1/(2M) ||(Yp U^T)_+ v - x||^2 + beta / 2 (||U||^2 + ||v||^2).
    """
    Yp = numpy_patches(arrays["noisy"])
    x = arrays["clean"].astype(np.float64).reshape(-1)
    G, W, Z = (np.asarray(arrays[k], dtype=np.float64) for k in ("G", "W", "Z"))
    U, v = np.asarray(arrays["U"], dtype=np.float64), np.asarray(arrays["v"], dtype=np.float64)
    beta = float(arrays["beta"])
    M = Yp.shape[0]
    sq_c = sq_p = 0.0
    worst = scale = 0.0
    for s in range(0, M, chunk):
        Yc, xc = Yp[s:s + chunk], x[s:s + chunk]
        on = Yc @ G >= 0
        SW, SZ = Yc @ W.T, Yc @ Z.T
        r = np.where(on, SW - SZ, 0.0).sum(1) - xc
        sq_c += r @ r
        worst = max(worst, np.where(on, -SW, SW).max(), np.where(on, -SZ, SZ).max())
        scale = max(scale, np.abs(SW).max(), np.abs(SZ).max())
        rp = np.maximum(Yc @ U.T, 0.0) @ v - xc
        sq_p += rp @ rp
    convex = sq_c / (2 * M) + beta * (np.linalg.norm(W, axis=1).sum() + np.linalg.norm(Z, axis=1).sum())
    primal = sq_p / (2 * M) + 0.5 * beta * ((U ** 2).sum() + (v ** 2).sum())
    return {"convex": convex, "primal": primal, "max_violation": max(worst, 0.0) / scale if scale else 0.0}


def test_numpy_checker_agrees_with_the_package():
    from paper_utils.dual_solver import solve_dual
    from paper_utils.nets.dual import sample_generators
    from paper_utils.nets.patches import extract_patches
    from paper_utils.training.convergence import converge_primal

    gen = np.random.default_rng(0)
    noisy = gen.normal(size=(3, 10, 9)).astype(np.float32)
    clean = gen.normal(size=(3, 10, 9)).astype(np.float32)
    Yp = extract_patches(torch.from_numpy(noisy)[:, None], 3)
    assert np.array_equal(Yp.numpy(), numpy_patches(noisy).astype(np.float32))
    x = torch.from_numpy(clean).reshape(-1)
    beta = 1e-2
    G = sample_generators(Yp.double(), 12, seed=0)
    sol = solve_dual(Yp.double(), x.double(), G, beta, tol=1e-8)
    primal = converge_primal(Yp.double(), x.double(), beta, n_filters=6, init_seed=0, adam_epochs=0,
                             rows_per_image=90, lbfgs_max_iter=20, compute_dtype=torch.float64, progress=False)
    arrays = {"noisy": noisy, "clean": clean, "G": sol.G, "W": sol.W, "Z": sol.Z, "U": primal.U, "v": primal.v,
              "beta": beta}
    out = recompute({k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in arrays.items()}, chunk=37)
    assert abs(out["convex"] - sol.objective) <= 1e-9 * sol.objective
    assert out["max_violation"] <= 1e-9
    # the stored primal is float32: its objective recomputed in float64 matches to float32 rounding
    assert abs(out["primal"] - primal.objective) <= 1e-5 * primal.objective


@pytest.mark.skipif(not COMMITTED.exists(), reason="results/cpu/bracket_sigma0.5.npz not committed yet "
                                                   "(python -m paper_utils.figures.theorem1_bracket)")
def test_committed_bracket_recomputes_from_its_arrays():
    arrays = np.load(COMMITTED)
    assert arrays["noisy"].shape == arrays["clean"].shape == (int(arrays["n_images"]), 28, 28)
    assert arrays["noisy"].dtype == np.float32
    out = recompute(arrays)
    assert abs(out["convex"] - float(arrays["objective_convex"])) <= 1e-6 * float(arrays["objective_convex"])
    assert abs(out["primal"] - float(arrays["objective_primal"])) <= 1e-5 * float(arrays["objective_primal"])
    assert out["max_violation"] <= 1e-7, "the convex point must be feasible"
    summary = json.loads(COMMITTED.with_suffix(".json").read_text())
    assert summary["best_known"] <= min(out["convex"], out["primal"]) * (1 + 1e-6)


def test_bracket_pipeline_at_smoke_scale(tmp_path):
    """run_bracket end to end on the smoke data with tiny budgets: every number is a feasible objective,
    U is their minimum, the arrays recompute to the stored objectives, and the claims carry the keys."""
    from paper_utils.figures import theorem1_bracket as tb
    from paper_utils.pipeline.cache import Cache

    settings = dict(seed_lbfgs_iter=5, widths=(16,), width_lbfgs_iter=5, gen_rounds=1, gen_add=16, gen_n_init=16)
    b = tb.run_bracket(0.5, scale="smoke", settings=settings, cache=Cache(tmp_path / "cache"), progress=False,
                       log=lambda *a: None)
    objectives = [r["objective"] for r in b["primal_seeds"].values()] + \
        [r["objective"] for r in b["primal_widths"].values()] + \
        [b["convex_from_primal"]["objective"], b["convex_from_random"]["objective"], b["convex_random_P2000"]["objective"]]
    assert b["best_known"] == min(objectives)
    assert b["proven_lower_bound"] <= b["best_known"]
    out = recompute(b["arrays"])
    assert abs(out["convex"] - float(b["arrays"]["objective_convex"])) <= 1e-6 * out["convex"]
    assert abs(out["primal"] - float(b["arrays"]["objective_primal"])) <= 1e-5 * out["primal"]
    assert out["max_violation"] <= 1e-7
    path_json, path_npz = tb.save_bracket(b, root=tmp_path)
    assert tb.load_bracket(0.5, root=tmp_path)["best_known"] == b["best_known"] and path_npz.exists()
    (claim,) = tb.bracket_claims(b)
    assert claim.name == "theorem1.bracket.sigma0.5" and claim.basis == "optimum"
    assert {"n_images", "best_known", "primal_seeds", "primal_converged", "primal_widths", "convex_from_primal",
            "convex_from_random", "convex_random_P2000", "final_search_violation_beta",
            "proven_lower_bound", "m_star_U", "best_primal_balanced"} <= set(claim.details)
    assert claim.kind == "ours" and claim.details["best_primal_balanced"] <= claim.details["best_primal_trained"]
    assert len(tb.bracket_rows(b)) == len(objectives)    # m = 512 repeats the best seed; + the lower bound


def test_grow_units_keeps_the_network_and_feeds_every_unit():
    from paper_utils.figures import theorem1_bracket as tb

    g = torch.Generator().manual_seed(0)
    U, v = torch.randn(8, 9, generator=g), torch.randn(8, generator=g)
    U2, v2 = tb.grow_units(U, v, 20, seed=3, v_init=1e-3)
    assert U2.shape == (20, 9) and torch.equal(U2[:8], U) and torch.equal(v2[:8], v)
    assert torch.all(v2[8:].abs() == 1e-3) and torch.all(U2[8:].norm(dim=1) > 0)
    Y = torch.randn(50, 9, generator=g)
    f, f2 = torch.relu(Y @ U.T) @ v, torch.relu(Y @ U2.T) @ v2
    assert float((f2 - f).abs().max()) <= 12 * 1e-3 * float(torch.relu(Y @ U2[8:].T).max())
    with pytest.raises(ValueError):
        tb.grow_units(U, v, 8, seed=0, v_init=1e-3)

