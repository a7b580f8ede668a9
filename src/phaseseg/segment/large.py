"""Images larger than memory: segmented block by block on Dask, written as OME-Zarr labels.

The result is the in-memory path's (:meth:`Segmenter.segment` on the whole array) up to the
order in which the watershed meets equally distant pixels, with memory bounded by the block
size, not the image. Four passes over a lazy ``(H, W)`` dask array:

1. **statistics**: the image's mean and standard deviation (and min-max for non-uint8), so
   that every tile is normalised as the whole image would be
   (:mod:`~phaseseg.segment.normalize`);
2. **network**: the image's tiles, laid out as the in-memory path lays them out over the
   whole image (:func:`~phaseseg.segment.tiling.tile_layout`), run once each through
   :func:`~phaseseg.segment.maps.iter_maps` (the one network path), a block's tiles per task;
   each tile's probabilities are kept on disk, in a Zarr array beside the output. The cell type
   is decided from all tiles, as in memory;
3. **labels**: each block, grown by ``margin`` px on each side (:mod:`~phaseseg.segment.stitch`),
   blends the tiles over it with the whole image's windows (the same maps as in memory, to
   float rounding), post-processes them
   (:func:`~phaseseg.segment.postprocess.maps_to_labels`) and keeps the cells whose centroid
   lies in its core (:func:`~phaseseg.segment.stitch.own_cells`);
4. **stitching**: each core's labels are painted from the kept cells of the blocks reaching
   it, numbered uniquely over the image (:func:`~phaseseg.segment.stitch.paint_core`), and
   written into the OME-Zarr label image's chunks (a task writes whole chunks only).

A cell is never cut at a block border or reported twice when the margin is wider than a
cell's reach from its centroid (the default 256 px is wider than any cell of the competition's
images); cells kept that touch their block's edge are counted as ``truncated`` and logged.

Tasks run on Dask's threaded scheduler with ``workers`` threads (default 1: on a CPU the
network already uses every core; memory grows with the number of blocks in flight).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from phaseseg.segment.maps import OVERLAP, TILE, iter_maps
from phaseseg.segment.normalize import scale_to_8bit, standardize
from phaseseg.segment.postprocess import maps_to_labels
from phaseseg.segment.segmenter import Segmenter, check_min_score
from phaseseg.segment.stitch import Block, block_grid, own_cells, paint_core, reaching
from phaseseg.segment.tiling import side_windows, tile_layout

log = logging.getLogger(__name__)

#: Core side of a block (px); post-processing memory grows with the block grown by the margin
#: (a whole process peaked at 1.1 GiB with 2048 and 256; BENCHMARKS.md).
BLOCK = 2048
#: Context around a block's core for post-processing (px); wider than a cell.
MARGIN = 256
#: Output chunk side (px); block borders fall on multiples of it.
CHUNK = 256


@dataclass
class LargeSegmentation:
    """What :func:`segment_large` did."""

    shape: tuple[int, int]
    n_cells: int  # cells kept (their labels are 1..n_cells)
    cell_type: str
    cell_type_probs: dict[str, float]
    n_blocks: int
    n_tiles: int
    truncated: int = 0  # kept cells that touch their block's edge: margin too narrow for them
    timings: dict[str, float] = field(default_factory=dict)  # pass -> seconds


@dataclass
class _Stats:
    lo: float  # min-max of a non-uint8 image (ignored for uint8)
    hi: float
    mean: float  # of the image on the 8-bit scale
    std: float


def image_stats(image: Any) -> _Stats:
    """Global normalisation statistics of a lazy ``(H, W)`` dask array (float64 sums)."""
    import dask.array as da

    lo = hi = 0.0
    if image.dtype != np.uint8:
        finite = da.isfinite(image)
        lo_, hi_ = da.compute(
            da.where(finite, image, np.inf).min(), da.where(finite, image, -np.inf).max()
        )
        lo, hi = float(lo_), float(hi_)
        if not np.isfinite(lo):
            from phaseseg.io.errors import PhasesegInputError

            raise PhasesegInputError("the image holds no finite values")
    img8 = _to_8bit(image, lo, hi)
    mean, sq = da.compute(img8.astype(np.float64).mean(), (img8.astype(np.float64) ** 2).mean())
    return _Stats(lo, hi, float(mean), float(np.sqrt(max(float(sq) - float(mean) ** 2, 0.0))))


def _to_8bit(image: Any, lo: float, hi: float) -> Any:
    if image.dtype == np.uint8:
        return image.astype(np.float32)
    return image.map_blocks(scale_to_8bit, lo, hi, dtype=np.float32)


def _normalized(region: np.ndarray, stats: _Stats) -> np.ndarray:
    img8 = (
        region.astype(np.float32)
        if region.dtype == np.uint8
        else scale_to_8bit(region, stats.lo, stats.hi)
    )
    return standardize(img8, stats.mean, stats.std)


@dataclass
class _Layout:
    """The whole image's tiles (as the in-memory path lays them out) and blending windows."""

    ys: list[int]
    xs: list[int]
    th: int
    tw: int
    wy: list[np.ndarray]
    wx: list[np.ndarray]
    wy_sum: np.ndarray
    wx_sum: np.ndarray

    @classmethod
    def of(cls, model: Segmenter, shape: tuple[int, int], tile: int, overlap: int) -> _Layout:
        config = model.net.config
        stride = int(config.stride)
        max_tile = max(stride, int(tile / float(getattr(config, "input_scale", 1.0))))
        ys, th = tile_layout(shape[0], max_tile, overlap, stride)
        xs, tw = tile_layout(shape[1], max_tile, overlap, stride)
        wy, wy_sum = side_windows(shape[0], ys, th, overlap)
        wx, wx_sum = side_windows(shape[1], xs, tw, overlap)
        return cls(ys, xs, th, tw, wy, wx, wy_sum, wx_sum)

    def over(self, box: tuple[slice, slice]) -> list[tuple[int, int]]:
        """Tiles (row, column) overlapping ``box``, in raster order."""
        ys, xs = box
        rows = [i for i, y in enumerate(self.ys) if y < ys.stop and ys.start < y + self.th]
        cols = [j for j, x in enumerate(self.xs) if x < xs.stop and xs.start < x + self.tw]
        return [(i, j) for i in rows for j in cols]


