"""Figure 5 (notebook 04): clusters of activation codes, two-layer against four-layer (two unrolled
iterations).

Paper claim (Sahiner et al. 2021, Sec. 4.2 and 5.1, Fig. 5): a forward pass of the dual network is a
clustering of the patches followed by linear filtering per cluster (eq. 8). Each output pixel p has a
binary code ``d(p)``, ``d_i(p) = 1[y_p^T g_i >= 0]`` over the non-zero dual filters; k-means (k = 12)
of these codes on clean test images (sigma = 0.75) gives Fig. 5(a). For (b), a four-layer network of two
unrolled iterations of the two-layer architecture (:mod:`paper_utils.training.unrolled`), trained end to
end, is clustered the same way at each iteration: "the clustering is more complex in the second
iteration than the first", and "the clusters from the first iteration are nearly identical to those of
the single unrolled iteration".

Measured: codes (:func:`paper_utils.report.interpret.dual_codes`, :func:`~paper_utils.report.interpret.primal_codes`)
over the non-zero filters, k-means of all pixels of :data:`N_IMAGES` clean test images, the adjusted Rand
index (ARI) over non-background pixels, and the number of distinct codes per iteration. The baseline of
the ARI is an untrained two-layer network (Kaiming initialisation): its clusters already agree with the
trained two-layer network's at ARI about 0.8 on clean digits (the clusters follow the digits' strokes
whatever the filters), so a fixed threshold (the retired ``ARI >= 0.8``) says nothing. The rule
(:func:`beats_baseline`): the trained first iteration's ARI exceeds the untrained network's by at least
:data:`ARI_MARGIN`. Two bases: the Adam-trained two-layer networks of Figure 2
(``published``) and the certified dual and the best primal seed trained to its stopping rule or its budget
(``optimum``; the statements say which held), from notebook 01's
cache; the unrolled network is trained the paper's way and cached under ``unrolled``.

Letter key: N images (28 x 28); codes (N, 28, 28, m') over the m' kept filters (m' <= P for the dual,
<= m for a primal); cluster labels (N, 28, 28).
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import ListedColormap

from paper_utils.nets.primal import PrimalNet
from paper_utils.pipeline import config, runtime
from paper_utils.report.claims import Claim, training_note
from paper_utils.report.interpret import (NULL_REL_TOL, adjusted_rand, cluster_codes, dual_codes, foreground_mask,
                                          match_labels, primal_codes)
from paper_utils.report.plotting import show_image
from paper_utils.training.denoisers import load_or_solve_exact, train_denoisers
from paper_utils.training.optimum import converged_primals, exact_dual_net
from paper_utils.training.unrolled import INIT_SEED_OFFSET, load_or_train_unrolled

__all__ = ["SIGMA", "K", "N_INIT", "N_IMAGES", "N_SHOW", "ARI_MARGIN", "EXACT_TOL", "PAIRS", "Fig5Result",
           "beats_baseline", "run", "plot"]

SIGMA = 0.75     # the noise level of Fig. 5
K = 12           # k-means clusters (paper)
N_INIT = 4       # k-means restarts (k-means++ init, seeded); the best objective is kept
N_IMAGES = 16    # clean test images whose pixels are clustered together
N_SHOW = 6       # of which the first N_SHOW are drawn
#: "nearly identical" beyond chance: the trained first iteration's ARI with the two-layer clusters exceeds
#: the untrained two-layer network's ARI with them by at least this much (ARI units, non-background pixels)
ARI_MARGIN = 0.05
#: the certified solution of notebook 01 (same cache entry)
EXACT_TOL = 1e-6
#: the clusterings compared by ARI: (clusters, vs)
PAIRS = (("(b) iteration 1", "(a) dual d(p)"), ("(b) iteration 1", "(a) primal"), ("(a) primal", "(a) dual d(p)"),
         ("(b) iteration 2", "(b) iteration 1"), ("untrained two-layer", "(a) dual d(p)"),
         ("untrained two-layer", "(a) primal"), ("untrained two-layer", "(b) iteration 1"),
         ("(a) primal at its initialisation", "(a) primal"), ("(b) iteration 1", "(a) certified dual d(p)"),
         ("(b) iteration 1", "(a) primal, optimum basis"), ("untrained two-layer", "(a) certified dual d(p)"),
         ("untrained two-layer", "(a) primal, optimum basis"))
#: the cluster maps drawn, below the clean input
MAP_ROWS = ("(a) dual d(p)", "(a) primal", "(a) certified dual d(p)", "(a) primal, optimum basis", "(b) iteration 1",
            "(b) iteration 2")
SOURCE = ("Figure 2's models, certified solution and optimum-basis primal seed from the cache; the unrolled network "
          "from the cache (each computed there when missing)")


@dataclass
class Fig5Result:
    """The clean images, cluster labels per code (name -> (N, 28, 28) array), the tables and the claims."""

    scale: str
    clean: torch.Tensor
    labels: dict
    distinct: dict
    device_name: str
    claims: list[Claim]
    sizes: dict
    network_rows: list[dict]
    code_rows: list[dict]
    ari_rows: list[dict]
    n_pixels: int
    n_foreground: int
    source: str | None = SOURCE


def beats_baseline(trained_ari: float, untrained_ari: float, margin: float = ARI_MARGIN) -> bool:
    """The rule of ``fig5.*first_iteration_beats_untrained*``: the trained network's ARI with the reference
    clusters exceeds the untrained baseline's by at least ``margin``."""
    return trained_ari - untrained_ari >= margin


