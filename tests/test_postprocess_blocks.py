"""Post-processing in linear time: fast h-maxima, relabelling, watershed in blocks of regions."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.morphology import h_maxima
from skimage.segmentation import relabel_sequential

from phaseseg.segment import postprocess
from phaseseg.segment.postprocess import distance_maxima, h_maxima_u8, maps_to_labels, relabel


def _cells(shape=(300, 420), seed=0, n=120):
    """Foreground and distance maps of many touching, bumpy blobs (some cross block borders)."""
    rng = np.random.default_rng(seed)
    dist = np.zeros(shape)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for _ in range(n):
        cy, cx, r = rng.uniform(0, shape[0]), rng.uniform(0, shape[1]), rng.uniform(4, 14)
        dist = np.maximum(dist, 1 - np.hypot(yy - cy, xx - cx) / r)
    dist = np.clip(dist + rng.normal(0, 0.02, shape) * (dist > 0), 0, 1)
    fg = ndi.gaussian_filter((dist > 0).astype(float), 1)
    return fg.astype(np.float32), dist.astype(np.float32)


def test_relabel_is_relabel_sequential():
    labels = np.random.default_rng(0).choice([0, 3, 7, 8, 100], size=(50, 60)).astype(np.int32)
    np.testing.assert_array_equal(relabel(labels), relabel_sequential(labels)[0])
    assert relabel(labels).dtype == np.int32 and relabel(np.zeros((3, 3), np.int32)).max() == 0


@pytest.mark.parametrize("seed_h", [0.05, 0.2])
def test_distance_maxima_are_skimages_h_maxima(seed_h):
    _, dist = _cells()
    want = h_maxima(np.clip(dist * 255, 0, 255).astype(np.uint8), round(seed_h * 255)) > 0
    np.testing.assert_array_equal(distance_maxima(dist, seed_h), want)


def test_h_maxima_u8_is_h_maxima_on_any_image():
    """Random sizes (1 px up), noise, few grey levels with large plateaus, smooth images."""
    rng = np.random.default_rng(0)
    for trial in range(200):
        shape = tuple(rng.integers(1, 40, 2))
        kind = trial % 4
        if kind == 0:
            img = rng.integers(0, 256, shape)
        elif kind == 1:
            img = rng.integers(0, 6, shape) * 40
        elif kind == 2:
            img = np.clip(ndi.gaussian_filter(rng.normal(0, 60, shape), 1.5) + 100, 0, 255)
        else:
            img = rng.integers(0, 3, shape) * rng.integers(1, 120) + rng.integers(0, 20)
        img = img.astype(np.uint8)
        for h in (1, 2, 30, 51, 255):
            want = h_maxima(img, h) > 0
            np.testing.assert_array_equal(h_maxima_u8(img, h), want, err_msg=f"{trial} {h}")


@pytest.mark.parametrize("seed_h", [0.0, 0.1])
def test_maps_to_labels_in_blocks_finds_the_same_cells(monkeypatch, seed_h):
    """The same cells; the watershed breaks ties between equally distant pixels in the order it
    meets them, which blocks can change: at most a few pixels between touching cells."""
    fg, dist = _cells(seed=1)
    params = dict(fg_thresh=0.5, seed_thresh=0.5, min_size=10, seed_h=seed_h, min_score=0.3)
    whole = maps_to_labels(fg, dist, **params)
    monkeypatch.setattr(postprocess, "BLOCK", 64)
    blocks = maps_to_labels(fg, dist, **params)
    assert whole.max() > 50 and blocks.max() == whole.max()
    np.testing.assert_array_equal(blocks > 0, whole > 0)
    assert (blocks != whole).mean() < 0.002
