"""A whole simulated study: campaign -> sequences -> kernel -> trial table.

In: a :class:`~memsim.design.protocol.Protocol`, a :class:`~memsim.sim.params.Params`, a
seed and an optional scale. Out: a :class:`Simulation` holding the trial table
(the SPEC's contract, exactly) and the latent truth of every stimulus and
participant; :func:`write_simulation` writes them as Parquet, atomically.

``scale`` shrinks the stimulus pool, the selection pool and the participant
budget by the same factor, so annotations per stimulus stay about the same:
a quick look at a big protocol.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
from numba import literal_unroll, njit, prange

from memsim import _jitcache  # drops numba caches older than the sources (at import)
from memsim import rng as _rng
from memsim.analysis.filters import passes, slot_kinds, stats_from_tally
from memsim.design.protocol import Protocol, protocol_from_mapping, truth_column
from memsim.design.trials import COLUMNS, ROLES
from memsim.errors import UserError
from memsim.progress import ProgressCallback, report
from memsim.rng import CAMPAIGN, SEQUENCE, stream_key, stream_key_py
from memsim.sim.campaign import (
    LaterStep,
    _pick_ahead,
    _pick_least_sorted,
    feedback,
    plan_campaign,
    shuffle_front,
)
from memsim.sim.forgetting import LAWS, retention
from memsim.sim.kernel import (
    ROLE_CODES,
    Constants,
    StepInput,
    play_and_tally,
    play_row,
    simulate_step,
    step_tables,
)
from memsim.sim.params import Params
from memsim.sim.population import (
    Participants,
    draw_participants,
    draw_videos,
    participants_table,
    videos_table,
)
from memsim.sim.sequence import _failure as _sequence_failure
from memsim.sim.sequence import _fill_one, generate_sequences, layout_for
from memsim.sim.sequence import _plan as _sequence_plan
from memsim.sim.sequence import _run as _sequence_run
from memsim.sim.topup import TopUpResult, run_top_up

__all__ = [
    "Admission",
    "PreparedProtocol",
    "SimulatedArrays",
    "Simulation",
    "prepare",
    "simulate",
    "simulate_arrays",
    "simulate_stepwise",
    "scale_protocol",
    "write_simulation",
    "truth_column",
]

ROLE_NAMES = np.array(ROLES)
TRIAL_COLUMNS = list(COLUMNS)  # the trial table's columns in contract order


@dataclass(frozen=True)
class Admission:
    """A later step's quota (``steps[].max_share``) at work: who came back and who played.

    Attributes
    ----------
    step : int
        The step (1-based).
    name : str
        Its name.
    max_share : float
        The protocol's share of the campaign's participants.
    campaign : int
        The campaign's participants (all who started step 1; not the top-up's).
    came_back : int
        Participants who came back for it (and played the step before it).
    played : int
        Those admitted: ``min(came_back, round(max_share * campaign))``.
    """

    step: int
    name: str
    max_share: float
    campaign: int
    came_back: int
    played: int

    def describe(self) -> str:
        """One line: who came back, who played, and the quota."""
        quota = int(round(self.max_share * self.campaign))
        head = f"step {self.step} ({self.name}): "
        of = f"{self.max_share:.1%} of {self.campaign:,} = {quota:,}"
        if self.played == self.came_back:
            return f"{head}all {self.came_back:,} participants who came back played it (quota {of})"
        return (
            f"{head}{self.played:,} of the {self.came_back:,} participants who came back played "
            f"it (quota {of})"
        )


def admissions(protocol: Protocol, plan) -> tuple[Admission, ...]:
    """The :class:`Admission` of each later step with a quota, from the campaign's plan."""
    return tuple(
        Admission(
            step=s + 1,
            name=protocol.steps[s].name,
            max_share=protocol.steps[s].max_share,
            campaign=plan.n_participants,
            came_back=plan.later[s - 1].came_back,
            played=int(plan.later[s - 1].rows.size),
        )
        for s in range(1, len(protocol.steps))
        if protocol.steps[s].max_share is not None
    )


@dataclass(frozen=True)
class PilotRun:
    """What a pilot before the campaign played (``campaign.pilot``).

    Attributes
    ----------
    participants : int
        Its players, numbered after the campaign's (the top-up's included).
    stimuli : int
        The campaign's first stimuli it showed.
    seed : int
        The seed it was simulated with (:func:`pilot_seed` of the campaign's).
    later : tuple of int
        Its players who played each later step.
    shift_s : float
        Seconds the campaign's onsets were moved by: the pilot's last onset plus its gap.
    """

    participants: int
    stimuli: int
    seed: int
    later: tuple[int, ...]
    shift_s: float

    def describe(self) -> str:
        later = ", ".join(f"{n:,}" for n in self.later)
        back = f" ({later} of them in the later steps)" if self.later else ""
        return (
            f"pilot: {self.participants:,} participants on the first {self.stimuli:,} "
            f"stimuli{back}, numbered after the campaign's"
        )


def pilot_seed(seed: int) -> int:
    """The seed a campaign's pilot (``campaign.pilot``) is simulated with: a hash of the
    campaign's, in ``[0, 2**63)``."""
    return stream_key_py(seed, _rng.PILOT, 0) & (2**63 - 1)


@dataclass
class Simulation:
    """A simulated study: its trial table and the latent truth behind it.

    Attributes
    ----------
    protocol : Protocol
        The protocol as simulated (scaled when ``scale`` was below 1).
    params : Params
        The population parameters.
    seed : int
    trials : DataFrame
        The trial table (SPEC contract; ``memsim.design.trials``), every participant included.
    videos : DataFrame
        Per stimulus: its latent parameters and expected score per step (``true_<step>``).
    participants : DataFrame
        Per participant: ability, false-alarm and lapse rates, careless or not.
    top_up : TopUpResult or None
        What the top-up rounds after the campaign did (``campaign.top_up``; None without).
    admissions : tuple of Admission
        The later steps' quotas at work (``steps[].max_share``; empty without).
    pilot : PilotRun or None
        What the pilot before the campaign played (``campaign.pilot``; None without).
    """

    protocol: Protocol
    params: Params
    seed: int
    trials: pd.DataFrame
    videos: pd.DataFrame
    participants: pd.DataFrame
    top_up: TopUpResult | None = None
    admissions: tuple[Admission, ...] = ()
    pilot: PilotRun | None = None

    def __repr__(self) -> str:  # a line, not the tables (a notebook prints it)
        return (
            f"Simulation(protocol={self.protocol.name!r}, params={self.params.name!r}, "
            f"seed={self.seed}, participants={len(self.participants):,}, "
            f"trials={len(self.trials):,}, stimuli={len(self.videos):,})"
        )

    def save(self, out: str | os.PathLike[str]) -> list[Path]:
        """Write ``trials``, ``videos`` and ``participants`` as Parquet into ``out``."""
        return write_simulation(self, out)


def scale_protocol(protocol: Protocol, scale: float) -> Protocol:
    """The protocol with stimuli, selection pools and participant budget times ``scale``; the
    interval of the selection's count checks too (``counts_every_h``: at the same arrival
    rate a scaled campaign lasts ``scale`` times as long, and keeps its number of checks;
    ``counts_every_participants`` and ``counts_delay_participants``: as the participants)."""
    if scale == 1.0:
        return protocol
    if not (0.0 < scale <= 1.0):
        raise UserError(f"--scale must be in (0, 1], got {scale}")
    d = protocol.dump()
    need = sum(s.n_new for s in protocol.steps)
    old_count = d["stimuli"]["count"]
    d["stimuli"]["count"] = _scaled_stimuli(protocol, scale)
    ratio = d["stimuli"]["count"] / old_count  # the stimuli's own factor (a floor may hold them up)
    for pool in ("pool", "later_pool"):
        if d["selection"].get(pool) is not None:
            d["selection"][pool] = min(
                d["stimuli"]["count"],
                max(protocol.steps[0].n_new, int(round(d["selection"][pool] * ratio))),
            )
    if d["selection"].get("counts_every_h") is not None:
        d["selection"]["counts_every_h"] = d["selection"]["counts_every_h"] * scale
    stop = d["campaign"]["stop"]
    f = size_factor(protocol, scale)  # as the participants
    for key in ("counts_every_participants", "counts_delay_participants"):
        if d["selection"].get(key) is not None:
            d["selection"][key] = max(1, int(round(d["selection"][key] * f)))
    if stop["kind"] == "participants":
        stop["count"] = max(1, int(round(stop["count"] * scale)))
    else:  # the budget must still reach `count` annotations of every stimulus
        stop["max_participants"] = max(1, math.ceil(stop["max_participants"] * ratio))
    pilot = d["campaign"].get("pilot")
    if pilot is not None:  # its stimuli and players as the campaign's
        pilot["stimuli"] = min(
            d["stimuli"]["count"], max(need + 1, int(round(pilot["stimuli"] * ratio)))
        )
        pilot["participants"] = max(1, int(round(pilot["participants"] * ratio)))
    return protocol_from_mapping(d, f"{protocol.name} at scale {scale}")


