"""Forgetting laws: how a stimulus' recognition probability falls with delay.

Every law gives the recognition probability of a stimulus for an average,
attentive participant after a delay of ``t`` seconds,

    R(t) = law(t, m, r, a, b)

from the stimulus' immediate memorability ``m`` (probability at ``t = 0``), its
own forgetting rate ``r`` (each video forgets at its own pace, which is what
makes short- and long-term ranks differ) and two population-level shape
parameters ``a`` and ``b`` that the law names in ``params``. Laws are
registered by name; a parameter file picks one with ``forgetting.law``.

The per-video rate is drawn on the normal scale and mapped into the law's
domain by ``rate_domain``: ``unit`` (logistic, rates in (0, 1)), ``positive``
(exp) or ``real`` (identity).

All laws are ``@njit`` functions of scalars so the trial kernel can call the
chosen one directly; the registry maps names to integer codes that the kernel
dispatches on (numba cannot store first-class functions in arrays cheaply).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from numba import njit

from memsim import _jitcache  # noqa: F401  (drops numba caches older than the sources)

__all__ = ["LAWS", "ForgettingLaw", "law_code", "retention"]


@njit(cache=True, inline="always")
def _exponential(t, m, r, a, b):
    # R = m * exp(-r * t / a): r is the per-video rate in units of 1/a seconds.
    return m * math.exp(-r * t / a)


@njit(cache=True, inline="always")
def _power(t, m, r, a, b):
    # R = m * (1 + t / a) ** (-r): Wixted-style power forgetting.
    return m * (1.0 + t / a) ** (-r)


@njit(cache=True, inline="always")
def _linear(t, m, r, a, b):
    # R = m - r * t / a, clipped to [0, 1]: Memento10k's decay linear in lag
    # (a = seconds per lag position, so r is the decay per position).
    v = m - r * t / a
    return min(max(v, 0.0), 1.0)


@njit(cache=True, inline="always")
def _exponential_asymptote(t, m, r, a, b):
    # R = m * (1 - r * (1 - exp(-t / a))): a share r of the memory is lost with
    # time constant a; what remains after many a's is m * (1 - r).
    return m * (1.0 - r * (1.0 - math.exp(-t / a)))


@njit(cache=True, inline="always")
def _logit_exponential_asymptote(t, m, r, a, b):
    # logit R = logit m - r * (1 - exp(-t / a)): the memory's log-odds fall by up to r with
    # time constant a, so a video recognised almost surely at once loses little probability
    # and one near chance loses most.
    if m <= 0.0:
        return 0.0
    if m >= 1.0:
        return 1.0
    x = math.log(m / (1.0 - m)) - r * (1.0 - math.exp(-t / a))
    return 1.0 / (1.0 + math.exp(-x))


@njit(cache=True)
def retention(code, t, m, r, a, b):
    """Recognition probability after ``t`` seconds under law number ``code``."""
    if code == 0:
        return _exponential(t, m, r, a, b)
    elif code == 1:
        return _power(t, m, r, a, b)
    elif code == 2:
        return _linear(t, m, r, a, b)
    elif code == 3:
        return _exponential_asymptote(t, m, r, a, b)
    else:
        return _logit_exponential_asymptote(t, m, r, a, b)


@dataclass(frozen=True)
class ForgettingLaw:
    """A registered law: its kernel code, its shape parameters and rate domain."""

    name: str
    code: int
    params: tuple[str, ...]  # names of the population-level shape parameters (a, b)
    defaults: tuple[float, ...]
    rate_domain: str  # how a normal draw becomes the per-video rate
    formula: str

    def closed_form(self, t: float, m: float, r: float, *shape: float) -> float:
        """The law in plain Python (for tests and docs)."""
        a, b = (tuple(shape) + self.defaults[len(shape) :] + (0.0, 0.0))[:2]
        return float(retention(self.code, float(t), float(m), float(r), float(a), float(b)))


LAWS: dict[str, ForgettingLaw] = {
    law.name: law
    for law in (
        ForgettingLaw(
            "exponential",
            0,
            ("time_scale_s",),
            (3600.0,),
            "positive",
            "R(t) = m exp(-r t / time_scale_s)",
        ),
        ForgettingLaw(
            "power",
            1,
            ("time_scale_s",),
            (60.0,),
            "positive",
            "R(t) = m (1 + t / time_scale_s)^(-r)",
        ),
        ForgettingLaw(
            "linear",
            2,
            ("seconds_per_lag",),
            (8.0,),
            "real",
            "R(t) = clip(m - r t / seconds_per_lag, 0, 1)",
        ),
        ForgettingLaw(
            "exponential_asymptote",
            3,
            ("time_constant_s",),
            (3600.0,),
            "unit",
            "R(t) = m (1 - r (1 - exp(-t / time_constant_s)))",
        ),
        ForgettingLaw(
            "logit_exponential_asymptote",
            4,
            ("time_constant_s",),
            (3600.0,),
            "positive",
            "logit R(t) = logit m - r (1 - exp(-t / time_constant_s))",
        ),
    )
}


def law_code(name: str) -> int:
    return LAWS[name].code
