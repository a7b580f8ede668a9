"""Images -> labels -> competition submission, label TIFFs, overlay PNGs and ROI sets.

One per-image pipeline (:func:`segment_frames`: the model's labels, and the overlay when one
is written; :func:`write_image_outputs`: that image's files) serves both ways of running it:

* in this process (:func:`iter_segmentations`): images are streamed (read lazily, a batch at
  a time), so memory stays flat in the number of images;
* on a Dask cluster (``client=``): one task per file (:func:`segment_file`) runs on a worker,
  which reads the file from the shared file system and keeps the model loaded; the client
  writes the outputs in input order as the results arrive.

An image that cannot be read is reported and skipped; every output file is written
atomically; ``resume=True`` skips the images whose files are all there.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from phaseseg import io
from phaseseg.analysis.overlays import overlay, png_bytes
from phaseseg.io.formats import read_labels, write_labels
from phaseseg.io.rois import write_rois
from phaseseg.io.submission import write_submission
from phaseseg.progress import tqdm
from phaseseg.segment.segmenter import Segmenter

if TYPE_CHECKING:
    from distributed import Client

    from phaseseg.distributed import ModelSpec

log = logging.getLogger(__name__)


@dataclass
class PredictSummary:
    """What :func:`predict_images` did."""

    n_images: int = 0
    n_cells: int = 0
    failed: list[str] = field(default_factory=list)  # one line per skipped image
    cell_types: dict[str, str] = field(default_factory=dict)  # image id -> predicted type
    n_resumed: int = 0  # images whose outputs an earlier run had written (resume=True)


@dataclass(frozen=True)
class SegmentOptions:
    """How each image is segmented (:meth:`Segmenter.iter_segment_full`'s options) and
    whether its overlay is drawn."""

    tta: bool = False
    cell_type: str | None = None
    min_score: float | None = None
    batch_size: int | None = None
    overlays: bool = False


@dataclass
class ImageResult:
    """One image's segmentation, ready to be written (:func:`write_image_outputs`)."""

    image_id: str
    labels: np.ndarray  # int32 (H, W): 0 background, 1..N cells
    cell_type: str  # whose thresholds were used
    overlay_png: bytes | None = None  # the outline overlay, PNG-encoded, when overlays are written


@dataclass
class FileResult:
    """The images of one file (several for a stack) and, if it failed part-way, why."""

    images: list[ImageResult] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class OutputDirs:
    """Where the per-image files go (None: not written)."""

    labels: Path | None = None
    overlays: Path | None = None
    rois: Path | None = None

    def files(self, image_id: str) -> list[Path]:
        """The files written for ``image_id``."""
        names = ((self.labels, ".tif"), (self.overlays, ".png"), (self.rois, ".zip"))
        return [Path(d) / f"{image_id}{ext}" for d, ext in names if d is not None]


def segment_frames(
    frames: Iterable[tuple[str, np.ndarray]], model: Segmenter, options: SegmentOptions
) -> Iterator[ImageResult]:
    """Segment ``(image_id, image)`` pairs (uint8 ``(H, W)`` images), consumed lazily; yield
    an :class:`ImageResult` per image, in order (batched forward passes; only the images of
    the current batch are held)."""
    held: deque[tuple[str, np.ndarray]] = deque()

    def images() -> Iterator[np.ndarray]:
        for image_id, image in frames:
            held.append((image_id, image))
            yield image

    results = model.iter_segment_full(
        images(),
        cell_type=options.cell_type,
        min_score=options.min_score,
        tta=options.tta,
        batch_size=options.batch_size,
    )
    for result in results:
        image_id, image = held.popleft()
        drawn = png_bytes(overlay(image, result.labels)) if options.overlays else None
        yield ImageResult(image_id, result.labels, result.cell_type, drawn)


def segment_file(
    path: str | os.PathLike, file_id: str | None, model: Segmenter, options: SegmentOptions
) -> FileResult:
    """Every frame of one image file through :func:`segment_frames` (``file_id``: the id of
    the file's images, default its name); an unreadable file gives its error line."""
    out = FileResult()

    def frames() -> Iterator[tuple[str, np.ndarray]]:
        try:
            for info, image in io.iter_frames(path, file_id):
                yield info.image_id, image
        except io.PhasesegInputError as e:
            out.error = str(e)

    out.images.extend(segment_frames(frames(), model, options))
    return out


def segment_file_task(file: tuple[str, str], spec: ModelSpec, options: SegmentOptions):
    """:func:`segment_file` as a Dask task: ``file`` is (absolute path, file id); the
    worker's model is loaded once (:func:`phaseseg.distributed.worker_model`)."""
    from phaseseg.distributed import worker_model

    out = segment_file(file[0], file[1], worker_model(spec), options)
    for result in out.images:  # half the bytes to send back (the client restores int32)
        if result.labels.max(initial=0) < 2**16:
            result.labels = result.labels.astype(np.uint16)
    return out


def write_image_outputs(result: ImageResult, dirs: OutputDirs) -> None:
    """Write one image's label TIFF, overlay PNG and Fiji ROI set (those asked for)."""
    if dirs.labels is not None:
        write_labels(dirs.labels / f"{result.image_id}.tif", result.labels)
    if dirs.overlays is not None and result.overlay_png is not None:
        with io.atomic_path(dirs.overlays / f"{result.image_id}.png") as tmp:
            tmp.write_bytes(result.overlay_png)
    if dirs.rois is not None:
        write_rois(dirs.rois / f"{result.image_id}.zip", result.labels)


def iter_segmentations(
    paths: list[Path],
    model: Segmenter,
    tta: bool | None = None,
    labels_dir: Path | None = None,
    overlays_dir: Path | None = None,
    summary: PredictSummary | None = None,
    cell_type: str | None = None,
    min_score: float | None = None,
    batch_size: int | None = None,
    rois_dir: Path | None = None,
    file_ids: list[str] | None = None,
) -> Iterator[tuple[str, np.ndarray]]:
    """Segment images, yielding ``(image_id, labels)`` in order; write per-image outputs.

    Images are read lazily and run through :meth:`Segmenter.iter_segment_full` (batched
    forward passes; only the images of the current batch are held). ``cell_type`` fixes the
    thresholds' cell type (default: predicted per image); ``min_score`` overrides the tuned
    one for this run; ``batch_size``: network inputs per forward pass. A file holding several
    frames (a multi-page TIFF, a time-lapse) gives one image per frame, with the frame's id
    (:mod:`phaseseg.io.microscopy`: ``x_t003``). ``rois_dir`` receives one Fiji ROI set
    (``<image_id>.zip``) per image. ``file_ids``: the id of each path's images (default: the
    file names, :func:`phaseseg.io.image_id`).
    """
    summary = summary if summary is not None else PredictSummary()
    tta = model.uses_tta(tta)
    options = SegmentOptions(tta, cell_type, min_score, batch_size, overlays_dir is not None)
    dirs = OutputDirs(labels_dir, overlays_dir, rois_dir)
    ids = file_ids if file_ids is not None else [io.image_id(p) for p in paths]
    for _, result in _local_results(list(zip(paths, ids, strict=True)), model, options, summary):
        _record(result, summary)
        write_image_outputs(result, dirs)
        yield result.image_id, result.labels


def _record(result: ImageResult, summary: PredictSummary) -> None:
    summary.n_images += 1
    summary.n_cells += int(result.labels.max())
    summary.cell_types[result.image_id] = result.cell_type
    log.debug("%s: %d cells (%s)", result.image_id, result.labels.max(), result.cell_type)


def _local_results(
    files: list[tuple[Path, str]], model: Segmenter, options: SegmentOptions, summary
) -> Iterator[tuple[int, ImageResult]]:
    """``(file index, result)`` of every image of ``files``, segmented in this process."""
    where: deque[int] = deque()

    def frames() -> Iterator[tuple[str, np.ndarray]]:
        for k, (path, file_id) in enumerate(tqdm(files, desc="predict", unit="img")):
            try:
                for info, image in io.iter_frames(path, file_id):
                    where.append(k)
                    yield info.image_id, image
            except io.PhasesegInputError as e:
                log.debug("skipped: %s", e)  # reported by the caller, from summary.failed
                summary.failed.append(str(e))

    for result in segment_frames(frames(), model, options):
        yield where.popleft(), result


def _cluster_results(
    files: list[tuple[Path, str]],
    client: Client,
    spec: ModelSpec,
    options: SegmentOptions,
    summary: PredictSummary,
) -> Iterator[tuple[int, ImageResult]]:
    """The same as :func:`_local_results`, one Dask task per file."""
    from phaseseg.distributed import map_ordered
    from phaseseg.distributed.ordered import TaskFailed

    tasks = [(str(Path(p).resolve()), file_id) for p, file_id in files]
    with tqdm(total=len(files), desc="predict", unit="img") as bar:
        results = map_ordered(client, segment_file_task, tasks, spec, options, on_done=bar.update)
        for k, outcome in results:
            if isinstance(outcome, TaskFailed):
                summary.failed.append(f"{files[k][0]}: failed on the cluster ({outcome})")
                continue
            for result in outcome.images:
                result.labels = result.labels.astype(np.int32, copy=False)
                yield k, result
            if outcome.error is not None:
                summary.failed.append(outcome.error)


def _complete(file: io.ImageFile, dirs: OutputDirs) -> list[str] | None:
    """The ids of ``file``'s images if every one's output files exist, else None."""
    try:
        ids = [info.image_id for info in io.frame_infos(file.path, file.image_id)]
    except io.PhasesegInputError:
        return None
    done = all(f.is_file() for i in ids for f in dirs.files(i))
    return ids if done else None


def predict_images(
    inputs: list[str | os.PathLike],
    model: Segmenter,
    submission: str | os.PathLike | None = None,
    labels_dir: str | os.PathLike | None = None,
    overlays_dir: str | os.PathLike | None = None,
    tta: bool | None = None,
    cell_type: str | None = None,
    min_score: float | None = None,
    batch_size: int | None = None,
    rois_dir: str | os.PathLike | None = None,
    resume: bool = False,
    client: Client | None = None,
    model_spec: ModelSpec | None = None,
) -> PredictSummary:
    """Segment image files/folders and write the requested outputs.

    Image ids (submission rows, output file names) are the image file names without suffix
    (:func:`phaseseg.io.image_id`; frames of a stack: ``<id>_t003``); images in sub-folders of
    an input folder keep their folders (``plate1__A1__f1``, :func:`phaseseg.io.find_image_files`);
    two inputs with the same id are refused up front. ``cell_type``, ``min_score``,
    ``batch_size``, ``rois_dir``: as :func:`iter_segmentations`.

    ``resume``: the images whose requested files (label TIFF, overlay, ROI set) all exist are
    not segmented again; their submission rows come from their label TIFFs, so a submission
    needs ``labels_dir``. ``client``: run one task per file on this Dask cluster, whose
    workers load ``model_spec`` (default: the bundled model); the outputs are the same as in
    this process, written here in input order.
    """
    dirs = OutputDirs(
        Path(labels_dir) if labels_dir else None,
        Path(overlays_dir) if overlays_dir else None,
        Path(rois_dir) if rois_dir else None,
    )
    if resume and submission is not None and dirs.labels is None:
        raise io.PhasesegInputError(
            "--resume with --submission needs --labels-dir (the rows of the images done "
            "before are read from their label TIFFs)"
        )
    if resume and not dirs.files("x"):
        raise io.PhasesegInputError("--resume needs --labels-dir, --overlays-dir or --rois-dir")
    files = io.find_image_files(inputs, exclude=[labels_dir, overlays_dir, rois_dir])
    summary = PredictSummary()
    done: dict[int, list[str]] = {}
    if resume:
        for k, f in enumerate(files):
            ids = _complete(f, dirs)
            if ids is not None:
                done[k] = ids
        log.info("--resume: %d of %d files done before", len(done), len(files))
    todo = [k for k in range(len(files)) if k not in done]
    todo_files = [(files[k].path, files[k].image_id) for k in todo]
    tta = model.uses_tta(tta)  # decided here, for every worker alike
    options = SegmentOptions(tta, cell_type, min_score, batch_size, dirs.overlays is not None)
    if client is None:
        results = _local_results(todo_files, model, options, summary)
    else:
        from phaseseg.distributed import ModelSpec

        spec = model_spec if model_spec is not None else ModelSpec()
        results = _cluster_results(todo_files, client, spec, options, summary)

    def items() -> Iterator[tuple[str, np.ndarray]]:
        following = 0  # the next file, in input order

        def resumed(before: int) -> Iterator[tuple[str, np.ndarray]]:
            nonlocal following
            for k in range(following, before):
                for image_id in done.get(k, []):
                    summary.n_images += 1
                    summary.n_resumed += 1
                    if dirs.labels is None:
                        continue
                    labels = read_labels(dirs.labels / f"{image_id}.tif")
                    summary.n_cells += int(labels.max())
                    yield image_id, labels
            following = max(following, before)

        for j, result in results:
            yield from resumed(todo[j])
            _record(result, summary)
            write_image_outputs(result, dirs)
            yield result.image_id, result.labels
        yield from resumed(len(files))

    stream = _reported(items(), summary, submission)
    if submission is not None:
        write_submission(submission, stream)
    else:
        for _ in stream:
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
