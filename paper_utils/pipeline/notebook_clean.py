"""Executed notebooks as a reader should see them, on GitHub or in JupyterLab, without a live kernel.

:func:`clean_notebook` is what ``run_notebooks`` applies before writing a ``cpu`` run back to
``notebooks/`` (and what ``python -m paper_utils.pipeline.notebook_clean notebooks/*.ipynb`` applies in
place to committed notebooks):

- **progress bars**: a tqdm widget output is replaced by its final state as text
  (``sweep: 100%|██████████| 12/12 [00:37<00:00,  3.08s/it]``), read from the widget state nbclient
  saves in the notebook (the output's own text fallback is the bar's *first* frame, ``0%``); a bar
  closed without ``leave`` (hidden in the live run) or one without saved state is dropped. The
  widget state itself then goes.
- **streams**: a cell's stream outputs are merged per name and carriage-return frames collapsed to
  the last one (nbval's ``coalesce_streams``, the same rule nbclient applies at execution time with
  ``coalesce_streams=True``); what a bar closed without ``leave`` leaves behind (spaces and ``\\r``)
  is removed.
- **nbval markers**: ``# NBVAL_CHECK_OUTPUT`` stays a comment opening its cell, so a reader sees which
  outputs ``make test`` compares; the other markers (``# NBVAL_IGNORE_OUTPUT``, ...) become the
  equivalent cell tags (``nbval-ignore-output``, ...; nbval reads both forms), so readers do not see them.
- **run metadata**: papermill's injected-parameters cell and run metadata go (nbstripout's
  ``strip_output``, outputs, counts and cell ids kept: nbval needs the counts). The injected values of
  :data:`CARRIED_PARAMETERS` are first written into the ``parameters`` cell, so that a notebook run at
  ``paper`` scale says so and nbval re-executes it at that scale (``device`` is not carried: a GPU run's
  notebook is re-executed where nbval runs).
- **kernel**: the metadata name the project kernel :data:`KERNEL_NAME`.

Interactive runs are untouched: tqdm still draws live widgets in Jupyter.
"""

from __future__ import annotations

import argparse
import html
import re
import sys
from pathlib import Path

#: the project's Jupyter kernel (``make venv`` registers it into ``.venv``; run_notebooks if missing)
KERNEL_NAME = "paper-utils"
KERNEL_DISPLAY_NAME = "Python (paper_utils)"
KERNELSPEC = {"name": KERNEL_NAME, "display_name": KERNEL_DISPLAY_NAME, "language": "python"}

#: metadata papermill, nbclient and the kernel leave behind that says nothing about the results
#: (nbstripout ``--extra-keys`` syntax); ``metadata.widgets`` only once no widget output remains
RUN_METADATA_KEYS = ("metadata.papermill", "cell.metadata.papermill", "cell.metadata.execution")
WIDGET_STATE_KEY = "metadata.widgets"

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"

#: what tqdm leaves when it clears a bar closed without ``leave``: spaces and a carriage return
_CLEARED_BAR = re.compile(r"(?:^|(?<=\n))[ ]*\r$")


#: nbval markers kept as a visible first comment line: a reader sees which outputs every ``make test``
#: compares (the verdict and results tables); the other markers only say what nbval skips
VISIBLE_MARKERS = ("NBVAL_CHECK_OUTPUT",)


def _marker_tag(marker: str) -> str:
    return marker.lower().replace("_", "-")


def nbval_markers(nb) -> int:
    """Put every nbval marker of the code cells into one form per marker (nbval reads both forms as the
    same option, its own ``comment_markers`` table):

    - :data:`VISIBLE_MARKERS` as a comment line opening the cell (``# NBVAL_CHECK_OUTPUT``), moved there
      from a cell tag or from a later line;
    - every other marker (``# NBVAL_IGNORE_OUTPUT``, ...) as its cell tag, the comment line removed.

    Returns the number of cells changed."""
    from nbval.plugin import comment_markers

    changed = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        before = (cell.source, list(cell.metadata.get("tags", [])))
        lines = cell.source.splitlines()
        tags = list(cell.metadata.get("tags", []))
        kept, visible = [], []
        for line in lines:
            stripped = line.strip()
            marker = stripped.lstrip("#").strip() if stripped.startswith("#") else ""
            if marker not in comment_markers:
                kept.append(line)
            elif marker in VISIBLE_MARKERS:
                visible.append(marker)
            else:
                if _marker_tag(marker) not in tags:
                    tags.append(_marker_tag(marker))
        for marker in VISIBLE_MARKERS:
            if _marker_tag(marker) in tags:
                tags.remove(_marker_tag(marker))
                visible.append(marker)
        if len(kept) == len(lines) and not visible:
            continue
        visible = list(dict.fromkeys(visible))
        cell.source = "\n".join([f"# {m}" for m in visible] + kept)
        if tags:
            cell.metadata["tags"] = tags
        else:
            cell.metadata.pop("tags", None)
        changed += (cell.source, tags) != before
    return changed


