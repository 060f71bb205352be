r"""Fused CPU kernels of the convex dual network (eq. 4, 5 and 8), compiled by numba.

The dual's work is products ``Yp @ [G | W^T | Z^T]`` with an inner dimension of d = C k^2 (9 on
MNIST), followed by element-wise work on the (rows, 3P) block. A BLAS matmul with inner dimension 9
writes that block to memory and reads it back several times, so memory traffic sets its time. The
kernels here never store the block: for each patch row ``y`` (d,) and each pattern ``i`` they form
``y.g_i``, ``y.w_i`` and ``y.z_i`` in registers (the loop over d is unrolled, the loop over patterns
is vectorised) and fold the compare, the select and the running sums into the same loop.

Layout. The right-hand factors are packed into tiles ``R`` (n_tiles, n_factors, d, T) of T patterns
(:func:`pack`), zero-padded to a whole tile; a zero pattern contributes nothing to any sum below.
A tile stays in L1 while a block of rows passes over it; blocks of rows run in parallel
(``numba.prange``, as many threads as torch uses). Products are in the inputs' dtype (float32 on the
main job's path), sums over patterns in that dtype, sums over rows in float64.

Kernels (M rows, d patch dimension, P patterns):

- :func:`predict`: ``sum_i 1[y.g_i >= 0] y.v_i`` (M,), eq. (8) with ``v_i = w_i - z_i``;
- :func:`evaluate`: squared errors of the dual and of the eq. (5) ReLU network
  (``sum_i (y.w_i)_+ - (y.z_i)_+``), the largest constraint violation and the largest |y.w|, |y.z|;
- :func:`penalized`: the gradient (2P, d) w.r.t. ``[W; Z]`` of the paper's penalised loss
  (squared error / 2M + rho/M * hinge), the squared error and the hinge sum; two passes over each
  block of rows (the residual first, then the gradient), the gradient tile accumulated in L1.

Shared setup (numba import, threading layer, tile and block sizes): :mod:`paper_utils.nets.numba_runtime`.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from paper_utils.nets.numba_runtime import (BLOCK_ROWS, FASTMATH, MAX_FUSED_D, TILE, as_numpy, available,  # noqa: F401
                                            check_patches, numba, pack, threads)


def unpack_gradient(grad: np.ndarray, P: int) -> np.ndarray:
    """Tiles (n_tiles, 2, d, T) of the penalised gradient -> (2P, d): rows of W's gradient, then Z's."""
    n_tiles, _, d, tile = grad.shape
    flat = grad.transpose(1, 0, 3, 2).reshape(2, n_tiles * tile, d)[:, :P]
    return flat.reshape(2 * P, d)


@functools.lru_cache(maxsize=None)
def _predict_kernel(d: int, tile: int, dtype: str):
    zero = np.dtype(dtype).type(0)  # the accumulators' type: the cache key is the dtype's name
    @numba.njit(parallel=True, fastmath=FASTMATH, boundscheck=False, cache=True)
    def kernel(Y, R, out, block_rows):  # R (n_tiles, 2, d, tile): G, V
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
                        ga = zero
                        va = zero
                        gb = zero
                        vb = zero
                        for k in range(d):
                            g = Rt[0, k, i]
                            v = Rt[1, k, i]
                            ga += ya[k] * g
                            va += ya[k] * v
                            gb += yb[k] * g
                            vb += yb[k] * v
                        sa += va if ga >= zero else zero
                        sb += vb if gb >= zero else zero
                    out[p0 + j] += sa
                    out[p0 + j + 1] += sb
                if n % 2 == 1:
                    ya = Y[p0 + n - 1]
                    sa = zero
                    for i in range(tile):
                        ga = zero
                        va = zero
                        for k in range(d):
                            ga += ya[k] * Rt[0, k, i]
                            va += ya[k] * Rt[1, k, i]
                        sa += va if ga >= zero else zero
                    out[p0 + n - 1] += sa
    return kernel


@functools.lru_cache(maxsize=None)
def _evaluate_kernel(d: int, tile: int, dtype: str):
    zero = np.dtype(dtype).type(0)  # the accumulators' type: the cache key is the dtype's name
    @numba.njit(parallel=True, fastmath=FASTMATH, boundscheck=False, cache=True)
    def kernel(Y, x, R, parts, block_rows):  # R (n_tiles, 3, d, tile): G, W^T, Z^T; parts (n_blocks, 4) float64
        M = Y.shape[0]
        n_blocks = (M + block_rows - 1) // block_rows
        for b in numba.prange(n_blocks):
            p0 = b * block_rows
            n = min(M, p0 + block_rows) - p0
            acc = np.zeros(block_rows, Y.dtype)
            acc_relu = np.zeros(block_rows, Y.dtype)
            # per-pattern running maxima (a max reduction inside the pattern loop would not vectorise)
            extremes = np.zeros((2, tile), Y.dtype)
            for t in range(R.shape[0]):
                Rt = R[t]
                for j in range(n):
                    y = Y[p0 + j]
                    s = zero
                    s_relu = zero
                    for i in range(tile):
                        sg = zero
                        sw = zero
                        sz = zero
                        for k in range(d):
                            yk = y[k]
                            sg += yk * Rt[0, k, i]
                            sw += yk * Rt[1, k, i]
                            sz += yk * Rt[2, k, i]
                        on = sg >= zero
                        s += (sw - sz) if on else zero
                        s_relu += (sw if sw > zero else zero) - (sz if sz > zero else zero)
                        # (2D - I) Yp w >= 0 is violated by -y.w where D = 1 and by y.w where D = 0
                        vw = -sw if on else sw
                        vz = -sz if on else sz
                        v = vw if vw > vz else vz
                        e = extremes[0, i]
                        extremes[0, i] = e + ((v - e) if v > e else zero)  # an unconditional store vectorises
                        aw = abs(sw)
                        az = abs(sz)
                        a = aw if aw > az else az
                        e = extremes[1, i]
                        extremes[1, i] = e + ((a - e) if a > e else zero)
                    acc[j] += s
                    acc_relu[j] += s_relu
            worst = zero
            scale = zero
            for i in range(tile):
                worst = extremes[0, i] if extremes[0, i] > worst else worst
                scale = extremes[1, i] if extremes[1, i] > scale else scale
            sq = 0.0
            sq_relu = 0.0
            for j in range(n):
                r = np.float64(acc[j]) - np.float64(x[p0 + j])
                r_relu = np.float64(acc_relu[j]) - np.float64(x[p0 + j])
                sq += r * r
                sq_relu += r_relu * r_relu
            parts[b, 0] = sq
            parts[b, 1] = sq_relu
            parts[b, 2] = worst
            parts[b, 3] = scale
    return kernel


@functools.lru_cache(maxsize=None)
def _penalized_kernel(d: int, tile: int, dtype: str):
    zero = np.dtype(dtype).type(0)  # the accumulators' type: the cache key is the dtype's name
    @numba.njit(parallel=True, fastmath=FASTMATH, boundscheck=False, cache=True)
    def kernel(Y, x, R, inv_m, rho_m, grad, parts, block_rows, n_threads):
        # R (n_tiles, 4, d, tile): G, W^T, Z^T, (W - Z)^T; grad (n_threads, n_tiles, 2, d, tile) float64; parts (n_threads, 2) float64
        M = Y.shape[0]
        n_tiles = R.shape[0]
        n_blocks = (M + block_rows - 1) // block_rows
        per_thread = (n_blocks + n_threads - 1) // n_threads
        for th in numba.prange(n_threads):
            r = np.zeros(block_rows, Y.dtype)
            g_tile = np.zeros((2, d, tile), Y.dtype)
            sq = 0.0
            hinge = 0.0
            for b in range(th * per_thread, min(n_blocks, (th + 1) * per_thread)):
                p0 = b * block_rows
                n = min(M, p0 + block_rows) - p0
                # pass 1: residuals r_p = sum_i 1[y.g_i >= 0] y.(w_i - z_i) - x_p
                for j in range(n):
                    r[j] = zero
                for t in range(n_tiles):
                    Rt = R[t]
                    for j in range(n):
                        y = Y[p0 + j]
                        s = zero
                        for i in range(tile):
                            sg = zero
                            sv = zero
                            for k in range(d):
                                yk = y[k]
                                sg += yk * Rt[0, k, i]
                                sv += yk * Rt[3, k, i]
                            s += sv if sg >= zero else zero
                        r[j] += s
                for j in range(n):
                    r[j] -= x[p0 + j]
                    sq += np.float64(r[j]) * np.float64(r[j])
                # pass 2: hinge and gradient, one tile of patterns at a time
                for t in range(n_tiles):
                    Rt = R[t]
                    g_tile[:] = zero
                    h = zero
                    for j in range(n):
                        y = Y[p0 + j]
                        rr = r[j] * inv_m
                        for i in range(tile):
                            sg = zero
                            sw = zero
                            sz = zero
                            for k in range(d):
                                yk = y[k]
                                sg += yk * Rt[0, k, i]
                                sw += yk * Rt[1, k, i]
                                sz += yk * Rt[2, k, i]
                            on = sg >= zero
                            vw = -sw if on else sw
                            vz = -sz if on else sz
                            h += (vw if vw > zero else zero) + (vz if vz > zero else zero)
                            # d/dw of rho/M relu(v): -rho/M where on and y.w < 0, +rho/M where off and y.w > 0
                            pw = rho_m if vw > zero else zero
                            pz = rho_m if vz > zero else zero
                            cw = (rr - pw) if on else pw
                            cz = (-rr - pz) if on else pz
                            for k in range(d):
                                g_tile[0, k, i] += cw * y[k]
                                g_tile[1, k, i] += cz * y[k]
                    hinge += np.float64(h)
                    for c in range(2):
                        for k in range(d):
                            for i in range(tile):
                                grad[th, t, c, k, i] += np.float64(g_tile[c, k, i])
            parts[th, 0] = sq
            parts[th, 1] = hinge
    return kernel


def predict(Yp: torch.Tensor, G: torch.Tensor, V: torch.Tensor, *, tile: int = TILE,
            block_rows: int = BLOCK_ROWS) -> torch.Tensor:
    """``sum_i 1[Yp g_i >= 0] Yp v_i`` (M,) for ``Yp`` (M, d), ``G`` and ``V = (W - Z)^T`` (d, P); eq. (8)."""
    check_patches(Yp, "dual")
    Y = as_numpy(Yp, Yp.numpy().dtype)
    R = pack(G.to(Yp.dtype), V.to(Yp.dtype), tile=tile)
    out = np.empty(Y.shape[0], dtype=Y.dtype)
    numba.set_num_threads(threads())
    _predict_kernel(Y.shape[1], tile, Y.dtype.name)(Y, R, out, block_rows)
    return torch.from_numpy(out)


def evaluate(Yp: torch.Tensor, x: torch.Tensor, G: torch.Tensor, W: torch.Tensor, Z: torch.Tensor, *,
             tile: int = TILE, block_rows: int = BLOCK_ROWS) -> tuple[float, float, float, float]:
    """One pass over ``Yp`` (M, d) against targets ``x`` (M,) for dual weights ``W``, ``Z`` (P, d).

    Returns (squared error of the dual, squared error of the eq. (5) ReLU network, largest constraint
    violation, largest |Yp w_i| or |Yp z_i|), sums in float64.
    """
    check_patches(Yp, "dual")
    Y = as_numpy(Yp, Yp.numpy().dtype)
    R = pack(G.to(Yp.dtype), W.T.to(Yp.dtype), Z.T.to(Yp.dtype), tile=tile)
    xs = as_numpy(x, Y.dtype)
    parts = np.zeros((max(1, math.ceil(Y.shape[0] / block_rows)), 4))
    numba.set_num_threads(threads())
    _evaluate_kernel(Y.shape[1], tile, Y.dtype.name)(Y, xs, R, parts, block_rows)
    return float(parts[:, 0].sum()), float(parts[:, 1].sum()), max(0.0, float(parts[:, 2].max())), float(parts[:, 3].max())


def penalized(Yp: torch.Tensor, x: torch.Tensor, G: torch.Tensor, W: torch.Tensor, Z: torch.Tensor, rho: float, *,
              tile: int = TILE, block_rows: int = BLOCK_ROWS) -> tuple[torch.Tensor, float, float]:
    """Gradient (2P, d) of ``1/(2M) ||sum_i D_i Yp (w_i - z_i) - x||^2 + rho/M * hinge`` w.r.t. ``[W; Z]``,
    the squared-error sum and the hinge sum (see :class:`paper_utils.nets.dual._HingeDualLoss`)."""
    check_patches(Yp, "dual")
    Y = as_numpy(Yp, Yp.numpy().dtype)
    M, d = Y.shape
    P = W.shape[0]
    WT, ZT = W.T.to(Yp.dtype), Z.T.to(Yp.dtype)
    R = pack(G.to(Yp.dtype), WT, ZT, WT - ZT, tile=tile)
    xs = as_numpy(x, Y.dtype)
    n_threads = threads()
    grad = np.zeros((n_threads,) + (R.shape[0], 2, d, tile))
    parts = np.zeros((n_threads, 2))
    numba.set_num_threads(n_threads)
    scalar = Y.dtype.type
    _penalized_kernel(d, tile, Y.dtype.name)(Y, xs, R, scalar(1.0 / M), scalar(rho / M), grad, parts, block_rows, n_threads)
    total = unpack_gradient(grad.sum(0), P)
    return torch.from_numpy(np.ascontiguousarray(total)).to(W.dtype), float(parts[:, 0].sum()), float(parts[:, 1].sum())
