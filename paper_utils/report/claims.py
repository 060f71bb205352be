"""The record of the paper's claims, as measured by our notebooks.

Each notebook states the claims it tests with :class:`Claim` and writes them with
:func:`record_claims` to ``<output>/claims/<notebook>.json`` (``figures/claims/`` at ``cpu`` and
``paper`` scale, ``build/smoke/figures/claims/`` at ``smoke``). A claim that does not hold is
recorded with ``holds = False``, never dropped. :func:`gather_claims` collects every record for the
report.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from paper_utils.pipeline.paths import output_dir, project_root

#: the two bases of a verdict: the paper's procedure as published, or the certified optimum and the primal
#: trained to its stopping rule or its budget
BASES = ("published", "optimum")
#: what a record is: a claim the paper makes, our own question about the paper, or a check of our tools
#: (solver certificates, p = d after eq. 5, feasibility) that holds by construction when the code is right
KINDS = ("paper", "ours", "check")


@dataclass(frozen=True)
class Claim:
    """One claim of the paper and our measurement of it.

    Attributes:
        name: short identifier, e.g. ``"fig2.zero_gap.sigma0.5.train"``.
        statement: the paper's claim in words, with its figure or section.
        measured: our number (``None`` if it could not be measured).
        tolerance: the threshold the verdict uses, in the units of ``measured``.
        holds: the verdict.
        units: what ``measured`` is, e.g. ``"relative gap |d - p| / p"``.
        details: any further numbers (dict of floats/strings).
        basis: what the verdict is about (``docs/findings.md``, "the two bases"). ``"published"``: the paper's settings
            and budget (Adam at its learning rates, our epoch counts), reproduced as they are.
            ``"optimum"``: the sampled dual solved exactly with a certified gap and its eq. (5)
            network, and/or the primal trained until its stopping rule holds or its budget ends (each
            result says which), from several seeds;
            it answers the paper's science rather than "does the paper's procedure show it".
        kind: what the record is (:data:`KINDS`). ``"paper"``: a claim the paper makes; ``"ours"``: our own
            question about the paper (e.g. Theorem 1's bracket, generated against random patterns);
            ``"check"``: a check of our solver or implementation (certified gap reached, p = d after eq. 5,
            feasibility). Reports count the three kinds separately; a record without ``kind`` is ``"paper"``.
    """

    name: str
    statement: str
    measured: float | None
    tolerance: float | None
    holds: bool
    units: str = ""
    details: dict = field(default_factory=dict)
    basis: str = "published"
    kind: str = "paper"

    def __post_init__(self) -> None:
        if self.basis not in BASES:
            raise ValueError(f"unknown basis {self.basis!r} for claim {self.name!r}; expected one of {BASES}")
        if self.kind not in KINDS:
            raise ValueError(f"unknown kind {self.kind!r} for claim {self.name!r}; expected one of {KINDS}")


def claim_kind(record: dict) -> str:
    """The kind of a claim record (a dict from ``claims.json``): its ``kind``, ``"paper"`` when absent."""
    return record.get("kind", "paper")


def kind_tally(claims) -> dict[str, tuple[int, int]]:
    """``{kind: (holding, records)}`` for every kind of :data:`KINDS` (zeros where a kind has no record).

    ``claims``: :class:`Claim` objects or claim dicts (a dict without ``kind`` counts as ``"paper"``)."""
    out = {k: [0, 0] for k in KINDS}
    for c in claims:
        kind, holds = (c.kind, c.holds) if isinstance(c, Claim) else (claim_kind(c), c["holds"])
        out[kind][0] += bool(holds)
        out[kind][1] += 1
    return {k: (h, n) for k, (h, n) in out.items()}


#: how :func:`tally_sentence` names each kind
KIND_LABELS = {"paper": "the paper's claims", "ours": "our questions about the paper", "check": "checks of our tools"}


def tally_sentence(claims, *, all_kinds: bool = False) -> str:
    """``"the paper's claims: X of Y records hold; our questions about the paper: ...; checks of our tools: ..."``:
    each kind that has records (every kind with ``all_kinds``; the paper's claims when there are none at all)."""
    tally = kind_tally(claims)
    empty = not any(n for _, n in tally.values())
    return "; ".join(f"{KIND_LABELS[k]}: {h} of {n} record{'s' if n != 1 else ''} hold{'s' if n == 1 else ''}"
                     for k, (h, n) in tally.items() if all_kinds or n or (empty and k == "paper"))


def training_note(converged) -> str:
    """How primal runs ended, in words, from their ``converged`` flags (the stopping rule held or not).

    ``"converged"`` only when every run met its stopping rule; ``"after its budget (not converged)"``
    when none did (``"after their budget"`` for several); otherwise ``"k of n converged, the rest after
    their budget"``."""
    flags = [bool(c) for c in converged]
    if not flags:
        raise ValueError("training_note needs at least one run")
    k, n = sum(flags), len(flags)
    if k == n:
        return "converged" if n == 1 else f"all {n} converged"
    if k == 0:
        return "after its budget (not converged)" if n == 1 else f"all {n} after their budget (not converged)"
    return f"{k} of {n} converged, the rest after their budget (not converged)"


def code_version() -> str:
    """``git describe --always`` of the project, with ``-dirty`` when tracked files other than the
    generated outputs differ from the commit (a run of the main job rewrites ``figures/``, the
    executed ``notebooks/`` and the results store ``results/`` itself, which must not mark the code that
    produced them as modified); ``"unknown"`` outside a git checkout."""
    try:
        root = project_root()
        out = subprocess.run(["git", "describe", "--always"], cwd=root, capture_output=True, text=True, timeout=10)
        version = out.stdout.strip()
        if not version:
            return "unknown"
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                 ":(exclude)figures", ":(exclude)notebooks/*.ipynb", ":(exclude)results"], cwd=root, capture_output=True, text=True, timeout=10)
        return version + ("-dirty" if status.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def record_claims(notebook: str, claims: list[Claim], *, scale: str, device: str) -> Path:
    """Write ``claims`` of ``notebook`` (e.g. ``"01_mnist_duality_gap"``) atomically; returns the path."""
    folder = output_dir(scale) / "claims"
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "notebook": notebook, "scale": scale, "device": str(device),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "code_version": code_version(),
        "claims": [_clean({**asdict(c), "holds": bool(c.holds)}) for c in claims],
    }
    path = folder / f"{notebook}.json"
    with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".tmp", delete=False) as tmp:
        json.dump(record, tmp, indent=2)
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, path)
    return path


def gather_claims(scale: str) -> list[dict]:
    """Every claim record written at ``scale`` (one dict per notebook), sorted by notebook."""
    folder = output_dir(scale) / "claims"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def relative_gap(a: float, b: float) -> float:
    """``|a - b| / |b|``: the relative gap of ``a`` (e.g. the dual) to ``b`` (e.g. the primal)."""
    return abs(a - b) / abs(b) if b != 0 else float("inf")
