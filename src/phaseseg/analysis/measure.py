"""What biologists need from a segmentation: per-cell shape, per-image counts, growth curves.

* :func:`measure_cells` — one row per cell (size, shape, intensity, neurite index), computed with
  :func:`skimage.measure.regionprops_table` (:mod:`phaseseg.analysis.shapes`);
* :func:`summarize_image` — cell count, confluence, median cell area and cell density;
* :func:`parse_time` — well and elapsed time from file names (LIVECell convention or a regex;
  :mod:`phaseseg.analysis.timecourse`);
* :func:`timecourse` / :func:`plot_timecourse` — count and confluence over time per well;
* :func:`measure_images` — the whole pipeline behind ``phaseseg measure``: images (segmented by a
  model, or with label images given) -> ``cells.csv``, ``images.csv``, ``timecourse.csv``,
  label TIFFs, overlays and a self-contained ``report.html``.

Every column of every CSV is documented with its unit in :data:`COLUMNS`
(:mod:`phaseseg.analysis.columns`; ``phaseseg measure --describe``, ``docs/measure_columns.md``).

The neurite index is defined in :mod:`phaseseg.analysis.shapes`.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from phaseseg import io
from phaseseg.analysis.columns import _NO_PS, _PS, COLUMNS, Column, describe_columns
from phaseseg.analysis.overlays import overlay, write_png
from phaseseg.analysis.shapes import measure_cells, skeleton_length_px, summarize_image
from phaseseg.analysis.timecourse import (
    LIVECELL_NAME,
    TimePoint,
    compile_name_pattern,
    compile_time_pattern,
    parse_name,
    parse_time,
    plot_timecourse,
    timecourse,
)
from phaseseg.io.formats import LABEL_SUFFIXES, read_label_metadata, read_labels, write_labels
from phaseseg.io.rois import write_rois
from phaseseg.progress import tqdm

if TYPE_CHECKING:
    from distributed import Client

    from phaseseg.distributed import ModelSpec
    from phaseseg.segment.segmenter import Segmenter

log = logging.getLogger(__name__)

__all__ = [
    "COLUMNS",
    "LIVECELL_NAME",
    "Column",
    "MeasureSummary",
    "TimePoint",
    "compile_time_pattern",
    "describe_columns",
    "find_label_files",
    "frame_time",
    "measure_cells",
    "measure_images",
    "parse_time",
    "plot_timecourse",
    "skeleton_length_px",
    "summarize_image",
    "timecourse",
]


@dataclass
class MeasureSummary:
    """What :func:`measure_images` did."""

    n_images: int = 0
    n_cells: int = 0
    failed: list[str] = field(default_factory=list)  # one line per skipped image
    n_timed: int = 0  # images with a time point
    warnings: list[str] = field(default_factory=list)  # shown in the report
    seconds: float = 0.0  # wall time of the per-image loop
    outputs: dict[str, Path] = field(default_factory=dict)  # name -> file or folder
    pixel_size_source: str = ""  # where the pixel size came from, for the user
    n_resumed: int = 0  # images whose labels an earlier run wrote (resume=True)


def find_label_files(inputs: Iterable[str | os.PathLike]) -> dict[str, Path]:
    """Map image ids (file stems) to label image files found in folders and/or files.

    Raises
    ------
    PhasesegInputError
        A path that does not exist, or two label files for one id.
    """
    found: dict[str, Path] = {}
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = sorted(
                f
                for f in p.iterdir()
                if f.suffix.lower() in LABEL_SUFFIXES and not f.name.startswith(".")
            )
        elif p.is_file():
            files = [p]
        else:
            raise io.PhasesegInputError(f"{p}: no such label file or folder")
        for f in files:
            if f.stem in found:
                raise io.PhasesegInputError(f"{f}: second label file for id {f.stem!r}")
            found[f.stem] = f
    return found


def _thumbnail(rgb: np.ndarray, max_side: int = 480) -> np.ndarray:
    from PIL import Image

    im = Image.fromarray(rgb)
    im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.asarray(im)


def _pick(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all when ``n <= k``)."""
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


