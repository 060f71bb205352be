"""Tables as a reader sees them in a notebook: rendered Markdown, never wrapped text.

Every notebook opens with two cells built from here:

- :func:`show_run`: what ran (scale, sizes, device, date, code version, where the results came from);
  it changes from run to run, so notebooks mark it ``# NBVAL_IGNORE_OUTPUT``;
- :func:`show_verdicts`: the figure's verdict table, one row per claim with its kind (``paper``: a claim
  the paper makes; ``ours``: our own question about it; ``check``: a check of our tools) and the
  published verdict and the optimum verdict side by side (paired as in ``CLAIMS.md``), with numbers,
  under a count that keeps the three kinds apart; nbval checks it.

Results tables go through :func:`show_table` (rows of dicts, one Markdown table). The ``show_*``
functions display and return nothing (a returned value would print again as the cell's result);
:func:`markdown_table`, :func:`run_markdown` and :func:`verdict_markdown` return the same text.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict

from paper_utils.pipeline.cache import entry_sources_summary
from paper_utils.report.claims import Claim, code_version, tally_sentence
from paper_utils.report.claims_report import pair_claims


def display_markdown(text: str) -> None:
    """Display Markdown in a kernel; print it elsewhere."""
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:  # plain Python without IPython: print the Markdown
        print(text)
        return
    if get_ipython() is None:
        print(text)
    else:
        display(Markdown(text))


def format_value(value, digits: int = 4) -> str:
    """A number with ``digits`` significant digits (integers as they are), anything else as ``str``."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}g}"
    return str(value).replace("|", "/").replace("\n", " ")


def markdown_table(rows: Sequence[Mapping], digits: int = 4, columns: Sequence[str] | None = None) -> str:
    """Rows of dicts as one Markdown table (columns: ``columns`` or the union of keys, in order)."""
    if not rows:
        return "*(no rows)*"
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(str(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(format_value(row.get(c), digits) for c in columns) + " |")
    return "\n".join(lines)


def show_table(rows: Sequence[Mapping], digits: int = 4, *, title: str | None = None,
               columns: Sequence[str] | None = None) -> None:
    """Display ``rows`` (a list of dicts) as a rendered Markdown table, under ``title`` if given."""
    text = markdown_table(rows, digits, columns)
    if title:
        text = f"**{title}**\n\n{text}"
    display_markdown(text)


def show_run(notebook: str, scale: str, device, sizes: Mapping[str, object], *, source: str | None = None) -> None:
    """Display :func:`run_markdown`: what ran."""
    display_markdown(run_markdown(notebook, scale, device, sizes, source=source))


def run_markdown(notebook: str, scale: str, device, sizes: Mapping[str, object], *, source: str | None = None) -> str:
    """What ran: notebook, scale, the sizes that matter for this figure, device, date (UTC), code
    version, where the expensive results came from (``source``, e.g. "results store ``results/cpu``")
    and where this kernel's cache entries came from."""
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    size_text = ", ".join(f"{k} = {format_value(v)}" for k, v in sizes.items())
    lines = [f"**What ran** (`{notebook}`): scale **`{scale}`**; {size_text}.",
             f"Device {device}; executed {when}; code `{code_version()}`."]
    if source:
        lines.append(f"Expensive results: {source}.")
    lines.append(f"Cache entries used by this kernel so far: {entry_sources_summary()}.")
    if scale == "smoke":
        lines.append("*Smoke scale: a seconds-long check of the code path. Its numbers are not results; the "
                     "committed notebooks are executed at `cpu` scale.*")
    return "  \n".join(lines)


def _verdict_cell(c: dict | None, digits: int) -> str:
    if c is None:
        return "—"
    verdict = "holds" if c["holds"] else "**does not hold**"
    return f"{format_value(c['measured'], digits)}: {verdict}"


def verdict_rows(claims: Sequence[Claim | Mapping], digits: int = 3) -> list[dict]:
    """One row per claim: its name, kind, statement, and the published and optimum verdicts with their
    measured values (``—`` where a basis has no claim)."""
    record = {"notebook": "", "device": "", "date": "", "code_version": "",
              "claims": [asdict(c) if isinstance(c, Claim) else dict(c) for c in claims]}
    rows = []
    for fig_rows in pair_claims([record]).values():
        for row in fig_rows:
            c = row["published"] or row["optimum"]
            statement = c["statement"]
            rows.append({"claim": f"`{row['key']}`", "kind": row["kind"], "statement": statement,
                         "published": _verdict_cell(row["published"], digits),
                         "optimum": _verdict_cell(row["optimum"], digits),
                         "units": c.get("units", "")})
    return rows


def show_verdicts(claims: Sequence[Claim | Mapping], digits: int = 3) -> None:
    """Display :func:`verdict_markdown`: the figure's verdict table."""
    display_markdown(verdict_markdown(claims, digits))


def verdict_markdown(claims: Sequence[Claim | Mapping], digits: int = 3) -> str:
    """The figure's verdict table (see :func:`verdict_rows`) under a one-line count per kind
    (:func:`paper_utils.report.claims.tally_sentence`)."""
    rows = verdict_rows(claims, digits)
    text = (f"**Verdicts**: {tally_sentence(claims)}. *Published*: the paper's settings and budget; "
            f"*optimum*: certified dual optimum and primal trained to its stopping rule or its budget.\n\n"
            + markdown_table(rows, digits, columns=("claim", "kind", "statement", "published", "optimum", "units")))
    return text
