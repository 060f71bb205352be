"""Figure 3 (notebook 02): MNIST test examples, primal against dual reconstructions.

Paper claim (Sahiner et al. 2021, Sec. 5.1, Fig. 3): for sigma = 0.5 and 0.75, test examples (a) noisy
input, (b) ground truth, (c) output of the primal network (eq. 2) and of the convex dual (eq. 4) show
that "the primal and dual reconstructions are of similar quality". Measured here by the mean test
PSNR of each network (:func:`paper_utils.report.interpret.pixel_psnr`: dB, [0, 1] pixel units, data
range 1, outputs not clipped), the claim holding when primal and dual differ by at most
:data:`TOLERANCE_DB`.

Two bases: the paper's Adam-trained networks of Figure 2 (``published``), and the eq. (5) network of
the certified sampled dual against the best primal seed trained to its stopping rule or its budget
(``optimum``; the statement says which held); both loaded from
notebook 01's cache (:func:`paper_utils.training.denoisers.train_denoisers`,
:func:`paper_utils.training.denoisers.load_or_solve_exact`,
:func:`paper_utils.training.optimum.converged_primals`), computed there when missing.

Letter key: N test images (28 x 28); outputs (N, 1, 28, 28) in normalised units; PSNRs (N,).
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt

from paper_utils.pipeline import config, runtime
from paper_utils.report.claims import Claim, training_note
from paper_utils.report.interpret import pixel_psnr, predict
from paper_utils.report.plotting import show_image
from paper_utils.training.denoisers import DenoiseRun, load_or_solve_exact, train_denoisers
from paper_utils.training.optimum import converged_primals, exact_primal_net

__all__ = ["SIGMAS", "SHOW", "TOLERANCE_DB", "EXACT_TOL", "Fig3Result", "run", "plot"]

#: the two noise levels of Fig. 3
SIGMAS = (0.5, 0.75)
#: test images shown: the first three of the test set
SHOW = (0, 1, 2)
#: "similar quality": mean test PSNRs of primal and dual within this many dB
TOLERANCE_DB = 0.5
#: the certified solutions of notebook 01 (same cache entry)
EXACT_TOL = 1e-6
#: the networks shown per row group: the paper's, then both at the optimum
PUBLISHED, OPTIMUM = ("primal", "dual"), ("primal (optimum basis)", "dual (certified)")
SOURCE = ("Figure 2's models, certified solutions and optimum-basis primal seeds from the cache (computed there "
          "when missing)")


@dataclass
class Fig3Result:
    """Per noise level: network outputs on the test set and per-image PSNRs (dicts keyed by sigma, then
    network name), the tables and the claims."""

    scale: str
    runs: list[DenoiseRun]
    outputs: dict
    psnr: dict
    device_name: str
    claims: list[Claim]
    sizes: dict
    mean_rows: list[dict]
    shown_rows: list[dict]
    optimum_rows: list[dict]
    source: str | None = SOURCE


def _claim(row: dict, basis: str) -> Claim:
    if basis == "published":
        return Claim(name=f"fig3.similar_quality.sigma{row['sigma']}",
                     statement=f"Fig. 3: primal and dual reconstructions are of similar quality (sigma = {row['sigma']})",
                     measured=row["dual - primal"], tolerance=TOLERANCE_DB, holds=abs(row["dual - primal"]) <= TOLERANCE_DB,
                     units="mean test PSNR difference dual - primal (dB, [0, 1] pixel units)", details=row, kind="paper")
    return Claim(name=f"fig3.optimum.similar_quality.sigma{row['sigma']}",
                 statement=f"Fig. 3 at the optimum: the certified dual's eq. (5) network and the best primal seed "
                           f"({row['primal training']}) reconstruct with similar quality (sigma = {row['sigma']})",
                 measured=row["dual - primal"], tolerance=TOLERANCE_DB, holds=abs(row["dual - primal"]) <= TOLERANCE_DB,
                 units="mean test PSNR difference dual - primal (dB, [0, 1] pixel units)", details=row, basis="optimum",
                 kind="paper")


def run(scale: str, *, seed: int = 0, device="auto", progress: bool = True) -> Fig3Result:
    """Load (or train) Figure 2's networks at :data:`SIGMAS`, predict the test set, measure PSNRs, then
    the same with the certified dual's eq. (5) network and the best primal seed of the optimum basis."""
    dev = runtime.resolve_device(device)
    cfgs = [config.mnist_denoise_config(scale, sigma, seed=seed) for sigma in SIGMAS]
    runs = [train_denoisers(cfg, device=dev, progress=progress) for cfg in cfgs]

    psnr, outputs = {}, {}
    for r in runs:
        sigma = r.cfg.noise_level
        outputs[sigma] = {"primal": predict(r.primal, r.test.noisy), "dual": predict(r.dual, r.test.noisy)}
        psnr[sigma] = {name: pixel_psnr(out, r.test) for name, out in outputs[sigma].items()}
        psnr[sigma]["noisy input"] = pixel_psnr(r.test.noisy, r.test)
    mean_rows = [{"sigma": f"{s:g}", "n_test": len(p["dual"]), "noisy input": p["noisy input"].mean(),
                  "primal": p["primal"].mean(), "dual": p["dual"].mean(),
                  "dual - primal": p["dual"].mean() - p["primal"].mean()} for s, p in psnr.items()]
    shown_rows = [{"sigma": f"{s:g}", "image": i, **{k: float(v[i]) for k, v in p.items()}}
                  for s, p in psnr.items() for i in SHOW]
    claims = [_claim(row, "published") for row in mean_rows]

    budget = config.optimum_budget(scale)
    exact = [load_or_solve_exact(r, tol=EXACT_TOL) for r in runs]
    best_primal = [min(converged_primals(r, budget, device=dev, all_seeds=r.cfg.noise_level == 0.5, progress=progress),
                       key=lambda c: c.objective) for r in runs]
    for r, ex, best in zip(runs, exact, best_primal):
        sigma = r.cfg.noise_level
        outputs[sigma]["primal (optimum basis)"] = predict(best.to_primal(r.cfg.kernel_size).to(dev), r.test.noisy)
        outputs[sigma]["dual (certified)"] = predict(exact_primal_net(r, ex), r.test.noisy)
        for name in OPTIMUM:
            psnr[sigma][name] = pixel_psnr(outputs[sigma][name], r.test)
    opt_rows = [{"sigma": f"{s:g}", "primal (optimum basis)": p["primal (optimum basis)"].mean(),
                 "dual (certified)": p["dual (certified)"].mean(),
                 "dual - primal": p["dual (certified)"].mean() - p["primal (optimum basis)"].mean(),
                 "primal training": training_note([best.converged])}
                for (s, p), best in zip(psnr.items(), best_primal)]
    claims += [_claim(row, "optimum") for row in opt_rows]

    c0 = cfgs[0]
    sizes = {"n_train": c0.n_train, "n_test": c0.n_test, "m": c0.n_filters, "P": c0.n_patterns, "epochs": c0.epochs,
             "sigma": SIGMAS, "primal seeds": budget.seeds}
    return Fig3Result(scale, runs, outputs, psnr, str(dev), claims, sizes, mean_rows, shown_rows, opt_rows)


