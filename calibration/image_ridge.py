"""What the image studies' published figures leave free: the statistics their papers report
beside the consistency, for the shipped set, and the ridge of memorability mean and SD on which
the consistency target holds.

    python calibration/image_ridge.py isola2011 [--scale 1] [--seeds 5]
    python calibration/image_ridge.py isola2011 --ridge 0.75 --means 0,0.5,1 --sds 0.3,0.5,0.7,1

Without ``--ridge``: for the protocol's shipped parameter set, seeds 0 to ``--seeds`` - 1,
the mean score, the SD of the scores over images, the kept participants' mean hit and
false-alarm rates and their SDs (``participant_rates`` of the run summary), the share of
participants the filters drop, and the log-linear correction's slope (LaMem's alpha, per unit
of ln lag). Printed per seed, then mean and SD over the seeds.

With ``--ridge R``: the shipped set with only ``videos.memorability.mean`` and ``.sd`` changed,
one campaign (seed ``--seed``) per pair of the grid ``--means`` x ``--sds``; for each mean, the
SD at which the human consistency crosses R (linear interpolation between grid points) and,
there, the mean score, the score SD, the false-alarm rate and the kept annotations per image.
One seed: a grid point's consistency carries its sampling noise (about 0.006 for isola2011).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import memsim  # noqa: E402
from memsim.analysis.consistency import analyse  # noqa: E402


def campaign(protocol: str, params, seed: int, scale: float, consistency: bool) -> dict:
    """One simulated campaign's statistics of the first step, by name."""
    sim = memsim.simulate(protocol, params, seed=seed, scale=scale)
    res = memsim.score(sim.trials, sim.protocol, validate=False)
    only = {"participant_rates", "scores", "correction"}
    a = analyse(res, seed=seed, only=only | ({"human_consistency"} if consistency else set()))
    step = a["steps"][0]
    col = res.protocol.steps[0].scoring.column
    rates = a["participant_rates"][step]
    out = {
        "annotations": a["annotations_per_video"][step]["mean"],
        "mean_score": a["mean_score"][step],
        "score_sd": a["scores"]["columns"][col]["sd"],
        "hit_mean": rates["hit_rate"]["mean"],
        "hit_sd": rates["hit_rate"]["sd"],
        "fa_mean": rates["false_alarm_rate"]["mean"],
        "fa_sd": rates["false_alarm_rate"]["sd"],
        "excluded": rates["excluded_share"],
        "alpha_log": a["correction"][step].get("slope_per_log_lag", float("nan")),
    }
    if consistency:
        out["consistency"] = a["human_consistency"][step]["mean"]
    return out


def with_memorability(params, mean: float, sd: float):
    """``params`` with the memorability mean and SD replaced."""
    mem = params.videos.memorability.model_copy(update={"mean": mean, "sd": sd})
    videos = params.videos.model_copy(update={"memorability": mem})
    return params.model_copy(update={"videos": videos})


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("protocol")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--ridge", type=float, default=None, help="consistency to cross")
    ap.add_argument("--means", default="0,0.5,1,1.5,2")
    ap.add_argument("--sds", default="0.3,0.5,0.7,0.9,1.2,1.5")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    params = memsim.load_params(protocol=args.protocol)
    if args.ridge is None:
        rows = [campaign(args.protocol, params, s, args.scale, False) for s in range(args.seeds)]
        keys = list(rows[0])
        print("seed " + " ".join(f"{k:>11}" for k in keys))
        for s, r in enumerate(rows):
            print(f"{s:4d} " + " ".join(f"{r[k]:11.4f}" for k in keys))
        for name, f in (("mean", np.mean), ("sd", lambda x: np.std(x, ddof=1))):
            print(f"{name:>4} " + " ".join(f"{f([r[k] for r in rows]):11.4f}" for k in keys))
        return
    means = [float(x) for x in args.means.split(",")]
    sds = sorted(float(x) for x in args.sds.split(","))
    grid = {
        (m, s): campaign(
            args.protocol, with_memorability(params, m, s), args.seed, args.scale, True
        )
        for m, s in itertools.product(means, sds)
    }
    print(f"memorability mean | SD at consistency {args.ridge} | mean score | score SD | "
          "FA rate | annotations per image")  # fmt: skip
    for m in means:
        hc = np.array([grid[m, s]["consistency"] for s in sds])
        cross = np.flatnonzero((hc[:-1] - args.ridge) * (hc[1:] - args.ridge) <= 0)
        if not len(cross):
            print(f"{m:6.2f} | not crossed on the grid (consistency {hc.min():.3f}-{hc.max():.3f})")
            continue
        i = cross[0]
        w = (args.ridge - hc[i]) / (hc[i + 1] - hc[i])
        lo, hi = grid[m, sds[i]], grid[m, sds[i + 1]]
        at = {k: lo[k] + w * (hi[k] - lo[k]) for k in lo}
        sd = sds[i] + w * (sds[i + 1] - sds[i])
        print(f"{m:6.2f} | {sd:.3f} | {at['mean_score']:.3f} | {at['score_sd']:.3f} | "
              f"{at['fa_mean']:.3f} | {at['annotations']:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
