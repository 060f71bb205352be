"""What the fused numba kernels share: the import guard, the threading layer, the tile and block sizes.

The fused kernels (:mod:`paper_utils.nets.dual_kernels` for the convex dual, eq. 4, 5, 8;
:mod:`paper_utils.nets.primal_kernels` for the two-layer network, eq. 3) never store a (rows, P) or
(rows, m) block: for each patch row ``y`` (d,) they form the d-term products with the packed right-hand
factors in registers (the loop over d unrolled, the loop over patterns or filters vectorised) and fold
the element-wise work into the same loop. Compiled code is cached on disk (numba's cache:
``$NUMBA_CACHE_DIR``, which the Makefile points to ``build/numba-cache``).
"""

from __future__ import annotations

import contextlib
import math
import os

import numpy as np
import torch

try:  # numba is a core dependency; the guard gives a clear message in a broken environment
    import numba
except ImportError as exc:  # pragma: no cover
    numba = None
    NUMBA_ERROR: Exception | None = exc
else:
    NUMBA_ERROR = None
    if "NUMBA_THREADING_LAYER" not in os.environ:
        # numba's "omp" layer would start a second OpenMP runtime beside torch's; their threads spin after
        # each parallel region and take the cores from each other when torch and numba calls alternate
        # (an Adam step). The "workqueue" layer's threads sleep when idle.
        numba.config.THREADING_LAYER = "workqueue"

#: columns (patterns or filters) per tile: 3 factors x d x T float32 stay in L1 (9 x 3 x 128 x 4 B = 13.8 KB)
TILE = 128
#: rows per parallel block
BLOCK_ROWS = 512
#: the largest patch dimension d the fused kernels take: their loop over d is unrolled into registers,
#: which pays at d = 9 (k = 3); at d = 49 (the MRI kernel, k = 7) the unrolled body no longer vectorises
#: (measured 1.5 GFLOP/s), while a BLAS product with inner dimension 49 is efficient, so larger d keeps
#: the chunked matmul paths
MAX_FUSED_D = 16
#: LLVM fast-math flags of every fused kernel (reassociation lets the sums over a tile vectorise)
FASTMATH = {"reassoc", "contract", "nsz", "nnan", "ninf"}


def available(d: int | None = None) -> bool:
    """Whether the fused kernels can run (numba importable), for patch dimension ``d`` if given."""
    return numba is not None and (d is None or d <= MAX_FUSED_D)


def enabled(Yp: torch.Tensor, fast: bool = True) -> bool:
    """Whether a model should route ``Yp`` (M, d) to the fused kernels: ``fast``, a CPU tensor,
    d <= :data:`MAX_FUSED_D`, numba importable, and ``$PAPER_UTILS_NO_COMPILE`` unset."""
    return routes(Yp.device, Yp.shape[-1], fast)


def routes(device: torch.device, d: int, fast: bool = True) -> bool:
    """:func:`enabled` for patches of dimension ``d`` on ``device``, before they are extracted."""
    return (fast and torch.device(device).type == "cpu" and available(d)
            and not os.environ.get("PAPER_UTILS_NO_COMPILE"))


def pack(*factors: torch.Tensor | np.ndarray, tile: int = TILE) -> np.ndarray:
    """Pack factors (d, P) into zero-padded tiles (ceil(P / tile), len(factors), d, tile), C-contiguous."""
    arrays = [f.detach().cpu().numpy() if isinstance(f, torch.Tensor) else np.asarray(f) for f in factors]
    d, P = arrays[0].shape
    n_tiles = max(1, math.ceil(P / tile))
    out = np.zeros((n_tiles, len(arrays), d, tile), dtype=arrays[0].dtype)
    for c, a in enumerate(arrays):
        if a.shape != (d, P):
            raise ValueError(f"every factor must have shape {(d, P)}, got {a.shape}")
        padded = np.zeros((d, n_tiles * tile), dtype=a.dtype)
        padded[:, :P] = a
        out[:, c] = padded.reshape(d, n_tiles, tile).transpose(1, 0, 2)
    return out


#: the kernels' thread count while :func:`torch_serial` holds torch to one thread (None: torch's)
_kernel_threads: int | None = None


def threads() -> int:
    """Threads for a kernel: torch's (or the count :func:`torch_serial` kept), capped by numba's pool."""
    n = torch.get_num_threads() if _kernel_threads is None else _kernel_threads
    return max(1, min(n, numba.config.NUMBA_NUM_THREADS))


@contextlib.contextmanager
def torch_serial(active: bool = True):
    """Inside, torch's own operations run on one thread while the fused kernels keep the threads torch had.

    An Adam step on the fused path alternates a few milliseconds of kernel work with small torch operations
    (patch extraction, the loss, the optimiser's update). After each of those, torch's OpenMP workers
    spin-wait and take cores from numba's workers in the next kernel call: inside an Adam loop a fused
    forward pass took about twice its time alone (``benchmarks/README.md``). With torch on one thread only
    the kernels run in parallel. The results do not change: a step's torch operations are element-wise,
    reduce along rows, or reduce fewer elements than torch's parallel grain (32,768), so they are the same
    bits on one thread (``tests/test_training_cache.py`` compares epochs bit for bit). ``active=False`` does nothing
    (the CUDA and chunked paths, where torch does the work).
    """
    global _kernel_threads
    if not active or _kernel_threads is not None:
        yield
        return
    before = torch.get_num_threads()
    _kernel_threads = before
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
        _kernel_threads = None


def check_patches(Yp: torch.Tensor, what: str) -> None:
    """Raise a clear error unless ``Yp`` is a float32/float64 CPU tensor and numba imports."""
    if numba is None:
        raise RuntimeError(f"the fused {what} kernels need numba, which failed to import: {NUMBA_ERROR}")
    if Yp.device.type != "cpu":
        raise ValueError(f"the fused {what} kernels run on CPU tensors; got a {Yp.device.type} tensor")
    if Yp.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"the fused {what} kernels take float32 or float64, got {Yp.dtype}")


def as_numpy(t: torch.Tensor, dtype) -> np.ndarray:
    """A C-contiguous numpy array of ``t`` in ``dtype`` (no copy when it already is one)."""
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=dtype)
