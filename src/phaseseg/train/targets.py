"""Label images -> per-pixel training targets (pure numpy/scipy).

The network learns two maps from which instances are recovered by seeded watershed
(:mod:`phaseseg.segment.postprocess`):

* ``foreground``: 1 on cell pixels;
* ``distance``: each cell's Euclidean distance to its own border (touching cells count as
  border), divided by that cell's maximum, so every cell — tiny shsy5y or sprawling astro —
  peaks at 1 in its most interior part and falls to ~0 at its edge.

A loss ``weight`` map up-weights pixels close to two different cells, where touching cells
must be told apart (as in the original U-Net paper).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def normalized_distance(labels: np.ndarray) -> np.ndarray:
    """Per-cell distance to the cell border, scaled to [0, 1] within each cell.

    Parameters
    ----------
    labels : (H, W) int array
        0 = background, 1..N = cells.

    Returns
    -------
    (H, W) float32 array, 0 outside cells, in (0, 1] inside, exactly 1 at each cell's maximum.
    """
    out = np.zeros(labels.shape, dtype=np.float32)
    for lab, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        # pad by one pixel so that cells touching the image edge keep their edge as border
        sl_pad = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
        mask = labels[sl_pad] == lab
        dist = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        peak = dist.max()
        if peak > 0:
            out[sl_pad][mask] = (dist[mask] / peak).astype(np.float32)
    return out


def touching_mask(labels: np.ndarray, radius: int = 2) -> np.ndarray:
    """Pixels within ``radius`` of two different cells, bool ``(H, W)``."""
    size = 2 * radius + 1
    big = np.iinfo(np.int32).max
    labels = labels.astype(np.int32, copy=False)
    highest = ndi.maximum_filter(labels, size=size)
    lowest = ndi.minimum_filter(np.where(labels == 0, big, labels), size=size)
    return (highest > 0) & (lowest < big) & (highest != lowest)


def make_targets(labels: np.ndarray) -> dict[str, np.ndarray]:
    """All training targets of one label image.

    Returns
    -------
    dict with ``foreground`` uint8 (H, W) in {0, 1}, ``distance`` uint8 (H, W) (normalised
    distance x 255, quantised to save memory) and ``touching`` uint8 (H, W) in {0, 1}.
    """
    return {
        "foreground": (labels > 0).astype(np.uint8),
        "distance": np.round(normalized_distance(labels) * 255).astype(np.uint8),
        "touching": touching_mask(labels).astype(np.uint8),
    }
