"""The competition's CSV files: ``train.csv`` (annotations) and ``submission.csv``."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from phaseseg.io.errors import PhasesegInputError
from phaseseg.io.rle import IMAGE_SHAPE, rle_runs, rles_to_labels

CELL_TYPES = ("astro", "cort", "shsy5y")
TRAIN_COLUMNS = ("id", "annotation", "width", "height", "cell_type")
TRAIN_EXTRA_COLUMNS = ("plate_time", "sample_date", "sample_id", "elapsed_timedelta")


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


def read_submission(path: str | os.PathLike) -> pd.DataFrame:
    """Read a competition ``submission.csv`` (``id,predicted``; one row per instance).

    An image with no instance may appear as one row with an empty ``predicted``. RLE strings are
    not checked here (see :func:`phaseseg.io.submission.validate_submission`).
    """
    path = Path(path)
    df = _read_csv(path)
    missing = [c for c in ("id", "predicted") if c not in df.columns]
    if missing:
        raise PhasesegInputError(f"{path}: missing column(s) {', '.join(missing)}")
    df["id"] = df["id"].astype(str)
    df["predicted"] = df["predicted"].fillna("").astype(str)
    return df
