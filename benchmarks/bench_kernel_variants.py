"""The trial kernel on one thread with parts of it changed: what each part costs.

    python benchmarks/bench_kernel_variants.py [--participants 20000] [--rounds 7]

The input is ``memsim bench``'s (a VideoMem step-1 batch built as the simulator builds it, the
shipped parameter set), run into outputs made once, one thread. Two sets of variants, each
timed in turn in every round (a drift of a shared machine hits all of a set alike):

* the model: the shipped kernel as shipped; without the short-term familiarity
  (``videos.short_term_sd: 0``: the two exponentials of a recognition's familiarity skipped);
  with presses that do not end the presentation (no onset waits for a response time); both;
* the compiled loop, on copies of ``kernel.play_row`` compiled here (not cached): a plain copy
  (its outputs must be the shipped kernel's, byte for byte: the check that the copies measure
  the shipped loop); the copy with ``fastmath=True``; the copy without response-time draws
  (every press takes the shortest response time, so the onsets, and so the responses, differ);
  both.

Printed: the median over rounds of trials per second, each variant's rate over the first of
its set, and whether its outputs are the shipped kernel's bytes (else the largest difference
of an onset, and the share of responses that differ).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import math
import statistics
import time

import numba
import numpy as np
from numba import njit

from memsim.design.protocol import load_protocol
from memsim.resources import params_path, protocol_path
from memsim.rng import next_normal, next_uniform, stream_key  # noqa: F401 (the copies' names)
from memsim.sim import kernel
from memsim.sim.bench import _step1_input
from memsim.sim.forgetting import retention  # noqa: F401 (the copies' names)
from memsim.sim.params import load_params
from memsim.sim.simulate import _constants


@njit(inline="always")
def _shortest(state, mu, sd, lo, hi):
    """In place of a truncated log-normal draw: the shortest response time, no draw."""
    return state, lo


def _copy(fastmath: bool, response_times: bool):
    """A driver playing every row with a copy of ``kernel.play_row`` compiled as asked."""
    names = {
        **{k: getattr(kernel, k) for k in ("_rng", "_RT_TRIES", "_EPS", "retention")},
        **{"math": math, "np": np, "njit": njit, "stream_key": stream_key},
        **{"next_normal": next_normal, "next_uniform": next_uniform, "_shortest": _shortest},
    }
    flags = "fastmath=True" if fastmath else ""
    for fn in (kernel._truncated_lognormal, kernel.play_row):
        src = inspect.getsource(fn).replace("@njit(cache=True)", f"@njit({flags})")
        if not response_times and fn is kernel.play_row:
            src = src.replace("_truncated_lognormal(", "_shortest(")
        exec(src, names)  # noqa: S102 - the package's own source, recompiled for the benchmark
    play = names["play_row"]

    @njit
    def drive(xs, vs, cs, outs):
        participant, video, role, repeat, first_pos, prior_onset, start_s = xs[:7]
        ability, fa, lapse, careless = xs[7:]
        response, rt_out, onset, delay, shown = outs
        for i in range(video.shape[0]):
            shown[i] = play(
                participant[i], video[i], role[i], repeat[i], first_pos[i], prior_onset[i],
                start_s[i], ability[i], fa[i], lapse[i], careless[i], vs, cs,
                response[i], rt_out[i], onset[i], delay[i],
            )  # fmt: skip
        return outs

    return drive


def _same(a: tuple, b: tuple) -> str:
    if all(np.array_equal(x, y, equal_nan=x.dtype.kind == "f") for x, y in zip(a, b)):
        return "the shipped bytes"
    onset = np.nanmax(np.abs(a[2] - b[2]))
    return f"onsets up to {onset:.1e} s apart, {np.mean(a[0] != b[0]):.1%} of responses differ"


def _timed(runs: dict, rounds: int) -> dict:
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(t) for name, t in times.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--participants", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args(argv)
    numba.set_num_threads(1)
    protocol = load_protocol(protocol_path("videomem"))
    shipped = load_params(params_path("videomem"))
    plain = shipped.updated({"videos.short_term_sd": 0.0})
    x, videos = _step1_input(protocol, shipped, args.participants)
    c = _constants(protocol, shipped, 0, 0)
    trials = x.video.size
    ref = kernel.simulate_step(x, videos, c)  # the shipped kernel's outputs

    print(f"kernel on one thread, {args.participants:,} participants, {args.rounds} rounds")
    model = {
        "as shipped": (shipped, {}),
        "no short-term familiarity": (plain, {}),
        "presses do not end the presentation": (shipped, {"ends_on_press": False}),
        "neither": (plain, {"ends_on_press": False}),
    }
    runs, outs = {}, {}
    for name, (params, change) in model.items():
        xi, vi = _step1_input(protocol, params, args.participants)
        ci = dataclasses.replace(_constants(protocol, params, 0, 0), **change)
        buf = kernel.outputs(*xi.video.shape)
        kernel.simulate_step(xi, vi, ci, out=buf)  # warm-up: caches loaded, pages touched
        runs[name] = lambda xi=xi, vi=vi, ci=ci, buf=buf: kernel.simulate_step(xi, vi, ci, out=buf)
        outs[name] = buf
    _report("the model", _timed(runs, args.rounds), trials, {"as shipped": "the shipped bytes"})

    compiled = {
        "a copy of the kernel": (False, True),
        "fastmath": (True, True),
        "no response-time draws": (False, False),
        "no response-time draws, fastmath": (True, False),
    }
    step_args = kernel._step_args(x, videos, c)
    runs, same = {}, {}
    for name, (fast, rts) in compiled.items():
        drive = _copy(fast, rts)
        buf = kernel.outputs(*x.video.shape)
        drive(*step_args, buf)  # compiled here, pages touched
        same[name] = _same(buf, ref)
        runs[name] = lambda drive=drive, buf=buf: drive(*step_args, buf)
    _report("the compiled loop", _timed(runs, args.rounds), trials, same)
    return 0


def _report(title: str, seconds: dict, trials: int, same: dict) -> None:
    print(f"{title}:")
    base = None
    for name, s in seconds.items():
        rate = trials / s / 1e6
        base = base or rate
        note = f"  ({same[name]})" if name in same else ""
        print(f"  {name:36s} {rate:5.1f} M trials/s  {rate / base:5.2f}x{note}")


if __name__ == "__main__":
    raise SystemExit(main())
