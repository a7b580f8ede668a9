"""Label images -> per-pixel training targets (pure numpy/scipy).

The network learns two maps from which instances are recovered by seeded watershed
(:mod:`phaseseg.segment.postprocess`):

* ``foreground``: 1 on cell pixels;
* ``distance``: each cell's Euclidean distance to its own border (touching cells count as
  border), divided by that cell's maximum, so every cell — tiny shsy5y or sprawling astro —
  peaks at 1 in its most interior part and falls to ~0 at its edge.

With a centre head (``NetConfig.centre``) it also learns

* ``centre``: a Gaussian bump on each cell's most interior pixel (its distance maximum),
  ``exp(-r**2 / (2 sigma**2))`` with ``sigma`` half the cell's largest inscribed radius (at least
  :data:`MIN_SIGMA` px), 0 outside the cell: one peak per cell, however many lobes or processes
  the cell has, from which the cell can be grown.

A loss ``weight`` map up-weights pixels close to two different cells, where touching cells
must be told apart (as in the original U-Net paper).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def _distance_maps(
    labels: np.ndarray, sigma_scale: float = 0.5, centre: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`normalized_distance` and :func:`centre_map` of ``labels``, from one distance
    transform per cell (``centre`` False: the centre map is left at 0)."""
    dist_out = np.zeros(labels.shape, dtype=np.float32)
    centre_out = np.zeros(labels.shape, dtype=np.float32)
    for lab, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        # pad by one pixel so that cells touching the image edge keep their edge as border
        sl_pad = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
        mask = labels[sl_pad] == lab
        dist = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        peak = float(dist.max())
        if peak <= 0:
            continue
        dist_out[sl_pad][mask] = (dist[mask] / peak).astype(np.float32)
        if not centre:
            continue
        # of the pixels within 1 px of the peak distance (a ridge, on a long cell), the one
        # nearest to their mean
        ys, xs = np.nonzero(dist >= peak - 1)
        k = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)
        cy, cx = ys[k], xs[k]
        sigma = max(MIN_SIGMA, sigma_scale * peak)
        yy, xx = np.ogrid[: mask.shape[0], : mask.shape[1]]
        bump = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2)).astype(np.float32)
        centre_out[sl_pad][mask] = bump[mask]
    return dist_out, centre_out


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
    return _distance_maps(labels, centre=False)[0]


#: Smallest width (px) of a centre bump: tiny cells still get a peak of several pixels.
MIN_SIGMA = 1.5


def centre_map(labels: np.ndarray, sigma_scale: float = 0.5) -> np.ndarray:
    """One Gaussian bump per cell, on its most interior pixel, cut to the cell.

    Where the distance to the border has a ridge (within 1 px of its maximum) rather
    than one peak, the bump sits on the ridge pixel nearest to the ridge's mean: the middle of
    an elongated cell.

    Parameters
    ----------
    labels : (H, W) int array
        0 = background, 1..N = cells.
    sigma_scale : float
        The bump's sigma as a fraction of the cell's largest inscribed radius (its peak
        distance to the border), at least :data:`MIN_SIGMA` px.

    Returns
    -------
    (H, W) float32 array in [0, 1], 0 outside cells, exactly 1 at one pixel of each cell.

    Examples
    --------
    >>> lab = np.zeros((9, 20), int); lab[2:7, 1:8] = 1; lab[2:7, 10:19] = 2
    >>> c = centre_map(lab)
    >>> [tuple(int(v) for v in np.unravel_index(np.argmax(np.where(lab == i, c, 0)), c.shape))
    ...  for i in (1, 2)]
    [(4, 4), (4, 14)]
    """
    return _distance_maps(labels, sigma_scale)[1]


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
    dict with ``foreground`` uint8 (H, W) in {0, 1}, ``distance`` and ``centre`` uint8 (H, W)
    (:func:`normalized_distance` and :func:`centre_map` x 255, quantised to save memory) and
    ``touching`` uint8 (H, W) in {0, 1}.
    """
    distance, centre = _distance_maps(labels)
    return {
        "foreground": (labels > 0).astype(np.uint8),
        "distance": np.round(distance * 255).astype(np.uint8),
        "touching": touching_mask(labels).astype(np.uint8),
        "centre": np.round(centre * 255).astype(np.uint8),
    }
