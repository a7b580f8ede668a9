"""Reading images (PNG, TIFF, JPEG, microscope formats; converted to 8-bit gray) and finding
them in folders. Stacks and their metadata: :mod:`phaseseg.io.microscopy`."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from phaseseg.io.errors import PhasesegInputError
from phaseseg.io.microscopy import (
    BASE_SUFFIXES,
    BIOIO_SUFFIXES,
    TIFF_SUFFIXES,
    image_id,
    is_image_path,
)

log = logging.getLogger(__name__)

#: Every file ending phaseseg reads (``.czi .nd2 .lif .zarr`` through ``phaseseg[formats]``).
IMAGE_SUFFIXES = BASE_SUFFIXES + BIOIO_SUFFIXES


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a phase-contrast image as a uint8 ``(H, W)`` array.

    RGB(A), palette and gray+alpha images are converted to gray and 16-bit or float images
    rescaled (min-max) to 8 bit, each with a warning; unreadable files raise
    :class:`PhasesegInputError` naming the file. A file holding several frames (a multi-page
    TIFF, a time-lapse) is refused: read those with :func:`phaseseg.io.iter_frames`.
    """
    from phaseseg.io.microscopy import frame_infos, iter_frames

    path = Path(path)
    infos = frame_infos(path)
    if len(infos) != 1:
        raise PhasesegInputError(
            f"{path}: holds {len(infos)} frames; read it frame by frame "
            "(phaseseg.io.iter_frames; phaseseg predict and measure do)"
        )
    frames = iter_frames(path)
    try:
        return next(frames)[1]
    finally:
        frames.close()


def _to_gray_uint8(img: np.ndarray, path: Path, warn: bool = True) -> np.ndarray:
    """``img`` as uint8 gray, warning about each conversion (unless ``warn`` is False)."""
    img = np.squeeze(img)
    if img.ndim == 3 and img.shape[-1] == 2:
        if warn:
            log.warning("%s: gray+alpha image, alpha channel dropped", path)
        img = img[..., 0]
    if img.ndim == 3 and img.shape[-1] in (3, 4):
        if warn:
            log.warning("%s: RGB image converted to grayscale", path)
        rgb = img[..., :3].astype(np.float64)
        img = rgb @ np.array([0.299, 0.587, 0.114])
        if rgb.max(initial=0) <= 255 and rgb.min(initial=0) >= 0:
            img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    if img.ndim != 2 or img.size == 0:
        raise PhasesegInputError(f"{path}: expected a 2-D grayscale image, got shape {img.shape}")
    if img.dtype == np.uint8:
        return img
    if img.dtype == bool:
        return img.astype(np.uint8) * 255
    if warn:
        log.warning("%s: %s image rescaled to 8 bit", path, img.dtype)
    img = img.astype(np.float64)
    finite = np.isfinite(img)
    if not finite.any():
        raise PhasesegInputError(f"{path}: image holds no finite values")
    lo, hi = img[finite].min(), img[finite].max()
    img = np.where(finite, img, lo)
    if hi <= lo:
        return np.zeros(img.shape, dtype=np.uint8)
    return np.round((img - lo) / (hi - lo) * 255).astype(np.uint8)


def image_shape(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` of an image file, read from its header only (fast)."""
    path = Path(path)
    if not path.is_file():
        raise PhasesegInputError(f"{path}: no such file")
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                shape = tuple(tif.series[0].shape)
        else:
            from PIL import Image

            with Image.open(path) as im:
                shape = (im.height, im.width)
    except Exception as e:  # noqa: BLE001 - any decoder failure is a bad file for the user
        raise PhasesegInputError(f"{path}: not a readable image ({type(e).__name__})") from None
    if len(shape) == 3 and shape[-1] in (2, 3, 4):  # channels last
        shape = shape[:2]
    while len(shape) > 2 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) != 2:
        raise PhasesegInputError(f"{path}: expected a 2-D image, got shape {shape}")
    return int(shape[0]), int(shape[1])


def find_images(inputs: list[str | os.PathLike]) -> list[Path]:
    """Expand files and folders into a sorted list of image files.

    Folders are not searched recursively; hidden files (``.name``, e.g. macOS ``._x.png`` or
    unfinished atomic writes) are skipped. An OME-Zarr folder (``*.zarr``) is an image, given
    itself or found in a folder.
    """
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir() and not is_image_path(p):
            out.extend(
                sorted(f for f in p.iterdir() if is_image_path(f) and not f.name.startswith("."))
            )
        elif p.exists():
            out.append(p)
        else:
            raise PhasesegInputError(f"{p}: no such file or folder")
    return out


def find_image_set(inputs: list[str | os.PathLike]) -> list[Path]:
    """Like :func:`find_images`, for commands that name outputs by image id
    (:func:`phaseseg.io.microscopy.image_id`: the file name without its suffix).

    Raises :class:`PhasesegInputError` when no image is found (listing the accepted file
    endings) or two images share an id.
    """
    paths = find_images(inputs)
    if not paths:
        raise PhasesegInputError(
            f"no images found in {', '.join(map(str, inputs))} "
            f"(accepted endings: {' '.join(IMAGE_SUFFIXES)}; {' '.join(BIOIO_SUFFIXES)} "
            "need phaseseg[formats])"
        )
    seen: dict[str, Path] = {}
    for p in paths:
        key = image_id(p)
        if key in seen:
            raise PhasesegInputError(f"{p}: same image id {key!r} as {seen[key]}")
        seen[key] = p
    return paths
