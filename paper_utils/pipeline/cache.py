"""An on-disk cache of trained models and prepared data, keyed by configuration.

Each entry is one ``torch.save`` file ``<cache_dir>/<kind>/<label>-<key>.pt`` plus a sidecar
``.sha256`` with the file's digest. Writes are atomic (temporary file in the same folder, then
``os.replace``), so a run killed at any point leaves either the old entry or none. Loads verify
the digest: a corrupt or truncated entry is reported (a warning), deleted and treated as missing,
so the caller rebuilds it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from paper_utils.pipeline.paths import cache_dir as default_cache_dir


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name + ".", suffix=".tmp", delete=False) as tmp:
        tmp.write(data)
        tmp.flush()
        os.fsync(tmp.fileno())
    os.replace(tmp.name, path)


class Cache:
    """Key-value store of torch-serialisable payloads (dicts of tensors, lists, numbers, strings).

    Args:
        root: cache folder; defaults to ``build/cache`` (or ``$PAPER_UTILS_CACHE``).
    """

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()

    def path(self, kind: str, name: str) -> Path:
        return self.root / kind / f"{name}.pt"

    def save(self, kind: str, name: str, payload: dict[str, Any]) -> Path:
        path = self.path(kind, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name + ".", suffix=".tmp", delete=False) as tmp:
            torch.save(payload, tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        digest = sha256_file(tmp.name)
        # digest first: a crash between the two writes leaves a mismatch, detected and rebuilt
        _atomic_write_bytes(path.with_suffix(".sha256"), digest.encode())
        os.replace(tmp.name, path)
        return path

    def load(self, kind: str, name: str) -> dict[str, Any] | None:
        """The payload, or ``None`` if missing or corrupt (a corrupt entry is removed with a warning)."""
        path = self.path(kind, name)
        sidecar = path.with_suffix(".sha256")
        if not path.exists():
            return None
        problem = None
        if not sidecar.exists():
            problem = "its checksum file is missing"
        elif sidecar.read_text().strip() != sha256_file(path):
            problem = "its checksum does not match (corrupt or truncated)"
        else:
            try:
                return torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # noqa: BLE001 - any unreadable file is rebuilt
                problem = f"it cannot be read ({exc})"
        warnings.warn(f"cache entry {path} is unusable: {problem}; removing it, it will be rebuilt", stacklevel=2)
        path.unlink(missing_ok=True)
        sidecar.unlink(missing_ok=True)
        return None
