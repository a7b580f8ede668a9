"""Cross-check :mod:`phaseseg.metrics` against an independent, deliberately plain implementation.

The reference below is written the way Kaggle notebooks computed the Sartorius score: every
instance is decoded to a dense boolean mask with ``rle_decode``, the IoU of each pair is computed
with numpy logical operations (on the pair's common bounding box, to keep it affordable) and
predictions are matched greedily, highest IoU first, at each threshold. It shares nothing with
``metrics.py`` beyond the RLE decoder.

Predictions are made from the real train annotations of a stratified sample of images by
perturbing every cell at random: kept, eroded, dilated, shifted, dropped or merged with a
neighbour, plus a few spurious blobs; the cells are then painted into a label image (so that
they do not overlap, as in a valid submission) and RLE-encoded.

Run from the project root::

    .venv/bin/python benchmarks/metric_crosscheck.py [--images 50] [--seed 0]

It prints both scores, the per-image maximum absolute difference, and exits 1 if that exceeds
1e-6.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from phaseseg.io import labels_to_rles, read_train_csv, rle_decode
from phaseseg.metrics import THRESHOLDS, score_tables

log = logging.getLogger("metric_crosscheck")

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sartorius"
TOLERANCE = 1e-6

# --------------------------------------------------------------------------- reference metric


def _decode_boxed(rle: str, shape: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Dense mask of one instance and its bounding box ``(r0, r1, c0, c1)`` (half-open)."""
    mask = rle_decode(rle, shape)
    rs = np.flatnonzero(mask.any(axis=1))
    cs = np.flatnonzero(mask.any(axis=0))
    return mask, (int(rs[0]), int(rs[-1]) + 1, int(cs[0]), int(cs[-1]) + 1)


def reference_image_score(
    true_rles: list[str],
    pred_rles: list[str],
    shape: tuple[int, int],
    thresholds: tuple[float, ...] = THRESHOLDS,
) -> float:
    """Score one image: dense masks, pairwise logical IoU, greedy matching per threshold."""
    truth = [_decode_boxed(r, shape) for r in true_rles if r.strip()]
    preds = [_decode_boxed(r, shape) for r in pred_rles if r.strip()]
    pairs = []  # (iou, i, j) for every pair that overlaps
    for i, (tm, (a0, a1, b0, b1)) in enumerate(truth):
        for j, (pm, (c0, c1, d0, d1)) in enumerate(preds):
            if a1 <= c0 or c1 <= a0 or b1 <= d0 or d1 <= b0:
                continue  # bounding boxes apart: no overlap
            r0, r1, q0, q1 = min(a0, c0), max(a1, c1), min(b0, d0), max(b1, d1)
            t_win, p_win = tm[r0:r1, q0:q1], pm[r0:r1, q0:q1]
            inter = np.logical_and(t_win, p_win).sum()
            if inter:
                union = np.logical_or(t_win, p_win).sum()
                pairs.append((inter / union, i, j))
    pairs.sort(key=lambda x: -x[0])
    precisions = []
    for t in thresholds:
        used_t, used_p = set(), set()
        for iou, i, j in pairs:
            if iou <= t:
                break
            if i not in used_t and j not in used_p:
                used_t.add(i)
                used_p.add(j)
        tp = len(used_t)
        fp, fn = len(preds) - tp, len(truth) - tp
        precisions.append(1.0 if tp + fp + fn == 0 else tp / (tp + fp + fn))
    return float(np.mean(precisions))


def reference_scores(truth_df: pd.DataFrame, submission_df: pd.DataFrame) -> pd.Series:
    """Reference score of every truth image (index: id); images absent from the submission 0."""
    out = {}
    for image_id, rows in truth_df.groupby("id", sort=False):
        shape = (int(rows["height"].iloc[0]), int(rows["width"].iloc[0]))
        pred = submission_df.loc[submission_df["id"] == image_id, "predicted"].tolist()
        if not pred:
            out[image_id] = 0.0
        else:
            out[image_id] = reference_image_score(rows["annotation"].tolist(), pred, shape)
    return pd.Series(out, name="score")


# --------------------------------------------------------------------------- perturbations


