"""Lag-constrained presentation orders, one per participant and step.

In: a :class:`StepLayout` (from a protocol ``Step`` via :func:`layout_for`), a
seed, participant ids and the step's index. Out: for every participant, the
local item shown at each position and, at the second showing of a repeated
item, its lag (positions since the first showing).

Items are numbered ``0 .. n_items-1`` group by group, in protocol order. A
group with a lag range shows each item twice; other groups show each item once.

Algorithm (per participant, one SplitMix64 stream
``rng.stream_key(seed, rng.SEQUENCE, participant * 256 + step_index)``):

1. Repeating groups are placed first, the most constrained first (longest
   minimum lag; ties in protocol order). Within a group the items are taken in
   a random order, so a group's items are exchangeable.
2. For each repeated item, the lag ``d`` is drawn uniformly from the group's
   range, then the first showing ``p`` uniformly among the positions where both
   ``p`` and ``p + d`` are still free: up to ``_TRIES`` rejection draws of
   ``p`` on ``[0, length - d)``, then, if all were rejected, an exact draw
   among the free pairs counted by a scan (both give the same uniform law; the
   rejection draws only save the scan).
3. If no free pair exists for the drawn lag (a dead end) the participant's
   whole sequence restarts, continuing the same stream; after ``max_restarts``
   restarts :func:`generate_sequences` raises :class:`~memsim.errors.UserError`
   naming the step and the group that could not be placed.
4. Items shown once fill the remaining positions in a uniformly random order.

Lag distribution: every drawn lag is uniform on its range, so a sequence that
needs no restart has exactly uniform lags; restarts condition on success and
tilt the law slightly toward lags that are easier to place (shorter ones).
VideoMem step 1 (targets 45-100, vigilance 3-6, length 180) did not restart once:
``python benchmarks/bench_sequence.py --lags`` over 200,000 sequences gave
0 restarts, every lag present, per-lag frequencies within [0.992, 1.007] of
uniform for targets (chi-square p = 0.68) and [0.999, 1.001] for vigilance
(p = 0.83). On the same script's deliberately tight layout (length 40, 12
targets at 5-30, 6 vigilance at 1-3, 4 fillers; 71% of sequences restart)
target lags stayed within 1.2% of uniform, while vigilance lags 1/2/3 came out
at 1.031/1.006/0.963 of uniform: the tilt is real but small.

Positions are not uniform: a repeat at lag ``d`` has its first showing in
``[0, length - d)``, so long-lag targets start early.

Output for a participant depends only on (seed, participant id, step index,
layout), never on the batch, thread count or order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from memsim import (
    _jitcache,  # noqa: F401  (drops numba caches older than the sources)
    rng,
)
from memsim.errors import UserError

__all__ = [
    "StepLayout",
    "layout_for",
    "generate_sequences",
    "generate_sequences_reference",
]

# Rejection draws of a first position before falling back to an exact scan.
# Part of the stream's draw order: changing it changes every sequence.
_TRIES = 32
_MAX_STEPS = 256  # participant * 256 + step_index keys the stream
_MAX_PARTICIPANT = (1 << 55) - 1  # participant * 256 + step_index must fit an int64
_INT16_MAX = 32767  # the trial table stores lags as int16


@dataclass(frozen=True, eq=False)
class StepLayout:
    """What one step's sequence must hold: its length and its item groups.

    Parameters
    ----------
    length : int
        Presentations in the sequence.
    group_count : int32[G]
        Items per group, in protocol order.
    group_lag_min, group_lag_max : int32[G]
        Lag range of a repeating group; 0 and 0 for a group shown once.
    name : str, optional
        The step's name, for error messages.
    group_role : tuple of str, optional
        Each group's role, for error messages.
    """

    length: int
    group_count: np.ndarray
    group_lag_min: np.ndarray
    group_lag_max: np.ndarray
    name: str = ""
    group_role: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        arrays = {}
        for field in ("group_count", "group_lag_min", "group_lag_max"):
            a = np.array(getattr(self, field), dtype=np.int32).reshape(-1)
            a.setflags(write=False)
            arrays[field] = a
            object.__setattr__(self, field, a)
        shapes = {a.shape for a in arrays.values()}
        if len(shapes) != 1:
            raise ValueError("group_count, group_lag_min and group_lag_max must have one length")
        object.__setattr__(self, "length", int(self.length))
        object.__setattr__(self, "group_role", tuple(self.group_role))

    @property
    def n_items(self) -> int:
        return int(self.group_count.sum())

    @property
    def group_of_item(self) -> np.ndarray:
        """int32[n_items]: the group of each local item."""
        return np.repeat(np.arange(self.group_count.size, dtype=np.int32), self.group_count)

    @property
    def group_start(self) -> np.ndarray:
        """int32[G]: the first local item of each group."""
        return (np.cumsum(self.group_count, dtype=np.int64) - self.group_count).astype(np.int32)

    @property
    def repeats(self) -> np.ndarray:
        """bool[G]: the group's items are shown twice."""
        return self.group_lag_max > 0

    def describe_group(self, g: int) -> str:
        role = self.group_role[g] if g < len(self.group_role) else "items"
        lo, hi = int(self.group_lag_min[g]), int(self.group_lag_max[g])
        return f"items.{g} ({int(self.group_count[g])} {role}, lag {lo}-{hi})"

    def label(self, step_index: int) -> str:
        return f"step {step_index + 1}" + (f" ({self.name})" if self.name else "")


