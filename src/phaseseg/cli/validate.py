"""``phaseseg validate-submission``: check a submission against the competition's rules."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from phaseseg.io import PhasesegInputError

log = logging.getLogger("phaseseg")


def _cmd_validate_submission(args: argparse.Namespace) -> int:

    from phaseseg.io import IMAGE_SUFFIXES, find_images, frame_infos
    from phaseseg.io.submission import check_submission

    image_ids = shapes = None
    if args.images:
        folder = Path(args.images)
        if not folder.is_dir():
            raise PhasesegInputError(f"{folder}: no such folder")
        files = find_images([folder])
        if not files:
            raise PhasesegInputError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
        shapes = {}
        for f in files:  # ids as predict gives them: x.ome.tif -> x, frames of a stack x_t003
            for frame in frame_infos(f):
                if frame.image_id in shapes:
                    log.warning(
                        "%s: image id %s seen twice; keeping the first file", f, frame.image_id
                    )
                else:
                    shapes[frame.image_id] = frame.shape
        image_ids = list(shapes)
    check = check_submission(args.submission, image_ids=image_ids, shapes=shapes)
    for problem in check.problems:
        print(problem)
    counts = f"{check.n_rows} rows, {check.n_images} images, {check.n_instances} instances"
    if image_ids is not None:
        counts += f"; {len(image_ids)} images in {args.images}"
    if check.valid:
        print(f"{args.submission}: valid ({counts})")
        return 0
    n_images = len({p.image_id for p in check.problems if p.image_id is not None})
    print(
        f"{args.submission}: INVALID, {len(check.problems)} problem(s) in {n_images} image(s) "
        f"({counts})"
    )
    return 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate-submission", help="check a submission.csv against the competition's rules"
    )
    p.add_argument("submission", help="submission CSV (id,predicted)")
    p.add_argument(
        "--images", metavar="DIR", help="folder of the test images (checks ids and sizes)"
    )
    p.set_defaults(func=_cmd_validate_submission)
