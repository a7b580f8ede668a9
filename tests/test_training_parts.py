"""The parts of training on hand-made inputs: the loss, the learning-rate schedule, and the
augmented crops keeping the image and its targets aligned."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.segmentation import find_boundaries

from phaseseg.segment.normalize import normalize_image
from phaseseg.train import TrainConfig, loss_fn, lr_factor
from phaseseg.train.samples import Sample, random_crop
from phaseseg.train.targets import make_targets

LN2, LN3 = math.log(2), math.log(3)

# ------------------------------------------------------------------------------------ loss


def _outputs(pixel: torch.Tensor, cell_type: torch.Tensor | None = None) -> dict:
    b = pixel.shape[0]
    return {"pixel": pixel, "cell_type": torch.zeros(b, 3) if cell_type is None else cell_type}


def _targets(fg, dist=None, touching=None, boundary=None) -> torch.Tensor:
    fg = torch.as_tensor(fg, dtype=torch.float32)
    zero = torch.zeros_like(fg)
    maps = [fg] + [zero if m is None else torch.as_tensor(m, dtype=torch.float32)
                   for m in (dist, touching, boundary)]  # fmt: skip
    return torch.stack(maps, dim=1)


def test_loss_of_zero_logits_is_known():
    """Logits 0 give BCE ln 2 per pixel whatever the target and CE ln 3 over three types."""
    cfg = TrainConfig(touching_weight=0.0, boundary_weight=0.0, type_loss_weight=0.1)
    fg = torch.randint(0, 2, (2, 4, 4))
    dist = torch.rand(2, 4, 4)
    total, parts = loss_fn(
        _outputs(torch.zeros(2, 2, 4, 4)), _targets(fg, dist), torch.tensor([0, 2]), cfg
    )
    assert parts["fg"].item() == pytest.approx(LN2)
    assert parts["dist"].item() == pytest.approx(LN2)
    assert parts["type"].item() == pytest.approx(LN3)
    assert total.item() == pytest.approx(2 * LN2 + 0.1 * LN3)


def test_loss_values_on_hand_made_logits():
    """BCE of p = 0.75 on a cell pixel is -ln 0.75, on a background pixel -ln 0.25; the type
    loss is the cross entropy of the true type's softmax probability."""
    cfg = TrainConfig(touching_weight=0.0, boundary_weight=0.0, type_loss_weight=1.0)
    pixel = torch.zeros(1, 2, 1, 2)
    pixel[0, 0] = math.log(3)  # sigmoid = 0.75 on both pixels
    fg = torch.tensor([[[1.0, 0.0]]])
    type_logits = torch.tensor([[math.log(2), 0.0, 0.0]])  # softmax: 0.5, 0.25, 0.25
    out = _outputs(pixel, type_logits)
    total, parts = loss_fn(out, _targets(fg), torch.tensor([0]), cfg)
    assert parts["fg"].item() == pytest.approx((-math.log(0.75) - math.log(0.25)) / 2)
    assert parts["type"].item() == pytest.approx(-math.log(0.5))
    _, wrong_type = loss_fn(out, _targets(fg), torch.tensor([1]), cfg)
    assert wrong_type["type"].item() == pytest.approx(-math.log(0.25))
    assert total.item() == pytest.approx(sum(v.item() for v in parts.values()))


def test_touching_and_boundary_pixels_weigh_more():
    """A touching pixel counts 1 + touching_weight times, a boundary pixel 1 + boundary_weight,
    a pixel that is both 1 + both: the foreground loss is the weighted mean over all pixels."""
    cfg = TrainConfig(touching_weight=2.0, boundary_weight=3.0)
    pixel = torch.zeros(1, 2, 1, 4)
    pixel[0, 0] = torch.tensor([0.0, 1.0, -1.0, 2.0])
    fg = torch.tensor([[[1.0, 0.0, 1.0, 1.0]]])
    touching = torch.tensor([[[0.0, 1.0, 0.0, 1.0]]])
    boundary = torch.tensor([[[0.0, 0.0, 1.0, 1.0]]])
    _, parts = loss_fn(
        _outputs(pixel), _targets(fg, None, touching, boundary), torch.tensor([0]), cfg
    )
    per_pixel = torch.nn.functional.binary_cross_entropy_with_logits(
        pixel[0, 0, 0], fg[0, 0], reduction="none"
    )
    weights = torch.tensor([1.0, 3.0, 4.0, 6.0])
    assert parts["fg"].item() == pytest.approx((per_pixel * weights).mean().item())
    _, unweighted = loss_fn(
        _outputs(pixel),
        _targets(fg, None, touching, boundary),
        torch.tensor([0]),
        TrainConfig(touching_weight=0.0, boundary_weight=0.0),
    )
    assert unweighted["fg"].item() == pytest.approx(per_pixel.mean().item())


