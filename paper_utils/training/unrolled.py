r"""Unrolled networks: T iterations of the two-layer architecture, trained end to end (Figure 5b).

.. math::
    x_1 = f_1(Y), \qquad x_t = f_t(x_{t-1}), \qquad
    f_t(x) = \sum_{j=1}^{m} (x \circledast u_{t,j})_+ \circledast v_{t,j},

each ``f_t`` a :class:`~paper_utils.nets.primal.PrimalNet` (eq. 1, no bias), so T = 2 gives the paper's
four-layer network ("two unrolled iterations of the two-layer architecture", Sec. 5.1). It is trained
end to end on the final output with the primal's objective (eq. 2) summed over iterations,

.. math::
    \frac{1}{2M} \| x_T - X \|_2^2 + \frac{\beta}{2} \sum_{t, j} \left( \|u_{t,j}\|_2^2 + v_{t,j}^2 \right),

Adam with the configuration's primal learning rate, batch size and epochs (App. B.2), on the same
data as the two-layer networks. Each iteration's hidden activations give a binary code per pixel
(:func:`paper_utils.report.interpret.primal_codes` on that iteration's input), clustered in Figure 5(b).

The initialisation is drawn from ``seed + INIT_SEED_OFFSET`` (Kaiming uniform, like the primal), so
the first iteration does NOT start from the two-layer primal network's initial filters: agreement
between their clusters is then learned, not inherited. Batches are drawn from ``seed``.

Shapes: images (N, 1, H, W); each iteration has m first-layer k x k filters.
"""

from __future__ import annotations

import time

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from paper_utils.pipeline.cache import Cache
from paper_utils.pipeline.config import DenoiseConfig
from paper_utils.data.mnist import DenoisingSet
from paper_utils.nets.primal import PrimalNet, primal_objective
from paper_utils.training.adam import History, TrainingDiverged, paper_adam

#: offset of the initialisation seed from the configuration's seed (see the module docstring)
INIT_SEED_OFFSET = 1000
#: bump when a code change alters trained unrolled networks (part of the cache name)
UNROLLED_CODE_VERSION = "1"


