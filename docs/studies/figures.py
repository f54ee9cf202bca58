"""Figures and tables of the shipped studies, from finished sweeps.

    memsim sweep experiments/<study>.yaml --out runs/<study> --workers 2
    python docs/studies/figures.py <study> [--runs runs] [--out docs/studies] [--update-docs]

Studies: paper, annotations, design (reads the five design-* sweeps), filters, selection,
protocols; under the posterior, design-posterior (the five design-*-posterior sweeps),
selection-posterior and protocols-posterior, whose tables go into their studies' pages. Each
writes ``<out>/<study>.png`` and prints the numbers quoted in ``docs/studies/<study>.md``
(mean ± sd over replicates; under the posterior, medians and 90 % intervals over the draws of
each cell's difference to the study's baseline cell). Every number comes from
``runs/<study>/results.parquet``; nothing is typed in by hand except the paper's published
values, marked as such.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from memsim.viz import style

HC = "human_consistency.step{}.mean"
AC = "annotation_consistency.step{}.at_mean_annotations"
TR = "truth.step{}.spearman"
NA = "annotations_per_video.step{}.mean"
HALF = "human_consistency.step{}.mean_annotations_per_half"
KEPT = "participants_kept.step{}"
COST = "participant_minutes"
STEP = {1: "short term", 2: "long term"}


def _load(runs: Path, study: str) -> pd.DataFrame:
    path = runs / study / "results.parquet"
    if not path.exists():
        sys.exit(
            f"{path}: missing; run: memsim sweep experiments/{study}.yaml --out {runs / study}"
        )
    return pd.read_parquet(path)


def _agg(df: pd.DataFrame, by: list[str], cols: list[str]) -> pd.DataFrame:
    g = df.groupby(by, sort=False)[cols]
    m, s = g.mean(), g.std(ddof=1)
    return m.join(s.add_suffix("_sd")).reset_index()


def _v(value) -> str:
    """An axis value as written in the study file (iterrows turns ints into floats)."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _pm(row, col: str, digits: int = 3) -> str:
    return f"{row[col]:.{digits}f} ± {row[col + '_sd']:.{digits}f}"


def _band(ax, x, row_mean, row_sd, label, **kw):
    (line,) = ax.plot(x, row_mean, marker="o", ms=3, label=label, **kw)
    ax.fill_between(
        x, row_mean - row_sd, row_mean + row_sd, color=line.get_color(), alpha=0.2, lw=0
    )
    return line


def spearman_brown(r, k):
    r = np.asarray(r, dtype=float)
    return k * r / (1 + (k - 1) * r)


def _needed(n_half: np.ndarray, r: np.ndarray, target: float) -> tuple[float, float, float]:
    """Annotations per video (both halves) where split-half consistency reaches ``target``.

    Returns (interpolated from the measured points or NaN if not reached,
    Spearman-Brown extrapolation from a one-annotation reliability fitted by least
    squares on all points, that fitted reliability).
    """
    order = np.argsort(n_half)
    n_half, r = n_half[order], r[order]
    interp = float("nan")
    above = np.nonzero(r >= target)[0]
    if len(above) and above[0] > 0:
        i = above[0]
        interp = 2 * float(np.interp(target, [r[i - 1], r[i]], [n_half[i - 1], n_half[i]]))
    grid = np.linspace(1e-4, 0.5, 50_000)
    sse = ((spearman_brown(grid[:, None], n_half[None, :]) - r) ** 2).sum(axis=1)
    rho = float(grid[int(np.argmin(sse))])
    sb = 2 * target * (1 - rho) / (rho * (1 - target))
    return interp, float(sb), rho


