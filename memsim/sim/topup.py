"""Top-up rounds after the campaign (``campaign.top_up``): new participants until every
stimulus has the floor of kept tests in the later step.

In: the campaign's last sessions (what each step's players saw and who the filters kept), the
protocol's ``campaign.top_up`` and a ``play`` callback that plays and judges one step for a
batch of participants (the engine's own: :func:`memsim.sim.simulate.simulate_arrays` plays
with the fused kernel, :func:`memsim.sim.simulate.simulate_stepwise` with
:func:`memsim.sim.simulate.play_step`). Out: a :class:`TopUpResult` (rounds, participants)
and the rows the callback wrote; both engines run this same planner, so their tables agree
byte for byte.

A round (:func:`run_top_up`):

* **plan**: the stimuli short of the floor and their deficits come from the kept tests so far
  (the campaign's, then each round's: the same verdicts as scoring's, a participant-step
  kept by that step's filters). ``n = max(ceil(largest deficit / q), ceil(viewers needed /
  c), min_batch)`` participants, ``q`` the campaign's kept later-step participants per
  step-1 start and ``c`` the short stimuli one participant can carry (step 1's filler places
  the later step tests from, at most its tests); each short stimulus is shown to
  ``ceil(deficit / q)`` of them, or to more when the round has places to spare (up to
  ``n c / short``, at most all ``n``). Each participant's step-1 filler places get the short
  stimuli needing most viewers first, the rest at random among the filler pool
  (``selection.later_pool``, else ``selection.pool``) of stimuli with the fewest kept
  later-step tests; step 1's other places at random among all stimuli (``targets:
  uniform``), or among the selection's pool of stimuli with the fewest kept step-1 tests /
  demand (``least``), or with the most kept step-1 tests (``most``: the tail of the counts,
  where one more test moves their distribution least).
* **play both steps**: step 1 at arrivals after the previous round's (or the campaign's) last
  session, at the campaign's arrival rate; who completes it returns with the return
  probability, within the later step's delay window; her tests are her step-1 fillers, the
  short ones first (largest deficit first), then those with the fewest kept tests; the later
  step's new items are uniform among the stimuli she has not seen.
* **judge**: the later step's filters decide whose tests count.

Every draw of a participant (arrival gap, return, delay, then her pools and ties) comes from
her own counter-based stream ``(seed, TOP_UP, participant id)`` (:mod:`memsim.rng`): the
return and delay draws come first, so a higher return probability changes no one's items.
Top-up participant ids continue after the campaign's starts
(:func:`~memsim.sim.population.draw_participants` is prefix-stable).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numba import njit

from memsim import _jitcache  # noqa: F401  (drops numba caches older than the sources)
from memsim.design.protocol import Protocol
from memsim.rng import TOP_UP, stream_key
from memsim.sim.campaign import _uniforms, draw_demand, shuffle_front
from memsim.sim.population import draw_participants

__all__ = ["TopUpResult", "kept_tests", "run_top_up"]


@dataclass(frozen=True)
class TopUpResult:
    """What the top-up rounds did (``Simulation.top_up``).

    Attributes
    ----------
    floor : int
        Kept tests in the later step each stimulus should reach.
    started : tuple of int
        Participants who started step 1, per round.
    kept : tuple of int
        Participants the later step's filters kept, per round.
    first_participant : int
        The first top-up participant's id (the campaign's starts; ids run on from it).
    short_before, short_after : int
        Stimuli short of the floor after the campaign, after the top-up.
    min_before, min_after : int
        The fewest kept later-step tests of any stimulus, before and after.
    """

    floor: int
    started: tuple[int, ...]
    kept: tuple[int, ...]
    first_participant: int
    short_before: int
    short_after: int
    min_before: int
    min_after: int

    @property
    def rounds(self) -> int:
        """Rounds run."""
        return len(self.started)

    @property
    def participants(self) -> int:
        """Top-up participants who started step 1."""
        return sum(self.started)

    def describe(self) -> str:
        """One line: rounds, participants, the minimum before and after."""
        if not self.rounds:
            return (
                f"top-up: no rounds ({self.short_before:,} stimuli short of {self.floor}; "
                f"minimum {self.min_before})"
            )
        return (
            f"top-up: {self.rounds} round{'s' * (self.rounds != 1)}, {self.participants:,} "
            f"participants ({sum(self.kept):,} kept in step 2); {self.short_before:,} stimuli "
            f"short of {self.floor} -> {self.short_after:,}, minimum {self.min_before} -> "
            f"{self.min_after}"
        )


@dataclass(frozen=True)
class _Places:
    """Where the top-up puts its stimuli in each step's item places."""

    forced: np.ndarray  # step-1 filler places the later step tests from (the short go there)
    other: np.ndarray  # step 1's other places
    targets1: np.ndarray  # step-1 places of repeated targets (their tests are step 1's)
    role1: np.ndarray  # str[items of step 1]: each place's role
    tested: tuple  # ((later-step places, roles they come from), ...)
    new2: np.ndarray  # the later step's places of new stimuli
    carry: int  # short stimuli one participant can carry to her tests

    @classmethod
    def of(cls, prepared) -> _Places:
        s1, s2 = prepared.protocol.steps
        g1, g2 = prepared.layouts[0].group_of_item, prepared.layouts[1].group_of_item
        role1 = np.array([s1.items[g].role for g in g1])
        tested = tuple(
            (np.flatnonzero(g2 == gi), frozenset(g.source.roles))
            for gi, g in enumerate(s2.items)
            if not isinstance(g.source, str)
        )
        roles = frozenset().union(*(r for _, r in tested))
        forced = np.flatnonzero(role1 == "filler") if "filler" in roles else np.zeros(0, int)
        rep = np.array([g.role == "target" and g.repeat_lag is not None for g in s1.items])
        from_fillers = sum(idx.size for idx, r in tested if "filler" in r)
        return cls(
            forced=forced,
            other=np.setdiff1d(np.arange(g1.size), forced),
            targets1=np.flatnonzero(rep[g1]),
            role1=role1,
            tested=tested,
            new2=np.flatnonzero(np.array([isinstance(g.source, str) for g in s2.items])[g2]),
            carry=int(min(forced.size, from_fillers)),
        )


