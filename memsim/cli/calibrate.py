"""``memsim calibrate``, ``memsim fit-report`` and ``memsim compat``: parse, call, print."""

from __future__ import annotations

from pathlib import Path

from memsim.cli import args as types
from memsim.cli.progress import progress_display

_PROTOCOL = (
    "a shipped protocol's name (videomem, memento10k, isola2011, lamem) or a protocol YAML file"
)


def register(sub) -> None:
    p = sub.add_parser(
        "calibrate",
        help="fit a parameter set to a study's targets (simulated moments)",
        description="Fit the population parameters to the study's targets and released "
        "scores by simulated moments: a search at --scale (every candidate simulated with "
        "--seeds and logged, so --resume replays it), optionally polished at full scale. "
        "--budget counts the fit's candidates (those a --resume replays included); with "
        "--starts N each start gets an equal share "
        "and the best is polished with the rest (docs/calibration.md).",
    )
    p.add_argument("protocol", type=Path, help=_PROTOCOL)
    types.targets_option(p)
    p.add_argument("--out", type=Path, required=True, help="fitted parameter file to write (YAML)")
    p.add_argument(
        "--start",
        type=Path,
        default=None,
        help="starting parameter set: a YAML file or a shipped set's name (default "
        "calibration/<protocol name>.yaml; a protocol without one needs --start)",
    )
    p.add_argument(
        "--scale",
        type=types.scale,
        default=0.3,
        help="shrink the study by this factor during the search (default 0.3)",
    )
    p.add_argument(
        "--seeds",
        type=types.seed,
        nargs="+",
        default=[1],
        help="seeds every candidate is simulated with (common random numbers; default 1)",
    )
    p.add_argument(
        "--budget",
        type=types.positive_int,
        default=400,
        help="most candidates of the fit, those a --resume replays from the log included "
        "(default 400)",
    )
    p.add_argument("--workers", type=types.positive_int, default=2, help="processes (default 2)")
    p.add_argument(
        "--fix",
        nargs="*",
        default=[],
        metavar="PATH",
        help="free parameters to hold at their starting value (dotted paths)",
    )
    p.add_argument(
        "--starts",
        type=types.positive_int,
        default=1,
        help="multi-start: the start and N-1 points drawn around it (default 1)",
    )
    p.add_argument(
        "--screen",
        type=types.non_negative_int,
        default=0,
        metavar="N",
        help="first evaluate N points spread over the parameter box (Sobol); the other starts "
        "are the best of them (default 0: starts drawn around --start)",
    )
    p.add_argument(
        "--polish",
        type=types.non_negative_int,
        default=0,
        metavar="BUDGET",
        help="then refine the result at full scale for up to BUDGET more candidates, "
        "logged in <out>.polish.evals.jsonl (a fit at --scale below 1 carries to "
        "full scale only roughly; default 0: no refinement)",
    )
    p.add_argument(
        "--polish-seeds",
        type=types.seed,
        nargs="+",
        default=None,
        metavar="SEED",
        help="seeds of the full-scale refinement (default: --seeds)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="reuse the candidates logged in <out>.evals.jsonl (and <out>.polish.evals.jsonl)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="start over: replace the evaluation logs of an earlier fit into the same --out",
    )
    types.data_option(p)
    p.add_argument(
        "--name", default=None, help="name of the fitted set (default: the output file's stem)"
    )
    p.add_argument(
        "--bins",
        choices=("raw", "count-matched"),
        default="raw",
        help="rank bins of the raw simulated scores (rounded as released; default) or of the "
        "scores re-made at the released annotation counts (count-matched)",
    )
    p.add_argument(
        "--method",
        choices=("trf", "dfols"),
        default="trf",
        help="local optimiser: trust-region least squares on a finite-difference Jacobian "
        "(trf; default), or DFO-LS, derivative-free Gauss-Newton that spends one candidate a "
        "step (dfols; docs/calibration.md)",
    )
    p.add_argument(
        "--counts",
        action="store_true",
        help="also fit the shape of the released annotation-count distributions (the share of "
        "videos at or below each of the released counts' quantiles), which who is kept sets",
    )
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=_cmd_calibrate)

    p = sub.add_parser(
        "fit-report",
        help="a parameter set against its targets over several seeds (markdown + figures)",
        description="Simulate a parameter set with seeds 0..N-1, compare every target with "
        "the mean over seeds (and each seed alone), and write a markdown report, the "
        "per-seed values as CSV, and figures.",
    )
    p.add_argument("protocol", type=Path, help=_PROTOCOL)
    p.add_argument(
        "--params",
        type=Path,
        default=None,
        help="parameter set: a YAML file or a shipped set's name (default "
        "calibration/<protocol>.yaml; a protocol without one needs --params)",
    )
    types.targets_option(p)
    p.add_argument(
        "--seeds", type=types.positive_int, default=5, help="number of seeds, 0..N-1 (default 5)"
    )
    p.add_argument(
        "--scale",
        type=types.scale,
        default=1.0,
        help="shrink the study by this factor (default 1: full scale, as the targets are)",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="report file (markdown); figures beside it in figures/, "
        "every target's value per seed in <stem>-seeds.csv",
    )
    types.data_option(
        p,
        "real data folder for the released-score rows (default $MEMSIM_DATA or "
        "../shared/data; without it those rows are n/a and not counted)",
    )
    p.add_argument(
        "--bins",
        choices=("raw", "count-matched"),
        default="raw",
        help="which simulated scores the rank-bin rows use, as in `memsim calibrate --bins`",
    )
    p.add_argument(
        "--stimuli-seed",
        type=types.seed,
        default=None,
        help="every seed plays the same stimuli, drawn with this seed (the participants, the "
        "campaign and the responses still change): how much of each row's spread over seeds "
        "is the campaign's own",
    )
    p.add_argument(
        "--workers",
        type=types.positive_int,
        default=2,
        help="processes that simulate the seeds, at most one per CPU (default 2; the report "
        "is the same whatever their number)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=_cmd_fit_report)

    p = sub.add_parser(
        "recover",
        help="parameter recovery: simulate known parameters, calibrate blind, compare",
        description="Parameter recovery: simulate a known parameter set, move every free "
        "parameter off it (--perturb), calibrate blind to the simulated targets, and write "
        "how far each parameter came back (recovery.csv).",
    )
    p.add_argument("protocol", type=Path, help=_PROTOCOL)
    p.add_argument(
        "--truth",
        type=Path,
        default=None,
        help="true parameter set: a YAML file or a shipped set's name (default "
        "calibration/<protocol>.yaml; a protocol without one needs --truth)",
    )
    types.targets_option(
        p,
        "which targets to measure (default the protocol's)",
    )
    p.add_argument(
        "--scale",
        type=types.scale,
        default=0.3,
        help=(
            "study scale of the recovery (default 0.3: smaller, one seed's extreme rank bins "
            "wander)"
        ),
    )
    p.add_argument(
        "--perturb",
        type=types.finite_float,
        default=0.5,
        help=(
            "start: every free parameter moved this far (alternating signs) in unconstrained units"
        ),
    )
    p.add_argument(
        "--budget",
        type=types.positive_int,
        default=200,
        help="most candidate simulations (default 200)",
    )
    p.add_argument("--workers", type=types.positive_int, default=2, help="processes (default 2)")
    p.add_argument(
        "--fix",
        nargs="*",
        default=[],
        metavar="PATH",
        help="free parameters to hold at their true value (dotted paths)",
    )
    p.add_argument(
        "--out", type=Path, required=True, help="folder for recovery.csv and the evaluation log"
    )
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=_cmd_recover)

    p = sub.add_parser(
        "compat",
        help="which paper statistics the released scores allow (compatibility analysis)",
        description="Which of the paper's consistency numbers the released VideoMem scores "
        "allow: constructions of true scores from the released ones (beta, nonparametric, "
        "noiseless upper bound), the within-video noise each number needs, and optionally "
        "the simulator's candidate mechanisms (docs/calibration.md).",
    )
    types.data_option(p)
    p.add_argument(
        "--repeats",
        type=types.at_least_two,
        default=5,
        help="repeats of each random construction (default 5)",
    )
    p.add_argument(
        "--seed", type=types.seed, default=0, help="seed of the random constructions (default 0)"
    )
    p.add_argument(
        "--mechanisms",
        action="store_true",
        help="also simulate the candidate reconciling mechanisms (takes a few minutes)",
    )
    p.add_argument("--out", type=Path, default=None, help="also write the tables as JSON here")
    p.set_defaults(func=_cmd_compat)


