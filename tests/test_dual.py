"""The convex dual of eq. (4), its fused training loss, and the primal rebuilt by eq. (5)."""

import pytest
import torch

from paper_utils.nets.dual import DualNet, dual_to_primal, sample_generators, sign_patterns
from paper_utils.nets.patches import extract_patches
from paper_utils.nets.primal import primal_objective


def _problem(seed=0, n=3, h=6, P=25):
    gen = torch.Generator().manual_seed(seed)
    Y = torch.randn(n, 1, h, h, generator=gen, dtype=torch.float64)
    X = torch.randn(n, 1, h, h, generator=gen, dtype=torch.float64)
    Yp = extract_patches(Y, 3)
    G = sample_generators(Yp, P, seed=seed)
    return Y, X, Yp, G


def test_dual_forward_equals_explicit_sum_over_patterns():
    """sum_i D_i Yp (w_i - z_i), with D_i = diag(1[Yp g_i >= 0]) built one pattern at a time."""
    Y, X, Yp, G = _problem()
    net = DualNet(G, 3, chunk_rows=7)
    with torch.no_grad():
        net.W.normal_(generator=torch.Generator().manual_seed(1))
        net.Z.normal_(generator=torch.Generator().manual_seed(2))
    explicit = torch.zeros(Yp.shape[0], dtype=torch.float64)
    for i in range(G.shape[1]):
        D_i = torch.diag((Yp @ G[:, i] >= 0).double())
        explicit += D_i @ Yp @ (net.W[i] - net.Z[i]).detach()
    torch.testing.assert_close(net.predict_patches(Yp), explicit, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(net(Y).reshape(-1), explicit, rtol=1e-12, atol=1e-12)


def test_generators_give_distinct_nonzero_patterns():
    _, _, Yp, G = _problem(P=40)
    D = sign_patterns(Yp, G)
    assert D.any(0).all(), "an all-zero pattern was kept"
    assert torch.unique(D.T, dim=0).shape[0] == G.shape[1], "duplicate patterns were kept"
    assert torch.equal(G, sample_generators(Yp, 40, seed=0)), "not deterministic"


def test_too_many_patterns_raises():
    Yp = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)  # at most 3 non-zero patterns
    with pytest.raises(ValueError, match="distinct"):
        sample_generators(Yp, 10)


def _feasible_point(Yp, G, seed=3):
    """w_i = D-consistent by construction: w_i = g_i * a_i (a_i >= 0) satisfies (2D_i - I) Yp w_i >= 0."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(G.shape[1], generator=gen, dtype=torch.float64)
    b = torch.rand(G.shape[1], generator=gen, dtype=torch.float64)
    b[::3] = 0.0  # some null filters: eq. (5) drops them
    return (G * a).T.contiguous(), (G * b).T.contiguous()


def test_rebuilt_primal_reproduces_dual_on_feasible_point():
    """Eq. (5) on an exactly feasible point: same predictions, same objective."""
    Y, X, Yp, G = _problem(P=30)
    W, Z = _feasible_point(Yp, G)
    net = DualNet(G, 3)
    with torch.no_grad():
        net.W.copy_(W); net.Z.copy_(Z)
    assert net.max_violation(Yp) == 0.0
    primal = net.to_primal()
    assert primal.n_filters == 30 + 20  # z has 10 null filters
    torch.testing.assert_close(primal(Y), net(Y), rtol=1e-10, atol=1e-12)
    beta = 0.05
    d = net.evaluate(Yp, X.reshape(-1), beta)
    p = primal_objective(primal, Y, X, beta)
    assert p["objective"] == pytest.approx(d["objective"], rel=1e-10)
    assert d["rebuilt_objective"] == pytest.approx(d["objective"], rel=1e-10)


def test_evaluate_rebuilt_objective_matches_eq5_network_when_infeasible():
    Y, X, Yp, G = _problem(P=12)
    net = DualNet(G, 3)
    with torch.no_grad():
        net.W.normal_(generator=torch.Generator().manual_seed(4)); net.Z.normal_(generator=torch.Generator().manual_seed(5))
    ev = net.evaluate(Yp, X.reshape(-1), 0.1)
    assert ev["max_violation"] > 0
    p = primal_objective(dual_to_primal(net.W.detach(), net.Z.detach(), 3), Y, X, 0.1)
    assert ev["rebuilt_objective"] == pytest.approx(p["objective"], rel=1e-10)


def test_fused_hinge_loss_gradient_matches_autograd():
    Y, X, Yp, G = _problem(P=15)
    x = X.reshape(-1)
    net = DualNet(G, 3, chunk_rows=13)
    with torch.no_grad():
        net.W.normal_(generator=torch.Generator().manual_seed(6)); net.Z.normal_(generator=torch.Generator().manual_seed(7))
    beta, rho = 0.01, 0.7
    out = net.penalized_loss(Yp, x, beta, rho)
    out["total"].backward()
    W = net.W.detach().clone().requires_grad_(); Z = net.Z.detach().clone().requires_grad_()
    D = sign_patterns(Yp, G).double(); s = 2 * D - 1
    M = Yp.shape[0]
    ref = (0.5 * ((D * (Yp @ (W - Z).T)).sum(1) - x).pow(2).mean()
           + rho / M * (torch.relu(-s * (Yp @ W.T)).sum() + torch.relu(-s * (Yp @ Z.T)).sum())
           + beta * (W.norm(dim=1).sum() + Z.norm(dim=1).sum()))
    ref.backward()
    assert float(out["total"].detach()) == pytest.approx(float(ref.detach()), rel=1e-12)
    torch.testing.assert_close(net.W.grad, W.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(net.Z.grad, Z.grad, rtol=1e-10, atol=1e-12)


def test_dual_shape_errors():
    with pytest.raises(ValueError, match="shape"):
        DualNet(torch.zeros(8, 4), 3)
