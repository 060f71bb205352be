"""Tests of the MRI baselines and of the optimum-basis helpers: the closed-form linear filter recovers
a known filter, the L1-wavelet reconstruction improves on the zero-filled image and leaves NumPy's
global random state alone, the optimum subset keeps real/imaginary pairs and crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paper_utils import mri
from paper_utils.data.mnist import DenoisingSet
from paper_utils.mri.baselines import l1_wavelet_recon, magnitude_psnr_np
from paper_utils.mri.linear_filter import apply_linear_filter, fit_linear_filter, linear_filter_loss
from paper_utils.mri.optimum import optimum_subset
from paper_utils.nets.patches import extract_patches


def test_linear_filter_recovers_a_known_residual_filter():
    gen = torch.Generator().manual_seed(0)
    noisy = torch.randn(6, 1, 12, 12, generator=gen, dtype=torch.float64)
    w_true = torch.randn(49, generator=gen, dtype=torch.float64)
    clean = noisy + (extract_patches(noisy, 7) @ w_true).reshape(noisy.shape)
    data = DenoisingSet(noisy=noisy.float(), clean=clean.float(), mean=0.0, std=1.0)
    w = fit_linear_filter(data, 7)
    torch.testing.assert_close(w, w_true, atol=1e-4, rtol=1e-4)
    assert linear_filter_loss(w, data) < 1e-9
    assert apply_linear_filter(w, data.noisy).shape == noisy.shape


def test_l1_wavelet_beats_zero_filled_and_keeps_global_rng():
    mag = next(s for s in mri.load_magnitude_slices([next(m for m in mri.SIMULATED_SUBJECTS
                                                          if m.name == "dipy_t1_coronal_slice")]))
    sim = mri.simulate_multicoil_kspace(mag.image, np.random.default_rng(0))
    mask = mri.poisson_mask(4, seed=3)
    target = mri.sense_combine(sim.kspace, sim.maps)
    zf = mri.sense_adjoint(sim.kspace, sim.maps, mask)
    state = np.random.get_state()
    x = l1_wavelet_recon(sim.kspace, sim.maps, mask, 3e-3)
    assert np.array_equal(np.random.get_state()[1], state[1])
    assert x.shape == (80, 80) and x.dtype == np.complex64
    assert magnitude_psnr_np(x, target) > magnitude_psnr_np(zf, target) + 2.0
    np.testing.assert_array_equal(x, l1_wavelet_recon(sim.kspace, sim.maps, mask, 3e-3))  # deterministic
    with pytest.raises(ValueError):
        l1_wavelet_recon(sim.kspace, sim.maps, mask[:10], 1e-3)


def test_optimum_subset_keeps_pairs_and_crops():
    noisy = torch.arange(8 * 16 * 16, dtype=torch.float32).reshape(8, 1, 16, 16)
    data = DenoisingSet(noisy=noisy, clean=noisy + 1, mean=0.0, std=1.0)
    sub = optimum_subset(data, 2, crop=8)
    assert sub.noisy.shape == (4, 1, 8, 8)
    torch.testing.assert_close(sub.noisy[0], noisy[0, :, 4:12, 4:12])  # slice 0: examples 0 and 1
    torch.testing.assert_close(sub.noisy[2], noisy[6, :, 4:12, 4:12])  # slice 3 (last): examples 6 and 7
    with pytest.raises(ValueError):
        optimum_subset(data, 5)
