"""The claims report: every claim recorded by the notebooks, with our measured number and a verdict.

    python -m paper_utils.report.claims_report --scale cpu

reads ``<output>/claims/*.json`` (written by :func:`paper_utils.report.claims.record_claims`) and writes
``<output>/claims.json`` (all records) and ``<output>/CLAIMS.md``, where ``<output>`` is ``figures/`` at
``cpu`` scale, ``figures/paper/`` at ``paper`` and ``build/smoke/figures/`` at ``smoke``. A claim that does
not hold is listed as such, never hidden.

``CLAIMS.md`` has one table per figure, the *published* verdict (the paper's settings and budget) and
the *optimum* verdict (certified dual, primal trained to its stopping rule or its budget) side by side,
and a summary at the top that counts the three kinds of record separately (:data:`~paper_utils.report.claims.KINDS`:
the paper's claims, our own questions about the paper, checks of our tools) and says which of the
paper's claims hold on both bases, only at the optimum, only at the published budget, or on neither. An optimum claim is paired with the published one whose name it repeats without the
``optimum.`` segment (``fig2.optimum.zero_gap.gaussian0.5.obj`` <-> ``fig2.zero_gap.gaussian0.5.obj``);
claims with no partner get a row of their own. A record without a ``basis`` field counts as
``published``, one without a ``kind`` field as ``paper``.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import OrderedDict

from paper_utils.report.claims import KIND_LABELS, claim_kind, gather_claims, tally_sentence
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
    """Rows per figure: ``{"key", "kind", "published", "optimum"}``, each basis a claim dict (with its
    record's ``notebook``, ``device``, ``date``, ``code_version``) or ``None``. Only claims of the same
    kind pair (a record without ``kind`` is ``"paper"``)."""
    rows: dict[tuple[str, str], dict] = {}
    for rec in records:
        for c in rec["claims"]:
            c = {**c, "notebook": rec["notebook"], "device": rec["device"], "date": rec["date"],
                 "code_version": rec["code_version"]}
            basis = c.get("basis", "published")
            key, kind = _pair_key(c["name"]), claim_kind(c)
            row = rows.setdefault((key, kind), {"key": key, "kind": kind, "published": None, "optimum": None})
            row[basis] = c
    figures: "OrderedDict[str, list[dict]]" = OrderedDict()
    for key, kind in sorted(rows, key=lambda k: (_figure_order(_figure(k[0])), k[0], k[1])):
        figures.setdefault(_figure(key), []).append(rows[key, kind])
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
    other = {"ours": [], "check": []}
    for rows in figures.values():
        for row in rows:
            p, o = row["published"], row["optimum"]
            if row.get("kind", "paper") != "paper":
                for c in (p, o):
                    if c is not None:
                        other[row["kind"]].append(f"`{c['name']}` " + ("holds" if c["holds"] else "**does not hold**"))
                continue
            if p is not None and o is not None:
                kind = ("both" if p["holds"] and o["holds"] else "optimum only" if o["holds"]
                        else "published only" if p["holds"] else "neither")
                groups[kind].append(f"`{row['key']}`")
            else:
                c, basis = (p, "published") if p is not None else (o, "optimum")
                single[basis][0] += bool(c["holds"]); single[basis][1] += 1
    lines = ["## Summary", "",
             "The paper's claims judged on both bases (the paper's published settings and budget, and the optimum: "
             "certified dual optimum, primal trained until its stopping rule or its budget):", ""]
    for kind, names in groups.items():
        lines.append(f"- **{kind}** ({len(names)}): " + (", ".join(names) if names else "none"))
    lines += ["", f"The paper's claims on one basis only: published {single['published'][0]} of {single['published'][1]} "
              f"hold, optimum {single['optimum'][0]} of {single['optimum'][1]} hold (tables below).", ""]
    for kind, items in other.items():
        lines.append(f"{KIND_LABELS[kind][0].upper() + KIND_LABELS[kind][1:]} ({len(items)}): "
                     + (", ".join(items) if items else "none") + ".")
        lines.append("")
    return lines


def render_markdown(records: list[dict], scale: str) -> str:
    """The report: summary, then one table per figure with both bases side by side."""
    figures = pair_claims(records)
    tally = tally_sentence([c for r in records for c in r["claims"]], all_kinds=True)
    lines = [
        f"# Claims of Sahiner et al. (ICLR 2021), as measured at scale `{scale}`",
        "",
        f"At this scale, {tally}. The three kinds are counted apart: *paper* records test a claim the paper "
        "makes, *ours* our own questions about the paper, *check* our solver and implementation (they hold by "
        "construction when the code is right). Each row is one claim, of the kind in its column, "
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
                  "| claim | kind | statement | published | verdict | optimum | verdict | tolerance | units |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for row in rows:
            c = row["published"] or row["optimum"]
            pm, pv = _cell(row["published"])
            om, ov = _cell(row["optimum"])
            lines.append("| " + " | ".join([f"`{row['key']}`", row.get("kind", "paper"), _statement(row), pm, pv, om, ov,
                                             _fmt(c["tolerance"]),
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
    print(f"claims report at scale {scale}: {tally_sentence([c for r in records for c in r['claims']], all_kinds=True)} "
          f"-> {folder / 'CLAIMS.md'}")
    return held, n


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Gather the notebooks' claim records into CLAIMS.md and claims.json.")
    parser.add_argument("--scale", default="cpu", choices=SCALES)
    write_report(parser.parse_args(argv).scale)


if __name__ == "__main__":
    main()
