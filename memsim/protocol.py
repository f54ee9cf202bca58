"""Protocol schema: a memory-game study as a frozen, validated object.

In: a YAML file (see ``docs/protocols.md``). Out: a :class:`Protocol`, whose
field set is closed (an unknown key is an error, so a typo never passes
silently) and whose feasibility is checked at load time: counts add up to each
step's length, lag ranges fit inside the sequence, a later step has enough
eligible earlier items, the stimulus pool can feed the selection policy.

Pluggable parts (lag corrections, selection policies, arrival processes,
stopping rules) are tagged unions chosen by ``kind``: adding a variant means
adding one model class to its union, never an ``if`` chain elsewhere.

This module imports nothing else from memsim but ``errors`` and ``io``: the
schema stands alone.
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from memsim.errors import UserError
from memsim.io import format_pydantic_error, load_yaml_mapping

__all__ = [
    "Protocol",
    "Step",
    "ItemGroup",
    "load_protocol",
    "protocol_json_schema",
    "ROLES",
]

ROLES = ("target", "filler", "vigilance")
_MAX_COUNT = 10_000_000  # a sanity bound on every count: huge values are mistakes


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)


# --------------------------------------------------------------------------- stimuli
class Stimuli(_Frozen):
    """The stimulus pool and how each presentation is timed."""

    kind: Literal["video", "image"] = Field(description="what is shown")
    count: Annotated[int, Field(ge=1, le=_MAX_COUNT)] = Field(description="stimuli in the pool")
    duration_s: Annotated[float, Field(gt=0, le=3600)] = Field(
        description="seconds a stimulus is shown when no key is pressed"
    )
    gap_s: Annotated[float, Field(ge=0, le=3600)] = Field(
        description="seconds between the end of one presentation and the next onset"
    )
    response_ends_presentation: bool = Field(
        default=True, description="a key press ends the presentation (the next one starts after the gap)"
    )


# --------------------------------------------------------------------------- items
class FromStep(_Frozen):
    """Items drawn from what the same participant saw in an earlier step."""

    step: Annotated[int, Field(ge=1)] = Field(description="1-based index of the earlier step")
    roles: tuple[Literal["target", "filler", "vigilance"], ...] = Field(
        min_length=1, description="roles those items had in that step"
    )


class ItemGroup(_Frozen):
    """A group of items of one role in a step's sequence.

    ``repeat_lag`` [min, max]: each item is shown twice, the repeat a uniformly
    drawn number of positions later within the range (a recognition test inside
    the step). ``source``: ``new`` items come from the selection policy (never
    seen before by this participant); ``{step, roles}`` items are drawn from the
    participant's earlier step and shown once, as a recognition test.
    """

    role: Literal["target", "filler", "vigilance"]
    count: Annotated[int, Field(ge=1, le=_MAX_COUNT)]
    repeat_lag: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]] | None = None
    source: Literal["new"] | FromStep = "new"

    @model_validator(mode="after")
    def _check(self) -> "ItemGroup":
        if self.repeat_lag is not None:
            lo, hi = self.repeat_lag
            if lo > hi:
                raise ValueError(f"repeat_lag minimum {lo} is above its maximum {hi}")
            if not isinstance(self.source, str):
                raise ValueError("repeat_lag cannot be combined with items from an earlier step")
        if self.role == "vigilance" and self.repeat_lag is None:
            raise ValueError("vigilance items must repeat: give repeat_lag")
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

    min_vigilance_hit_rate: Annotated[float, Field(ge=0, le=1)] | None = None
    min_hit_rate: Annotated[float, Field(ge=0, le=1)] | None = None
    max_false_alarm_rate: Annotated[float, Field(ge=0, le=1)] | None = None
    false_alarms_below_hits: bool = False
    min_completed_fraction: Annotated[float, Field(ge=0, le=1)] = Field(
        default=1.0, description="drop a participant who saw less than this share of the step"
    )


# --------------------------------------------------------------------------- corrections
class NoCorrection(_Frozen):
    kind: Literal["none"] = "none"


class LinearCorrection(_Frozen):
    """VideoMem: fit hit rate ~ lag over all target tests; shift each score to ``reference_lag``."""

    kind: Literal["linear"] = "linear"
    reference_lag: Annotated[int, Field(ge=1)]


class MementoDecay(_Frozen):
    """Memento10k: per-video linear decay m(t) = m(T) + alpha (t - T), scores referred to T."""

    kind: Literal["memento_decay"] = "memento_decay"
    reference_lag: Annotated[int, Field(ge=1)]


Correction = Annotated[
    Union[NoCorrection, LinearCorrection, MementoDecay], Field(discriminator="kind")
]


class Scoring(_Frozen):
    """How one step's recognition tests become per-stimulus scores."""

    column: str = Field(description="name of the score column, e.g. short-term_memorability")
    correction: Correction = NoCorrection()


