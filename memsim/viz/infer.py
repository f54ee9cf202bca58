"""Figures of a Bayesian calibration (``memsim infer``): marginals, pairs, SBC ranks, predictive.

In: an inference result (:class:`memsim.study.infer.Inference`, read by attribute), its prior,
the posterior draws in unit coordinates and the point fits. Out: PNG files in
``<out>/figures/``, drawn in the project's style (:mod:`memsim.viz.style`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.ticker import LogLocator, NullFormatter

from memsim.viz import style

__all__ = ["draw_figures", "fig_marginals", "fig_pairs", "fig_sbc", "fig_predictive"]

_POINT_COLOURS = (style.ROLE["reference"], style.ROLE["secondary"])


def _short(path: str) -> str:
    return path.replace("participants.", "").replace("videos.", "video ").replace("forgetting.", "")


def fig_marginals(prior, u: np.ndarray, points: dict, path: Path) -> Path:
    """One panel per parameter: the posterior's histogram over its prior range, the point fits."""
    d = prior.dim
    ncols = 4
    nrows = math.ceil(d / ncols)
    values = prior.to_values(u)
    with style.figure(nrows, ncols, panel=(2.6, 1.9), title="posterior marginals") as (fig, axes):
        for j, p in enumerate(prior.parameters):
            ax = axes.flat[j]
            edges = np.linspace(0, 1, 31)
            if p.log:
                edges = np.exp(np.log(p.lo) + edges * (math.log(p.hi) - math.log(p.lo)))
                ax.set_xscale("log")
                # labels at decades (and threes over a range under two decades), none at the
                # minor ticks: matplotlib labels every minor tick of a short range, overlapping
                short = math.log10(p.hi / p.lo) < 2
                ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 3.0) if short else (1.0,)))
                ax.xaxis.set_minor_formatter(NullFormatter())
            else:
                edges = p.lo + edges * (p.hi - p.lo)
            ax.hist(values[:, j], bins=edges, color=style.ROLE["simulated"], alpha=0.75)
            for (name, v), c in zip(points.items(), _POINT_COLOURS):
                ax.axvline(v[j], color=c, lw=1.2, ls="--" if "scratch" in name else "-", label=name)
            ax.set_xlim(edges[0], edges[-1])
            ax.set_yticks([])
            ax.set_title(_short(p.path), fontsize=8)
        for ax in axes.flat[d:]:
            ax.set_visible(False)
        if points:
            style.legend_below(fig, axes.flat[:1])
        return style.save(fig, path)


def fig_pairs(prior, u: np.ndarray, points: dict, names, path: Path) -> Path:
    """Pairwise scatter of posterior draws for ``names`` (unit coordinates: the prior box)."""
    idx = [prior.paths.index(n) for n in names if n in prior.paths]
    k = len(idx)
    rng = np.random.default_rng(0)
    show = u[rng.permutation(len(u))[:2000]]
    with style.figure(k, k, panel=(1.7, 1.7), title="posterior pairs (prior range = box)") as (
        fig,
        axes,
    ):
        for a, i in enumerate(idx):
            for b, j in enumerate(idx):
                ax = axes[a, b]
                if a == b:
                    ax.hist(show[:, i], bins=25, range=(0, 1), color=style.ROLE["simulated"])
                    ax.set_yticks([])
                elif a > b:
                    ax.scatter(show[:, j], show[:, i], s=1.5, alpha=0.3, c=style.ROLE["simulated"])
                    for (name, v), c in zip(points.items(), _POINT_COLOURS):
                        pu = prior.to_unit(v[None])[0]
                        ax.plot(pu[j], pu[i], marker="*", ms=8, color=c, ls="", label=name)
                    ax.set_ylim(0, 1)
                else:
                    ax.set_visible(False)
                    continue
                ax.set_xlim(0, 1)
                if a == k - 1:
                    ax.set_xlabel(_short(prior.paths[j]), fontsize=7)
                if b == 0 and a > 0:
                    ax.set_ylabel(_short(prior.paths[i]), fontsize=7)
                ax.tick_params(labelsize=6)
        if points and k > 1:
            style.legend_below(fig, [axes[1, 0]])
        return style.save(fig, path)


