"""Hostile input to every command: one line on stderr, exit status 2, and nothing left behind.

The corpus is generated here, not stored: each case builds its input in a fresh folder,
runs the command in this process (``memsim.cli.main``), and checks that the exit status is
2, that stderr is exactly one line that names the problem (no traceback), and that the
folder tree is exactly as before: nothing created, removed or changed. A few inputs that
look hostile but are valid must run correctly instead. Hypothesis then mutates valid
protocols, parameter files, study files and trial tables at random: each mutant either
runs (exit 0) or gives the one line, exit 2, and leaves nothing.
"""

from __future__ import annotations

import copy
import math
import os
import socket
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memsim import cli
from memsim.design.protocol import load_protocol
from memsim.design.trials import COLUMNS
from memsim.errors import UserError
from memsim.sim.params import load_params
from memsim.study.sweep import register_cell

REPO = Path(__file__).resolve().parent.parent
VIDEOMEM = REPO / "protocols" / "videomem.yaml"
PARAMS = REPO / "calibration" / "videomem.yaml"


# --------------------------------------------------------------------------- test cells
def hostile_toy(spec: dict) -> dict:
    """A cell that answers at once, from its seed."""
    return {"a": float(spec["seed"] % 1000) / 1000.0, "participants": 10.0}


def hostile_not_mapping(spec: dict):
    return [1.0, 2.0]


def hostile_text_value(spec: dict) -> dict:
    return {"a": "high"}


for _name, _fn in {
    "hostile-toy": hostile_toy,
    "hostile-not-mapping": hostile_not_mapping,
    "hostile-text-value": hostile_text_value,
}.items():
    register_cell(_name, _fn)


# --------------------------------------------------------------------------- helpers
def snapshot(root: Path) -> dict:
    """Every entry under ``root``: its type, size and modification time (links not followed)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st_ = os.lstat(p)
            out[str(p.relative_to(root))] = (stat.S_IFMT(st_.st_mode), st_.st_size, st_.st_mtime_ns)
    return out


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(argv, root: Path, capsys, needle: str = "", stdout_empty: bool = True) -> str:
    """Exit 2, one line on stderr naming the problem, nothing on stdout before it, and the
    tree under ``root`` unchanged."""
    before = snapshot(root)
    code, out, err = run(argv, capsys)
    assert code == 2, (argv, out[-500:], err[-2000:])
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    assert lines[0].startswith("memsim") and "error:" in lines[0], lines[0]
    assert "Traceback" not in err + out
    assert out == "" or not stdout_empty, (argv, out[-500:])  # nothing printed before it
    assert needle in lines[0], (needle, lines[0])
    assert snapshot(root) == before, "the command left something behind"
    return lines[0]


def videomem() -> dict:
    return load_protocol(VIDEOMEM).dump()


def params() -> dict:
    return load_params(PARAMS).dump()


def dump(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def trials_file(tmp_path_factory) -> tuple[Path, Path]:
    """A small valid trial table (Parquet) and the protocol it was made for."""
    from tables import SMALL, make_protocol, make_trials

    root = tmp_path_factory.mktemp("trials")
    proto = make_protocol(SMALL, n_videos=300)
    df, _ = make_trials(n_videos=300, n_participants=120, design=SMALL, seed=1)
    path = root / "trials.parquet"
    df.to_parquet(path)
    return path, dump(root / "small.yaml", proto.dump())


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A fresh folder to work in (the cwd): every case's input lives in it."""
    root = tmp_path / "work"
    root.mkdir()
    monkeypatch.chdir(root)
    return root


# --------------------------------------------------------------------------- hostile YAML files
def _deep(root: Path) -> Path:
    p = root / "deep.yaml"
    p.write_text("name: " + "[" * 5000 + "]" * 5000 + "\n")
    return p


def _deep_block(root: Path) -> Path:
    p = root / "deep-block.yaml"
    p.write_text("".join("  " * i + f"k{i}:\n" for i in range(200)) + "  " * 200 + "v: 1\n")
    return p


def _alias_bomb(root: Path) -> Path:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]")
    p = root / "bomb.yaml"
    p.write_text("\n".join(lines) + "\nname: x\n")
    return p


def _alias_chain(root: Path) -> Path:
    # far fewer nodes than a bomb, but aliases nested 2,000 deep once expanded
    lines = ["a0: &a0 [1]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, 2000)]
    p = root / "chain.yaml"
    p.write_text("\n".join(lines) + "\n")
    return p


def _recursive(root: Path) -> Path:
    p = root / "recursive.yaml"
    p.write_text("name: &a [*a]\n")
    return p


def _big_int(root: Path) -> Path:
    d = videomem()
    text = yaml.safe_dump(d, sort_keys=False).replace("count: 10000", "count: " + "9" * 5000, 1)
    p = root / "bigint.yaml"
    p.write_text(text)
    return p


def _int64(root: Path) -> Path:
    text = VIDEOMEM.read_text().replace("count: 10000", f"count: {2**64}", 1)
    p = root / "int64.yaml"
    p.write_text(text)
    return p


def _huge(root: Path) -> Path:
    p = root / "huge.yaml"
    p.write_text(VIDEOMEM.read_text() + "#" * (2 << 20) + "\n")
    return p


def _binary(root: Path) -> Path:
    p = root / "binary.yaml"
    p.write_bytes(bytes(range(256)) * 16)
    return p


def _empty(root: Path) -> Path:
    p = root / "empty.yaml"
    p.write_bytes(b"")
    return p


def _fifo(root: Path) -> Path:
    p = root / "fifo.yaml"
    os.mkfifo(p)
    return p


def _dev_zero(root: Path) -> Path:
    return Path("/dev/zero")


def _link_to_dev_zero(root: Path) -> Path:
    p = root / "zero.yaml"
    p.symlink_to("/dev/zero")
    return p


def _directory(root: Path) -> Path:
    p = root / "folder.yaml"
    p.mkdir()
    return p


def _missing(root: Path) -> Path:
    return root / "missing.yaml"


def _duplicate(root: Path) -> Path:
    p = root / "dup.yaml"
    p.write_text(VIDEOMEM.read_text().replace("  count: 10000", "  count: 10000\n  count: 9", 1))
    return p


def _python_tag(root: Path) -> Path:
    p = root / "tag.yaml"
    p.write_text("name: !!python/object/apply:os.system ['touch pwned']\n")
    return p


def _top_level_list(root: Path) -> Path:
    p = root / "list.yaml"
    p.write_text("- a\n- b\n")
    return p


def _nul(root: Path) -> Path:
    p = root / "nul.yaml"
    p.write_bytes(b"name: x\x00\n")
    return p


YAML_FILES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "deep-flow": (_deep, "levels deep"),
    "deep-block": (_deep_block, "levels deep"),
    "alias-bomb": (_alias_bomb, "aliases expand to more than"),
    "alias-chain": (_alias_chain, "aliases nest more than"),
    "recursive-alias": (_recursive, "recursive alias"),
    "5000-digit-int": (_big_int, "integers must fit in 64 bits"),
    "int-2**64": (_int64, "larger than 64 bits"),
    "2-MiB-file": (_huge, "larger than the limit"),
    "binary": (_binary, ""),
    "empty": (_empty, "empty"),
    "fifo": (_fifo, "FIFO"),
    "dev-zero": (_dev_zero, "device"),
    "link-to-dev-zero": (_link_to_dev_zero, "device"),
    "directory": (_directory, "directory"),
    "missing": (_missing, "no such"),
    "duplicate-key": (_duplicate, "given twice"),
    "python-tag": (_python_tag, "not valid YAML"),
    "top-level-list": (_top_level_list, "mapping"),
    "nul-byte": (_nul, ""),
}

