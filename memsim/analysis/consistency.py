"""Consistency and the other analyses of the VideoMem paper, from scored data.

In: a :class:`memsim.analysis.scoring.ScoreResult` (annotation-level analyses) or a scores
table in the VideoMem format (score-level analyses, which also run on the real
released scores). Out: plain numbers, dicts and tidy DataFrames; :func:`summarise`
and :func:`analyse` gather every statistic of SPEC's "What the paper measured"
table into one JSON-able dict.

Randomness: every random split comes from ``np.random.SeedSequence([seed, purpose, step])``,
so a seed fixes every number, and one analysis never shifts another's draws.
Each half of a split is scored exactly as the full data is (filters already
applied, the step's correction refitted on the half). Never imports the
simulator. Definitions: ``docs/consistency.md``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from numba import njit, prange

from memsim import _jitcache  # noqa: F401  (drops numba caches older than the sources)
from memsim.analysis.scoring import (
    ScoreResult,
    Tests,
    VideoSums,
    correct,
    correction_x,
    count_column,
    score,
)
from memsim.design.protocol import truth_column
from memsim.errors import UserError
from memsim.rng import PyStream, next_below, stream_key

__all__ = [
    "spearman",
    "spearman_many",
    "pearson",
    "spearman_brown",
    "human_consistency",
    "annotation_consistency",
    "score_correlation",
    "count_correlation",
    "lag_curve",
    "correction_change",
    "rt_analyses",
    "participant_rates",
    "video_mean_rt",
    "truth_correlation",
    "score_summary",
    "Analysis",
    "analyse",
    "lookup",
    "flatten_statistics",
    "summarise",
]

_HUMAN, _ANNOT = 1, 2  # SeedSequence purposes


# --------------------------------------------------------------------------- correlations
def _rank(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean rank), as Spearman's rho needs (finite values)."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    out = np.empty(len(x))
    _ranks_into(x, out)
    return out


def _rank_reference(x: np.ndarray) -> np.ndarray:
    """Plain numpy twin of :func:`_ranks_into` (an argsort; ties averaged)."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    new = np.empty(len(x), bool)
    new[:1] = True
    new[1:] = xs[1:] != xs[:-1]
    grp = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], len(x))
    avg = (starts + ends - 1) / 2.0
    r = np.empty(len(x), np.float64)
    r[order] = avg[grp]
    return r


_SIGN = np.uint64(1 << 63)
_DIGIT = np.uint64(2047)  # 11-bit digits: six passes cover 64 bits


@njit(cache=True)
def _ranks_into(x, out):
    """Average ranks of ``x`` (finite float64) into ``out``.

    Small non-negative integers (hit counts) by a counting sort; anything else by an LSD radix
    sort of the IEEE-754 bit patterns turned into unsigned keys that order as the values do
    (a pass is skipped when every key has the same digit there). Ranks are exact half-integers,
    so they are the same, bit for bit, as an argsort's (:func:`_rank_reference`).
    """
    n = x.shape[0]
    if n == 0:
        return
    small = True
    top = 0.0
    for i in range(n):
        v = x[i]
        if not (v >= 0.0 and v == math.floor(v)):
            small = False
            break
        if v > top:
            top = v
    if small and top <= 4.0 * n:
        c = np.zeros(int(top) + 1, np.int64)
        for i in range(n):
            c[int(x[i])] += 1
        before = 0
        avg = np.empty(c.shape[0])
        for v in range(c.shape[0]):
            avg[v] = before + (c[v] - 1) / 2.0
            before += c[v]
        for i in range(n):
            out[i] = avg[int(x[i])]
        return
    bits = x.view(np.uint64)
    keys = np.empty(n, np.uint64)
    for i in range(n):
        u = bits[i]
        if u == _SIGN:  # -0.0 ties with 0.0
            u = np.uint64(0)
        keys[i] = ~u if u & _SIGN else u | _SIGN
    idx = np.arange(n)
    keys2 = np.empty(n, np.uint64)
    idx2 = np.empty(n, np.int64)
    cnt = np.empty(2049, np.int64)
    for p in range(6):
        shift = np.uint64(11 * p)
        cnt[:] = 0
        for i in range(n):
            cnt[((keys[i] >> shift) & _DIGIT) + np.uint64(1)] += 1
        if cnt.max() == n:  # every key has the same digit here: nothing to reorder
            continue
        for b in range(2048):
            cnt[b + 1] += cnt[b]
        for i in range(n):
            d = (keys[i] >> shift) & _DIGIT
            j = cnt[d]
            cnt[d] = j + 1
            keys2[j] = keys[i]
            idx2[j] = idx[i]
        keys, keys2 = keys2, keys
        idx, idx2 = idx2, idx
    i = 0
    while i < n:
        j = i
        while j + 1 < n and keys[j + 1] == keys[i]:
            j += 1
        a = (i + j) / 2.0
        for q in range(i, j + 1):
            out[idx[q]] = a
        i = j + 1


@njit(cache=True, parallel=True)
def _ranks_flat(x, bounds, out):
    """:func:`_ranks_into` of each segment ``x[bounds[i]:bounds[i + 1]]``, segments in
    parallel."""
    for i in prange(bounds.shape[0] - 1):
        _ranks_into(x[bounds[i] : bounds[i + 1]], out[bounds[i] : bounds[i + 1]])


