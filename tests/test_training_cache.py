"""Training (determinism, the paper's objectives), the model cache, claims records."""

import json
import math

import pytest
import torch

from paper_utils.pipeline import cache as cache_mod
from paper_utils.report import claims
from paper_utils.pipeline import config
from paper_utils.training import denoisers as experiments
from paper_utils.data.mnist import mnist_denoising
from paper_utils.figures.fig02_duality_gap import exact_gap_rows
from paper_utils.training.adam import TrainingDiverged, train_dual, train_primal


def _tiny(fake_mnist, **changes):
    cfg = config.mnist_denoise_config("smoke", 0.5).replace(n_train=10, n_test=5, n_filters=8, n_patterns=16,
                                                            epochs=2, batch_size=5, **changes)
    return cfg, *mnist_denoising(cfg.n_train, cfg.n_test, cfg.noise, cfg.noise_level, seed=cfg.seed, arrays=fake_mnist)


def test_training_is_deterministic_and_decreases(fake_mnist):
    cfg, tr, te = _tiny(fake_mnist)
    cpu = torch.device("cpu")
    _, h1 = train_primal(cfg, tr, te, device=cpu, progress=False)
    _, h2 = train_primal(cfg, tr, te, device=cpu, progress=False)
    assert h1.train_objective == h2.train_objective
    assert h1.train_objective[-1] < h1.train_objective[0]
    d1, g1 = train_dual(cfg, tr, te, device=cpu, progress=False)
    d2, g2 = train_dual(cfg, tr, te, device=cpu, progress=False)
    assert g1.train_objective == g2.train_objective and torch.equal(d1.W, d2.W)
    assert g1.train_objective[-1] < g1.train_objective[0]
    assert len(g1.max_violation) == len(g1.rebuilt_objective) == cfg.epochs + 1


def test_divergence_is_reported_with_configuration(fake_mnist):
    cfg, tr, te = _tiny(fake_mnist, lr_primal=1e30)
    with pytest.raises(TrainingDiverged, match=cfg.label()):
        train_primal(cfg, tr, te, device=torch.device("cpu"), progress=False)


def test_cache_round_trip_and_corruption(tmp_path):
    c = cache_mod.Cache(tmp_path)
    c.save("models", "a", {"x": torch.arange(3), "h": [1.0, 2.0]})
    assert torch.equal(c.load("models", "a")["x"], torch.arange(3))
    path = c.path("models", "a")
    path.write_bytes(path.read_bytes()[:-10])  # truncate
    with pytest.warns(UserWarning, match="unusable"):
        assert c.load("models", "a") is None
    assert not path.exists()
    assert c.load("models", "missing") is None


def test_cached_models_are_reused(fake_mnist, tmp_cache, monkeypatch):
    cfg, tr, te = _tiny(fake_mnist)
    cpu = torch.device("cpu")
    p1, ph1 = experiments.load_or_train_primal(cfg, tr, te, device=cpu, progress=False)
    d1, dh1 = experiments.load_or_train_dual(cfg, tr, te, device=cpu, progress=False)

    def fail(*a, **k):
        raise AssertionError("retrained although cached")

    monkeypatch.setattr(experiments, "train_primal", fail)
    monkeypatch.setattr(experiments, "train_dual", fail)
    p2, ph2 = experiments.load_or_train_primal(cfg, tr, te, device=cpu, progress=False)
    d2, dh2 = experiments.load_or_train_dual(cfg, tr, te, device=cpu, progress=False)
    assert ph2.as_dict() == ph1.as_dict() and dh2.as_dict() == dh1.as_dict()
    assert torch.equal(p2.conv1.weight, p1.conv1.weight) and torch.equal(d2.W, d1.W)
    assert torch.equal(d2(te.noisy), d1(te.noisy))


def test_claims_record(tmp_path, monkeypatch):
    monkeypatch.setenv("PAPER_UTILS_ROOT", str(tmp_path))
    c = claims.Claim("x.gap", "primal equals dual", 0.01, 0.05, True, "relative", {"inf": float("inf")})
    path = claims.record_claims("99_test", [c], scale="smoke", device="cpu")
    rec = json.loads(path.read_text())
    assert rec["claims"][0]["holds"] is True and rec["scale"] == "smoke" and "date" in rec
    assert rec["claims"][0]["details"]["inf"] == "inf"
    assert claims.gather_claims("smoke")[0]["notebook"] == "99_test"
    assert claims.relative_gap(1.1, 1.0) == pytest.approx(0.1)


def test_exact_solution_is_cached_and_reproduces_the_dual(fake_mnist, tmp_cache, monkeypatch):
    """Notebook 01's exact solve: certified, p = d after eq. (5), cached and reloaded without re-solving."""
    cfg, tr, te = _tiny(fake_mnist)
    cpu = torch.device("cpu")
    primal, ph = experiments.load_or_train_primal(cfg, tr, te, device=cpu, progress=False)
    dual, dh = experiments.load_or_train_dual(cfg, tr, te, device=cpu, progress=False)
    run = experiments.DenoiseRun(cfg, tr, te, primal, dual, ph, dh)
    first = experiments.load_or_solve_exact(run, tol=1e-6)
    sol = first.solution
    assert sol.converged and sol.gap <= 1e-6 and sol.lower_bound <= sol.objective
    assert sol.max_violation <= 1e-6
    assert abs(first.rebuilt_objective - sol.objective) <= 1e-6 * sol.objective

    monkeypatch.setattr(experiments, "solve_dual", lambda *a, **k: (_ for _ in ()).throw(AssertionError("re-solved")))
    again = experiments.load_or_solve_exact(run, tol=1e-6)
    assert again.solution.objective == sol.objective and torch.equal(again.solution.W, sol.W)
    assert again.solution.history == sol.history and again.rebuilt_objective == first.rebuilt_objective
    row, = exact_gap_rows([run], [again])
    assert row["cert_gap"] == sol.gap
    assert row["primal_vs_dP"] == (ph.train_objective[-1] - sol.objective) / sol.objective


