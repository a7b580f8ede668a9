"""Tuning the post-processing thresholds per cell type on a validation fold.

:func:`tune_postprocess` grid-searches :class:`~phaseseg.segment.postprocess.PostprocessParams`
on network maps of annotated images, :func:`score_val` scores maps with given thresholds as at
inference time, and :func:`retune` re-tunes a model file's thresholds on its validation fold.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from phaseseg import io
from phaseseg.metrics import image_score
from phaseseg.nn.checkpoint import load_model_file, save_model
from phaseseg.nn.device import pick_device
from phaseseg.nn.model import build_model
from phaseseg.progress import tqdm
from phaseseg.segment.maps import iter_maps
from phaseseg.segment.postprocess import (
    PostprocessParams,
    distance_maxima,
    maps_to_labels,
    remove_small,
    remove_uncertain,
)

if TYPE_CHECKING:
    from phaseseg.train.samples import Sample

log = logging.getLogger(__name__)


def predict_val(
    net, samples: list[Sample], device, precision: str = "auto"
) -> list[tuple[np.ndarray, ...]]:
    """Network maps ``(fg, dist, type_probs)`` of every validation sample (float32 ``(H, W)``,
    ``(H, W)``, ``(n_types,)``; then the ``(H, W)`` centre map of a network with a centre
    output), as at inference time. Every module is left in the mode (training or evaluation)
    it was in."""
    modes = [(m, m.training) for m in net.modules()]  # e.g. a frozen encoder stays in eval
    net.eval()
    images = (s.image for s in tqdm(samples, desc="val", leave=False))
    maps = [m.arrays() for m in iter_maps(net, images, device, precision=precision)]
    for module, training in modes:
        module.train(training)
    return maps


THRESHOLDS_BY = ("predicted", "declared")


def labels_of(maps: tuple[np.ndarray, ...], params: PostprocessParams, **extra) -> np.ndarray:
    """:func:`~phaseseg.segment.postprocess.maps_to_labels` of one image's maps
    (:func:`predict_val`'s tuple: its centre map, where there is one, is passed on)."""
    centre = maps[3] if len(maps) > 3 else None
    return maps_to_labels(maps[0], maps[1], **params.to_dict(), centre=centre, **extra)


def thresholds_by(data_cell_types: Sequence[str]) -> str:
    """How validation chooses each image's thresholds for a data set of these cell types:
    ``"declared"`` (the image's own type) when there is one, as in a ``make-dataset`` folder of
    one culture (segmented later with ``--cell-type``); else ``"predicted"`` (the type head's
    guess, as at inference time without ``--cell-type``).

    >>> thresholds_by(["shsy5y"]), thresholds_by(["astro", "cort", "shsy5y"])
    ('declared', 'predicted')
    """
    return "declared" if len(set(data_cell_types)) == 1 else "predicted"


def score_val(
    samples: list[Sample],
    maps: list[tuple[np.ndarray, ...]],
    params: dict[str, PostprocessParams],
    cell_types: Sequence[str] | None = None,
    by: str = "predicted",
) -> dict[str, float]:
    """Competition score (overall and per true cell type) with thresholds chosen by the
    *predicted* cell type, as at inference time (``by="predicted"``), or by each image's own,
    declared type (``by="declared"``, see :func:`thresholds_by`); plus the accuracy of the
    cell-type head. ``cell_types``: the head's classes in order (default
    :data:`phaseseg.io.CELL_TYPES`); a sample's ``cell_type`` indexes them."""
    if by not in THRESHOLDS_BY:
        raise ValueError(f"by must be one of {THRESHOLDS_BY}, got {by!r}")
    names = list(cell_types) if cell_types is not None else list(io.CELL_TYPES)
    per_type: dict[str, list[float]] = {t: [] for t in names}
    correct = 0
    for s, m in zip(samples, maps, strict=True):
        predicted, true = names[int(np.argmax(m[2]))], names[s.cell_type]
        correct += predicted == true
        chosen = predicted if by == "predicted" else true
        labels = labels_of(m, params[chosen])
        per_type[true].append(image_score(s.labels, labels))
    scores = {t: float(np.mean(v)) for t, v in per_type.items() if v}
    scores["overall"] = float(np.mean(list(itertools.chain(*per_type.values()))))
    scores["cell_type_accuracy"] = correct / len(samples)
    return scores


def tune_postprocess(
    samples: list[Sample],
    maps: list[tuple[np.ndarray, ...]],
    cell_types: Sequence[str] | None = None,
    by: str = "predicted",
    base: dict[str, PostprocessParams] | None = None,
) -> tuple[dict[str, PostprocessParams], dict[str, float]]:
    """Grid-search the thresholds per cell type on validation maps (by true cell type), in stages:
    threshold seeds over foreground x seed threshold x minimum size; then h-maxima seeds
    (height x floor) with the chosen foreground threshold and minimum size; where the maps hold
    a centre map, seeds from it (floor x height, 0: threshold seeds); then a minimum mean
    foreground probability per cell. A later stage is kept only where it scores higher.

    ``base``: the thresholds to start from (e.g. the init model's, or for a new cell type
    those of the closest known one): a type without validation images keeps its ``base``
    thresholds (:class:`PostprocessParams` defaults without one), and a type's ``base``
    thresholds are kept where no grid point scores higher.

    Returns the thresholds of every type in ``cell_types`` (default
    :data:`phaseseg.io.CELL_TYPES`) and their :func:`score_val` scores (thresholds chosen
    ``by`` the predicted or the declared type)."""
    names = list(cell_types) if cell_types is not None else list(io.CELL_TYPES)
    fg_grid, seed_grid = (0.3, 0.4, 0.5, 0.6), (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    size_grid = (0, 20, 40, 80, 120, 200)
    h_grid = (0.05, 0.1, 0.15, 0.2, 0.3)
    score_grid = (0.55, 0.6, 0.65, 0.7, 0.75, 0.8)
    centre_grid, centre_h_grid = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7), (0.0, 0.05, 0.1, 0.2)
    best: dict[str, PostprocessParams] = {}
    for t_index, name in enumerate(names):
        group = [(s, m) for s, m in zip(samples, maps, strict=True) if s.cell_type == t_index]
        start = (base or {}).get(name)
        if not group:
            best[name] = start if start is not None else PostprocessParams()
            continue
        results = []
        for fg_t, seed_t in tqdm(
            list(itertools.product(fg_grid, seed_grid)), desc=f"tune {name}", leave=False
        ):
            labelled = [(s.labels, maps_to_labels(m[0], m[1], fg_t, seed_t, 0)) for s, m in group]
            for min_size in size_grid:
                score = np.mean([image_score(t, remove_small(p, min_size)) for t, p in labelled])
                results.append((score, PostprocessParams(fg_t, seed_t, min_size)))
        score, params = max(results, key=lambda r: r[0])
        # second stage: h-maxima seeds, with the chosen foreground threshold and minimum size
        score, params = _best_seeds(group, score, params, "distance", h_grid, (0.1, 0.2, 0.3))
        # third stage: seeds from the centre map, where the network has one
        if all(len(m) > 3 for _, m in group):
            score, params = _best_seeds(group, score, params, "centre", centre_h_grid, centre_grid)
        # fourth stage: drop uncertain cells (low mean foreground probability)
        with_fg = [(s.labels, labels_of(m, params), m[0]) for s, m in group]
        for min_score in score_grid:
            trial_score = np.mean(
                [image_score(t, remove_uncertain(p, fg, min_score)) for t, p, fg in with_fg]
            )
            if trial_score > score:
                score, params = trial_score, replace(params, min_score=min_score)
        if start is not None:
            start_score = np.mean([image_score(s.labels, labels_of(m, start)) for s, m in group])
            if start_score >= score:
                log.info("%s: the starting thresholds score best (%.4f)", name, start_score)
                score, params = start_score, start
        log.info("tuned %s: %s -> %.4f", name, params, score)
        best[name] = params
    return best, score_val(samples, maps, best, names, by)


def _best_seeds(
    group: list[tuple[Sample, tuple[np.ndarray, ...]]],
    score: float,
    params: PostprocessParams,
    seeds: str,
    heights: Sequence[float],
    floors: Sequence[float],
) -> tuple[float, PostprocessParams]:
    """Try seeds from the ``seeds`` map (``"distance"`` or ``"centre"``) at every h-maxima
    height (0: threshold seeds) x floor, the rest of ``params`` kept; the best ``(score,
    params)``, the given ones where no trial scores higher. The h-maxima are computed once per
    height."""
    index = 1 if seeds == "distance" else 3  # the map's place in predict_val's tuple
    for seed_h in heights:
        maxima = [distance_maxima(m[index], seed_h) if seed_h else None for _, m in group]
        for seed_t in floors:
            trial = replace(params, seed_thresh=seed_t, seed_h=seed_h, seeds=seeds)
            trial_score = np.mean(
                [
                    image_score(s.labels, labels_of(m, trial, maxima=x))
                    for (s, m), x in zip(group, maxima, strict=True)
                ]
            )
            if trial_score > score:
                score, params = trial_score, trial
    return score, params


def retune(
    model_path: str | Path, data_dir: str | Path, device: str | None = None, on: str = "fold"
) -> dict:
    """Re-tune a model file's thresholds on its validation fold (e.g. after the grid changed),
    or with ``on="all"`` on every image of ``data_dir`` (as ``phaseseg finetune`` does with
    a few annotated images that were also trained on: in-sample, so its scores are
    optimistic; ``scores["tuned_on"]`` records which).

    The weights and everything else in the file stay as they are; ``postprocess`` (of the cell
    types the fold holds; the others keep theirs) and ``scores["tuned"]`` are replaced.
    Returns the new tuned scores.
    """
    from phaseseg.train.samples import load_samples, read_folds  # training data: only here

    if on not in ("fold", "all"):
        raise ValueError(f"on must be 'fold' or 'all', got {on!r}")
    payload = load_model_file(model_path)
    fold = payload.get("data", {}).get("val_fold")
    if fold is None and on == "fold":
        raise io.PhasesegInputError(f"{model_path}: trained without a validation fold")
    dev = pick_device(device)
    net = build_model(payload["net"]).to(dev).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    net.load_state_dict(payload["state_dict"])
    df = io.read_train_csv(Path(data_dir) / "train.csv")
    folds = read_folds(Path(data_dir), df)
    names = payload.get("cell_types", list(io.CELL_TYPES))
    by = thresholds_by(payload.get("data", {}).get("cell_types", names))
    ids = [i for i, f in folds.items() if on == "all" or f == fold]
    samples = load_samples(data_dir, ids, cell_types=names)
    if on == "all":
        by = thresholds_by([s.type_name for s in samples])
    base = {k: PostprocessParams(**v) for k, v in payload["postprocess"].items()}
    params, scores = tune_postprocess(samples, predict_val(net, samples, dev), names, by, base)
    where = f"fold {fold}" if on == "fold" else f"all {len(samples)} images (in-sample)"
    log.info("re-tuned thresholds on %s: %s", where, _fmt(scores))
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    meta["postprocess"] = _as_dicts(params)
    meta["scores"] = {**meta.get("scores", {}), "tuned": scores, "tuned_on": where}
    save_model(model_path, payload["state_dict"], meta)
    return scores


def _as_dicts(params: dict[str, PostprocessParams]) -> dict[str, dict]:
    return {k: v.to_dict() for k, v in params.items()}


def _fmt(scores: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4f}" for k, v in scores.items())
