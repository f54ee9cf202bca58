"""How much a rank bin of the scores varies from campaign to campaign by its annotations alone.

    python calibration/bin_noise.py [--videos 10000] [--draws 400] [--data DIR]

The fit report's rank-bin rows (the mean of the sorted scores in each rank bin, fitted at
±0.005) are held seed by seed only where a campaign's bin mean varies by less than about
0.005 / 1.96 = 0.0026. This script measures, from the released VideoMem dev set alone and
with no model of the crowd, two sources of that variation:

* *videos*: ``--videos`` videos drawn with replacement from the released ones, their released
  scores as they are (the fit report's *at best* column draws the same way);
* *annotations*: one such draw of videos held for every campaign, each video's score made
  again as ``k / n`` with ``k ~ Binomial(n, p)`` at its released annotation count ``n``.
  ``p`` is the video's true score, estimated by shrinking the released score toward the mean
  by the square root of the scores' reliability (1 minus the mean binomial variance, estimated
  without bias as ``s (1 - s) / (n - 1)``, over the scores' variance), so that the ``p`` have
  the variance of the true scores and the re-made ``k / n`` that of the released ones.

For each rank bin: the SD of the bin mean over ``--draws`` draws of each kind, and the share
of draws within 0.005 of their own mean (*centred*: the most seeds a model whose bin mean is
exactly on target can hold the row on). The annotations' share holds for any model whose
annotations of a video are independent presses at the released counts, whatever its crowd:
with the videos fixed (or drawn to match the population exactly), their noise remains.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from _script import released_videomem

from memsim.analysis.scoring import count_column
from memsim.fit.calibrate import QUANTILE_SCALE, rank_bin_means

STEPS = ("short-term_memorability", "long-term_memorability")


def true_scores(s: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, float]:
    """The released scores shrunk toward their mean to the true scores' variance, and the
    reliability that sets the shrinkage."""
    reliability = 1.0 - float(np.mean(s * (1.0 - s) / (n - 1))) / float(s.var())
    return s.mean() + (s - s.mean()) * np.sqrt(reliability), reliability


def spread(draws: list[dict]) -> dict[str, tuple[float, float]]:
    """Per bin: the SD of the bin means over the draws, and the share within the tolerance of
    their own mean."""
    out = {}
    for k in draws[0]:
        v = np.array([d[k] for d in draws])
        out[k] = (float(v.std(ddof=1)), float(np.mean(np.abs(v - v.mean()) <= QUANTILE_SCALE)))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=10_000, help="videos per campaign")
    ap.add_argument("--draws", type=int, default=400, help="campaigns drawn of each kind")
    ap.add_argument("--data", help="real data folder (default $MEMSIM_DATA or ../shared/data)")
    args = ap.parse_args(argv)
    real = released_videomem(args.data)
    if real is None:
        return 2
    rng = np.random.default_rng(0)
    print(
        f"rank bins of {args.videos:,} videos, {args.draws} draws each: SD of the bin mean, "
        f"and the share of draws within {QUANTILE_SCALE} of their mean"
    )
    for step in STEPS:
        s = real[step].to_numpy(float)
        n = real[count_column(step)].to_numpy(float)
        ok = np.isfinite(s) & (n > 1)  # s (1 - s) / (n - 1) needs two annotations
        s, n = np.clip(s[ok], 0.0, 1.0), n[ok].astype(np.int64)
        p, reliability = true_scores(s, n)
        videos = spread(
            [rank_bin_means(s[rng.integers(0, s.size, args.videos)]) for _ in range(args.draws)]
        )
        held = rng.integers(0, s.size, args.videos)
        annotations = spread(
            [rank_bin_means(rng.binomial(n[held], p[held]) / n[held]) for _ in range(args.draws)]
        )
        print(f"{step} (reliability {reliability:.3f}):")
        print("  bin      videos: SD  centred | annotations: SD  centred")
        for k in videos:
            (sv, cv), (sa, ca) = videos[k], annotations[k]
            print(f"  {k:8s}        {sv:.4f}  {cv:6.1%} |               {sa:.4f}  {ca:6.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
