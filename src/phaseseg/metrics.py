"""Instance matching and the Sartorius competition score.

The score of one image is the mean, over IoU thresholds ``t`` in 0.50, 0.55, ..., 0.95, of

    precision(t) = TP(t) / (TP(t) + FP(t) + FN(t)),

where a true positive is a one-to-one match of a predicted instance to a ground-truth instance
with IoU *strictly* greater than ``t``. The final score is the mean of the image scores (counts
are not pooled over images). Edge cases (``TP + FP + FN = 0``):

* no ground truth and no prediction: precision 1 at every threshold, image score 1;
* no ground truth but predictions: precision 0 (all FP);
* ground truth but no predictions: precision 0 (all FN).

Matching follows cellpose's ``metrics.py``: the intersections of all overlapping (true, pred)
pairs are counted sparsely (the product of two sparse instance-by-pixel indicator matrices, so
only pixels covered by both sides cost anything), and the instances are matched one-to-one with
:func:`scipy.optimize.linear_sum_assignment` among the pairs above the threshold (maximum number
of matches). With non-overlapping predictions a true instance has at most one prediction with
IoU > 0.5, so the assignment is only run where a conflict exists.

IoUs are ``intersection / union`` of integer pixel counts, computed in float64. Two distinct
such fractions of images up to 10^7 pixels differ by far more than float64 rounding, so an IoU
that equals a threshold exactly (e.g. 11/20 = 0.55) compares equal to the threshold literal and
is *not* counted for it.

Ground truth in ``train.csv`` may overlap (slightly in most images, heavily in a few, and some
annotations are duplicated). :func:`score_tables` therefore scores each instance with its full
RLE mask (area and intersections), not with a painted label image in which shared pixels would
go to one cell only; the sparse product costs no more than painting. The same holds for the
predictions: a valid submission has no overlapping instances, but if it does (e.g. the truth
scored against itself, which gives exactly 1) each one is still scored with its full mask and a
warning is logged. :func:`iou_matrix` and :func:`matching` take label images, which cannot
overlap.

Examples
--------
>>> truth = np.array([[1, 1, 0, 0], [1, 1, 0, 2]])
>>> pred = np.array([[5, 5, 0, 0], [5, 0, 0, 0]])
>>> iou_matrix(truth, pred)
array([[0.75],
       [0.  ]])
>>> m = matching(truth, pred)
>>> m.tp.tolist()
[1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
>>> round(image_score(truth, pred), 4)
0.25
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.optimize import linear_sum_assignment

from phaseseg.io.errors import PhasesegInputError
from phaseseg.io.rle import rle_pixels, rle_runs

log = logging.getLogger(__name__)

THRESHOLDS: tuple[float, ...] = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
"""The competition's IoU thresholds (written as decimal literals so that ``IoU > t`` is exact)."""


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Matching:
    """Counts of a one-to-one matching at several IoU thresholds (one image).

    Attributes
    ----------
    thresholds : (T,) float64
    tp, fp, fn : (T,) int64
        Matched predictions, unmatched predictions, unmatched true instances.
    precision : (T,) float64
        ``tp / (tp + fp + fn)``; 1 where ``tp + fp + fn == 0`` (empty truth and prediction).
    n_true, n_pred : int
        Number of true and predicted instances.
    """

    thresholds: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    precision: np.ndarray
    n_true: int
    n_pred: int

    @property
    def score(self) -> float:
        """Competition score of the image: mean of ``precision`` over the thresholds."""
        return float(self.precision.mean())


