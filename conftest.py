"""Collection rules for the whole repository (tests/ and the doctests of src/phaseseg)."""

from __future__ import annotations

import importlib.util


def _missing(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except (ImportError, ValueError):
        return True


# the napari dock widget imports napari and Qt at module level: without phaseseg[napari]
# its doctest collection would fail (tests/test_napari.py skips itself)
collect_ignore = (
    ["src/phaseseg/napari/widget.py"] if any(map(_missing, ("napari", "magicgui", "qtpy"))) else []
)
