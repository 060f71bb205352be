"""The main job: run every notebook through papermill, in order, at one scale.

    python -m paper_utils.run_notebooks --scale cpu --device auto

Executed copies go to ``build/<scale>/``; at ``cpu`` scale each notebook that ran cleanly is also
written back to ``notebooks/``, cleaned for readers (:mod:`paper_utils.pipeline.notebook_clean`:
progress bars as their final text, streams coalesced, nbval markers as tags, papermill's injected cell
and run metadata removed, outputs kept): the committed notebooks are the run behind ``figures/``.
Notebooks run in the project kernel ``paper-utils`` (registered into this environment when missing),
and each kernel gets its start time in ``$PAPER_UTILS_RUN_STARTED`` for the closing status cell
(:mod:`paper_utils.report.run_status`). Figures and claim records are written by
the notebooks themselves (``figures/`` at ``cpu``/``paper`` scale, ``build/smoke/figures/`` at
``smoke``). One progress line per notebook (name, time, status); a failing notebook is reported and
the run goes on with the next one; the exit status is non-zero if any failed. Trained models are
cached by configuration (``build/cache``, over the committed store ``results/cpu/store``), so an
interrupted run resumes without redoing finished work; the entries each notebook used are logged for
``make store`` (:mod:`paper_utils.pipeline.store`). ``--device cuda`` on a machine without a CUDA GPU,
and an ``--only`` selection that matches no notebook, are refused before any notebook starts.
Per-notebook wall times go to ``build/<scale>/timings.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from paper_utils.pipeline.config import DRY_RUN_ENV, DRY_RUN_LBFGS_ITER, SCALES, dry_run
from paper_utils.pipeline.notebook_clean import KERNEL_DISPLAY_NAME, KERNEL_NAME, clean_notebook
from paper_utils.pipeline.paths import output_dir, project_root
from paper_utils.pipeline.runtime import DEVICES, cpu_model, resolve_device
from paper_utils.pipeline.store import access_log_dir
from paper_utils.report.claims_report import write_report
from paper_utils.report.run_status import RUN_STARTED_ENV


def notebooks(folder: Path | None = None, only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks (``NN_*.ipynb``), in order; ``only`` selects by name prefix, in its own order
    (``--only 07 01`` runs 07 first)."""
    folder = folder or project_root() / "notebooks"
    found = sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))
    if only:
        selected = list(dict.fromkeys(p for o in only for p in found if p.name.startswith(o)))
        unmatched = [o for o in only if not any(p.name.startswith(o) for p in found)]
        if unmatched:
            raise ValueError(f"--only {' '.join(unmatched)} matches no notebook; the notebooks are: "
                             + ", ".join(p.stem for p in found))
        found = selected
    return found


def clean_executed(src: Path, dst: Path) -> list[str]:
    """Write the executed notebook ``src`` to ``dst`` as a reader should see it
    (:func:`paper_utils.pipeline.notebook_clean.clean_notebook`). Returns the problems found in the
    outputs (warnings, absolute paths of this machine)."""
    import nbformat

    nb = clean_notebook(nbformat.read(src, as_version=4))
    problems = []
    root, home = str(project_root()), os.path.expanduser("~")
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            text = json.dumps(out)
            if out.get("name") == "stderr" and "Warning" in text:
                problems.append(f"cell {i}: a warning in stderr")
            if root in text or (home not in ("/", "") and f"{home}/" in text):
                problems.append(f"cell {i}: an absolute path of this machine in the outputs")
    nbformat.write(nb, dst)
    return problems


def _bin_dir(executable: str) -> str:
    return os.path.dirname(os.path.abspath(shutil.which(executable) or executable))


