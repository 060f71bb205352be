r"""Chunked passes over the M rows of the patch matrix, for the solvers of eq. (4).

Every kernel of :mod:`paper_utils.dual_solver` that touches all M rows lives here: the prediction and
gradient, the ray and tilted-ray Gram matrices (all P features, or the rows of a working set of
patterns against that set, :meth:`_Data.set_gram_rows`), the barrier's dense Hessian, the most violated
constraint of each block and the rows nearest to each generator.

Kernels: no (M, P) tensor is ever built for the whole data set; every pass runs in row chunks of
(c, P) blocks (about 512K numbers, 4 MB in float64, on CPU; 64M on GPU). ``D_c = 1[Yp_c G >= 0]`` is formed in place in
a preallocated buffer, the prediction ``rowsum(Yp_c * (D_c V))`` as ``V^T D_c^T`` and the adjoint as
``(r_c Yp_c)^T D_c``: skinny matmuls in the layouts that ran at ~55-60 GFLOP/s on one core here
(``D_c @ V`` with the other layouts: 5-17). The Gram passes are one (k, c) x (c, P) product per chunk,
in chunks of at least 4,096 rows (the per-chunk (k, P) accumulation must stay small next to the product).
Peak memory at paper settings (M = 470,400, P = 8,000, d = 9) without the dense refinement: the
P x P Gram matrix, its recomputed rows and the lasso's factorisations (~0.5 GB each) plus working sets
(2 P x 128 x d). Measured there (Figure 2's sigma = 0.5 patterns, 2 CPU cores): peak resident memory
3.7 GB for the whole process (data and trained models included); certified gap 8.1e-4 (ray lasso,
658 s) -> 1.4e-4 -> 1.05e-7 after two rounds of tilted rays, 1,797 s in all, max violation 8e-9.

Dtype policy: the Gram passes and the ranking of the rows nearest each ``g_i`` run in float32 when
``M P > 2^25`` and no input is float64 (``dtype=`` picks it). Their results only shape the master
problem: the full-Gram path recomputes the tilted rows in float64 (:meth:`direction_gram_rows`), the
working-set path keeps float32 rows and makes the lasso exact by iterative refinement on the float64
operator pass (:func:`paper_utils.dual_solver.workset._refine_lasso`). Every pass that feeds the
certificate, a feasibility check or a reported number, and all the small linear algebra (lasso, barrier Newton systems, cone projections), runs in float64. A float32
certificate was measured to misjudge ``max_j c_j / beta`` by several percent at M = 470,400 (it is a
small difference of sums over M rows), and float32 margins cannot tell an active constraint from a
violated one at the 1e-9 level the cuts need. ``W``, ``Z`` come back in the dtype of ``Yp``. Devices:
everything runs on ``device`` (default: the device of ``Yp``); nothing calls ``.cuda()``.

Letter key: M patches, d patch dimension C k k, P patterns, B = 2P blocks (the w's then the z's).
"""

from __future__ import annotations

import math

import numpy as np
import torch

F64 = torch.float64
# rows per product in set_gram_rows' block triangle. Measured per (4096, n) float32 chunk on 2 cores
# (benchmarks/results/bench_gram_block_2cores.txt): the square (1536, 1536) triangle of a tilted round
# 75 ms with 1024, 67 ms with 256, (4000, 4000) 426 -> 381 ms, the first working set (500, 500)
# 10.5 -> 8.3 ms (the triangle's waste shrinks, the products stay near the matmul rate); k rows against
# n >> k within 3%; 128 is slower again
GRAM_BLOCK = 256


# ----------------------------------------------------------------------------------------------
# input checking
# ----------------------------------------------------------------------------------------------
def _as_tensor(a, name: str, device) -> torch.Tensor:
    if isinstance(a, np.ndarray):
        if a.dtype.kind not in "fiu":
            raise ValueError(f"{name} must be a real array, got dtype {a.dtype}")
        a = torch.from_numpy(np.ascontiguousarray(a))
    elif not isinstance(a, torch.Tensor):
        raise ValueError(f"{name} must be a numpy array or a torch tensor, got {type(a).__name__}")
    if a.is_complex() or a.dtype == torch.bool:
        raise ValueError(f"{name} must be real, got dtype {a.dtype}")
    if not a.is_floating_point():
        a = a.to(F64)
    elif a.dtype not in (torch.float32, F64):
        a = a.to(torch.float32)
    a = a.detach()
    if device is not None:
        a = a.to(device)
    if not bool(torch.isfinite(a).all()):
        raise ValueError(f"{name} contains NaN or Inf")
    return a


