"""The emulated likelihood (memsim.fit.emulator): the Gaussian emulator, the Metropolis sampler,
and the estimator that multiplies a flow by an emulator."""

from __future__ import annotations

import numpy as np
import pytest

from memsim.fit.emulator import Emulator, fit_emulator, metropolis


def _gaussian_target(means: np.ndarray, sds: np.ndarray):
    """Independent Gaussians, one mean and sd vector per group: ``(G, C, d) -> (G, C)``."""

    def log_target(t):
        z = (t - means[:, None]) / sds[:, None]
        return -0.5 * (z**2).sum(axis=-1)

    return log_target


def test_metropolis_draws_each_groups_target_from_a_wide_start():
    """Three targets at once, started far too wide: the second half's draws have each target's
    mean and sd (within Monte Carlo error of 4 x 400 correlated draws), and the same seed gives
    the same draws."""
    rng = np.random.default_rng(1)
    means = np.array([[0.0, 0.0, 0.0], [3.0, -2.0, 1.0], [-1.0, 5.0, 0.5]])
    sds = np.array([[1.0, 1.0, 1.0], [0.2, 2.0, 0.5], [0.05, 0.05, 3.0]])
    init = rng.normal(0.0, 6.0, size=(3, 400, 3))
    target = _gaussian_target(means, sds)
    draws, acceptance = metropolis(target, init, steps=400, keep=4, seed=7)
    assert draws.shape == (3, 1600, 3)
    assert 0.15 < acceptance < 0.35  # adapted towards 0.25
    assert (np.abs(draws.mean(axis=1) - means) / sds).max() < 0.15
    np.testing.assert_allclose(draws.std(axis=1), sds, rtol=0.15)
    again, _ = metropolis(target, init, steps=400, keep=4, seed=7)
    np.testing.assert_array_equal(draws, again)
    other, _ = metropolis(target, init, steps=400, keep=4, seed=8)
    assert not np.array_equal(draws, other)


def test_metropolis_leaves_a_heavy_tailed_target_where_it_started():
    """Chains started from exact draws of a heavy-tailed target (Student's t, 3 degrees of
    freedom) stay distributed as the target: the draws' 90 % ranges match those of as many
    independent draws. A proposal tuned on each chain's own states pulls them in (by about
    4 % in 21 dimensions); each chain's is learned from the others."""
    rng = np.random.default_rng(0)
    groups, chains, d = 100, 50, 10

    def student3(t):
        return (-2.0 * np.log1p(t**2 / 3)).sum(axis=-1)

    def ranges(s):
        q = np.quantile(s, [0.05, 0.95], axis=1)
        return (q[1] - q[0]).mean()

    iid = ranges(rng.standard_t(3, (groups, 200, d)))
    draws, acceptance = metropolis(student3, rng.standard_t(3, (groups, chains, d)), seed=0)
    assert 0.2 < acceptance < 0.3
    assert 0.98 < ranges(draws) / iid < 1.03


def test_metropolis_puts_the_chains_last_states_first_and_never_accepts_nan():
    """A flat target takes every proposal, so the states are the proposals: the first ``C``
    draws are the chains' last states, then those of the step ``keep`` spaces back. A
    proposal whose density is NaN is never taken."""
    init = np.random.default_rng(0).normal(size=(2, 5, 3))
    seen = []

    def flat(t):
        seen.append(t.copy())
        return np.zeros(t.shape[:2])

    draws, acceptance = metropolis(flat, init, steps=8, keep=2, seed=0)
    assert draws.shape == (2, 10, 3) and acceptance == 1.0
    np.testing.assert_array_equal(draws[:, :5], seen[8])  # seen[k]: the proposal of step k
    np.testing.assert_array_equal(draws[:, 5:], seen[6])

    def fenced(t):
        lp = -0.5 * (t**2).sum(axis=-1)
        return np.where(t[..., 0] > 0.5, np.nan, lp)

    start = np.full((1, 50, 2), -1.0)
    inside, _ = metropolis(fenced, start, steps=40, keep=4, seed=1)
    assert (inside[..., 0] <= 0.5).all() and (inside[..., 0] > -1.0).any()
    with pytest.raises(ValueError):
        metropolis(fenced, start, steps=2)


