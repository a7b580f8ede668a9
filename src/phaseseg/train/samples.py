"""Training data: the Sartorius folder -> in-memory images + targets -> augmented random crops.

A data folder holds ``train.csv`` (Kaggle format), ``train/<id>.png`` and optionally
``folds.csv`` (``id,cell_type,fold``). All images and their targets fit in memory (461 images
take ~0.7 GB), so crops are cut from arrays in memory: in the training process itself on a CPU,
by DataLoader worker processes on a GPU (:func:`phaseseg.train.iter_batches`).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path

import numpy as np
import pandas as pd
from skimage.segmentation import find_boundaries

from phaseseg import io
from phaseseg.progress import tqdm
from phaseseg.segment.normalize import normalize_image
from phaseseg.train.targets import make_targets

log = logging.getLogger(__name__)

TARGET_NAMES = ("foreground", "distance", "touching", "centre")


@dataclass
class Sample:
    """One annotated image held in memory."""

    image_id: str
    cell_type: int  # index into the cell types given to load_samples (default io.CELL_TYPES)
    image: np.ndarray  # uint8 (H, W)
    labels: np.ndarray  # int32 (H, W)
    targets: dict[str, np.ndarray]  # see targets.make_targets
    cell_type_name: str = ""  # its name ("": io.CELL_TYPES[cell_type])

    @property
    def type_name(self) -> str:
        """The sample's cell type by name."""
        return self.cell_type_name or io.CELL_TYPES[self.cell_type]


def read_folds(data_dir: Path, df: pd.DataFrame) -> pd.Series:
    """Fold of each image id (``folds.csv``), or -1 everywhere when the file is absent."""
    path = Path(data_dir) / "folds.csv"
    ids = pd.unique(df["id"])
    if not path.is_file():
        log.warning("%s not found: every image is used for training", path)
        return pd.Series(-1, index=ids)
    folds = pd.read_csv(path, dtype={"id": str})
    if not {"id", "fold"} <= set(folds.columns):
        raise io.PhasesegInputError(f"{path}: needs columns id,fold")
    return folds.set_index("id")["fold"].reindex(ids).fillna(-1).astype(int)


def load_samples(
    data_dir: str | Path,
    image_ids: list[str] | None = None,
    cache_dir: Path | None = None,
    workers: int | None = None,
    cell_types: Sequence[str] | None = None,
) -> list[Sample]:
    """Load images, label images and targets of a Sartorius-style folder.

    Images are loaded by ``workers`` processes (default: one per core). Targets are cached
    (``cache_dir``, keyed by the CSV's content hash) since computing them for the full set takes
    about a minute on one core. ``cell_types`` are the classes of the model's type head (default
    :data:`phaseseg.io.CELL_TYPES`): a sample's ``cell_type`` is its index there, and a
    ``train.csv`` cell type outside them is refused.
    """
    cell_types = tuple(cell_types if cell_types is not None else io.CELL_TYPES)
    data_dir = Path(data_dir)
    df = io.read_train_csv(data_dir / "train.csv")
    if image_ids is not None:
        df = df[df["id"].isin(set(image_ids))]
    cache = None
    if cache_dir is not None:
        digest = hashlib.sha1(pd.util.hash_pandas_object(df, index=False).to_numpy()).hexdigest()
        cache = Path(cache_dir) / f"targets-{digest[:16]}.npz"
    cached = dict(np.load(cache)) if cache is not None and cache.is_file() else {}
    groups = [(str(i), rows) for i, rows in df.groupby("id", sort=False)]
    jobs = [
        (data_dir, i, rows, any(f"{i}/{k}" not in cached for k in TARGET_NAMES), cell_types)
        for i, rows in groups
    ]
    n_workers = min(workers or os.cpu_count() or 1, len(jobs) // 8 + 1)
    if n_workers > 1:  # reading, RLE decoding and targets are per image: spread them over cores
        # fork: workers share the parent's modules (no re-import of an unguarded __main__)
        context = get_context("fork" if "fork" in get_all_start_methods() else None)
        with ProcessPoolExecutor(n_workers, mp_context=context) as pool:
            loaded = pool.map(_load_one, jobs, chunksize=4)
            samples = list(tqdm(loaded, total=len(jobs), desc="loading", unit="img"))
    else:
        samples = [_load_one(j) for j in tqdm(jobs, desc="loading", unit="img")]
    new = {}
    for s in samples:
        if s.targets:
            new.update({f"{s.image_id}/{k}": v for k, v in s.targets.items()})
        else:
            s.targets = {k: cached[f"{s.image_id}/{k}"] for k in TARGET_NAMES}
    if cache is not None and new:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with io.atomic_path(cache) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **cached, **new)
    return samples


