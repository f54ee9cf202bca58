"""Fit a protocol's demand (floor-and-tail annotation counts) to released annotation counts.

VideoMem's released counts are a floor with a tail (short-term: 33 +- 1 for most videos,
up to 100 for a fifth of them; long-term: floor 9, mode 10, up to 40). A campaign that
balances annotations (``least_annotated``) gives every stimulus the same count; a
``demand`` (docs/protocols.md, "Demand") gives a share of them more. This script grids
the demand's ``share`` and ``mean_excess`` of step 1's selection, then of step 2's pick,
simulates the full campaign for each (population: the protocol's calibrated set, seed
0), and prints the Wasserstein-1 distance between simulated and released count
distributions of that step (in annotations), best first. Step 1 is fitted first (step 2's
counts depend on who saw what in step 1).

    python calibration/fit_demand.py protocols/videomem.yaml --data ../shared/data

With ``--step 2`` only step 2's pick is fitted (step 1's demand as in the protocol), over
``--seeds A-B``, its ``floor`` gridded as well (``--floors 9,10``), on the protocol changed
by dotted ``PATH=VALUE`` (YAML values) to fix the pick's mechanism, e.g.

    python calibration/fit_demand.py protocols/videomem.yaml --step 2 --seeds 0-4 \
        --floors 9,10 steps.1.items.0.source.counts=kept selection.later_counts=returning \
        steps.1.max_participants=null

Per candidate it prints the mean W1 over the seeds, the long-term count KS (mean +- SD,
seeds within 0.05), the minimum (mean, range, seeds within 8-10), the shares at 8 or
fewer, 9 and 10 and the 95th percentile (mean, range); then the candidates again, those
with the most seeds within both tolerances first (then by mean KS).

It prints the protocol lines to paste; it writes nothing.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
from _script import protocol_changes, seed_range
from scipy.stats import wasserstein_distance

from memsim.analysis.distributions import ks_distance
from memsim.analysis.scoring import count_column, score
from memsim.data import released_scores
from memsim.design.protocol import load_protocol, protocol_from_mapping
from memsim.sim.params import load_params
from memsim.sim.simulate import simulate

SHARES = (0.15, 0.2, 0.25, 0.3, 0.35)
ST_EXCESS = (0.25, 0.3, 0.35, 0.4, 0.45, 0.5)
LT_SHARES = (0.5, 0.6, 0.7, 0.8, 0.9)
LT_EXCESS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def counts(mapping: dict, params, seed: int) -> dict[str, np.ndarray]:
    p = protocol_from_mapping(mapping, "demand candidate")
    sim = simulate(p, params, seed=seed)
    sc = score(sim.trials, sim.protocol, validate=False).scores
    return {s.scoring.column: sc[count_column(s.scoring.column)].to_numpy() for s in p.steps}


def _floats(text: str | None, default) -> tuple:
    return default if text is None else tuple(float(x) for x in text.split(","))


def fit_step2(args, protocol, params, rel: np.ndarray) -> int:
    """Grid step 2's demand and floor over seeds (the mechanism fixed by ``args.changes``)."""
    seeds = seed_range(args.seeds)
    base = protocol.dump()
    group = next(
        i for i, g in enumerate(base["steps"][1]["items"]) if isinstance(g.get("source"), dict)
    )
    path = f"steps.1.items.{group}.source"
    floors = [int(f) for f in _floats(args.floors, (base["steps"][1]["items"][group]["source"]
                                                    .get("floor") or 10,))]  # fmt: skip
    col = protocol.steps[1].scoring.column
    print(
        f"released long-term counts: mean {rel.mean():.2f}, at 9 {100 * (rel == 9).mean():.1f} %,"
        f" at 10 {100 * (rel == 10).mean():.1f} %, 95th percentile {np.percentile(rel, 95):g}; "
        f"seeds {seeds.start}-{seeds.stop - 1}; "
        f"changes {args.changes or 'none'}",
        flush=True,
    )
    rows = []
    grid = itertools.product(
        floors, _floats(args.shares, LT_SHARES), _floats(args.excess, LT_EXCESS)
    )
    for floor, share, excess in grid:
        changes = dict(args.changes)
        changes[f"{path}.floor"] = floor
        changes[f"{path}.demand"] = {"share": share, "mean_excess": excess}
        mapping = protocol.updated(changes).dump()
        w1, ks, low, s8, s9, s10, p95 = [], [], [], [], [], [], []
        for seed in seeds:
            c = counts(mapping, params, seed)[col]
            w1.append(wasserstein_distance(c, rel))
            ks.append(ks_distance(c, rel))
            low.append(int(c.min()))
            s8.append(100 * (c <= 8).mean())
            s9.append(100 * (c == 9).mean())
            s10.append(100 * (c == 10).mean())
            p95.append(float(np.percentile(c, 95)))
        ks_a, low_a = np.array(ks), np.array(low)
        row = dict(
            floor=floor, share=share, excess=excess, w1=np.mean(w1), ks=ks_a.mean(),
            ks_sd=ks_a.std(ddof=1) if ks_a.size > 1 else 0.0, ks_in=int((ks_a <= 0.05).sum()),
            min=low_a.mean(), min_lo=low_a.min(), min_hi=low_a.max(),
            min_in=int(((low_a >= 8) & (low_a <= 10)).sum()), s8=np.mean(s8), s9=np.mean(s9),
            s10=np.mean(s10), p95=np.mean(p95), p95_lo=min(p95), p95_hi=max(p95), n=len(ks),
        )  # fmt: skip
        rows.append(row)
        print(_line(row), flush=True)
    print("best first (seeds within both, then mean KS):")
    for row in sorted(rows, key=lambda r: (-min(r["ks_in"], r["min_in"]), r["ks"])):
        print(_line(row))
    return 0


