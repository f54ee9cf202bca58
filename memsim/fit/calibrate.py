"""Calibration: fit a population parameter set to a study's targets by simulated moments.

In: a protocol, a starting :class:`~memsim.sim.params.Params`, a targets file
(``calibration/<protocol>-targets.yaml``) and, when the protocol has released
scores, those scores. Out: the fitted parameter set, and a log of every
candidate evaluated (``<out>.evals.jsonl``), from which a stopped fit resumes.

Method (``docs/calibration.md``): each candidate is simulated with the *same*
seeds (common random numbers), scored by the pipeline that scores real logs,
and reduced to moments: every ``fit`` target of the targets file plus the
shape of the released score distributions (means of rank bins of the scores,
the simulated ones re-made at the released annotation counts: like with like).
The residual of each moment is ``(simulated - target) / scale`` (the target's
tolerance; 0.005 for a score bin); :func:`scipy.optimize.least_squares`
(trust-region reflective, restarted from the best candidate while it gains)
minimises their sum of squares over the free parameters, each mapped from its
bounds to the real line by a scaled logit. The Jacobian is a forward
difference whose columns are simulated in parallel (one process per core).

Candidates are identified by their unconstrained coordinates; the optimiser is
deterministic, so a resumed fit replays the logged candidates from the log and
carries on where it stopped.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Callable, Collection
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numba
import numpy as np
import pandas as pd
import yaml
from scipy.special import expit

from memsim.analysis.consistency import (
    analyse,
    correction_change,
    count_correlation,
    decay_alpha_summary,
    human_consistency,
    lag_curve,
    rt_analyses,
    score_correlation,
)
from memsim.analysis.distributions import at_released_precision, ks_distance, real_score_comparison
from memsim.analysis.scoring import correct, correction_x, count_column, score, video_sums
from memsim.errors import UserError
from memsim.fit.compare import at_scale, lookup
from memsim.io import (
    check_output,
    forget_output,
    in_worker,
    make_dirs,
    read_text,
    record_output,
    spawn_context,
    write_text_atomic,
)
from memsim.limits import check_seed
from memsim.paths import get_path, set_path
from memsim.sim.batch import simulate_many
from memsim.sim.forgetting import LAWS
from memsim.sim.params import Params, params_from_mapping
from memsim.sim.simulate import PreparedProtocol, prepare, scale_protocol, simulate_arrays

__all__ = [
    "Free",
    "Moment",
    "VIDEOMEM_FREE",
    "free_for",
    "to_unconstrained",
    "from_unconstrained",
    "moments_for",
    "fit_summary",
    "Evaluator",
    "calibrate",
    "EvalLog",
    "Calibration",
    "calibrate_to_file",
    "polish_log_path",
    "regenerate_command",
]

# The released score distribution is matched by the means of its rank bins (0-5 %, 5-10 %, ...
# of the sorted scores): quantiles of k/n scores jump between lattice points, bin means move
# smoothly with the parameters, and the KS distance itself is not smooth either.
QUANTILES = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
RANK_BINS = (0.0,) + QUANTILES + (1.0,)
# A rank-bin mean off by 0.01 moves the ECDF by about 0.05 where the scores are densest (the
# released short-term scores' density peaks near 5 per unit): the acceptance KS distance
# (<= 0.05) needs the bins well inside that, hence 0.005.
QUANTILE_SCALE = 0.005
# A count rank-bin mean (annotations per video) is standardised by one annotation.
COUNT_SCALE = 1.0
# The released counts' ECDF is read at their values at these levels (distinct counts only):
# the core of a lattice distribution and its tail. A share of videos off by the acceptance KS
# distance (0.05) is one unit.
COUNT_CDF_LEVELS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
COUNT_CDF_SCALE = 0.05
# The correlation of two steps' annotation counts over the videos is standardised by 0.05, the
# tolerance of the scores' ST-LT correlation rows.
COUNT_CORR_SCALE = 0.05


def rank_bin_means(x: np.ndarray) -> dict:
    """Mean of the sorted scores within each rank bin of :data:`RANK_BINS`, keyed ``b05-10`` etc."""
    x = np.sort(x[np.isfinite(x)])
    edges = np.round(np.array(RANK_BINS) * len(x)).astype(np.int64)
    return {
        f"b{int(lo * 100):02d}-{int(hi * 100):02d}": float(x[a:b].mean())
        for lo, hi, a, b in zip(RANK_BINS[:-1], RANK_BINS[1:], edges[:-1], edges[1:])
        if b > a
    }


def count_cdf_points(released: np.ndarray) -> np.ndarray:
    """The annotation counts at which :func:`count_cdf` reads a count distribution: the
    released (positive) counts' values at :data:`COUNT_CDF_LEVELS`, each once, ascending."""
    n = np.asarray(released, float)
    n = n[np.isfinite(n) & (n > 0)]
    if not n.size:
        return np.zeros(0, np.int64)
    return np.unique(np.quantile(n, COUNT_CDF_LEVELS, method="inverted_cdf").astype(np.int64))


def count_ecdf(counts: np.ndarray, points: np.ndarray) -> dict:
    """Share of the (positive) ``counts`` at or below each of ``points``, keyed ``le33`` etc."""
    n = np.sort(np.asarray(counts, float))
    n = n[n > 0]
    if not n.size:
        return {}
    at = np.searchsorted(n, np.asarray(points, float), side="right") / n.size
    return {f"le{int(c)}": float(v) for c, v in zip(points, at)}


# Targets that are statistics of others, non-smooth, or too slow to compute per candidate.
# The annotation-count rows (KS of the count distributions, minimum, 95th percentile) are
# order statistics the campaign's mechanism sets (fitted by calibration/fit_demand.py), not
# the population: checked as fitted rows, never chased by the population's fit.
_NOT_IN_DISTANCE = ("ks", "counts_ks", "min", "p95")


@dataclass(frozen=True)
class Free:
    """A free parameter: dotted path into the parameter mapping and its bounds."""

    path: str
    lo: float
    hi: float
    log: bool = False  # bounds and transform on the log scale (positive, multiplicative parameters)


# The VideoMem population (exponential-asymptote forgetting). Fixed, not fitted: the lapse
# concentration and careless press rate (not separable from lapse_mean / careless_share by
# these statistics) and the RT floor.
VIDEOMEM_FREE: tuple[Free, ...] = (
    Free("videos.memorability.mean", 0.5, 6.0),
    Free("videos.memorability.sd", 0.05, 2.5),
    Free("videos.memorability.skew", -1.5, 1.5),
    Free("videos.short_term_sd", 0.0, 2.0),
    Free("forgetting.rate.mean", -6.0, 3.0),
    Free("forgetting.rate.sd", 0.05, 3.0),
    Free("forgetting.rate_memorability_corr", -0.95, 0.95),
    Free("forgetting.shape.time_constant_s", 30.0, 30000.0, log=True),
    Free("participants.ability_sd", 0.02, 2.0),
    Free("participants.false_alarm.mean", -7.0, -0.5),
    Free("participants.false_alarm.sd", 0.05, 2.5),
    Free("participants.lapse_mean", 0.001, 0.4),
    Free("participants.careless_share", 0.001, 0.4),
    Free("participants.return_probability", 0.05, 0.95),
    Free("participants.rt.hit_log_mean", -1.0, 2.0),
    Free("participants.rt.hit_strength_slope", 0.0, 1.0),
    Free("participants.rt.false_alarm_log_mean", 0.0, 2.5),
    Free("participants.rt.later_step_log_shift", -0.5, 2.0),
    Free("participants.rt.later_step_false_alarm_log_shift", -1.0, 1.5),
    Free("participants.rt.log_sd", 0.1, 1.5),
    Free("videos.rt_sd", 0.0, 1.0),
)


