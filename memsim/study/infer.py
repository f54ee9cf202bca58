"""``memsim infer``: the whole Bayesian calibration of a protocol, from prior to checked posterior.

In: a protocol, its prior (``calibration/<protocol>-prior.yaml``), targets and released scores.
Out: a folder (``docs/inference.md`` lists every file)::

    simulations/          the prior simulations, in chunks (resumable; kept on failure)
    estimator.pt          the trained estimator: re-condition without simulating
    base-params.yaml      the parameter set holding what the prior leaves fixed
    protocol.yaml         the protocol the simulations played (its scale in inference.json)
    posterior.parquet     posterior draws given the released data, one column per parameter
    posterior.csv         medians and 90 % intervals beside the shipped point fits
    sbc.csv, recovery.csv simulation-based calibration and recovery on held-out simulations
    predictive.csv        every target's posterior predictive median and 90 % interval
    pairs.csv             the most correlated parameter pairs of the posterior
    inference.json        settings, timings and the headline numbers
    figures/              marginals, pairs, SBC ranks, predictive intervals

The steps are :mod:`memsim.fit.infer`'s; this module runs them in order, times them, and
writes the results (each file whole: :func:`memsim.io.atomic_path`).
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from memsim.errors import UserError
from memsim.fit import infer as nfi
from memsim.fit.emulator import MCMC_KEEP, MCMC_STEPS
from memsim.progress import ProgressCallback, report
from memsim.resources import repository_root
from memsim.study.intervals import credible, paired_differences

__all__ = [
    "Inference",
    "Posterior",
    "run_inference",
    "load_posterior",
    "posterior_draws",
    "protocol_yaml",
    "annotations_needed",
    "credible",
    "paired_differences",
]

#: Posterior draws written to posterior.parquet.
N_SAMPLES = 10_000
#: Most simulations of one inference (each keeps its statistics in memory while training).
MAX_SIMULATIONS = 1_000_000
#: Parameters shown in the pairwise figure: where today's two point fits differ most.
PAIR_PARAMS = (
    "videos.short_term_sd",
    "participants.ability_sd",
    "participants.lapse_mean",
    "videos.memorability.sd",
    "forgetting.rate_memorability_corr",
    "participants.rt.log_sd",
)


@dataclass
class Inference:
    """A finished Bayesian calibration (:func:`run_inference`'s result).

    Attributes
    ----------
    out : Path
        The folder written.
    samples : DataFrame
        Posterior draws given the released data, one column per free parameter (values).
    table : DataFrame
        Per parameter: prior, posterior median, 5 % and 95 % quantiles, contraction, the shipped
        point fits and their percentiles in the posterior.
    sbc : DataFrame or None
        Per parameter: chi-square statistic and p of the SBC ranks, coverage of the 50 % and
        90 % intervals (held-out simulations).
    recovery : DataFrame or None
        Per parameter: how well held-out simulations' known parameters come back.
    predictive : DataFrame or None
        Per target: value, predictive median, 5 % and 95 % quantiles, inside, how far off.
    pairs : DataFrame
        The posterior's parameter pairs, most correlated first.
    info : dict
        Settings, timings (seconds per stage), training facts and headline numbers (what
        ``inference.json`` holds).
    typicality : dict
        How typical the released data are of the simulations trained on
        (:class:`memsim.fit.infer.Typicality`): ``"prior"``, the first round's; ``"region"``,
        the second round's, with ``--truncated``.
    """

    out: Path
    samples: pd.DataFrame
    table: pd.DataFrame
    sbc: pd.DataFrame | None
    recovery: pd.DataFrame | None
    predictive: pd.DataFrame | None
    pairs: pd.DataFrame
    info: dict = field(default_factory=dict)
    typicality: dict = field(default_factory=dict)

    def __repr__(self) -> str:  # a line, not the tables (a notebook prints it)
        parts = [f"out={str(self.out)!r}", f"draws={len(self.samples):,}"]
        parts.append(f"parameters={self.samples.shape[1]}")
        if self.sbc is not None:
            ok = int(self.sbc["uniform_at_1pct"].sum())
            parts.append(f"SBC uniform at 1 % {ok}/{len(self.sbc)}")
        if "fit_rows" in self.info:
            inside, rows = self.info["fit_rows_inside"], self.info["fit_rows"]
            parts.append(f"fitted rows inside {inside}/{rows}")
        return f"Inference({', '.join(parts)})"


def _prior_base(prior: nfi.Prior, prior_file: Path):
    """The prior's base parameter set: a file beside the prior file, or a shipped set's name."""
    from memsim.resources import params_path
    from memsim.sim.params import load_params

    beside = prior_file.parent / prior.params
    if beside.is_file():
        return load_params(beside)
    named = params_path(prior.params)
    if named is None:
        raise UserError(
            f"params: {prior.params!r} is neither a file beside the prior nor a shipped set",
            path=prior_file,
        )
    return load_params(named)


def protocol_yaml(protocol) -> str:
    """The protocol a posterior's simulations played, as a protocol file (``protocol.yaml`` of
    a ``memsim infer`` folder): a later check simulates that protocol, not whatever the
    protocol of the same name has become (``calibration/sbc_more.py``)."""
    import yaml

    head = (
        "# The protocol this folder's simulations played (memsim infer; the scale is in\n"
        "# inference.json). Load it with memsim.load_protocol.\n"
    )
    return head + yaml.safe_dump(protocol.dump(), sort_keys=False, allow_unicode=True)


def _point_fits(prior: nfi.Prior, protocol) -> dict[str, np.ndarray]:
    """The shipped point fits of the protocol (values of the prior's parameters; its
    protocol settings, if any, as the protocol has them)."""
    from memsim.fit.calibrate import values_of
    from memsim.resources import shipped_dir
    from memsim.sim.params import load_params

    out = {}
    for name in (protocol.name, f"{protocol.name}-from-scratch"):
        path = shipped_dir("calibration") / f"{name}.yaml"
        if path.is_file():
            v = np.empty(prior.dim)
            v[~prior.on_protocol] = values_of(load_params(path), prior.free())
            v[prior.on_protocol] = prior.protocol_values(protocol)
            out[name] = v
    return out


def _pairs(prior: nfi.Prior, u: np.ndarray) -> pd.DataFrame:
    c = np.corrcoef(u.T)
    rows = [
        {"a": prior.paths[i], "b": prior.paths[j], "corr": float(c[i, j])}
        for i in range(prior.dim)
        for j in range(i + 1, prior.dim)
    ]
    df = pd.DataFrame(rows)
    return df.reindex(df["corr"].abs().sort_values(ascending=False).index).reset_index(drop=True)


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    from memsim.io import atomic_path

    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


# Notices of third-party code a user cannot act on, silenced while an inference runs: nflows
# calls a torch function torch has deprecated, sbi caps its own sampling batch, and sbi calls
# the estimator's prior (a continuous standard logistic per parameter, `fit.infer`) "discrete"
# because the torch distribution carries no mean or stddev, then estimates them from samples.
_QUIET = (
    r"torch\.triangular_solve is deprecated",
    r"Capping max_sampling_batch_size",
    r"The passed discrete prior has no mean or stddev attribute",
)


def _quiet_third_party(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings():
            for message in _QUIET:
                warnings.filterwarnings("ignore", message=message, category=UserWarning)
            return fn(*args, **kwargs)

    return wrapper


#: The largest balancing weight taken: 100 times the paper's (Delaunoy et al. 2023 use 100).
MAX_BALANCE = 10_000.0


def check_balance(balance) -> float:
    """``balance`` as a float in [0, MAX_BALANCE], or one clear line."""
    if isinstance(balance, bool) or not isinstance(balance, (int, float)):
        raise UserError(f"--balance must be a number, got {balance!r}")
    if not (0.0 <= float(balance) <= MAX_BALANCE):  # NaN fails too
        raise UserError(f"--balance must be between 0 and {MAX_BALANCE:g}, got {balance}")
    return float(balance)


@_quiet_third_party
def run_inference(
    protocol,
    *,
    out: str | os.PathLike[str],
    simulations: int = 6000,
    scale: float = 1.0,
    workers: int = 1,
    device: str = "cpu",
    seed: int = 0,
    prior: str | os.PathLike[str] | None = None,
    targets=None,
    real=None,
    heldout: int = 200,
    predictive: int = 100,
    samples: int = N_SAMPLES,
    sbc_draws: int = 200,
    estimator: str = "nsf",
    max_epochs: int = 1000,
    truncated: int = 0,
    balance: float = 0.0,
    mcmc_start: str = "flow",
    figures: bool = True,
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> Inference:
    """Simulate from the prior, train the posterior, condition it on the released data, check it.

    Parameters
    ----------
    protocol : Protocol
    out : path
        Output folder; its ``simulations/`` is reused when the settings match (resume, or a
        larger ``simulations``); ``force`` starts them over.
    simulations : int
        Prior simulations to train on.
    scale : float
        Shrink the study (head-count targets follow; annotations per video do not change).
    workers : int
        Simulation processes (numba at one thread each).
    device : ``cpu``, ``cuda`` or ``auto`` (CUDA when present)
        Where the estimator trains. CPU by default: sbi's training of these small flows
        (batches of 200) is bound by kernel launches on a GPU, and ran 1.2-2x slower per
        epoch on an H200 than on two CPU threads (docs/inference.md, "On a GPU").
    seed : int
        Fixes the prior draws, the simulations, the training and the posterior draws.
    prior : path, optional
        Prior file (default ``calibration/<protocol>-prior.yaml``).
    targets : Targets
        The study's targets (the statistics and the paper's values).
    real : DataFrame, optional
        Released scores (their rank-bin means are statistics too).
    heldout : int
        Held-out simulations for SBC and recovery (0: no checks).
    predictive : int
        Posterior draws simulated with every analysis for the predictive check (0: none).
    samples : int
        Posterior draws written to ``posterior.parquet``.
    sbc_draws : int
        Posterior draws per held-out simulation (SBC ranks go from 0 to sbc_draws).
    estimator, max_epochs : sbi's density estimator (``nsf`` or ``maf``) and its epoch cap.
    truncated : int
        A second round of this many simulations (0: none), drawn from the prior restricted to
        the first posterior's highest-density region given the released data
        (:func:`memsim.fit.infer.truncation_region`; TSNPE, Deistler et al. 2022); the
        estimator is then trained again on both rounds. The held-out checks run on the
        prior's held-out draws, and again on ``heldout`` draws from the same region.
    balance : float
        Balanced NPE's weight (0: plain NPE; :func:`memsim.fit.infer.train`): the estimator
        pays for overconfidence. Not part of
        the simulations' settings: the same folder retrains with another weight on its
        simulations. Not with ``truncated`` (the term assumes the prior's draws).
    mcmc_start : ``flow`` or ``tempered``
        Where the Metropolis chains of a posterior with emulated statistics start
        (:meth:`memsim.fit.infer.Estimator.mcmc`); not part of the simulations' settings.
    figures : bool
        Draw the figures into ``out/figures``.
    """
    from memsim.fit.calibrate import moments_for
    from memsim.io import forget_output, make_dirs, write_text_atomic
    from memsim.limits import check_seed

    seed = check_seed(seed, "--seed")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    if simulations < 20:
        raise UserError(f"--simulations must be at least 20, got {simulations}")
    if max(simulations, heldout, predictive, truncated) > MAX_SIMULATIONS:
        raise UserError(
            f"--simulations, --heldout, --predictive and --truncated are at most "
            f"{MAX_SIMULATIONS:,} (the simulations' statistics are held in memory)"
        )
    if heldout < 0 or predictive < 0 or truncated < 0:
        raise UserError("--heldout, --predictive and --truncated must be 0 or more")
    balance = check_balance(balance)
    from memsim.fit.emulator import MCMC_STARTS

    if mcmc_start not in MCMC_STARTS:
        raise UserError(f"--mcmc-start must be one of {', '.join(MCMC_STARTS)}, got {mcmc_start!r}")
    if balance and truncated:
        raise UserError(
            "--balance and --truncated cannot be combined: the balancing term compares the "
            "estimator with the prior, and a truncated round's draws are not the prior's"
        )
    if targets is None:
        raise UserError(f"no targets file for protocol {protocol.name!r}")
    prior_file = Path(prior) if prior is not None else nfi.prior_path(protocol.name)
    if prior_file is None:
        raise UserError(
            f"no prior for protocol {protocol.name!r} (calibration/{protocol.name}-prior.yaml); "
            "give one with --prior"
        )
    pr = nfi.load_prior(prior_file)
    base = _prior_base(pr, prior_file)
    nfi.check_prior(pr, base, prior_file, protocol)
    nfi._device(device)  # a missing CUDA is refused before any simulation
    columns = [s.scoring.column for s in protocol.steps]
    moments = moments_for(targets, real, columns, scale, **pr.statistics)
    emulated = nfi.emulated_columns(pr, moments, prior_file)
    out = Path(out)
    make_dirs(out)
    store = nfi.SimulationStore(
        out / "simulations", nfi.store_settings(protocol, base, pr, moments, scale, seed), force
    )
    # resumable state from here on: a failure or a Ctrl-C keeps the simulations made so far
    forget_output(store.folder)
    timings: dict[str, float] = {}
    t_all = time.perf_counter()

    sims = nfi.simulate_prior(
        protocol, base, pr, moments, store, n=simulations, seed=seed, scale=scale, real=real,
        workers=workers, progress=progress,
    )  # fmt: skip
    timings["simulations"] = sims["seconds"]
    held = None
    if heldout:
        held = nfi.simulate_prior(
            protocol, base, pr, moments, store, n=heldout, stream=nfi.HELDOUT, seed=seed,
            scale=scale, real=real, workers=workers, progress=progress,
        )  # fmt: skip
        timings["heldout_simulations"] = held["seconds"]

    def final(u, x_std, errors) -> nfi.Estimator:
        """The posterior's estimator: a flow on every statistic, or on those the prior does
        not emulate times an emulator of the rest (memsim.fit.emulator); with the prior's
        ``flows`` above 1, the flow an equal mixture of that many, the k-th trained with seed
        ``seed + k`` on the same simulations."""
        rest = [j for j in range(len(moments)) if j not in emulated]
        flow = nfi.ensemble([
            nfi.train(
                u, x_std[:, rest], errors, pr, [moments[j] for j in rest], seed=seed + k,
                device=device, estimator=estimator, max_epochs=max_epochs, balance=balance,
                progress=progress,
            )
            for k in range(pr.flows)
        ])  # fmt: skip
        if not emulated:
            return flow
        from memsim.fit.emulator import fit_emulator

        ok = nfi.usable(x_std, errors)
        # a conditional emulator is given the flow's statistics, less those it holds constant
        given = [rest[i] for i in flow.flow_varying] if pr.emulate_conditional else []
        size = {
            k: v
            for k, v in (("layers", pr.emulator_layers), ("hidden", pr.emulator_width))
            if v is not None
        }
        emu = fit_emulator(
            nfi.to_logit(u[ok]), x_std[ok][:, emulated], emulated,
            [moments[j].name for j in emulated], g=x_std[ok][:, given] if given else None,
            given=given, seed=seed, progress=progress, **size,
        )  # fmt: skip
        return nfi.with_emulator(flow, emu, moments)

    t0 = time.perf_counter()
    if truncated:  # the first round's estimator only finds the region: every statistic
        est = nfi.train(
            sims["u"], nfi.standardise(sims["x"], moments), sims["errors"], pr, moments,
            seed=seed, device=device, estimator=estimator, max_epochs=max_epochs,
            balance=balance, progress=progress,
        )  # fmt: skip
    else:
        est = final(sims["u"], nfi.standardise(sims["x"], moments), sims["errors"])
    timings["train"] = time.perf_counter() - t0
    typical = _typical({}, "prior", sims["x"], moments)
    truncation: dict = {}
    held_region = None
    if truncated:
        # round 2: the prior inside the round-1 posterior's region, then both rounds trained on
        # as if drawn from the prior (inside the region the proposal is the prior's shape)
        t0 = time.perf_counter()
        report(progress, "infer", "second round's region", 0, 1, unit="stage")
        region = nfi.truncation_region(est, pr, seed=seed)
        drawn = nfi.truncated_draws(est, pr, truncated, region, seed=seed, stream=nfi.TRUNCATED)
        report(progress, "infer", "second round's region", 1, 1, unit="stage")
        timings["truncation"] = time.perf_counter() - t0
        more = nfi.simulate_prior(
            protocol, base, pr, moments, store, n=truncated, stream=nfi.TRUNCATED, seed=seed,
            scale=scale, real=real, workers=workers, progress=progress, u=drawn["u"],
        )  # fmt: skip
        timings["truncated_simulations"] = more["seconds"]
        typical = _typical(typical, "region", more["x"], moments)
        if heldout:
            # held-out draws from the same region: the checks for data like the released data
            drawn_h = nfi.truncated_draws(
                est, pr, heldout, region, seed=seed, stream=nfi.TRUNCATED_HELDOUT
            )
            held_region = nfi.simulate_prior(
                protocol, base, pr, moments, store, n=heldout, stream=nfi.TRUNCATED_HELDOUT,
                seed=seed, scale=scale, real=real, workers=workers, progress=progress,
                u=drawn_h["u"],
            )  # fmt: skip
            timings["heldout_simulations"] += held_region["seconds"]
        truncation = {
            "truncated_simulations": truncated,
            "truncated_new": int(more["new"]),
            "truncation_quantile": nfi.TRUNCATION_QUANTILE,
            "truncation_prior_share": nfi.TRUNCATION_PRIOR_SHARE,
            "truncation_threshold": region.threshold,
            "truncation_acceptance": drawn["acceptance"],
            "truncation_posterior_mass": region.posterior_mass,
            "round1_train": est.info,
        }
        t0 = time.perf_counter()
        est = final(
            np.concatenate([sims["u"], more["u"]]),
            nfi.standardise(np.concatenate([sims["x"], more["x"]]), moments),
            np.concatenate([sims["errors"], more["errors"]]),
        )
        timings["train"] += time.perf_counter() - t0
    est.save(out / "estimator.pt")
    from memsim.fit.calibrate import dump_params_yaml

    # the set the posterior's fixed parameters come from: `params: posterior DIR` in a sweep
    write_text_atomic(
        out / "base-params.yaml",
        dump_params_yaml(
            base, f"Base of the posterior in this folder (prior {_shown(prior_file)}).\n"
        ),
    )
    write_text_atomic(out / "protocol.yaml", protocol_yaml(protocol))

    mcmc: dict = {}

    def draw(n: int, xs: np.ndarray, what: str) -> np.ndarray:
        """``n`` posterior draws given each row of ``xs``; by Metropolis where the posterior
        has an emulator (its acceptance rate kept for inference.json)."""
        if est.emulator is None:
            return est.sample_batched(n, xs, seed=seed)
        s, acceptance = est.mcmc(n, xs, seed=seed, start=mcmc_start, progress=progress)
        mcmc[what] = acceptance
        return s

    t0 = time.perf_counter()
    report(progress, "infer", "posterior", 0, 1, unit="stage")
    if est.emulator is None:
        u = est.sample(samples, seed=seed)
    else:
        u = draw(samples, np.zeros((1, len(moments))), "posterior")[:, 0]
    values = pr.to_values(u)
    samples = pd.DataFrame(values, columns=pr.paths)
    from memsim.io import atomic_path

    with atomic_path(out / "posterior.parquet") as tmp:
        samples.to_parquet(tmp, index=False)
    points = _point_fits(pr, protocol)
    table = nfi.summarise_samples(pr, u, points)
    _write_csv(table, out / "posterior.csv")
    pairs = _pairs(pr, u)
    _write_csv(pairs, out / "pairs.csv")
    # where the point fits sit in the posterior's density: the share of posterior draws less
    # probable than each (0: outside everything the posterior draws)
    lp_draws = est.log_prob(u[:2000])
    density = {
        name: float((lp_draws < est.log_prob(pr.to_unit(v[None]))[0]).mean())
        if np.all((pr.to_unit(v[None]) >= 0) & (pr.to_unit(v[None]) <= 1))
        else 0.0
        for name, v in points.items()
    }
    timings["posterior"] = time.perf_counter() - t0
    report(progress, "infer", "posterior", 1, 1, unit="stage")

    sbc_res = recovery = region_sbc = None
    held_info: dict = {}
    if held is not None:
        t0 = time.perf_counter()
        ok = nfi.usable(held["x"], held["errors"])
        xh = nfi.standardise(held["x"][ok], moments)
        uh = held["u"][ok]
        report(progress, "infer", "checks", 0, 2, unit="checks")
        draws = draw(sbc_draws, xh, "heldout")  # (draws, held-out, d): both checks
        sbc_res = nfi.sbc(est, uh, xh, samples=draws)
        _write_csv(sbc_res["table"], out / "sbc.csv")
        report(progress, "infer", "checks", 1, 2, unit="checks")
        recovery = nfi.recovery_table(est, uh, xh, samples=draws)
        _write_csv(recovery, out / "recovery.csv")
        report(progress, "infer", "checks", 2, 2, unit="checks")
        held_info = {
            "heldout": int(ok.sum()),
            "heldout_dropped": int((~ok).sum()),
            "sbc_draws": sbc_res["draws"],
            "sbc_bins": sbc_res["bins"],
            "sbc_parameters_uniform_at_1pct": int(sbc_res["table"]["uniform_at_1pct"].sum()),
            "sbc_min_p": float(sbc_res["table"]["p"].min()),
            "coverage_50": sbc_res["coverage_50"],
            "coverage_90": sbc_res["coverage_90"],
        }
        timings["checks"] = time.perf_counter() - t0
    if held_region is not None:
        # the same checks on held-out draws from the second round's region: for data like the
        # released data, where the round concentrated its simulations
        t0 = time.perf_counter()
        ok = nfi.usable(held_region["x"], held_region["errors"])
        xh = nfi.standardise(held_region["x"][ok], moments)
        region_sbc = nfi.sbc(
            est, held_region["u"][ok], xh, samples=draw(sbc_draws, xh, "region_heldout")
        )
        _write_csv(region_sbc["table"], out / "sbc-region.csv")
        held_info.update(
            region_heldout=int(ok.sum()),
            region_sbc_parameters_uniform_at_1pct=int(region_sbc["table"]["uniform_at_1pct"].sum()),
            region_sbc_min_p=float(region_sbc["table"]["p"].min()),
            region_coverage_50=region_sbc["coverage_50"],
            region_coverage_90=region_sbc["coverage_90"],
        )
        timings["checks"] = timings.get("checks", 0.0) + time.perf_counter() - t0

    pred = None
    pred_info: dict = {}
    if predictive:
        t0 = time.perf_counter()
        k = min(predictive, len(values))
        seeds = [nfi.run_seed(seed, 2, i) for i in range(k)]
        sim = nfi.predictive(
            protocol, base, pr, targets, values[:k], seeds, real=real, scale=scale,
            workers=workers, progress=progress,
        )  # fmt: skip
        from memsim.sim.simulate import size_factor

        pred = nfi.predictive_table(sim, targets, size_factor(protocol, scale))
        _write_csv(pred, out / "predictive.csv")
        # two points as one parameter set each, over 5 seeds: the posterior median (of each
        # marginal; where parameters trade off it can fall where the posterior has little mass)
        # and the mode: the most probable of 2,000 draws in the flow's own coordinates (logit of
        # the unit box, where the prior is logistic; over the box itself the Jacobian inflates
        # the density at the edges, where the flow's tails are least trained)
        names = [t.name for t in targets.targets]
        mode = values[int(np.argmax(est.log_prob(u[:2000], logit=True)))]
        ks_at = {}
        for what, point, stream in (
            ("median", np.median(values, axis=0), 3),
            ("mode", mode, 4),
        ):
            at = nfi.predictive(
                protocol, base, pr, targets, np.repeat(point[None], 5, axis=0),
                [nfi.run_seed(seed, stream, i) for i in range(5)], real=real, scale=scale,
                workers=workers, progress=progress, what=f"at the posterior {what}",
            )  # fmt: skip
            ks_at[what] = {
                n: [float(v) for v in at[:, j]]
                for j, n in enumerate(names)
                if n.startswith("KS distance to released")
            }
        fitted = pred[pred["kind"] == "fit"]
        pred_info = {
            "predictive_draws": k,
            "fit_rows_inside": int(fitted["inside"].sum()),
            "fit_rows": len(fitted),
            "fit_rows_outside": fitted.loc[~fitted["inside"], "target"].tolist(),
            "ks_at_posterior_median": ks_at["median"],
            "ks_at_posterior_mode": ks_at["mode"],
            "posterior_mode": dict(zip(pr.paths, map(float, mode))),
        }
        timings["predictive"] = time.perf_counter() - t0

    info = {
        "protocol": protocol.name,
        "prior": _shown(prior_file),
        "params": base.name,
        "simulations": simulations,
        "scale": scale,
        "seed": seed,
        "workers": workers,
        "moments": [m.name for m in moments],
        "simulations_new": int(sims["new"]),
        "simulations_failed": int((np.char.str_len(sims["errors"].astype(str)) > 0).sum()),
        "train": est.info,
        **truncation,
        **(
            {
                "mcmc": {
                    "steps": MCMC_STEPS,
                    "keep": MCMC_KEEP,
                    "start": mcmc_start,
                    "acceptance": mcmc,
                }
            }
            if est.emulator is not None
            else {}
        ),
        "point_fit_density_percentile": density,
        **held_info,
        **pred_info,
        "typicality": {
            k: _typicality_info(t) if t is not None else None for k, t in typical.items()
        },
        "seconds": timings,
        "machine": _machine(est.info["device"]),
    }
    result = Inference(out, samples, table, None, recovery, pred, pairs, info, typical)
    if any(t is not None for t in typical.values()):
        _write_csv(_typicality_table(typical, [m.name for m in moments]), out / "typicality.csv")
    result.sbc = sbc_res["table"] if sbc_res is not None else None
    if figures:
        from memsim.viz.infer import draw_figures

        t0 = time.perf_counter()
        draw_figures(result, pr, u, points, sbc=sbc_res, region=region_sbc)
        timings["figures"] = time.perf_counter() - t0
    # simulations made by an earlier, interrupted run are not in this total (see simulations_new)
    timings["total"] = time.perf_counter() - t_all
    write_text_atomic(out / "inference.json", json.dumps(info, indent=1, default=str) + "\n")
    write_text_atomic(out / "report.md", markdown(result))
    return result


def load_posterior(folder: str | os.PathLike[str]) -> pd.DataFrame:
    """The posterior draws ``memsim infer`` wrote into ``folder`` (``posterior.parquet``)."""
    from memsim.io import check_input

    path = Path(folder) / "posterior.parquet"
    try:
        check_input(path, "posterior draws")
    except UserError:
        raise UserError(
            "no posterior.parquet: not an output folder of `memsim infer`", path=folder
        ) from None
    try:
        df = pd.read_parquet(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        why = " ".join(str(exc).split())[:120]
        raise UserError(
            f"posterior.parquet: not readable as Parquet ({why})", path=folder
        ) from None
    if df.empty or not all(df[c].dtype.kind == "f" for c in df.columns):
        raise UserError("posterior.parquet: expected numeric columns of draws", path=folder)
    return df


def posterior_draws(
    folder: str | os.PathLike[str], n: int, *, protocol_settings: bool = False
) -> list[dict[str, float]]:
    """The first ``n`` posterior draws of ``folder`` as ``{parameter path: value}`` mappings.

    Draws are independent, so the first ``n`` are a random sample of the posterior; the same
    folder gives the same draws. A prior may hold settings of the campaign that made the data
    (``protocol.<path>``, nuisance parameters): they are left out unless
    ``protocol_settings``, since a study's own protocol says how its campaign runs.
    """
    df = load_posterior(folder)
    if n > len(df):
        raise UserError(
            f"{n} posterior draws wanted, the folder holds {len(df)}", path=Path(folder)
        )
    return [
        _draw_values(df.columns, row, protocol_settings)
        for row in df.iloc[:n].itertuples(index=False)
    ]


def _draw_values(columns, row, protocol_settings: bool = False) -> dict[str, float]:
    """One draw's ``{parameter path: value}``: its finite values, the settings of the campaign
    (``protocol.<path>``) only with ``protocol_settings``."""
    return {
        c: float(v)
        for c, v in zip(columns, row)
        if (protocol_settings or not c.startswith(nfi.PROTOCOL_PREFIX)) and math.isfinite(v)
    }


def _read_summary(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError) as exc:  # ParserError is a ValueError
        why = " ".join(str(exc).split())[:120]
        raise UserError(f"not readable as CSV ({why})", path=path) from None


@dataclass(frozen=True)
class Posterior:
    """A posterior over a population's parameters, as ``memsim infer`` wrote it into a folder
    (:func:`memsim.posterior` loads one by folder or shipped name).

    Attributes
    ----------
    folder : Path
        Where it was read from.
    draws : DataFrame
        One row per posterior draw, one column per parameter path (a prior's settings of the
        campaign, ``protocol.<path>``, included). The draws are independent: the first *n*
        are a random sample of the posterior.
    base : Params
        The parameter set holding every parameter the prior leaves fixed.
    summary : DataFrame or None
        ``posterior.csv``: per parameter the prior, median, 5 % and 95 % quantiles,
        contraction and the shipped point fits' percentiles (None where the folder has none).
    protocol : Protocol or None
        The protocol the posterior's simulations played (the folder's ``protocol.yaml``):
        the posterior is of the crowd given that campaign.
    info : dict or None
        ``inference.json``: the run's settings, timings and checks (None where absent).
    """

    folder: Path
    draws: pd.DataFrame
    base: object
    summary: pd.DataFrame | None = None
    protocol: object | None = None
    info: dict | None = None

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> Posterior:
        """Read a folder written by ``memsim infer``; one-line :class:`UserError` when it is
        not one."""
        from memsim.design.protocol import load_protocol
        from memsim.sim.params import load_params

        folder = Path(folder)
        draws = load_posterior(folder)
        base_path = folder / "base-params.yaml"
        if not base_path.is_file():
            raise UserError(
                "no base-params.yaml: not an output folder of `memsim infer`", path=folder
            )
        summary = folder / "posterior.csv"
        protocol = folder / "protocol.yaml"
        info = folder / "inference.json"
        try:
            info = json.loads(info.read_text(encoding="utf-8")) if info.is_file() else None
        except (OSError, ValueError):
            raise UserError("inference.json: not readable as JSON", path=folder) from None
        return cls(
            folder=folder,
            draws=draws,
            base=load_params(base_path),
            summary=_read_summary(summary) if summary.is_file() else None,
            protocol=load_protocol(protocol) if protocol.is_file() else None,
            info=info if isinstance(info, dict) else None,
        )

    def __len__(self) -> int:
        return len(self.draws)

    def params(self, i: int):
        """Draw ``i`` as a whole parameter set (:class:`memsim.sim.params.Params`): the base
        set with the draw's population parameters. Its settings of the campaign are left out,
        as a study's sweep leaves them out: a protocol says how its own campaign runs."""
        if not -len(self) <= i < len(self):
            raise UserError(f"posterior draw {i}: the posterior holds {len(self)} draws")
        changes = _draw_values(self.draws.columns, self.draws.iloc[i])
        # named for the draw, so that a run's output says which crowd it played
        changes["name"] = f"{self.base.name} posterior draw {i % len(self)}"
        changes["note"] = (
            f"draw {i % len(self)} of the posterior in {self.folder.name}/ (memsim infer), "
            f"on the parameter set {self.base.name}"
        )
        return self.base.updated(changes)

    def params_yaml(self, i: int) -> str:
        """Draw ``i`` (:meth:`params`) as the text of a parameter file, headed by its name and
        note."""
        from memsim.fit.calibrate import dump_params_yaml

        params = self.params(i)
        return dump_params_yaml(params, f"{params.name}: {params.note}")

    def save_params(self, i: int, path: str | os.PathLike[str]) -> Path:
        """Write draw ``i`` (:meth:`params_yaml`) as a parameter file that ``memsim run
        --params`` and every ``params`` argument take; the file is written whole or not at
        all."""
        from memsim.io import check_output, write_text_atomic

        text = self.params_yaml(i)
        path = Path(path)
        check_output(path, "file")
        write_text_atomic(path, text)
        return path

    def checks(self) -> list[str]:
        """What the run that made the posterior measured of it, a line each (from
        :attr:`info`): its simulations, its rank tests on held-out simulations and its
        posterior predictive check. Empty where the folder has no ``inference.json``."""
        info = self.info or {}
        lines = []
        if info.get("simulations"):
            second = info.get("truncated_simulations")
            lines.append(
                f"made by memsim infer on protocol {info.get('protocol')} at scale "
                f"{info.get('scale', 1):g} from {info['simulations']:,} simulations"
                + (f" and a second round of {second:,}" if second else "")
            )
        n = len(self.draws.columns)
        if info.get("heldout") and info.get("sbc_parameters_uniform_at_1pct") is not None:
            lines.append(
                f"SBC on {info['heldout']} held-out simulations: "
                f"{info['sbc_parameters_uniform_at_1pct']} of {n} parameters uniform at the 1 % "
                f"level; coverage of the 50 % / 90 % intervals {info['coverage_50']:.1%} / "
                f"{info['coverage_90']:.1%}"
            )
        if info.get("region_heldout"):
            lines.append(
                f"SBC on {info['region_heldout']} held-out draws from the second round's "
                f"region: {info['region_sbc_parameters_uniform_at_1pct']} of {n} parameters "
                f"uniform at the 1 % level; coverage {info['region_coverage_50']:.1%} / "
                f"{info['region_coverage_90']:.1%}"
            )
        if info.get("fit_rows"):
            lines.append(
                f"posterior predictive ({info.get('predictive_draws')} draws): "
                f"{info['fit_rows_inside']} of {info['fit_rows']} fitted targets hold"
            )
        return lines

    def parameter_sets(self, n: int) -> list:
        """The first ``n`` draws as parameter sets (:meth:`params`): a random sample of the
        posterior, the same every time for the same folder."""
        if not 0 < n <= len(self):
            raise UserError(f"{n} posterior draws wanted, the posterior holds {len(self)}")
        return [self.params(i) for i in range(n)]


