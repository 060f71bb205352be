"""The committed results store: what lets a committed notebook re-execute in seconds.

The main job at ``cpu`` scale trains models, solves the dual exactly and trains the primal to
convergence: about an hour on 2 cores. Its outputs are cache entries (:class:`~paper_utils.pipeline.cache.Cache`).
The store, ``results/cpu/store/``, is a committed copy of exactly the entries that the last ``cpu``
run of each notebook loaded or saved, at the same relative paths (``primal/``, ``dual/``, ``exact/``,
``converged/``, ``generation/``, ``mri_models/...``). No datasets: MNIST and the simulated MRI data are
rebuilt by their loaders. With the store present, :meth:`Cache.load` reads an entry missing from
``build/cache`` from the store, so ``make figures`` on a fresh clone draws the committed results, and
``make test`` re-executes the committed notebooks against it (strict mode: a missing entry is an error).

    make figures SCALE=cpu      # computes what the cache and the store lack; logs every entry used
    make store                  # python -m paper_utils.pipeline.store: copies the logged entries here

Each notebook's run writes the entries it used to ``build/cpu/cache-access/<notebook>.log``;
:func:`refresh` takes the union of the notebooks' latest logs, so a run of a few notebooks
(``--only``) refreshes theirs and keeps the others'. ``MANIFEST.txt`` lists every entry with its size
and digest.

The ``paper`` scale's store, ``results/paper/store/``, is built in pieces (:mod:`paper_utils.paper_pieces`:
one noise level, one group of P values, one set of seeds, each at most about 90 minutes on 2 cores).
A piece logs its entries to ``build/paper/cache-access/piece-<name>.log``, and ``make store SCALE=paper``
*adds* the logged entries to the store and keeps every entry already there (``--prune`` keeps only the
logged ones, as at ``cpu``), so pieces run on different machines merge by copying their logs and cache
entries, or by committing one after another.

    make paper-piece PIECE=01-sigma0.5-dual    # computes what the cache and both stores lack
    make store SCALE=paper                     # adds the piece's entries to results/paper/store
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from .paths import cache_dir, project_root, store_dir


def access_log_dir(scale: str = "cpu") -> Path:
    """``build/<scale>/cache-access/``: one log per notebook of the entries its last run used."""
    return project_root() / "build" / scale / "cache-access"


def logged_entries(scale: str = "cpu") -> dict[str, list[str]]:
    """``{notebook: [entry, ...]}`` from the notebooks' latest access logs (entries relative to the cache)."""
    out = {}
    for log in sorted(access_log_dir(scale).glob("*.log")):
        out[log.stem] = sorted(set(line.strip() for line in log.read_text().splitlines() if line.strip()))
    return out


def _source(entry: str, store: Path) -> Path:
    for base in (cache_dir(), store):
        path = base / entry
        if path.exists() and path.with_suffix(".sha256").exists():
            return path
    raise FileNotFoundError(f"entry {entry} is in neither {cache_dir()} nor {store}: run `make figures SCALE=cpu` first")


#: the paper store's size limit (it is committed): a refresh above it fails
PAPER_STORE_LIMIT_BYTES = 60 * 2**20


def _manifest_users(store: Path) -> dict[str, list[str]]:
    """``{entry: [user, ...]}`` from an existing ``MANIFEST.txt`` (empty if none)."""
    path = store / "MANIFEST.txt"
    out: dict[str, list[str]] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        parts = line.split(None, 2)
        if len(parts) == 3:
            entry, _, users = parts[2].partition("  (")
            out[entry.strip()] = [u.strip() for u in users.rstrip(")").split(",") if u.strip()]
    return out


