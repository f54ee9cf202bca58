"""Sweep throughput on full-scale VideoMem campaigns: runs per minute with 1 and 2 workers.

Runs the same small study (``--runs`` replicates of the unmodified VideoMem
protocol, each a full campaign: 10,000 videos, 10,150 participants, simulated,
scored and summarised) through :func:`memsim.study.sweep.run_sweep` twice, into fresh
folders: once with one worker (in process), once with two worker processes.
Timings include the worker start-up, as a real sweep pays it. One worker runs in
process with numba on every core; each of two workers gets half the cores. Reports runs per
minute, the speed-up (the plain reference is the one-worker run of the same
cells in the same process) and the time a 1,000-campaign study would take at
the two-worker rate — an EXTRAPOLATION from ``--runs`` cells, labelled so.

    python benchmarks/bench_sweep.py [--runs 6] [--scale 1.0]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _study(folder: Path, runs: int, scale: float) -> Path:
    path = folder / "bench.yaml"
    path.write_text(
        f"""name: bench-videomem
protocol: {REPO / "protocols" / "videomem.yaml"}
replicates: {runs}
statistics: [human_consistency.short-term.mean, human_consistency.long-term.mean]
seed: 2019
scale: {scale}
"""
    )
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=6, help="campaigns per measurement (default 6)")
    ap.add_argument(
        "--scale", type=float, default=1.0, help="campaign scale (default 1.0: full VideoMem)"
    )
    args = ap.parse_args()

    from memsim.study.sweep import run_sweep

    load0 = os.getloadavg()[0]

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        study = _study(tmp, args.runs, args.scale)
        # warm the on-disk numba cache (first-ever compilation is not sweep throughput)
        (tmp / "w").mkdir()
        warm = _study(tmp / "w", 1, 0.02)
        run_sweep(warm, tmp / "warm", workers=1)

        rates = {}
        digests = {}
        for workers in (1, 2):
            out = tmp / f"w{workers}"
            t0 = time.perf_counter()
            summary = run_sweep(study, out, workers=workers)
            wall = time.perf_counter() - t0
            assert summary.ran == args.runs
            rates[workers] = args.runs / wall * 60.0
            digests[workers] = (out / "results.parquet").read_bytes()
            print(
                f"{workers} worker{'s' if workers > 1 else ' '}: {args.runs} runs in {wall:6.1f} s "
                f"= {rates[workers]:5.2f} runs/min"
            )
    print(
        f"speed-up 1 -> 2 workers: {rates[2] / rates[1]:.2f}x   (results identical: "
        f"{digests[1] == digests[2]})"
    )
    minutes = 1000 / rates[2]
    print(
        f"EXTRAPOLATED from {args.runs} runs at scale {args.scale:g}: 1,000 campaigns with 2 "
        "workers "
        f"~ {minutes:.0f} min (acceptance: <= 30 min); with 1 worker ~ {1000 / rates[1]:.0f} min"
    )
    print(
        f"machine: {os.cpu_count()} CPUs; load average before/after: {load0:.1f} / "
        f"{os.getloadavg()[0]:.1f} "
        "(a load above the CPU count means other work shared the CPUs: the worker speed-up cannot "
        "show)"
    )


if __name__ == "__main__":
    main()
