"""How the command line shows :class:`memsim.progress.Progress` events.

On a terminal: a rich bar per task, gone when the task ends. Piped to a file or a log: plain
lines on stderr, one when a task starts, then at most one every ``every_s`` seconds and one
at the end (as pip and tqdm do), so a log shows that work goes on.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator

from memsim.progress import Progress, ProgressCallback, printer

__all__ = ["progress_display"]


@contextlib.contextmanager
def progress_display(
    enabled: bool = True, *, every_s: float = 10.0, stream=None
) -> Iterator[ProgressCallback | None]:
    """Yield a progress callback for a command (None when ``enabled`` is False)."""
    stream = stream or sys.stderr
    if not enabled:
        yield None
        return
    if not stream.isatty():
        yield _plain(stream, every_s)
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


def _plain(stream, every_s: float) -> ProgressCallback:
    """Plain lines: a task's first event, then one per ``every_s`` seconds, and its last."""
    inner = printer(stream)
    last: dict[str, float] = {}

    def show(p: Progress) -> None:
        now = time.monotonic()
        first = p.task not in last
        final = p.total is not None and p.done >= p.total
        if first or final or now - last[p.task] >= every_s:
            last[p.task] = now
            inner(p)

    return show
