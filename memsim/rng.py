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

import numpy as np
from numba import njit

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


@njit(cache=True, inline="always")
def next_normal(state):
    """Advance twice; return ``(state, z)`` with ``z`` standard normal (Box–Muller)."""
    state, u1 = next_uniform(state)
    state, u2 = next_uniform(state)
    r = np.sqrt(-2.0 * np.log(1.0 - u1))
    return state, r * np.cos(2.0 * np.pi * u2)


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
        u1 = self.uniform()
        u2 = self.uniform()
        return float(np.sqrt(-2.0 * np.log(1.0 - u1)) * np.cos(2.0 * np.pi * u2))
