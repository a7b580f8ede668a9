"""How well Fiji ROI sets (`--rois-dir`) cover the cells, on real images.

    .venv/bin/python benchmarks/roi_iou.py [--data ../shared/data]

Segments one Sartorius training image per cell type and the first and last LIVECell SH-SY5Y
frames with the bundled model, writes each image's ROI set with `phaseseg.io.rois.write_rois`,
reads it back with roifile and rasterises every polygon as ImageJ does (a pixel is inside when
its centre is: `polygon2mask(shape, yx - 0.5)` on the pixel-corner coordinates). Prints per image
and overall the IoU of each ROI with its cell, and for comparison that of outlines through the
boundary pixels' centres (what OpenCV's `findContours` gives and cellpose exported, cellpose
#757), filled the same way.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import roifile
from scipy import ndimage as ndi
from skimage.draw import polygon2mask
from skimage.measure import find_contours

from phaseseg import io, load_model
from phaseseg.io.rois import write_rois


def centre_outline(mask: np.ndarray) -> np.ndarray:
    """(row, col) of the boundary pixels' centres, in order (a contour snapped inside)."""
    contour = max(find_contours(np.pad(mask, 1).astype(float), 0.5), key=len) - 1
    out = []
    for r, c in contour:
        rows, cols = (int(np.floor(r)), int(np.ceil(r))), (int(np.floor(c)), int(np.ceil(c)))
        out.append(next((y, x) for y in rows for x in cols if mask[y, x]))
    return np.array(out, dtype=float)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/roi_iou.zip"))
    args = parser.parse_args()
    folds = pd.read_csv(args.data / "sartorius" / "folds.csv")
    paths = [
        args.data / "sartorius" / "train" / f"{folds[folds.cell_type == t].id.iloc[0]}.png"
        for t in ("astro", "cort", "shsy5y")
    ]
    lapse = sorted((args.data / "livecell_shsy5y_timelapse").glob("*.tif"))
    paths += [lapse[0], lapse[-1]]
    model = load_model()
    ours, centres, with_holes = [], [], 0
    for path in paths:
        labels = model.segment(io.read_image(path), cell_type="shsy5y" if path in lapse else None)
        start = time.perf_counter()
        write_rois(args.out, labels)
        seconds = time.perf_counter() - start
        a, b = [], []
        for roi in roifile.roiread(args.out):
            cell = labels == int(roi.name)
            xy = roi.coordinates().astype(float)
            a.append(iou(polygon2mask(labels.shape, xy[:, ::-1] - 0.5), cell))
            b.append(iou(polygon2mask(labels.shape, centre_outline(cell) - 0.5), cell))
            with_holes += not (ndi.binary_fill_holes(cell) == cell).all()
        ours += a
        centres += b
        print(
            f"{path.name}: {len(a)} cells, edge outlines IoU min {min(a):.3f} mean "
            f"{np.mean(a):.4f}; centre outlines mean {np.mean(b):.3f} min {min(b):.3f}; "
            f"written in {seconds:.2f} s"
        )
    ours_a, centres_a = np.array(ours), np.array(centres)
    print(
        f"all {len(ours_a)} cells: edge outlines IoU min {ours_a.min():.3f}, mean "
        f"{ours_a.mean():.4f}, exactly 1 for {np.mean(ours_a == 1):.1%} ({with_holes} cells "
        f"have holes); centre outlines mean {centres_a.mean():.3f}, below 0.9 for "
        f"{np.mean(centres_a < 0.9):.0%}"
    )


if __name__ == "__main__":
    main()
