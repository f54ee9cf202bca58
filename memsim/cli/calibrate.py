"""``memsim calibrate``, ``memsim fit-report`` and ``memsim compat``: parse, call, print."""

from __future__ import annotations

from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "calibrate", help="fit a parameter set to a study's targets (simulated moments)"
    )
    p.add_argument("protocol", type=Path, help="protocol YAML file")
    p.add_argument(
        "--targets",
        type=Path,
        default=None,
        help="targets file (default calibration/<protocol name>-targets.yaml)",
    )
    p.add_argument("--out", type=Path, required=True, help="fitted parameter file to write (YAML)")
    p.add_argument(
        "--start",
        type=Path,
        default=None,
        help="starting parameter set (default calibration/<protocol name>.yaml)",
    )
    p.add_argument(
        "--scale",
        type=float,
        default=0.3,
        help="shrink the study by this factor during the search (default 0.3)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[1],
        help="seeds every candidate is simulated with (common random numbers; default 1)",
    )
    p.add_argument(
        "--budget", type=int, default=400, help="most new candidate simulations (default 400)"
    )
    p.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    p.add_argument(
        "--fix",
        nargs="*",
        default=[],
        metavar="PATH",
        help="free parameters to hold at their starting value (dotted paths)",
    )
    p.add_argument(
        "--starts",
        type=int,
        default=1,
        help="multi-start: the start and N-1 points drawn around it (default 1)",
    )
    p.add_argument(
        "--screen",
        type=int,
        default=0,
        metavar="N",
        help="first evaluate N points spread over the parameter box (Sobol); the other starts "
        "are the best of them (default 0: starts drawn around --start)",
    )
    p.add_argument(
        "--polish",
        type=int,
        default=0,
        metavar="BUDGET",
        help="then refine the result at full scale for up to BUDGET more candidates, "
        "logged in <out>.polish.evals.jsonl (a fit at --scale below 1 carries to "
        "full scale only roughly; default 0: no refinement)",
    )
    p.add_argument(
        "--polish-seeds",
        type=int,
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
        "--data",
        type=Path,
        default=None,
        help="real data folder (default $MEMSIM_DATA or ../shared/data)",
    )
    p.add_argument(
        "--name", default=None, help="name of the fitted set (default: the output file's stem)"
    )
    p.add_argument(
        "--bins",
        choices=("raw", "count-matched"),
        default="raw",
        help="rank bins of the raw simulated scores (rounded as released; default) or of the scores "
        "re-made at the released annotation counts (count-matched)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=_cmd_calibrate)

    p = sub.add_parser(
        "fit-report",
        help="a parameter set against its targets over several seeds (markdown + figures)",
    )
    p.add_argument("protocol", type=Path)
    p.add_argument(
        "--params",
        type=Path,
        default=None,
        help="parameter set (default calibration/<protocol>.yaml)",
    )
    p.add_argument("--targets", type=Path, default=None)
    p.add_argument("--seeds", type=int, default=5, help="number of seeds, 0..N-1 (default 5)")
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="report file (markdown); figures beside it in figures/, "
        "every target's value per seed in <stem>-seeds.csv",
    )
    p.add_argument("--data", type=Path, default=None)
    p.add_argument(
        "--bins",
        choices=("raw", "count-matched"),
        default="raw",
        help="which simulated scores the rank-bin rows use, as in `memsim calibrate --bins`",
    )
    p.set_defaults(func=_cmd_fit_report)

    p = sub.add_parser(
        "recover", help="parameter recovery: simulate known parameters, calibrate blind, compare"
    )
    p.add_argument("protocol", type=Path)
    p.add_argument(
        "--truth",
        type=Path,
        default=None,
        help="true parameter set (default calibration/<protocol>.yaml)",
    )
    p.add_argument(
        "--targets",
        type=Path,
        default=None,
        help="which targets to measure (default the protocol's)",
    )
    p.add_argument(
        "--scale",
        type=float,
        default=0.3,
        help="study scale of the recovery (default 0.3: smaller, one seed's extreme rank bins wander)",
    )
    p.add_argument(
        "--perturb",
        type=float,
        default=0.5,
        help="start: every free parameter moved this far (alternating signs) in unconstrained units",
    )
    p.add_argument("--budget", type=int, default=200)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--fix", nargs="*", default=[], metavar="PATH")
    p.add_argument(
        "--out", type=Path, required=True, help="folder for recovery.csv and the evaluation log"
    )
    p.set_defaults(func=_cmd_recover)

    p = sub.add_parser(
        "compat", help="which paper statistics the released scores allow (compatibility analysis)"
    )
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="real data folder (default $MEMSIM_DATA or ../shared/data)",
    )
    p.add_argument(
        "--repeats", type=int, default=5, help="repeats of each random construction (default 5)"
    )
    p.add_argument("--seed", type=int, default=0)
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


