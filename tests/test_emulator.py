"""The emulated likelihood (memsim.fit.emulator): the Gaussian emulator, the Metropolis sampler,
and the estimator that multiplies a flow by an emulator."""

from __future__ import annotations

import numpy as np
import pytest

from memsim.fit.emulator import Emulator, _ess, fit_emulator, metropolis, tempered_start


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


def test_tempered_start_weights_the_candidates_by_the_largest_power_the_ess_allows():
    """A wide flow (N(0, 2^2)) and a sharp likelihood (N(1, 0.05^2)): the power is the largest
    that keeps the effective sample size at ``ess * chains`` (a little more drops below it),
    the starting points are candidates, nearly all distinct, between the flow and the product;
    a flat likelihood keeps the power at 1 and draws the candidates evenly; a candidate of
    zero likelihood is never a start; the same seed gives the same starts."""
    rng = np.random.default_rng(0)
    groups, k, chains = 2, 4000, 50
    cands = rng.normal(0.0, 2.0, size=(groups, k, 1))
    ll = -0.5 * ((cands[..., 0] - 1.0) / 0.05) ** 2
    start, beta = tempered_start(cands, ll, chains, ess=4.0, seed=3)
    assert start.shape == (groups, chains, 1) and ((0 < beta) & (beta < 1)).all()
    for g in range(groups):
        assert _ess(beta[g] * ll[g][None])[0] >= 4.0 * chains - 1e-6
        assert _ess((beta[g] + 0.01) * ll[g][None])[0] < 4.0 * chains
        assert np.isin(start[g, :, 0], cands[g, :, 0]).all()
        assert len(np.unique(start[g])) >= 0.8 * chains
    # q * L^beta is Gaussian: precision 1/4 + beta/0.05^2, mean beta/0.05^2 over that precision
    prec = 1 / 4 + beta / 0.05**2
    np.testing.assert_allclose(start[..., 0].mean(1), (beta / 0.05**2) / prec, atol=0.05)
    np.testing.assert_allclose(start[..., 0].std(1), 1 / np.sqrt(prec), rtol=0.3)
    assert (start[..., 0].std(1) > 0.06).all()  # wider than the product's sd, 0.05 nearly
    again, _ = tempered_start(cands, ll, chains, ess=4.0, seed=3)
    np.testing.assert_array_equal(again, start)
    flat, b1 = tempered_start(cands, np.zeros((groups, k)), chains, seed=0)
    np.testing.assert_array_equal(b1, [1.0, 1.0])
    assert abs(flat[..., 0].std() - 2.0) < 0.4
    fenced = np.where(cands[..., 0] > 0, ll, -np.inf)
    inside, _ = tempered_start(cands, fenced, chains, seed=1)
    assert (inside[..., 0] > 0).all()
    with pytest.raises(ValueError):
        tempered_start(cands, np.full((groups, k), -np.inf), chains)


def test_metropolis_from_a_tempered_start_reaches_a_narrow_product():
    """A product 20 times narrower than the flow in 10 dimensions: started from the tempered
    candidates, the draws have the product's means and sds within Monte Carlo error. (On a
    Gaussian the adaptive proposal also finds the product from the flow's own draws; what the
    tempered start gains on VideoMem's posterior is measured in docs/inference.md.)"""
    rng = np.random.default_rng(2)
    groups, chains, d = 20, 50, 10
    flow_sd, lik_sd = 1.0, 0.05
    centre = rng.normal(0.0, 0.5, size=(groups, 1, d))
    prod_sd = 1 / np.sqrt(1 / flow_sd**2 + 1 / lik_sd**2)
    prod_mean = centre[:, 0] * (1 / lik_sd**2) * prod_sd**2

    def log_target(t):
        return -0.5 * ((t / flow_sd) ** 2).sum(-1) - 0.5 * (((t - centre) / lik_sd) ** 2).sum(-1)

    cands = rng.normal(0.0, flow_sd, size=(groups, chains * 32, d))
    ll = -0.5 * (((cands - centre) / lik_sd) ** 2).sum(-1)
    start, _ = tempered_start(cands, ll, chains, seed=0)
    tempered, _ = metropolis(log_target, start, seed=0)
    assert 0.85 < np.median(tempered.std(axis=1)) / prod_sd < 1.15
    assert (np.abs(tempered.mean(axis=1) - prod_mean) / prod_sd).mean() < 0.3


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