def _scaled_stimuli(protocol: Protocol, scale: float) -> int:
    """The stimuli of ``protocol`` at ``scale``: never fewer than one participant's new
    stimuli over every step, plus one."""
    need = sum(s.n_new for s in protocol.steps)
    return max(need + 1, int(round(protocol.stimuli.count * scale)))


def size_factor(protocol: Protocol, scale: float) -> float:
    """How much smaller the study's head counts are at ``scale`` (:func:`scale_protocol`):
    the factor its head-count targets are compared at (:func:`memsim.fit.compare.at_scale`).

    With a participant budget (``campaign.stop.kind: participants``) it is ``scale``. With a
    stop on the annotation counts the participants follow the stimuli, and below the scale
    where the stimuli meet their floor (one participant's new stimuli, plus one: 201 of
    VideoMem's 10,000, scale 0.0201) the stimuli, and so the participants, stay at the floor:
    the factor is then the stimuli's own.
    """
    if scale == 1.0 or protocol.campaign.stop.kind == "participants":
        return scale
    return _scaled_stimuli(protocol, scale) / protocol.stimuli.count


def check_memory(protocol: Protocol) -> None:
    """Refuse, before any work, a campaign whose trial table cannot fit in memory.

    The estimate is the participant budget times the presentations of every step
    (:data:`memsim.limits.BYTES_PER_TRIAL` each); a one-line UserError gives it and the limit.
    """
    from memsim import limits

    stop = protocol.campaign.stop
    most = stop.count if stop.kind == "participants" else stop.max_participants
    limits.check_memory(
        most * sum(s.length for s in protocol.steps),
        f"{protocol.name}: {most:,} participants",
        how="lower --scale or the campaign's participant budget",
    )


def _reference_delay_s(protocol: Protocol, s: int) -> float:
    """The delay at which a step's scores estimate memorability (see docs/model.md)."""
    step = protocol.steps[s]
    ref = getattr(step.scoring.correction, "reference_lag", None)
    if ref is not None:
        return ref * protocol.presentation_s
    for g in step.items:
        if g.role == "target" and g.repeat_lag is not None:
            return 0.5 * (g.repeat_lag[0] + g.repeat_lag[1]) * protocol.presentation_s
    lo, hi = step.delay_h
    return 0.5 * (lo + hi) * 3600.0


def expected_scores(protocol: Protocol, params: Params, videos) -> dict[str, np.ndarray]:
    """Each stimulus' expected hit rate per scored step, for an attentive average participant.

    ``(1 - lapse_mean) * E_a[expit(logit R(t_ref) + a)]`` with ``a ~ N(0, ability_sd)``
    (Gauss–Hermite, 24 nodes) and ``t_ref`` the step's reference delay.
    """
    law = LAWS[params.forgetting.law]
    a, b = params.forgetting.shape_values()
    nodes, weights = np.polynomial.hermite_e.hermegauss(24)
    weights = weights / weights.sum()
    p = params.participants
    out = {}
    for s, step in enumerate(protocol.steps):
        t = _reference_delay_s(protocol, s)
        r = _retention_many(law.code, float(t), videos.m, videos.rate, float(a), float(b))
        r = np.clip(r, 1e-9, 1 - 1e-9)
        fam = videos.familiarity * np.exp(-t / params.videos.short_term_decay_s)
        lp = (np.log(r / (1 - r)) + fam)[:, None] + p.ability_sd * nodes[None, :]
        out[truth_column(step.scoring.column)] = (1 - p.lapse_mean) * (
            (1.0 / (1.0 + np.exp(-lp))) @ weights
        )
    return out


@njit(cache=True)
def _retention_many(code, t, m, rate, a, b):
    """:func:`memsim.sim.forgetting.retention` of every stimulus at one delay."""
    out = np.empty(m.shape[0])
    for v in range(m.shape[0]):
        out[v] = retention(code, t, m[v], rate[v], a, b)
    return out


def _constants(protocol: Protocol, params: Params, seed: int, s: int) -> Constants:
    f = params.forgetting
    a, b = f.shape_values()
    rt = params.participants.rt
    later = s > 0
    return Constants(
        seed=seed,
        step_index=s,
        law=LAWS[f.law].code,
        shape_a=a,
        shape_b=b,
        duration_s=protocol.stimuli.duration_s,
        gap_s=protocol.stimuli.gap_s,
        ends_on_press=protocol.stimuli.response_ends_presentation,
        stop_after_vigilance_misses=protocol.steps[s].stop_after_vigilance_misses or 0,
        careless_press_rate=params.participants.careless_press_rate,
        rt_min_s=rt.min_s,
        rt_log_sd=rt.log_sd,
        rt_hit_log_mean=rt.hit_log_mean + (rt.later_step_log_shift if later else 0.0),
        rt_hit_slope=rt.hit_strength_slope,
        rt_fa_log_mean=rt.false_alarm_log_mean
        + (rt.later_step_false_alarm_log_shift if later else 0.0),
        familiarity_decay_s=params.videos.short_term_decay_s,
    )


@njit(cache=True)
def _draw_earlier_items(eligible, total, seed, pid, s):
    """Per row, ``total`` distinct random items among ``eligible`` (bool[n, k]), in random order."""
    n, k = eligible.shape
    out = np.empty((n, total), dtype=np.int32)
    cand = np.empty(k, dtype=np.int32)
    for i in range(n):
        m = 0
        for j in range(k):
            if eligible[i, j]:
                cand[m] = j
                m += 1
        state = stream_key(seed, CAMPAIGN, 1_000_000_000 + pid[i] * 64 + s)
        shuffle_front(cand[:m], total, state)
        out[i] = cand[:total]
    return out


def _slots(step, layout, item: np.ndarray, lag: np.ndarray) -> dict:
    """What the sequences alone say of each slot: role, repeat, first showing (no stimuli yet)."""
    group_role = np.array([ROLE_CODES[g.role] for g in step.items], dtype=np.int8)
    from_earlier = np.array([not isinstance(g.source, str) for g in step.items])
    gi = layout.group_of_item[item]
    within = lag >= 0
    pos = np.arange(step.length, dtype=np.int32)[None, :]
    return {
        "item": item,
        "lag": lag,
        "role": group_role[gi],
        "within": within,
        "from_earlier": from_earlier[gi],
        "repeat": within | from_earlier[gi],
        "first_pos": np.where(within, pos - lag, -1).astype(np.int32),
    }


def _session_end(protocol, response, rt, onset, shown) -> np.ndarray:
    """When each session ends: the last played slot's onset, how long it was shown, the gap."""
    rows = np.arange(shown.shape[0])
    last = np.maximum(shown - 1, 0)
    last_len = np.where(
        response[rows, last] & protocol.stimuli.response_ends_presentation,
        rt[rows, last].astype(np.float64),
        protocol.stimuli.duration_s,
    )
    return onset[rows, last] + last_len + protocol.stimuli.gap_s


def _inputs(sl: dict, pid, items_video, item_prior_onset, start, parts) -> StepInput:
    video = np.take_along_axis(items_video, sl["item"], axis=1)
    prior = np.where(
        sl["from_earlier"], np.take_along_axis(item_prior_onset, sl["item"], axis=1), np.nan
    )
    return StepInput(
        participant=pid,
        video=video,
        role=sl["role"],
        repeat=sl["repeat"],
        first_pos=sl["first_pos"],
        prior_onset=prior,
        start_s=start,
        ability=parts.ability[pid],
        fa=parts.fa[pid],
        lapse=parts.lapse[pid],
        careless=parts.careless[pid],
    )


