"""InstanSeg row of the peers benchmark; runs inside InstanSeg's own virtual environment.

    IS=benchmarks/peers/.isvenv/bin/python            # made by `make instanseg-venv`
    $IS benchmarks/peers/instanseg_peer.py train PREP --minutes 80 --out DIR --json T.json
    $IS benchmarks/peers/instanseg_peer.py predict MODEL_DIR PREP --out LABELS --json P.json

(Not named ``instanseg.py``: run as a script, it would shadow the ``instanseg`` package.)
``PREP`` is the folder ``run.py`` writes with phaseseg (as for Cellpose): ``train/<id>.png`` with
``train/<id>_masks.tif`` (folds 1-4) and ``val/<id>.png`` (fold 0). This script imports only
InstanSeg (``instanseg-torch``) and its own dependencies, never phaseseg.

Training goes through InstanSeg's own entry point, ``instanseg.scripts.train.instanseg_training``
(what its training notebook calls, the same as ``train.py`` on the command line), from random
initialisation, with its defaults: the ``InstanSeg_UNet`` of layers 32-64-128-256 with batch
norm, ``instanseg_loss`` (lovasz hinge + l1-distance seed loss, after 10 hot-start epochs with
dice + binary cross-entropy), Adam at learning rate 0.001 without weight decay or schedule,
batch 3, 256-px tiles, gradient clipping at 20, 3 loader workers, and its per-epoch validation
that keeps the weights of the best validation F1. The data set is laid out as InstanSeg's own
LIVECell loader (``load_LIVECELL``) lays out LIVECell, which comes from the same Incucyte
microscope as the Sartorius images: cell masks (``-target C``), ``image_modality`` "Brightfield",
``pixel_size`` 1.2429 µm, the training images shuffled with seed 42 and split 80/20 into its
``Train`` and ``Validation`` sets. Fold 0 is never seen in training.

Settings that had to change for it to run here at all (each also in the JSON record):

- ``torchvision``: InstanSeg's augmentations import it, and the only torchvision for torch 2.13.0
  that installs here (0.28.0 from PyPI) is a CUDA build whose C++ ops cannot load on the CPU
  torch; its import then fails with ``RuntimeError: operator torchvision::nms does not exist``
  (pytorch/vision#9085). :func:`_allow_torchvision_without_ops` declares the two op schemas
  torchvision registers fake kernels for, so that it imports; InstanSeg uses none of its ops.
- ``augmentation_type="heavy"``: single-channel "Brightfield" images are phase contrast to
  InstanSeg's augmenter, and only its "heavy" augmentations define a phase-contrast pipeline
  (the default "minimal" fails with ``KeyError: 'phase-contrast'``); it needs kornia, monai and
  edt, which the venv installs.
- ``requested_pixel_size`` = the data's 1.2429 µm: the cells are then at their native size,
  about 320 px in area, InstanSeg's recommended "around 300 pixels".
- ``dim_in=1``: the images are grayscale (the default 3 is for RGB brightfield).
- ``source_dataset="[Sartorius]"`` (its default "all" keeps nothing when a data set is passed
  in), ``on_cluster=True`` (no progress bars in the log).
- The length of the run. ``train.py`` counts epochs (500 by default, 250 in its README's example)
  of 1000 samples; on 2 CPU cores an epoch of 1000 takes tens of minutes, so the 10 hot-start
  epochs alone would fill the budget. As for Cellpose, a short probe times a sample, and an
  epoch is set to the number of samples that makes the budget :data:`EPOCHS` (250) epochs long;
  the loop is then stopped at the first epoch boundary where one more epoch would overrun the
  wall-clock budget (the learning rate is constant, so no schedule is cut short).
- Post-processing: InstanSeg's defaults (``train.py``'s own default is not to tune them).
  ``--tune-evals N`` runs InstanSeg's ``optimize_hyperparameters`` (hyperopt, N evaluations) on
  the Validation split instead; ``test.py`` itself, which does that in its documented workflow,
  cannot run on a CPU-only torch (it calls ``torch.cuda.synchronize``).

Prediction uses InstanSeg's own inference: the trained network wrapped as ``train.py``'s
TorchScript export wraps it (``InstanSeg_Torchscript``, then ``torch.jit.script``) and run by
the ``InstanSeg`` class, ``eval_small_image`` at pixel size 1.2429 µm.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

log = logging.getLogger(__name__)
PIXEL_SIZE = 1.2429  # µm per pixel, as InstanSeg's LIVECell loader has it (same microscope)
DATASET = "Sartorius"
EPOCHS = 250  # train.py's README example: the budget is cut into this many epochs
PROBE_SAMPLES = 24  # 8 batches of 3
HOTSTART = 10  # train.py's hot-start epochs (dice + binary cross-entropy), its default
MIN_EPOCH = 5  # train.py validates on int(0.2 * samples per epoch) samples: at least 1
VALIDATION_FRACTION = 0.2  # InstanSeg's LIVECell loader: 80/20, shuffled with seed 42
SETTINGS = {  # InstanSeg's training settings that differ from train.py's defaults
    "source_dataset": f"[{DATASET}]",
    "target_segmentation": "C",
    "requested_pixel_size": PIXEL_SIZE,
    "augmentation_type": "heavy",
    "dim_in": 1,
    "on_cluster": True,
}


class BudgetSpent(Exception):
    """Raised at an epoch boundary when one more epoch would overrun the budget."""


class _EpochClock:
    """Wraps InstanSeg's ``train_epoch``/``test_epoch``: times them and enforces the budget."""

    def __init__(self) -> None:
        import instanseg.utils.AI_utils as ai

        self.ai = ai
        self.train_epoch, self.test_epoch = ai.train_epoch, ai.test_epoch
        self.budget_s = float("inf")
        self.start = 0.0
        self.epochs = 0
        self.last_epoch_start: float | None = None
        self.last_epoch_s = 0.0
        self.train_s: list[float] = []  # per epoch
        self.test_s: list[float] = []
        ai.train_epoch, ai.test_epoch = self._train, self._test

    def reset(self, budget_s: float) -> None:
        self.budget_s, self.start = budget_s, time.perf_counter()
        self.epochs, self.last_epoch_start, self.last_epoch_s = 0, None, 0.0
        self.train_s, self.test_s = [], []

    def _train(self, *args, **kwargs):
        now = time.perf_counter()
        if self.last_epoch_start is not None:
            self.last_epoch_s = now - self.last_epoch_start
        if self.epochs and now - self.start + self.last_epoch_s > self.budget_s:
            raise BudgetSpent
        self.last_epoch_start = now
        out = self.train_epoch(*args, **kwargs)
        self.train_s.append(time.perf_counter() - now)
        self.epochs += 1
        return out

    def _test(self, *args, **kwargs):
        t = time.perf_counter()
        out = self.test_epoch(*args, **kwargs)
        self.test_s.append(time.perf_counter() - t)
        return out


