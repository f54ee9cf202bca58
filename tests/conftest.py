"""Shared test set-up: the hypothesis profile, the released data, the shipped files.

Shipped protocols, parameter sets and targets are found the way a user finds them, through
:mod:`memsim.resources` (``protocol_path("videomem")``); small data the tests make lives in
``tests/data`` and ``tests/tables.py``. Tests that need the released data take the
``real_data`` or ``released_videomem`` fixture and are skipped where it is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from memsim.errors import UserError

# Property tests simulate and score: a slow example is expected, not a health problem, and
# shared CI machines make wall-clock deadlines flaky. Each test sets its own max_examples.
settings.register_profile(
    "memsim", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("memsim")

TESTS_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The released-data folder (``$MEMSIM_DATA``, else ``../shared/data``); skip when absent."""
    from memsim.data import data_dir

    try:
        root = data_dir(None)
    except UserError as exc:
        pytest.skip(f"released data not found: {exc}")
    if not (root / "videomem").is_dir():
        pytest.skip(f"released VideoMem data not found under {root}")
    return root


@pytest.fixture(scope="session")
def released_videomem(real_data: Path):
    """The released VideoMem dev-set scores, as a DataFrame in the scores format."""
    from memsim.design.scores import read_scores

    return read_scores(real_data / "videomem" / "ground-truth_dev-set.csv")
