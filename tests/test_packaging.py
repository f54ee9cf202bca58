"""The package as users get it: a wheel that carries its protocols and parameter sets and runs
the main job from any folder; the packages listed in pyproject.toml; a cheap ``import memsim``."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

import memsim
from memsim import resources

ROOT = resources.repository_root()


def test_pyproject_lists_every_subpackage():
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    pkg = Path(memsim.__file__).parent
    found = {
        ".".join(("memsim", *p.parent.relative_to(pkg).parts)) for p in pkg.rglob("__init__.py")
    }
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"


def test_import_memsim_loads_no_stage():
    code = (
        "import sys, memsim; heavy = [m for m in ('numpy', 'pandas', 'numba', 'pyarrow', "
        "'matplotlib', 'torch', 'rich', 'scipy', 'simpy') if m in sys.modules]; "
        "assert not heavy, heavy; assert callable(memsim.run)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_public_names_resolve():
    assert set(memsim.__all__) == {"__version__", *memsim._LAZY}  # the listing is the loader's
    for name in memsim.__all__:
        assert getattr(memsim, name) is not None, name
    with pytest.raises(AttributeError):
        memsim.no_such_name  # noqa: B018


@pytest.mark.slow
def test_wheel_runs_the_main_job_outside_the_checkout(tmp_path):
    """Build the wheel, install it into a fresh venv, run the main job from another folder by
    name, from the CLI and from Python (the dependencies come from this environment)."""
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = dist.glob("memsim-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    # the dependencies: this environment's site-packages, after the venv's own (a .pth line)
    (Path(purelib) / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MEMSIM_DATA")}
    env["MEMSIM_DATA"] = str(work / "no-data")  # the released data is not part of a wheel
    cli = subprocess.run(
        [str(venv / "bin" / "memsim"), "run", "videomem", "--scale", "0.03", "--quiet"],
        cwd=work, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert "fitted targets within tolerance" in cli.stdout
    assert (work / "runs" / "videomem" / "scores.csv").is_file()
    code = (
        "import memsim\n"
        "result = memsim.run('videomem', scale=0.03)\n"
        "assert '/venv/' in memsim.__file__, memsim.__file__\n"
        "print(result.fitted, len(result.table))\n"
    )
    py_run = subprocess.run(
        [str(py), "-c", code], cwd=work, env=env, capture_output=True, text=True
    )
    assert py_run.returncode == 0, py_run.stderr
    ok, counted = map(int, py_run.stdout.split(")")[0].strip("(").split(","))
    assert counted > 0 and ok <= counted
    # the shipped posterior travels too: a study names it, and its estimator loads
    code = (
        "from memsim import resources\n"
        "from memsim.study.infer import posterior_draws\n"
        "d = resources.posterior_path('videomem')\n"
        "assert '/venv/' in str(d), d\n"
        "print(sorted(p.name for p in d.iterdir()), len(posterior_draws(d, 3)))\n"
        "import memsim\n"  # and the notebook's way to it: a draw as a parameter set
        "assert memsim.posterior('videomem').params(2).name == 'videomem posterior draw 2'\n"
    )
    post = subprocess.run([str(py), "-c", code], cwd=work, env=env, capture_output=True, text=True)
    assert post.returncode == 0, post.stderr
    assert "'estimator.pt'" in post.stdout and "'base-params.yaml'" in post.stdout
    assert "'figures'" not in post.stdout and post.stdout.rstrip().endswith(" 3")


def test_no_import_cycles():
    """No module imports itself through others (import-linter's layers keep the stages apart;
    this keeps the modules inside a stage apart too)."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("memsim")
    edges = {
        m: {d for d in graph.find_modules_directly_imported_by(m) if d.startswith("memsim")}
        for m in graph.modules
    }
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> list[str] | None:
        state[m] = 1
        for d in sorted(edges.get(m, ())):
            if state.get(d) == 1:
                return [*path, m, d]
            if d not in state and (cycle := visit(d, [*path, m])):
                return cycle
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state:
            cycle = visit(m, [])
            assert cycle is None, " -> ".join(cycle)
