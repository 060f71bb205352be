"""Block size of the working-set Gram kernel's upper block triangle (``GRAM_BLOCK``).

:meth:`paper_utils.dual_solver.data._Data.set_gram_rows` computes the (k, n) rows of a working set's Gram
matrix one row chunk (c, n) of features at a time; its symmetric (k, k) part as an upper block triangle
of ``block`` rows per product. A large block wastes up to ``block / 2`` rows of the triangle; a small
one makes many small products. For each shape met in a solve (the first working set, ray rounds of k
new rows against n, a tilted round recomputing every row), this times the products of one chunk
with the same loop as ``set_gram_rows`` (:func:`triangle`) for several block sizes, and prints the
rate of the *useful* flops (``c (2 k (n - k) + k^2)``, the exact triangle) against the dense float32
matmul rate of the same process. Shapes are from the ``cpu`` (P = 2,000) and paper (P = 8,000) scale solves.

    python benchmarks/bench_gram_block.py [--threads 2] [--chunk 4096]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from _rates import matmul_rate  # benchmarks/ is on sys.path when run as a script

SHAPES = [  # (n, k): columns of the working set, rows recomputed
    (500, 500),      # cpu scale: the first working set
    (718, 218),      # cpu scale: a ray round
    (1556, 242),     # cpu scale: the last ray round
    (1536, 1536),    # cpu scale: the first tilted round
    (4000, 1000),    # paper scale: a ray round
    (4000, 4000),    # paper scale: the first tilted round
]


def triangle(F: torch.Tensor, k: int, block: int) -> torch.Tensor:
    """The rows ``F[:, :k]^T F`` (k, n) as set_gram_rows forms them for one chunk: upper block triangle,
    each product in float32 accumulated into float64."""
    n = F.shape[1]
    Q = torch.zeros(k, n, dtype=torch.float64)
    for b0 in range(0, k, block):
        b1 = min(b0 + block, k)
        Q[b0:b1, b0:] += torch.mm(F[:, b0:b1].T, F[:, b0:]).to(torch.float64)
    return Q


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--chunk", type=int, default=4096, help="rows per chunk (the solver's gram_chunk)")
    ap.add_argument("--reps", type=int, default=6)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device("cpu")
    dense = matmul_rate(dev, torch.float32)
    print(f"# threads={torch.get_num_threads()} OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')} "
          f"chunk={args.chunk} rows; dense float32 matmul {dense / 1e9:.1f} GFLOP/s; load average "
          + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    print("n     k     " + "".join(f"block {b:<5d} ms (ratio)   " for b in (1024, 512, 256, 128)))
    torch.manual_seed(0)
    for n, k in SHAPES:
        F = torch.randn(args.chunk, n).clamp_min_(0)
        useful = args.chunk * (2 * k * (n - k) + k * k)
        cells = []
        for block in (1024, 512, 256, 128):
            triangle(F, k, block)
            t = time.perf_counter()
            for _ in range(args.reps):
                triangle(F, k, block)
            dt = (time.perf_counter() - t) / args.reps
            cells.append(f"{dt * 1e3:8.1f} ({useful / dt / dense:4.2f})      ")
        print(f"{n:<5d} {k:<5d} " + "".join(cells))


if __name__ == "__main__":
    main()
