"""The ``spawn`` context of memsim's worker pools (:func:`memsim.io.spawn_context`).

Its processes start with SIGINT blocked: a Ctrl-C at the terminal goes to every process of
the group, and workers still starting up printed a KeyboardInterrupt traceback each. The
mask is inherited by the child and kept across exec, and the parent restores its own at once:
the parent alone handles Ctrl-C, and its workers end with it (``memsim.io.die_with_parent``).
A module of its own, so that importing :mod:`memsim.io` does not import multiprocessing.
"""

from __future__ import annotations

import signal
from multiprocessing.context import SpawnContext, SpawnProcess


class QuietSpawnProcess(SpawnProcess):
    """A spawned process that starts with SIGINT blocked."""

    def start(self) -> None:
        if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not POSIX
            return super().start()
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            super().start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


class QuietSpawnContext(SpawnContext):
    Process = QuietSpawnProcess


CONTEXT = QuietSpawnContext()
