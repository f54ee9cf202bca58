"""Targets and comparisons: a simulated study beside the paper and the released scores.

In: the summary dict of :func:`memsim.analysis.consistency.analyse` and a targets file
(``calibration/<protocol>-targets.yaml``: each target's path into the summary,
value, tolerance, source, and whether calibration fits it or only reports it).
Out: a tidy table of target vs simulated value and whether it is within
tolerance. Also the score-distribution comparison with released scores
(Kolmogorov–Smirnov distance, means and spreads), which needs no simulator.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from memsim.io import format_pydantic_error, load_yaml_mapping

__all__ = [
    "Target",
    "Targets",
    "load_targets",
    "default_targets_path",
    "lookup",
    "compare",
    "real_score_comparison",
]


class Target(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    path: tuple[str, ...] = Field(min_length=1)
    value: float
    abs: float | None = Field(default=None, ge=0)
    rel: float | None = Field(default=None, ge=0)
    kind: Literal["fit", "report"]
    source: str

    @model_validator(mode="after")
    def _one_tolerance(self) -> Target:
        if (self.abs is None) == (self.rel is None):
            raise ValueError("give exactly one of abs or rel")
        return self

    @property
    def tolerance(self) -> float:
        return self.abs if self.abs is not None else self.rel * abs(self.value)


class Targets(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    targets: tuple[Target, ...]


def load_targets(path: str | os.PathLike[str]) -> Targets:
    try:
        return Targets.model_validate(load_yaml_mapping(path, "targets file"))
    except ValidationError as exc:
        raise format_pydantic_error(exc, path) from None


def default_targets_path(protocol_name: str) -> Path | None:
    from memsim.resources import targets_path

    return targets_path(protocol_name)


def lookup(summary: dict, path: tuple[str, ...]) -> float:
    """The number at ``path`` in a nested summary dict, NaN when absent."""
    node = summary
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return float("nan")
        node = node[key]
    try:
        return float(node)
    except (TypeError, ValueError):
        return float("nan")


# Head counts grow with the study's size: at --scale F they are compared with F x the target.
SIZE_PATHS = ("participants_kept", "participants_total")


def _sd(x: np.ndarray) -> float:
    """Sample standard deviation, NaN below two values."""
    return float(x.std(ddof=1)) if x.size > 1 else float("nan")


def compare(summary: dict | list[dict], targets: Targets, scale: float = 1.0) -> pd.DataFrame:
    """One row per target: value, simulated mean (and sd over several summaries), within tolerance.

    ``scale``: the study ran at this fraction of its size; head-count targets are scaled to match.
    """
    runs = summary if isinstance(summary, list) else [summary]
    rows = []
    for t in targets.targets:
        if scale != 1.0 and t.path[0] in SIZE_PATHS:
            t = t.model_copy(update={"value": t.value * scale, "name": f"{t.name} (x{scale:g})"})
        vals = np.array([lookup(s, t.path) for s in runs], dtype=float)
        ok_vals = vals[np.isfinite(vals)]
        mean = float(ok_vals.mean()) if ok_vals.size else float("nan")
        sd = _sd(ok_vals)
        rows.append(
            {
                "target": t.name,
                "value": t.value,
                "simulated": mean,
                "sd": sd,
                "tolerance": t.tolerance,
                "within": bool(np.isfinite(mean) and abs(mean - t.value) <= t.tolerance + 1e-12),
                "kind": t.kind,
                "source": t.source,
            }
        )
    return pd.DataFrame(rows)


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov–Smirnov statistic: the largest gap between the two ECDFs."""
    a = np.sort(np.asarray(a, float)[np.isfinite(a)])
    b = np.sort(np.asarray(b, float)[np.isfinite(b)])
    if a.size == 0 or b.size == 0:
        return float("nan")
    x = np.concatenate([a, b])  # the gap is largest at a data point
    fa = np.searchsorted(a, x, side="right") / a.size
    fb = np.searchsorted(b, x, side="right") / b.size
    return float(np.max(np.abs(fa - fb)))


def decimals(values: np.ndarray, most: int = 9) -> int | None:
    """The fewest decimals that write every finite value exactly (None: more than ``most``)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    for d in range(most + 1):
        if np.all(np.abs(v - np.round(v, d)) < 1e-12):
            return d
    return None


def at_released_precision(
    simulated: np.ndarray, released: np.ndarray
) -> tuple[np.ndarray, int | None]:
    """``simulated`` rounded to the decimals the ``released`` values are written with, and
    those decimals (None, and ``simulated`` as it is, when they are more than 9)."""
    d = decimals(released)
    s = np.asarray(simulated, float)
    return (np.round(s, d) if d is not None else s), d


def real_score_comparison(simulated: pd.DataFrame, real: pd.DataFrame) -> dict:
    """Per score column present in both: KS distance, means, SDs, annotation counts.

    Simulated scores are first rounded to the released precision (VideoMem releases 3
    decimals): else a released 0.818 (9/11) and a simulated 0.81818 fall on two sides of
    the ECDF step at 0.818 and the KS distance measures the rounding, not the scores.
    """
    from memsim.analysis.scoring import count_column

    out = {}
    for col in simulated.columns:
        if col == "video" or col.startswith("nb_") or col not in real.columns:
            continue
        s = simulated[col].to_numpy(float)
        r = real[col].to_numpy(float)
        s, r = s[np.isfinite(s)], r[np.isfinite(r)]
        s, d = at_released_precision(s, r)
        # a candidate far off (calibration) may score no video of a step: NaN, without warnings
        sd_s, sd_r = _sd(s), _sd(r)
        out[col] = {
            "ks": ks_distance(s, r),
            "released_decimals": d,
            "mean_simulated": float(s.mean()) if s.size else float("nan"),
            "mean_real": float(r.mean()) if r.size else float("nan"),
            "sd_simulated": sd_s,
            "sd_real": sd_r,
            "sd_difference": sd_s - sd_r,
            "videos_simulated": int(s.size),
            "videos_real": int(r.size),
        }
        cc = count_column(col)
        if cc in simulated.columns and cc in real.columns:  # annotation counts of the scored videos
            n_s = simulated[cc].to_numpy(float)
            n_r = real[cc].to_numpy(float)
            out[col]["counts_ks"] = ks_distance(n_s[n_s > 0], n_r[n_r > 0])
    cols = [c for c in out]
    if len(cols) >= 2:
        from memsim.analysis.consistency import pearson, spearman

        a, b = real[cols[0]].to_numpy(float), real[cols[1]].to_numpy(float)
        ok = np.isfinite(a) & np.isfinite(b)
        out["real_correlation"] = {
            "spearman": spearman(a[ok], b[ok]),
            "pearson": pearson(a[ok], b[ok]),
        }
    return out


def format_value(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) < 0.01 and x != 0:
        return f"{x:.5f}"
    return f"{x:.3f}"
