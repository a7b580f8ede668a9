"""Cellpose 3 row of the peers benchmark; runs inside Cellpose's own virtual environment.

    CP=benchmarks/peers/.cp3venv/bin/python            # made by `make cellpose-venv`
    $CP benchmarks/peers/cellpose3.py train PREP --budget-s 3381 --out DIR --json T.json
    $CP benchmarks/peers/cellpose3.py predict MODEL PREP --out LABELS --json P.json

``PREP`` is the folder ``run.py`` writes with phaseseg: ``train/<id>.png`` with
``train/<id>_masks.tif`` (folds 1-4) and ``val/<id>.png`` (fold 0). This script imports only
Cellpose and its own dependencies, never phaseseg.

Training follows Cellpose 3's own API with its defaults (``models.CellposeModel`` with no
pretrained model = random initialisation, ``diam_mean=30``, grayscale ``channels=[0, 0]``;
``train.train_seg``: AdamW, learning rate 0.005, weight decay 1e-5, batch 8, 224-px crops,
rescaling every image to the 30-px mean diameter) except the length of the run, which is set so
that the training loop fills the wall-clock budget *and* Cellpose's learning-rate schedule runs
its full course (10 warm-up epochs, constant, then halving over the last 50 epochs when there are
more than 100, as in its recommended runs of 100s of epochs): an epoch is ``nimg_per_epoch`` = 16
random images (its documented option), and a probe of 6 such epochs (timed by Cellpose's own log
of the loop) sets ``n_epochs``. On 2 CPU cores a full pass over the 367 training images takes
about 5.5 minutes, so default epochs (all images) would end a one-hour budget inside the warm-up,
and 32-image epochs (about 95 of them) before any decay. Flows are computed once before
training (as phaseseg caches its targets) and timed separately. Prediction uses ``model.eval``
with its defaults (the diameter is the training set's mean, ``diam_labels``; flow threshold 0.4,
cell-probability threshold 0).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

log = logging.getLogger(__name__)
IMAGES_PER_EPOCH = 16
PROBE_EPOCHS = 6  # Cellpose logs the loop's elapsed time after epoch 5 (the 6th)


class _LoopTimes(logging.Handler):
    """Collects ``(epoch, seconds since the loop started)`` from Cellpose's training log."""

    def __init__(self) -> None:
        super().__init__()
        self.times: dict[int, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        match = re.match(r"(\d+), train_loss=.*time ([\d.]+)s", record.getMessage())
        if match:
            self.times[int(match.group(1))] = float(match.group(2))


def peak_memory_mib() -> float:
    """Peak resident memory of this process in MiB (Linux ``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_training_set(prep: Path, max_images: int | None) -> tuple[list, list]:
    """Images (uint8 (H, W)) and label images (int32 (H, W)) of ``prep/train``."""
    from cellpose import io as cp_io

    images, labels = [], []
    mask_paths = sorted((prep / "train").glob("*_masks.tif"))[:max_images]
    for mask_path in mask_paths:
        image_path = mask_path.with_name(mask_path.name.replace("_masks.tif", ".png"))
        images.append(cp_io.imread(str(image_path)))
        labels.append(tifffile.imread(mask_path).astype(np.int32))
    return images, labels


def train(args: argparse.Namespace) -> dict:
    """Train a Cellpose 3 network from scratch for the wall-clock budget; return a record."""
    import torch
    from cellpose import dynamics, models
    from cellpose import train as cp_train

    images, labels = load_training_set(args.prep, args.max_images)
    log.info("computing flows of %d label images", len(labels))
    t0 = time.perf_counter()
    flows = dynamics.labels_to_flows(labels, device=torch.device("cpu"))
    flow_seconds = time.perf_counter() - t0

    per_epoch = min(IMAGES_PER_EPOCH, len(images))
    loop_times = _LoopTimes()
    logging.getLogger("cellpose.train").addHandler(loop_times)

    def fit(n_epochs: int, out: Path) -> tuple[Path, float]:
        torch.manual_seed(0)
        model = models.CellposeModel(gpu=False, pretrained_model=False, diam_mean=30.0)
        loop_times.times.clear()
        t = time.perf_counter()
        path, _, _ = cp_train.train_seg(
            model.net,
            train_data=images,
            train_labels=flows,
            channels=[0, 0],
            n_epochs=n_epochs,
            nimg_per_epoch=per_epoch,
            save_path=str(out),
            model_name="cellpose3_fold0",
        )
        return Path(path), time.perf_counter() - t

    probe = min(PROBE_EPOCHS, max(1, int(args.budget_s)))  # quick mode: a 1-epoch probe
    with tempfile.TemporaryDirectory() as tmp:
        _, probe_seconds = fit(probe, Path(tmp))
    # the first epoch carries one-off costs: budget = first epoch + (n - 1) later epochs
    first = loop_times.times.get(0, probe_seconds / probe)
    last = loop_times.times.get(probe - 1)
    epoch_seconds = (last - first) / (probe - 1) if last and probe > 1 else first
    n_epochs = max(1, 1 + int((args.budget_s - first) // epoch_seconds))
    log.info(
        "an epoch of %d images takes %.1f s -> %d epochs for a %.0f s budget",
        per_epoch,
        epoch_seconds,
        n_epochs,
        args.budget_s,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    model_path, train_seconds = fit(n_epochs, args.out)
    return {
        "model": str(model_path),
        "train_images": len(images),
        "n_epochs": n_epochs,
        "images_per_epoch": per_epoch,
        "budget_seconds": args.budget_s,
        "epoch_seconds": epoch_seconds,
        "probe_seconds": probe_seconds,
        "training_seconds": train_seconds,
        "flow_seconds": flow_seconds,
        "peak_memory_mib": peak_memory_mib(),
        "cellpose_version": _version(),
    }


def predict(args: argparse.Namespace) -> dict:
    """Segment every ``prep/val`` image with a trained model; write ``<id>.tif`` labels."""
    from cellpose import io as cp_io
    from cellpose import models

    model = models.CellposeModel(gpu=False, pretrained_model=str(args.model))
    args.out.mkdir(parents=True, exist_ok=True)
    paths = sorted((args.prep / "val").glob("*.png"))[: args.max_images]
    seconds = []
    for k, path in enumerate(paths):
        t0 = time.perf_counter()
        masks = model.eval(cp_io.imread(str(path)), channels=[0, 0])[0]
        tifffile.imwrite(args.out / f"{path.stem}.tif", masks.astype(np.int32))
        seconds.append(time.perf_counter() - t0)
        log.info(
            "%d/%d %s: %d cells in %.1f s", k + 1, len(paths), path.stem, masks.max(), seconds[-1]
        )
    return {
        "images": len(paths),
        "median_seconds_per_image": statistics.median(seconds),
        "diam_labels": float(model.diam_labels),
        "peak_memory_mib": peak_memory_mib(),
        "cellpose_version": _version(),
    }


def _version() -> str:
    from importlib.metadata import version

    return version("cellpose")


def main() -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train")
    tr.add_argument("prep", type=Path)
    tr.add_argument("--budget-s", type=float, required=True)
    tr.add_argument("--out", type=Path, required=True)
    pr = sub.add_parser("predict")
    pr.add_argument("model", type=Path)
    pr.add_argument("prep", type=Path)
    pr.add_argument("--out", type=Path, required=True)
    for p in (tr, pr):
        p.add_argument("--max-images", type=int, help="use only the first N images (quick mode)")
        p.add_argument("--json", type=Path, required=True)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    record = train(args) if args.command == "train" else predict(args)
    args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
