"""calibration/posterior_counts.py: the posterior restricted to the draws whose simulation
holds the count rows (docs/inference-record.md, "What the counts would take"), small."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from repo_scripts import load_script

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script():
    return load_script("calibration/posterior_counts.py")


def _small_posterior(tmp_path, draws: int = 4):
    """The shipped posterior's first draws, as an inference at scale 0.02 (200 videos)."""
    shipped = ROOT / "calibration" / "videomem-posterior"
    folder = tmp_path / "post"
    folder.mkdir()
    shutil.copy(shipped / "base-params.yaml", folder)
    info = json.loads((shipped / "inference.json").read_text())
    info["scale"] = 0.02
    (folder / "inference.json").write_text(json.dumps(info))
    pd.read_parquet(shipped / "posterior.parquet").iloc[:draws].to_parquet(
        folder / "posterior.parquet"
    )
    return folder


def test_restricted_posterior_runs_and_writes_a_usable_folder(tmp_path, script, real_data, capsys):
    from memsim.study.infer import posterior_draws

    post = _small_posterior(tmp_path)
    out = tmp_path / "restricted"
    code = script.main(
        [
            "--posterior",
            str(post),
            "--draws",
            "4",
            "--fresh",
            "1",
            "--workers",
            "1",
            "--out",
            str(out),
        ]
    )
    first = capsys.readouterr().out.splitlines()[0]
    assert code == 0 and " of 4 draws hold both count rows on their own simulation" in first
    kept = int(first.split()[0])
    assert 0 <= kept <= 4
    assert out.is_dir() == (kept > 0)  # nothing written when no draw is kept

    # the folder it writes is a posterior a study takes (`params: posterior DIR`)
    accepted = pd.read_parquet(post / "posterior.parquet").iloc[[0, 2]]
    script._write_folder(out, post, {"protocol": "videomem", "scale": 0.02}, accepted, 4, "cmd")
    draws = posterior_draws(out, 2)
    assert [d["participants.careless_share"] for d in draws] == list(
        accepted["participants.careless_share"]
    )
    assert (out / "base-params.yaml").read_text() == (post / "base-params.yaml").read_text()
    meta = json.loads((out / "inference.json").read_text())
    assert meta["restricted"]["accepted"] == 2 and meta["restricted"]["draws"] == 4
    assert np.isfinite(pd.read_parquet(out / "posterior.parquet").to_numpy()).all()


def test_bad_draws_is_one_line_and_status_2(tmp_path, script, real_data, capsys):
    post = _small_posterior(tmp_path, draws=3)
    assert script.main(["--posterior", str(post), "--draws", "5"]) == 2
    err = capsys.readouterr().err
    assert "--draws must be 1 to 3" in err and len(err.strip().splitlines()) == 1
