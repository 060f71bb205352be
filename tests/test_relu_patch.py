"""The fused patch-form kernels (paper_utils.nets.relu_patch) against the plain formula of eq. (3).

Float64 paths must agree with the plain float64 formula to float64 precision; float32 paths to float32
precision. Odd chunk tails, residual networks, k = 7 (d = 49), several channels and, when present, CUDA.
Each kernel runs both ways on CPU with d <= 16: chunked (``fused=False``) and through the fused numba
kernels of paper_utils.nets.primal_kernels (odd row counts, a tile of filters not filled).
"""

import pytest
import torch

from paper_utils.nets import numba_runtime
from paper_utils.nets.patches import extract_patches
from paper_utils.nets.primal import PrimalNet, primal_objective
from paper_utils.nets.relu_patch import ReluPatchNet, relu_patch_forward, relu_patch_grads, relu_patch_sq_grad
from paper_utils.training.convergence import patch_objective

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
#: kernel paths: chunked, and fused where numba runs
PATHS = [False] + ([True] if numba_runtime.available() else [])


def _skip_unfusable(fused, device, d):
    if fused and (device != "cpu" or d > numba_runtime.MAX_FUSED_D):
        pytest.skip("the fused kernels take CPU tensors with d <= 16")


def plain(Yp, x, U, v):
    """The plain float64 formula: f = relu(Yp U^T) v, 1/2 ||f - x||^2 and its autograd gradients."""
    U = U.detach().double().requires_grad_(True)
    v = v.detach().double().requires_grad_(True)
    f = (Yp.double() @ U.T).clamp_min(0) @ v
    half_sq = 0.5 * (f - x.double()).pow(2).sum()
    half_sq.backward()
    return f.detach(), 2 * half_sq.detach(), U.grad, v.grad


def problem(M=1000, d=9, m=37, seed=0, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    Yp = torch.randn(M, d, generator=gen, dtype=torch.float64)
    x = torch.randn(M, generator=gen, dtype=torch.float64)
    U = torch.randn(m, d, generator=gen, dtype=torch.float64) / d ** 0.5
    v = torch.randn(m, generator=gen, dtype=torch.float64) / m ** 0.5
    return Yp.to(device), x.to(device), U.to(device), v.to(device)


def rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("fused", PATHS)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("M,d,m,chunk", [(1000, 9, 37, 64), (1000, 9, 37, 333), (997, 49, 37, 100), (50, 9, 37, 4096),
                                         (1, 9, 37, 7), (1001, 9, 300, 64), (517, 16, 129, 64)])
def test_float64_kernel_equals_plain_formula(fused, device, M, d, m, chunk):
    _skip_unfusable(fused, device, d)
    Yp, x, U, v = problem(M, d, m=m, device=device)
    f_ref, sq_ref, gU_ref, gv_ref = plain(Yp, x, U, v)
    f = relu_patch_forward(Yp, U, v, chunk_rows=chunk, fused=fused)
    assert f.dtype == torch.float64 and rel(f, f_ref) < 1e-13
    sq, g = relu_patch_sq_grad(Yp, x, U, v, chunk_rows=chunk, compute_dtype=torch.float64, fused=fused)
    gU, gv = relu_patch_grads(U, v, g, torch.float64)
    assert abs(float(sq) - float(sq_ref)) <= 1e-13 * float(sq_ref)
    assert rel(gU, gU_ref) < 1e-12 and rel(gv, gv_ref) < 1e-12


@pytest.mark.parametrize("fused", PATHS)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("d,chunk", [(9, 100), (49, 257)])
def test_float32_kernel_equals_plain_formula_to_float32_precision(fused, device, d, chunk):
    _skip_unfusable(fused, device, d)
    Yp, x, U, v = problem(2000, d, m=64, device=device)
    f_ref, sq_ref, gU_ref, gv_ref = plain(Yp, x, U, v)
    sq, g = relu_patch_sq_grad(Yp.float(), x.float(), U, v, chunk_rows=chunk, compute_dtype=torch.float32,
                               fused=fused)
    gU, gv = relu_patch_grads(U, v, g, torch.float32)
    assert sq.dtype == torch.float64 and g.dtype == torch.float64      # float64 sums across chunks
    assert abs(float(sq) - float(sq_ref)) <= 1e-5 * float(sq_ref)
    assert rel(gU, gU_ref) < 1e-4 and rel(gv, gv_ref) < 1e-4


@pytest.mark.parametrize("fused", PATHS)
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("d", [9, 49])
def test_autograd_function_matches_plain_gradients(fused, device, d):
    _skip_unfusable(fused, device, d)
    Yp, x, U, v = problem(1203, d, m=20, device=device)
    _, _, gU_ref, gv_ref = plain(Yp, x, U, v)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-4)):
        Uw = U.detach().to(dtype).clone().requires_grad_(True)
        vw = v.detach().to(dtype).clone().requires_grad_(True)
        f = ReluPatchNet.apply(Yp.to(dtype), Uw, vw, 100, fused)     # chunk tail of 3 rows
        (0.5 * (f - x.to(dtype)).pow(2).sum()).backward()
        assert rel(Uw.grad.double(), gU_ref) < tol and rel(vw.grad.double(), gv_ref) < tol