# --------------------------------------------------------------------------- steps
class Step(_Frozen):
    """One session of the game: a sequence of ``length`` presentations."""

    name: str = Field(min_length=1)
    length: Annotated[int, Field(ge=1, le=100_000)]
    delay_h: tuple[Annotated[float, Field(ge=0)], Annotated[float, Field(ge=0)]] | None = Field(
        default=None,
        description="[min, max] hours between the end of the previous step and this one (steps after the first)",
    )
    items: tuple[ItemGroup, ...] = Field(min_length=1)
    filters: Filters = Filters()
    scoring: Scoring
    stop_after_vigilance_misses: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="end the participant's session after this many missed vigilance repeats"
    )

    @model_validator(mode="after")
    def _check(self) -> "Step":
        total = sum(g.presentations for g in self.items)
        if total != self.length:
            parts = " + ".join(
                f"{g.count}x{2 if g.repeat_lag else 1} {g.role}" for g in self.items
            )
            raise ValueError(f"items give {total} presentations ({parts}), but length is {self.length}")
        for i, g in enumerate(self.items):
            if g.repeat_lag is not None and g.repeat_lag[1] >= self.length:
                raise ValueError(
                    f"items.{i}.repeat_lag maximum {g.repeat_lag[1]} does not fit a sequence of {self.length}"
                )
        if self.delay_h is not None and self.delay_h[0] > self.delay_h[1]:
            raise ValueError(f"delay_h minimum {self.delay_h[0]} is above its maximum {self.delay_h[1]}")
        if not any(g.role == "target" and g.tested for g in self.items):
            raise ValueError("a step needs at least one group of tested targets (repeat_lag or an earlier source)")
        return self

    @property
    def n_new(self) -> int:
        """Distinct new stimuli a participant needs for this step."""
        return sum(g.count for g in self.items if isinstance(g.source, str))


# --------------------------------------------------------------------------- selection
class LeastAnnotated(_Frozen):
    """VideoMem: each participant's new items drawn at random among the ``pool`` least-annotated."""

    kind: Literal["least_annotated"] = "least_annotated"
    pool: Annotated[int, Field(ge=1, le=_MAX_COUNT)]


class UniformSelection(_Frozen):
    """New items drawn uniformly from the whole stimulus pool."""

    kind: Literal["uniform"] = "uniform"


class AdaptiveSelection(_Frozen):
    """Targets sent where scores are most uncertain (posterior variance of the hit rate)."""

    kind: Literal["adaptive"] = "adaptive"
    pool: Annotated[int, Field(ge=1, le=_MAX_COUNT)]


Selection = Annotated[
    Union[LeastAnnotated, UniformSelection, AdaptiveSelection], Field(discriminator="kind")
]


# --------------------------------------------------------------------------- campaign
class PoissonArrivals(_Frozen):
    kind: Literal["poisson"] = "poisson"
    rate_per_h: Annotated[float, Field(gt=0, le=1e7)]


Arrivals = Annotated[Union[PoissonArrivals], Field(discriminator="kind")]


class StopAfterParticipants(_Frozen):
    """Stop recruiting once ``count`` participants have started step 1."""

    kind: Literal["participants"] = "participants"
    count: Annotated[int, Field(ge=1, le=_MAX_COUNT)]


class StopAtMinAnnotations(_Frozen):
    """Stop once every stimulus has ``count`` assigned step-1 target tests (or at ``max_participants``)."""

    kind: Literal["min_annotations"] = "min_annotations"
    count: Annotated[int, Field(ge=1, le=100_000)]
    max_participants: Annotated[int, Field(ge=1, le=_MAX_COUNT)]


StopRule = Annotated[
    Union[StopAfterParticipants, StopAtMinAnnotations], Field(discriminator="kind")
]


class Campaign(_Frozen):
    arrivals: Arrivals
    stop: StopRule


