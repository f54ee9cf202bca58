"""Figures of a run: the paper's Figs. 3-6 from a simulation, and real-vs-simulated scores.

In: the summary dict of :func:`memsim.analysis.consistency.analyse`, the scores table,
optionally the released scores, and the published numbers to mark (from the protocol's own
targets file: :func:`memsim.fit.compare.figure_references`; none when it has none). Out:
PNG files (200 dpi), and SVG / PDF beside them on request. Drawn in the project's style
(:mod:`memsim.viz.style`); matplotlib is imported only when drawing, never at
``import memsim``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from memsim.analysis.consistency import pearson, spearman
from memsim.viz import style
from memsim.viz.style import ROLE, label

__all__ = [
    "run_figures",
    "analysis_figures",
    "score_figures",
    "fig_lag",
    "fig_consistency",
    "fig_st_lt",
    "fig_rt",
    "fig_real_vs_sim",
]

Formats = str | Iterable[str] | None


def _ref(text: str) -> str:
    return f"published {text}"


def fig_lag(summary: dict, out: Path, *, name: str = "fig3_lag", formats: Formats = None) -> Path:
    """Fig. 3: hit rate vs retention, per step, binned with 95% intervals and the fitted line."""
    steps = summary["steps"]
    with style.figure(
        1, len(steps), title="Fig. 3 (simulated): hit rate against the retention interval"
    ) as (fig, axes):
        for ax, step in zip(axes[0], steps):
            lc = summary["lag_curve"][step]
            bins = lc.get("bins", [])
            slope = ""
            if bins:
                x = np.array([b["x"] for b in bins])
                y = np.array([b["hit_rate"] for b in bins])
                n = np.array([b["annotations"] for b in bins])
                se = np.sqrt(np.clip(y * (1 - y), 0, None) / np.maximum(n, 1))
                ax.errorbar(
                    x,
                    y,
                    yerr=1.96 * se,
                    fmt="o",
                    color=ROLE["simulated"],
                    label="simulated, binned (95% interval)",
                )
                xs = np.linspace(min(b["lo"] for b in bins), max(b["hi"] for b in bins), 50)
                ax.plot(
                    xs,
                    lc["intercept"] + lc["slope"] * xs,
                    color=ROLE["fit"],
                    label="linear fit over all annotations",
                )
                unit = lc.get("unit", "").split(" (")[-1].rstrip(")") or "unit"
                per = {"positions": "position", "hours": "hour"}.get(unit, unit)
                slope = f": slope {lc['slope']:+.2g} per {per}"
            ax.set_xlabel(lc.get("unit", "retention"))
            ax.set_ylabel("correct recognition rate")
            style.title(ax, f"{step}{slope}")
        style.legend_below(fig)
        return style.save(fig, out / name, formats)


def fig_consistency(
    summary: dict,
    out: Path,
    references: dict | None = None,
    *,
    name: str = "fig4_consistency",
    formats: Formats = None,
) -> Path:
    """Fig. 4: annotation consistency vs annotations per video, with Spearman-Brown from the
    human split and, where the protocol's targets file gives them, the published values."""
    steps = summary["steps"]
    refs = (references or {}).get("annotation_consistency", {})
    with style.figure(
        1, len(steps), title="Fig. 4 (simulated): annotation consistency vs annotations per video"
    ) as (fig, axes):
        for ax, step in zip(axes[0], steps):
            ac = summary["annotation_consistency"][step]
            curve = pd.DataFrame(ac["curve"])
            if not curve.empty:
                ax.plot(
                    curve["N"],
                    curve["spearman"],
                    "o-",
                    ms=3,
                    color=ROLE["simulated"],
                    label="simulated (±1 SD over splits)",
                )
                if "sd" in curve and curve["sd"].notna().any():
                    ax.fill_between(
                        curve["N"],
                        curve["spearman"] - curve["sd"],
                        curve["spearman"] + curve["sd"],
                        color=ROLE["band"],
                        alpha=0.2,
                        lw=0,
                    )
            sb = summary.get("spearman_brown", {}).get(step, {}).get("predicted_curve")
            if sb:
                ax.plot(
                    sb["N"],
                    sb["spearman"],
                    "--",
                    color=ROLE["fit"],
                    label="Spearman-Brown from the human split",
                )
            hc = summary["human_consistency"][step]["mean"]
            if hc == hc:
                ax.axhline(
                    hc, color=ROLE["secondary"], lw=1.2, ls=":", label="human consistency (sim.)"
                )
            paper = refs.get(step)
            if paper:
                at, value = paper
                ax.plot(
                    [at],
                    [value],
                    "D",
                    color=ROLE["reference"],
                    ms=6,
                    label=_ref("value (targets file)"),
                )
                ax.annotate(
                    f"{value:g} at {at:g}",
                    (at, value),
                    xytext=(6, 4),
                    textcoords="offset points",
                    fontsize=7.5,
                )
            ax.set_xlabel("annotations per video (N)")
            ax.set_ylabel("Spearman between halves")
            ax.set_ylim(-0.05, 1)
            style.title(ax, f"{step}: human consistency {hc:.3f}" if hc == hc else step)
        style.legend_below(fig)
        return style.save(fig, out / name, formats)


