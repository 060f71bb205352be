"""Patch matrix (eq. 3) and the primal network (eq. 1-2)."""

import pytest
import torch
import torch.nn.functional as F

from paper_utils.nets.patches import extract_patches, pixels, to_images
from paper_utils.nets.primal import PrimalNet, primal_objective


@pytest.mark.parametrize("k,c", [(3, 1), (5, 2), (7, 1)])
def test_patch_matrix_times_filter_equals_conv2d(k, c):
    gen = torch.Generator().manual_seed(0)
    Y = torch.randn(3, c, 9, 11, generator=gen, dtype=torch.float64)
    u = torch.randn(4, c, k, k, generator=gen, dtype=torch.float64)
    Yp = extract_patches(Y, k)
    assert Yp.shape == (3 * 9 * 11, c * k * k)
    conv = F.conv2d(Y, u, padding=k // 2)  # (N, 4, H, W)
    expected = conv.permute(0, 2, 3, 1).reshape(-1, 4)
    torch.testing.assert_close(Yp @ u.reshape(4, -1).T, expected, rtol=1e-12, atol=1e-12)


def test_pixels_round_trip():
    X = torch.randn(2, 1, 5, 6)
    torch.testing.assert_close(to_images(pixels(X), (2, 5, 6)), X)


def test_patch_errors():
    with pytest.raises(ValueError, match="odd"):
        extract_patches(torch.zeros(1, 1, 4, 4), 2)
    with pytest.raises(ValueError, match="shape"):
        extract_patches(torch.zeros(4, 4), 3)


def test_primal_patch_form_matches_network():
    gen = torch.Generator().manual_seed(1)
    net = PrimalNet(6, 3, generator=gen).double()
    Y = torch.randn(2, 1, 7, 7, generator=gen, dtype=torch.float64)
    U, v = net.patch_weights()
    patch_form = torch.relu(extract_patches(Y, 3) @ U.T) @ v  # eq. (3)
    torch.testing.assert_close(net(Y).reshape(-1), patch_form)
    rebuilt = PrimalNet.from_patch_weights(U, v, 3)
    torch.testing.assert_close(rebuilt(Y), net(Y))


def test_primal_kaiming_uniform_bounds_and_seed():
    a = PrimalNet(512, 3, generator=torch.Generator().manual_seed(0))
    b = PrimalNet(512, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.conv1.weight, b.conv1.weight)
    bound = (6.0 / 9) ** 0.5
    assert a.conv1.weight.abs().max() <= bound
    assert a.conv1.weight.abs().max() > 0.95 * bound  # actually spans the range


def test_primal_objective_normalisation():
    """Loss averaged over samples and pixels, beta not averaged (paper App. B)."""
    net = PrimalNet(2, 3).double()
    Y = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    X = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    out = primal_objective(net, Y, X, beta=0.3, batch_size=2)
    expected_loss = ((net(Y) - X) ** 2).sum().item() / (2 * 48)
    reg = 0.15 * (net.conv1.weight.pow(2).sum() + net.conv2.weight.pow(2).sum()).item()
    assert out["loss"] == pytest.approx(expected_loss, rel=1e-12)
    assert out["objective"] == pytest.approx(expected_loss + reg, rel=1e-12)


def test_residual_network_adds_input():
    net = PrimalNet(3, 3, residual=True).double()
    plain = PrimalNet(3, 3).double()
    plain.load_state_dict(net.state_dict())
    Y = torch.randn(1, 1, 5, 5, dtype=torch.float64)
    torch.testing.assert_close(net(Y), Y + plain(Y))
