"""Targets and comparisons: a simulated study beside the paper and the released scores.

In: the summary of :func:`memsim.analysis.consistency.analyse` and a targets file
(``calibration/<protocol>-targets.yaml``: each target's path into the summary, value,
tolerance, source, and whether calibration fits it or only reports it). Out: a tidy table of
target against simulated value, with each row's status: ``ok`` (within tolerance), ``off``,
or ``n/a`` (the statistic needs data the run did not have, such as the released scores).

The targets file is the one place a study's published numbers live: the comparison table,
the calibration, the compatibility analysis and the reference marks of the figures all read
them from it (:func:`figure_references`).
"""

from __future__ import annotations

import difflib
import math
import os
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from memsim.analysis.consistency import lookup
from memsim.analysis.distributions import sample_sd
from memsim.errors import UserError
from memsim.io import format_pydantic_error, load_yaml_mapping

__all__ = [
    "Target",
    "Targets",
    "PredictorReference",
    "load_targets",
    "default_targets_path",
    "lookup",
    "compare",
    "figure_references",
    "format_value",
    "OPTIONAL_BLOCKS",
]

#: summary blocks that exist only when the run had their input: ``real`` (the released
#: scores), ``truth`` (the latent truth), ``count_matched`` and ``quantiles`` (calibration);
#: a target there is ``n/a`` without them, anywhere else a missing path is a typo
OPTIONAL_BLOCKS = ("real", "truth", "count_matched", "quantiles")