# ----------------------------------------------------------------------------------------------
# the data and its chunked passes
# ----------------------------------------------------------------------------------------------
class _Data:
    """``Yp``, ``x``, ``G`` on one device, and every pass over the M rows.

    The two bulk passes whose result is only a starting point (the ray lasso's Gram matrix, the
    ranking of the rows nearest to each generator) run in ``fast`` dtype (float32 at scale); every
    pass that feeds the certificate, a feasibility check or a reported number runs in float64. A
    float32 certificate was measured to be wrong by several percent in ``max_j c_j / beta`` at
    M = 470,400 (the certificate is a small difference of sums over M rows), and float32 margins
    cannot tell an active constraint from a violated one at the 1e-9 level the cuts need.
    """

    def __init__(self, Yp: torch.Tensor, x: torch.Tensor, G: torch.Tensor, fast: torch.dtype,
                 chunk_rows: int | None):
        self.device = Yp.device
        self.fast = fast
        self.M, self.d = Yp.shape
        self.P = G.shape[1]
        self.Y = Yp.to(F64).contiguous()
        self.YT = self.Y.T.contiguous()
        self.x = x.to(F64).contiguous()
        self.G = G.to(F64).contiguous()
        self.Gh = self.G / torch.linalg.vector_norm(self.G, dim=0)                # (d, P) unit generators
        norms = torch.linalg.vector_norm(self.Y, dim=1, keepdim=True)
        self.nonzero = norms.squeeze(1) > 0
        self.Yh = torch.where(norms > 0, self.Y / norms.clamp_min(1e-300), 0.0)
        auto = chunk_rows is None
        self.budget = None
        if auto:
            # CPU: (c, P) float64 blocks of 4 MB stay in cache between the product that forms them and
            # the two that read them; measured on 2 cores (M = 470,400): 16 MB blocks (the previous
            # budget) made loss_grad 1.3x, most_violated 1.5-2.6x and evaluate 1.5-2x slower at P = 2,000,
            # 1.1x, 1.4x and 1.9x at P = 8,000
            self.budget = (1 << 19) if self.device.type == "cpu" else (1 << 26)
            chunk_rows = self.rows_for(self.P)
        self.chunk = max(1, int(chunk_rows))
        # the barrier's dense Hessian pass keeps the larger chunks it was measured with
        self.dense_chunk = int(min(max(256, (1 << 21) // max(self.P, 1)), 65536)) if auto else self.chunk
        # Gram passes accumulate a (k, P) block per chunk: with P in the thousands, chunks of a few
        # hundred rows make that accumulation (not the matmul) the cost, so they take >= 4096 rows
        # (at P = 8,000 the float32 ray Gram ran > 10 min with 262-row chunks on 2 cores)
        self.gram_chunk = min(max(self.chunk, 4096), max(self.M, 1)) if auto else self.chunk
        # the nearest-row scan merges per chunk: large chunks (about 64M numbers) unless chunk_rows is given
        self.scan_chunk = max(1, (1 << 26) // max(self.P, 1)) if auto else self.chunk
        self.passes = 0

    def rows_for(self, ncols: int) -> int:
        """Rows per chunk of a pass whose blocks have ``ncols`` columns: the budget of numbers per block
        (``chunk_rows`` when given)."""
        if self.budget is None:
            return self.chunk
        return int(min(max(64, self.budget // max(ncols, 1)), 65536))

    def chunks(self, size: int | None = None):
        size = size or self.chunk
        for s in range(0, self.M, size):
            yield s, min(s + size, self.M)

    # -- loss and gradient at v = w - z ----------------------------------------------------------
    def loss_grad(self, V: torch.Tensor, dtype: torch.dtype = F64):
        """``sq = ||r||^2``, ``rx = r^T x`` and ``grad = A^T r / M`` (P, d) for ``r = A v - x``.

        Per chunk: ``D_c`` formed in place, prediction ``rowsum(Yp_c * (D_c V))`` as ``V^T D_c^T`` over
        the patterns with ``v_i != 0`` only (their columns first) and the adjoint as
        ``(r_c Yp_c)^T D_c`` over all P: the layouts that run near the matmul rate. The solver
        calls it in float64; ``dtype=float32`` (the same kernel, for benchmarks) accumulates chunks in
        float64.
        """
        self.passes += 1
        P = self.P
        if dtype == F64:
            Y, YT, G, x = self.Y, self.YT, self.G, self.x
        else:
            if getattr(self, "_cast", (None,))[0] != dtype:
                self._cast = (dtype, self.Y.to(dtype), self.YT.to(dtype), self.G.to(dtype), self.x.to(dtype))
            _, Y, YT, G, x = self._cast
        # the patterns with v_i != 0 first: the prediction reads only their columns of D_c (at cpu
        # scale 466-1,536 of 2,000 are active), the adjoint reads all of them (every pattern is priced)
        act = (V != 0).any(1)
        na = int(act.sum())
        perm = None
        if na < P:
            perm = torch.cat([act.nonzero().squeeze(1), (~act).nonzero().squeeze(1)])
            G, V = G[:, perm].contiguous(), V[perm]
        VT = V[:na].T.to(dtype).contiguous()                                       # (d, na)
        gT = torch.zeros(self.d, P, dtype=F64, device=self.device)
        sq = torch.zeros((), dtype=F64, device=self.device)
        rx = torch.zeros((), dtype=F64, device=self.device)
        buf = torch.empty(self.chunk, P, dtype=dtype, device=self.device)
        for s, e in self.chunks():
            D = torch.mm(Y[s:e], G, out=buf[:e - s]).ge_(0)                       # (c, P) of 1.0 / 0.0
            YcT = YT[:, s:e]
            r = (torch.mm(VT, D[:, :na].T) * YcT).sum(0) - x[s:e]
            sq += torch.dot(r, r).to(F64)
            rx += torch.dot(r, x[s:e]).to(F64)
            if dtype == F64:
                gT.addmm_(r * YcT, D)
            else:
                gT += torch.mm(r * YcT, D).to(F64)
        if perm is not None:
            g = torch.empty_like(gT)
            g[:, perm] = gT
            gT = g
        return sq, rx, gT.T / self.M

    # -- the ray lasso's Gram matrix ---------------------------------------------------------------
    def relu_gram(self):
        """``Q = F^T F / M`` (P, P) and ``q = F^T x / M`` for the features ``F = (Yp g_i / ||g_i||)_+``
        (chunks in the fast dtype, accumulated in float64)."""
        self.passes += 1
        P, dt = self.P, self.fast
        Y, Gh, x = self.Y.to(dt), self.Gh.to(dt), self.x.to(dt)
        Q = torch.zeros(P, P, dtype=F64, device=self.device)
        q = torch.zeros(P, dtype=F64, device=self.device)
        buf = torch.empty(self.gram_chunk, P, dtype=dt, device=self.device)
        for s, e in self.chunks(self.gram_chunk):
            Fc = torch.mm(Y[s:e], Gh, out=buf[:e - s]).clamp_min_(0)
            Q += torch.mm(Fc.T, Fc).to(F64)
            q += torch.mv(Fc.T, x[s:e]).to(F64)
        return Q / self.M, q / self.M

    # -- the tilted-ray lasso's Gram rows ---------------------------------------------------------------
    def direction_gram_rows(self, A: torch.Tensor, rows: torch.Tensor):
        """Rows ``rows`` (k,) of ``Q = F^T F / M`` (k, P) and ``F_rows^T x / M`` (k,) for the gated
        features ``F_i = D_i Yp a_i`` of one direction ``a_i`` per pattern (``A`` (P, d)), in float64.

        With ``a_i`` in the cone ``K_i`` the feature is ``(Yp a_i)_+``; the pattern is applied
        explicitly so that the master problem and the certificate see the same operator.
        """
        self.passes += 1
        P, k = self.P, rows.numel()
        AT = A.T.to(F64).contiguous()
        Qr = torch.zeros(k, P, dtype=F64, device=self.device)
        qr = torch.zeros(k, dtype=F64, device=self.device)
        sgn = torch.empty(self.gram_chunk, P, dtype=F64, device=self.device)
        feat = torch.empty(self.gram_chunk, P, dtype=F64, device=self.device)
        every = k == P and bool((rows == torch.arange(P, device=self.device)).all())
        for s, e in self.chunks(self.gram_chunk):
            Yc = self.Y[s:e]
            Fc = torch.mm(Yc, AT, out=feat[:e - s]).mul_(torch.mm(Yc, self.G, out=sgn[:e - s]).ge_(0))
            Fr = Fc if every else Fc[:, rows]
            Qr.addmm_(Fr.T, Fc)
            qr.addmv_(Fr.T, self.x[s:e])
        return Qr / self.M, qr / self.M

    # -- Gram rows over a working set of patterns -------------------------------------------------------
    def set_gram_rows(self, A: torch.Tensor, cols: torch.Tensor, k: int, dtype: torch.dtype = F64,
                      block: int = GRAM_BLOCK, clamp: bool = False):
        """Rows ``Q[:k]`` (k, n) and ``q[:k]`` (k,) of ``Q = F^T F / M``, ``q = F^T x / M`` for the gated
        features ``F_j = D_{cols_j} Yp a_j`` (M, n) of the patterns ``cols`` (n,) with directions ``A``
        (n, d); the first ``k`` columns are the rows. Only the features of ``cols`` are formed (a working
        set, :mod:`.workset`), and the symmetric (k, k) part is computed as its upper block triangle
        (``block`` rows at a time) and mirrored: ``2 M k (n - k) + M k (k + block)`` matmul flops instead of
        ``2 M k n``. Chunks in ``dtype``, accumulated in float64. ``clamp``: form the feature as
        ``(Yp a_j)_+`` (one product, as in :meth:`relu_gram`) instead of applying the pattern: the same
        feature for the unit generators (rays); for a tilted direction only up to its cone
        projection's tolerance (measured and dropped there: :mod:`.workset`'s docstring).
        """
        self.passes += 1
        n = cols.numel()
        Y, x = self.Y.to(dtype), self.x.to(dtype)
        AT = A.T.to(dtype).contiguous()
        Gs = None if clamp else self.G[:, cols].to(dtype).contiguous()
        Qr = torch.zeros(k, n, dtype=F64, device=self.device)
        qr = torch.zeros(k, dtype=F64, device=self.device)
        chunk = self.gram_chunk
        sgn = None if clamp else torch.empty(chunk, n, dtype=dtype, device=self.device)
        feat = torch.empty(chunk, n, dtype=dtype, device=self.device)
        starts = list(range(0, k, block))
        for s, e in self.chunks(chunk):
            Yc = Y[s:e]
            Fc = torch.mm(Yc, AT, out=feat[:e - s])
            if clamp:
                Fc.clamp_min_(0)
            else:
                Fc.mul_(torch.mm(Yc, Gs, out=sgn[:e - s]).ge_(0))
            for b0 in starts:
                b1 = min(b0 + block, k)
                if dtype == F64:
                    Qr[b0:b1, b0:].addmm_(Fc[:, b0:b1].T, Fc[:, b0:])
                else:
                    Qr[b0:b1, b0:] += torch.mm(Fc[:, b0:b1].T, Fc[:, b0:]).to(F64)
            qr += torch.mv(Fc[:, :k].T, x[s:e]).to(F64)
        low = torch.tril_indices(k, k, -1, device=self.device)
        Qr[low[0], low[1]] = Qr[low[1], low[0]]
        return Qr / self.M, qr / self.M

    # -- dense Gram matrix of the gated features (barrier Newton systems) --------------------------
    def hessian(self):
        """``H = A^T A / M`` ((P d), (P d)) and ``b = A^T x / M`` (P, d) in float64, row-chunked."""
        self.passes += 1
        P, d = self.P, self.d
        n = P * d
        H = torch.zeros(n, n, dtype=F64, device=self.device)
        b = torch.zeros(n, dtype=F64, device=self.device)
        step = max(1, min(self.dense_chunk, (1 << 23) // max(n, 1)))
        for s in range(0, self.M, step):
            Yc = self.Y[s:s + step]
            Dc = (Yc @ self.G >= 0).to(F64)
            A = (Dc.unsqueeze(2) * Yc.unsqueeze(1)).reshape(Yc.shape[0], n)
            H.addmm_(A.T, A)
            b.addmv_(A.T, self.x[s:s + step])
        H /= self.M
        b /= self.M
        return H, b.reshape(P, d)

    # -- constraints ---------------------------------------------------------------------------
    def most_violated(self, U: torch.Tensor, blocks: torch.Tensor | None = None):
        """For blocks ``U`` (b, d) (all 2P blocks, or those listed in ``blocks``) the smallest
        normalised margin ``(2D_i - 1) yhat_p . u`` over all rows, and its row (float64). Zero rows
        have margin 0."""
        self.passes += 1
        P = self.P
        if blocks is None:
            blocks = torch.arange(2 * P, device=self.device)
        pats, inv = torch.unique(blocks % P, return_inverse=True)
        Gs = self.G if pats.numel() == P else self.G[:, pats].contiguous()
        UT = U.T.contiguous()
        B = U.shape[0]
        best = torch.full((B,), math.inf, dtype=F64, device=self.device)
        arg = torch.zeros(B, dtype=torch.long, device=self.device)
        chunk = self.rows_for(pats.numel())          # a few blocks: long chunks, few Python steps
        buf = torch.empty(chunk, pats.numel(), dtype=F64, device=self.device)
        same = B == 2 * pats.numel() and bool((inv == torch.arange(B, device=self.device) % pats.numel()).all())
        for s, e in self.chunks(chunk):
            sgn = torch.mm(self.Y[s:e], Gs, out=buf[:e - s]).ge_(0).mul_(2).sub_(1)
            T = self.Yh[s:e] @ UT                                                  # (c, b)
            if same:                                                               # w-blocks then z-blocks
                T[:, :B // 2] *= sgn
                T[:, B // 2:] *= sgn
            else:
                T *= sgn[:, inv]
            val, idx = T.min(0)
            better = val < best
            best = torch.where(better, val, best)
            arg = torch.where(better, idx + s, arg)
        return best, arg

    def nearest_rows(self, K: int) -> torch.Tensor:
        """(P, K) indices of the non-zero rows whose hyperplanes ``yhat_p^perp`` pass closest to ``g_i``.

        A threshold scan: the first chunk's K smallest ``|yhat_p . g_i|`` per generator by ``topk``;
        after that only the entries below each generator's current K-th value are candidates, and
        only the generators that have one are merged (a few hundred per chunk once the thresholds have
        settled). Chunks of about 64M numbers (``chunk_rows`` when given). Measured at paper size
        (M = 470,400, P = 8,000, K = 128, 2 cores): 6 s against 28 s for a running ``topk`` over every chunk (the previous
        kernel; 49 s inside a solve), the same sets."""
        self.passes += 1
        P, dev = self.P, self.device
        Yh, Gh = self.Yh.to(self.fast), self.Gh.to(self.fast)
        chunk = min(self.M, max(K, self.scan_chunk))
        buf = torch.empty(chunk, P, dtype=self.fast, device=dev)

        def block(s, e):
            A = torch.mm(Yh[s:e], Gh, out=buf[:e - s]).abs_()
            A[~self.nonzero[s:e]] = math.inf
            return A

        top, pos = block(0, chunk).topk(K, dim=0, largest=False)                  # (K, P)
        bval, bidx = top.T.contiguous(), pos.T.contiguous()                        # (P, K)
        tau = bval.amax(1)
        for s, e in self.chunks(chunk):
            if s == 0:
                continue
            A = block(s, e)
            r, c = (A < tau).nonzero(as_tuple=True)
            if r.numel() == 0:
                continue
            v = A[r, c]
            cols, slot_of = torch.unique(c, return_inverse=True)                  # generators to merge
            cnt = torch.bincount(slot_of, minlength=cols.numel())
            order = torch.argsort(slot_of, stable=True)
            row_of = slot_of[order]
            col_pos = torch.arange(order.numel(), device=dev) - (torch.cumsum(cnt, 0) - cnt)[row_of] + K
            V = torch.full((cols.numel(), K + int(cnt.max())), math.inf, dtype=bval.dtype, device=dev)
            I = torch.zeros(V.shape, dtype=torch.long, device=dev)
            V[:, :K], I[:, :K] = bval[cols], bidx[cols]
            V[row_of, col_pos], I[row_of, col_pos] = v[order], (r + s)[order]
            top, p = V.topk(K, dim=1, largest=False)
            bval[cols], bidx[cols] = top, I.gather(1, p)
            tau[cols] = top.amax(1)
        return bidx

    def rows_normals(self, rows: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
        """Unit constraint normals ``(2D_i - 1) yhat_p`` (float64): ``rows`` (B,) with ``pattern`` (B,),
        or ``rows`` (B, K) with ``pattern`` (B,). The sign is the float64 sign of ``y_p . g_i``."""
        g = self.G.T[pattern]
        if rows.ndim == 2:
            g = g.unsqueeze(1)
        sgn = torch.where((self.Y[rows] * g).sum(-1) >= 0, 1.0, -1.0).to(F64)
        return self.Yh[rows] * sgn.unsqueeze(-1)

    def evaluate(self, W: torch.Tensor, Z: torch.Tensor):
        """``(sq, worst, scale)`` in float64: squared residual, largest violation and largest ``|Yp u|``
        (DualNet's relative violation is ``worst / scale``). In-place chunk passes over the non-zero
        blocks only (a zero block has margin 0: no violation, no scale; tilted rays leave one block per
        active pattern), one column per block ``u_b`` with its pattern's generator: ``D_c`` formed
        in place, the prediction ``sum_b +-rowsum(Yp_c * (D_c u_b))`` as in :meth:`loss_grad` and the
        margins ``(2D_b - 1) Yp u_b`` in one product."""
        self.passes += 1
        pw = (W != 0).any(1).nonzero().squeeze(1)
        pz = (Z != 0).any(1).nonzero().squeeze(1)
        n = pw.numel() + pz.numel()
        if n == 0:
            return float(self.x @ self.x), 0.0, 0.0
        Gb = self.G[:, torch.cat([pw, pz])].contiguous()                           # (d, n)
        UT = torch.cat([W[pw], Z[pz]]).T.contiguous()                              # (d, n) the blocks
        VT = torch.cat([W[pw], -Z[pz]]).T.contiguous()                             # their signs in v = w - z
        sq = torch.zeros((), dtype=F64, device=self.device)
        worst = torch.zeros((), dtype=F64, device=self.device)
        scale = torch.zeros((), dtype=F64, device=self.device)
        chunk = self.rows_for(n)
        dbuf = torch.empty(chunk, n, dtype=F64, device=self.device)
        tbuf = torch.empty(chunk, n, dtype=F64, device=self.device)
        for s, e in self.chunks(chunk):
            D = torch.mm(self.Y[s:e], Gb, out=dbuf[:e - s]).ge_(0)                 # (c, n) of 1.0 / 0.0
            r = (torch.mm(VT, D.T) * self.YT[:, s:e]).sum(0) - self.x[s:e]
            sq += torch.dot(r, r)
            T = torch.mm(self.Y[s:e], UT, out=tbuf[:e - s])                        # (c, n): Yp u_b
            scale = torch.maximum(scale, torch.maximum(T.amax(), -T.amin()))
            worst = torch.maximum(worst, -T.mul_(D.mul_(2).sub_(1)).amin())
        return float(sq), float(worst.clamp_min(0)), float(scale)
