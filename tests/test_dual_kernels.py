"""The fused numba kernels of the dual (eq. 4, 5, 8) against the plain formulas.

Reference: the explicit (rows, P) block in float64 (``Yp @ G``, ``Yp @ W^T``, ...), the mathematics the
kernels fuse. Shapes cover odd row counts (the two-row pairing), rows that do not fill a block, patterns
that do not fill a tile (zero padding), k = 3 (d = 9) and d = 16 (the largest the fused path takes),
residual targets, the gradient (gradcheck through :class:`DualNet`'s loss in float64), and the MRI kernel
k = 7 (d = 49), which :class:`DualNet` routes to the chunked matmul path.
"""

import pytest
import torch

from paper_utils.nets import dual_kernels
from paper_utils.nets.dual import DualNet

pytestmark = pytest.mark.skipif(not dual_kernels.available(), reason="numba is not importable")


def _data(M, d, P, dtype, seed=0, scale=0.3):
    gen = torch.Generator().manual_seed(seed)
    Y = torch.randn(M, d, generator=gen, dtype=torch.float64)
    x = torch.randn(M, generator=gen, dtype=torch.float64)
    G = torch.randn(d, P, generator=gen, dtype=torch.float64)
    W = scale * torch.randn(P, d, generator=gen, dtype=torch.float64)
    Z = scale * torch.randn(P, d, generator=gen, dtype=torch.float64)
    return [t.to(dtype) for t in (Y, x, G, W, Z)]


def _plain(Y, x, G, W, Z, rho):
    """Everything from the explicit float64 (M, P) blocks."""
    Y, x, G, W, Z = (t.double() for t in (Y, x, G, W, Z))
    M = Y.shape[0]
    on = (Y @ G) >= 0
    SW, SZ = Y @ W.T, Y @ Z.T
    r = torch.where(on, SW - SZ, 0.0).sum(1) - x
    r_relu = (SW.clamp_min(0) - SZ.clamp_min(0)).sum(1) - x
    vw, vz = torch.where(on, -SW, SW), torch.where(on, -SZ, SZ)
    hinge = vw.clamp_min(0).sum() + vz.clamp_min(0).sum()
    rr = (r / M).unsqueeze(1)
    sign = torch.where(on, -1.0, 1.0).double()  # python scalars in torch.where give the default (float32) dtype
    cw = torch.where(on, rr, 0.0) + rho / M * torch.where(vw > 0, sign, 0.0)
    cz = torch.where(on, -rr, 0.0) + rho / M * torch.where(vz > 0, sign, 0.0)
    return {"predict": torch.where(on, SW - SZ, 0.0).sum(1), "sq": float((r * r).sum()),
            "sq_relu": float((r_relu * r_relu).sum()), "worst": max(0.0, float(torch.maximum(vw, vz).max())),
            "scale": float(torch.maximum(SW.abs(), SZ.abs()).max()), "hinge": float(hinge),
            "grad": torch.cat([cw.T @ Y, cz.T @ Y])}


def _rel(a, b):
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


CASES = [  # (M, d, P, block_rows): odd M, a partial last block, P not a multiple of the tile
    (1, 9, 5, 512),
    (517, 9, 300, 64),
    (1000, 9, dual_kernels.TILE, 512),
    (203, dual_kernels.MAX_FUSED_D, 150, 50),
]


@pytest.mark.parametrize("M,d,P,block_rows", CASES)
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_kernels_match_the_plain_formulas(M, d, P, block_rows, dtype, tol):
    if d != 9 and dtype == torch.float64:
        pytest.skip("float64 is covered at d = 9 (each (d, dtype) is a compile of several seconds)")
    Y, x, G, W, Z = _data(M, d, P, dtype)
    rho = 0.7
    ref = _plain(Y, x, G, W, Z, rho)
    pred = dual_kernels.predict(Y, G, (W - Z).T, block_rows=block_rows)
    assert pred.dtype == dtype and pred.shape == (M,)
    assert _rel(pred, ref["predict"]) < tol
    sq, sq_relu, worst, scale = dual_kernels.evaluate(Y, x, G, W, Z, block_rows=block_rows)
    for got, want in ((sq, ref["sq"]), (sq_relu, ref["sq_relu"]), (worst, ref["worst"]), (scale, ref["scale"])):
        assert abs(got - want) <= tol * max(abs(want), 1.0)
    grad, sq2, hinge = dual_kernels.penalized(Y, x, G, W, Z, rho, block_rows=block_rows)
    assert grad.shape == (2 * P, d) and grad.dtype == dtype
    assert _rel(grad, ref["grad"]) < tol
    assert abs(sq2 - ref["sq"]) <= tol * max(ref["sq"], 1.0)
    assert abs(hinge - ref["hinge"]) <= tol * max(ref["hinge"], 1.0)


def test_kernels_are_deterministic():
    Y, x, G, W, Z = _data(3001, 9, 200, torch.float32, seed=3)
    first = dual_kernels.penalized(Y, x, G, W, Z, 0.1)
    again = dual_kernels.penalized(Y, x, G, W, Z, 0.1)
    assert torch.equal(first[0], again[0]) and first[1:] == again[1:]
    assert dual_kernels.evaluate(Y, x, G, W, Z) == dual_kernels.evaluate(Y, x, G, W, Z)


