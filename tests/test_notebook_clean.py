"""Stored notebooks as a reader sees them (paper_utils.pipeline.notebook_clean, run_notebooks' write-back,
the run-status cell): progress bars as final text, one stream per name, nbval markers as tags."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output
from nbval.plugin import find_comment_markers, find_metadata_tags

from paper_utils import run_notebooks
from paper_utils.pipeline import notebook_clean
from paper_utils.report import run_status

ROOT = Path(__file__).resolve().parent.parent
#: the committed notebooks: the cpu runs in notebooks/, the paper-scale runs in figures/paper/notebooks/
NOTEBOOKS = sorted(ROOT.glob("notebooks/[0-9][0-9]_*.ipynb")) + sorted(ROOT.glob("figures/paper/notebooks/[0-9][0-9]_*.ipynb"))
WIDGET_VIEW = notebook_clean.WIDGET_VIEW

#: what tqdm's text bar writes over one run of 3 iterations (leave=True), flushed frame by frame
FRAMES = ["\rsweep:   0%|          | 0/3 [00:00<?, ?it/s]",
          "\rsweep:  33%|███▎      | 1/3 [00:01<00:02,  1.02s/it]",
          "\rsweep:  67%|██████▋   | 2/3 [00:02<00:01,  1.01s/it]",
          "\rsweep: 100%|██████████| 3/3 [00:03<00:00,  1.00s/it]",
          "\rsweep: 100%|██████████| 3/3 [00:03<00:00,  1.00s/it]\n"]
FINAL = "sweep: 100%|██████████| 3/3 [00:03<00:00,  1.00s/it]\n"
#: a bar with leave=False: its frames, then the spaces and carriage return that clear it
CLEARED = ["\rprimal:   0%|          | 0/2 [00:00<?, ?it/s]", "\rprimal:  50%|█████     | 1/2 [00:00<00:00]",
           "\r" + " " * 44 + "\r"]


def _model(name: str, **state) -> dict:
    return {"model_module": "@jupyter-widgets/controls", "model_module_version": "2.0.0", "model_name": name,
            "state": state}


def _tqdm_widget(states: dict, key: str, left: str, value: float, total: float, right: str, *,
                 hidden: bool = False, bar_style: str = "success") -> dict:
    """Saved state of a tqdm.notebook bar (HBox of HTML, FloatProgress, HTML) and its display output."""
    fig = lambda s: s.replace(" ", "\u2007").replace("<", "&lt;")  # noqa: E731 - as tqdm.notebook writes it
    states[f"{key}-l"] = _model("HTMLModel", value=fig(left))
    states[f"{key}-p"] = _model("FloatProgressModel", value=value, max=total, bar_style=bar_style)
    states[f"{key}-r"] = _model("HTMLModel", value=fig(right))
    states[f"{key}-layout"] = _model("LayoutModel", visibility="hidden" if hidden else None)
    states[key] = _model("HBoxModel", children=[f"IPY_MODEL_{key}-{c}" for c in "lpr"],
                         layout=f"IPY_MODEL_{key}-layout")
    first_frame = f"{left.split(':')[0]}:   0%|          | 0/{int(total)} [00:00<?, ?it/s]"
    return new_output("display_data", data={WIDGET_VIEW: {"model_id": key, "version_major": 2, "version_minor": 0},
                                            "text/plain": first_frame})


def _executed_notebook() -> nbformat.NotebookNode:
    """What papermill leaves after a run of a notebook with tqdm bars in both forms (text and widget)."""
    states: dict = {}
    nb = new_notebook()
    nb.cells = [
        new_code_cell("scale = 'cpu'", metadata={"tags": ["parameters"]}, execution_count=1),
        new_code_cell("scale = 'cpu'\n", metadata={"tags": ["injected-parameters"], "papermill": {}}, execution_count=2),
        new_code_cell("# NBVAL_IGNORE_OUTPUT\nresult = run(scale)", execution_count=3, outputs=[
            *[new_output("stream", name="stderr", text=t) for t in FRAMES],
            new_output("stream", name="stdout", text="training 3 models\n"),
            *[new_output("stream", name="stderr", text=t) for t in CLEARED],
            _tqdm_widget(states, "done", "sweep: 100%", 12, 12, " 12/12 [00:37<00:00,  3.08s/it]"),
            _tqdm_widget(states, "gone", "primal: 100%", 5, 5, " 5/5 [00:01<00:00]", hidden=True, bar_style=""),
            new_output("display_data", data={WIDGET_VIEW: {"model_id": "lost"}, "text/plain": "x:   0%|  | 0/4"}),
        ], metadata={"papermill": {"duration": 37.0}, "execution": {"iopub.status.idle": "2026"}}),
        new_code_cell("  # NBVAL_CHECK_OUTPUT\ntables.show_verdicts(result.claims);", execution_count=4,
                      outputs=[new_output("display_data", data={"text/markdown": "**Verdicts**", "text/plain": "<M>"})]),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["papermill"] = {"parameters": {"scale": "cpu"}}
    nb.metadata["widgets"] = {notebook_clean.WIDGET_STATE: {"state": states, "version_major": 2, "version_minor": 0}}
    return nb


def test_an_executed_notebook_is_stored_with_final_bars_one_stream_and_tags(tmp_path):
    src, dst = tmp_path / "executed.ipynb", tmp_path / "stored.ipynb"
    nbformat.write(_executed_notebook(), src)
    assert run_notebooks.clean_executed(src, dst) == []
    nb = nbformat.read(dst, as_version=4)
    nbformat.validate(nb)
    assert [c.execution_count for c in nb.cells] == [1, 3, 4]  # injected cell gone, counts kept (nbval needs them)
    run_cell, verdict_cell = nb.cells[1], nb.cells[2]
    kinds = [(o.output_type, o.get("name")) for o in run_cell.outputs]
    assert kinds == [("stream", "stderr"), ("stream", "stdout"), ("display_data", None)], kinds
    assert run_cell.outputs[0].text == FINAL  # the last frame only; the cleared bar leaves nothing
    assert run_cell.outputs[2].data == {"text/plain": "sweep: 100%|██████████| 12/12 [00:37<00:00,  3.08s/it]"}
    # nbval markers: NBVAL_CHECK_OUTPUT stays a comment opening its cell (readers see what is compared),
    # the others become tags; nbval reads both as the same options
    assert run_cell.source == "result = run(scale)" and run_cell.metadata.tags == ["nbval-ignore-output"]
    assert verdict_cell.source == "# NBVAL_CHECK_OUTPUT\ntables.show_verdicts(result.claims);"
    assert "tags" not in verdict_cell.metadata
    assert dict(find_comment_markers(verdict_cell.source)) == {"check": True}
    assert dict(find_metadata_tags(run_cell.metadata)) == {"check": False}
    assert not dict(find_comment_markers(run_cell.source))
    assert nb.cells[0].metadata.tags == ["parameters"]
    # run metadata and the widget state gone, the project kernel named
    assert "papermill" not in nb.metadata and "widgets" not in nb.metadata
    assert not any(k in c.metadata for c in nb.cells for k in ("papermill", "execution"))
    assert nb.metadata.kernelspec == notebook_clean.KERNELSPEC
    # a second pass changes nothing
    again = notebook_clean.clean_notebook(nbformat.read(dst, as_version=4))
    assert nbformat.writes(again).strip() == dst.read_text().strip()


def test_an_injected_scale_is_kept_in_the_parameters_cell_and_the_device_is_not():
    nb = new_notebook(cells=[
        new_code_cell('scale = "cpu"\nseed = 0\ndevice = "auto"', metadata={"tags": ["parameters"]}, execution_count=1),
        new_code_cell('# Parameters\nscale = "paper"\ndevice = "cuda"\n',
                      metadata={"tags": ["injected-parameters"]}, execution_count=2),
        new_code_cell("result = run(scale)", execution_count=3)])
    notebook_clean.clean_notebook(nb)
    assert [c.source for c in nb.cells] == ['scale = "paper"\nseed = 0\ndevice = "auto"', "result = run(scale)"]


def test_other_widgets_and_their_state_stay():
    nb = new_notebook()
    states = {"s": _model("IntSliderModel", value=3)}
    view = new_output("display_data", data={WIDGET_VIEW: {"model_id": "s"}, "text/plain": "IntSlider(value=3)"})
    nb.cells = [new_code_cell("slider", execution_count=1, outputs=[view])]
    nb.metadata["widgets"] = {notebook_clean.WIDGET_STATE: {"state": states}}
    notebook_clean.clean_notebook(nb)
    assert WIDGET_VIEW in nb.cells[0].outputs[0].data and "widgets" in nb.metadata


def test_a_bar_without_total_keeps_its_counter():
    states: dict = {}
    out = _tqdm_widget(states, "n", "", 7, 1, "7it [00:02,  3.50it/s]")
    assert notebook_clean.tqdm_bar_text(out.data[WIDGET_VIEW]["model_id"], states) == "7it [00:02,  3.50it/s]"


def test_the_writeback_runs_the_project_kernel_with_coalesced_streams_and_a_start_time(tmp_path, monkeypatch):
    import papermill

    folder = tmp_path / "notebooks"
    folder.mkdir()
    nbformat.write(_executed_notebook(), folder / "01_a.ipynb")
    monkeypatch.setenv("PAPER_UTILS_ROOT", str(tmp_path))
    monkeypatch.delenv(run_status.RUN_STARTED_ENV, raising=False)
    monkeypatch.setattr(run_notebooks, "ensure_kernel", lambda log=print: None)
    calls = []

    def fake_execute(src, dst, **kwargs):
        calls.append((kwargs, float(os.environ[run_status.RUN_STARTED_ENV])))
        Path(dst).write_text(Path(src).read_text())

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    before = time.time()
    assert run_notebooks.run("cpu", "cpu", log=lambda *a, **k: None) == 0
    (kwargs, started), = calls
    assert kwargs["kernel_name"] == notebook_clean.KERNEL_NAME and kwargs["coalesce_streams"] is True
    assert before <= started <= time.time()
    assert run_status.RUN_STARTED_ENV not in os.environ  # restored after the run
    stored = nbformat.read(folder / "01_a.ipynb", as_version=4)
    assert stored.cells[1].outputs[0].text == FINAL and "widgets" not in stored.metadata


def test_the_project_kernel_is_registered_when_missing_or_foreign(monkeypatch):
    from ipykernel import kernelspec as ipk
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    registered = []
    specs = [None]

    def get_kernel_spec(self, name):
        assert name == notebook_clean.KERNEL_NAME
        if specs[0] is None:
            raise NoSuchKernel(name)
        return type("Spec", (), {"argv": [specs[0], "-m", "ipykernel_launcher"]})()

    def install(**kwargs):
        registered.append(kwargs)
        specs[0] = sys.executable
        return "/somewhere"

    monkeypatch.setattr(KernelSpecManager, "get_kernel_spec", get_kernel_spec)
    monkeypatch.setattr(ipk, "install", install)
    run_notebooks.ensure_kernel(log=lambda *a: None)
    assert registered == [{"kernel_name": "paper-utils", "display_name": "Python (paper_utils)", "prefix": sys.prefix}]
    run_notebooks.ensure_kernel(log=lambda *a: None)  # found, this interpreter: nothing to do
    assert len(registered) == 1
    monkeypatch.setattr(ipk, "install", lambda **k: "/somewhere")
    specs[0] = "/elsewhere/bin/python"
    with pytest.raises(RuntimeError, match="another|not this environment"):
        run_notebooks.ensure_kernel(log=lambda *a: None)


def test_the_status_cell_gives_the_seconds_and_where_the_results_came_from(monkeypatch):
    monkeypatch.setenv(run_status.RUN_STARTED_ENV, repr(1000.0))
    text = run_status.status_markdown("01_x", now=1412.4, sources={"store": 12, "cache": 0, "computed": 0})
    assert "412 s from its start by `run_notebooks`" in text and "1970-01-01 00:23 UTC" in text
    assert "Expensive results: loaded (12 cache entries from the results store, 0 from `build/cache`, 0 computed" in text
    assert run_status.results_origin({"store": 0, "cache": 1, "computed": 2}).startswith("partly computed (")
    assert run_status.results_origin({"store": 0, "cache": 0, "computed": 2}).startswith("computed (")
    assert run_status.results_origin({}).startswith("no cache entries (")
    monkeypatch.delenv(run_status.RUN_STARTED_ENV)
    started, origin = run_status.run_started()
    assert started <= time.time() and "this kernel" in origin  # this process's start


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[str(p.relative_to(ROOT).with_suffix("")) for p in NOTEBOOKS])
def test_committed_notebooks_are_stored_clean(path):
    """What the hosting page renders: no stale 0% bars or per-frame streams, no NBVAL comments but the
    ``# NBVAL_CHECK_OUTPUT`` opening each compared table's cell (at least one per notebook), the
    project kernel, and a closing run-status cell that nbval does not compare; the parameters cell
    names the scale the stored outputs ran at (nbval re-executes at it)."""
    nb = nbformat.read(path, as_version=4)
    scale = "paper" if "figures" in path.relative_to(ROOT).parts else "cpu"
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert f'scale = "{scale}"' in params.source.splitlines()
    assert nb.metadata.kernelspec["name"] == notebook_clean.KERNEL_NAME
    assert "papermill" not in nb.metadata and "widgets" not in nb.metadata
    checked = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        markers = dict(find_comment_markers(cell.source))
        assert markers in ({}, {"check": True}), cell.source
        if markers:
            assert cell.source.startswith("# NBVAL_CHECK_OUTPUT\n") and cell.outputs, cell.source
            checked += 1
        streams = [o.name for o in cell.outputs if o.output_type == "stream"]
        assert len(streams) == len(set(streams)), f"{len(streams)} stream outputs in one cell"
        for out in cell.outputs:
            assert WIDGET_VIEW not in out.get("data", {})
            text = out.get("text", "") + out.get("data", {}).get("text/plain", "")
            assert "\r" not in text and " 0%|" not in text
    assert checked >= 1, "no output of this notebook is compared by nbval"
    last = nb.cells[-1]
    assert last.source == f'run_status.show("{path.stem}")'
    assert "nbval-ignore-output" in last.metadata.get("tags", [])
