"""Cells found in the bundled samples (samples/*.tif) for every setting of predict / measure.

    python benchmarks/demo_settings.py [--model M] [--json out.json]

Cell type (auto or fixed) x min score (the model's, or 0) x TTA, per sample; then a
library-level post-processing experiment (smaller minimum cell size, lower seed h-maxima
height) that is not a command-line setting. Prints Markdown tables (BENCHMARKS.md, "The demo's
settings"). No annotations exist for these images: the counts are compared with what is visible.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from phaseseg.io import read_image
from phaseseg.segment.postprocess import maps_to_labels
from phaseseg.segment.segmenter import load_model

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = {  # changes to the SH-SY5Y thresholds, with min_score 0
    "tuned": {},
    "min_size 20": {"min_size": 20},
    "min_size 20, seed_h 0.1": {"min_size": 20, "seed_h": 0.1},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model file (default: bundled)")
    ap.add_argument("--json", type=Path, default=None, help="also write the counts here")
    args = ap.parse_args()
    model = load_model(args.model)
    samples = sorted((ROOT / "samples").glob("*.tif"))
    names = [p.stem.split("_")[-2] for p in samples]  # 00d00h00m, ...
    rows: dict[str, list[int]] = {}
    extra: dict[str, list[int]] = {k: [] for k in EXPERIMENTS}
    for path in samples:
        image = read_image(path)
        for tta in (False, True):
            for cell_type in (None, *model.postprocess):
                for min_score in (None, 0.0):
                    result = model.segment_full(
                        image, cell_type=cell_type, min_score=min_score, tta=tta
                    )
                    key = (
                        f"{cell_type or 'auto (' + result.cell_type + ')'} | "
                        f"{'tuned' if min_score is None else 0} | {'yes' if tta else 'no'}"
                    )
                    key = key.replace("auto (astro)", "auto").replace("auto (shsy5y)", "auto")
                    rows.setdefault(key, []).append(int(result.labels.max()))
        fixed = model.segment_full(image, cell_type="shsy5y", min_score=0.0)
        params = model.thresholds("shsy5y", 0.0).to_dict()
        for name, change in EXPERIMENTS.items():
            labels = maps_to_labels(fixed.foreground, fixed.distance, **{**params, **change})
            extra[name].append(int(labels.max()))
    print("| cell type | min score | TTA | " + " | ".join(names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for key, counts in rows.items():
        print(f"| {key} | " + " | ".join(map(str, counts)) + " |")
    print()
    print("| SH-SY5Y thresholds, min score 0 | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    tuned = model.thresholds("shsy5y")
    described = f"tuned (min_size {tuned.min_size}, seed_h {tuned.seed_h})"
    extra = {described if k == "tuned" else k: v for k, v in extra.items()}
    for name, counts in extra.items():
        print(f"| {name} | " + " | ".join(map(str, counts)) + " |")
    if args.json is not None:
        args.json.write_text(json.dumps({"samples": names, "settings": rows, "thresholds": extra}))


if __name__ == "__main__":
    main()