@dataclass(frozen=True)
class MeasureOptions:
    """How each image is segmented (when a model does it)."""

    tta: bool = False
    cell_type: str | None = None
    min_score: float | None = None


@dataclass
class MeasuredImage:
    """One image's labels, overlay and measurements (:func:`measure_file`)."""

    image_id: str
    labels: np.ndarray  # int32 (H, W)
    cell_type: str | None  # whose thresholds were used; None for given labels
    overlay: np.ndarray  # uint8 (H, W, 3)
    cells: pd.DataFrame  # rows of measure_cells
    summary: dict[str, object]  # summarize_image's row
    resumed: bool = False  # labels read from an earlier run's output (not written again)


@dataclass(frozen=True)
class FrameJob:
    """What :func:`measure_file` needs for one frame of a file."""

    info: io.FrameInfo
    pixel_size: float | None
    label_file: Path | None = None  # labels read from here instead of the model
    resumed: bool = False  # label_file is an earlier run's output of this image


def measure_file(
    path: str | os.PathLike,
    file_id: str,
    jobs: list[FrameJob],
    model: Segmenter | None,
    options: MeasureOptions,
) -> list[MeasuredImage | str]:
    """Measure the frames of one image file: for each, a :class:`MeasuredImage` or the line
    saying why it was skipped (unreadable, no or unfitting label image). The one per-image
    pipeline of ``phaseseg measure``, in this process or as a Dask task."""
    out: list[MeasuredImage | str] = []
    try:
        for job, (_, image) in zip(jobs, io.iter_frames(path, file_id), strict=False):
            try:
                out.append(_measure_frame(image, job, model, options))
            except io.PhasesegInputError as e:
                out.append(str(e))
    except io.PhasesegInputError as e:  # the file failed part-way
        out.append(str(e))
    return out


def measure_file_task(
    file: tuple[str, str, list[FrameJob]], spec: ModelSpec | None, options: MeasureOptions
) -> list[MeasuredImage | str]:
    """:func:`measure_file` as a Dask task (``file``: absolute path, file id, frames); the
    worker's model (if any) is loaded once (:func:`phaseseg.distributed.worker_model`)."""
    from phaseseg.distributed import worker_model

    model = worker_model(spec) if spec is not None else None
    return measure_file(file[0], file[1], file[2], model, options)


def _measure_frame(
    image: np.ndarray, job: FrameJob, model: Segmenter | None, options: MeasureOptions
) -> MeasuredImage:
    info = job.info
    lab, used_type = _labels_for(
        image,
        info.path,
        model,
        {info.image_id: job.label_file} if job.label_file is not None else None,
        options.tta,
        options.cell_type,
        options.min_score,
        info.image_id,
    )
    if job.resumed:
        used_type = read_label_metadata(job.label_file).get("cell_type")
    cells = measure_cells(lab, image, info.image_id, job.pixel_size)
    row = summarize_image(lab, info.image_id, cells, job.pixel_size)
    drawn = overlay(image, lab)
    return MeasuredImage(info.image_id, lab, used_type, drawn, cells, row, job.resumed)


