"""Protocol schema: a memory-game study as a frozen, validated object.

In: a YAML file (see ``docs/protocols.md``). Out: a :class:`Protocol`, whose
field set is closed (an unknown key is an error, so a typo never passes
silently) and whose feasibility is checked at load time: counts add up to each
step's length, the repeats of every step can be arranged within their lag
ranges, a later step has enough eligible earlier items, the stimulus pool can
feed the selection policy, the stopping rule can be met.

Pluggable parts (lag corrections, selection policies, arrival processes,
stopping rules) are tagged unions chosen by ``kind``: adding a variant means
adding one model class to its union, never an ``if`` chain elsewhere.

Every problem leaves :func:`load_protocol` / :func:`protocol_from_mapping` as
one :class:`~memsim.errors.UserError` line: ``FILE: FIELD.PATH: what is wrong``.

This module imports nothing else from memsim but ``errors`` and ``io``: the
schema stands alone.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Strict,
    Tag,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from memsim.errors import UserError
from memsim.io import load_yaml_mapping, unknown_field_message

__all__ = [
    "MAX_LENGTH",
    "NAME_PATTERN",
    "Name",
    "ROLES",
    "Campaign",
    "Filters",
    "FromStep",
    "ItemGroup",
    "Protocol",
    "Scoring",
    "Step",
    "Stimuli",
    "find_arrangement",
    "integer",
    "later_pick_places",
    "number",
    "load_protocol",
    "protocol_from_mapping",
    "protocol_json_schema",
    "summary_lines",
]

ROLES = ("target", "filler", "vigilance")
_MAX_COUNT = 10_000_000  # a sanity bound on every count: huge values are mistakes
MAX_LENGTH = 32_767  # the trial table stores positions and lags as int16
_MAX_HOURS = 24 * 365 * 10  # a delay beyond ten years is a typo
_RANDOM_TRIES = 10  # random arrangements tried when the deterministic ones fail
_SEARCH_NODES = 20_000  # node budget of the exact search (deterministic, unlike a time limit)
_SEARCH_WORK = 400_000  # ... and nodes x pairs: together well under a second
_SEARCH_MAX_LENGTH = 600  # the search recurses once per slot: keep it well within Python's stack


# --------------------------------------------------------------------------- types
def _no_text_or_bool(kind: str):
    """YAML gives ``"40"`` or ``yes`` where a number was meant: refuse, don't coerce."""

    def check(v: Any) -> Any:
        if isinstance(v, (str, bytes, bool)):
            hint = ""
            if isinstance(v, str):
                try:
                    float(v)
                    hint = " (write the number without quotes)"
                except ValueError:
                    pass
            raise PydanticCustomError(
                f"{kind}_type",
                f"Input should be a valid {kind}, got {type(v).__name__} {{value}}{hint}",
                {"value": repr(v)[:40]},
            )
        return v

    return BeforeValidator(check)


def integer(**limits: Any) -> Any:
    """An int field that refuses text (``"40"``) and booleans; ``limits``: ``Field``'s ge/le."""
    # the limits come before the validator: only then does the JSON Schema get minimum/maximum
    return Annotated[int, Field(**limits), _no_text_or_bool("integer")]


def number(**limits: Any) -> Any:
    """A finite float field that refuses text (``"0.5"``), booleans, NaN and infinities."""
    return Annotated[float, Field(allow_inf_nan=False, **limits), _no_text_or_bool("number")]


_int, _float = integer, number


NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def _slug(v: str) -> str:
    if not NAME_PATTERN.fullmatch(v):
        shown = repr(v) if len(v) <= 40 else repr(v[:40]) + "..."
        raise ValueError(
            "must be a name of at most 64 letters, digits, '-' and '_', starting with a letter "
            f"or digit (it names files and folders), got {shown}"
        )
    return v


# A name that becomes part of file and folder names (runs/<name>/, calibration/<name>.yaml):
# a slug, so that no name can climb out of its folder or name an absolute path.
Name = Annotated[str, Strict(), AfterValidator(_slug)]
Bool = Annotated[bool, Strict()]
Count = _int(ge=1, le=_MAX_COUNT)
Lag = _int(ge=1, le=MAX_LENGTH - 1)
Rate = _float(ge=0, le=1)
Seconds = _float(gt=0, le=3600)
GapSeconds = _float(ge=0, le=3600)
Hours = _float(ge=0, le=_MAX_HOURS)
PerHour = _float(gt=0, le=1e7)
StepIndex = _int(ge=1, le=255)
Length = _int(ge=1, le=MAX_LENGTH)
Misses = _int(ge=1, le=MAX_LENGTH)
Annotations = _int(ge=1, le=100_000)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False, allow_inf_nan=False)


class _At(ValueError):
    """A validator's error at a sub-path of the model being validated."""

    def __init__(self, where: tuple, message: str) -> None:
        super().__init__(message)
        self.where = tuple(where)


# --------------------------------------------------------------------------- stimuli
class Stimuli(_Frozen):
    """The stimulus pool and how each presentation is timed."""

    kind: Literal["video", "image"] = Field(description="what is shown")
    count: Count = Field(description="stimuli in the pool")
    duration_s: Seconds = Field(description="seconds a stimulus is shown when no key is pressed")
    gap_s: GapSeconds = Field(
        description="seconds between the end of one presentation and the next onset"
    )
    response_ends_presentation: Bool = Field(
        default=True,
        description="a key press ends the presentation (the next one starts after the gap)",
    )


# --------------------------------------------------------------------------- demand
class Demand(_Frozen):
    """Unequal demand for stimuli: a ``share`` of them is sought more often than the rest.

    Each stimulus is in high demand with probability ``share``; its demand is then
    1 + Exponential(mean ``mean_excess``), cut to ``max`` where one is given, else 1. A
    balancing rule that meets demand
    (``least_annotated``) ranks stimuli by annotations / demand, so a stimulus of demand 2
    ends with about twice the annotations of the rest: a floor with a tail, as in the
    released VideoMem counts (``docs/protocols.md``, "Demand").
    """

    share: Rate = Field(description="fraction of stimuli in high demand")
    mean_excess: _float(gt=0, le=100) = Field(
        description="mean extra demand of a high-demand stimulus (exponential), as a multiple of 1"
    )
    max: _float(gt=1, le=1000) | None = Field(
        default=None,
        description="the most a stimulus is sought, as a multiple of 1: demands above it are "
        "cut to it (none: no cap)",
    )

    def describe(self) -> str:
        cap = "" if self.max is None else f", at most {self.max:g}"
        return (
            f"{self.share:.0%} of stimuli sought 1 + Exp(mean {self.mean_excess:g}) times as "
            f"often{cap}"
        )