# each command that reads a protocol file, as argv given that file
PROTOCOL_COMMANDS: dict[str, Callable[[Path, Path], list]] = {
    "validate": lambda p, t: ["validate", p],
    "simulate": lambda p, t: ["simulate", p, "--out", "o", "--quiet"],
    "run": lambda p, t: ["run", p, "--out", "o", "--quiet"],
    "score": lambda p, t: ["score", t, "--protocol", p, "--out", "s.csv"],
    "analyse": lambda p, t: ["analyse", t, "--protocol", p, "--out", "a"],
    "calibrate": lambda p, t: ["calibrate", p, "--out", "fit.yaml", "--quiet"],
    "fit-report": lambda p, t: ["fit-report", p, "--out", "r.md"],
    "recover": lambda p, t: ["recover", p, "--out", "rec"],
}


@pytest.mark.parametrize("command", list(PROTOCOL_COMMANDS))
@pytest.mark.parametrize("case", list(YAML_FILES))
def test_hostile_protocol_file(case, command, work, trials_file, capsys):
    make, needle = YAML_FILES[case]
    path = make(work)
    assert_refused(PROTOCOL_COMMANDS[command](path, trials_file[0]), work, capsys, needle)
    assert not (work / "pwned").exists()


def _mutated(**changes) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        d = videomem()
        for dotted, value in changes.items():
            node = d
            keys = dotted.split(".")
            for k in keys[:-1]:
                node = node[int(k)] if isinstance(node, list) else node[k]
            node[keys[-1]] = value
        return dump(root / "p.yaml", d)

    return make


PROTOCOL_VALUES = {
    "name-parent": (_mutated(name="../../escape"), "name: must be a name"),
    "name-absolute": (_mutated(name="/tmp/escape"), "name: must be a name"),
    "name-slash": (_mutated(name="a/b"), "name: must be a name"),
    "name-dots": (_mutated(name=".."), "name: must be a name"),
    "name-empty": (_mutated(name=""), "name: must be a name"),
    "name-newline": (_mutated(name="a\nb"), "name: must be a name"),
    "quoted-count": (_mutated(**{"stimuli.count": "10000"}), "without quotes"),
    "nan-duration": (_mutated(**{"stimuli.duration_s": math.nan}), "stimuli.duration_s"),
    "inf-gap": (_mutated(**{"stimuli.gap_s": math.inf}), "stimuli.gap_s"),
    "bool-count": (_mutated(**{"stimuli.count": True}), "stimuli.count"),
    "negative-length": (_mutated(**{"steps.0.length": -180}), "steps.0.length"),
}


@pytest.mark.parametrize("command", ["validate", "run", "score", "calibrate"])
@pytest.mark.parametrize("case", list(PROTOCOL_VALUES))
def test_hostile_protocol_value(case, command, work, trials_file, capsys):
    make, needle = PROTOCOL_VALUES[case]
    assert_refused(PROTOCOL_COMMANDS[command](make(work), trials_file[0]), work, capsys, needle)
    assert not (work.parent / "escape").exists() and not Path("/tmp/escape").exists()


@pytest.mark.parametrize(
    "command, out",
    [("run", "o"), ("run", None), ("simulate", "o"), ("simulate", "new/deeper/o")],
)
def test_a_campaign_too_large_for_memory_is_refused_with_the_estimate(command, out, work, capsys):
    """Refused before any work, and the folders made for the output (runs/, new/deeper/)
    are taken away again."""
    big = _mutated(**{"campaign.stop": {"kind": "participants", "count": 10_000_000}})(work)
    argv = [command, big, "--quiet", *(["--out", out] if out else [])]
    line = assert_refused(argv, work, capsys, "GiB")
    assert "10,000,000 participants" in line and "available" in line


# --------------------------------------------------------------------------- parameter files
def _params(**changes) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        d = params()
        for dotted, value in changes.items():
            node = d
            keys = dotted.split(".")
            for k in keys[:-1]:
                node = node[k]
            if value is KeyError:
                del node[keys[-1]]
            else:
                node[keys[-1]] = value
        return dump(root / "params.yaml", d)

    return make


PARAM_FILES = {
    "nan-rt": (_params(**{"participants.rt.log_sd": math.nan}), "participants.rt.log_sd"),
    "nan-rt-mean": (
        _params(**{"participants.rt.hit_log_mean": math.nan}),
        "participants.rt.hit_log_mean",
    ),
    "inf-spread": (_params(**{"videos.memorability.sd": math.inf}), "videos.memorability.sd"),
    "inf-time-constant": (
        _params(**{"forgetting.shape.time_constant_s": math.inf}),
        "forgetting.shape.time_constant_s",
    ),
    "quoted-number": (_params(**{"participants.lapse_mean": "0.01"}), "without quotes"),
    "bool-number": (_params(**{"participants.ability_sd": True}), "participants.ability_sd"),
    "probability-above-1": (
        _params(**{"participants.lapse_mean": 1.5}),
        "participants.lapse_mean",
    ),
    "negative-sd": (_params(**{"participants.false_alarm.sd": -1.0}), "false_alarm.sd"),
    "huge-mean": (_params(**{"videos.memorability.mean": 1e300}), "videos.memorability.mean"),
    "unknown-field": (_params(**{"participants.colour": 3}), "participants.colour"),
    "missing-field": (_params(**{"participants.rt": KeyError}), "participants.rt"),
    "unknown-law": (_params(**{"forgetting.law": "nonsense"}), "forgetting.law"),
    "alias-bomb": (_alias_bomb, "aliases expand"),
    "deep": (_deep, "levels deep"),
    "5000-digit-int": (_big_int, "64 bits"),
    "fifo": (_fifo, "FIFO"),
    "binary": (_binary, ""),
    "duplicate-key": (
        lambda root: (
            (root / "dup.yaml").write_text(
                PARAMS.read_text().replace("name: videomem", "name: videomem\nname: again", 1)
            )
            and root / "dup.yaml"
        ),
        "given twice",
    ),
}

