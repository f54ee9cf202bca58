"""The trial kernel: every response and response time of one step, for many participants.

In (one step, ``n`` participants, sequences of length ``L``): per slot the
stimulus id, its role, whether it is a recognition test, the position of its
first showing in this step (or the onset of its showing in an earlier step),
each participant's session start and latent parameters, the stimuli's latent
parameters and the law of forgetting. Out: ``response`` (bool[n, L]),
``rt_s`` (float32[n, L], NaN without a press), ``onset_s`` and ``delay_s``
(float64[n, L]) and ``shown`` (int32[n], slots actually played when a session
is stopped early).

The model of one presentation (``docs/model.md``):

* a careless participant presses with probability ``careless_press_rate``,
  whatever is shown, with a uniform response time;
* any other participant attends with probability ``1 - lapse``; attending, on
  a recognition test after a delay ``t`` she presses with probability
  ``expit(logit(R(t)) + ability)`` with ``R`` the stimulus' forgetting law, and
  on a first showing with probability ``expit(fa_participant + fa_stimulus)``
  (one uniform draw decides: press iff ``u < (1 - lapse) p``);
* response times are log-normal, truncated to the presentation: recognitions
  faster the stronger they are, false alarms slower, later steps slower.

A press ends the presentation when the protocol says so, so onsets and delays
follow from earlier responses. Randomness is one counter-based stream per
(seed, participant, step): the result for a participant never depends on the
batch, the chunking or the number of threads. ``simulate_step_reference`` is
the same model in plain Python, draw for draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from memsim import _jitcache  # noqa: F401  (drops numba caches older than the sources)
from memsim import rng as _rng
from memsim.rng import PyStream, next_normal, next_uniform, stream_key, stream_key_py
from memsim.sim.forgetting import retention

__all__ = [
    "StepInput",
    "Constants",
    "play_row",
    "outputs",
    "simulate_step",
    "simulate_step_reference",
    "step_tables",
    "ROLE_CODES",
]

ROLE_CODES = {"target": 0, "filler": 1, "vigilance": 2}
_RT_TRIES = 8
_EPS = 1e-9


@dataclass(frozen=True)
class StepInput:
    """Arrays describing one step for ``n`` participants (rows) and ``L`` slots."""

    participant: np.ndarray  # int64[n]
    video: np.ndarray  # int32[n, L]
    role: np.ndarray  # int8[n, L] (ROLE_CODES)
    repeat: np.ndarray  # bool[n, L]
    first_pos: np.ndarray  # int32[n, L]: position of the first showing in this step, -1 if none
    prior_onset: np.ndarray  # float64[n, L]: onset of the showing in an earlier step, NaN if none
    start_s: np.ndarray  # float64[n]
    ability: np.ndarray  # float64[n]
    fa: np.ndarray  # float64[n]
    lapse: np.ndarray  # float64[n]
    careless: np.ndarray  # bool[n]


@dataclass(frozen=True)
class Constants:
    """Scalars of the step and the population."""

    seed: int
    step_index: int  # 0-based
    law: int
    shape_a: float
    shape_b: float
    duration_s: float
    gap_s: float
    ends_on_press: bool
    stop_after_vigilance_misses: int  # 0: never stop early
    careless_press_rate: float
    rt_min_s: float
    rt_log_sd: float
    rt_hit_log_mean: float
    rt_hit_slope: float
    rt_fa_log_mean: float
    familiarity_decay_s: float = 3600.0


@njit(cache=True)
def _truncated_lognormal(state, mu, sd, lo, hi):
    """A log-normal draw kept within [lo, hi]: bounded rejection, then clamping."""
    rt = lo
    for _ in range(_RT_TRIES):
        state, z = next_normal(state)
        rt = math.exp(mu + sd * z)
        if lo <= rt <= hi:
            return state, rt
    return state, min(max(rt, lo), hi)


@njit(cache=True)
def play_row(
    participant,
    video,
    role,
    repeat,
    first_pos,
    prior_onset,
    start_s,
    ability,
    fa,
    lapse,
    careless,
    vs,
    cs,
    response,
    rt_out,
    onset,
    delay,
):
    """One participant's session of one step: the model, for every kernel that plays one.

    ``video`` .. ``prior_onset`` are the participant's slots (1-D, length ``L``, as the rows
    of :class:`StepInput`); ``vs``, ``cs`` from :func:`step_tables`; ``response``, ``rt_out``,
    ``onset``, ``delay`` (1-D, length ``L``) are written in full (NaN / False past the last
    played slot). Returns the number of slots played.
    """
    v_m, v_rate, v_fa, v_rt, v_fam = vs
    (
        seed,
        step_index,
        law,
        a,
        b,
        duration,
        gap,
        ends_on_press,
        stop_after,
        careless_rate,
        rt_min,
        rt_sd,
        rt_hit_mu,
        rt_hit_slope,
        rt_fa_mu,
        fam_decay,
    ) = cs
    # Hot loop: one uniform decides a press. Attending (1 - lapse) and recognising
    # (p) are independent, so press iff u < (1 - lapse) p has the same law as two
    # draws. expit(logit R + ability) = R e^a / (1 + R (e^a - 1)) needs no log/exp;
    # the false-alarm odds are a product of the participant's and the stimulus'.
    state = stream_key(seed, _rng.RESPONSE, participant * 256 + step_index)
    L = video.shape[0]
    hi = duration * (1.0 - 1e-6)
    t_now = start_s
    misses = 0
    n_shown = L
    attend = 1.0 - lapse
    ea = math.exp(ability)
    fa_odds = math.exp(fa)
    for k in range(L):
        onset[k] = t_now
        v = video[k]
        rep = repeat[k]
        t = 0.0
        if rep:
            fp = first_pos[k]
            t = t_now - (onset[fp] if fp >= 0 else prior_onset[k])
            delay[k] = t
        else:
            delay[k] = np.nan
        press = False
        rt = np.nan
        state, u = next_uniform(state)
        if careless:
            if u < careless_rate:
                press = True
                state, u2 = next_uniform(state)
                rt = rt_min + u2 * (hi - rt_min)
        elif rep:
            r = retention(law, t, v_m[v], v_rate[v], a, b)
            r = min(max(r, _EPS), 1.0 - _EPS)
            # the stimulus' short-term familiarity shifts the logit of recognising it, fading
            # with the delay, and leaves the response time to the memory (0 for most sets:
            # then exactly the same arithmetic as without it)
            g = ea
            if v_fam[v] != 0.0:
                g = ea * math.exp(v_fam[v] * math.exp(-t / fam_decay))
            if u < attend * (r * g / (1.0 + r * (g - 1.0))):
                press = True
                lp = math.log(r / (1.0 - r)) + ability
                state, rt = _truncated_lognormal(
                    state, rt_hit_mu - rt_hit_slope * lp + v_rt[v], rt_sd, rt_min, hi
                )
        else:
            o = fa_odds * v_fa[v]
            if u < attend * (o / (1.0 + o)):
                press = True
                state, rt = _truncated_lognormal(state, rt_fa_mu, rt_sd, rt_min, hi)
        response[k] = press
        rt_out[k] = rt
        t_now += (rt if (press and ends_on_press) else duration) + gap
        if stop_after > 0 and not press and rep and role[k] == 2:
            misses += 1
            if misses >= stop_after:
                n_shown = k + 1
                break
    for k in range(n_shown, L):  # slots never played
        response[k] = False
        rt_out[k] = np.nan
        onset[k] = np.nan
        delay[k] = np.nan
    return n_shown


@njit(cache=True)
def _one_participant(i, xs, vs, cs, outs):
    participant, video, role, repeat, first_pos, prior_onset, start_s = xs[:7]
    ability, fa, lapse, careless = xs[7:]
    response, rt_out, onset, delay, shown = outs
    shown[i] = play_row(
        participant[i],
        video[i],
        role[i],
        repeat[i],
        first_pos[i],
        prior_onset[i],
        start_s[i],
        ability[i],
        fa[i],
        lapse[i],
        careless[i],
        vs,
        cs,
        response[i],
        rt_out[i],
        onset[i],
        delay[i],
    )


@njit(cache=True)
def _outputs(n, L):
    # every slot is written by _one_participant, so no initialisation pass
    return (
        np.empty((n, L), dtype=np.bool_),
        np.empty((n, L), dtype=np.float32),
        np.empty((n, L)),
        np.empty((n, L)),
        np.empty(n, dtype=np.int32),
    )


def outputs(n: int, L: int) -> tuple:
    """Output arrays for :func:`simulate_step` (``out=``): ``(response, rt_s, onset_s, delay_s,
    shown)``, allocated by numpy (whose large blocks get huge pages, so fewer page faults)."""
    return (
        np.empty((n, L), dtype=np.bool_),
        np.empty((n, L), dtype=np.float32),
        np.empty((n, L)),
        np.empty((n, L)),
        np.empty(n, dtype=np.int32),
    )


@njit(cache=True, parallel=True)
def _simulate_step(xs, vs, cs, outs):
    for i in prange(xs[1].shape[0]):
        _one_participant(i, xs, vs, cs, outs)
    return outs


@njit(cache=True)
def _simulate_step_serial(xs, vs, cs, outs):
    # _simulate_step on the calling thread: for a handful of participants (the
    # adaptive campaign plays them one by one) waking the thread pool costs more.
    for i in range(xs[1].shape[0]):
        _one_participant(i, xs, vs, cs, outs)
    return outs


_SERIAL_BELOW = 32  # batches smaller than this run on the calling thread


def _step_args(x: StepInput, videos, c: Constants) -> tuple:
    return (_input_args(x), *step_tables(videos, c))


def _input_args(x: StepInput) -> tuple:
    return (
        np.ascontiguousarray(x.participant, dtype=np.int64),
        np.ascontiguousarray(x.video, dtype=np.int32),
        np.ascontiguousarray(x.role, dtype=np.int8),
        np.ascontiguousarray(x.repeat, dtype=np.bool_),
        np.ascontiguousarray(x.first_pos, dtype=np.int32),
        np.ascontiguousarray(x.prior_onset, dtype=np.float64),
        np.ascontiguousarray(x.start_s, dtype=np.float64),
        np.ascontiguousarray(x.ability, dtype=np.float64),
        np.ascontiguousarray(x.fa, dtype=np.float64),
        np.ascontiguousarray(x.lapse, dtype=np.float64),
        np.ascontiguousarray(x.careless, dtype=np.bool_),
    )


def step_tables(videos, c: Constants) -> tuple[tuple, tuple]:
    """The kernel's stimulus arrays and constants, made once for many :func:`play_and_tally`."""
    # false-alarm attraction as odds
    vs = (videos.m, videos.rate, np.exp(videos.fa), videos.rt, videos.familiarity)
    cs = (
        int(c.seed),
        int(c.step_index),
        int(c.law),
        float(c.shape_a),
        float(c.shape_b),
        float(c.duration_s),
        float(c.gap_s),
        bool(c.ends_on_press),
        int(c.stop_after_vigilance_misses),
        float(c.careless_press_rate),
        float(c.rt_min_s),
        float(c.rt_log_sd),
        float(c.rt_hit_log_mean),
        float(c.rt_hit_slope),
        float(c.rt_fa_log_mean),
        float(c.familiarity_decay_s),
    )
    return vs, cs


