"""Score distributions side by side: simulated against released, with no simulator needed.

In: two scores tables in the VideoMem format (:mod:`memsim.design.scores`). Out: per score
column, the Kolmogorov–Smirnov distance (after rounding the simulated scores to the decimals
the released ones are written with), means, spreads, and the KS distance of the annotation
counts (:func:`real_score_comparison`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from memsim.analysis.consistency import pearson, spearman
from memsim.design.scores import count_column

__all__ = ["sample_sd", "ks_distance", "decimals", "at_released_precision", "real_score_comparison"]


def sample_sd(x: np.ndarray) -> float:
    """Sample standard deviation, NaN below two values."""
    return float(x.std(ddof=1)) if x.size > 1 else float("nan")


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov–Smirnov statistic: the largest gap between the two ECDFs."""
    a = np.sort(np.asarray(a, float)[np.isfinite(a)])
    b = np.sort(np.asarray(b, float)[np.isfinite(b)])
    if a.size == 0 or b.size == 0:
        return float("nan")
    x = np.concatenate([a, b])  # the gap is largest at a data point
    fa = np.searchsorted(a, x, side="right") / a.size
    fb = np.searchsorted(b, x, side="right") / b.size
    return float(np.max(np.abs(fa - fb)))


def decimals(values: np.ndarray, most: int = 9) -> int | None:
    """The fewest decimals that write every finite value exactly (None: more than ``most``)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    for d in range(most + 1):
        if np.all(np.abs(v - np.round(v, d)) < 1e-12):
            return d
    return None


def at_released_precision(
    simulated: np.ndarray, released: np.ndarray
) -> tuple[np.ndarray, int | None]:
    """``simulated`` rounded to the decimals the ``released`` values are written with, and
    those decimals (None, and ``simulated`` as it is, when they are more than 9)."""
    d = decimals(released)
    s = np.asarray(simulated, float)
    return (np.round(s, d) if d is not None else s), d


def real_score_comparison(simulated: pd.DataFrame, real: pd.DataFrame) -> dict:
    """Per score column present in both: KS distance, means, SDs, annotation counts.

    Simulated scores are first rounded to the released precision (VideoMem releases 3
    decimals): else a released 0.818 (9/11) and a simulated 0.81818 fall on two sides of
    the ECDF step at 0.818 and the KS distance measures the rounding, not the scores.
    """
    out = {}
    for col in simulated.columns:
        if col == "video" or col.startswith("nb_") or col not in real.columns:
            continue
        s = simulated[col].to_numpy(float)
        r = real[col].to_numpy(float)
        s, r = s[np.isfinite(s)], r[np.isfinite(r)]
        s, d = at_released_precision(s, r)
        # a candidate far off (calibration) may score no video of a step: NaN, without warnings
        sd_s, sd_r = sample_sd(s), sample_sd(r)
        out[col] = {
            "ks": ks_distance(s, r),
            "released_decimals": d,
            "mean_simulated": float(s.mean()) if s.size else float("nan"),
            "mean_real": float(r.mean()) if r.size else float("nan"),
            "sd_simulated": sd_s,
            "sd_real": sd_r,
            "sd_difference": sd_s - sd_r,
            "videos_simulated": int(s.size),
            "videos_real": int(r.size),
        }
        cc = count_column(col)
        if cc in simulated.columns and cc in real.columns:  # annotation counts of the scored videos
            n_s = simulated[cc].to_numpy(float)
            n_r = real[cc].to_numpy(float)
            out[col]["counts_ks"] = ks_distance(n_s[n_s > 0], n_r[n_r > 0])
    cols = [c for c in out]
    if len(cols) >= 2:
        a, b = real[cols[0]].to_numpy(float), real[cols[1]].to_numpy(float)
        ok = np.isfinite(a) & np.isfinite(b)
        out["real_correlation"] = {
            "spearman": spearman(a[ok], b[ok]),
            "pearson": pearson(a[ok], b[ok]),
        }
    return out