PARAM_COMMANDS: dict[str, Callable[[Path], list]] = {
    "simulate": lambda p: ["simulate", VIDEOMEM, "--params", p, "--out", "o", "--quiet"],
    "run": lambda p: ["run", VIDEOMEM, "--params", p, "--out", "o", "--quiet"],
    "calibrate": lambda p: ["calibrate", VIDEOMEM, "--start", p, "--out", "f.yaml", "--quiet"],
    "fit-report": lambda p: ["fit-report", VIDEOMEM, "--params", p, "--out", "r.md"],
    "recover": lambda p: ["recover", VIDEOMEM, "--truth", p, "--out", "rec"],
}


@pytest.mark.parametrize("command", list(PARAM_COMMANDS))
@pytest.mark.parametrize("case", list(PARAM_FILES))
def test_hostile_parameter_file(case, command, work, capsys):
    make, needle = PARAM_FILES[case]
    assert_refused(PARAM_COMMANDS[command](make(work)), work, capsys, needle)


# --------------------------------------------------------------------------- study files
STUDY = {
    "name": "hostile",
    "protocol": str(VIDEOMEM),
    "set": {"protocol.campaign.stop": {"kind": "participants", "count": 1000}},  # a budget
    "vary": [{"path": "protocol.campaign.stop.count", "values": [1000, 2000]}],
    "replicates": 1,
    "statistics": ["a"],
    "seed": 3,
    "cell": "hostile-toy",
}


def _study(**changes) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        d = copy.deepcopy(STUDY)
        for k, v in changes.items():
            if v is KeyError:
                d.pop(k)
            else:
                d[k] = v
        return dump(root / "study.yaml", d)

    return make


def _study_text(text: str) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        p = root / "study.yaml"
        base = yaml.safe_dump(STUDY, sort_keys=False)
        p.write_text(base + text)
        return p

    return make


def _study_file_named(name: str, make_target: Callable[[Path], Path] | None = None):
    def make(root: Path) -> Path:
        if make_target is not None:
            make_target(root)
        return _study(protocol=name)(root)

    return make


def _grid(n_axes: int, n_values: int):
    vary = [
        {"path": f"protocol.steps.0.items.{i % 3}.count", "name": f"x{i}", "values": [1] * n_values}
        for i in range(n_axes)
    ]
    return _study(vary=vary)


def _fifo_yaml(root: Path) -> Path:
    os.mkfifo(root / "fifo.yaml")
    return root / "fifo.yaml"


