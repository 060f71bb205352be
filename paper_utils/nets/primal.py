r"""The primal network: a two-layer fully-convolutional ReLU network, eq. (1)-(3).

.. math::
    f(Y) = \sum_{j=1}^{m} (Y \circledast u_j)_+ \circledast v_j, \qquad
    p = \frac{1}{2M} \| f(Y) - X \|_2^2 + \frac{\beta}{2} \sum_j \left( \|u_j\|_2^2 + v_j^2 \right)

with ``m`` first-layer k x k filters ``u_j`` (zero padding k // 2, stride 1), second-layer 1 x 1
weights ``v_j``, no bias anywhere, ``M = N * H * W`` output pixels (the loss is averaged over
samples and pixels; ``beta`` is not, paper App. B). In patch form, eq. (3),
``f = sum_j (Yp u_j)_+ v_j`` with the patch matrix ``Yp`` (M, d) of :mod:`paper_utils.nets.patches`.
With ``residual=True`` the network predicts ``Y + f(Y)`` (eq. 6, Corollary 1.1).

Shapes: images (N, C, H, W); first-layer weight (m, C, k, k) = ``U`` (m, d) with d = C k k;
second-layer weight (1, m, 1, 1) = ``v`` (m,).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from paper_utils.nets.patches import extract_patches
from paper_utils.nets.relu_patch import ReluPatchNet


class PrimalNet(nn.Module):
    """Two-layer conv ReLU network ``Y -> conv1x1(relu(conv_kxk(Y)))`` (optionally ``+ Y``).

    Args:
        n_filters: hidden filters m.
        kernel_size: k (odd).
        channels: input channels C (output has one channel).
        residual: add the input to the output (eq. 6).
        generator: RNG for the Kaiming-uniform initialisation (paper App. B).
    """

    def __init__(self, n_filters: int, kernel_size: int = 3, channels: int = 1, *, residual: bool = False,
                 generator: torch.Generator | None = None):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        if residual and channels != 1:
            raise ValueError("a residual network needs one input channel")
        self.kernel_size, self.channels, self.residual = kernel_size, channels, residual
        self.conv1 = nn.Conv2d(channels, n_filters, kernel_size, padding=kernel_size // 2, bias=False)
        self.conv2 = nn.Conv2d(n_filters, 1, 1, bias=False)
        with torch.no_grad():
            for conv in (self.conv1, self.conv2):
                # Kaiming uniform (He et al. 2015) for ReLU: U(-b, b), b = sqrt(6 / fan_in)
                bound = (6.0 / conv.weight[0].numel()) ** 0.5
                conv.weight.copy_(torch.rand(conv.weight.shape, generator=generator) * 2 * bound - bound)

    @property
    def n_filters(self) -> int:
        return self.conv1.out_channels

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) -> prediction (N, 1, H, W)."""
        out = self.conv2(F.relu(self.conv1(images)))
        return images + out if self.residual else out

    def patch_forward(self, images: torch.Tensor) -> torch.Tensor:
        """The same prediction (N, 1, H, W) computed in patch form, eq. (3), by the fused kernel of
        :class:`paper_utils.nets.relu_patch.ReluPatchNet` (gradients for the weights, none for the
        images). Several times faster than :meth:`forward` on CPU for d = C k k <= 49 (``benchmarks/``)."""
        n, _, h, w = images.shape
        Yp = extract_patches(images, self.kernel_size)
        U, v = self.conv1.weight.reshape(self.n_filters, -1), self.conv2.weight.reshape(-1)
        out = ReluPatchNet.apply(Yp, U, v).reshape(n, 1, h, w)
        return images + out if self.residual else out

    def regularizer(self, beta: float) -> torch.Tensor:
        """``beta / 2 * sum_j (||u_j||^2 + v_j^2)``."""
        return 0.5 * beta * (self.conv1.weight.pow(2).sum() + self.conv2.weight.pow(2).sum())

    def patch_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``U`` (m, d) and ``v`` (m,) of the patch form, eq. (3)."""
        return self.conv1.weight.detach().reshape(self.n_filters, -1), self.conv2.weight.detach().reshape(-1)

    @classmethod
    def from_patch_weights(cls, U: torch.Tensor, v: torch.Tensor, kernel_size: int, channels: int = 1, *,
                           residual: bool = False) -> "PrimalNet":
        """Build the network from ``U`` (m, d) and ``v`` (m,), with d = channels * k * k."""
        if U.ndim != 2 or v.ndim != 1 or U.shape[0] != v.shape[0]:
            raise ValueError(f"need U (m, d) and v (m,), got {tuple(U.shape)} and {tuple(v.shape)}")
        if U.shape[1] != channels * kernel_size ** 2:
            raise ValueError(f"U has d={U.shape[1]} but channels * k * k = {channels * kernel_size ** 2}")
        net = cls(max(U.shape[0], 1), kernel_size, channels, residual=residual)
        net = net.to(device=U.device, dtype=U.dtype)
        with torch.no_grad():
            if U.shape[0] == 0:  # the zero network
                net.conv1.weight.zero_(); net.conv2.weight.zero_()
            else:
                net.conv1.weight.copy_(U.reshape(-1, channels, kernel_size, kernel_size))
                net.conv2.weight.copy_(v.reshape(1, -1, 1, 1))
        return net


def primal_objective(net: PrimalNet, noisy: torch.Tensor, clean: torch.Tensor, beta: float,
                     batch_size: int = 500) -> dict[str, float]:
    """The training objective ``p`` of eq. (2) on a whole set, evaluated in batches (no grad).

    A network with a ``patch_forward`` method (:class:`PrimalNet`, the unrolled network of
    :mod:`paper_utils.training.unrolled`) is evaluated in patch form, any other by calling it.

    Returns ``{"loss": 1/(2M) ||f(Y) - X||^2, "reg": beta/2 sum(...), "objective": loss + reg}``.
    """
    sq, count = 0.0, 0
    forward = getattr(net, "patch_forward", net)
    with torch.no_grad():
        for i in range(0, noisy.shape[0], batch_size):
            out = forward(noisy[i:i + batch_size])
            sq += float((out - clean[i:i + batch_size]).double().pow(2).sum())
            count += out.numel()
        reg = float(net.regularizer(beta))
    loss = sq / (2 * count)
    return {"loss": loss, "reg": reg, "objective": loss + reg}
