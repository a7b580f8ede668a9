"""Command-line interface: a thin argument layer over the library.

Each subcommand's handler imports what it needs lazily so that ``phaseseg --help`` is instant.
User mistakes (:class:`phaseseg.io.PhasesegInputError`) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from phaseseg import __version__
from phaseseg.io import CELL_TYPES, PhasesegInputError

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
    from pathlib import Path

    from phaseseg.io import IMAGE_SUFFIXES, find_images, image_shape
    from phaseseg.submission import check_submission

    image_ids = shapes = None
    if args.images:
        folder = Path(args.images)
        if not folder.is_dir():
            raise PhasesegInputError(f"{folder}: no such folder")
        files = find_images([folder])
        if not files:
            raise PhasesegInputError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
        shapes = {}
        for f in files:
            if f.stem in shapes:
                log.warning("%s: image id %s seen twice; keeping the first file", f, f.stem)
            else:
                shapes[f.stem] = image_shape(f)
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


def _cmd_eda(args: argparse.Namespace) -> int:
    from phaseseg.eda import write_eda_report

    report = write_eda_report(args.data_dir, args.out)
    print(report)
    return 0


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
    import json
    from dataclasses import asdict

    from phaseseg.io import atomic_path
    from phaseseg.train import TrainConfig, fit

    cfg = TrainConfig.from_file(args.config) if args.config else TrainConfig()
    overrides = {k: getattr(args, k) for k in _TRAIN_FLAGS if getattr(args, k) is not None}
    if args.val_fold is not None:
        overrides["val_fold"] = None if args.val_fold == "none" else args.val_fold
    cfg = TrainConfig.from_dict({**asdict(cfg), **overrides})
    out = Path(args.out)
    with atomic_path(out.with_name(out.stem + ".config.json")) as tmp:
        tmp.write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    scores = fit(args.data_dir, out, cfg, resume=args.resume, device=args.device)
    print(f"model written to {out}")
    if scores and "tuned" not in scores:
        best = scores["untuned"]
        kept = best["ema"] if best.get("weights") == "ema" else best
        print(f"fold {cfg.val_fold} score (thresholds not tuned): {kept['overall']:.4f}")
    elif scores:
        tuned = scores["tuned"]
        print(
            f"fold {cfg.val_fold} score (tuned thresholds): {tuned['overall']:.4f}  "
            + "  ".join(f"{t} {tuned[t]:.4f}" for t in ("astro", "cort", "shsy5y") if t in tuned)
        )
    return 0


def _load_model(args: argparse.Namespace):
    """The model of ``--model`` (default: bundled) on ``--device``, with ``--min-score``
    overriding its tuned per-type ``min_score`` (0 keeps low-confidence cells); the value is
    checked before the model is loaded."""
    from phaseseg.segmenter import check_min_score, load_model

    if args.min_score is not None:
        check_min_score(args.min_score, "--min-score")
    model = load_model(args.model, device=args.device)
    if args.min_score is not None:
        model.set_min_score(args.min_score)
    return model


def _add_min_score_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--min-score",
        type=float,
        help="drop cells whose mean foreground probability is below this (default: the model's "
        "value per cell type, tuned on the competition's annotations; 0 keeps every cell)",
    )


def _cmd_predict(args: argparse.Namespace) -> int:
    from phaseseg.predict import predict_images

    if not (args.submission or args.labels_dir or args.overlays_dir):
        raise PhasesegInputError(
            "nothing to write: give --submission, --labels-dir or --overlays-dir"
        )
    model = _load_model(args)
    summary = predict_images(
        args.images,
        model,
        submission=args.submission,
        labels_dir=args.labels_dir,
        overlays_dir=args.overlays_dir,
        tta=args.tta,
        cell_type=args.cell_type,
    )
    for line in summary.failed:
        print(f"phaseseg predict: skipped {line}", file=sys.stderr)
    print(f"{summary.n_images} images, {summary.n_cells} cells")
    for what, where in (
        ("submission", args.submission),
        ("labels", args.labels_dir),
        ("overlays", args.overlays_dir),
    ):
        if where:
            print(f"{what}: {where}")
    return 1 if summary.failed else 0


def _cmd_make_dataset(args: argparse.Namespace) -> int:
    from phaseseg.dataset import build_dataset, coco_label_images, pair_label_images

    if bool(args.labels) == bool(args.coco):
        raise PhasesegInputError("give --labels DIR or --coco FILE (one of them)")
    if args.coco:
        if len(args.images) != 1 or not Path(args.images[0]).is_dir():
            raise PhasesegInputError("with --coco, IMAGES is the one folder holding its images")
        items = coco_label_images(args.coco, args.images[0])
    else:
        items = pair_label_images(args.images, args.labels)
    folds = build_dataset(items, args.out, args.cell_type, n_folds=args.folds)
    print(f"{len(folds)} images written to {args.out} ({args.folds} folds)")
    print(f"train with: phaseseg train {args.out} --out MODEL.pt --init bundled")
    return 0


def _cmd_measure(args: argparse.Namespace) -> int:
    from phaseseg.measure import describe_columns, measure_images

    if args.describe:
        print(describe_columns(), end="")
        return 0
    if not args.images or not args.out:
        raise PhasesegInputError("give IMAGES and --out DIR (or --describe)")
    if args.labels and args.model:
        raise PhasesegInputError("give --model or --labels, not both")
    model = None if args.labels else _load_model(args)
    summary = measure_images(
        args.images,
        args.out,
        model=model,
        labels=args.labels,
        pixel_size=args.pixel_size,
        time_pattern=args.time_from,
        tta=args.tta,
        cell_type=args.cell_type,
    )
    for line in summary.failed:
        print(f"phaseseg measure: skipped {line}", file=sys.stderr)
    per_image = summary.seconds / max(summary.n_images, 1)
    print(
        f"{summary.n_images} images, {summary.n_cells} cells "
        f"({per_image:.2f} s per image); {summary.n_timed} with a time point"
    )
    for what, where in summary.outputs.items():
        print(f"{what}: {where}")
    return 1 if summary.failed else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phaseseg",
        description="Segment every cell in phase-contrast images of neuronal cultures.",
    )
    parser.add_argument("--version", action="version", version=f"phaseseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "evaluate", help="score a submission against ground truth (competition metric)"
    )
    p.add_argument("truth", help="ground-truth CSV (train.csv format)")
    p.add_argument("submission", help="submission CSV (id,predicted)")
    p.add_argument("--json", dest="json_out", metavar="FILE", help="also write the scores as JSON")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser(
        "validate-submission", help="check a submission.csv against the competition's rules"
    )
    p.add_argument("submission", help="submission CSV (id,predicted)")
    p.add_argument(
        "--images", metavar="DIR", help="folder of the test images (checks ids and sizes)"
    )
    p.set_defaults(func=_cmd_validate_submission)

    p = sub.add_parser("eda", help="write an HTML report exploring a data set")
    p.add_argument("data_dir", help="folder with train.csv and train/*.png")
    p.add_argument("--out", required=True, help="output folder for report.html and figures")
    p.set_defaults(func=_cmd_eda)

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
    p.add_argument("--device", help="torch device (default: cuda if present, else cpu)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "make-dataset", help="turn your images and label images (or COCO) into a training folder"
    )
    p.add_argument("images", nargs="+", help="image files or folders (with --coco: one folder)")
    p.add_argument("--labels", help="folder of label images named like the images")
    p.add_argument("--coco", help="COCO/LIVECell instance JSON file instead of label images")
    p.add_argument("--cell-type", required=True, choices=CELL_TYPES, help="the culture")
    p.add_argument("--out", required=True, help="new folder: train/, train.csv, folds.csv")
    p.add_argument("--folds", type=int, default=5, help="folds in folds.csv (default 5)")
    p.set_defaults(func=_cmd_make_dataset)

    p = sub.add_parser("predict", help="segment images; write a submission, label TIFFs, overlays")
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--model", help="model file (default: the bundled model)")
    p.add_argument("--submission", metavar="CSV", help="write a competition submission.csv")
    p.add_argument("--labels-dir", metavar="DIR", help="write one label TIFF per image")
    p.add_argument("--overlays-dir", metavar="DIR", help="write one outline overlay PNG per image")
    p.add_argument("--tta", action="store_true", help="average over flips (4x slower)")
    p.add_argument(
        "--cell-type",
        choices=["astro", "cort", "shsy5y"],
        help="use this cell type's thresholds for every image (default: predicted per image)",
    )
    _add_min_score_option(p)
    p.add_argument("--device", help="torch device (default: cuda if present, else cpu)")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser(
        "measure",
        help="measure every cell: cells.csv, images.csv, time course, overlays, report.html",
        description="Segment images (or read their label images) and measure every cell. "
        "Writes cells.csv, images.csv, timecourse.csv/.png (when file names carry time "
        "points), labels/*.tif, overlays/*.png and report.html into --out. "
        "Columns and units: phaseseg measure --describe.",
    )
    p.add_argument("images", nargs="*", help="image files or folders")
    p.add_argument("--out", metavar="DIR", help="output folder")
    p.add_argument("--model", help="model file (default: the bundled model)")
    p.add_argument(
        "--labels",
        nargs="+",
        metavar="DIR_OR_FILE",
        help="label images (folders or files) matched to images by file stem; "
        "used instead of running the model",
    )
    p.add_argument(
        "--pixel-size", type=float, metavar="UM", help="microns per pixel (adds µm columns)"
    )
    p.add_argument(
        "--time-from",
        metavar="REGEX",
        help="regex with named groups (?P<hours>...) or (?P<d>..)d(?P<h>..)h(?P<m>..)m and "
        "optionally (?P<well>...), searched in file names (default: LIVECell names "
        "CELLTYPE_Phase_WELL_REP_DDdHHhMMm_POS)",
    )
    p.add_argument(
        "--cell-type",
        help="use this culture type's thresholds for every image (default: predicted per "
        "image); give it for a time series of one culture",
    )
    p.add_argument("--describe", action="store_true", help="print the output columns and exit")
    p.add_argument("--tta", action="store_true", help="average over flips (4x slower)")
    _add_min_score_option(p)
    p.add_argument("--device", help="torch device (default: cuda if present, else cpu)")
    p.set_defaults(func=_cmd_measure)
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
