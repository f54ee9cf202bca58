"""What shape of true short-term scores the released VideoMem scores allow, and how close a
Kolmogorov–Smirnov distance can get at all.

    python calibration/st_shape.py [--data DIR] [--reps 5] [--studies 200]

The released short-term scores are corrected raw scores k / n (docs/scoring.md, "Lag
correction": k = ceil(score x n) recovers k). Two idealised campaigns, each video keeping its
released count n and its released correction ratio score / (k / n):

- ``npmle``: true hit rates drawn from the nonparametric maximum-likelihood mixing
  distribution of the released k (a binomial mixture on a grid, EM: ``compat.npmle``): the
  best any model of independent annotations at these counts can do; its KS distance is the
  sampling floor;
- ``logit-normal``: true hit rates expit(N(mu, sigma)) on a grid of (mu, sigma), the
  closest one reported.

Then a perfect model study by study (``--studies``): each simulated study fits its own lag
slope, so its correction ratios move together by the slope's sampling error (the OLS standard
error for a study of this size), which moves the k / n lattice after rounding. Printed: the
mean, 95th percentile and maximum KS distance, and the share of studies above 0.05, for the
NPMLE and logit-normal true scores at the released counts, and for the NPMLE at the counts
the shipped campaign gives (seed 0).

Printed first: the KS distances (mean over ``--reps`` draws) and the logit quantiles of the NPMLE
distribution, centred on its median (a normal has -2.33, -1.64, -0.67, 0, 0.67, 1.64, 2.33
times its sd), against those of the simulator's true short-term scores with the shipped
parameters (``true_short_term`` of ``videos.parquet``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from memsim.analysis.distributions import ks_distance  # noqa: E402
from memsim.analysis.scoring import read_scores  # noqa: E402
from memsim.data import data_dir  # noqa: E402
from memsim.fit.compat import npmle, raw_hits  # noqa: E402

Q = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument(
        "--studies",
        type=int,
        default=200,
        help="perfect-model studies, each with its own slope error (default 200)",
    )
    args = ap.parse_args()
    real = read_scores(data_dir(args.data) / "videomem" / "ground-truth_dev-set.csv")
    s = real["short-term_memorability"].to_numpy(float)
    n = real["nb_short-term_annotations"].to_numpy()
    k = raw_hits(s, n).astype(int)
    ratio = s / (k / n)
    rng = np.random.default_rng(0)

    def ks_of(p: np.ndarray) -> float:
        kk = rng.binomial(n, p)
        return ks_distance(np.round(kk / n * ratio, 3), s)

    grid, w = npmle(k, n)
    ks_np = [ks_of(rng.choice(grid, n.size, p=w)) for _ in range(args.reps)]
    cw = np.cumsum(w)
    qn = np.array([grid[np.searchsorted(cw, q)] for q in Q])
    print(
        f"NPMLE true scores at the released counts and ratios: KS {np.mean(ks_np):.4f} "
        f"(min {min(ks_np):.4f}, max {max(ks_np):.4f}; {args.reps} draws)"
    )
    z = rng.standard_normal((args.reps, n.size))
    best = None
    for mu in np.arange(1.8, 2.45, 0.05):
        for sd in np.arange(0.40, 0.80, 0.04):
            ks = np.mean([ks_of(1.0 / (1.0 + np.exp(-(mu + sd * z[r])))) for r in range(args.reps)])
            if best is None or ks < best[0]:
                best = (ks, mu, sd)
    print(f"closest logit-normal: mu {best[1]:.2f}, sd {best[2]:.2f}: KS {best[0]:.4f}")
    # A perfect model, study by study: each simulated study fits its own lag slope, whose sampling
    # error moves every correction ratio together (and with it the k/n lattice after rounding).
    # OLS slope of hit on lag over N annotations with lags uniform on the protocol's 45..100:
    # SE = sqrt(p (1 - p) / (N var(lag))); the ratio moves by SE x (100 - mean lag) / mean raw.
    lags = np.arange(45, 101)
    p_hit = float((k / n).mean())
    N = 10_000 * float(n.mean())  # the campaign scores all 10,000 videos
    se_ratio = np.sqrt(p_hit * (1 - p_hit) / (N * lags.var())) * (100 - lags.mean()) / p_hit
    draws = args.studies
    eps = rng.standard_normal(draws) * se_ratio
    p_np = [rng.choice(grid, n.size, p=w) for _ in range(draws)]
    ks_np = np.array(
        [
            ks_distance(np.round(rng.binomial(n, p_np[i]) / n * (ratio + eps[i]), 3), s)
            for i in range(draws)
        ]
    )
    ks_ln = np.array(
        [
            ks_distance(
                np.round(
                    rng.binomial(
                        n, 1.0 / (1.0 + np.exp(-(best[1] + best[2] * rng.standard_normal(n.size))))
                    )
                    / n
                    * (ratio + eps[i]),
                    3,
                ),
                s,
            )
            for i in range(draws)
        ]
    )
    print(f"a perfect model, {draws} studies, each with its own slope (ratio SE {se_ratio:.4f}):")
    rows = [("NPMLE", ks_np), ("logit-normal", ks_ln)]
    try:  # the same at the counts the shipped protocol's campaign gives (seed 0)
        from memsim.analysis.scoring import score
        from memsim.design.protocol import load_protocol
        from memsim.sim.params import default_params_path, load_params
        from memsim.sim.simulate import simulate

        protocol = load_protocol(ROOT / "protocols" / "videomem.yaml")
        sim = simulate(protocol, load_params(default_params_path(protocol)), seed=0)
        res = score(sim.trials, protocol, validate=False)
        ns = res.videos.loc[res.videos.step == 1, "annotations"].to_numpy()
        ns = ns[ns > 0]
        ratio_s = rng.choice(ratio, ns.size)
        ks_sim = np.array(
            [
                ks_distance(
                    np.round(
                        rng.binomial(ns, rng.choice(grid, ns.size, p=w)) / ns * (ratio_s + eps[i]),
                        3,
                    ),
                    s,
                )
                for i in range(draws)
            ]
        )
        rows.append(("NPMLE, simulated counts", ks_sim))
    except Exception as exc:  # the simulator's side is a comparison, not the point
        print(f"(simulated counts not shown: {exc})")
    for name, ks in rows:
        print(
            f"  {name:24s} KS mean {ks.mean():.4f}, 95th percentile {np.quantile(ks, 0.95):.4f}, "
            f"max {ks.max():.4f}; above 0.05 in {np.mean(ks > 0.05):.1%} of studies"
        )
    lq = np.log(qn / (1 - qn))
    print("quantiles", " ".join(f"{q:g}" for q in Q))
    print("NPMLE true scores      ", " ".join(f"{x:.3f}" for x in qn))
    print("  logit, centred       ", " ".join(f"{x:+.2f}" for x in lq - lq[3]))
    try:
        from memsim.design.protocol import load_protocol
        from memsim.sim.params import default_params_path, load_params
        from memsim.sim.population import draw_videos
        from memsim.sim.simulate import expected_scores

        protocol = load_protocol(ROOT / "protocols" / "videomem.yaml")
        params = load_params(default_params_path(protocol))
        t = expected_scores(protocol, params, draw_videos(params, 10_000, 0))["true_short_term"]
        tq = np.quantile(t, Q)
        lt = np.log(tq / (1 - tq))
        print(f"simulated true scores ({params.name})", " ".join(f"{x:.3f}" for x in tq))
        print("  logit, centred       ", " ".join(f"{x:+.2f}" for x in lt - lt[3]))
    except Exception as exc:  # the simulator's side is a comparison, not the point
        print(f"(simulated true scores not shown: {exc})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
