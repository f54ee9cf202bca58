"""How the command line prints results: rich tables on stdout, numbers formatted one way."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from memsim.fit.compare import format_value

__all__ = ["print_run", "print_bench", "bench_rows"]


_MARKS = {"ok": "[green]ok[/]", "n/a": "[dim]n/a[/]"}


def print_run(result, out: Path, why: str = "") -> None:
    """The main job's output: the comparison table, the truth ceiling, timings, files."""
    console = Console(width=max(120, Console().width))
    sim, params, summary = result.simulation, result.params, result.analysis
    if why:
        console.print(why)
    title = (
        f"{sim.protocol.name}: {sim.trials.participant.nunique():,} participants, "
        f"{len(sim.trials):,} trials, seed {result.seed}"
        + (
            ""
            if summary.get("stimuli_seed") is None
            else f", stimuli of seed {summary['stimuli_seed']}"
        )
        + f", params {params.name}"
        f"{'' if params.calibrated else ' (uncalibrated)'}"
        f"{'' if result.scale == 1 else f', scale {result.scale}'}"
        + (
            f" ({sim.protocol.stimuli.count:,} stimuli, their floor; head counts"
            f" x{summary['size_factor']:g})"
            if "size_factor" in summary
            else ""
        )
    )
    for a in sim.admissions:  # a later step's quota at work
        console.print(a.describe())
    if sim.top_up is not None:  # the title's participants include the top-up's
        console.print(sim.top_up.describe())
    if sim.pilot is not None:  # and the pilot's
        console.print(sim.pilot.describe())
    table = result.comparison
    if table is not None:
        t = Table(title=title, title_justify="left")
        for col, just in (
            ("statistic", "left"),
            ("paper / data", "right"),
            ("simulated", "right"),
            ("tolerance", "right"),
            ("", "center"),
            ("kind", "left"),
        ):
            t.add_column(col, justify=just)
        for row in table.itertuples():
            mark = _MARKS.get(row.status) or (
                "[red]off[/]" if row.kind == "fit" else "[yellow]off[/]"
            )
            t.add_row(
                row.target,
                format_value(row.value),
                format_value(row.simulated),
                "±" + format_value(row.tolerance),
                mark,
                row.kind,
            )
        console.print(t)
        n_ok, n_fit = result.fitted
        n_na = int(((table.kind == "fit") & (table.status == "n/a")).sum())
        na = f" ({n_na} n/a: no data to compare with)" if n_na else ""
        off = bool((table.status == "off").any())
        reports = bool((table.kind == "report").any())
        why = (
            "; why a row is off, and why the 'report' rows cannot all hold with the released "
            "scores: docs/calibration.md"
            if reports
            else "; why a row is off: docs/calibration.md"
            if off
            else ""
        )
        console.print(f"fitted targets within tolerance: {n_ok}/{n_fit}{na}{why}")
    else:
        console.print(title)
        for name in summary["steps"]:
            console.print(
                f"  {name}: kept {summary['participants_kept'][name]:,}, "
                f"mean score {summary['mean_score'][name]:.3f}, "
                f"human consistency {summary['human_consistency'][name]['mean']:.3f}"
            )
    truth = summary.get("truth") or {}
    if truth:
        parts = ", ".join(
            f"{c.removesuffix('_memorability')} {v['spearman']:.3f}" for c, v in truth.items()
        )
        console.print(
            f"observed scores vs the latent truth (Spearman): {parts} "
            f"- the most any predictor of these scores can reach"
        )
    if result.released_expected:
        console.print(
            "released scores not found (pass --data or set MEMSIM_DATA): no real-vs-simulated rows"
        )
    figures = [p for p in result.written if p.suffix == ".png"]
    s = result.seconds
    console.print(
        f"simulated in {s['simulate']:.2f} s, scored and analysed in {s['analyse']:.2f} s, "
        f"{s['total']:.2f} s in all; wrote {out}/ "
        f"(trials.parquet, scores.csv, summary.json, {len(figures)} figures)"
    )


def bench_rows(r: dict) -> list[tuple[str, str, str, bool | None]]:
    """``memsim bench``'s rows: measure, value, goal, and whether the goal is met (None: no
    goal)."""
    c, k, s = r["campaign"], r["kernel"], r["sequences"]
    full = c["scale"] == 1
    mt = k["trials_per_s_1_thread"] / 1e6
    return [
        (
            f"campaign: {c['participants']:,} participants, {c['trials']:,} trials, simulate",
            f"{c['simulate_s']:.2f} s",
            "",
            None,
        ),
        (
            "campaign: simulate + write Parquet",
            f"{c['simulate_and_write_s']:.2f} s",
            "<= 3 s" if full else "",
            c["simulate_and_write_s"] <= 3 if full else None,
        ),
        (
            "peak memory (process)",
            f"{c['peak_rss_mb']:.0f} MB",
            "<= 1,000 MB",
            c["peak_rss_mb"] <= 1000,
        ),
        ("kernel, 1 thread", f"{mt:.1f} M trials/s", ">= 50 M", mt >= 50),
        (
            f"kernel, {r['threads']} threads",
            f"{k['trials_per_s_all_threads'] / 1e6:.1f} M trials/s",
            "",
            None,
        ),
        (
            f"kernel speed-up on {r['threads']} threads",
            f"{k['speedup_all_threads']:.2f}x",
            ">= 1.7x",
            k["speedup_all_threads"] >= 1.7,
        ),
        (
            "agent-per-participant Python loop",
            f"{k['reference_trials_per_s'] / 1e3:.1f} k trials/s",
            "",
            None,
        ),
        (
            "kernel (1 thread) / Python loop",
            f"{k['kernel_vs_reference']:.0f}x",
            ">= 100x",
            k["kernel_vs_reference"] >= 100,
        ),
        (
            "sequences, 1 thread",
            f"{s['per_s_1_thread']:,.0f} /s",
            ">= 100,000",
            s["per_s_1_thread"] >= 100_000,
        ),
        ("sequences / Python reference", f"{s['ratio']:.0f}x", "", None),
    ]


def print_bench(r: dict, console: Console | None = None) -> None:
    """``memsim bench``'s table (:func:`memsim.sim.bench.measure`'s numbers), each goal marked
    met or missed."""
    rows = bench_rows(r)
    t = Table(
        title=f"memsim bench (VideoMem, {r['threads']} numba threads, {r['cpus']} CPUs)",
        title_justify="left",
    )
    t.add_column("measure", overflow="fold")
    t.add_column("value", justify="right", no_wrap=True)
    t.add_column("goal", justify="right", no_wrap=True)
    t.add_column("", no_wrap=True)
    marks = {True: "[green]met[/]", False: "[red]missed[/]", None: ""}
    for measure, value, goal, met in rows:
        t.add_row(measure, value, goal, marks[met])
    console = console or Console(width=min(110, max(80, Console().width)))
    console.print(t)
    judged = [met for *_, met in rows if met is not None]
    missed = [m for m, _, _, met in rows if met is False]
    console.print(
        f"goals met: {sum(judged)} of {len(judged)}"
        + (f"; missed: {'; '.join(missed)}" if missed else "")
        + ("" if r["campaign"]["scale"] == 1 else " (--quick: the campaign goal needs full scale)")
    )
