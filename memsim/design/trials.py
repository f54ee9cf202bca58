"""The trial table: one row per presentation, checked by one function.

In: a pandas DataFrame (or a Parquet / CSV file) with the columns of SPEC.md
"Data contracts". Out: the same rows with canonical dtypes (``role`` a
categorical of :data:`ROLES`; extra columns kept as they are), or a
:class:`memsim.errors.UserError` naming the column and the first offending rows.

Everything downstream (``scoring``, ``consistency``) trusts a table that passed
:func:`validate_trials`; nothing else checks it again. Row numbers in messages
are 0-based positions in the table (for a CSV file, line = row + 2).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from memsim.errors import UserError
from memsim.io import check_input

__all__ = ["COLUMNS", "ROLES", "check_against_protocol", "validate_trials", "read_trials"]

ROLES = ("target", "filler", "vigilance")

#: Required columns and their canonical dtypes, in contract order.
COLUMNS: dict[str, str] = {
    "participant": "int64",
    "step": "int8",
    "position": "int16",
    "video": "int32",
    "role": "category",
    "repeat": "bool",
    "lag": "int16",
    "delay_s": "float64",
    "response": "bool",
    "rt_s": "float32",
    "onset_s": "float64",
}
_NULLABLE = {"delay_s", "rt_s"}  # NaN has a meaning there (first showing / no press)
_TRUE = {"true", "t", "1", "yes"}
_FALSE = {"false", "f", "0", "no"}


def _rows(mask: np.ndarray) -> str:
    idx = np.flatnonzero(mask)
    shown = ", ".join(str(i) for i in idx[:3])
    more = f" (and {len(idx) - 3} more)" if len(idx) > 3 else ""
    return f"row{'s' if len(idx) > 1 else ''} {shown}{more}"


def _numeric(col: pd.Series, name: str, expected: str, source) -> pd.Series:
    """Text parsed as numbers (a cell that is not one is an error); booleans refused."""
    s = col
    if s.dtype == object or isinstance(s.dtype, pd.StringDtype):
        s = pd.to_numeric(s, errors="coerce")
        bad = s.isna().to_numpy() & col.notna().to_numpy()
        if bad.any():
            raise UserError(f"column '{name}': not a number in {_rows(bad)}", path=source)
    if s.dtype == bool:
        raise UserError(f"column '{name}': expected {expected}, got booleans", path=source)
    return s


def _float64(s: pd.Series, col: pd.Series, name: str, expected: str, source) -> np.ndarray:
    try:
        return s.to_numpy(dtype="float64", na_value=np.nan)
    except (TypeError, ValueError):
        raise UserError(
            f"column '{name}': expected {expected}, got {col.dtype}", path=source
        ) from None


def _out_of_range(v: np.ndarray, name: str, dtype: str, source) -> None:
    info = np.iinfo(dtype)
    out = (v < info.min) | (v > info.max)
    raise UserError(
        f"column '{name}': values outside {dtype} [{info.min}, {info.max}] in {_rows(out)}",
        path=source,
    )


def _as_int(col: pd.Series, name: str, dtype: str, source) -> np.ndarray:
    s = _numeric(col, name, "integers", source)
    info = np.iinfo(dtype)
    if s.dtype.kind in "iu":  # fast exact path: no NaN possible, only the range to check
        v = s.to_numpy()
        if len(v) and (v.min() < info.min or v.max() > info.max):
            _out_of_range(v, name, dtype, source)
        return v.astype(dtype, copy=False)
    v = _float64(s, col, name, "integers", source)
    nan = np.isnan(v)
    if nan.any():
        raise UserError(f"column '{name}': missing values (NaN) in {_rows(nan)}", path=source)
    frac = v != np.round(v)
    if frac.any():
        raise UserError(f"column '{name}': non-integer values in {_rows(frac)}", path=source)
    if ((v < info.min) | (v > info.max)).any():
        _out_of_range(v, name, dtype, source)
    return v.astype(dtype)


def _as_float(col: pd.Series, name: str, dtype: str, source) -> np.ndarray:
    s = _numeric(col, name, "numbers", source)
    v = _float64(s, col, name, "numbers", source)
    inf = np.isinf(v)
    if inf.any():
        raise UserError(f"column '{name}': infinite values in {_rows(inf)}", path=source)
    if name not in _NULLABLE and np.isnan(v).any():
        raise UserError(
            f"column '{name}': missing values (NaN) in {_rows(np.isnan(v))}", path=source
        )
    big = np.abs(v) > np.finfo(dtype).max  # would become infinite in the contract's dtype
    if big.any():
        raise UserError(
            f"column '{name}': values beyond the range of {dtype} in {_rows(big)}", path=source
        )
    return v.astype(dtype)


def _as_bool(col: pd.Series, name: str, source) -> np.ndarray:
    if col.dtype == bool:
        return col.to_numpy()
    if col.dtype.kind in "iuf" or str(col.dtype) == "boolean":
        v = col.to_numpy(dtype="float64", na_value=np.nan)
        if np.isnan(v).any():
            raise UserError(f"column '{name}': missing values in {_rows(np.isnan(v))}", path=source)
        bad = (v != 0) & (v != 1)
        if bad.any():
            raise UserError(
                f"column '{name}': expected true/false or 0/1 in {_rows(bad)}", path=source
            )
        return v == 1
    text = col.astype("string").str.strip().str.lower()
    t = text.isin(_TRUE).to_numpy(dtype=bool, na_value=False)
    f = text.isin(_FALSE).to_numpy(dtype=bool, na_value=False)
    bad = ~(t | f)
    if bad.any():
        raise UserError(f"column '{name}': expected true/false in {_rows(bad)}", path=source)
    return t


def _as_role(col: pd.Series, source) -> pd.Categorical:
    """Map roles to the canonical categorical, working on distinct values only (fast)."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        codes, uniques = col.cat.codes.to_numpy(), col.cat.categories
    else:
        codes, uniques = pd.factorize(col, use_na_sentinel=True)
    names = [str(u).strip().lower() for u in uniques]
    lut = np.array([ROLES.index(n) if n in ROLES else -1 for n in names] + [-1], dtype=np.int8)
    mapped = lut[codes]  # code -1 (missing) hits the trailing -1
    unknown = mapped < 0
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        raise UserError(
            f"column 'role': unknown role {col.iloc[i]!r} in {_rows(unknown)} "
            f"(expected {', '.join(ROLES)})",
            path=source,
        )
    return pd.Categorical.from_codes(mapped, categories=list(ROLES))


