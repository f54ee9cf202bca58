"""The simulator's fast paths against their references, byte for byte: the campaign in arrival
order against the simpy campaign, the fused per-step kernel against the stages played one after
the other, and the scratch-buffer selection and pick kernels against the plain ones."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memsim.analysis.scoring import count_column, score
from memsim.design.protocol import load_protocol, protocol_from_mapping
from memsim.rng import stream_key
from memsim.sim.campaign import (
    AHEAD,
    AnnotationIndex,
    _pick_ahead,
    _pick_ahead_plain,
    _pick_least,
    _pick_least_sorted,
    _select_least_scratch,
    feedback,
    in_order,
    plan_campaign,
    select_least_annotated,
)
from memsim.sim.params import load_params
from memsim.sim.simulate import prepare, scale_protocol, simulate_arrays, simulate_stepwise

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted((ROOT / "protocols").glob("*.yaml"))


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "calibration" / "videomem.yaml")


def _small(proto, stimuli: int = 400):
    return scale_protocol(proto, min(1.0, max(stimuli / proto.stimuli.count, 1e-4)))


def _variants():
    """The shipped protocols, and VideoMem with the other in-order policies and picks."""
    shipped = [load_protocol(p) for p in SHIPPED]
    out = [(p.name, p) for p in shipped if in_order(p)]
    base = load_protocol(ROOT / "protocols" / "videomem.yaml").dump()
    # VideoMem's selection counts kept annotations (tested below, with a judge); here the rest
    # of its campaign (demand, the later pool, the step-2 pick with its floor) counting
    # assignments, and without the later pool
    base["selection"].update(counts="assigned", counts_every_h=None, counts_every_participants=None)
    pick = ("steps", 1, "items", 0, "source")
    for name, change in (
        ("counting assignments", lambda d: None),
        ("one pool", lambda d: d["selection"].update(later_pool=None)),
        ("pick floor", lambda d: _at(d, pick).update(floor=3)),
        # the step-2 pick counting kept tests: picked, played and judged 7 returns at a time
        ("pick kept", lambda d: _at(d, pick).update(floor=3, counts="kept", counts_every=7)),
        # the step-2 pick looking ahead (counting picks, then kept tests in rounds of 7)
        ("pick looking ahead", lambda d: _at(d, pick).update(lookahead="projected")),
        (
            "pick looking ahead, expected viewers",
            lambda d: _at(d, pick).update(lookahead="deficit", lookahead_viewers="expected"),
        ),
        (
            "pick looking ahead, kept",
            lambda d: _at(d, pick).update(floor=3, counts="kept", counts_every=7, lookahead="ties"),
        ),
        ("uniform", lambda d: d.update(selection={"kind": "uniform"})),
        ("no demand", lambda d: d["selection"].pop("demand")),
        ("random pick", lambda d: _at(d, pick).update(pick="random", demand=None, floor=None)),
        (
            "min annotations",
            lambda d: d["campaign"].update(
                stop={"kind": "min_annotations", "count": 20, "max_participants": 20000}
            ),
        ),
    ):
        d = copy.deepcopy(base)
        change(d)
        out.append((f"videomem, {name}", protocol_from_mapping(d)))
    return out


def _at(d, path):
    for k in path:
        d = d[k]
    return d


VARIANTS = _variants()
LT = "long-term_memorability"


def _same_plan(a, b) -> None:
    assert a.n_participants == b.n_participants
    for f in ("arrival_s", "step1_items", "annotation_counts"):
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), f
    assert len(a.later) == len(b.later)
    for la, lb in zip(a.later, b.later):
        for f in ("rows", "delay_s", "new_items", "tested"):
            x, y = getattr(la, f), getattr(lb, f)
            if x is None or y is None:
                assert x is None and y is None, f
                continue
            assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), f
        assert (la.pick is None) == (lb.pick is None)
        if la.pick is not None:
            for f in ("order", "videos", "keys", "eligible", "weight"):
                x, y = getattr(la.pick, f), getattr(lb.pick, f)
                assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), f
            assert (la.pick.count, la.pick.cap, la.pick.every, la.pick.ahead) == (
                lb.pick.count,
                lb.pick.cap,
                lb.pick.every,
                lb.pick.ahead,
            )
            if la.pick.ahead:
                for f in ("to_come", "scale"):
                    x, y = getattr(la.pick, f), getattr(lb.pick, f)
                    assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), f


def _same_arrays(a, b) -> None:
    assert a.n_participants == b.n_participants
    assert list(a.trials) == list(b.trials)
    for c in a.trials:
        x, y = a.trials[c], b.trials[c]
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), c
    for k in a.truth:
        assert a.truth[k].tobytes() == b.truth[k].tobytes(), k


def _judge(proto, params, seed):
    """The simulator's step-1 verdicts for ``proto``'s campaign (as :func:`simulate` builds
    them)."""
    from memsim.sim.population import draw_participants, draw_videos
    from memsim.sim.simulate import _FirstStepPlayer

    stop = proto.campaign.stop
    n = stop.count if stop.kind == "participants" else stop.max_participants
    return _FirstStepPlayer(
        proto,
        params,
        seed,
        draw_participants(params, n, seed),
        draw_videos(params, proto.stimuli.count, seed),
    ).judge


def _plans(proto, params, seed, engines=("simpy", "in_order"), judge=None):
    """The campaign's plan by each engine, each with a fresh judge (the player caches blocks)."""
    out = []
    for engine in engines:
        j = judge or (_judge(proto, params, seed) if feedback(proto) == "judge" else None)
        out.append(
            plan_campaign(
                proto, seed, 0.4, judge=j, min_press_s=params.participants.rt.min_s, engine=engine
            )
        )
    return out