@pytest.mark.parametrize("k,channels,residual", [(3, 1, False), (3, 1, True), (7, 1, False), (7, 1, True),
                                                  (3, 2, False)])
def test_patch_forward_equals_conv_network(k, channels, residual):
    gen = torch.Generator().manual_seed(1)
    net = PrimalNet(11, k, channels, residual=residual, generator=gen).double()
    images = torch.randn(3, channels, 13, 10, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        assert rel(net.patch_forward(images), net(images)) < 1e-13
    clean = torch.randn(3, 1, 13, 10, generator=gen, dtype=torch.float64)
    # gradients through the patch form equal the conv2d network's
    loss_conv = 0.5 * (net(images) - clean).pow(2).mean()
    grads_conv = torch.autograd.grad(loss_conv, list(net.parameters()))
    loss_patch = 0.5 * (net.patch_forward(images) - clean).pow(2).mean()
    grads_patch = torch.autograd.grad(loss_patch, list(net.parameters()))
    for a, b in zip(grads_patch, grads_conv):
        assert rel(a, b) < 1e-12


def test_primal_objective_patch_form_equals_conv_form():
    gen = torch.Generator().manual_seed(2)
    net = PrimalNet(16, 3, residual=True, generator=gen).double()
    noisy = torch.rand(7, 1, 12, 12, generator=gen, dtype=torch.float64)
    clean = torch.rand(7, 1, 12, 12, generator=gen, dtype=torch.float64)
    out = primal_objective(net, noisy, clean, 1e-3, batch_size=3)
    with torch.no_grad():
        loss = 0.5 * float((net(noisy) - clean).pow(2).mean())
    assert abs(out["loss"] - loss) <= 1e-14 * loss


def test_patch_objective_uses_float64_sums_and_matches_images():
    """patch_objective on patches equals eq. (2) on the images (conv form), float64 path."""
    gen = torch.Generator().manual_seed(3)
    net = PrimalNet(9, 3, generator=gen).double()
    noisy = torch.randn(4, 1, 9, 11, generator=gen, dtype=torch.float64)
    clean = torch.randn(4, 1, 9, 11, generator=gen, dtype=torch.float64)
    U, v = net.patch_weights()
    Yp = extract_patches(noisy, 3)
    obj, loss = patch_objective(Yp, clean.reshape(-1), U, v, 1e-3, chunk_rows=37, compute_dtype=torch.float64)
    ref = primal_objective(net, noisy, clean, 1e-3)
    assert abs(obj - ref["objective"]) <= 1e-13 * ref["objective"]


def test_kernels_reject_bad_shapes():
    with pytest.raises(ValueError, match="need Yp"):
        relu_patch_forward(torch.zeros(5, 9), torch.zeros(3, 8), torch.zeros(3))
    with pytest.raises(ValueError, match="need Yp"):
        relu_patch_sq_grad(torch.zeros(5, 9), torch.zeros(4), torch.zeros(3, 9), torch.zeros(3))
    with pytest.raises(ValueError, match="chunk_rows"):
        relu_patch_forward(torch.zeros(5, 9), torch.zeros(3, 9), torch.zeros(3), chunk_rows=-1)
    with pytest.raises(ValueError, match="d <= 16"):
        relu_patch_forward(torch.zeros(5, 49), torch.zeros(3, 49), torch.zeros(3), fused=True)


@pytest.mark.skipif(not numba_runtime.available(), reason="numba is not importable")
def test_fused_kernels_are_deterministic_and_route_by_default(monkeypatch):
    """Same inputs, same bits (fixed blocks per thread); the default path on CPU at d = 9 is the fused one,
    and $PAPER_UTILS_NO_COMPILE turns it off."""
    Yp, x, U, v = problem(3001, 9, m=200)
    Yp, x, U, v = Yp.float(), x.float(), U.float(), v.float()
    first = relu_patch_sq_grad(Yp, x, U, v)
    again = relu_patch_sq_grad(Yp, x, U, v)
    assert float(first[0]) == float(again[0]) and torch.equal(first[1], again[1])
    monkeypatch.delenv("PAPER_UTILS_NO_COMPILE", raising=False)
    assert torch.equal(relu_patch_sq_grad(Yp, x, U, v)[1], relu_patch_sq_grad(Yp, x, U, v, fused=True)[1])
    monkeypatch.setenv("PAPER_UTILS_NO_COMPILE", "1")
    assert torch.equal(relu_patch_sq_grad(Yp, x, U, v)[1], relu_patch_sq_grad(Yp, x, U, v, fused=False)[1])