def kept_tests(items_video, shown_item, kept, places, n_stimuli: int) -> np.ndarray:
    """Kept tests per stimulus (int64[V]): the stimuli at ``places`` of the participants the
    filters kept (``kept``, one per row), where shown."""
    if items_video.shape[0] == 0:
        return np.zeros(n_stimuli, dtype=np.int64)
    mask = kept[:, None] & shown_item[:, places]
    return np.bincount(items_video[:, places][mask], minlength=n_stimuli).astype(np.int64)


def _campaign_counts(places: _Places, first, kept1, later, kept2, V):
    """Kept step-1 target tests and later-step tests per stimulus after the campaign."""
    # a step-1 target's test is its second showing: a complete session shows both
    done = kept1 & first["complete"]
    st = kept_tests(first["items_video"], first["shown_item"], done, places.targets1, V)
    tested = np.concatenate([idx for idx, _ in places.tested])
    lt = kept_tests(later["items_video"], later["shown_item"], kept2, tested, V)
    return st, lt


def _rank(counts, state, n, first=None):
    """Stimuli by ``counts``, ties at random (``n`` uniforms from ``state``); with ``first``,
    only the head of that order, at least its ``first`` entries (those up to the ``first``-th
    smallest count, its ties included: the same entries in the same order as the full rank's).

    Every state handed to a kernel is a ``np.uint64``: numba returns it as a Python int, which
    it would type as int64 on the way back in (and int64 + uint64 is a float)."""
    state, u = _uniforms(np.uint64(state), n)
    if first is None or first >= n:
        return state, np.lexsort((u, counts))
    cut = np.partition(counts, first - 1)[first - 1]
    head = np.flatnonzero(counts <= cut)
    return state, head[np.lexsort((u[head], counts[head]))]


