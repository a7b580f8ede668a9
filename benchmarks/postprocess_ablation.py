"""Post-processing variants scored on the validation fold, from one set of cached network maps.

    .venv/bin/python benchmarks/postprocess_ablation.py --model runs/main/model.pt [--fold 0]

Runs the network once per validation image (maps cached in memory), then scores each variant
with the thresholds given (per true cell type), and prints error counts at IoU 0.5 (TP, FP, FN,
merges: a prediction covering >= 2 truth cells by half their area; splits: a truth cell covered by
>= 2 predictions by half theirs).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage.segmentation import expand_labels

from phaseseg import io
from phaseseg.metrics import image_score, iou_matrix
from phaseseg.segment.postprocess import maps_to_labels
from phaseseg.segment.segmenter import load_model, predict_maps
from phaseseg.train.samples import load_samples

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sartorius"


def error_counts(truth: np.ndarray, pred: np.ndarray) -> dict[str, int]:
    """TP/FP/FN at IoU > 0.5 and merge/split counts of one image."""
    iou = iou_matrix(truth, pred)
    tp = int((iou > 0.5).any(axis=1).sum()) if iou.size else 0
    n_true, n_pred = iou.shape
    t_ids, p_ids = np.unique(truth)[1:], np.unique(pred)[1:]
    inter = pd.crosstab(truth.ravel(), pred.ravel())
    inter = inter.loc[inter.index != 0, inter.columns != 0] if len(inter) else inter
    t_area = pd.Series(np.bincount(truth.ravel())[t_ids], index=t_ids)
    p_area = pd.Series(np.bincount(pred.ravel())[p_ids], index=p_ids)
    covered_t = inter.div(t_area, axis=0) > 0.5 if len(inter) else inter
    covered_p = inter.div(p_area, axis=1) > 0.5 if len(inter) else inter
    merges = int((covered_t.sum(axis=0) >= 2).sum()) if len(inter) else 0
    splits = int((covered_p.sum(axis=1) >= 2).sum()) if len(inter) else 0
    return {"tp": tp, "fp": n_pred - tp, "fn": n_true - tp, "merges": merges, "splits": splits}


VARIANTS = {
    "default": lambda fg, d, p: maps_to_labels(fg, d, **p),
    "expand1": lambda fg, d, p: expand_labels(maps_to_labels(fg, d, **p), 1),
    "fill_holes": lambda fg, d, p: _fill_holes(maps_to_labels(fg, d, **p)),
}


def _fill_holes(labels: np.ndarray) -> np.ndarray:
    out = labels.copy()
    for lab, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        filled = ndi.binary_fill_holes(labels[sl] == lab)
        out[sl][filled & (labels[sl] == 0)] = lab
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    folds = pd.read_csv(args.data / "folds.csv", dtype={"id": str})
    ids = folds.loc[folds["fold"] == args.fold, "id"].tolist()
    samples = load_samples(args.data, ids)
    model = load_model(args.model)
    maps = [predict_maps(model.net, s.image, model.device) for s in samples]
    results = []
    for name, variant in VARIANTS.items():
        per_type: dict[str, list] = {}
        for s, (fg, dist, _) in zip(samples, maps, strict=True):
            t = io.CELL_TYPES[s.cell_type]
            pred = variant(fg, dist, model.postprocess[t].to_dict())
            per_type.setdefault(t, []).append(
                {"score": image_score(s.labels, pred), **error_counts(s.labels, pred)}
            )
        for t, rows in per_type.items():
            df = pd.DataFrame(rows)
            counts = df.sum().drop("score")
            results.append({"variant": name, "cell_type": t, "score": df["score"].mean(), **counts})
        overall = np.mean([r["score"] for rows in per_type.values() for r in rows])
        results.append({"variant": name, "cell_type": "overall", "score": overall})
    table = pd.DataFrame(results)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
