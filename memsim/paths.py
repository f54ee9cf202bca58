"""Dotted paths into a dumped protocol or parameter set: one way to name a setting.

``steps.0.items.0.repeat_lag`` walks mappings by key and lists by 0-based index. Study files
vary settings by these paths, calibration names its free parameters by them, and
:meth:`memsim.design.protocol.Protocol.updated` / :meth:`memsim.sim.params.Params.updated`
change settings by them.

>>> from memsim.paths import get_path, set_path
>>> d = {"steps": [{"length": 180}]}
>>> set_path(d, "steps.0.length", 120); get_path(d, "steps.0.length")
120
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["locate", "get_path", "set_path"]


def locate(root: Any, path: str) -> tuple[Any, Any]:
    """The container holding ``path``'s last part, and that part's key (a str or an index).

    Raises KeyError with a one-line message naming where the path leaves the tree.
    """
    parts = path.split(".")
    node: Any = root
    for depth, part in enumerate(parts):
        here = ".".join(parts[:depth]) or "(top level)"
        if isinstance(node, dict):
            if part not in node:
                known = ", ".join(map(str, node)) or "none"
                raise KeyError(f"{here} has no field {part!r} (fields: {known})")
            key: Any = part
        elif isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise KeyError(f"{here} is a list of {len(node)}; {part!r} is not an index in it")
            key = int(part)
        else:
            shown = json.dumps(node, sort_keys=True, separators=(",", ":"), default=str)
            raise KeyError(f"{here} is {shown}, which has no fields")
        if depth == len(parts) - 1:
            return node, key
        node = node[key]
    raise KeyError(f"{path!r} names no field")  # pragma: no cover - split gives >= 1 part


def get_path(root: Any, path: str) -> Any:
    """The value at ``path``."""
    node, key = locate(root, path)
    return node[key]


def set_path(root: Any, path: str, value: Any, *, create: bool = False) -> None:
    """Set the value at ``path``; with ``create``, missing mapping keys on the way are added
    (a forgetting law's shape parameter absent from a dump, say)."""
    if create:
        parts = path.split(".")
        node = root
        for part in parts[:-1]:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        last = parts[-1]
        node[int(last) if isinstance(node, list) else last] = value
        return
    node, key = locate(root, path)
    node[key] = value