def perturb_image(
    true_rles: list[str], shape: tuple[int, int], rng: np.random.Generator
) -> list[str]:
    """Plausible, imperfect predictions for one image made from its true instances.

    Each cell is, at random, kept (25%), eroded or dilated by 1-3 px (15% each), shifted by up
    to 4 px (15%), dropped (10%), merged with the next cell (10%) or shrunk to a thin slice
    (10%); a few random blobs are added. Cells are painted in order into one label image, so
    the predictions do not overlap. Returns one RLE per predicted instance.
    """
    masks = [rle_decode(r, shape) for r in true_rles if r.strip()]
    labels = np.zeros(shape, dtype=np.int32)
    n = 0
    choices = ["keep", "erode", "dilate", "shift", "drop", "merge", "slice"]
    probs = [0.25, 0.15, 0.15, 0.15, 0.10, 0.10, 0.10]
    for k, mask in enumerate(masks):
        op = rng.choice(choices, p=probs)
        it = int(rng.integers(1, 4))
        if op == "drop":
            continue
        if op == "erode":
            mask = ndi.binary_erosion(mask, iterations=it)
        elif op == "dilate":
            mask = ndi.binary_dilation(mask, iterations=it)
        elif op == "shift":
            mask = np.roll(mask, tuple(rng.integers(-4, 5, size=2)), axis=(0, 1))
        elif op == "merge" and k + 1 < len(masks):
            mask = mask | masks[k + 1]
        elif op == "slice":
            rows = np.flatnonzero(mask.any(axis=1))
            cut = rows[len(rows) // 2] if len(rows) else 0
            mask = mask.copy()
            mask[:cut] = False
        free = mask & (labels == 0)
        if free.any():
            n += 1
            labels[free] = n
    for _ in range(int(rng.integers(0, 4))):  # spurious detections
        r, c = rng.integers(0, shape[0]), rng.integers(0, shape[1])
        rr, cc = np.ogrid[: shape[0], : shape[1]]
        blob = ((rr - r) ** 2 + (cc - c) ** 2 <= int(rng.integers(3, 12)) ** 2) & (labels == 0)
        if blob.any():
            n += 1
            labels[blob] = n
    return labels_to_rles(labels)


def sample_ids(truth_df: pd.DataFrame, n_images: int, seed: int) -> list[str]:
    """About ``n_images`` image ids, stratified by cell type, in a seeded random order."""
    first = truth_df.drop_duplicates("id")[["id", "cell_type"]]
    types = sorted(first["cell_type"].unique())
    picked = []
    for k, cell_type in enumerate(types):  # spread n_images as evenly as possible
        n = n_images // len(types) + (k < n_images % len(types))
        group = first[first["cell_type"] == cell_type]
        picked.append(group.sample(min(n, len(group)), random_state=seed))
    picked = pd.concat(picked)
    return picked["id"].tolist()


def make_submission(truth_df: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Perturbed predictions for the images of ``truth_df``.

    The first image gets an empty prediction row and the second is left out of the submission
    (both score 0); the others are perturbed with :func:`perturb_image`.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for k, (image_id, g) in enumerate(truth_df.groupby("id", sort=False)):
        if k == 1:
            continue
        shape = (int(g["height"].iloc[0]), int(g["width"].iloc[0]))
        rles = [] if k == 0 else perturb_image(g["annotation"].tolist(), shape, rng)
        rows.extend((image_id, r) for r in (rles or [""]))
    return pd.DataFrame(rows, columns=["id", "predicted"])


# --------------------------------------------------------------------------- driver


def crosscheck(truth_df: pd.DataFrame, submission_df: pd.DataFrame) -> dict[str, float]:
    """Score with both implementations; return both means and the max per-image difference."""
    t0 = time.perf_counter()
    fast = score_tables(truth_df, submission_df).per_image.set_index("id")["score"]
    t1 = time.perf_counter()
    ref = reference_scores(truth_df, submission_df).reindex(fast.index)
    t2 = time.perf_counter()
    return {
        "metrics_score": float(fast.mean()),
        "reference_score": float(ref.mean()),
        "max_abs_diff": float(np.abs(fast.to_numpy() - ref.to_numpy()).max()),
        "n_images": len(fast),
        "metrics_seconds": t1 - t0,
        "reference_seconds": t2 - t1,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="sartorius data folder")
    parser.add_argument("--images", type=int, default=50, help="number of images (stratified)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    truth = read_train_csv(args.data / "train.csv")
    ids = sample_ids(truth, args.images, args.seed)
    truth = truth[truth["id"].isin(ids)].reset_index(drop=True)
    submission = make_submission(truth, args.seed)
    res = crosscheck(truth, submission)
    print(f"images:           {res['n_images']} ({len(submission)} predicted instances)")
    print(f"metrics.py score: {res['metrics_score']:.9f}  ({res['metrics_seconds']:.2f} s)")
    print(f"reference score:  {res['reference_score']:.9f}  ({res['reference_seconds']:.2f} s)")
    print(f"max |difference| per image: {res['max_abs_diff']:.3g}")
    ok = res["max_abs_diff"] <= TOLERANCE
    print("OK" if ok else f"MISMATCH (tolerance {TOLERANCE})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
