"""Hypothesis strategies: feasible protocols, logs that follow them, studies with known truth.

- :func:`protocols`: from scratch (tiny one- or two-step games with drawn filters and
  corrections), as a small copy of a shipped protocol (its structure, fewer items, lags
  scaled with the sequence), or a shipped protocol with chosen fields varied.
- :func:`studies`: a log that follows a protocol, with the truth that produced it
  (:class:`memsim.testing.logs.Study`); :func:`trial_tables`: the log alone, in the user's
  column names.
- :func:`simulated_studies`: memsim's own simulator (numba; compiled on first use), for
  logs with the calibrated population's statistics. These shrink only to a smaller seed.

Everything drawn is structure: a list of participants (shrinks by removing them), a pool
of videos (shrinks to as few as one participant needs), item counts and lag ranges
(shrink to the smallest), and per-choice bytes (shrink to the plainest choice; see
:mod:`memsim.testing.logs`). A failing test therefore shrinks to a small log a person can
read, printed whole in hypothesis' "Falsifying example".
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import numpy as np
from hypothesis import reject
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from memsim.design.protocol import Protocol, load_protocol, truth_column
from memsim.errors import UserError
from memsim.testing.columns import Columns, as_columns
from memsim.testing.logs import (
    FALSE_ALARM_LEVELS,
    TRUTH_LEVELS,
    DeadEnd,
    Model,
    Person,
    Session,
    Study,
    _cached_protocol,
    build_study,
    layout,
)

__all__ = [
    "CORRECTION_KINDS",
    "LAG_SLOPES",
    "protocols",
    "studies",
    "trial_tables",
    "simulated_studies",
    "shipped_protocol",
]

ST, LT = "short-term_memorability", "long-term_memorability"
#: names :func:`protocols` draws corrections from -> the protocol's correction mapping
CORRECTION_KINDS: dict[str, dict] = {
    "none": {"kind": "none"},
    "linear": {"kind": "linear", "form": "shift"},
    "linear-ratio": {"kind": "linear", "form": "ratio"},
    "log_linear": {"kind": "log_linear"},
    "memento_decay": {"kind": "memento_decay"},
}
#: true change of the hit probability per position of lag, drawn per lag-corrected step
LAG_SLOPES = (0.0, -0.05, -0.1, -0.2)
_EXTRA_STIMULI = 3  # a drawn protocol's pool holds this many videos beyond one participant's


def shipped_protocol(name: str) -> Protocol:
    """A protocol shipped with memsim (``videomem``, ``memento10k``, ``isola2011``, ``lamem``)."""
    from memsim import resources

    return load_protocol(resources.protocol_path(name))


def _as_protocol(p: Protocol | str) -> Protocol:
    return p if isinstance(p, Protocol) else shipped_protocol(p)


def _range(x: int | tuple[int, int], what: str) -> tuple[int, int]:
    lo, hi = (x, x) if isinstance(x, int) else tuple(x)
    if not 0 <= lo <= hi:
        raise UserError(f"{what}: expected 0 <= min <= max, got {x!r}")
    return int(lo), int(hi)


# --------------------------------------------------------------------------- protocols
@st.composite
def _filters(draw, has_vigilance: bool) -> dict:
    """Each filter present or not (absent when shrunk), at a threshold from a short list."""
    f: dict = {}
    if has_vigilance and draw(st.booleans()):
        f["min_vigilance_hit_rate"] = draw(st.sampled_from((0.7, 0.5, 1.0)))
    if draw(st.booleans()):
        f["max_false_alarm_rate"] = draw(st.sampled_from((0.3, 0.4, 0.0)))
    if draw(st.booleans()):
        f["min_hit_rate"] = draw(st.sampled_from((0.15, 0.5)))
    if draw(st.booleans()):
        f["false_alarms_below_hits"] = True
    return f


def _validated(mapping: dict, name: str) -> Protocol:
    try:
        return _cached_protocol(mapping, name)
    except UserError:
        reject()  # infeasible (a lag range the drawn counts cannot arrange): draw another


@st.composite
def _scratch(draw, max_count: int, n_steps: tuple[int, int], corrections, filters: bool):
    steps = draw(st.integers(*n_steps))
    t1 = draw(st.integers(1, max_count))
    v1 = draw(st.integers(0, max_count))
    f1 = draw(st.integers(1 if steps > 1 else 0, max_count))
    length = 2 * t1 + 2 * v1 + f1
    lo = min(draw(st.integers(1, 3)), length - 1)
    hi = min(lo + draw(st.integers(0, 3)), length - 1)
    items = [{"role": "target", "count": t1, "repeat_lag": [lo, hi]}]
    if v1:
        vlo = min(draw(st.integers(1, 2)), length - 1)
        vhi = min(vlo + draw(st.integers(0, 1)), length - 1)
        items.append({"role": "vigilance", "count": v1, "repeat_lag": [vlo, vhi]})
    if f1:
        items.append({"role": "filler", "count": f1})
    kind = draw(st.sampled_from(tuple(corrections)))
    corr = dict(CORRECTION_KINDS[kind])
    if kind != "none":
        corr["reference_lag"] = draw(st.integers(lo, hi))
    first = {
        "name": "short-term",
        "length": length,
        "items": items,
        "filters": draw(_filters(v1 > 0)) if filters else {},
        "scoring": {"column": ST, "correction": corr},
    }
    new = t1 + v1 + f1
    all_steps = [first]
    if steps > 1:
        t2 = draw(st.integers(1, f1))
        f2 = draw(st.integers(0, max_count))
        items2 = [{"role": "target", "count": t2, "source": {"step": 1, "roles": ["filler"]}}]
        if f2:
            items2.append({"role": "filler", "count": f2})
        new += f2
        all_steps.append(
            {
                "name": "long-term",
                "length": t2 + f2,
                "delay_h": [24, 72],
                "items": items2,
                "filters": draw(_filters(False)) if filters else {},
                "scoring": {"column": LT, "correction": {"kind": "none"}},
            }
        )
    return _validated(
        {
            "name": "drawn",
            "stimuli": {
                "kind": "video",
                "count": new + _EXTRA_STIMULI,
                "duration_s": 7.0,
                "gap_s": 1.0,
            },
            "steps": all_steps,
            "selection": {"kind": "uniform"},
            "campaign": {
                "arrivals": {"kind": "poisson", "rate_per_h": 60},
                "stop": {"kind": "participants", "count": 10},
            },
        },
        "drawn protocol",
    )


def _scale_lag(x: int, ratio: float) -> int:
    return max(1, int(round(x * ratio)))


@st.composite
def _scaled(draw, base: Protocol, max_count: int | None):
    """The base protocol's structure with fewer items: counts drawn in 1..base count, lags and
    the reference lag scaled with the sequence's length, the pool and campaign made small."""
    d = base.dump()
    ratios = []
    for step in d["steps"]:
        taken: dict[int, int] = {}  # earlier step -> items already drawn from it
        for g in step["items"]:
            hi = g["count"] if max_count is None else min(g["count"], max_count)
            src = g["source"]
            if isinstance(src, dict):
                earlier = d["steps"][src["step"] - 1]["items"]
                eligible = sum(
                    h["count"]
                    for h in earlier
                    if h["role"] in src["roles"] and h["source"] == "new"
                ) - taken.get(src["step"], 0)
                hi = min(hi, eligible)
                if hi < 1:
                    reject()
            g["count"] = draw(st.integers(1, hi))
            if isinstance(src, dict):
                taken[src["step"]] = taken.get(src["step"], 0) + g["count"]
        length = sum(g["count"] * (2 if g["repeat_lag"] else 1) for g in step["items"])
        ratio = length / step["length"]
        ratios.append((ratio, length))
        step["length"] = length
        within = []
        for g in step["items"]:
            if g["repeat_lag"]:
                lo = min(_scale_lag(g["repeat_lag"][0], ratio), length - 1)
                hi = min(max(lo, _scale_lag(g["repeat_lag"][1], ratio)), length - 1)
                g["repeat_lag"] = [lo, hi]
                if g["role"] == "target":
                    within.append((lo, hi))
        corr = step["scoring"]["correction"]
        if "reference_lag" in corr and within:
            lo = min(a for a, _ in within)
            hi = max(b for _, b in within)
            corr["reference_lag"] = min(max(_scale_lag(corr["reference_lag"], ratio), lo), hi)
        n_vig = sum(g["count"] for g in step["items"] if g["role"] == "vigilance")
        if step.get("stop_after_vigilance_misses"):
            step["stop_after_vigilance_misses"] = min(step["stop_after_vigilance_misses"], n_vig)
    new = sum(g["count"] for step in d["steps"] for g in step["items"] if g["source"] == "new")
    d["stimuli"]["count"] = new + _EXTRA_STIMULI
    for pool in ("pool", "later_pool"):
        if d["selection"].get(pool) is not None:
            d["selection"][pool] = d["stimuli"]["count"]
    d["campaign"]["stop"] = {"kind": "participants", "count": 10}
    pilot = d["campaign"].get("pilot")
    if pilot is not None:  # a small pilot on every stimulus, its lags scaled as step 1's
        pilot.update(participants=min(pilot["participants"], 4), stimuli=d["stimuli"]["count"])
        if pilot.get("repeat_lag") is not None:
            ratio, length = ratios[0]
            lo = min(_scale_lag(pilot["repeat_lag"][0], ratio), length - 1)
            hi = min(max(lo, _scale_lag(pilot["repeat_lag"][1], ratio)), length - 1)
            pilot["repeat_lag"] = [lo, hi]
    return _validated(d, f"{base.name} (small copy)")


