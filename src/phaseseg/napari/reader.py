"""napari reader: phaseseg's label TIFFs open as Labels layers.

Only files whose TIFF ``Software`` tag says phaseseg (:func:`phaseseg.io.formats.write_labels`
writes it) are claimed; for any other TIFF :func:`get_reader` returns None, so napari's own
reader opens it as an image.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from phaseseg.io.formats import is_phaseseg_labels, read_labels

LayerData = tuple[Any, dict[str, Any], str]


def get_reader(path: str | os.PathLike | list) -> Callable[[Any], list[LayerData]] | None:
    """:func:`read_labels_layer` when ``path`` is one phaseseg label TIFF, else None."""
    if isinstance(path, (list, tuple)):
        return None  # napari offers files one by one unless asked to stack them
    return read_labels_layer if is_phaseseg_labels(path) else None


def read_labels_layer(path: str | os.PathLike) -> list[LayerData]:
    """One Labels layer ``(labels, {"name": file stem}, "labels")``; labels int32 (H, W)."""
    path = Path(path)
    return [(read_labels(path), {"name": path.stem}, "labels")]