def _line(r: dict) -> str:
    return (
        f"  floor {r['floor']} share {r['share']:.2f} mean_excess {r['excess']:.2f}: W1 "
        f"{r['w1']:.3f}, KS {r['ks']:.3f} +- {r['ks_sd']:.3f} ({r['ks_in']}/{r['n']}), min "
        f"{r['min']:.2f} ({r['min_lo']}-{r['min_hi']}, {r['min_in']}/{r['n']}), <=8 "
        f"{r['s8']:.2f} %, 9 {r['s9']:.1f} %, 10 {r['s10']:.1f} %, 95th percentile "
        f"{r['p95']:.2f} ({r['p95_lo']:g}-{r['p95_hi']:g})"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("protocol")
    ap.add_argument("--params", help="population (default calibration/<protocol name>.yaml)")
    ap.add_argument("--data", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--step", choices=("both", "2"), default="both")
    ap.add_argument("--seeds", default=None, help="A-B (with --step 2; default --seed)")
    ap.add_argument("--floors", default=None, help="step 2 floors, e.g. 9,10 (--step 2)")
    ap.add_argument("--shares", default=None, help="step 2 demand shares, e.g. 0.5,0.7")
    ap.add_argument("--excess", default=None, help="step 2 mean_excess values, e.g. 0.3,0.5")
    ap.add_argument("changes", nargs="*", help="dotted PATH=VALUE changes of the protocol")
    args = ap.parse_intermixed_args(argv)
    args.changes = protocol_changes(args.changes)
    protocol = load_protocol(args.protocol)
    params = load_params(args.params or Path("calibration") / f"{protocol.name}.yaml")
    real = released_scores(protocol.name, args.data)
    if real is None:
        print("no released scores for this protocol", file=sys.stderr)
        return 2
    if args.step == "2":
        args.seeds = args.seeds or str(args.seed)
        col = protocol.steps[1].scoring.column
        return fit_step2(args, protocol, params, real[count_column(col)].to_numpy())
    if args.changes:
        protocol = protocol.updated(args.changes)
    base = protocol.dump()
    st_col, lt_col = (s.scoring.column for s in protocol.steps[:2])
    rel = {c: real[count_column(c)].to_numpy() for c in (st_col, lt_col)}
    lt_group = next(
        i for i, g in enumerate(base["steps"][1]["items"]) if isinstance(g.get("source"), dict)
    )

    def with_demand(st, lt):
        d = protocol.dump()
        d["selection"]["demand"] = {"share": st[0], "mean_excess": st[1]}
        if lt is not None:
            d["steps"][1]["items"][lt_group]["source"].update(
                pick="least_annotated", demand={"share": lt[0], "mean_excess": lt[1]}
            )
        return d

    def best(step: int, col: str, grid, mapping_for):
        """The grid point whose simulated counts of ``col`` are nearest the released ones (W1)."""
        rows = []
        for g in grid:
            c = counts(mapping_for(g), params, args.seed)[col]
            rows.append((wasserstein_distance(c, rel[col]), g))
            print(
                f"  step {step} demand share {g[0]:.2f} mean_excess {g[1]:.2f}: W1 "
                f"{rows[-1][0]:.3f} "
                f"(mean {c.mean():.2f})",
                flush=True,
            )
        return min(rows)[1]

    print(
        f"released: short-term counts mean {rel[st_col].mean():.2f}, long-term "
        f"{rel[lt_col].mean():.2f}"
    )
    best_st = best(1, st_col, itertools.product(SHARES, ST_EXCESS), lambda g: with_demand(g, None))
    best_lt = best(
        2, lt_col, itertools.product(LT_SHARES, LT_EXCESS), lambda g: with_demand(best_st, g)
    )
    print(f"selection.demand: {{share: {best_st[0]}, mean_excess: {best_st[1]}}}")
    print(
        "steps[2] target source: pick: least_annotated, demand: "
        f"{{share: {best_lt[0]}, mean_excess: {best_lt[1]}}}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
