"""`make compare` (paper_utils.report.compare): a fresh claims report against the committed one."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest

from paper_utils.pipeline.paths import project_root
from paper_utils.report.compare import compare_claims, main, render, value_moved


def _claim(name, measured, holds, tolerance=0.05, basis="published"):
    return {"name": name, "statement": f"statement of {name}", "measured": measured, "tolerance": tolerance,
            "holds": holds, "units": "relative gap", "details": {}, "basis": basis, "kind": "paper"}


def _report():
    return [
        {"notebook": "01_a", "scale": "cpu", "device": "cpu", "date": "2026-01-01T00:00:00Z", "code_version": "aaaa",
         "claims": [_claim("fig2.gap", 0.02, True), _claim("fig2.loss", 0.10, False), _claim("fig2.count", 2000, True)]},
        {"notebook": "02_b", "scale": "cpu", "device": "cpu", "date": "2026-01-01T00:00:00Z", "code_version": "aaaa",
         "claims": [_claim("fig3.psnr", 25.0, True), _claim("fig3.none", None, False), _claim("fig3.inf", "inf", False)]},
    ]


def _rerun(report):
    """The same claims after a rerun: new date and code version, nothing else."""
    new = copy.deepcopy(report)
    for rec in new:
        rec["date"], rec["code_version"] = "2026-02-02T00:00:00Z", "bbbb-dirty"
    return new


def _claim_in(report, name):
    return next(c for rec in report for c in rec["claims"] if c["name"] == name)


def _write(path, report):
    path.write_text(json.dumps(report))
    return path


def test_unchanged_report_has_no_change(tmp_path, capsys):
    old = _report()
    new = _rerun(old)
    _claim_in(new, "fig3.psnr")["measured"] = 25.0 * (1 + 5e-4)  # within the default rtol 1e-3
    result = compare_claims(old, new)
    assert result.changes == [] and not result.flipped and result.n_compared == 6
    code = main(["--committed", str(_write(tmp_path / "old.json", old)), "--fresh", str(_write(tmp_path / "new.json", new))])
    out = capsys.readouterr().out
    assert code == 0
    assert "unchanged (2 notebooks): 01_a, 02_b" in out and "0 flipped, 0 moved" in out and "no verdict flipped" in out


def test_moved_claim_is_reported_and_does_not_fail(tmp_path, capsys):
    old = _report()
    new = _rerun(old)
    _claim_in(new, "fig2.loss")["measured"] = 0.11  # +10%, same verdict
    result = compare_claims(old, new)
    assert [(c.what, c.name, c.notebook) for c in result.changes] == [("moved", "fig2.loss", "01_a")]
    assert compare_claims(old, new, rtol=0.2).changes == []  # within a looser tolerance
    code = main(["--committed", str(_write(tmp_path / "old.json", old)), "--fresh", str(_write(tmp_path / "new.json", new))])
    out = capsys.readouterr().out
    assert code == 0
    assert "01_a (code aaaa -> bbbb-dirty" in out
    assert "moved    fig2.loss [published]: does not hold, measured 0.1 -> 0.11 (+10.00%)" in out
    assert "unchanged (1 notebook): 02_b" in out and "0 flipped, 1 moved" in out


def test_flipped_claim_fails(tmp_path, capsys):
    old = _report()
    new = _rerun(old)
    flipped = _claim_in(new, "fig2.gap")
    flipped["measured"], flipped["holds"] = 0.08, False
    result = compare_claims(old, new)
    assert [(c.what, c.name) for c in result.changes] == [("flipped", "fig2.gap")] and result.flipped
    code = main(["--committed", str(_write(tmp_path / "old.json", old)), "--fresh", str(_write(tmp_path / "new.json", new))])
    out = capsys.readouterr().out
    assert code == 1
    assert "FLIPPED  fig2.gap [published]: holds -> does not hold, measured 0.02 -> 0.08 (+300.00%)" in out
    assert "1 flipped" in out and "a verdict FLIPPED" in out


def test_flip_without_a_moved_value_still_counts():
    old = _report()
    new = _rerun(old)
    _claim_in(new, "fig3.none")["holds"] = True
    assert [(c.what, c.name) for c in compare_claims(old, new).changes] == [("flipped", "fig3.none")]


def test_added_removed_and_tolerance_changes():
    old = _report()
    new = _rerun(old)
    new[0]["claims"] = [c for c in new[0]["claims"] if c["name"] != "fig2.count"]
    new[1]["claims"].append(_claim("fig3.new", 1.5, True, basis="optimum"))
    _claim_in(new, "fig3.psnr")["tolerance"] = 0.1
    result = compare_claims(old, new)
    assert sorted((c.what, c.name) for c in result.changes) == [
        ("added", "fig3.new"), ("moved", "fig3.psnr"), ("removed", "fig2.count")]
    text = render(result, old_label="old", new_label="new")
    assert "removed  fig2.count [published]: was holds, measured 2000" in text
    assert "added    fig3.new [optimum]: holds, measured 1.5" in text
    assert "tolerance 0.05 -> 0.1" in text
    assert "0 flipped, 1 moved (rtol 0.001); 1 added, 1 removed" in text


def test_notebook_missing_from_one_side():
    old = _report()
    new = _rerun(old)[:1]
    result = compare_claims(old, new)
    assert sorted(c.name for c in result.of("removed")) == ["fig3.inf", "fig3.none", "fig3.psnr"]
    assert "02_b (only in the committed report):" in render(result, old_label="old", new_label="new")


@pytest.mark.parametrize("old, new, moved", [
    (1.0, 1.0005, False), (1.0, 1.002, True), (0.0, 0.0, False), (0.0, 1e-12, True), (-1.0, -1.0009, False),
    (None, None, False), (None, 0.0, True), ("nan", "nan", False), ("nan", 1.0, True), ("inf", "inf", False),
    ("inf", "-inf", True), (2000, 2000, False), (2000, 1000, True)])
def test_value_moved(old, new, moved):
    assert value_moved(old, new, 1e-3) is moved


def test_duplicate_claim_names_are_refused():
    old = _report()
    new = _rerun(old)
    new[1]["claims"].append(_claim("fig2.gap", 0.02, True))
    with pytest.raises(ValueError, match="appears twice"):
        compare_claims(old, new)


def test_unreadable_report_exits_2(tmp_path, capsys):
    assert main(["--fresh", str(tmp_path / "missing.json"), "--committed", str(tmp_path / "missing.json")]) == 2
    assert "error:" in capsys.readouterr().err


def test_command_against_git_head(tmp_path):
    """The command's default path (`git show HEAD:figures/claims.json`), fed HEAD's own report as the fresh one:
    nothing flips or moves. (`make compare` itself compares the working tree's report, which a run may change.)"""
    root = project_root()
    shown = subprocess.run(["git", "show", "HEAD:figures/claims.json"], cwd=root, capture_output=True, text=True)
    if shown.returncode:
        pytest.skip("not a git checkout with a committed figures/claims.json")
    fresh = tmp_path / "claims.json"
    fresh.write_text(shown.stdout)
    out = subprocess.run([sys.executable, "-m", "paper_utils.report.compare", "--fresh", str(fresh)],
                         cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "HEAD:figures/claims.json (committed)" in out.stdout
    assert " 0 flipped, 0 moved (rtol 0.001); 0 added, 0 removed" in out.stdout
