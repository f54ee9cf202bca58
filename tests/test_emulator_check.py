"""calibration/emulator_check.py: how well an inference's emulated likelihood fits, and the
coverage of the flow alone and of the product on held-out draws (docs/inference-record.md, "Step 2's
demand as a nuisance")."""

from __future__ import annotations

import numpy as np
import pytest
from repo_scripts import load_script


@pytest.fixture(scope="module")
def script():
    pytest.importorskip("sbi")
    return load_script("calibration/emulator_check.py")


def test_coverage_of_exact_posteriors_is_nominal(script):
    """theta ~ N(0, 1), x = theta + N(0, 1): the exact posterior N(x / 2, 1 / 2) covers half of
    the truths with its 50 % intervals and nine in ten with its 90 % ones; draws twice as wide
    cover more."""
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(2000, 2))
    x = truth + rng.normal(size=truth.shape)
    exact = x / 2 + np.sqrt(0.5) * rng.normal(size=(200, *truth.shape))
    c50, c90 = script.coverage(exact, truth)
    np.testing.assert_allclose(c50, 0.5, atol=0.04)
    np.testing.assert_allclose(c90, 0.9, atol=0.025)
    wide50, wide90 = script.coverage(x / 2 + 2 * (exact - x / 2), truth)
    assert (wide50 > 0.75).all() and (wide90 > 0.98).all()


def test_mutual_information_of_gaussians_and_of_shuffled_rows(script):
    """Two pairs of columns with correlations 0.6 and 0.3 pair by pair: the Gaussian mutual
    information is -1/2 (log(1 - 0.36) + log(1 - 0.09)) = 0.270 nats; independent columns give
    about (p q) / (2 n), and the line reads the first above its shuffled level, the second
    inside it."""
    rng = np.random.default_rng(1)
    n = 20_000
    a = rng.normal(size=(n, 2))
    rho = np.array([0.6, 0.3])
    b = a * rho + rng.normal(size=(n, 2)) * np.sqrt(1 - rho**2)
    assert abs(script.mutual_information(a, b) - 0.270) < 0.02
    assert script.mutual_information(a, rng.normal(size=(n, 2))) < 0.002
    small = slice(0, 400)
    line = script.independence_line("toy", a[small], b[small], ["a0", "a1"], ["b0", "b1"])
    mi = float(line.split("): ")[1].split(" nats")[0])
    null_hi = float(line.split("[")[1].split("]")[0].split(", ")[1])
    largest = float(line.split("largest correlation ")[1].split(" ")[0])
    assert mi > null_hi and abs(largest - 0.6) < 0.1 and "(a0 ~ b0)" in line
    line = script.independence_line("toy", a[small], rng.normal(size=(400, 2)), ["a0", "a1"],
                                    ["c0", "c1"])  # fmt: skip
    mi = float(line.split("): ")[1].split(" nats")[0])
    null_lo, null_hi = (float(v) for v in line.split("[")[1].split("]")[0].split(", "))
    assert null_lo - 0.01 < mi < null_hi + 0.01


def _toy(rng, n):
    u = rng.random((n, 2))
    x = (
        np.stack([u[:, 0] * 4 - 2, u[:, 1] * 4 - 2, (u[:, 0] + u[:, 1]) * 2 - 2], axis=1)
        + rng.normal(size=(n, 3)) * 0.3
    )
    return u, x