@dataclass
class PosteriorComparison:
    """Two posteriors' draws set side by side (:func:`compare_posteriors`'s result).

    Attributes
    ----------
    table : DataFrame
        Per parameter: ``median_a``, ``median_b``; ``shift_sd`` (the medians' difference in
        ``a``'s posterior sds, signed); ``ks`` and ``ks_p`` (two-sample KS distance between
        the marginals and its p-value).
    c2st : float or None
        Classifier two-sample test on the joint draws (sbi's ``c2st``: 5-fold accuracy of a
        random forest telling ``a``'s draws from ``b``'s; 0.5 when indistinguishable, 1 when
        disjoint); None when not asked for.
    n_a, n_b : int
        Draws compared.
    """

    table: pd.DataFrame
    c2st: float | None
    n_a: int
    n_b: int


def compare_posteriors(
    a: pd.DataFrame | str | os.PathLike[str],
    b: pd.DataFrame | str | os.PathLike[str],
    *,
    draws: int | None = None,
    c2st: int = 0,
    seed: int = 0,
) -> PosteriorComparison:
    """How far apart two posteriors over the same parameters are, per parameter and jointly.

    ``a``, ``b``: output folders of ``memsim infer`` (their ``posterior.parquet``) or frames of
    draws with the same columns. ``draws``: compare the first ``draws`` of ``a`` with the last
    ``draws`` of ``b`` (default: half the smaller set). Never draw ``i`` of both: two runs with
    the same seed push the same base noise through their flows, so their ``i``-th draws are
    paired, and paired draws hide differences (the classifier test then scores far below
    0.5). ``c2st``: run the classifier test on ``c2st`` of those draws of each (needs sbi; 0
    skips it). Two runs of the same inference on other hardware differ by more than the
    draws' own Monte Carlo error (docs/inference.md, "On another machine"): read a comparison
    against such a pair, or against two halves of one posterior's draws.
    """
    from scipy.stats import ks_2samp

    da = a if isinstance(a, pd.DataFrame) else load_posterior(a)
    db = b if isinstance(b, pd.DataFrame) else load_posterior(b)
    if list(da.columns) != list(db.columns):
        raise UserError("the two posteriors are over different parameters")
    half = min(len(da), len(db)) // 2
    n = half if draws is None else int(draws)
    if not 0 < n <= half:
        raise UserError(
            f"draws must be 1 to {half} (half the smaller posterior's {2 * half}), got {n}"
        )
    da, db = da.iloc[:n], db.iloc[len(db) - n :]
    rows = []
    for c in da.columns:
        x, y = da[c].to_numpy(float), db[c].to_numpy(float)
        ks = ks_2samp(x, y)
        sd = x.std()
        rows.append(
            {
                "parameter": c,
                "median_a": float(np.median(x)),
                "median_b": float(np.median(y)),
                "shift_sd": float((np.median(y) - np.median(x)) / sd) if sd > 0 else math.nan,
                "ks": float(ks.statistic),
                "ks_p": float(ks.pvalue),
            }
        )
    acc = None
    if c2st:
        import torch
        from sbi.utils.metrics import c2st as classifier_test

        torch.manual_seed(int(seed))
        xa = torch.tensor(da.to_numpy(float)[:c2st], dtype=torch.float32)
        xb = torch.tensor(db.to_numpy(float)[:c2st], dtype=torch.float32)
        acc = float(classifier_test(xa, xb, seed=int(seed)))
    return PosteriorComparison(pd.DataFrame(rows), acc, len(da), len(db))


