"""How well an inference's emulated likelihood fits, over the prior and where the posterior lives.

    python calibration/emulator_check.py RUN [--draws G] [--steps 400,1600] [--start flow|tempered]
        [--independence] [--seed S]

A measurement, not part of ``memsim infer`` (docs/inference-record.md, "Step 2's demand as a
nuisance"). ``RUN`` is a folder that ``memsim infer`` wrote with emulated statistics (a prior
with ``emulate:``): its ``estimator.pt`` and ``simulations/``. It prints

1. the emulator's squared Mahalanobis residual at the truth, ``(y - m(t))' S^-1 (y - m(t))``
   (a conditional emulator's ``m(t, x_r)``),
   mean and median, on each stored stream of simulations (the prior's, the prior's held-out,
   the second round's, the second round's held-out). Where ``S`` fits, its mean is the number
   of emulated statistics ``k``; below ``k`` the likelihood is too flat there, above too sharp.
   The training streams' residuals are the fit's own (smaller than new simulations');
2. the share of the truths inside the posterior's central 50 % and 90 % intervals on the first
   ``G`` held-out draws of the second round (of the prior, without a second round): for the
   flow alone (its draws given the statistics it learned, a posterior in its own right), then
   for the flow times the emulator drawn by Metropolis with each number of ``--steps``, the
   chains started as ``--start`` says (``Estimator.mcmc``; default ``flow``, as ``memsim
   infer``); each line names the parameters whose 50 % intervals cover most;
3. with ``--independence``, how far the product's assumption holds that the emulated
   statistics and the flow's vary independently given the parameters: an emulator of the
   flow's statistics is fitted to the same simulations as the run's (same MLP, same seed), and
   on each held-out stream the two sets of residuals at the truth are compared. The line gives
   their Gaussian mutual information, ``-1/2 sum log(1 - rho_i^2)`` over the canonical
   correlations ``rho_i``, beside the same with the rows of one set shuffled 50 times (what a
   finite sample gives under independence: mean and 5-95 %), and the largest single
   correlation beside the shuffled sets' 95th percentile. Information above the shuffled level
   is what the product counts twice.
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
from memsim.fit.emulator import MCMC_STARTS

STREAMS = (
    (nfi.TRAIN, "prior's simulations"),
    (nfi.HELDOUT, "prior's held-out"),
    (nfi.TRUNCATED, "second round's simulations"),
    (nfi.TRUNCATED_HELDOUT, "second round's held-out"),
)


def load_stream(store: nfi.SimulationStore, stream: int) -> dict | None:
    """Every stored simulation of ``stream`` (``u``, ``x``, ``seeds``, ``errors``), or None."""
    try:
        return store.load(stream)
    except UserError:  # none of this stream (a run without a second round)
        return None


def usable(est: nfi.Estimator, sims: dict) -> tuple[np.ndarray, np.ndarray]:
    """The unit positions and standardised statistics of the simulations with every one."""
    x = nfi.standardise(sims["x"], est.moments)
    ok = nfi.usable(x, sims["errors"])
    return sims["u"][ok], x[ok]


def residual_distance(est: nfi.Estimator, u: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Each simulation's squared Mahalanobis residual under the emulator, at its own truth."""
    emu = est.emulator
    y, g = est.emulated_statistics(x)
    r = y - emu.mean(nfi.to_logit(u), g)
    return np.einsum("ij,jk,ik->i", r, emu.precision, r)


