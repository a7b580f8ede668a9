"""Compatibility path (documented in the README): :mod:`phaseseg.segment.postprocess`."""

from phaseseg.segment.postprocess import *  # noqa: F403
