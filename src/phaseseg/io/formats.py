"""Other annotation formats: COCO instance JSON (LIVECell's) and label images (TIFF/PNG).

COCO conventions differ from Kaggle's: an RLE counts alternating runs of 0s and 1s (starting
with 0s) over the pixels numbered **column by column** (Fortran order); ``counts`` is either a
list of ints ("uncompressed") or pycocotools' compressed string. Polygons are ``[x1, y1, x2,
y2, ...]`` in continuous coordinates where pixel ``(row, col)`` covers ``[col, col + 1) x [row,
row + 1)``; a pixel belongs to the polygon when its centre does.

LIVECell stores ``annotations`` as a dict keyed by annotation id rather than a list; both
layouts are read. pycocotools is not needed.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from phaseseg.io import (
    TIFF_SUFFIXES,
    PhasesegInputError,
    atomic_path,
    check_labels,
    label_runs,
    run_indices,
)

log = logging.getLogger(__name__)

LABEL_SUFFIXES = (".tif", ".tiff", ".png")

#: TIFF ``Software`` tag of the label TIFFs phaseseg writes (how its napari reader knows them).
LABELS_SOFTWARE = "phaseseg"

# --------------------------------------------------------------------------- COCO RLE


def compress_coco_counts(counts: Iterable[int]) -> str:
    """Encode COCO RLE counts as pycocotools' compressed string.

    A LEB128-like code with 5 bits per character (offset by 48, ``0x20`` = more follows);
    counts after the third are stored as differences to the count two places before.

    Examples
    --------
    >>> compress_coco_counts([0, 10, 2, 3])
    '0:2I'
    """
    counts = [int(c) for c in counts]
    out = []
    for i, x in enumerate(counts):
        if i > 2:
            x -= counts[i - 2]
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def decompress_coco_counts(text: str) -> np.ndarray:
    """Decode pycocotools' compressed RLE string into counts (int64, vectorised).

    Raises :class:`PhasesegInputError` on characters outside the code's range or a string
    that ends in the middle of a value.
    """
    try:
        b = np.frombuffer(text.encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
    except UnicodeEncodeError:
        raise PhasesegInputError("COCO RLE string holds non-ASCII characters") from None
    if len(b) == 0:
        return np.zeros(0, dtype=np.int64)
    if b.min() < 0 or b.max() > 63:
        raise PhasesegInputError("COCO RLE string holds characters outside '0'..'o'")
    more = (b & 0x20) != 0
    if more[-1]:
        raise PhasesegInputError("COCO RLE string ends in the middle of a value")
    last = np.flatnonzero(~more)  # last character of each value
    first = np.concatenate([[0], last[:-1] + 1])
    k = np.arange(len(b)) - np.repeat(first, last - first + 1)  # 5-bit digit position
    if k.max() > 11:
        raise PhasesegInputError("COCO RLE string holds a value too large")
    x = np.add.reduceat((b & 0x1F) << (5 * k), first)
    negative = (b[last] & 0x10) != 0
    x[negative] -= np.left_shift(1, 5 * (k[last][negative] + 1))  # sign-extend
    counts = x.copy()  # counts[m] = x[m] + counts[m - 2] for m > 2
    counts[1::2] = np.cumsum(x[1::2])
    counts[2::2] = np.cumsum(x[2::2])
    return counts


def _coco_rle_runs(rle: Any, shape: tuple[int, int] | None) -> tuple[int, int, np.ndarray]:
    """``(h, w, counts)`` of a COCO RLE, checked (see :func:`coco_rle_decode`)."""
    try:
        h, w = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError):
        raise PhasesegInputError("COCO RLE needs 'size': [h, w] and 'counts'") from None
    if shape is not None and (h, w) != tuple(shape):
        raise PhasesegInputError(f"COCO RLE size {h}x{w} differs from the image's")
    if isinstance(counts, (str, bytes)):
        counts = decompress_coco_counts(counts.decode() if isinstance(counts, bytes) else counts)
    else:
        try:
            counts = np.asarray(counts, dtype=np.int64).ravel()
        except (TypeError, ValueError):
            raise PhasesegInputError("COCO RLE counts must be integers or a string") from None
    if counts.size and counts.min() < 0:
        raise PhasesegInputError("COCO RLE has a negative count")
    if int(counts.sum()) != h * w:
        raise PhasesegInputError(f"COCO RLE counts add up to {int(counts.sum())}, not {h}x{w}")
    return h, w, counts


def coco_rle_decode(rle: dict[str, Any], shape: tuple[int, int] | None = None) -> np.ndarray:
    """Decode a COCO RLE (``{"size": [h, w], "counts": str | list}``) into a bool (H, W) mask.

    ``shape``, when given, must equal ``size``. Raises :class:`PhasesegInputError` when the
    counts are negative or do not add up to ``h * w``.
    """
    h, w, counts = _coco_rle_runs(rle, shape)
    values = np.arange(len(counts)) % 2 == 1  # runs alternate 0, 1, 0, ...
    return np.repeat(values, counts).reshape((h, w), order="F")


def coco_rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """Encode a 2-D mask as a compressed COCO RLE ``{"size": [h, w], "counts": str}``."""
    mask = np.asarray(mask, dtype=bool)
    return {"size": list(mask.shape), "counts": compress_coco_counts(_coco_counts(mask))}


def _coco_counts(mask: np.ndarray) -> np.ndarray:
    ids, starts, lengths = label_runs(mask.astype(np.uint8), order="F")
    return _runs_to_counts(starts, lengths, mask.size)


def _runs_to_counts(starts: np.ndarray, lengths: np.ndarray, n_pixels: int) -> np.ndarray:
    """COCO counts (0s, 1s, 0s, ...) from the sorted runs of 1s of one mask."""
    counts = np.empty(2 * len(starts) + 1, dtype=np.int64)
    ends = starts + lengths
    counts[0:-1:2] = starts - np.concatenate([[0], ends[:-1]])  # gaps (the first may be 0)
    counts[1::2] = lengths
    counts[-1] = n_pixels - (ends[-1] if len(ends) else 0)
    return counts if counts[-1] or len(counts) == 1 else counts[:-1]


def _segmentation_pixels(seg: Any, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, cols)`` of the pixels of a COCO segmentation (polygons or RLE)."""
    from skimage.draw import polygon as draw_polygon

    if isinstance(seg, dict):
        h, _, counts = _coco_rle_runs(seg, shape)
        ends = np.cumsum(counts)
        flat = run_indices(ends[0::2][: len(counts) // 2], counts[1::2])  # runs of 1s
        return flat % h, flat // h  # column-major
    if not isinstance(seg, list):
        raise PhasesegInputError(f"segmentation must be polygons or RLE, got {type(seg).__name__}")
    if seg and not isinstance(seg[0], list):
        seg = [seg]  # a single flat polygon
    rows, cols = [np.zeros(0, np.intp)], [np.zeros(0, np.intp)]
    for poly in seg:
        try:
            xy = np.asarray(poly, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise PhasesegInputError("polygon coordinates must be numbers") from None
        if len(xy) % 2:
            raise PhasesegInputError("polygon has an odd number of coordinates")
        if len(xy) < 6:
            continue  # fewer than 3 points: no area
        rr, cc = draw_polygon(xy[1::2] - 0.5, xy[0::2] - 0.5, shape)  # pixel centres inside
        rows.append(rr)
        cols.append(cc)
    return np.concatenate(rows), np.concatenate(cols)


# --------------------------------------------------------------------------- COCO files


def iter_coco(path: str | os.PathLike) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(file_name, labels)`` for each image of a COCO instance JSON file.

    Parameters
    ----------
    path : path-like
        COCO JSON (``images``, ``annotations`` as a list or LIVECell's dict); segmentations
        as polygons, uncompressed or compressed RLE.

    Yields
    ------
    file_name : str
        The image's ``file_name``.
    labels : (H, W) int32 array
        Annotation ``i`` of the image (file order) gets label ``i + 1``; where annotations
        overlap, the earlier one keeps the pixel. Images without annotations are all 0.

    Raises :class:`PhasesegInputError` naming the file (and annotation id) on any malformed
    entry. Label images are built one at a time, so a large file can be streamed.
    """
    path = Path(path)
    data = _load_json(path)
    images, by_image = _coco_index(data, path)
    for image in images:
        shape = (image["height"], image["width"])
        labels = np.zeros(shape, dtype=np.int32)
        anns = by_image.get(image["id"], [])
        for i in range(len(anns) - 1, -1, -1):  # paint backwards so earlier annotations win
            ann = anns[i]
            try:
                rows, cols = _segmentation_pixels(ann.get("segmentation"), shape)
            except PhasesegInputError as e:
                raise PhasesegInputError(f"{path}, annotation {ann.get('id')}: {e}") from None
            labels[rows, cols] = i + 1
        yield image["file_name"], labels


def read_coco(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a COCO instance JSON file into ``{file_name: labels}`` (see :func:`iter_coco`)."""
    return dict(iter_coco(path))


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise PhasesegInputError(f"{path}: no such file")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise PhasesegInputError(
            f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})"
        ) from None
    except UnicodeDecodeError:
        raise PhasesegInputError(f"{path}: not a UTF-8 text file") from None


def _coco_index(data: Any, path: Path) -> tuple[list[dict], dict[Any, list[dict]]]:
    """Checked ``images`` and the annotations grouped by image id (file order kept)."""
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise PhasesegInputError(f"{path}: not a COCO file (no 'images' list)")
    images = []
    for k, image in enumerate(data["images"]):
        try:
            image = {
                "id": image["id"],
                "file_name": str(image["file_name"]),
                "height": int(image["height"]),
                "width": int(image["width"]),
            }
        except (KeyError, TypeError, ValueError):
            raise PhasesegInputError(
                f"{path}: image entry {k} needs id, file_name, height and width"
            ) from None
        images.append(image)
    anns = data.get("annotations", [])
    if isinstance(anns, dict):  # LIVECell: {"<annotation id>": {...}, ...}
        anns = list(anns.values())
    if not isinstance(anns, list):
        raise PhasesegInputError(f"{path}: 'annotations' must be a list or a dict")
    known = {image["id"] for image in images}
    by_image: dict[Any, list[dict]] = {}
    for ann in anns:
        if not isinstance(ann, dict) or "image_id" not in ann:
            raise PhasesegInputError(f"{path}: an annotation has no image_id")
        if ann["image_id"] not in known:
            raise PhasesegInputError(
                f"{path}, annotation {ann.get('id')}: unknown image_id {ann['image_id']!r}"
            )
        by_image.setdefault(ann["image_id"], []).append(ann)
    return images, by_image


def _mask_to_polygons(mask: np.ndarray, tolerance: float) -> list[list[float]]:
    """Outer contours of a mask as COCO polygons (holes are not representable; dropped)."""
    from skimage.measure import approximate_polygon, find_contours

    padded = np.pad(mask, 1).astype(np.float32)
    polygons = []
    for contour in find_contours(padded, 0.5, positive_orientation="high"):
        rows, cols = contour[:-1, 0], contour[:-1, 1]  # closed: last point repeats the first
        if np.sum(cols * np.roll(rows, -1) - np.roll(cols, -1) * rows) > 0:
            continue  # clockwise in (x, y): a hole
        if tolerance > 0:
            rc = approximate_polygon(contour, tolerance)[:-1]
            rows, cols = rc[:, 0], rc[:, 1]
        if len(rows) < 3:
            continue
        xy = np.empty(2 * len(rows))
        xy[0::2], xy[1::2] = cols - 0.5, rows - 0.5  # padded index -> COCO coordinates
        polygons.append(np.round(xy, 2).tolist())
    return polygons


def write_coco(
    path: str | os.PathLike,
    items: Iterable[tuple[str, np.ndarray]],
    segmentation: str = "rle",
    tolerance: float = 0.0,
    category: str = "cell",
) -> Path:
    """Write label images as a COCO instance JSON file (atomically).

    Parameters
    ----------
    path : path-like
        Output ``.json``.
    items : iterable of (file_name, labels)
        ``labels`` an int (H, W) label image; each label becomes one annotation.
    segmentation : {"rle", "polygon"}
        ``"rle"``: compressed COCO RLE, exact. ``"polygon"``: outer contours through pixel
        edge midpoints (holes are filled; otherwise exact when read back).
    tolerance : float
        For polygons, simplify with ``skimage.measure.approximate_polygon`` (pixels; 0 = off).
    category : str
        Name of the single category (id 1).

    Returns
    -------
    Path
        ``path``.
    """
    if segmentation not in ("rle", "polygon"):
        raise ValueError(f"segmentation must be 'rle' or 'polygon', got {segmentation!r}")
    images: list[dict] = []
    annotations: list[dict] = []
    for image_id, (file_name, labels) in enumerate(items, start=1):
        labels = check_labels(labels, file_name)
        h, w = labels.shape
        images.append({"id": image_id, "file_name": str(file_name), "height": h, "width": w})
        if segmentation == "rle":  # all instances' runs in one pass
            ids, starts, lengths = label_runs(labels, order="F")
            first = np.flatnonzero(np.diff(ids, prepend=-1))  # first run of each label
            last = np.append(first[1:], len(ids)) if len(ids) else first
            runs = {
                lab: (starts[a:b], lengths[a:b])
                for lab, a, b in zip(ids[first].tolist(), first, last, strict=True)
            }
        for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
            if sl is None:
                continue
            crop = labels[sl] == lab
            y, x = sl[0].start, sl[1].start
            if segmentation == "rle":
                counts = _runs_to_counts(*runs[lab], h * w)
                seg: Any = {"size": [h, w], "counts": compress_coco_counts(counts)}
            else:
                seg = [
                    (np.asarray(p) + np.tile([x, y], len(p) // 2)).round(2).tolist()
                    for p in _mask_to_polygons(crop, tolerance)
                ]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "segmentation": seg,
                    "area": int(crop.sum()),
                    "bbox": [x, y, crop.shape[1], crop.shape[0]],
                    "iscrowd": 0,
                }
            )
    data = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": category}],
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
    log.info("wrote %s: %d images, %d annotations", path, len(images), len(annotations))
    return path


# --------------------------------------------------------------------------- label images


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """Read a label image (TIFF or PNG; 8/16/32-bit integers) as an int32 ``(H, W)`` array.

    Singleton leading axes (``(1, H, W)``) are dropped and palette PNGs read as their indices.
    Float images holding whole numbers are accepted with a warning. Raises
    :class:`PhasesegInputError` naming the file when it is missing or unreadable, not 2-D,
    in colour, binary, fractional or negative.
    """
    path = Path(path)
    if not path.is_file():
        raise PhasesegInputError(f"{path}: no such file")
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            import tifffile

            labels = tifffile.imread(path)
        else:
            from PIL import Image

            with Image.open(path) as im:
                if im.mode in ("RGB", "RGBA", "LA", "CMYK", "YCbCr"):
                    raise PhasesegInputError(
                        f"{path}: {im.mode} colour image, not a label image (one int per pixel)"
                    )
                labels = np.asarray(im)
    except PhasesegInputError:
        raise
    except Exception as e:  # noqa: BLE001 - any decoder failure is a bad file for the user
        raise PhasesegInputError(f"{path}: not a readable image ({type(e).__name__})") from None
    while labels.ndim > 2 and labels.shape[0] == 1:
        labels = labels[0]
    if labels.ndim != 2:
        raise PhasesegInputError(f"{path}: expected a 2-D label image, got shape {labels.shape}")
    if labels.dtype == bool:
        raise PhasesegInputError(
            f"{path}: binary mask, not a label image (see skimage.measure.label)"
        )
    if np.issubdtype(labels.dtype, np.floating):
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise PhasesegInputError(f"{path}: fractional values, not a label image")
        log.warning("%s: %s label image converted to integers", path, labels.dtype)
    elif not np.issubdtype(labels.dtype, np.integer):
        raise PhasesegInputError(f"{path}: {labels.dtype} pixels, not a label image")
    if labels.size and labels.min() < 0:
        raise PhasesegInputError(f"{path}: negative labels")
    if labels.size and labels.max() > np.iinfo(np.int32).max:
        raise PhasesegInputError(f"{path}: labels beyond 2**31 - 1")
    return labels.astype(np.int32)


def write_labels(
    path: str | os.PathLike,
    labels: np.ndarray,
    relabel: bool = False,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write a label image atomically, readable by napari, Fiji and Cellpose.

    Parameters
    ----------
    path : path-like
        ``.tif``/``.tiff`` (deflate-compressed; uint16 when the largest label is below 65536,
        else uint32; the ``Software`` tag says ``phaseseg``, see :func:`is_phaseseg_labels`)
        or ``.png`` (16-bit; labels must fit).
    labels : (H, W) int array
        0 = background.
    relabel : bool
        Renumber the labels 1..N first (``skimage.segmentation.relabel_sequential``).
    metadata : dict of str, optional
        Stored in a TIFF's JSON description (:func:`read_label_metadata`), e.g. the cell type
        whose thresholds made the labels.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in LABEL_SUFFIXES:
        raise PhasesegInputError(f"{path}: label images are written as .tif or .png")
    labels = check_labels(labels, path)
    if relabel:
        from skimage.segmentation import relabel_sequential

        labels = relabel_sequential(labels)[0]
    top = int(labels.max()) if labels.size else 0
    dtype = np.uint16 if top < 2**16 else np.uint32
    if suffix == ".png" and dtype != np.uint16:
        raise PhasesegInputError(f"{path}: label {top} does not fit a 16-bit PNG; use .tif")
    with atomic_path(path) as tmp:
        if suffix == ".png":
            from PIL import Image

            Image.fromarray(labels.astype(np.uint16)).save(tmp, format="PNG")
        else:
            import tifffile

            tifffile.imwrite(
                tmp,
                labels.astype(dtype),
                compression="zlib",
                photometric="minisblack",
                software=LABELS_SOFTWARE,
                metadata=metadata or {},
            )
    return path


def is_phaseseg_labels(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a label TIFF written by :func:`write_labels` (its ``Software`` tag).

    Any other file, unreadable or missing ones included, gives False; nothing is raised.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> labels = np.zeros((8, 8), np.int32); labels[2:5, 2:5] = 1
    >>> is_phaseseg_labels(write_labels(folder / "a.tif", labels))
    True
    >>> is_phaseseg_labels(folder / "missing.tif")
    False
    """
    path = Path(path)
    if path.suffix.lower() not in TIFF_SUFFIXES or not path.is_file():
        return False
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            software = tif.pages.first.software
    except Exception:  # noqa: BLE001 - not a TIFF phaseseg can read: not ours
        return False
    return isinstance(software, str) and software.split(" ")[0] == LABELS_SOFTWARE


def read_label_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``metadata`` that :func:`write_labels` stored in a label TIFF ({} if none)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            found = tif.shaped_metadata[0] if tif.shaped_metadata else {}
    except Exception:  # noqa: BLE001 - not one of ours: no metadata
        return {}
    return {str(k): str(v) for k, v in found.items() if k != "shape" and isinstance(v, str)}
