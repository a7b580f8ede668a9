"""Exploratory data analysis of a Sartorius-format data set (``train.csv`` + ``train/*.png``).

:func:`collect_stats` measures every image and annotated cell in one pass; the ``plot_*``
functions turn the measurements into matplotlib figures; :func:`write_eda_report` writes them
as PNG files, a ``summary.csv`` / ``summary.json`` of the numbers, an ``images.csv`` of the
per-image measurements and a self-contained ``report.html``.

Cells are measured with their full RLE masks, so annotations that overlap each keep all their
pixels; a pixel is "overlapping" when two or more annotations cover it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import PercentFormatter
from tqdm.auto import tqdm

from phaseseg.analysis.overlays import overlay_annotations
from phaseseg.analysis.report import Section, figure_png, new_figure, render_html
from phaseseg.io import (
    PhasesegInputError,
    atomic_path,
    read_image,
    read_train_csv,
    rle_pixels,
)

log = logging.getLogger(__name__)

TYPE_COLORS = {"astro": "#1f77b4", "cort": "#ff7f0e", "shsy5y": "#2ca02c"}
"""Color of each known cell type in every figure (others get the next tab10 colors)."""


@dataclass
class Example:
    """One image and its annotations, for overlays.

    Attributes
    ----------
    image_id, cell_type : str
    image : (H, W) uint8
    inst, pix : (P,) int64
        Instance index (0-based) and flat pixel index of every annotated pixel.
    n_cells : int
    """

    image_id: str
    cell_type: str
    image: np.ndarray
    inst: np.ndarray
    pix: np.ndarray
    n_cells: int


@dataclass
class EdaStats:
    """Measurements of a data set.

    Attributes
    ----------
    cells : pd.DataFrame
        One row per annotation: ``id, cell_type, area, overlap_px`` (pixels shared with another
        annotation), ``mean_intensity``.
    images : pd.DataFrame
        One row per image: ``id, cell_type, height, width, n_cells, n_duplicates`` (annotations
        identical to an earlier one), ``covered_px`` (pixels in >= 1 annotation),
        ``overlap_px`` (pixels in >= 2), ``mean, std, p01, p99`` (intensity),
        ``cell_mean, background_mean``.
    histograms : dict of str to (256,) int64
        Pixel intensity counts per cell type.
    examples : dict of str to Example
        One representative image per cell type (median number of cells).
    """

    cells: pd.DataFrame
    images: pd.DataFrame
    histograms: dict[str, np.ndarray]
    examples: dict[str, Example] = field(repr=False)

    @property
    def cell_types(self) -> list[str]:
        """Cell types present, sorted."""
        return sorted(self.images["cell_type"].unique())


# --------------------------------------------------------------------------- measuring


def collect_stats(data_dir: str | os.PathLike) -> EdaStats:
    """Measure every image and annotation of a data set.

    Parameters
    ----------
    data_dir : path
        Folder with ``train.csv`` and ``train/<id>.png``.

    Returns
    -------
    EdaStats

    Raises
    ------
    PhasesegInputError
        If ``train.csv`` or an image is missing or unreadable, or an image's size disagrees with
        ``train.csv``.
    """
    data_dir = Path(data_dir)
    csv = data_dir / "train.csv"
    if not csv.is_file():
        raise PhasesegInputError(f"{data_dir}: no train.csv (expected a Sartorius data folder)")
    df = read_train_csv(csv)
    if df.empty:
        raise PhasesegInputError(f"{csv}: no annotation")
    groups = df.groupby("id", sort=False).indices
    image_dir = data_dir / "train"
    paths = {i: image_dir / f"{i}.png" for i in groups}
    absent = [str(p) for p in paths.values() if not p.is_file()]
    if absent:
        more = f" (and {len(absent) - 1} more)" if len(absent) > 1 else ""
        raise PhasesegInputError(f"{absent[0]}: no such file{more}; train.csv lists it")
    log.info("%s: %d images, %d annotations", csv, len(groups), len(df))

    first = df.drop_duplicates("id").set_index("id")
    n_cells = df.groupby("id", sort=False).size()
    example_ids = {}
    for cell_type, counts in n_cells.groupby(first["cell_type"]):
        order = counts.sort_values(kind="stable")
        example_ids[order.index[len(order) // 2]] = str(cell_type)

    rles = df["annotation"].to_numpy()
    cell_rows, image_rows = [], []
    histograms: dict[str, np.ndarray] = {}
    examples: dict[str, Example] = {}
    for image_id, idx in tqdm(groups.items(), desc="eda", unit="image", disable=None):
        cell_type = str(first.at[image_id, "cell_type"])
        shape = (int(first.at[image_id, "height"]), int(first.at[image_id, "width"]))
        image = read_image(paths[image_id])
        if image.shape != shape:
            raise PhasesegInputError(
                f"{paths[image_id]}: image is {image.shape[0]}x{image.shape[1]}, train.csv says "
                f"{shape[0]}x{shape[1]}"
            )
        try:
            inst, pix, area = rle_pixels(list(rles[idx]), shape)
        except PhasesegInputError as e:
            raise PhasesegInputError(f"{csv}, image {image_id}: {e}") from None
        flat = image.ravel()
        coverage = np.bincount(pix, minlength=flat.size)
        shared = coverage[pix] > 1
        n = len(area)
        cell_sum = np.bincount(inst, weights=flat[pix], minlength=n)
        cell_rows.append(
            pd.DataFrame(
                {
                    "id": image_id,
                    "cell_type": cell_type,
                    "area": area,
                    "overlap_px": np.bincount(inst, weights=shared, minlength=n).astype(np.int64),
                    "mean_intensity": np.divide(
                        cell_sum, area, out=np.full(n, np.nan), where=area > 0
                    ),
                }
            )
        )
        covered = coverage > 0
        p01, p99 = np.percentile(flat, [1, 99])
        image_rows.append(
            {
                "id": image_id,
                "cell_type": cell_type,
                "height": shape[0],
                "width": shape[1],
                "n_cells": n,
                "n_duplicates": int(pd.Series(rles[idx]).duplicated().sum()),
                "covered_px": int(covered.sum()),
                "overlap_px": int((coverage > 1).sum()),
                "mean": float(flat.mean()),
                "std": float(flat.std()),
                "p01": float(p01),
                "p99": float(p99),
                "cell_mean": float(flat[covered].mean()) if covered.any() else np.nan,
                "background_mean": float(flat[~covered].mean()) if not covered.all() else np.nan,
            }
        )
        hist = np.bincount(flat, minlength=256)
        histograms[cell_type] = histograms.get(cell_type, 0) + hist
        if image_id in example_ids:
            examples[cell_type] = Example(image_id, cell_type, image, inst, pix, n)
    cells = pd.concat(cell_rows, ignore_index=True)
    images = pd.DataFrame(image_rows)
    return EdaStats(cells, images, histograms, examples)


def summarize(stats: EdaStats) -> pd.DataFrame:
    """Key numbers per cell type and for all images together.

    Returns
    -------
    pd.DataFrame
        Index: cell types then ``all``. Columns: counts (images, cells, cells per image),
        cell area percentiles (px), overlap (share of cells touching another annotation, of
        annotated pixels covered twice, duplicated annotations) and intensity statistics.
    """
    rows = {}
    for key in [*stats.cell_types, "all"]:
        im = stats.images if key == "all" else stats.images[stats.images["cell_type"] == key]
        ce = stats.cells if key == "all" else stats.cells[stats.cells["cell_type"] == key]
        overlapping = ce["overlap_px"] > 0
        rows[key] = {
            "images": len(im),
            "cells": len(ce),
            "cells_per_image_mean": im["n_cells"].mean(),
            "cells_per_image_median": im["n_cells"].median(),
            "cells_per_image_min": im["n_cells"].min(),
            "cells_per_image_max": im["n_cells"].max(),
            "area_p05": ce["area"].quantile(0.05),
            "area_median": ce["area"].median(),
            "area_p95": ce["area"].quantile(0.95),
            "area_mean": ce["area"].mean(),
            "frac_cells_overlapping": overlapping.mean(),
            "overlap_px_median_when_overlapping": ce.loc[overlapping, "overlap_px"].median(),
            "frac_cells_overlap_over_half": (ce["overlap_px"] > ce["area"] / 2).mean(),
            "frac_annotated_px_overlapping": im["overlap_px"].sum() / im["covered_px"].sum(),
            "duplicate_annotations": int(im["n_duplicates"].sum()),
            "frac_image_annotated": im["covered_px"].sum() / (im["height"] * im["width"]).sum(),
            "intensity_mean": im["mean"].mean(),
            "intensity_std": im["std"].mean(),
            "cell_minus_background": (im["cell_mean"] - im["background_mean"]).mean(),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


# --------------------------------------------------------------------------- figures


def _colors(types: list[str]) -> dict[str, str]:
    extra = iter(matplotlib.colormaps["tab10"].colors[3:])  # type: ignore[attr-defined]
    return {t: TYPE_COLORS.get(t) or _hex(next(extra)) for t in types}


def _hex(rgb: tuple[float, ...]) -> str:
    return "#" + "".join(f"{round(c * 255):02x}" for c in rgb[:3])


def plot_counts(stats: EdaStats) -> Figure:
    """Bar charts: images and annotated cells per cell type."""
    types = stats.cell_types
    colors = _colors(types)
    n_img = stats.images["cell_type"].value_counts().reindex(types)
    n_cell = stats.cells["cell_type"].value_counts().reindex(types)
    fig = new_figure(figsize=(9, 3.4), layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, counts, what in [(axes[0], n_img, "images"), (axes[1], n_cell, "cells")]:
        bars = ax.bar(types, counts.to_numpy(), color=[colors[t] for t in types])
        ax.bar_label(bars, labels=[f"{v:,}" for v in counts.to_numpy()], padding=2)
        ax.set_title(f"{what} per cell type (total {counts.sum():,})")
        ax.set_ylabel(what)
        ax.margins(y=0.15)
        ax.spines[["top", "right"]].set_visible(False)
    return fig


def _box_strip(ax, data: list[np.ndarray], types: list[str], colors: dict[str, str]) -> None:
    """Box plot per type with every value drawn as a jittered dot."""
    ax.boxplot(
        data, tick_labels=types, showfliers=False, widths=0.5, medianprops={"color": "black"}
    )
    rng = np.random.default_rng(0)
    for k, (t, d) in enumerate(zip(types, data, strict=True)):
        x = k + 1 + rng.uniform(-0.18, 0.18, len(d))
        ax.scatter(x, d, s=9, alpha=0.5, color=colors[t], linewidths=0)


def _by_type(frame: pd.DataFrame, values: pd.Series, types: list[str]) -> list[np.ndarray]:
    return [values[frame["cell_type"] == t].dropna().to_numpy() for t in types]


def plot_cells_per_image(stats: EdaStats) -> Figure:
    """Box plots (with every image as a jittered dot) of the number of cells per image."""
    types = stats.cell_types
    data = _by_type(stats.images, stats.images["n_cells"], types)
    fig = new_figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    _box_strip(ax, data, types, _colors(types))
    for k, d in enumerate(data):
        ax.annotate(f"median {np.median(d):.0f}", (k + 1.28, np.median(d)), va="center", size=8)
    ax.set_ylabel("annotated cells per image")
    ax.set_title("Cells per image (one dot per image)")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def plot_cell_areas(stats: EdaStats) -> Figure:
    """Distribution of cell areas per cell type on a log scale (share of cells per bin)."""
    types = stats.cell_types
    colors = _colors(types)
    areas = stats.cells["area"]
    bins = np.logspace(np.log10(max(areas.min(), 1)), np.log10(areas.max() + 1), 60)
    fig = new_figure(figsize=(8, 4), layout="constrained")
    ax = fig.subplots()
    for t in types:
        a = stats.cells.loc[stats.cells["cell_type"] == t, "area"].to_numpy()
        w = np.full(len(a), 100 / len(a))
        med = np.median(a)
        ax.hist(
            a,
            bins=bins.tolist(),
            weights=w,
            histtype="step",
            lw=1.8,
            color=colors[t],
            label=f"{t} (n={len(a):,}, median {med:.0f} px)",
        )
        ax.axvline(med, color=colors[t], ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("cell area (pixels, log scale)")
    ax.set_ylabel("% of the type's cells")
    ax.set_title("Cell area per cell type (dashed: median)")
    ax.legend(frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def plot_overlaps(stats: EdaStats) -> Figure:
    """Overlap of annotations per cell type: share of cells, pixel counts, per-image share."""
    types = stats.cell_types
    colors = _colors(types)
    cells, images = stats.cells, stats.images
    fig = new_figure(figsize=(14, 4), layout="constrained")
    axes = fig.subplots(1, 3)

    ax = axes[0]
    frac = [100 * (cells.loc[cells["cell_type"] == t, "overlap_px"] > 0).mean() for t in types]
    bars = ax.bar(types, frac, color=[colors[t] for t in types])
    ax.bar_label(bars, labels=[f"{f:.1f}%" for f in frac], padding=2)
    ax.set_ylabel("% of cells")
    ax.set_title("Cells sharing pixels with another annotation")
    ax.margins(y=0.15)

    ax = axes[1]
    ov = cells.loc[cells["overlap_px"] > 0]
    for t in types:
        d = ov.loc[ov["cell_type"] == t, "overlap_px"].to_numpy()
        if len(d):
            label = f"{t} (median {np.median(d):.0f} px)"
            ax.ecdf(d, color=colors[t], lw=1.8, label=label)
    if len(ov):
        ax.set_xscale("log")
        ax.legend(frameon=False, loc="lower right")
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("shared pixels per overlapping cell (log scale)")
    ax.set_ylabel("cumulative % of overlapping cells")
    ax.set_title("Pixels shared by overlapping cells")

    ax = axes[2]
    share = 100 * images["overlap_px"] / images["covered_px"].clip(lower=1)
    _box_strip(ax, _by_type(images, share, types), types, colors)
    ax.set_yscale("symlog", linthresh=1, linscale=0.5)
    ticks = [0, 0.5, 1, 2, 5, 10, 20, 50, 100]
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    ax.set_ylim(-0.05, 110)
    ax.set_ylabel("% of the image's annotated pixels (symlog scale)")
    ax.set_title("Annotated pixels covered twice or more")
    for ax in axes:
        ax.spines[["top", "right"]].set_visible(False)
    return fig


def plot_intensity(stats: EdaStats) -> Figure:
    """Intensity per cell type: image mean and std, pixel histograms, cells vs background."""
    types = stats.cell_types
    colors = _colors(types)
    images = stats.images
    fig = new_figure(figsize=(12, 7.5), layout="constrained")
    axes = fig.subplots(2, 2)

    ax = axes[0, 0]
    _box_strip(ax, _by_type(images, images["mean"], types), types, colors)
    ax.yaxis.set_major_formatter("{x:.2f}")
    ax.set_ylabel("mean intensity")
    ax.set_title("Per-image mean intensity")

    ax = axes[0, 1]
    _box_strip(ax, _by_type(images, images["std"], types), types, colors)
    ax.set_ylabel("intensity standard deviation")
    ax.set_title("Per-image intensity standard deviation")

    ax = axes[1, 0]
    levels = np.arange(256)
    for t in types:
        h = stats.histograms[t]
        ax.step(levels, 100 * h / h.sum(), where="mid", color=colors[t], lw=1.5, label=t)
    nonzero = np.flatnonzero(sum(stats.histograms.values()))
    ax.set_xlim(max(nonzero.min() - 5, 0), min(nonzero.max() + 5, 255))
    ax.set_yscale("log")
    ax.set_xlabel("pixel intensity (8 bit)")
    ax.set_ylabel("% of pixels (log scale)")
    ax.set_title("Pixel intensity histogram, all images of a type")
    ax.legend(frameon=False)

    ax = axes[1, 1]
    diff = images["cell_mean"] - images["background_mean"]
    _box_strip(ax, _by_type(images, diff, types), types, colors)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_ylabel("mean in cells - mean in background")
    ax.set_title("Contrast of annotated cells, per image")
    for ax in axes.ravel():
        ax.spines[["top", "right"]].set_visible(False)
    return fig


def _zoom_window(example: Example, size: int) -> tuple[int, int]:
    """Top-left corner of the ``size`` x ``size`` window with the most annotated pixels."""
    from scipy.ndimage import uniform_filter

    h, w = example.image.shape
    size = min(size, h, w)
    cov = np.bincount(example.pix, minlength=h * w).reshape(h, w).astype(np.float64)
    density = uniform_filter(cov, size=size, mode="constant")
    half = size // 2
    inner = density[half : h - size + half + 1, half : w - size + half + 1]
    r, c = np.unravel_index(np.argmax(inner), inner.shape)
    return int(r), int(c)


def plot_overlays(stats: EdaStats, zoom: int = 176, dpi: int = 100) -> Figure:
    """One example image per cell type with annotation contours, plus a zoomed window.

    Images of 300 rows or more are drawn at about their native resolution when saved at
    ``dpi``, so that one-pixel contours stay visible.
    """
    types = [t for t in stats.cell_types if t in stats.examples]
    h, w = next(iter(stats.examples.values())).image.shape
    row_in = max(h, 300) / dpi  # small images are enlarged so that titles fit
    fig = new_figure(figsize=(row_in * (w / h + 1) + 0.3, len(types) * (row_in + 0.35)))
    fig.set_layout_engine("constrained", w_pad=0.02, h_pad=0.02, wspace=0.01, hspace=0.01)
    axes = fig.subplots(len(types), 2, width_ratios=[w / h, 1], squeeze=False)
    for row, t in zip(axes, types, strict=True):
        ex = stats.examples[t]
        rgb = overlay_annotations(ex)
        r, c = _zoom_window(ex, zoom)
        size = min(zoom, *ex.image.shape)
        row[0].imshow(rgb, interpolation="antialiased")
        row[0].add_patch(Rectangle((c - 0.5, r - 0.5), size, size, fill=False, ec="yellow", lw=1.5))
        plural = "" if ex.n_cells == 1 else "s"
        row[0].set_title(f"{t}: {ex.image_id} ({ex.n_cells} annotation{plural})", loc="left")
        row[1].imshow(rgb[r : r + size, c : c + size], interpolation="nearest")
        row[1].set_title(f"zoom: {size}x{size} px in the yellow box", loc="left")
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    return fig


# --------------------------------------------------------------------------- report


FIGURES = {
    "counts": plot_counts,
    "cells_per_image": plot_cells_per_image,
    "cell_areas": plot_cell_areas,
    "overlaps": plot_overlaps,
    "intensity": plot_intensity,
    "overlays": plot_overlays,
}
"""Figure name (PNG file stem) -> function of :class:`EdaStats`."""


def _captions(stats: EdaStats, summary: pd.DataFrame) -> dict[str, tuple[str, str]]:
    s = summary
    types = stats.cell_types

    def per_type(col: str, fmt: str) -> str:
        return ", ".join(f"{t} {format(s.at[t, col], fmt)}" for t in types)

    return {
        "counts": (
            "Images and cells per cell type",
            f"{int(s.at['all', 'images'])} images, {int(s.at['all', 'cells']):,} annotated cells.",
        ),
        "cells_per_image": (
            "Cells per image",
            f"Median cells per image: {per_type('cells_per_image_median', '.0f')}. "
            "Each dot is one image.",
        ),
        "cell_areas": (
            "Cell area",
            f"Median cell area in pixels: {per_type('area_median', '.0f')}; "
            f"5th-95th percentile over all cells {s.at['all', 'area_p05']:.0f}-"
            f"{s.at['all', 'area_p95']:.0f} px.",
        ),
        "overlaps": (
            "Overlapping annotations",
            "Share of cells whose mask shares at least one pixel with another annotation: "
            f"{per_type('frac_cells_overlapping', '.1%')}. Share of annotated pixels covered by "
            f"two or more cells: {per_type('frac_annotated_px_overlapping', '.2%')}. "
            f"Annotations identical to another one of the same image: "
            f"{int(s.at['all', 'duplicate_annotations'])}; cells sharing more than half of "
            f"their pixels: {s.at['all', 'frac_cells_overlap_over_half']:.1%}.",
        ),
        "intensity": (
            "Intensity",
            "Per-image mean intensity (all images sit within "
            f"{stats.images['mean'].min():.2f}-{stats.images['mean'].max():.2f}, so the images "
            "appear to have been normalized) and standard deviation "
            f"(average: {per_type('intensity_std', '.1f')}); pixel histograms over all images "
            "of a type; mean intensity inside annotated cells minus outside, per image.",
        ),
        "overlays": (
            "Example annotations",
            "For each cell type, the image with the median number of cells: each annotation's "
            "contour in its own color, pixels covered by two or more annotations tinted "
            "magenta. Right: the most densely annotated window, enlarged.",
        ),
    }


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, np.integer | int):
        return int(value)
    if isinstance(value, np.floating | float):
        return None if not np.isfinite(value) else float(value)
    return value


def write_eda_report(
    data_dir: str | os.PathLike, out_dir: str | os.PathLike, overlays: bool = True
) -> Path:
    """Measure a data set and write its EDA report.

    Parameters
    ----------
    data_dir : path
        Folder with ``train.csv`` and ``train/<id>.png``.
    out_dir : path
        Output folder (created). Receives ``report.html`` (self-contained), one PNG per figure
        (see :data:`FIGURES`), ``summary.csv``, ``summary.json`` and ``images.csv``.
    overlays : bool
        Include the example images with their annotations. Leave them out where the images'
        licence does not allow redistributing them (e.g. a report committed to a repository).

    Returns
    -------
    Path
        The ``report.html`` written.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)  # created by the first write: a failed run leaves no empty folder
    if out_dir.exists() and not out_dir.is_dir():
        raise PhasesegInputError(f"{out_dir}: exists and is not a folder")
    stats = collect_stats(data_dir)
    summary = summarize(stats)
    log.info("measured %d images in %.1f s", len(stats.images), time.perf_counter() - t0)

    with atomic_path(out_dir / "summary.csv") as tmp:
        summary.to_csv(tmp, index_label="cell_type", float_format="%.6g")
    with atomic_path(out_dir / "summary.json") as tmp:
        tmp.write_text(json.dumps(_json_ready(summary.to_dict(orient="index")), indent=2) + "\n")
    with atomic_path(out_dir / "images.csv") as tmp:
        stats.images.to_csv(tmp, index=False, float_format="%.6g")

    captions = _captions(stats, summary)
    sections = [Section("Summary", "Numbers per cell type (also in summary.csv).", table=summary.T)]
    for name, plot in FIGURES.items():
        if name == "overlays" and not overlays:
            continue
        png = figure_png(plot(stats), palette=name == "overlays")
        with atomic_path(out_dir / f"{name}.png") as tmp:
            tmp.write_bytes(png)
        title, text = captions[name]
        sections.append(Section(title, text, png))
        log.debug("figure %s: %d kB", name, len(png) // 1024)
    meta = (
        f"Data: {data_dir} - {len(stats.images)} images, "
        f"{len(stats.cells):,} annotations - generated {time.strftime('%Y-%m-%d %H:%M')}"
    )
    html = render_html("phaseseg EDA report", sections, meta)
    report = out_dir / "report.html"
    with atomic_path(report) as tmp:
        tmp.write_text(html, encoding="utf-8")
    log.info("wrote %s in %.1f s", report, time.perf_counter() - t0)
    return report