def test_distance_loss_is_least_where_the_prediction_equals_the_soft_target():
    """BCE on the soft distance target is minimal (zero gradient) at sigmoid(logit) = target,
    where it equals the target's binary entropy; the type loss weight scales the CE only."""
    dist = torch.tensor([[[0.2, 0.5, 0.9]]])
    logits = torch.log(dist / (1 - dist))
    pixel = torch.zeros(1, 2, 1, 3)
    pixel[0, 1] = logits
    pixel.requires_grad_(True)
    cfg = TrainConfig(type_loss_weight=0.0)
    total, parts = loss_fn(
        _outputs(pixel), _targets(torch.zeros(1, 1, 3), dist), torch.tensor([0]), cfg
    )
    entropy = -(dist * dist.log() + (1 - dist) * (1 - dist).log()).mean()
    assert parts["dist"].item() == pytest.approx(entropy.item(), abs=1e-6)
    total.backward()
    assert pixel.grad[0, 1].abs().max().item() < 1e-6
    assert total.item() == pytest.approx(parts["fg"].item() + parts["dist"].item())


def test_loss_of_bf16_network_outputs_is_float32():
    """Under bf16 autocast the network answers in bfloat16; the loss is computed in float32."""
    out = _outputs(
        torch.zeros(1, 2, 4, 4, dtype=torch.bfloat16), torch.zeros(1, 3, dtype=torch.bfloat16)
    )
    total, parts = loss_fn(out, _targets(torch.ones(1, 4, 4)), torch.tensor([1]), TrainConfig())
    assert total.dtype == torch.float32
    assert parts["fg"].item() == pytest.approx(LN2 * (1 + 0.0))  # no touching pixels


# ----------------------------------------------------------------------------- LR schedule


def test_lr_warms_up_linearly():
    cfg = TrainConfig(steps=1000, warmup_steps=100)
    assert lr_factor(0, cfg) == pytest.approx(0.01)
    assert lr_factor(49, cfg) == pytest.approx(0.5)
    assert lr_factor(99, cfg) == pytest.approx(1.0)
    warm = [lr_factor(s, cfg) for s in range(100)]
    assert np.allclose(np.diff(warm), 0.01)


def test_lr_cosine_runs_from_one_to_zero():
    cfg = TrainConfig(steps=1000, warmup_steps=100)
    assert lr_factor(100, cfg) == 1.0  # the cosine starts where the warm-up ends
    assert lr_factor(550, cfg) == pytest.approx(0.5)  # half-way: cos(pi / 2)
    assert lr_factor(325, cfg) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor(1000, cfg) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(1500, cfg) == pytest.approx(0.0, abs=1e-12)  # stays 0 past the end
    decay = [lr_factor(s, cfg) for s in range(100, 1001)]
    assert all(a >= b for a, b in zip(decay, decay[1:], strict=False))


def test_lr_without_warmup_starts_at_full_rate():
    cfg = TrainConfig(steps=10, warmup_steps=0)
    assert lr_factor(0, cfg) == 1.0 and lr_factor(10, cfg) == pytest.approx(0.0, abs=1e-12)


def test_optimizer_follows_the_schedule():
    """fit's LambdaLR: the learning rate of step k is cfg.lr * lr_factor(k)."""
    cfg = TrainConfig(steps=20, warmup_steps=5, lr=2e-3)
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg))
    seen = []
    for _ in range(cfg.steps):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([cfg.lr * lr_factor(k, cfg) for k in range(cfg.steps)])
    assert seen[0] == pytest.approx(cfg.lr / 5) and max(seen) == pytest.approx(cfg.lr)


# ---------------------------------------------------------------------------- augmentation

CELL, BACKGROUND = 200, 50


def _sample(labels: np.ndarray) -> Sample:
    """Bright cells on a dark background, with the targets the training data computes."""
    image = np.where(labels > 0, CELL, BACKGROUND).astype(np.uint8)
    return Sample("x", 0, image, labels, make_targets(labels))


