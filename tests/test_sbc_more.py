"""calibration/sbc_more.py: a posterior's rank tests on more held-out simulations
(docs/inference.md, "On more held-out simulations")."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from repo_scripts import load_script

ROOT = Path(__file__).resolve().parents[1]
MEMENTO = ROOT / "calibration" / "memento10k-posterior"


@pytest.fixture(scope="module")
def script():
    pytest.importorskip("sbi")
    return load_script("calibration/sbc_more.py")


def test_the_checks_own_stream_gives_the_checks_own_ranks(tmp_path, script, real_data, capsys):
    # seed 0's held-out stream is the one `memsim infer` checked the posterior on: made again,
    # its first 200 simulations give the shipped sbc.csv, parameter for parameter
    code = script.main(
        ["--posterior", str(MEMENTO), "--store", str(tmp_path / "held"), "--seed", "0",
         "--heldout", "200", "--workers", "1"]
    )  # fmt: skip
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert (
        out[0]
        == "200 held-out simulations of seed 0 (200 new, 0 unusable), 200 posterior draws each"
    )
    rows = list(csv.DictReader((MEMENTO / "sbc.csv").open()))
    low = min(rows, key=lambda r: float(r["p"]))
    uniform = sum(r["uniform_at_1pct"] == "True" for r in rows)
    line = next(s for s in out if s.startswith("  held-out 1-200: "))
    assert line.startswith(
        f"  held-out 1-200: {uniform} of {len(rows)} uniform at 1 % (lowest p "
        f"{float(low['p']):.4f}, {low['parameter']})"
    )
    assert not any(s.startswith("  all ") for s in out)  # one set: nothing pooled
    # a rerun reuses the stored simulations
    assert script.main(
        ["--posterior", str(MEMENTO), "--store", str(tmp_path / "held"), "--seed", "0",
         "--heldout", "200", "--workers", "1"]
    ) == 0  # fmt: skip
    assert "(0 new, 0 unusable)" in capsys.readouterr().out


def test_too_few_held_out_simulations_is_one_line_and_status_2(tmp_path, script, capsys):
    assert script.main(["--store", str(tmp_path / "s"), "--heldout", "50"]) == 2
    err = capsys.readouterr().err
    assert "--heldout must be at least 200" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()