def fig_st_lt(
    scores: pd.DataFrame,
    video_rt: pd.DataFrame | None,
    columns: list[str],
    out: Path,
    references: dict | None = None,
    *,
    name: str = "fig5_st_vs_lt",
    formats: Formats = None,
) -> Path | None:
    """Fig. 5: short-term vs long-term scores (and per-video mean RTs when given)."""
    if len(columns) < 2:
        return None
    a, b = columns[:2]
    ok = scores[a].notna() & scores[b].notna()
    ncols = 2 if video_rt is not None else 1
    refs = references or {}

    def paper(key: str) -> str:
        return f" ({_ref(f'{refs[key]:.3f}')})" if key in refs else ""

    with style.figure(1, ncols, title="Fig. 5 (simulated): short-term vs long-term") as (
        fig,
        axes,
    ):
        ax = axes[0][0]
        ax.plot(
            scores.loc[ok, a],
            scores.loc[ok, b],
            "o",
            ms=1.5,
            alpha=0.3,
            rasterized=True,
            color=ROLE["simulated"],
        )
        r = spearman(scores.loc[ok, a].to_numpy(), scores.loc[ok, b].to_numpy())
        style.title(ax, f"scores: Spearman {r:.3f}{paper('score_correlation')}")
        ax.set_xlabel(label(a))
        ax.set_ylabel(label(b))
        if video_rt is not None:
            ax = axes[0][1]
            x, y = video_rt.iloc[:, 0].to_numpy(), video_rt.iloc[:, 1].to_numpy()
            m = np.isfinite(x) & np.isfinite(y)
            ax.plot(x[m], y[m], "o", ms=1.5, alpha=0.3, rasterized=True, color=ROLE["secondary"])
            r = pearson(x[m], y[m])
            style.title(ax, f"per-video mean RT: Pearson {r:.3f}{paper('video_mean_rt_pearson')}")
            ax.set_xlabel(f"{label(a).removesuffix(' memorability')}: mean RT (s)")
            ax.set_ylabel(f"{label(b).removesuffix(' memorability')}: mean RT (s)")
        return style.save(fig, out / name, formats)


def fig_rt(
    scores: pd.DataFrame,
    video_rt: pd.DataFrame | None,
    columns: list[str],
    out: Path,
    *,
    name: str = "fig6_rt",
    formats: Formats = None,
) -> Path | None:
    """Fig. 6: per-video mean RT of correct recognitions against the score."""
    if video_rt is None:
        return None
    with style.figure(
        1, len(columns), title="Fig. 6 (simulated): response time vs memorability"
    ) as (fig, axes):
        for j, (ax, col) in enumerate(zip(axes[0], columns)):
            x = scores[col].to_numpy(float)
            y = video_rt.iloc[:, j].to_numpy(float)
            m = np.isfinite(x) & np.isfinite(y)
            ax.plot(
                x[m], y[m], "o", ms=1.5, alpha=0.3, rasterized=True, color=style.PALETTE[j % 2 * 2]
            )
            if m.sum() > 2:
                k, c0 = np.polyfit(x[m], y[m], 1)
                xs = np.linspace(x[m].min(), x[m].max(), 20)
                ax.plot(xs, c0 + k * xs, color=ROLE["reference"], lw=1, label="least-squares line")
            style.title(ax, f"{label(col)}: r = {pearson(x[m], y[m]):.3f}")
            ax.set_xlabel(label(col))
            ax.set_ylabel("mean RT of correct recognitions (s)")
        style.legend_below(fig)
        return style.save(fig, out / name, formats)


