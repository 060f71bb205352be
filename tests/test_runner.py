"""The main job's runner (paper_utils.run_notebooks): device checks and timings, no real notebook."""

from __future__ import annotations

import json

import pytest
import torch

from paper_utils import run_notebooks


def _write_notebooks(folder, names):
    import nbformat

    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell("scale = 'smoke'\ndevice = 'cpu'", metadata={"tags": ["parameters"]}),
                    nbformat.v4.new_code_cell("x = 1")]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, folder / name)


def test_cuda_without_gpu_is_refused_once_before_any_notebook(tmp_path, monkeypatch, capsys):
    import papermill

    _write_notebooks(tmp_path / "notebooks", ["01_a.ipynb", "02_b.ipynb", "03_c.ipynb"])
    monkeypatch.setenv("PAPER_UTILS_ROOT", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    started = []
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: started.append(a))
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        run_notebooks.run("smoke", "cuda", log=lambda *a, **k: None)
    assert started == []
    code = run_notebooks.main(["--scale", "smoke", "--device", "cuda"])
    out = capsys.readouterr()
    assert code != 0 and started == []
    assert out.err.count("no CUDA GPU") == 1, out.err
    assert "FAILED" not in out.out
    assert not (tmp_path / "build" / "smoke" / "timings.json").exists()


def test_cuda_without_gpu_is_refused_by_the_command_line(tmp_path):
    """The same check through ``python -m`` in a fresh process with CUDA hidden."""
    import os
    import subprocess
    import sys

    _write_notebooks(tmp_path / "notebooks", ["01_a.ipynb"])
    env = dict(os.environ, PAPER_UTILS_ROOT=str(tmp_path), CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-m", "paper_utils.run_notebooks", "--scale", "smoke", "--device", "cuda"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("error: device='cuda'") == 1
    assert "01_a" not in proc.stdout


def test_timings_are_written_per_notebook(tmp_path, monkeypatch):
    import papermill

    _write_notebooks(tmp_path / "notebooks", ["01_a.ipynb", "02_b.ipynb"])
    monkeypatch.setenv("PAPER_UTILS_ROOT", str(tmp_path))
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: None)
    assert run_notebooks.run("smoke", "cpu", log=lambda *a, **k: None) == 0
    timings = json.loads((tmp_path / "build" / "smoke" / "timings.json").read_text())
    assert timings["resolved_device"] == "cpu" and timings["scale"] == "smoke"
    assert [t["notebook"] for t in timings["notebooks"]] == ["01_a", "02_b"]
    assert all(t["status"] == "ok" and t["seconds"] >= 0 for t in timings["notebooks"])
    assert timings["total_seconds"] >= 0


def test_a_selection_matching_no_notebook_is_refused(tmp_path, monkeypatch, capsys):
    """``--only 99`` runs nothing, rewrites nothing and exits 2, naming the notebooks there are."""
    import papermill

    _write_notebooks(tmp_path / "notebooks", ["01_a.ipynb", "02_b.ipynb"])
    monkeypatch.setenv("PAPER_UTILS_ROOT", str(tmp_path))
    started = []
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: started.append(a))
    assert run_notebooks.main(["--scale", "cpu", "--only", "99"]) == 2
    err = capsys.readouterr().err
    assert "--only 99 matches no notebook" in err and "01_a, 02_b" in err
    assert started == [] and not (tmp_path / "figures" / "CLAIMS.md").exists()
    assert [p.stem for p in run_notebooks.notebooks(only=["02"])] == ["02_b"]
    assert [p.stem for p in run_notebooks.notebooks(only=["02", "0", "01"])] == ["02_b", "01_a"]  # its order, once each


def test_cpu_runs_write_the_cleaned_notebook_back(tmp_path, monkeypatch):
    """At cpu scale the executed copy goes back to notebooks/ without papermill's injected cell and
    run metadata, outputs kept."""
    import nbformat
    import papermill

    _write_notebooks(tmp_path / "notebooks", ["01_a.ipynb"])
    monkeypatch.setenv("PAPER_UTILS_ROOT", str(tmp_path))

    def fake_execute(src, dst, **kwargs):
        nb = nbformat.read(src, as_version=4)
        nb.cells.insert(1, nbformat.v4.new_code_cell("scale = 'cpu'", metadata={"tags": ["injected-parameters"]}))
        nb.cells[-1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
        nb.cells[-1].metadata["papermill"] = {"duration": 1.0}
        nb.metadata["papermill"] = {"parameters": kwargs["parameters"]}
        nbformat.write(nb, dst)

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    assert run_notebooks.run("cpu", "cpu", log=lambda *a, **k: None) == 0
    nb = nbformat.read(tmp_path / "notebooks" / "01_a.ipynb", as_version=4)
    assert len(nb.cells) == 2 and "papermill" not in nb.metadata
    assert nb.cells[-1].outputs[0]["text"] == "1\n" and "papermill" not in nb.cells[-1].metadata
