r"""The MRI data pipeline of the paper's reconstruction experiments (Sec. 5.2, Figures 6, 7, 11).

The paper trains the primal and dual networks as *residual* networks (eq. 6): the input is the
SENSE-combined zero-filled image of undersampled multi-coil k-space, the target is the
SENSE-combined fully sampled image, and the network learns ``target - input``. Real and imaginary
parts are separate single-channel examples.

Forward model (paper, Sec. 5.2), per slice and coil :math:`c = 1, \dots, C`:

.. math::
    y_c = M F S_c x + e_c, \qquad
    A x = (M F S_c x)_{c=1}^{C}, \qquad
    A^H y = \sum_c \overline{S_c} \, F^H (M y_c)

with ``x`` the (H, W) complex image, ``S_c`` the coil sensitivity maps, ``F`` the centred
orthonormal 2-D DFT (``sigpy.fft(..., axes=(-2, -1))``), ``M`` a Poisson-disc mask with a fully
sampled 16 x 16 calibration region (``sigpy.mri.poisson``). The maps are estimated by JSENSE
(``sigpy.mri.app.JsenseRecon`` with ``ksp_calib_width=16``) from the calibration region; the
network input is ``A^H y`` (zero-filled, SENSE-combined), the target is
``sum_c conj(S_c) F^H y_full_c`` with the *same* estimated maps, so both live in the same
coil-combined frame. JSENSE sees only the calibration region, which every mask samples fully, so
one JSENSE run per slice serves every acceleration R (:func:`load_mri_datasets`).

Data sources
------------
``source="simulated"`` (default), labelled everywhere :data:`SIMULATED_SOURCE_LABEL`. No raw
k-space and no knee data can be downloaded here, so real *magnitude* MRI shipped inside PyPI
wheels (nilearn's MNI152 2009a T1 template at 1 mm, cut into slices in three orientations; small
files of dipy, nibabel, pydicom, matplotlib; no run-time download, see :data:`SIMULATED_SUBJECTS`):
424 distinct training and 290 distinct test slices from 9 volumes. The MNI152 template is ONE
subject (a population average), split by disjoint anterior (train) / posterior (test) slabs with a
10 mm gap (:data:`paper_utils.mri.sources.MNI152_SPLIT_Y`): its test slices are unseen anatomy of the
same head, not a new subject. Each slice is turned into multi-coil k-space: each slice is centre-cropped to a
square, resized to 80 x 80 (cubic spline, Gaussian anti-aliasing when downsampling, clipped at 0),
scaled so its 99th magnitude percentile is 1, multiplied by a smooth random phase
(:func:`smooth_random_phase`) and by 15 randomly placed birdcage coil maps
(:func:`random_birdcage_maps`, normalised so that :math:`\sum_c |S_c|^2 = 1` at every pixel),
Fourier transformed, and corrupted with complex white Gaussian noise of standard deviation
``noise_std`` per k-space sample (default 0.01, i.e. 1 % of the image's 99th magnitude percentile:
with orthonormal FFT and unit-RSS maps this is also the per-pixel noise std of the fully
sampled SENSE-combined image, a peak-ish SNR of 40 dB; not matched to a cited fastMRI SNR, see
:data:`DEFAULT_NOISE_STD`). Every other file is one subject in one split; train and test are
never split by slice (the ``split`` column of :data:`SIMULATED_SUBJECTS`). A
training set larger than the distinct slices is augmented with fresh draws of phase, coil
placement, noise and mask for the same magnitude slices (recorded as ``draw`` > 0).

``source="fastmri"``: real fastMRI multi-coil HDF5 files (dataset ``kspace``, shape
(slices, coils, H, W) complex64), e.g. the multicoil knee data of the paper (15 coils, from
https://fastmri.med.nyu.edu). Each slice is reduced to 80 x 80 by :func:`reduce_kspace` (coil
images centre-cropped to a square in image space, then the central 80 x 80 of their k-space:
a genuine lower-resolution acquisition of the same field of view). Files are split by name
(sorted; the last ``max(1, round(n_files * 10 / 59))`` are the test subjects, the paper's 49/10
patient ratio).

Units and normalisation
-----------------------
Each slice (input and target together) is divided by the 99th percentile of the magnitude of
its zero-filled input, so the input's 99th magnitude percentile is 1 and input and target share
the factor (the residual stays meaningful). The factors are kept (``*_scale`` in the cache;
``description["normalisation"]``).

Tensor layout (letters: N slices, C coils, H = W = 80)
------------------------------------------------------
:class:`MRIDataset` holds float32 tensors of shape (2N, 1, H, W) with real and imaginary parts
interleaved (example ``2i`` is the real part of slice ``i``, ``2i + 1`` its imaginary part; see
:func:`complex_to_pairs` / :func:`pairs_to_complex`), the complex test images (N, H, W), the
masks (N, H, W) bool and a JSON-serialisable ``description``.

The L1-wavelet baseline (:mod:`paper_utils.mri.baselines`) is computed while the data are built.
Modules: ``constants``, ``sense`` (FFT, SENSE, JSENSE), ``masks``, ``simulation``, ``sources``,
``fastmri``, ``baselines``, ``build`` (one pass over the slices), ``dataset`` (layout, cache, loaders).

Prepared datasets are cached as ``.npz`` files (no pickle) under ``cache_dir`` (default
``build/cache/mri/``), keyed by a hash of the configuration, written atomically and verified by
a stored SHA-256 on load (a corrupt file is reported and rebuilt).

References:
    Sahiner, Mardani, Ozturkler, Pilanci, Pauly. Convex Regularization behind Neural
    Reconstruction. ICLR 2021.
    Ying, L., & Sheng, J. (2007). Joint image reconstruction and sensitivity estimation in
    SENSE (JSENSE). Magnetic Resonance in Medicine, 57(6), 1196-1202.
    Zbontar et al. (2018). fastMRI: An open dataset and benchmarks for accelerated MRI.
    Ong, F., & Lustig, M. (2019). SigPy: a python package for high performance iterative
    reconstruction. ISMRM.
"""

