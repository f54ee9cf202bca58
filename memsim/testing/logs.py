"""Memory-game logs built from small, explicit choices, and the studies that hold them.

In: a :class:`~memsim.design.protocol.Protocol` and, per participant, a :class:`Person`: the
bytes behind every choice a game makes (which videos, where each repeat goes, which earlier
items a later step tests, each key press). Out: a :class:`Study` whose trial table follows
the protocol exactly (SPEC "Data contracts"), with the latent truth that produced it.

Every choice is read from its own bytes so that a zero byte is the plainest choice (the
first free video, the shortest lag at the earliest slot, no key press): hypothesis shrinks
bytes toward zero and lists toward empty, so a failing log shrinks to few participants,
few videos and plain sequences (:mod:`memsim.testing.strategies` draws the bytes). Nothing
here imports hypothesis; :func:`build_study` is a pure function of its arguments.

The response model (:class:`Model`): an attentive participant recognises a target with
probability ``truth + slope x (lag - reference lag)`` (clipped to [0, 1]; the truth is the
hit probability at the step's reference lag), recognises a vigilance repeat with
probability 0.95 and presses on a first showing with her own false-alarm probability; a
careless participant presses on anything with probability 0.5.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from memsim.design.protocol import Protocol, protocol_from_mapping, truth_column
from memsim.design.trials import COLUMNS, ROLES
from memsim.errors import UserError
from memsim.testing.columns import Columns, as_columns

__all__ = [
    "Model",
    "Person",
    "Session",
    "Study",
    "build_study",
    "study_from_trials",
    "protocol_violations",
    "retime",
    "layout",
    "StepLayout",
    "TRUTH_LEVELS",
    "FALSE_ALARM_LEVELS",
    "VIGILANCE_HIT_PROBABILITY",
    "CARELESS_PRESS_PROBABILITY",
]

_TARGET, _FILLER, _VIGILANCE = (ROLES.index(r) for r in ("target", "filler", "vigilance"))
#: truth of a video in a step: ``1 - k / TRUTH_LEVELS`` for a drawn k in 0..TRUTH_LEVELS
TRUTH_LEVELS = 20
#: an attentive participant's false-alarm probability, by drawn level
FALSE_ALARM_LEVELS = (0.0, 0.05, 0.1, 0.2)
VIGILANCE_HIT_PROBABILITY = 0.95
CARELESS_PRESS_PROBABILITY = 0.5
_SEARCH_NODES = 20_000  # placements tried before a sequence's choices count as a dead end
_START_SPACING_S = 600.0  # participant i starts step 1 at i x 10 min
_ROLE_DTYPE = pd.CategoricalDtype(list(ROLES))  # built once: pandas' string categories are slow


# --------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class StepLayout:
    """What one step asks of a sequence: its items, which repeat where, what bytes it reads.

    A session reads one byte string per item group (:attr:`group_sizes`), item by item: a
    repeated item reads 4 bytes (lag, slot, response to its first showing, response to its
    repeat), an item from an earlier step 2 (which one, response), a new item shown once 1
    (response). Shrinking a group's count then drops its last items' bytes and leaves every
    other choice where it was.
    """

    length: int
    item_group: np.ndarray  # int64 (n_items,): group index of each item
    item_role: np.ndarray  # int8 (n_items,): role code (ROLES order) of each item
    group_items: tuple  # per group: its item indices
    group_kind: tuple  # per group: "pair", "earlier" or "single"
    new_items: np.ndarray  # int64: items drawn new from the pool, in group order
    pair_order: tuple  # groups shown twice, in placement order (longest minimum lag first)
    group_lags: tuple  # per group: (lo, hi) or None
    single_items: np.ndarray  # int64: items shown once (new fillers, earlier-step items)
    sources: tuple  # per group from an earlier step: (group, source step 0-based, eligible groups)
    reference_lag: float | None  # the correction's reference lag (None: no lag correction)
    delay_h: tuple | None

    @property
    def n_items(self) -> int:
        return len(self.item_group)

    @property
    def group_sizes(self) -> tuple:
        """Bytes each group's items read."""
        per = {"pair": 4, "earlier": 2, "single": 1}
        return tuple(per[k] * len(i) for k, i in zip(self.group_kind, self.group_items))


