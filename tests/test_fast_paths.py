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

from memsim.design.protocol import load_protocol, protocol_from_mapping
from memsim.rng import stream_key
from memsim.sim.campaign import (
    AnnotationIndex,
    _pick_least,
    _pick_least_sorted,
    _select_least_scratch,
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
    # VideoMem's selection counts kept annotations, which waits for sessions (simpy only); the
    # rest of its campaign (demand, the step-2 pick with its floor) is tested in order here
    base["selection"].update(counts="assigned", counts_every_h=None)
    pick = ("steps", 1, "items", 0, "source")
    for name, change in (
        ("counting assignments", lambda d: None),
        ("pick floor", lambda d: _at(d, pick).update(floor=3)),
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


def _same_arrays(a, b) -> None:
    assert a.n_participants == b.n_participants
    assert list(a.trials) == list(b.trials)
    for c in a.trials:
        x, y = a.trials[c], b.trials[c]
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), c
    for k in a.truth:
        assert a.truth[k].tobytes() == b.truth[k].tobytes(), k


@pytest.mark.parametrize("name, proto", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_in_order_campaign_is_the_simpy_campaign(name, proto):
    small = _small(proto)
    for seed in (0, 11):
        _same_plan(
            plan_campaign(small, seed, 0.4, engine="simpy"),
            plan_campaign(small, seed, 0.4, engine="in_order"),
        )


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


def test_simulate_many_is_one_simulate_per_run(params):
    from memsim.sim.batch import simulate_many
    from memsim.sim.params import params_from_mapping
    from memsim.sim.simulate import simulate

    proto = load_protocol(ROOT / "protocols" / "videomem.yaml")
    d = params.dump()
    d["participants"]["return_probability"] = 0.5
    other = params_from_mapping(d, "other")
    runs = [(params, 3), (other, 3), (params, 4)]
    got = simulate_many(
        proto, runs, lambda a: {c: v.copy() for c, v in a.trials.items()}, scale=0.03
    )
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
