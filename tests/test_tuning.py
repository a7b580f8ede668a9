"""Threshold tuning finds the known-best thresholds of hand-made network maps.

Each map is built so that exactly one value of the threshold under test separates the cells
right: a false blob only a foreground threshold of 0.5 drops, two touching cells only a seed
threshold of 0.7 (or h-maxima) splits, specks only a minimum size of 40 removes, uncertain blobs
only a minimum mean foreground of 0.65 removes.
"""

from __future__ import annotations

import numpy as np
import pytest

from phaseseg.metrics import image_score
from phaseseg.segment.postprocess import PostprocessParams, maps_to_labels
from phaseseg.segment.tuning import score_val, tune_postprocess
from phaseseg.train.samples import Sample
from phaseseg.train.targets import normalized_distance

SHAPE = (64, 96)
ASTRO, CORT, SHSY5Y = 0, 1, 2  # indices into io.CELL_TYPES


def _box(labels: np.ndarray, value: int, rows: tuple[int, int], cols: tuple[int, int]) -> None:
    labels[rows[0] : rows[1], cols[0] : cols[1]] = value


def _touching_pair(labels: np.ndarray, first: int) -> tuple[int, int]:
    """Two 20x20 cells side by side, one background column apart (rows 5-24, cols 5-24 and
    26-45); returns the row through their centres and the gap's column."""
    _box(labels, first, (5, 25), (5, 25))
    _box(labels, first + 1, (5, 25), (26, 46))
    return 15, 25


def _bridge(fg: np.ndarray, dist: np.ndarray, row: int, gap: int, fg_value: float, height: float):
    """Join the pair: the gap pixel on ``row`` becomes foreground, and the distance along the
    row from one centre to the other does not fall below ``height``."""
    fg[row, gap] = fg_value
    dist[row, 15:36] = np.maximum(dist[row, 15:36], height)


def _sample(labels: np.ndarray, cell_type: int) -> Sample:
    image = np.zeros(labels.shape, np.uint8)
    return Sample("img", cell_type, image, labels, {})


def _type_probs(cell_type: int) -> np.ndarray:
    probs = np.full(3, 0.05, np.float32)
    probs[cell_type] = 0.9
    return probs


def thresholds_case(cell_type: int = CORT):
    """fg 0.5, seed 0.7 and min_size 40 are the only values that get every cell right.

    * two touching 400-px cells (fg 0.55) whose distance peaks at 0.75 with a ridge of 0.68
      between them: seeds above 0.65 or below merge them, 0.8 finds no seed (one cell);
    * a false 400-px blob of fg 0.45: kept by fg thresholds 0.3 and 0.4, dropped by 0.5, while
      0.6 drops the true cells too;
    * two true 49-px cells and three false 30-px specks (fg 0.9): min_size 40 alone keeps the
      cells and drops the specks.
    """
    truth = np.zeros(SHAPE, np.int32)
    row, gap = _touching_pair(truth, 1)
    _box(truth, 3, (40, 47), (5, 12))
    _box(truth, 4, (40, 47), (20, 27))
    fg = 0.55 * (truth > 0)
    specks = np.zeros(SHAPE, np.int32)
    for k, col in enumerate((40, 50, 60)):
        _box(specks, k + 1, (40, 46), (col, col + 5))
    blob = np.zeros(SHAPE, np.int32)
    _box(blob, 1, (10, 30), (60, 80))
    fg = np.where(specks > 0, 0.9, np.where(blob > 0, 0.45, fg))
    dist = 0.75 * normalized_distance(truth + (specks > 0) * 10 + (blob > 0) * 20)
    _bridge(fg, dist, row, gap, 0.55, 0.68)
    return _sample(truth, cell_type), (fg, dist, _type_probs(cell_type))


