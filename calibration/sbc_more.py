"""A posterior's simulation-based calibration on more held-out simulations.

    python calibration/sbc_more.py --store DIR [--posterior DIR] [--protocol FILE]
                                   [--heldout N] [--seed S] [--workers W] [--estimator FILE ...]

A measurement, not part of ``memsim infer`` (docs/inference.md, "Simulation-based
calibration"). ``memsim infer`` tests its posterior on 200 held-out simulations: enough to
find a large miscalibration, not always a modest one. This script simulates ``--heldout``
more held-out prior draws (the held-out stream of ``--seed``; the inference's own seed is 0,
so seed 1 or more draws other truths), keeps them in ``--store`` (a rerun reuses them), and
runs the same test (:func:`memsim.fit.infer.sbc`: each parameter's ranks among 200 posterior
draws, Pearson's chi-square in 10 bins, a departure at the 1 % level when p < 0.01) on each
set of 200 in turn and on all of them together.

The simulations play the protocol the posterior was made on: its folder's ``protocol.yaml``
(written by ``memsim infer``; the shipped VideoMem posterior's is the protocol of commit
d96c44a), else the shipped protocol of the name in ``inference.json``; ``--protocol`` gives
another. ``--estimator``: one or more estimator files (``estimator.pt``) to test instead of
the folder's own; several are tested one by one and as their equal mixture (the same number
of draws from each), an ensemble.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

from memsim.errors import UserError
from memsim.fit import infer as nfi

SET = 200  # held-out simulations per test, as memsim infer's own check


def _line(est, s: np.ndarray, u: np.ndarray) -> str:
    """The test on one set: parameters uniform at 1 %, the lowest p, coverage of 90 %."""
    res = nfi.sbc(est, u, None, samples=s)
    t = res["table"].sort_values("p")
    low = t.iloc[0]
    return (
        f"{int(t['uniform_at_1pct'].sum())} of {len(t)} uniform at 1 % (lowest p "
        f"{low['p']:.4f}, {low['parameter']}); coverage 50 % / 90 % "
        f"{res['coverage_50']:.1%} / {res['coverage_90']:.1%}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--posterior", default=None, help="a `memsim infer` folder")
    ap.add_argument("--protocol", default=None, help="the protocol the posterior was made on")
    ap.add_argument("--store", required=True, help="folder of the held-out simulations")
    ap.add_argument("--heldout", type=int, default=400, help="held-out simulations")
    ap.add_argument("--seed", type=int, default=1, help="seed of the held-out stream")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--estimator", nargs="+", default=None, help="estimator files to test")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")  # sbi's and torch's notes on sampling, not results

    from memsim.api import load_protocol, load_targets
    from memsim.data import released_scores
    from memsim.fit.calibrate import moments_for
    from memsim.sim.params import load_params

    root = Path(__file__).resolve().parents[1]
    folder = Path(args.posterior or root / "calibration" / "videomem-posterior")
    if args.heldout < SET or args.workers < 1:
        print(f"sbc_more: --heldout must be at least {SET}, --workers at least 1", file=sys.stderr)
        return 2
    try:
        info = json.loads((folder / "inference.json").read_text())
        own = folder / "protocol.yaml"
        proto = load_protocol(args.protocol or (own if own.is_file() else info["protocol"]))
        targets = load_targets(None, protocol=proto)
        prior = nfi.load_prior(root / info["prior"])
        base = load_params(folder / "base-params.yaml")
        real = released_scores(proto.name, None)
        if real is None:
            raise UserError("no released scores (set $MEMSIM_DATA)")
        files = args.estimator or [folder / "estimator.pt"]
        ests = [nfi.Estimator.load(f) for f in files]
        scale = float(info.get("scale", 1.0))
        cols = [s.scoring.column for s in proto.steps]
        moments = moments_for(targets, real, cols, scale, **prior.statistics)
        if [m.name for m in moments] != [m.name for m in ests[0].moments]:
            raise UserError("the estimator was trained on other statistics than these")
        store = nfi.SimulationStore(
            args.store, nfi.store_settings(proto, base, prior, moments, scale, args.seed)
        )
        held = nfi.simulate_prior(
            proto, base, prior, moments, store, n=args.heldout, stream=nfi.HELDOUT,
            seed=args.seed, scale=scale, real=real, workers=args.workers,
        )  # fmt: skip
    except (OSError, KeyError, UserError) as e:
        print(f"sbc_more: {e}", file=sys.stderr)
        return 2
    ok = nfi.usable(held["x"], held["errors"])
    u, xs = held["u"][ok], nfi.standardise(held["x"][ok], moments)
    print(
        f"{int(ok.sum())} held-out simulations of seed {args.seed} ({held['new']} new, "
        f"{int((~ok).sum())} unusable), {SET} posterior draws each"
    )
    draws = [e.sample_batched(SET, xs, seed=0) for e in ests]
    if len(ests) > 1:
        k = len(ests)
        mix = np.concatenate([d[: SET // k + (i < SET % k)] for i, d in enumerate(draws)])
        draws.append(mix)
    shown = [Path(f).resolve() for f in files]
    shown = [f.relative_to(root) if f.is_relative_to(root) else f for f in shown]
    labels = [str(f) for f in shown] + (["their equal mixture"] if len(ests) > 1 else [])
    for lab, s in zip(labels, draws):
        print(f"\n{lab}:")
        for a in range(0, len(u) - SET + 1, SET):
            print(
                f"  held-out {a + 1}-{a + SET}: "
                + _line(ests[0], s[:, a : a + SET], u[a : a + SET])
            )
        if len(u) >= 2 * SET:
            print(f"  all {len(u)}: " + _line(ests[0], s, u))
    return 0


if __name__ == "__main__":
    sys.exit(main())
