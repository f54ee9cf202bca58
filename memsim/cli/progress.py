"""How the command line shows :class:`memsim.progress.Progress` events.

On a terminal: a rich bar per task, gone when the task ends. Piped to a file or a log: plain
lines on stderr, as pip and tqdm write them there: one when a task starts or changes stage,
then one at least every ``every_s`` seconds while it works - repeated from the last event
when the work itself reports nothing for that long (numba compiling, a long campaign step, a
slow sweep cell) - and one at the end. Each line says how long the task has run.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator

from memsim.progress import Progress, ProgressCallback, clock

__all__ = ["progress_display", "plain_line"]


@contextlib.contextmanager
def progress_display(
    enabled: bool = True, *, every_s: float = 10.0, stream=None, tty: bool | None = None
) -> Iterator[ProgressCallback | None]:
    """Yield a progress callback for a command (None when ``enabled`` is False).

    ``tty``: draw a bar (True) or plain lines (False); default: a bar when ``stream`` is a
    terminal.
    """
    stream = stream or sys.stderr
    if not enabled:
        yield None
        return
    if not (stream.isatty() if tty is None else tty):
        plain = _Plain(stream, every_s)
        try:
            yield plain
        finally:
            plain.close()
        return
    from rich.console import Console
    from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    with Bar(
        TextColumn("[bold]{task.description:<24}"),
        BarColumn(),
        TextColumn("{task.fields[count]}"),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=Console(file=stream),
        transient=True,
    ) as bar:
        tasks: dict[str, int] = {}

        def show(p: Progress) -> None:
            label = f"{p.task}: {p.stage}"
            count = f"{p.done:g}/{p.total:g}" if p.total is not None else f"{p.done:g}"
            if p.task not in tasks:
                tasks[p.task] = bar.add_task(label, total=p.total, count=count, detail=p.detail)
            bar.update(
                tasks[p.task],
                description=label,
                completed=p.done,
                total=p.total,
                count=count,
                detail=p.detail,
            )

        yield show


def plain_line(p: Progress, elapsed_s: float) -> str:
    """One plain progress line: ``sweep: annotations 9/33 runs [0:12] (~0:43 left)``."""
    count = f"{p.done:g}/{p.total:g}" if p.total is not None else f"{p.done:g}"
    unit = f" {p.unit}" if p.unit else ""
    extra = f" ({p.detail})" if p.detail else ""
    return f"{p.task}: {p.stage} {count}{unit} [{clock(elapsed_s)}]{extra}"


class _Plain:
    """Plain lines: a task's first event and every change of stage, then one at least every
    ``every_s`` seconds (a ticker thread repeats the last event when the work is silent),
    and its last."""

    def __init__(self, stream, every_s: float) -> None:
        self.stream, self.every_s = stream, every_s
        self.lock = threading.Lock()
        self.started: dict[str, float] = {}
        self.last: dict[str, Progress] = {}
        self.shown: dict[str, float] = {}  # when each task's last line was written
        self.stop = threading.Event()
        self.ticker = threading.Thread(target=self._tick, name="memsim-progress", daemon=True)
        self.ticker.start()

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        with self.lock:
            first = p.task not in self.started
            if first:
                self.started[p.task] = now
            prev = self.last.get(p.task)
            self.last[p.task] = p
            final = p.total is not None and p.done >= p.total
            moved_on = prev is not None and prev.stage != p.stage
            if first or final or moved_on or now - self.shown[p.task] >= self.every_s:
                self._write(p, now)
            if final:  # the task is over: the ticker forgets it
                del self.last[p.task]

    def _write(self, p: Progress, now: float) -> None:
        self.shown[p.task] = now
        try:
            print(plain_line(p, now - self.started[p.task]), file=self.stream, flush=True)
        except (OSError, ValueError):  # the log went away (closed pipe): progress is optional
            self.stop.set()

    def _tick(self) -> None:
        # wake every quarter second and write half a second early: a loaded machine (or a
        # numba kernel holding the GIL) delays the thread, and no gap should exceed every_s
        step = min(0.25, self.every_s / 4)
        early = min(0.5, self.every_s / 4)
        while not self.stop.wait(step):
            now = time.monotonic()
            with self.lock:
                for task, p in list(self.last.items()):
                    if now - self.shown[task] >= self.every_s - early:
                        self._write(p, now)

    def close(self) -> None:
        self.stop.set()
        self.ticker.join(timeout=2)
