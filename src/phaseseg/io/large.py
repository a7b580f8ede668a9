"""Images too large for memory: lazy reading as dask arrays, OME-Zarr label output.

Which inputs take the block path (:mod:`phaseseg.segment.large`), see :func:`is_large_image`:

* an OME-Zarr image (a ``*.zarr`` folder) of one plane (one time point, one z; the channel is
  picked as for other formats: the one named like phase contrast, else the first);
* a PNG, TIFF or JPEG of more than :data:`LARGE_PIXELS` pixels (PIL refuses more than about
  179 Mpx as a "decompression bomb" when the image is opened the usual way).

Reading (:func:`open_large_image`) is lazy for OME-Zarr (bioio) and TIFF (tifffile's zarr view
of the file's tiles or strips); a PNG or JPEG cannot be read in parts, so its pixels are
decoded once into memory (1 byte per pixel for 8-bit gray, 2 for 16-bit; an RGB file is
turned into 8-bit gray as it is read, through PIL's own 4-byte-per-pixel buffer), and only the
segmentation runs block by block. Convert such a file once to OME-Zarr or a tiled TIFF for
a bounded memory: ``python -c "import tifffile, PIL.Image as I; I.MAX_IMAGE_PIXELS = None;
import numpy as np; tifffile.imwrite('big.tif', np.asarray(I.open('big.png').convert('L')),
tile=(1024, 1024), compression='zlib')"``, or with :func:`write_ome_zarr_image`.

Labels are written as an OME-Zarr (NGFF 0.4) label image (:func:`create_label_image`): a
multiscales group with ``image-label`` metadata, which napari (``napari-ome-zarr``) opens as a
labels layer.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from phaseseg.io.errors import PhasesegInputError
from phaseseg.io.gray import to_gray_uint8

log = logging.getLogger(__name__)

#: Image files with more pixels than this (8192 x 8192) are segmented block by block.
LARGE_PIXELS = 8192 * 8192
#: Chunk side of lazily read and of written arrays (px).
CHUNK = 1024


def is_zarr(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a Zarr folder (``*.zarr``, ``*.ome.zarr``)."""
    return Path(path).suffix.lower() == ".zarr"


@contextlib.contextmanager
def _pil_without_size_limit() -> Iterator[None]:
    """PIL's decompression-bomb check off (the block path reads large images on purpose)."""
    from PIL import Image

    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


def file_pixels(path: str | os.PathLike) -> int | None:
    """Pixels of one plane of a PNG/TIFF/JPEG file, from its header; None when unreadable."""
    from phaseseg.io.microscopy import TIFF_SUFFIXES

    path = Path(path)
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                shape = tif.series[0].shape
                axes = tif.series[0].axes
            return int(shape[axes.index("Y")] * shape[axes.index("X")])
        from PIL import Image

        with _pil_without_size_limit(), Image.open(path) as im:
            return int(im.width * im.height)
    except Exception:  # noqa: BLE001 - an unreadable file is reported by the usual path
        return None


def is_large_image(path: str | os.PathLike) -> bool:
    """Whether ``path`` takes the block path (see the module): a one-plane OME-Zarr, or an
    image file of more than :data:`LARGE_PIXELS` pixels."""
    path = Path(path)
    if is_zarr(path):
        from phaseseg.io.microscopy import frame_infos

        return len(frame_infos(path)) == 1  # stacks go frame by frame, each in memory
    if not path.is_file():
        return False
    n = file_pixels(path)
    return n is not None and n > LARGE_PIXELS


def open_large_image(path: str | os.PathLike) -> tuple[Any, float | None]:
    """A large image as a lazy uint8 ``(H, W)`` dask array, and its pixel size in µm (or None).

    Colour and 16-bit/float images are converted as :func:`phaseseg.io.read_image` converts
    them (luma; min-max to 8 bit over the whole image), block by block.
    """
    import dask.array as da

    path = Path(path)
    pixel_size = None
    try:
        if is_zarr(path):
            array, pixel_size = _open_zarr(path)
        elif path.suffix.lower() in (".tif", ".tiff"):
            import tifffile
            import zarr

            array = da.from_zarr(zarr.open(tifffile.imread(path, aszarr=True), mode="r"))
        else:
            from PIL import Image

            with _pil_without_size_limit(), Image.open(path) as im:
                if im.mode not in ("L", "I;16", "I", "F", "1"):
                    im = im.convert("L")  # luma, 0.299 R + 0.587 G + 0.114 B
                array = da.from_array(np.asarray(im), chunks=CHUNK)
    except PhasesegInputError:
        raise
    except Exception as e:  # noqa: BLE001 - any decoder failure is a bad file for the user
        raise PhasesegInputError(f"{path}: not a readable image ({type(e).__name__})") from None
    return to_gray_uint8(array, path), pixel_size