def test_report_on_a_toy_inference_folder(tmp_path, script, capsys):
    """A folder laid out as memsim infer writes it (estimator.pt with an emulator, the store's
    chunks): one residual line per stored stream, the residuals of new simulations near the
    number of emulated statistics, and the coverage lines of the held-out draws."""
    from memsim.fit import infer as nfi
    from memsim.fit.calibrate import Moment
    from memsim.fit.emulator import fit_emulator

    prior = nfi.Prior(
        "toy", "videomem", (nfi.PriorParam("a.a", 0.0, 1.0), nfi.PriorParam("b.b", 0.0, 1.0))
    )
    rng = np.random.default_rng(0)
    u, x = _toy(rng, 800)
    moments = [Moment(n, ("toy", n), 0.0, 1.0) for n in ("first", "second", "sum")]
    errors = np.array([""] * len(u))
    flow = nfi.train(u, x[:, :2], errors, prior, moments[:2], estimator="maf", max_epochs=5)
    emu = fit_emulator(nfi.to_logit(u), x[:, 2:], [2], ["sum"], seed=0, max_epochs=40)
    nfi.with_emulator(flow, emu, moments).save(tmp_path / "estimator.pt")
    store = nfi.SimulationStore(tmp_path / "simulations", {"toy": 1})
    hu, hx = _toy(rng, 300)
    for stream, (su, sx) in ((nfi.TRAIN, (u, x)), (nfi.HELDOUT, (hu, hx))):
        for start in range(0, len(su), 250):  # chunks, as memsim infer writes them
            part = slice(start, start + 250)
            store.write(
                stream,
                {"start": start, "u": su[part], "x": sx[part], "seeds": np.arange(len(su))[part],
                 "errors": [""] * len(su[part])},
            )  # fmt: skip

    assert script.main([str(tmp_path), "--draws", "30", "--steps", "20,40"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{tmp_path}: 1 statistics emulated"
    assert out[1].startswith("  prior's simulations (800): squared Mahalanobis residual mean ")
    assert out[2].startswith("  prior's held-out (300): squared Mahalanobis residual mean ")
    held_mean = float(out[2].split("mean ")[1].split(",")[0])
    assert 0.7 < held_mean < 1.4  # one statistic: 1 where the emulator's variance fits
    assert out[3] == "coverage on the first 30 of the prior's held-out:"
    assert out[4].startswith("  flow alone: ") and "widest at 50 %: " in out[4]
    assert out[5].startswith("  flow x emulator, 20 steps (acceptance ")
    assert out[6].startswith("  flow x emulator, 40 steps (acceptance ")
    assert len(out) == 7
    argv = [str(tmp_path), "--draws", "30", "--steps", "20", "--start", "tempered"]
    assert script.main(argv) == 0
    tempered = capsys.readouterr().out.splitlines()
    assert tempered[:5] == out[:5]  # the same residuals and flow; only the chains start elsewhere
    assert tempered[5].startswith("  flow x emulator, 20 steps, tempered start (acceptance ")
    assert script.main([str(tmp_path), "--draws", "30", "--steps", "20", "--independence"]) == 0
    more = capsys.readouterr().out.splitlines()
    assert more[:6] == out[:6]
    assert more[6] == (
        "independence of the 1 emulated statistics and the flow's 2 given the parameters "
        "(their residuals' Gaussian mutual information):"
    )
    assert more[7].startswith("  prior's held-out (300): ") and "(sum ~ " in more[7]
    assert len(more) == 8


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--steps", "4x"], "--steps: '4x' is not a comma-separated list of integers"),
        (["--draws", "0"], "--draws must be at least 1"),
        (["--start", "prior"], "invalid choice: 'prior'"),
    ],
)
def test_usage_errors_are_one_line(tmp_path, script, capsys, argv, message):
    (tmp_path / "estimator.pt").write_bytes(b"")
    with pytest.raises(SystemExit) as exc:
        script.main([str(tmp_path), *argv])
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_a_folder_without_an_estimator_is_a_usage_error(tmp_path, script, capsys):
    with pytest.raises(SystemExit) as exc:
        script.main([str(tmp_path)])
    assert exc.value.code == 2 and "no estimator.pt" in capsys.readouterr().err


def test_a_store_loads_every_simulation_up_to_a_missing_chunk(tmp_path):
    """``SimulationStore.load(stream)`` with no count: every chunk from the first to the first
    missing one; a stream with none is a one-line error."""
    from memsim.errors import UserError
    from memsim.fit import infer as nfi

    store = nfi.SimulationStore(tmp_path, {"toy": 1})
    for start in (0, 25, 75):  # 50-74 missing
        store.write(
            nfi.TRAIN,
            {"start": start, "u": np.full((25, 2), start), "x": np.zeros((25, 3)),
             "seeds": np.arange(start, start + 25), "errors": [""] * 25},
        )  # fmt: skip
    got = store.load(nfi.TRAIN)
    np.testing.assert_array_equal(got["seeds"], np.arange(50))
    np.testing.assert_array_equal(store.load(nfi.TRAIN, 30)["seeds"], np.arange(30))
    with pytest.raises(UserError, match="only 50 of 60 simulations of stream 0"):
        store.load(nfi.TRAIN, 60)
    with pytest.raises(UserError, match="no simulations of stream 1"):
        store.load(nfi.HELDOUT)