def test_time_limited_exact_solution_is_resolved_under_a_longer_limit(fake_mnist, tmp_cache, monkeypatch):
    """A cached solve that stopped on its time limit is reused under the same limit, and solved again
    (then cached as converged) when a later call allows more time; the name carries SOLVER_VERSION."""
    cfg, tr, te = _tiny(fake_mnist)
    G = torch.randn(cfg.kernel_size ** 2, 8, generator=torch.Generator().manual_seed(0))
    cut = experiments.load_or_solve_exact_data(cfg, tr, G, tol=1e-10, time_limit=0.0)
    assert not cut.solution.converged and cut.solution.status.startswith("NOT certified")
    assert any(f"-s{experiments.SOLVER_VERSION}" in p.name for p in (tmp_cache / "exact").iterdir())
    calls = []
    real = experiments.solve_dual
    monkeypatch.setattr(experiments, "solve_dual", lambda *a, **k: calls.append(k["time_limit"]) or real(*a, **k))
    same = experiments.load_or_solve_exact_data(cfg, tr, G, tol=1e-10, time_limit=0.0)
    assert calls == [] and same.solution.objective == cut.solution.objective
    full = experiments.load_or_solve_exact_data(cfg, tr, G, tol=1e-10, time_limit=None)
    assert calls == [None] and full.solution.objective <= cut.solution.objective


def test_adam_epochs_are_the_same_bits_with_torch_on_one_thread(fake_mnist, monkeypatch):
    """``numba_runtime.torch_serial`` (torch on one thread around the fused kernels' Adam steps) is a speed
    change only: at the paper's m = 512 and P = 4,000 (W above the grain), epochs with and without it give the same bits."""
    import contextlib

    from paper_utils.nets import numba_runtime
    from paper_utils.nets.dual import DualNet, sample_generators
    from paper_utils.nets.patches import extract_patches
    from paper_utils.nets.primal import PrimalNet
    from paper_utils.training import adam

    if not numba_runtime.available(9):
        pytest.skip("numba is not importable")
    cfg = config.mnist_denoise_config("smoke", 0.5).replace(n_train=50, n_test=5, n_filters=512, n_patterns=4000,
                                                            batch_size=25)
    tr, _ = mnist_denoising(cfg.n_train, cfg.n_test, cfg.noise, cfg.noise_level, seed=cfg.seed, arrays=fake_mnist)
    Y, X = tr.noisy, tr.clean
    Yp = extract_patches(Y, cfg.kernel_size)
    Yp_img, x_img = Yp.reshape(len(Y), -1, Yp.shape[-1]), X.reshape(len(Y), -1)
    G = sample_generators(Yp, cfg.n_patterns, seed=0)

    def epochs(serial: bool):
        if not serial:
            monkeypatch.setattr(numba_runtime, "torch_serial", lambda active=True: contextlib.nullcontext())
        primal = PrimalNet(cfg.n_filters, cfg.kernel_size, generator=torch.Generator().manual_seed(0))
        dual = DualNet(G, cfg.kernel_size)
        with torch.no_grad():
            dual.W.normal_(generator=torch.Generator().manual_seed(1)).mul_(1e-2)
        opts = adam.paper_adam(primal.parameters(), cfg.lr_primal), adam.paper_adam(dual.parameters(), 1e-3)
        for _ in range(2):
            adam.primal_epoch(primal, opts[0], Y, X, cfg, torch.Generator().manual_seed(2))
            adam.dual_epoch(dual, opts[1], Yp_img, x_img, cfg, torch.Generator().manual_seed(3))
        monkeypatch.undo()
        return [p.detach().clone() for p in (*primal.parameters(), *dual.parameters())]

    before = torch.get_num_threads()
    torch.set_num_threads(2)  # the comparison needs torch's parallel path on the other side
    try:
        serial, parallel = epochs(True), epochs(False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) for a, b in zip(serial, parallel))
    assert not torch.equal(serial[0], PrimalNet(cfg.n_filters, cfg.kernel_size,
                                                generator=torch.Generator().manual_seed(0)).conv1.weight)


def test_test_every_skips_test_evaluations_without_changing_the_training(fake_mnist):
    cfg, tr, te = _tiny(fake_mnist)
    cfg = cfg.replace(epochs=6)
    sampled = cfg.replace(test_every=4)          # evaluates the test set after epochs 0, 4, 5 and 6
    cpu = torch.device("cpu")
    for train in (train_primal, train_dual):
        net_a, full = train(cfg, tr, te, device=cpu, progress=False)
        net_b, part = train(sampled, tr, te, device=cpu, progress=False)
        assert all(torch.equal(a, b) for a, b in zip(net_a.parameters(), net_b.parameters()))
        assert part.train_objective == full.train_objective
        curves = ("test_loss", "rebuilt_test_loss") if train is train_dual else ("test_loss",)
        for name in curves:
            got, want = getattr(part, name), getattr(full, name)
            assert [e for e in part.epoch if math.isfinite(got[e])] == [0, 4, 5, 6]
            assert all(got[e] == want[e] for e in (0, 4, 5, 6))
