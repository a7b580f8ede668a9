"""Tile geometry: where the tiles of an image lie and how their maps are blended.

An image side no longer than the tile size is one tile; a longer side is cut into the fewest
equal tiles of at most that size that overlap by at least ``overlap`` px, spread evenly (the
first starts at 0, the last ends at the image's edge). Equal tiles let the network run them as
one batch. Each tile's per-pixel maps are weighted by a separable window that is 1 inside and
fades out (raised cosine over ``overlap`` px) towards the tile's *inner* edges, where the
network lacks context; the weighted sum divided by the sum of the windows gives seamless
whole-image maps, which are post-processed once, so no cell is cut at a tile border.

Because windows are separable and tiles lie on a grid, the sum of all windows at a pixel is
``Wy(y) * Wx(x)``, the product of the 1-D sums: normalising needs two 1-D arrays only.

>>> tile_layout(520, 1024, 64, 16)
([0], 520)
>>> tile_layout(2600, 1024, 64, 16)
([0, 844, 1688], 912)
"""

from __future__ import annotations

import math

import numpy as np


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


def tile_layout(length: int, max_tile: int, overlap: int, stride: int = 1) -> tuple[list[int], int]:
    """The fewest equal tiles of at most ``max_tile`` px covering one image side.

    Parameters
    ----------
    length : int
        Image side in pixels.
    max_tile : int
        Largest tile side; rounded down to a multiple of ``stride`` (at least ``stride``).
    overlap : int
        Minimum overlap of neighbouring tiles, ``0 <= overlap <`` the tile side.
    stride : int
        Tiles shorter than the image are a multiple of this (the network's stride), so that
        they need no padding.

    Returns
    -------
    starts : list of int
        Tile start offsets (``[0]`` when ``length <= max_tile``).
    side : int
        Tile side: ``length`` for one tile, else a multiple of ``stride`` ``<= max_tile``.
    """
    max_tile = max(stride, max_tile // stride * stride)
    if length <= max_tile:
        return [0], length
    if not 0 <= overlap < max_tile:
        raise ValueError(f"overlap must be in [0, {max_tile}), got {overlap}")
    n = math.ceil((length - overlap) / (max_tile - overlap))
    side = min(max_tile, math.ceil((length + (n - 1) * overlap) / n / stride) * stride)
    return tile_starts(length, side, overlap), side


def window(size: int, ramp: int, fade_start: bool, fade_end: bool) -> np.ndarray:
    """float32 ``(size,)`` 1-D blending window: 1 in the middle, a raised-cosine ramp of
    ``ramp`` px on the faded sides.

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


def side_windows(
    length: int, starts: list[int], side: int, overlap: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """The windows of the tiles along one image side and their sum, float32 ``(length,)``."""
    windows = [window(side, overlap, s > 0, s + side < length) for s in starts]
    total = np.zeros(length, np.float32)
    for s, w in zip(starts, windows, strict=True):
        total[s : s + side] += w
    return windows, total
