"""The cell-centre output: its training target, seeds taken from it, its tuning, and a model
that has it, from training to prediction (hand-made cases)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic import make_dataset
from test_fit_steps import TINY_NET, tiny_config, untrained_model

from phaseseg.io import PhasesegInputError
from phaseseg.metrics import image_score
from phaseseg.nn.checkpoint import ModelFileProblem, check_model_payload, load_model_file
from phaseseg.nn.model import NetConfig, UNet, add_centre_head, build_model
from phaseseg.segment.postprocess import PostprocessParams, maps_to_labels
from phaseseg.segment.segmenter import load_model
from phaseseg.segment.tuning import tune_postprocess
from phaseseg.train import InitModel, fit, resolve_config
from phaseseg.train.samples import Sample
from phaseseg.train.targets import centre_map, normalized_distance

SHAPE = (64, 96)
ASTRO = 0


def dumbbell(labels: np.ndarray, value: int) -> None:
    """One cell of two 16x16 lobes joined by a 4-px bar (rows 35-50): its distance to the
    border has two equal peaks, the bar's distance is low."""
    labels[35:51, 5:21] = value
    labels[35:51, 31:47] = value
    labels[41:45, 21:31] = value


def test_centre_map_has_one_peak_per_cell_however_many_lobes():
    labels = np.zeros(SHAPE, np.int32)
    dumbbell(labels, 1)
    labels[5:25, 60:80] = 2
    labels[5:25, 80:90] = 3  # touches cell 2
    c = centre_map(labels)
    assert c.dtype == np.float32 and c.min() == 0 and c.max() == 1
    assert not c[labels == 0].any()
    for cell in (1, 2, 3):
        inside = np.where(labels == cell, c, 0)
        assert (inside == 1).sum() == 1  # one peak pixel
    # the dumbbell's distance has two maxima, its centre map one: the other lobe stays low
    dist = normalized_distance(labels)
    assert dist[43, 13] == dist[43, 38] == 1.0
    assert min(c[43, 13], c[43, 38]) < 0.05


def test_centre_seeds_keep_a_lobed_cell_whole_where_distance_seeds_split_it():
    labels = np.zeros(SHAPE, np.int32)
    dumbbell(labels, 1)
    fg, dist, centre = (labels > 0) * 0.9, normalized_distance(labels), centre_map(labels)
    for params in (dict(seed_thresh=0.6), dict(seed_thresh=0.1, seed_h=0.1)):
        assert maps_to_labels(fg, dist, **params).max() == 2
        whole = maps_to_labels(fg, dist, **params, seeds="centre", centre=centre)
        assert whole.max() == 1 and image_score(labels, whole) == 1.0
    with pytest.raises(ValueError, match="centre map"):
        maps_to_labels(fg, dist, seeds="centre")
    with pytest.raises(ValueError, match="seeds must be"):
        PostprocessParams(seeds="flows")


def centre_case():
    """A touching pair joined by a distance ridge of 0.9 (only high or h-maxima seeds split
    it) and a dumbbell (which those seeds split): no distance seeds get both right, seeds
    from the centre map do."""
    truth = np.zeros(SHAPE, np.int32)
    truth[5:25, 5:25] = 1
    truth[5:25, 26:46] = 2
    dumbbell(truth, 3)
    fg = 0.9 * (truth > 0)
    dist = normalized_distance(truth)
    fg[15, 25] = 0.9
    dist[15, 15:36] = np.maximum(dist[15, 15:36], 0.9)
    probs = np.array([0.9, 0.05, 0.05], np.float32)
    sample = Sample("img", ASTRO, np.zeros(SHAPE, np.uint8), truth, {})
    return sample, fg, dist, probs, centre_map(truth)


def test_tuning_takes_seeds_from_the_centre_map_where_they_score_higher():
    sample, fg, dist, probs, centre = centre_case()
    params, scores = tune_postprocess([sample], [(fg, dist, probs)])
    assert params["astro"].seeds == "distance" and scores["astro"] < 0.9
    params, scores = tune_postprocess([sample], [(fg, dist, probs, centre)])
    assert params["astro"].seeds == "centre" and scores["astro"] == 1.0


