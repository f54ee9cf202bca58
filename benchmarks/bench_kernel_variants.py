"""The trial kernel on one thread with parts of the model switched off: what each part costs.

    python benchmarks/bench_kernel_variants.py [--participants 20000] [--rounds 7]

The input is ``memsim bench``'s (a VideoMem step-1 batch built as the simulator builds it, the
shipped parameter set); the kernel is the shipped one, run into outputs made once. Variants,
timed in turn in each round (a drift of a shared machine hits all of them): as shipped;
without the short-term familiarity (``videos.short_term_sd: 0``, so the two exponentials of
a recognition's familiarity are skipped); with presses that do not end the presentation (so
no onset waits for the response time before it); and both. Printed: the median over rounds
of trials per second, each variant's rate over the shipped one, and the share of trials with
a press (each press draws a truncated log-normal response time).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import numba

from memsim.design.protocol import load_protocol
from memsim.resources import params_path, protocol_path
from memsim.sim.bench import _step1_input
from memsim.sim.kernel import outputs, simulate_step
from memsim.sim.params import load_params
from memsim.sim.simulate import _constants


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--participants", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args(argv)
    numba.set_num_threads(1)
    protocol = load_protocol(protocol_path("videomem"))
    shipped = load_params(params_path("videomem"))
    plain = shipped.updated({"videos.short_term_sd": 0.0})
    variants = {
        "as shipped": (shipped, {}),
        "no short-term familiarity": (plain, {}),
        "presses do not end the presentation": (shipped, {"ends_on_press": False}),
        "neither": (plain, {"ends_on_press": False}),
    }
    runs = {}
    for name, (params, change) in variants.items():
        x, videos = _step1_input(protocol, params, args.participants)
        c = dataclasses.replace(_constants(protocol, params, 0, 0), **change)
        buf = outputs(*x.video.shape)
        simulate_step(x, videos, c, out=buf)  # warm-up: caches loaded, output pages touched
        runs[name] = (x, videos, c, buf)
    times = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, (x, videos, c, buf) in runs.items():
            t = time.perf_counter()
            simulate_step(x, videos, c, out=buf)
            times[name].append(time.perf_counter() - t)
    base = None
    print(f"kernel on one thread, {args.participants:,} participants, {args.rounds} rounds")
    for name, (x, _, _, buf) in runs.items():
        rate = x.video.size / statistics.median(times[name]) / 1e6
        base = base or rate
        print(
            f"  {name:38s} {rate:5.1f} M trials/s  {rate / base:5.2f}x  "
            f"presses {buf[0].mean():.3f} of trials"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
