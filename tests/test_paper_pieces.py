"""The paper-scale computation in pieces (paper_utils.paper_pieces): the list, one piece's run, its record
and access log, and the paper store it feeds."""

from __future__ import annotations

import json

import pytest
import torch

from paper_utils import paper_pieces
from paper_utils.pipeline import runtime
from paper_utils.pipeline import store as store_mod
from paper_utils.pipeline.cache import Cache


def test_the_pieces_cover_the_mnist_notebooks_within_about_90_minutes_each():
    pieces = paper_pieces.pieces()
    names = [p.name for p in pieces]
    assert len(names) == len(set(names))
    assert all(p.minutes <= 100 for p in pieces)  # "about 90 minutes" each: 11-generation measured 94
    covered = {nb[:2] for p in pieces for nb in p.notebooks}
    assert {"01", "02", "03", "04", "07", "08", "10", "11"} <= covered
    # at least 3 converged seeds at the headline sigma = 0.5, a certified solve at P = 8,000 per noise level
    assert sum(n.startswith("01-sigma0.5-seed") for n in names) >= 3
    assert {"01-sigma0.25-exact", "01-sigma0.5-exact", "01-sigma0.75-exact"} <= set(names)


def test_a_piece_logs_its_entries_and_records_its_time(roots, monkeypatch):
    def compute(device, progress):
        Cache().save("dual", "piece-entry", {"x": torch.tensor(1.0)})

    fake = paper_pieces.Piece("test-piece", ("01_mnist_duality_gap",), "a test", 1.0, compute)
    monkeypatch.setattr(paper_pieces, "pieces", lambda: [fake])
    record = paper_pieces.run_piece("test-piece", device="cpu", log=lambda *a: None)
    assert record["entries"] == ["dual/piece-entry.pt"] and record["computed"] == 1
    saved = json.loads(paper_pieces.records_path().read_text())
    assert saved[-1]["piece"] == "test-piece" and saved[-1]["seconds"] >= 0
    assert saved[-1]["cpu"] == runtime.cpu_model() != ""
    assert paper_pieces.status_rows()[0]["measured s"] == record["seconds"]
    assert paper_pieces.notebook_rows() == [{"notebook": "01_mnist_duality_gap", "pieces": ["test-piece"],
                                             "missing": [], "measured s": round(record["seconds"], 1)}]
    table = paper_pieces.markdown_table().splitlines()
    assert table[0].startswith("| piece |") and table[2].startswith("| `test-piece` | 01 | ") and len(table) == 3
    for nb in ("01_mnist_duality_gap", "02_mnist_examples"):
        (roots / "notebooks").mkdir(exist_ok=True)
        (roots / "notebooks" / f"{nb}.ipynb").write_text("{}")
    assert paper_pieces.gpu_order() == ["01", "02"]  # the piece's entry is only in the cache so far
    n, _ = store_mod.refresh("paper", log=lambda *a: None)
    assert n == 1 and (roots / "results" / "paper" / "store" / "dual" / "piece-entry.pt").exists()
    assert paper_pieces.in_store("test-piece")
    assert paper_pieces.gpu_order() == ["02", "01"]  # 02 has no piece: its entries are not in the store
    with pytest.raises(KeyError, match="no piece 'nope'"):
        paper_pieces.run_piece("nope")


def test_the_command_line_lists_names_for_a_job_array(capsys):
    assert paper_pieces.main(["list", "--names"]) == 0
    names = capsys.readouterr().out.split()
    assert names == [p.name for p in paper_pieces.pieces()]
    assert paper_pieces.main(["run", "nope"]) == 2


def test_cpu_model_reads_the_model_name_and_falls_back(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\n")
    assert runtime.cpu_model(info) == "Intel(R) Xeon(R) Processor"
    assert runtime.cpu_model(tmp_path / "missing") != ""  # platform.processor() or the architecture