def _claims(ari: list[dict], distinct: dict, *, primal_note: str = "after its budget (not converged)") -> list[Claim]:
    row = {(r["clusters"], r["vs"]): r for r in ari}
    claims = []
    refs = {"(a) dual d(p)": ("dual", False), "(a) primal": ("primal", False),
            "(a) certified dual d(p)": ("dual", True), "(a) primal, optimum basis": ("primal", True)}
    for ref, (net, optimum) in refs.items():
        value = row[("(b) iteration 1", ref)]["ARI non-background"]
        chance = row[("untrained two-layer", ref)]["ARI non-background"]
        shown = ref.replace("optimum basis", f"optimum basis, {primal_note}")
        claims.append(Claim(
            name=f"fig5.{'optimum.' if optimum else ''}first_iteration_beats_untrained.{net}",
            statement=f"Fig. 5: the first unrolled iteration's clusters are nearly identical to the two-layer network's "
                      f"({shown}), judged against chance: its ARI with them exceeds an untrained two-layer network's "
                      f"ARI with them by at least {ARI_MARGIN:g} (a negative value: the untrained network matches better)",
            measured=value - chance, tolerance=ARI_MARGIN, holds=beats_baseline(value, chance),
            units="ARI(first iteration) - ARI(untrained two-layer network), each against the two-layer clusters, "
                  "non-background pixels",
            details={**row[("(b) iteration 1", ref)], "trained_ari": value, "untrained_ari": chance},
            basis="optimum" if optimum else "published", kind="paper"))
    ratio = distinct["(b) iteration 2"] / distinct["(b) iteration 1"]
    claims.append(Claim(name="fig5.second_iteration_more_complex",
                        statement="Fig. 5(b): the clustering is more complex in the second iteration than in the first",
                        measured=ratio, tolerance=1.0, holds=ratio > 1.0,
                        units="number of distinct codes, iteration 2 / iteration 1", details=distinct, kind="paper"))
    return claims


