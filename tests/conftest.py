"""Shared test set-up: deterministic CPU torch, an isolated cache, tiny MNIST stand-ins."""

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(autouse=True)
def _deterministic():
    torch.use_deterministic_algorithms(True, warn_only=True)
    yield


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """Point the model cache at a temporary folder."""
    monkeypatch.setenv("PAPER_UTILS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def roots(tmp_path, monkeypatch):
    """A temporary project root with its own cache, cpu and paper stores, no store mode and no access log."""
    monkeypatch.setenv("PAPER_UTILS_ROOT", str(tmp_path))
    monkeypatch.setenv("PAPER_UTILS_CACHE", str(tmp_path / "build" / "cache"))
    monkeypatch.setenv("PAPER_UTILS_STORE", str(tmp_path / "results" / "cpu" / "store"))
    monkeypatch.setenv("PAPER_UTILS_PAPER_STORE", str(tmp_path / "results" / "paper" / "store"))
    monkeypatch.delenv("PAPER_UTILS_STORE_MODE", raising=False)
    monkeypatch.delenv("PAPER_UTILS_ACCESS_LOG", raising=False)
    return tmp_path


@pytest.fixture
def fake_mnist():
    """A deterministic stand-in with MNIST's shapes (tests must not depend on the real download)."""
    from paper_utils.data.mnist import MnistArrays

    rng = np.random.default_rng(0)
    return MnistArrays(
        train_images=rng.integers(0, 256, size=(60000, 28, 28), dtype=np.uint8),
        train_labels=rng.integers(0, 10, size=60000, dtype=np.uint8),
        test_images=rng.integers(0, 256, size=(10000, 28, 28), dtype=np.uint8),
        test_labels=rng.integers(0, 10, size=10000, dtype=np.uint8),
    )
