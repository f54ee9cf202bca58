"""The recruitment campaign: who arrives when, what they are shown, who comes back.

In: a protocol, a seed and the number of stimuli. Out: a :class:`Plan` —
arrival times, each participant's step-1 stimuli (assigned to the step's item
groups), and for each later step the participants who return, their delay
after the previous step and their new stimuli. simpy schedules people, never
trials: the plan is arrays that :mod:`memsim.sim.simulate` hands to the kernel.

Selection happens at the moment a participant starts, from the annotation
counts of the assignments made so far (``least_annotated``: uniformly among the
``pool`` stimuli with the fewest step-1 target assignments, ties broken at
random; with ``counts: kept``, the assignments of a participant whom step 1's
filters drop are withdrawn when her session ends, so the counts balanced are
those of kept annotations; with ``later_pool``, the places a later step picks its tests from
are drawn apart, among the ``later_pool`` stimuli shown least often in those places, so that
every stimulus is available to the later step about equally often;
``uniform``: uniformly among all; ``adaptive``: uniformly among the
``pool`` stimuli whose hit rate is most uncertain given the results of the
sessions that have ended by then — a Beta posterior, pending assignments
counted at its mean). New items of later steps are drawn
uniformly among stimuli the participant has never seen (VideoMem's "totally
new videos"). Items tested in a later step are drawn from the earlier step's
eligible items once that step has been played (see :mod:`memsim.sim.simulate`).

With a ``demand`` (:class:`memsim.design.protocol.Demand`), ``least_annotated`` ranks
stimuli by ``floor(annotations / demand)`` instead of annotations, and a later
step's ``pick: least_annotated`` by tests / demand: stimuli of demand 2 end with
about twice the annotations of the rest. Those later-step picks are made once the
campaign has run, in order of the participants' return draws (not return times), so
that raising the return probability leaves every earlier pick as it was — unless the pick
looks ahead (``lookahead``: :func:`_pick_ahead` ranks by the viewers still to come in that
order as well, and a participant appended to it changes those of everyone before her).

Randomness: arrivals from stream ``(seed, CAMPAIGN, 0)``, participant ``p``'s
selection and return from stream ``(seed, CAMPAIGN, p + 1)``; the selection's
demands from ``(seed, DEMAND, 0)``, step ``s``'s pick demands from ``(seed, DEMAND, s)``.

Two engines give the same plan, byte for byte (``tests/test_fast_paths.py``). simpy runs the
campaign as events (an arrival, a return per participant and step) and is the reference, and
the engine of the one policy whose choices depend on the results of the sessions that have
ended (``adaptive``). For the others nothing a participant is given depends on anyone's timing
but the arrival order and, with ``counts: kept`` or ``received``, the sessions' verdicts: each
participant's draws come from her own stream in a fixed order, and selection sees the
assignments of those who arrived before her, less (or plus) the verdicts due by her arrival.
The arrival times come from their own stream, so they are all known up front; a session lasts
at least :func:`first_verdict_s`, so the arrivals can be cut into windows inside which no
verdict falls (with ``counts_every_h``, none before the next check). The campaign is then one
numba loop over participants in arrival order (:func:`_plan_in_order`), run window by window,
each window's step-1 sessions judged by one ``judge`` call after it is planned;
:func:`plan_campaign` uses it for these policies unless told ``engine="simpy"``.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from memsim import _jitcache  # noqa: F401  (drops numba caches older than the sources)
from memsim import rng as _rng
from memsim.design.protocol import Protocol, later_pick_places
from memsim.errors import UserError
from memsim.rng import PyStream, next_below, next_uniform, stream_key, stream_key_py

__all__ = [
    "SELECTION_POLICIES",
    "SelectionPolicy",
    "LeastTestedPick",
    "Plan",
    "LaterPick",
    "LaterStep",
    "AnnotationIndex",
    "draw_demand",
    "plan_campaign",
    "select_least_annotated",
    "select_uniform",
]


@njit(cache=True)
def _draw_demand(n, share, mean_excess, state):
    out = np.ones(n, dtype=np.float64)
    for v in range(n):
        state, u = next_uniform(state)
        state, e = next_uniform(state)  # drawn for every stimulus: demand v never shifts w
        if u < share:
            out[v] = 1.0 - mean_excess * np.log1p(-e)
    return out


def draw_demand(demand, n: int, seed: int, index: int) -> np.ndarray | None:
    """Each stimulus' demand (float64[n], >= 1, at most ``demand.max``) from stream
    ``(seed, DEMAND, index)``; None if none."""
    if demand is None:
        return None
    state = np.uint64(stream_key_py(seed, _rng.DEMAND, index))
    out = _draw_demand(n, float(demand.share), float(demand.mean_excess), state)
    cap = getattr(demand, "max", None)
    if cap is not None:  # cut after the draw: the same stream, the same demands below the cap
        np.minimum(out, float(cap), out=out)
    return out


@njit(cache=True)
def shuffle_front(a, k, state):
    """Move a uniform random ``k``-subset of ``a`` to ``a[:k]``, in random order (partial
    Fisher–Yates, one draw per place); returns the advanced stream state."""
    n = a.shape[0]
    for j in range(k):
        state, r = next_below(state, n - j)
        r += j
        tmp = a[j]
        a[j] = a[r]
        a[r] = tmp
    return state


class AnnotationIndex:
    """Stimuli kept sorted by annotation count, updated in O(1) per annotation.

    ``order`` lists stimuli by key (the count, or ``floor(count / demand)`` with
    demands); bucket ``c`` (stimuli with key ``c``) is ``order[start[c]:start[c + 1]]``;
    ``where[v]`` is ``v``'s place in ``order``. Raising a key swaps the stimulus
    to the end of its bucket and moves the bucket boundary, so selection never
    scans the whole pool. A demand >= 1 raises a key by at most 1 per annotation.
    """

    def __init__(self, n: int, max_count: int, demand: np.ndarray | None = None) -> None:
        self.counts = np.zeros(n, dtype=np.int32)
        self.keys = np.zeros(n, dtype=np.int32) if demand is not None else self.counts
        self.demand = demand
        self.order = np.arange(n, dtype=np.int32)
        self.where = np.arange(n, dtype=np.int32)
        self.start = np.full(max_count + 2, n, dtype=np.int64)
        self.start[0] = 0

    def add(self, videos: np.ndarray) -> None:
        if self.demand is None:
            _add_annotations(self.counts, self.order, self.where, self.start, videos)
        else:
            _add_demanded(
                self.counts, self.keys, self.demand, self.order, self.where, self.start, videos
            )

    def remove(self, videos: np.ndarray) -> None:
        """Withdraw one annotation of each of ``videos`` (each must have one to withdraw)."""
        if self.demand is None:
            _remove_annotations(self.counts, self.order, self.where, self.start, videos)
        else:
            _remove_demanded(
                self.counts, self.keys, self.demand, self.order, self.where, self.start, videos
            )

    def min_count(self) -> int:
        if self.demand is not None:
            return int(self.counts.min())
        return int(self.counts[self.order[0]])

    def few_below(self, c: int, most: int) -> bool:
        """Whether at most ``most`` stimuli have fewer than ``c`` annotations."""
        n_high = 0 if self.demand is None else int(np.count_nonzero(self.demand > 1.0))
        return bool(_few_below(self.counts, self.order, self.start, n_high, c, most))


@njit(cache=True)
def _few_below(counts, order, start, n_high, c, most):
    """Whether at most ``most`` stimuli have fewer than ``c`` annotations. A key never exceeds
    its count (demands are >= 1), so only the stimuli of key below ``c``, ``order[:start[c]]``,
    can have fewer, and all of them but the ``n_high`` of demand above 1 do: with none (no
    demands) that is the answer in O(1); with some, no scan while the others alone are too
    many, else those below counted, up to the ``most + 1``-th."""
    if c >= start.shape[0]:  # above any key: every stimulus is below
        return counts.shape[0] <= most
    if n_high == 0:
        return start[c] <= most
    if start[c] - n_high > most:
        return False
    n = 0
    for i in range(start[c]):
        if counts[order[i]] < c:
            n += 1
            if n > most:
                return False
    return True


@njit(cache=True)
def _add_demanded(counts, keys, demand, order, where, start, videos):
    for v in videos:
        counts[v] += 1
        if int(np.floor(counts[v] / demand[v])) > keys[v]:
            _raise_key(keys, order, where, start, v)


@njit(cache=True, inline="always")
def _swap_into(order, where, v, place):
    """Swap stimulus ``v`` with whichever stimulus is at ``place`` of ``order``."""
    u = order[place]
    i = where[v]
    order[i] = u
    where[u] = i
    order[place] = v
    where[v] = place


@njit(cache=True)
def _raise_key(keys, order, where, start, v):
    c = keys[v]
    _swap_into(order, where, v, start[c + 1] - 1)  # to the last place of bucket c
    start[c + 1] -= 1  # v now opens bucket c + 1
    keys[v] = c + 1


@njit(cache=True)
def _add_annotations(counts, order, where, start, videos):
    for v in videos:
        _raise_key(counts, order, where, start, v)


@njit(cache=True)
def _lower_key(keys, order, where, start, v):
    c = keys[v]
    _swap_into(order, where, v, start[c])  # to the first place of bucket c
    start[c] += 1  # v now closes bucket c - 1
    keys[v] = c - 1


@njit(cache=True)
def _remove_annotations(counts, order, where, start, videos):
    for v in videos:
        _lower_key(counts, order, where, start, v)


@njit(cache=True)
def _remove_demanded(counts, keys, demand, order, where, start, videos):
    for v in videos:
        counts[v] -= 1
        if int(np.floor(counts[v] / demand[v])) < keys[v]:
            _lower_key(keys, order, where, start, v)


@njit(cache=True)
def select_least_annotated(order, start, pool, k, state):
    """``k`` distinct stimuli drawn at random among the ``pool`` least-annotated.

    Stimuli with fewer annotations than the pool's boundary count ``c*`` are
    all in the pool; ties at ``c*`` fill it at random. Drawing ``k`` places of
    the pool uniformly, then a uniformly random bucket member for each place
    that falls among the ties, gives exactly that law without building the pool.
    """
    c = 0
    while start[c + 1] < pool:
        c += 1
    m = start[c]  # stimuli with count < c*: all in the pool
    size = start[c + 1] - m  # the boundary bucket
    places = np.arange(pool, dtype=np.int64)
    state = shuffle_front(places, k, state)
    out = np.empty(k, dtype=np.int32)
    n_tie = 0
    tie_idx = np.empty(k, dtype=np.int64)
    for j in range(k):
        if places[j] < m:
            out[j] = order[places[j]]
        else:
            tie_idx[n_tie] = j
            n_tie += 1
    drawn = np.empty(n_tie, dtype=np.int64)
    for t in range(n_tie):  # distinct uniform members of the boundary bucket
        while True:
            state, r = next_below(state, size)
            ok = True
            for q in range(t):
                if drawn[q] == r:
                    ok = False
                    break
            if ok:
                drawn[t] = r
                out[tie_idx[t]] = order[m + r]
                break
    return state, out


@njit(cache=True)
def _select_least_scratch(order, start, pool, k, state, places, mark, stamp):
    """:func:`select_least_annotated` with reusable scratch: the same draws, the same result.

    ``places`` (int64[>= pool]) must hold the identity and is restored before returning (only
    the places the shuffle touched are reset, not the whole pool); ``mark`` (int64[>= n])
    replaces the quadratic check of distinct tie members: ``mark[r] == stamp`` means drawn.
    """
    c = 0
    while start[c + 1] < pool:
        c += 1
    m = start[c]
    size = start[c + 1] - m
    touched = np.empty(2 * k, dtype=np.int64)
    for j in range(k):  # partial Fisher-Yates, as shuffle_front
        state, r = next_below(state, pool - j)
        r += j
        tmp = places[j]
        places[j] = places[r]
        places[r] = tmp
        touched[2 * j] = j
        touched[2 * j + 1] = r
    out = np.empty(k, dtype=np.int32)
    n_tie = 0
    tie_idx = np.empty(k, dtype=np.int64)
    for j in range(k):
        if places[j] < m:
            out[j] = order[places[j]]
        else:
            tie_idx[n_tie] = j
            n_tie += 1
    for t in range(n_tie):
        while True:
            state, r = next_below(state, size)
            if mark[r] != stamp:
                mark[r] = stamp
                out[tie_idx[t]] = order[m + r]
                break
    for q in range(2 * k):
        places[touched[q]] = touched[q]
    return state, out


@njit(cache=True)
def _select_least_unmarked(order, start, pool, k, mark, stamp, state):
    """``k`` distinct stimuli at random among the ``pool`` least-annotated, none with
    ``mark[v] == stamp`` (marks the ones drawn). A pool place is drawn uniformly (one among
    the boundary bucket's ties, uniformly, for a place beyond the stimuli below it) and drawn
    again when its stimulus is marked: with few marked, about uniform among the pool's rest."""
    c = 0
    while start[c + 1] < pool:
        c += 1
    m = start[c]
    size = start[c + 1] - m
    out = np.empty(k, dtype=np.int32)
    got = 0
    while got < k:
        state, r = next_below(state, pool)
        if r >= m:
            state, t = next_below(state, size)
            r = m + t
        v = order[r]
        if mark[v] != stamp:
            mark[v] = stamp
            out[got] = v
            got += 1
    return state, out


@njit(cache=True)
def select_uniform(n, k, exclude, state):
    """``k`` distinct stimuli uniform over ``0..n-1`` minus ``exclude`` (rejection)."""
    out = np.empty(k, dtype=np.int32)
    got = 0
    while got < k:
        state, v = next_below(state, n)
        ok = True
        for j in range(exclude.shape[0]):
            if exclude[j] == v:
                ok = False
                break
        if ok:
            for j in range(got):
                if out[j] == v:
                    ok = False
                    break
        if ok:
            out[got] = v
            got += 1
    return state, out


@njit(cache=True)
def _uniforms(state, n):
    """``n`` uniforms from the stream (the same bits as ``PyStream.uniform`` n times)."""
    out = np.empty(n, dtype=np.float64)
    for i in range(n):
        state, out[i] = next_uniform(state)
    return state, out


@njit(cache=True)
def _pick_least(videos, keys, k, tested_count, weight, cap=np.inf):
    """Row by row, the ``k`` places of ``videos`` with the fewest tests / weight so far (ties
    by ``keys``), counting each pick before the next row: the balancing pick of later steps.
    Ranks above ``cap`` count as ``cap`` (a ``floor``: beyond it, ties, so at random)."""
    n, m = videos.shape
    out = np.empty((n, k), dtype=np.int32)
    rank = np.empty(m, dtype=np.float64)
    for i in range(n):
        by_key = np.argsort(keys[i], kind="mergesort")
        for j in range(m):
            v = videos[i, by_key[j]]
            rank[j] = min(tested_count[v] / weight[v], cap)
        by_rank = np.argsort(rank, kind="mergesort")  # stable: equal ranks keep key order
        for j in range(k):
            place = by_key[by_rank[j]]
            out[i, j] = place
            tested_count[videos[i, place]] += 1
    return out


@njit(cache=True)
def _insert_place(idx, rank, second, keys_row, j, r, s2):
    """One step of the picks' insertion sort: place ``j`` (rank ``r``, second key ``s2``) goes
    after every earlier place of ``idx[:j]`` that sorts before it by (rank, second key, tie-break
    key, place)."""
    key = keys_row[j]
    q = j
    while q > 0:
        pj = idx[q - 1]
        rp = rank[pj]
        sp = second[pj]
        if rp < r or (
            rp == r
            and (sp < s2 or (sp == s2 and (keys_row[pj] < key or (keys_row[pj] == key and pj < j))))
        ):
            break
        idx[q] = pj
        q -= 1
    idx[q] = j
    rank[j] = r
    second[j] = s2


@njit(cache=True)
def _pick_least_sorted(videos, keys, k, tested_count, weight, cap=np.inf):
    """:func:`_pick_least` by one insertion sort per row on (tests / weight, key, place): the
    order of a stable sort by rank of the places stably sorted by key, so the same picks."""
    n, m = videos.shape
    out = np.empty((n, k), dtype=np.int32)
    rank = np.empty(m, dtype=np.float64)
    second = np.zeros(m, dtype=np.float64)
    idx = np.empty(m, dtype=np.int64)
    for i in range(n):
        for j in range(m):
            v = videos[i, j]
            _insert_place(idx, rank, second, keys[i], j, min(tested_count[v] / weight[v], cap), 0.0)
        for j in range(k):
            place = idx[j]
            out[i, j] = place
            tested_count[videos[i, place]] += 1
    return out


# how a look-ahead pick ranks an eligible item (FromStep.lookahead): codes of the kernel
AHEAD = {"projected": 1, "ties": 2, "deficit": 3}


@njit(cache=True)
def _pick_ahead(videos, keys, k, tested_count, weight, cap, to_come, scale, share, mode):
    """:func:`_pick_least_sorted` looking ahead: row ``i`` first takes her videos off
    ``to_come`` (float64[V], the viewers still to come in the pick's order, updated in place),
    then ranks each place by its video's tests ``t``, viewers to come ``f = scale[i] *
    to_come[v]`` and the expected final tests ``t + share * f``: ``mode`` 1 (projected) by
    ``min((t + share * f) / weight, cap)``; 2 (ties) by ``min(t / weight, cap)``, ties below the
    cap by fewest ``f``; 3 (deficit) the places projected below the cap first, by projection,
    then the rest by ``min(t / weight, cap)``. Remaining ties by key, then place."""
    n, m = videos.shape
    out = np.empty((n, k), dtype=np.int32)
    rank = np.empty(m, dtype=np.float64)
    second = np.empty(m, dtype=np.float64)
    idx = np.empty(m, dtype=np.int64)
    for i in range(n):
        for j in range(m):
            to_come[videos[i, j]] -= 1.0
        for j in range(m):
            v = videos[i, j]
            f = scale[i] * to_come[v]
            t = tested_count[v] / weight[v]
            proj = (tested_count[v] + share * f) / weight[v]
            s2 = 0.0
            if mode == 1:
                r = min(proj, cap)
            elif mode == 2:
                r = min(t, cap)
                if r < cap:
                    s2 = f
            elif t < cap and proj <= cap:  # short of the floor, the rest can at most fill it
                r = -1.0
                s2 = proj
            else:
                r = min(t, cap)
            _insert_place(idx, rank, second, keys[i], j, r, s2)
        for j in range(k):
            place = idx[j]
            out[i, j] = place
            tested_count[videos[i, place]] += 1
    return out


def _pick_ahead_plain(videos, keys, k, tested_count, weight, cap, to_come, scale, share, mode):
    """The plain reference of :func:`_pick_ahead`: a Python sort of each row's places."""
    n, m = videos.shape
    out = np.empty((n, k), dtype=np.int32)
    for i in range(n):
        to_come[videos[i]] -= 1.0
        order = []
        for j in range(m):
            v = videos[i, j]
            f = scale[i] * to_come[v]
            t = min(tested_count[v] / weight[v], cap)
            proj = (tested_count[v] + share * f) / weight[v]
            if mode == 1:
                sort_key = (min(proj, cap), 0.0)
            elif mode == 2:
                sort_key = (t, f if t < cap else 0.0)
            else:
                sort_key = (-1.0, proj) if t < cap and proj <= cap else (t, 0.0)
            order.append((*sort_key, keys[i, j], j))
        for j, (*_, place) in enumerate(sorted(order)[:k]):
            out[i, j] = place
            tested_count[videos[i, place]] += 1
    return out


@njit(cache=True)
def select_from(candidates, k, state):
    """``k`` distinct members of ``candidates``, uniformly (partial Fisher–Yates on a copy)."""
    c = candidates.copy()
    state = shuffle_front(c, k, state)
    return state, c[:k].astype(np.int32)


class UncertaintyIndex:
    """Beta(1 + hits, 1 + misses) posterior of each stimulus' step-1 hit rate.

    Assignments whose results are not in yet count as pending annotations at
    the current posterior mean, so that simultaneous participants do not all
    chase the same stimuli.
    """

    def __init__(self, n: int) -> None:
        self.alpha = np.ones(n)
        self.beta = np.ones(n)
        self.pending = np.zeros(n)

    def variance(self) -> np.ndarray:
        mean = self.alpha / (self.alpha + self.beta)
        a = self.alpha + self.pending * mean
        b = self.beta + self.pending * (1.0 - mean)
        n = a + b
        return a * b / (n * n * (n + 1.0))

    def most_uncertain(self, pool: int, jitter: np.ndarray) -> np.ndarray:
        """The ``pool`` stimuli of largest posterior variance (exact ties broken by ``jitter``)."""
        key = -(self.variance() + 1e-12 * jitter)
        return np.argpartition(key, pool - 1)[:pool].astype(np.int32)


@dataclass
class LaterStep:
    """Who plays a later step: step-1 row indices, delays, and their new stimuli."""

    rows: np.ndarray  # int64[n]: participant ids (== their step-1 row)
    delay_s: np.ndarray  # float64[n]: time after the end of the previous step
    new_items: np.ndarray  # int32[n, n_new]: new stimuli, in item-group order
    tested: np.ndarray | None = (
        None  # int32[n, k]: step-1 items picked for testing (pick least_annotated)
    )
    pick: LaterPick | None = None  # the pick left to the simulator (counts: kept)
    came_back: int = 0  # who came back (and played the step before): ``rows`` before any quota


@dataclass(frozen=True, eq=False)
class LaterPick:
    """A later step's ``pick: least_annotated`` with ``counts: kept``, left to the simulator:
    it picks for ``every`` participants at a time in this order (:func:`_pick_least`, the
    counts carried over), plays and judges their sessions, and withdraws the tests of those
    the step's filters drop before it picks for the next ones."""

    order: np.ndarray  # int64[n]: the returning participants in the pick's order
    videos: np.ndarray  # int32[n, m]: their eligible step-1 videos, in that order
    keys: np.ndarray  # float64[n, m]: their tie-break keys
    eligible: np.ndarray  # int32[m]: the step-1 item places those videos fill
    count: int  # items tested per participant
    weight: np.ndarray  # float64[V]: demand (ones without)
    cap: float  # the floor: ranks above it are ties
    every: int  # participants picked for, and judged, at a time
    ahead: int = 0  # the look-ahead rank (AHEAD), 0: none
    to_come: np.ndarray | None = None  # float64[V]: viewers to come before the first pick
    scale: np.ndarray | None = None  # float64[n]: each row's weight of the viewers to come
    share: float = 0.0  # expected share of a viewer's eligible items she is tested on


@dataclass
class Plan:
    n_participants: int
    arrival_s: np.ndarray  # float64[P]
    step1_items: np.ndarray  # int32[P, n_items of step 1]
    later: list[LaterStep] = field(default_factory=list)
    annotation_counts: np.ndarray | None = None  # int32[V]: step-1 target assignments


def _step1_target_mask(protocol: Protocol) -> np.ndarray:
    step = protocol.steps[0]
    mask = []
    for g in step.items:
        mask += [g.role == "target" and g.tested] * g.count
    return np.array(mask, dtype=bool)


def first_verdict_s(protocol: Protocol, min_press_s: float = 0.0) -> float:
    """A lower bound of a step-1 session's length (a press takes at least ``min_press_s``):
    no session's verdict is due sooner."""
    st, step = protocol.stimuli, protocol.steps[0]
    shortest = min(min_press_s, st.duration_s) if st.response_ends_presentation else st.duration_s
    k = step.stop_after_vigilance_misses or 0
    return (min(k, step.length) if k > 0 else step.length) * (shortest + st.gap_s)


# --------------------------------------------------------------------------- selection policies
class SelectionPolicy:
    """How a participant's step-1 stimuli are chosen at the moment she starts.

    A policy is the protocol's ``selection.kind``, made a registry entry
    (:data:`SELECTION_POLICIES`) like the score corrections and forgetting laws. The campaign
    calls :meth:`choose` when a participant starts (``stream``: her own random stream, whose
    draws the policy may use), :meth:`assigned` once her stimuli are recorded, :meth:`tick`
    after every arrival, and :meth:`finish` when recruitment ends. ``index`` holds the
    annotation counts of the assignments made so far (every policy keeps it: the campaign's
    stop rule and :attr:`Plan.annotation_counts` read it).

    A policy whose choices depend on nothing but the arrival order and the sessions' verdicts
    says so (:meth:`in_order`): its campaign is then planned in arrival order by one numba
    loop (:func:`_plan_in_order`, which plays it as ``least_annotated`` counting what
    :meth:`counting` says, or as ``uniform`` where :attr:`uniform`), tested equal to the simpy
    engine byte for byte; the others run on simpy.
    """

    #: the arrival-order loop draws at random among all stimuli instead of the least annotated
    uniform = False

    @classmethod
    def in_order(cls, spec) -> bool:
        """True when the arrival-order engine can plan the campaign: no choice depends on a
        session's results beyond its verdict (see :meth:`counting`)."""
        return False

    @classmethod
    def counting(cls, spec) -> str:
        """What the annotation counts count in the arrival-order engine: ``"assigned"`` (each
        assignment when made), ``"kept"`` (a dropped participant's withdrawn at her verdict)
        or ``"received"`` (a kept participant's added at her verdict)."""
        return "assigned"

    @classmethod
    def feedback(cls, spec) -> str | None:
        """The simulator's feedback the policy needs: ``"judge"`` (each step-1 session's end
        and verdict), ``"observe"`` (its results) or None."""
        return None

    def __init__(self, spec, campaign: _Campaign) -> None:
        self.spec, self.c = spec, campaign

    def choose(self, p: int, stream: PyStream, now: float) -> np.ndarray:
        raise NotImplementedError

    def assigned(self, p: int, chosen: np.ndarray, now: float) -> None:
        """After ``chosen`` became participant ``p``'s step-1 stimuli."""

    def tick(self, now: float) -> None:
        """After an arrival."""

    def finish(self) -> None:
        """When recruitment has ended."""


class LeastAnnotatedPolicy(SelectionPolicy):
    """At random among the ``pool`` least-annotated (VideoMem); ``counts: kept`` withdraws
    the assignments of a participant whom step 1's filters drop when her session ends;
    ``counts: received`` counts a participant's annotations only when her session ends, and
    only if the filters keep her."""

    @classmethod
    def in_order(cls, spec) -> bool:
        # kept and received counts wait for verdicts, which the in-order engine applies too,
        # draws a later pool's places apart as this policy does, and takes a non-returner's
        # showings off its count when her window closes (later_counts: returning)
        return True

    @classmethod
    def counting(cls, spec) -> str:
        return getattr(spec, "counts", "assigned")

    @classmethod
    def feedback(cls, spec) -> str | None:
        return None if cls.counting(spec) == "assigned" else "judge"

    def __init__(self, spec, campaign: _Campaign) -> None:
        super().__init__(spec, campaign)
        # later_pool: the places a later step picks from, balanced on how often each stimulus
        # was shown in them (with the selection's demand), the rest from the annotation pool
        self.later: np.ndarray | None = None
        places = later_pick_places(campaign.protocol)
        if getattr(spec, "later_pool", None) is not None and places:
            self.later = np.array(places, dtype=np.int64)
            rest = np.ones(campaign.k1, dtype=bool)
            rest[self.later] = False
            self.rest = np.flatnonzero(rest)
            self.shown = AnnotationIndex(
                campaign.n_videos, campaign.items1.shape[0], campaign.index.demand
            )
            self.mark = np.zeros(campaign.n_videos, dtype=np.int64)
        self.received = spec.counts == "received"
        self.kept_only = spec.counts == "kept" or self.received
        # later_counts returning: (window closes, p, shown videos) of participants who will
        # not come back, taken off the later pool's count then
        self.returning = self.later is not None and spec.later_counts == "returning"
        self.closes: list = []
        steps = campaign.protocol.steps
        self.window_s = float(steps[1].delay_h[1]) * 3600.0 if len(steps) > 1 else 0.0
        if self.kept_only and campaign.judge is None:
            raise UserError(
                f"counts: {spec.counts} needs the simulator's feedback", path=campaign.name
            )
        self.unjudged: list[int] = []  # assigned participants whose step 1 is not judged yet
        # heap of (end_s, p, targets): at the session's end, the withdrawal of a dropped
        # participant's annotations (kept), or the count of a kept one's (received)
        self.due: list = []
        self.every_s = (spec.counts_every_h or 0.0) * 3600.0
        # counts_every_participants: a check at the arrival of participants K, 2K, ...; the
        # verdicts of the sessions ended by then wait in `waiting` (end_s, p, targets)
        self.every_p = getattr(spec, "counts_every_participants", None) or 0
        # counts_delay_participants: a verdict whose session ended by participant p's arrival
        # is counted at participant p + D's; `delayed` holds (p + D, p, targets) in that order
        self.delay_p = getattr(spec, "counts_delay_participants", None) or 0
        self.waiting: list = []
        self.delayed: list = []
        self.arrived = 0
        self.verdict_after_s = (
            first_verdict_s(campaign.protocol, campaign.min_press_s) if self.kept_only else 0.0
        )

    def settle(self, now: float, check: bool = False) -> None:
        """Apply the verdicts of every session that ended by ``now`` (with
        ``counts_every_participants``: only at a ``check``; with ``counts_delay_participants``:
        at the arrival D after the first at or after the session's end; all of them at ``now``
        = inf)."""
        c = self.c
        if self.unjudged and c.arrival[self.unjudged[0]] + self.verdict_after_s <= now:
            ps = np.array(self.unjudged, dtype=np.int64)
            self.unjudged.clear()
            ends, kept = c.judge(ps, c.items1[ps], c.arrival[ps])
            if self.returning:
                for i in np.flatnonzero(~c.comes_back[ps]).tolist():
                    due = float(ends[i]) + self.window_s
                    heapq.heappush(self.closes, (due, int(ps[i]), c.items1[ps[i]][self.later]))
            for i in np.flatnonzero(kept if self.received else ~kept).tolist():
                due = float(ends[i])
                targets = c.items1[ps[i]][c.target_mask]
                if self.every_p or self.delay_p:  # at a later arrival, whenever it comes
                    self.waiting.append((due, int(ps[i]), targets))
                    continue
                if self.every_s > 0.0:  # at the first check after the session's end
                    due = float(np.ceil(due / self.every_s) * self.every_s)
                heapq.heappush(self.due, (due, int(ps[i]), targets))
        if self.delay_p and self.waiting:
            # the verdicts of the sessions ended by this arrival: counted D arrivals later
            last = self.arrived - 1  # the participant arriving now
            self.delayed.extend((last + self.delay_p, p, t) for _, p, t in self._ended_by(now))
        upto = np.inf if now == np.inf else self.arrived - 1
        if self.delayed and self.delayed[0][0] <= upto:
            ready = [w for w in self.delayed if w[0] <= upto]  # in stamp order: a prefix
            self.delayed = self.delayed[len(ready) :]
            for _, p, targets in sorted(ready, key=lambda w: w[1]):
                heapq.heappush(self.due, (now, p, targets))
        if self.waiting and (check or now == np.inf):  # with checks (a delay left none)
            for _, p, targets in self._ended_by(now):
                heapq.heappush(self.due, (now, p, targets))
        while self.due and self.due[0][0] <= now:
            targets = heapq.heappop(self.due)[2]
            if self.received:
                c.index.add(targets)
            else:
                c.index.remove(targets)
        while self.closes and self.closes[0][0] <= now:
            self.shown.remove(heapq.heappop(self.closes)[2])

    def _ended_by(self, now: float) -> list:
        """The waiting verdicts of the sessions ended by ``now``, taken out of ``waiting``, in
        participant order (as the heap pops ties)."""
        ready = sorted((w for w in self.waiting if w[0] <= now), key=lambda w: w[1])
        self.waiting = [w for w in self.waiting if w[0] > now]
        return ready

    def choose(self, p: int, stream: PyStream, now: float) -> np.ndarray:
        if self.kept_only:
            self.settle(now)
        index = self.c.index
        if self.later is not None:
            return self._choose_apart(p, stream)
        state, chosen = select_least_annotated(
            index.order, index.start, self.spec.pool, self.c.k1, np.uint64(stream.state)
        )
        stream.state = int(state)
        return chosen

    def _choose_apart(self, p: int, stream: PyStream) -> np.ndarray:
        """``later_pool``: the other places from the annotation pool, then the places a later
        step picks from among the least shown in them, none twice."""
        index, shown = self.c.index, self.shown
        chosen = np.empty(self.c.k1, dtype=np.int32)
        state, rest = select_least_annotated(
            index.order, index.start, self.spec.pool, self.rest.size, np.uint64(stream.state)
        )
        self.mark[rest] = p + 1
        state, later = _select_least_unmarked(
            shown.order,
            shown.start,
            self.spec.later_pool,
            self.later.size,
            self.mark,
            p + 1,
            np.uint64(state),  # numba hands the state back as a Python int
        )
        stream.state = int(state)
        chosen[self.rest] = rest
        chosen[self.later] = later
        return chosen

    def assigned(self, p: int, chosen: np.ndarray, now: float) -> None:
        if self.later is not None:
            self.shown.add(chosen[self.later])
        if self.received:  # the campaign counted the assignment; it counts once received
            self.c.index.remove(chosen[self.c.target_mask])
        if self.kept_only:
            self.unjudged.append(p)

    def tick(self, now: float) -> None:
        if self.kept_only:
            p = self.arrived  # the participant who has just arrived (before her selection)
            self.arrived += 1
            self.settle(now, check=self.every_p > 0 and p > 0 and p % self.every_p == 0)

    def finish(self) -> None:
        if self.kept_only:
            self.settle(np.inf)  # the counts left are those of kept annotations


class UniformPolicy(SelectionPolicy):
    """Uniformly among all stimuli."""

    uniform = True

    @classmethod
    def in_order(cls, spec) -> bool:
        return True

    def choose(self, p: int, stream: PyStream, now: float) -> np.ndarray:
        state, chosen = select_uniform(
            self.c.n_videos, self.c.k1, np.empty(0, np.int32), np.uint64(stream.state)
        )
        stream.state = int(state)
        return chosen


class AdaptivePolicy(SelectionPolicy):
    """Uniformly among the ``pool`` stimuli whose hit rate is most uncertain given the
    sessions that have ended (:class:`UncertaintyIndex`)."""

    @classmethod
    def feedback(cls, spec) -> str | None:
        return "observe"

    def __init__(self, spec, campaign: _Campaign) -> None:
        super().__init__(spec, campaign)
        if campaign.observe is None:
            raise UserError(
                "the adaptive policy needs the simulator's feedback", path=campaign.name
            )
        self.uncertain = UncertaintyIndex(campaign.n_videos)
        self.results: list = []  # heap of (end_s, p, target videos, hits) not yet known

    def release(self, now: float) -> None:
        u = self.uncertain
        while self.results and self.results[0][0] <= now:
            _, _, videos, hits = heapq.heappop(self.results)
            u.alpha[videos] += hits
            u.beta[videos] += 1.0 - hits
            u.pending[videos] -= 1.0

    def choose(self, p: int, stream: PyStream, now: float) -> np.ndarray:
        self.release(now)
        jitter = np.random.default_rng(stream.u64()).random(self.c.n_videos)
        pool = self.uncertain.most_uncertain(self.spec.pool, jitter)
        state, chosen = select_from(pool, self.c.k1, np.uint64(stream.state))
        stream.state = int(state)
        return chosen

    def assigned(self, p: int, chosen: np.ndarray, now: float) -> None:
        end_s, videos, hits = self.c.observe(p, chosen, now)
        self.uncertain.pending[videos] += 1.0
        heapq.heappush(self.results, (end_s, p, videos, hits.astype(np.float64)))


#: the protocol's ``selection.kind`` -> its policy; a new policy is one class and one entry
SELECTION_POLICIES: dict[str, type[SelectionPolicy]] = {
    "least_annotated": LeastAnnotatedPolicy,
    "uniform": UniformPolicy,
    "adaptive": AdaptivePolicy,
}


@dataclass
class _Campaign:
    """What the policies share: the protocol's sizes, the assignments so far, the feedback."""

    protocol: Protocol
    n_videos: int
    k1: int
    index: AnnotationIndex
    arrival: np.ndarray  # float64[max_p]
    items1: np.ndarray  # int32[max_p, k1]
    target_mask: np.ndarray  # bool[k1]: step-1 items that are tested targets
    observe: object = None
    judge: object = None
    min_press_s: float = 0.0
    comes_back: np.ndarray | None = None  # bool[max_p]: returns for step 2 (drawn at arrival)

    @property
    def name(self) -> str:
        return self.protocol.name


# --------------------------------------------------------------------------- later-step picks
@dataclass
class LeastTestedPick:
    """A later step's ``pick: least_annotated``: each returning participant's tested items are
    those of her eligible step-1 items tested least often so far (/ their demand).

    The picks are made once the campaign has run, in order of the participants' return draws
    (not return times): a higher return probability only appends participants to that order,
    so the picks of the others do not change (common random numbers hold in it). A look-ahead
    (``ahead``, :func:`_pick_ahead`) ranks by the viewers still to come in that order as well,
    which the appended participants change: it gives that up.
    """

    eligible: np.ndarray  # int32[m]: step-1 item places the group draws from
    count: int  # items tested per participant
    weight: np.ndarray | None  # float64[V]: demand, or None
    rows: list = field(default_factory=list)  # (u_return, p, tie-break keys, eligible videos)
    cap: float = np.inf  # the source's floor: ranks above it are ties
    every: int = 0  # counts kept: participants judged at a time (0: counts assigned)
    ahead: int = 0  # the source's lookahead (AHEAD code), 0: none
    viewers: str = "returning"  # whom the look-ahead counts as viewers to come
    share: float = 0.0  # the look-ahead's expected share of a viewer's items tested

    def look_ahead(self, videos, u, items1, return_probability, n_videos):
        """The look-ahead's viewers to come (float64[V]) and each row's weight of them
        (float64[n]), for rows ``videos`` in the pick's order with return draws ``u``:
        ``returning`` counts the rows themselves (who will come back), weight 1; ``expected``
        every step-1 participant who had the video among her eligible items (``items1``),
        weighted by the share of those not yet picked for expected to return,
        ``(return_probability - u) / (1 - u)``."""
        if self.viewers == "returning":
            return (
                np.bincount(videos.ravel(), minlength=n_videos).astype(np.float64),
                np.ones(videos.shape[0]),
            )
        seen = np.asarray(items1)[:, self.eligible].ravel()
        u = np.asarray(u, dtype=np.float64)
        scale = np.maximum(return_probability - u, 0.0) / np.maximum(1.0 - u, 1e-12)
        return np.bincount(seen, minlength=n_videos).astype(np.float64), scale

    def place(self, videos, keys, n_videos, to_come=None, scale=None):
        """Each row's tested places, counting tests from zero (the kernel of the pick)."""
        w = self.weight if self.weight is not None else np.ones(n_videos)
        tests = np.zeros(n_videos, np.int32)
        if not self.ahead:
            return _pick_least_sorted(videos, keys, self.count, tests, w, self.cap)
        return _pick_ahead(
            videos, keys, self.count, tests, w, self.cap, to_come, scale, self.share, self.ahead
        )

    def draw_keys(self, stream: PyStream, p: int, u_return: float, chosen: np.ndarray) -> None:
        """At the participant's return: her tie-break keys, drawn from her own stream."""
        state, keys = _uniforms(np.uint64(stream.state), self.eligible.size)
        stream.state = int(state)
        self.rows.append((u_return, p, keys, chosen[self.eligible]))

    def later(self, order, videos, keys, n_videos: int, to_come=None, scale=None) -> LaterPick:
        """The pick's inputs (participants in the pick's order, their eligible videos and
        keys), left to the simulator."""
        return LaterPick(
            ahead=self.ahead,
            to_come=to_come,
            scale=scale,
            share=self.share,
            order=np.asarray(order, dtype=np.int64),
            videos=np.ascontiguousarray(videos, dtype=np.int32),
            keys=np.ascontiguousarray(keys, dtype=np.float64),
            eligible=self.eligible,
            count=self.count,
            weight=self.weight if self.weight is not None else np.ones(n_videos),
            cap=self.cap,
            every=self.every,
        )

    def pick(
        self, n_videos: int, items1=None, return_probability: float = 0.0
    ) -> dict[int, np.ndarray] | LaterPick:
        """Participant -> the step-1 item places she is tested on; with counts kept, the
        :class:`LaterPick` the simulator makes. ``items1`` (every participant's step-1 items)
        and ``return_probability`` serve the ``expected`` look-ahead."""
        rows = sorted(self.rows, key=lambda t: (t[0], t[1]))
        m = self.eligible.size
        vids = np.array([t[3] for t in rows], dtype=np.int32).reshape(-1, m)
        keys = np.array([t[2] for t in rows], dtype=np.float64).reshape(-1, m)
        to_come = scale = None
        if self.ahead:
            u = np.array([t[0] for t in rows], dtype=np.float64)
            to_come, scale = self.look_ahead(vids, u, items1, return_probability, n_videos)
        if self.every:
            return self.later([t[1] for t in rows], vids, keys, n_videos, to_come, scale)
        if self.ahead:
            places = self.place(vids, keys, n_videos, to_come, scale)
        else:
            w = self.weight if self.weight is not None else np.ones(n_videos)
            places = _pick_least(vids, keys, self.count, np.zeros(n_videos, np.int32), w, self.cap)
        return {t[1]: self.eligible[places[i]] for i, t in enumerate(rows)}


def _pick_demand(protocol: Protocol, source, n_videos: int, seed: int, s: int):
    """Step ``s``'s pick demands: its own (``source.demand``, stream ``(seed, DEMAND, s)``),
    times the selection's (stream ``(seed, DEMAND, 0)``) to the power ``source.demand_follows``
    where one is given; None when neither applies."""
    own = draw_demand(source.demand, n_videos, seed, s)
    w = source.demand_follows
    if not w:
        return own
    followed = draw_demand(protocol.selection.demand, n_videos, seed, 0) ** float(w)
    return followed if own is None else own * followed


def _later_picks(protocol: Protocol, seed: int) -> dict[int, LeastTestedPick]:
    """Later steps whose tested items the campaign picks (``pick: least_annotated``); the
    ``random`` pick is drawn by the simulator once step 1 has been played."""
    steps, n_videos = protocol.steps, protocol.stimuli.count
    picks = {}
    for s, step in enumerate(steps[1:], start=1):
        for g in step.items:
            if not isinstance(g.source, str) and g.source.pick == "least_annotated":
                if g.source.step != 1:
                    raise UserError(
                        f"steps.{s}: pick least_annotated draws from step 1 only",
                        path=protocol.name,
                    )
                role_ok = [
                    h.role in g.source.roles and isinstance(h.source, str) for h in steps[0].items
                ]
                eligible = np.flatnonzero(np.repeat(role_ok, [h.count for h in steps[0].items]))
                picks[s] = LeastTestedPick(
                    eligible.astype(np.int32),
                    g.count,
                    _pick_demand(protocol, g.source, n_videos, seed, s),
                    cap=np.inf if g.source.floor is None else float(g.source.floor),
                    every=g.source.counts_every if g.source.counts == "kept" else 0,
                    ahead=AHEAD.get(g.source.lookahead, 0),
                    viewers=g.source.lookahead_viewers,
                    share=(
                        g.count / eligible.size
                        if g.source.lookahead_share is None
                        else g.source.lookahead_share
                    ),
                )
    return picks


def in_order(protocol: Protocol) -> bool:
    """The protocol's campaign needs no event engine: its selection policy's choices depend on
    nothing but the arrival order and the sessions' verdicts (:meth:`SelectionPolicy.in_order`:
    ``least_annotated``, whatever it counts, and ``uniform``)."""
    sel = protocol.selection
    return SELECTION_POLICIES[sel.kind].in_order(sel)


def feedback(protocol: Protocol) -> str | None:
    """The simulator's feedback the protocol's campaign needs (:meth:`SelectionPolicy.feedback`):
    ``"judge"``, ``"observe"`` or None."""
    sel = protocol.selection
    return SELECTION_POLICIES[sel.kind].feedback(sel)


def plan_campaign(
    protocol: Protocol,
    seed: int,
    return_probability: float,
    observe=None,
    judge=None,
    min_press_s: float = 0.0,
    engine: str = "auto",
) -> Plan:
    """Run the campaign and return its plan.

    ``engine``: ``"auto"`` runs the campaign in arrival order in numba where the policy allows
    (:func:`in_order`) and as simpy events otherwise; ``"simpy"`` always as simpy events (the
    reference the in-order engine is tested equal to, byte for byte); ``"in_order"`` refuses a
    policy that needs events. The in-order engine relies on no step-1 session ending sooner
    than :func:`first_verdict_s`; should the judge report one that does (a rounding of a
    session's sum), ``"auto"`` plans the campaign on simpy and ``"in_order"`` refuses.

    ``observe(p, items)`` (needed by the ``adaptive`` policy) plays participant
    ``p``'s step 1 with those items and returns ``(end_s, target_videos, hits)``:
    the results become known to the policy once the session has ended.
    ``judge(ps, items, starts)`` (needed by ``least_annotated`` with ``counts: kept`` or
    ``received``) plays the step 1 of participants ``ps`` and returns their ``(end_s, kept)``:
    a participant's step-1 target annotations are withdrawn from the count when her session
    ends, if step 1's filters drop her (``kept``; ``received``: counted then, if they keep
    her). Each participant's results come from her own random streams, so which of them are
    judged together changes nothing: simpy judges the sessions of all participants assigned
    so far at once when the oldest of them could have ended (a session lasts at least
    :func:`first_verdict_s`), the in-order engine those of a window of arrivals at a time, and
    a verdict takes effect before the next selection after the session's end (with
    ``counts_every_h``: after the first check at or after it).
    """
    if engine not in ("auto", "simpy", "in_order"):
        raise ValueError(f"engine must be auto, simpy or in_order, got {engine!r}")
    if engine == "in_order" and not in_order(protocol):
        raise ValueError(f"the {protocol.selection.kind} policy needs the simpy engine")
    if engine != "simpy" and in_order(protocol):
        try:
            return _plan_in_order(protocol, seed, return_probability, judge, min_press_s)
        except _VerdictTooSoon:
            # a session shorter than first_verdict_s by a rounding: the windows relied on the
            # bound, so the events decide (simpy handles any order of verdicts)
            if engine == "in_order":
                raise ValueError("a session ended before first_verdict_s: use simpy") from None
    return _plan_simpy(protocol, seed, return_probability, observe, judge, min_press_s)


def _plan_simpy(protocol, seed, return_probability, observe, judge, min_press_s) -> Plan:
    """The campaign as simpy events (see :func:`plan_campaign`)."""
    import simpy  # only the policies that wait for sessions to end need the event engine

    n_videos = protocol.stimuli.count
    steps = protocol.steps
    k1 = steps[0].n_new
    if k1 != sum(g.count for g in steps[0].items):
        raise UserError("step 1 cannot draw items from an earlier step", path=protocol.name)
    sel = protocol.selection
    stop = protocol.campaign.stop
    max_p = stop.count if stop.kind == "participants" else stop.max_participants
    min_annot, below_ok = _stop_rule(stop, n_videos)
    rate_per_s = protocol.campaign.arrivals.rate_per_h / 3600.0

    c = _Campaign(
        protocol=protocol,
        n_videos=n_videos,
        k1=k1,
        index=AnnotationIndex(
            n_videos, max_p, draw_demand(getattr(sel, "demand", None), n_videos, seed, 0)
        ),
        arrival=np.empty(max_p, dtype=np.float64),
        items1=np.empty((max_p, k1), dtype=np.int32),
        target_mask=_step1_target_mask(protocol),
        observe=observe,
        judge=judge,
        min_press_s=min_press_s,
        comes_back=np.zeros(max_p, dtype=np.bool_),
    )
    policy = SELECTION_POLICIES[sel.kind](sel, c)
    picks = _later_picks(protocol, seed)
    later_rows: list[list[int]] = [[] for _ in steps[1:]]
    later_u: list[list[float]] = [[] for _ in steps[1:]]
    later_delay: list[list[float]] = [[] for _ in steps[1:]]
    later_new: list[list[np.ndarray]] = [[] for _ in steps[1:]]
    nominal_s = [s.length * protocol.presentation_s for s in steps]
    done = {"n": 0}
    env = simpy.Environment()

    def participant(p: int):
        # Python-side draws use PyStream, numba-side the same stream's state (same bits)
        st = PyStream(stream_key_py(seed, _rng.CAMPAIGN, p + 1))
        chosen = policy.choose(p, st, env.now)
        c.items1[p] = chosen
        c.index.add(chosen[c.target_mask])
        policy.assigned(p, chosen, env.now)
        seen = chosen
        # Decisions come from the participant's own stream, in a fixed order, so they can be
        # drawn as soon as they are due; simpy only has to wake her when she comes back.
        wait = nominal_s[0]
        for s in range(1, len(steps)):
            u_return = st.uniform()
            if u_return >= return_probability:
                return
            if s == 1:
                c.comes_back[p] = True
            lo, hi = steps[s].delay_h
            delay = (lo + st.uniform() * (hi - lo)) * 3600.0
            yield env.timeout(wait + delay)
            state, new = select_uniform(n_videos, steps[s].n_new, seen, np.uint64(st.state))
            st.state = int(state)
            if s in picks:  # tie-break keys now; the pick itself once everyone is known
                picks[s].draw_keys(st, p, u_return, chosen)
            seen = np.concatenate([seen, new])
            later_u[s - 1].append(u_return)
            later_rows[s - 1].append(p)
            later_delay[s - 1].append(delay)
            later_new[s - 1].append(new)
            wait = nominal_s[s]

    def arrivals():
        st = PyStream(stream_key_py(seed, _rng.CAMPAIGN, 0))
        p = 0
        while p < max_p:
            yield env.timeout(-np.log1p(-st.uniform()) / rate_per_s)
            c.arrival[p] = env.now
            env.process(participant(p))
            p += 1
            done["n"] = p
            policy.tick(env.now)
            if min_annot and c.index.few_below(min_annot, below_ok):
                break

    env.process(arrivals())
    env.run()
    policy.finish()
    n = done["n"]
    admitted = np.ones(n, dtype=np.bool_)
    came_back = []
    for s in range(1, len(steps)):  # a later step's quota (max_share), then the next's
        rows = np.array(later_rows[s - 1], dtype=np.int64)
        order = np.argsort(rows, kind="stable")
        u = np.array(later_u[s - 1], dtype=np.float64)
        play, back = _admit(rows[order], u[order], admitted, steps[s].max_share)
        came_back.append(back)
        admitted = np.zeros(n, dtype=np.bool_)
        admitted[play] = True
        keep = admitted[rows]  # in return order, as the lists are
        later_rows[s - 1] = list(rows[keep])
        later_delay[s - 1] = [d for d, k in zip(later_delay[s - 1], keep) if k]
        later_new[s - 1] = [v for v, k in zip(later_new[s - 1], keep) if k]
        if s in picks:
            picks[s].rows = [t for t in picks[s].rows if admitted[t[1]]]
    picked = {s: pick.pick(n_videos, c.items1[:n], return_probability) for s, pick in picks.items()}
    later = []
    for s in range(1, len(steps)):
        rows = np.array(later_rows[s - 1], dtype=np.int64)
        order = np.argsort(rows, kind="stable")  # participant order, not return order
        k = steps[s].n_new
        new = np.array(later_new[s - 1], dtype=np.int32).reshape(-1, k)
        tested = lpick = None
        if s in picks and isinstance(picked[s], LaterPick):
            lpick = picked[s]
        elif s in picks:
            tested = np.array([picked[s][p] for p in rows[order]], dtype=np.int32).reshape(
                -1, picks[s].count
            )
        later.append(
            LaterStep(
                rows=rows[order],
                delay_s=np.array(later_delay[s - 1], dtype=np.float64)[order],
                new_items=new[order],
                tested=tested,
                pick=lpick,
                came_back=came_back[s - 1],
            )
        )
    return Plan(
        n_participants=n,
        arrival_s=c.arrival[:n].copy(),
        step1_items=c.items1[:n].copy(),
        later=later,
        annotation_counts=c.index.counts,
    )


# --------------------------------------------------------------------------- in arrival order
@njit(cache=True)
def _arrival_uniforms(seed, n):
    return _uniforms(stream_key(seed, _rng.CAMPAIGN, 0), n)[1]


@njit(cache=True)
def _select_uniform_marked(n, k, mark, stamp, state):
    """:func:`select_uniform` with the excluded stimuli marked ``mark[v] == stamp`` instead of
    listed (the same draws and the same result, without scanning the exclusions)."""
    out = np.empty(k, dtype=np.int32)
    got = 0
    while got < k:
        state, v = next_below(state, n)
        if mark[v] != stamp:
            mark[v] = stamp
            out[got] = v
            got += 1
    return state, out


@njit(cache=True)
def _apply_verdicts(
    upto, due_t, due_p, ptr, add, items1, target_places, counts, keys, demand, order, where, start
):
    """The verdicts due at or before ``upto`` from ``ptr`` on (``due_t``/``due_p`` sorted by
    ``(due, participant)``, as simpy's heap pops them): each participant's step-1 targets
    added to the counts (``add``: received) or withdrawn (kept). Returns the next ``ptr``."""
    has_demand = demand.shape[0] > 0
    while ptr < due_t.shape[0] and due_t[ptr] <= upto:
        targets = items1[due_p[ptr]][target_places]
        if add:
            if has_demand:
                _add_demanded(counts, keys, demand, order, where, start, targets)
            else:
                _add_annotations(counts, order, where, start, targets)
        elif has_demand:
            _remove_demanded(counts, keys, demand, order, where, start, targets)
        else:
            _remove_annotations(counts, order, where, start, targets)
        ptr += 1
    return ptr


@njit(cache=True)
def _campaign_in_order(
    seed,
    p0,
    p1,
    arrival,
    min_annot,
    below_ok,
    n_high,
    n_videos,
    uniform_policy,
    counting,
    due_t,
    due_p,
    pool,
    k1,
    target_places,
    counts,
    keys,
    demand,
    order,
    where,
    start,
    mark,
    tie_mark,
    places,
    later_pool,
    later_places,
    rest_places,
    s_counts,
    s_keys,
    s_order,
    s_where,
    s_start,
    close_t,
    close_p,
    return_probability,
    n_new,
    delay_lo_h,
    delay_hi_h,
    pick_eligible,
    pick_m,
    items1,
    returns,
    ret_delay,
    ret_new,
    ret_u,
    ret_keys,
):
    """Participants ``p0`` to ``p1 - 1`` in arrival order: selection, the index's counts, her
    returns. Returns ``(n, ptr, cptr, stopped)``: participants planned so far, verdicts
    applied (of ``due_t``), window closes applied (of ``close_t``), whether the stop rule
    ended the campaign.

    The same draws, from the same streams and in the same order, as the simpy campaign's
    ``participant`` process. ``counting``: 0 assigned, 1 kept, 2 received. Before each
    arrival the verdicts due by then are applied (simpy's ``tick``), then the stop rule is
    checked on those counts (the newcomer's process runs after the check: she is still
    planned); ``received`` counts an assignment and withdraws it at once, as simpy does (the
    order of the index's swaps decides its ties, so the draws). ``mark``, ``tie_mark`` (int64[V],
    stamps ``p + 1``) and ``places`` (the identity, restored) carry over from call to call.
    ``later_pool`` > 0: step 1's ``later_places`` are drawn apart, among the ``later_pool``
    stimuli least shown in them (the index ``s_*``), after the ``rest_places`` from the
    annotation pool, as :meth:`LeastAnnotatedPolicy._choose_apart` does. ``close_t``/``close_p``
    (sorted by ``(time, participant)``; ``later_counts: returning``): when a participant who
    does not come back has her step-1 showings in those places taken off the index ``s_*``,
    applied before each arrival after the verdicts, as simpy's ``settle`` does."""
    S = n_new.shape[0]
    has_demand = demand.shape[0] > 0
    ptr = 0
    cptr = 0
    for p in range(p0, p1):
        if counting != 0:
            ptr = _apply_verdicts(
                arrival[p],
                due_t,
                due_p,
                ptr,
                counting == 2,
                items1,
                target_places,
                counts,
                keys,
                demand,
                order,
                where,
                start,
            )
        while cptr < close_t.shape[0] and close_t[cptr] <= arrival[p]:
            lat = items1[close_p[cptr]][later_places]
            if has_demand:
                _remove_demanded(s_counts, s_keys, demand, s_order, s_where, s_start, lat)
            else:
                _remove_annotations(s_counts, s_order, s_where, s_start, lat)
            cptr += 1
        stop = False
        if min_annot > 0:
            stop = _few_below(counts, order, start, n_high, min_annot, below_ok)
        state = stream_key(seed, _rng.CAMPAIGN, p + 1)
        stamp = p + 1
        if uniform_policy:
            state, chosen = _select_uniform_marked(n_videos, k1, mark, stamp, state)
        elif later_pool > 0:
            state, rest = _select_least_scratch(
                order, start, pool, rest_places.shape[0], state, places, tie_mark, stamp
            )
            for j in range(rest.shape[0]):
                mark[rest[j]] = stamp
            state, lat = _select_least_unmarked(
                s_order, s_start, later_pool, later_places.shape[0], mark, stamp, state
            )
            chosen = np.empty(k1, dtype=np.int32)
            chosen[rest_places] = rest
            chosen[later_places] = lat
        else:
            state, chosen = _select_least_scratch(
                order, start, pool, k1, state, places, tie_mark, stamp
            )
        items1[p] = chosen
        if later_pool > 0:
            lat = chosen[later_places]
            if has_demand:
                _add_demanded(s_counts, s_keys, demand, s_order, s_where, s_start, lat)
            else:
                _add_annotations(s_counts, s_order, s_where, s_start, lat)
        targets = chosen[target_places]
        if has_demand:
            _add_demanded(counts, keys, demand, order, where, start, targets)
            if counting == 2:
                _remove_demanded(counts, keys, demand, order, where, start, targets)
        else:
            _add_annotations(counts, order, where, start, targets)
            if counting == 2:
                _remove_annotations(counts, order, where, start, targets)
        for j in range(k1):
            mark[chosen[j]] = stamp
        for s in range(1, S):
            state, u_return = next_uniform(state)
            if u_return >= return_probability:
                break
            state, u = next_uniform(state)
            lo = delay_lo_h[s]
            ret_delay[p, s] = (lo + u * (delay_hi_h[s] - lo)) * 3600.0
            state, new = _select_uniform_marked(n_videos, n_new[s], mark, stamp, state)
            ret_new[p, s, : n_new[s]] = new
            ret_u[p, s] = u_return  # the pick's order and a later step's quota
            if pick_m[s] > 0:
                for j in range(pick_m[s]):
                    state, ret_keys[p, s, j] = next_uniform(state)
            returns[p, s] = True
        if stop:
            return p + 1, ptr, cptr, True
    return p1, ptr, cptr, False


def _stop_rule(stop, n_videos: int) -> tuple[int, int]:
    """A ``min_annotations`` stop as ``(count, stimuli allowed below it)``; ``(0, 0)`` for
    a participant budget."""
    if stop.kind != "min_annotations":
        return 0, 0
    return stop.count, n_videos - stop.stimuli_needed(n_videos)


def _admit(rows, u_return, admitted, share) -> tuple[np.ndarray, int]:
    """The participants of ``rows`` (sorted) who play a later step, and how many came back:
    those admitted to the step before it, and of them, with a ``share`` (the step's
    ``max_share``), at most that share of the campaign's ``len(admitted)`` participants,
    rounded: those with the lowest return draws ``u_return`` (ties by participant), a random
    subset of those who come back, the same in both campaign engines."""
    keep = admitted[rows]
    rows, u_return = rows[keep], np.asarray(u_return)[keep]
    quota = rows.size if share is None else int(round(share * admitted.size))
    if rows.size <= quota:
        return rows, rows.size
    return np.sort(rows[np.lexsort((rows, u_return))[:quota]]), rows.size


class _VerdictTooSoon(Exception):
    """A session ended before :func:`first_verdict_s` (a rounding of its sum): the arrival
    windows of :func:`_plan_in_order` assumed it could not."""


_COUNTING = {"assigned": 0, "kept": 1, "received": 2}


def _plan_in_order(
    protocol: Protocol,
    seed: int,
    return_probability: float,
    judge=None,
    min_press_s: float = 0.0,
) -> Plan:
    """The campaign in arrival order (see :func:`plan_campaign`): the same plan as simpy's.

    With verdicts to count (``counts: kept`` or ``received``), the arrivals, drawn up front
    from their own stream, are cut into windows no verdict falls inside: a window opened by
    the arrival at ``t`` ends before ``t + first_verdict_s`` (the earliest any of its sessions
    can end), or before the first count check at or after that with ``counts_every_h`` or
    ``counts_every_participants``, or before the arrival ``counts_delay_participants`` after
    the first one at or after it. One numba call plans a window's participants, applying the
    verdicts due before each arrival; one ``judge`` call then plays their step 1, and their
    verdicts join the sorted list.
    """
    n_videos = protocol.stimuli.count
    steps = protocol.steps
    S = len(steps)
    k1 = steps[0].n_new
    if k1 != sum(g.count for g in steps[0].items):
        raise UserError("step 1 cannot draw items from an earlier step", path=protocol.name)
    sel = protocol.selection
    policy = SELECTION_POLICIES[sel.kind]
    counting = policy.counting(sel)
    if counting != "assigned" and judge is None:
        raise UserError(f"counts: {counting} needs the simulator's feedback", path=protocol.name)
    stop = protocol.campaign.stop
    max_p = stop.count if stop.kind == "participants" else stop.max_participants
    min_annot, below_ok = _stop_rule(stop, n_videos)
    rate_per_s = protocol.campaign.arrivals.rate_per_h / 3600.0
    index = AnnotationIndex(
        n_videos, max_p, draw_demand(getattr(sel, "demand", None), n_videos, seed, 0)
    )
    picks = _later_picks(protocol, seed)
    n_new = np.array([0] + [st.n_new for st in steps[1:]], dtype=np.int64)
    lo = np.array([0.0] + [float(st.delay_h[0]) for st in steps[1:]])
    hi = np.array([0.0] + [float(st.delay_h[1]) for st in steps[1:]])
    pick_m = np.zeros(S, dtype=np.int64)
    width = max([1] + [p.eligible.size for p in picks.values()])
    eligible = np.zeros((S, width), dtype=np.int64)
    for s, pick in picks.items():
        pick_m[s] = pick.eligible.size
        eligible[s, : pick.eligible.size] = pick.eligible
    later_new = max(1, int(n_new.max()))
    # only read where `returns` holds: left uninitialised (no page is touched in vain)
    items1 = np.empty((max_p, k1), dtype=np.int32)
    returns = np.zeros((max_p, S), dtype=np.bool_)
    ret_delay = np.empty((max_p, S))
    ret_new = np.empty((max_p, S, later_new), dtype=np.int32)
    ret_u = np.empty((max_p, S))
    ret_keys = np.empty((max_p, S, width if picks else 0))
    # arrival times as simpy accumulates them: now + gap, one arrival after the other
    gaps = -np.log1p(-_arrival_uniforms(np.uint64(seed), max_p)) / rate_per_s
    arrival = np.cumsum(gaps)
    target_places = np.flatnonzero(_step1_target_mask(protocol)).astype(np.int64)
    demand = index.demand if index.demand is not None else np.zeros(0)
    scratch = (
        np.zeros(n_videos, dtype=np.int64),  # mark
        np.zeros(n_videos, dtype=np.int64),  # tie_mark
        np.arange(max(int(getattr(sel, "pool", 0)), 1)),  # places
    )
    # selection.later_pool: the places a later step picks from, balanced on how often each
    # stimulus was shown in them (LeastAnnotatedPolicy._choose_apart)
    later_places = np.array(later_pick_places(protocol), dtype=np.int64)
    later_pool = int(getattr(sel, "later_pool", None) or 0) if later_places.size else 0
    rest = np.ones(k1, dtype=bool)
    rest[later_places] = False
    shown = AnnotationIndex(n_videos, max_p if later_pool else 0, index.demand)
    apart = (
        later_pool,
        later_places,
        np.flatnonzero(rest).astype(np.int64),
        shown.counts,
        shown.keys,
        shown.order,
        shown.where,
        shown.start,
    )
    due_t, due_p = np.empty(0), np.empty(0, dtype=np.int64)
    # later_counts returning: when non-returners' showings leave the later pool's count
    close_t, close_p = np.empty(0), np.empty(0, dtype=np.int64)
    returning = later_pool > 0 and getattr(sel, "later_counts", "shown") == "returning"
    window_s = float(steps[1].delay_h[1]) * 3600.0 if S > 1 else 0.0
    verdict_s = first_verdict_s(protocol, min_press_s) if counting != "assigned" else np.inf
    every_s = (getattr(sel, "counts_every_h", None) or 0.0) * 3600.0
    # counts_every_participants: checks at the arrivals of participants K, 2K, ... (known up
    # front); a verdict is due at the first of them at or after its session's end
    every_p = getattr(sel, "counts_every_participants", None) or 0
    checks = np.append(arrival[every_p::every_p], np.inf) if every_p else None
    # counts_delay_participants: a verdict is due at the arrival D participants after the first
    # arrival at or after its session's end
    delay_p = getattr(sel, "counts_delay_participants", None) or 0
    later_arrival = np.append(arrival, np.full(delay_p + 1, np.inf)) if delay_p else None

    def next_check(t):
        if every_s > 0.0:
            return np.ceil(t / every_s) * every_s
        if every_p:
            return checks[np.searchsorted(checks, t, side="left")]
        if delay_p:
            return later_arrival[np.searchsorted(arrival, t, side="left") + delay_p]
        return t

    def window(p0: int, p1: int, due_t, due_p, close_t, close_p):
        return _campaign_in_order(
            np.uint64(seed),
            p0,
            p1,
            arrival,
            min_annot,
            below_ok,
            int(np.count_nonzero(demand > 1.0)),
            n_videos,
            policy.uniform,
            _COUNTING[counting],
            due_t,
            due_p,
            int(getattr(sel, "pool", 0)),
            k1,
            target_places,
            index.counts,
            index.keys,
            demand,
            index.order,
            index.where,
            index.start,
            *scratch,
            *apart,
            close_t,
            close_p,
            float(return_probability),
            n_new,
            lo,
            hi,
            eligible,
            pick_m,
            items1,
            returns,
            ret_delay,
            ret_new,
            ret_u,
            ret_keys,
        )

    n, stopped = 0, False
    while n < max_p and not stopped:
        # no verdict of a participant arriving in [arrival[n], end) is due before `end`
        end = next_check(arrival[n] + verdict_s)
        p1 = min(max(int(np.searchsorted(arrival, end, side="left")), n + 1), max_p)
        p0 = n
        n, ptr, cptr, stopped = window(p0, p1, due_t, due_p, close_t, close_p)
        if counting == "assigned":
            continue
        ps = np.arange(p0, n, dtype=np.int64)
        ends, kept = judge(ps, items1[ps], arrival[ps])
        ends = np.asarray(ends, dtype=np.float64)
        if np.any(ends < arrival[ps] + verdict_s):
            raise _VerdictTooSoon
        kept = np.asarray(kept, dtype=bool)
        if returning:  # her window closes without her: session's end + the longest delay
            gone = np.flatnonzero(~returns[ps, 1])
            close_t = np.concatenate([close_t[cptr:], ends[gone] + window_s])
            close_p = np.concatenate([close_p[cptr:], ps[gone]])
            by = np.lexsort((close_p, close_t))  # (time, participant): simpy's heap order
            close_t, close_p = close_t[by], close_p[by]
        mine = np.flatnonzero(kept if counting == "received" else ~kept)
        due = next_check(ends[mine])  # at the first check after the session's end
        due_t = np.concatenate([due_t[ptr:], due])
        due_p = np.concatenate([due_p[ptr:], ps[mine]])
        by = np.lexsort((due_p, due_t))  # (due, participant): simpy's heap order
        due_t, due_p = due_t[by], due_p[by]
    if counting != "assigned":  # the verdicts still due once recruitment ended (simpy's finish)
        _apply_verdicts(
            np.inf,
            due_t,
            due_p,
            0,
            counting == "received",
            items1,
            target_places,
            index.counts,
            index.keys,
            demand,
            index.order,
            index.where,
            index.start,
        )
    later = []
    admitted = np.ones(n, dtype=np.bool_)
    for s in range(1, S):
        rows = np.flatnonzero(returns[:n, s]).astype(np.int64)
        rows, back = _admit(rows, ret_u[rows, s], admitted, steps[s].max_share)
        admitted = np.zeros(n, dtype=np.bool_)
        admitted[rows] = True
        tested = lpick = None
        if s in picks:
            pick = picks[s]
            by_draw = rows[np.lexsort((rows, ret_u[rows, s]))]  # (u_return, p), as simpy's pick
            videos = items1[by_draw][:, pick.eligible]
            keys = ret_keys[by_draw, s, : pick_m[s]]
            to_come = scale = None
            if pick.ahead:
                to_come, scale = pick.look_ahead(
                    videos, ret_u[by_draw, s], items1[:n], return_probability, n_videos
                )
            if pick.every:  # counts kept: the simulator picks as it plays
                lpick = pick.later(by_draw, videos, keys, n_videos, to_come, scale)
            else:
                places = pick.place(videos, keys, n_videos, to_come, scale)
                tested = np.empty((rows.size, pick.count), dtype=np.int32)
                tested[np.searchsorted(rows, by_draw)] = pick.eligible[places]
        later.append(
            LaterStep(
                rows=rows,
                delay_s=ret_delay[rows, s].copy(),
                new_items=ret_new[rows, s, : n_new[s]].copy(),
                tested=tested,
                pick=lpick,
                came_back=back,
            )
        )
    return Plan(
        n_participants=n,
        arrival_s=arrival[:n].copy(),
        step1_items=items1[:n].copy(),
        later=later,
        annotation_counts=index.counts,
    )
