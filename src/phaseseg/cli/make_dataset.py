"""``phaseseg make-dataset``: your images and label images (or COCO) -> a training folder."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

from phaseseg.io import CELL_TYPES, PhasesegInputError


def _cmd_make_dataset(args: argparse.Namespace) -> int:
    from phaseseg.train.make_dataset import build_dataset, coco_label_images, pair_label_images

    if bool(args.labels) == bool(args.coco):
        raise PhasesegInputError("give --labels DIR or --coco FILE (one of them)")
    if args.coco:
        if len(args.images) != 1 or not Path(args.images[0]).is_dir():
            raise PhasesegInputError("with --coco, IMAGES is the one folder holding its images")
        items: Iterable = coco_label_images(args.coco, args.images[0])  # or pairs of paths
    else:
        items = pair_label_images(args.images, args.labels)
    folds = build_dataset(items, args.out, args.cell_type, n_folds=args.folds)
    print(f"{len(folds)} images written to {args.out} ({args.folds} folds)")
    print(f"train with: phaseseg train {args.out} --out MODEL.pt --init bundled")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-dataset", help="turn your images and label images (or COCO) into a training folder"
    )
    p.add_argument("images", nargs="+", help="image files or folders (with --coco: one folder)")
    p.add_argument("--labels", help="folder of label images named like the images")
    p.add_argument("--coco", help="COCO/LIVECell instance JSON file instead of label images")
    p.add_argument(
        "--cell-type",
        required=True,
        help=f"the culture: {', '.join(CELL_TYPES)}, or a name of your own (fine-tuning adds it "
        "to the model as a new cell type)",
    )
    p.add_argument("--out", required=True, help="new folder: train/, train.csv, folds.csv")
    p.add_argument("--folds", type=int, default=5, help="folds in folds.csv (default 5)")
    p.set_defaults(func=_cmd_make_dataset)