def fig_real_vs_sim(
    scores: pd.DataFrame,
    real: pd.DataFrame,
    columns: list[str],
    out: Path,
    *,
    name: str = "scores_real_vs_sim",
    formats: Formats = None,
    what: str = "simulated",
) -> Path | None:
    """Score distributions: simulated vs released (density and cumulative, KS distance)."""
    from memsim.analysis.distributions import at_released_precision, ks_distance

    cols = [c for c in columns if c in real.columns]
    if not cols:
        return None
    with style.figure(
        2, len(cols), panel=(style.PANEL[0], 3.0), title=f"Score distributions: {what} vs released"
    ) as (fig, axes):
        bins = np.linspace(0, 1, 21)  # wide bins: LT scores are fractions of ~13 annotations
        for j, col in enumerate(cols):
            s = np.sort(scores[col].dropna().to_numpy())
            r = np.sort(real[col].dropna().to_numpy())
            s, _ = at_released_precision(s, r)  # as real_score_comparison compares them
            ax = axes[0][j]
            # released filled, simulated as an outline: nothing mixes into a third colour
            ax.hist(
                r,
                bins=bins,
                density=True,
                histtype="stepfilled",
                alpha=0.35,
                color=ROLE["released"],
                label="released",
            )
            ax.hist(
                s,
                bins=bins,
                density=True,
                histtype="step",
                lw=1.6,
                color=ROLE["simulated"],
                label=what,
            )
            style.title(ax, f"{label(col)}: {len(r):,} released, {len(s):,} {what}")
            ax.set_ylabel("density")
            ax.set_xlim(0, 1)
            ax = axes[1][j]
            ax.step(r, np.arange(1, r.size + 1) / r.size, where="post", color=ROLE["released"])
            ax.step(s, np.arange(1, s.size + 1) / s.size, where="post", color=ROLE["simulated"])
            style.title(ax, f"cumulative: KS distance {ks_distance(s, r):.3f}")
            ax.set_xlabel(f"{label(col)} score".replace("memorability score", "score"))
            ax.set_ylabel("fraction of videos at or below")
            ax.set_xlim(0, 1)
        style.legend_below(fig, axes[0])
        return style.save(fig, out / name, formats)


def analysis_figures(
    summary: dict, out: Path, references: dict | None = None, *, formats: Formats = None
) -> list[tuple]:
    """The calls drawing the figures that need the analyses (Figs. 3 and 4), in
    :func:`run_figures`' order: ``(function, args, kwargs)``, each function returning its PNG's
    path (or None when the figure does not apply)."""
    return [
        (fig_lag, (summary, out), {"formats": formats}),
        (fig_consistency, (summary, out, references), {"formats": formats}),
    ]


def score_figures(
    scores: pd.DataFrame,
    video_rt: pd.DataFrame | None,
    real: pd.DataFrame | None,
    columns: list[str],
    out: Path,
    references: dict | None = None,
    *,
    formats: Formats = None,
) -> list[tuple]:
    """The calls drawing the figures that need only the scores (Figs. 5 and 6, and the
    released-vs-simulated distributions when ``real`` is given), in :func:`run_figures`' order."""
    calls = [
        (fig_st_lt, (scores, video_rt, columns, out, references), {"formats": formats}),
        (fig_rt, (scores, video_rt, columns, out), {"formats": formats}),
    ]
    if real is not None:
        calls.append((fig_real_vs_sim, (scores, real, columns, out), {"formats": formats}))
    return calls


def run_figures(
    summary: dict,
    scores: pd.DataFrame,
    video_rt: pd.DataFrame | None,
    real: pd.DataFrame | None,
    columns: list[str],
    out: str | os.PathLike[str],
    references: dict | None = None,
    *,
    formats: Formats = None,
) -> list[Path]:
    """Every figure of a run into ``out`` (PNG; plus ``formats`` such as ``("svg", "pdf")``).

    ``references``: the published numbers to mark (:func:`memsim.fit.compare.figure_references`
    of the protocol's own targets file); none are drawn without them. Returns the PNG paths.
    The calls are :func:`analysis_figures` then :func:`score_figures`, drawn here in turn
    (:mod:`memsim.study.drawing` hands them to worker processes as their inputs appear).
    """
    out = Path(out)
    calls = analysis_figures(summary, out, references, formats=formats)
    calls += score_figures(scores, video_rt, real, columns, out, references, formats=formats)
    paths = [fn(*args, **kw) for fn, args, kw in calls]
    return [p for p in paths if p is not None]
