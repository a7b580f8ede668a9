"""The *Segment cells* dock widget: segment the chosen image layer, add a Labels layer.

Settings: the model (bundled, or a ``.pt`` file the user picks), cell type (auto = the one
the network predicts, or one of the model's types), min score (the model's tuned value, or
one given) and TTA. The work (model loading, network, post-processing, measuring) runs in a
napari ``thread_worker`` with a progress bar, so the viewer stays responsive. The Labels layer
gets the measurements of every cell as its ``features``
(:func:`~phaseseg.napari.layers.cell_features`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.types import FileDialogMode
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
)
from napari.layers import Image
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info

from phaseseg.io import CELL_TYPES, PhasesegInputError
from phaseseg.napari.layers import cell_features, layer_image, pixel_size_um

if TYPE_CHECKING:
    import napari
    import numpy as np
    import pandas as pd

    from phaseseg.segment.segmenter import Segmenter

log = logging.getLogger(__name__)

AUTO = "auto"
STEPS = 3  # model, network + post-processing, measurements


class SegmentWidget(Container):
    """Dock widget segmenting an image layer of ``viewer`` (napari passes the viewer)."""

    def __init__(self, viewer: napari.viewer.Viewer):
        super().__init__(labels=True)
        self.viewer = viewer
        self._models: dict[Path | None, Segmenter] = {}
        self.image = ComboBox(label="image", choices=self._image_layers, nullable=True)
        self.model_file = FileEdit(
            label="model", mode=FileDialogMode.EXISTING_FILE, filter="*.pt", nullable=True
        )
        self.model_file.tooltip = "a phaseseg model file (.pt); empty: the bundled model"
        self.cell_type = ComboBox(label="cell type", choices=[AUTO, *CELL_TYPES], value=AUTO)
        self.cell_type.tooltip = "auto: the type the network predicts for the image"
        self.tuned_score = CheckBox(text="model's min score (per cell type)", value=True)
        self.min_score = FloatSpinBox(label="min score", min=0.0, max=1.0, step=0.05, value=0.0)
        self.min_score.tooltip = "drop cells whose mean foreground probability is lower"
        self.min_score.enabled = False
        self.tta = CheckBox(text="TTA: average over 4 flips (4x slower)", value=False)
        self.run_button = PushButton(text="Segment")
        self.progress = ProgressBar(label="progress", min=0, max=STEPS, value=0)
        self.status = Label(label="", value="")
        self.status.native.setWordWrap(True)
        self.extend(
            [
                self.image,
                self.model_file,
                self.cell_type,
                self.tuned_score,
                self.min_score,
                self.tta,
                self.run_button,
                self.progress,
                self.status,
            ]
        )
        self.worker: Any = None
        self.tuned_score.changed.connect(lambda on: setattr(self.min_score, "enabled", not on))
        self.model_file.changed.connect(self._model_changed)
        self.run_button.changed.connect(self.run)
        for event in ("inserted", "removed", "reordered"):
            getattr(viewer.layers.events, event).connect(self._layers_changed)
        viewer.layers.selection.events.active.connect(self._select_active)
        self._select_active()

    # ------------------------------------------------------------------ layer and model choice

    def _image_layers(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, Image)]

    def _layers_changed(self, _event: Any = None) -> None:
        self.image.reset_choices()

    def _select_active(self, _event: Any = None) -> None:
        """Follow the viewer's selected layer when it is an image."""
        self.image.reset_choices()
        active = self.viewer.layers.selection.active
        if isinstance(active, Image):
            self.image.value = active

    def _model_path(self) -> Path | None:
        value = self.model_file.value
        return value if isinstance(value, Path) and value != Path() else None

    def model(self) -> Segmenter:
        """The chosen model, loaded once (raises :class:`PhasesegInputError` for a bad file)."""
        from phaseseg.segment.segmenter import load_model

        path = self._model_path()
        if path not in self._models:
            self._models[path] = load_model(path)
        return self._models[path]

    def _model_changed(self, _value: Any = None) -> None:
        """Offer the new model's cell types (a bad file is reported when segmenting)."""
        try:
            types = list(self.model().postprocess)
        except PhasesegInputError as e:
            self.status.value = f"error: {e}"
            return
        keep = self.cell_type.value if self.cell_type.value in types else AUTO
        self.cell_type.choices = [AUTO, *types]
        self.cell_type.value = keep
        self.status.value = ""

    # ------------------------------------------------------------------ segmenting

    def segment_options(self) -> dict[str, Any]:
        """The keyword arguments of :meth:`Segmenter.segment_full` the settings give."""
        return {
            "cell_type": None if self.cell_type.value == AUTO else self.cell_type.value,
            "min_score": None if self.tuned_score.value else float(self.min_score.value),
            "tta": bool(self.tta.value),
        }

    def run(self, _value: Any = None) -> Any:
        """Segment the chosen image layer in a thread worker; returns the worker (or None
        when there is nothing to segment). The Labels layer is added when it returns."""
        layer = self.image.value
        if layer is None:
            self.status.value = "open an image first"
            return None
        if self.worker is not None:
            return self.worker  # one at a time
        try:
            image = layer_image(layer.data, layer.name, rgb=layer.rgb)
        except PhasesegInputError as e:
            self._failed(e)
            return None
        pixel_size = pixel_size_um(layer.scale, getattr(layer, "units", None))
        self.run_button.enabled = False
        self.progress.value = 0
        self.status.value = f"segmenting {layer.name} ..."
        worker = thread_worker(
            self._segment,
            progress={"total": STEPS, "desc": f"phaseseg: {layer.name}"},
            ignore_errors=True,
        )(image, layer.name, self.segment_options(), pixel_size)
        worker.yielded.connect(self._step_done)
        worker.returned.connect(lambda result: self._add_labels(layer, *result))
        worker.errored.connect(self._failed)
        worker.finished.connect(self._finished)
        self.worker = worker
        worker.start()
        return worker

    def _segment(
        self, image: np.ndarray, name: str, options: dict[str, Any], pixel_size: float | None
    ) -> Generator[int, None, tuple[np.ndarray, pd.DataFrame, str, float]]:
        """Runs in the worker thread: yields the number of steps done."""
        start = time.perf_counter()
        model = self.model()
        yield 1
        result = model.segment_full(image, **options)
        assert not isinstance(result, list)  # one image in, one result out
        yield 2
        features = cell_features(result.labels, image, name, pixel_size)
        yield 3
        return result.labels, features, result.cell_type, time.perf_counter() - start

    def _step_done(self, steps: int) -> None:
        self.progress.value = steps

    def _add_labels(
        self, layer: Image, labels: np.ndarray, features: pd.DataFrame, cell_type: str, s: float
    ) -> None:
        ndim = layer.ndim
        self.viewer.add_labels(
            labels,
            name=f"{layer.name} cells",
            features=features,
            scale=tuple(layer.scale)[ndim - 2 :],
            translate=tuple(layer.translate)[ndim - 2 :],
        )
        message = f"{len(features)} cells in {layer.name} ({cell_type} thresholds, {s:.1f} s)"
        self.status.value = message
        show_info(message)

    def _failed(self, error: BaseException) -> None:
        text = str(error) if isinstance(error, PhasesegInputError) else repr(error)
        self.status.value = f"error: {text}"
        if not isinstance(error, PhasesegInputError):
            log.error("segmentation failed", exc_info=error)
        show_error(f"phaseseg: {text}")

    def _finished(self) -> None:
        self.worker = None
        self.run_button.enabled = True
