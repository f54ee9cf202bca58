"""Numba's cache is dropped when any jitted source changes (memsim/_jitcache.py)."""

import importlib
import re
import shutil
from pathlib import Path

from memsim import _jitcache

PKG = Path(_jitcache.__file__).resolve().parent


def test_every_jitted_module_is_listed_and_imports_the_check():
    jitted = {
        p.relative_to(PKG).with_suffix("").as_posix()
        for p in PKG.rglob("*.py")
        if re.search(r"^@njit\(", p.read_text(), re.M)
    }
    assert jitted == set(_jitcache.JIT_MODULES)
    # numba opens a function's cache at its first compilation (its first call), after every
    # top-level import of its module has run: a top-level import of the check is enough
    for name in jitted:
        module = importlib.import_module("memsim." + name.replace("/", "."))
        assert module._jitcache is _jitcache, name


def _fake_cache(root: Path, stem: str) -> list[Path]:
    files = [
        root / "__pycache__" / f"{stem}.py311.nbi",
        root / "__pycache__" / f"{stem}.py311.1.nbc",
    ]
    for f in files:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"compiled")
    return files


def _copy_sources(dest: Path) -> None:
    for name in _jitcache.JIT_MODULES:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PKG / f"{name}.py", dest / f"{name}.py")


def test_cache_dropped_only_when_a_jitted_source_changes(tmp_path, monkeypatch):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.delenv("NUMBA_DISABLE_JIT", raising=False)
    _copy_sources(tmp_path)
    old = _fake_cache(tmp_path / "sim", "kernel._simulate_step-1")

    # no stamp yet: whatever is cached may be stale
    assert _jitcache.refresh(tmp_path) is True
    assert not any(f.exists() for f in old)
    stamp = tmp_path / "__pycache__" / "memsim-jit-sources.sha256"
    assert stamp.read_text() == _jitcache.sources_digest(tmp_path)

    # same sources: the cache stays
    kept = _fake_cache(tmp_path / "sim", "kernel._simulate_step-1")
    kept += _fake_cache(tmp_path / "analysis", "consistency._group_sums_kernel-1")
    assert _jitcache.refresh(tmp_path) is False
    assert all(f.exists() for f in kept)

    # a callee in another file changes (a new forgetting law): every cache file goes
    law = tmp_path / "sim" / "forgetting.py"
    law.write_text(law.read_text() + "\n# changed\n")
    assert _jitcache.refresh(tmp_path) is True
    assert not any(f.exists() for f in kept)
    assert stamp.read_text() == _jitcache.sources_digest(tmp_path)


def test_a_user_cache_dir_is_left_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "elsewhere"))
    _copy_sources(tmp_path)
    files = _fake_cache(tmp_path, "rng.next_uniform-10")
    assert _jitcache.refresh(tmp_path) is False
    assert all(f.exists() for f in files)
