"""Images -> network maps: the one inference path.

Every image, whatever its size or dtype, takes the same steps:

1. :func:`~phaseseg.segment.normalize.normalize_image` (the dtype contract is there);
2. cut into tiles (:func:`~phaseseg.segment.tiling.tile_layout`): a small image is one tile;
3. the tiles, with their flips under test-time augmentation, of one or several images, run
   through the network in batches of ``batch_size`` inputs of equal shape (padded to the
   network's stride), in bf16 or float32 (:func:`~phaseseg.nn.device.resolve_precision`);
4. each tile's pixel logits are averaged over its flips and turned into probabilities, and
   tiles are blended into whole-image maps (:mod:`~phaseseg.segment.tiling`); the cell-type
   probabilities are averaged over the tiles.

Images stream through :func:`iter_maps`: only the images whose tiles are in the current batch
are held, so memory stays flat however many images there are.

>>> from phaseseg.nn.model import NetConfig, build_model
>>> net = build_model(NetConfig(channels=(4, 8), convs_per_block=1)).eval()
>>> maps = predict_maps(net, [np.zeros((30, 40), np.uint8), np.ones((300, 200))], "cpu",
...                     tile=128, overlap=32)
>>> [m.foreground.shape for m in maps], maps[1].distance.dtype, maps[0].cell_type_probs.shape
([(30, 40), (300, 200)], dtype('float32'), (3,))
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from phaseseg.nn.device import autocast, pick_device, resolve_precision
from phaseseg.segment.normalize import check_image, normalize_image
from phaseseg.segment.tiling import side_windows, tile_layout

log = logging.getLogger(__name__)

#: Largest tile side in image pixels (divided by the network's ``input_scale``); images up to
#: this size on a side (a 704x520 competition image) run whole. On a CPU the network's time per
#: pixel grows with the input beyond about 0.5 Mpx (caches), more than overlaps cost: 704-px
#: tiles beat 1024-px ones (BENCHMARKS.md).
TILE = 704
#: Minimum overlap of neighbouring tiles, also the width of the blending ramp.
OVERLAP = 96
#: The flips of test-time augmentation (dims of an ``(N, C, H, W)`` tensor), in this order.
FLIPS: tuple[tuple[int, ...], ...] = ((), (3,), (2,), (2, 3))


@dataclass
class Maps:
    """The network's answer for one image (unpacks as ``fg, dist, probs = maps``)."""

    foreground: np.ndarray  # float32 (H, W) in [0, 1]: probability of a cell pixel
    distance: np.ndarray  # float32 (H, W) in [0, 1]: normalised distance to the cell border
    cell_type_probs: np.ndarray  # float32 (n_types,): the culture's cell type
    centre: np.ndarray | None = None  # float32 (H, W) in [0, 1]: cell centres (centre output)

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.foreground, self.distance, self.cell_type_probs))

    def pixel_maps(self) -> tuple[np.ndarray, ...]:
        """``(fg, dist)``, and ``centre`` after them where the network has one."""
        return (self.foreground, self.distance) + (() if self.centre is None else (self.centre,))

    def arrays(self) -> tuple[np.ndarray, ...]:
        """``(fg, dist, probs)``, and ``centre`` after them where the network has one."""
        return tuple(self) + self.pixel_maps()[2:]


def default_batch_size(device: torch.device) -> int:
    """Network inputs (tiles x flips) per forward pass: 1 on a CPU (larger batches are no
    faster there; BENCHMARKS.md), 8 on a GPU."""
    return 1 if device.type == "cpu" else 8


def predict_maps(
    net: torch.nn.Module,
    images: np.ndarray | list[np.ndarray],
    device: str | torch.device | None = None,
    **options,
) -> Maps | list[Maps]:
    """:class:`Maps` of one image, or a list for a list of images (see :func:`iter_maps`)."""
    if isinstance(images, (list, tuple)):
        return list(iter_maps(net, images, device, **options))
    return next(iter_maps(net, [images], device, **options))