def annotations_needed(
    results: pd.DataFrame,
    level: float,
    *,
    x: str = "annotations_per_video.step1.mean",
    y: str = "human_consistency.step1.mean",
) -> pd.DataFrame:
    """Per replicate of a sweep (one posterior draw each): annotations per video for ``y`` to
    reach ``level``.

    Within each replicate the cells are ordered by ``x`` and ``y`` is interpolated linearly
    between the two cells that bracket ``level`` (the first crossing); a replicate whose cells
    never reach it needs more than the largest cell: ``needed`` is +inf and ``reached`` False
    (so that quantiles over replicates stay honest: :func:`credible` keeps it). Columns:
    ``replicate``, ``needed``, ``reached``.
    """
    rows = []
    for rep, g in results.groupby("replicate", sort=True):
        g = g.sort_values(x)
        xs, ys = g[x].to_numpy(float), g[y].to_numpy(float)
        needed = math.nan
        for i in range(1, len(xs)):
            if ys[i - 1] < level <= ys[i]:
                needed = xs[i - 1] + (level - ys[i - 1]) * (xs[i] - xs[i - 1]) / (ys[i] - ys[i - 1])
                break
        if len(ys) and ys[0] >= level:
            needed = xs[0]  # already reached at the fewest annotations measured: an upper bound
        reached = bool(np.isfinite(needed))
        rows.append(
            {"replicate": int(rep), "needed": needed if reached else math.inf, "reached": reached}
        )
    return pd.DataFrame(rows)


