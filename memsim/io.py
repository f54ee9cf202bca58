"""File helpers shared by every stage: atomic writes, strict JSON, forgiving-but-strict reads.

Everything memsim writes goes to a temporary name in the target folder and is
renamed into place, so an interrupted or failed command never leaves a
half-written file behind.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import yaml

from memsim.errors import UserError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_text(path: str | os.PathLike[str], what: str = "file") -> str:
    """Read a UTF-8 text file (BOM allowed), turning OS errors into one-line UserErrors."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"no such {what}", path=p)
    if p.is_dir():
        raise UserError(f"is a directory, expected a {what}", path=p)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {what}: {exc.strerror}", path=p) from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"not UTF-8 text (byte {exc.start})", path=p) from None


def load_yaml_mapping(path: str | os.PathLike[str], what: str = "YAML file") -> dict:
    """Load a YAML file that must hold a mapping at its top level."""
    text = read_text(path, what)
    if not text.strip():
        raise UserError(f"empty {what}", path=path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise UserError(f"not valid YAML{where}: {problem}", path=path) from None
    if not isinstance(data, dict):
        raise UserError(f"top level must be a mapping, got {type(data).__name__}", path=path)
    return data


def unknown_field_message(errors: list[dict], loc: tuple) -> str:
    """An unknown key, with the closest missing sibling as a suggestion (a typo shows up twice)."""
    missing = [
        str(e["loc"][-1])
        for e in errors
        if e.get("type") == "missing" and tuple(e["loc"][:-1]) == tuple(loc[:-1])
    ]
    close = difflib.get_close_matches(str(loc[-1]), missing, n=1)
    return (
        f"unknown field (did you mean '{close[0]}'?)"
        if close
        else "unknown field (check for a typo)"
    )


def format_pydantic_error(exc, path: str | os.PathLike[str]) -> UserError:
    """Turn a pydantic ValidationError into one line naming the first bad field path.

    A typo shows up twice, as an unknown key and as a missing one: the unknown key
    is reported, with the closest missing name as a suggestion.
    """
    errors = exc.errors()
    unknown = [e for e in errors if e.get("type") == "extra_forbidden"]
    first = unknown[0] if unknown else errors[0]
    loc = tuple(first.get("loc", ()))
    msg = first.get("msg", "invalid").removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        msg = unknown_field_message(errors, loc)
    elif first.get("type") == "missing":
        msg = "required field missing"
    where = ".".join(str(x) for x in loc) or "(top level)"
    n = len(errors) - 1
    extra = f" (and {n} more problem{'s' if n > 1 else ''})" if n else ""
    return UserError(f"{where}: {msg}{extra}", path=path)


def jsonable(x):
    """A copy of nested dicts/lists with numpy scalars and arrays as Python numbers and lists,
    and NaN/inf as None (JSON has no NaN)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if hasattr(x, "tolist") and hasattr(x, "dtype"):  # numpy arrays and scalars
        x = x.tolist()
        if isinstance(x, list):
            return [jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def dumps_json(obj, *, newline: bool = False) -> str:
    """Strict JSON (NaN written as null) indented by one space, as memsim writes summaries."""
    return json.dumps(jsonable(obj), indent=1, allow_nan=False) + ("\n" if newline else "")
