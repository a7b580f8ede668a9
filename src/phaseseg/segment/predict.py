"""Images -> labels -> competition submission, label TIFFs and overlay PNGs.

Images are streamed one at a time, so memory stays flat in the number of images. An image that
cannot be read is reported and skipped; every output file is written atomically.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from phaseseg import io
from phaseseg.analysis.overlays import overlay, write_png
from phaseseg.io.formats import write_labels
from phaseseg.io.submission import write_submission
from phaseseg.progress import tqdm
from phaseseg.segment.segmenter import Segmenter

log = logging.getLogger(__name__)


@dataclass
class PredictSummary:
    """What :func:`predict_images` did."""

    n_images: int = 0
    n_cells: int = 0
    failed: list[str] = field(default_factory=list)  # one line per skipped image
    cell_types: dict[str, str] = field(default_factory=dict)  # image id -> predicted type


def iter_segmentations(
    paths: list[Path],
    model: Segmenter,
    tta: bool = False,
    labels_dir: Path | None = None,
    overlays_dir: Path | None = None,
    summary: PredictSummary | None = None,
    cell_type: str | None = None,
) -> Iterator[tuple[str, np.ndarray]]:
    """Segment images one by one, yielding ``(image_id, labels)``; write per-image outputs.

    ``cell_type`` fixes the thresholds' cell type (default: predicted per image).
    """
    summary = summary if summary is not None else PredictSummary()
    for path in tqdm(paths, desc="predict", unit="img"):
        try:
            image = io.read_image(path)
        except io.PhasesegInputError as e:
            log.debug("skipped: %s", e)  # reported by the caller, from summary.failed
            summary.failed.append(str(e))
            continue
        result = model.segment_full(image, tta=tta, cell_type=cell_type)
        image_id = path.stem
        summary.n_images += 1
        summary.n_cells += int(result.labels.max())
        summary.cell_types[image_id] = result.cell_type
        log.debug("%s: %d cells (%s)", path, result.labels.max(), result.cell_type)
        if labels_dir is not None:
            write_labels(Path(labels_dir) / f"{image_id}.tif", result.labels)
        if overlays_dir is not None:
            write_png(Path(overlays_dir) / f"{image_id}.png", overlay(image, result.labels))
        yield image_id, result.labels


def predict_images(
    inputs: list[str | os.PathLike],
    model: Segmenter,
    submission: str | os.PathLike | None = None,
    labels_dir: str | os.PathLike | None = None,
    overlays_dir: str | os.PathLike | None = None,
    tta: bool = False,
    cell_type: str | None = None,
) -> PredictSummary:
    """Segment image files/folders and write the requested outputs.

    Image ids (submission rows, output file names) are the image file names without suffix;
    two inputs with the same id are refused up front.
    """
    paths = io.find_image_set(inputs)
    summary = PredictSummary()
    items = iter_segmentations(
        paths,
        model,
        tta=tta,
        labels_dir=Path(labels_dir) if labels_dir else None,
        overlays_dir=Path(overlays_dir) if overlays_dir else None,
        summary=summary,
        cell_type=cell_type,
    )
    items = _reported(items, summary, submission)
    if submission is not None:
        write_submission(submission, items)
    else:
        for _ in items:
            pass
    return summary


def _reported(
    items: Iterator[tuple[str, np.ndarray]],
    summary: PredictSummary,
    submission: str | os.PathLike | None,
) -> Iterator[tuple[str, np.ndarray]]:
    """Pass ``items`` on; log the skipped images (``summary.failed``) once one image has been
    segmented. When none was, raise one :class:`~phaseseg.io.PhasesegInputError` instead: the
    submission is then not written, so an earlier one stays as it was."""
    logged = 0
    for item in items:
        for line in summary.failed[logged:]:
            log.error("skipped: %s", line)
        logged = len(summary.failed)
        yield item
    if summary.n_images:
        for line in summary.failed[logged:]:
            log.error("skipped: %s", line)
        return
    n = len(summary.failed)
    cause = f"{summary.failed[0]}" + (f" (and {n - 1} more)" if n > 1 else "") if n else "no images"
    kept = f"; {submission} left as it was" if submission is not None else ""
    raise io.PhasesegInputError(f"no image could be segmented: {cause}{kept}")
