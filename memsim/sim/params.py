"""Population parameter sets: who the participants are and how the stimuli are remembered.

In: a YAML file under ``calibration/`` (see ``docs/model.md`` for every field
and what it does to the observable statistics). Out: a frozen
:class:`Params`; ``params_from_mapping(p.dump()) == p``.

The protocol says what the study does; the parameters say how people respond
to it. A what-if sweep can vary either by dotted path (``params.participants.
careless_share``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, model_validator

from memsim.design.protocol import number
from memsim.errors import UserError
from memsim.io import format_pydantic_error, load_yaml_mapping
from memsim.sim.forgetting import LAWS

__all__ = [
    "Params",
    "load_params",
    "params_from_mapping",
    "default_params_path",
    "own_params_path",
]

# Parameter files are read as strictly as protocols: numbers are finite, never quoted text
# ("0.5") nor booleans, and each lies in a range beyond which the model means nothing (logits
# and log-seconds within +-50, spreads within 20, times within 10^9 s). A problem names the
# parameter: `participants.rt.log_sd: Input should be a finite number`.
Prob = number(ge=0.0, le=1.0)
Logit = number(ge=-50.0, le=50.0)  # a logit or a log of seconds
Spread = number(ge=0.0, le=20.0)  # an sd on a logit or log scale
Seconds = number(gt=0.0, le=1e9)
Positive = number(gt=0.0, le=1e9)
Correlation = number(ge=-1.0, le=1.0)
NonNeg = Spread


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Normal(_Frozen):
    """A normal distribution (on the scale the field names)."""

    mean: Logit
    sd: Spread


class Forgetting(_Frozen):
    """Which forgetting law, its shape, and the spread of per-video rates."""

    law: Literal[tuple(LAWS)] = "exponential"  # the names of forgetting.LAWS, one registry
    shape: dict[str, Positive] = Field(
        default_factory=dict, description="the law's shape parameters by name"
    )
    rate: Normal = Field(
        description="per-video forgetting rate, on the normal scale of the law's rate domain"
    )
    rate_memorability_corr: Correlation = Field(
        default=0.0, description="correlation of a video's rate draw with its memorability draw"
    )

    @model_validator(mode="after")
    def _shape_known(self) -> Forgetting:
        law = LAWS[self.law]
        unknown = set(self.shape) - set(law.params)
        if unknown:
            raise ValueError(
                f"shape: unknown parameter(s) {sorted(unknown)} for law {self.law!r}; it takes "
                f"{list(law.params)}"
            )
        for k, v in self.shape.items():
            if not v > 0:
                raise ValueError(f"shape.{k}: must be positive, got {v}")
        return self

    def shape_values(self) -> tuple[float, float]:
        """The law's (a, b) shape values, defaults filled in."""
        law = LAWS[self.law]
        vals = [self.shape.get(n, d) for n, d in zip(law.params, law.defaults)]
        vals += [0.0] * (2 - len(vals))
        return float(vals[0]), float(vals[1])


class SkewedNormal(Normal):
    """``mean + sd x``, with ``x = sinh(asinh(z) + skew)`` for a standard normal ``z`` (the
    sinh-arcsinh transform of Jones & Pewsey 2009, tail weight 1): ``skew`` 0 is the normal;
    above 0 the upper tail is longer and the lower one shorter, below 0 the reverse."""

    skew: number(ge=-3.0, le=3.0) = 0.0

    def transform(self, z: np.ndarray) -> np.ndarray:
        """``x`` for standard normal draws ``z`` (``z`` itself for the normal)."""
        return z if self.skew == 0.0 else np.sinh(np.arcsinh(z) + self.skew)


class Videos(_Frozen):
    """Per-stimulus latent parameters."""

    memorability: SkewedNormal = Field(
        description="logit of the immediate recognition probability m (t = 0, average participant)"
    )
    false_alarm_sd: NonNeg = Field(
        0.0, description="sd of a stimulus' false-alarm attraction (logit shift)"
    )
    rt_sd: NonNeg = Field(
        0.0, description="sd of a stimulus' log response-time offset, shared by all steps"
    )
    short_term_sd: NonNeg = Field(
        0.0,
        description="sd of a stimulus' short-term familiarity: a logit shift of its recognitions "
        "that fades as exp(-t / short_term_decay_s), independent of its memorability and "
        "forgetting rate",
    )
    short_term_decay_s: Seconds = Field(
        3600.0, description="time constant of the short-term familiarity's fading (s)"
    )


