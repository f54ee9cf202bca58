"""The lab's scorer under memsim's testing kit (``docs/testing.md``).

    pytest examples/test_labscore.py

The correct scorer passes both tests; each buggy variant (``labscore_bugs.py``) fails the
comparison with memsim, some the laws too, and hypothesis prints the smallest log it found.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from labscore import CORRECTIONS, LOG_COLUMNS, config_from_protocol, score
from labscore_bugs import BUGGY

from memsim.testing import Columns, assert_scorer, protocols, studies

# logs in the lab's own column names, under protocols drawn from scratch with the
# corrections this lab implements
STUDIES = studies(protocols(corrections=CORRECTIONS), columns=Columns(LOG_COLUMNS))
SCORERS = {"labscore": score, **BUGGY}


def lab(scorer):
    """The lab's scorer as memsim.testing calls scorers: (log, protocol) -> scores."""
    return lambda log, protocol: scorer(log, config_from_protocol(protocol))


@pytest.mark.parametrize("name", list(SCORERS))
@given(study=STUDIES)
def test_matches_memsim(name, study):
    assert_scorer(lab(SCORERS[name]), study, laws=[])


@pytest.mark.parametrize("name", list(SCORERS))
@given(study=STUDIES)
def test_obeys_the_laws(name, study):
    assert_scorer(lab(SCORERS[name]), study, reference=False)
