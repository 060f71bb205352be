"""Notebook 11's primal seeds (paper_utils.figures.pattern_generation): on every training image they are
notebook 01's converged primals, read from (or written to) the same entries."""

from __future__ import annotations

import dataclasses

from paper_utils.figures import pattern_generation as gen
from paper_utils.pipeline import config
from paper_utils.pipeline.cache import Cache


def test_the_seeds_on_every_training_image_are_notebook_01s_converged_primals(roots, fake_mnist, monkeypatch):
    monkeypatch.setattr(gen, "load_mnist", lambda: fake_mnist)
    cfg = dataclasses.replace(config.mnist_denoise_config("smoke", 0.5), n_train=3, n_test=2, n_filters=8)
    budget = dataclasses.replace(config.optimum_budget("smoke"), seeds=(0, 1), adam_epochs=1, lbfgs_max_iter=4)
    subset = gen._primal_of_subset(cfg, cfg.n_train, budget, device="cpu", progress=False)
    cache = Cache()
    shared = gen._primal_of_figure2(cfg, budget, device="cpu", cache=cache, progress=False)
    # the same computation, bit for bit, as the subset path over all images
    assert [r["objective"] for r in shared] == [r["objective"] for r in subset]
    assert [r["seed"] for r in shared] == [0, 1]
    # written as notebook 01's converged entries (with the test loss notebook 01 reads), then read back
    entries = sorted(p.name for p in (roots / "build" / "cache" / "converged").glob("*.pt"))
    assert len(entries) == 2 and all("init0kaiming" in e or "init1kaiming" in e for e in entries)
    from paper_utils.training.convergence import load_or_converge_primal

    train, test = gen.mnist_denoising(cfg.n_train, cfg.n_test, cfg.noise, cfg.noise_level, seed=cfg.seed,
                                      arrays=fake_mnist)
    again = load_or_converge_primal(cfg, train, test, init_seed=1, adam_epochs=1, lbfgs_max_iter=4,
                                    time_limit=budget.time_limit, cache=cache, progress=False)
    assert again.objective == shared[1]["objective"] and again.test_loss is not None