def _fmt(x) -> str:
    from memsim.fit.compare import format_value

    return format_value(float(x)) if x is not None else "-"


#: The simulations :func:`~memsim.fit.infer.typicality` compares with, as the report names them.
_ROUNDS = {"prior": "the prior's simulations", "region": "the second round's simulations"}


def _typical(typical: dict, what: str, x: np.ndarray, moments) -> dict:
    """``typical`` with ``what``'s :func:`~memsim.fit.infer.typicality` added: None where the
    simulations with every statistic are too few to compare with (no more than the
    statistics; a scaled-down run)."""
    ok = np.isfinite(x).all(axis=1).sum()
    t = None
    if ok > x.shape[1]:
        t = nfi.typicality(nfi.standardise(x, moments), [m.name for m in moments])
    return {**typical, what: t}


def _typicality_info(t: nfi.Typicality) -> dict:
    """What ``inference.json`` keeps of a :class:`~memsim.fit.infer.Typicality`."""
    return {
        "simulations": t.simulations,
        "dims": t.dims,
        "distance2": t.distance2,
        "beyond": t.beyond,
        "outside_99": t.outside(0.01),
        "relations_broken": t.relations.to_dict("records"),
    }


def _typicality_table(typical: dict, names: list[str]) -> pd.DataFrame:
    """``typicality.csv``: per statistic (in the order of ``names``, the statistics'), the
    share of each round's simulations below the released value and its two-sided tail."""
    parts = [
        t.marginal.set_index("statistic").add_suffix(f"_{what}")
        for what, t in typical.items()
        if t is not None
    ]
    out = pd.concat(parts, axis=1)
    return out.reindex([n for n in names if n in out.index]).rename_axis("statistic").reset_index()


