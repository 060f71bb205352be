"""Noise models of App. B.1, the resumable sweep (paper_utils.training.sweep), Figures 8-9's margins and
Figure 10's threshold rule."""

from __future__ import annotations

import math

import pytest
import torch

from paper_utils.pipeline import config
from paper_utils.training import denoisers as experiments
from paper_utils.training import sweep
from paper_utils.pipeline.cache import Cache
from paper_utils.pipeline.config import DenoiseConfig
from paper_utils.data.noise import add_noise
from paper_utils.figures import fig08_09_noise_robustness as robustness
from paper_utils.figures import fig10_pattern_ablation as ablation
from paper_utils.training.adam import History

N_SAMPLES = 1_000_000


# ------------------------------------------------------------------------------ noise models


def _noise(kind: str, level: float, seed: int = 0) -> torch.Tensor:
    clean = torch.zeros(N_SAMPLES, dtype=torch.float64)
    return add_noise(clean, kind, level, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("sigma", [0.1, 0.5, 0.75])
def test_gaussian_noise_has_mean_zero_and_std_sigma(sigma):
    e = _noise("gaussian", sigma)
    se_mean = sigma / math.sqrt(N_SAMPLES)
    se_std = sigma / math.sqrt(2 * N_SAMPLES)
    assert abs(float(e.mean())) < 5 * se_mean
    assert abs(float(e.std()) - sigma) < 5 * se_std
    # symmetric: half the draws are positive
    assert abs(float((e > 0).double().mean()) - 0.5) < 5 * 0.5 / math.sqrt(N_SAMPLES)


@pytest.mark.parametrize("rate", [1.15, 2.0])
def test_exponential_noise_is_nonnegative_with_mean_one_over_rate_and_variance_its_square(rate):
    e = _noise("exponential", rate)
    mu = 1.0 / rate
    assert float(e.min()) >= 0.0, "exponential noise must be non-negative"
    assert abs(float(e.mean()) - mu) < 5 * mu / math.sqrt(N_SAMPLES)
    # Var(X) = 1/rate^2; the sample variance has standard error sqrt(mu4 - sigma^4) / sqrt(n) = sqrt(8) / rate^2 / sqrt(n)
    assert abs(float(e.var()) - mu ** 2) < 5 * math.sqrt(8) * mu ** 2 / math.sqrt(N_SAMPLES)
    # the survival function P(e > t) = exp(-rate t)
    for t in (0.5 * mu, mu, 3 * mu):
        p = math.exp(-rate * t)
        assert abs(float((e > t).double().mean()) - p) < 5 * math.sqrt(p * (1 - p) / N_SAMPLES)


def test_appendix_b1_noises_exponential_has_higher_variance_and_is_not_zero_mean():
    """App. B.1: "the exponential distribution has a higher noise variance" than Gaussian sigma = 0.75."""
    (g_kind, sigma), (e_kind, rate) = config.ROBUSTNESS_NOISES
    assert (g_kind, e_kind) == ("gaussian", "exponential")
    g, e = _noise(g_kind, sigma), _noise(e_kind, rate)
    assert float(e.var()) > float(g.var()) * 1.3          # 1/1.15^2 = 0.756 vs 0.75^2 = 0.5625
    assert float(e.mean()) == pytest.approx(1 / rate, rel=0.01)  # a bias of 0.87 std units


def test_noise_is_added_to_the_clean_images_and_seeded():
    clean = torch.linspace(-1, 1, 1000).reshape(10, 1, 10, 10)
    for kind, level in config.ROBUSTNESS_NOISES:
        a = add_noise(clean, kind, level, generator=torch.Generator().manual_seed(3))
        b = add_noise(clean, kind, level, generator=torch.Generator().manual_seed(3))
        c = add_noise(clean, kind, level, generator=torch.Generator().manual_seed(4))
        assert a.shape == clean.shape and a.dtype == clean.dtype
        assert torch.equal(a, b) and not torch.equal(a, c)
        if kind == "exponential":
            assert bool((a >= clean).all())


def test_noise_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown noise"):
        add_noise(torch.zeros(3), "poisson", 1.0)
    with pytest.raises(ValueError, match="> 0"):
        add_noise(torch.zeros(3), "exponential", 0.0)


# ------------------------------------------------------------------------------ the sweep


def _tiny(seed: int, **changes) -> DenoiseConfig:
    cfg = DenoiseConfig(scale="smoke", n_train=4, n_test=2, noise="exponential", noise_level=1.15, n_filters=4,
                        n_patterns=8, epochs=2, batch_size=2, lr_primal=1e-2, lr_dual=1e-3, seed=seed)
    return cfg.replace(**changes)


class _Counting:
    """Wrap a training function: count calls, optionally raise on the ``fail_on``-th call."""

    def __init__(self, fn, fail_on: int | None = None):
        self.fn, self.fail_on, self.calls = fn, fail_on, []

    def __call__(self, cfg, *args, **kwargs):
        self.calls.append(cfg.key())
        if self.fail_on is not None and len(self.calls) == self.fail_on:
            raise KeyboardInterrupt("simulated interruption")
        return self.fn(cfg, *args, **kwargs)


def test_interrupted_sweep_resumes_without_retraining_finished_entries(tmp_path, fake_mnist, monkeypatch):
    cache = Cache(tmp_path / "cache")
    jobs = sweep.sweep_jobs([_tiny(0), _tiny(1)])
    assert [m for m, _ in jobs] == ["primal", "dual", "primal", "dual"]
    run = dict(device=torch.device("cpu"), cache=cache, arrays=fake_mnist, progress=False)
    real_primal, real_dual = experiments.train_primal, experiments.train_dual

    # first run: the second dual (4th job) is interrupted; the first three finish and are cached
    primal, dual = _Counting(real_primal), _Counting(real_dual, fail_on=2)
    monkeypatch.setattr(experiments, "train_primal", primal)
    monkeypatch.setattr(experiments, "train_dual", dual)
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(jobs, **run)
    assert len(primal.calls) == 2 and len(dual.calls) == 2
    assert [sweep.is_cached(cache, m, c) for m, c in jobs] == [True, True, True, False]

    # rerun: only the interrupted job is trained; the others load from the cache
    primal, dual = _Counting(real_primal), _Counting(real_dual)
    monkeypatch.setattr(experiments, "train_primal", primal)
    monkeypatch.setattr(experiments, "train_dual", dual)
    rows = sweep.run_sweep(jobs, **run)
    assert primal.calls == [] and dual.calls == [jobs[3][1].key()]
    assert [r["from_cache"] for r in rows] == [True, True, True, False]
    assert [(r["model"], r["seed"]) for r in rows] == [("primal", 0), ("dual", 0), ("primal", 1), ("dual", 1)]

    # a third run trains nothing and returns the same curves
    primal, dual = _Counting(real_primal), _Counting(real_dual)
    monkeypatch.setattr(experiments, "train_primal", primal)
    monkeypatch.setattr(experiments, "train_dual", dual)
    again = sweep.run_sweep(jobs, **run)
    assert primal.calls == [] and dual.calls == [] and all(r["from_cache"] for r in again)
    for a, b in zip(rows, again):
        assert a["history"].as_dict() == b["history"].as_dict()


def test_sweep_rows_carry_curves_and_final_values(tmp_path, fake_mnist):
    cache = Cache(tmp_path / "cache")
    cfg = _tiny(0)
    jobs = sweep.sweep_jobs([cfg]) + [("dual", cfg)]  # a job listed twice is trained once
    rows = sweep.run_sweep(jobs, device=torch.device("cpu"), cache=cache, arrays=fake_mnist, progress=False)
    p, d, d2 = rows
    assert d2["from_cache"] and not d["from_cache"]
    assert p["n_filters"] == 4 and p["n_patterns"] is None and d["n_patterns"] == 8 and d["n_filters"] is None
    assert p["noise"] == "exponential 1.15" and p["lr"] == 1e-2 and d["lr"] == 1e-3
    assert p["history"].epoch == [0, 1, 2] and d["history"].epoch == [0, 1, 2]
    assert d["train_objective"] == d["history"].train_objective[-1]
    assert d["rebuilt_objective"] == d["history"].rebuilt_objective[-1]
    assert p["rebuilt_objective"] is None and p["max_violation"] is None

    long = sweep.curves_long([p, d])
    n_epochs = 3
    assert len(long["value"]) == (2 + 4) * n_epochs  # primal: train+test; dual: train+test, eq. (4) and (5)
    assert len({len(v) for v in long.values()}) == 1
    final = sweep.curves_long([p, d], final_only=True)
    assert final["epoch"] == [2] * 6
    train_dual = sweep.select(final, network=sweep.DUAL, part="train")
    assert train_dual["value"] == [d["train_objective"]]
    with pytest.raises(ValueError, match="no column"):
        sweep.select(long, colour="red")


def test_curves_skip_the_epochs_whose_test_set_was_not_evaluated():
    hist = History(epoch=[0, 1, 2, 3], train_objective=[1.0, 0.8, 0.7, 0.6],
                   test_loss=[1.0, float("nan"), float("nan"), 0.65])
    row = _fake_row("primal", "a", 0, 0.6, 0.65)
    row.update(history=hist, noise_kind="exponential", n_filters=4)
    long = sweep.curves_long([row])
    test = sweep.select(long, part="test")
    assert test["epoch"] == [0, 3] and test["value"] == [1.0, 0.65]
    assert sweep.select(long, part="train")["epoch"] == [0, 1, 2, 3]
    # a tail mean over an epoch without a test evaluation is refused, not silently NaN
    dual = _fake_row("dual", "a", 0, 0.5, 0.6, rebuilt=(0.5, 0.6))
    dual["history"].test_loss = [1.0, float("nan")]
    with pytest.raises(ValueError, match="not evaluated"):
        robustness.paired_margins([_fake_row("primal", "a", 0, 0.6, 0.65), dual])


def test_sweep_rejects_bad_jobs():
    with pytest.raises(ValueError, match="unknown model"):
        sweep.sweep_jobs([_tiny(0)], models=("primal", "convex"))
    with pytest.raises(ValueError, match="unknown model"):
        sweep.run_sweep([("relu", _tiny(0))], device=torch.device("cpu"), progress=False)
    mri = config.mri_config("smoke", 4)
    with pytest.raises(ValueError, match="MNIST"):
        sweep.run_sweep([("primal", mri)], device=torch.device("cpu"), progress=False)


def test_seeds_for_uses_scale_default_or_count():
    assert sweep.seeds_for("robustness", "smoke") == [0, 1]
    assert sweep.seeds_for("robustness", "cpu") == [0, 1, 2]
    assert sweep.seeds_for("ablation", "cpu", 2, first=5) == [5, 6]
    with pytest.raises(ValueError, match="n_seeds"):
        sweep.seeds_for("robustness", "cpu", 0)
    with pytest.raises(ValueError, match="unknown scale"):
        sweep.seeds_for("robustness", "laptop")
    with pytest.raises(ValueError, match="unknown experiment"):
        sweep.seeds_for("fig2", "cpu")


# ------------------------------------------------------------------------------ robustness margins


def _fake_row(model: str, key: str, seed: int, train: float, test: float, rebuilt=None, noise="exponential 1.15",
              n_patterns=None, sigma=1.15) -> dict:
    hist = History(epoch=[0, 1], train_objective=[1.0, train], test_loss=[1.0, test])
    if rebuilt is not None:
        hist.rebuilt_objective = [1.0, rebuilt[0]]
        hist.rebuilt_test_loss = [1.0, rebuilt[1]]
        hist.max_violation = [0.0, 0.1]
    return {"model": model, "key": key, "seed": seed, "noise": noise, "noise_level": sigma, "n_patterns": n_patterns,
            "train_objective": train, "test_loss": test, "rebuilt_objective": None if rebuilt is None else rebuilt[0],
            "rebuilt_test_loss": None if rebuilt is None else rebuilt[1], "max_violation": 0.1, "history": hist}


def test_paired_margins_are_relative_gaps_of_the_dual_below_the_primal():
    rows = [_fake_row("primal", "a", 0, 0.40, 0.50), _fake_row("dual", "a", 0, 0.30, 0.45, rebuilt=(0.44, 0.60)),
            _fake_row("primal", "b", 1, 0.20, 0.25), _fake_row("dual", "b", 1, 0.20, 0.30, rebuilt=(0.18, 0.25)),
            _fake_row("primal", "c", 2, 0.20, 0.25)]  # no dual: skipped
    pairs = robustness.paired_margins(rows)
    assert [p["seed"] for p in pairs] == [0, 1]
    assert pairs[0]["margin_train"] == pytest.approx(0.25)           # (0.4 - 0.3) / 0.4
    assert pairs[0]["margin_rebuilt_train"] == pytest.approx(-0.10)  # the eq. (5) network ends above
    assert pairs[0]["margin_test"] == pytest.approx(0.10)
    assert pairs[0]["margin_rebuilt_test"] == pytest.approx(-0.20)
    assert pairs[1]["margin_train"] == pytest.approx(0.0) and pairs[1]["margin_test"] == pytest.approx(-0.2)
    summary = {s["margin"]: s for s in robustness.margin_summary(pairs)}
    assert summary["margin_train"]["mean"] == pytest.approx(0.125)
    assert summary["margin_train"]["min"] == pytest.approx(0.0) and summary["margin_train"]["max"] == pytest.approx(0.25)
    assert summary["margin_train"]["seeds"] == 2
    # tail = 2: the mean of the last two epochs (here the initial 1.0 and the final value)
    tail = robustness.paired_margins(rows, tail=2)
    assert tail[0]["primal_train"] == pytest.approx(0.7) and tail[0]["margin_train"] == pytest.approx(0.05 / 0.7)
    with pytest.raises(ValueError, match="> 0"):
        robustness.relative_margin(0.0, 1.0)
    with pytest.raises(ValueError, match="tail"):
        robustness.paired_margins(rows, tail=0)


# ------------------------------------------------------------------------------ Figure 10's threshold rule


def test_patterns_to_reach_returns_smallest_P_within_tolerance():
    counts = [16, 63, 125, 250, 500]
    dual = [0.30, 0.205, 0.2019, 0.2001, 0.1999]
    assert ablation.patterns_to_reach(counts, dual, 0.2) == 125                 # 0.2019 <= 1.01 * 0.2 = 0.202
    assert ablation.patterns_to_reach(counts, dual, 0.2, rel_tol=0.0) == 500
    assert ablation.patterns_to_reach(counts, dual, 0.2, rel_tol=0.05) == 63
    # order does not matter; a dual below the primal counts as reached
    assert ablation.patterns_to_reach(counts[::-1], dual[::-1], 0.2) == 125
    assert ablation.patterns_to_reach([16, 32], [0.1, 0.3], 0.2) == 16
    # the rule does not assume monotonicity: an early lucky P is the answer
    assert ablation.patterns_to_reach([16, 63, 125], [0.3, 0.2, 0.25], 0.2) == 63


def test_patterns_to_reach_none_when_no_P_reaches_the_primal():
    assert ablation.patterns_to_reach([16, 64, 256], [0.5, 0.4, 0.21], 0.2) is None
    assert ablation.patterns_to_reach([16], [float("nan")], 0.2) is None


def test_patterns_to_reach_rejects_bad_input():
    with pytest.raises(ValueError, match="length"):
        ablation.patterns_to_reach([16, 64], [0.1], 0.2)
    with pytest.raises(ValueError, match="distinct"):
        ablation.patterns_to_reach([16, 16], [0.1, 0.2], 0.2)
    with pytest.raises(ValueError, match="reference"):
        ablation.patterns_to_reach([16], [0.1], 0.0)
    with pytest.raises(ValueError, match="rel_tol"):
        ablation.patterns_to_reach([16], [0.1], 0.2, rel_tol=-0.1)


def test_pattern_threshold_table_averages_seeds_per_P():
    rows = [_fake_row("primal", "p5", 0, 0.20, 0.2, sigma=0.5, noise="gaussian 0.5"),
            _fake_row("primal", "p1", 0, 0.05, 0.05, sigma=0.1, noise="gaussian 0.1")]
    for P, vals in ((16, (0.30, 0.32)), (64, (0.21, 0.2)), (256, (0.201, 0.201))):  # sigma 0.5, two seeds
        rows += [_fake_row("dual", f"d{P}-{s}", s, v, v, rebuilt=(v, v), n_patterns=P, sigma=0.5, noise="gaussian 0.5")
                 for s, v in enumerate(vals)]
    rows += [_fake_row("dual", f"e{P}", 0, v, v, rebuilt=(v, v), n_patterns=P, sigma=0.1, noise="gaussian 0.1")
             for P, v in ((16, 0.06), (64, 0.052))]
    table = {r["sigma"]: r for r in ablation.pattern_threshold_table(rows)}
    assert table[0.5]["P_reached"] == 256  # P = 64: mean 0.205 > 0.202
    assert table[0.5]["best_P"] == 256 and table[0.5]["best_dual"] == pytest.approx(0.201)
    assert table[0.5]["primal"] == pytest.approx(0.2) and table[0.5]["max_P"] == 256
    assert table[0.1]["P_reached"] is None and table[0.1]["max_P"] == 64
    with pytest.raises(ValueError, match="both primal and dual"):
        ablation.pattern_threshold_table([r for r in rows if r["model"] == "dual"])
