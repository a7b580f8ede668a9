"""Reading and writing images, Kaggle run-length encodings and the competition's CSV files.

Conventions (the Sartorius competition's):

* an RLE is a string of space-separated ``start length`` pairs; starts are 1-indexed and count
  pixels row by row (row-major, C order) over an image of shape ``(height, width)``;
* ``labels`` is an int32 ``(H, W)`` array, 0 = background, 1..N = cells;
* ``masks`` is a bool ``(N, H, W)`` array.

User mistakes (missing file, corrupt image, malformed row) raise :class:`PhasesegInputError` with
one line that names the file (and row) and what is wrong; the CLI prints it and exits non-zero.
COCO JSON and label images (TIFF/PNG) live in :mod:`phaseseg.formats`; writing and validating
``submission.csv`` in :mod:`phaseseg.submission`.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

IMAGE_SHAPE = (520, 704)  # (height, width) of the competition's images
CELL_TYPES = ("astro", "cort", "shsy5y")
TRAIN_COLUMNS = ("id", "annotation", "width", "height", "cell_type")
TRAIN_EXTRA_COLUMNS = ("plate_time", "sample_date", "sample_id", "elapsed_timedelta")
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
TIFF_SUFFIXES = (".tif", ".tiff")


class PhasesegInputError(ValueError):
    """A problem with the user's input, reported as one line without a traceback."""


# --------------------------------------------------------------------------- RLE