def _transform(a: np.ndarray, k: int) -> np.ndarray:
    """Flip/rotation ``k`` in 0..7 of ``a``'s last two axes: 0-3 rotations by 90 degrees,
    4-7 the same followed by a left-right flip."""
    r = np.rot90(a, k % 4, axes=(-2, -1))
    return r[..., ::-1] if k >= 4 else r


def _candidates(sample: Sample, fg_crop: np.ndarray) -> list[tuple[int, int, int]]:
    """The (transform, row, column) whose window of the sample's foreground, transformed, is
    the crop's foreground (one, unless the crop shows a symmetric piece)."""
    size = fg_crop.shape[0]
    windows = np.lib.stride_tricks.sliding_window_view(sample.targets["foreground"], (size, size))
    return [
        (k, int(y), int(x))
        for k in range(8)
        for y, x in np.argwhere((_transform(windows, k) == fg_crop).all(axis=(-2, -1)))
    ]


def _aligned(sample: Sample, crop: tuple[np.ndarray, ...], k: int, y: int, x: int) -> bool:
    """Whether every map of ``crop`` is window (y, x) of the sample's under transform ``k``:
    the targets exactly, the image up to the brightness jitter (a positive gain, an offset)."""
    image, _, distance, touching, edge, centre = crop
    size = image.shape[0]
    window = (slice(y, y + size), slice(x, x + size))
    targets = sample.targets
    dist = targets["distance"][window].astype(np.float32) / 255.0
    centres = targets["centre"][window].astype(np.float32) / 255.0
    outline = find_boundaries(sample.labels[window], mode="thick")
    expected = _transform(normalize_image(sample.image[window]), k).ravel()
    gain, offset = np.polyfit(expected, image.ravel(), 1)
    return (
        np.array_equal(distance, _transform(dist, k))
        and np.array_equal(centre, _transform(centres, k))
        and np.array_equal(touching, _transform(targets["touching"][window], k))
        and np.array_equal(edge, _transform(outline, k))
        and gain > 0
        and np.allclose(image.ravel(), gain * expected + offset, atol=1e-4)
    )


def _check_crop(sample: Sample, crop: tuple[np.ndarray, ...]) -> int:
    """Assert that one window and flip/rotation of the sample gives every map of ``crop``;
    return that transform."""
    image, fg = crop[0], crop[1]
    size = image.shape[0]
    assert image.dtype == np.float32 and all(m.shape == (size, size) for m in crop)
    bright = image > (image.min() + image.max()) / 2
    assert np.array_equal(bright, fg > 0)  # cells are bright in the crop too
    found = _candidates(sample, fg.astype(np.uint8))
    assert found, "the crop's foreground is no window of the sample's"
    right = [c for c in found if _aligned(sample, crop, *c)]
    assert right, f"no window of the foreground's {found} carries the other maps"
    return right[0][0]


def test_whole_image_crops_flip_and_rotate_image_and_targets_alike():
    """A crop as large as the image is one flip/rotation of it: the one that turns the
    foreground into its crop turns the image, distance, touching, outline and centre maps
    too."""
    labels = np.zeros((32, 32), np.int32)
    labels[4:20, 6:11] = 1
    labels[16:20, 11:24] = 1  # an L: each of the 8 flips/rotations gives another shape
    labels[22:28, 14:26] = 2
    labels[20:22, 14:26] = 2  # touches cell 1's foot
    sample = _sample(labels)
    assert sample.targets["touching"].any()
    assert len(_candidates(sample, sample.targets["foreground"])) == 1  # no symmetry
    seen = {_check_crop(sample, random_crop(sample, 32, np.random.default_rng(seed), 0.5))
            for seed in range(40)}  # fmt: skip
    assert len(seen) >= 6  # the augmentation really flips and rotates


def test_crops_of_a_larger_image_keep_the_cells_and_their_targets_together():
    """Crops cut anywhere in a larger image (most centred near a cell pixel) carry every
    target on the pixels of the image they belong to."""
    labels = np.zeros((64, 96), np.int32)
    labels[30:40, 50:58] = 1
    labels[40:44, 50:53] = 1  # an L-shaped cell
    labels[30:40, 58:66] = 2  # touching it
    labels[5:9, 10:30] = 3  # a bar far away
    sample = _sample(labels)
    with_cells = 0
    for seed in range(30):
        crop = random_crop(sample, 32, np.random.default_rng(seed), foreground_bias=0.8)
        if crop[1].any():  # an empty crop matches many windows: nothing to locate
            _check_crop(sample, crop)
            with_cells += 1
    assert with_cells >= 20  # foreground_bias 0.8 centres most crops near a cell
