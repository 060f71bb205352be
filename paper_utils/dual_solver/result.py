r"""The result of the exact solver of eq. (4), :class:`DualSolution`, and its input checks.

:func:`paper_utils.dual_solver.solve_dual` (its module docstring states the program) returns a point
that satisfies every one of the ``2 M P`` cone constraints up to floating point (``max_violation``,
as :meth:`paper_utils.nets.dual.DualNet.max_violation` defines it), its certified lower bound on ``d_P``,
and the eq. (5) ReLU network (:meth:`DualSolution.to_primal`) that reproduces its predictions and its
objective.

Letter key: M patches, d patch dimension C k k, P patterns, B = 2P blocks (the w's then the z's).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..nets.dual import dual_to_primal


# ----------------------------------------------------------------------------------------------
# result
# ----------------------------------------------------------------------------------------------
@dataclass
class DualSolution:
    """Result of :func:`solve_dual`.

    Attributes:
        W, Z: the dual weights (P, d), exactly feasible (see ``max_violation``).
        objective: eq. (4) at (W, Z): ``loss + reg``.
        loss: ``1/(2M) ||sum_i D_i Yp (w_i - z_i) - x||^2``.
        reg: ``beta sum_i (||w_i|| + ||z_i||)``.
        lower_bound: a certified lower bound on the optimum of eq. (4) for these patterns.
        gap: ``(objective - lower_bound) / objective``, the certified relative optimality gap.
        max_violation: largest ``relu(-(2D_i - I) Yp w_i)`` (and z) over all rows and blocks,
            relative to the largest ``|Yp w_i|``, ``|Yp z_i|``.
        converged: ``gap <= tol``.
        status: a sentence saying how the solver stopped.
        history: per step ``time`` (s since the call), ``objective``, ``lower_bound``, ``gap``,
            ``phase`` (``"ray"``, ``"warm"``, ``"tilt"``, ``"ipm"``, ``"final"``); every entry is a feasible point.
        newton_steps: barrier Newton steps taken.
        seconds: wall time of the call.
        beta, G: the problem's ``beta`` and generator matrix (d, P).
    """

    W: torch.Tensor
    Z: torch.Tensor
    objective: float
    loss: float
    reg: float
    lower_bound: float
    gap: float
    max_violation: float
    converged: bool
    status: str
    history: dict = field(default_factory=dict)
    newton_steps: int = 0
    seconds: float = 0.0
    beta: float = 0.0
    G: torch.Tensor | None = None

    def as_dict(self) -> dict:
        """Plain tensors and numbers (for :class:`paper_utils.pipeline.cache.Cache`); inverse of :meth:`from_dict`."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["W"], out["Z"] = self.W.detach().cpu(), self.Z.detach().cpu()
        out["G"] = None if self.G is None else self.G.detach().cpu()
        return out

    @classmethod
    def from_dict(cls, payload: dict) -> "DualSolution":
        unknown = set(payload) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"not a DualSolution payload: unknown fields {sorted(unknown)}")
        return cls(**payload)

    def patch_weights(self, tol: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. (5) in patch form: ``U`` (m, d) and ``v`` (m,), one hidden unit per ``w_i`` and per
        ``z_i`` with norm ``> tol`` (``u = w / sqrt(||w||), v = sqrt(||w||)``, ``v = -sqrt(||z||)``)."""
        U, v = [], []
        for weights, sign in ((self.W, 1.0), (self.Z, -1.0)):
            norms = torch.linalg.vector_norm(weights, dim=1)
            keep = norms > tol
            root = norms[keep].sqrt()
            U.append(weights[keep] / root.unsqueeze(1))
            v.append(sign * root)
        return torch.cat(U), torch.cat(v)

    def to_primal(self, kernel_size: int | None = None, channels: int = 1, residual: bool = False,
                  tol: float = 0.0):
        """The ReLU network of eq. (5).

        With ``kernel_size=None`` returns the patch-form pair ``(U (m, d), v (m,))`` of
        :meth:`patch_weights`; otherwise a :class:`paper_utils.nets.primal.PrimalNet` built by
        :func:`paper_utils.nets.dual.dual_to_primal` (``d`` must equal ``channels * kernel_size**2``).
        """
        if kernel_size is None:
            return self.patch_weights(tol)
        return dual_to_primal(self.W, self.Z, kernel_size, channels, residual=residual, tol=tol)

    def predict_patches(self, Yp: torch.Tensor, chunk_rows: int = 4096) -> torch.Tensor:
        """``sum_i D_i Yp (w_i - z_i)`` (M,) for a patch matrix ``Yp`` (M, d) (eq. 8)."""
        G = self.G.to(device=Yp.device, dtype=Yp.dtype)
        V = (self.W - self.Z).to(device=Yp.device, dtype=Yp.dtype).T
        out = torch.empty(Yp.shape[0], dtype=Yp.dtype, device=Yp.device)
        for s in range(0, Yp.shape[0], chunk_rows):
            Yc = Yp[s:s + chunk_rows]
            out[s:s + chunk_rows] = torch.where(Yc @ G >= 0, Yc @ V, 0.0).sum(1)
        return out
