"""An on-disk cache of trained models and solutions, keyed by configuration, over the committed store.

Each entry is one ``torch.save`` file ``<cache_dir>/<kind>/<label>-<key>.pt`` plus a sidecar
``.sha256`` with the file's digest. Writes are atomic (temporary file in the same folder, then
``os.replace``), so a run killed at any point leaves either the old entry or none. Loads verify
the digest: a corrupt or truncated entry is reported (a warning), deleted and treated as missing,
so the caller rebuilds it.

Below the cache lie the committed **results stores** (``results/cpu/store`` and ``results/paper/store``,
see :mod:`paper_utils.pipeline.store`): an entry missing from the cache is read from a store's copy at
the same relative path, read-only. ``$PAPER_UTILS_STORE_MODE`` chooses how:

- ``fallback`` (default): read the store on a cache miss; compute what neither has;
- ``strict`` (``make test``'s nbval over the committed notebooks): an entry in neither is an error,
  :class:`StoreEntryMissing`, naming the entry and the command that refreshes the store, so CI never
  silently recomputes for an hour;
- ``off``: ignore the store (``make figures FRESH=1`` and the smoke run from nothing).

Every entry a run loads or saves is appended to ``$PAPER_UTILS_ACCESS_LOG`` when set (the main job sets
one per notebook); :func:`paper_utils.pipeline.store.refresh` copies exactly those entries into the store.
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
from paper_utils.pipeline.paths import store_dirs

STORE_MODES = ("fallback", "strict", "off")

#: what refreshes the store after a code-version bump or a changed configuration
REFRESH_COMMAND = "make figures SCALE=cpu && make store"
#: the same for a paper-scale entry (paper_utils.paper_pieces)
PAPER_REFRESH_COMMAND = "make paper-piece PIECE=<name> && make store SCALE=paper"


class StoreEntryMissing(RuntimeError):
    """Strict store mode: an entry is neither in the cache nor in the committed results store."""


def store_mode() -> str:
    """``$PAPER_UTILS_STORE_MODE``: one of :data:`STORE_MODES` (default ``fallback``)."""
    mode = os.environ.get("PAPER_UTILS_STORE_MODE", "fallback") or "fallback"
    if mode not in STORE_MODES:
        raise ValueError(f"PAPER_UTILS_STORE_MODE={mode!r}: expected one of {STORE_MODES}")
    return mode


#: where this process's cache entries came from: ``{"cache": n, "store": n, "computed": n}``
ENTRY_SOURCES = {"cache": 0, "store": 0, "computed": 0}


def entry_sources_summary() -> str:
    """One line on where this process's cache entries came from, e.g. ``"12 from the results store,
    0 from build/cache, 0 computed"``."""
    s = ENTRY_SOURCES
    return f"{s['store']} from the results store, {s['cache']} from the cache, {s['computed']} computed"


def _relative_to(path: Path, base: Path) -> Path | None:
    try:
        return path.resolve().relative_to(base.resolve())
    except ValueError:
        return None


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
        store: the read-only store folder mirroring ``root`` (or a list of them, read in order); by default
            the same relative folder under each of :func:`paper_utils.pipeline.paths.store_dirs` when ``root``
            lies inside the cache folder (``build/cache/mri_models/x`` -> ``results/cpu/store/mri_models/x``,
            then ``results/paper/store/mri_models/x``), else none.
    """

    def __init__(self, root: str | Path | None = None, store: str | Path | list | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.relative = _relative_to(self.root, default_cache_dir())
        if store is not None:
            self.stores = [Path(s) for s in (store if isinstance(store, (list, tuple)) else [store])]
        elif self.relative is not None:
            self.stores = [base / self.relative for base in store_dirs()]
        else:
            self.stores = []

    @property
    def store(self) -> Path | None:
        """The first store folder (the cpu scale's), or ``None``."""
        return self.stores[0] if self.stores else None

    def path(self, kind: str, name: str) -> Path:
        return self.root / kind / f"{name}.pt"

    def entry(self, kind: str, name: str) -> str:
        """The entry's path relative to the cache folder (and to the store), e.g. ``exact/x.pt``."""
        rel = Path(kind) / f"{name}.pt"
        return str(self.relative / rel) if self.relative is not None else str(rel)

    def has(self, kind: str, name: str) -> bool:
        """Whether ``load`` would find the entry (cache, or store unless the store mode is ``off``);
        checks that the files exist, not their digests."""
        for folder in [self.root] + (self.stores if store_mode() != "off" else []):
            path = folder / kind / f"{name}.pt"
            if path.exists() and path.with_suffix(".sha256").exists():
                return True
        return False

    def _log_access(self, kind: str, name: str) -> None:
        log = os.environ.get("PAPER_UTILS_ACCESS_LOG")
        if log and self.relative is not None:
            Path(log).parent.mkdir(parents=True, exist_ok=True)
            with open(log, "a") as f:
                f.write(self.entry(kind, name) + "\n")

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
        self._log_access(kind, name)
        ENTRY_SOURCES["computed"] += 1
        return path

    def load(self, kind: str, name: str) -> dict[str, Any] | None:
        """The payload, from the cache or else the store; ``None`` if in neither (a corrupt cache entry
        is removed with a warning; a cache entry that differs from a store's entry of the same name is
        used, with a warning). In strict store mode an entry in neither raises
        :class:`StoreEntryMissing`."""
        payload = self._load_verified(self.path(kind, name))
        source = "cache"
        mode = store_mode()
        if payload is not None and mode != "off":
            self._warn_if_stores_differ(kind, name)
        if payload is None and mode != "off":
            for folder in self.stores:
                stored = folder / kind / f"{name}.pt"
                if stored.exists():
                    payload, source = self._load_verified(stored, read_only=True), "store"
                    if payload is not None:
                        break
        if payload is None and mode == "strict":
            raise StoreEntryMissing(
                f"results store entry {self.entry(kind, name)!r} is missing for the current code and "
                f"configuration (stores: {', '.join(map(str, self.stores)) or 'none'}). Refresh the store with "
                f"`{REFRESH_COMMAND}` (recomputes what is missing at cpu scale) and commit results/cpu; at "
                f"paper scale with `{PAPER_REFRESH_COMMAND}` and commit results/paper.")
        if payload is not None:
            self._log_access(kind, name)
            ENTRY_SOURCES[source] += 1
        return payload

    def _warn_if_stores_differ(self, kind: str, name: str) -> None:
        """Warn when a store holds an entry of the same name with other contents (its checksum differs): the
        cache entry, read first, was then computed by another run (or by older code under the same code
        version), and this run's results may differ from the committed ones."""
        mine = self.path(kind, name).with_suffix(".sha256").read_text().strip()
        for folder in self.stores:
            sidecar = folder / kind / f"{name}.sha256"
            if sidecar.exists() and sidecar.read_text().strip() != mine:
                warnings.warn(f"cache entry {self.entry(kind, name)!r} differs from the one in the results store "
                              f"{folder} (another run computed it); this run uses the cache's. Remove it (or run "
                              f"`make clean-cache`) to use the store's.", stacklevel=3)
                return

    def _load_verified(self, path: Path, read_only: bool = False) -> dict[str, Any] | None:
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
        if read_only:
            warnings.warn(f"results store entry {path} is unusable: {problem}; it is ignored "
                          f"(refresh the store with `{REFRESH_COMMAND}`)", stacklevel=3)
            return None
        warnings.warn(f"cache entry {path} is unusable: {problem}; removing it, it will be rebuilt", stacklevel=3)
        path.unlink(missing_ok=True)
        sidecar.unlink(missing_ok=True)
        return None
