"""Microscope files: stacks read frame by frame, each frame with its time and pixel size.

One image file may hold many 2-D frames (a time-lapse, a z-stack, several positions) and
metadata that say how large a pixel is and when each frame was taken. :func:`frame_infos`
lists a file's frames from its header; :func:`iter_frames` reads them one at a time (memory
stays at one frame), each as uint8 ``(H, W)`` like :func:`phaseseg.io.read_image`.

Readers
-------
* PNG, JPEG, BMP: Pillow (one frame, no metadata).
* TIFF, OME-TIFF, ImageJ hyperstacks, multi-page TIFF: ``tifffile`` (base install). With the
  optional ``phaseseg[formats]`` installed, ``*.ome.tif`` is read through ``bioio`` (its
  ``bioio-ome-tiff`` plugin), and through ``tifffile`` if that fails.
* OME-Zarr (``*.zarr`` folders), Zeiss CZI, Nikon ND2, Leica LIF: ``bioio`` and its plugins,
  which ``pip install 'phaseseg[formats]'`` adds.

Frames and their ids
--------------------
Every axis other than Y, X, channels (C) and colour samples (S) is iterated: time (T, and the
page axis of a plain multi-page TIFF, which is taken as time), depth (Z) and positions / scenes
(S in the id). A single image keeps its file id (:func:`image_id`: the file name without
``.tif``, ``.ome.tif``, ``.zarr``...); frames of a stack get a suffix per iterated axis, 0-based
and zero-padded to at least three digits: ``x_t000``, ``x_t001``, ... (``x_s001_t003_z002`` for
position 1, time point 3, plane 2). Of several channels, the one whose name contains "phase"
(or "PH", "bright", "trans", "DIC") is segmented, else the first, with a warning.

Metadata
--------
* pixel size (µm per pixel): OME ``PhysicalSizeX`` (with its unit); ImageJ calibration
  (``unit=micron`` and the resolution tag); a plain TIFF's resolution tag when its unit is
  centimetre (or millimetre / micrometre), never inch (that is screen dpi). Anisotropic pixels
  (X and Y differing by more than 1 %) give no pixel size, with a warning.
* frame time (hours): OME ``Plane DeltaT`` of the frame (with its unit), else
  ``TimeIncrement`` x the frame's T index; ImageJ ``finterval`` (with ``tunit``) x the index.
"""

from __future__ import annotations

import contextvars
import logging
import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from itertools import product
from pathlib import Path

import numpy as np

from phaseseg.io.errors import PhasesegInputError
from phaseseg.io.gray import to_gray_uint8

log = logging.getLogger(__name__)

#: File endings read with the base install.
BASE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
#: File endings read through ``bioio`` (``pip install 'phaseseg[formats]'``); ``.zarr`` is a
#: folder (OME-Zarr).
BIOIO_SUFFIXES = (".czi", ".nd2", ".lif", ".zarr")
#: Endings whose last two parts are both stripped from the image id (``x.ome.tif`` -> ``x``).
COMPOUND_SUFFIXES = (".ome.tiff", ".ome.tif", ".ome.zarr", ".ome.btf")
TIFF_SUFFIXES = (".tif", ".tiff")
FORMATS_HINT = "pip install 'phaseseg[formats]'"

_LENGTH_UM = {
    "µm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0, "micrometre": 1.0,
    "\\u00b5m": 1.0, "nm": 1e-3, "nanometer": 1e-3, "mm": 1e3, "millimeter": 1e3, "cm": 1e4,
    "m": 1e6, "å": 1e-4, "angstrom": 1e-4, "pm": 1e-6,
}  # fmt: skip
_TIME_H = {
    "h": 1.0, "hr": 1.0, "hour": 1.0, "hours": 1.0, "min": 1 / 60, "minute": 1 / 60,
    "minutes": 1 / 60, "s": 1 / 3600, "sec": 1 / 3600, "second": 1 / 3600, "seconds": 1 / 3600,
    "ms": 1 / 3.6e6, "millisecond": 1 / 3.6e6, "µs": 1 / 3.6e9, "us": 1 / 3.6e9,
    "microsecond": 1 / 3.6e9, "d": 24.0, "day": 24.0, "days": 24.0,
}  # fmt: skip
_PHASE_CHANNEL = re.compile(r"phase|\bph\d?\b|bright|trans|\bdic\b|\bbf\b", re.IGNORECASE)
_QUIET = contextvars.ContextVar("phaseseg_microscopy_quiet", default=False)
_ID_LETTER = {"T": "t", "I": "t", "Q": "t", "Z": "z", "scene": "s"}


