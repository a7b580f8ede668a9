"""The *Segment cells* dock widget: segment the chosen image layer, add a Labels layer.

Settings: the model (bundled, or a ``.pt`` file the user picks), cell type (auto = the one
the network predicts, or one of the model's types), min score (the model's tuned value, or
one given) and TTA. The work (model loading, network, post-processing, measuring) runs in a
napari ``thread_worker`` with a progress bar, so the viewer stays responsive. The Labels layer
gets the measurements of every cell as its ``features``
(:func:`~phaseseg.napari.layers.cell_features`).

*Fine-tune on these labels* closes the loop of ``phaseseg finetune``: after the user has
corrected the Labels layers *Segment* added (``<image> cells``), it fine-tunes the widget's
model on every image layer that has one, as the cell type typed in, for the minutes given
(:func:`phaseseg.train.finetune.finetune`, in a thread worker), saves the model and makes it
the widget's model, so that *Segment* then uses it.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Generator
from dataclasses import replace
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
    LineEdit,
    ProgressBar,
    PushButton,
)
from napari.layers import Image, Labels
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info

from phaseseg.io import CELL_TYPES, PhasesegInputError
from phaseseg.napari.layers import (
    cell_features,
    labels_layer_name,
    layer_image,
    pixel_size_um,
    training_pairs,
    write_training_folder,
)

if TYPE_CHECKING:
    import napari
    import numpy as np
    import pandas as pd

    from phaseseg.segment.segmenter import Segmenter
    from phaseseg.train.finetune import FinetuneResult

log = logging.getLogger(__name__)

AUTO = "auto"
STEPS = 3  # model, network + post-processing, measurements
#: where a fine-tuned model goes when the user picks no file
MODELS_DIR = Path.home() / "phaseseg-models"


class SegmentWidget(Container):
    """Dock widget segmenting an image layer of ``viewer`` (napari passes the viewer)."""

    def __init__(self, viewer: napari.viewer.Viewer):
        from phaseseg.nn.device import default_tta  # torch: when the widget opens, not before

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
        self.tta = CheckBox(text="TTA: average over 4 flips (4x slower)", value=default_tta())
        self.tta.tooltip = (
            "a higher score on new images; on by default where the network runs fast (native "
            "bf16, a GPU), off on a CPU without bf16"
        )
        self.run_button = PushButton(text="Segment")
        self.new_type = LineEdit(label="fine-tune as", value="mycells")
        self.new_type.tooltip = (
            "cell type name of your culture: a new type is added to the model, a known one "
            "is trained further"
        )
        self.minutes = FloatSpinBox(label="minutes", min=0.1, max=240.0, step=1.0, value=10.0)
        self.minutes.tooltip = "wall-clock budget of the fine-tune (training and thresholds)"
        self.finetune_out = FileEdit(
            label="save as", mode=FileDialogMode.OPTIONAL_FILE, filter="*.pt", nullable=True
        )
        self.finetune_out.tooltip = f"model file to write; empty: {MODELS_DIR}/<type>.pt"
        self.finetune_button = PushButton(text="Fine-tune on these labels")
        self.finetune_button.tooltip = (
            "fine-tune the model on every image layer that has a corrected '<image> cells' "
            "Labels layer"
        )
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
                self.new_type,
                self.minutes,
                self.finetune_out,
                self.finetune_button,
                self.progress,
                self.status,
            ]
        )
        self.worker: Any = None
        self.tuned_score.changed.connect(lambda on: setattr(self.min_score, "enabled", not on))
        self.model_file.changed.connect(self._model_changed)
        self.run_button.changed.connect(self.run)
        self.finetune_button.changed.connect(self.finetune)
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
        self._set_busy(True)
        self.progress.max, self.progress.value = STEPS, 0
        self.status.value = f"segmenting {layer.name} ..."
        worker = thread_worker(
            self._segment,
            progress={"total": STEPS, "desc": f"phaseseg: {layer.name}"},
            ignore_errors=True,
        )(image, layer.name, self.segment_options(), pixel_size)
        worker.yielded.connect(self._step_done)
        return self._start(worker, lambda result: self._add_labels(layer, *result))

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
            name=labels_layer_name(layer.name),
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

    def _set_busy(self, busy: bool) -> None:
        self.run_button.enabled = self.finetune_button.enabled = not busy

    def _finished(self) -> None:
        self.worker = None
        self.progress.max = STEPS  # after a fine-tune's busy indicator
        self._set_busy(False)

    # ------------------------------------------------------------------ fine-tuning

    def _layer_tuples(self) -> list[tuple[str, Any, bool, str]]:
        kinds = {Image: "image", Labels: "labels"}
        return [
            (layer.name, layer.data, bool(getattr(layer, "rgb", False)), kind)
            for layer in self.viewer.layers
            for cls, kind in kinds.items()
            if isinstance(layer, cls)
        ]

    def _finetune_path(self, cell_type: str) -> Path:
        value = self.finetune_out.value
        if isinstance(value, Path) and value != Path():
            return value if value.suffix == ".pt" else value.with_suffix(".pt")
        return MODELS_DIR / f"{cell_type}.pt"

    def finetune(self, _value: Any = None) -> Any:
        """Fine-tune the widget's model on the image layers with a corrected Labels layer, in a
        thread worker; returns the worker (or None when there is nothing to train on). The new
        model becomes the widget's model when it returns."""
        if self.worker is not None:
            return self.worker  # one at a time
        cell_type = self.new_type.value.strip()
        try:
            from phaseseg.train.make_dataset import check_cell_type_name

            check_cell_type_name(cell_type)
            pairs = training_pairs(self._layer_tuples())
        except PhasesegInputError as e:
            self._failed(e)
            return None
        if not pairs:
            self.status.value = (
                "nothing to fine-tune on: segment an image, correct its "
                f"{labels_layer_name('<image>')!r} Labels layer, then fine-tune"
            )
            return None
        out = self._finetune_path(cell_type)
        init = self._model_path()
        minutes = float(self.minutes.value)
        self._set_busy(True)
        self.progress.max, self.progress.value = 0, 0  # busy indicator: no steps to count
        self.status.value = (
            f"fine-tuning on {len(pairs)} image(s) as {cell_type} for {minutes:g} min ..."
        )
        worker = thread_worker(self._finetune, ignore_errors=True)(
            pairs, cell_type, out, minutes, str(init) if init else "bundled"
        )
        return self._start(worker, self._finetuned)

    def _start(self, worker: Any, on_return: Any) -> Any:
        """Connect ``worker`` (its result to ``on_return``), make it the widget's one job,
        start it and return it."""
        worker.returned.connect(on_return)
        worker.errored.connect(self._failed)
        worker.finished.connect(self._finished)
        self.worker = worker
        worker.start()
        return worker

    def _finetune(
        self, pairs: list, cell_type: str, out: Path, minutes: float, init: str
    ) -> FinetuneResult:
        """Runs in the worker thread: the layers to a temporary folder, then ``finetune``."""
        from phaseseg.train.finetune import finetune, finetune_config

        # crops no larger than the smallest image (a crop of a layer is what users often have)
        config = finetune_config()
        smallest = min(min(image.shape) for _, image, _ in pairs)
        config = replace(config, crop_size=min(config.crop_size, smallest // 32 * 32))
        if config.crop_size < 64:
            raise PhasesegInputError(
                f"the smallest image is {smallest} px across: fine-tuning needs 64 or more"
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="phaseseg-finetune-") as tmp:
            images, labels = write_training_folder(pairs, Path(tmp))
            return finetune(
                [images], labels, cell_type, out, minutes=minutes, init=init, config=config
            )

    def _finetuned(self, result: FinetuneResult) -> None:
        self.progress.max, self.progress.value = STEPS, STEPS
        self._models.pop(result.model_path, None)  # the file may have been rewritten
        if self.model_file.value == result.model_path:
            self._model_changed()  # same file again: no change event, offer its types anyway
        else:
            self.model_file.value = result.model_path  # offers its types, the new one included
        self.cell_type.value = result.cell_type
        score = "–" if result.score is None else f"{result.score:.3f}"
        message = (
            f"fine-tuned {result.cell_type} on {result.n_images} image(s) in "
            f"{result.total_seconds / 60:.1f} min; score {score} (thresholds tuned on "
            f"{result.tuned_on}); saved {result.model_path}, now the model used here"
        )
        self.status.value = message
        show_info(message)
