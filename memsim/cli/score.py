"""``memsim score`` and ``memsim analyse``: score a trial table, and run the paper's analyses.

Only parses, calls and prints; the work is in :mod:`memsim.analysis.scoring` and
:mod:`memsim.analysis.consistency`, imported inside the handlers so ``memsim --help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from memsim.cli import args as types

_PROTOCOL_HELP = (
    "the protocol the table was collected under: a shipped protocol's name (videomem, "
    "memento10k, isola2011, lamem) or a protocol YAML file"
)
_NO_CHECK_HELP = (
    "score even a table the protocol could not have produced (other steps, roles, positions "
    "or lags than the protocol's); by default such a table is refused with one line saying "
    "what disagrees"
)


def register(sub) -> None:
    p = sub.add_parser(
        "score",
        help="score a trial table (Parquet or CSV) under a protocol",
        description="Score a real or simulated trial table with the pipeline of the protocol: "
        "participant filters, raw scores, lag correction. Writes the scores in VideoMem's "
        "ground-truth format and prints one line per step. The table is first checked against "
        "the protocol (steps, positions, roles, lags); --no-check skips that.",
    )
    p.add_argument("trials", type=Path, help="trial table (Parquet or CSV; docs/scoring.md)")
    p.add_argument("--protocol", required=True, help=_PROTOCOL_HELP)
    p.add_argument("--out", type=Path, required=True, help="scores CSV to write (VideoMem format)")
    p.add_argument(
        "--participants",
        type=Path,
        default=None,
        help="also write the per-participant statistics and filter decisions (CSV)",
    )
    p.add_argument("--no-check", action="store_true", help=_NO_CHECK_HELP)
    p.set_defaults(func=_cmd_score)

    p = sub.add_parser(
        "analyse",
        help="consistency, lag, response-time and score analyses of a trial table",
        description="Score a trial table, then run the paper's analyses on it: human and "
        "annotation consistency, Spearman-Brown, hit rate vs lag, response times, "
        "short-term vs long-term scores.",
    )
    p.add_argument("trials", type=Path, help="trial table (Parquet or CSV; docs/scoring.md)")
    p.add_argument("--protocol", required=True, help=_PROTOCOL_HELP)
    p.add_argument("--out", type=Path, default=None, help="folder for summary.json and scores.csv")
    p.add_argument(
        "--seed", type=types.seed, default=0, help="seed of the random splits (default 0)"
    )
    p.add_argument(
        "--splits",
        type=types.at_least_two,
        default=25,
        help="random participant half-splits (default 25; at most 1,000 without --allow-large)",
    )
    p.add_argument(
        "--allow-large",
        action="store_true",
        help="lift the limit on --splits (docs/limits.md)",
    )
    p.add_argument(
        "--truth",
        type=Path,
        default=None,
        help="CSV/Parquet with 'video' and true values under the score column names",
    )
    p.add_argument("--no-check", action="store_true", help=_NO_CHECK_HELP)
    p.set_defaults(func=_cmd_analyse)

    p = sub.add_parser(
        "scores",
        help="describe a scores file (real or simulated): distributions, counts, ST-LT",
        description="Describe a scores file in VideoMem's format: each column's distribution "
        "and annotation counts, and the short-term vs long-term correlations over all videos "
        "and over the 500 and 100 most long-term-annotated (docs/scoring.md says why the "
        "top-100 value of the released dev set differs from the paper's).",
    )
    p.add_argument(
        "scores",
        type=Path,
        nargs="?",
        default=None,
        help="scores CSV (default: the released VideoMem dev-set ground truth under --data)",
    )
    types.data_option(
        p,
        "real-data folder (default: $MEMSIM_DATA, else <repo>/../shared/data)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON")
    p.set_defaults(func=_cmd_scores)


def _load(args):
    from memsim.api import load_protocol
    from memsim.design.trials import check_against_protocol, read_trials
    from memsim.errors import UserError

    protocol = load_protocol(args.protocol)
    trials = read_trials(args.trials)
    if not args.no_check:
        try:
            check_against_protocol(trials, protocol, source=args.trials)
        except UserError as exc:
            raise UserError(f"{exc} (--no-check scores it anyway)") from None
    return protocol, trials


def _summary_lines(res) -> list[str]:
    import numpy as np

    lines = []
    parts = res.participants
    for s, spec in enumerate(res.protocol.steps, start=1):
        ps = parts[parts["step"] == s]
        kept = int(ps["kept"].sum())
        why = ps.loc[~ps["kept"], "reason"].value_counts()
        why_txt = ", ".join(f"{k} {v}" for k, v in why.items()) or "none dropped"
        v = res.videos[res.videos["step"] == s]
        corr = res.corrections[spec.name]
        ctxt = "no correction"
        ref = corr.get("reference_lag")
        if corr["kind"] == "linear":
            how = "scaled" if corr.get("form") == "ratio" else "shifted"
            ctxt = f"linear correction, {how} to lag {ref}, slope {corr['slope']:+.3g}/position"
        elif corr["kind"] == "log_linear":
            slope = corr["slope_per_log_lag"]
            ctxt = f"log-linear correction to lag {ref}, slope {slope:+.3g}/ln(lag)"
        elif corr["kind"] == "memento_decay":
            ctxt = f"memento decay to lag {ref}, mean alpha {corr['mean_alpha']:+.3g}"
        mean_raw = float(v["raw"].mean()) if len(v) else np.nan
        mean_sc = float(v["score"].mean()) if len(v) else np.nan
        ann = v["annotations"]
        ann_mean, ann_min = (ann.mean(), ann.min()) if len(v) else (0.0, 0)
        lines.append(
            f"step {s} {spec.name}: {kept:,} of {len(ps):,} participants kept ({why_txt}); "
            f"{len(v):,} videos, {ann_mean:.1f} annotations/video (min {ann_min}); "
            f"mean score {mean_raw:.3f} raw -> {mean_sc:.3f} ({ctxt})"
        )
    return lines


def _cmd_score(args: argparse.Namespace) -> int:
    from memsim.analysis.scoring import score, write_scores
    from memsim.io import atomic_path

    protocol, trials = _load(args)
    res = score(trials, protocol)
    write_scores(res.scores, args.out)
    if args.participants is not None:
        with atomic_path(args.participants) as tmp:
            res.participants.to_csv(tmp, index=False, lineterminator="\n")
    for line in _summary_lines(res):
        print(line)
    print(f"wrote {args.out} ({len(res.scores):,} videos)")
    return 0


def _fmt(x, nd=3) -> str:
    try:
        return "nan" if x != x else f"{x:.{nd}f}"
    except (TypeError, ValueError):
        return str(x)


def _cmd_analyse(args: argparse.Namespace) -> int:

    from memsim.analysis.consistency import analyse
    from memsim.analysis.scoring import score, write_scores
    from memsim.errors import UserError
    from memsim.io import dumps_json, make_dirs, write_text_atomic
    from memsim.limits import check_splits

    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise UserError("--out must be a folder, but a file is there", path=args.out)
    if args.splits < 2:
        raise UserError(f"--splits must be at least 2, got {args.splits}")
    check_splits(args.splits, args.allow_large)
    protocol, trials = _load(args)
    truth = None
    if args.truth is not None:
        import pandas as pd

        from memsim.io import check_input

        check_input(args.truth, "truth file")
        try:
            truth = (
                pd.read_parquet(args.truth)
                if args.truth.suffix in (".parquet", ".pq")
                else pd.read_csv(args.truth)
            )
        except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
            raise UserError(
                f"cannot read truth table: {str(exc).splitlines()[0]}", path=args.truth
            ) from None
        if "video" not in truth.columns:
            raise UserError("truth table lacks column 'video'", path=args.truth)
    res = score(trials, protocol)
    out = analyse(res, truth=truth, seed=args.seed, n_splits=args.splits)
    for line in _summary_lines(res):
        print(line)
    for s in protocol.steps:
        n = s.name
        hc = out["human_consistency"][n]
        ac = out["annotation_consistency"][n]
        lc = out["lag_curve"][n]
        rt = out["response_times"][n]
        m = ac["mean_annotations"]
        at_n = round(m) if m == m else "nan"
        all_videos = _fmt(ac["all_annotations_reading"]["all_videos"])
        sb_full = _fmt(out["spearman_brown"][n]["full_data"])
        print(
            f"{n}: human consistency {_fmt(hc['mean'])} (sd {_fmt(hc['sd'])}, "
            f"{len(hc['values'])} splits, {hc['participants_per_half']:,} per half); "
            f"annotation consistency {_fmt(ac['at_mean_annotations'])} at N={at_n}, "
            f"max {_fmt(ac['max'])} (all-annotations reading: {all_videos} over all videos); "
            f"Spearman-Brown full data {sb_full}"
        )
        print(
            f"{n}: hit rate vs {lc['unit']}: slope {_fmt(lc['slope'], 5)}, "
            f"intercept {_fmt(lc['intercept'])}; "
            f"RT recognitions {_fmt(rt['mean_rt_recognitions_s'], 2)} s, false alarms "
            f"{_fmt(rt['mean_rt_false_alarms_s'], 2)} s; "
            f"per-video RT vs score r = {_fmt(rt['video_rt_vs_score_pearson'])}"
        )
    for pair, c in out["score_correlation"].items():
        tops = "; ".join(
            f"{k} Spearman {_fmt(v['spearman'])} (min {v['min_annotations']} annotations)"
            for k, v in c.items()
            if k.startswith("top") and v["spearman"] == v["spearman"]  # NaN: too few videos
        )
        print(
            f"{pair}: Spearman {_fmt(c['all']['spearman'])}, Pearson {_fmt(c['all']['pearson'])} "
            f"over {c['all']['videos']:,} videos" + (f"; {tops}" if tops else "")
        )
    for k, v in out["response_times"].items():
        if "~" in k:
            print(f"{k}: per-video mean RT Pearson {_fmt(v['video_mean_rt_pearson'])}")
    for col, v in out.get("truth", {}).items():
        print(f"{col} vs truth: Spearman {_fmt(v['spearman'])}, Pearson {_fmt(v['pearson'])}")
    if args.out is not None:
        make_dirs(args.out)
        write_scores(res.scores, args.out / "scores.csv")
        write_text_atomic(args.out / "summary.json", dumps_json(out, newline=True))
        print(f"wrote {args.out / 'summary.json'} and {args.out / 'scores.csv'}")
    return 0


def _cmd_scores(args: argparse.Namespace) -> int:

    from memsim.analysis.consistency import score_summary
    from memsim.analysis.scoring import read_scores
    from memsim.data import data_dir
    from memsim.io import dumps_json, write_text_atomic

    path = args.scores or data_dir(args.data) / "videomem" / "ground-truth_dev-set.csv"
    df = read_scores(path)
    out = score_summary(df)
    if args.json is not None:  # first: a path that cannot be written fails before any output
        write_text_atomic(args.json, dumps_json(out, newline=True))
    print(f"{path}: {out['videos']:,} videos")
    for col, d in out["columns"].items():
        q = d.get("quantiles", {})
        ann = d.get("annotations")
        ann_txt = (
            f"; annotations mean {ann['mean']:.1f}, min {ann['min']}, max {ann['max']}"
            if ann
            else ""
        )
        nan = float("nan")
        print(
            f"{col}: mean {_fmt(d.get('mean', nan))}, sd {_fmt(d.get('sd', nan))}, "
            f"min {_fmt(d.get('min', nan))}, median {_fmt(q.get('q50', nan))}, "
            f"max {_fmt(d.get('max', nan))}{ann_txt}"
        )
    for k, c in out.items():
        if "~" not in k:
            continue
        tops = "; ".join(
            f"{t} Spearman {_fmt(v['spearman'])}, Pearson {_fmt(v['pearson'])} "
            f"(min {v['min_annotations']} annotations)"
            for t, v in c.items()
            if t.startswith("top") and v["spearman"] == v["spearman"]  # NaN: too few videos
        )
        print(
            f"{k}: Spearman {_fmt(c['all']['spearman'])}, Pearson {_fmt(c['all']['pearson'])} "
            f"over {c['all']['videos']:,} videos" + (f"; {tops}" if tops else "")
        )
    return 0
