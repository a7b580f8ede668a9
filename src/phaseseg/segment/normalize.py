"""The one image normalisation of the network's input, shared by training and inference."""

from __future__ import annotations

import math

import numpy as np


def normalize_image(image: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W)`` image -> float32 ``(H, W)`` with zero mean and unit std (per image)."""
    img = image.astype(np.float32)
    return (img - img.mean()) / max(float(img.std()), 1.0)


def image_stats(image: np.ndarray) -> tuple[float, float]:
    """Mean and std of a uint8 image from its histogram (no float copy of the image).

    Used where an image is normalised in parts (tiles) with the whole image's statistics;
    the std is then floored at 1 as in :func:`normalize_image`.
    """
    counts = np.bincount(image.ravel(), minlength=256).astype(np.float64)
    values = np.arange(counts.size, dtype=np.float64)
    n = counts.sum()
    mean = float(counts @ values / n)
    var = float(counts @ (values - mean) ** 2 / n)
    return mean, math.sqrt(var)
