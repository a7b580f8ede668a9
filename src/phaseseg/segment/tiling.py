"""Large images: run the network on overlapping tiles and stitch the maps seamlessly.

The network sees one tile at a time, so memory on the device stays flat in the image size.
Each tile's per-pixel maps (foreground, distance) are blended into whole-image maps with a
smooth window that fades out towards the tile's inner edges, where the network lacks context;
post-processing then runs **once** on the stitched maps, so no cell is cut along a tile border.

The blending window of a tile is separable, ``w(y, x) = wy(y) * wx(x)``, and tiles lie on a
regular grid, so the sum of all windows at a pixel is ``Wy(y) * Wx(x)`` (the sums of the 1-D
windows). Normalising needs only these two 1-D arrays: besides the input image, only the two
output maps are held in memory.

>>> from phaseseg.nn.model import NetConfig, build_model
>>> net = build_model(NetConfig(channels=(4, 8), convs_per_block=1)).eval()
>>> image = np.zeros((300, 200), dtype=np.uint8)
>>> fg, dist, type_probs = predict_maps_tiled(net, image, torch.device("cpu"), tile=(128, 128),
...                                           overlap=32)
>>> fg.shape, dist.dtype, type_probs.shape
((300, 200), dtype('float32'), (3,))
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
import torch.nn.functional as F

from phaseseg.nn.model import UNet
from phaseseg.segment.normalize import image_stats

log = logging.getLogger(__name__)

#: :meth:`~phaseseg.segment.segmenter.Segmenter.segment_full` tiles images whose larger side
#: exceeds this.
TILE_ABOVE = 1024


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles covering ``[0, length)`` with at least ``overlap`` px in common.

    Tiles are spread evenly: the first starts at 0, the last ends at ``length``.

    Parameters
    ----------
    length : int
        Image side in pixels.
    tile : int
        Tile side in pixels (a single tile of side ``length`` when ``length <= tile``).
    overlap : int
        Minimum overlap of neighbouring tiles in pixels, ``0 <= overlap < tile``.

    Returns
    -------
    list of int
        Sorted start offsets.

    Examples
    --------
    >>> tile_starts(1560, 512, 128)
    [0, 349, 699, 1048]
    >>> tile_starts(300, 512, 128)
    [0]
    """
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def _window(size: int, ramp: int, fade_start: bool, fade_end: bool) -> np.ndarray:
    """1-D blending window: 1 in the middle, a raised-cosine ramp on faded sides.

    Values stay strictly positive (the ramp starts at half a pixel), so every pixel of the
    image gets weight from at least one tile.
    """
    w = np.ones(size, dtype=np.float32)
    ramp = min(ramp, size // 2)
    if ramp > 0:
        r = np.sin(0.5 * np.pi * (np.arange(ramp, dtype=np.float32) + 0.5) / ramp) ** 2
        if fade_start:
            w[:ramp] = r
        if fade_end:
            w[size - ramp :] = r[::-1]
    return w


def forward_padded(
    net: UNet, x: torch.Tensor, device: torch.device, flips: list[tuple[int, ...]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel probabilities ``(2, h, w)`` and cell-type logits ``(n_types,)`` of one tile.

    ``x`` is the normalised tile, float32 ``(h, w)`` on ``device``; it is padded to the
    network's stride. :func:`phaseseg.segment.segmenter.predict_maps` runs whole images through it.
    """
    h, w = x.shape
    s = net.config.stride
    ph, pw = (-h) % s, (-w) % s
    mode = "reflect" if ph < h and pw < w else "replicate"
    xb = F.pad(x[None, None], (0, pw, 0, ph), mode=mode).contiguous(
        memory_format=torch.channels_last
    )
    pixel, logits = 0.0, 0.0
    for dims in flips:
        xi = torch.flip(xb, dims) if dims else xb
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out = net(xi)
        p = out["pixel"].float()
        pixel = pixel + (torch.flip(p, dims) if dims else p)
        logits = logits + out["cell_type"].float()
    probs = torch.sigmoid(pixel / len(flips))[0, :, :h, :w]
    return probs, logits[0] / len(flips)


@torch.inference_mode()
def predict_maps_tiled(
    net: UNet,
    image: np.ndarray,
    device: torch.device,
    tile: tuple[int, int] = (512, 512),
    overlap: int = 128,
    tta: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the network on overlapping tiles of a (large) image and blend the maps.

    Drop-in for :func:`~phaseseg.segment.segmenter.predict_maps`. The image is normalised once
    with its global mean and standard deviation (so all tiles see the same intensity scale),
    each tile is padded to the network's stride, and the per-pixel probabilities are blended
    with separable raised-cosine windows that fade over ``overlap`` pixels at every inner tile edge.

    Parameters
    ----------
    net : UNet
        The network, in eval mode, on ``device``.
    image : (H, W) uint8 array
        Any size; a side no longer than the tile is covered by one tile.
    device : torch.device
    tile : (int, int)
        Tile ``(height, width)`` in pixels; multiples of the network's stride avoid padding.
    overlap : int
        Minimum overlap of neighbouring tiles in pixels (``0 <= overlap <`` each tile side);
        also the width of the blending ramp. 64-128 px covers the network's useful context;
        with 0, tiles are simply abutted and cells may show seams.
    tta : bool
        Average each tile over horizontal/vertical flips (4 passes).

    Returns
    -------
    foreground, distance : (H, W) float32 arrays in [0, 1]
        Blended probabilities (see :mod:`phaseseg.nn.model` for their meaning).
    cell_type_probs : (n_types,) float32 array
        Softmax of each tile's cell-type logits, averaged over the tiles (all of one size).
    """
    if image.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {image.shape}")
    th, tw = (int(t) for t in tile)
    if th < 1 or tw < 1:
        raise ValueError(f"tile sides must be positive, got {tile}")
    if not 0 <= overlap < min(th, tw):
        raise ValueError(f"overlap must be in [0, {min(th, tw)}), got {overlap}")
    h, w = image.shape
    ys, xs = tile_starts(h, th, overlap), tile_starts(w, tw, overlap)
    th, tw = min(th, h), min(tw, w)
    log.debug("%dx%d image: %d x %d tiles of %dx%d", h, w, len(ys), len(xs), th, tw)
    mean, std = image_stats(image)
    std = max(std, 1.0)  # as normalize_image
    wy = [_window(th, overlap, y > 0, y + th < h) for y in ys]
    wx = [_window(tw, overlap, x > 0, x + tw < w) for x in xs]
    wy_sum, wx_sum = np.zeros(h, np.float32), np.zeros(w, np.float32)
    for y, win in zip(ys, wy, strict=True):
        wy_sum[y : y + th] += win
    for x, win in zip(xs, wx, strict=True):
        wx_sum[x : x + tw] += win
    foreground = np.zeros((h, w), np.float32)
    distance = np.zeros((h, w), np.float32)
    type_probs = 0.0
    flips = [(), (3,), (2,), (2, 3)] if tta else [()]
    for y, win_y in zip(ys, wy, strict=True):
        for x, win_x in zip(xs, wx, strict=True):
            crop = torch.from_numpy(image[y : y + th, x : x + tw].astype(np.float32))
            crop = ((crop - mean) / std).to(device)
            probs, logits = forward_padded(net, crop, device, flips)
            weight = torch.from_numpy(np.outer(win_y, win_x)).to(device)
            probs = (probs * weight).cpu().numpy()
            foreground[y : y + th, x : x + tw] += probs[0]
            distance[y : y + th, x : x + tw] += probs[1]
            type_probs = type_probs + torch.softmax(logits, dim=0).cpu().numpy()
    for m in (foreground, distance):
        m /= wy_sum[:, None]
        m /= wx_sum[None, :]
        np.clip(m, 0.0, 1.0, out=m)
    type_probs = np.asarray(type_probs / (len(ys) * len(xs)), dtype=np.float32)
    return foreground, distance, type_probs
