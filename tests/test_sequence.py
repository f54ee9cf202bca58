"""Lag-constrained sequences: kernel == reference, validity, lags, determinism, bounded failure."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memsim.design.protocol import load_protocol
from memsim.errors import UserError
from memsim.resources import protocol_path
from memsim.sim.sequence import (
    StepLayout,
    generate_sequences,
    generate_sequences_reference,
    layout_for,
)


@pytest.fixture(scope="module")
def videomem():
    return layout_for(load_protocol(protocol_path("videomem")).steps[0])


def assert_valid(layout: StepLayout, item: np.ndarray, lag: np.ndarray) -> None:
    """Every sequence shows each item the right number of times, repeats within their lag range."""
    n, L = item.shape
    assert lag.shape == (n, L)
    assert item.dtype == np.int32 and lag.dtype == np.int16
    group = layout.group_of_item
    rep_item = layout.repeats[group]
    lo = layout.group_lag_min[group]
    hi = layout.group_lag_max[group]
    want = np.where(rep_item, 2, 1)
    for r in range(n):
        row, lrow = item[r], lag[r]
        assert row.min() >= 0 and row.max() < layout.n_items
        np.testing.assert_array_equal(np.bincount(row, minlength=layout.n_items), want)
        order = np.argsort(row, kind="stable")  # positions of each item, first showing first
        expected_lag = np.full(L, -1, np.int64)
        k = 0
        for it in range(layout.n_items):
            if rep_item[it]:
                p1, p2 = order[k], order[k + 1]
                k += 2
                d = p2 - p1
                assert lo[it] <= d <= hi[it], (it, d, lo[it], hi[it])
                expected_lag[p2] = d
            else:
                k += 1
        np.testing.assert_array_equal(lrow, expected_lag)


# --------------------------------------------------------------------------- layout
def test_layout_for_videomem(videomem):
    assert videomem.length == 180
    np.testing.assert_array_equal(videomem.group_count, [40, 20, 60])
    np.testing.assert_array_equal(videomem.group_lag_min, [45, 3, 0])
    np.testing.assert_array_equal(videomem.group_lag_max, [100, 6, 0])
    assert videomem.n_items == 120
    g = videomem.group_of_item
    assert g.dtype == np.int32 and g.shape == (120,)
    np.testing.assert_array_equal(np.bincount(g), [40, 20, 60])
    assert (g[:40] == 0).all() and (g[40:60] == 1).all() and (g[60:] == 2).all()


def test_layout_for_step_without_repeats():
    step2 = load_protocol(protocol_path("videomem")).steps[1]
    layout = layout_for(step2)
    np.testing.assert_array_equal(layout.group_count, [40, 80])
    assert not layout.repeats.any()
    item, lag = generate_sequences(layout, 3, np.arange(20), 1)
    assert_valid(layout, item, lag)
    assert (lag == -1).all()
    np.testing.assert_array_equal(np.sort(item, axis=1), np.tile(np.arange(120), (20, 1)))


# --------------------------------------------------------------------------- kernel == reference
SMALL = [
    StepLayout(1, [1], [0], [0]),
    StepLayout(2, [1], [1], [1]),
    StepLayout(7, [2, 3], [1, 0], [2, 0]),
    StepLayout(12, [1, 2, 6], [3, 1, 0], [5, 2, 0]),
    StepLayout(20, [3, 2, 10], [2, 6, 0], [4, 9, 0]),
    StepLayout(10, [5], [5], [5]),  # tight: forces scans and restarts
]


@pytest.mark.parametrize("layout", SMALL, ids=lambda lay: f"L{lay.length}")
def test_kernel_matches_reference_small(layout):
    ids = np.array([0, 1, 2, 5, 17, 1000, 123456789], dtype=np.int64)
    for seed, step in [(0, 0), (42, 1), (2**63 + 5, 3)]:
        a = generate_sequences(layout, seed, ids, step)
        b = generate_sequences_reference(layout, seed, ids, step)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        assert_valid(layout, *a)


def test_kernel_matches_reference_videomem(videomem):
    ids = np.arange(60, dtype=np.int64) * 7919
    a = generate_sequences(videomem, 2024, ids, 0)
    b = generate_sequences_reference(videomem, 2024, ids, 0)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert_valid(videomem, *a)


# --------------------------------------------------------------------------- properties
@st.composite
def slack_layouts(draw):
    """Layouts with enough free positions that the greedy placement can never dead-end.

    Placing the j-th pair leaves at least L - d - 4j valid first positions, so
    L >= max_lag + 4R - 3 (R repeated items) guarantees success with no restart.
    """
    n_rep = draw(st.integers(0, 3))
    counts, lo, hi = [], [], []
    for _ in range(n_rep):
        a = draw(st.integers(1, 25))
        counts.append(draw(st.integers(1, 6)))
        lo.append(a)
        hi.append(a + draw(st.integers(0, 15)))
    R = sum(counts)
    need = max(hi) + 2 * R - 3 if R else 1
    singles = need + draw(st.integers(0, 10))
    split = draw(st.integers(0, singles - 1)) if singles > 1 else 0
    for c in (split, singles - split):
        if c > 0:
            counts.append(c)
            lo.append(0)
            hi.append(0)
    perm = draw(st.permutations(range(len(counts))))
    L = 2 * R + singles
    return StepLayout(L, [counts[i] for i in perm], [lo[i] for i in perm], [hi[i] for i in perm])


@st.composite
def any_layouts(draw):
    """Random layouts that pass the schema's checks; some may be too tight to fill."""
    L = draw(st.integers(2, 60))
    counts, lo, hi = [], [], []
    used = 0
    for _ in range(draw(st.integers(1, 3))):
        if L - used < 2:
            break
        c = draw(st.integers(1, (L - used) // 2))
        a = draw(st.integers(1, L - 1))
        counts.append(c)
        lo.append(a)
        hi.append(draw(st.integers(a, L - 1)))
        used += 2 * c
    if L - used > 0:
        counts.append(L - used)
        lo.append(0)
        hi.append(0)
    return StepLayout(L, counts, lo, hi)


FAST = settings(max_examples=60)


@FAST
@given(layout=slack_layouts(), seed=st.integers(0, 2**64 - 1), step=st.integers(0, 255))
def test_slack_layouts_always_valid(layout, seed, step):
    ids = np.arange(25, dtype=np.int64)
    item, lag = generate_sequences(layout, seed, ids, step, max_restarts=0)
    assert_valid(layout, item, lag)


@FAST
@given(layout=any_layouts(), seed=st.integers(0, 2**32))
def test_any_layout_valid_or_clear_error(layout, seed):
    ids = np.arange(10, dtype=np.int64)
    try:
        item, lag = generate_sequences(layout, seed, ids, 0, max_restarts=20)
    except UserError as exc:
        msg = str(exc)
        assert "\n" not in msg and msg.startswith("step 1")
        with pytest.raises(UserError):
            generate_sequences_reference(layout, seed, ids, 0, max_restarts=20)
        return
    assert_valid(layout, item, lag)
    ref = generate_sequences_reference(layout, seed, ids, 0, max_restarts=20)
    np.testing.assert_array_equal(item, ref[0])
    np.testing.assert_array_equal(lag, ref[1])


# --------------------------------------------------------------------------- lag spread
def test_videomem_lags_cover_ranges_uniformly(videomem):
    item, lag = generate_sequences(videomem, 11, np.arange(3000, dtype=np.int64), 0)
    assert_valid(videomem, item[:200], lag[:200])
    second = lag >= 0
    group = videomem.group_of_item[item[second]]
    lags = lag[second].astype(np.int64)
    for g, (a, b) in [(0, (45, 100)), (1, (3, 6))]:
        counts = np.bincount(lags[group == g] - a, minlength=b - a + 1)
        assert counts.size == b - a + 1  # nothing outside the range
        assert (counts > 0).all(), f"gaps in lags {a}-{b}"
        # Uniform lags (no restarts happen on this layout): chi-square well below
        # its 1e-6 upper tail for b - a degrees of freedom.
        expected = counts.sum() / counts.size
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        from scipy.stats import chi2 as chi2_dist

        assert chi2_dist.sf(chi2, counts.size - 1) > 1e-6, chi2


# --------------------------------------------------------------------------- determinism
def test_independent_of_batch_split_and_order(videomem):
    ids = np.arange(500, dtype=np.int64) * 3 + 1
    item, lag = generate_sequences(videomem, 5, ids, 0)
    parts = [ids[:1], ids[1:123], ids[123:]]
    got = np.concatenate([generate_sequences(videomem, 5, p, 0)[0] for p in parts])
    np.testing.assert_array_equal(got, item)
    rev = generate_sequences(videomem, 5, ids[::-1], 0)
    np.testing.assert_array_equal(rev[0][::-1], item)
    np.testing.assert_array_equal(rev[1][::-1], lag)


def test_independent_of_thread_count(videomem):
    ids = np.arange(400, dtype=np.int64)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = generate_sequences(videomem, 9, ids, 1)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = generate_sequences(videomem, 9, ids, 1)
    finally:
        numba.set_num_threads(before)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])


