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


def _tags(tp) -> set:
    """The names a union member answers to in an error location: its ``kind`` literal(s)
    and any pydantic ``Tag``."""
    import typing

    names = set()
    if typing.get_origin(tp) is typing.Annotated:
        inner, *meta = typing.get_args(tp)
        names |= {getattr(m, "tag", None) for m in meta} - {None}
        tp = inner
    fields = getattr(tp, "model_fields", None)
    if fields and "kind" in fields:
        names |= {a for a in typing.get_args(fields["kind"].annotation) if isinstance(a, str)}
    return names


def _unwrap(tp):
    import typing

    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _child(tp, part):
    """The type found at ``part`` (a field name, a list index, a union tag) inside ``tp``."""
    import types
    import typing

    tp = _unwrap(tp)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        members = [m for m in typing.get_args(tp) if m is not type(None)]
        for m in members:  # a discriminated union names the member it tried
            if part in _tags(m):
                return _unwrap(m)
        for m in members:
            found = _child(m, part)
            if found is not None:
                return found
        return None
    if isinstance(part, int) and origin in (list, tuple):
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return args[part] if part < len(args) else None
        return args[0] if args else None
    if origin is dict:
        return typing.get_args(tp)[1]
    fields = getattr(tp, "model_fields", None)
    if fields is not None and part in fields:
        return fields[part].annotation
    return None


def field_names_at(model, loc: tuple) -> list[str]:
    """The field names allowed in the mapping that holds ``loc[-1]``, inside ``model`` (a
    pydantic model class), following pydantic's error location (list indices, union tags);
    [] when the location leads nowhere known."""
    tp = model
    for part in loc[:-1]:
        tp = _child(tp, part)
        if tp is None:
            return []
    tp = _unwrap(tp)
    import types
    import typing

    if typing.get_origin(tp) in (typing.Union, types.UnionType):  # a union: any member's
        names: list[str] = []
        for m in typing.get_args(tp):
            names += [n for n in getattr(_unwrap(m), "model_fields", {}) if n not in names]
        return names
    return list(getattr(tp, "model_fields", {}))


def unknown_field_message(errors: list[dict], loc: tuple, model=None) -> str:
    """An unknown key, with the closest valid names at its place as suggestions.

    With ``model`` (the pydantic model class validated), the valid names are the fields of
    the mapping that holds the key; without it, the required siblings reported missing (a
    typo of a required field shows up twice: unknown and missing).
    """
    missing = [
        str(e["loc"][-1])
        for e in errors
        if e.get("type") == "missing" and tuple(e["loc"][:-1]) == tuple(loc[:-1])
    ]
    valid = field_names_at(model, loc) if model is not None else []
    names = list(dict.fromkeys(missing + valid))
    close = difflib.get_close_matches(str(loc[-1]), names, n=2, cutoff=0.6)
    if close:
        return f"unknown field (did you mean {' or '.join(repr(c) for c in close)}?)"
    if valid and len(valid) <= 10:
        return f"unknown field (valid here: {', '.join(valid)})"
    return "unknown field (check for a typo)"


def format_pydantic_error(exc, path: str | os.PathLike[str], model=None) -> UserError:
    """Turn a pydantic ValidationError into one line naming the first bad field path.

    An unknown key is reported first (a typo shows up twice, as an unknown key and as a
    missing one), with the closest valid names at that place as suggestions (``model``: the
    model class validated, whose fields are the valid names).
    """
    errors = exc.errors()
    unknown = [e for e in errors if e.get("type") == "extra_forbidden"]
    first = unknown[0] if unknown else errors[0]
    loc = tuple(first.get("loc", ()))
    msg = first.get("msg", "invalid").removeprefix("Value error, ")
    if first.get("type") == "extra_forbidden":
        msg = unknown_field_message(errors, loc, model)
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
