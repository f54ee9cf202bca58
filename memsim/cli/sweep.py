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

    rep = report(args.dir, figures=not args.no_figures, formats=args.figure_formats)
    print_report(rep)
    if rep.paired is not None:
        print_paired(rep)
    for path in rep.written:
        print(f"wrote {path}")
    return 0


def print_report(rep, console=None) -> None:
    """A sweep report's table, fitted to the terminal's width.

    Few cells that fit side by side: a row per statistic (its human name), a column per
    cell. Otherwise: a row per cell (the first 40), its swept values, then as many
    statistics as fit, headed by numbers that a legend under the table names.
    """
    from rich.console import Console
    from rich.table import Table

    from memsim.viz.style import label, value_label

    console = console or Console()
    width = console.width
    summary, axes, cols = rep.summary, rep.axes, rep.statistics
    title = f"{rep.study['name']}: mean ± sd over {rep.study['replicates']} replicate(s)"
    if str(rep.study.get("params") or "").startswith("posterior "):
        title += ", one posterior draw each"
    cells = [row for _, row in summary.iterrows()]
    shown = {c: _column(summary, c) for c in cols}
    val_w = max((len(v) for vs in shown.values() for v in vs), default=8)
    heads = [
        [f"cell {int(r['cell'])}", *(f"{label(a)} {value_label(r[a])}" for a in axes)]
        for r in cells
    ]
    head_w = max(val_w, min(18, max((len(h) for hs in heads for h in hs), default=0)))
    name_w = min(34, max(len(label(c)) for c in cols))
    if len(cells) <= 8 and name_w + 4 + len(cells) * (head_w + 3) <= width:
        table = Table(title=title, title_justify="left")
        table.add_column("statistic", overflow="fold", max_width=name_w)
        for hs in heads:
            table.add_column("\n".join(hs), justify="right", overflow="fold", min_width=val_w)
        for c in cols:
            table.add_row(label(c), *shown[c])
        console.print(table)
        return
    table = Table(title=title, title_justify="left")
    table.add_column("cell", justify="right", no_wrap=True)
    used = 4 + len(str(len(cells)))
    natural = [max(len(label(a)), *(len(value_label(r[a])) for r in cells)) for a in axes]
    # swept values keep their full width when every statistic still fits, else wrap at 24
    room = width - used - len(cols) * (val_w + 3)
    for a, w in zip(axes, natural):
        w = w if sum(natural) + 3 * len(axes) <= room else min(24, w)
        table.add_column(label(a), overflow="fold", max_width=w)
        used += w + 3
    n = max(1, min(len(cols), (width - used) // (val_w + 3)))
    for i in range(n):
        table.add_column(f"[{i + 1}]", justify="right", no_wrap=True, min_width=val_w)
    rows = cells[:40]
    for k, r in enumerate(rows):
        table.add_row(
            str(int(r["cell"])),
            *(value_label(r[a]) for a in axes),
            *(shown[c][k] for c in cols[:n]),
        )
    console.print(table)
    _legend(console, cols, n, len(cells) - len(rows), "report/summary.csv")


def _legend(console, cols: list, n: int, cells_left: int, where: str) -> None:
    """Under a table of numbered statistic columns: what each of the first ``n`` is, and what
    the table left out (cells, statistics) and where it is."""
    from memsim.viz.style import label

    for i, c in enumerate(cols[:n]):
        console.print(f"[{i + 1}] {label(c)} ({c})", highlight=False, markup=False)
    more = []
    if cells_left > 0:
        more.append(f"{cells_left} more cells")
    if len(cols) > n:
        more.append(f"{len(cols) - n} more statistics")
    if more:
        console.print(f"... {' and '.join(more)} in {where}")


def print_paired(rep, console=None) -> None:
    """The paired differences to the study's baseline cell: a row per cell (the first 40), its
    swept values, then per statistic (as many as fit) ``median [5 %, 95 %]`` and the share of
    replicates above 0; a legend names the statistics."""
    from rich.console import Console
    from rich.table import Table

    from memsim.viz.style import label, value_label

    console = console or Console()
    paired, axes, cols = rep.paired, rep.axes, rep.statistics
    named = rep.study["baseline"]
    base = ", ".join(f"{label(a)} {value_label(named[a])}" for a in axes)
    table = Table(
        title=f"difference to the baseline cell ({base}) within each replicate: "
        "median [90 % interval] (share above 0)",
        title_justify="left",
    )
    for a in axes:
        table.add_column(label(a), overflow="fold", max_width=24)
    shown = {c: _paired_column(paired, c) for c in cols}
    val_w = max((len(v) for vs in shown.values() for v in vs), default=8)
    used = sum(min(24, max(len(label(a)), 4)) + 3 for a in axes)
    n = max(1, min(len(cols), (console.width - used) // (val_w + 3)))
    for i in range(n):
        table.add_column(f"[{i + 1}]", justify="right", no_wrap=True, min_width=val_w)
    rows = list(paired.iterrows())[:40]
    for k, (_, r) in enumerate(rows):
        table.add_row(*(value_label(r[a]) for a in axes), *(shown[c][k] for c in cols[:n]))
    console.print(table)
    _legend(console, cols, n, len(paired) - len(rows), "report/paired.csv")


def _paired_column(paired, c: str) -> list[str]:
    """``median [lo, hi] (share above 0)`` of statistic ``c`` in every cell, in the number
    format :func:`_column` would give the column."""
    import numpy as np

    med, lo, hi = (paired[f"{c}_{k}"].to_numpy(float) for k in ("median", "lo", "hi"))
    above = paired[f"{c}_above"].to_numpy(float)
    both = np.abs(np.concatenate([med, lo, hi]))
    big = np.nanmax(both[np.isfinite(both)]) if np.isfinite(both).any() else 0.0
    spec = _spec(big, sign="+", small=True)

    def num(v: float) -> str:
        text = f"{v:{spec}}"
        return f"{0.0:{spec}}" if float(text.replace(",", "")) == 0 else text  # no "-0.000"

    return [f"{num(m)} [{num(a)}, {num(b)}] ({s:.0%})" for m, a, b, s in zip(med, lo, hi, above)]


def _column(summary, c: str) -> list[str]:
    """``mean ± sd`` of statistic ``c`` in every cell, with one number of decimals for the
    whole column (so it lines up and stays narrow)."""
    import numpy as np

    means, sds = summary[f"{c}_mean"].to_numpy(float), summary[f"{c}_sd"].to_numpy(float)
    big = np.nanmax(np.abs(means)) if np.isfinite(means).any() else 0.0
    spec = _spec(big)
    return [f"{m:{spec}} ± {s:{spec}}" for m, s in zip(means, sds)]


def _spec(big: float, *, sign: str = "", small: bool = False) -> str:
    """The number format of a table column whose largest magnitude is ``big``: grouped
    integers from 1,000, one decimal from 10, three from 0.01, then (``small``: differences
    near zero) four from 0.0001, else exponents."""
    if big >= 1000:
        return sign + ",.0f"
    if big >= 10:
        return sign + ".1f"
    if big >= 0.01:
        return sign + ".3f"
    return sign + (".4f" if small and big >= 1e-4 else ".2e")


def register(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="run (or resume) a what-if study over a grid of protocol and population settings",
        description="Run every cell of a study file; rerunning into the same --out resumes.",
    )
    p.add_argument("study", type=Path, help="study file (experiments/*.yaml; docs/sweeps.md)")
    p.add_argument(
        "--out", type=Path, help="output folder (created; rerun into it to resume; required)"
    )
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
    p.add_argument("--quiet", action="store_true", help="no progress display")
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
    p.add_argument(
        "--figure-formats",
        metavar="FMT[,FMT]",
        default=None,
        help="also write each figure as svg and/or pdf beside its PNG (200 dpi), e.g. svg,pdf",
    )
    p.set_defaults(func=_cmd_report)
