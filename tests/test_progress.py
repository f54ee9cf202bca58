"""Progress that tells the truth: lines at least every ``every_s`` seconds when piped, a
"compiling kernels" stage when numba's cache is cold, time left from what the jobs cost."""

from __future__ import annotations

import io
import time

import pytest

from memsim.cli.progress import plain_line, progress_display
from memsim.progress import Progress, TimeLeft, report


class _Log(io.StringIO):
    """A piped stderr that records when each line came."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def write(self, text: str) -> int:
        self.times += [time.monotonic()] * text.count("\n")
        return super().write(text)

    def isatty(self) -> bool:
        return False


def test_piped_progress_repeats_itself_while_the_work_is_silent():
    log = _Log()
    with progress_display(every_s=0.2, stream=log) as show:
        report(show, "simulate", "step 1", 1, 4, unit="stages")
        time.sleep(0.9)  # a long silent stage: numba compiling, a big campaign step
        report(show, "simulate", "step 1", 1, 4, unit="stages")  # same stage: throttled
        report(show, "simulate", "done", 4, 4, unit="stages")
    after = len(log.getvalue().splitlines())
    time.sleep(0.4)
    lines = log.getvalue().splitlines()
    assert len(lines) == after  # closed: the ticker is gone
    assert lines[0].startswith("simulate: step 1 1/4 stages [0:00]")
    assert lines[-1].startswith("simulate: done 4/4 stages")
    repeats = [ln for ln in lines if ln.startswith("simulate: step 1")]
    assert len(repeats) >= 3, lines
    gaps = [b - a for a, b in zip(log.times, log.times[1:])]
    assert max(gaps) < 0.2 + 0.3, gaps  # every_s, plus the ticker's step and a loaded machine


def test_plain_line_says_the_elapsed_time_and_the_detail():
    p = Progress("sweep", "annotations", 9, 33, "runs", "~0:43 left")
    assert plain_line(p, 12.4) == "sweep: annotations 9/33 runs [0:12] (~0:43 left)"


def test_a_cold_cache_announces_compiling_before_the_first_stage(monkeypatch):
    from memsim import _jitcache
    from memsim.api import load_params, load_protocol, simulate

    proto = load_protocol("isola2011")
    params = load_params("videomem")
    seen: list[Progress] = []
    monkeypatch.setattr(_jitcache, "cold", lambda module="sim/kernel": True)
    simulate(proto, params, seed=0, scale=0.02, progress=seen.append)
    assert seen[0].stage == "compiling kernels (first run only)" and seen[0].done == 0
    assert seen[1].stage == "campaign" and seen[1].detail == "compiling kernels (first run only)"
    seen.clear()
    monkeypatch.setattr(_jitcache, "cold", lambda module="sim/kernel": False)
    simulate(proto, params, seed=0, scale=0.02, progress=seen.append)
    assert seen[0].stage == "campaign" and not any(p.detail for p in seen)


def test_the_cold_check_reads_numbas_own_cache_index(tmp_path):
    from memsim import _jitcache

    # the simulator has run in this session (or an earlier one): its kernels are cached
    assert _jitcache.cold("sim/kernel") in (False, None)


def test_time_left_follows_what_the_jobs_cost():
    """Cells whose cost grows with their swept value (annotations per video 5 ... 320): at a
    third of the way, the estimate is within 25 % of the truth; the rate of the jobs done so
    far (the old estimate) said a fifth of it."""
    values = [5, 10, 20, 38, 60, 90, 120, 150, 200, 260, 320]
    jobs = [(cell, v) for cell, v in enumerate(values) for _ in range(3)]
    cost = {cell: 0.2 + 0.01 * v for cell, v in enumerate(values)}  # seconds per job
    work = {cell: 50.0 * v for cell, v in enumerate(values)}  # participant-minutes per job
    eta = TimeLeft([c for c, _ in jobs], {c: [v] for c, v in enumerate(values)}, warmup=1)
    spent = 0.0
    for k, (cell, _) in enumerate(jobs[:11], start=1):
        eta.finished(cell, cost[cell] + (3.0 if k == 1 else 0.0), work=work[cell])  # start-up
        spent += cost[cell]
    truth = sum(cost[c] for c, _ in jobs[11:])
    assert eta.left() == pytest.approx(truth, rel=0.25)
    naive = spent / 11 * (len(jobs) - 11)
    assert naive < truth / 2


@pytest.mark.parametrize(
    ("command", "task"),
    [
        (
            ["fit-report", "videomem", "--seeds", "2", "--scale", "0.03", "--out", "r/r.md"],
            "fit-report",
        ),
        (
            [
                "recover",
                "videomem",
                "--scale",
                "0.03",
                "--budget",
                "3",
                "--workers",
                "1",
                "--out",
                "rec",
            ],
            "recover",
        ),
    ],
)
def test_long_commands_say_where_they_are_unless_quiet(
    command, task, tmp_path, monkeypatch, capsys
):
    """fit-report and recover run campaigns for minutes at full size: piped, they write their
    progress on stderr as the other long commands do, and nothing with --quiet."""
    from memsim.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MEMSIM_DATA", str(tmp_path / "no-data-here"))
    assert main(command) == 0
    err = capsys.readouterr().err
    assert f"{task}: " in err
    assert main([*command[:-1], "quiet", "--quiet"]) == 0
    assert capsys.readouterr().err == ""
