"""Compatibility analysis: which of the paper's consistency numbers the released scores allow.

In: the released VideoMem scores (``ground-truth_dev-set.csv``: per video a score and
its number of annotations). Out: tables of the consistency statistics implied by
those scores under stated models of how annotations arise, computed with the
project's own consistency code (:func:`memsim.analysis.consistency.human_consistency`,
:func:`memsim.analysis.consistency.annotation_consistency`) on synthetic annotation sets.

Constructions (``docs/calibration.md``, "Compatibility"):

``independent``
    Conditionally independent annotations: video ``v``'s true score ``p_v`` is
    drawn from a beta with the released mean and the released variance minus the
    binomial noise ``mean(s (1 - s) / (n - 1))``; it receives its released number
    of annotations, each a Bernoulli(``p_v``) draw.
``npmle``
    Conditionally independent annotations with the true scores' *shape* taken from the
    data: ``p_v`` is drawn from the nonparametric maximum-likelihood mixing distribution
    of the released hits ``k`` out of ``n`` (:func:`npmle`, a binomial mixture on a grid).
    The beta matches two moments only; the short-term true scores are skewed against the
    ceiling, and a rank correlation (the paper's Spearman) depends on that shape.
``upper``
    The released score taken as the noiseless truth (no variance lost to noise):
    an upper bound for any model of independent annotations.
Then, per paper number, the within-video noise it needs (:func:`noise_needed`), and
another reading of the paper's numbers (split-halves stepped up to the full set by
Spearman–Brown, :func:`readings_table`).

Annotations are dealt to synthetic participants of 40 (VideoMem's targets per
participant) in a random order, so a participant split-half is what
:func:`human_consistency` does to a real log. Scores are uncorrected (the lag
correction of the released ST scores moves each by < 0.02; see the docs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import binom

from memsim.analysis.consistency import annotation_consistency, human_consistency, spearman_brown
from memsim.analysis.distributions import sample_sd
from memsim.analysis.scoring import ScoreResult, Tests, score, video_sums
from memsim.data import data_dir
from memsim.design.protocol import load_protocol, protocol_from_mapping
from memsim.design.scores import count_column, read_scores
from memsim.errors import UserError
from memsim.fit.compare import default_targets_path, load_targets
from memsim.paths import set_path
from memsim.resources import protocol_path
from memsim.sim.params import default_params_path, load_params, params_from_mapping
from memsim.sim.simulate import simulate

__all__ = [
    "implied_variance",
    "beta_params",
    "npmle",
    "released_hits",
    "raw_hits",
    "released_correction",
    "synthetic_result",
    "consistency_of",
    "compat_table",
    "readings_table",
    "paper_numbers",
    "CompatResult",
    "compat",
]

COLUMNS = ("short-term_memorability", "long-term_memorability")


def paper_numbers() -> dict:
    """The paper's consistencies per score column, from VideoMem's targets file: ``human``,
    ``annotation`` and ``at`` (the annotations per video the latter was measured at)."""

    targets = load_targets(default_targets_path("videomem"))
    out = {}
    for col, step in zip(COLUMNS, ("short-term", "long-term")):
        annotation = targets.find(("annotation_consistency", step, "at_mean_annotations"))
        out[col] = {
            "human": targets.find(("human_consistency", step, "mean")).value,
            "annotation": annotation.value,
            "at": int(round(annotation.at)),
        }
    return out


PER_PARTICIPANT = 40


def implied_variance(s: np.ndarray, n: np.ndarray) -> dict:
    """Observed variance of scores, the binomial noise variance, and their difference."""
    s, n = np.asarray(s, float), np.asarray(n, float)
    ok = np.isfinite(s) & (n > 1)
    s, n = s[ok], n[ok]
    var = float(s.var(ddof=1))
    noise = float(np.mean(s * (1 - s) / (n - 1)))
    return {
        "mean": float(s.mean()),
        "sd": float(np.sqrt(var)),
        "var": var,
        "noise_var": noise,
        "true_var": var - noise,
        "videos": int(len(s)),
        "mean_annotations": float(n.mean()),
    }


def beta_params(mean: float, var: float) -> tuple[float, float]:
    """Beta (a, b) with the given mean and variance (method of moments)."""
    k = mean * (1 - mean) / var - 1.0
    if k <= 0:
        raise ValueError(f"variance {var} too large for a beta with mean {mean}")
    return mean * k, (1 - mean) * k


def npmle(
    k: np.ndarray,
    n: np.ndarray,
    *,
    grid: np.ndarray | None = None,
    tol: float = 1e-9,
    max_iter: int = 1000,
) -> tuple[np.ndarray, np.ndarray]:
    """The nonparametric maximum-likelihood mixing distribution of binomial hit rates.

    Each video ``v`` has ``k_v`` hits out of ``n_v`` annotations, ``k_v ~ Binomial(n_v, p_v)``
    with ``p_v`` drawn from an unknown distribution ``G``; the NPMLE of ``G`` (Laird 1978) is
    found by EM on the weights of a fixed grid of ``p`` (default 500 points over (0, 1)),
    over the distinct ``(k, n)`` pairs. Stops when no weight moves by more than ``tol``, or
    after ``max_iter`` steps: EM creeps towards the NPMLE's few support points slowly, but what
    the constructions use does not move with it (on the released ST scores the implied human
    consistency is 0.349, 0.349, 0.350 and 0.350 after 300, 1,000, 5,000 and 20,000 steps).
    Returns ``(grid, weights)``; the weights sum to 1.
    """

    k, n = np.asarray(k, np.int64), np.asarray(n, np.int64)
    ok = n > 0
    pairs, count = np.unique(np.stack([k[ok], n[ok]], axis=1), axis=0, return_counts=True)
    if not len(pairs):
        raise ValueError("npmle needs at least one video with annotations")
    if np.any(pairs[:, 0] < 0) or np.any(pairs[:, 0] > pairs[:, 1]):
        raise ValueError("hits must lie in 0..n")
    grid = np.linspace(0.001, 0.999, 500) if grid is None else np.asarray(grid, float)
    lik = binom.pmf(pairs[:, :1], pairs[:, 1:], grid[None, :])
    share = count / count.sum()
    w = np.full(grid.size, 1.0 / grid.size)
    for _ in range(max_iter):
        post = lik * w
        post /= post.sum(axis=1, keepdims=True)
        new = share @ post
        done = np.max(np.abs(new - w)) < tol
        w = new
        if done:
            break
    return grid, w / w.sum()


def released_hits(s: np.ndarray, n: np.ndarray, *, corrected: bool) -> np.ndarray:
    """The hits behind released scores: ``k = ceil(s n)`` for lag-corrected short-term scores
    (:func:`raw_hits`), ``round(s n)`` for raw ones."""
    s, n = np.asarray(s, float), np.asarray(n, float)
    k = raw_hits(s, n) if corrected else np.round(s * n)
    return np.clip(k, 0, n).astype(np.int64)


def _protocol_without_correction():
    """VideoMem with no lag correction: the synthetic annotations have no lags."""

    d = load_protocol(protocol_path("videomem")).dump()
    for step in d["steps"]:
        step["scoring"]["correction"] = {"kind": "none"}
    return protocol_from_mapping(d, "videomem without correction")


def synthetic_result(
    p_true: np.ndarray,
    counts: np.ndarray,
    rng: np.random.Generator,
    *,
    step: int = 1,
    protocol=None,
):
    """A :class:`~memsim.analysis.scoring.ScoreResult` holding Bernoulli annotations of every video.

    ``p_true`` may be float64[V] (one probability per video) or float64[total] (one per
    annotation, in video order: video 0's ``counts[0]`` annotations first).
    """

    protocol = protocol or _protocol_without_correction()
    V = len(counts)
    video = np.repeat(np.arange(V), counts)
    p = p_true[video] if len(p_true) == V else p_true
    hit = (rng.random(len(video)) < p).astype(np.float64)
    # deal the annotations to participants of 40 in a random order
    order = rng.permutation(len(video))
    participant = np.empty(len(video), np.int64)
    participant[order] = np.arange(len(video)) // PER_PARTICIPANT
    srt = np.lexsort((video, participant))
    nan = np.full(len(video), np.nan)
    tests = [None, None]
    tests[step - 1] = Tests(
        step=step,
        participant=participant[srt],
        video=video[srt],
        hit=hit[srt],
        lag=nan,
        delay_s=nan,
        rt_s=nan,
    )
    other = Tests(
        step=3 - step,
        participant=np.zeros(0, np.int64),
        video=np.zeros(0, np.int64),
        hit=np.zeros(0),
        lag=np.zeros(0),
        delay_s=np.zeros(0),
        rt_s=np.zeros(0),
    )
    tests[2 - step] = other
    return ScoreResult(
        protocol=protocol,
        scores=pd.DataFrame({"video": np.arange(V)}),
        videos=pd.DataFrame(),
        participants=pd.DataFrame(),
        corrections={},
        tests=tuple(tests),
        video_ids=np.arange(V),
        participant_ids=np.arange(participant.max() + 1),
    )


def consistency_of(result, step: int, at: int, seed: int, n_splits: int = 25) -> dict:
    """Human consistency (participant split-halves) and annotation consistency at ``at``."""

    hc = human_consistency(result, step, n_splits=n_splits, seed=seed)["mean"]
    curve = annotation_consistency(
        result, step, n_values=[at if at % 2 == 0 else at - 1, at + (at % 2)], repeats=1, seed=seed
    )
    ac = float(np.interp(at, curve["N"], curve["spearman"]))
    return {"human": float(hc), "annotation": ac}


CONSTRUCTIONS = ("independent", "npmle", "upper")


def _construct(kind: str, s: np.ndarray, n: np.ndarray, rng, mixture=None) -> np.ndarray:
    if kind == "upper":
        return np.clip(s, 0, 1)
    if kind == "independent":
        st = implied_variance(s, n)
        a, b = beta_params(st["mean"], st["true_var"])
        return rng.beta(a, b, len(s))
    if kind == "npmle":
        grid, w = mixture
        return rng.choice(grid, len(s), p=w)
    raise ValueError(kind)


def compat_table(real: pd.DataFrame, *, repeats: int = 5, seed: int = 0) -> pd.DataFrame:
    """The SPEC's table, recomputed: per score column and construction, mean ± sd over repeats."""
    protocol = _protocol_without_correction()
    paper = paper_numbers()
    rows = []
    for step, col in enumerate(COLUMNS, start=1):
        s = real[col].to_numpy(float)
        n = real[count_column(col)].to_numpy(np.int64)
        ok = np.isfinite(s) & (n > 0)
        s, n = s[ok], n[ok]
        at = paper[col]["at"]
        mixture = npmle(released_hits(s, n, corrected=step == 1), n)
        for kind in CONSTRUCTIONS:
            vals = []
            for r in range(repeats):
                rng = np.random.default_rng(
                    np.random.SeedSequence([seed, step, r, CONSTRUCTIONS.index(kind)])
                )
                p = _construct(kind, s, n, rng, mixture)
                res = synthetic_result(p, n, rng, step=step, protocol=protocol)
                vals.append(consistency_of(res, step, at, seed=seed + r))
            h = np.array([v["human"] for v in vals])
            a = np.array([v["annotation"] for v in vals])
            rows.append(
                {
                    "column": col,
                    "construction": kind,
                    "human": h.mean(),
                    "human_sd": h.std(ddof=1) if repeats > 1 else 0.0,
                    "annotation": a.mean(),
                    "annotation_sd": a.std(ddof=1) if repeats > 1 else 0.0,
                    "at": at,
                    "paper_human": paper[col]["human"],
                    "paper_annotation": paper[col]["annotation"],
                }
            )
    return pd.DataFrame(rows)


def sd_needed(
    real: pd.DataFrame,
    col: str,
    target: float,
    *,
    repeats: int = 3,
    seed: int = 0,
    what: str = "human",
) -> dict:
    """The observed score SD at which independent annotations reach ``target`` (bisection on true
    SD)."""
    protocol = _protocol_without_correction()
    paper = paper_numbers()
    step = COLUMNS.index(col) + 1
    s = real[col].to_numpy(float)
    n = real[count_column(col)].to_numpy(np.int64)
    st = implied_variance(s, n)
    at = paper[col]["at"]

    def value(true_sd: float) -> tuple[float, float]:
        out, obs = [], []
        for r in range(repeats):
            rng = np.random.default_rng(np.random.SeedSequence([seed, 99, step, r]))
            a, b = beta_params(st["mean"], true_sd**2)
            p = rng.beta(a, b, len(s))
            res = synthetic_result(p, n, rng, step=step, protocol=protocol)
            out.append(consistency_of(res, step, at, seed=seed + r, n_splits=10)[what])
            sc = (
                np.bincount(
                    res.tests[step - 1].video, weights=res.tests[step - 1].hit, minlength=len(n)
                )
                / n
            )
            obs.append(sc.std(ddof=1))
        return float(np.mean(out)), float(np.mean(obs))

    lo, hi = 0.01, float(np.sqrt(st["mean"] * (1 - st["mean"]))) * 0.9
    for _ in range(12):
        mid = 0.5 * (lo + hi)
        v, _ = value(mid)
        lo, hi = (mid, hi) if v < target else (lo, mid)
    v, obs = value(0.5 * (lo + hi))
    return {
        "column": col,
        "statistic": what,
        "target": target,
        "true_sd": 0.5 * (lo + hi),
        "observed_sd": obs,
        "released_sd": st["sd"],
        "reached": v,
    }


def readings_table(table: pd.DataFrame) -> pd.DataFrame:
    """Other readings of the paper's annotation consistency: Spearman–Brown stepped-up split-half.

    ``2 r / (1 + r)`` is the reliability of the whole set of annotations predicted from a
    split-half ``r``; a paper that reports it under the split-half's name would print these.
    """

    rows = []
    for r in table.itertuples():
        rows.append(
            {
                "column": r.column,
                "construction": r.construction,
                "annotation_split_half": r.annotation,
                "annotation_stepped_up": spearman_brown(r.annotation, 2.0),
                "human_split_half": r.human,
                "human_stepped_up": spearman_brown(r.human, 2.0),
                "paper_annotation": r.paper_annotation,
                "paper_human": r.paper_human,
            }
        )
    return pd.DataFrame(rows)


def noise_needed(
    real: pd.DataFrame, col: str, r_paper: float, per_half: float, *, min_annotations: int = 0
) -> dict:
    """Within-video noise the paper's split-half ``r_paper`` implies, against binomial noise.

    Classical test theory on the released scores of videos with at least ``min_annotations``
    annotations: observed variance ``S = T + E`` (true + noise of a full score of ``n``
    annotations); a split into halves of ``per_half`` annotations has noise ``E n / per_half``
    and ``r = T / (T + E n / per_half)``. Solving for ``E`` gives the noise the paper's ``r``
    needs; ``factor`` is it over the binomial noise. A factor below 1 needs annotations of
    a video to be *negatively* dependent given the video (sub-binomial), which no model of
    conditionally independent annotations (participant heterogeneity, participant-by-video
    interactions, time-clustered or drifting pools: all leave each annotation a Bernoulli
    draw given the video's shared quantities, which count as truth for both halves) gives.
    ``rho`` is the intra-video correlation of annotations that would give that factor,
    ``1 + (n - 1) rho = factor``.
    """
    s = real[col].to_numpy(float)
    n = real[count_column(col)].to_numpy(float)
    ok = np.isfinite(s) & (n >= max(min_annotations, 2))
    st = implied_variance(s[ok], n[ok])
    S, nbar = st["var"], st["mean_annotations"]
    k = nbar / per_half  # noise of a half = k E
    # r = (S - E) / (S - E + k E)  ->  E = S (1 - r) / (1 - r + k r)
    E = S * (1 - r_paper) / (1 - r_paper + k * r_paper)
    r_binomial = st["true_var"] / (st["true_var"] + k * st["noise_var"])
    factor = E / st["noise_var"]
    return {
        "column": col,
        "videos": st["videos"],
        "min_annotations": int(min_annotations),
        "mean_annotations": nbar,
        "per_half": per_half,
        "paper": r_paper,
        "r_with_binomial_noise": float(r_binomial),
        "noise_var_needed": float(E),
        "binomial_noise_var": st["noise_var"],
        "factor": float(factor),
        "rho": float((factor - 1) / (nbar - 1)),
    }


def independence_prediction(scores: pd.DataFrame, col: str) -> float:
    """Split-half r that binomial (independent) noise predicts from a score table's own
    variance and counts: ``T / (T + 2 E)`` with ``E`` the binomial noise of a full score."""
    n = scores[count_column(col)].to_numpy(float)
    st = implied_variance(scores[col].to_numpy(float), n)
    return float(st["true_var"] / (st["true_var"] + 2 * st["noise_var"]))


def simulator_check(params, *, scale: float = 0.5, seed: int = 0) -> pd.DataFrame:
    """The simulator's own mechanisms against the independence bound.

    Variants of ``params`` that add participant heterogeneity (memory ability, careless
    players, false-alarm bias): each is simulated, scored and split in halves of
    participants; its human consistency is set beside the value independent binomial
    noise predicts from its *own* scores: ``T / (T + 2E)`` from their variance and counts (a
    Pearson bound), and the NPMLE construction of :func:`compat_table` from their hits (a
    Spearman, with the true scores' shape). Every mechanism of this simulator keeps
    annotations independent given the video, so the NPMLE construction agrees with it: none
    can lift consistency above what a score distribution allows.
    """

    protocol = load_videomem()
    variants = {
        "shipped": {},
        "no ability spread": {"participants.ability_sd": 0.0},
        "ability spread x3": {"participants.ability_sd": 3 * params.participants.ability_sd},
        "20 % careless players": {"participants.careless_share": 0.2},
        "false-alarm bias sd x2": {
            "participants.false_alarm.sd": 2 * params.participants.false_alarm.sd
        },
    }

    paper = paper_numbers()
    rows = []
    for name, change in variants.items():
        d = params.dump()
        for path, v in change.items():
            set_path(d, path, float(v), create=True)
        p = params_from_mapping(d, name)
        sim = simulate(protocol, p, seed=seed, scale=scale)
        res = score(sim.trials, sim.protocol, validate=False)
        for step, col in enumerate(COLUMNS, start=1):
            t = res.tests[step - 1]
            sums = video_sums(t.video, t.hit, t.lag, len(res.video_ids))
            tested = sums.n > 0
            n, k = sums.n[tested].astype(np.int64), sums.h[tested].astype(np.int64)
            grid, w = npmle(k, n)
            rng = np.random.default_rng(np.random.SeedSequence([seed, step, len(rows)]))
            drawn = synthetic_result(rng.choice(grid, len(n), p=w), n, rng, step=step)
            shaped = consistency_of(drawn, step, paper[col]["at"], seed=seed, n_splits=10)["human"]
            rows.append(
                {
                    "variant": name,
                    "column": col,
                    "human": human_consistency(res, step, n_splits=10, seed=seed)["mean"],
                    "independence_predicts": independence_prediction(res.scores, col),
                    "npmle_predicts": shaped,
                    "score_sd": float(res.scores[col].std()),
                }
            )
    return pd.DataFrame(rows)


def raw_hits(scores: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The hits k behind released corrected scores of ``counts`` annotations: a corrected score
    is a raw k / n moved down by less than 1 / n, so k = ceil(score n)."""
    return np.ceil(np.asarray(scores, float) * counts - 1e-9)


TAIL_COUNT = 45  # released videos with more annotations than this were corrected differently


def released_correction(real: pd.DataFrame, col: str = "short-term_memorability") -> dict:
    """Undo the lag correction of released scores written with their annotation counts.

    A corrected score ``s`` of ``n`` annotations is a raw ``k / n`` moved down by less than
    ``1 / n``, so ``k = ceil(s n)`` recovers the raw score. ``recovered`` is the share of
    videos whose implied change lies in ``(-1/n, 0]`` (where the recovery is unambiguous).
    Then the change ``s - raw`` is fitted as ``intercept + slope raw``: a shift of every
    score (the ``shift`` form of :class:`memsim.design.protocol.LinearCorrection`) gives a slope
    of 0; a ratio ``h(100) / h(mean lag)`` (``ratio``) an intercept of 0.
    """
    s = real[col].to_numpy(float)
    n = real[count_column(col)].to_numpy(float)
    ok = np.isfinite(s) & (n > 0)
    s, n = s[ok], n[ok]
    raw = raw_hits(s, n) / n
    change = s - raw
    good = (change <= 1e-12) & (change > -1.0 / n)
    raw, change = raw[good], change[good]
    slope, intercept = np.polyfit(raw, change, 1)
    rel = change[raw > 0] / raw[raw > 0]
    nr = n[good][raw > 0]
    groups = {}
    for name, sel in (
        (f"<= {TAIL_COUNT} annotations", nr <= TAIL_COUNT),
        (f"> {TAIL_COUNT} annotations", nr > TAIL_COUNT),
    ):
        groups[name] = {
            "videos": int(sel.sum()),
            "mean_relative_change": float(rel[sel].mean()) if sel.any() else float("nan"),
            "sd_relative_change": sample_sd(rel[sel]),
        }
    return {
        "column": col,
        "videos": int(ok.sum()),
        "recovered": float(good.mean()),
        "mean_raw": float(raw.mean()),
        "mean_score": float(s[good].mean()),
        "intercept": float(intercept),
        "slope": float(slope),
        "mean_relative_change": float(rel.mean()),
        "median_relative_change": float(np.median(rel)),
        "sd_relative_change": float(rel.std(ddof=1)),
        "sd_change": float(change.std(ddof=1)),
        "sd_change_if_ratio": float((change - rel.mean() * raw).std(ddof=1)),
        "by_count": groups,
    }


def load_videomem():

    return load_protocol(protocol_path("videomem"))


@dataclass(frozen=True)
class CompatResult:
    """What :func:`compat` found: which consistencies the released VideoMem scores allow.

    Attributes
    ----------
    released : dict
        Per score column: mean, SD, binomial noise and true-score variance, videos, mean
        annotations (:func:`implied_variance`).
    table : DataFrame
        :func:`compat_table`: per column and construction (``independent`` beta, ``npmle``,
        ``upper``), human and annotation consistency (mean, sd over repeats) beside the paper.
    correction : dict
        :func:`released_correction`: the released short-term correction, a ratio.
    sd_needed : dict
        :func:`sd_needed`: the observed ST score SD the paper's human consistency needs.
    readings : DataFrame
        :func:`readings_table`: the split-half stepped up to the full set.
    noise_needed : DataFrame
        :func:`noise_needed` for each paper number: the within-video noise it needs.
    simulator : DataFrame or None
        :func:`simulator_check` of the shipped set's mechanisms (``mechanisms=True``).
    repeats, seed : int
    simulator_params : str
        Name of the parameter set :attr:`simulator` ran (empty without it).
    """

    released: dict
    table: pd.DataFrame
    correction: dict
    sd_needed: dict
    readings: pd.DataFrame
    noise_needed: pd.DataFrame
    simulator: pd.DataFrame | None
    repeats: int
    seed: int
    simulator_params: str = ""

    def to_dict(self) -> dict:
        """Every table as JSON-able records (``memsim compat --out``)."""
        out = {
            "released": self.released,
            "table": self.table.to_dict(orient="records"),
            "released_correction": self.correction,
            "sd_needed": self.sd_needed,
            "readings": self.readings.to_dict(orient="records"),
            "noise_needed": self.noise_needed.to_dict(orient="records"),
        }
        if self.simulator is not None:
            out["simulator"] = self.simulator.to_dict(orient="records")
        return out


#: The fewest videos a scores file must have for the compatibility analysis.
MIN_VIDEOS = 100


def compat(*, data=None, repeats: int = 5, seed: int = 0, mechanisms: bool = False) -> CompatResult:
    """The compatibility analysis of the released VideoMem scores with the paper's numbers.

    ``data``: the real-data folder (default ``$MEMSIM_DATA``, else ``../shared/data``).
    ``mechanisms``: also simulate the shipped set's mechanisms (a few minutes).
    """

    if repeats < 2:
        raise UserError(f"--repeats must be at least 2 (an SD needs two), got {repeats}")
    root = data_dir(data)
    path = root / "videomem" / "ground-truth_dev-set.csv"
    real = read_scores(path)
    if len(real) < MIN_VIDEOS:  # moments of a few videos: a beta fit fails, or NaN everywhere
        raise UserError(
            f"{len(real)} videos: the compatibility analysis reads the released scores (7,000 "
            f"videos), at least {MIN_VIDEOS}",
            path=path,
        )
    released = {
        c: implied_variance(real[c].to_numpy(float), real[count_column(c)].to_numpy())
        for c in COLUMNS
    }
    table = compat_table(real, repeats=repeats, seed=seed)
    paper = paper_numbers()
    need = sd_needed(real, COLUMNS[0], paper[COLUMNS[0]]["human"], seed=seed)
    st, lt = COLUMNS
    nn = pd.DataFrame(
        [
            noise_needed(real, st, paper[st]["human"], real[count_column(st)].mean() / 2),
            noise_needed(
                real,
                st,
                paper[st]["annotation"],
                paper[st]["at"] / 2,
                min_annotations=paper[st]["at"],
            ),
            noise_needed(real, lt, paper[lt]["human"], real[count_column(lt)].mean() / 2),
            noise_needed(
                real,
                lt,
                paper[lt]["annotation"],
                paper[lt]["at"] / 2,
                min_annotations=paper[lt]["at"],
            ),
        ]
    )
    nn.insert(
        1,
        "statistic",
        [
            "human",
            f"annotation at {paper[st]['at']:g}",
            "human",
            f"annotation at {paper[lt]['at']:g}",
        ],
    )
    sim, sim_name = None, ""
    if mechanisms:
        params = load_params(default_params_path(load_videomem()))
        sim, sim_name = simulator_check(params, seed=seed), params.name
    return CompatResult(
        released=released,
        table=table,
        correction=released_correction(real),
        sd_needed=need,
        readings=readings_table(table),
        noise_needed=nn,
        simulator=sim,
        repeats=repeats,
        seed=seed,
        simulator_params=sim_name,
    )