# --------------------------------------------------------------------------- items
class FromStep(_Frozen):
    """Items drawn from what the same participant saw in an earlier step."""

    step: StepIndex = Field(description="1-based index of the earlier step")
    roles: tuple[Literal["target", "filler", "vigilance"], ...] = Field(
        min_length=1, description="roles those items had in that step"
    )
    pick: Literal["random", "least_annotated"] = Field(
        default="random",
        description="random among the participant's eligible items (VideoMem), or those tested "
        "least often in this step so far, ties at random (balances annotation counts)",
    )
    demand: Demand | None = Field(
        default=None,
        description="with pick least_annotated: rank by tests / demand instead of tests",
    )
    demand_follows: _float(ge=0, le=10) | None = Field(
        default=None,
        description="with pick least_annotated: each stimulus' demand here is multiplied by its "
        "selection demand (selection.demand) raised to this power, so the stimuli sought more "
        "in the selection are sought more here too (0: independent, as without it)",
    )
    floor: _int(ge=1, le=1_000_000) | None = Field(
        default=None,
        description="with pick least_annotated: balance only up to this many tests (/ demand); "
        "items at or above it are all equal, picked at random (a floor, then availability)",
    )
    counts: Literal["assigned", "kept"] = Field(
        default="assigned",
        description="with pick least_annotated: which tests the pick counts: every pick "
        "(assigned), or only those of participants this step's filters keep (kept): the "
        "picks are made for counts_every returning participants at a time, whose sessions "
        "are judged before the next ones are picked, the tests of those dropped withdrawn",
    )
    counts_every: _int(ge=1, le=1_000_000) | None = Field(
        default=None,
        description="with counts kept (and needed by it): returning participants picked for, "
        "and judged, at a time (in the pick's order, that of their return draws)",
    )

    lookahead: Literal["none", "projected", "ties", "deficit"] = Field(
        default="none",
        description="with pick least_annotated: rank items by their viewers still to come in the "
        "pick's order as well: by the tests they are projected to end with (projected), by tests "
        "with ties below the floor to the fewest viewers to come (ties), or the items projected "
        "below the floor first (deficit)",
    )
    lookahead_viewers: Literal["returning", "expected"] = Field(
        default="returning",
        description="with a lookahead: the viewers to come are the returning participants still "
        "to be picked for (returning: who will come back, which no experimenter knows), or every "
        "step-1 viewer not yet picked for times the share of them expected to return (expected)",
    )
    lookahead_share: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="with a lookahead: the share of a viewer's eligible items she is expected to "
        "be tested on (default: count / eligible items, VideoMem's 40 / 60); 1 counts every "
        "viewer to come as a test (deficit: only items that need every one of them come first)",
    )

    @model_validator(mode="after")
    def _check(self) -> FromStep:
        if len(set(self.roles)) != len(self.roles):
            raise _At(("roles",), f"a role is listed twice in {list(self.roles)}")
        if self.demand is not None and self.pick != "least_annotated":
            raise _At(("demand",), "demand needs pick: least_annotated (a random pick ignores it)")
        if self.floor is not None and self.pick != "least_annotated":
            raise _At(("floor",), "floor needs pick: least_annotated (a random pick ignores it)")
        if self.demand_follows is not None and self.pick != "least_annotated":
            raise _At(
                ("demand_follows",),
                "demand_follows needs pick: least_annotated (a random pick ignores it)",
            )
        if self.counts != "assigned" and self.pick != "least_annotated":
            raise _At(("counts",), "counts needs pick: least_annotated (a random pick counts none)")
        if self.lookahead != "none" and self.pick != "least_annotated":
            raise _At(
                ("lookahead",), "lookahead needs pick: least_annotated (a random pick ranks none)"
            )
        if self.lookahead_viewers != "returning" and self.lookahead == "none":
            raise _At(("lookahead_viewers",), "lookahead_viewers needs a lookahead")
        if self.lookahead_share is not None and self.lookahead == "none":
            raise _At(("lookahead_share",), "lookahead_share needs a lookahead")
        if self.counts_every is not None and self.counts == "assigned":
            raise _At(("counts_every",), "counts_every needs counts: kept (verdicts to wait for)")
        if self.counts == "kept" and self.counts_every is None:
            raise _At(
                ("counts_every",), "counts kept needs counts_every (participants judged at a time)"
            )
        return self


# tags of the two kinds of source; they never appear in a printed field path
_NEW, _EARLIER = "(new)", "(from an earlier step)"

Source = Annotated[
    Annotated[Literal["new"], Tag(_NEW)] | Annotated[FromStep, Tag(_EARLIER)],
    Discriminator(lambda v: _NEW if isinstance(v, str) else _EARLIER),
]


class ItemGroup(_Frozen):
    """A group of items of one role in a step's sequence.

    ``repeat_lag`` [min, max]: each item is shown twice, the repeat a number of
    positions later within the range (a recognition test inside the step).
    ``source``: ``new`` items come from the selection policy (never seen before
    by this participant); ``{step, roles}`` items are drawn from the
    participant's earlier step and shown once, as a recognition test.
    """

    role: Literal["target", "filler", "vigilance"] = Field(
        description="target: scored; vigilance: an easy repeat that checks attention; "
        "filler: shown once"
    )
    count: Count = Field(description="items in the group (a repeated item counts once)")
    repeat_lag: tuple[Lag, Lag] | None = Field(
        default=None, description="[min, max] positions between the two showings of each item"
    )
    source: Source = Field(
        default="new",
        description="'new', or {step, roles}: items from an earlier step of the same participant",
    )

    @model_validator(mode="after")
    def _check(self) -> ItemGroup:
        if self.repeat_lag is not None:
            lo, hi = self.repeat_lag
            if lo > hi:
                raise _At(("repeat_lag",), f"minimum {lo} is above maximum {hi}")
            if not isinstance(self.source, str):
                raise _At(("repeat_lag",), "cannot be combined with items from an earlier step")
            if self.role == "filler":
                raise _At(
                    ("role",),
                    "fillers are shown once; a repeated item is a target or a vigilance item",
                )
        elif self.role == "vigilance":
            raise _At(("repeat_lag",), "vigilance items must repeat: give repeat_lag")
        elif self.role == "target" and isinstance(self.source, str):
            raise _At(
                ("repeat_lag",),
                "new targets must repeat to be tested: give repeat_lag (or an earlier step as "
                "source)",
            )
        if not isinstance(self.source, str) and self.role != "target":
            raise _At(
                ("role",),
                "items from an earlier step are recognition tests: their role must be target",
            )
        return self

    @property
    def presentations(self) -> int:
        return self.count * (2 if self.repeat_lag is not None else 1)

    @property
    def tested(self) -> bool:
        """True when this group's items produce recognition tests."""
        return self.repeat_lag is not None or not isinstance(self.source, str)


# --------------------------------------------------------------------------- filters
class Filters(_Frozen):
    """Participant filters of one step; a participant failing any is dropped for that step.

    Rates are per participant and step: vigilance hit rate over vigilance
    repeats, hit rate over target recognition tests, false-alarm rate over
    presentations of items not seen before.
    """

    min_vigilance_hit_rate: Rate | None = Field(
        default=None, description="drop below this vigilance hit rate"
    )
    min_hit_rate: Rate | None = Field(default=None, description="drop below this target hit rate")
    max_false_alarm_rate: Rate | None = Field(
        default=None, description="drop above this false-alarm rate"
    )
    false_alarms_below_hits: Bool = Field(
        default=False, description="drop unless the false-alarm rate is below the target hit rate"
    )
    min_completed_fraction: Rate = Field(
        default=1.0, description="drop a participant who saw less than this share of the step"
    )


