"""Re-make docs/demo_overlay.png, the README's picture, with the bundled model.

    .venv/bin/python docs/make_demo_overlay.py [--model M] [--out docs/demo_overlay.png]

A 352x260 region of the bundled sample at 36 h, enlarged 2x: left the phase-contrast image,
right the cells found (``--cell-type shsy5y --min-score 0``), one outline per cell.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from phaseseg.analysis.overlays import overlay, write_png
from phaseseg.io import read_image
from phaseseg.segment.segmenter import load_model

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "SHSY5Y_Phase_B10_1_01d12h00m_1.tif"
REGION = (slice(130, 390), slice(250, 602))  # rows, columns of the 520x704 image
ZOOM, GAP = 2, 12


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="model file (default: bundled)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "demo_overlay.png")
    args = ap.parse_args()
    image = read_image(SAMPLE)
    model = load_model(args.model)
    labels = model.segment(image, cell_type="shsy5y", min_score=0.0)
    crop, cells = image[REGION], labels[REGION]
    crop, cells = (np.kron(a, np.ones((ZOOM, ZOOM), dtype=a.dtype)) for a in (crop, cells))
    left = np.repeat(crop[..., None], 3, axis=2)
    gap = np.full((crop.shape[0], GAP, 3), 255, dtype=np.uint8)
    write_png(args.out, np.concatenate([left, gap, overlay(crop, cells)], axis=1))
    print(f"{args.out}: {len(np.unique(labels)) - 1} cells in the whole image")


if __name__ == "__main__":
    main()
