"""``phaseseg predict``: segment images; write a submission, label TIFFs, overlays."""

from __future__ import annotations

import argparse
import sys

from phaseseg.cli._common import (
    add_cluster_options,
    add_min_score_option,
    add_precision_option,
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
    model = load_model_from_args(args)
    if args.cell_type is not None and args.cell_type not in model.postprocess:
        known = ", ".join(model.postprocess)
        raise PhasesegInputError(f"--cell-type {args.cell_type!r}: the model knows {known}")
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
    for line in summary.failed:
        print(f"phaseseg predict: skipped {line}", file=sys.stderr)
    resumed = f" ({summary.n_resumed} done before)" if summary.n_resumed else ""
    print(f"{summary.n_images} images{resumed}, {summary.n_cells} cells")
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
    p.add_argument("--labels-dir", metavar="DIR", help="write one label TIFF per image")
    p.add_argument("--overlays-dir", metavar="DIR", help="write one outline overlay PNG per image")
    p.add_argument(
        "--rois-dir",
        metavar="DIR",
        help="write one Fiji/ImageJ ROI set (DIR/<id>.zip, a polygon per cell) per image",
    )
    p.add_argument("--tta", action="store_true", help="average over flips (4x slower)")
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