@torch.inference_mode()
def iter_maps(
    net: torch.nn.Module,
    images: Iterable[np.ndarray],
    device: str | torch.device | None = None,
    *,
    precision: str = "auto",
    tta: bool = False,
    batch_size: int | None = None,
    tile: int = TILE,
    overlap: int = OVERLAP,
    normalized: bool = False,
) -> Iterator[Maps]:
    """Run the network on images (any sizes, any real dtype), yielding their maps in order.

    Parameters
    ----------
    net : torch.nn.Module
        A :class:`~phaseseg.nn.model.UNet` (or anything with its ``config.stride`` and output
        dict), in eval mode, on ``device``.
    images : iterable of (H, W) arrays
        Consumed lazily; each may have its own size and dtype (uint8, uint16, float, ...).
    device : torch.device or str, optional
        Default: :func:`~phaseseg.nn.device.pick_device`.
    precision : {"auto", "bf16", "fp32"}
        See :func:`~phaseseg.nn.device.resolve_precision`.
    tta : bool
        Average each tile over horizontal and vertical flips (4 network inputs per tile).
    batch_size : int, optional
        Network inputs (tiles x flips, of one or several images) per forward pass; default
        :func:`default_batch_size`. Results do not depend on it beyond the arithmetic of the
        convolution kernels oneDNN/cuDNN pick per batch size (float32: within 1e-6).
    tile : int
        Largest tile side in image pixels (divided by the network's ``input_scale``).
    overlap : int
        Minimum overlap of neighbouring tiles in pixels, also the blending ramp's width.
    normalized : bool
        The images are already float32 outputs of the normalisation (the block path of
        :mod:`~phaseseg.segment.large` normalises tiles of one large image by its global
        statistics); skip :func:`~phaseseg.segment.normalize.normalize_image`.

    Yields
    ------
    Maps
        float32 ``(H, W)`` foreground and distance probabilities (and the centre map of a
        network with a centre output) and ``(n_types,)`` cell-type probabilities, one per input
        image, in input order.
    """
    device = pick_device(device)
    precision = resolve_precision(precision, device)
    batch_size = default_batch_size(device) if batch_size is None else batch_size
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    config = net.config
    stride = int(config.stride)  # type: ignore[arg-type]
    scale = float(getattr(config, "input_scale", 1.0))
    max_tile = max(stride, int(tile / scale))
    flips = FLIPS if tta else FLIPS[:1]
    pending: deque[_ImageMaps] = deque()
    batch: list[tuple[_ImageMaps, int, tuple[int, ...], torch.Tensor]] = []

    def run_batch() -> None:
        xb = torch.cat([item[3] for item in batch]).to(device)
        with autocast(device, precision):
            out = net(xb.contiguous(memory_format=torch.channels_last))
        pixel, logits = out["pixel"].float(), out["cell_type"].float()
        for j, (target, t, dims, _) in enumerate(batch):
            p = pixel[j : j + 1]
            target.add(t, torch.flip(p, dims) if dims else p, logits[j : j + 1])
        batch.clear()

    for image in images:
        target = _ImageMaps(image, max_tile, overlap, stride, len(flips), normalized)
        pending.append(target)
        for t, x in enumerate(target.tile_inputs()):
            for dims in flips:
                xi = torch.flip(x, dims) if dims else x
                if batch and batch[0][3].shape != xi.shape:
                    run_batch()
                batch.append((target, t, dims, xi))
                if len(batch) >= batch_size:
                    run_batch()
                while pending and pending[0].done:
                    yield pending.popleft().result()
    if batch:
        run_batch()
    while pending:
        yield pending.popleft().result()


class _ImageMaps:
    """One image in flight: its normalised pixels, tile layout and the maps being blended."""

    def __init__(
        self,
        image: np.ndarray,
        max_tile: int,
        overlap: int,
        stride: int,
        n_flips: int,
        normalized: bool = False,
    ):
        image = check_image(image)
        self.shape = h, w = image.shape
        x = image.astype(np.float32, copy=False) if normalized else normalize_image(image)
        self.x = torch.from_numpy(x)
        self.ys, self.th = tile_layout(h, max_tile, overlap, stride)
        self.xs, self.tw = tile_layout(w, max_tile, overlap, stride)
        self.tiles = [(y, x) for y in self.ys for x in self.xs]
        self.stride, self.overlap, self.n_flips = stride, overlap, n_flips
        self.sums: dict[int, list] = {}  # tile -> [pixel logits sum, type logits sum, count]
        self.n_done = 0
        self.type_probs: np.ndarray | float = 0.0
        self.whole = len(self.tiles) == 1
        if not self.whole:
            self.wy, self.wy_sum = side_windows(h, self.ys, self.th, overlap)
            self.wx, self.wx_sum = side_windows(w, self.xs, self.tw, overlap)
            self.blend: np.ndarray | None = None  # (channels, h, w), made by the first tile
        log.debug("%dx%d image: %d tiles of %dx%d", h, w, len(self.tiles), self.th, self.tw)

    @property
    def done(self) -> bool:
        return self.n_done == len(self.tiles)

    def tile_inputs(self) -> Iterator[torch.Tensor]:
        """float32 ``(1, 1, h', w')`` tiles, padded at the bottom and right to the stride."""
        th, tw, s = self.th, self.tw, self.stride
        ph, pw = (-th) % s, (-tw) % s
        mode = "reflect" if ph < th and pw < tw else "replicate"
        for y, x in self.tiles:
            crop = self.x[y : y + th, x : x + tw][None, None]
            yield F.pad(crop, (0, pw, 0, ph), mode=mode) if ph or pw else crop.contiguous()

    def add(self, t: int, pixel: torch.Tensor, logits: torch.Tensor) -> None:
        """Take one network output of tile ``t`` (``(1, C, h', w')`` pixel logits, flipped
        back, and ``(1, n_types)`` type logits); blend the tile in once all flips are in."""
        acc = self.sums.setdefault(t, [0.0, 0.0, 0])
        acc[0] = acc[0] + pixel  # summed in flip order
        acc[1] = acc[1] + logits
        acc[2] += 1
        if acc[2] < self.n_flips:
            return
        del self.sums[t]
        n = self.n_flips
        probs = torch.sigmoid(acc[0] / n)[0, :, : self.th, : self.tw]
        type_probs = torch.softmax(acc[1][0] / n, dim=0).cpu().numpy()
        self.type_probs = self.type_probs + type_probs
        self.n_done += 1
        if self.whole:
            self.probs = probs.cpu().numpy()
            return
        y, x = self.tiles[t]
        i, j = self.ys.index(y), self.xs.index(x)
        weight = torch.from_numpy(np.outer(self.wy[i], self.wx[j])).to(probs.device)
        blended = (probs * weight).cpu().numpy()
        if self.blend is None:
            self.blend = np.zeros((len(blended), *self.shape), np.float32)
        self.blend[:, y : y + self.th, x : x + self.tw] += blended

    def result(self) -> Maps:
        self.x = None  # type: ignore[assignment]  # the normalised image is no longer needed
        type_probs = np.asarray(self.type_probs / len(self.tiles), dtype=np.float32)
        if self.whole:
            maps = self.probs
        else:
            assert self.blend is not None
            maps = self.blend
            for m in maps:
                m /= self.wy_sum[:, None]
                m /= self.wx_sum[None, :]
                np.clip(m, 0.0, 1.0, out=m)
        centre = maps[2] if len(maps) > 2 else None
        return Maps(maps[0], maps[1], type_probs, centre)