def measure_images(
    inputs: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    model: Segmenter | None = None,
    labels: list[str | os.PathLike] | None = None,
    pixel_size: float | None = None,
    time_pattern: str | None = None,
    tta: bool | None = None,
    cell_type: str | None = None,
    n_report_overlays: int = 12,
    min_score: float | None = None,
    rois_dir: str | os.PathLike | None = None,
    name_pattern: str | None = None,
    resume: bool = False,
    client: Client | None = None,
    model_spec: ModelSpec | None = None,
) -> MeasureSummary:
    """Segment (or read labels for) images, measure every cell and write the outputs.

    Parameters
    ----------
    inputs : list of paths
        Image files and/or folders, searched recursively (see
        :func:`phaseseg.io.find_image_files`: an image in a sub-folder keeps it in its id,
        ``plate1__A1__f1``).
    out_dir : path
        Created if needed. Receives ``cells.csv``, ``images.csv``, ``timecourse.csv`` and
        ``timecourse.png`` (when time points are found), ``labels/<id>.tif``,
        ``overlays/<id>.png`` and ``report.html``.
    model : phaseseg.segment.segmenter.Segmenter, optional
        Segments the images; needed unless ``labels`` is given.
    labels : list of paths, optional
        Label images (folders and/or files) matched to images by file stem; used instead of
        the model.
    pixel_size : float, optional
        Microns per pixel (adds µm columns; density per mm²). Default: each image's pixel size
        from its metadata (:mod:`phaseseg.io.microscopy`), when every image has one.
    time_pattern : str, optional
        Regex for :func:`compile_time_pattern`; default: LIVECell file names.
    tta : bool, optional
        Flip test-time augmentation when segmenting (default: ``model.tta``).
    cell_type : str, optional
        Culture type whose thresholds the model uses for every image (one of the model's
        types); default: predicted per image. Give it for a time series of one culture, so
        that all time points are post-processed alike.
    n_report_overlays : int
        Overlays shown in the report (spread over time, or over the input order).
    min_score : float in [0, 1], optional
        Overrides the model's tuned ``min_score`` for this run (0 keeps uncertain cells).
    rois_dir : path, optional
        Receives one Fiji ROI set per image, ``<image_id>.zip`` (:mod:`phaseseg.io.rois`).
    name_pattern : str, optional
        Regex for :func:`compile_name_pattern` (groups ``plate``, ``well``, ``field``, time),
        searched in each image's path below its input folder; default: LIVECell / IncuCyte
        names give ``well``, ``field`` and the time. Not together with ``time_pattern``.
    resume : bool
        Images whose label TIFF and overlay (and ROI set) an earlier run wrote are not
        segmented again: their labels are read back (with the cell type stored in the TIFF)
        and measured, so the CSVs and the report cover every image.
    client : distributed.Client, optional
        Run one task per file on this Dask cluster (workers load ``model_spec``, default the
        bundled model); the outputs are those of a run in this process, written here in
        input order.

    A file holding several frames (multi-page TIFF, time-lapse) is measured frame by frame:
    one image per frame, with the id ``<id>_t003`` and the frame's time from the metadata
    (:func:`frame_time`).

    Returns
    -------
    MeasureSummary
        An image that cannot be read, has no label file, or whose labels do not fit it is
        logged, listed in ``failed`` and skipped.
    """
    if model is None and labels is None:
        raise ValueError("give a model or label images")
    if pixel_size is not None and not (math.isfinite(pixel_size) and pixel_size > 0):
        raise io.PhasesegInputError(f"--pixel-size must be a positive number, got {pixel_size}")
    if time_pattern is not None and name_pattern is not None:
        raise io.PhasesegInputError("give --time-from or --name-pattern, not both")
    pattern = compile_time_pattern(time_pattern) if time_pattern is not None else None
    names_re = compile_name_pattern(name_pattern) if name_pattern is not None else None
    out = Path(out_dir)
    files = io.find_image_files(inputs, exclude=[out, rois_dir])
    label_files = find_label_files(labels) if labels is not None else None
    if cell_type is not None and label_files is None:
        model.check_cell_type(cell_type, "--cell-type")
    if out.exists() and not out.is_dir():
        raise io.PhasesegInputError(f"{out}: exists and is not a folder")
    frames, names, file_ids, unreadable = _list_frames(files)
    sizes, size_note = _pixel_sizes(frames, pixel_size)
    if pixel_size is None and sizes and sizes[0] is not None:  # every image's metadata has one
        pixel_size = sizes[0]  # for the choice of columns and units; per image: sizes[i]
    fields = [parse_name(n, names_re) for n in names]
    if names_re is not None:
        times = [
            TimePoint(f.well or "all", f.elapsed_h) if f.elapsed_h is not None else None
            for f in fields
        ]
    else:
        times = [frame_time(f, pattern, n) for f, n in zip(frames, names, strict=True)]
    timed = [i for i, t in enumerate(times) if t is not None]
    if (pattern is not None or names_re is not None) and len(timed) < len(frames):
        missed = [f.image_id for f, t in zip(frames, times, strict=True) if t is None]
        log.warning(
            "%s matched no time in %d of %d image ids (e.g. %s)",
            "--time-from" if pattern is not None else "--name-pattern",
            len(missed),
            len(frames),
            missed[0],
        )
    order = sorted(timed, key=lambda i: (times[i].well, times[i].elapsed_h)) if timed else []
    order += [i for i in range(len(frames)) if times[i] is None]
    rank = {idx: r for r, idx in enumerate(order)}  # report order: by well and time
    shown = {order[j] for j in _pick(len(order), n_report_overlays)}
    jobs = _frame_jobs(frames, file_ids, sizes, label_files, out, rois_dir, resume)

    summary = MeasureSummary(n_timed=len(timed), pixel_size_source=size_note)
    summary.failed.extend(unreadable)
    rows: list[dict[str, object]] = []
    dist: dict[str, list[np.ndarray]] = {"area": [], "neurite": [], "hours": []}
    thumbs: dict[int, tuple[np.ndarray, str]] = {}
    (out / "labels").mkdir(parents=True, exist_ok=True)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    cells_csv = out / "cells.csv"
    tta = model.uses_tta(tta) if model is not None else bool(tta)
    options = MeasureOptions(tta, cell_type, min_score)
    with io.atomic_path(cells_csv) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        header = True
        if client is None:
            results = _local_results(jobs, model, options)
        else:
            spec = None
            if label_files is None:
                from phaseseg.distributed import ModelSpec

                spec = model_spec if model_spec is not None else ModelSpec()
            results = _cluster_results(jobs, client, spec, options)
        for i, outcome in results:
            info = frames[i]
            path, image_id = info.path, info.image_id
            if isinstance(outcome, str):
                log.error("skipped: %s", outcome)
                summary.failed.append(outcome)
                continue
            lab, rgb, cells, used_type = (
                outcome.labels,
                outcome.overlay,
                outcome.cells,
                outcome.cell_type,
            )
            if not outcome.resumed:
                meta = {"cell_type": used_type} if used_type is not None else None
                write_labels(out / "labels" / f"{image_id}.tif", lab, metadata=meta)
                write_png(out / "overlays" / f"{image_id}.png", rgb)
                if rois_dir is not None:
                    write_rois(Path(rois_dir) / f"{image_id}.zip", lab)
            else:
                summary.n_resumed += 1
            cells.to_csv(fh, header=header, index=False, float_format="%.6g")
            header = False
            row = outcome.summary
            row["file"] = str(path)
            if sizes[i] is not None:
                row["pixel_size_um"] = sizes[i]
            if used_type is not None:
                row["cell_type"] = used_type
            name = fields[i]
            if name.plate is not None:
                row["plate"] = name.plate
            if times[i] is not None:
                row["well"], row["elapsed_h"] = times[i].well, times[i].elapsed_h
            elif name.well is not None and names_re is not None:
                row["well"] = name.well
            if name.field is not None:
                row["field"] = name.field
            rows.append(row)
            area_col = "area_um2" if pixel_size is not None else "area_px"
            dist["area"].append(cells[area_col].to_numpy(float))
            dist["neurite"].append(cells["neurite_index"].to_numpy(float))
            hours = times[i].elapsed_h if times[i] is not None else math.nan
            dist["hours"].append(np.full(len(cells), hours))
            if i in shown:
                caption = image_id if times[i] is None else f"{times[i].well}, {hours:g} h"
                thumbs[rank[i]] = (_thumbnail(rgb), f"{caption}: {len(cells)} cells")
            summary.n_images += 1
            summary.n_cells += len(cells)
            log.debug("%s: %d cells", path, len(cells))
        if summary.failed and not summary.n_images:  # keep the outputs of an earlier run
            raise io.PhasesegInputError(
                f"no image could be measured: {summary.failed[0]}"
                + (f" (and {len(summary.failed) - 1} more)" if len(summary.failed) > 1 else "")
            )
        if header:  # no image measured: still a valid CSV with its header
            cols = [c.name for c in COLUMNS["cells.csv"] if not c.when or pixel_size is not None]
            fh.write(",".join(cols) + "\n")
    summary.seconds = time.perf_counter() - start
    summary.outputs.update(cells=cells_csv, labels=out / "labels", overlays=out / "overlays")
    if rois_dir is not None:
        summary.outputs["Fiji ROI sets"] = Path(rois_dir)

    images = _images_frame(rows, pixel_size)
    if cell_type is None and "cell_type" in images.columns and images["cell_type"].nunique() > 1:
        counts = ", ".join(f"{t} {n}" for t, n in images["cell_type"].value_counts().items())
        message = (
            f"the model predicted different cell types for these images ({counts}), so their "
            "cells were post-processed with different thresholds; for one culture, give "
            "--cell-type"
        )
        log.warning(message)
        summary.warnings.append(message)
    with io.atomic_path(out / "images.csv") as tmp:
        images.to_csv(tmp, index=False)
    summary.outputs["images"] = out / "images.csv"
    tc = timecourse(images) if "elapsed_h" in images.columns else None
    tc_png = None
    if tc is not None and len(tc):
        with io.atomic_path(out / "timecourse.csv") as tmp:
            tc.to_csv(tmp, index=False)
        from phaseseg.analysis.report import figure_png

        tc_png = figure_png(plot_timecourse(tc), dpi=110)
        with io.atomic_path(out / "timecourse.png") as tmp:
            tmp.write_bytes(tc_png)
        summary.outputs.update(timecourse=out / "timecourse.csv", plot=out / "timecourse.png")
    html = _report_html(images, tc, tc_png, dist, thumbs, summary, pixel_size)
    with io.atomic_path(out / "report.html") as tmp:
        tmp.write_text(html, encoding="utf-8")
    summary.outputs["report"] = out / "report.html"
    return summary


