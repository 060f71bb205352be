"""Reliability of the main job: kill-and-resume, bad inputs, the notebook runner and the report."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from paper_utils.pipeline import config
from paper_utils.data import mnist as data
from paper_utils.report import claims_report as report
from paper_utils import run_notebooks
from paper_utils.data.mnist import DenoisingSet
from paper_utils.training.adam import train_primal

ROOT = Path(__file__).resolve().parent.parent
HAVE_MNIST = (ROOT / "data" / "mnist.npz").exists()


def _cli(cache, *extra):
    env = {**os.environ, "PAPER_UTILS_CACHE": str(cache), "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    return [sys.executable, "-m", "paper_utils.training.denoisers", "--scale", "smoke", "--device", "cpu",
            "--sigmas", "0.5", "--no-progress", *extra], env


@pytest.mark.skipif(not HAVE_MNIST, reason="needs data/mnist.npz (make data)")
def test_killed_run_resumes_without_redoing_work_and_gives_same_numbers(tmp_path):
    cache = tmp_path / "cache"
    cmd, env = _cli(cache)
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while time.time() < deadline and not list((cache / "primal").glob("*.pt")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # killed while (or right before) the dual trains
    proc.wait()
    primal_files = list((cache / "primal").glob("*.pt"))
    assert len(primal_files) == 1, "the primal model should have been cached before the kill"
    stamp = primal_files[0].stat().st_mtime_ns
    resumed = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert primal_files[0].stat().st_mtime_ns == stamp, "the finished primal was retrained"
    fresh = subprocess.run(_cli(tmp_path / "fresh")[0], env={**env, "PAPER_UTILS_CACHE": str(tmp_path / "fresh")},
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
    table = [line for line in resumed.stdout.splitlines() if line.startswith("gaussian")]
    assert table and table == [line for line in fresh.stdout.splitlines() if line.startswith("gaussian")]
    assert not list(cache.rglob("*.tmp")), "temporary files left behind"


def test_nan_inputs_are_rejected_before_training():
    cfg = config.mnist_denoise_config("smoke", 0.5).replace(n_train=2, n_test=2, epochs=1)
    clean = torch.zeros(2, 1, 8, 8)
    noisy = clean.clone()
    noisy[1, 0, 3, 3] = float("nan")
    bad = DenoisingSet(noisy=noisy, clean=clean, mean=0.0, std=1.0)
    with pytest.raises(ValueError, match=r"noisy images \[1\]"):
        train_primal(cfg, bad, bad, device=torch.device("cpu"), progress=False)


def test_runner_rejects_bad_scale_and_device():
    with pytest.raises(ValueError, match="unknown scale"):
        run_notebooks.run("big", "cpu")
    with pytest.raises(ValueError, match="unknown device"):
        run_notebooks.run("smoke", "gpu")


def test_runner_reports_failures_and_goes_on(tmp_path, monkeypatch):
    import nbformat

    folder = tmp_path / "notebooks"
    folder.mkdir()
    for name, src in (("01_ok.ipynb", "x = 1"), ("02_bad.ipynb", "raise RuntimeError('boom')"), ("03_ok.ipynb", "y = 2")):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell("scale = 'smoke'\ndevice = 'cpu'", metadata={"tags": ["parameters"]}),
                    nbformat.v4.new_code_cell(src)]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, folder / name)
    monkeypatch.setenv("PAPER_UTILS_ROOT", str(tmp_path))
    lines = []
    failures = run_notebooks.run("smoke", "cpu", log=lambda *a, **k: lines.append(" ".join(map(str, a))))
    assert failures == 1
    assert any("02_bad" in l and "FAILED" in l and "boom" in l for l in lines)
    assert any("03_ok" in l and l.rstrip().endswith("ok") for l in lines), "did not go on after the failure"
    assert (tmp_path / "build" / "smoke" / "03_ok.ipynb").exists()


def test_report_lists_failing_claims(tmp_path, monkeypatch):
    from paper_utils.report.claims import Claim, record_claims

    monkeypatch.setenv("PAPER_UTILS_ROOT", str(tmp_path))
    record_claims("01_x", [Claim("a", "holds", 0.0, 0.1, True), Claim("b", "fails", 0.5, 0.1, False)],
                  scale="smoke", device="cpu")
    held, n = report.write_report("smoke")
    assert (held, n) == (1, 2)
    md = (tmp_path / "build" / "smoke" / "figures" / "CLAIMS.md").read_text()
    assert "**does not hold**" in md and "`b`" in md
    assert len(json.loads((tmp_path / "build" / "smoke" / "figures" / "claims.json").read_text())) == 1