def segment_large(
    image: Any,
    model: Segmenter,
    labels_path: str | os.PathLike,
    *,
    block: int = BLOCK,
    margin: int = MARGIN,
    cell_type: str | None = None,
    min_score: float | None = None,
    tta: bool | None = None,
    batch_size: int | None = None,
    workers: int = 1,
    pixel_size: float | None = None,
    source: str | None = None,
    progress: Any = None,
) -> LargeSegmentation:
    """Segment a lazy ``(H, W)`` image block by block into an OME-Zarr label image.

    Parameters
    ----------
    image : dask.array.Array or numpy array
        Gray ``(H, W)``, any real dtype (uint8 as the network was trained on).
    model : Segmenter
    labels_path : path
        The OME-Zarr label image to write (:func:`phaseseg.io.large.create_label_image`),
        atomically: complete, or not there.
    block, margin : int
        Core side of a block and the context around it (px); memory grows with
        ``(block + 2 * margin) ** 2``.
    cell_type, min_score, tta, batch_size
        As :meth:`Segmenter.segment` (``tta`` default: ``model.tta``).
    workers : int
        Blocks in flight at once (Dask threads).
    pixel_size : float, optional
        µm per pixel, written into the labels' metadata.
    source : str, optional
        The image's path relative to ``labels_path``, written into the ``image-label``
        metadata.
    progress : tqdm-like, optional
        Its ``update(1)`` is called after each finished task; its ``total`` set when known.

    Returns
    -------
    LargeSegmentation
        Cell count, cell type, and how many cells were truncated by too narrow a margin.
    """
    import time

    import dask
    import dask.array as da

    tta = model.uses_tta(tta)
    import zarr

    from phaseseg.io.files import atomic_dir, temporary_name
    from phaseseg.io.large import create_label_image

    if cell_type is not None:
        model.thresholds(cell_type)
    if min_score is not None:
        check_min_score(min_score)
    if margin > block:
        raise ValueError(f"margin ({margin}) must not exceed block ({block})")
    image = image if isinstance(image, da.Array) else da.from_array(image, chunks=block)
    if image.ndim != 2:
        from phaseseg.io.errors import PhasesegInputError

        raise PhasesegInputError(f"expected a 2-D grayscale image, got shape {image.shape}")
    shape = (int(image.shape[0]), int(image.shape[1]))
    layout = _Layout.of(model, shape, TILE, OVERLAP)
    grid = block_grid(shape, block, margin, align=CHUNK)
    blocks = [b for row in grid for b in row]
    tiles_of = {b.index: _starting_in(layout, b) for b in blocks}
    timings: dict[str, float] = {}
    config = (
        dict(scheduler="synchronous")
        if workers <= 1
        else dict(scheduler="threads", num_workers=workers)
    )

    n_network = sum(1 for b in blocks if tiles_of[b.index])
    if progress is not None and hasattr(progress, "total"):
        progress.total = n_network + 2 * len(blocks)
        progress.refresh()

    def run(tasks: list) -> list:
        update = progress.update if progress is not None else None
        with dask.config.set(**config), _Progress(update):
            return list(dask.compute(*tasks))

    labels_path = Path(labels_path)
    with atomic_dir(labels_path) as tmp:
        work = tmp / ".work"
        t = time.perf_counter()
        stats = image_stats(image)
        timings["statistics"] = time.perf_counter() - t

        t = time.perf_counter()
        n_maps = model.net.config.n_pixel_outputs  # foreground, distance (and centre)
        tiles = zarr.open_array(
            str(work / "tiles.zarr"),
            mode="w",
            shape=(len(layout.ys), len(layout.xs), n_maps, layout.th, layout.tw),
            chunks=(1, 1, n_maps, layout.th, layout.tw),
            dtype="float32",
        )
        network = dask.delayed(_network_task, pure=False)
        tasks = []
        for b in blocks:
            ids = tiles_of[b.index]
            if not ids:
                continue
            box = _union(layout, ids)
            region = image[box]
            key = f"phaseseg-network-{b.index[0]}-{b.index[1]}"
            tasks.append(
                network(
                    region,
                    box,
                    ids,
                    layout,
                    stats,
                    model,
                    tiles,
                    tta,
                    batch_size,
                    dask_key_name=key,
                )
            )
        type_probs: dict[tuple[int, int], np.ndarray] = {}
        for result in run(tasks):
            type_probs.update(result)
        timings["network"] = time.perf_counter() - t

        names = model.cell_types
        total: np.ndarray | float = 0.0
        for tile_id in sorted(type_probs):  # raster order, as the in-memory path sums them
            total = total + type_probs[tile_id]
        mean_probs = np.asarray(total / len(type_probs), dtype=np.float32)
        used = cell_type or names[int(np.argmax(mean_probs))]
        params = model.thresholds(used, min_score).to_dict()
        log.debug("cell type %s (%s)", used, ", ".join(f"{p:.2f}" for p in mean_probs))

        t = time.perf_counter()
        eh = max(b.ext_shape[0] for b in blocks)
        ew = max(b.ext_shape[1] for b in blocks)
        kept = zarr.open_array(
            str(work / "blocks.zarr"),
            mode="w",
            shape=(len(grid), len(grid[0]), eh, ew),
            chunks=(1, 1, eh, ew),
            dtype="int32",
            fill_value=0,
        )
        label = dask.delayed(_label_task, pure=False)
        counts = run(
            [
                label(
                    b,
                    shape,
                    layout,
                    tiles,
                    kept,
                    params,
                    dask_key_name=f"phaseseg-labels-{b.index[0]}-{b.index[1]}",
                )
                for b in blocks
            ]
        )
        timings["labels"] = time.perf_counter() - t

        t = time.perf_counter()
        offsets, n_cells = {}, 0
        for b, (n, _) in zip(blocks, counts, strict=True):
            offsets[b.index] = n_cells
            n_cells += n
        truncated = sum(c[1] for c in counts)
        out = create_label_image(tmp, shape, chunks=CHUNK, pixel_size=pixel_size, source=source)
        paint = dask.delayed(_paint_task, pure=False)
        run(
            [
                paint(
                    b,
                    reaching(grid, b),
                    kept,
                    offsets,
                    out,
                    dask_key_name=f"phaseseg-stitch-{b.index[0]}-{b.index[1]}",
                )
                for b in blocks
            ]
        )
        shutil.rmtree(work)
        timings["stitching"] = time.perf_counter() - t
        if labels_path.exists():  # an earlier run's: replaced whole
            old = temporary_name(labels_path)
            labels_path.rename(old)
            shutil.rmtree(old)
    if truncated:
        log.warning(
            "%s: %d cells touch their block's margin (%d px) and may be cut; use a wider margin",
            labels_path,
            truncated,
            margin,
        )
    probs = {n: float(p) for n, p in zip(names, mean_probs, strict=True)}
    n_tiles = len(layout.ys) * len(layout.xs)
    return LargeSegmentation(shape, n_cells, used, probs, len(blocks), n_tiles, truncated, timings)


