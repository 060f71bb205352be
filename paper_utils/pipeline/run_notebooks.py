"""The main job: run every notebook through papermill, in order, at one scale.

    python -m paper_utils.pipeline.run_notebooks --scale cpu --device auto

Executed copies go to ``build/<scale>/``; figures and claim records are written by the notebooks
themselves (``figures/`` at ``cpu``/``paper`` scale, ``build/smoke/figures/`` at ``smoke``). One
progress line per notebook (name, time, status); a failing notebook is reported and the run goes
on with the next one; the exit status is non-zero if any failed. Trained models are cached by
configuration (``build/cache``), so an interrupted run resumes without redoing finished work.
``--device cuda`` on a machine without a CUDA GPU is refused once, before any notebook starts.
Per-notebook wall times go to ``build/<scale>/timings.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from paper_utils.pipeline.config import SCALES
from paper_utils.pipeline.paths import project_root
from paper_utils.pipeline.runtime import DEVICES, resolve_device


def notebooks(folder: Path | None = None, only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks (``NN_*.ipynb``), in order; ``only`` filters by name prefix."""
    folder = folder or project_root() / "notebooks"
    found = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))
    if only:
        found = [p for p in found if any(p.name.startswith(o) for o in only)]
    return found


def device_description(device: str) -> str:
    """What ``device`` resolves to on this machine, e.g. ``cuda (NVIDIA H200)`` or ``cpu``.

    Raises ``RuntimeError`` for ``"cuda"`` without a CUDA GPU (see :func:`runtime.resolve_device`).
    """
    import torch

    resolved = resolve_device(device)
    if resolved.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(resolved)})"
    return resolved.type


def run(scale: str, device: str, only: list[str] | None = None, log=print) -> int:
    """Execute the notebooks; returns the number of failures.

    Raises ``ValueError`` on an unknown scale or device and ``RuntimeError`` when ``device="cuda"``
    and no CUDA GPU is available, before any notebook starts.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; expected one of {SCALES}")
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; expected one of {DEVICES}")
    resolved = device_description(device)  # refuse cuda without a GPU once, here
    import papermill

    out_dir = project_root() / "build" / scale
    out_dir.mkdir(parents=True, exist_ok=True)
    failures = []
    todo = notebooks(only=only)
    log(f"running {len(todo)} notebooks at scale={scale}, device={device} [{resolved}] -> {out_dir}")
    total = time.perf_counter()
    timings = {"scale": scale, "device": device, "resolved_device": resolved, "python": platform.python_version(),
               "notebooks": []}
    for nb in todo:
        start = time.perf_counter()
        try:
            papermill.execute_notebook(str(nb), str(out_dir / nb.name), parameters={"scale": scale, "device": device},
                                       cwd=str(nb.parent), kernel_name="python3", progress_bar=False)
            status = "ok"
        except Exception as exc:  # noqa: BLE001 - report and go on with the next notebook
            status = f"FAILED ({type(exc).__name__}: {str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else ''})"
            failures.append(nb.name)
        seconds = time.perf_counter() - start
        timings["notebooks"].append({"notebook": nb.stem, "seconds": round(seconds, 1), "status": status})
        log(f"{nb.name:40s} {seconds:8.1f} s  {status}", flush=True)
        timings["total_seconds"] = round(time.perf_counter() - total, 1)
        (out_dir / "timings.json").write_text(json.dumps(timings, indent=1) + "\n")
    log(f"total {time.perf_counter() - total:.1f} s; {len(todo) - len(failures)} ok, {len(failures)} failed"
        + (f": {', '.join(failures)} (executed copies with the error are in {out_dir})" if failures else ""))
    return len(failures)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="cpu", choices=SCALES)
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument("--only", nargs="*", help="notebook name prefixes, e.g. 01 04")
    args = parser.parse_args(argv)
    try:
        failures = run(args.scale, args.device, args.only)
    except RuntimeError as exc:  # --device cuda without a GPU: one clear message, no notebook run
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        from paper_utils.report.claims_report import write_report

        write_report(args.scale)
    except ImportError:
        pass
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