@dataclass(frozen=True)
class FrameInfo:
    """One 2-D frame of an image file, with what its metadata say about it."""

    path: Path
    image_id: str  # file id for a single image; e.g. "x_t003" for a frame of a stack
    shape: tuple[int, int]  # (height, width)
    index: dict[str, int] = field(default_factory=dict)  # e.g. {"T": 3}; {} for one image
    time_h: float | None = None  # hours since the start of acquisition (metadata)
    pixel_size: float | None = None  # µm per pixel (metadata)

    @property
    def in_stack(self) -> bool:
        """Whether this frame is one of several in its file."""
        return bool(self.index)


def image_id(path: str | os.PathLike) -> str:
    """The id of an image file: its name without the suffix (and without ``.ome``).

    Examples
    --------
    >>> image_id("plate/x.ome.tif"), image_id("a.b.png"), image_id("well.ome.zarr")
    ('x', 'a.b', 'well')
    """
    name = Path(path).name
    for suffix in COMPOUND_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def is_image_path(path: Path) -> bool:
    """Whether ``path`` has an ending phaseseg reads (an OME-Zarr folder counts)."""
    return path.suffix.lower() in BASE_SUFFIXES + BIOIO_SUFFIXES


def _with_file_id(info: FrameInfo, file_id: str | None) -> FrameInfo:
    """``info`` with its id's file part (:func:`image_id`) replaced by ``file_id``."""
    if file_id is None:
        return info
    own = image_id(info.path)
    return replace(info, image_id=file_id + info.image_id[len(own) :])


def frame_infos(path: str | os.PathLike, file_id: str | None = None) -> list[FrameInfo]:
    """The frames of an image file, from its header (no pixel data is read).

    ``file_id`` replaces the file's id in the frames' ids (default :func:`image_id`; e.g. an
    id that keeps the file's folders, :class:`phaseseg.io.ImageFile`).

    Raises
    ------
    PhasesegInputError
        The file does not exist or cannot be read, one line naming it.
    """
    token = _QUIET.set(True)  # warnings about the file come once, when its frames are read
    try:
        with _open(Path(path)) as source:
            return [_with_file_id(info, file_id) for info in source.infos]
    finally:
        _QUIET.reset(token)


def iter_frames(
    path: str | os.PathLike, file_id: str | None = None
) -> Generator[tuple[FrameInfo, np.ndarray], None, None]:
    """Yield ``(info, image)`` for every frame of an image file, reading one frame at a time.

    ``image`` is uint8 ``(H, W)`` (converted like :func:`phaseseg.io.read_image`); ``file_id``
    as :func:`frame_infos`.

    Raises
    ------
    PhasesegInputError
        The file cannot be read (also part-way through a stack), one line naming it.
    """
    path = Path(path)
    with _open(path) as source:
        for k, info in enumerate(source.infos):
            try:
                plane = source.read(k)
            except Exception as e:  # noqa: BLE001 - any decoder failure is a bad file
                where = f" (frame {info.image_id})" if info.in_stack else ""
                raise PhasesegInputError(
                    f"{path}: not a readable image{where} ({type(e).__name__})"
                ) from None
            image = to_gray_uint8(plane, path, warn=k == 0)  # warn once per file
            yield _with_file_id(info, file_id), image


# --------------------------------------------------------------------------- sources


@dataclass
class _Series:
    """One image (scene / position) of a file: its axes and how to read and date a plane."""

    axes: str  # axes of size > 1, e.g. "TCYX" (Y and X always; S = colour samples)
    shape: tuple[int, ...]
    read: Callable[[dict[str, int]], np.ndarray]  # selection of non-YXS axes -> (Y, X[, S])
    pixel_size: float | None = None
    channel_names: list[str] | None = None
    time_h: Callable[[dict[str, int]], float | None] = lambda sel: None