def _allow_torchvision_without_ops() -> None:
    """Let the CUDA build of torchvision import on a CPU-only torch (see the module docstring).

    torchvision registers fake kernels for ``nms`` and ``qnms`` whether or not its C++ ops
    loaded; declaring their schemas first lets that succeed. Calling them would still fail.
    """
    import torch

    try:
        import torchvision  # noqa: F401
    except RuntimeError:
        for op in ("nms", "qnms"):
            torch.library.define(
                f"torchvision::{op}", "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
            )
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        import torchvision  # noqa: F401


def peak_memory_mib() -> float:
    """Peak resident memory of this process in MiB (Linux ``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_items(prep: Path, max_images: int | None) -> list[dict]:
    """``prep/train`` as InstanSeg data set items (image, cell masks, metadata)."""
    from skimage import io as sk_io

    items = []
    for mask_path in sorted((prep / "train").glob("*_masks.tif"))[:max_images]:
        image_path = mask_path.with_name(mask_path.name.replace("_masks.tif", ".png"))
        items.append(
            {
                "image": sk_io.imread(image_path),
                "cell_masks": tifffile.imread(mask_path).astype(np.int32),
                "parent_dataset": DATASET,
                "licence": "CC BY-NC 4.0",
                "pixel_size": PIXEL_SIZE,
                "image_modality": "Brightfield",
                "file_name": image_path.name,
            }
        )
    return items


def split_items(items: list[dict]) -> dict[str, list[dict]]:
    """InstanSeg's data set dict: shuffled with seed 42, 80% Train, 20% Validation."""
    items = [items[i] for i in np.random.default_rng(42).permutation(len(items))]
    n_train = max(1, int(len(items) * (1 - VALIDATION_FRACTION)))
    return {"Train": items[:n_train], "Validation": items[n_train:], "Test": []}