def _load_one(job: tuple[Path, str, pd.DataFrame, bool, tuple[str, ...]]) -> Sample:
    """One image of :func:`load_samples`: read, decode its annotations, compute its targets
    (unless cached: then ``targets`` is left empty)."""
    data_dir, image_id, rows, with_targets, cell_types = job
    cell_type = str(rows["cell_type"].iloc[0])
    if cell_type not in cell_types:
        raise io.PhasesegInputError(
            f"{data_dir / 'train.csv'}: unknown cell_type {cell_type!r} for image {image_id} "
            f"(the model's cell types: {', '.join(cell_types)})"
        )
    image = io.read_image(data_dir / "train" / f"{image_id}.png")
    labels = io.annotations_to_labels(rows, str(data_dir / "train.csv"))
    if image.shape != labels.shape:
        raise io.PhasesegInputError(
            f"{data_dir / 'train' / image_id}.png: image is {image.shape[1]}x{image.shape[0]}"
            f" but train.csv says {labels.shape[1]}x{labels.shape[0]}"
        )
    targets = make_targets(labels) if with_targets else {}
    return Sample(image_id, cell_types.index(cell_type), image, labels, targets, cell_type)


def random_crop(
    sample: Sample, size: int, rng: np.random.Generator, foreground_bias: float
) -> tuple[np.ndarray, ...]:
    """Cut an augmented ``size`` x ``size`` crop of one sample.

    With probability ``foreground_bias`` the crop is centred near a random cell pixel (sparse
    cort images otherwise give mostly empty crops). Augmentation: flips, 90-degree rotations,
    brightness/contrast jitter.

    Returns
    -------
    image float32 (size, size); foreground, distance in [0, 1], touching and boundary (pixels on
    either side of a cell's outline, 2 px wide) in {0, 1}, centre in [0, 1], float32
    (size, size) each.
    """
    h, w = sample.image.shape
    fg = sample.targets["foreground"]
    ys = xs = np.zeros(0, dtype=np.intp)
    if rng.random() < foreground_bias:
        ys, xs = np.nonzero(fg[::4, ::4])  # cell pixels on a 4-px grid (may miss tiny cells)
    if len(ys):
        k = rng.integers(len(ys))
        cy, cx = ys[k] * 4 + rng.integers(-size // 4, size // 4 + 1), xs[k] * 4
        cx += rng.integers(-size // 4, size // 4 + 1)
        y0, x0 = (
            int(np.clip(cy - size // 2, 0, h - size)),
            int(np.clip(cx - size // 2, 0, w - size)),
        )
    else:
        y0, x0 = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    sl = (slice(y0, y0 + size), slice(x0, x0 + size))
    image = normalize_image(sample.image[sl])
    maps = np.stack(
        [
            fg[sl].astype(np.float32),
            sample.targets["distance"][sl].astype(np.float32) / 255.0,
            sample.targets["touching"][sl].astype(np.float32),
            find_boundaries(sample.labels[sl], mode="thick").astype(np.float32),
            sample.targets["centre"][sl].astype(np.float32) / 255.0,
        ]
    )
    turns = int(rng.integers(4))
    image, maps = np.rot90(image, turns), np.rot90(maps, turns, axes=(1, 2))
    if rng.random() < 0.5:
        image, maps = image[:, ::-1], maps[:, :, ::-1]
    gain = float(np.exp(rng.normal(0, 0.15)))
    image = image * gain + float(rng.normal(0, 0.1))
    image = np.ascontiguousarray(image, dtype=np.float32)
    maps = np.ascontiguousarray(maps)
    return image, maps[0], maps[1], maps[2], maps[3], maps[4]


def batch_indices(
    samples: list[Sample], batch_size: int, rng: np.random.Generator, type_weights: dict[str, float]
) -> np.ndarray:
    """Draw image indices for one batch, each image weighted by its cell type's weight."""
    weights = np.array([type_weights.get(s.type_name, 1.0) for s in samples])
    return rng.choice(len(samples), size=batch_size, p=weights / weights.sum())