def _path_set(d: dict, path: str, value) -> None:
    node = d
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def _path_check(d: dict, path: str) -> None:
    node = d
    for part in path.split("."):
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError):
            raise UserError(
                f"vary: {path!r} names no field of the protocol (at {part!r})"
            ) from None


@st.composite
def _varied(draw, base: Protocol, vary: dict):
    d = copy.deepcopy(base.dump())
    for path, strat in vary.items():
        _path_set(d, path, draw(strat))
    for s, step in enumerate(d["steps"]):
        if f"steps.{s}.length" not in vary:  # lengths follow the counts unless varied themselves
            step["length"] = sum(g["count"] * (2 if g["repeat_lag"] else 1) for g in step["items"])
    return _validated(d, f"{base.name} (varied)")


def _as_strategy(path: str, v) -> SearchStrategy:
    if isinstance(v, SearchStrategy):
        return v
    if isinstance(v, range):
        return st.sampled_from(v)
    if isinstance(v, Sequence) and not isinstance(v, str) and len(v):
        return st.sampled_from(tuple(v))
    raise UserError(f"vary: {path!r} needs a strategy, a range or a non-empty list of values")


def protocols(
    base: Protocol | str | None = None,
    *,
    vary: Mapping[str, object] | None = None,
    max_count: int | None = 3,
    steps: int | tuple[int, int] = (1, 2),
    corrections: Sequence[str] = tuple(CORRECTION_KINDS),
    filters: bool = True,
) -> SearchStrategy[Protocol]:
    """Feasible protocols (each passes :func:`memsim.design.protocol.protocol_from_mapping`).

    Parameters
    ----------
    base : Protocol or str, optional
        None: drawn from scratch (step 1: targets, vigilance repeats and fillers; step 2, when
        drawn: targets from step 1's fillers and new fillers; lags 1-6; filters and a step-1
        correction drawn). A protocol or a shipped protocol's name: see ``vary``.
    vary : mapping of str to strategy, range or list, optional
        With ``base``: dotted field paths of the protocol's mapping (``Protocol.dump()``), e.g.
        ``"steps.0.items.0.count"``, each to the values to draw; step lengths follow the
        counts unless a ``steps.N.length`` is varied too. Without ``vary``, a small copy of
        ``base``: every item count drawn in 1..min(its count, ``max_count``), repeat lags
        and the reference lag scaled with the step's length, a pool just large enough.
    max_count : int or None
        Largest item count drawn per group (None: up to the base protocol's own).
    steps : int or (int, int)
        From scratch: the number of steps (1 or 2).
    corrections : sequence of str
        From scratch: the step-1 corrections to draw from (keys of :data:`CORRECTION_KINDS`).
    filters : bool
        From scratch: draw participant filters (else none but completion).

    Returns
    -------
    SearchStrategy of Protocol

    Raises
    ------
    UserError
        An unknown correction name, a ``vary`` path the protocol does not have.
    """
    if base is None:
        bad = [c for c in corrections if c not in CORRECTION_KINDS]
        if bad or not corrections:
            raise UserError(
                f"unknown correction {bad[0] if bad else '(none given)'!r} "
                f"(known: {', '.join(CORRECTION_KINDS)})"
            )
        lo, hi = _range(steps, "steps")
        if not 1 <= lo <= hi <= 2:
            raise UserError(f"steps: drawn protocols have 1 or 2 steps, got {steps!r}")
        if max_count is None or max_count < 1:
            raise UserError("max_count: a protocol drawn from scratch needs a count of at least 1")
        return _scratch(max_count, (lo, hi), tuple(corrections), filters)
    proto = _as_protocol(base)
    if vary is None:
        return _scaled(proto, max_count)
    d = proto.dump()
    for path in vary:
        _path_check(d, path)
    return _varied(proto, {p: _as_strategy(p, v) for p, v in vary.items()})


