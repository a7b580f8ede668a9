"""Command-line interface: a thin argument layer over the library.

Each subcommand's handler imports what it needs lazily so that ``phaseseg --help`` is instant.
User mistakes (:class:`phaseseg.io.PhasesegInputError`) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys

from phaseseg import __version__
from phaseseg.io import PhasesegInputError

log = logging.getLogger("phaseseg")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    raise NotImplementedError


def _cmd_validate_submission(args: argparse.Namespace) -> int:
    raise NotImplementedError


def _cmd_eda(args: argparse.Namespace) -> int:
    raise NotImplementedError


def _cmd_train(args: argparse.Namespace) -> int:
    raise NotImplementedError


def _cmd_predict(args: argparse.Namespace) -> int:
    raise NotImplementedError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phaseseg",
        description="Segment every cell in phase-contrast images of neuronal cultures.",
    )
    parser.add_argument("--version", action="version", version=f"phaseseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("evaluate", help="score a submission against ground truth (competition metric)")
    p.add_argument("truth", help="ground-truth CSV (train.csv format)")
    p.add_argument("submission", help="submission CSV (id,predicted)")
    p.add_argument("--json", dest="json_out", metavar="FILE", help="also write the scores as JSON")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("validate-submission", help="check a submission.csv against the competition's rules")
    p.add_argument("submission", help="submission CSV (id,predicted)")
    p.add_argument("--images", metavar="DIR", help="folder of the test images (checks ids and sizes)")
    p.set_defaults(func=_cmd_validate_submission)

    p = sub.add_parser("eda", help="write an HTML report exploring a data set")
    p.add_argument("data_dir", help="folder with train.csv and train/*.png")
    p.add_argument("--out", required=True, help="output folder for report.html and figures")
    p.set_defaults(func=_cmd_eda)

    p = sub.add_parser("train", help="train a segmentation model")
    p.add_argument("data_dir", help="folder with train.csv, train/*.png (and folds.csv)")
    p.add_argument("--out", required=True, help="output model file (.pt)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("predict", help="segment images; write a submission, label TIFFs, overlays")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.set_defaults(func=_cmd_predict)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except PhasesegInputError as e:
        print(f"phaseseg {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("phaseseg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