_FileJobs = tuple[Path, str, list[int], list[FrameJob]]  # path, file id, frame indices, jobs


def _frame_jobs(
    frames: list[io.FrameInfo],
    file_ids: list[str],
    sizes: list[float | None],
    label_files: dict[str, Path] | None,
    out: Path,
    rois_dir: str | os.PathLike | None,
    resume: bool,
) -> list[_FileJobs]:
    """The frames grouped by file, in order, each with its pixel size and label source:
    ``--labels``, else (``resume``) an earlier run's complete output, else the model."""
    files: list[_FileJobs] = []
    for i, (info, size) in enumerate(zip(frames, sizes, strict=True)):
        label_file, resumed = None, False
        if label_files is not None:
            label_file = label_files.get(info.image_id)
        elif resume:
            done = [out / "labels" / f"{info.image_id}.tif"]
            done.append(out / "overlays" / f"{info.image_id}.png")
            if rois_dir is not None:
                done.append(Path(rois_dir) / f"{info.image_id}.zip")
            if all(f.is_file() for f in done):
                label_file, resumed = done[0], True
        if not files or files[-1][0] != info.path:
            files.append((info.path, file_ids[i], [], []))
        files[-1][2].append(i)
        files[-1][3].append(FrameJob(info, size, label_file, resumed))
    return files


