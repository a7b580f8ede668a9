"""Every column of every CSV ``phaseseg measure`` writes, with its unit (:data:`COLUMNS`;
``phaseseg measure --describe``, ``docs/measure_columns.md``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    """Documentation of one output column."""

    name: str
    unit: str
    description: str
    when: str = ""  # condition for the column to be present ("" = always)


_PS = "with a pixel size"
_NO_PS = "without a pixel size"

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
        Column(
            "image_id",
            "-",
            "image file name without suffix; a frame of a stack: with `_t003` (time point 3, "
            "0-based), `_z002`, `_s001` (plane, position)",
        ),
        Column("file", "-", "the image file as given"),
        Column("height_px", "px", "image height"),
        Column("width_px", "px", "image width"),
        Column(
            "pixel_size_um",
            "µm",
            "µm per pixel used: --pixel-size, else the image's metadata",
            _PS,
        ),
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
            "plate",
            "-",
            "plate, from --name-pattern's group `plate` (e.g. the image's first folder)",
            "when the names carry a plate",
        ),
        Column(
            "well",
            "-",
            "well parsed from the file name ('all' when the pattern has no well group); for "
            "the frames of a stack without one, the file's id",
            "when time points (or wells, with --name-pattern) are found",
        ),
        Column(
            "field",
            "-",
            "field of view: the position of LIVECell / IncuCyte names "
            "(`..._DDdHHhMMm_POS`), or --name-pattern's group `field`",
            "when the names carry a field",
        ),
        Column(
            "elapsed_h",
            "h",
            "time since the start of imaging, parsed from the image id, or the frame's time "
            "in the stack's metadata",
            "when time points are found",
        ),
    ),
    "timecourse.csv": (
        Column("plate", "-", "plate", "when the names carry a plate"),
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
        "a pixel size (µm per pixel): `--pixel-size`, else the one in the images' metadata",
        "(OME-TIFF, ImageJ TIFF, CZI, ND2, ...) when every image has one. Cells are joined to",
        "images by `image_id`; `cell_id` is the cell's value in `labels/<image_id>.tif`.",
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
        "and optionally `well`, searched in the image id, or from `--name-pattern REGEX`",
        "with any of the groups `plate`, `well`, `field`, `hours` (or `d`/`h`/`m`), searched",
        "in the image's path below the input folder (`plate1/A1/f1`). The frames of a stack",
        "(multi-page TIFF, OME-TIFF, time-lapse) are images `<id>_t000`, `<id>_t001`, ... and",
        "take their time from the file's metadata (OME `DeltaT`, ImageJ `finterval`) when",
        "their id has none. `timecourse.csv` and `timecourse.png` are written when at least",
        "one image has a time point. With a plate, `timecourse.csv` has one row per plate,",
        "well and time point.",
    ]
    for filename, columns in COLUMNS.items():
        lines += ["", f"## {filename}", "", "| column | unit | meaning | present |"]
        lines.append("|---|---|---|---|")
        for c in columns:
            lines.append(f"| `{c.name}` | {c.unit} | {c.description} | {c.when or 'always'} |")
    return "\n".join(lines) + "\n"