# --------------------------------------------------------------------------- studies
@st.composite
def _person_draw(draw, lays, n_new: int, width: int, careless: bool, incomplete: bool) -> Person:
    videos = draw(st.binary(min_size=n_new * width, max_size=n_new * width))
    # one draw per decision pair (each draw costs more than its bytes): the false-alarm level,
    # with one more value for a careless player; coming back, with the delay if so
    levels = len(FALSE_ALARM_LEVELS)
    fa = draw(st.integers(0, levels if careless else levels - 1))
    is_careless, fa = fa == levels, fa % levels
    sessions: list = []
    for s, lay in enumerate(lays):
        back = draw(st.integers(0, 256)) if s > 0 else 1  # 0 (the shrink): not coming back
        if not back:
            break
        groups = tuple(draw(st.binary(min_size=n, max_size=n)) for n in lay.group_sizes)
        n_single = len(lay.single_items)
        order = draw(st.binary(min_size=n_single, max_size=n_single))
        delay = back - 1 if s > 0 else 0
        played = lay.length
        if incomplete and draw(st.booleans()):
            played = draw(st.integers(1, lay.length))
        sessions.append(Session(groups, order, delay, played))
    sessions += [None] * (len(lays) - len(sessions))
    return Person(videos, is_careless, fa, tuple(sessions))


