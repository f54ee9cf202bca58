"""Argument types shared by the commands: a bad value is argparse's one-line usage error.

``type=seed`` and friends check a value when it is parsed, before any command starts, with
the limits of :mod:`memsim.limits`.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from memsim import limits

__all__ = [
    "seed",
    "positive_int",
    "non_negative_int",
    "scale",
    "finite_float",
    "data_option",
    "targets_option",
]


def _int(text: str) -> int:
    text = text.strip()
    if len(text.lstrip("+-")) > 30:  # int() of thousands of digits is refused or slow
        raise argparse.ArgumentTypeError(f"{text[:20]}... is not an integer of 64 bits or less")
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def seed(text: str) -> int:
    """A seed: an integer in ``[0, 2**63)``."""
    value = _int(text)
    if not 0 <= value <= limits.SEED_MAX:
        raise argparse.ArgumentTypeError(f"{value} is not a seed: seeds are in [0, 2**63)")
    return value


def positive_int(text: str) -> int:
    """An integer of at least 1 (and at most 2**63 - 1)."""
    value = _int(text)
    if not 1 <= value <= limits.INT_MAX:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def at_least_two(text: str) -> int:
    """An integer of at least 2 (an SD over splits or repeats needs two)."""
    value = _int(text)
    if not 2 <= value <= limits.INT_MAX:
        raise argparse.ArgumentTypeError(f"{value} must be at least 2")
    return value


def non_negative_int(text: str) -> int:
    """An integer of at least 0 (and at most 2**63 - 1)."""
    value = _int(text)
    if not 0 <= value <= limits.INT_MAX:
        raise argparse.ArgumentTypeError(f"{value} must be 0 or more")
    return value


def finite_float(text: str) -> float:
    """A finite number (no nan, no inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def scale(text: str) -> float:
    """A study scale: a number in (0, 1]."""
    value = finite_float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value:g} is not in (0, 1]")
    return value


# --------------------------------------------------------------------------- shared options
def data_option(
    parser, help: str = "real data folder (default $MEMSIM_DATA or ../shared/data)"
) -> None:
    """``--data DIR``: the released data, found by :func:`memsim.data.data_dir` when absent."""
    parser.add_argument("--data", type=Path, default=None, help=help)


def targets_option(
    parser, help: str = "targets file (default calibration/<protocol name>-targets.yaml)"
) -> None:
    """``--targets FILE``: a targets file; absent, the protocol's own."""
    parser.add_argument("--targets", type=Path, default=None, help=help)
