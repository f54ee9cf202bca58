"""Would loading numba's kernels on a thread, while ``memsim run``'s other imports run, shorten
its start-up? Two whole processes timed in turn.

Run ``python benchmarks/bench_startup_overlap.py`` (``--runs N``, default 9). Each process
does the start-up work that ``memsim run`` pays before its campaign: numba's CPU target set
up and one cached kernel loaded (what every first kernel call pays), and the imports of
pandas, pyarrow and the modules that score and compare (``memsim.fit.compare``,
``memsim.analysis.consistency``). *In turn*: one after the other on the main thread. *On a
thread*: numba's part on a second thread while the main thread imports. The two processes run
alternately (A B A B ...) after one warm-up round; the table gives the median wall time of
each and the median of the ratio pair by pair. Where most of numba's part held the
interpreter's lock (its registries are Python imports), the thread gains nothing.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

NUMBA_PART = """
def numba_part():
    from numba.core.registry import cpu_target

    cpu_target.target_context.refresh()
    from memsim.sim import kernel

    kernel._outputs(1, 1)
"""
IMPORTS = "import pandas, pyarrow.parquet, memsim.fit.compare, memsim.analysis.consistency"
MODES = {
    "in turn": NUMBA_PART + "numba_part()\n" + IMPORTS,
    "on a thread": NUMBA_PART
    + "import threading\nth = threading.Thread(target=numba_part)\nth.start()\n"
    + IMPORTS
    + "\nth.join()",
}


def _time(code: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import numpy\n" + code], check=True)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=9, help="counted rounds (default 9)")
    args = ap.parse_args(argv)
    for code in MODES.values():  # warm-up: the numba cache and the OS's file cache
        _time(code)
    times: dict[str, list[float]] = {m: [] for m in MODES}
    for _ in range(args.runs):
        for m, code in MODES.items():
            times[m].append(_time(code))
    ratios = [b / a for a, b in zip(times["in turn"], times["on a thread"])]
    print(f"start-up work of memsim run, whole process, {args.runs} rounds in turn")
    for m, ts in times.items():
        print(f"  {m:12s} median {statistics.median(ts):.3f} s  ({min(ts):.3f}-{max(ts):.3f})")
    print(
        f"  on a thread / in turn: median {statistics.median(ratios):.2f}x "
        f"({min(ratios):.2f}x-{max(ratios):.2f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
