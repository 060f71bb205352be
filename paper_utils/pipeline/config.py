"""Frozen experiment configurations, one per scale.

Every notebook takes ``scale`` as a papermill parameter and maps it here:

- ``smoke``: CI and nbval; each notebook's own compute about a minute or less on 2 CPU cores.
- ``cpu``:   the default of ``make figures``; every claim still visible, on a laptop CPU.
- ``paper``: the paper's settings (Sahiner et al. 2021, Sec. 5 and App. B), meant for one GPU.

A configuration is a frozen dataclass; :meth:`DenoiseConfig.key` hashes every field that changes
the trained model, so the model cache (:mod:`paper_utils.pipeline.cache`) is keyed by configuration.
Unknown scale names raise ``ValueError``; there are no alias keys.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass

SCALES = ("smoke", "cpu", "paper")
DATASETS = ("mnist", "mri")
NOISES = ("gaussian", "exponential", "undersampling")
DUAL_SOLVERS = ("adam_hinge", "exact")

#: bump when a code change alters trained models, so stale cache entries are not reused
MODEL_CODE_VERSION = "4"


#: set (to anything but "" or "0") for a dry run: the paper's sizes with every budget cut to one epoch and a
#: few iterations, to measure memory (``benchmarks/memory_plan.py``); refused at ``smoke`` and ``cpu``
DRY_RUN_ENV = "PAPER_UTILS_DRY_RUN"
#: a dry run's L-BFGS iterations and seconds of each certified solve (it stops after its first steps)
DRY_RUN_LBFGS_ITER = 3
DRY_RUN_SOLVE_SECONDS = 1.0


def dry_run(scale: str) -> bool:
    """Whether ``$PAPER_UTILS_DRY_RUN`` asks for a dry run; ``ValueError`` if it does at a scale other than
    ``paper`` (a dry run's results must never pass for a smoke or cpu run's)."""
    on = os.environ.get(DRY_RUN_ENV, "") not in ("", "0")
    if on and scale != "paper":
        raise ValueError(f"${DRY_RUN_ENV} is set: a dry run cuts the paper scale's budgets to measure its memory; "
                         f"it is refused at scale {scale!r}")
    return on


def _sizes(table: dict, scale: str) -> dict:
    """``table[scale]``, with one epoch in a dry run."""
    sizes = dict(table[check_scale(scale)])
    if dry_run(scale):
        sizes["epochs"] = 1
    return sizes


def check_scale(scale: str) -> str:
    """Return ``scale`` if known, else raise ``ValueError`` naming the valid scales."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; expected one of {SCALES}")
    return scale


#: the last epochs whose test losses a run with ``test_every > 1`` still records: Figures 8-9 compare the
#: mean of the last three (:func:`paper_utils.figures.fig08_09_noise_robustness.paired_margins`)
TEST_TAIL = 3
#: ``test_every`` of the paper-scale Adam runs whose figures read the final test losses, not every epoch's
#: (Figures 8-10): at P = 8,000 the 10,000 test images cost about 35 s per evaluation on 2 cores, 85% of
#: a dual's time when evaluated after all 30 epochs
PAPER_TEST_EVERY = 5


