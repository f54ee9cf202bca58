"""Annotation counts: what the released VideoMem file shows, and what a campaign gives.

    python calibration/counts.py                     # the released dev set's counts
    python calibration/counts.py --simulate [--seed N] [PATH=VALUE ...]
    python calibration/counts.py --seeds A-B [PATH=VALUE ...]
    python calibration/counts.py --crn [--seed N] [PATH=VALUE ...]

(each simulating the shipped parameter set, or another with ``--params NAME|FILE``)

The first prints the evidence docs/protocols.md ("Annotation counts") cites: the short- and
long-term count histograms, the tail, how long-term counts follow short-term ones. The second
simulates the shipped VideoMem protocol at full scale (with its calibrated parameters),
changed by dotted ``PATH=VALUE`` (YAML values, e.g. ``selection.counts=assigned``), scores it
and prints the same statistics beside the released ones, with the KS distance, and how many
videos no step-2 pick could have tested 9 times (seen as a step-1 filler by fewer than 9
participants kept in step 2). The third simulates seeds A to B and prints, per seed, what
decides the short-term core (the stop, the last count check before it, the kept annotations,
the demands, the annotations withdrawn after that check, the share of the demand-1 videos at
33 or fewer before those withdrawals) beside the short-term count KS, the simulated-minus-
released gaps of the count CDF at 31, 32 and 33, and the minimum, and the long-term count KS,
minimum and share of videos at 8 or fewer; then the mean and spread over the seeds. The fourth
simulates a seed at the calibrated return probability and 0.01 above it and prints how many of
the first run's returners are tested on other videos (the step-2 pick's common random
numbers). It writes nothing.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from _script import protocol_changes, released_videomem, seed_range

from memsim.analysis.distributions import ks_distance
from memsim.analysis.scoring import count_column, score
from memsim.api import load_params, load_protocol

ST, LT = "short-term_memorability", "long-term_memorability"
BINS = {ST: (31, 32, 33, 34, 35, 45, 60), LT: (8, 9, 10, 11, 13, 16, 22)}


def histogram(n: np.ndarray, col: str) -> str:
    """% of videos per count bin (the bins of docs/protocols.md's tables)."""
    edges = (0, *BINS[col], 10**6)
    cells = [100 * ((n > a) & (n <= b)).mean() for a, b in zip(edges[:-1], edges[1:])]
    return " ".join(f"{c:5.1f}" for c in cells)


def header(col: str) -> str:
    b = BINS[col]
    names = [f"<={b[0]}"] + [
        str(hi) if hi - lo == 1 else f"{lo + 1}-{hi}" for lo, hi in zip(b[:-1], b[1:])
    ]
    return " ".join(f"{x:>5}" for x in [*names, f">{b[-1]}"])


def describe(n: np.ndarray) -> str:
    return (
        f"min {n.min()}, 1st-99th {np.percentile(n, 1):.0f}-{np.percentile(n, 99):.0f}, "
        f"95th {np.percentile(n, 95):.0f}, max {n.max()}, mean {n.mean():.2f}"
    )


def released(real) -> None:
    st, lt = (real[count_column(c)].to_numpy() for c in (ST, LT))
    for col, n in ((ST, st), (LT, lt)):
        print(f"{col} counts, released ({len(n):,} videos): {describe(n)}")
        print(f"  {header(col)}\n  {histogram(n, col)}")
    tail = st > 45
    print(
        f"ST tail (> 45): {100 * tail.mean():.1f} % of videos; their mean LT count "
        f"{lt[tail].mean():.2f} against {lt[~tail].mean():.2f}; Pearson of ST and LT counts "
        f"{np.corrcoef(st, lt)[0, 1]:.2f} (tail {np.corrcoef(st[tail], lt[tail])[0, 1]:.2f}, "
        f"rest {np.corrcoef(st[~tail], lt[~tail])[0, 1]:.2f})"
    )
    for lo, hi in ((30, 32), (33, 35), (36, 45), (46, 70), (71, 100)):
        m = (st >= lo) & (st <= hi)
        print(
            f"  ST {lo}-{hi}: {m.sum():5d} videos, LT mean {lt[m].mean():5.2f}, min {lt[m].min()}"
        )


def simulated(real, seed: int, changes: dict, param_set: str = "videomem") -> None:
    from memsim.sim.simulate import simulate

    protocol = load_protocol("videomem")
    if changes:
        protocol = protocol.updated(changes)
    sim = simulate(protocol, load_params(param_set), seed=seed)
    res = score(sim.trials, sim.protocol, validate=False)
    print(f"seed {seed}, changes {changes or 'none'}: {sim.participants.shape[0]:,} starts")
    for col in (ST, LT):
        n = res.scores[count_column(col)].to_numpy()
        n = n[n > 0]
        r = real[count_column(col)].to_numpy()
        print(f"{col}: KS {ks_distance(n, r):.3f}; {describe(n)}")
        print(f"  {'':9}{header(col)}")
        print(f"  simulated {histogram(n, col)}\n  released  {histogram(r, col)}")
    t, ps = sim.trials, res.participants
    kept2 = ps.loc[(ps["step"] == 2) & ps["kept"], "participant"]
    f = t[(t["step"] == 1) & (t["role"] == "filler") & t["participant"].isin(kept2)]
    seen = np.bincount(f["video"].to_numpy(), minlength=protocol.stimuli.count)
    print(
        f"videos seen as a step-1 filler by fewer than 9 participants kept in step 2: "
        f"{100 * (seen < 9).mean():.2f} % (min {seen.min()})"
    )
    # what keeps the videos at 8 or fewer short: the pick, step 2's filters or availability
    back = t.loc[t["step"] == 2, "participant"].unique()
    viewers = np.bincount(
        t.loc[(t["step"] == 1) & (t["role"] == "filler") & t["participant"].isin(back), "video"],
        minlength=protocol.stimuli.count,
    )
    tests = t[(t["step"] == 2) & (t["role"] == "target")]
    picked = np.bincount(tests["video"], minlength=protocol.stimuli.count)
    kept_n = np.bincount(
        tests.loc[tests["participant"].isin(kept2), "video"], minlength=protocol.stimuli.count
    )
    short = kept_n <= 8
    print(
        f"videos at 8 or fewer long-term annotations: {short.sum()}; of them picked fewer than 9 "
        f"times {(short & (picked < 9)).sum()} (all videos: {(picked < 9).sum()}), tested by "
        f"every returning participant who had them as fillers {(short & (picked == viewers)).sum()}"
        f", fillers of fewer than 9 participants kept in step 2 {(short & (seen < 9)).sum()}"
    )


def common_numbers(
    seed: int, changes: dict, step: float = 0.01, param_set: str = "videomem"
) -> None:
    """How much of the step-2 pick a higher return probability leaves as it was: the returners
    of a simulation, and the share of them whose tested videos change when the return
    probability is ``step`` higher (the pick's common random numbers)."""
    from memsim.sim.simulate import simulate

    protocol = load_protocol("videomem")
    if changes:
        protocol = protocol.updated(changes)
    params = load_params(param_set)
    r = params.participants.return_probability
    sets = []
    for p in (r, r + step):
        t = simulate(protocol, params.updated({"participants.return_probability": p}), seed).trials
        tg = t[(t["step"] == 2) & (t["role"] == "target")]
        sets.append({k: frozenset(g) for k, g in tg.groupby("participant")["video"]})
    a, b = sets
    assert set(a) <= set(b), "a higher return probability only adds returners"
    changed = np.mean([a[k] != b[k] for k in a])
    tests = np.mean([len(a[k] - b[k]) for k in a]) / np.mean([len(v) for v in a.values()])
    print(
        f"seed {seed}, changes {changes or 'none'}: return probability {r:.3f} -> {r + step:.3f}, "
        f"returners {len(a):,} -> {len(b):,}; tested videos changed for {100 * changed:.1f} % "
        f"of the first run's returners ({100 * tests:.1f} % of their tests)"
    )


def _last_check_s(protocol, arrival: np.ndarray) -> float:
    """When the campaign last brought verdicts into the counts before it stopped (the drops of
    sessions ending after it were never made up); -inf without checks."""
    sel = protocol.selection
    every_h = getattr(sel, "counts_every_h", None)
    every_p = getattr(sel, "counts_every_participants", None)
    if every_h:
        every_s = every_h * 3600.0
        return float(np.floor(arrival[-1] / every_s) * every_s)
    if every_p and arrival.size > every_p:
        return float(arrival[((arrival.size - 1) // every_p) * every_p])
    return -np.inf


def seeds(real, first: int, last: int, changes: dict, param_set: str = "videomem") -> None:
    """Per seed, what decides the short-term core; then mean and spread over the seeds."""
    from memsim.sim.campaign import draw_demand
    from memsim.sim.simulate import simulate

    protocol = load_protocol("videomem")
    if changes:
        protocol = protocol.updated(changes)
    params = load_params(param_set)
    r = real[count_column(ST)].to_numpy()
    st = protocol.stimuli
    print(
        f"changes {changes or 'none'}; released CDF at 31/32/33: "
        + " ".join(f"{(r <= k).mean():.3f}" for k in (31, 32, 33))
    )
    print(
        "seed starts stop_h check_h kept_ann demand_x late_drops late_ann core<=33 "
        "   KS  gap31  gap32  gap33 min  mean p95 | LT: KS min <=8% p95 >=20% tail_LT link"
    )
    rl = real[count_column(LT)].to_numpy()
    rows = []
    for seed in range(first, last + 1):
        sim = simulate(protocol, params, seed=seed)
        res = score(sim.trials, sim.protocol, validate=False)
        n = res.scores[count_column(ST)].to_numpy()
        lt = res.scores[count_column(LT)].to_numpy()
        t = sim.trials
        s1 = t[t["step"] == 1]
        last_row = s1.loc[s1.groupby("participant")["onset_s"].idxmax()]
        shown = np.where(last_row["response"], last_row["rt_s"], st.duration_s)
        end = pd.Series(last_row["onset_s"].to_numpy() + shown, index=last_row["participant"])
        start = s1.groupby("participant")["onset_s"].min().sort_values().to_numpy()
        check = _last_check_s(protocol, start)
        ps = res.participants
        kept = ps[ps["step"] == 1].set_index("participant")["kept"]
        late = kept.index[~kept.to_numpy() & (end.reindex(kept.index).to_numpy() > check)]
        tg = s1[(s1["role"] == "target") & s1["repeat"] & s1["participant"].isin(late)]
        withdrawn = np.bincount(tg["video"].to_numpy(), minlength=n.size)
        demand = draw_demand(getattr(protocol.selection, "demand", None), n.size, seed, 0)
        core = demand == 1.0 if demand is not None else np.ones(n.size, bool)
        before = n + withdrawn  # the counts at the stop, before the late withdrawals
        gaps = [(n <= k).mean() - (r <= k).mean() for k in (31, 32, 33)]
        row = dict(
            starts=start.size,
            stop_h=start[-1] / 3600,
            check_h=check / 3600,
            kept_ann=int(n.sum()),
            demand_x=float(demand.sum() - demand.size) if demand is not None else 0.0,
            late_drops=late.size,
            late_ann=int(withdrawn.sum()),
            core33=100 * (before[core] <= 33).mean(),
            ks=ks_distance(n, r),
            g31=gaps[0],
            g32=gaps[1],
            g33=gaps[2],
            min=int(n.min()),
            mean=n.mean(),
            p95=np.percentile(n, 95),
            # annotations at the stop per unit of demand: where balancing had brought the core
            level=(n.sum() + withdrawn.sum()) / (demand.sum() if demand is not None else n.size),
            lt_ks=ks_distance(lt, rl),
            lt_min=int(lt.min()),
            lt_short=100 * (lt <= 8).mean(),
            lt_p95=np.percentile(lt, 95),
            lt_20=100 * (lt >= 20).mean(),
            tail_lt=lt[n > 45].mean(),
            link=np.corrcoef(n, lt)[0, 1],
        )
        rows.append(row)
        print(
            f"{seed:4d} {row['starts']:6,d} {row['stop_h']:6.1f} {row['check_h']:7.1f} "
            f"{row['kept_ann']:8,d} {row['demand_x']:8.1f} {row['late_drops']:10d} "
            f"{row['late_ann']:8,d} {row['core33']:7.1f} {row['ks']:6.3f} {row['g31']:+.3f} "
            f"{row['g32']:+.3f} {row['g33']:+.3f} {row['min']:3d} {row['mean']:5.2f} "
            f"{row['p95']:3.0f} | {row['lt_ks']:.3f} {row['lt_min']:3d} {row['lt_short']:5.2f} "
            f"{row['lt_p95']:3.0f} {row['lt_20']:5.2f} {row['tail_lt']:6.2f} {row['link']:5.2f}",
            flush=True,
        )
    df = pd.DataFrame(rows)
    ks, m = df["ks"], df["min"]
    print(
        f"seeds {first}-{last}: KS {ks.mean():.3f} +- {ks.std():.3f} "
        f"({ks.min():.3f}-{ks.max():.3f}), "
        f"<= 0.05 on {(ks <= 0.05).sum()}/{len(df)}; min {m.min()}-{m.max()}, 29-31 on "
        f"{m.between(29, 31).sum()}/{len(df)}; gaps at 31/32/33 {df['g31'].mean():+.3f} "
        f"{df['g32'].mean():+.3f} +- {df['g32'].std():.3f} {df['g33'].mean():+.3f} +- "
        f"{df['g33'].std():.3f}; starts {df['starts'].min():,}-{df['starts'].max():,}; "
        f"mean {df['mean'].mean():.2f}; 95th {df['p95'].min():.0f}-{df['p95'].max():.0f}"
    )
    lk, lm = df["lt_ks"], df["lt_min"]
    print(
        f"long-term: KS {lk.mean():.3f} +- {lk.std():.3f}, <= 0.05 on {(lk <= 0.05).sum()}/"
        f"{len(df)}; min {lm.mean():.2f} ({lm.min()}-{lm.max()}), 8-10 on "
        f"{lm.between(8, 10).sum()}/{len(df)}; at 8 or fewer {df['lt_short'].mean():.2f} %; "
        f"95th {df['lt_p95'].min():.0f}-{df['lt_p95'].max():.0f} (20 on "
        f"{(df['lt_p95'] >= 20).sum()}/{len(df)}), at 20 or more {df['lt_20'].mean():.2f} %"
    )
    print(
        f"the counts' link (released in brackets): LT mean of the ST tail (> 45) "
        f"{df['tail_lt'].mean():.2f} ({rl[r > 45].mean():.2f}), Pearson of ST and LT counts "
        f"{df['link'].mean():.2f} ({np.corrcoef(r, rl)[0, 1]:.2f}); LT at 20 or more "
        f"{100 * (rl >= 20).mean():.2f} % released"
    )
    if len(df) > 2:
        print(
            f"core <= 33 before the late withdrawals: {df['core33'].mean():.1f} +- "
            f"{df['core33'].std():.1f} %; Pearson with the level (annotations at the stop / "
            f"demand units) {np.corrcoef(df['core33'], df['level'])[0, 1]:+.4f}, with the kept "
            f"annotations {np.corrcoef(df['core33'], df['kept_ann'])[0, 1]:+.2f}, with the late "
            f"withdrawals {np.corrcoef(df['core33'], df['late_ann'])[0, 1]:+.2f}; gap at 33 with "
            f"the core share {np.corrcoef(df['g33'], df['core33'])[0, 1]:+.2f}; SD of kept "
            f"annotations {df['kept_ann'].std():.0f}, of late withdrawals "
            f"{df['late_ann'].std():.0f}, of demand excess {df['demand_x'].std():.1f}, of the stop "
            f"{df['stop_h'].std():.2f} h"
        )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--simulate", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", default=None, help="A-B: simulate seeds A to B, one line each")
    ap.add_argument(
        "--crn", action="store_true", help="how much of the step-2 pick a higher return "
        "probability (+0.01) changes (--seed)",
    )  # fmt: skip
    ap.add_argument("--data", default=None)
    ap.add_argument(
        "--params", default="videomem", help="parameter set simulated (default: the shipped one)"
    )
    ap.add_argument("changes", nargs="*", help="dotted PATH=VALUE changes of the protocol")
    args = ap.parse_args(argv)
    real = released_videomem(args.data)
    if real is None:
        return 2
    changes = protocol_changes(args.changes)
    if args.seeds:
        chosen = seed_range(args.seeds)
        seeds(real, chosen[0], chosen[-1], changes, args.params)
    elif args.crn:
        common_numbers(args.seed, changes, param_set=args.params)
    elif args.simulate:
        simulated(real, args.seed, changes, args.params)
    else:
        released(real)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
