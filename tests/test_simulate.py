"""The simulator: forgetting laws, the trial kernel against its reference, the campaign,
and trial tables that obey their protocol."""

from __future__ import annotations

import math
from dataclasses import replace

import numba
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, reject, settings
from hypothesis import strategies as st

from memsim.design.protocol import load_protocol, protocol_from_mapping
from memsim.errors import UserError
from memsim.resources import params_path, protocol_path, shipped_dir
from memsim.sim.campaign import AnnotationIndex, draw_demand, plan_campaign, select_least_annotated
from memsim.sim.forgetting import LAWS
from memsim.sim.kernel import Constants, StepInput, simulate_step, simulate_step_reference
from memsim.sim.params import load_params, params_from_mapping
from memsim.sim.population import draw_participants, draw_videos
from memsim.sim.simulate import (
    TRIAL_COLUMNS,
    scale_protocol,
    simulate,
    size_factor,
    write_simulation,
)

VIDEOMEM = protocol_path("videomem")
PARAMS = params_path("videomem")


@pytest.fixture(scope="module")
def params():
    return load_params(PARAMS)


@pytest.fixture(scope="module")
def videomem():
    return load_protocol(VIDEOMEM)


@pytest.fixture(scope="module")
def small_sim(videomem, params):
    return simulate(videomem, params, seed=7, scale=0.04)


# --------------------------------------------------------------------------- forgetting laws
@pytest.mark.parametrize(
    "name, closed",
    [
        ("exponential", lambda t, m, r, a: m * math.exp(-r * t / a)),
        ("power", lambda t, m, r, a: m * (1 + t / a) ** (-r)),
        ("linear", lambda t, m, r, a: min(max(m - r * t / a, 0.0), 1.0)),
        ("exponential_asymptote", lambda t, m, r, a: m * (1 - r * (1 - math.exp(-t / a)))),
        (
            "logit_exponential_asymptote",
            lambda t, m, r, a: (
                1 / (1 + math.exp(-(math.log(m / (1 - m)) - r * (1 - math.exp(-t / a)))))
            ),
        ),
    ],
)
def test_laws_match_closed_form(name, closed):
    law = LAWS[name]
    rng = np.random.default_rng(0)
    for _ in range(200):
        t = float(rng.uniform(0, 3 * 86400))
        m = float(rng.uniform(0.05, 0.99))
        r = float(rng.uniform(0.0, 1.0))
        a = float(rng.uniform(1.0, 5000.0))
        assert law.closed_form(t, m, r, a) == pytest.approx(
            closed(t, m, r, a), rel=1e-12, abs=1e-15
        )
    # every law starts at the immediate memorability and never rises with time
    ts = np.linspace(0, 3 * 86400, 50)
    vals = [law.closed_form(t, 0.9, 0.4, 600.0) for t in ts]
    assert vals[0] == pytest.approx(0.9)
    assert all(b <= a + 1e-15 for a, b in zip(vals, vals[1:]))


def test_parameter_file_takes_every_registered_law_and_no_other(params):
    # Forgetting.law is typed from forgetting.LAWS: a new law needs no second list
    for name in LAWS:
        d = params.dump()
        d["forgetting"]["law"] = name
        d["forgetting"]["shape"] = {}
        assert params_from_mapping(d).forgetting.law == name
    d = params.dump()
    d["forgetting"]["law"] = "hyperbolic"
    with pytest.raises(UserError, match="law"):
        params_from_mapping(d)


# --------------------------------------------------------------------------- kernel
def _random_step(n=6, L=40, seed=3, careless_share=0.3):
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 50, size=(n, L)).astype(np.int32)
    repeat = np.zeros((n, L), bool)
    first_pos = np.full((n, L), -1, np.int32)
    prior = np.full((n, L), np.nan)
    for i in range(n):
        for k in range(5, L, 4):
            repeat[i, k] = True
            first_pos[i, k] = k - int(rng.integers(1, 5))
        for k in range(3, L, 7):
            if not repeat[i, k]:
                repeat[i, k] = True
                prior[i, k] = -float(rng.uniform(3600, 7200))
    role = np.where(repeat, 0, 1).astype(np.int8)
    role[:, 9] = 2
    repeat[:, 9] = True
    first_pos[:, 9] = 8
    x = StepInput(
        participant=np.arange(100, 100 + n, dtype=np.int64),
        video=video,
        role=role,
        repeat=repeat,
        first_pos=first_pos,
        prior_onset=prior,
        start_s=rng.uniform(0, 100, n),
        ability=rng.normal(0, 0.7, n),
        fa=rng.normal(-2, 0.5, n),
        lapse=rng.uniform(0, 0.2, n),
        careless=rng.random(n) < careless_share,
    )
    return x


def _constants(law=3, ends=True, stop=0):
    return Constants(
        seed=11,
        step_index=0,
        law=law,
        shape_a=1800.0,
        shape_b=0.0,
        duration_s=7.0,
        gap_s=1.0,
        ends_on_press=ends,
        stop_after_vigilance_misses=stop,
        careless_press_rate=0.3,
        rt_min_s=0.25,
        rt_log_sd=0.5,
        rt_hit_log_mean=0.5,
        rt_hit_slope=0.1,
        rt_fa_log_mean=1.0,
    )