class Target(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    path: tuple[str, ...] = Field(min_length=1)
    value: float
    abs: float | None = Field(default=None, ge=0)
    rel: float | None = Field(default=None, ge=0)
    kind: Literal["fit", "report"]
    source: str
    at: float | None = Field(
        default=None,
        gt=0,
        description="annotations per video at which the published value was measured "
        "(annotation consistency): drawn as the figures' reference mark",
    )

    @model_validator(mode="after")
    def _one_tolerance(self) -> Target:
        if (self.abs is None) == (self.rel is None):
            raise ValueError("give exactly one of abs or rel")
        return self

    @property
    def tolerance(self) -> float:
        return self.abs if self.abs is not None else self.rel * abs(self.value)


class PredictorReference(BaseModel):
    """A published predictor's Spearman correlation with the scores (short-term, long-term)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    short_term: float = Field(ge=-1, le=1)
    long_term: float = Field(ge=-1, le=1)
    source: str


class Targets(BaseModel):
    """A study's published and released numbers: what a simulation of it is set beside."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    targets: tuple[Target, ...]
    predictors: tuple[PredictorReference, ...] = ()

    def __repr__(self) -> str:  # a line, not every target (a notebook prints it)
        fit = sum(t.kind == "fit" for t in self.targets)
        return (
            f"Targets(name={self.name!r}, targets={len(self.targets)} ({fit} fit), "
            f"predictors={len(self.predictors)})"
        )

    def find(self, path: tuple[str, ...] | list[str], kind: str | None = None) -> Target | None:
        """The first target at ``path`` (of ``kind`` when given), or None."""
        path = tuple(path)
        for t in self.targets:
            if t.path == path and (kind is None or t.kind == kind):
                return t
        return None


def load_targets(path: str | os.PathLike[str]) -> Targets:
    try:
        return Targets.model_validate(load_yaml_mapping(path, "targets file"))
    except ValidationError as exc:
        raise format_pydantic_error(exc, path, Targets) from None


def default_targets_path(protocol_name: str) -> Path | None:
    from memsim.resources import targets_path

    return targets_path(protocol_name)


def check_path(summary: dict, path: tuple[str, ...], where: str) -> None:
    """Raise a one-line :class:`UserError` when ``path`` names no statistic of ``summary``.

    A path into one of :data:`OPTIONAL_BLOCKS` may be absent (its input was not there);
    anywhere else an absent key is a typo, reported with the closest keys at that level.
    """
    node = summary
    for depth, key in enumerate(path):
        if not isinstance(node, dict) or key not in node:
            if path[0] in OPTIONAL_BLOCKS:
                return
            here = ".".join(path[:depth]) or "(top level)"
            keys = list(node) if isinstance(node, dict) else []
            close = difflib.get_close_matches(str(key), [str(k) for k in keys], n=2)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise UserError(f"{where}: path {list(path)}: no {key!r} under {here}{hint}")
        node = node[key]


# Head counts grow with the study's size: at --scale F they are compared with F x the target.
SIZE_PATHS = ("participants_kept", "participants_total")


def at_scale(target, scale: float):
    """``target`` as it reads for a study run at ``scale`` of its size: head counts
    (:data:`SIZE_PATHS`) and their tolerances shrink with it, the rest is as is."""
    if scale == 1.0 or target.path[0] not in SIZE_PATHS:
        return target
    update = {"value": target.value * scale, "name": f"{target.name} (x{scale:g})"}
    if target.abs is not None:  # a relative tolerance follows the value by itself
        update["abs"] = target.abs * scale
    return target.model_copy(update=update)


def compare(summary: dict | list[dict], targets: Targets, scale: float = 1.0) -> pd.DataFrame:
    """One row per target: value, simulated mean (and sd over several summaries), status.

    ``scale``: the study ran at this fraction of its size; head-count targets are scaled to
    match. ``status`` is ``ok``, ``off`` or ``n/a`` (a statistic the runs could not compute: an
    optional block without its input, too few videos); ``within`` is ``status == "ok"``. A target
    whose path names no statistic at all
    is a :class:`UserError` naming it (a typo in the targets file must not read as "off").
    """
    runs = summary if isinstance(summary, list) else [summary]
    rows = []
    for t in targets.targets:
        check_path(runs[0], t.path, f"targets {targets.name!r}, target {t.name!r}")
        t = at_scale(t, scale)
        vals = np.array([lookup(s, t.path) for s in runs], dtype=float)
        ok_vals = vals[np.isfinite(vals)]
        mean = float(ok_vals.mean()) if ok_vals.size else float("nan")
        sd = sample_sd(ok_vals)
        within = bool(np.isfinite(mean) and abs(mean - t.value) <= t.tolerance + 1e-12)
        if within:
            status = "ok"
        elif not np.isfinite(mean):  # not computed for these runs (no input, too few videos)
            status = "n/a"
        else:
            status = "off"
        rows.append(
            {
                "target": t.name,
                "value": t.value,
                "simulated": mean,
                "sd": sd,
                "tolerance": t.tolerance,
                "within": within,
                "status": status,
                "kind": t.kind,
                "source": t.source,
            }
        )
    return pd.DataFrame(rows)


def figure_references(targets: Targets | None) -> dict:
    """The published numbers the run figures mark, from a targets file (empty without one).

    Keys: ``annotation_consistency`` and ``human_consistency`` (step name -> ``(at, value)``
    and value), ``score_correlation`` (the first Spearman between two steps' scores),
    ``video_mean_rt_pearson`` (per-video mean RT between steps).
    """
    out: dict = {"annotation_consistency": {}, "human_consistency": {}}
    if targets is None:
        return out
    for t in targets.targets:
        p = t.path
        if p[0] == "annotation_consistency" and p[-1] == "at_mean_annotations" and t.at:
            out["annotation_consistency"].setdefault(p[1], (t.at, t.value))
        elif p[0] == "human_consistency" and p[-1] == "mean":
            out["human_consistency"].setdefault(p[1], t.value)
        elif p[0] == "score_correlation" and p[2:] == ("all", "spearman"):
            out.setdefault("score_correlation", t.value)
        elif p[0] == "response_times" and p[-1] == "video_mean_rt_pearson":
            out.setdefault("video_mean_rt_pearson", t.value)
    return out


def format_value(x: float | None) -> str:
    """A number as the comparison tables and reports show it (``-`` for none)."""
    if x is None or not math.isfinite(x):
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    if abs(x) < 0.01 and x != 0:
        return f"{x:.5f}"
    return f"{x:.3f}"
