"""Credible intervals over a sweep's replicates, and paired differences between its cells.

Replicate *r* of every cell shares its seed (``common_random_numbers``) or its posterior
draw (``params: posterior DIR``), so a cell's difference to another within a replicate is
paired; summarised over replicates it is a median, a central interval and the share above 0.
Used by :mod:`memsim.study.report` (``report/paired.csv``) and :mod:`memsim.study.infer`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from memsim.errors import UserError

__all__ = ["credible", "paired_differences"]


def credible(values, level: float = 0.9) -> dict:
    """Median and central ``level`` interval of ``values`` (NaN ignored; +inf, "more than
    measured", kept), and how many."""
    v = np.asarray(values, float)
    v = v[~np.isnan(v)]
    lo, hi = (1 - level) / 2, (1 + level) / 2
    if not v.size:
        return {"median": math.nan, "lo": math.nan, "hi": math.nan, "n": 0}
    # +inf through a huge stand-in: interpolating towards inf itself gives NaN
    q = np.quantile(np.where(np.isinf(v), 1e300, v), [lo, 0.5, hi])
    q = np.where(q >= 1e299, math.inf, q)
    return {"median": float(q[1]), "lo": float(q[0]), "hi": float(q[2]), "n": int(v.size)}


def paired_differences(
    results: pd.DataFrame,
    baseline: dict[str, object],
    statistics: list[str] | tuple[str, ...],
    *,
    level: float = 0.9,
) -> pd.DataFrame:
    """Per cell of a sweep, each statistic's difference to the ``baseline`` cell of the same
    replicate, summarised over replicates.

    With ``common_random_numbers`` replicate *r* of every cell runs with the same seed, and with
    ``params: posterior DIR`` with posterior draw *r*, so the difference is paired: what the
    cell's setting changes for one campaign (one crowd), and its spread over replicates is the
    posterior's plus what the setting does to one campaign's sampling noise. Without either,
    the pairs are independent runs, and the interval holds both runs' noise.

    ``baseline`` names the baseline cell by its axis values, e.g. ``{"max_fa_step1": 0.3,
    "min_vigilance": 0.7}``; the cells are the distinct values of its keys. One row per cell:
    the axis values, ``replicates`` (how many pairs), then per statistic ``<stat>_median``,
    ``_lo``, ``_hi`` (the central ``level`` interval) and ``_above`` (the share of replicates
    with a difference above 0).
    """
    axes = list(baseline)
    missing = [c for c in [*axes, "replicate", *statistics] if c not in results.columns]
    if missing:
        raise UserError(f"paired_differences: no column {', '.join(map(repr, missing))}")
    at = np.ones(len(results), bool)
    for axis, value in baseline.items():
        at &= results[axis].to_numpy() == value
    ref = results[at].set_index("replicate")
    if ref.empty:
        raise UserError(f"paired_differences: no cell has {baseline}")
    if ref.index.has_duplicates:
        raise UserError(f"paired_differences: more than one cell has {baseline}")
    rows = []
    for key, g in results.groupby(axes, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        g = g[g.replicate.isin(ref.index)]
        row: dict[str, object] = dict(zip(axes, key))
        row["replicates"] = len(g)
        for stat in statistics:
            d = g[stat].to_numpy(float) - ref.loc[g.replicate, stat].to_numpy(float)
            c = credible(d, level)
            for k in ("median", "lo", "hi"):
                row[f"{stat}_{k}"] = c[k]
            row[f"{stat}_above"] = float(np.mean(d > 0)) if d.size else math.nan
        rows.append(row)
    return pd.DataFrame(rows)
