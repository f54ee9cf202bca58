"""Loaders for the real memorability releases, read exactly as they circulate.

In: a data folder (``--data``, else ``$MEMSIM_DATA``, else ``<repo>/../shared/data``)
holding ``videomem/``, ``memento10k/`` and ``trecvid2021/`` as described in its
README. Out: pandas DataFrames and numpy arrays with the columns documented on
each function. Quirks of the releases are absorbed here and nowhere else: the
byte-order mark and CRLF line ends of the VideoMem ground truth, the leading
space before the URLs of the TRECVid dev scores, the BOM of the TRECVid train
descriptions.

Every problem (missing file, missing column, unparsable or out-of-range value,
duplicate id) leaves as one :class:`~memsim.errors.UserError` line naming the
file and what is wrong. This module imports neither torch nor matplotlib.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd

from memsim.errors import UserError
from memsim.io import read_text

__all__ = [
    "data_dir",
    "released_scores",
    "RELEASED_SCORES",
    "load_videomem_scores",
    "load_videomem_captions",
    "load_coco80",
    "load_memento_scores",
    "load_memento_descriptions",
    "load_trecvid_scores",
    "load_trecvid_descriptions",
    "VIDEOMEM_SCORE_COLUMNS",
]

VIDEOMEM_SCORE_COLUMNS = [
    "video",
    "short-term_memorability",
    "nb_short-term_annotations",
    "long-term_memorability",
    "nb_long-term_annotations",
]
MEMENTO_SCORE_COLUMNS = [
    "video_id",
    "video_url",
    "annotations_short_term",
    "scores_raw_short_term",
    "scores_normalized_short_term",
    "decay_alpha",
]
TRECVID_SCORE_COLUMNS = [
    "video_id",
    "video_url",
    "annotations_short_term",
    "annotations_long_term",
    "scores_raw_short_term",
    "scores_raw_long_term",
    "scores_normalized_short_term",
    "decay_alpha",
]


def data_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the real-data folder.

    Parameters
    ----------
    path : path-like, optional
        Explicit folder (the CLI's ``--data``). When None, ``$MEMSIM_DATA`` is
        used, else ``<repository root>/../shared/data``.

    Returns
    -------
    Path
        An existing directory.
    """
    if path is not None:
        p, how = Path(path), "--data"
    elif os.environ.get("MEMSIM_DATA"):
        p, how = Path(os.environ["MEMSIM_DATA"]), "MEMSIM_DATA"
    else:
        p, how = _default_data_dir(), "default"
    if not p.is_dir():
        raise UserError(
            f"data folder not found ({how}); pass --data DIR or set MEMSIM_DATA", path=p
        )
    return p


def _default_data_dir() -> Path:
    """``../shared/data`` beside the checkout memsim runs from, else beside the working folder."""
    from memsim.resources import repository_root

    root = repository_root()
    return (root if root is not None else Path.cwd()).parent / "shared" / "data"


# ----------------------------------------------------------------------------- helpers
def _read_table(
    path: Path, what: str, *, sep: str = ",", header: bool = True, names: list[str] | None = None
) -> pd.DataFrame:
    """Read a delimited UTF-8 file (BOM and CRLF allowed) as strings."""
    text = read_text(path, what)
    if not text.strip():
        raise UserError(f"empty {what}", path=path)
    try:
        df = pd.read_csv(
            io.StringIO(text),
            sep=sep,
            header=0 if header else None,
            names=names,
            dtype=str,
            keep_default_na=False,
            quoting=csv.QUOTE_MINIMAL if sep == "," else csv.QUOTE_NONE,
        )
    except (pd.errors.ParserError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"cannot parse {what}: {first}", path=path) from None
    df.columns = [str(c).strip() for c in df.columns]
    return df