@pytest.mark.parametrize("name, proto", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_in_order_campaign_is_the_simpy_campaign(name, proto, params):
    small = _small(proto)
    for seed in (0, 11):
        _same_plan(*_plans(small, params, seed))


def _counting(
    counts,
    every_h=None,
    demand=True,
    stop=None,
    returning=False,
    every_p=None,
    delay_p=None,
    quota=None,
    follows=None,
):
    d = load_protocol(ROOT / "protocols" / "videomem.yaml").dump()
    d["steps"][1]["max_share"] = quota
    d["steps"][1]["items"][0]["source"]["demand_follows"] = follows
    d["selection"].update(
        counts=counts,
        counts_every_h=every_h,
        counts_every_participants=every_p,
        counts_delay_participants=delay_p,
    )
    if returning:  # with a 1-2 h window to come back, so that windows close in the campaign
        d["selection"]["later_counts"] = "returning"
        d["steps"][1]["delay_h"] = [1, 2]
    if not demand:
        d["selection"].pop("demand")
    d["campaign"]["stop"] = stop or BUDGET
    d["campaign"]["pilot"] = None  # the campaign's own mechanisms (the shipped case has it)
    return _small(protocol_from_mapping(d), 500)


# 500 stimuli: a campaign of 496 participants over ~8.3 h (60 an hour)
BUDGET = {"kind": "participants", "count": 9930}
MIN_20 = {"kind": "min_annotations", "count": 20, "max_participants": 20000}
SHARE_20 = {**MIN_20, "share": 0.6}
COUNTING = {
    # the shipped protocol scaled: checks every 108 participants, a stop on the counts
    "kept, shipped": _small(load_protocol(ROOT / "protocols" / "videomem.yaml"), 500),
    # checks every 1.8 h (36 h scaled), 4 windows of arrivals
    "kept, checks every 36 h": _counting("kept", 36.0),
    # checks every 108 participants (2,160 scaled), 4 windows
    "kept, checks every 2,160 participants": _counting("kept", every_p=2160),
    "received, checks every 2,160 participants": _counting("received", every_p=2160),
    "kept, checks every 50 participants, no demand": _counting("kept", demand=False, every_p=1000),
    # a window per first_verdict_s (a session's shortest length): ~90 windows
    "kept, at each session's end": _counting("kept"),
    "kept, no demand": _counting("kept", demand=False),
    # checks every 0.9 s at this scale, shorter than a session: the window is the verdict time
    "kept, checks shorter than a session": _counting("kept", 0.5),
    "received": _counting("received"),
    "received, checks every 0.2 h": _counting("received", 4.0),
    "received, no demand": _counting("received", 4.0, demand=False),
    "kept, min annotations": _counting("kept", 36.0, stop=MIN_20),
    "kept, min annotations, no demand": _counting("kept", demand=False, stop=MIN_20),
    "received, min annotations": _counting("received", 4.0, stop=MIN_20),
    "kept, later pool of returning viewers": _counting("kept", 36.0, returning=True),
    "kept, returning viewers, no demand": _counting("kept", demand=False, returning=True),
    "received, returning viewers": _counting("received", 4.0, returning=True),
    "kept, returning viewers, checks every 2,160 participants": _counting(
        "kept", every_p=2160, returning=True
    ),
    # a stop once a share of the stimuli has the count (the shipped rule at its scaled count)
    "kept, share at min annotations": _counting("kept", every_p=2160, stop=SHARE_20),
    "kept, share at min annotations, no demand": _counting(
        "kept", demand=False, every_p=2160, stop=SHARE_20
    ),
    "received, share at min annotations": _counting("received", 4.0, stop=SHARE_20),
    # verdicts counted 54 participants (1,080 scaled) after the session's end
    "kept, delay of 1,080 participants": _counting("kept", delay_p=1080),
    "received, delay of 1,080 participants": _counting("received", delay_p=1080),
    "kept, delay, share at min annotations": _counting("kept", delay_p=1080, stop=SHARE_20),
    "kept, delay, returning viewers, no demand": _counting(
        "kept", demand=False, delay_p=1080, returning=True
    ),
    # a delay of one participant: counted at the arrival after the first one after the end
    "kept, delay of one participant": _counting("kept", delay_p=20),
    # step 2 admits 12 % of the participants, ~60 of the ~200 who come back
    "kept, a quota on step 2": _counting("kept", every_p=2160, stop=SHARE_20, quota=0.12),
    "received, a quota on step 2": _counting("received", 4.0, quota=0.12),
    # step 2's pick demand times the selection's to the power 0.5
    "kept, step 2's demand follows the selection's": _counting(
        "kept", every_p=2160, stop=SHARE_20, follows=0.5
    ),
}


def _three_steps(share2=None, share3=None):
    """VideoMem's campaign scaled with a third step, a copy of step 2 a day later, and
    quotas on the later steps."""
    d = _counting("kept", every_p=2160).dump()
    third = {**d["steps"][1], "name": "later", "max_share": share3}
    third["scoring"] = {**third["scoring"], "column": "later_memorability"}
    d["steps"][1]["max_share"] = share2
    d["steps"].append(third)
    d["campaign"]["top_up"] = None  # VideoMem's top-up is for two steps
    return protocol_from_mapping(d)


def test_a_later_steps_quota_admits_a_random_subset_of_those_who_come_back(params):
    """max_share: a later step admits at most that share of the campaign's participants
    (rounded), the same ones on both engines; those it turns away do not play the steps after
    it either; a quota at or above the number who come back changes nothing, and the campaign
    itself (step 1) never changes."""
    (free,) = _plans(_three_steps(), params, 0, engines=("in_order",))
    n = free.n_participants
    back2, back3 = free.later[0].rows, free.later[1].rows
    assert back2.size > 60 and 0 < back3.size < back2.size and np.isin(back3, back2).all()
    for s2, s3 in ((back2.size / n, back3.size / n), (1.0, None)):  # no quota binds
        for plan in _plans(_three_steps(s2, s3), params, 0):
            _same_plan(plan, free)
    admitted = []
    for q2 in (60, 30):
        simpy, fast = _plans(_three_steps(q2 / n), params, 0)
        _same_plan(simpy, fast)
        rows2, rows3 = fast.later[0].rows, fast.later[1].rows
        assert rows2.size == q2 and np.isin(rows2, back2).all()
        assert np.isin(rows3, rows2).all() and set(rows3) == set(back3) & set(rows2)
        assert fast.step1_items.tobytes() == free.step1_items.tobytes()
        admitted.append(set(rows2))
    assert admitted[1] <= admitted[0]  # the lowest return draws: a smaller quota, a subset
    # with its own quota, step 3 admits a subset of the step-2 players who come back again
    simpy, fast = _plans(_three_steps(60 / n, 10 / n), params, 0)
    _same_plan(simpy, fast)
    assert fast.later[1].rows.size == 10 and np.isin(fast.later[1].rows, fast.later[0].rows).all()


@pytest.mark.parametrize("name", list(COUNTING))
def test_counted_verdicts_in_arrival_order_are_the_simpy_campaign(name, params):
    """kept and received counts on the arrival-order engine: the same plan as simpy's, byte for
    byte, counts included (verdicts applied before each arrival, at the end those still due).
    The verdicts change the campaign (the selections differ from counting assignments), and a
    min_annotations stop triggers before the participant budget."""
    proto = COUNTING[name]
    assert in_order(proto) and feedback(proto) == "judge"
    d = proto.dump()
    d["selection"].update(
        counts="assigned",
        counts_every_h=None,
        counts_every_participants=None,
        counts_delay_participants=None,
        later_counts="shown",
    )
    assigned = protocol_from_mapping(d)
    for seed in (0, 11):
        simpy, fast = _plans(proto, params, seed)
        _same_plan(simpy, fast)
        (other,) = _plans(assigned, params, seed, engines=("in_order",))
        assert not np.array_equal(fast.annotation_counts, other.annotation_counts)
        if proto.campaign.stop.kind == "min_annotations":  # the stop ended the campaign
            assert fast.n_participants < proto.campaign.stop.max_participants


def test_a_delay_counts_each_verdict_that_many_participants_later(params):
    """counts_delay_participants: a delay beyond the campaign's last arrival counts no verdict
    while recruiting, so every selection is the one that counting assignments makes (the
    counts differ only at the end, where the verdicts still due are applied); a shorter
    delay counts some and changes the selections, by an amount that grows with the delay."""
    d = _counting("kept", delay_p=1080).dump()
    d["selection"].update(counts_delay_participants=None, counts="assigned")
    assigned = protocol_from_mapping(d)
    (base,) = _plans(assigned, params, 0, engines=("in_order",))
    moved = []
    for delay in (20, 400, 4000, 10**6):  # 1, 20 and 200 scaled; beyond the 496 arrivals
        proto = _counting("kept", delay_p=delay)
        simpy, fast = _plans(proto, params, 0)
        _same_plan(simpy, fast)
        moved.append(np.count_nonzero(np.any(fast.step1_items != base.step1_items, axis=1)))
        if delay == 10**6:
            assert fast.n_participants == base.n_participants
            assert not np.array_equal(fast.annotation_counts, base.annotation_counts)
    assert moved[-1] == 0 and moved[0] > 0
    assert moved[0] >= moved[1] >= moved[2]


def test_counted_verdicts_need_a_judge():
    from memsim.errors import UserError

    with pytest.raises(UserError, match="counts: kept needs the simulator's feedback"):
        plan_campaign(COUNTING["kept, shipped"], 0, 0.4)


def test_a_session_shorter_than_the_bound_falls_back_to_simpy(params):
    """The windows rely on no session ending before first_verdict_s; a judge that says one did
    makes the in-order engine refuse, and the automatic choice runs simpy instead."""
    proto = COUNTING["kept, shipped"]
    real = _judge(proto, params, 0)

    def too_soon(ps, items, starts):
        ends, kept = real(ps, items, starts)
        return np.where(ps % 7 == 3, starts, ends), kept

    with pytest.raises(ValueError, match="first_verdict_s"):
        _plans(proto, params, 0, engines=("in_order",), judge=too_soon)
    _same_plan(*_plans(proto, params, 0, engines=("simpy", "auto"), judge=too_soon))


def test_shipped_videomem_simulation_is_the_simpy_one(params, monkeypatch):
    """A whole simulation of the shipped VideoMem protocol (kept counts, checks every 2,160
    participants, a stop on the counts, the later pool) gives the same trial table with the
    campaign on simpy as on the arrival-order engine."""
    from memsim.sim import simulate as sim_module

    proto = load_protocol(ROOT / "protocols" / "videomem.yaml")
    assert proto.selection.later_pool and in_order(proto)
    out = {}
    for engine in ("simpy", "auto"):
        monkeypatch.setattr(sim_module, "_CAMPAIGN_ENGINE", engine)
        out[engine] = sim_module.simulate(proto, params, seed=4, scale=0.04)
    a, b = out["simpy"].trials, out["auto"].trials
    assert list(a) == list(b) and len(a) == len(b) > 0
    for c in a:
        x, y = a[c], b[c]
        if c == "role":
            x, y = x.cat.codes, y.cat.codes
        assert x.dtype == y.dtype and x.to_numpy().tobytes() == y.to_numpy().tobytes(), c


def _shipped_with(**selection):
    d = load_protocol(ROOT / "protocols" / "videomem.yaml").dump()
    d["selection"].update(selection)
    return protocol_from_mapping(d)


KEPT_FIRST_STEP = {
    "shipped (kept, checks every 2,160 participants)": _shipped_with(),
    "received, checks every 4 h": _shipped_with(
        counts="received", counts_every_h=4.0, counts_every_participants=None
    ),
    "kept, at each session's end": _shipped_with(
        counts_every_h=None, counts_every_participants=None
    ),
}


@pytest.mark.parametrize("name", list(KEPT_FIRST_STEP))
def test_step_one_played_once_is_step_one_played_again(name, params, monkeypatch):
    """With verdicts to count, the sessions the campaign plays for them are the trial table's
    step 1: keeping them gives the same trial arrays, byte for byte, as playing step 1 again,
    on both campaign engines; and with them kept, step 1 is not played again."""
    from memsim.sim import simulate as sim_module

    prepared = prepare(KEPT_FIRST_STEP[name], 0.04)
    steps_played = []
    fused = sim_module._play_fused

    def counted(prepared, seed, s, args, pid, *rest):
        if not prepared.protocol.name.endswith("-pilot"):  # not its pilot's (pilot_protocol)
            steps_played.append((s, int(pid.min(initial=2**62))))
        return fused(prepared, seed, s, args, pid, *rest)

    monkeypatch.setattr(sim_module, "_play_fused", counted)
    for engine in ("auto", "simpy"):
        monkeypatch.setattr(sim_module, "_CAMPAIGN_ENGINE", engine)
        for seed in (4, 7):
            out = {}
            for keep in (True, False):
                monkeypatch.setattr(sim_module, "_KEEP_FIRST_STEP", keep)
                steps_played.clear()
                out[keep] = simulate_arrays(prepared, params, seed)
                top = out[keep].top_up  # the top-up's rounds play both steps for new ids
                first = top.first_participant if top is not None else out[keep].n_participants
                campaign = [s for s, p in steps_played if p < first]
                assert campaign == ([1] if keep else [0, 1])
            _same_arrays(out[True], out[False])
            assert out[True].n_participants > 0


def test_kept_verdicts_are_the_players_verdicts(params):
    """The judge that keeps step 1's rows gives each participant the end and verdict of the
    step-1 player (:func:`memsim.sim.kernel.play_and_tally`), whatever batch she is judged
    in, and a participant judged again gets the same rows."""
    from memsim.sim.population import draw_participants, draw_videos
    from memsim.sim.simulate import _FirstStepKept, _FirstStepPlayer

    prepared = prepare(_shipped_with(), 0.05)
    proto, seed = prepared.protocol, 3
    n = prepared.max_participants
    parts, videos = (
        draw_participants(params, n, seed),
        draw_videos(params, proto.stimuli.count, seed),
    )
    player = _FirstStepPlayer(proto, params, seed, parts, videos)
    kept = _FirstStepKept(prepared, params, seed, parts, videos)
    rng = np.random.default_rng(0)
    items = np.stack([rng.permutation(proto.stimuli.count)[:120] for _ in range(n)]).astype(
        np.int32
    )
    start = np.cumsum(rng.exponential(60.0, n))
    pid = np.arange(n, dtype=np.int64)
    want_end, want_kept = player.judge(pid, items, start)
    assert 0 < (~want_kept).sum() < want_kept.sum()
    for batch in (pid[:7], pid[7:300], pid[300:]):
        end, ok = kept.judge(batch, items[batch], start[batch])
        assert end.tobytes() == want_end[batch].tobytes()
        assert np.array_equal(ok, want_kept[batch])
    rows = [c.copy() for c in kept.kept["cols"]]
    again = pid[rng.permutation(n)[:50]]  # out of order: the general path
    end, ok = kept.judge(again, items[again], start[again])
    assert end.tobytes() == want_end[again].tobytes() and np.array_equal(ok, want_kept[again])
    assert all(a.tobytes() == b.tobytes() for a, b in zip(rows, kept.kept["cols"]))


def _kept_pick(every: int | None, scale: float = 0.05):
    """VideoMem (its campaign counting assignments) with the step-2 pick counting kept tests,
    judged ``every`` returns at a time (None: the pick counting assignments)."""
    d = load_protocol(ROOT / "protocols" / "videomem.yaml").dump()
    d["selection"].update(counts="assigned", counts_every_h=None, counts_every_participants=None)
    d["campaign"]["top_up"] = None  # the pick's own counts, not the top-up's
    d["campaign"]["pilot"] = None  # nor the pilot's
    if every is not None:
        _at(d, ("steps", 1, "items", 0, "source")).update(counts="kept", counts_every=every)
    return prepare(protocol_from_mapping(d), scale)


def test_a_kept_pick_in_one_round_is_the_assigned_pick(params):
    """Judged all at once (one round), no verdict reaches a pick: the same bytes as the pick
    counting assignments."""
    for seed in (1, 4):
        _same_arrays(
            simulate_arrays(_kept_pick(10**6), params, seed),
            simulate_arrays(_kept_pick(None), params, seed),
        )


def test_a_later_pool_counting_returning_viewers(params):
    """``later_counts: returning`` takes the showings of participants who do not come back off
    the later pool's count when their window closes: fewer videos end with fewer than 9
    viewers kept in step 2 than with every showing counted."""
    from memsim.sim.campaign import in_order

    d = load_protocol(ROOT / "protocols" / "videomem.yaml").dump()
    d["campaign"]["top_up"] = None  # the campaign's own counts, not the top-up's
    d["campaign"]["pilot"] = None  # nor the pilot's
    # a 2-3 h window to come back, so that windows close within this short campaign (~50 h)
    d["steps"][1]["delay_h"] = [2, 3]
    d["steps"][1]["max_share"] = None  # `returning` counts everyone who comes back
    short = {}
    for how in ("shown", "returning"):
        d["selection"]["later_counts"] = how
        proto = protocol_from_mapping(d)
        assert in_order(proto)
        sim = simulate_arrays(prepare(proto, 0.3), params, 5).to_simulation()
        res = score(sim.trials, sim.protocol, validate=False)
        ps, t = res.participants, sim.trials
        kept2 = ps.loc[(ps["step"] == 2) & ps["kept"], "participant"]
        f = t[(t["step"] == 1) & (t["role"] == "filler") & t["participant"].isin(kept2)]
        seen = np.bincount(f["video"].to_numpy(), minlength=sim.protocol.stimuli.count)
        short[how] = int((seen < 9).sum())
    assert short["returning"] < short["shown"], short


def test_a_kept_pick_with_nobody_back(params):
    """Nobody returns: step 2 is one empty round, and both simulations agree."""
    nobody = params.updated({"participants.return_probability": 0.0})
    prepared = _kept_pick(5, 0.02)
    a = simulate_arrays(prepared, nobody, 0)
    assert a.n_participants > 0 and not (a.trials["step"] == 2).any()
    _same_arrays(a, simulate_stepwise(prepared, nobody, 0))


def test_a_kept_pick_makes_up_dropped_tests(params):
    """Counting kept tests, the step-2 picks make up what the filters drop: fewer videos end
    below the floor (10) in the scored long-term counts than when the pick counts picks."""
    below = {}
    for every in (None, 5):
        sim = simulate_arrays(_kept_pick(every, 0.2), params, 3).to_simulation()
        n = score(sim.trials, sim.protocol, validate=False).scores[count_column(LT)].to_numpy()
        below[every] = int((n < 10).sum())
    assert below[5] < below[None], below


@pytest.mark.parametrize("name, proto", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_fused_steps_are_the_stepwise_simulation(name, proto, params):
    prepared = prepare(proto, min(1.0, max(400 / proto.stimuli.count, 1e-4)))
    for seed in (2, 9):
        _same_arrays(
            simulate_arrays(prepared, params, seed), simulate_stepwise(prepared, params, seed)
        )


def test_policies_that_wait_for_sessions_refuse_the_in_order_engine():
    d = load_protocol(ROOT / "protocols" / "videomem.yaml").dump()
    d["selection"] = {"kind": "adaptive", "pool": 1000}
    with pytest.raises(ValueError, match="simpy"):
        plan_campaign(protocol_from_mapping(d), 0, 0.3, engine="in_order")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(130, 400),
    pool=st.integers(120, 130),
    annotations=st.integers(0, 3000),
    seed=st.integers(0, 2**32),
)
def test_scratch_selection_is_the_plain_selection(n, pool, annotations, seed):
    rng = np.random.default_rng(seed)
    idx = AnnotationIndex(n, annotations + 2)
    idx.add(rng.integers(0, n, annotations).astype(np.int32))
    places, mark = np.arange(pool), np.zeros(n, np.int64)
    for p in range(5):
        state = np.uint64(stream_key(np.uint64(seed), 5, p))  # uint64: the kernels' state type
        s1, a = select_least_annotated(idx.order, idx.start, pool, 120, state)
        s2, b = _select_least_scratch(idx.order, idx.start, pool, 120, state, places, mark, p + 1)
        assert s1 == s2 and np.array_equal(a, b)
        assert np.array_equal(places, np.arange(pool))  # restored for the next call


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 30), m=st.integers(1, 12), seed=st.integers(0, 2**32))
def test_sorted_pick_is_the_plain_pick(rows, m, seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, m + 1))
    videos = np.stack([rng.choice(40, m, replace=False) for _ in range(rows)]).astype(np.int32)
    keys = rng.integers(0, 3, (rows, m)).astype(np.float64)  # ties in the keys too
    weight = rng.choice([1.0, 1.5, 2.0], 40)
    cap = [np.inf, 0.5, 1.0, 2.0][seed % 4]  # a pick's floor: ranks above it are ties
    a = _pick_least(videos, keys, k, np.zeros(40, np.int32), weight, cap)
    b = _pick_least_sorted(videos, keys, k, np.zeros(40, np.int32), weight, cap)
    assert np.array_equal(a, b)


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 30), m=st.integers(1, 12), seed=st.integers(0, 2**32))
def test_look_ahead_pick_is_the_plain_pick(rows, m, seed):
    """The look-ahead kernel against its plain reference (a Python sort per row), each rank,
    with ties in the keys, demands, floors and row weights; the viewers to come are updated
    alike."""
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, m + 1))
    videos = np.stack([rng.choice(40, m, replace=False) for _ in range(rows)]).astype(np.int32)
    keys = rng.integers(0, 3, (rows, m)).astype(np.float64)
    weight = rng.choice([1.0, 1.5, 2.0], 40)
    cap = [np.inf, 0.5, 1.0, 2.0][seed % 4]
    # viewers to come: the rows' own videos, plus some who never come (the expected count)
    to_come = np.bincount(videos.ravel(), minlength=40) + rng.integers(0, 3, 40).astype(float)
    scale = rng.choice([1.0, 0.5, 0.25], rows)
    for mode in AHEAD.values():
        a_left, b_left = to_come.copy(), to_come.copy()
        a_tests, b_tests = np.zeros(40, np.int32), np.zeros(40, np.int32)
        a = _pick_ahead(videos, keys, k, a_tests, weight, cap, a_left, scale, k / m, mode)
        b = _pick_ahead_plain(videos, keys, k, b_tests, weight, cap, b_left, scale, k / m, mode)
        assert np.array_equal(a, b), mode
        assert np.array_equal(a_tests, b_tests) and np.array_equal(a_left, b_left)


