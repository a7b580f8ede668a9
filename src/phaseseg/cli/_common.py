"""What several commands share: the model options."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


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
    tta = getattr(args, "tta", None)
    model = load_model(args.model, device=args.device, precision=args.precision, tta=tta)
    if tta is None:
        log.info(
            "test-time augmentation %s (%s on %s; --tta/--no-tta to choose)",
            "on: 4 flips averaged" if model.tta else "off",
            model.precision,
            model.device.type,
        )
    return model


def add_tta_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="average the network over 4 flips: a higher score, 4x the network's time "
        "(default: on, except on a CPU without native bf16, where it would be slow)",
    )


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


def add_cluster_options(p: argparse.ArgumentParser) -> None:
    """``--workers N`` / ``--dask ADDRESS`` / ``--resume`` (:mod:`phaseseg.distributed`)."""
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="run on N local worker processes (a Dask LocalCluster on 127.0.0.1); the outputs "
        "are the same as without it",
    )
    group.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="run on the Dask cluster whose scheduler is at ADDRESS (tcp://host:8786, from "
        "`dask scheduler`); its workers read the images from a file system shared with this "
        "machine",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="skip the images whose outputs an earlier (interrupted) run wrote completely",
    )


def cluster_from_args(args: argparse.Namespace):
    """A context manager giving the Dask client of ``--dask`` / ``--workers``, or None, and
    the :class:`~phaseseg.distributed.ModelSpec` its workers load."""
    from phaseseg.distributed import ModelSpec, open_client
    from phaseseg.distributed.cluster import local_threads

    threads = local_threads(args.workers) if args.workers else None
    spec = ModelSpec.of(getattr(args, "model", None), args.device, args.precision, threads)
    return open_client(args.dask, args.workers), spec