def free_for(params: Params, fixed: tuple[str, ...] = ()) -> tuple[Free, ...]:
    """The free parameters for a parameter set's law, less those held ``fixed``."""
    if params.forgetting.law != "exponential_asymptote":
        # other laws: the same fields, the law's first shape parameter on a log scale

        shape = LAWS[params.forgetting.law].params[0]
        rate = {"positive": (-6.0, 3.0), "real": (-0.02, 0.05), "unit": (-6.0, 3.0)}[
            LAWS[params.forgetting.law].rate_domain
        ]
        # the 'real' domain (linear law): rates are decays per lag position, ~1e-3
        rate_sd = Free("forgetting.rate.sd", 1e-5, 0.02, log=True) if rate[1] < 1 else None
        base = tuple(
            Free(f"forgetting.shape.{shape}", 0.1, 1e5, log=True)
            if f.path.startswith("forgetting.shape")
            else Free(f.path, *rate)
            if f.path == "forgetting.rate.mean"
            else rate_sd
            if f.path == "forgetting.rate.sd" and rate_sd is not None
            else f
            for f in VIDEOMEM_FREE
        )
    else:
        base = VIDEOMEM_FREE
    unknown = set(fixed) - {f.path for f in base}
    if unknown:
        raise UserError(
            f"--fix: unknown free parameter(s) {sorted(unknown)}; free: {[f.path for f in base]}"
        )
    return tuple(f for f in base if f.path not in fixed)


# --------------------------------------------------------------------------- parameter vectors
def _unit(f: Free, v: float) -> float:
    lo, hi, v = (math.log(f.lo), math.log(f.hi), math.log(v)) if f.log else (f.lo, f.hi, v)
    return (v - lo) / (hi - lo)


def to_unconstrained(free: tuple[Free, ...], values: np.ndarray) -> np.ndarray:
    """Bounded values -> the real line (scaled logit; values at a bound are pulled 1e-4 inside)."""
    u = np.array(
        [_unit(f, float(v)) if not (f.log and v <= 0) else 0.0 for f, v in zip(free, values)]
    )
    u = np.clip(u, 1e-4, 1 - 1e-4)
    return np.log(u / (1 - u))


def from_unconstrained(free: tuple[Free, ...], x: np.ndarray) -> np.ndarray:
    u = expit(np.asarray(x, float))
    out = []
    for f, ui in zip(free, u):
        if f.log:
            v = math.exp(math.log(f.lo) + ui * (math.log(f.hi) - math.log(f.lo)))
        else:
            v = f.lo + ui * (f.hi - f.lo)
        out.append(min(max(v, f.lo), f.hi))  # rounding must not step outside the bounds
    return np.array(out)


def with_values(params: Params, free: tuple[Free, ...], values: np.ndarray, **meta) -> Params:
    d = params.dump()
    for f, v in zip(free, values):
        set_path(d, f.path, float(v), create=True)
    d.update(meta)
    return params_from_mapping(d, "<calibration candidate>")


def values_of(params: Params, free: tuple[Free, ...]) -> np.ndarray:
    d = params.dump()
    out = []
    for f in free:
        try:
            out.append(float(get_path(d, f.path)))
        except KeyError:
            out.append(math.sqrt(f.lo * f.hi) if f.log else 0.5 * (f.lo + f.hi))
    return np.array(out)


# --------------------------------------------------------------------------- moments
@dataclass(frozen=True)
class Moment:
    """One term of the distance: the summary value at ``path``, its target, its scale."""

    name: str
    path: tuple[str, ...]
    value: float
    scale: float


def moments_for(
    targets,
    real=None,
    columns: list[str] | None = None,
    scale: float = 1.0,
    count_bins: bool = False,
    count_cdf: bool = False,
    count_corr: bool = False,
) -> list[Moment]:
    """The fitted targets (less the non-smooth KS) and the released scores' rank-bin means.

    On a study shrunk by ``scale``, head counts (``participants_kept``) are targeted at
    ``scale`` times their value; annotations per stimulus are unchanged by scaling.
    ``count_bins`` adds the rank-bin means of the released annotation counts of each scored
    column (``count_quantiles``, scale :data:`COUNT_SCALE`): the counts' shape, which the
    calibration's distance leaves to the campaign's mechanism; a posterior
    (:mod:`memsim.fit.infer`) may be conditioned on it. ``count_corr`` adds the Pearson
    correlation of each pair of consecutive scored columns' annotation counts over the videos
    (:func:`count_correlation`, scale :data:`COUNT_CORR_SCALE`): how far the videos annotated
    more in one step are annotated more in the next.
    """
    out = []
    for t in targets.targets:
        if t.kind != "fit" or t.path[-1] in _NOT_IN_DISTANCE:
            continue
        ts = at_scale(t, scale)  # head counts and their tolerances shrink with the study
        out.append(Moment(t.name, tuple(t.path), ts.value, ts.tolerance))
    if real is not None:
        for c in columns or []:
            if c not in real.columns:
                continue
            for k, v in rank_bin_means(real[c].to_numpy(float)).items():
                out.append(Moment(f"{c} {k}", ("quantiles", c, k), v, QUANTILE_SCALE))
            cc = count_column(c)
            if count_bins and cc in real.columns:
                n = real[cc].to_numpy(float)
                for k, v in rank_bin_means(n[n > 0]).items():
                    out.append(
                        Moment(f"{c} annotations {k}", ("count_quantiles", c, k), v, COUNT_SCALE)
                    )
            if count_cdf and cc in real.columns:
                n = real[cc].to_numpy(float)
                for k, v in count_ecdf(n, count_cdf_points(n)).items():
                    name = f"{c} share at ≤ {k[2:]} annotations"
                    out.append(Moment(name, ("count_cdf", c, k), v, COUNT_CDF_SCALE))
        if count_corr:
            for pair, v in count_correlation(real, columns or []).items():
                name = f"annotation counts' correlation, {pair}"
                out.append(Moment(name, ("count_correlation", pair), v, COUNT_CORR_SCALE))
    return out