class _Source:
    """An open image file: its frames and a reader of frame ``k``."""

    def __init__(self, path: Path, series: list[_Series], close: Callable[[], None] | None):
        self._close = close
        self.infos: list[FrameInfo] = []
        self._frames: list[tuple[_Series, dict[str, int]]] = []
        fid = image_id(path)
        for s, ser in enumerate(series):
            size = dict(zip(ser.axes, ser.shape, strict=True))
            stacked = [a for a in ser.axes if a not in "YXSC"]
            channel = _pick_channel(size.get("C", 1), ser.channel_names, path, quiet=s > 0)
            for combo in product(*(range(size[a]) for a in stacked)):
                index = dict(zip(stacked, combo, strict=True))
                sel = dict(index) | ({"C": channel} if "C" in size else {})
                public = ({"scene": s} if len(series) > 1 else {}) | index
                parts = [
                    f"{_ID_LETTER.get(a, a.lower())}{i:0{max(3, len(str(n - 1)))}d}"
                    for a, i, n in (
                        [("scene", s, len(series))] * (len(series) > 1)
                        + [(a, index[a], size[a]) for a in stacked]
                    )
                ]
                t_index = next((index[a] for a in "TIQ" if a in index), None)
                self.infos.append(
                    FrameInfo(
                        path,
                        "_".join([fid, *parts]),
                        (size["Y"], size["X"]),
                        public,
                        ser.time_h(sel | {"T": t_index}) if t_index is not None else None,
                        ser.pixel_size,
                    )
                )
                self._frames.append((ser, sel))

    def read(self, k: int) -> np.ndarray:
        ser, sel = self._frames[k]
        return ser.read(sel)

    def __enter__(self) -> _Source:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._close is not None:
            self._close()


def _pick_channel(n: int, names: list[str] | None, path: Path, quiet: bool = False) -> int:
    """The channel to segment: the one named like phase contrast, else the first."""
    if n <= 1:
        return 0
    names = [str(x) for x in names] if names is not None and len(names) == n else None
    pick = next((i for i, x in enumerate(names or []) if _PHASE_CHANNEL.search(x)), None)
    if not quiet and not _QUIET.get():
        named = f" ({', '.join(names)})" if names else ""
        why = "named like phase contrast" if pick is not None else "the first"
        log.warning(
            "%s: %d channels%s; segmenting channel %d, %s",
            path,
            n,
            named,
            pick or 0,
            why,
        )
    return pick or 0


def _open(path: Path) -> _Source:
    if not path.exists():
        raise PhasesegInputError(f"{path}: no such file")
    name = path.name.lower()
    try:
        if path.suffix.lower() in BIOIO_SUFFIXES:
            return _open_bioio(path)
        if path.suffix.lower() in TIFF_SUFFIXES:
            if name.endswith((".ome.tif", ".ome.tiff")) and _bioio_available():
                try:
                    return _open_bioio(path)
                except Exception as e:  # noqa: BLE001 - tifffile reads more OME-TIFFs
                    log.debug("%s: bioio failed (%s); reading it with tifffile", path, e)
            return _open_tiff(path)
        if not path.is_file():
            raise PhasesegInputError(f"{path}: not an image file")
        return _open_pil(path)
    except PhasesegInputError:
        raise
    except Exception as e:  # noqa: BLE001 - any decoder failure is a bad file for the user
        if type(e).__name__ == "DecompressionBombError":  # PIL: over ~179 Mpx
            raise PhasesegInputError(
                f"{path}: too large to read whole (PIL refuses over 179 Mpx); "
                f"phaseseg predict {path} --labels-dir DIR segments it block by block"
            ) from None
        raise PhasesegInputError(f"{path}: not a readable image ({type(e).__name__})") from None