def layout_for(step) -> StepLayout:
    """The :class:`StepLayout` of a :class:`memsim.design.protocol.Step`."""
    counts, lo, hi, roles = [], [], [], []
    for g in step.items:
        counts.append(g.count)
        lo.append(0 if g.repeat_lag is None else g.repeat_lag[0])
        hi.append(0 if g.repeat_lag is None else g.repeat_lag[1])
        roles.append(g.role)
    return StepLayout(step.length, counts, lo, hi, name=step.name, group_role=tuple(roles))


# --------------------------------------------------------------------------- checks
def _check_layout(layout: StepLayout, step_index: int) -> None:
    """Cheap necessary conditions; raises UserError naming the step and group."""
    where = layout.label(step_index)
    L = layout.length
    cnt, lo, hi = layout.group_count, layout.group_lag_min, layout.group_lag_max
    if L < 1:
        raise UserError(f"{where}: length {L} must be at least 1")
    total = int(np.sum(cnt.astype(np.int64) * np.where(hi > 0, 2, 1)))
    if total != L:
        raise UserError(f"{where}: items give {total} presentations but length is {L}")
    for g in range(cnt.size):
        if cnt[g] < 1:
            raise UserError(f"{where}: {layout.describe_group(g)} needs at least one item")
        if hi[g] == 0 and lo[g] == 0:
            continue
        if not 1 <= lo[g] <= hi[g]:
            raise UserError(f"{where}: {layout.describe_group(g)} has an invalid lag range")
        if hi[g] >= L:
            raise UserError(
                f"{where}: {layout.describe_group(g)} lag does not fit a sequence of {L}"
            )
        if hi[g] > _INT16_MAX:
            raise UserError(
                f"{where}: {layout.describe_group(g)} lag above {_INT16_MAX} is not supported"
            )
    # Every pair with lag >= a has its first showing in [0, L - a).
    rep = hi > 0
    for a in np.unique(lo[rep]):
        need = int(cnt[rep & (lo >= a)].sum())
        if need > L - a:
            raise UserError(
                f"{where}: {need} items repeated at lags of at least {a} cannot all start "
                f"in the first {L - a} of {L} positions"
            )


def _plan(layout: StepLayout):
    """Arrays both implementations work from: group starts, placement order, single items."""
    start = layout.group_start
    rep = layout.repeats
    order = sorted(np.flatnonzero(rep).tolist(), key=lambda g: (-int(layout.group_lag_min[g]), g))
    singles = [
        int(start[g]) + j
        for g in range(layout.group_count.size)
        if not rep[g]
        for j in range(int(layout.group_count[g]))
    ]
    return (
        np.array(start, dtype=np.int32),
        np.array(layout.group_count, dtype=np.int32),
        np.array(layout.group_lag_min, dtype=np.int32),
        np.array(layout.group_lag_max, dtype=np.int32),
        np.array(order, dtype=np.int32),
        np.array(singles, dtype=np.int32),
    )


def _check_args(seed, participants, step_index, max_restarts):
    seed = int(seed)
    if not 0 <= seed < 1 << 64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    participants = np.ascontiguousarray(participants, dtype=np.int64).reshape(-1)
    if participants.size and (participants.min() < 0 or participants.max() > _MAX_PARTICIPANT):
        raise ValueError(f"participant ids must be in [0, {_MAX_PARTICIPANT}]")
    step_index = int(step_index)
    if not 0 <= step_index < _MAX_STEPS:
        raise ValueError(f"step_index must be in [0, {_MAX_STEPS}), got {step_index}")
    max_restarts = int(max_restarts)
    if max_restarts < 0:
        raise ValueError("max_restarts must be >= 0")
    return seed, participants, step_index, max_restarts


def _failure(layout, step_index, participant, group, max_restarts) -> UserError:
    return UserError(
        f"{layout.label(step_index)}: could not place the repeats of "
        f"{layout.describe_group(group)} in a sequence of {layout.length} after "
        f"{max_restarts} restarts (participant {participant}); "
        "widen the lag ranges, lengthen the step or repeat fewer items"
    )


