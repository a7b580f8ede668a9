"""Kaggle run-length encodings: encode, decode, runs, and label images <-> RLE lists.

Conventions (the Sartorius competition's): an RLE is a string of space-separated ``start length``
pairs; starts are 1-indexed and count pixels row by row (row-major, C order) over an image of
shape ``(height, width)``; ``labels`` is an int32 ``(H, W)`` array, 0 = background, 1..N = cells;
``masks`` is a bool ``(N, H, W)`` array.
"""

from __future__ import annotations

import re
from typing import Literal

import numpy as np

from phaseseg.io.errors import PhasesegInputError

IMAGE_SHAPE = (520, 704)  # (height, width) of the competition's images


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


def rle_pixels(
    rles: list[str], shape: tuple[int, int] = IMAGE_SHAPE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels of RLE-encoded instances, which may overlap.

    Returns
    -------
    inst, pix : (P,) int64
        0-based instance index (position in ``rles``) and flat pixel index of every run pixel.
    area : (n,) int64
        Pixels per instance (0 for an empty RLE).
    """
    starts, lengths, row = _rows_runs(rles, shape)
    area = np.zeros(len(rles), dtype=np.int64)
    np.add.at(area, row, lengths)
    inst = np.repeat(row.astype(np.int64), lengths)
    return inst, run_indices(starts, lengths), area


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


def label_runs(labels: np.ndarray, order: Literal["C", "F"] = "C") -> tuple[np.ndarray, ...]:
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
