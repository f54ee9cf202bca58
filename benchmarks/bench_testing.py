"""Benchmark: how fast memsim.testing's strategies draw valid VideoMem-shaped logs.

    python benchmarks/bench_testing.py [--examples 300] [--participants 4] [--runs 3]

Times, in the same process:

- the strategy: ``trial_tables("videomem", participants=(1, P))`` drawn by hypothesis
  (generation phase only, derandomized, no database), each log checked by
  ``validate_trials`` (so every log counted is a valid trial table);
- plain references on the same participant counts: the same log builder fed with numpy
  random bytes instead of hypothesis' choices (the cost hypothesis adds), and
  ``tests/tables.py``'s numpy generator (the data builder memsim's tests used before).

Prints logs per second for each, their ratio, and mean rows per log. Best of ``--runs``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from hypothesis import Phase, given, settings

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from tables import Design, make_protocol, make_trials  # noqa: E402

from memsim.design.trials import validate_trials  # noqa: E402
from memsim.testing import Columns, shipped_protocol, trial_tables  # noqa: E402
from memsim.testing.logs import Model, Person, Session, build_study, layout  # noqa: E402


def strategy_run(protocol, n_examples: int, participants: int):
    """Seconds to draw and validate ``n_examples`` logs; the participant count of each."""
    cm = Columns()
    counts: list[int] = []
    rows: list[int] = []

    @settings(
        max_examples=n_examples,
        phases=[Phase.generate],
        database=None,
        deadline=None,
        derandomize=True,
    )
    @given(trial_tables(protocol, participants=(1, participants)))
    def draw(log):
        t = validate_trials(cm.to_contract(log))
        counts.append(int(t["participant"].nunique()))
        rows.append(len(t))

    t0 = time.perf_counter()
    draw()
    return time.perf_counter() - t0, counts, rows


def builder_run(protocol, counts: list[int], seed: int = 0) -> float:
    """Seconds to build and validate logs of the same sizes from numpy random bytes."""
    rng = np.random.default_rng(seed)
    lays = layout(protocol)
    n_new = sum(len(lay.new_items) for lay in lays)
    n_videos = n_new + 1
    t0 = time.perf_counter()
    for n in counts:
        truth = tuple(1.0 - rng.integers(0, 21, n_videos) / 20 for _ in lays)
        persons = [
            Person(
                videos=rng.bytes(n_new),
                careless=bool(rng.random() < 0.5),
                false_alarm_level=int(rng.integers(0, 4)),
                sessions=tuple(Session(rng.bytes(lay.blob_size), lay.length) for lay in lays),
            )
            for _ in range(n)
        ]
        study = build_study(protocol, n_videos, Model(truth, (-0.05, 0.0)), persons)
        validate_trials(study.trials)
    return time.perf_counter() - t0


def tables_run(counts: list[int], seed: int = 0) -> float:
    """Seconds for tests/tables.py to generate and validate VideoMem-design logs of the same
    participant counts (each participant returns for step 2)."""
    proto_videos = 201
    t0 = time.perf_counter()
    for i, n in enumerate(counts):
        trials, _ = make_trials(
            n_videos=proto_videos,
            n_participants=n,
            n_returning=n,
            design=Design(),
            seed=seed + i,
            n_templates=1,
        )
        validate_trials(trials)
    return time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=300)
    ap.add_argument("--participants", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args(argv)
    protocol = shipped_protocol("videomem")
    make_protocol()  # tables.py's own protocol: imported, validated once, outside the timing
    strategy_run(protocol, 20, args.participants)  # warm-up: imports, caches
    best = None
    for _ in range(args.runs):
        secs, counts, rows = strategy_run(protocol, args.examples, args.participants)
        if best is None or secs < best[0]:
            best = (secs, counts, rows)
    secs, counts, rows = best
    builder = min(builder_run(protocol, counts, seed=r) for r in range(args.runs))
    tables = min(tables_run(counts, seed=r) for r in range(args.runs))
    n = len(counts)
    print(
        f"VideoMem logs: {n} drawn, 1-{args.participants} participants "
        f"(mean {np.mean(counts):.2f}), mean {np.mean(rows):.0f} rows"
    )
    print(f"strategy (hypothesis + builder + validate_trials): {n / secs:8.1f} logs/s")
    print(f"builder on numpy bytes + validate_trials:          {n / builder:8.1f} logs/s")
    print(f"tests/tables.py make_trials + validate_trials:     {n / tables:8.1f} logs/s")
    print(
        f"strategy time / builder time: {secs / builder:.2f}; "
        f"strategy time / tables.py time: {secs / tables:.2f}"
    )


if __name__ == "__main__":
    main()
