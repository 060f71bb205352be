"""The claims report: every claim recorded by the notebooks, with our measured number and a verdict.

    python -m paper_utils.report.claims_report --scale cpu

reads ``<output>/claims/*.json`` (written by :func:`paper_utils.report.claims.record_claims`) and writes
``<output>/claims.json`` (all records) and ``<output>/CLAIMS.md``, where ``<output>`` is ``figures/`` at
``cpu`` scale, ``figures/paper/`` at ``paper`` and ``build/smoke/figures/`` at ``smoke``. A claim that does
not hold is listed as such, never hidden.

``CLAIMS.md`` has one table per figure, the *published* verdict (the paper's settings and budget) and
the *optimum* verdict (certified dual, converged primal) side by side, and a summary at the top: which
of the paper's claims hold on both bases, only at the optimum, only at the published budget, or on
neither. An optimum claim is paired with the published one whose name it repeats without the
``optimum.`` segment (``fig2.optimum.zero_gap.gaussian0.5.obj`` <-> ``fig2.zero_gap.gaussian0.5.obj``);
claims with no partner get a row of their own. A record without a ``basis`` field counts as
``published``.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import OrderedDict

from paper_utils.report.claims import gather_claims
from paper_utils.pipeline.config import SCALES
from paper_utils.pipeline.paths import output_dir


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return str(value)


def _figure(name: str) -> str:
    """The figure a claim belongs to, from its name's first segment (``fig2`` -> ``Figure 2``)."""
    head = name.split(".")[0]
    if head.startswith("fig") and head[3:].isdigit():
        return f"Figure {int(head[3:])}"
    return {"solver": "Ours: exact solver", "generation": "Ours: pattern generation"}.get(head, f"Ours: {head}")


def _pair_key(name: str) -> str:
    parts = name.split(".")
    return ".".join(p for p in parts if p != "optimum")


def _figure_order(fig: str) -> tuple:
    return (0, int(fig.split()[1])) if fig.startswith("Figure ") else (1, fig)


def pair_claims(records: list[dict]) -> "OrderedDict[str, list[dict]]":
    """Rows per figure: ``{"key", "statement", "published", "optimum", "notebook", ...}``, each basis a
    claim dict or ``None``."""
    rows: dict[str, dict] = {}
    for rec in records:
        for c in rec["claims"]:
            c = {**c, "notebook": rec["notebook"], "device": rec["device"], "date": rec["date"],
                 "code_version": rec["code_version"]}
            basis = c.get("basis", "published")
            key = _pair_key(c["name"])
            row = rows.setdefault(key, {"key": key, "published": None, "optimum": None})
            row[basis] = c
    figures: "OrderedDict[str, list[dict]]" = OrderedDict()
    for key in sorted(rows, key=lambda k: (_figure_order(_figure(k)), k)):
        figures.setdefault(_figure(key), []).append(rows[key])
    return figures


def _cell(c: dict | None) -> tuple[str, str]:
    if c is None:
        return "", "—"
    return _fmt(c["measured"]), ("holds" if c["holds"] else "**does not hold**")


def _statement(row: dict) -> str:
    c = row["published"] or row["optimum"]
    return c["statement"].replace("|", "/")


def _summary(figures) -> list[str]:
    groups = {"both": [], "optimum only": [], "published only": [], "neither": []}
    single = {"published": [0, 0], "optimum": [0, 0]}
    for rows in figures.values():
        for row in rows:
            p, o = row["published"], row["optimum"]
            if p is not None and o is not None:
                kind = ("both" if p["holds"] and o["holds"] else "optimum only" if o["holds"]
                        else "published only" if p["holds"] else "neither")
                groups[kind].append(f"`{row['key']}`")
            else:
                c, basis = (p, "published") if p is not None else (o, "optimum")
                single[basis][0] += bool(c["holds"]); single[basis][1] += 1
    lines = ["## Summary", "",
             "Claims judged on both bases (the paper's published settings and budget, and the optimum: "
             "certified dual optimum, primal trained until its stopping rule or its budget):", ""]
    for kind, names in groups.items():
        lines.append(f"- **{kind}** ({len(names)}): " + (", ".join(names) if names else "none"))
    lines += ["", f"Claims on one basis only: published {single['published'][0]} of {single['published'][1]} hold, "
              f"optimum {single['optimum'][0]} of {single['optimum'][1]} hold (tables below).", ""]
    return lines


def render_markdown(records: list[dict], scale: str) -> str:
    """The report: summary, then one table per figure with both bases side by side."""
    n = sum(len(r["claims"]) for r in records)
    held = sum(c["holds"] for r in records for c in r["claims"])
    figures = pair_claims(records)
    lines = [
        f"# Claims of Sahiner et al. (ICLR 2021), as measured at scale `{scale}`",
        "",
        f"{held} of {n} claim records hold at this scale. Each row is one claim of the paper (or ours), "
        "with the measured value and verdict on the **published** basis (the paper's settings: Adam at its "
        "learning rates, our epoch counts) and on the **optimum** basis (the sampled dual solved exactly with a "
        "certified gap, the primal trained from several seeds until its stopping rule holds or its budget ends: "
        "the statement says how many seeds met the rule). Tolerances, units and details are in `claims.json`. "
        "Generated by `python -m paper_utils.report.claims_report`.",
        "",
        *_summary(figures),
    ]
    for fig, rows in figures.items():
        nb = sorted({(r["published"] or r["optimum"])["notebook"] for r in rows})
        meta = (rows[0]["published"] or rows[0]["optimum"])
        lines += [f"## {fig}", "", f"Notebook(s) {', '.join(f'`{x}`' for x in nb)}; device {meta['device']}, "
                  f"{meta['date'][:10]}, code {meta['code_version']}.", "",
                  "| claim | statement | published | verdict | optimum | verdict | tolerance | units |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in rows:
            c = row["published"] or row["optimum"]
            pm, pv = _cell(row["published"])
            om, ov = _cell(row["optimum"])
            lines.append("| " + " | ".join([f"`{row['key']}`", _statement(row), pm, pv, om, ov, _fmt(c["tolerance"]),
                                             c.get("units", "").replace("|", "/")]) + " |")
        lines.append("")
    return "\n".join(lines)


def write_report(scale: str) -> tuple[int, int]:
    """Write ``claims.json`` and ``CLAIMS.md`` for ``scale``; returns (claims holding, claims)."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; expected one of {SCALES}")
    records = gather_claims(scale)
    folder = output_dir(scale)
    (folder / "claims.json").write_text(json.dumps(records, indent=2) + "\n")
    (folder / "CLAIMS.md").write_text(render_markdown(records, scale))
    n = sum(len(r["claims"]) for r in records)
    held = sum(c["holds"] for r in records for c in r["claims"])
    print(f"claims report: {held} of {n} claims hold at scale {scale} -> {folder / 'CLAIMS.md'}")
    return held, n


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Gather the notebooks' claim records into CLAIMS.md and claims.json.")
    parser.add_argument("--scale", default="cpu", choices=SCALES)
    write_report(parser.parse_args(argv).scale)


if __name__ == "__main__":
    main()
