"""Figures of a sweep report: statistics against a swept axis, and cost frontiers.

In: the per-cell summary of :func:`memsim.study.report.summarise_results` (one row per cell:
the swept columns, then ``<statistic>_mean`` / ``_sd``) and the types of the swept columns.
Out: PNG files (plus SVG / PDF on request), drawn in the project's style
(:mod:`memsim.viz.style`): human names for statistics, swept values as a reader would say
them (``least annotated, pool 1000``), one legend under the panels.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from memsim.viz import style
from memsim.viz.style import ROLE, label, value_label

__all__ = ["axis_figure", "frontier_figure", "MAX_LINES"]

MAX_LINES = 8  # more lines than this in one panel are unreadable
COST = "participant_minutes"


def _numeric(columns: dict, column: str) -> bool:
    return columns.get(column, "float64") in ("int64", "float64")


def _x_values(summary: pd.DataFrame, columns: dict, x: str):
    """Positions on x and, for a categorical axis, its tick labels (in grid order)."""
    if x in columns:
        if _numeric(columns, x):
            return summary[x].to_numpy(dtype=float), None
        cats = list(dict.fromkeys(summary[x].astype(str)))
        return np.array([cats.index(v) for v in summary[x].astype(str)], dtype=float), cats
    return summary[f"{x}_mean"].to_numpy(dtype=float), None


def cell_label(row, axes: list[str], columns: dict) -> str:
    """A cell named by its swept values: ``budget 6000, least annotated, pool 200``."""
    parts = []
    for a in axes:
        v = row[a]
        shown = value_label(v)
        parts.append(f"{label(a)} {shown}" if _numeric(columns, a) else shown)
    return ", ".join(parts) or "base"


def _common_head(names: list[str]) -> str:
    """The words before a ``", "`` that every name shares (``"least annotated, "``), or ""."""
    if len(names) < 2:
        return ""
    head = os.path.commonprefix(names)
    cut = head.rfind(", ")
    return head[: cut + 2] if cut > 0 and all(len(n) > cut + 2 for n in names) else ""


_PANEL = (3.6, 2.9)  # inches: one panel of an axis figure
_CHAR_IN = 0.6 * 8 / 72  # inches per character of an 8-point tick label


def _category_ticks(cats: list[str]) -> tuple[list[str], str, bool]:
    """Tick labels of a categorical axis, the head they share (shown once, in the axis
    label) and whether they must stand upright to fit."""
    shown = [value_label(c) for c in cats]
    common = _common_head(shown)
    if common:
        shown = [s[len(common) :] for s in shown]
    fits = len(shown) <= 5 and max(len(s) for s in shown) * _CHAR_IN <= max(
        (_PANEL[0] - 0.6) / len(shown), 12 * _CHAR_IN
    )
    return shown, common, not fits


def _panel(ax, summary: pd.DataFrame, columns: dict, x: str, y: str, by: list[str]) -> int:
    xs, cats = _x_values(summary, columns, x)
    data = summary.assign(_x=xs)
    groups = [("", data)] if not by else list(data.groupby(by, sort=False))
    for key, g in groups[:MAX_LINES]:
        g = g.sort_values("_x")
        mean = g[f"{y}_mean"].to_numpy()
        sd = g[f"{y}_sd"].to_numpy()
        keys = key if isinstance(key, tuple) else (key,)
        if len(by) == 1:  # the legend's title names the column
            name = value_label(keys[0])
        else:
            name = (
                ", ".join(
                    f"{label(b)} {value_label(k)}" if _numeric(columns, b) else value_label(k)
                    for b, k in zip(by, keys)
                )
                or None
            )
        if cats is None:
            (line,) = ax.plot(g["_x"], mean, marker="o", ms=3, label=name)
            ax.fill_between(g["_x"], mean - sd, mean + sd, color=line.get_color(), alpha=0.2, lw=0)
        else:
            ax.errorbar(g["_x"], mean, yerr=sd, marker="o", ms=3, label=name)
    xlabel = label(x) if x in columns else f"{label(x)} (mean)"
    if cats is not None:
        shown, common, upright = _category_ticks(cats)
        if common:  # "least annotated, pool 100", "..., pool 200": the shared part goes below
            xlabel = f"{xlabel}: {common.rstrip(', ')}"
        if upright:  # too many or too long to stand side by side: bottom to top
            ax.set_xticks(range(len(cats)), shown, rotation=90)
        else:
            ax.set_xticks(
                range(len(cats)), [style.wrap(s, _PANEL[0] / len(shown), 8) for s in shown]
            )
    ax.set_xlabel(xlabel)
    style.title(ax, label(y))  # statistic names are long: a title wraps better than a y label
    return len(groups)


def axis_figure(
    path: Path,
    summary: pd.DataFrame,
    columns: dict,
    x: str,
    ys: list[str],
    by: list[str],
    title: str,
    *,
    formats=None,
) -> Path:
    """Every statistic in ``ys`` against ``x``, a line per combination of the ``by`` columns
    (mean with a ±1 SD band over replicates). ``columns``: swept column -> its type."""
    n = len(ys)
    ncols = min(n, 3)
    nrows = -(-n // ncols)
    height = _PANEL[1]
    if x in columns and not _numeric(columns, x):
        shown, _, upright = _category_ticks(list(dict.fromkeys(summary[x].astype(str))))
        if upright:  # room under each panel for the upright names
            height += max(len(s) for s in shown) * _CHAR_IN
    with style.figure(nrows, ncols, panel=(_PANEL[0], height), title=title) as (fig, axes):
        n_groups = 1
        for ax, y in zip(axes.flat, ys):
            n_groups = _panel(ax, summary, columns, x, y, by)
        for ax in list(axes.flat)[n:]:
            ax.set_visible(False)
        if n_groups > 1:
            more = f" (first {MAX_LINES} of {n_groups})" if n_groups > MAX_LINES else ""
            by_names = ", ".join(label(b) for b in by)
            style.legend_below(fig, [axes.flat[0]], title=f"{by_names}{more}")
        return style.save(fig, path, formats)


def frontier_figure(
    path: Path,
    summary: pd.DataFrame,
    front: pd.DataFrame,
    stat: str,
    axes: list[str],
    columns: dict,
    title: str,
    *,
    formats=None,
) -> Path:
    """Crowd time against ``stat``: every cell (±1 SD), the frontier joined and each of its
    cells named by its swept values."""
    with style.figure(1, 1, panel=(6.4, 4.4), title=title) as (fig, ax_grid):
        ax = ax_grid[0][0]
        hours = summary[f"{COST}_mean"] / 60.0
        ax.errorbar(
            hours,
            summary[f"{stat}_mean"],
            yerr=summary[f"{stat}_sd"],
            fmt="o",
            ms=3,
            alpha=0.6,
            color=ROLE["neutral"],
            label="cell (±1 SD over replicates)",
        )
        ax.plot(
            front[f"{COST}_mean"] / 60.0,
            front[f"{stat}_mean"],
            "-o",
            ms=4,
            color=ROLE["released"],
            label="frontier: no cheaper cell does better",
        )
        notes = []
        for _, row in front.iterrows():
            notes.append(
                ax.annotate(
                    style.wrap(cell_label(row, axes, columns), 1.8, 6.5),
                    (row[f"{COST}_mean"] / 60.0, row[f"{stat}_mean"]),
                    fontsize=6.5,
                    xytext=(4, -3),
                    textcoords="offset points",
                    va="top",
                )
            )
        ax.set_xlabel("crowd time (participant-hours, nominal)")
        ax.set_ylabel(style.wrap(label(stat), 3.6, 9))
        # room on the right for the last point's name
        lo, hi = ax.get_xlim()
        ax.set_xlim(lo, hi + 0.25 * (hi - lo))
        style.legend_below(fig)
        style.declutter(fig, notes)
        return style.save(fig, path, formats)
