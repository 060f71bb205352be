"""Interpretation tools (paper_utils.report.interpret) and the unrolled network (paper_utils.training.unrolled):
eq. (8) reproduces the dual's output, spectra of known filters, activation codes, seeded clustering."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from paper_utils.report import interpret
from paper_utils.pipeline.cache import Cache
from paper_utils.pipeline.config import mnist_denoise_config
from paper_utils.data.mnist import DenoisingSet
from paper_utils.nets.dual import DualNet, sample_generators
from paper_utils.nets.patches import extract_patches
from paper_utils.nets.primal import PrimalNet
from paper_utils.training.unrolled import UnrolledNet, load_or_train_unrolled


def _dual(seed=0, n=3, h=7, P=30, residual=False, zero_rows=()):
    gen = torch.Generator().manual_seed(seed)
    Y = torch.randn(n, 1, h, h, generator=gen, dtype=torch.float64)
    G = sample_generators(extract_patches(Y, 3), P, seed=seed)
    net = DualNet(G, 3, residual=residual, chunk_rows=11)
    with torch.no_grad():
        net.W.copy_(torch.randn(P, 9, generator=gen, dtype=torch.float64))
        net.Z.copy_(torch.randn(P, 9, generator=gen, dtype=torch.float64))
        for i in zero_rows:
            net.W[i] = 0.0; net.Z[i] = 0.0
    return Y, net


# ------------------------------------------------------------------------------------- eq. (8)
@pytest.mark.parametrize("residual", [False, True])
def test_piecewise_linear_form_reproduces_dual_forward(residual):
    Y, net = _dual(residual=residual, zero_rows=(0, 5, 7))
    out = interpret.piecewise_linear_forward(net, Y)
    assert out.shape == (3, 1, 7, 7)
    assert torch.allclose(out, net(Y), atol=1e-10, rtol=0)


def test_effective_filter_per_patch_is_sum_of_active_filters():
    """F(p) = sum_i d_i(p) (w_i - z_i), checked one pixel at a time; patches and images agree."""
    Y, net = _dual(zero_rows=(2,))
    Yp = extract_patches(Y, 3)
    Fp = interpret.effective_filters(net, Yp)
    Fimg = interpret.effective_filters(net, Y)
    assert Fp.shape == (Yp.shape[0], 9) and Fimg.shape == (3, 7, 7, 9)
    assert torch.equal(Fimg.reshape(-1, 9), Fp)
    V = (net.W - net.Z).detach()
    for p in (0, 10, 40, Yp.shape[0] - 1):
        active = (Yp[p] @ net.G) >= 0
        assert torch.allclose(Fp[p], V[active].sum(0), atol=1e-12)
    pred = interpret.apply_effective_filters(Fp, Yp, 3)
    assert torch.allclose(pred, net.predict_patches(Yp), atol=1e-10, rtol=0)


def test_dual_codes_are_sign_patterns_of_nonzero_filters():
    Y, net = _dual(zero_rows=(1, 4))
    with torch.no_grad():
        net.W[9] *= 1e-4; net.Z[9] = net.W[9]  # w - z = 0 exactly: a null path
        net.W[10] *= 1e-3; net.Z[10] *= 1e-3   # tiny: null at rel_tol 1e-2, kept at 0
    codes = interpret.dual_codes(net, Y, rel_tol=1e-2)
    keep = [i for i in range(net.n_patterns) if i not in (1, 4, 9, 10)]
    expected = (extract_patches(Y, 3) @ net.G[:, keep]) >= 0
    assert codes.shape == (3, 7, 7, len(keep)) and codes.dtype == torch.bool
    assert torch.equal(codes.reshape(-1, len(keep)), expected)
    assert interpret.dual_codes(net, Y, rel_tol=0.0).shape[-1] == net.n_patterns - 3


def test_null_filter_counting():
    W = torch.zeros(10, 9)
    W[0] = 1.0                        # norm 3: the largest
    W[1] = 0.5                        # norm 1.5
    W[2, 0] = 0.02                    # 0.02 < 0.01 * 3: null
    W[3, 0] = 0.05                    # 0.05 > 0.03: kept
    c = interpret.count_null_filters(W, rel_tol=0.01)
    assert (c.n_filters, c.n_null, c.max_norm) == (10, 7, pytest.approx(3.0))
    assert c.fraction == pytest.approx(0.7)
    assert interpret.count_null_filters(W, rel_tol=0.0).n_null == 6
    assert interpret.nonzero_filters(W, 0.01).tolist() == [True, True, False, True] + [False] * 6
    with pytest.raises(ValueError):
        interpret.nonzero_filters(W, 1.5)


# ------------------------------------------------------------------------------------- spectra
def test_spectrum_of_delta_is_flat_one():
    for pos in ((0, 0), (1, 1), (2, 0)):
        delta = torch.zeros(1, 3, 3, dtype=torch.float64)
        delta[0, pos[0], pos[1]] = 1.0
        spec = interpret.filter_spectra(delta, (28, 28))
        assert spec.shape == (1, 28, 28)
        assert torch.allclose(spec, torch.ones_like(spec), atol=1e-12)


@pytest.mark.parametrize("size", [28, 30])
def test_spectrum_of_box_is_dirichlet_kernel(size):
    """|sum_{n<3} e^{-2 pi i k n / N}| = |sin(3 pi k / N) / sin(pi k / N)| per axis, 3 at k = 0."""
    spec = interpret.filter_spectra(torch.ones(1, 9, dtype=torch.float64), (size, size))[0]
    c = size // 2                                       # fftshift puts DC at N // 2
    assert spec[c, c].item() == pytest.approx(9.0, abs=1e-12)
    k = torch.arange(size, dtype=torch.float64) - c     # centred frequency index
    dirichlet = torch.where(k == 0, torch.tensor(3.0, dtype=torch.float64),
                            (torch.sin(3 * math.pi * k / size) / torch.sin(math.pi * k / size)).abs())
    assert torch.allclose(spec, dirichlet[:, None] * dirichlet[None, :], atol=1e-10)
    if size == 30:                                       # k = N / 3 = 10 is an exact zero
        assert spec[c + 10, c].item() == pytest.approx(0.0, abs=1e-12)
        assert spec[c, c - 10].item() == pytest.approx(0.0, abs=1e-12)


def test_spectra_reject_bad_shapes():
    with pytest.raises(ValueError):
        interpret.filter_spectra(torch.ones(2, 8), (28, 28))
    with pytest.raises(ValueError):
        interpret.filter_spectra(torch.ones(2, 3, 3), (2, 28))


def test_tile_images_layout():
    imgs = np.arange(5 * 2 * 3, dtype=float).reshape(5, 2, 3)
    mosaic = interpret.tile_images(imgs, n_cols=2, pad=1)
    assert mosaic.shape == (3 * 3 - 1, 2 * 4 - 1)
    assert np.array_equal(mosaic[0:2, 4:7], imgs[1]) and np.array_equal(mosaic[6:8, 0:3], imgs[4])
    assert np.isnan(mosaic[6:8, 4:7]).all() and np.isnan(mosaic[2]).all()


# ------------------------------------------------------------------------------- primal codes
def test_primal_codes_agree_with_first_layer_activations():
    gen = torch.Generator().manual_seed(3)
    net = PrimalNet(12, 3, generator=gen).double()
    with torch.no_grad():
        net.conv1.weight[2] = 0.0          # null path (u = 0)
        net.conv2.weight[0, 5] = 0.0       # null path (v = 0)
    Y = torch.randn(2, 1, 9, 9, generator=gen, dtype=torch.float64)
    codes = interpret.primal_codes(net, Y, rel_tol=0.0)
    keep = [j for j in range(12) if j not in (2, 5)]
    hidden = F.conv2d(Y, net.conv1.weight, padding=1)
    assert codes.shape == (2, 9, 9, 10)
    assert torch.equal(codes, (hidden[:, keep] > 0).permute(0, 2, 3, 1))


def test_primal_codes_of_rebuilt_network_are_dual_patterns_when_feasible():
    """For a feasible dual point, w_i is active exactly where d_i(p) = 1 (up to Yp w_i = 0 ties)."""
    Y, net = _dual(P=8)
    Yp = extract_patches(Y, 3)
    with torch.no_grad():  # w_i = g_i satisfies (2D_i - I) Yp w_i >= 0 with equality nowhere (a.s.)
        net.W.copy_(net.G.T); net.Z.zero_()
    primal = net.to_primal()
    codes = interpret.primal_codes(primal, Y, rel_tol=0.0).reshape(-1, 8)
    assert torch.equal(codes, (Yp @ net.G) >= 0)


# ---------------------------------------------------------------------------------- clustering
def _blob_codes(seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.random((3, 40)) < 0.5
    truth = rng.integers(0, 3, size=600)
    codes = centres[truth] ^ (rng.random((600, 40)) < 0.05)   # 5% bit flips
    return codes, truth


def test_clustering_is_deterministic_with_a_seed():
    codes, _ = _blob_codes()
    codes = np.concatenate([codes, np.random.default_rng(1).random((300, 40)) < 0.5])
    a = interpret.cluster_codes(codes, k=12, seed=7, n_init=3)
    b = interpret.cluster_codes(torch.from_numpy(codes), k=12, seed=7, n_init=3)
    assert a.shape == (900,) and a.min() == 0 and a.max() == 11
    assert np.array_equal(a, b)
    sizes = np.bincount(a)
    assert (np.diff(sizes) <= 0).all()       # labels numbered by decreasing cluster size


def test_clustering_recovers_separated_groups_and_keeps_shape():
    codes, truth = _blob_codes()
    labels = interpret.cluster_codes(codes.reshape(2, 15, 20, 40), k=3, seed=0)
    assert labels.shape == (2, 15, 20)
    assert interpret.adjusted_rand(labels.reshape(-1), truth) == pytest.approx(1.0)


def test_duplicate_codes_weighted_like_repeated_samples():
    """Merging identical codes keeps their weight: a heavy code pulls its own cluster."""
    codes = np.array([[0, 0, 0, 0]] * 50 + [[1, 1, 1, 1]] * 3 + [[1, 1, 1, 0]] * 3 + [[0, 0, 0, 1]] * 2, dtype=bool)
    labels = interpret.cluster_codes(codes, k=2, seed=0)
    assert labels[0] == 0 and len(set(labels[:50])) == 1
    assert len(set(labels[50:56])) == 1 and labels[50] != labels[0]
    # fewer distinct codes than k: each distinct code is its own cluster
    few = interpret.cluster_codes(codes, k=12, seed=0)
    assert len(np.unique(few)) == 4


def test_match_labels_renames_only():
    ref = np.array([0, 0, 1, 1, 2, 2, 2])
    lab = np.array([2, 2, 0, 0, 1, 1, 0])
    matched = interpret.match_labels(lab, ref)
    assert np.array_equal(matched, [0, 0, 1, 1, 2, 2, 1])
    assert interpret.adjusted_rand(matched, ref) == pytest.approx(interpret.adjusted_rand(lab, ref))
    mask = np.array([1, 1, 1, 1, 1, 1, 0], dtype=bool)
    assert interpret.adjusted_rand(lab, ref, mask) == pytest.approx(1.0)


def test_foreground_mask_marks_non_constant_patches():
    img = torch.zeros(1, 1, 6, 6)
    img[0, 0, 2, 2] = 1.0
    mask = interpret.foreground_mask(img, 3)[0]
    expected = torch.zeros(6, 6, dtype=torch.bool)
    expected[1:4, 1:4] = True
    assert torch.equal(mask, expected)
    assert interpret.foreground_mask(img - 0.4, 3)[0, 0, 0].item()   # zero padding: border is non-constant


# ------------------------------------------------------------------------------ PSNR, unrolled
def test_pixel_psnr_undoes_normalisation():
    clean = torch.zeros(2, 1, 4, 4)
    data = DenoisingSet(noisy=clean, clean=clean, mean=0.1, std=0.5)
    pred = clean + 0.2                 # error 0.2 normalised = 0.1 in pixel units
    assert interpret.pixel_psnr(pred, data) == pytest.approx([20.0, 20.0])
    assert interpret.pixel_psnr(pred[:1], data, slice(0, 1)) == pytest.approx([20.0])


def test_unrolled_iterates_compose_two_layer_networks():
    net = UnrolledNet(6, 3, 2, generator=torch.Generator().manual_seed(0)).double()
    Y = torch.randn(2, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    xs = net.iterates(Y)
    assert len(xs) == 3 and torch.equal(xs[0], Y)
    assert torch.allclose(xs[1], net.iterations[0](Y)) and torch.allclose(net(Y), net.iterations[1](xs[1]))
    reg = net.regularizer(2.0).detach()
    assert reg.item() == pytest.approx(sum(float(p.detach().pow(2).sum()) for p in net.parameters()))
    # the patch form (evaluation) gives the same x_T, without gradients, in float64 and float32
    assert torch.allclose(net.patch_forward(Y), net(Y), rtol=1e-12, atol=1e-12)
    assert not net.patch_forward(Y).requires_grad
    net32 = UnrolledNet(512, 3, 2, generator=torch.Generator().manual_seed(0))
    Y32 = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.allclose(net32.patch_forward(Y32), net32(Y32), rtol=1e-4, atol=1e-5)


def test_unrolled_training_lowers_loss_and_is_cached(tmp_path):
    gen = torch.Generator().manual_seed(0)
    clean = torch.randn(10, 1, 8, 8, generator=gen).clamp_min(0)
    train = DenoisingSet(noisy=clean + 0.5 * torch.randn(clean.shape, generator=gen), clean=clean, mean=0.0, std=1.0)
    cfg = mnist_denoise_config("smoke", 0.5).replace(n_train=10, n_test=10, n_filters=8, epochs=3, batch_size=5,
                                                     lr_primal=1e-2)
    cache = Cache(tmp_path)
    net, hist = load_or_train_unrolled(cfg, train, train, device=torch.device("cpu"), cache=cache, progress=False)
    assert hist.epoch == [0, 1, 2, 3] and hist.train_loss[-1] < hist.train_loss[0]
    again, hist2 = load_or_train_unrolled(cfg, train, train, device=torch.device("cpu"), cache=cache, progress=False)
    assert hist2.train_loss == hist.train_loss
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    # the first iteration does not start from the two-layer primal's initialisation
    primal0 = PrimalNet(8, 3, generator=torch.Generator().manual_seed(cfg.seed))
    fresh = UnrolledNet(8, 3, 2, generator=torch.Generator().manual_seed(cfg.seed + 1000))
    assert not torch.equal(primal0.conv1.weight, fresh.iterations[0].conv1.weight)


def test_column_compression_keeps_pairwise_distances():
    """Dropping constant columns and merging repeated ones (scaled by sqrt(count)) is an isometry."""
    rng = np.random.default_rng(0)
    base = rng.random((50, 6)) < 0.5
    codes = np.concatenate([base, base[:, :2], base[:, :1], np.ones((50, 3), bool), np.zeros((50, 2), bool)], axis=1)
    X = interpret._compress_columns(codes)
    assert X.shape[1] <= 6
    d_codes = ((codes[:, None, :].astype(float) - codes[None, :, :]) ** 2).sum(-1)
    d_x = ((X[:, None, :].astype(float) - X[None, :, :]) ** 2).sum(-1)
    assert np.allclose(d_codes, d_x, atol=1e-5)


def test_predict_uses_the_patch_form_and_bounds_a_conv_batch_by_its_hidden_activations(monkeypatch):
    """A network with ``patch_forward`` is evaluated in patch form (the same prediction as its conv2d form);
    a wide network without one (conv2d holds every activation) gets smaller batches; the prediction is the same."""
    import torch

    from paper_utils.nets.primal import PrimalNet
    from paper_utils.report import interpret

    net = PrimalNet(40, 3, generator=torch.Generator().manual_seed(0)).double()
    images = torch.randn(7, 1, 6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        conv = net(images)
    monkeypatch.setattr(net, "forward", lambda x: pytest.fail("the conv2d form was called"))
    torch.testing.assert_close(interpret.predict(net, images), conv, rtol=1e-12, atol=1e-12)

    class ConvOnly(torch.nn.Module):                 # the same network without its patch form
        def __init__(self, inner):
            super().__init__()
            self.inner, self.n_filters = inner, inner.n_filters

        def forward(self, x):
            calls.append(x.shape[0])
            return PrimalNet.forward(self.inner, x)

    calls = []
    monkeypatch.setattr(interpret, "PREDICT_MAX_ACTIVATIONS", 40 * 36 * 3)   # three images' activations
    torch.testing.assert_close(interpret.predict(ConvOnly(net), images), conv, rtol=1e-14, atol=1e-14)
    assert calls == [3, 3, 1]
