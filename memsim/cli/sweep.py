"""``memsim sweep`` and ``memsim report``: parse, call the study modules, print."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from memsim.cli import args as types
from memsim.cli.progress import progress_display


def _cmd_sweep(args: argparse.Namespace) -> int:
    from memsim.study.sweep import list_statistics, run_sweep

    if args.list_statistics:
        stats = list_statistics(args.study)
        for name in sorted(stats):
            print(f"{name}\t{stats[name]:.6g}")
        print(f"{len(stats)} statistics (first cell, one small run: values are only examples)")
        return 0
    if args.out is None:
        print("memsim sweep: error: --out DIR is required (see --help)", file=sys.stderr)
        return 2

    with progress_display(not args.quiet) as show:
        summary = run_sweep(
            args.study,
            args.out,
            workers=args.workers,
            scheduler=args.scheduler,
            allow_large=args.allow_large,
            connect_timeout=args.connect_timeout,
            tls={
                "tls_ca_file": args.tls_ca_file,
                "tls_client_cert": args.tls_cert,
                "tls_client_key": args.tls_key,
            },
            progress=show,
            log=print,
            warn=lambda line: print(line, file=sys.stderr),
        )
    if summary.ran:
        print(
            f"ran {summary.ran} runs in {summary.seconds:.1f} s "
            f"({summary.runs_per_minute:.1f} runs/min); {summary.skipped} were already done"
        )
    else:
        print(f"nothing to run: all {summary.runs} runs were already done")
    print(f"results: {summary.results}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from memsim.study.report import report

    rep = report(args.dir, figures=not args.no_figures)
    print_report(rep)
    for path in rep.written:
        print(f"wrote {path}")
    return 0


def print_report(rep) -> None:
    """A sweep report's table. Few cells: a column per cell, a row per statistic. Many: a row
    per cell, the first statistics."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    summary, axes, cols = rep.summary, rep.axes, rep.statistics
    title = f"{rep.study['name']}: mean ± sd over {rep.study['replicates']} replicate(s)"
    table = Table(title=title)
    if len(summary) <= 8:
        table.add_column("cell", style="bold")
        for _, row in summary.iterrows():
            label = "\n".join(f"{a}={row[a]}" for a in axes) or "base"
            table.add_column(f"{int(row['cell'])}\n{label}", justify="right")
        for c in cols:
            table.add_row(
                c, *(_fmt(row[f"{c}_mean"], row[f"{c}_sd"]) for _, row in summary.iterrows())
            )
        console.print(table)
        return
    shown_cols = cols[:4]
    for a in ["cell", *axes]:
        table.add_column(a)
    for c in shown_cols:
        table.add_column(c, justify="right")
    shown = summary.head(40)
    for _, row in shown.iterrows():
        table.add_row(
            str(int(row["cell"])),
            *(str(row[a]) for a in axes),
            *(_fmt(row[f"{c}_mean"], row[f"{c}_sd"]) for c in shown_cols),
        )
    console.print(table)
    more = []
    if len(summary) > len(shown):
        more.append(f"{len(summary) - len(shown)} more cells")
    if len(cols) > len(shown_cols):
        more.append(f"{len(cols) - len(shown_cols)} more statistics")
    if more:
        console.print(f"... {' and '.join(more)} in report/summary.csv")


def _fmt(mean: float, sd: float) -> str:
    return f"{mean:.4g} ± {sd:.2g}" if abs(mean) < 1e4 else f"{mean:,.0f} ± {sd:,.0f}"


def register(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="run (or resume) a what-if study over a grid of protocol and population settings",
        description="Run every cell of a study file; rerunning into the same --out resumes.",
    )
    p.add_argument("study", type=Path, help="study file (experiments/*.yaml)")
    p.add_argument("--out", type=Path, help="output folder (created; reused to resume)")
    p.add_argument(
        "--workers", type=types.positive_int, default=1, help="local worker processes (default 1)"
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="run on an existing Dask cluster (tcp://host:port or tls://host:port); the "
        "scheduler runs memsim's code and sends back pickles: use only one you trust "
        "(docs/sweeps.md)",
    )
    p.add_argument(
        "--connect-timeout",
        type=types.finite_float,
        default=10.0,
        metavar="SECONDS",
        help="seconds to reach the scheduler and get its handshake (default 10)",
    )
    p.add_argument("--tls-ca-file", type=Path, default=None, help="CA certificate (tls://)")
    p.add_argument("--tls-cert", type=Path, default=None, help="client certificate (tls://)")
    p.add_argument("--tls-key", type=Path, default=None, help="client private key (tls://)")
    p.add_argument(
        "--allow-large",
        action="store_true",
        help="lift the limit of 10,000 runs per study (docs/limits.md)",
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
