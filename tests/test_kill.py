"""kill -9 at any moment: no run folder that lies, and sweeps and calibrations resume to the
same bytes.

- ``memsim run`` is killed at many moments while it overwrites a finished run (and, with a
  patched ``os.rename``, exactly between the two renames that swap the folders): the folder
  is then the earlier run, whole, or the new run, whole, or absent; never a mixture. A rerun
  gives the uninterrupted run's bytes and removes the temporary siblings a kill left.
- A sweep killed between its first two files, or while its first cell runs (before its
  folder appears), or left by an older memsim as a folder holding only ``study.yaml``,
  resumes to the uninterrupted sweep's ``results.parquet``, byte for byte.
- A calibration killed after some candidates resumes (``--resume``) to the uninterrupted
  fit's parameter file, byte for byte.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memsim.cli import main
from memsim.study.sweep import register_cell

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
VIDEOMEM = REPO / "protocols" / "videomem.yaml"
RUN = ["run", "videomem", "--scale", "0.02", "--no-figures", "--quiet"]


def kill_toy(spec: dict) -> dict:
    """A cell that answers at once from its seed (slowly with MEMSIM_TEST_CELL_DELAY)."""
    delay = float(os.environ.get("MEMSIM_TEST_CELL_DELAY", "0"))
    if delay:
        time.sleep(delay)
    return {"a": (spec["seed"] % 10_007) / 10_007.0, "participants": 10.0}


register_cell("kill-toy", kill_toy)


def _env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _memsim(*argv, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "memsim.cli", *map(str, argv)],
        env=_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        **popen,
    )


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _driver(code: str, *argv) -> subprocess.CompletedProcess:
    """Run memsim's CLI in a subprocess after ``code`` (which patches something to kill -9)."""
    script = f"import sys\n{code}\nfrom memsim.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run(
        [sys.executable, "-c", script, *map(str, argv)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def files(folder: Path) -> dict[str, bytes] | None:
    """The folder's files and their bytes; None when it does not exist."""
    if not folder.exists():
        return None
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


# --------------------------------------------------------------------------- memsim run
def test_kill_9_during_a_run_never_leaves_a_folder_that_passes_as_finished(tmp_path, capsys):
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    assert main([*RUN, "--seed", "1", "--out", str(old_dir)]) == 0
    old = files(old_dir)
    out = tmp_path / "out"
    shutil.copytree(old_dir, out)
    t0 = time.monotonic()
    proc = _memsim(*RUN, "--seed", "2", "--out", out)
    assert proc.wait(timeout=300) == 0
    whole = time.monotonic() - t0  # how long one overwrite takes here, start-up included
    new = files(out)
    assert set(new) == set(old) and all(new[k] != old[k] for k in new)  # replaced, every file
    assert main([*RUN, "--seed", "2", "--out", str(new_dir)]) == 0
    assert files(new_dir) == new  # the same bytes in this process and another
    seen = []
    for fraction in (0.4, 0.7, 0.85, 0.95, 1.02):
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(old_dir, out)
        proc = _memsim(*RUN, "--seed", "2", "--out", out)
        time.sleep(whole * fraction)
        _kill(proc)
        state = files(out)
        assert state in (old, new, None), f"a mixed folder after a kill at {fraction:.0%}"
        seen.append("old" if state == old else "new" if state == new else "absent")
    # the rerun replaces whatever is there and removes what the killed runs left beside it
    assert main([*RUN, "--seed", "2", "--out", str(out)]) == 0
    assert files(out) == new
    assert leftovers(tmp_path, "out") == []
    print("states after the kills:", seen)  # shown with -s: how far the kills got


def test_kill_between_the_two_renames_of_an_overwrite(tmp_path, capsys):
    """The one moment a run folder is absent: the earlier run moved aside, the new one not yet
    in place. Then no folder is there at all, and a rerun puts the new run in place."""
    out = tmp_path / "out"
    assert main([*RUN, "--seed", "1", "--out", str(out)]) == 0
    kill_after_first_rename = """
import os, signal
import memsim.io as io
renames = []
real = os.rename
def rename(a, b):
    real(a, b)
    renames.append(b)
    if len(renames) == 1:
        os.kill(os.getpid(), signal.SIGKILL)
io.os.rename = rename
"""
    proc = _driver(kill_after_first_rename, *RUN, "--seed", "2", "--out", out)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not out.exists()
    left = leftovers(tmp_path, "out")
    assert sorted(n.rsplit(".", 1)[1] for n in left) == ["new", "old"]  # new run, old aside
    assert main([*RUN, "--seed", "2", "--out", str(out)]) == 0
    ref = tmp_path / "ref"
    assert main([*RUN, "--seed", "2", "--out", str(ref)]) == 0
    assert files(out) == files(ref)
    assert leftovers(tmp_path, "out") == []


# --------------------------------------------------------------------------- sweeps
def _study(tmp: Path) -> Path:
    path = tmp / "study.yaml"
    path.write_text(
        f"""name: kill
protocol: {VIDEOMEM}
set:
  protocol.campaign.stop: {{kind: participants, count: 1000}}
vary:
  - {{path: protocol.campaign.stop.count, values: [1000, 2000, 3000]}}
replicates: 2
statistics: [a]
seed: 5
cell: kill-toy
"""
    )
    return path


@pytest.fixture(scope="module")
def sweep_reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    study = _study(tmp)
    assert main(["sweep", str(study), "--out", str(tmp / "ref"), "--quiet"]) == 0
    return study, (tmp / "ref" / "results.parquet").read_bytes()


def test_a_sweep_killed_between_its_first_two_files_resumes_to_the_same_bytes(
    sweep_reference, tmp_path, capsys
):
    study, ref = sweep_reference
    out = tmp_path / "out"
    kill_after_study_file = """
import os, signal
import test_kill  # registers the test cell
import memsim.study.sweep as sweep
real = sweep.write_text_atomic
def write(path, text):
    real(path, text)
    if path.name == "study.yaml":
        os.kill(os.getpid(), signal.SIGKILL)
sweep.write_text_atomic = write
"""
    proc = _driver(kill_after_study_file, "sweep", study, "--out", out, "--quiet")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert not out.exists()  # the folder appears whole or not at all
    assert len(leftovers(tmp_path, "out")) == 1
    assert main(["sweep", str(study), "--out", str(out), "--quiet"]) == 0
    assert (out / "results.parquet").read_bytes() == ref
    assert leftovers(tmp_path, "out") == []


def test_a_sweep_killed_in_its_first_cell_leaves_no_folder_and_resumes(
    sweep_reference, tmp_path, capsys
):
    study, ref = sweep_reference
    out = tmp_path / "out"
    script = "import sys, test_kill\nfrom memsim.cli import main\nsys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", script, "sweep", str(study), "--out", str(out), "--quiet"],
        env=_env(MEMSIM_TEST_CELL_DELAY=30),
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        plan = proc.stdout.readline()  # printed once everything is checked, as cells start
        assert "6 runs on 1 local worker" in plan, plan
        time.sleep(0.5)
        assert proc.poll() is None
    finally:
        _kill(proc)
    assert not out.exists()
    assert main(["sweep", str(study), "--out", str(out), "--quiet"]) == 0
    assert (out / "results.parquet").read_bytes() == ref


