"""Compatibility path (documented in the README): :mod:`phaseseg.io.formats`."""

from phaseseg.io.formats import *  # noqa: F403
