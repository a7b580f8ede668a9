"""Compatibility path (documented in the README): :mod:`phaseseg.analysis.measure`."""

from phaseseg.analysis.measure import *  # noqa: F403
