"""``memsim infer`` (Bayesian calibration with neural posterior estimation) and ``memsim
posterior`` (what a posterior holds, a draw as a parameter file): parse, call, print."""

from __future__ import annotations

from pathlib import Path

from memsim.cli import args as types
from memsim.cli.progress import progress_display


def register(sub) -> None:
    p = sub.add_parser(
        "infer",
        help="a posterior over the population parameters (simulation-based inference, sbi)",
        description="Simulate prior draws of the free population parameters through the batched "
        "path, train a neural posterior estimator (sbi) on their statistics (the calibration's "
        "moments), condition it on the released data, and check it: simulation-based "
        "calibration and recovery on held-out simulations, the posterior predictive of every "
        "target. The simulations in OUT/simulations are reused when the settings match "
        "(an interrupted run resumes; a larger --simulations adds to a smaller one). "
        "Needs the infer extra (docs/inference.md).",
    )
    p.add_argument(
        "protocol",
        type=Path,
        help="a shipped protocol's name (videomem) or a protocol YAML file",
    )
    p.add_argument(
        "--simulations",
        type=types.positive_int,
        default=6000,
        help="prior simulations to train on (default 6000)",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument(
        "--scale",
        type=types.scale,
        default=1.0,
        help="shrink the study by this factor (default 1: the study's own size)",
    )
    p.add_argument("--workers", type=types.positive_int, default=1, help="processes (default 1)")
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="cpu",
        help="where the estimator trains (default cpu: memsim's estimators train faster on two "
        "CPU threads than on an H200; auto: CUDA when present)",
    )
    p.add_argument("--seed", type=types.seed, default=0, help="seed of everything (default 0)")
    p.add_argument(
        "--prior",
        type=Path,
        default=None,
        help="prior file (default calibration/<protocol name>-prior.yaml)",
    )
    types.targets_option(p)
    types.data_option(p)
    p.add_argument(
        "--heldout",
        type=types.non_negative_int,
        default=200,
        help="held-out simulations for SBC and recovery (default 200; 0: no checks)",
    )
    p.add_argument(
        "--predictive",
        type=types.non_negative_int,
        default=100,
        help="posterior draws simulated for the predictive check (default 100; 0: none)",
    )
    p.add_argument(
        "--truncated",
        type=types.non_negative_int,
        default=0,
        metavar="N",
        help="a second round of N simulations from the prior inside the first posterior's "
        "highest-density region (TSNPE), trained on with the first; held-out draws from that "
        "region are checked too (default 0: one round)",
    )
    p.add_argument(
        "--balance",
        type=types.finite_float,
        default=0.0,
        metavar="LAMBDA",
        help="train balanced NPE with this weight on its balancing term (BNPE, Delaunoy et al. "
        "2023; 100 is the paper's), which penalises overconfidence (default 0: plain NPE). The "
        "simulations in OUT are reused",
    )
    p.add_argument(
        "--mcmc-start",
        choices=("flow", "tempered"),
        default="flow",
        help="where the Metropolis chains of a posterior with emulated statistics start: the "
        "flow's own draws (default) or those draws resampled by a tempered likelihood, nearer "
        "the product (docs/inference.md). The simulations in OUT are reused",
    )
    p.add_argument("--no-figures", action="store_true", help="write no figures")
    p.add_argument(
        "--force", action="store_true", help="start the simulations in OUT over (replace them)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.set_defaults(func=_cmd_infer)

    p = sub.add_parser(
        "posterior",
        help="what a posterior holds, or one of its draws as a parameter file",
        description="Describe a posterior that memsim infer wrote (or a shipped one by name): "
        "its draws, each parameter's median, 90 %% interval and contraction, and the checks the "
        "run measured. With --draw I, draw I as a parameter file instead (to --out, or to "
        "standard output), which memsim run and simulate take as --params. Needs neither "
        "torch nor sbi.",
    )
    p.add_argument(
        "posterior",
        nargs="?",
        default="videomem",
        help="a shipped posterior's name (videomem, memento10k; default videomem) or a folder "
        "written by memsim infer",
    )
    p.add_argument(
        "--draw",
        type=types.non_negative_int,
        default=None,
        metavar="I",
        help="write draw I (0 is the first; the draws are independent) as a parameter file",
    )
    p.add_argument(
        "--out", type=Path, default=None, help="with --draw: the parameter file to write"
    )
    p.set_defaults(func=_cmd_posterior)


#: The stages that simulate (``Inference.info["seconds"]``): the time shown as the simulations'.
SIMULATING = ("simulations", "heldout_simulations", "truncated_simulations")


def _cmd_infer(args) -> int:
    from memsim.api import infer
    from memsim.fit.compare import format_value

    with progress_display(not args.quiet) as show:
        r = infer(
            args.protocol,
            out=args.out,
            simulations=args.simulations,
            scale=args.scale,
            workers=args.workers,
            device=args.device,
            seed=args.seed,
            prior=args.prior,
            targets=args.targets,
            data=args.data,
            heldout=args.heldout,
            predictive=args.predictive,
            truncated=args.truncated,
            balance=args.balance,
            mcmc_start=args.mcmc_start,
            figures=not args.no_figures,
            force=args.force,
            progress=show,
        )
    from memsim.study.infer import trained

    info = r.info
    t = info["train"]
    print(
        f"{info['simulations']} simulations ({info['simulations_new']} new, "
        f"{t['dropped']} without every statistic), trained {trained(t)} on {t['device']}"
        + (f", balanced (weight {t['balance']:g})" if t.get("balance") else "")
    )
    if t.get("emulated"):
        from memsim.study.infer import emulator_line

        print(emulator_line(info))
    if info.get("truncated_simulations"):
        print(
            f"second round: {info['truncated_simulations']} simulations inside the first "
            f"posterior's region ({info['truncation_acceptance']:.2%} of the prior's draws, "
            f"{info['truncation_posterior_mass']:.2%} of the posterior's; "
            f"{info['truncated_new']} new), trained on with the first"
        )
    print("posterior given the released data (median [5 %, 95 %]):")
    for row in r.table.itertuples(index=False):
        print(
            f"  {row.parameter}: {format_value(row.median)} "
            f"[{format_value(row.q05)}, {format_value(row.q95)}]"
        )
    if r.typicality:
        from memsim.study.infer import typicality_line

        print(typicality_line(r.typicality))
    if r.sbc is not None:
        print(
            f"SBC on {info['heldout']} held-out simulations: "
            f"{info['sbc_parameters_uniform_at_1pct']} of {len(r.sbc)} parameters uniform at "
            f"the 1 % level (lowest p {info['sbc_min_p']:.3f}); coverage of the 50 % / 90 % "
            f"intervals {info['coverage_50']:.1%} / {info['coverage_90']:.1%}"
        )
    if info.get("region_heldout"):
        print(
            f"SBC on {info['region_heldout']} held-out draws from the second round's region: "
            f"{info['region_sbc_parameters_uniform_at_1pct']} of {len(r.sbc)} parameters "
            f"uniform at the 1 % level (lowest p {info['region_sbc_min_p']:.3f}); coverage "
            f"{info['region_coverage_50']:.1%} / {info['region_coverage_90']:.1%}"
        )
    if r.predictive is not None:
        print(
            f"posterior predictive ({info['predictive_draws']} draws): "
            f"{info['fit_rows_inside']} of {info['fit_rows']} fitted targets hold"
            + (f"; not: {', '.join(info['fit_rows_outside'])}" if info["fit_rows_outside"] else "")
        )
        for what in ("median", "mode"):
            for name, vals in info.get(f"ks_at_posterior_{what}", {}).items():
                shown = " ".join(f"{v:.3f}" for v in vals)
                print(f"{name} at the posterior {what} ({len(vals)} seeds): {shown}")
    secs = info["seconds"]
    simulating = sum(secs.get(k, 0.0) for k in SIMULATING)
    print(f"{secs['total']:.0f} s in all, simulations {simulating:.0f} s; written to {r.out}")
    return 0


def _cmd_posterior(args) -> int:
    from memsim.api import posterior
    from memsim.errors import UserError
    from memsim.fit.compare import format_value

    if args.out is not None and args.draw is None:
        raise UserError("--out writes a draw: give --draw I as well")
    post = posterior(args.posterior)
    if args.draw is not None:
        if args.out is None:
            print(post.params_yaml(args.draw), end="")
            return 0
        path = post.save_params(args.draw, args.out)
        print(
            f"wrote {path}: draw {args.draw} of {len(post)} (run it: memsim run PROTOCOL "
            f"--params {path})"
        )
        return 0
    from memsim.resources import is_protocol_name

    # as memsim.resources.posterior_path reads the argument: a name, unless a folder has it
    shipped = is_protocol_name(args.posterior) and not Path(args.posterior).exists()
    where = "shipped with memsim" if shipped else f"in {args.posterior}"
    made = f", made on protocol {post.protocol.name}" if post.protocol is not None else ""
    print(
        f"{post.base.name} posterior ({where}): {len(post):,} draws of "
        f"{len(post.draws.columns)} parameters{made}"
    )
    summary = post.summary
    if summary is not None and {"parameter", "median", "q05", "q95"} <= set(summary.columns):
        contraction = "contraction" in summary.columns
        print(
            "median [5 %, 95 %]"
            + (", contraction (1: pinned down by the data, 0: the prior's width)" if contraction
               else "")
            + ":"
        )  # fmt: skip
        for row in summary.itertuples(index=False):
            print(
                f"  {row.parameter}: {format_value(row.median)} [{format_value(row.q05)}, "
                f"{format_value(row.q95)}]" + (f", {row.contraction:.2f}" if contraction else "")
            )
    for line in post.checks():
        print(line)
    print(f"one draw as a parameter file: memsim posterior {args.posterior} --draw I --out FILE")
    return 0
