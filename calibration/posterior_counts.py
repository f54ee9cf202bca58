"""How much of a posterior reproduces the released annotation counts?

    python calibration/posterior_counts.py [--posterior DIR] [--draws N] [--fresh K]
                                           [--workers W] [--seed S] [--out DIR]

A measurement, not part of ``memsim infer`` (docs/inference-record.md, "What the counts would
take"). The posterior's statistics do not resolve the annotation counts' shape: its
predictive count KS rows miss (``predictive.csv``). This script asks what a posterior
restricted to the crowds that do reproduce them would look like: rejection ABC on the two
count KS rows, with the neural posterior as the proposal.

1. The first ``--draws`` posterior draws of ``--posterior`` (``posterior.parquet``; draws are
   independent, so the first N are a random sample) are simulated with every analysis of
   ``memsim run`` (:func:`memsim.fit.infer.predictive`, at the run seeds ``memsim infer``
   gives its predictive check: the first 100 are the draws and simulations of that check).
2. A draw is accepted when its simulation holds both count KS rows (``counts_ks`` targets,
   each within its tolerance, 0.05).
3. Each accepted draw is simulated again on ``--fresh`` new seeds (stream 9 of ``--seed``):
   an accepted draw's own simulation was selected for its counts, so only fresh simulations
   show what the restricted posterior predicts.

It prints the acceptance, each parameter's median over all draws and over the accepted ones,
and the predictive table (median and 90 % interval, and whether each row holds, by the rule of
``predictive.csv``) of all draws beside that of the accepted draws on fresh seeds. Accepting
on the counts alone treats the neural posterior as the prior of a second update with the
count rows' likelihood, which is exact only where a simulation's count rows and its other
statistics vary independently given the parameters.

``--out DIR`` writes the accepted draws as a posterior folder (``posterior.parquet``, with
the base parameter set and an ``inference.json`` naming where they came from), which a sweep
takes as ``params: posterior DIR``: the studies' answers under the restricted posterior.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from memsim.errors import UserError
from memsim.fit import infer as nfi


def _table(sim: np.ndarray, targets) -> pd.DataFrame:
    t = nfi.predictive_table(sim, targets)
    return t.set_index("target")[["kind", "value", "median", "q05", "q95", "inside"]]


def _write_folder(
    out: Path, source: Path, info: dict, accepted: pd.DataFrame, draws: int, command: str
) -> None:
    """The accepted draws as a posterior folder (`params: posterior DIR`), each file whole."""
    from memsim.io import atomic_path, make_dirs, write_text_atomic

    make_dirs(out)
    with atomic_path(out / "posterior.parquet") as tmp:
        accepted.reset_index(drop=True).to_parquet(tmp, index=False)
    write_text_atomic(out / "base-params.yaml", (source / "base-params.yaml").read_text())
    meta = {k: info[k] for k in ("protocol", "prior", "params", "scale", "seed") if k in info}
    meta["restricted"] = {
        "source": str(source),
        "draws": draws,
        "accepted": len(accepted),
        "rule": "both count KS rows within tolerance on the draw's own simulation",
        "command": command,
    }
    write_text_atomic(out / "inference.json", json.dumps(meta, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--posterior", default=None, help="a `memsim infer` folder")
    ap.add_argument("--draws", type=int, default=400, help="posterior draws simulated")
    ap.add_argument("--fresh", type=int, default=2, help="fresh seeds per accepted draw")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="the inference's seed")
    ap.add_argument("--out", default=None, help="write the accepted draws as a posterior folder")
    args = ap.parse_args(argv)

    from memsim.api import load_protocol, load_targets
    from memsim.data import released_scores
    from memsim.sim.params import load_params

    root = Path(__file__).resolve().parents[1]
    folder = Path(args.posterior or root / "calibration" / "videomem-posterior")
    try:
        info = json.loads((folder / "inference.json").read_text())
        own = folder / "protocol.yaml"  # the protocol the posterior was made on
        proto = load_protocol(own if own.is_file() else info["protocol"])
        targets = load_targets(None, protocol=proto)
        prior = nfi.load_prior(root / info["prior"])
        base = load_params(folder / "base-params.yaml")
        real = released_scores(proto.name, None)
        post = pd.read_parquet(folder / "posterior.parquet")
    except (OSError, KeyError, UserError) as e:
        print(f"posterior_counts: {e}", file=sys.stderr)
        return 2
    if args.fresh < 1 or args.workers < 1:
        print("posterior_counts: --fresh and --workers must be at least 1", file=sys.stderr)
        return 2
    if not 1 <= args.draws <= len(post):
        print(f"posterior_counts: --draws must be 1 to {len(post)}", file=sys.stderr)
        return 2
    values = post[prior.paths].to_numpy(float)[: args.draws]
    names = [t.name for t in targets.targets]
    rows = [j for j, t in enumerate(targets.targets) if t.path[-1] == "counts_ks"]
    tol = np.array([targets.targets[j].tolerance for j in rows])

    seeds = [nfi.run_seed(args.seed, 2, i) for i in range(len(values))]
    sim = nfi.predictive(proto, base, prior, targets, values, seeds, real=real,
                         scale=info.get("scale", 1.0), workers=args.workers)  # fmt: skip
    ok = np.all(sim[:, rows] <= tol, axis=1)
    print(
        f"{int(ok.sum())} of {len(values)} draws hold both count rows on their own simulation "
        f"({ok.mean():.1%}); each row alone: "
        + ", ".join(f"{names[j]} {int((sim[:, j] <= t).sum())}" for j, t in zip(rows, tol))
    )
    if not ok.any():
        return 0
    if args.out:
        command = "python calibration/posterior_counts.py " + " ".join(
            sys.argv[1:] if argv is None else argv
        )
        _write_folder(
            Path(args.out), folder, info, post.iloc[: args.draws][ok], args.draws, command
        )
    acc = np.repeat(values[ok], args.fresh, axis=0)
    fresh = nfi.predictive(
        proto, base, prior, targets, acc, [nfi.run_seed(args.seed, 9, i) for i in range(len(acc))],
        real=real, scale=info.get("scale", 1.0), workers=args.workers,
        what="accepted draws, fresh seeds",
    )  # fmt: skip

    print("\nparameter medians, all draws / accepted draws:")
    for j, p in enumerate(prior.paths):
        print(f"  {p}: {np.median(values[:, j]):.4g} / {np.median(values[ok, j]):.4g}")
    a, b = _table(sim, targets), _table(fresh, targets)
    both = a.join(b[["median", "q05", "q95", "inside"]].add_suffix(" (accepted, fresh)"))
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(f"\npredictive, all {len(values)} draws beside the accepted on fresh seeds:")
        print(both.round(4).to_string())
    fit = a["kind"] == "fit"
    print(
        f"\nfitted rows holding: all draws {int(a.loc[fit, 'inside'].sum())} of {int(fit.sum())}, "
        f"accepted on fresh seeds {int(b.loc[fit, 'inside'].sum())} of {int(fit.sum())}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