def _open_pil(path: Path) -> _Source:
    from PIL import Image

    with Image.open(path) as im:  # the header only; pixels are decoded by read()
        shape = (im.height, im.width)

    def read(sel: dict[str, int]) -> np.ndarray:
        with Image.open(path) as im:
            if im.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
                im = im.convert("RGBA" if im.mode == "PA" else "RGB")
            return np.asarray(im)

    return _Source(path, [_Series("YX", shape, read)], None)


def _samples_last(plane: np.ndarray, axes: str) -> np.ndarray:
    """Move a colour-sample axis S to the end (planar RGB pages)."""
    if "S" in axes and axes.index("S") != plane.ndim - 1:
        plane = np.moveaxis(plane, axes.index("S"), -1)
    return plane


# --------------------------------------------------------------------------- TIFF


def _open_tiff(path: Path) -> _Source:
    import tifffile

    tif = tifffile.TiffFile(path)
    try:
        series = _tiff_series(tif, path)
    except Exception:
        tif.close()
        raise
    return _Source(path, series, tif.close)


def _tiff_series(tif, path: Path) -> list[_Series]:
    ome = _parse_ome_xml(tif.ome_metadata) if tif.is_ome and tif.ome_metadata else None
    if ome is not None and len(ome) == len(tif.series):
        return [_tiff_one_series(ser, meta) for ser, meta in zip(tif.series, ome, strict=True)]
    meta = _imagej_meta(tif, path)
    first = tif.series[0]
    same = [s for s in tif.series if s.shape == first.shape and s.dtype == first.dtype]
    if len(same) > 1 and all(a in "YXS" for a in first.axes):
        # pages written one by one (e.g. by tifffile without a shape): a sequence of frames
        return [
            _Series(
                "I" + first.axes,
                (len(same), *first.shape),
                lambda sel: _samples_last(same[sel["I"]].asarray(), first.axes),
                meta.pixel_size,
                None,
                meta.time_h,
            )
        ]
    if len(tif.series) > 1:
        log.debug("%s: %d image series; reading the first", path, len(tif.series))
    return [_tiff_one_series(first, meta)]


def _tiff_one_series(ser, meta: _Meta) -> _Series:
    """A tifffile series, read one page (plane) at a time where it has one page per plane."""
    axes, shape = ser.axes, tuple(ser.shape)
    plane_axes = "".join(a for a in axes if a in "YXS")
    stack_axes = [a for a in axes if a not in "YXS"]
    stack_shape = [n for a, n in zip(axes, shape, strict=True) if a not in "YXS"]
    flat = len(set(stack_axes)) < len(stack_axes)  # e.g. "QQYX": unnamed axes, one page axis
    if flat:
        stack_axes, stack_shape = ["I"], [int(np.prod(stack_shape))]
        axes = "I" + plane_axes
        shape = (
            stack_shape[0],
            *(n for a, n in zip(ser.axes, ser.shape, strict=True) if a in "YXS"),
        )
    pages = list(ser.pages) if len(ser.pages) == int(np.prod(stack_shape)) else None
    cache: list[np.ndarray] = []

    def read(sel: dict[str, int]) -> np.ndarray:
        if not stack_axes:
            return _samples_last(ser.asarray(), axes)
        where = tuple(sel[a] for a in stack_axes)
        if pages is not None:
            page = pages[int(np.ravel_multi_index(where, stack_shape))]
            if page is not None:
                plane = page.asarray()
                return _samples_last(plane, _page_axes(page, plane))
        if not cache:  # a contiguous ImageJ stack without an IFD per plane: read it once
            cache.append(ser.asarray().reshape(shape) if flat else ser.asarray())
        return _samples_last(cache[0][where], plane_axes)

    return _Series(axes, shape, read, meta.pixel_size, meta.channel_names, meta.time_h)


def _page_axes(page, plane: np.ndarray) -> str:
    axes = "".join(a for a in page.axes if a in "YXS")
    return axes if len(axes) == plane.ndim else "YXS"[: plane.ndim]


@dataclass
class _Meta:
    pixel_size: float | None = None
    channel_names: list[str] | None = None
    time_h: Callable[[dict[str, int]], float | None] = lambda sel: None


