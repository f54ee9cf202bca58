"""Bayesian calibration (memsim infer): the prior file, the simulation store, a scaled-down run.

The scaled-down run is the whole pipeline at a size that says nothing about VideoMem (a study
of 200 videos, 40 simulations, a few epochs): it checks the plumbing, the files and their
determinism, not the posterior's quality, which docs/inference.md measures at full size.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from repo_scripts import load_script

from memsim import cli
from memsim.errors import UserError
from memsim.fit import infer as nfi
from memsim.fit.calibrate import moments_for
from memsim.resources import protocol_path

SCALE = 0.02  # 200 videos: a campaign in a few hundredths of a second


@pytest.fixture(scope="module")
def setup(real_data):
    import memsim
    from memsim.data import released_scores

    proto = memsim.load_protocol("videomem")
    targets = memsim.load_targets(protocol=proto)
    real = released_scores("videomem", real_data)
    prior = nfi.load_prior(nfi.prior_path("videomem"))
    base = memsim.load_params(prior.params)
    columns = [s.scoring.column for s in proto.steps]
    # the prior's own statistics, as memsim infer takes them (the counts' CDF with count_cdf)
    moments = moments_for(targets, real, columns, SCALE, **prior.statistics)
    return proto, targets, real, prior, base, moments


def test_shipped_prior_holds_both_point_fits():
    import memsim
    from memsim.fit.calibrate import VIDEOMEM_FREE, values_of

    prior = nfi.load_prior(nfi.prior_path("videomem"))
    assert prior.paths == [f.path for f in VIDEOMEM_FREE]
    nfi.check_prior(prior, memsim.load_params(prior.params), "prior")
    for name in ("videomem", "videomem-from-scratch", "tests/data/params-golden.yaml"):
        u = prior.to_unit(values_of(memsim.load_params(name), prior.free())[None])[0]
        assert np.all((u >= 0) & (u <= 1)), name  # the hand-set has no familiarity: on the edge


def test_unit_box_round_trip():
    prior = nfi.load_prior(nfi.prior_path("videomem"))
    u = prior.draw_unit(3, nfi.TRAIN, 0, 50)
    assert u.shape == (50, prior.dim) and np.all((u >= 0) & (u < 1))
    np.testing.assert_allclose(prior.to_unit(prior.to_values(u)), u, atol=1e-12)
    # draw i is the same whatever the batch it is drawn in
    np.testing.assert_array_equal(prior.draw_unit(3, nfi.TRAIN, 10, 5), u[10:15])


@pytest.mark.parametrize(
    "body, message",
    [
        ("name: x\nparams: videomem\n", "parameters: missing"),
        (
            "name: x\nparams: videomem\nparameters:\n  - {path: videos.rt_sd, lo: 1, hi: 0}\n",
            "needs finite lo < hi",
        ),
        (
            "name: x\nparams: videomem\nparameters:\n"
            "  - {path: videos.rt_sd, lo: 0, hi: 1, shape: log-uniform}\n",
            "log-uniform range needs lo > 0",
        ),
        (
            "name: x\nparams: videomem\nparameters:\n  - {path: videos.rt_sd, lo: 0, hi: 1, "
            "shape: normal}\n",
            "shape: must be one of",
        ),
        ("name: x\nparams: videomem\nwhat: 1\nparameters: []\n", "unknown field 'what'"),
        (
            "name: x\nparams: videomem\ncount_bins: 1\nparameters:\n"
            "  - {path: videos.rt_sd, lo: 0, hi: 1}\n",
            "count_bins: must be true or false",
        ),
        (
            "name: x\nparams: videomem\nemulate: share at\nparameters:\n"
            "  - {path: videos.rt_sd, lo: 0, hi: 1}\n",
            "emulate: must be a list of parts of statistics' names",
        ),
        (
            "name: x\nparams: videomem\nemulate: [share at]\nemulate_conditional: yes please\n"
            "parameters:\n  - {path: videos.rt_sd, lo: 0, hi: 1}\n",
            "emulate_conditional: must be true or false",
        ),
        (
            "name: x\nparams: videomem\nemulate_conditional: true\nparameters:\n"
            "  - {path: videos.rt_sd, lo: 0, hi: 1}\n",
            "emulate_conditional: needs emulate",
        ),
        (
            "name: x\nparams: videomem\nflows: 0\nparameters:\n"
            "  - {path: videos.rt_sd, lo: 0, hi: 1}\n",
            "flows: must be an integer of at least 1, got 0",
        ),
        (
            "name: x\nparams: videomem\nflows: 2.5\nparameters:\n"
            "  - {path: videos.rt_sd, lo: 0, hi: 1}\n",
            "flows: must be an integer of at least 1, got 2.5",
        ),
        (
            "name: x\nparams: videomem\nemulate: [share at]\nemulator_width: true\n"
            "parameters:\n  - {path: videos.rt_sd, lo: 0, hi: 1}\n",
            "emulator_width: must be an integer of at least 1, got True",
        ),
        (
            "name: x\nparams: videomem\nemulator_layers: 2\nparameters:\n"
            "  - {path: videos.rt_sd, lo: 0, hi: 1}\n",
            "emulator_layers: needs emulate",
        ),
    ],
)
def test_bad_prior_files_are_one_line_errors(tmp_path, body, message):
    path = tmp_path / "prior.yaml"
    path.write_text(body)
    with pytest.raises(UserError, match=message) as exc:
        nfi.load_prior(path)
    assert "\n" not in str(exc.value) and str(path) in str(exc.value)


def test_count_bins_condition_on_the_released_counts_shape(tmp_path):
    """``count_bins: true`` in a prior adds the rank-bin means of the released annotation
    counts of each scored column to the statistics; the calibration's moments stay without."""
    import memsim

    path = tmp_path / "prior.yaml"
    path.write_text(
        "name: x\nparams: videomem\ncount_bins: true\nparameters:\n"
        "  - {path: videos.rt_sd, lo: 0, hi: 1}\n"
    )
    prior = nfi.load_prior(path)
    assert prior.count_bins and prior.dump()["count_bins"] is True
    assert nfi.Prior.from_dump(prior.dump()) == prior
    assert "count_bins" not in nfi.load_prior(nfi.prior_path("memento10k")).dump()
    targets = memsim.load_targets(protocol=memsim.load_protocol("videomem"))
    n = np.r_[np.full(50, 30), np.full(900, 34), np.arange(50) + 40].astype(float)
    real = pd.DataFrame(
        {"short-term_memorability": np.linspace(0.5, 1, n.size), "nb_short-term_annotations": n}
    )
    cols = ["short-term_memorability"]
    plain = moments_for(targets, real, cols)
    with_counts = moments_for(targets, real, cols, count_bins=True)
    extra = [m for m in with_counts if m.path[0] == "count_quantiles"]
    assert len(with_counts) == len(plain) + 8 and len(extra) == 8
    bins = {m.path[2]: m.value for m in extra}
    assert bins["b00-05"] == 30.0 and bins["b25-50"] == 34.0
    assert bins["b95-100"] == pytest.approx(np.mean(np.arange(50) + 40))
    assert all(m.scale == 1.0 and m.path[1] == cols[0] for m in extra)


def _flag_prior(tmp_path, flag: str, bad: str):
    """A one-parameter prior file with ``flag: true``, loaded: its dump says the flag and
    loads back equal; the same file with ``flag: <bad>`` is refused in one line."""
    path = tmp_path / "prior.yaml"
    path.write_text(
        f"name: x\nparams: videomem\n{flag}: true\nparameters:\n"
        "  - {path: videos.rt_sd, lo: 0, hi: 1}\n"
    )
    prior = nfi.load_prior(path)
    assert prior.dump()[flag] is True and nfi.Prior.from_dump(prior.dump()) == prior
    path.write_text(path.read_text().replace(f"{flag}: true", f"{flag}: {bad}"))
    with pytest.raises(UserError, match=f"{flag}: must be true or false"):
        nfi.load_prior(path)
    return prior


