"""Scoring: a trial table and a protocol in, per-video memorability scores out.

In: a trial table (:mod:`memsim.design.trials`) and a :class:`memsim.design.protocol.Protocol`.
Out: a :class:`ScoreResult` — the scores in the VideoMem ground-truth format,
the per-participant statistics with who each step's filters kept and why not,
the per-video raw and corrected scores, and the fitted correction parameters.

The same code scores a real crowd-sourcing log and a simulated one; it never
imports the simulator. Layers: per-participant statistics → filters → kept
recognition tests → per-video sufficient statistics → correction (a registry
keyed by the protocol's ``correction.kind``). Everything is ``np.bincount``
over dense codes; no Python loop runs per row. Definitions and formulas:
``docs/scoring.md``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from memsim.design.protocol import Protocol
from memsim.design.trials import ROLES, _as_role, validate_trials
from memsim.errors import UserError
from memsim.io import atomic_path, read_text

__all__ = [
    "Tests",
    "VideoSums",
    "ScoreResult",
    "CORRECTIONS",
    "CorrectionMethod",
    "correction_x",
    "FILTERS",
    "first_failed",
    "passes",
    "slot_kinds",
    "stats_from_tally",
    "participant_stats",
    "apply_filters",
    "video_sums",
    "correct",
    "score",
    "count_column",
    "write_scores",
    "read_scores",
]

_TARGET, _FILLER, _VIGILANCE = (ROLES.index(r) for r in ("target", "filler", "vigilance"))


# --------------------------------------------------------------------------- small containers
@dataclass(frozen=True)
class Tests:
    """The kept recognition tests (role target, repeat) of one step, one entry per annotation.

    Canonical order: by participant id, then position, so results never depend
    on the row order of the input table. ``participant`` and ``video`` are
    dense indices into :attr:`ScoreResult.participant_ids` / ``video_ids``.
    ``lag`` is float64 with NaN where the table has -1 (no lag).
    """

    step: int
    participant: np.ndarray  # int64 (n,)
    video: np.ndarray  # int64 (n,)
    hit: np.ndarray  # float64 0/1 (n,)
    lag: np.ndarray  # float64 (n,)
    delay_s: np.ndarray  # float64 (n,)
    rt_s: np.ndarray  # float64 (n,), NaN when no press

    def __len__(self) -> int:
        return len(self.hit)


@dataclass(frozen=True)
class VideoSums:
    """Per-video sufficient statistics: count, and sums of hit, lag, lag², lag·hit."""

    n: np.ndarray
    h: np.ndarray
    l: np.ndarray  # noqa: E741 - the usual name in the formulas
    l2: np.ndarray
    lh: np.ndarray

    @property
    def raw(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.h / self.n

    @property
    def mean_lag(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.l / self.n


def video_sums(
    video: np.ndarray,
    hit: np.ndarray,
    lag: np.ndarray,
    n_videos: int,
    mask: np.ndarray | None = None,
) -> VideoSums:
    """Sufficient statistics per video, over the annotations where ``mask`` holds (all if None)."""
    if mask is not None:
        video, hit, lag = video[mask], hit[mask], lag[mask]
    lg = np.nan_to_num(lag) if np.isnan(lag).any() else lag
    bc = lambda w: np.bincount(video, weights=w, minlength=n_videos)  # noqa: E731
    return VideoSums(
        n=bc(None).astype(np.float64), h=bc(hit), l=bc(lg), l2=bc(lg * lg), lh=bc(lg * hit)
    )


# --------------------------------------------------------------------------- corrections
def _no_correction(s: VideoSums, spec) -> tuple[np.ndarray, dict]:
    return s.raw, {"kind": "none"}


def _global_slope(s: VideoSums, ref_x: float) -> tuple[np.ndarray, dict]:
    """One least-squares slope of hit on x over all annotations; each video shifted to ``ref_x``."""
    N, H, L = s.n.sum(), s.h.sum(), s.l.sum()
    sxx = s.l2.sum() - L * L / N if N else 0.0
    sxy = s.lh.sum() - L * H / N if N else 0.0
    slope = float(sxy / sxx) if sxx > 1e-12 * max(1.0, s.l2.sum()) else 0.0
    mean_h = float(H / N) if N else float("nan")
    mean_x = float(L / N) if N else float("nan")
    out = s.raw + slope * (ref_x - s.mean_lag)
    return out, {
        "slope": slope,
        "intercept": mean_h - slope * mean_x,
        "mean_x": mean_x,
        "annotations": int(N),
    }


def _linear(s: VideoSums, spec) -> tuple[np.ndarray, dict]:
    """VideoMem: one line h(lag) = a + b lag of hit on lag over all annotations; videos moved to
    the reference lag by a shift (raw + b (ref - mean lag)) or a ratio (raw h(ref) / h(mean lag)).

    The released VideoMem scores show the ratio: raw - corrected is proportional to raw
    (docs/scoring.md, "Lag correction").
    """
    ref = float(spec.reference_lag)
    out, p = _global_slope(s, ref)
    form = getattr(spec, "form", "shift")  # duck-typed specs (tests) have no form: a shift
    if form == "ratio":
        a, b = p["intercept"], p["slope"]
        with np.errstate(invalid="ignore", divide="ignore"):
            out = s.raw * (a + b * ref) / (a + b * s.mean_lag)
    return out, {
        "kind": "linear",
        "form": form,
        "reference_lag": spec.reference_lag,
        "slope": p["slope"],
        "intercept": p["intercept"],
        "mean_lag": p["mean_x"],
        "annotations": p["annotations"],
    }


def _log_linear(s: VideoSums, spec) -> tuple[np.ndarray, dict]:
    """LaMem-style: one slope of hit on ln(lag); each video shifted to ln(reference lag)."""
    out, p = _global_slope(s, float(np.log(spec.reference_lag)))
    return out, {
        "kind": "log_linear",
        "reference_lag": spec.reference_lag,
        "slope_per_log_lag": p["slope"],
        "intercept": p["intercept"],
        "mean_log_lag": p["mean_x"],
        "annotations": p["annotations"],
    }


def _memento_decay(s: VideoSums, spec) -> tuple[np.ndarray, dict]:
    """Memento10k: a slope alpha per video (least squares on its own annotations), referred to T."""
    with np.errstate(invalid="ignore", divide="ignore"):
        sxx = s.l2 - s.l * s.l / s.n
        sxy = s.lh - s.l * s.h / s.n
        alpha = np.where(sxx > 1e-9, sxy / sxx, 0.0)  # one distinct lag: no slope to fit
    alpha = np.where(s.n > 0, alpha, np.nan)
    out = s.raw + alpha * (spec.reference_lag - s.mean_lag)
    return out, {
        "kind": "memento_decay",
        "reference_lag": spec.reference_lag,
        "mean_alpha": float(np.nanmean(alpha)) if (s.n > 0).any() else float("nan"),
        "alpha": alpha,
    }


@dataclass(frozen=True)
class CorrectionMethod:
    """A lag correction: ``fit(sums, spec) -> (unclipped scores, params)``, sums of ``x(lag)``."""

    fit: Callable[[VideoSums, object], tuple[np.ndarray, dict]]
    x: Callable[[np.ndarray], np.ndarray] = np.asarray
    needs_lag: bool = True


#: the protocol's ``correction.kind`` -> its method; a new kind is one entry here
CORRECTIONS: dict[str, CorrectionMethod] = {
    "none": CorrectionMethod(_no_correction, needs_lag=False),
    "linear": CorrectionMethod(_linear),
    "memento_decay": CorrectionMethod(_memento_decay),
    "log_linear": CorrectionMethod(_log_linear, x=np.log),
}


def method(spec) -> CorrectionMethod:
    try:
        return CORRECTIONS[spec.kind]
    except KeyError:
        raise UserError(
            f"unknown score correction {spec.kind!r} (known: {', '.join(CORRECTIONS)})"
        ) from None


def correction_x(spec, lag: np.ndarray) -> np.ndarray:
    """The regressor of a correction for float lags (NaN = none): lag, ln(lag), or zeros."""
    m = method(spec)
    if not m.needs_lag:
        return np.zeros(len(lag))
    with np.errstate(invalid="ignore", divide="ignore"):
        return m.x(lag)


def correct(s: VideoSums, spec) -> tuple[np.ndarray, dict]:
    """Scores per video (clipped to [0, 1]; NaN where no annotation) and the fitted parameters.

    ``s`` holds sums of :func:`correction_x` of the lags, not of the raw lags.
    """
    out, params = method(spec).fit(s, spec)
    return np.clip(out, 0.0, 1.0), params


# --------------------------------------------------------------------------- participants
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


def _role_codes(col: pd.Series) -> np.ndarray:
    """Role codes in :data:`ROLES` order, whatever the categorical's own order (-1: unknown)."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        lut = np.array(
            [ROLES.index(c) if c in ROLES else -1 for c in col.cat.categories] + [-1], np.int8
        )
        return lut[col.cat.codes.to_numpy()]
    return np.asarray(_as_role(col, None).codes)


