"""Segmentation: image -> network maps -> labels.

* :mod:`~phaseseg.segment.segmenter`: the API (:func:`load_model`, :class:`Segmenter`);
* :mod:`~phaseseg.segment.normalize`: the one normalisation (and dtype contract) of the input;
* :mod:`~phaseseg.segment.maps`: the one inference path, images -> batched tiles x flips ->
  network -> blended maps;
* :mod:`~phaseseg.segment.tiling`: tile geometry and blending windows;
* :mod:`~phaseseg.segment.postprocess`: maps -> labels (seeds, watershed, clean-up);
* :mod:`~phaseseg.segment.tuning`: thresholds tuned per cell type on a validation fold;
* :mod:`~phaseseg.segment.predict`: image files -> submission, label TIFFs, overlays.

Nothing is imported here, so that importing a light module (e.g. ``normalize``) stays light.
"""
