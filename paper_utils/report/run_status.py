"""The run-status cell that ends each notebook: when it ran, on which code, how many seconds the run
took and whether its expensive results were computed or loaded (from the cache or the results store).

The seconds count from the start ``run_notebooks`` records for each notebook in
``$PAPER_UTILS_RUN_STARTED`` (epoch seconds, inherited by the kernel), else from the start of this
kernel's process (nbval, or a notebook run by hand; interactively that includes idle time).
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from collections.abc import Mapping

from paper_utils.pipeline.cache import ENTRY_SOURCES
from paper_utils.report.claims import code_version
from paper_utils.report.tables import display_markdown

#: epoch seconds at which run_notebooks started the notebook this kernel runs
RUN_STARTED_ENV = "PAPER_UTILS_RUN_STARTED"

_IMPORTED = time.time()


def run_started() -> tuple[float, str]:
    """When this run started (epoch seconds) and what that start is, in words."""
    value = os.environ.get(RUN_STARTED_ENV, "")
    try:
        return float(value), "from its start by `run_notebooks` to this cell"
    except ValueError:
        pass
    try:
        import psutil  # an ipykernel dependency

        return psutil.Process().create_time(), "from the start of this kernel to this cell"
    except (ImportError, OSError):
        return _IMPORTED, "from the import of `run_status` to this cell"


def results_origin(sources: Mapping[str, int] | None = None) -> str:
    """``"loaded"``, ``"computed"``, ``"partly computed"`` or ``"no cache entries"``, from the counts of
    this process's cache entries by source (:data:`paper_utils.pipeline.cache.ENTRY_SOURCES`), then the
    counts in words."""
    s = ENTRY_SOURCES if sources is None else sources
    loaded, computed = s.get("store", 0) + s.get("cache", 0), s.get("computed", 0)
    verdict = ("partly computed" if loaded and computed else "computed" if computed else
               "loaded" if loaded else "no cache entries")
    return (f"{verdict} ({s.get('store', 0)} cache entries from the results store, {s.get('cache', 0)} from "
            f"`build/cache`, {computed} computed in this run)")


def status_markdown(notebook: str, *, now: float | None = None, sources: Mapping[str, int] | None = None) -> str:
    """The status cell's text for ``notebook``."""
    now = time.time() if now is None else now
    started, origin = run_started()
    when = _dt.datetime.fromtimestamp(now, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"**This run** (`{notebook}`): {now - started:,.0f} s {origin}; finished {when}; code "
            f"`{code_version()}`.  \nExpensive results: {results_origin(sources)}.")


def show(notebook: str) -> None:
    """Display :func:`status_markdown` (Markdown in a kernel, printed elsewhere)."""
    display_markdown(status_markdown(notebook))