def refresh(scale: str = "cpu", store: Path | None = None, log=print, prune: bool | None = None) -> tuple[int, int]:
    """Rebuild ``scale``'s store from the logged entries; returns (entries, bytes). At ``cpu`` (and with
    ``prune``) the store holds exactly the logged entries; at ``paper`` it keeps its entries and adds the
    logged ones. The new store replaces the old one only once it is complete."""
    if scale not in ("cpu", "paper"):
        raise ValueError(f"the committed stores hold the cpu and paper scales, not {scale!r}")
    prune = (scale == "cpu") if prune is None else prune
    store = Path(store) if store is not None else store_dir(scale)
    per_notebook = logged_entries(scale)
    if not per_notebook:
        what = "make figures SCALE=cpu" if scale == "cpu" else "make paper-piece PIECE=<name>"
        raise FileNotFoundError(f"no access logs in {access_log_dir(scale)}: run `{what}` first")
    if not prune and store.exists():
        for entry, users in _manifest_users(store).items():
            if (store / entry).exists():
                for user in users:
                    if entry not in per_notebook.setdefault(user, []):
                        per_notebook[user].append(entry)
    if scale == "paper":
        # an entry whose name is the same at both scales (Theorem 1's small problems) stays in the cpu store
        cpu_store = store_dir("cpu")
        per_notebook = {k: [e for e in v if not (cpu_store / e).exists()] for k, v in per_notebook.items()}
    entries = sorted(set(e for v in per_notebook.values() for e in v))
    store.parent.mkdir(parents=True, exist_ok=True)
    new = Path(tempfile.mkdtemp(dir=store.parent, prefix=".store-"))
    from .cache import sha256_file

    total, manifest = 0, []
    for entry in entries:
        src = _source(entry, store)
        dst = new / entry
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)
        shutil.copy2(src.with_suffix(".sha256"), dst.with_suffix(".sha256"))
        size = dst.stat().st_size
        total += size
        manifest.append(f"{size:>10d}  {sha256_file(dst)[:16]}  {entry}")
    users = {e: [nb for nb, v in per_notebook.items() if e in v] for e in entries}
    if scale == "paper" and total > PAPER_STORE_LIMIT_BYTES:
        shutil.rmtree(new, ignore_errors=True)
        raise RuntimeError(f"the paper store would hold {total / 2**20:.1f} MiB, above its limit of "
                           f"{PAPER_STORE_LIMIT_BYTES / 2**20:.0f} MiB; nothing was changed")
    lines = [f"# results store, scale {scale}: {len(entries)} entries, {total / 2**20:.1f} MiB",
             "# bytes  sha256[:16]  entry  (used by notebooks)"]
    lines += [f"{m}  ({', '.join(users[e])})" for m, e in zip(manifest, entries)]
    (new / "MANIFEST.txt").write_text("\n".join(lines) + "\n")
    old = store.with_name(store.name + ".old")
    if store.exists():
        store.rename(old)
    new.rename(store)
    shutil.rmtree(old, ignore_errors=True)
    log(f"results store {store}: {len(entries)} entries from {len(per_notebook)} notebooks or pieces, "
        f"{total / 2**20:.1f} MiB")
    return len(entries), total


def pack_new_entries(scale: str, path: Path) -> tuple[int, int]:
    """Pack what a run on another machine computed, so that it can be merged here: every logged entry of
    ``scale`` that is in the cache but in no store (with its digest), and the access logs, into the gzipped
    tar ``path`` as ``cache/<entry>`` and ``<scale>/cache-access/<log>``. Merge it with
    ``tar xzf path -C build`` and ``make store SCALE=<scale>`` (the cache at ``build/cache``). A run cut off
    partway packs the entries it finished. Returns (entries, bytes of entries); packs nothing without logs."""
    import tarfile

    from .paths import store_dirs

    per_notebook = logged_entries(scale)
    if not per_notebook:
        return 0, 0
    entries = sorted(e for e in set(x for v in per_notebook.values() for x in v)
                     if (cache_dir() / e).exists() and (cache_dir() / e).with_suffix(".sha256").exists()
                     and not any((d / e).exists() for d in store_dirs()))
    total = 0
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    with tarfile.open(tmp, "w:gz") as tar:
        for entry in entries:
            src = cache_dir() / entry
            tar.add(src, arcname=f"cache/{entry}")
            tar.add(src.with_suffix(".sha256"), arcname=f"cache/{Path(entry).with_suffix('.sha256')}")
            total += src.stat().st_size
        for log in sorted(access_log_dir(scale).glob("*.log")):
            tar.add(log, arcname=f"{scale}/cache-access/{log.name}")
    tmp.replace(path)
    return len(entries), total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Copy the cache entries the last run used into the committed store "
                                                 "(cpu: exactly them; paper: added to those already there).")
    parser.add_argument("--scale", default="cpu", choices=("cpu", "paper"))
    parser.add_argument("--prune", action="store_true", help="paper: keep only the logged entries")
    parser.add_argument("--pack", metavar="TAR_GZ",
                        help="instead: pack the logged entries no store holds, and the logs, to merge elsewhere "
                             "(tar xzf TAR_GZ -C build; make store)")
    args = parser.parse_args(argv)
    if args.pack:
        n, size = pack_new_entries(args.scale, Path(args.pack))
        print(f"packed {n} entries ({size / 2**20:.1f} MiB) and the {args.scale} access logs into {args.pack}")
        return 0
    try:
        refresh(args.scale, prune=True if args.prune else None)
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
