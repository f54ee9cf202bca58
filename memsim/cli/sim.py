"""``memsim simulate``, ``memsim run`` and ``memsim bench``: parse, call, print."""

from __future__ import annotations

import argparse
from pathlib import Path


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("protocol", type=Path, help="protocol YAML file")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--params",
        type=Path,
        default=None,
        help="population parameter file (default: calibration/<protocol name>.yaml)",
    )
    p.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="shrink stimuli and participants by this factor for a quick look (0 < F <= 1)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress display")


def register(sub) -> None:
    p = sub.add_parser(
        "simulate", help="simulate a study and write its trial table and latent truth"
    )
    _common(p)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("run", help="simulate, score and analyse a study; compare with the paper")
    _common(p)
    p.add_argument(
        "--out", type=Path, default=None, help="output folder (default runs/<protocol name>)"
    )
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="real data folder for the real-vs-simulated comparison (default $MEMSIM_DATA or ../shared/data)",
    )
    p.add_argument("--no-figures", action="store_true", help="skip the figures")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "bench", help="benchmark the simulator (speed ratios against plain references)"
    )
    p.add_argument(
        "--quick", action="store_true", help="smaller sizes (a smoke test of the benchmark)"
    )
    p.set_defaults(func=_cmd_bench)


def _load(args):
    from memsim.design.protocol import load_protocol
    from memsim.errors import UserError
    from memsim.sim.params import default_params_path, load_params

    if not (0.0 < args.scale <= 1.0):
        raise UserError(f"--scale must be in (0, 1], got {args.scale}")
    protocol = load_protocol(args.protocol)
    params = load_params(args.params or default_params_path(protocol))
    return protocol, params


def _cmd_simulate(args) -> int:
    from memsim.sim.simulate import write_simulation
    from memsim.study.run import simulate_with_progress

    protocol, params = _load(args)
    sim = simulate_with_progress(
        protocol, params, seed=args.seed, scale=args.scale, quiet=args.quiet
    )
    paths = write_simulation(sim, args.out)
    tr = sim.trials
    print(
        f"{sim.protocol.name}: {tr.participant.nunique():,} participants, {len(tr):,} trials, "
        f"{sim.protocol.stimuli.count:,} stimuli (seed {args.seed}, params {params.name})"
    )
    for p in paths:
        print(f"wrote {p}")
    return 0


def _cmd_run(args) -> int:
    from memsim.study.run import run_study

    protocol, params = _load(args)
    out = args.out or Path("runs") / protocol.name
    return run_study(protocol, params, args, out)


def _cmd_bench(args) -> int:
    from memsim.sim.bench import main as bench_main

    return bench_main(quick=args.quick)
