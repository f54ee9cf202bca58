"""How a video's long-term score goes with its annotation counts, released and simulated.

    python calibration/count_score.py [--seeds 0-4] [--data DIR] [PATH=VALUE ...]

Each video's long-term score is regressed on its short-term score, its long-term annotation
count and whether it is in the short-term tail (more than 45 short-term annotations):
``LT ~ 1 + ST + n_LT + [n_ST > 45]``, by least squares over the videos with both scores.
Released: the 7,000 dev-set videos, with bootstrap SDs of the coefficients (400 resamples of
the videos). Simulated: the shipped protocol (with the dotted ``PATH=VALUE`` changes given)
and parameter set, one fit per seed, then the mean and SD over the seeds. Then the mean
long-term score (and short-term score) by long-term count and by short-term count, released
beside the simulated seeds pooled, and the share of videos with 23 or more long-term
annotations (the released far tail) among the short-term core and tail.

In the simulator a video's counts come from the campaign (selection, demand, step 2's pick)
and its scores from its latent memorability, independently, so both coefficients are zero
up to noise; in the released file they are not (docs/protocols.md, "Counts and scores").
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd
from _script import protocol_changes, released_videomem, seed_range

from memsim.analysis.scoring import count_column, score
from memsim.api import load_params, load_protocol

ST = "short-term_memorability"
LT = "long-term_memorability"
TAIL = 45  # short-term annotations above which a video is in the tail
LT_BINS = (8, 9, 10, 11, 12, 14, 16, 19, 22, np.inf)
ST_BINS = (0, 31, 32, 33, 34, 35, 45, 60, np.inf)
FAR = 23  # long-term annotations from which the released far tail is counted
TERMS = ("long-term count", "short-term tail")


def table(scores: pd.DataFrame) -> pd.DataFrame:
    """The videos with both scores: ``st``, ``lt``, ``n_st``, ``n_lt``."""
    d = pd.DataFrame(
        {
            "st": scores[ST].to_numpy(float),
            "lt": scores[LT].to_numpy(float),
            "n_st": scores[count_column(ST)].to_numpy(float),
            "n_lt": scores[count_column(LT)].to_numpy(float),
        }
    )
    ok = np.isfinite(d["st"]) & np.isfinite(d["lt"]) & (d["n_st"] > 0) & (d["n_lt"] > 0)
    return d[ok].reset_index(drop=True)


def design(d: pd.DataFrame) -> np.ndarray:
    return np.column_stack([np.ones(len(d)), d["st"], d["n_lt"], (d["n_st"] > TAIL).astype(float)])


def coefficients(d: pd.DataFrame) -> np.ndarray:
    """The least-squares coefficients of the long-term count and the tail indicator."""
    beta = np.linalg.lstsq(design(d), d["lt"].to_numpy(), rcond=None)[0]
    return beta[2:]


def bootstrap_sd(d: pd.DataFrame, repeats: int = 400, seed: int = 0) -> np.ndarray:
    x, y = design(d), d["lt"].to_numpy()
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(repeats):
        i = rng.integers(0, len(d), len(d))
        out.append(np.linalg.lstsq(x[i], y[i], rcond=None)[0][2:])
    return np.std(out, axis=0)


def by_bins(d: pd.DataFrame, column: str, edges) -> pd.DataFrame:
    g = d.groupby(pd.cut(d[column], edges), observed=True)
    return g.agg(videos=("lt", "size"), lt=("lt", "mean"), st=("st", "mean"))


def far_tail(d: pd.DataFrame) -> tuple[float, float]:
    """The share of videos with ``FAR`` or more long-term annotations, among the short-term
    core and among the short-term tail."""
    tail = d["n_st"] > TAIL
    far = d["n_lt"] >= FAR
    return float(far[~tail].mean()), float(far[tail].mean())


def _label(interval) -> str:
    lo = int(interval.left) + 1
    if not np.isfinite(interval.right):
        return f"{lo}+"
    hi = int(interval.right)
    if interval.left <= 0:
        return f"<= {hi}"
    return str(hi) if lo == hi else f"{lo}-{hi}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="0-4", help="A-B: the seeds simulated (default 0-4)")
    ap.add_argument("--data", default=None)
    ap.add_argument("changes", nargs="*", help="dotted PATH=VALUE changes of the protocol")
    args = ap.parse_args(argv)
    real = released_videomem(args.data)
    if real is None:
        return 2
    rel = table(real)
    rel_b, rel_sd = coefficients(rel), bootstrap_sd(rel)
    protocol, params = load_protocol("videomem"), load_params("videomem")
    changes = protocol_changes(args.changes)
    if changes:
        protocol = protocol.updated(changes)
    from memsim.sim.simulate import simulate

    sims, coefs = [], []
    for seed in seed_range(args.seeds):
        res = score(simulate(protocol, params, seed=seed).trials, protocol, validate=False)
        d = table(res.scores)
        sims.append(d)
        coefs.append(coefficients(d))
    coefs = np.array(coefs)
    sd = coefs.std(axis=0, ddof=1) if len(coefs) > 1 else np.zeros(len(TERMS))
    if changes:
        print("simulated with", ", ".join(f"{k}={v}" for k, v in changes.items()))
    print("LT score ~ 1 + ST score + long-term count + [short-term count > 45]")
    print(f"  {'coefficient':<16} {'released (bootstrap SD)':>24}   seeds {args.seeds}: mean (SD)")
    for j, name in enumerate(TERMS):
        print(
            f"  {name:<16} {rel_b[j]:+14.5f} ({rel_sd[j]:.5f}) "
            f"{coefs[:, j].mean():+14.5f} ({sd[j]:.5f})"
        )
    pooled = pd.concat(sims, ignore_index=True)
    for title, column, edges in (
        ("long-term count", "n_lt", LT_BINS),
        ("short-term count", "n_st", ST_BINS),
    ):
        a, b = by_bins(rel, column, edges), by_bins(pooled, column, edges)
        print(f"mean scores by {title}: share of the videos, LT, ST")
        print(f"  {'count':>7} | {'released':^20} | {'simulated (seeds pooled)':^24}")
        for iv in a.index:
            ra = a.loc[iv]
            cell = "-"
            if iv in b.index:
                sb = b.loc[iv]
                cell = f"{100 * sb['videos'] / len(pooled):5.1f} % {sb['lt']:.3f} {sb['st']:.3f}"
            print(
                f"  {_label(iv):>7} | {100 * ra['videos'] / len(rel):5.1f} % {ra['lt']:.3f} "
                f"{ra['st']:.3f} | {cell}"
            )
    far = [far_tail(rel)] + [far_tail(d) for d in sims]
    sim_far = np.mean(far[1:], axis=0)
    print(
        f"long-term count {FAR} or more: short-term core (<= {TAIL}) {100 * far[0][0]:.2f} %, "
        f"tail {100 * far[0][1]:.2f} % released; {100 * sim_far[0]:.2f} %, "
        f"{100 * sim_far[1]:.2f} % simulated (mean over the seeds)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