_PERSONS: dict = {}


def _person(lays, n_new: int, width: int, careless: bool, incomplete: bool) -> SearchStrategy:
    """The strategy of one participant, built once per layout (building one is not free)."""
    key = (id(lays), n_new, width, careless, incomplete)
    hit = _PERSONS.get(key)
    if hit is None or hit[0] is not lays:
        if len(_PERSONS) > 256:
            _PERSONS.clear()
        hit = _PERSONS[key] = (lays, _person_draw(lays, n_new, width, careless, incomplete))
    return hit[1]


@st.composite
def _studies(
    draw, protocol_st, participants, extra_videos, careless, incomplete, lag_slopes, columns
):
    protocol = draw(protocol_st)
    lays = layout(protocol)
    n_new = sum(len(lay.new_items) for lay in lays)
    n_videos = min(n_new + draw(st.integers(0, extra_videos)), max(n_new, protocol.stimuli.count))
    truth = tuple(
        1.0
        - (
            np.frombuffer(draw(st.binary(min_size=n_videos, max_size=n_videos)), np.uint8)
            % (TRUTH_LEVELS + 1)
        )
        / TRUTH_LEVELS
        for _ in lays
    )
    slopes = tuple(
        draw(st.sampled_from(lag_slopes)) if lay.reference_lag is not None else 0.0 for lay in lays
    )
    width = 1 if n_videos <= 256 else 2
    persons = draw(
        st.lists(
            _person(lays, n_new, width, careless, incomplete),
            min_size=participants[0],
            max_size=participants[1],
        )
    )
    try:
        return build_study(protocol, n_videos, Model(truth, slopes), persons, columns)
    except DeadEnd:
        reject()


def _protocol_strategy(protocol) -> SearchStrategy[Protocol]:
    if protocol is None:
        return protocols()
    if isinstance(protocol, SearchStrategy):
        return protocol
    return st.just(_as_protocol(protocol))


