"""Network maps -> non-overlapping instances (seeded watershed).

Cells are the foreground pixels; each cell grows from one seed, a connected region where the
predicted normalised distance to the border is high (above ``seed_thresh``), or, with
``seed_h > 0``, a regional maximum of the distance at least ``seed_h`` high (h-maxima, above
``seed_thresh``), which splits touching cells whose distances do not dip below a threshold.
Thresholds are tuned per cell type on validation data and stored in the model file.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import h_maxima
from skimage.segmentation import relabel_sequential, watershed


@dataclass
class PostprocessParams:
    """Thresholds of :func:`maps_to_labels` (probabilities in [0, 1], sizes in pixels)."""

    fg_thresh: float = 0.5
    seed_thresh: float = 0.6
    min_size: int = 40
    seed_h: float = 0.0
    min_score: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def maps_to_labels(
    foreground: np.ndarray,
    distance: np.ndarray,
    fg_thresh: float = 0.5,
    seed_thresh: float = 0.6,
    min_size: int = 40,
    seed_h: float = 0.0,
    min_score: float = 0.0,
    maxima: np.ndarray | None = None,
) -> np.ndarray:
    """Turn foreground and distance probability maps into a label image.

    Parameters
    ----------
    foreground, distance : (H, W) float arrays in [0, 1]
        Probability of being a cell pixel; predicted normalised distance to the cell's border.
    fg_thresh : float
        Pixels with ``foreground > fg_thresh`` belong to cells.
    seed_thresh : float
        Connected regions of ``distance > seed_thresh`` (inside the foreground) seed one cell
        each. Foreground components without a seed become one cell each.
    min_size : int
        Cells smaller than this many pixels are removed.
    seed_h : float
        0: seeds are the regions above ``seed_thresh``. > 0: seeds are the h-maxima of the
        distance (:func:`skimage.morphology.h_maxima`, height ``seed_h``) above ``seed_thresh``.
    min_score : float
        Cells whose mean ``foreground`` probability is below this are removed (0: keep all).
    maxima : (H, W) bool array, optional
        ``distance_maxima(distance, seed_h)``, computed once when trying several thresholds
        with the same ``seed_h`` (the h-maxima are most of the time taken).

    Returns
    -------
    (H, W) int32 labels, 0 = background, 1..N = cells, no overlaps by construction.

    Examples
    --------
    >>> fg = np.zeros((8, 8)); fg[1:4, 1:4] = fg[5:8, 5:8] = 1
    >>> int(maps_to_labels(fg, fg, min_size=1).max())
    2
    """
    mask = foreground > fg_thresh
    seed_mask = mask & (distance > seed_thresh)
    if seed_h > 0:
        seed_mask &= distance_maxima(distance, seed_h) if maxima is None else maxima
    seeds, n_seeds = ndi.label(seed_mask)
    # foreground components that hold no seed become cells of their own
    components, n_comp = ndi.label(mask)
    seeded = np.zeros(n_comp + 1, dtype=bool)
    seeded[np.unique(components[seeds > 0])] = True
    orphan = ~seeded[components] & mask
    seeds[orphan] = components[orphan] + n_seeds
    labels = watershed(-distance, seeds, mask=mask)
    labels = remove_uncertain(remove_small(labels, min_size), foreground, min_score)
    labels, _, _ = relabel_sequential(labels)
    return labels.astype(np.int32, copy=False)


def distance_maxima(distance: np.ndarray, seed_h: float) -> np.ndarray:
    """(H, W) bool: the regional maxima of ``distance`` (float (H, W) in [0, 1]) at least
    ``seed_h`` high (:func:`skimage.morphology.h_maxima` on the map scaled to 0-255)."""
    dist8 = np.clip(distance * 255, 0, 255).astype(np.uint8)
    return h_maxima(dist8, max(1, round(seed_h * 255))) > 0


def remove_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Set cells of fewer than ``min_size`` pixels to background (labels are not renumbered)."""
    if min_size <= 1:
        return labels
    small = np.bincount(labels.ravel()) < min_size
    small[0] = False
    return np.where(small[labels], 0, labels)


def remove_uncertain(labels: np.ndarray, foreground: np.ndarray, min_score: float) -> np.ndarray:
    """Set cells whose mean ``foreground`` probability is below ``min_score`` to background.

    ``labels`` int (H, W), ``foreground`` float (H, W) in [0, 1]; labels are not renumbered.
    """
    if min_score <= 0 or not labels.any():
        return labels
    flat = labels.ravel()
    sums = np.bincount(flat, weights=foreground.ravel().astype(np.float64))
    mean = sums / np.maximum(np.bincount(flat), 1)  # labels removed earlier have no pixels
    keep = mean >= min_score
    keep[0] = False
    return np.where(keep[labels], labels, 0)
