"""Training: one small loop, ``fit(config, out) -> model file``, and what it is made of.

* :mod:`~phaseseg.train.config`: :class:`TrainConfig` and the learning-rate schedule;
* :mod:`~phaseseg.train.targets`: label image -> the network's training targets;
* :mod:`~phaseseg.train.samples`: a data folder -> in-memory samples -> augmented random crops;
* :mod:`~phaseseg.train.loop`: :func:`fit` (returns a :class:`FitResult`) and its steps
  (:func:`resolve_config`, :func:`load_data`, :func:`build_network`, batches, loss, moving
  average);
* :mod:`~phaseseg.train.make_dataset`: your images and label images -> a training folder.

Threshold tuning (:func:`tune_postprocess`, :func:`score_val`, :func:`retune`) belongs to
segmentation (:mod:`phaseseg.segment.tuning`) and is re-exported here.
"""

from phaseseg.segment.tuning import predict_val, retune, score_val, tune_postprocess
from phaseseg.train.config import TrainConfig, lr_factor
from phaseseg.train.loop import (
    FitResult,
    InitModel,
    TrainingData,
    build_network,
    config_path,
    fit,
    iter_batches,
    load_data,
    loss_fn,
    make_batch,
    resolve_config,
    train_step,
    update_ema,
)

__all__ = [
    "FitResult",
    "InitModel",
    "TrainConfig",
    "TrainingData",
    "build_network",
    "config_path",
    "fit",
    "iter_batches",
    "load_data",
    "loss_fn",
    "lr_factor",
    "make_batch",
    "predict_val",
    "resolve_config",
    "retune",
    "score_val",
    "train_step",
    "tune_postprocess",
    "update_ema",
]