def _starting_in(layout: _Layout, b: Block) -> list[tuple[int, int]]:
    """The tiles whose top-left corner lies in ``b``'s core: each tile in one block."""
    (cy, cx) = b.core
    return [
        (i, j)
        for i, y in enumerate(layout.ys)
        if cy.start <= y < cy.stop
        for j, x in enumerate(layout.xs)
        if cx.start <= x < cx.stop
    ]


def _union(layout: _Layout, ids: list[tuple[int, int]]) -> tuple[slice, slice]:
    rows = [layout.ys[i] for i, _ in ids]
    cols = [layout.xs[j] for _, j in ids]
    return (slice(min(rows), max(rows) + layout.th), slice(min(cols), max(cols) + layout.tw))


def _network_task(
    region: np.ndarray,
    box: tuple[slice, slice],
    ids: list[tuple[int, int]],
    layout: _Layout,
    stats: _Stats,
    model: Segmenter,
    tiles: Any,
    tta: bool,
    batch_size: int | None,
) -> dict[tuple[int, int], np.ndarray]:
    """Run a block's tiles through the network; store their probabilities, return their
    cell-type probabilities."""
    x = _normalized(np.asarray(region), stats)
    y0, x0 = box[0].start, box[1].start
    crops = [
        x[
            layout.ys[i] - y0 : layout.ys[i] - y0 + layout.th,
            layout.xs[j] - x0 : layout.xs[j] - x0 + layout.tw,
        ]
        for i, j in ids
    ]
    maps = iter_maps(
        model.net,
        crops,
        model.device,
        precision=model.precision,
        tta=tta,
        batch_size=batch_size,
        tile=TILE,
        overlap=OVERLAP,
        normalized=True,
    )
    out = {}
    for (i, j), m in zip(ids, maps, strict=True):
        tiles[i, j] = np.stack(m.pixel_maps())
        out[(i, j)] = m.cell_type_probs
    return out