def typicality_line(typical: dict) -> str:
    """One line: how typical the released data are of each round's simulations."""
    measured = {k: t for k, t in typical.items() if t is not None}
    if not measured:
        return (
            "released data against the simulations: not measured (no more simulations "
            "than statistics)"
        )
    parts = [f"beyond {t.beyond:.2%} of {_ROUNDS[k]}" for k, t in measured.items()]
    line = "released data against the simulations (Mahalanobis distance): " + ", ".join(parts)
    last = measured.get("region", measured.get("prior"))
    outside = last.outside(0.01)
    line += "; statistics outside 99 % of them: " + (", ".join(outside) if outside else "none")
    if len(last.relations):
        line += (
            f"; exact relations of the simulated statistics the released ones break: "
            f"{len(last.relations)} ({last.relations['statistics'].iloc[0].split(' (')[0]} ...)"
        )
    return line


def trained(train: dict) -> str:
    """How the final flow trained, from an inference's ``train`` facts: ``301 epochs``, or
    for an ensemble ``3 flows (301, 268 and 247 epochs)``."""
    members = train.get("members", [])
    if not members:
        return f"{train['epochs']} epochs"
    epochs = [train["epochs"], *(m["epochs"] for m in members)]
    listed = ", ".join(str(e) for e in epochs[:-1]) + f" and {epochs[-1]}"
    return f"{len(epochs)} flows ({listed} epochs)"


