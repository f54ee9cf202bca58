"""`memsim simulate`, `memsim run` and `memsim bench` as a user runs them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from memsim.analysis.distributions import decimals, ks_distance, real_score_comparison
from memsim.cli import main
from memsim.design.trials import validate_trials
from memsim.errors import UserError
from memsim.fit.compare import compare, load_targets, lookup
from memsim.resources import params_path, protocol_path, targets_path

VIDEOMEM = str(protocol_path("videomem"))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    code = main(["run", VIDEOMEM, "--out", str(out), "--scale", "0.05", "--seed", "3", "--quiet"])
    assert code == 0
    return out


def test_run_writes_everything(run_dir, capsys):
    names = {p.name for p in run_dir.iterdir()}
    assert {
        "trials.parquet",
        "videos.parquet",
        "participants.parquet",
        "scores.csv",
        "summary.json",
        "fig3_lag.png",
        "fig4_consistency.png",
        "fig5_st_vs_lt.png",
        "fig6_rt.png",
    } <= names
    assert not [n for n in names if n.endswith(".tmp")]
    for png in run_dir.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_run_outputs_agree_with_each_other(run_dir):
    trials = validate_trials(
        pd.read_parquet(run_dir / "trials.parquet")
    )  # the scoring contract holds
    scores = pd.read_csv(run_dir / "scores.csv")
    assert list(scores.columns) == [
        "video",
        "short-term_memorability",
        "nb_short-term_annotations",
        "long-term_memorability",
        "nb_long-term_annotations",
    ]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["protocol"] == "videomem" and summary["seed"] == 3
    kept = summary["participants_kept"]["short-term"]
    assert 0 < kept <= trials[trials.step == 1].participant.nunique()
    assert summary["annotations_per_video"]["short-term"]["mean"] == pytest.approx(
        scores["nb_short-term_annotations"].mean()
    )
    assert summary["mean_score"]["long-term"] == pytest.approx(
        scores["long-term_memorability"].mean()
    )
    # the noise ceiling: observed scores track the latent truth
    assert summary["truth"]["short-term_memorability"]["spearman"] > 0.3
    # the top-up's record: its participants are the table's ids from the first one on
    top = summary["top_up"]
    ids = trials[trials.step == 1].participant.unique()
    pilot = summary["pilot"]  # the pilot's players come after the top-up's (campaign.pilot)
    first_pilot = len(ids) - pilot["participants"]
    assert top["participants"] == ((ids >= top["first_participant"]) & (ids < first_pilot)).sum()
    assert pilot["participants"] == (ids >= first_pilot).sum() > 0
    back = trials[(trials.step == 2) & (trials.participant >= first_pilot)].participant.nunique()
    assert pilot["later_steps"] == [back]
    assert top["min_after"] == scores["nb_long-term_annotations"].min() >= top["floor"]


def test_run_prints_the_comparison_table(tmp_path, capsys):
    code = main(
        [
            "run",
            VIDEOMEM,
            "--out",
            str(tmp_path / "r"),
            "--scale",
            "0.03",
            "--quiet",
            "--no-figures",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "human consistency, short-term" in out and "0.481" in out
    assert "fitted targets within tolerance" in out
    assert not list((tmp_path / "r").glob("*.png"))


def test_same_seed_same_scores(run_dir, tmp_path):
    main(
        [
            "run",
            VIDEOMEM,
            "--out",
            str(tmp_path),
            "--scale",
            "0.05",
            "--seed",
            "3",
            "--quiet",
            "--no-figures",
        ]
    )
    assert (tmp_path / "scores.csv").read_bytes() == (run_dir / "scores.csv").read_bytes()
    assert (tmp_path / "trials.parquet").read_bytes() == (run_dir / "trials.parquet").read_bytes()


def test_run_on_the_stimuli_of_another_seed(run_dir, tmp_path, capsys):
    """`memsim run --stimuli-seed 3 --seed 4`: the videos of seed 3's run, seed 4's campaign;
    the summary and the title say so. The API takes it too, and refuses a bad one."""
    import memsim

    args = ["run", VIDEOMEM, "--scale", "0.05", "--quiet", "--no-figures"]
    assert main([*args, "--seed", "4", "--stimuli-seed", "3", "--out", str(tmp_path)]) == 0
    assert "seed 4, stimuli of seed 3, params videomem" in capsys.readouterr().out
    same = (tmp_path / "videos.parquet").read_bytes() == (run_dir / "videos.parquet").read_bytes()
    assert same
    assert (tmp_path / "trials.parquet").read_bytes() != (run_dir / "trials.parquet").read_bytes()
    assert json.loads((tmp_path / "summary.json").read_text())["stimuli_seed"] == 3
    assert "stimuli_seed" not in json.loads((run_dir / "summary.json").read_text())
    with pytest.raises(UserError, match="stimuli_seed must be"):
        memsim.run(VIDEOMEM, scale=0.05, stimuli_seed=-1, figures=False)


@pytest.mark.parametrize(
    "argv, words",
    [
        (["run", "nope.yaml"], "no such protocol file"),
        (["run", VIDEOMEM, "--scale", "0"], "--scale"),
        (["run", VIDEOMEM, "--params", "missing.yaml"], "no such parameter file"),
        (["simulate", VIDEOMEM, "--out", "X", "--scale", "7"], "--scale"),
        (["run", VIDEOMEM, "--data", "/nonexistent/data"], "data"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(argv, words, tmp_path, capsys):
    out = tmp_path / "out"
    if "--out" not in argv:
        argv = argv + ["--out", str(out)]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and words in err
    assert not out.exists() or not any(out.iterdir())


def test_bad_params_file_names_the_field(tmp_path, capsys):
    bad = tmp_path / "p.yaml"
    text = (params_path("videomem")).read_text().replace("ability_sd:", "abilty_sd:")
    bad.write_text(text)
    code = main(["simulate", VIDEOMEM, "--out", str(tmp_path / "o"), "--params", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and "abilty_sd" in err and len(err.strip().splitlines()) == 1


def test_simulate_output_exists_as_a_file_is_an_error(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    assert main(["simulate", VIDEOMEM, "--out", str(f), "--scale", "0.02", "--quiet"]) == 2


def test_targets_compare_and_lookup():
    targets = load_targets(targets_path("videomem"))
    fake = {"participants_kept": {"short-term": 9402}, "mean_score": {"long-term": 0.5}}
    present = [t for t in targets.targets if not pd.isna(lookup(fake, t.path))]
    table = compare(fake, targets.model_copy(update={"targets": tuple(present)}))
    row = table.set_index("target").loc["participants kept, short-term"]
    assert row.within and row.simulated == 9402 and row.status == "ok"
    off = table.set_index("target").loc["mean score, long-term"]
    assert not off.within and off.status == "off"
    assert pd.isna(lookup(fake, ("nothing", "here")))


def test_a_target_path_that_names_no_statistic_is_an_error_not_an_off_row():
    targets = load_targets(targets_path("videomem"))
    fake = {"participants_kept": {"short-term": 9402, "long-term": 3000}}
    typo = targets.targets[0].model_copy(update={"path": ("participants_kep", "short-term")})
    with pytest.raises(UserError, match=r"participants_kep.*did you mean 'participants_kept'"):
        compare(fake, targets.model_copy(update={"targets": (typo,)}))
    # a statistic of an optional block (here: the released scores) is n/a without its input
    ks = next(t for t in targets.targets if t.path[0] == "real")
    table = compare(fake, targets.model_copy(update={"targets": (ks,)}))
    assert table.status.tolist() == ["n/a"] and not table.within.any()


def test_released_precision_and_rounded_comparison():
    """Simulated scores are compared at the released precision: the same k/n values written
    with 3 decimals and at full precision are at KS distance 0, not the mass of the 9/11s."""
    assert decimals(np.array([0.95, 0.818, 1.0])) == 3
    assert decimals(np.array([0.5, 1.0, np.nan])) == 1
    assert decimals(np.array([1 / 3])) is None
    k = np.random.default_rng(0).integers(0, 12, 2000)
    exact = k / 11.0
    sim = pd.DataFrame({"video": np.arange(2000), "long-term_memorability": exact})
    real = pd.DataFrame({"video": np.arange(2000), "long-term_memorability": np.round(exact, 3)})
    assert ks_distance(exact, real["long-term_memorability"].to_numpy()) > 0.05  # the artefact
    out = real_score_comparison(sim, real)["long-term_memorability"]
    assert out["ks"] == 0.0 and out["released_decimals"] == 3


def test_real_comparison_of_a_step_with_no_scored_video_is_nan_without_warnings():
    """A calibration candidate far off can leave a step with no scored video: its comparison
    is NaN, quietly (numpy would warn about the mean and variance of an empty slice)."""
    import warnings

    real = pd.DataFrame(
        {"video": np.arange(5), "long-term_memorability": [0.5, 0.6, 0.7, 0.8, 0.9]}
    )
    for values in ([np.nan] * 5, [np.nan] * 4 + [0.7]):
        sim = pd.DataFrame({"video": np.arange(5), "long-term_memorability": values})
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out = real_score_comparison(sim, real)["long-term_memorability"]
        assert np.isnan(out["sd_simulated"]) and np.isnan(out["sd_difference"])
        assert out["sd_real"] == pytest.approx(np.std([0.5, 0.6, 0.7, 0.8, 0.9], ddof=1))
        assert out["videos_simulated"] == sum(np.isfinite(values))


def test_ks_distance_matches_scipy():
    import numpy as np
    from scipy.stats import ks_2samp

    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.random(rng.integers(5, 300)).round(2)
        b = rng.beta(2, 2, rng.integers(5, 300)).round(2)
        assert ks_distance(a, b) == pytest.approx(ks_2samp(a, b).statistic, abs=1e-12)