def run(scale: str, *, seed: int = 0, device="auto", progress: bool = True) -> Fig5Result:
    """Load (or train) the two-layer networks at sigma = 0.75, the unrolled network, the certified dual
    and the optimum basis's primal seed; code, cluster and compare the pixels of :data:`N_IMAGES` clean test images."""
    dev = runtime.resolve_device(device)
    cfg = config.mnist_denoise_config(scale, SIGMA, seed=seed)
    run_ = train_denoisers(cfg, device=dev, progress=progress)
    unrolled, unrolled_hist = load_or_train_unrolled(cfg, run_.train, run_.test, device=dev, progress=progress)
    exact = load_or_solve_exact(run_, tol=EXACT_TOL)
    primal_seeds = converged_primals(run_, config.optimum_budget(scale), device=dev, all_seeds=False, progress=progress)
    best_primal = min(primal_seeds, key=lambda c: c.objective)
    network_rows = [{"network": name, "test loss": hist.test_loss[-1], "epochs": hist.epoch[-1]}
                    for name, hist in (("(a) two-layer primal", run_.primal_history),
                                       ("(a) two-layer dual", run_.dual_history),
                                       ("(b) four-layer (2 unrolled iterations)", unrolled_hist))]

    clean = run_.test.clean[:N_IMAGES].to(dev)
    with torch.no_grad():
        y, x1, x2 = unrolled.iterates(clean)
    untrained = PrimalNet(cfg.n_filters, generator=torch.Generator().manual_seed(seed + 2 * INIT_SEED_OFFSET))
    initial = PrimalNet(cfg.n_filters, generator=torch.Generator().manual_seed(cfg.seed))  # (a)'s start
    codes = {"(a) dual d(p)": dual_codes(run_.dual, clean, NULL_REL_TOL),
             "(a) primal": primal_codes(run_.primal, clean, NULL_REL_TOL),
             "(b) iteration 1": primal_codes(unrolled.iterations[0], y, NULL_REL_TOL),
             "(b) iteration 2": primal_codes(unrolled.iterations[1], x1, NULL_REL_TOL),
             "untrained two-layer": primal_codes(untrained.to(dev), clean, NULL_REL_TOL),
             "(a) primal at its initialisation": primal_codes(initial.to(dev), clean, NULL_REL_TOL),
             "(a) certified dual d(p)": dual_codes(exact_dual_net(run_, exact), clean, NULL_REL_TOL),
             "(a) primal, optimum basis": primal_codes(best_primal.to_primal(cfg.kernel_size).to(dev), clean, NULL_REL_TOL)}
    distinct = {name: len(np.unique(c.reshape(-1, c.shape[-1]).cpu().numpy(), axis=0)) for name, c in codes.items()}
    code_rows = [{"codes": name, "filters kept": c.shape[-1], "distinct codes": distinct[name]} for name, c in codes.items()]

    labels = {name: cluster_codes(c, K, seed=seed, n_init=N_INIT) for name, c in codes.items()}
    fg = foreground_mask(clean.cpu(), cfg.kernel_size)
    ari = [{"clusters": a, "vs": b, "ARI all pixels": adjusted_rand(labels[a], labels[b]),
            "ARI non-background": adjusted_rand(labels[a], labels[b], fg)} for a, b in PAIRS]

    sizes = {"n_train": cfg.n_train, "m": cfg.n_filters, "P": cfg.n_patterns, "epochs": cfg.epochs, "sigma": SIGMA,
             "images clustered": N_IMAGES, "k": K}
    claims = _claims(ari, distinct, primal_note=training_note([best_primal.converged]))
    return Fig5Result(scale, clean.cpu(), labels, distinct, str(dev), claims, sizes, network_rows,
                      code_rows, ari, fg.numel(), int(fg.sum()))


def plot(result: Fig5Result):
    """Cluster maps of the first :data:`N_SHOW` images below the clean input, one colour per cluster (12
    qualitative colours); every clustering's labels matched to those of (a)'s dual codes (Hungarian
    matching of overlaps), which renames clusters only. Returns the figure."""
    tab10 = [c for i, c in enumerate(plt.get_cmap("tab10").colors) if i != 7]  # all but its grey
    cmap = ListedColormap(["#dddddd", *tab10, "black", "gold"])                 # 12 qualitative colours
    shown = {name: match_labels(lab, result.labels["(a) dual d(p)"]) for name, lab in result.labels.items()}
    fig, axes = plt.subplots(len(MAP_ROWS) + 1, N_SHOW, figsize=(1.6 * N_SHOW, 1.7 * (len(MAP_ROWS) + 1)), squeeze=False)
    for j in range(N_SHOW):
        show_image(axes[0, j], result.clean[j], title=f"test #{j}")
        for r, name in enumerate(MAP_ROWS, start=1):
            show_image(axes[r, j], shown[name][j], cmap=cmap, vmin=-0.5, vmax=K - 0.5)
    for r, name in enumerate(["clean input", *MAP_ROWS]):
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.suptitle(f"Figure 5: k-means (k = {K}) of activation codes, sigma = {SIGMA:g}, scale = {result.scale}", fontsize=10)
    fig.tight_layout()
    return fig
