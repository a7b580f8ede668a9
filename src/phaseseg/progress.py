"""Progress bars that know where they are written.

:class:`tqdm` is ``tqdm.auto.tqdm`` with one change: when its output (``sys.stderr`` unless
``file=`` is given) is not a terminal, e.g. a log file or a pipe, no bar is drawn, so that the
file gets no carriage returns, escape codes or warnings written into half a bar line. Long loops
log plain progress lines there instead (:class:`~phaseseg.progress.tqdm`'s ``disable`` tells
them; training does). In a Jupyter notebook the widget bar is kept. ``disable=`` given by the
caller wins.

While a bar is drawn on a terminal, log records should go through ``tqdm.write`` (the CLI does
this with :func:`tqdm.contrib.logging.logging_redirect_tqdm`) so that they print above the bar.
"""

from __future__ import annotations

import sys
from typing import Any

from tqdm.auto import tqdm as _auto_tqdm

_NOTEBOOK = any(c.__module__ == "tqdm.notebook" for c in _auto_tqdm.__mro__)


def is_terminal(file: Any = None) -> bool:
    """Whether ``file`` (default ``sys.stderr``) is an interactive terminal (or a notebook)."""
    if _NOTEBOOK:
        return True
    file = sys.stderr if file is None else file
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


class tqdm(_auto_tqdm):  # noqa: N801 - a drop-in for tqdm.auto.tqdm
    """``tqdm.auto.tqdm``, disabled unless it writes to a terminal (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("disable") is None:
            kwargs["disable"] = not is_terminal(kwargs.get("file"))
        super().__init__(*args, **kwargs)