def test_a_pick_looking_ahead_serves_the_items_about_to_run_out():
    """Rows of 12 eligible items (of 300, unequally popular), 8 tested each, floor 4: the plain
    pick leaves items that had 4 or more viewers below the floor (early rows spend their tests
    at random among items with no test yet); looking ahead at the rows still to come, the
    projected and deficit ranks leave none, and the ties rank fewer."""
    for seed in range(3):
        rng = np.random.default_rng(seed)
        n, m, k, floor = 150, 12, 8, 4.0
        pop = rng.gamma(2.0, 1.0, 300)
        videos = np.stack(
            [rng.choice(300, m, replace=False, p=pop / pop.sum()) for _ in range(n)]
        ).astype(np.int32)
        keys, weight = rng.random((n, m)), np.ones(300)
        viewers = np.bincount(videos.ravel(), minlength=300)
        short = {}
        for name in ("none", *AHEAD):
            tests = np.zeros(300, np.int32)
            if name == "none":
                _pick_least_sorted(videos, keys, k, tests, weight, floor)
            else:
                share = 1.0 if name == "deficit" else k / m
                to_come = viewers.astype(np.float64)
                _pick_ahead(
                    videos, keys, k, tests, weight, floor, to_come, np.ones(n), share, AHEAD[name]
                )
                assert not to_come.any()  # every row taken off the viewers to come
            short[name] = int(((tests < floor) & (viewers >= floor)).sum())
        assert short["none"] > short["ties"] > short["projected"] == short["deficit"] == 0, short


