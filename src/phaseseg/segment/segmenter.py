"""A loaded model: image -> probability maps -> cell type -> labels.

>>> from phaseseg import load_model
>>> model = load_model()                      # the bundled default model
>>> labels = model.segment(image)             # uint8 (H, W) -> int32 (H, W)
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from phaseseg.io import CELL_TYPES, PhasesegInputError
from phaseseg.nn.checkpoint import load_model_file
from phaseseg.nn.model import UNet, build_model
from phaseseg.segment import tiling
from phaseseg.segment.normalize import normalize_image
from phaseseg.segment.postprocess import PostprocessParams, maps_to_labels

log = logging.getLogger(__name__)

BUNDLED_MODEL = Path(__file__).parents[1] / "models" / "default.pt"


def pick_device(device: str | None = None) -> torch.device:
    """CUDA when present (or the given device), else the CPU with all its cores."""
    if device:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    torch.set_num_threads(os.cpu_count() or 1)
    return torch.device("cpu")


@torch.inference_mode()
def predict_maps(
    net: UNet, image: np.ndarray, device: torch.device, tta: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the network on one image.

    Parameters
    ----------
    image : (H, W) uint8 array (any H, W; padded internally to the network's stride).
    tta : average over horizontal/vertical flips (4 passes).

    Returns
    -------
    foreground, distance : (H, W) float32 probabilities; cell_type_probs : (n_types,) float32.
    """
    x = torch.from_numpy(normalize_image(image)).to(device)
    flips = [(), (3,), (2,), (2, 3)] if tta else [()]
    probs, logits = tiling.forward_padded(net, x, device, flips)
    probs = probs.cpu().numpy()
    return probs[0], probs[1], torch.softmax(logits, dim=0).cpu().numpy()


@dataclass
class Segmentation:
    """Result of :meth:`Segmenter.segment_full`."""

    labels: np.ndarray  # int32 (H, W)
    cell_type: str
    cell_type_probs: dict[str, float]
    foreground: np.ndarray  # float32 (H, W)
    distance: np.ndarray  # float32 (H, W)


def check_min_score(value: float, name: str = "min_score") -> None:
    """Raise :class:`PhasesegInputError` (naming ``name``) unless ``value`` lies in [0, 1]."""
    if not 0 <= value <= 1:
        raise PhasesegInputError(f"{name} {value}: must lie in [0, 1]")


class Segmenter:
    """A network with its post-processing thresholds, ready to segment images."""

    def __init__(
        self,
        net: UNet,
        postprocess: dict[str, PostprocessParams],
        metadata: dict | None = None,
        device: str | torch.device | None = None,
    ):
        self.device = device if isinstance(device, torch.device) else pick_device(device)
        self.net = net.to(self.device).to(memory_format=torch.channels_last).eval()
        self.postprocess = postprocess
        self.metadata = metadata or {}

    def set_min_score(self, min_score: float) -> None:
        """Use one ``min_score`` in [0, 1] for every cell type (0 keeps low-confidence cells)."""
        check_min_score(min_score)
        self.postprocess = {k: replace(v, min_score=min_score) for k, v in self.postprocess.items()}

    def segment_full(
        self, image: np.ndarray, tta: bool = False, cell_type: str | None = None
    ) -> Segmentation:
        """Segment one uint8 ``(H, W)`` image; also return the maps and the cell type.

        ``cell_type`` overrides the predicted type (which chooses the thresholds). Images with
        a side over :data:`~phaseseg.segment.tiling.TILE_ABOVE` px run through the network
        in overlapping tiles (:func:`~phaseseg.segment.tiling.predict_maps_tiled`),
        post-processed as one.
        """
        if image.ndim != 2:
            raise ValueError(f"expected a 2-D grayscale image, got shape {image.shape}")
        maps = tiling.predict_maps_tiled if max(image.shape) > tiling.TILE_ABOVE else predict_maps
        fg, dist, type_probs = maps(self.net, image, self.device, tta=tta)
        names = self.metadata.get("cell_types", CELL_TYPES)  # the type head's class order
        if cell_type is None:
            cell_type = names[int(np.argmax(type_probs))]
        elif cell_type not in self.postprocess:
            raise PhasesegInputError(f"unknown cell type {cell_type!r}; known: {', '.join(names)}")
        labels = maps_to_labels(fg, dist, **self.postprocess[cell_type].to_dict())
        probs = {n: float(p) for n, p in zip(names, type_probs, strict=True)}
        return Segmentation(labels, cell_type, probs, fg, dist)

    def segment(self, image: np.ndarray, tta: bool = False) -> np.ndarray:
        """Segment one uint8 ``(H, W)`` image into int32 ``(H, W)`` labels."""
        return self.segment_full(image, tta=tta).labels


def load_model(path: str | os.PathLike | None = None, device: str | None = None) -> Segmenter:
    """Load a model file (default: the bundled model) for inference."""
    path = Path(path) if path is not None else BUNDLED_MODEL
    if path == BUNDLED_MODEL and not path.is_file():
        raise PhasesegInputError(f"{path}: the bundled model is missing from this installation")
    payload = load_model_file(path)
    net = build_model(payload["net"])
    try:
        net.load_state_dict(payload["state_dict"])
    except RuntimeError as e:
        raise PhasesegInputError(f"{path}: weights do not fit the architecture ({e})") from None
    post = {k: PostprocessParams(**v) for k, v in payload["postprocess"].items()}
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    return Segmenter(net, post, meta, device=device)
