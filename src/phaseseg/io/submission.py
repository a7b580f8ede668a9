"""Writing and checking the competition's ``submission.csv``.

The file has the header ``id,predicted`` and one row per predicted instance; ``predicted`` is
a Kaggle RLE (see :mod:`phaseseg.io`). An image with no instance gets one row with an empty
``predicted``. The competition rejects a file whose instances of one image overlap.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from phaseseg.io import (
    IMAGE_SHAPE,
    PhasesegInputError,
    atomic_path,
    check_labels,
    labels_to_rles,
    rle_runs,
    run_indices,
)

log = logging.getLogger(__name__)

COLUMNS = ("id", "predicted")
Runs = tuple[np.ndarray, np.ndarray]  # 0-indexed starts, lengths


def masks_to_labels(masks: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
    """Resolve possibly overlapping masks into a label image (no two instances share a pixel).

    Parameters
    ----------
    masks : (N, H, W) bool array
    scores : (N,) float array, optional
        Priority of each mask; a contested pixel goes to the higher score, ties (and
        ``scores=None``) to the earlier mask.

    Returns
    -------
    labels : (H, W) int32 array
        ``labels == i + 1`` is mask ``i`` less the pixels taken by masks of higher priority;
        a mask left with no pixel does not appear.

    Examples
    --------
    >>> masks = np.zeros((2, 1, 3), bool); masks[0, 0, :2] = True; masks[1, 0, 1:] = True
    >>> masks_to_labels(masks, scores=np.array([0.5, 0.9]))
    array([[1, 2, 2]], dtype=int32)
    """
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {masks.shape}")
    masks = masks.astype(bool, copy=False)
    n = len(masks)
    if scores is None:
        order = np.arange(n)
    else:
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (n,) or not np.all(np.isfinite(scores)):
            raise ValueError(f"scores must be {n} finite numbers, got shape {scores.shape}")
        order = np.argsort(-scores, kind="stable")  # stable: ties keep the earlier mask first
    labels = np.zeros(masks.shape[1:], dtype=np.int32)
    for i in order[::-1]:  # paint lowest priority first; higher priority overwrites
        labels[masks[i]] = i + 1
    return labels


def write_submission(path: str | os.PathLike, items: Iterable[tuple[str, np.ndarray]]) -> Path:
    """Write ``submission.csv`` from label images, streaming and atomically.

    Parameters
    ----------
    path : path-like
        Output CSV; it appears only once complete (:func:`phaseseg.io.atomic_path`).
    items : iterable of (image_id, labels)
        ``labels`` an int (H, W) label image (instances cannot overlap by construction).
        Consumed one at a time, so a generator keeps memory flat.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    seen: set[str] = set()
    n_instances = 0
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        for image_id, labels in items:
            image_id = str(image_id)
            if image_id in seen:
                raise ValueError(f"image id {image_id!r} given twice")
            seen.add(image_id)
            rles = labels_to_rles(check_labels(labels, image_id)) or [""]
            writer.writerows((image_id, rle) for rle in rles)
            n_instances += sum(1 for rle in rles if rle)
    log.info("wrote %s: %d images, %d instances", path, len(seen), n_instances)
    return path


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a submission; ``str()`` gives ``file, line N, image ID: message``."""

    source: str
    line: int | None
    image_id: str | None
    message: str

    def __str__(self) -> str:
        where = [self.source]
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.image_id is not None:
            where.append(f"image {self.image_id}")
        return f"{', '.join(where)}: {self.message}"


@dataclass
class SubmissionCheck:
    """Result of :func:`check_submission`: the problems and what was read."""

    problems: list[Problem] = field(default_factory=list)
    n_rows: int = 0
    n_images: int = 0
    n_instances: int = 0

    @property
    def valid(self) -> bool:
        return not self.problems


def validate_submission(
    path: str | os.PathLike,
    image_ids: Iterable[str] | None = None,
    shapes: Mapping[str, tuple[int, int]] | None = None,
) -> list[Problem]:
    """Check a ``submission.csv`` against the competition's rules; ``[]`` when valid.

    See :func:`check_submission` for the rules and parameters.
    """
    return check_submission(path, image_ids, shapes).problems


def check_submission(
    path: str | os.PathLike,
    image_ids: Iterable[str] | None = None,
    shapes: Mapping[str, tuple[int, int]] | None = None,
) -> SubmissionCheck:
    """Check a ``submission.csv`` against the competition's rules.

    Checks: the columns ``id`` and ``predicted`` are present and every row has the header's
    number of fields; each RLE is pairs of positive integers with sorted, non-overlapping runs
    inside the image; no two instances of one image share a pixel; with ``image_ids``, no
    unknown id and no missing one (an image without cells needs one row with an empty
    ``predicted``).

    Parameters
    ----------
    path : path-like
        The CSV. A missing file raises :class:`PhasesegInputError`.
    image_ids : iterable of str, optional
        The test set's image ids.
    shapes : mapping of str to (height, width), optional
        Image sizes; ids not in it (or all, when ``None``) are taken to be 520 x 704.

    Returns
    -------
    SubmissionCheck
        ``problems`` in line order (missing ids last), each naming the line and image id,
        and the counts of rows, images and instances read.
    """
    path = Path(path)
    if not path.is_file():
        raise PhasesegInputError(f"{path}: no such file")
    source = str(path)
    check = SubmissionCheck()
    problems = check.problems
    rows: dict[str, list[tuple[int, Runs | None]]] = {}  # id -> [(line, runs or None if bad)]
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, strict=True)
            try:
                header = next(reader, None)
                if header is None:
                    problems.append(Problem(source, None, None, "empty file"))
                    return check
                header = [h.strip() for h in header]
                missing = [c for c in COLUMNS if c not in header]
                if missing:
                    msg = f"missing column(s) {', '.join(missing)} (header is {','.join(header)})"
                    problems.append(Problem(source, 1, None, msg))
                    return check
                i_id, i_pred = header.index("id"), header.index("predicted")
                end = reader.line_num
                for row in reader:
                    line, end = end + 1, reader.line_num  # a quoted field may span lines
                    if not row:
                        continue  # blank line
                    check.n_rows += 1
                    image_id = row[i_id] if i_id < len(row) else ""
                    if len(row) != len(header):
                        msg = f"{len(row)} fields, expected {len(header)} ({','.join(header)})"
                        problems.append(Problem(source, line, image_id or None, msg))
                        continue
                    if not image_id:
                        problems.append(Problem(source, line, None, "empty id"))
                        continue
                    check.n_instances += bool(row[i_pred].strip())
                    shape = shapes.get(image_id, IMAGE_SHAPE) if shapes else IMAGE_SHAPE
                    try:
                        runs = rle_runs(row[i_pred], shape)
                    except PhasesegInputError as e:
                        problems.append(Problem(source, line, image_id, str(e)))
                        runs = None
                    rows.setdefault(image_id, []).append((line, runs))
            except csv.Error as e:
                problems.append(Problem(source, reader.line_num, None, f"malformed CSV ({e})"))
    except UnicodeDecodeError:
        problems.append(Problem(source, None, None, "not a UTF-8 text file"))
        return check
    check.n_images = len(rows)
    for image_id, image_rows in rows.items():
        shape = shapes.get(image_id, IMAGE_SHAPE) if shapes else IMAGE_SHAPE
        problems.extend(_overlaps(source, image_id, image_rows, shape))
    missing_ids: list[Problem] = []
    if image_ids is not None:
        expected = list(dict.fromkeys(str(i) for i in image_ids))
        known = set(expected)
        for image_id, image_rows in rows.items():
            if image_id not in known:
                msg = f"unknown image id ({len(image_rows)} row(s); {len(known)} ids expected)"
                problems.append(Problem(source, image_rows[0][0], image_id, msg))
        msg = "no row (an image without cells needs one row with an empty predicted)"
        missing_ids = [Problem(source, None, i, msg) for i in expected if i not in rows]
    problems.sort(key=lambda p: p.line if p.line is not None else 0)
    problems.extend(missing_ids)
    return check


def _overlaps(
    source: str,
    image_id: str,
    rows: list[tuple[int, Runs | None]],
    shape: tuple[int, int],
) -> list[Problem]:
    """One problem per row whose pixels were already claimed by earlier rows of the image."""
    if sum(1 for _, runs in rows if runs is not None and len(runs[0])) < 2:
        return []
    owner = np.zeros(shape[0] * shape[1], dtype=np.int64)  # line of the first row per pixel
    out = []
    for line, runs in rows:
        if runs is None or not len(runs[0]):
            continue
        pixels = run_indices(*runs)
        taken = owner[pixels]
        hit = taken > 0
        if hit.any():
            lines, counts = np.unique(taken[hit], return_counts=True)
            if len(lines) == 1 and counts[0] == len(pixels) == np.sum(owner == lines[0]):
                msg = f"same mask as line {lines[0]}"
            else:
                parts = [f"line {a} ({b} px)" for a, b in zip(lines[:5], counts[:5], strict=True)]
                more = f" and {len(lines) - 5} more rows" if len(lines) > 5 else ""
                msg = f"overlaps {', '.join(parts)}{more}"
            out.append(Problem(source, line, image_id, msg))
        owner[pixels[~hit]] = line
    return out
