"""Make docs/finetune_before_after.png, the README's fine-tuning picture.

    .venv/bin/python docs/make_finetune_figure.py --after mycells.pt --cell-type mycells \\
        --image ID [--before M] [--before-cell-type astro] [--before-name NAME]
        [--out docs/finetune_before_after.png]

One held-out Sartorius image (not among the fine-tuning images): the annotation, the cells of
the model before (``--before``, default the bundled one; thresholds of ``--before-cell-type``)
and of the fine-tuned model (``--cell-type``), each with the image's competition score.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from phaseseg import io
from phaseseg.analysis.overlays import overlay
from phaseseg.metrics import image_score
from phaseseg.segment.segmenter import load_model

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sartorius"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--after", required=True, help="the fine-tuned model file")
    ap.add_argument("--cell-type", required=True, help="its cell type for the image")
    ap.add_argument("--image", required=True, help="Sartorius image id (held out)")
    ap.add_argument("--before", default=None, help="model before (default: bundled)")
    ap.add_argument("--before-cell-type", default="astro")
    ap.add_argument("--before-name", default="bundled model", help="its name in the picture")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "finetune_before_after.png")
    args = ap.parse_args()
    image = io.read_image(args.data / "train" / f"{args.image}.png")
    truth = io.train_labels(io.read_train_csv(args.data / "train.csv"), args.image)
    before = load_model(args.before).segment(image, cell_type=args.before_cell_type)
    after = load_model(args.after).segment(image, cell_type=args.cell_type)
    panels = [
        (truth, f"annotation ({truth.max()} cells)"),
        (before, f"{args.before_name}: {image_score(truth, before):.3f} ({before.max()} cells)"),
        (after, f"fine-tuned: {image_score(truth, after):.3f} ({after.max()} cells)"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(18, 4.9))
    for ax, (labels, title) in zip(axes, panels, strict=True):
        ax.imshow(overlay(image, labels))
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    print(f"{args.out}: " + "; ".join(t for _, t in panels))


if __name__ == "__main__":
    main()
