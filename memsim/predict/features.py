"""Feature pipelines fitted on training rows only, applied to any rows.

In: a :class:`~memsim.predict.corpus.Corpus` and the training row indices.
Out: a :class:`Features` holding, for every row of the corpus,

- ``dense``: log COCO-80 scores of both backbones, standardised with the
  training mean and SD (VideoMem only);
- ``tfidf``: TF-IDF of unigrams and bigrams of the texts, sublinear tf, rows
  L2-normalised, vocabulary (at most ``max_vocab`` terms seen in >= 2 training
  videos) from training rows only;
- ``emb``: a pretrained sentence embedding of the texts (mean over a video's
  descriptions, L2-normalised) when one is available offline, else absent;
- ``tokens``: padded token-id matrix for a text model trained from scratch
  (0 = padding, 1 = unknown), vocabulary from training rows only.

Everything a fitted pipeline needs to transform new rows is in
:meth:`FeaturePipeline.state`, plain lists and arrays, so a model file can
carry it. No torch here.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from memsim.predict import embed

__all__ = ["tokenize", "FeaturePipeline", "Features", "blocks_for_ridge"]

_WORD = re.compile(r"[a-z0-9]+")
LOG_EPS = 1e-4  # COCO probabilities span 1e-11..1: log with a floor keeps rare classes informative


def tokenize(text: str) -> list[str]:
    """Lower-case alphanumeric words plus adjacent-word bigrams (``a_b``)."""
    words = _WORD.findall(text.lower())
    return words + [f"{a}_{b}" for a, b in zip(words, words[1:])]


@dataclass
class Features:
    """Feature blocks for all rows of a corpus (see module docstring)."""

    dense: np.ndarray  # (n, d) float32, d may be 0
    tfidf: np.ndarray  # (n, v) float32
    emb: np.ndarray | None  # (n, 384) float32 or None
    tokens: np.ndarray  # (n, L) int64


class FeaturePipeline:
    """Fit on training rows; transform any rows. ``state()`` round-trips via ``from_state``."""

    def __init__(
        self,
        max_vocab: int = 2000,
        max_tokens: int = 64,
        use_embedding: bool = True,
        max_token_vocab: int = 8000,
    ):
        self.max_vocab = max_vocab
        self.max_tokens = max_tokens
        self.max_token_vocab = max_token_vocab
        self.use_embedding = use_embedding
        self.fitted = False

    # ---------------------------------------------------------------- fit / transform
    def fit(self, texts: list[list[str]], dense: np.ndarray, rows: np.ndarray) -> FeaturePipeline:
        docs = [_doc_tokens(texts[i]) for i in rows]
        df = Counter()
        for d in docs:
            df.update(set(d))
        n = len(docs)
        # ties broken by the term itself, so the vocabulary never depends on hash order
        common = sorted((t for t, c in df.items() if c >= 2), key=lambda t: (-df[t], t))
        self.vocab = common[: self.max_vocab]
        self.idf = np.array([np.log((1 + n) / (1 + df[t])) + 1.0 for t in self.vocab])
        self.token_vocab = common[: self.max_token_vocab]
        if dense.shape[1]:
            x = np.log(dense[rows].astype(np.float64) + LOG_EPS)
            self.mu, self.sd = x.mean(0), x.std(0) + 1e-6
        else:
            self.mu = self.sd = np.zeros(0)
        self.fitted = True
        return self

    def transform(
        self,
        texts: list[list[str]],
        dense: np.ndarray,
        rows: np.ndarray | None = None,
        emb_all: np.ndarray | None = None,
    ) -> Features:
        """Features of ``rows`` (all rows when None). ``emb_all``: precomputed embeddings."""
        if rows is None:
            rows = np.arange(len(texts))
        docs = [_doc_tokens(texts[i]) for i in rows]
        col = {t: j for j, t in enumerate(self.vocab)}
        tf = np.zeros((len(rows), len(self.vocab)), dtype=np.float64)
        for i, d in enumerate(docs):
            for t, c in Counter(d).items():
                j = col.get(t)
                if j is not None:
                    tf[i, j] = 1.0 + np.log(c)
        tf *= self.idf
        norm = np.linalg.norm(tf, axis=1, keepdims=True)
        tf = np.divide(tf, norm, out=np.zeros_like(tf), where=norm > 0)
        tok_id = {t: j + 2 for j, t in enumerate(self.token_vocab)}
        tokens = np.zeros((len(rows), self.max_tokens), dtype=np.int64)
        for i, d in enumerate(docs):
            ids = [tok_id.get(t, 1) for t in d][: self.max_tokens]
            tokens[i, : len(ids)] = ids
        if len(self.mu):
            x = (np.log(dense[rows].astype(np.float64) + LOG_EPS) - self.mu) / self.sd
        else:
            x = np.zeros((len(rows), 0))
        emb = None
        if self.use_embedding:
            if emb_all is None:
                emb_all = embed.embed_corpus(texts, rows)
            emb = emb_all[rows].astype(np.float32)
        return Features(x.astype(np.float32), tf.astype(np.float32), emb, tokens)

    # ---------------------------------------------------------------- persistence
    def state(self) -> dict:
        return {
            "max_vocab": self.max_vocab,
            "max_tokens": self.max_tokens,
            "max_token_vocab": self.max_token_vocab,
            "use_embedding": self.use_embedding,
            "vocab": list(self.vocab),
            "idf": self.idf.tolist(),
            "token_vocab": list(self.token_vocab),
            "mu": self.mu.tolist(),
            "sd": self.sd.tolist(),
        }

    @classmethod
    def from_state(cls, s: dict) -> FeaturePipeline:
        p = cls(s["max_vocab"], s["max_tokens"], s["use_embedding"], s["max_token_vocab"])
        p.vocab, p.token_vocab = list(s["vocab"]), list(s["token_vocab"])
        p.idf, p.mu, p.sd = (np.asarray(s[k], dtype=np.float64) for k in ("idf", "mu", "sd"))
        p.fitted = True
        return p

    @property
    def n_tokens(self) -> int:
        """Size of the token-id space (padding and unknown included)."""
        return len(self.token_vocab) + 2


def _doc_tokens(texts: list[str]) -> list[str]:
    out: list[str] = []
    for t in texts:
        out.extend(tokenize(t))
    return out


def blocks_for_ridge(f: Features, which: str) -> np.ndarray:
    """Concatenate feature blocks for ridge, each block scaled to unit total variance.

    Equal block variance is fixed in advance so that one ridge penalty treats
    the detector scores, TF-IDF and embedding blocks alike (no per-block tuning).
    ``which``: ``coco``, ``text`` (TF-IDF + embedding when present) or ``all``.
    """
    parts = []
    if which in ("coco", "all") and f.dense.shape[1]:
        parts.append(f.dense / np.sqrt(f.dense.shape[1]))
    if which in ("text", "all"):
        parts.append(f.tfidf)
        if f.emb is not None:
            parts.append(f.emb)
    if not parts:
        raise ValueError(f"no feature block for {which!r}")
    return np.hstack(parts).astype(np.float64)
