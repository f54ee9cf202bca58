"""calibration/pilot.py: a pilot's log merged with a campaign's (docs/protocols.md, "Counts and
scores"): the pilot's players after the campaign's, its sessions before, its videos the
campaign's own; and `fit_report`'s ``simulate`` hook that runs it."""

from __future__ import annotations

import numpy as np
from repo_scripts import load_script

from memsim.api import load_params, load_protocol
from memsim.sim.simulate import prepare, simulate_arrays


def test_a_pilot_is_played_on_the_campaigns_videos_and_merged_before_it():
    script = load_script("calibration/pilot.py")
    main = load_protocol("videomem")
    pilot = script.pilot_protocol(main, 250, 20, 0.2, [80, 120])
    assert pilot.stimuli.count == 250 and pilot.selection.demand is None
    assert list(pilot.steps[0].items[0].repeat_lag) == [80, 120]
    params = load_params("videomem")
    prepared = prepare(main, 0.05)
    campaign = simulate_arrays(prepared, params, 3)
    extra = simulate_arrays(prepare(pilot, 1.0), params, 10_003, stimuli_seed=3)
    assert extra.trials["video"].max() < 250
    both = script.merged_trials(campaign.trials, extra.trials, gap_h=96.0)
    n = len(campaign.trials["video"])
    assert all(len(c) == n + len(extra.trials["video"]) for c in both.values())
    assert all(both[k].dtype == campaign.trials[k].dtype for k in both)
    tail = {k: c[n:] for k, c in both.items()}
    assert tail["participant"].min() > campaign.trials["participant"].max()
    assert np.all(np.diff(both["participant"]) >= 0)  # participant order holds
    gap = campaign.trials["onset_s"].min() - tail["onset_s"].max()
    assert abs(gap - 96.0 * 3600.0) < 1e-6
    # the pilot's own sessions, shifted as one: the same delays between them
    np.testing.assert_allclose(np.diff(tail["onset_s"]), np.diff(extra.trials["onset_s"]))
    # the simulate hook: the campaign's bytes, then the pilot's, seed 10,000 + seed
    hook = script.with_pilot(pilot)
    made = hook(prepared, params, 3)
    for k in both:
        np.testing.assert_array_equal(made.trials[k], both[k])
    assert "with_pilot(250 stimuli, 20 players" in made_name(hook)


def made_name(fn) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"