def _local_results(
    files: list[_FileJobs], model: Segmenter | None, options: MeasureOptions
) -> Iterator[tuple[int, MeasuredImage | str]]:
    """``(frame index, result or skip line)`` of every frame, measured in this process."""
    n = sum(len(f[2]) for f in files)
    with tqdm(total=n, desc="measure", unit="img") as bar:
        for path, file_id, indices, jobs in files:
            outcomes = measure_file(path, file_id, jobs, model, options)
            yield from _spread(indices, outcomes)
            bar.update(len(indices))


def _spread(
    indices: list[int], outcomes: list[MeasuredImage | str]
) -> Iterator[tuple[int, MeasuredImage | str]]:
    """Pair a file's outcomes with its frame indices (a file that failed part-way has fewer
    outcomes; its last line says why)."""
    yield from zip(indices, outcomes, strict=False)


def _cluster_results(
    files: list[_FileJobs], client: Client, spec: ModelSpec | None, options: MeasureOptions
) -> Iterator[tuple[int, MeasuredImage | str]]:
    """The same as :func:`_local_results`, one Dask task per file."""
    from phaseseg.distributed import map_ordered
    from phaseseg.distributed.ordered import TaskFailed

    def on_workers(job: FrameJob) -> FrameJob:  # workers may run in other folders
        label_file = job.label_file.resolve() if job.label_file is not None else None
        return replace(job, label_file=label_file)

    tasks = [
        (str(Path(p).resolve()), file_id, [on_workers(j) for j in jobs])
        for p, file_id, _, jobs in files
    ]
    n = sum(len(f[2]) for f in files)
    with tqdm(total=n, desc="measure", unit="img") as bar:
        results = map_ordered(
            client,
            measure_file_task,
            tasks,
            spec,
            options,
        )
        for k, outcomes in results:
            indices = files[k][2]
            if isinstance(outcomes, TaskFailed):
                outcomes = [f"{files[k][0]}: failed on the cluster ({outcomes})"]
            yield from _spread(indices, outcomes)
            bar.update(len(indices))


