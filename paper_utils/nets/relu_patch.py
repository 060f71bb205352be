r"""The two-layer ReLU network in patch form, eq. (3), as fused row-chunked kernels.

For the patch matrix ``Yp`` (M, d), first-layer filters ``U`` (m, d) and second-layer weights ``v``
(m,), the network's output is ``f = (Yp U^T)_+ v`` (M,), and for targets ``x`` (M,) with residual
``r = f - x`` the gradients of ``1/2 ||r||^2`` are

.. math::
    \partial_{u_j} = v_j\, g_j, \qquad \partial_{v_j} = \sum_i r_i (y_i^\top u_j)_+ = u_j^\top g_j,
    \qquad g_j = \sum_{i:\, y_i^\top u_j > 0} r_i\, y_i ,

the second identity because ``(y^T u)_+ = 1[y^T u > 0] y^T u`` (no bias). So one pass per row chunk
needs two thin products and three in-place passes over one (c, m) block that stays in cache:

1. ``H = Yc U^T`` into a reused buffer; 2. ``H <- H_+`` in place; 3. ``r = H v - x``;
4. ``H <- sign(H)`` in place (the 0/1 activation mask); 5. ``g += (r * Yc)^T H`` (d, m).

No (M, m) tensor is ever built and ``v``'s gradient costs no pass of its own. Measured on 2 cores
at ``cpu`` scale (M = 470,400, d = 9, m = 512; ``benchmarks/bench_kernels.py``): objective and gradient
in about 0.2 s, against 1.0 s for the unfused form (separate mask tensor, ``(c, m) x (c, d)``
products with the long dimension inside). Per-chunk sums are float32 products accumulated into
float64 across chunks (or float64 throughout with ``compute_dtype=torch.float64``).

:class:`ReluPatchNet` wraps the same kernel as an autograd function (gradients for ``U`` and ``v``
only; the images are data), used by the paper's Adam training of the primal network.

On CPU with d <= 16 (k = 3) every function here runs the fused numba kernels of
:mod:`paper_utils.nets.primal_kernels` instead (no (c, m) block at all; ``chunk_rows`` is then unused),
unless ``fused=False`` or ``$PAPER_UTILS_NO_COMPILE`` is set: measured at m = 2,048 on 2 cores, 0.55 s
against 1.4 s for the chunked form (``benchmarks/bench_kernels.py``, ``primal_lbfgs_eval_m2048``).

Letter key: M patch rows (output pixels), d = C k k patch dimension, m hidden filters, c chunk rows.
"""

from __future__ import annotations

import torch

from paper_utils.nets import numba_runtime, primal_kernels

#: rows per chunk on CPU: a (c, m = 512) float32 block of 4 MiB, resident in the 2 MiB L2 + L3
#: (measured at m = 512, d = 9: 256 rows 0.24 s, 512 0.22 s, 1,024 0.20 s, 2,048 0.19 s per pass)
CPU_CHUNK_ROWS = 2048
#: rows per chunk on CUDA (one launch per 64k rows)
CUDA_CHUNK_ROWS = 65536


def default_chunk_rows(device: torch.device) -> int:
    """The chunk size for ``device`` (:data:`CPU_CHUNK_ROWS` or :data:`CUDA_CHUNK_ROWS`)."""
    return CUDA_CHUNK_ROWS if torch.device(device).type == "cuda" else CPU_CHUNK_ROWS


def _check(Yp: torch.Tensor, U: torch.Tensor, v: torch.Tensor, x: torch.Tensor | None = None) -> None:
    if (Yp.ndim != 2 or U.ndim != 2 or U.shape[1] != Yp.shape[1] or v.shape != (U.shape[0],)
            or (x is not None and x.shape != (Yp.shape[0],))):
        raise ValueError(f"need Yp (M, d), U (m, d), v (m,) and x (M,); got Yp {tuple(Yp.shape)}, "
                         f"U {tuple(U.shape)}, v {tuple(v.shape)}" + (f", x {tuple(x.shape)}" if x is not None else ""))