# --------------------------------------------------------------------------- studies
def annotations(runs: Path, out: Path) -> None:
    df = _load(runs, "annotations")
    cols = [c.format(s) for s in (1, 2) for c in (HC, AC, TR, NA, HALF)]
    a = _agg(df, ["annotations_target"], cols).sort_values("annotations_target")
    base = a[a.annotations_target == 38].iloc[0]
    fig, axes = style.subplots(1, 2, panel=(5.5, 4.2), squeeze=True)
    print(
        "| target N | step | annotations/video | human consistency | annotation consistency | "
        "Spearman with truth |"
    )
    print("|---|---|---|---|---|---|")
    for ax, s in zip(axes, (1, 2)):
        x = a[NA.format(s)].to_numpy()
        _band(ax, x, a[HC.format(s)], a[HC.format(s) + "_sd"], "human consistency (25 half-splits)")
        _band(
            ax,
            x,
            a[AC.format(s)],
            a[AC.format(s) + "_sd"],
            "annotation consistency (balanced split)",
        )
        _band(
            ax, x, a[TR.format(s)], a[TR.format(s) + "_sd"], "scores vs true memorability", ls="--"
        )
        # Spearman-Brown from the N = 38 campaign's human consistency, r0 with m0 annotations per
        # half
        r0, m0 = base[HC.format(s)], base[HALF.format(s)]
        m = a[HALF.format(s)].to_numpy()
        ax.plot(
            x,
            spearman_brown(r0, m / m0),
            "k:",
            label=f"Spearman-Brown from the N=38 campaign (r={r0:.3f})",
        )
        # the paper's values (Cohendet et al. 2019, Sec. 4.1) at its mean annotation counts
        n_paper, hc_paper, ac_paper = {1: (38, 0.481, 0.616), 2: (13, 0.192, 0.364)}[s]
        ax.plot(
            [n_paper],
            [hc_paper],
            "*",
            color="C0",
            mec="k",
            ms=11,
            label=f"paper: human {hc_paper} at {n_paper}",
        )
        ax.plot(
            [n_paper],
            [ac_paper],
            "*",
            color="C1",
            mec="k",
            ms=11,
            label=f"paper: annotation {ac_paper} at {n_paper}",
        )
        ax.axhline(0.7, color="0.7", lw=0.8)
        ax.axhline(0.8, color="0.7", lw=0.8)
        ax.set_xlabel(f"mean {STEP[s]} annotations per video (kept participants)")
        ax.set_ylabel("Spearman correlation")
        ax.set_title(STEP[s], fontsize=10)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        for _, row in a.iterrows():
            print(
                f"| {int(row.annotations_target)} | {STEP[s]} | {row[NA.format(s)]:.1f} | "
                f"{_pm(row, HC.format(s))} | "
                f"{_pm(row, AC.format(s))} | {_pm(row, TR.format(s))} |"
            )
    style.suptitle(
        fig,
        "Consistency vs annotations per video (simulated VideoMem campaigns, scale 0.2, 3 "
        "replicates)",
    )
    style.save(fig, out / "annotations.png")
    style.pyplot().close(fig)
    print()
    print(
        "| step | consistency | target | annotations needed: interpolated | Spearman-Brown "
        "extrapolation | fitted one-annotation reliability |"
    )
    print("|---|---|---|---|---|---|")
    for s in (1, 2):
        for name, col in (("human", HC), ("annotation", AC)):
            for target in (0.7, 0.8):
                interp, sb, rho = _needed(
                    a[HALF.format(s)].to_numpy(), a[col.format(s)].to_numpy(), target
                )
                shown = "not reached" if np.isnan(interp) else f"{interp:.0f}"
                print(f"| {STEP[s]} | {name} | {target} | {shown} | {sb:.0f} | {rho:.4f} |")


DESIGN = [
    ("design-lags", "target_lags", "target lag range"),
    ("design-targets", "targets", "targets per participant"),
    ("design-length", "length", "sequence length"),
    ("design-vigilance", "vigilance", "vigilance repeats per sequence"),
    ("design-delay", "delay_h", "step-2 delay (h)"),
]


