"""Golden numbers: a fixed seed, protocol and parameter file give these, bit for bit.

The parameters are a frozen copy of the first hand-set file (tests/data/params-golden.yaml)
and the protocol a frozen copy of the first VideoMem protocol (tests/data/protocol-golden.yaml:
10,450 participants, no demand), so recalibrating the shipped set or editing the shipped
protocol does not move them. Anything that changes the random
draws (the kernel's draw order, the sequence generator, the campaign) changes them:
regenerate deliberately, with the snippet in this file's history, and say why in the commit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from memsim.analysis.consistency import summarise
from memsim.design.protocol import load_protocol
from memsim.sim.params import load_params
from memsim.sim.simulate import simulate

TESTS_DATA = Path(__file__).resolve().parent / "data"


def test_videomem_golden_numbers():
    protocol = load_protocol(TESTS_DATA / "protocol-golden.yaml")
    params = load_params(TESTS_DATA / "params-golden.yaml")
    tr = simulate(protocol, params, seed=2026, scale=0.05).trials
    assert len(tr) == 114120
    assert int(tr.response.sum()) == 35188
    assert float(np.nansum(tr.rt_s.to_numpy(np.float64))) == pytest.approx(
        72468.55352705717, rel=1e-12
    )
    assert float(tr.onset_s.sum()) == pytest.approx(5192359807.408419, rel=1e-12)
    s = summarise(tr, protocol, seed=0)
    assert s["participants_kept"] == {"short-term": 463, "long-term": 160}
    assert s["mean_score"]["short-term"] == pytest.approx(0.8280868700990054, rel=1e-12)
    assert s["human_consistency"]["short-term"]["mean"] == pytest.approx(
        0.3674398102241279, rel=1e-12
    )
