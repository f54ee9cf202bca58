"""The Python API meets a caller's mistakes as the command line does: one-line UserErrors,
raised before anything is written, and NumPy integers taken as the integers they are."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import memsim
from memsim.errors import UserError


@pytest.fixture(scope="module")
def small():
    sim = memsim.simulate("videomem", seed=1, scale=0.05)
    return sim, memsim.score(sim.trials, sim.protocol)


def test_a_numpy_integer_seed_is_that_seed(small):
    sim, _ = small
    again = memsim.simulate("videomem", seed=np.int64(1), scale=0.05)
    assert type(again.seed) is int
    assert again.trials.equals(sim.trials)


@pytest.mark.parametrize(
    "seed, message",
    [
        (-1, "seed must be in"),
        (1.0, "seed must be an integer, got float"),
        (None, "seed must be an integer, got NoneType"),
        (True, "seed must be an integer, got bool"),
        (2**64, "seed must be in"),
    ],
)
def test_bad_seeds_are_refused(seed, message):
    with pytest.raises(UserError, match=message):
        memsim.simulate("videomem", seed=seed, scale=0.05)
    with pytest.raises(UserError, match=message):
        memsim.compat(seed=seed)
    if seed is not None:  # None is the default: the videos drawn with the seed
        with pytest.raises(UserError, match="stimuli_" + message):
            memsim.simulate("videomem", seed=0, scale=0.05, stimuli_seed=seed)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda sc, sim: memsim.analyse(sim.trials), "takes a scored study"),
        (lambda sc, sim: memsim.analyse(sc, truth={"video": [0]}), "truth must be a DataFrame"),
        (lambda sc, sim: memsim.analyse(sc, n_splits=0), "n_splits must be in"),
        (lambda sc, sim: memsim.analyse(sc, seed=1.5), "seed must be an integer"),
        (lambda sc, sim: memsim.compare([]), "non-empty list"),
        (lambda sc, sim: memsim.compare(sc), "compare takes an analysis"),
        (lambda sc, sim: memsim.compare({"protocol": "videomem"}, scale=-1), r"scale must be"),
        (lambda sc, sim: memsim.compare({"protocol": "videomem"}, scale=float("nan")), "scale"),
    ],
)
def test_the_pipelines_calls_name_what_they_take(small, call, message):
    sim, sc = small
    with pytest.raises(UserError, match=message):
        call(sc, sim)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: memsim.load_protocol(None), "protocol must be a shipped name, a file path"),
        (lambda: memsim.load_protocol(""), "the name is empty"),
        (lambda: memsim.load_params(3), "params must be a shipped name, a file path"),
        (lambda: memsim.params_for(None), "needs a protocol, or params"),
    ],
)
def test_loading_names_what_it_takes(call, message):
    with pytest.raises(UserError, match=message):
        call()


def test_params_for_takes_a_protocols_name():
    p, why = memsim.params_for("videomem")
    assert p.name == "videomem" and "the protocol's own calibrated set" in why


def test_refused_fits_and_recoveries_write_nothing(tmp_path):
    out = tmp_path / "fit.yaml"
    with pytest.raises(UserError, match="at least one seed"):
        memsim.calibrate("videomem", out=out, scale=0.05, budget=3, workers=1, seeds=())
    with pytest.raises(UserError, match="a list of seeds, got int"):
        memsim.calibrate("videomem", out=out, seeds=1)
    assert list(tmp_path.iterdir()) == []
    for kw, message in ((dict(scale=0), "scale"), (dict(perturb=-1), "perturb must be")):
        with pytest.raises(UserError, match=message):
            memsim.recover("videomem", out=tmp_path / "rec", **kw)
        assert not (tmp_path / "rec").exists()


def test_results_print_as_one_line_in_a_notebook(small):
    sim, sc = small
    run = memsim.run("videomem", seed=1, scale=0.05, figures=False)
    shown = [
        repr(sim),
        repr(sc),
        repr(memsim.analyse(sc, n_splits=2, repeats=1)),
        repr(memsim.load_targets(protocol="videomem")),
        repr(run),
    ]
    for line in shown:
        assert "\n" not in line and len(line) < 300, line
    assert shown[0].startswith("Simulation(protocol='videomem', params='videomem', seed=1,")
    assert f"trials={len(sim.trials):,}" in shown[0]
    assert shown[1].startswith("ScoreResult(protocol='videomem'")
    assert shown[2].startswith("Analysis(protocol='videomem', seed=0, steps=")
    within, counted = run.fitted
    assert f"fitted targets within tolerance {within}/{counted}" in shown[4]


def test_a_missing_copy_of_a_shipped_protocol_points_to_its_name(tmp_path):
    """``protocols/videomem.yaml`` outside a checkout (an installed wheel): the name works."""
    with pytest.raises(UserError, match="memsim ships a protocol named 'videomem': give its name"):
        memsim.load_protocol(tmp_path / "protocols" / "videomem.yaml")
    with pytest.raises(UserError, match="no such protocol file$"):
        memsim.load_protocol(tmp_path / "mine.yaml")


def test_a_truth_table_that_cannot_be_set_beside_the_scores_is_refused(small):
    import pandas as pd

    sim, sc = small
    v = sim.videos
    named = v.assign(video="video" + v.video.astype(str))
    cases = [
        (named, "integer video ids"),
        (v[["video"]], "no column of true values"),
        (v.assign(video=v.video + 10**6), "none of its videos is among the scored ones"),
        (pd.concat([v, v.iloc[:1]]), "given more than once"),
    ]
    for truth, message in cases:
        with pytest.raises(UserError, match=message):
            memsim.analyse(sc, truth=truth, n_splits=2, repeats=1)
    assert memsim.analyse(sc, truth=v, n_splits=2, repeats=1)["truth"]


def _script(tmp_path, name: str, text: str) -> subprocess.CompletedProcess:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    env = {**os.environ, "PYTHONPATH": str(Path(memsim.__file__).parents[1])}
    return subprocess.run(
        [sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip


def test_a_script_starting_workers_from_its_top_level_is_refused_before_it_hangs(tmp_path):
    # each spawned worker imports the script again and would start the pool again; Python
    # refuses that in the worker, and the parent would wait for ever on it
    out = tmp_path / "fit"
    done = _script(
        tmp_path,
        "fit.py",
        f"""\
        import memsim

        memsim.calibrate("videomem", out={str(out)!r}, workers=2)
        """,
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"memsim.errors.UserError: {tmp_path / 'fit.py'}: line 3 starts")
    assert 'if __name__ == "__main__":' in last and "workers=1" in last
    assert not out.exists()


def test_where_a_script_starts_workers_is_read_from_its_source(tmp_path):
    done = _script(
        tmp_path,
        "where.py",
        """\
        from memsim.io import unguarded_main_call


        def main():
            return unguarded_main_call()


        print("top", main())
        if __name__ == "__main__":
            print("guarded", main())
        print("inline", main() if __name__ == "__main__" else None)
        """,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines == [f"top ({str(tmp_path / 'where.py')!r}, 8)", "guarded None", "inline None"]
    # python -c has no script to import again
    code = "from memsim.io import unguarded_main_call; print(unguarded_main_call())"
    env = {**os.environ, "PYTHONPATH": str(Path(memsim.__file__).parents[1])}
    got = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert got.stdout.strip() == "None", got.stderr