# --------------------------------------------------------------------------- corrections
class NoCorrection(_Frozen):
    """Score = raw hit rate."""

    kind: Literal["none"] = "none"

    def describe(self) -> str:
        return "none (raw hit rate)"


class LinearCorrection(_Frozen):
    """VideoMem: fit hit rate h(lag) = a + b lag over all target tests; refer each score to
    ``reference_lag``, by a shift (``shift``: + b (reference - mean lag)) or a ratio
    (``ratio``: x h(reference) / h(mean lag)), the video's mean lag being that of its tests."""

    kind: Literal["linear"] = "linear"
    reference_lag: Lag
    form: Literal["shift", "ratio"] = Field(
        "shift",
        description=(
            "shift: add b (reference - mean lag); ratio: multiply by h(reference) / h(mean lag)"
        ),
    )

    def describe(self) -> str:
        how = "shifted" if self.form == "shift" else "scaled"
        return f"linear in lag, one slope for all stimuli, {how} to lag {self.reference_lag}"


class MementoDecay(_Frozen):
    """Memento10k: per-video linear decay m(t) = m(T) + alpha (t - T), scores referred to T."""

    kind: Literal["memento_decay"] = "memento_decay"
    reference_lag: Lag

    def describe(self) -> str:
        return (
            "Memento decay, linear in lag with a slope per stimulus, "
            f"referred to lag {self.reference_lag}"
        )


class LogLinearDecay(_Frozen):
    """LaMem: m(t) = m(T) + alpha ln(t / T), one alpha for all stimuli, scores referred to T."""

    kind: Literal["log_linear"] = "log_linear"
    reference_lag: Lag

    def describe(self) -> str:
        return f"log-linear in lag, one slope for all stimuli, referred to lag {self.reference_lag}"


Correction = Annotated[
    NoCorrection | LinearCorrection | MementoDecay | LogLinearDecay, Field(discriminator="kind")
]


class Scoring(_Frozen):
    """How one step's recognition tests become per-stimulus scores."""

    column: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$",
        description="name of the score column, e.g. short-term_memorability",
    )
    correction: Correction = NoCorrection()


# --------------------------------------------------------------------------- steps
class Step(_Frozen):
    """One session of the game: a sequence of ``length`` presentations."""

    name: str = Field(min_length=1, max_length=100)
    length: Length = Field(description="presentations in the sequence")
    delay_h: tuple[Hours, Hours] | None = Field(
        default=None,
        description="[min, max] hours between the end of the previous step and this one "
        "(steps after the first)",
    )
    items: tuple[ItemGroup, ...] = Field(min_length=1, max_length=64)
    filters: Filters = Filters()
    scoring: Scoring
    stop_after_vigilance_misses: Misses | None = Field(
        default=None,
        description="end the participant's session after this many missed vigilance repeats",
    )
    max_share: _float(gt=0, le=1) | None = Field(
        default=None,
        description="later steps: at most this share of the campaign's participants (all "
        "who started step 1, rounded) play the step; when more come back, a random subset of "
        "them (the same in both campaign engines); a top-up's participants are not counted",
    )

    @model_validator(mode="after")
    def _check(self) -> Step:
        total = sum(g.presentations for g in self.items)
        if total != self.length:
            parts = " + ".join(f"{g.count}x{2 if g.repeat_lag else 1} {g.role}" for g in self.items)
            raise _At(
                ("length",),
                f"items give {total} presentations ({parts}), but length is {self.length}",
            )
        for i, g in enumerate(self.items):
            if g.repeat_lag is not None and g.repeat_lag[1] >= self.length:
                raise _At(
                    ("items", i, "repeat_lag"),
                    f"maximum {g.repeat_lag[1]} does not fit a sequence of {self.length} (at most "
                    f"{self.length - 1})",
                )
        failure = find_arrangement(
            self.length,
            [(g.count, *g.repeat_lag) if g.repeat_lag else (g.count, 0, 0) for g in self.items],
        )
        if failure is not None:
            i, why = failure
            raise _At(("items", i, "repeat_lag"), why)
        if self.delay_h is not None and self.delay_h[0] > self.delay_h[1]:
            raise _At(
                ("delay_h",), f"minimum {self.delay_h[0]:g} is above maximum {self.delay_h[1]:g}"
            )
        targets = [g for g in self.items if g.role == "target" and g.tested]
        if not targets:
            raise _At(
                ("items",),
                "a step needs at least one group of tested targets (repeat_lag or an earlier "
                "source)",
            )
        earlier = [i for i, g in enumerate(self.items) if not isinstance(g.source, str)]
        for i in earlier:
            if self.items[i].source.pick != "random" and len(earlier) > 1:
                raise _At(
                    ("items", i, "source", "pick"),
                    f"'{self.items[i].source.pick}' needs this to be the step's only group of "
                    "items from an earlier step",
                )
        n_vig = sum(g.count for g in self.items if g.role == "vigilance")
        if self.filters.min_vigilance_hit_rate is not None and n_vig == 0:
            raise _At(("filters", "min_vigilance_hit_rate"), "the step has no vigilance items")
        if (
            self.stop_after_vigilance_misses is not None
            and self.stop_after_vigilance_misses > n_vig
        ):
            raise _At(
                ("stop_after_vigilance_misses",),
                f"{self.stop_after_vigilance_misses} misses can never happen with {n_vig} "
                "vigilance repeats",
            )
        corr = self.scoring.correction
        reference = getattr(corr, "reference_lag", None)  # every lag correction refers to a lag
        if reference is not None:
            lags = [g.repeat_lag for g in targets if g.repeat_lag is not None]
            if not lags:
                raise _At(
                    ("scoring", "correction", "kind"),
                    f"'{corr.kind}' corrects for lag, but no target of this step repeats within "
                    "the step",
                )
            lo, hi = min(a for a, _ in lags), max(b for _, b in lags)
            if not lo <= reference <= hi:
                raise _At(
                    ("scoring", "correction", "reference_lag"),
                    f"{reference} is outside the targets' lags {lo}-{hi} (an extrapolation)",
                )
        return self

    @property
    def n_new(self) -> int:
        """Distinct new stimuli a participant needs for this step."""
        return sum(g.count for g in self.items if isinstance(g.source, str))


# --------------------------------------------------------------------------- arrangement
def _greedy(length: int, groups, order, latest: bool) -> int | None:
    """Greedy placement (each pair at the earliest free first slot): the failing group, or None."""
    occ = bytearray(length)
    for gi in order:
        count, lo, hi = groups[gi]
        p = placed = 0
        while placed < count:
            p = occ.find(0, p)
            if p < 0 or p + lo >= length:
                return gi
            a, b = p + lo, min(p + hi, length - 1) + 1
            q = occ.rfind(0, a, b) if latest else occ.find(0, a, b)
            if q >= 0:
                occ[p] = occ[q] = 1
                placed += 1
            p += 1  # a first slot that fails now fails forever: occupancy only grows
    return None


def _random_placement(length: int, groups, order, rnd: random.Random) -> int | None:
    """The sequence generator's law: lag uniform in range, first slot uniform among free pairs."""
    import numpy as np

    free = np.ones(length, dtype=bool)
    for gi in order:
        count, lo, hi = groups[gi]
        for _ in range(count):
            d = rnd.randint(lo, hi)
            ok = np.flatnonzero(free[: length - d] & free[d:])
            if ok.size == 0:
                return gi
            p = int(ok[rnd.randrange(ok.size)])
            free[p] = free[p + d] = False
    return None


