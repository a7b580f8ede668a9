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
    import json

    from phaseseg.io import atomic_path, read_submission, read_train_csv
    from phaseseg.metrics import score_tables

    truth = read_train_csv(args.truth)
    submission = read_submission(args.submission)
    scores = score_tables(
        truth, submission, truth_source=args.truth, submission_source=args.submission
    )
    if scores.n_images == 0:
        raise PhasesegInputError(f"{args.truth}: no ground-truth image to score")
    counts = scores.per_image["cell_type"].value_counts()
    missing = (
        f"; {scores.n_missing} missing from the submission, scored 0" if scores.n_missing else ""
    )
    lines = [f"score {scores.score:.4f}  ({scores.n_images} images{missing})", ""]
    lines.append(f"{'cell type':<12}{'images':>8}{'score':>9}")
    for cell_type, value in scores.per_cell_type.items():
        lines.append(f"{cell_type:<12}{counts[cell_type]:>8}{value:>9.4f}")
    lines += ["", f"{'IoU >':<12}{'precision':>17}"]
    for t, value in scores.per_threshold.items():
        lines.append(f"{t:<12.2f}{value:>17.4f}")
    print("\n".join(lines))
    if args.json_out:
        with atomic_path(args.json_out) as tmp:
            tmp.write_text(json.dumps(scores.to_dict(), indent=2) + "\n")
        log.info("wrote %s", args.json_out)
    return 0


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
