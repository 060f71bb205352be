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
A notebook stopped by ``--timeout`` (a safety net) keeps the largest resident set sampled until then,
marked as a lower bound. ``--full`` measures a notebook's real paper-scale run instead (from the stores,
once its pieces are in; it writes ``figures/paper/`` and the executed notebook): the same data and widths;
each row says which run it measured (``run``: ``dry`` or ``full``).

    python benchmarks/memory_plan.py                 # all 12 notebooks -> benchmarks/results/memory_plan_paper.json
    python benchmarks/memory_plan.py --only 01 03    # some
    python benchmarks/memory_plan.py --full --only 04   # the real paper-scale run of 04, measured
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

from paper_utils.pipeline.runtime import cpu_model

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
    if notebook[:2] == "12":   # Theorem 1's small problems run on the CPU (numpy float64) at every scale
        return {"dual_chunk": 0, "primal_chunk": 0, "solver_block": 0}
    mri = notebook[:2] in ("05", "06", "09")
    P, m = (MRI_P, MRI_M) if mri else (MNIST_P, MNIST_M)
    dual = (DUAL_ROWS[1] - DUAL_ROWS[0]) * 3 * P * F32 * DUAL_TEMPS
    primal = (PRIMAL_ROWS[1] - PRIMAL_ROWS[0]) * m * F32 * PRIMAL_TEMPS
    solver = (SOLVER_BLOCK[1] - SOLVER_BLOCK[0]) * F64 * SOLVER_TEMPS
    return {"dual_chunk": dual, "primal_chunk": primal, "solver_block": solver}


def _tree(root: int) -> list[int]:
    """``root`` and its descendants, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_one(notebook: str, timeout: float, poll: float = 0.5, full: bool = False) -> dict:
    """Run ``notebook``'s dry run (``full``: its real paper-scale run, from the stores); its peak is the larger of ``ru_maxrss`` of the waited-for processes (the
    largest single process, when the run ends) and the largest sampled sum of the tree's resident sets
    (every ``poll`` seconds; on a timeout the only number, a lower bound of the peak)."""
    env = dict(os.environ)
    env.pop("PAPER_UTILS_DRY_RUN", None)
    if not full:
        env["PAPER_UTILS_DRY_RUN"] = "1"
    env.setdefault("OMP_NUM_THREADS", "2")
    cmd = [sys.executable, "-c", _WRAP, sys.executable, "-m", "paper_utils.run_notebooks", "--scale", "paper",
           "--only", notebook[:2]] + ([] if full else ["--no-write-back"])
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampled, timed_out = 0, False
    while proc.poll() is None:
        sampled = max(sampled, sum(_rss_kib(pid) for pid in _tree(proc.pid)))
        if time.perf_counter() - start > timeout:
            timed_out = True
            for pid in reversed(_tree(proc.pid)):   # the kernel and the runner too, not only the wrapper
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            break
        time.sleep(poll)
    out = proc.communicate()[0] or ""
    seconds = time.perf_counter() - start
    maxrss = next((int(line.split()[1]) for line in out.splitlines() if line.startswith("MAXRSS_KIB")), 0)
    peak_gib = max(maxrss, sampled) * 1024 / GIB
    status = "timeout" if timed_out else next(
        (line.split("s  ", 1)[1].strip() for line in out.splitlines() if line.startswith(notebook[:2]) and "s  " in line),
        f"exit {proc.returncode}")
    extra = cuda_extra_bytes(notebook)
    row = {"notebook": notebook, "run": "full" if full else "dry", "status": status, "seconds": round(seconds, 1),
           "peak_rss_gib": round(peak_gib, 2), "peak_is_lower_bound": timed_out, "cpu": cpu_model(),
           "cuda_extra_gib": {k: round(v / GIB, 2) for k, v in extra.items()},
           "projected_gpu_gib": round(peak_gib + sum(extra.values()) / GIB, 1)}
    if status != "ok":
        row["log_tail"] = out[-2000:].replace(f"{ROOT}/", "")        # paths relative to the repository
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", default=None, help="notebook numbers, e.g. 01 07")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per notebook (a safety net)")
    parser.add_argument("--out", type=Path, default=RESULT)
    parser.add_argument("--full", action="store_true",
                        help="measure the real paper-scale run instead of the dry run (it writes figures/paper/)")
    args = parser.parse_args(argv)
    todo = [nb for nb in NOTEBOOKS if args.only is None or nb[:2] in args.only]
    if not todo:
        parser.error(f"no notebook matches {args.only}")
    rows = json.loads(args.out.read_text())["notebooks"] if args.out.exists() else []
    rows = [r for r in rows if r["notebook"] not in todo]
    for nb in todo:
        row = run_one(nb, args.timeout, full=args.full)
        rows.append(row)
        print(f"{nb:32s} {row['status']:>8s} {row['seconds']:8.1f} s  peak RSS "
              f"{'>= ' if row['peak_is_lower_bound'] else ''}{row['peak_rss_gib']} GiB  "
              f"projected GPU {row['projected_gpu_gib']} GiB", flush=True)
        rows.sort(key=lambda r: r["notebook"])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"host": platform.node(), "cpus": os.cpu_count(),
                                        "threads": os.environ.get("OMP_NUM_THREADS", "2"),
                                        "limit_gib": 24, "gpu_gib": 80, "notebooks": rows}, indent=1) + "\n")
    worst = max(r["peak_rss_gib"] for r in rows)
    print(f"largest peak RSS {worst:.2f} GiB (limit 24 GiB); results in {args.out}")
    return 0 if all(r["status"] == "ok" for r in rows) and worst <= 24 else 1


if __name__ == "__main__":
    sys.exit(main())