def _labels_for(
    image: np.ndarray,
    path: Path,
    model: Segmenter | None,
    label_files: dict[str, Path] | None,
    tta: bool,
    cell_type: str | None,
    min_score: float | None = None,
    image_id: str | None = None,
) -> tuple[np.ndarray, str | None]:
    """Labels of one image (from a label file named by ``image_id``, default the file's id,
    else the model) and the predicted cell type."""
    key = image_id if image_id is not None else io.image_id(path)
    if label_files is None or key not in label_files:
        if model is None:
            raise io.PhasesegInputError(f"{path}: no label image named {key}.tif/.png")
        result = model.segment_full(image, tta=tta, cell_type=cell_type, min_score=min_score)
        return result.labels, result.cell_type
    lab = read_labels(label_files[key])
    if lab.shape != image.shape:
        raise io.PhasesegInputError(
            f"{label_files[key]}: labels {lab.shape} do not fit image {key} {image.shape}"
        )
    return lab, None


def _list_frames(
    files: list[io.ImageFile],
) -> tuple[list[io.FrameInfo], list[str], list[str], list[str]]:
    """Every frame of every file (from the headers), each frame's name for
    :func:`parse_name` (its path below the input folder), its file's id, and one line per
    unreadable file."""
    frames: list[io.FrameInfo] = []
    names: list[str] = []
    file_ids: list[str] = []
    failed: list[str] = []
    for file in files:
        try:
            infos = io.frame_infos(file.path, file.image_id)
        except io.PhasesegInputError as e:
            log.error("skipped: %s", e)
            failed.append(str(e))
            continue
        folder = file.relative.rpartition("/")[0]
        for info in infos:
            own = io.image_id(file.path) + info.image_id[len(file.image_id) :] + file.path.suffix
            frames.append(info)
            names.append(f"{folder}/{own}" if folder else own)
            file_ids.append(file.image_id)
    seen: dict[str, Path] = {}
    for f in frames:
        if f.image_id in seen and seen[f.image_id] != f.path:
            raise io.PhasesegInputError(
                f"{f.path}: frame id {f.image_id!r} is also the id of {seen[f.image_id]}"
            )
        seen[f.image_id] = f.path
    return frames, names, file_ids, failed


