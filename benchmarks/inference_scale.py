"""Does rescaling images at inference help a cell type? (fold 0, true cell type, no retraining)

    .venv/bin/python benchmarks/inference_scale.py [--model M] [--json OUT]

Each fold-0 image is resized by a factor (linear interpolation), run through the network, and
its maps are resized back before post-processing, so scores stay at the original resolution.
For each (cell type, factor) the best thresholds of a small grid are reported next to the
model's own thresholds, with the network seconds per image.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from skimage.transform import resize

from phaseseg import io
from phaseseg.metrics import image_score
from phaseseg.segment.postprocess import maps_to_labels
from phaseseg.segment.segmenter import load_model, predict_maps

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sartorius"
FACTORS = {"astro": (0.5, 0.75, 1.0), "cort": (1.0, 1.5), "shsy5y": (1.0, 1.5, 2.0)}
GRID = list(itertools.product((0.3, 0.4, 0.5, 0.6), (0.3, 0.4, 0.5, 0.6, 0.7), (40, 80, 200)))


def rescaled_maps(model, image: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Foreground and distance maps of ``image`` seen at ``factor`` times its size."""
    h, w = image.shape
    if factor != 1:
        size = (round(h * factor), round(w * factor))
        image = resize(image, size, order=1, preserve_range=True).round().astype(np.uint8)
    fg, dist, _ = predict_maps(model.net, image, model.device)
    if factor != 1:
        fg, dist = resize(fg, (h, w), order=1), resize(dist, (h, w), order=1)
    return fg, dist


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model file (default: bundled)")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    folds = pd.read_csv(args.data / "folds.csv", dtype={"id": str})
    fold0 = folds[folds["fold"] == 0]
    truth = io.read_train_csv(args.data / "train.csv")
    model = load_model(args.model)
    results = []
    for cell_type, ids in fold0.groupby("cell_type")["id"]:
        true = {i: io.train_labels(truth, i) for i in ids}
        own = model.postprocess[cell_type]
        own_key = (own.fg_thresh, own.seed_thresh, own.min_size)
        for factor in FACTORS[cell_type]:
            t0 = time.perf_counter()
            maps = {
                i: rescaled_maps(model, io.read_image(args.data / "train" / f"{i}.png"), factor)
                for i in ids
            }
            seconds = (time.perf_counter() - t0) / len(ids)
            scores = {
                g: float(np.mean([image_score(true[i], maps_to_labels(*maps[i], *g)) for i in ids]))
                for g in GRID
            }
            best = max(scores, key=scores.get)
            row = {
                "cell_type": cell_type,
                "factor": factor,
                "best_score": scores[best],
                "best_thresholds": best,
                "own_thresholds_score": scores.get(own_key),
                "seconds_per_image": seconds,
            }
            results.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