def design(runs: Path, out: Path) -> None:
    fig, axes = style.subplots(2, 3, panel=(4.4, 3.7), squeeze=True)
    cols = [c.format(s) for s in (1, 2) for c in (HC, AC, TR, NA, KEPT)] + [COST]
    frontier_ax = axes.flat[5]
    notes = []  # the value of each design cell beside its point (those that fit)
    for ax, (study, axis, label) in zip(axes.flat, DESIGN):
        a = _agg(_load(runs, study), [axis], cols)
        x = np.arange(len(a))
        for s in (1, 2):
            _band(ax, x, a[HC.format(s)], a[HC.format(s) + "_sd"], f"human consistency, {STEP[s]}")
            _band(ax, x, a[TR.format(s)], a[TR.format(s) + "_sd"], f"vs truth, {STEP[s]}", ls="--")
        ax.set_xticks(x)
        ax.set_xticklabels([style.value_label(v) for v in a[axis]], fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel("Spearman")
        ax.grid(alpha=0.3)
        # consistency per crowd time: one marker per cell on the shared frontier panel
        hours = a[COST] / 60
        frontier_ax.scatter(hours, a[HC.format(1)], s=14, label=label)
        for h, y, v in zip(hours, a[HC.format(1)], a[axis]):
            notes.append(
                frontier_ax.annotate(
                    style.value_label(v),
                    (h, y),
                    fontsize=6,
                    xytext=(3, 2),
                    textcoords="offset points",
                )
            )
        print(f"\n{label} ({study}):\n")
        print(
            f"| {axis} | crowd hours (at scale 0.2) | ST ann./video | ST human | ST vs truth | LT "
            "ann./video | LT human | LT vs truth | ST human per 1,000 crowd h |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for _, row in a.iterrows():
            per = row[HC.format(1)] / (row[COST] / 60) * 1000
            print(
                f"| {_v(row[axis])} | {row[COST] / 60:,.0f} | {row[NA.format(1)]:.1f} | "
                f"{_pm(row, HC.format(1))} | "
                f"{_pm(row, TR.format(1))} | {row[NA.format(2)]:.1f} | {_pm(row, HC.format(2))} | "
                f"{_pm(row, TR.format(2))} | {per:.2f} |"
            )
    style.legend_below(fig, [axes.flat[0]])
    frontier_ax.set_xlabel("crowd time (participant-hours, nominal)")
    frontier_ax.set_ylabel("short-term human consistency")
    frontier_ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1), title="varied")
    frontier_ax.set_title("consistency vs crowd time, every design cell", fontsize=9)
    # starts per run, the top-up's included (the budget is 1,986; the top-up adds its rounds)
    starts = pd.concat([_load(runs, study)["participants"] for study, _, _ in DESIGN])
    style.suptitle(
        fig,
        f"Protocol design around VideoMem (scale 0.2: 2,000 videos, {starts.min():,.0f}–"
        f"{starts.max():,.0f} participants; 3 replicates)",
    )
    style.declutter(fig, notes, hide=True)
    style.save(fig, out / "design.png")
    style.pyplot().close(fig)


