"""What several commands share: the model options."""

from __future__ import annotations

import argparse


def load_model_from_args(args: argparse.Namespace):
    """The model of ``--model`` (default: bundled) on ``--device`` in ``--precision``.

    ``--min-score`` is checked here, before the model is loaded, and passed per call by the
    commands (the model is not changed). On the CPU, torch uses every core (set once, here).
    """
    from phaseseg.nn.device import pick_device, use_all_cores
    from phaseseg.segment.segmenter import check_min_score, load_model

    if args.min_score is not None:
        check_min_score(args.min_score, "--min-score")
    if pick_device(args.device).type == "cpu":
        use_all_cores()
    return load_model(args.model, device=args.device, precision=args.precision)


def add_precision_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--precision",
        choices=["auto", "bf16", "fp32"],
        default="auto",
        help="network arithmetic: auto (default) = bf16 where the CPU/GPU computes it natively "
        "(AVX-512 BF16, AMX, recent GPUs), else fp32",
    )


def add_min_score_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--min-score",
        type=float,
        help="drop cells whose mean foreground probability is below this (default: the model's "
        "value per cell type, tuned on the competition's annotations; 0 keeps every cell)",
    )