@pytest.mark.parametrize("law", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("ends, stop", [(True, 0), (False, 0), (True, 1)])
@pytest.mark.parametrize("familiarity", [0.0, 0.8])
def test_kernel_matches_reference(params, law, ends, stop, familiarity):
    x = _random_step()
    d = params.dump()
    d["videos"]["short_term_sd"] = familiarity
    vids = draw_videos(params_from_mapping(d), 50, seed=5)
    assert (vids.familiarity != 0).all() == (familiarity > 0)
    c = _constants(law, ends, stop)
    got = simulate_step(x, vids, c)
    ref = simulate_step_reference(x, vids, c)
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(
            np.isnan(g) if g.dtype.kind == "f" else g, np.isnan(r) if r.dtype.kind == "f" else r
        )
        if g.dtype.kind == "f":
            np.testing.assert_allclose(g, r, rtol=1e-12, equal_nan=True)
    if stop:
        assert (got[4] < x.video.shape[1]).any()  # somebody was stopped early


def test_kernel_same_result_whatever_the_batch(params):
    x = _random_step(n=12)
    vids = draw_videos(params, 50, seed=5)
    c = _constants()
    whole = simulate_step(x, vids, c)
    half = StepInput(
        **{k: (v[6:] if isinstance(v, np.ndarray) else v) for k, v in x.__dict__.items()}
    )
    part = simulate_step(half, vids, c)
    for a, b in zip(whole, part):
        np.testing.assert_array_equal(a[6:], b)


def test_onsets_follow_responses(params):
    x = _random_step(careless_share=0.0)
    vids = draw_videos(params, 50, seed=5)
    response, rt, onset, delay, shown = simulate_step(x, vids, _constants())
    step = np.diff(onset, axis=1)
    expect = np.where(response[:, :-1], rt[:, :-1].astype(np.float64), 7.0) + 1.0
    np.testing.assert_allclose(step, expect, rtol=1e-6)
    assert np.all(np.isnan(rt) == ~response)
    assert np.nanmax(rt) < 7.0 and np.nanmin(rt) >= 0.25


# --------------------------------------------------------------------------- campaign
def test_least_annotated_selection_stays_in_pool():
    rng = np.random.default_rng(0)
    idx = AnnotationIndex(500, 1000)
    for _ in range(300):
        idx.add(rng.choice(500, 40, replace=False).astype(np.int32))
    counts = idx.counts.copy()
    assert np.array_equal(np.sort(counts), counts[idx.order])  # the index is sorted by count
    boundary = np.sort(counts)[99]
    state = np.uint64(12345)
    for _ in range(200):
        state, chosen = select_least_annotated(idx.order, idx.start, 100, 30, state)
        assert len(set(chosen.tolist())) == 30
        assert counts[chosen].max() <= boundary


def test_least_annotated_draw_is_uniform_over_the_pool():
    """Every stimulus below the boundary count is drawn with probability k / pool, each of
    the boundary bucket with k / pool x (its share of the pool's places left), others never."""
    idx = AnnotationIndex(60, 100)
    idx.add(np.arange(20, 60, dtype=np.int32))  # 0-19 at count 0, 20-59 at count 1
    idx.add(np.arange(40, 60, dtype=np.int32))  # 40-59 at count 2
    pool, k, draws = 30, 6, 20000
    seen = np.zeros(60)
    state = np.uint64(99)
    for _ in range(draws):
        state, chosen = select_least_annotated(idx.order, idx.start, pool, k, np.uint64(state))
        seen[chosen] += 1
    freq = seen / draws
    assert np.all(freq[40:] == 0)
    sd = np.sqrt(0.2 * 0.8 / draws)
    assert np.all(np.abs(freq[:20] - k / pool) < 5 * sd)  # all 20 always in the pool
    # 10 of the 20 at count 1 fill the pool: each is in it w.p. 1/2, then drawn w.p. k / pool
    assert np.all(np.abs(freq[20:40] - k / pool / 2) < 5 * np.sqrt(0.1 * 0.9 / draws))


def test_demand_index_orders_by_annotations_over_demand():
    """With demands the index keeps stimuli sorted by floor(count / demand), counts kept apart."""
    rng = np.random.default_rng(1)
    demand = 1.0 + 2.0 * rng.random(400) * (rng.random(400) < 0.3)
    idx = AnnotationIndex(400, 2000, demand)
    for _ in range(400):
        idx.add(rng.choice(400, 30, replace=False).astype(np.int32))
    key = np.floor(idx.counts / demand).astype(np.int64)
    assert np.array_equal(key, idx.keys)
    assert np.all(np.diff(key[idx.order]) >= 0)
    assert idx.counts.sum() == 400 * 30 and idx.min_count() == idx.counts.min()
    state = np.uint64(7)
    boundary = np.sort(key)[79]
    for _ in range(100):
        state, chosen = select_least_annotated(idx.order, idx.start, 80, 20, state)
        assert key[chosen].max() <= boundary


@pytest.mark.parametrize("with_demand", [False, True])
def test_index_withdrawals_undo_annotations(with_demand):
    """remove() is add() backwards: after random adds and removes the index is sorted by key,
    ``where`` inverts ``order``, each bucket boundary is where the keys change, and the
    counts are the adds minus the removes."""
    rng = np.random.default_rng(3)
    n = 300
    demand = 1.0 + 2.0 * rng.random(n) * (rng.random(n) < 0.3) if with_demand else None
    idx = AnnotationIndex(n, 4000, demand)
    net = np.zeros(n, np.int64)
    given_out = []
    for _ in range(600):
        if given_out and rng.random() < 0.3:
            vids = given_out.pop(int(rng.integers(len(given_out))))
            idx.remove(vids)
            net[vids] -= 1
        else:
            vids = rng.choice(n, 25, replace=False).astype(np.int32)
            idx.add(vids)
            given_out.append(vids)
            net[vids] += 1
    assert np.array_equal(idx.counts, net)
    key = np.floor(net / demand).astype(np.int64) if with_demand else net
    assert np.array_equal(idx.keys, key)
    assert np.array_equal(idx.where[idx.order], np.arange(n))
    assert np.all(np.diff(key[idx.order]) >= 0)
    for c in range(int(key.max()) + 2):
        assert idx.start[c] == np.searchsorted(key[idx.order], c)


def _kept_counting(videomem, scale):
    d = videomem.dump()
    d["campaign"]["top_up"] = None  # the campaign's counts alone
    d["campaign"]["pilot"] = None
    d["selection"].update(counts="kept", counts_every_h=None, counts_every_participants=None)
    return scale_protocol(protocol_from_mapping(d), scale)


def test_kept_counting_balances_the_annotations_scoring_keeps(videomem, params):
    """counts: kept withdraws the assignments of participants the step-1 filters drop, when
    their session ends: the campaign's final counts are exactly the scored annotation counts,
    and they are tighter than when assignments are balanced (the filters thin those at random)."""
    from memsim.analysis.scoring import score

    out = {}
    for mode in ("assigned", "kept"):
        d = videomem.dump()
        d["campaign"]["top_up"] = None  # the campaign's counts alone
        d["campaign"]["pilot"] = None
        d["selection"].update(counts=mode, counts_every_h=None, counts_every_participants=None)
        d["selection"].pop("demand", None)
        sim = simulate(protocol_from_mapping(d), params, seed=5, scale=0.1)
        res = score(sim.trials, sim.protocol)
        out[mode] = res.scores["nb_short-term_annotations"].to_numpy()
        if mode == "kept":
            from memsim.sim.simulate import scale_protocol

            plan = plan_campaign(
                scale_protocol(protocol_from_mapping(d), 0.1),
                seed=5,
                return_probability=params.participants.return_probability,
                judge=_judge_for(sim, params),
                min_press_s=params.participants.rt.min_s,
            )
            assert np.array_equal(plan.annotation_counts, out[mode])
    assert out["kept"].std() < 0.6 * out["assigned"].std()
    assert out["kept"].max() - out["kept"].min() <= 3


@pytest.mark.parametrize(
    "selection",
    [{"counts": "received"}, {"counts": "kept", "counts_every_h": 2.0}],
    ids=["received", "kept, checks every 2 h"],
)
def test_counted_verdicts_end_as_the_scored_counts(videomem, params, selection):
    """``counts: received`` counts a kept participant's annotations at her session's end, and
    ``counts_every_h`` applies verdicts at the next check: either way, once the campaign has
    ended the counts are exactly the scored annotation counts."""
    from memsim.analysis.scoring import score
    from memsim.sim.simulate import scale_protocol

    d = videomem.dump()
    d["campaign"]["top_up"] = None  # the campaign's counts alone
    d["campaign"]["pilot"] = None
    d["selection"].update(counts="assigned", counts_every_h=None, counts_every_participants=None)
    d["selection"].update(selection)
    proto = scale_protocol(protocol_from_mapping(d), 0.1)
    sim = simulate(proto, params, seed=3)
    counts = score(sim.trials, sim.protocol).scores["nb_short-term_annotations"].to_numpy()
    plan = plan_campaign(
        proto,
        seed=3,
        return_probability=params.participants.return_probability,
        judge=_judge_for(sim, params),
        min_press_s=params.participants.rt.min_s,
    )
    assert np.array_equal(plan.annotation_counts, counts)


def test_a_later_steps_quota_is_reported(videomem, params):
    """simulate's ``admissions``: per later step with a quota, who came back and who played it;
    those who played are the step's participants of the campaign (the top-up's aside), at
    most the share of the campaign's participants; without a quota, nothing."""
    from memsim.sim.simulate import scale_protocol

    share = 0.2  # below the ~0.3 who come back: the quota binds
    proto = scale_protocol(videomem.updated({"steps.1.max_share": share}), 0.05)
    sim = simulate(proto, params, seed=3)
    (a,) = sim.admissions
    assert (a.step, a.name, a.max_share) == (2, proto.steps[1].name, share)
    assert a.played == round(share * a.campaign) < a.came_back
    tr = sim.trials
    top = sim.top_up.first_participant if sim.top_up is not None else a.campaign
    step2 = tr.loc[(tr.step == 2) & (tr.participant < top), "participant"].nunique()
    assert step2 == a.played and a.campaign == top
    assert f"{a.played:,} of the {a.came_back:,} participants who came back" in a.describe()
    assert "all 5 participants who came back" in replace(a, played=5, came_back=5).describe()
    free = simulate(scale_protocol(videomem.updated({"steps.1.max_share": None}), 0.05), params, 3)
    assert free.admissions == ()
    assert free.trials.loc[free.trials.step == 2, "participant"].nunique() >= a.came_back


def test_scaling_keeps_the_number_of_count_checks(videomem):
    """A campaign scaled by f lasts f times as long at the same arrival rate, with f times the
    participants: its count checks come f times as often (in hours or in participants), so it
    has as many of them. A later step's quota is a share of the participants: unchanged."""
    from memsim.sim.simulate import scale_protocol

    every_p = videomem.selection.counts_every_participants
    assert every_p is not None and videomem.campaign.stop.kind == "min_annotations"
    small = scale_protocol(videomem, 0.1)
    assert small.selection.counts_every_participants == round(0.1 * every_p)
    budget = videomem.updated({"campaign.stop": {"kind": "participants", "count": 9930}})
    assert scale_protocol(budget, 0.1).selection.counts_every_participants == round(0.1 * every_p)
    hours = videomem.updated(
        {"selection.counts_every_participants": None, "selection.counts_every_h": 36.0}
    )
    assert scale_protocol(hours, 0.1).selection.counts_every_h == pytest.approx(3.6)
    delay = videomem.updated(
        {"selection.counts_every_participants": None, "selection.counts_delay_participants": 1300}
    )
    assert scale_protocol(delay, 0.1).selection.counts_delay_participants == 130
    assert scale_protocol(videomem, 0.1).steps[1].max_share == videomem.steps[1].max_share


def test_checked_verdicts_leave_the_last_drops_uncompensated(videomem, params):
    """With verdicts counted at checks, the drops of the sessions after the last check are never
    made up: more videos end below the level that balancing reached, and the counts spread
    (seed 5, scale 0.1, the shipped set: 5.4 % of the videos two or more below the highest count
    of the campaign that counts verdicts at each session's end, against 0.7 % there; SD 0.76
    against 0.48). A share below the median is no measure of it: the counts sit on a few
    integers, and where the median falls among them moves it by tens of percent."""
    from memsim.analysis.scoring import score

    counts = {}
    for every in (None, 36.0):  # 36 h at full scale: 3.6 h in this tenth of the campaign
        d = videomem.dump()
        # one pool for all of step 1's items: at scale 0.1 both pools are clamped to step 1's
        # 120 items, and with later_pool the checks left fewer below the median (35 % vs 42 %)
        d["selection"].update(
            counts="kept", counts_every_h=every, counts_every_participants=None, later_pool=None
        )
        d["selection"].pop("demand", None)
        # a participant budget: a stop on the counts would set the level the median splits
        d["campaign"]["stop"] = {"kind": "participants", "count": 9930}
        d["campaign"]["top_up"] = None  # the campaign's counts alone, not the top-up's targets
        d["campaign"]["pilot"] = None
        sim = simulate(protocol_from_mapping(d), params, seed=5, scale=0.1)
        counts[every] = score(sim.trials, sim.protocol).scores["nb_short-term_annotations"]
    level = counts[None].max()
    short = {k: float((n <= level - 2).mean()) for k, n in counts.items()}
    assert short[36.0] > 3 * short[None]
    assert counts[36.0].std() > 1.3 * counts[None].std()


def _judge_for(sim, params):
    from memsim.sim.population import draw_participants, draw_videos
    from memsim.sim.simulate import _FirstStepPlayer

    n = int(sim.trials["participant"].max()) + 1
    return _FirstStepPlayer(
        sim.protocol,
        params,
        sim.seed,
        draw_participants(params, n, sim.seed),
        draw_videos(params, sim.protocol.stimuli.count, sim.seed),
    ).judge


def test_campaign_verdicts_are_the_scoring_filters(videomem, params):
    """The sessions the campaign judges as they end are the step-1 sessions of the trial table:
    the same end times, and the same participants kept as the scoring pipeline keeps."""
    from memsim.analysis.scoring import score

    sim = simulate(_kept_counting(videomem, 0.05), params, seed=9)
    res = score(sim.trials, sim.protocol)
    one = sim.trials[sim.trials["step"] == 1]
    pids = np.sort(one["participant"].unique())
    judge = _judge_for(sim, params)
    # the same campaign again (same seed, same judge), for each participant's assigned items
    plan = plan_campaign(
        sim.protocol,
        sim.seed,
        params.participants.return_probability,
        judge=judge,
        min_press_s=params.participants.rt.min_s,
    )
    assert plan.n_participants == len(pids)
    assert np.array_equal(
        one.groupby("participant")["onset_s"].min().to_numpy(), plan.arrival_s[pids]
    )
    ends, kept = judge(pids, plan.step1_items[pids], plan.arrival_s[pids])
    last = one.groupby("participant").tail(1)
    ends_table = (
        last["onset_s"].to_numpy()
        + np.where(
            last["response"].to_numpy(),
            last["rt_s"].to_numpy(np.float64),
            sim.protocol.stimuli.duration_s,
        )
        + sim.protocol.stimuli.gap_s
    )
    assert np.array_equal(ends, ends_table)
    ps = res.participants
    expect = ps[ps["step"] == 1].set_index("participant").loc[pids, "kept"].to_numpy()
    assert np.array_equal(kept, expect) and 0 < (~kept).sum() < kept.sum()


def test_demand_gives_annotations_in_proportion(videomem):
    """A balanced campaign with demands: annotations / demand is level, so a stimulus of
    demand d gets about d times the annotations of the rest (a floor with a tail)."""
    d = videomem.dump()
    d["selection"].update(
        counts="assigned", counts_every_h=None, counts_every_participants=None
    )  # the campaign alone
    d["selection"]["demand"] = {"share": 0.3, "mean_excess": 0.8}
    p = protocol_from_mapping(d)
    from memsim.sim.simulate import scale_protocol

    p = scale_protocol(p, 0.2)
    plan = plan_campaign(p, seed=3, return_probability=0.3)
    demand = draw_demand(p.selection.demand, p.stimuli.count, 3, 0)
    n = plan.annotation_counts
    level = n / demand
    assert np.std(level) / np.mean(level) < 0.05  # balanced after dividing by demand
    plain = n[demand == 1.0]
    assert 0.6 < np.mean(demand == 1.0) < 0.8 and plain.max() - plain.min() <= 2
    assert np.quantile(n, 0.99) > 1.8 * np.median(n)  # the tail
    # no demand: every count within two of the others (a pool larger than the lowest bucket
    # reaches into the next one)
    d["selection"].pop("demand")
    flat = plan_campaign(
        scale_protocol(protocol_from_mapping(d), 0.2), seed=3, return_probability=0.3
    ).annotation_counts
    assert flat.max() - flat.min() <= 2


def test_demand_draw_is_reproducible_and_independent_per_stream(videomem):
    from memsim.design.protocol import Demand

    dm = Demand(share=0.25, mean_excess=0.35)
    a, b = draw_demand(dm, 5000, 9, 0), draw_demand(dm, 5000, 9, 0)
    assert np.array_equal(a, b) and a.min() == 1.0
    assert abs(np.mean(a > 1.0) - 0.25) < 0.02 and abs(np.mean(a[a > 1] - 1) - 0.35) < 0.03
    assert not np.array_equal(a, draw_demand(dm, 5000, 9, 1))
    assert draw_demand(None, 10, 9, 0) is None


def test_a_demand_cap_cuts_the_tail_and_leaves_the_rest(videomem, params):
    """Demand.max: demands above it are cut to it, the others are the uncapped draws; a
    campaign then gives no video more than about max times the core's annotations."""
    from memsim.analysis.scoring import score
    from memsim.design.protocol import Demand

    free = draw_demand(Demand(share=0.25, mean_excess=0.35), 5000, 9, 0)
    capped = draw_demand(Demand(share=0.25, mean_excess=0.35, max=1.5), 5000, 9, 0)
    assert capped.max() == 1.5 and (free > 1.5).any()
    below = free <= 1.5
    assert np.array_equal(capped[below], free[below]) and (capped[~below] == 1.5).all()
    with pytest.raises(Exception, match="greater than 1"):
        Demand(share=0.25, mean_excess=0.35, max=1.0)
    proto = videomem.updated({"selection.demand": {"share": 0.25, "mean_excess": 0.35, "max": 1.5}})
    assert "at most 1.5" in proto.selection.demand.describe()
    res = score(simulate(proto, params, seed=2, scale=0.1).trials, proto, validate=False)
    n = res.scores["nb_short-term_annotations"].to_numpy()
    free_n = (
        score(simulate(videomem, params, seed=2, scale=0.1).trials, videomem, validate=False)
        .scores["nb_short-term_annotations"]
        .to_numpy()
    )
    assert n.max() < free_n.max() and np.percentile(n, 99) <= 1.5 * 36 + 6


def test_later_pick_with_demand_follows_demand(videomem, params):
    """pick: least_annotated with a demand: step-2 tests per video grow with its demand."""
    from scipy.stats import spearmanr

    d = videomem.dump()
    d["selection"].pop("demand", None)
    d["steps"][1]["items"][0]["source"].update(
        pick="least_annotated", demand={"share": 0.5, "mean_excess": 1.0}
    )
    p = protocol_from_mapping(d)
    sim = simulate(p, params, seed=4, scale=0.1)
    s2 = sim.trials[(sim.trials.step == 2) & (sim.trials.role == "target")]
    n = (
        s2.groupby("video")
        .size()
        .reindex(np.arange(sim.protocol.stimuli.count), fill_value=0)
        .to_numpy()
    )
    demand = draw_demand(p.steps[1].items[0].source.demand, sim.protocol.stimuli.count, 4, 1)
    seen = n > 0
    assert spearmanr(n[seen], demand[seen]).statistic > 0.4


def test_later_pick_demand_can_follow_the_selections(videomem):
    """demand_follows: w multiplies each stimulus' pick demand by its selection demand ** w,
    so the stimuli sought more in step 1 are tested more in step 2 (the released counts'
    link through their tail); w = 0 is the same plan as no link, byte for byte."""
    from scipy.stats import spearmanr

    from memsim.sim.campaign import _pick_demand
    from memsim.sim.simulate import scale_protocol

    def protocol(w):
        d = videomem.dump()
        d["selection"].update(
            counts="assigned", counts_every_h=None, counts_every_participants=None
        )  # the campaign alone
        d["steps"][1]["items"][0]["source"]["demand_follows"] = w
        return scale_protocol(protocol_from_mapping(d), 0.2)

    p = protocol(1.0)
    n_videos, source = p.stimuli.count, p.steps[1].items[0].source
    own = draw_demand(source.demand, n_videos, 5, 1)
    first = draw_demand(p.selection.demand, n_videos, 5, 0)
    assert np.array_equal(_pick_demand(p, source, n_videos, 5, 1), own * first)
    p0 = protocol(0.0)
    assert np.array_equal(_pick_demand(p0, p0.steps[1].items[0].source, n_videos, 5, 1), own)

    def tests_per_video(proto):
        plan = plan_campaign(proto, seed=5, return_probability=0.33)
        later = plan.later[0]  # the places of step 1 tested: the videos shown there
        videos = np.take_along_axis(plan.step1_items[later.rows], later.tested, axis=1)
        return np.bincount(videos.ravel(), minlength=n_videos)

    none, zero, linked = (tests_per_video(protocol(w)) for w in (None, 0.0, 1.0))
    assert np.array_equal(none, zero)
    sought = first > 1.0
    # the selection's high-demand stimuli gain tests in step 2 only with the link
    gain = linked[sought].mean() / linked[~sought].mean()
    assert gain > 1.15 > none[sought].mean() / none[~sought].mean()
    seen = linked > 0
    rho = [spearmanr(n[seen], first[seen]).statistic for n in (linked, none)]
    assert rho[0] > rho[1] + 0.1


def test_later_picks_do_not_reshuffle_when_more_participants_return(videomem):
    """Picks are made in order of the return draws: raising return_probability adds
    participants at the end of that order, so everyone who returned before is tested on
    the same items (common random numbers hold across candidate parameters)."""
    from memsim.sim.simulate import scale_protocol

    d = videomem.dump()
    d["selection"].update(
        counts="assigned", counts_every_h=None, counts_every_participants=None
    )  # the campaign alone
    d["steps"][1]["items"][0]["source"].update(
        pick="least_annotated", demand={"share": 0.5, "mean_excess": 0.6}
    )
    d["steps"][1]["max_share"] = None  # every returner plays (a quota would cap both at 33 %)
    p = scale_protocol(protocol_from_mapping(d), 0.1)
    lo = plan_campaign(p, seed=2, return_probability=0.30).later[0]
    hi = plan_campaign(p, seed=2, return_probability=0.31).later[0]
    assert set(lo.rows) < set(hi.rows)
    where = {int(r): i for i, r in enumerate(hi.rows)}
    same = [np.array_equal(lo.tested[i], hi.tested[where[int(r)]]) for i, r in enumerate(lo.rows)]
    assert all(same)


# --------------------------------------------------------------------------- whole simulations
def test_trial_table_schema(small_sim):
    tr = small_sim.trials
    assert list(tr.columns) == TRIAL_COLUMNS
    dtypes = {c: str(t) for c, t in tr.dtypes.items()}
    assert dtypes == {
        "participant": "int64",
        "step": "int8",
        "position": "int16",
        "video": "int32",
        "role": "category",
        "repeat": "bool",
        "lag": "int16",
        "delay_s": "float64",
        "response": "bool",
        "rt_s": "float32",
        "onset_s": "float64",
    }
    assert not tr.duplicated(["participant", "step", "position"]).any()
    key = tr[["participant", "step", "position"]].to_numpy()
    assert (
        np.lexsort(key[:, ::-1].T) == np.arange(len(tr))
    ).all()  # ordered by participant, step, position


def test_step1_obeys_protocol(small_sim):
    tr = small_sim.trials
    s1 = tr[tr.step == 1]
    per = s1.groupby("participant")
    assert (per.size() == 180).all()
    assert (per.video.nunique() == 120).all()
    counts = s1.groupby(["participant", "role"], observed=True).size().unstack()
    assert (
        (counts["target"] == 80).all()
        and (counts["vigilance"] == 40).all()
        and (counts["filler"] == 60).all()
    )
    rep = s1[s1.repeat]
    assert set(rep.role.unique()) == {"target", "vigilance"}
    pilot = rep.participant >= len(small_sim.participants) - small_sim.pilot.participants
    t = rep[(rep.role == "target") & ~pilot].lag
    v = rep[rep.role == "vigilance"].lag
    assert t.between(45, 100).all() and v.between(3, 6).all()
    # the pilot's players (campaign.pilot, numbered last) at the pilot's target lags
    assert rep[(rep.role == "target") & pilot].lag.between(80, 120).all() and pilot.any()
    assert (s1[~s1.repeat].lag == -1).all() and s1[~s1.repeat].delay_s.isna().all()
    # the lag is the distance to the first showing of the same video, and delay_s its time
    first = s1[~s1.repeat].set_index(["participant", "video"])
    j = rep.join(
        first[["position", "onset_s"]], on=["participant", "video"], suffixes=("", "_first")
    )
    assert (j.position - j.position_first == j.lag).all()
    np.testing.assert_allclose(j.onset_s - j.onset_s_first, j.delay_s)


def test_onsets_consistent_with_responses(small_sim):
    tr = small_sim.trials
    nxt = tr.groupby(["participant", "step"]).onset_s.shift(-1)
    ok = nxt.notna()
    gap = (nxt - tr.onset_s)[ok]
    expect = np.where(tr.response[ok], tr.rt_s[ok].astype(float), 7.0) + 1.0
    np.testing.assert_allclose(gap.to_numpy(), expect, rtol=1e-6)
    assert (tr.rt_s.isna() == ~tr.response).all()


def test_step2_obeys_protocol(small_sim):
    tr = small_sim.trials
    s1, s2 = tr[tr.step == 1], tr[tr.step == 2]
    assert len(s2) > 0
    assert (s2.groupby("participant").size() == 120).all()
    seen1 = s1.groupby("participant").video.apply(set)
    fillers1 = s1[s1.role == "filler"].groupby("participant").video.apply(set)
    for p, g in s2.groupby("participant"):
        targets = set(g[g.role == "target"].video)
        fillers = set(g[g.role == "filler"].video)
        assert len(targets) == 40 and len(fillers) == 80
        assert targets <= fillers1[p]  # only step-1 non-vigilance fillers
        assert not (fillers & seen1[p])  # fillers never seen before
    tests = s2[s2.role == "target"]
    assert tests.repeat.all() and (tests.lag == -1).all()
    assert (~s2[s2.role == "filler"].repeat).all()
    # step 2 starts 24-72 h after the end of step 1
    end1 = s1.groupby("participant").apply(
        lambda g: g.onset_s.iloc[-1] + (g.rt_s.iloc[-1] if g.response.iloc[-1] else 7.0) + 1.0
    )
    start2 = s2.groupby("participant").onset_s.min()
    gap_h = (start2 - end1[start2.index]) / 3600
    assert gap_h.between(24, 72).all()
    # delay_s is the time since the step-1 showing
    j = tests.join(
        s1.set_index(["participant", "video"])[["onset_s"]],
        on=["participant", "video"],
        suffixes=("", "1"),
    )
    np.testing.assert_allclose(j.onset_s - j.onset_s1, j.delay_s)


def test_same_seed_same_bytes_and_threads_do_not_matter(videomem, params, tmp_path, small_sim):
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = simulate(videomem, params, seed=7, scale=0.04)
    finally:
        numba.set_num_threads(before)
    pd.testing.assert_frame_equal(one.trials, small_sim.trials)
    write_simulation(one, tmp_path / "a")
    write_simulation(small_sim, tmp_path / "b")
    for name in ("trials", "videos", "participants"):
        assert (tmp_path / "a" / f"{name}.parquet").read_bytes() == (
            tmp_path / "b" / f"{name}.parquet"
        ).read_bytes()
    other = simulate(videomem, params, seed=8, scale=0.04)
    assert not other.trials.response.equals(small_sim.trials.response)


def test_stimuli_seed_keeps_the_videos_and_redraws_the_campaign(videomem, params, small_sim):
    """stimuli_seed: the stimuli's latent parameters come from it, everything else from the
    seed; stimuli_seed=seed is the default, byte for byte."""
    same = simulate(videomem, params, seed=7, scale=0.04, stimuli_seed=7)
    pd.testing.assert_frame_equal(same.trials, small_sim.trials)
    pd.testing.assert_frame_equal(same.videos, small_sim.videos)
    moved = simulate(videomem, params, seed=8, scale=0.04, stimuli_seed=7)
    pd.testing.assert_frame_equal(moved.videos, small_sim.videos)  # the same videos
    other = simulate(videomem, params, seed=8, scale=0.04)
    assert not other.videos.memorability.equals(small_sim.videos.memorability)
    # a new campaign: its participants and responses are seed 8's, whatever the videos (how
    # many it recruits follows its responses: the first ones, and the pilot's, are the same)
    a, b = moved.participants, other.participants
    k = min(moved.top_up.first_participant, other.top_up.first_participant)
    pd.testing.assert_frame_equal(a.iloc[:k], b.iloc[:k])
    n = moved.pilot.participants
    assert n == other.pilot.participants > 0
    latent = ["ability", "false_alarm_logit", "lapse", "careless"]
    pd.testing.assert_frame_equal(
        a.iloc[-n:][latent].reset_index(drop=True), b.iloc[-n:][latent].reset_index(drop=True)
    )
    assert not moved.trials.response.equals(small_sim.trials.response)


def test_simulate_cli_with_the_stimuli_of_another_seed(tmp_path, capsys):
    """`memsim simulate --stimuli-seed S`: the videos table is seed S's, byte for byte; the
    campaign is the seed's own."""
    from memsim.cli import main

    base = ["simulate", "videomem", "--scale", "0.03", "--quiet"]
    assert main([*base, "--seed", "1", "--out", str(tmp_path / "a")]) == 0
    capsys.readouterr()
    assert main([*base, "--seed", "2", "--stimuli-seed", "1", "--out", str(tmp_path / "b")]) == 0
    assert "(seed 2, stimuli of seed 1, params videomem)" in capsys.readouterr().out
    a, b = tmp_path / "a", tmp_path / "b"
    assert (a / "videos.parquet").read_bytes() == (b / "videos.parquet").read_bytes()
    assert (a / "trials.parquet").read_bytes() != (b / "trials.parquet").read_bytes()


def test_latent_truth_tables(small_sim):
    v = small_sim.videos
    assert {"video", "memorability", "forgetting_rate", "true_short_term", "true_long_term"} <= set(
        v.columns
    )
    assert v.true_short_term.between(0, 1).all()
    # forgetting never raises a score; a short-term familiarity can lower the short-term one
    # (a video confusable with its neighbours in the session), so the order holds where it is >= 0
    up = v.short_term_familiarity >= 0
    assert up.any() and (v.true_short_term[up] >= v.true_long_term[up] - 1e-12).all()
    p = small_sim.participants
    assert len(p) == small_sim.trials.participant.nunique()


def test_memorability_skew(params):
    """skew 0 draws the normal (the same numbers as without the field); skew > 0 lengthens the
    upper tail of logit m, from the same standard normals (common random numbers across skews)."""
    from scipy.stats import skew

    from memsim.sim.params import params_from_mapping

    def logit_m(k):
        d = params.dump()
        d["videos"]["memorability"].update(mean=0.0, sd=1.0, skew=k)
        m = draw_videos(params_from_mapping(d), 20000, seed=3).m
        return np.log(m / (1 - m))

    plain = logit_m(0.0)
    z = np.random.default_rng(np.random.SeedSequence(3, spawn_key=(3, 0))).standard_normal(20000)
    np.testing.assert_allclose(plain, z, atol=1e-9)
    right = logit_m(0.5)
    assert skew(right) > 0.3 > abs(skew(plain))
    np.testing.assert_allclose(right, np.sinh(np.arcsinh(z) + 0.5), atol=1e-9)
    assert np.array_equal(np.argsort(right), np.argsort(plain))  # monotone: the same order


def test_more_participants_keep_the_first_ones(params):
    a = draw_participants(params, 50, seed=3)
    b = draw_participants(params, 80, seed=3)
    np.testing.assert_array_equal(a.ability, b.ability[:50])
    np.testing.assert_array_equal(a.careless, b.careless[:50])


@pytest.mark.parametrize(
    "path", sorted((shipped_dir("protocols")).glob("*.yaml")), ids=lambda p: p.stem
)
def test_every_shipped_protocol_simulates(path, params):
    proto = load_protocol(path)
    target = 300  # stimuli, whatever the protocol's size
    scale = min(1.0, max(target / proto.stimuli.count, 1e-4))
    sim = simulate(proto, params, seed=1, scale=scale)
    tr = sim.trials
    assert len(tr) > 0 and set(tr.step.unique()) <= set(range(1, len(proto.steps) + 1))
    assert tr.response.any()


def test_bad_scale_is_a_user_error(videomem, params):
    with pytest.raises(UserError):
        simulate(videomem, params, scale=0.0)


def test_head_counts_follow_the_participants_below_the_stimuli_floor(videomem, params):
    """Below the scale where the stimuli stay at their floor (one participant's new stimuli,
    plus one), a campaign that stops on its counts recruits for the floor's stimuli, so its
    head counts are compared at the stimuli's own factor; with a participant budget, at the
    scale itself."""
    from memsim.study.run import run_study

    floor = sum(s.n_new for s in videomem.steps) + 1
    assert scale_protocol(videomem, 0.005).stimuli.count == floor
    assert size_factor(videomem, 0.005) == floor / videomem.stimuli.count
    assert size_factor(videomem, 0.3) == pytest.approx(0.3)
    assert size_factor(videomem, 1.0) == 1.0
    budget = videomem.updated({"campaign.stop": {"kind": "participants", "count": 9000}})
    assert size_factor(budget, 0.005) == 0.005
    # the run's table reads the paper's head count at that factor
    result = run_study(videomem, params, seed=0, scale=0.005, figures=False)
    row = result.comparison.set_index("target").loc[
        f"participants kept, short-term (x{floor / videomem.stimuli.count:g})"
    ]
    assert row["value"] == pytest.approx(9402 * floor / videomem.stimuli.count)
    assert result.analysis["size_factor"] == floor / videomem.stimuli.count  # in summary.json
    # and so does memsim.compare on the run's analysis, from the scale the run recorded
    import memsim

    again = memsim.compare(result.analysis).set_index("target")
    assert again.loc[row.name, "value"] == row["value"]


# --------------------------------------------------------------------------- random feasible
# protocols
@st.composite
def protocols(draw):
    length_targets = draw(st.integers(2, 8))
    vig = draw(st.integers(0, 4))
    fillers = draw(st.integers(4, 20))
    lag_lo = draw(st.integers(2, 10))
    lag_hi = lag_lo + draw(st.integers(0, 10))
    v_lo = draw(st.integers(1, 3))
    v_hi = v_lo + draw(st.integers(0, 2))
    items = [{"role": "target", "count": length_targets, "repeat_lag": [lag_lo, lag_hi]}]
    if vig:
        items.append({"role": "vigilance", "count": vig, "repeat_lag": [v_lo, v_hi]})
    items.append({"role": "filler", "count": fillers})
    length = 2 * length_targets + 2 * vig + fillers
    lag_hi = min(lag_hi, length - 1)
    items[0]["repeat_lag"] = [min(lag_lo, lag_hi), lag_hi]
    tested = draw(st.integers(1, fillers))
    new2 = draw(st.integers(1, 10))
    stimuli = length + new2 + draw(st.integers(5, 60))
    two_steps = draw(st.booleans())
    steps = [
        {
            "name": "one",
            "length": length,
            "items": items,
            "scoring": {"column": "short-term_memorability"},
        }
    ]
    if two_steps:
        steps.append(
            {
                "name": "two",
                "length": tested + new2,
                "delay_h": [1, 5],
                "items": [
                    {"role": "target", "count": tested, "source": {"step": 1, "roles": ["filler"]}},
                    {"role": "filler", "count": new2},
                ],
                "scoring": {"column": "long-term_memorability"},
            }
        )
    d = {
        "name": "random",
        "stimuli": {
            "kind": "video",
            "count": stimuli,
            "duration_s": 3.0,
            "gap_s": 0.5,
            "response_ends_presentation": draw(st.booleans()),
        },
        "steps": steps,
        "selection": draw(
            st.sampled_from(
                [
                    {"kind": "uniform"},
                    {"kind": "least_annotated", "pool": length_targets + vig + fillers},
                ]
            )
        ),
        "campaign": {
            "arrivals": {"kind": "poisson", "rate_per_h": 30.0},
            "stop": {"kind": "participants", "count": draw(st.integers(1, 12))},
        },
    }
    try:
        return protocol_from_mapping(d)
    except UserError:  # no order can hold these lags (the schema's arrangement check)
        reject()


@settings(max_examples=25)
@given(proto=protocols(), seed=st.integers(0, 2**31))
def test_random_protocols_give_valid_tables(proto, seed, params):
    try:
        tr = simulate(proto, params, seed=seed).trials
    except UserError as exc:
        # a packing the schema's check proves possible but the randomised generator does not
        # find in its restarts (a 16-long step with 6 targets at lags 10-12 has exactly one
        # order) is refused in one line naming the step and the fix: not this test's subject
        if "could not place the repeats" not in str(exc):
            raise
        reject()
    s1 = tr[tr.step == 1]
    assert s1.groupby("participant").size().eq(proto.steps[0].length).all()
    for g in proto.steps[0].items:
        rows = s1[s1.role == g.role]
        if g.repeat_lag is not None:
            lag = rows[rows.repeat].lag
            assert lag.between(*g.repeat_lag).all()
    assert (tr.rt_s.isna() == ~tr.response).all()
    if len(proto.steps) > 1:
        s2 = tr[tr.step == 2]
        fill1 = s1[s1.role == "filler"].groupby("participant").video.apply(set)
        seen1 = s1.groupby("participant").video.apply(set)
        for p, g in s2.groupby("participant"):
            assert set(g[g.role == "target"].video) <= fill1[p]
            assert not set(g[g.role == "filler"].video) & seen1[p]


def test_adaptive_policy_sends_annotations_where_scores_are_uncertain(videomem, params):
    """Hit rates near 1 are the least uncertain: the adaptive policy annotates the others more."""
    from scipy.stats import spearmanr

    d = videomem.dump()
    rhos = {}
    for kind in ({"kind": "least_annotated", "pool": 1000}, {"kind": "adaptive", "pool": 1000}):
        d["selection"] = kind
        sim = simulate(protocol_from_mapping(d), params, seed=5, scale=0.1)
        s1 = sim.trials[(sim.trials.step == 1) & (sim.trials.role == "target") & sim.trials.repeat]
        n = s1.groupby("video").size().reindex(sim.videos.video, fill_value=0).to_numpy()
        rhos[kind["kind"]] = spearmanr(n, sim.videos.true_short_term).statistic
    assert abs(rhos["least_annotated"]) < 0.1
    assert rhos["adaptive"] < -0.3


def test_least_annotated_pick_balances_later_step_annotations(videomem, params):
    """pick: least_annotated tests the step-1 fillers tested least so far: tighter counts,
    still only the participant's own step-1 non-vigilance fillers."""
    d = videomem.dump()
    spread = {}
    for pick in ("random", "least_annotated"):
        d["steps"][1]["items"][0]["source"]["pick"] = pick
        d["steps"][1]["items"][0]["source"].pop("demand", None)
        d["steps"][1]["items"][0]["source"].pop("floor", None)
        sim = simulate(protocol_from_mapping(d), params, seed=4, scale=0.1)
        tr = sim.trials
        s1, s2 = tr[tr.step == 1], tr[tr.step == 2]
        fillers1 = s1[s1.role == "filler"].groupby("participant").video.apply(set)
        for p, g in s2.groupby("participant"):
            assert set(g[g.role == "target"].video) <= fillers1[p]
            assert (g.role == "target").sum() == 40
        n = s2[s2.role == "target"].groupby("video").size()
        spread[pick] = n.std()
    assert spread["least_annotated"] < 0.6 * spread["random"]


def test_least_annotated_pick_must_be_the_only_earlier_group(videomem):
    d = videomem.dump()
    d["steps"][1]["items"] = [
        {
            "role": "target",
            "count": 20,
            "source": {"step": 1, "roles": ["filler"], "pick": "least_annotated"},
        },
        {"role": "target", "count": 20, "source": {"step": 1, "roles": ["filler"]}},
        {"role": "filler", "count": 80},
    ]
    with pytest.raises(UserError, match="pick"):
        protocol_from_mapping(d)


def test_short_term_familiarity_fades_before_the_next_day(videomem, params):
    """`videos.short_term_sd`: a per-video logit shift that fades as exp(-t / short_term_decay_s).
    It moves each video's expected short-term score (minutes) and leaves the long-term one
    (24-72 h) as it was; at sd 0 every video's familiarity is exactly 0."""
    from memsim.sim.simulate import expected_scores

    d = params.dump()
    d["videos"]["short_term_sd"] = 0.0
    off = params_from_mapping(d)
    d["videos"]["short_term_sd"] = 0.6
    on = params_from_mapping(d)
    v_off, v_on = draw_videos(off, 2000, seed=3), draw_videos(on, 2000, seed=3)
    assert (v_off.familiarity == 0).all()
    np.testing.assert_array_equal(v_off.m, v_on.m)  # its own stream: nothing else moves
    np.testing.assert_array_equal(v_off.rate, v_on.rate)
    assert v_on.familiarity.std() == pytest.approx(0.6, rel=0.1)
    e_off, e_on = expected_scores(videomem, off, v_off), expected_scores(videomem, on, v_on)
    st_shift = e_on["true_short_term"] - e_off["true_short_term"]
    assert np.corrcoef(st_shift, v_on.familiarity)[0, 1] > 0.9
    np.testing.assert_allclose(e_on["true_long_term"], e_off["true_long_term"], atol=1e-8)


def test_later_pool_fills_the_picked_places_apart(videomem, params):
    """``selection.later_pool`` draws the places step 2 tests from (VideoMem's 60 non-vigilance
    fillers) among the stimuli least shown in them: how often each stimulus was shown there is
    balanced (tighter than with one pool for all 120 items), no participant sees a stimulus
    twice, and the same seed gives the same plan."""
    from memsim.design.protocol import later_pick_places
    from memsim.sim.simulate import scale_protocol

    places = np.array(later_pick_places(videomem))
    assert places.tolist() == list(range(60, 120))  # after 40 targets and 20 vigilance fillers
    shown = {}
    for later_pool in (None, 1000):
        d = videomem.dump()
        d["selection"].update(
            counts="assigned",
            counts_every_h=None,
            counts_every_participants=None,
            later_pool=later_pool,
        )
        d["selection"].pop("demand", None)
        proto = scale_protocol(protocol_from_mapping(d), 0.1)
        plan = plan_campaign(proto, 4, params.participants.return_probability, engine="simpy")
        items = plan.step1_items
        assert all(np.unique(row).size == row.size for row in items)
        shown[later_pool] = np.bincount(items[:, places].ravel(), minlength=proto.stimuli.count)
        if later_pool is not None:
            assert proto.selection.later_pool == 120  # scaled (100), at least step 1's items
            again = plan_campaign(proto, 4, params.participants.return_probability, engine="simpy")
            assert np.array_equal(again.step1_items, items)
            fast = plan_campaign(
                proto, 4, params.participants.return_probability, engine="in_order"
            )
            assert np.array_equal(fast.step1_items, items)  # the engines agree (test_fast_paths)
    assert shown[1000].max() - shown[1000].min() <= 2
    assert shown[1000].std() < 0.3 * shown[None].std()