def _centred_pearson(a: np.ndarray, b: np.ndarray) -> float:
    """:func:`pearson` of two all-finite vectors of one length (the same arithmetic)."""
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def spearman_many(pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """:func:`spearman` of each pair ``(a, b)``, the ranking of every vector done in one parallel
    call: the same numbers as one :func:`spearman` per pair."""
    out = np.full(len(pairs), np.nan)
    segs, which = [], []
    for i, (a, b) in enumerate(pairs):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        ok = np.isfinite(a) & np.isfinite(b)
        if ok.sum() < 3:
            continue
        if ok.all():
            segs += [a, b]
        else:
            segs += [a[ok], b[ok]]
        which.append(i)
    if not segs:
        return out
    bounds = np.zeros(len(segs) + 1, np.int64)
    np.cumsum([len(v) for v in segs], out=bounds[1:])
    ranks = np.empty(int(bounds[-1]))
    _ranks_flat(np.concatenate(segs), bounds, ranks)
    for j, i in enumerate(which):
        lo, mid, hi = bounds[2 * j], bounds[2 * j + 1], bounds[2 * j + 2]
        out[i] = _centred_pearson(ranks[lo:mid], ranks[mid:hi])
    return out


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r over pairs where both are finite; NaN with fewer than 3 pairs or no variance."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan")
    a, b = a[ok] - a[ok].mean(), b[ok] - b[ok].mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho (Pearson on average ranks) over pairs where both are finite."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan")
    return float(spearman_many([(a[ok], b[ok])])[0])


def spearman_brown(r: float | np.ndarray, k: float | np.ndarray) -> float | np.ndarray:
    """Reliability when the number of annotations is multiplied by ``k``: k r / (1 + (k-1) r)."""
    r = np.asarray(r, np.float64)
    out = k * r / (1.0 + (np.asarray(k) - 1.0) * r)
    return float(out) if np.ndim(out) == 0 else out


def _unique(x: np.ndarray) -> np.ndarray:
    """``numpy.unique`` of integers, by one pass when they are sorted already (the tests are,
    by participant)."""
    if len(x) > 1 and (x[1:] >= x[:-1]).all():
        keep = np.empty(len(x), bool)
        keep[0] = True
        np.not_equal(x[1:], x[:-1], out=keep[1:])
        return x[keep]
    return np.unique(x)


def _rng(seed: int, purpose: int, step: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), purpose, int(step)]))


# --------------------------------------------------------------------------- kernels
@njit(cache=True)
def _group_sums_kernel(video, group, hit, lag, n_groups, n_videos):
    """Per group and video: count, sum hit, sum lag, sum lag^2, sum lag*hit; group < 0 skipped.

    Returns float64[n_groups, 5, n_videos]. The sums are kept per (group, video) side by side
    while they are made (one cache line per annotation), each in annotation order."""
    acc = np.zeros((n_groups, n_videos, 5))
    for i in range(len(video)):
        g = group[i]
        if g < 0:
            continue
        v = video[i]
        h = hit[i]
        x = lag[i]
        acc[g, v, 0] += 1.0
        acc[g, v, 1] += h
        acc[g, v, 2] += x
        acc[g, v, 3] += x * x
        acc[g, v, 4] += x * h
    out = np.empty((n_groups, 5, n_videos))
    for g in range(n_groups):
        for v in range(n_videos):
            for j in range(5):
                out[g, j, v] = acc[g, v, j]
    return out


@njit(cache=True, parallel=True)
def _split_sums(video, pslot, grps, hit, lag, out):
    """:func:`_group_sums_kernel` of each split ``grps[i]`` (participant slot -> half) into
    ``out[i]`` (float64[n_splits, 2, 5, V]), the splits in parallel."""
    V = out.shape[3]
    for i in prange(grps.shape[0]):
        out[i] = _group_sums_kernel(video, grps[i][pslot], hit, lag, 2, V)


def _group_sums_ref(video, group, hit, lag, n_groups, n_videos):
    """Plain numpy twin of :func:`_group_sums_kernel`."""
    out = np.zeros((n_groups, 5, n_videos))
    for g in range(n_groups):
        m = group == g
        for j, w in enumerate((None, hit, lag, lag * lag, lag * hit)):
            out[g, j] = np.bincount(
                video[m], weights=None if w is None else w[m], minlength=n_videos
            )
    return out


@njit(cache=True)
def _shuffle_within_kernel(order, starts, counts, state):
    """Fisher-Yates shuffle of ``order`` inside each group [start, start + count), one stream."""
    for g in range(len(starts)):
        s = starts[g]
        for i in range(counts[g] - 1, 0, -1):
            state, j = next_below(state, i + 1)
            tmp = order[s + i]
            order[s + i] = order[s + j]
            order[s + j] = tmp
    return order


def _shuffle_within_ref(order, starts, counts, state):
    """Pure-Python twin of :func:`_shuffle_within_kernel` (same bits)."""
    order = order.copy()
    rs = PyStream(state)
    for g in range(len(starts)):
        s = int(starts[g])
        for i in range(int(counts[g]) - 1, 0, -1):
            j = rs.below(i + 1)
            order[s + i], order[s + j] = order[s + j], order[s + i]
    return order