def fig_sbc(
    prior,
    ranks: np.ndarray,
    draws: int,
    table,
    path: Path,
    bins: int = 10,
    title: str = "SBC rank histograms",
) -> Path:
    """SBC rank histograms per parameter, with the uniform expectation's 99 % band."""
    from scipy.stats import binom

    d = prior.dim
    ncols = 4
    nrows = math.ceil(d / ncols)
    n = len(ranks)
    lo, hi = binom.ppf([0.005, 0.995], n, 1 / bins)
    with style.figure(nrows, ncols, panel=(2.6, 1.9), title=title) as (fig, axes):
        for j, p in enumerate(prior.parameters):
            ax = axes.flat[j]
            ax.axhspan(lo, hi, color=style.ROLE["neutral"], alpha=0.25, lw=0)
            ax.hist(ranks[:, j], bins=bins, range=(0, draws + 1), color=style.ROLE["simulated"])
            pval = float(table["p"].iloc[j])
            ax.set_title(f"{_short(p.path)} (p {pval:.2f})", fontsize=7.5)
            ax.set_yticks([])
        for ax in axes.flat[d:]:
            ax.set_visible(False)
        return style.save(fig, path)


def fig_predictive(pred, path: Path) -> Path:
    """Each fitted target: the predictive 90 % interval and median, in tolerances from the value."""
    rows = pred[pred["kind"] == "fit"].reset_index(drop=True)
    k = len(rows)
    with style.figure(1, 1, panel=(6.5, 0.22 * k + 1.2)) as (fig, axes):
        ax = axes[0, 0]
        y = np.arange(k)[::-1]
        tol = rows["tolerance"].to_numpy(float)
        lo = (rows["q05"] - rows["value"]) / tol
        hi = (rows["q95"] - rows["value"]) / tol
        med = (rows["median"] - rows["value"]) / tol
        ax.hlines(y, lo, hi, color=style.ROLE["simulated"], lw=3, label="90 % predictive interval")
        ax.plot(med, y, "o", color=style.ROLE["reference"], ms=3, label="median")
        ax.axvline(0, color=style.ROLE["released"], lw=1, label="paper / released value")
        ax.axvspan(-1, 1, color=style.ROLE["neutral"], alpha=0.15, lw=0)
        ax.set_yticks(y)
        ax.set_yticklabels(rows["target"], fontsize=6.5)
        ax.set_xlabel("(simulated - value) / tolerance")
        style.title(ax, "posterior predictive of the fitted targets")
        style.legend_below(fig, [ax])
        return style.save(fig, path)


def draw_figures(result, prior, u, points, sbc=None, region=None) -> list[Path]:
    """Every figure of an inference into ``result.out / "figures"``; returns their paths.

    ``sbc`` and ``region``: results of :func:`memsim.fit.infer.sbc` on the prior's held-out
    draws (``sbc.png``) and on those from the second round's region (``sbc-region.png``).
    """
    from memsim.io import make_dirs

    folder = make_dirs(Path(result.out) / "figures")
    names = (
        "videos.short_term_sd",
        "participants.ability_sd",
        "participants.lapse_mean",
        "videos.memorability.sd",
        "forgetting.rate_memorability_corr",
        "participants.rt.log_sd",
    )  # where today's two point fits differ most
    out = [
        fig_marginals(prior, u, points, folder / "marginals.png"),
        fig_pairs(prior, u, points, names, folder / "pairs.png"),
    ]
    for res, name, what in (
        (sbc, "sbc.png", "held-out prior draws"),
        (region, "sbc-region.png", "held-out draws from the second round's region"),
    ):
        if res is not None:
            title = f"SBC rank histograms, {len(res['ranks'])} {what}"
            out.append(
                fig_sbc(prior, res["ranks"], res["draws"], res["table"], folder / name, title=title)
            )
    if result.predictive is not None:
        out.append(fig_predictive(result.predictive, folder / "predictive.png"))
    return out
