"""Segmentation: image -> network maps -> labels.

* :mod:`~phaseseg.segment.segmenter`: the API (:func:`load_model`, :class:`Segmenter`);
* :mod:`~phaseseg.segment.normalize`: the one normalisation of the network's input;
* :mod:`~phaseseg.segment.tiling`: large images in overlapping tiles;
* :mod:`~phaseseg.segment.postprocess`: maps -> labels (seeds, watershed, clean-up);
* :mod:`~phaseseg.segment.tuning`: thresholds tuned per cell type on a validation fold;
* :mod:`~phaseseg.segment.predict`: image files -> submission, label TIFFs, overlays.

Nothing is imported here, so that importing a light module (e.g. ``normalize``) stays light.
"""
