"""The memory plan of the paper scale: every notebook at the paper's sizes with its budgets cut, on CPU.

Each notebook runs in its own process as ``PAPER_UTILS_DRY_RUN=1 python -m paper_utils.run_notebooks
--scale paper --only NN``: the paper's data and widths (600 training images, all 10,000 test images,
m = 512, P = 8,000; 1,000 MRI training slices, m = 1,024, P = 5,000) with one epoch per training, a few
L-BFGS iterations and one second per certified solve (``paper_utils.pipeline.config.dry_run``), in the
cache ``build/dry-run/cache`` (nothing reaches ``build/cache``, the stores or ``figures/``). The peak
resident memory of the notebook's process tree (the Jupyter kernel included: ``ru_maxrss`` of the
waited-for children) is the notebook's peak on CPU.

The GPU projection adds to it the blocks that are larger on CUDA than on CPU (the row chunks of
``paper_utils.nets.dual`` and ``paper_utils.nets.relu_patch`` and the solver's blocks), each counted with
its temporaries; everything else a notebook holds on the GPU it also holds on the CPU here, so the sum
bounds the GPU peak from above (host-side copies included). It is a projection, not a measurement.

    python benchmarks/memory_plan.py                 # all 12 notebooks -> benchmarks/results/memory_plan_paper.json
    python benchmarks/memory_plan.py --only 01 03    # some
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "memory_plan_paper.json"
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

#: the wrapper that runs one notebook and reports the peak RSS of its process tree (KiB on Linux)
_WRAP = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
         "print('MAXRSS_KIB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")

GIB = 2 ** 30
F32, F64 = 4, 8
# the largest per-notebook widths at paper scale (paper_utils/pipeline/config.py)
MNIST_P, MNIST_M, MRI_P, MRI_M = 8000, 512, 5000, 1024
#: rows per chunk, CPU and CUDA: the dual's chunked path (paper_utils.nets.dual; the fused CPU kernels hold no block)
#: and the primal's (paper_utils.nets.relu_patch)
DUAL_ROWS = (512, 16384)
PRIMAL_ROWS = (2048, 65536)
#: numbers in one block of the solver (paper_utils.dual_solver.data), CPU and CUDA
SOLVER_BLOCK = (2 ** 19, 2 ** 26)
#: blocks alive at once: the dual chunk (S, its masks and selections), the primal chunk (H and its mask),
#: the solver (block, its product and a transposed copy)
DUAL_TEMPS, PRIMAL_TEMPS, SOLVER_TEMPS = 4, 2, 3


def cuda_extra_bytes(notebook: str) -> dict:
    """Bytes by which the CUDA chunk blocks of ``notebook`` exceed the CPU ones, per kernel (a bound)."""
    mri = notebook[:2] in ("05", "06", "09")
    P, m = (MRI_P, MRI_M) if mri else (MNIST_P, MNIST_M)
    dual = (DUAL_ROWS[1] - DUAL_ROWS[0]) * 3 * P * F32 * DUAL_TEMPS
    primal = (PRIMAL_ROWS[1] - PRIMAL_ROWS[0]) * m * F32 * PRIMAL_TEMPS
    solver = (SOLVER_BLOCK[1] - SOLVER_BLOCK[0]) * F64 * SOLVER_TEMPS
    return {"dual_chunk": dual, "primal_chunk": primal, "solver_block": solver}


def run_one(notebook: str, timeout: float) -> dict:
    env = dict(os.environ, PAPER_UTILS_DRY_RUN="1")
    env.setdefault("OMP_NUM_THREADS", "2")
    cmd = [sys.executable, "-c", _WRAP, sys.executable, "-m", "paper_utils.run_notebooks", "--scale", "paper",
           "--only", notebook[:2], "--no-write-back"]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        out, rc = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        out, rc = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or ""), 124
    seconds = time.perf_counter() - start
    peak = next((int(line.split()[1]) for line in out.splitlines() if line.startswith("MAXRSS_KIB")), None)
    status = next((line.split("s  ", 1)[1].strip() for line in out.splitlines()
                   if line.startswith(notebook[:2]) and "s  " in line), "timeout" if rc == 124 else f"exit {rc}")
    extra = cuda_extra_bytes(notebook)
    peak_gib = peak * 1024 / GIB if peak is not None else None
    row = {"notebook": notebook, "status": status, "seconds": round(seconds, 1),
           "peak_rss_gib": round(peak_gib, 2) if peak_gib is not None else None,
           "cuda_extra_gib": {k: round(v / GIB, 2) for k, v in extra.items()},
           "projected_gpu_gib": round(peak_gib + sum(extra.values()) / GIB, 1) if peak_gib is not None else None}
    if status != "ok":
        row["log_tail"] = out[-2000:]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=None, help="notebook numbers, e.g. 01 07")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per notebook (a safety net)")
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args(argv)
    todo = [nb for nb in NOTEBOOKS if args.only is None or nb[:2] in args.only]
    if not todo:
        parser.error(f"no notebook matches {args.only}")
    rows = json.loads(args.out.read_text())["notebooks"] if args.out.exists() else []
    rows = [r for r in rows if r["notebook"] not in todo]
    for nb in todo:
        row = run_one(nb, args.timeout)
        rows.append(row)
        print(f"{nb:32s} {row['status']:>8s} {row['seconds']:8.1f} s  peak RSS {row['peak_rss_gib']} GiB  "
              f"projected GPU {row['projected_gpu_gib']} GiB", flush=True)
        rows.sort(key=lambda r: r["notebook"])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"host": platform.node(), "cpus": os.cpu_count(),
                                        "threads": os.environ.get("OMP_NUM_THREADS", "2"),
                                        "limit_gib": 24, "gpu_gib": 80, "notebooks": rows}, indent=1) + "\n")
    worst = max((r["peak_rss_gib"] or 0) for r in rows)
    print(f"largest peak RSS {worst:.2f} GiB (limit 24 GiB); results in {args.out}")
    return 0 if all(r["status"] == "ok" for r in rows) and worst <= 24 else 1


if __name__ == "__main__":
    sys.exit(main())
