"""An emulated likelihood for some statistics, and the sampler of the posterior it makes.

Neural posterior estimation learns ``q(theta | x)`` from simulations; where a few statistics
``x_c`` decide a check by a few hundredths and the flow does not resolve them from the
simulations it has, they can be modelled the other way round: a **Gaussian emulator** of
their values given the parameters, ``x_c ~ N(m(theta), S)``, ``m`` a small network fitted to
the same simulations and ``S`` the covariance of its residuals on simulations it did not see.
The posterior is then

    p(theta | x_r, x_c)  proportional to  q(theta | x_r) * N(x_c; m(theta), S)

with ``q`` the estimator trained on the other statistics ``x_r``. This holds when ``x_c`` and
``x_r`` vary independently given ``theta`` (docs/inference.md, "Emulated statistics"). A
**conditional** emulator drops that assumption: its mean takes ``x_r`` too, ``x_c ~ N(m(theta,
x_r), S)``, and by the chain rule

    p(theta | x_r, x_c)  proportional to  q(theta | x_r) * p(x_c | theta, x_r)

holds whatever the two sets share (``S`` is then the spread of ``x_c`` left once both are
known, a narrower one). The product has no sampler of its own: :func:`metropolis` draws from
it by random-walk Metropolis over many chains at once.

Everything lives in the flow's coordinates, the logits of the parameters' unit positions
(:func:`memsim.fit.infer.to_logit`), where the prior is a standard logistic on the whole line.
torch is imported inside the functions that need it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from memsim.progress import ProgressCallback, report

__all__ = [
    "Emulator",
    "fit_emulator",
    "metropolis",
    "tempered_start",
    "MCMC_STEPS",
    "MCMC_KEEP",
    "MCMC_MIN_CHAINS",
    "MCMC_CANDIDATES",
    "MCMC_START_ESS",
    "MCMC_STARTS",
]

#: Metropolis steps per chain: the first half adapts the proposal, the second half draws.
MCMC_STEPS = 400
#: States kept per chain, evenly spaced over the second half (the last state among them).
MCMC_KEEP = 4
#: The acceptance rate the first half adapts each chain's proposal scale towards.
MCMC_ACCEPTANCE = 0.25
#: The fewest chains per conditioning vector (each chain's proposal is learned from the others).
MCMC_MIN_CHAINS = 8
#: Where the chains start (:meth:`memsim.fit.infer.Estimator.mcmc`): the flow's own draws
#: (``flow``, the default) or the flow's draws resampled by a tempered likelihood
#: (``tempered``, :func:`tempered_start`).
MCMC_STARTS = ("flow", "tempered")
#: Flow draws per chain among which the chains' starting points are picked (:func:`tempered_start`).
MCMC_CANDIDATES = 32
#: The starting points' effective sample size, in chains: the likelihood's power is the largest
#: that keeps the candidates' weights at least this many chains' worth (:func:`tempered_start`).
MCMC_START_ESS = 4.0


def _mlp(d_in: int, d_out: int, hidden: int, layers: int):
    import torch

    mods: list = []
    width = d_in
    for _ in range(layers):
        mods += [torch.nn.Linear(width, hidden), torch.nn.SiLU()]
        width = hidden
    mods.append(torch.nn.Linear(width, d_out))
    return torch.nn.Sequential(*mods)


@dataclass
class Emulator:
    """A Gaussian emulator of some statistics given the parameters: ``N(m(t), S)``; with
    ``given`` statistics, given those too: ``N(m(t, g), S)``.

    Attributes
    ----------
    columns : tuple of int
        The emulated statistics' positions in the full statistics vector.
    names : tuple of str
        Their names.
    net : torch module
        ``m``: standardised logits (then the given statistics) in, standardised statistics out.
    t_mean, t_sd, y_mean, y_sd : arrays
        The standardisations of the inputs (the logits, then the given statistics) and of the
        emulated statistics.
    precision : array ``(k, k)``
        ``S`` inverted; ``S`` is the covariance of the residuals on the validation share (the
        simulations' own noise and the emulator's error together).
    info : dict
        Fitting facts: simulations, epochs, validation error, residual spread, seconds.
    given : tuple of int
        The positions in the full statistics vector of the statistics the mean also takes
        (empty: the parameters alone).
    """

    columns: tuple
    names: tuple
    net: object
    t_mean: np.ndarray
    t_sd: np.ndarray
    y_mean: np.ndarray
    y_sd: np.ndarray
    precision: np.ndarray
    info: dict
    given: tuple = ()

    def _inputs(self, t: np.ndarray, g: np.ndarray | None) -> np.ndarray:
        t = np.asarray(t, float)
        if not self.given:
            return t
        t = np.atleast_2d(t)
        if g is None:
            raise ValueError(f"this emulator also takes {len(self.given)} given statistics")
        g = np.asarray(g, float)
        return np.concatenate([t, np.broadcast_to(g, (len(t), len(self.given)))], axis=1)

    def mean(self, t: np.ndarray, g: np.ndarray | None = None) -> np.ndarray:
        """``m(t)`` for logits ``t`` ``(n, d)``: the statistics' expected values ``(n, k)``.
        With ``given`` statistics, ``m(t, g)``: ``g`` their values (``(len(given),)``, or
        ``(n, len(given))`` a row each)."""
        import torch

        z = (self._inputs(t, g) - self.t_mean) / self.t_sd
        z = torch.as_tensor(z, dtype=torch.float32)
        with torch.no_grad():
            y = self.net(z).numpy().astype(float)
        return y * self.y_sd + self.y_mean

    def log_lik(self, t: np.ndarray, y: np.ndarray, g: np.ndarray | None = None) -> np.ndarray:
        """``log N(y; m(t), S)`` up to a constant, for logits ``t`` ``(n, d)`` and statistics
        ``y`` (``(k,)``, or ``(n, k)`` a row each); ``g`` the given statistics as in
        :meth:`mean`."""
        r = self.mean(t, g) - np.asarray(y, float)
        return -0.5 * np.einsum("ij,jk,ik->i", r, self.precision, r)

    def dump(self) -> dict:
        """A picklable dict: :meth:`from_dump` reads it back (an estimator file holds it)."""
        return {
            "columns": list(self.columns),
            "names": list(self.names),
            "state": {k: v.clone() for k, v in self.net.state_dict().items()},
            "shape": self.info["shape"],
            "t_mean": self.t_mean,
            "t_sd": self.t_sd,
            "y_mean": self.y_mean,
            "y_sd": self.y_sd,
            "precision": self.precision,
            "info": self.info,
            "given": list(self.given),
        }

    @classmethod
    def from_dump(cls, d: dict) -> Emulator:
        d_in, d_out, hidden, layers = d["shape"]
        net = _mlp(d_in, d_out, hidden, layers)
        net.load_state_dict(d["state"])
        net.eval()
        return cls(
            tuple(d["columns"]),
            tuple(d["names"]),
            net,
            *(np.asarray(d[k], float) for k in ("t_mean", "t_sd", "y_mean", "y_sd", "precision")),
            dict(d["info"]),
            tuple(int(c) for c in d.get("given", ())),
        )


def fit_emulator(
    t: np.ndarray,
    y: np.ndarray,
    columns,
    names,
    *,
    g: np.ndarray | None = None,
    given=(),
    seed: int = 0,
    hidden: int = 256,
    layers: int = 3,
    max_epochs: int = 400,
    patience: int = 30,
    batch_size: int = 128,
    validation: float = 0.1,
    progress: ProgressCallback | None = None,
) -> Emulator:
    """Fit the emulator's mean ``m`` (an MLP, SiLU, Adam) to logits ``t`` ``(n, d)`` and
    statistics ``y`` ``(n, k)``, stopping once the validation share's error has not improved
    for ``patience`` epochs; ``S`` is then the covariance of the validation residuals.
    ``g`` ``(n, len(given))``: the values of the statistics at positions ``given`` that the
    mean takes as well (a conditional emulator; each must vary over the simulations).
    Same seed and thread count: the same emulator."""
    import torch

    t = np.asarray(t, float)
    y = np.asarray(y, float)
    given = tuple(int(c) for c in given)
    if given:
        if g is None:
            raise ValueError(f"g must be ({len(t)}, {len(given)}), got none")
        g = np.asarray(g, float)
        if g.shape != (len(t), len(given)):
            raise ValueError(f"g must be ({len(t)}, {len(given)}), got {g.shape}")
        if not (g.std(axis=0) > 0).all():
            raise ValueError("a given statistic is constant over the simulations")
    elif g is not None:
        raise ValueError("g needs the given statistics' positions")
    inputs = np.concatenate([t, g], axis=1) if given else t  # what the MLP reads
    n = len(t)
    n_val = max(int(round(n * validation)), y.shape[1] + 2)
    if n - n_val < 10:
        raise ValueError(f"{n} simulations are too few to fit an emulator of {y.shape[1]}")
    perm = np.random.default_rng(seed).permutation(n)
    val, tr = perm[:n_val], perm[n_val:]
    t_mean, t_sd = inputs[tr].mean(0), inputs[tr].std(0) + 1e-12
    y_mean, y_sd = y[tr].mean(0), y[tr].std(0) + 1e-12

    def tensor(a):
        return torch.as_tensor(a, dtype=torch.float32)

    xt, yt = tensor((inputs[tr] - t_mean) / t_sd), tensor((y[tr] - y_mean) / y_sd)
    xv, yv = tensor((inputs[val] - t_mean) / t_sd), tensor((y[val] - y_mean) / y_sd)
    torch.manual_seed(int(seed))
    net = _mlp(inputs.shape[1], y.shape[1], hidden, layers)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, weight_decay=1e-5)
    best, state, since, epoch = np.inf, None, 0, 0
    t0 = time.perf_counter()
    for epoch in range(1, max_epochs + 1):
        net.train()
        order = torch.randperm(len(xt))
        for s in range(0, len(xt), batch_size):
            b = order[s : s + batch_size]
            opt.zero_grad()
            loss = ((net(xt[b]) - yt[b]) ** 2).mean()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            v = float(((net(xv) - yv) ** 2).mean())
        if v < best - 1e-5:
            best, since = v, 0
            state = {k: w.clone() for k, w in net.state_dict().items()}
        else:
            since += 1
        report(progress, "infer", "emulator", epoch, None, unit="epochs", detail=f"mse {v:.4f}")
        if since >= patience:
            break
    net.load_state_dict(state)
    net.eval()
    emu = Emulator(
        tuple(int(c) for c in columns),
        tuple(str(s) for s in names),
        net,
        t_mean,
        t_sd,
        y_mean,
        y_sd,
        np.eye(y.shape[1]),
        {},
        given,
    )
    resid = y[val] - emu.mean(t[val], g[val] if given else None)
    cov = np.atleast_2d(np.cov(resid.T)) + 1e-6 * np.eye(y.shape[1])
    emu.precision = np.linalg.inv(cov)
    emu.info = {
        "simulations": int(n),
        "validation": int(n_val),
        "epochs": int(epoch),
        "validation_mse": float(best),  # in the statistics' own standardisation (y_sd)
        "residual_sd": [float(s) for s in np.sqrt(np.diag(cov))],
        "seconds": time.perf_counter() - t0,
        "seed": int(seed),
        "shape": [int(inputs.shape[1]), int(y.shape[1]), int(hidden), int(layers)],
        "torch_threads": torch.get_num_threads(),
    }
    return emu


def _ess(log_w: np.ndarray) -> np.ndarray:
    """The effective sample size of each row of log weights ``(G, K)`` (``-inf``: weight 0)."""
    w = np.exp(log_w - log_w.max(axis=-1, keepdims=True))
    return w.sum(-1) ** 2 / (w**2).sum(-1)


def tempered_start(
    candidates: np.ndarray,
    log_lik: np.ndarray,
    chains: int,
    *,
    ess: float = MCMC_START_ESS,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Starting points for :func:`metropolis`: ``chains`` of each group's ``candidates``, drawn
    from the candidates weighted by their likelihood raised to a power ``beta`` in [0, 1].

    ``candidates`` ``(G, K, d)`` are draws of the flow ``q(theta | x_r)``, ``log_lik``
    ``(G, K)`` the emulator's log likelihood at them. Weighted by ``L ** beta`` they stand for
    ``q * L ** beta``, a distribution between the flow (``beta`` 0) and the product (1). Per
    group ``beta`` is the largest that keeps the weights' effective sample size at least
    ``ess * chains`` (1 where the full likelihood does), so the resampled starting points are
    nearly all distinct and still a little wider than the product: the chains start near it
    instead of having to travel in from the flow's spread, which 400 steps of random-walk
    Metropolis do not finish where the product is much narrower than the flow
    (docs/inference-record.md, "Step 2's demand as a nuisance"). Resampling is systematic. Same
    seed, same starting points.

    Returns the starting points ``(G, chains, d)`` and each group's ``beta``.
    """
    candidates = np.asarray(candidates, float)
    ll = np.asarray(log_lik, float)
    ll = np.where(np.isnan(ll), -np.inf, ll)
    n_groups, k, _ = candidates.shape
    if ll.shape != (n_groups, k) or chains < 1:
        raise ValueError("tempered_start needs log_lik (G, K) for candidates (G, K, d)")
    finite = np.isfinite(ll)
    if not finite.any(axis=1).all():
        raise ValueError("a group has no candidate with a finite likelihood")
    llf = np.where(finite, ll, 0.0)

    def log_w(beta):
        return np.where(finite, beta[:, None] * llf, -np.inf)

    want = np.minimum(float(ess) * chains, 0.999 * finite.sum(axis=1))
    lo, hi = np.zeros(n_groups), np.ones(n_groups)
    for _ in range(40):  # bisection: ESS falls as beta grows
        mid = (lo + hi) / 2
        good = _ess(log_w(mid)) >= want
        lo, hi = np.where(good, mid, lo), np.where(good, hi, mid)
    beta = np.where(_ess(log_w(np.ones(n_groups))) >= want, 1.0, lo)
    lw = log_w(beta)
    w = np.exp(lw - lw.max(axis=1, keepdims=True))
    cw = np.cumsum(w / w.sum(axis=1, keepdims=True), axis=1)
    cw[:, -1] = 1.0
    u = (np.random.default_rng(seed).random((n_groups, 1)) + np.arange(chains)) / chains
    idx = np.stack([np.searchsorted(cw[g], u[g], side="right") for g in range(n_groups)])
    return np.take_along_axis(candidates, idx[..., None], axis=1), beta


