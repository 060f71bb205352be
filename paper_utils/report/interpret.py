r"""Interpreting trained networks: path sparsity (eq. 7) and piecewise linear filtering (eq. 8).

For the dual network of eq. (4), with patch ``y_p`` (row p of the patch matrix ``Yp``), sign
patterns ``d_i(p) = 1[y_p^T g_i >= 0]`` and dual weights ``w_i, z_i``, the prediction at pixel p is

.. math::
    f(y_p) = \sum_{i=1}^{P} d_i(p)\, y_p^T (w_i - z_i) = y_p^T \Big( \sum_{i: v_i \ne 0} d_i(p)\, v_i \Big),
    \qquad v_i = w_i - z_i,

a linear filter chosen per pixel (eq. 8): the binary vector ``d(p)`` over the non-zero filters is a
*code* that clusters the patches, and each cluster is filtered linearly. The group-lasso penalty
``beta sum_i (||w_i|| + ||z_i||)`` makes many ``w_i, z_i`` null (path sparsity, eq. 7), so only the
non-zero filters matter. For a primal network (eq. 1) the analogous code of pixel p is
``1[(Y conv u_j)(p) > 0]`` over the non-zero paths ``j`` (``|v_j| ||u_j|| > 0``).

This module computes, for any trained :class:`~paper_utils.nets.dual.DualNet` or
:class:`~paper_utils.nets.primal.PrimalNet`:

- :func:`effective_filters`: ``sum_i d_i(p) v_i`` per pixel, and :func:`piecewise_linear_forward`,
  the network's output rebuilt from them (eq. 8);
- :func:`filter_norms`, :func:`nonzero_filters`, :func:`count_null_filters`: path sparsity;
- :func:`filter_spectra`: centred magnitude frequency responses of k x k filters zero-padded to H x W
  (Figures 4 and 11), and :func:`tile_images` to lay many of them out as one image;
- :func:`dual_codes`, :func:`primal_codes`: binary activation codes per pixel;
- :func:`cluster_codes` (seeded k-means, Figure 5), :func:`match_labels`, :func:`adjusted_rand`,
  :func:`foreground_mask`;
- :func:`predict` and :func:`pixel_psnr` for the test examples of Figure 3.

Letter key: N images, H x W pixels, M = N H W patches (output pixels), d = C k k patch dimension,
P patterns (dual filters), m primal filters, q filters kept in a code (non-zero ones).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from paper_utils.data.mnist import DenoisingSet
from paper_utils.nets.dual import DualNet
from paper_utils.report.metrics import psnr_per_image
from paper_utils.nets.patches import extract_patches
from paper_utils.nets.primal import PrimalNet

#: a filter is "null" when its norm is below this fraction of the largest filter norm
NULL_REL_TOL = 1e-2

#: rows of ``Yp`` per chunk when building (chunk, P) pattern blocks
_CHUNK_ROWS = 4096


# ---------------------------------------------------------------------------------------- helpers
def _as_patches(net_kernel: int, inputs: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int] | None]:
    """``Yp`` (M, d) from images (N, C, H, W) or patches (M, d); the image shape (N, H, W) or None."""
    if inputs.ndim == 4:
        n, _, h, w = inputs.shape
        return extract_patches(inputs, net_kernel), (n, h, w)
    if inputs.ndim == 2:
        return inputs, None
    raise ValueError(f"inputs must be images (N, C, H, W) or patches (M, d), got shape {tuple(inputs.shape)}")


def _check_rel_tol(rel_tol: float) -> None:
    if not (0.0 <= rel_tol < 1.0):
        raise ValueError(f"rel_tol must be in [0, 1), got {rel_tol}")


# --------------------------------------------------------------------------- path sparsity (eq. 7)
def filter_norms(filters: torch.Tensor) -> torch.Tensor:
    """Euclidean norm of each filter: (P, d) or (P, k, k) -> (P,)."""
    if filters.ndim < 2:
        raise ValueError(f"filters must have shape (P, d) or (P, k, k), got {tuple(filters.shape)}")
    return torch.linalg.vector_norm(filters.reshape(filters.shape[0], -1), dim=1)


def nonzero_filters(filters: torch.Tensor, rel_tol: float = NULL_REL_TOL) -> torch.Tensor:
    """Boolean mask (P,): filters whose norm exceeds ``rel_tol`` times the largest norm.

    With ``rel_tol = 0`` exactly the filters with a non-zero norm are kept. An all-zero set keeps none.
    """
    _check_rel_tol(rel_tol)
    norms = filter_norms(filters)
    if norms.numel() == 0:
        return torch.zeros(0, dtype=torch.bool, device=filters.device)
    return norms > rel_tol * norms.max()


@dataclass(frozen=True)
class NullCount:
    """Path sparsity of a set of filters.

    Attributes:
        n_filters: P, how many filters were counted.
        n_null: how many have norm ``< rel_tol * max_norm`` (``<=`` when ``rel_tol`` is 0, i.e. exact zeros).
        rel_tol: the relative threshold used.
        max_norm: the largest filter norm.
    """

    n_filters: int
    n_null: int
    rel_tol: float
    max_norm: float

    @property
    def fraction(self) -> float:
        """``n_null / n_filters`` (0 for an empty set)."""
        return self.n_null / self.n_filters if self.n_filters else 0.0


def count_null_filters(filters: torch.Tensor, rel_tol: float = NULL_REL_TOL) -> NullCount:
    """How many of the filters (P, d) are null: norm at most ``rel_tol`` times the largest norm (eq. 7).

    Complements :func:`nonzero_filters`: ``n_null = P - nonzero_filters(filters, rel_tol).sum()``.
    """
    keep = nonzero_filters(filters, rel_tol)
    norms = filter_norms(filters)
    return NullCount(n_filters=int(keep.numel()), n_null=int((~keep).sum()), rel_tol=float(rel_tol),
                     max_norm=float(norms.max()) if norms.numel() else 0.0)


def primal_path_norms(net: PrimalNet) -> torch.Tensor:
    """``|v_j| ||u_j||`` (m,): the norm of each primal path, i.e. of ``u_j v_j`` (eq. 7)."""
    U, v = net.patch_weights()
    return torch.linalg.vector_norm(U, dim=1) * v.abs()


# ---------------------------------------------------------------- piecewise linear filtering (eq. 8)
def dual_codes(net: DualNet, inputs: torch.Tensor, rel_tol: float = NULL_REL_TOL) -> torch.Tensor:
    """Binary codes ``d(p)``: ``d_i(p) = 1[y_p^T g_i >= 0]`` over the non-zero filters ``v_i = w_i - z_i``.

    Args:
        net: a trained dual network (``G`` (d, P), ``W``, ``Z`` (P, d)).
        inputs: images (N, C, H, W) or their patch matrix ``Yp`` (M, d).
        rel_tol: filters with ``||w_i - z_i|| <= rel_tol * max_i ||w_i - z_i||`` are dropped
            (:func:`nonzero_filters`); 0 keeps every non-zero filter.

    Returns:
        Boolean codes (N, H, W, q) for images or (M, q) for patches, q = number of non-zero filters.
    """
    Yp, shape = _as_patches(net.kernel_size, inputs)
    with torch.no_grad():
        keep = nonzero_filters(net.W - net.Z, rel_tol)
        G = net.G[:, keep].to(Yp.dtype)
        codes = torch.cat([(Yp[s:s + _CHUNK_ROWS] @ G) >= 0 for s in range(0, Yp.shape[0], _CHUNK_ROWS)]) \
            if Yp.shape[0] else torch.zeros(0, G.shape[1], dtype=torch.bool, device=Yp.device)
    return codes.reshape(*shape, -1) if shape is not None else codes


def effective_filters(net: DualNet, inputs: torch.Tensor, rel_tol: float = 0.0) -> torch.Tensor:
    """The linear filter each pixel applies, eq. (8): ``sum_i d_i(p) (w_i - z_i)``.

    Args:
        net: a trained dual network.
        inputs: images (N, C, H, W) or patches ``Yp`` (M, d).
        rel_tol: drop filters below this relative norm first (0, the default, keeps the output exact).

    Returns:
        Filters (N, H, W, d) for images or (M, d) for patches, in ``inputs``' dtype. Applied to each
        patch (:func:`apply_effective_filters`) they give the dual's prediction ``f(y_p)``.
    """
    Yp, shape = _as_patches(net.kernel_size, inputs)
    with torch.no_grad():
        V = (net.W - net.Z).to(Yp.dtype)
        keep = nonzero_filters(V, rel_tol)
        V, G = V[keep], net.G[:, keep].to(Yp.dtype)
        out = torch.empty(Yp.shape[0], Yp.shape[1], dtype=Yp.dtype, device=Yp.device)
        for s in range(0, Yp.shape[0], _CHUNK_ROWS):
            Yc = Yp[s:s + _CHUNK_ROWS]
            out[s:s + _CHUNK_ROWS] = ((Yc @ G) >= 0).to(Yp.dtype) @ V
    return out.reshape(*shape, -1) if shape is not None else out


def apply_effective_filters(filters: torch.Tensor, inputs: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """``y_p^T F(p)`` per pixel: filters (M, d) with patches (M, d) -> (M,); or (N, H, W, d) with images -> (N, 1, H, W)."""
    Yp, shape = _as_patches(kernel_size, inputs)
    if filters.reshape(-1, filters.shape[-1]).shape != Yp.shape:
        raise ValueError(f"filters {tuple(filters.shape)} do not match patches {tuple(Yp.shape)}")
    out = (filters.reshape(Yp.shape) * Yp).sum(1)
    return out.reshape(shape[0], 1, shape[1], shape[2]) if shape is not None else out


def piecewise_linear_forward(net: DualNet, images: torch.Tensor, rel_tol: float = 0.0) -> torch.Tensor:
    """The dual network's output rebuilt from eq. (8): images (N, C, H, W) -> (N, 1, H, W).

    Equals ``net(images)`` (to rounding) for ``rel_tol = 0``; adds the input for a residual network (eq. 6).
    """
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    out = apply_effective_filters(effective_filters(net, images, rel_tol), images, net.kernel_size)
    return images + out if net.residual else out


# ------------------------------------------------------------------------------ primal codes
def primal_codes(net: PrimalNet, images: torch.Tensor, rel_tol: float = NULL_REL_TOL) -> torch.Tensor:
    """Activation codes of a primal network: ``1[(Y conv u_j)(p) > 0]`` over its non-zero paths.

    Args:
        net: a two-layer network (eq. 1); path j is kept when ``|v_j| ||u_j|| > rel_tol * max_j |v_j| ||u_j||``.
        images: inputs (N, C, H, W) of this network.

    Returns:
        Boolean codes (N, H, W, q), q = number of kept paths.
    """
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    _check_rel_tol(rel_tol)
    with torch.no_grad():
        norms = primal_path_norms(net)
        keep = norms > rel_tol * norms.max() if norms.numel() else norms.bool()
        weight = net.conv1.weight[keep].to(images.dtype)
        hidden = F.conv2d(images.to(weight.device), weight, padding=net.kernel_size // 2)
    return (hidden > 0).permute(0, 2, 3, 1).contiguous()


# ------------------------------------------------------------------------------ spectra (Fig. 4)
def filter_spectra(filters: torch.Tensor | np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Centred magnitude frequency responses of k x k filters zero-padded to H x W.

    ``|FFT2(pad(u))|`` with the filter in the top-left corner (its position only changes the phase),
    shifted so that the zero frequency sits at ``(H // 2, W // 2)`` (``fftshift``).

    Args:
        filters: (n, k, k), or (n, d) with ``d = k * k`` (single channel).
        size: (H, W), each at least k.

    Returns:
        Magnitudes (n, H, W), real, in the filters' floating dtype.
    """
    filters = torch.as_tensor(filters)
    if filters.ndim == 2:
        k = math.isqrt(filters.shape[1])
        if k * k != filters.shape[1]:
            raise ValueError(f"filters (n, d) need d = k * k, got d = {filters.shape[1]}")
        filters = filters.reshape(-1, k, k)
    if filters.ndim != 3 or filters.shape[1] != filters.shape[2]:
        raise ValueError(f"filters must have shape (n, k, k) or (n, k*k), got {tuple(filters.shape)}")
    H, W = size
    k = filters.shape[1]
    if H < k or W < k:
        raise ValueError(f"size {size} is smaller than the filters ({k} x {k})")
    if not filters.is_floating_point():
        filters = filters.double()
    padded = F.pad(filters, (0, W - k, 0, H - k))
    return torch.fft.fftshift(torch.fft.fft2(padded).abs(), dim=(-2, -1))