def test_count_cdf_reads_the_released_counts_where_the_ks_distance_does(tmp_path):
    """``count_cdf: true`` adds each scored column's share of videos at or below the released
    counts' values at fixed levels (each count once), on a 0.05 scale; a simulated campaign's
    summary carries the same shares read at the same counts."""
    import memsim
    from memsim.fit.calibrate import COUNT_CDF_SCALE, count_cdf_points, count_ecdf

    prior = _flag_prior(tmp_path, "count_cdf", "yes please")
    assert prior.count_cdf and not prior.count_bins

    n = np.r_[np.full(50, 30), np.full(900, 34), np.arange(50) + 40].astype(float)
    # levels 0.01 and 0.05 fall on 30, 0.1-0.95 on 34, 0.99 on the 990th count, 79
    assert count_cdf_points(np.r_[n, 0.0]).tolist() == [30, 34, 79]
    assert count_ecdf(n, [29, 30, 34, 89]) == {"le29": 0.0, "le30": 0.05, "le34": 0.95, "le89": 1.0}
    assert count_ecdf(np.zeros(3), [1]) == {}
    targets = memsim.load_targets(protocol=memsim.load_protocol("videomem"))
    real = pd.DataFrame(
        {"short-term_memorability": np.linspace(0.5, 1, n.size), "nb_short-term_annotations": n}
    )
    cols = ["short-term_memorability"]
    plain = moments_for(targets, real, cols)
    extra = [m for m in moments_for(targets, real, cols, count_cdf=True) if m not in plain]
    assert [m.path for m in extra] == [("count_cdf", cols[0], f"le{c}") for c in (30, 34, 79)]
    assert [m.value for m in extra] == [0.05, 0.95, 0.99]
    assert all(m.scale == COUNT_CDF_SCALE for m in extra)


def test_count_corr_reads_the_steps_counts_correlation_in_both_data(tmp_path):
    """``count_corr: true`` adds the Pearson correlation of consecutive steps' annotation
    counts over the videos with both, on a 0.05 scale; a simulated campaign's summary carries
    the same statistic, computed the same way from its scores."""
    import memsim
    from memsim.analysis.consistency import pearson
    from memsim.analysis.scoring import score
    from memsim.fit.calibrate import COUNT_CORR_SCALE, count_correlation, summarise_arrays
    from memsim.sim.simulate import prepare, scale_protocol, simulate_arrays

    prior = _flag_prior(tmp_path, "count_corr", "1")
    assert prior.count_corr and not prior.count_cdf
    assert "count_corr" not in nfi.load_prior(nfi.prior_path("videomem")).dump()

    cols = ["short-term_memorability", "long-term_memorability"]
    rng = np.random.default_rng(0)
    st = rng.integers(30, 60, 500).astype(float)
    lt = np.where(rng.random(500) < 0.1, 0.0, np.round(st / 3 + rng.normal(0, 2, 500)))
    real = pd.DataFrame(
        {cols[0]: rng.random(500), "nb_short-term_annotations": st,
         cols[1]: rng.random(500), "nb_long-term_annotations": lt}
    )  # fmt: skip
    both = lt > 0  # a video never tested in step 2 has no long-term count
    expected = pearson(st[both], lt[both])
    assert count_correlation(real, cols) == {f"{cols[0]} ~ {cols[1]}": expected}
    assert count_correlation(real.drop(columns="nb_long-term_annotations"), cols) == {}
    targets = memsim.load_targets(protocol=memsim.load_protocol("videomem"))
    plain = moments_for(targets, real, cols)
    extra = [m for m in moments_for(targets, real, cols, count_corr=True) if m not in plain]
    assert [(m.path, m.value, m.scale) for m in extra] == [
        (("count_correlation", f"{cols[0]} ~ {cols[1]}"), expected, COUNT_CORR_SCALE)
    ]
    assert extra[0].name == f"annotation counts' correlation, {cols[0]} ~ {cols[1]}"

    proto = scale_protocol(memsim.load_protocol("videomem"), 0.05)
    arrays = simulate_arrays(prepare(proto, 1.0), memsim.load_params("videomem"), 3)
    summary = summarise_arrays(arrays)
    scores = score(arrays.trials, arrays.protocol, validate=False).scores
    got = summary["count_correlation"][f"{cols[0]} ~ {cols[1]}"]
    assert got == count_correlation(scores, cols)[f"{cols[0]} ~ {cols[1]}"]
    assert 0 < got < 1  # step 2 tests the step-1 videos seen most: more ST, more LT
    assert nfi.moment_values(summary, extra).tolist() == [got]


def test_logistic_box_is_the_uniform_box_on_the_logit_scale_and_moves_in_place():
    torch = pytest.importorskip("torch")
    from memsim.fit.logistic_box import LogisticBox

    box = LogisticBox(3)
    t = torch.tensor([[0.0, 1.5, -4.0]])
    # density of logit(u), u uniform: the standard logistic's, log(s (1 - s)) per coordinate
    s = torch.sigmoid(t)
    expected = torch.log(s * (1 - s)).sum(-1)
    torch.testing.assert_close(box.log_prob(t), expected)
    assert box.to("cpu") is box and box.dim == 3 and box.sample((5,)).shape == (5, 3)
    # draws come from the CPU's generator on any device (sbi draws from the prior before it
    # splits the simulations): the same numbers and the same generator state as a CPU twin's
    from memsim.fit.logistic_box import _box

    torch.manual_seed(3)
    twin, after = _box(3, "cpu").sample((50,)), torch.get_rng_state()
    torch.manual_seed(3)
    assert torch.equal(box.sample((50,)), twin) and torch.equal(torch.get_rng_state(), after)
    if torch.cuda.is_available():
        torch.manual_seed(3)
        on_gpu = LogisticBox(3, "cuda").sample((50,))
        assert on_gpu.is_cuda and torch.equal(on_gpu.cpu(), twin)
        assert torch.equal(torch.get_rng_state(), after)


def _toy_flows(n: int, seeds):
    """Unit positions ``u``, three statistics ``x`` (two read the first two parameters) and
    a small MAF trained on them for each seed (two epochs)."""
    prior = nfi.load_prior(nfi.prior_path("videomem"))
    rng = np.random.default_rng(0)
    u = rng.random((n, prior.dim))
    x = np.c_[u[:, :2] + rng.normal(0, 0.1, (n, 2)), rng.normal(0, 1, (n, 1))]
    moments = [nfi.Moment(f"m{i}", ("m", str(i)), 0.0, 1.0) for i in range(3)]
    errors = np.array([""] * n)
    flows = [
        nfi.train(u, x, errors, prior, moments, estimator="maf", max_epochs=2, seed=s)
        for s in seeds
    ]
    return u, x, flows


