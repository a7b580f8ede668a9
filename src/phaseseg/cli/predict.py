"""``phaseseg predict``: segment images; write a submission, label TIFFs, overlays."""

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


def _cmd_predict(args: argparse.Namespace) -> int:
    from phaseseg.segment.predict import predict_images

    if not (args.submission or args.labels_dir or args.overlays_dir or args.rois_dir):
        raise PhasesegInputError(
            "nothing to write: give --submission, --labels-dir, --overlays-dir or --rois-dir"
        )
    from phaseseg.cli._large import predict_large, split_large_inputs

    large, args.images = split_large_inputs(args.images, args)
    model = load_model_from_args(args)
    if args.cell_type is not None:
        model.check_cell_type(args.cell_type, "--cell-type")
    n_large, cells_large, failed_large = predict_large(large, model, args)
    if not args.images:  # large images only
        for line in failed_large:
            print(f"phaseseg predict: skipped {line}", file=sys.stderr)
        if not n_large:
            raise PhasesegInputError(f"no image could be segmented: {failed_large[0]}")
        print(f"{n_large} images, {cells_large} cells\nlabels: {args.labels_dir}")
        return 1 if failed_large else 0
    cluster, spec = cluster_from_args(args)
    with cluster as client:
        summary = predict_images(
            args.images,
            model,
            submission=args.submission,
            labels_dir=args.labels_dir,
            overlays_dir=args.overlays_dir,
            rois_dir=args.rois_dir,
            tta=args.tta,
            cell_type=args.cell_type,
            min_score=args.min_score,
            resume=args.resume,
            client=client,
            model_spec=spec,
        )
    summary.failed[:0] = failed_large
    for line in summary.failed:
        print(f"phaseseg predict: skipped {line}", file=sys.stderr)
    resumed = f" ({summary.n_resumed} done before)" if summary.n_resumed else ""
    n_images, n_cells = summary.n_images + n_large, summary.n_cells + cells_large
    print(f"{n_images} images{resumed}, {n_cells} cells")
    for what, where in (
        ("submission", args.submission),
        ("labels", args.labels_dir),
        ("overlays", args.overlays_dir),
        ("Fiji ROI sets", args.rois_dir),
    ):
        if where:
            print(f"{what}: {where}")
    return 1 if summary.failed else 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="segment images; write a submission, label TIFFs, overlays")
    p.add_argument(
        "images",
        nargs="+",
        help="image files or folders (searched recursively; an image in a sub-folder keeps "
        "it in its id: plate1/A1/f1.tif -> plate1__A1__f1)",
    )
    p.add_argument("--model", help="model file (default: the bundled model)")
    p.add_argument("--submission", metavar="CSV", help="write a competition submission.csv")
    p.add_argument(
        "--labels-dir",
        metavar="DIR",
        help="write one label TIFF per image (DIR/<id>.tif); a large image (OME-Zarr, or a file "
        "over 67 Mpx) is segmented block by block into DIR/<id>.ome.zarr (OME-Zarr labels)",
    )
    p.add_argument("--overlays-dir", metavar="DIR", help="write one outline overlay PNG per image")
    p.add_argument(
        "--rois-dir",
        metavar="DIR",
        help="write one Fiji/ImageJ ROI set (DIR/<id>.zip, a polygon per cell) per image",
    )
    add_tta_option(p)
    p.add_argument(
        "--cell-type",
        help="use this cell type's thresholds for every image, one of the model's (the bundled "
        "model's: astro, cort, shsy5y; default: predicted per image)",
    )
    add_min_score_option(p)
    add_precision_option(p)
    p.add_argument("--device", help="torch device (default: cuda, else mps if present, else cpu)")
    add_cluster_options(p)
    p.set_defaults(func=_cmd_predict)
