"""Annotation counts: what the released VideoMem file shows, and what a campaign gives.

    python calibration/counts.py                     # the released dev set's counts
    python calibration/counts.py --simulate [--seed N] [PATH=VALUE ...]

The first prints the evidence docs/protocols.md ("Annotation counts") cites: the short- and
long-term count histograms, the tail, how long-term counts follow short-term ones. The second
simulates the shipped VideoMem protocol at full scale (with its calibrated parameters),
changed by dotted ``PATH=VALUE`` (YAML values, e.g. ``selection.counts=assigned``), scores it
and prints the same statistics beside the released ones, with the KS distance, and how many
videos no step-2 pick could have tested 9 times (seen as a step-1 filler by fewer than 9
participants kept in step 2). It writes nothing.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import yaml

from memsim.analysis.distributions import ks_distance
from memsim.analysis.scoring import count_column, score
from memsim.api import load_params, load_protocol
from memsim.data import released_scores

ST, LT = "short-term_memorability", "long-term_memorability"
BINS = {ST: (31, 32, 33, 34, 35, 45, 60), LT: (8, 9, 10, 11, 13, 16, 22)}


def histogram(n: np.ndarray, col: str) -> str:
    """% of videos per count bin (the bins of docs/protocols.md's tables)."""
    edges = (0, *BINS[col], 10**6)
    cells = [100 * ((n > a) & (n <= b)).mean() for a, b in zip(edges[:-1], edges[1:])]
    return " ".join(f"{c:5.1f}" for c in cells)


def header(col: str) -> str:
    b = BINS[col]
    names = [f"<={b[0]}"] + [
        str(hi) if hi - lo == 1 else f"{lo + 1}-{hi}" for lo, hi in zip(b[:-1], b[1:])
    ]
    return " ".join(f"{x:>5}" for x in [*names, f">{b[-1]}"])


def describe(n: np.ndarray) -> str:
    return (
        f"min {n.min()}, 1st-99th {np.percentile(n, 1):.0f}-{np.percentile(n, 99):.0f}, "
        f"95th {np.percentile(n, 95):.0f}, max {n.max()}, mean {n.mean():.2f}"
    )


def released(real) -> None:
    st, lt = (real[count_column(c)].to_numpy() for c in (ST, LT))
    for col, n in ((ST, st), (LT, lt)):
        print(f"{col} counts, released ({len(n):,} videos): {describe(n)}")
        print(f"  {header(col)}\n  {histogram(n, col)}")
    tail = st > 45
    print(
        f"ST tail (> 45): {100 * tail.mean():.1f} % of videos; their mean LT count "
        f"{lt[tail].mean():.2f} against {lt[~tail].mean():.2f}; Pearson of ST and LT counts "
        f"{np.corrcoef(st, lt)[0, 1]:.2f} (tail {np.corrcoef(st[tail], lt[tail])[0, 1]:.2f}, "
        f"rest {np.corrcoef(st[~tail], lt[~tail])[0, 1]:.2f})"
    )
    for lo, hi in ((30, 32), (33, 35), (36, 45), (46, 70), (71, 100)):
        m = (st >= lo) & (st <= hi)
        print(
            f"  ST {lo}-{hi}: {m.sum():5d} videos, LT mean {lt[m].mean():5.2f}, min {lt[m].min()}"
        )


def simulated(real, seed: int, changes: dict) -> None:
    from memsim.sim.simulate import simulate

    protocol = load_protocol("videomem")
    if changes:
        protocol = protocol.updated(changes)
    sim = simulate(protocol, load_params("videomem"), seed=seed)
    res = score(sim.trials, sim.protocol, validate=False)
    print(f"seed {seed}, changes {changes or 'none'}: {sim.participants.shape[0]:,} starts")
    for col in (ST, LT):
        n = res.scores[count_column(col)].to_numpy()
        n = n[n > 0]
        r = real[count_column(col)].to_numpy()
        print(f"{col}: KS {ks_distance(n, r):.3f}; {describe(n)}")
        print(f"  {'':9}{header(col)}")
        print(f"  simulated {histogram(n, col)}\n  released  {histogram(r, col)}")
    t, ps = sim.trials, res.participants
    kept2 = ps.loc[(ps["step"] == 2) & ps["kept"], "participant"]
    f = t[(t["step"] == 1) & (t["role"] == "filler") & t["participant"].isin(kept2)]
    seen = np.bincount(f["video"].to_numpy(), minlength=protocol.stimuli.count)
    print(
        f"videos seen as a step-1 filler by fewer than 9 participants kept in step 2: "
        f"{100 * (seen < 9).mean():.2f} % (min {seen.min()})"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--simulate", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=None)
    ap.add_argument("changes", nargs="*", help="dotted PATH=VALUE changes of the protocol")
    args = ap.parse_args(argv)
    real = released_scores("videomem", args.data)
    if real is None:
        print("no released VideoMem scores (--data or $MEMSIM_DATA)", file=sys.stderr)
        return 2
    if not args.simulate:
        released(real)
        return 0
    changes = {}
    for c in args.changes:
        path, _, value = c.partition("=")
        changes[path] = yaml.safe_load(value)
    simulated(real, args.seed, changes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