def _codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense codes ordered by value (relabelling-invariant results); hashing, not a full sort."""
    codes, uniq = pd.factorize(values)
    order = np.argsort(uniq, kind="stable")
    rank = np.empty(len(uniq), np.int64)
    rank[order] = np.arange(len(uniq))
    return rank[codes], np.asarray(uniq)[order]


def participant_stats(
    trials: pd.DataFrame, protocol: Protocol, *, _codes_cache=None
) -> pd.DataFrame:
    """Per participant and step: counts and rates the filters judge (tidy, one row per pair).

    Columns: participant, step, presentations, completed_fraction, vigilance_tests,
    vigilance_hits, vigilance_hit_rate, target_tests, hits, hit_rate, first_showings,
    false_alarms, false_alarm_rate. Rates are NaN when their denominator is 0.
    """
    pcode, pids = (
        _codes_cache if _codes_cache is not None else _codes(trials["participant"].to_numpy())
    )
    S = len(protocol.steps)
    step = trials["step"].to_numpy().astype(np.int64)
    g = pcode * S + (step - 1)
    role = _role_codes(trials["role"])
    rep = trials["repeat"].to_numpy()
    resp = trials["response"].to_numpy()
    m = len(pids) * S
    # one bincount over (participant-step, kind, response) instead of one per statistic
    tab = np.bincount(g * 8 + slot_kinds(role, rep) * 2 + resp, minlength=m * 8).reshape(m, 4, 2)
    cols = _count_columns(tab)
    present = np.flatnonzero(cols["presentations"] > 0)
    st = pd.DataFrame(
        {"participant": pids[present // S], "step": (present % S + 1).astype(np.int8)}
    )
    counts = {k: v[present].astype(np.int64) for k, v in cols.items()}
    lengths = np.array([s.length for s in protocol.steps], np.float64)
    for k, v in _with_rates(counts, lengths[st["step"].to_numpy() - 1]).items():
        st[k] = v
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
    return st[order]


def apply_filters(stats: pd.DataFrame, protocol: Protocol) -> pd.DataFrame:
    """Add ``kept`` (bool) and ``reason`` (first filter failed, '' when kept) to participant stats.

    A rate with no denominator (NaN) fails no filter: there is nothing to judge.
    Filters are checked in the order of :data:`FILTERS`.
    """
    out = stats.copy()
    step = out["step"].to_numpy()
    reason = np.full(len(out), "", dtype=object)
    for s, spec in enumerate(protocol.steps, start=1):
        rows = np.flatnonzero(step == s)
        if not len(rows):
            continue
        sub = out.iloc[rows]
        reason[rows] = first_failed({c: sub[c].to_numpy() for c in sub.columns}, spec.filters)
    out["kept"] = reason == ""
    out["reason"] = reason
    return out


# --------------------------------------------------------------------------- scores
def count_column(column: str) -> str:
    """Annotation-count column of a score column: ``x_memorability`` -> ``nb_x_annotations``."""
    stem = column[: -len("_memorability")] if column.endswith("_memorability") else column
    return f"nb_{stem}_annotations"


@dataclass(frozen=True)
class ScoreResult:
    """Everything scoring produced; the input of every analysis in :mod:`memsim.analysis.consistency`.

    Attributes
    ----------
    scores : DataFrame
        VideoMem ground-truth format: ``video`` then, per step, the score column and its
        count column (:func:`count_column`). NaN score / 0 count where a video has no kept test.
    videos : DataFrame
        Long table per (step, video) with a kept test: step, video, annotations, hits, raw,
        mean_lag, score (corrected, clipped), plus ``alpha`` for memento_decay.
    participants : DataFrame
        :func:`participant_stats` plus ``kept`` and ``reason``.
    corrections : dict
        Step name -> fitted correction parameters (JSON-able scalars).
    tests : tuple of Tests
        The kept recognition tests, one entry per step.
    """

    protocol: Protocol
    scores: pd.DataFrame
    videos: pd.DataFrame
    participants: pd.DataFrame
    corrections: dict
    tests: tuple
    video_ids: np.ndarray
    participant_ids: np.ndarray
    trials_rt: dict = field(
        default_factory=dict
    )  # step -> (hit RTs, false-alarm RTs) of kept people

    def step_scores(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        """Dense per-video arrays (score, annotations) of 1-based step ``s``, over ``video_ids``."""
        col = self.protocol.steps[s - 1].scoring.column
        return (
            self.scores[col].to_numpy(np.float64),
            self.scores[count_column(col)].to_numpy(np.int64),
        )


def score(trials: pd.DataFrame, protocol: Protocol, *, validate: bool = True) -> ScoreResult:
    """Score a trial table under a protocol: filters, raw scores, corrections.

    Parameters
    ----------
    trials : DataFrame
        A trial table; checked by :func:`memsim.design.trials.validate_trials` unless ``validate=False``
        (only for a table that already passed it).
    protocol : Protocol
        Its steps give lengths, filters, score column names and corrections.

    Returns
    -------
    ScoreResult
    """
    if validate:
        trials = validate_trials(trials)
    S = len(protocol.steps)
    step = trials["step"].to_numpy()
    if step.max() > S:
        bad = step > S
        raise UserError(
            f"trial table has step {int(step.max())} but the protocol "
            f"'{protocol.name}' has {S} step{'s' if S > 1 else ''} "
            f"({int(bad.sum())} row{'s' if bad.sum() != 1 else ''})"
        )
    pcode, pids = _codes(trials["participant"].to_numpy())
    stats = apply_filters(participant_stats(trials, protocol, _codes_cache=(pcode, pids)), protocol)
    kept_g = np.zeros(len(pids) * S, bool)
    kg = stats["participant"].to_numpy()
    kept_g[np.searchsorted(pids, kg) * S + stats["step"].to_numpy().astype(np.int64) - 1] = stats[
        "kept"
    ].to_numpy()
    g = pcode * S + (step.astype(np.int64) - 1)
    row_kept = kept_g[g]

    role = _role_codes(trials["role"])
    rep = trials["repeat"].to_numpy()
    resp = trials["response"].to_numpy()
    is_test = row_kept & rep & (role == _TARGET)
    vcode_all, vids = _codes(trials["video"].to_numpy()[is_test])
    V = len(vids)

    lag_all = trials["lag"].to_numpy()
    pos_all = trials["position"].to_numpy()
    idx = np.flatnonzero(is_test)
    rt_all = trials["rt_s"].to_numpy()
    delay_all = trials["delay_s"].to_numpy()
    tests, long_rows, corrections, rts = [], [], {}, {}
    score_cols: dict[str, np.ndarray] = {}
    for s, spec in enumerate(protocol.steps, start=1):
        sel = step[idx] == s
        ii = idx[sel]
        # canonical order (participant, position): row order of the input never matters
        order = np.lexsort((pos_all[ii], pcode[ii]))
        ii = ii[order]
        vv = vcode_all[sel][order]
        lag = lag_all[ii].astype(np.float64)
        lag[lag < 0] = np.nan
        t = Tests(
            step=s,
            participant=pcode[ii],
            video=vv,
            hit=resp[ii].astype(np.float64),
            lag=lag,
            delay_s=delay_all[ii],
            rt_s=rt_all[ii].astype(np.float64),
        )
        tests.append(t)
        corr = spec.scoring.correction
        if method(corr).needs_lag and len(t) and np.isnan(lag).any():
            raise UserError(
                f"step {s} ({spec.name}): the '{corr.kind}' correction needs lags, but "
                f"{int(np.isnan(lag).sum())} of its recognition tests have lag -1"
            )
        sums = video_sums(vv, t.hit, correction_x(corr, lag), V)
        sc, params = correct(sums, corr)
        alpha = params.pop("alpha", None)
        corrections[spec.name] = params
        has = sums.n > 0
        col = spec.scoring.column
        score_cols[col] = np.where(has, sc, np.nan)
        score_cols[count_column(col)] = sums.n.astype(np.int64)
        lr = pd.DataFrame(
            {
                "step": np.int8(s),
                "video": vids[has],
                "annotations": sums.n[has].astype(np.int64),
                "hits": sums.h[has].astype(np.int64),
                "raw": sums.raw[has],
                "mean_lag": (
                    np.nan
                    if np.isnan(lag).any()
                    else (np.bincount(vv, weights=lag, minlength=V)[has] / sums.n[has])
                ),
                "score": sc[has],
            }
        )
        if alpha is not None:
            lr["alpha"] = alpha[has]
        long_rows.append(lr)
        # response times of kept participants in this step: recognitions and false alarms
        in_step = row_kept & (step == s) & resp
        rts[s] = (
            rt_all[in_step & rep & (role == _TARGET)].astype(np.float64),
            rt_all[in_step & ~rep].astype(np.float64),
        )

    scores = pd.DataFrame({"video": vids, **score_cols})
    videos = pd.concat(long_rows, ignore_index=True)
    return ScoreResult(
        protocol=protocol,
        scores=scores,
        videos=videos,
        participants=stats,
        corrections=corrections,
        tests=tuple(tests),
        video_ids=vids,
        participant_ids=pids,
        trials_rt=rts,
    )


# --------------------------------------------------------------------------- score files
def write_scores(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write scores as CSV (UTF-8, no BOM, LF), atomically: a failed write leaves nothing behind."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, lineterminator="\n")  # floats as shortest round-trip repr


def read_scores(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a scores CSV in the VideoMem ground-truth format, as released (BOM and CRLF allowed).

    Returns the table unchanged: ``video`` as in the file (names such as ``video10.webm``
    or integer ids), every other column numeric.
    """
    text = read_text(path, "scores file")
    if not text.strip():
        raise UserError("empty scores file", path=path)
    try:
        df = pd.read_csv(io.StringIO(text))
    except (pd.errors.ParserError, ValueError) as exc:
        raise UserError(f"cannot parse scores CSV: {str(exc).splitlines()[0]}", path=path) from None
    df.columns = [str(c).strip() for c in df.columns]
    if "video" not in df.columns:
        raise UserError("scores file lacks column 'video'", path=path)
    for c in df.columns:
        if c == "video":
            continue
        if not pd.api.types.is_numeric_dtype(df[c]):
            raise UserError(f"column '{c}': not numeric", path=path)
    dup = df["video"].duplicated()
    if dup.any():
        first = df["video"][dup].iloc[0]
        raise UserError(f"column 'video': duplicate videos, e.g. {first!r}", path=path)
    return df
