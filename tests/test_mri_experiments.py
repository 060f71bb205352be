"""Tests of paper_utils.mri.runs, .evaluation, .metrics and .filters (Figures 6, 7, 11): image metrics on
known inputs, the complex recombination of real/imaginary outputs, frequency responses of dual filters, and a tiny
end-to-end run (2 training slices) that must be deterministic and served from the caches.
The whole file runs in well under a minute on 2 CPU cores (JSENSE: about 1 s per slice)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paper_utils.pipeline import config
from paper_utils import mri
from paper_utils.mri import evaluation, filters, metrics, runs
from paper_utils.nets.dual import DualNet
from paper_utils.report.interpret import filter_spectra
from paper_utils.nets.patches import extract_patches

# ------------------------------------------------------------------------------ metrics


def test_magnitude_psnr_known_value():
    target = np.zeros((16, 16))
    target[4:12, 4:12] = 2.0  # data range = max = 2
    pred = target + 0.2  # MSE = 0.04
    # 10 log10(2^2 / 0.04) = 20 dB
    assert metrics.magnitude_psnr(pred, target) == pytest.approx(20.0, abs=1e-9)
    assert metrics.magnitude_psnr(torch.from_numpy(pred), torch.from_numpy(target)) == pytest.approx(20.0, abs=1e-9)
    assert metrics.magnitude_psnr(target, target) == float("inf")


def test_magnitude_ssim_matches_skimage_and_is_one_on_identity():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    target = rng.random((32, 32)) * 3.0
    pred = target + 0.1 * rng.standard_normal((32, 32))
    assert metrics.magnitude_ssim(target, target) == pytest.approx(1.0)
    expected = structural_similarity(target, pred, data_range=target.max())
    assert metrics.magnitude_ssim(pred, target) == pytest.approx(expected, rel=1e-12)
    assert metrics.magnitude_ssim(pred, target) < 1.0


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.magnitude_psnr(np.ones((4, 4)), np.ones((4, 5)))
    with pytest.raises(ValueError, match="maximum"):
        metrics.magnitude_ssim(np.ones((8, 8)), np.zeros((8, 8)))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        metrics.magnitude_psnr(np.ones((2, 4, 4)), np.ones((2, 4, 4)))


def test_complex_recombination_round_trip():
    gen = torch.Generator().manual_seed(0)
    z = torch.complex(torch.randn(3, 5, 6, generator=gen), torch.randn(3, 5, 6, generator=gen))
    pairs = mri.complex_to_pairs(z)
    assert pairs.shape == (6, 1, 5, 6)
    # example 2i is the real part, 2i + 1 the imaginary part of slice i
    torch.testing.assert_close(pairs[2, 0], z[1].real)
    torch.testing.assert_close(pairs[3, 0], z[1].imag)
    torch.testing.assert_close(mri.pairs_to_complex(pairs), z)
    torch.testing.assert_close(metrics.complex_magnitudes(pairs), z.abs().double())


def test_representative_slice_is_the_median():
    scores = evaluation.MRIScores(R=4.0, psnr={"primal": np.array([30.0, 10.0, 20.0, 40.0, 25.0])}, ssim={}, magnitudes={})
    assert evaluation.representative_slice(scores) == 4  # 25 dB is the median
    scores.psnr["primal"] = np.array([3.0, 1.0, 2.0, 4.0])
    assert evaluation.representative_slice(scores) == 2  # lower median


# ------------------------------------------------------------------------------ dual filters


def test_peak_frequency_of_separable_filter():
    # x[n] - x[n-1] along the columns, a 3-tap box along the rows: |F| = |2 sin(pi fx)| |1 + 2 cos(2 pi fy)|,
    # largest at fy = 0, |fx| = 1/2 (Nyquist): radial frequency 0.5 cycles per pixel
    k, size = 3, 8
    w = torch.zeros(1, k, k, dtype=torch.float64)
    w[0, :, 0], w[0, :, 1] = 1.0, -1.0
    resp = filter_spectra(w, (size, size))
    f = (torch.arange(size) - size // 2).double() / size
    expected = (1 + 2 * torch.cos(2 * torch.pi * f)).abs()[:, None] * (2 * torch.sin(torch.pi * f)).abs()[None, :]
    torch.testing.assert_close(resp[0], expected)
    assert float(filters.peak_frequencies(resp)[0]) == pytest.approx(0.5)


def test_peak_frequencies_of_low_pass_and_corner_filters():
    k, size = 7, 80
    box = torch.ones(1, k * k, dtype=torch.float64)  # low-pass: peak at zero frequency
    checker = ((-1.0) ** (torch.arange(k)[:, None] + torch.arange(k)[None, :])).reshape(1, -1).double()
    peaks = filters.peak_frequencies(filter_spectra(torch.cat([box, checker]), (size, size)))
    assert peaks[0] == 0.0
    assert float(peaks[1]) == pytest.approx(0.5 * 2 ** 0.5)  # (fx, fy) = (1/2, 1/2): the corner
    assert filters.frequency_bands(torch.tensor([0.0, 0.1, 0.2, 0.3, 0.5, 0.6, 0.7])).tolist() == [2, 1, 1, 1, 2]
    with pytest.raises(ValueError, match="responses"):
        filters.peak_frequencies(torch.zeros(2, 4, 5))


def test_select_filters_is_seeded_and_bounded():
    idx = filters.select_filters(10, 4, seed=3)
    assert idx.tolist() == sorted(set(idx.tolist())) and len(idx) == 4 and int(idx.max()) < 10
    assert torch.equal(idx, filters.select_filters(10, 4, seed=3))
    assert len(filters.select_filters(10, 250)) == 10  # min(250, P)
    with pytest.raises(ValueError):
        filters.select_filters(0, 4)


def test_dual_at_initialisation_reproduces_the_zero_filled_input():
    # W = Z = 0: the residual dual predicts Y exactly, so its loss is the zero-filled baseline
    gen = torch.Generator().manual_seed(0)
    Y = torch.randn(4, 1, 10, 10, generator=gen)
    X = Y + 0.1 * torch.randn(4, 1, 10, 10, generator=gen)
    net = DualNet(torch.randn(9, 6, generator=gen), 3, residual=True)
    torch.testing.assert_close(evaluation.predict_pairs(net, Y, batch_size=3), Y)
    out = net.evaluate(extract_patches(Y, 3), (X - Y).reshape(-1), 1e-5)
    assert out["loss"] == pytest.approx(0.5 * float((X - Y).double().pow(2).mean()), rel=1e-6)


# ------------------------------------------------------------------------------ end to end


def _tiny_cfg(R=4):
    return config.mri_config("smoke", R).replace(n_train=2, n_test=1, n_filters=4, n_patterns=8, epochs=1)


def test_train_mri_is_deterministic_and_cached(tmp_path):
    cfg = _tiny_cfg()
    run = runs.train_mri(cfg, "cpu", cache_root=tmp_path / "a", progress=False)
    assert run.data.description["source_label"] == mri.SIMULATED_SOURCE_LABEL
    assert run.train.noisy.shape == (4, 1, 80, 80) and run.test.clean.shape == (2, 1, 80, 80)
    assert not any(run.from_cache.values())
    assert set(run.seconds) == {"data", "primal", "dual"}
    # the dual starts at W = Z = 0: epoch 0 is the zero-filled input's loss
    zf = 0.5 * float((run.train.clean - run.train.noisy).double().pow(2).mean())
    assert run.dual_history.train_loss[0] == pytest.approx(zf, rel=1e-5)

    again = runs.train_mri(cfg, "cpu", cache_root=tmp_path / "b", progress=False)  # fresh caches: retrained
    for a, b in zip(run.primal.state_dict().values(), again.primal.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(run.dual.W, again.dual.W) and torch.equal(run.dual.Z, again.dual.Z)
    assert run.primal_history.train_objective == again.primal_history.train_objective

    loaded = runs.train_mri(cfg, "cpu", cache_root=tmp_path / "a", progress=False)
    assert all(loaded.from_cache.values())
    assert torch.equal(loaded.dual.W, run.dual.W)
    assert loaded.dual_history.test_loss == run.dual_history.test_loss

    scores = evaluation.evaluate_mri(run)
    assert set(scores.psnr) == set(evaluation.METHODS) and scores.psnr["primal"].shape == (1,)
    target = run.data.test_target_complex.abs().double()
    zf_psnr = metrics.magnitude_psnr(run.data.test_input_complex.abs()[0], target[0])
    assert scores.psnr["zero-filled"][0] == pytest.approx(zf_psnr)
    rows = evaluation.score_rows([scores])
    assert rows[0]["R"] == "4" and rows[0]["psnr_zero-filled"] == round(zf_psnr, 2)
    long_rows = evaluation.mean_score_rows([scores])
    assert [r["method"] for r in long_rows] == list(evaluation.METHODS)
    assert long_rows[3] == {"R": "4", "method": "zero-filled", "PSNR (dB)": round(zf_psnr, 2),
                            "SSIM": round(scores.mean("ssim", "zero-filled"), 3)}
    splits = runs.split_rows(run.data)
    assert [(r["split"], r["slices"], r["examples"]) for r in splits] == [("train", 2, 4), ("test", 1, 2)]
    assert runs.acceleration_rows([run.data])[0]["R"] == "4"
    assert runs.volumes_note(run.data).startswith(mri.SIMULATED_SOURCE_LABEL)
    assert runs.timing_rows([loaded], [scores])[0]["cached"] == "data,primal,dual"
    assert runs.cache_note([loaded]).startswith("MRI data and networks loaded")
    assert runs.gap_rows([run])[0]["zf_train"] == pytest.approx(zf, rel=1e-5)


def test_train_mri_rejects_mismatched_data_and_configs():
    with pytest.raises(ValueError, match="not an MRI"):
        runs.train_mri(config.mnist_denoise_config("smoke", 0.5))
    with pytest.raises(ValueError, match="share"):
        runs.load_mri_data([_tiny_cfg(2), _tiny_cfg(4).replace(n_train=3)])


def test_the_data_layer_does_not_import_the_training_layer():
    import subprocess
    import sys

    code = ("import sys, paper_utils.mri; "
            "print(sorted(m for m in sys.modules if m.startswith(('paper_utils.mri.runs', 'paper_utils.mri.evaluation', "
            "'paper_utils.mri.optimum', 'paper_utils.training'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
