"""Where the cold `cpu` job's time goes, read from the seconds that the committed results store records.

Every cached computation of the main job stores its own compute time: a training history its training
seconds (evaluation excluded), a certified solve ``solution["seconds"]``, a converged primal
``result["seconds"]``, column generation its cumulative round times, a Theorem-1 problem its proven
solve and width sweep. This script sums them per notebook (the first notebook that uses an entry, as
``MANIFEST.txt`` lists it) and per kind, and sets them against the notebook's wall time in the cold run
that made those entries (``results/make_figures_cpu_cold_2cores_fused_primal.json``, commit ``d51b622``;
a later cold run, ``make_figures_cpu_cold_2cores.json``, recomputed them in a scratch clone and left
the committed store as it was); the remainder is evaluation (per-epoch train and test
curves), data, figures and process start.

Nothing is timed here: the numbers are those of the run that produced the store (a cold ``make figures
FRESH=1`` on 2 cores), so they answer "which budget would a 30-minute job have to cut", not "how fast
is this machine".

    python benchmarks/cold_job_breakdown.py [--scale cpu]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _history_seconds(entry: dict) -> float:
    history = entry["history"]
    history = history if isinstance(history, dict) else history.__dict__
    return float(history["seconds"][-1])


def entry_seconds(kind: str, entry: dict) -> float:
    """Compute seconds recorded in one store entry (0.0 for a kind that records none)."""
    if isinstance(entry.get("result"), dict) and "seconds" in entry["result"]:
        return float(entry["result"]["seconds"])                      # converged primal
    if "solution" in entry:
        return float(entry["solution"]["seconds"])                    # certified solve
    if "history" in entry:
        return _history_seconds(entry)                                # Adam-trained network
    if kind == "generation" and "result" in entry:
        result = entry["result"]
        rounds = result["rounds"]
        last = rounds[-1]["seconds"] if rounds else 0.0               # cumulative per round
        return float(last) + float(sum(result.get("random_seconds") or []))
    if kind == "generation" and "seeds" in entry:
        return float(sum(seed.get("seconds", 0.0) for seed in entry["seeds"]))
    if kind == "theorem1":
        sweep = entry["sweep"]["seconds"]
        return float(entry["optimum"]["seconds"]) + float(sum(sweep) if hasattr(sweep, "__len__") else sweep)
    return 0.0


def manifest(store: Path) -> list[tuple[str, str]]:
    """(entry path, first notebook using it) for every line of the store's MANIFEST.txt."""
    rows = []
    for line in (store / "MANIFEST.txt").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        entry = line.split()[2]
        users = line.rsplit("(", 1)[-1].rstrip(")")
        rows.append((entry, users.split(",")[0].strip()))
    return rows


def breakdown(scale: str = "cpu") -> dict[str, dict[str, tuple[int, float]]]:
    """{notebook: {kind: (entries, seconds)}} from ``results/<scale>/store``."""
    store = ROOT / "results" / scale / "store"
    table: dict[str, dict[str, list]] = collections.defaultdict(lambda: collections.defaultdict(lambda: [0, 0.0]))
    for path, notebook in manifest(store):
        kind = path.split("/")[0]
        if kind == "mri_models":                                       # mri_models/<set>/<kind>/<entry>
            kind = "mri_" + path.split("/")[2]
        entry = torch.load(store / path, map_location="cpu", weights_only=False)
        cell = table[notebook][kind]
        cell[0] += 1
        cell[1] += entry_seconds(path.split("/")[0], entry)
    return {nb: {k: (int(v[0]), float(v[1])) for k, v in kinds.items()} for nb, kinds in table.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="cpu", choices=["cpu", "paper"])
    args = parser.parse_args(argv)
    table = breakdown(args.scale)
    # the cold run whose entries the committed store holds
    cold = ROOT / "benchmarks" / "results" / f"make_figures_{args.scale}_cold_2cores_fused_primal.json"
    wall = {r["notebook"]: r["seconds"] for r in json.loads(cold.read_text())["notebooks"]} if cold.exists() else {}
    totals: collections.Counter = collections.Counter()
    print(f"{'notebook':24s} {'wall s':>7s} {'recorded s':>10s}  kinds (entries: seconds)")
    for notebook in sorted(set(table) | set(wall)):
        kinds = table.get(notebook, {})
        recorded = sum(s for _, s in kinds.values())
        for kind, (_, s) in kinds.items():
            totals[kind] += s
        parts = ", ".join(f"{k} ({n}: {s:.0f})" for k, (n, s) in sorted(kinds.items(), key=lambda kv: -kv[1][1]))
        w = wall.get(notebook)
        print(f"{notebook:24s} {w if w is not None else float('nan'):7.0f} {recorded:10.0f}  {parts}")
    print(f"{'total':24s} {sum(wall.values()):7.0f} {sum(totals.values()):10.0f}")
    print("by kind: " + ", ".join(f"{k} {s:.0f}" for k, s in totals.most_common()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
