"""One predictor-ready table per dataset: who has inputs, what they are, what is labelled.

In: the real-data folder (see :mod:`memsim.data`). Out: a :class:`Corpus` with,
for every video that has inputs, its texts (the VideoMem title, or the
Memento10k descriptions), its dense features (the COCO-80 scores of both
backbones for VideoMem; none for Memento10k) and, where released, its labels
and annotation counts. Labelled and unlabelled videos live in the same table so
``predict apply`` can score any video that has inputs.

No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from memsim import data as rd
from memsim.errors import UserError

__all__ = ["Corpus", "load_corpus", "DATASETS"]

DATASETS = ("videomem", "memento10k")


@dataclass(frozen=True)
class Corpus:
    """Inputs and labels of one dataset, rows aligned.

    Attributes
    ----------
    dataset : str
        ``videomem`` or ``memento10k``.
    ids : ndarray of str, shape (n,)
        Video names as the release spells them (``video10.webm``; Memento10k ids as text).
    texts : list of list of str
        Per video, its text(s): one title (dashes turned to spaces) or five descriptions.
    dense : ndarray of float32, shape (n, d)
        Dense features (``d = 0`` when there are none).
    targets : tuple of str
        Target names, e.g. ``("short_term", "long_term")``.
    y : ndarray of float64, shape (n, len(targets))
        Released scores; NaN for unlabelled videos.
    n_ann : ndarray of int64, shape (n, len(targets))
        Released annotation counts; 0 for unlabelled videos.
    """

    dataset: str
    ids: np.ndarray
    texts: list
    dense: np.ndarray
    targets: tuple
    y: np.ndarray
    n_ann: np.ndarray
    index: dict = field(repr=False, default_factory=dict)

    @property
    def labelled(self) -> np.ndarray:
        """Row indices of the videos with released labels, in release order."""
        return np.flatnonzero(np.all(np.isfinite(self.y), axis=1))

    def rows(self, names: list[str], source: str = "video list") -> np.ndarray:
        """Row indices of ``names``; a UserError names the first unknown one."""
        out = np.empty(len(names), dtype=np.int64)
        for i, n in enumerate(names):
            j = self.index.get(n)
            if j is None:
                more = sum(1 for m in names if m not in self.index) - 1
                tail = f" (and {more} more)" if more > 0 else ""
                raise UserError(
                    f"unknown {self.dataset} video {n!r} (no features or text){tail}", path=source
                )
            out[i] = j
        return out


def load_corpus(dataset: str, root) -> Corpus:
    """Build the :class:`Corpus` of ``dataset`` from the data folder ``root``."""
    if dataset == "videomem":
        return _videomem(root)
    if dataset == "memento10k":
        return _memento(root)
    raise UserError(f"unknown dataset {dataset!r} (choose from {', '.join(DATASETS)})")


def _finish(dataset, ids, texts, dense, targets, y, n_ann) -> Corpus:
    ids = np.asarray(ids, dtype=object)
    return Corpus(
        dataset,
        ids,
        texts,
        np.ascontiguousarray(dense, dtype=np.float32),
        tuple(targets),
        y,
        n_ann,
        {str(v): i for i, v in enumerate(ids)},
    )


def _videomem(root) -> Corpus:
    scores = rd.load_videomem_scores(root)
    caps = rd.load_videomem_captions(root, "all")
    ids, rn101, rn152 = rd.load_coco80(root)
    # a video needs both a title and detector scores to be predicted
    row_of = {v: i for i, v in enumerate(ids)}
    caps = caps[caps["video"].isin(row_of)].reset_index(drop=True)
    names = caps["video"].to_numpy(dtype=object)
    take = np.array([row_of[v] for v in names], dtype=np.int64)
    dense = np.hstack([rn101[take], rn152[take]])
    texts = [[t.replace("-", " ")] for t in caps["title"]]
    lab = scores.set_index("video")
    missing = sorted(set(lab.index) - set(names))
    if missing:
        raise UserError(
            f"labelled video {missing[0]!r} has no title or COCO-80 features", path=root
        )
    y = np.full((len(names), 2), np.nan)
    n = np.zeros((len(names), 2), dtype=np.int64)
    pos = pd.Index(names).get_indexer(lab.index)
    y[pos, 0] = lab["short-term_memorability"].to_numpy()
    y[pos, 1] = lab["long-term_memorability"].to_numpy()
    n[pos, 0] = lab["nb_short-term_annotations"].to_numpy()
    n[pos, 1] = lab["nb_long-term_annotations"].to_numpy()
    # keep the release order for labelled videos first: folds then follow the file
    order = np.concatenate([pos, np.setdiff1d(np.arange(len(names)), pos)])
    return _finish(
        "videomem",
        names[order],
        [texts[i] for i in order],
        dense[order],
        ("short_term", "long_term"),
        y[order],
        n[order],
    )


def _memento(root) -> Corpus:
    scores = rd.load_memento_scores(root)
    parts = [rd.load_memento_descriptions(root, s) for s in ("train", "dev")]
    desc = pd.concat(parts, ignore_index=True).drop_duplicates("video_id")
    names = desc["video_id"].astype(str).to_numpy(dtype=object)
    cols = [f"description_{i}" for i in range(5)]
    texts = [[t for t in row if t] for row in desc[cols].itertuples(index=False)]
    lab = scores.set_index(scores["video_id"].astype(str))
    missing = sorted(set(lab.index) - set(names))
    if missing:
        raise UserError(f"labelled video {missing[0]!r} has no text description", path=root)
    pos = pd.Index(names).get_indexer(lab.index)
    y = np.full((len(names), 1), np.nan)
    n = np.zeros((len(names), 1), dtype=np.int64)
    y[pos, 0] = lab["scores_normalized_short_term"].to_numpy()
    n[pos, 0] = lab["annotations_short_term"].to_numpy()
    order = np.concatenate([pos, np.setdiff1d(np.arange(len(names)), pos)])
    return _finish(
        "memento10k",
        names[order],
        [texts[i] for i in order],
        np.zeros((len(names), 0), dtype=np.float32),
        ("short_term",),
        y[order],
        n[order],
    )
