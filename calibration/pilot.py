"""A pilot before the campaign (``campaign.pilot``): counts and scores against the released.

    python calibration/pilot.py [--stimuli 250] [--participants 300] [--return-share 0.14]
        [--lags 80-120] [--seeds 0-2] [--data DIR] [--report FILE [--report-seeds 20]]
        [PATH=VALUE ...]

The released counts' far tails (docs/protocols.md, "Counts and scores") ask for more
long-term tests on some videos without fewer on the others, which no reallocation of the
campaign's own places gives. Extra sessions do: this script sets the protocol's
``campaign.pilot`` (``--participants`` players on the first ``--stimuli`` videos alone,
their targets repeated at ``--lags``, at most ``--return-share`` of them in step 2), on the
shipped VideoMem protocol changed by ``PATH=VALUE``, and prints per seed, for the campaign
alone and with its pilot: the count rows, the long-term far tail by short-term group, the
short-term correction ratio by count group and the short-term score KS, against the released
values. With ``--report``, also ``memsim fit-report``'s report of the protocol with its pilot
(every target, each seed alone).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from _script import protocol_changes, released_videomem, seed_range

from memsim.analysis.distributions import ks_distance
from memsim.analysis.scoring import count_column, score
from memsim.api import load_params, load_protocol, load_targets
from memsim.fit.compat import raw_hits

ST = "short-term_memorability"
LT = "long-term_memorability"
GROUPS = ((0, 45), (46, 60), (61, 10**6))  # short-term annotation counts, inclusive


def _mean(x: np.ndarray) -> float:
    """The mean, NaN for no value (a count group the campaign left empty)."""
    return float(x.mean()) if x.size else float("nan")


def describe(res, real) -> dict:
    """The rows this script prints, of one scored log against the released scores."""
    s = res.scores
    n_st = s[count_column(ST)].to_numpy()
    n_lt = s[count_column(LT)].to_numpy()
    keep = (n_st > 0) & (n_lt > 0)
    n_st, n_lt = n_st[keep], n_lt[keep]
    tail = n_st > 45
    v = res.videos[(res.videos["step"] == 1) & (res.videos["raw"] > 0)]
    ratio = (v["score"] / v["raw"] - 1.0).to_numpy()
    n = v["annotations"].to_numpy()
    r_st = real[count_column(ST)].to_numpy()
    r_lt = real[count_column(LT)].to_numpy()
    r_sc = real[ST].to_numpy(float)
    sc = s[ST].to_numpy(float)
    return {
        "st_ks": ks_distance(n_st, r_st),
        "st_over_60": float((n_st > 60).mean()),
        "lt_ks": ks_distance(n_lt, r_lt),
        "lt_p95": float(np.percentile(n_lt, 95)),
        "lt_20": float((n_lt >= 20).mean()),
        "far_core": float((n_lt[~tail] >= 23).mean()),
        "far_tail": _mean(n_lt[tail] >= 23),
        "ratios": [_mean(ratio[(n >= a) & (n <= b)]) for a, b in GROUPS],
        "score_ks": ks_distance(np.round(sc[np.isfinite(sc)], 3), r_sc[np.isfinite(r_sc)]),
    }


def _line(label: str, d: dict) -> str:
    ratios = " ".join(f"{x:+.4f}" for x in d["ratios"])
    return (
        f"{label:>8} | ST count KS {d['st_ks']:.3f}, over 60 {100 * d['st_over_60']:.1f} % | "
        f"LT count KS {d['lt_ks']:.3f}, 95th {d['lt_p95']:.0f}, 20+ {100 * d['lt_20']:.2f} %, "
        f"23+ core/tail {100 * d['far_core']:.2f}/{100 * d['far_tail']:.2f} % | "
        f"ST ratio by count {ratios} | ST score KS {d['score_ks']:.3f}"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stimuli", type=int, default=250, help="videos the pilot plays")
    ap.add_argument("--participants", type=int, default=300, help="the pilot's players")
    ap.add_argument("--return-share", type=float, default=0.14, help="share admitted to its step 2")
    ap.add_argument("--lags", default="80-120", help="A-B: its targets' repeat lags")
    ap.add_argument("--seeds", default="0-2", help="A-B: the seeds simulated (default 0-2)")
    ap.add_argument("--data", default=None)
    ap.add_argument(
        "--report", type=Path, default=None, help="also write `memsim fit-report`'s report of "
        "the campaigns with their pilot there (seeds 0 to --report-seeds - 1)",
    )  # fmt: skip
    ap.add_argument("--report-seeds", type=int, default=20)
    ap.add_argument("changes", nargs="*", help="dotted PATH=VALUE changes of the main protocol")
    args = ap.parse_args(argv)
    real = released_videomem(args.data)
    if real is None:
        return 2
    from memsim.sim.simulate import prepare, simulate_arrays
    from memsim.study.fit_report import fitted_counts

    main_protocol = load_protocol("videomem")
    changes = protocol_changes(args.changes)
    if changes:
        main_protocol = main_protocol.updated(changes)
    lags = [int(x) for x in args.lags.split("-")]
    pilot = {
        "participants": args.participants,
        "stimuli": args.stimuli,
        "repeat_lag": lags,
        "return_share": args.return_share,
    }
    alone_protocol = main_protocol.updated({"campaign.pilot": None})
    with_pilot = main_protocol.updated({"campaign.pilot": pilot})
    params = load_params("videomem")
    print(
        f"{with_pilot.campaign.pilot.describe()}"
        + (f"; protocol changed by {changes}" if changes else "")
    )
    prepared = [prepare(p, 1.0) for p in (alone_protocol, with_pilot)]
    for seed in seed_range(args.seeds):
        for label, p in zip((f"seed {seed}", "+ pilot"), prepared):
            arrays = simulate_arrays(p, params, seed)
            print(_line(label, describe(score(arrays.trials, p.protocol, validate=False), real)))
    if args.report:
        from memsim.study.fit_report import fit_report

        table = fit_report(
            with_pilot,
            params,
            load_targets(protocol="videomem"),
            seeds=tuple(range(args.report_seeds)),
            out=args.report,
            data=args.data,
        )
        n_ok, n_fit, _ = fitted_counts(table)
        print(f"fit report: {n_ok}/{n_fit} fitted targets within tolerance; wrote {args.report}")
    r_st = real[count_column(ST)].to_numpy()
    r_lt = real[count_column(LT)].to_numpy()
    tail = r_st > 45
    s = real[ST].to_numpy(float)
    ok = np.isfinite(s) & (r_st > 0)
    raw = raw_hits(s[ok], r_st[ok]) / r_st[ok]
    ratio, n = s[ok][raw > 0] / raw[raw > 0] - 1.0, r_st[ok][raw > 0]
    ratios = " ".join(f"{ratio[(n >= a) & (n <= b)].mean():+.4f}" for a, b in GROUPS)
    print(
        f"released: over 60 {100 * (r_st > 60).mean():.1f} %, LT 95th "
        f"{np.percentile(r_lt, 95):.0f}, 20+ {100 * (r_lt >= 20).mean():.2f} %, 23+ core/tail "
        f"{100 * (r_lt[~tail] >= 23).mean():.2f}/{100 * (r_lt[tail] >= 23).mean():.2f} %, "
        f"ST ratio by count {ratios}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
