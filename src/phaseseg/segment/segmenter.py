"""A loaded model: images -> probability maps -> cell type -> labels.

Usage (``image``, ``a``, ``b``: gray ``(H, W)`` arrays, uint8, uint16 or float)::

    from phaseseg import load_model
    model = load_model()                          # the bundled model, precision "auto"
    labels = model.segment(image)                 # int32 (H, W): 0 background, 1..N cells
    labels_a, labels_b = model.segment([a, b], min_score=0, cell_type="shsy5y")  # per call
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from phaseseg.io import CELL_TYPES, PhasesegInputError
from phaseseg.nn.checkpoint import load_model_file
from phaseseg.nn.device import check_precision, default_tta, pick_device, resolve_precision
from phaseseg.nn.model import UNet, build_model
from phaseseg.segment.maps import Maps, iter_maps, predict_maps
from phaseseg.segment.postprocess import PostprocessParams, maps_to_labels

log = logging.getLogger(__name__)

BUNDLED_MODEL = Path(__file__).parents[1] / "models" / "default.pt"

__all__ = [
    "BUNDLED_MODEL",
    "Maps",
    "Segmentation",
    "Segmenter",
    "check_min_score",
    "load_model",
    "pick_device",
    "predict_maps",
]


@dataclass
class Segmentation:
    """Result of :meth:`Segmenter.segment_full` for one image."""

    labels: np.ndarray  # int32 (H, W): 0 background, 1..N cells
    cell_type: str  # the type whose thresholds were used (predicted, or given)
    cell_type_probs: dict[str, float]  # the network's cell-type probabilities
    foreground: np.ndarray  # float32 (H, W) in [0, 1]
    distance: np.ndarray  # float32 (H, W) in [0, 1]
    centre: np.ndarray | None = None  # float32 (H, W) in [0, 1], from a model with a centre output


def check_min_score(value: float, name: str = "min_score") -> None:
    """Raise :class:`PhasesegInputError` (naming ``name``) unless ``value`` lies in [0, 1]."""
    if not 0 <= value <= 1:
        raise PhasesegInputError(f"{name} {value}: must lie in [0, 1]")


class Segmenter:
    """A network with its post-processing thresholds, ready to segment images.

    Parameters
    ----------
    net : UNet
        The network (moved to ``device``, put in eval mode).
    postprocess : dict of str to PostprocessParams
        Thresholds per cell type, tuned on validation data.
    metadata : dict, optional
        The model file's metadata (``cell_types`` gives the type head's class order).
    device : str or torch.device, optional
        Default: :func:`~phaseseg.nn.device.pick_device` (CUDA, MPS, else the CPU).
    precision : {"auto", "bf16", "fp32"}
        Resolved once here (:func:`~phaseseg.nn.device.resolve_precision`) and kept in
        ``self.precision`` as ``"bf16"`` or ``"fp32"``.
    tta : bool, optional
        Average the network over 4 flips unless a call says otherwise; default
        :func:`~phaseseg.nn.device.default_tta` (on, except in float32 on a CPU). Kept in
        ``self.tta``.
    """

    def __init__(
        self,
        net: UNet,
        postprocess: dict[str, PostprocessParams],
        metadata: dict | None = None,
        device: str | torch.device | None = None,
        precision: str = "auto",
        tta: bool | None = None,
    ):
        self.device = pick_device(device)
        self.precision = resolve_precision(check_precision(precision), self.device)
        self.tta = default_tta(self.device, self.precision) if tta is None else bool(tta)
        self.net = net.to(self.device).to(memory_format=torch.channels_last).eval()  # type: ignore[call-overload]
        self.postprocess = postprocess
        self.metadata = metadata or {}

    @property
    def cell_types(self) -> list[str]:
        """The cell types of the type head, in its class order."""
        return list(self.metadata.get("cell_types", CELL_TYPES))

    def set_min_score(self, min_score: float) -> None:
        """Deprecated: pass ``min_score=`` to :meth:`segment` instead.

        Uses one ``min_score`` in [0, 1] for every cell type in every later call.
        """
        warnings.warn(
            "Segmenter.set_min_score changes the model for every caller; pass min_score= to "
            "segment() / segment_full() instead",
            DeprecationWarning,
            stacklevel=2,
        )
        check_min_score(min_score)
        self.postprocess = {k: replace(v, min_score=min_score) for k, v in self.postprocess.items()}

    def check_cell_type(self, cell_type: str, option: str = "cell type") -> None:
        """Raise :class:`PhasesegInputError` unless the model has thresholds for
        ``cell_type`` (the message names it as ``option``, e.g. ``"--cell-type"``)."""
        if cell_type not in self.postprocess:
            known = ", ".join(self.postprocess)
            raise PhasesegInputError(f"{option} {cell_type!r}: the model knows {known}")

    def thresholds(self, cell_type: str, min_score: float | None = None) -> PostprocessParams:
        """The post-processing thresholds of ``cell_type``, with ``min_score`` overridden
        when given (a copy: the model is not changed)."""
        self.check_cell_type(cell_type)
        params = self.postprocess[cell_type]
        return params if min_score is None else replace(params, min_score=min_score)

    def predict_maps(
        self,
        images: np.ndarray | list[np.ndarray],
        *,
        tta: bool | None = None,
        batch_size: int | None = None,
    ) -> Maps | list[Maps]:
        """The network's :class:`~phaseseg.segment.maps.Maps` of one image or a list
        (``tta``: default ``self.tta``)."""
        if isinstance(images, (list, tuple)):
            return list(self._iter_maps(images, tta, batch_size))
        return next(self._iter_maps([images], tta, batch_size))

    def uses_tta(self, tta: bool | None = None) -> bool:
        """Whether a call with this ``tta`` averages over flips: ``tta``, else ``self.tta``."""
        return self.tta if tta is None else tta

    def _iter_maps(
        self, images: Iterable[np.ndarray], tta: bool | None, batch_size: int | None
    ) -> Iterator[Maps]:
        return iter_maps(
            self.net,
            images,
            self.device,
            precision=self.precision,
            tta=self.uses_tta(tta),
            batch_size=batch_size,
        )

    def iter_segment_full(
        self,
        images: Iterable[np.ndarray],
        *,
        cell_type: str | None = None,
        min_score: float | None = None,
        tta: bool | None = None,
        batch_size: int | None = None,
    ) -> Iterator[Segmentation]:
        """:meth:`segment_full` over an iterable of images, consumed lazily; yields one
        :class:`Segmentation` per image, in order (memory stays flat)."""
        if cell_type is not None:
            self.thresholds(cell_type)  # refuse an unknown type before any work
        if min_score is not None:
            check_min_score(min_score)
        names = self.cell_types
        for m in self._iter_maps(images, tta, batch_size):
            used = cell_type or names[int(np.argmax(m.cell_type_probs))]
            params = self.thresholds(used, min_score).to_dict()
            labels = maps_to_labels(m.foreground, m.distance, **params, centre=m.centre)
            probs = {n: float(p) for n, p in zip(names, m.cell_type_probs, strict=True)}
            yield Segmentation(labels, used, probs, m.foreground, m.distance, m.centre)

    def segment_full(
        self,
        images: np.ndarray | list[np.ndarray],
        *,
        cell_type: str | None = None,
        min_score: float | None = None,
        tta: bool | None = None,
        batch_size: int | None = None,
    ) -> Segmentation | list[Segmentation]:
        """Segment one image (or a list); also return the maps and the cell type.

        Parameters
        ----------
        images : (H, W) array or list of them
            Gray images of any size and real dtype (uint8, uint16, float; see
            :mod:`~phaseseg.segment.normalize`); a list may mix sizes.
        cell_type : str, optional
            Use this type's thresholds (default: the type the network predicts per image).
        min_score : float in [0, 1], optional
            Override the tuned ``min_score`` for this call (0 keeps low-confidence cells).
        tta : bool, optional
            Average the network over 4 flips (4x the network time); default ``self.tta``.
        batch_size : int, optional
            Network inputs per forward pass (:func:`~phaseseg.segment.maps.iter_maps`);
            results do not depend on it.

        Returns
        -------
        Segmentation, or a list of them for a list input
        """
        options: dict = dict(
            cell_type=cell_type, min_score=min_score, tta=tta, batch_size=batch_size
        )
        if isinstance(images, (list, tuple)):
            return list(self.iter_segment_full(images, **options))
        return next(self.iter_segment_full([images], **options))

    def segment(
        self,
        images: np.ndarray | list[np.ndarray],
        *,
        cell_type: str | None = None,
        min_score: float | None = None,
        tta: bool | None = None,
        batch_size: int | None = None,
    ) -> np.ndarray | list[np.ndarray]:
        """Segment one image (or a list) into int32 ``(H, W)`` labels (0 background, 1..N).

        Options as :meth:`segment_full`; thresholds apply to this call only.
        """
        options: dict = dict(
            cell_type=cell_type, min_score=min_score, tta=tta, batch_size=batch_size
        )
        if isinstance(images, (list, tuple)):
            return [s.labels for s in self.iter_segment_full(images, **options)]
        return next(self.iter_segment_full([images], **options)).labels


def load_model(
    path: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    precision: str = "auto",
    tta: bool | None = None,
) -> Segmenter:
    """Load a model file (default: the bundled model) for inference.

    ``device``, ``precision`` and ``tta`` as :class:`Segmenter`.
    """
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
    return Segmenter(net, post, meta, device=device, precision=precision, tta=tta)