def _pixels(data, image):
    """Normalised units back to [0, 1] pixel units (``pixel = mean + std * value``)."""
    return data.mean + data.std * image


def plot(result: Fig3Result):
    """Per noise level (column groups): (a) noisy input, (b) ground truth, (c) network output, in [0, 1]
    pixel units (grey scale clipped to [0, 1] for display only); primal rows, dual rows, then both
    networks at the optimum on the first shown image. Each output is labelled with its PSNR."""
    rows = [(name, i) for name in PUBLISHED for i in SHOW] + [(name, SHOW[0]) for name in OPTIMUM]
    fig, axes = plt.subplots(len(rows), 3 * len(SIGMAS), figsize=(1.6 * 3 * len(SIGMAS), 1.75 * len(rows)))
    for g, run_ in enumerate(result.runs):
        s, test = run_.cfg.noise_level, run_.test
        for r, (name, i) in enumerate(rows):
            head = r % len(SHOW) == 0 and r < 2 * len(SHOW)  # column titles above the first primal and dual rows
            show_image(axes[r, 3 * g], _pixels(test, test.noisy[i]), title=f"(a) noisy, sigma={s:g}" if head else "",
                       vmin=0, vmax=1)
            show_image(axes[r, 3 * g + 1], _pixels(test, test.clean[i]), title="(b) ground truth" if head else "", vmin=0, vmax=1)
            optimum = "(" in name                 # the two optimum rows: two-line labels fit their panels
            psnr = f"{result.psnr[s][name][i]:.1f} dB"
            show_image(axes[r, 3 * g + 2], _pixels(test, result.outputs[s][name][i]), vmin=0, vmax=1,
                       title=f"(c) {name.split()[0]} at optimum\n{psnr}" if optimum else f"(c) {name}, {psnr}")
            axes[r, 3 * g].set_ylabel(f"{name}, test #{i}".replace(" (", "\n("), fontsize=8 if optimum else 9)
    fig.suptitle("Figure 3: MNIST test examples, primal vs dual (paper's training), then both at the optimum "
                 f"(last two rows), scale = {result.scale}")
    fig.tight_layout()
    return fig
