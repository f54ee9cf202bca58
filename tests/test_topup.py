"""Top-up rounds after the campaign (``campaign.top_up``, memsim/sim/topup.py): both engines
give the same bytes, the rounds reach the floor in the scored counts, the ids, times and
table contract hold, and the schema refuses a protocol the top-up cannot serve."""

from __future__ import annotations

import copy
from pathlib import Path

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_fast_paths import _same_arrays

from memsim.analysis.scoring import count_column, score
from memsim.design.protocol import load_protocol, protocol_from_mapping
from memsim.design.trials import ROLES, validate_trials
from memsim.errors import UserError
from memsim.sim.params import load_params
from memsim.sim.simulate import prepare, simulate_arrays, simulate_stepwise
from memsim.sim.topup import _Places, _plan_first, _plan_first_reference

ROOT = Path(__file__).resolve().parent.parent
LT = "long-term_memorability"


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "calibration" / "videomem.yaml")


def _videomem(**top_up) -> dict:
    d = load_protocol(ROOT / "protocols" / "videomem.yaml").dump()
    d["campaign"]["pilot"] = None  # the top-up's players last (the pilot's: tests/test_pilot.py)
    if top_up:
        d["campaign"]["top_up"] = {"floor": 9, **top_up}
    return d


def _same(a, b) -> None:
    _same_arrays(a, b)  # the campaign's byte comparison, then what the top-up adds
    assert a.top_up == b.top_up
    assert a.participants_frame().equals(b.participants_frame())


# a small protocol (one step-2 test round, few videos) and the shipped one at a small scale
SMALL = {
    # a floor above what the campaign gives, rounds of at least 3, `least` targets
    "small, least": (
        _videomem(floor=12, targets="least", min_batch=3, max_rounds=4),
        0.03,
        (1, 6),
    ),
    "shipped": (load_protocol(ROOT / "protocols" / "videomem.yaml").dump(), 0.05, (2, 9)),
    # `most`: step 1's other items among the stimuli with the most kept step-1 tests
    "small, most": (
        _videomem(floor=12, targets="most", min_batch=3, max_rounds=4),
        0.03,
        (1,),
    ),
}


def test_most_targets_go_to_the_tail_of_the_step_one_counts(params):
    """With `most`, the top-up's step-1 targets are stimuli with the most step-1 tests: their
    tests land in the upper part of the campaign's count distribution."""
    prepared = prepare(protocol_from_mapping(SMALL["small, most"][0]), 0.03)
    a = simulate_arrays(prepared, params, 1)
    assert a.top_up.rounds > 0
    t = a.trials
    first = a.top_up.first_participant
    tests1 = (t["step"] == 1) & (t["role"] == ROLES.index("target")) & t["repeat"]
    camp = np.bincount(
        t["video"][tests1 & (t["participant"] < first)], minlength=prepared.protocol.stimuli.count
    )
    top = t["video"][tests1 & (t["participant"] >= first)]
    assert top.size > 0
    # the campaign's step-1 tests of the top-up's targets sit above the campaign's median
    assert np.median(camp[top]) > np.median(camp)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**40),
    targets=st.sampled_from(["uniform", "least", "most"]),
    V=st.integers(40, 400),
    nf=st.integers(1, 12),
    no=st.integers(1, 12),
    carry=st.integers(1, 12),
    pools=st.tuples(st.integers(1, 500), st.integers(1, 500)),
    n=st.integers(1, 30),
    spread=st.integers(1, 6),
)
def test_round_plan_kernel_is_the_numpy_reference(
    seed, targets, V, nf, no, carry, pools, n, spread
):
    """The numba planner of a round's step-1 items gives the numpy reference's items, stream
    states and uniforms, bit for bit: counts with many ties, pools below and above the number
    of stimuli, per-demand (fractional) and raw step-1 keys, more short stimuli than places."""
    rng = np.random.default_rng(seed)
    forced = np.sort(rng.choice(nf + no, nf, replace=False))
    places = _Places(
        forced=forced,
        other=np.setdiff1d(np.arange(nf + no), forced),
        targets1=np.zeros(0, dtype=np.int64),
        role1=np.empty(nf + no, dtype=object),
        tested=(),
        new2=np.zeros(0, dtype=np.int64),
        carry=min(carry, nf),
    )
    lt = rng.integers(0, spread, V).astype(np.int64)
    short = np.flatnonzero(lt < spread - 1)
    need = rng.integers(1, 4, short.size).astype(np.int64)
    st_key = rng.integers(0, spread, V) / (1.0 + rng.integers(0, 2, V))  # ties, and fractions
    pid = np.arange(1000, 1000 + n, dtype=np.int64)
    args = (places, seed % 2**31, pid, short, need, lt, st_key, targets, *pools, V)
    got, want = _plan_first(*args), _plan_first_reference(*args)
    for a, b in zip(got, want):
        assert a.dtype == b.dtype and np.array_equal(a, b)


