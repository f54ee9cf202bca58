"""Compatibility analysis: the noise algebra, synthetic annotation sets scored by the project's
consistency code, and the SPEC's table reproduced from the released scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from memsim.fit import compat as K
from memsim.resources import params_path


def test_beta_params_match_moments():
    a, b = K.beta_params(0.8, 0.004)
    assert a / (a + b) == pytest.approx(0.8)
    assert a * b / ((a + b) ** 2 * (a + b + 1)) == pytest.approx(0.004)
    with pytest.raises(ValueError):
        K.beta_params(0.5, 0.3)


def test_implied_variance_recovers_true_variance_of_binomial_scores():
    rng = np.random.default_rng(1)
    a, b = K.beta_params(0.85, 0.003)
    p = rng.beta(a, b, 50_000)
    n = rng.integers(20, 60, 50_000)
    s = rng.binomial(n, p) / n
    st = K.implied_variance(s, n)
    assert st["true_var"] == pytest.approx(0.003, rel=0.05)


def test_synthetic_result_consistency_bounds():
    rng = np.random.default_rng(2)
    counts = np.full(2000, 36)
    # no true variance: halves agree only by chance
    flat = K.consistency_of(
        K.synthetic_result(np.full(2000, 0.85), counts, rng), 1, 36, seed=0, n_splits=5
    )
    assert abs(flat["human"]) < 0.06 and abs(flat["annotation"]) < 0.06
    # large true variance: halves agree as classical test theory says, T / (T + noise of 18)
    p = rng.uniform(0.2, 1.0, 2000)
    wide = K.consistency_of(K.synthetic_result(p, counts, rng), 1, 36, seed=0, n_splits=5)
    theory = p.var() / (p.var() + np.mean(p * (1 - p)) / 18)
    assert wide["human"] == pytest.approx(theory, abs=0.04)
    assert wide["annotation"] == pytest.approx(theory, abs=0.04)
    # participants hold 40 annotations each
    res = K.synthetic_result(np.full(2000, 0.5), counts, rng)
    per = np.bincount(res.tests[0].participant)
    assert per.max() == K.PER_PARTICIPANT


def test_npmle_recovers_a_skewed_mixture():
    rng = np.random.default_rng(4)
    # skewed against the ceiling, as short-term scores are
    p = 1.0 / (1.0 + np.exp(-rng.normal(2.2, 0.7, 6000)))
    n = rng.integers(30, 40, 6000)
    k = rng.binomial(n, p)
    grid, w = K.npmle(k, n)
    assert w.sum() == pytest.approx(1.0) and np.all(w >= 0)
    assert (grid * w).sum() == pytest.approx((k / n).mean(), abs=1e-3)  # EM keeps the mean
    cdf = np.cumsum(w)
    for q in (0.1, 0.5, 0.9):
        assert grid[np.searchsorted(cdf, q)] == pytest.approx(np.quantile(p, q), abs=0.02)
    with pytest.raises(ValueError):
        K.npmle(np.array([5]), np.array([4]))


def test_released_hits_undo_rounding_and_correction():
    n = np.array([33, 33, 10])
    k = np.array([30, 33, 7])
    corrected = np.round(k / n * 0.982, 3)
    assert np.array_equal(K.released_hits(corrected, n, corrected=True), k)
    assert np.array_equal(K.released_hits(np.round(k / n, 3), n, corrected=False), k)


def test_npmle_construction_predicts_consistency_where_a_beta_does_not():
    # true scores skewed against the ceiling: a beta with their mean and variance misplaces the
    # ranks, the NPMLE construction (what compat_table does) recovers the split-half Spearman
    rng = np.random.default_rng(5)
    V = 4000
    p = 1.0 / (1.0 + np.exp(-rng.normal(2.3, 0.75, V)))
    n = np.full(V, 36)
    actual = np.mean(
        [
            K.consistency_of(K.synthetic_result(p, n, rng), 1, 36, seed=r, n_splits=5)["human"]
            for r in range(3)
        ]
    )
    s = rng.binomial(n, p) / n
    real = pd.DataFrame(
        {
            "short-term_memorability": s,
            "nb_short-term_annotations": n,
            "long-term_memorability": s,
            "nb_long-term_annotations": n,
        }
    )
    table = K.compat_table(real, repeats=3, seed=0).set_index(["column", "construction"])
    row = table.loc["short-term_memorability"]
    assert row.loc["npmle", "human"] == pytest.approx(actual, abs=0.025)
    assert abs(row.loc["npmle", "human"] - actual) < abs(row.loc["independent", "human"] - actual)


def test_noise_needed_is_one_at_the_binomial_value():
    rng = np.random.default_rng(3)
    a, b = K.beta_params(0.86, 0.0033)
    n = np.full(5000, 36)
    s = rng.binomial(n, rng.beta(a, b, 5000)) / n
    real = pd.DataFrame({"short-term_memorability": s, "nb_short-term_annotations": n})
    base = K.noise_needed(real, "short-term_memorability", 0.3, 18)
    at_binomial = K.noise_needed(real, "short-term_memorability", base["r_with_binomial_noise"], 18)
    assert at_binomial["factor"] == pytest.approx(1.0, abs=1e-9)
    higher = K.noise_needed(
        real, "short-term_memorability", base["r_with_binomial_noise"] + 0.15, 18
    )
    assert higher["factor"] < 1.0 and higher["rho"] < 0


def test_reproduces_the_spec_table_from_released_scores(released_videomem):
    real = released_videomem
    table = K.compat_table(real, repeats=2, seed=0).set_index(["column", "construction"])
    st, lt = "short-term_memorability", "long-term_memorability"
    # SPEC: ST human 0.31, LT human 0.19 (independent); ST 0.47 / LT 0.42 as noiseless truth
    assert table.loc[(st, "independent"), "human"] == pytest.approx(0.31, abs=0.03)
    assert table.loc[(lt, "independent"), "human"] == pytest.approx(0.19, abs=0.03)
    assert table.loc[(st, "upper"), "human"] == pytest.approx(0.47, abs=0.03)
    assert table.loc[(lt, "upper"), "human"] == pytest.approx(0.42, abs=0.03)
    # the true scores' own shape (NPMLE) allows more ST consistency than the SPEC's beta,
    # still far below 0.481
    assert table.loc[(st, "independent"), "human"] + 0.01 < table.loc[(st, "npmle"), "human"] < 0.42
    lt_beta = table.loc[(lt, "independent"), "human"]
    assert table.loc[(lt, "npmle"), "human"] == pytest.approx(lt_beta, abs=0.03)
    # the paper's ST numbers exceed even the upper bound's annotation consistency
    assert table.loc[(st, "upper"), "annotation"] < 0.616 - 0.1


def test_simulator_mechanisms_stay_at_their_npmle_prediction():
    # every mechanism of the simulator keeps annotations independent given the video, so the
    # NPMLE construction from a run's own hits predicts the run's own human consistency

    from memsim.sim.params import load_params

    params = load_params(params_path("videomem"))
    table = K.simulator_check(params, scale=0.2, seed=0)
    assert len(table) == 10
    gap = table["npmle_predicts"] - table["human"]
    assert gap.abs().max() < 0.06, table.to_string()
    assert gap.abs().mean() < 0.03, table.to_string()


def test_a_scores_file_of_a_few_videos_is_refused(tmp_path, real_data, capsys):
    """Its moments cannot carry the analysis (a beta fit failed with a traceback)."""
    from memsim.cli import main

    (tmp_path / "videomem").mkdir()
    head = (real_data / "videomem" / "ground-truth_dev-set.csv").read_bytes()[:300]
    (tmp_path / "videomem" / "ground-truth_dev-set.csv").write_bytes(head)
    assert main(["compat", "--data", str(tmp_path), "--repeats", "2"]) == 2
    err = capsys.readouterr().err
    assert "videos: the compatibility analysis reads the released scores" in err
    assert len(err.strip().splitlines()) == 1
