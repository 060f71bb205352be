r"""Fused CPU kernels of the two-layer ReLU network in patch form (eq. 3), compiled by numba.

For patch rows ``Yp`` (M, d), filters ``U`` (m, d) and second-layer weights ``v`` (m,), the network is
``f = (Yp U^T)_+ v`` (M,). The chunked kernels of :mod:`paper_utils.nets.relu_patch` multiply each chunk
by ``U^T`` with an inner dimension of d = 9, then pass over the (rows, m) block four times (clamp,
matrix-vector product, mask, and a (d, rows) x (rows, m) product whose output has 9 rows); at m = 2,048
the block no longer stays in cache and memory traffic sets the time. The kernels here never store the
block: per patch row and filter they form ``y.u_j`` in registers and fold the rest into the same loop.

Layout. ``[U^T; v^T]`` is packed into tiles ``R`` (n_tiles, 2, d, T) of T filters
(:func:`paper_utils.nets.numba_runtime.pack`; ``v`` sits in the second factor's first row), zero-padded
to a whole tile; a zero filter contributes nothing. Blocks of rows run in parallel. Products are in the
inputs' dtype, sums over filters in that dtype, sums over rows in float64.

Kernels (M rows, d patch dimension, m filters):

- :func:`forward`: ``f = (Yp U^T)_+ v`` (M,);
- :func:`masked_sums`: ``g_j = sum_p c_p 1[y_p.u_j > 0] y_p`` (m, d) for coefficients ``c`` (M,), the
  backward pass of :class:`paper_utils.nets.relu_patch.ReluPatchNet` (``c`` = the output's gradient);
- :func:`sq_grad`: ``||f - x||^2`` and the sums ``g`` with ``c = f - x``, both in one call: per block of
  rows, the residuals first (kept in L1), then the gradient tile by tile. The gradients of
  ``1/2 ||f - x||^2`` are ``v_j g_j`` and ``u_j . g_j`` (:func:`paper_utils.nets.relu_patch.relu_patch_grads`).

Work per (row, filter): the forward pass d + 1 multiply-adds, the gradient pass 2d (the product is
recomputed, then ``c y`` accumulated), against the 2d + 1 a chunked matmul form counts.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from paper_utils.nets.numba_runtime import (BLOCK_ROWS, FASTMATH, TILE, as_numpy, check_patches, numba, pack,
                                            threads)


def _pack(U: torch.Tensor, v: torch.Tensor, dtype, tile: int) -> np.ndarray:
    """Tiles (n_tiles, 2, d, tile): ``U^T`` and ``v`` (in row 0 of the second factor, the rest zero)."""
    m, d = U.shape
    UT = as_numpy(U.T, dtype)
    V = np.zeros((d, m), dtype=dtype)
    V[0] = as_numpy(v, dtype)
    return pack(UT, V, tile=tile)


@functools.lru_cache(maxsize=None)
def _forward_kernel(d: int, tile: int, dtype: str):
    zero = np.dtype(dtype).type(0)  # the accumulators' type: the cache key is the dtype's name
    @numba.njit(parallel=True, fastmath=FASTMATH, boundscheck=False, cache=True)
    def kernel(Y, R, out, block_rows):  # R (n_tiles, 2, d, tile): U^T, v in R[:, 1, 0]
        M = Y.shape[0]
        n_blocks = (M + block_rows - 1) // block_rows
        for b in numba.prange(n_blocks):
            p0 = b * block_rows
            n = min(M, p0 + block_rows) - p0
            for j in range(n):
                out[p0 + j] = zero
            for t in range(R.shape[0]):
                Rt = R[t]
                for j in range(0, n - 1, 2):  # two rows share each loaded tile vector
                    ya = Y[p0 + j]
                    yb = Y[p0 + j + 1]
                    sa = zero
                    sb = zero
                    for i in range(tile):
                        ha = zero
                        hb = zero
                        for k in range(d):
                            u = Rt[0, k, i]
                            ha += ya[k] * u
                            hb += yb[k] * u
                        vi = Rt[1, 0, i]
                        sa += (ha if ha > zero else zero) * vi
                        sb += (hb if hb > zero else zero) * vi
                    out[p0 + j] += sa
                    out[p0 + j + 1] += sb
                if n % 2 == 1:
                    ya = Y[p0 + n - 1]
                    sa = zero
                    for i in range(tile):
                        ha = zero
                        for k in range(d):
                            ha += ya[k] * Rt[0, k, i]
                        sa += (ha if ha > zero else zero) * Rt[1, 0, i]
                    out[p0 + n - 1] += sa
    return kernel


@functools.lru_cache(maxsize=None)
def _gradient_kernel(d: int, tile: int, dtype: str, residual: bool):
    """``residual``: the coefficients are ``f - x`` (computed here, pass 1); else ``c`` is given in ``x``."""
    zero = np.dtype(dtype).type(0)
    @numba.njit(parallel=True, fastmath=FASTMATH, boundscheck=False, cache=True)
    def kernel(Y, x, R, grad, parts, block_rows, n_threads):
        # grad (n_threads, n_tiles, d, tile) float64; parts (n_threads,) float64: the squared residuals
        M = Y.shape[0]
        n_tiles = R.shape[0]
        n_blocks = (M + block_rows - 1) // block_rows
        per_thread = (n_blocks + n_threads - 1) // n_threads
        for th in numba.prange(n_threads):
            r = np.zeros(block_rows, Y.dtype)
            g_tile = np.zeros((d, tile), Y.dtype)
            sq = 0.0
            for b in range(th * per_thread, min(n_blocks, (th + 1) * per_thread)):
                p0 = b * block_rows
                n = min(M, p0 + block_rows) - p0
                if residual:
                    # pass 1: r_p = sum_j (y_p.u_j)_+ v_j - x_p
                    for j in range(n):
                        r[j] = zero
                    for t in range(n_tiles):
                        Rt = R[t]
                        for j in range(n):
                            y = Y[p0 + j]
                            s = zero
                            for i in range(tile):
                                h = zero
                                for k in range(d):
                                    h += y[k] * Rt[0, k, i]
                                s += (h if h > zero else zero) * Rt[1, 0, i]
                            r[j] += s
                    for j in range(n):
                        r[j] -= x[p0 + j]
                        sq += np.float64(r[j]) * np.float64(r[j])
                else:
                    for j in range(n):
                        r[j] = x[p0 + j]
                # pass 2: g_j += r_p 1[y_p.u_j > 0] y_p, one tile of filters at a time, two rows per step
                for t in range(n_tiles):
                    Rt = R[t]
                    g_tile[:] = zero
                    for j in range(0, n - 1, 2):
                        ya = Y[p0 + j]
                        yb = Y[p0 + j + 1]
                        ra = r[j]
                        rb = r[j + 1]
                        for i in range(tile):
                            ha = zero
                            hb = zero
                            for k in range(d):
                                u = Rt[0, k, i]
                                ha += ya[k] * u
                                hb += yb[k] * u
                            ca = ra if ha > zero else zero
                            cb = rb if hb > zero else zero
                            for k in range(d):
                                g_tile[k, i] += ca * ya[k] + cb * yb[k]
                    if n % 2 == 1:
                        ya = Y[p0 + n - 1]
                        ra = r[n - 1]
                        for i in range(tile):
                            ha = zero
                            for k in range(d):
                                ha += ya[k] * Rt[0, k, i]
                            ca = ra if ha > zero else zero
                            for k in range(d):
                                g_tile[k, i] += ca * ya[k]
                    for k in range(d):
                        for i in range(tile):
                            grad[th, t, k, i] += np.float64(g_tile[k, i])
            parts[th] = sq
    return kernel


def _unpack(grad: np.ndarray, m: int) -> torch.Tensor:
    """Tiles (n_tiles, d, T) -> (m, d) float64."""
    n_tiles, d, tile = grad.shape
    return torch.from_numpy(np.ascontiguousarray(grad.transpose(0, 2, 1).reshape(n_tiles * tile, d)[:m]))


def _check(Yp: torch.Tensor, U: torch.Tensor, v: torch.Tensor, x: torch.Tensor | None = None) -> None:
    check_patches(Yp, "primal")
    if (Yp.ndim != 2 or U.ndim != 2 or U.shape[1] != Yp.shape[1] or v.shape != (U.shape[0],)
            or (x is not None and x.shape != (Yp.shape[0],))):
        raise ValueError(f"need Yp (M, d), U (m, d), v (m,) and x (M,); got Yp {tuple(Yp.shape)}, "
                         f"U {tuple(U.shape)}, v {tuple(v.shape)}" + (f", x {tuple(x.shape)}" if x is not None else ""))


def forward(Yp: torch.Tensor, U: torch.Tensor, v: torch.Tensor, *, dtype: torch.dtype | None = None,
            tile: int = TILE, block_rows: int = BLOCK_ROWS) -> torch.Tensor:
    """``f = (Yp U^T)_+ v`` (M,) for ``Yp`` (M, d), ``U`` (m, d), ``v`` (m,), computed in ``dtype``
    (default ``U``'s) and returned in it."""
    _check(Yp, U, v)
    work = np.dtype(str(dtype or U.dtype).removeprefix("torch."))
    Y = as_numpy(Yp, work)
    out = np.empty(Y.shape[0], dtype=work)
    numba.set_num_threads(threads())
    _forward_kernel(Y.shape[1], tile, work.name)(Y, _pack(U, v, work, tile), out, block_rows)
    return torch.from_numpy(out)


def _gradient(Yp, coeff, U, v, residual: bool, dtype, tile: int, block_rows: int):
    work = np.dtype(str(dtype).removeprefix("torch."))
    Y = as_numpy(Yp, work)
    n_threads = threads()
    R = _pack(U, v, work, tile)
    grad = np.zeros((n_threads, R.shape[0], Y.shape[1], tile))
    parts = np.zeros(n_threads)
    numba.set_num_threads(n_threads)
    _gradient_kernel(Y.shape[1], tile, work.name, residual)(Y, as_numpy(coeff, work), R, grad, parts, block_rows,
                                                            n_threads)
    return float(parts.sum()), _unpack(grad.sum(0), U.shape[0])


def sq_grad(Yp: torch.Tensor, x: torch.Tensor, U: torch.Tensor, v: torch.Tensor, *,
            dtype: torch.dtype = torch.float32, tile: int = TILE,
            block_rows: int = BLOCK_ROWS) -> tuple[float, torch.Tensor]:
    """``||(Yp U^T)_+ v - x||^2`` and ``g_j = sum_p r_p 1[y_p.u_j > 0] y_p`` (m, d) float64, ``r = f - x``;
    products in ``dtype``, sums over rows in float64."""
    _check(Yp, U, v, x)
    return _gradient(Yp, x, U, v, True, dtype, tile, block_rows)


def masked_sums(Yp: torch.Tensor, coeff: torch.Tensor, U: torch.Tensor, *, dtype: torch.dtype | None = None,
                tile: int = TILE, block_rows: int = BLOCK_ROWS) -> torch.Tensor:
    """``g_j = sum_p c_p 1[y_p.u_j > 0] y_p`` (m, d) float64 for coefficients ``coeff`` (M,)."""
    v = U.new_zeros(U.shape[0])
    _check(Yp, U, v, coeff)
    return _gradient(Yp, coeff, U, v, False, dtype or U.dtype, tile, block_rows)[1]
