"""The repository's scripts (docs/, calibration/) as modules, for the tests that call them."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from memsim.resources import repository_root


def load_script(relative: str, name: str | None = None):
    """The script at ``relative`` (to the repository's root) imported as module ``name``
    (default: its path with ``_`` for ``/``), registered in ``sys.modules`` (dataclasses look
    their module up there), with its own folder on ``sys.path`` while it loads. Skips the
    calling test where the script is not there: an installed wheel carries no repository
    scripts."""
    root = repository_root()
    path = None if root is None else root / relative
    if path is None or not path.is_file():
        pytest.skip(f"{relative} is in the repository, not in a wheel")
    name = name or relative.removesuffix(".py").replace("/", "_")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    # as `python SCRIPT` runs it: the script's own folder first on the path (its helpers,
    # such as calibration/_script.py)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module
