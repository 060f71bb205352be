"""The paper's training of both networks (App. B): Adam, batch 25, per-epoch train/test curves.

- Primal, eq. (2): Adam on ``1/(2M_b) ||f(Y_b) - X_b||^2 + beta/2 (||U||^2 + ||v||^2)`` per batch
  (loss averaged over the batch's pixels, ``beta`` not averaged).
- Dual, eq. (4): Adam on ``1/(2M_b) ||sum_i D_i Yp_b (w_i - z_i) - x_b||^2 + beta sum_i (||w_i|| + ||z_i||)
  + rho/M_b * sum of hinge violations of (2D_i - I) Yp_b w_i >= 0 and of z_i`` (paper App. B:
  "we penalize the constraint violation via hinge loss"; rho is ours: ``hinge_weight``).

``seconds`` is the training time (evaluation excluded) at the end of each epoch.
After every epoch (and at initialisation, epoch 0) both are evaluated on the full training and
test sets: the data loss ``1/(2M) ||f - X||^2`` and the objective (loss + regulariser). A configuration
with ``test_every > 1`` evaluates the test set only after the epochs that
:meth:`~paper_utils.pipeline.config.DenoiseConfig.evaluates_test` names and records NaN test losses
after the others; evaluation never touches the weights or the batch order, so the training is the same. For the dual
we also log the hinge violation, the largest relative constraint violation and the objective of the
ReLU network rebuilt by eq. (5) (what a user of the dual actually gets).

A run that produces a non-finite loss stops with :class:`TrainingDiverged`, naming the configuration.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from paper_utils.pipeline.config import DenoiseConfig
from paper_utils.data.mnist import DenoisingSet
from paper_utils.nets import numba_runtime
from paper_utils.nets.dual import DualNet, sample_generators
from paper_utils.nets.patches import extract_patches
from paper_utils.nets.primal import PrimalNet, primal_objective


#: the test losses recorded after an epoch whose test evaluation ``cfg.test_every`` skips
_SKIPPED = {"loss": math.nan, "rebuilt_loss": math.nan}


class TrainingDiverged(RuntimeError):
    """A training loss became NaN or Inf."""


@dataclass
class History:
    """Per-epoch curves; index 0 is the initialisation.

    All losses are ``1/(2M) ||f - X||^2`` (averaged over samples and pixels); objectives add the
    regulariser of eq. (2) (primal) or eq. (4) (dual).
    """

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_objective: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    # dual only; "rebuilt": the ReLU network of eq. (5) built from the dual weights
    hinge: list[float] = field(default_factory=list)
    max_violation: list[float] = field(default_factory=list)
    rebuilt_objective: list[float] = field(default_factory=list)
    rebuilt_test_loss: list[float] = field(default_factory=list)
    #: where and how it was trained, e.g. {"device": "cuda", "device_name": "NVIDIA H100 80GB HBM3"}
    meta: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {k: (dict(v) if isinstance(v, dict) else list(v)) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        return cls(**d)


def _targets(data: DenoisingSet, residual: bool) -> torch.Tensor:
    return data.clean - data.noisy if residual else data.clean


def _check_finite(value: float, what: str, cfg: DenoiseConfig) -> None:
    if not math.isfinite(value):
        raise TrainingDiverged(f"{what} became {value} while training {cfg.label()} (key {cfg.key()}); "
                               f"lower the learning rate. Earlier cached results are kept.")


def _device_meta(device: torch.device) -> dict:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {"device": device.type, "device_name": name, "torch": str(torch.__version__)}


def check_finite_data(*sets: DenoisingSet) -> None:
    """Raise ``ValueError`` if any image of the given sets holds NaN or Inf (before any training)."""
    for data in sets:
        for name in ("noisy", "clean"):
            tensor = getattr(data, name)
            if not torch.isfinite(tensor).all():
                bad = (~torch.isfinite(tensor)).reshape(tensor.shape[0], -1).any(1).nonzero().flatten().tolist()
                raise ValueError(f"{name} images {bad[:10]}{'...' if len(bad) > 10 else ''} contain NaN or Inf")


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    return list(torch.randperm(n, generator=generator).split(batch_size))


def paper_adam(params, lr: float) -> torch.optim.Adam:
    """The paper's Adam (betas 0.9, 0.999, eps 1e-8) with the fused (single-kernel, all parameters at once)
    update on CPU and CUDA, where torch has it for the parameters' dtype."""
    params = list(params)
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64) for p in params)
    return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, fused=fused or None)


