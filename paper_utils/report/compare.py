"""Did I reproduce it? The claims of a fresh run against the committed ones.

    make compare                                    # after any `make figures`
    python -m paper_utils.report.compare [--rtol 1e-3] [--committed PATH | --rev REV] [--fresh PATH]

compares the claims report of the working tree (``figures/claims.json``, rewritten by ``make figures``;
``figures/paper/claims.json`` with ``--scale paper``) with the committed one (``git show HEAD:figures/claims.json``,
or ``--rev``, or a file given by ``--committed``) and prints, per notebook, every claim

- whose verdict (``holds``) **flipped**;
- whose value **moved**: the value is the claim's ``measured`` number, in the claim's own ``units`` (a relative
  gap, a PSNR in dB, a count of patterns, ...), and it moved when ``|new - old| > rtol * max(|new|, |old|)``
  (``--rtol``, default :data:`DEFAULT_RTOL`), or when it became or stopped being a number (``None``, ``"nan"``,
  ``"inf"``); a changed ``tolerance`` is printed the same way;
- that was **added** or **removed** (claims are matched by ``name``, unique across the report).

Notebooks whose claims are all unchanged are named on one line. Exit status: 1 if a verdict flipped, 0
otherwise (moved, added and removed claims are reported, not failed); 2 if a claims file cannot be read.
The ``date`` and ``code_version`` of each notebook's record differ after every run and are shown, not compared.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from paper_utils.pipeline.paths import project_root

#: the default relative tolerance on a claim's measured value
DEFAULT_RTOL = 1e-3

#: where each scale's claims report lives, relative to the project root (``make figures`` writes it)
REPORT_PATHS = {"cpu": "figures/claims.json", "paper": "figures/paper/claims.json"}


@dataclass(frozen=True)
class Change:
    """One claim that differs between the committed and the fresh report.

    ``what``: ``"flipped"``, ``"moved"``, ``"added"`` or ``"removed"``; ``old``/``new``: the claim dicts
    (``None`` for the side it is missing from); ``notebook``: the fresh record's notebook (the committed one's
    for a removed claim)."""

    what: str
    name: str
    notebook: str
    old: dict | None
    new: dict | None


@dataclass
class Comparison:
    """The result of :func:`compare_claims`: the changes, and the notebooks of either side."""

    changes: list[Change] = field(default_factory=list)
    notebooks: dict[str, dict] = field(default_factory=dict)  # notebook -> {"old": record|None, "new": record|None}
    n_compared: int = 0
    rtol: float = DEFAULT_RTOL

    def of(self, what: str) -> list[Change]:
        return [c for c in self.changes if c.what == what]

    @property
    def flipped(self) -> bool:
        return bool(self.of("flipped"))


def _number(value) -> float | None:
    """A measured value as a float: numbers as they are, the strings ``"nan"``/``"inf"``/``"-inf"`` that
    :func:`paper_utils.report.claims.record_claims` writes for non-finite values parsed; ``None`` otherwise."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def value_moved(old, new, rtol: float = DEFAULT_RTOL) -> bool:
    """Whether a value moved: ``|new - old| > rtol * max(|new|, |old|)`` for two finite numbers; for anything
    else (``None``, nan, inf, strings) whether they differ (nan equals nan, inf equals inf of the same sign)."""
    a, b = _number(old), _number(new)
    if a is None or b is None:
        return (a is None) != (b is None) or (a is None and old != new)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) != math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a != b
    return abs(b - a) > rtol * max(abs(a), abs(b))


def _claims_by_name(records: list[dict]) -> dict[str, tuple[str, dict]]:
    out: dict[str, tuple[str, dict]] = {}
    for rec in records:
        for claim in rec["claims"]:
            if claim["name"] in out:
                raise ValueError(f"claim {claim['name']!r} appears twice (notebooks {out[claim['name']][0]} and "
                                 f"{rec['notebook']}); claims are matched by name")
            out[claim["name"]] = (rec["notebook"], claim)
    return out