def _open_zarr(path: Path) -> tuple[Any, float | None]:
    from phaseseg.io.microscopy import _bioio_meta, _open_bioio, _pick_channel

    _open_bioio(path)  # one-line errors: bioio missing, not an OME-Zarr
    from bioio import BioImage

    img = BioImage(path)
    sizes = dict(zip(img.dims.order, img.dims.shape, strict=True))
    where = {a: 0 for a in "TZ" if a in sizes}
    if "C" in sizes:
        where["C"] = _pick_channel(sizes["C"], _bioio_meta(img, 0, path).channel_names, path)
    axes = "YXS" if "S" in sizes else "YX"
    return img.get_image_dask_data(axes, **where), _bioio_meta(img, 0, path).pixel_size


def write_ome_zarr_image(
    path: str | os.PathLike, image: np.ndarray, *, pixel_size: float | None = None
) -> None:
    """Write a 2-D ``(H, W)`` image as a one-level OME-Zarr (NGFF 0.5), through bioio-ome-zarr
    (``phaseseg[formats]``).

    The format :func:`open_large_image` reads tile by tile: convert a huge PNG once, then
    segment it in bounded memory. ``pixel_size`` (µm) goes into the metadata when given. An
    existing ``path`` is refused with :class:`PhasesegInputError`.
    """
    from bioio_ome_zarr.writers import OMEZarrWriter

    if Path(path).exists():
        raise PhasesegInputError(f"{path}: exists; not overwritten")
    if image.ndim != 2:
        raise PhasesegInputError(f"{path}: expected a 2-D image, got shape {image.shape}")
    calibrated = {}
    if pixel_size is not None:
        calibrated = {
            "axes_units": ["micrometer", "micrometer"],
            "physical_pixel_size": [pixel_size, pixel_size],
        }
    writer = OMEZarrWriter(
        str(path),
        level_shapes=image.shape,
        dtype=image.dtype,
        axes_names=["y", "x"],
        axes_types=["space", "space"],
        **calibrated,
    )
    writer.write_full_volume(image)


def create_label_image(
    path: str | os.PathLike,
    shape: tuple[int, int],
    *,
    chunks: int = CHUNK,
    pixel_size: float | None = None,
    source: str | None = None,
    name: str = "cells",
) -> Any:
    """Create an empty OME-Zarr (NGFF 0.4, Zarr v2) label image; return its int32 array.

    ``path`` becomes a multiscales group of one level, ``0`` (``y``, ``x`` axes; in µm when
    ``pixel_size`` is given), with ``image-label`` metadata naming ``source`` (the image's path
    relative to ``path``) when given. Fill the returned array (0 background, 1.. cells).
    """
    import zarr

    root = zarr.open_group(str(path), mode="a", zarr_format=2)
    array = root.create_array(
        "0",
        shape=shape,
        chunks=(min(chunks, shape[0]), min(chunks, shape[1])),
        dtype="int32",
        fill_value=0,
        chunk_key_encoding={"name": "v2", "separator": "/"},  # NGFF 0.4: nested chunks
    )
    axes: list[dict[str, str]] = [{"name": a, "type": "space"} for a in "yx"]
    if pixel_size is not None:
        for axis in axes:
            axis["unit"] = "micrometer"
    scale = [pixel_size or 1.0] * 2
    label: dict[str, Any] = {"version": "0.4"}
    if source is not None:
        label["source"] = {"image": source}
    root.attrs.update(
        {
            "multiscales": [
                {
                    "version": "0.4",
                    "name": name,
                    "axes": axes,
                    "datasets": [
                        {
                            "path": "0",
                            "coordinateTransformations": [{"type": "scale", "scale": scale}],
                        }
                    ],
                }
            ],
            "image-label": label,
        }
    )
    return array
