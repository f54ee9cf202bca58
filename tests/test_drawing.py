"""A run's figures drawn by forked workers (memsim.study.drawing): the same files as drawn in
the run's own process, and every failure of a worker surfaced as the in-process path gives it,
with nothing half-written, no hang and no process left behind.

The forked path is taken only while numba's worker threads are not yet running in the
process (GNU OpenMP does not survive a fork), which a pytest process that has run other tests
cannot promise; so these tests run each scenario in a fresh interpreter, as ``memsim run``
does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from memsim.study import drawing

# a fresh process: a forked run, then the same run drawn in-process, reported as JSON
_PRELUDE = """
import json, multiprocessing, os, signal, sys
from pathlib import Path
import memsim.api as api
from memsim.study import drawing
from memsim.study.run import run_study

forked = []
_init = drawing.FigureDrawer.__init__
def _spy(self, *a, **k):
    _init(self, *a, **k)
    forked.append(self.forked)
drawing.FigureDrawer.__init__ = _spy
protocol = api.load_protocol("videomem")
params = api.load_params(protocol=protocol)
tmp_path = Path(sys.argv[1])

def run(out, workers):
    return run_study(protocol, params, seed=4, scale=0.04, data=sys.argv[2], out=tmp_path / out,
                     figure_workers=workers)

def files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else None
"""


def _fresh(tmp_path, body: str, data) -> dict:
    script = _PRELUDE + textwrap.dedent(body)
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), str(data)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_forked_figures_are_the_same_files_as_drawn_in_process(tmp_path, real_data):
    got = _fresh(
        tmp_path,
        """
        a = run("forked", 2)
        b = run("here", 0)
        fa, fb = files(tmp_path / "forked"), files(tmp_path / "here")
        print(json.dumps({
            "forked": forked,
            "names": sorted(fa),
            "differ": sorted(k for k in fa if fa[k] != fb.get(k)),
            "same_names": sorted(fa) == sorted(fb),
            "written": [p.name for p in a.written] == [p.name for p in b.written],
            "order": [p.name for p in a.written if p.suffix == ".png"],
            "children": len(multiprocessing.active_children()),
        }))
        """,
        real_data,
    )
    assert got["forked"] == [True, False]  # the first run forked, the reference did not
    assert got["same_names"] and got["written"]
    assert got["differ"] == []  # every file, the five PNGs included, byte for byte
    assert got["order"] == [
        "fig3_lag.png",
        "fig4_consistency.png",
        "fig5_st_vs_lt.png",
        "fig6_rt.png",
        "scores_real_vs_sim.png",
    ]
    assert got["children"] == 0


@pytest.mark.parametrize(
    "failure, expected",
    [
        ("raise UserError('no room for the figure')", "UserError"),
        ("os.kill(os.getpid(), signal.SIGKILL)", "RuntimeError"),
    ],
)
def test_a_failing_worker_fails_the_run_whole_and_leaves_no_process(
    tmp_path, real_data, failure, expected
):
    got = _fresh(
        tmp_path,
        f"""
        from memsim.errors import UserError
        import memsim.viz.plots as plots

        def fig_rt(*args, **kw):
            {failure}
        fig_rt.__module__, fig_rt.__qualname__ = "memsim.viz.plots", "fig_rt"
        plots.fig_rt = fig_rt  # the workers, forked later, draw with it too
        results = {{}}
        for name, workers in (("forked", 2), ("here", 0)):
            if name == "here" and "{expected}" == "RuntimeError":
                continue  # in-process, the kill would end this script
            try:
                run(name, workers)
                results[name] = "no error"
            except Exception as e:
                results[name] = [type(e).__name__, str(e).replace(str(tmp_path), "TMP")]
        print(json.dumps({{
            "forked": forked,
            "results": results,
            "left": sorted(p.name for p in tmp_path.iterdir()),
            "children": len(multiprocessing.active_children()),
        }}))
        """,
        real_data,
    )
    assert got["forked"][0] is True
    kind, message = got["results"]["forked"]
    assert kind == expected
    if expected == "UserError":  # the same line as when the figure fails in this process
        assert got["results"]["here"] == got["results"]["forked"]
        assert "no room for the figure" in message and "\n" not in message
    else:
        assert "figure worker" in message
    assert got["left"] == []  # no run folder, no temporary sibling
    assert got["children"] == 0


def test_no_fork_once_numba_threads_run(monkeypatch):
    class Parallel:
        _is_initialized = True

    monkeypatch.setitem(sys.modules, "numba.np.ufunc.parallel", Parallel)
    assert "numba" in drawing.fork_problem()
    with drawing.FigureDrawer(2) as d:
        assert not d.forked and d.why_here
    with drawing.FigureDrawer(0) as d:
        assert not d.forked and d.why_here == "no worker asked for"
        d.draw([(max, (1, 2), {}), (min, (3, 4), {})])
        assert d.paths() == [2, 3]  # drawn here, in order, when asked for
    with pytest.raises(ValueError, match="workers"):
        drawing.FigureDrawer(-1)
    assert 0 <= drawing.default_workers() <= drawing.MAX_WORKERS
    # no more workers than a run has figures, whatever is asked (here nothing is forked)
    with drawing.FigureDrawer(100_000) as d:
        assert d.workers == drawing.MOST_WORKERS and not d.forked


def test_user_error_crosses_processes_with_its_path():
    """A worker's UserError reaches the parent pickled: the same line and the same ``path``."""
    import pickle

    from memsim.errors import UserError

    err = pickle.loads(pickle.dumps(UserError("no room for  the figure", path="out/fig3.png")))
    assert type(err) is UserError
    assert str(err) == "out/fig3.png: no room for the figure"
    assert err.path == "out/fig3.png"


def test_cli_refuses_negative_figure_workers(tmp_path, capsys):
    from memsim.cli import main

    rc = main(["run", "videomem", "--figure-workers", "-1", "--out", str(tmp_path / "r")])
    assert rc == 2
    assert "--figure-workers: -1 must be 0 or more" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