def tile_images(images: torch.Tensor | np.ndarray, n_cols: int, pad: int = 1, fill: float = float("nan")) -> np.ndarray:
    """Lay out images (n, H, W) on a grid with ``n_cols`` columns and ``pad`` pixels of ``fill`` between.

    Returns one array (rows * (H + pad) - pad, n_cols * (W + pad) - pad); empty cells are ``fill``.
    """
    arr = np.asarray(images.detach().cpu() if isinstance(images, torch.Tensor) else images, dtype=np.float64)
    if arr.ndim != 3 or n_cols < 1 or pad < 0:
        raise ValueError(f"need images (n, H, W), n_cols >= 1 and pad >= 0, got {arr.shape}, {n_cols}, {pad}")
    n, h, w = arr.shape
    rows = max(1, -(-n // n_cols))
    out = np.full((rows * (h + pad) - pad, n_cols * (w + pad) - pad), fill)
    for i in range(n):
        r, c = divmod(i, n_cols)
        out[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = arr[i]
    return out


# ------------------------------------------------------------------------- clustering (Fig. 5)
def cluster_codes(codes: torch.Tensor | np.ndarray, k: int = 12, *, seed: int = 0, n_init: int = 10) -> np.ndarray:
    """k-means (scikit-learn, Lloyd, k-means++ init) of binary codes, one per pixel; seeded.

    Identical codes (e.g. every background pixel) are merged first and weighted by their count,
    which leaves the k-means objective unchanged and makes the fit fast. Labels are renumbered by
    decreasing cluster size (ties: first occurrence), so they do not depend on k-means' internal order.
    With at most ``k`` distinct codes, each distinct code is its own cluster.

    Args:
        codes: boolean (..., q): (M, q) or (N, H, W, q).
        k: number of clusters (paper: 12).
        seed: ``random_state`` of k-means.
        n_init: k-means restarts (the best objective is kept).

    Returns:
        Integer labels of shape ``codes.shape[:-1]``, in ``0 .. k-1``.
    """
    from sklearn.cluster import KMeans

    arr = np.asarray(codes.detach().cpu() if isinstance(codes, torch.Tensor) else codes)
    if arr.ndim < 2:
        raise ValueError(f"codes must have shape (..., q), got {arr.shape}")
    if k < 1 or n_init < 1:
        raise ValueError(f"need k >= 1 and n_init >= 1, got {k}, {n_init}")
    lead, q = arr.shape[:-1], arr.shape[-1]
    flat = arr.reshape(-1, q).astype(bool)
    if flat.shape[0] == 0:
        raise ValueError("no codes to cluster")
    packed = np.packbits(flat, axis=1) if q else np.zeros((flat.shape[0], 1), np.uint8)
    uniq, first, inverse, counts = np.unique(packed, axis=0, return_index=True, return_inverse=True,
                                             return_counts=True)
    inverse = inverse.reshape(-1)
    if uniq.shape[0] <= k:
        group = np.arange(uniq.shape[0])
    else:
        X = _compress_columns(flat[first])
        km = KMeans(n_clusters=k, init="k-means++", n_init=n_init, random_state=seed, algorithm="lloyd")
        group = km.fit(X, sample_weight=counts.astype(np.float64)).labels_
    labels = group[inverse]
    return _relabel_by_size(labels).reshape(lead)


def _compress_columns(codes: np.ndarray) -> np.ndarray:
    """Float32 rows with the same pairwise Euclidean geometry as the boolean ``codes`` (u, q), fewer columns.

    Constant columns add nothing to any distance and are dropped; a column repeated c times equals one
    copy scaled by sqrt(c). k-means (distances, centroids) is unchanged up to that isometry.
    """
    varying = codes.any(0) & ~codes.all(0)
    cols = codes[:, varying]
    if cols.shape[1] == 0:
        return np.zeros((codes.shape[0], 1), dtype=np.float32)
    _, first, counts = np.unique(np.packbits(cols.T, axis=1), axis=0, return_index=True, return_counts=True)
    return cols[:, first].astype(np.float32) * np.sqrt(counts).astype(np.float32)


def _relabel_by_size(labels: np.ndarray) -> np.ndarray:
    ids, first, counts = np.unique(labels, return_index=True, return_counts=True)
    order = sorted(range(len(ids)), key=lambda j: (-counts[j], first[j]))
    mapping = np.empty(ids.max() + 1, dtype=np.int64)
    mapping[ids[order]] = np.arange(len(ids))
    return mapping[labels]


def match_labels(labels: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Renumber ``labels`` to agree as much as possible with ``reference`` (Hungarian matching).

    Only the names of the clusters change (the partition, hence the adjusted Rand index, does not), so
    that matching clusters get the same colour in a figure. Unmatched clusters get fresh numbers.
    """
    from scipy.optimize import linear_sum_assignment

    labels, reference = np.asarray(labels), np.asarray(reference)
    if labels.shape != reference.shape:
        raise ValueError(f"shapes differ: {labels.shape} vs {reference.shape}")
    a, b = labels.reshape(-1), reference.reshape(-1)
    na, nb = int(a.max()) + 1, int(b.max()) + 1
    overlap = np.zeros((na, nb), dtype=np.int64)
    np.add.at(overlap, (a, b), 1)
    rows, cols = linear_sum_assignment(-overlap)
    mapping = np.full(na, -1, dtype=np.int64)
    mapping[rows] = cols
    spare = iter(range(nb, nb + na))
    for i in range(na):
        if mapping[i] < 0:
            mapping[i] = next(spare)
    return mapping[a].reshape(labels.shape)


def adjusted_rand(labels_a: np.ndarray, labels_b: np.ndarray, mask: np.ndarray | torch.Tensor | None = None) -> float:
    """Adjusted Rand index of two clusterings of the same pixels (optionally only where ``mask``)."""
    from sklearn.metrics import adjusted_rand_score

    a, b = np.asarray(labels_a), np.asarray(labels_b)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    if mask is not None:
        m = np.asarray(mask.cpu() if isinstance(mask, torch.Tensor) else mask, dtype=bool)
        if m.shape != a.shape:
            raise ValueError(f"mask shape {m.shape} differs from labels {a.shape}")
        a, b = a[m], b[m]
    return float(adjusted_rand_score(a.reshape(-1), b.reshape(-1)))


def foreground_mask(images: torch.Tensor, kernel_size: int = 3) -> torch.Tensor:
    """Pixels (N, H, W) whose k x k neighbourhood is not constant (single-channel images).

    On clean MNIST the constant-background pixels all share one patch, hence one code in every network;
    this mask leaves them out of an adjusted Rand index, which they would otherwise inflate.
    Zero padding makes border pixels non-constant when the background is not zero.
    """
    Yp, shape = _as_patches(kernel_size, images)
    if shape is None:
        raise ValueError("images must have shape (N, C, H, W)")
    varies = (Yp.amax(1) - Yp.amin(1)) > 0
    return varies.reshape(shape)


# ------------------------------------------------------------------------- test examples (Fig. 3)
#: the most hidden activations one batch of :func:`predict` holds (2^30 float32 numbers, 4 GiB): the
#: eq. (5) network of a certified dual at P = 8,000 has up to 2P = 16,000 units, 12.5 million activations
#: per 28 x 28 image
PREDICT_MAX_ACTIVATIONS = 1 << 30


def predict(net: torch.nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """``net(images)`` in batches, without gradient, on the network's device; returns (N, 1, H, W) on CPU.

    A network with ``patch_forward`` (:class:`paper_utils.nets.primal.PrimalNet`) is evaluated in patch form
    (eq. 3), by the fused kernel on CPU: the conv2d form of an eq. (5) network with thousands of units
    takes about 60 times longer on 2 cores and holds every hidden activation of its batch. Otherwise a
    network with ``n_filters`` hidden units gets batches of at most ``batch_size`` images and at most
    :data:`PREDICT_MAX_ACTIVATIONS` hidden activations."""
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    forward = getattr(net, "patch_forward", None) or net
    width = getattr(net, "n_filters", None)
    if forward is net and isinstance(width, int) and width > 0:
        per_image = width * images[0, 0].numel()
        batch_size = max(1, min(batch_size, PREDICT_MAX_ACTIVATIONS // per_image))
    device = next(iter(net.buffers()), None)
    device = device.device if device is not None else next(net.parameters()).device
    outs = []
    with torch.no_grad():
        for s in range(0, images.shape[0], batch_size):
            outs.append(forward(images[s:s + batch_size].to(device)).cpu())
    return torch.cat(outs)


def pixel_psnr(prediction: torch.Tensor, data: DenoisingSet, which: slice | torch.Tensor | None = None) -> np.ndarray:
    """PSNR (dB) of each image against ``data.clean``, in [0, 1] pixel units (data range 1).

    The normalisation is undone first (``pixel = mean + std * value``, :class:`~paper_utils.data.mnist.DenoisingSet`);
    outputs are not clipped. ``which`` selects the images of ``data`` that ``prediction`` (n, 1, H, W) holds
    (default: all).
    """
    clean = data.clean if which is None else data.clean[which]
    if prediction.shape != clean.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} does not match clean images {tuple(clean.shape)}")
    to_pixels = (lambda t: data.mean + data.std * t.double())
    return np.asarray(psnr_per_image(to_pixels(prediction.cpu()), to_pixels(clean), data_range=1.0))
