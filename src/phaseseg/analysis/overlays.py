"""Overlays: cell outlines drawn over the gray image.

* :func:`overlay` — the outlines of a label image, one colour per cell (``predict``,
  ``measure``);
* :func:`overlay_annotations` — the contours of annotations that may overlap, on a
  contrast-stretched image, overlaps tinted (``eda``);
* :func:`write_png` — an RGB image as PNG, atomically (:func:`png_bytes`: the encoded bytes).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np
from skimage.segmentation import find_boundaries

from phaseseg import io

if TYPE_CHECKING:
    from phaseseg.analysis.eda import Example


def overlay(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Draw each cell's outline in a distinct colour over the gray image.

    Parameters
    ----------
    image : (H, W) uint8; labels : (H, W) int.

    Returns
    -------
    (H, W, 3) uint8 RGB image.
    """
    rgb = np.repeat(image[..., None], 3, axis=2)
    edges = find_boundaries(labels, mode="inner")
    # golden-angle hues give neighbours clearly different colours
    hues = (labels[edges] * 0.618034) % 1.0
    rgb[edges] = (_hsv_to_rgb(hues) * 255).astype(np.uint8)
    return rgb


def _hsv_to_rgb(h: np.ndarray) -> np.ndarray:
    from matplotlib.colors import hsv_to_rgb

    return hsv_to_rgb(np.stack([h, np.full_like(h, 0.9), np.ones_like(h)], axis=-1))


def write_png(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Write an RGB uint8 image as PNG, atomically."""
    with io.atomic_path(path) as tmp:
        tmp.write_bytes(png_bytes(rgb))


def png_bytes(rgb: np.ndarray) -> bytes:
    """An RGB uint8 ``(H, W, 3)`` image encoded as PNG (what :func:`write_png` writes)."""
    from io import BytesIO

    from PIL import Image

    buffer = BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()


def overlay_annotations(example: Example, seed: int = 0) -> np.ndarray:
    """Gray image with each annotation's contour in its own color; overlaps tinted magenta.

    For annotations, which may overlap (``phaseseg eda``); :func:`overlay` draws labels.

    Parameters
    ----------
    example : Example
        Image (contrast-stretched to its 0.5-99.5 percentiles) and annotation pixels.
    seed : int
        Seed of the random contour colors.

    Returns
    -------
    (H, W, 3) float64 RGB in [0, 1]
    """
    import matplotlib

    image = example.image
    h, w = image.shape
    lo, hi = np.percentile(image, [0.5, 99.5])
    if hi - lo < 1:  # flat image: no contrast to stretch
        lo, hi = 0.0, 255.0
    gray = np.clip((image.astype(np.float64) - lo) / (hi - lo), 0, 1)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    coverage = np.bincount(example.pix, minlength=h * w).reshape(h, w)
    rgb[coverage > 1] = 0.5 * rgb[coverage > 1] + 0.5 * np.array([1.0, 0.0, 1.0])
    rng = np.random.default_rng(seed)
    palette = matplotlib.colormaps["hsv"](rng.uniform(0, 1, example.n_cells))[:, :3]
    palette = 0.25 + 0.75 * palette  # keep contours bright on the gray image
    bounds = np.concatenate([[0], np.cumsum(np.bincount(example.inst, minlength=example.n_cells))])
    for k in range(example.n_cells):
        pix = example.pix[bounds[k] : bounds[k + 1]]
        if not len(pix):
            continue
        rr, cc = np.divmod(pix, w)
        r0, r1, c0, c1 = rr.min(), rr.max() + 1, cc.min(), cc.max() + 1
        mask = np.zeros((r1 - r0 + 2, c1 - c0 + 2), dtype=bool)  # 1 px frame: closed contours
        mask[rr - r0 + 1, cc - c0 + 1] = True
        edge = find_boundaries(mask, mode="inner")[1:-1, 1:-1]
        rgb[r0:r1, c0:c1][edge] = palette[k]
    return rgb
