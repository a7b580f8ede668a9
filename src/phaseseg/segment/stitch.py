"""Labels of a large image from labels of its blocks: each cell once, whole, across borders.

A large image is cut into *cores* that tile it (:func:`block_grid`); each core grown by a
``margin`` (clipped to the image) is its *extended* block. Each extended block is segmented on
its own (with the network maps of the whole image, so a cell seen by two blocks is the same
cell). Then:

1. :func:`own_cells`: a block keeps the cells whose centroid lies in its core, whole, even
   where they reach into a neighbour's core, and numbers them 1..n. Centroids are compared in
   integer arithmetic, and cores do not overlap, so a cell that two blocks see alike is kept
   by exactly one of them. A cell is whole when the margin is wider than its reach from its
   centroid; a kept cell that touches the extended block's edge inside the image is counted
   as ``truncated`` (the margin was too narrow for it).
2. :func:`paint_core`: a core's output pixels are the kept cells of the blocks whose extended
   box overlaps it, each block's numbers shifted by its offset (the cells kept by the blocks
   before it) so that numbers are unique over the image; where two blocks' cells claim the
   same pixel, the core's own block wins.

This is the "keep what starts in your core" rule rather than Cellpose's ``distributed_eval``
(relabel blocks, join labels that touch across faces, relabel again), which joins distinct
cells that touch at a face: neurons in dense cultures do.

>>> grid = block_grid((6, 7), block=4, margin=1, align=1)
>>> [(b.index, b.core, b.ext_shape) for b in grid[1]]  # doctest: +NORMALIZE_WHITESPACE
[((1, 0), (slice(3, 6, None), slice(0, 4, None)), (4, 5)),
 ((1, 1), (slice(3, 6, None), slice(4, 7, None)), (4, 4))]
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Block:
    """One block of a large image: its index in the grid, core and extended box."""

    index: tuple[int, int]  # (row, column) in the grid
    core: tuple[slice, slice]  # the pixels whose cells this block reports; cores tile the image
    ext: tuple[slice, slice]  # the core grown by the margin, clipped to the image

    @property
    def ext_shape(self) -> tuple[int, int]:
        return (self.ext[0].stop - self.ext[0].start, self.ext[1].stop - self.ext[1].start)


def cut_points(length: int, block: int, align: int) -> list[int]:
    """Core borders along one side: ``ceil(length / block)`` cores of about equal size, inner
    borders rounded to multiples of ``align`` (chunks of the output array).

    >>> cut_points(4160, 2048, 256), cut_points(500, 2048, 256)
    ([0, 1280, 2816, 4160], [0, 500])
    """
    n = max(1, math.ceil(length / block))
    inner = [round(k * length / n / align) * align for k in range(1, n)]
    return sorted({0, length, *(p for p in inner if 0 < p < length)})


def block_grid(
    shape: tuple[int, int], block: int, margin: int, align: int = 256
) -> list[list[Block]]:
    """Rows of :class:`Block` covering an image of ``shape`` (H, W).

    Cores are about ``block`` px on a side (:func:`cut_points`); extended boxes reach
    ``margin`` px further on each side, within the image.
    """
    if block < 1 or margin < 0:
        raise ValueError(f"block must be positive and margin not negative: {block}, {margin}")
    ys, xs = cut_points(shape[0], block, align), cut_points(shape[1], block, align)
    rows = []
    for i, (y0, y1) in enumerate(zip(ys[:-1], ys[1:], strict=True)):
        row = []
        for j, (x0, x1) in enumerate(zip(xs[:-1], xs[1:], strict=True)):
            ext = (
                slice(max(0, y0 - margin), min(shape[0], y1 + margin)),
                slice(max(0, x0 - margin), min(shape[1], x1 + margin)),
            )
            row.append(Block((i, j), (slice(y0, y1), slice(x0, x1)), ext))
        rows.append(row)
    return rows


def own_cells(
    labels: np.ndarray, block: Block, shape: tuple[int, int]
) -> tuple[np.ndarray, int, int]:
    """The cells of an extended block that belong to its core.

    Parameters
    ----------
    labels : int (h, w) array
        Labels of the extended block ``block.ext`` (0 background).
    block : Block
    shape : (H, W)
        The whole image's shape (an extended box's edge on the image's edge cuts no cell).

    Returns
    -------
    owned : int32 (h, w)
        The cells whose centroid lies in the core, numbered 1..n (in the order of their
        labels); 0 elsewhere.
    n : int
        Their number.
    truncated : int
        How many of them touch an edge of the extended box that is not the image's edge.
    """
    flat = np.asarray(labels).ravel()
    h, w = labels.shape
    counts = np.bincount(flat)
    if counts.size <= 1:
        return np.zeros((h, w), np.int32), 0, 0
    (ey, ex), (cy, cx) = block.ext, block.core
    # sums of global coordinates, exact in float64 (integers far below 2**53)
    rows = np.broadcast_to(np.arange(ey.start, ey.stop, dtype=np.float64)[:, None], (h, w))
    cols = np.broadcast_to(np.arange(ex.start, ex.stop, dtype=np.float64)[None, :], (h, w))
    sum_y = np.bincount(flat, weights=rows.ravel()).astype(np.int64)
    sum_x = np.bincount(flat, weights=cols.ravel()).astype(np.int64)
    n_px = counts.astype(np.int64)
    # centroid in [start, stop)  <=>  start * n <= sum < stop * n  (integers: no rounding)
    owned = (n_px > 0) & (cy.start * n_px <= sum_y) & (sum_y < cy.stop * n_px)
    owned &= (cx.start * n_px <= sum_x) & (sum_x < cx.stop * n_px)
    owned[0] = False
    lut = np.zeros(counts.size, np.int32)
    n = int(owned.sum())
    lut[owned] = np.arange(1, n + 1, dtype=np.int32)
    out = lut[labels]
    edges = []
    if ey.start > 0:
        edges.append(out[0])
    if ey.stop < shape[0]:
        edges.append(out[-1])
    if ex.start > 0:
        edges.append(out[:, 0])
    if ex.stop < shape[1]:
        edges.append(out[:, -1])
    touching = np.unique(np.concatenate(edges)) if edges else np.zeros(0, np.int32)
    return out, n, int((touching > 0).sum())


def paint_core(block: Block, neighbours: Iterable[tuple[Block, np.ndarray, int]]) -> np.ndarray:
    """int32 labels of ``block``'s core from the kept cells of its neighbourhood.

    ``neighbours``: ``(other, owned, offset)`` triples, ``owned`` the other block's
    :func:`own_cells` labels over its extended box and ``offset`` the number of cells kept by
    the blocks before it; ``block`` itself among them. Cells get ``owned + offset``; the
    block's own cells are painted last, so they win a pixel two blocks claim.
    """
    (cy, cx) = block.core
    out = np.zeros((cy.stop - cy.start, cx.stop - cx.start), np.int32)
    ordered = sorted(neighbours, key=lambda t: t[0].index == block.index)  # own block last
    for other, owned, offset in ordered:
        (ey, ex) = other.ext
        y0, y1 = max(cy.start, ey.start), min(cy.stop, ey.stop)
        x0, x1 = max(cx.start, ex.start), min(cx.stop, ex.stop)
        if y0 >= y1 or x0 >= x1:
            continue
        part = owned[y0 - ey.start : y1 - ey.start, x0 - ex.start : x1 - ex.start]
        target = out[y0 - cy.start : y1 - cy.start, x0 - cx.start : x1 - cx.start]
        inside = part > 0
        target[inside] = part[inside] + offset
    return out


def reaching(grid: list[list[Block]], block: Block) -> list[Block]:
    """The blocks whose extended box overlaps ``block``'s core (itself included; its 3x3
    neighbourhood when the margin is narrower than the cores), in grid order."""
    (cy, cx) = block.core
    return [
        other
        for row in grid
        for other in row
        if other.ext[0].start < cy.stop
        and cy.start < other.ext[0].stop
        and other.ext[1].start < cx.stop
        and cx.start < other.ext[1].stop
    ]


def agreement(
    reference: np.ndarray, labels: np.ndarray, grid: list[list[Block]]
) -> dict[str, float]:
    """How a block-wise label image agrees with a reference (the in-memory result).

    ``reference``, ``labels``: int ``(H, W)`` label images; ``grid``: the blocks of
    ``labels``. Returns counts and fractions: ``n_reference``, ``n_labels``, ``matched``
    (one-to-one pairs with IoU > 0.5) and ``matched_fraction`` (of the reference's cells);
    over the reference cells that cross a core border: ``border_cells``, ``border_matched``
    and ``border_cut`` (cells split between two or more labels holding at least 20 % of the
    cell's pixels each); ``border_extra``: labels over a core border that match no
    reference cell.

    >>> grid = block_grid((4, 6), block=3, margin=1, align=1)
    >>> ref = np.array([[0, 1, 1, 1, 1, 0]] * 4)
    >>> agreement(ref, ref * 7, grid)["border_matched"], agreement(ref, ref * 7, grid)["border_cut"]
    (1.0, 0.0)
    """
    ref, lab = np.asarray(reference).ravel(), np.asarray(labels).ravel()
    ref_area, lab_area = np.bincount(ref), np.bincount(lab)
    both = (ref > 0) & (lab > 0)
    pairs, inter = np.unique(
        ref[both].astype(np.int64) * (len(lab_area) + 1) + lab[both], return_counts=True
    )
    r, c = pairs // (len(lab_area) + 1), pairs % (len(lab_area) + 1)
    iou = inter / (ref_area[r] + lab_area[c] - inter)
    good = iou > 0.5
    matched_ref = np.zeros(len(ref_area), bool)
    matched_ref[r[good]] = True
    matched_lab = np.zeros(len(lab_area), bool)
    matched_lab[c[good]] = True
    big_part = inter >= 0.2 * ref_area[r]
    parts = np.bincount(r[big_part], minlength=len(ref_area))
    cores = np.zeros(reference.shape, np.int64)
    for k, b in enumerate(x for row in grid for x in row):
        cores[b.core] = k
    core_id = cores.ravel()

    def crossing(flat: np.ndarray, n: int) -> np.ndarray:
        fg = flat > 0
        lo = np.full(n, np.iinfo(np.int64).max)
        hi = np.full(n, -1)
        np.minimum.at(lo, flat[fg], core_id[fg])
        np.maximum.at(hi, flat[fg], core_id[fg])
        out = hi > lo
        out[0] = False
        return out

    border_ref = crossing(ref, len(ref_area))
    border_lab = crossing(lab, len(lab_area))
    n_ref = int((ref_area[1:] > 0).sum())
    n_border = int(border_ref.sum())
    return {
        "n_reference": n_ref,
        "n_labels": int((lab_area[1:] > 0).sum()),
        "matched": int(matched_ref.sum()),
        "matched_fraction": float(matched_ref.sum() / max(n_ref, 1)),
        "border_cells": n_border,
        "border_matched": float((matched_ref & border_ref).sum() / max(n_border, 1)),
        "border_cut": float(((parts >= 2) & border_ref).sum() / max(n_border, 1)),
        "border_extra": int((border_lab & ~matched_lab & (lab_area > 0)).sum()),
    }