def _to_um(value, unit: str | None, default: str = "µm") -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    factor = _LENGTH_UM.get((unit or default).strip().lower())
    if factor is None or not math.isfinite(v) or v <= 0:
        return None
    return v * factor


def _to_hours(value, unit: str | None, default: str = "s") -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    factor = _TIME_H.get((unit or default).strip().lower())
    return v * factor if factor is not None and math.isfinite(v) else None


def _square(px: float | None, py: float | None, path: Path) -> float | None:
    """One pixel size from X and Y (None, with a warning, for anisotropic pixels)."""
    if px is None:
        return None
    if py is not None and abs(px - py) > 0.01 * px:
        if not _QUIET.get():
            log.warning(
                "%s: pixels are %.4g x %.4g µm (not square); no pixel size taken "
                "(give --pixel-size)",
                path,
                px,
                py,
            )
        return None
    return px


def _parse_ome_xml(xml: str) -> list[_Meta]:
    """Pixel size, channel names and plane times of every Image of an OME-XML document."""
    root = ET.fromstring(xml)
    ns = {"ome": root.tag[1:].split("}")[0]} if root.tag.startswith("{") else {}
    q = "ome:" if ns else ""
    metas = []
    for image in root.findall(f"{q}Image", ns):
        pixels = image.find(f"{q}Pixels", ns)
        if pixels is None:
            continue
        a = pixels.attrib
        ps = _square(
            _to_um(a.get("PhysicalSizeX"), a.get("PhysicalSizeXUnit")),
            _to_um(a.get("PhysicalSizeY"), a.get("PhysicalSizeYUnit")),
            Path(image.get("Name", "OME image")),
        )
        names = [c.get("Name", "") for c in pixels.findall(f"{q}Channel", ns)]
        planes = {}
        for p in pixels.findall(f"{q}Plane", ns):
            key = tuple(int(p.get(k, 0)) for k in ("TheT", "TheZ", "TheC"))
            hours = _to_hours(p.get("DeltaT"), p.get("DeltaTUnit"))
            if hours is not None:
                planes[key] = hours
        increment = _to_hours(a.get("TimeIncrement"), a.get("TimeIncrementUnit"))
        metas.append(_Meta(ps, names or None, _plane_time(planes, increment)))
    return metas


def _plane_time(planes: dict[tuple, float], increment: float | None):
    def time_h(sel: dict[str, int]) -> float | None:
        t = sel.get("T", 0)
        key = (t, sel.get("Z", 0), sel.get("C", 0))
        if key in planes:
            return planes[key]
        same_t = [v for (tt, _, _), v in sorted(planes.items()) if tt == t]
        if same_t:
            return same_t[0]
        return t * increment if increment is not None else None

    return time_h


def _imagej_meta(tif, path: Path) -> _Meta:
    """Pixel size and frame interval of an ImageJ TIFF, or the resolution tags of a plain one."""
    ij = tif.imagej_metadata or {}
    page = tif.pages.first
    pixel_size = None
    xres, yres = page.tags.get("XResolution"), page.tags.get("YResolution")

    def per_unit(tag) -> float | None:
        if tag is None:
            return None
        num, den = tag.value if isinstance(tag.value, tuple) else (tag.value, 1)
        return num / den if den and num else None

    x, y = per_unit(xres), per_unit(yres)
    if ij and x:
        unit = str(ij.get("unit", "")).replace("\\u00B5", "µ")
        if unit.lower() in _LENGTH_UM:
            pixel_size = _square(_to_um(1 / x, unit), _to_um(1 / y, unit) if y else None, path)
    elif x:
        resunit = int(page.tags["ResolutionUnit"].value) if "ResolutionUnit" in page.tags else 2
        um_per_unit = {3: 1e4, 4: 1e3, 5: 1.0}.get(resunit)  # cm, mm, µm; never inch
        if um_per_unit is not None:
            size = _square(um_per_unit / x, um_per_unit / y if y else None, path)
            pixel_size = size if size is not None and 0.001 <= size <= 100 else None
    time_h = lambda sel: None  # noqa: E731
    interval = _to_hours(ij.get("finterval"), str(ij.get("tunit", "s")))
    if interval is not None and interval > 0:
        time_h = lambda sel: sel.get("T", 0) * interval  # noqa: E731
    return _Meta(pixel_size, None, time_h)


