"""Tables and figures from a finished sweep.

In: a folder written by :func:`memsim.study.sweep.run_sweep` (``plan.json``,
``results.parquet``). Out: ``report/`` inside it:

- ``summary.csv``: one row per cell, its coordinates and, for each statistic
  and the cost, mean, sd, 5% and 95% quantiles over replicates and n;
- ``paired.csv`` (a study with a ``baseline`` cell): per cell, each statistic's and the
  cost's difference to the baseline cell within each replicate, as a median, 90 % interval
  and the share of replicates above 0 (:func:`paired_differences`);
- ``frontier-<statistic>.csv``: for each consistency statistic and each
  agreement with the truth, the cells no cheaper cell beats (Pareto frontier of
  participant-minutes against that statistic);
- ``axis-<column>.png``: every statistic against one swept axis, one line per
  combination of the other axes, mean with a ±1 sd band over replicates;
- ``frontier-<statistic>.png``: cost (participant-hours) against the statistic,
  every cell with ±1 sd bars, the frontier joined and its cells named by their values;
- ``figure-<n>.png``: the study's own ``figures`` (any column on x, including
  a measured statistic such as annotations per video).

The figures are drawn by :mod:`memsim.viz.sweep` (matplotlib imported only then).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from memsim.errors import UserError
from memsim.io import atomic_path, check_output, make_dirs
from memsim.study.intervals import credible, paired_differences
from memsim.study.sweep import COST_COLUMN, RESULTS_FILE, _column_value, load_plan
from memsim.viz.style import label

__all__ = ["report", "summarise_results", "frontier", "credible", "paired_differences"]

_QUANTILES = (0.05, 0.95)


def _value_columns(plan) -> list[str]:
    return list(plan.study["statistics"]) + [COST_COLUMN]


def summarise_results(results: pd.DataFrame, plan) -> pd.DataFrame:
    """Per-cell mean, sd, quantiles and n of every statistic and of the cost."""
    axes = list(plan.columns)
    rows = []
    for cell, g in results.groupby("cell", sort=True):
        row = {"cell": int(cell), **{a: g[a].iloc[0] for a in axes}, "n": len(g)}
        for col in [*_value_columns(plan), "participants"]:
            v = g[col].to_numpy(dtype=float)
            row[f"{col}_mean"] = float(np.mean(v))
            row[f"{col}_sd"] = float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
            row[f"{col}_q05"], row[f"{col}_q95"] = (float(q) for q in np.quantile(v, _QUANTILES))
        rows.append(row)
    return pd.DataFrame(rows)


def frontier(summary: pd.DataFrame, statistic: str) -> pd.DataFrame:
    """Cells that no cheaper (or equally cheap) cell matches on ``statistic`` (higher is better)."""
    order = summary.sort_values(
        [f"{COST_COLUMN}_mean", f"{statistic}_mean"], ascending=[True, False]
    )
    best = -np.inf
    keep = []
    for idx, value in zip(order.index, order[f"{statistic}_mean"]):
        if value > best:
            keep.append(idx)
            best = value
    return order.loc[keep]


_NOT_QUALITY = {
    "sd",
    "videos",
    "participants_per_half",
    "mean_annotations_per_half",
    "mean_annotations",
    "annotations",
}


def _is_quality(name: str) -> bool:
    """A statistic worth a cost frontier: a consistency, or the agreement of scores with the
    truth."""
    last = name.rsplit(".", 1)[-1]
    if last in _NOT_QUALITY:
        return False
    return "consistency" in name or (name.startswith("truth.") and last in ("spearman", "pearson"))


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")


@dataclass(frozen=True)
class SweepReport:
    """The report of a finished sweep (:func:`report`).

    Attributes
    ----------
    summary : DataFrame
        One row per cell: the cell's coordinates, then ``<statistic>_mean`` and
        ``<statistic>_sd`` over replicates (also ``report/summary.csv``).
    frontiers : dict
        Per quality statistic (a consistency, the agreement with the truth): the cells on
        the cost frontier (cheapest for their quality; also ``report/frontier-*.csv``).
    study : dict
        The study as planned (name, replicates, statistics, ...).
    paired : DataFrame or None
        With a ``baseline`` in the study: :func:`paired_differences` of every statistic and the
        cost against it (also ``report/paired.csv``); else None.
    axes : list of str
        The columns varied.
    statistics : list of str
        The statistic columns summarised.
    written : list of Path
        Every file written under ``report/``.
    """

    summary: pd.DataFrame
    frontiers: dict
    study: dict
    axes: list
    statistics: list
    written: list
    paired: pd.DataFrame | None = None


def report(out: str | os.PathLike[str], *, figures: bool = True, formats=None) -> SweepReport:
    """Write the tables (and figures) of the sweep in ``out`` into ``out/report/``.

    ``formats``: figure formats besides PNG (``"svg"``, ``"pdf"``, or both).
    """
    out = Path(out)
    plan = load_plan(out)
    res_path = out / RESULTS_FILE
    if not res_path.exists():
        raise UserError(
            "no results.parquet: the sweep has not finished (rerun `memsim sweep` to resume)",
            path=out,
        )
    try:
        results = pd.read_parquet(res_path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        why = " ".join(str(exc).split())[:120]
        raise UserError(
            f"not readable as Parquet ({why}); rerun `memsim sweep` into this folder to gather "
            "the shards again",
            path=res_path,
        ) from None
    missing = [c for c in ("cell", "replicate") if c not in results.columns]
    if missing:
        raise UserError(
            f"not a sweep's results (no {missing[0]!r} column); rerun `memsim sweep` into this "
            "folder to gather the shards again",
            path=res_path,
        )
    summary = summarise_results(results, plan)
    rdir = out / "report"
    check_output(rdir, "dir")  # not a link that would send the report elsewhere
    make_dirs(rdir)  # recorded: removed again if the command fails
    written = []
    _write_csv(summary, rdir / "summary.csv")
    written.append(rdir / "summary.csv")

    stats = list(plan.study["statistics"])
    consistency = [s for s in stats if _is_quality(s)] or stats
    fronts = {}
    for s in consistency:
        fronts[s] = frontier(summary, s)
        p = rdir / f"frontier-{_slug(s)}.csv"
        _write_csv(fronts[s], p)
        written.append(p)
    paired = None
    if plan.study.get("baseline") is not None:
        named = plan.study["baseline"]
        base = {c: _column_value(named[c], kind) for c, kind in plan.columns.items()}
        paired = paired_differences(results, base, _value_columns(plan))
        _write_csv(paired, rdir / "paired.csv")
        written.append(rdir / "paired.csv")
    result = SweepReport(
        summary=summary,
        frontiers=fronts,
        study=dict(plan.study),
        axes=list(plan.columns),
        statistics=_value_columns(plan),
        written=written,
        paired=paired,
    )
    if not figures:
        return result

    from memsim.viz.sweep import axis_figure, frontier_figure

    axes = list(plan.columns)
    columns = dict(plan.columns)
    name = plan.study["name"]
    for a in axes:
        others = [b for b in axes if b != a]
        written.append(
            axis_figure(
                rdir / f"axis-{_slug(a)}.png",
                summary,
                columns,
                a,
                stats,
                others,
                f"{name}: statistics vs {label(a)}",
                formats=formats,
            )
        )
    for s in consistency:
        written.append(
            frontier_figure(
                rdir / f"frontier-{_slug(s)}.png",
                summary,
                fronts[s],
                s,
                axes,
                columns,
                f"{name}: crowd time vs {label(s)}",
                formats=formats,
            )
        )
    known = set(axes) | set(_value_columns(plan)) | {"participants"}
    for i, f in enumerate(plan.study.get("figures") or [], start=1):
        for col in [f["x"], *f["y"], *([f["by"]] if f.get("by") else [])]:
            if col not in known:
                raise UserError(
                    f"figures.{i - 1}: no column {col!r} (have: {', '.join(sorted(known))})",
                    path=out / "study.yaml",
                )
        by = [f["by"]] if f.get("by") else []
        title = f.get("title") or f"{name}: {', '.join(map(label, f['y']))} vs {label(f['x'])}"
        written.append(
            axis_figure(
                rdir / f"figure-{i}.png",
                summary,
                columns,
                f["x"],
                list(f["y"]),
                by,
                title,
                formats=formats,
            )
        )
    return result
