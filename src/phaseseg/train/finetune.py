"""Fine-tuning in one call: your annotated images -> a model that knows your culture.

:func:`finetune` runs what ``make-dataset``, ``train --init`` and threshold tuning do, within a
wall-clock budget:

1. the images and their label images become a training folder (:func:`build_dataset`);
2. the init model (default: the bundled one) trains on them for the budget's minutes
   (:func:`phaseseg.train.fit` with ``TrainConfig.minutes``) with the defaults of
   :data:`FINETUNE_DEFAULTS` (encoder frozen, low learning rate, moving average of the
   weights); a culture the model does not know (``cell_type="mycells"``) is added to it as a
   new cell type;
3. the thresholds of the culture are tuned on the annotated images
   (:func:`phaseseg.segment.tuning.retune`): on all of them by default (they were also trained
   on, so the score it reports is in-sample and optimistic), or, with ``val_fold``, on a
   held-out fold that is not trained on.

Everything is written under ``<out>.finetune/`` (data set, training state, the model being
trained); ``out`` appears, atomically, only at the end, and the folder is then removed. An
interrupted run continues with ``resume=True``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from phaseseg import io
from phaseseg.nn.checkpoint import load_model_file
from phaseseg.train.config import TrainConfig
from phaseseg.train.make_dataset import build_dataset, check_cell_type_name, pair_label_images

log = logging.getLogger(__name__)

#: The training options of a fine-tune (measured in BENCHMARKS.md, *Fine-tuning on a few
#: images*): the encoder keeps its weights, every BatchNorm layer its statistics (crops of a
#: few images would replace them: that alone made a 5-minute fine-tune hurt), the decoder,
#: pixel head and type head train at a low learning rate with a short warm-up, the moving
#: average of the weights is kept, no validation during the run (the budget ends it).
FINETUNE_DEFAULTS: dict[str, Any] = {
    "lr": 1e-4,
    "freeze": "encoder",
    "bn_stats": "keep",
    "warmup_steps": 20,
    "ema_decay": 0.998,
    "batch_size": 8,
    "crop_size": 256,
    "steps": 100_000,  # a cap: the time budget ends the run
    "eval_every": 100_000,
    "checkpoint_every": 25,
}


def finetune_config(path: str | os.PathLike | None = None) -> TrainConfig:
    """The fine-tuning options: :class:`TrainConfig`'s defaults, then
    :data:`FINETUNE_DEFAULTS`, then the options of the JSON file ``path`` (if given).

    >>> cfg = finetune_config()
    >>> cfg.freeze, cfg.lr
    ('encoder', 0.0001)
    """
    options: dict[str, Any] = {}
    if path is not None:
        try:
            options = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise io.PhasesegInputError(f"{path}: not a readable JSON config ({e})") from None
        if not isinstance(options, dict):
            raise io.PhasesegInputError(f"{path}: not a JSON object of options")
    return TrainConfig.from_dict({**asdict(TrainConfig()), **FINETUNE_DEFAULTS, **options})


def tuning_reserve_s(n_images: int, minutes: float) -> float:
    """Seconds of the budget kept for everything but the training loop (loading the model and
    the images, building the data set, tuning the thresholds): 45 s + 12 s per image (measured
    on a loaded 2-core CPU), at most 40 % of it.

    >>> tuning_reserve_s(3, 10), tuning_reserve_s(100, 10), tuning_reserve_s(3, 1)
    (81.0, 240.0, 24.0)
    """
    return float(min(45 + 12 * n_images, 0.4 * 60 * minutes))


@dataclass
class FinetuneResult:
    """What :func:`finetune` did."""

    model_path: Path
    cell_type: str
    n_images: int  # annotated images given
    added: bool  # the cell type was new to the init model
    initialised_from: str | None  # the known type it started from (when added)
    steps: int  # training steps run
    train_seconds: float  # of the training loop
    total_seconds: float  # of the whole call
    tuned_on: str  # "fold 0" or "all 3 images (in-sample)"
    score: float | None  # the culture's score with its tuned thresholds, where tuned_on says
    config: dict[str, Any] = field(default_factory=dict)  # the training options used


def finetune(
    images: list[str | os.PathLike],
    labels_dir: str | os.PathLike,
    cell_type: str,
    out: str | os.PathLike,
    minutes: float = 10.0,
    init: str = "bundled",
    config: TrainConfig | None = None,
    val_fold: int | None = None,
    resume: bool = False,
    device: str | None = None,
) -> FinetuneResult:
    """Fine-tune ``init`` on ``images`` with their label images in ``labels_dir`` (as
    ``make-dataset --labels``) as the culture ``cell_type``, in about ``minutes`` of wall
    clock all told, and write the model to ``out``.

    ``config``: training options (default: :data:`FINETUNE_DEFAULTS` over
    :class:`TrainConfig`'s); its ``minutes``, ``init``, ``val_fold`` and ``tune`` are set
    here. ``val_fold``: hold out that fold of the images (dealt into up to 5 folds) for
    validation and tuning; default None: train on all of them, tune on all of them.
    """
    started = time.monotonic()
    if not minutes > 0:
        raise io.PhasesegInputError(f"minutes must be positive, got {minutes}")
    check_cell_type_name(cell_type)
    out = Path(out)
    work = out.with_name(out.name + ".finetune")
    pairs = pair_label_images(images, labels_dir)
    if not pairs:
        raise io.PhasesegInputError("no images given")
    n_folds = max(2, min(5, len(pairs)))
    if val_fold is not None and not 0 <= val_fold < n_folds:
        raise io.PhasesegInputError(
            f"val fold {val_fold}: {len(pairs)} images are dealt into folds 0..{n_folds - 1}"
        )
    if work.exists() and not resume:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    data = work / "data"
    if not data.is_dir():
        build_dataset(pairs, data, cell_type, n_folds=n_folds)
    budget_s = 60 * minutes
    train_s = max(budget_s - tuning_reserve_s(len(pairs), minutes), 0.1 * budget_s)
    base = asdict(config if config is not None else finetune_config())
    cfg = TrainConfig.from_dict(
        {**base, "minutes": train_s / 60, "init": init, "val_fold": val_fold, "tune": True}
    )
    known = list(_cell_types_of(init))
    log.info(
        "fine-tuning %s on %d images of %s: %s of training, then thresholds",
        init,
        len(pairs),
        cell_type,
        _minutes(train_s),
    )
    from phaseseg.segment.tuning import retune
    from phaseseg.train.loop import fit

    trained = work / "model.pt"
    result = fit(data, trained, cfg, resume=resume, device=device)
    if val_fold is None:
        scores = retune(trained, data, device=device, on="all")
        tuned_on = f"all {len(pairs)} images (in-sample)"
    else:
        scores, tuned_on = result.headline or {}, f"fold {val_fold}"
    payload = load_model_file(trained)
    with io.atomic_path(out) as tmp:
        shutil.copyfile(trained, tmp)
    config_out = out.with_name(out.stem + ".config.json")
    with io.atomic_path(config_out) as tmp:
        shutil.copyfile(trained.with_name(trained.stem + ".config.json"), tmp)
    shutil.rmtree(work, ignore_errors=True)
    added = payload.get("added_cell_types", {}).get(cell_type)
    return FinetuneResult(
        model_path=out,
        cell_type=cell_type,
        n_images=len(pairs),
        added=cell_type not in known,
        initialised_from=added["initialised_from"] if added else None,
        steps=result.steps,
        train_seconds=result.train_seconds,
        total_seconds=round(time.monotonic() - started, 1),
        tuned_on=tuned_on,
        score=scores.get(cell_type),
        config=asdict(result.config),
    )


def _cell_types_of(init: str) -> list[str]:
    from phaseseg.train.loop import InitModel

    model = InitModel.load(init)
    return model.cell_types if model is not None else list(io.CELL_TYPES)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"
