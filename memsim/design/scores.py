"""The scores format: VideoMem's ground truth, so real and simulated scores share one analysis.

``video,short-term_memorability,nb_short-term_annotations,long-term_memorability,
nb_long-term_annotations``: per scored step a score column ``<x>_memorability`` and its count
column ``nb_<x>_annotations`` (:func:`count_column`). Files are read as released (a
byte-order mark and CRLF line ends allowed) and written as UTF-8 with LF, atomically.
"""

from __future__ import annotations

import io
import os

import numpy as np
import pandas as pd

from memsim.errors import UserError
from memsim.io import atomic_path, read_text

__all__ = ["count_column", "read_scores", "write_scores"]


def count_column(column: str) -> str:
    """Annotation-count column of a score column: ``x_memorability`` -> ``nb_x_annotations``."""
    stem = column[: -len("_memorability")] if column.endswith("_memorability") else column
    return f"nb_{stem}_annotations"


def write_scores(df: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write scores as CSV (UTF-8, no BOM, LF), atomically: a failed write leaves nothing behind."""
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, lineterminator="\n")  # floats as shortest round-trip repr


def read_scores(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a scores CSV in the VideoMem ground-truth format, as released (BOM and CRLF allowed).

    Returns the table unchanged: ``video`` as in the file (names such as ``video10.webm``
    or integer ids), every other column numeric.
    """
    text = read_text(path, "scores file")
    if not text.strip():
        raise UserError("empty scores file", path=path)
    try:
        df = pd.read_csv(io.StringIO(text))
    except (pd.errors.ParserError, ValueError) as exc:
        raise UserError(f"cannot parse scores CSV: {str(exc).splitlines()[0]}", path=path) from None
    df.columns = [str(c).strip() for c in df.columns]
    if "video" not in df.columns:
        raise UserError("scores file lacks column 'video'", path=path)
    if df.empty:
        raise UserError("no rows: a header and no video", path=path)
    for c in df.columns:
        if c == "video":
            continue
        if not pd.api.types.is_numeric_dtype(df[c]):
            raise UserError(f"column '{c}': not numeric", path=path)
        v = df[c].to_numpy(float)
        # a score is a share of recognised repeats, a count of annotations is whole and
        # non-negative; NaN stands for a video without one (no kept test)
        if c.endswith("_memorability"):
            bad = ~np.isnan(v) & ~((v >= 0) & (v <= 1))
            what = "a score outside [0, 1]"
        elif c.startswith("nb_"):
            bad = ~np.isnan(v) & ~((v >= 0) & (v == np.floor(v)))
            what = "an annotation count that is not a whole number of at least 0"
        else:
            continue
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise UserError(
                f"column '{c}': {what} ({float(v[i])} for video {df['video'].iloc[i]})", path=path
            )
    dup = df["video"].duplicated()
    if dup.any():
        first = df["video"][dup].iloc[0]
        raise UserError(f"column 'video': duplicate videos, e.g. {first!r}", path=path)
    return df