@dataclass
class Scores:
    """Result of :func:`score_tables`.

    Attributes
    ----------
    score : float
        Mean image score over all images of the truth.
    per_cell_type : pd.Series
        Mean image score per cell type (index: cell type, sorted).
    per_threshold : pd.Series
        Mean precision over images per IoU threshold (index: threshold).
    per_image : pd.DataFrame
        One row per truth image, in order of first appearance: ``id, cell_type, n_true, n_pred,
        missing`` (image absent from the submission), ``score`` and one ``p@T`` precision
        column per threshold.
    """

    score: float
    per_cell_type: pd.Series
    per_threshold: pd.Series
    per_image: pd.DataFrame = field(repr=False)

    @property
    def n_images(self) -> int:
        """Number of scored (truth) images."""
        return len(self.per_image)

    @property
    def n_missing(self) -> int:
        """Number of truth images absent from the submission (scored 0)."""
        return int(self.per_image["missing"].sum())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: score, per cell type, per threshold, counts and image scores."""
        return {
            "score": self.score,
            "n_images": self.n_images,
            "n_missing": self.n_missing,
            "per_cell_type": {k: float(v) for k, v in self.per_cell_type.items()},
            "n_images_per_cell_type": {
                str(k): int(v) for k, v in self.per_image["cell_type"].value_counts().items()
            },
            "per_threshold": {f"{t:.2f}": float(v) for t, v in self.per_threshold.items()},
            "per_image": {
                str(r.id): float(r.score)
                for r in self.per_image[["id", "score"]].itertuples(index=False)
            },
        }


# --------------------------------------------------------------------------- label images


def _relabel(labels: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Map labels to ``0..n`` in increasing order; return flat int64 labels and areas (n,)."""
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
        raise ValueError(f"{name} must be an integer label image, got dtype {labels.dtype}")
    flat = labels.ravel().astype(np.int64, copy=False)
    if flat.size and flat.min() < 0:
        raise ValueError(f"{name} holds negative labels")
    if flat.size and flat.max() > 4 * flat.size:  # huge ids: sort instead of a huge bincount
        ids, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
        if ids[0] == 0:
            return inverse, counts[1:]
        return inverse + 1, counts
    counts = np.bincount(flat) if flat.size else np.zeros(1, dtype=np.int64)
    ids = np.flatnonzero(counts[1:]) + 1
    lut = np.zeros(len(counts), dtype=np.int64)
    lut[ids] = np.arange(1, len(ids) + 1)
    return lut[flat], counts[ids]


def _check_pair(true_labels: np.ndarray, pred_labels: np.ndarray) -> None:
    if np.shape(true_labels) != np.shape(pred_labels):
        raise ValueError(
            f"label images differ in shape: {np.shape(true_labels)} vs {np.shape(pred_labels)}"
        )


