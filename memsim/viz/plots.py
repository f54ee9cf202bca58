"""Figures of a run: the paper's Figs. 3-6 from a simulation, and real-vs-simulated scores.

In: the summary dict of :func:`memsim.analysis.consistency.analyse`, the scores table,
optionally the released scores. Out: PNG files. matplotlib is imported here
only (Agg backend), never at ``import memsim``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from memsim.analysis.consistency import pearson, spearman
from memsim.io import atomic_path

__all__ = ["run_figures"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(plt, nrows: int, ncols: int, figsize: tuple[float, float]):
    """A figure with fixed margins: a layout engine costs a tenth of a second per figure."""
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False)
    w, h = figsize
    fig.subplots_adjust(
        left=0.6 / w, right=1 - 0.2 / w, bottom=0.55 / h, top=1 - 0.65 / h, wspace=0.28, hspace=0.45
    )
    return fig, axes


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return path


def fig_lag(summary: dict, out: Path) -> Path:
    """Fig. 3: hit rate vs retention, per step, with the fitted line."""
    plt = _plt()
    steps = summary["steps"]
    fig, axes = _grid(plt, 1, len(steps), figsize=(5 * len(steps), 3.8))
    for ax, name in zip(axes[0], steps):
        lc = summary["lag_curve"][name]
        bins = lc.get("bins", [])
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
                color="C0",
                capsize=3,
                label="simulated (binned, 95% CI)",
            )
            xs = np.linspace(min(b["lo"] for b in bins), max(b["hi"] for b in bins), 50)
            ax.plot(
                xs,
                lc["intercept"] + lc["slope"] * xs,
                color="C0",
                lw=1.5,
                label=f"linear fit, slope {lc['slope']:.2e}",
            )
        ax.set_xlabel(lc.get("unit", "retention"))
        ax.set_ylabel("correct recognition rate")
        ax.set_title(f"{name}: recognition vs retention")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle("Fig. 3 (simulated): hit rate against the retention interval")
    path = _save(fig, out / "fig3_lag.png")
    plt.close(fig)
    return path


def fig_consistency(summary: dict, out: Path, references: dict | None = None) -> Path:
    """Fig. 4: annotation consistency vs annotations per video, with Spearman–Brown and the
    paper."""
    plt = _plt()
    steps = summary["steps"]
    fig, axes = _grid(plt, 1, len(steps), figsize=(5 * len(steps), 3.8))
    for ax, name in zip(axes[0], steps):
        ac = summary["annotation_consistency"][name]
        curve = pd.DataFrame(ac["curve"])
        if not curve.empty:
            ax.plot(curve["N"], curve["spearman"], "o-", ms=3, color="C0", label="simulated")
            if "sd" in curve and curve["sd"].notna().any():
                ax.fill_between(
                    curve["N"],
                    curve["spearman"] - curve["sd"],
                    curve["spearman"] + curve["sd"],
                    color="C0",
                    alpha=0.2,
                )
        sb = summary.get("spearman_brown", {}).get(name, {}).get("predicted_curve")
        if sb:
            ax.plot(
                sb["N"], sb["spearman"], "--", color="C2", label="Spearman-Brown from human split"
            )
        paper = (references or {}).get("annotation_consistency", {}).get(name)
        if paper:
            ax.plot(
                [paper[0]],
                [paper[1]],
                "s",
                color="C3",
                ms=8,
                label=f"paper: {paper[1]} at {paper[0]:g}",
            )
        hc = summary["human_consistency"][name]["mean"]
        ax.axhline(hc, color="C1", lw=1, ls=":", label=f"human consistency (sim) {hc:.3f}")
        ax.set_xlabel("annotations per video (N)")
        ax.set_ylabel("Spearman between halves")
        ax.set_ylim(-0.05, 1)
        ax.set_title(f"{name}: annotation consistency")
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
    fig.suptitle("Fig. 4 (simulated): annotation consistency vs annotations per video")
    path = _save(fig, out / "fig4_consistency.png")
    plt.close(fig)
    return path


def fig_st_lt(
    scores: pd.DataFrame,
    video_rt: pd.DataFrame | None,
    columns: list[str],
    out: Path,
    references: dict | None = None,
) -> Path | None:
    """Fig. 5: short-term vs long-term scores (and per-video mean RTs when given)."""
    if len(columns) < 2:
        return None
    plt = _plt()
    a, b = columns[:2]
    ok = scores[a].notna() & scores[b].notna()
    ncols = 2 if video_rt is not None else 1
    fig, axes = _grid(plt, 1, ncols, figsize=(5 * ncols, 4))
    ax = axes[0][0]
    ax.plot(scores.loc[ok, a], scores.loc[ok, b], "o", ms=1.5, alpha=0.25, color="C0", mew=0)
    refs = references or {}

    def paper(key: str) -> str:
        return f" (paper {refs[key]:.3f})" if key in refs else ""

    r = spearman(scores.loc[ok, a].to_numpy(), scores.loc[ok, b].to_numpy())
    ax.set_title(f"scores: Spearman {r:.3f}{paper('score_correlation')}", fontsize=9)
    ax.set_xlabel(a)
    ax.set_ylabel(b)
    ax.grid(alpha=0.3)
    if video_rt is not None:
        ax = axes[0][1]
        x, y = video_rt.iloc[:, 0].to_numpy(), video_rt.iloc[:, 1].to_numpy()
        m = np.isfinite(x) & np.isfinite(y)
        ax.plot(x[m], y[m], "o", ms=1.5, alpha=0.25, color="C1", mew=0)
        r = pearson(x[m], y[m])
        ax.set_title(
            f"per-video mean RT: Pearson {r:.3f}{paper('video_mean_rt_pearson')}", fontsize=9
        )
        ax.set_xlabel("short-term mean RT (s)")
        ax.set_ylabel("long-term mean RT (s)")
        ax.grid(alpha=0.3)
    fig.suptitle("Fig. 5 (simulated): short-term vs long-term")
    path = _save(fig, out / "fig5_st_vs_lt.png")
    plt.close(fig)
    return path


def fig_rt(
    scores: pd.DataFrame, video_rt: pd.DataFrame | None, columns: list[str], out: Path
) -> Path | None:
    """Fig. 6: per-video mean RT of correct recognitions against the score."""
    if video_rt is None:
        return None
    plt = _plt()
    fig, axes = _grid(plt, 1, len(columns), figsize=(5 * len(columns), 3.8))

    for j, (ax, col) in enumerate(zip(axes[0], columns)):
        x = scores[col].to_numpy(float)
        y = video_rt.iloc[:, j].to_numpy(float)
        m = np.isfinite(x) & np.isfinite(y)
        ax.plot(x[m], y[m], "o", ms=1.5, alpha=0.25, color=f"C{j}", mew=0)
        if m.sum() > 2:
            k, c0 = np.polyfit(x[m], y[m], 1)
            xs = np.linspace(x[m].min(), x[m].max(), 20)
            ax.plot(xs, c0 + k * xs, color="k", lw=1)
        ax.set_title(f"{col}: r = {pearson(x[m], y[m]):.3f}", fontsize=9)
        ax.set_xlabel("memorability score")
        ax.set_ylabel("mean RT of correct recognitions (s)")
        ax.grid(alpha=0.3)
    fig.suptitle("Fig. 6 (simulated): response time vs memorability")
    path = _save(fig, out / "fig6_rt.png")
    plt.close(fig)
    return path


def fig_real_vs_sim(
    scores: pd.DataFrame, real: pd.DataFrame, columns: list[str], out: Path
) -> Path | None:
    """Score distributions: simulated vs released, with the KS distance."""
    cols = [c for c in columns if c in real.columns]
    if not cols:
        return None
    plt = _plt()
    from memsim.analysis.distributions import at_released_precision, ks_distance

    fig, axes = _grid(plt, 2, len(cols), figsize=(5 * len(cols), 6.4))
    for j, col in enumerate(cols):
        s = np.sort(scores[col].dropna().to_numpy())
        r = np.sort(real[col].dropna().to_numpy())
        s, _ = at_released_precision(s, r)  # as real_score_comparison compares them
        ax = axes[0][j]
        bins = np.linspace(0, 1, 21)  # wide bins: LT scores are fractions of ~13 annotations
        ax.hist(r, bins=bins, density=True, alpha=0.5, color="C3", label=f"released ({len(r):,})")
        ax.hist(s, bins=bins, density=True, alpha=0.5, color="C0", label=f"simulated ({len(s):,})")
        ax.set_title(f"{col}", fontsize=9)
        ax.legend(fontsize=8, loc="upper left")
        ax.grid(alpha=0.3)
        ax = axes[1][j]
        ax.step(r, np.arange(1, r.size + 1) / r.size, where="post", color="C3", label="released")
        ax.step(s, np.arange(1, s.size + 1) / s.size, where="post", color="C0", label="simulated")
        ax.set_title(f"cumulative: KS distance {ks_distance(s, r):.3f}", fontsize=9)
        ax.set_xlabel("score")
        ax.set_xlim(0, 1)
        ax.legend(fontsize=8, loc="upper left")
        ax.grid(alpha=0.3)
    fig.suptitle("Score distributions: simulated vs released")
    path = _save(fig, out / "scores_real_vs_sim.png")
    plt.close(fig)
    return path


def run_figures(
    summary: dict,
    scores: pd.DataFrame,
    video_rt: pd.DataFrame | None,
    real: pd.DataFrame | None,
    columns: list[str],
    out: str | os.PathLike[str],
    references: dict | None = None,
) -> list[Path]:
    """Every figure of a run into ``out``; ``references``: the published numbers to mark
    (:func:`memsim.fit.compare.figure_references`), none when the study has no targets."""
    out = Path(out)
    paths = [
        fig_lag(summary, out),
        fig_consistency(summary, out, references),
        fig_st_lt(scores, video_rt, columns, out, references),
        fig_rt(scores, video_rt, columns, out),
    ]
    if real is not None:
        paths.append(fig_real_vs_sim(scores, real, columns, out))
    return [p for p in paths if p is not None]
