"""Every hot kernel of the main job, timed on the main job's ``cpu``-scale data, against this process's limits.

What it measures. The kernels under the slow parts of ``make figures`` (issue 24), each called exactly
as the main job calls it, on the data of ``paper_utils.pipeline.config.mnist_denoise_config("cpu", 0.5)``:
600 MNIST training images (M = 470,400 patches) with Gaussian noise sigma = 0.5, k = 3 (d = 9), primal
width m = 512, P = 2,000 sampled patterns (``sample_generators(Yp, P, seed=0)``), the first 1,000 test
images (M = 784,000), beta = 1e-5:

- ``primal_lbfgs_eval*``: one L-BFGS evaluation of the converged primal,
  ``paper_utils.training.convergence.patch_objective(..., grad=True)`` with float64 ``U``, ``v`` as
  ``converge_primal`` passes them; the default (float32 products, ``CHUNK_ROWS``) and the variants
  ``_f32_c256``, ``_f32_c1024``, ``_f32_c8192``, ``_f64`` (default chunk), ``_f64_c256`` ... (float64 products);
- ``primal_lbfgs_eval_m2048``: the same at m = 2,048, the width of Theorem 1's grown primal;
- ``dual_eval_train_first_cold`` (the first ``DualNet.evaluate`` of a new process whose numba disk cache is
  empty: the fused kernel's compile included, as on a fresh host), ``dual_eval_train_first`` (the same in a
  second process, which loads the compiled kernel from that cache), ``dual_eval_train`` and
  ``dual_eval_test`` (warm); on CUDA, ``dual_eval_train_first`` is the first call with inductor's compile;
- ``dual_adam_epoch``, ``primal_adam_epoch``: one epoch of the inner loops of
  ``paper_utils.training.adam.train_dual`` / ``train_primal`` (batch 25; the dual with the kernels
  ``fast_kernels(cfg)`` picks for the ``cpu`` scale: the fused numba kernels of
  ``paper_utils.nets.dual_kernels``); the per-epoch evaluation is not timed;
- ``primal_eval_test``: ``primal_objective`` (conv2d) on the test images;
- ``solver_operator_pass``: ``paper_utils.dual_solver.data._Data.loss_grad``, the exact solver's fused
  operator + adjoint pass in float64, ``_Data`` built as ``solve_dual`` builds it, half the patterns active;
- ``mri_primal_lbfgs_eval``, ``mri_dual_eval``: the same two kernels at the MRI shapes, k = 7 (d = 49),
  m = 512, P = 2,000, on M = 80 x 80 x 32 = 204,800 patch rows of *random* images (building the MRI
  data needs SigPy and minutes; the kernels' cost does not depend on the values);
- ``*_adam_epoch_torch_parallel``: the same epochs with torch on all its threads between the fused kernels
  (``numba_runtime.torch_serial`` off), the A/B of that rule in one process;
- with ``--eager``, also ``dual_eval_test_eager`` and ``dual_adam_epoch_eager`` (the unfused chunk kernels).

Per kernel: one warm-up call, then the median of ``--repeats`` timed calls (``dual_eval_train_first``:
one call, no warm-up; the compile caches are reset before it and, by default, inductor compiles into a
fresh cache directory, as on a fresh host). GPU work is synchronised around every timed call. Output:

    RATE matmul_fp32 <flop/s> start         dense n x n matmul (benchmarks/_rates.py), at start and at end
    RATE matmul_fp64 <flop/s> start
    RATE stream_bytes <bytes/s> start       torch.add(a, b, out=c) over --stream-mb MB arrays, 3 arrays' bytes
    ...
    KERNEL <name> seconds <s> ratio <r> [ratio_fp64 <r64>] [bw_ratio <b>]
    DETAIL <name> ...                        counted flops and bytes, intensity, the timed calls

``ratio`` = counted matmul flops / seconds / the dense float32 rate (mean of start and end);
``ratio_fp64`` (float64 kernels) the same over the dense float64 rate. ``bytes`` are the bytes a kernel
must move at least (its inputs read once, its outputs written once, parameters and optimiser state
read and written once per step; intermediates that a fused kernel keeps in cache are not counted).
A kernel is memory-bound by nature when those bytes take longer at the stream rate than its flops at
the dense rate of its dtype (intensity below the machine balance); only then is ``bw_ratio`` = bytes /
seconds / stream rate printed (``--bw-all``: for every kernel). Only matmul flops are counted; the
element-wise work on the (rows, m) and (rows, 3P) blocks between the products, which dominates at
d = 9, is the gap between ``ratio`` and 1.

Run from the repository root inside the project's environment, on quiet cores:

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_kernels.py [--repeats 3] [--threads 2] [--device cpu]
        [--images 600] [--test-images 1000] [--mri-images 32] [--only NAME_OR_GLOB ...] [--eager] [--bw-all]
        > benchmarks/results/bench_kernels_cpu_2cores.txt

The committed output goes to ``benchmarks/results/bench_kernels_cpu_2cores.txt`` (2 quiet cores, full
size: a few minutes, most of it the compiles and the dual evaluations). ``--threads`` defaults to
``$OMP_NUM_THREADS`` or 2. Smoke test (under a minute on one core; arrays of 32 MB measure a cache's
bandwidth, not memory's): ``--images 20 --test-images 20 --mri-images 1 --repeats 1 --stream-mb 32``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fnmatch
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from _rates import matmul_rate, sync  # benchmarks/ is on sys.path when run as a script
from paper_utils.data.mnist import load_mnist, mnist_denoising
from paper_utils.dual_solver.data import F64, _as_tensor, _Data
from paper_utils.nets import dual as dual_module
from paper_utils.nets import dual_kernels, numba_runtime
from paper_utils.nets.dual import DualNet, sample_generators
from paper_utils.nets.patches import extract_patches
from paper_utils.nets.primal import PrimalNet, primal_objective
from paper_utils.pipeline import config, runtime
from paper_utils.nets.relu_patch import default_chunk_rows
from paper_utils.training.adam import dual_epoch, paper_adam, primal_epoch
from paper_utils.training.convergence import kaiming_init, patch_objective
from paper_utils.training.denoisers import fast_kernels

F32_BYTES, F64_BYTES = 4, 8
MRI_SIDE = 80          # MRI slices are 80 x 80 (paper_utils.mri), k = 7
MRI_KERNEL = 7
PRIMAL_CHUNKS = (512, 2048, 8192)
WIDE_PRIMAL = 2048     # the width of Theorem 1's grown primal (m >= m* = 1,760 on Figure 2's data)


@dataclass
class Run:
    """One kernel, set up: ``call()`` runs it once; ``flops`` counted matmul flops and ``nbytes`` the bytes it
    must move at least, per call; ``dtype`` the dtype of its products (``"fp32"`` / ``"fp64"``)."""

    call: Callable[[], object]
    flops: float
    nbytes: float
    dtype: str
    note: str = ""
    first_only: bool = False
    self_timed: bool = False   # call() returns the seconds it measured itself (a probe in a subprocess)


@dataclass
class Result:
    name: str
    run: Run
    times: list[float] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return statistics.median(self.times)


# ------------------------------------------------------------------------------------------------
# the data, built lazily (only what the selected kernels need)
# ------------------------------------------------------------------------------------------------
class Context:
    def __init__(self, args, dev: torch.device):
        self.args, self.dev = args, dev
        self.cfg = config.mnist_denoise_config("cpu", 0.5).replace(n_train=args.images, n_test=args.test_images)
        self._cache: dict[str, object] = {}

    def _get(self, key, build):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    def mnist(self):
        """``(Yp_tr, x_tr, Yp_te, x_te, train, test)`` on the device, as ``train_dual`` builds them."""
        def build():
            cfg = self.cfg
            train, test = mnist_denoising(cfg.n_train, cfg.n_test, cfg.noise, cfg.noise_level, seed=cfg.seed,
                                          arrays=load_mnist())
            k = cfg.kernel_size
            Yp_tr = extract_patches(train.noisy, k).to(self.dev)
            x_tr = train.clean.reshape(-1).to(self.dev)           # residual=False at this configuration
            Yp_te = extract_patches(test.noisy, k).to(self.dev)
            x_te = test.clean.reshape(-1).to(self.dev)
            return Yp_tr, x_tr, Yp_te, x_te, train, test
        return self._get("mnist", build)

    def generators(self):
        """``G`` (d, P) as ``train_dual`` samples it (on the device, from the training patches)."""
        return self._get("G", lambda: sample_generators(self.mnist()[0], self.cfg.n_patterns, seed=self.cfg.seed))

    def mri(self):
        """Random MRI-shaped data: patches of ``--mri-images`` random 80 x 80 images with k = 7, targets and
        generators (``P`` of ``--mri-patterns``)."""
        def build():
            gen = torch.Generator().manual_seed(1)
            images = torch.randn(self.args.mri_images, 1, MRI_SIDE, MRI_SIDE, generator=gen)
            Yp = extract_patches(images, MRI_KERNEL).to(self.dev)
            x = torch.randn(Yp.shape[0], generator=gen).to(self.dev)
            G = sample_generators(Yp, self.args.mri_patterns, seed=0)
            return Yp, x, G
        return self._get("mri", build)


# ------------------------------------------------------------------------------------------------
# the kernels
# ------------------------------------------------------------------------------------------------
def primal_lbfgs(Yp, x, m: int, beta: float, *, work: torch.dtype, chunk: int | None, note: str = "") -> Run:
    """``patch_objective(Yp, x, U, v, beta, grad=True, compute_dtype=work)`` with float64 ``U`` (m, d),
    ``v`` (m,), as ``converge_primal``'s L-BFGS ``fun`` calls it: the fused numba kernels where they run
    (``chunk=None``), else the chunked matmul form with ``chunk`` rows per chunk.

    flops (matmul), counted as for the unfused form (so ratios compare across versions): forward
    ``Yc @ U^T`` 2 M d m, ``A @ v`` 2 M m, ``A^T r`` (gv) 2 M m, ``(H > 0)^T @ (r Yc)`` (gU) 2 M m d:
    4 M m (d + 1). (The fused kernel of ``paper_utils.nets.relu_patch`` gets ``gv`` from ``gU``'s sums
    and skips the ``A^T r`` pass: it does 2 M m fewer; the numba kernels of ``paper_utils.nets.primal_kernels``
    execute 2 M m (3 d + 1) flops, recomputing ``Yc @ U^T`` in the gradient pass.) (The float64 dot
    ``r . r``, 2 M, is not counted.)
    bytes: ``Yp`` (M, d) and ``x`` (M,) read once in their stored float32, ``U``, ``v`` read and ``gU``,
    ``gv`` written in float64: 4 M (d + 1) + 16 m (d + 1).
    """
    M, d = Yp.shape
    U, v = kaiming_init(m, d, seed=0)
    U, v = U.double().to(Yp.device), v.double().to(Yp.device)
    flops = 4 * M * m * (d + 1)
    nbytes = F32_BYTES * M * (d + 1) + 2 * F64_BYTES * m * (d + 1)
    dtype = "fp64" if work == torch.float64 else "fp32"
    fused = chunk is None and numba_runtime.enabled(Yp)
    form = (f"fused (numba, tile {numba_runtime.TILE}, block {numba_runtime.BLOCK_ROWS} rows)" if fused
            else f"chunk {chunk or default_chunk_rows(Yp.device)}")
    return Run(lambda: patch_objective(Yp, x, U, v, beta, grad=True, chunk_rows=chunk, compute_dtype=work,
                                       fused=fused),
               flops, nbytes, dtype, f"M {M} d {d} m {m} {form} products {dtype}{note}")


def dual_net(G: torch.Tensor, k: int, fast: bool) -> DualNet:
    """A ``DualNet`` as ``load_or_train_dual`` holds it, with small random weights (the kernels' cost does
    not depend on the values)."""
    net = DualNet(G, k, fast=fast)
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        net.W.copy_(0.01 * torch.randn(net.W.shape, generator=gen, dtype=net.W.dtype))
        net.Z.copy_(0.01 * torch.randn(net.Z.shape, generator=gen, dtype=net.Z.dtype))
    return net


def kernel_label(net: DualNet) -> str:
    """Which path ``net`` runs: the fused numba kernels, the compiled chunks or the eager chunks."""
    if dual_module._fused(net.fast, net.G.T):
        return f"fused (numba, tile {dual_kernels.TILE}, block {dual_kernels.BLOCK_ROWS} rows)"
    return f"chunk {net.chunk_rows} {'compiled' if net.fast else 'eager'}"


def dual_eval(net: DualNet, Yp, x, beta: float, *, first: bool = False, note: str = "") -> Run:
    """``DualNet.evaluate(Yp, x, beta)`` (one chunked pass, no gradient), as ``train_dual``'s evaluation.

    flops (matmul): ``Yc @ [G | W^T | Z^T]`` 2 M d 3P = 6 M d P (useful rows; the compiled kernel also
    multiplies the zero padding of the last chunk).
    bytes: ``Yp`` (M, d) and ``x`` (M,) read once, ``[G | W^T | Z^T]`` (d, 3P): 4 M (d + 1) + 12 d P.
    """
    M, d = Yp.shape
    P = net.n_patterns
    return Run(lambda: net.evaluate(Yp, x, beta), 6 * M * d * P, F32_BYTES * (M * (d + 1) + 3 * d * P), "fp32",
               f"M {M} d {d} P {P} {kernel_label(net)}{note}",
               first_only=first)


def dual_adam_epoch(ctx: Context, fast: bool) -> Run:
    """One epoch of ``train_dual``'s inner loop: ``penalized_loss`` on batches of 25 images, backward, Adam
    step (and the per-step ``float(parts["hinge"])`` and per-epoch finiteness check it does).

    flops (matmul), per epoch: forward ``Yc @ [G | W^T | Z^T]`` 6 M d P, gradient ``[gW | gZ]^T @ Yc``
    4 M P d: 10 M d P.
    bytes: ``Yp`` (M, d) and ``x`` read once per epoch, 4 M (d + 1); per step, with 2 P d parameters:
    ``G``, ``W``, ``Z`` read by the forward (3 P d), the group lasso reads ``W``, ``Z`` (2 P d), the gradient
    written (2 P d), Adam reads p, g, exp_avg, exp_avg_sq and writes p, exp_avg, exp_avg_sq (7 x 2 P d):
    21 P d floats, 84 P d bytes per step.
    """
    cfg = ctx.cfg
    Yp_tr, x_tr, _, _, train, _ = ctx.mnist()
    G = ctx.generators()
    k, d = cfg.kernel_size, Yp_tr.shape[1]
    net = DualNet(G, k, residual=cfg.residual, fast=fast)
    opt = paper_adam(net.parameters(), cfg.lr_dual)
    gen = torch.Generator().manual_seed(cfg.seed)
    n = len(train)
    hw = train.noisy.shape[-1] * train.noisy.shape[-2]
    Yp_img, x_img = Yp_tr.reshape(n, hw, -1), x_tr.reshape(n, hw)

    def epoch():
        return dual_epoch(net, opt, Yp_img, x_img, cfg, gen)

    M, P = Yp_tr.shape[0], net.n_patterns
    steps = math.ceil(n / cfg.batch_size)
    return Run(epoch, 10 * M * d * P, F32_BYTES * (M * (d + 1) + 21 * P * d * steps), "fp32",
               f"M {M} d {d} P {P} batch {cfg.batch_size} steps {steps} {kernel_label(net)}")


def primal_adam_epoch(ctx: Context) -> Run:
    """One epoch of ``train_primal``'s inner loop: ``PrimalNet.patch_forward`` (the fused patch-form kernel)
    on batches of 25 images, the loss ``0.5 mean((out - X)^2) + regularizer``, backward, Adam step (and the
    per-epoch finiteness check). Counted as the conv2d form's products:

    flops (matmul), per epoch: conv1 forward 2 M d m, conv2 (1 x 1) forward 2 M m, conv2 backward (weight
    and input gradients) 4 M m, conv1 weight gradient 2 M d m (the images need no gradient): 4 M d m + 6 M m.
    bytes: images ``Y`` and ``X`` read once per epoch, 8 M; per step, with m (d + 1) parameters: read by
    the forward and by the regulariser, gradient written, Adam's 7 passes: 10 m (d + 1) floats.
    """
    cfg = ctx.cfg
    _, _, _, _, train, _ = ctx.mnist()
    dev = ctx.dev
    gen = torch.Generator().manual_seed(cfg.seed)
    net = PrimalNet(cfg.n_filters, cfg.kernel_size, residual=cfg.residual, generator=gen).to(dev)
    opt = paper_adam(net.parameters(), cfg.lr_primal)
    Ytr, Xtr = train.noisy.to(dev), train.clean.to(dev)

    def epoch():
        primal_epoch(net, opt, Ytr, Xtr, cfg, gen)

    M, m, d = Ytr.numel(), cfg.n_filters, cfg.kernel_size ** 2
    steps = math.ceil(len(train) / cfg.batch_size)
    return Run(epoch, 4 * M * d * m + 6 * M * m, F32_BYTES * (2 * M + 10 * m * (d + 1) * steps), "fp32",
               f"M {M} d {d} m {m} batch {cfg.batch_size} steps {steps} patch form")


def torch_parallel(run: Run) -> Run:
    """The same Adam epoch with torch's own operations on all its threads between the fused kernels' calls
    (``numba_runtime.torch_serial`` switched off): the measured reason for that rule, in the same process."""
    def call():
        saved = numba_runtime.torch_serial
        numba_runtime.torch_serial = lambda active=True: contextlib.nullcontext()
        try:
            return run.call()
        finally:
            numba_runtime.torch_serial = saved
    return dataclasses.replace(run, call=call, note=run.note + "; torch on all threads between kernels")


def primal_eval_test(ctx: Context) -> Run:
    """``primal_objective(net, Y_test, X_test, beta)`` (patch form, batches of 500, no gradient), as
    ``train_primal``'s evaluation.

    flops (matmul): conv1 2 M d m, conv2 2 M m: 2 M m (d + 1).
    bytes: ``Y``, ``X`` read once, 8 M; the weights, 4 m (d + 1).
    """
    cfg = ctx.cfg
    _, _, _, _, _, test = ctx.mnist()
    dev = ctx.dev
    net = PrimalNet(cfg.n_filters, cfg.kernel_size, residual=cfg.residual,
                    generator=torch.Generator().manual_seed(cfg.seed)).to(dev)
    Yte, Xte = test.noisy.to(dev), test.clean.to(dev)
    M, m, d = Yte.numel(), cfg.n_filters, cfg.kernel_size ** 2
    return Run(lambda: primal_objective(net, Yte, Xte, cfg.beta), 2 * M * m * (d + 1),
               F32_BYTES * (2 * M + m * (d + 1)), "fp32", f"M {M} d {d} m {m} batch 500 patch form")


def solver_operator_pass(ctx: Context) -> Run:
    """``_Data.loss_grad(V)`` (float64) with ``_Data`` built as ``solve_dual`` builds it (inputs through
    ``_as_tensor``, fast dtype float32 when M P > 2^25, ``chunk_rows=None``: its cache budget), at a point
    ``V`` (P, d) with half the patterns active (466-1,536 of 2,000 are in ``cpu``-scale solves).

    flops (matmul): ``D = 1[Yc G >= 0]`` 2 M d P, prediction ``V_act^T D_act^T`` 2 M d n_act, adjoint
    ``(r Yc)^T D`` 2 M d P: 2 M d (2 P + n_act).
    bytes: ``Yp`` (M, d) read once in float64 (the kernel reads it twice, ``Y`` and ``YT``), ``x`` (M,),
    ``G``, ``V`` read and the gradient (P, d) written: 8 M (d + 1) + 8 d P (1 + 1 + 1).
    """
    Yp_tr, x_tr, *_ = ctx.mnist()
    G = ctx.generators()
    dev = Yp_tr.device
    in_dtypes = [Yp_tr.dtype, x_tr.dtype, G.dtype]
    Yp, x, Gs = _as_tensor(Yp_tr, "Yp", dev), _as_tensor(x_tr, "x", dev), _as_tensor(G, "G", dev)
    M, d = Yp.shape
    P = Gs.shape[1]
    fast = F64 if (F64 in in_dtypes or M * P <= (1 << 25)) else torch.float32
    data = _Data(Yp, x, Gs, fast, None)
    gen = torch.Generator().manual_seed(3)
    V = 0.01 * torch.randn(P, d, generator=gen, dtype=F64)
    active = torch.randperm(P, generator=gen)[: P // 2]
    mask = torch.zeros(P, dtype=torch.bool)
    mask[active] = True
    V = torch.where(mask[:, None], V, 0.0).to(dev)
    na = int(mask.sum())
    return Run(lambda: data.loss_grad(V), 2 * M * d * (2 * P + na), F64_BYTES * (M * (d + 1) + 3 * d * P), "fp64",
               f"M {M} d {d} P {P} active {na} chunk {data.chunk} float64 (fast dtype {str(fast)[6:]})")


def first_call_probe(ctx: Context, cache_dir: str, which: str) -> Run:
    """The first ``DualNet.evaluate`` on the training patches in a new process (``--probe-first-eval``)
    whose numba disk cache is ``cache_dir``; the probe times the call itself (data loading excluded)."""
    Yp_tr, *_ = ctx.mnist()
    M, d = Yp_tr.shape
    P = ctx.cfg.n_patterns

    def call():
        import subprocess

        env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
        argv = [sys.executable, __file__, "--probe-first-eval", "--images", str(ctx.args.images),
                "--threads", str(ctx.args.threads)]
        out = subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout
        return float(next(line.split()[1] for line in out.splitlines() if line.startswith("PROBE ")))

    return Run(call, 6 * M * d * P, F32_BYTES * (M * (d + 1) + 3 * d * P), "fp32",
               f"M {M} d {d} P {P} fused, first call of a process ({which}; numba cache {cache_dir})",
               self_timed=True)


def probe_first_eval(args) -> None:
    """``--probe-first-eval``: print ``PROBE <seconds>`` of this process's first ``DualNet.evaluate``."""
    runtime.setup(0, args.threads)
    ctx = Context(args, torch.device("cpu"))
    Yp_tr, x_tr, *_ = ctx.mnist()
    net = dual_net(ctx.generators(), ctx.cfg.kernel_size, True)
    t = time.perf_counter()
    net.evaluate(Yp_tr, x_tr, ctx.cfg.beta)
    print(f"PROBE {time.perf_counter() - t:.6g}")


