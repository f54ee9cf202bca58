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
        mapping["name"], mapping["note"] = p.name, p.note  # which draw it is, said
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


# --------------------------------------------------------------------------- memsim posterior
def test_the_command_describes_the_posterior_and_its_checks(capsys):
    from memsim import cli

    assert cli.main(["posterior", "memento10k"]) == 0
    out = capsys.readouterr().out
    post = memsim.posterior("memento10k")
    assert out.startswith(f"memento10k posterior (shipped with memsim): {len(post):,} draws of 10")
    assert "  forgetting.rate.mean: " in out  # one line per parameter
    for line in post.checks():
        assert line in out
    assert "SBC on 200 held-out simulations: 10 of 10 parameters uniform" in out


def test_the_command_writes_a_draw_that_runs(tmp_path, capsys):
    from memsim import cli

    path = tmp_path / "draw.yaml"
    assert cli.main(["posterior", "videomem", "--draw", "4", "--out", str(path)]) == 0
    assert f"wrote {path}: draw 4 of 2000" in capsys.readouterr().out
    post = memsim.posterior("videomem")
    assert memsim.load_params(path) == post.params(4)
    assert cli.main(["posterior", "--draw", "4"]) == 0  # to standard output, the same file
    assert capsys.readouterr().out == path.read_text()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["posterior", "nope"], "no shipped posterior named 'nope'"),
        (["posterior", "--draw", "2000", "--out", "d.yaml"], "the posterior holds 2000 draws"),
        (["posterior", "--out", "d.yaml"], "give --draw I as well"),
        (["posterior", "--draw", "1", "--out", "."], "is a folder, expected a file"),
    ],
)
def test_the_commands_mistakes_exit_2_and_write_nothing(argv, message, tmp_path, monkeypatch,
                                                        capsys):  # fmt: skip
    from memsim import cli

    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "d.yaml").exists()


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("posterior.parquet", b"garbage", "not readable as Parquet"),
        ("posterior.csv", b'\xff\xfe\x00"a,b\n1', "not readable as CSV"),
        ("inference.json", b"{bad", "inference.json: not readable as JSON"),
    ],
)
def test_a_damaged_file_of_a_posterior_is_one_line(name, text, message, tmp_path, post, capsys):
    """A folder with a damaged file is refused with one line, exit 2, by the command too."""
    from memsim import cli

    post.draws.head(5).to_parquet(tmp_path / "posterior.parquet")
    (tmp_path / "base-params.yaml").write_text((post.folder / "base-params.yaml").read_text())
    (tmp_path / name).write_bytes(text)
    with pytest.raises(UserError, match=message):
        memsim.posterior(tmp_path)
    assert cli.main(["posterior", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