def _chunk_rows(chunk_rows: int | None, device: torch.device) -> int:
    if chunk_rows is None:
        return default_chunk_rows(device)
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    return int(chunk_rows)


def _chunks(M: int, chunk_rows: int):
    for start in range(0, M, chunk_rows):
        yield start, min(start + chunk_rows, M)


def _use_fused(fused: bool | None, Yp: torch.Tensor) -> bool:
    """``fused`` if given (True raises where the fused kernels cannot run), else whether they can."""
    if fused is None:
        return numba_runtime.enabled(Yp)
    if fused and not numba_runtime.available(Yp.shape[-1]):
        raise ValueError(f"the fused kernels take d <= {numba_runtime.MAX_FUSED_D} with numba importable; "
                         f"got d = {Yp.shape[-1]}")
    return fused


def relu_patch_forward(Yp: torch.Tensor, U: torch.Tensor, v: torch.Tensor, *,
                       chunk_rows: int | None = None, fused: bool | None = None) -> torch.Tensor:
    """``f = (Yp U^T)_+ v`` (M,), in ``U``'s dtype, chunked (no gradient).

    Args:
        Yp: patch matrix (M, d) (converted to ``U``'s dtype chunk by chunk).
        U: first-layer filters (m, d).
        v: second-layer weights (m,).
        chunk_rows: rows per chunk (default :func:`default_chunk_rows`).
        fused: use :mod:`paper_utils.nets.primal_kernels` (default: where it runs, see the module docstring).
    """
    _check(Yp, U, v)
    chunk_rows = _chunk_rows(chunk_rows, Yp.device)
    if _use_fused(fused, Yp):
        return primal_kernels.forward(Yp, U.detach(), v.detach())
    UT, vw = U.detach().T.contiguous(), v.detach()
    out = torch.empty(Yp.shape[0], dtype=U.dtype, device=U.device)
    H = torch.empty(min(chunk_rows, max(Yp.shape[0], 1)), U.shape[0], dtype=U.dtype, device=U.device)
    with torch.no_grad():
        for start, stop in _chunks(Yp.shape[0], chunk_rows):
            h = H[:stop - start]
            torch.mm(Yp[start:stop].to(U.dtype), UT, out=h)
            h.clamp_min_(0)
            torch.mv(h, vw, out=out[start:stop])
    return out


def relu_patch_sq_grad(Yp: torch.Tensor, x: torch.Tensor, U: torch.Tensor, v: torch.Tensor, *, grad: bool = True,
                       chunk_rows: int | None = None, compute_dtype: torch.dtype = torch.float32,
                       fused: bool | None = None):
    """``||(Yp U^T)_+ v - x||^2`` and the per-filter sums ``g`` (m, d) of the module docstring.

    Args:
        Yp: patch matrix (M, d).
        x: targets (M,).
        U, v: the network (m, d), (m,), any float dtype.
        grad: also return ``g``.
        chunk_rows: rows per chunk (default :func:`default_chunk_rows`).
        compute_dtype: dtype of the chunk products (float32: half the traffic; float64: exact
            gradients for tests and small problems).
        fused: use :mod:`paper_utils.nets.primal_kernels` (default: where it runs, see the module docstring).

    Returns:
        ``(sq, g)``: ``sq`` a float64 0-d tensor, ``g`` float64 (m, d) (``None`` without ``grad``);
        the gradients of ``1/2 sq`` are ``gU = v[:, None] * g`` and ``gv = (U * g).sum(1)``, with ``U``
        and ``v`` rounded to ``compute_dtype`` as the products used them (:func:`relu_patch_grads`).
    """
    _check(Yp, U, v, x)
    chunk_rows = _chunk_rows(chunk_rows, Yp.device)
    if _use_fused(fused, Yp):
        if not grad:
            r = primal_kernels.forward(Yp, U.detach(), v.detach(), dtype=compute_dtype) - x.to(compute_dtype)
            return torch.dot(r.double(), r.double()), None
        sq, g = primal_kernels.sq_grad(Yp, x, U.detach(), v.detach(), dtype=compute_dtype)
        return torch.tensor(sq, dtype=torch.float64), g
    dev, work = U.device, compute_dtype
    UT, vw = U.detach().to(work).T.contiguous(), v.detach().to(work)
    sq = torch.zeros((), dtype=torch.float64, device=dev)
    g = torch.zeros(U.shape[1], U.shape[0], dtype=torch.float64, device=dev) if grad else None   # (d, m)
    H = torch.empty(min(chunk_rows, max(Yp.shape[0], 1)), U.shape[0], dtype=work, device=dev)
    with torch.no_grad():
        for start, stop in _chunks(Yp.shape[0], chunk_rows):
            Yc = Yp[start:stop].to(work)
            h = H[:stop - start]
            torch.mm(Yc, UT, out=h)
            h.clamp_min_(0)
            r = torch.mv(h, vw)
            r -= x[start:stop].to(work)
            sq += torch.dot(r, r).double()
            if grad:
                h.sign_()                                   # 0/1 activation mask, in place
                g += torch.mm((Yc * r[:, None]).T, h).double()
    return sq, (g.T if grad else None)


