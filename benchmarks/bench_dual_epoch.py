"""Time one epoch of the paper's dual training (Adam + hinge) at paper settings; print FLOP/s ratios.

Paper settings (App. B.2): 600 MNIST images (28 x 28, so M = 470,400 patches), k = 3 (d = 9),
P = 8000 sampled sign patterns, batch 25, Adam lr 1e-5. The dual's work per batch is matmuls on the
patch matrix: ``Yp_b @ [G | W^T | Z^T]`` (2 M_b d 3P flops) and ``[gW | gZ]^T @ Yp_b`` (2 M_b 2P d),
10 M d P flops per epoch in all; the elementwise work between them is not counted. The figure of
merit is the achieved rate over the same process's dense fp32 matmul rate.

    python benchmarks/bench_dual_epoch.py [--patterns 8000] [--images 600] [--device auto] [--eager] [--epochs 2]

Also timed: one ``DualNet.evaluate`` on the training patches (the per-epoch evaluation of ``train_dual``
evaluates the training set and the test set; 10,000 test images at paper scale are 16.7x the training
set's rows). ``fast`` is the main job's path: the fused numba kernels on CPU, the compiled chunks on CUDA.
"""

from __future__ import annotations

import argparse
import time

import torch

from _rates import matmul_rate, sync  # benchmarks/ is on sys.path when run as a script
from paper_utils.pipeline import config
from paper_utils.pipeline import runtime
from paper_utils.data.mnist import mnist_denoising
from paper_utils.nets.dual import DualNet, sample_generators
from paper_utils.nets.patches import extract_patches
from paper_utils.training.adam import paper_adam


def epoch(net: DualNet, opt, Yp_img: torch.Tensor, x_img: torch.Tensor, batch: int, cfg) -> float:
    order = torch.randperm(Yp_img.shape[0], generator=torch.Generator().manual_seed(0))
    sync(Yp_img.device)
    t = time.perf_counter()
    for idx in order.split(batch):
        idx = idx.to(Yp_img.device)
        parts = net.penalized_loss(Yp_img[idx].reshape(-1, Yp_img.shape[-1]), x_img[idx].reshape(-1),
                                   cfg.beta, cfg.hinge_weight)
        opt.zero_grad(set_to_none=True)
        parts["total"].backward()
        opt.step()
    sync(Yp_img.device)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patterns", type=int, default=8000)
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--device", default="auto", choices=runtime.DEVICES)
    parser.add_argument("--eager", action="store_true", help="also time the uncompiled kernel")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs (after one warm-up batch)")
    args = parser.parse_args()
    runtime.setup(0)
    dev = runtime.resolve_device(args.device)
    cfg = config.mnist_denoise_config("paper", 0.5).replace(n_train=args.images, n_test=1, n_patterns=args.patterns)
    train, _ = mnist_denoising(cfg.n_train, 1, cfg.noise, cfg.noise_level, seed=0)
    Yp = extract_patches(train.noisy, 3).to(dev)
    M, d = Yp.shape
    Yp_img = Yp.reshape(cfg.n_train, -1, d)
    x_img = train.clean.reshape(cfg.n_train, -1).to(dev)
    G = sample_generators(Yp, cfg.n_patterns, seed=0)
    flops = 10 * M * d * cfg.n_patterns
    peak = matmul_rate(dev, torch.float32, n=4096, reps=5)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; M = {M}, d = {d}, P = {cfg.n_patterns}, batch {cfg.batch_size}")
    print(f"dense fp32 matmul: {peak / 1e9:.1f} GFLOP/s")
    for fast in ([True, False] if args.eager else [True]):
        net = DualNet(G, 3, fast=fast)
        opt = paper_adam(net.parameters(), cfg.lr_dual)
        t0 = time.perf_counter()
        net.penalized_loss(Yp[: 25 * 784], x_img[:25].reshape(-1), cfg.beta, 1.0)["total"].backward()  # compile/warm
        warm = time.perf_counter() - t0
        times = [epoch(net, opt, Yp_img, x_img, cfg.batch_size, cfg) for _ in range(args.epochs)]
        best = min(times)
        sync(dev)
        t0 = time.perf_counter()
        net.evaluate(Yp, x_img.reshape(-1), cfg.beta)
        sync(dev)
        evaluation = time.perf_counter() - t0
        print(f"{'fast ' if fast else 'eager'} kernels: warm-up {warm:.1f} s; evaluation of the training set "
              f"{evaluation:.2f} s ({6 * M * d * cfg.n_patterns / evaluation / peak:.3f} of matmul); epoch {best:.2f} s "
              f"(all: {', '.join(f'{t:.2f}' for t in times)}); {flops / best / 1e9:.1f} GFLOP/s; "
              f"ratio to matmul {flops / best / peak:.3f}")


if __name__ == "__main__":
    main()
