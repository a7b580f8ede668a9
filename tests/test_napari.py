"""The napari plugin: manifest, reader, and the dock widget on a viewer model under Qt offscreen.

Skipped when napari (``phaseseg[napari]``) is not installed. The widget is tested on a
``napari.components.ViewerModel`` (the viewer without its OpenGL canvas, which offscreen Qt
cannot draw) with pytest-qt's ``qtbot``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before pytest-qt makes the QApplication

napari = pytest.importorskip("napari")
pytest.importorskip("qtpy.QtWidgets")  # fails where Qt's system libraries (libGL, ...) are missing
pytest.importorskip("pytestqt")
npe2 = pytest.importorskip("npe2")

from phaseseg.analysis.measure import measure_cells  # noqa: E402
from phaseseg.io.formats import write_labels  # noqa: E402
from phaseseg.napari.layers import layer_image, pixel_size_um  # noqa: E402
from phaseseg.napari.reader import get_reader  # noqa: E402

# napari's and npe2's models use pydantic features deprecated in pydantic 2 (not ours to fix)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pydantic")

MANIFEST = Path(__file__).parents[1] / "src" / "phaseseg" / "napari" / "napari.yaml"
SAMPLE = Path(__file__).parents[1] / "samples" / "SHSY5Y_Phase_B10_1_03d08h00m_1.tif"


def test_manifest_validates_and_its_python_names_import():
    manifest = npe2.PluginManifest.from_file(MANIFEST)
    manifest.validate_imports()  # raises when a python_name does not import
    assert manifest.name == "phaseseg"
    assert [w.display_name for w in manifest.contributions.widgets] == ["Segment cells"]
    assert manifest.contributions.readers[0].filename_patterns == ["*.tif", "*.tiff"]


def test_reader_opens_phaseseg_label_tiffs_and_leaves_other_tiffs(tmp_path):
    import tifffile

    labels = np.zeros((20, 30), np.int32)
    labels[2:8, 3:9], labels[10:18, 12:25] = 1, 7
    ours = write_labels(tmp_path / "cells.tif", labels)
    reader = get_reader(str(ours))
    assert reader is not None
    [(data, meta, kind)] = reader(str(ours))
    assert kind == "labels" and meta["name"] == "cells"
    np.testing.assert_array_equal(data, labels)

    tifffile.imwrite(tmp_path / "image.tif", labels.astype(np.uint16))  # same pixels, not ours
    (tmp_path / "broken.tif").write_bytes(b"II*\0 not a tiff")
    assert get_reader(str(tmp_path / "image.tif")) is None
    assert get_reader(str(tmp_path / "broken.tif")) is None
    assert get_reader(str(tmp_path / "missing.tif")) is None
    assert get_reader([str(ours), str(ours)]) is None


def test_layer_image_converts_rgb_and_refuses_stacks():
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[..., 1] = 200
    gray = layer_image(rgb, "rgb", rgb=True)
    assert gray.shape == (6, 8) and gray.dtype == np.uint8 and gray[0, 0] == round(0.587 * 200)
    assert layer_image([np.ones((6, 8)), np.ones((3, 4))], "pyramid").shape == (6, 8)
    with pytest.raises(Exception, match=r"layer 'stack': expected a 2-D image, got shape \(3,"):
        layer_image(np.zeros((3, 6, 8)), "stack")


def test_training_folder_has_a_file_pair_per_layer_pair_with_safe_unique_names(tmp_path):
    from phaseseg.io.formats import read_labels
    from phaseseg.napari.layers import write_training_folder
    from phaseseg.train.make_dataset import pair_label_images

    image = np.arange(64, dtype=np.uint16).reshape(8, 8)
    labels = np.zeros((8, 8), np.int32)
    labels[1:4, 1:4] = 5
    pairs = [(name, image, labels) for name in ("a b", "a_b", "../A_B", "")]
    images_dir, labels_dir = write_training_folder(pairs, tmp_path)
    names = sorted(p.name for p in images_dir.iterdir())
    assert names == ["A_B_3.tif", "a_b.tif", "a_b_2.tif", "image.tif"]
    found = pair_label_images([images_dir], labels_dir)  # what finetune reads
    assert [(i.name, lab.name) for i, lab in found] == [(n, n) for n in names]
    np.testing.assert_array_equal(read_labels(labels_dir / "a_b.tif"), labels)
    import tifffile

    np.testing.assert_array_equal(tifffile.imread(images_dir / "a_b_2.tif"), image)


def test_pixel_size_from_layer_scale_and_units():
    assert pixel_size_um((2.0, 0.5, 0.5), ("second", "micrometer", "micrometer")) == 0.5
    assert pixel_size_um((500.0, 500.0), ("nanometer", "nanometer")) == 0.5
    assert pixel_size_um((0.5, 0.6), ("micrometer", "micrometer")) is None
    assert pixel_size_um((1.0, 1.0)) is None


@pytest.fixture
def viewer_model():
    from napari.components import ViewerModel

    return ViewerModel()


def _segment(widget, qtbot):
    """Run the widget and wait until its worker has finished. Polls the widget (its own
    ``finished`` handler clears ``widget.worker``) rather than waiting for the worker's
    ``finished`` signal: a worker that fails at once (a bad model file) can emit it before a
    ``waitSignal`` would connect, and the wait then never ends."""
    worker = widget.run()
    assert worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)
    return worker


def test_widget_segments_the_selected_layer_with_features(viewer_model, qtbot):
    from phaseseg.io import read_image
    from phaseseg.napari.widget import SegmentWidget

    image = read_image(SAMPLE)[:192, :256]
    viewer_model.add_image(np.zeros((64, 64), np.uint8), name="other")
    viewer_model.add_image(image, name="sample", scale=(0.5, 0.5))
    widget = SegmentWidget(viewer_model)
    assert widget.image.value.name == "sample"  # follows the selected (last added) layer
    assert widget.image.choices == (None, *viewer_model.layers)
    widget.cell_type.value = "shsy5y"
    widget.tuned_score.value = False
    assert widget.min_score.enabled
    widget.min_score.value = 0.0
    from phaseseg.nn.device import default_tta

    assert widget.tta.value == default_tta()  # on where the network is fast
    widget.tta.value = False
    assert widget.segment_options() == {"cell_type": "shsy5y", "min_score": 0.0, "tta": False}

    _segment(widget, qtbot)
    layer = viewer_model.layers["sample cells"]
    assert isinstance(layer, napari.layers.Labels)
    assert tuple(layer.scale) == (0.5, 0.5)
    from phaseseg import load_model

    expected = load_model().segment(image, cell_type="shsy5y", min_score=0.0, tta=False)
    np.testing.assert_array_equal(layer.data, expected)
    assert expected.max() > 5  # a dense 80 h crop: many cells
    # features: one row per cell, the columns of cells.csv, plus napari's index
    cells = measure_cells(expected, image, "sample")
    assert list(layer.features.columns) == ["index", *cells.columns]
    assert len(layer.features) == expected.max()
    np.testing.assert_array_equal(layer.features["index"], layer.features["cell_id"])
    assert layer.features.drop(columns="index").equals(cells)
    assert widget.progress.value == 3
    assert widget.status.value.startswith(f"{expected.max()} cells in sample (shsy5y")
    assert widget.run_button.enabled


def test_widget_reports_a_bad_model_file_and_a_stack(viewer_model, qtbot, tmp_path):
    from phaseseg.napari.widget import SegmentWidget

    widget = SegmentWidget(viewer_model)
    assert widget.run() is None and widget.status.value == "open an image first"
    viewer_model.add_image(np.zeros((2, 32, 32), np.uint8), name="stack")
    assert widget.run() is None
    assert widget.status.value.startswith("error: layer 'stack': expected a 2-D image")

    viewer_model.add_image(np.zeros((32, 32), np.uint8), name="flat")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a model")
    widget.model_file.value = bad
    assert widget.status.value.startswith("error: ") and "bad.pt" in widget.status.value
    _segment(widget, qtbot)
    assert "bad.pt" in widget.status.value
    assert [layer.name for layer in viewer_model.layers] == ["stack", "flat"]
    assert widget.run_button.enabled


def test_widget_finetunes_on_corrected_labels_and_then_uses_the_new_model(
    viewer_model, qtbot, tmp_path
):
    from synthetic import blob_image, blob_labels
    from test_finetune import init_model

    from phaseseg.napari.widget import SegmentWidget
    from phaseseg.nn.checkpoint import load_model_file

    init = init_model(tmp_path / "init.pt")  # an untrained 3-type network, tiny
    rng = np.random.default_rng(0)
    labels = blob_labels((128, 128), 12, rng)
    viewer_model.add_image(blob_image(labels, rng), name="well 1")
    widget = SegmentWidget(viewer_model)
    widget.model_file.value = init
    assert widget.finetune() is None
    assert widget.status.value.startswith("nothing to fine-tune on: segment an image")

    viewer_model.add_labels(np.zeros((64, 64), np.int32), name="well 1 cells")
    assert widget.finetune() is None
    assert widget.status.value == (
        "error: layer 'well 1 cells': shape (64, 64), but its image 'well 1' is (128, 128)"
    )
    viewer_model.layers.remove("well 1 cells")
    viewer_model.add_labels(labels.astype(np.int32), name="well 1 cells")  # the "corrected" one
    widget.new_type.value = "my cells"
    assert widget.finetune() is None and "cell type 'my cells'" in widget.status.value

    widget.new_type.value = "mine"
    widget.minutes.value = 0.1
    out = tmp_path / "models" / "mine.pt"
    widget.finetune_out.value = out
    worker = widget.finetune()
    assert worker is not None and not widget.run_button.enabled
    assert widget.finetune() is worker  # one job at a time
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)
    assert widget.status.value.startswith("fine-tuned mine on 1 image(s) in "), widget.status.value
    payload = load_model_file(out)
    assert payload["cell_types"] == ["astro", "cort", "shsy5y", "mine"]
    assert payload["init"]["path"] == str(init)
    # the new model is the widget's: its new type is offered and chosen, and Segment uses it
    assert widget.model_file.value == out
    assert "mine" in widget.cell_type.choices and widget.cell_type.value == "mine"
    assert widget.run_button.enabled and widget.progress.max == 3
    viewer_model.layers.selection.active = viewer_model.layers["well 1"]
    _segment(widget, qtbot)
    assert "(mine thresholds" in widget.status.value
    assert sorted(p.name for p in out.parent.iterdir()) == ["mine.config.json", "mine.pt"]

    # again, from the fine-tuned model into the same file: the widget reloads it
    widget.new_type.value = "mine2"
    widget.finetune()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)
    assert load_model_file(out)["cell_types"] == ["astro", "cort", "shsy5y", "mine", "mine2"]
    assert widget.model().cell_types == ["astro", "cort", "shsy5y", "mine", "mine2"]
    assert widget.cell_type.value == "mine2" and "mine" in widget.cell_type.choices
