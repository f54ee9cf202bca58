"""What memsim ships beside its code: protocols, calibrated parameter sets, target files.

A wheel carries ``protocols/*.yaml``, ``calibration/*.yaml`` and the posteriors of
``calibration/<name>-posterior/`` (written by ``memsim infer``) as package data under
``memsim/_shipped/`` (a build-time mapping in ``pyproject.toml``; git holds one copy, at the
top of the repository, where users read and copy them). A checkout or an editable install
reads the repository's own folders. Either way the same names resolve, from any folder:

>>> from memsim import resources
>>> resources.protocol_path("videomem").name
'videomem.yaml'
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from memsim.errors import UserError

__all__ = [
    "shipped_dir",
    "shipped_protocols",
    "protocol_path",
    "params_path",
    "targets_path",
    "posterior_path",
    "repository_root",
    "is_protocol_name",
]

_PACKAGE = Path(__file__).resolve().parent
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


def repository_root() -> Path | None:
    """The checkout this package runs from (editable install), or None for a wheel."""
    root = _PACKAGE.parent
    return root if (root / "pyproject.toml").is_file() and (root / "protocols").is_dir() else None


def shipped_dir(kind: str) -> Path:
    """The folder of shipped ``protocols`` or ``calibration`` files."""
    if kind not in ("protocols", "calibration"):
        raise ValueError(f"unknown kind of shipped file {kind!r}")
    packaged = _PACKAGE / "_shipped" / kind
    if packaged.is_dir():
        return packaged
    root = repository_root()
    if root is None:  # pragma: no cover - a broken install
        raise UserError(
            f"memsim's shipped {kind} are missing from this installation", path=packaged
        )
    return root / kind


def shipped_protocols() -> list[str]:
    """Names of the shipped protocols (``memsim run NAME``)."""
    return sorted(p.stem for p in shipped_dir("protocols").glob("*.yaml"))


def is_protocol_name(text: str | os.PathLike[str]) -> bool:
    """True when ``text`` is a bare name (no folder, no suffix) rather than a path."""
    s = str(text)
    return bool(_NAME.match(s)) and not s.endswith((".yaml", ".yml"))


def protocol_path(name_or_path: str | os.PathLike[str]) -> Path:
    """A shipped protocol by name (``"videomem"``), or the path as given."""
    if is_protocol_name(name_or_path) and not Path(name_or_path).exists():
        p = shipped_dir("protocols") / f"{name_or_path}.yaml"
        if not p.is_file():
            known = ", ".join(shipped_protocols())
            raise UserError(
                f"no shipped protocol named {str(name_or_path)!r} (shipped: {known}); "
                f"or give a path to a protocol file"
            )
        return p
    p = Path(name_or_path)
    if not p.exists() and p.suffix in (".yaml", ".yml") and p.stem in shipped_protocols():
        # protocols/videomem.yaml outside a checkout: the installed package ships it by name
        raise UserError(
            f"no such protocol file; memsim ships a protocol named {p.stem!r}: give its name "
            f"to use that one",
            path=p,
        )
    return p


def params_path(protocol_name: str) -> Path | None:
    """The protocol's own calibrated parameter set, ``calibration/<name>.yaml``; None if none."""
    if not _NAME.match(protocol_name):
        return None
    p = shipped_dir("calibration") / f"{protocol_name}.yaml"
    return p if p.is_file() else None


def targets_path(protocol_name: str) -> Path | None:
    """The protocol's target file, ``calibration/<name>-targets.yaml``; None if none."""
    if not _NAME.match(protocol_name):
        return None
    p = shipped_dir("calibration") / f"{protocol_name}-targets.yaml"
    return p if p.is_file() else None


def shipped_posteriors() -> list[str]:
    """Names of the shipped posteriors (``params: posterior NAME`` in a study file)."""
    d = shipped_dir("calibration")
    return sorted(
        p.name[: -len("-posterior")]
        for p in d.glob("*-posterior")
        if (p / "posterior.parquet").is_file()
    )


def posterior_path(name_or_path: str | os.PathLike[str], base: Path | None = None) -> Path:
    """A posterior folder: a shipped one by protocol name (``"videomem"`` is
    ``calibration/videomem-posterior/``), else the folder as given, relative to ``base``.

    A folder of that name under ``base`` wins over the shipped posterior of the same name.
    """
    given = Path(base or ".") / name_or_path
    if is_protocol_name(name_or_path) and not given.exists():
        p = shipped_dir("calibration") / f"{name_or_path}-posterior"
        if not (p / "posterior.parquet").is_file():
            known = ", ".join(shipped_posteriors()) or "none"
            raise UserError(
                f"no shipped posterior named {str(name_or_path)!r} (shipped: {known}); "
                "or give the folder `memsim infer` wrote"
            )
        return p
    return given
