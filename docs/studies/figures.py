"""Figures and tables of the shipped studies, from finished sweeps.

    memsim sweep experiments/<study>.yaml --out runs/<study> --workers 2
    python docs/studies/figures.py <study> [--runs runs] [--out docs/studies]

Studies: annotations, design (reads the five design-* sweeps), filters,
selection, protocols. Each writes ``<out>/<study>.png`` and prints the numbers
quoted in ``docs/studies/<study>.md`` (mean ± sd over replicates). Every number
comes from ``runs/<study>/results.parquet``; nothing is typed in by hand except
the paper's published values, marked as such.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

HC = "human_consistency.step{}.mean"
AC = "annotation_consistency.step{}.at_mean_annotations"
TR = "truth.step{}.spearman"
NA = "annotations_per_video.step{}.mean"
HALF = "human_consistency.step{}.mean_annotations_per_half"
KEPT = "participants_kept.step{}"
COST = "participant_minutes"
STEP = {1: "short term", 2: "long term"}


def _load(runs: Path, study: str) -> pd.DataFrame:
    path = runs / study / "results.parquet"
    if not path.exists():
        sys.exit(f"{path}: missing; run: memsim sweep experiments/{study}.yaml --out {runs / study}")
    return pd.read_parquet(path)


def _agg(df: pd.DataFrame, by: list[str], cols: list[str]) -> pd.DataFrame:
    g = df.groupby(by, sort=False)[cols]
    m, s = g.mean(), g.std(ddof=1)
    return m.join(s.add_suffix("_sd")).reset_index()


def _pm(row, col: str, digits: int = 3) -> str:
    return f"{row[col]:.{digits}f} ± {row[col + '_sd']:.{digits}f}"


def _band(ax, x, row_mean, row_sd, label, **kw):
    (line,) = ax.plot(x, row_mean, marker="o", ms=3, label=label, **kw)
    ax.fill_between(x, row_mean - row_sd, row_mean + row_sd, color=line.get_color(), alpha=0.2, lw=0)
    return line


def spearman_brown(r, k):
    r = np.asarray(r, dtype=float)
    return k * r / (1 + (k - 1) * r)


def _needed(n_half: np.ndarray, r: np.ndarray, target: float) -> tuple[float, float, float]:
    """Annotations per video (both halves) where split-half consistency reaches ``target``.

    Returns (interpolated from the measured points or NaN if not reached,
    Spearman-Brown extrapolation from a one-annotation reliability fitted by least
    squares on all points, that fitted reliability).
    """
    order = np.argsort(n_half)
    n_half, r = n_half[order], r[order]
    interp = float("nan")
    above = np.nonzero(r >= target)[0]
    if len(above) and above[0] > 0:
        i = above[0]
        interp = 2 * float(np.interp(target, [r[i - 1], r[i]], [n_half[i - 1], n_half[i]]))
    grid = np.linspace(1e-4, 0.5, 50_000)
    sse = [((spearman_brown(g, n_half) - r) ** 2).sum() for g in grid]
    rho = float(grid[int(np.argmin(sse))])
    sb = 2 * target * (1 - rho) / (rho * (1 - target))
    return interp, float(sb), rho


# --------------------------------------------------------------------------- studies
def annotations(runs: Path, out: Path) -> None:
    df = _load(runs, "annotations")
    cols = [c.format(s) for s in (1, 2) for c in (HC, AC, TR, NA, HALF)]
    a = _agg(df, ["annotations_target"], cols).sort_values("annotations_target")
    base = a[a.annotations_target == 38].iloc[0]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    print("| target N | step | annotations/video | human consistency | annotation consistency | Spearman with truth |")
    print("|---|---|---|---|---|---|")
    for ax, s in zip(axes, (1, 2)):
        x = a[NA.format(s)].to_numpy()
        _band(ax, x, a[HC.format(s)], a[HC.format(s) + "_sd"], "human consistency (25 half-splits)")
        _band(ax, x, a[AC.format(s)], a[AC.format(s) + "_sd"], "annotation consistency (balanced split)")
        _band(ax, x, a[TR.format(s)], a[TR.format(s) + "_sd"], "scores vs true memorability", ls="--")
        # Spearman-Brown from the N = 38 campaign's human consistency, r0 with m0 annotations per half
        r0, m0 = base[HC.format(s)], base[HALF.format(s)]
        m = a[HALF.format(s)].to_numpy()
        ax.plot(x, spearman_brown(r0, m / m0), "k:", label=f"Spearman-Brown from the N=38 campaign (r={r0:.3f})")
        ax.axhline(0.7, color="0.7", lw=0.8)
        ax.axhline(0.8, color="0.7", lw=0.8)
        ax.set_xlabel(f"mean {STEP[s]} annotations per video (kept participants)")
        ax.set_ylabel("Spearman correlation")
        ax.set_title(STEP[s], fontsize=10)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
        for _, row in a.iterrows():
            print(f"| {int(row.annotations_target)} | {STEP[s]} | {row[NA.format(s)]:.1f} | {_pm(row, HC.format(s))} | "
                  f"{_pm(row, AC.format(s))} | {_pm(row, TR.format(s))} |")
    fig.suptitle("Consistency vs annotations per video (simulated VideoMem campaigns, scale 0.2, 3 replicates)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "annotations.png", dpi=120)
    print()
    print("| step | consistency | target | annotations needed: interpolated | Spearman-Brown extrapolation | fitted one-annotation reliability |")
    print("|---|---|---|---|---|---|")
    for s in (1, 2):
        for name, col in (("human", HC), ("annotation", AC)):
            for target in (0.7, 0.8):
                interp, sb, rho = _needed(a[HALF.format(s)].to_numpy(), a[col.format(s)].to_numpy(), target)
                shown = "not reached" if np.isnan(interp) else f"{interp:.0f}"
                print(f"| {STEP[s]} | {name} | {target} | {shown} | {sb:.0f} | {rho:.4f} |")


DESIGN = [
    ("design-lags", "target_lags", "target lag range"),
    ("design-targets", "targets", "targets per participant"),
    ("design-length", "length", "sequence length"),
    ("design-vigilance", "vigilance", "vigilance repeats per sequence"),
    ("design-delay", "delay_h", "step-2 delay (h)"),
]


def design(runs: Path, out: Path) -> None:
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    cols = [c.format(s) for s in (1, 2) for c in (HC, AC, TR, NA, KEPT)] + [COST]
    frontier_ax = axes.flat[5]
    for ax, (study, axis, label) in zip(axes.flat, DESIGN):
        a = _agg(_load(runs, study), [axis], cols)
        x = np.arange(len(a))
        for s in (1, 2):
            _band(ax, x, a[HC.format(s)], a[HC.format(s) + "_sd"], f"human consistency, {STEP[s]}")
            _band(ax, x, a[TR.format(s)], a[TR.format(s) + "_sd"], f"vs truth, {STEP[s]}", ls="--")
        ax.set_xticks(x)
        ax.set_xticklabels([str(v) for v in a[axis]], fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel("Spearman")
        ax.grid(alpha=0.3)
        # consistency per crowd time: one marker per cell on the shared frontier panel
        hours = a[COST] / 60
        frontier_ax.scatter(hours, a[HC.format(1)], s=14, label=label)
        for h, y, v in zip(hours, a[HC.format(1)], a[axis]):
            frontier_ax.annotate(str(v), (h, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
        print(f"\n{label} ({study}):\n")
        print(f"| {axis} | crowd hours | ST ann./video | ST human | ST vs truth | LT ann./video | LT human | LT vs truth | ST human per 1,000 crowd h |")
        print("|---|---|---|---|---|---|---|---|---|")
        for _, row in a.iterrows():
            per = row[HC.format(1)] / (row[COST] / 60) * 1000
            print(f"| {row[axis]} | {row[COST] / 60:,.0f} | {row[NA.format(1)]:.1f} | {_pm(row, HC.format(1))} | "
                  f"{_pm(row, TR.format(1))} | {row[NA.format(2)]:.1f} | {_pm(row, HC.format(2))} | "
                  f"{_pm(row, TR.format(2))} | {per:.2f} |")
    axes.flat[0].legend(fontsize=6)
    frontier_ax.set_xlabel("crowd time (participant-hours, nominal)")
    frontier_ax.set_ylabel("short-term human consistency")
    frontier_ax.grid(alpha=0.3)
    frontier_ax.legend(fontsize=6)
    frontier_ax.set_title("consistency vs crowd time, every design cell", fontsize=9)
    fig.suptitle("Protocol design around VideoMem (scale 0.2: 2,000 videos, 2,090 participants; 3 replicates)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "design.png", dpi=120)


def filters(runs: Path, out: Path) -> None:
    df = _load(runs, "filters")
    cols = [HC.format(1), AC.format(1), TR.format(1), KEPT.format(1), NA.format(1)]
    a = _agg(df, ["max_fa_step1", "min_vigilance"], cols)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for v, g in a.groupby("min_vigilance"):
        g = g.sort_values(KEPT.format(1))
        axes[0].errorbar(g[KEPT.format(1)], g[HC.format(1)], yerr=g[HC.format(1) + "_sd"], marker="o", ms=3,
                         capsize=2, label=f"vigilance >= {v}")
        axes[1].errorbar(g[KEPT.format(1)], g[TR.format(1)], yerr=g[TR.format(1) + "_sd"], marker="o", ms=3,
                         capsize=2, label=f"vigilance >= {v}")
        for _, row in g.iterrows():
            axes[0].annotate(f"FA<={row.max_fa_step1:g}", (row[KEPT.format(1)], row[HC.format(1)]), fontsize=6,
                             xytext=(2, -8), textcoords="offset points")
    for ax, what in zip(axes, ("short-term human consistency", "short-term scores vs true memorability")):
        ax.set_xlabel("participants kept after step-1 filters")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Participant filters (step 1): kept vs consistency, same simulated crowds (common random numbers)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "filters.png", dpi=120)
    # common random numbers: replicate r of every cell scores the same simulated crowd, so the
    # difference to VideoMem's own filters (FA <= 0.3, vigilance >= 0.7) is paired per replicate
    ref = df[(df.max_fa_step1 == 0.3) & (df.min_vigilance == 0.7)].set_index("replicate")
    d = df.assign(
        d_hc=df[HC.format(1)] - df.replicate.map(ref[HC.format(1)]),
        d_tr=df[TR.format(1)] - df.replicate.map(ref[TR.format(1)]),
    )
    dd = _agg(d, ["max_fa_step1", "min_vigilance"], ["d_hc", "d_tr"])
    a = a.merge(dd, on=["max_fa_step1", "min_vigilance"])
    print("| max FA rate | min vigilance hit rate | kept | ST annotations/video | ST human consistency | ST vs truth "
          "| Δ human vs VideoMem filters (paired) | Δ vs truth (paired) |")
    print("|---|---|---|---|---|---|---|---|")
    for _, row in a.iterrows():
        print(f"| {row.max_fa_step1:g} | {row.min_vigilance:g} | {row[KEPT.format(1)]:.0f} | {row[NA.format(1)]:.1f} | "
              f"{_pm(row, HC.format(1))} | {_pm(row, TR.format(1))} | {row.d_hc:+.3f} ± {row.d_hc_sd:.3f} "
              f"| {row.d_tr:+.3f} ± {row.d_tr_sd:.3f} |")


def selection(runs: Path, out: Path) -> None:
    df = _load(runs, "selection")
    cols = [HC.format(1), HC.format(2), TR.format(1), TR.format(2), NA.format(1), COST]
    df["min_annotations"] = np.nan
    a = _agg(df, ["policy", "budget"], cols)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for pol, g in a.groupby("policy", sort=False):
        g = g.sort_values("budget")
        for ax, s in zip(axes, (1, 2)):
            _band(ax, g["budget"], g[HC.format(s)], g[HC.format(s) + "_sd"], pol)
    for ax, s in zip(axes, (1, 2)):
        ax.set_xlabel("participants recruited (full-scale budget; simulated at scale 0.2)")
        ax.set_ylabel(f"{STEP[s]} human consistency")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Selection policy at equal budgets (same simulated crowds per replicate)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "selection.png", dpi=120)
    print("| policy | budget | crowd hours | ST ann./video | ST human | LT human | ST vs truth | LT vs truth |")
    print("|---|---|---|---|---|---|---|---|")
    for _, row in a.iterrows():
        print(f"| `{row.policy}` | {row.budget} | {row[COST] / 60:,.0f} | {row[NA.format(1)]:.1f} | "
              f"{_pm(row, HC.format(1))} | {_pm(row, HC.format(2))} | {_pm(row, TR.format(1))} | {_pm(row, TR.format(2))} |")


def protocols(runs: Path, out: Path) -> None:
    df = _load(runs, "protocols")
    cols = [HC.format(1), AC.format(1), TR.format(1), NA.format(1), HC.format(2), TR.format(2), COST, KEPT.format(1)]
    a = _agg(df, ["design"], cols)
    a["name"] = [Path(d).stem for d in a.design]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    x = np.arange(len(a))
    for i, (col, label) in enumerate([(HC.format(1), "human consistency"), (AC.format(1), "annotation consistency"),
                                      (TR.format(1), "scores vs truth")]):
        ax.bar(x + (i - 1) * 0.27, a[col], 0.27, yerr=a[col + "_sd"], capsize=2, label=label)
    ax.set_xticks(x)
    ax.set_xticklabels([f"{n}\n{na:.0f} ann./item" for n, na in zip(a.name, a[NA.format(1)])], fontsize=8)
    ax.set_ylabel("Spearman (step 1)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)
    ax.set_title("Published protocols on one simulated population (VideoMem parameters; scale 0.05)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "protocols.png", dpi=120)
    print("| protocol | crowd hours | participants kept | annotations/item | human consistency | annotation consistency | vs truth | LT human | LT vs truth |")
    print("|---|---|---|---|---|---|---|---|---|")
    for _, row in a.iterrows():
        lt = "—" if np.isnan(row[HC.format(2)]) else _pm(row, HC.format(2))
        ltt = "—" if np.isnan(row[TR.format(2)]) else _pm(row, TR.format(2))
        print(f"| {row['name']} | {row[COST] / 60:,.0f} | {row[KEPT.format(1)]:.0f} | {row[NA.format(1)]:.1f} | "
              f"{_pm(row, HC.format(1))} | {_pm(row, AC.format(1))} | {_pm(row, TR.format(1))} | {lt} | {ltt} |")


STUDIES = {f.__name__: f for f in (annotations, design, filters, selection, protocols)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", choices=sorted(STUDIES))
    ap.add_argument("--runs", type=Path, default=Path("runs"))
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    STUDIES[args.study](args.runs, args.out)


if __name__ == "__main__":
    main()
