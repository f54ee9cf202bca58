"""Candidate count mechanisms beside one another: the count rows of each over a range of seeds.

    python calibration/fit_pilot.py [--seeds 0-9] [--data DIR] CANDIDATE [CANDIDATE ...]

Each CANDIDATE is a YAML mapping of dotted protocol changes of the shipped VideoMem protocol,
e.g. ``"{selection.demand: {share: 0.22, mean_excess: 0.5, max: 1.6}, campaign.stop.share:
0.6}"`` (``{}``: the shipped protocol itself; ``{campaign.pilot: null}``: without its pilot).
Per candidate it simulates the seeds at full scale with the shipped parameter set, scores each
campaign, and prints one line: the short-term count KS to the released counts (mean and SD
over the seeds, seeds within 0.05), the seeds whose minimum is within 1 of 30, the 95th
percentile (mean and SD, seeds within 3 of 54), the mean count, the long-term count KS
(mean, seeds within 0.05), minimum (seeds within 1 of 9) and 95th percentile (mean, seeds
within 2 of 20), and the KS distance of the short-term scores to the released ones (mean,
seeds within 0.05): the fit report's count rows and tolerances (``memsim fit-report``, which
checks a chosen candidate on every row). Used to set the shipped demand, stop and pilot
(docs/protocols.md, "The pilot"). It writes nothing.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import yaml
from _script import released_videomem, seed_range

from memsim.analysis.distributions import ks_distance
from memsim.analysis.scoring import count_column, score
from memsim.api import load_params, load_protocol

ST, LT = "short-term_memorability", "long-term_memorability"


def rows(protocol, params, seeds, real) -> np.ndarray:
    """Per seed: ST count KS, min, 95th, mean; LT count KS, min, 95th; ST score KS."""
    from memsim.sim.simulate import prepare, simulate_arrays

    r_st = real[count_column(ST)].to_numpy()
    r_lt = real[count_column(LT)].to_numpy()
    r_sc = real[ST].to_numpy(float)
    r_sc = r_sc[np.isfinite(r_sc)]
    prepared = prepare(protocol, 1.0)
    out = []
    for seed in seeds:
        scores = score(simulate_arrays(prepared, params, seed).trials, protocol, validate=False)
        s = scores.scores
        n_st = s[count_column(ST)].to_numpy()
        n_lt = s[count_column(LT)].to_numpy()
        n_st, n_lt = n_st[n_st > 0], n_lt[n_lt > 0]
        sc = s[ST].to_numpy(float)
        sc = sc[np.isfinite(sc)]
        out.append(
            (
                ks_distance(n_st, r_st),
                n_st.min(),
                np.percentile(n_st, 95),
                n_st.mean(),
                ks_distance(n_lt, r_lt),
                n_lt.min(),
                np.percentile(n_lt, 95),
                ks_distance(np.round(sc, 3), r_sc),
            )
        )
    return np.array(out, dtype=float)


def line(r: np.ndarray) -> str:
    """The candidate's line: means, SDs and seeds within each fit-report tolerance."""
    n = len(r)

    def within(mask) -> str:
        return f"{int(mask.sum())}/{n}"

    return (
        f"ST count KS {r[:, 0].mean():.3f} ± {r[:, 0].std():.3f} ({within(r[:, 0] <= 0.05)}), "
        f"min {within(abs(r[:, 1] - 30) <= 1)}, "
        f"95th {r[:, 2].mean():.1f} ± {r[:, 2].std():.1f} ({within(abs(r[:, 2] - 54) <= 3)}), "
        f"mean {r[:, 3].mean():.2f} | LT count KS {r[:, 4].mean():.3f} "
        f"({within(r[:, 4] <= 0.05)}), min {within(abs(r[:, 5] - 9) <= 1)}, "
        f"95th {r[:, 6].mean():.1f} ({within(abs(r[:, 6] - 20) <= 2)}) | "
        f"ST score KS {r[:, 7].mean():.3f} ({within(r[:, 7] <= 0.05)})"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0-9", help="A-B: the seeds simulated (default 0-9)")
    ap.add_argument("--data", default=None)
    ap.add_argument("candidates", nargs="+", help="YAML mappings of dotted protocol changes")
    args = ap.parse_args(argv)
    real = released_videomem(args.data)
    if real is None:
        return 2
    params = load_params("videomem")
    seeds = seed_range(args.seeds)
    for text in args.candidates:
        changes = yaml.safe_load(text) or {}
        if not isinstance(changes, dict):
            print(f"not a mapping of changes: {text}", file=sys.stderr)
            return 2
        protocol = load_protocol("videomem").updated(changes)
        print(f"{text}\n  {line(rows(protocol, params, seeds, real))}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