def _pixel_sizes(
    frames: list[io.FrameInfo], pixel_size: float | None
) -> tuple[list[float | None], str]:
    """The pixel size of every frame (``--pixel-size``, else the metadata's when every frame
    has one) and a line saying where it came from."""
    if pixel_size is not None:
        return [pixel_size] * len(frames), f"pixel size {pixel_size:g} µm (--pixel-size)"
    known = {f.pixel_size for f in frames if f.pixel_size is not None}
    n_known = sum(f.pixel_size is not None for f in frames)
    if not known:
        return [None] * len(frames), ""
    if n_known < len(frames):
        missing = next(f for f in frames if f.pixel_size is None)
        message = (
            f"pixel size in the metadata of {n_known} of {len(frames)} images but not of "
            f"{missing.path}; no µm columns (give --pixel-size)"
        )
        log.warning(message)
        return [None] * len(frames), message
    values = ", ".join(f"{v:.4g}" for v in sorted(known)[:3]) + (", ..." if len(known) > 3 else "")
    return [f.pixel_size for f in frames], f"pixel size {values} µm (from the images' metadata)"


def frame_time(
    info: io.FrameInfo, pattern: re.Pattern[str] | None = None, name: str | None = None
) -> TimePoint | None:
    """Well and time of an image or of one frame of a stack.

    1. The image's ``name`` (default: its id and suffix; the file's name, not its folders, is
       searched) matched by ``pattern`` (:func:`parse_time`; default: LIVECell names), so
       ``--time-from '_t(?P<hours>\\d+)'`` reads a frame index as hours;
    2. else, for a frame of a stack, its time in the file's metadata (OME ``DeltaT``,
       ImageJ ``finterval``), added to the time in the file's name if it has one; the well is
       the name's, else the file's id.
    """
    tp = parse_time(name if name is not None else info.image_id + info.path.suffix, pattern)
    if tp is not None or not info.in_stack or info.time_h is None:
        return tp
    file_id = io.image_id(info.path)
    start = parse_time(file_id + info.path.suffix, pattern)
    well = start.well if start is not None and start.well != "all" else file_id
    return TimePoint(well, (start.elapsed_h if start is not None else 0.0) + info.time_h)


def _images_frame(rows: list[dict[str, object]], pixel_size: float | None) -> pd.DataFrame:
    def present(c: Column) -> bool:
        if c.when == _PS:
            return pixel_size is not None
        if c.when == _NO_PS:
            return pixel_size is None
        return not c.when or any(c.name in r for r in rows)

    columns = [c.name for c in COLUMNS["images.csv"] if present(c)]
    frame = pd.DataFrame(rows, columns=columns)
    if "elapsed_h" in frame.columns:
        frame = frame.astype({"elapsed_h": float})
    return frame