def primal_epoch(net: PrimalNet, opt: torch.optim.Optimizer, Y: torch.Tensor, X: torch.Tensor,
                 cfg: DenoiseConfig, gen: torch.Generator) -> None:
    """One epoch of the paper's primal Adam: minibatches of ``cfg.batch_size`` images ``Y``, ``X``
    (N, 1, H, W) drawn by ``gen``, loss ``1/2 mean((f(Y) - X)^2) + beta/2 (||U||^2 + ||v||^2)`` (eq. 2),
    ``f`` computed in patch form by the fused kernel (:meth:`PrimalNet.patch_forward`)."""
    fused = numba_runtime.routes(Y.device, Y.shape[1] * net.kernel_size ** 2)
    with numba_runtime.torch_serial(fused):
        for idx in _batches(len(Y), cfg.batch_size, gen):
            loss = 0.5 * (net.patch_forward(Y[idx]) - X[idx]).pow(2).mean() + net.regularizer(cfg.beta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    _check_finite(float(loss.detach()), "primal loss", cfg)


def dual_epoch(net: DualNet, opt: torch.optim.Optimizer, Yp_img: torch.Tensor, x_img: torch.Tensor,
               cfg: DenoiseConfig, gen: torch.Generator) -> float:
    """One epoch of the paper's dual Adam on eq. (4) with the hinge penalty: minibatches of
    ``cfg.batch_size`` images of patches ``Yp_img`` (N, H W, d) and targets ``x_img`` (N, H W) drawn by
    ``gen``. Returns the mean hinge term over the epoch's steps."""
    hinge_sum, n_steps = 0.0, 0
    with numba_runtime.torch_serial(numba_runtime.enabled(Yp_img, net.fast)):
        for idx in _batches(len(Yp_img), cfg.batch_size, gen):
            parts = net.penalized_loss(Yp_img[idx].reshape(-1, Yp_img.shape[-1]), x_img[idx].reshape(-1),
                                       cfg.beta, cfg.hinge_weight)
            opt.zero_grad(set_to_none=True)
            parts["total"].backward()
            opt.step()
            hinge_sum += float(parts["hinge"]); n_steps += 1
    _check_finite(float(parts["total"].detach()), "dual loss", cfg)
    return hinge_sum / n_steps


def train_primal(cfg: DenoiseConfig, train: DenoisingSet, test: DenoisingSet, *, device: torch.device,
                 progress: bool = True) -> tuple[PrimalNet, History]:
    """Train the primal network of eq. (2) with the paper's Adam settings; returns the net and its curves."""
    check_finite_data(train, test)
    gen = torch.Generator().manual_seed(cfg.seed)
    net = PrimalNet(cfg.n_filters, cfg.kernel_size, residual=cfg.residual, generator=gen).to(device)
    opt = paper_adam(net.parameters(), cfg.lr_primal)
    Ytr, Xtr = train.noisy.to(device), train.clean.to(device)
    Yte, Xte = test.noisy.to(device), test.clean.to(device)
    hist = History(meta=_device_meta(device))
    start, eval_seconds = time.perf_counter(), [0.0]

    def evaluate(epoch: int) -> None:
        t0 = time.perf_counter()
        seconds = t0 - start - eval_seconds[0]
        tr = primal_objective(net, Ytr, Xtr, cfg.beta)
        te = primal_objective(net, Yte, Xte, cfg.beta) if cfg.evaluates_test(epoch) else _SKIPPED
        hist.epoch.append(epoch); hist.train_loss.append(tr["loss"]); hist.train_objective.append(tr["objective"])
        hist.test_loss.append(te["loss"]); hist.seconds.append(seconds)
        eval_seconds[0] += time.perf_counter() - t0

    evaluate(0)
    bar = tqdm(range(1, cfg.epochs + 1), desc=f"primal {cfg.label()}", disable=not progress, leave=False)
    for epoch in bar:
        primal_epoch(net, opt, Ytr, Xtr, cfg, gen)
        evaluate(epoch)
        bar.set_postfix(train=f"{hist.train_objective[-1]:.4g}", test=f"{hist.test_loss[-1]:.4g}")
    return net, hist


def train_dual(cfg: DenoiseConfig, train: DenoisingSet, test: DenoisingSet, *, device: torch.device,
               G: torch.Tensor | None = None, progress: bool = True, fast: bool = False) -> tuple[DualNet, History]:
    """Train the dual network of eq. (4) the paper's way (Adam + hinge); returns the net and its curves.

    ``G`` (d, P) defaults to :func:`paper_utils.nets.dual.sample_generators` on the training patches
    with ``cfg.seed``.
    """
    check_finite_data(train, test)
    k = cfg.kernel_size
    Yp_tr = extract_patches(train.noisy, k).to(device)
    x_tr = _targets(train, cfg.residual).reshape(-1).to(device)
    Yp_te = extract_patches(test.noisy, k).to(device)
    x_te = _targets(test, cfg.residual).reshape(-1).to(device)
    if G is None:
        G = sample_generators(Yp_tr, cfg.n_patterns, seed=cfg.seed)
    net = DualNet(G.to(device), k, residual=cfg.residual, fast=fast)
    opt = paper_adam(net.parameters(), cfg.lr_dual)
    gen = torch.Generator().manual_seed(cfg.seed)
    hw = train.noisy.shape[-1] * train.noisy.shape[-2]
    Yp_img = Yp_tr.reshape(len(train), hw, -1)
    x_img = x_tr.reshape(len(train), hw)
    hist = History(meta=_device_meta(device))
    start, eval_seconds = time.perf_counter(), [0.0]

    def evaluate(epoch: int) -> None:
        t0 = time.perf_counter()
        seconds = t0 - start - eval_seconds[0]
        tr = net.evaluate(Yp_tr, x_tr, cfg.beta)
        te = net.evaluate(Yp_te, x_te, cfg.beta) if cfg.evaluates_test(epoch) else _SKIPPED
        hist.epoch.append(epoch); hist.train_loss.append(tr["loss"]); hist.train_objective.append(tr["objective"])
        hist.test_loss.append(te["loss"]); hist.seconds.append(seconds)
        hist.max_violation.append(tr["max_violation"])
        hist.rebuilt_objective.append(tr["rebuilt_objective"]); hist.rebuilt_test_loss.append(te["rebuilt_loss"])
        eval_seconds[0] += time.perf_counter() - t0

    evaluate(0)
    hist.hinge.append(0.0)
    bar = tqdm(range(1, cfg.epochs + 1), desc=f"dual {cfg.label()}", disable=not progress, leave=False)
    for epoch in bar:
        hist.hinge.append(dual_epoch(net, opt, Yp_img, x_img, cfg, gen))
        evaluate(epoch)
        bar.set_postfix(train=f"{hist.train_objective[-1]:.4g}", test=f"{hist.test_loss[-1]:.4g}")
    return net, hist