def min_score_case(cell_type: int = SHSY5Y):
    """Four 400-px cells of fg 0.9 and two 400-px blobs of fg 0.62: every fg threshold of the
    grid (0.3-0.6) keeps the blobs; only a minimum mean foreground of 0.65 drops them."""
    truth = np.zeros(SHAPE, np.int32)
    for k, (r, c) in enumerate(((5, 5), (5, 35), (35, 5), (35, 35))):
        _box(truth, k + 1, (r, r + 20), (c, c + 20))
    blobs = np.zeros(SHAPE, np.int32)
    _box(blobs, 1, (5, 25), (65, 85))
    _box(blobs, 2, (35, 55), (65, 85))
    fg = np.where(truth > 0, 0.9, np.where(blobs > 0, 0.62, 0.0))
    dist = normalized_distance(truth + (blobs > 0) * (blobs + 10))
    return _sample(truth, cell_type), (fg, dist, _type_probs(cell_type))


def h_maxima_case(cell_type: int = ASTRO):
    """Two touching cells joined by a distance ridge of 0.9, above every seed threshold of the
    grid (0.2-0.8): only h-maxima seeds split them (the first height tried, 0.05)."""
    truth = np.zeros(SHAPE, np.int32)
    row, gap = _touching_pair(truth, 1)
    fg = 0.9 * (truth > 0)
    dist = normalized_distance(truth)
    _bridge(fg, dist, row, gap, 0.9, 0.9)
    return _sample(truth, cell_type), (fg, dist, _type_probs(cell_type))


def test_tuning_finds_the_foreground_seed_and_size_thresholds():
    sample, maps = thresholds_case()
    params, scores = tune_postprocess([sample], [maps])
    best = params["cort"]
    assert (best.fg_thresh, best.seed_thresh, best.min_size) == (0.5, 0.7, 40)
    assert scores["cort"] == scores["overall"] == 1.0
    # the maps really need those values: the default seed threshold (0.6) merges the pair
    merged = maps_to_labels(maps[0], maps[1], **PostprocessParams(fg_thresh=0.5).to_dict())
    assert image_score(sample.labels, merged) < 1.0


def test_tuning_finds_the_minimum_mean_foreground():
    sample, maps = min_score_case()
    params, scores = tune_postprocess([sample], [maps])
    assert params["shsy5y"].min_score == 0.65 and params["shsy5y"].seed_h == 0.0
    assert scores["overall"] == 1.0


def test_tuning_uses_h_maxima_seeds_where_no_threshold_splits_touching_cells():
    sample, maps = h_maxima_case()
    params, scores = tune_postprocess([sample], [maps])
    assert params["astro"].seed_h == 0.05 and params["astro"].seed_thresh == 0.1
    assert scores["overall"] == 1.0
    # without h-maxima no seed threshold of the grid splits the pair
    for seed_thresh in (0.2, 0.5, 0.8):
        labels = maps_to_labels(maps[0], maps[1], fg_thresh=0.5, seed_thresh=seed_thresh)
        assert labels.max() == 1


def test_thresholds_are_tuned_per_true_type_and_applied_by_predicted_type():
    """Each type gets its own thresholds (a type without images keeps the defaults); scoring
    applies the thresholds of the type the network *predicts*, as at inference."""
    (a, a_maps), (s, s_maps) = thresholds_case(ASTRO), min_score_case(SHSY5Y)
    params, scores = tune_postprocess([a, s], [a_maps, s_maps])
    assert (params["astro"].fg_thresh, params["astro"].seed_thresh) == (0.5, 0.7)
    assert params["shsy5y"].min_score == 0.65
    assert params["cort"] == PostprocessParams()
    assert scores == {"astro": 1.0, "shsy5y": 1.0, "overall": 1.0, "cell_type_accuracy": 1.0}

    # the astro image mistaken for shsy5y is segmented with shsy5y's thresholds
    wrong = (a_maps[0], a_maps[1], _type_probs(SHSY5Y))
    mistaken = score_val([a, s], [wrong, s_maps], params)
    with_shsy5y_params = maps_to_labels(a_maps[0], a_maps[1], **params["shsy5y"].to_dict())
    assert mistaken["astro"] == pytest.approx(image_score(a.labels, with_shsy5y_params))
    assert mistaken["astro"] < 1.0 and mistaken["shsy5y"] == 1.0
    assert mistaken["overall"] == pytest.approx((mistaken["astro"] + 1.0) / 2)
    assert mistaken["cell_type_accuracy"] == 0.5