# --------------------------------------------------------------------------- kernels
@njit(cache=True)
def _fill_one(
    state,
    length,
    g_start,
    g_count,
    g_lo,
    g_hi,
    order,
    singles,
    max_restarts,
    item_row,
    lag_row,
    perm,
):
    """One participant's sequence into ``item_row``/``lag_row``.

    Returns ``(state, failed_group, restarts)``; ``failed_group`` is -1 on success.
    ``item_row`` doubles as the occupancy map (-1 = free).
    """
    restarts = 0
    while True:
        for q in range(length):
            item_row[q] = -1
            lag_row[q] = -1
        dead = -1
        for r in range(order.size):
            g = order[r]
            c = g_count[g]
            for j in range(c):
                perm[j] = g_start[g] + j
            for j in range(c - 1, 0, -1):
                state, k = rng.next_below(state, j + 1)
                t = perm[j]
                perm[j] = perm[k]
                perm[k] = t
            lo = g_lo[g]
            width = g_hi[g] - lo + 1
            for j in range(c):
                state, d = rng.next_below(state, width)
                d += lo
                span = length - d
                p = -1
                for _ in range(_TRIES):
                    state, q = rng.next_below(state, span)
                    if item_row[q] < 0 and item_row[q + d] < 0:
                        p = q
                        break
                if p < 0:
                    n_ok = 0
                    for q in range(span):
                        if item_row[q] < 0 and item_row[q + d] < 0:
                            n_ok += 1
                    if n_ok == 0:
                        dead = g
                        break
                    state, k = rng.next_below(state, n_ok)
                    for q in range(span):
                        if item_row[q] < 0 and item_row[q + d] < 0:
                            if k == 0:
                                p = q
                                break
                            k -= 1
                it = perm[j]
                item_row[p] = it
                item_row[p + d] = it
                lag_row[p + d] = d
            if dead >= 0:
                break
        if dead < 0:
            ns = singles.size
            for j in range(ns):
                perm[j] = singles[j]
            for j in range(ns - 1, 0, -1):
                state, k = rng.next_below(state, j + 1)
                t = perm[j]
                perm[j] = perm[k]
                perm[k] = t
            j = 0
            for q in range(length):
                if item_row[q] < 0:
                    item_row[q] = perm[j]
                    j += 1
            return state, -1, restarts
        if restarts >= max_restarts:
            return state, dead, restarts
        restarts += 1


@njit(cache=True, parallel=True)
def _generate_kernel(
    seed,
    participants,
    step_index,
    length,
    g_start,
    g_count,
    g_lo,
    g_hi,
    order,
    singles,
    max_restarts,
    out_item,
    out_lag,
    failed,
    restarts,
):
    perm_size = max(singles.size, 1)
    for g in range(g_count.size):
        perm_size = max(perm_size, g_count[g])
    for i in prange(participants.size):
        state = rng.stream_key(seed, rng.SEQUENCE, participants[i] * 256 + step_index)
        perm = np.empty(perm_size, np.int32)
        _, f, r = _fill_one(
            state,
            length,
            g_start,
            g_count,
            g_lo,
            g_hi,
            order,
            singles,
            max_restarts,
            out_item[i],
            out_lag[i],
            perm,
        )
        failed[i] = f
        restarts[i] = r


@njit(cache=True)
def _generate_serial(
    seed,
    participants,
    step_index,
    length,
    g_start,
    g_count,
    g_lo,
    g_hi,
    order,
    singles,
    max_restarts,
    out_item,
    out_lag,
    failed,
    restarts,
):
    # The same as _generate_kernel on one thread: waking the thread pool costs
    # more than a handful of participants (the adaptive campaign asks for one).
    perm_size = max(singles.size, 1)
    for g in range(g_count.size):
        perm_size = max(perm_size, g_count[g])
    perm = np.empty(perm_size, np.int32)
    for i in range(participants.size):
        state = rng.stream_key(seed, rng.SEQUENCE, participants[i] * 256 + step_index)
        _, f, r = _fill_one(
            state,
            length,
            g_start,
            g_count,
            g_lo,
            g_hi,
            order,
            singles,
            max_restarts,
            out_item[i],
            out_lag[i],
            perm,
        )
        failed[i] = f
        restarts[i] = r


_SERIAL_BELOW = 32  # batches smaller than this run on the calling thread


