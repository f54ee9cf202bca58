"""The predictor report's figure: cross-validated Spearman per model against the ceilings.

In: the CV summary (``model``, ``target``, ``mean``, ``std``), the ceilings table
(``target``, ``method``, ``mean``) and the study's published references (from its own
targets file; none without one). Out: ``cv.png`` (plus SVG / PDF on request), drawn in the
project's style (:mod:`memsim.viz.style`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from memsim.viz import style
from memsim.viz.style import ROLE, label

__all__ = ["cv_figure"]


def _cell(df: pd.DataFrame, model: str, target: str, col: str = "mean") -> float:
    r = df[(df["model"] == model) & (df["target"] == target)]
    return float("nan") if r.empty else float(r[col].iloc[0])


def cv_figure(
    path: Path,
    summ: pd.DataFrame,
    ceil: pd.DataFrame,
    dataset: str,
    targets: list[str],
    *,
    paper_table: list[tuple[str, float, float]] = (),
    human: tuple[float, float] = (float("nan"), float("nan")),
    formats=None,
) -> Path:
    """Bars: CV Spearman per model (± SD over folds); lines: the ceilings, and where the
    targets file gives them the published human consistency and best published model."""
    models = list(dict.fromkeys(summ["model"].astype(str)))
    styles = ["-", "--", ":"]
    height = 1.6 + 0.32 * len(models)
    with style.figure(
        1,
        len(targets),
        panel=(4.6, height),
        title=f"{dataset}: predictors under cross-validation",
    ) as (fig, axes):
        for ax, t in zip(axes[0], targets):
            mu = [_cell(summ, m, t) for m in models]
            sd = [_cell(summ, m, t, "std") for m in models]
            # models down the side: their names never collide, however many
            y = np.arange(len(models))[::-1]
            ax.barh(y, mu, xerr=sd, color=ROLE["simulated"], height=0.6, label="CV mean ± SD")
            ax.set_yticks(y, models)
            ax.grid(axis="y", visible=False)
            for i, method in enumerate(dict.fromkeys(ceil["method"])):
                r = ceil[(ceil["method"] == method) & (ceil["target"] == t)]
                if not r.empty and np.isfinite(r["mean"].iloc[0]):
                    ax.axvline(
                        r["mean"].iloc[0],
                        color=ROLE["released"],
                        ls=styles[i % 3],
                        label=f"ceiling: {method}",
                    )
            if paper_table:
                k = targets.index(t)
                if np.isfinite(human[k]):
                    ax.axvline(
                        human[k], color=ROLE["fit"], ls="-.", label="human consistency (published)"
                    )
                name, *values = paper_table[-1]
                ax.axvline(
                    values[k], color=ROLE["reference"], ls="--", label=f"{name} (published test)"
                )
            style.title(ax, label(t))
            ax.set_xlabel("Spearman with the released scores")
            ax.set_xlim(0, 1)
        style.legend_below(fig, ncols=2)
        return style.save(fig, path, formats)
