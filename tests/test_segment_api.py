"""Segmenter.segment / segment_full: batches, per-call thresholds, one dtype contract."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi
from torch import nn

from phaseseg.io import PhasesegInputError
from phaseseg.nn.model import NetConfig, build_model
from phaseseg.segment.postprocess import PostprocessParams, maps_to_labels
from phaseseg.segment.segmenter import Segmentation, Segmenter

TYPES = ("astro", "cort", "shsy5y")


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class _BrightNet(nn.Module):
    """Stub network: bright blobs are cells. Foreground logits follow the normalised image,
    distance logits a blur of it (peaks at blob centres); one cell type per image."""

    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(stride=8)
        self.register_buffer("kernel", torch.ones(1, 1, 5, 5) / 25)

    def forward(self, x):
        blur = F.conv2d(x, self.kernel.to(x.dtype), padding=2)
        pixel = torch.cat([4 * x - 2, 6 * blur - 5], 1)
        types = torch.stack([x.mean((1, 2, 3)), 0 * x.mean((1, 2, 3)), -x.std((1, 2, 3))], 1)
        return {"pixel": pixel, "cell_type": types}


@pytest.fixture(scope="module")
def seg() -> Segmenter:
    """A segmenter that finds the bright blobs of :func:`_blobs` images as cells."""
    net = _BrightNet()
    params = {
        "astro": PostprocessParams(fg_thresh=0.5, seed_thresh=0.5, min_size=5, min_score=0.0),
        "cort": PostprocessParams(fg_thresh=0.45, seed_thresh=0.55, min_size=10, min_score=0.5),
        "shsy5y": PostprocessParams(fg_thresh=0.5, seed_thresh=0.6, min_size=5, min_score=0.2),
    }
    return Segmenter(net, params, device="cpu", precision="fp32")


def _blobs(shape, seed=0) -> np.ndarray:
    """uint8 image spanning 0..255 exactly (so that rescaled dtypes map back onto it)."""
    rng = np.random.default_rng(seed)
    img = ndi.gaussian_filter(rng.normal(0, 1, shape), 4)
    img = (img - img.min()) / (img.max() - img.min()) * 255
    return np.round(img).astype(np.uint8)


def test_a_list_gives_a_list_equal_to_one_call_per_image(seg):
    images = [_blobs((60, 80), 0), _blobs((120, 50), 1), _blobs((60, 80), 2)]
    one_by_one = [seg.segment_full(im) for im in images]
    assert all(isinstance(r, Segmentation) for r in one_by_one)
    for batch_size in (1, 3, 16):
        batch = seg.segment_full(images, batch_size=batch_size)
        assert isinstance(batch, list) and len(batch) == 3
        for a, b in zip(one_by_one, batch, strict=True):
            np.testing.assert_array_equal(a.labels, b.labels)
            np.testing.assert_allclose(a.foreground, b.foreground, rtol=0, atol=1e-6)
            assert a.cell_type == b.cell_type
    labels = seg.segment(tuple(images), batch_size=2)
    assert [lab.shape for lab in labels] == [im.shape for im in images]
    assert all(lab.dtype == np.int32 for lab in labels)
    assert seg.segment([]) == []


@pytest.mark.parametrize("shape", [(70, 90), (300, 1100)])  # one tile; tiled (> 704 px)
def test_uint8_uint16_and_float_images_are_one_contract_at_any_size(seg, shape):
    img = _blobs(shape)
    want = seg.segment_full(img)
    assert want.labels.max() > 3  # the stub finds the blobs
    for other in (
        img.astype(np.uint16) * 257,  # a 16-bit image of the same scene
        img.astype(np.float32) / 255,  # a float image in [0, 1]
        img.astype(np.float64) * 1000 - 5,  # any float range
        img.astype(np.int32),
    ):
        got = seg.segment_full(other)
        np.testing.assert_array_equal(got.labels, want.labels)
        np.testing.assert_allclose(got.foreground, want.foreground, rtol=0, atol=1e-6)


def test_non_finite_and_constant_images(seg):
    img = _blobs((64, 64)).astype(np.float32)
    img[0, 0] = np.nan
    assert seg.segment(img).shape == (64, 64)
    assert seg.segment(np.full((40, 30), 7.5)).shape == (40, 30)
    with pytest.raises(PhasesegInputError, match="no finite values"):
        seg.segment(np.full((8, 8), np.nan))


@pytest.mark.parametrize(
    "bad",
    [np.zeros((20, 30, 3), np.uint8), np.zeros((2, 20, 30)), np.zeros((0, 5)), np.zeros(5)],
)
def test_other_shapes_and_dtypes_are_refused_in_one_line(seg, bad):
    with pytest.raises(PhasesegInputError, match="2-D grayscale") as e:
        seg.segment(bad)
    assert "\n" not in str(e.value)
    with pytest.raises(PhasesegInputError, match="2-D grayscale"):
        seg.segment(np.array([["a", "b"]]))


def test_thresholds_per_call_do_not_change_the_model(seg):
    img = _blobs((80, 100), 3)
    before = copy.deepcopy(seg.postprocess)
    default = seg.segment_full(img)
    counts = {m: seg.segment(img, cell_type="cort", min_score=m).max() for m in (0.0, 0.8)}
    assert counts[0.0] > counts[0.8]  # min_score matters for this image
    for cell_type in TYPES:
        for min_score in (None, 0.0, 0.6):
            got = seg.segment_full(img, cell_type=cell_type, min_score=min_score)
            params = seg.postprocess[cell_type].to_dict()
            if min_score is not None:
                params["min_score"] = min_score
            want = maps_to_labels(got.foreground, got.distance, **params)
            np.testing.assert_array_equal(got.labels, want)
            assert got.cell_type == cell_type
    assert seg.postprocess == before
    np.testing.assert_array_equal(seg.segment_full(img).labels, default.labels)
    assert seg.thresholds("cort", 0.1).min_score == 0.1 and seg.postprocess["cort"].min_score == 0.5


def test_bad_per_call_thresholds_are_refused_before_any_work(seg):
    known = "the model knows astro, cort, shsy5y"
    with pytest.raises(PhasesegInputError, match=f"cell type 'neuron': {known}"):
        seg.segment(np.zeros((8, 8), np.uint8), cell_type="neuron")
    with pytest.raises(PhasesegInputError, match="must lie in"):
        seg.segment(np.zeros((8, 8), np.uint8), min_score=1.5)


def test_set_min_score_is_deprecated_but_works():
    net = build_model(NetConfig(channels=(4, 8), convs_per_block=1))
    seg = Segmenter(net, {t: PostprocessParams() for t in TYPES}, device="cpu")
    with pytest.deprecated_call():
        seg.set_min_score(0.3)
    assert {p.min_score for p in seg.postprocess.values()} == {0.3}


def test_flip_averaging_is_on_by_default_where_the_network_is_fast_and_off_on_a_slow_cpu():
    """``tta`` left out: the model's default (:func:`default_tta`), on in bf16 and off in
    float32 on a CPU; a call's own ``tta`` wins."""
    from phaseseg import load_model
    from phaseseg.nn.device import default_tta

    assert default_tta("cpu", "bf16") and not default_tta("cpu", "fp32")
    image = np.random.default_rng(0).integers(0, 255, (64, 96), dtype=np.uint8)
    slow = load_model(device="cpu", precision="fp32")
    assert slow.tta is False
    fast = load_model(device="cpu", precision="fp32", tta=True)
    assert fast.tta is True
    flipped = slow.predict_maps(image, tta=True).foreground
    np.testing.assert_array_equal(fast.predict_maps(image).foreground, flipped)
    assert not np.array_equal(slow.predict_maps(image).foreground, flipped)
    assert load_model(device="cpu", precision="bf16").tta is True