def relu_patch_grads(U: torch.Tensor, v: torch.Tensor, g: torch.Tensor, compute_dtype: torch.dtype = torch.float32):
    """Gradients ``(gU (m, d), gv (m,))`` of ``1/2 ||r||^2`` from the sums ``g`` of :func:`relu_patch_sq_grad`
    (float64; ``U``, ``v`` rounded to ``compute_dtype`` first, as the kernel's products saw them)."""
    Uw = U.detach().to(compute_dtype).double()
    vw = v.detach().to(compute_dtype).double()
    return vw[:, None] * g, (Uw * g).sum(1)


class ReluPatchNet(torch.autograd.Function):
    """``f = (Yp U^T)_+ v`` (M,) with gradients for ``U`` (m, d) and ``v`` (m,) (none for ``Yp``).

    The backward pass recomputes each chunk's block (nothing of size (M, m) is saved) and accumulates
    in ``U``'s dtype. Use as ``ReluPatchNet.apply(Yp, U, v, chunk_rows, fused)``.
    """

    @staticmethod
    def forward(ctx, Yp, U, v, chunk_rows=None, fused=None):
        _check(Yp, U, v)
        ctx.save_for_backward(Yp, U, v)
        ctx.chunk_rows = _chunk_rows(chunk_rows, Yp.device)
        ctx.fused = _use_fused(fused, Yp)
        return relu_patch_forward(Yp, U, v, chunk_rows=ctx.chunk_rows, fused=ctx.fused)

    @staticmethod
    def backward(ctx, grad_out):
        Yp, U, v = ctx.saved_tensors
        if ctx.fused:
            g = primal_kernels.masked_sums(Yp, grad_out.detach(), U.detach()).to(U.dtype)
            return None, v[:, None] * g, (U * g).sum(1), None, None
        UT = U.T.contiguous()
        g = torch.zeros(U.shape[1], U.shape[0], dtype=U.dtype, device=U.device)      # (d, m)
        H = torch.empty(min(ctx.chunk_rows, max(Yp.shape[0], 1)), U.shape[0], dtype=U.dtype, device=U.device)
        for start, stop in _chunks(Yp.shape[0], ctx.chunk_rows):
            Yc = Yp[start:stop].to(U.dtype)
            h = H[:stop - start]
            torch.mm(Yc, UT, out=h)
            h.gt_(0)                                          # 0/1 mask in place
            g.addmm_((Yc * grad_out[start:stop, None]).T, h)
        g = g.T
        return None, v[:, None] * g, (U * g).sum(1), None, None
