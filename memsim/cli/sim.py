"""``memsim simulate``, ``memsim run`` and ``memsim bench``: parse, call, print."""

from __future__ import annotations

import argparse
from pathlib import Path

from memsim.cli import args as types
from memsim.cli.progress import progress_display


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "protocol",
        help="a shipped protocol by name (videomem, memento10k, isola2011, lamem) "
        "or a protocol YAML file",
    )
    p.add_argument("--seed", type=types.seed, default=0, help="random seed (default 0)")
    p.add_argument(
        "--stimuli-seed",
        type=types.seed,
        default=None,
        help="draw the stimuli's latent parameters with this seed and everything else with "
        "--seed: the same stimuli played by a new campaign (default: --seed)",
    )
    p.add_argument(
        "--params",
        default=None,
        help="population parameter set: a YAML file or a shipped set's name (default: the "
        "protocol's own set, calibration/<protocol name>.yaml; a protocol without one needs "
        "--params, e.g. --params videomem for VideoMem's crowd; the run's first line says "
        "which set it uses)",
    )
    p.add_argument(
        "--scale",
        type=types.scale,
        default=1.0,
        help="shrink stimuli and participants by this factor for a quick look (0 < F <= 1)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress display")


def register(sub) -> None:
    p = sub.add_parser(
        "simulate",
        help="simulate a study and write its trial table and latent truth",
        description="Simulate a study and write trials.parquet, videos.parquet and "
        "participants.parquet (the latent truth) into --out.",
    )
    _common(p)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser(
        "run",
        help="simulate, score and analyse a study; compare with the paper",
        description="The main job: simulate a study, score it with the pipeline that scores "
        "real logs, run the paper's analyses, and print every published statistic beside the "
        "simulated one.",
    )
    _common(p)
    p.add_argument(
        "--out", type=Path, default=None, help="output folder (default runs/<protocol name>)"
    )
    types.data_option(
        p,
        "real data folder for the real-vs-simulated rows (default $MEMSIM_DATA or ../shared/data)",
    )
    p.add_argument("--no-figures", action="store_true", help="skip the figures")
    p.add_argument(
        "--figure-formats",
        metavar="FMT[,FMT]",
        default=None,
        help="also write each figure as svg and/or pdf beside its PNG (200 dpi), e.g. svg,pdf",
    )
    p.add_argument(
        "--figure-workers",
        type=types.non_negative_int,
        metavar="N",
        default=None,
        help="processes that draw the figures while the run goes on (Linux; default 2 while "
        "the CPUs are not all busy, else 0; at most 5, one per figure); 0 draws them in this "
        "process after the analyses",
    )
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "bench",
        help="benchmark the simulator (speed ratios against plain references)",
        description="Time the trial kernel, the sequence generator and a full VideoMem "
        "campaign, each against a plain-Python reference run in the same process, and mark "
        "each measure with a goal as met or missed. Takes about a minute (--quick: seconds).",
    )
    p.add_argument(
        "--quick", action="store_true", help="smaller sizes (a smoke test of the benchmark)"
    )
    p.set_defaults(func=_cmd_bench)


def _load(args):
    from memsim import api
    from memsim.sim.simulate import check_memory, scale_protocol

    protocol = api.load_protocol(args.protocol)
    params, why = api.params_for(protocol, args.params)
    # a campaign too large for memory: one line before anything is printed (the run checks
    # again when it prepares the protocol)
    check_memory(scale_protocol(protocol, args.scale))
    return protocol, params, why


def _cmd_simulate(args) -> int:
    from memsim.sim.simulate import simulate, write_simulation
    from memsim.study.run import run_folder

    protocol, params, why = _load(args)
    with run_folder(args.out) as tmp:  # appears whole, replacing an earlier run whole
        print(why, flush=True)
        with progress_display(not args.quiet) as show:
            sim = simulate(
                protocol,
                params,
                seed=args.seed,
                scale=args.scale,
                progress=show,
                stimuli_seed=args.stimuli_seed,
            )
        paths = [args.out / p.name for p in write_simulation(sim, tmp)]
    tr = sim.trials
    held = "" if args.stimuli_seed is None else f", stimuli of seed {args.stimuli_seed}"
    print(
        f"{sim.protocol.name}: {tr.participant.nunique():,} participants, {len(tr):,} trials, "
        f"{sim.protocol.stimuli.count:,} stimuli (seed {args.seed}{held}, params {params.name})"
    )
    for a in sim.admissions:  # a later step's quota at work
        print(a.describe())
    if sim.top_up is not None:  # the participants above include the top-up's
        print(sim.top_up.describe())
    if sim.pilot is not None:  # and the pilot's
        print(sim.pilot.describe())
    for p in paths:
        print(f"wrote {p}")
    return 0


def _cmd_run(args) -> int:
    from memsim.cli.format import print_run
    from memsim.study.run import check_run_folder, run_study
    from memsim.viz.style import parse_formats

    protocol, params, why = _load(args)
    out = args.out or Path("runs") / protocol.name
    formats = parse_formats(args.figure_formats)  # a typo fails before the work
    check_run_folder(out)  # a folder it must not replace: one line, before anything is printed
    print(why, flush=True)  # before the progress lines: which parameters, and why
    with progress_display(not args.quiet) as show:
        result = run_study(
            protocol,
            params,
            seed=args.seed,
            scale=args.scale,
            data=args.data,
            out=out,
            figures=not args.no_figures,
            figure_formats=formats,
            figure_workers=args.figure_workers,
            progress=show,
            stimuli_seed=args.stimuli_seed,
        )
    print_run(result, out)
    return 0


def _cmd_bench(args) -> int:
    from memsim.cli.format import print_bench
    from memsim.sim.bench import measure

    print_bench(measure(quick=args.quick))
    return 0
