"""The one image normalisation of the network's input, shared by training and inference.

One dtype contract: a gray ``(H, W)`` image of any real dtype, at any size. uint8 images are
used as they are (the network was trained on 8-bit images); other dtypes (uint16, int, float,
bool) are first scaled linearly so that their finite values span 0..255 (the 8-bit scale, not
rounded; non-finite pixels take the minimum). Then each image is standardised: zero mean and
unit standard deviation, the standard deviation floored at one grey level.

>>> import numpy as np
>>> x = normalize_image(np.array([[0, 10], [20, 30]], np.uint16))
>>> x.dtype, float(x.mean()), round(float(x.std()), 6)
(dtype('float32'), 0.0, 1.0)
"""

from __future__ import annotations

import numpy as np

from phaseseg.io.errors import PhasesegInputError


def check_image(image: object) -> np.ndarray:
    """``image`` as a 2-D numpy array of a real dtype, or :class:`PhasesegInputError`.

    Accepts uint8, uint16 and other integer, float and bool arrays of any size; refuses other
    shapes (RGB, stacks) and dtypes in one line.
    """
    arr = np.asarray(image)
    if arr.ndim != 2 or arr.size == 0 or arr.dtype.kind not in "uifb":
        raise PhasesegInputError(
            f"expected a 2-D grayscale image (uint8, uint16 or float), got a {arr.dtype} "
            f"array of shape {arr.shape}"
            + ("; convert RGB to gray first" if arr.ndim == 3 and arr.shape[-1] in (3, 4) else "")
        )
    return arr


def to_8bit_scale(image: np.ndarray) -> np.ndarray:
    """float32 ``(H, W)``: a non-uint8 image scaled linearly so its finite values span 0..255.

    Non-finite pixels take the minimum; a constant image becomes zeros. uint8 images are only
    converted to float32.
    """
    image = check_image(image)
    if image.dtype == np.uint8:
        return image.astype(np.float32)
    finite = np.isfinite(image)
    if not finite.any():
        raise PhasesegInputError("the image holds no finite values")
    if finite.all():
        return scale_to_8bit(image, float(image.min()), float(image.max()))
    return scale_to_8bit(image, float(image[finite].min()), float(image[finite].max()))


def scale_to_8bit(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """float32: ``image`` (any real dtype, any shape) scaled linearly from ``[lo, hi]`` (its
    finite range, or that of the whole image it is a block of) to 0..255; non-finite pixels
    take ``lo``; zeros when ``hi <= lo``.

    >>> scale_to_8bit(np.array([2.0, 4.0, np.nan]), 2.0, 6.0).tolist()
    [0.0, 127.5, 0.0]
    """
    img = np.asarray(image).astype(np.float64)
    if hi <= lo:
        return np.zeros(img.shape, np.float32)
    img = np.where(np.isfinite(img), img, lo)
    return ((img - lo) * (255.0 / (hi - lo))).astype(np.float32)


def standardize(img8: np.ndarray, mean: float, std: float) -> np.ndarray:
    """float32 ``(img8 - mean) / max(std, 1)``: ``img8`` float32 on the 8-bit scale, ``mean``
    and ``std`` its own (:func:`normalize_image`) or its whole image's (a block of a large
    image, :mod:`~phaseseg.segment.large`)."""
    return (img8 - np.float32(mean)) / max(float(std), 1.0)


def normalize_image(image: np.ndarray) -> np.ndarray:
    """Gray ``(H, W)`` image of any real dtype -> float32 ``(H, W)`` with zero mean and unit std.

    See the module docstring for the dtype contract; uint8 images go straight to the
    standardisation (the training data's path).
    """
    img = to_8bit_scale(image)
    return standardize(img, img.mean(), img.std())
