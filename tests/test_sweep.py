"""Sweep engine: grid resolution, validation before running, determinism across workers,
resume after kill -9, a real Dask scale-out, and the report.

Most tests use :func:`toy_cell`, a cheap deterministic cell function defined here and
registered as the cell ``toy_cell``: in this process by :func:`register_cell`, and in the
CLI subprocesses through a ``memsim.cells`` entry point of a throw-away distribution
(:func:`plugin_path`), as a third-party package would; spawned workers and Dask workers
receive it by reference (``test_sweep.toy_cell``). So the engine is tested without the cost
of simulating.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from memsim.cli import main
from memsim.errors import UserError
from memsim.resources import protocol_path
from memsim.study.sweep import (
    cell_seeds,
    load_study,
    minutes_per_participant,
    register_cell,
    resolve_study,
    run_sweep,
)

TESTS = Path(__file__).resolve().parent
VIDEOMEM = protocol_path("videomem")


# --------------------------------------------------------------------------- cell functions
def toy_cell(spec: dict) -> dict:
    """A cheap cell: numbers that depend on the cell's protocol and on its seed only."""
    delay = float(os.environ.get("MEMSIM_TEST_CELL_DELAY", "0"))
    if delay:
        time.sleep(delay)
    rng = np.random.default_rng(spec["seed"])
    p = spec["protocol"]
    lo, hi = p["steps"][0]["items"][0]["repeat_lag"]
    n = p["campaign"]["stop"]["count"]
    out = {
        "consistency_st": 0.6 - 0.001 * (hi - lo) + 1e-5 * n + 0.02 * rng.standard_normal(),
        "annotations_st": n * 40 / p["stimuli"]["count"] + rng.random(),
        "participants": float(n),
    }
    if len(p["steps"]) > 1:
        out["consistency_lt"] = 0.3 + 0.02 * rng.standard_normal()
    return out


def exploding_cell(spec: dict) -> dict:  # pragma: no cover  (must never be called)
    raise AssertionError("a cell ran although the study is invalid")


TEST_CELLS = {"toy_cell": toy_cell, "exploding_cell": exploding_cell}
for _name, _fn in TEST_CELLS.items():
    register_cell(_name, _fn)


def plugin_path(root: Path) -> Path:
    """A folder holding a distribution whose ``memsim.cells`` entry points name the test cells.

    On a process's path (PYTHONPATH), ``importlib.metadata`` finds it as an installed
    package would be found: the documented way for a package to register cells.
    """
    dist = root / "memsim_test_cells-0.0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: memsim-test-cells\nVersion: 0.0\n")
    lines = [f"{name} = test_sweep:{name}" for name in [*TEST_CELLS, "failing_cell"]]
    (dist / "entry_points.txt").write_text("[memsim.cells]\n" + "\n".join(lines) + "\n")
    return root


def _study(
    tmp: Path,
    name: str = "toy",
    *,
    vary: str | None = None,
    replicates: int = 2,
    cell: str = "toy_cell",
    extra: str = "",
) -> Path:
    vary = (
        vary
        or """
  - zip:
    - {path: protocol.steps.0.items.0.repeat_lag, name: lag, values: [[45, 100], [20, 60], [60,
    90]]}
    - {path: protocol.steps.0.scoring.correction.reference_lag, name: ref_lag, values: [100, 60,
    90]}
  - zip:
    - {path: protocol.campaign.stop.count, name: budget, values: [1000, 2000]}
    - {path: protocol.stimuli.gap_s, values: [1, 2.5]}
"""
    )
    if "set:" not in extra:  # `budget` axes set a participant budget, not the shipped stop
        extra += "set:\n  protocol.campaign.stop: {kind: participants, count: 9930}\n"
    text = f"""name: {name}
protocol: {VIDEOMEM}
vary:{vary}
replicates: {replicates}
statistics: [consistency_st, annotations_st]
seed: 11
cell: {cell}
{extra}"""
    path = tmp / f"{name}.yaml"
    path.write_text(text)
    return path


