"""Notebook tables: Markdown rendering, the verdict table's pairing of the two bases."""

from __future__ import annotations

from paper_utils.report import tables
from paper_utils.report.claims import Claim


def test_markdown_table_formats_numbers_and_escapes_pipes():
    text = tables.markdown_table([{"a": 0.123456, "b": 12345, "c": "x|y"}, {"a": float("nan"), "b": None}], digits=3)
    assert text.splitlines() == ["| a | b | c |", "|---|---|---|", "| 0.123 | 12,345 | x/y |", "| nan | n/a | n/a |"]
    assert tables.markdown_table([]) == "*(no rows)*"


def test_verdicts_pair_the_published_and_optimum_claims():
    claims = [Claim("fig2.zero_gap.s0.5.obj", "objectives coincide", 0.01, 0.05, True, "rel"),
              Claim("fig2.optimum.zero_gap.s0.5.obj", "objectives coincide at the optimum", 0.3, 0.05, False, "rel",
                    basis="optimum"),
              Claim("solver.certified_gap", "certified", 1e-7, 1e-4, True, basis="optimum", kind="check")]
    rows = tables.verdict_rows(claims)
    assert [r["claim"] for r in rows] == ["`fig2.zero_gap.s0.5.obj`", "`solver.certified_gap`"]
    assert rows[0]["published"] == "0.01: holds" and rows[0]["optimum"] == "0.3: **does not hold**"
    assert rows[1]["published"] == "—"
    assert [r["kind"] for r in rows] == ["paper", "check"]
    assert tables.verdict_markdown(claims).startswith(
        "**Verdicts**: the paper's claims: 1 of 2 records hold; checks of our tools: 1 of 1 record holds.")


def test_show_functions_print_outside_a_notebook_and_return_nothing(capsys):
    """A returned value would print a second time as the cell's result (nbval compares both)."""
    assert tables.show_table([{"a": 1}], title="T") is None
    assert tables.show_verdicts([Claim("x.y", "s", 1.0, 2.0, True)]) is None
    assert tables.show_run("01_x", "smoke", "cpu", {"n": 3}) is None
    out = capsys.readouterr().out
    assert "**T**" in out and "| a |" in out and "scale **`smoke`**" in out and "Smoke scale" in out