def test_a_conditional_emulator_takes_what_the_other_statistics_share(tmp_path):
    """Emulated noise that a given statistic shares (x_c = t1 + 0.8 e + f, x_r = t0 + e): given
    x_r as well as the parameters, the residual spread is the unshared noise's, 0.1, where the
    emulator of the parameters alone is left with sqrt(0.8^2 0.5^2 + 0.1^2) = 0.41; the mean
    is ``t1 + 0.8 (x_r - t0)``; a dump reads back with its given columns; and the given
    statistics are required, and must vary."""
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    t = rng.normal(size=(4000, 2))
    e = rng.normal(size=4000) * 0.5
    xr = t[:, 0] + e
    xc = t[:, 1] + 0.8 * e + rng.normal(size=4000) * 0.1
    plain = fit_emulator(t, xc[:, None], [1], ["c"], seed=0, max_epochs=100)
    cond = fit_emulator(
        t, xc[:, None], [1], ["c"], g=xr[:, None], given=[0], seed=0, max_epochs=100
    )
    assert plain.given == () and cond.given == (0,)
    assert plain.info["residual_sd"][0] == pytest.approx(0.41, rel=0.15)
    assert cond.info["residual_sd"][0] == pytest.approx(0.1, rel=0.3)
    probe, g = rng.normal(size=(200, 2)), rng.normal(size=(200, 1))
    truth = probe[:, 1] + 0.8 * (g[:, 0] - probe[:, 0])
    assert np.median(np.abs(cond.mean(probe, g)[:, 0] - truth)) < 0.05
    # one row of given statistics serves every parameter vector
    np.testing.assert_allclose(cond.mean(probe, g[0]), cond.mean(probe, np.repeat(g[:1], 200, 0)))
    r = cond.mean(probe[:3], g[:3]) - xc[:3, None]
    expect = -0.5 * np.einsum("ij,jk,ik->i", r, cond.precision, r)
    np.testing.assert_allclose(cond.log_lik(probe[:3], xc[:3, None], g[:3]), expect)
    import torch

    torch.save(cond.dump(), tmp_path / "emu.pt")
    back = Emulator.from_dump(torch.load(tmp_path / "emu.pt", weights_only=False))
    assert back.given == (0,)
    np.testing.assert_array_equal(back.mean(probe, g), cond.mean(probe, g))
    with pytest.raises(ValueError, match="also takes 1 given statistics"):
        cond.mean(probe)
    with pytest.raises(ValueError, match="a given statistic is constant"):
        fit_emulator(t, xc[:, None], [1], ["c"], g=np.ones((4000, 1)), given=[0], max_epochs=2)
    with pytest.raises(ValueError, match="g must be"):
        fit_emulator(t, xc[:, None], [1], ["c"], g=xr[:10, None], given=[0], max_epochs=2)


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
    tempered, acc_t = est.mcmc(40, np.stack([obs, -obs]), seed=3, start="tempered")
    assert tempered.shape == draws.shape and 0 < acc_t < 1 and not np.array_equal(tempered, draws)
    again, _ = est.mcmc(40, np.stack([obs, -obs]), seed=3, start="tempered")
    np.testing.assert_array_equal(again, tempered)
    with pytest.raises(ValueError, match="start must be one of flow, tempered"):
        est.mcmc(40, obs, start="prior")
    # the flow alone is what the chains start from: the flow's own draws on its two statistics
    alone = est.flow_sample_batched(40, np.stack([obs, -obs]), seed=3)
    np.testing.assert_array_equal(alone, flow.sample_batched(40, np.stack([obs, -obs])[:, :2], 3))
    y, given = est.emulated_statistics(np.stack([obs, -obs]))
    np.testing.assert_array_equal(y, [[1.5], [-1.5]])
    assert given is None and flow.emulated_statistics(obs) == (None, None)
    path = tmp_path / "est.pt"
    est.save(path)
    back = nfi.Estimator.load(path)
    assert back.emulator is not None and back.flow_columns == [0, 1]
    np.testing.assert_array_equal(back.sample(8, obs, seed=1), est.sample(8, obs, seed=1))


def test_an_estimator_with_a_conditional_emulator_gives_it_the_flows_statistics(tmp_path):
    """With an emulator given the flow's statistics, log_prob adds ``log N(x_c; m(u, x_r), S)``
    with ``x_r`` the conditioning vector's own, both starts of the chains read it, the info
    names the given statistics, and a saved estimator reads back to the same draws."""
    pytest.importorskip("sbi")
    from memsim.fit import infer as nfi
    from memsim.fit.calibrate import Moment

    prior = nfi.Prior(
        "toy", "videomem", (nfi.PriorParam("a", 0.0, 1.0), nfi.PriorParam("b", 0.0, 1.0))
    )
    rng = np.random.default_rng(1)
    u = rng.random((600, 2))
    x = np.stack([u[:, 0] * 4 - 2, u[:, 1] * 4 - 2, (u[:, 0] + u[:, 1]) * 2 - 2], axis=1)
    x = x + rng.normal(size=(600, 3)) * 0.3
    moments = [Moment(n, ("toy", n), 0.0, 1.0) for n in ("first", "second", "sum")]
    flow = nfi.train(u, x[:, :2], np.array([""] * 600), prior, moments[:2], estimator="maf",
                     max_epochs=5)  # fmt: skip
    emu = fit_emulator(
        nfi.to_logit(u), x[:, 2:], [2], ["sum"], g=x[:, :2], given=[0, 1], seed=0, max_epochs=30
    )
    est = nfi.with_emulator(flow, emu, moments)
    assert est.info["emulator_given"] == ["first", "second"]
    y, given = est.emulated_statistics(np.array([0.5, -0.5, 1.5]))
    np.testing.assert_array_equal(y, [1.5])
    np.testing.assert_array_equal(given, [0.5, -0.5])
    obs = np.array([0.5, -0.5, 1.5])
    probe = rng.random((5, 2))
    t = nfi.to_logit(probe)
    expect = flow.log_prob(probe, obs[:2]) + emu.log_lik(t, obs[2:], obs[:2])
    np.testing.assert_allclose(est.log_prob(probe, obs), expect, rtol=1e-6)
    assert not np.allclose(emu.log_lik(t, obs[2:], obs[:2]), emu.log_lik(t, obs[2:], -obs[:2]))
    xs = np.stack([obs, -obs])
    for start in ("flow", "tempered"):
        draws, acceptance = est.mcmc(40, xs, seed=3, start=start)
        assert draws.shape == (40, 2, 2) and 0 < acceptance < 1
    est.save(tmp_path / "est.pt")
    back = nfi.Estimator.load(tmp_path / "est.pt")
    assert back.emulator.given == (0, 1)
    np.testing.assert_array_equal(back.sample(8, obs, seed=1), est.sample(8, obs, seed=1))