def test_an_estimator_trained_on_a_gpu_loads_onto_a_cpu(tmp_path):
    """The posterior object remembers the device it was built on: loading onto the CPU moves
    it back (here a CPU-trained file marked as trained on CUDA, as one from a GPU reads)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("sbi")
    u, x, (est,) = _toy_flows(60, (0,))
    est.save(tmp_path / "est.pt")
    d = torch.load(tmp_path / "est.pt", weights_only=False)
    d["info"]["device"] = "cuda"
    post = d["posterior"]  # what a posterior built on a GPU remembers of it
    post._device = post.device = post.potential_fn.device = "cuda:0"
    torch.save(d, tmp_path / "gpu.pt")
    back = nfi.Estimator.load(tmp_path / "gpu.pt")
    assert back.info["device"] == "cpu"
    np.testing.assert_array_equal(back.sample(50, seed=1), est.sample(50, seed=1))
    np.testing.assert_array_equal(back.log_prob(u[:5]), est.log_prob(u[:5]))


def test_an_ensemble_is_the_equal_mixture_of_its_flows(tmp_path):
    """``ensemble``: the density is the mean of the flows' densities, the draws are each
    flow's equal share (reproducible, kept through a save and load), and one flow alone is
    that flow, draw for draw."""
    pytest.importorskip("sbi")
    u, x, flows = _toy_flows(80, (0, 1))
    prior = flows[0].prior
    both = nfi.ensemble(flows)
    assert len(both.flows) == 2 and [m["seed"] for m in both.info["members"]] == [1]
    xs = x[:3]
    lps = [f.log_prob(u[:5], xs[0]) for f in flows]
    np.testing.assert_allclose(
        both.log_prob(u[:5], xs[0]), np.log((np.exp(lps[0]) + np.exp(lps[1])) / 2), rtol=1e-9
    )
    d = both.sample_batched(7, xs, seed=2)
    assert d.shape == (7, 3, prior.dim)
    np.testing.assert_array_equal(d, both.sample_batched(7, xs, seed=2))
    both.save(tmp_path / "both.pt")
    back = nfi.Estimator.load(tmp_path / "both.pt")
    assert len(back.members) == 1
    np.testing.assert_array_equal(back.sample_batched(7, xs, seed=2), d)
    one = nfi.ensemble(flows[:1])
    assert one.members == () and "members" not in one.info
    np.testing.assert_array_equal(one.sample(20, xs[0], seed=3), flows[0].sample(20, xs[0], seed=3))


def test_near_constant_statistics_are_held_at_zero():
    """A statistic with (almost) no spread over the simulations is held at 0 for training and
    for every conditioning: z-scored by its sd, a rare deviation would be a huge outlier."""
    x = np.c_[np.linspace(-1, 1, 100), np.zeros(100), np.r_[np.zeros(99), 1e-3]]
    assert nfi.constant_statistics(x) == [1, 2]
    held = nfi._held(np.array([[0.5, 2.0, -3.0]]), [1, 2])
    assert held.tolist() == [[0.5, 0.0, 0.0]]
    assert nfi._held(np.ones(3), []).tolist() == [1.0, 1.0, 1.0]


class _FixedLogRatio:
    """A stand-in flow whose ``log q(theta | x)`` is the logistic prior's density plus
    ``shift`` on the joint pairs (row i's theta with row i's x) and plus ``off`` elsewhere."""

    input_shape = (2,)
    condition_shape = (1,)

    def __init__(self, shift: float, off: float):
        self.shift, self.off = shift, off

    def loss(self, theta, x):
        # x holds each row's own theta index: a pair is joint when the two agree
        joint = (theta[:, 0] == x[:, 0]).float()
        log_q = nfi.logistic_log_prob(theta) + self.shift * joint + self.off * (1 - joint)
        return -log_q


def test_typicality_places_the_observed_statistics_among_the_simulations():
    """Jointly (Mahalanobis distance over the directions the simulations vary along), per
    statistic, and against the exact relations among them; constant statistics left out."""
    rng = np.random.default_rng(0)
    n = 2000
    a = rng.normal(size=(n, 3))
    # the fourth statistic is the mean of the first three (an exact relation); the fifth constant
    x = np.hstack([a, a.mean(axis=1, keepdims=True), np.full((n, 1), 0.5)])
    names = ["a", "b", "c", "mean of a-c", "constant"]
    centre = nfi.typicality(x, names, observed=np.array([0.0, 0.0, 0.0, 0.0, 0.5]))
    assert centre.simulations == n and centre.dims == 3
    assert centre.beyond < 0.01 and centre.relations.empty
    assert "constant" not in set(centre.marginal["statistic"])
    assert centre.marginal["tail"].min() > 0.8  # every statistic near its median
    # four sds out along a (the mean moves with it): further out than all but about 0.1 %
    far = nfi.typicality(x, names, observed=np.array([4.0, 0.0, 0.0, 4 / 3, 0.5]))
    assert far.beyond > 0.99 and far.distance2 == pytest.approx(16, rel=0.1)
    assert far.marginal["statistic"].iloc[0] == "a" and far.marginal["tail"].iloc[0] < 0.002
    assert far.outside(0.01) == ["a"] and centre.outside(0.01) == []
    assert far.relations.empty  # the relation holds: the mean is the mean
    # a mean that is not the mean of its parts: the relation is reported, not the distance
    broken = nfi.typicality(x, names, observed=np.array([0.0, 0.0, 0.0, 0.3, 0.5]))
    assert len(broken.relations) == 1
    assert "mean of a-c" in broken.relations["statistics"].iloc[0]
    assert abs(broken.relations["observed"].iloc[0]) > 10 * broken.relations["simulated"].iloc[0]
    # its sign: along the direction whose largest weight is positive (the mean's, here: the
    # relation is mean - (a + b + c) / 3 up to scale, and the mean is 0.3 too high)
    assert "mean of a-c (+" in broken.relations["statistics"].iloc[0]
    assert broken.relations["observed"].iloc[0] > 0
    # a departure the size of a target's rounding is not reported
    rounded = nfi.typicality(x, names, observed=np.array([0.0, 0.0, 0.0, 1e-4, 0.5]))
    assert rounded.relations.empty
    # the released data are the zero vector by default; too few simulations are refused
    assert nfi.typicality(x[:, :4], names[:4]).beyond < 0.01
    with pytest.raises(ValueError, match="too few"):
        nfi.typicality(x[:4], names)
    with pytest.raises(ValueError, match="4 names"):
        nfi.typicality(x, names[:4])
    # what memsim infer writes of it: a table per statistic in the statistics' order, a line
    from memsim.study.infer import _typicality_markdown, _typicality_table, typicality_line

    rounds = {"prior": centre, "region": broken}
    table = _typicality_table(rounds, names)
    assert list(table["statistic"]) == names[:4]  # the constant one left out
    assert list(table.columns) == ["statistic", "below_prior", "tail_prior"] + [
        "below_region",
        "tail_region",
    ]
    line = typicality_line(rounds)
    assert "of the prior's simulations, beyond" in line and "second round's" in line
    assert "exact relations of the simulated statistics the released ones break: 1" in line
    text = "\n".join(_typicality_markdown(rounds))
    assert "| 2,000 (the second round's simulations) | 3 |" in text and "mean of a-c" in text
    assert typicality_line({"prior": None}).endswith(
        "not measured (no more simulations than statistics)"
    )


def test_balance_penalty_is_zero_for_the_prior_and_grows_with_overconfidence():
    """BNPE's term, (E_joint[d] + E_marginal[d] - 1)^2 with d = sigmoid(log q - log p): zero
    for an estimator that is the prior (d = 1/2 everywhere) and for one whose gain on the
    joint pairs is the marginal pairs' loss (sigmoid(c) + sigmoid(-c) = 1); positive for an
    estimator that gains on the joint pairs without losing as much elsewhere."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("sbi")
    theta = torch.arange(8, dtype=torch.float32)[:, None].repeat(1, 2) / 4 - 1
    x = theta[:, :1].clone()

    def penalty(net):
        return float(nfi.balance_penalty(net, theta, x, net.loss(theta, x)))

    assert penalty(_FixedLogRatio(0.0, 0.0)) == 0.0
    assert penalty(_FixedLogRatio(2.0, -2.0)) == pytest.approx(0.0, abs=1e-12)
    s = 1 / (1 + np.exp(-2.0))
    assert penalty(_FixedLogRatio(2.0, 0.0)) == pytest.approx((s + 0.5 - 1) ** 2, rel=1e-6)


