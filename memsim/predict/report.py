"""The CV report: a table beside the paper and the ceilings, CSV files and a figure.

In: the CV summary (:func:`memsim.predict.pipeline.summarise`), the corpus (for
its released scores and annotation counts) and optionally a simulator truth
table. Out: printable text, ``cv_folds.csv``, ``cv_summary.csv``,
``ceiling.csv`` and ``cv.png`` (drawn by :mod:`memsim.viz.predict`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from memsim.errors import UserError
from memsim.predict.ceiling import ceilings_from_release, ceilings_from_truth

__all__ = ["ceilings", "table", "write_outputs"]


def ceilings(
    corpus,
    *,
    truth: pd.DataFrame | None = None,
    truth_source=None,
    seed: int = 0,
    repeats: int = 20,
) -> pd.DataFrame:
    """Expected Spearman of a perfect predictor, per target and method (tidy table)."""
    lab = corpus.labelled
    rows = []
    for k, t in enumerate(corpus.targets):
        s, n = corpus.y[lab, k], corpus.n_ann[lab, k]
        try:
            c = ceilings_from_release(s, n, repeats=repeats, seed=seed)
        except UserError:  # noise exceeds the released variance: no beta truth exists
            c = ceilings_from_release(s, n, repeats=repeats, seed=seed, beta=False)
        rows.append(
            {
                "target": t,
                "method": "beta (released mean, variance - noise)",
                "mean": c["beta"][0],
                "sd": c["beta"][1],
            }
        )
        rows.append(
            {
                "target": t,
                "method": "released scores as truth (upper bound)",
                "mean": c["released_as_truth"][0],
                "sd": c["released_as_truth"][1],
            }
        )
        if truth is not None:
            m, sd = ceilings_from_truth(
                truth, n, t, repeats=repeats, seed=seed, source=str(truth_source)
            )
            rows.append(
                {
                    "target": t,
                    "method": f"simulator truth ({Path(str(truth_source)).name})",
                    "mean": m,
                    "sd": sd,
                }
            )
    return pd.DataFrame(rows)


def _cell(df, model, target, col="mean"):
    r = df[(df["model"] == model) & (df["target"] == target)]
    return None if r.empty else float(r[col].iloc[0])


def paper_references(dataset: str) -> tuple[list[tuple[str, float, float]], tuple[float, float]]:
    """The study's published predictors and human consistency (short-term, long-term), from
    its targets file (``calibration/<dataset>-targets.yaml``); empty when it has none."""
    from memsim.fit.compare import default_targets_path, load_targets

    path = default_targets_path(dataset)
    if path is None:
        return [], (float("nan"), float("nan"))
    targets = load_targets(path)
    rows = [(p.name, p.short_term, p.long_term) for p in targets.predictors]
    human = tuple(
        t.value if (t := targets.find(("human_consistency", step, "mean"))) else float("nan")
        for step in ("short-term", "long-term")
    )
    return rows, human


def table(corpus, summ: pd.DataFrame, ceil: pd.DataFrame, *, folds: int, seed: int) -> str:
    """Markdown table: CV models, the paper's Table 1 (VideoMem), human consistency, ceilings."""
    paper_table, human = paper_references(corpus.dataset)
    targets = list(corpus.targets)
    head = "| model | " + " | ".join(t.replace("_", "-") for t in targets) + " |"
    sep = "| --- |" + " --- |" * len(targets)
    lines = [
        f"{corpus.dataset}: {len(corpus.labelled)} labelled videos, "
        f"{folds}-fold CV (seed {seed}), Spearman mean ± sd over folds",
        "",
        head,
        sep,
    ]
    for m in dict.fromkeys(summ["model"].astype(str)):
        cells = []
        for t in targets:
            mu, sd = _cell(summ, m, t), _cell(summ, m, t, "std")
            cells.append("" if mu is None else f"{mu:.3f} ± {sd:.3f}")
        lines.append(f"| {m} (CV) | " + " | ".join(cells) + " |")
    if paper_table:
        for name, st, lt in paper_table:
            lines.append(f"| paper: {name} (official test split) | {st:.3f} | {lt:.3f} |")
        lines.append(f"| human consistency (paper) | {human[0]:.3f} | {human[1]:.3f} |")
    for method in dict.fromkeys(ceil["method"]):
        cells = []
        for t in targets:
            r = ceil[(ceil["method"] == method) & (ceil["target"] == t)]
            if r.empty or not np.isfinite(r["mean"].iloc[0]):
                cells.append("n/a (noise variance ≥ released variance)" if not r.empty else "")
            else:
                cells.append(f"{r['mean'].iloc[0]:.3f} ± {r['sd'].iloc[0]:.3f}")
        lines.append(f"| ceiling: {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_outputs(
    out: Path, cv: pd.DataFrame, summ: pd.DataFrame, ceil: pd.DataFrame, corpus, *, formats=None
) -> None:
    """Write the CV tables and ``cv.png`` (:func:`memsim.viz.predict.cv_figure`) into ``out``."""
    from memsim.io import atomic_path, make_dirs

    out = Path(out)
    make_dirs(out)  # recorded: removed again if the command fails
    for name, df in (("cv_folds.csv", cv), ("cv_summary.csv", summ), ("ceiling.csv", ceil)):
        with atomic_path(out / name) as tmp:
            df.to_csv(tmp, index=False, float_format="%.6g")
    from memsim.viz.predict import cv_figure

    paper_table, human = paper_references(corpus.dataset)
    cv_figure(
        out / "cv.png",
        summ,
        ceil,
        corpus.dataset,
        list(corpus.targets),
        paper_table=paper_table,
        human=human,
        formats=formats,
    )
