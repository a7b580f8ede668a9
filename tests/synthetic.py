"""Tiny synthetic Sartorius-style data sets for fast tests (no real data needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from phaseseg.io import CELL_TYPES, labels_to_rles


def blob_labels(shape: tuple[int, int], n_cells: int, rng: np.random.Generator) -> np.ndarray:
    """Label image of ``n_cells`` non-overlapping discs (int32 ``(H, W)``)."""
    h, w = shape
    labels = np.zeros(shape, dtype=np.int32)
    yy, xx = np.mgrid[:h, :w]
    placed = 0
    for _ in range(n_cells * 20):
        r = rng.integers(4, 9)
        cy, cx = rng.integers(r, h - r), rng.integers(r, w - r)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2
        if (labels[disc] == 0).all():
            placed += 1
            labels[disc] = placed
        if placed == n_cells:
            break
    return labels


def blob_image(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A phase-contrast-like uint8 image of a label image: bright cells, noisy background."""
    img = 100 + 60 * (labels > 0) + rng.normal(0, 8, labels.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_dataset(root: Path, n_images: int = 6, shape=(96, 128), seed: int = 0) -> Path:
    """Write ``train.csv``, ``folds.csv`` and ``train/*.png`` under ``root``; return ``root``."""
    rng = np.random.default_rng(seed)
    (root / "train").mkdir(parents=True, exist_ok=True)
    rows, folds = [], []
    for i in range(n_images):
        image_id = f"img{i:02d}"
        cell_type = CELL_TYPES[i % len(CELL_TYPES)]
        labels = blob_labels(shape, 8, rng)
        Image.fromarray(blob_image(labels, rng)).save(root / "train" / f"{image_id}.png")
        for rle in labels_to_rles(labels):
            rows.append((image_id, rle, shape[1], shape[0], cell_type))
        folds.append((image_id, cell_type, i % 3))
    pd.DataFrame(rows, columns=["id", "annotation", "width", "height", "cell_type"]).to_csv(
        root / "train.csv", index=False
    )
    pd.DataFrame(folds, columns=["id", "cell_type", "fold"]).to_csv(root / "folds.csv", index=False)
    return root