def test_simulate_many_is_one_simulate_per_run(params, monkeypatch):
    """One workspace for every run (step 1's kept sessions in it too, from a larger campaign
    first), each run the same bytes as a simulation of its own that plays step 1 again."""
    from memsim.sim import simulate as sim_module
    from memsim.sim.batch import simulate_many
    from memsim.sim.params import params_from_mapping
    from memsim.sim.simulate import simulate

    proto = load_protocol(ROOT / "protocols" / "videomem.yaml")
    d = params.dump()
    d["participants"]["return_probability"] = 0.5
    other = params_from_mapping(d, "other")
    runs = [(params, 3), (other, 3), (params, 4)]
    workspace: dict = {}
    simulate_many(proto, [(params, 9)], lambda a: None, scale=0.04, workspace=workspace)
    assert workspace["first_step"]["judged"].sum() > 0
    got = simulate_many(
        proto,
        runs,
        lambda a: {c: v.copy() for c, v in a.trials.items()},
        scale=0.03,
        workspace=workspace,
    )
    monkeypatch.setattr(sim_module, "_KEEP_FIRST_STEP", False)
    for (p, seed), cols in zip(runs, got):
        want = simulate(proto, p, seed=seed, scale=0.03).trials
        for c, v in cols.items():
            w = want[c].cat.codes.to_numpy() if c == "role" else want[c].to_numpy()
            assert v.tobytes() == w.tobytes(), c


def test_write_simulation_writes_what_is_asked(params, tmp_path):
    import pandas as pd

    from memsim.errors import UserError
    from memsim.sim.simulate import simulate, write_simulation

    sim = simulate(load_protocol(ROOT / "protocols" / "videomem.yaml"), params, seed=1, scale=0.02)
    paths = write_simulation(sim, tmp_path / "a", tables=("trials",), compression="lz4")
    assert [p.name for p in paths] == ["trials.parquet"]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["trials.parquet"]
    back = pd.read_parquet(paths[0])
    pd.testing.assert_frame_equal(back, sim.trials)
    with pytest.raises(UserError, match="codec"):
        write_simulation(sim, tmp_path / "b", compression="brotli")
    with pytest.raises(UserError, match="table"):
        write_simulation(sim, tmp_path / "c", tables=("trial",))
