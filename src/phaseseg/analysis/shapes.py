"""Per-cell shape and intensity (:func:`measure_cells`, with
:func:`skimage.measure.regionprops_table`) and per-image summaries (:func:`summarize_image`: cell
count, confluence, median cell area and cell density).

Neurite index
-------------
``neurite_index = skeleton_length_px / equivalent_diameter_px``: the length of the mask's
skeleton (:func:`skimage.morphology.skeletonize`, counted in pixels) relative to the diameter
of the disc of the same area. It is dimensionless and independent of magnification: about 0 for
a round cell (its skeleton is a dot), about 1 for an ellipse twice as long as wide, and it grows
with the length of the processes (neurites) a cell extends: a cell body with two thin neurites
five body diameters long each scores about 6 (tests/test_measure.py). Ragged outlines add
short skeleton spurs, so compare values between conditions measured the same way rather than
reading them as absolute lengths.

Examples
--------
>>> labels = np.zeros((64, 64), dtype=np.int32)
>>> yy, xx = np.mgrid[:64, :64]
>>> labels[(yy - 32) ** 2 + (xx - 32) ** 2 <= 20**2] = 1
>>> cells = measure_cells(labels, np.full((64, 64), 100, np.uint8), "demo", pixel_size=0.5)
>>> int(cells.loc[0, "area_px"]), round(float(cells.loc[0, "area_um2"]), 2)
(1257, 314.25)
>>> summarize_image(labels, "demo")["confluence_pct"]
30.69
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from skimage.measure import regionprops_table
from skimage.morphology import skeletonize

from phaseseg.analysis.columns import COLUMNS

_PROPERTIES = (
    "label",
    "centroid",
    "area",
    "perimeter",
    "equivalent_diameter_area",
    "axis_major_length",
    "axis_minor_length",
    "eccentricity",
    "solidity",
    "intensity_mean",
)
_RENAME = {
    "label": "cell_id",
    "centroid-0": "centroid_y_px",
    "centroid-1": "centroid_x_px",
    "area": "area_px",
    "perimeter": "perimeter_px",
    "equivalent_diameter_area": "equivalent_diameter_px",
    "axis_major_length": "major_axis_length_px",
    "axis_minor_length": "minor_axis_length_px",
    "intensity_mean": "mean_intensity",
}
_LENGTHS = (
    "perimeter",
    "equivalent_diameter",
    "major_axis_length",
    "minor_axis_length",
    "skeleton_length",
)


def skeleton_length_px(regionmask: np.ndarray) -> int:
    """Number of pixels in the skeleton of a binary mask (:func:`skimage.morphology.skeletonize`).

    Parameters
    ----------
    regionmask : (h, w) bool array
        One cell's mask (e.g. its bounding-box crop).

    Returns
    -------
    int
        Skeleton length in pixels (a diagonal step counts as one pixel).

    Examples
    --------
    >>> skeleton_length_px(np.ones((3, 40), dtype=bool))
    39
    """
    return int(np.count_nonzero(skeletonize(np.pad(regionmask, 1))))


def measure_cells(
    labels: np.ndarray,
    image: np.ndarray,
    image_id: str,
    pixel_size: float | None = None,
) -> pd.DataFrame:
    """Measure every cell of a label image.

    Parameters
    ----------
    labels : (H, W) int array
        0 = background, each other value one cell (ids need not be consecutive).
    image : (H, W) array
        The image the cells were segmented in (usually uint8), for ``mean_intensity``.
    image_id : str
        Written in the ``image_id`` column.
    pixel_size : float, optional
        Microns per pixel; adds the ``*_um`` / ``*_um2`` columns.

    Returns
    -------
    pandas.DataFrame
        One row per cell, sorted by ``cell_id``, with the columns of ``COLUMNS["cells.csv"]``
        (see :func:`describe_columns`); an empty frame with those columns when there is no cell.
    """
    if labels.ndim != 2 or labels.shape != image.shape:
        raise ValueError(
            f"labels {labels.shape} and image {image.shape} must be the same 2-D shape"
        )
    if pixel_size is not None and not pixel_size > 0:
        raise ValueError(f"pixel_size must be positive, got {pixel_size}")
    table = regionprops_table(
        np.asarray(labels),
        intensity_image=image,
        properties=_PROPERTIES,
        extra_properties=(skeleton_length_px,),
    )
    df = pd.DataFrame(table).rename(columns=_RENAME)
    df["area_px"] = df["area_px"].astype(np.int64)
    df["skeleton_length_px"] = df["skeleton_length_px"].astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        perimeter = df["perimeter_px"].to_numpy(dtype=float)
        circularity = 4 * np.pi * df["area_px"].to_numpy(dtype=float) / perimeter**2
    df["circularity"] = np.where(perimeter > 0, circularity, np.nan)
    df["neurite_index"] = df["skeleton_length_px"] / df["equivalent_diameter_px"]
    if pixel_size is not None:
        df["area_um2"] = df["area_px"] * pixel_size**2
        for name in _LENGTHS:
            df[f"{name}_um"] = df[f"{name}_px"] * pixel_size
    df.insert(0, "image_id", image_id)
    columns = [c.name for c in COLUMNS["cells.csv"] if not c.when or pixel_size is not None]
    return df[columns].sort_values("cell_id", ignore_index=True)


# --------------------------------------------------------------------------- per image


def summarize_image(
    labels: np.ndarray,
    image_id: str,
    cells: pd.DataFrame | None = None,
    pixel_size: float | None = None,
) -> dict[str, object]:
    """Per-image summary: cell count, confluence, median cell area, density.

    Parameters
    ----------
    labels : (H, W) int array
        0 = background.
    image_id : str
    cells : DataFrame, optional
        :func:`measure_cells` of the same labels (for the median neurite index); computed
        from ``labels`` alone when omitted (then ``median_neurite_index`` is not filled).
    pixel_size : float, optional
        Microns per pixel: density per mm² and median area in µm² instead of per megapixel.

    Returns
    -------
    dict
        ``image_id, height_px, width_px, n_cells, confluence_pct, median_area_px,
        median_neurite_index`` and ``median_area_um2, density_per_mm2`` (with a pixel size) or
        ``density_per_mpx`` (without); see ``COLUMNS["images.csv"]``. Percentages and
        densities are rounded to 2 decimals, areas to 1.
    """
    h, w = labels.shape
    ids, areas = np.unique(labels[labels > 0], return_counts=True)
    n = len(ids)
    median_area = float(np.median(areas)) if n else math.nan
    neurite = math.nan
    if cells is not None and len(cells):
        neurite = float(cells["neurite_index"].median())
    row: dict[str, object] = {
        "image_id": image_id,
        "height_px": h,
        "width_px": w,
        "n_cells": n,
        "confluence_pct": round(100.0 * float(areas.sum()) / (h * w), 2),
        "median_area_px": round(median_area, 1),
        "median_neurite_index": round(neurite, 3),
    }
    if pixel_size is not None:
        row["median_area_um2"] = round(median_area * pixel_size**2, 1)
        row["density_per_mm2"] = round(n / (h * w * pixel_size**2 / 1e6), 2)
    else:
        row["density_per_mpx"] = round(n / (h * w / 1e6), 2)
    return row
