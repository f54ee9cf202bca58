"""Where a full VideoMem campaign's time goes, stage by stage, against a reference checkout.

    python benchmarks/profile_stages.py [--reference DIR] [--repeats 5] [--threads 2]

Times, in one warm process per code base, every stage of the main job on the shipped protocol
and parameters (seed 0, full scale): the simulation split at its own progress events
(population and campaign, step 1, step 2, the trial table), writing the three Parquet files,
scoring, the calibration's fit statistics (``memsim.fit.calibrate.fit_summary``: all of them,
and those its moments read, as its workers call it) and each
analysis of ``memsim run`` (25 half-splits, the annotation-consistency curves of both readings,
lag curves, response times, the noise ceiling against the truth, the score summaries), and
drawing the run's figures. Each stage is the median over ``--repeats`` runs after a warm-up
run (numba's caches loaded, first-touch costs paid).

With ``--reference DIR`` (a checkout of another commit, e.g. ``git archive main | tar -x -C
DIR``), the same script runs on that code base too, the two processes in turn, and the table
sets them side by side with their ratio: the "before" and "after" of docs/performance.md.
Both read the released scores from ``$MEMSIM_DATA``, else from ``../shared/data`` beside this
checkout (the reference's own default would look beside the reference).
Timings are wall seconds on whatever machine this is; quote the ratios.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

ANALYSES = (
    "human_consistency",
    "annotation_consistency",
    "lag_curve",
    "rt_analyses",
    "truth_correlation",
    "score_summary",
    "score_correlation",
)


def measure(repeats: int) -> dict[str, list[float]]:
    """Stage -> seconds of each repeat (this process's code base)."""
    from memsim.analysis import consistency as C
    from memsim.analysis.scoring import score
    from memsim.data import released_scores
    from memsim.design.protocol import load_protocol
    from memsim.fit.calibrate import fit_summary
    from memsim.fit.compare import default_targets_path, figure_references, load_targets
    from memsim.resources import params_path, protocol_path
    from memsim.sim.params import load_params
    from memsim.sim.simulate import simulate, write_table

    protocol = load_protocol(protocol_path("videomem"))
    params = load_params(params_path("videomem"))
    real = released_scores("videomem", None)
    refs = figure_references(load_targets(default_targets_path("videomem")))
    times: dict[str, list[float]] = {}
    paths = None  # the calibration's moments' paths, where this code base takes them
    if "paths" in inspect.signature(fit_summary).parameters:
        from memsim.fit.calibrate import moments_for

        columns = [s.scoring.column for s in protocol.steps]
        targets = load_targets(default_targets_path("videomem"))
        paths = [m.path for m in moments_for(targets, real, columns)]

    # time each analysis where analyse calls it (wrapped at module level, inclusive times)
    spent: dict[str, float] = {}

    def wrap(name):
        fn = getattr(C, name)

        def timed(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - t

        setattr(C, name, timed)

    for name in ANALYSES:
        wrap(name)

    for r in range(repeats + 1):
        marks: list[tuple[str, float]] = []

        def mark(event, marks=marks):
            marks.append((event.stage, time.perf_counter()))

        t0 = time.perf_counter()
        sim = simulate(protocol, params, seed=0, progress=mark)
        t_sim = time.perf_counter() - t0
        row: dict[str, float] = {}
        stamps = [(s, t) for s, t in marks] + [("end", t0 + t_sim)]
        for (stage, t), (_, t_next) in zip(stamps, stamps[1:]):
            row[f"simulate: {'DataFrames' if stage == 'done' else stage}"] = t_next - t
        row["simulate (all)"] = t_sim
        with tempfile.TemporaryDirectory() as tmp:
            for name in ("trials", "videos", "participants"):
                t = time.perf_counter()
                write_table(getattr(sim, name), Path(tmp) / f"{name}.parquet")
                row[f"write {name}.parquet"] = time.perf_counter() - t
        t = time.perf_counter()
        result = score(sim.trials, sim.protocol, validate=False)
        row["score"] = time.perf_counter() - t
        spent.clear()
        t = time.perf_counter()
        fit_summary(result, real, seed=0)
        row["fit statistics (calibration)"] = time.perf_counter() - t
        row["score + fit statistics"] = row["score"] + row["fit statistics (calibration)"]
        if paths is not None:  # as the calibration's workers call it: only what its moments read
            t = time.perf_counter()
            fit_summary(result, real, seed=0, paths=paths)
            row["fit statistics, the moments' paths"] = time.perf_counter() - t
            row["score + those fit statistics"] = (
                row["score"] + row["fit statistics, the moments' paths"]
            )
        spent.clear()
        t = time.perf_counter()
        summary = C.analyse(result, truth=sim.videos, seed=0)
        row["analyses of memsim run (all)"] = time.perf_counter() - t
        for name in ANALYSES:
            row[f"  {name}"] = spent.get(name, 0.0)
        t = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            from memsim.viz.plots import run_figures

            columns = [s.scoring.column for s in sim.protocol.steps]
            V = len(result.video_ids)
            rt = {c: C.video_mean_rt(tt, V) for c, tt in zip(columns, result.tests)}
            import pandas as pd

            run_figures(summary, result.scores, pd.DataFrame(rt), real, columns, tmp, refs)
        row["figures"] = time.perf_counter() - t
        if r:  # the first run is the warm-up
            for k, v in row.items():
                times.setdefault(k, []).append(v)
        del sim, result, summary
    return times


def _child(repeats: int, threads: int) -> None:
    import numba

    numba.set_num_threads(threads)
    print(json.dumps(measure(repeats)))


def _run(root: Path, repeats: int, threads: int) -> dict[str, list[float]]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    data = HERE.parent / "shared" / "data"  # this checkout's data, for the reference's run too
    if "MEMSIM_DATA" not in env and data.is_dir():
        env["MEMSIM_DATA"] = str(data)
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", str(repeats), str(threads)],
        cwd=root,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=Path, help="a checkout to compare with (before)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="numba threads (default 2)")
    ap.add_argument("--rounds", type=int, default=2, help="processes per code base, in turn")
    ap.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(*args.child)
        return 0
    roots = [("after", HERE)] + ([("before", args.reference.resolve())] if args.reference else [])
    got: dict[str, dict[str, list[float]]] = {name: {} for name, _ in roots}
    for _ in range(args.rounds):  # the code bases in turn, so a drift of the machine hits both
        for name, root in roots:
            for k, v in _run(root, args.repeats, args.threads).items():
                got[name].setdefault(k, []).extend(v)
    keys = [k for k in got["after"] if not k.startswith("_")]
    if args.reference:
        keys += [k for k in got["before"] if k not in keys and not k.startswith("_")]
    med = {n: {k: statistics.median(v) for k, v in d.items()} for n, d in got.items()}
    head = f"{'stage':<38} {'after s':>9}"
    if args.reference:
        head += f" {'before s':>9} {'before/after':>13}"
    print(f"median of {args.rounds} x {args.repeats} runs, {args.threads} numba threads")
    print(head)
    for k in keys:
        a = med["after"].get(k)
        line = f"{k:<38} {'' if a is None else f'{a:9.3f}':>9}"
        if args.reference:
            b = med["before"].get(k)
            ratio = f"{b / a:13.2f}" if a and b else ""
            line += f" {'' if b is None else f'{b:9.3f}':>9} {ratio:>13}"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