from __future__ import annotations


from .build import _select
from .constants import *  # noqa: F401,F403
from .constants import ACCEL_REL_TOL, FASTMRI_TEST_FRACTION, MIN_FOREGROUND_FRACTION
from .dataset import (MRIDataset, complex_to_pairs, default_cache_dir, load_mri_dataset, load_mri_datasets,
                      pairs_to_complex)
from .fastmri import (MissingMRIDataError, fastmri_files, load_fastmri_kspace, reduce_kspace,
                      split_fastmri_files)
from .masks import _check_R, calibration_slices, poisson_mask
from .sense import estimate_maps_jsense, fft2c, ifft2c, sense_adjoint, sense_combine, sense_forward
from .simulation import SimulatedSlice, random_birdcage_maps, simulate_multicoil_kspace, smooth_random_phase
from .sources import SIMULATED_SUBJECTS, MagnitudeSlice, MagnitudeSubject, load_magnitude_slices, prepare_magnitude

__all__ = [
    "SIMULATED_SOURCE_LABEL",
    "FASTMRI_SOURCE_LABEL",
    "MRI_CODE_VERSION",
    "IMAGE_SIZE",
    "N_COILS",
    "CALIB_SIZE",
    "DEFAULT_NOISE_STD",
    "JSENSE_KWARGS",
    "SIMULATED_SUBJECTS",
    "MagnitudeSubject",
    "MagnitudeSlice",
    "SimulatedSlice",
    "MRIDataset",
    "fft2c",
    "ifft2c",
    "sense_forward",
    "sense_adjoint",
    "sense_combine",
    "calibration_slices",
    "poisson_mask",
    "smooth_random_phase",
    "random_birdcage_maps",
    "simulate_multicoil_kspace",
    "estimate_maps_jsense",
    "prepare_magnitude",
    "load_magnitude_slices",
    "reduce_kspace",
    "load_fastmri_kspace",
    "fastmri_files",
    "split_fastmri_files",
    "complex_to_pairs",
    "pairs_to_complex",
    "default_cache_dir",
    "load_mri_dataset",
    "load_mri_datasets",
    "MissingMRIDataError",
]