STUDIES = {
    "cell-subprocess": (_study(cell="subprocess:run"), "not a cell name"),
    "cell-os-system": (_study(cell="os:system"), "not a cell name"),
    "cell-memsim-main": (_study(cell="memsim.cli:main"), "not a cell name"),
    "cell-dotted": (_study(cell="memsim.study.sweep.run_cell"), "not a cell name"),
    "cell-unknown": (_study(cell="no-such-cell"), "no cell function named"),
    "cell-not-mapping": (_study(cell="hostile-not-mapping"), "not a mapping"),
    "cell-text-value": (_study(cell="hostile-text-value"), "not a number"),
    "unknown-statistic": (_study(statistics=["nope"]), "gives no 'nope'"),
    "nan-value": (
        _study(vary=[{"path": "protocol.stimuli.gap_s", "values": [1.0, math.nan]}]),
        "NaN or infinite",
    ),
    "inf-set": (_study(set={"protocol.stimuli.gap_s": math.inf}), "NaN or infinite"),
    "alias-bomb-in-values": (
        _study_text(
            "\n".join(
                ['b0: &b0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
                + [f"b{i}: &b{i} [" + ",".join([f"*b{i - 1}"] * 10) + "]" for i in range(1, 9)]
            )
            + "\n"
        ),
        "aliases expand",
    ),
    "grid-10^8": (_grid(4, 100), "100,000,000 runs"),
    "grid-replicates": (_study(replicates=100_000, vary=[]), "more than the limit"),
    "protocol-etc-passwd": (_study_file_named("/etc/passwd"), "must name a YAML file"),
    "protocol-dev-zero": (_study_file_named("/dev/zero"), "must name a YAML file"),
    "protocol-fifo": (_study_file_named("fifo.yaml", _fifo_yaml), "FIFO"),
    "protocol-missing": (_study_file_named("nowhere.yaml"), "no such file"),
    "protocol-is-params": (_study_file_named(str(PARAMS)), "unknown field"),
    "params-text-file": (_study(params="notes.txt"), "must name a YAML file"),
    "params-is-protocol": (_study(params=str(VIDEOMEM)), "unknown field"),
    "axis-file-not-yaml": (
        _study(vary=[{"path": "protocol", "values": ["/etc/hostname"]}]),
        "must name a YAML file",
    ),
    "name-parent": (_study(name="../x"), "name: must be a name"),
    "name-dotted": (_study(name="a.b"), "name: must be a name"),
    "seed-negative": (_study(seed=-1), "seed"),
    "seed-2**64": (_study(seed=2**64), "64 bits"),
    "seed-quoted": (_study(seed="3"), "seed"),
    "replicates-0": (_study(replicates=0), "replicates"),
    "no-statistics": (_study(statistics=[]), "statistics"),
    "unknown-field": (_study(colour=1), "colour"),
    "bad-path": (_study(vary=[{"path": "os.system", "values": [1]}]), "vary"),
}


@pytest.mark.parametrize("case", list(STUDIES))
def test_hostile_study_file(case, work, capsys):
    make, needle = STUDIES[case]
    # what a cell returns is known once it ran: the plan's line comes first
    plan_first = case in ("cell-not-mapping", "cell-text-value", "unknown-statistic")
    argv = ["sweep", make(work), "--out", "o", "--quiet"]
    assert_refused(argv, work, capsys, needle, stdout_empty=not plan_first)


# --------------------------------------------------------------------------- schedulers
class _Peer:
    """A TCP server on localhost that is not a Dask scheduler."""

    def __init__(self, greeting: bytes | None) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.greeting = greeting
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            if self.greeting:
                c.sendall(self.greeting)

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SCHEDULERS = {
    "refused": (lambda: f"tcp://127.0.0.1:{_free_port()}", [], "cannot connect"),
    "not-an-address": (lambda: "tcp://no port here", [], "--scheduler"),
    "unknown-scheme": (lambda: "ucx://127.0.0.1:8786", [], "tcp:// or tls://"),
    "ssh-peer": (b"SSH-2.0-OpenSSH_9.6\r\n", [], "not a Dask scheduler"),
    "junk-peer": (b"\xff" * 64, [], "not a Dask scheduler"),
    "silent-peer": (None, ["--connect-timeout", "0.5"], "no Dask handshake within 0.5 s"),
    "tls-options-on-tcp": (
        lambda: "tcp://127.0.0.1:1",
        ["--tls-ca-file", VIDEOMEM],
        "need a tls:// address",
    ),
    "tls-missing-cert": (
        lambda: "tls://127.0.0.1:1",
        ["--tls-ca-file", "nowhere.pem", "--tls-cert", "x.pem", "--tls-key", "k.pem"],
        "no such TLS file",
    ),
    "tls-not-a-certificate": (
        lambda: "tls://127.0.0.1:1",
        ["--tls-ca-file", VIDEOMEM, "--tls-cert", VIDEOMEM, "--tls-key", VIDEOMEM],
        "TLS settings do not load",
    ),
}


@pytest.mark.parametrize("case", list(SCHEDULERS))
def test_hostile_scheduler(case, work, capsys):
    pytest.importorskip("distributed")
    what, extra, needle = SCHEDULERS[case]
    peer = None
    if callable(what):
        address = what()
    else:
        peer = _Peer(what)
        address = f"tcp://127.0.0.1:{peer.port}"
    study = _study()(work)
    try:
        argv = ["sweep", study, "--out", "o", "--quiet", "--scheduler", address, *extra]
        assert_refused(argv, work, capsys, needle)
    finally:
        if peer is not None:
            peer.close()


# --------------------------------------------------------------------------- trial tables
def _table(change: Callable[[pd.DataFrame], pd.DataFrame], suffix: str = ".csv"):
    def make(root: Path, source: Path) -> Path:
        df = change(pd.read_parquet(source))
        p = root / f"t{suffix}"
        if suffix == ".csv":
            df.to_csv(p, index=False)
        else:
            df.to_parquet(p)
        return p

    return make


def _with(col: str, value) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        df[col] = df[col].astype(object)
        df.loc[df.index[3], col] = value
        return df

    return change


def _raw(data: bytes) -> Callable[[Path, Path], Path]:
    def make(root: Path, source: Path) -> Path:
        p = root / "t.csv"
        p.write_bytes(data)
        return p

    return make


def _special(kind: str) -> Callable[[Path, Path], Path]:
    def make(root: Path, source: Path) -> Path:
        if kind == "fifo":
            os.mkfifo(root / "t.csv")
            return root / "t.csv"
        if kind == "dir":
            (root / "t.csv").mkdir()
            return root / "t.csv"
        return Path("/dev/zero")

    return make


TABLES = {
    "missing-column": (_table(lambda d: d.drop(columns=["response"])), "response"),
    "nan-participant": (_table(_with("participant", math.nan)), "participant"),
    "text-in-video": (_table(_with("video", "ten")), "video"),
    "huge-int": (_table(_with("participant", "9" * 5000)), "participant"),
    "inf-onset": (_table(_with("onset_s", math.inf)), "onset_s"),
    "bad-role": (_table(_with("role", "boss")), "role"),
    "bad-bool": (_table(_with("response", "maybe")), "response"),
    "duplicate-rows": (
        _table(lambda d: pd.concat([d, d.iloc[:5]], ignore_index=True)),
        "",
    ),
    "no-rows": (_table(lambda d: d.iloc[:0]), "empty"),
    "parquet-missing-column": (_table(lambda d: d.drop(columns=["step"]), ".parquet"), "step"),
    "binary": (_raw(bytes(range(256)) * 8), ""),
    "empty-file": (_raw(b""), "empty"),
    "fifo": (_special("fifo"), "FIFO"),
    "directory": (_special("dir"), "directory"),
    "dev-zero": (_special("zero"), "device"),
}


@pytest.mark.parametrize("command", ["score", "analyse"])
@pytest.mark.parametrize("case", list(TABLES))
def test_hostile_trial_table(case, command, work, trials_file, capsys):
    make, needle = TABLES[case]
    table = make(work, trials_file[0])
    protocol = trials_file[1]
    argv = (
        ["score", table, "--protocol", protocol, "--out", "s.csv"]
        if command == "score"
        else ["analyse", table, "--protocol", protocol, "--out", "a", "--splits", "3"]
    )
    assert_refused(argv, work, capsys, needle)


# --------------------------------------------------------------------------- numbers on the line
ARGUMENTS = {
    "run-seed-negative": (["run", "videomem", "--seed", "-1"], "seed"),
    "run-seed-2**63": (["run", "videomem", "--seed", str(2**63)], "seed"),
    "run-seed-5000-digits": (["run", "videomem", "--seed", "7" * 5000], "64 bits"),
    "run-scale-nan": (["run", "videomem", "--scale", "nan"], "finite"),
    "run-scale-inf": (["run", "videomem", "--scale", "inf"], "finite"),
    "run-scale-0": (["run", "videomem", "--scale", "0"], "(0, 1]"),
    "run-scale-2": (["run", "videomem", "--scale", "2"], "(0, 1]"),
    "simulate-seed-negative": (["simulate", "videomem", "--out", "o", "--seed", "-5"], "seed"),
    "simulate-scale-text": (["simulate", "videomem", "--out", "o", "--scale", "big"], "number"),
    "simulate-stimuli-seed-negative": (
        ["simulate", "videomem", "--out", "o", "--stimuli-seed", "-1"],
        "seed",
    ),
    "analyse-splits-0": (
        ["analyse", "t.parquet", "--protocol", "p.yaml", "--splits", "0"],
        "at least 2",
    ),
    "analyse-splits-10^8": (
        ["analyse", "{trials}", "--protocol", "{protocol}", "--splits", "100000000"],
        "more than the limit of 1,000",
    ),
    "analyse-seed-2**64": (["analyse", "t", "--protocol", "p", "--seed", str(2**64)], "seed"),
    "calibrate-seeds-negative": (["calibrate", "videomem", "--out", "f.yaml", "--seeds", "-1"], ""),
    "calibrate-seeds-2**64": (
        ["calibrate", "videomem", "--out", "f.yaml", "--seeds", "1", str(2**64)],
        "seed",
    ),
    "calibrate-budget-0": (["calibrate", "videomem", "--out", "f.yaml", "--budget", "0"], ""),
    "calibrate-workers-0": (["calibrate", "videomem", "--out", "f.yaml", "--workers", "0"], ""),
    "calibrate-scale-nan": (["calibrate", "videomem", "--out", "f.yaml", "--scale", "nan"], ""),
    "calibrate-polish-negative": (
        ["calibrate", "videomem", "--out", "f.yaml", "--polish", "-1"],
        "",
    ),
    "calibrate-polish-seeds-negative": (
        ["calibrate", "videomem", "--out", "f.yaml", "--polish", "1", "--polish-seeds", "-2"],
        "seed",
    ),
    "compat-repeats-0": (["compat", "--repeats", "0"], "at least 2"),
    "compat-seed-negative": (["compat", "--seed", "-1"], "seed"),
    "fit-report-seeds-0": (["fit-report", "videomem", "--out", "r.md", "--seeds", "0"], ""),
    "fit-report-scale-0": (["fit-report", "videomem", "--out", "r.md", "--scale", "0"], ""),
    "fit-report-workers-0": (["fit-report", "videomem", "--out", "r.md", "--workers", "0"], ""),
    "fit-report-stimuli-seed-negative": (
        ["fit-report", "videomem", "--out", "r.md", "--stimuli-seed", "-1"],
        "seed",
    ),
    "recover-scale-2": (["recover", "videomem", "--out", "d", "--scale", "2"], ""),
    "recover-perturb-nan": (["recover", "videomem", "--out", "d", "--perturb", "nan"], ""),
    "recover-budget-0": (["recover", "videomem", "--out", "d", "--budget", "0"], ""),
    "sweep-workers-0": (["sweep", "s.yaml", "--out", "o", "--workers", "0"], ""),
    "sweep-timeout-nan": (["sweep", "s.yaml", "--out", "o", "--connect-timeout", "nan"], ""),
    "predict-folds-0": (["predict", "cv", "--folds", "0"], ""),
    "predict-members-0": (["predict", "train", "--out", "m.pt", "--members", "0"], ""),
    "predict-seed-negative": (["predict", "cv", "--seed", "-1"], "seed"),
    "predict-epochs-0": (["predict", "cv", "--epochs", "0"], ""),
    "unknown-command": (["frobnicate"], "invalid choice"),
    "unknown-option": (["run", "videomem", "--colour", "red"], "unrecognized"),
}


@pytest.mark.parametrize("case", list(ARGUMENTS))
def test_hostile_argument(case, work, trials_file, capsys):
    argv, needle = ARGUMENTS[case]
    names = {"trials": trials_file[0], "protocol": trials_file[1]}
    argv = [a.format(**names) if a.startswith("{") else a for a in argv]
    assert_refused(argv, work, capsys, needle)


# --------------------------------------------------------------------------- output paths
# each command that writes, as argv given its output path (inputs need not exist: the output
# is refused before anything is read)
OUTPUTS: dict[str, tuple[str, Callable[[str], list]]] = {
    "simulate": ("dir", lambda o: ["simulate", "videomem", "--out", o, "--quiet"]),
    "run": ("dir", lambda o: ["run", "videomem", "--out", o, "--quiet"]),
    "score": ("file", lambda o: ["score", "t.csv", "--protocol", "p.yaml", "--out", o]),
    "score-participants": (
        "file",
        lambda o: ["score", "t.csv", "--protocol", "p", "--out", "s.csv", "--participants", o],
    ),
    "analyse": ("dir", lambda o: ["analyse", "t.csv", "--protocol", "p.yaml", "--out", o]),
    "scores-json": ("file", lambda o: ["scores", "--json", o]),
    "calibrate": ("file", lambda o: ["calibrate", "videomem", "--out", o, "--quiet"]),
    "fit-report": ("file", lambda o: ["fit-report", "videomem", "--out", o]),
    "recover": ("dir", lambda o: ["recover", "videomem", "--out", o]),
    "compat": ("file", lambda o: ["compat", "--out", o]),
    "sweep": ("dir", lambda o: ["sweep", "s.yaml", "--out", o, "--quiet"]),
    "predict-cv": ("dir", lambda o: ["predict", "cv", "--out", o, "--quiet"]),
    "predict-train": ("file", lambda o: ["predict", "train", "--out", o, "--quiet"]),
    "predict-apply": (
        "file",
        lambda o: ["predict", "apply", "--model", "m.pt", "--videos", "v.txt", "--out", o],
    ),
}


def _hazard(kind: str, root: Path) -> tuple[str, str]:
    """An output path of this kind of hazard, and what the one line must say."""
    if kind == "link-to-file":
        (root / "target.txt").write_text("keep me\n")
        (root / "out").symlink_to(root / "target.txt")
        return "out", "symbolic link"
    if kind == "link-to-dir":
        (root / "target").mkdir()
        (root / "out").symlink_to(root / "target")
        return "out", "symbolic link"
    if kind == "dangling-link":
        (root / "out").symlink_to(root / "nowhere")
        return "out", "symbolic link"
    if kind == "fifo":
        os.mkfifo(root / "out")
        return "out", "FIFO"
    if kind == "device":
        return "/dev/null", "character device"
    if kind == "under-a-file":
        (root / "file.txt").write_text("x\n")
        return "file.txt/out", "is a file"
    if kind == "file-for-folder":
        (root / "out").write_text("x\n")
        return "out", "expected a folder"
    if kind == "folder-for-file":
        (root / "out").mkdir()
        return "out", "expected a file"
    raise AssertionError(kind)


HAZARDS = [
    "link-to-file",
    "link-to-dir",
    "dangling-link",
    "fifo",
    "device",
    "under-a-file",
    "kind-mismatch",
]


@pytest.mark.parametrize("hazard", HAZARDS)
@pytest.mark.parametrize("command", list(OUTPUTS))
def test_hostile_output_path(command, hazard, work, capsys):
    kind, argv = OUTPUTS[command]
    if hazard == "kind-mismatch":
        hazard = "file-for-folder" if kind == "dir" else "folder-for-file"
    out, needle = _hazard(hazard, work)
    assert_refused(argv(out), work, capsys, needle)
    if hazard == "link-to-file":
        assert (work / "target.txt").read_text() == "keep me\n"


@pytest.mark.parametrize("command", ["run", "simulate"])
def test_a_run_never_replaces_a_folder_holding_other_files(command, work, capsys):
    (work / "mine").mkdir()
    (work / "mine" / "thesis.tex").write_text("years of work\n")
    line = assert_refused(
        [command, "videomem", "--out", "mine", "--quiet"], work, capsys, "thesis.tex"
    )
    assert "no memsim run writes" in line


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["score", "t.csv", "--protocol", "small.yaml", "--out", "t.csv"], "given as trials"),
        (["score", "t.csv", "--protocol", "small.yaml", "--out", "./small.yaml"], "as protocol"),
        (
            [
                "score",
                "t.csv",
                "--protocol",
                "small.yaml",
                "--out",
                "s.csv",
                "--participants",
                "s.csv",
            ],
            "--out and --participants name the same file",
        ),  # fmt: skip
        (["scores", "t.csv", "--json", "t.csv"], "given as scores"),
        (["calibrate", "small.yaml", "--out", "small.yaml"], "given as protocol"),
        (["fit-report", "small.yaml", "--out", "small.yaml"], "given as protocol"),
    ],
)
def test_an_output_that_is_an_input_is_refused(argv, needle, work, capsys, trials_file):
    """Writing it would destroy the input (a trial log replaced by its scores, a protocol by
    a parameter file)."""
    import shutil

    import pandas as pd

    trials, proto = trials_file
    pd.read_parquet(trials).to_csv(work / "t.csv", index=False)
    shutil.copy(proto, work / "small.yaml")
    assert_refused(argv, work, capsys, needle)


