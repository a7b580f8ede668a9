"""The one inference path: tile layout, blending, batches, no seams, no cut cells, mosaics."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi
from torch import nn

from phaseseg.nn.model import NetConfig, build_model
from phaseseg.segment.maps import iter_maps, predict_maps
from phaseseg.segment.postprocess import PostprocessParams, maps_to_labels
from phaseseg.segment.segmenter import BUNDLED_MODEL, Segmenter
from phaseseg.segment.tiling import tile_layout, tile_starts

CPU = torch.device("cpu")
TINY = NetConfig(channels=(4, 8, 16), convs_per_block=1)
TYPES = ("astro", "cort", "shsy5y")
WHOLE = 10**6  # a tile size that keeps any test image whole


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny networks run far faster on one thread, above all on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    "length,tile,overlap", [(1560, 512, 128), (2112, 512, 128), (700, 256, 64), (513, 512, 0)]
)
def test_tiles_cover_the_image_with_the_requested_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0 and starts[-1] + tile == length
    gaps = np.diff(starts)
    assert (tile - gaps >= overlap).all() and (gaps > 0).all()


@pytest.mark.parametrize("length", [100, 1024, 1025, 1560, 2600, 4224, 9999])
@pytest.mark.parametrize("max_tile,overlap", [(1024, 96), (512, 128), (1000, 0)])
def test_tile_layout_uses_the_fewest_equal_tiles_a_multiple_of_the_stride(
    length, max_tile, overlap
):
    starts, side = tile_layout(length, max_tile, overlap, stride=16)
    if length <= max_tile // 16 * 16:
        assert (starts, side) == ([0], length)
        return
    assert side % 16 == 0 and side <= max_tile
    assert starts[0] == 0 and starts[-1] + side == length
    assert (side - np.diff(starts) >= overlap).all()
    fewest = int(np.ceil((length - overlap) / (max_tile // 16 * 16 - overlap)))
    assert len(starts) == fewest
    # little more than the image is computed (the overlaps, and rounding to the stride)
    assert len(starts) * side <= length + len(starts) * (overlap + 16)


def test_images_of_any_size_and_dtype_get_maps_of_their_size():
    net = build_model(TINY).eval()
    images = [np.zeros((40, 1100), np.uint8), np.ones((7, 9), np.float32), np.eye(300) > 0]
    maps = predict_maps(net, images, CPU, tile=256, overlap=32)
    assert [m.foreground.shape for m in maps] == [(40, 1100), (7, 9), (300, 300)]
    for m in maps:
        assert m.foreground.dtype == m.distance.dtype == np.float32
        assert np.isfinite(m.foreground).all() and abs(float(m.cell_type_probs.sum()) - 1) < 1e-5
    fg, dist, probs = predict_maps(net, images[1], CPU)  # one image: one Maps, unpacks
    assert fg.shape == (7, 9) and probs.shape == (3,)


def test_bad_arguments():
    net = build_model(TINY).eval()
    img = np.zeros((64, 64), np.uint8)
    with pytest.raises(ValueError, match="overlap"):
        predict_maps(net, img, CPU, tile=32, overlap=32)
    with pytest.raises(ValueError, match="2-D"):
        predict_maps(net, np.zeros((4, 8, 8), np.uint8), CPU)
    with pytest.raises(ValueError, match="batch_size"):
        predict_maps(net, img, CPU, batch_size=0)


def _textured_image(shape, seed=0):
    rng = np.random.default_rng(seed)
    img = ndi.gaussian_filter(rng.normal(128, 40, shape), 2) * 3 - 256
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("tta", [False, True])
def test_batches_give_the_same_maps_as_one_input_at_a_time(precision, tta):
    """Images, tiles and flips batched in any grouping: the same maps.

    Bit for bit with the bundled model in bf16 on the project's CPU (the fold-0 submission is
    identical with --batch-size 4, BENCHMARKS.md); oneDNN may pick float32 kernels whose sums
    differ in the last bit by batch size, hence the tolerance.
    """
    torch.manual_seed(0)
    net = build_model(TINY).eval()
    images = [_textured_image((90, 130), s) for s in range(3)]
    images.insert(1, _textured_image((260, 150), 7))  # 3 tiles of 96 x 150 (tile 128)
    opts = dict(precision=precision, tta=tta, tile=128, overlap=32)
    one = list(iter_maps(net, images, CPU, batch_size=1, **opts))
    for batch_size in (2, 5, 64):
        batched = list(iter_maps(net, iter(images), CPU, batch_size=batch_size, **opts))
        for a, b in zip(one, batched, strict=True):
            for x, y in zip(a, b, strict=True):
                np.testing.assert_allclose(x, y, rtol=0, atol=1e-6 if precision == "fp32" else 1e-2)


def test_blended_tiles_match_the_whole_image_prediction():
    """Away from the image border, tiled maps equal whole-image maps up to float noise.

    Measured (float32): max |difference| about 0.001 with a 48-px overlap; abutted tiles
    (overlap 0) leave seams of about 0.05, so the comparison is sensitive to them.
    """
    torch.manual_seed(0)
    net = build_model(TINY).eval()
    img = _textured_image((300, 410))
    whole = predict_maps(net, img, CPU, tile=WHOLE, precision="fp32")
    blended = predict_maps(net, img, CPU, tile=160, overlap=48, precision="fp32")
    abutted = predict_maps(net, img, CPU, tile=160, overlap=0, precision="fp32")
    inner = np.s_[8:-8, 8:-8]  # the whole image is padded differently at its right edge
    err = max(
        float(np.abs(a - b)[inner].max())
        for a, b in zip(list(whole)[:2], list(blended)[:2], strict=True)
    )
    seam = max(
        float(np.abs(a - b)[inner].max())
        for a, b in zip(list(whole)[:2], list(abutted)[:2], strict=True)
    )
    assert err < 0.01
    assert seam > 5 * err
    np.testing.assert_allclose(blended.cell_type_probs, whole.cell_type_probs, atol=0.01)
    small = img[:150, :200]
    plain = predict_maps(net, small, CPU, tile=96, overlap=32)
    flipped = predict_maps(net, small, CPU, tile=96, overlap=32, tta=True)
    assert float(np.abs(flipped.foreground - plain.foreground).mean()) < 0.05


def test_input_scale_networks_run_through_the_same_path():
    """A network that works on an enlarged image gets tiles shrunk by its scale."""
    torch.manual_seed(0)
    net = build_model(NetConfig(channels=(4, 8, 16), convs_per_block=1, input_scale=1.5)).eval()
    img = _textured_image((200, 130))
    shapes = []
    net.register_forward_pre_hook(lambda m, args: shapes.append(tuple(args[0].shape)))
    maps = predict_maps(net, img, CPU, tile=150, overlap=16, batch_size=8)
    assert maps.foreground.shape == (200, 130)
    assert shapes == [(6, 1, 80, 76)]  # 3 x 2 tiles of at most 150 / 1.5 px, one batch
    whole = predict_maps(net, img, CPU, tile=WHOLE)
    assert float(np.abs(maps.foreground - whole.foreground)[10:-10, 10:-10].mean()) < 0.02


class _BlurNet(nn.Module):
    """Stub network: foreground = distance = a box blur of the input, zero-padded.

    Zero padding darkens each tile's edges, as a real network loses context there: a cell
    crossing an abutted tile border is cut by the dark seam.
    """

    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(stride=4)
        self.register_buffer("kernel", torch.ones(1, 1, 15, 15) / 225)

    def forward(self, x):
        b = F.conv2d(x, self.kernel.to(x.dtype), padding=7)
        logit = 6 * (b - 2.0)
        return {"pixel": torch.cat([logit, logit], 1), "cell_type": torch.zeros(x.shape[0], 3)}


def _elongated_cell(shape, cy, cx, ry=12, rx=60):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    truth = (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).astype(np.int32)
    return truth, np.where(truth > 0, 200, 100).astype(np.uint8)


def test_cell_across_a_tile_border_stays_one_cell():
    truth, img = _elongated_cell((128, 200), 64, 64)  # across the first tile's right edge
    net = _BlurNet().eval()
    fg, dist, _ = predict_maps(net, img, CPU, tile=64, overlap=24, precision="fp32")
    labels = maps_to_labels(fg, dist, min_size=20)
    assert labels.max() == 1
    whole = maps_to_labels(*list(predict_maps(net, img, CPU, tile=WHOLE))[:2], min_size=20)
    assert whole.max() == 1 and (labels[truth > 0] == 1).mean() > 0.7
    assert np.logical_and(labels, whole).sum() / np.logical_or(labels, whole).sum() > 0.95
    # the stub is sensitive to tile borders: without overlap the cell is cut
    fg0, dist0, _ = predict_maps(net, img, CPU, tile=64, overlap=0, precision="fp32")
    assert maps_to_labels(fg0, dist0, min_size=20).max() >= 2


def test_segment_full_runs_the_tiles_of_a_large_image_as_one_batch():
    net = _BlurNet()
    shapes = []
    net.register_forward_pre_hook(lambda m, args: shapes.append(tuple(args[0].shape)))
    params = {t: PostprocessParams(min_size=20) for t in TYPES}
    seg = Segmenter(net, params, device="cpu", tta=False)
    truth, img = _elongated_cell((160, 1100), 80, 550, ry=14, rx=90)  # across the tiles' seam
    labels = seg.segment_full(img, batch_size=4).labels
    assert shapes == [(2, 1, 160, 600)]  # two tiles (the image is wider than 704 px)
    assert labels.max() == 1 and (labels[truth > 0] == 1).mean() > 0.8
    shapes.clear()
    seg.segment_full(img[:, :700], batch_size=4)  # up to 704 px: one tile
    assert shapes == [(1, 1, 160, 700)]


# --------------------------------------------------------------------------- real mosaic


def _best_model() -> Path:
    for path in (BUNDLED_MODEL, Path(__file__).resolve().parents[1] / "runs/main/model.pt"):
        if path.is_file():
            return path
    pytest.skip("no trained model (src/phaseseg/models/default.pt or runs/main/model.pt)")


@pytest.mark.slow
@pytest.mark.parametrize("cell_type", ["cort", "shsy5y"])
def test_mosaic_of_real_images_scores_like_the_images_alone(shared_data, cell_type):
    """A 3x3 mosaic (2112x1560) of fold-0 images, segmented in tiles and cut back into the 9
    images, scores like segmenting each image alone, and like the mosaic run whole.

    The cell type is fixed (thresholds are per type) so that only the layout differs. "Alone"
    differs from the mosaic by more than tiling: in the mosaic each image's edges have
    neighbours and the intensity normalisation is the mosaic's. "Whole" runs the network on
    the whole mosaic at once: tiled vs whole isolates the tiling.
    """
    from phaseseg import io
    from phaseseg.metrics import image_score
    from phaseseg.segment.segmenter import load_model

    model = load_model(_best_model(), device="cpu")
    df = io.read_train_csv(shared_data / "train.csv")
    folds = pd.read_csv(shared_data / "folds.csv")
    ids = folds[(folds.fold == 0) & (folds.cell_type == cell_type)].id.tolist()[:9]
    images = [io.read_image(shared_data / "train" / f"{i}.png") for i in ids]
    truths = [io.annotations_to_labels(df[df.id == i]) for i in ids]
    h, w = truths[0].shape

    def scores(labels: np.ndarray) -> np.ndarray:
        cut = [labels[r * h : (r + 1) * h, c * w : (c + 1) * w] for r in range(3) for c in range(3)]
        return np.array([image_score(t, p) for t, p in zip(truths, cut, strict=True)])

    t0 = time.perf_counter()
    alone = np.array(
        [
            image_score(t, model.segment_full(im, cell_type=cell_type).labels)
            for im, t in zip(images, truths, strict=True)
        ]
    )
    t1 = time.perf_counter()
    mosaic = np.block([[images[3 * r + c] for c in range(3)] for r in range(3)])
    assert mosaic.shape == (1560, 2112)
    del images
    tiled = scores(model.segment_full(mosaic, cell_type=cell_type).labels)
    t2 = time.perf_counter()
    fg, dist, _ = predict_maps(model.net, mosaic, model.device, tile=WHOLE)
    whole = scores(maps_to_labels(fg, dist, **model.postprocess[cell_type].to_dict()))
    print(
        f"\n{cell_type}: alone {alone.mean():.4f}, mosaic in tiles {tiled.mean():.4f}, "
        f"mosaic whole {whole.mean():.4f}; max per-image |tiled - alone| "
        f"{np.abs(tiled - alone).max():.4f}, |tiled - whole| {np.abs(tiled - whole).max():.4f}; "
        f"9 images {t1 - t0:.1f} s, tiled mosaic {t2 - t1:.1f} s"
    )
    assert abs(tiled.mean() - alone.mean()) <= 0.02
    assert abs(tiled.mean() - whole.mean()) <= 0.01
    assert np.abs(tiled - whole).max() <= 0.05
