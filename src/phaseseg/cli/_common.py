"""What several commands share: the model options."""

from __future__ import annotations

import argparse


def load_model_from_args(args: argparse.Namespace):
    """The model of ``--model`` (default: bundled) on ``--device``, with ``--min-score``
    overriding its tuned per-type ``min_score`` (0 keeps low-confidence cells); the value is
    checked before the model is loaded."""
    from phaseseg.segment.segmenter import check_min_score, load_model

    if args.min_score is not None:
        check_min_score(args.min_score, "--min-score")
    model = load_model(args.model, device=args.device)
    if args.min_score is not None:
        model.set_min_score(args.min_score)
    return model


def add_min_score_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--min-score",
        type=float,
        help="drop cells whose mean foreground probability is below this (default: the model's "
        "value per cell type, tuned on the competition's annotations; 0 keeps every cell)",
    )