def rle_encode(mask: np.ndarray) -> str:
    """Encode a 2-D mask as a Kaggle run-length string.

    Parameters
    ----------
    mask : (H, W) array
        Non-zero pixels belong to the object.

    Returns
    -------
    str
        Space-separated ``start length`` pairs, starts 1-indexed in row-major order;
        ``""`` for an empty mask.

    Examples
    --------
    >>> rle_encode(np.array([[0, 1, 1], [1, 0, 0]]))
    '2 3'
    """
    flat = np.asarray(mask).astype(bool, copy=False).ravel(order="C")
    padded = np.concatenate([[False], flat, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    starts, ends = edges[::2], edges[1::2]
    return _format_runs(starts, ends - starts)


def _format_runs(starts: np.ndarray, lengths: np.ndarray) -> str:
    """``"start length ..."`` from 0-indexed ``starts`` and ``lengths``."""
    runs = np.empty(2 * len(starts), dtype=np.int64)
    runs[0::2] = starts + 1
    runs[1::2] = lengths
    return " ".join(map(str, runs.tolist()))


_INTS = re.compile(r"\s*\d+(?:\s+\d+)*\s*", re.ASCII)


def _parse_ints(text: str) -> np.ndarray:
    """Whitespace-separated integers as int64; :class:`PhasesegInputError` naming a bad token.

    Values beyond int64 saturate (they are out of any image anyway).
    """
    if _INTS.fullmatch(text):  # plain digits: numpy's fast C parser is exact on these
        return np.fromstring(text, dtype=np.int64, sep=" ")
    values = []
    for token in text.split():
        try:
            values.append(min(max(int(token), -(2**63)), 2**63 - 1))
        except ValueError:
            raise PhasesegInputError(f"RLE holds a non-integer value {token!r}") from None
    return np.array(values, dtype=np.int64)


def rle_runs(rle: str, shape: tuple[int, int] = IMAGE_SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """Parse and check an RLE string; return 0-indexed ``starts`` and ``lengths`` (int64).

    ``None``, NaN and ``""`` mean an empty mask. Raises :class:`PhasesegInputError` (without a
    file name; callers add it) when the string is not pairs of positive integers, runs are
    unsorted or overlapping, or pixels fall outside ``shape``.
    """
    if not isinstance(rle, str):
        if rle is None or (isinstance(rle, float) and np.isnan(rle)):
            rle = ""
        else:
            raise PhasesegInputError(f"RLE must be a string, got {type(rle).__name__}")
    values = _parse_ints(rle)
    if len(values) % 2:
        raise PhasesegInputError(f"RLE has an odd number of values ({len(values)})")
    starts, lengths = values[0::2] - 1, values[1::2]
    if len(starts) == 0:
        return starts, lengths
    if starts.min() < 0:
        raise PhasesegInputError("RLE start below 1 (starts are 1-indexed)")
    if lengths.min() <= 0:
        raise PhasesegInputError("RLE run length must be positive")
    n_pixels = shape[0] * shape[1]
    if starts.max() >= n_pixels or lengths.max() > n_pixels:  # also guards int64 overflow below
        raise PhasesegInputError(
            f"RLE reaches beyond the {shape[0]}x{shape[1]} image ({n_pixels} pixels)"
        )
    ends = starts + lengths
    if np.any(starts[1:] < ends[:-1]):
        raise PhasesegInputError("RLE runs are unsorted or overlap (duplicated pixels)")
    if ends[-1] > n_pixels:
        raise PhasesegInputError(
            f"RLE reaches pixel {int(ends[-1])}, beyond the {shape[0]}x{shape[1]} image "
            f"({n_pixels} pixels)"
        )
    return starts, lengths


def run_indices(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Flat pixel indices covered by runs (vectorised ``np.concatenate(aranges)``)."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return offsets + np.arange(total, dtype=np.int64)


def rle_decode(rle: str, shape: tuple[int, int] = IMAGE_SHAPE) -> np.ndarray:
    """Decode a Kaggle run-length string into a bool ``(H, W)`` mask."""
    starts, lengths = rle_runs(rle, shape)
    flat = np.zeros(shape[0] * shape[1], dtype=bool)
    flat[run_indices(starts, lengths)] = True
    return flat.reshape(shape)


def _rows_runs(
    rles: list[str], shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of many RLEs at once: 0-indexed ``starts``, ``lengths`` and ``row`` (int64).

    Checked like :func:`rle_runs` (whose message is raised for the first bad string), but with
    one vectorised pass over all strings.
    """
    n_pixels = shape[0] * shape[1]
    try:
        values = [_parse_ints(rle) for rle in rles]
    except (PhasesegInputError, TypeError):  # non-integer token, None or NaN: slow path
        values = None
    if values is not None and values:
        counts = np.array([len(v) for v in values])
        flat = np.concatenate(values)
        starts, lengths = flat[0::2] - 1, flat[1::2]
        row = np.repeat(np.arange(len(values)), counts // 2)
        ok = not np.any(counts % 2) and (
            len(starts) == 0
            or (
                starts.min() >= 0
                and lengths.min() > 0
                and starts.max() < n_pixels
                and lengths.max() <= n_pixels
                and (starts + lengths).max() <= n_pixels
                and not np.any((row[1:] == row[:-1]) & (starts[1:] < (starts + lengths)[:-1]))
            )
        )
        if ok:
            return starts, lengths, row
    runs = [rle_runs(rle, shape) for rle in rles]  # raises the precise error
    if not runs:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    row = np.repeat(np.arange(len(runs)), [len(s) for s, _ in runs])
    return np.concatenate([s for s, _ in runs]), np.concatenate([n for _, n in runs]), row


def rles_to_labels(rles: list[str], shape: tuple[int, int] = IMAGE_SHAPE) -> np.ndarray:
    """Paint RLE-encoded instances into an int32 ``(H, W)`` label image.

    Instance ``i`` (0-based position in ``rles``) gets label ``i + 1``. Where annotations
    overlap, the pixel keeps the earlier instance (deterministic, order of ``rles``).
    Instances left with no pixel (empty, or covered by earlier ones) simply do not appear, so
    labels may have gaps; ``skimage.segmentation.relabel_sequential`` closes them.
    """
    starts, lengths, row = _rows_runs(rles, shape)
    no_label = np.iinfo(np.int32).max
    flat = np.full(shape[0] * shape[1], no_label, dtype=np.int32)
    owner = np.repeat((row + 1).astype(np.int32), lengths)
    np.minimum.at(flat, run_indices(starts, lengths), owner)  # earliest instance wins
    flat[flat == no_label] = 0
    return flat.reshape(shape)


def check_labels(labels: np.ndarray, source: object = "labels") -> np.ndarray:
    """Return ``labels`` as an array after checking it is a 2-D, non-negative integer image.

    Raises ``ValueError`` naming ``source`` otherwise (a programming error, not a user's).
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"{source}: labels must be 2-D (H, W), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{source}: labels must be integers, got {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"{source}: labels must be >= 0")
    return labels


def label_runs(labels: np.ndarray, order: str = "C") -> tuple[np.ndarray, ...]:
    """Runs of every instance of a label image, in one vectorised pass.

    Parameters
    ----------
    labels : (H, W) int array
        0 = background.
    order : {"C", "F"}
        Pixel numbering: row-major (Kaggle) or column-major (COCO).

    Returns
    -------
    ids, starts, lengths : 1-D int64 arrays
        One entry per run, sorted by label then position; ``starts`` 0-indexed in ``order``.
    """
    flat = np.asarray(labels).ravel(order=order)
    idx = np.flatnonzero(flat)
    lab = flat[idx]
    sort = np.argsort(lab, kind="stable")  # stable: pixels of a label stay ascending
    idx, lab = idx[sort], lab[sort].astype(np.int64)
    new_run = np.ones(len(idx), dtype=bool)
    new_run[1:] = (lab[1:] != lab[:-1]) | (idx[1:] != idx[:-1] + 1)
    first = np.flatnonzero(new_run)
    lengths = np.diff(np.append(first, len(idx)))
    return lab[first], idx[first].astype(np.int64), lengths.astype(np.int64)


def labels_to_rles(labels: np.ndarray) -> list[str]:
    """Encode each instance of a label image (in increasing label order) as an RLE string.

    Parameters
    ----------
    labels : (H, W) int array
        0 = background; every other value is one instance.

    Returns
    -------
    list of str
        One Kaggle RLE per label present, in increasing label order.
    """
    ids, starts, lengths = label_runs(labels)
    bounds = np.flatnonzero(np.diff(ids)) + 1
    return [
        _format_runs(s, n)
        for s, n in zip(np.split(starts, bounds), np.split(lengths, bounds), strict=True)
        if len(s)
    ]


# --------------------------------------------------------------------------- CSV files


def read_train_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read a competition ``train.csv``, with or without the original's extra columns.

    Returns a DataFrame with at least ``id, annotation, width, height, cell_type`` (one row per
    cell; ``width``/``height`` int64, the rest str). RLE strings are checked lazily when
    decoded; here only the table's shape is checked.
    """
    path = Path(path)
    df = _read_csv(path)
    missing = [c for c in TRAIN_COLUMNS if c not in df.columns]
    if missing:
        raise PhasesegInputError(f"{path}: missing column(s) {', '.join(missing)}")
    for col in ("width", "height"):
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() | (values <= 0) | (values != values.round())
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0]) + 2  # header is line 1
            raise PhasesegInputError(f"{path}, line {row}: {col} is not a positive integer")
        df[col] = values.astype(np.int64)
    df["id"] = df["id"].astype(str)
    df["annotation"] = df["annotation"].fillna("").astype(str)
    return df


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise PhasesegInputError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            # Only empty fields are missing: an id such as "NA" must stay a string. No implicit
            # index: rows longer than the header are an error, not shifted columns.
            return pd.read_csv(
                path,
                dtype={"id": str, "annotation": str, "predicted": str},
                keep_default_na=False,
                na_values=[""],
                index_col=False,
            )
    except pd.errors.ParserWarning:
        raise PhasesegInputError(
            f"{path}: not a readable CSV file (rows with more fields than the header)"
        ) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise PhasesegInputError(f"{path}: not a readable CSV file ({e})".splitlines()[0]) from None


def train_labels(df: pd.DataFrame, image_id: str, source: str = "train.csv") -> np.ndarray:
    """Label image (int32 ``(H, W)``) of one image id from a train/submission table."""
    rows = df[df["id"] == image_id]
    return annotations_to_labels(rows, source)


def annotations_to_labels(rows: pd.DataFrame, source: str = "train.csv") -> np.ndarray:
    """Label image from the rows of one image (needs ``annotation``; size from ``height/width``).

    Rows must keep the table's original index (line = index + 2) so errors can name the line.
    """
    if "height" in rows.columns and len(rows):
        shape = (int(rows["height"].iloc[0]), int(rows["width"].iloc[0]))
    else:
        shape = IMAGE_SHAPE
    col = "annotation" if "annotation" in rows.columns else "predicted"
    rles = rows[col].tolist()
    try:
        return rles_to_labels(rles, shape)
    except PhasesegInputError:
        for line, rle in zip(rows.index, rles, strict=True):
            try:
                rle_runs(rle, shape)
            except PhasesegInputError as e:
                raise PhasesegInputError(f"{source}, line {line + 2}: {e}") from None
        raise


def iter_image_labels(
    df: pd.DataFrame, source: str = "train.csv"
) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(image_id, labels)`` per image of a train table, in order of first appearance."""
    for image_id, rows in df.groupby("id", sort=False):
        yield str(image_id), annotations_to_labels(rows, source)


# --------------------------------------------------------------------------- images


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a phase-contrast image as a uint8 ``(H, W)`` array.

    RGB(A), palette and gray+alpha images are converted to gray and 16-bit or float images
    rescaled (min-max) to 8 bit, each with a warning; unreadable files raise
    :class:`PhasesegInputError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise PhasesegInputError(f"{path}: no such file")
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            import tifffile

            img = tifffile.imread(path)
        else:
            from PIL import Image

            with Image.open(path) as im:
                if im.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
                    im = im.convert("RGBA" if im.mode == "PA" else "RGB")
                img = np.asarray(im)
    except Exception as e:  # noqa: BLE001 - any decoder failure is a bad file for the user
        raise PhasesegInputError(f"{path}: not a readable image ({type(e).__name__})") from None
    return _to_gray_uint8(img, path)


def _to_gray_uint8(img: np.ndarray, path: Path) -> np.ndarray:
    img = np.squeeze(img)
    if img.ndim == 3 and img.shape[-1] == 2:
        log.warning("%s: gray+alpha image, alpha channel dropped", path)
        img = img[..., 0]
    if img.ndim == 3 and img.shape[-1] in (3, 4):
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
    unfinished atomic writes) are skipped.
    """
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.extend(
                sorted(
                    f
                    for f in p.iterdir()
                    if f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith(".")
                )
            )
        elif p.exists():
            out.append(p)
        else:
            raise PhasesegInputError(f"{p}: no such file or folder")
    return out


def find_image_set(inputs: list[str | os.PathLike]) -> list[Path]:
    """Like :func:`find_images`, for commands that name outputs by image id (the file stem).

    Raises :class:`PhasesegInputError` when no image is found or two images share an id.
    """
    paths = find_images(inputs)
    if not paths:
        raise PhasesegInputError(f"no images found in {', '.join(map(str, inputs))}")
    seen: dict[str, Path] = {}
    for p in paths:
        if p.stem in seen:
            raise PhasesegInputError(f"{p}: same image id {p.stem!r} as {seen[p.stem]}")
        seen[p.stem] = p
    return paths


# --------------------------------------------------------------------------- atomic writes


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success.

    The temporary file is created with the usual permissions (``0o666`` less the umask), so
    the final file is readable like any other, not private like ``tempfile.mkstemp``'s.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp_path = path.with_name(f".{path.name}.{secrets.token_hex(4)}{path.suffix}")
        try:
            os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:  # pragma: no cover - 32-bit random name collision
            continue
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def read_submission(path: str | os.PathLike) -> pd.DataFrame:
    """Read a competition ``submission.csv`` (``id,predicted``; one row per instance).

    An image with no instance may appear as one row with an empty ``predicted``. RLE strings are
    not checked here (see :func:`phaseseg.submission.validate_submission`).
    """
    path = Path(path)
    df = _read_csv(path)
    missing = [c for c in ("id", "predicted") if c not in df.columns]
    if missing:
        raise PhasesegInputError(f"{path}: missing column(s) {', '.join(missing)}")
    df["id"] = df["id"].astype(str)
    df["predicted"] = df["predicted"].fillna("").astype(str)
    return df
