"""``campaign.pilot``: a pilot before the campaign, on the campaign's first stimuli, its players
numbered after the campaign's and its log scored with it (docs/protocols.md,
"campaign.pilot")."""

from __future__ import annotations

import numpy as np
import pytest

from memsim.analysis.scoring import score
from memsim.api import load_params, load_protocol
from memsim.errors import UserError
from memsim.sim.population import draw_videos
from memsim.sim.simulate import (
    pilot_seed,
    prepare,
    simulate,
    simulate_arrays,
    simulate_stepwise,
)

PILOT = {"participants": 400, "stimuli": 250, "repeat_lag": [80, 120], "return_share": 0.25}
SCALE = 0.05


@pytest.fixture(scope="module")
def protocol():
    return load_protocol("videomem").updated({"campaign.pilot": PILOT})


@pytest.fixture(scope="module")
def params():
    return load_params("videomem")


def test_the_pilot_plays_the_protocol_on_its_first_stimuli_without_demand(protocol):
    pilot = protocol.pilot_protocol()
    assert pilot.stimuli.count == 250 and pilot.selection.pool == 250
    assert pilot.selection.demand is None and pilot.selection.later_pool is None
    assert pilot.selection.counts == "assigned"
    assert pilot.campaign.stop.kind == "participants" and pilot.campaign.stop.count == 400
    assert pilot.campaign.top_up is None and pilot.campaign.pilot is None
    targets = [g for g in pilot.steps[0].items if g.role == "target"]
    assert [list(g.repeat_lag) for g in targets] == [[80, 120]]
    vigilance = [g for g in pilot.steps[0].items if g.role == "vigilance"]
    assert [list(g.repeat_lag) for g in vigilance] == [[3, 6]]  # the protocol's
    assert pilot.steps[1].max_share == 0.25
    assert all(g.source.demand is None for g in pilot.steps[1].items if g.role == "target")
    assert load_protocol("videomem").updated({"campaign.pilot": None}).pilot_protocol() is None


@pytest.mark.parametrize(
    "change, message",
    [
        ({"stimuli": 20_000}, "campaign.pilot.stimuli: 20000 is more than the campaign's 10000"),
        ({"stimuli": 100}, "campaign.pilot: the pilot's protocol is not valid: stimuli.count: "),
        ({"participants": 0}, "campaign.pilot.participants:"),
        ({"return_share": 1.5}, "campaign.pilot.return_share:"),
        ({"gap_h": -1}, "campaign.pilot.gap_h:"),
        ({"lags": [1, 2]}, "campaign.pilot.lags: unknown field"),
    ],
)
def test_a_bad_pilot_is_one_line_naming_its_field(change, message):
    with pytest.raises(UserError) as err:
        load_protocol("videomem").updated({"campaign.pilot": {**PILOT, **change}})
    text = str(err.value)
    assert message in text and "\n" not in text


def test_a_one_step_protocol_has_no_pilot_return_share():
    with pytest.raises(UserError, match=r"campaign.pilot.return_share: the protocol has no later"):
        load_protocol("memento10k").updated(
            {"campaign.pilot": {"participants": 10, "stimuli": 500, "return_share": 0.5}}
        )


def test_the_pilot_scales_with_the_campaign(protocol):
    prepared = prepare(protocol, SCALE)
    p = prepared.protocol.campaign.pilot
    assert p.participants == 20 and p.stimuli == prepared.pilot.protocol.stimuli.count
    assert p.stimuli <= prepared.protocol.stimuli.count
    assert p.stimuli >= sum(s.n_new for s in protocol.steps) + 1  # a session still fits