@njit(cache=True)
def _prefix_sums(order, hit, lag):
    """Running sums of hit, lag, lag^2 and lag*hit over the annotations in ``order``, each with
    a leading 0 (float64[n + 1, 4], the four side by side): ``numpy.cumsum`` of each, one
    addition after the other."""
    n = order.shape[0]
    c = np.zeros((n + 1, 4))
    for i in range(n):
        o = order[i]
        h = hit[o]
        x = lag[o]
        w = (h, x, x * x, x * h)
        for j in range(4):
            c[i + 1, j] = w[j] if i == 0 else c[i, j] + w[j]
    return c


def _prefix_sums_ref(order, hit, lag):
    """Plain numpy twin of :func:`_prefix_sums`."""
    return np.stack(
        [np.concatenate([[0.0], np.cumsum(w[order])]) for w in (hit, lag, lag * lag, lag * hit)],
        axis=1,
    )


@njit(cache=True)
def _half_sums(c, starts, k):
    """The sums of two halves of each video's annotations, from running sums ``c``
    (:func:`_prefix_sums`): the first ``k`` from ``starts`` and the ``k`` after them.
    float64[2, 5, m]: count, hit, lag, lag^2, lag*hit."""
    m = starts.shape[0]
    out = np.empty((2, 5, m))
    for i in range(m):
        a0 = starts[i]
        a1 = a0 + k[i]
        a2 = a1 + k[i]
        out[0, 0, i] = k[i]
        out[1, 0, i] = k[i]
        for j in range(4):
            out[0, j + 1, i] = c[a1, j] - c[a0, j]
            out[1, j + 1, i] = c[a2, j] - c[a1, j]
    return out


@njit(cache=True)
def _stable_order(keys, n_keys):
    """``numpy.argsort(keys, kind="stable")`` of small non-negative integer keys, by counting."""
    start = np.zeros(n_keys + 1, np.int64)
    for i in range(keys.shape[0]):
        start[keys[i] + 1] += 1
    for v in range(n_keys):
        start[v + 1] += start[v]
    out = np.empty(keys.shape[0], np.int64)
    for i in range(keys.shape[0]):
        v = keys[i]
        out[start[v]] = i
        start[v] += 1
    return out


def _as_sums(a: np.ndarray) -> VideoSums:
    return VideoSums(a[0], a[1], a[2], a[3], a[4])


# --------------------------------------------------------------------------- split-half
def human_consistency(result: ScoreResult, step: int, *, n_splits: int = 25, seed: int = 0) -> dict:
    """Split the step's kept participants at random into two halves of equal size, score each
    half independently, and correlate (Spearman) over videos scored in both; ``n_splits`` times.

    Returns
    -------
    dict
        mean, sd (ddof=1), values (list), participants_per_half, videos (mean number correlated),
        mean_annotations_per_half (per video, averaged over videos and splits).
    """
    t = result.tests[step - 1]
    spec = result.protocol.steps[step - 1].scoring.correction
    V = len(result.video_ids)
    people = _unique(t.participant)
    K = len(people)
    if K < 2:
        return {"mean": float("nan"), "sd": float("nan"), "values": [], "participants_per_half": 0}
    lag = np.nan_to_num(correction_x(spec, t.lag))
    slot = np.full(int(t.participant.max()) + 1, -1, np.int64)
    slot[people] = np.arange(K)
    pslot = slot[t.participant]
    rng = _rng(seed, _HUMAN, step)
    half = K // 2
    grps = np.full((n_splits, K), -1, np.int64)  # 0: half A, 1: half B, -1: the odd one out
    for i in range(n_splits):
        perm = rng.permutation(K)
        grps[i, perm[:half]] = 0
        grps[i, perm[half : 2 * half]] = 1
    # every split's per-video sums in one call, the splits in parallel
    split_sums = np.empty((n_splits, 2, 5, V))
    _split_sums(t.video, pslot, grps, t.hit, lag, split_sums)
    pairs, nvid, nann = [], [], []
    for i in range(n_splits):
        a, b = _as_sums(split_sums[i, 0]), _as_sums(split_sums[i, 1])
        sa, _ = correct(a, spec)
        sb, _ = correct(b, spec)
        both = (a.n > 0) & (b.n > 0)
        pairs.append((sa[both], sb[both]))
        nvid.append(int(both.sum()))
        nann.append(
            float((a.n[both].mean() + b.n[both].mean()) / 2) if both.any() else float("nan")
        )
    v = spearman_many(pairs)  # every split's ranks in one parallel call
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # every split undefined: NaN, not a warning
        mean, sd = float(np.nanmean(v)), float(np.nanstd(v, ddof=1)) if len(v) > 1 else 0.0
        mean_ann = float(np.nanmean(nann))
    return {
        "mean": mean,
        "sd": sd,
        "values": [float(x) for x in v],
        "participants_per_half": K // 2,
        "videos": float(np.mean(nvid)),
        "mean_annotations_per_half": mean_ann,
    }


