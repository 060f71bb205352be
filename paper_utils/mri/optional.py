"""The MRI pipeline's optional dependencies (the ``mri`` extra): a clear error when one is missing."""

from __future__ import annotations

import importlib.util


def require(module: str) -> None:
    """Raise ``ImportError`` naming the ``mri`` extra if ``module`` (e.g. ``"sigpy"``) is not installed."""
    if importlib.util.find_spec(module) is None:
        raise ImportError(f"the MRI pipeline needs {module!r}, which is not installed: "
                          f"pip install 'paper_utils[mri]' (or `make venv`, which installs every pin)")
