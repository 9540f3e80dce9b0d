"""``gencodec report``: one Markdown page (tables + embedded plots) per results folder."""

from __future__ import annotations

from pathlib import Path

from gencodec.eval.bdrate import METHODS
from gencodec.eval.report import write_report


def register(sub) -> None:
    p = sub.add_parser(
        "report", help="write report.md for a 'gencodec eval' results folder",
        description="Summarize a results folder of 'gencodec eval' (JSON, CSV, plots, "
                    "BD-rate tables) and write RESULTS/report.md, a Markdown page with the "
                    "tables and the plots embedded.")
    p.add_argument("results", help="results folder written by 'gencodec eval'")
    p.add_argument("--bd-method", choices=METHODS, default="akima",
                   help="BD-rate interpolation (default akima)")
    p.set_defaults(func=run)


def run(args) -> int:
    path = write_report(Path(args.results), args.bd_method)
    print(path)
    return 0