def test_damaged_sweep_files_are_named_not_tracebacks(work, capsys):
    """A shard or results file damaged after it was written (shards are written whole)."""
    study = _study()(work)
    code, _, _ = run(["sweep", study, "--out", "o", "--quiet"], capsys)
    assert code == 0
    results = work / "o" / "results.parquet"
    results.write_bytes(results.read_bytes()[:100])
    assert_refused(["report", "o"], work, capsys, "not readable as Parquet")
    pd.DataFrame({"video": [1]}).to_parquet(results)
    assert_refused(["report", "o"], work, capsys, "not a sweep's results")
    results.unlink()
    shard = sorted((work / "o" / "shards").glob("*.parquet"))[0]
    whole = shard.read_bytes()
    shard.write_bytes(whole[:50])  # a resumed sweep runs it again: the same bytes
    code, out, _ = run(["sweep", study, "--out", "o", "--quiet"], capsys)
    assert code == 0 and "1 already done" in out and shard.read_bytes() == whole


@pytest.mark.parametrize("count", ["-1", "0", "1"])
def test_splits_and_repeats_say_the_same_minimum_whatever_is_given(count, work, capsys):
    for argv in (["analyse", "t.parquet", "--splits", count], ["compat", "--repeats", count]):
        assert_refused([*argv, "--out", "o"], work, capsys, f"{count} must be at least 2")


