"""How the command line prints results: rich tables on stdout, numbers formatted one way."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from memsim.fit.compare import format_value

__all__ = ["print_run", "print_bench"]


_MARKS = {"ok": "[green]ok[/]", "n/a": "[dim]n/a[/]"}


def print_run(result, out: Path, why: str = "") -> None:
    """The main job's output: the comparison table, the truth ceiling, timings, files."""
    console = Console(width=max(120, Console().width))
    sim, params, summary = result.simulation, result.params, result.analysis
    if why:
        console.print(why)
    title = (
        f"{sim.protocol.name}: {sim.trials.participant.nunique():,} participants, "
        f"{len(sim.trials):,} trials, seed {result.seed}, params {params.name}"
        f"{'' if params.calibrated else ' (uncalibrated)'}"
        f"{'' if result.scale == 1 else f', scale {result.scale}'}"
    )
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
        console.print(
            f"fitted targets within tolerance: {n_ok}/{n_fit}{na}; why a row is off, and why the "
            f"'report' rows cannot all hold with the released scores: docs/calibration.md"
        )
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


def print_bench(r: dict) -> None:
    """``memsim bench``'s table (:func:`memsim.sim.bench.measure`'s numbers)."""
    c, k, s = r["campaign"], r["kernel"], r["sequences"]
    t = Table(
        title=f"memsim bench (VideoMem, {r['threads']} numba threads, {r['cpus']} CPUs)",
        title_justify="left",
    )
    t.add_column("measure")
    t.add_column("value", justify="right")
    t.add_column("goal", justify="right")
    t.add_row(
        f"campaign: {c['participants']:,} participants, {c['trials']:,} trials, simulate",
        f"{c['simulate_s']:.2f} s",
        "",
    )
    t.add_row(
        "campaign: simulate + write Parquet",
        f"{c['simulate_and_write_s']:.2f} s",
        "<= 3 s" if c["scale"] == 1 else "",
    )
    t.add_row("peak memory (process)", f"{c['peak_rss_mb']:.0f} MB", "<= 1,000 MB")
    t.add_row("kernel, 1 thread", f"{k['trials_per_s_1_thread'] / 1e6:.1f} M trials/s", ">= 50 M")
    t.add_row(
        f"kernel, {r['threads']} threads",
        f"{k['trials_per_s_all_threads'] / 1e6:.1f} M trials/s",
        "",
    )
    t.add_row(
        f"kernel speed-up on {r['threads']} threads", f"{k['speedup_all_threads']:.2f}x", ">= 1.7x"
    )
    t.add_row(
        "agent-per-participant Python loop",
        f"{k['reference_trials_per_s'] / 1e3:.1f} k trials/s",
        "",
    )
    t.add_row("kernel (1 thread) / Python loop", f"{k['kernel_vs_reference']:.0f}x", ">= 100x")
    t.add_row("sequences, 1 thread", f"{s['per_s_1_thread']:,.0f} /s", ">= 100,000")
    t.add_row("sequences / Python reference", f"{s['ratio']:.0f}x", "")
    Console(width=110).print(t)