def validate_trials(df: pd.DataFrame, source: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Check a trial table and return it with canonical dtypes.

    Parameters
    ----------
    df : DataFrame
        One row per presentation, the columns of :data:`COLUMNS` (extra ones allowed).
    source : path, optional
        Named in error messages.

    Returns
    -------
    DataFrame
        A new frame, same rows and order, required columns cast to :data:`COLUMNS`.

    Raises
    ------
    UserError
        One line naming the column and the first offending rows.
    """
    if not isinstance(df, pd.DataFrame):
        raise UserError(f"trial table must be a table, got {type(df).__name__}", path=source)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise UserError(
            f"trial table lacks column{'s' if len(missing) > 1 else ''} {', '.join(missing)}",
            path=source,
        )
    if df.columns.duplicated().any():
        dup = sorted(set(df.columns[df.columns.duplicated()]))
        raise UserError(
            f"trial table has duplicate columns {', '.join(map(str, dup))}", path=source
        )
    if len(df) == 0:
        raise UserError("trial table is empty (no rows)", path=source)

    out: dict[str, object] = {}
    for name, dtype in COLUMNS.items():
        col = df[name]
        if name == "role":
            out[name] = _as_role(col, source)
        elif dtype == "bool":
            out[name] = _as_bool(col, name, source)
        elif dtype.startswith("int"):
            out[name] = _as_int(col, name, dtype, source)
        else:
            out[name] = _as_float(col, name, dtype, source)

    step, pos, lag = out["step"], out["position"], out["lag"]
    rep, resp = out["repeat"], out["response"]
    rt, delay, onset = out["rt_s"], out["delay_s"], out["onset_s"]
    checks = [
        (step < 1, "step", "steps are 1-based, found values below 1"),
        (pos < 0, "position", "negative positions"),
        (lag < -1, "lag", "lags below -1 (-1 means none)"),
        (~rep & (lag != -1), "lag", "a lag on a presentation that is not a repeat"),
        (
            lag > pos,
            "lag",
            "lag larger than the position (the first showing would precede the step)",
        ),
        (~rep & ~np.isnan(delay), "delay_s", "a delay on a first showing (must be NaN)"),
        (delay < 0, "delay_s", "negative delays"),
        (rep & (lag == -1) & np.isnan(delay), "delay_s", "a repeat with neither a lag nor a delay"),
        (~resp & ~np.isnan(rt), "rt_s", "a response time without a response"),
        (resp & np.isnan(rt), "rt_s", "a response without a response time"),
        (rt < 0, "rt_s", "negative response times"),
        (onset < 0, "onset_s", "negative onsets"),
    ]
    with np.errstate(invalid="ignore"):
        for mask, name, what in checks:
            mask = np.asarray(mask)
            if mask.any():
                raise UserError(f"column '{name}': {what} in {_rows(mask)}", path=source)

    # one int64 key per (participant, step, position); hashing it once is the cheap path
    pcode = pd.factorize(out["participant"])[0].astype(np.int64)
    key = (pcode << 24) | (step.astype(np.int64) << 16) | pos.astype(np.int64)
    dup = np.zeros(len(key), bool)
    if not (key[1:] > key[:-1]).all():  # logs grouped by participant in order skip the sort
        order = np.argsort(key, kind="stable")
        ks = key[order]
        dup[order[1:][ks[1:] == ks[:-1]]] = True
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise UserError(
            "duplicate (participant, step, position) = "
            f"({out['participant'][i]}, {step[i]}, {pos[i]}) "
            f"in {_rows(dup)}",
            path=source,
        )

    res = df.copy(deep=False)
    for name in COLUMNS:
        res[name] = out[name]
    return res


def read_trials(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a trial table from Parquet or CSV and validate it.

    The format is chosen by the file's first bytes (Parquet starts with ``PAR1``),
    so a misnamed file still reads; anything unreadable is a one-line UserError.
    """
    p = Path(path)
    if not p.exists():
        raise UserError("no such trial table", path=p)
    if p.is_dir():
        raise UserError("is a directory, expected a trial table (Parquet or CSV)", path=p)
    check_input(p, "trial table (Parquet or CSV)")  # a FIFO or a device: refused, not opened
    try:
        with open(p, "rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise UserError(f"cannot read trial table: {exc.strerror}", path=p) from None
    if not head:
        raise UserError("empty file, expected a trial table", path=p)
    try:
        if head == b"PAR1":
            df = pd.read_parquet(p)
        else:  # a space after each comma is read as the scores reader reads it
            df = pd.read_csv(p, encoding="utf-8-sig", low_memory=False, skipinitialspace=True)
            if df.shape[1] == 1:
                sep = next((d for d in (";", "\t", "|") if d in str(df.columns[0])), None)
                if sep is not None:
                    shown = "tab" if sep == "\t" else repr(sep)
                    raise UserError(
                        f"one column only: the header looks {shown}-separated; memsim reads "
                        "comma-separated CSV (or Parquet)",
                        path=p,
                    )
    except UnicodeDecodeError:
        raise UserError("not a Parquet file nor UTF-8 CSV text", path=p) from None
    except (ValueError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        what = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"cannot parse trial table: {what}", path=p) from None
    except Exception as exc:  # pyarrow raises its own types for corrupt files
        if type(exc).__module__.startswith("pyarrow"):
            raise UserError(f"corrupt Parquet file: {str(exc).splitlines()[0]}", path=p) from None
        raise
    return validate_trials(df, source=p)


def _ranges(ranges: list[tuple[int, int]]) -> str:
    return " or ".join(f"{lo}-{hi}" for lo, hi in sorted(set(ranges)))


def check_against_protocol(
    trials: pd.DataFrame, protocol, source: str | os.PathLike[str] | None = None
) -> None:
    """Refuse a trial table that the protocol could not have produced.

    Scoring a table under another study's protocol runs without error and gives numbers that
    mean nothing (a lag correction fitted on lags outside the protocol's ranges, a step with
    no participants). This checks, for a table that passed :func:`validate_trials`: the
    table has rows for every step of the protocol and for no other; positions fit each
    step's sequence; each step's roles are the protocol's; the lag of every within-step
    repeat lies in the protocol's range for its role.

    Raises
    ------
    UserError
        One line naming the step and what disagrees.
    """
    steps = protocol.steps
    step = trials["step"].to_numpy()
    present = np.unique(step).tolist()
    extra = [s for s in present if s > len(steps)]
    if extra:
        raise UserError(
            f"the table has rows for step {extra[0]}, but protocol '{protocol.name}' has "
            f"{len(steps)} step{'s' * (len(steps) > 1)}",
            path=source,
        )
    missing = [i for i in range(1, len(steps) + 1) if i not in present]
    if missing:
        i = missing[0]
        have = ", ".join(map(str, present))
        raise UserError(
            f"protocol '{protocol.name}' has step {i} ({steps[i - 1].name}), but the table has "
            f"no row for it (its steps: {have})",
            path=source,
        )
    roles = trials["role"]
    if isinstance(roles.dtype, pd.CategoricalDtype):
        codes, names = roles.cat.codes.to_numpy(), [str(c) for c in roles.cat.categories]
    else:
        codes, uniques = pd.factorize(roles)
        names = [str(u) for u in uniques]
    pos = trials["position"].to_numpy()
    lag = trials["lag"].to_numpy()
    rep = trials["repeat"].to_numpy()
    for i, spec in enumerate(steps, start=1):
        rows = step == i
        where = f"step {i} ({spec.name})"
        top = int(pos[rows].max())
        if top >= spec.length:
            raise UserError(
                f"{where}: positions go up to {top}, but the protocol's sequence has "
                f"{spec.length} presentations (0-{spec.length - 1})",
                path=source,
            )
        allowed = {g.role for g in spec.items}
        used = {names[c] for c in np.unique(codes[rows]) if c >= 0}
        if used - allowed:
            raise UserError(
                f"{where}: the table has role '{sorted(used - allowed)[0]}', but the protocol's "
                f"step has only {', '.join(sorted(allowed))}",
                path=source,
            )
        for role in sorted(allowed):
            ranges = protocol.repeat_lags(i - 1, role)  # the pilot's lags included
            code = names.index(role) if role in names else -2
            m = rows & rep & (codes == code) & (lag >= 0)
            if not m.any():
                continue
            seen = lag[m]
            if not ranges:
                raise UserError(
                    f"{where}: {int(m.sum()):,} {role} repeats within the step (lags "
                    f"{seen.min()}-{seen.max()}), but the protocol's {role}s are not repeated "
                    "within this step",
                    path=source,
                )
            inside = np.zeros(len(seen), bool)
            for lo, hi in ranges:
                inside |= (seen >= lo) & (seen <= hi)
            if not inside.all():
                raise UserError(
                    f"{where}: {int((~inside).sum()):,} of {len(seen):,} {role} repeats have lags "
                    f"outside the protocol's {_ranges(ranges)} (the table's: "
                    f"{seen.min()}-{seen.max()})",
                    path=source,
                )
