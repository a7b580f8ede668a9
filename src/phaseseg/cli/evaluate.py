"""``phaseseg evaluate``: score a submission against ground truth."""

from __future__ import annotations

import argparse
import logging

from phaseseg.io import PhasesegInputError

log = logging.getLogger("phaseseg")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import json

    from phaseseg.io import atomic_path, read_submission, read_train_csv
    from phaseseg.metrics import score_tables

    truth = read_train_csv(args.truth)
    submission = read_submission(args.submission)
    if args.only_submitted:  # score a few predicted images against a full train.csv
        submitted = set(submission["id"].astype(str))
        truth = truth[truth["id"].astype(str).isin(submitted)]
        if truth.empty:
            raise PhasesegInputError(
                f"{args.submission}: none of its image ids is in {args.truth}"
                if submitted
                else f"{args.submission}: no image to score"
            )
    scores = score_tables(
        truth, submission, truth_source=args.truth, submission_source=args.submission
    )
    if scores.n_images == 0:
        raise PhasesegInputError(f"{args.truth}: no ground-truth image to score")
    counts = scores.per_image["cell_type"].value_counts()
    missing = (
        f"; {scores.n_missing} missing from the submission, scored 0 (--only-submitted: skip them)"
        if scores.n_missing
        else ""
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


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate", help="score a submission against ground truth (competition metric)"
    )
    p.add_argument("truth", help="ground-truth CSV (train.csv format)")
    p.add_argument("submission", help="submission CSV (id,predicted)")
    p.add_argument(
        "--only-submitted",
        action="store_true",
        help="score only the images present in the submission (default: every truth image; "
        "those missing from the submission score 0)",
    )
    p.add_argument("--json", dest="json_out", metavar="FILE", help="also write the scores as JSON")
    p.set_defaults(func=_cmd_evaluate)
