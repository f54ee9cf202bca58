"""Participant filters: who a step keeps, and why the others are dropped.

In: a trial table (:mod:`memsim.design.trials`) and a protocol, or a live campaign's tally of
a session's slots. Out: per participant and step, the counts and rates the filters judge
(:func:`participant_stats`), and ``kept`` / ``reason`` (:func:`apply_filters`). The filters
are a registry (:data:`FILTERS`), checked in order; the first one a participant fails is her
reason. The simulator judges live sessions with the same functions (:func:`stats_from_tally`,
:func:`passes`), so a campaign that balances kept annotations drops exactly whom scoring drops.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
from numba import get_num_threads, njit, prange

from memsim import _jitcache  # noqa: F401  (drops numba caches older than the sources)
from memsim.design.protocol import Protocol
from memsim.design.trials import ROLES, _as_role

__all__ = [
    "FILTERS",
    "first_failed",
    "passes",
    "slot_kinds",
    "stats_from_tally",
    "participant_stats",
    "apply_filters",
    "dense_codes",
    "role_codes",
    "column",
]

_TARGET, _FILLER, _VIGILANCE = (ROLES.index(r) for r in ("target", "filler", "vigilance"))


def _rate(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), np.nan)


#: filter name -> f(per-participant statistics, Filters) -> bool mask of who fails; the
#: statistics are a mapping of column name -> array (a stats frame's columns, or stats_from_tally)
FILTERS: dict[str, Callable[[Mapping[str, np.ndarray], object], np.ndarray]] = {
    "incomplete": lambda st, f: np.asarray(st["completed_fraction"]) < f.min_completed_fraction,
    "vigilance": lambda st, f: (
        np.zeros(len(st["vigilance_hit_rate"]), bool)
        if f.min_vigilance_hit_rate is None
        else np.asarray(st["vigilance_hit_rate"]) < f.min_vigilance_hit_rate
    ),
    "hit_rate": lambda st, f: (
        np.zeros(len(st["hit_rate"]), bool)
        if f.min_hit_rate is None
        else np.asarray(st["hit_rate"]) < f.min_hit_rate
    ),
    "false_alarms": lambda st, f: (
        np.zeros(len(st["false_alarm_rate"]), bool)
        if f.max_false_alarm_rate is None
        else np.asarray(st["false_alarm_rate"]) > f.max_false_alarm_rate
    ),
    "false_alarms_not_below_hits": lambda st, f: (
        np.asarray(st["false_alarm_rate"]) >= np.asarray(st["hit_rate"])
        if f.false_alarms_below_hits
        else np.zeros(len(st["hit_rate"]), bool)
    ),
}


def first_failed(stats: Mapping[str, np.ndarray], filters) -> np.ndarray:
    """Per participant, the name of the first filter of :data:`FILTERS` she fails ('' if none)."""
    n = len(stats["completed_fraction"])
    reason = np.full(n, "", dtype=object)
    undecided = np.ones(n, bool)
    for name, fails in FILTERS.items():
        bad = fails(stats, filters) & undecided
        reason[bad] = name
        undecided &= ~bad
    return reason


def passes(stats: Mapping[str, np.ndarray], filters) -> np.ndarray:
    """Per participant, whether she fails none of :data:`FILTERS`."""
    return first_failed(stats, filters) == ""


def _with_rates(cols: dict, length: np.ndarray) -> dict:
    """Add the rates the filters judge to per-participant counts (NaN without a denominator)."""
    cols["completed_fraction"] = cols["presentations"] / length
    cols["vigilance_hit_rate"] = _rate(cols["vigilance_hits"], cols["vigilance_tests"])
    cols["hit_rate"] = _rate(cols["hits"], cols["target_tests"])
    cols["false_alarm_rate"] = _rate(cols["false_alarms"], cols["first_showings"])
    return cols


def _count_columns(tab: np.ndarray) -> dict:
    """Counts from a [participant, kind (first showing, vigilance, target, other repeat),
    response] table."""
    return {
        "presentations": tab.sum(axis=(1, 2)),
        "vigilance_tests": tab[:, 1].sum(axis=1),
        "vigilance_hits": tab[:, 1, 1],
        "target_tests": tab[:, 2].sum(axis=1),
        "hits": tab[:, 2, 1],
        "first_showings": tab[:, 0].sum(axis=1),
        "false_alarms": tab[:, 0, 1],
    }


def slot_kinds(role: np.ndarray, repeat: np.ndarray) -> np.ndarray:
    """What a slot is to the filters: 0 a first showing, 1 a vigilance test, 2 a target test,
    3 another repeat (role codes in :data:`memsim.design.trials.ROLES` order)."""
    return np.where(
        ~repeat, 0, np.where(role == _VIGILANCE, 1, np.where(role == _TARGET, 2, 3))
    ).astype(np.int64)


def stats_from_tally(tally: np.ndarray, length) -> dict[str, np.ndarray]:
    """The statistics of :func:`participant_stats` from a [participant, slot kind
    (:func:`slot_kinds`), response] tally of played slots: what a live campaign judges a
    session by when it ends (``length``: the step's length)."""
    return _with_rates(_count_columns(tally), np.float64(length))


def column(trials, name: str) -> np.ndarray:
    """A trial-table column as a numpy array, from a DataFrame or a mapping of arrays."""
    col = trials[name]
    return col if isinstance(col, np.ndarray) else col.to_numpy()


def role_codes(col) -> np.ndarray:
    """Role codes in :data:`ROLES` order, whatever the categorical's own order (-1: unknown);
    an integer array is taken to hold such codes already (the simulator's arrays)."""
    if isinstance(col, np.ndarray) and col.dtype.kind in "iu":
        return col
    if isinstance(col.dtype, pd.CategoricalDtype):
        if tuple(col.cat.categories) == ROLES:  # already in ROLES order: the codes are the roles
            return col.cat.codes.to_numpy()
        lut = np.array(
            [ROLES.index(c) if c in ROLES else -1 for c in col.cat.categories] + [-1], np.int8
        )
        return lut[col.cat.codes.to_numpy()]
    return np.asarray(_as_role(col, None).codes)


@njit(cache=True)
def _sorted_codes(values, codes):
    """Dense codes of integers in non-decreasing order into ``codes``, in one pass: ``(codes,
    uniques, n_unique)``; ``n_unique`` is -1 (the rest unfinished) as soon as a value
    decreases."""
    n = values.shape[0]
    uniques = np.empty_like(values)
    c = 0
    codes[0] = 0
    uniques[0] = values[0]
    for i in range(1, n):
        if values[i] < values[i - 1]:
            return codes, uniques[:0], -1
        if values[i] != values[i - 1]:
            c += 1
            uniques[c] = values[i]
        codes[i] = c
    return codes, uniques[: c + 1].copy(), c + 1


def dense_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense codes ordered by value (relabelling-invariant results); hashing, not a full sort.

    Integers take shortcuts that give the same codes: values already in order (a table sorted
    by participant, as the simulator writes it) are coded by one pass over their changes, and
    small non-negative ids (stimulus ids) through a table of the ids present."""
    if values.dtype.kind in "iu" and len(values) > 1:
        # the output made by numpy, whose large blocks get huge pages: fewer page faults
        codes, uniques, n_unique = _sorted_codes(values, np.empty(len(values), np.int64))
        if n_unique >= 0:
            return codes, uniques
        lo, hi = int(values.min()), int(values.max())
        if lo >= 0 and hi < 4 * len(values) + 4096:
            present = np.zeros(hi + 1, bool)
            present[values] = True
            rank = np.cumsum(present, dtype=np.int64) - 1
            return rank[values], np.flatnonzero(present).astype(values.dtype)
    codes, uniq = pd.factorize(values)
    order = np.argsort(uniq, kind="stable")
    rank = np.empty(len(uniq), np.int64)
    rank[order] = np.arange(len(uniq))
    return rank[codes], np.asarray(uniq)[order]


@njit(cache=True, parallel=True)
def _tally_rows(pcode, step, role, repeat, response, S, m, threads=1):
    """Counts by [participant-step ``pcode * S + step - 1``, slot kind (:func:`slot_kinds`),
    response] (int64[m, 4, 2]): one pass over the rows, in a few chunks counted in parallel and
    added up (integer counts: the same whatever the chunks)."""
    n = pcode.shape[0]
    chunks = max(1, min(threads, n // 65536))  # a table per thread, no more
    parts = np.zeros((chunks, m, 4, 2), dtype=np.int64)
    for c in prange(chunks):
        tab = parts[c]
        for i in range(c * n // chunks, (c + 1) * n // chunks):
            k = 0
            if repeat[i]:
                r = role[i]
                k = 1 if r == _VIGILANCE else (2 if r == _TARGET else 3)
            tab[pcode[i] * S + step[i] - 1, k, 1 if response[i] else 0] += 1
    out = parts[0].copy()
    for c in range(1, chunks):
        out += parts[c]
    return out


def _tally_reference(pcode, step, role, repeat, response, S, m):
    """Plain numpy twin of :func:`_tally_rows` (one bincount)."""
    g = pcode * S + (step.astype(np.int64) - 1)
    key = g * 8 + slot_kinds(role, repeat) * 2 + response
    return np.bincount(key, minlength=m * 8).reshape(m, 4, 2)


def participant_stats(
    trials: pd.DataFrame, protocol: Protocol, *, _codes_cache=None, _roles=None
) -> pd.DataFrame:
    """Per participant and step: counts and rates the filters judge (tidy, one row per pair).

    Columns: participant, step, presentations, completed_fraction, vigilance_tests,
    vigilance_hits, vigilance_hit_rate, target_tests, hits, hit_rate, first_showings,
    false_alarms, false_alarm_rate. Rates are NaN when their denominator is 0.
    """
    pcode, pids = (
        _codes_cache if _codes_cache is not None else dense_codes(column(trials, "participant"))
    )
    S = len(protocol.steps)
    step = column(trials, "step")
    role = role_codes(trials["role"]) if _roles is None else _roles
    rep = column(trials, "repeat")
    resp = column(trials, "response")
    m = len(pids) * S
    # one pass over the rows: (participant-step, kind, response) counts, every statistic's source
    tab = _tally_rows(pcode, step, role, rep, resp, S, m, get_num_threads())
    cols = _count_columns(tab)
    present = np.flatnonzero(cols["presentations"] > 0)
    step_of = (present % S + 1).astype(np.int8)
    counts = {k: v[present].astype(np.int64) for k, v in cols.items()}
    lengths = np.array([s.length for s in protocol.steps], np.float64)
    out = {"participant": pids[present // S], "step": step_of}
    out.update(_with_rates(counts, lengths[step_of - 1]))
    order = [
        "participant",
        "step",
        "presentations",
        "completed_fraction",
        "vigilance_tests",
        "vigilance_hits",
        "vigilance_hit_rate",
        "target_tests",
        "hits",
        "hit_rate",
        "first_showings",
        "false_alarms",
        "false_alarm_rate",
    ]
    return pd.DataFrame({k: out[k] for k in order})


def apply_filters(stats: pd.DataFrame, protocol: Protocol) -> pd.DataFrame:
    """Add ``kept`` (bool) and ``reason`` (first filter failed, '' when kept) to participant stats.

    A rate with no denominator (NaN) fails no filter: there is nothing to judge.
    Filters are checked in the order of :data:`FILTERS`.
    """
    out = stats.copy()
    step = out["step"].to_numpy()
    columns = {c: out[c].to_numpy() for c in out.columns}
    reason = np.full(len(out), "", dtype=object)
    for s, spec in enumerate(protocol.steps, start=1):
        rows = np.flatnonzero(step == s)
        if not len(rows):
            continue
        reason[rows] = first_failed({c: v[rows] for c, v in columns.items()}, spec.filters)
    out["kept"] = reason == ""
    out["reason"] = reason
    return out