def test_a_sweep_folder_an_older_memsim_left_half_made_is_started_afresh(
    sweep_reference, tmp_path, capsys
):
    """Before the folder appeared whole, a kill between study.yaml and plan.json left a folder
    with study.yaml alone (and perhaps an empty shards/), which the same command then
    refused. It is now a sweep that never started."""
    study, ref = sweep_reference
    out = tmp_path / "out"
    (out / "shards").mkdir(parents=True)
    shutil.copy(study, out / "study.yaml")
    (out / ".study.yaml.k3j_9x2a.tmp").write_text("torn")  # a temp file of the old naming
    assert main(["sweep", str(study), "--out", str(out), "--quiet"]) == 0
    assert (out / "results.parquet").read_bytes() == ref
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------- calibration
def test_a_calibration_killed_mid_fit_resumes_to_the_same_file(tmp_path, capsys, monkeypatch):
    from memsim.fit.calibrate import VIDEOMEM_FREE

    keep = ("videos.memorability.mean", "participants.rt.hit_log_mean")
    fix = [f.path for f in VIDEOMEM_FREE if f.path not in keep]

    # each fit runs in its own folder with the same relative --out: the file's header names it
    def argv(out: Path) -> list[str]:
        return [
            "calibrate",
            str(VIDEOMEM),
            "--out",
            out.name,
            "--scale",
            "0.02",
            "--workers",
            "1",
            "--budget",
            "10",
            "--quiet",
            "--fix",
            *fix,
        ]

    ref = tmp_path / "ref" / "fit.yaml"
    ref.parent.mkdir()
    monkeypatch.chdir(ref.parent)
    assert main(argv(ref)) == 0
    out = tmp_path / "out" / "fit.yaml"
    out.parent.mkdir()
    monkeypatch.chdir(out.parent)
    log = out.with_name(out.name + ".evals.jsonl")
    proc = _memsim(*argv(out), cwd=out.parent)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if log.exists() and len(log.read_text().splitlines()) >= 4:  # header + 3 candidates
                break
            time.sleep(0.01)
    finally:
        _kill(proc)
    assert proc.returncode == -signal.SIGKILL, "the fit ended before it could be killed"
    done = len(log.read_text().splitlines()) - 1
    assert 3 <= done < 10 and not out.exists()
    assert main(argv(out)) == 2  # the log is there: refused without --resume or --force
    assert "--resume continues that fit" in capsys.readouterr().err
    assert main([*argv(out), "--resume"]) == 0
    printed = capsys.readouterr().out
    assert f"10 candidates ({10 - done} simulated now)" in printed, printed

    def same_day(text: bytes) -> bytes:  # the note dates the fit: equal unless midnight passed
        return re.sub(rb"on \d{4}-\d{2}-\d{2} against", b"on DATE against", text)

    assert same_day(out.read_bytes()) == same_day(ref.read_bytes())
    assert main([*argv(out), "--resume"]) == 0  # nothing left to do: the same file again
    assert same_day(out.read_bytes()) == same_day(ref.read_bytes())


def _sigint_blocked() -> bool:
    import signal

    return signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])


def test_workers_start_with_ctrl_c_blocked_and_the_parent_keeps_it():
    """A Ctrl-C goes to the whole process group: workers that are still starting printed a
    traceback each; they now leave it to the parent, which ends them."""
    from concurrent.futures import ProcessPoolExecutor

    from memsim.io import in_worker, spawn_context

    assert not _sigint_blocked()
    with ProcessPoolExecutor(2, mp_context=spawn_context(), initializer=in_worker,
                             initargs=(os.getpid(),)) as pool:  # fmt: skip
        assert pool.submit(_sigint_blocked).result() is True
    assert not _sigint_blocked()
