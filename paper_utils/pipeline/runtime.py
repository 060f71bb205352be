"""Runtime set-up shared by notebooks: device choice, determinism, parameter checks."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Map a notebook's ``device`` parameter to a ``torch.device``.

    ``"auto"`` picks CUDA when available, else CPU. ``"cuda"`` without a GPU raises
    ``RuntimeError`` (rather than silently running for hours on the CPU).
    """
    if isinstance(device, torch.device):
        return device
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; expected one of {DEVICES}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was asked for but no CUDA GPU is available; "
                           "use device='cpu' or device='auto'")
    return torch.device(device)


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``; elsewhere ``platform.processor()`` or the
    architecture). Recorded beside measured times and results: numba compiles the fused kernels for the
    host's vector units, so entries computed on different CPU models agree to rounding, not bit for bit."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def setup(seed: int = 0, threads: int | None = None) -> None:
    """Make CPU runs bitwise reproducible: deterministic algorithms, fixed thread count.

    Seeds are passed explicitly to every helper (``seed=``); this only seeds torch's global RNG
    as a guard for third-party code. ``threads`` defaults to ``$OMP_NUM_THREADS`` or 2.
    """
    torch.use_deterministic_algorithms(True, warn_only=True)
    n = threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or min(2, os.cpu_count() or 1)
    torch.set_num_threads(n)
    torch.manual_seed(seed)


def check_parameters(namespace: dict, allowed: dict) -> None:
    """Fail loudly on papermill parameters the notebook does not define.

    papermill only warns about an unknown ``-p name value``; it then injects a variable nobody
    reads. Call as ``check_parameters(globals(), {"scale": ..., ...})`` right after the parameters
    cell: any name injected by papermill's ``injected-parameters`` cell that is not in ``allowed``
    raises ``ValueError``. Works by inspecting the ``_papermill_injected`` names the notebook
    records, see :func:`injected_names`.
    """
    unknown = sorted(set(injected_names(namespace)) - set(allowed))
    if unknown:
        raise ValueError(f"unknown notebook parameter(s) {unknown}; this notebook accepts {sorted(allowed)}")
    for name in allowed:
        if name in namespace:
            check_parameter(name, namespace[name])


def check_parameter(name: str, value) -> None:
    """Check one notebook parameter's value up front, with a message that names it.

    ``scale`` must be one of :data:`paper_utils.pipeline.config.SCALES`, ``device`` one of
    :data:`DEVICES`, ``seed`` a non-negative integer, and the switches (``exact_solver``) booleans.
    Other names are not checked here. Raises ``ValueError``.
    """
    from .config import SCALES

    if name == "scale" and value not in SCALES:
        raise ValueError(f"notebook parameter scale={value!r}: expected one of {SCALES}")
    if name == "device" and value not in DEVICES:
        raise ValueError(f"notebook parameter device={value!r}: expected one of {DEVICES}")
    if name == "seed" and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"notebook parameter seed={value!r}: expected a non-negative integer")
    if name in SWITCHES and not isinstance(value, bool):
        raise ValueError(f"notebook parameter {name}={value!r}: expected True or False")


#: notebook parameters that are on/off switches
SWITCHES = ("exact_solver",)


def injected_names(namespace: dict) -> list[str]:
    """Names assigned by papermill's injected-parameters cell in this kernel, if any."""
    import re

    history = namespace.get("In") or []
    names: list[str] = []
    for cell in history:
        if cell.lstrip().startswith("# Parameters"):
            names += re.findall(r"^(\w+)\s*=", cell, flags=re.M)
    return names