def kernel_specs(ctx: Context, eager: bool) -> list[tuple[str, Callable[[], Run]]]:
    """(name, setup) in the order they run: the first dual evaluation before any other dual kernel."""
    cfg = ctx.cfg
    m, beta, k = cfg.n_filters, cfg.beta, cfg.kernel_size
    fast = fast_kernels(cfg)
    specs: list[tuple[str, Callable[[], Run]]] = []

    def tr():
        return ctx.mnist()[0], ctx.mnist()[1]

    specs.append(("primal_lbfgs_eval", lambda: primal_lbfgs(*tr(), m, beta, work=torch.float32, chunk=None,
                                                            note=" (converge_primal's default)")))
    specs.append(("primal_lbfgs_eval_f64", lambda: primal_lbfgs(*tr(), m, beta, work=torch.float64, chunk=None)))
    specs.append(("primal_lbfgs_eval_m2048", lambda: primal_lbfgs(*tr(), WIDE_PRIMAL, beta, work=torch.float32,
                                                                  chunk=None, note=" (Theorem 1's wide primal)")))
    specs.append(("primal_lbfgs_eval_m2048_chunked",
                  lambda: primal_lbfgs(*tr(), WIDE_PRIMAL, beta, work=torch.float32, chunk=default_chunk_rows(ctx.dev))))
    for name, work in (("f32", torch.float32), ("f64", torch.float64)):
        for chunk in PRIMAL_CHUNKS:
            specs.append((f"primal_lbfgs_eval_{name}_c{chunk}",
                          lambda work=work, chunk=chunk: primal_lbfgs(*tr(), m, beta, work=work, chunk=chunk)))

    def evaluation(which: str, first: bool = False, fast_: bool = fast):
        def setup():
            Yp_tr, x_tr, Yp_te, x_te, *_ = ctx.mnist()
            if first:   # a genuinely first call: no compiled kernel left from an earlier one
                dual_module._COMPILED.clear()
                import torch._dynamo
                torch._dynamo.reset()
            net = dual_net(ctx.generators(), k, fast_)
            Yp, x = (Yp_tr, x_tr) if which == "train" else (Yp_te, x_te)
            return dual_eval(net, Yp, x, beta, first=first,
                             note=" first call (trace + compile)" if first and fast_ else "")
        return setup

    if fast and ctx.dev.type == "cpu":
        # the fused numba kernels: the first call of a process, compiling into an empty disk cache (a fresh
        # host), then in a second process that finds the compiled code in that cache
        cache_dir = tempfile.mkdtemp(prefix="bench_kernels_numba_")
        specs.append(("dual_eval_train_first_cold", lambda: first_call_probe(ctx, cache_dir, "cold")))
        specs.append(("dual_eval_train_first", lambda: first_call_probe(ctx, cache_dir, "second process")))
    else:
        specs.append(("dual_eval_train_first", evaluation("train", first=True)))
    specs.append(("dual_eval_train", evaluation("train")))
    specs.append(("dual_eval_test", evaluation("test")))
    if eager:
        specs.append(("dual_eval_test_eager", evaluation("test", fast_=False)))
    specs.append(("dual_adam_epoch", lambda: dual_adam_epoch(ctx, fast)))
    if fast and ctx.dev.type == "cpu":
        specs.append(("dual_adam_epoch_torch_parallel", lambda: torch_parallel(dual_adam_epoch(ctx, fast))))
    if eager:
        specs.append(("dual_adam_epoch_eager", lambda: dual_adam_epoch(ctx, False)))
    specs.append(("primal_adam_epoch", lambda: primal_adam_epoch(ctx)))
    if ctx.dev.type == "cpu":
        specs.append(("primal_adam_epoch_torch_parallel", lambda: torch_parallel(primal_adam_epoch(ctx))))
    specs.append(("primal_eval_test", lambda: primal_eval_test(ctx)))
    specs.append(("solver_operator_pass", lambda: solver_operator_pass(ctx)))

    def mri_primal():
        Yp, x, _ = ctx.mri()
        return primal_lbfgs(Yp, x, ctx.args.mri_filters, beta, work=torch.float32, chunk=None,
                            note=" random data")

    def mri_dual():
        Yp, x, G = ctx.mri()
        return dual_eval(dual_net(G, MRI_KERNEL, fast), Yp, x, beta, note=" random data")

    specs.append(("mri_primal_lbfgs_eval", mri_primal))
    specs.append(("mri_dual_eval", mri_dual))
    return specs


