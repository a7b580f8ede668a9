"""Classical floor for the peers benchmark: smoothing, thresholding and watershed (no learning).

    .venv/bin/python benchmarks/peers/classical.py [--quick] [--json OUT]

Phase-contrast cells are both brighter and darker than the nearly flat background, so the
foreground is where the Gaussian-smoothed image deviates from its median by more than a
threshold. Holes are filled, touching cells are split by a watershed on the distance transform
seeded by :func:`skimage.feature.peak_local_max`, and small objects are dropped. The four
parameters (``sigma``, ``dev_thresh``, ``min_distance``, ``min_size``) are tuned per cell type
by a grid search on a sample of folds 1-4 with :func:`phaseseg.metrics.image_score`, then the
chosen parameters are scored on fold 0 (the competition metric, image by image, against label
images built from ``train.csv``; overlapping true pixels go to one cell).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.filters import gaussian
from skimage.segmentation import watershed

from phaseseg import io
from phaseseg.metrics import image_score

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sartorius"
CELL_TYPES = ("astro", "cort", "shsy5y")
log = logging.getLogger(__name__)

FULL_GRID: dict[str, tuple] = {
    "sigma": (1.0, 2.0, 3.0),
    "dev_thresh": (4.0, 6.0, 9.0, 13.0),
    "min_distance": (5, 9, 15),
    "min_size": (30, 80, 200),
}
QUICK_GRID: dict[str, tuple] = {
    "sigma": (2.0,),
    "dev_thresh": (5.0, 9.0),
    "min_distance": (7,),
    "min_size": (60,),
}


@dataclass(frozen=True)
class ClassicalParams:
    """Parameters of :func:`segment_classical` (intensities in 8-bit grey levels)."""

    sigma: float = 2.0
    dev_thresh: float = 6.0
    min_distance: int = 9
    min_size: int = 80


def segment_classical(image: np.ndarray, params: ClassicalParams) -> np.ndarray:
    """Segment a phase-contrast image without learning.

    Parameters
    ----------
    image : (H, W) uint8 array
        Phase-contrast image.
    params : ClassicalParams
        Smoothing sigma (px), deviation threshold (grey levels), minimum distance between
        watershed seeds (px) and minimum object size (px).

    Returns
    -------
    labels : (H, W) int32 array
        0 = background, 1..N = cells.

    Examples
    --------
    >>> img = np.full((64, 64), 100, np.uint8)
    >>> img[10:30, 10:30] = 160
    >>> int(segment_classical(img, ClassicalParams(min_size=20)).max())
    1
    """
    smooth = gaussian(image.astype(np.float32), sigma=params.sigma, preserve_range=True)
    deviation = np.abs(smooth - np.median(smooth))
    fg = ndi.binary_fill_holes(deviation > params.dev_thresh)
    components, _ = ndi.label(fg)
    components = drop_small(components, params.min_size)
    fg = components > 0
    if not fg.any():
        return np.zeros(image.shape, np.int32)
    dist = ndi.distance_transform_edt(fg)
    peaks = peak_local_max(
        dist, min_distance=params.min_distance, labels=components, exclude_border=False
    )
    markers = np.zeros(image.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-dist, markers, mask=fg)
    return drop_small(labels.astype(np.int32), params.min_size)


def drop_small(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Set objects of fewer than ``min_size`` pixels of int ``(H, W)`` ``labels`` to 0."""
    sizes = np.bincount(labels.ravel())
    small = sizes < min_size
    small[0] = False
    out = labels.copy()
    out[small[labels]] = 0
    return out


