"""calibration/count_score.py: the regression of each video's long-term score on its counts
(docs/protocols.md, "Counts and scores"), on scores made with known coefficients."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from repo_scripts import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("calibration/count_score.py")


def _scores(rng, n_videos, lt_slope, tail_shift):
    st = rng.uniform(0.6, 1.0, n_videos)
    n_st = np.where(rng.random(n_videos) < 0.1, rng.integers(46, 100, n_videos), 33)
    n_lt = rng.integers(9, 30, n_videos)
    lt = 0.1 + 0.7 * st + lt_slope * n_lt + tail_shift * (n_st > 45)
    lt = lt + rng.normal(0.0, 0.02, n_videos)
    return pd.DataFrame(
        {
            "short-term_memorability": st,
            "nb_short-term_annotations": n_st,
            "long-term_memorability": lt,
            "nb_long-term_annotations": n_lt,
        }
    )


def test_coefficients_recover_known_slopes(script):
    rng = np.random.default_rng(5)
    d = script.table(_scores(rng, 4000, 0.003, -0.025))
    beta = script.coefficients(d)
    sd = script.bootstrap_sd(d, repeats=100)
    assert beta == pytest.approx([0.003, -0.025], abs=4 * sd.max())
    assert np.all(sd > 0) and np.all(sd < 0.005)
    # no link: both coefficients within noise of zero
    flat = script.coefficients(script.table(_scores(rng, 4000, 0.0, 0.0)))
    assert np.all(np.abs(flat) < 0.004)


def test_table_keeps_videos_with_both_scores(script):
    rng = np.random.default_rng(6)
    raw = _scores(rng, 50, 0.0, 0.0)
    raw["nb_short-term_annotations"] = np.repeat([30, 33, 40, 52, 75], 10)
    raw.loc[3, "long-term_memorability"] = np.nan
    raw.loc[17, "nb_short-term_annotations"] = 0
    d = script.table(raw)
    assert len(d) == 48 and np.isfinite(d.to_numpy()).all()
    bins = script.by_bins(d, "n_st", script.ST_BINS)
    assert bins["videos"].tolist() == [9, 9, 10, 10, 10]
    assert [script._label(iv) for iv in bins.index] == ["<= 31", "33", "36-45", "46-60", "61+"]


def test_far_tail_split_by_short_term_tail(script):
    d = pd.DataFrame(
        {
            "st": 0.8,
            "lt": 0.7,
            "n_st": [33, 33, 33, 33, 60, 60],
            "n_lt": [9, 12, 23, 30, 10, 25],
        }
    )
    assert script.far_tail(d) == pytest.approx((0.5, 0.5))
    d["n_lt"] = [9, 12, 22, 22, 23, 10]
    assert script.far_tail(d) == pytest.approx((0.0, 0.5))


def test_main_prints_both_fits_on_a_changed_protocol(script, tmp_path, capsys):
    """The command: released coefficients beside a simulated campaign of the protocol with
    the changes given."""
    rng = np.random.default_rng(7)
    d = _scores(rng, 300, 0.003, -0.02)
    d["short-term_memorability"] = d["short-term_memorability"].round(3)
    d["long-term_memorability"] = d["long-term_memorability"].clip(0, 1).round(3)
    folder = tmp_path / "videomem"
    folder.mkdir()
    d.insert(0, "video", [f"video{i}.webm" for i in range(len(d))])
    d.to_csv(folder / "ground-truth_dev-set.csv", index=False)
    changes = ["steps.1.filters.min_hit_rate=0.5"]
    assert script.main(["--seeds", "0-0", "--data", str(tmp_path), *changes]) == 0
    out = capsys.readouterr().out
    assert out.startswith("simulated with steps.1.filters.min_hit_rate=0.5\n")
    assert "seeds 0-0: mean (SD)" in out and "long-term count" in out
    assert out.count(" | ") >= 2 * 9  # both bin tables, released beside simulated
