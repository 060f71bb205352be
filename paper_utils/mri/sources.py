"""Real magnitude MRI shipped inside installable packages (no download at run time)."""

from __future__ import annotations

import gzip
import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .optional import require
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
        volume: the physical volume (file) this subject's slices come from; two entries with the
            same ``volume`` are disjoint blocks of ONE subject (see :data:`MNI152_SPLIT_Y`).
        block: ``((x0, x1), (y0, y1), (z0, z1))`` voxel bounds (half-open) of the part of the
            volume used; ``None`` = all of it. Every slice is cut from inside the block only.
        orientations: slicing axes, each one of ``"axial"`` (along axis 2), ``"coronal"`` (axis 1),
            ``"sagittal"`` (axis 0); default: the last axis only (``"axial"``).
    """

    name: str
    package: str
    relpath: str
    reader: str
    split: str
    contrast: str
    slices: tuple[int, ...] | None = None
    rot90: int = 0
    volume: str = ""
    block: tuple[tuple[int, int], ...] | None = None
    orientations: tuple[str, ...] = ("axial",)

    @property
    def volume_id(self) -> str:
        """The physical volume's name (``volume`` if set, else ``name``)."""
        return self.volume or self.name

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
_MNI_FILE = "datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
#: The MNI152 template (nilearn; ICBM 2009a nonlinear symmetric, T1, 1 mm, 197 x 233 x 189 voxels,
#: RAS) is ONE subject (a population average). It is split by slab along the anterior-posterior
#: axis: the posterior block ``y < 80`` (occipital lobes, cerebellum) gives test slices, the
#: anterior block ``y >= 90`` training slices; the 10 mm between them is used by neither, and no
#: training slice contains a voxel of the test block (axial and sagittal sections are cut inside
#: each block). The test score on these slices therefore measures generalisation to unseen anatomy
#: of the same (average) head, not to a new subject; the other test subjects are distinct files.
MNI152_SPLIT_Y = (80, 90)
_ALL = ("axial", "coronal", "sagittal")

SIMULATED_SUBJECTS: tuple[MagnitudeSubject, ...] = (
    MagnitudeSubject("mni152_posterior", "nilearn", _MNI_FILE, "nifti", "test",
                     "T1-weighted MNI152 2009a template, 1 mm, posterior block y < 80, three orientations",
                     rot90=1, volume="nilearn_mni152_2009a", block=((0, 197), (0, MNI152_SPLIT_Y[0]), (0, 189)),
                     orientations=_ALL),
    MagnitudeSubject("mni152_anterior", "nilearn", _MNI_FILE, "nifti", "train",
                     "T1-weighted MNI152 2009a template, 1 mm, anterior block y >= 90, three orientations",
                     rot90=1, volume="nilearn_mni152_2009a", block=((0, 197), (MNI152_SPLIT_Y[1], 233), (0, 189)),
                     orientations=_ALL),
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
        index: slice index in the subject's file (int), or ``"<orientation> <index>"`` (str).
        image: (80, 80) float64, 99th percentile 1, non-negative.
    """

    subject: str
    index: int | str
    image: np.ndarray = field(repr=False)


def _read_volume(subject: MagnitudeSubject) -> np.ndarray:
    """(X, Y, Z) float64 magnitude volume (2-D files get Z = 1; 4-D: first volume)."""
    path = subject.path()
    if subject.reader == "nifti":
        require("nibabel")
        import nibabel

        vol = np.asarray(nibabel.load(str(path)).get_fdata(dtype=np.float64))
        while vol.ndim > 3:
            vol = vol[..., 0]
    elif subject.reader == "npy":
        vol = np.load(path, allow_pickle=False).astype(np.float64)
    elif subject.reader == "dicom":
        require("pydicom")
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


_AXES = {"sagittal": 0, "coronal": 1, "axial": 2}


def _sections(subject: MagnitudeSubject, vol: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(label, 2-D section) of every slice of ``subject``: label ``"<index>"`` for the default
    axial slicing of whole volumes (the original slice index), ``"<orientation> <index>"`` else."""
    if subject.block is not None:
        vol = np.ascontiguousarray(vol[tuple(slice(a, b) for a, b in subject.block)])
    out = []
    plain = subject.block is None and subject.orientations == ("axial",)
    for orient in subject.orientations:
        if orient not in _AXES:
            raise ValueError(f"unknown orientation {orient!r} of {subject.name}; expected one of {sorted(_AXES)}")
        axis = _AXES[orient]
        if axis >= vol.ndim or (orient != "axial" and vol.shape[axis] == 1):
            continue
        indices = range(vol.shape[axis]) if subject.slices is None else subject.slices
        offset = subject.block[axis][0] if subject.block is not None else 0
        for i in indices:
            label = f"{int(i)}" if plain else f"{orient} {int(i) + offset}"
            out.append((label, vol[(slice(None),) * axis + (int(i),)]))
    return out


def load_magnitude_slices(subjects: Iterable[MagnitudeSubject] = SIMULATED_SUBJECTS, size: int = IMAGE_SIZE,
                          progress: bool = False) -> list[MagnitudeSlice]:
    """All usable magnitude slices of ``subjects``, in order (subject, orientation, slice index).

    Slices are 2-D sections of each volume (inside its ``block``, along each of its
    ``orientations``), rotated upright, prepared by :func:`prepare_magnitude` (centre-crop to a
    square, resize to ``size``); nearly empty ones (foreground fraction below
    :data:`MIN_FOREGROUND_FRACTION`, foreground = above 10 % of the 99.5th percentile of that
    subject's sections in the same orientation) are skipped. Each slice is scaled to a 99th
    percentile of 1.

    Args:
        subjects: the files to read.
        size: output side.
        progress: a tqdm bar over the subjects.

    Returns:
        list of :class:`MagnitudeSlice` (``index``: the slice index, or ``"<orientation> <index>"``
        for blocks and several orientations).
    """
    from tqdm import tqdm

    out = []
    volumes: dict[str, np.ndarray] = {}
    for subject in tqdm(list(subjects), desc="MRI magnitude slices", unit="subject", disable=not progress):
        key = str(subject.path())
        if key not in volumes:
            volumes[key] = _read_volume(subject)
        sections = _sections(subject, volumes[key])
        by_orient: dict[str, list] = {}
        for label, sec in sections:
            by_orient.setdefault(label.split(" ")[0] if " " in label else "", []).append(
                (label, prepare_magnitude(np.rot90(sec, k=subject.rot90), size)))
        for prepared in by_orient.values():
            ref = np.percentile(np.stack([p for _, p in prepared]), 99.5)
            for i, img in prepared:
                if len(prepared) > 1 and np.mean(img > 0.1 * ref) < MIN_FOREGROUND_FRACTION:
                    continue
                p99 = np.percentile(img, 99)
                if p99 <= 0:
                    continue
                out.append(MagnitudeSlice(subject.name, int(i) if i.isdigit() else i, img / p99))
    return out
