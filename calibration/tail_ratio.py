"""The released short-term correction by annotation count, and what it would do to the KS.

    python calibration/tail_ratio.py [--seeds 0-9] [--data DIR]

The released short-term scores are corrected raw scores k / n; ``k = ceil(score x n)``
recovers k (docs/scoring.md, "Lag correction"), so each video's correction ratio
``score / (k / n) - 1`` can be read off. Printed first: its mean and SD by annotation count,
released and simulated (the shipped protocol and parameter set, the first seed). Released,
the most annotated videos are corrected much less (a mean lag nearer the reference lag of
100): their extra annotations came at longer lags than the protocol's 45-100 rule gives.
Simulated, every count group has the same ratio.

Then, per seed, the KS distance between the simulated short-term scores and the released ones
(rounded to the released 3 decimals, as ``memsim fit-report`` sets them) three ways: as
simulated; with each video's deviation from the seed's mean ratio scaled to the released SD
of the videos with at most 45 annotations (``spread``); and with that spread and, for the
videos above 45 annotations, the released offset and SD of their count group
(``spread+tail``). The seed's own mean ratio (its fitted lag slope) is kept each time.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from _script import released_videomem, seed_range

from memsim.analysis.distributions import ks_distance
from memsim.analysis.scoring import count_column, score
from memsim.api import load_params, load_protocol
from memsim.fit.compat import raw_hits

ST = "short-term_memorability"
GROUPS = ((0, 45), (46, 60), (61, 10**6))  # annotation counts, inclusive


def _name(g) -> str:
    return f"{g[0]}-{g[1]}" if g[1] < 10**6 else f"> {g[0] - 1}"


def released_ratios(real) -> tuple[np.ndarray, np.ndarray]:
    """Each released video's correction ratio and annotation count (raw score > 0)."""
    s = real[ST].to_numpy(float)
    n = real[count_column(ST)].to_numpy(float)
    ok = np.isfinite(s) & (n > 0)
    s, n = s[ok], n[ok]
    raw = raw_hits(s, n) / n
    keep = raw > 0
    return s[keep] / raw[keep] - 1.0, n[keep]


def by_group(ratio: np.ndarray, n: np.ndarray) -> dict:
    out = {}
    for g in GROUPS:
        m = (n >= g[0]) & (n <= g[1])
        out[g] = (int(m.sum()), float(ratio[m].mean()), float(ratio[m].std()))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0-9", help="A-B: the seeds simulated (default 0-9)")
    ap.add_argument("--data", default=None)
    args = ap.parse_args(argv)
    real = released_videomem(args.data)
    if real is None:
        return 2
    r_ratio, r_n = released_ratios(real)
    rel = by_group(r_ratio, r_n)
    core = rel[GROUPS[0]]
    protocol, params = load_protocol("videomem"), load_params("videomem")
    from memsim.sim.simulate import simulate

    rng = np.random.default_rng(0)  # the draws of the 'spread+tail' variant
    s_real = real[ST].to_numpy(float)
    s_real = s_real[np.isfinite(s_real)]
    rows = []
    seeds = seed_range(args.seeds)
    for seed in seeds:
        res = score(simulate(protocol, params, seed=seed).trials, protocol, validate=False)
        v = res.videos[(res.videos["step"] == 1) & (res.videos["raw"] > 0)]
        raw, sc, n = (v[c].to_numpy(float) for c in ("raw", "score", "annotations"))
        ratio = sc / raw - 1.0
        if seed == seeds[0]:
            sim = by_group(ratio, n)
            print("short-term correction ratio (score / raw - 1) by annotation count:")
            head = f"released: videos, mean, SD | seed {seed}: videos, mean, SD"
            print(f"  {'annotations':>11} | {head}")
            for g in GROUPS:
                a, b = rel[g], sim[g]
                print(
                    f"  {_name(g):>11} | {a[0]:6,d} {a[1]:+.4f} {a[2]:.4f} "
                    f"| {b[0]:6,d} {b[1]:+.4f} {b[2]:.4f}"
                )
        low = n <= GROUPS[0][1]
        level = ratio[low].mean()
        dev = ratio - level
        spread = level + dev * (core[2] / dev[low].std())
        tail = spread.copy()
        for g in GROUPS[1:]:
            m = (n >= g[0]) & (n <= g[1])
            tail[m] = level + (rel[g][1] - core[1]) + rng.normal(0.0, rel[g][2], m.sum())

        kss = [
            ks_distance(np.round(np.clip(raw * (1.0 + r), 0.0, 1.0), 3), s_real)
            for r in (ratio, spread, tail)
        ]
        rows.append((seed, level, *kss))
    print("seed  mean ratio  KS as simulated  spread  spread+tail")
    for seed, level, a, b, c in rows:
        print(f"{seed:4d}  {level:+.5f}  {a:15.4f}  {b:6.4f}  {c:11.4f}")
    arr = np.array([r[2:] for r in rows])
    print(
        "mean  "
        + " ".join(f"{x:.4f}" for x in arr.mean(0))
        + "; above 0.05: "
        + " ".join(str(int((arr[:, j] > 0.05).sum())) for j in range(3))
        + f" of {len(rows)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