def test_balanced_training_records_its_weight_and_repeats_itself():
    """``balance`` trains BNPE: the estimator's info says so (plain NPE's info does not name
    it), the same seed gives the same estimator, and the balanced one differs from the plain
    one trained on the same pairs."""
    pytest.importorskip("sbi")
    prior = nfi.load_prior(nfi.prior_path("videomem"))
    rng = np.random.default_rng(0)
    u = rng.uniform(size=(300, prior.dim))
    x = nfi.to_logit(u)[:, :4] + rng.normal(scale=0.5, size=(300, 4))
    errors = np.array([""] * 300)
    moments = [None] * 4

    def fit(balance):
        est = nfi.train(
            u, x, errors, prior, moments, estimator="maf", max_epochs=3, balance=balance
        )
        return est, est.sample(200, np.zeros(4), seed=1)

    plain, d0 = fit(0.0)
    bal, d1 = fit(100.0)
    again, d2 = fit(100.0)
    assert "balance" not in plain.info and bal.info["balance"] == 100.0
    assert np.array_equal(d1, d2) and not np.array_equal(d0, d1)


def test_emulate_names_statistics_by_parts_of_their_names(tmp_path, setup):
    """``emulate``: the statistics whose name holds a part; a part that names none, or parts
    that take every statistic, are one-line errors naming the prior file; the simulations'
    settings leave it and ``emulate_conditional`` out (the same simulations train either
    way)."""
    proto, targets, real, prior, base, moments = setup
    names = [m.name for m in moments]
    counts = nfi.Prior(**{**prior.__dict__, "emulate": ("annotations per video", "share at")})
    cols = nfi.emulated_columns(counts, moments)
    assert [names[j] for j in cols] == [
        n for n in names if "annotations per video" in n or "share at" in n
    ]
    assert len(cols) == 2 + 17  # the two means and the counts' CDF points
    assert nfi.emulated_columns(prior, moments) == cols  # the shipped prior emulates them
    plain = nfi.Prior(**{**prior.__dict__, "emulate": ()})
    assert nfi.emulated_columns(plain, moments) == []
    none = nfi.Prior(**{**prior.__dict__, "emulate": ("no such statistic",)})
    with pytest.raises(UserError, match="'no such statistic' is in no statistic's name"):
        nfi.emulated_columns(none, moments, "p.yaml")
    everything = nfi.Prior(**{**prior.__dict__, "emulate": ("",)})
    with pytest.raises(UserError, match="takes every statistic"):
        nfi.emulated_columns(everything, moments)
    given = nfi.Prior(**{**counts.__dict__, "emulate_conditional": True})
    sized = nfi.Prior(**{**given.__dict__, "emulator_layers": 2, "emulator_width": 64, "flows": 3})
    settings = [
        nfi.store_settings(proto, base, p, moments, SCALE, 0) for p in (plain, counts, given, sized)
    ]
    assert settings[0] == settings[1] == settings[2] == settings[3]
    assert nfi.Prior.from_dump(counts.dump()) == counts
    assert nfi.Prior.from_dump(given.dump()) == given and "emulate_conditional" not in counts.dump()
    assert nfi.Prior.from_dump(sized.dump()) == sized
    assert {"emulator_layers", "emulator_width", "flows"}.isdisjoint(given.dump())
    assert sized.dump()["flows"] == 3 and sized.dump()["emulator_width"] == 64


def test_prior_path_that_names_no_parameter(tmp_path):
    import memsim

    path = tmp_path / "prior.yaml"
    path.write_text(
        "name: x\nparams: videomem\nparameters:\n  - {path: videos.nope, lo: 0, hi: 1}\n"
    )
    with pytest.raises(UserError, match="names no field"):
        nfi.check_prior(nfi.load_prior(path), memsim.load_params("videomem"), path)


MECHANISM_PRIOR = """name: x
params: videomem
parameters:
  - {path: participants.careless_share, lo: 0.01, hi: 0.08}
  - {path: protocol.selection.counts_every_participants, lo: 1000, hi: 7000}
"""


def test_a_protocol_setting_in_the_prior_is_set_on_the_protocol_not_the_crowd(tmp_path):
    """``protocol.<path>``: a nuisance of the campaign, checked against the protocol, rounded
    where the protocol has an integer, left out of the crowd's parameters."""
    import memsim

    path = tmp_path / "prior.yaml"
    path.write_text(MECHANISM_PRIOR)
    prior = nfi.load_prior(path)
    proto, base = memsim.load_protocol("videomem"), memsim.load_params("videomem")
    assert prior.on_protocol.tolist() == [False, True]
    assert [f.path for f in prior.free()] == ["participants.careless_share"]
    nfi.check_prior(prior, base, path, proto)
    with pytest.raises(UserError, match="protocol setting, and no protocol was given"):
        nfi.check_prior(prior, base, path)
    p = prior.params_at(base, np.array([0.05, 3240.4]))
    assert (
        p.participants.careless_share == 0.05
        and p.dump()
        == base.model_copy(
            update={"participants": base.participants.model_copy(update={"careless_share": 0.05})}
        ).dump()
    )
    changed = prior.protocol_at(proto, np.array([0.05, 3240.4]))
    assert changed.selection.counts_every_participants == 3240
    assert changed.dump() == proto.updated({"selection.counts_every_participants": 3240}).dump()
    assert prior.protocol_values(proto).tolist() == [2160.0]
    path.write_text(MECHANISM_PRIOR.replace("counts_every_participants", "counts_every_nope"))
    with pytest.raises(UserError, match="names no field of the protocol videomem"):
        nfi.check_prior(nfi.load_prior(path), base, path, proto)
    # an optional setting the protocol leaves unset (step 2's link to the selection's demand)
    path.write_text(
        MECHANISM_PRIOR.replace(
            "selection.counts_every_participants", "steps.1.items.0.source.demand_follows"
        )
    )
    assert proto.steps[1].items[0].source.demand_follows is None
    with pytest.raises(UserError, match="is not set in the protocol videomem; set it to a number"):
        nfi.check_prior(nfi.load_prior(path), base, path, proto)


def test_simulations_run_the_protocol_each_draw_sets(tmp_path, setup):
    """A draw's simulation is the protocol with the draw's setting, run directly: the same
    moments, and other settings give other counts."""
    import functools

    import memsim
    from memsim.sim.batch import simulate_many
    from memsim.sim.simulate import prepare

    proto, targets, real, _, base, moments = setup
    path = tmp_path / "prior.yaml"
    path.write_text(MECHANISM_PRIOR)
    prior = nfi.load_prior(path)
    settings = nfi.store_settings(proto, base, prior, moments, SCALE, 5)
    store = nfi.SimulationStore(tmp_path / "s", settings)
    got = nfi.simulate_prior(
        proto, base, prior, moments, store, n=3, seed=5, scale=SCALE, real=real
    )
    values = prior.to_values(got["u"])
    every = [int(round(v)) for v in values[:, 1]]
    assert len(set(every)) == 3
    for k in range(3):
        changed = proto.updated({"selection.counts_every_participants": every[k]})
        (x,) = simulate_many(
            prepare(changed, SCALE),
            [(prior.params_at(base, values[k]), int(got["seeds"][k]))],
            functools.partial(nfi._one, real=real, moments=moments),
        )
        np.testing.assert_array_equal(x, got["x"][k])
    # the protocol's own setting, by contrast, moves this draw's moments
    (fixed,) = simulate_many(
        prepare(proto, SCALE),
        [(prior.params_at(base, values[0]), int(got["seeds"][0]))],
        functools.partial(nfi._one, real=real, moments=moments),
    )
    assert memsim.load_protocol("videomem").selection.counts_every_participants == 2160
    assert not np.array_equal(np.nan_to_num(fixed), np.nan_to_num(got["x"][0]))


