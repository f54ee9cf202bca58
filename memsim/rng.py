"""Counter-based random streams for numba kernels.

A stream is a single ``uint64`` state advanced by SplitMix64 (Steele, Lea &
Flood 2014): ``state += GOLDEN; z = mix(state)``. Every participant (and every
stream purpose) gets its own state from :func:`stream_key`, a hash of
``(seed, purpose, index)``, so a result never depends on how participants are
split between threads, chunks or workers, nor on the order they run in.

Kernels thread the state through explicitly::

    s = stream_key(seed, PURPOSE, p)
    s, u = next_uniform(s)

Pure-Python twins (``*_py``) give the same bits and serve the reference
implementations and their equivalence tests.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from memsim import _jitcache  # noqa: F401  (drops numba caches older than the sources)

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0  # 2**-53

# Stream purposes: one per kind of draw, so that adding a draw to one stage
# never shifts the numbers another stage sees.
SEQUENCE = 1
RESPONSE = 2
POPULATION_VIDEO = 3
POPULATION_PARTICIPANT = 4
CAMPAIGN = 5
DEMAND = 6
TOP_UP = 7  # top-up rounds after the campaign (memsim.sim.topup), keyed by participant id
PILOT = 8  # the seed of a pilot before the campaign (campaign.pilot), index 0


@njit(cache=True, inline="always")
def mix64(z):
    """SplitMix64's finaliser: a bijective avalanche of a uint64."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(cache=True)
def stream_key(seed, purpose, index):
    """The initial state of stream ``(seed, purpose, index)`` (all non-negative ints)."""
    z = mix64(np.uint64(seed) + GOLDEN)
    z = mix64(z ^ (np.uint64(purpose) * GOLDEN))
    return mix64(z ^ mix64(np.uint64(index) + GOLDEN))


@njit(cache=True, inline="always")
def next_u64(state):
    state = state + GOLDEN
    return state, mix64(state)


@njit(cache=True, inline="always")
def next_uniform(state):
    """Advance; return ``(state, u)`` with ``u`` uniform on [0, 1) (53 bits)."""
    state, z = next_u64(state)
    return state, float(z >> _S11) * _INV53


@njit(cache=True, inline="always")
def next_below(state, n):
    """Advance; return ``(state, k)`` with ``k`` uniform on {0, ..., n-1} (n >= 1)."""
    state, u = next_uniform(state)
    k = int(u * n)
    if k >= n:  # guard against rounding at the top
        k = n - 1
    return state, k


# Acklam's rational approximation of the standard normal quantile (relative
# error < 1.2e-9): one uniform per normal draw, no trigonometry.
_A = (
    -3.969683028665376e01,
    2.209460984245205e02,
    -2.759285104469687e02,
    1.383577518672690e02,
    -3.066479806614716e01,
    2.506628277459239e00,
)
_B = (
    -5.447609879822406e01,
    1.615858368580409e02,
    -1.556989798598866e02,
    6.680131188771972e01,
    -1.328068155288572e01,
)
_C = (
    -7.784894002430293e-03,
    -3.223964580411365e-01,
    -2.400758277161838e00,
    -2.549732539343734e00,
    4.374664141464968e00,
    2.938163982698783e00,
)
_D = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00)
_P_LOW = 0.02425


@njit(cache=True, inline="always")
def normal_quantile(p):
    """Standard normal quantile of ``p`` in (0, 1) (Acklam's approximation)."""
    if p < _P_LOW:
        q = math.sqrt(-2.0 * math.log(p))
        return (((((_C[0] * q + _C[1]) * q + _C[2]) * q + _C[3]) * q + _C[4]) * q + _C[5]) / (
            (((_D[0] * q + _D[1]) * q + _D[2]) * q + _D[3]) * q + 1.0
        )
    if p > 1.0 - _P_LOW:
        q = math.sqrt(-2.0 * math.log(1.0 - p))
        return -(((((_C[0] * q + _C[1]) * q + _C[2]) * q + _C[3]) * q + _C[4]) * q + _C[5]) / (
            (((_D[0] * q + _D[1]) * q + _D[2]) * q + _D[3]) * q + 1.0
        )
    q = p - 0.5
    r = q * q
    return (
        (((((_A[0] * r + _A[1]) * r + _A[2]) * r + _A[3]) * r + _A[4]) * r + _A[5])
        * q
        / (((((_B[0] * r + _B[1]) * r + _B[2]) * r + _B[3]) * r + _B[4]) * r + 1.0)
    )


@njit(cache=True, inline="always")
def next_normal(state):
    """Advance once; return ``(state, z)`` with ``z`` standard normal (inverse CDF)."""
    state, u = next_uniform(state)
    return state, normal_quantile(0.5 * _INV53 + u)  # u + half a step: never 0 or 1


# --------------------------------------------------------------------------- pure Python twins
_MASK = (1 << 64) - 1
_G = 0x9E3779B97F4A7C15


def mix64_py(z: int) -> int:
    z &= _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def stream_key_py(seed: int, purpose: int, index: int) -> int:
    z = mix64_py(seed + _G)
    z = mix64_py(z ^ ((purpose * _G) & _MASK))
    return mix64_py(z ^ mix64_py(index + _G))


class PyStream:
    """The same stream as the kernels', one draw at a time, for reference code."""

    def __init__(self, state: int) -> None:
        self.state = int(state) & _MASK

    def u64(self) -> int:
        self.state = (self.state + _G) & _MASK
        return mix64_py(self.state)

    def uniform(self) -> float:
        return float(self.u64() >> 11) * _INV53

    def below(self, n: int) -> int:
        k = int(self.uniform() * n)
        return n - 1 if k >= n else k

    def normal(self) -> float:
        return float(normal_quantile(0.5 * _INV53 + self.uniform()))