def emulator_line(info: dict) -> str:
    """One sentence on the emulated statistics of an inference (its ``inference.json``)."""
    t = info["train"]
    e = t["emulator"]
    acc = info.get("mcmc", {}).get("acceptance", {})
    given = t.get("emulator_given", [])
    on = f" given the parameters and {len(given)} of the flow's statistics" if given else ""
    shape = e.get("shape")  # inputs, outputs, width, hidden layers
    size = f" ({shape[3]} x {shape[2]})" if shape else ""
    line = (
        f"{len(t['emulated'])} statistics are emulated (a Gaussian likelihood{on}, its mean an "
        f"MLP{size} fitted in {e['epochs']} epochs, validation error {e['validation_mse']:.3f} of "
        "their variance); the flow learned from the other "
        f"{len(info['moments']) - len(t['emulated'])}, and the posterior is drawn by Metropolis "
        f"({info['mcmc']['steps']} steps"
    )
    if info["mcmc"].get("start", "flow") != "flow":
        line += f", chains started {info['mcmc']['start']}"
    if "posterior" in acc:
        line += f", acceptance {acc['posterior']:.2f}"
    return line + ")."


def markdown(result: Inference) -> str:
    """The inference's tables as markdown (``report.md`` in the output folder)."""
    info = result.info
    t = info["train"]
    out = [
        f"# Posterior of {info['protocol']}\n",
        f"{info['simulations']} prior simulations at scale {info['scale']:g} (seed "
        f"{info['seed']}; {t['dropped']} without every statistic), {t['estimator']} trained "
        f"{trained(t)} on {t['device']} ({t['seconds']:.0f} s)"
        + (f", balanced (BNPE, weight {t['balance']:g}).\n" if t.get("balance") else ".\n"),
    ]
    if info.get("truncated_simulations"):
        out.append(
            f"Then a second round of {info['truncated_simulations']} simulations drawn from the "
            "prior inside the first posterior's highest-density region given the released data "
            f"(holding {info['truncation_posterior_mass']:.2%} of that posterior's draws and "
            f"{info['truncation_acceptance']:.2%} of the prior's), trained on with the first.\n"
        )
    if t.get("emulated"):
        out.append(emulator_line(info) + "\n")
    out += ["## Posterior given the released data\n"]
    points = [c for c in result.table.columns if c.endswith(" percentile")]
    head = "| parameter | prior | median | 90 % interval | contraction |"
    head += "".join(f" {c.removesuffix(' percentile')} (percentile) |" for c in points)
    out += [head, "|---" * (5 + len(points)) + "|"]
    for _, r in result.table.iterrows():
        row = (
            f"| {r['parameter']} | {r['prior']} | {_fmt(r['median'])} | "
            f"[{_fmt(r['q05'])}, {_fmt(r['q95'])}] | {r['contraction']:.2f} |"
        )
        for c in points:
            row += f" {_fmt(r[c.removesuffix(' percentile')])} ({r[c]:.0f}) |"
        out.append(row)
    dens = info.get("point_fit_density_percentile", {})
    if dens:
        out.append(
            "\nShare of posterior draws less probable than each point fit (0: outside what the "
            "posterior draws): " + ", ".join(f"{k} {v:.2f}" for k, v in dens.items()) + ".\n"
        )
    out += ["\n## Most correlated parameter pairs\n", "| a | b | correlation |", "|---|---|---|"]
    for _, r in result.pairs.head(8).iterrows():
        out.append(f"| {r['a']} | {r['b']} | {r['corr']:.2f} |")
    if result.typicality:
        out += _typicality_markdown(result.typicality)
    if result.sbc is not None:
        out += [
            f"\n## Simulation-based calibration ({info['heldout']} held-out simulations, "
            f"{info['sbc_draws']} draws each)\n",
            f"Chi-square of the ranks in {info['sbc_bins']} bins per parameter; coverage of "
            f"the 50 % / 90 % intervals over all parameters {info['coverage_50']:.3f} / "
            f"{info['coverage_90']:.3f}.\n",
            "| parameter | chi2 | p | uniform at 1 % | coverage 50 % | coverage 90 % |",
            "|---|---|---|---|---|---|",
        ]
        for _, r in result.sbc.iterrows():
            out.append(
                f"| {r['parameter']} | {r['chi2']:.1f} | {r['p']:.3f} | "
                f"{'yes' if r['uniform_at_1pct'] else '**no**'} | {r['coverage_50']:.2f} | "
                f"{r['coverage_90']:.2f} |"
            )
    if info.get("region_heldout"):
        out.append(
            f"\nThe same on {info['region_heldout']} held-out draws from the second round's "
            f"region (`sbc-region.csv`): {info['region_sbc_parameters_uniform_at_1pct']} of "
            f"{len(result.sbc)} parameters uniform at the 1 % level (lowest p "
            f"{info['region_sbc_min_p']:.3f}); coverage {info['region_coverage_50']:.3f} / "
            f"{info['region_coverage_90']:.3f}.\n"
        )
    if result.recovery is not None:
        out += [
            "\n## Recovery of known parameters (held-out simulations)\n",
            "| parameter | corr(median, truth) | RMSE / prior sd | posterior sd / prior sd | "
            "coverage 90 % |",
            "|---|---|---|---|---|",
        ]
        for _, r in result.recovery.iterrows():
            out.append(
                f"| {r['parameter']} | {r['corr']:.2f} | {r['rmse_over_prior_sd']:.2f} | "
                f"{r['posterior_sd_over_prior_sd']:.2f} | {r['coverage_90']:.2f} |"
            )
    if result.predictive is not None:
        out += [
            f"\n## Posterior predictive ({info['predictive_draws']} draws)\n",
            "| target | kind | value | median | 90 % interval | holds | off by (tolerances) |",
            "|---|---|---|---|---|---|---|",
        ]
        for _, r in result.predictive.iterrows():
            holds = "yes" if r["inside"] else "**no**"
            off = "" if r["inside"] else f"{r['off_by_tolerances']:.2f}"
            out.append(
                f"| {r['target']} | {r['kind']} | {_fmt(r['value'])} | {_fmt(r['median'])} | "
                f"[{_fmt(r['q05'])}, {_fmt(r['q95'])}] | {holds} | {off} |"
            )
        for what in ("median", "mode"):
            for name, vals in info.get(f"ks_at_posterior_{what}", {}).items():
                out.append(
                    f"\n{name} at the posterior {what} (5 seeds): "
                    + ", ".join(f"{v:.3f}" for v in vals)
                )
    secs = info["seconds"]
    out.append("\n## Time\n\n" + ", ".join(f"{k} {v:.0f} s" for k, v in secs.items()) + "\n")
    return "\n".join(out) + "\n"


