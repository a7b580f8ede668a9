"""Model files: weights plus the metadata needed to use them, loaded without running code.

A model file is a ``torch.save`` dict of tensors and plain Python values, read back with
``torch.load(..., weights_only=True)`` so that opening a file never executes code from it::

    {"format": "phaseseg-model", "format_version": 1, "phaseseg_version": "0.1.0",
     "net": {...NetConfig...}, "train": {...TrainConfig...},
     "postprocess": {"astro": {...}, "cort": {...}, "shsy5y": {...}},
     "cell_types": ["astro", "cort", "shsy5y"], "data": {...}, "scores": {...}, "seed": 0,
     "state_dict": {...}}
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from phaseseg import __version__
from phaseseg.io import PhasesegInputError, atomic_path

log = logging.getLogger(__name__)

FORMAT = "phaseseg-model"
FORMAT_VERSION = 1


def save_model(path: str | os.PathLike, state_dict: dict, metadata: dict[str, Any]) -> None:
    """Write weights and metadata to ``path`` atomically."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "phaseseg_version": __version__,
        **metadata,
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a model file written by :func:`save_model`; clear errors for anything else."""
    path = Path(path)
    if not path.is_file():
        raise PhasesegInputError(f"{path}: no such model file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - whatever torch raises, the file is not ours
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PhasesegInputError(f"{path}: not a phaseseg model file ({first[:120]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise PhasesegInputError(f"{path}: not a phaseseg model file")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise PhasesegInputError(
            f"{path}: model format version {version} is not supported by phaseseg {__version__} "
            f"(which reads version {FORMAT_VERSION})"
        )
    return payload
