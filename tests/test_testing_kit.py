"""memsim.testing: strategies draw valid logs that follow their protocol and shrink small;
the oracles pass correct scorers (memsim's, the plain-pandas one in examples/) and catch
the three bugs of docs/testing.md within hypothesis' default example budget; the pytest
plugin and the import stay light."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

from memsim.design.trials import validate_trials
from memsim.errors import UserError
from memsim.testing import (
    LAWS,
    Check,
    Columns,
    ScorerMismatch,
    assert_scorer,
    check_law,
    check_reference,
    check_scorer,
    protocol_violations,
    protocols,
    reference,
    reference_scorer,
    retime,
    shipped_protocol,
    simulated_studies,
    studies,
    study_from_trials,
    trial_tables,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

import labscore  # noqa: E402
import labscore_bugs  # noqa: E402

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LAB_COLUMNS = Columns(labscore.LOG_COLUMNS)
LAB_STUDIES = studies(protocols(corrections=labscore.CORRECTIONS), columns=LAB_COLUMNS)


def lab(scorer):
    return lambda log, protocol: scorer(log, labscore.config_from_protocol(protocol))


def _first(strategy, predicate):
    """The first drawn example that satisfies ``predicate`` (no shrinking: quick)."""
    found = []

    @settings(
        max_examples=200, database=None, derandomize=True, deadline=None, phases=[Phase.generate]
    )
    @given(strategy)
    def search(x):
        if predicate(x):
            found.append(x)
            raise StopIteration

    with pytest.raises(StopIteration):
        search()
    return found[0]


def _python(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return out.stdout.strip()


# --------------------------------------------------------------------------- light imports
def test_import_loads_neither_simulator_torch_nor_matplotlib():
    # numba is loaded: the reference is memsim's own scoring, whose row passes are numba kernels
    code = (
        "import sys, memsim.testing as t; t.studies; t.assert_scorer; t.Columns; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'torch', 'matplotlib', 'simpy'}), "
        "sorted(m for m in sys.modules if m.startswith('memsim.sim')))"
    )
    assert _python(code) == "[] []"


def test_pytest_plugin_import_is_cheap():
    code = (
        "import sys, memsim.testing.pytest_plugin; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'hypothesis', 'pandas', 'numpy', 'numba', 'torch', 'matplotlib'}))"
    )
    assert _python(code) == "[]"


def test_plugin_is_registered_and_its_fixtures_work(memsim_videomem, memsim_reference_scorer):
    names = {e.name: e.value for e in entry_points(group="pytest11")}
    assert names.get("memsim") == "memsim.testing.pytest_plugin"
    assert memsim_videomem.name == "videomem" and len(memsim_videomem.steps) == 2
    slow = settings.get_profile("memsim-slow")  # registered, not loaded
    assert slow.deadline is None and Phase.explain not in slow.phases
    assert settings.default.print_blob and Phase.explain in settings.default.phases  # this
    # suite's own profile (tests/conftest.py) is the one loaded, not memsim-slow
    study = _first(studies(memsim_videomem, participants=1), lambda s: True)
    got = memsim_reference_scorer(study.log, study.protocol)
    pd.testing.assert_frame_equal(got, reference(study).scores)


# --------------------------------------------------------------------------- strategies
def _follows(study) -> None:
    validate_trials(study.trials)
    assert protocol_violations(study.trials, study.protocol) == []
    # truth and participants describe the same log
    assert set(study.trials["video"]) <= set(study.truth["video"])
    assert set(study.trials["participant"]) <= set(study.participants["participant"])


@FAST
@given(studies(incomplete=True))
def test_drawn_logs_follow_drawn_protocols(study):
    _follows(study)


@settings(FAST, max_examples=5)
@given(studies("videomem"))
def test_drawn_logs_follow_videomem(study):
    _follows(study)
    counts = study.trials.groupby(["participant", "step"]).size()
    assert set(counts) <= {180, 120}


@pytest.mark.parametrize("name", ["videomem", "memento10k", "isola2011", "lamem"])
def test_small_copies_of_shipped_protocols_keep_their_structure(name):
    base = shipped_protocol(name)

    @settings(FAST, max_examples=8)
    @given(studies(protocols(name)))
    def check(study):
        _follows(study)
        p = study.protocol
        assert [s.name for s in p.steps] == [s.name for s in base.steps]
        for step, b in zip(p.steps, base.steps):
            assert [g.role for g in step.items] == [g.role for g in b.items]
            assert step.filters == b.filters
            assert step.scoring.correction.kind == b.scoring.correction.kind
            assert all(1 <= g.count <= 3 for g in step.items)

    check()


def test_simulated_studies_carry_the_simulators_truth():
    @settings(max_examples=1, database=None, derandomize=True, deadline=None)
    @given(simulated_studies("videomem", scale=0.004))
    def check(study):
        assert study.origin.startswith("simulated, seed")
        assert protocol_violations(study.trials, study.protocol) == []
        assert {"true_short_term", "true_long_term"} <= set(study.truth.columns)
        assert study.participants["careless"].dtype == bool
        assert study.n_videos <= study.protocol.stimuli.count < 10_000  # scaled down
        assert_scorer(reference_scorer(), study, laws=["row_order", "drop_filtered"])

    check()


def test_varied_fields_and_lengths_that_follow_them():
    strat = protocols(
        "videomem",
        vary={
            "steps.0.items.0.count": range(40, 43),
            "steps.0.filters.max_false_alarm_rate": [0.2, 0.3],
        },
    )
    p = _first(strat, lambda p: p.steps[0].items[0].count == 42)
    assert p.steps[0].length == 184 and p.steps[0].filters.max_false_alarm_rate == 0.2
    with pytest.raises(UserError, match="names no field"):
        protocols("videomem", vary={"steps.0.itemz": [1]})
    with pytest.raises(UserError, match="unknown correction"):
        protocols(corrections=["linearr"])


# derandomized: where hypothesis's shrinking ends depends on its search, which a fresh run
# draws at random (a CI run stopped at 3 videos on about one run in eight)
SHRINK = settings(derandomize=True, database=None)


def test_failures_shrink_to_small_logs():
    # any log with two participants shrinks to the smallest game: one target shown twice
    s = find(studies(), lambda s: s.n_participants >= 2, settings=SHRINK)
    assert s.n_participants == 2 and s.n_videos == 1 and len(s.trials) == 4
    assert len(s.protocol.steps) == 1 and s.protocol.steps[0].length == 2
    # a careless participant who pressed on a first showing, in a two-step game
    s = find(
        studies(protocols(steps=2)),
        lambda s: (
            s.participants["careless"].any() and (s.trials["response"] & ~s.trials["repeat"]).any()
        ),
        settings=SHRINK,
    )
    assert s.n_participants == 1 and s.n_videos <= 2 and len(s.trials) <= 4


def test_user_column_names_and_role_labels():
    cm = Columns(
        {"participant": "worker", "video": "clip", "response": "pressed"},
        roles={"target": "T", "filler": "F", "vigilance": "V"},
    )
    log = _first(trial_tables(columns=cm), lambda log: len(log) > 4)
    assert {"worker", "clip", "pressed", "step"} <= set(log.columns)
    assert "participant" not in log.columns
    assert set(log["role"].astype(str)) <= {"T", "F", "V"}
    back = validate_trials(cm.to_contract(log))
    assert set(back["role"].astype(str)) <= {"target", "filler", "vigilance"}
    with pytest.raises(UserError, match="unknown trial-table column"):
        Columns({"worker": "participant"})
    with pytest.raises(UserError, match="two columns the name 'video'"):
        Columns({"participant": "video"})


def test_same_choices_same_bytes():
    def run():
        out = []

        @settings(max_examples=15, database=None, derandomize=True, deadline=None)
        @given(studies())
        def collect(study):
            out.append(pd.util.hash_pandas_object(study.log).sum())

        collect()
        return out

    assert run() == run()


def test_protocol_violations_names_what_is_wrong():
    study = _first(studies(protocols(steps=2)), lambda s: (s.trials["step"] == 2).any())
    t = study.trials.copy()
    assert protocol_violations(t, study.protocol) == []
    rep = np.flatnonzero((t["lag"] > 0).to_numpy())[0]
    bad = t.copy()
    bad.loc[rep, "video"] = int(t["video"].max()) + 1
    assert "does not point at its video" in protocol_violations(bad, study.protocol)[0]
    step2 = np.flatnonzero(((t["step"] == 2) & t["repeat"]).to_numpy())[0]
    bad = t.copy()
    bad.loc[step2, "video"] = int(t["video"].max()) + 1
    assert "tested from an earlier step" in protocol_violations(bad, study.protocol)[0]


def test_retime_keeps_onsets_and_delays_consistent():
    study = _first(
        studies(protocols(steps=2)),
        lambda s: (s.trials["step"] == 2).any() and s.trials["response"].any(),
    )
    t = study.trials
    pd.testing.assert_frame_equal(retime(t, study.protocol), t)  # built consistent already
    flipped = t.assign(response=~t["response"])
    flipped["rt_s"] = np.where(flipped["response"], np.float32(1.5), np.nan).astype(np.float32)
    again = retime(flipped, study.protocol)
    validate_trials(again)
    assert not np.allclose(again["onset_s"], t["onset_s"])  # presses end presentations


# --------------------------------------------------------------------------- reference
@FAST
@given(studies())
def test_reference_forms_agree_with_the_protocols_correction(study):
    ref = reference(study)
    v = ref.videos
    np.testing.assert_allclose(v["none"], v["raw"], atol=1e-12)
    for s, step in enumerate(study.protocol.steps, start=1):
        c = step.scoring.correction
        form = {"linear": f"linear_{getattr(c, 'form', '')}"}.get(c.kind, c.kind)
        rows = v[v["step"] == s]
        np.testing.assert_allclose(rows[form], rows["score"], atol=1e-12)


def test_reference_of_a_given_log_and_its_errors():
    study = _first(studies(), lambda s: len(s.trials) > 4)
    given_ = study_from_trials(study.log, study.protocol)
    pd.testing.assert_frame_equal(reference(given_).scores, reference(study).scores)
    with pytest.raises(UserError, match="needs its protocol"):
        reference(study.trials)
    with pytest.raises(UserError, match="unknown law"):
        check_law("no_such_law", reference_scorer(), study)


# --------------------------------------------------------------------------- correct scorers
def _tally(runs: dict, checks: list[Check]) -> None:
    for c in checks:
        runs.setdefault(c.name, [0, 0])[c.applicable] += 1


def test_memsim_passes_the_reference_and_every_law():
    runs: dict = {}

    @settings(FAST, max_examples=15, database=None)
    @given(studies(), st.integers(0, 2**32 - 1))
    def check(study, seed):
        _tally(runs, assert_scorer(reference_scorer(), study, seed=seed))

    check()
    # every law had something to test on some of the drawn studies
    assert set(runs) == {"reference", *LAWS}
    assert all(applicable > 0 for _, applicable in runs.values()), runs


def test_plain_pandas_scorer_passes_the_reference_and_every_law():
    runs: dict = {}

    @settings(FAST, max_examples=12, database=None)
    @given(LAB_STUDIES)
    def check(study):
        _tally(runs, assert_scorer(lab(labscore.score), study))

    check()
    assert all(applicable > 0 for _, applicable in runs.values()), runs


# --------------------------------------------------------------------------- the three bugs
def _search(scorer) -> list:
    """Run hypothesis with its default example budget; every failing study, in order (the
    last one is hypothesis' final replay of its shrunk example)."""
    failing, calls = [], [0]

    @settings(
        max_examples=settings.get_profile("default").max_examples,  # 100: the default budget
        database=None,
        derandomize=True,
        deadline=None,
        phases=[p for p in Phase if p is not Phase.explain],
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(LAB_STUDIES)
    def search(study):
        calls[0] += 1
        check = check_reference(scorer, study)
        if not check.ok:
            failing.append((calls[0], study, check))
            raise AssertionError(check.message)

    with pytest.raises(AssertionError):
        search()
    return failing


@pytest.mark.slow
@pytest.mark.parametrize("bug", list(labscore_bugs.BUGGY))
def test_each_bug_found_in_the_default_budget_and_shrunk_small(bug):
    failing = _search(lab(labscore_bugs.BUGGY[bug]))
    first_call = failing[0][0]
    assert first_call <= settings.get_profile("default").max_examples
    _, shrunk, check = failing[-1]
    assert shrunk.n_participants <= 4 and shrunk.n_videos <= 6, shrunk
    assert check.name == "reference" and not check.ok
    assert protocol_violations(shrunk.trials, shrunk.protocol) == []
    # memsim's own scorer has no such failure on the same log
    assert check_reference(reference_scorer(LAB_COLUMNS), shrunk).ok


def _logs_in(text: str) -> list[list[list[str]]]:
    """The log tables printed in a text (pytest's "E" prefixes dropped): rows of 11 cells."""
    logs, current = [], None
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["E"]:
            words = words[1:]
        if "worker_id" in words and "clip" in words:
            current = []
            logs.append(current)
        elif current is not None and len(words) == 11 and words[0].isdigit():
            current.append(words)
        else:
            current = None
    return logs


def test_docs_show_shrunk_logs_of_at_most_4_participants_and_6_videos():
    logs = _logs_in((ROOT / "docs" / "testing.md").read_text())
    assert len(logs) >= 3
    for rows in logs:
        assert rows
        assert len({r[0] for r in rows}) <= 4 and len({r[3] for r in rows}) <= 6, rows


# --------------------------------------------------------------------------- the laws bite
def _first_only(log, protocol):
    """Keeps the first annotation of each video in log order: order-dependent."""
    t = log[log["repeat"] & (log["role"] == "target")].drop_duplicates(["step", "video"])
    return _as_scores(t, protocol)


def _last_only(log, protocol):
    t = log[log["repeat"] & (log["role"] == "target")]
    return _as_scores(t.drop_duplicates(["step", "video"], keep="last"), protocol)


def _no_test_accounts(log, protocol):
    """Raw scores without participants of ids 1,000,000 and above (taken for test accounts)."""
    t = log[log["repeat"] & (log["role"] == "target") & (log["participant"] < 1_000_000)]
    return _as_scores(t, protocol)


def _fixed_slope(log, protocol):
    """A lag slope copied from elsewhere (-0.05 per position) instead of fitted."""
    t = log[log["repeat"] & (log["role"] == "target")]
    out = _as_scores(t, protocol)
    for s, step in enumerate(protocol.steps, start=1):
        ref = getattr(step.scoring.correction, "reference_lag", None)
        if ref is not None:
            lag = t[t["step"] == s].groupby("video")["lag"].mean()
            col = step.scoring.column
            shift = -0.05 * (ref - out["video"].map(lag))
            out[col] = (out[col] + shift.fillna(0)).clip(0, 1)
    return out


def _unclipped(log, protocol):
    """Raw hit rate plus a fixed shift: leaves [0, 1]."""
    out = reference_scorer()(log, protocol)
    for step in protocol.steps:
        out[step.scoring.column] = out[step.scoring.column] + 0.1
    return out


def _as_scores(tests, protocol):
    cols = {}
    for s, step in enumerate(protocol.steps, start=1):
        mine = tests[tests["step"] == s]
        cols[step.scoring.column] = mine.groupby("video")["response"].mean()
    return pd.DataFrame(cols).rename_axis("video").reset_index()


@pytest.mark.parametrize(
    "scorer, law, columns",
    [
        (_first_only, "row_order", None),
        (_no_test_accounts, "relabel", None),
        (lab(labscore_bugs.score_filter_after_scoring), "drop_filtered", LAB_COLUMNS),
        (_fixed_slope, "zero_slope", None),
        (_unclipped, "unit_interval", None),
        (_last_only, "toward_truth", None),
    ],
)
def test_each_law_catches_a_scorer_that_breaks_it(scorer, law, columns):
    strat = studies(protocols(corrections=labscore.CORRECTIONS), columns=columns)
    failed = []

    @settings(
        max_examples=100, database=None, derandomize=True, deadline=None, phases=[Phase.generate]
    )
    @given(strat)
    def search(study):
        check = check_law(law, scorer, study)
        if not check.ok:
            failed.append(check)
        assert check.ok, check.message

    with pytest.raises(AssertionError):
        search()
    assert failed and failed[0].name == law and failed[0].message


def _bug3_log():
    """Bug 3's shrunk log of docs/testing.md: participant 0 misses her one target and the
    hit-rate filter drops her, but her miss still sets the lag slope of the buggy scorer."""
    from memsim.design.protocol import protocol_from_mapping

    protocol = protocol_from_mapping(
        {
            "name": "drawn",
            "stimuli": {"kind": "video", "count": 7, "duration_s": 7.0, "gap_s": 1.0},
            "steps": [
                {
                    "name": "short-term",
                    "length": 5,
                    "items": [
                        {"role": "target", "count": 1, "repeat_lag": [1, 2]},
                        {"role": "vigilance", "count": 1, "repeat_lag": [1, 1]},
                        {"role": "filler", "count": 1},
                    ],
                    "filters": {"min_hit_rate": 0.15},
                    "scoring": {
                        "column": "short-term_memorability",
                        "correction": {"kind": "linear", "reference_lag": 1},
                    },
                },
            ],
            "selection": {"kind": "uniform"},
            "campaign": {
                "arrivals": {"kind": "poisson", "rate_per_h": 60},
                "stop": {"kind": "participants", "count": 10},
            },
        }
    )
    #        position: 0  1  2  3  4
    video = [[1, 1, 0, 0, 2], [1, 1, 0, 2, 0]]
    role = [["vigilance"] * 2 + ["target"] * 2 + ["filler"]] + [
        ["vigilance"] * 2 + ["target", "filler", "target"]
    ]
    lag = [[-1, 1, -1, 1, -1], [-1, 1, -1, -1, 2]]
    pressed = [[False] * 5, [False] * 4 + [True]]
    rows = []
    for p in range(2):
        for i in range(5):
            rep = lag[p][i] > 0
            rows.append(
                {
                    "worker_id": p,
                    "session": 1,
                    "trial": i,
                    "clip": video[p][i],
                    "trial_type": role[p][i],
                    "seen_before": rep,
                    "lag": lag[p][i],
                    "delay": 8.0 * lag[p][i] if rep else np.nan,
                    "key_pressed": pressed[p][i],
                    "rt": 5.04 if pressed[p][i] else np.nan,
                    "onset": 600.0 * p + 8.0 * i,
                }
            )
    return study_from_trials(pd.DataFrame(rows), protocol, columns=LAB_COLUMNS)


def test_assert_scorer_lists_every_failed_check():
    bug = lab(labscore_bugs.score_filter_after_scoring)
    study = _bug3_log()
    assert protocol_violations(study.trials, study.protocol) == []
    checks = check_scorer(bug, study)
    failed = [c.name for c in checks if not c.ok]
    assert failed == ["reference", "drop_filtered"]
    with pytest.raises(ScorerMismatch) as err:
        assert_scorer(bug, study)
    assert "step 1 video 0: scored 0, reference 1" in str(err.value)
    assert "drop_filtered: removing the sessions" in str(err.value)
    assert all(c.message == "" for c in checks if c.ok)
    assert_scorer(lab(labscore.score), study)  # the correct scorer: nothing to report


def test_example_scorer_shifts_where_the_line_has_no_ratio():
    """The example scorer follows memsim's linear ratio rule: a clip whose fitted line is at or
    below 0 at its mean lag is shifted (a log hypothesis once drew: raw 0 scored -0 against the
    reference's 0.17)."""
    tests = pd.DataFrame(
        {"clip": [0, 0, 1, 1], "key_pressed": [False, False, True, False], "lag": [4, 4, 1, 1]}
    )
    line = pd.DataFrame({"a": 0.2, "b": -0.1}, index=tests.index)
    got = labscore.clip_scores(tests, line, {"correction": "linear-ratio", "reference_lag": 1})
    # clip 0: the line is -0.2 at lag 4: shifted, 0 + (-0.1)(1 - 4); clip 1: at lag 1, ratio 1
    assert got["score"].tolist() == pytest.approx([0.3, 0.5])
