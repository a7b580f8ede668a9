"""Compatibility path (documented in the README): :mod:`phaseseg.segment.segmenter`."""

from phaseseg.segment.segmenter import *  # noqa: F403
