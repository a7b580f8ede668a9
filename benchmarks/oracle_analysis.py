"""Where the score is lost: replace one part of the prediction by the truth and re-score.

    .venv/bin/python benchmarks/oracle_analysis.py [--model M] [--fold 0]

Runs the network once per validation image, then scores per true cell type (thresholds of the
true type, from the model file):

* ``model``: the model as shipped; ``min_score 0``: without dropping uncertain cells;
* ``true foreground``: the true cell mask instead of the predicted foreground (seeds and
  watershed surface still predicted);
* ``true seeds``: one seed per true cell (its core, normalised distance > 0.5), grown over the
  predicted foreground along the predicted distance;
* ``no false positives``: predicted cells matching no true cell at IoU >= 0.3 removed;
* ``true outlines``: each predicted cell matching a true cell at IoU >= 0.3 replaced by that cell.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from skimage.segmentation import watershed

from phaseseg import io
from phaseseg.metrics import image_score, iou_matrix
from phaseseg.segment.postprocess import maps_to_labels
from phaseseg.segment.segmenter import load_model, predict_maps
from phaseseg.train.samples import load_samples, read_folds
from phaseseg.train.targets import normalized_distance

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sartorius"


def _matched(truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each predicted cell: best IoU with a true cell and that cell's index (0-based)."""
    iou = iou_matrix(truth, pred)
    if iou.size == 0:
        return np.zeros(pred.max()), np.zeros(pred.max(), dtype=int)
    return iou.max(axis=0), iou.argmax(axis=0)


def variants(truth: np.ndarray, fg: np.ndarray, dist: np.ndarray, params) -> dict[str, float]:
    p = params.to_dict()
    pred = maps_to_labels(fg, dist, **p)
    true_fg = (truth > 0).astype(np.float32)
    seeds = np.where(normalized_distance(truth) > 0.5, truth, 0)
    best, which = _matched(truth, pred)
    keep = np.concatenate([[False], best >= 0.3])
    outlines = np.zeros_like(pred)
    used: set[int] = set()
    for j in np.argsort(-best):
        if best[j] >= 0.3 and which[j] not in used:
            used.add(int(which[j]))
            outlines[(truth == which[j] + 1) & (outlines == 0)] = j + 1
        else:
            outlines[(pred == j + 1) & (outlines == 0)] = j + 1
    return {
        "model": image_score(truth, pred),
        "min_score 0": image_score(truth, maps_to_labels(fg, dist, **{**p, "min_score": 0.0})),
        "true foreground": image_score(
            truth, maps_to_labels(true_fg, dist, **{**p, "fg_thresh": 0.5})
        ),
        "true seeds": image_score(truth, watershed(-dist, seeds, mask=fg > params.fg_thresh)),
        "no false positives": image_score(truth, np.where(keep[pred], pred, 0)),
        "true outlines": image_score(truth, outlines),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model file (default: bundled)")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--fold", type=int, default=0)
    args = ap.parse_args()
    model = load_model(args.model)
    folds = read_folds(args.data, io.read_train_csv(args.data / "train.csv"))
    samples = load_samples(args.data, [i for i, f in folds.items() if f == args.fold])
    rows: dict[str, list[dict[str, float]]] = {t: [] for t in io.CELL_TYPES}
    for s in samples:
        name = io.CELL_TYPES[s.cell_type]
        fg, dist, _ = predict_maps(model.net, s.image, model.device)
        rows[name].append(variants(s.labels, fg, dist, model.postprocess[name]))
    table = {
        t: {k: round(float(np.mean([r[k] for r in v])), 4) for k in v[0]}
        for t, v in rows.items()
        if v
    }
    print(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
