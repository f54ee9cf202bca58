"""Benchmark: how fast memsim.testing's strategies draw valid VideoMem-shaped logs.

    python benchmarks/bench_testing.py [--examples 300] [--participants 4] [--runs 3]

Times, in the same process:

- the strategy: ``trial_tables("videomem", participants=(1, P))`` drawn by hypothesis
  (generation phase only, derandomized, no database);
- ``validate_trials`` on every log drawn, separately (every one must pass: the logs are
  valid trial tables; ``tests/test_testing_kit.py`` also checks they follow the protocol);
- plain references on the same participant counts: the same log builder fed with numpy
  random bytes instead of hypothesis' choices (the cost hypothesis adds), and
  ``tests/tables.py``'s numpy generator (the data builder memsim's tests used before).

Prints logs per second for each (per second of this process' CPU time, which a shared
machine's other work does not inflate, and per wall-clock second), their ratios, and mean
rows per log. Best of ``--runs``.
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


def _clock() -> tuple[float, float]:
    return time.process_time(), time.perf_counter()


def _since(t0: tuple[float, float]) -> tuple[float, float]:
    cpu, wall = _clock()
    return cpu - t0[0], wall - t0[1]


def strategy_run(protocol, n_examples: int, participants: int):
    """CPU and wall seconds to draw ``n_examples`` logs, and the logs."""
    logs: list = []

    @settings(
        max_examples=n_examples,
        phases=[Phase.generate],
        database=None,
        deadline=None,
        derandomize=True,
    )
    @given(trial_tables(protocol, participants=(1, participants)))
    def draw(log):
        logs.append(log)

    t0 = _clock()
    draw()
    return _since(t0), logs


def validate_run(logs: list) -> tuple[float, float]:
    """Seconds to check every log with ``validate_trials`` (raises on an invalid one)."""
    cm = Columns()
    t0 = _clock()
    for log in logs:
        validate_trials(cm.to_contract(log))
    return _since(t0)


def builder_run(protocol, counts: list[int], seed: int = 0) -> float:
    """Seconds to build logs of the same sizes from numpy random bytes."""
    rng = np.random.default_rng(seed)
    lays = layout(protocol)
    n_new = sum(len(lay.new_items) for lay in lays)
    n_videos = n_new + 1
    t0 = _clock()
    for n in counts:
        truth = tuple(1.0 - rng.integers(0, 21, n_videos) / 20 for _ in lays)
        persons = [
            Person(
                videos=rng.bytes(n_new),
                careless=bool(rng.random() < 0.5),
                false_alarm_level=int(rng.integers(0, 4)),
                sessions=tuple(
                    Session(
                        groups=tuple(rng.bytes(n) for n in lay.group_sizes),
                        order=rng.bytes(len(lay.single_items)),
                        delay=int(rng.integers(0, 256)),
                        played=lay.length,
                    )
                    for lay in lays
                ),
            )
            for _ in range(n)
        ]
        build_study(protocol, n_videos, Model(truth, (-0.05, 0.0)), persons)
    return _since(t0)


def tables_run(counts: list[int], seed: int = 0) -> float:
    """Seconds for tests/tables.py to generate VideoMem-design logs of the same participant
    counts (each participant returns for step 2)."""
    proto_videos = 201
    t0 = _clock()
    for i, n in enumerate(counts):
        make_trials(
            n_videos=proto_videos,
            n_participants=n,
            n_returning=n,
            design=Design(),
            seed=seed + i,
            n_templates=1,
        )
    return _since(t0)


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
        secs, logs = strategy_run(protocol, args.examples, args.participants)
        if best is None or secs[0] < best[0][0]:
            best = (secs, logs)
    secs, logs = best
    counts = [int(log["participant"].nunique()) for log in logs]
    checked = min(validate_run(logs) for _ in range(args.runs))
    builder = min(builder_run(protocol, counts, seed=r) for r in range(args.runs))
    tables = min(tables_run(counts, seed=r) for r in range(args.runs))
    n = len(logs)
    print(
        f"VideoMem logs: {n} drawn, 1-{args.participants} participants "
        f"(mean {np.mean(counts):.2f}), mean {np.mean([len(x) for x in logs]):.0f} rows; "
        f"all {n} pass validate_trials"
    )
    print("logs per second of CPU time (per wall-clock second):")
    for name, (cpu, wall) in (
        ("strategy: trial_tables('videomem') drawn by hypothesis", secs),
        ("validate_trials on those logs", checked),
        ("reference: the same builder on numpy bytes", builder),
        ("reference: tests/tables.py make_trials", tables),
    ):
        print(f"  {name:<56} {n / cpu:7.1f}  ({n / wall:.1f})")
    print(
        f"strategy / builder on numpy bytes: {secs[0] / builder[0]:.2f} x the CPU time; "
        f"strategy / tables.py: {secs[0] / tables[0]:.2f} x"
    )


if __name__ == "__main__":
    main()
