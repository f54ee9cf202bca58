"""A small, fast generator of valid trial tables with a known truth (tests and benchmarks only).

Not the simulator: a two-step VideoMem-like design where every annotation is an
independent Bernoulli draw given the video (and, optionally, a linear effect of
lag), so scoring code can be checked against a truth it must recover.

``make_trials(...)`` returns ``(trials, truth)``; ``truth`` holds each video's
hit probability at the reference lag per step, under the score column names.
``make_protocol(...)`` returns the matching :class:`memsim.design.protocol.Protocol`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from memsim.design.protocol import Protocol, protocol_from_mapping

ST, LT = "short-term_memorability", "long-term_memorability"


@dataclass(frozen=True)
class Design:
    n_targets: int = 40
    n_vigilance: int = 20
    n_fillers: int = 60
    target_lag: tuple[int, int] = (45, 100)
    vigilance_lag: tuple[int, int] = (3, 6)
    lt_targets: int = 40
    lt_fillers: int = 80

    @property
    def length1(self) -> int:
        return 2 * self.n_targets + 2 * self.n_vigilance + self.n_fillers

    @property
    def length2(self) -> int:
        return self.lt_targets + self.lt_fillers

    @property
    def n_new1(self) -> int:
        return self.n_targets + self.n_vigilance + self.n_fillers


SMALL = Design(
    n_targets=4,
    n_vigilance=2,
    n_fillers=6,
    target_lag=(5, 9),
    vigilance_lag=(1, 2),
    lt_targets=4,
    lt_fillers=4,
)
# a middle-sized game: enough annotations per video for consistency and convergence tests
MID = Design(
    n_targets=10,
    n_vigilance=4,
    n_fillers=12,
    target_lag=(15, 30),
    vigilance_lag=(2, 3),
    lt_targets=8,
    lt_fillers=8,
)


def make_protocol(
    design: Design = Design(),
    *,
    correction: dict | None = None,
    lt_correction: dict | None = None,
    filters1: dict | None = None,
    filters2: dict | None = None,
    n_videos: int = 10_000,
) -> Protocol:
    d = design
    st_corr = (
        {"kind": "linear", "reference_lag": d.target_lag[1]} if correction is None else correction
    )
    f1 = {
        "min_vigilance_hit_rate": 0.7,
        "max_false_alarm_rate": 0.3,
        "false_alarms_below_hits": True,
    }
    f2 = {"min_hit_rate": 0.15, "max_false_alarm_rate": 0.4, "false_alarms_below_hits": True}
    return protocol_from_mapping(
        {
            "name": "test",
            "stimuli": {"kind": "video", "count": n_videos, "duration_s": 7.0, "gap_s": 1.0},
            "steps": [
                {
                    "name": "short-term",
                    "length": d.length1,
                    "items": [
                        {"role": "target", "count": d.n_targets, "repeat_lag": list(d.target_lag)},
                        {
                            "role": "vigilance",
                            "count": d.n_vigilance,
                            "repeat_lag": list(d.vigilance_lag),
                        },
                        {"role": "filler", "count": d.n_fillers},
                    ],
                    "filters": f1 if filters1 is None else filters1,
                    "scoring": {"column": ST, "correction": st_corr},
                },
                {
                    "name": "long-term",
                    "length": d.length2,
                    "delay_h": [24, 72],
                    "items": [
                        {
                            "role": "target",
                            "count": d.lt_targets,
                            "source": {"step": 1, "roles": ["filler"]},
                        },
                        {"role": "filler", "count": d.lt_fillers},
                    ],
                    "filters": f2 if filters2 is None else filters2,
                    "scoring": {"column": LT, "correction": lt_correction or {"kind": "none"}},
                },
            ],
            "selection": {"kind": "uniform"},
            "campaign": {
                "arrivals": {"kind": "poisson", "rate_per_h": 60},
                "stop": {"kind": "participants", "count": 10},
            },
        }
    )


def _template(d: Design, rng: np.random.Generator):
    """One valid step-1 order: slot -> (item index, is repeat, lag); items 0..n_new1-1."""
    L = d.length1
    item = np.full(L, -1)
    rep = np.zeros(L, bool)
    lag = np.full(L, -1)
    for _ in range(1000):  # greedy placement, restarted on a dead end
        item[:] = -1
        ok = True
        pairs = [(i, d.target_lag) for i in range(d.n_targets)]
        pairs += [(d.n_targets + i, d.vigilance_lag) for i in range(d.n_vigilance)]
        for i, (lo, hi) in pairs:
            free = np.flatnonzero(item == -1)
            rng.shuffle(free)
            placed = False
            for a in free:
                lags = np.arange(lo, hi + 1)
                b = a + lags
                good = b < L
                good[good] &= item[b[good]] == -1
                if good.any():
                    k = rng.choice(np.flatnonzero(good))
                    item[a], item[b[k]] = i, i
                    rep[b[k]], lag[b[k]] = True, lags[k]
                    rep[a], lag[a] = False, -1
                    placed = True
                    break
            if not placed:
                ok = False
                break
        if ok:
            free = np.flatnonzero(item == -1)
            item[free] = d.n_targets + d.n_vigilance + np.arange(d.n_fillers)
            rep[free], lag[free] = False, -1
            return item.copy(), rep.copy(), lag.copy()
    raise RuntimeError("no valid template")


def make_trials(
    n_videos: int = 10_000,
    n_participants: int = 10_450,
    n_returning: int | None = None,
    design: Design = Design(),
    *,
    seed: int = 0,
    lag_slope: float = -0.0005,
    p_st: np.ndarray | None = None,
    p_lt: np.ndarray | None = None,
    bad_fraction: float = 0.08,
    n_templates: int = 16,
):
    """A valid two-step trial table and the per-video truth that generated it.

    Hit probability of a target test: ``p_st[v] + lag_slope * (lag - max target lag)``
    in step 1 (so ``p_st`` is the truth at the reference lag), ``p_lt[v]`` in step 2.
    A ``bad_fraction`` of participants press at random (they fail the filters).
    """
    d = design
    rng = np.random.default_rng(seed)
    if p_st is None:
        p_st = rng.beta(9.0, 1.5, n_videos)
    if p_lt is None:
        p_lt = np.clip(0.55 * p_st + 0.45 * rng.beta(6.0, 2.0, n_videos), 0, 1)
    n_ret = n_participants // 3 if n_returning is None else n_returning
    P, L1, N1 = n_participants, d.length1, d.n_new1
    if n_videos < N1 or n_videos < d.lt_fillers:
        raise ValueError("need at least as many videos as one step uses")

    templates = [_template(d, rng) for _ in range(n_templates)]
    t_item = np.stack([t[0] for t in templates])
    t_rep = np.stack([t[1] for t in templates])
    t_lag = np.stack([t[2] for t in templates])
    tid = rng.integers(0, n_templates, P)

    # each participant's N1 distinct videos: consecutive chunks of fresh permutations
    per = n_videos // N1
    perms = np.stack([rng.permutation(n_videos)[: per * N1] for _ in range(-(-P // per))])
    chunk = perms.reshape(-1, N1)[:P]  # (P, N1)
    item = t_item[tid]  # (P, L1)
    video1 = np.take_along_axis(chunk, item, axis=1)
    rep1 = t_rep[tid]
    lag1 = t_lag[tid]
    is_t = item < d.n_targets
    is_v = (item >= d.n_targets) & (item < d.n_targets + d.n_vigilance)
    role1 = np.where(is_t, 0, np.where(is_v, 2, 1))

    bad = rng.random(P) < bad_fraction
    fa_p = np.where(bad, 0.45, rng.beta(1.0, 25.0, P))[:, None]
    vig_p = np.where(bad, 0.3, 0.97)[:, None]
    p_hit = np.clip(p_st[video1] + lag_slope * (lag1 - d.target_lag[1]), 0, 1)
    p_hit = np.where(bad[:, None], 0.4, p_hit)
    prob = np.where(rep1 & is_t, p_hit, np.where(rep1, vig_p, fa_p))
    resp1 = rng.random((P, L1)) < prob
    rt1 = np.where(
        resp1,
        np.where(rep1, rng.lognormal(0.2, 0.5, (P, L1)), rng.lognormal(1.0, 0.4, (P, L1))),
        np.nan,
    )
    rt1 = np.minimum(rt1, 6.99)
    dur1 = np.where(resp1, rt1, 7.0) + 1.0
    start = np.sort(rng.random(P)) * 3600.0 * 24 * 7
    onset1 = start[:, None] + np.concatenate(
        [np.zeros((P, 1)), np.cumsum(dur1, axis=1)[:, :-1]], axis=1
    )
    # delay since the first showing, from the onsets of the same row
    first_pos = np.arange(L1)[None, :] - np.where(rep1, lag1, 0)
    delay1 = np.where(rep1, onset1 - np.take_along_axis(onset1, first_pos, axis=1), np.nan)

    rows = [
        pd.DataFrame(
            {
                "participant": np.repeat(np.arange(P, dtype=np.int64) * 7 + 3, L1),
                "step": np.int8(1),
                "position": np.tile(np.arange(L1, dtype=np.int16), P),
                "video": video1.ravel().astype(np.int32),
                "role": pd.Categorical.from_codes(
                    role1.ravel(), categories=["target", "filler", "vigilance"]
                ),
                "repeat": rep1.ravel(),
                "lag": lag1.ravel().astype(np.int16),
                "delay_s": delay1.ravel(),
                "response": resp1.ravel(),
                "rt_s": rt1.ravel().astype(np.float32),
                "onset_s": onset1.ravel(),
            }
        )
    ]

    if n_ret > 0 and d.lt_targets > 0:
        R, L2 = min(n_ret, P), d.length2
        who = np.sort(rng.choice(P, R, replace=False))
        filler_items = np.arange(d.n_targets + d.n_vigilance, N1)
        pick = np.argsort(rng.random((R, d.n_fillers)), axis=1)[:, : d.lt_targets]
        t_items = filler_items[pick]  # (R, lt_targets)
        t_videos = np.take_along_axis(chunk[who], t_items, axis=1)
        # step-1 onset of each step-2 target's showing
        pos_of = np.argsort(item[who], axis=1)  # item -> slot (first showing: fillers appear once)
        t_slot = np.take_along_axis(pos_of, t_items, axis=1)
        t_on1 = np.take_along_axis(onset1[who], t_slot, axis=1)
        # step-2 fillers: random videos (scoring never looks at whether a filler is new)
        new_f = rng.integers(0, n_videos, (R, d.lt_fillers))
        order = np.argsort(rng.random((R, L2)), axis=1)
        vids = np.concatenate([t_videos, new_f], axis=1)
        is_t2 = np.concatenate([np.ones_like(t_videos, bool), np.zeros_like(new_f, bool)], axis=1)
        t_on1_full = np.concatenate([t_on1, np.full(new_f.shape, np.nan)], axis=1)
        vids = np.take_along_axis(vids, order, axis=1)
        is_t2 = np.take_along_axis(is_t2, order, axis=1)
        t_on1_full = np.take_along_axis(t_on1_full, order, axis=1)
        badr = bad[who][:, None]
        prob2 = np.where(is_t2, np.where(badr, 0.4, p_lt[vids]), np.where(badr, 0.45, fa_p[who]))
        resp2 = rng.random((R, L2)) < prob2
        rt2 = np.where(
            resp2,
            np.where(is_t2, rng.lognormal(1.1, 0.4, (R, L2)), rng.lognormal(1.2, 0.4, (R, L2))),
            np.nan,
        )
        rt2 = np.minimum(rt2, 6.99)
        dur2 = np.where(resp2, rt2, 7.0) + 1.0
        start2 = onset1[who, -1] + 8.0 + rng.uniform(24, 72, R) * 3600.0
        onset2 = start2[:, None] + np.concatenate(
            [np.zeros((R, 1)), np.cumsum(dur2, axis=1)[:, :-1]], axis=1
        )
        rows.append(
            pd.DataFrame(
                {
                    "participant": np.repeat(who.astype(np.int64) * 7 + 3, L2),
                    "step": np.int8(2),
                    "position": np.tile(np.arange(L2, dtype=np.int16), R),
                    "video": vids.ravel().astype(np.int32),
                    "role": pd.Categorical.from_codes(
                        np.where(is_t2, 0, 1).ravel(), categories=["target", "filler", "vigilance"]
                    ),
                    "repeat": is_t2.ravel(),
                    "lag": np.full(R * L2, -1, np.int16),
                    "delay_s": (onset2 - t_on1_full).ravel(),
                    "response": resp2.ravel(),
                    "rt_s": rt2.ravel().astype(np.float32),
                    "onset_s": onset2.ravel(),
                }
            )
        )
    trials = pd.concat(rows, ignore_index=True)
    truth = pd.DataFrame({"video": np.arange(n_videos, dtype=np.int64), ST: p_st, LT: p_lt})
    return trials, truth