def _cmd_calibrate(args) -> int:
    from rich.console import Console

    from memsim.data import released_scores
    from memsim.design.protocol import load_protocol
    from memsim.errors import UserError
    from memsim.fit.calibrate import calibrate, dump_params_yaml, fitted_note
    from memsim.io import write_text_atomic
    from memsim.sim.params import default_params_path, load_params

    if not (0.0 < args.scale <= 1.0):
        raise UserError(f"--scale must be in (0, 1], got {args.scale}")
    if args.budget < 1 or args.workers < 1 or args.starts < 1:
        raise UserError("--budget, --workers and --starts must be at least 1")
    if args.screen < 0 or args.polish < 0:
        raise UserError("--screen and --polish must be 0 or more")
    if args.polish_seeds is not None and not args.polish:
        raise UserError("--polish-seeds needs --polish BUDGET")
    protocol = load_protocol(args.protocol)
    targets = _targets(args, protocol)
    start = load_params(args.start or default_params_path(protocol))
    real = released_scores(protocol.name, args.data)
    console = Console(stderr=True, quiet=args.quiet)
    out_path = Path(args.out)
    log_path = out_path.with_name(out_path.name + ".evals.jsonl")

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    polish_seeds = tuple(args.polish_seeds or args.seeds)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("best {task.fields[best]}"),
        TimeElapsedColumn(),
        console=console,
        disable=args.quiet,
        transient=True,
    ) as bar:

        def progress(description: str, budget: int):
            task = bar.add_task(description, total=budget, best="-")
            best, counted = [float("inf")], set()

            def on_eval(row):
                best[0] = min(best[0], row["distance"])
                counted.add(tuple(row["x"]))
                bar.update(task, completed=min(len(counted), budget), best=f"{best[0]:.2f}")

            return on_eval

        common = dict(
            real=real,
            workers=args.workers,
            resume=args.resume,
            fixed=tuple(args.fix),
            bins=args.bins,
        )
        # resuming a run whose polish had begun: the search is replayed from its log, not carried
        # on, so that the polish resumes from the point it started from
        replay = bool(
            args.polish and args.resume and polish_log(out_path).exists() and log_path.exists()
        )
        res = calibrate(
            protocol,
            start,
            targets,
            scale=args.scale,
            seeds=tuple(args.seeds),
            budget=args.budget,
            log_path=log_path,
            starts=args.starts,
            screen=args.screen,
            on_eval=progress("calibrate", args.budget),
            replay_only=replay,
            **common,
        )
        stages = [res]
        if args.polish:
            res = calibrate(
                protocol,
                res["params"],
                targets,
                scale=1.0,
                seeds=polish_seeds,
                budget=args.polish,
                log_path=polish_log(out_path),
                on_eval=progress("polish at full scale", args.polish),
                **common,
            )
            stages.append(res)
    name = args.name or out_path.stem
    if args.polish:
        first = stages[0]
        note = (
            fitted_note(res, 1.0, polish_seeds, targets.name)
            + f"; refined from a search at scale {args.scale}, seeds {list(args.seeds)}: "
            f"{first['evaluations']} candidates, distance {first['best']['distance']:.2f}"
        )
    else:
        note = fitted_note(res, args.scale, args.seeds, targets.name)
    fitted = res["params"].model_copy(update={"name": name, "calibrated": True, "note": note})
    header = (
        f"Fitted population parameters for {protocol.name}: CALIBRATED by `memsim calibrate`.\n"
        f"Regenerate: {regenerate_command(args)}\n"
        f"Fields: docs/model.md; method and fit: docs/calibration.md"
    )
    write_text_atomic(out_path, dump_params_yaml(fitted, header))
    for label, r in zip(("search" if args.polish else "", "full-scale polish"), stages):
        print(
            f"{label + ': ' if label else ''}{r['stopped']}; {r['evaluations']} candidates "
            f"({r['new_evaluations']} simulated now) in {r['seconds']:.0f} s; distance "
            f"{r['best']['distance']:.2f} over {len(r['moments'])} moments"
        )
    worst = sorted(zip(res["moments"], res["best"]["residuals"]), key=lambda t: -abs(t[1]))[:5]
    print("largest residuals (in tolerances): " + "; ".join(f"{m.name} {r:+.2f}" for m, r in worst))
    also = f" and {polish_log(out_path)}" if args.polish else ""
    print(f"wrote {out_path} and {log_path}{also}")
    return 0