def _targets(args, protocol):
    from memsim.errors import UserError
    from memsim.fit.compare import default_targets_path, load_targets

    path = args.targets or default_targets_path(protocol.name)
    if path is None:
        raise UserError(f"no targets file for protocol {protocol.name!r}; pass --targets FILE")
    return load_targets(path)


def _params_file(value, protocol, flag: str) -> Path:
    """A parameter file given as a path or a shipped set's name (``videomem``); without one,
    the protocol's own set (a protocol without one: a UserError naming ``flag``)."""
    from memsim.resources import params_path
    from memsim.sim.params import default_params_path

    if value is None:
        return default_params_path(protocol, flag)
    shipped = params_path(str(value)) if not Path(value).exists() else None
    return shipped or Path(value)


def _cmd_calibrate(args) -> int:
    from memsim.api import load_protocol
    from memsim.data import released_scores
    from memsim.fit.calibrate import calibrate_to_file
    from memsim.progress import report
    from memsim.sim.params import load_params

    protocol = load_protocol(args.protocol)
    targets = _targets(args, protocol)
    start = load_params(_params_file(args.start, protocol, "--start"))
    real = released_scores(protocol.name, args.data)
    with progress_display(not args.quiet) as show:

        def starting() -> None:
            # before the first candidate: worker processes start, the noise of each moment is
            # measured (a campaign per noise seed), kernels may compile; say so (once the
            # arguments are known good: a refused log is one line, with no progress before it)
            report(
                show,
                "calibrate",
                "starting (workers, noise of the moments)",
                0,
                args.budget,
                unit="candidates",
            )

        result = calibrate_to_file(
            protocol,
            start,
            targets,
            out=args.out,
            real=real,
            scale=args.scale,
            seeds=tuple(args.seeds),
            budget=args.budget,
            workers=args.workers,
            fixed=tuple(args.fix),
            starts=args.starts,
            screen=args.screen,
            polish=args.polish,
            polish_seeds=args.polish_seeds,
            resume=args.resume,
            force=args.force,
            name=args.name,
            bins=args.bins,
            method=args.method,
            counts=args.counts,
            on_eval=_candidate_progress(show),
            on_start=starting,
            regenerate=regenerate_command(args),
        )
    labels = ("search", "full-scale polish") if args.polish else ("",)
    for label, r in zip(labels, result.stages):
        print(
            f"{label + ': ' if label else ''}{r['stopped']}; {r['evaluations']} candidates "
            f"({r['new_evaluations']} simulated now) in {r['seconds']:.0f} s; distance "
            f"{r['best']['distance']:.2f} over {len(r['moments'])} moments"
        )
        phases = r.get("phases") or []
        for ph in phases if len(phases) > 1 else ():
            print(
                f"  {ph['phase']}: {ph['used']} of its {ph['share']} candidates, best distance "
                f"{ph['distance']:.2f} ({ph['stopped']})"
            )
    worst = "; ".join(f"{m} {r:+.2f}" for m, r in result.largest_residuals())
    print("largest residuals (in tolerances): " + worst)
    print(f"wrote {result.path} and {' and '.join(map(str, result.logs))}")
    return 0


