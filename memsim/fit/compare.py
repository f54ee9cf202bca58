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

from memsim.analysis.distributions import sample_sd
from memsim.io import format_pydantic_error, load_yaml_mapping

__all__ = [
    "Target",
    "Targets",
    "load_targets",
    "default_targets_path",
    "lookup",
    "compare",
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
        sd = sample_sd(ok_vals)
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
