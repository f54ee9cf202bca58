"""``memsim sweep`` and ``memsim report``: parse, call :mod:`memsim.study.sweep` / :mod:`memsim.study.report`, print."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_sweep(args: argparse.Namespace) -> int:
    from memsim.study.sweep import list_statistics, rate, run_sweep

    if args.list_statistics:
        stats = list_statistics(args.study)
        for name in sorted(stats):
            print(f"{name}\t{stats[name]:.6g}")
        print(f"{len(stats)} statistics (first cell, one small run: values are only examples)")
        return 0
    if args.out is None:
        print("memsim sweep: error: --out DIR is required (see --help)", file=sys.stderr)
        return 2

    summary = run_sweep(
        args.study,
        args.out,
        workers=args.workers,
        scheduler=args.scheduler,
        progress=not args.quiet,
        log=print,
        warn=lambda line: print(line, file=sys.stderr),
    )
    if summary["ran"]:
        print(
            f"ran {summary['ran']} runs in {summary['seconds']:.1f} s "
            f"({rate(summary):.1f} runs/min); {summary['skipped']} were already done"
        )
    else:
        print(f"nothing to run: all {summary['runs']} runs were already done")
    print(f"results: {summary['results']}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from memsim.study.report import report

    written = report(args.dir, figures=not args.no_figures)
    for path in written:
        print(f"wrote {path}")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="run (or resume) a what-if study over a grid of protocol and population settings",
        description="Run every cell of a study file; rerunning into the same --out resumes.",
    )
    p.add_argument("study", type=Path, help="study file (experiments/*.yaml)")
    p.add_argument("--out", type=Path, help="output folder (created; reused to resume)")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="run on an existing Dask cluster (tcp://host:port)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--list-statistics",
        action="store_true",
        help="run the first cell once at scale 0.02 and list the statistic names it gives",
    )
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser(
        "report",
        help="tables and figures from a finished sweep",
        description="Summarise DIR/results.parquet into DIR/report/ (CSV tables, PNG figures).",
    )
    p.add_argument("dir", type=Path, help="a folder written by `memsim sweep`")
    p.add_argument("--no-figures", action="store_true", help="tables only")
    p.set_defaults(func=_cmd_report)