def _candidate_progress(show, task: str = "calibrate"):
    """An ``on_eval`` that turns each evaluated candidate into a progress event of ``task``."""
    if show is None:
        return None
    from memsim.progress import report

    seen: dict[str, set] = {}
    best: dict[str, float] = {}

    def on_eval(stage: str, budget: int, row: dict) -> None:
        shown = "search" if stage == "calibrate" else stage.removeprefix("calibrate, ")
        done = seen.setdefault(stage, set())
        done.add(tuple(row["x"]))
        best[stage] = min(best.get(stage, float("inf")), row["distance"])
        report(
            show,
            task,
            shown,
            min(len(done), budget),
            budget,
            unit="candidates",
            detail=f"best {best[stage]:.2f}",
        )

    return on_eval


def regenerate_command(args) -> str:
    """The ``memsim calibrate`` command of these arguments, as the fitted file's header says."""
    from memsim.fit.calibrate import regenerate_command as command

    return command(
        args.protocol,
        args.out,
        start=args.start,
        targets=args.targets,
        scale=args.scale,
        seeds=args.seeds,
        budget=args.budget,
        starts=args.starts,
        screen=args.screen,
        polish=args.polish,
        polish_seeds=args.polish_seeds,
        fixed=args.fix,
        bins=args.bins,
        method=args.method,
        counts=args.counts,
    )


