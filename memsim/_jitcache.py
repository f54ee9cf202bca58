"""Keep numba's on-disk cache true to the sources.

Numba keys each cached function by the timestamp and size of *its own* source file. A
kernel in ``sim/kernel.py`` that calls ``sim/forgetting.retention`` keeps its cached machine
code when only ``forgetting.py`` changes (a ``git pull`` into an editable install, a law added
while developing), and then runs the old law without a word. Every module of the package
with ``@njit(cache=True)`` functions imports this one first: it hashes all of those
sources together and, when the hash differs from the one stamped beside the cache, deletes
the package's cache files (numba compiles afresh) and stamps the new hash.

Only the default cache folders (the ``__pycache__`` beside each of those modules) are
handled; with ``NUMBA_CACHE_DIR`` set, clear that folder yourself after changing the sources.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

# every module with @njit(cache=True) functions, relative to the package (tests/test_jitcache.py
# checks the list)
JIT_MODULES = (
    "rng",
    "analysis/consistency",
    "analysis/filters",
    "analysis/scoring",
    "sim/campaign",
    "sim/forgetting",
    "sim/kernel",
    "sim/sequence",
    "sim/simulate",
    "sim/topup",
)

_HERE = Path(__file__).resolve().parent


def sources_digest(root: Path = _HERE) -> str:
    h = hashlib.sha256()
    for name in JIT_MODULES:
        h.update(name.encode())
        h.update((root / f"{name}.py").read_bytes())
    return h.hexdigest()


def _cache_dirs(root: Path) -> list[Path]:
    return sorted({(root / name).parent / "__pycache__" for name in JIT_MODULES})


def refresh(root: Path = _HERE) -> bool:
    """Drop stale cache files beside the jitted modules under ``root``; True when some were."""
    if os.environ.get("NUMBA_CACHE_DIR") or os.environ.get("NUMBA_DISABLE_JIT"):
        return False
    stamp = root / "__pycache__" / "memsim-jit-sources.sha256"
    digest = sources_digest(root)
    try:
        if stamp.read_text() == digest:
            return False
    except OSError:
        pass
    dropped = False
    try:
        for cache in _cache_dirs(root):
            for f in list(cache.glob("*.nbi")) + list(cache.glob("*.nbc")):
                try:
                    f.unlink()
                    dropped = True
                except FileNotFoundError:  # another process dropped it first
                    pass
        stamp.parent.mkdir(exist_ok=True)
        tmp = stamp.with_name(f"{stamp.name}.{os.getpid()}")
        tmp.write_text(digest)
        os.replace(tmp, stamp)
    except OSError:  # a read-only install: numba then caches elsewhere or not at all
        return dropped
    return dropped


refresh()


def cold(module: str = "sim/kernel") -> bool | None:
    """True when none of ``module``'s kernels has compiled code in numba's cache (the first
    run after installing memsim or changing its kernels: the next call compiles them, which
    takes seconds); None when that cannot be told (caching off, another numba).

    Asked before a long call, so that progress can say why it is slow.
    """
    if os.environ.get("NUMBA_DISABLE_JIT"):
        return False
    import importlib

    mod = importlib.import_module("memsim." + module.replace("/", "."))
    indexes = []
    for f in vars(mod).values():
        cache = getattr(f, "_cache", None)
        if getattr(f, "__module__", None) != mod.__name__ or cache is None:
            continue
        if f.targetoptions.get("inline") == "always":  # compiled into its callers only
            continue
        try:  # numba's own cache locator: where this function's index file lives
            indexes.append(cache._cache_file._index_path)
        except AttributeError:  # caching disabled, or a numba without this layout
            return None
    if not indexes:
        return None
    return not any(os.path.exists(p) for p in indexes)