def polish_log(out_path: Path) -> Path:
    return out_path.with_name(out_path.name + ".polish.evals.jsonl")


def regenerate_command(args) -> str:
    """The ``memsim calibrate`` command that gives the same fit: every option that changes the
    result (the start, targets, starts, screen, held parameters), none that only changes the
    speed (workers) or where files go (data, resume)."""
    parts = ["memsim calibrate", str(args.protocol), "--out", str(args.out)]
    if args.start:
        parts += ["--start", str(args.start)]
    if args.targets:
        parts += ["--targets", str(args.targets)]
    parts += [
        "--scale",
        str(args.scale),
        "--seeds",
        *map(str, args.seeds),
        "--budget",
        str(args.budget),
    ]
    if args.starts > 1:
        parts += ["--starts", str(args.starts)]
    if args.screen:
        parts += ["--screen", str(args.screen)]
    if args.polish:
        parts += ["--polish", str(args.polish)]
        if args.polish_seeds:
            parts += ["--polish-seeds", *map(str, args.polish_seeds)]
    if args.fix:
        parts += ["--fix", *args.fix]
    parts += ["--bins", args.bins]
    return " ".join(parts)


def _cmd_fit_report(args) -> int:
    from memsim.design.protocol import load_protocol
    from memsim.errors import UserError
    from memsim.sim.params import default_params_path, load_params
    from memsim.study.fit_report import fit_report

    if args.seeds < 1:
        raise UserError("--seeds must be at least 1")
    protocol = load_protocol(args.protocol)
    targets = _targets(args, protocol)
    params = load_params(args.params or default_params_path(protocol))
    table = fit_report(
        protocol,
        params,
        targets,
        seeds=tuple(range(args.seeds)),
        scale=args.scale,
        out=args.out,
        data=args.data,
        params_path=args.params or default_params_path(protocol),
        bins=args.bins,
    )
    n_fit = int((table.kind == "fit").sum())
    n_ok = int((table.within & (table.kind == "fit")).sum())
    print(f"fitted targets within tolerance: {n_ok}/{n_fit}; wrote {args.out}")
    return 0


def _cmd_recover(args) -> int:
    from memsim.design.protocol import load_protocol
    from memsim.errors import UserError
    from memsim.fit.recover import recover
    from memsim.io import atomic_path
    from memsim.sim.params import default_params_path, load_params

    if not (0.0 < args.scale <= 1.0):
        raise UserError(f"--scale must be in (0, 1], got {args.scale}")
    protocol = load_protocol(args.protocol)
    targets = _targets(args, protocol)
    truth = load_params(args.truth or default_params_path(protocol))
    args.out.mkdir(parents=True, exist_ok=True)
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
    from memsim.fit.compat import run_compat

    return run_compat(args)
