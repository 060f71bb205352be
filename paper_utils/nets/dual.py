r"""The convex dual network over sampled ReLU sign patterns, eq. (4)-(5) and (8).

For the patch matrix ``Yp`` (M, d) of :mod:`paper_utils.nets.patches` and targets ``x`` (M,), the
convex program of eq. (4), restricted to P sampled sign patterns ``D_i = diag(1[Yp g_i >= 0])``, is

.. math::
    d_P = \min_{w_i, z_i} \frac{1}{2M} \Big\| \sum_{i=1}^P D_i Yp (w_i - z_i) - x \Big\|_2^2
          + \beta \sum_{i=1}^P \left( \|w_i\|_2 + \|z_i\|_2 \right)
    \quad \text{s.t.} \quad (2D_i - I) Yp w_i \ge 0,\; (2D_i - I) Yp z_i \ge 0.

With every sign pattern, ``d = p*`` (Theorem 1); with a sample, ``d_P >= p*``. The generator
matrix ``G`` (d, P) holds one generator vector ``g_i`` per column: Gaussian k x k filters, the
paper's choice, deduplicated by the patterns they induce on the training patches
(:func:`sample_generators`). A solution maps back to the ReLU network by eq. (5),
``u = w / sqrt(||w||), v = sqrt(||w||)`` and ``u = z / sqrt(||z||), v = -sqrt(||z||)``
(:meth:`DualNet.to_primal`). The prediction is piecewise linear filtering, eq. (8):
``f(y_p) = sum_i d_i(p) y_p^T (w_i - z_i)``.

Computation (``benchmarks/README.md`` has the measured rates). With ``fast=True`` on CPU the fused
kernels of :mod:`paper_utils.nets.dual_kernels` (numba) compute every row's patterns, filter
responses, residual and gradient in registers, without a (rows, P) block in memory. Otherwise
(the reference path, and CUDA) everything is a matmul on ``Yp`` processed in row chunks: one product
``Yp_c @ [G | W^T | Z^T]`` (c, 3P) gives the patterns and both filter responses, and the gradient is
``[gW | gZ]^T @ Yp_c``; on CUDA with ``fast=True`` the chunk functions go through ``torch.compile``.
No (N, P, H, W) tensor is ever built, and (c, P) blocks are bounded by ``chunk_rows``.

Letter key: M patches (output pixels), d patch dimension C k k, P patterns, N images.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn as nn

from paper_utils.nets import dual_kernels, numba_runtime
from paper_utils.nets.patches import extract_patches
from paper_utils.nets.primal import PrimalNet

#: rows of ``Yp`` per chunk on CPU: (chunk, 3P) blocks small enough for the cache (measured: 512 is
#: about 5x faster than 4096 with the compiled kernel at P = 2000)
DEFAULT_CHUNK_ROWS = 512


def sign_patterns(Yp: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """Boolean sign patterns (M, P): entry (p, i) is ``1[Yp[p] @ G[:, i] >= 0]``, the diagonal of D_i."""
    return (Yp @ G) >= 0


def _column_fingerprints(Yp: torch.Tensor, G: torch.Tensor, chunk_rows: int, seed: int) -> torch.Tensor:
    """Two random float64 projections of each pattern column: equal patterns give equal prints."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    prints = torch.zeros(2, G.shape[1], dtype=torch.float64, device=G.device)
    for start in range(0, Yp.shape[0], chunk_rows):
        block = sign_patterns(Yp[start:start + chunk_rows], G).to(torch.float64)
        r = torch.rand(2, block.shape[0], generator=gen, dtype=torch.float64).to(G.device)
        prints += r @ block
    return prints