def fit_summary(
    result,
    real=None,
    seed: int = 0,
    n_splits: int = 10,
    bins: str = "raw",
    paths: Collection[tuple[str, ...]] | None = None,
) -> dict:
    """The statistics a candidate is judged by, at the same paths as
    :func:`memsim.analysis.consistency.analyse`.

    Skips the slow analyses no fitted target uses (annotation-consistency curves).
    ``paths``: the statistics the caller reads (:attr:`Moment.path`); when given, a step's
    human consistency, the slowest of the rest, is computed only where one of them asks for
    it. Each statistic that is computed has the same value either way (each step's
    half-splits are drawn from ``seed`` alone).
    """

    p = result.protocol
    parts = result.participants
    out: dict = {
        k: {}
        for k in (
            "participants_kept",
            "annotations_per_video",
            "mean_score_raw",
            "mean_score",
            "correction",
            "human_consistency",
            "lag_curve",
            "quantiles",
        )
    }
    for s, spec in enumerate(p.steps, start=1):
        name = spec.name
        out["participants_kept"][name] = int(parts.loc[parts["step"] == s, "kept"].sum())
        v = result.videos[result.videos["step"] == s]
        n = v["annotations"].to_numpy()
        out["annotations_per_video"][name] = {
            "mean": float(n.mean()) if len(n) else math.nan,
            "min": int(n.min()) if len(n) else 0,
            "p95": float(np.percentile(n, 95)) if len(n) else math.nan,
        }
        out["mean_score_raw"][name] = float(v["raw"].mean()) if len(n) else math.nan
        out["mean_score"][name] = float(v["score"].mean()) if len(n) else math.nan
        out["correction"][name] = correction_change(v)
        if paths is None or any(q[:2] == ("human_consistency", name) for q in paths):
            out["human_consistency"][name] = {
                "mean": human_consistency(result, s, n_splits=n_splits, seed=seed)["mean"]
            }
        out["lag_curve"][name] = {"slope": lag_curve(result, s)["slope"]}

    out["quantiles"] = score_quantiles(result, real, seed, bins)
    out["count_quantiles"] = count_quantiles(result)
    if real is not None:
        out["count_cdf"] = count_cdf(result, real)
    out["decay_alpha"] = decay_alpha_summary(result)
    cols = [s.scoring.column for s in p.steps]
    out["count_correlation"] = count_correlation(result.scores, cols)
    out["score_correlation"] = {
        f"{a} ~ {b}": score_correlation(result.scores, a, b) for a, b in zip(cols, cols[1:])
    }
    out["response_times"] = rt_analyses(result)
    if real is not None:
        out["real"] = real_score_comparison(result.scores, real)
    return out


BINS = ("raw", "count-matched")


def count_quantiles(result) -> dict:
    """Rank-bin means of each scored column's annotation counts (the videos it scored)."""
    out = {}
    for spec in result.protocol.steps:
        cc = count_column(spec.scoring.column)
        if cc in result.scores.columns:
            n = result.scores[cc].to_numpy(float)
            n = n[n > 0]
            if n.size:
                out[spec.scoring.column] = rank_bin_means(n)
    return out


def count_cdf(result, real) -> dict:
    """Each scored column's count ECDF (:func:`count_ecdf`) at the released counts'
    :func:`count_cdf_points`."""
    out = {}
    for spec in result.protocol.steps:
        c = spec.scoring.column
        cc = count_column(c)
        if cc in result.scores.columns and cc in real.columns:
            points = count_cdf_points(real[cc].to_numpy(float))
            ecdf = count_ecdf(result.scores[cc].to_numpy(float), points)
            if ecdf:
                out[c] = ecdf
    return out


def score_quantiles(result, real=None, seed: int = 0, bins: str = "raw") -> dict:
    """Rank-bin means of each step's scores.

    With released scores, ``bins`` says which simulated scores: ``raw``, the campaign's own
    scores rounded to the released precision (what the KS acceptance compares), or
    ``count-matched`` (:func:`count_matched_scores`: re-made at the released annotation
    counts, for a campaign whose counts differ from the released ones).
    """

    if bins not in BINS:
        raise UserError(f"bins must be one of {', '.join(BINS)}, got {bins!r}")
    scores = (
        count_matched_scores(result, real, seed)
        if real is not None and bins == "count-matched"
        else result.scores
    )
    out = {}
    for spec in result.protocol.steps:
        c = spec.scoring.column
        if c not in scores.columns:
            continue
        x = scores[c].to_numpy(float)
        if real is not None and c in real.columns:
            x, _ = at_released_precision(x, real[c].to_numpy(float))
        if np.isfinite(x).any():
            out[c] = rank_bin_means(x)
    return out


def simulate_summary(
    protocol,
    params: Params,
    seed: int,
    scale: float,
    real=None,
    full: bool = False,
    bins: str = "raw",
    stimuli_seed: int | None = None,
    simulate=None,
) -> dict:
    """Simulate, score and summarise one campaign (``full``: every analysis of ``memsim run``).

    ``protocol`` may be a :class:`memsim.sim.simulate.PreparedProtocol` (``scale`` is then
    ignored). No DataFrame of the trials is built (:func:`summarise_arrays`). ``stimuli_seed``:
    the stimuli drawn with it (:func:`memsim.sim.simulate.simulate`). ``simulate``: a function
    called as :func:`memsim.sim.simulate.simulate_arrays` is (``(prepared, params, seed,
    stimuli_seed=...)`` to :class:`~memsim.sim.simulate.SimulatedArrays`) that makes the
    campaign instead, e.g. one whose log is merged with another's (``calibration/pilot.py``)."""

    prepared = protocol if isinstance(protocol, PreparedProtocol) else prepare(protocol, scale)
    run = simulate_arrays if simulate is None else simulate
    arrays = run(prepared, params, seed, stimuli_seed=stimuli_seed)
    return summarise_arrays(arrays, real, full=full, bins=bins)


def summarise_arrays(
    arrays,
    real=None,
    full: bool = False,
    bins: str = "raw",
    paths: Collection[tuple[str, ...]] | None = None,
) -> dict:
    """A simulated campaign's statistics (:func:`fit_summary`, or with ``full`` every analysis
    of ``memsim run``), scored from its arrays (:class:`memsim.sim.simulate.SimulatedArrays`):
    what :func:`memsim.sim.batch.simulate_many` reduces each run to in a calibration.
    ``paths``: as :func:`fit_summary`'s (not with ``full``)."""

    seed = arrays.seed
    result = score(arrays.trials, arrays.protocol, validate=False)
    if not full:
        return fit_summary(result, real, seed=seed, bins=bins, paths=paths)
    summary = analyse(result, truth=arrays.videos_frame(), seed=seed)
    if real is not None:
        summary["real"] = real_score_comparison(result.scores, real)
    summary["quantiles"] = score_quantiles(result, real, seed, bins)
    if real is not None:
        matched = count_matched_scores(result, real, seed)

        summary["count_matched"] = {
            c: {"ks": ks_distance(matched[c].to_numpy(float), real[c].to_numpy(float))}
            for c in matched.columns
            if c in real.columns
        }
        summary["_matched"] = matched  # for figures
    summary["_scores"] = result.scores  # for figures; dropped before JSON
    return summary