def load_split(data: Path, fold: int = 0) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Read ``folds.csv`` and ``train.csv``; return the folds table and the truth rows by id."""
    folds = pd.read_csv(data / "folds.csv", dtype={"id": str})
    truth = io.read_train_csv(data / "train.csv")
    by_id = {i: rows for i, rows in truth.groupby("id", sort=False)}
    return folds, by_id


def sample_ids(
    folds: pd.DataFrame, folds_in: set[int], per_type: int | None, seed: int = 0
) -> list[tuple[str, str]]:
    """Ids (with cell type) of the given folds, ``per_type`` random ones per type (all: None)."""
    sel = folds[folds["fold"].isin(folds_in)]
    out: list[tuple[str, str]] = []
    for cell_type in CELL_TYPES:
        ids = sel.loc[sel["cell_type"] == cell_type, "id"].tolist()
        if per_type is not None and per_type < len(ids):
            rng = np.random.default_rng(seed)
            ids = list(rng.choice(ids, size=per_type, replace=False))
        out.extend((i, cell_type) for i in ids)
    return out


def tune(
    samples: list[tuple[np.ndarray, np.ndarray]], grid: dict[str, tuple]
) -> tuple[ClassicalParams, float]:
    """Grid-search :class:`ClassicalParams` maximizing the mean image score over ``samples``.

    ``samples`` holds ``(image, true_labels)`` pairs; returns the best parameters and score.
    """
    best, best_score = ClassicalParams(), -1.0
    for values in itertools.product(*grid.values()):
        params = ClassicalParams(**dict(zip(grid, values, strict=True)))
        score = float(np.mean([image_score(t, segment_classical(im, params)) for im, t in samples]))
        if score > best_score:
            best, best_score = params, score
    return best, best_score


def run(data: Path = DATA, quick: bool = False, fold: int = 0) -> dict:
    """Tune per cell type on folds != ``fold``, score on ``fold``; return a result record."""
    folds, truth = load_split(data, fold)
    others = set(folds["fold"].unique()) - {fold}
    grid = QUICK_GRID if quick else FULL_GRID
    t0 = time.perf_counter()
    params: dict[str, ClassicalParams] = {}
    tune_scores: dict[str, float] = {}
    for cell_type in CELL_TYPES:
        ids = [i for i, t in sample_ids(folds, others, 2 if quick else 10) if t == cell_type]
        samples = [
            (io.read_image(data / "train" / f"{i}.png"), io.annotations_to_labels(truth[i]))
            for i in ids
        ]
        params[cell_type], tune_scores[cell_type] = tune(samples, grid)
        log.info("%s: %s (tuning score %.3f)", cell_type, params[cell_type], tune_scores[cell_type])
    train_seconds = time.perf_counter() - t0

    scores: dict[str, list[float]] = {t: [] for t in CELL_TYPES}
    seconds: list[float] = []
    for image_id, cell_type in sample_ids(folds, {fold}, 2 if quick else None):
        image = io.read_image(data / "train" / f"{image_id}.png")
        t1 = time.perf_counter()
        pred = segment_classical(image, params[cell_type])
        seconds.append(time.perf_counter() - t1)
        scores[cell_type].append(image_score(io.annotations_to_labels(truth[image_id]), pred))
    return {
        "method": "classical (skimage)",
        "quick": quick,
        "fold": fold,
        **summarize(scores),
        "median_seconds_per_image": statistics.median(seconds),
        "training_seconds": train_seconds,
        "peak_memory_mib": peak_memory_mib(),
        "params": {t: asdict(p) for t, p in params.items()},
        "tuning_scores": tune_scores,
        "notes": "cell type given (oracle), params tuned per type by grid search; "
        f"{len(list(itertools.product(*grid.values())))} combos",
    }


def summarize(scores: dict[str, list[float]]) -> dict:
    """``images``, ``overall`` (mean over images) and ``per_cell_type`` of per-image scores."""
    all_scores = [s for v in scores.values() for s in v]
    return {
        "images": len(all_scores),
        "overall": float(np.mean(all_scores)),
        "per_cell_type": {t: float(np.mean(v)) for t, v in scores.items() if v},
    }


def peak_memory_mib() -> float:
    """Peak resident memory of this process in MiB (``ru_maxrss``; KiB on Linux, B on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def main() -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="2 images per type, tiny grid")
    ap.add_argument("--json", type=Path, help="write the result record here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = run(args.data, quick=args.quick, fold=args.fold)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