def run_top_up(
    prepared,
    params,
    seed: int,
    parts,
    first: dict,
    kept1: np.ndarray,
    later: dict,
    kept2: np.ndarray,
    n_started: int,
    play: Callable,
):
    """The top-up rounds after the campaign (``prepared.protocol.campaign.top_up``).

    Parameters
    ----------
    prepared : PreparedProtocol
    params : Params
    seed : int
    parts : Participants
        The campaign's participants (at least ``n_started``); grown when the top-up needs more.
    first, later : dict
        What the campaign's step 1 and later step returned for everyone who played them
        (participant order; ``items_video``, ``shown_item``, ``complete``, ``end``).
    kept1, kept2 : bool[n]
        Their verdicts, one per row of ``first`` and ``later``.
    n_started : int
        The campaign's step-1 starts: the first top-up id.
    play : callable
        ``play(s, pid, start, items_video, item_prior_onset, parts) -> (out, kept)``: play
        step ``s`` (0 or 1) for these participants, append their rows to the engine's table
        and return what :func:`memsim.sim.simulate.play_step` returns first and its verdicts.

    Returns
    -------
    (TopUpResult, Participants)
        What the rounds did, and the participants drawn (the campaign's and the top-up's).
    """
    protocol: Protocol = prepared.protocol
    spec = protocol.campaign.top_up
    V = protocol.stimuli.count
    places = _Places.of(prepared)
    st, lt = _campaign_counts(places, first, kept1, later, kept2, V)
    lo, hi = protocol.steps[1].delay_h
    sel = protocol.selection
    pool = getattr(sel, "pool", None) or V
    fill_pool = getattr(sel, "later_pool", None) or pool
    demand = draw_demand(getattr(sel, "demand", None), V, seed, 0)
    # least: kept step-1 tests per unit of demand (what the campaign's pick balances); most:
    # the raw counts, whose tail is where one more test moves their distribution least
    per_demand = demand is not None and spec.targets == "least"
    st_key = st / demand if per_demand else st.astype(np.float64)
    q = int(kept2.sum()) / max(n_started, 1)  # kept later-step participants per start
    t = float(max(first["end"].max(initial=0.0), later["end"].max(initial=0.0)))
    min_before, short_before = int(lt.min()), int((lt < spec.floor).sum())
    started, kept_n, pid0 = [], [], n_started
    rp = params.participants.return_probability
    gap_mean_s = 3600.0 / protocol.campaign.arrivals.rate_per_h
    # a campaign that kept nobody in the later step gives no rate to size rounds by
    while (lt < spec.floor).any() and len(started) < spec.max_rounds and q > 0 and places.carry:
        short = np.flatnonzero(lt < spec.floor)
        deficit = spec.floor - lt[short]
        need = np.ceil(deficit / q).astype(np.int64)  # viewers each short stimulus needs
        n = int(max(need.max(), math.ceil(need.sum() / places.carry), spec.min_batch))
        # the places a larger round has to spare go to the short stimuli too: a last short
        # stimulus shown to every participant of the round, not to the few its deficit asks
        need = np.minimum(n, np.maximum(need, n * places.carry // short.size))
        pid = np.arange(pid0, pid0 + n, dtype=np.int64)
        if parts.ability.shape[0] < pid0 + n:  # prefix-stable: the campaign's stay as they were
            parts = draw_participants(params, pid0 + n, seed)
        items1, states, u0 = _plan_first(
            places, seed, pid, short, need, lt, st_key, spec.targets, pool, fill_pool, V
        )
        start = t + np.cumsum(-np.log1p(-u0[:, 0]) * gap_mean_s)
        out1, k1 = play(0, pid, start, items1, np.full(items1.shape, np.nan), parts)
        back = np.flatnonzero(out1["complete"] & (u0[:, 1] < rp))
        end = float(out1["end"].max())
        k2_n = 0
        if back.size:
            key_def = np.zeros(V, dtype=np.int64)
            key_def[short] = -deficit  # the largest deficit first
            key_lt = np.where(lt < spec.floor, 0, lt)  # then the fewest kept tests
            items2, prior2 = _plan_later(
                places, prepared, back, items1, out1["item_onset"], states, key_def, key_lt, V
            )
            start2 = out1["end"][back] + (lo + (hi - lo) * u0[back, 2]) * 3600.0
            out2, k2 = play(1, pid[back], start2, items2, prior2, parts)
            tested = np.concatenate([idx for idx, _ in places.tested])
            lt = lt + kept_tests(out2["items_video"], out2["shown_item"], k2, tested, V)
            end = max(end, float(out2["end"].max()))
            k2_n = int(k2.sum())
        if spec.targets != "uniform":
            done = k1 & out1["complete"]
            add = kept_tests(out1["items_video"], out1["shown_item"], done, places.targets1, V)
            st_key = st_key + (add / demand if per_demand else add)
        started.append(n)
        kept_n.append(k2_n)
        t, pid0 = end, pid0 + n
    result = TopUpResult(
        floor=spec.floor,
        started=tuple(started),
        kept=tuple(kept_n),
        first_participant=n_started,
        short_before=short_before,
        short_after=int((lt < spec.floor).sum()),
        min_before=min_before,
        min_after=int(lt.min()),
    )
    return result, parts


def _plan_first(places, seed, pid, short, need, lt, st_key, targets, pool, fill_pool, V):
    """Step-1 items of a round (int32[n, items]), each participant's stream state after her
    draws (uint64[n]) and her arrival-gap, return and delay uniforms (float64[n, 3]): one
    numba call (:func:`_plan_first_kernel`), the same draws and items as
    :func:`_plan_first_reference` (``tests/test_topup.py``)."""
    uniform = targets == "uniform"
    key = np.asarray(st_key if targets == "least" else -st_key, dtype=np.float64)
    lt = np.ascontiguousarray(lt, dtype=np.int64)
    return _plan_first_kernel(
        np.uint64(seed), np.uint64(TOP_UP), np.ascontiguousarray(pid, dtype=np.int64),
        np.ascontiguousarray(short, dtype=np.int64), np.ascontiguousarray(need, dtype=np.int64),
        lt, np.sort(lt), key, np.sort(key), uniform, int(pool), int(fill_pool), int(V),
        np.ascontiguousarray(places.forced, dtype=np.int64),
        np.ascontiguousarray(places.other, dtype=np.int64), int(places.carry),
    )  # fmt: skip


@njit(cache=True)
def _head_ranked(counts, sorted_counts, u, first):
    """:func:`_rank`'s order from its uniforms ``u``: stimuli by ``counts``, ties by ``u``
    (then by index, as ``np.lexsort``), only the head up to the ``first``-th smallest count
    (``sorted_counts``: ``counts`` sorted, read for that count) with its ties."""
    n = counts.shape[0]
    if first >= n:
        head = np.arange(n)
    else:
        head = np.flatnonzero(counts <= sorted_counts[first - 1])
    by_u = head[np.argsort(u[head], kind="mergesort")]
    return by_u[np.argsort(counts[by_u], kind="mergesort")]


@njit(cache=True)
def _unmarked(order, mark, k):
    """The first ``k`` entries of ``order`` whose ``mark`` is not set (int32)."""
    out = np.empty(min(k, order.shape[0]), dtype=np.int32)
    got = 0
    for v in order:
        if got == out.shape[0]:
            break
        if not mark[v]:
            out[got] = v
            got += 1
    return out[:got]


@njit(cache=True)
def _plan_first_kernel(
    seed, purpose, pid, short, need, lt, lt_sorted, key, key_sorted, uniform, pool, fill_pool,
    V, forced, other, carry,
):  # fmt: skip
    """:func:`_plan_first_reference`'s loop over a round's participants, in numba (``key``:
    the step-1 order's counts, ``st_key`` for ``least``, its negative for ``most``)."""
    n = pid.shape[0]
    nf, no = forced.shape[0], other.shape[0]
    items = np.empty((n, nf + no), dtype=np.int32)
    states = np.empty(n, dtype=np.uint64)
    u0 = np.empty((n, 3))
    left = need.copy()
    mark = np.zeros(V, dtype=np.bool_)
    for i in range(n):
        state = stream_key(seed, purpose, pid[i])
        state, u = _uniforms(state, 3)
        u0[i, :] = u
        # the short stimuli needing most viewers first, ties at random
        state, u = _uniforms(state, short.shape[0])
        by_u = np.argsort(u, kind="mergesort")
        order = by_u[np.argsort(-left[by_u], kind="mergesort")]
        take = np.empty(min(carry, order.shape[0]), dtype=np.int64)
        nt = 0
        for j in order:
            if nt == take.shape[0]:
                break
            if left[j] > 0:
                take[nt] = j
                nt += 1
        fill = np.empty(nf, dtype=np.int32)
        for t in range(nt):
            left[take[t]] -= 1
            fill[t] = short[take[t]]
            mark[fill[t]] = True
        k = max(fill_pool, nf - nt)
        state, u = _uniforms(state, V)
        rest = _unmarked(_head_ranked(lt, lt_sorted, u, k + nt), mark, k)
        state = shuffle_front(rest, nf - nt, state)
        fill[nt:] = rest[: nf - nt]
        state = shuffle_front(fill, nf, state)
        for t in range(nf):  # the short ones are marked already; now the whole fill
            mark[fill[t]] = True
        if uniform:
            cand = _unmarked(np.arange(V), mark, V)
        else:  # least: the fewest kept step-1 tests first; most: the most
            k = max(pool, no)
            state, u = _uniforms(state, V)
            cand = _unmarked(_head_ranked(key, key_sorted, u, k + nf), mark, k)
        state = shuffle_front(cand, no, state)
        for t in range(nf):
            items[i, forced[t]] = fill[t]
            mark[fill[t]] = False
        for t in range(no):
            items[i, other[t]] = cand[t]
        states[i] = state
    return items, states, u0


def _plan_first_reference(places, seed, pid, short, need, lt, st_key, targets, pool, fill_pool, V):
    """:func:`_plan_first` in numpy, participant by participant: the reference it is tested
    equal to."""
    n = pid.shape[0]
    items = np.empty((n, places.role1.size), dtype=np.int32)
    states = np.empty(n, dtype=np.uint64)
    u0 = np.empty((n, 3))
    left = need.copy()
    nf, no = places.forced.size, places.other.size
    everyone = np.arange(V, dtype=np.int32)
    for i in range(n):
        state = stream_key(seed, TOP_UP, pid[i])
        state, u0[i] = _uniforms(np.uint64(state), 3)
        # the short stimuli needing most viewers first, ties at random
        state, u = _uniforms(np.uint64(state), short.size)
        order = np.lexsort((u, -left))
        take = order[left[order] > 0][: places.carry]
        left[take] -= 1
        fill = short[take].astype(np.int32)
        k = max(fill_pool, nf - fill.size)
        state, rank = _rank(lt, state, V, first=k + fill.size)  # fill may take k's places
        rest = rank[~np.isin(rank, fill)][:k].astype(np.int32)
        state = shuffle_front(rest, nf - fill.size, np.uint64(state))
        fill = np.concatenate([fill, rest[: nf - fill.size]])
        state = shuffle_front(fill, nf, np.uint64(state))
        if targets == "uniform":
            cand = everyone[~np.isin(everyone, fill)]
        else:  # least: the fewest kept step-1 tests first; most: the most
            k = max(pool, no)
            key = st_key if targets == "least" else -st_key
            state, rank = _rank(key, state, V, first=k + fill.size)
            cand = rank[~np.isin(rank, fill)][:k].astype(np.int32)
        state = shuffle_front(cand, no, np.uint64(state))
        items[i, places.forced] = fill
        items[i, places.other] = cand[:no]
        states[i] = state
    return items, states, u0


def _plan_later(places, prepared, back, items1, onset1, states, key_def, key_lt, V):
    """The later step's items of the returners ``back`` (rows of the round) and the onsets of
    their tested items in step 1: tests among their step-1 items of the sources' roles, the
    short first; new items uniform among the stimuli each has not seen."""
    nb = back.size
    n_items = prepared.layouts[1].n_items
    items = np.empty((nb, n_items), dtype=np.int32)
    prior = np.full((nb, n_items), np.nan)
    for j, i in enumerate(back):
        state = states[i]
        vids = items1[i]
        used = np.zeros(vids.size, dtype=bool)
        for idx, roles in places.tested:
            elig = np.flatnonzero(np.isin(places.role1, list(roles)) & ~used & ~np.isnan(onset1[i]))
            state, u = _uniforms(np.uint64(state), elig.size)
            chosen = elig[np.lexsort((u, key_lt[vids[elig]], key_def[vids[elig]]))[: idx.size]]
            used[chosen] = True
            items[j, idx] = vids[chosen]
            prior[j, idx] = onset1[i, chosen]
        unseen = np.ones(V, dtype=bool)
        unseen[vids] = False
        cand = np.flatnonzero(unseen).astype(np.int32)
        state = shuffle_front(cand, places.new2.size, np.uint64(state))
        items[j, places.new2] = cand[: places.new2.size]
    return items, prior
