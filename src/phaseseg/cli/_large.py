"""``phaseseg predict`` on large images: OME-Zarr inputs and image files too large for memory
go block by block (:mod:`phaseseg.segment.large`) into ``--labels-dir`` as OME-Zarr labels."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from phaseseg.io import PhasesegInputError

ONLY_LABELS = (
    "large images (OME-Zarr, or files over {mpx} Mpx) are segmented block by block and "
    "written only as OME-Zarr labels, with --labels-dir; --submission, --overlays-dir and "
    "--rois-dir take images that fit in memory: run those separately"
)


def split_large_inputs(inputs: list[str], args: argparse.Namespace) -> tuple[list[Path], list[str]]:
    """``(large images, the other inputs)``. A folder holding no large image stays as it is;
    one that does is replaced by its other images. Refuses, in one line, large images with
    outputs other than ``--labels-dir``."""
    from phaseseg.io import find_images
    from phaseseg.io.large import LARGE_PIXELS, is_large_image

    def is_large(path: str | Path) -> bool:
        try:
            return is_large_image(path)
        except PhasesegInputError:  # unreadable: reported and skipped by the usual path
            return False

    large: list[Path] = []
    rest: list[str] = []
    for item in inputs:
        if Path(item).is_dir() and Path(item).suffix.lower() != ".zarr":
            found = find_images([item])
            big = [p for p in found if is_large(p)]
            large.extend(big)
            rest.extend([item] if not big else [str(p) for p in found if p not in big])
        elif Path(item).exists() and is_large(item):
            large.append(Path(item))
        else:
            rest.append(item)
    if large and (args.submission or args.overlays_dir or args.rois_dir or not args.labels_dir):
        raise PhasesegInputError(f"{large[0]}: " + ONLY_LABELS.format(mpx=LARGE_PIXELS // 10**6))
    return large, rest


def predict_large(paths: list[Path], model, args: argparse.Namespace) -> tuple[int, int, list[str]]:
    """Segment each large image into ``--labels-dir/<name>.ome.zarr``; return the number of
    images and cells, and one line per image that failed."""
    from phaseseg.io.large import open_large_image
    from phaseseg.io.microscopy import image_id
    from phaseseg.progress import tqdm
    from phaseseg.segment.large import segment_large

    n_images = n_cells = 0
    failed: list[str] = []
    for path in paths:
        out = Path(args.labels_dir) / f"{image_id(path)}.ome.zarr"
        try:
            image, pixel_size = open_large_image(path)
            source = os.path.relpath(path.resolve(), out.resolve())
            with tqdm(desc=path.name, unit="task") as bar:
                result = segment_large(
                    image,
                    model,
                    out,
                    cell_type=args.cell_type,
                    min_score=args.min_score,
                    tta=args.tta,
                    pixel_size=pixel_size,
                    source=source,
                    progress=bar,
                )
        except PhasesegInputError as e:
            failed.append(str(e) if str(path) in str(e) else f"{path}: {e}")
            continue
        n_images += 1
        n_cells += result.n_cells
        h, w = result.shape
        print(
            f"{path}: {w}x{h} px, {result.n_cells} cells ({result.cell_type}), "
            f"{result.n_blocks} blocks -> {out}",
            file=sys.stderr,
        )
    return n_images, n_cells, failed