# ------------------------------------------------------------------------------------------------
# the machine's limits, in this process
# ------------------------------------------------------------------------------------------------
def stream_rate(dev: torch.device, megabytes: int, reps: int = 5) -> float:
    """Streaming bandwidth in bytes/s: ``torch.add(a, b, out=c)`` over three float32 arrays of ``megabytes``
    MB each, counting 3 arrays' bytes (read a, read b, write c; write-allocate traffic not counted),
    median of ``reps`` after one warm-up."""
    n = megabytes * (1 << 20) // F32_BYTES
    a = torch.rand(n, device=dev)
    b = torch.rand(n, device=dev)
    c = torch.empty_like(a)
    torch.add(a, b, out=c)
    times = []
    for _ in range(reps):
        sync(dev)
        t = time.perf_counter()
        torch.add(a, b, out=c)
        sync(dev)
        times.append(time.perf_counter() - t)
    return 3 * n * F32_BYTES / statistics.median(times)


def limits(dev: torch.device, args, when: str) -> dict[str, float]:
    n, reps = (4096, 10) if dev.type == "cuda" else (2048, 4)
    out = {"matmul_fp32": matmul_rate(dev, torch.float32, n=n, reps=reps),
           "matmul_fp64": matmul_rate(dev, torch.float64, n=n, reps=reps),
           "stream_bytes": stream_rate(dev, args.stream_mb)}
    for key, value in out.items():
        print(f"RATE {key} {value:.4e} {when}", flush=True)
    return out


