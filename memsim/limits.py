"""The limits memsim enforces on its input, in one place (docs/limits.md lists each).

Every limit is checked before the work it protects starts, and a breach is one
:class:`~memsim.errors.UserError` line that names the limit and the value. Limits that a
user may mean to exceed (a huge sweep grid, many random splits) have an explicit override
on the command line (``--allow-large``); limits that protect the machine (YAML size and
nesting, alias expansion, integer size, the memory a run needs) do not.

This module sits at memsim's core: it imports nothing from memsim but ``errors``.
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path

from memsim.errors import UserError

__all__ = [
    "YAML_MAX_BYTES",
    "YAML_MAX_DEPTH",
    "YAML_MAX_NODES",
    "INT_MIN",
    "INT_MAX",
    "SEED_MAX",
    "MAX_RUNS",
    "MAX_SPLITS",
    "BYTES_PER_TRIAL",
    "check_seed",
    "check_int",
    "check_runs",
    "check_splits",
    "available_memory",
    "check_memory",
]

YAML_MAX_BYTES = 1 << 20  # 1 MiB: the largest shipped YAML file is 9 kB
YAML_MAX_DEPTH = 32  # nesting levels (mappings and lists); the shipped files use 7 at most
YAML_MAX_NODES = 100_000  # scalars, mappings and lists once every alias is expanded
INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # every integer in a YAML file: a signed 64-bit value
SEED_MAX = 2**63 - 1  # seeds are in [0, 2**63): 63 bits, as the sweep's derived seeds
MAX_RUNS = 10_000  # runs of one sweep (cells x replicates) without --allow-large
MAX_SPLITS = 1_000  # random half-splits of one analysis without --allow-large
# Peak memory of a run per trial row that its campaign can make (participant budget x
# presentations per participant): `memsim run videomem` peaks at 438 MiB at scale 0.25 and
# 574 MiB at scale 1 (/usr/bin/time -v), 62 bytes per such row between the two; rounded up
BYTES_PER_TRIAL = 100


def check_int(value: object, what: str, lo: int = INT_MIN, hi: int = INT_MAX) -> int:
    """``value`` as an int in ``[lo, hi]``, else a one-line UserError naming ``what``.

    Any integer type (a NumPy ``int64`` from an array, say) is taken as the int it is; a bool
    is not an integer here.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UserError(f"{what} must be an integer, got {type(value).__name__}")
    value = int(value)
    if not lo <= value <= hi:
        shown = str(value) if abs(value) < 10**30 else f"a {len(str(abs(value)))}-digit number"
        raise UserError(f"{what} must be in [{lo}, {hi}], got {shown}")
    return value


def check_seed(seed: object, what: str = "seed") -> int:
    """A seed in ``[0, 2**63)``."""
    return check_int(seed, what, 0, SEED_MAX)


def check_runs(runs: int, allow_large: bool = False, what: str = "the study") -> None:
    """Refuse a sweep of more than :data:`MAX_RUNS` runs unless ``allow_large``."""
    if runs > MAX_RUNS and not allow_large:
        raise UserError(
            f"{what} has {runs:,} runs (cells x replicates), more than the limit of "
            f"{MAX_RUNS:,}; shrink the grid, or pass --allow-large if you mean it"
        )


def check_splits(n: int, allow_large: bool = False) -> None:
    """Refuse more than :data:`MAX_SPLITS` random splits unless ``allow_large``."""
    if n > MAX_SPLITS and not allow_large:
        raise UserError(
            f"--splits {n:,} is more than the limit of {MAX_SPLITS:,}; "
            "pass --allow-large if you mean it"
        )


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_memory() -> int | None:
    """Bytes this process can still allocate: ``MemAvailable``, lowered by a cgroup limit.

    None where neither is known (then no memory check is made).
    """
    avail = None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    if avail is None and hasattr(os, "sysconf"):
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            avail = None
    # cgroup v2, then v1: a container's limit is lower than the host's free memory
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 1 << 60:
            left = max(limit - usage, 0)
            avail = left if avail is None else min(avail, left)
            break
    return avail


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def check_memory(trials: int, what: str, *, how: str = "") -> None:
    """Refuse a run whose estimated peak memory exceeds the memory available.

    ``trials``: the most trial rows the run can make (participants x presentations);
    the estimate is ``trials x BYTES_PER_TRIAL``. ``how``: what the user can change.
    """
    need = float(trials) * BYTES_PER_TRIAL
    avail = available_memory()
    if avail is None or need <= avail:
        return
    rows = f"{trials:,}" if trials < 10**15 else f"about 10^{int(math.log10(trials))}"
    raise UserError(
        f"{what}: needs about {_gib(need)} ({rows} trial rows x {BYTES_PER_TRIAL} bytes), more "
        f"than the {_gib(avail)} available" + (f"; {how}" if how else "")
    )
