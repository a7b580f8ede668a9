"""Images -> labels -> competition submission, label TIFFs and overlay PNGs.

Images are streamed (read lazily, a batch at a time), so memory stays flat in the number of
images. An image that cannot be read is reported and skipped; every output file is written
atomically.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from phaseseg import io
from phaseseg.analysis.overlays import overlay, write_png
from phaseseg.io.formats import write_labels
from phaseseg.io.rois import write_rois
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
    min_score: float | None = None,
    batch_size: int | None = None,
    rois_dir: Path | None = None,
) -> Iterator[tuple[str, np.ndarray]]:
    """Segment images, yielding ``(image_id, labels)`` in order; write per-image outputs.

    Images are read lazily and run through :meth:`Segmenter.iter_segment_full` (batched
    forward passes; only the images of the current batch are held). ``cell_type`` fixes the
    thresholds' cell type (default: predicted per image); ``min_score`` overrides the tuned
    one for this run; ``batch_size``: network inputs per forward pass. A file holding several
    frames (a multi-page TIFF, a time-lapse) gives one image per frame, with the frame's id
    (:mod:`phaseseg.io.microscopy`: ``x_t003``). ``rois_dir`` receives one Fiji ROI set
    (``<image_id>.zip``) per image.
    """
    summary = summary if summary is not None else PredictSummary()
    read: deque[tuple[str, np.ndarray]] = deque()  # images handed to the model, in order

    def images() -> Iterator[np.ndarray]:
        for path in tqdm(paths, desc="predict", unit="img"):
            try:
                for info, image in io.iter_frames(path):
                    read.append((info.image_id, image))
                    yield image
            except io.PhasesegInputError as e:
                log.debug("skipped: %s", e)  # reported by the caller, from summary.failed
                summary.failed.append(str(e))

    results = model.iter_segment_full(
        images(), cell_type=cell_type, min_score=min_score, tta=tta, batch_size=batch_size
    )
    for result in results:
        image_id, image = read.popleft()
        summary.n_images += 1
        summary.n_cells += int(result.labels.max())
        summary.cell_types[image_id] = result.cell_type
        log.debug("%s: %d cells (%s)", image_id, result.labels.max(), result.cell_type)
        if labels_dir is not None:
            write_labels(Path(labels_dir) / f"{image_id}.tif", result.labels)
        if overlays_dir is not None:
            write_png(Path(overlays_dir) / f"{image_id}.png", overlay(image, result.labels))
        if rois_dir is not None:
            write_rois(Path(rois_dir) / f"{image_id}.zip", result.labels)
        yield image_id, result.labels


def predict_images(
    inputs: list[str | os.PathLike],
    model: Segmenter,
    submission: str | os.PathLike | None = None,
    labels_dir: str | os.PathLike | None = None,
    overlays_dir: str | os.PathLike | None = None,
    tta: bool = False,
    cell_type: str | None = None,
    min_score: float | None = None,
    batch_size: int | None = None,
    rois_dir: str | os.PathLike | None = None,
) -> PredictSummary:
    """Segment image files/folders and write the requested outputs.

    Image ids (submission rows, output file names) are the image file names without suffix
    (:func:`phaseseg.io.image_id`; frames of a stack: ``<id>_t003``); two inputs with the same
    id are refused up front. ``cell_type``, ``min_score``, ``batch_size``, ``rois_dir``: as
    :func:`iter_segmentations`.
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
        min_score=min_score,
        batch_size=batch_size,
        rois_dir=Path(rois_dir) if rois_dir else None,
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