def block_maps(b: Block, layout: _Layout, tiles: Any) -> tuple[np.ndarray, ...]:
    """float32 foreground and distance maps (and the centre map, where the tiles hold one) over
    ``b``'s extended box, blended from the stored tiles exactly as
    :class:`~phaseseg.segment.maps.iter_maps` blends the whole image."""
    (ey, ex) = b.ext
    maps = np.zeros((tiles.shape[2], *b.ext_shape), np.float32)
    for i, j in layout.over(b.ext):
        y, x = layout.ys[i], layout.xs[j]
        weight = np.outer(layout.wy[i], layout.wx[j])
        blended = np.asarray(tiles[i, j]) * weight
        ya, yb = max(y, ey.start), min(y + layout.th, ey.stop)
        xa, xb = max(x, ex.start), min(x + layout.tw, ex.stop)
        part = blended[:, ya - y : yb - y, xa - x : xb - x]
        maps[:, ya - ey.start : yb - ey.start, xa - ex.start : xb - ex.start] += part
    for m in maps:
        m /= layout.wy_sum[ey, None]
        m /= layout.wx_sum[None, ex]
        np.clip(m, 0.0, 1.0, out=m)
    return tuple(maps)


def _label_task(
    b: Block,
    shape: tuple[int, int],
    layout: _Layout,
    tiles: Any,
    kept: Any,
    params: dict,
) -> tuple[int, int]:
    """Post-process a block with its margin; store the cells it keeps; return their number
    and how many of them touch the block's edge."""
    fg, dist, *centre = block_maps(b, layout, tiles)
    labels = maps_to_labels(fg, dist, **params, centre=centre[0] if centre else None)
    owned, n, truncated = own_cells(labels, b, shape)
    h, w = owned.shape
    kept[b.index[0], b.index[1], :h, :w] = owned
    return n, truncated


def _paint_task(b: Block, others: list[Block], kept: Any, offsets: dict, out: Any) -> None:
    """Write ``b``'s core of the label image from the cells kept by the blocks reaching it."""
    parts = []
    for o in others:  # read only the part of each block's cells over this core
        ys = slice(max(o.ext[0].start, b.core[0].start), min(o.ext[0].stop, b.core[0].stop))
        xs = slice(max(o.ext[1].start, b.core[1].start), min(o.ext[1].stop, b.core[1].stop))
        local = (
            slice(ys.start - o.ext[0].start, ys.stop - o.ext[0].start),
            slice(xs.start - o.ext[1].start, xs.stop - o.ext[1].start),
        )
        owned = np.asarray(kept[o.index[0], o.index[1], local[0], local[1]])
        parts.append((Block(o.index, o.core, (ys, xs)), owned, offsets[o.index]))
    out[b.core] = paint_core(b, parts)


class _Progress:
    """Calls ``update(1)`` after each finished ``phaseseg-`` task (local Dask schedulers)."""

    def __init__(self, update: Callable[[int], Any] | None):
        self.update = update
        self.callback: Any = None

    def __enter__(self) -> _Progress:
        if self.update is not None:
            from dask.callbacks import Callback

            update = self.update

            def posttask(key, result, dsk, state, worker_id):
                name = key[0] if isinstance(key, tuple) else key
                if str(name).startswith("phaseseg-"):
                    update(1)

            self.callback = Callback(posttask=posttask)
            self.callback.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.callback is not None:
            self.callback.__exit__(*exc)