# --------------------------------------------------------------------------- protocol
class Protocol(_Frozen):
    """A whole memorability study: stimuli, steps, selection policy and campaign."""

    name: str = Field(min_length=1)
    description: str = ""
    stimuli: Stimuli
    steps: tuple[Step, ...] = Field(min_length=1)
    selection: Selection
    campaign: Campaign

    @model_validator(mode="after")
    def _feasible(self) -> "Protocol":
        first = self.steps[0]
        if first.delay_h is not None:
            raise ValueError("steps.0.delay_h: the first step has no delay")
        for s, step in enumerate(self.steps):
            if s > 0 and step.delay_h is None:
                raise ValueError(f"steps.{s}.delay_h: a later step needs its delay window")
            for i, g in enumerate(step.items):
                if isinstance(g.source, str):
                    continue
                src = g.source.step
                if src - 1 >= s:
                    raise ValueError(
                        f"steps.{s}.items.{i}.source.step: {src} is not an earlier step"
                    )
                earlier = self.steps[src - 1]
                eligible = sum(
                    h.count for h in earlier.items if h.role in g.source.roles and isinstance(h.source, str)
                )
                wanted = sum(
                    h.count
                    for h in step.items
                    if not isinstance(h.source, str) and h.source.step == src
                )
                if wanted > eligible:
                    raise ValueError(
                        f"steps.{s}.items.{i}: needs {wanted} items from step {src} "
                        f"with roles {list(g.source.roles)}, which has only {eligible}"
                    )
        needed = sum(step.n_new for step in self.steps)
        if needed > self.stimuli.count:
            raise ValueError(
                f"stimuli.count: {self.stimuli.count} stimuli cannot give one participant "
                f"{needed} distinct new items"
            )
        pool = getattr(self.selection, "pool", None)
        if pool is not None:
            if pool > self.stimuli.count:
                raise ValueError(
                    f"selection.pool: {pool} is larger than the {self.stimuli.count} stimuli"
                )
            if pool < first.n_new:
                raise ValueError(
                    f"selection.pool: {pool} cannot feed the {first.n_new} new items of step 1"
                )
        return self

    # -- conveniences used by the simulator and scoring
    @property
    def presentation_s(self) -> float:
        """Seconds from one onset to the next when nobody presses."""
        return self.stimuli.duration_s + self.stimuli.gap_s

    def dump(self) -> dict:
        """A plain mapping that :func:`protocol_from_mapping` turns back into an equal object."""
        return self.model_dump(mode="json")


def protocol_from_mapping(data: dict, path: str | os.PathLike[str] = "<protocol>") -> Protocol:
    try:
        return Protocol.model_validate(data)
    except ValidationError as exc:
        raise format_pydantic_error(exc, path) from None


def load_protocol(path: str | os.PathLike[str]) -> Protocol:
    """Load and validate a protocol YAML file; any problem is one-line :class:`UserError`."""
    return protocol_from_mapping(load_yaml_mapping(path, "protocol file"), path)


def protocol_json_schema() -> str:
    return json.dumps(Protocol.model_json_schema(), indent=2)


def summary_lines(p: Protocol) -> list[str]:
    """A one-screen, human summary of a protocol (``memsim validate``)."""
    st = p.stimuli
    out = [
        f"{p.name}: {p.description}".rstrip(": "),
        f"stimuli   {st.count:,} {st.kind}s, {st.duration_s:g} s on, {st.gap_s:g} s gap"
        + (", a key press ends the presentation" if st.response_ends_presentation else ""),
    ]
    sel = p.selection
    out.append(
        "selection "
        + {
            "least_annotated": f"random among the {getattr(sel, 'pool', 0):,} least-annotated",
            "uniform": "uniform over all stimuli",
            "adaptive": f"adaptive (most uncertain of a {getattr(sel, 'pool', 0):,} pool)",
        }[sel.kind]
    )
    arr = p.campaign.arrivals
    stop = p.campaign.stop
    stop_txt = (
        f"after {stop.count:,} participants"
        if stop.kind == "participants"
        else f"when every stimulus has {stop.count} annotations (at most {stop.max_participants:,} participants)"
    )
    out.append(f"campaign  Poisson arrivals, {arr.rate_per_h:g}/h; stop {stop_txt}")
    for s, step in enumerate(p.steps, start=1):
        when = "" if step.delay_h is None else f", {step.delay_h[0]:g}-{step.delay_h[1]:g} h after step {s - 1}"
        out.append(f"step {s}    {step.name}: {step.length} presentations{when}")
        for g in step.items:
            if g.repeat_lag is not None:
                how = f"shown twice, repeat {g.repeat_lag[0]}-{g.repeat_lag[1]} positions later"
            elif isinstance(g.source, str):
                how = "shown once, new"
            else:
                how = f"shown once, drawn from step {g.source.step} {'/'.join(g.source.roles)}s"
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
        corr = step.scoring.correction
        ctxt = "none" if corr.kind == "none" else f"{corr.kind} to lag {corr.reference_lag}"
        out.append(f"            score: {step.scoring.column} (correction: {ctxt})")
        if step.stop_after_vigilance_misses:
            out.append(f"            stopped after {step.stop_after_vigilance_misses} missed vigilance repeats")
    return out
