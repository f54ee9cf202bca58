"""Memento10k's per-video decay slope (``decay_alpha``): where its spread over videos comes from,
in the released file and in a simulated campaign.

    python calibration/memento_alpha.py [--data DIR] [--seed N] [--scale F] [--lag-sd 46]
        [--params NAME_OR_FILE] [PATH=VALUE ...]

For the released training scores and for one simulated campaign (``protocols/memento10k.yaml``,
its calibrated set unless ``--params``, changed by dotted ``PATH=VALUE``; scored by the same
pipeline, whose ``memento_decay`` correction fits each video's least-squares slope of hits on
lag), videos are binned by raw score; per bin it prints the videos, the mean and SD of alpha,
and the SD that binomial estimation noise alone would give a least-squares slope,
sqrt(p (1 - p) / (n var(lag))), p the bin's mean raw score, n its mean annotations, var(lag)
the variance of one annotation's lag (released: ``--lag-sd``, the spread the released scores
imply, docs/calibration.md "Memento10k"; simulated: the protocol's uniform target lags). Then
the SD of alpha over all videos split into within-bin and between-bin parts, and the
correlation of raw score and alpha. It writes nothing.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import yaml

from memsim.analysis.scoring import score
from memsim.api import load_params, load_protocol
from memsim.data import data_dir, load_memento_scores
from memsim.sim.simulate import simulate

EDGES = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0001)


def table(raw: np.ndarray, alpha: np.ndarray, n: np.ndarray, lag_sd: float, name: str) -> None:
    ok = np.isfinite(raw) & np.isfinite(alpha)
    raw, alpha, n = raw[ok], alpha[ok], n[ok]
    print(
        f"{name}: {len(raw):,} videos, alpha mean {alpha.mean():.5f}, SD {alpha.std(ddof=1):.5f}, "
        f"corr(raw, alpha) {np.corrcoef(raw, alpha)[0, 1]:+.3f}; one lag's SD {lag_sd:.1f}"
    )
    print("  raw score    videos  alpha mean  alpha SD  noise SD")
    within = between = 0.0
    for lo, hi in zip(EDGES[:-1], EDGES[1:]):
        m = (raw > lo) & (raw <= hi)
        k = int(m.sum())
        if k == 0:
            continue
        p, a = raw[m].mean(), alpha[m]
        noise = np.sqrt(p * (1 - p) / (n[m].mean() * lag_sd**2))
        sd = a.std(ddof=1) if k > 1 else float("nan")
        print(f"  {lo:4.2f}-{min(hi, 1.0):4.2f} {k:9,d}  {a.mean():10.5f}  {sd:8.5f}  {noise:8.5f}")
        within += ((a - a.mean()) ** 2).sum()
        between += k * (a.mean() - alpha.mean()) ** 2
    total = len(alpha) - 1
    print(
        f"  SD split: within bins {np.sqrt(within / total):.5f}, "
        f"between bins {np.sqrt(between / total):.5f}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--lag-sd", type=float, default=46.0, help="released: one lag's SD")
    ap.add_argument("--params", default="memento10k")
    ap.add_argument("changes", nargs="*", help="dotted PATH=VALUE changes of the protocol")
    args = ap.parse_args()

    real = load_memento_scores(data_dir(args.data))
    table(
        real["scores_raw_short_term"].to_numpy(float),
        real["decay_alpha"].to_numpy(float),
        real["annotations_short_term"].to_numpy(float),
        args.lag_sd,
        "released",
    )

    changes = dict(c.split("=", 1) for c in args.changes)
    protocol = load_protocol("memento10k").updated(
        {path: yaml.safe_load(value) for path, value in changes.items()}
    )
    params = load_params(args.params)
    sim = simulate(protocol, params, seed=args.seed, scale=args.scale)
    v = score(sim.trials, sim.protocol, validate=False).videos
    v = v[v["step"] == 1]
    a, b = next(g.repeat_lag for g in protocol.steps[0].items if g.role == "target")
    table(
        v["raw"].to_numpy(float),
        v["alpha"].to_numpy(float),
        v["annotations"].to_numpy(float),
        float(np.sqrt(((b - a + 1) ** 2 - 1) / 12)),
        f"simulated (seed {args.seed}, scale {args.scale}, params {params.name})",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
