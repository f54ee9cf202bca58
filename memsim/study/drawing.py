"""A run's figures drawn beside the run: in forked worker processes, or in this process.

In: figure calls (:func:`memsim.viz.plots.score_figures`,
:func:`~memsim.viz.plots.analysis_figures`), handed over as soon as their inputs exist. Out: the
PNG paths, in the order the calls were given, once every figure is drawn; or the first figure's
error, raised as the figure raised it.

The figures of ``memsim run`` need matplotlib (a few tenths of a second to import) and about a
second of drawing; the simulation, scoring and analyses need neither. So
:func:`memsim.study.run.run_study` starts a :class:`FigureDrawer` before the simulation: on
Linux its workers are forked then, import matplotlib while the campaign is simulated, and draw
each figure while the main process goes on (the score figures while the analyses run); the run
waits for them (:meth:`FigureDrawer.paths`) before its folder is renamed into place, and
:meth:`FigureDrawer.close` stops them on any error, so nothing is drawn into a folder that is
being removed. Elsewhere, or once numba's worker threads are running in this process (GNU
OpenMP does not survive a fork, and Fig. 5's Spearman runs a parallel kernel), the same calls
are drawn here, in turn, when :meth:`~FigureDrawer.paths` is called: the reference path, and
the same bytes (``tests/test_drawing.py``).
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
from pathlib import Path

__all__ = ["FigureDrawer", "default_workers", "fork_problem", "MAX_WORKERS", "MOST_WORKERS"]

#: The most worker processes :func:`default_workers` gives: two draw the five figures of a run
#: in about the time of the slowest pair.
MAX_WORKERS = 2
#: The most worker processes a drawer starts whatever it is asked: a run draws five figures,
#: and a worker more would only idle (``--figure-workers 100000`` forked 100,000 processes).
MOST_WORKERS = 5


def default_workers() -> int:
    """Worker processes for a run's figures: :data:`MAX_WORKERS` (at most one per CPU) while
    the 1-minute load average is below the number of CPUs; 0 (draw in this process) when the
    CPUs were all busy.

    A worker only helps while a CPU is free to run it: on a machine whose CPUs are all busy
    it adds its own start-up (importing matplotlib, copying the pages both processes write)
    to the work. Measured on the 2-CPU machine, two workers against drawing in-process, the
    whole process, 7 runs each in turn: 0.79x the wall time at load average 1.8-2.1 (the
    runs' own load included); 1.11x with other people's jobs on both CPUs, at load 3-4
    (docs/performance.md).
    """
    cpus = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0] >= cpus
    except OSError:  # pragma: no cover - no load average here
        return 0
    return 0 if busy else min(MAX_WORKERS, cpus)


def fork_problem() -> str | None:
    """Why figures cannot be drawn in forked workers here (None: they can)."""
    if not sys.platform.startswith("linux"):
        return "worker processes are forked on Linux only"
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():  # pragma: no cover
        return "this Python cannot fork"
    parallel = sys.modules.get("numba.np.ufunc.parallel")
    if parallel is not None and getattr(parallel, "_is_initialized", False):
        return "numba's worker threads are running in this process (a fork would not keep them)"
    return None


def _load_numba_registries() -> None:
    """Set up numba's CPU target in this process now (its first kernel call would): the
    workers forked after it inherit it, and Fig. 5's Spearman then loads one cached kernel
    instead of importing numba's whole lowering registry, scipy.linalg's BLAS check included
    (0.29 s measured). It starts no thread, so forking stays safe."""
    if "numba" not in sys.modules:  # pragma: no cover - the run imports numba first
        return
    with contextlib.suppress(Exception):  # an internal of numba's: if it moves, skip this
        from numba.core.registry import cpu_target

        cpu_target.target_context.refresh()


def _start_worker(parent: int) -> None:
    """A worker's first work: die with its parent, then import what drawing needs."""
    from memsim.io import die_with_parent

    die_with_parent(parent)  # Linux: SIGKILL when the parent dies (kill -9)
    # the parent's Ctrl-C reaches the whole process group: the parent stops the workers
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401

    import memsim.viz.plots  # noqa: F401


def _died() -> RuntimeError:
    return RuntimeError(
        "a figure worker process ended before drawing its figure (killed, or out of memory)"
    )


def _draw(fn, args, kwargs):
    return fn(*args, **kwargs)


class FigureDrawer:
    """Draws figure calls in ``workers`` forked processes, or here when ``workers`` is 0 or
    forking is not safe (:func:`fork_problem`).

    Use as a context manager (or call :meth:`close`): leaving it stops the workers, waiting
    for none of the figures still queued.

    Parameters
    ----------
    workers : int, optional
        Worker processes (default :func:`default_workers`); 0 draws every figure in this
        process, when :meth:`paths` is called.
    """

    def __init__(self, workers: int | None = None) -> None:
        if workers is None:
            workers = default_workers()
        if workers < 0:
            raise ValueError(f"workers must be >= 0, not {workers}")
        self.workers = workers = min(workers, MOST_WORKERS)
        self.why_here = "no worker asked for" if workers == 0 else fork_problem()
        self._pool = None  # a ProcessPoolExecutor while the workers run
        self._calls: list[tuple] = []
        self._futures: list = []
        if self.why_here is None:
            import multiprocessing  # here, not at import: a run without workers needs neither
            from concurrent.futures import ProcessPoolExecutor

            _load_numba_registries()
            self._pool = ProcessPoolExecutor(
                workers,
                mp_context=multiprocessing.get_context("fork"),
                initializer=_start_worker,
                initargs=(os.getpid(),),
            )
            # A fork context starts every worker at the first submit, before the pool's own
            # threads exist: fork them now, while this process has no other thread. Frozen
            # across the fork, this process's objects are left out of the workers' garbage
            # collections, which would otherwise write into (and so copy) every page of them.
            gc.freeze()
            try:
                self._futures.append(self._pool.submit(int))
            finally:
                gc.unfreeze()

    @property
    def forked(self) -> bool:
        """Whether the figures are drawn in worker processes."""
        return self._pool is not None

    def draw(self, calls) -> None:
        """Queue ``(function, args, kwargs)`` calls; a worker starts on each at once."""
        from concurrent.futures.process import BrokenProcessPool

        for call in calls:
            self._calls.append(call)
            if self._pool is not None:
                try:
                    self._futures.append(self._pool.submit(_draw, *call))
                except BrokenProcessPool as e:  # a worker died drawing an earlier figure
                    raise _died() from e

    def paths(self) -> list[Path | None]:
        """Wait for every figure queued; what each call returned (a path, or None for a figure
        that does not apply), in the order queued.

        An error of a figure is raised as the figure raised it (the first one queued);
        a worker that died is a RuntimeError.
        """
        from concurrent.futures.process import BrokenProcessPool

        if self._pool is None:
            out = [fn(*args, **kw) for fn, args, kw in self._calls]
        else:
            try:
                out = [f.result() for f in self._futures[1:]]
                self._futures[0].result()
            except BrokenProcessPool as e:
                raise _died() from e
        self._calls, self._futures = [], self._futures[:1]
        return out

    def close(self) -> None:
        """Stop the workers (a figure being drawn is finished, queued ones are dropped) and
        wait for them to exit. Idempotent."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> FigureDrawer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
