"""Benchmark: how long a VideoMem calibration from scratch takes on this machine.

A calibration is ``budget`` candidate evaluations (simulate, score, summarise, each with
every common-random-number seed), run two at a time. This measures, in one process:

* the plain reference: candidates evaluated one after another in this process;
* the calibration's evaluator: the same candidates through its process pool (``--workers``);

and reports their ratio (the parallel speed-up) and the wall time a calibration of
``--budget`` candidates takes, extrapolated from the measured per-candidate time. With
``--full`` it runs a whole calibration from scratch and times it: from the hand-set
parameters (``tests/data/params-golden.yaml``) with 3 starts, ``--budget`` candidates at
``--scale``, then ``--polish`` more at full scale, as ``memsim calibrate --start
tests/data/params-golden.yaml --starts 3 --budget 500 --polish 150`` does.

    python benchmarks/bench_calibrate.py                          # 8 candidates, extrapolate to 320
    python benchmarks/bench_calibrate.py --full --budget 500      # a calibration from scratch
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", type=int, default=8, help="candidates timed (default 8)")
    ap.add_argument(
        "--budget", type=int, default=320, help="calibration budget extrapolated to (default 320)"
    )
    ap.add_argument("--scale", type=float, default=0.3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--full", action="store_true", help="run a whole calibration from scratch and time it"
    )
    ap.add_argument(
        "--polish",
        type=int,
        default=150,
        help="with --full: candidates at full scale (default 150)",
    )
    args = ap.parse_args()

    from memsim.data import released_scores
    from memsim.design.protocol import load_protocol
    from memsim.fit import calibrate as C
    from memsim.fit.compare import load_targets
    from memsim.sim.params import load_params
    from memsim.sim.simulate import scale_protocol

    protocol = load_protocol(ROOT / "protocols" / "videomem.yaml")
    start = load_params(ROOT / "calibration" / "videomem.yaml")
    targets = load_targets(ROOT / "calibration" / "videomem-targets.yaml")
    real = released_scores("videomem")
    free = C.free_for(start)
    scaled = scale_protocol(protocol, args.scale)
    moments = C.moments_for(targets, real, [s.scoring.column for s in protocol.steps], args.scale)
    x0 = C.to_unconstrained(free, C.values_of(start, free))
    rng = np.random.default_rng(0)
    xs = [x0 + 0.05 * rng.standard_normal(len(x0)) for _ in range(args.candidates)]

    with tempfile.TemporaryDirectory() as tmp:

        def evaluator(workers: int, name: str):
            log = C.EvalLog(Path(tmp) / f"{name}.jsonl", {"bench": name}, resume=False)
            return C.Evaluator(
                scaled,
                start,
                free,
                moments,
                tuple(args.seeds),
                1.0,
                real,
                log,
                budget=10**9,
                workers=workers,
            )

        with evaluator(1, "warm") as ev:  # compile / load numba caches outside the timings
            ev.many([x0])
        with evaluator(1, "serial") as ev:
            t0 = time.perf_counter()
            ev.many(xs)
            serial = (time.perf_counter() - t0) / len(xs)
        with evaluator(args.workers, "pool") as ev:
            ev.many([x0 + 1.0])  # start the workers (and their numba caches) outside the timing
            t0 = time.perf_counter()
            ev.many(xs)
            pooled = (time.perf_counter() - t0) / len(xs)
        print(
            f"candidate = {len(args.seeds)} campaign(s) at scale {args.scale}, {len(moments)} "
            "moments"
        )
        print(f"plain reference (one after another, this process): {serial:.2f} s per candidate")
        print(
            f"calibration evaluator ({args.workers} worker processes): {pooled:.2f} s per "
            "candidate "
            f"-> ratio {serial / pooled:.2f}x"
        )
        print(
            f"extrapolated calibration of {args.budget} candidates: "
            f"{args.budget * pooled / 60:.1f} min "
            f"(goal <= 30 min)"
        )
        if args.full:
            scratch = load_params(ROOT / "tests" / "data" / "params-golden.yaml")
            t0 = time.perf_counter()
            seeds = tuple(args.seeds)
            res = C.calibrate(
                protocol,
                scratch,
                targets,
                real=real,
                scale=args.scale,
                seeds=seeds,
                budget=args.budget,
                workers=args.workers,
                log_path=Path(tmp) / "full.jsonl",
                starts=3,
            )
            search = time.perf_counter() - t0
            print(
                f"from scratch, search at scale {args.scale}: {res['evaluations']} candidates in "
                f"{search / 60:.1f} min ({res['stopped']}; "
                f"distance {res['best']['distance']:.2f})"
            )
            if args.polish:
                res = C.calibrate(
                    protocol,
                    res["params"],
                    targets,
                    real=real,
                    scale=1.0,
                    seeds=seeds,
                    budget=args.polish,
                    workers=args.workers,
                    log_path=Path(tmp) / "polish.jsonl",
                )
                polish = time.perf_counter() - t0 - search
                print(
                    f"polish at full scale: {res['evaluations']} candidates in "
                    f"{polish / 60:.1f} min (distance {res['best']['distance']:.2f})"
                )
            total = time.perf_counter() - t0
            print(f"calibration from scratch: {total / 60:.1f} min (goal <= 30 min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
