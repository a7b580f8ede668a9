"""Training: one small loop, ``fit(config, out) -> model file``, and what it is made of.

* :mod:`~phaseseg.train.config`: :class:`TrainConfig` and the learning-rate schedule;
* :mod:`~phaseseg.train.targets`: label image -> the network's training targets;
* :mod:`~phaseseg.train.samples`: a data folder -> in-memory samples -> augmented random crops;
* :mod:`~phaseseg.train.loop`: :func:`fit` and its steps (batches, loss, moving average);
* :mod:`~phaseseg.train.make_dataset`: your images and label images -> a training folder.

Threshold tuning (:func:`tune_postprocess`, :func:`score_val`, :func:`retune`) belongs to
segmentation (:mod:`phaseseg.segment.tuning`) and is re-exported here.
"""

from phaseseg.segment.tuning import predict_val, retune, score_val, tune_postprocess
from phaseseg.train.config import TrainConfig, lr_factor
from phaseseg.train.loop import (
    fit,
    iter_batches,
    loss_fn,
    make_batch,
    train_step,
    update_ema,
)

__all__ = [
    "TrainConfig",
    "fit",
    "iter_batches",
    "loss_fn",
    "lr_factor",
    "make_batch",
    "predict_val",
    "retune",
    "score_val",
    "train_step",
    "tune_postprocess",
    "update_ema",
]
