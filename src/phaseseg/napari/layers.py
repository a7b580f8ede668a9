"""The Qt-free part of the napari plugin: an image layer's data in, labels and features out;
corrected Labels layers out to a folder that ``phaseseg finetune`` reads.

>>> import numpy as np
>>> labels = np.zeros((32, 32), np.int32); labels[4:12, 4:12] = 1; labels[20:28, 18:30] = 2
>>> features = cell_features(labels, np.full((32, 32), 90, np.uint8), "demo")
>>> features[["index", "cell_id", "area_px"]].to_numpy().tolist()
[[1, 1, 64], [2, 2, 96]]
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from phaseseg.analysis.measure import measure_cells
from phaseseg.io import PhasesegInputError
from phaseseg.io.gray import to_gray_uint8

#: What the *Segment* button names the Labels layer of image layer ``name``.
LABELS_SUFFIX = " cells"


def layer_image(data: Any, name: str, rgb: bool = False) -> np.ndarray:
    """An image layer's data as the gray ``(H, W)`` image phaseseg segments.

    Parameters
    ----------
    data : array-like or list of them
        ``layer.data``: ``(H, W)`` of any real dtype, ``(H, W, 3|4)`` when ``rgb``, or a
        multiscale list (its full-resolution level is used).
    name : str
        The layer's name, for error messages.
    rgb : bool
        ``layer.rgb``: converted to gray (as ``phaseseg predict`` converts RGB files).

    Returns
    -------
    (H, W) array
        uint8 for RGB input, else ``data`` as it is (the model scales other dtypes itself).

    Raises :class:`PhasesegInputError` naming the layer for stacks and volumes.
    """
    if isinstance(data, (list, tuple)):
        data = data[0]
    image = np.asarray(data)
    if rgb:
        return to_gray_uint8(image, Path(name), warn=False)
    image = np.squeeze(image)
    if image.ndim != 2 or image.size == 0:
        raise PhasesegInputError(
            f"layer {name!r}: expected a 2-D image, got shape {image.shape} "
            "(segment stacks frame by frame with `phaseseg measure`)"
        )
    if not (np.issubdtype(image.dtype, np.number) or image.dtype == bool):
        raise PhasesegInputError(f"layer {name!r}: {image.dtype} pixels, not an image")
    return image


def cell_features(
    labels: np.ndarray, image: np.ndarray, image_id: str, pixel_size: float | None = None
) -> pd.DataFrame:
    """The Labels layer's ``features``: one row per cell, the columns of ``cells.csv``.

    :func:`phaseseg.analysis.measure.measure_cells` of ``labels`` (int (H, W)) in ``image``
    ((H, W)), with napari's ``index`` column (the label value, = ``cell_id``) put first, so
    napari matches rows to labels when it shows a cell's values on hover.
    """
    cells = measure_cells(labels, image, image_id, pixel_size)
    cells.insert(0, "index", cells["cell_id"].to_numpy())
    return cells


def pixel_size_um(scale: Any, units: Any = None) -> float | None:
    """µm per pixel from a layer's ``scale`` and ``units`` (its last two axes), or None.

    Known only when both axes have the same scale and their unit is a length (napari's
    readers of microscope formats set them from the metadata); a layer in pixels gives None.

    >>> pixel_size_um((0.65, 0.65), ("micrometer", "micrometer"))
    0.65
    >>> pixel_size_um((1.0, 1.0), ("pixel", "pixel")) is None
    True
    """
    if units is None or len(scale) < 2 or len(units) < 2:
        return None
    to_um = {"micrometer": 1.0, "micron": 1.0, "um": 1.0, "µm": 1.0, "nanometer": 1e-3,
             "nm": 1e-3, "millimeter": 1e3, "mm": 1e3}  # fmt: skip
    fy, fx = (to_um.get(str(u)) for u in units[-2:])
    sy, sx = (float(s) for s in scale[-2:])
    if fy is None or fy != fx or sy != sx or not sy > 0:
        return None
    return sy * fy


def labels_layer_name(image_name: str) -> str:
    """The name of the Labels layer the widget adds for image layer ``image_name``."""
    return image_name + LABELS_SUFFIX


def training_pairs(
    layers: Iterable[tuple[str, Any, bool, str]],
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Image layers paired with their (corrected) Labels layers, for fine-tuning.

    ``layers``: ``(name, data, rgb, kind)`` per layer, ``kind`` "image" or "labels" (any
    other kind is skipped). An image layer ``name`` pairs with the Labels layer named
    ``name + " cells"`` (the name *Segment* gives it); a pair whose shapes differ, or whose
    labels hold no cell, raises :class:`PhasesegInputError` naming the layer.

    Returns ``(name, image (H, W), labels (H, W) int32)`` for every pair, in layer order.

    >>> img = np.zeros((8, 8), np.uint8); lab = np.zeros((8, 8), np.int32); lab[2:5, 2:5] = 1
    >>> layers = [("a", img, False, "image"), ("a cells", lab, False, "labels"),
    ...           ("b", img, False, "image")]
    >>> [(name, int(labels.max())) for name, _, labels in training_pairs(layers)]
    [('a', 1)]
    """
    layers = list(layers)
    labels = {name: data for name, data, _, kind in layers if kind == "labels"}
    pairs = []
    for name, data, rgb, kind in layers:
        labels_name = labels_layer_name(name)
        if kind != "image" or labels_name not in labels:
            continue
        image = layer_image(data, name, rgb=rgb)
        cells = np.asarray(labels[labels_name])
        if cells.shape != image.shape:
            raise PhasesegInputError(
                f"layer {labels_name!r}: shape {cells.shape}, but its image {name!r} is "
                f"{image.shape}"
            )
        if not cells.any():
            raise PhasesegInputError(f"layer {labels_name!r}: no cell drawn")
        pairs.append((name, image, cells.astype(np.int32)))
    return pairs


def write_training_folder(
    pairs: list[tuple[str, np.ndarray, np.ndarray]], root: Path
) -> tuple[Path, Path]:
    """Write :func:`training_pairs` as ``root/images/<name>.tif`` and ``root/labels/<name>.tif``
    (names made file-safe and unique); return ``(images dir, labels dir)``."""
    import tifffile

    from phaseseg.io.formats import write_labels

    images, labels = Path(root) / "images", Path(root) / "labels"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    for name, image, cells in pairs:
        base = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "image"
        stem, k = base, 1
        while stem.lower() in used:  # "a b" and "a_b", or names equal but for case
            k += 1
            stem = f"{base}_{k}"
        used.add(stem.lower())
        tifffile.imwrite(images / f"{stem}.tif", image)
        write_labels(labels / f"{stem}.tif", cells)
    return images, labels