def sample_generators(Yp: torch.Tensor, n_patterns: int, *, seed: int = 0, oversample: float = 1.25,
                      chunk_rows: int = 8192) -> torch.Tensor:
    """Gaussian generator vectors whose sign patterns on ``Yp`` are distinct and non-zero.

    Draws ``ceil(oversample * n_patterns)`` standard normal columns (d,), drops those whose
    pattern ``1[Yp g >= 0]`` is all zero or repeats an earlier one, and keeps the first
    ``n_patterns`` (raising if fewer remain: the patches support fewer distinct patterns).

    Args:
        Yp: training patch matrix (M, d).
        n_patterns: P.
        seed: seeds the generators (and the fingerprints used for deduplication).

    Returns:
        ``G`` (d, P), on ``Yp``'s device and dtype.
    """
    if n_patterns < 1:
        raise ValueError(f"n_patterns must be >= 1, got {n_patterns}")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    n_draw = math.ceil(oversample * n_patterns) + 8
    G = torch.randn(Yp.shape[1], n_draw, generator=gen, dtype=torch.float64).to(device=Yp.device, dtype=Yp.dtype)
    prints = _column_fingerprints(Yp, G, chunk_rows, seed + 1).cpu()
    nonzero = (sign_patterns(Yp, G).any(0) if Yp.shape[0] <= chunk_rows else _any_positive(Yp, G, chunk_rows)).cpu()
    seen: set[tuple[float, float]] = set()
    keep = []
    for i in range(n_draw):
        fp = (round(float(prints[0, i]), 6), round(float(prints[1, i]), 6))
        if nonzero[i] and fp not in seen:
            seen.add(fp)
            keep.append(i)
        if len(keep) == n_patterns:
            break
    if len(keep) < n_patterns:
        raise ValueError(f"only {len(keep)} distinct non-zero sign patterns among {n_draw} Gaussian generators; "
                         f"ask for fewer patterns or raise `oversample`")
    return G[:, keep].contiguous()


def _any_positive(Yp: torch.Tensor, G: torch.Tensor, chunk_rows: int) -> torch.Tensor:
    out = torch.zeros(G.shape[1], dtype=torch.bool, device=G.device)
    for start in range(0, Yp.shape[0], chunk_rows):
        out |= sign_patterns(Yp[start:start + chunk_rows], G).any(0)
    return out


