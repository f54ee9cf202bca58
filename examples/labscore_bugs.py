"""Three realistic bugs in ``labscore.py``, one per function; ``docs/testing.md`` shows the
memsim testing kit finding each.
"""

from __future__ import annotations

import pandas as pd
from labscore import clip_scores, one_line, score  # noqa: F401 (clip_scores: the docs cite it)


def line_per_participant(kept_tests: pd.DataFrame, all_tests: pd.DataFrame) -> pd.DataFrame:
    """Bug 1: each participant's own line of hit on lag ("people forget at their own rate"),
    where VideoMem fits one line over all annotations."""
    rows = []
    for _, mine in kept_tests.groupby("worker_id"):
        a, b = one_line(mine)
        rows.append(pd.DataFrame({"a": a, "b": b}, index=mine.index))
    return pd.concat(rows).loc[kept_tests.index]


def session_table_vigilance_as_false_alarms(log: pd.DataFrame) -> pd.DataFrame:
    """Bug 2: every press that is not on a target repeat counts as a false alarm, so the
    presses on vigilance repeats (correct answers) count against the participant."""
    tests = log["seen_before"] & (log["trial_type"] == "target")
    vigilance = log["seen_before"] & (log["trial_type"] == "vigilance")
    not_a_test = ~tests
    pressed = log["key_pressed"]
    flags = pd.DataFrame(
        {
            "worker_id": log["worker_id"],
            "session": log["session"],
            "trials": 1,
            "targets": tests,
            "hits": tests & pressed,
            "vigilance": vigilance,
            "vigilance_hits": vigilance & pressed,
            "first_showings": not_a_test,
            "false_alarms": not_a_test & pressed,
        }
    )
    return flags.groupby(["worker_id", "session"], as_index=False).sum()


def line_before_filtering(kept_tests: pd.DataFrame, all_tests: pd.DataFrame) -> pd.DataFrame:
    """Bug 3: the lag line is fitted on every participant's tests, the filters applied only
    afterwards, when the clips are averaged."""
    a, b = one_line(all_tests)
    return pd.DataFrame({"a": a, "b": b}, index=kept_tests.index)


def score_slope_per_participant(log: pd.DataFrame, config: dict) -> pd.DataFrame:
    return score(log, config, line=line_per_participant)


def score_vigilance_false_alarms(log: pd.DataFrame, config: dict) -> pd.DataFrame:
    return score(log, config, sessions=session_table_vigilance_as_false_alarms)


def score_filter_after_scoring(log: pd.DataFrame, config: dict) -> pd.DataFrame:
    return score(log, config, line=line_before_filtering)


BUGGY = {
    "slope per participant": score_slope_per_participant,
    "false alarms on vigilance repeats": score_vigilance_false_alarms,
    "filter after scoring": score_filter_after_scoring,
}