def compare_claims(old_records: list[dict], new_records: list[dict], *, rtol: float = DEFAULT_RTOL) -> Comparison:
    """Compare two claims reports (lists of per-notebook records, as in ``claims.json``).

    A claim present in both is ``"flipped"`` when its ``holds`` differs, else ``"moved"`` when its ``measured``
    or its ``tolerance`` moved (:func:`value_moved`); claims only in ``new_records`` are ``"added"``, only in
    ``old_records`` ``"removed"``. Changes are ordered by notebook, then by their order in the report."""
    if rtol < 0:
        raise ValueError(f"rtol must be >= 0, got {rtol}")
    old, new = _claims_by_name(old_records), _claims_by_name(new_records)
    result = Comparison(rtol=rtol)
    for rec in old_records:
        result.notebooks.setdefault(rec["notebook"], {"old": None, "new": None})["old"] = rec
    for rec in new_records:
        result.notebooks.setdefault(rec["notebook"], {"old": None, "new": None})["new"] = rec
    for name, (notebook, claim) in new.items():
        if name not in old:
            result.changes.append(Change("added", name, notebook, None, claim))
            continue
        before = old[name][1]
        result.n_compared += 1
        if bool(before["holds"]) != bool(claim["holds"]):
            result.changes.append(Change("flipped", name, notebook, before, claim))
        elif (value_moved(before.get("measured"), claim.get("measured"), rtol)
              or value_moved(before.get("tolerance"), claim.get("tolerance"), rtol)):
            result.changes.append(Change("moved", name, notebook, before, claim))
    for name, (notebook, claim) in old.items():
        if name not in new:
            result.changes.append(Change("removed", name, notebook, claim, None))
    order = {nb: i for i, nb in enumerate(sorted(result.notebooks))}
    result.changes.sort(key=lambda c: order[c.notebook])  # stable: report order within a notebook
    return result


# ---------------------------------------------------------------------------------------------- report
def _fmt(value) -> str:
    a = _number(value)
    if a is None:
        return "n/a" if value is None else str(value)
    return f"{int(a)}" if isinstance(value, int) and not isinstance(value, bool) else f"{a:.6g}"


def _verdict(claim: dict) -> str:
    return "holds" if claim["holds"] else "does not hold"


def _relative(old, new) -> str:
    a, b = _number(old), _number(new)
    if a is None or b is None or not (math.isfinite(a) and math.isfinite(b)) or a == 0:
        return ""
    return f" ({(b - a) / abs(a):+.2%})"


def _line(change: Change) -> str:
    old, new = change.old, change.new
    basis = (new or old).get("basis", "published")
    head = f"  {change.what.upper() if change.what == 'flipped' else change.what:8s} {change.name} [{basis}]"
    if change.what == "added":
        units = new.get("units", "")
        return f"{head}: {_verdict(new)}, measured {_fmt(new.get('measured'))}" + (f"; units: {units}" if units else "")
    if change.what == "removed":
        return f"{head}: was {_verdict(old)}, measured {_fmt(old.get('measured'))}"
    text = f"{head}: "
    if change.what == "flipped":
        text += f"{_verdict(old)} -> {_verdict(new)}, "
    else:
        text += f"{_verdict(new)}, "
    text += (f"measured {_fmt(old.get('measured'))} -> {_fmt(new.get('measured'))}"
             f"{_relative(old.get('measured'), new.get('measured'))}")
    if value_moved(old.get("tolerance"), new.get("tolerance"), 0.0):
        text += f", tolerance {_fmt(old.get('tolerance'))} -> {_fmt(new.get('tolerance'))}"
    else:
        text += f" (tolerance {_fmt(new.get('tolerance'))})"
    units = new.get("units", "")
    return text + (f"; units: {units}" if units else "")


