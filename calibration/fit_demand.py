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

It prints the protocol lines to paste; it writes nothing.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
from scipy.stats import wasserstein_distance

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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("protocol")
    ap.add_argument("--params", help="population (default calibration/<protocol name>.yaml)")
    ap.add_argument("--data", default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    protocol = load_protocol(args.protocol)
    params = load_params(args.params or Path("calibration") / f"{protocol.name}.yaml")
    real = released_scores(protocol.name, args.data)
    if real is None:
        print("no released scores for this protocol", file=sys.stderr)
        return 2
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
