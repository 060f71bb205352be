"""Real magnitude MRI shipped inside installable packages (no download at run time)."""

from __future__ import annotations

import gzip
import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .constants import IMAGE_SIZE, MIN_FOREGROUND_FRACTION

@dataclass(frozen=True)
class MagnitudeSubject:
    """One file of real magnitude MRI inside an installed package (one subject).

    Attributes:
        name: subject identifier used in descriptions.
        package: importable package holding the file (located without importing it).
        relpath: path of the file inside the package folder.
        reader: ``"nifti"``, ``"npy"``, ``"dicom"`` or ``"ima_gz"`` (raw 256 x 256 uint16, gzipped).
        split: ``"train"`` or ``"test"``.
        contrast: human-readable contrast / orientation.
        slices: which 2-D slices (along the last spatial axis) to consider; ``None`` = all.
        rot90: quarter turns applied to each slice for display (upright anatomy).
    """

    name: str
    package: str
    relpath: str
    reader: str
    split: str
    contrast: str
    slices: tuple[int, ...] | None = None
    rot90: int = 0

    def path(self) -> Path:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise ValueError(f"package {self.package!r} (holding MRI subject {self.name!r}) is not installed; "
                             "install the project's requirements.txt")
        path = Path(list(spec.submodule_search_locations)[0]) / self.relpath
        if not path.is_file():
            raise ValueError(f"MRI subject {self.name!r}: {path} is missing from the installed {self.package!r}")
        return path


#: The real magnitude MRI used by ``source="simulated"``: every file ships inside a wheel of a
#: pinned requirement (nothing is fetched at run time). Distinct files are treated as distinct
#: subjects (their provenance does not say otherwise; dipy's ``ascm_out_test`` is left out
#: because it is a denoised copy of ``aniso_vox``, and pydicom's ``MR_small_*`` variants because
#: they re-encode ``MR_small``). The test subjects cover both contrasts (T1 and b0/T2 EPI).
SIMULATED_SUBJECTS: tuple[MagnitudeSubject, ...] = (
    MagnitudeSubject("dipy_t1_coronal_slice", "dipy", "data/files/t1_coronal_slice.npy", "npy", "test",
                     "T1-weighted brain, coronal, 1 slice (256 x 256)"),
    MagnitudeSubject("dipy_S0_10slices", "dipy", "data/files/S0_10slices.nii.gz", "nifti", "test",
                     "b0 (T2-weighted EPI) brain, axial, 10 slices (128 x 128)", rot90=1),
    MagnitudeSubject("dipy_aniso_vox", "dipy", "data/files/aniso_vox.nii.gz", "nifti", "train",
                     "b0 (T2-weighted EPI) brain, axial, 4 x 4 x 5 mm (58 x 58 x 24)", rot90=1),
    MagnitudeSubject("nibabel_example4d", "nibabel", "tests/data/example4d.nii.gz", "nifti", "train",
                     "fMRI EPI brain, axial, first volume (128 x 96 x 24)", rot90=1),
    MagnitudeSubject("nibabel_anatomical", "nibabel", "tests/data/anatomical.nii", "nifti", "train",
                     "T1-weighted brain crop, 2 mm (33 x 41 x 25)", rot90=1),
    MagnitudeSubject("dipy_test_piesno", "dipy", "data/files/test_piesno.nii.gz", "nifti", "train",
                     "diffusion MRI brain, axial, first of 14 volumes of one slice (96 x 96)", slices=(0,), rot90=1),
    MagnitudeSubject("matplotlib_s1045", "matplotlib", "mpl-data/sample_data/s1045.ima.gz", "ima_gz", "train",
                     "T1-weighted head, sagittal, 1 slice (256 x 256)"),
    MagnitudeSubject("pydicom_MR_small", "pydicom", "data/test_files/MR_small.dcm", "dicom", "train",
                     "MR (NEMA WG04 MR1, downsized), 1 slice (64 x 64)"),
)


@dataclass(frozen=True)
class MagnitudeSlice:
    """A prepared magnitude slice.

    Attributes:
        subject: :attr:`MagnitudeSubject.name`.
        index: slice index in the subject's file.
        image: (80, 80) float64, 99th percentile 1, non-negative.
    """

    subject: str
    index: int
    image: np.ndarray = field(repr=False)


def _read_volume(subject: MagnitudeSubject) -> np.ndarray:
    """(X, Y, Z) float64 magnitude volume (2-D files get Z = 1; 4-D: first volume)."""
    path = subject.path()
    if subject.reader == "nifti":
        import nibabel

        vol = np.asarray(nibabel.load(str(path)).get_fdata(dtype=np.float64))
        while vol.ndim > 3:
            vol = vol[..., 0]
    elif subject.reader == "npy":
        vol = np.load(path, allow_pickle=False).astype(np.float64)
    elif subject.reader == "dicom":
        import pydicom

        vol = pydicom.dcmread(str(path)).pixel_array.astype(np.float64)
    elif subject.reader == "ima_gz":
        with gzip.open(path, "rb") as f:
            vol = np.frombuffer(f.read(), dtype="<u2").reshape(256, 256).astype(np.float64)
    else:
        raise ValueError(f"unknown reader {subject.reader!r}")
    if vol.ndim == 2:
        vol = vol[..., None]
    return np.abs(vol)


def prepare_magnitude(image: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Centre-crop a 2-D magnitude image to a square and resize it to ``size x size``.

    Resizing: ``skimage.transform.resize`` with a cubic spline (``order=3``), reflective
    boundaries and Gaussian anti-aliasing when downsampling; negative overshoot is clipped to 0.
    The result is *not* rescaled (see :func:`load_magnitude_slices`).

    Args:
        image: (H, W) real image.
        size: output side.

    Returns:
        (size, size) float64 non-negative image.
    """
    from skimage.transform import resize

    image = np.abs(np.asarray(image, dtype=np.float64))
    if image.ndim != 2:
        raise ValueError(f"image must have shape (H, W), got {image.shape}")
    h, w = image.shape
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    image = image[top : top + side, left : left + side]
    if side != size:
        image = resize(image, (size, size), order=3, mode="reflect", anti_aliasing=side > size, preserve_range=True)
    return np.clip(image, 0.0, None)


def load_magnitude_slices(subjects: Iterable[MagnitudeSubject] = SIMULATED_SUBJECTS, size: int = IMAGE_SIZE) -> list[MagnitudeSlice]:
    """All usable magnitude slices of ``subjects``, in order (subject, then slice index).

    Slices are 2-D sections along the last axis of each volume, rotated upright, prepared by
    :func:`prepare_magnitude`; in volumes with several slices, nearly empty ones (foreground
    fraction below :data:`MIN_FOREGROUND_FRACTION`, foreground = above 10 % of the volume's
    99.5th percentile) are skipped. Each slice is scaled to a 99th percentile of 1.

    Args:
        subjects: the files to read.
        size: output side.

    Returns:
        list of :class:`MagnitudeSlice`.
    """
    out = []
    for subject in subjects:
        vol = _read_volume(subject)
        indices = range(vol.shape[2]) if subject.slices is None else subject.slices
        prepared = [(int(i), prepare_magnitude(np.rot90(vol[:, :, i], k=subject.rot90), size)) for i in indices]
        ref = np.percentile(np.stack([p for _, p in prepared]), 99.5)
        for i, img in prepared:
            if len(prepared) > 1 and np.mean(img > 0.1 * ref) < MIN_FOREGROUND_FRACTION:
                continue
            p99 = np.percentile(img, 99)
            if p99 <= 0:
                continue
            out.append(MagnitudeSlice(subject.name, i, img / p99))
    return out
