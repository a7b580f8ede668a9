"""How much of a model's fold-0 score is owed to tuning its thresholds on fold 0 itself.

    .venv/bin/python benchmarks/threshold_optimism.py [--model M [--model M2 ...]] [--fold 0]
        [--tta] [--no-centre] [--json OUT]

`phaseseg train` tunes the post-processing thresholds on the validation fold and reports the
score on that same fold, which flatters it. This script splits the fold's images into two
halves (alternating by sorted id within each cell type), tunes on one half with the same grid
search as training (`phaseseg.train.tune_postprocess`), scores the other half with those
thresholds, and swaps: the mean of the two held-out halves is an honest estimate of what the
tuning is worth on unseen images of the same kind. Also printed: the in-sample tuned score (as
training reports it), the score with the model's own stored thresholds and the untuned score
(the default thresholds, :class:`PostprocessParams`). This is the project's protocol for a
recipe decision: report untuned and tuned-on-the-other-half scores, never only in-sample ones.

Several ``--model``: an ensemble, the mean of their maps (foreground, distance, cell type
probabilities), post-processed once; the stored thresholds are the first model's.

A model with a centre output is tuned with seeds from its centre map too (a stage of
`tune_postprocess`); ``--no-centre`` leaves the centre map out, to measure what it adds on the
same weights. The thresholds each tuning chose are in the JSON (``params_*``).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from phaseseg import io
from phaseseg.segment.postprocess import PostprocessParams
from phaseseg.segment.segmenter import load_model, predict_maps
from phaseseg.train import predict_val, score_val, tune_postprocess
from phaseseg.train.samples import Sample, load_samples, read_folds

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sartorius"


def halves(samples: list[Sample], n_types: int) -> tuple[list[int], list[int]]:
    """Indices of two halves of ``samples`` (sorted by id), alternating within each cell type."""
    a, b = [], []
    for t in range(n_types):
        idx = [i for i, s in enumerate(samples) if s.cell_type == t]
        a += idx[0::2]
        b += idx[1::2]
    return sorted(a), sorted(b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--model", action="append", help="model file (default: bundled); repeat for an ensemble"
    )
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--tta", action="store_true", help="average the network over 4 flips")
    ap.add_argument(
        "--no-centre", action="store_true", help="seeds from the distance map only (no centre map)"
    )
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    models = [load_model(m) for m in args.model or [None]]
    df = io.read_train_csv(args.data / "train.csv")
    folds = read_folds(args.data, df)
    ids = sorted(i for i, f in folds.items() if f == args.fold)
    samples = sorted(load_samples(args.data, ids), key=lambda s: s.image_id)
    runs = []
    for model in models:
        if args.tta:
            runs.append(
                [predict_maps(model.net, s.image, model.device, tta=True).arrays() for s in samples]
            )
        else:
            runs.append(predict_val(model.net, samples, model.device))
    maps = [  # per image, the mean of each map over the models
        tuple(np.mean(parts, axis=0) for parts in zip(*per_model, strict=True))
        for per_model in zip(*runs, strict=True)
    ]
    if args.no_centre:
        maps = [m[:3] for m in maps]
    model = models[0]

    untuned = score_val(samples, maps, {t: PostprocessParams() for t in io.CELL_TYPES})
    stored_params = model.postprocess
    if any(p.seeds == "centre" for p in stored_params.values()) and len(maps[0]) < 4:
        stored = {}
    else:
        stored = score_val(samples, maps, stored_params)
    params_in, in_sample = tune_postprocess(samples, maps)
    a, b = halves(samples, len(io.CELL_TYPES))
    per_image: dict[int, float] = {}
    halves_params = []
    for tune_on, score_on in ((a, b), (b, a)):
        params, _ = tune_postprocess([samples[i] for i in tune_on], [maps[i] for i in tune_on])
        halves_params.append({t: p.to_dict() for t, p in params.items()})
        for i in score_on:
            per_image[i] = score_val([samples[i]], [maps[i]], params)["overall"]
    by_type = {
        name: [v for i, v in per_image.items() if samples[i].cell_type == t]
        for t, name in enumerate(io.CELL_TYPES)
    }
    cross = {name: float(np.mean(v)) for name, v in by_type.items() if v}
    cross["overall"] = float(np.mean(list(per_image.values())))
    result = {
        "model": args.model[0] if args.model and len(args.model) == 1 else args.model or "bundled",
        "fold": args.fold,
        "images": len(samples),
        "tta": args.tta,
        "centre_map": len(maps[0]) > 3,
        "untuned": untuned,
        "stored_thresholds": stored,
        "tuned_in_sample": in_sample,
        "tuned_on_other_half": cross,
        "params_in_sample": {t: p.to_dict() for t, p in params_in.items()},
        "params_halves": halves_params,
    }
    for key in ("untuned", "stored_thresholds", "tuned_in_sample", "tuned_on_other_half"):
        print(f"{key:20s} " + "  ".join(f"{k} {v:.4f}" for k, v in result[key].items()))
    for t, p in params_in.items():
        print(f"in-sample thresholds {t}: {p}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
