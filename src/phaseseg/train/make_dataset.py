"""Your own annotations -> a training folder that ``phaseseg train`` reads.

>>> import tempfile, numpy as np, tifffile
>>> from pathlib import Path
>>> from PIL import Image
>>> from phaseseg.train.make_dataset import pair_label_images, build_dataset
>>> root = Path(tempfile.mkdtemp()); (root / "images").mkdir(); (root / "masks").mkdir()
>>> Image.fromarray(np.full((64, 64), 100, np.uint8)).save(root / "images" / "a.png")
>>> labels = np.zeros((64, 64), np.uint16); labels[5:15, 5:15] = 1; labels[30:50, 20:40] = 2
>>> tifffile.imwrite(root / "masks" / "a_masks.tif", labels)   # Cellpose's naming
>>> pairs = pair_label_images([root / "images"], root / "masks")  # [(image, label image), ...]
>>> [(image.name, label.name) for image, label in pairs]
[('a.png', 'a_masks.tif')]
>>> build_dataset(pairs, root / "my_data", cell_type="shsy5y")  # the folds table
  id cell_type  fold
0  a    shsy5y     0
>>> sorted(p.name for p in (root / "my_data").iterdir())
['folds.csv', 'train', 'train.csv']
>>> import shutil; shutil.rmtree(root)

The folder gets ``train/<id>.png`` (8-bit grayscale), ``train.csv`` (Kaggle format: one row per
cell, ``id,annotation,width,height,cell_type``) and ``folds.csv`` (``id,cell_type,fold``, images
dealt round-robin into ``n_folds`` folds in name order, so ``--val-fold 0`` holds out about one
in ``n_folds``). It is written into a temporary folder and renamed at the end: an interrupted
run leaves no half-written data set.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from phaseseg import io
from phaseseg.io.formats import iter_coco, read_labels
from phaseseg.progress import tqdm

log = logging.getLogger(__name__)

LABEL_SUFFIXES = ("", "_masks", "_labels", "_label", "_mask")  # Cellpose, napari, Fiji habits
LABEL_EXTENSIONS = (".tif", ".tiff", ".png")


CELL_TYPE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def check_cell_type_name(name: str) -> None:
    """Raise :class:`PhasesegInputError` unless ``name`` can name a cell type: 1-64 letters,
    digits, ``_``, ``-`` or ``.``, starting with a letter or digit.

    >>> check_cell_type_name("iPSC-neurons")
    >>> try:
    ...     check_cell_type_name("my cells")
    ... except ValueError as e:
    ...     print(e)
    cell type 'my cells': use 1-64 letters, digits, _, - or . (starting with a letter or digit)
    """
    if not CELL_TYPE_NAME.fullmatch(name):
        raise io.PhasesegInputError(
            f"cell type {name!r}: use 1-64 letters, digits, _, - or . "
            "(starting with a letter or digit)"
        )


def pair_label_images(
    images: list[str | os.PathLike], labels_dir: str | os.PathLike
) -> list[tuple[Path, Path]]:
    """Match every image to its label image in ``labels_dir``.

    For ``images/a.png`` the label image is ``labels_dir/a{,_masks,_labels,_label,_mask}`` with
    extension ``.tif``, ``.tiff`` or ``.png`` (the first that exists). Raises
    :class:`PhasesegInputError` naming the image when none exists.
    """
    labels_dir = Path(labels_dir)
    if not labels_dir.is_dir():
        raise io.PhasesegInputError(f"{labels_dir}: no such folder")
    paths = io.find_image_set(images, exclude=[labels_dir])  # labels may lie inside images/
    stems = {p.stem for p in paths}
    is_label = {  # Cellpose's habit: a.png and a_masks.tif side by side in one folder
        p.stem
        for p in paths
        for suffix in LABEL_SUFFIXES[1:]
        if p.stem.removesuffix(suffix) in stems and p.stem.endswith(suffix)
    }
    pairs = []
    for image in (p for p in paths if p.stem not in is_label):
        candidates = [
            labels_dir / f"{image.stem}{suffix}{ext}"
            for suffix in LABEL_SUFFIXES
            for ext in LABEL_EXTENSIONS
        ]
        found = next((c for c in candidates if c.is_file() and c != image), None)
        if found is None:
            raise io.PhasesegInputError(
                f"{image}: no label image for it in {labels_dir} "
                f"(looked for {image.stem}.tif, {image.stem}_masks.tif, ... .png)"
            )
        pairs.append((image, found))
    return pairs


def coco_label_images(
    coco_path: str | os.PathLike, images_dir: str | os.PathLike
) -> Iterable[tuple[Path, np.ndarray]]:
    """``(image path, labels)`` for each image of a COCO file, found by its ``file_name``."""
    images_dir = Path(images_dir)
    for file_name, labels in iter_coco(coco_path):
        path = images_dir / Path(file_name).name
        if not path.is_file():
            raise io.PhasesegInputError(f"{coco_path}: image {file_name!r} not in {images_dir}")
        yield path, labels


def build_dataset(
    items: Iterable[tuple[Path, Path | np.ndarray]],
    out: str | os.PathLike,
    cell_type: str,
    n_folds: int = 5,
) -> pd.DataFrame:
    """Write a training folder from ``(image path, label image path or int array)`` pairs.

    Parameters
    ----------
    items : pairs of an image file (any format :func:`phaseseg.io.read_image` reads) and its
        label image ((H, W) ints, 0 = background), as a path or an array.
    out : the folder to create; it must not exist or be empty.
    cell_type : the culture: one of :data:`phaseseg.io.CELL_TYPES`, or a name of your own
        (letters, digits, ``_``, ``-``, ``.``), which fine-tuning adds to the model as a new
        cell type (:func:`phaseseg.train.fit`).
    n_folds : number of folds in ``folds.csv``.

    Returns the folds table (``id, cell_type, fold``).
    """
    out = Path(out)
    check_cell_type_name(cell_type)
    if n_folds < 1:
        raise io.PhasesegInputError(f"n_folds must be at least 1, got {n_folds}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise io.PhasesegInputError(f"{out}: exists and is not an empty folder")
    with io.atomic_dir(out) as tmp:  # out appears complete or not at all
        rows, ids = [], []
        (tmp / "train").mkdir()
        for image_path, labels in tqdm(items, desc="dataset", unit="img"):  # streams COCO files
            image_id = Path(image_path).stem
            if image_id in ids:
                raise io.PhasesegInputError(f"{image_path}: image id {image_id!r} appears twice")
            image = io.read_image(image_path)
            source = image_path
            if isinstance(labels, Path | str):
                source, labels = labels, read_labels(labels)
            if labels.shape != image.shape:
                raise io.PhasesegInputError(
                    f"{source}: labels are {labels.shape[1]}x{labels.shape[0]} but the image is "
                    f"{image.shape[1]}x{image.shape[0]}"
                )
            Image.fromarray(image).save(tmp / "train" / f"{image_id}.png")
            h, w = image.shape
            rles = io.labels_to_rles(labels)
            if not rles:  # one empty annotation keeps the image in train.csv (all background)
                log.warning("%s: no cells in its label image", source)
                rles = [""]
            rows += [(image_id, rle, w, h, cell_type) for rle in rles]
            ids.append(image_id)
        if not ids:
            raise io.PhasesegInputError("no annotated images given")
        table = pd.DataFrame(rows, columns=["id", "annotation", "width", "height", "cell_type"])
        table.to_csv(tmp / "train.csv", index=False)
        folds = pd.DataFrame({"id": sorted(ids), "cell_type": cell_type})
        folds["fold"] = np.arange(len(folds)) % n_folds
        folds.to_csv(tmp / "folds.csv", index=False)
    log.info("wrote %s: %d images", out, len(ids))
    return folds