# --------------------------------------------------------------------------- bioio


def _bioio_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("bioio") is not None


def _open_bioio(path: Path) -> _Source:
    if not _bioio_available():
        kind = "OME-Zarr" if path.suffix.lower() == ".zarr" else path.suffix[1:].upper()
        raise PhasesegInputError(f"{path}: reading {kind} files needs bioio: {FORMATS_HINT}")
    from bioio import BioImage

    try:
        img = BioImage(path)
        scenes = list(img.scenes)
    except Exception as e:  # noqa: BLE001 - bioio raises many types for unsupported files
        msg = str(e).splitlines()[0][:160] if str(e) else ""
        raise PhasesegInputError(
            f"{path}: not a readable image ({type(e).__name__}{': ' + msg if msg else ''}); "
            f"the bioio plugin for it comes with {FORMATS_HINT}"
        ) from None
    series = []
    for s, scene in enumerate(scenes):
        img.set_scene(scene)
        order = img.dims.order
        sizes = dict(zip(order, img.dims.shape, strict=True))
        axes = "".join(a for a in order if a in "YX" or (a in "TCZS" and sizes[a] > 1))
        shape = tuple(sizes[a] for a in axes)
        meta = _bioio_meta(img, s, path)
        plane_axes = "YXS" if "S" in order else "YX"

        def read(sel, scene=scene, order=order, plane_axes=plane_axes):
            if img.current_scene != scene:
                img.set_scene(scene)
            where = {a: sel.get(a, 0) for a in "TCZ" if a in order}
            return np.asarray(img.get_image_dask_data(plane_axes, **where).compute())

        series.append(_Series(axes, shape, read, meta.pixel_size, meta.channel_names, meta.time_h))
    return _Source(path, series, None)


def _bioio_meta(img, scene_index: int, path: Path) -> _Meta:
    """Pixel size, channel names and plane times from bioio (its OME metadata where present)."""
    try:
        names = [str(c) for c in img.channel_names]
    except Exception:  # noqa: BLE001 - optional metadata
        names = None
    try:
        ome = img.ome_metadata
        pixels = ome.images[min(scene_index, len(ome.images) - 1)].pixels
    except Exception:  # noqa: BLE001 - readers without OME metadata
        pixels = None
    if pixels is not None:

        def unit(u) -> str | None:
            return getattr(u, "value", u)

        ps = _square(
            _to_um(pixels.physical_size_x, unit(pixels.physical_size_x_unit)),
            _to_um(pixels.physical_size_y, unit(pixels.physical_size_y_unit)),
            path,
        )
        planes = {}
        for p in pixels.planes:
            hours = _to_hours(p.delta_t, unit(p.delta_t_unit))
            if hours is not None:
                planes[(p.the_t, p.the_z, p.the_c)] = hours
        increment = _to_hours(pixels.time_increment, unit(pixels.time_increment_unit))
        if not planes and increment is None:  # OME-Zarr: the time axis' scale and unit
            increment = _ngff_time_interval(img)
        return _Meta(ps, names, _plane_time(planes, increment))
    try:
        sizes = img.physical_pixel_sizes  # µm by bioio's convention
        ps = _square(_to_um(sizes.X, "µm"), _to_um(sizes.Y, "µm"), path)
    except Exception:  # noqa: BLE001 - optional metadata
        ps = None
    return _Meta(ps, names)


def _ngff_time_interval(img) -> float | None:
    """Hours between time points of an OME-Zarr image: bioio's ``time_interval`` in the unit
    of the NGFF time axis (None without one)."""
    try:
        attrs = getattr(img.metadata, "attributes", img.metadata)
        attrs = attrs.get("ome", attrs)
        axes = attrs["multiscales"][0]["axes"]
        unit = next(a.get("unit") for a in axes if isinstance(a, dict) and a.get("type") == "time")
        return _to_hours(img.time_interval, unit) if unit else None
    except Exception:  # noqa: BLE001 - optional metadata, absent in other formats
        return None
