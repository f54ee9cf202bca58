"""Many simulations in one call, each reduced to its statistics: for calibration and sweeps.

In: a protocol (or a :class:`~memsim.sim.simulate.PreparedProtocol`), runs as ``(params,
seed)`` pairs — many replicates of one parameter set, or many parameter sets — and a
``summarise`` function. Out: one ``summarise`` result per run, in the order of the runs.

The protocol is scaled and its step layouts made once for every run, the numba kernels are
compiled (or loaded from the cache) once per process, and no DataFrame is built: each run is
simulated into arrays (:func:`~memsim.sim.simulate.simulate_arrays`) and handed to
``summarise`` as a :class:`~memsim.sim.simulate.SimulatedArrays`, whose ``trials`` mapping
:func:`memsim.analysis.scoring.score` takes as it is. What ``summarise`` returns is all that is
kept of a run, so memory does not grow with the number of runs. The simulator never imports
scoring: the caller brings the reduction (``memsim.fit.calibrate`` its moments,
``memsim.study.sweep`` a study's statistics).

Each run is the same simulation, byte for byte, as :func:`~memsim.sim.simulate.simulate` with
that protocol, parameter set and seed (``tests/test_fast_paths.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from memsim.design.protocol import Protocol
from memsim.progress import ProgressCallback, report
from memsim.sim.params import Params
from memsim.sim.simulate import PreparedProtocol, SimulatedArrays, prepare, simulate_arrays

__all__ = ["simulate_many"]

T = TypeVar("T")


def simulate_many(
    protocol: Protocol | PreparedProtocol,
    runs: Iterable[tuple[Params, int]],
    summarise: Callable[[SimulatedArrays], T],
    *,
    scale: float = 1.0,
    progress: ProgressCallback | None = None,
    workspace: dict | None = None,
) -> list[T]:
    """Simulate each ``(params, seed)`` of ``runs`` and keep only ``summarise`` of it.

    Parameters
    ----------
    protocol : Protocol or PreparedProtocol
        A prepared protocol is used as it is (``scale`` is then ignored).
    runs : iterable of (Params, int)
        Parameter set and seed of each run.
    summarise : callable
        Reduces one run (:class:`~memsim.sim.simulate.SimulatedArrays`) to what the caller
        keeps; it must not keep the run's trial arrays themselves: the next run writes its
        own into the same memory.
    scale : float
        Shrink the protocol (:func:`~memsim.sim.simulate.scale_protocol`).
    progress : callable, optional
        Receives a :class:`memsim.progress.Progress` per finished run.
    workspace : dict, optional
        Table memory kept from call to call (an empty dict at first): a caller that calls
        this many times (a calibration's worker) passes the same one each time.

    Returns
    -------
    list
        ``summarise``'s result for each run, in order.
    """
    prepared = protocol if isinstance(protocol, PreparedProtocol) else prepare(protocol, scale)
    runs = list(runs)
    out = []
    workspace = {} if workspace is None else workspace  # one run's memory, reused by the next
    for i, (params, seed) in enumerate(runs):
        out.append(summarise(simulate_arrays(prepared, params, int(seed), workspace=workspace)))
        report(progress, "simulate", "runs", i + 1, len(runs), unit="runs")
    return out
