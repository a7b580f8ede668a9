"""``phaseseg finetune``: your annotated images -> a model that knows your culture, in minutes."""

from __future__ import annotations

import argparse


def _cmd_finetune(args: argparse.Namespace) -> int:
    from phaseseg.nn.device import pick_device, use_all_cores
    from phaseseg.train.finetune import finetune, finetune_config

    config = finetune_config(args.config) if args.config else None
    if pick_device(args.device).type == "cpu":
        use_all_cores()
    result = finetune(
        args.images,
        args.labels,
        args.cell_type,
        args.out,
        minutes=args.minutes,
        init=args.init,
        config=config,
        val_fold=args.val_fold,
        resume=args.resume,
        device=args.device,
    )
    what = (
        f"new cell type {result.cell_type} (started from {result.initialised_from})"
        if result.added
        else f"cell type {result.cell_type}"
    )
    print(
        f"model written to {result.model_path}: {what}, {result.n_images} images, "
        f"{result.steps} steps in {result.train_seconds / 60:.1f} min "
        f"({result.total_seconds / 60:.1f} min in all)"
    )
    if result.score is not None:
        caveat = " - on the training images themselves: a rough guide, either way" * (
            "in-sample" in result.tuned_on
        )
        print(
            f"{result.cell_type} score, thresholds tuned on {result.tuned_on}: "
            f"{result.score:.4f}{caveat}"
        )
    print(
        f"segment with: phaseseg predict IMAGES --model {result.model_path} "
        f"--cell-type {result.cell_type} --labels-dir LABELS"
    )
    return 0


def _fold(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fold number, got {text!r}") from None


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finetune",
        help="fine-tune a model on your annotated images (make-dataset + train + tuning)",
        description="Fine-tune a model on a few annotated images within a time budget: "
        "make-dataset, training (encoder frozen, low learning rate) and threshold tuning in "
        "one command. A culture the model does not know is added to it as a new cell type.",
    )
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--labels", required=True, help="folder of label images named like the images")
    p.add_argument(
        "--cell-type",
        required=True,
        help="the culture: astro, cort, shsy5y, or a name of your own (added as a new type)",
    )
    p.add_argument("--out", required=True, help="output model file (.pt)")
    p.add_argument(
        "--minutes",
        type=float,
        default=10.0,
        help="wall-clock budget of the whole command, in minutes (default 10)",
    )
    p.add_argument(
        "--init", default="bundled", help="model to start from (default: the bundled model)"
    )
    p.add_argument(
        "--val-fold",
        type=_fold,
        help="hold out this fold of the images (dealt into up to 5 folds) to tune the "
        "thresholds on and score (default: train and tune on all images)",
    )
    p.add_argument(
        "--config",
        help="JSON file of training options over the fine-tuning defaults (e.g. "
        '{"lr": 5e-4, "freeze": "none"}; see phaseseg.train.finetune.FINETUNE_DEFAULTS)',
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--device", help="torch device (default: cuda, else mps if present, else cpu)")
    p.set_defaults(func=_cmd_finetune)
