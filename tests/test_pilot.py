"""calibration/pilot.py: a pilot's log merged with a campaign's (docs/protocols.md, "Counts and
scores"): the pilot's players after the campaign's, its sessions before, its videos the
campaign's own."""

from __future__ import annotations

import pandas as pd
from repo_scripts import load_script

from memsim.api import load_params, load_protocol
from memsim.sim.simulate import simulate


def test_a_pilot_is_played_on_the_campaigns_videos_and_merged_before_it():
    script = load_script("calibration/pilot.py")
    main = load_protocol("videomem")
    pilot = script.pilot_protocol(main, 250, 20, 0.2, [80, 120])
    assert pilot.stimuli.count == 250 and pilot.selection.demand is None
    assert list(pilot.steps[0].items[0].repeat_lag) == [80, 120]
    params = load_params("videomem")
    campaign = simulate(main, params, seed=3, scale=0.05).trials
    extra = simulate(pilot, params, seed=9, stimuli_seed=3).trials
    assert extra["video"].max() < 250
    both = script.merged_trials(campaign, extra, gap_h=96.0)
    assert len(both) == len(campaign) + len(extra)
    first = both.iloc[: len(extra)]
    assert first["participant"].min() > campaign["participant"].max()
    gap = campaign["onset_s"].min() - first["onset_s"].max()
    assert abs(gap - 96.0 * 3600.0) < 1e-6
    # each pilot player keeps her own sessions: step 2 after step 1, as simulated
    span = first.groupby(["participant", "step"])["onset_s"].agg(["min", "max"]).unstack()
    back = span[("min", 2)].notna()
    assert back.any() and (span[("min", 2)][back] > span[("max", 1)][back]).all()
    shifted = extra["onset_s"] + (first["onset_s"].to_numpy() - extra["onset_s"].to_numpy())[0]
    pd.testing.assert_series_equal(
        shifted.reset_index(drop=True), first["onset_s"].reset_index(drop=True), check_names=False
    )
