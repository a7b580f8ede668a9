"""``phaseseg measure``: measure every cell; CSVs, time course, overlays, report."""

from __future__ import annotations

import argparse
import sys

from phaseseg.cli._common import (
    add_cluster_options,
    add_min_score_option,
    add_precision_option,
    add_tta_option,
    cluster_from_args,
    load_model_from_args,
)
from phaseseg.io import PhasesegInputError


def _cmd_measure(args: argparse.Namespace) -> int:
    from phaseseg.analysis.measure import describe_columns, measure_images
    from phaseseg.io import output_dir

    if args.describe:
        print(describe_columns(), end="")
        return 0
    if not args.images or not args.out:
        raise PhasesegInputError("give IMAGES and --out DIR (or --describe)")
    if args.labels and args.model:
        raise PhasesegInputError("give --model or --labels, not both")
    model = None if args.labels else load_model_from_args(args)
    cluster, spec = cluster_from_args(args)
    with output_dir(args.out), cluster as client:  # a failed run leaves no empty folders
        summary = measure_images(
            args.images,
            args.out,
            model=model,
            labels=args.labels,
            pixel_size=args.pixel_size,
            time_pattern=args.time_from,
            tta=args.tta,
            cell_type=args.cell_type,
            min_score=args.min_score,
            rois_dir=args.rois_dir,
            name_pattern=args.name_pattern,
            resume=args.resume,
            client=client,
            model_spec=spec,
        )
    for line in summary.failed:
        print(f"phaseseg measure: skipped {line}", file=sys.stderr)
    per_image = summary.seconds / max(summary.n_images, 1)
    resumed = f" ({summary.n_resumed} done before)" if summary.n_resumed else ""
    print(
        f"{summary.n_images} images{resumed}, {summary.n_cells} cells "
        f"({per_image:.2f} s per image); {summary.n_timed} with a time point"
    )
    if summary.pixel_size_source:
        print(summary.pixel_size_source)
    for what, where in summary.outputs.items():
        print(f"{what}: {where}")
    return 1 if summary.failed else 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "measure",
        help="measure every cell: cells.csv, images.csv, time course, overlays, report.html",
        description="Segment images (or read their label images) and measure every cell. "
        "Writes cells.csv, images.csv, timecourse.csv/.png (when file names carry time "
        "points), labels/*.tif, overlays/*.png and report.html into --out. "
        "Columns and units: phaseseg measure --describe.",
    )
    p.add_argument(
        "images",
        nargs="*",
        help="image files or folders (searched recursively; an image in a sub-folder keeps "
        "it in its id: plate1/A1/f1.tif -> plate1__A1__f1)",
    )
    p.add_argument("--out", metavar="DIR", help="output folder")
    p.add_argument("--model", help="model file (default: the bundled model)")
    p.add_argument(
        "--labels",
        nargs="+",
        metavar="DIR_OR_FILE",
        help="label images (folders or files) matched to images by file stem; "
        "used instead of running the model",
    )
    p.add_argument(
        "--pixel-size",
        type=float,
        metavar="UM",
        help="microns per pixel (adds µm columns; default: from the images' metadata, "
        "e.g. OME-TIFF, ImageJ TIFF, CZI, ND2)",
    )
    p.add_argument(
        "--rois-dir",
        metavar="DIR",
        help="also write one Fiji/ImageJ ROI set (DIR/<id>.zip, a polygon per cell) per image",
    )
    p.add_argument(
        "--time-from",
        metavar="REGEX",
        help="regex with named groups (?P<hours>...) or (?P<d>..)d(?P<h>..)h(?P<m>..)m and "
        "optionally (?P<well>...), searched in file names (default: LIVECell names "
        "CELLTYPE_Phase_WELL_REP_DDdHHhMMm_POS)",
    )
    p.add_argument(
        "--name-pattern",
        metavar="REGEX",
        help="regex with named groups among (?P<plate>...), (?P<well>...), (?P<field>...) and "
        "a time ((?P<hours>...) or (?P<d>..)d(?P<h>..)h(?P<m>..)m), searched in each image's "
        "path below its input folder, e.g. "
        "'(?P<plate>[^/]+)/(?P<well>[A-P]\\d+)/f(?P<field>\\d+)' for plate1/A1/f1.tif; they "
        "become images.csv columns (default: LIVECell / IncuCyte names give well, field and "
        "time)",
    )
    p.add_argument(
        "--cell-type",
        help="use this culture type's thresholds for every image (default: predicted per "
        "image); give it for a time series of one culture",
    )
    p.add_argument("--describe", action="store_true", help="print the output columns and exit")
    add_tta_option(p)
    add_min_score_option(p)
    add_precision_option(p)
    p.add_argument("--device", help="torch device (default: cuda, else mps if present, else cpu)")
    add_cluster_options(p)
    p.set_defaults(func=_cmd_measure)
