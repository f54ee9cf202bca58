"""Synthetic stimuli and participants drawn from a parameter set.

In: :class:`memsim.sim.params.Params`, counts and a seed. Out: :class:`Videos` and
:class:`Participants`, plain arrays of latent parameters (and tidy tables of
them for ``videos.parquet`` / ``participants.parquet``).

Each latent field has its own random generator spawned from
``SeedSequence(seed, spawn_key=(stage, field))``, so drawing more participants
never changes the first ones, and adding a field never shifts the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from memsim import rng as _rng
from memsim.sim.params import Params

__all__ = ["Videos", "Participants", "draw_videos", "draw_participants", "to_unit"]


def _gen(seed: int, stage: int, field: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stage, field)))


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def to_unit(domain: str, z: np.ndarray) -> np.ndarray:
    """Map normal draws into a forgetting law's rate domain."""
    if domain == "unit":
        return _expit(z)
    if domain == "positive":
        return np.exp(z)
    return np.asarray(z, dtype=np.float64)


@dataclass(frozen=True)
class Videos:
    """Latent parameters of each stimulus, indexed by stimulus id 0..n-1."""

    m: np.ndarray  # float64[n]: immediate recognition probability
    rate: np.ndarray  # float64[n]: forgetting rate in the law's domain
    fa: np.ndarray  # float64[n]: false-alarm attraction (logit shift)
    rt: np.ndarray  # float64[n]: log response-time offset
    familiarity: np.ndarray  # float64[n]: short-term logit shift at t = 0 (fades with the delay)

    @property
    def n(self) -> int:
        return int(self.m.shape[0])


@dataclass(frozen=True)
class Participants:
    """Latent parameters of each participant, indexed by participant id 0..n-1."""

    ability: np.ndarray  # float64[n]: logit shift of recognitions
    fa: np.ndarray  # float64[n]: logit false-alarm probability
    lapse: np.ndarray  # float64[n]: share of presentations not attended
    careless: np.ndarray  # bool[n]: presses at random

    @property
    def n(self) -> int:
        return int(self.ability.shape[0])


def draw_videos(params: Params, n: int, seed: int) -> Videos:
    """Draw ``n`` stimuli. Memorability and forgetting rate are correlated normals."""
    from memsim.sim.forgetting import LAWS

    v = params.videos
    f = params.forgetting
    z_m = _gen(seed, _rng.POPULATION_VIDEO, 0).standard_normal(n)
    z_e = _gen(seed, _rng.POPULATION_VIDEO, 1).standard_normal(n)
    rho = f.rate_memorability_corr
    z_r = rho * z_m + np.sqrt(max(0.0, 1.0 - rho * rho)) * z_e
    m = _expit(v.memorability.mean + v.memorability.sd * v.memorability.transform(z_m))
    rate = to_unit(LAWS[f.law].rate_domain, f.rate.mean + f.rate.sd * z_r)
    fa = v.false_alarm_sd * _gen(seed, _rng.POPULATION_VIDEO, 2).standard_normal(n)
    rt = v.rt_sd * _gen(seed, _rng.POPULATION_VIDEO, 3).standard_normal(n)
    familiarity = v.short_term_sd * _gen(seed, _rng.POPULATION_VIDEO, 4).standard_normal(n)
    return Videos(m=m, rate=rate, fa=fa, rt=rt, familiarity=familiarity)


def draw_participants(params: Params, n: int, seed: int) -> Participants:
    """Draw ``n`` participants (the first k are the same whatever ``n``)."""
    p = params.participants
    ability = p.ability_sd * _gen(seed, _rng.POPULATION_PARTICIPANT, 0).standard_normal(n)
    fa = p.false_alarm.mean + p.false_alarm.sd * _gen(
        seed, _rng.POPULATION_PARTICIPANT, 1
    ).standard_normal(n)
    k = p.lapse_concentration
    if p.lapse_mean <= 0.0:
        lapse = np.zeros(n)
    elif p.lapse_mean >= 1.0:
        lapse = np.ones(n)
    else:
        lapse = _gen(seed, _rng.POPULATION_PARTICIPANT, 2).beta(
            p.lapse_mean * k, (1 - p.lapse_mean) * k, n
        )
    careless = _gen(seed, _rng.POPULATION_PARTICIPANT, 3).random(n) < p.careless_share
    return Participants(ability=ability, fa=fa, lapse=lapse, careless=careless)


def videos_table(videos: Videos, truth: dict[str, np.ndarray]) -> pd.DataFrame:
    """The latent truth of every stimulus (``videos.parquet``)."""
    out = pd.DataFrame(
        {
            "video": np.arange(videos.n, dtype=np.int32),
            "memorability": videos.m,
            "forgetting_rate": videos.rate,
            "false_alarm_attraction": videos.fa,
            "rt_offset": videos.rt,
            "short_term_familiarity": videos.familiarity,
        }
    )
    for name, values in truth.items():
        out[name] = values
    return out


def participants_table(parts: Participants, n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "participant": np.arange(n, dtype=np.int64),
            "ability": parts.ability[:n],
            "false_alarm_logit": parts.fa[:n],
            "lapse": parts.lapse[:n],
            "careless": parts.careless[:n],
        }
    )