def count_matched_scores(result, real, seed: int = 0) -> pd.DataFrame:
    """Simulated scores re-made with the released annotation counts: like with like.

    Scores are fractions k/n, so two score sets whose annotation counts differ sit on
    different lattices and their KS distance is large even when their shapes agree. Here
    each simulated video gets a count from the released counts of its step (given out by
    rank: the video with most annotations gets the largest; capped at what it has), keeps
    that many of its annotations at random, and is scored again by the step's own
    correction (refitted), then rounded to the released 3 decimals.
    """

    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 4242]))
    out = {}
    V = len(result.video_ids)
    for s, spec in enumerate(result.protocol.steps, start=1):
        col = spec.scoring.column
        cc = count_column(col)
        if col not in real.columns or cc not in real.columns:
            continue
        t = result.tests[s - 1]
        have = np.bincount(t.video, minlength=V)
        # released counts, resampled to the scored videos and given out by rank (most annotated
        # gets most), so capping at what a simulated video has distorts as little as possible. Only
        # scored
        # videos take part on both sides (a count of 0 has no score to match).
        rel = np.sort(real[cc].to_numpy(np.int64))
        rel = rel[rel > 0]
        scored = np.flatnonzero(have > 0)
        m = scored.size
        drawn = rel[np.floor((np.arange(m) + rng.random(m)) / m * len(rel)).astype(np.int64)]
        by_have = scored[np.lexsort((rng.random(m), have[scored]))]
        want = np.zeros(V, np.int64)
        want[by_have] = drawn
        want = np.minimum(want, have)
        # a random rank of each annotation within its video: keep ranks below the wanted count
        order = np.lexsort((rng.random(len(t.video)), t.video))
        starts = np.concatenate([[0], np.cumsum(have)[:-1]])
        rank = np.empty(len(order), np.int64)
        rank[order] = np.arange(len(order)) - np.repeat(starts, have)
        keep = rank < want[t.video]

        sums = video_sums(
            t.video, t.hit, correction_x(spec.scoring.correction, t.lag), V, mask=keep
        )
        sc, _ = correct(sums, spec.scoring.correction)
        out[col] = np.where(sums.n > 0, np.round(sc, 3), np.nan)
    return pd.DataFrame(out)


NOISE_SEEDS = (10_001, 10_002, 10_003, 10_004)


def _noise_eval(job: tuple) -> dict:
    protocol, params, seed, real, bins = job

    numba.set_num_threads(1)
    return simulate_summary(protocol, params, seed, 1.0, real, bins=bins)


def with_noise(
    moments: list[Moment],
    protocol,
    params: Params,
    real=None,
    *,
    seeds=NOISE_SEEDS,
    workers: int = 2,
    bins: str = "raw",
) -> tuple[list[Moment], np.ndarray]:
    """Each moment's scale widened by its sampling noise: ``sqrt(scale**2 + sd**2)``.

    ``sd`` is the moment's standard deviation over ``seeds`` at ``params`` on ``protocol`` (the
    study as the search simulates it). A statistic that the shrunken study measures no better
    than its tolerance (the extreme rank bins of 450 videos) must not outweigh the rest: the
    optimiser would chase that candidate's noise. Returns the moments and the sds.
    """

    jobs = [(protocol, params, int(sd), real, bins) for sd in seeds]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(
            min(workers, len(jobs)),
            mp_context=spawn_context(),
            initializer=in_worker,
            initargs=(os.getpid(),),
        ) as pool:
            summaries = list(pool.map(_noise_eval, jobs))
    else:
        summaries = [
            simulate_summary(protocol, params, int(sd), 1.0, real, bins=bins) for sd in seeds
        ]
    sds = np.zeros(len(moments))
    for i, m in enumerate(moments):
        v = np.array([lookup(s, m.path) for s in summaries], float)
        v = v[np.isfinite(v)]
        sds[i] = v.std(ddof=1) if v.size > 1 else 0.0
    out = [replace(m, scale=float(math.hypot(m.scale, sd))) for m, sd in zip(moments, sds)]
    return out, sds


def residuals(summaries: list[dict], moments: list[Moment]) -> np.ndarray:
    """Per moment: (mean over seeds - target) / scale; a missing statistic counts as 10 scales
    off."""

    r = np.empty(len(moments))
    for i, m in enumerate(moments):
        vals = np.array([lookup(s, m.path) for s in summaries], float)
        vals = vals[np.isfinite(vals)]
        r[i] = (vals.mean() - m.value) / m.scale if vals.size else 10.0
    return r


# --------------------------------------------------------------------------- the evaluation log
def read_log(path: Path, n_free: int | None = None) -> list[dict]:
    """An evaluation log's rows, checked: a header, then candidates (a torn last line dropped).

    Anything else (a binary file, another program's JSON, a damaged line before the last)
    is a one-line UserError: ``not a memsim evaluation log (...)``.
    """

    def bad(why: str) -> UserError:
        return UserError(f"not a memsim evaluation log ({why})", path=path)

    try:
        lines = read_text(path, "evaluation log").splitlines()
    except UserError as exc:
        raise bad(str(exc).removeprefix(f"{path}: ")) from None
    rows = []
    for i, ln in enumerate(lines):
        try:
            row = json.loads(ln)
        except ValueError:  # JSONDecodeError, or an integer of thousands of digits
            row = None
        ok = isinstance(row, dict) and (
            ("header" in row and isinstance(row["header"], dict))
            if i == 0
            else (
                isinstance(row.get("x"), list)
                and (n_free is None or len(row["x"]) == n_free)
                and all(isinstance(v, (int, float)) for v in row["x"])
                and isinstance(row.get("residuals"), list)
                and isinstance(row.get("distance"), (int, float))
            )
        )
        if ok:
            rows.append(row)
        elif i == len(lines) - 1 and i > 0:
            continue  # a torn last line: the process was killed while writing it
        elif i == 0:
            raise bad("its first line is not a memsim header")
        else:
            raise bad(f"line {i + 1} is not an evaluated candidate")
    if not rows:
        raise bad("it is empty")
    return rows


def check_log(path: Path, resume: bool, force: bool) -> bool:
    """Refuse to replace an evaluation log without ``resume`` or ``force``; True if it exists.

    Checked before any work, so that a fit never silently throws away an earlier one.
    """

    if resume and force:
        raise UserError("--resume continues a fit and --force starts over: give one of them")
    existed = check_output(path, "file")
    if existed and not resume and not force:
        raise UserError(
            "an evaluation log of an earlier fit is there: --resume continues that fit, "
            "--force starts over (replacing the log)",
            path=path,
        )
    if existed and resume:
        read_log(path)  # a file that is not such a log is refused before any work
    return existed