def _sparse_iou(
    true_inst: np.ndarray,
    true_pix: np.ndarray,
    true_area: np.ndarray,
    pred_inst: np.ndarray,
    pred_pix: np.ndarray,
    pred_area: np.ndarray,
    size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every overlapping (true, pred) pair of instances given as pixel lists.

    Parameters
    ----------
    true_inst, true_pix : (P,) int64
        For every pixel of every true instance: the instance index (0-based) and the flat pixel
        index. Instances may share pixels.
    true_area : (n_true,) int64
    pred_inst, pred_pix : (Q,) int64
        Same for the predicted instances.
    pred_area : (n_pred,) int64
    size : int
        Number of pixels of the image (``H * W``).

    Returns
    -------
    rows, cols : (K,) int64
        0-based true and predicted instance indices of the overlapping pairs.
    iou : (K,) float64
    """
    t = sparse.csr_matrix(
        (np.ones(len(true_pix), dtype=np.int64), (true_inst, true_pix)),
        shape=(len(true_area), size),
    )
    p = sparse.csr_matrix(
        (np.ones(len(pred_pix), dtype=np.int64), (pred_inst, pred_pix)),
        shape=(len(pred_area), size),
    )
    inter = (t @ p.T).tocoo()  # pair intersections, counted over shared pixels only
    rows, cols = inter.row.astype(np.int64), inter.col.astype(np.int64)
    union = true_area[rows] + pred_area[cols] - inter.data
    return rows, cols, inter.data / union


def _label_pixels(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Instance index (0-based) and flat index of every foreground pixel of relabelled labels."""
    pix = np.flatnonzero(flat)
    return flat[pix] - 1, pix


def iou_matrix(true_labels: np.ndarray, pred_labels: np.ndarray) -> np.ndarray:
    """Intersection over union of every pair of true and predicted instances.

    Parameters
    ----------
    true_labels, pred_labels : (H, W) int array
        Label images, 0 = background. Label ids need not be contiguous.

    Returns
    -------
    (n_true, n_pred) float64 array
        Rows and columns follow the sorted non-zero label ids present in each image
        (``np.unique(labels[labels > 0])``).
    """
    _check_pair(true_labels, pred_labels)
    true_flat, true_area = _relabel(true_labels, "true_labels")
    pred_flat, pred_area = _relabel(pred_labels, "pred_labels")
    rows, cols, iou = _sparse_iou(
        *_label_pixels(true_flat), true_area, *_label_pixels(pred_flat), pred_area, true_flat.size
    )
    out = np.zeros((len(true_area), len(pred_area)), dtype=np.float64)
    out[rows, cols] = iou
    return out


def _match(
    rows: np.ndarray,
    cols: np.ndarray,
    iou: np.ndarray,
    n_true: int,
    n_pred: int,
    thresholds: Sequence[float] | np.ndarray,
) -> Matching:
    """One-to-one matching at each threshold from the sparse IoU of overlapping pairs."""
    th = np.asarray(thresholds, dtype=np.float64)
    if th.ndim != 1 or len(th) == 0:
        raise ValueError("thresholds must be a non-empty 1-D sequence")
    keep = iou > th.min()
    rows, cols, iou = rows[keep], cols[keep], iou[keep]
    tp = np.zeros(len(th), dtype=np.int64)
    for k, t in enumerate(th):
        sel = iou > t
        r, c = rows[sel], cols[sel]
        if len(r) == 0:
            continue
        if np.bincount(r).max() == 1 and np.bincount(c).max() == 1:
            tp[k] = len(r)  # already one-to-one
            continue
        ur, ri = np.unique(r, return_inverse=True)
        uc, ci = np.unique(c, return_inverse=True)
        allowed = np.zeros((len(ur), len(uc)), dtype=np.float64)
        allowed[ri, ci] = 1.0
        i, j = linear_sum_assignment(allowed, maximize=True)  # maximum number of matches
        tp[k] = int(allowed[i, j].sum())
    fp = n_pred - tp
    fn = n_true - tp
    denom = tp + fp + fn
    precision = np.divide(tp, denom, out=np.ones(len(th)), where=denom > 0)
    return Matching(th, tp, fp, fn, precision, int(n_true), int(n_pred))


def matching(
    true_labels: np.ndarray,
    pred_labels: np.ndarray,
    thresholds: Sequence[float] = THRESHOLDS,
) -> Matching:
    """Match predicted to true instances one-to-one at each IoU threshold.

    Parameters
    ----------
    true_labels, pred_labels : (H, W) int array
        Label images, 0 = background; ids need not be contiguous.
    thresholds : sequence of float
        A pair can match at threshold ``t`` only if its IoU is strictly greater than ``t``.

    Returns
    -------
    Matching
        ``tp, fp, fn, precision`` per threshold (see :class:`Matching`).
    """
    _check_pair(true_labels, pred_labels)
    true_flat, true_area = _relabel(true_labels, "true_labels")
    pred_flat, pred_area = _relabel(pred_labels, "pred_labels")
    rows, cols, iou = _sparse_iou(
        *_label_pixels(true_flat), true_area, *_label_pixels(pred_flat), pred_area, true_flat.size
    )
    return _match(rows, cols, iou, len(true_area), len(pred_area), thresholds)


def image_score(true_labels: np.ndarray, pred_labels: np.ndarray) -> float:
    """Competition score of one image: mean precision over :data:`THRESHOLDS`.

    Parameters
    ----------
    true_labels, pred_labels : (H, W) int array
        Label images, 0 = background.

    Returns
    -------
    float
        In [0, 1]; 1 when both images are empty, 0 when exactly one is.
    """
    return matching(true_labels, pred_labels).score


# --------------------------------------------------------------------------- RLE tables


def _rle_pixels(
    rles: Sequence[str], shape: tuple[int, int], source: str, lines: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels of RLE-encoded instances, which may overlap.

    Returns ``inst`` and ``pix`` (P,) int64 (0-based instance index, flat pixel index) and
    ``area`` (n,) int64 of the non-empty instances, in order; empty RLEs are skipped.
    """
    try:
        inst, pix, area = rle_pixels(list(rles), shape)
    except PhasesegInputError:
        for rle, line in zip(rles, lines, strict=True):  # the first bad RLE, with its line
            try:
                rle_runs(rle, shape)
            except PhasesegInputError as e:
                raise PhasesegInputError(f"{source}, line {line}: {e}") from None
        raise
    keep = area > 0
    index = (np.cumsum(keep) - 1).astype(np.int64)  # position among the non-empty instances
    return index[inst], pix, area[keep]


def score_tables(
    truth_df: pd.DataFrame,
    submission_df: pd.DataFrame,
    thresholds: Sequence[float] = THRESHOLDS,
    truth_source: str = "truth",
    submission_source: str = "submission",
) -> Scores:
    """Score a submission table against a ground-truth table (the competition metric).

    Parameters
    ----------
    truth_df : pd.DataFrame
        ``train.csv`` rows (one per cell): ``id, annotation, width, height, cell_type``, as from
        :func:`phaseseg.io.read_train_csv`. Annotations may overlap; each true instance's full
        mask is used.
    submission_df : pd.DataFrame
        ``id, predicted`` rows (one per predicted cell; an empty ``predicted`` means no cell), as
        from :func:`phaseseg.io.read_submission`. RLEs are decoded with the truth's image size.
    thresholds : sequence of float
        IoU thresholds (strict ``>``); defaults to the competition's.
    truth_source, submission_source : str
        Names used in error messages (file paths).

    Returns
    -------
    Scores
        Overall, per cell type, per threshold and per image. Truth images absent from the
        submission score 0 (even one whose annotations are all empty, which scores 1 when the
        submission lists it with an empty prediction).

    Raises
    ------
    PhasesegInputError
        If the submission holds ids absent from the truth, or an RLE is malformed or out of the
        image.
    """
    th = np.asarray(thresholds, dtype=np.float64)
    truth_ids = pd.unique(truth_df["id"].astype(str))
    sub_ids = submission_df["id"].astype(str)
    unknown = pd.unique(sub_ids[~sub_ids.isin(set(truth_ids))])
    if len(unknown):
        shown = ", ".join(map(str, unknown[:5])) + (
            f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        )
        raise PhasesegInputError(
            f"{submission_source}: {len(unknown)} id(s) not in {truth_source}: {shown}"
        )
    truth_groups = truth_df.groupby(truth_df["id"].astype(str), sort=False).indices
    sub_groups = submission_df.groupby(sub_ids, sort=False).indices
    truth_rles = truth_df["annotation"].to_numpy()
    sub_rles = submission_df["predicted"].to_numpy()
    heights = truth_df["height"].to_numpy()
    widths = truth_df["width"].to_numpy()
    cell_types = truth_df["cell_type"].astype(str).to_numpy()

    from tqdm.auto import tqdm

    records = []
    n_overlapping = 0
    for image_id in tqdm(truth_ids, desc="scoring", unit="image", disable=None, leave=False):
        t_idx = truth_groups[image_id]
        shape = (int(heights[t_idx[0]]), int(widths[t_idx[0]]))
        t_inst, t_pix, t_area = _rle_pixels(
            truth_rles[t_idx], shape, truth_source, (t_idx + 2).tolist()
        )
        s_idx = sub_groups.get(image_id)
        missing = s_idx is None
        if missing:
            s_idx = np.zeros(0, dtype=np.int64)
        p_inst, p_pix, p_area = _rle_pixels(
            sub_rles[s_idx], shape, submission_source, (s_idx + 2).tolist()
        )
        size = shape[0] * shape[1]
        if len(p_pix) and np.bincount(p_pix, minlength=size).max() > 1:
            n_overlapping += 1
        rows, cols, iou = _sparse_iou(t_inst, t_pix, t_area, p_inst, p_pix, p_area, size)
        m = _match(rows, cols, iou, len(t_area), len(p_area), th)
        precision = np.zeros(len(th)) if missing else m.precision  # missing: 0 even if no truth
        records.append(
            {
                "id": image_id,
                "cell_type": cell_types[t_idx[0]],
                "n_true": m.n_true,
                "n_pred": m.n_pred,
                "missing": missing,
                "score": float(precision.mean()),
                **{f"p@{t:.2f}": p for t, p in zip(th, precision, strict=True)},
            }
        )
    if n_overlapping:
        log.warning(
            "%s: predicted instances overlap in %d image(s), which the competition forbids; "
            "each instance was scored with its full mask",
            submission_source,
            n_overlapping,
        )
    per_image = pd.DataFrame.from_records(
        records,
        columns=["id", "cell_type", "n_true", "n_pred", "missing", "score"]
        + [f"p@{t:.2f}" for t in th],
    )
    p_cols = [f"p@{t:.2f}" for t in th]
    per_threshold = pd.Series(
        per_image[p_cols].mean().to_numpy() if len(per_image) else np.full(len(th), np.nan),
        index=pd.Index(th, name="threshold"),
        name="precision",
    )
    per_cell_type = per_image.groupby("cell_type")["score"].mean().sort_index()
    score = float(per_image["score"].mean()) if len(per_image) else float("nan")
    return Scores(score, per_cell_type, per_threshold, per_image)
