"""Constants of the MRI setting (paper Sec. 5.2, App. B.4) shared by the modules of :mod:`paper_utils.mri`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Honesty label of the default source; it appears in every description and figure caption.
SIMULATED_SOURCE_LABEL = "simulated multi-coil k-space from real magnitude MRI"
#: Label of the real-data source.
FASTMRI_SOURCE_LABEL = "fastMRI multi-coil k-space"
#: Bump when a code change alters prepared datasets, so stale cache files are not reused.
MRI_CODE_VERSION = "2"

IMAGE_SIZE = 80  #: H = W of every slice (paper: 80 x 80)
N_COILS = 15  #: simulated receiver coils (paper: fastMRI knee, 15 coils)
CALIB_SIZE = 16  #: fully sampled calibration region CALIB_SIZE x CALIB_SIZE (paper: 16 x 16)
#: Simulated k-space noise std, relative to the image's 99th magnitude percentile. With orthonormal FFT
#: and unit-RSS maps this is also the per-pixel noise std of the fully sampled SENSE image: a peak SNR
#: of about 40 dB (p99 / sigma = 100). NOT matched to a cited number: we found no published per-sample
#: SNR of the fastMRI multi-coil knee k-space (Zbontar et al. 2018 and Knoll et al. 2020 do not state
#: one) and no fastMRI file is reachable here to measure it. Users with fastMRI data can estimate it
#: from the k-space periphery and pass ``noise_std`` to :func:`paper_utils.mri.load_mri_datasets`.
DEFAULT_NOISE_STD = 0.01
#: Realised acceleration must lie within this relative tolerance of R.
ACCEL_REL_TOL = 0.02
#: Fraction of fastMRI files held out for testing (paper: 10 test of 59 patients).
FASTMRI_TEST_FRACTION = 10 / 59
#: A 3-D volume slice is kept if at least this fraction of its pixels exceeds 10 % of the
#: volume's 99.5th percentile (drops nearly empty slices at the ends of a volume).
MIN_FOREGROUND_FRACTION = 0.15

#: JSENSE settings (``sigpy.mri.app.JsenseRecon``). ``ksp_calib_width=16`` keeps JSENSE inside the
#: 16 x 16 calibration region (sigpy's default 24 would reach into undersampled k-space).
#: ``mps_ker_width=8``: the maps' k-space kernel; sigpy's default 16 equals the calibration width
#: and fitted the noise more (projection error about twice as large in our measurements).
JSENSE_KWARGS: Mapping[str, Any] = {
    "ksp_calib_width": CALIB_SIZE,
    "mps_ker_width": 8,
    "lamda": 0.0,
    "max_iter": 10,
    "max_inner_iter": 10,
}
