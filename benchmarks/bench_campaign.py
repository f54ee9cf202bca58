"""The shipped VideoMem campaign (kept counts checked every 2,160 participants, a stop on the
counts, the later pool): simpy against arrival order, and step 1 played once (the judged sessions
kept) against played again.

Run ``NUMBA_NUM_THREADS=1 python benchmarks/bench_campaign.py``. In one warm process, in turn
(``--repeats`` rounds), it times

* the plan alone on each engine: ``plan_campaign`` with the simulator's judge (a fresh one each
  time, as :func:`memsim.simulate` makes one), and of that, the time inside ``judge``;
* a whole ``simulate`` on each engine (forced through the module's ``_CAMPAIGN_ENGINE``), and
  of that, the campaign stage and the time inside ``judge``;
* a whole ``simulate`` in arrival order with step 1 played again for the trial table (the
  module's ``_KEEP_FIRST_STEP`` off), against the same with the judged sessions kept;

and prints the medians and the ratios; as a reference, a whole ``simulate`` of the same protocol
counting assignments (``counts: assigned``, no checks: no verdicts to wait for). Then
``simulate_many`` of the shipped protocol over ``--seeds`` seeds (one workspace, as a sweep or a
calibration runs them), step 1 kept against played again, ``--repeats`` rounds in turn. Before
timing, it checks that both engines give the same plan, byte for byte, and that the engines and
the two ways of playing step 1 give the same trial table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from memsim.design.protocol import load_protocol, protocol_from_mapping
from memsim.sim import simulate as sim_module
from memsim.sim.batch import simulate_many
from memsim.sim.campaign import plan_campaign
from memsim.sim.params import load_params
from memsim.sim.population import draw_participants, draw_videos

ROOT = Path(__file__).resolve().parents[1]
ENGINES = ("simpy", "in_order")


def plan(protocol, params, seed: int, engine: str):
    """``(plan, seconds in judge, judge calls)`` of the campaign on ``engine``."""
    prepared = sim_module.prepare(protocol)
    player = sim_module._FirstStepKept(
        prepared,
        params,
        seed,
        draw_participants(params, prepared.max_participants, seed),
        draw_videos(params, protocol.stimuli.count, seed),
    )
    spent = [0.0, 0]

    def judge(ps, items, starts):
        t = time.perf_counter()
        out = player.judge(ps, items, starts)
        spent[0] += time.perf_counter() - t
        spent[1] += 1
        return out

    got = plan_campaign(
        protocol,
        seed,
        params.participants.return_probability,
        judge=judge,
        min_press_s=params.participants.rt.min_s,
        engine=engine,
    )
    return got, spent[0], spent[1]


def simulate(protocol, params, seed: int, engine: str, keep: bool = True):
    """``(trial table, seconds in the campaign stage, seconds in judge)`` of a whole simulation
    on ``engine``, step 1's judged sessions kept for the table or (``keep`` False) played
    again."""
    sim_module._CAMPAIGN_ENGINE = "simpy" if engine == "simpy" else "auto"
    sim_module._KEEP_FIRST_STEP = keep
    stage = sim_module._campaign
    judges = {c: c.judge for c in (sim_module._FirstStepPlayer, sim_module._FirstStepKept)}
    spent = [0.0, 0.0]

    def timed(*a, _f=stage, _i=0, **k):
        t = time.perf_counter()
        out = _f(*a, **k)
        spent[_i] += time.perf_counter() - t
        return out

    sim_module._campaign = timed
    for c, judge in judges.items():
        c.judge = lambda *a, _j=judge: timed(*a, _f=_j, _i=1)
    try:
        return sim_module.simulate(protocol, params, seed=seed).trials, *spent
    finally:
        sim_module._campaign = stage
        for c, judge in judges.items():
            c.judge = judge
        sim_module._CAMPAIGN_ENGINE = "auto"
        sim_module._KEEP_FIRST_STEP = True


def many(protocol, params, seeds, keep: bool) -> float:
    """Seconds for ``simulate_many`` of ``protocol`` over ``seeds`` (each run reduced to its
    row count), step 1 kept or played again."""
    sim_module._KEEP_FIRST_STEP = keep
    try:
        t = time.perf_counter()
        simulate_many(protocol, [(params, s) for s in seeds], lambda a: len(a.trials["video"]))
        return time.perf_counter() - t
    finally:
        sim_module._KEEP_FIRST_STEP = True


def same_plan(a, b) -> bool:
    arrays = [(a.arrival_s, b.arrival_s), (a.step1_items, b.step1_items)]
    arrays.append((a.annotation_counts, b.annotation_counts))
    for la, lb in zip(a.later, b.later, strict=True):
        arrays += [(getattr(la, f), getattr(lb, f)) for f in ("rows", "delay_s", "new_items")]
        arrays.append((la.tested, lb.tested))
    return a.n_participants == b.n_participants and all(
        x.dtype == y.dtype and x.tobytes() == y.tobytes() for x, y in arrays
    )


def same_table(a, b) -> bool:
    def raw(s):
        return (s.cat.codes if s.dtype.name == "category" else s).to_numpy().tobytes()

    return list(a) == list(b) and all(raw(a[c]) == raw(b[c]) for c in a)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds of each engine")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=10, help="runs of each simulate_many")
    args = ap.parse_args()
    protocol = load_protocol(ROOT / "protocols" / "videomem.yaml")
    params = load_params(ROOT / "calibration" / "videomem.yaml")
    print(
        f"{protocol.name}: {protocol.selection.describe()}; stop "
        f"{protocol.campaign.stop.describe()}"
    )
    # warm up (compile or load the caches) and check that the engines agree
    warm = {e: plan(protocol, params, args.seed, e) for e in ENGINES}
    plans = {e: w[0] for e, w in warm.items()}
    print("judge calls: " + ", ".join(f"{e} {w[2]:,}" for e, w in warm.items()))
    tables = {e: simulate(protocol, params, args.seed, e)[0] for e in ENGINES}
    again = simulate(protocol, params, args.seed, "in_order", keep=False)[0]
    print(
        f"same plan: {same_plan(*plans.values())}; "
        f"same trial table: {same_table(*tables.values())} ({len(tables['simpy']):,} rows); "
        f"step 1 kept or played again, same trial table: {same_table(tables['simpy'], again)}"
    )
    del tables, again
    rows = {
        k: {e: [] for e in ENGINES}
        for k in ("plan", "plan: judge", "simulate", "simulate: campaign", "simulate: judge")
    }
    d = protocol.dump()
    d["selection"].update(counts="assigned", counts_every_h=None, counts_every_participants=None)
    assigned = protocol_from_mapping(d)
    simulate(assigned, params, args.seed, "in_order")
    reference = []
    kept = {k: [] for k in ("simulate", "simulate: judge")}
    replay = {k: [] for k in ("simulate", "simulate: judge")}
    for r in range(args.repeats):
        t = time.perf_counter()
        simulate(assigned, params, args.seed + 1 + r, "in_order")
        reference.append(time.perf_counter() - t)
        t = time.perf_counter()
        _, _, judged = simulate(protocol, params, args.seed + 1 + r, "in_order", keep=False)
        replay["simulate"].append(time.perf_counter() - t)
        replay["simulate: judge"].append(judged)
        for e in ENGINES:
            t = time.perf_counter()
            _, judged, _ = plan(protocol, params, args.seed + 1 + r, e)
            rows["plan"][e].append(time.perf_counter() - t)
            rows["plan: judge"][e].append(judged)
            t = time.perf_counter()
            _, campaign, judged = simulate(protocol, params, args.seed + 1 + r, e)
            rows["simulate"][e].append(time.perf_counter() - t)
            rows["simulate: campaign"][e].append(campaign)
            rows["simulate: judge"][e].append(judged)
    print(f"medians of {args.repeats} warm runs, seeds {args.seed + 1}-{args.seed + args.repeats}")
    print(f"{'':24} {'simpy (s)':>10} {'in order (s)':>13} {'simpy / in order':>17}")
    for k, by in rows.items():
        a, b = np.median(by["simpy"]), np.median(by["in_order"])
        print(f"{k:24} {a:10.3f} {b:13.3f} {a / b:17.2f}")
    ref = np.median(reference)
    print(
        f"simulate, counts: assigned (in order): {ref:.3f} s; kept in order / assigned: "
        f"{np.median(rows['simulate']['in_order']) / ref:.2f}"
    )
    kept["simulate"] = rows["simulate"]["in_order"]
    kept["simulate: judge"] = rows["simulate: judge"]["in_order"]
    print(f"\n{'in order':24} {'kept (s)':>10} {'again (s)':>13} {'kept / again':>17}")
    for k in kept:
        a, b = np.median(kept[k]), np.median(replay[k])
        print(f"{k:24} {a:10.3f} {b:13.3f} {a / b:17.2f}")
    j, w = np.median(replay["simulate: judge"]), np.median(replay["simulate"])
    print(f"step 1 played again: the verdicts' play is {j / w:.0%} of the whole simulation")
    seeds = range(args.seed + 1, args.seed + 1 + args.seeds)
    many(protocol, params, seeds, True)  # warm
    times = {True: [], False: []}
    for _ in range(args.repeats):
        for keep in (True, False):
            times[keep].append(many(protocol, params, seeds, keep))
    a, b = np.median(times[True]), np.median(times[False])
    print(
        f"simulate_many, {args.seeds} seeds (medians of {args.repeats}): step 1 kept {a:.3f} s, "
        f"played again {b:.3f} s, kept / again {a / b:.2f}"
    )


if __name__ == "__main__":
    main()
