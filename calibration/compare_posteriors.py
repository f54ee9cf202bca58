"""How far apart are two posteriors? Per parameter and jointly.

    python calibration/compare_posteriors.py A B [--draws N] [--c2st N] [--seed S]

``A``, ``B``: output folders of ``memsim infer`` (their ``posterior.parquet``): the first
``--draws`` of A against the last of B (default: half the smaller set each; two runs with the
same seed pair their draws by index, see :func:`memsim.study.infer.compare_posteriors`). Prints, per
parameter, both medians, the shift of B's median in A's posterior sds, and the two-sample KS
distance between the marginals with its p-value; with ``--c2st N`` (default 1000; 0 skips
it), the classifier two-sample test's accuracy on N of the compared draws of each (0.5: the
joint draws cannot be told apart). :func:`memsim.study.infer.compare_posteriors` does the work.

This is how docs/inference.md reads one inference rerun on another CPU or trained on a GPU
against the shipped one ("On another machine", "On a GPU"): a pair of runs that differ only
in the hardware's rounding is the yardstick, since the draws' own Monte Carlo error is far
smaller than what a different training trajectory moves.
"""

from __future__ import annotations

import argparse
import sys

from memsim.errors import UserError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", help="output folder of memsim infer (the reference)")
    ap.add_argument("b", help="output folder of memsim infer (compared with A)")
    ap.add_argument("--draws", type=int, default=None, help="draws of each (default: half)")
    ap.add_argument("--c2st", type=int, default=1000, help="draws in the classifier test (0: none)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the classifier test")
    args = ap.parse_args(argv)
    from memsim.study.infer import compare_posteriors

    try:
        r = compare_posteriors(args.a, args.b, draws=args.draws, c2st=args.c2st, seed=args.seed)
    except UserError as e:
        print(f"compare_posteriors: {e}", file=sys.stderr)
        return 2
    t = r.table
    print(f"{r.n_a} draws of {args.a} against {r.n_b} of {args.b}\n")
    head = ("parameter", "median A", "median B", "shift (sd)", "KS", "p")
    print(
        f"{head[0]:48s} "
        + " ".join(f"{h:>10s}" for h in head[1:4])
        + f" {head[4]:>6s} {head[5]:>6s}"
    )
    for row in t.itertuples(index=False):
        print(
            f"{row.parameter:48s} {row.median_a:10.4g} {row.median_b:10.4g} "
            f"{row.shift_sd:+10.3f} {row.ks:6.3f} {row.ks_p:6.3f}"
        )
    worst = t.loc[t["shift_sd"].abs().idxmax()]
    print(
        f"\nlargest shift {worst['shift_sd']:+.3f} sd ({worst['parameter']}); largest KS "
        f"{t['ks'].max():.3f}; parameters with KS p < 0.01: {(t['ks_p'] < 0.01).sum()} of {len(t)}"
    )
    if r.c2st is not None:
        print(f"classifier two-sample test accuracy: {r.c2st:.3f} (0.5: indistinguishable)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