def _env(**extra) -> dict:
    import tempfile

    env = dict(os.environ)
    plugins = plugin_path(Path(tempfile.gettempdir()) / f"memsim-test-cells-{os.getpid()}")
    paths = [str(TESTS), str(plugins), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(paths).rstrip(os.pathsep)
    env.update({k: str(v) for k, v in extra.items()})
    return env


# --------------------------------------------------------------------------- the grid
def test_grid_is_product_of_entries_and_zip_varies_together(tmp_path):
    path = _study(tmp_path)
    plan = resolve_study(load_study(path), path)
    assert len(plan.cells) == 6 and plan.n_runs == 12
    coords = [c["coords"] for c in plan.cells]
    assert [c["lag"] for c in coords] == [
        "[45,100]",
        "[45,100]",
        "[20,60]",
        "[20,60]",
        "[60,90]",
        "[60,90]",
    ]
    assert [(c["budget"], c["protocol.stimuli.gap_s"]) for c in coords] == [
        (1000, 1.0),
        (2000, 2.5),
    ] * 3
    cell = plan.cells[3]
    assert cell["protocol"]["steps"][0]["items"][0]["repeat_lag"] == [20, 60]
    assert cell["protocol"]["campaign"]["stop"]["count"] == 2000
    assert cell["minutes"] == pytest.approx((180 + 120) * (7 + 2.5) / 60)
    assert plan.columns == {
        "lag": "json",
        "ref_lag": "int64",
        "budget": "int64",
        "protocol.stimuli.gap_s": "float64",
    }
    assert cell["protocol"]["steps"][0]["scoring"]["correction"]["reference_lag"] == 60


def test_seeds_depend_on_coordinates_not_on_the_rest_of_the_grid(tmp_path):
    full = _study(tmp_path, "full")
    part = _study(
        tmp_path,
        "part",
        vary="""
  - zip:
    - {path: protocol.steps.0.items.0.repeat_lag, name: lag, values: [[60, 90]]}
    - {path: protocol.steps.0.scoring.correction.reference_lag, name: ref_lag, values: [90]}
  - zip:
    - {path: protocol.campaign.stop.count, name: budget, values: [2000]}
    - {path: protocol.stimuli.gap_s, values: [2.5]}
""",
    )
    a = resolve_study(load_study(full), full)
    b = resolve_study(load_study(part), part)
    assert b.seeds[0] == a.seeds[5]  # same coordinates, same seeds, whatever else the grid holds
    flat = [s for cell in a.seeds for rep in cell for s in rep]
    assert len(set(flat)) == len(flat) and all(0 <= s < 2**63 for s in flat)
    c = {"x": 1}
    assert cell_seeds(3, c, 0, common=True) == cell_seeds(3, {"x": 2}, 0, common=True)
    assert cell_seeds(3, c, 0) != cell_seeds(3, c, 1) != cell_seeds(4, c, 1)


def test_params_axis_resolves_and_is_validated(tmp_path):
    pytest.importorskip("memsim.sim.params")
    ok = _study(
        tmp_path,
        "p",
        vary="""
  - {path: params.participants.careless_share, values: [0.0, 0.2]}
""",
    )
    plan = resolve_study(load_study(ok), ok)
    assert [c["params"]["participants"]["careless_share"] for c in plan.cells] == [0.0, 0.2]
    bad = _study(
        tmp_path,
        "pbad",
        vary="""
  - {path: params.participants.careless_share, values: [0.1, 1.5]}
""",
    )
    with pytest.raises(
        UserError, match=r"pbad.yaml: vary params.participants.careless_share = 1.5: infeasible"
    ):
        resolve_study(load_study(bad), bad)


def test_set_changes_the_base_before_the_axes(tmp_path, capsys):
    stop = "{kind: min_annotations, count: 5, max_participants: 9000}"
    path = _study(
        tmp_path,
        "set",
        extra=f"set:\n  protocol.campaign.stop: {stop}\n",
        vary="""
  - {path: protocol.campaign.stop.count, name: n, values: [5, 20]}
""",
    )
    plan = resolve_study(load_study(path), path)
    assert [c["protocol"]["campaign"]["stop"] for c in plan.cells] == [
        {"kind": "min_annotations", "count": n, "max_participants": 9000, "share": 1.0}
        for n in (5, 20)
    ]
    bad = _study(
        tmp_path, "setbad", extra="set:\n  protocol.stimuli.colour: 3\n", cell="exploding_cell"
    )
    assert main(["sweep", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "setbad.yaml: set protocol.stimuli.colour: unknown field path" in capsys.readouterr().err


def test_minutes_per_participant_and_crowd_minutes_of_videomem():
    from memsim.design.protocol import load_protocol
    from memsim.study.sweep import crowd_minutes

    proto = load_protocol(VIDEOMEM).dump()
    assert minutes_per_participant(proto) == pytest.approx(300 * 8 / 60)
    # per-step head counts when the cell gives them: 180 x 8 s for step 1, 120 x 8 s for step 2
    got = crowd_minutes(
        proto, {"participants_total.step1": 100, "participants_total.step2": 30}, 100
    )
    assert got == pytest.approx((100 * 180 + 30 * 120) * 8 / 60)
    assert crowd_minutes(proto, {}, 100) == pytest.approx(100 * 300 * 8 / 60)


def test_whole_protocol_axis_and_missing_statistics(tmp_path, capsys):
    import yaml

    from memsim.design.protocol import load_protocol

    one_step = load_protocol(VIDEOMEM).dump()  # VideoMem's step 1 alone, as a second protocol file
    one_step["name"] = "one-step"
    one_step["steps"] = one_step["steps"][:1]
    one_step["campaign"]["top_up"] = None  # a top-up needs a step 2 to top up
    one_step["campaign"]["pilot"]["return_share"] = None  # and its pilot has no step 2
    (tmp_path / "one-step.yaml").write_text(yaml.safe_dump(one_step))
    vary = f"""
  - {{path: protocol, name: design, values: [{VIDEOMEM}, one-step.yaml]}}
"""
    path = (
        _study(tmp_path, "mixed", vary=vary, replicates=1, extra="missing: nan\n")
        .read_text()
        .replace("annotations_st]", "consistency_lt]")
    )
    (tmp_path / "mixed.yaml").write_text(path)
    study = tmp_path / "mixed.yaml"
    plan = resolve_study(load_study(study), study)
    assert [c["protocol"]["name"] for c in plan.cells] == ["videomem", "one-step"]
    run_sweep(study, tmp_path / "out")
    df = pd.read_parquet(tmp_path / "out" / "results.parquet")
    assert df.consistency_lt.notna().tolist() == [
        True,
        False,
    ]  # the one-step protocol has no long term
    typo = tmp_path / "typo.yaml"
    typo.write_text(study.read_text().replace("consistency_lt]", "consistency_lt, consistncy_st]"))
    warnings = []
    run_sweep(typo, tmp_path / "out3", warn=warnings.append)
    assert (
        len(warnings) == 1
        and "no cell gave 1 of the statistics (all NaN): consistncy_st" in warnings[0]
    )
    strict = tmp_path / "strict.yaml"
    strict.write_text(study.read_text().replace("missing: nan", ""))
    assert main(["sweep", str(strict), "--out", str(tmp_path / "out2"), "--quiet"]) == 2
    assert "statistics: the cell function gives no 'consistency_lt'" in capsys.readouterr().err


# --------------------------------------------------------------------------- errors before running
@pytest.mark.parametrize(
    ("vary", "message"),
    [
        (
            "\n  - {path: protocol.steps.0.items.0.repeat_lagg, values: [[3, 5]]}",
            "vary protocol.steps.0.items.0.repeat_lagg: unknown field path: "
            "protocol.steps.0.items.0 has no field "
            "'repeat_lagg'",
        ),
        (
            "\n  - {path: protocol, values: [nowhere.yaml]}",
            "vary protocol = nowhere.yaml: no such file",
        ),
        (
            "\n  - {path: protocol.steps.7.length, values: [10]}",
            "vary protocol.steps.7.length: unknown field path: protocol.steps is a list of 2",
        ),
        (
            "\n  - {path: protocol.steps.0.items.0.repeat_lag, values: [[45, 100], [60, 190]]}",
            "vary protocol.steps.0.items.0.repeat_lag = [60,190]: infeasible cell: steps.0",
        ),
        (
            "\n  - "
            "{path: protocol.selection, values: [{kind: uniform}, "
            "{kind: least_annotated, pool: 20}]}",
            (
                'vary protocol.selection = {"kind":"least_annotated","pool":20}: infeasible cell: ',
                "selection.pool",
            ),
        ),
    ],
)
def test_bad_study_is_one_line_exit_2_before_anything_runs(tmp_path, capsys, vary, message):
    path = _study(tmp_path, "bad", vary=vary, cell="exploding_cell")
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"memsim sweep: error: {path}: ")
    for fragment in (message,) if isinstance(message, str) else message:
        assert fragment in err
    assert not out.exists()


def test_cell_that_cannot_be_sequenced_is_refused_before_anything_runs(tmp_path, capsys):
    # valid for the schema (170 < 180), but 40 targets cannot all repeat 120-170 positions later
    path = _study(
        tmp_path,
        "tight",
        cell="exploding_cell",
        vary="""
  - zip:
    - {path: protocol.steps.0.items.0.repeat_lag, name: lag, values: [[45, 100], [120, 170]]}
    - {path: protocol.steps.0.scoring.correction.reference_lag, values: [100, 170]}
""",
    )
    import test_sweep

    from memsim.study.sweep import _preflight

    test_sweep.exploding_cell.preflight = (
        _preflight  # the real cell's check, on a cell that must not run
    )
    try:
        assert main(["sweep", str(path), "--out", str(tmp_path / "o")]) == 2
    finally:
        del test_sweep.exploding_cell.preflight
    err = capsys.readouterr().err
    # caught by the preflight (or by the schema, if it checks arrangements itself): either way
    # one line naming the value, before anything runs
    assert err.count("\n") == 1 and "[120,170]" in err and "infeasible cell" in err
    assert not (tmp_path / "o").exists()


def test_infeasible_combination_names_every_axis(tmp_path, capsys):
    # each value is fine alone; together the repeat no longer fits the shorter sequence
    path = _study(
        tmp_path,
        "combo",
        cell="exploding_cell",
        vary="""
  - {path: protocol.steps.0.items.0.repeat_lag, values: [[45, 100], [45, 170]]}
  - zip:
    - {path: protocol.steps.0.length, values: [180, 160]}
    - {path: protocol.steps.0.items.2.count, values: [60, 40]}
""",
    )
    assert main(["sweep", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert (
        "vary protocol.steps.0.items.0.repeat_lag = [45,170], protocol.steps.0.length = 160, "
        "protocol.steps.0.items.2.count = 40: infeasible cell: steps.0"
    ) in err
    assert "170" in err.split("infeasible cell:")[1]


def test_rerun_with_another_study_into_the_same_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    a = _study(tmp_path, "a", replicates=1)
    run_sweep(a, out)
    b = _study(tmp_path, "b", replicates=1, extra="common_random_numbers: true\n")
    assert main(["sweep", str(b), "--out", str(out), "--quiet"]) == 2
    assert "holds a sweep of a different study" in capsys.readouterr().err


# --------------------------------------------------------------------------- determinism and resume
@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted one-worker run of the toy study: (study path, results bytes)."""
    tmp = tmp_path_factory.mktemp("ref")
    study = _study(tmp)
    summary = run_sweep(study, tmp / "out", workers=1)
    assert summary.ran == 12
    return study, (tmp / "out" / "results.parquet").read_bytes(), tmp / "out"


def test_results_identical_with_one_and_two_workers(reference, tmp_path):
    study, ref_bytes, _ = reference
    summary = run_sweep(study, tmp_path / "out2", workers=2)
    assert summary.ran == 12
    assert (tmp_path / "out2" / "results.parquet").read_bytes() == ref_bytes
    df = pd.read_parquet(tmp_path / "out2" / "results.parquet")
    assert list(zip(df.cell, df.replicate)) == [(c, r) for c in range(6) for r in range(2)]
    assert df.consistency_st.nunique() == 12  # every (cell, replicate) has its own seed


def test_resume_after_kill_9_gives_identical_results(reference, tmp_path):
    study, ref_bytes, _ = reference
    out = tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "memsim.cli",
        "sweep",
        str(study),
        "--out",
        str(out),
        "--workers",
        "2",
        "--quiet",
    ]
    rng = random.Random()  # a random moment, by design
    want = rng.randint(1, 8)  # kill once this many shards exist, plus a random fraction of a cell
    proc = subprocess.Popen(
        cmd,
        env=_env(MEMSIM_TEST_CELL_DELAY=0.3),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if (
                len(list((out / "shards").glob("*.parquet"))) >= want
                if (out / "shards").is_dir()
                else False
            ):
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.15))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole group: driver and its worker processes
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the sweep finished before it could be killed"
    done = len(list((out / "shards").glob("*.parquet")))
    assert done < 12 and not (out / "results.parquet").exists()
    rerun = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{done} were already done" in rerun.stdout
    assert (out / "results.parquet").read_bytes() == ref_bytes
    assert not list(out.rglob(".*.tmp"))


def test_rerun_of_finished_sweep_runs_nothing(reference, capsys):
    study, ref_bytes, out = reference
    assert main(["sweep", str(study), "--out", str(out), "--quiet"]) == 0
    assert "nothing to run: all 12 runs were already done" in capsys.readouterr().out
    assert (out / "results.parquet").read_bytes() == ref_bytes


# --------------------------------------------------------------------------- Dask scale-out
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dask_cluster_of_separate_processes_matches_local_run(reference, tmp_path, capsys):
    pytest.importorskip("distributed")
    study, ref_bytes, _ = reference
    dask = str(Path(sys.executable).with_name("dask"))
    exe = [dask] if os.path.exists(dask) else [sys.executable, "-m", "dask"]
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = _env()
    procs = []
    try:
        procs.append(
            subprocess.Popen(
                [*exe, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [
                        *exe,
                        "worker",
                        address,
                        "--nthreads",
                        "1",
                        "--no-dashboard",
                        "--host",
                        "127.0.0.1",
                    ],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )
        from distributed import Client

        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
            workers = client.scheduler_info()["workers"]
            assert len(workers) == 2
            pids = set(client.run(os.getpid).values())
        assert len(pids) == 2 and os.getpid() not in pids  # two separate worker processes
        out = tmp_path / "dask"
        assert (
            main(["sweep", str(study), "--out", str(out), "--scheduler", address, "--quiet"]) == 0
        )
        assert f"on Dask scheduler {address}" in capsys.readouterr().out
        assert (out / "results.parquet").read_bytes() == ref_bytes
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def test_dask_over_tls_uses_dasks_security_settings(tmp_path, capsys):
    """A TLS scheduler (a self-signed certificate): memsim reaches it with --tls-ca-file,
    --tls-cert and --tls-key (Dask's Security), and refuses it in one line without them or
    over plain tcp://."""
    pytest.importorskip("distributed")
    import shutil

    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key)]
        + ["-out", str(cert), "-days", "1", "-subj", "/CN=localhost"],
        check=True,
        capture_output=True,
    )
    dask = str(Path(sys.executable).with_name("dask"))
    exe = [dask] if os.path.exists(dask) else [sys.executable, "-m", "dask"]
    port = _free_port()
    tls = ["--tls-ca-file", str(cert), "--tls-cert", str(cert), "--tls-key", str(key)]
    proc = subprocess.Popen(
        [*exe, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"]
        + ["--protocol", "tls", *tls],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        from memsim.study.sweep import _Dask

        address = f"tls://127.0.0.1:{port}"
        files = {"tls_ca_file": cert, "tls_client_cert": cert, "tls_client_key": key}
        executor = _Dask(address, "tls-test", timeout=20, tls=files)
        assert executor.client.scheduler_info()["address"] == address
        executor.close()
        study = _study(tmp_path, replicates=1)
        out = tmp_path / "o"
        argv = ["sweep", str(study), "--out", str(out), "--quiet", "--scheduler"]
        assert main([*argv, address]) == 2
        assert "no TLS certificates" in capsys.readouterr().err
        plain = f"tcp://127.0.0.1:{port}"
        assert main([*argv, plain, "--connect-timeout", "1"]) == 2
        assert "no Dask handshake within 1 s" in capsys.readouterr().err
        assert not out.exists()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.parametrize("legacy", ["memsim.study.sweep:run_cell", "memsim.sweep:run_cell"])
@pytest.mark.parametrize("named", [False, True], ids=["default-cell", "cell-named"])
def test_a_sweep_folder_from_before_the_cell_registry_resumes(
    legacy, named, tmp_path, monkeypatch, capsys
):
    """Before cells were chosen by name, plans stored the default cell as an import path and
    fingerprinted it so (sha256 of the canonical study, columns, cells and seeds). Such a
    folder resumes under the study file it was made from, with or without its `cell:` line."""
    import hashlib
    import json

    from memsim.study import sweep

    monkeypatch.setitem(sweep.CELLS, "campaign", toy_cell)  # the default cell, answering at once
    study = _study(tmp_path, "legacy", replicates=1)
    text = study.read_text().replace("cell: toy_cell\n", f"cell: {legacy}\n" if named else "")
    study.write_text(text)
    out = tmp_path / "out"
    assert run_sweep(study, out).ran == 6
    ref = (out / "results.parquet").read_bytes()
    # the folder as the code before the registry wrote it
    plan = json.loads((out / "plan.json").read_text())
    plan["study"]["cell"] = legacy
    body = {k: plan[k] for k in ("study", "columns", "cells", "seeds")}
    # (nor had studies a `baseline` then)
    legacy_study = {k: v for k, v in plan["study"].items() if k not in ("description", "baseline")}
    body["study"] = legacy_study
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    plan["fingerprint"] = hashlib.sha256(canonical.encode()).hexdigest()
    (out / "plan.json").write_text(json.dumps(plan, indent=1, sort_keys=True) + "\n")
    for shard in sorted((out / "shards").glob("*.parquet"))[-2:]:
        shard.unlink()
    (out / "results.parquet").unlink()
    summary = run_sweep(study, out)
    assert (summary.ran, summary.skipped) == (2, 4)
    assert (out / "results.parquet").read_bytes() == ref
    other = tmp_path / "other.yaml"
    other.write_text(text.replace("seed: 11", "seed: 12"))
    with pytest.raises(UserError, match="holds a sweep of a different study"):
        run_sweep(other, out)


# --------------------------------------------------------------------------- report
def test_report_tables_match_results_and_figures_are_written(reference, tmp_path, capsys):
    from memsim.study.report import frontier, summarise_results

    _, _, out = reference
    assert main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "toy: mean ± sd over 2 replicate(s)" in printed
    summary = pd.read_csv(out / "report" / "summary.csv")
    res = pd.read_parquet(out / "results.parquet")
    g = res.groupby("cell")
    np.testing.assert_allclose(summary.consistency_st_mean, g.consistency_st.mean(), rtol=1e-5)
    np.testing.assert_allclose(summary.consistency_st_sd, g.consistency_st.std(ddof=1), rtol=1e-5)
    np.testing.assert_allclose(
        summary.participant_minutes_mean, g.participant_minutes.mean(), rtol=1e-5
    )
    # cost = participants x minutes per participant, from the protocol
    assert res.participant_minutes.iloc[0] == pytest.approx(1000 * 300 * 8 / 60)
    for name in ["axis-lag.png", "axis-budget.png", "frontier-consistency_st.png"]:
        assert (out / "report" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the frontier: cheapest cell first, each later one strictly better
    from memsim.study.sweep import load_plan

    front = frontier(summarise_results(res, load_plan(out)), "consistency_st")
    assert (np.diff(front.consistency_st_mean) > 0).all()
    assert (np.diff(front.participant_minutes_mean) >= 0).all()
    assert front.participant_minutes_mean.iloc[0] == summary.participant_minutes_mean.min()


BASELINE = "baseline: {lag: [45, 100], ref_lag: 100, budget: 1000, protocol.stimuli.gap_s: 1}\n"


def test_report_pairs_each_cell_with_the_baseline_cell_of_its_replicate(tmp_path, capsys):
    """A study's ``baseline`` cell: the report gives each cell's difference to it within each
    replicate. With common random numbers the toy cell's noise is the same in every cell of a
    replicate, so the differences are the cells' own effects exactly; without, they spread."""
    crn = _study(tmp_path, "crn", replicates=5, extra=BASELINE + "common_random_numbers: true\n")
    run_sweep(crn, tmp_path / "crn-out", workers=1)
    assert main(["report", str(tmp_path / "crn-out"), "--no-figures"]) == 0
    printed = " ".join(capsys.readouterr().out.split())  # the title wraps at the terminal's width
    assert "difference to the baseline cell (budget 1000, lag 45-100," in printed
    paired = pd.read_csv(tmp_path / "crn-out" / "report" / "paired.csv")
    assert len(paired) == 6 and (paired.replicates == 5).all()
    # toy cell: 0.6 - 0.001 (hi - lo) + 1e-5 budget + noise(seed); lags [20, 60] and budget
    # 2000 against the baseline's [45, 100] and 1000: +0.015 + 0.010
    row = paired[(paired.lag == "[20,60]") & (paired.budget == 2000)].iloc[0]
    for k in ("median", "lo", "hi"):
        assert row[f"consistency_st_{k}"] == pytest.approx(0.025, abs=1e-9)
    assert row.consistency_st_above == 1.0
    base = paired[(paired.lag == "[45,100]") & (paired.budget == 1000)].iloc[0]
    assert base.consistency_st_median == 0 and base.consistency_st_above == 0
    # the same study without common random numbers: independent runs, the same cell effect
    # on average but a spread
    ind = _study(tmp_path, "ind", replicates=5, extra=BASELINE)
    run_sweep(ind, tmp_path / "ind-out", workers=1)
    assert main(["report", str(tmp_path / "ind-out"), "--no-figures"]) == 0
    spread = pd.read_csv(tmp_path / "ind-out" / "report" / "paired.csv")
    assert (spread.consistency_st_hi - spread.consistency_st_lo).max() > 0.01


def test_the_report_of_a_posterior_sweep_says_each_replicate_is_a_draw(reference):
    import dataclasses

    from rich.console import Console

    from memsim.cli.sweep import print_report
    from memsim.study.report import report

    rep = report(reference[2], figures=False)
    for params, said in ((None, False), ("posterior videomem", True)):
        console = Console(record=True, width=200)
        print_report(dataclasses.replace(rep, study={**rep.study, "params": params}), console)
        assert ("over 2 replicate(s), one posterior draw each" in console.export_text()) is said


def test_paired_columns_print_no_negative_zero():
    from memsim.cli.sweep import _paired_column

    paired = pd.DataFrame(
        {"x_median": [-1e-6, 0.02], "x_lo": [-0.01, 0.01], "x_hi": [0.0, 0.03], "x_above": [0, 1]}
    )
    assert _paired_column(paired, "x") == [
        "+0.000 [-0.010, +0.000] (0%)",
        "+0.020 [+0.010, +0.030] (100%)",
    ]


def test_a_baseline_names_one_value_of_every_axis(tmp_path):
    for baseline, why in (
        ("{lag: [45, 100], ref_lag: 100, budget: 1000}", "'protocol.stimuli.gap_s' has none"),
        (BASELINE.strip()[len("baseline: ") :].replace("budget", "budgets"), "no axis named"),
        (BASELINE.strip()[len("baseline: ") :].replace("1000", "1500"), "1500 is not among"),
        (BASELINE.strip()[len("baseline: ") :].replace("1000", "2000"), "never take the values"),
    ):
        study = _study(tmp_path, extra=f"baseline: {baseline}\n")
        with pytest.raises(UserError, match=why):
            load_study(study)


def test_a_resumed_sweep_takes_a_new_baseline_without_running_again(tmp_path):
    """The baseline is the report's: changing it keeps the sweep's runs (same fingerprint) and
    the next report uses it."""
    from memsim.study.report import report

    study = _study(tmp_path, replicates=1, extra="common_random_numbers: true\n")
    run_sweep(study, tmp_path / "out", workers=1)
    assert report(tmp_path / "out", figures=False).paired is None
    study.write_text(study.read_text() + BASELINE)
    again = run_sweep(study, tmp_path / "out", workers=1)
    assert again.ran == 0
    assert report(tmp_path / "out", figures=False).paired is not None
    assert "baseline:" in (tmp_path / "out" / "study.yaml").read_text()


def test_frontier_keeps_only_undominated_cells():
    from memsim.study.report import frontier

    s = pd.DataFrame(
        {
            "cell": [0, 1, 2, 3, 4],
            "participant_minutes_mean": [10.0, 20.0, 20.0, 30.0, 40.0],
            "x_mean": [0.5, 0.4, 0.6, 0.55, 0.7],
        }
    )
    assert list(frontier(s, "x").cell) == [0, 2, 4]


def test_report_of_unfinished_sweep_is_a_clear_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "is this a `memsim sweep` folder?" in capsys.readouterr().err


# --------------------------------------------------------------------------- the real cell
def test_real_cell_is_deterministic_and_gives_named_statistics():
    pytest.importorskip("memsim.sim.simulate")
    pytest.importorskip("memsim.analysis.consistency")
    from memsim.design.protocol import load_protocol
    from memsim.sim.params import default_params_path, load_params
    from memsim.study.sweep import run_cell

    proto = load_protocol(VIDEOMEM)
    spec = {
        "protocol": proto.dump(),
        "params": load_params(default_params_path(proto)).dump(),
        "seed": 5,
        "analysis_seed": 6,
        "scale": 0.05,
    }
    a, b = run_cell(spec), run_cell(spec)
    assert a == b
    assert a["participants"] > 0 and all(isinstance(v, float) for v in a.values())
    assert run_cell({**spec, "seed": 7}) != a
    # fewer analysis splits: same simulated campaign, a different (cheaper) average over splits
    light = run_cell({**spec, "analysis": {"n_splits": 2, "repeats": 1}})
    assert (
        light["participants"] == a["participants"]
        and light["mean_score.step1"] == a["mean_score.step1"]
    )
    assert light["human_consistency.step1.mean"] != a["human_consistency.step1.mean"]
    assert hasattr(run_cell, "preflight")
    # a study's stimuli_seed: the stimuli of that seed (seed 5's own with 5), the rest the run's
    assert run_cell({**spec, "stimuli_seed": 5}) == a
    held = run_cell({**spec, "seed": 7, "stimuli_seed": 5})
    assert held != run_cell({**spec, "seed": 7}) and held != a


def test_a_study_s_stimuli_seed_reaches_every_spec_and_its_fingerprint(tmp_path):
    """`stimuli_seed` in a study goes into each run's spec and the sweep's fingerprint; a
    study without it keeps the fingerprint it had before the field (its folder resumes)."""
    from memsim.study.sweep import _spec

    path = _study(tmp_path, "plain")
    plain = resolve_study(load_study(path), path)
    held_path = tmp_path / "held.yaml"
    held_path.write_text(path.read_text() + "stimuli_seed: 4\n")
    study = load_study(held_path)
    held = resolve_study(study, held_path)
    assert held.fingerprint != plain.fingerprint and held.seeds == plain.seeds
    assert _spec(study, held, held.cells[0], 0, 1.0)["stimuli_seed"] == 4
    assert "stimuli_seed" not in _spec(load_study(path), plain, plain.cells[0], 0, 1.0)
    none_path = tmp_path / "none.yaml"
    none_path.write_text(
        path.read_text().replace("name: plain", "name: plain") + "stimuli_seed: null\n"
    )
    assert resolve_study(load_study(none_path), none_path).fingerprint == plain.fingerprint
    bad = tmp_path / "bad.yaml"
    bad.write_text(path.read_text() + "stimuli_seed: -1\n")
    assert main(["sweep", str(bad), "--out", str(tmp_path / "o")]) == 2


def test_list_statistics_runs_the_first_cell_once(tmp_path, capsys):
    path = _study(tmp_path, "names")
    assert main(["sweep", str(path), "--list-statistics"]) == 0
    out = capsys.readouterr().out
    assert "consistency_st\t" in out and "annotations_st\t" in out and "4 statistics" in out
    assert not (tmp_path / "out").exists()


def test_frontiers_are_drawn_for_quality_statistics_only():
    from memsim.study.report import _is_quality

    assert _is_quality("human_consistency.step1.mean") and _is_quality("truth.step2.spearman")
    assert _is_quality("annotation_consistency.step1.curve@38")
    assert not _is_quality("human_consistency.step1.mean_annotations_per_half")
    assert not _is_quality("annotations_per_video.step1.mean") and not _is_quality(
        "truth.step1.videos"
    )


def failing_cell(spec: dict) -> dict:
    """Fails (as a user's problem would) on one cell only."""
    if spec["coords"].get("budget") == 2000 and spec["coords"].get("lag") == "[20,60]":
        raise UserError("this cell cannot run")
    return toy_cell(spec)


register_cell("failing_cell", failing_cell)


def test_a_cell_that_fails_at_run_time_is_named_and_the_rest_kept(tmp_path, capsys):
    path = _study(tmp_path, "fails", replicates=1, cell="failing_cell")
    out = tmp_path / "out"
    assert main(["sweep", str(path), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert (
        "cell 3 (lag = [20,60], ref_lag = 60, budget = 2000, protocol.stimuli.gap_s = 2.5) "
        "replicate 0 failed: "
        "this cell cannot run" in err
    )
    assert (
        len(list((out / "shards").glob("*.parquet"))) == 3
        and not (out / "results.parquet").exists()
    )


@pytest.mark.parametrize(
    "path",
    sorted((Path(__file__).resolve().parent.parent / "experiments").glob("*.yaml")),
    ids=lambda p: p.stem,
)
def test_every_shipped_study_resolves(path):
    """Each study under experiments/ names real fields and feasible cells (checked before any
    run)."""
    from memsim.study.sweep import load_study, resolve_study

    study = load_study(path)
    plan = resolve_study(study, path)
    assert plan.n_runs == len(plan.cells) * study.replicates > 0
    assert all(c["protocol"]["steps"] for c in plan.cells)  # each cell carries a whole protocol


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="numba's default is one thread here")
def test_worker_threads_survive_a_compilation_after_the_threads_started():
    """A spawned worker imports numba while unpickling its initializer, before that runs: its
    thread count must be set at run time. Through NUMBA_NUM_THREADS it was read too late, and
    the first compilation after a parallel kernel had started numba's threads raised (a
    selection study's adaptive cells hit it when a kernel was not in the cache)."""
    code = (
        "import os, numba, numpy as np\n"
        "from memsim.study.sweep import _worker_init\n"
        "_worker_init(1)\n"
        "@numba.njit(parallel=True)\n"
        "def f(n):\n"
        "    s = 0.0\n"
        "    for i in numba.prange(n):\n"
        "        s += i\n"
        "    return s\n"
        "f(10)\n"  # numba's threads start here
        "@numba.njit\n"
        "def g(x):\n"
        "    return x + 1\n"
        "g(1)\n"  # a compilation re-reads numba's environment
        "print(numba.get_num_threads())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
    env["NUMBA_CACHE_DIR"] = "/nonexistent-memsim-test-cache"  # nothing cached: g compiles
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "1"
