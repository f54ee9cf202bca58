"""memsim's public API: every command of the CLI as a Python call returning a typed result.

The main job in Python::

    import memsim

    result = memsim.run("videomem", scale=0.2)   # simulate, score, analyse, compare
    print(result.table)                          # the comparison with the paper (DataFrame)
    result.save("runs/videomem")                 # trials, scores, summary, figures

Everything here is re-exported by ``memsim`` itself, lazily: ``import memsim`` costs almost
nothing, and each stage (numba kernels, pandas, matplotlib, torch) loads when a call first
needs it — that is why the stage modules are imported inside the functions below.

Protocols, parameter sets and targets are given by name (a file shipped with memsim:
``"videomem"``, ``"memento10k"``, ``"isola2011"``, ``"lamem"``) or by path, or as the loaded
objects themselves.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for the signatures only: importing them here would load every stage
    import pandas as pd

    from memsim.analysis.consistency import Analysis
    from memsim.analysis.scoring import ScoreResult
    from memsim.design.protocol import Protocol
    from memsim.fit.calibrate import Calibration
    from memsim.fit.compare import Targets
    from memsim.fit.compat import CompatResult
    from memsim.fit.recover import Recovery
    from memsim.progress import ProgressCallback
    from memsim.sim.params import Params
    from memsim.sim.simulate import Simulation
    from memsim.study.infer import Inference, Posterior
    from memsim.study.report import SweepReport
    from memsim.study.run import RunResult
    from memsim.study.sweep import SweepResult

__all__ = [
    "load_protocol",
    "load_params",
    "params_for",
    "load_targets",
    "load_trials",
    "shipped_protocols",
    "simulate",
    "score",
    "analyse",
    "compare",
    "run",
    "calibrate",
    "recover",
    "compat",
    "infer",
    "posterior",
    "sweep",
    "report",
]

PathLike = str | os.PathLike


# --------------------------------------------------------------------------- loading
def shipped_protocols() -> list[str]:
    """Names of the protocols shipped with memsim."""
    from memsim.resources import shipped_protocols as names

    return names()


def load_protocol(protocol: Protocol | PathLike) -> Protocol:
    """A protocol: a shipped one by name (``"videomem"``), a YAML file, or a Protocol as is.

    Raises :class:`memsim.errors.UserError` (one line naming the file and the field) when the
    file is missing, malformed or infeasible.
    """
    from memsim.design.protocol import Protocol
    from memsim.design.protocol import load_protocol as load
    from memsim.resources import protocol_path

    if isinstance(protocol, Protocol):
        return protocol
    _check_name_or_path(protocol, "protocol", "a Protocol")
    return load(protocol_path(protocol))


def _check_name_or_path(value, what: str, instead: str) -> None:
    """A name or a path (str or os.PathLike, not empty), else a one-line UserError."""
    from memsim.errors import UserError

    if not isinstance(value, (str, os.PathLike)):
        raise UserError(
            f"{what} must be a shipped name, a file path or {instead}, got {type(value).__name__}"
        )
    if not str(value).strip():
        raise UserError(f"{what}: the name is empty")


def params_for(
    protocol: Protocol | PathLike | None, params: Params | PathLike | None = None
) -> tuple[Params, str]:
    """The parameter set a run of ``protocol`` uses, and one line saying which and why.

    ``protocol``: as :func:`load_protocol` takes it, or None when ``params`` is given.
    ``params``: a Params, a YAML file, a shipped set's name (``"videomem-from-scratch"``), or
    None for the protocol's own calibrated set (``calibration/<protocol name>.yaml``). A
    protocol without a set of its own has no default: :class:`memsim.errors.UserError` says
    to pass one (``params="videomem"`` runs it with VideoMem's crowd, and the line says so).
    """
    from memsim.errors import UserError
    from memsim.resources import params_path, shipped_dir
    from memsim.sim.params import Params, default_params_path
    from memsim.sim.params import load_params as load

    if protocol is not None:
        protocol = load_protocol(protocol)
    elif params is None:
        raise UserError("params_for needs a protocol, or params")
    if isinstance(params, Params):
        return params, f"parameters: {params.name} (given)"
    if params is not None:
        _check_name_or_path(params, "params", "a Params")
        named = params_path(str(params)) if not Path(params).exists() else None
        path = named or Path(params)
        p = load(path)
        theirs = protocol is not None and path.stem != protocol.name and named is not None
        why = f"; {protocol.name} runs with another study's crowd" if theirs else ""
        return p, f"parameters: {p.name} ({path}{why})"
    path = default_params_path(protocol)  # a protocol without its own set: UserError
    p = load(path)
    shown = path.relative_to(shipped_dir("calibration").parent) if path.is_absolute() else path
    why = f"the protocol's own {'calibrated ' if p.calibrated else ''}set"
    return p, f"parameters: {p.name} ({shown}: {why})"


def load_params(params: Params | PathLike | None = None, *, protocol=None) -> Params:
    """A population parameter set: a Params as is, a YAML file, a shipped set by name, or
    (``params=None``) the given protocol's own calibrated set."""
    if params is None:
        return params_for(load_protocol(protocol or "videomem"))[0]
    return params_for(None, params)[0]


def load_targets(targets: Targets | PathLike | None = None, *, protocol=None) -> Targets | None:
    """A study's targets: a Targets as is, a YAML file, or (``targets=None``) the protocol's
    own targets file (``calibration/<name>-targets.yaml``; None when it has none)."""
    from memsim.fit.compare import Targets, default_targets_path
    from memsim.fit.compare import load_targets as load

    if isinstance(targets, Targets):
        return targets
    if targets is not None:
        return load(targets)
    name = load_protocol(protocol or "videomem").name
    path = default_targets_path(name)
    return load(path) if path is not None else None


def load_trials(path: PathLike) -> pd.DataFrame:
    """A trial table from Parquet or CSV, checked against the contract (SPEC, docs/scoring.md)."""
    from memsim.design.trials import read_trials

    return read_trials(path)


# --------------------------------------------------------------------------- the pipeline
def simulate(
    protocol: Protocol | PathLike = "videomem",
    params: Params | PathLike | None = None,
    *,
    seed: int = 0,
    scale: float = 1.0,
    progress: ProgressCallback | None = None,
    stimuli_seed: int | None = None,
) -> Simulation:
    """Simulate a study: its trial table and the latent truth behind it (:class:`Simulation`).

    Same seed, same bytes, whatever the number of threads. ``stimuli_seed``: the stimuli's
    latent parameters drawn with it, everything else with ``seed`` (the same videos played
    by a new campaign; :func:`memsim.sim.simulate.simulate`).
    """
    from memsim.limits import check_seed
    from memsim.sim.simulate import simulate as sim

    seed = check_seed(seed)
    if stimuli_seed is not None:
        stimuli_seed = check_seed(stimuli_seed, "stimuli_seed")
    proto = load_protocol(protocol)
    p = params_for(proto, params)[0]
    return sim(proto, p, seed=seed, scale=scale, progress=progress, stimuli_seed=stimuli_seed)


def score(
    trials: pd.DataFrame | PathLike, protocol: Protocol | PathLike, *, validate: bool = True
) -> ScoreResult:
    """Score a trial table (real or simulated) under a protocol: filters, raw scores, lag
    correction (:class:`memsim.analysis.scoring.ScoreResult`; ``.scores`` is the VideoMem
    scores format)."""
    from memsim.analysis.scoring import score as run_scoring

    if not hasattr(trials, "columns"):
        trials = load_trials(trials)
    return run_scoring(trials, load_protocol(protocol), validate=validate)


def analyse(
    scored: ScoreResult,
    *,
    truth: pd.DataFrame | None = None,
    seed: int = 0,
    n_splits: int = 25,
    repeats: int = 3,
) -> Analysis:
    """The paper's analyses of a scored study (:class:`memsim.analysis.consistency.Analysis`):
    human consistency over ``n_splits`` half-splits, annotation consistency against annotations
    per video, ST-LT correlations, lag curves, response times, and the agreement with
    ``truth`` (a table with ``video`` and ``true_<step>`` columns) when given."""
    from memsim.analysis.consistency import analyse as run_analyses
    from memsim.analysis.scoring import ScoreResult
    from memsim.errors import UserError
    from memsim.limits import check_int, check_seed

    if not isinstance(scored, ScoreResult):
        raise UserError(
            f"analyse takes a scored study (memsim.score's ScoreResult), got "
            f"{type(scored).__name__}"
        )
    if truth is not None and not hasattr(truth, "columns"):
        raise UserError(f"truth must be a DataFrame, got {type(truth).__name__}")
    seed = check_seed(seed)
    n_splits = check_int(n_splits, "n_splits", 1)
    repeats = check_int(repeats, "repeats", 1)
    return run_analyses(scored, truth=truth, seed=seed, n_splits=n_splits, repeats=repeats)


def compare(
    analysis: dict | Sequence[dict],
    targets: Targets | PathLike | None = None,
    *,
    protocol: Protocol | PathLike | None = None,
    scale: float | None = None,
) -> pd.DataFrame:
    """Every target of a study beside the simulated value: a DataFrame with ``target``,
    ``value``, ``simulated``, ``sd`` (over several analyses), ``tolerance``, ``status``
    (ok / off / n/a), ``kind`` (fit / report), ``source``.

    ``targets`` default to the protocol's own (``protocol`` default: the analysis'
    protocol); ``scale`` is the factor the head-count targets shrink by: default the one
    :func:`run` records (its ``scale``, or ``size_factor`` where the stimuli stayed at their
    floor: :func:`memsim.sim.simulate.size_factor`), else 1, so pass it for a scaled-down
    study analysed with :func:`analyse`.
    """
    import math
    import numbers

    from memsim.errors import UserError
    from memsim.fit.compare import compare as run_compare

    runs = [analysis] if isinstance(analysis, dict) else analysis
    if not isinstance(runs, Sequence) or not runs or not all(isinstance(a, dict) for a in runs):
        raise UserError(
            "compare takes an analysis (memsim.analyse's result) or a non-empty list of them"
        )
    first = runs[0]
    t = load_targets(targets, protocol=protocol or first.get("protocol"))
    if t is None:
        raise UserError(f"no targets file for protocol {first.get('protocol')!r}; pass targets=")
    if scale is None:
        scale = float(first.get("size_factor", first.get("scale", 1.0)))
    if not (isinstance(scale, numbers.Real) and math.isfinite(scale) and 0 < scale <= 1):
        raise UserError(f"scale must be in (0, 1], got {scale}")
    runs = analysis if isinstance(analysis, dict) else list(analysis)
    return run_compare(runs, t, scale=scale)


def run(
    protocol: Protocol | PathLike = "videomem",
    params: Params | PathLike | None = None,
    *,
    seed: int = 0,
    scale: float = 1.0,
    data: PathLike | None = None,
    out: PathLike | None = None,
    figures: bool = True,
    figure_formats: str | Sequence[str] | None = None,
    figure_workers: int | None = None,
    progress: ProgressCallback | None = None,
    stimuli_seed: int | None = None,
) -> RunResult:
    """The main job: simulate, score like a real log, analyse, compare with the paper.

    Returns a :class:`memsim.study.run.RunResult`: ``.table`` (the comparison, a DataFrame),
    ``.scores``, ``.analysis``, ``.trials``, ``.simulation``; ``.save(folder)`` writes every
    output and ``.figures(folder)`` draws the paper's figures. With ``out`` the outputs are
    written while the analyses run (as ``memsim run`` does), and the folder appears whole;
    ``figure_formats`` (``"svg"``, ``"pdf"``) are drawn beside each PNG; ``figure_workers``
    processes draw the figures while the run goes on (default: 2 on Linux while the CPUs are
    not all busy; 0 draws them in this process; the same bytes either way). ``stimuli_seed``:
    the stimuli drawn with it, everything else with ``seed`` (:func:`simulate`).
    """
    from memsim.study.run import run_study

    proto = load_protocol(protocol)
    p = params_for(proto, params)[0]
    return run_study(
        proto,
        p,
        seed=seed,
        scale=scale,
        data=data,
        out=out,
        figures=figures,
        figure_formats=figure_formats,
        figure_workers=figure_workers,
        progress=progress,
        stimuli_seed=stimuli_seed,
    )


# --------------------------------------------------------------------------- fitting
def calibrate(
    protocol: Protocol | PathLike = "videomem",
    *,
    out: PathLike,
    start: Params | PathLike | None = None,
    targets: Targets | PathLike | None = None,
    data: PathLike | None = None,
    scale: float = 0.3,
    seeds: Sequence[int] = (1,),
    budget: int = 400,
    workers: int = 2,
    fixed: Sequence[str] = (),
    starts: int = 1,
    screen: int = 0,
    polish: int = 0,
    polish_seeds: Sequence[int] | None = None,
    resume: bool = False,
    force: bool = False,
    name: str | None = None,
    bins: str = "raw",
    method: str = "trf",
    counts: bool = False,
    progress: ProgressCallback | None = None,
) -> Calibration:
    """Fit a parameter set to the study's targets and released scores (simulated moments),
    writing it to ``out`` (:class:`memsim.fit.calibrate.Calibration`). See
    ``docs/calibration.md`` for the method and ``memsim calibrate --help`` for each option.

    ``method`` is the optimiser, ``"trf"`` or ``"dfols"``; ``counts`` adds the shape of the
    released annotation counts to the distance. A fit from scratch:
    ``memsim.calibrate("videomem", out=..., start="tests/data/params-golden.yaml",
    method="dfols", counts=True, budget=150, seeds=(1, 2), polish=150,
    polish_seeds=(1, 2, 3, 4))``.

    ``budget`` counts candidates, those replayed from the log of an interrupted fit included;
    ``resume`` continues that fit from its evaluation log, ``force`` starts over and replaces
    it (without either, an existing log is a :class:`memsim.errors.UserError`)."""
    from memsim.data import released_scores
    from memsim.errors import UserError
    from memsim.fit.calibrate import calibrate_to_file, check_seeds
    from memsim.progress import report

    proto = load_protocol(protocol)
    t = load_targets(targets, protocol=proto)
    if t is None:
        raise UserError(f"no targets file for protocol {proto.name!r}; pass targets=")
    start_params = params_for(proto, start)[0]
    check_seeds(seeds, empty_ok=False)
    _check_workers_start(workers)
    if isinstance(fixed, str):  # one parameter's path, not its characters
        fixed = (fixed,)

    seen: dict[str, set] = {}

    def on_eval(stage: str, stage_budget: int, row: dict) -> None:
        done = seen.setdefault(stage, set())
        done.add(tuple(row["x"]))
        report(
            progress,
            "calibrate",
            stage,
            min(len(done), stage_budget),
            stage_budget,
            unit="candidates",
            detail=f"distance {row['distance']:.2f}",
        )

    return calibrate_to_file(
        proto,
        start_params,
        t,
        out=out,
        real=released_scores(proto.name, data),
        scale=scale,
        seeds=tuple(seeds),
        budget=budget,
        workers=workers,
        fixed=tuple(fixed),
        starts=starts,
        screen=screen,
        polish=polish,
        polish_seeds=polish_seeds,
        resume=resume,
        force=force,
        name=name,
        bins=bins,
        method=method,
        counts=counts,
        on_eval=on_eval if progress is not None else None,
        on_start=lambda: report(
            progress,
            "calibrate",
            "starting (workers, noise of the moments)",
            0,
            budget,
            unit="candidates",
        ),
    )


def recover(
    protocol: Protocol | PathLike = "videomem",
    *,
    out: PathLike,
    truth: Params | PathLike | None = None,
    targets: Targets | PathLike | None = None,
    scale: float = 0.3,
    perturb: float = 0.5,
    budget: int = 200,
    workers: int = 2,
    fixed: Sequence[str] = (),
) -> Recovery:
    """Parameter recovery (:class:`memsim.fit.recover.Recovery`): simulate ``truth`` (default
    the protocol's set), calibrate blind from a perturbed start, and compare; the evaluation
    log goes to ``out/recovery.evals.jsonl``."""
    import math
    import numbers

    from memsim.errors import UserError
    from memsim.fit.recover import recover as run_recovery
    from memsim.io import make_dirs

    proto = load_protocol(protocol)
    t = load_targets(targets, protocol=proto)
    if t is None:
        raise UserError(f"no targets file for protocol {proto.name!r}; pass targets=")
    if not (isinstance(perturb, numbers.Real) and math.isfinite(perturb) and perturb >= 0):
        raise UserError(f"perturb must be a number, 0 or more, got {perturb}")
    if isinstance(fixed, str):  # one parameter's path, not its characters
        fixed = (fixed,)
    truth_params = params_for(proto, truth)[0]
    _check_workers_start(workers)
    out = Path(out)
    created = not out.exists()
    make_dirs(out)
    try:
        return run_recovery(
            proto,
            truth_params,
            t,
            scale=scale,
            perturb=perturb,
            budget=budget,
            workers=workers,
            fixed=tuple(fixed),
            log_path=out / "recovery.evals.jsonl",
        )
    except UserError:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a refused recovery leaves no folder behind
        raise


def compat(
    *, data: PathLike | None = None, repeats: int = 5, seed: int = 0, mechanisms: bool = False
) -> CompatResult:
    """Which of the paper's statistics the released VideoMem scores allow under independent
    annotations (:class:`memsim.fit.compat.CompatResult`; ``docs/calibration.md``)."""
    from memsim.fit.compat import compat as run_compat
    from memsim.limits import check_int, check_seed

    seed = check_seed(seed)
    repeats = check_int(repeats, "repeats")
    return run_compat(data=data, repeats=repeats, seed=seed, mechanisms=mechanisms)


def infer(
    protocol: Protocol | PathLike = "videomem",
    *,
    out: PathLike,
    simulations: int = 6000,
    scale: float = 1.0,
    workers: int = 1,
    device: str = "cpu",
    seed: int = 0,
    prior: PathLike | None = None,
    targets: Targets | PathLike | None = None,
    data: PathLike | None = None,
    heldout: int = 200,
    predictive: int = 100,
    truncated: int = 0,
    balance: float = 0.0,
    mcmc_start: str = "flow",
    figures: bool = True,
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> Inference:
    """Bayesian calibration (:class:`memsim.study.infer.Inference`): simulations from the prior
    (``calibration/<protocol>-prior.yaml`` unless ``prior``), neural posterior estimation with
    ``sbi``, the posterior given the released data, and its checks (SBC and recovery on
    ``heldout`` held-out simulations, the posterior predictive over ``predictive`` draws),
    written into ``out`` (``docs/inference.md``). ``truncated``: a second round of that many
    simulations inside the first posterior's region (TSNPE), trained on with the first.
    ``balance``: balanced NPE's weight (0: plain NPE; 100 is the BNPE paper's), a training
    that penalises overconfidence (docs/inference.md, "Balanced training").
    ``mcmc_start``: where the Metropolis chains of a posterior with emulated statistics start,
    ``flow`` or ``tempered`` (:meth:`memsim.fit.infer.Estimator.mcmc`).
    Needs the ``infer`` extra (torch, sbi).

    The simulations in ``out/simulations`` are reused when the settings match: an interrupted
    run resumes, a larger ``simulations`` adds to a smaller one; ``force`` starts over."""
    from memsim.data import released_scores
    from memsim.errors import UserError
    from memsim.study.infer import run_inference

    proto = load_protocol(protocol)
    t = load_targets(targets, protocol=proto)
    if t is None:
        raise UserError(f"no targets file for protocol {proto.name!r}; pass targets=")
    _need_sbi()
    _check_workers_start(workers)
    return run_inference(
        proto,
        out=out,
        simulations=simulations,
        scale=scale,
        workers=workers,
        device=device,
        seed=seed,
        prior=prior,
        targets=t,
        real=released_scores(proto.name, data),
        heldout=heldout,
        predictive=predictive,
        truncated=truncated,
        balance=balance,
        mcmc_start=mcmc_start,
        figures=figures,
        force=force,
        progress=progress,
    )


def posterior(posterior: PathLike = "videomem") -> Posterior:
    """A posterior over a population's parameters (:class:`memsim.study.infer.Posterior`): a
    shipped one by name (``"videomem"``, ``"memento10k"``) or a folder written by
    :func:`infer`. Its ``draws`` are a DataFrame, ``params(i)`` draw ``i`` as a whole parameter
    set that :func:`simulate` and :func:`run` take, ``parameter_sets(n)`` the first ``n`` of
    them; torch and sbi are not needed to read it.

    ::

        post = memsim.posterior("videomem")
        for p in post.parameter_sets(20):          # 20 crowds the released data allow
            r = memsim.run("my-protocol.yaml", params=p, scale=0.2)
    """
    from memsim.resources import posterior_path
    from memsim.study.infer import Posterior

    return Posterior.load(posterior_path(posterior))


def _check_workers_start(workers) -> None:
    """Before anything is written: a script that would start worker processes from its
    unguarded top level is refused (:func:`memsim.io.check_spawn_safe`)."""
    if isinstance(workers, int) and not isinstance(workers, bool) and workers > 1:
        from memsim.io import check_spawn_safe

        check_spawn_safe()


def _need_sbi() -> None:
    import importlib.util

    from memsim.errors import UserError

    for mod in ("torch", "sbi"):
        if importlib.util.find_spec(mod) is None:
            raise UserError(
                f"memsim infer needs {mod}: pip install torch==2.13.0 (the CPU wheel) and then "
                "pip install 'memsim[infer]'"
            )


# --------------------------------------------------------------------------- studies
def sweep(
    study: PathLike,
    out: PathLike,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    allow_large: bool = False,
    connect_timeout: float = 10.0,
    tls: dict | None = None,
    progress: ProgressCallback | None = None,
) -> SweepResult:
    """Run (or resume) a what-if study file into ``out`` (:class:`memsim.study.sweep.SweepResult`;
    ``.results`` is the tidy results table, one row per cell and replicate).

    ``scheduler``: a Dask scheduler's address (``tcp://`` or ``tls://``; ``tls`` then holds
    ``tls_ca_file``, ``tls_client_cert``, ``tls_client_key``), given up on after
    ``connect_timeout`` seconds. More than :data:`memsim.limits.MAX_RUNS` runs need
    ``allow_large`` (docs/limits.md)."""
    from memsim.study.sweep import run_sweep

    if scheduler is None:
        _check_workers_start(workers)
    return run_sweep(
        study,
        out,
        workers=workers,
        scheduler=scheduler,
        allow_large=allow_large,
        connect_timeout=connect_timeout,
        tls=tls,
        progress=progress,
    )


def report(sweep_dir: PathLike, *, figures: bool = True) -> SweepReport:
    """Tables and figures of a finished sweep, written into ``<sweep_dir>/report/``
    (:class:`memsim.study.report.SweepReport`)."""
    from memsim.study.report import report as run_report

    return run_report(sweep_dir, figures=figures)
