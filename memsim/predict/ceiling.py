"""The ceiling: how well a perfect predictor of the latent truth can rank noisy scores.

A video's observed score is the hit fraction of its annotations: with true hit
probability ``p`` and ``n`` annotations, ``Binomial(n, p) / n``. A predictor
that knew every ``p`` exactly would still reach only
``E[Spearman(p, observed)] < 1`` against the released labels; no model trained
and scored on these labels can expect more. Two sources for the truth:

- ``truth_from_file``: a simulator's ``videos.parquet`` (``video``,
  ``true_short_term``, ``true_long_term``), with the released annotation
  counts dealt to its videos at random (seeded);
- ``truth_from_release``: the SPEC's "known tension" method: true scores drawn
  from a beta whose mean is the released mean and whose variance is the
  released variance minus the mean binomial noise variance,
  ``mean(s (1 - s) / (n - 1))`` (the unbiased per-video estimate), dealt to the
  released annotation counts. The released-as-truth upper bound (each released
  score taken as the noiseless ``p``) is reported beside it.

Short-term scores are lag-corrected in the release, not integral hit
fractions; the binomial model at the released counts is the stated
approximation. Plain numpy/scipy, vectorised over repeats.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from memsim.errors import UserError

__all__ = [
    "expected_spearman",
    "beta_truth",
    "ceilings_from_release",
    "ceilings_from_truth",
    "spearman_rows",
    "TRUTH_COLUMNS",
]

TRUTH_COLUMNS = {"short_term": "true_short_term", "long_term": "true_long_term"}


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman correlation of each row of ``a`` with the same row of ``b`` (average ranks).

    Parameters
    ----------
    a, b : ndarray, shape (r, n)

    Returns
    -------
    ndarray, shape (r,)
    """
    ra = rankdata(a, axis=1)
    rb = rankdata(b, axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    den = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ra * rb).sum(1) / den


def expected_spearman(
    p: np.ndarray, n: np.ndarray, *, repeats: int = 20, rng: np.random.Generator
) -> tuple[float, float]:
    """Mean and SD over ``repeats`` of Spearman(p, Binomial(n, p) / n).

    Parameters
    ----------
    p : ndarray of float, shape (v,) or (repeats, v)
        True hit probabilities (one draw per repeat when 2-D).
    n : ndarray of int, shape (v,)
        Annotations per video.
    """
    p = np.broadcast_to(np.asarray(p, dtype=np.float64), (repeats, len(n)))
    obs = rng.binomial(np.broadcast_to(n, p.shape), p) / n
    r = spearman_rows(p, obs)
    return float(np.mean(r)), float(np.std(r, ddof=1)) if repeats > 1 else 0.0


def beta_truth(
    scores: np.ndarray,
    n: np.ndarray,
    size: tuple,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draw true scores from the beta matched to the released mean and noise-free variance.

    Raises
    ------
    UserError
        When the released variance does not exceed the binomial noise variance
        (no true variance left to model).
    """
    s = np.asarray(scores, dtype=np.float64)
    m = s.mean()
    noise = np.mean(s * (1 - s) / np.maximum(n - 1, 1))
    var = s.var(ddof=1) - noise
    if var <= 0 or var >= m * (1 - m):
        raise UserError(
            f"released variance {s.var(ddof=1):.5f} leaves no valid true variance "
            f"after binomial noise {noise:.5f}"
        )
    k = m * (1 - m) / var - 1
    return rng.beta(m * k, (1 - m) * k, size=size)


def ceilings_from_release(
    scores: np.ndarray, n: np.ndarray, *, repeats: int = 20, seed: int = 0, beta: bool = True
) -> dict:
    """Beta-method ceiling and released-as-truth upper bound for one target.

    Returns
    -------
    dict
        ``beta`` and ``released_as_truth``: (mean, sd) of the expected Spearman
        (``beta`` is NaN when ``beta=False``);
        ``true_sd``: SD of the beta truth; ``noise_var``: mean binomial noise variance.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7002]))
    s = np.asarray(scores, dtype=np.float64)
    n = np.asarray(n, dtype=np.int64)
    noise = float(np.mean(s * (1 - s) / np.maximum(n - 1, 1)))
    if beta:
        p = beta_truth(s, n, (repeats, len(s)), rng)
        beta_c = expected_spearman(p, n, repeats=repeats, rng=rng)
    else:  # asked to skip: the caller found no valid beta (see beta_truth)
        beta_c = (float("nan"), float("nan"))
    return {
        "beta": beta_c,
        "released_as_truth": expected_spearman(s, n, repeats=repeats, rng=rng),
        "true_sd": float(np.sqrt(max(s.var(ddof=1) - noise, 0.0))),
        "noise_var": noise,
    }


def ceilings_from_truth(
    truth: pd.DataFrame,
    n: np.ndarray,
    target: str,
    *,
    repeats: int = 20,
    seed: int = 0,
    source: str = "truth file",
) -> tuple[float, float]:
    """Ceiling from a simulator truth table, with released annotation counts dealt at random."""
    col = TRUTH_COLUMNS[target]
    if col not in truth.columns:
        raise UserError(f"missing column {col}", path=source)
    p = pd.to_numeric(truth[col], errors="coerce").to_numpy(dtype=np.float64)
    if len(p) < 3:
        raise UserError("needs at least 3 videos", path=source)
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1:
        raise UserError(f"column {col} must hold probabilities in [0, 1] without NaN", path=source)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7003]))
    counts = rng.choice(np.asarray(n, dtype=np.int64), size=len(p), replace=len(p) > len(n))
    return expected_spearman(p, counts, repeats=repeats, rng=rng)


def read_truth(path) -> pd.DataFrame:
    """Read a simulator ``videos.parquet`` (or CSV); UserError when unreadable."""
    from pathlib import Path

    p = Path(path)
    if not p.exists():
        raise UserError("no such truth file", path=p)
    try:
        df = pd.read_csv(p) if p.suffix.lower() == ".csv" else pd.read_parquet(p)
    except Exception as exc:  # pyarrow raises several types on a damaged file
        raise UserError(
            f"cannot read truth file: {str(exc).splitlines()[0][:120]}", path=p
        ) from None
    return df
