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

import json
import math
import os
import re
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from memsim.errors import UserError
from memsim.sim.params import Params, params_from_mapping

__all__ = [
    "Free",
    "Moment",
    "VIDEOMEM_FREE",
    "free_for",
    "set_path",
    "get_path",
    "to_unconstrained",
    "from_unconstrained",
    "moments_for",
    "fit_summary",
    "Evaluator",
    "calibrate",
    "EvalLog",
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


def rank_bin_means(x: np.ndarray) -> dict:
    """Mean of the sorted scores within each rank bin of :data:`RANK_BINS`, keyed ``b05-10`` etc."""
    x = np.sort(x[np.isfinite(x)])
    edges = np.round(np.array(RANK_BINS) * len(x)).astype(np.int64)
    return {
        f"b{int(lo * 100):02d}-{int(hi * 100):02d}": float(x[a:b].mean())
        for lo, hi, a, b in zip(RANK_BINS[:-1], RANK_BINS[1:], edges[:-1], edges[1:])
        if b > a
    }


# Targets that are statistics of others, non-smooth, or too slow to compute per candidate.
_NOT_IN_DISTANCE = ("ks",)
_HEAD_COUNTS = ("participants_kept", "participants_total")


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
        from memsim.sim.forgetting import LAWS

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
def get_path(mapping: dict, path: str) -> float:
    node = mapping
    for k in path.split("."):
        node = node[k]
    return float(node)


def set_path(mapping: dict, path: str, value: float) -> None:
    keys = path.split(".")
    node = mapping
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = float(value)


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
    from scipy.special import expit

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
        set_path(d, f.path, float(v))
    d.update(meta)
    return params_from_mapping(d, "<calibration candidate>")


def values_of(params: Params, free: tuple[Free, ...]) -> np.ndarray:
    d = params.dump()
    out = []
    for f in free:
        try:
            out.append(get_path(d, f.path))
        except KeyError:
            out.append(math.sqrt(f.lo * f.hi) if f.log else 0.5 * (f.lo + f.hi))
    return np.array(out)


# --------------------------------------------------------------------------- released scores
def released_scores(protocol_name: str, data=None):
    """The released scores a protocol is fitted to, in the VideoMem score format, or None
    (:func:`memsim.study.run.load_real_scores`: VideoMem's dev set; Memento10k's normalised training
    scores with their ``decay_alpha``)."""
    from memsim.study.run import load_real_scores

    return load_real_scores(protocol_name, data)


# --------------------------------------------------------------------------- moments
@dataclass(frozen=True)
class Moment:
    """One term of the distance: the summary value at ``path``, its target, its scale."""

    name: str
    path: tuple[str, ...]
    value: float
    scale: float


def moments_for(
    targets, real=None, columns: list[str] | None = None, scale: float = 1.0
) -> list[Moment]:
    """The fitted targets (less the non-smooth KS) and the released scores' rank-bin means.

    On a study shrunk by ``scale``, head counts (``participants_kept``) are targeted at
    ``scale`` times their value; annotations per stimulus are unchanged by scaling.
    """
    out = []
    for t in targets.targets:
        if t.kind != "fit" or t.path[-1] in _NOT_IN_DISTANCE:
            continue
        k = scale if t.path[0] in _HEAD_COUNTS else 1.0
        out.append(Moment(t.name, tuple(t.path), t.value * k, t.tolerance * k))
    if real is not None:
        for c in columns or []:
            if c not in real.columns:
                continue
            for k, v in rank_bin_means(real[c].to_numpy(float)).items():
                out.append(Moment(f"{c} {k}", ("quantiles", c, k), v, QUANTILE_SCALE))
    return out


def fit_summary(result, real=None, seed: int = 0, n_splits: int = 10, bins: str = "raw") -> dict:
    """The statistics a candidate is judged by, at the same paths as :func:`memsim.analysis.consistency.analyse`.

    Skips the slow analyses no fitted target uses (annotation-consistency curves).
    """
    from memsim.analysis.consistency import (
        correction_change,
        decay_alpha_summary,
        human_consistency,
        lag_curve,
        rt_analyses,
        score_correlation,
    )
    from memsim.analysis.distributions import real_score_comparison

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
        }
        out["mean_score_raw"][name] = float(v["raw"].mean()) if len(n) else math.nan
        out["mean_score"][name] = float(v["score"].mean()) if len(n) else math.nan
        out["correction"][name] = correction_change(v)
        out["human_consistency"][name] = {
            "mean": human_consistency(result, s, n_splits=n_splits, seed=seed)["mean"]
        }
        out["lag_curve"][name] = {"slope": lag_curve(result, s)["slope"]}

    out["quantiles"] = score_quantiles(result, real, seed, bins)
    out["decay_alpha"] = decay_alpha_summary(result)
    cols = [s.scoring.column for s in p.steps]
    out["score_correlation"] = {
        f"{a} ~ {b}": score_correlation(result.scores, a, b) for a, b in zip(cols, cols[1:])
    }
    out["response_times"] = rt_analyses(result)
    if real is not None:
        out["real"] = real_score_comparison(result.scores, real)
    return out