def _exhaustive(length: int, groups, budget: int) -> bool | None:
    """Exact search, slot by slot: each slot opens a pair, closes one, or holds a single item.

    True: an arrangement exists; False: none exists; None: ``budget`` nodes were not enough.
    Within a group, closing the oldest open pair is never worse than closing a younger one
    (swap the two closings: both stay within the range), so a slot has at most
    ``2 x groups + 1`` choices. Dead ends are pruned by deadlines (open pairs, sorted by
    their last allowed slot, must each find a slot in time) and remembered: the slot, the
    ages of the open pairs and the counts left are the whole state.
    """
    rep = sorted((i for i, (_, _, hi) in enumerate(groups) if hi > 0), key=lambda i: -groups[i][1])
    lo = {i: groups[i][1] for i in rep}
    hi = {i: groups[i][2] for i in rep}
    to_open = {i: groups[i][0] for i in rep}
    # the slots of each group's open first showings, oldest first
    opened: dict[int, list[int]] = {i: [] for i in rep}
    singles = [sum(c for c, _, h in groups if h == 0)]
    nodes = [0]
    dead: set = set()

    def in_time(t: int) -> bool:
        deadlines = []
        for i in rep:
            if to_open[i] and t + lo[i] >= length:
                return False
            deadlines += [a + hi[i] for a in opened[i]]
        deadlines.sort()
        return all(d >= t + k for k, d in enumerate(deadlines))

    def step(t: int) -> bool | None:
        if t == length:
            return True
        state = (
            t,
            tuple(tuple(t - a for a in opened[i]) for i in rep),
            tuple(to_open[i] for i in rep),
            singles[0],
        )
        if state in dead:
            return False
        nodes[0] += 1
        if nodes[0] > budget:
            return None
        if not in_time(t):
            dead.add(state)
            return False
        exhausted = False
        closable = sorted(
            (i for i in rep if opened[i] and t - opened[i][0] >= lo[i]),
            key=lambda i: opened[i][0] + hi[i],
        )
        for i in closable:
            a = opened[i].pop(0)
            r = step(t + 1)
            opened[i].insert(0, a)
            if r:
                return True
            exhausted |= r is None
        for i in rep:
            if to_open[i]:
                to_open[i] -= 1
                opened[i].append(t)
                r = step(t + 1)
                opened[i].pop()
                to_open[i] += 1
                if r:
                    return True
                exhausted |= r is None
        if singles[0]:
            singles[0] -= 1
            r = step(t + 1)
            singles[0] += 1
            if r:
                return True
            exhausted |= r is None
        if exhausted:
            return None
        dead.add(state)
        return False

    return step(0)