@pytest.mark.parametrize("name", list(SMALL))
def test_fused_top_up_is_the_stepwise_top_up(name, params):
    d, scale, seeds = SMALL[name]
    prepared = prepare(protocol_from_mapping(d), scale)
    assert prepared.protocol.campaign.top_up is not None
    ran = 0
    for seed in seeds:
        a = simulate_arrays(prepared, params, seed)
        _same(a, simulate_stepwise(prepared, params, seed))
        ran += a.top_up.rounds
    assert ran > 0  # the rounds were played, not skipped


def test_top_up_reaches_the_floor_in_the_scored_counts(params):
    """The engine's kept counts are scoring's: the floor holds in the scored long-term counts,
    the top-up's participants come after the campaign's with their own ids, their step 1
    after the campaign's last session and their step 2 within the delay window; the table
    passes the contract."""
    prepared = prepare(protocol_from_mapping(_videomem(floor=12, min_batch=2)), 0.05)
    sim = simulate_arrays(prepared, params, 3).to_simulation()
    top = sim.top_up
    assert top.rounds >= 1 and top.short_before > 0 and top.short_after == 0
    validate_trials(sim.trials)
    n = score(sim.trials, sim.protocol).scores[count_column(LT)].to_numpy()
    assert n.min() == top.min_after >= 12
    t = sim.trials
    late = t["participant"] >= top.first_participant
    assert t.loc[late, "participant"].nunique() == top.participants
    assert t.loc[~late, "participant"].max() == top.first_participant - 1
    assert len(sim.participants) == top.first_participant + top.participants
    s1 = t[late & (t["step"] == 1)].groupby("participant")["onset_s"].min()
    assert s1.min() > t.loc[~late, "onset_s"].max()
    ends = t[late & (t["step"] == 1)].groupby("participant")["onset_s"].max()
    starts = t[late & (t["step"] == 2)].groupby("participant")["onset_s"].min()
    gap_h = (starts - ends.loc[starts.index]) / 3600
    assert ((gap_h > 24) & (gap_h < 72 + 1)).all()  # the window, after step 1's last video


def test_top_up_bytes_do_not_depend_on_threads(params):
    prepared = prepare(protocol_from_mapping(_videomem(floor=12, min_batch=2)), 0.05)
    before = numba.get_num_threads()
    out = []
    try:
        for k in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(k)
            out.append(simulate_arrays(prepared, params, 5))
    finally:
        numba.set_num_threads(before)
    assert out[0].top_up.rounds >= 1
    _same(*out)


def test_a_higher_floor_only_adds_rounds(params):
    """A round's draws are its participants' own: a cap of one round plays the first round of
    the uncapped top-up, byte for byte."""
    one = simulate_arrays(prepare(protocol_from_mapping(_videomem(max_rounds=1)), 0.05), params, 2)
    more = simulate_arrays(prepare(protocol_from_mapping(_videomem(max_rounds=9)), 0.05), params, 2)
    assert one.top_up.rounds == 1 and more.top_up.started[0] == one.top_up.started[0]
    for c in one.trials:
        x = one.trials[c]
        assert x.tobytes() == more.trials[c][: x.shape[0]].tobytes(), c


def test_top_up_is_off_unless_asked():
    d = _videomem()
    d["campaign"].pop("top_up", None)
    p = protocol_from_mapping(d)
    assert p.campaign.top_up is None
    assert protocol_from_mapping(p.dump()) == p


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d["steps"].pop(1), "needs a two-step protocol"),
        (
            lambda d: d["steps"][1]["items"][0]["source"].update(roles=["target"]),
            "tests come from step 1's fillers",
        ),
        (lambda d: d["campaign"]["top_up"].update(floor=0), "floor"),
        (lambda d: d["campaign"]["top_up"].update(targets="fewest"), "targets"),
        (lambda d: d["campaign"]["top_up"].update(min_batch=0), "min_batch"),
        (lambda d: d["campaign"]["top_up"].update(rounds=3), "rounds"),
    ],
)
def test_a_top_up_it_cannot_serve_is_one_line(change, message):
    d = copy.deepcopy(_videomem(min_batch=5))
    change(d)
    with pytest.raises(UserError, match=message) as info:
        protocol_from_mapping(d, "p.yaml")
    assert "\n" not in str(info.value) and str(info.value).startswith("p.yaml: campaign")