class EvalLog:
    """Append-only JSON-lines log of evaluated candidates, keyed by unconstrained coordinates.

    Each line is written whole and flushed to disk before the next candidate starts; a
    torn last line (a killed process) is ignored on reading. The first line states the
    settings; resuming with other settings is refused, and so is a file that is not such a
    log. An existing log is replaced only with ``force`` (without ``resume``).
    """

    def __init__(self, path: Path, header: dict, resume: bool, force: bool = False) -> None:
        self.path = Path(path)
        self.cache: dict[tuple, dict] = {}
        self._forget = forget_output
        existed = check_log(self.path, resume, force)
        if resume and existed:
            rows = read_log(self.path, len(header["free"]) if "free" in header else None)
            if rows[0].get("header") != header:
                raise UserError(
                    "--resume: the log was written with other settings "
                    "(protocol, targets, scale, seeds or free parameters); remove it or drop "
                    "--resume",
                    path=self.path,
                )
            for row in rows[1:]:
                self.cache[self.key(row["x"])] = row
            # rewrite without a torn tail so later appends start on a fresh line
            self._rewrite([{"header": header}] + rows[1:])
        else:
            make_dirs(self.path.parent)
            self._write({"header": header}, mode="w")
            if not existed:
                record_output(self.path)  # only a header: removed if the command fails
        self.replayed = 0

    @staticmethod
    def key(x) -> tuple:
        return tuple(round(float(v), 9) for v in x)

    def _write(self, row: dict, mode: str = "a") -> None:
        with open(self.path, mode) as fh:
            fh.write(json.dumps(row, allow_nan=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _rewrite(self, rows: list[dict]) -> None:
        write_text_atomic(self.path, "".join(json.dumps(r, allow_nan=True) + "\n" for r in rows))

    def get(self, x) -> dict | None:
        return self.cache.get(self.key(x))

    def add(self, row: dict) -> None:
        self.cache[self.key(row["x"])] = row
        self._write(row)
        self._forget(self.path)  # holds a candidate: resumable, kept whatever happens next


# --------------------------------------------------------------------------- parallel evaluation
_W: dict = {}


def _worker_init(
    protocol, params, free, seeds, scale, real, bins="raw", paths=None, threads=1
) -> None:
    numba.set_num_threads(threads)  # one process per core; no oversubscription
    _W.update(
        prepared=prepare(protocol, scale),  # once per worker, for every candidate
        params=params,
        free=free,
        seeds=seeds,
        real=real,
        bins=bins,
        paths=paths,  # the moments' paths: only the analyses they read (fit_summary)
        workspace={},
    )


def _worker_eval(x: tuple, seeds: tuple[int, ...] | None = None) -> list[dict]:
    """The summaries of candidate ``x`` at ``seeds`` (default: the fit's), or its error."""
    vals = from_unconstrained(_W["free"], np.array(x))
    p = with_values(_W["params"], _W["free"], vals)
    try:
        # the candidate's common-random-number seeds in one batch: statistics only, no tables
        return simulate_many(
            _W["prepared"],
            [(p, seed) for seed in (_W["seeds"] if seeds is None else seeds)],
            functools.partial(
                summarise_arrays, real=_W["real"], bins=_W["bins"], paths=_W["paths"]
            ),
            workspace=_W["workspace"],
        )
    except (ValueError, ZeroDivisionError, IndexError, UserError) as exc:
        # a corner of the parameter box where the study degenerates (e.g. nobody kept):
        # the candidate gets the missing-statistic penalty, and the log says why
        return [{"error": f"{type(exc).__name__}: {exc}"}]


class _Budget(Exception):
    pass


METHODS = ("trf", "dfols")
# DFO-LS works in the unit box of the free parameters (each one's [lo, hi], on the log scale
# for log parameters): its first trust region is a tenth of every range, its last a
# thousandth (the budget or the moments' noise ends a fit before that).
DFOLS_RHOBEG = 0.1
DFOLS_RHOEND = 1e-3
DFOLS_SEED = 2718  # DFO-LS draws its restarts' directions from numpy's global generator


def _dfols_local(ev: Evaluator, x0: np.ndarray, budget: int) -> str:
    """One DFO-LS run from ``x0`` (unconstrained coordinates) over the unit box; every
    candidate goes through ``ev`` (logged, charged to the budget, reported). The run is
    deterministic: numpy's global generator, which DFO-LS draws from, is seeded for the run
    and restored after it."""
    import dfols

    lo, hi = 1e-4, 1 - 1e-4  # the unconstrained coordinates' own clip (to_unconstrained)

    def fun(u):
        u = np.clip(np.asarray(u, float), lo, hi)
        return ev.many([np.log(u / (1 - u))])[0]

    state = np.random.get_state()
    np.random.seed(DFOLS_SEED)
    try:
        soln = dfols.solve(
            fun,
            np.clip(expit(np.asarray(x0, float)), lo, hi),
            bounds=(np.full(len(x0), lo), np.full(len(x0), hi)),
            rhobeg=DFOLS_RHOBEG,
            rhoend=DFOLS_RHOEND,
            maxfun=10 * budget,
            objfun_has_noise=True,
            do_logging=False,
        )
    finally:
        np.random.set_state(state)
    return f"DFO-LS: {soln.msg.rstrip('.')}"


@dataclass
class Evaluator:
    """Residuals of candidates in unconstrained coordinates, cached in an :class:`EvalLog`, run in a
    pool."""

    protocol: object
    params: Params
    free: tuple[Free, ...]
    moments: list[Moment]
    seeds: tuple[int, ...]
    scale: float
    real: object
    log: EvalLog
    budget: int
    workers: int = 2
    on_eval: Callable[[dict], None] | None = None
    bins: str = "raw"
    best: dict | None = None
    local_best: dict | None = None
    n_new: int = 0
    n_charged: int = 0
    charged: set = field(default_factory=set, repr=False)
    replay_only: bool = False
    phase: tuple[str, int] = ("", 0)  # the start being run and its share of the budget
    pool: ProcessPoolExecutor | None = field(default=None, repr=False)

    def __enter__(self):
        if self.workers > 1:
            self.pool = ProcessPoolExecutor(
                self.workers,
                mp_context=spawn_context(),
                initializer=in_worker,
                initargs=(
                    os.getpid(),
                    _worker_init,
                    self.protocol,
                    self.params,
                    self.free,
                    self.seeds,
                    self.scale,
                    self.real,
                    self.bins,
                    [m.path for m in self.moments],
                ),
            )
        else:
            _worker_init(
                self.protocol,
                self.params,
                self.free,
                self.seeds,
                self.scale,
                self.real,
                self.bins,
                [m.path for m in self.moments],
                numba.config.NUMBA_NUM_THREADS,
            )
        return self

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def _report(self, row: dict) -> None:
        if self.on_eval:
            name, share = self.phase
            self.on_eval({**row, "phase": name, "phase_budget": share} if name else row)

    def many(self, xs: list[np.ndarray], partial: bool = True) -> list[np.ndarray]:
        """Residual vectors for several candidates; new ones simulated in parallel.

        The budget counts every candidate the first time this fit asks for it, whether it is
        simulated now or replayed from the log of an interrupted run: a resumed fit stops
        where the uninterrupted one would have, with the same result. Past the budget, the
        candidates that still fit in it are simulated (``partial``), then :class:`_Budget` is
        raised: a budget of N candidates charges N, whatever the batch. Each new candidate is
        reported as soon as it is done.
        """
        rows: list[dict | None] = [self.log.get(x) for x in xs]
        todo = [i for i, r in enumerate(rows) if r is None]
        keys = [self.log.key(x) for x in xs]
        fresh: list[int] = []  # first time this fit asks for the candidate (once per key)
        seen: set = set()
        for i, k in enumerate(keys):
            if k not in self.charged and k not in seen:
                fresh.append(i)
                seen.add(k)
        over = (bool(todo) and self.replay_only) or (
            bool(fresh) and self.n_charged + len(fresh) > self.budget
        )
        if over:
            room = 0 if self.replay_only or not partial else max(self.budget - self.n_charged, 0)
            fresh = fresh[:room]
            allowed = {keys[i] for i in fresh} | self.charged
            todo = [i for i in todo if keys[i] in allowed]
        self.n_charged += len(fresh)
        self.charged.update(keys[i] for i in fresh)
        if todo:
            t0 = time.perf_counter()
            keys = [tuple(float(v) for v in xs[i]) for i in todo]
            if self.pool is not None:
                results = self._in_pool(keys)  # in order, as each is done
            else:
                results = (_worker_eval(k) for k in keys)
            for n, (i, summaries) in enumerate(zip(todo, results), start=1):
                r = residuals(summaries, self.moments)
                vals = from_unconstrained(self.free, xs[i])
                row = {
                    "x": [float(v) for v in xs[i]],
                    "values": {f.path: float(v) for f, v in zip(self.free, vals)},
                    "residuals": [float(v) for v in r],
                    "distance": float(np.sum(r * r)),
                    **({"error": summaries[0]["error"]} if "error" in summaries[0] else {}),
                    "seconds": (time.perf_counter() - t0) / n,
                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
                self.log.add(row)
                self.n_new += 1
                rows[i] = row
                self._track(row)
                self._report(row)
        if over:
            raise _Budget()
        if not todo:
            self.log.replayed += len(xs)
        new = set(todo)
        for i, row in enumerate(rows):
            if i not in new:  # cached: report it now (new ones were reported as done)
                self._track(row)
                self._report(row)
        return [np.array(row["residuals"]) for row in rows]

    def _in_pool(self, keys: list[tuple]):
        """Each candidate's summaries, in order. Fewer candidates than workers (a line
        search's single step, every candidate of a sequential optimiser): each candidate's
        seeds are shared out among the workers, so none idles; the summaries are the same
        (each seed's campaign is simulated on its own), in the same order."""
        if len(keys) >= self.workers or len(self.seeds) < 2:
            yield from self.pool.map(_worker_eval, keys)
            return
        parts = max(1, min(self.workers // len(keys), len(self.seeds)))
        chunks = [tuple(int(s) for s in c) for c in np.array_split(self.seeds, parts)]
        futures = [[self.pool.submit(_worker_eval, k, c) for c in chunks] for k in keys]
        for fs in futures:
            out = [f.result() for f in fs]
            failed = [o for o in out if "error" in o[0]]
            # a failed seed fails the candidate, as in one batch
            yield failed[0] if failed else [s for o in out for s in o]

    def _track(self, row: dict) -> None:
        if self.best is None or row["distance"] < self.best["distance"]:
            self.best = row
        if self.local_best is None or row["distance"] < self.local_best["distance"]:
            self.local_best = row


def calibrate(
    protocol,
    start: Params,
    targets,
    *,
    real=None,
    scale: float = 0.3,
    seeds=(1,),
    budget: int = 400,
    workers: int = 2,
    log_path: Path,
    resume: bool = False,
    force: bool = False,
    fixed: tuple[str, ...] = (),
    step: float = 0.05,
    restarts: int = 3,
    starts: int = 1,
    start_spread: float = 1.0,
    screen: int = 0,
    noise_seeds=NOISE_SEEDS,
    bins: str = "raw",
    on_eval=None,
    replay_only: bool = False,
    method: str = "trf",
    counts: bool = False,
) -> dict:
    """Fit ``start``'s free parameters to ``targets``; returns a dict with the fitted ``params``.

    Parameters
    ----------
    scale : the protocol is shrunk by this factor for the search (annotations per video kept).
    seeds : common random numbers: every candidate is simulated with these seeds.
    budget : the most candidates of the fit, those replayed from the log of an interrupted run
        included (repeats within the fit are free); a resumed fit ends where the uninterrupted
        one would have.
    replay_only : with ``resume``, walk the logged path and stop at the first candidate the
        log does not hold, simulating none: the result the logged run had reached (the
        search stage of ``--polish --resume``, whose polish started from that result).
    step : forward-difference step in unconstrained coordinates.
    restarts : most restarts of the optimiser from the best candidate so far.
    starts, start_spread : multi-start: the start and ``starts - 1`` points drawn around it
        (normal, sd ``start_spread`` in unconstrained units).
    screen : first evaluate this many points spread over the whole box (a scrambled Sobol
        sequence, fixed seed); the other starts are then the best of them, not draws around
        the start. A global look for the basins a local fit from one start cannot see.
    noise_seeds : seeds that measure each moment's sampling noise at the start (:func:`with_noise`);
        empty: scales are the tolerances alone.
    bins : which simulated scores the rank bins are taken from (:func:`score_quantiles`).
    method : the local optimiser. ``"trf"``: scipy's trust-region reflective least squares on a
        forward-difference Jacobian (one candidate per free parameter at every step), restarted
        from the best candidate while that gains. ``"dfols"``: DFO-LS (Cartis, Fiala, Marteau
        and Roberts 2019), a derivative-free Gauss-Newton method that keeps a linear model of
        the residuals through the last ``n + 1`` candidates and replaces one of them a step, so
        that after the first ``n + 1`` every candidate is a step; its noisy-objective settings
        (slow trust-region shrinking, soft restarts) are on.
    counts : the distance also reads the shape of the released annotation counts: each scored
        step's share of videos at or below the released counts' values at 13 levels
        (:func:`count_cdf_points`; a share off by 0.05, the count KS tolerance, is one unit).
        Who is kept (the careless share, the filters' pass rate) sets the counts, which the
        scores alone leave loose.
    """
    if method not in METHODS:
        raise UserError(f"unknown method {method!r}; one of {', '.join(METHODS)}")
    # the optimiser and Sobol points only here: a worker process (which imports this module
    # for its candidates) needs neither
    from scipy.optimize import least_squares
    from scipy.stats import qmc

    if replay_only and not resume:  # before the log is opened: without resume it is rewritten
        raise ValueError("replay_only needs resume")
    check_log(Path(log_path), resume, force)  # before the work
    check_seeds(seeds)
    free = free_for(start, fixed)
    columns = [s.scoring.column for s in protocol.steps]
    moments = moments_for(targets, real, columns, scale, count_cdf=counts)
    if not moments:
        raise UserError("no 'fit' targets to calibrate against", path=targets.name)
    scaled = scale_protocol(protocol, scale)
    if noise_seeds:
        moments, _ = with_noise(
            moments, scaled, start, real, seeds=tuple(noise_seeds), workers=workers, bins=bins
        )
    header = {
        "protocol": protocol.name,
        "targets": targets.name,
        "scale": scale,
        "seeds": list(seeds),
        "free": [[f.path, f.lo, f.hi, f.log] for f in free],
        "start": start.name,
        "moments": [m.name for m in moments],
        "step": step,
        "moment_scales": [round(m.scale, 12) for m in moments],
        "bins": bins,
    }
    if starts > 1:
        header.update(starts=starts, start_spread=start_spread)
    if screen:
        header.update(screen=screen)
    if method != "trf":  # logs of TRF fits keep the header they always had
        header.update(method=method)
    if counts:
        header.update(counts=True)
    log = EvalLog(log_path, header, resume, force)
    x0 = to_unconstrained(free, values_of(start, free))
    ev = Evaluator(
        scaled,
        start,
        free,
        moments,
        tuple(seeds),
        1.0,
        real,
        log,
        budget,
        workers,
        on_eval,
        bins,
        replay_only=replay_only,
    )
    # ``scaled`` is already shrunk; workers simulate it at scale 1.
    t0 = time.perf_counter()
    stopped = "converged"
    with ev:

        def fun(x):
            return ev.many([x])[0]

        def jac(x, f0=None):
            xs = []
            for j in range(len(x)):
                e = x.copy()
                e[j] += step
                xs.append(e)
            f0 = ev.many([x])[0] if f0 is None else f0
            cols = ev.many(xs)
            return np.stack([(c - f0) / step for c in cols], axis=1)

        def local(x) -> str:
            if method == "dfols":
                return _dfols_local(ev, x, budget)
            # TRF stops once noise makes its trust region collapse; restarting from the best
            # candidate of this start (a fresh region) often goes on. Stop when a restart
            # gains < 1 %.
            ev.local_best = None
            runs, prev, msg = 0, math.inf, ""
            while True:
                res = least_squares(
                    fun,
                    x,
                    jac=lambda x: jac(x),
                    method="trf",
                    x_scale=1.0,
                    max_nfev=10 * budget,
                    xtol=1e-5,
                    ftol=1e-4,
                    gtol=1e-6,
                )
                runs += 1
                before = ev.local_best["distance"]
                msg = f"{res.message.rstrip('.')} ({runs} run{'s' if runs > 1 else ''})"
                if runs > 1 and prev - before < 0.01 * prev or runs > restarts:
                    return msg
                prev = before
                x = np.array(ev.local_best["x"])

        # Multi-start: the given start, then ``starts - 1`` others drawn around it (a fixed
        # seed per start, so a resumed fit draws the same ones), each with an equal share of
        # the budget; the best of all is polished with what is left.
        if screen:
            u = np.clip(qmc.Sobol(len(x0), scramble=True, seed=2718).random(screen), 1e-4, 1 - 1e-4)
            pts = list(np.log(u / (1 - u)))
            ev.budget = budget
            try:
                dist = [float(np.sum(r * r)) for r in ev.many(pts, partial=False)]
            except _Budget:
                raise UserError(
                    f"--screen {screen} needs more than the budget of {budget} evaluations"
                ) from None
            best = np.argsort(dist, kind="stable")[: max(starts - 1, 0)]
            xs0 = [x0] + [pts[i] for i in best]
        else:
            xs0 = [x0] + [
                x0
                + start_spread
                * np.random.default_rng(np.random.SeedSequence([k, 2718])).standard_normal(len(x0))
                for k in range(1, starts)
            ]
        # each start's share of the budget, in candidates; the best start is polished with
        # what is left
        left = budget - ev.n_charged
        share = left // (starts + 1) if starts > 1 else left
        phases: list[dict] = []

        def phase(name: str, x, cap: int) -> str:
            first = ev.n_charged
            ev.budget, ev.phase = cap, (name, cap - first)
            try:
                msg = local(x)
            except _Budget:
                msg = (
                    "its share of the budget spent"
                    if cap < budget
                    else f"budget of {budget} evaluations spent"
                )
            best = ev.local_best["distance"] if ev.local_best else float("nan")
            phases.append(
                {
                    "phase": name or "search",
                    "share": cap - first,
                    "used": ev.n_charged - first,
                    "distance": best,
                    "stopped": msg,
                }
            )
            return msg

        if starts == 1:
            stopped = phase("", xs0[0], budget)
        else:
            for k, xk in enumerate(xs0):
                phase(f"start {k + 1} of {starts}", xk, min(budget, ev.n_charged + share))
            best_x = np.array(ev.best["x"]) if ev.best is not None else xs0[0]
            stopped = "best start polished: " + phase("best start polished", best_x, budget)
    if replay_only:
        if ev.best is None:
            raise UserError(
                "--resume: the log holds none of the search's candidates; remove "
                "the logs or drop --resume",
                path=log_path,
            )
        stopped = "replayed from the log"
    best = ev.best
    xb = np.array(best["x"])
    vals = from_unconstrained(free, xb)
    fitted = with_values(start, free, vals)
    return {
        "params": fitted,
        "free": free,
        "moments": moments,
        "best": best,
        "stopped": stopped,
        "evaluations": len(log.cache),
        "new_evaluations": ev.n_new,
        "phases": phases,
        "seconds": time.perf_counter() - t0,
        "method": method,
        "counts": counts,
    }


def fitted_note(out: dict, scale: float, seeds, targets_name: str, released: bool = True) -> str:
    against = f"{targets_name} targets" + (
        " and the released score distributions" if released else ""
    )
    return (
        f"fitted by `memsim calibrate` on {time.strftime('%Y-%m-%d', time.gmtime())} against "
        f"{against}{' and annotation counts' if out.get('counts') else ''}: least squares "
        f"({'DFO-LS' if out.get('method') == 'dfols' else 'TRF'}) over "
        f"{len(out['free'])} free parameters, scale {scale}, seeds {list(seeds)} (common random "
        "numbers), "
        f"{out['evaluations']} candidates, distance {out['best']['distance']:.2f}; "
        f"check it at full scale with `memsim fit-report` (docs/calibration.md)"
    )


def dump_params_yaml(params: Params, header: str = "") -> str:
    text = yaml.safe_dump(params.dump(), sort_keys=False, default_flow_style=None, width=100)
    lines = "".join(f"# {ln}\n" for ln in header.splitlines())
    return lines + text


# --------------------------------------------------------------------------- search, polish, file
@dataclass(frozen=True)
class Calibration:
    """A finished calibration: :func:`calibrate_to_file`'s result.

    Attributes
    ----------
    params : Params
        The fitted set (``calibrated`` true, ``note`` saying how it was fitted).
    stages : tuple of dict
        :func:`calibrate`'s result per stage: the search, then the full-scale polish if any
        (``stopped``, ``evaluations``, ``new_evaluations``, ``seconds``, ``best``, ``moments``).
    path : Path
        The fitted parameter file written.
    logs : tuple of Path
        The evaluation logs (the search's, then the polish's).
    """

    params: Params
    stages: tuple
    path: Path
    logs: tuple

    def __repr__(self) -> str:  # a line, not the stages (a notebook prints it)
        best = self.result.get("best", {})
        dist = best.get("distance")
        shown = f"{dist:.3f}" if isinstance(dist, (int, float)) else "n/a"
        return (
            f"Calibration(path={str(self.path)!r}, params={self.params.name!r}, "
            f"stages={len(self.stages)}, distance={shown})"
        )

    @property
    def result(self) -> dict:
        """The last stage's result."""
        return self.stages[-1]

    def largest_residuals(self, n: int = 5) -> list[tuple[str, float]]:
        """The ``n`` moments furthest from their targets, in tolerances (signed)."""
        r = self.result
        pairs = [(m.name, float(x)) for m, x in zip(r["moments"], r["best"]["residuals"])]
        return sorted(pairs, key=lambda t: -abs(t[1]))[:n]


def polish_log_path(out_path: Path) -> Path:
    """The polish stage's evaluation log beside the fitted file."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.name + ".polish.evals.jsonl")


def regenerate_command(
    protocol_arg,
    out,
    *,
    start=None,
    targets=None,
    scale=0.3,
    seeds=(1,),
    budget=400,
    starts=1,
    screen=0,
    polish=0,
    polish_seeds=None,
    fixed=(),
    bins="raw",
    method="trf",
    counts=False,
) -> str:
    """The ``memsim calibrate`` command that gives the same fit: every option that changes the
    result (the start, targets, starts, screen, held parameters), none that only changes the
    speed (workers) or where files go (data, resume)."""
    parts = ["memsim calibrate", str(protocol_arg), "--out", str(out)]
    if start:
        parts += ["--start", str(start)]
    if targets:
        parts += ["--targets", str(targets)]
    parts += ["--scale", str(scale), "--seeds", *map(str, seeds), "--budget", str(budget)]
    if starts > 1:
        parts += ["--starts", str(starts)]
    if screen:
        parts += ["--screen", str(screen)]
    if polish:
        parts += ["--polish", str(polish)]
        if polish_seeds:
            parts += ["--polish-seeds", *map(str, polish_seeds)]
    if fixed:
        parts += ["--fix", *fixed]
    parts += ["--bins", bins]
    if method != "trf":
        parts += ["--method", method]
    if counts:
        parts += ["--counts"]
    return " ".join(parts)


def check_seeds(seeds, *, empty_ok: bool = True) -> None:
    """Every seed in ``[0, 2**63)`` (one-line UserError otherwise); ``empty_ok=False``: at
    least one."""
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise UserError(f"--seeds: expected a list of seeds, got {type(seeds).__name__}")
    seeds = list(seeds)
    if not seeds and not empty_ok:
        raise UserError("--seeds: give at least one seed")
    for s in seeds:
        check_seed(s, "--seeds: a seed")


def _all_failed(res: dict, log_path: Path) -> None:
    """Refuse to write a fit whose best candidate failed: then every candidate did."""
    err = res["best"].get("error")
    if err:
        raise UserError(
            f"every candidate failed to simulate (first error: {err}); no parameter file "
            f"written (the candidates are in {log_path})"
        )


def calibrate_to_file(
    protocol,
    start: Params,
    targets,
    *,
    out: str | os.PathLike[str],
    real=None,
    scale: float = 0.3,
    seeds=(1,),
    budget: int = 400,
    workers: int = 2,
    fixed: tuple[str, ...] = (),
    starts: int = 1,
    screen: int = 0,
    polish: int = 0,
    polish_seeds=None,
    resume: bool = False,
    force: bool = False,
    name: str | None = None,
    bins: str = "raw",
    on_eval: Callable[[str, int, dict], None] | None = None,
    on_start: Callable[[], None] | None = None,
    regenerate: str = "",
    method: str = "trf",
    counts: bool = False,
) -> Calibration:
    """Search at ``scale``, optionally polish at full scale, and write the fitted set to ``out``.

    The search logs every candidate in ``<out>.evals.jsonl``, the polish in
    ``<out>.polish.evals.jsonl``; with ``resume`` both are replayed, and once the polish has
    begun the search is replayed from its log without simulating anything, so the polish
    resumes from the point it started from. ``on_eval(stage, budget, row)`` is called after
    every candidate (``stage``: "calibrate" or "polish at full scale"; with several starts,
    "calibrate, start 2 of 3" and so on, ``budget`` then that start's share); ``on_start()``
    once the arguments and the output paths are checked, before the work (worker processes,
    the noise of the moments, compilation) begins. ``regenerate``: the
    command written in the file's header (default: :func:`regenerate_command` of these
    arguments).

    Logs of an earlier fit into the same ``out`` are replaced only with ``force``; a fit
    whose every candidate failed writes nothing (a one-line UserError with the first
    candidate's error).
    """

    if not (0.0 < scale <= 1.0):
        raise UserError(f"--scale must be in (0, 1], got {scale}")
    if budget < 1 or workers < 1 or starts < 1:
        raise UserError("--budget, --workers and --starts must be at least 1")
    if screen < 0 or polish < 0:
        raise UserError("--screen and --polish must be 0 or more")
    if method not in METHODS:
        raise UserError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if polish_seeds is not None and not polish:
        raise UserError("--polish-seeds needs --polish BUDGET")
    out_path = Path(out)
    log_path = out_path.with_name(out_path.name + ".evals.jsonl")
    check_seeds(seeds, empty_ok=False)
    check_seeds(polish_seeds or ())
    check_output(out_path, "file")
    for path in (log_path, polish_log_path(out_path)) if polish else (log_path,):
        check_log(path, resume, force)  # before any work
    if on_start is not None:
        on_start()
    if not regenerate:
        regenerate = regenerate_command(
            protocol.name,
            out_path,
            scale=scale,
            seeds=seeds,
            budget=budget,
            starts=starts,
            screen=screen,
            polish=polish,
            polish_seeds=polish_seeds,
            fixed=fixed,
            bins=bins,
            method=method,
            counts=counts,
        )
    polish_seeds = tuple(polish_seeds or seeds)

    def stage_callback(stage: str, stage_budget: int):
        if on_eval is None:
            return None

        def report(row: dict) -> None:  # a multi-start search reports each start's share
            if "phase" in row:
                on_eval(f"{stage}, {row['phase']}", row["phase_budget"], row)
            else:
                on_eval(stage, stage_budget, row)

        return report

    common = dict(
        real=real,
        workers=workers,
        resume=resume,
        force=force,
        fixed=tuple(fixed),
        bins=bins,
        method=method,
        counts=counts,
    )
    # resuming a run whose polish had begun: the search is replayed from its log, not carried
    # on, so that the polish resumes from the point it started from
    replay = bool(polish and resume and polish_log_path(out_path).exists() and log_path.exists())
    res = calibrate(
        protocol,
        start,
        targets,
        scale=scale,
        seeds=tuple(seeds),
        budget=budget,
        log_path=log_path,
        starts=starts,
        screen=screen,
        on_eval=stage_callback("calibrate", budget),
        replay_only=replay,
        **common,
    )
    _all_failed(res, log_path)
    stages = [res]
    logs = [log_path]
    if polish:
        res = calibrate(
            protocol,
            res["params"],
            targets,
            scale=1.0,
            seeds=polish_seeds,
            budget=polish,
            log_path=polish_log_path(out_path),
            on_eval=stage_callback("polish at full scale", polish),
            **common,
        )
        _all_failed(res, polish_log_path(out_path))
        stages.append(res)
        logs.append(polish_log_path(out_path))
    if polish:
        first = stages[0]
        note = fitted_note(res, 1.0, polish_seeds, targets.name, real is not None) + (
            f"; refined from a search at scale {scale}, seeds {list(seeds)}: "
            f"{first['evaluations']} candidates, distance {first['best']['distance']:.2f}"
        )
    else:
        note = fitted_note(res, scale, seeds, targets.name, real is not None)
    fitted = res["params"].model_copy(
        update={"name": name or out_path.stem, "calibrated": True, "note": note}
    )
    header = (
        f"Fitted population parameters for {protocol.name}: CALIBRATED by `memsim calibrate`.\n"
        f"Regenerate: {regenerate}\n"
        f"Fields: docs/model.md; method and fit: docs/calibration.md"
    )
    write_text_atomic(out_path, dump_params_yaml(fitted, header))
    return Calibration(params=fitted, stages=tuple(stages), path=out_path, logs=tuple(logs))