def find_arrangement(length: int, groups: list[tuple[int, int, int]]) -> tuple[int, str] | None:
    """Check that one sequence can hold every repeat of a step within its lag range.

    Parameters
    ----------
    length : int
        Presentations in the sequence.
    groups : list of (count, lag_min, lag_max)
        One entry per item group; ``(count, 0, 0)`` for a group shown once.

    Returns
    -------
    None when an arrangement exists (one was found), else ``(group index, reason)``.

    A sound necessary condition is tested first (pairs whose lag is at least
    ``a`` all start in the first ``length - a`` slots and use two slots each);
    then deterministic greedy placements; then, for sequences up to
    600 long, an exact search with a node budget (:func:`_exhaustive`);
    then a few seeded random placements that follow the sequence generator's
    law. A step that defeats all of them is rejected: either no arrangement
    exists (proved), or none was found, and its lag ranges are then too tight
    for a random generator anyway.
    """
    rep = [i for i, (c, lo, hi) in enumerate(groups) if hi > 0]
    if not rep:
        return None
    for i in rep:
        a = groups[i][1]
        need = sum(groups[j][0] for j in rep if groups[j][1] >= a)
        room = min(length - a, length // 2)
        if need > room:
            return i, (
                f"{need} items repeated at lags of at least {a} cannot fit a sequence of {length} "
                f"(at most {room}: each needs a first showing in the first {length - a} positions "
                "and two slots)"
            )
    by_min = sorted(rep, key=lambda i: (-groups[i][1], groups[i][2] - groups[i][1], i))
    by_width = sorted(rep, key=lambda i: (groups[i][2] - groups[i][1], -groups[i][1], i))
    first_fail = None
    for order in (by_min, by_width):
        for latest in (False, True):
            fail = _greedy(length, groups, order, latest)
            if fail is None:
                return None
            first_fail = first_fail if first_fail is not None else fail
    c, lo, hi = groups[first_fail]
    advice = "widen the lag ranges, lengthen the step or repeat fewer items"
    pairs = sum(groups[i][0] for i in rep)
    # a node costs O(open pairs): the budget shrinks as the pairs grow
    budget = max(1_000, min(_SEARCH_NODES, _SEARCH_WORK // (1 + pairs)))
    exact = _exhaustive(length, groups, budget) if length <= _SEARCH_MAX_LENGTH else None
    if exact is True:
        return None
    if exact is False:
        return (
            first_fail,
            f"no arrangement of the step's repeats exists in a sequence of {length}; {advice}",
        )
    rnd = random.Random(length)  # a fixed seed: validation is deterministic
    for _ in range(_RANDOM_TRIES):
        if _random_placement(length, groups, by_min, rnd) is None:
            return None
    return first_fail, (
        f"found no arrangement of the step's repeats in a sequence of {length} "
        f"({c} items at lags {lo}-{hi} could not all be placed); {advice}"
    )


# --------------------------------------------------------------------------- selection
class LeastAnnotated(_Frozen):
    """VideoMem: a participant's step-1 items drawn at random among the ``pool`` least-annotated."""

    kind: Literal["least_annotated"] = "least_annotated"
    pool: Count
    demand: Demand | None = Field(
        default=None, description="rank stimuli by annotations / demand (a floor with a tail)"
    )
    counts: Literal["assigned", "kept", "received"] = Field(
        default="assigned",
        description="which annotations the ranking counts: every step-1 target assignment "
        "(assigned), or only those of participants who pass step 1's filters: counted when "
        "assigned and withdrawn when a session ends and its participant fails them (kept), "
        "or counted only once the session has ended and its participant passed them (received)",
    )

    counts_every_h: float | None = Field(
        default=None,
        gt=0,
        le=24 * 365,
        description="with counts kept or received: the verdicts of ended sessions reach the "
        "counts at checks made every this many hours from the campaign's start (none: at each "
        "session's end)",
    )

    counts_every_participants: Count | None = Field(
        default=None,
        description="with counts kept or received: the verdicts of ended sessions reach the "
        "counts at checks made each time this many more participants have started (batches "
        "of participants instead of hours: counts_every_h or this, not both)",
    )

    counts_delay_participants: Count | None = Field(
        default=None,
        description="with counts kept or received: the verdict of an ended session reaches "
        "the counts once this many more participants have started after its end (a steady "
        "delay instead of checks: the verdicts not yet counted at any arrival are those of "
        "the last so many participants' time, whenever that arrival comes; not with "
        "counts_every_h or counts_every_participants)",
    )

    later_pool: Count | None = Field(
        default=None,
        description="the step-1 places that a later step draws its tested items from "
        "(VideoMem's non-vigilance fillers) are drawn at random among the later_pool stimuli "
        "shown least often in those places so far (/ demand), apart from the step's other "
        "items; none (or no such places): all of step 1's items from the one pool",
    )
    later_counts: Literal["shown", "returning"] = Field(
        default="shown",
        description="with later_pool: what its count of a stimulus's showings keeps: every "
        "showing (shown), or those to participants who may still come back or came back "
        "(returning): a participant's showings leave the count when her window for the next "
        "step closes without her (her session's end + the step's longest delay; needs counts "
        "kept or received, which learn when sessions end)",
    )

    @model_validator(mode="after")
    def _checks_need_verdicts(self) -> LeastAnnotated:
        timings = ("counts_every_h", "counts_every_participants", "counts_delay_participants")
        for name in timings:
            if getattr(self, name) is not None and self.counts == "assigned":
                raise _At(
                    (name,),
                    f"{name} needs counts: kept or received (verdicts to apply at checks)",
                )
        given = [name for name in timings if getattr(self, name) is not None]
        if len(given) > 1:
            raise _At(
                (given[-1],),
                "verdicts reach the counts at checks every so many hours, at checks every so "
                "many participants or after a delay, one of them: drop " + " or ".join(given),
            )
        if self.later_counts != "shown" and self.later_pool is None:
            raise _At(("later_counts",), "later_counts needs later_pool (the count it keeps)")
        if self.later_counts != "shown" and self.counts == "assigned":
            raise _At(
                ("later_counts",),
                "later_counts: returning needs counts: kept or received (sessions' ends)",
            )
        return self

    def describe(self) -> str:
        out = f"random among the {self.pool:,} least-annotated"
        how = []
        if self.counts == "kept":
            how.append("annotations by kept participants")
        elif self.counts == "received":
            how.append("annotations received: by kept participants, once their session ended")
        if self.counts_every_h is not None:
            how.append(f"verdicts counted at checks every {self.counts_every_h:g} h")
        if self.counts_every_participants is not None:
            how.append(
                f"verdicts counted at checks every {self.counts_every_participants:,} participants"
            )
        if self.counts_delay_participants is not None:
            how.append(
                f"verdicts counted {self.counts_delay_participants:,} participants after "
                "the session's end"
            )
        if self.later_pool is not None:
            how.append(
                f"the items a later step tests: among the {self.later_pool:,} least shown there"
                + (
                    ", to participants who may come back"
                    if self.later_counts == "returning"
                    else ""
                )
            )
        if self.demand is not None:
            how.append(f"annotations / demand; {self.demand.describe()}")
        if how:
            out += f" ({'; '.join(how)})"
        return out


class UniformSelection(_Frozen):
    """New items drawn uniformly from the whole stimulus pool."""

    kind: Literal["uniform"] = "uniform"

    def describe(self) -> str:
        return "uniform over all stimuli"


class AdaptiveSelection(_Frozen):
    """Targets sent where scores are most uncertain (posterior variance of the hit rate)."""

    kind: Literal["adaptive"] = "adaptive"
    pool: Count

    def describe(self) -> str:
        return f"adaptive (most uncertain of a {self.pool:,} pool)"


Selection = Annotated[
    LeastAnnotated | UniformSelection | AdaptiveSelection, Field(discriminator="kind")
]


# --------------------------------------------------------------------------- campaign
class PoissonArrivals(_Frozen):
    """Participants start step 1 as a Poisson process of ``rate_per_h`` per hour."""

    kind: Literal["poisson"] = "poisson"
    rate_per_h: PerHour

    def describe(self) -> str:
        return f"Poisson arrivals, {self.rate_per_h:g}/h"


Arrivals = Annotated[PoissonArrivals, Field(discriminator="kind")]


class StopAfterParticipants(_Frozen):
    """Stop recruiting once ``count`` participants have started step 1."""

    kind: Literal["participants"] = "participants"
    count: Count

    def describe(self) -> str:
        return f"after {self.count:,} participants"

    def check(self, n_stimuli: int, targets_per_participant: int) -> None:
        """Any participant budget can be met."""


class StopAtMinAnnotations(_Frozen):
    """Stop once every stimulus (or a ``share`` of them) has ``count`` step-1 target tests as
    the selection counts them, or at the cap."""

    kind: Literal["min_annotations"] = "min_annotations"
    count: Annotations
    max_participants: Count
    share: _float(gt=0, le=1) = Field(
        default=1.0,
        description="the fraction of stimuli that must have count annotations (1: every one); "
        "the campaign stops once at most the rest, rounded down, have fewer",
    )

    def describe(self) -> str:
        who = (
            "every stimulus has" if self.share == 1.0 else f"{100 * self.share:g}% of stimuli have"
        )
        return (
            f"when {who} {self.count} step-1 target tests "
            f"(at most {self.max_participants:,} participants)"
        )

    def stimuli_needed(self, n_stimuli: int) -> int:
        """How many stimuli must reach ``count``: ``share`` of them, rounded up."""
        # the rounding guard: 0.6 * 10_000 is 6000.000000000001 in floating point
        return min(n_stimuli, max(1, math.ceil(self.share * n_stimuli - 1e-9)))

    def check(self, n_stimuli: int, targets_per_participant: int) -> None:
        """The cap must allow the annotations, else the cap, not the count, ends every campaign."""
        stimuli = self.stimuli_needed(n_stimuli)
        need = self.count * stimuli
        whom = "per stimulus" if stimuli == n_stimuli else f"for {stimuli} stimuli"
        if self.max_participants * targets_per_participant < need:
            raise _At(
                ("campaign", "stop", "max_participants"),
                f"{self.max_participants} participants x {targets_per_participant} step-1 targets "
                f"give fewer than the {need} target tests that {self.count} {whom} needs "
                f"(at least {math.ceil(need / targets_per_participant)} participants)",
            )


StopRule = Annotated[StopAfterParticipants | StopAtMinAnnotations, Field(discriminator="kind")]


class TopUp(_Frozen):
    """Top-up rounds after the campaign: new participants who play step 1 and the later step
    that tests step 1's items, until every stimulus has ``floor`` kept tests in that step.

    A round recruits enough participants for the stimuli still short of the floor (at least
    ``min_batch``), shows the short stimuli first in the step-1 places the later step tests
    from, tests them first there, and judges the sessions by the steps' filters; rounds go on
    until none is short or ``max_rounds`` rounds were run (docs/protocols.md, "campaign.top_up")."""

    floor: Annotations = Field(
        description="kept tests in the later step that every stimulus should reach"
    )
    targets: Literal["uniform", "least", "most"] = Field(
        default="uniform",
        description="where a top-up step 1's other items come from: uniform over all stimuli, "
        "or among the selection's pool of stimuli with the fewest (least) or the most (most) "
        "kept step-1 tests (/ demand)",
    )
    min_batch: _int(ge=1, le=_MAX_COUNT) = Field(
        default=1, description="participants at least per round"
    )
    max_rounds: _int(ge=1, le=1000) = Field(default=10, description="rounds at most")

    def describe(self) -> str:
        where = {
            "uniform": "uniform over all stimuli",
            "least": "among the least-tested stimuli",
            "most": "among the most-tested stimuli",
        }[self.targets]
        return (
            f"top-up rounds until every stimulus has {self.floor} kept tests in the later step "
            f"(step 1's other items {where}; at least {self.min_batch} participants a "
            f"round, at most {self.max_rounds} rounds)"
        )


class Pilot(_Frozen):
    """A pilot before the campaign: ``participants`` players on the first ``stimuli`` stimuli
    alone, every step played, their annotations scored with the campaign's.

    The pilot is the protocol itself with these changes: its stimuli are the campaign's first
    ``stimuli`` (the same ones, not new draws); its step-1 items are drawn among all of them
    with no demand and counted as assigned (the selection's pool, demand and count checks
    do not apply, nor step-2 picks' demands); its step-1 targets are repeated at
    ``repeat_lag`` and at most ``return_share`` of its players play the later steps, where
    given; it stops after ``participants`` players and has no top-up. Its players are drawn
    from the same population, numbered after the campaign's (the top-up's included); the
    campaign starts ``gap_h`` hours after the pilot's last onset, and onsets count from
    the pilot's first (docs/protocols.md, "campaign.pilot")."""

    participants: Count = Field(description="players the pilot recruits")
    stimuli: Count = Field(description="the campaign's first this many stimuli, all it shows")
    repeat_lag: tuple[Lag, Lag] | None = Field(
        default=None,
        description="[min, max] lag of the pilot's step-1 targets (none: the protocol's)",
    )
    return_share: _float(gt=0, le=1) | None = Field(
        default=None,
        description="at most this share of the pilot's players play each later step (its "
        "max_share; none: the protocol's)",
    )
    gap_h: Hours = Field(
        default=96.0,
        description="hours from the pilot's last onset to the campaign's first arrival",
    )

    def describe(self) -> str:
        lag = "" if self.repeat_lag is None else f", targets at lags {list(self.repeat_lag)}"
        share = "" if self.return_share is None else f", at most {self.return_share:.0%} back"
        return (
            f"a pilot of {self.participants:,} players on the first {self.stimuli:,} stimuli"
            f"{lag}{share}, {self.gap_h:g} h before the campaign"
        )


class Campaign(_Frozen):
    """Recruitment: when participants arrive, when recruiting stops, an optional top-up after
    the campaign and an optional pilot before it."""

    arrivals: Arrivals
    stop: StopRule
    top_up: TopUp | None = None
    pilot: Pilot | None = None


# --------------------------------------------------------------------------- protocol
class Protocol(_Frozen):
    """A whole memorability study: stimuli, steps, selection policy and campaign.

    Frozen and validated at load time (:func:`load_protocol`, ``memsim.load_protocol``);
    :meth:`dump` gives the plain mapping back, :meth:`updated` a changed copy. Every field:
    docs/protocols.md."""

    name: Name
    description: str = Field(default="", max_length=1000)
    stimuli: Stimuli
    steps: tuple[Step, ...] = Field(min_length=1, max_length=255)
    selection: Selection
    campaign: Campaign

    @model_validator(mode="after")
    def _feasible(self) -> Protocol:
        first = self.steps[0]
        if first.delay_h is not None:
            raise _At(("steps", 0, "delay_h"), "the first step has no delay")
        if first.max_share is not None:
            raise _At(
                ("steps", 0, "max_share"),
                "the first step's participants are the campaign's (campaign.stop); max_share "
                "is for later steps",
            )
        quota = [s for s, st in enumerate(self.steps) if st.max_share is not None]
        if quota and getattr(self.selection, "later_counts", "shown") == "returning":
            raise _At(
                ("steps", quota[0], "max_share"),
                "cannot be combined with selection.later_counts: returning (which counts every "
                "participant who comes back as playing the step)",
            )
        names, columns = {}, {}
        for s, step in enumerate(self.steps):
            if step.name in names:
                raise _At(
                    ("steps", s, "name"),
                    f"'{step.name}' is already the name of step {names[step.name] + 1}",
                )
            names[step.name] = s
            if step.scoring.column in columns:
                raise _At(
                    ("steps", s, "scoring", "column"),
                    f"'{step.scoring.column}' is already the score column of step "
                    f"{columns[step.scoring.column] + 1}",
                )
            columns[step.scoring.column] = s
            if s > 0 and step.delay_h is None:
                raise _At(("steps", s, "delay_h"), "a later step needs its delay window")
            self._check_sources(s, step)
        needed = sum(step.n_new for step in self.steps)
        if needed > self.stimuli.count:
            raise _At(
                ("stimuli", "count"),
                f"{self.stimuli.count} stimuli cannot give one participant {needed} distinct new "
                "items",
            )
        pool = getattr(self.selection, "pool", None)
        if pool is not None:
            if pool > self.stimuli.count:
                raise _At(
                    ("selection", "pool"), f"{pool} is larger than the {self.stimuli.count} stimuli"
                )
            if pool < first.n_new:
                raise _At(
                    ("selection", "pool"),
                    f"{pool} cannot feed the {first.n_new} new items of step 1",
                )
        later_pool = getattr(self.selection, "later_pool", None)
        if later_pool is not None:
            self._check_later_pool(later_pool)
        per = sum(g.count for g in first.items if g.role == "target" and g.tested)
        self.campaign.stop.check(self.stimuli.count, per)
        if self.campaign.top_up is not None:
            self._check_top_up()
        if self.campaign.pilot is not None:
            self._check_pilot()
        return self

    def repeat_lags(self, s: int, role: str) -> list[tuple[int, int]]:
        """The ``[min, max]`` lag ranges of step ``s``'s (0-based) within-step ``role`` repeats in
        a log of this protocol: its item groups', and its pilot's step-1 target lags
        (``campaign.pilot.repeat_lag``) where it has one."""
        ranges = [
            (int(g.repeat_lag[0]), int(g.repeat_lag[1]))
            for g in self.steps[s].items
            if g.role == role and g.repeat_lag
        ]
        pilot = self.campaign.pilot
        if ranges and s == 0 and role == "target" and pilot and pilot.repeat_lag is not None:
            extra = (int(pilot.repeat_lag[0]), int(pilot.repeat_lag[1]))
            if extra not in ranges:
                ranges.append(extra)
        return ranges

    def pilot_protocol(self) -> Protocol | None:
        """The protocol the pilot plays (``campaign.pilot``, see :class:`Pilot`), None without."""
        pilot = self.campaign.pilot
        if pilot is None:
            return None
        return Protocol.model_validate(_pilot_mapping(self.dump(), pilot))

    def _check_pilot(self) -> None:
        """The pilot's stimuli are the campaign's, and its protocol must be a valid one."""
        where = ("campaign", "pilot")
        pilot = self.campaign.pilot
        if pilot.stimuli > self.stimuli.count:
            raise _At(
                where + ("stimuli",),
                f"{pilot.stimuli} is more than the campaign's {self.stimuli.count} stimuli",
            )
        if pilot.repeat_lag is not None and not any(
            g.role == "target" and g.repeat_lag is not None for g in self.steps[0].items
        ):
            raise _At(where + ("repeat_lag",), "step 1 has no repeated targets to set it for")
        if pilot.return_share is not None and len(self.steps) < 2:
            raise _At(where + ("return_share",), "the protocol has no later step")
        data = _pilot_mapping(self.dump(), pilot)
        try:
            Protocol.model_validate(data)
        except ValidationError as exc:  # the first problem, worded as a protocol file's is
            detail = _user_error(exc, None, data)
            raise _At(where, f"the pilot's protocol is not valid: {detail}") from None

    def _check_top_up(self) -> None:
        """A top-up needs a second step whose tests come from step 1's fillers (the places it
        fills with the stimuli short of the floor), and only that step's tests count."""
        where = ("campaign", "top_up")
        if len(self.steps) != 2:
            raise _At(where, f"needs a two-step protocol, this one has {len(self.steps)} steps")
        second = self.steps[1]
        sources = [g for g in second.items if not isinstance(g.source, str)]
        if not any(g.source.step == 1 and "filler" in g.source.roles for g in sources):
            raise _At(
                where,
                "needs a later step whose tests come from step 1's fillers "
                "(steps.1.items[].source: {step: 1, roles: [filler]})",
            )
        if any(g.role == "target" and g.repeat_lag is not None for g in second.items):
            raise _At(
                where,
                "step 2's tested items must all come from step 1 (its own repeated targets would "
                "be tests the top-up does not count)",
            )

    def _check_later_pool(self, later_pool: int) -> None:
        """``selection.later_pool`` must be able to feed the places a later step draws from
        beside the rest of step 1's items (with no such places it changes nothing)."""
        where = ("selection", "later_pool")
        places = len(later_pick_places(self))
        if later_pool > self.stimuli.count:
            raise _At(where, f"{later_pool} is larger than the {self.stimuli.count} stimuli")
        n_new = self.steps[0].n_new
        if later_pool < n_new:  # the other items may all be in it
            raise _At(
                where,
                f"{later_pool} cannot feed the {places} places a later step draws from apart "
                f"from step 1's other {n_new - places} items (at least {n_new})",
            )

    def _check_sources(self, s: int, step: Step) -> None:
        """Items a later step takes from an earlier one must exist (Hall's condition on demands)."""
        demands: dict[int, list[tuple[int, ItemGroup]]] = {}
        for i, g in enumerate(step.items):
            if isinstance(g.source, str):
                continue
            if g.source.step - 1 >= s:
                raise _At(
                    ("steps", s, "items", i, "source", "step"),
                    f"{g.source.step} is not an earlier step (this is step {s + 1})",
                )
            followed = getattr(self.selection, "demand", None)
            if g.source.demand_follows is not None and followed is None:
                raise _At(
                    ("steps", s, "items", i, "source", "demand_follows"),
                    "needs a selection demand to follow (selection.demand)",
                )
            demands.setdefault(g.source.step, []).append((i, g))
        for src, groups in demands.items():
            earlier = self.steps[src - 1]
            # Hall's condition: for every set of roles, the groups that can only use those roles
            # must together want no more items than the earlier step has with them (7 sets at most)
            for n in range(1, len(ROLES) + 1):
                for roles in itertools.combinations(ROLES, n):
                    chosen = [(i, g) for i, g in groups if set(g.source.roles) <= set(roles)]
                    if not chosen:
                        continue
                    eligible = sum(
                        h.count
                        for h in earlier.items
                        if h.role in roles and isinstance(h.source, str)
                    )
                    wanted = sum(g.count for _, g in chosen)
                    if wanted > eligible:
                        raise _At(
                            ("steps", s, "items", chosen[-1][0], "count"),
                            f"needs {wanted} items from step {src} with roles {list(roles)}, "
                            f"which has only {eligible}",
                        )

    # -- conveniences used by the simulator and scoring
    @property
    def presentation_s(self) -> float:
        """Seconds from one onset to the next when nobody presses."""
        return self.stimuli.duration_s + self.stimuli.gap_s

    def dump(self) -> dict:
        """A plain mapping that :func:`protocol_from_mapping` turns back into an equal object."""
        return self.model_dump(mode="json")

    def updated(self, changes: dict[str, Any]) -> Protocol:
        """A copy with settings changed by dotted path (:mod:`memsim.paths`), validated as a
        protocol file is: ``p.updated({"steps.0.items.0.repeat_lag": [20, 40]})``."""
        return protocol_from_mapping(_apply(self.dump(), changes), f"{self.name} (updated)")


def _pilot_mapping(d: dict, pilot: Pilot) -> dict:
    """The dumped protocol ``d`` changed into its pilot's (:class:`Pilot`)."""
    d["name"] = f"{d['name']}-pilot"
    d["stimuli"]["count"] = pilot.stimuli
    sel = d["selection"]
    if "pool" in sel:
        sel["pool"] = pilot.stimuli
    for key in ("later_pool", "demand", "counts_every_h", "counts_every_participants"):
        if key in sel:
            sel[key] = None
    if "counts_delay_participants" in sel:
        sel["counts_delay_participants"] = None
    if "counts" in sel:
        sel["counts"] = "assigned"
    if "later_counts" in sel:  # it counts in the later pool, which the pilot has not
        sel["later_counts"] = "shown"
    d["campaign"]["stop"] = {"kind": "participants", "count": pilot.participants}
    d["campaign"]["top_up"] = None
    d["campaign"]["pilot"] = None
    for s, step in enumerate(d["steps"]):
        # its log is scored with the campaign's, by the campaign's protocol: no correction of
        # its own (whose reference lag need not lie in the pilot's lags)
        step["scoring"]["correction"] = {"kind": "none"}
        for g in step["items"]:
            source = g.get("source")
            if isinstance(source, dict):
                source["demand"] = None
                source["demand_follows"] = None
            elif s == 0 and g["role"] == "target" and g.get("repeat_lag") is not None:
                if pilot.repeat_lag is not None:
                    g["repeat_lag"] = list(pilot.repeat_lag)
        if s > 0 and pilot.return_share is not None:
            step["max_share"] = pilot.return_share
    return d


def later_pick_places(protocol: Protocol) -> list[int]:
    """Places of step 1's items (in item-group order) that a later step draws tested items
    from: new items of the roles its sources name (VideoMem: the 60 non-vigilance fillers);
    none in a protocol whose later steps take nothing from step 1."""
    roles: set[str] = set()
    for step in protocol.steps[1:]:
        for g in step.items:
            if not isinstance(g.source, str) and g.source.step == 1:
                roles.update(g.source.roles)
    places, at = [], 0
    for h in protocol.steps[0].items:
        if h.role in roles and isinstance(h.source, str):
            places += range(at, at + h.count)
        at += h.count
    return places


def _apply(mapping: dict, changes: dict[str, Any]) -> dict:
    """``mapping`` with each dotted path set; an unknown path is a one-line UserError."""
    from memsim.paths import set_path

    for path, value in changes.items():
        try:
            set_path(mapping, path, value)
        except KeyError as exc:
            raise UserError(f"{path}: {exc.args[0]}") from None
    return mapping


def truth_column(score_column: str) -> str:
    """The latent-truth column of a score column: ``short-term_memorability`` ->
    ``true_short_term``.

    The simulator writes these in ``videos.parquet``; the analyses look them up by this name.
    """
    return "true_" + score_column.removesuffix("_memorability").replace("-", "_")


# --------------------------------------------------------------------------- loading
_PLAIN_WORDS = [  # pydantic speaks Python; a protocol's author writes YAML
    (re.compile(r"a valid dictionary( or instance of \w+)?"), "a mapping"),
    (re.compile(r"a valid tuple"), "a list"),
    (re.compile(r"^Tuple should"), "The list should"),
]


def _field_path(data: Any, loc: tuple) -> str:
    """The path as the user wrote it: pydantic's union tags (``kind`` values, sources) left out."""
    out, node = [], data
    for part in loc:
        if (
            isinstance(node, dict)
            and part not in node
            and (part == node.get("kind") or part == _EARLIER)
        ):
            continue
        if isinstance(node, str) and part == _NEW:
            continue
        out.append(str(part))
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return ".".join(out)


def _user_error(
    exc: ValidationError, path: str | os.PathLike[str] | None, data: Any = None
) -> UserError:
    """One line naming the first bad field: ``FIELD.PATH: message (and N more problems)``."""
    errors = exc.errors()
    # a typo shows up twice, as an unknown key and as a missing one: the unknown key is the cause
    unknown = [e for e in errors if e.get("type") == "extra_forbidden"]
    first = unknown[0] if unknown else errors[0]
    loc = tuple(first.get("loc", ()))
    msg = first.get("msg", "invalid")
    kind = first.get("type")
    err = (first.get("ctx") or {}).get("error")
    if isinstance(err, _At):
        loc, msg = loc + err.where, str(err)
    elif kind == "extra_forbidden":
        msg = unknown_field_message(errors, loc, Protocol)
    elif kind == "missing":
        msg = "required field missing"
    elif kind == "union_tag_invalid":
        loc = loc + ("kind",)
        ctx = first.get("ctx") or {}
        msg = f"unknown kind '{ctx.get('tag')}' (expected {ctx.get('expected_tags')})"
    elif kind == "union_tag_not_found":
        loc, msg = loc + ("kind",), "required field missing"
    msg = msg.removeprefix("Value error, ")
    for jargon, plain in _PLAIN_WORDS:
        msg = jargon.sub(plain, msg)
    where = _field_path(data, loc) or "(top level)"
    n = len(errors) - 1
    extra = f" (and {n} more problem{'s' if n > 1 else ''})" if n else ""
    return UserError(f"{where}: {msg}{extra}", path=path)


def protocol_from_mapping(data: dict, path: str | os.PathLike[str] = "<protocol>") -> Protocol:
    """Validate a mapping (parsed YAML, or :meth:`Protocol.dump`) into a :class:`Protocol`."""
    if not isinstance(data, dict):
        raise UserError(f"top level must be a mapping, got {type(data).__name__}", path=path)
    try:
        return Protocol.model_validate(data)
    except ValidationError as exc:
        raise _user_error(exc, path, data) from None


def load_protocol(path: str | os.PathLike[str]) -> Protocol:
    """Load and validate a protocol YAML file; any problem is one-line :class:`UserError`.

    The YAML limits of :mod:`memsim.limits` hold (size, depth, aliases, 64-bit integers) and
    a key given twice is refused (YAML itself would silently keep the last one).
    """
    return protocol_from_mapping(load_yaml_mapping(path, "protocol file"), path)


def protocol_json_schema() -> str:
    """The JSON Schema (draft 2020-12) of the protocol format, as indented JSON text."""
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **Protocol.model_json_schema(),
    }
    return json.dumps(schema, indent=2)


def summary_lines(p: Protocol) -> list[str]:
    """A one-screen, human summary of a protocol (``memsim validate``)."""
    st = p.stimuli
    out = [
        f"{p.name}: {p.description}".rstrip(": "),
        f"stimuli   {st.count:,} {st.kind}s, {st.duration_s:g} s on, {st.gap_s:g} s gap"
        + (
            ", a key press ends the presentation"
            if st.response_ends_presentation
            else ", fixed timing"
        ),
    ]
    out.append(f"selection {p.selection.describe()}")
    out.append(f"campaign  {p.campaign.arrivals.describe()}; stop {p.campaign.stop.describe()}")
    if p.campaign.top_up is not None:
        out.append(f"          then {p.campaign.top_up.describe()}")
    if p.campaign.pilot is not None:
        out.append(f"          and {p.campaign.pilot.describe()}")
    for s, step in enumerate(p.steps, start=1):
        when = (
            ""
            if step.delay_h is None
            else f", {step.delay_h[0]:g}-{step.delay_h[1]:g} h after step {s - 1}"
        )
        if step.max_share is not None:
            when += f", at most {step.max_share:.1%} of the participants"
        out.append(f"step {s}    {step.name}: {step.length} presentations{when}")
        for g in step.items:
            if g.repeat_lag is not None:
                how = f"shown twice, repeat {g.repeat_lag[0]}-{g.repeat_lag[1]} positions later"
            elif isinstance(g.source, str):
                how = "shown once, new"
            else:
                how = f"shown once, drawn from step {g.source.step} {'/'.join(g.source.roles)}s"
                if g.source.pick == "least_annotated":
                    how += ", least tested first"
                    if g.source.demand is not None:
                        how += f" (tests / demand; {g.source.demand.describe()})"
                    if g.source.demand_follows:
                        how += (
                            f" (demand x the selection's demand^{g.source.demand_follows:g}: "
                            "the stimuli sought more in step 1 sought more here too)"
                        )
                    if g.source.floor is not None:
                        how += f", up to {g.source.floor} tests, then at random"
                    if g.source.lookahead != "none":
                        share = g.source.lookahead_share
                        how += (
                            f"; looking ahead ({g.source.lookahead}, "
                            f"{g.source.lookahead_viewers} viewers to come"
                            + ("" if share is None else f", share {share:g}")
                            + ")"
                        )
                    if g.source.counts == "kept":
                        how += f"; kept tests, judged every {g.source.counts_every} returns"
            out.append(f"            {g.count:>5} {g.role:<9} {how}")
        f = step.filters
        rules = []
        if f.min_vigilance_hit_rate is not None:
            rules.append(f"vigilance >= {f.min_vigilance_hit_rate:g}")
        if f.min_hit_rate is not None:
            rules.append(f"hit rate >= {f.min_hit_rate:g}")
        if f.max_false_alarm_rate is not None:
            rules.append(f"false alarms <= {f.max_false_alarm_rate:g}")
        if f.false_alarms_below_hits:
            rules.append("false alarms < hits")
        if f.min_completed_fraction < 1:
            rules.append(f"completed >= {f.min_completed_fraction:g}")
        out.append(f"            filters: {', '.join(rules) or 'none'}")
        out.append(
            f"            score: {step.scoring.column}, correction: "
            f"{step.scoring.correction.describe()}"
        )
        if step.stop_after_vigilance_misses:
            out.append(
                f"            stopped after {step.stop_after_vigilance_misses} missed vigilance "
                "repeats"
            )
    return out