BINS = ("raw", "count-matched")


def score_quantiles(result, real=None, seed: int = 0, bins: str = "raw") -> dict:
    """Rank-bin means of each step's scores.

    With released scores, ``bins`` says which simulated scores: ``raw``, the campaign's own
    scores rounded to the released precision (what the KS acceptance compares), or
    ``count-matched`` (:func:`count_matched_scores`: re-made at the released annotation
    counts, for a campaign whose counts differ from the released ones).
    """
    from memsim.analysis.distributions import at_released_precision

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
) -> dict:
    """Simulate, score and summarise one campaign (``full``: every analysis of ``memsim run``)."""
    from memsim.analysis.consistency import analyse
    from memsim.analysis.distributions import real_score_comparison
    from memsim.analysis.scoring import score
    from memsim.sim.simulate import simulate

    sim = simulate(protocol, params, seed=seed, scale=scale)
    result = score(sim.trials, sim.protocol, validate=False)
    if not full:
        return fit_summary(result, real, seed=seed, bins=bins)
    summary = analyse(result, truth=sim.videos, seed=seed)
    if real is not None:
        summary["real"] = real_score_comparison(result.scores, real)
    summary["quantiles"] = score_quantiles(result, real, seed, bins)
    if real is not None:
        matched = count_matched_scores(result, real, seed)
        from memsim.analysis.distributions import ks_distance

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
    import pandas as pd

    from memsim.analysis.scoring import correct, count_column, video_sums

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
        # gets most), so capping at what a simulated video has distorts as little as possible. Only scored
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
        from memsim.analysis.scoring import correction_x

        sums = video_sums(
            t.video, t.hit, correction_x(spec.scoring.correction, t.lag), V, mask=keep
        )
        sc, _ = correct(sums, spec.scoring.correction)
        out[col] = np.where(sums.n > 0, np.round(sc, 3), np.nan)
    return pd.DataFrame(out)


NOISE_SEEDS = (10_001, 10_002, 10_003, 10_004)