@pytest.mark.parametrize("command", [["simulate", "videomem"], ["compat"], ["recover", "videomem"]])
def test_a_dash_is_not_an_output_path(command, work, capsys):
    """'-' reads as stdout to a shell user; memsim writes files, so it is refused, not made."""
    assert_refused([*command, "--out", "-"], work, capsys, "'-' would be a file named '-'")


def test_a_run_folder_with_its_own_svg_and_pdf_figures_may_be_replaced(tmp_path):
    """``--figure-formats svg,pdf`` writes them: a second run into the folder replaces it."""
    from memsim.study.run import run_folder_problem

    for name in ("scores.csv", "fig3_lag.png", "fig3_lag.svg", "scores_real_vs_sim.pdf"):
        (tmp_path / name).write_text("x")
    assert run_folder_problem(tmp_path) is None
    (tmp_path / "fig3_lag.eps").write_text("x")
    assert "fig3_lag.eps" in run_folder_problem(tmp_path)


# --------------------------------------------------------------------------- calibration logs
LOGS = {
    "exists-without-resume": (b'{"header": {}}\n', [], "--resume continues that fit"),
    "binary-with-resume": (bytes(range(256)) * 8, ["--resume"], "not a memsim evaluation log"),
    "text-with-resume": (b"hello\nworld\n", ["--resume"], "not a memsim evaluation log"),
    "json-not-header": (b'{"x": [1]}\n', ["--resume"], "first line is not a memsim header"),
    "damaged-middle": (
        b'{"header": {}}\n{"x": 1}\n{"x": [0.1], "residuals": [], "distance": 1}\n',
        ["--resume"],
        "line 2 is not an evaluated candidate",
    ),
    "huge-int": (b'{"header": {}}\n{"x": [' + b"9" * 5000 + b"]}\nnext\n", ["--resume"], "line"),
    "resume-and-force": (b'{"header": {}}\n', ["--resume", "--force"], "give one of them"),
}


@pytest.mark.parametrize("case", list(LOGS))
def test_hostile_calibration_log(case, work, capsys):
    data, extra, needle = LOGS[case]
    (work / "fit.yaml.evals.jsonl").write_bytes(data)
    argv = ["calibrate", VIDEOMEM, "--out", "fit.yaml", "--quiet", *extra]
    assert_refused(argv, work, capsys, needle)