def _typicality_markdown(typical: dict) -> list[str]:
    head = "\n## How typical the released data are of the simulations\n"
    typical = {k: t for k, t in typical.items() if t is not None}
    if not typical:
        return [head, "Not measured: no more simulations than statistics.\n"]
    out = [
        head,
        "The released statistics' squared Mahalanobis distance from the simulations' mean, "
        "over the principal directions along which the simulations vary, against the "
        "simulations' own (an estimator conditioned on data unlike any simulation "
        "extrapolates; `memsim.fit.infer.typicality`).\n",
        "| simulations | directions | distance² | simulations closer |",
        "|---|---|---|---|",
    ]
    for k, t in typical.items():
        out.append(
            f"| {t.simulations:,} ({_ROUNDS[k]}) | {t.dims} | {t.distance2:.1f} | {t.beyond:.2%} |"
        )
    last_key = "region" if "region" in typical else "prior"
    last = typical[last_key]
    out += [
        f"\nThe statistics most extreme against {_ROUNDS[last_key]} (share of them below the "
        "released value; every statistic in `typicality.csv`):\n",
        "| statistic | below | two-sided tail |",
        "|---|---|---|",
    ]
    for _, r in last.marginal.head(8).iterrows():
        out.append(f"| {r['statistic']} | {r['below']:.3f} | {r['tail']:.3f} |")
    if len(last.relations):
        out += [
            "\nExact relations among the simulated statistics that the released ones break "
            "(offsets in z-scored units; the statistics weighing most):\n",
            "| released offset | largest simulated | statistics |",
            "|---|---|---|",
        ]
        for _, r in last.relations.iterrows():
            out.append(f"| {r['observed']:+.4f} | {r['simulated']:.4f} | {r['statistics']} |")
    return out


def _machine(device: str = "cpu") -> dict:
    """What a rerun needs to know to expect the same bytes: training and sampling round by the
    CPU's kernels (the GPU's, on ``cuda``), so the same seed gives the same estimator on the
    same kind of CPU or GPU and software only (docs/inference.md, "On another machine")."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                cpu,
            )
    except OSError:
        pass
    out = {"cpu": cpu, "python": platform.python_version()}
    for pkg in ("torch", "sbi", "numpy", "numba"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    if device == "cuda":
        import torch

        out["gpu"] = torch.cuda.get_device_name()
        out["cuda"] = torch.version.cuda
    return out


def _shown(path) -> str:
    """``path`` relative to the checkout when it lies in it (outputs name no machine's folders)."""
    try:
        return Path(path).resolve().relative_to(repository_root()).as_posix()
    except (ValueError, TypeError):
        return str(path)
