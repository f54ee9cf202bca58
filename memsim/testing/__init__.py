"""memsim.testing: property-based tests of scoring code against logs whose truth is known.

For a lab that scores its own memory-game logs: hypothesis strategies that draw protocols,
logs that follow them and the truth behind them, and oracles to hold a scorer to. A failing
test shrinks to a small log (few participants, few videos, short steps), printed whole.

Strategies (:mod:`memsim.testing.strategies`)
    :func:`protocols`, :func:`studies`, :func:`trial_tables`, :func:`simulated_studies`,
    :func:`shipped_protocol`
Oracles (:mod:`memsim.testing.oracles`)
    :func:`reference` (memsim's scoring, every correction form), :data:`LAWS`,
    :func:`check_reference`, :func:`check_law`, :func:`check_scorer`, :func:`assert_scorer`,
    :func:`reference_scorer`
Logs (:mod:`memsim.testing.logs`)
    :class:`Study`, :func:`study_from_trials`, :func:`protocol_violations`, :func:`retime`
Column names (:mod:`memsim.testing.columns`)
    :class:`Columns`: the user's names for the trial table's columns and roles
pytest (:mod:`memsim.testing.pytest_plugin`, registered through memsim's entry points)
    fixtures, and the hypothesis profile :data:`SLOW_PROFILE` (``memsim-slow``)

Importing this package is cheap: each name loads its module on first use (the pytest
plugin lives in this package and is imported by every pytest run). The strategies import
hypothesis; nothing here imports the simulator (numba is loaded only by
:func:`simulated_studies`' first draw), torch or matplotlib. The first name used also
registers the ``memsim-slow`` profile with hypothesis. Guide: ``docs/testing.md``.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "Columns": "columns",
    "Study": "logs",
    "protocol_violations": "logs",
    "retime": "logs",
    "study_from_trials": "logs",
    "FORMS": "oracles",
    "LAWS": "oracles",
    "Case": "oracles",
    "Check": "oracles",
    "Law": "oracles",
    "Reference": "oracles",
    "Scorer": "oracles",
    "ScorerMismatch": "oracles",
    "assert_scorer": "oracles",
    "check_law": "oracles",
    "check_reference": "oracles",
    "check_scorer": "oracles",
    "reference": "oracles",
    "reference_scorer": "oracles",
    "SLOW_PROFILE": "profiles",
    "register_profiles": "profiles",
    "CORRECTION_KINDS": "strategies",
    "LAG_SLOPES": "strategies",
    "protocols": "strategies",
    "shipped_protocol": "strategies",
    "simulated_studies": "strategies",
    "studies": "strategies",
    "trial_tables": "strategies",
}

__all__ = sorted(_WHERE)
_registered = False


def __getattr__(name: str):
    global _registered
    if name not in _WHERE:
        raise AttributeError(f"module 'memsim.testing' has no attribute {name!r}")
    if not _registered:
        _registered = True
        try:
            from memsim.testing.profiles import register_profiles

            register_profiles()
        except ImportError:  # hypothesis is not installed: the oracles work without it
            pass
    value = getattr(importlib.import_module(f"memsim.testing.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
