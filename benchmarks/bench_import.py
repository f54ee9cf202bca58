"""Start-up cost: ``import memsim`` and ``memsim --help`` against ``python -c pass``.

Run ``python benchmarks/bench_import.py`` (``--runs N``, default 15). Each command runs as a
whole process, the three in turn (A B C A B C ...) after one warm-up round, so the machine's
drift hits all three alike; the table gives each command's median wall time, its median
excess over ``python -c pass`` (the interpreter's own start-up) and the median ratio. Goals:
``import memsim`` <= 0.3 s and ``memsim --help`` <= 0.6 s, warm.

Also lists which heavy modules a plain ``import memsim`` loads (there should be none).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

HEAVY = ("numpy", "pandas", "numba", "pyarrow", "matplotlib", "torch", "rich", "scipy", "simpy")


def _time(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15, help="counted rounds (default 15)")
    args = ap.parse_args(argv)
    memsim_cli = shutil.which("memsim") or ""
    help_cmd = [memsim_cli] if memsim_cli else [sys.executable, "-m", "memsim"]
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import memsim'": [sys.executable, "-c", "import memsim"],
        "memsim --help": [*help_cmd, "--help"],
    }
    times: dict[str, list[float]] = {k: [] for k in commands}
    for rnd in range(args.runs + 1):
        for name, cmd in commands.items():
            t = _time(cmd)
            if rnd:  # round 0 warms the file cache and the bytecode
                times[name].append(t)
    base = times["python -c pass"]
    print(f"{args.runs} rounds, {os.cpu_count()} CPUs; medians (whole process, wall)")
    print(f"{'command':28} {'wall s':>8} {'over pass s':>12} {'ratio':>7} {'goal':>8}")
    goals = {"python -c 'import memsim'": 0.3, "memsim --help": 0.6}
    for name, ts in times.items():
        over = statistics.median(t - b for t, b in zip(ts, base))
        ratio = statistics.median(t / b for t, b in zip(ts, base))
        goal = goals.get(name)
        mark = "" if goal is None else ("met" if statistics.median(ts) <= goal else "MISSED")
        goal_txt = f"<= {goal} s" if goal else ""
        print(
            f"{name:28} {statistics.median(ts):8.3f} {over:12.3f} {ratio:7.2f} {goal_txt:>8} {mark}"
        )
    probe = f"import sys, memsim; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout
    print(f"heavy modules loaded by 'import memsim': {loaded.strip() or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
