"""What biologists need from a segmentation: per-cell shape, per-image counts, growth curves.

* :func:`measure_cells` — one row per cell (size, shape, intensity, neurite index), computed with
  :func:`skimage.measure.regionprops_table`;
* :func:`summarize_image` — cell count, confluence, median cell area and cell density;
* :func:`parse_time` — well and elapsed time from file names (LIVECell convention or a regex);
* :func:`timecourse` / :func:`plot_timecourse` — count and confluence over time per well;
* :func:`measure_images` — the whole pipeline behind ``phaseseg measure``: images (segmented by a
  model, or with label images given) -> ``cells.csv``, ``images.csv``, ``timecourse.csv``,
  label TIFFs, overlays and a self-contained ``report.html``.

Every column of every CSV is documented with its unit in :data:`COLUMNS`
(``phaseseg measure --describe``, ``docs/measure_columns.md``).

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

import logging
import math
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from skimage.measure import regionprops_table
from skimage.morphology import skeletonize
from tqdm.auto import tqdm

from phaseseg import io
from phaseseg.formats import LABEL_SUFFIXES, read_labels, write_labels

if TYPE_CHECKING:
    from phaseseg.segmenter import Segmenter

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- column docs


@dataclass(frozen=True)
class Column:
    """Documentation of one output column."""

    name: str
    unit: str
    description: str
    when: str = ""  # condition for the column to be present ("" = always)


_PS = "with --pixel-size"
_NO_PS = "without --pixel-size"

#: Columns of each output CSV, in file order.
COLUMNS: dict[str, tuple[Column, ...]] = {
    "cells.csv": (
        Column("image_id", "-", "image file name without suffix"),
        Column("cell_id", "-", "the cell's label in `labels/<image_id>.tif`"),
        Column("centroid_y_px", "px", "row of the cell's centroid, from the top edge"),
        Column("centroid_x_px", "px", "column of the cell's centroid, from the left edge"),
        Column("area_px", "pixels", "number of pixels of the cell"),
        Column("perimeter_px", "px", "length of the outline (skimage 4-connected estimate)"),
        Column("equivalent_diameter_px", "px", "diameter of the disc with the cell's area"),
        Column(
            "major_axis_length_px",
            "px",
            "major axis of the ellipse with the cell's second moments",
        ),
        Column(
            "minor_axis_length_px",
            "px",
            "minor axis of the ellipse with the cell's second moments",
        ),
        Column("eccentricity", "-", "of that ellipse: 0 = circle, towards 1 = elongated"),
        Column("solidity", "-", "area / area of the convex hull: 1 = convex, low = branched"),
        Column(
            "circularity",
            "-",
            "4 pi area / perimeter^2: about 1 for a disc, lower for irregular or branched "
            "outlines (empty when the perimeter is 0)",
        ),
        Column(
            "mean_intensity",
            "gray level",
            "mean image value inside the cell (0-255; 16-bit images are min-max rescaled "
            "to 8 bit when read, so compare within one acquisition only)",
        ),
        Column(
            "skeleton_length_px",
            "px",
            "number of pixels of the mask's skeleton (skimage.morphology.skeletonize)",
        ),
        Column(
            "neurite_index",
            "-",
            "skeleton_length_px / equivalent_diameter_px: ~0 round cell, ~1 ellipse of "
            "aspect ratio 2, larger with longer neurites",
        ),
        Column("area_um2", "µm²", "area_px x pixel_size²", _PS),
        Column("perimeter_um", "µm", "perimeter_px x pixel_size", _PS),
        Column("equivalent_diameter_um", "µm", "equivalent_diameter_px x pixel_size", _PS),
        Column("major_axis_length_um", "µm", "major_axis_length_px x pixel_size", _PS),
        Column("minor_axis_length_um", "µm", "minor_axis_length_px x pixel_size", _PS),
        Column("skeleton_length_um", "µm", "skeleton_length_px x pixel_size", _PS),
    ),
    "images.csv": (
        Column("image_id", "-", "image file name without suffix"),
        Column("file", "-", "the image file as given"),
        Column("height_px", "px", "image height"),
        Column("width_px", "px", "image width"),
        Column("n_cells", "cells", "number of cells segmented"),
        Column("confluence_pct", "%", "percentage of the image area covered by cells"),
        Column("median_area_px", "pixels", "median cell area (empty when there is no cell)"),
        Column("median_neurite_index", "-", "median neurite index of the cells (see cells.csv)"),
        Column("median_area_um2", "µm²", "median cell area", _PS),
        Column("density_per_mm2", "cells/mm²", "n_cells / imaged area", _PS),
        Column("density_per_mpx", "cells/Mpx", "n_cells per million pixels", _NO_PS),
        Column(
            "cell_type",
            "-",
            "culture type whose post-processing thresholds were used: predicted by the "
            "model per image, or given with --cell-type",
            "when a model segments the images",
        ),
        Column(
            "well",
            "-",
            "well parsed from the file name ('all' when the pattern has no well group)",
            "when time points are found",
        ),
        Column(
            "elapsed_h",
            "h",
            "time since the start of imaging, parsed from the file name",
            "when time points are found",
        ),
    ),
    "timecourse.csv": (
        Column("well", "-", "well ('all' when the file names carry no well)"),
        Column("elapsed_h", "h", "time point"),
        Column("n_images", "images", "images (fields of view) of this well and time"),
        Column("n_cells", "cells", "cells counted in these images, in total"),
        Column("cells_per_image", "cells", "mean number of cells per image"),
        Column("confluence_pct", "%", "mean confluence of these images"),
        Column("median_area_px", "pixels", "mean over the images of their median cell area"),
        Column("median_area_um2", "µm²", "same in µm²", _PS),
        Column("density_per_mm2", "cells/mm²", "mean cell density of these images", _PS),
        Column("density_per_mpx", "cells/Mpx", "mean cell density of these images", _NO_PS),
    ),
}


def describe_columns() -> str:
    """Markdown documentation of the output columns of ``phaseseg measure`` (all CSV files).

    This text is also ``docs/measure_columns.md``; a test keeps the two identical.
    """
    lines = [
        "# `phaseseg measure` output columns",
        "",
        "Generated by `phaseseg measure --describe`. Units: px = pixel lengths; µm values need",
        "`--pixel-size` (µm per pixel). Cells are joined to images by `image_id`; `cell_id` is",
        "the cell's value in `labels/<image_id>.tif`.",
        "",
        "**Neurite index** = skeleton length / equivalent diameter (dimensionless): the length",
        "of the mask's skeleton (`skimage.morphology.skeletonize`, in pixels) relative to the",
        "diameter of the disc of the same area. About 0 for a round cell, about 1 for an",
        "ellipse twice as long as wide, about 6 for a cell body with two thin neurites five",
        "body diameters long each. Ragged outlines add short spurs: compare conditions",
        "measured the same way rather than reading it as an absolute length.",
        "",
        "**Time points** come from LIVECell-style names",
        "`CELLTYPE_Phase_WELL_REP_DDdHHhMMm_POS` (e.g. `SHSY5Y_Phase_A10_1_00d04h00m_1.tif`:",
        "well A10, 4 h) or from `--time-from REGEX` with named groups `hours`, or `d`/`h`/`m`,",
        "and optionally `well`. `timecourse.csv` and `timecourse.png` are written when at",
        "least one image has a time point.",
    ]
    for filename, columns in COLUMNS.items():
        lines += ["", f"## {filename}", "", "| column | unit | meaning | present |"]
        lines.append("|---|---|---|---|")
        for c in columns:
            lines.append(f"| `{c.name}` | {c.unit} | {c.description} | {c.when or 'always'} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- per cell

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


# --------------------------------------------------------------------------- time points

#: LIVECell file names: ``CELLTYPE_Phase_WELL_REP_DDdHHhMMm_POS`` (matched against the stem).
LIVECELL_NAME = re.compile(
    r"^(?P<cell_type>[^_]+)_Phase_(?P<well>[A-Za-z]+\d+)_(?P<rep>\d+)_"
    r"(?P<d>\d+)d(?P<h>\d+)h(?P<m>\d+)m_(?P<pos>\d+)$"
)
_TIME_GROUPS = ("hours", "d", "h", "m")


@dataclass(frozen=True)
class TimePoint:
    """Where and when an image was taken."""

    well: str  # "all" when the file name carries no well
    elapsed_h: float  # hours since the start of imaging


def compile_time_pattern(regex: str) -> re.Pattern[str]:
    """Compile a ``--time-from`` regular expression and check its named groups.

    The pattern needs ``(?P<hours>...)`` (a number, may be fractional) or any of
    ``(?P<d>...)``, ``(?P<h>...)``, ``(?P<m>...)`` (days, hours, minutes; missing ones count 0),
    and may have ``(?P<well>...)``.

    Raises
    ------
    PhasesegInputError
        When the expression does not compile or has none of the time groups.

    Examples
    --------
    >>> compile_time_pattern(r"t(?P<hours>\\d+)h").groupindex["hours"]
    1
    """
    try:
        pattern = re.compile(regex)
    except re.error as e:
        raise io.PhasesegInputError(
            f"--time-from {regex!r}: not a regular expression ({e})"
        ) from None
    if not set(pattern.groupindex) & set(_TIME_GROUPS):
        raise io.PhasesegInputError(
            f"--time-from {regex!r}: needs a named group (?P<hours>...) or (?P<d>...), "
            "(?P<h>...), (?P<m>...)"
        )
    return pattern


def parse_time(name: str | os.PathLike, pattern: re.Pattern[str] | None = None) -> TimePoint | None:
    """Well and elapsed hours from an image file name.

    Parameters
    ----------
    name : str or path
        File name or path (only the name is used).
    pattern : compiled regex, optional
        From :func:`compile_time_pattern`; searched (``re.search``) in the file's stem, then in
        its full name. Default: the LIVECell convention :data:`LIVECELL_NAME` on the stem.

    Returns
    -------
    TimePoint or None
        None when the name does not match (or a time group is not a number).

    Examples
    --------
    >>> parse_time("SHSY5Y_Phase_A10_1_01d04h30m_1.tif")
    TimePoint(well='A10', elapsed_h=28.5)
    >>> pattern = compile_time_pattern(r"_(?P<well>[A-H]\\d+)_t(?P<hours>[\\d.]+)h")
    >>> parse_time("plate1_B3_t12.5h.png", pattern)
    TimePoint(well='B3', elapsed_h=12.5)
    >>> parse_time("image.png") is None
    True
    """
    path = Path(name)
    if pattern is None:
        match = LIVECELL_NAME.match(path.stem)
    else:
        match = pattern.search(path.stem) or pattern.search(path.name)
    if match is None:
        return None
    groups = {k: v for k, v in match.groupdict().items() if v is not None}
    try:
        if "hours" in groups:
            hours = float(groups["hours"])
        else:
            parts = [float(groups.get(k, 0)) for k in ("d", "h", "m")]
            if not any(k in groups for k in ("d", "h", "m")):
                return None
            hours = 24 * parts[0] + parts[1] + parts[2] / 60
    except ValueError:
        return None
    if not math.isfinite(hours):
        return None
    return TimePoint(groups.get("well") or "all", hours)


# --------------------------------------------------------------------------- time course

_TC_MEANS = (
    ("cells_per_image", "n_cells"),
    ("confluence_pct", "confluence_pct"),
    ("median_area_px", "median_area_px"),
    ("median_area_um2", "median_area_um2"),
    ("density_per_mm2", "density_per_mm2"),
    ("density_per_mpx", "density_per_mpx"),
)


def timecourse(images: pd.DataFrame) -> pd.DataFrame:
    """Aggregate per-image summaries by well and time point.

    Parameters
    ----------
    images : DataFrame
        Rows of :func:`summarize_image` with ``well`` and ``elapsed_h`` columns; rows without a
        time (``elapsed_h`` NaN) are ignored.

    Returns
    -------
    DataFrame
        One row per (well, time point), sorted by well then time, with the columns of
        ``COLUMNS["timecourse.csv"]``: totals of ``n_cells``, means of the others.
    """
    timed = images.dropna(subset=["elapsed_h"])
    if timed.empty:
        return pd.DataFrame(columns=[c.name for c in COLUMNS["timecourse.csv"] if not c.when])
    groups = timed.groupby(["well", "elapsed_h"], sort=True)
    out = groups.size().rename("n_images").to_frame()
    out["n_cells"] = groups["n_cells"].sum()
    for name, source in _TC_MEANS:
        if source in timed.columns:
            out[name] = groups[source].mean().round(2)
    return out.reset_index()


def plot_timecourse(tc: pd.DataFrame) -> Figure:
    """Cells per image and confluence over time, one line per well.

    Parameters
    ----------
    tc : DataFrame
        :func:`timecourse` output.

    Returns
    -------
    matplotlib Figure (two panels side by side).
    """
    from phaseseg.report import new_figure

    fig = new_figure(figsize=(10, 3.8), layout="constrained")
    ax_n, ax_c = fig.subplots(1, 2)
    wells = list(dict.fromkeys(tc["well"]))
    for well in wells:
        rows = tc[tc["well"] == well].sort_values("elapsed_h")
        label = None if len(wells) == 1 and well == "all" else str(well)
        ax_n.plot(rows["elapsed_h"], rows["cells_per_image"], "o-", ms=4, label=label)
        ax_c.plot(rows["elapsed_h"], rows["confluence_pct"], "o-", ms=4, label=label)
    multi = tc.groupby(["well", "elapsed_h"])["n_images"].first().gt(1).any()
    ax_n.set_ylabel("cells per image" + (" (mean of fields)" if multi else ""))
    ax_n.set_title("Cell count")
    ax_c.set_ylabel("confluence (% of area)")
    ax_c.set_title("Confluence")
    for ax in (ax_n, ax_c):
        ax.set_xlabel("elapsed time (h)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    if len(wells) > 1 or wells != ["all"]:
        ax_c.legend(title="well", fontsize="small", ncols=1 + len(wells) // 12)
    return fig


# --------------------------------------------------------------------------- pipeline


@dataclass
class MeasureSummary:
    """What :func:`measure_images` did."""

    n_images: int = 0
    n_cells: int = 0
    failed: list[str] = field(default_factory=list)  # one line per skipped image
    n_timed: int = 0  # images with a time point
    warnings: list[str] = field(default_factory=list)  # shown in the report
    seconds: float = 0.0  # wall time of the per-image loop
    outputs: dict[str, Path] = field(default_factory=dict)  # name -> file or folder


def find_label_files(inputs: Iterable[str | os.PathLike]) -> dict[str, Path]:
    """Map image ids (file stems) to label image files found in folders and/or files.

    Raises
    ------
    PhasesegInputError
        A path that does not exist, or two label files for one id.
    """
    found: dict[str, Path] = {}
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = sorted(
                f
                for f in p.iterdir()
                if f.suffix.lower() in LABEL_SUFFIXES and not f.name.startswith(".")
            )
        elif p.is_file():
            files = [p]
        else:
            raise io.PhasesegInputError(f"{p}: no such label file or folder")
        for f in files:
            if f.stem in found:
                raise io.PhasesegInputError(f"{f}: second label file for id {f.stem!r}")
            found[f.stem] = f
    return found


def _thumbnail(rgb: np.ndarray, max_side: int = 480) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray(rgb)
    im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.asarray(im)


def _pick(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all when ``n <= k``)."""
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def measure_images(
    inputs: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    model: Segmenter | None = None,
    labels: list[str | os.PathLike] | None = None,
    pixel_size: float | None = None,
    time_pattern: str | None = None,
    tta: bool = False,
    cell_type: str | None = None,
    n_report_overlays: int = 12,
) -> MeasureSummary:
    """Segment (or read labels for) images, measure every cell and write the outputs.

    Parameters
    ----------
    inputs : list of paths
        Image files and/or folders (see :func:`phaseseg.io.find_images`).
    out_dir : path
        Created if needed. Receives ``cells.csv``, ``images.csv``, ``timecourse.csv`` and
        ``timecourse.png`` (when time points are found), ``labels/<id>.tif``,
        ``overlays/<id>.png`` and ``report.html``.
    model : phaseseg.segmenter.Segmenter, optional
        Segments the images; needed unless ``labels`` is given.
    labels : list of paths, optional
        Label images (folders and/or files) matched to images by file stem; used instead of
        the model.
    pixel_size : float, optional
        Microns per pixel (adds µm columns; density per mm²).
    time_pattern : str, optional
        Regex for :func:`compile_time_pattern`; default: LIVECell file names.
    tta : bool
        Flip test-time augmentation when segmenting.
    cell_type : str, optional
        Culture type whose thresholds the model uses for every image (one of the model's
        types); default: predicted per image. Give it for a time series of one culture, so
        that all time points are post-processed alike.
    n_report_overlays : int
        Overlays shown in the report (spread over time, or over the input order).

    Returns
    -------
    MeasureSummary
        An image that cannot be read, has no label file, or whose labels do not fit it is
        logged, listed in ``failed`` and skipped.
    """
    from phaseseg.predict import overlay, write_png

    if model is None and labels is None:
        raise ValueError("give a model or label images")
    if pixel_size is not None and not (math.isfinite(pixel_size) and pixel_size > 0):
        raise io.PhasesegInputError(f"--pixel-size must be a positive number, got {pixel_size}")
    pattern = compile_time_pattern(time_pattern) if time_pattern is not None else None
    paths = io.find_image_set(inputs)
    label_files = find_label_files(labels) if labels is not None else None
    if cell_type is not None and label_files is None and cell_type not in model.postprocess:
        known = ", ".join(model.postprocess)
        raise io.PhasesegInputError(f"--cell-type {cell_type!r}: the model knows {known}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise io.PhasesegInputError(f"{out}: exists and is not a folder")
    times = [parse_time(p, pattern) for p in paths]
    timed = [i for i, t in enumerate(times) if t is not None]
    if pattern is not None and len(timed) < len(paths):
        missed = [p.name for p, t in zip(paths, times, strict=True) if t is None]
        log.warning(
            "--time-from matched no time in %d of %d file names (e.g. %s)",
            len(missed),
            len(paths),
            missed[0],
        )
    order = sorted(timed, key=lambda i: (times[i].well, times[i].elapsed_h)) if timed else []
    order += [i for i in range(len(paths)) if times[i] is None]
    rank = {idx: r for r, idx in enumerate(order)}  # report order: by well and time
    shown = {order[j] for j in _pick(len(order), n_report_overlays)}

    summary = MeasureSummary(n_timed=len(timed))
    rows: list[dict[str, object]] = []
    dist: dict[str, list[np.ndarray]] = {"area": [], "neurite": [], "hours": []}
    thumbs: dict[int, tuple[np.ndarray, str]] = {}
    (out / "labels").mkdir(parents=True, exist_ok=True)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    cells_csv = out / "cells.csv"
    with io.atomic_path(cells_csv) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        header = True
        for i, path in enumerate(tqdm(paths, desc="measure", unit="img")):
            image_id = path.stem
            try:
                image = io.read_image(path)
                lab, used_type = _labels_for(image, path, model, label_files, tta, cell_type)
            except io.PhasesegInputError as e:
                log.error("skipped: %s", e)
                summary.failed.append(str(e))
                continue
            write_labels(out / "labels" / f"{image_id}.tif", lab)
            rgb = overlay(image, lab)
            write_png(out / "overlays" / f"{image_id}.png", rgb)
            cells = measure_cells(lab, image, image_id, pixel_size)
            cells.to_csv(fh, header=header, index=False, float_format="%.6g")
            header = False
            row = summarize_image(lab, image_id, cells, pixel_size)
            row["file"] = str(path)
            if used_type is not None:
                row["cell_type"] = used_type
            if times[i] is not None:
                row["well"], row["elapsed_h"] = times[i].well, times[i].elapsed_h
            rows.append(row)
            area_col = "area_um2" if pixel_size is not None else "area_px"
            dist["area"].append(cells[area_col].to_numpy(float))
            dist["neurite"].append(cells["neurite_index"].to_numpy(float))
            hours = times[i].elapsed_h if times[i] is not None else math.nan
            dist["hours"].append(np.full(len(cells), hours))
            if i in shown:
                caption = image_id if times[i] is None else f"{times[i].well}, {hours:g} h"
                thumbs[rank[i]] = (_thumbnail(rgb), f"{caption}: {len(cells)} cells")
            summary.n_images += 1
            summary.n_cells += len(cells)
            log.debug("%s: %d cells", path, len(cells))
        if header:  # no image measured: still a valid CSV with its header
            cols = [c.name for c in COLUMNS["cells.csv"] if not c.when or pixel_size is not None]
            fh.write(",".join(cols) + "\n")
    summary.seconds = time.perf_counter() - start
    summary.outputs.update(cells=cells_csv, labels=out / "labels", overlays=out / "overlays")

    images = _images_frame(rows, pixel_size)
    if cell_type is None and "cell_type" in images.columns and images["cell_type"].nunique() > 1:
        counts = ", ".join(f"{t} {n}" for t, n in images["cell_type"].value_counts().items())
        message = (
            f"the model predicted different cell types for these images ({counts}), so their "
            "cells were post-processed with different thresholds; for one culture, give "
            "--cell-type"
        )
        log.warning(message)
        summary.warnings.append(message)
    with io.atomic_path(out / "images.csv") as tmp:
        images.to_csv(tmp, index=False)
    summary.outputs["images"] = out / "images.csv"
    tc = timecourse(images) if "elapsed_h" in images.columns else None
    tc_png = None
    if tc is not None and len(tc):
        with io.atomic_path(out / "timecourse.csv") as tmp:
            tc.to_csv(tmp, index=False)
        from phaseseg.report import figure_png

        tc_png = figure_png(plot_timecourse(tc), dpi=110)
        with io.atomic_path(out / "timecourse.png") as tmp:
            tmp.write_bytes(tc_png)
        summary.outputs.update(timecourse=out / "timecourse.csv", plot=out / "timecourse.png")
    html = _report_html(images, tc, tc_png, dist, thumbs, summary, pixel_size)
    with io.atomic_path(out / "report.html") as tmp:
        tmp.write_text(html, encoding="utf-8")
    summary.outputs["report"] = out / "report.html"
    return summary


def _labels_for(
    image: np.ndarray,
    path: Path,
    model: Segmenter | None,
    label_files: dict[str, Path] | None,
    tta: bool,
    cell_type: str | None,
) -> tuple[np.ndarray, str | None]:
    """Labels of one image (from the model or a label file) and the predicted cell type."""
    if label_files is None:
        result = model.segment_full(image, tta=tta, cell_type=cell_type)
        return result.labels, result.cell_type
    if path.stem not in label_files:
        raise io.PhasesegInputError(f"{path}: no label image named {path.stem}.tif/.png")
    lab = read_labels(label_files[path.stem])
    if lab.shape != image.shape:
        raise io.PhasesegInputError(
            f"{label_files[path.stem]}: labels {lab.shape} do not fit image {path} {image.shape}"
        )
    return lab, None


def _images_frame(rows: list[dict[str, object]], pixel_size: float | None) -> pd.DataFrame:
    def present(c: Column) -> bool:
        if c.when == _PS:
            return pixel_size is not None
        if c.when == _NO_PS:
            return pixel_size is None
        return not c.when or any(c.name in r for r in rows)

    columns = [c.name for c in COLUMNS["images.csv"] if present(c)]
    frame = pd.DataFrame(rows, columns=columns)
    if "well" in frame.columns:
        frame = frame.astype({"elapsed_h": float})
    return frame


def _report_html(
    images: pd.DataFrame,
    tc: pd.DataFrame | None,
    tc_png: bytes | None,
    dist: dict[str, list[np.ndarray]],
    thumbs: dict[int, tuple[np.ndarray, str]],
    summary: MeasureSummary,
    pixel_size: float | None,
) -> str:
    from phaseseg.report import Section, figure_png, render_html

    sections = []
    if tc_png is not None and tc is not None:
        first, last = tc.iloc[0], tc.iloc[-1]
        text = (
            f"{len(tc)} time points in {tc['well'].nunique()} well(s). "
            f"From {first['elapsed_h']:g} h to {last['elapsed_h']:g} h "
            f"(well {last['well']}): {first['cells_per_image']:g} -> "
            f"{last['cells_per_image']:g} cells per image, confluence "
            f"{first['confluence_pct']:g}% -> {last['confluence_pct']:g}%."
        )
        sections.append(Section("Time course", text, tc_png, tc))
    sections.append(
        Section(
            "Images",
            f"{summary.n_images} images measured, {summary.n_cells} cells"
            + (f"; {len(summary.failed)} skipped" if summary.failed else "")
            + ". Columns are documented in docs/measure_columns.md.",
            table=images.drop(columns=["file"]).set_index("image_id"),
        )
    )
    if summary.n_cells:
        sections.append(
            Section(
                "Cell size and shape",
                "Distributions over all cells"
                + (" (earliest and latest time point)." if tc is not None and len(tc) > 1 else "."),
                figure_png(_plot_distributions(dist, pixel_size), dpi=100),
            )
        )
    if thumbs:
        sections.append(
            Section(
                "Overlays",
                f"{len(thumbs)} of {summary.n_images} images with each cell's outline; "
                "full-size overlays are in overlays/.",
                figure_png(_plot_thumbs(thumbs), dpi=100, palette=True),
            )
        )
    if summary.warnings:
        sections.insert(0, Section("Warnings", " | ".join(summary.warnings)))
    if summary.failed:
        sections.append(Section("Skipped images", " | ".join(summary.failed)))
    return render_html("phaseseg measure", sections, meta=f"{summary.n_images} images")


def _plot_distributions(dist: dict[str, list[np.ndarray]], pixel_size: float | None) -> Figure:
    from phaseseg.report import new_figure

    area, neurite, hours = (np.concatenate(dist[k]) for k in ("area", "neurite", "hours"))
    fig = new_figure(figsize=(10, 3.5), layout="constrained")
    ax_a, ax_n = fig.subplots(1, 2)
    groups = [("all cells", np.ones(len(area), bool))]
    finite = hours[np.isfinite(hours)]
    if len(np.unique(finite)) > 1:
        lo, hi = finite.min(), finite.max()
        groups = [(f"{lo:g} h", hours == lo), (f"{hi:g} h", hours == hi)]
    positive = area[area > 0]
    bins_a = (
        np.geomspace(max(positive.min(), 1e-3), positive.max() * 1.01, 40) if len(positive) else 10
    )
    bins_n = np.linspace(0, max(float(np.nanpercentile(neurite, 99.5)), 1.0), 40)
    for name, sel in groups:
        kw = {"histtype": "step", "linewidth": 1.5, "label": f"{name} ({sel.sum()} cells)"}
        ax_a.hist(area[sel], bins=bins_a, **kw)
        ax_n.hist(np.clip(neurite[sel], 0, bins_n[-1]), bins=bins_n, **kw)
    ax_a.set_xscale("log")
    ax_a.set_xlabel("cell area (µm²)" if pixel_size is not None else "cell area (px)")
    ax_n.set_xlabel("neurite index (skeleton length / equivalent diameter; last bin: and above)")
    for ax in (ax_a, ax_n):
        ax.set_ylabel("cells")
        ax.legend(fontsize="small")
    return fig


def _plot_thumbs(thumbs: dict[int, tuple[np.ndarray, str]]) -> Figure:
    from phaseseg.report import new_figure

    n = len(thumbs)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    first = next(iter(thumbs.values()))[0]
    aspect = first.shape[0] / first.shape[1]
    fig = new_figure(figsize=(5.2 * cols, 5.2 * aspect * rows + 0.35 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, (_, (rgb, caption)) in zip(axes, sorted(thumbs.items()), strict=False):
        ax.imshow(rgb, interpolation="lanczos")
        ax.set_title(caption, fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    return fig