def _widget_states(nb) -> dict:
    return nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})


def tqdm_bar_text(model_id: str, states: dict) -> str | None:
    """The final text of the tqdm widget ``model_id`` from the saved widget ``states``, as tqdm's text
    bar writes it; ``None`` for a bar hidden when it closed (``leave=False``) or without saved state.
    Raises ``ValueError`` for a widget that is not a tqdm bar."""
    from tqdm.std import Bar

    box = states.get(model_id)
    if box is None:
        return None
    children = [states.get(c.removeprefix("IPY_MODEL_"), {}) for c in box["state"].get("children", [])]
    names = [c.get("model_name") for c in children]
    if box.get("model_name") != "HBoxModel" or len(names) != 3 or names[0] != "HTMLModel" \
            or names[2] != "HTMLModel" or names[1] not in ("FloatProgressModel", "IntProgressModel"):
        raise ValueError(f"widget {model_id} is not a tqdm bar")
    layout = states.get(str(box["state"].get("layout", "")).removeprefix("IPY_MODEL_"), {})
    if layout.get("state", {}).get("visibility") == "hidden":
        return None
    left, right = (html.unescape(c["state"].get("value", "")).replace("\u2007", " ") for c in children[::2])
    progress = children[1]["state"]
    if not left:  # no total: tqdm shows no bar, only the counter
        return right
    frac = min(max(progress.get("value", 0) / (progress.get("max") or 1), 0.0), 1.0)
    return f"{left}|{format(Bar(frac, default_len=10), '')}|{right}"


def tqdm_widgets_to_text(nb) -> int:
    """Replace each tqdm widget output by a ``text/plain`` output with its final state (see
    :func:`tqdm_bar_text`), or drop it; other widgets stay. Returns the number of widget outputs replaced
    or dropped."""
    states, changed = _widget_states(nb), 0
    for cell in nb.cells:
        outputs = []
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get(WIDGET_VIEW) if out.get("output_type") == "display_data" else None
            if view is None:
                outputs.append(out)
                continue
            try:
                text = tqdm_bar_text(view.get("model_id", ""), states)
            except ValueError:  # not a tqdm bar: leave it (and its state) alone
                outputs.append(out)
                continue
            changed += 1
            if text is not None:
                out.data = {"text/plain": text}
                outputs.append(out)
        if "outputs" in cell:
            cell.outputs = outputs
    return changed


def coalesce_streams(nb) -> None:
    """Merge each cell's stream outputs per name and collapse carriage-return frames to the last one
    (nbval's ``coalesce_streams``, which nbval also applies before it compares), then remove what bars
    closed without ``leave`` leave behind and the streams left empty."""
    from nbval.plugin import coalesce_streams as nbval_coalesce

    for cell in nb.cells:
        if not cell.get("outputs"):
            continue
        outputs = []
        for out in nbval_coalesce(cell.outputs):
            if out.output_type == "stream":
                out.text = _CLEARED_BAR.sub("", out.text)
                if not out.text:
                    continue
            outputs.append(out)
        cell.outputs = outputs


#: the papermill parameters a cleaned notebook keeps as they were injected (the others keep their defaults)
CARRIED_PARAMETERS = ("scale",)


def carry_parameters(nb, names=CARRIED_PARAMETERS) -> None:
    """Write the injected value of each of ``names`` (a line ``name = value`` of the ``injected-parameters``
    cell) over its line in the ``parameters`` cell."""
    tagged = {tag: cell for cell in nb.cells for tag in cell.get("metadata", {}).get("tags", [])}
    injected, params = tagged.get("injected-parameters"), tagged.get("parameters")
    if injected is None or params is None:
        return
    source = params.source
    for name in names:
        found = re.search(rf"^{name}\s*=.*$", injected.source, flags=re.M)
        if found:
            source = re.sub(rf"^{name}\s*=.*$", lambda _: found.group(0).strip(), source, flags=re.M)
    params.source = source


def has_widget_outputs(nb) -> bool:
    return any(WIDGET_VIEW in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))


def clean_notebook(nb):
    """Apply every step of the module docstring to ``nb`` (in place) and return it."""
    from nbstripout import strip_output

    tqdm_widgets_to_text(nb)
    coalesce_streams(nb)
    nbval_markers(nb)
    carry_parameters(nb)
    keys = list(RUN_METADATA_KEYS) + ([] if has_widget_outputs(nb) else [WIDGET_STATE_KEY])
    strip_output(nb, keep_output=True, keep_count=True, keep_id=True, extra_keys=keys,
                 drop_tagged_cells=["injected-parameters"])
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    return nb


def clean_file(src: str | Path, dst: str | Path | None = None) -> None:
    """Read ``src``, clean it (:func:`clean_notebook`) and write it to ``dst`` (default: in place)."""
    import nbformat

    nb = clean_notebook(nbformat.read(src, as_version=4))
    nbformat.write(nb, dst or src)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Clean executed notebooks in place (see the module docstring).")
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for path in args.notebooks:
        clean_file(path)
        print(f"cleaned {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
