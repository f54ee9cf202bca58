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

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numba import njit

from memsim import _jitcache  # noqa: F401  (drops numba caches older than the sources)
from memsim.analysis.filters import (
    FILTERS,
    apply_filters,
    column,
    dense_codes,
    first_failed,
    participant_stats,
    passes,
    role_codes,
    slot_kinds,
    stats_from_tally,
)
from memsim.design.protocol import Protocol
from memsim.design.scores import count_column, read_scores, write_scores
from memsim.design.trials import ROLES, validate_trials
from memsim.errors import UserError

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


#: the fitted line's value at a video's mean lag at or below which the ratio form has no
#: ratio to apply and the video is shifted instead (:func:`_linear`)
RATIO_FLOOR = 1e-9


def _linear(s: VideoSums, spec) -> tuple[np.ndarray, dict]:
    """VideoMem: one line h(lag) = a + b lag of hit on lag over all annotations; videos moved to
    the reference lag by a shift (raw + b (ref - mean lag)) or a ratio (raw h(ref) / h(mean lag)).

    The released VideoMem scores show the ratio: raw - corrected is proportional to raw
    (docs/scoring.md, "Lag correction"). Where the line is at or below :data:`RATIO_FLOOR` at
    a video's mean lag, no ratio exists and that video is shifted (``shifted`` counts them).
    """
    ref = float(spec.reference_lag)
    out, p = _global_slope(s, ref)
    form = getattr(spec, "form", "shift")  # duck-typed specs (tests) have no form: a shift
    shifted = 0
    if form == "ratio":
        a, b = p["intercept"], p["slope"]
        at_mean = a + b * s.mean_lag
        ok = at_mean > RATIO_FLOOR
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = s.raw * (a + b * ref) / np.where(ok, at_mean, 1.0)
        # the line at or below 0 at the video's mean lag: no ratio exists; such a video
        # (only a log whose fitted line crosses 0 within its lags has one) is shifted instead
        shifted = int(np.count_nonzero(~ok & (s.n > 0)))
        out = np.where(ok, ratio, out)
    return out, {
        "kind": "linear",
        "form": form,
        **({"shifted": shifted} if form == "ratio" else {}),
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


# --------------------------------------------------------------------------- scores
def _frame(trials) -> pd.DataFrame:
    """A mapping of trial-table arrays as a DataFrame (role codes as the roles' names)."""
    cols = dict(trials)
    role = cols.get("role")
    if isinstance(role, np.ndarray) and role.dtype.kind in "iu":
        cols["role"] = pd.Categorical.from_codes(role, categories=list(ROLES))
    return pd.DataFrame(cols)


@dataclass(frozen=True)
class ScoreResult:
    """Everything scoring produced; the input of every analysis in
    :mod:`memsim.analysis.consistency`.

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

    def __repr__(self) -> str:  # a line, not the tables (a notebook prints it)
        kept = self.participants["kept"]
        return (
            f"ScoreResult(protocol={self.protocol.name!r}, stimuli={len(self.scores):,}, "
            f"participants kept {int(kept.sum()):,} of {len(kept):,}, "
            f"steps={[s.name for s in self.protocol.steps]})"
        )

    def step_scores(self, s: int) -> tuple[np.ndarray, np.ndarray]:
        """Dense per-video arrays (score, annotations) of 1-based step ``s``, over ``video_ids``."""
        col = self.protocol.steps[s - 1].scoring.column
        return (
            self.scores[col].to_numpy(np.float64),
            self.scores[count_column(col)].to_numpy(np.int64),
        )


@njit(cache=True)
def _kept_rows(pcode, step, role, repeat, response, kept_g, S, n_tests, n_alarms):
    """Rows of kept participant-steps that scoring reads: the recognition tests (repeat, role
    target) and the false alarms (a press at a first showing), each in table order, in one
    pass (``n_tests`` and ``n_alarms``, known from the tally, size the outputs)."""
    tests = np.empty(n_tests, dtype=np.int64)
    alarms = np.empty(n_alarms, dtype=np.int64)
    m = 0
    f = 0
    for i in range(pcode.shape[0]):
        if kept_g[pcode[i] * S + step[i] - 1]:
            if repeat[i]:
                if role[i] == _TARGET:
                    tests[m] = i
                    m += 1
            elif response[i]:
                alarms[f] = i
                f += 1
    return tests, alarms


@njit(cache=True)
def _gather_tests(rows, pcode, response, lag, delay, rt, part, hit, lg, dl, r):
    """The columns of :class:`Tests` at ``rows`` into ``part`` .. ``r``, in one pass:
    participant code, hit (0/1), lag (NaN where -1), delay and response time as float64."""
    n = rows.shape[0]
    for j in range(n):
        i = rows[j]
        part[j] = pcode[i]
        hit[j] = 1.0 if response[i] else 0.0
        lg[j] = lag[i] if lag[i] >= 0 else np.nan
        dl[j] = delay[i]
        r[j] = rt[i]
    return part, hit, lg, dl, r


def _kept_rows_reference(pcode, step, role, repeat, response, kept_g, S):
    """Plain numpy twin of :func:`_kept_rows`."""
    kept = kept_g[pcode * S + step.astype(np.int64) - 1]
    tests = np.flatnonzero(kept & repeat & (role == _TARGET))
    return tests, np.flatnonzero(kept & ~repeat & response)


def _in_order(major: np.ndarray, minor: np.ndarray) -> bool:
    """The pairs (major, minor) never decrease: a stable lexsort would leave them as they are."""
    if len(major) < 2:
        return True
    d = np.diff(major)
    return bool(((d > 0) | ((d == 0) & (minor[1:] >= minor[:-1]))).all())


def score(trials, protocol: Protocol, *, validate: bool = True) -> ScoreResult:
    """Score a trial table under a protocol: filters, raw scores, corrections.

    Parameters
    ----------
    trials : DataFrame or mapping of str to ndarray
        A trial table; checked by :func:`memsim.design.trials.validate_trials` unless
        ``validate=False`` (only for a table that already passed it). A mapping of column
        arrays (``role`` as int8 codes in :data:`memsim.design.trials.ROLES` order: the
        simulator's :attr:`memsim.sim.simulate.SimulatedArrays.trials`) is scored without a
        DataFrame when ``validate=False``.
    protocol : Protocol
        Its steps give lengths, filters, score column names and corrections.

    Returns
    -------
    ScoreResult
    """
    if validate:
        if not isinstance(trials, pd.DataFrame):
            trials = _frame(trials)
        trials = validate_trials(trials)
    S = len(protocol.steps)
    step = column(trials, "step")
    if len(step) and step.min() < 1:
        raise UserError(f"trial table has step {int(step.min())}: steps are numbered from 1")
    if step.max() > S:
        bad = step > S
        raise UserError(
            f"trial table has step {int(step.max())} but the protocol "
            f"'{protocol.name}' has {S} step{'s' if S > 1 else ''} "
            f"({int(bad.sum())} row{'s' if bad.sum() != 1 else ''})"
        )
    pcode, pids = dense_codes(column(trials, "participant"))
    role = role_codes(trials["role"])
    stats = apply_filters(
        participant_stats(trials, protocol, _codes_cache=(pcode, pids), _roles=role), protocol
    )
    kept_g = np.zeros(len(pids) * S, bool)
    kg = stats["participant"].to_numpy()
    kept_g[np.searchsorted(pids, kg) * S + stats["step"].to_numpy().astype(np.int64) - 1] = stats[
        "kept"
    ].to_numpy()

    rep = column(trials, "repeat")
    resp = column(trials, "response")
    # the kept recognition tests: rows of kept participant-steps with role target and repeat
    kept_stats = stats[stats["kept"].to_numpy()]
    idx, fa_rows = _kept_rows(
        pcode,
        step,
        role,
        rep,
        resp,
        kept_g,
        S,
        int(kept_stats["target_tests"].sum()),
        int(kept_stats["false_alarms"].sum()),
    )
    vcode_all, vids = dense_codes(column(trials, "video")[idx])
    V = len(vids)

    lag_all = column(trials, "lag")
    pos_all = column(trials, "position")
    rt_all = column(trials, "rt_s")
    delay_all = column(trials, "delay_s")
    tests, long_rows, corrections, rts = [], [], {}, {}
    score_cols: dict[str, np.ndarray] = {}
    for s, spec in enumerate(protocol.steps, start=1):
        sel = step[idx] == s
        ii = rows_s = idx[sel]
        # canonical order (participant, position): row order of the input never matters
        pp, qq = pcode[ii], pos_all[ii]
        if _in_order(pp, qq):  # already (a table sorted by participant and position)
            vv = vcode_all[sel]
        else:
            order = np.lexsort((qq, pp))
            ii = ii[order]
            vv = vcode_all[sel][order]
        # outputs made by numpy, whose large blocks get huge pages: fewer page faults
        part = np.empty(len(ii), np.int64)
        hit, lag, delay, rt = (np.empty(len(ii)) for _ in range(4))
        _gather_tests(ii, pcode, resp, lag_all, delay_all, rt_all, part, hit, lag, delay, rt)
        t = Tests(step=s, participant=part, video=vv, hit=hit, lag=lag, delay_s=delay, rt_s=rt)
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
        # (rows in table order, as the means are taken over them)
        hit_rows = rows_s[resp[rows_s]]
        rts[s] = (
            rt_all[hit_rows].astype(np.float64),
            rt_all[fa_rows[step[fa_rows] == s]].astype(np.float64),
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
