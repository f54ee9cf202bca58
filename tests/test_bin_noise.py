"""calibration/bin_noise.py: the rank bins' spread from the videos and from the annotations."""

from __future__ import annotations

import numpy as np
import pytest
from repo_scripts import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("calibration/bin_noise.py")


def test_true_scores_have_the_variance_the_binomial_noise_leaves(script):
    rng = np.random.default_rng(3)
    p = rng.beta(8.0, 2.0, 20_000)
    n = rng.integers(9, 20, p.size)
    s = rng.binomial(n, p) / n
    shrunk, reliability = script.true_scores(s, n)
    assert reliability == pytest.approx(p.var() / s.var(), abs=0.03)
    assert shrunk.mean() == pytest.approx(s.mean())
    assert shrunk.var() == pytest.approx(reliability * s.var())
    # re-made at the same counts, the shrunk scores give back the observed spread
    again = rng.binomial(n, np.clip(shrunk, 0, 1)) / n
    assert again.var() == pytest.approx(s.var(), rel=0.05)


def test_spread_is_the_sd_and_the_share_within_the_tolerance_of_the_mean(script):
    draws = [{"b00-05": 0.5 + d} for d in (-0.006, 0.0, 0.0, 0.006)]
    sd, share = script.spread(draws)["b00-05"]
    assert sd == pytest.approx(np.std([-0.006, 0.0, 0.0, 0.006], ddof=1))
    assert share == 0.5  # the two at +-0.006 are outside 0.005
    assert script.spread([{"b": 0.7}, {"b": 0.7}])["b"] == (0.0, 1.0)


def test_without_the_data_one_line_and_status_2(script, tmp_path, capsys):
    assert script.main(["--data", str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "absent" in err