@dataclass(frozen=True)
class DenoiseConfig:
    """One denoising/reconstruction experiment: data, corruption, both networks and their training.

    Attributes:
        scale: the scale this configuration belongs to (``smoke``, ``cpu`` or ``paper``).
        n_train: number of training images N (MNIST paper: 600; MRI: slices).
        n_test: number of test images (MNIST paper: all 10,000).
        noise: ``"gaussian"`` (std ``noise_level``) or ``"exponential"`` (rate ``noise_level``) for
            MNIST; ``"undersampling"`` for MRI (``noise_level`` is then the acceleration R).
        noise_level: sigma of the Gaussian noise, or rate lambda of the exponential noise,
            in units of the normalised images (dataset mean 0, std 1); MRI: acceleration R.
        dataset: ``"mnist"`` or ``"mri"``.
        kernel_size: first-layer filter size k (padding k // 2, stride 1).
        n_filters: primal hidden filters m.
        n_patterns: sampled sign patterns P of the dual, eq. (4).
        epochs: passes over the training set for both networks.
        batch_size: images per Adam step (paper: 25).
        lr_primal, lr_dual: Adam learning rates (paper, App. B.2: 1e-3 and 1e-5).
        beta: weight decay, NOT averaged over samples (paper: 1e-5).
        hinge_weight: weight rho of the hinge penalty on the dual's constraint violations
            (per-pixel averaged, like the loss); the paper does not state it.
        residual: regress on ``X - Y`` (eq. 6) instead of ``X``.
        seed: seeds data subset, noise, initialisation, patterns and batch order.
        test_every: evaluate the test set after every ``test_every``-th epoch, the initialisation and
            each of the last :data:`TEST_TAIL` epochs (:meth:`evaluates_test`); other epochs record NaN
            in the test curves. 1 (the default, and the paper's per-epoch curves) evaluates every epoch.
            It changes what is measured, never the training: the weights are the same bits for any value.
            The key leaves it out when it is 1, so entries made before it existed keep their names.
    """

    scale: str
    n_train: int
    n_test: int
    noise: str
    noise_level: float
    kernel_size: int = 3
    n_filters: int = 512
    n_patterns: int = 8000
    epochs: int = 20
    batch_size: int = 25
    lr_primal: float = 1e-3
    lr_dual: float = 1e-5
    beta: float = 1e-5
    hinge_weight: float = 1.0
    residual: bool = False
    seed: int = 0
    dataset: str = "mnist"
    test_every: int = 1

    def __post_init__(self) -> None:
        check_scale(self.scale)
        if self.noise not in NOISES:
            raise ValueError(f"unknown noise {self.noise!r}; expected one of {NOISES}")
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}; expected one of {DATASETS}")
        if (self.dataset == "mri") != (self.noise == "undersampling"):
            raise ValueError("noise 'undersampling' goes with dataset 'mri' and only with it")
        for name in ("n_train", "n_test", "kernel_size", "n_filters", "n_patterns", "epochs", "batch_size", "test_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (padding k // 2 keeps the size), got {self.kernel_size}")
        if self.noise_level <= 0 or self.beta < 0 or self.lr_primal <= 0 or self.lr_dual <= 0:
            raise ValueError("noise_level, lr_primal and lr_dual must be > 0 and beta >= 0")

    def replace(self, **changes) -> "DenoiseConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def evaluates_test(self, epoch: int) -> bool:
        """Whether training evaluates the test set after ``epoch`` (0: the initialisation): always at
        ``test_every == 1``; else at epoch 0, every ``test_every``-th epoch and the last :data:`TEST_TAIL`."""
        return epoch % self.test_every == 0 or epoch > self.epochs - TEST_TAIL

    def key(self) -> str:
        """Short hash of every field (``test_every`` only when it is not 1) and :data:`MODEL_CODE_VERSION`:
        the model-cache key."""
        fields = self.as_dict()
        if fields["test_every"] == 1:
            del fields["test_every"]
        blob = json.dumps({**fields, "code": MODEL_CODE_VERSION}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def label(self) -> str:
        """Human-readable name, e.g. ``gaussian0.5-n600-m512-P8000``."""
        return (f"{self.dataset}-{self.noise}{self.noise_level:g}-k{self.kernel_size}-n{self.n_train}-m{self.n_filters}"
                f"-P{self.n_patterns}-e{self.epochs}-s{self.seed}")


# Per-scale sizes for the MNIST figures (Fig. 2-5, 10). Paper: App. B.2.
_MNIST_SIZES = {
    "smoke": dict(n_train=50, n_test=100, n_filters=64, n_patterns=256, epochs=3),
    "cpu": dict(n_train=600, n_test=1000, n_filters=512, n_patterns=2000, epochs=12),
    "paper": dict(n_train=600, n_test=10000, n_filters=512, n_patterns=8000, epochs=30),
}

#: Figure 2's noise levels (paper Sec. 5.1).
FIG2_SIGMAS = (0.25, 0.5, 0.75)


def mnist_denoise_config(scale: str, sigma: float, *, seed: int = 0) -> DenoiseConfig:
    """Figure 2 (and 3-5): Gaussian denoising, primal m=512 vs dual P=8000 at paper scale.

    Args:
        scale: ``smoke``, ``cpu`` or ``paper``.
        sigma: Gaussian noise std in normalised units (paper: 0.25, 0.5, 0.75).
        seed: seed of data subset, noise, init, patterns and batch order.
    """
    sizes = _sizes(_MNIST_SIZES, scale)
    return DenoiseConfig(scale=scale, noise="gaussian", noise_level=sigma, seed=seed,
                         lr_primal=1e-3, lr_dual=1e-5, **sizes)


# The "optimum" basis (docs/findings.md): the primal trained by
# paper_utils.training.convergence.converge_primal from several Kaiming-uniform initialisations. Iteration budgets
# (not time limits) keep runs reproducible: the time limit is a safety net far above a budget's expected
# time, and a seed stopped by it says so. At `cpu` scale on 2 CPU cores a full-batch L-BFGS iteration at
# m = 512 (M = 470,400 patches) costs about 0.15 s with the fused numba kernel of paper_utils.nets.primal_kernels;
# the budget there rarely reaches the stopping rule, and every result says whether the rule held.
# `paper` scale (one GPU) gives the rule room to hold.
@dataclass(frozen=True)
class OptimumBudget:
    """How the converged primal is trained at one scale.

    Attributes:
        seeds: initialisation seeds (the paper's width m; at least 3 at every scale).
        adam_epochs: minibatch Adam epochs with cosine decay before L-BFGS.
        lbfgs_max_iter: full-batch L-BFGS iterations at most.
        time_limit: safety net in seconds per seed (``None``: none).
        extra_seeds_all_noises: whether every noise level gets all ``seeds`` (else only the headline one,
            Figure 2's sigma = 0.5, and the others seed 0 alone).
        exact_time_limit: wall-clock bound in seconds for each extra exact solve of the optimum basis
            (Figures 8-10; ``None``: none). A solve stopped by it is still certified, with its larger gap.
    """

    seeds: tuple[int, ...]
    adam_epochs: int
    lbfgs_max_iter: int
    time_limit: float | None = None
    extra_seeds_all_noises: bool = True
    exact_time_limit: float | None = None


_OPTIMUM_BUDGETS = {
    "smoke": OptimumBudget(seeds=(0, 1, 2), adam_epochs=2, lbfgs_max_iter=30),
    # cpu: 300 L-BFGS iterations per seed (about 60 s each on 2 cores with the fused kernel); the exact
    # solves stop on the certified gap (tol), the clocks are safety nets far above the budgets
    "cpu": OptimumBudget(seeds=(0, 1, 2), adam_epochs=5, lbfgs_max_iter=300, time_limit=1800.0,
                         extra_seeds_all_noises=False, exact_time_limit=1800.0),
    # paper: ours, sized so that the whole fits 2 cores in pieces (paper_utils.paper_pieces): one seed, 30 Adam
    # epochs and at most 5,000 L-BFGS iterations at about 0.17 s each, is about 16 minutes; three seeds at the
    # headline sigma = 0.5, seed 0 at the others
    "paper": OptimumBudget(seeds=(0, 1, 2), adam_epochs=30, lbfgs_max_iter=5000, extra_seeds_all_noises=False),
}


def optimum_budget(scale: str) -> OptimumBudget:
    """The converged-primal schedule of ``scale`` (see :class:`OptimumBudget`); a dry run's is one Adam
    epoch and :data:`DRY_RUN_LBFGS_ITER` L-BFGS iterations, each certified solve :data:`DRY_RUN_SOLVE_SECONDS`."""
    budget = _OPTIMUM_BUDGETS[check_scale(scale)]
    if dry_run(scale):
        budget = dataclasses.replace(budget, adam_epochs=1, lbfgs_max_iter=DRY_RUN_LBFGS_ITER,
                                     exact_time_limit=DRY_RUN_SOLVE_SECONDS)
    return budget


# Robustness, App. B.1 (Fig. 8, 9): m = 25 primal filters (lr 1e-1), P = 8000 patterns (lr 1e-3).
_ROBUSTNESS_SIZES = {
    "smoke": dict(n_train=50, n_test=100, n_patterns=256, epochs=8),
    "cpu": dict(n_train=600, n_test=500, n_patterns=2000, epochs=10),
    "paper": dict(n_train=600, n_test=10000, n_patterns=8000, epochs=30),
}
#: App. B.1's two noises: Gaussian sigma = 0.75 and exponential with rate lambda = 1.15
ROBUSTNESS_NOISES = (("gaussian", 0.75), ("exponential", 1.15))


def robustness_config(scale: str, noise: str, level: float, *, seed: int = 0) -> DenoiseConfig:
    """Figures 8-9: primal m = 25 (Adam lr 1e-1) vs dual P = 8000 (Adam lr 1e-3), batch 25."""
    sizes = _sizes(_ROBUSTNESS_SIZES, scale)
    return DenoiseConfig(scale=scale, noise=noise, noise_level=level, seed=seed, n_filters=25,
                         lr_primal=1e-1, lr_dual=1e-3, test_every=_test_every(scale), **sizes)


def _test_every(scale: str) -> int:
    """:data:`PAPER_TEST_EVERY` at paper scale, else 1 (every epoch)."""
    return PAPER_TEST_EVERY if check_scale(scale) == "paper" else 1


# Ablation, App. B.3 (Fig. 10): dual loss against the number of sampled patterns P.
ABLATION_SIGMAS = (0.5, 0.1)
_ABLATION_PATTERNS = {
    "smoke": (16, 64, 256),
    # cpu: up to Fig. 2's cpu-scale P = 2000 (whose sigma-0.5 dual is then notebook 01's, from the cache);
    # P = 4000 for both sigmas would add about 6 minutes on 2 cores
    "cpu": (16, 32, 63, 125, 250, 500, 1000, 2000),
    "paper": (16, 32, 63, 125, 250, 500, 1000, 2000, 4000, 8000),
}


def ablation_pattern_counts(scale: str) -> tuple[int, ...]:
    """The log-spaced numbers of sampled sign patterns P of Figure 10 at ``scale``."""
    return _ABLATION_PATTERNS[check_scale(scale)]


def ablation_config(scale: str, sigma: float, n_patterns: int, *, seed: int = 0) -> DenoiseConfig:
    """Figure 10: Figure 2's setting (primal m = 512) with the dual's P varied. At paper scale the test set
    is evaluated every :data:`PAPER_TEST_EVERY` epochs below Figure 2's P; at Figure 2's P the configuration
    is :func:`mnist_denoise_config`'s own (the primal, the converged seeds and the sigma-0.5 dual that
    notebook 01 trains with every epoch's curves)."""
    fig2 = mnist_denoise_config(scale, sigma, seed=seed)
    if n_patterns == fig2.n_patterns:
        return fig2
    return fig2.replace(n_patterns=n_patterns, test_every=_test_every(scale))


# MRI, App. B.4 (Fig. 6, 7, 11): residual network, k = 7, padding 3; primal m = 1024 (lr 1e-3),
# dual P = 5000 (lr 5e-7), batch 2, 25 epochs, beta 1e-5. n_train / n_test count slices (each gives
# two single-channel examples, real and imaginary parts). The simulated source has 424 distinct
# training and 290 distinct test slices (paper_utils.mri.sources); n_train above 424 is reached by
# augmentation (fresh phase, coils, noise, mask), n_test below 290 is an evenly spaced subset.
MRI_ACCELERATIONS = (2, 4, 8)
_MRI_SIZES = {
    "smoke": dict(n_train=8, n_test=4, n_filters=64, n_patterns=128, epochs=2),
    # cpu: notebooks 05, 06 and 09 together within about 10 minutes on 2 cores, data preparation included
    "cpu": dict(n_train=32, n_test=16, n_filters=256, n_patterns=250, epochs=3),
    # paper: 1,000 training slices (424 distinct + augmented draws; the paper had 1,741) and 200 test
    # slices (the paper had 370), the paper's widths, patterns and epochs
    "paper": dict(n_train=1000, n_test=200, n_filters=1024, n_patterns=5000, epochs=25),
}
# The optimum basis (paper_utils.mri.optimum): the exact certified dual and the converged primal on
# n_slices training slices cropped to crop x crop (None: 80 x 80); the exact solver's time grows with
# M = 2 n_slices crop^2 patches and with P (measured at smoke size, 1 slice 80 x 80, P = 128: 1-4 min).
_MRI_OPTIMUM = {
    "smoke": dict(accelerations=(4,), n_slices=1, crop=24, seeds=(0,), time_limit=10.0, adam_epochs=2,
                  lbfgs_max_iter=60),
    # cpu: every R; the exact solve stops on its certified gap (tol = 1e-6: 80-111 s on 2 cores), the
    # converged primal on L-BFGS's 300 iterations (about 30 s); the time limit is a safety net
    "cpu": dict(accelerations=(2, 4, 8), n_slices=2, crop=None, seeds=(0,), time_limit=1800.0, adam_epochs=5,
                lbfgs_max_iter=300),
    "paper": dict(accelerations=(2, 4, 8), n_slices=16, crop=None, seeds=(0, 1, 2), time_limit=1800.0,
                  adam_epochs=20, lbfgs_max_iter=2000),
}


def mri_config(scale: str, acceleration: int, *, seed: int = 0) -> DenoiseConfig:
    """Figures 6, 7, 11: de-aliasing SENSE-combined zero-filled images at acceleration R."""
    sizes = _sizes(_MRI_SIZES, scale)
    return DenoiseConfig(scale=scale, dataset="mri", noise="undersampling", noise_level=float(acceleration),
                         seed=seed, kernel_size=7, residual=True, batch_size=2, lr_primal=1e-3, lr_dual=5e-7,
                         **sizes)


def mri_optimum_settings(scale: str) -> dict:
    """The optimum basis of Figures 6, 7, 11 at ``scale``: accelerations, training slices, primal seeds,
    time limit (s) of the exact solver and of each converged primal, the converged primal's schedule
    (a dry run: one Adam epoch, :data:`DRY_RUN_LBFGS_ITER` L-BFGS iterations, :data:`DRY_RUN_SOLVE_SECONDS`)."""
    settings = dict(_MRI_OPTIMUM[check_scale(scale)])
    if dry_run(scale):
        settings.update(adam_epochs=1, lbfgs_max_iter=DRY_RUN_LBFGS_ITER, time_limit=DRY_RUN_SOLVE_SECONDS)
    return settings