def _seed(seed: int = 0) -> None:
    import torch

    torch.manual_seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (InstanSeg's augmentations draw from the global state)
    random.seed(seed)


def _instanseg_training(dataset: dict, out: Path, name: str, **settings) -> None:
    """InstanSeg's training entry point, its command line emptied (it parses ``sys.argv``)."""
    from instanseg.scripts.train import instanseg_training

    out.mkdir(parents=True, exist_ok=True)
    argv, sys.argv = sys.argv, [sys.argv[0]]
    try:
        instanseg_training(
            segmentation_dataset=dataset,
            output_path=str(out),
            experiment_str=name,
            **SETTINGS,
            **settings,
        )
    finally:
        sys.argv = argv


def train(args: argparse.Namespace) -> dict:
    """Train InstanSeg from scratch for the wall-clock budget; return a record."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    _allow_torchvision_without_ops()
    clock = _EpochClock()
    budget_s = args.minutes * 60
    dataset = split_items(load_items(args.prep, args.max_images))
    log.info("%d Train, %d Validation images", len(dataset["Train"]), len(dataset["Validation"]))

    probe_seconds, sample_s, length = 0.0, None, MIN_EPOCH
    if args.probe_samples:  # two epochs of the main loss; the first carries the workers' start
        probe = max(MIN_EPOCH, args.probe_samples)
        with tempfile.TemporaryDirectory() as tmp:
            _seed()
            clock.reset(float("inf"))
            t0 = time.perf_counter()
            short = {"num_epochs": 2, "hotstart_training": 0, "length_of_epoch": probe}
            _instanseg_training(dataset, Path(tmp), "probe", **short)
            probe_seconds = time.perf_counter() - t0
        sample_s = (clock.train_s[-1] + clock.test_s[-1]) / probe  # + a validation one per 5
        length = max(MIN_EPOCH, round(budget_s / EPOCHS / sample_s))
        log.info("%.2f s a sample (+ validation) -> epochs of %d samples", sample_s, length)

    _seed()
    clock.reset(budget_s)
    t0 = time.perf_counter()
    try:
        _instanseg_training(
            dataset, args.out, "instanseg", num_epochs=100 * EPOCHS, length_of_epoch=length
        )
    except BudgetSpent:
        log.info("budget spent after %d epochs", clock.epochs)
    train_seconds = time.perf_counter() - t0
    model_dir = args.out / "instanseg"
    import torch

    checkpoint = torch.load(model_dir / "model_weights.pth", map_location="cpu", weights_only=False)
    record = {
        "model": str(model_dir),
        "train_images": len(dataset["Train"]),
        "validation_images": len(dataset["Validation"]),
        "epochs": clock.epochs,
        "hotstart_epochs": HOTSTART,
        "samples_per_epoch": length,
        "batch_size": 3,
        "budget_seconds": budget_s,
        "training_seconds": train_seconds,
        "probe_seconds": probe_seconds,
        "probe_seconds_per_sample": sample_s,
        # train.py numbers the hot-start epochs and the main loop's from 0 each; the main loop
        # always saves its first 6 epochs, so its checkpoint is the kept one once it started
        "kept_epoch": int(checkpoint["epoch"]) + (HOTSTART if clock.epochs > HOTSTART else 0),
        "kept_validation_f1": float(checkpoint["f1_score"]),
        "settings": SETTINGS,
        "params": None,
        "tune_seconds": 0.0,
    }
    if args.tune_evals:
        t0 = time.perf_counter()
        record["params"] = tune(model_dir, dataset["Validation"], args.tune_evals)
        record["tune_seconds"] = time.perf_counter() - t0
        (model_dir / "best_params.json").write_text(json.dumps(record["params"]) + "\n")
    record["peak_memory_mib"] = peak_memory_mib()
    # train.py's 3 data loader workers are processes of their own (the largest one, in MiB)
    record["loader_worker_peak_memory_mib"] = (
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    )
    record["versions"] = _versions()
    return record


def _load(model_dir: Path):
    from instanseg.utils.model_loader import load_model

    return load_model(folder="", path=str(model_dir))


def tune(model_dir: Path, items: list[dict], evals: int) -> dict:
    """InstanSeg's ``optimize_hyperparameters`` on the full Validation images (one forward each)."""
    import torch
    from instanseg.utils.AI_utils import optimize_hyperparameters
    from instanseg.utils.loss.instanseg_loss import InstanSeg as Method
    from instanseg.utils.tiling import _instanseg_padding, _recover_padding
    from instanseg.utils.utils import percentile_normalize

    class Padded(torch.nn.Module):  # the UNet needs sides that are multiples of 32
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x, pad = _instanseg_padding(x, min_dim=32)
            return _recover_padding(self.net(x), pad)

    model, info = _load(model_dir)
    model.eval()
    method = Method(n_sigma=info["n_sigma"], dim_coords=info["dim_coords"], device="cpu")
    method.initialize_pixel_classifier(model)
    batches = []
    for item in items:
        image = percentile_normalize(torch.as_tensor(item["image"], dtype=torch.float32)[None])
        batches.append((image[None], torch.as_tensor(item["cell_masks"])[None, None], None))
    params = optimize_hyperparameters(
        Padded(model), postprocessing_fn=method.postprocessing, data_loader=batches, max_evals=evals
    )
    return {k: float(v) for k, v in params.items()}


def predict(args: argparse.Namespace) -> dict:
    """Segment every ``prep/val`` image with a trained model; write ``<id>.tif`` labels."""
    _allow_torchvision_without_ops()
    import torch
    from instanseg import InstanSeg
    from instanseg.utils.loss.instanseg_loss import InstanSeg_Torchscript
    from skimage import io as sk_io

    model, info = _load(args.model)
    params_path = args.model / "best_params.json"
    params = json.loads(params_path.read_text()) if params_path.exists() else None
    wrapped = InstanSeg_Torchscript(
        model,
        cells_and_nuclei=info["cells_and_nuclei"],
        pixel_size=info["pixel_size"],
        n_sigma=info["n_sigma"],
        dim_coords=info["dim_coords"],
        dim_seeds=info["dim_seeds"],
        backbone_dim_in=info["dim_in"],
        feature_engineering_function=str(info["feature_engineering"]),
        params=params,
    )
    segmenter = InstanSeg(torch.jit.script(wrapped), device="cpu", verbosity=0)
    args.out.mkdir(parents=True, exist_ok=True)
    paths = sorted((args.prep / "val").glob("*.png"))[: args.max_images]
    seconds = []
    for k, path in enumerate(paths):
        t0 = time.perf_counter()
        labels = segmenter.eval_small_image(
            sk_io.imread(path), pixel_size=PIXEL_SIZE, return_image_tensor=False
        )
        labels = labels.cpu().numpy().squeeze().astype(np.int32)
        tifffile.imwrite(args.out / f"{path.stem}.tif", labels)
        seconds.append(time.perf_counter() - t0)
        log.info(
            "%d/%d %s: %d cells in %.1f s", k + 1, len(paths), path.stem, labels.max(), seconds[-1]
        )
    return {
        "images": len(paths),
        "median_seconds_per_image": statistics.median(seconds),
        "params": params or "InstanSeg defaults",
        "peak_memory_mib": peak_memory_mib(),
        "versions": _versions(),
    }


def _versions() -> dict:
    from importlib.metadata import version

    return {p: version(p) for p in ("instanseg-torch", "torch", "torchvision")}


def main() -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train")
    tr.add_argument("prep", type=Path)
    tr.add_argument("--minutes", type=float, required=True, help="wall-clock training budget")
    tr.add_argument("--out", type=Path, required=True)
    tr.add_argument(
        "--probe-samples",
        type=int,
        default=PROBE_SAMPLES,
        help=f"samples in the timing probe (0: none, epochs of {MIN_EPOCH} samples)",
    )
    tr.add_argument(
        "--tune-evals", type=int, default=0, help="tune post-processing (0: InstanSeg defaults)"
    )
    pr = sub.add_parser("predict")
    pr.add_argument("model", type=Path, help="the trained model's folder")
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