def annotation_consistency(
    result: ScoreResult,
    step: int,
    *,
    n_values=None,
    repeats: int = 3,
    seed: int = 0,
    min_videos: int = 30,
    reading: str = "exact",
) -> pd.DataFrame:
    """Consistency as a function of the number of annotations N (the paper's Fig. 4).

    ``reading="exact"`` (default): for each even N, the videos with at least N kept
    annotations; for each, N of its annotations drawn at random and split into two
    halves of N/2. ``reading="all"``: for each threshold N, the videos with at least N
    annotations, each video's annotations all used, split into two halves of
    floor(n_v / 2) (x = their mean count, the paper's axis). Either way each half is
    scored (correction refitted on it) and Spearman taken over those videos, averaged
    over ``repeats`` random orders of each video's annotations (one order serves every N).
    N stops where fewer than ``min_videos`` videos remain.

    Returns
    -------
    DataFrame
        N, videos, spearman (mean over repeats), sd, mean_annotations (of the videos used).
    """
    if reading not in ("exact", "all"):
        raise ValueError(f"reading must be 'exact' or 'all', got {reading!r}")
    t = result.tests[step - 1]
    spec = result.protocol.steps[step - 1].scoring.correction
    V = len(result.video_ids)
    counts = np.bincount(t.video, minlength=V)
    if n_values is None:
        top = int(np.sort(counts)[::-1][min_videos - 1]) if V >= min_videos else 0
        if reading == "exact":
            n_values = np.arange(2, top + 1, 2)
        else:
            pos = counts[counts > 0]
            lo = max(2, int(pos.min())) if len(pos) else 2
            n_values = np.arange(lo, top + 1, 2)
    n_values = np.asarray(
        [n for n in n_values if n >= 2 and (reading == "all" or n % 2 == 0)], np.int64
    )
    lag = np.nan_to_num(correction_x(spec, t.lag))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    base = _stable_order(t.video, V)  # annotations grouped by video, in order within each
    res = np.full((repeats, len(n_values)), np.nan)
    for r in range(repeats):
        key = np.uint64(stream_key(int(seed), _ANNOT, int(step) * 1_000_003 + r))
        order = _shuffle_within_kernel(base.copy(), starts, counts.astype(np.int64), key)
        cs = _prefix_sums(order, t.hit, lag)
        pairs, where = [], []
        for j, N in enumerate(n_values):
            vids = np.flatnonzero(counts >= N)
            if len(vids) < 3:
                continue
            k = np.full(len(vids), N // 2) if reading == "exact" else counts[vids] // 2
            sums = _half_sums(cs, starts[vids], k.astype(np.int64))
            half = [VideoSums(*sums[0]), VideoSums(*sums[1])]
            if (
                spec.kind == "none" and reading == "exact"
            ):  # equal halves: hit counts rank as scores do
                pairs.append((half[0].h.round(), half[1].h.round()))
            else:
                sa, _ = correct(half[0], spec)
                sb, _ = correct(half[1], spec)
                pairs.append((sa, sb))
            where.append(j)
        res[r, where] = spearman_many(pairs)  # the whole curve's ranks in one parallel call
    nv = np.array([(counts >= N).sum() for N in n_values])
    mean_ann = np.array(
        [counts[counts >= N].mean() if (counts >= N).any() else np.nan for N in n_values]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: too few videos
        return pd.DataFrame(
            {
                "N": n_values,
                "videos": nv,
                "spearman": np.nanmean(res, axis=0) if repeats else np.nan,
                "sd": np.nanstd(res, axis=0, ddof=1) if repeats > 1 else 0.0,
                "mean_annotations": mean_ann,
            }
        )


def _interp(curve: pd.DataFrame, n: float) -> float:
    c = curve.dropna(subset=["spearman"])
    if c.empty or n < c["N"].min() or n > c["N"].max():
        return float("nan")
    return float(np.interp(n, c["N"], c["spearman"]))


# --------------------------------------------------------------------------- score-level
def count_correlation(scores: pd.DataFrame, columns: list[str]) -> dict:
    """Pearson's r of the annotation counts of each pair of consecutive score ``columns``
    (``"a ~ b"``), over the videos with a positive count in both; pairs whose count columns
    are missing are left out. Works on simulated and released scores alike: how far the videos
    annotated more in one step are annotated more in the next (VideoMem's released 0.311)."""
    out = {}
    for a, b in zip(columns, columns[1:]):
        ca, cb = count_column(a), count_column(b)
        if ca in scores.columns and cb in scores.columns:
            x, y = scores[ca].to_numpy(np.float64), scores[cb].to_numpy(np.float64)
            ok = (x > 0) & (y > 0)
            out[f"{a} ~ {b}"] = pearson(x[ok], y[ok])
    return out


def score_correlation(scores: pd.DataFrame, col_a: str, col_b: str, *, tops=(500, 100)) -> dict:
    """Spearman and Pearson between two score columns over videos with both; also over the
    ``tops`` videos with most annotations in ``col_b`` (ties: lower row first; NaN when fewer
    videos have both scores). Works on simulated and real released scores alike."""
    a, b = scores[col_a].to_numpy(np.float64), scores[col_b].to_numpy(np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    out = {"all": {"spearman": spearman(a, b), "pearson": pearson(a, b), "videos": int(ok.sum())}}
    cb = count_column(col_b)
    if cb in scores.columns:
        cnt = np.where(ok, scores[cb].to_numpy(np.float64), -1)
        order = np.argsort(-cnt, kind="stable")
        for k in tops:
            if ok.sum() < k:
                nan = float("nan")
                out[f"top{k}"] = {
                    "spearman": nan,
                    "pearson": nan,
                    "videos": int(ok.sum()),
                    "min_annotations": 0,
                }
                continue
            sel = order[:k]
            out[f"top{k}"] = {
                "spearman": spearman(a[sel], b[sel]),
                "pearson": pearson(a[sel], b[sel]),
                "videos": int(k),
                "min_annotations": int(cnt[sel].min()),
            }
    return out


def score_summary(scores: pd.DataFrame) -> dict:
    """Distribution of every ``*_memorability`` column and its annotation counts, and the
    correlations between successive score columns (:func:`score_correlation`)."""
    cols = [c for c in scores.columns if c.endswith("_memorability")]
    out: dict = {"videos": int(len(scores)), "columns": {}}
    for c in cols:
        x = scores[c].to_numpy(np.float64)
        x = x[np.isfinite(x)]
        d = {"videos": int(len(x))}
        if len(x):
            q = np.quantile(x, [0.05, 0.25, 0.5, 0.75, 0.95])
            d.update(
                mean=float(x.mean()),
                sd=float(x.std(ddof=1)) if len(x) > 1 else 0.0,
                min=float(x.min()),
                max=float(x.max()),
                quantiles={k: float(v) for k, v in zip(("q05", "q25", "q50", "q75", "q95"), q)},
            )
        cc = count_column(c)
        if cc in scores.columns:
            n = scores[cc].to_numpy(np.float64)
            n = n[np.isfinite(n) & (n > 0)]
            if len(n):
                d["annotations"] = {
                    "mean": float(n.mean()),
                    "min": int(n.min()),
                    "max": int(n.max()),
                }
        out["columns"][c] = d
    for a, b in zip(cols, cols[1:]):
        out[f"{a} ~ {b}"] = score_correlation(scores, a, b)
    return out


# --------------------------------------------------------------------------- lag, RT, truth
@njit(cache=True)
def _bin_sums(edges, x, h):
    """Per bin of ``edges`` (the last one closed): count, sum of ``h``, sum of ``x``, each sum in
    the order of ``x`` (``numpy.bincount`` of ``searchsorted(edges, x, "right") - 1``, clipped
    to the bins, in one pass)."""
    bins = edges.shape[0] - 1
    n = np.zeros(bins, dtype=np.int64)
    hs = np.zeros(bins)
    xs = np.zeros(bins)
    for i in range(x.shape[0]):
        v = x[i]
        b = 0
        while b < bins and edges[b + 1] <= v:  # edges at or below v, less one
            b += 1
        if b > bins - 1:
            b = bins - 1
        n[b] += 1
        hs[b] += h[i]
        xs[b] += v
    return n, hs, xs


def _bin_sums_ref(edges, x, h):
    """Plain numpy twin of :func:`_bin_sums`."""
    bins = edges.shape[0] - 1
    b = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, bins - 1)
    return (
        np.bincount(b, minlength=bins),
        np.bincount(b, weights=h, minlength=bins),
        np.bincount(b, weights=x, minlength=bins),
    )


def lag_curve(result: ScoreResult, step: int, *, bins: int = 8) -> dict:
    """Hit rate against retention (the paper's Fig. 3): binned means and a least-squares line.

    Retention is the lag in positions when the step's tests have lags, else ``delay_s``
    in hours (VideoMem step 2). Bins have equal width over the observed range.
    """
    t = result.tests[step - 1]
    use_lag = len(t) > 0 and not np.isnan(t.lag).any()
    x = t.lag if use_lag else t.delay_s / 3600.0
    ok = np.isfinite(x)
    x, h = x[ok], t.hit[ok]
    out = {"unit": "lag (positions)" if use_lag else "delay (hours)", "annotations": int(len(x))}
    if len(x) < 2 or x.max() == x.min():
        return {**out, "slope": float("nan"), "intercept": float("nan"), "bins": []}
    xm, hm = x.mean(), h.mean()
    slope = float(((x - xm) * (h - hm)).sum() / ((x - xm) ** 2).sum())
    edges = np.linspace(x.min(), x.max(), bins + 1)
    n, hits, xsum = _bin_sums(edges, x, h)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = hits / n
        xmean = xsum / n
    rows = [
        {
            "lo": float(edges[i]),
            "hi": float(edges[i + 1]),
            "x": float(xmean[i]),
            "hit_rate": float(rate[i]),
            "annotations": int(n[i]),
        }
        for i in range(bins)
        if n[i]
    ]
    return {
        **out,
        "slope": slope,
        "intercept": float(hm - slope * xm),
        "pearson": pearson(x, h),
        "bins": rows,
    }


def video_mean_rt(t: Tests, V: int) -> np.ndarray:
    """Per video (dense index): mean RT of its correct recognitions in ``t``; NaN where none."""
    ok = (t.hit > 0) & np.isfinite(t.rt_s)
    n = np.bincount(t.video[ok], minlength=V)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(
            n > 0, np.bincount(t.video[ok], weights=t.rt_s[ok], minlength=V) / n, np.nan
        )


_video_mean_rt = video_mean_rt  # the name memsim.study.run imported first


def rt_analyses(result: ScoreResult) -> dict:
    """Response times of kept participants: mean RT of correct recognitions and of false
    alarms per step; per-video mean RT (correct recognitions) vs score (Pearson, and Spearman);
    per-video mean RT between successive steps (Pearson)."""
    V = len(result.video_ids)
    out, per_video = {}, []
    for s, spec in enumerate(result.protocol.steps, start=1):
        hits_rt, fa_rt = result.trials_rt.get(s, (np.array([]), np.array([])))
        mrt = video_mean_rt(result.tests[s - 1], V)
        sc, _ = result.step_scores(s)
        per_video.append(mrt)
        out[spec.name] = {
            "mean_rt_recognitions_s": float(np.nanmean(hits_rt)) if len(hits_rt) else float("nan"),
            "mean_rt_false_alarms_s": float(np.nanmean(fa_rt)) if len(fa_rt) else float("nan"),
            "recognitions": int(len(hits_rt)),
            "false_alarms": int(len(fa_rt)),
            "video_rt_vs_score_pearson": pearson(mrt, sc),
            "video_rt_vs_score_spearman": spearman(mrt, sc),
        }
    steps = result.protocol.steps
    for i in range(len(steps) - 1):
        out[f"{steps[i].name} ~ {steps[i + 1].name}"] = {
            "video_mean_rt_pearson": pearson(per_video[i], per_video[i + 1]),
            "videos": int((np.isfinite(per_video[i]) & np.isfinite(per_video[i + 1])).sum()),
        }
    return out


def truth_correlation(scores: pd.DataFrame, truth: pd.DataFrame) -> dict:
    """Observed scores against a latent truth (the noise ceiling of a simulation).

    ``truth`` has a ``video`` column and, for each score column to check, a column holding
    the true value (e.g. the hit probability at the reference lag), named like the score
    column or as :func:`memsim.design.protocol.truth_column` names it (``true_short_term``).
    """
    if "video" not in truth.columns:
        raise UserError("truth: needs a 'video' column")
    if not pd.api.types.is_integer_dtype(truth["video"]):
        raise UserError(
            f"truth: its 'video' column must hold the trial table's integer video ids, got "
            f"{truth['video'].dtype} values"
        )
    if truth["video"].duplicated().any():
        dup = int(truth.loc[truth["video"].duplicated(), "video"].iloc[0])
        raise UserError(f"truth: video {dup} is given more than once")
    # the simulator names them true_<step> (protocol.truth_column); a column named like the score
    # works too
    truth = truth.rename(
        columns={
            truth_column(c): c
            for c in scores.columns
            if truth_column(c) in truth.columns and c not in truth.columns
        }
    )
    steps = [c for c in scores.columns if c.endswith("_memorability") and c in truth.columns]
    if not steps:
        wanted = ", ".join(
            f"{c} or {truth_column(c)}" for c in scores.columns if c.endswith("_memorability")
        )
        raise UserError(f"truth: no column of true values (expected {wanted})")
    if not scores["video"].isin(truth["video"]).any():
        raise UserError("truth: none of its videos is among the scored ones")
    m = scores.merge(truth, on="video", how="inner", suffixes=("", "__truth"))
    out = {}
    for c in scores.columns:
        if c == "video" or not c.endswith("_memorability") or c not in truth.columns:
            continue
        a, b = m[c].to_numpy(np.float64), m[f"{c}__truth"].to_numpy(np.float64)
        ok = np.isfinite(a) & np.isfinite(b)
        out[c] = {"spearman": spearman(a, b), "pearson": pearson(a, b), "videos": int(ok.sum())}
    return out


def decay_alpha_summary(result: ScoreResult) -> dict:
    """Mean and SD over videos of the per-video decay slopes, per step whose correction fits
    them (``memento_decay``): the released Memento10k ``decay_alpha`` is the same quantity."""
    out = {}
    v = result.videos
    if "alpha" not in v.columns:
        return out
    for s, spec in enumerate(result.protocol.steps, start=1):
        a = v.loc[v["step"] == s, "alpha"].to_numpy(float)
        a = a[np.isfinite(a)]
        if len(a) > 1:
            out[spec.name] = {
                "mean": float(a.mean()),
                "sd": float(a.std(ddof=1)),
                "videos": int(len(a)),
            }
    return out


def participant_rates(result: ScoreResult) -> dict:
    """Hit and false-alarm rates of the kept participants, per step.

    Image studies report these beside the scores (Isola et al. 2011, LaMem): a participant's
    hit rate is over her target tests, her false-alarm rate over her first showings, as the
    filters compute them (:func:`memsim.analysis.filters.participant_stats`). Per step:
    ``hit_rate`` and ``false_alarm_rate`` (each mean and SD over the kept participants with
    a denominator, ``pooled``: all their events over all their tests, and ``participants``),
    ``vigilance_hit_rate`` (mean over kept participants with vigilance tests; absent in a
    step without them) and
    ``excluded_share`` (the share of the step's participants the filters dropped).
    """
    parts = result.participants
    out = {}
    for s, spec in enumerate(result.protocol.steps, start=1):
        ps = parts[parts["step"] == s]
        kept = ps[ps["kept"].to_numpy()]
        block = {}
        for rate, num, den in (
            ("hit_rate", "hits", "target_tests"),
            ("false_alarm_rate", "false_alarms", "first_showings"),
        ):
            r = kept[rate].to_numpy(float)
            r = r[np.isfinite(r)]
            tests = int(kept[den].sum())
            block[rate] = {
                "mean": float(r.mean()) if len(r) else float("nan"),
                "sd": float(r.std(ddof=1)) if len(r) > 1 else float("nan"),
                "pooled": float(kept[num].sum() / tests) if tests else float("nan"),
                "participants": int(len(r)),
            }
        v = kept["vigilance_hit_rate"].to_numpy(float)
        v = v[np.isfinite(v)]
        if len(v):  # a step without vigilance tests (VideoMem's second) has no such rate
            block["vigilance_hit_rate"] = float(v.mean())
        block["excluded_share"] = float(1.0 - len(kept) / len(ps)) if len(ps) else float("nan")
        out[spec.name] = block
    return out


# --------------------------------------------------------------------------- everything
def correction_change(videos: pd.DataFrame) -> dict:
    """How far a step's correction moved its scores: the mean and the median of score / raw - 1
    over the videos with a raw score above 0 (0 without a correction). The released VideoMem
    short-term scores give -0.0175 and -0.0177 (:func:`memsim.fit.compat.released_correction`): the
    median follows the 90 % of videos with 45 annotations or fewer (their mean -0.0179), the
    mean is pulled by the heavily annotated tail (its mean -0.0143)."""
    raw = videos["raw"].to_numpy(float)
    sc = videos["score"].to_numpy(float)
    ok = np.isfinite(raw) & np.isfinite(sc) & (raw > 0)
    if not ok.any():
        return {"mean_relative_change": float("nan"), "median_relative_change": float("nan")}
    rel = sc[ok] / raw[ok] - 1.0
    return {
        "mean_relative_change": float(np.mean(rel)),
        "median_relative_change": float(np.median(rel)),
    }


class Analysis(dict):
    """Every statistic of a scored study: nested mappings of numbers, JSON-able as they are.

    Keys (per step name where it applies): ``protocol``, ``seed``, ``steps``,
    ``participants_kept``, ``participants_total``, ``filter_reasons``,
    ``annotations_per_video`` (mean, min, p95: the 95th percentile, max, videos),
    ``mean_score_raw``, ``mean_score``,
    ``correction``, ``human_consistency`` (mean, sd, values, ...), ``annotation_consistency``
    (curve, at_mean_annotations, max, all_annotations_reading), ``spearman_brown``,
    ``lag_curve``, ``response_times``, ``scores``, ``decay_alpha``, ``participant_rates``
    (hit_rate, false_alarm_rate, vigilance_hit_rate, excluded_share), ``score_correlation``
    (``"<a> ~ <b>"``: all, top500, top100), ``truth`` (when the truth was given). ``memsim run``
    adds ``real`` (against the released scores), ``params``, ``calibrated`` and ``scale``.

    A statistic is named by its path of keys: ``analysis.value(("human_consistency",
    "short-term", "mean"))`` or the dotted ``"human_consistency.short-term.mean"``; the same
    dotted names are what :meth:`statistics` lists and what study files collect.
    """

    def __repr__(self) -> str:  # a line, not every number (a notebook prints it)
        return (
            f"Analysis(protocol={self.get('protocol')!r}, seed={self.get('seed')!r}, "
            f"steps={self.get('steps')!r}, statistics={len(self.statistics()):,}; "
            f".statistics() lists them by name)"
        )

    def value(self, path: str | tuple[str, ...] | list[str]) -> float:
        """The number at ``path`` (a key sequence, or a dotted name); NaN when absent."""
        return lookup(self, tuple(path.split(".")) if isinstance(path, str) else tuple(path))

    def statistics(self) -> dict[str, float]:
        """Every scalar statistic by its dotted name (:func:`flatten_statistics`)."""
        return flatten_statistics(self)


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


def flatten_statistics(stats: dict, prefix: str = "") -> dict[str, float]:
    """Nested statistics as flat ``a.b.c`` names of floats.

    A curve ``{"N": [...], "spearman": [...]}`` becomes ``<name>@<N>`` entries,
    a list of mappings ``<name>.<i>.<key>``; other lists and non-numbers are left out.
    """
    out: dict[str, float] = {}
    for key, value in stats.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            if isinstance(value.get("N"), list) and isinstance(value.get("spearman"), list):
                for n, r in zip(value["N"], value["spearman"]):
                    out[f"{name}@{n:g}"] = float(r)
            else:
                out.update(flatten_statistics(value, f"{name}."))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for i, v in enumerate(value):  # e.g. lag-curve bins
                out.update(flatten_statistics(v, f"{name}.{i}."))
        elif isinstance(value, (bool, np.bool_)):
            out[name] = float(value)
        elif isinstance(value, (int, float, np.integer, np.floating)):
            out[name] = float(value)
    return out


#: the analyses that cost more than a pass over the scores, and what each needs computed
_COSTLY = {
    "human_consistency": ("human_consistency",),
    "annotation_consistency": ("annotation_consistency",),
    "spearman_brown": ("human_consistency", "annotation_consistency", "spearman_brown"),
    "lag_curve": ("lag_curve",),
}

#: the analyses that are not per-step counts and means: computed for every caller that reads
#: everything, and for an ``only`` that names them (a sweep's cell reads a few statistics)
_OPTIONAL = (
    "response_times",
    "scores",
    "decay_alpha",
    "participant_rates",
    "score_correlation",
    "count_correlation",
    "truth",
)


def analyse(
    result: ScoreResult,
    *,
    truth: pd.DataFrame | None = None,
    seed: int = 0,
    n_splits: int = 25,
    repeats: int = 3,
    only: set[str] | frozenset[str] | None = None,
) -> Analysis:
    """Every paper statistic computable from a scored trial table (:class:`Analysis`).

    Keys (per step name where it applies): participants_kept, participants_total,
    filter_reasons, annotations_per_video, mean_score_raw, mean_score, correction,
    human_consistency, annotation_consistency (curve, at_mean_annotations, max),
    spearman_brown, score_correlation, lag_curve, response_times, decay_alpha,
    participant_rates (:func:`participant_rates`), truth (when given), scores (score_summary
    of the scores table).

    ``only``: the top-level keys a caller will read (a study's statistics); the analyses none
    of them needs are then left out: the costly ones (human and annotation consistency,
    Spearman-Brown, lag curves) and the others beyond the per-step counts and means
    (response_times, scores, decay_alpha, participant_rates, score_correlation, truth).
    Whatever is computed is the same number as in the full analysis: each analysis draws
    from its own random stream.
    """
    need = set()
    for key in _COSTLY if only is None else only:
        need.update(_COSTLY.get(key, ()))
    p = result.protocol
    parts = result.participants
    out = Analysis(protocol=p.name, seed=int(seed), steps=[s.name for s in p.steps])
    keys = (
        "participants_kept",
        "participants_total",
        "filter_reasons",
        "annotations_per_video",
        "mean_score_raw",
        "mean_score",
        "correction",
        "human_consistency",
        "annotation_consistency",
        "spearman_brown",
        "lag_curve",
    )
    for k in keys:
        if k not in _COSTLY or k in need:
            out[k] = {}
    for s, spec in enumerate(p.steps, start=1):
        name = spec.name
        ps = parts[parts["step"] == s]
        out["participants_kept"][name] = int(ps["kept"].sum())
        out["participants_total"][name] = int(len(ps))
        out["filter_reasons"][name] = {
            str(k): int(v) for k, v in ps.loc[~ps["kept"], "reason"].value_counts().items()
        }
        vrows = result.videos[result.videos["step"] == s]
        n = vrows["annotations"].to_numpy()
        out["annotations_per_video"][name] = (
            {
                "mean": float(n.mean()),
                "min": int(n.min()),
                "p95": float(np.percentile(n, 95)),
                "max": int(n.max()),
                "videos": int(len(n)),
            }
            if len(n)
            else {"mean": float("nan"), "min": 0, "p95": float("nan"), "max": 0, "videos": 0}
        )
        out["mean_score_raw"][name] = float(vrows["raw"].mean()) if len(n) else float("nan")
        out["mean_score"][name] = float(vrows["score"].mean()) if len(n) else float("nan")
        out["correction"][name] = {**result.corrections[name], **correction_change(vrows)}
        if "lag_curve" in need:
            out["lag_curve"][name] = lag_curve(result, s)
        if "human_consistency" in need:
            hc = human_consistency(result, s, n_splits=n_splits, seed=seed)
            out["human_consistency"][name] = hc
        if "annotation_consistency" not in need:
            continue
        curve = annotation_consistency(result, s, repeats=repeats, seed=seed)
        mean_n = float(n.mean()) if len(n) else float("nan")
        out["annotation_consistency"][name] = {
            "curve": curve.to_dict(orient="list"),
            "at_mean_annotations": _interp(curve, round(mean_n)) if len(n) else float("nan"),
            "mean_annotations": mean_n,
            "max": (
                float(curve["spearman"].max()) if curve["spearman"].notna().any() else float("nan")
            ),
        }
        # the paper's other reading: all annotations of the videos with >= N, x = their mean count
        allc = annotation_consistency(result, s, repeats=repeats, seed=seed, reading="all")
        out["annotation_consistency"][name]["all_annotations_reading"] = {
            "curve": allc.to_dict(orient="list"),
            "all_videos": float(allc["spearman"].iloc[0]) if len(allc) else float("nan"),
            "max": (
                float(allc["spearman"].max()) if allc["spearman"].notna().any() else float("nan")
            ),
        }
        if "spearman_brown" not in need:
            continue
        # Spearman-Brown: from the human split-half r with m annotations per half, the
        # reliability of the full set (k = 2) and the prediction at N/2-vs-N/2 halves.
        m = hc.get("mean_annotations_per_half", float("nan"))
        r = hc["mean"]
        out["spearman_brown"][name] = {
            "full_data": spearman_brown(r, 2.0) if np.isfinite(r) else float("nan"),
            "predicted_curve": {
                "N": curve["N"].tolist(),
                "spearman": [
                    spearman_brown(r, (N / 2) / m) if np.isfinite(r) and m > 0 else float("nan")
                    for N in curve["N"]
                ],
            },
        }
    wanted = set(_OPTIONAL) if only is None else set(only)
    if "response_times" in wanted:
        out["response_times"] = rt_analyses(result)
    if "scores" in wanted:
        out["scores"] = score_summary(result.scores)
    if "decay_alpha" in wanted:
        out["decay_alpha"] = decay_alpha_summary(result)
    if "participant_rates" in wanted:
        out["participant_rates"] = participant_rates(result)
    if "score_correlation" in wanted:
        cols = [s.scoring.column for s in p.steps]
        out["score_correlation"] = {
            f"{a} ~ {b}": score_correlation(result.scores, a, b) for a, b in zip(cols, cols[1:])
        }
    if "count_correlation" in wanted:
        out["count_correlation"] = count_correlation(
            result.scores, [s.scoring.column for s in p.steps]
        )
    if truth is not None and "truth" in wanted:
        out["truth"] = truth_correlation(result.scores, truth)
    return out


def summarise(
    trials: pd.DataFrame, protocol, *, truth: pd.DataFrame | None = None, seed: int = 0
) -> dict:
    """Score a trial table and return :func:`analyse`'s dict of every paper statistic."""
    return analyse(score(trials, protocol), truth=truth, seed=seed)
