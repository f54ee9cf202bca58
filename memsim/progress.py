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

__all__ = ["Progress", "ProgressCallback", "TimeLeft", "clock", "report", "printer"]


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


class TimeLeft:
    """Time left of a batch of jobs, from what the finished ones cost.

    Jobs differ in size (a sweep cell recruiting until 320 annotations per video simulates
    60 times the participants of one stopping at 5), so the time of a job is modelled as
    ``a + b * work``: ``work`` its measured size (a sweep: the run's participant-minutes),
    ``a`` and ``b`` fitted by least squares on the wall time between completions (which, with
    several workers, is a job's cost shared among them). A kind of job already run is
    expected to have its measured work again; a kind not yet run gets the work predicted from
    its features (the swept values) by least squares over the kinds run, never below the
    smallest measured. The first ``warmup`` completions carry the start-up (workers spawning,
    kernels compiling) and fit nothing. The time left is the sum over the jobs still to run.

    Parameters
    ----------
    kinds : sequence of hashable
        The kind of each job still to run (a sweep: its cell).
    features : dict, optional
        Kind -> numeric features, for predicting the work of kinds not yet run.
    warmup : int
        Completions left out of the fit (default 1; a pool of N workers: N).

    >>> eta = TimeLeft(["a", "a", "b", "b"], {"a": [10.0], "b": [40.0]}, warmup=0)
    >>> eta.finished("a", 2.0, work=10.0); eta.finished("a", 2.0, work=10.0)
    >>> eta.left()  # b not run: one measured kind predicts no trend, so b's work is a's
    4.0
    """

    def __init__(self, kinds, features: dict | None = None, warmup: int = 1) -> None:
        self.pending: dict = {}
        for k in kinds:
            self.pending[k] = self.pending.get(k, 0) + 1
        self.features = features or {}
        self.warmup = warmup
        self.done: list[tuple] = []  # (kind, seconds, work) of each finished job

    def finished(self, kind, seconds: float, work: float = 1.0) -> None:
        """One job of ``kind`` finished, ``seconds`` after the previous one; ``work``: its
        measured size."""
        self.done.append((kind, float(seconds), float(work)))
        if self.pending.get(kind, 0) > 0:
            self.pending[kind] -= 1

    def _work(self) -> dict:
        """Expected work of each kind still to run."""
        import numpy as np

        measured: dict = {}
        for kind, _, work in self.done:
            measured.setdefault(kind, []).append(work)
        mean = {k: float(np.mean(v)) for k, v in measured.items()}
        todo = [k for k, n in self.pending.items() if n]
        out = {k: mean[k] for k in todo if k in mean}
        unmeasured = [k for k in todo if k not in mean]
        if not unmeasured:
            return out
        fallback = float(np.mean(list(mean.values())))
        known = [k for k in mean if k in self.features]
        width = len(np.atleast_1d(self.features[known[0]])) if known else 0
        fit = len(known) > width and all(k in self.features for k in unmeasured)
        if fit:  # a line (plane) through the measured kinds' work
            x = np.array([self.features[k] for k in known], dtype=float).reshape(len(known), -1)
            design = np.column_stack([np.ones(len(known)), x])
            coef, *_ = np.linalg.lstsq(design, [mean[k] for k in known], rcond=None)
        floor = min(mean.values())
        for k in unmeasured:
            if fit:
                f = np.asarray(self.features[k], dtype=float).reshape(-1)
                out[k] = max(floor, float(coef[0] + f @ coef[1:]))
            else:
                out[k] = fallback
        return out

    def left(self) -> float | None:
        """Seconds left (None before any job has finished)."""
        if not self.done:
            return None
        import numpy as np

        pts = self.done[self.warmup :] or self.done
        secs = np.array([p[1] for p in pts])
        works = np.array([p[2] for p in pts])
        a, b = 0.0, float(secs.sum() / works.sum()) if works.sum() > 0 else 0.0
        if len(pts) >= 3 and np.ptp(works) > 0:
            (a, b), *_ = np.linalg.lstsq(np.column_stack([np.ones(len(pts)), works]), secs)
            if b < 0:  # no trend with size: the mean time per job
                a, b = float(secs.mean()), 0.0
            elif a < 0:  # no fixed part: time proportional to size
                a, b = 0.0, float(secs.sum() / works.sum())
        work = self._work()
        return float(sum(self.pending[k] * (a + b * w) for k, w in work.items()))


def clock(seconds: float) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour): how the progress lines show durations."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


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
