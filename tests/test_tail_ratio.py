"""calibration/tail_ratio.py: each released video's correction ratio, read back from its
corrected score and annotation count, and grouped by count (docs/calibration.md)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from repo_scripts import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("calibration/tail_ratio.py")


def test_ratios_read_back_by_count_group(script):
    rng = np.random.default_rng(3)
    n = np.concatenate([np.full(300, 33), np.full(50, 52), np.full(20, 80)])
    k = np.minimum(n, rng.binomial(n, 0.85)).astype(float)
    k[k == 0] = 1.0
    # the three groups corrected by -1.8 %, -1.6 % and -0.8 % (each video +-0.1 %)
    true = np.concatenate([np.full(300, -0.018), np.full(50, -0.016), np.full(20, -0.008)])
    true += rng.uniform(-0.001, 0.001, true.size)
    score = np.round(k / n * (1.0 + true), 3)  # released: 3 decimals
    real = pd.DataFrame(
        {"short-term_memorability": score, "nb_short-term_annotations": n.astype(np.int64)}
    )
    ratio, counts = script.released_ratios(real)
    assert counts.tolist() == n.tolist()
    # rounding to 3 decimals moves a score by 0.0005 at most: the ratio by 0.0005 / raw
    assert np.all(np.abs(ratio - true) <= 0.0005 / (k / n) + 1e-12)
    groups = script.by_group(ratio, counts)
    assert [g[0] for g in groups.values()] == [300, 50, 20]
    means = [g[1] for g in groups.values()]
    assert means == pytest.approx([-0.018, -0.016, -0.008], abs=4e-4)
    assert means[0] < means[1] < means[2]
