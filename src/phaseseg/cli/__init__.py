"""Command-line interface: a thin argument layer over the library.

One module per command holds its parser setup (``add_parser``) and its handler (``_cmd_*``);
each handler imports what it needs lazily so that ``phaseseg --help`` is instant.
User mistakes (:class:`phaseseg.io.PhasesegInputError`) print one line and exit with status 2;
Ctrl-C (or SIGTERM) removes the command's temporary files, prints one line and exits with status
130 (143).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from phaseseg import __version__
from phaseseg.cli import (
    eda,
    evaluate,
    finetune,
    make_dataset,
    measure,
    predict,
    train,
    validate,
)
from phaseseg.io import PhasesegInputError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phaseseg",
        description="Segment every cell in phase-contrast images of neuronal cultures.",
    )
    parser.add_argument("--version", action="version", version=f"phaseseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (evaluate, validate, eda, train, make_dataset, finetune, predict, measure):
        command.add_parser(sub)
    return parser


class Interrupted(KeyboardInterrupt):
    """SIGTERM, taken down Ctrl-C's path: temporaries removed, a training state saved."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def _stop_signals() -> Iterator[None]:
    """While a command runs, Ctrl-C (SIGINT) and SIGTERM raise in the main thread.

    SIGINT raises :class:`KeyboardInterrupt` even where the shell started the command with it
    ignored (a background job), so that ``kill -INT`` always stops it cleanly; SIGTERM raises
    :class:`Interrupted`. The previous handlers are restored afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


@contextmanager
def _plain_logging(verbose: bool) -> Iterator[None]:
    """Log records and Python warnings as one ``LEVEL: message`` line each; while a progress
    bar is drawn on a terminal they go through ``tqdm.write``, above the bar (into a file no bar
    is drawn: :mod:`phaseseg.progress`)."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    from phaseseg.progress import is_terminal

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s: %(message)s"
    )
    warn_log = logging.getLogger("phaseseg")

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        warn_log.warning("%s", message)

    with warnings.catch_warnings():
        warnings.showwarning = show
        if is_terminal():
            with logging_redirect_tqdm():
                yield
        else:
            yield


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with _stop_signals(), _plain_logging(args.verbose):
            return int(args.func(args) or 0)
    except PhasesegInputError as e:
        print(f"phaseseg {args.command}: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"phaseseg {args.command}: interrupted ({e})", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print(f"phaseseg {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `phaseseg evaluate ... | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def run() -> None:
    """The console script: :func:`main`, then exit with its code.

    An interrupted command exits at once with its code (130 or 143) after flushing the logs and
    streams: CPython's exit path kills the process with SIGINT instead (exit -2) when a
    KeyboardInterrupt, later caught, first passed through code that C extensions run with
    ``PyRun_String`` (its ``_Py_UnhandledKeyboardInterrupt`` flag stays set), which made the
    exit status depend on where the signal landed.
    """
    code = main()
    if code in (128 + signal.SIGINT, 128 + signal.SIGTERM):
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
    sys.exit(code)