def _cmd_fit_report(args) -> int:
    from memsim.api import load_protocol
    from memsim.errors import UserError
    from memsim.sim.params import load_params
    from memsim.study.fit_report import fit_report, fitted_counts, seed_verdict

    if args.seeds < 1:
        raise UserError("--seeds must be at least 1")
    protocol = load_protocol(args.protocol)
    targets = _targets(args, protocol)
    params_path = _params_file(args.params, protocol, "--params")
    params = load_params(params_path)
    with progress_display(not args.quiet) as show:
        table = fit_report(
            protocol,
            params,
            targets,
            seeds=tuple(range(args.seeds)),
            scale=args.scale,
            out=args.out,
            data=args.data,
            params_path=params_path,
            bins=args.bins,
            stimuli_seed=args.stimuli_seed,
            progress=show,
            workers=args.workers,
        )
    n_ok, n_fit, n_na = fitted_counts(table)
    na = f" ({n_na} n/a: no data to compare with)" if n_na else ""
    print(f"fitted targets within tolerance: {n_ok}/{n_fit}{na}; wrote {args.out}")
    print(seed_verdict(table, args.seeds))
    return 0


def _cmd_recover(args) -> int:
    from memsim.api import load_protocol
    from memsim.errors import UserError
    from memsim.fit.recover import recover
    from memsim.io import atomic_path, make_dirs
    from memsim.sim.params import load_params

    if not (0.0 < args.scale <= 1.0):
        raise UserError(f"--scale must be in (0, 1], got {args.scale}")
    protocol = load_protocol(args.protocol)
    targets = _targets(args, protocol)
    truth = load_params(_params_file(args.truth, protocol, "--truth"))
    make_dirs(args.out)
    with progress_display(not args.quiet) as show:
        shown = _candidate_progress(show, "recover")
        rec = recover(
            protocol,
            truth,
            targets,
            scale=args.scale,
            perturb=args.perturb,
            budget=args.budget,
            workers=args.workers,
            fixed=tuple(args.fix),
            log_path=args.out / "recovery.evals.jsonl",
            on_eval=None if shown is None else (lambda row: shown("calibrate", args.budget, row)),
        )
    with atomic_path(args.out / "recovery.csv") as tmp:
        rec.table.to_csv(tmp, index=False)
    res = rec.calibration
    print(
        f"{res['stopped']}; {res['evaluations']} candidates; distance {res['best']['distance']:.2f}"
    )
    print(rec.table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return 0


def _cmd_compat(args) -> int:
    from memsim.fit.compat import compat

    res = compat(data=args.data, repeats=args.repeats, seed=args.seed, mechanisms=args.mechanisms)
    print_compat(res)
    if args.out:
        from memsim.io import dumps_json, write_text_atomic

        write_text_atomic(args.out, dumps_json(res.to_dict()))
    return 0


def _table(title: str, columns: tuple[str, ...], left: tuple[str, ...]):
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, justify="left" if c in left else "right")
    return t