def test_adding_a_centre_head_keeps_the_other_outputs():
    net = UNet(NetConfig(channels=(4, 8), convs_per_block=1)).eval()
    grown = add_centre_head(net).eval()
    x = torch.randn(1, 1, 32, 32)
    before, after = net(x), grown(x)
    assert after["pixel"].shape == (1, 3, 32, 32)
    assert torch.allclose(before["pixel"], after["pixel"][:, :2])
    assert torch.allclose(before["cell_type"], after["cell_type"])
    with pytest.raises(ValueError):
        add_centre_head(grown)


def test_a_model_trained_with_a_centre_head_predicts_a_centre_map(tmp_path):
    data = make_dataset(tmp_path / "data")
    init = untrained_model(tmp_path / "init.pt", cell_types=["astro", "cort", "shsy5y"])
    fit(data, tmp_path / "m.pt", tiny_config(init=str(init), centre_head=True), device="cpu")
    payload = load_model_file(tmp_path / "m.pt")
    assert payload["net"]["centre"] is True
    assert payload["state_dict"]["pixel_head.weight"].shape[0] == 3
    model = load_model(tmp_path / "m.pt", device="cpu")
    result = model.segment_full(np.full((70, 90), 100, np.uint8))
    assert result.centre is not None and result.centre.shape == (70, 90)
    # a centre-trained model keeps its head when training goes on; it cannot be dropped
    again = InitModel.load(str(tmp_path / "m.pt"))
    resolved, _ = resolve_config(tiny_config(), again)
    assert resolved.net["centre"] is True
    with pytest.raises(PhasesegInputError, match="cannot remove"):
        resolve_config(tiny_config(centre_head=False), again)


def test_model_files_may_seed_from_the_centre_only_with_a_centre_output():
    net = {**TINY_NET, "input_scale": 1.0}
    payload = {
        "net": net,
        "postprocess": {t: {**PostprocessParams(seeds="centre").to_dict()}
                        for t in ("astro", "cort", "shsy5y")},
        "state_dict": build_model(net).state_dict(),
    }  # fmt: skip
    with pytest.raises(ModelFileProblem, match="centre map the net does not have"):
        check_model_payload(payload)
    centred = {**net, "centre": True}
    weights = build_model(centred).state_dict()
    check_model_payload({**payload, "net": centred, "state_dict": weights})
    payload["postprocess"]["astro"]["seeds"] = "flows"
    with pytest.raises(ModelFileProblem, match="seeds must be one of"):
        check_model_payload(payload)


def test_large_images_carry_the_centre_map_through_their_blocks(tmp_path):
    """Block-wise segmentation of a centre-seeded model (seeds need the centre map, which the
    block path must store and blend like the other maps) gives the in-memory cells."""
    pytest.importorskip("dask")
    zarr = pytest.importorskip("zarr")
    from scipy import ndimage as ndi

    from phaseseg.segment.large import segment_large
    from phaseseg.segment.segmenter import Segmenter

    torch.manual_seed(0)
    net = UNet(NetConfig(channels=(4, 8), convs_per_block=1, centre=True))
    noise = ndi.gaussian_filter(np.random.default_rng(0).random((300, 400)), 4)
    image = (noise * 255 * 8 % 255).astype(np.uint8)
    plain = {t: PostprocessParams() for t in ("astro", "cort", "shsy5y")}
    maps = Segmenter(net, plain, device="cpu", precision="fp32", tta=False).predict_maps(image)
    params = PostprocessParams(
        fg_thresh=float(np.median(maps.foreground)),
        seed_thresh=float(np.percentile(maps.centre, 90)),
        min_size=1,
        seeds="centre",
    )
    model = Segmenter(net, dict.fromkeys(plain, params), device="cpu", precision="fp32", tta=False)
    reference = model.segment_full(image).labels
    out = tmp_path / "labels.ome.zarr"
    result = segment_large(image, model, out, block=128, margin=64)
    labels = zarr.open_array(str(out / "0"), mode="r")[:]
    assert reference.max() > 100 and result.n_cells == reference.max()
    pairs = np.unique(np.stack([labels[labels > 0], reference[labels > 0]]), axis=1)
    assert np.array_equal(labels > 0, reference > 0) and pairs.shape[1] == reference.max()