@njit(cache=True)
def _play_and_tally(xs, vs, cs, kind):
    n, L = xs[1].shape
    outs = _outputs(n, L)
    response, rt_out, onset, _, shown = outs
    tally = np.zeros((n, 4, 2), dtype=np.int64)
    for i in range(n):
        _one_participant(i, xs, vs, cs, outs)
        for k in range(shown[i]):
            tally[i, kind[i, k], 1 if response[i, k] else 0] += 1
    return response, rt_out, onset, shown, tally


def play_and_tally(x: StepInput, tables: tuple[tuple, tuple], kind: np.ndarray):
    """Play a few participants on the calling thread and return ``(response, rt_s, onset_s,
    shown, tally)``: the outputs of :func:`simulate_step` but the delays, and a tally
    (int64[n, 4, 2]) of the played slots by ``kind`` (int[n, L], values 0-3,
    :func:`memsim.analysis.scoring.slot_kinds`) and response: what a campaign judges a session
    by."""
    return _play_and_tally(_input_args(x), *tables, np.ascontiguousarray(kind, dtype=np.int64))


def simulate_step(x: StepInput, videos, c: Constants, out: tuple | None = None):
    """Play one step for every participant of ``x`` (numba, parallel over participants).

    Returns ``(response, rt_s, onset_s, delay_s, shown)`` as described in the module docstring,
    written into ``out`` when given (:func:`outputs`: arrays reused from call to call).
    """
    if x.video.shape[0] == 0:
        L = x.video.shape[1]
        return (
            np.zeros((0, L), bool),
            np.zeros((0, L), np.float32),
            np.zeros((0, L)),
            np.zeros((0, L)),
            np.zeros(0, np.int32),
        )
    n, L = x.video.shape
    if out is None:
        out = outputs(n, L)
    elif (
        len(out) != 5
        or [(a.dtype, a.shape) for a in out] != [(a.dtype, a.shape) for a in outputs(n, L)]
        or not all(a.flags.c_contiguous for a in out)
    ):
        raise ValueError(f"out must be like outputs({n}, {L})")
    kernel = _simulate_step_serial if n < _SERIAL_BELOW else _simulate_step
    return kernel(*_step_args(x, videos, c), out)