_LAYOUTS: OrderedDict[int, tuple[Protocol, tuple[StepLayout, ...]]] = OrderedDict()


def layout(protocol: Protocol) -> tuple[StepLayout, ...]:
    """The :class:`StepLayout` of each step (cached per protocol object)."""
    hit = _LAYOUTS.get(id(protocol))
    if hit is not None and hit[0] is protocol:
        _LAYOUTS.move_to_end(id(protocol))
        return hit[1]
    out = []
    for step in protocol.steps:
        group, role, new, singles, items_of, kinds, lags, sources = [], [], [], [], [], [], [], []
        for gi, g in enumerate(step.items):
            items = list(range(len(group), len(group) + g.count))
            group += [gi] * g.count
            role += [ROLES.index(g.role)] * g.count
            items_of.append(tuple(items))
            lags.append(g.repeat_lag)
            if g.repeat_lag is not None:
                kinds.append("pair")
            else:
                singles += items
                kinds.append("single" if isinstance(g.source, str) else "earlier")
            if isinstance(g.source, str):
                new += items
            else:
                earlier = protocol.steps[g.source.step - 1]
                eligible = tuple(
                    i
                    for i, h in enumerate(earlier.items)
                    if h.role in g.source.roles and isinstance(h.source, str)
                )
                sources.append((gi, g.source.step - 1, eligible))
        # longest minimum lag first, then the narrowest range: the validator's greedy order
        pairs = [gi for gi, k in enumerate(kinds) if k == "pair"]
        pairs.sort(key=lambda gi: (-lags[gi][0], lags[gi][1] - lags[gi][0], gi))
        ref = getattr(step.scoring.correction, "reference_lag", None)
        out.append(
            StepLayout(
                length=step.length,
                item_group=np.array(group, np.int64),
                item_role=np.array(role, np.int8),
                group_items=tuple(items_of),
                group_kind=tuple(kinds),
                new_items=np.array(new, np.int64),
                pair_order=tuple(pairs),
                group_lags=tuple(lags),
                single_items=np.array(singles, np.int64),
                sources=tuple(sources),
                reference_lag=None if ref is None else float(ref),
                delay_h=step.delay_h,
            )
        )
    _LAYOUTS[id(protocol)] = (protocol, tuple(out))
    if len(_LAYOUTS) > 256:
        _LAYOUTS.popitem(last=False)
    return tuple(out)


# --------------------------------------------------------------------------- choices
@dataclass(frozen=True)
class Session:
    """One participant's play of one step: the bytes of each item group
    (:attr:`StepLayout.group_sizes`), one byte per single item saying which free slot it
    takes, the delay since the step before (0-255 across the step's window), and how many
    presentations she played (the step's length when she completed it)."""

    groups: tuple  # bytes per item group
    order: bytes
    delay: int
    played: int


@dataclass(frozen=True)
class Person:
    """One participant: the bytes that pick her new videos, whether she plays carelessly, her
    false-alarm level (:data:`FALSE_ALARM_LEVELS`), and her session of each step (None: she
    did not come back for it)."""

    videos: bytes
    careless: bool
    false_alarm_level: int
    sessions: tuple  # Session | None per step


@dataclass(frozen=True)
class Model:
    """The latent truth: per step, each video's hit probability at the reference lag, float64
    (n_videos,), and the change of that probability per position of lag."""

    truth: tuple  # np.ndarray per step
    lag_slopes: tuple  # float per step (0 where the step has no lag reference)


class DeadEnd(Exception):
    """A session's choices found no arrangement within the search budget (the caller rejects
    the example; the protocol validator guarantees that some arrangement exists)."""