class _FirstStepPlayer:
    """Step 1 played for a few participants at a time while the campaign runs, for the policies
    that learn from sessions as they end. Sequences are generated a block of participants at a
    time, each from the participant's own stream: the same as when the whole step is played."""

    BLOCK = 2048

    def __init__(self, protocol, params, seed, parts, videos):
        self.protocol, self.seed, self.parts = protocol, seed, parts
        self.step = protocol.steps[0]
        self.layout = layout_for(self.step)
        self.videos, self.constants = videos, _constants(protocol, params, seed, 0)
        self.tables = step_tables(videos, self.constants)
        self.blocks: dict[int, dict] = {}

    def _slots(self, pid: np.ndarray) -> dict:
        B = self.BLOCK
        first, last = int(pid.min()) // B, int(pid.max()) // B
        for b in range(first, last + 1):
            if b not in self.blocks:
                for old in [k for k in self.blocks if k < b - 1]:  # participants arrive in order
                    del self.blocks[old]
                ids = np.arange(b * B, min((b + 1) * B, self.parts.n), dtype=np.int64)
                sl = _slots(
                    self.step, self.layout, *generate_sequences(self.layout, self.seed, ids, 0)
                )
                self.blocks[b] = {
                    k: sl[k] for k in ("item", "role", "from_earlier", "repeat", "first_pos")
                }
                self.blocks[b]["kind"] = slot_kinds(sl["role"], sl["repeat"])
        if first == last:
            rows = pid - first * B
            return {k: v[rows] for k, v in self.blocks[first].items()}
        parts = [
            {k: v[pid[pid // B == b] - b * B] for k, v in self.blocks[b].items()}
            for b in range(first, last + 1)
        ]
        return {k: np.concatenate([q[k] for q in parts]) for k in parts[0]}

    def _inputs(self, sl: dict, pid: np.ndarray, items: np.ndarray, start: np.ndarray) -> StepInput:
        return _inputs(sl, pid, items, np.full(items.shape, np.nan), start, self.parts)

    def observe(self, p: int, chosen: np.ndarray, now: float):
        """Participant p's step 1 alone: ``(end_s, tested target videos, hits)`` (adaptive
        policy)."""
        pid = np.array([p], np.int64)
        x = self._inputs(self._slots(pid), pid, chosen[None, :], np.array([now]))
        response, rt, onset, _, shown = simulate_step(x, self.videos, self.constants)
        tested = (
            (x.role[0] == ROLE_CODES["target"])
            & x.repeat[0]
            & (np.arange(self.step.length) < shown[0])
        )
        return (
            float(_session_end(self.protocol, response, rt, onset, shown)[0]),
            x.video[0][tested],
            response[0][tested],
        )

    def judge(self, pid: np.ndarray, items: np.ndarray, start: np.ndarray):
        """``(end_s, kept)`` of these participants' step 1 (``pid`` increasing) under its filters
        (``counts: kept``)."""
        sl = self._slots(pid)
        response, rt, onset, shown, tally = play_and_tally(
            self._inputs(sl, pid, items, start), self.tables, sl["kind"]
        )
        end = _session_end(self.protocol, response, rt, onset, shown)
        return end, passes(stats_from_tally(tally, self.step.length), self.step.filters)


def _later_step_items(protocol: Protocol, s: int, layout, later, prev: dict, seed: int):
    """Who plays later step ``s`` and with which items: the new ones from the campaign, the
    tested ones drawn among what each participant actually saw in the step before.

    Returns ``(pid, start_s, items_video, item_prior_onset)``.
    """
    steps = protocol.steps
    step = steps[s]
    group_of_item = layout.group_of_item
    # only participants who finished the previous step come back
    prev_row = np.searchsorted(prev["pid"], later.rows)
    ok = prev_row < prev["pid"].shape[0]
    ok[ok] &= prev["pid"][prev_row[ok]] == later.rows[ok]
    ok[ok] &= prev["complete"][prev_row[ok]]
    pid = later.rows[ok]
    prev_row = prev_row[ok]
    start = prev["end"][prev_row] + later.delay_s[ok]
    new_items = later.new_items[ok]
    n = pid.shape[0]
    items_video = np.empty((n, layout.n_items), dtype=np.int32)
    item_prior_onset = np.full((n, layout.n_items), np.nan)
    new_cursor = 0
    # earlier-step items, grouped by source step so draws are disjoint
    by_source: dict[tuple, list[int]] = {}
    for gi, g in enumerate(step.items):
        if isinstance(g.source, str):
            idx = np.flatnonzero(group_of_item == gi)
            items_video[:, idx] = new_items[:, new_cursor : new_cursor + idx.size]
            new_cursor += idx.size
        else:
            by_source.setdefault((g.source.step, g.source.roles), []).append(gi)
    for (src, roles), gis in by_source.items():
        if src - 1 != s - 1:
            raise UserError(
                f"steps.{s}: items from step {src} are only supported from the step just before",
                path=protocol.name,
            )
        src_step = steps[src - 1]
        src_roles = np.array(
            [g.role in roles and isinstance(g.source, str) for g in src_step.items]
        )
        eligible = src_roles[prev["group_of_item"]][None, :] & prev["shown_item"][prev_row]
        counts = [int(np.sum(group_of_item == gi)) for gi in gis]
        short = eligible.sum(axis=1) < sum(counts)
        if short.any():
            raise UserError(
                f"steps.{s}: participant {int(pid[short][0])} has fewer eligible step-{src} items "
                f"than the {sum(counts)} needed",
                path=protocol.name,
            )
        if later.tested is not None:  # picked by the campaign (least tested so far)
            drawn = later.tested[ok]
        else:
            drawn = _draw_earlier_items(np.ascontiguousarray(eligible), sum(counts), seed, pid, s)
        c0 = 0
        for gi, c in zip(gis, counts):
            idx = np.flatnonzero(group_of_item == gi)
            sel = drawn[:, c0 : c0 + c]
            items_video[:, idx] = np.take_along_axis(prev["items_video"][prev_row], sel, axis=1)
            item_prior_onset[:, idx] = np.take_along_axis(prev["item_onset"][prev_row], sel, axis=1)
            c0 += c
    return pid, start, items_video, item_prior_onset


def _later_step_in_rounds(protocol: Protocol, s: int, layout, later, prev: dict, seed: int, play):
    """Later step ``s`` whose pick counts kept tests (``counts: kept``; ``later.pick``, a
    :class:`~memsim.sim.campaign.LaterPick`): for ``every`` returning participants at a time,
    in the pick's order, their tested items are picked by their tests so far (ties and
    floor as :func:`~memsim.sim.campaign._pick_least`; with a look-ahead, by
    :func:`~memsim.sim.campaign._pick_ahead`, the viewers to come carried over the rounds),
    their sessions played and judged by
    ``play(pid, start, items_video, item_prior_onset) -> (what the next step needs, kept)``,
    and the tests of everyone in the round the step's filters did not keep (or who did not
    come back) withdrawn before the next round is picked.

    Returns what the next step needs of this one, for all who played it (participant order).
    """
    pk = later.pick
    n = pk.order.shape[0]
    tests = np.zeros(protocol.stimuli.count, dtype=np.int32)
    at = np.searchsorted(later.rows, pk.order)  # the pick's order -> later.rows
    to_come = pk.to_come.copy() if pk.ahead else None  # carried over the rounds
    parts = []
    for a in range(0, max(n, 1), pk.every):  # one (empty) round when nobody came back
        b = min(a + pk.every, n)
        if pk.ahead:
            places = _pick_ahead(
                pk.videos[a:b], pk.keys[a:b], pk.count, tests, pk.weight, pk.cap,
                to_come, pk.scale[a:b], pk.share, pk.ahead,
            )  # fmt: skip
        else:
            places = _pick_least_sorted(
                pk.videos[a:b], pk.keys[a:b], pk.count, tests, pk.weight, pk.cap
            )
        rows = np.sort(at[a:b])  # this round, in participant order
        tested = np.empty((b - a, pk.count), dtype=np.int32)
        tested[np.searchsorted(rows, at[a:b])] = pk.eligible[places]
        sub = LaterStep(
            rows=later.rows[rows],
            delay_s=later.delay_s[rows],
            new_items=later.new_items[rows],
            tested=tested,
        )
        items = _later_step_items(protocol, s, layout, sub, prev, seed)
        out, kept = play(*items)
        out["kept"] = kept  # the step's verdicts travel with its sessions (the top-up reads them)
        dropped = ~np.isin(pk.order[a:b], out["pid"][kept])
        picked = np.take_along_axis(pk.videos[a:b], places, axis=1)
        np.subtract.at(tests, picked[dropped].ravel(), 1)
        parts.append(out)
    by = np.argsort(np.concatenate([o["pid"] for o in parts]), kind="stable")
    merged = {
        k: np.concatenate([o[k] for o in parts])[by] for k in parts[0] if k != "group_of_item"
    }
    merged["group_of_item"] = layout.group_of_item
    return merged


@dataclass(frozen=True, eq=False)
class PreparedProtocol:
    """A protocol made ready to be simulated many times (:func:`prepare`).

    Attributes
    ----------
    protocol : Protocol
        The protocol as simulated (scaled).
    layouts : tuple of StepLayout
        Each step's sequence layout.
    group_role : tuple of int8[G]
        Each step's item groups' role codes (:data:`ROLE_CODES`).
    from_earlier : tuple of bool[G]
        Each step's item groups that come from an earlier step.
    max_participants : int
        The campaign's participant budget.
    pilot : PreparedProtocol or None
        The pilot's protocol prepared (``campaign.pilot``; None without).
    """

    protocol: Protocol
    layouts: tuple
    group_role: tuple
    from_earlier: tuple
    max_participants: int
    pilot: PreparedProtocol | None = None


def prepare(protocol: Protocol, scale: float = 1.0) -> PreparedProtocol:
    """Scale a protocol and make its step layouts once, for one or many simulations."""
    protocol = scale_protocol(protocol, scale)
    check_memory(protocol)
    stop = protocol.campaign.stop
    return PreparedProtocol(
        protocol=protocol,
        layouts=tuple(layout_for(step) for step in protocol.steps),
        group_role=tuple(
            np.array([ROLE_CODES[g.role] for g in step.items], dtype=np.int8)
            for step in protocol.steps
        ),
        from_earlier=tuple(
            np.array([not isinstance(g.source, str) for g in step.items], dtype=np.bool_)
            for step in protocol.steps
        ),
        max_participants=stop.count if stop.kind == "participants" else stop.max_participants,
        pilot=None if protocol.campaign.pilot is None else prepare(protocol.pilot_protocol()),
    )


@dataclass
class SimulatedArrays:
    """A simulated study as arrays: what :class:`Simulation` holds, before any DataFrame.

    Attributes
    ----------
    protocol, params, seed
        As simulated (``protocol`` scaled).
    trials : dict of str to ndarray
        The trial table's columns (:data:`TRIAL_COLUMNS`, the SPEC's dtypes) in participant,
        step, position order, ``role`` as int8 codes in :data:`memsim.design.trials.ROLES`
        order: what :func:`memsim.analysis.scoring.score` accepts in place of a DataFrame.
    videos : Videos
        Every stimulus' latent parameters.
    participants : Participants
        Every drawn participant's latent parameters (``n_participants`` of them started).
    n_participants : int
        Participants who started, the top-up's included.
    truth : dict of str to float64[V]
        Each stimulus' expected score per scored step (:func:`expected_scores`).
    top_up : TopUpResult or None
        What the top-up rounds did (``campaign.top_up``; None without).
    admissions : tuple of Admission
        The later steps' quotas at work (``steps[].max_share``; empty without).
    pilot : PilotRun or None
        What the pilot before the campaign played (``campaign.pilot``; None without): its
        players and their rows follow the campaign's.
    """

    protocol: Protocol
    params: Params
    seed: int
    trials: dict
    videos: object
    participants: object
    n_participants: int
    truth: dict
    top_up: TopUpResult | None = None
    admissions: tuple[Admission, ...] = ()
    pilot: PilotRun | None = None

    def videos_frame(self) -> pd.DataFrame:
        """The latent truth of every stimulus (:attr:`Simulation.videos`)."""
        return videos_table(self.videos, self.truth)

    def participants_frame(self) -> pd.DataFrame:
        """Each participant who started: her latent parameters (``Simulation.participants``)."""
        return participants_table(self.participants, self.n_participants)

    def to_simulation(self) -> Simulation:
        """The same study as DataFrames (no copy of the trial columns)."""
        cols = dict(self.trials)
        cols["role"] = pd.Categorical.from_codes(
            cols["role"], categories=list(ROLE_NAMES), validate=False
        )
        return Simulation(
            protocol=self.protocol,
            params=self.params,
            seed=self.seed,
            # copy=False keeps each column its own block: no 2-million-row copy to consolidate
            trials=pd.DataFrame(cols, copy=False),
            videos=self.videos_frame(),
            participants=self.participants_frame(),
            top_up=self.top_up,
            admissions=self.admissions,
            pilot=self.pilot,
        )


# --------------------------------------------------------------------------- the fused step
@njit(cache=True, parallel=True)
def _play_step(
    seed,
    step_index,
    pid,
    base,
    start,
    ability,
    fa,
    lapse,
    careless,
    items_video,
    item_prior_onset,
    seq,
    group_of_item,
    group_role,
    from_earlier,
    vs,
    cs,
    cols,
    item_onset,
    shown,
    failed,
    end,
):
    """One step for every participant who plays it, straight into the trial table.

    Per participant: her sequence (:func:`memsim.sim.sequence._fill_one`, her own stream), what
    each slot shows (as :func:`_slots` and :func:`_inputs`), her session
    (:func:`memsim.sim.kernel.play_row`), each written into the table's columns ``cols`` at her
    rows ``base[i] .. base[i] + L``; and for the steps after, the onset of each item's last
    played showing, the slots played and when the session ended. No per-slot array is made
    between the stages: the sequence's lags, the stimuli, roles and repeats are written where
    the table keeps them and read back from there.
    """
    length, g_start, g_count, g_lo, g_hi, order, singles, max_restarts, perm_size = seq
    participant, step, position, c_video, c_role, c_repeat, c_lag, c_delay = cols[:8]
    c_response, c_rt, c_onset = cols[8:]
    duration, gap, ends_on_press = cs[5], cs[6], cs[7]
    L = length
    n = pid.shape[0]
    chunk = 64
    for c in prange((n + chunk - 1) // chunk):
        perm = np.empty(perm_size, np.int32)
        item = np.empty(L, np.int32)
        first_pos = np.empty(L, np.int32)
        prior = np.empty(L)
        for i in range(c * chunk, min(n, (c + 1) * chunk)):
            b = base[i]
            p = pid[i]
            lag = c_lag[b : b + L]
            state = stream_key(seed, SEQUENCE, p * 256 + step_index)
            _, f, _ = _fill_one(
                state,
                L,
                g_start,
                g_count,
                g_lo,
                g_hi,
                order,
                singles,
                max_restarts,
                item,
                lag,
                perm,
            )
            failed[i] = f
            if f >= 0:
                shown[i] = 0
                continue
            video = c_video[b : b + L]
            role = c_role[b : b + L]
            repeat = c_repeat[b : b + L]
            for k in range(L):
                it = item[k]
                g = group_of_item[it]
                within = lag[k] >= 0
                earlier = from_earlier[g]
                video[k] = items_video[i, it]
                role[k] = group_role[g]
                repeat[k] = within or earlier
                first_pos[k] = k - lag[k] if within else -1
                prior[k] = item_prior_onset[i, it] if earlier else np.nan
            onset = c_onset[b : b + L]
            response = c_response[b : b + L]
            rt = c_rt[b : b + L]
            m = play_row(
                p,
                video,
                role,
                repeat,
                first_pos,
                prior,
                start[i],
                ability[i],
                fa[i],
                lapse[i],
                careless[i],
                vs,
                cs,
                response,
                rt,
                onset,
                c_delay[b : b + L],
            )
            shown[i] = m
            for k in range(L):
                participant[b + k] = p
                step[b + k] = step_index + 1
                position[b + k] = k
            for j in range(item_onset.shape[1]):
                item_onset[i, j] = np.nan
            for k in range(m):
                item_onset[i, item[k]] = onset[k]
            last = m - 1
            shown_for = duration
            if response[last] and ends_on_press:
                shown_for = np.float64(rt[last])
            end[i] = onset[last] + shown_for + gap


@njit(cache=True)
def _compact(cols, reserved_base, reserved, played, total):
    """Close the gaps that sessions shorter than reserved left: move each (participant, step)
    block of rows down to its final place, in table order (a block only ever moves down)."""
    dest = 0
    for q in range(reserved_base.shape[0]):
        src = reserved_base[q]
        m = played[q]
        if src != dest:
            for col in literal_unroll(cols):
                col[dest : dest + m] = col[src : src + m]  # overlapping: as if through a buffer
        dest += m
    return dest


_COLUMN_DTYPES = (
    np.int64,
    np.int8,
    np.int16,
    np.int32,
    np.int8,
    np.bool_,
    np.int16,
    np.float64,
    np.bool_,
    np.float32,
    np.float64,
)


def _columns(capacity: int, workspace: dict | None) -> tuple:
    """The trial table's columns, ``capacity`` rows: fresh, or views into ``workspace``."""
    if workspace is None:
        return tuple(np.empty(capacity, dtype=d) for d in _COLUMN_DTYPES)
    have = workspace.get("columns")
    if have is None or have[0].shape[0] < capacity:
        # a little room to spare: the next run of the batch may play a few more slots
        have = tuple(np.empty(int(capacity * 1.05) + 1024, dtype=d) for d in _COLUMN_DTYPES)
        workspace["columns"] = have
    return tuple(c[:capacity] for c in have)


def _sequence_args(layout, step_index: int, max_restarts: int = 1000) -> tuple:
    plan = _sequence_plan(layout)
    perm_size = max([1, plan[5].size] + [int(c) for c in layout.group_count])
    return (layout.length, *plan, max_restarts, perm_size)


def _step_args(prepared, params, seed, s, videos) -> tuple:
    """What :func:`_play_step` takes of step ``s`` besides the participants (its sequence
    layout, item groups and the stimuli's tables), made once per step."""
    layout = prepared.layouts[s]
    return (
        _sequence_args(layout, s),
        layout.group_of_item,
        prepared.group_role[s],
        prepared.from_earlier[s],
        *step_tables(videos, _constants(prepared.protocol, params, seed, s)),
    )


def _play_rows(
    seed, s, layout, args, pid, base, start, items, prior_onset, parts, cols, check=True
):
    """Participants ``pid``'s sessions of step ``s`` into ``cols`` at rows ``base[i] ..``
    (:func:`_play_step`; ``args`` from :func:`_step_args`): ``(item_onset, shown, end)``.
    With ``check``, one participant's sequence first: an infeasible layout fails once, not
    once per participant."""
    n = pid.shape[0]
    item_onset = np.empty((n, layout.n_items))
    shown = np.zeros(n, dtype=np.int32)
    end = np.zeros(n)
    if n == 0:
        return item_onset, shown, end
    if check:
        _, _, f, _ = _sequence_run(layout, seed, pid[:1], s, 1000)
        if f[0] >= 0:
            raise _sequence_failure(layout, s, int(pid[0]), int(f[0]), 1000)
    failed = np.empty(n, dtype=np.int32)
    _play_step(
        np.uint64(seed),
        s,
        pid,
        np.ascontiguousarray(base, dtype=np.int64),
        np.ascontiguousarray(start, dtype=np.float64),
        parts.ability[pid],
        parts.fa[pid],
        parts.lapse[pid],
        parts.careless[pid],
        np.ascontiguousarray(items, dtype=np.int32),
        np.ascontiguousarray(prior_onset, dtype=np.float64),
        *args,
        cols,
        item_onset,
        shown,
        failed,
        end,
    )
    bad = np.flatnonzero(failed >= 0)
    if bad.size:
        i = int(bad[0])
        raise _sequence_failure(layout, s, int(pid[i]), int(failed[i]), 1000)
    return item_onset, shown, end


def _play_fused(
    prepared, seed, s, args, pid, start, items_video, item_prior_onset, base, parts, cols
):
    """Step ``s`` for participants ``pid`` into ``cols`` (:func:`_play_rows`); what the next
    step needs of it."""
    layout = prepared.layouts[s]
    item_onset, shown, end = _play_rows(
        seed, s, layout, args, pid, base, start, items_video, item_prior_onset, parts, cols
    )
    return {
        "pid": pid,
        "items_video": items_video,
        "item_onset": item_onset,
        "shown_item": ~np.isnan(item_onset),
        "group_of_item": layout.group_of_item,
        "complete": shown == prepared.protocol.steps[s].length,
        "end": end,
        "shown": shown,
    }


@njit(cache=True)
def _compact_from_first(col, first, length, n_steps, reserved_base, played):
    """:func:`_compact` of one column whose step-1 blocks are still where
    :class:`_FirstStepKept` played them (participant ``p``'s at rows ``p * length ..`` of
    ``first``): each (participant, step) block to its final place, in table order, step 1's
    read from ``first``, the later steps' moved down within ``col``. A block is never
    written over before it is read: every block's final place starts at or before its
    reserved one, and a step-1 block is at most its reservation long."""
    dest = 0
    for q in range(reserved_base.shape[0]):
        m = played[q]
        if q % n_steps == 0:
            a = (q // n_steps) * length
            col[dest : dest + m] = first[a : a + m]  # a slice copy: twice a loop's speed here
        else:
            src = reserved_base[q]
            if src != dest:  # overlapping slices are copied as if through a buffer
                col[dest : dest + m] = col[src : src + m]
        dest += m
    return dest


_TARGET, _VIGILANCE = ROLE_CODES["target"], ROLE_CODES["vigilance"]


@njit(cache=True)
def _tally_rows(role, repeat, response, row0, shown, length):
    """Participant ``i``'s played rows ``row0[i] .. row0[i] + shown[i]`` tallied by slot kind
    and response (int64[n, 4, 2]): :func:`memsim.sim.kernel.play_and_tally`'s tally, read from
    trial rows (kinds as :func:`memsim.analysis.filters.slot_kinds`: role codes in
    :data:`ROLE_CODES` order)."""
    n = row0.shape[0]
    tally = np.zeros((n, 4, 2), dtype=np.int64)
    for i in range(n):
        b = row0[i]
        for k in range(b, b + shown[i]):
            kind = 0
            if repeat[k]:
                kind = 1 if role[k] == _VIGILANCE else (2 if role[k] == _TARGET else 3)
            tally[i, kind, 1 if response[k] else 0] += 1
    return tally


def _row_verdicts(cols: tuple, base: np.ndarray, shown: np.ndarray, step) -> np.ndarray:
    """Whether ``step``'s filters keep each participant whose played rows are
    ``base[i] .. base[i] + shown[i]`` of the trial columns ``cols`` (what the campaign and
    the step-2 rounds judge a session by when it ends)."""
    tally = _tally_rows(cols[4], cols[5], cols[8], base, shown, step.length)
    return passes(stats_from_tally(tally, step.length), step.filters)


class _FirstStepKept:
    """Step 1 played once when the campaign needs its verdicts (``counts: kept`` or
    ``received``).

    :meth:`judge` plays a batch of participants' step-1 sessions the way the fused step plays
    them (:func:`_play_step`: her sequence and session from her own streams) into trial rows
    of its own, participant ``p`` at rows ``p * L .. p * L + L``, keeps those rows, when each
    session ended and each item's onset, and returns the verdicts of step 1's filters.
    :meth:`place` then hands over what the later steps need of step 1 instead of playing it
    again, and the kept rows go straight to their final place in the trial table when it is
    compacted (:func:`_compact_from_first`): one copy of step 1's rows. A participant judged
    twice (the in-order campaign handing over to simpy) is played again into the same rows:
    the same draws, the same rows.

    With a ``workspace`` (:func:`simulate_arrays`) the rows are kept in its memory from one
    simulation to the next, as the trial columns are.
    """

    def __init__(self, prepared, params, seed, parts, videos, workspace=None):
        protocol = prepared.protocol
        self.protocol, self.seed, self.parts = protocol, seed, parts
        self.step = protocol.steps[0]
        self.layout = layout = prepared.layouts[0]
        self.L = L = self.step.length
        self.args = _step_args(prepared, params, seed, 0, videos)
        n, k1 = prepared.max_participants, self.step.n_new
        key = (L, layout.n_items, k1)
        have = workspace.get("first_step") if workspace is not None else None
        if have is None or have["key"] != key or have["n"] < n:
            have = {
                "key": key,
                "n": n,
                # untouched pages cost nothing: a budget far above the participants who come
                # takes no memory until they are played
                "cols": tuple(np.empty(n * L, dtype=d) for d in _COLUMN_DTYPES),
                "item_onset": np.empty((n, layout.n_items)),
                "shown": np.empty(n, dtype=np.int32),
                "end": np.empty(n),
                "items": np.empty((n, k1), dtype=np.int32),
                "start": np.empty(n),
                "judged": np.empty(n, dtype=np.bool_),
                "kept": np.empty(n, dtype=np.bool_),
            }
            if workspace is not None:
                workspace["first_step"] = have
        self.kept = have
        self.rows = have["cols"]  # the trial columns of the sessions played
        have["judged"][:] = False
        self.checked = False

    def judge(self, pid: np.ndarray, items: np.ndarray, start: np.ndarray):
        """``(end_s, kept)`` of these participants' step 1 under its filters, their rows kept."""
        k = self.kept
        if pid.shape[0] == 0:
            return np.zeros(0), np.zeros(0, dtype=bool)
        pid = np.ascontiguousarray(pid, dtype=np.int64)
        items = np.ascontiguousarray(items, dtype=np.int32)
        start = np.ascontiguousarray(start, dtype=np.float64)
        item_onset, shown, end = _play_rows(
            self.seed, 0, self.layout, self.args, pid, pid * self.L, start, items,
            np.empty((0, 0)), self.parts, k["cols"], check=not self.checked,
        )  # fmt: skip
        self.checked = True
        k["item_onset"][pid] = item_onset
        k["shown"][pid] = shown
        k["end"][pid] = end
        k["items"][pid] = items
        k["start"][pid] = start
        k["judged"][pid] = True
        kept = _row_verdicts(k["cols"], pid * self.L, shown, self.step)
        k["kept"][pid] = kept
        return end, kept

    def place(self, plan) -> dict | None:
        """What the next step needs of the plan's participants' step 1 (as :func:`_play_fused`
        returns it, with the verdicts as ``kept``), their rows left in :attr:`rows`
        (participant ``p``'s at ``p * L ..``); None unless every participant was judged with
        the plan's items and start."""
        k = self.kept
        P = plan.n_participants
        if not (
            k["judged"][:P].all()
            and np.array_equal(k["items"][:P], plan.step1_items)
            and np.array_equal(k["start"][:P], plan.arrival_s)
        ):
            return None
        item_onset = k["item_onset"][:P]
        shown = k["shown"][:P]
        return {
            "pid": np.arange(P, dtype=np.int64),
            "items_video": plan.step1_items,
            "item_onset": item_onset,
            "shown_item": ~np.isnan(item_onset),
            "group_of_item": self.layout.group_of_item,
            "complete": shown == self.L,
            "end": k["end"][:P],
            "shown": shown,
            "kept": k["kept"][:P],
        }


#: the campaign engine :func:`_campaign` asks :func:`plan_campaign` for; tests set it to
#: ``"simpy"`` to check a whole simulation against the reference engine
_CAMPAIGN_ENGINE = "auto"

#: whether a campaign that needs step 1's verdicts keeps the sessions it plays for them and
#: the trial table takes them from it (:class:`_FirstStepKept`) instead of playing step 1 again;
#: tests set it to False to check the two give the same bytes
_KEEP_FIRST_STEP = True


def _campaign(
    prepared,
    params,
    seed,
    keep: bool = False,
    workspace: dict | None = None,
    stimuli_seed: int | None = None,
):
    """``(videos, participants, plan, kept)``: ``kept`` the :class:`_FirstStepKept` that judged
    step 1 when ``keep`` and the policy needs verdicts, else None. The stimuli are drawn with
    ``stimuli_seed`` where one is given, everything else with ``seed``."""
    protocol = prepared.protocol
    videos = draw_videos(
        params, protocol.stimuli.count, seed if stimuli_seed is None else stimuli_seed
    )
    # prefix-stable: the first n are the same
    parts = draw_participants(params, prepared.max_participants, seed)
    player = kept = None
    needs = feedback(protocol)  # the policy learns from step-1 sessions as they end
    if needs == "judge" and keep:
        kept = _FirstStepKept(prepared, params, seed, parts, videos, workspace)
    elif needs is not None:
        player = _FirstStepPlayer(protocol, params, seed, parts, videos)
    plan = plan_campaign(
        protocol,
        seed,
        params.participants.return_probability,
        observe=player.observe if player is not None else None,
        judge=kept.judge if kept is not None else player.judge if player is not None else None,
        min_press_s=params.participants.rt.min_s,
        engine=_CAMPAIGN_ENGINE,
    )
    return videos, parts, plan, kept


def _ticker(steps, progress):
    stages = ["campaign"] + [f"step {i + 1}" for i in range(len(steps))] + ["tables"]
    if progress is None:
        return lambda stage: None
    # numba compiles the step's kernels at their first call (seconds): say so before, not after
    note = "compiling kernels (first run only)" if _jitcache.cold("sim/simulate") else ""
    if note:
        report(progress, "simulate", note, 0, len(stages), unit="stages")

    def tick(stage: str) -> None:
        if stage == "done":
            report(progress, "simulate", "done", len(stages), len(stages), unit="stages")
        else:
            done = stages.index(stage)
            report(progress, "simulate", stage, done, len(stages), unit="stages", detail=note)

    return tick


def simulate_arrays(
    prepared: PreparedProtocol,
    params: Params,
    seed: int = 0,
    progress: ProgressCallback | None = None,
    workspace: dict | None = None,
    stimuli_seed: int | None = None,
) -> SimulatedArrays:
    """Simulate the whole study into arrays (see :func:`simulate`, which wraps this).

    Every step is played by one numba call per step that writes straight into the trial
    table (:func:`_play_step`); rows are reserved for full sessions of everyone who may play
    a step, and the gaps that shorter sessions leave are closed at the end. When the campaign
    needs step 1's verdicts (``counts: kept`` or ``received``), the sessions it played for them
    are kept and copied into the table as it is compacted (:class:`_FirstStepKept`): step 1 is
    played once. The result is the same, byte for byte, as playing the stages one after the
    other (:func:`simulate_stepwise`, the reference).

    Parameters
    ----------
    prepared : PreparedProtocol
        From :func:`prepare` (scaled already).
    params : Params
    seed : int
    progress : callable, optional
        Receives a :class:`memsim.progress.Progress` at each stage.
    workspace : dict, optional
        Memory to reuse from one call to the next (an empty dict at first): the trial
        columns (and step 1's kept sessions) are then views into it, overwritten by the next
        call with the same workspace. Fresh memory costs more than the writing itself (each
        new page is faulted in and zeroed), so a batch of runs keeps one
        (:mod:`memsim.sim.batch`).
    stimuli_seed : int, optional
        Draw the stimuli's latent parameters with this seed instead of ``seed`` (see
        :func:`simulate`).

    Returns
    -------
    SimulatedArrays
    """
    if prepared.pilot is not None:
        return _with_pilot(
            simulate_arrays, prepared, params, seed, stimuli_seed,
            progress=progress, workspace=workspace,
        )  # fmt: skip
    protocol = prepared.protocol
    steps = protocol.steps
    S = len(steps)
    tick = _ticker(steps, progress)
    tick("campaign")
    videos, parts, plan, kept = _campaign(
        prepared, params, seed, _KEEP_FIRST_STEP, workspace, stimuli_seed
    )
    P = plan.n_participants
    # rows reserved: a full session of step 1 for everyone, of a later step for whoever returns
    reserved = np.zeros((P, S), dtype=np.int64)
    reserved[:, 0] = steps[0].length
    for s in range(1, S):
        reserved[plan.later[s - 1].rows, s] = steps[s].length
    flat = reserved.ravel()
    reserved_base = (np.cumsum(flat) - flat).reshape(reserved.shape)
    capacity = int(flat.sum())
    cols = _columns(capacity, workspace)
    played = np.zeros((P, S), dtype=np.int64)
    prev = first_rows = None
    outs: list[dict] = []  # what each step returned (participant order)
    for s in range(S):
        if s > 0:
            outs.append(prev)
        tick(f"step {s + 1}")
        if s == 0 and kept is not None:  # played already, for the campaign's verdicts
            prev = kept.place(plan)
            if prev is not None:  # its rows stay where they were played until the compaction
                played[:, 0] = prev["shown"]
                first_rows = kept.rows
                continue
        args = _step_args(prepared, params, seed, s, videos)
        if s > 0 and plan.later[s - 1].pick is not None:  # picked, played and judged in rounds

            def play(pid, start, items_video, item_prior_onset, s=s, args=args):
                base = reserved_base[pid, s]
                out = _play_fused(
                    prepared, seed, s, args, pid, start, items_video, item_prior_onset, base,
                    parts, cols,
                )  # fmt: skip
                played[pid, s] = out["shown"]
                return out, _row_verdicts(cols, base, out["shown"], steps[s])

            prev = _later_step_in_rounds(
                protocol, s, prepared.layouts[s], plan.later[s - 1], prev, seed, play
            )
            continue
        if s == 0:
            pid = np.arange(P, dtype=np.int64)
            start, items_video = plan.arrival_s, plan.step1_items
            item_prior_onset = np.empty((0, 0))
        else:
            pid, start, items_video, item_prior_onset = _later_step_items(
                protocol, s, prepared.layouts[s], plan.later[s - 1], prev, seed
            )
        prev = _play_fused(
            prepared,
            seed,
            s,
            args,
            pid,
            start,
            items_video,
            item_prior_onset,
            reserved_base[pid, s],
            parts,
            cols,
        )
        played[pid, s] = prev["shown"]
    outs.append(prev)
    top = None
    if protocol.campaign.top_up is not None:
        top, parts, extra = _top_up_fused(
            prepared, params, seed, videos, parts, outs, cols, reserved_base, played
        )
    tick("tables")
    total = int(played.sum())
    buffers = workspace["columns"] if workspace is not None else cols  # room past `total`
    if first_rows is not None:  # step 1's kept rows go to their places as the gaps close
        for col, first in zip(cols, first_rows):
            _compact_from_first(
                col, first, steps[0].length, S, reserved_base.ravel(), played.ravel()
            )
        cols = tuple(c[:total] for c in cols)
    elif total != capacity:
        _compact(cols, reserved_base.ravel(), reserved.ravel(), played.ravel(), total)
        cols = tuple(c[:total] for c in cols)
    n_started = P
    if top is not None and top.rounds:
        # the top-up's participants come after the campaign's: their rows follow, written into
        # the room the compaction left (no fresh table of 2 M rows), else appended
        n_x = extra["participant"].shape[0]
        if buffers[0].shape[0] - total >= n_x:
            for b, name in zip(buffers, TRIAL_COLUMNS):
                b[total : total + n_x] = extra[name]
            cols = tuple(b[: total + n_x] for b in buffers)
        else:
            cols = tuple(np.concatenate([c, extra[name]]) for c, name in zip(cols, TRIAL_COLUMNS))
        n_started += top.participants
    truth = expected_scores(protocol, params, videos)
    tick("done")
    return SimulatedArrays(
        protocol=protocol,
        params=params,
        seed=seed,
        trials=dict(zip(TRIAL_COLUMNS, cols)),
        videos=videos,
        participants=parts,
        n_participants=n_started,
        truth=truth,
        top_up=top,
        admissions=admissions(protocol, plan),
    )


def _top_up_fused(prepared, params, seed, videos, parts, outs, cols, reserved_base, played):
    """The top-up rounds (:func:`memsim.sim.topup.run_top_up`) played by the fused step, each
    batch into rows of its own; ``(TopUpResult, participants, the top-up's trial columns)``."""
    steps = prepared.protocol.steps
    kept = [  # the campaign's verdicts where it judged the sessions already, else judged here
        o["kept"]
        if "kept" in o
        else _row_verdicts(cols, reserved_base[o["pid"], s], played[o["pid"], s], steps[s])
        for s, o in enumerate(outs)
    ]
    args = [_step_args(prepared, params, seed, s, videos) for s in range(len(steps))]
    tables: list[dict] = []

    def play(s, pid, start, items_video, item_prior_onset, parts_now):
        L = steps[s].length
        tcols = _columns(pid.shape[0] * L, None)
        base = np.arange(pid.shape[0], dtype=np.int64) * L
        out = _play_fused(
            prepared, seed, s, args[s], pid, start, items_video, item_prior_onset, base,
            parts_now, tcols,
        )  # fmt: skip
        verdicts = _row_verdicts(tcols, base, out["shown"], steps[s])
        flat = (np.arange(L)[None, :] < out["shown"][:, None]).ravel()
        rows = {c: col[flat] for c, col in zip(TRIAL_COLUMNS, tcols)}
        tables.append({"_s": s, "_pid": pid, "_shown": out["shown"], **rows})
        return out, verdicts

    P = played.shape[0]
    top, parts = run_top_up(
        prepared, params, seed, parts, outs[0], kept[0], outs[1], kept[1], P, play
    )
    extra = _assemble(tables, top.participants, len(steps), P) if tables else None
    return top, parts, extra


def _assemble(tables: list[dict], n: int, S: int, pid0: int = 0) -> dict:
    """Trial columns from per-(step, batch) row tables (``_s``, ``_pid``, ``_shown`` and the
    rows), in participant, step, position order; participants ``pid0 .. pid0 + n``."""
    per = np.zeros((n, S), dtype=np.int64)
    for t in tables:
        per[t["_pid"] - pid0, t["_s"]] = t["_shown"]
    base = (np.cumsum(per.ravel()) - per.ravel()).reshape(per.shape)
    total = int(per.sum())
    cols = {c: np.empty(total, dtype=tables[0][c].dtype) for c in TRIAL_COLUMNS}
    for t in tables:
        dest = np.repeat(base[t["_pid"] - pid0, t["_s"]], t["_shown"]) + t["position"]
        for c in TRIAL_COLUMNS:
            cols[c][dest] = t[c]
    return cols


def play_step(
    prepared: PreparedProtocol,
    params: Params,
    seed: int,
    videos,
    parts,
    s: int,
    pid: np.ndarray,
    start: np.ndarray,
    items_video: np.ndarray,
    item_prior_onset: np.ndarray,
) -> tuple[dict, np.ndarray, dict, np.ndarray]:
    """Play step ``s`` for participants ``pid`` on the chosen stimuli, in numpy around the
    tested kernels: the sessions of :func:`simulate_stepwise`, and of scripts that play
    sessions of their own (``calibration/topup.py``).

    ``videos`` and ``parts`` are the campaign's stimuli and participants, ``start`` each
    session's start (s), ``items_video`` the stimulus of each item place and
    ``item_prior_onset`` its onset in an earlier step (NaN: none). Returns ``(out, kept,
    rows, shown)``: what a later step needs (ids, stimuli, item onsets, completion, session
    end), the step's verdicts (its filters passed), the trial rows (the SPEC's columns,
    ``role`` as int8 codes) and the presentations each session showed.
    """
    protocol = prepared.protocol
    step, layout = protocol.steps[s], prepared.layouts[s]
    n = pid.shape[0]
    item, lag = generate_sequences(layout, seed, pid, s)
    sl = _slots(step, layout, item, lag)
    x = _inputs(sl, pid, items_video, item_prior_onset, start, parts)
    response, rt, onset, delay, shown = simulate_step(
        x, videos, _constants(protocol, params, seed, s)
    )
    pos = np.arange(step.length, dtype=np.int32)[None, :]
    shown_mask = pos < shown[:, None]
    item_onset = np.full((n, layout.n_items), np.nan)
    at = np.broadcast_to(np.arange(n)[:, None], item.shape)
    for sel in (shown_mask & ~sl["within"], shown_mask & sl["within"]):
        item_onset[at[sel], item[sel]] = onset[sel]
    out = {
        "pid": pid,
        "items_video": items_video,
        "item_onset": item_onset,
        "shown_item": ~np.isnan(item_onset),
        "group_of_item": layout.group_of_item,
        "complete": shown == step.length,
        "end": _session_end(protocol, response, rt, onset, shown),
    }
    flat = shown_mask.ravel()
    rows = {
        "participant": np.repeat(pid, step.length)[flat],
        "step": np.full(int(flat.sum()), s + 1, dtype=np.int8),
        "position": np.broadcast_to(pos, item.shape).ravel()[flat].astype(np.int16),
        "video": x.video.ravel()[flat].astype(np.int32),
        "role": sl["role"].ravel()[flat].astype(np.int8),
        "repeat": x.repeat.ravel()[flat],
        "lag": lag.ravel()[flat].astype(np.int16),
        "delay_s": delay.ravel()[flat],
        "response": response.ravel()[flat],
        "rt_s": rt.ravel()[flat],
        "onset_s": onset.ravel()[flat],
    }
    # the step's verdicts, tallied here in numpy (the fused path tallies trial rows)
    kind = slot_kinds(sl["role"], x.repeat)
    tally = np.zeros((n, 4, 2), dtype=np.int64)
    np.add.at(tally, (at[shown_mask], kind[shown_mask], response[shown_mask].astype(int)), 1)
    return out, passes(stats_from_tally(tally, step.length), step.filters), rows, shown


def simulate_stepwise(
    prepared: PreparedProtocol, params: Params, seed: int = 0, stimuli_seed: int | None = None
) -> SimulatedArrays:
    """The reference of :func:`simulate_arrays`: each stage of each step played for every
    participant before the next (sequences, slots, kernel, table), in numpy around the
    tested kernels (:func:`~memsim.sim.sequence.generate_sequences`,
    :func:`~memsim.sim.kernel.simulate_step`)."""
    if prepared.pilot is not None:
        return _with_pilot(simulate_stepwise, prepared, params, seed, stimuli_seed)
    protocol = prepared.protocol
    steps = protocol.steps
    videos, parts, plan, _ = _campaign(prepared, params, seed, stimuli_seed=stimuli_seed)
    tables = []
    P = plan.n_participants
    verdicts = np.zeros((P, len(steps)), dtype=bool)

    def play(s, pid, start, items_video, item_prior_onset, parts_now=None):
        out, kept, rows, shown = play_step(
            prepared, params, seed, videos, parts if parts_now is None else parts_now, s, pid,
            start, items_video, item_prior_onset,
        )  # fmt: skip
        tables.append({"_s": s, "_pid": pid, "_shown": shown, **rows})
        if parts_now is None:  # the campaign's
            verdicts[pid, s] = kept
        return out, kept

    prev = None
    outs: list[dict] = []
    for s in range(len(steps)):
        if s > 0:
            outs.append(prev)
        if s == 0:
            pid = np.arange(plan.n_participants, dtype=np.int64)
            prev, _ = play(
                0, pid, plan.arrival_s, plan.step1_items, np.full(plan.step1_items.shape, np.nan)
            )
        elif plan.later[s - 1].pick is not None:
            prev = _later_step_in_rounds(
                protocol, s, prepared.layouts[s], plan.later[s - 1], prev, seed,
                lambda *a, s=s: play(s, *a),
            )  # fmt: skip
        else:
            prev, _ = play(
                s,
                *_later_step_items(protocol, s, prepared.layouts[s], plan.later[s - 1], prev, seed),
            )
    outs.append(prev)
    top, n = None, P
    if protocol.campaign.top_up is not None:
        kept = [verdicts[o["pid"], s] for s, o in enumerate(outs)]
        top, parts = run_top_up(
            prepared, params, seed, parts, outs[0], kept[0], outs[1], kept[1], P, play
        )
        n += top.participants
    return SimulatedArrays(
        protocol=protocol,
        params=params,
        seed=seed,
        trials=_assemble(tables, n, len(steps)),
        videos=videos,
        participants=parts,
        n_participants=n,
        truth=expected_scores(protocol, params, videos),
        top_up=top,
        admissions=admissions(protocol, plan),
    )


def _with_pilot(run, prepared, params, seed, stimuli_seed, **kwargs) -> SimulatedArrays:
    """The campaign (``run``: :func:`simulate_arrays` or :func:`simulate_stepwise`) and its
    pilot (``campaign.pilot``) as one study: the pilot simulated with :func:`pilot_seed` on
    the campaign's stimuli, its players numbered after the campaign's and its rows after
    theirs; the campaign's onsets moved to start ``gap_h`` after the pilot's last one."""
    main = run(replace(prepared, pilot=None), params, seed, stimuli_seed=stimuli_seed, **kwargs)
    workspace = kwargs.get("workspace")
    sub = None if workspace is None else workspace.setdefault("pilot", {})
    extra_kw = {} if run is simulate_stepwise else {"workspace": sub}
    pseed = pilot_seed(seed)
    pilot = run(
        prepared.pilot,
        params,
        pseed,
        stimuli_seed=seed if stimuli_seed is None else stimuli_seed,
        **extra_kw,
    )
    n_main, n_pilot = main.n_participants, pilot.n_participants
    gap_h = prepared.protocol.campaign.pilot.gap_h
    extra = pilot.trials
    shift = (float(extra["onset_s"].max()) if extra["onset_s"].size else 0.0) + gap_h * 3600.0
    trials = {}
    for name, column in main.trials.items():
        more = extra[name]
        if name == "participant":
            more = more + n_main
        trials[name] = np.concatenate([column, more.astype(column.dtype, copy=False)])
    trials["onset_s"][: main.trials["onset_s"].shape[0]] += shift  # the campaign's, in the copy
    a, b = main.participants, pilot.participants
    parts = Participants(
        **{
            f.name: np.concatenate([getattr(a, f.name)[:n_main], getattr(b, f.name)[:n_pilot]])
            for f in fields(Participants)
        }
    )
    steps = extra["step"]
    who = extra["participant"]
    later = tuple(
        int(np.unique(who[steps == s + 1]).size) for s in range(1, len(prepared.protocol.steps))
    )
    return replace(
        main,
        protocol=prepared.protocol,
        trials=trials,
        participants=parts,
        n_participants=n_main + n_pilot,
        pilot=PilotRun(
            participants=n_pilot,
            stimuli=prepared.pilot.protocol.stimuli.count,
            seed=pseed,
            later=later,
            shift_s=shift,
        ),
    )


def simulate(
    protocol: Protocol,
    params: Params,
    seed: int = 0,
    scale: float = 1.0,
    progress: ProgressCallback | None = None,
    stimuli_seed: int | None = None,
) -> Simulation:
    """Simulate the whole study.

    Parameters
    ----------
    protocol, params : Protocol, Params
        What the study does and who plays it.
    seed : int
        Fixes every draw (same seed, same bytes, whatever the thread count).
    scale : float
        Shrink stimuli and participants by this factor (:func:`scale_protocol`).
    progress : callable, optional
        Receives a :class:`memsim.progress.Progress` at each stage (campaign, each step,
        tables).
    stimuli_seed : int, optional
        Draw the stimuli's latent parameters (memorability, forgetting rate, false-alarm
        attraction, ...) with this seed, and everything else (the participants, the
        campaign, every response) with ``seed``: the same videos played by new campaigns,
        to see how much of a statistic's spread from seed to seed is the campaign's own
        (docs/calibration.md). None (the default) draws them with ``seed``, the same bytes as
        ``stimuli_seed=seed``.

    Returns
    -------
    Simulation
    """
    return simulate_arrays(
        prepare(protocol, scale), params, seed, progress, stimuli_seed=stimuli_seed
    ).to_simulation()


PARQUET_CODECS = ("snappy", "lz4", "zstd", "gzip", "none")


def write_table(
    df: pd.DataFrame, path: str | os.PathLike[str], compression: str = "snappy"
) -> None:
    """Write ``df`` as Parquet at ``path``, atomically.

    ``compression``: snappy (the default: ``memsim run``'s files keep their bytes), or lz4, the
    fastest codec measured on the main job's trial table and a little smaller, zstd (a third
    smaller, slower), gzip or none (``benchmarks/bench_parquet.py``, docs/performance.md).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from memsim.io import atomic_path

    if compression not in PARQUET_CODECS:
        known = ", ".join(PARQUET_CODECS)
        raise UserError(f"unknown Parquet codec {compression!r} (known: {known})")
    with atomic_path(path) as tmp:
        # dictionary-encode only the categorical column: a third faster to write
        dict_cols = [c for c in df.columns if isinstance(df[c].dtype, pd.CategoricalDtype)]
        pq.write_table(
            pa.Table.from_pandas(df, preserve_index=False),
            tmp,
            compression=compression,
            use_dictionary=dict_cols or False,
            write_statistics=False,
        )


SIMULATION_TABLES = ("trials", "videos", "participants")


def write_simulation(
    sim: Simulation,
    out: str | os.PathLike[str],
    tables: tuple[str, ...] = SIMULATION_TABLES,
    compression: str = "snappy",
) -> list[Path]:
    """Write the ``tables`` asked for (default all: trials, videos, participants) as Parquet into
    ``out``, each atomically; the paths written."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError("output exists and is not a directory", path=out)
    unknown = [t for t in tables if t not in SIMULATION_TABLES]
    if unknown:
        raise UserError(
            f"unknown table {unknown[0]!r} (known: {', '.join(SIMULATION_TABLES)})", path=out
        )
    paths = []
    for name in tables:
        p = out / f"{name}.parquet"
        write_table(getattr(sim, name), p, compression)
        paths.append(p)
    return paths
