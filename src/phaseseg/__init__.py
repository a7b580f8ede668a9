"""phaseseg: instance segmentation of neuronal cells in phase-contrast microscopy."""

__version__ = "0.1.0"
