"""Progress display for long work (rich), silent when disabled or not a terminal."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def stage_progress(stages: list[str], enabled: bool = True) -> Iterator[Callable[[str], None]]:
    """Yield ``tick(stage)``: each call marks the previous stage done and names the next."""
    if not enabled:
        yield lambda msg: None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]{task.description:<12}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task(stages[0] if stages else "", total=len(stages))
        seen = {"n": 0}

        def tick(msg: str) -> None:
            if seen["n"]:
                bar.advance(task)
            seen["n"] += 1
            bar.update(task, description=msg)

        yield tick
        bar.update(task, completed=len(stages))