def ensure_kernel(log=print) -> None:
    """Make sure papermill finds the project kernel :data:`KERNEL_NAME` and that it runs this Python:
    registers it into this environment (``ipykernel install --sys-prefix``, as ``make venv`` does) when
    it is missing or names another environment's interpreter. Raises ``RuntimeError`` when a kernel of
    that name from another environment still shadows this one."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    def interpreter() -> str | None:
        try:
            return KernelSpecManager().get_kernel_spec(KERNEL_NAME).argv[0]
        except NoSuchKernel:
            return None

    found = interpreter()
    if found is not None and _bin_dir(found) == _bin_dir(sys.executable):
        return
    from ipykernel.kernelspec import install

    path = install(kernel_name=KERNEL_NAME, display_name=KERNEL_DISPLAY_NAME, prefix=sys.prefix)
    log(f"registered the Jupyter kernel {KERNEL_NAME} ({sys.executable}) in {path}")
    found = interpreter()
    if found is None or _bin_dir(found) != _bin_dir(sys.executable):
        raise RuntimeError(f"the Jupyter kernel {KERNEL_NAME!r} runs {found}, not this environment's "
                           f"{sys.executable}: remove the other one (jupyter kernelspec list)")


def device_description(device: str) -> str:
    """What ``device`` resolves to on this machine, e.g. ``cuda (NVIDIA H200)`` or ``cpu``.

    Raises ``RuntimeError`` for ``"cuda"`` without a CUDA GPU (see :func:`runtime.resolve_device`).
    """
    import torch

    resolved = resolve_device(device)
    if resolved.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(resolved)})"
    return resolved.type


def run(scale: str, device: str, only: list[str] | None = None, log=print, *, write_back: bool = True) -> int:
    """Execute the notebooks; returns the number of failures.

    Raises ``ValueError`` on an unknown scale or device or an ``only`` that matches no notebook, and
    ``RuntimeError`` when ``device="cuda"`` and no CUDA GPU is available, before any notebook starts.
    ``write_back``: at ``cpu`` scale, write each cleanly executed notebook back to ``notebooks/``; at ``paper``
    scale to ``figures/paper/notebooks/``.
    """
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; expected one of {SCALES}")
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; expected one of {DEVICES}")
    todo = notebooks(only=only)  # refuse a selection that matches nothing, here
    resolved = device_description(device)  # refuse cuda without a GPU once, here
    ensure_kernel(log)
    import papermill

    out_dir = project_root() / "build" / scale
    logs = access_log_dir(scale)
    if scale == "paper":  # the MRI notebooks prepare 1,200 slices (JSENSE, about 1 s each on one core): every core
        from paper_utils.mri.build import WORKERS_ENV

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        os.environ.setdefault(WORKERS_ENV, str(cores))
    if dry_run(scale):  # the paper's sizes with cut budgets (memory plan): nothing of it may reach a real output
        dry = project_root() / "build" / "dry-run"
        os.environ.setdefault("PAPER_UTILS_CACHE", str(dry / "cache"))
        os.environ.setdefault("PAPER_UTILS_OUTPUT", str(dry / "figures"))
        out_dir, logs, write_back = dry / scale, dry / "cache-access", False
        log(f"dry run (${DRY_RUN_ENV}): budgets cut to one epoch and {DRY_RUN_LBFGS_ITER} L-BFGS iterations; cache "
            f"{os.environ['PAPER_UTILS_CACHE']}, outputs {os.environ['PAPER_UTILS_OUTPUT']}")
    out_dir.mkdir(parents=True, exist_ok=True)
    failures = []
    log(f"running {len(todo)} notebooks at scale={scale}, device={device} [{resolved}] -> {out_dir}")
    total = time.perf_counter()
    timings = {"scale": scale, "device": device, "resolved_device": resolved, "python": platform.python_version(),
               "cpu": cpu_model(), "notebooks": []}
    logs.mkdir(parents=True, exist_ok=True)
    previous = {k: os.environ.get(k) for k in ("PAPER_UTILS_ACCESS_LOG", RUN_STARTED_ENV)}
    try:
        for nb in todo:
            start = time.perf_counter()
            log_path = logs / f"{nb.stem}.log"
            log_path.unlink(missing_ok=True)
            os.environ["PAPER_UTILS_ACCESS_LOG"] = str(log_path)  # inherited by the notebook's kernel
            os.environ[RUN_STARTED_ENV] = repr(time.time())  # the status cell's start (run_status)
            try:
                # coalesce_streams (nbclient): one stream per name and cell, tqdm's \r frames collapsed
                papermill.execute_notebook(str(nb), str(out_dir / nb.name), parameters={"scale": scale, "device": device},
                                           cwd=str(nb.parent), kernel_name=KERNEL_NAME, progress_bar=False,
                                           coalesce_streams=True)
                status = "ok"
                if scale in ("cpu", "paper") and write_back:
                    # cpu: the committed notebooks themselves; paper: figures/paper/notebooks/
                    target = nb if scale == "cpu" else output_dir("paper") / "notebooks" / nb.name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    problems = clean_executed(out_dir / nb.name, target)
                    if problems:
                        status = "ok (outputs: " + "; ".join(problems[:3]) + ")"
            except Exception as exc:  # noqa: BLE001 - report and go on with the next notebook
                status = f"FAILED ({type(exc).__name__}: {str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else ''})"
                failures.append(nb.name)
            seconds = time.perf_counter() - start
            timings["notebooks"].append({"notebook": nb.stem, "seconds": round(seconds, 1), "status": status})
            log(f"{nb.name:40s} {seconds:8.1f} s  {status}", flush=True)
            timings["total_seconds"] = round(time.perf_counter() - total, 1)
            (out_dir / "timings.json").write_text(json.dumps(timings, indent=1) + "\n")
    finally:  # the access log and start time are the notebooks' business, not the caller's
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    log(f"total {time.perf_counter() - total:.1f} s; {len(todo) - len(failures)} ok, {len(failures)} failed"
        + (f": {', '.join(failures)} (executed copies with the error are in {out_dir})" if failures else ""))
    return len(failures)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="cpu", choices=SCALES)
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument("--only", nargs="*", help="notebook name prefixes, e.g. 01 04")
    parser.add_argument("--no-write-back", action="store_true",
                        help="at cpu scale, leave notebooks/ as it is (executed copies only in build/cpu)")
    args = parser.parse_args(argv)
    try:
        failures = run(args.scale, args.device, args.only, write_back=not args.no_write_back)
    except (RuntimeError, ValueError) as exc:  # no GPU for --device cuda; an --only matching nothing
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_report(args.scale)
    return 1 if failures else 0

if __name__ == "__main__":
    sys.exit(main())
