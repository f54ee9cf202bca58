"""Trial-table validation: each kind of bad table is one line on stderr, exit 2, nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tables import SMALL, make_protocol, make_trials

from memsim.cli import main
from memsim.design.trials import COLUMNS, read_trials, validate_trials
from memsim.errors import UserError
from memsim.resources import protocol_path

PROTOCOL = protocol_path("videomem")


@pytest.fixture(scope="module")
def good() -> pd.DataFrame:
    trials, _ = make_trials(n_videos=60, n_participants=12, n_returning=5, design=SMALL, seed=3)
    return trials


@pytest.fixture(scope="module")
def small_protocol(tmp_path_factory) -> Path:
    import yaml

    p = tmp_path_factory.mktemp("proto") / "small.yaml"
    p.write_text(yaml.safe_dump(make_protocol(SMALL, n_videos=60).dump()))
    return p


def _first(df, cond):
    return int(np.flatnonzero(cond(df))[0])


def _set(df, col, row, value):
    out = df.copy()
    out[col] = out[col].astype(object)
    out.loc[row, col] = value
    return out


# (name, mutation of a valid table, words the one-line message must contain)
BAD = [
    ("missing column", lambda d: d.drop(columns=["lag"]), ["lag"]),
    ("two missing columns", lambda d: d.drop(columns=["rt_s", "onset_s"]), ["rt_s", "onset_s"]),
    ("empty table", lambda d: d.iloc[:0], ["empty"]),
    ("text in an id column", lambda d: _set(d, "participant", 4, "abc"), ["participant", "row 4"]),
    ("missing video", lambda d: _set(d, "video", 7, np.nan), ["video", "NaN", "row 7"]),
    ("fractional position", lambda d: _set(d, "position", 2, 1.5), ["position", "non-integer"]),
    ("step overflows int8", lambda d: _set(d, "step", 3, 300), ["step", "int8"]),
    ("step 0", lambda d: _set(d, "step", 3, 0), ["step", "1-based"]),
    ("negative position", lambda d: _set(d, "position", 5, -3), ["position", "negative"]),
    ("unknown role", lambda d: _set(d, "role", 6, "targte"), ["role", "targte"]),
    ("repeat not boolean", lambda d: _set(d, "repeat", 1, "maybe"), ["repeat", "true/false"]),
    (
        "duplicate row",
        lambda d: pd.concat([d, d.iloc[[3]]], ignore_index=True),
        ["duplicate", "(participant, step, position)", f"row {256}"],
    ),
    (
        "lag below -1",
        lambda d: _set(d, "lag", _first(d, lambda x: x["repeat"] & (x["lag"] > 0)), -5),
        ["lag", "below -1"],
    ),
    (
        "lag on a first showing",
        lambda d: _set(d, "lag", _first(d, lambda x: ~x["repeat"] & (x["position"] > 5)), 3),
        ["lag", "not a repeat"],
    ),
    (
        "lag beyond position",
        lambda d: _set(d, "lag", _first(d, lambda x: x["repeat"] & (x["lag"] > 0)), 30000),
        ["lag", "larger than the position"],
    ),
    (
        "rt without response",
        lambda d: _set(d, "rt_s", _first(d, lambda x: ~x["response"]), 1.2),
        ["rt_s", "without a response"],
    ),
    (
        "response without rt",
        lambda d: _set(d, "rt_s", _first(d, lambda x: x["response"]), np.nan),
        ["rt_s", "without a response time"],
    ),
    (
        "negative rt",
        lambda d: _set(d, "rt_s", _first(d, lambda x: x["response"]), -0.5),
        ["rt_s", "negative"],
    ),
    (
        "rt beyond float32",
        lambda d: _set(d, "rt_s", _first(d, lambda x: x["response"]), 1e300),
        ["rt_s", "beyond the range of float32"],
    ),
    ("negative onset", lambda d: _set(d, "onset_s", 9, -1.0), ["onset_s", "negative"]),
    ("infinite onset", lambda d: _set(d, "onset_s", 9, np.inf), ["onset_s", "infinite"]),
    (
        "delay on a first showing",
        lambda d: _set(d, "delay_s", _first(d, lambda x: ~x["repeat"]), 5.0),
        ["delay_s", "first showing"],
    ),
    (
        "negative delay",
        lambda d: _set(d, "delay_s", _first(d, lambda x: x["repeat"]), -2.0),
        ["delay_s", "negative"],
    ),
    (
        "repeat without lag or delay",
        lambda d: _set(
            _set(d, "delay_s", _first(d, lambda x: x["repeat"] & (x["lag"] > 0)), np.nan),
            "lag",
            _first(d, lambda x: x["repeat"] & (x["lag"] > 0)),
            -1,
        ),
        ["delay_s", "neither a lag nor a delay"],
    ),
    ("step beyond the protocol", lambda d: _set(d, "step", 0, 3), ["step 3", "protocol"]),
]


def _run(argv, capsys):
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


@pytest.mark.parametrize("name,mutate,words", BAD, ids=[b[0] for b in BAD])
def test_bad_table_one_line_exit_2_nothing_written(
    name, mutate, words, good, small_protocol, tmp_path, capsys
):
    bad = mutate(good)
    path = tmp_path / "trials.csv"
    bad.to_csv(path, index=False)
    out = tmp_path / "out" / "scores.csv"
    rc, stdout, err = _run(
        ["score", str(path), "--protocol", str(small_protocol), "--out", str(out)], capsys
    )
    assert rc == 2, (name, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert not out.exists()
    assert not out.parent.exists() or not any(out.parent.iterdir())


@pytest.mark.parametrize(
    "kind",
    ["missing", "directory", "binary garbage", "corrupt parquet", "empty file", "text garbage"],
)
def test_bad_files(kind, small_protocol, tmp_path, capsys):
    path = tmp_path / "t.parquet"
    if kind == "directory":
        path.mkdir()
    elif kind == "binary garbage":
        path.write_bytes(bytes(range(256)) * 4)
    elif kind == "corrupt parquet":
        path.write_bytes(b"PAR1" + b"\x00" * 100 + b"PAR1")
    elif kind == "empty file":
        path.write_bytes(b"")
    elif kind == "text garbage":
        path.write_text("hello\nworld\n")
    out = tmp_path / "scores.csv"
    rc, _, err = _run(
        ["score", str(path), "--protocol", str(small_protocol), "--out", str(out)], capsys
    )
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and str(path) in err
    assert not out.exists()


def test_correction_needing_lags_is_a_user_error(good, small_protocol, tmp_path, capsys):
    # a step-1 target test logged with a delay but no lag: the linear correction cannot use it
    row = _first(good, lambda x: x["repeat"] & (x["role"] == "target") & (x["step"] == 1))
    path = tmp_path / "t.parquet"
    _set(good, "lag", row, -1).astype({"lag": "int16"}).to_parquet(path)
    rc, _, err = _run(
        ["score", str(path), "--protocol", str(small_protocol), "--out", str(tmp_path / "s.csv")],
        capsys,
    )
    assert rc == 2 and "needs lags" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s.csv").exists()


def test_good_table_roundtrips_csv_and_parquet(good, tmp_path):
    a = tmp_path / "t.csv"
    b = tmp_path / "t.parquet"
    good.to_csv(a, index=False)
    good.to_parquet(b)
    ra, rb = read_trials(a), read_trials(b)
    for col, dtype in COLUMNS.items():
        assert str(ra[col].dtype) == dtype and str(rb[col].dtype) == dtype
    pd.testing.assert_frame_equal(
        ra[list(COLUMNS)], rb[list(COLUMNS)], check_exact=False, rtol=1e-6
    )


def test_validate_accepts_extra_columns_and_0_1_booleans(good):
    d = good.copy()
    d["site"] = "lab"
    d["repeat"] = d["repeat"].astype(int)
    d["role"] = d["role"].astype(str).str.upper()
    out = validate_trials(d)
    assert out["repeat"].dtype == bool and "site" in out.columns
    assert list(out["role"].cat.categories) == ["target", "filler", "vigilance"]
    assert (out["role"].astype(str) == good["role"].astype(str)).all()


def test_validate_rejects_non_frames():
    with pytest.raises(UserError, match="must be a table"):
        validate_trials([1, 2, 3])


def test_cli_process_exit_status(good, small_protocol, tmp_path):
    path = tmp_path / "t.csv"
    good.drop(columns=["video"]).to_csv(path, index=False)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "memsim.cli",
            "score",
            str(path),
            "--protocol",
            str(small_protocol),
            "--out",
            str(tmp_path / "s.csv"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "video" in r.stderr


def test_csv_dialects_a_spreadsheet_writes(good, tmp_path):
    """A space after each comma reads; a ';'- or tab-separated file names its separator."""
    from memsim.errors import UserError

    plain = tmp_path / "plain.csv"
    good.to_csv(plain, index=False)
    spaced = tmp_path / "spaced.csv"
    spaced.write_text(plain.read_text().replace(",", ", "))
    pd.testing.assert_frame_equal(read_trials(spaced), read_trials(plain))
    for sep, shown in ((";", "';'"), ("\t", "tab")):
        path = tmp_path / "other.csv"
        good.to_csv(path, index=False, sep=sep)
        with pytest.raises(UserError, match=f"the header looks {shown}-separated"):
            read_trials(path)