def test_posterior_draws_leave_the_campaigns_settings_out(tmp_path):
    """A study that takes a posterior as its crowd runs its own protocol's campaign."""
    from memsim.study.infer import posterior_draws

    cols = {"participants.careless_share": [0.02, 0.03]}
    cols["protocol.selection.counts_every_participants"] = [2000.0, 5000.0]
    pd.DataFrame(cols).to_parquet(tmp_path / "posterior.parquet", index=False)
    assert posterior_draws(tmp_path, 2) == [
        {"participants.careless_share": 0.02},
        {"participants.careless_share": 0.03},
    ]
    both = posterior_draws(tmp_path, 1, protocol_settings=True)
    assert both == [
        {
            "participants.careless_share": 0.02,
            "protocol.selection.counts_every_participants": 2000.0,
        }
    ]


def test_simulations_are_deterministic_and_extend(tmp_path, setup):
    proto, targets, real, prior, base, moments = setup
    settings = nfi.store_settings(proto, base, prior, moments, SCALE, 5)
    a = nfi.SimulationStore(tmp_path / "a", settings)
    kw = dict(n=3, seed=5, scale=SCALE, real=real)
    first = nfi.simulate_prior(proto, base, prior, moments, a, **kw)
    assert first["new"] == 3 and np.isfinite(first["x"]).all()
    more = nfi.simulate_prior(proto, base, prior, moments, a, **{**kw, "n": 5})
    assert more["new"] == 5  # the short chunk is simulated again whole
    again = nfi.simulate_prior(proto, base, prior, moments, a, **{**kw, "n": 5})
    assert again["new"] == 0
    fresh = nfi.simulate_prior(
        proto, base, prior, moments, nfi.SimulationStore(tmp_path / "b", settings), **kw
    )
    for k in ("u", "x", "seeds"):
        np.testing.assert_array_equal(more[k][:3], first[k])
        np.testing.assert_array_equal(fresh[k], first[k])
    # other settings in the same folder are refused, not mixed in
    other = nfi.store_settings(proto, base, prior, moments, SCALE, 6)
    with pytest.raises(UserError, match="other settings"):
        nfi.SimulationStore(tmp_path / "a", other)


def _device_or_skip(device: str) -> str:
    """``cuda`` runs only where torch sees a CUDA device (the GPU check of docs/inference.md)."""
    if device == "cuda":
        torch = pytest.importorskip("torch")
        if not torch.cuda.is_available():
            pytest.skip("no CUDA device")
    return device


DEVICES = pytest.mark.parametrize("device", ["cpu", "cuda"])


@DEVICES
def test_scaled_down_inference(tmp_path, setup, monkeypatch, capsys, device):
    """The whole pipeline, small: files written, posterior inside the prior, reload re-conditions
    to the same draws; training reports each epoch, and nothing reaches stdout (sbi prints
    its convergence line there)."""
    pytest.importorskip("sbi")
    _device_or_skip(device)
    monkeypatch.chdir(tmp_path)  # sbi would leave TensorBoard logs in ./sbi-logs
    from memsim.study.infer import load_posterior, posterior_draws, run_inference

    proto, targets, real, prior, base, moments = setup
    # the shipped prior, conditioned on the released annotation counts' rank bins and ECDF too,
    # every statistic learned by the flow (the emulated counts: the truncated runs below)
    prior_file = tmp_path / "videomem-prior.yaml"
    prior_file.write_text(
        nfi.prior_path("videomem")
        .read_text()
        .replace("\nemulate: [annotations per video, share at]", "")
        .replace("\ncount_cdf: true", "")
        .replace("\nparams:", "\ncount_bins: true\ncount_cdf: true\nparams:")
    )
    out = tmp_path / "inf"
    events = []
    r = run_inference(
        proto,
        out=out,
        prior=prior_file,
        simulations=40,
        scale=SCALE,
        device=device,
        targets=targets,
        real=real,
        heldout=10,
        predictive=2,
        samples=300,
        sbc_draws=20,
        estimator="maf",
        max_epochs=3,
        figures=False,
        progress=events.append,
    )
    assert capsys.readouterr().out == ""
    import json

    settings = json.loads((out / "simulations" / "settings.json").read_text())
    assert sum(m[1][0] == "count_quantiles" for m in settings["moments"]) == 16
    epochs = [e.done for e in events if e.stage == "train"]
    assert epochs[0] == 0 and epochs[1:4] == [1, 2, 3], epochs
    for name in ("estimator.pt", "posterior.parquet", "posterior.csv", "sbc.csv", "recovery.csv"):
        assert (out / name).is_file(), name
    assert (out / "predictive.csv").is_file() and (out / "inference.json").is_file()
    # the protocol the simulations played, as a protocol file (the scale is inference.json's)
    from memsim.api import load_protocol

    assert load_protocol(out / "protocol.yaml") == proto
    assert json.loads((out / "inference.json").read_text())["scale"] == SCALE
    assert len(r.table) == prior.dim and len(r.samples) == 300
    lo = np.array([p.lo for p in prior.parameters])
    hi = np.array([p.hi for p in prior.parameters])
    assert np.all((r.samples.to_numpy() >= lo) & (r.samples.to_numpy() <= hi))
    assert ((r.sbc["p"] >= 0) & (r.sbc["p"] <= 1)).all() and len(r.sbc) == prior.dim
    assert len(r.predictive) == len(targets.targets) and (r.predictive["draws"] <= 2).all()
    assert (r.predictive["draws"] == 2).sum() > 30  # a few statistics need more than 200 videos
    assert r.info["simulations_new"] == 40 and r.info["heldout"] + r.info["heldout_dropped"] == 10
    # where it ran: the same seed gives the same bytes on the same kind of CPU and software
    machine = json.loads((out / "inference.json").read_text())["machine"]
    assert machine["cpu"] and machine["torch"] and machine["sbi"] and machine["python"]
    assert ("gpu" in machine) == (device == "cuda") and r.info["train"]["device"] == device
    # the posterior mode is one of the draws, the most probable under the estimator
    mode = np.array([r.info["posterior_mode"][p] for p in prior.paths])
    assert (np.abs(r.samples.to_numpy() - mode).max(axis=1) == 0).any()
    for what in ("median", "mode"):
        ks = r.info[f"ks_at_posterior_{what}"]
        assert ks and all(len(v) == 5 and all(0 <= x <= 1 for x in v) for v in ks.values())
        assert f"at the posterior {what} (5 seeds)" in (out / "report.md").read_text()
    # the saved estimator re-conditions without simulating: same seed, same draws
    est = nfi.Estimator.load(out / "estimator.pt", device=device)
    u = est.sample(300, seed=0)
    np.testing.assert_allclose(prior.to_values(u), load_posterior(out).to_numpy(), rtol=1e-6)
    draws = posterior_draws(out, 2)
    assert list(draws[0]) == prior.paths
    pd.testing.assert_frame_equal(load_posterior(out), r.samples)
    # the simulations stay for the next run (resumed or extended: tested on the store above)
    assert len(list((out / "simulations").glob("*.npz"))) == 3
    assert not (tmp_path / "sbi-logs").exists()
    # 40 simulations for more statistics: no typicality measured, and the report says so
    assert r.info["typicality"] == {"prior": None} and r.typicality == {"prior": None}
    assert "Not measured: no more simulations than statistics." in (out / "report.md").read_text()
    assert not (out / "typicality.csv").exists()
    # the same folder retrains balanced on the simulations it holds: nothing simulated again
    b = run_inference(
        proto, out=out, prior=prior_file, simulations=40, scale=SCALE, device=device,
        targets=targets, real=real, heldout=10, predictive=0, samples=300, sbc_draws=20,
        estimator="maf", max_epochs=2, balance=100, figures=False,
    )  # fmt: skip
    assert b.info["simulations_new"] == 0 and b.info["train"]["balance"] == 100.0
    assert "balanced (BNPE, weight 100)" in (out / "report.md").read_text()


