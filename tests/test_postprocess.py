import numpy as np

from phaseseg.segment.postprocess import distance_maxima, maps_to_labels
from phaseseg.train.targets import normalized_distance


def _two_touching_cells():
    truth = np.zeros((20, 40), dtype=np.int32)
    truth[4:16, 4:20] = 1
    truth[4:16, 20:36] = 2
    return truth


def test_touching_cells_are_split_by_their_seeds():
    truth = _two_touching_cells()
    fg = (truth > 0).astype(float)
    labels = maps_to_labels(fg, normalized_distance(truth), 0.5, 0.5, 1)
    assert labels.max() == 2
    # each output cell is exactly one truth cell
    for lab in (1, 2):
        assert len(np.unique(truth[labels == lab])) == 1
    assert (labels > 0).sum() == (truth > 0).sum()


def test_without_distance_touching_cells_merge():
    truth = _two_touching_cells()
    fg = (truth > 0).astype(float)
    labels = maps_to_labels(fg, fg, 0.5, 0.5, 1)
    assert labels.max() == 1


def test_unseeded_component_becomes_a_cell_and_small_cells_are_dropped():
    fg = np.zeros((20, 20))
    fg[2:10, 2:10] = 1  # 64 px, no seed (distance low everywhere)
    fg[15:17, 15:17] = 1  # 4 px
    dist = np.zeros_like(fg)
    labels = maps_to_labels(fg, dist, 0.5, 0.5, min_size=10)
    assert labels.max() == 1
    assert (labels == 1).sum() == 64
    assert labels.dtype == np.int32


def test_empty_maps_give_empty_labels():
    labels = maps_to_labels(np.zeros((8, 8)), np.zeros((8, 8)))
    assert labels.shape == (8, 8) and labels.max() == 0


def test_h_maxima_seeds_split_cells_whose_distance_does_not_dip_below_the_threshold():
    """A blurred prediction: between two touching cells the distance only falls to 0.6."""
    truth = _two_touching_cells()
    fg = (truth > 0).astype(float)
    dist = np.clip(normalized_distance(truth), 0.6, None) * fg
    assert maps_to_labels(fg, dist, 0.5, 0.5, 1).max() == 1  # threshold seeds: merged
    labels = maps_to_labels(fg, dist, 0.5, 0.5, 1, seed_h=0.2)
    assert labels.max() == 2
    for lab in (1, 2):
        assert len(np.unique(truth[labels == lab])) == 1
    # a bump lower than seed_h (0.15 above its surroundings) is not a seed of its own
    dist[10, 5] = 0.75
    assert maps_to_labels(fg, dist, 0.5, 0.5, 1, seed_h=0.1).max() == 3
    assert maps_to_labels(fg, dist, 0.5, 0.5, 1, seed_h=0.2).max() == 2


def test_precomputed_maxima_give_the_same_labels():
    """Threshold tuning computes the h-maxima once per height and passes them in."""
    rng = np.random.default_rng(0)
    truth = _two_touching_cells()
    fg = (truth > 0).astype(float)
    dist = np.clip(normalized_distance(truth) + rng.normal(0, 0.1, truth.shape), 0, 1) * fg
    for seed_h, seed_t in [(0.05, 0.1), (0.1, 0.3), (0.3, 0.2)]:
        maxima = distance_maxima(dist, seed_h)
        direct = maps_to_labels(fg, dist, 0.5, seed_t, 1, seed_h=seed_h)
        cached = maps_to_labels(fg, dist, 0.5, seed_t, 1, seed_h=seed_h, maxima=maxima)
        np.testing.assert_array_equal(direct, cached)
        assert direct.max() >= 1


def test_uncertain_cells_are_dropped_by_their_mean_foreground_probability():
    truth = _two_touching_cells()
    fg = np.where(truth == 1, 0.95, np.where(truth == 2, 0.62, 0.0))
    dist = normalized_distance(truth)
    kept = maps_to_labels(fg, dist, 0.5, 0.5, 1)
    assert kept.max() == 2
    labels = maps_to_labels(fg, dist, 0.5, 0.5, 1, min_score=0.7)
    assert labels.max() == 1  # renumbered from 1
    assert np.array_equal(labels > 0, truth == 1)  # the confident cell survives whole
    assert maps_to_labels(fg, dist, 0.5, 0.5, 1, min_score=0.6).max() == 2