def _nets(G, residual, seed=5):
    fused = DualNet(G, 3, residual=residual, fast=True)
    plain = DualNet(G, 3, residual=residual, fast=False, chunk_rows=37)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        fused.W.copy_(0.2 * torch.randn(fused.W.shape, generator=gen, dtype=G.dtype))
        fused.Z.copy_(0.2 * torch.randn(fused.Z.shape, generator=gen, dtype=G.dtype))
        plain.W.copy_(fused.W)
        plain.Z.copy_(fused.Z)
    return fused, plain


@pytest.mark.parametrize("residual", [False, True])
def test_dualnet_fused_path_matches_the_chunked_path(residual, monkeypatch):
    """DualNet(fast=True) on CPU runs the fused kernels; its loss, gradient, evaluation and images equal
    the chunked matmul path's in float64 (residual targets x = X - Y included)."""
    monkeypatch.delenv("PAPER_UTILS_NO_COMPILE", raising=False)
    gen = torch.Generator().manual_seed(0)
    Yimg = torch.randn(3, 1, 9, 9, generator=gen, dtype=torch.float64)
    Ximg = torch.randn(3, 1, 9, 9, generator=gen, dtype=torch.float64)
    from paper_utils.nets.patches import extract_patches

    Yp = extract_patches(Yimg, 3)
    x = (Ximg - Yimg).reshape(-1) if residual else Ximg.reshape(-1)
    G = torch.randn(9, 140, generator=gen, dtype=torch.float64)
    fused, plain = _nets(G, residual)
    out = {}
    for name, net in (("fused", fused), ("plain", plain)):
        parts = net.penalized_loss(Yp, x, 1e-3, 0.5)
        parts["total"].backward()
        out[name] = (parts, net.W.grad.clone(), net.Z.grad.clone(), net.evaluate(Yp, x, 1e-3), net(Yimg))
    (pf, gWf, gZf, ef, imf), (pp, gWp, gZp, ep, imp) = out["fused"], out["plain"]
    for key in ("total", "loss", "reg", "hinge"):
        torch.testing.assert_close(pf[key], pp[key], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(gWf, gWp, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(gZf, gZp, rtol=1e-12, atol=1e-14)
    for key in ef:
        assert ef[key] == pytest.approx(ep[key], rel=1e-12, abs=1e-14), key
    torch.testing.assert_close(imf, imp, rtol=1e-12, atol=1e-12)


def test_fused_loss_gradient_passes_gradcheck():
    """The hinge-penalised loss through the fused kernel, differentiated by finite differences (float64)."""
    gen = torch.Generator().manual_seed(2)
    Yp = torch.randn(301, 9, generator=gen, dtype=torch.float64)
    x = torch.randn(301, generator=gen, dtype=torch.float64)
    G = torch.randn(9, 20, generator=gen, dtype=torch.float64)
    net = DualNet(G, 3, fast=True)
    W0 = 0.3 * torch.randn(20, 9, generator=gen, dtype=torch.float64)
    Z0 = 0.3 * torch.randn(20, 9, generator=gen, dtype=torch.float64)

    def loss(W, Z):
        with torch.no_grad():
            net.W.copy_(W)
            net.Z.copy_(Z)
        from paper_utils.nets.dual import _HingeDualLoss

        return _HingeDualLoss.apply(Yp, x, W, Z, G, 0.4, 512, True)[0]

    W = W0.clone().requires_grad_(True)
    Z = Z0.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(loss, (W, Z), eps=1e-7, atol=1e-6, rtol=1e-5)


def test_mri_kernel_size_takes_the_chunked_path(monkeypatch):
    """k = 7 (d = 49): DualNet(fast=True) on CPU keeps the chunked matmul path, which agrees with eager."""
    from paper_utils.nets import dual as dual_module

    eager = {"penalized": dual_module._penalized_chunk, "predict": dual_module._predict_chunk,
             "evaluate": dual_module._evaluate_chunk}
    monkeypatch.setattr(dual_module, "_kernel", lambda name, fast: eager[name])  # no inductor compile in a unit test
    Y, x, G, W, Z = _data(700, 49, 60, torch.float64)
    assert not dual_module._fused(True, Y)
    net = DualNet(G, 7, fast=True)
    with torch.no_grad():
        net.W.copy_(W)
        net.Z.copy_(Z)
    ref = _plain(Y, x, G, W, Z, 0.0)
    torch.testing.assert_close(net.predict_patches(Y), ref["predict"], rtol=1e-12, atol=1e-12)
    assert net.evaluate(Y, x, 0.0)["loss"] == pytest.approx(ref["sq"] / (2 * 700), rel=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_cuda_tensors_take_the_chunked_path():
    """On CUDA, DualNet(fast=True) keeps the (compiled) chunked path; it matches the CPU fused kernels."""
    Y, x, G, W, Z = _data(2000, 9, 300, torch.float32)
    net_cpu = DualNet(G, 3, fast=True)
    net_gpu = DualNet(G.cuda(), 3, fast=True)
    with torch.no_grad():
        for net, dev in ((net_cpu, "cpu"), (net_gpu, "cuda")):
            net.W.copy_(W.to(dev))
            net.Z.copy_(Z.to(dev))
    a = net_cpu.evaluate(Y, x, 1e-3)
    b = net_gpu.evaluate(Y.cuda(), x.cuda(), 1e-3)
    assert a["objective"] == pytest.approx(b["objective"], rel=1e-5)
