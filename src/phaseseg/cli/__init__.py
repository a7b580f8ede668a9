"""Command-line interface: a thin argument layer over the library.

One module per command holds its parser setup (``add_parser``) and its handler (``_cmd_*``);
each handler imports what it needs lazily so that ``phaseseg --help`` is instant.
User mistakes (:class:`phaseseg.io.PhasesegInputError`) print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys

from phaseseg import __version__
from phaseseg.cli import eda, evaluate, make_dataset, measure, predict, train, validate
from phaseseg.io import PhasesegInputError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phaseseg",
        description="Segment every cell in phase-contrast images of neuronal cultures.",
    )
    parser.add_argument("--version", action="version", version=f"phaseseg {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (evaluate, validate, eda, train, make_dataset, predict, measure):
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except PhasesegInputError as e:
        print(f"phaseseg {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("phaseseg: interrupted", file=sys.stderr)
        return 130
