"""The napari plugin (``pip install phaseseg[napari]``), declared in ``napari.yaml``.

* :mod:`~phaseseg.napari.widget` — the *Segment cells* dock widget (Plugins menu);
* :mod:`~phaseseg.napari.reader` — opens phaseseg's label TIFFs as Labels layers;
* :mod:`~phaseseg.napari.layers` — the Qt-free part: image layer data -> labels + features.

Nothing here imports napari at package import; only the widget needs Qt.
"""