def _pick(blob: bytes, n: int, width: int, k: int) -> int:
    """Index in 0..n-1 from ``width`` bytes at ``k``: 0 for zero bytes, spread evenly otherwise."""
    v = int.from_bytes(blob[k : k + width], "big")
    return v * n >> (8 * width)


def _arrange(length: int, lags: Sequence, choices: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """First and second slot of each repeated pair, from its (lag, slot) choice bytes.

    Depth-first: each pair tries its chosen lag and slot first, then the next ones in turn, so
    the choices decide the arrangement and any arrangement the protocol allows is reachable.
    """
    n = len(lags)
    first = np.empty(n, np.int64)
    second = np.empty(n, np.int64)
    free = np.ones(length, bool)
    nodes = [0]

    def place(k: int) -> bool:
        if k == n:
            return True
        lo, hi = lags[k]
        hi = min(hi, length - 1)
        width = hi - lo + 1
        if width <= 0:
            return False
        c_lag, c_slot = choices[k]
        d0 = c_lag * width >> 8
        for j in range(width):
            d = lo + (d0 + j) % width
            ok = np.flatnonzero(free[: length - d] & free[d:])
            m = len(ok)
            if not m:
                continue
            p0 = c_slot * m >> 8
            for i in range(m):
                nodes[0] += 1
                if nodes[0] > _SEARCH_NODES:
                    raise DeadEnd
                p = int(ok[(p0 + i) % m])
                free[p] = free[p + d] = False
                first[k], second[k] = p, p + d
                if place(k + 1):
                    return True
                free[p] = free[p + d] = True
        return False

    if not place(0):
        raise DeadEnd
    return first, second


def _select(blob: bytes, pool: list, count: int, width: int) -> list:
    """``count`` distinct entries of ``pool``, one ``width``-byte choice each (zeros: in order)."""
    pool = list(pool)
    if width == 1:  # the common case, inlined: it runs once per video a participant sees
        n = len(pool)
        return [pool.pop(b * (n - i) >> 8) for i, b in enumerate(blob[:count])]
    return [pool.pop(_pick(blob, len(pool), width, width * i)) for i in range(count)]


# --------------------------------------------------------------------------- the study
@dataclass(frozen=True, eq=False, repr=False)
class Study:
    """A memory-game log and, where known, the truth behind it.

    Attributes
    ----------
    protocol : Protocol
        The protocol the log follows (score it under this one).
    trials : DataFrame
        The log in the trial-table contract (:data:`memsim.design.trials.COLUMNS`, canonical
        dtypes); a drawn one is ordered by participant, step, position.
    truth : DataFrame or None
        Per video: ``video`` (int32) and, per step, its truth column
        (:func:`memsim.design.protocol.truth_column` of the step's score column, float64):
        the hit probability at the step's reference lag. None for a log of unknown truth.
    participants : DataFrame or None
        Per participant: ``participant`` (int64), ``careless`` (bool),
        ``false_alarm_probability`` (float64; 0.5 for a careless one).
    lag_slopes : tuple of float
        Per step, the true change of the hit probability per position of lag.
    columns : Columns
        The user's names; :attr:`log` is :attr:`trials` in them.
    origin : str
        How the log was made (``"drawn"``, ``"simulated, seed 3"``, ``"given"``).
    """

    protocol: Protocol
    trials: pd.DataFrame
    truth: pd.DataFrame | None = None
    participants: pd.DataFrame | None = None
    lag_slopes: tuple = ()
    columns: Columns = field(default_factory=Columns)
    origin: str = "drawn"

    @property
    def log(self) -> pd.DataFrame:
        """The trial table in the user's column names and role labels (a new frame)."""
        return self.columns.to_user(self.trials)

    @property
    def n_participants(self) -> int:
        return int(self.trials["participant"].nunique())

    @property
    def n_videos(self) -> int:
        return int(self.trials["video"].nunique())

    def describe(self, max_rows: int = 200, max_truth: int = 20) -> str:
        """The study as text: the protocol in one line per step, the truth (of the first
        ``max_truth`` videos), the log itself (its first ``max_rows`` rows)."""
        lines = [
            f"Study ({self.origin}): {self.n_participants} participant"
            f"{'s' if self.n_participants != 1 else ''}, {self.n_videos} video"
            f"{'s' if self.n_videos != 1 else ''}, {len(self.trials)} rows"
        ]
        lines += ["  " + s for s in protocol_lines(self.protocol)]
        if self.truth is not None:
            cols = [c for c in self.truth.columns if c != "video"]
            shown = self.truth[self.truth["video"].isin(self.trials["video"].unique())]
            for c in cols:
                vals = ", ".join(
                    f"{int(v)}: {x:g}"
                    for v, x in zip(shown["video"][:max_truth], shown[c].to_numpy()[:max_truth])
                )
                more = f", ... ({len(shown) - max_truth} more)" if len(shown) > max_truth else ""
                lines.append(f"  {c} by video: {vals}{more}")
        if any(self.lag_slopes):
            lines.append("  lag slope by step: " + ", ".join(f"{s:g}" for s in self.lag_slopes))
        if self.participants is not None and self.participants["careless"].any():
            who = self.participants.loc[self.participants["careless"], "participant"]
            lines.append("  careless participants: " + ", ".join(str(int(p)) for p in who))
        log = self.log
        for c in ("delay_s", "rt_s", "onset_s"):
            name = self.columns.user(c)
            if name in log.columns:
                log[name] = log[name].astype(np.float64).round(2)
        text = log.head(max_rows).to_string(index=False)
        lines += ["  " + ln for ln in text.splitlines()]
        if len(log) > max_rows:
            lines.append(f"  ... ({len(log) - max_rows} more rows)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.describe()

    def _repr_pretty_(self, p, cycle) -> None:  # hypothesis' and IPython's printer
        p.text(self.describe())


def protocol_lines(protocol: Protocol) -> list[str]:
    """One short line per step: presentations, items, filters, correction."""
    out = []
    for s, step in enumerate(protocol.steps, start=1):
        parts = []
        for g in step.items:
            if g.repeat_lag is not None:
                parts.append(f"{g.count} {g.role} (lag {g.repeat_lag[0]}-{g.repeat_lag[1]})")
            elif isinstance(g.source, str):
                parts.append(f"{g.count} {g.role}")
            else:
                parts.append(f"{g.count} {g.role} (from step {g.source.step})")
        f = step.filters
        rules = []
        if f.min_completed_fraction > 0:
            rules.append(f"completed>={f.min_completed_fraction:g}")
        if f.min_vigilance_hit_rate is not None:
            rules.append(f"vigilance>={f.min_vigilance_hit_rate:g}")
        if f.min_hit_rate is not None:
            rules.append(f"hits>={f.min_hit_rate:g}")
        if f.max_false_alarm_rate is not None:
            rules.append(f"false alarms<={f.max_false_alarm_rate:g}")
        if f.false_alarms_below_hits:
            rules.append("false alarms<hits")
        c = step.scoring.correction
        corr = c.kind
        if c.kind == "linear":
            corr += f" {c.form}"
        if hasattr(c, "reference_lag"):
            corr += f" to lag {c.reference_lag}"
        out.append(
            f"step {s} {step.name}: {step.length} presentations: {', '.join(parts)}; "
            f"filters: {', '.join(rules) or 'none'}; correction: {corr}"
        )
    return out


# --------------------------------------------------------------------------- building
def _truth_frame(protocol: Protocol, model: Model, n_videos: int) -> pd.DataFrame:
    out = pd.DataFrame({"video": np.arange(n_videos, dtype=np.int32)})
    for step, t in zip(protocol.steps, model.truth):
        out[truth_column(step.scoring.column)] = np.asarray(t, np.float64)
    return out


def build_study(
    protocol: Protocol,
    n_videos: int,
    model: Model,
    persons: Sequence[Person],
    columns: Columns | None = None,
) -> Study:
    """The log that these choices make under this protocol, with its truth.

    Parameters
    ----------
    protocol : Protocol
    n_videos : int
        Size of the video pool (ids 0..n_videos-1); at least the new items of all steps.
    model : Model
        Truth per step (float64 (n_videos,)) and lag slope per step.
    persons : sequence of Person
        Participant i (id i) plays by ``persons[i]``.
    columns : Columns, optional

    Returns
    -------
    Study

    Raises
    ------
    DeadEnd
        A session's choices found no arrangement within the search budget.
    """
    lays = layout(protocol)
    n_new = sum(len(lay.new_items) for lay in lays)
    if n_videos < n_new:
        raise UserError(f"a pool of {n_videos} videos cannot give one participant {n_new} new ones")
    width = 1 if n_videos <= 256 else 2
    stim = protocol.stimuli
    cols: dict[str, list] = {c: [] for c in COLUMNS}
    careless_col, fa_col = [], []
    for pid, person in enumerate(persons):
        chosen = _select(person.videos, range(n_videos), n_new, width)
        fa_p = (
            CARELESS_PRESS_PROBABILITY
            if person.careless
            else FALSE_ALARM_LEVELS[person.false_alarm_level % len(FALSE_ALARM_LEVELS)]
        )
        careless_col.append(person.careless)
        fa_col.append(fa_p)
        cursor = 0
        history: list[dict] = []  # per step played: item -> video, item onset, shown
        end = pid * _START_SPACING_S
        for s, (lay, sess) in enumerate(zip(lays, person.sessions)):
            if sess is None or (s > 0 and (not history or not history[-1]["complete"])):
                break
            L = lay.length
            # videos of this step's items, and each showing's response byte
            item_video = np.empty(lay.n_items, np.int64)
            k = len(lay.new_items)
            item_video[lay.new_items] = chosen[cursor : cursor + k]
            cursor += k
            item_prior = np.full(lay.n_items, np.nan)
            resp_first = np.zeros(lay.n_items, np.uint8)
            resp_second = np.zeros(lay.n_items, np.uint8)
            for gi, (kind, items) in enumerate(zip(lay.group_kind, lay.group_items)):
                b = np.frombuffer(sess.groups[gi], np.uint8).reshape(len(items), -1)
                idx = list(items)
                if kind == "pair":
                    resp_first[idx], resp_second[idx] = b[:, 2], b[:, 3]
                else:
                    resp_first[idx] = b[:, -1]
            for gi, src, eligible_groups in lay.sources:
                prev = history[src] if src < len(history) else None
                if prev is None:
                    raise UserError(f"step {s + 1} draws from step {src + 1}, which was not played")
                taken = prev.setdefault("taken", set())
                pool = [
                    i
                    for i in np.flatnonzero(np.isin(prev["item_group"], eligible_groups))
                    if prev["shown"][i] and i not in taken
                ]
                items = list(lay.group_items[gi])
                if len(pool) < len(items):  # only when her step before this one was cut short
                    raise DeadEnd
                picked = _select(sess.groups[gi][0::2], pool, len(items), 1)
                taken.update(picked)
                item_video[items] = prev["item_video"][picked]
                item_prior[items] = prev["item_onset"][picked]
            # the sequence: pairs by their choices, then singles into the free slots
            pair_items, lags, choices = [], [], []
            for gi in lay.pair_order:
                g = sess.groups[gi]
                for j, item in enumerate(lay.group_items[gi]):
                    pair_items.append(item)
                    lags.append(lay.group_lags[gi])
                    choices.append((g[4 * j], g[4 * j + 1]))
            first, second = _arrange(L, lags, choices)
            slot_item = np.full(L, -1, np.int64)
            lag = np.full(L, -1, np.int64)
            pair_items = np.array(pair_items, np.int64)
            slot_item[first], slot_item[second] = pair_items, pair_items
            lag[second] = second - first
            free = np.flatnonzero(slot_item < 0)
            slot_item[free] = _select(sess.order, list(lay.single_items), len(free), 1)
            role = lay.item_role[slot_item]
            from_earlier = ~np.isnan(item_prior[slot_item])
            repeat = (lag >= 0) | from_earlier
            video = item_video[slot_item]
            rb = np.where(lag >= 0, resp_second[slot_item], resp_first[slot_item])
            # responses from the model, one byte each (a zero byte never presses unless p = 1)
            u = (255.5 - rb) / 256.0
            if person.careless:
                p = np.full(L, CARELESS_PRESS_PROBABILITY)
            else:
                truth = model.truth[s][video]
                if lay.reference_lag is not None:
                    truth = np.where(
                        lag >= 0, truth + model.lag_slopes[s] * (lag - lay.reference_lag), truth
                    )
                p = np.where(
                    repeat & (role == _TARGET),
                    np.clip(truth, 0.0, 1.0),
                    np.where(repeat, VIGILANCE_HIT_PROBABILITY, fa_p),
                )
            response = u < p
            rt = np.where(
                response,
                np.round(stim.duration_s * (0.2 + 0.6 * (rb % 16) / 15.0), 3),
                np.nan,
            ).astype(np.float32)
            n = min(sess.played, L)
            if s == 0:
                start = end
            else:
                lo, hi = lay.delay_h
                start = end + (lo + (hi - lo) * sess.delay / 255.0) * 3600.0
            shown_s = np.where(
                response & stim.response_ends_presentation, rt.astype(np.float64), stim.duration_s
            )
            onset = start + np.concatenate([[0.0], np.cumsum(shown_s + stim.gap_s)[:-1]])
            first_pos = np.where(lag >= 0, np.arange(L) - lag, 0)
            delay = np.where(
                lag >= 0,
                onset - onset[first_pos],
                np.where(from_earlier, onset - item_prior[slot_item], np.nan),
            )
            end = onset[n - 1] + shown_s[n - 1] + stim.gap_s
            item_onset = np.full(lay.n_items, np.nan)
            item_onset[slot_item[:n]] = onset[:n]  # repeats come later: the last showing wins
            history.append(
                {
                    "item_group": lay.item_group,
                    "item_video": item_video,
                    "item_onset": item_onset,
                    "shown": ~np.isnan(item_onset),
                    "complete": n == L,
                }
            )
            cols["participant"].append(np.full(n, pid, np.int64))
            cols["step"].append(np.full(n, s + 1, np.int8))
            cols["position"].append(np.arange(n, dtype=np.int16))
            cols["video"].append(video[:n].astype(np.int32))
            cols["role"].append(role[:n])
            cols["repeat"].append(repeat[:n])
            cols["lag"].append(lag[:n].astype(np.int16))
            cols["delay_s"].append(delay[:n])
            cols["response"].append(response[:n])
            cols["rt_s"].append(rt[:n])
            cols["onset_s"].append(onset[:n])
    data = {c: np.concatenate(v) if v else np.empty(0, COLUMNS[c]) for c, v in cols.items()}
    data["role"] = pd.Categorical.from_codes(data["role"].astype(np.int8), dtype=_ROLE_DTYPE)
    for c, dt in COLUMNS.items():
        if c != "role":
            data[c] = data[c].astype(dt, copy=False)
    participants = pd.DataFrame(
        {
            "participant": np.arange(len(persons), dtype=np.int64),
            "careless": np.array(careless_col, bool),
            "false_alarm_probability": np.array(fa_col, np.float64),
        }
    )
    return Study(
        protocol=protocol,
        trials=pd.DataFrame(data),
        truth=_truth_frame(protocol, model, n_videos),
        participants=participants,
        lag_slopes=tuple(float(x) for x in model.lag_slopes),
        columns=as_columns(columns),
        origin="drawn",
    )


def study_from_trials(
    trials: pd.DataFrame,
    protocol: Protocol,
    *,
    columns: Columns | dict | None = None,
    truth: pd.DataFrame | None = None,
) -> Study:
    """Wrap a trial table (the user's names when ``columns`` is given) as a :class:`Study`,
    so that the oracles can check a scorer on a log the kit did not draw (a real one)."""
    from memsim.design.trials import validate_trials

    cm = as_columns(columns)
    return Study(
        protocol=protocol,
        trials=validate_trials(cm.to_contract(trials)),
        truth=truth,
        columns=cm,
        origin="given",
    )


# --------------------------------------------------------------------------- derived logs
def retime(trials: pd.DataFrame, protocol: Protocol) -> pd.DataFrame:
    """Onsets and delays recomputed from the responses (a press ends a presentation).

    Each participant-step keeps its first onset; within it the onsets follow the responses
    and response times, and ``delay_s`` follows the onsets: within a step from the first
    showing (``lag``), across steps from the video's last showing to the participant in an
    earlier step. Use it after changing responses of a log, so the log stays consistent.
    Returns a new frame, same rows in the same order.
    """
    stim = protocol.stimuli
    part = trials["participant"].to_numpy()
    step = trials["step"].to_numpy()
    order = np.lexsort((trials["position"].to_numpy(), step, part))
    resp = trials["response"].to_numpy()[order]
    shown = np.where(
        resp & stim.response_ends_presentation,
        trials["rt_s"].to_numpy(np.float64)[order],
        stim.duration_s,
    )
    dur = shown + stim.gap_s
    p_o, s_o = part[order], step[order]
    new_group = np.r_[True, (p_o[1:] != p_o[:-1]) | (s_o[1:] != s_o[:-1])]
    grp = np.cumsum(new_group) - 1
    starts = np.flatnonzero(new_group)
    start = trials["onset_s"].to_numpy()[order][starts][grp]
    csum = np.cumsum(dur)
    before = csum - dur - (csum - dur)[starts][grp]
    onset = start + before
    lag = trials["lag"].to_numpy().astype(np.int64)[order]
    rep = trials["repeat"].to_numpy()[order]
    vid = trials["video"].to_numpy()[order]
    old_delay = trials["delay_s"].to_numpy()[order]
    delay = np.full(len(order), np.nan)
    within = lag >= 0
    i = np.flatnonzero(within)
    delay[i] = onset[i] - onset[i - lag[i]]
    # across steps: the last earlier-step showing of the same video to the same participant
    across = np.flatnonzero(rep & ~within)
    if len(across):
        shows = pd.DataFrame({"p": p_o, "v": vid, "s": s_o.astype(np.int64), "onset": onset})
        last = shows.groupby(["p", "v", "s"])["onset"].max()
        best = np.full(len(across), -np.inf)
        for k in range(1, int(s_o[across].max())):
            idx = pd.MultiIndex.from_arrays([p_o[across], vid[across], np.full(len(across), k)])
            got = last.reindex(idx).to_numpy()
            earlier = (k < s_o[across]) & ~np.isnan(got)
            best = np.where(earlier, np.maximum(best, np.where(earlier, got, -np.inf)), best)
        delay[across] = np.where(np.isfinite(best), onset[across] - best, old_delay[across])
    out = trials.copy()
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    out["onset_s"] = onset[back]
    out["delay_s"] = delay[back]
    return out


# --------------------------------------------------------------------------- protocol check
def protocol_violations(trials: pd.DataFrame, protocol: Protocol, limit: int = 10) -> list[str]:
    """What in a contract trial table breaks its protocol ([] when it follows it).

    Checked per participant and step: positions are 0, 1, ... without gaps and at most the
    step's length; a complete session has each role's number of presentations; a within-step
    repeat shows the video seen ``lag`` positions before, as a first showing, at a lag its
    role's range allows; a repeat from an earlier step shows a video the participant saw
    there in an eligible role; a first showing is a video new to the participant.
    """
    out: list[str] = []
    steps = protocol.steps
    t = trials.sort_values(["participant", "step", "position"], kind="stable")
    role_names = t["role"].astype(str).to_numpy()
    for (p, s), g in t.groupby(["participant", "step"], sort=True, observed=True):
        if len(out) >= limit:
            break
        where = f"participant {p} step {s}"
        if not 1 <= s <= len(steps):
            out.append(f"{where}: the protocol has {len(steps)} steps")
            continue
        step = steps[s - 1]
        pos = g["position"].to_numpy()
        if not np.array_equal(pos, np.arange(len(g))):
            out.append(f"{where}: positions are not 0..{len(g) - 1}")
            continue
        if len(g) > step.length:
            out.append(f"{where}: {len(g)} presentations, the step has {step.length}")
        roles = role_names[t.index.get_indexer(g.index)]
        if len(g) == step.length:
            for r in ROLES:
                want = sum(x.presentations for x in step.items if x.role == r)
                got = int((roles == r).sum())
                if got != want:
                    out.append(f"{where}: {got} {r} presentations, the protocol has {want}")
        vid = g["video"].to_numpy()
        rep = g["repeat"].to_numpy()
        lag = g["lag"].to_numpy().astype(np.int64)
        earlier = t[(t["participant"] == p) & (t["step"] < s)]
        seen_before = set(earlier["video"].tolist())
        for i in range(len(g)):
            r = roles[i]
            if rep[i] and lag[i] >= 0:
                j = i - lag[i]
                ranges = protocol.repeat_lags(s - 1, r)  # the pilot's lags included
                if vid[j] != vid[i] or rep[j]:
                    out.append(f"{where} position {i}: lag {lag[i]} does not point at its video")
                elif not any(lo <= lag[i] <= hi for lo, hi in ranges):
                    out.append(f"{where} position {i}: lag {lag[i]} outside {r} lags {ranges}")
            elif rep[i]:
                ok_roles = set()
                for x in step.items:
                    if x.role == r and not isinstance(x.source, str):
                        ok_roles |= set(x.source.roles)
                prior = earlier[(earlier["video"] == vid[i]) & ~earlier["repeat"]]
                if prior.empty or not set(prior["role"].astype(str)) & ok_roles:
                    out.append(
                        f"{where} position {i}: video {vid[i]} tested from an earlier step "
                        "where the participant did not see it in an eligible role"
                    )
            elif vid[i] in seen_before or vid[i] in set(vid[:i].tolist()):
                out.append(f"{where} position {i}: video {vid[i]} shown as new but seen before")
        if len(out) >= limit:
            break
    return out[:limit]


def relaxed_protocol(protocol: Protocol, *, corrections: bool = True) -> Protocol:
    """The protocol with every filter off (incomplete sessions kept too) and, when
    ``corrections`` is False, every lag correction off: the setting of the laws that add
    participants to a log (:mod:`memsim.testing.oracles`)."""
    d = protocol.dump()
    for step in d["steps"]:
        step["filters"] = {"min_completed_fraction": 0.0}
        if not corrections:
            step["scoring"]["correction"] = {"kind": "none"}
    return _cached_protocol(d, f"{protocol.name} (relaxed)")


_PROTOCOLS: OrderedDict[str, Protocol] = OrderedDict()


def _cached_protocol(mapping: dict, name: str) -> Protocol:
    """protocol_from_mapping, remembered by the mapping's text (validation checks the
    arrangement of every step, which is not free)."""
    import json

    key = json.dumps(mapping, sort_keys=True)
    hit = _PROTOCOLS.get(key)
    if hit is None:
        hit = protocol_from_mapping(mapping, name)
        _PROTOCOLS[key] = hit
        if len(_PROTOCOLS) > 1024:
            _PROTOCOLS.popitem(last=False)
    else:
        _PROTOCOLS.move_to_end(key)
    return hit


def lcm_denominator(values: np.ndarray, levels: int = TRUTH_LEVELS) -> int | None:
    """The least common denominator of values on the 1/levels grid (None if one is off it)."""
    k = np.asarray(values, np.float64) * levels
    if not np.allclose(k, np.round(k), atol=1e-9):
        return None
    out = 1
    for x in np.unique(np.round(k).astype(np.int64)):
        out = math.lcm(out, levels // math.gcd(int(x), levels))
    return out
