"""memsim's pytest plugin: fixtures for testing scoring code, and the ``memsim-slow``
hypothesis profile.

Registered through the ``pytest11`` entry point, so every pytest run where memsim is
installed imports this module: it imports nothing heavy at import time, defines fixtures
only (a suite that does not ask for them sees nothing), and registers the hypothesis
profile without loading it, and only when hypothesis is already in use (imported, or a
``--hypothesis-profile`` option given).

Fixtures (session-scoped, so hypothesis tests may use them):

``memsim_columns``
    The user's column names (:class:`memsim.testing.Columns`); the contract's by default.
    Override it in a ``conftest.py`` to make the other fixtures speak the user's names.
``memsim_reference_scorer``
    memsim's own scoring as a scorer of logs in those names.
``memsim_videomem``
    The shipped VideoMem protocol.
"""

from __future__ import annotations

import sys

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config) -> None:
    # the option exists only where hypothesis' own plugin is installed; default None otherwise
    if "hypothesis" in sys.modules or config.getoption("hypothesis_profile", None):
        try:
            from memsim.testing.profiles import register_profiles

            register_profiles()
        except ImportError:  # hypothesis is not installed: nothing to register
            pass


@pytest.fixture(scope="session")
def memsim_columns():
    """The user's column names (override in conftest.py); the contract's by default."""
    from memsim.testing.columns import Columns

    return Columns()


@pytest.fixture(scope="session")
def memsim_reference_scorer(memsim_columns):
    """memsim's scoring as a scorer ``(log, protocol) -> scores`` in the user's names."""
    from memsim.testing.oracles import reference_scorer

    return reference_scorer(memsim_columns)


@pytest.fixture(scope="session")
def memsim_videomem():
    """The shipped VideoMem protocol."""
    from memsim.testing.strategies import shipped_protocol

    return shipped_protocol("videomem")