def render(result: Comparison, *, old_label: str, new_label: str) -> str:
    """The comparison as text: one block per notebook with changes, the unchanged notebooks on one line,
    then a summary line."""
    lines = [f"claims of {new_label} against {old_label}",
             f"value = each claim's `measured`; moved when |new - old| > {result.rtol:g} * max(|new|, |old|)", ""]
    unchanged = []
    for notebook in sorted(result.notebooks):
        changes = [c for c in result.changes if c.notebook == notebook]
        sides = result.notebooks[notebook]
        if not changes:
            unchanged.append(notebook)
            continue
        old, new = sides["old"], sides["new"]
        where = ("only in the committed report" if new is None else "only in the fresh report" if old is None
                 else f"code {old.get('code_version', '?')} -> {new.get('code_version', '?')}, "
                      f"run {old.get('date', '?')[:10]} -> {new.get('date', '?')[:10]}")
        if old is not None and new is not None and (old.get("scale"), old.get("device")) != (new.get("scale"), new.get("device")):
            where += f"; scale/device {old.get('scale')}/{old.get('device')} -> {new.get('scale')}/{new.get('device')}"
        lines.append(f"{notebook} ({where}):")
        lines += [_line(c) for c in changes]
        lines.append("")
    if unchanged:
        lines += [f"unchanged ({len(unchanged)} notebook{'s' if len(unchanged) != 1 else ''}): " + ", ".join(unchanged), ""]
    counts = {w: len(result.of(w)) for w in ("flipped", "moved", "added", "removed")}
    lines.append(f"{result.n_compared} claims in both: {counts['flipped']} flipped, {counts['moved']} moved "
                 f"(rtol {result.rtol:g}); {counts['added']} added, {counts['removed']} removed"
                 + (" -> a verdict FLIPPED" if counts["flipped"] else " -> no verdict flipped"))
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- input
def committed_report(relpath: str, rev: str = "HEAD", root: Path | None = None) -> list[dict]:
    """``git show <rev>:<relpath>`` of the project, parsed."""
    root = root or project_root()
    try:
        out = subprocess.run(["git", "show", f"{rev}:{relpath}"], cwd=root, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise FileNotFoundError(f"cannot run git in {root} ({exc}); give the committed report with --committed PATH") from exc
    if out.returncode != 0:
        raise FileNotFoundError(f"git show {rev}:{relpath} failed in {root}: {out.stderr.strip()}; "
                                "give the committed report with --committed PATH")
    return json.loads(out.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m paper_utils.report.compare",
        description="Compare the fresh claims report (working tree, after `make figures`) with the committed one: "
                    "flipped verdicts, moved values, added and removed claims, per notebook. Exit 1 if a verdict flipped.")
    parser.add_argument("--scale", default="cpu", choices=sorted(REPORT_PATHS),
                        help="which report: cpu (figures/claims.json, the default) or paper (figures/paper/claims.json)")
    parser.add_argument("--fresh", type=Path, help="the fresh report (default: the scale's claims.json in the working tree)")
    parser.add_argument("--committed", type=Path, help="the report to compare against, as a file (default: git show REV:<report>)")
    parser.add_argument("--rev", default="HEAD", help="git revision of the committed report (default HEAD)")
    parser.add_argument("--rtol", type=float, default=DEFAULT_RTOL,
                        help=f"relative tolerance on each claim's measured value (default {DEFAULT_RTOL:g})")
    args = parser.parse_args(argv)

    relpath = REPORT_PATHS[args.scale]
    fresh = args.fresh or project_root() / relpath
    fresh_label = relpath if args.fresh is None else str(args.fresh)
    try:
        new_records = json.loads(Path(fresh).read_text())
        if args.committed is not None:
            old_records, old_label = json.loads(Path(args.committed).read_text()), str(args.committed)
        else:
            old_records, old_label = committed_report(relpath, args.rev), f"{args.rev}:{relpath} (committed)"
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = compare_claims(old_records, new_records, rtol=args.rtol)
    print(render(result, old_label=old_label, new_label=f"{fresh_label} (fresh)"))
    return 1 if result.flipped else 0


if __name__ == "__main__":
    sys.exit(main())