class UnrolledNet(nn.Module):
    """``x_T = f_T(... f_1(Y))``: T two-layer conv ReLU networks in sequence (no bias, single channel).

    Args:
        n_filters: hidden filters m of each iteration.
        kernel_size: k (odd).
        n_iterations: T (the paper's Figure 5b: 2, i.e. four layers).
        generator: RNG of the Kaiming-uniform initialisation (iteration 1 first).
    """

    def __init__(self, n_filters: int, kernel_size: int = 3, n_iterations: int = 2, *,
                 generator: torch.Generator | None = None):
        super().__init__()
        if n_iterations < 1:
            raise ValueError(f"n_iterations must be >= 1, got {n_iterations}")
        self.kernel_size = kernel_size
        self.iterations = nn.ModuleList(PrimalNet(n_filters, kernel_size, generator=generator)
                                        for _ in range(n_iterations))

    @property
    def n_iterations(self) -> int:
        return len(self.iterations)

    def iterates(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``[Y, x_1, ..., x_T]``: the input and every iteration's output, each (N, 1, H, W)."""
        xs = [images]
        for f in self.iterations:
            xs.append(f(xs[-1]))
        return xs

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images (N, 1, H, W) -> ``x_T`` (N, 1, H, W)."""
        return self.iterates(images)[-1]

    def patch_forward(self, images: torch.Tensor) -> torch.Tensor:
        """The same ``x_T`` (N, 1, H, W), each iteration in patch form (:meth:`PrimalNet.patch_forward`, the
        fused kernel on CPU), for evaluation only: computed without gradients (the patch form gives none for
        its input, which the second iteration would need). On 2 CPU cores about 40x faster than the conv2d
        path, whose (N, m, H, W) activations go through memory; the values agree to float32 rounding."""
        with torch.no_grad():
            x = images
            for f in self.iterations:
                x = f.patch_forward(x)
        return x

    def regularizer(self, beta: float) -> torch.Tensor:
        """``beta / 2`` times the squared norm of every weight (eq. 2, summed over iterations)."""
        return sum(f.regularizer(beta) for f in self.iterations)


def train_unrolled(cfg: DenoiseConfig, train: DenoisingSet, test: DenoisingSet, *, device: torch.device,
                   n_iterations: int = 2, progress: bool = True) -> tuple[UnrolledNet, History]:
    """Train an :class:`UnrolledNet` end to end with the primal settings of ``cfg`` (Adam, batch, epochs, beta).

    Evaluated (train objective, train and test loss ``1/(2M)||x_T - X||^2``) at initialisation and after
    every epoch, like :func:`paper_utils.training.adam.train_primal`, in patch form
    (:meth:`UnrolledNet.patch_forward`; the training steps use the conv2d path, which gives the gradient
    through the first iteration's output). The evaluation does not change the trained weights, so the
    cache name did not change with it (``UNROLLED_CODE_VERSION``); histories from the conv2d evaluation
    differ from it by float32 rounding.
    """
    if cfg.residual:
        raise ValueError("the unrolled network of Figure 5 is not residual; use a configuration with residual=False")
    net = UnrolledNet(cfg.n_filters, cfg.kernel_size, n_iterations,
                      generator=torch.Generator().manual_seed(cfg.seed + INIT_SEED_OFFSET)).to(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = paper_adam(net.parameters(), cfg.lr_primal)
    Ytr, Xtr = train.noisy.to(device), train.clean.to(device)
    Yte, Xte = test.noisy.to(device), test.clean.to(device)
    hist = History()
    start, eval_seconds = time.perf_counter(), 0.0

    def evaluate(epoch: int) -> float:
        t0 = time.perf_counter()
        tr = primal_objective(net, Ytr, Xtr, cfg.beta)
        te = primal_objective(net, Yte, Xte, cfg.beta)
        hist.epoch.append(epoch); hist.train_loss.append(tr["loss"]); hist.train_objective.append(tr["objective"])
        hist.test_loss.append(te["loss"]); hist.seconds.append(t0 - start - eval_seconds)
        return time.perf_counter() - t0

    eval_seconds += evaluate(0)
    bar = tqdm(range(1, cfg.epochs + 1), desc=f"unrolled x{n_iterations} {cfg.label()}", disable=not progress,
               leave=False)
    for epoch in bar:
        for idx in torch.randperm(len(train), generator=gen).split(cfg.batch_size):
            loss = 0.5 * (net(Ytr[idx]) - Xtr[idx]).pow(2).mean() + net.regularizer(cfg.beta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if not torch.isfinite(loss.detach()):
            raise TrainingDiverged(f"unrolled loss became {float(loss)} while training {cfg.label()} "
                                   f"(key {cfg.key()}); lower the learning rate")
        eval_seconds += evaluate(epoch)
        bar.set_postfix(train=f"{hist.train_objective[-1]:.4g}", test=f"{hist.test_loss[-1]:.4g}")
    return net, hist


def cache_name(cfg: DenoiseConfig, n_iterations: int = 2) -> str:
    """Cache entry name: the configuration's label and key, the iteration count and the code version."""
    return f"{cfg.label()}-T{n_iterations}-v{UNROLLED_CODE_VERSION}-{cfg.key()}"


def load_or_train_unrolled(cfg: DenoiseConfig, train: DenoisingSet, test: DenoisingSet, *, device: torch.device,
                           n_iterations: int = 2, cache: Cache | None = None,
                           progress: bool = True) -> tuple[UnrolledNet, History]:
    """The unrolled network of ``cfg``: from the cache (kind ``"unrolled"``) if present, else trained and cached."""
    cache = cache or Cache()
    name = cache_name(cfg, n_iterations)
    payload = cache.load("unrolled", name)
    if payload is None:
        net, hist = train_unrolled(cfg, train, test, device=device, n_iterations=n_iterations, progress=progress)
        cache.save("unrolled", name, {"config": cfg.as_dict(), "n_iterations": n_iterations,
                                      "state": {k: v.cpu() for k, v in net.state_dict().items()},
                                      "history": hist.as_dict()})
        return net, hist
    net = UnrolledNet(cfg.n_filters, cfg.kernel_size, n_iterations)
    net.load_state_dict(payload["state"])
    return net.to(device), History.from_dict(payload["history"])