def test_streams_differ_by_seed_step_and_participant(videomem):
    base = generate_sequences(videomem, 1, np.array([0, 1]), 0)[0]
    assert not np.array_equal(base[0], base[1])
    assert not np.array_equal(base, generate_sequences(videomem, 2, np.array([0, 1]), 0)[0])
    assert not np.array_equal(base, generate_sequences(videomem, 1, np.array([0, 1]), 1)[0])


def test_empty_batch(videomem):
    item, lag = generate_sequences(videomem, 1, np.array([], dtype=np.int64), 0)
    assert item.shape == (0, 180) and lag.shape == (0, 180)


# --------------------------------------------------------------------------- failures
def test_infeasible_layout_fails_bounded():
    # Three pairs at lag exactly 2 in 6 positions: a pair uses two positions of
    # the same parity and each parity has 3, so no order exists. The cheap
    # pre-check cannot see that; the restart bound must stop it.
    layout = StepLayout(6, [3], [2], [2], name="tight", group_role=("target",))
    for fn in (generate_sequences, generate_sequences_reference):
        msg = r"step 2 \(tight\): could not place .*items\.0 \(3 target, lag 2-2\).*1000 restarts"
        with pytest.raises(UserError, match=msg):
            fn(layout, 0, np.arange(50, dtype=np.int64), 1, max_restarts=1000)


@pytest.mark.parametrize(
    "layout, message",
    [
        (StepLayout(180, [40, 20, 60], [45, 3, 0], [180, 6, 0]), "does not fit a sequence of 180"),
        (
            StepLayout(180, [40, 20, 60], [150, 3, 0], [170, 6, 0]),
            "40 items repeated at lags of at least 150",
        ),
        (
            StepLayout(181, [40, 20, 60], [45, 3, 0], [100, 6, 0]),
            "give 180 presentations but length is 181",
        ),
        (StepLayout(180, [40, 20, 60], [9, 3, 0], [8, 6, 0]), "invalid lag range"),
    ],
)
def test_precheck_rejects_obvious_infeasibility(layout, message):
    with pytest.raises(UserError, match=message):
        generate_sequences(layout, 0, np.arange(3), 0)


def test_bad_arguments_are_programming_errors(videomem):
    with pytest.raises(ValueError):
        generate_sequences(videomem, -1, np.arange(3), 0)
    with pytest.raises(ValueError):
        generate_sequences(videomem, 0, np.array([-1]), 0)
    with pytest.raises(ValueError):
        generate_sequences(videomem, 0, np.arange(3), 256)
