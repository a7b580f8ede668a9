"""Self-training data: the labelled Sartorius set plus the unlabelled images, labelled by a model.

    .venv/bin/python benchmarks/self_training.py --model M --out DIR [--tta] [--min-score S]
        [--data ../shared/data/sartorius]

Writes a folder ``phaseseg train`` reads (``train/``, ``train.csv``, ``folds.csv``): every
labelled image with its annotation and fold, and every image of ``unlabeled/`` (81 shsy5y
images whose annotations the competition withheld) with the cells ``M`` finds in it as its
annotation (pseudo-labels), put in folds 1-4 in turn so that fold 0 stays the untouched
yardstick. ``M`` segments them as shsy5y (the set's type), with ``--tta`` (4 flips) and
``--min-score`` (drop cells the model is unsure of) as ``phaseseg predict`` does. The images
are symlinked, not copied. ``DIR/pseudo.json`` holds the cells per pseudo-labelled image.

For an honest measure, label with a model that never saw fold 0 and continue that same model
on the folder with the recipe of its fold-0 twin (BENCHMARKS.md, *Self-training*); the twin,
continued on the labelled images alone, is the control.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from phaseseg import io
from phaseseg.segment.predict import predict_images
from phaseseg.segment.segmenter import load_model

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sartorius"


def pseudo_rows(
    model_path: str, images: list[Path], tta: bool, min_score: float | None
) -> pd.DataFrame:
    """Rows ``id, annotation, width, height, cell_type`` (train.csv's) of the cells the model
    finds in ``images``, segmented as shsy5y."""
    model = load_model(model_path)
    with tempfile.TemporaryDirectory() as tmp:
        sub = Path(tmp) / "submission.csv"
        predict_images(
            [str(p) for p in images],
            model,
            submission=sub,
            tta=tta,
            cell_type="shsy5y",
            min_score=min_score,
        )
        rows = pd.read_csv(sub, dtype={"id": str}, keep_default_na=False)
    rows = rows[rows["predicted"] != ""].rename(columns={"predicted": "annotation"})
    h, w = io.image_shape(images[0])
    return rows.assign(width=w, height=h, cell_type="shsy5y")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="the model that labels the unlabelled images")
    ap.add_argument("--out", type=Path, required=True, help="new folder")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--tta", action="store_true")
    ap.add_argument("--min-score", type=float, default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    if args.out.exists():
        raise SystemExit(f"{args.out}: exists; not overwritten")
    unlabeled = sorted((args.data / "unlabeled").glob("*.png"))
    pseudo = pseudo_rows(args.model, unlabeled, args.tta, args.min_score)
    ids = [p.stem for p in unlabeled]
    folds = pd.read_csv(args.data / "folds.csv", dtype={"id": str})
    truth = pd.read_csv(args.data / "train.csv", dtype={"id": str})
    if set(ids) & set(folds["id"]):
        raise SystemExit("an unlabelled image has the id of a labelled one")
    pseudo_folds = pd.DataFrame(
        {"id": ids, "cell_type": "shsy5y", "fold": [1 + k % 4 for k in range(len(ids))]}
    )
    with io.atomic_dir(args.out) as tmp:  # no half-written folder if anything fails
        (tmp / "train").mkdir()
        for image_id in folds["id"]:
            (tmp / "train" / f"{image_id}.png").symlink_to(
                (args.data / "train" / f"{image_id}.png").resolve()
            )
        for p in unlabeled:
            (tmp / "train" / p.name).symlink_to(p.resolve())
        pd.concat([truth, pseudo], ignore_index=True).to_csv(tmp / "train.csv", index=False)
        pd.concat([folds, pseudo_folds], ignore_index=True).to_csv(tmp / "folds.csv", index=False)
        cells = pseudo.groupby("id").size().reindex(ids, fill_value=0)
        labelled = truth[truth["cell_type"] == "shsy5y"].groupby("id").size()
        report = {
            "model": args.model,
            "tta": args.tta,
            "min_score": args.min_score,
            "pseudo_images": len(ids),
            "pseudo_cells_per_image": float(np.mean(cells)),
            "labelled_shsy5y_cells_per_image": float(labelled.mean()),
            "cells": {k: int(v) for k, v in cells.items()},
        }
        (tmp / "pseudo.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"wrote {args.out}: {len(folds)} labelled + {len(ids)} pseudo-labelled images, "
        f"{report['pseudo_cells_per_image']:.0f} cells per pseudo-labelled image "
        f"(annotated shsy5y: {report['labelled_shsy5y_cells_per_image']:.0f})"
    )


if __name__ == "__main__":
    main()