# --------------------------------------------------------------------------- other inputs
def test_other_inputs(work, trials_file, capsys):
    """Scores files, sweep folders, model files and video lists of the wrong kind."""
    (work / "notes.txt").write_text("not a sweep\n")
    (work / "empty").mkdir()
    (work / "model.pt").write_bytes(b"not a model")
    (work / "bin.csv").write_bytes(bytes(range(256)) * 4)
    os.mkfifo(work / "videos.txt")
    cases = [
        (["scores", "/dev/zero"], "device"),
        (["scores", "bin.csv"], "UTF-8"),
        (["scores", "empty"], "directory"),
        (["report", "empty"], "sweep"),
        (["report", "notes.txt"], "sweep"),
        (
            ["predict", "apply", "--model", "model.pt", "--videos", "notes.txt", "--out", "p.csv"],
            "",
        ),
        (["predict", "apply", "--model", "m.pt", "--videos", "videos.txt", "--out", "p.csv"], ""),
        (["analyse", trials_file[0], "--protocol", trials_file[1], "--truth", "/dev/zero"], ""),
    ]
    for argv, needle in cases:
        assert_refused(argv, work, capsys, needle)


def test_the_corpus_has_at_least_150_hostile_inputs():
    n = (
        len(YAML_FILES) * len(PROTOCOL_COMMANDS)
        + len(PROTOCOL_VALUES) * 4
        + 4
        + len(PARAM_FILES) * len(PARAM_COMMANDS)
        + len(STUDIES)
        + len(SCHEDULERS)
        + len(TABLES) * 2
        + len(ARGUMENTS)
        + len(OUTPUTS) * len(HAZARDS)
        + 2
        + len(LOGS)
        + 8
    )
    assert n >= 150, n


def test_every_output_argument_is_in_the_boundarys_table():
    """The CLI boundary checks outputs by kind (file or folder): every command's output
    argument must be known to it."""
    import argparse

    def walk(parser, prefix=()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, prefix + (name,))
            elif action.dest in cli.OUTPUT_ARGS and prefix:
                yield " ".join(prefix), action.dest

    for command, dest in walk(cli.build_parser()):
        assert dest in cli.OUTPUT_KINDS.get(command, {}), (command, dest)


# --------------------------------------------------------------------------- no escape
def test_nothing_is_written_outside_out(tmp_path, monkeypatch, capsys):
    """A valid run writes only its --out (and the default runs/<name>); hostile names are
    refused before anything is written."""
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    for name in ("../../escape", "/tmp/escape-memsim", "..", "x/../../y"):
        p = _mutated(name=name)(work)
        assert_refused(["run", p, "--quiet", "--scale", "0.02"], tmp_path, capsys, "name")
        assert_refused(["simulate", p, "--out", "o", "--scale", "0.02"], tmp_path, capsys, "name")
        p.unlink()
    p = _mutated(name="Mixed_Case-1")(work)
    before = snapshot(tmp_path)
    code, out, err = run(
        ["run", p, "--params", "videomem", "--quiet", "--scale", "0.02", "--no-figures"]
        + ["--seed", "5"],
        capsys,
    )
    assert code == 0, err
    new = set(snapshot(tmp_path)) - set(before)
    assert new and all(n.startswith("a/b/runs") for n in new), sorted(new)
    assert (work / "runs" / "Mixed_Case-1" / "trials.parquet").is_file()
    assert not Path("/tmp/escape-memsim").exists()


def test_files_honour_the_umask(work, trials_file, capsys):
    old = os.umask(0o027)
    try:
        code, _, err = run(
            ["score", trials_file[0], "--protocol", trials_file[1], "--out", "s.csv"], capsys
        )
    finally:
        os.umask(old)
    assert code == 0, err
    assert stat.S_IMODE((work / "s.csv").stat().st_mode) == 0o640
    old = os.umask(0o002)
    try:
        code, _, err = run(
            ["score", trials_file[0], "--protocol", trials_file[1], "--out", "t.csv"], capsys
        )
    finally:
        os.umask(old)
    assert code == 0, err
    assert stat.S_IMODE((work / "t.csv").stat().st_mode) == 0o664


def test_a_failure_after_writing_removes_what_the_command_created(
    work, trials_file, capsys, monkeypatch
):
    """`score` writes new/s.csv, then the disk fills up while it writes --participants: one
    line naming the path, and the folder and scores file it had created are removed too."""
    import errno

    real = pd.DataFrame.to_csv
    calls = []

    def to_csv(self, path, *a, **k):
        calls.append(path)
        if len(calls) == 2:  # the participants table: the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(self, path, *a, **k)

    monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv)
    argv = ["score", trials_file[0], "--protocol", trials_file[1], "--out", "new/s.csv"]
    line = assert_refused(
        [*argv, "--participants", "p.csv"], work, capsys, "No space left on device"
    )
    assert line.endswith("error: p.csv: cannot write: No space left on device")
    assert len(calls) == 2


def test_an_os_error_while_writing_is_one_line_and_removes_the_partial_output(work, capsys):
    """A disk that fills up mid-write (here: a file-size limit the kernel enforces with EFBIG)
    is one line naming the path, exit 2, and the partial outputs are removed."""
    import resource
    import subprocess
    import sys

    before = snapshot(work)
    # 1 MB: above any file of numba's cache, below the trial table of this run (1.6 MB)
    limit = "import resource; resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))"
    code = f"{limit}; import sys; from memsim.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.run(
        [sys.executable, "-c", code, "simulate", "videomem", "--out", "o", "--scale", "0.05"]
        + ["--quiet"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resource.RLIMIT_FSIZE  # the platform has the limit
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "File too large" in lines[0], proc.stderr
    assert lines[0].startswith("memsim simulate: error: o/trials.parquet: cannot write:")
    assert snapshot(work) == before


# --------------------------------------------------------------------------- mutation testing
HOSTILE_VALUES = st.sampled_from(
    [
        None,
        "",
        "40",
        "0.5",
        True,
        -1,
        0,
        1,
        10**12,
        2**70,
        -(2**70),
        1e308,
        math.nan,
        math.inf,
        -math.inf,
        [],
        {},
        [1, 2],
        {"kind": "nonsense"},
        "../../x",
        "/etc/passwd",
        "a" * 300,
        [[[[[[1]]]]]],
    ]
)


def _paths(tree, prefix=()):
    """Every (path to a value) in a nested mapping/list."""
    yield prefix
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from _paths(v, prefix + (i,))


@st.composite
def mutants(draw, base: dict):
    """``base`` with 1-3 random edits: a value replaced, a key removed or a key added."""
    tree = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(tree) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = tree
        for k in path[:-1]:
            parent = parent[k]
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        value = copy.deepcopy(draw(HOSTILE_VALUES))  # never the same list twice in the tree
        if action == "replace":
            parent[path[-1]] = value
        elif action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["colour", "count", "kind", "name"]))] = value
    return tree


