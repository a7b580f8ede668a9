import numpy as np

from phaseseg.train.targets import make_targets, normalized_distance, touching_mask


def test_normalized_distance_peaks_at_one_in_each_cell():
    labels = np.zeros((20, 30), dtype=np.int32)
    labels[2:9, 2:9] = 1  # 7x7 square: centre pixel (5, 5) is 4 px from the outside
    labels[10:19, 5:25] = 2
    d = normalized_distance(labels)
    assert d.dtype == np.float32
    assert d[labels == 0].max() == 0
    for lab in (1, 2):
        assert np.isclose(d[labels == lab].max(), 1.0)
    assert d[5, 5] == 1.0
    # a corner pixel is 1 px from the outside: 1/4 of the centre's distance
    assert np.isclose(d[2, 2], 0.25)


def test_touching_cells_have_separate_distance_basins():
    labels = np.zeros((10, 20), dtype=np.int32)
    labels[2:8, 2:10] = 1
    labels[2:8, 10:18] = 2  # touches cell 1 along x = 9|10
    d = normalized_distance(labels)
    # the shared border is a border for both cells
    assert d[5, 9] < 0.5 and d[5, 10] < 0.5
    assert touching_mask(labels)[5, 9] and touching_mask(labels)[5, 10]
    assert not touching_mask(labels)[5, 3]


def test_cell_on_image_edge_keeps_edge_as_border():
    labels = np.zeros((10, 10), dtype=np.int32)
    labels[0:5, 0:5] = 1
    d = normalized_distance(labels)
    assert d[0, 0] < d[2, 2]


def test_make_targets_types():
    labels = np.zeros((8, 8), dtype=np.int32)
    labels[2:6, 2:6] = 3
    t = make_targets(labels)
    assert set(t) == {"foreground", "distance", "touching", "centre"}
    assert all(v.dtype == np.uint8 for v in t.values())
    assert t["distance"].max() == 255
    assert t["foreground"].sum() == 16


def test_random_crop_of_an_image_whose_only_cell_is_off_the_sampling_grid():
    from phaseseg.train.samples import Sample, random_crop

    labels = np.zeros((64, 64), dtype=np.int32)
    labels[1, 1] = 1  # a 1-px cell the 4-px foreground grid does not see
    sample = Sample("x", 0, np.full((64, 64), 100, np.uint8), labels, make_targets(labels))
    crop = random_crop(sample, 32, np.random.default_rng(0), 1.0)
    assert len(crop) == 6 and all(m.shape == (32, 32) for m in crop)


def test_random_crop_boundary_map_marks_both_sides_of_each_outline():
    from phaseseg.train.samples import Sample, random_crop

    labels = np.zeros((64, 64), dtype=np.int32)
    labels[20:30, 20:30] = 1
    sample = Sample("x", 0, np.full((64, 64), 100, np.uint8), labels, make_targets(labels))
    _, fg, _, _, boundary, _ = random_crop(sample, 64, np.random.default_rng(0), 1.0)
    # inner ring of the 10x10 cell (36 px) + the 4 x 10 background pixels beside its sides
    assert boundary.sum() == 36 + 40
    assert (boundary * fg).sum() == 36