def _penalized_chunk(Yc: torch.Tensor, xc: torch.Tensor, right: torch.Tensor, inv_m: torch.Tensor,
                     rho_m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One row chunk of the penalised dual: gradient (2P, d) w.r.t. [W; Z], squared error, hinge sum.

    ``right = [G | W^T | Z^T]`` (d, 3P). Zero rows (padding) contribute nothing: their responses
    are 0, so residual, violations and gradient rows all vanish.
    """
    P = right.shape[1] // 3
    S = Yc @ right                                   # (c, 3P): patterns and both filter responses
    on = S[:, :P] >= 0                               # D_i restricted to the chunk
    SW, SZ = S[:, P:2 * P], S[:, 2 * P:]
    r = torch.where(on, SW - SZ, 0.0).sum(1) - xc    # residual of sum_i D_i Yp (w_i - z_i) - x
    # constraint (2D-I) Yp w >= 0 is violated where D=1 and Yp w < 0, or D=0 and Yp w > 0
    hinge = torch.where(on, -SW, SW).clamp_min(0.0).sum() + torch.where(on, -SZ, SZ).clamp_min(0.0).sum()
    rr = (r * inv_m).unsqueeze(1)
    one = torch.ones((), dtype=S.dtype, device=S.device)
    gW = torch.where(on, rr - rho_m * torch.where(SW < 0, one, 0.0), rho_m * torch.where(SW > 0, one, 0.0))
    gZ = torch.where(on, -rr - rho_m * torch.where(SZ < 0, one, 0.0), rho_m * torch.where(SZ > 0, one, 0.0))
    return torch.cat([gW, gZ], dim=1).T @ Yc, (r * r).sum(), hinge


def _predict_chunk(Yc: torch.Tensor, G: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
    """``sum_i D_i Yc v_i`` for one row chunk (c,), with ``V = (W - Z)^T`` (d, P)."""
    return torch.where(Yc @ G >= 0, Yc @ V, 0.0).sum(1)


def _evaluate_chunk(Yc: torch.Tensor, xc: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """One row chunk of the evaluation: squared error of the dual and of the eq. (5) ReLU network
    (whose prediction is ``sum_i (Yp w_i)_+ - (Yp z_i)_+``), largest violation and largest |Yp w|, |Yp z|."""
    P = right.shape[1] // 3
    S = Yc @ right
    on = S[:, :P] >= 0
    SW, SZ = S[:, P:2 * P], S[:, 2 * P:]
    r = torch.where(on, SW - SZ, 0.0).sum(1) - xc
    r_relu = (SW.clamp_min(0.0) - SZ.clamp_min(0.0)).sum(1) - xc
    viol = torch.maximum(torch.where(on, -SW, SW).amax(), torch.where(on, -SZ, SZ).amax()).clamp_min(0.0)
    return (r * r).sum(), (r_relu * r_relu).sum(), viol, S[:, P:].abs().amax()


_COMPILED: dict[str, object] = {}


def _fused(fast: bool, Yp: torch.Tensor) -> bool:
    """Whether to use the fused numba kernels: ``fast``, on CPU, patch dimension d <= ``MAX_FUSED_D``,
    unless ``$PAPER_UTILS_NO_COMPILE`` is set."""
    return numba_runtime.enabled(Yp, fast)


def _kernel(name: str, fast: bool):
    """The eager chunk function, or its ``torch.compile``d version (fused elementwise work, ~5x faster
    on CPU). Compiled kernels see one fixed chunk shape (inputs are zero-padded) so they compile once."""
    fn = {"penalized": _penalized_chunk, "predict": _predict_chunk, "evaluate": _evaluate_chunk}[name]
    if not fast or os.environ.get("PAPER_UTILS_NO_COMPILE"):
        return fn
    if name not in _COMPILED:
        import torch._dynamo

        # one compiled graph per (chunk, P) shape: allow many (an ablation sweeps P) before dynamo
        # silently falls back to eager
        for option in ("recompile_limit", "cache_size_limit"):
            if hasattr(torch._dynamo.config, option):
                setattr(torch._dynamo.config, option, max(64, getattr(torch._dynamo.config, option)))
        _COMPILED[name] = torch.compile(fn, dynamic=False)
    return _COMPILED[name]


def _padded_chunks(A: torch.Tensor, chunk_rows: int, pad: bool):
    """Yield (start, stop, block) over the rows of A; with ``pad`` every block has ``chunk_rows`` rows."""
    for start in range(0, A.shape[0], chunk_rows):
        block = A[start:start + chunk_rows]
        stop = start + block.shape[0]
        if pad and block.shape[0] < chunk_rows:
            block = torch.cat([block, block.new_zeros((chunk_rows - block.shape[0],) + tuple(block.shape[1:]))])
        yield start, stop, block


class _HingeDualLoss(torch.autograd.Function):
    """Fused, chunked loss and gradient of the paper's penalised dual (eq. 4 + hinge).

    ``L = 1/(2M) ||sum_i D_i Yp (w_i - z_i) - x||^2 + rho/M sum_i sum_p [ relu(-(2D_i-I) Yp w_i)
    + relu(-(2D_i-I) Yp z_i) ]_p``; the group-lasso term is added outside (autograd).
    The gradient is computed in the forward pass (the loss is a scalar) and scaled in backward.
    Returns (loss, squared-error sum, hinge sum) so callers can log the parts.
    """

    @staticmethod
    def forward(ctx, Yp, x, W, Z, G, rho, chunk_rows, fast):
        M, P = Yp.shape[0], W.shape[0]
        if _fused(fast, Yp):
            grad, sq, hinge = dual_kernels.penalized(Yp, x, G, W, Z, rho)
            ctx.save_for_backward(grad)
            ctx.P = P
            loss = torch.tensor(0.5 * sq / M + rho * hinge / M, dtype=W.dtype)
            return loss, torch.tensor(sq, dtype=torch.float64), torch.tensor(hinge, dtype=torch.float64)
        right = torch.cat([G, W.T, Z.T], dim=1)  # (d, 3P)
        grad = torch.zeros(2 * P, Yp.shape[1], dtype=W.dtype, device=W.device)
        sq = torch.zeros((), dtype=torch.float64, device=W.device)
        hinge = torch.zeros((), dtype=torch.float64, device=W.device)
        inv_m = torch.tensor(1.0 / M, dtype=W.dtype, device=W.device)
        rho_m = torch.tensor(rho / M, dtype=W.dtype, device=W.device)
        kernel = _kernel("penalized", fast)
        xs = x.unsqueeze(1)
        for (start, stop, Yc), (_, _, xc) in zip(_padded_chunks(Yp, chunk_rows, fast), _padded_chunks(xs, chunk_rows, fast)):
            g, s, h = kernel(Yc, xc[:, 0], right, inv_m, rho_m)
            grad += g
            sq += s.double()
            hinge += h.double()
        ctx.save_for_backward(grad)
        ctx.P = P
        loss = (0.5 * sq / M + rho * hinge / M).to(W.dtype)
        return loss, sq, hinge

    @staticmethod
    def backward(ctx, g_loss, g_sq, g_hinge):
        (grad,) = ctx.saved_tensors
        grad = grad * g_loss
        return None, None, grad[:ctx.P], grad[ctx.P:], None, None, None, None


class DualNet(nn.Module):
    """The convex dual network of eq. (4): parameters ``W``, ``Z`` (P, d), fixed generators ``G`` (d, P).

    Args:
        G: generator matrix (d, P); pattern i is ``1[Yp @ G[:, i] >= 0]``.
        kernel_size: k (d = channels * k * k).
        channels: input channels C.
        residual: predict ``Y + f(Y)`` (eq. 6).
        chunk_rows: rows of ``Yp`` per chunk (memory bound on (chunk, P) blocks); default 512 on CPU
            (blocks stay in cache), 16384 on GPU.
        fast: on CPU, the fused numba kernels of :mod:`paper_utils.nets.dual_kernels` (several times
            faster; the first process on a machine compiles them for seconds, later ones load them from
            numba's disk cache); on CUDA, the chunk functions through ``torch.compile``. Off by default;
            the training of ``cpu``/``paper`` scales turns it on. ``$PAPER_UTILS_NO_COMPILE=1`` forces the
            eager chunk functions (same mathematics).
    """

    def __init__(self, G: torch.Tensor, kernel_size: int = 3, channels: int = 1, *, residual: bool = False,
                 chunk_rows: int | None = None, fast: bool = False):
        super().__init__()
        d = channels * kernel_size ** 2
        if G.ndim != 2 or G.shape[0] != d:
            raise ValueError(f"G must have shape (d={d}, P), got {tuple(G.shape)}")
        if chunk_rows is None:
            chunk_rows = DEFAULT_CHUNK_ROWS if G.device.type == "cpu" else 16384
        self.kernel_size, self.channels, self.residual = kernel_size, channels, residual
        self.chunk_rows, self.fast = chunk_rows, fast
        self.register_buffer("G", G.detach().clone())
        P = G.shape[1]
        self.W = nn.Parameter(torch.zeros(P, d, dtype=G.dtype, device=G.device))
        self.Z = nn.Parameter(torch.zeros(P, d, dtype=G.dtype, device=G.device))

    @property
    def n_patterns(self) -> int:
        return self.G.shape[1]

    # -- predictions ---------------------------------------------------------------------------
    def predict_patches(self, Yp: torch.Tensor) -> torch.Tensor:
        """``sum_i D_i Yp (w_i - z_i)`` (M,), chunked, without gradient (eq. 8 per row)."""
        with torch.no_grad():
            V = (self.W - self.Z).T.contiguous()
            if _fused(self.fast, Yp):
                return dual_kernels.predict(Yp, self.G, V)
        out = torch.empty(Yp.shape[0], dtype=Yp.dtype, device=Yp.device)
        kernel = _kernel("predict", self.fast)
        with torch.no_grad():
            for start, stop, Yc in _padded_chunks(Yp, self.chunk_rows, self.fast):
                out[start:stop] = kernel(Yc, self.G, V)[:stop - start]
        return out

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) -> prediction (N, 1, H, W), without gradient (training uses :meth:`penalized_loss`)."""
        n, _, h, w = images.shape
        out = self.predict_patches(extract_patches(images, self.kernel_size)).reshape(n, 1, h, w)
        return images + out if self.residual else out

    # -- objective -----------------------------------------------------------------------------
    def group_lasso(self) -> torch.Tensor:
        """``sum_i ||w_i|| + ||z_i||`` (differentiable)."""
        return torch.linalg.vector_norm(self.W, dim=1).sum() + torch.linalg.vector_norm(self.Z, dim=1).sum()

    def penalized_loss(self, Yp: torch.Tensor, x: torch.Tensor, beta: float, rho: float) -> dict[str, torch.Tensor]:
        """The paper's training loss: eq. (4)'s objective plus ``rho`` times the mean hinge violation.

        Args:
            Yp: patch matrix (M, d) of the batch; x: targets (M,) (for a residual net, ``X - Y``).
        Returns a dict with ``total`` (differentiable), ``loss`` (1/(2M) squared error),
        ``reg`` (beta * group lasso) and ``hinge`` (sum of violations / M).
        """
        total, sq, hinge = _HingeDualLoss.apply(Yp, x, self.W, self.Z, self.G, float(rho), self.chunk_rows,
                                                self.fast)
        reg = beta * self.group_lasso()
        M = Yp.shape[0]
        return {"total": total + reg, "loss": (0.5 * sq / M).detach(), "reg": reg.detach(), "hinge": (hinge / M).detach()}

    def evaluate(self, Yp: torch.Tensor, x: torch.Tensor, beta: float) -> dict[str, float]:
        """Eq. (4) at the current point, and its feasibility, in one chunked pass (no gradient).

        Returns ``loss`` (1/(2M) squared error), ``reg`` (beta * group lasso), ``objective``
        (their sum; the constraints are not in it), ``max_violation`` (see :meth:`max_violation`),
        and ``rebuilt_loss`` / ``rebuilt_objective``: the same for the ReLU network of eq. (5)
        (:meth:`to_primal`), whose regulariser equals ``reg`` exactly and whose prediction is
        ``sum_i (Yp w_i)_+ - (Yp z_i)_+``; it equals the dual's when the constraints hold.
        """
        sq, sq_relu, worst, scale = 0.0, 0.0, 0.0, 0.0
        with torch.no_grad():
            if _fused(self.fast, Yp):
                sq, sq_relu, worst, scale = dual_kernels.evaluate(Yp, x, self.G, self.W, self.Z)
            else:
                kernel = _kernel("evaluate", self.fast)
                right = torch.cat([self.G, self.W.T, self.Z.T], dim=1)
                xs = x.unsqueeze(1)
                for (_, _, Yc), (_, _, xc) in zip(_padded_chunks(Yp, self.chunk_rows, self.fast),
                                                  _padded_chunks(xs, self.chunk_rows, self.fast)):
                    s, s_relu, v, a = kernel(Yc, xc[:, 0], right)
                    sq += float(s); sq_relu += float(s_relu); worst = max(worst, float(v)); scale = max(scale, float(a))
            reg = beta * float(self.group_lasso())
        loss, rebuilt = sq / (2 * Yp.shape[0]), sq_relu / (2 * Yp.shape[0])
        return {"loss": loss, "reg": reg, "objective": loss + reg,
                "max_violation": worst / scale if scale > 0 else 0.0,
                "rebuilt_loss": rebuilt, "rebuilt_objective": rebuilt + reg}

    def objective(self, Yp: torch.Tensor, x: torch.Tensor, beta: float) -> dict[str, float]:
        """Eq. (4) at the current point (constraints ignored; see :meth:`max_violation`)."""
        out = self.evaluate(Yp, x, beta)
        return {k: out[k] for k in ("loss", "reg", "objective")}

    def max_violation(self, Yp: torch.Tensor) -> float:
        """Largest constraint violation ``max_{i,p} relu(-(2D_i - I) Yp w_i)`` (and z), relative to ``max |Yp w|``."""
        return self.evaluate(Yp, torch.zeros(Yp.shape[0], dtype=Yp.dtype, device=Yp.device), 0.0)["max_violation"]

    # -- eq. (5) -------------------------------------------------------------------------------
    def to_primal(self, tol: float = 0.0) -> PrimalNet:
        """The ReLU network of eq. (5): one hidden filter per non-zero ``w_i`` and per non-zero ``z_i``.

        ``u = w / sqrt(||w||), v = +sqrt(||w||)`` and ``u = z / sqrt(||z||), v = -sqrt(||z||)``;
        filters with norm ``<= tol`` are dropped. When the constraints hold exactly, the result
        reproduces this network's predictions and objective.
        """
        return dual_to_primal(self.W.detach(), self.Z.detach(), self.kernel_size, self.channels,
                              residual=self.residual, tol=tol)


def dual_to_primal(W: torch.Tensor, Z: torch.Tensor, kernel_size: int, channels: int = 1, *,
                   residual: bool = False, tol: float = 0.0) -> PrimalNet:
    """Eq. (5) for dual weights ``W``, ``Z`` (P, d); see :meth:`DualNet.to_primal`."""
    U, v = [], []
    for weights, sign in ((W, 1.0), (Z, -1.0)):
        norms = torch.linalg.vector_norm(weights, dim=1)
        keep = norms > tol
        root = norms[keep].sqrt()
        U.append(weights[keep] / root.unsqueeze(1))
        v.append(sign * root)
    return PrimalNet.from_patch_weights(torch.cat(U), torch.cat(v), kernel_size, channels, residual=residual)
