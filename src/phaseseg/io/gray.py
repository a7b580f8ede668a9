"""One rule for turning any image into 8-bit gray, for in-memory (numpy) and lazy (dask)
arrays alike: :func:`phaseseg.io.read_image` and :func:`phaseseg.io.large.open_large_image`
both go through it, so a file reads the same either way."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from phaseseg.io.errors import PhasesegInputError

log = logging.getLogger(__name__)

#: ITU-R BT.601 luma weights for R, G, B.
LUMA = np.array([0.299, 0.587, 0.114])


def drop_colour(img: Any, path: Path, warn: bool = True) -> Any:
    """``img`` (numpy or dask) as a 2-D ``(H, W)`` array of the same kind.

    Length-1 axes are dropped, a gray+alpha ``(H, W, 2)`` image keeps its gray channel and an
    RGB(A) ``(H, W, 3|4)`` image becomes its luma: uint8 when the input is uint8 (rounded),
    float64 otherwise. Each conversion is logged as a warning unless ``warn`` is False.

    >>> drop_colour(np.full((1, 2, 2, 3), 200, np.uint8), Path("x.png"), warn=False)
    array([[200, 200],
           [200, 200]], dtype=uint8)
    """
    img = img.squeeze()
    if img.ndim == 3 and img.shape[-1] == 2:
        if warn:
            log.warning("%s: gray+alpha image, alpha channel dropped", path)
        img = img[..., 0]
    if img.ndim == 3 and img.shape[-1] in (3, 4):
        if warn:
            log.warning("%s: RGB image converted to grayscale", path)
        eight_bit = img.dtype == np.uint8
        img = (img[..., :3].astype(np.float64) * LUMA).sum(axis=-1)
        if eight_bit:
            img = img.round().clip(0, 255).astype(np.uint8)
    if img.ndim != 2 or img.size == 0:
        raise PhasesegInputError(f"{path}: expected a 2-D grayscale image, got shape {img.shape}")
    return img


def to_gray_uint8(img: Any, path: Path, warn: bool = True) -> Any:
    """``img`` (numpy, or dask: converted lazily) as uint8 gray ``(H, W)`` of the same kind.

    Colour goes by :func:`drop_colour`; a bool image becomes 0/255; a 16-bit or float image is
    min-max scaled onto 0..255 over its finite values (for a dask array the min and max are
    computed first, over the whole image). Each conversion is logged unless ``warn`` is False.

    >>> to_gray_uint8(np.array([[0, 2000], [4000, 1000]], np.uint16), Path("x.tif"), warn=False)
    array([[  0, 128],
           [255,  64]], dtype=uint8)
    """
    img = drop_colour(img, path, warn)
    if img.dtype == np.uint8:
        return img
    if img.dtype == bool:
        return img.astype(np.uint8) * 255
    if warn:
        log.warning("%s: %s image rescaled to 8 bit", path, img.dtype)
    lazy = not isinstance(img, np.ndarray)
    if lazy:
        import dask.array as xp
    else:
        xp = np
    finite = xp.isfinite(img)
    lo, hi = xp.where(finite, img, np.inf).min(), xp.where(finite, img, -np.inf).max()
    if lazy:
        lo, hi = xp.compute(lo, hi)
    lo, hi = float(lo), float(hi)
    if not np.isfinite(lo):
        raise PhasesegInputError(f"{path}: image holds no finite values")
    if hi <= lo:
        return xp.zeros_like(img, dtype=np.uint8)
    if lazy:
        return img.map_blocks(scale_to_uint8, lo=lo, hi=hi, dtype=np.uint8)
    return scale_to_uint8(img, lo, hi)


def scale_to_uint8(img: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``img`` mapped linearly from ``lo..hi`` onto 0..255 (``hi > lo``), as uint8.

    Non-finite values become 0.

    >>> scale_to_uint8(np.array([10.0, 15.0, 20.0, np.nan]), 10.0, 20.0)
    array([  0, 128, 255,   0], dtype=uint8)
    """
    img = np.where(np.isfinite(img), img.astype(np.float64), lo)
    return np.round((img - lo) / (hi - lo) * 255).astype(np.uint8)