def _cov(sum1: np.ndarray, sum2: np.ndarray, count) -> np.ndarray:
    """Covariances ``(..., d, d)`` from sums of states and of their outer products over
    ``count`` states, kept positive definite."""
    count = np.asarray(count, float)[..., None]
    m = sum1 / count
    c = sum2 / count[..., None] - m[..., :, None] * m[..., None, :]
    d = c.shape[-1]
    trace = np.trace(c, axis1=-2, axis2=-1)[..., None, None]
    return c + (1e-8 + 1e-6 * trace / d) * np.eye(d)


def metropolis(
    log_target,
    init: np.ndarray,
    *,
    steps: int = MCMC_STEPS,
    keep: int = MCMC_KEEP,
    seed: int = 0,
    acceptance: float = MCMC_ACCEPTANCE,
    progress: ProgressCallback | None = None,
) -> tuple[np.ndarray, float]:
    """Random-walk Metropolis for ``G`` targets at once, ``C`` chains each (``C >= 3``).

    ``init`` ``(G, C, d)``: the chains' starting points (draws from a wider distribution than
    the target, such as ``q(theta | x_r)``). ``log_target`` maps states ``(G, C, d)`` to log
    densities ``(G, C)`` (up to a constant per group; NaN or -inf is never accepted).

    Each chain's proposal is Gaussian: a covariance times a scale, both learned from the
    *other* chains of its group (leave-one-out). A proposal tuned on the chain's own states
    would depend on where the chain is, and such a kernel no longer leaves the target
    invariant: on heavy-tailed targets it pulled the chains in by several per cent. The
    covariance starts as the other chains' starting points', and is re-estimated from their
    states at a half and at three quarters of the first half (the states since the previous
    estimate); the scale moves after every step of the first half towards the other chains'
    ``acceptance``. From then on both are frozen, so the second half is a plain Metropolis
    chain. ``keep`` states per chain are kept, evenly spaced in the second half and ending at
    the last step.

    Returns the draws ``(G, keep * C, d)``, ordered so that the first ``C`` are the chains'
    last states (then the states before them), and the mean acceptance of the second half.
    """
    x = np.array(init, float)
    n_groups, n_chains, d = x.shape
    if steps < 4 or keep < 1 or n_chains < 3:
        raise ValueError("metropolis needs steps >= 4, keep >= 1 and at least 3 chains")
    rng = np.random.default_rng(seed)
    lp = np.asarray(log_target(x), float)
    lp = np.where(np.isnan(lp), -np.inf, lp)

    def outer(a):
        return a[..., :, None] * a[..., None, :]

    def others_chol(s1, s2, n_each):
        """Each chain's Cholesky factor of the covariance of the other chains' states."""
        cov = _cov(s1.sum(1, keepdims=True) - s1, s2.sum(1, keepdims=True) - s2,
                   n_each * (n_chains - 1))  # fmt: skip
        return np.linalg.cholesky(cov)

    chol = others_chol(x, outer(x), 1)
    scale = np.full((n_groups, n_chains), 2.38**2 / d)
    half = steps // 2
    every = max((steps - half) // keep, 1)
    kept_at = {steps - i * every: i for i in range(keep)}  # the last state first
    out = np.empty((n_groups, keep, n_chains, d))
    sum1 = np.zeros_like(x)
    sum2 = np.zeros((n_groups, n_chains, d, d))
    count = 0
    refit = {max(half // 2, 1), max(3 * half // 4, 1)}
    accepted = 0.0
    for k in range(1, steps + 1):
        step = np.einsum("gcij,gcj->gci", chol, rng.standard_normal(x.shape))
        prop = x + np.sqrt(scale)[..., None] * step
        lq = np.asarray(log_target(prop), float)
        ok = np.log(rng.random((n_groups, n_chains))) < lq - lp  # NaN compares False
        x = np.where(ok[..., None], prop, x)
        lp = np.where(ok, lq, lp)
        if k <= half:
            others = (ok.sum(axis=1, keepdims=True) - ok) / (n_chains - 1)
            scale *= np.exp(others - acceptance)
            sum1 += x
            sum2 += outer(x)
            count += 1
            if k in refit:
                chol = others_chol(sum1, sum2, count)
                sum1[:], sum2[:], count = 0.0, 0.0, 0
        else:
            accepted += float(ok.mean())
        if k in kept_at:
            out[:, kept_at[k]] = x
        report(progress, "infer", "mcmc", k, steps, unit="steps")
    return out.reshape(n_groups, keep * n_chains, d), accepted / max(steps - half, 1)
