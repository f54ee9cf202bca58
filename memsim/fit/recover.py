"""Parameter recovery: simulate known parameters, calibrate blind from elsewhere, compare.

In: a protocol, a true parameter set, its targets. The truth is simulated once (seed 101);
every ``fit`` target takes the value that simulation shows, and its scores stand in for the
released ones (:func:`synthetic_targets`). A calibration then starts from the truth moved by
``perturb`` in every free parameter's unconstrained coordinate (alternating signs) and fits
those synthetic targets. Out: a :class:`Recovery` with a table of true, start and fitted value
per free parameter (:func:`recovery_table`). ``memsim recover`` is :func:`recover`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from memsim.analysis.distributions import real_score_comparison
from memsim.fit.calibrate import (
    Free,
    calibrate,
    free_for,
    from_unconstrained,
    simulate_summary,
    to_unconstrained,
    values_of,
    with_values,
)
from memsim.fit.compare import Target, Targets, lookup
from memsim.sim.params import Params
from memsim.sim.simulate import scale_protocol

__all__ = ["Recovery", "recover", "synthetic_targets", "recovery_table"]


def synthetic_targets(protocol, truth: Params, targets, *, seed: int, scale: float = 1.0):
    """Targets and 'released' scores measured on a simulation of known parameters.

    Every ``fit`` target of ``targets`` gets the value the simulation shows (same path,
    same tolerance; head counts at the simulated scale); its scores stand in for the
    released ones. Returns ``(Targets, scores DataFrame)``.
    """
    summary = simulate_summary(protocol, truth, seed, scale, None, full=True)
    scores = summary.pop("_scores")
    summary["real"] = real_score_comparison(scores, scores)
    rows = []
    for t in targets.targets:
        if t.kind != "fit":
            continue
        v = lookup(summary, t.path)
        if not np.isfinite(v):
            continue
        tol = (
            {"abs": t.abs} if t.abs is not None else {"rel": t.rel}
        )  # head counts: relative to this study
        rows.append(
            Target(
                name=t.name,
                path=t.path,
                value=v,
                kind="fit",
                source=f"simulation of {truth.name}, seed {seed}",
                **tol,
            )
        )
    return Targets(name=f"{targets.name}-synthetic", targets=tuple(rows)), scores


def recovery_table(
    truth: Params, fitted: Params, start: Params, free: tuple[Free, ...]
) -> pd.DataFrame:
    """Per free parameter: true, start and fitted value, and the error as a share of its range."""
    t, f, s = (values_of(p, free) for p in (truth, fitted, start))
    rows = []
    for i, fr in enumerate(free):
        span = (math.log(fr.hi) - math.log(fr.lo)) if fr.log else (fr.hi - fr.lo)
        err = (math.log(f[i]) - math.log(t[i])) if fr.log else (f[i] - t[i])
        start_err = (math.log(s[i]) - math.log(t[i])) if fr.log else (s[i] - t[i])
        rows.append(
            {
                "parameter": fr.path,
                "true": t[i],
                "start": s[i],
                "fitted": f[i],
                "error_share_of_range": abs(err) / span,
                "start_error_share": abs(start_err) / span,
            }
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class Recovery:
    """What :func:`recover` found.

    Attributes
    ----------
    table : DataFrame
        One row per free parameter: ``parameter``, ``true``, ``start``, ``fitted``,
        ``error_share_of_range``, ``start_error_share`` (errors as a share of the parameter's
        range, on the log scale for log-scaled parameters).
    fitted : Params
        The parameter set the blind calibration returned.
    calibration : dict
        The calibration's own result (:func:`memsim.fit.calibrate.calibrate`): ``stopped``,
        ``evaluations``, ``best`` (with ``distance``) and the rest.
    """

    table: pd.DataFrame
    fitted: Params
    calibration: dict

    def __repr__(self) -> str:  # a line, not the tables (a notebook prints it)
        err = self.table["error_share_of_range"].abs()
        return (
            f"Recovery(parameters={len(self.table)}, error as a share of the range: median "
            f"{err.median():.3f}, largest {err.max():.3f}, fitted={self.fitted.name!r})"
        )


def recover(
    protocol,
    truth: Params,
    targets: Targets,
    *,
    scale: float = 0.3,
    perturb: float = 0.5,
    budget: int = 200,
    workers: int = 2,
    fixed: tuple[str, ...] = (),
    log_path: str | Path,
    on_eval: Callable[[dict], None] | None = None,
) -> Recovery:
    """Recover ``truth`` blind: see the module docstring.

    Parameters
    ----------
    protocol : Protocol
        Simulated at ``scale`` (0 < scale <= 1) for the truth and for every candidate.
    truth : Params
        The parameters to recover.
    targets : Targets
        Which statistics to match (their ``fit`` rows).
    perturb : float
        Distance of the start from the truth in every free unconstrained coordinate.
    budget, workers, fixed, on_eval
        As for :func:`memsim.fit.calibrate.calibrate`.
    log_path : path
        The calibration's evaluation log (JSON lines).
    """
    scaled = scale_protocol(protocol, scale)
    free = free_for(truth, tuple(fixed))
    syn, fake_real = synthetic_targets(scaled, truth, targets, seed=101)
    x = to_unconstrained(free, values_of(truth, free))
    signs = np.where(np.arange(len(x)) % 2 == 0, 1.0, -1.0)
    start = with_values(
        truth, free, from_unconstrained(free, x + perturb * signs), name="recovery-start"
    )
    res = calibrate(
        scaled,
        start,
        syn,
        real=fake_real,
        scale=1.0,
        seeds=(7,),
        budget=budget,
        workers=workers,
        log_path=log_path,
        force=True,  # a recovery starts from scratch each time: its log is a by-product
        fixed=tuple(fixed),
        on_eval=on_eval,
    )
    return Recovery(
        table=recovery_table(truth, res["params"], start, free),
        fitted=res["params"],
        calibration=res,
    )
