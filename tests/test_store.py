"""The results store under the cache: fallback, strict and off modes, access logs, refresh."""

from __future__ import annotations

import pytest
import torch

from paper_utils.pipeline import store as store_mod
from paper_utils.pipeline.cache import Cache, StoreEntryMissing


def _stored(root, kind, name, value):
    """An entry written to the store as the store would hold it (a Cache rooted at the store)."""
    Cache(root / "results" / "cpu" / "store", store=root / "none").save(kind, name, {"x": torch.tensor(value)})


def test_a_cache_miss_reads_the_store_read_only(roots, monkeypatch):
    _stored(roots, "exact", "a", 1.0)
    cache = Cache()
    assert cache.load("exact", "a")["x"].item() == 1.0
    assert cache.has("exact", "a") and not cache.path("exact", "a").exists()  # nothing copied into the cache
    cache.save("exact", "a", {"x": torch.tensor(2.0)})                        # the cache wins over the store,
    with pytest.warns(UserWarning, match="differs from the one in the results store"):  # and says so
        assert cache.load("exact", "a")["x"].item() == 2.0
    cache.save("exact", "c", {"x": torch.tensor(3.0)})
    _stored(roots, "exact", "c", 3.0)                                         # the same contents: no warning
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.load("exact", "c")["x"].item() == 3.0
    monkeypatch.setenv("PAPER_UTILS_STORE_MODE", "off")
    assert Cache().load("exact", "b") is None and not Cache().has("exact", "b")


def test_subfolder_caches_mirror_the_store(roots):
    _stored(roots, "mri_models/x/primal", "m", 3.0)
    sub = Cache(roots / "build" / "cache" / "mri_models" / "x")
    assert sub.load("primal", "m")["x"].item() == 3.0
    assert sub.entry("primal", "m") == "mri_models/x/primal/m.pt"


def test_strict_mode_names_the_missing_entry_and_the_refresh_command(roots, monkeypatch):
    monkeypatch.setenv("PAPER_UTILS_STORE_MODE", "strict")
    with pytest.raises(StoreEntryMissing, match=r"'exact/missing.pt'.*make figures SCALE=cpu && make store"):
        Cache().load("exact", "missing")
    monkeypatch.setenv("PAPER_UTILS_STORE_MODE", "sometimes")
    with pytest.raises(ValueError, match="PAPER_UTILS_STORE_MODE"):
        Cache().load("exact", "missing")


def test_a_corrupt_store_entry_is_ignored_not_deleted(roots):
    _stored(roots, "exact", "a", 1.0)
    path = roots / "results" / "cpu" / "store" / "exact" / "a.pt"
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.warns(UserWarning, match="results store entry"):
        assert Cache().load("exact", "a") is None
    assert path.exists()


def test_refresh_copies_exactly_the_logged_entries(roots, monkeypatch):
    cache = Cache()
    logs = store_mod.access_log_dir("cpu")
    monkeypatch.setenv("PAPER_UTILS_ACCESS_LOG", str(logs / "01_a.log"))
    cache.save("primal", "used", {"x": torch.tensor(1.0)})
    _stored(roots, "exact", "from_store", 2.0)
    cache.load("exact", "from_store")
    monkeypatch.setenv("PAPER_UTILS_ACCESS_LOG", str(logs / "02_b.log"))
    cache.load("primal", "used")
    monkeypatch.delenv("PAPER_UTILS_ACCESS_LOG")
    cache.save("dual", "unused", {"x": torch.tensor(3.0)})
    n, size = store_mod.refresh("cpu", log=lambda *a: None)
    store = roots / "results" / "cpu" / "store"
    assert n == 2 and size > 0
    assert sorted(p.relative_to(store).as_posix() for p in store.rglob("*.pt")) == ["exact/from_store.pt", "primal/used.pt"]
    manifest = (store / "MANIFEST.txt").read_text()
    assert "primal/used.pt  (01_a, 02_b)" in manifest and "unused" not in manifest
    monkeypatch.setenv("PAPER_UTILS_STORE_MODE", "strict")
    import shutil

    shutil.rmtree(roots / "build" / "cache")
    assert Cache().load("primal", "used")["x"].item() == 1.0


def test_refresh_without_a_run_says_what_to_do(roots):
    with pytest.raises(FileNotFoundError, match="make figures SCALE=cpu"):
        store_mod.refresh("cpu")