def _noise_eval(job: tuple) -> dict:
    protocol, params, seed, real, bins = job
    import numba

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
    from memsim.fit.compare import lookup

    jobs = [(protocol, params, int(sd), real, bins) for sd in seeds]
    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp

        with ProcessPoolExecutor(
            min(workers, len(jobs)), mp_context=mp.get_context("spawn")
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
    """Per moment: (mean over seeds - target) / scale; a missing statistic counts as 10 scales off."""
    from memsim.fit.compare import lookup

    r = np.empty(len(moments))
    for i, m in enumerate(moments):
        vals = np.array([lookup(s, m.path) for s in summaries], float)
        vals = vals[np.isfinite(vals)]
        r[i] = (vals.mean() - m.value) / m.scale if vals.size else 10.0
    return r


# --------------------------------------------------------------------------- the evaluation log
class EvalLog:
    """Append-only JSON-lines log of evaluated candidates, keyed by unconstrained coordinates.

    Each line is written whole and flushed to disk before the next candidate starts; a
    torn last line (a killed process) is ignored on reading. The first line states the
    settings; resuming with other settings is refused.
    """

    def __init__(self, path: Path, header: dict, resume: bool) -> None:
        self.path = Path(path)
        self.cache: dict[tuple, dict] = {}
        if resume and self.path.exists():
            lines = self.path.read_text().splitlines()
            rows = []
            for ln in lines:
                try:
                    rows.append(json.loads(ln))
                except json.JSONDecodeError:
                    continue  # torn line
            if rows and rows[0].get("header") != header:
                raise UserError(
                    "--resume: the log was written with other settings "
                    "(protocol, targets, scale, seeds or free parameters); remove it or drop --resume",
                    path=self.path,
                )
            for row in rows[1:]:
                self.cache[self.key(row["x"])] = row
            if not rows:
                self._write({"header": header}, mode="w")
            else:
                # rewrite without a torn tail so later appends start on a fresh line
                self._rewrite([{"header": header}] + [r for r in rows[1:]])
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._write({"header": header}, mode="w")
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
        from memsim.io import write_text_atomic

        write_text_atomic(self.path, "".join(json.dumps(r, allow_nan=True) + "\n" for r in rows))

    def get(self, x) -> dict | None:
        return self.cache.get(self.key(x))

    def add(self, row: dict) -> None:
        self.cache[self.key(row["x"])] = row
        self._write(row)


# --------------------------------------------------------------------------- parallel evaluation
_W: dict = {}


def _worker_init(protocol, params, free, seeds, scale, real, bins="raw", threads=1) -> None:
    import numba

    numba.set_num_threads(threads)  # one process per core; no oversubscription
    _W.update(
        protocol=protocol, params=params, free=free, seeds=seeds, scale=scale, real=real, bins=bins
    )


def _worker_eval(x: tuple) -> list[dict]:
    vals = from_unconstrained(_W["free"], np.array(x))
    p = with_values(_W["params"], _W["free"], vals)
    try:
        return [
            simulate_summary(_W["protocol"], p, seed, _W["scale"], _W["real"], bins=_W["bins"])
            for seed in _W["seeds"]
        ]
    except (ValueError, ZeroDivisionError, IndexError, UserError) as exc:
        # a corner of the parameter box where the study degenerates (e.g. nobody kept):
        # the candidate gets the missing-statistic penalty, and the log says why
        return [{"error": f"{type(exc).__name__}: {exc}"}]


class _Budget(Exception):
    pass


@dataclass
class Evaluator:
    """Residuals of candidates in unconstrained coordinates, cached in an :class:`EvalLog`, run in a pool."""

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
    replay_only: bool = False
    pool: ProcessPoolExecutor | None = field(default=None, repr=False)

    def __enter__(self):
        if self.workers > 1:
            import multiprocessing as mp

            self.pool = ProcessPoolExecutor(
                self.workers,
                mp_context=mp.get_context("spawn"),
                initializer=_worker_init,
                initargs=(
                    self.protocol,
                    self.params,
                    self.free,
                    self.seeds,
                    self.scale,
                    self.real,
                    self.bins,
                ),
            )
        else:
            import numba

            _worker_init(
                self.protocol,
                self.params,
                self.free,
                self.seeds,
                self.scale,
                self.real,
                self.bins,
                numba.config.NUMBA_NUM_THREADS,
            )
        return self

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def many(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        """Residual vectors for several candidates; new ones simulated in parallel."""
        rows: list[dict | None] = [self.log.get(x) for x in xs]
        todo = [i for i, r in enumerate(rows) if r is None]
        if todo and (self.replay_only or self.n_new + len(todo) > self.budget):
            raise _Budget()
        if todo:
            t0 = time.perf_counter()
            keys = [tuple(float(v) for v in xs[i]) for i in todo]
            if self.pool is not None:
                results = list(self.pool.map(_worker_eval, keys))
            else:
                results = [_worker_eval(k) for k in keys]
            dt = (time.perf_counter() - t0) / len(todo)
            for i, summaries in zip(todo, results):
                r = residuals(summaries, self.moments)
                vals = from_unconstrained(self.free, xs[i])
                row = {
                    "x": [float(v) for v in xs[i]],
                    "values": {f.path: float(v) for f, v in zip(self.free, vals)},
                    "residuals": [float(v) for v in r],
                    "distance": float(np.sum(r * r)),
                    **({"error": summaries[0]["error"]} if "error" in summaries[0] else {}),
                    "seconds": dt,
                    "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
                self.log.add(row)
                self.n_new += 1
                rows[i] = row
        else:
            self.log.replayed += len(xs)
        out = []
        for row in rows:
            if self.best is None or row["distance"] < self.best["distance"]:
                self.best = row
            if self.local_best is None or row["distance"] < self.local_best["distance"]:
                self.local_best = row
            if self.on_eval:
                self.on_eval(row)
            out.append(np.array(row["residuals"]))
        return out


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
) -> dict:
    """Fit ``start``'s free parameters to ``targets``; returns a dict with the fitted ``params``.

    Parameters
    ----------
    scale : the protocol is shrunk by this factor for the search (annotations per video kept).
    seeds : common random numbers: every candidate is simulated with these seeds.
    budget : the most *new* simulations of candidates (cached ones are free).
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
    """
    from scipy.optimize import least_squares

    from memsim.sim.simulate import scale_protocol

    if replay_only and not resume:  # before the log is opened: without resume it is rewritten
        raise ValueError("replay_only needs resume")
    free = free_for(start, fixed)
    columns = [s.scoring.column for s in protocol.steps]
    moments = moments_for(targets, real, columns, scale)
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
    log = EvalLog(log_path, header, resume)
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
            from scipy.stats import qmc

            u = np.clip(qmc.Sobol(len(x0), scramble=True, seed=2718).random(screen), 1e-4, 1 - 1e-4)
            pts = list(np.log(u / (1 - u)))
            ev.budget = budget
            try:
                dist = [float(np.sum(r * r)) for r in ev.many(pts)]
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
        left = budget - ev.n_new
        share = left // (starts + 1) if starts > 1 else left
        try:
            for k, xk in enumerate(xs0):
                ev.budget = min(budget, ev.n_new + share) if starts > 1 else budget
                try:
                    stopped = local(xk)
                except _Budget:
                    stopped = f"start {k + 1}: its share of the budget spent"
            if starts > 1:
                ev.budget = budget
                stopped = "best start polished: " + local(np.array(ev.best["x"]))
        except _Budget:
            stopped = f"budget of {budget} evaluations spent"
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
        "seconds": time.perf_counter() - t0,
    }


def fitted_note(out: dict, scale: float, seeds, targets_name: str) -> str:
    return (
        f"fitted by `memsim calibrate` on {time.strftime('%Y-%m-%d', time.gmtime())} against "
        f"{targets_name} targets and the released score distributions: least squares (TRF) over "
        f"{len(out['free'])} free parameters, scale {scale}, seeds {list(seeds)} (common random numbers), "
        f"{out['evaluations']} candidates, distance {out['best']['distance']:.2f}; "
        f"check it at full scale with `memsim fit-report` (docs/calibration.md)"
    )


def dump_params_yaml(params: Params, header: str = "") -> str:
    import yaml

    text = yaml.safe_dump(params.dump(), sort_keys=False, default_flow_style=None, width=100)
    lines = "".join(f"# {ln}\n" for ln in header.splitlines())
    return lines + text


# --------------------------------------------------------------------------- the fit report
# Why a target is not met, where the reason is known (numbers: `memsim compat`, docs/calibration.md).
REASONS = {
    "human consistency, short-term": (
        "incompatible with the released scores under independent annotations: true scores of "
        "their own shape (NPMLE) give 0.343 ± 0.013, a beta of their mean and variance 0.310, "
        "the scores as noiseless truth 0.470; 0.481 needs an observed ST SD of 0.101 (released "
        "0.081) or within-video noise at 0.69 x binomial"
    ),
    "annotation consistency, short-term at 38": (
        "incompatible: the released scores imply 0.371 ± 0.024 at 38 (NPMLE; beta 0.317), "
        "0.440 even as noiseless truth; 0.616 needs within-video noise at 0.43 x binomial"
    ),
    "annotation consistency, long-term at 13": (
        "incompatible: the released scores imply 0.216 ± 0.014 at 13 (NPMLE; beta 0.219); "
        "0.364 needs within-video noise at 0.71 x binomial (or is the split-half stepped up to "
        "the full set: 0.355)"
    ),
    "KS distance to released ST scores": (
        "each study fits its own lag slope, which moves the k/n lattice of the scores after "
        "rounding: a model with the released true scores at these counts crosses 0.05 in 1.3 % "
        'of studies, the shipped set on 2 of 100 seeds (docs/calibration.md, "The correction '
        'moves the lattice")'
    ),
    "KS distance to released LT scores": (
        "the long-term counts' floor is softer than the released one (see the minimum annotations row)"
    ),
    "ST-LT Spearman, top-500 LT-annotated": (
        "with independent annotations, more LT annotations mean less noise and a higher ST-LT correlation; in the "
        "released dev set it does not rise (0.302 on the top 500, 0.113 on the top 100; the paper: 0.333, 0.303), "
        "so the most LT-annotated real videos are not a random sample of videos"
    ),
    "ST-LT Spearman, top-100 LT-annotated": "as for the top 500",
    "long-term_memorability b00-05": (
        "videos with few long-term annotations (see the minimum annotations row) have extreme k/n scores: the "
        "lowest 5 % reach lower than the released ones"
    ),
    "long-term_memorability b90-95": (
        "the same few-annotation videos put more simulated scores at exactly 1.0 (k/n with n small)"
    ),
    "annotations per video, long-term (min)": (
        "step 2 can only test a video that a returning participant saw as a step-1 filler; the balancing pick "
        "favours the least tested, but a few videos are seldom available (about 60 filler showings, a third "
        "of them to returning participants), so the minimum stays near 3 (released 9)"
    ),
    "annotations per video, short-term (min)": (
        "the campaign balances assigned annotations and the filters then drop ~10 % of participants at random "
        "with respect to videos, so the floor spreads by +-2 around 34 (released: 32-34)"
    ),
    "KS distance of annotation counts, short-term": (
        "the demand gives the released tail, but the floor spreads over 29-36 (released 32-34): the filters "
        "drop participants after their annotations were counted for balancing"
    ),
    "KS distance of annotation counts, long-term": (
        "the balancing pick with a demand gives the floor and the tail, but the floor is softer (a few videos "
        "are seldom available, and the step-2 filters drop ~5 % of participants after the picks)"
    ),
    "annotations per video, short-term (mean, paper)": (
        "the paper's mean is over all 10,000 videos; the fitted target is the released dev set's 36.29 (the "
        "3,000 unreleased test videos must then average 42)"
    ),
    "annotations per video, long-term (mean, paper)": "as for the short-term mean: fitted to the dev set's 12.76",
}


def fit_report(
    protocol,
    params: Params,
    targets,
    *,
    seeds=(0, 1, 2, 3, 4),
    scale: float = 1.0,
    out: Path,
    data=None,
    params_path=None,
    bins: str = "raw",
) -> pd.DataFrame:
    """Simulate ``params`` with each seed at ``scale``, compare with every target, write a markdown
    report at ``out`` and figures in ``out.parent / 'figures'``. Returns the comparison table."""
    import pandas as pd

    from memsim.fit.compare import compare, format_value, lookup
    from memsim.io import atomic_path, write_text_atomic

    real = released_scores(protocol.name, data)
    t0 = time.perf_counter()
    summaries = [
        simulate_summary(protocol, params, seed, scale, real, full=True, bins=bins)
        for seed in seeds
    ]
    seconds = (time.perf_counter() - t0) / len(seeds)
    table = compare(summaries, targets)
    columns = [s.scoring.column for s in protocol.steps]
    qrows = []
    if real is not None:
        for m in moments_for(targets, real, columns):
            if m.path[0] != "quantiles":
                continue
            v = np.array([lookup(s, m.path) for s in summaries])
            qrows.append(
                {
                    "target": m.name,
                    "value": m.value,
                    "simulated": v.mean(),
                    "sd": v.std(ddof=1),
                    "tolerance": m.scale,
                    "within": bool(abs(v.mean() - m.value) <= m.scale),
                    "kind": "fit",
                    "source": "released scores: mean of a rank bin",
                }
            )
        for c in columns:
            v = np.array([lookup(s, ("count_matched", c, "ks")) for s in summaries])
            if np.isfinite(v).all():
                qrows.append(
                    {
                        "target": f"KS distance, count-matched ({c.split('_')[0]})",
                        "value": 0.0,
                        "simulated": v.mean(),
                        "sd": v.std(ddof=1) if len(v) > 1 else float("nan"),
                        "tolerance": 0.05,
                        "within": bool(v.mean() <= 0.05),
                        "kind": "report",
                        "source": "released scores vs simulated scores re-made at the released counts",
                    }
                )
    full = pd.concat([table, pd.DataFrame(qrows)], ignore_index=True) if qrows else table
    out = Path(out)
    figdir = out.parent / "figures"
    figures = []
    if real is not None:
        from memsim.viz.plots import fig_consistency, fig_lag, fig_real_vs_sim

        figdir.mkdir(parents=True, exist_ok=True)
        s0 = summaries[0]
        p = fig_real_vs_sim(s0["_scores"], real, columns, figdir)
        if p is not None:
            target = figdir / f"{protocol.name}_scores_real_vs_sim.png"
            os.replace(p, target)
            figures.append(target)
        p = fig_real_vs_sim(s0["_matched"], real, columns, figdir)
        if p is not None:
            target = figdir / f"{protocol.name}_scores_count_matched.png"
            os.replace(p, target)
            figures.append(target)
        for fn, nm in ((fig_consistency, "consistency"), (fig_lag, "lag")):
            p = fn(s0, figdir)
            target = figdir / f"{protocol.name}_{nm}.png"
            os.replace(p, target)
            figures.append(target)

    def fmt(x):
        return format_value(float(x)) if x is not None and np.isfinite(x) else "-"

    shown = params_path or params.name
    try:
        from memsim.resources import repository_root

        shown = Path(shown).resolve().relative_to(repository_root())
    except (ValueError, TypeError):
        pass
    lines = [
        f"# Fit report: `{params.name}` on `{protocol.name}`",
        "",
        f"Parameters: `{shown}` (calibrated: {params.calibrated}).  ",
        f"Note: {params.note}",
        "",
        f"Generated by `memsim fit-report {protocol.name}` with {len(seeds)} seeds "
        f"({', '.join(map(str, seeds))}) at scale {scale}; {seconds:.1f} s per campaign "
        f"(simulate, score, every analysis). Simulated value: mean ± sd over the seeds.",
        "",
        "Released scores: the simulated scores are corrected by the protocol's own correction, as the "
        "released ones were. The raw rows (KS distance, score SD) set all simulated videos "
        "(10,000, annotation counts as the simulated campaign gives them, scores rounded to the released "
        "3 decimals) beside the 7,000 released dev-set videos, as `memsim run` does; the count-matched rows "
        "first re-make each simulated score at an annotation count drawn from the released ones (same k/n "
        "lattice, same binomial noise; `calibrate.count_matched_scores`). Rank-bin rows: "
        + ("the raw scores." if bins == "raw" else "the count-matched scores."),
        "",
        "| statistic | paper / data | simulated (mean ± sd) | tolerance | within | kind | why not |",
        "| --- | ---: | ---: | ---: | :---: | --- | --- |",
    ]
    for r in full.itertuples():
        why = "" if r.within else REASONS.get(r.target, "")
        if not r.within and not why and re.search(r" b\d\d-\d{2,3}$", r.target):
            why = (
                f"off by {abs(r.simulated - r.value):.3f}: bins are fitted at 0.005, half the 0.01 at which a "
                "bin alone moves the ECDF by 0.05"
            )
        lines.append(
            f"| {r.target} | {fmt(r.value)} | {fmt(r.simulated)} ± {fmt(r.sd)} | ±{fmt(r.tolerance)} | "
            f"{'yes' if r.within else '**no**'} | {r.kind} | {why} |"
        )
    n_fit = int((full.kind == "fit").sum())
    n_ok = int((full.within & (full.kind == "fit")).sum())
    lines += ["", f"Fitted targets within tolerance (mean over seeds): **{n_ok}/{n_fit}**.", ""]
    # per seed, the acceptance rows: the worst seed matters ("any seed")
    acc = [t for t in targets.targets if t.kind == "fit"]
    worst = []
    for t in acc:
        vals = np.array([lookup(s, t.path) for s in summaries])
        dev = np.abs(vals - t.value)
        worst.append((t.name, vals.min(), vals.max(), bool(np.all(dev <= t.tolerance + 1e-12))))
    lines += [
        f"Per seed (acceptance holds for *any* seed only if every seed is within; each seed's "
        f"values: `{seeds_csv_path(out).name}`):",
        "",
        "| fitted target | min over seeds | max over seeds | every seed within |",
        "| --- | ---: | ---: | :---: |",
    ]
    for name, lo, hi, ok in worst:
        lines.append(f"| {name} | {fmt(lo)} | {fmt(hi)} | {'yes' if ok else '**no**'} |")
    lines += ["", "## Parameters", "", "| parameter | value |", "| --- | ---: |"]
    d = params.dump()
    for f in free_for(params):
        lines.append(f"| `{f.path}` | {get_path(d, f.path):.4g} |")
    if figures:
        lines += ["", "## Figures", ""]
        captions = {
            "scores_real_vs_sim": "Released vs simulated scores (seed 0), as `memsim run` compares them.",
            "scores_count_matched": "The same, the simulated scores re-made at the released annotation counts "
            "(like with like: same k/n lattice, same binomial noise).",
            "consistency": "Annotation consistency of the simulation (seed 0) with the paper's points.",
            "lag": "Hit rate against lag (short-term) and delay (long-term), seed 0.",
        }
        for p in figures:
            key = p.stem.removeprefix(f"{protocol.name}_")
            lines += [f"![{p.stem}](figures/{p.name})", "", captions.get(key, ""), ""]
    # every target's value on every seed, for the per-seed questions the table's mean and
    # range cannot answer (which seeds fail, and with what correction)
    per_seed = pd.DataFrame({"seed": list(seeds)})
    for t in targets.targets:
        per_seed[t.name] = [lookup(sm, tuple(t.path)) for sm in summaries]
    with atomic_path(seeds_csv_path(out)) as tmp:
        per_seed.to_csv(tmp, index=False)
    write_text_atomic(out, "\n".join(lines) + "\n")
    return full


def seeds_csv_path(report: Path) -> Path:
    """Where :func:`fit_report` writes the per-seed values: beside the report, ``<stem>-seeds.csv``."""
    report = Path(report)
    return report.with_name(f"{report.stem}-seeds.csv")


# --------------------------------------------------------------------------- parameter recovery
def synthetic_targets(protocol, truth: Params, targets, *, seed: int, scale: float = 1.0):
    """Targets and 'released' scores measured on a simulation of known parameters.

    Every ``fit`` target of ``targets`` gets the value the simulation shows (same path,
    same tolerance; head counts at the simulated scale); its scores stand in for the
    released ones. Returns ``(Targets, scores DataFrame)``.
    """
    from memsim.fit.compare import Target, Targets, lookup

    summary = simulate_summary(protocol, truth, seed, scale, None, full=True)
    scores = summary.pop("_scores")
    from memsim.analysis.distributions import real_score_comparison

    summary["real"] = real_score_comparison(scores, scores)
    rows = []
    for t in targets.targets:
        if t.kind != "fit":
            continue
        v = lookup(summary, t.path)
        if not np.isfinite(v):
            continue
        tol = (
            {"abs": t.abs} if t.abs is not None else {"rel": t.rel}
        )  # head counts: relative to this study
        rows.append(
            Target(
                name=t.name,
                path=t.path,
                value=v,
                kind="fit",
                source=f"simulation of {truth.name}, seed {seed}",
                **tol,
            )
        )
    return Targets(name=f"{targets.name}-synthetic", targets=tuple(rows)), scores


def recovery_table(
    truth: Params, fitted: Params, start: Params, free: tuple[Free, ...]
) -> pd.DataFrame:
    """Per free parameter: true, start and fitted value, and the error as a share of its range."""
    import pandas as pd

    t, f, s = (values_of(p, free) for p in (truth, fitted, start))
    rows = []
    for i, fr in enumerate(free):
        span = (math.log(fr.hi) - math.log(fr.lo)) if fr.log else (fr.hi - fr.lo)
        err = (math.log(f[i]) - math.log(t[i])) if fr.log else (f[i] - t[i])
        start_err = (math.log(s[i]) - math.log(t[i])) if fr.log else (s[i] - t[i])
        rows.append(
            {
                "parameter": fr.path,
                "true": t[i],
                "start": s[i],
                "fitted": f[i],
                "error_share_of_range": abs(err) / span,
                "start_error_share": abs(start_err) / span,
            }
        )
    return pd.DataFrame(rows)