def studies(
    protocol: Protocol | str | SearchStrategy[Protocol] | None = None,
    *,
    participants: int | tuple[int, int] = (1, 4),
    extra_videos: int = 2,
    careless: bool = True,
    incomplete: bool = False,
    lag_slopes: Sequence[float] = LAG_SLOPES,
    columns: Columns | Mapping[str, str] | None = None,
) -> SearchStrategy[Study]:
    """Studies: a log that follows the protocol, and the truth that produced it.

    Parameters
    ----------
    protocol : Protocol, str, strategy of Protocol, or None
        The protocol (a shipped one by name), or a strategy drawing one (None:
        :func:`protocols` from scratch).
    participants : int or (int, int)
        Number of participants (ids 0, 1, ...); each plays step 1 and, drawn, comes back for
        each later step (a participant who did not complete a step does not come back).
    extra_videos : int
        The pool holds the videos one participant needs plus up to this many.
    careless : bool
        Draw careless participants (they press at random, probability 0.5).
    incomplete : bool
        Draw sessions cut short (the log then holds incomplete sessions, as real ones do).
    lag_slopes : sequence of float
        The true change of the hit probability per position of lag, drawn per step that has a
        lag correction (its truth is the hit probability at the reference lag).
    columns : Columns or mapping, optional
        The user's column names; :attr:`Study.log` uses them.

    Returns
    -------
    SearchStrategy of Study
    """
    lo, hi = _range(participants, "participants")
    if hi < 1:
        raise UserError("participants: a log needs at least one participant")
    return _studies(
        _protocol_strategy(protocol),
        (max(lo, 1), hi),
        int(extra_videos),
        bool(careless),
        bool(incomplete),
        tuple(float(x) for x in lag_slopes) or (0.0,),
        as_columns(columns),
    )


def trial_tables(
    protocol: Protocol | str | SearchStrategy[Protocol] | None = None, **kwargs
) -> SearchStrategy:
    """Logs that follow the protocol, in the user's column names (``columns=``): the
    :attr:`Study.log` of :func:`studies` (same arguments)."""
    return studies(protocol, **kwargs).map(lambda s: s.log)


# --------------------------------------------------------------------------- simulated
def simulated_studies(
    protocol: Protocol | str = "videomem",
    params=None,
    *,
    scale: float = 0.004,
    seeds: SearchStrategy[int] | None = None,
    columns: Columns | Mapping[str, str] | None = None,
) -> SearchStrategy[Study]:
    """Studies simulated by memsim (:func:`memsim.sim.simulate.simulate`), with their truth.

    The truth per video is the simulator's expected hit rate at each step's reference delay
    (``videos.parquet``'s ``true_*`` columns), ``participants`` its latent participant table
    (``careless`` among them). The first draw compiles the numba kernels (cached on disk).
    These shrink only to a smaller seed: use :func:`studies` where a failure must shrink to
    a small log.

    Parameters
    ----------
    protocol : Protocol or str
    params : Params, optional
        Population parameters (default: the protocol's shipped calibration, else VideoMem's).
    scale : float
        Stimuli and participants times ``scale`` (0.004: VideoMem with 40 videos).
    seeds : strategy of int, optional
        Default: integers 0..65535.
    columns : Columns or mapping, optional
    """
    proto = _as_protocol(protocol)
    cm = as_columns(columns)

    def simulate_one(seed: int) -> Study:
        from memsim.resources import params_path
        from memsim.sim.params import load_params, own_params_path
        from memsim.sim.simulate import simulate

        # test data, not a study's result: a protocol without a crowd of its own borrows
        # VideoMem's here, as the docstring says (memsim run refuses to)
        own = own_params_path(proto)
        prm = params if params is not None else load_params(own or params_path("videomem"))
        sim = simulate(proto, prm, seed=seed, scale=scale)
        cols = [truth_column(s.scoring.column) for s in sim.protocol.steps]
        return Study(
            protocol=sim.protocol,
            trials=sim.trials,
            truth=sim.videos[["video", *cols]],
            participants=sim.participants,
            lag_slopes=(),
            columns=cm,
            origin=f"simulated, seed {seed}",
        )

    return (seeds if seeds is not None else st.integers(0, 2**16 - 1)).map(simulate_one)
