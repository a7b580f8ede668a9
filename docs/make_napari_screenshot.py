"""Re-make docs/napari_plugin.png, the README's picture of the napari plugin.

    xvfb-run -a .venv/bin/python docs/make_napari_screenshot.py [--out docs/napari_plugin.png]

Opens the bundled sample at 36 h in a real napari viewer (napari's own TIFF reader), docks
*Segment cells*, segments with cell type shsy5y and min score 0, and saves a screenshot of
the window (canvas and dock widget). Needs ``phaseseg[napari]`` and an OpenGL display: on a
machine without a screen, ``xvfb-run`` (Debian: ``apt-get install xvfb``) gives one; Qt then
draws offscreen through it.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import napari  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from qtpy.QtWidgets import QApplication  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "SHSY5Y_Phase_B10_1_01d12h00m_1.tif"


def _plugin_widget(viewer: napari.Viewer):
    """Dock *Segment cells* as a user does (Plugins menu); registers the manifest from the
    source tree when this checkout is not the installed phaseseg."""
    import npe2

    pm = npe2.PluginManager.instance()
    if "phaseseg" not in pm:
        pm.register(npe2.PluginManifest.from_file(ROOT / "src/phaseseg/napari/napari.yaml"))
    dock, widget = viewer.window.add_plugin_dock_widget("phaseseg", "Segment cells")
    from qtpy.QtCore import Qt

    dock.setMaximumWidth(360)
    viewer.window._qt_window.resizeDocks([dock], [360], Qt.Orientation.Horizontal)
    return widget


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "napari_plugin.png")
    args = ap.parse_args()
    viewer = napari.Viewer(show=False, title="napari: phaseseg")
    viewer.window._qt_window.resize(1300, 720)
    [image] = viewer.open(SAMPLE, plugin="napari")
    widget = _plugin_widget(viewer)
    widget.cell_type.value = "shsy5y"
    widget.tuned_score.value = False
    widget.min_score.value = 0.0
    worker = widget.run()
    while widget.worker is not None or worker.is_running:
        QApplication.processEvents()
        time.sleep(0.05)
    labels = viewer.layers[f"{image.name} cells"]
    labels.contour = 2
    print(widget.status.value)
    print(labels.features.head(3).to_string())
    viewer.layers.selection.active = labels
    viewer.reset_view()
    viewer.scene.camera.center = (260, 426)  # rows, columns: a region of 352x260 pixels
    viewer.scene.camera.zoom *= 2
    print(viewer.status)
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.05)
    shot = viewer.screenshot(canvas_only=False, flash=False)
    img = Image.fromarray(np.asarray(shot)[..., :3])
    img.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
    print(f"{args.out}: {img.size[0]}x{img.size[1]}, {args.out.stat().st_size // 1024} KiB")
    viewer.close()


if __name__ == "__main__":
    main()