def _run(layout, seed, participants, step_index, max_restarts):
    """Kernel call without raising: ``(item, lag, failed_group, restarts)``."""
    seed, participants, step_index, max_restarts = _check_args(
        seed, participants, step_index, max_restarts
    )
    _check_layout(layout, step_index)
    plan = _plan(layout)
    n, L = participants.size, layout.length
    item = np.empty((n, L), np.int32)
    lag = np.empty((n, L), np.int16)
    failed = np.empty(n, np.int32)
    restarts = np.empty(n, np.int32)
    kernel = _generate_serial if n < _SERIAL_BELOW else _generate_kernel
    kernel(
        np.uint64(seed),
        participants,
        step_index,
        L,
        *plan,
        max_restarts,
        item,
        lag,
        failed,
        restarts,
    )
    return item, lag, failed, restarts


def generate_sequences(
    layout: StepLayout, seed: int, participants, step_index: int, max_restarts: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """Presentation orders of one step for a batch of participants.

    Parameters
    ----------
    layout : StepLayout
    seed : int
        Simulation seed, in [0, 2**64).
    participants : int64[n]
        Participant ids (non-negative); each id gets its own stream.
    step_index : int
        0-based index of the step in the protocol (< 256).
    max_restarts : int
        Restarts allowed per participant after a dead end.

    Returns
    -------
    item : int32[n, length]
        Local item shown at each position.
    lag : int16[n, length]
        At the second showing of a repeated item, positions since its first
        showing; -1 everywhere else.

    Raises
    ------
    UserError
        The layout is infeasible, or a participant still hit a dead end after
        ``max_restarts`` restarts.
    """
    participants = np.ascontiguousarray(participants, dtype=np.int64).reshape(-1)
    if participants.size > 1:
        # Probe one participant first so an infeasible layout fails after
        # max_restarts attempts once, not once per participant.
        _, _, f, _ = _run(layout, seed, participants[:1], step_index, max_restarts)
        if f[0] >= 0:
            raise _failure(layout, int(step_index), int(participants[0]), int(f[0]), max_restarts)
    item, lag, failed, _ = _run(layout, seed, participants, step_index, max_restarts)
    bad = np.flatnonzero(failed >= 0)
    if bad.size:
        i = int(bad[0])
        raise _failure(layout, int(step_index), int(participants[i]), int(failed[i]), max_restarts)
    return item, lag


# --------------------------------------------------------------------------- reference
def _fill_one_py(stream, length, g_start, g_count, g_lo, g_hi, order, singles, max_restarts):
    """Pure-Python twin of :func:`_fill_one`: same draws in the same order."""
    restarts = 0
    while True:
        item = [-1] * length
        lag = [-1] * length
        dead = -1
        for g in order:
            perm = list(range(g_start[g], g_start[g] + g_count[g]))
            for j in range(len(perm) - 1, 0, -1):
                k = stream.below(j + 1)
                perm[j], perm[k] = perm[k], perm[j]
            for it in perm:
                d = g_lo[g] + stream.below(g_hi[g] - g_lo[g] + 1)
                span = length - d
                p = -1
                for _ in range(_TRIES):
                    q = stream.below(span)
                    if item[q] < 0 and item[q + d] < 0:
                        p = q
                        break
                if p < 0:
                    ok = [q for q in range(span) if item[q] < 0 and item[q + d] < 0]
                    if not ok:
                        dead = g
                        break
                    p = ok[stream.below(len(ok))]
                item[p] = item[p + d] = it
                lag[p + d] = d
            if dead >= 0:
                break
        if dead < 0:
            perm = list(singles)
            for j in range(len(perm) - 1, 0, -1):
                k = stream.below(j + 1)
                perm[j], perm[k] = perm[k], perm[j]
            free = iter(q for q in range(length) if item[q] < 0)
            for it in perm:
                item[next(free)] = it
            return item, lag, -1
        if restarts >= max_restarts:
            return item, lag, dead
        restarts += 1


def generate_sequences_reference(
    layout: StepLayout, seed: int, participants, step_index: int, max_restarts: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """Pure-Python :func:`generate_sequences`, bit for bit the same output (slow; for tests)."""
    seed, participants, step_index, max_restarts = _check_args(
        seed, participants, step_index, max_restarts
    )
    _check_layout(layout, step_index)
    start, count, lo, hi, order, singles = (a.tolist() for a in _plan(layout))
    n, L = participants.size, layout.length
    out_item = np.empty((n, L), np.int32)
    out_lag = np.empty((n, L), np.int16)
    for i, pid in enumerate(participants.tolist()):
        stream = rng.PyStream(rng.stream_key_py(seed, rng.SEQUENCE, pid * 256 + step_index))
        item, lag, dead = _fill_one_py(
            stream, L, start, count, lo, hi, order, singles, max_restarts
        )
        if dead >= 0:
            raise _failure(layout, step_index, pid, dead, max_restarts)
        out_item[i] = item
        out_lag[i] = lag
    return out_item, out_lag
