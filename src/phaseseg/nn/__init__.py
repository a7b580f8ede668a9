"""The network built from a config (:mod:`~phaseseg.nn.model`) and model files: weights plus
metadata, loaded safely (:mod:`~phaseseg.nn.checkpoint`)."""