# ------------------------------------------------------------------------------------------------
def timed(call, dev: torch.device) -> float:
    sync(dev)
    t = time.perf_counter()
    call()
    sync(dev)
    return time.perf_counter() - t


def selected(name: str, only: list[str] | None) -> bool:
    return only is None or any(fnmatch.fnmatchcase(name, pattern) for pattern in only)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=600, help="MNIST training images (cpu scale: 600)")
    parser.add_argument("--test-images", type=int, default=1000, help="MNIST test images (cpu scale: 1000)")
    parser.add_argument("--mri-images", type=int, default=32, help="random 80 x 80 images of the MRI kernels")
    parser.add_argument("--mri-filters", type=int, default=512, help="m of mri_primal_lbfgs_eval")
    parser.add_argument("--mri-patterns", type=int, default=2000, help="P of mri_dual_eval")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per kernel (median), after one warm-up")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS") or 2))
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--only", nargs="+", default=None, metavar="NAME",
                        help="kernels to run: names or shell patterns (primal_lbfgs_eval*), also comma-separated")
    parser.add_argument("--eager", action="store_true", help="also time the uncompiled dual kernels")
    parser.add_argument("--bw-all", action="store_true", help="print bw_ratio for every kernel")
    parser.add_argument("--stream-mb", type=int, default=256, help="size of each array of the stream measurement")
    parser.add_argument("--probe-first-eval", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--inductor-cache", choices=("fresh", "default"), default="fresh",
                        help="compile into a new temporary cache directory (as on a fresh host) or the usual one")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    only = None if args.only is None else [p for item in args.only for p in item.split(",") if p]
    if args.probe_first_eval:
        probe_first_eval(args)
        return

    runtime.setup(0, args.threads)           # as the notebooks: deterministic algorithms, thread count
    dev = runtime.resolve_device(args.device)
    ctx = Context(args, dev)
    specs = [(name, setup) for name, setup in kernel_specs(ctx, args.eager) if selected(name, only)]
    if not specs:
        parser.error(f"--only {' '.join(args.only)} selects no kernel")
    fresh_dir = None
    if args.inductor_cache == "fresh":       # read lazily by inductor: set before anything compiles
        fresh_dir = tempfile.mkdtemp(prefix="bench_kernels_inductor_")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = fresh_dir
    cfg = ctx.cfg
    device_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"# benchmarks/bench_kernels.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(f"# torch {torch.__version__}; device {dev.type} ({device_name}); threads {torch.get_num_threads()}; "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"# data: MNIST {cfg.n_train} training images (M = {cfg.n_train * 784:,}), {cfg.n_test} test images "
          f"(M = {cfg.n_test * 784:,}), {cfg.noise} sigma = {cfg.noise_level:g}, k = {cfg.kernel_size} "
          f"(d = {cfg.kernel_size ** 2}), m = {cfg.n_filters}, P = {cfg.n_patterns}, beta = {cfg.beta:g}, "
          f"batch {cfg.batch_size}")
    print(f"# MRI shapes: {args.mri_images} random {MRI_SIDE} x {MRI_SIDE} images (M = "
          f"{args.mri_images * MRI_SIDE ** 2:,}), k = {MRI_KERNEL} (d = {MRI_KERNEL ** 2}), m = {args.mri_filters}, "
          f"P = {args.mri_patterns}; random data, not built from MRI (needs SigPy, takes minutes)")
    print(f"# dual kernels fast: {fast_kernels(cfg)} (fast_kernels at cpu scale: the fused numba kernels on CPU, "
          f"numba {getattr(dual_kernels.numba, '__version__', 'absent')}, threading layer "
          f"{getattr(getattr(dual_kernels.numba, 'config', None), 'THREADING_LAYER', 'absent')}); "
          f"PAPER_UTILS_NO_COMPILE={os.environ.get('PAPER_UTILS_NO_COMPILE', '')!r}; inductor cache "
          f"{'fresh (' + fresh_dir + ')' if fresh_dir else 'default'}; patch_objective chunk "
          f"{default_chunk_rows(dev)} rows; DualNet chunk {dual_module.DEFAULT_CHUNK_ROWS if dev.type == 'cpu' else 16384}")
    print(f"# timing: one warm-up call, then the median of {args.repeats} timed calls "
          f"(dual_eval_train_first*: the first call of a new process alone, timed inside it)", flush=True)

    try:
        start = limits(dev, args, "start")
        results: list[Result] = []
        for name, setup in specs:
            t0 = time.perf_counter()
            run = setup()
            build = time.perf_counter() - t0
            res = Result(name, run)
            if run.self_timed:
                res.times.append(float(run.call()))
            elif run.first_only:
                res.times.append(timed(run.call, dev))
            else:
                warm = timed(run.call, dev)
                res.times.extend(timed(run.call, dev) for _ in range(args.repeats))
                run.note += f"; warm-up {warm:.3g} s"
            results.append(res)
            print(f"# measured {name}: {res.seconds:.4g} s (setup {build:.3g} s)", file=sys.stderr, flush=True)
            run.call = None                  # free the kernel's nets and buffers before the next one
        end = limits(dev, args, "end")
    finally:
        if fresh_dir is not None:
            shutil.rmtree(fresh_dir, ignore_errors=True)

    rate = {key: (start[key] + end[key]) / 2 for key in start}
    print(f"RATE matmul_fp32_mean {rate['matmul_fp32']:.4e}")
    print(f"RATE matmul_fp64_mean {rate['matmul_fp64']:.4e}")
    print(f"RATE stream_bytes_mean {rate['stream_bytes']:.4e}")
    print(f"# machine balance (dense rate / stream rate): {rate['matmul_fp32'] / rate['stream_bytes']:.1f} "
          f"flop/byte in float32, {rate['matmul_fp64'] / rate['stream_bytes']:.1f} in float64; a kernel whose "
          f"counted flops per compulsory byte fall below it is memory-bound by nature and gets bw_ratio")
    for res in results:
        run, s = res.run, res.seconds
        own = rate["matmul_fp64"] if run.dtype == "fp64" else rate["matmul_fp32"]
        memory_bound = run.nbytes / rate["stream_bytes"] >= run.flops / own
        line = f"KERNEL {res.name} seconds {s:.4g} ratio {run.flops / s / rate['matmul_fp32']:.3g}"
        if run.dtype == "fp64":
            line += f" ratio_fp64 {run.flops / s / rate['matmul_fp64']:.3g}"
        if memory_bound or args.bw_all:
            line += f" bw_ratio {run.nbytes / s / rate['stream_bytes']:.3g}"
        print(line)
    for res in results:
        run = res.run
        print(f"DETAIL {res.name} flops {run.flops:.4g} bytes {run.nbytes:.4g} intensity "
              f"{run.flops / run.nbytes:.1f} GFLOP/s {run.flops / res.seconds / 1e9:.3g} times "
              f"{','.join(f'{t:.4g}' for t in res.times)} | {run.note}")


if __name__ == "__main__":
    main()
