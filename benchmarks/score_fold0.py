"""Competition score of a model on a validation fold of the shared Sartorius data.

    .venv/bin/python benchmarks/score_fold0.py [--model M] [--fold 0] [--tta] [--json OUT]
        [--submission CSV] [--precision auto|bf16|fp32] [--batch-size N]

Predicts every image of the fold with the CLI's own code path (read -> network -> thresholds of
the predicted cell type -> labels -> submission.csv), then scores the submission against
train.csv with `phaseseg.metrics.score_tables`, overall, per cell type and per threshold.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

from phaseseg import io
from phaseseg.metrics import score_tables
from phaseseg.segment.predict import predict_images
from phaseseg.segment.segmenter import load_model

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sartorius"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model file (default: bundled)")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--tta", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--submission", type=Path, help="also keep the submission CSV here")
    ap.add_argument("--precision", default=None, choices=["auto", "bf16", "fp32"])
    ap.add_argument("--batch-size", type=int, default=None, help="network inputs per pass")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    folds = pd.read_csv(args.data / "folds.csv", dtype={"id": str})
    ids = folds.loc[folds["fold"] == args.fold, "id"].tolist()
    truth = io.read_train_csv(args.data / "train.csv")
    truth = truth[truth["id"].isin(set(ids))]
    model = load_model(args.model, **({"precision": args.precision} if args.precision else {}))
    paths = [args.data / "train" / f"{i}.png" for i in ids]
    with tempfile.TemporaryDirectory() as tmp:
        sub_path = Path(tmp) / "submission.csv"
        t0 = time.perf_counter()
        extra = {"batch_size": args.batch_size} if args.batch_size else {}
        summary = predict_images(paths, model, submission=sub_path, tta=args.tta, **extra)
        seconds = time.perf_counter() - t0
        scores = score_tables(truth, io.read_submission(sub_path))
        if args.submission:
            shutil.copyfile(sub_path, args.submission)
    true_types = folds.set_index("id")["cell_type"]
    type_acc = sum(true_types[i] == t for i, t in summary.cell_types.items()) / len(ids)
    result = {
        "model": str(args.model or "bundled"),
        "fold": args.fold,
        "tta": args.tta,
        "precision": getattr(model, "precision", "bf16"),
        "batch_size": args.batch_size,
        "images": len(ids),
        "overall": scores.score,
        "per_cell_type": {k: float(v) for k, v in scores.per_cell_type.items()},
        "per_threshold": {f"{k:.2f}": float(v) for k, v in scores.per_threshold.items()},
        "cell_type_accuracy": type_acc,
        "seconds_per_image": seconds / len(ids),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