def test_the_campaign_and_its_pilot_make_one_log(protocol, params):
    seed = 3
    both = simulate_arrays(prepare(protocol, SCALE), params, seed)
    without = protocol.updated({"campaign.pilot": None})
    alone = simulate_arrays(prepare(without, SCALE), params, seed)
    pilot_prepared = prepare(protocol, SCALE).pilot
    pilot = simulate_arrays(pilot_prepared, params, pilot_seed(seed), stimuli_seed=seed)
    n = alone.trials["video"].size
    n_pilot = pilot.trials["video"].size
    assert both.trials["video"].size == n + n_pilot
    # the campaign's rows first, as played without a pilot, their onsets moved as one
    shift = both.pilot.shift_s
    assert shift == pytest.approx(pilot.trials["onset_s"].max() + 96 * 3600)
    for name, column in alone.trials.items():
        if name == "onset_s":
            np.testing.assert_allclose(both.trials[name][:n], column + shift, rtol=0, atol=1e-6)
        else:
            np.testing.assert_array_equal(both.trials[name][:n], column)
        assert both.trials[name].dtype == column.dtype
    # then the pilot's, its players numbered after the campaign's (top-up included)
    np.testing.assert_array_equal(
        both.trials["participant"][n:], pilot.trials["participant"] + alone.n_participants
    )
    for name in ("video", "step", "role", "response", "rt_s", "lag", "delay_s"):
        np.testing.assert_array_equal(both.trials[name][n:], pilot.trials[name])
    np.testing.assert_array_equal(both.trials["onset_s"][n:], pilot.trials["onset_s"])
    assert np.all(np.diff(both.trials["participant"]) >= 0)  # participant order holds
    assert both.trials["onset_s"].min() >= 0.0
    # on the campaign's own first stimuli: the same videos, not new draws
    assert both.trials["video"][n:].max() < both.pilot.stimuli
    ours = draw_videos(params, both.pilot.stimuli, seed)
    np.testing.assert_array_equal(ours.m, both.videos.m[: both.pilot.stimuli])
    assert both.n_participants == alone.n_participants + pilot.n_participants
    assert both.participants.ability.size == both.n_participants
    np.testing.assert_array_equal(
        both.participants.ability[alone.n_participants :], pilot.participants.ability[:20]
    )
    assert both.pilot.participants == 20 and len(both.pilot.later) == 1
    assert 0 < both.pilot.later[0] <= 5  # a quarter of 20 at most
    # a valid log that scores as one
    scored = score(both.to_simulation().trials, protocol)
    assert scored.scores["short-term_memorability"].notna().all()


def test_both_engines_give_the_same_bytes_with_a_pilot(protocol, params):
    prepared = prepare(protocol, SCALE)
    fused = simulate_arrays(prepared, params, 5)
    stepwise = simulate_stepwise(prepared, params, 5)
    for name, column in fused.trials.items():
        np.testing.assert_array_equal(column, stepwise.trials[name])
    assert fused.pilot == stepwise.pilot


def test_a_pilot_changes_nothing_of_the_seed_stream_and_reaches_the_tables(protocol, params):
    sim = simulate(protocol, params, seed=7, scale=SCALE)
    again = simulate(protocol, params, seed=7, scale=SCALE)
    assert sim.trials.equals(again.trials)
    assert len(sim.participants) == sim.trials.participant.nunique()
    assert sim.pilot.seed == pilot_seed(7) != pilot_seed(8)
    assert "pilot: 20 participants on the first" in sim.pilot.describe()


def test_fit_pilot_counts_each_row_within_the_fit_reports_tolerances():
    from repo_scripts import load_script

    script = load_script("calibration/fit_pilot.py")
    # per seed: ST count KS, min, 95th, mean; LT count KS, min, 95th; ST score KS
    rows = np.array(
        [
            [0.030, 30, 54.0, 36.5, 0.020, 9, 20.0, 0.020],
            [0.060, 28, 58.0, 36.9, 0.060, 7, 17.0, 0.070],
        ]
    )
    line = script.line(rows)
    assert line.startswith("ST count KS 0.045 ± 0.015 (1/2), min 1/2, 95th 56.0 ± 2.0 (1/2)")
    assert "LT count KS 0.040 (1/2), min 1/2, 95th 18.5 (1/2)" in line
    assert line.endswith("ST score KS 0.045 (1/2)")