@DEVICES
def test_truncated_second_round(tmp_path, setup, monkeypatch, device):
    """``truncated``: a second round drawn from the prior inside the first posterior's region
    (each draw at least the region's density under the round-1 estimator), stored under its own
    stream, trained on with the first; the held-out checks run on the prior's held-out draws and
    on held-out draws from the region; a rerun simulates nothing again."""
    pytest.importorskip("sbi")
    _device_or_skip(device)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(nfi, "TRUNCATION_PILOT", 4096)  # the shipped 100,000: seconds, not ms
    monkeypatch.setattr(nfi, "TRUNCATION_PRIOR_SHARE", 0.05)
    from memsim.study.infer import run_inference

    proto, targets, real, prior, base, moments = setup
    # the flow on every statistic (the shipped prior's emulated counts: the test below)
    plain = tmp_path / "videomem-prior.yaml"
    plain.write_text(
        nfi.prior_path("videomem")
        .read_text()
        .replace("\nemulate: [annotations per video, share at]", "")
    )
    kw = dict(
        out=tmp_path / "inf", prior=plain, simulations=40, scale=SCALE, device=device,
        targets=targets, real=real, heldout=6, predictive=0, samples=200, sbc_draws=10,
        estimator="maf", max_epochs=2, figures=False, truncated=20,
    )  # fmt: skip
    r = run_inference(proto, **kw)
    info = r.info
    assert info["truncated_simulations"] == 20 and info["truncated_new"] == 20
    assert 0 < info["truncation_acceptance"] <= 1 and info["round1_train"]["used"] == 40
    assert info["truncation_posterior_mass"] >= 1 - nfi.TRUNCATION_QUANTILE - 1e-9
    assert info["train"]["used"] == 60 and info["heldout"] + info["heldout_dropped"] == 6
    assert 0 < info["region_heldout"] <= 6 and (tmp_path / "inf" / "sbc-region.csv").is_file()
    store = tmp_path / "inf" / "simulations"
    assert len(list(store.glob(f"{nfi.TRUNCATED}-*.npz"))) == 1
    assert len(list(store.glob(f"{nfi.TRUNCATED_HELDOUT}-*.npz"))) == 1
    assert len(list(store.glob(f"{nfi.HELDOUT}-*.npz"))) == 1  # the prior's own held-out
    assert "second round of 20 simulations" in (tmp_path / "inf" / "report.md").read_text()
    # the round's draws: the prior's candidates, in order, kept inside the region
    est1 = nfi.train(
        *(lambda s: (s["u"], nfi.standardise(s["x"], moments), s["errors"]))(
            nfi.SimulationStore(store, json.loads((store / "settings.json").read_text())).load(
                nfi.TRAIN, 40
            )
        ),
        prior, moments, device=device, estimator="maf", max_epochs=2,
    )  # fmt: skip
    region = nfi.truncation_region(est1, prior)
    assert region.threshold == info["truncation_threshold"]
    # at least the posterior's 99.9 % region, and at least the stated share of the prior
    assert region.posterior_mass >= 1 - nfi.TRUNCATION_QUANTILE - 1e-9
    assert region.prior_share >= nfi.TRUNCATION_PRIOR_SHARE
    drawn = nfi.truncated_draws(est1, prior, 20, region)
    with np.load(store / f"{nfi.TRUNCATED}-00000000.npz") as z:
        np.testing.assert_array_equal(z["u"], drawn["u"])
    assert (est1.log_prob(drawn["u"], logit=True) >= region.threshold).all()
    again = run_inference(proto, **{**kw, "figures": True})
    assert again.info["truncated_new"] == 0 and again.info["simulations_new"] == 0
    # both SBC checks drawn: the prior's held-out draws and the region's
    figs = tmp_path / "inf" / "figures"
    assert (figs / "sbc.png").stat().st_size > 0 and (figs / "sbc-region.png").stat().st_size > 0


def test_truncated_run_with_emulated_statistics(tmp_path, setup, monkeypatch):
    """The shipped prior, which emulates the counts: the first round's estimator sees every
    statistic (it only finds the region), the final one a flow on the others times an emulator
    of the counts; the posterior, SBC and region SBC are drawn by Metropolis and their
    acceptance recorded;
    the saved estimator re-conditions to the posterior's draws."""
    pytest.importorskip("sbi")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(nfi, "TRUNCATION_PILOT", 4096)
    monkeypatch.setattr(nfi, "TRUNCATION_PRIOR_SHARE", 0.05)
    from memsim.study.infer import load_posterior, run_inference

    proto, targets, real, prior, base, moments = setup
    assert prior.emulate == ("annotations per video", "share at")  # the shipped prior's
    out = tmp_path / "inf"
    r = run_inference(
        proto, out=out, simulations=40, scale=SCALE, targets=targets,
        real=real, heldout=6, predictive=2, samples=60, sbc_draws=8, estimator="maf",
        max_epochs=2, figures=False, truncated=20,
    )  # fmt: skip
    info = r.info
    names = [m.name for m in moments]
    emulated = [n for n in names if "annotations per video" in n or "share at" in n]
    assert info["train"]["emulated"] == emulated and info["train"]["used"] == 60
    assert info["train"]["emulator"]["simulations"] == 60
    assert "emulated" not in info["round1_train"]
    assert set(info["mcmc"]["acceptance"]) == {"posterior", "heldout", "region_heldout"}
    assert all(0 < a < 1 for a in info["mcmc"]["acceptance"].values())
    assert f"{len(emulated)} statistics are emulated" in (out / "report.md").read_text()
    est = nfi.Estimator.load(out / "estimator.pt")
    assert est.emulator is not None and len(est.flow_columns) == len(names) - len(emulated)
    u = est.sample(60, seed=0)
    np.testing.assert_allclose(prior.to_values(u), load_posterior(out).to_numpy(), rtol=1e-6)
    assert len(pd.read_csv(out / "sbc-region.csv")) == prior.dim
    assert info["mcmc"]["start"] == "flow"
    # the tempered start: the same simulations and estimator, chains started elsewhere
    t = run_inference(
        proto, out=out, simulations=40, scale=SCALE, targets=targets,
        real=real, heldout=6, predictive=0, samples=60, sbc_draws=8, estimator="maf",
        max_epochs=2, figures=False, truncated=20, mcmc_start="tempered",
    )  # fmt: skip
    assert t.info["mcmc"]["start"] == "tempered" and t.info["simulations_new"] == 0
    assert "chains started tempered" in (out / "report.md").read_text()
    assert not np.allclose(load_posterior(out).to_numpy(), prior.to_values(u))
    # the emulator given the flow's statistics too: the same simulations, retrained
    given_file = tmp_path / "given-prior.yaml"
    given_file.write_text(nfi.prior_path("videomem").read_text() + "emulate_conditional: true\n")
    c = run_inference(
        proto, out=out, prior=given_file, simulations=40, scale=SCALE, targets=targets,
        real=real, heldout=6, predictive=0, samples=60, sbc_draws=8, estimator="maf",
        max_epochs=2, figures=False, truncated=20,
    )  # fmt: skip
    assert c.info["simulations_new"] == 0
    flow_names = [n for n in names if n not in emulated]
    given = c.info["train"]["emulator_given"]
    assert given and set(given) <= set(flow_names)
    est = nfi.Estimator.load(out / "estimator.pt")
    assert [names[j] for j in est.emulator.given] == given
    assert "given the parameters and" in (out / "report.md").read_text()
    np.testing.assert_allclose(
        prior.to_values(est.sample(60, seed=0)), load_posterior(out).to_numpy(), rtol=1e-6
    )
    # an ensemble of three flows and a smaller emulator: the same simulations, retrained
    sized_file = tmp_path / "sized-prior.yaml"
    sized_file.write_text(
        given_file.read_text() + "flows: 3\nemulator_layers: 2\nemulator_width: 16\n"
    )
    e = run_inference(
        proto, out=out, prior=sized_file, simulations=40, scale=SCALE, targets=targets,
        real=real, heldout=6, predictive=0, samples=60, sbc_draws=8, estimator="maf",
        max_epochs=2, figures=False, truncated=20, mcmc_start="tempered",
    )  # fmt: skip
    assert e.info["simulations_new"] == 0
    members = e.info["train"]["members"]
    assert [m["seed"] for m in members] == [1, 2] and e.info["train"]["seed"] == 0
    assert e.info["train"]["emulator"]["shape"][2:] == [16, 2]
    assert "3 flows (" in (out / "report.md").read_text()
    assert "MLP (2 x 16)" in (out / "report.md").read_text()
    est = nfi.Estimator.load(out / "estimator.pt")
    assert len(est.flows) == 3 and len(est.members) == 2
    again = est.mcmc(60, np.zeros((1, len(names))), seed=0, start="tempered")[0][:, 0]
    np.testing.assert_allclose(prior.to_values(again), load_posterior(out).to_numpy(), rtol=1e-6)
    with pytest.raises(UserError, match="--mcmc-start must be one of flow, tempered"):
        run_inference(
            proto, out=out, simulations=40, scale=SCALE, targets=targets, real=real,
            truncated=20, mcmc_start="prior",
        )  # fmt: skip


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--simulations", "5"], "--simulations must be at least 20"),
        (["--prior", "nowhere.yaml"], "nowhere.yaml"),
        (["--truncated", "-3"], "--truncated"),
        (["--truncated", "2000000"], "--truncated are at most"),
        (["--balance", "-1"], "--balance must be between 0 and"),
        (["--balance", "nan"], "--balance"),
        (["--balance", "1e9"], "--balance must be between 0 and"),
        (["--balance", "100", "--truncated", "50"], "cannot be combined"),
        (["--mcmc-start", "prior"], "invalid choice: 'prior'"),
    ],
)
def test_cli_usage_errors(tmp_path, capsys, extra, message):
    pytest.importorskip("sbi")
    code = cli.main(["infer", str(protocol_path("videomem")), "--out", str(tmp_path / "o"), *extra])
    out, err = capsys.readouterr()
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_cli_offers_the_chains_starts_the_sampler_knows(capsys):
    """The CLI spells --mcmc-start's choices out (its modules import nothing heavy at start);
    they are the sampler's own."""
    from memsim.fit.emulator import MCMC_STARTS

    assert cli.main(["infer", "--help"]) == 0
    assert "--mcmc-start {" + ",".join(MCMC_STARTS) + "}" in capsys.readouterr().out