def test_emulator_learns_a_known_mean_and_the_noise_around_it(tmp_path):
    """Statistics with a known mean function and noise: the emulator's residual spread is the
    noise's (the mean is learned), its log likelihood is the Gaussian's, and a dump reads back
    to the same emulator."""
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    t = rng.normal(size=(3000, 3))
    mean = np.stack([np.sin(t[:, 0]) + t[:, 1], t[:, 2] ** 2 / 2], axis=1)
    noise = np.array([0.1, 0.3])
    y = mean + rng.normal(size=mean.shape) * noise
    emu = fit_emulator(t, y, [4, 7], ["a", "b"], seed=0, max_epochs=200)
    assert emu.columns == (4, 7) and emu.names == ("a", "b")
    np.testing.assert_allclose(emu.info["residual_sd"], noise, rtol=0.25)
    probe = rng.normal(size=(200, 3))
    truth = np.stack([np.sin(probe[:, 0]) + probe[:, 1], probe[:, 2] ** 2 / 2], axis=1)
    err = np.abs(emu.mean(probe) - truth)
    assert np.median(err[:, 0]) < 0.1 and np.median(err[:, 1]) < 0.15
    # the log likelihood is the quadratic form of the residual's covariance
    r = emu.mean(probe[:3]) - y[:3]
    expect = -0.5 * np.einsum("ij,jk,ik->i", r, emu.precision, r)
    np.testing.assert_allclose(emu.log_lik(probe[:3], y[:3]), expect)
    import torch

    torch.save(emu.dump(), tmp_path / "emu.pt")
    back = Emulator.from_dump(torch.load(tmp_path / "emu.pt", weights_only=False))
    np.testing.assert_array_equal(back.mean(probe), emu.mean(probe))
    assert back.info == emu.info
    again = fit_emulator(t, y, [4, 7], ["a", "b"], seed=0, max_epochs=200)
    np.testing.assert_array_equal(again.mean(probe), emu.mean(probe))


def test_an_estimator_with_an_emulator_multiplies_flow_and_likelihood(tmp_path):
    """The product posterior: log_prob is the flow's on the other statistics plus the emulator's
    log likelihood; draws come by Metropolis from the flow's draws, the same for the same seed,
    and a saved estimator reads back to the same draws."""
    pytest.importorskip("sbi")
    from memsim.fit import infer as nfi
    from memsim.fit.calibrate import Moment

    prior = nfi.Prior(
        "toy", "videomem", (nfi.PriorParam("a", 0.0, 1.0), nfi.PriorParam("b", 0.0, 1.0))
    )
    rng = np.random.default_rng(0)
    u = rng.random((600, 2))
    x = (
        np.stack([u[:, 0] * 4 - 2, u[:, 1] * 4 - 2, (u[:, 0] + u[:, 1]) * 2 - 2], axis=1)
        + rng.normal(size=(600, 3)) * 0.3
    )
    moments = [Moment(n, ("toy", n), 0.0, 1.0) for n in ("first", "second", "sum")]
    errors = np.array([""] * 600)
    flow = nfi.train(u, x[:, :2], errors, prior, moments[:2], estimator="maf", max_epochs=5)
    emu = fit_emulator(nfi.to_logit(u), x[:, 2:], [2], ["sum"], seed=0, max_epochs=30)
    est = nfi.with_emulator(flow, emu, moments)
    assert est.flow_columns == [0, 1] and est.info["emulated"] == ["sum"]
    obs = np.array([0.5, -0.5, 1.5])
    probe = rng.random((5, 2))
    expect = flow.log_prob(probe, obs[:2]) + emu.log_lik(nfi.to_logit(probe), obs[2:])
    np.testing.assert_allclose(est.log_prob(probe, obs), expect, rtol=1e-6)
    draws, acceptance = est.mcmc(40, np.stack([obs, -obs]), seed=3)
    assert draws.shape == (40, 2, 2) and 0 < acceptance < 1
    assert ((draws > 0) & (draws < 1)).all()
    np.testing.assert_array_equal(est.sample_batched(40, np.stack([obs, -obs]), seed=3), draws)
    path = tmp_path / "est.pt"
    est.save(path)
    back = nfi.Estimator.load(path)
    assert back.emulator is not None and back.flow_columns == [0, 1]
    np.testing.assert_array_equal(back.sample(8, obs, seed=1), est.sample(8, obs, seed=1))
