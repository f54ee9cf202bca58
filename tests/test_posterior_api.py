"""``memsim.posterior``: a shipped or inferred posterior as parameter sets a notebook can run,
read without torch, each draw the crowd a study's sweep plays for that replicate."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest

import memsim
from memsim.errors import UserError
from memsim.paths import set_path
from memsim.sim.params import params_from_mapping
from memsim.study.infer import posterior_draws


@pytest.fixture(scope="module")
def post():
    return memsim.posterior("videomem")


def test_a_draw_is_the_base_set_with_the_draws_values(post):
    draw = post.draws.iloc[7]
    p = post.params(7)
    assert p.name == "videomem posterior draw 7"
    assert p.participants.careless_share == pytest.approx(draw["participants.careless_share"])
    assert p.forgetting.rate.mean == pytest.approx(draw["forgetting.rate.mean"])
    # what the posterior leaves fixed is the base set's
    assert p.participants.lapse_concentration == post.base.participants.lapse_concentration
    assert p.participants.careless_press_rate == post.base.participants.careless_press_rate
    assert post.params(-1).name == f"videomem posterior draw {len(post) - 1}"


def test_the_draws_are_the_crowds_a_sweep_plays(post):
    """A study with ``params: posterior videomem`` sets replicate r's draw on the base set's
    mapping (memsim.study.sweep); the API's parameter sets are the same values."""
    sets = post.parameter_sets(3)
    for r, (p, draw) in enumerate(zip(sets, posterior_draws(post.folder, 3))):
        mapping = copy.deepcopy(post.base.dump())
        for path, value in draw.items():
            set_path(mapping, path, value, create=True)
        mapping["name"] = p.name
        assert p == params_from_mapping(mapping), r


def test_a_posterior_runs_the_main_job(post):
    r = memsim.run("videomem", params=post.params(0), scale=0.05, figures=False)
    assert r.params.name == "videomem posterior draw 0"
    assert r.table["simulated"].notna().all()


def test_reading_a_posterior_needs_no_torch():
    code = (
        "import sys, memsim\n"
        "post = memsim.posterior('memento10k')\n"
        "post.params(0)\n"
        "print(len(post), 'torch' in sys.modules, 'sbi' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    n, torch, sbi = out.stdout.split()
    assert int(n) > 0 and torch == "False" and sbi == "False"


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: memsim.posterior("nope"), "no shipped posterior named 'nope'"),
        (lambda: memsim.posterior("."), "no posterior.parquet: not an output folder"),
        (lambda: memsim.posterior("videomem").params(10**6), "the posterior holds 2000 draws"),
        (lambda: memsim.posterior("videomem").parameter_sets(0), "0 posterior draws wanted"),
    ],
)
def test_mistakes_are_one_line_user_errors(call, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=message) as exc:
        call()
    assert "\n" not in str(exc.value)


def test_a_folder_without_its_base_set_is_not_a_posterior(tmp_path, post):
    post.draws.head(5).to_parquet(tmp_path / "posterior.parquet")
    with pytest.raises(UserError, match="no base-params.yaml"):
        memsim.posterior(tmp_path)
