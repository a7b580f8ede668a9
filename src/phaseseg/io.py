"""Reading and writing images, Kaggle run-length encodings and the competition's CSV files.

Conventions (the Sartorius competition's):

* an RLE is a string of space-separated ``start length`` pairs; starts are 1-indexed and count
  pixels row by row (row-major, C order) over an image of shape ``(height, width)``;
* ``labels`` is an int32 ``(H, W)`` array, 0 = background, 1..N = cells;
* ``masks`` is a bool ``(N, H, W)`` array.

User mistakes (missing file, corrupt image, malformed row) raise :class:`PhasesegInputError` with
one line that names the file (and row) and what is wrong; the CLI prints it and exits non-zero.
"""

from __future__ import annotations

import logging
import os
import tempfile
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
    runs = np.empty(2 * len(starts), dtype=np.int64)
    runs[0::2] = starts + 1
    runs[1::2] = ends - starts
    return " ".join(map(str, runs.tolist()))


def rle_runs(rle: str, shape: tuple[int, int] = IMAGE_SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """Parse and check an RLE string; return 0-indexed ``starts`` and ``lengths`` (int64).

    Raises :class:`PhasesegInputError` (without a file name; callers add it) when the string
    is not pairs of positive integers, runs are unsorted or overlapping, or pixels fall outside
    ``shape``.
    """
    if not isinstance(rle, str):
        if rle is None or (isinstance(rle, float) and np.isnan(rle)):
            rle = ""
        else:
            raise PhasesegInputError(f"RLE must be a string, got {type(rle).__name__}")
    tokens = rle.split()
    if len(tokens) % 2:
        raise PhasesegInputError(f"RLE has an odd number of values ({len(tokens)})")
    try:
        values = np.array(tokens, dtype=np.int64)
    except ValueError:
        bad = next(t for t in tokens if not t.lstrip("-").isdigit())
        raise PhasesegInputError(f"RLE holds a non-integer value {bad!r}") from None
    starts, lengths = values[0::2] - 1, values[1::2]
    if len(starts) == 0:
        return starts, lengths
    if starts.min() < 0:
        raise PhasesegInputError("RLE start below 1 (starts are 1-indexed)")
    if lengths.min() <= 0:
        raise PhasesegInputError("RLE run length must be positive")
    ends = starts + lengths
    if np.any(starts[1:] < ends[:-1]):
        raise PhasesegInputError("RLE runs are unsorted or overlap (duplicated pixels)")
    n_pixels = shape[0] * shape[1]
    if ends[-1] > n_pixels:
        raise PhasesegInputError(
            f"RLE reaches pixel {int(ends[-1])}, beyond the {shape[0]}x{shape[1]} image "
            f"({n_pixels} pixels)"
        )
    return starts, lengths


def _run_indices(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
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
    flat[_run_indices(starts, lengths)] = True
    return flat.reshape(shape)


def rles_to_labels(rles: list[str], shape: tuple[int, int] = IMAGE_SHAPE) -> np.ndarray:
    """Paint RLE-encoded instances into an int32 ``(H, W)`` label image.

    Instance ``i`` (0-based position in ``rles``) gets label ``i + 1``. Where annotations
    overlap, the pixel keeps the earlier instance (deterministic, order of ``rles``).
    Instances left with no pixel simply do not appear.
    """
    flat = np.zeros(shape[0] * shape[1], dtype=np.int32)
    for i in range(len(rles) - 1, -1, -1):  # paint backwards so earlier instances win
        starts, lengths = rle_runs(rles[i], shape)
        flat[_run_indices(starts, lengths)] = i + 1
    return flat.reshape(shape)


def labels_to_rles(labels: np.ndarray) -> list[str]:
    """Encode each instance of a label image (in increasing label order) as an RLE string."""
    labels = np.asarray(labels)
    flat = labels.ravel()
    order = np.argsort(flat, kind="stable")
    sorted_ids = flat[order]
    ids, first = np.unique(sorted_ids, return_index=True)
    bounds = np.append(first, len(flat))
    out = []
    for k, lab in enumerate(ids):
        if lab == 0:
            continue
        idx = order[bounds[k] : bounds[k + 1]]  # already ascending (stable sort)
        mask = np.zeros(flat.size, dtype=bool)
        mask[idx] = True
        out.append(rle_encode(mask))
    return out


# --------------------------------------------------------------------------- CSV files


def read_train_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read a competition ``train.csv``, with or without the original's extra columns.

    Returns a DataFrame with at least ``id, annotation, width, height, cell_type`` (one row per
    cell). RLE strings are checked lazily when decoded; here only the table's shape is checked.
    """
    path = Path(path)
    df = _read_csv(path)
    missing = [c for c in TRAIN_COLUMNS if c not in df.columns]
    if missing:
        raise PhasesegInputError(f"{path}: missing column(s) {', '.join(missing)}")
    for col in ("width", "height"):
        bad = pd.to_numeric(df[col], errors="coerce").isna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0]) + 2  # header is line 1
            raise PhasesegInputError(f"{path}, line {row}: {col} is not a number")
        df[col] = df[col].astype(np.int64)
    df["id"] = df["id"].astype(str)
    df["annotation"] = df["annotation"].fillna("").astype(str)
    return df


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise PhasesegInputError(f"{path}: no such file")
    try:
        return pd.read_csv(path, dtype={"id": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise PhasesegInputError(f"{path}: not a readable CSV file ({e})".splitlines()[0]) from None


def train_labels(df: pd.DataFrame, image_id: str, source: str = "train.csv") -> np.ndarray:
    """Label image (int32 ``(H, W)``) of one image id from a train/submission table."""
    rows = df[df["id"] == image_id]
    return annotations_to_labels(rows, source)


def annotations_to_labels(rows: pd.DataFrame, source: str = "train.csv") -> np.ndarray:
    """Label image from the rows of one image (needs ``annotation``; size from ``height/width``)."""
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
    """Yield ``(image_id, labels)`` for each image of a train table, in order of first appearance."""
    for image_id, rows in df.groupby("id", sort=False):
        yield str(image_id), annotations_to_labels(rows, source)


# --------------------------------------------------------------------------- images


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a phase-contrast image as a uint8 ``(H, W)`` array.

    RGB(A) images are converted to gray and 16-bit or float images rescaled to 8 bit, each with a
    warning; unreadable files raise :class:`PhasesegInputError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise PhasesegInputError(f"{path}: no such file")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            img = tifffile.imread(path)
        else:
            from PIL import Image

            with Image.open(path) as im:
                img = np.asarray(im)
    except Exception as e:  # noqa: BLE001 - any decoder failure is a bad file for the user
        raise PhasesegInputError(f"{path}: not a readable image ({type(e).__name__})") from None
    return _to_gray_uint8(img, path)


def _to_gray_uint8(img: np.ndarray, path: Path) -> np.ndarray:
    img = np.squeeze(img)
    if img.ndim == 3 and img.shape[-1] in (3, 4):
        log.warning("%s: RGB image converted to grayscale", path)
        rgb = img[..., :3].astype(np.float64)
        img = rgb @ np.array([0.299, 0.587, 0.114])
        if np.issubdtype(np.asarray(img).dtype, np.floating) and rgb.max() <= 255:
            img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    if img.ndim != 2:
        raise PhasesegInputError(f"{path}: expected a 2-D grayscale image, got shape {img.shape}")
    if img.dtype == np.uint8:
        return img
    if img.dtype == bool:
        return img.astype(np.uint8) * 255
    log.warning("%s: %s image rescaled to 8 bit", path, img.dtype)
    img = img.astype(np.float64)
    lo, hi = np.nanmin(img), np.nanmax(img)
    if not np.isfinite(lo) or not np.isfinite(hi):
        raise PhasesegInputError(f"{path}: image holds no finite values")
    if hi <= lo:
        return np.zeros(img.shape, dtype=np.uint8)
    return np.round((img - lo) / (hi - lo) * 255).astype(np.uint8)


def find_images(inputs: list[str | os.PathLike]) -> list[Path]:
    """Expand files and folders into a sorted list of image files (folders non-recursive)."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES))
        elif p.exists():
            out.append(p)
        else:
            raise PhasesegInputError(f"{p}: no such file or folder")
    return out


# --------------------------------------------------------------------------- atomic writes


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def read_submission(path: str | os.PathLike) -> pd.DataFrame:
    """Read a competition ``submission.csv`` (``id,predicted``; one row per instance).

    An image with no instance may appear as one row with an empty ``predicted``. RLE strings are
    not checked here (see :mod:`phaseseg.submission` for the full validation).
    """
    path = Path(path)
    df = _read_csv(path)
    missing = [c for c in ("id", "predicted") if c not in df.columns]
    if missing:
        raise PhasesegInputError(f"{path}: missing column(s) {', '.join(missing)}")
    df["id"] = df["id"].astype(str)
    df["predicted"] = df["predicted"].fillna("").astype(str)
    return df