def test_no_cuda_is_a_one_line_error(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    pytest.importorskip("sbi")
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    code = cli.main(["infer", "videomem", "--out", str(tmp_path / "o"), "--device", "cuda"])
    assert code == 2 and "no CUDA device" in capsys.readouterr().err
    assert not Path(tmp_path / "o").exists()


def _posterior_folder(folder: Path, draws: dict) -> Path:
    """A folder as `memsim infer` leaves it, as far as a sweep reads it."""
    import memsim
    from memsim.fit.calibrate import dump_params_yaml

    folder.mkdir(parents=True)
    (folder / "base-params.yaml").write_text(dump_params_yaml(memsim.load_params("videomem")))
    pd.DataFrame(draws).to_parquet(folder / "posterior.parquet", index=False)
    return folder


def test_sweep_takes_one_posterior_draw_per_replicate(tmp_path):
    from memsim.study.sweep import _spec, load_study, resolve_study, run_sweep

    _posterior_folder(
        tmp_path / "post",
        {"participants.careless_share": [0.01, 0.05, 0.09], "videos.rt_sd": [0.1, 0.2, 0.3]},
    )
    study = tmp_path / "s.yaml"
    study.write_text(
        f"name: s\nprotocol: {protocol_path('videomem')}\nparams: posterior post\n"
        "vary:\n  - {path: params.participants.lapse_mean, values: [0.01, 0.02]}\n"
        "replicates: 2\nscale: 0.02\nseed: 1\nstatistics: [mean_score.step1]\n"
        "analysis: {n_splits: 1, repeats: 1}\n"
    )
    s = load_study(study)
    plan = resolve_study(s, study)
    for cell in plan.cells:
        for r in range(2):
            p = _spec(s, plan, cell, r, s.scale)["params"]
            assert p["participants"]["careless_share"] == [0.01, 0.05][r]
            assert p["videos"]["rt_sd"] == [0.1, 0.2][r]
    res = run_sweep(study, tmp_path / "out")
    t = res.table()
    assert len(t) == 4 and t["mean_score.step1"].notna().all()
    # another posterior in the same folder: other draws, another plan; refused, not mixed in
    (tmp_path / "post" / "posterior.parquet").unlink()
    pd.DataFrame({"participants.careless_share": [0.02, 0.03]}).to_parquet(
        tmp_path / "post" / "posterior.parquet"
    )
    with pytest.raises(UserError):
        run_sweep(study, tmp_path / "out")


def test_a_study_names_the_shipped_posterior(tmp_path):
    from memsim.resources import posterior_path
    from memsim.study.sweep import _spec, load_study, resolve_study

    study = tmp_path / "s.yaml"
    study.write_text(
        f"name: s\nprotocol: {protocol_path('videomem')}\nparams: posterior videomem\n"
        "replicates: 2\nscale: 0.02\nseed: 1\nstatistics: [mean_score.step1]\n"
    )
    s = load_study(study)
    plan = resolve_study(s, study)
    shipped = pd.read_parquet(posterior_path("videomem") / "posterior.parquet")
    for r in range(2):
        p = _spec(s, plan, plan.cells[0], r, s.scale)["params"]
        for path, value in shipped.iloc[r].items():
            section, *rest = path.split(".")
            got = p[section]
            for key in rest:
                got = got[key]
            assert got == pytest.approx(value)
    # a folder of that name beside the study file wins over the shipped posterior
    _posterior_folder(tmp_path / "videomem", {"videos.rt_sd": [0.1, 0.2, 0.3]})
    plan = resolve_study(load_study(study), study)
    assert _spec(s, plan, plan.cells[0], 1, s.scale)["params"]["videos"]["rt_sd"] == 0.2


@pytest.mark.parametrize(
    "params, extra, message",
    [
        ("posterior nowhere", "", r"no shipped posterior named 'nowhere' \(shipped: memento10k, "),
        ("posterior ./nowhere", "", "not an output folder of `memsim infer`|no base-params.yaml"),
        ("posterior post", "replicates: 5\n", "5 posterior draws wanted, the folder holds 3"),
        (
            "posterior post",
            "set:\n  params.videos.rt_sd: 0.1\n",
            "params.videos.rt_sd: set by each replicate's posterior draw",
        ),
    ],
)
def test_bad_posterior_studies_are_one_line_errors(tmp_path, params, extra, message):
    from memsim.study.sweep import load_study, resolve_study

    _posterior_folder(tmp_path / "post", {"videos.rt_sd": [0.1, 0.2, 0.3]})
    study = tmp_path / "s.yaml"
    study.write_text(
        f"name: s\nprotocol: {protocol_path('videomem')}\nparams: {params}\nseed: 1\n"
        f"statistics: [mean_score.step1]\n{extra}"
    )
    with pytest.raises(UserError, match=message) as exc:
        resolve_study(load_study(study), study)
    assert "\n" not in str(exc.value)


def test_annotations_needed_interpolates_per_replicate():
    from memsim.study.infer import annotations_needed, credible

    t = pd.DataFrame(
        {
            "replicate": [0, 0, 0, 1, 1, 1],
            "annotations_per_video.step1.mean": [100.0, 150.0, 200.0, 100.0, 150.0, 200.0],
            "human_consistency.step1.mean": [0.6, 0.68, 0.76, 0.5, 0.6, 0.65],
        }
    )
    n = annotations_needed(t, 0.7)
    assert n["needed"].iloc[0] == pytest.approx(162.5) and n["reached"].tolist() == [True, False]
    assert n["needed"].iloc[1] == np.inf
    c = credible(n["needed"])
    assert c["n"] == 2 and c["hi"] == np.inf  # "more than measured" is kept, not dropped


def test_paired_differences_pair_each_cell_with_the_baseline_of_its_replicate():
    """Under common random numbers replicate r of every cell is one crowd: a cell's difference
    to the baseline is taken within each replicate, then summarised over replicates."""
    from memsim.study.infer import paired_differences

    rng = np.random.default_rng(3)
    crowd = rng.normal(0.35, 0.05, 40)  # each replicate's own level, shared by its cells
    rows = []
    for rep, level in enumerate(crowd):
        for cap, shift in ((0.3, 0.0), (0.5, 0.01 * (rep % 4 != 0)), (0.9, -0.06)):
            rows.append({"cap": cap, "replicate": rep, "hc": level + shift})
    t = pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # the order of rows is no matter
    d = paired_differences(t, {"cap": 0.3}, ["hc"]).set_index("cap")
    assert d.loc[0.3, ["hc_median", "hc_lo", "hc_hi", "hc_above"]].tolist() == [0, 0, 0, 0]
    # the crowds' spread (sd 0.05) cancels: only the cells' own effects remain
    assert d.loc[0.5, "hc_median"] == pytest.approx(0.01)
    assert d.loc[0.5, "hc_lo"] == pytest.approx(0.0) and d.loc[0.5, "hc_above"] == 0.75
    assert d.loc[0.9, "hc_hi"] == pytest.approx(-0.06) and d.loc[0.9, "hc_above"] == 0
    assert d["replicates"].tolist() == [40, 40, 40]
    with pytest.raises(UserError, match="no cell has"):
        paired_differences(t, {"cap": 0.4}, ["hc"])
    with pytest.raises(UserError, match="no column 'truth'"):
        paired_differences(t, {"cap": 0.3}, ["truth"])


def test_pool_workers_die_with_their_parent(tmp_path):
    """A worker pool's processes (memsim infer's, the calibration's) are killed when their
    parent is: a parent killed outright leaves no worker waiting for ever."""
    import os
    import subprocess
    import sys
    import time

    script = tmp_path / "parent.py"
    script.write_text(
        "import multiprocessing as mp, os, sys\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from memsim.io import in_worker\n"
        "if __name__ == '__main__':\n"
        "    pool = ProcessPoolExecutor(1, mp_context=mp.get_context('spawn'),\n"
        "                               initializer=in_worker, initargs=(os.getpid(),))\n"
        "    print(pool.submit(os.getpid).result(), flush=True)\n"
        "    os.kill(os.getpid(), 9)\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    worker = int(out.stdout.split()[0])
    for _ in range(100):  # the kernel delivers the parent-death signal at once; reaping may lag
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            break
        try:
            with open(f"/proc/{worker}/stat") as stat:
                if stat.read().split()[2] == "Z":
                    break
        except FileNotFoundError:  # reaped between the two looks
            break
        time.sleep(0.1)
    else:
        os.kill(worker, 9)
        raise AssertionError("the worker outlived its parent")


def test_inference_silences_only_third_party_notices():
    """`memsim infer` keeps its output to what a user can act on: nflows' deprecated torch call
    sbi's batch cap and its "discrete prior" notice (the prior is a continuous logistic) are
    silenced while it runs; other warnings (sbi's outlier notice) pass."""
    import warnings

    from memsim.study.infer import _quiet_third_party

    @_quiet_third_party
    def run():
        for message in (
            "torch.triangular_solve is deprecated in favor of ...",
            "Capping max_sampling_batch_size from 10000 to 500 ...",
            "The passed discrete prior has no mean or stddev attribute, estimating them ...",
            "Data has extreme outliers in dimension(s) [0]",
        ):
            warnings.warn(message, UserWarning, stacklevel=2)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run()
    assert [str(w.message) for w in caught] == ["Data has extreme outliers in dimension(s) [0]"]


def test_compare_posteriors_measures_shifts_in_posterior_sds(tmp_path, capsys):
    from memsim.study.infer import compare_posteriors

    rng = np.random.default_rng(0)
    a = pd.DataFrame({"x": rng.normal(0, 2, 4000), "y": rng.normal(5, 1, 4000)})
    b = pd.DataFrame({"x": rng.normal(1, 2, 4000), "y": rng.normal(5, 1, 4000)})
    r = compare_posteriors(a, b, draws=2000)
    t = r.table.set_index("parameter")
    assert r.n_a == r.n_b == 2000 and r.c2st is None
    assert abs(t.loc["x", "shift_sd"] - 0.5) < 0.1 and t.loc["x", "ks_p"] < 1e-6
    assert abs(t.loc["y", "shift_sd"]) < 0.1 and t.loc["y", "ks"] < 0.05
    with pytest.raises(UserError, match="different parameters"):
        compare_posteriors(a, b[["y", "x"]])
    with pytest.raises(UserError, match="draws must be 1 to 2000"):
        compare_posteriors(a, b, draws=3000)
    # draws paired by their index (the same base noise through two near-equal flows) are
    # never compared with each other: the classifier sees two samples of one distribution
    pytest.importorskip("sbi")
    twin = a + rng.normal(0, 1e-3, a.shape)
    assert 0.4 < compare_posteriors(a, twin, draws=500, c2st=500).c2st < 0.6
    # the script: folders in, a table out; a folder without draws is one line and exit 2
    script = load_script("calibration/compare_posteriors.py")

    for name, df in (("a", a), ("b", b)):
        (tmp_path / name).mkdir()
        df.to_parquet(tmp_path / name / "posterior.parquet", index=False)
    assert script.main([str(tmp_path / "a"), str(tmp_path / "b"), "--c2st", "500"]) == 0
    out = capsys.readouterr().out
    assert "largest shift +0.5" in out and "classifier two-sample test accuracy: 0." in out
    assert script.main([str(tmp_path / "a"), str(tmp_path / "nowhere"), "--c2st", "0"]) == 2
    assert "no posterior.parquet" in capsys.readouterr().err


def test_an_interrupted_inference_keeps_its_simulations(tmp_path, monkeypatch, capsys, real_data):
    """Ctrl-C (or a failure) after the simulations: they stay, for the same command to resume
    (the command's other outputs are taken away, as always)."""
    pytest.importorskip("sbi")
    monkeypatch.chdir(tmp_path)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(nfi, "train", interrupted)
    argv = ["infer", "videomem", "--scale", str(SCALE), "--simulations", "25", "--heldout", "0"]
    argv += ["--predictive", "0", "--no-figures", "--quiet", "--out", "inf"]
    assert cli.main([*argv, "--data", str(real_data)]) == 130
    assert "interrupted" in capsys.readouterr().err
    chunks = list((tmp_path / "inf" / "simulations").glob("*.npz"))
    assert len(chunks) == 1 and (tmp_path / "inf" / "simulations" / "settings.json").is_file()