def test_the_paper_store_grows_piece_by_piece_and_is_read_on_a_miss(roots, monkeypatch):
    """make store SCALE=paper adds each piece's entries and keeps those already there; a cache miss reads
    the paper store after the cpu store; the manifest keeps who used each entry."""
    paper = roots / "results" / "paper" / "store"
    logs = store_mod.access_log_dir("paper")
    cache = Cache()
    monkeypatch.setenv("PAPER_UTILS_ACCESS_LOG", str(logs / "piece-a.log"))
    cache.save("dual", "first", {"x": torch.tensor(1.0)})
    monkeypatch.delenv("PAPER_UTILS_ACCESS_LOG")
    assert store_mod.refresh("paper", log=lambda *a: None)[0] == 1
    (logs / "piece-a.log").unlink()
    monkeypatch.setenv("PAPER_UTILS_ACCESS_LOG", str(logs / "piece-b.log"))
    cache.save("exact", "second", {"x": torch.tensor(2.0)})
    monkeypatch.delenv("PAPER_UTILS_ACCESS_LOG")
    n, _ = store_mod.refresh("paper", log=lambda *a: None)
    assert n == 2
    manifest = (paper / "MANIFEST.txt").read_text()
    assert "scale paper" in manifest and "dual/first.pt  (piece-a)" in manifest and "exact/second.pt  (piece-b)" in manifest
    assert store_mod.refresh("paper", log=lambda *a: None, prune=True)[0] == 1   # only piece-b's log is left
    import shutil

    shutil.rmtree(roots / "build" / "cache")
    monkeypatch.setenv("PAPER_UTILS_STORE_MODE", "strict")
    assert Cache().load("exact", "second")["x"].item() == 2.0                     # read from the paper store
    with pytest.raises(StoreEntryMissing, match="make paper-piece"):
        Cache().load("dual", "first")                                               # pruned


def test_the_paper_store_refuses_to_grow_past_its_limit(roots, monkeypatch):
    monkeypatch.setattr(store_mod, "PAPER_STORE_LIMIT_BYTES", 10)
    monkeypatch.setenv("PAPER_UTILS_ACCESS_LOG", str(store_mod.access_log_dir("paper") / "piece-a.log"))
    Cache().save("dual", "big", {"x": torch.zeros(100)})
    with pytest.raises(RuntimeError, match="above its limit"):
        store_mod.refresh("paper", log=lambda *a: None)
    assert not (roots / "results" / "paper" / "store").exists()


def test_a_run_elsewhere_packs_what_it_computed_and_merges_here(roots, monkeypatch, tmp_path_factory):
    """store --pack (the GPU run's entries_<scale>.tar.gz): the logged entries that no store holds and the
    logs; extracted into build/ they let make store add exactly those entries."""
    import tarfile

    logs = store_mod.access_log_dir("paper")
    monkeypatch.setenv("PAPER_UTILS_ACCESS_LOG", str(logs / "05_mri_loss_curves.log"))
    Cache().save("dual", "computed", {"x": torch.tensor(3.0)})
    monkeypatch.delenv("PAPER_UTILS_ACCESS_LOG")
    paper = roots / "results" / "paper" / "store"
    Cache(paper, store=roots / "none").save("dual", "stored", {"x": torch.tensor(4.0)})
    with open(logs / "05_mri_loss_curves.log", "a") as f:
        f.write("dual/stored.pt\n")                                      # loaded from the store: not packed
    out = tmp_path_factory.mktemp("out") / "entries_paper.tar.gz"
    assert store_mod.main(["--scale", "paper", "--pack", str(out)]) == 0
    names = tarfile.open(out).getnames()
    assert sorted(names) == ["cache/dual/computed.pt", "cache/dual/computed.sha256",
                             "paper/cache-access/05_mri_loss_curves.log"]
    import shutil

    shutil.rmtree(roots / "build")                                        # here: a fresh checkout
    tarfile.open(out).extractall(roots / "build", filter="data")
    assert store_mod.refresh("paper", log=lambda *a: None)[0] == 1 + 1   # the stored entry kept, the new one added
    assert "dual/computed.pt  (05_mri_loss_curves)" in (paper / "MANIFEST.txt").read_text()
    monkeypatch.setenv("PAPER_UTILS_STORE_MODE", "strict")
    assert Cache().load("dual", "computed")["x"].item() == 3.0