def _report_html(
    images: pd.DataFrame,
    tc: pd.DataFrame | None,
    tc_png: bytes | None,
    dist: dict[str, list[np.ndarray]],
    thumbs: dict[int, tuple[np.ndarray, str]],
    summary: MeasureSummary,
    pixel_size: float | None,
) -> str:
    from phaseseg.analysis.report import Section, figure_png, render_html

    sections = []
    if tc_png is not None and tc is not None:
        first, last = tc.iloc[0], tc.iloc[-1]
        text = (
            f"{len(tc)} time points in {tc['well'].nunique()} well(s). "
            f"From {first['elapsed_h']:g} h to {last['elapsed_h']:g} h "
            f"(well {last['well']}): {first['cells_per_image']:g} -> "
            f"{last['cells_per_image']:g} cells per image, confluence "
            f"{first['confluence_pct']:g}% -> {last['confluence_pct']:g}%."
        )
        sections.append(Section("Time course", text, tc_png, tc))
    table, same = _varying_columns(images.drop(columns=["file"]))
    sections.append(
        Section(
            "Images",
            f"{summary.n_images} images measured, {summary.n_cells} cells"
            + (f"; {len(summary.failed)} skipped" if summary.failed else "")
            + (f". The same for every image: {same}" if same else "")
            + ". The full table is images.csv; its columns are documented in "
            "docs/measure_columns.md.",
            table=table,
        )
    )
    if summary.n_cells:
        sections.append(
            Section(
                "Cell size and shape",
                "Distributions over all cells"
                + (" (earliest and latest time point)." if tc is not None and len(tc) > 1 else "."),
                figure_png(_plot_distributions(dist, pixel_size), dpi=100),
            )
        )
    if thumbs:
        sections.append(
            Section(
                "Overlays",
                f"{len(thumbs)} of {summary.n_images} images with each cell's outline; "
                "full-size overlays are in overlays/.",
                figure_png(_plot_thumbs(thumbs), dpi=100, palette=True),
            )
        )
    if summary.warnings:
        sections.insert(0, Section("Warnings", " | ".join(summary.warnings)))
    if summary.failed:
        sections.append(Section("Skipped images", " | ".join(summary.failed)))
    return render_html("phaseseg measure", sections, meta=f"{summary.n_images} images")


def _varying_columns(table: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """``table`` without the columns (but the first) that hold one value in every row, so it
    fits the page, and those columns as text (``"height_px 520, well B10"``)."""
    if len(table) < 2:
        return table, ""
    same = [c for c in table.columns[1:] if table[c].nunique(dropna=False) == 1]
    text = ", ".join(f"{c} {_text(table[c].iloc[0])}" for c in same)
    return table.drop(columns=same), text


def _text(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _plot_distributions(dist: dict[str, list[np.ndarray]], pixel_size: float | None) -> Figure:
    from phaseseg.analysis.report import new_figure

    area, neurite, hours = (np.concatenate(dist[k]) for k in ("area", "neurite", "hours"))
    fig = new_figure(figsize=(10, 3.5), layout="constrained")
    ax_a, ax_n = fig.subplots(1, 2)
    groups = [("all cells", np.ones(len(area), bool))]
    finite = hours[np.isfinite(hours)]
    if len(np.unique(finite)) > 1:
        lo, hi = finite.min(), finite.max()
        groups = [(f"{lo:g} h", hours == lo), (f"{hi:g} h", hours == hi)]
    positive = area[area > 0]
    bins_a = (
        np.geomspace(max(positive.min(), 1e-3), positive.max() * 1.01, 40) if len(positive) else 10
    )
    bins_n = np.linspace(0, max(float(np.nanpercentile(neurite, 99.5)), 1.0), 40)
    for name, sel in groups:
        kw = {"histtype": "step", "linewidth": 1.5, "label": f"{name} ({sel.sum()} cells)"}
        ax_a.hist(area[sel], bins=bins_a, **kw)
        ax_n.hist(np.clip(neurite[sel], 0, bins_n[-1]), bins=bins_n, **kw)
    ax_a.set_xscale("log")
    ax_a.set_xlabel("cell area (µm²)" if pixel_size is not None else "cell area (px)")
    ax_n.set_xlabel("neurite index (skeleton length / equivalent diameter; last bin: and above)")
    for ax in (ax_a, ax_n):
        ax.set_ylabel("cells")
        ax.legend(fontsize="small")
    return fig


def _plot_thumbs(thumbs: dict[int, tuple[np.ndarray, str]]) -> Figure:
    from phaseseg.analysis.report import new_figure

    n = len(thumbs)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    first = next(iter(thumbs.values()))[0]
    aspect = first.shape[0] / first.shape[1]
    fig = new_figure(figsize=(5.2 * cols, 5.2 * aspect * rows + 0.35 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, (_, (rgb, caption)) in zip(axes, sorted(thumbs.items()), strict=False):
        ax.imshow(rgb, interpolation="lanczos")
        ax.set_title(caption, fontsize=9)
    for ax in axes:
        ax.set_axis_off()
    return fig