# --------------------------------------------------------------------------- reference
def simulate_step_reference(x: StepInput, videos, c: Constants):
    """The same model in plain Python, one draw at a time (for equivalence tests)."""
    from memsim.sim.forgetting import LAWS

    by_code = {law.code: law for law in LAWS.values()}
    n, L = x.video.shape
    response = np.zeros((n, L), dtype=bool)
    rt_out = np.full((n, L), np.nan, dtype=np.float32)
    onset = np.full((n, L), np.nan)
    delay = np.full((n, L), np.nan)
    shown = np.zeros(n, dtype=np.int32)
    hi = c.duration_s * (1.0 - 1e-6)

    def trunc(s: PyStream, mu: float) -> float:
        rt = c.rt_min_s
        for _ in range(_RT_TRIES):
            rt = math.exp(mu + c.rt_log_sd * s.normal())
            if c.rt_min_s <= rt <= hi:
                return rt
        return min(max(rt, c.rt_min_s), hi)

    for i in range(n):
        s = PyStream(
            stream_key_py(c.seed, _rng.RESPONSE, int(x.participant[i]) * 256 + c.step_index)
        )
        t_now = float(x.start_s[i])
        misses, n_shown = 0, L
        attend = 1.0 - float(x.lapse[i])
        for k in range(L):
            onset[i, k] = t_now
            v = int(x.video[i, k])
            t = 0.0
            if x.repeat[i, k]:
                fp = int(x.first_pos[i, k])
                t = t_now - (onset[i, fp] if fp >= 0 else float(x.prior_onset[i, k]))
                delay[i, k] = t
            press, rt = False, float("nan")
            u = s.uniform()
            if x.careless[i]:
                if u < c.careless_press_rate:
                    press = True
                    rt = c.rt_min_s + s.uniform() * (hi - c.rt_min_s)
            elif x.repeat[i, k]:
                r = by_code[c.law].closed_form(t, videos.m[v], videos.rate[v], c.shape_a, c.shape_b)
                r = min(max(r, _EPS), 1.0 - _EPS)
                lp = math.log(r / (1.0 - r)) + float(x.ability[i])
                fam = float(videos.familiarity[v]) * math.exp(-t / c.familiarity_decay_s)
                if u < attend / (1.0 + math.exp(-(lp + fam))):
                    press = True
                    rt = trunc(s, c.rt_hit_log_mean - c.rt_hit_slope * lp + videos.rt[v])
            else:
                lp = float(x.fa[i]) + videos.fa[v]
                if u < attend / (1.0 + math.exp(-lp)):
                    press = True
                    rt = trunc(s, c.rt_fa_log_mean)
            response[i, k] = press
            rt_out[i, k] = rt
            t_now += (rt if (press and c.ends_on_press) else c.duration_s) + c.gap_s
            if (
                c.stop_after_vigilance_misses > 0
                and x.role[i, k] == 2
                and x.repeat[i, k]
                and not press
            ):
                misses += 1
                if misses >= c.stop_after_vigilance_misses:
                    n_shown = k + 1
                    break
        shown[i] = n_shown
    return response, rt_out, onset, delay, shown
