"""``phaseseg train``: train a segmentation model."""

from __future__ import annotations

import argparse
from pathlib import Path

_TRAIN_FLAGS = (
    "steps",
    "batch_size",
    "crop_size",
    "lr",
    "seed",
    "eval_every",
    "init",
    "tune",
    "input_scale",
    "precision",
    "minutes",
    "freeze",
    "centre_head",
)


def _fold(text: str) -> int | str:
    if text.lower() == "none":
        return "none"
    try:
        return int(text)
    except ValueError:
        msg = f"expected a fold number or 'none', got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


def _cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from phaseseg.train import TrainConfig, fit

    cfg = TrainConfig.from_file(args.config) if args.config else TrainConfig()
    overrides = {k: getattr(args, k) for k in _TRAIN_FLAGS if getattr(args, k) is not None}
    if args.val_fold is not None:
        overrides["val_fold"] = None if args.val_fold == "none" else args.val_fold
    cfg = TrainConfig.from_dict({**asdict(cfg), **overrides})
    out = Path(args.out)
    from phaseseg.nn.device import pick_device, use_all_cores

    if pick_device(args.device).type == "cpu":
        use_all_cores()
    result = fit(args.data_dir, out, cfg, resume=args.resume, device=args.device)
    print(f"model written to {out} (configuration: {result.config_path})")
    print_headline(result)
    return 0


def print_headline(result) -> None:  # noqa: ANN001 - a phaseseg.train.FitResult
    """The validation score a model stands for, one line: on a data set of one declared cell
    type only that type's score (e.g. the new culture a fine-tune added), else overall and per
    type; then how to segment such images."""
    scores = result.headline
    if scores is None:
        return
    how = "tuned thresholds" if "tuned" in result.scores else "thresholds not tuned"
    fold = result.config.val_fold
    if result.thresholds_by == "declared":
        declared = result.data_cell_types[0]
        print(f"fold {fold} score of {declared} ({how}): {scores[declared]:.4f}")
        print(f"segment such images with: phaseseg predict ... --cell-type {declared}")
        return
    print(
        f"fold {fold} score ({how}): {scores['overall']:.4f}  "
        + "  ".join(f"{t} {scores[t]:.4f}" for t in result.cell_types if t in scores)
    )


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a segmentation model")
    p.add_argument("data_dir", help="folder with train.csv, train/*.png (and folds.csv)")
    p.add_argument("--out", required=True, help="output model file (.pt)")
    p.add_argument(
        "--val-fold",
        type=_fold,
        help="fold held out for validation and tuning (default 0; 'none' trains on everything)",
    )
    p.add_argument("--config", help="JSON file of training options (flags override it)")
    p.add_argument("--steps", type=int, help="optimisation steps (default 5000)")
    p.add_argument("--batch-size", type=int, help="crops per step (default 8)")
    p.add_argument("--crop-size", type=int, help="crop side in pixels (default 256)")
    p.add_argument("--lr", type=float, help="peak learning rate (default 2e-3)")
    p.add_argument(
        "--input-scale",
        type=float,
        help="the network works on images enlarged by this factor (default: --init's, else 1)",
    )
    p.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp32"],
        help="arithmetic: auto (default) = bf16 where the CPU/GPU computes it natively, else fp32",
    )
    p.add_argument(
        "--minutes",
        type=float,
        help="wall-clock budget of the training loop; --steps is then only a cap (the learning "
        "rate decays over the minutes)",
    )
    p.add_argument(
        "--freeze",
        choices=["none", "encoder"],
        help="keep the encoder's weights and statistics fixed (default none)",
    )
    p.add_argument(
        "--centre-head",
        action="store_const",
        const=True,
        help="also learn a map of cell centres, one peak per cell, to seed cells from "
        "(default: as --init's model)",
    )
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--eval-every", type=int, help="validate every N steps (default 2500)")
    p.add_argument("--init", help="start from this model file's weights (fine-tuning)")
    p.add_argument("--resume", action="store_true", help="continue from OUT.state.pt")
    p.add_argument(
        "--no-tune",
        dest="tune",
        action="store_const",
        const=False,
        help="skip tuning the thresholds at the end (phaseseg.train.retune does it later)",
    )
    p.add_argument("--device", help="torch device (default: cuda, else mps if present, else cpu)")
    p.set_defaults(func=_cmd_train)