def filters(runs: Path, out: Path) -> None:
    df = _load(runs, "filters")
    cols = [HC.format(1), AC.format(1), TR.format(1), KEPT.format(1), NA.format(1)]
    a = _agg(df, ["max_fa_step1", "min_vigilance"], cols)
    fig, axes = style.subplots(1, 2, panel=(5.5, 4.2), squeeze=True)
    notes = []  # each point's false-alarm threshold (those that fit)
    for v, g in a.groupby("min_vigilance"):
        g = g.sort_values(KEPT.format(1))
        axes[0].errorbar(
            g[KEPT.format(1)],
            g[HC.format(1)],
            yerr=g[HC.format(1) + "_sd"],
            marker="o",
            ms=3,
            capsize=2,
            label=f"vigilance >= {v}",
        )
        axes[1].errorbar(
            g[KEPT.format(1)],
            g[TR.format(1)],
            yerr=g[TR.format(1) + "_sd"],
            marker="o",
            ms=3,
            capsize=2,
            label=f"vigilance >= {v}",
        )
        for _, row in g.iterrows():
            notes.append(
                axes[0].annotate(
                    f"FA ≤ {row.max_fa_step1:g}",
                    (row[KEPT.format(1)], row[HC.format(1)]),
                    fontsize=6,
                    xytext=(2, -8),
                    textcoords="offset points",
                )
            )
    for ax, what in zip(
        axes, ("short-term human consistency", "short-term scores vs true memorability")
    ):
        ax.set_xlabel("participants kept after step-1 filters")
        ax.set_ylabel(what)
    style.legend_below(fig, [axes[0]])
    style.suptitle(
        fig,
        "Participant filters (step 1): kept vs consistency, same simulated crowds (common random "
        "numbers)",
    )
    style.declutter(fig, notes, hide=True)
    style.save(fig, out / "filters.png")
    style.pyplot().close(fig)
    # common random numbers: replicate r of every cell scores the same simulated crowd, so the
    # difference to VideoMem's own filters (FA <= 0.3, vigilance >= 0.7) is paired per replicate
    ref = df[(df.max_fa_step1 == 0.3) & (df.min_vigilance == 0.7)].set_index("replicate")
    d = df.assign(
        d_hc=df[HC.format(1)] - df.replicate.map(ref[HC.format(1)]),
        d_tr=df[TR.format(1)] - df.replicate.map(ref[TR.format(1)]),
    )
    dd = _agg(d, ["max_fa_step1", "min_vigilance"], ["d_hc", "d_tr"])
    a = a.merge(dd, on=["max_fa_step1", "min_vigilance"])
    print(
        "| max FA rate | min vigilance hit rate | kept | ST annotations/video | ST human "
        "consistency | ST vs truth "
        "| Δ human vs VideoMem filters (paired) | Δ vs truth (paired) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for _, row in a.iterrows():
        print(
            f"| {row.max_fa_step1:g} | {row.min_vigilance:g} | {row[KEPT.format(1)]:.0f} | "
            f"{row[NA.format(1)]:.1f} | "
            f"{_pm(row, HC.format(1))} | {_pm(row, TR.format(1))} | {row.d_hc:+.3f} ± "
            f"{row.d_hc_sd:.3f} "
            f"| {row.d_tr:+.3f} ± {row.d_tr_sd:.3f} |"
        )


def selection(runs: Path, out: Path) -> None:
    df = _load(runs, "selection")
    cols = [HC.format(1), HC.format(2), TR.format(1), TR.format(2), NA.format(1), COST]
    a = _agg(df, ["policy", "budget"], cols)
    fig, axes = style.subplots(1, 2, panel=(5.5, 4.2), squeeze=True)
    panels = (
        (HC.format(1), "short-term human consistency (split halves)"),
        (TR.format(1), "short-term scores vs true memorability"),
    )
    for pol, g in a.groupby("policy", sort=False):
        g = g.sort_values("budget")
        for ax, (col, _) in zip(axes, panels):
            _band(ax, g["budget"], g[col], g[col + "_sd"], style.value_label(pol))
    for ax, (_, label) in zip(axes, panels):
        ax.set_xlabel("participants recruited (full-scale budget; simulated at scale 0.2)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    style.suptitle(
        fig,
        "Selection policy at equal budgets: consistency (left) is not accuracy (right); 3 "
        "replicates",
    )
    style.save(fig, out / "selection.png")
    style.pyplot().close(fig)
    mins = (
        df.groupby(["policy", "budget"], sort=False)[
            ["annotations_per_video.step1.min", "annotations_per_video.step2.min"]
        ]
        .mean()
        .reset_index()
    )
    a = a.merge(mins, on=["policy", "budget"])
    print(
        "| policy | budget | crowd hours | ST ann./video (min) | LT min | ST human | LT human | "
        "ST vs truth | LT vs truth |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for _, row in a.iterrows():
        print(
            f"| `{row.policy}` | {_v(row.budget)} | {row[COST] / 60:,.0f} | "
            f"{row[NA.format(1)]:.1f} "
            f"({row['annotations_per_video.step1.min']:.0f}) | "
            f"{row['annotations_per_video.step2.min']:.0f} | "
            f"{_pm(row, HC.format(1))} | {_pm(row, HC.format(2))} | {_pm(row, TR.format(1))} | "
            f"{_pm(row, TR.format(2))} |"
        )


def protocols(runs: Path, out: Path) -> None:
    df = _load(runs, "protocols")
    cols = [
        HC.format(1),
        AC.format(1),
        TR.format(1),
        NA.format(1),
        HC.format(2),
        TR.format(2),
        COST,
        KEPT.format(1),
    ]
    a = _agg(df, ["design"], cols)
    a["name"] = [Path(d).stem for d in a.design]
    fig, ax = style.subplots(panel=(8, 4.4), squeeze=True)
    x = np.arange(len(a))
    for i, (col, label) in enumerate(
        [
            (HC.format(1), "human consistency"),
            (AC.format(1), "annotation consistency"),
            (TR.format(1), "scores vs truth"),
        ]
    ):
        ax.bar(x + (i - 1) * 0.27, a[col], 0.27, yerr=a[col + "_sd"], capsize=2, label=label)
    ax.set_xticks(x)
    ax.set_xticklabels(
        [f"{n}\n{na:.0f} ann./item" for n, na in zip(a.name, a[NA.format(1)])], fontsize=8
    )
    ax.set_ylabel("Spearman (step 1)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)
    ax.set_title(
        "Published protocols on one simulated population (VideoMem parameters; scale 0.05)",
        fontsize=9,
    )
    style.save(fig, out / "protocols.png")
    style.pyplot().close(fig)
    print(
        "| protocol | crowd hours | participants kept | annotations/item | human consistency | "
        "annotation consistency | vs truth | LT human | LT vs truth |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for _, row in a.iterrows():
        lt = "—" if np.isnan(row[HC.format(2)]) else _pm(row, HC.format(2))
        ltt = "—" if np.isnan(row[TR.format(2)]) else _pm(row, TR.format(2))
        print(
            f"| {row['name']} | {row[COST] / 60:,.0f} | {row[KEPT.format(1)]:.0f} | "
            f"{row[NA.format(1)]:.1f} | "
            f"{_pm(row, HC.format(1))} | {_pm(row, AC.format(1))} | {_pm(row, TR.format(1))} | "
            f"{lt} | {ltt} |"
        )


SC = "score_correlation.short-term_memorability ~ long-term_memorability"
# (label, statistic, published value) -- the published values are Cohendet et al. 2019 as
# tabulated in shared/SPEC.md ("What the paper measured")
PAPER = [
    ("participants kept, short term", "participants_kept.step1", 9402),
    ("participants kept, long term", "participants_kept.step2", 3246),
    ("annotations per video, ST mean", "annotations_per_video.step1.mean", 38),
    ("annotations per video, ST min", "annotations_per_video.step1.min", 30),
    ("annotations per video, LT mean", "annotations_per_video.step2.mean", 13),
    ("annotations per video, LT min", "annotations_per_video.step2.min", 9),
    ("mean ST score, raw", "mean_score_raw.step1", 0.875),
    ("mean ST score, corrected", "mean_score.step1", 0.859),
    ("mean LT score", "mean_score.step2", 0.778),
    ("human consistency, ST", "human_consistency.step1.mean", 0.481),
    ("human consistency, LT", "human_consistency.step2.mean", 0.192),
    (
        "annotation consistency, ST at mean annotations",
        "annotation_consistency.step1.at_mean_annotations",
        0.616,
    ),
    (
        "annotation consistency, LT at mean annotations",
        "annotation_consistency.step2.at_mean_annotations",
        0.364,
    ),
    ("ST vs LT scores, Spearman", f"{SC}.all.spearman", 0.305),
    ("ST vs LT scores, Pearson", f"{SC}.all.pearson", 0.329),
    ("ST vs LT, Spearman, 500 most LT-annotated", f"{SC}.top500.spearman", 0.333),
    ("ST vs LT, Spearman, 100 most LT-annotated", f"{SC}.top100.spearman", 0.303),
    ("RT of correct recognitions, step 1 (s)", "response_times.step1.mean_rt_recognitions_s", 1.43),
    ("RT of correct recognitions, step 2 (s)", "response_times.step2.mean_rt_recognitions_s", 3.37),
    ("RT of false alarms, step 1 (s)", "response_times.step1.mean_rt_false_alarms_s", 3.17),
    ("RT of false alarms, step 2 (s)", "response_times.step2.mean_rt_false_alarms_s", 3.53),
    (
        "per-video RT vs score, ST (Pearson)",
        "response_times.step1.video_rt_vs_score_pearson",
        -0.307,
    ),
    (
        "per-video RT vs score, LT (Pearson)",
        "response_times.step2.video_rt_vs_score_pearson",
        -0.176,
    ),
    (
        "per-video mean RT, ST vs LT (Pearson)",
        "response_times.short-term ~ long-term.video_mean_rt_pearson",
        0.291,
    ),
]


def paper(runs: Path, out: Path) -> None:
    df = _load(runs, "paper")
    n = len(df)
    print(f"| quantity | paper | simulated (mean ± sd over {n} campaigns) |")
    print("|---|---|---|")
    for label, col, value in PAPER:
        v = df[col].to_numpy(float)
        big = abs(value) >= 100
        sim = (
            f"{v.mean():,.0f} ± {v.std(ddof=1):,.0f}"
            if big
            else f"{v.mean():.3f} ± {v.std(ddof=1):.3f}"
        )
        print(f"| {label} | {value:,} | {sim} |")
    fig, axes = style.subplots(2, 2, panel=(5.5, 4.3), squeeze=True)
    # Fig. 3: hit rate vs retention, binned, per step
    for ax, s, unit in ((axes[0, 0], 1, "lag (positions)"), (axes[0, 1], 2, "delay (hours)")):
        xs = np.array(
            [[df[f"lag_curve.step{s}.bins.{i}.x"].iloc[r] for i in range(8)] for r in range(n)]
        )
        hs = np.array(
            [
                [df[f"lag_curve.step{s}.bins.{i}.hit_rate"].iloc[r] for i in range(8)]
                for r in range(n)
            ]
        )
        x, h, sd = np.nanmean(xs, 0), np.nanmean(hs, 0), np.nanstd(hs, 0, ddof=1)
        slope = df[f"lag_curve.step{s}.slope"]
        _band(
            ax,
            x,
            h,
            sd,
            f"simulated, {n} campaigns (±1 sd)\nfitted slope {slope.mean():.2e} ± "
            f"{slope.std(ddof=1):.1e}",
        )
        ax.set_title(f"Fig. 3 ({STEP[s]}): hit rate vs retention", fontsize=9)
        ax.set_xlabel(unit)
        ax.set_ylabel("correct recognition rate")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    # Fig. 4: annotation consistency vs annotations per video
    ax = axes[1, 0]
    for s, top, paper_n, paper_r in ((1, 50, 38, 0.616), (2, 30, 13, 0.364)):
        ns = np.arange(2, top + 1, 2)
        cols = [f"annotation_consistency.step{s}.curve@{k}" for k in ns]
        curve = df[cols].to_numpy(float)
        ok = np.isfinite(curve).sum(0) == n  # only points every campaign reached
        c = curve[:, ok]
        _band(ax, ns[ok], c.mean(0), c.std(0, ddof=1), f"simulated, {STEP[s]}")
        ax.plot([paper_n], [paper_r], "k*", ms=10)
        ax.annotate(
            f"paper {paper_r} at {paper_n}",
            (paper_n, paper_r),
            fontsize=7,
            xytext=(4, 4),
            textcoords="offset points",
        )
    ax.set_title("Fig. 4: annotation consistency vs annotations per video", fontsize=9)
    ax.set_xlabel("annotations per video (N)")
    ax.set_ylabel("Spearman between balanced halves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    # Figs. 5-6 as numbers: every published correlation, paper vs simulated
    ax = axes[1, 1]
    rows = [
        r
        for r in PAPER
        if abs(r[2]) < 1 and ("consistency" in r[0] or "Pearson" in r[0] or "Spearman" in r[0])
    ]
    y = np.arange(len(rows))
    sim = np.array([df[c].mean() for _, c, _ in rows])
    err = np.array([df[c].std(ddof=1) for _, c, _ in rows])
    ax.errorbar(sim, y, xerr=err, fmt="o", ms=4, capsize=2, label="simulated (±1 sd)")
    ax.plot([v for *_, v in rows], y, "k*", ms=8, label="paper")
    ax.set_yticks(y)
    ax.set_yticklabels([r[0] for r in rows], fontsize=6)
    ax.axvline(0, color="0.7", lw=0.8)
    ax.set_title("Figs. 5-6 and Sec. 4: correlations, paper vs simulated", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    style.suptitle(
        fig,
        f"VideoMem paper vs {n} simulated full-scale campaigns (calibration/videomem.yaml)",
    )
    style.save(fig, out / "paper.png")
    style.pyplot().close(fig)


# --------------------------------------------------------------------------- under the posterior
EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


class _Paired:
    """A posterior study's paired differences to its baseline cell (``paired``, one row per
    cell, as ``memsim report`` writes ``report/paired.csv``) and the study file (``study``)."""

    def __init__(self, paired: pd.DataFrame, study: dict):
        self.paired, self.study = paired, study


def _is(cell, value) -> bool:
    """A results column's value against a study file's (lists and mappings are stored as
    compact JSON with sorted keys, as the sweep writes them)."""
    if isinstance(value, (list, dict)):
        return cell == json.dumps(value, sort_keys=True, separators=(",", ":"))
    return cell == value


def _paired(runs: Path, study: str):
    """Each statistic's difference to the study's ``baseline`` cell within each replicate (one
    posterior draw), summarised over the draws by
    :func:`memsim.study.intervals.paired_differences`; the baseline is the study file's
    (``experiments/<study>.yaml``)."""
    from memsim.study.intervals import paired_differences
    from memsim.study.sweep import load_study

    df = _load(runs, study)
    spec = load_study(EXPERIMENTS / f"{study}.yaml")
    base = {}
    for axis, value in spec.baseline.items():
        match = [c for c in df[axis].unique() if _is(c, value)]
        if not match:
            sys.exit(f"{runs / study}: no cell has {axis} = {value} (the study's baseline)")
        base[axis] = match[0]
    stats = [s for s in (*spec.statistics, COST) if s in df.columns]
    study = {"baseline": base, "scale": spec.scale}
    return _Paired(paired_differences(df, base, stats), study), df


def _gain(row, stat: str, digits: int = 3) -> str:
    """``median [5 %, 95 %] (k of n)``: a paired difference over the draws, k of them above 0;
    a dash where the cell has no such statistic (a protocol without a second step)."""
    if not np.isfinite(row[stat + "_median"]):
        return "—"
    k = round(row[stat + "_above"] * row["replicates"])
    return (
        f"{row[stat + '_median']:+.{digits}f} [{row[stat + '_lo']:+.{digits}f}, "
        f"{row[stat + '_hi']:+.{digits}f}] ({k} of {row['replicates']:.0f})"
    )


def _level(df: pd.DataFrame, at, stat: str) -> str:
    from memsim.study.intervals import credible

    c = credible(df.loc[at, stat])
    return f"{c['median']:.3f} [{c['lo']:.3f}, {c['hi']:.3f}]"


def _in_order(rep, df: pd.DataFrame, axes: list[str]) -> pd.DataFrame:
    """The paired table's rows in the study's cell order (it comes sorted by value)."""
    first = df.groupby(axes, sort=False)["cell"].min()
    key = [first.loc[tuple(r[a] for a in axes) if len(axes) > 1 else r[axes[0]]]
           for _, r in rep.paired.iterrows()]  # fmt: skip
    return rep.paired.assign(_cell=key).sort_values("_cell").drop(columns="_cell")


def _posterior_table(rep, df: pd.DataFrame, axis: str, baseline: dict) -> None:
    """One row per cell: the level of short-term human consistency over the draws, then each
    quality's paired difference to the baseline cell, and the crowd time's."""
    print(
        f"| {axis} | ST human | Δ ST human | Δ ST vs truth | Δ LT human | Δ LT vs truth | "
        f"Δ crowd hours (at scale {rep.study['scale']:g}) |"
    )
    print("|---|---|---|---|---|---|---|")
    for _, row in _in_order(rep, df, list(baseline)).iterrows():
        at = np.ones(len(df), bool)
        for a in baseline:
            at &= df[a].to_numpy() == row[a]
        cells = ["(VideoMem's)"] * 4 + ["0"]
        if not all(row[a] == baseline[a] for a in baseline):
            quality = (HC.format(1), TR.format(1), HC.format(2), TR.format(2))
            cells = [_gain(row, s) for s in quality]
            cells.append(
                f"{row[COST + '_median'] / 60:+,.0f} [{row[COST + '_lo'] / 60:+,.0f}, "
                f"{row[COST + '_hi'] / 60:+,.0f}]"
            )
        value = _v(row[axis])
        value = f"`{value}`" if value.startswith("{") else value
        value = Path(value).stem if value.endswith(".yaml") else value  # a protocol file
        print(f"| {value} | {_level(df, at, HC.format(1))} | " + " | ".join(cells) + " |")


def _forest(ax, rep, df: pd.DataFrame, axis: str, label: str, step: int = 1) -> None:
    """Paired differences to the baseline cell: median and 90 % interval over the draws, of
    ``step``'s human consistency and agreement with the truth."""
    p = _in_order(rep, df, list(rep.study["baseline"]))
    x = np.arange(len(p))
    st = "ST" if step == 1 else "LT"
    for off, stat, name in ((-0.12, HC.format(step), f"{st} human consistency"),
                            (0.12, TR.format(step), f"{st} vs truth")):  # fmt: skip
        med = p[stat + "_median"].to_numpy()
        err = [med - p[stat + "_lo"].to_numpy(), p[stat + "_hi"].to_numpy() - med]
        ax.errorbar(x + off, med, yerr=err, fmt="o", ms=3, capsize=2, label=name)
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xticks(x)
    # one line per part of a value ("least annotated, pool 1000"), so long labels do not meet
    ax.set_xticklabels([style.value_label(v).replace(", ", ",\n") for v in p[axis]], fontsize=8)
    ax.set_xlabel(label)
    ax.set_ylabel("difference to VideoMem's setting")
    ax.grid(alpha=0.3)


def design_posterior(runs: Path, out: Path) -> None:
    fig, axes = style.subplots(2, 3, panel=(4.4, 3.7), squeeze=True)
    n = set()
    for ax, (study, axis, label) in zip(axes.flat, DESIGN):
        rep, df = _paired(runs, f"{study}-posterior")
        n.add(int(rep.paired["replicates"].max()))
        # the delay before step 2 changes step 2's scores: its panel shows the long term
        step = 2 if study == "design-delay" else 1
        _forest(ax, rep, df, axis, label, step)
        if step == 2:
            ax.legend(fontsize=7)
        print(f"\n{label} ({study}-posterior):\n")
        _posterior_table(rep, df, axis, rep.study["baseline"])
    axes.flat[5].set_visible(False)
    style.legend_below(fig, [axes.flat[0]])
    style.suptitle(
        fig,
        "Protocol design around VideoMem under the posterior: each setting against VideoMem's "
        f"own, paired per draw (median, 90 % interval; {', '.join(map(str, sorted(n)))} draws)",
    )
    style.save(fig, out / "design-posterior.png")
    style.pyplot().close(fig)


def _one_axis_posterior(runs: Path, out: Path, study: str, axis: str, label: str, title: str):
    """A posterior study with one axis: its forest of paired differences (``<study>.png``,
    titled ``title`` and the number of draws) and its table."""
    rep, df = _paired(runs, study)
    fig, ax = style.subplots(1, 1, panel=(6.0, 3.9), squeeze=True)
    _forest(ax, rep, df, axis, label)
    ax.legend(fontsize=7)
    n, scale = int(rep.paired["replicates"].max()), rep.study["scale"]
    style.suptitle(fig, f"{title}, paired per draw ({n} draws, scale {scale:g})")
    style.save(fig, out / f"{study}.png")
    style.pyplot().close(fig)
    _posterior_table(rep, df, axis, rep.study["baseline"])


def selection_posterior(runs: Path, out: Path) -> None:
    _one_axis_posterior(
        runs, out, "selection-posterior", "policy", "selection policy",
        "Selection policy under the posterior: each policy against VideoMem's (least-annotated "
        "among 1,000)",
    )  # fmt: skip


def protocols_posterior(runs: Path, out: Path) -> None:
    _one_axis_posterior(
        runs, out, "protocols-posterior", "design",
        "protocol, on crowds drawn from the VideoMem posterior",
        "The published protocols under the VideoMem posterior: each against VideoMem's",
    )  # fmt: skip


STUDIES = {f.__name__: f for f in (paper, annotations, design, filters, selection, protocols)}
STUDIES["design-posterior"] = design_posterior
STUDIES["selection-posterior"] = selection_posterior
STUDIES["protocols-posterior"] = protocols_posterior
# the page each study's tables go into (``--update-docs``)
PAGE = {
    "design-posterior": "design",
    "selection-posterior": "selection",
    "protocols-posterior": "protocols",
}


BEGIN = (
    "<!-- generated by: python docs/studies/figures.py {} --update-docs (do not edit by hand) -->"
)
END = "<!-- end of generated -->"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", choices=sorted(STUDIES))
    ap.add_argument("--runs", type=Path, default=Path("runs"))
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    ap.add_argument(
        "--update-docs",
        action="store_true",
        help="also replace the generated block of <out>/<study>.md with the printed tables",
    )
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    style.DPI = 120  # pages of the repository: lighter than the 200 dpi memsim writes
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), style.styled():
        STUDIES[args.study](args.runs, args.out)
    text = buf.getvalue().strip("\n")
    print(text)
    if args.update_docs:
        md_path = args.out / f"{PAGE.get(args.study, args.study)}.md"
        md = md_path.read_text(encoding="utf-8")
        begin = BEGIN.format(args.study)
        a = md.index(begin) + len(begin)
        b = md.index(END, a)  # this block's end: a page may hold several blocks
        md_path.write_text(md[:a] + "\n" + text + "\n" + md[b:], encoding="utf-8")
        print(f"updated the tables of {md_path} (check the prose around them)", file=sys.stderr)


if __name__ == "__main__":
    main()