MUTATION = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _exit_0_or_one_line(argv, root: Path, capsys) -> int:
    before = snapshot(root)
    code, out, err = run(argv, capsys)
    assert code in (0, 2), (code, err[-2000:])
    assert "Traceback" not in err + out
    if code == 2:
        lines = err.strip("\n").split("\n")
        assert len(lines) == 1 and "error:" in lines[0], err
        assert snapshot(root) == before
    return code


def _fresh(root: Path) -> Path:
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(dir=root))
    shutil.rmtree(d)
    d.mkdir()
    return d


@MUTATION
@given(data=st.data())
def test_mutated_protocols(data, work, capsys):
    d = _fresh(work)
    tree = data.draw(mutants(videomem()))
    path = d / "p.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    _exit_0_or_one_line(["validate", path], d, capsys)


@pytest.fixture
def quick_campaign(monkeypatch):
    """The registry's ``campaign`` cell answers at once (a mutant may drop its ``cell``)."""
    from memsim.study import sweep

    monkeypatch.setitem(sweep.CELLS, "campaign", hostile_toy)


@MUTATION
@given(data=st.data())
def test_mutated_parameter_files(data, work, quick_campaign, capsys):
    """Through a sweep whose cell answers at once: every cell's parameters are validated."""
    d = _fresh(work)
    tree = data.draw(mutants(params()))
    (d / "params.yaml").write_text(yaml.safe_dump(tree, sort_keys=False))
    study = dump(d / "s.yaml", {**STUDY, "params": "params.yaml"})
    _exit_0_or_one_line(["sweep", study, "--out", d / "o", "--quiet"], d, capsys)


@MUTATION
@given(data=st.data())
def test_mutated_study_files(data, work, quick_campaign, capsys):
    d = _fresh(work)
    base = {**STUDY, "set": {**STUDY["set"], "protocol.stimuli.gap_s": 1.0}, "figures": []}
    tree = data.draw(mutants(base))
    path = d / "s.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    _exit_0_or_one_line(["sweep", path, "--out", d / "o", "--quiet"], d, capsys)


TABLE_EDITS = st.sampled_from(
    [
        ("drop", None),
        ("nan", None),
        ("text", "x"),
        ("value", -1),
        ("value", 2**40),
        ("value", 1e300),
        ("value", math.inf),
        ("duplicate", None),
        ("shuffle", None),
    ]
)


@MUTATION
@given(
    column=st.sampled_from(list(COLUMNS)),
    edit=TABLE_EDITS,
    row=st.integers(0, 500),
    fmt=st.sampled_from([".csv", ".parquet"]),
)
def test_mutated_trial_tables(column, edit, row, fmt, work, trials_file, capsys):
    d = _fresh(work)
    df = pd.read_parquet(trials_file[0])
    kind, value = edit
    if kind == "drop":
        df = df.drop(columns=[column])
    elif kind == "duplicate":
        df = pd.concat([df, df.iloc[[row]]], ignore_index=True)
    elif kind == "shuffle":
        df = df.sample(frac=1.0, random_state=row).reset_index(drop=True)
    else:
        df[column] = df[column].astype(object)
        df.loc[df.index[row], column] = np.nan if kind == "nan" else value
    path = d / f"t{fmt}"
    try:
        df.to_csv(path, index=False) if fmt == ".csv" else df.to_parquet(path)
    except Exception:  # noqa: BLE001 - pyarrow cannot store this mix: try it as CSV
        path = d / "t.csv"
        df.to_csv(path, index=False)
    _exit_0_or_one_line(
        ["score", path, "--protocol", trials_file[1], "--out", d / "s.csv"], d, capsys
    )


def test_library_refuses_the_same_inputs_with_user_error(tmp_path):
    """The checks live in the library, not only in the CLI: loaders raise UserError."""
    from memsim.io import load_yaml_mapping

    for make, _ in (YAML_FILES["alias-bomb"], YAML_FILES["deep-flow"], YAML_FILES["fifo"]):
        with pytest.raises(UserError):
            load_yaml_mapping(make(tmp_path))


def test_resumable_state_is_kept_when_a_later_cell_fails(work, capsys):
    """A sweep into folders it creates, whose fourth cell fails: one line, exit 2, and the
    sweep folder (with its three finished runs) and the folders around it are kept."""
    import test_sweep

    study = test_sweep._study(work, "fails", replicates=1, cell="failing_cell")
    out = work / "new" / "deeper" / "out"
    code, _, err = run(["sweep", study, "--out", out, "--quiet"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "3 finished runs are kept" in err
    assert len(list((out / "shards").glob("*.parquet"))) == 3


def test_a_report_folder_that_is_a_link_is_refused(work, capsys):
    """`memsim report DIR` writes DIR/report/: a link there would send it elsewhere."""
    study = _study()(work)
    assert run(["sweep", study, "--out", "o", "--quiet"], capsys)[0] == 0
    (work / "elsewhere").mkdir()
    (work / "o" / "report").symlink_to(work / "elsewhere")
    assert_refused(["report", "o"], work, capsys, "symbolic link")
    assert not any((work / "elsewhere").iterdir())


def test_an_unwritable_output_is_named_as_given_not_by_its_temporary(work, capsys):
    """The file is written beside its target under a temporary name, then renamed: an error
    names the target the user gave."""
    from memsim.io import target_of

    assert target_of("/proc/.s.csv.4754-176b0248.tmp") == "/proc/s.csv"
    assert target_of("a/.sim.12-0123abcd.new") == "a/sim" and target_of("a/b.csv") == "a/b.csv"
    line = assert_refused(["simulate", "videomem", "--out", "/proc/sim", "--quiet"], work, capsys)
    assert "/proc/sim: cannot write:" in line and ".new" not in line
    # the summary `scores` prints comes after its JSON is written: nothing printed before
    scores = pd.DataFrame({"video": [1, 2, 3], "short-term_memorability": [0.5, 0.6, 0.7]})
    scores["nb_short-term_annotations"] = [30, 31, 32]
    scores.to_csv(work / "s.csv", index=False)
    line = assert_refused(["scores", "s.csv", "--json", "/proc/x.json"], work, capsys)
    assert "/proc/x.json: cannot write:" in line