class ResponseTime(_Frozen):
    """Log-normal response times, truncated to the presentation's duration."""

    hit_log_mean: Logit = Field(
        description="log seconds of a recognition whose logit probability is 0"
    )
    hit_strength_slope: NonNeg = Field(
        0.0, description="decrease of log RT per unit of the recognition's logit probability"
    )
    false_alarm_log_mean: Logit = Field(description="log seconds of a false alarm")
    later_step_log_shift: Logit = Field(
        0.0, description="added to log RT of recognitions in steps after the first"
    )
    later_step_false_alarm_log_shift: Logit = Field(0.0, description="the same for false alarms")
    log_sd: NonNeg = Field(description="sd of log RT around its mean")
    min_s: number(ge=0.0, le=3600.0) = Field(0.2, description="fastest possible press")


class Participants(_Frozen):
    """Per-participant latent parameters."""

    ability_sd: NonNeg = Field(
        description="sd of a participant's memory ability (logit shift of recognitions)"
    )
    false_alarm: Normal = Field(description="logit of a participant's false-alarm probability")
    lapse_mean: Prob = Field(
        description="mean share of presentations a participant does not attend to"
    )
    lapse_concentration: number(gt=0.0, le=1e6) = Field(
        20.0, description="beta concentration of lapse rates across participants"
    )
    careless_share: Prob = Field(0.0, description="share of participants who press at random")
    careless_press_rate: Prob = Field(0.3, description="how often a careless participant presses")
    return_probability: Prob = Field(
        description="probability that a participant comes back for each later step"
    )
    rt: ResponseTime


class Params(_Frozen):
    """A whole population parameter set: who plays and how stimuli are remembered.

    Frozen and validated at load time (:func:`load_params`, ``memsim.load_params``);
    :meth:`dump` gives the plain mapping back, :meth:`updated` a changed copy. Every field and
    what it does to the statistics: docs/model.md."""

    name: str = Field(min_length=1, max_length=200)
    calibrated: Annotated[bool, Strict()] = False
    note: str = Field(default="", max_length=10_000)
    forgetting: Forgetting
    videos: Videos
    participants: Participants

    def dump(self) -> dict:
        """A plain mapping that :func:`params_from_mapping` turns back into an equal object."""
        return self.model_dump(mode="json")

    def updated(self, changes: dict[str, Any]) -> Params:
        """A copy with parameters changed by dotted path, validated as a parameter file is:
        ``params.updated({"participants.careless_share": 0.1})``."""
        from memsim.design.protocol import _apply

        return params_from_mapping(_apply(self.dump(), changes), f"{self.name} (updated)")


def params_from_mapping(data: dict, path: str | os.PathLike[str] = "<params>") -> Params:
    try:
        return Params.model_validate(data)
    except ValidationError as exc:
        raise format_pydantic_error(exc, path, Params) from None


def load_params(path: str | os.PathLike[str]) -> Params:
    """Load a parameter file; any problem is a one-line :class:`UserError`."""
    return params_from_mapping(load_yaml_mapping(path, "parameter file"), path)


def own_params_path(protocol) -> Path | None:
    """The shipped ``calibration/<protocol name>.yaml``, or None when the protocol has none."""
    from memsim import resources

    return resources.params_path(protocol.name)


def default_params_path(protocol, flag: str = "--params") -> Path:
    """The protocol's own shipped parameter set, ``calibration/<protocol name>.yaml``.

    A protocol without one has no default: running it on another study's crowd is a choice
    the user makes (``--params videomem``), never a silent fallback. Raises
    :class:`memsim.errors.UserError` (one line naming the fix, with ``flag``: the option of
    the command that asks) then.
    """
    own = own_params_path(protocol)
    if own is None:
        raise UserError(
            f"protocol {protocol.name!r} has no parameter set of its own "
            f"(no calibration/{protocol.name}.yaml): pass {flag} FILE or a shipped set's "
            f"name ({flag} videomem runs it with VideoMem's calibrated crowd)"
        )
    return own
