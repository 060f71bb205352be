"""Figure 11 helpers (paper App. B.5): which dual filters to show and where their frequency responses peak.

Figure 11 shows the magnitude frequency responses of dual filters ``w_i`` (k x k, zero-padded to
80 x 80, centred spectrum; :func:`paper_utils.report.interpret.filter_spectra`, the conventions of
Figure 4): :func:`select_filters` draws the filters shown, :func:`peak_frequencies` finds where each
response peaks and :func:`frequency_bands` counts the peaks per radial band."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["select_filters", "peak_frequencies", "FREQUENCY_BANDS", "frequency_bands"]


def select_filters(n_total: int, n: int, *, seed: int = 0) -> torch.Tensor:
    """Indices of ``min(n, n_total)`` filters drawn at random without replacement, sorted
    (the paper's "representative filters randomly selected")."""
    if n_total < 1 or n < 1:
        raise ValueError(f"need n_total >= 1 and n >= 1, got {n_total}, {n}")
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n_total, generator=gen)[:min(n, n_total)].sort().values


def peak_frequencies(responses: torch.Tensor) -> torch.Tensor:
    """Radial frequency (cycles per pixel, 0 to about 0.71) of each response's maximum, for
    centred spectra (n, S, S) (:func:`paper_utils.report.interpret.filter_spectra`, zero frequency at
    index S // 2). Ties go to the first maximum in row-major order."""
    if responses.ndim != 3 or responses.shape[1] != responses.shape[2]:
        raise ValueError(f"responses must have shape (n, S, S), got {tuple(responses.shape)}")
    n, s, _ = responses.shape
    flat = responses.reshape(n, -1).argmax(1)
    fy = (flat // s - s // 2).double() / s
    fx = (flat % s - s // 2).double() / s
    return torch.sqrt(fx ** 2 + fy ** 2)


#: radial frequency bands (cycles per pixel) of :func:`frequency_bands`; the last one holds the
#: corners of the spectrum beyond the Nyquist radius 0.5
FREQUENCY_BANDS = (0.0, 0.125, 0.25, 0.375, 0.5, float("inf"))


def frequency_bands(peaks: torch.Tensor) -> np.ndarray:
    """How many peak frequencies (from :func:`peak_frequencies`) fall in each band of
    :data:`FREQUENCY_BANDS` (half-open ``[lo, hi)``, the band ending at 0.5 closed): a (5,) int array."""
    p = np.asarray(torch.as_tensor(peaks).detach().cpu(), dtype=np.float64)
    edges = np.array(FREQUENCY_BANDS)
    idx = np.searchsorted(edges, p, side="right") - 1
    idx = np.where(np.isclose(p, 0.5), 3, idx)  # the Nyquist radius belongs to the band below it
    return np.bincount(np.clip(idx, 0, len(edges) - 2), minlength=len(edges) - 1)