def coverage(draws: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per parameter, the share of truths ``(G, d)`` inside the central 50 % and 90 % intervals
    of their draws ``(n, G, d)`` (the rank of the truth among the draws decides)."""
    rank = (draws < truth[None]).mean(0)
    return (
        ((rank > 0.25) & (rank < 0.75)).mean(0),
        ((rank > 0.05) & (rank < 0.95)).mean(0),
    )


def coverage_line(what: str, c50: np.ndarray, c90: np.ndarray, names: list[str]) -> str:
    widest = np.argsort(-c50, kind="stable")[:3]
    most = ", ".join(f"{names[i]} {100 * c50[i]:.0f} %" for i in widest)
    return (
        f"{what}: {100 * c50.mean():.1f} % / {100 * c90.mean():.1f} % inside the 50 % / 90 % "
        f"intervals; widest at 50 %: {most}"
    )


def mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """The Gaussian mutual information (nats) between the columns of ``a`` and ``b`` (rows
    paired): ``-1/2 sum log(1 - rho_i^2)`` over their canonical correlations."""

    def basis(m):
        u, s, _ = np.linalg.svd(m - m.mean(0), full_matrices=False)
        return u[:, s > 1e-9 * s[0]]

    rho = np.linalg.svd(basis(a).T @ basis(b), compute_uv=False)
    return float(-0.5 * np.log1p(-(np.minimum(rho, 1 - 1e-9) ** 2)).sum())


def independence_line(name, rc, rr, names_c, names_r, seed: int = 0, shuffles: int = 50) -> str:
    """The ``--independence`` line of one held-out stream: residuals ``rc`` (emulated) and
    ``rr`` (the flow's), rows paired by simulation."""
    z = [(r - r.mean(0)) / (r.std(0) + 1e-12) for r in (rc, rr)]
    corr = z[0].T @ z[1] / len(rc)
    mi = mutual_information(rc, rr)
    rng = np.random.default_rng(seed)
    null_mi, null_max = [], []
    for _ in range(shuffles):
        p = rng.permutation(len(rr))
        null_mi.append(mutual_information(rc, rr[p]))
        null_max.append(np.abs(z[0].T @ z[1][p] / len(rc)).max())
    i, j = np.unravel_index(np.argmax(np.abs(corr)), corr.shape)
    lo, hi = np.quantile(null_mi, [0.05, 0.95])
    return (
        f"  {name} ({len(rc)}): {mi:.2f} nats, shuffled {np.mean(null_mi):.2f} [{lo:.2f}, "
        f"{hi:.2f}]; largest correlation {corr[i, j]:+.2f} ({names_c[i]} ~ {names_r[j]}), "
        f"shuffled 95 %: {np.quantile(null_max, 0.95):.2f}"
    )


def report(
    run: Path,
    draws: int = 100,
    steps=(400,),
    seed: int = 1,
    n: int = 100,
    start: str = "flow",
    independence: bool = False,
) -> list[str]:
    """The lines ``main`` prints (module docstring)."""
    est = nfi.Estimator.load(run / "estimator.pt")
    if est.emulator is None:
        raise SystemExit(f"{run}: the estimator emulates no statistic (no emulate: in its prior)")
    k = len(est.emulator.columns)
    folder = run / "simulations"
    try:
        settings = json.loads((folder / "settings.json").read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"{folder}: no readable settings.json ({e})") from None
    store = nfi.SimulationStore(folder, settings)  # its own settings: read, never rewritten
    out = [f"{run}: {k} statistics emulated"]
    held = None
    loaded = {}
    for stream, name in STREAMS:
        sims = load_stream(store, stream)
        if sims is None:
            continue
        u, x = usable(est, sims)
        loaded[stream] = (name, u, x)
        d2 = residual_distance(est, u, x)
        out.append(
            f"  {name} ({len(u)}): squared Mahalanobis residual mean {d2.mean():.1f}, "
            f"median {np.median(d2):.1f} (k = {k})"
        )
        if stream in (nfi.HELDOUT, nfi.TRUNCATED_HELDOUT):
            held = (name, u[:draws], x[:draws])
    if held is None:
        raise SystemExit(f"{run}: no held-out simulations in {run / 'simulations'}")
    name, u, x = held
    names = [p.path.split(".")[-1] for p in est.prior.parameters]
    flow = est.flow_sample_batched(n, x, seed)
    out.append(f"coverage on the first {len(u)} of the {name}:")
    out.append("  " + coverage_line("flow alone", *coverage(flow, u), names))
    for s in steps:
        product, acceptance = est.mcmc(n, x, seed=seed, steps=s, start=start)
        started = "" if start == "flow" else f", {start} start"
        out.append(
            "  "
            + coverage_line(
                f"flow x emulator, {s} steps{started} (acceptance {acceptance:.2f})",
                *coverage(product, u),
                names,
            )
        )
    if independence:
        out += independence_lines(est, loaded)
    return out


def independence_lines(est: nfi.Estimator, loaded: dict) -> list[str]:
    """Section 3 of the module docstring, on the streams ``report`` loaded."""
    from memsim.fit.emulator import fit_emulator

    emu = est.emulator
    rest = est.flow_varying
    fitted = [loaded[s] for s in (nfi.TRAIN, nfi.TRUNCATED) if s in loaded]
    u = np.concatenate([f[1] for f in fitted])
    x = np.concatenate([f[2] for f in fitted])
    names = [m.name for m in est.moments]
    other = fit_emulator(
        nfi.to_logit(u), x[:, rest], rest, [names[j] for j in rest], seed=emu.info["seed"]
    )
    out = [
        f"independence of the {len(emu.columns)} emulated statistics and the flow's {len(rest)} "
        "given the parameters (their residuals' Gaussian mutual information):"
    ]
    for stream in (nfi.HELDOUT, nfi.TRUNCATED_HELDOUT):
        if stream not in loaded:
            continue
        name, uh, xh = loaded[stream]
        t = nfi.to_logit(uh)
        y, g = est.emulated_statistics(xh)
        rc = y - emu.mean(t, g)
        rr = xh[:, rest] - other.mean(t)
        out.append(independence_line(name, rc, rr, emu.names, other.names))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a folder memsim infer wrote, with emulated statistics")
    ap.add_argument("--draws", type=int, default=100, help="held-out draws for the coverage")
    ap.add_argument("--steps", default="400", help="Metropolis steps, comma-separated")
    ap.add_argument(
        "--start",
        choices=MCMC_STARTS,
        default="flow",
        help="where the Metropolis chains start (default flow, as memsim infer)",
    )
    ap.add_argument(
        "--independence",
        action="store_true",
        help="also measure the information the emulated and the flow's statistics share given "
        "the parameters (fits a second emulator)",
    )
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    if not (a.run / "estimator.pt").is_file():
        ap.error(f"{a.run}: no estimator.pt (not a folder memsim infer wrote)")
    try:
        steps = [int(s) for s in a.steps.split(",")]
    except ValueError:
        ap.error(f"--steps: {a.steps!r} is not a comma-separated list of integers")
    if a.draws < 1 or any(s < 2 for s in steps):
        ap.error("--draws must be at least 1 and every --steps at least 2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nflows' deprecation of torch.triangular_solve
        lines = report(a.run, a.draws, steps, a.seed, start=a.start, independence=a.independence)
        for line in lines:
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
