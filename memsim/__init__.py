"""memsim: simulate, score and analyse memorability annotation studies ("memory games").

The main job in Python::

    import memsim

    result = memsim.run("videomem", scale=0.2)
    print(result.table)
    result.save("runs/videomem")

Importing memsim is cheap: the names below load their stage on first use.

Loading
    :func:`load_protocol`, :func:`load_params`, :func:`load_targets`, :func:`load_trials`,
    :func:`shipped_protocols`
The pipeline
    :func:`simulate` -> :class:`Simulation`; :func:`score` -> :class:`ScoreResult`;
    :func:`analyse` -> :class:`Analysis`; :func:`compare` -> DataFrame;
    :func:`run` (all of them) -> :class:`RunResult`
Fitting
    :func:`calibrate` -> :class:`Calibration`; :func:`recover` -> :class:`Recovery`;
    :func:`compat` -> :class:`CompatResult`; :func:`infer` (Bayesian, ``sbi``) ->
    :class:`Inference`; :func:`posterior` (a shipped or inferred posterior, no torch needed)
    -> :class:`Posterior`
Studies
    :func:`sweep` -> :class:`SweepResult`; :func:`report` -> :class:`SweepReport`
Errors
    :class:`UserError`: a problem in the input, with a one-line message

The stages themselves live in subpackages: ``memsim.design`` (protocol schema, trial-table
and scores formats), ``memsim.sim`` (parameters, random streams, sequences, numba kernels,
the simpy campaign), ``memsim.analysis`` (filters, scoring, consistency), ``memsim.fit``
(targets, calibration, recovery, compatibility), ``memsim.study`` (the main job, sweeps,
reports), ``memsim.viz`` (figures), ``memsim.predict`` (torch predictors), ``memsim.cli``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

from memsim import api as _api  # cheap: each of its calls loads its stage when called

# public name -> the module that defines it (imported on first access)
_LAZY = {
    **dict.fromkeys(_api.__all__, "memsim.api"),
    "UserError": "memsim.errors",
    "Progress": "memsim.progress",
    "Protocol": "memsim.design.protocol",
    "Params": "memsim.sim.params",
    "Simulation": "memsim.sim.simulate",
    "ScoreResult": "memsim.analysis.scoring",
    "Analysis": "memsim.analysis.consistency",
    "Targets": "memsim.fit.compare",
    "Calibration": "memsim.fit.calibrate",
    "Recovery": "memsim.fit.recover",
    "CompatResult": "memsim.fit.compat",
    "Inference": "memsim.study.infer",
    "Posterior": "memsim.study.infer",
    "RunResult": "memsim.study.run",
    "SweepResult": "memsim.study.sweep",
    "SweepReport": "memsim.study.report",
}

__all__ = [
    "__version__",
    "load_protocol", "load_params", "params_for", "load_targets", "load_trials",
    "shipped_protocols", "simulate", "score", "analyse", "compare", "run", "calibrate",
    "recover", "compat", "infer", "posterior", "sweep", "report",
    "UserError", "Progress", "Protocol", "Params", "Simulation", "ScoreResult", "Analysis",
    "Targets", "Calibration", "Recovery", "CompatResult", "Inference", "Posterior", "RunResult",
    "SweepResult", "SweepReport",
]  # fmt: skip


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'memsim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this hook
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # pragma: no cover - for editors and type checkers
    from memsim.analysis.consistency import Analysis
    from memsim.analysis.scoring import ScoreResult
    from memsim.api import (
        analyse,
        calibrate,
        compare,
        compat,
        infer,
        load_params,
        load_protocol,
        load_targets,
        load_trials,
        params_for,
        recover,
        report,
        run,
        score,
        shipped_protocols,
        simulate,
        sweep,
    )
    from memsim.design.protocol import Protocol
    from memsim.errors import UserError
    from memsim.fit.calibrate import Calibration
    from memsim.fit.compare import Targets
    from memsim.fit.compat import CompatResult
    from memsim.fit.recover import Recovery
    from memsim.progress import Progress
    from memsim.sim.params import Params
    from memsim.sim.simulate import Simulation
    from memsim.study.infer import Inference
    from memsim.study.report import SweepReport
    from memsim.study.run import RunResult
    from memsim.study.sweep import SweepResult
