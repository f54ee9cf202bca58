"""Progress of long work: the library reports it, whoever called decides how to show it.

Every long call (:func:`memsim.simulate`, :func:`memsim.run`, :func:`memsim.sweep`,
:func:`memsim.calibrate`, predictor training) takes ``progress``: a callable that receives a
:class:`Progress` each time something moves, or None for silence. The command line draws
them (a bar on a terminal, plain lines in a log); a notebook can print them, or pass
``memsim.progress.printer()``.

>>> from memsim.progress import Progress, report
>>> seen = []
>>> report(seen.append, "simulate", "campaign", 0, 4, unit="stage")
>>> seen[0].fraction
0.0
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Progress", "ProgressCallback", "report", "printer"]


@dataclass(frozen=True)
class Progress:
    """One step of a long task.

    Attributes
    ----------
    task : str
        What runs: ``"simulate"``, ``"sweep"``, ``"calibrate"``, ...
    stage : str
        Where it is now (``"step 1"``, ``"cell 4 of 33"``, ``"start 2 of 3"``).
    done, total : float
        Units finished and in all (``total`` None when unknown).
    unit : str
        What a unit is (``"stage"``, ``"run"``, ``"candidate"``, ``"epoch"``).
    detail : str
        Anything worth a glance (``"best distance 3.05"``).
    """

    task: str
    stage: str
    done: float
    total: float | None
    unit: str = ""
    detail: str = ""

    @property
    def fraction(self) -> float | None:
        """``done / total``, or None when the total is unknown or zero."""
        return self.done / self.total if self.total else None


ProgressCallback = Callable[[Progress], None]


def report(
    progress: ProgressCallback | None,
    task: str,
    stage: str,
    done: float,
    total: float | None,
    *,
    unit: str = "",
    detail: str = "",
) -> None:
    """Send one :class:`Progress` to ``progress`` (nothing when it is None)."""
    if progress is not None:
        progress(Progress(task, stage, done, total, unit, detail))


def printer(stream=None, every_s: float = 0.0) -> ProgressCallback:
    """A callback that writes one plain line per event (at most one per ``every_s`` seconds,
    the last of a task always): for notebooks and logs."""
    last = {"t": float("-inf")}

    def show(p: Progress) -> None:
        now = time.monotonic()
        final = p.total is not None and p.done >= p.total
        if now - last["t"] < every_s and not final:
            return
        last["t"] = now
        of = f"/{p.total:g}" if p.total is not None else ""
        extra = f" ({p.detail})" if p.detail else ""
        print(
            f"{p.task}: {p.stage} [{p.done:g}{of} {p.unit}]{extra}".replace(" ]", "]"),
            file=stream or sys.stderr,
            flush=True,
        )

    return show
