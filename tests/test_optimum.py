"""The optimum basis: converged primal (patch-form objective, stopping rule), claims pairing in the report."""

import numpy as np
import pytest
import torch

from paper_utils.report.claims import Claim
from paper_utils.training.convergence import converge_primal, kaiming_init, patch_objective
from paper_utils.nets.patches import extract_patches
from paper_utils.nets.primal import PrimalNet, primal_objective
from paper_utils.report.claims_report import pair_claims, render_markdown


def _problem(n=6, h=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(n, 1, h, h, generator=g)
    noisy = clean + 0.3 * torch.randn(n, 1, h, h, generator=g)
    return noisy, clean


def test_patch_objective_equals_conv_network_and_autograd():
    noisy, clean = _problem()
    Yp, x = extract_patches(noisy, 3).double(), clean.reshape(-1).double()
    U, v = kaiming_init(16, 9, seed=3, dtype=torch.float64)
    obj, loss, gU, gv = patch_objective(Yp, x, U, v, 1e-3, grad=True, chunk_rows=50, compute_dtype=torch.float64)
    net = PrimalNet.from_patch_weights(U, v, 3)
    ref = primal_objective(net, noisy.double(), clean.double(), 1e-3)
    assert obj == pytest.approx(ref["objective"], rel=1e-12) and loss == pytest.approx(ref["loss"], rel=1e-12)
    Ua, va = U.clone().requires_grad_(), v.clone().requires_grad_()
    f = 0.5 * ((Yp @ Ua.T).clamp_min(0) @ va - x).pow(2).mean() + 0.5e-3 * (Ua.pow(2).sum() + va.pow(2).sum())
    f.backward()
    torch.testing.assert_close(gU, Ua.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gv, va.grad, rtol=1e-10, atol=1e-12)


def test_patch_objective_rejects_bad_shapes():
    with pytest.raises(ValueError, match="need Yp"):
        patch_objective(torch.zeros(10, 9), torch.zeros(10), torch.zeros(4, 8), torch.zeros(4), 1e-5)


def test_converge_primal_meets_rule_on_a_small_problem_and_is_deterministic():
    noisy, clean = _problem()
    Yp, x = extract_patches(noisy, 3), clean.reshape(-1)
    kw = dict(n_filters=8, init_seed=1, adam_epochs=3, batch_size=2, rows_per_image=64, lbfgs_max_iter=3000,
              rel_tol=1e-8, progress=False, compute_dtype=torch.float64)
    a = converge_primal(Yp, x, 1e-3, **kw)
    b = converge_primal(Yp, x, 1e-3, **kw)
    assert a.converged and "stopping rule met" in a.stop_reason
    # a kink minimum: the objective has stopped moving while the gradient norm stays finite (module docstring)
    assert np.isfinite(a.grad_norm)
    assert a.objective == b.objective and torch.equal(a.U, b.U)
    # monotone in the L-BFGS phase, and the network reproduces the reported objective
    lb = [o for p, o in zip(a.history["phase"], a.history["objective"]) if p == "lbfgs"]
    assert all(later <= earlier + 1e-12 for earlier, later in zip(lb, lb[1:]))
    net = a.to_primal(3).double()
    assert primal_objective(net, noisy.double(), clean.double(), 1e-3)["objective"] == pytest.approx(a.objective, rel=1e-6)


def test_gradient_test_when_asked_for():
    noisy, clean = _problem()
    Yp, x = extract_patches(noisy, 3), clean.reshape(-1)
    r = converge_primal(Yp, x, 1e-3, n_filters=8, init_seed=1, adam_epochs=0, rows_per_image=64, lbfgs_max_iter=200,
                        rel_tol=1e-8, grad_tol=1e-12, progress=False, compute_dtype=torch.float64)
    assert not r.converged and r.grad_norm > 1e-12


def test_budget_stop_is_not_reported_as_convergence():
    noisy, clean = _problem()
    Yp, x = extract_patches(noisy, 3), clean.reshape(-1)
    r = converge_primal(Yp, x, 1e-3, n_filters=8, init_seed=0, adam_epochs=0, rows_per_image=64, lbfgs_max_iter=3,
                        progress=False)
    assert not r.converged and "NOT converged" in r.stop_reason


def test_converge_primal_input_checks():
    Yp, x = torch.zeros(128, 9), torch.zeros(128)
    with pytest.raises(ValueError, match="n_filters"):
        converge_primal(Yp, x, 1e-5, rows_per_image=64)
    with pytest.raises(ValueError, match="both U0 and v0"):
        converge_primal(Yp, x, 1e-5, U0=torch.zeros(2, 9), rows_per_image=64)
    with pytest.raises(ValueError, match="rows_per_image"):
        converge_primal(Yp, x, 1e-5, n_filters=2, rows_per_image=100)


def test_claim_basis_is_validated():
    assert Claim("a", "b", 1.0, 1.0, True).basis == "published"
    with pytest.raises(ValueError, match="unknown basis"):
        Claim("a", "b", 1.0, 1.0, True, basis="converged")


def _record(claims):
    return {"notebook": "01_x", "device": "cpu", "date": "2026-11-30T00:00:00Z", "code_version": "abc",
            "claims": [{**c.__dict__} for c in claims]}


def test_report_pairs_published_and_optimum_verdicts():
    records = [_record([
        Claim("fig2.zero_gap.g0.5.obj", "objectives coincide", 0.2, 0.05, False),
        Claim("fig2.optimum.zero_gap.g0.5.obj", "objectives coincide at the optimum", 0.01, 0.05, True, basis="optimum"),
        Claim("fig2.exact.certified_gap.g0.5", "certified", 1e-9, 1e-4, True, basis="optimum"),
        Claim("fig10.patterns_needed.sigma0.5", "P", 2000, 2.0, True),
    ])]
    figures = pair_claims(records)
    assert list(figures) == ["Figure 2", "Figure 10"]
    row = next(r for r in figures["Figure 2"] if r["key"] == "fig2.zero_gap.g0.5.obj")
    assert not row["published"]["holds"] and row["optimum"]["holds"]
    text = render_markdown(records, "cpu")
    assert "**optimum only** (1): `fig2.zero_gap.g0.5.obj`" in text
    assert "optimum 1 of 1 hold" in text and "published 1 of 1 hold" in text
    assert np.sum([line.startswith("| `fig2") for line in text.splitlines()]) == 2