def _require_columns(df: pd.DataFrame, columns: list[str], path: Path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise UserError(
            f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
            f"(has: {', '.join(map(str, df.columns))})",
            path=path,
        )


def _numeric(
    df: pd.DataFrame,
    col: str,
    path: Path,
    *,
    integer: bool = False,
    lo: float | None = None,
    hi: float | None = None,
) -> pd.Series:
    """Convert a string column to numbers, naming the first bad row on failure."""
    raw = df[col].str.strip()
    vals = pd.to_numeric(raw, errors="coerce")
    bad = vals.isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise UserError(f"column {col}, data row {i + 1}: not a number: {raw.iloc[i]!r}", path=path)
    if integer:
        if not np.all(np.mod(vals.to_numpy(dtype=float), 1.0) == 0):
            i = int(np.flatnonzero(np.mod(vals.to_numpy(dtype=float), 1.0) != 0)[0])
            raise UserError(
                f"column {col}, data row {i + 1}: not an integer: {raw.iloc[i]!r}", path=path
            )
        vals = vals.astype(np.int64)
    else:
        vals = vals.astype(np.float64)
    arr = vals.to_numpy(dtype=float)
    out = np.zeros(len(arr), dtype=bool)
    if lo is not None:
        out |= arr < lo
    if hi is not None:
        out |= arr > hi
    if out.any():
        i = int(np.flatnonzero(out)[0])
        raise UserError(
            f"column {col}, data row {i + 1}: {raw.iloc[i]} outside [{lo}, {hi}]", path=path
        )
    return vals


def _unique(df: pd.DataFrame, col: str, path: Path) -> None:
    dup = df[col].duplicated()
    if dup.any():
        raise UserError(f"duplicate {col} {df[col][dup].iloc[0]!r}", path=path)


def _nonempty(df: pd.DataFrame, col: str, path: Path) -> None:
    empty = df[col].str.strip() == ""
    if empty.any():
        i = int(np.flatnonzero(empty.to_numpy())[0])
        raise UserError(f"column {col}, data row {i + 1}: empty", path=path)


# ----------------------------------------------------------------------------- VideoMem
def load_videomem_scores(root: str | os.PathLike[str]) -> pd.DataFrame:
    """Released VideoMem dev-set ground truth (``videomem/ground-truth_dev-set.csv``).

    Returns
    -------
    DataFrame
        One row per video, in file order: ``video`` (str, e.g. ``video10.webm``),
        ``short-term_memorability`` (float64, lag-corrected), ``nb_short-term_annotations``
        (int64), ``long-term_memorability`` (float64, raw hit rate),
        ``nb_long-term_annotations`` (int64).
    """
    path = Path(root) / "videomem" / "ground-truth_dev-set.csv"
    df = _read_table(path, "VideoMem scores file")
    _require_columns(df, VIDEOMEM_SCORE_COLUMNS, path)
    df = df[VIDEOMEM_SCORE_COLUMNS].copy()
    df["video"] = df["video"].str.strip()
    _nonempty(df, "video", path)
    _unique(df, "video", path)
    for col in ("short-term_memorability", "long-term_memorability"):
        df[col] = _numeric(df, col, path, lo=0.0, hi=1.0)
    for col in ("nb_short-term_annotations", "nb_long-term_annotations"):
        df[col] = _numeric(df, col, path, integer=True, lo=1)
    return df.reset_index(drop=True)


def load_videomem_captions(root: str | os.PathLike[str], split: str = "all") -> pd.DataFrame:
    """VideoMem titles (``videomem/{dev,test}-set_video-captions.txt``).

    Parameters
    ----------
    split : {"dev", "test", "all"}
        ``all`` is dev followed by test (10,000 videos).

    Returns
    -------
    DataFrame
        ``video`` (str), ``title`` (str, dash-joined tags as released), ``split``
        (``dev`` or ``test``).
    """
    if split not in ("dev", "test", "all"):
        raise ValueError(f"split must be dev, test or all, got {split!r}")
    parts = []
    for s in ("dev", "test") if split == "all" else (split,):
        path = Path(root) / "videomem" / f"{s}-set_video-captions.txt"
        df = _read_table(path, "VideoMem captions file", sep="\t", header=False)
        if df.shape[1] != 2:
            raise UserError(
                f"expected 2 tab-separated fields per line, found {df.shape[1]}", path=path
            )
        df.columns = ["video", "title"]
        df["video"] = df["video"].str.strip()
        df["title"] = df["title"].str.strip()
        _nonempty(df, "video", path)
        _unique(df, "video", path)
        df["split"] = s
        parts.append(df)
    out = pd.concat(parts, ignore_index=True)
    if split == "all" and out["video"].duplicated().any():
        raise UserError(
            f"video {out['video'][out['video'].duplicated()].iloc[0]!r} is in both "
            "the dev and the test captions",
            path=Path(root) / "videomem",
        )
    return out


def load_coco80(root: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """COCO-80 detector features of all VideoMem videos.

    Returns
    -------
    ids : ndarray of str, shape (n,)
        Video names (``videomem/coco80_ids.txt``), the row order of both arrays.
    rn101, rn152 : ndarray of float32, shape (n, 80)
        Per-video mean COCO-80 class probabilities from the two backbones.
    """
    base = Path(root) / "videomem"
    ids_path = base / "coco80_ids.txt"
    ids = np.array(
        [ln.strip() for ln in read_text(ids_path, "COCO-80 id list").splitlines() if ln.strip()],
        dtype=object,
    )
    if len(ids) == 0:
        raise UserError("empty COCO-80 id list", path=ids_path)
    if len(set(ids)) != len(ids):
        raise UserError("duplicate video names", path=ids_path)
    arrays = []
    for name in ("coco80_rn101.npy", "coco80_rn152.npy"):
        path = base / name
        if not path.exists():
            raise UserError("no such COCO-80 feature file", path=path)
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise UserError(f"not a readable .npy array: {exc}", path=path) from None
        if arr.ndim != 2 or arr.shape[1] != 80:
            raise UserError(f"expected shape (n, 80), found {arr.shape}", path=path)
        if arr.shape[0] != len(ids):
            raise UserError(
                f"{arr.shape[0]} rows but {len(ids)} names in {ids_path.name}", path=path
            )
        arr = np.asarray(arr, dtype=np.float32)
        if not np.all(np.isfinite(arr)):
            raise UserError("contains NaN or infinite values", path=path)
        arrays.append(arr)
    return ids, arrays[0], arrays[1]


# ----------------------------------------------------------------------------- Memento10k
def load_memento_scores(root: str | os.PathLike[str]) -> pd.DataFrame:
    """Memento10k released training scores (``memento10k/train_scores.csv``).

    Returns
    -------
    DataFrame
        ``video_id`` (int64), ``video_url`` (str), ``annotations_short_term`` (int64),
        ``scores_raw_short_term``, ``scores_normalized_short_term`` (float64 in [0, 1]),
        ``decay_alpha`` (float64).
    """
    path = Path(root) / "memento10k" / "train_scores.csv"
    return _scores(path, MEMENTO_SCORE_COLUMNS, "Memento10k scores file")


def load_memento_descriptions(root: str | os.PathLike[str], split: str = "train") -> pd.DataFrame:
    """Memento10k text descriptions (``memento10k/{train,dev}_text_descriptions.csv``).

    Returns
    -------
    DataFrame
        ``video_id`` (int64) and ``description_0`` ... ``description_4`` (str), one row
        per video.
    """
    if split not in ("train", "dev"):
        raise ValueError(f"split must be train or dev, got {split!r}")
    path = Path(root) / "memento10k" / f"{split}_text_descriptions.csv"
    df = _read_table(path, "Memento10k descriptions file")
    cols = ["video_id"] + [f"description_{i}" for i in range(5)]
    _require_columns(df, cols, path)
    df = df[cols].copy()
    df["video_id"] = _numeric(df, "video_id", path, integer=True, lo=0)
    _unique(df, "video_id", path)
    for c in cols[1:]:
        df[c] = df[c].str.strip()
    return df.reset_index(drop=True)


# ----------------------------------------------------------------------------- TRECVid 2021
def load_trecvid_scores(root: str | os.PathLike[str], split: str = "train") -> pd.DataFrame:
    """TRECVid-2021 scores (``trecvid2021/{train,dev}_scores.csv``).

    The dev file's URLs start with a space; it is stripped.

    Returns
    -------
    DataFrame
        ``video_id`` (int64), ``video_url`` (str), ``annotations_short_term``,
        ``annotations_long_term`` (int64), ``scores_raw_short_term``,
        ``scores_raw_long_term``, ``scores_normalized_short_term`` (float64),
        ``decay_alpha`` (float64).
    """
    if split not in ("train", "dev"):
        raise ValueError(f"split must be train or dev, got {split!r}")
    path = Path(root) / "trecvid2021" / f"{split}_scores.csv"
    return _scores(path, TRECVID_SCORE_COLUMNS, "TRECVid scores file")


def load_trecvid_descriptions(root: str | os.PathLike[str], split: str = "train") -> pd.DataFrame:
    """TRECVid-2021 descriptions, one row per description (several per video).

    Returns
    -------
    DataFrame
        ``video_id`` (int64), ``video_url`` (str), ``description`` (str).
    """
    if split not in ("train", "dev"):
        raise ValueError(f"split must be train or dev, got {split!r}")
    path = Path(root) / "trecvid2021" / f"{split}_text_descriptions.csv"
    df = _read_table(path, "TRECVid descriptions file")
    cols = ["video_id", "video_url", "description"]
    _require_columns(df, cols, path)
    df = df[cols].copy()
    df["video_id"] = _numeric(df, "video_id", path, integer=True, lo=0)
    df["video_url"] = df["video_url"].str.strip()
    df["description"] = df["description"].str.strip()
    return df.reset_index(drop=True)


def _scores(path: Path, columns: list[str], what: str) -> pd.DataFrame:
    df = _read_table(path, what)
    _require_columns(df, columns, path)
    df = df[columns].copy()
    df["video_id"] = _numeric(df, "video_id", path, integer=True, lo=0)
    _unique(df, "video_id", path)
    df["video_url"] = df["video_url"].str.strip()
    for c in columns:
        if c.startswith("annotations_"):
            df[c] = _numeric(df, c, path, integer=True, lo=1)
        elif c.startswith("scores_"):
            df[c] = _numeric(df, c, path, lo=0.0, hi=1.0)
        elif c == "decay_alpha":
            df[c] = _numeric(df, c, path)
    return df.reset_index(drop=True)


# ----------------------------------------------------------------------------- by protocol
def _videomem_released(root: Path) -> pd.DataFrame:
    from memsim.design.scores import read_scores

    return read_scores(Path(root) / "videomem" / "ground-truth_dev-set.csv")


def _memento_released(root: Path) -> pd.DataFrame:
    """Memento10k's released training scores in the VideoMem format: the *normalised* scores
    (referred to lag 80, as the protocol's memento_decay correction does), with decay_alpha."""
    m = load_memento_scores(root)
    return pd.DataFrame(
        {
            "video": m["video_id"],
            "short-term_memorability": m["scores_normalized_short_term"],
            "nb_short-term_annotations": m["annotations_short_term"],
            "decay_alpha": m["decay_alpha"],
        }
    )


#: protocol name -> loader(data root) of the released scores its simulations are set beside
RELEASED_SCORES = {"videomem": _videomem_released, "memento10k": _memento_released}


def released_scores(
    protocol_name: str, data: str | os.PathLike[str] | None = None
) -> pd.DataFrame | None:
    """The released scores of a protocol's study, in the scores format
    (:mod:`memsim.design.scores`).

    None when no release is known for the protocol, or when ``data`` is None and no data folder
    is found (``$MEMSIM_DATA``, ``../shared/data``); an explicit ``data`` that is missing is a
    :class:`~memsim.errors.UserError`.
    """
    if protocol_name not in RELEASED_SCORES:
        return None
    try:
        root = data_dir(data)
    except UserError:
        if data is not None:
            raise
        return None
    return RELEASED_SCORES[protocol_name](root)
