"""``phaseseg eda``: an HTML report exploring a data set."""

from __future__ import annotations

import argparse


def _cmd_eda(args: argparse.Namespace) -> int:
    from phaseseg.analysis.eda import write_eda_report
    from phaseseg.io import output_dir

    with output_dir(args.out):  # a failed run leaves no empty folder
        report = write_eda_report(args.data_dir, args.out)
    print(report)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eda", help="write an HTML report exploring a data set")
    p.add_argument("data_dir", help="folder with train.csv and train/*.png")
    p.add_argument("--out", required=True, help="output folder for report.html and figures")
    p.set_defaults(func=_cmd_eda)