def print_compat(res) -> None:
    """``memsim compat``'s tables (:class:`memsim.fit.compat.CompatResult`)."""
    import numpy as np
    from rich.console import Console

    console = Console(width=max(110, Console().width))
    t = _table(
        f"Consistency the released scores allow ({res.repeats} repeats; mean ± sd)",
        (
            "scores",
            "construction",
            "human consistency",
            "paper",
            "annotation consistency",
            "at N",
            "paper ",
        ),
        ("scores", "construction"),
    )
    for r in res.table.itertuples():
        t.add_row(
            r.column.split("_")[0],
            r.construction,
            f"{r.human:.3f} ± {r.human_sd:.3f}",
            f"{r.paper_human:.3f}",
            f"{r.annotation:.3f} ± {r.annotation_sd:.3f}",
            f"{r.at:g}",
            f"{r.paper_annotation:.3f}",
        )
    console.print(t)
    for c, st in res.released.items():
        console.print(
            f"{c}: mean {st['mean']:.3f}, SD {st['sd']:.4f}, binomial noise SD "
            f"{np.sqrt(st['noise_var']):.4f}, true SD {np.sqrt(max(st['true_var'], 0)):.4f}, "
            f"{st['videos']} videos, {st['mean_annotations']:.1f} annotations each"
        )
    rc = res.correction
    console.print(
        f"released ST correction (raw = ceil(score x count) / count, recovered for "
        f"{rc['recovered']:.1%} of {rc['videos']:,} videos): score - raw = "
        f"{rc['intercept']:+.4f} {rc['slope']:+.4f} x raw; mean score / raw - 1 = "
        f"{rc['mean_relative_change']:+.4f} (SD {rc['sd_relative_change']:.4f}); mean raw "
        f"{rc['mean_raw']:.4f} -> {rc['mean_score']:.4f}: a ratio, not a shift"
    )
    groups = "; ".join(
        f"{g}: {v['videos']:,} videos, mean {v['mean_relative_change']:+.4f} "
        f"(SD {v['sd_relative_change']:.4f})"
        for g, v in rc["by_count"].items()
    )
    console.print(f"  by annotation count: {groups}; median {rc['median_relative_change']:+.4f}")
    need = res.sd_needed
    console.print(
        f"observed ST score SD needed for human consistency {need['target']}: "
        f"{need['observed_sd']:.3f} (released {need['released_sd']:.3f})"
    )
    t = _table(
        "Another reading: the split-half stepped up to the full set (Spearman-Brown, 2r/(1+r))",
        (
            "scores",
            "construction",
            "annotation split-half",
            "stepped up",
            "paper",
            "human stepped up",
            "paper ",
        ),
        ("scores", "construction"),
    )
    for r in res.readings.itertuples():
        t.add_row(
            r.column.split("_")[0],
            r.construction,
            f"{r.annotation_split_half:.3f}",
            f"{r.annotation_stepped_up:.3f}",
            f"{r.paper_annotation:.3f}",
            f"{r.human_stepped_up:.3f}",
            f"{r.paper_human:.3f}",
        )
    console.print(t)
    t = _table(
        "Within-video noise each paper number needs (classical test theory on the released scores)",
        (
            "scores",
            "statistic",
            "videos",
            "r with binomial noise",
            "paper",
            "noise needed / binomial",
            "intra-video correlation",
        ),
        ("scores", "statistic"),
    )
    for r in res.noise_needed.itertuples():
        t.add_row(
            r.column.split("_")[0],
            r.statistic,
            f"{r.videos:,}",
            f"{r.r_with_binomial_noise:.3f}",
            f"{r.paper:.3f}",
            f"{r.factor:.2f}",
            f"{r.rho:+.4f}",
        )
    console.print(t)
    if res.simulator is not None:
        t = _table(
            f"The simulator's mechanisms ({res.simulator_params}, scale 0.5): human consistency "
            "vs what independent noise predicts from the same scores",
            (
                "variant",
                "scores",
                "human consistency",
                "T / (T + 2E)",
                "npmle construction",
                "score SD",
            ),
            ("variant", "scores"),
        )
        for r in res.simulator.itertuples():
            t.add_row(
                r.variant,
                r.column.split("_")[0],
                f"{r.human:.3f}",
                f"{r.independence_predicts:.3f}",
                f"{r.npmle_predicts:.3f}",
                f"{r.score_sd:.4f}",
            )
        console.print(t)
