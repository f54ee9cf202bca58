"""VideoMem step-1 sequence generation: numba kernel on one core vs the pure-Python reference.

Run ``python benchmarks/bench_sequence.py`` (add ``--lags`` to also measure the
lag distribution and restart rate over 200,000 sequences). Goal: >= 100,000
sequences per second on one core.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numba
import numpy as np

from memsim.design.protocol import load_protocol
from memsim.sim.sequence import (
    StepLayout,
    _run,
    generate_sequences,
    generate_sequences_reference,
    layout_for,
)

ROOT = Path(__file__).resolve().parents[1]


def rate(fn, n: int, repeats: int) -> float:
    """Best sequences per second over ``repeats`` runs of ``fn(n)``."""
    best = np.inf
    for _ in range(repeats):
        t = time.perf_counter()
        fn(n)
        best = min(best, time.perf_counter() - t)
    return n / best


def lag_report(layout, n: int) -> None:
    from scipy.stats import chi2

    item, lag, failed, restarts = _run(layout, 1, np.arange(n, dtype=np.int64), 0, 1000)
    assert (failed < 0).all()
    print(f"  {n:,} sequences: {np.mean(restarts > 0):.4%} needed a restart (max {restarts.max()})")
    second = lag >= 0
    group = layout.group_of_item[item[second]]
    lags = lag[second].astype(np.int64)
    for g in np.flatnonzero(layout.repeats):
        a, b = int(layout.group_lag_min[g]), int(layout.group_lag_max[g])
        counts = np.bincount(lags[group == g] - a, minlength=b - a + 1)
        share = counts / counts.sum() * counts.size  # 1.0 = exactly uniform
        expected = counts.sum() / counts.size
        stat = float(((counts - expected) ** 2 / expected).sum())
        print(
            f"  {layout.describe_group(g)}: {counts.sum():,} repeats, every lag {a}-{b} present: "
            f"{bool((counts > 0).all())}; frequency / uniform in "
            f"[{share.min():.3f}, {share.max():.3f}]; chi-square {stat:.1f} on "
            f"{counts.size - 1} df, p = {chi2.sf(stat, counts.size - 1):.3f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000, help="sequences per kernel run")
    ap.add_argument("--n-ref", type=int, default=300, help="sequences per reference run")
    ap.add_argument("--lags", action="store_true", help="also report the lag distribution")
    args = ap.parse_args()

    layout = layout_for(load_protocol(ROOT / "protocols" / "videomem.yaml").steps[0])
    numba.set_num_threads(1)
    generate_sequences(layout, 0, np.arange(1000), 0)  # compile / load the cache, warm up

    fast = rate(lambda n: generate_sequences(layout, 1, np.arange(n, dtype=np.int64), 0), args.n, 5)
    slow = rate(
        lambda n: generate_sequences_reference(layout, 1, np.arange(n, dtype=np.int64), 0),
        args.n_ref,
        2,
    )
    print(
        f"VideoMem step 1 ({layout.length} positions), one core "
        f"(numba threads = {numba.get_num_threads()})"
    )
    print(f"  numba kernel      {fast:12,.0f} sequences/s")
    print(f"  Python reference  {slow:12,.0f} sequences/s")
    print(f"  ratio             {fast / slow:12,.0f}x   (goal: kernel >= 100,000/s)")
    if args.lags:
        print("VideoMem step 1:")
        lag_report(layout, args.n)
        # A deliberately tight layout, to show what restarts do to the lag law.
        roles = ("target", "vigilance", "filler")
        tight = StepLayout(40, [12, 6, 4], [5, 1, 0], [30, 3, 0], group_role=roles)
        print("tight layout (length 40: 12 targets lag 5-30, 6 vigilance lag 1-3, 4 fillers):")
        lag_report(tight, args.n // 4)


if __name__ == "__main__":
    main()
