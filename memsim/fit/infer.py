"""Bayesian calibration: a posterior over the population parameters by neural posterior estimation.

In: a protocol, a base parameter set, a **prior** (``calibration/<protocol>-prior.yaml``: for
each free parameter a range and a shape), the study's targets and released scores. Out: a
posterior over the free parameters given the released data, and the checks that say whether
it can be trusted.

Method (``docs/inference.md``):

1. **Simulations.** ``n`` parameter sets are drawn from the prior (draw ``i`` from its own
   stream, ``SeedSequence([seed, stream, i])``, so a run of ``n`` draws is the start of a run
   of ``2n``), each simulated once with its own seed through the batched path
   (:func:`memsim.sim.batch.simulate_many`), scored like a real log and reduced to the
   calibration's moments (:func:`memsim.fit.calibrate.moments_for`: every ``fit`` target and
   the rank-bin means of the released score distributions). They are kept in chunks
   (:class:`SimulationStore`), each written whole, so an interrupted run resumes where it
   stopped and a larger ``n`` adds to a smaller one.
2. **Statistics.** Each moment is standardised as the calibration's residual is,
   ``(value - target) / tolerance``; the released data are then the zero vector.
3. **Neural posterior estimation** (``sbi``): a conditional normalising flow ``q(u | x)``
   is trained on the pairs ``(u, x)``, ``u`` the parameters' positions in their prior ranges
   (``[0, 1]``; a log-uniform parameter on the log scale), so the prior is uniform on the unit
   box. Conditioning on the released data (``x = 0``) gives the posterior; conditioning on any
   other summary needs no new simulation (:meth:`Estimator.sample`).
   Statistics the prior names in ``emulate`` are left out of the flow and modelled by a
   Gaussian emulator of their values given the parameters instead; the posterior is then the
   flow's times the emulator's likelihood, drawn by Metropolis (:mod:`memsim.fit.emulator`,
   :func:`with_emulator`).
4. **Checks**: simulation-based calibration on held-out simulations (:func:`sbc`: rank of the
   truth among posterior draws, chi-square test of uniformity per parameter; coverage of the
   central 50 % and 90 % intervals) and a recovery table (:func:`recovery_table`).

torch and sbi are imported only inside the functions that train or sample (the ``infer``
extra); the simulations need neither.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from memsim.errors import UserError
from memsim.fit.calibrate import Free, Moment, with_values
from memsim.progress import ProgressCallback, report
from memsim.sim.params import Params

__all__ = [
    "PriorParam",
    "Prior",
    "load_prior",
    "prior_path",
    "standardise",
    "SimulationStore",
    "emulated_columns",
    "with_emulator",
    "ensemble",
    "simulate_prior",
    "Estimator",
    "train",
    "sbc",
    "recovery_table",
    "Typicality",
    "typicality",
    "summarise_samples",
    "TRAIN",
    "HELDOUT",
    "Region",
    "truncation_region",
    "truncated_draws",
]

#: Streams of prior draws: the training simulations and the held-out ones (SBC, recovery);
#: with a truncated second round, its candidates for training and for held-out checks.
#: (Streams 2-4 seed the predictive runs, :func:`run_seed`.)
TRAIN, HELDOUT = 0, 1
TRUNCATED, TRUNCATED_HELDOUT = 5, 6
#: The truncated round keeps the prior's draws inside the round-1 posterior's region of highest
#: density that holds all but this share of its mass (TSNPE; Deistler et al. 2022 use 1e-4) ...
TRUNCATION_QUANTILE = 1e-3
#: ... widened, where that region holds less of the prior, to hold this share of the prior's
#: draws (measured on a pilot of that many): :func:`truncation_region`.
TRUNCATION_PRIOR_SHARE = 0.005
TRUNCATION_PILOT = 100_000

#: A prior file's fields that say how the estimator is made from the simulations, not what is
#: simulated: a folder's simulations serve a prior file that changes only these.
TRAINING_FIELDS = ("emulate", "emulate_conditional", "emulator_layers", "emulator_width", "flows")
#: Simulations per chunk file (part of a store's identity: chunk files are named by their start).
CHUNK = 25
SHAPES = ("uniform", "log-uniform")
#: A prior parameter whose path starts so is a setting of the study's protocol (a nuisance of
#: the campaign that made the data, such as ``protocol.selection.counts_every_participants``),
#: not of the crowd: simulations run the protocol with it set, and studies that take a posterior
#: as their population leave it out (their own protocol says how their campaign runs).
PROTOCOL_PREFIX = "protocol."


# --------------------------------------------------------------------------- the prior
@dataclass(frozen=True)
class PriorParam:
    """One free parameter: its dotted path in the parameter set, its range and its shape."""

    path: str
    lo: float
    hi: float
    shape: str = "uniform"  # or "log-uniform": uniform in log(value)

    @property
    def log(self) -> bool:
        return self.shape == "log-uniform"

    @property
    def on_protocol(self) -> bool:
        """A setting of the study's protocol (``protocol.<dotted path>``), not of the crowd."""
        return self.path.startswith(PROTOCOL_PREFIX)


@dataclass(frozen=True)
class Prior:
    """A prior over free parameters: independent, each uniform (or log-uniform) on its range.

    ``params`` names the base parameter set (a shipped set's name or a file next to the prior
    file) that holds every parameter the prior leaves fixed.
    """

    name: str
    params: str
    parameters: tuple[PriorParam, ...]
    note: str = ""
    # condition on the released annotation counts' rank bins too (calibrate.moments_for)
    count_bins: bool = False
    # condition on the released annotation counts' ECDF at their core counts (moments_for)
    count_cdf: bool = False
    # statistics whose names hold one of these are emulated, not learned by the flow
    # (memsim.fit.emulator; emulated_columns)
    emulate: tuple[str, ...] = ()
    # the emulator's mean takes the flow's statistics as well as the parameters
    emulate_conditional: bool = False
    # the emulator's MLP: hidden layers and their width (None: fit_emulator's own, 3 and 256)
    emulator_layers: int | None = None
    emulator_width: int | None = None
    # the final estimator's flow: an equal mixture of this many, trained with seeds seed,
    # seed + 1, ... on the same simulations (Estimator.members)
    flows: int = 1
    # condition on the correlation of the steps' annotation counts over the videos too
    # (moments_for's count_corr)
    count_corr: bool = False

    @property
    def statistics(self) -> dict[str, bool]:
        """The statistics' options, as :func:`memsim.fit.calibrate.moments_for` takes them."""
        return {
            "count_bins": self.count_bins,
            "count_cdf": self.count_cdf,
            "count_corr": self.count_corr,
        }

    @property
    def paths(self) -> list[str]:
        return [p.path for p in self.parameters]

    @property
    def dim(self) -> int:
        return len(self.parameters)

    def free(self) -> tuple[Free, ...]:
        """The population parameters (the protocol's settings left out)."""
        return tuple(Free(p.path, p.lo, p.hi, p.log) for p in self.parameters if not p.on_protocol)

    @property
    def on_protocol(self) -> np.ndarray:
        """bool[d]: which parameters are settings of the protocol (``protocol.<path>``)."""
        return np.array([p.on_protocol for p in self.parameters], bool)

    def to_values(self, u: np.ndarray) -> np.ndarray:
        """Unit-box positions ``(n, d)`` -> parameter values ``(n, d)``."""
        u = np.asarray(u, float)
        lo = np.array([math.log(p.lo) if p.log else p.lo for p in self.parameters])
        hi = np.array([math.log(p.hi) if p.log else p.hi for p in self.parameters])
        v = lo + u * (hi - lo)
        logs = np.array([p.log for p in self.parameters])
        # rounding (exp of a log bound) must not step outside the range
        return np.clip(
            np.where(logs, np.exp(np.where(logs, v, 0.0)), v),
            [p.lo for p in self.parameters],
            [p.hi for p in self.parameters],
        )

    def to_unit(self, values: np.ndarray) -> np.ndarray:
        """Parameter values ``(n, d)`` -> unit-box positions (outside [0, 1] when out of range)."""
        values = np.asarray(values, float)
        logs = np.array([p.log for p in self.parameters])
        lo = np.array([math.log(p.lo) if p.log else p.lo for p in self.parameters])
        hi = np.array([math.log(p.hi) if p.log else p.hi for p in self.parameters])
        with np.errstate(divide="ignore", invalid="ignore"):
            v = np.where(logs, np.log(np.where(logs, values, 1.0)), values)
        return (v - lo) / (hi - lo)

    def draw_unit(self, seed: int, stream: int, start: int, n: int) -> np.ndarray:
        """Draws ``start .. start+n-1`` of a stream, each from its own generator: ``(n, d)``."""
        return np.array(
            [
                np.random.default_rng(np.random.SeedSequence([int(seed), stream, i])).random(
                    self.dim
                )
                for i in range(start, start + n)
            ]
        ).reshape(n, self.dim)

    def params_at(self, base: Params, values: np.ndarray, **meta) -> Params:
        """``base`` with the prior's population parameters set to ``values`` (all ``d`` of
        them, in the prior's order; the protocol's settings among them are skipped)."""
        values = np.asarray(values, float)
        return with_values(base, self.free(), values[~self.on_protocol], **meta)

    def protocol_at(self, protocol, values: np.ndarray):
        """``protocol`` with the prior's protocol settings set to ``values`` (all ``d``, in
        the prior's order); ``protocol`` itself when the prior has none. A setting that is an
        integer in the protocol (a count of participants, say) is rounded to one."""
        from memsim.paths import get_path

        if not self.on_protocol.any():
            return protocol
        d = protocol.dump()
        changes = {}
        for p, v in zip(self.parameters, np.asarray(values, float)):
            if p.on_protocol:
                key = p.path[len(PROTOCOL_PREFIX) :]
                old = get_path(d, key)
                changes[key] = int(round(v)) if isinstance(old, int) else float(v)
        return protocol.updated(changes)

    def protocol_values(self, protocol) -> np.ndarray:
        """The protocol's own values of the prior's protocol settings, in their order."""
        from memsim.paths import get_path

        d = protocol.dump()
        return np.array(
            [get_path(d, p.path[len(PROTOCOL_PREFIX) :]) for p in self.parameters if p.on_protocol],
            float,
        )

    @classmethod
    def from_dump(cls, d: dict) -> Prior:
        """The prior :meth:`dump` wrote (an estimator file's copy)."""
        return cls(
            d["name"],
            d["params"],
            tuple(PriorParam(**p) for p in d["parameters"]),
            d.get("note", ""),
            bool(d.get("count_bins", False)),
            bool(d.get("count_cdf", False)),
            tuple(d.get("emulate", ())),
            bool(d.get("emulate_conditional", False)),
            d.get("emulator_layers"),
            d.get("emulator_width"),
            int(d.get("flows", 1)),
            count_corr=bool(d.get("count_corr", False)),
        )

    def dump(self) -> dict:
        out = {
            "name": self.name,
            "params": self.params,
            "note": self.note,
            "parameters": [
                {"path": p.path, "lo": p.lo, "hi": p.hi, "shape": p.shape} for p in self.parameters
            ],
        }
        if self.count_bins:  # absent when off: the dumps of priors without it stay as they were
            out["count_bins"] = True
        if self.count_cdf:
            out["count_cdf"] = True
        if self.count_corr:
            out["count_corr"] = True
        if self.emulate:
            out["emulate"] = list(self.emulate)
        if self.emulate_conditional:
            out["emulate_conditional"] = True
        for key in ("emulator_layers", "emulator_width"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.flows != 1:
            out["flows"] = self.flows
        return out


def run_seed(seed: int, stream: int, i: int) -> int:
    """The simulation seed of draw ``i`` of ``stream`` (in [0, 2**63))."""
    state = np.random.SeedSequence([int(seed), stream, i, 7]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & (2**63 - 1)


def prior_path(protocol_name: str) -> Path | None:
    """The shipped prior of a protocol (``calibration/<name>-prior.yaml``), or None."""
    from memsim.resources import shipped_dir

    path = shipped_dir("calibration") / f"{protocol_name}-prior.yaml"
    return path if path.is_file() else None


def load_prior(path: str | os.PathLike[str]) -> Prior:
    """Read and check a prior file; one-line :class:`UserError` naming the field otherwise.

    The file: ``name``, ``params`` (the base set), optional ``note``, optional
    ``count_bins`` (true: the statistics include the released annotation counts' rank bins),
    optional ``count_cdf`` (true: they include the share of videos at or below each core count
    of the released counts, :func:`memsim.fit.calibrate.count_cdf_points`), optional
    ``count_corr`` (true: they include the correlation of consecutive steps' annotation counts
    over the videos, :func:`memsim.analysis.consistency.count_correlation`), optional
    ``emulate`` (a list of parts of statistics' names: the statistics whose name holds one are
    modelled by an emulated likelihood instead of the flow, :func:`emulated_columns`),
    optional ``emulate_conditional`` (true: that likelihood is the emulated statistics' given
    the flow's statistics as well as the parameters, :mod:`memsim.fit.emulator`; needs
    ``emulate``), optional ``emulator_layers`` and ``emulator_width`` (the emulator's MLP:
    hidden layers and their width, integers >= 1; need ``emulate``), optional ``flows`` (the
    final estimator's flow as an equal mixture of this many, each trained with its own seed on
    the same simulations, :attr:`Estimator.members`; an integer >= 1, default 1), and
    ``parameters``: a list of ``{path, lo, hi, shape}`` (``shape``
    ``uniform`` or ``log-uniform``, the latter with ``lo > 0``). A ``path`` names a number of
    the base set, or, as ``protocol.<dotted path>``, a setting of the protocol (a nuisance of
    the campaign that made the data: :data:`PROTOCOL_PREFIX`).
    """
    from memsim.io import load_yaml_mapping

    path = Path(path)
    d = load_yaml_mapping(path, "prior file")

    def bad(why: str) -> UserError:
        return UserError(why, path=path)

    fields = ("name", "params", "note", "count_bins", "count_cdf", "count_corr",
              *TRAINING_FIELDS, "parameters")  # fmt: skip
    extra = set(d) - set(fields)
    if extra:
        raise bad(f"unknown field {sorted(extra)[0]!r} (fields: {', '.join(fields)})")
    emulate = d.get("emulate", [])
    if not isinstance(emulate, list) or not all(isinstance(e, str) and e for e in emulate):
        raise bad(f"emulate: must be a list of parts of statistics' names, got {emulate!r}")
    for flag in ("count_bins", "count_cdf", "count_corr", "emulate_conditional"):
        if not isinstance(d.get(flag, False), bool):
            raise bad(f"{flag}: must be true or false, got {d[flag]!r}")
    if d.get("emulate_conditional", False) and not emulate:
        raise bad("emulate_conditional: needs emulate (the statistics to emulate)")
    for key in ("emulator_layers", "emulator_width", "flows"):
        v = d.get(key, 1)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise bad(f"{key}: must be an integer of at least 1, got {v!r}")
        if key.startswith("emulator") and key in d and not emulate:
            raise bad(f"{key}: needs emulate (the statistics to emulate)")
    for key in ("name", "params", "parameters"):
        if key not in d:
            raise bad(f"{key}: missing")
    if not isinstance(d["parameters"], list) or not d["parameters"]:
        raise bad("parameters: must be a non-empty list")
    out = []
    for k, item in enumerate(d["parameters"]):
        where = f"parameters.{k}"
        if not isinstance(item, dict):
            raise bad(f"{where}: must be a mapping {{path, lo, hi, shape}}")
        unknown = set(item) - {"path", "lo", "hi", "shape"}
        if unknown:
            raise bad(f"{where}: unknown field {sorted(unknown)[0]!r}")
        try:
            p = PriorParam(
                str(item["path"]),
                float(item["lo"]),
                float(item["hi"]),
                item.get("shape", "uniform"),
            )
        except KeyError as exc:
            raise bad(f"{where}.{exc.args[0]}: missing") from None
        except (TypeError, ValueError):
            raise bad(f"{where}: lo and hi must be numbers") from None
        if p.shape not in SHAPES:
            raise bad(f"{where}.shape: must be one of {', '.join(SHAPES)}, got {p.shape!r}")
        if not (math.isfinite(p.lo) and math.isfinite(p.hi) and p.lo < p.hi):
            raise bad(f"{where}: needs finite lo < hi, got {p.lo}, {p.hi}")
        if p.log and p.lo <= 0:
            raise bad(f"{where}: a log-uniform range needs lo > 0, got {p.lo}")
        out.append(p)
    paths = [p.path for p in out]
    dup = {x for x in paths if paths.count(x) > 1}
    if dup:
        raise bad(f"parameters: {sorted(dup)[0]!r} is given twice")
    return Prior(
        str(d["name"]),
        str(d["params"]),
        tuple(out),
        str(d.get("note", "")),
        bool(d.get("count_bins", False)),
        bool(d.get("count_cdf", False)),
        tuple(emulate),
        bool(d.get("emulate_conditional", False)),
        d.get("emulator_layers"),
        d.get("emulator_width"),
        d.get("flows", 1),
        count_corr=bool(d.get("count_corr", False)),
    )


def emulated_columns(prior: Prior, moments: list[Moment], where=None) -> list[int]:
    """The positions of the statistics the prior's ``emulate`` names (a statistic is emulated
    when its name holds one of the parts). A part that names no statistic, or parts that take
    every statistic, are a one-line :class:`UserError`."""
    names = [m.name for m in moments]
    for part in prior.emulate:
        if not any(part in n for n in names):
            raise UserError(f"emulate: {part!r} is in no statistic's name", path=where)
    cols = [j for j, n in enumerate(names) if any(part in n for part in prior.emulate)]
    if prior.emulate and len(cols) == len(names):
        raise UserError("emulate: takes every statistic; the flow needs some", path=where)
    return cols


def check_prior(prior: Prior, base: Params, where: str | os.PathLike[str], protocol=None) -> None:
    """Every path of the prior names a number of ``base`` (or, ``protocol.<path>``, of
    ``protocol``), and every draw makes a valid set and protocol."""
    from memsim.paths import get_path

    d = base.dump()
    pd_ = protocol.dump() if protocol is not None else None
    for k, p in enumerate(prior.parameters):
        if p.on_protocol and pd_ is None:
            raise UserError(
                f"parameters.{k}.path: {p.path!r} is a protocol setting, and no protocol was given",
                path=where,
            )
        src, key, what = (
            (pd_, p.path[len(PROTOCOL_PREFIX) :], f"the protocol {protocol.name}")
            if p.on_protocol
            else (d, p.path, f"the parameter set {base.name}")
        )
        try:
            v = get_path(src, key)
        except KeyError:
            raise UserError(
                f"parameters.{k}.path: {p.path!r} names no field of {what}", path=where
            ) from None
        if v is None and p.on_protocol:
            # an optional setting left out of the protocol: the prior cannot vary it from nothing
            raise UserError(
                f"parameters.{k}.path: {p.path!r} is not set in {what}; set it to a number "
                f"in a copy of the protocol to vary it",
                path=where,
            )
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise UserError(f"parameters.{k}.path: {p.path!r} is not a number", path=where)
    for corner in (np.zeros(prior.dim), np.ones(prior.dim), np.full(prior.dim, 0.5)):
        values = prior.to_values(corner[None])[0]
        prior.params_at(base, values)  # UserError names the field
        if protocol is not None:
            try:
                prior.protocol_at(protocol, values)
            except UserError as exc:
                raise UserError(f"a draw of the prior: {exc}", path=where) from None


# --------------------------------------------------------------------------- statistics
def standardise(values: np.ndarray, moments: list[Moment]) -> np.ndarray:
    """Raw moment values ``(n, m)`` -> the calibration's residuals ``(value - target) / tolerance``.

    The released data are the zero vector in these units.
    """
    target = np.array([m.value for m in moments])
    scale = np.array([m.scale for m in moments])
    return (np.asarray(values, float) - target) / scale


def moment_values(summary: dict, moments: list[Moment]) -> np.ndarray:
    """The moments' raw values in one summary (NaN where the statistic is missing)."""
    from memsim.fit.compare import lookup

    return np.array([lookup(summary, m.path) for m in moments], float)


# --------------------------------------------------------------------------- simulations
_W: dict = {}


def _init(protocol, base, prior, moments, scale, real, threads=1) -> None:
    import numba

    from memsim.sim.simulate import prepare

    numba.set_num_threads(threads)  # one process per core; no oversubscription
    _W.update(
        protocol=protocol,
        scale=scale,
        prepared=prepare(protocol, scale),
        base=base,
        prior=prior,
        moments=moments,
        real=real,
        workspace={},
    )


def _prepared_at(w: dict, prior: Prior, values: np.ndarray):
    """The worker's prepared protocol, with the prior's protocol settings (if any) at
    ``values``: prepared once per distinct setting (the last one is kept)."""
    from memsim.sim.simulate import prepare

    if not prior.on_protocol.any():
        return w["prepared"]
    key = tuple(np.asarray(values, float)[prior.on_protocol])
    if w.get("prepared_key") != key:
        w["prepared_at"] = prepare(prior.protocol_at(w["protocol"], values), w["scale"])
        w["prepared_key"] = key
    return w["prepared_at"]


def _one(arrays, real, moments) -> np.ndarray:
    from memsim.fit.calibrate import summarise_arrays

    paths = [m.path for m in moments]  # only the analyses the moments read
    return moment_values(summarise_arrays(arrays, real, paths=paths), moments)


def _chunk(job: tuple) -> dict:
    """Simulate draws ``start .. start+n-1`` of a stream: their unit positions and moments
    (the positions drawn from the stream, or given as the job's fifth element)."""
    from memsim.sim.batch import simulate_many

    seed, stream, start, n, *given = job
    prior: Prior = _W["prior"]
    u = given[0] if given and given[0] is not None else prior.draw_unit(seed, stream, start, n)
    values = prior.to_values(u)
    x = np.full((n, len(_W["moments"])), np.nan)
    errors = [""] * n
    seeds = np.array([run_seed(seed, stream, i) for i in range(start, start + n)], np.int64)
    summarise = functools.partial(_one, real=_W["real"], moments=_W["moments"])
    for k in range(n):
        try:
            # one run per call: a draw where the study degenerates fails alone
            (x[k],) = simulate_many(
                _prepared_at(_W, prior, values[k]),
                [(prior.params_at(_W["base"], values[k]), int(seeds[k]))],
                summarise,
                workspace=_W["workspace"],
            )
        except (ValueError, ZeroDivisionError, IndexError, FloatingPointError, UserError) as exc:
            errors[k] = f"{type(exc).__name__}: {exc}"[:200]
    return {"start": start, "u": u, "x": x, "seeds": seeds, "errors": errors}


class SimulationStore:
    """Simulations kept in ``folder`` as chunks, each written whole: resumable and extendable.

    ``settings.json`` holds what the simulations depend on (protocol, base set, prior, moments,
    scale, seed); a store made with other settings is refused. Chunk files are
    ``<stream>-<start>.npz`` with ``u`` (unit positions), ``x`` (raw moments), ``seeds`` and
    ``errors`` (empty where the run worked).
    """

    def __init__(self, folder: str | os.PathLike[str], settings: dict, force: bool = False):
        from memsim.io import make_dirs, write_text_atomic

        self.folder = Path(folder)
        self.settings = settings
        path = self.folder / "settings.json"
        text = json.dumps(settings, sort_keys=True, indent=1)
        if path.exists() and not force:
            try:
                old = json.loads(path.read_text())
            except (OSError, ValueError):
                old = None
            if old != json.loads(text):
                raise UserError(
                    "the simulations there were made with other settings (protocol, parameters, "
                    "prior, targets, scale or seed): use another --out, or --force to start over",
                    path=self.folder,
                )
            return
        make_dirs(self.folder)
        if force:
            for f in self.folder.glob("*.npz"):
                f.unlink()
        write_text_atomic(path, text + "\n")

    def _name(self, stream: int, start: int) -> Path:
        return self.folder / f"{stream}-{start:08d}.npz"

    def have(self, stream: int, start: int, count: int, u: np.ndarray | None = None) -> bool:
        """Whether the chunk at ``start`` holds at least ``count`` simulations (a shorter one,
        the last chunk of a smaller run, is simulated again whole), at the unit positions ``u``
        when given (a truncated round's draws depend on the estimator before it)."""
        path = self._name(stream, start)
        if not path.is_file():
            return False
        try:
            with np.load(path) as z:
                if len(z["seeds"]) < count:
                    return False
                return u is None or np.array_equal(z["u"][:count], u)
        except (OSError, ValueError, KeyError):  # unreadable: simulate it again
            return False

    def write(self, stream: int, chunk: dict) -> None:
        from memsim.io import atomic_path

        with atomic_path(self._name(stream, chunk["start"])) as tmp, open(tmp, "wb") as fh:
            np.savez(
                fh,
                u=chunk["u"],
                x=chunk["x"],
                seeds=chunk["seeds"],
                errors=np.array(chunk["errors"], dtype=str),
            )

    def load(self, stream: int, n: int | None = None) -> dict:
        """The first ``n`` simulations of ``stream`` (every chunk must be there); ``n`` None:
        every one stored, from the first chunk to the first missing one."""
        parts = []
        for f in sorted(self.folder.glob(f"{stream}-*.npz")):
            start = int(f.stem.split("-")[1])
            if n is not None and start >= n:
                continue
            with np.load(f) as z:
                parts.append((start, {k: z[k] for k in ("u", "x", "seeds", "errors")}))
        parts.sort(key=lambda t: t[0])
        got, at = 0, 0
        for start, p in parts:
            if start != at:  # a gap: a chunk is missing
                break
            got = at = start + len(p["u"])
        if n is None:
            if not got:
                raise UserError(f"no simulations of stream {stream}", path=self.folder)
            n = got
        if got < n:
            raise UserError(f"only {got} of {n} simulations of stream {stream}", path=self.folder)
        cat = {k: np.concatenate([p[k] for _, p in parts])[:n] for k in ("u", "x", "seeds")}
        cat["errors"] = np.concatenate([p["errors"] for _, p in parts])[:n]
        return cat


def simulate_prior(
    protocol,
    base: Params,
    prior: Prior,
    moments: list[Moment],
    store: SimulationStore,
    *,
    n: int,
    stream: int = TRAIN,
    seed: int = 0,
    scale: float = 1.0,
    real=None,
    workers: int = 1,
    chunk: int = CHUNK,
    progress: ProgressCallback | None = None,
    u: np.ndarray | None = None,
) -> dict:
    """Simulate the first ``n`` prior draws of ``stream`` not yet in ``store``; return all ``n``.

    ``u`` ``(n, d)``: simulate these unit positions instead of the stream's own draws (a
    truncated round's, :func:`truncated_draws`); run seeds still come from the stream.
    Returns a dict: ``u`` ``(n, d)`` unit positions, ``x`` ``(n, m)`` raw moments (NaN where a
    statistic is missing), ``seeds``, ``errors``, and ``seconds`` (simulating now) and
    ``new`` (runs simulated now).
    """
    if u is not None and len(u) != n:
        raise ValueError(f"{len(u)} unit positions for {n} simulations")

    def part(s: int):
        return None if u is None else np.asarray(u[s : s + min(chunk, n - s)], float)

    jobs = [
        (int(seed), stream, s, min(chunk, n - s), part(s))
        for s in range(0, n, chunk)
        if not store.have(stream, s, min(chunk, n - s), part(s))
    ]
    what = "held-out simulations" if stream in (HELDOUT, TRUNCATED_HELDOUT) else "simulations"
    done = n - sum(j[3] for j in jobs)
    t0 = time.perf_counter()
    report(progress, "infer", what, done, n, unit="runs")
    if jobs:
        if workers > 1:
            from concurrent.futures import ProcessPoolExecutor

            from memsim.io import in_worker, spawn_context

            with ProcessPoolExecutor(
                workers,
                mp_context=spawn_context(),
                initializer=in_worker,
                initargs=(os.getpid(), _init, protocol, base, prior, moments, scale, real),
            ) as pool:
                for res in pool.map(_chunk, jobs):
                    store.write(stream, res)
                    done += len(res["u"])
                    report(progress, "infer", what, done, n, unit="runs")
        else:
            import numba

            _init(protocol, base, prior, moments, scale, real, numba.config.NUMBA_NUM_THREADS)
            for job in jobs:
                res = _chunk(job)
                store.write(stream, res)
                done += len(res["u"])
                report(progress, "infer", what, done, n, unit="runs")
    out = store.load(stream, n)
    out["seconds"] = time.perf_counter() - t0
    out["new"] = sum(j[3] for j in jobs)
    return out


@dataclass(frozen=True)
class Region:
    """Where a truncated round draws: unit positions whose round-1 posterior density given the
    released data (in the estimator's logit coordinates) is at least ``threshold``.

    ``prior_share``: the share of the prior's draws inside (of the pilot's candidates);
    ``posterior_mass``: the share of the round-1 posterior's own draws inside.
    """

    threshold: float
    prior_share: float
    posterior_mass: float


def truncation_region(
    est: Estimator,
    prior: Prior,
    *,
    seed: int = 0,
    quantile: float | None = None,
    prior_share: float | None = None,
    pilot: int | None = None,
    batch: int = 4096,
) -> Region:
    """The region a truncated round draws from (TSNPE's truncated prior, Deistler et al. 2022).

    The round-1 posterior's highest-density region that holds all but ``quantile`` of its
    mass, widened, where that holds less of the prior, to the region of the same shape that
    holds ``prior_share`` of it (the ``1 - prior_share`` quantile of the density at the first
    ``pilot`` prior draws of the :data:`TRUNCATED` stream). In 21 dimensions the posterior's
    own 99.9 % region holds too little of the prior to be drawn from by rejection
    (docs/inference.md); the wider region still holds the whole posterior, and the round's
    draws are the prior's own, so inside it the round's proposal has the prior's shape.
    Same seed, same estimator: the same region. ``None``: :data:`TRUNCATION_QUANTILE`,
    :data:`TRUNCATION_PRIOR_SHARE`, :data:`TRUNCATION_PILOT`.
    """
    quantile = TRUNCATION_QUANTILE if quantile is None else quantile
    prior_share = TRUNCATION_PRIOR_SHARE if prior_share is None else prior_share
    pilot = TRUNCATION_PILOT if pilot is None else pilot
    lp_post = est.log_prob(est.sample(10_000, seed=seed), logit=True)
    lp_pilot = np.concatenate(
        [lp for _, lp in _candidates(est, prior, seed, TRUNCATED, 0, pilot, batch)]
    )
    threshold = min(
        float(np.quantile(lp_post, quantile)), float(np.quantile(lp_pilot, 1 - prior_share))
    )
    return Region(
        threshold,
        float((lp_pilot >= threshold).mean()),
        float((lp_post >= threshold).mean()),
    )


def _candidates(est, prior, seed, stream, start, n, batch):
    """Prior draws ``start .. start+n-1`` of a stream with their round-1 log density (logit
    coordinates), in fixed batches of ``batch`` (the same batches, the same floating-point
    result): yields ``(u, log_prob)`` per batch."""
    for s in range(start, start + n, batch):
        u = prior.draw_unit(seed, stream, s, min(batch, start + n - s))
        yield u, est.log_prob(u, logit=True)


def truncated_draws(
    est: Estimator,
    prior: Prior,
    n: int,
    region: Region,
    *,
    seed: int = 0,
    stream: int = TRUNCATED,
    batch: int = 4096,
    max_candidates: int = 5_000_000,
) -> dict:
    """``n`` prior draws inside ``region``: the prior's draws of ``stream``, in order, kept where
    the round-1 density is at least the region's threshold. Same seed, same estimator: the
    same draws.

    Returns ``u`` ``(n, d)`` and ``acceptance`` (kept / candidates examined).
    """
    kept: list[np.ndarray] = []
    got = tried = 0
    for u, lp in _candidates(est, prior, seed, stream, 0, max_candidates, batch):
        tried += len(u)
        kept.append(u[lp >= region.threshold])
        got += len(kept[-1])
        if got >= n:
            break
    if got < n:
        raise UserError(
            f"only {got} of {n} prior draws fell inside the posterior's region in "
            f"{tried:,} tries: the round-1 posterior is too narrow to truncate to"
        )
    return {"u": np.concatenate(kept)[:n], "acceptance": got / tried}


# --------------------------------------------------------------------------- the estimator
def _device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device here (torch.cuda.is_available() is False)")
    if device not in ("cpu", "cuda"):
        raise UserError(f"--device must be auto, cpu or cuda, got {device!r}")
    return device


# A statistic whose sd over the training simulations is below this (in its standardised units)
# is held at 0: sbi z-scores each statistic by its sd, and a near-constant one (a count bin the
# protocol's floor fixes, say) would blow a rare deviation up to an outlier of thousands of sds.
CONSTANT_SD = 1e-3


def constant_statistics(x_std: np.ndarray) -> list[int]:
    """Columns of ``x_std`` (simulations x statistics) whose sd is below :data:`CONSTANT_SD`."""
    sd = np.nanstd(np.asarray(x_std, float), axis=0)
    return [int(i) for i in np.flatnonzero(sd < CONSTANT_SD)]


def _held(x: np.ndarray, cols: list[int]) -> np.ndarray:
    """``x`` with the statistics ``cols`` (those training held constant) set to 0."""
    if cols:
        x = np.array(x, float)
        x[..., cols] = 0.0
    return x


@dataclass
class Estimator:
    """A trained neural posterior estimator over a prior's unit box.

    The flow is trained on the logits of the unit positions, where the uniform prior is a
    logistic one on the whole real line: no draw falls outside the prior (a flow over the box
    itself leaks mass past its edges, which sbi then rejects, slowly, draw by draw).

    Attributes
    ----------
    posterior : sbi DirectPosterior
        ``q(logit u | x)``, ``x`` the standardised moments.
    prior : Prior
    moments : list of Moment
        The statistics, in order, and their standardisation.
    info : dict
        Training facts: simulations used and dropped, epochs, seconds, device, seed.
    emulator : Emulator, optional
        With one, the flow learned ``q(u | x_r)`` from the other statistics only, and the
        posterior is ``q(u | x_r) N(x_c; m(u), S)`` (``m(u, x_r)`` for an emulator given the
        flow's statistics; :mod:`memsim.fit.emulator`), drawn by
        Metropolis (:meth:`mcmc`); :meth:`sample`, :meth:`sample_batched` and
        :meth:`log_prob` (then up to a constant per ``x``) take the whole statistics vector
        either way.
    members : tuple of sbi DirectPosterior
        With a prior's ``flows`` above 1, the ensemble's other flows, trained with their own
        seeds on the same simulations: the flow's density is then the equal mixture of
        :attr:`posterior` and these (:attr:`flows`), and its draws are the mixture's.
    """

    posterior: object
    prior: Prior
    moments: list
    info: dict
    emulator: object = None
    members: tuple = ()

    @property
    def flows(self) -> tuple:
        """The flows whose equal mixture is the flow's density: :attr:`posterior`, then
        :attr:`members`."""
        return (self.posterior, *self.members)

    @property
    def held(self) -> list[int]:
        """The statistics training held at 0 (:func:`constant_statistics`), counted among
        those the flow sees."""
        return self.info.get("constant_statistics", [])

    @property
    def flow_columns(self) -> list[int]:
        """The statistics the flow conditions on (all but the emulated ones)."""
        skip = set(self.emulator.columns) if self.emulator is not None else set()
        return [j for j in range(len(self.moments)) if j not in skip]

    @property
    def flow_varying(self) -> list[int]:
        """The statistics the flow conditions on less those training held constant, as
        positions in the whole statistics vector."""
        return [j for i, j in enumerate(self.flow_columns) if i not in self.held]

    def _flow_x(self, x: np.ndarray | None) -> np.ndarray:
        """The flow's conditioning vector(s) from whole statistics vector(s) ``x``."""
        x = np.zeros(len(self.moments)) if x is None else np.asarray(x, float)
        if self.emulator is not None:
            x = x[..., self.flow_columns]
        return _held(x, self.held)

    def _emulated_x(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The emulated statistics of whole statistics vector(s) ``x``, and the statistics
        the emulator is given besides the parameters (None where it is given none)."""
        emu = self.emulator
        given = x[..., list(emu.given)] if emu.given else None
        return x[..., list(emu.columns)], given

    def sample(self, n: int, x: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
        """``n`` posterior draws (unit positions ``(n, d)``) given standardised moments ``x``
        (default: the released data, the zero vector). Same seed, same draws."""
        import torch

        if self.emulator is not None:
            xs = np.zeros(len(self.moments)) if x is None else np.asarray(x, float)
            return self.mcmc(n, xs[None], seed=seed)[0][:, 0]
        x = self._flow_x(x)
        if self.members:
            return from_logit(self._flow_draws(n, x[None], seed)[:, 0])
        torch.manual_seed(int(seed))
        dev = self.info.get("device", "cpu")
        xt = torch.as_tensor(x, dtype=torch.float32, device=dev)[None]
        s = self.posterior.sample((int(n),), x=xt, show_progress_bars=False)
        return from_logit(s.detach().cpu().numpy().astype(float))

    def sample_batched(self, n: int, xs: np.ndarray, seed: int = 0) -> np.ndarray:
        """``n`` draws for each row of ``xs``: ``(n, len(xs), d)``."""
        if self.emulator is not None:
            return self.mcmc(n, xs, seed=seed)[0]
        return from_logit(self._flow_draws(n, self._flow_x(xs), seed))

    def flow_sample_batched(self, n: int, xs: np.ndarray, seed: int = 0) -> np.ndarray:
        """The flow's own ``n`` draws for each row of whole statistics vectors ``xs`` (unit
        positions ``(n, len(xs), d)``), without the emulated statistics' likelihood: what the
        Metropolis chains start from, and what the flow alone says. Same seed, same draws."""
        return from_logit(self._flow_draws(n, self._flow_x(xs), seed))

    def emulated_statistics(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Of whole statistics vector(s) ``x``: the emulated statistics, and those the emulator
        is given besides the parameters (None where it is given none, or where nothing is
        emulated, when the first is None too)."""
        if self.emulator is None:
            return None, None
        return self._emulated_x(np.asarray(x, float))

    def _flow_draws(self, n: int, xf: np.ndarray, seed: int) -> np.ndarray:
        """The flow's own draws ``(n, len(xf), d)`` in logits, given its conditioning rows.
        An ensemble's are the mixture's, stratified: each flow gives its equal share (the
        first ``n % K`` one more), drawn with seed ``(seed, k)``, in an order shuffled with
        ``seed``."""
        import torch

        dev = self.info.get("device", "cpu")
        xt = torch.as_tensor(xf, dtype=torch.float32, device=dev)
        if not self.members:
            torch.manual_seed(int(seed))
            s = self.posterior.sample_batched((int(n),), x=xt, show_progress_bars=False)
            return s.detach().cpu().numpy().astype(float)
        flows = self.flows
        parts = []
        for k, post in enumerate(flows):
            m = int(n) // len(flows) + (k < int(n) % len(flows))
            torch.manual_seed(int(np.random.SeedSequence([int(seed), k]).generate_state(1)[0]))
            s = post.sample_batched((m,), x=xt, show_progress_bars=False)
            parts.append(s.detach().cpu().numpy().astype(float))
        order = np.random.default_rng(int(seed)).permutation(int(n))
        return np.concatenate(parts)[order]

    def _flow_log_prob(self, t: np.ndarray, xf: np.ndarray) -> np.ndarray:
        """The flow's log density of logits ``t`` ``(n, d)``, row ``i`` given ``xf[i]``."""
        import torch

        dev = self.info.get("device", "cpu")
        tt = torch.as_tensor(t, dtype=torch.float32, device=dev)[None]
        xt = torch.as_tensor(xf, dtype=torch.float32, device=dev)
        with torch.no_grad():
            lps = [post.posterior_estimator.log_prob(tt, condition=xt)[0] for post in self.flows]
        return _mixture([lp.cpu().numpy().astype(float) for lp in lps])

    def mcmc(
        self,
        n: int,
        xs: np.ndarray,
        *,
        seed: int = 0,
        steps: int | None = None,
        start: str = "flow",
        progress: ProgressCallback | None = None,
    ) -> tuple[np.ndarray, float]:
        """``n`` draws for each row of ``xs`` from the flow times the emulator, by Metropolis
        (:func:`memsim.fit.emulator.metropolis`: ``ceil(n / MCMC_KEEP)`` chains per row, at
        least ``MCMC_MIN_CHAINS``, ``steps`` steps, default ``MCMC_STEPS``). ``start``: where
        the chains start, ``flow`` (the flow's own draws given that row, wider than the
        product) or ``tempered`` (``MCMC_CANDIDATES`` of the flow's draws per chain, resampled
        by a tempered likelihood, :func:`memsim.fit.emulator.tempered_start`: nearer the
        product, which the chains then come closer to; docs/inference-record.md measures both).
        Returns the draws ``(n, len(xs), d)`` and the acceptance rate. Same seed, same draws."""
        from memsim.fit.emulator import (
            MCMC_CANDIDATES,
            MCMC_KEEP,
            MCMC_MIN_CHAINS,
            MCMC_STARTS,
            MCMC_STEPS,
            metropolis,
            tempered_start,
        )

        if start not in MCMC_STARTS:
            raise ValueError(f"start must be one of {', '.join(MCMC_STARTS)}, got {start!r}")
        emu = self.emulator
        xs = np.atleast_2d(np.asarray(xs, float))
        chains = max(-(-int(n) // MCMC_KEEP), MCMC_MIN_CHAINS)
        xf = self._flow_x(xs)
        if start == "flow":
            init = self._flow_draws(chains, xf, seed).transpose(1, 0, 2)  # (groups, chains, d)
        else:
            k = chains * MCMC_CANDIDATES
            cands = self._flow_draws(k, xf, seed).transpose(1, 0, 2)  # (groups, candidates, d)
            obs_k, given_k = (_repeat(a, k) for a in self._emulated_x(xs))
            flat = cands.reshape(-1, cands.shape[-1])
            ll = emu.log_lik(flat, obs_k, given_k).reshape(len(xs), k)
            init, _ = tempered_start(cands, ll, chains, seed=seed)
        d = init.shape[-1]
        cond = np.repeat(xf, chains, axis=0)
        obs, given = (_repeat(a, chains) for a in self._emulated_x(xs))

        def log_target(t: np.ndarray) -> np.ndarray:
            flat = t.reshape(-1, d)
            lp = self._flow_log_prob(flat, cond) + emu.log_lik(flat, obs, given)
            return lp.reshape(t.shape[:2])

        draws, acceptance = metropolis(
            log_target, init, steps=MCMC_STEPS if steps is None else steps, keep=MCMC_KEEP,
            seed=seed, progress=progress,
        )  # fmt: skip
        return from_logit(draws[:, : int(n)].transpose(1, 0, 2)), acceptance

    def log_prob(
        self, u: np.ndarray, x: np.ndarray | None = None, *, logit: bool = False
    ) -> np.ndarray:
        """Posterior log density of unit positions ``u`` ``(n, d)`` given ``x``; with ``logit``,
        the density of ``logit(u)``, the flow's own coordinates (where the prior is logistic)."""
        import torch

        xw = np.zeros(len(self.moments)) if x is None else np.asarray(x, float)
        x = self._flow_x(xw)
        dev = self.info.get("device", "cpu")
        u = np.asarray(u, float)
        ut = torch.as_tensor(to_logit(u), dtype=torch.float32, device=dev)
        xt = torch.as_tensor(x, dtype=torch.float32, device=dev)[None]
        with torch.no_grad():
            # the flow lives on the whole real line, the logistic prior's support: sbi's
            # leakage correction (10,000 draws a call to find the mass outside the prior's
            # support) is exactly 1 there, and skipping it changes no bit
            lps = [post.log_prob(ut, x=xt, norm_posterior=False) for post in self.flows]
        lp = _mixture([a.cpu().numpy().astype(float) for a in lps])
        if self.emulator is not None:
            lp = lp + self.emulator.log_lik(to_logit(u), *self._emulated_x(xw))
        if logit:
            return lp
        # density of u = density of logit(u) x |d logit(u) / du|
        uc = np.clip(u, EDGE, 1 - EDGE)
        return lp - np.log(uc * (1 - uc)).sum(axis=1)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the estimator (torch pickle) atomically: :meth:`load` reads it back."""
        import torch

        from memsim.io import atomic_path

        with atomic_path(path) as tmp:
            torch.save(
                {
                    "posterior": self.posterior,
                    "prior": self.prior.dump(),
                    "moments": [
                        {"name": m.name, "path": list(m.path), "value": m.value, "scale": m.scale}
                        for m in self.moments
                    ],
                    "info": self.info,
                    **({"emulator": self.emulator.dump()} if self.emulator is not None else {}),
                    **({"members": list(self.members)} if self.members else {}),
                },
                tmp,
            )

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str = "cpu") -> Estimator:
        """Read an estimator written by :meth:`save` (a trusted file: it is a pickle)."""
        import torch

        from memsim.io import check_input

        check_input(path, "estimator file")
        d = torch.load(path, weights_only=False, map_location=_device(device))
        prior = Prior.from_dump(d["prior"])
        moments = [
            Moment(m["name"], tuple(m["path"]), m["value"], m["scale"]) for m in d["moments"]
        ]
        info = dict(d["info"], device=_device(device))
        flows = [d["posterior"], *d.get("members", [])]
        # map_location moved the tensors; the posterior object (which remembers the device it
        # was built on) moves too, onto a GPU or back from one
        if info["device"] != "cpu" or d["info"].get("device", "cpu") != "cpu":
            for post in flows:
                if not hasattr(post.prior, "to"):  # a plain torch prior cannot move itself
                    post.prior = _logistic_prior(prior.dim, "cpu")
                with warnings.catch_warnings():
                    # sbi rebuilds its potential and notes the prior has no mean (none needed)
                    warnings.filterwarnings("ignore", "The passed discrete prior has no mean")
                    post.to(info["device"])
        emulator = None
        if "emulator" in d:
            from memsim.fit.emulator import Emulator

            emulator = Emulator.from_dump(d["emulator"])
        return cls(flows[0], prior, moments, info, emulator, tuple(flows[1:]))


def _mixture(log_densities: list[np.ndarray]) -> np.ndarray:
    """The log density of the equal mixture of densities given as logs (one: itself)."""
    if len(log_densities) == 1:
        return log_densities[0]
    return np.logaddexp.reduce(np.stack(log_densities), axis=0) - math.log(len(log_densities))


def _repeat(a: np.ndarray | None, times: int) -> np.ndarray | None:
    """Each row of ``a`` ``times`` times over (None stays None)."""
    return None if a is None else np.repeat(a, times, axis=0)


def with_emulator(est: Estimator, emulator, moments: list[Moment]) -> Estimator:
    """The posterior ``q(u | x_r) N(x_c; m(u), S)`` (``N(x_c; m(u, x_r), S)`` for an emulator
    given the flow's statistics): ``est`` trained on the statistics the ``emulator`` leaves (in
    order), the emulator for its columns of the whole ``moments``."""
    info = dict(est.info, emulator=emulator.info, emulated=list(emulator.names))
    if emulator.given:  # absent otherwise: the info of emulators given none stays as it was
        info["emulator_given"] = [moments[j].name for j in emulator.given]
    return Estimator(est.posterior, est.prior, list(moments), info, emulator, est.members)


def ensemble(flows: list[Estimator]) -> Estimator:
    """The estimator whose flow is the equal mixture of ``flows`` (trained on the same
    statistics; the first gives the prior, moments and held statistics), its ``info`` the
    first's with ``members``: each other flow's training facts."""
    first, rest = flows[0], flows[1:]
    if any(f.held != first.held or f.emulator is not None for f in rest):
        raise ValueError("an ensemble's flows must hold the same statistics and no emulator")
    info = dict(first.info)
    if rest:  # the first flow's facts stay at the top, the others' in members; seconds: all
        keys = ("epochs", "best_validation_loss", "seconds", "seed")
        info["members"] = [{k: f.info.get(k) for k in keys} for f in rest]
        info["seconds"] = sum(f.info["seconds"] for f in flows)
    members = tuple(f.posterior for f in rest)
    return Estimator(first.posterior, first.prior, first.moments, info, first.emulator, members)


#: Unit positions are kept this far inside (0, 1) before taking logits.
EDGE = 1e-6


def to_logit(u: np.ndarray) -> np.ndarray:
    u = np.clip(np.asarray(u, float), EDGE, 1 - EDGE)
    return np.log(u / (1 - u))


def from_logit(t: np.ndarray) -> np.ndarray:
    from scipy.special import expit

    return expit(np.asarray(t, float))


def _logistic_prior(dim: int, dev: str):
    """The uniform prior on the unit box, seen on the logit scale (a standard logistic)."""
    from memsim.fit.logistic_box import LogisticBox

    return LogisticBox(dim, dev)


class _NoTracker:
    """sbi's training tracker that records nothing: by default sbi writes TensorBoard logs into
    ``./sbi-logs`` of whatever folder the user is in."""

    log_dir = None

    def log_metric(self, name, value, step=None) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        pass

    def log_params(self, params) -> None:
        pass

    def add_figure(self, name, figure, step=None) -> None:
        pass

    def flush(self) -> None:
        pass


def usable(x: np.ndarray, errors: np.ndarray) -> np.ndarray:
    """Rows that trained on: the run worked and every moment is finite."""
    return (np.char.str_len(errors.astype(str)) == 0) & np.isfinite(x).all(axis=1)


def train(
    u: np.ndarray,
    x_std: np.ndarray,
    errors: np.ndarray,
    prior: Prior,
    moments: list[Moment],
    *,
    seed: int = 0,
    device: str = "cpu",
    estimator: str = "nsf",
    max_epochs: int = 1000,
    batch_size: int = 200,
    balance: float = 0.0,
    progress: ProgressCallback | None = None,
) -> Estimator:
    """Train NPE on ``(u, x_std)``: a conditional flow (``estimator``: sbi's ``nsf`` or ``maf``).

    Runs that failed or miss a moment are dropped (counted in ``info["dropped"]``): the
    posterior is then conditional on the study not degenerating, which the released study
    did not. Same seed, same device and thread count: the same estimator.

    ``balance`` > 0 trains balanced NPE (BNPE; Delaunoy et al. 2023, "Balancing
    simulation-based inference for conservative posteriors"): each batch's loss gains
    ``balance * (E_joint[d] + E_marginal[d] - 1) ** 2``, where ``d = sigmoid(log q(theta | x) -
    log p(theta))`` is the classifier the estimator implies, read on the batch's pairs
    (joint) and on the pairs with ``theta`` moved by one row (marginal, :func:`balance_penalty`).
    The paper's aim is a posterior that errs wide rather than narrow where the simulations
    leave it unsure; docs/inference-record.md measures how far that holds for memsim's posteriors.
    0 is plain NPE (the same code path as without the option); the paper uses 100.
    """
    import torch
    from sbi.inference import NPE

    dev = _device(device)
    ok = usable(x_std, errors)
    if ok.sum() < 20:
        raise UserError(
            f"only {int(ok.sum())} of {len(ok)} simulations gave every statistic: too few to "
            "train on (widen --simulations, or narrow the prior)"
        )
    held = constant_statistics(x_std[ok])
    torch.manual_seed(int(seed))
    np_state = np.random.get_state()
    np.random.seed(int(seed) % 2**32)  # for any numpy draw in sbi (it splits with torch.randperm)
    n_ok = int(ok.sum())

    class _ReportingNPE(NPE):
        """sbi's NPE reporting each epoch (sbi calls this hook once an epoch; a later sbi
        without it only loses the per-epoch progress)."""

        def _maybe_show_progress(self, show, epoch):
            super()._maybe_show_progress(show, epoch)
            loss = getattr(self, "_val_loss", math.nan)
            detail = f"{n_ok} runs, validation loss {loss:.2f}"
            report(progress, "infer", "train", epoch, None, unit="epochs", detail=detail)

        if balance > 0:

            def _loss(self, theta, x, masks, proposal, calibration_kernel, **kw):
                nll = super()._loss(theta, x, masks, proposal, calibration_kernel, **kw)
                return nll + balance * balance_penalty(self._neural_net, theta, x, nll)

    try:
        box = _logistic_prior(prior.dim, dev)
        npe = _ReportingNPE(
            prior=box,
            density_estimator=estimator,
            device=dev,
            show_progress_bars=False,
            tracker=_NoTracker(),
        )
        theta = torch.as_tensor(to_logit(u[ok]), dtype=torch.float32, device=dev)
        x = torch.as_tensor(_held(x_std[ok], held), dtype=torch.float32, device=dev)
        npe.append_simulations(theta, x)
        report(progress, "infer", "train", 0, None, unit="epochs", detail=f"{n_ok} runs")
        t0 = time.perf_counter()
        # sbi prints its convergence line to stdout; the library prints nothing
        with contextlib.redirect_stdout(io.StringIO()):
            net = npe.train(max_num_epochs=max_epochs, training_batch_size=batch_size)
        seconds = time.perf_counter() - t0
        summary = npe._summary  # epochs and validation loss (sbi's training record)
        epochs = int(summary.get("epochs_trained", [0])[-1])
        best = float(summary.get("best_validation_loss", [math.nan])[-1])
        report(progress, "infer", "train", epochs, epochs, unit="epochs", detail=f"loss {best:.2f}")
        posterior = npe.build_posterior(net)
    finally:
        np.random.set_state(np_state)
    info = {
        "simulations": len(ok),
        "used": int(ok.sum()),
        "dropped": int((~ok).sum()),
        "epochs": epochs,
        "best_validation_loss": best,
        "seconds": seconds,
        "device": dev,
        "estimator": estimator,
        "seed": int(seed),
        "torch_threads": torch.get_num_threads(),
    }
    if held:  # absent when none: the info of estimators without any stays as it was
        info["constant_statistics"] = held
    if balance > 0:  # absent for plain NPE, as above
        info["balance"] = float(balance)
    return Estimator(posterior, prior, list(moments), info)


def logistic_log_prob(t):
    """Log density of independent standard logistics at the rows of ``t`` (torch, ``(n, d)``):
    the prior on the logit scale, where the estimator lives (:func:`_logistic_prior`)."""
    import torch.nn.functional as F

    return -(F.softplus(t) + F.softplus(-t)).sum(dim=-1)


def balance_penalty(net, theta, x, nll):
    """BNPE's balancing term for one batch (:func:`train`): ``(E_joint[d] + E_marginal[d] -
    1) ** 2`` with ``d = sigmoid(log q(theta | x) - log p(theta))``; ``nll`` is the batch's
    ``-log q(theta | x)`` already computed, and the marginal pairs are ``theta`` rolled by one
    row against the same ``x`` (each row's ``x`` meets another simulation's ``theta``)."""
    import torch
    from sbi.neural_nets.estimators.shape_handling import reshape_to_batch_event

    t = reshape_to_batch_event(theta, event_shape=net.input_shape)
    xs = reshape_to_batch_event(x, event_shape=net.condition_shape)
    rolled = torch.roll(t, 1, dims=0)
    nll_marginal = net.loss(rolled, xs)
    joint = torch.sigmoid(-nll - logistic_log_prob(t)).mean()
    marginal = torch.sigmoid(-nll_marginal - logistic_log_prob(rolled)).mean()
    return (joint + marginal - 1) ** 2


# --------------------------------------------------------------------------- checks
def sbc(
    est: Estimator,
    u: np.ndarray,
    x_std: np.ndarray,
    *,
    draws: int = 200,
    bins: int = 10,
    seed=0,
    samples: np.ndarray | None = None,
) -> dict:
    """Simulation-based calibration on held-out ``(u, x_std)`` pairs.

    For each held-out simulation, ``draws`` posterior draws given its statistics; the rank of
    the true value among them per parameter (uniform on ``0..draws`` when the posterior is
    calibrated). The stated test: Pearson's chi-square of each parameter's ranks in ``bins``
    equal bins against uniform, p-value per parameter (departure at the 1 % level when
    p < 0.01). Coverage: the share of truths inside the central 50 % and 90 % intervals of
    the draws.

    ``samples``: the draws ``(draws, n, d)`` when already made (:meth:`Estimator.sample_batched`).

    Returns a dict with ``ranks`` ``(n, d)``, ``table`` (a DataFrame: parameter, chi2, p,
    coverage_50, coverage_90), ``n``, ``draws``, ``bins``.
    """
    import pandas as pd
    from scipy.stats import chisquare

    s = est.sample_batched(draws, x_std, seed=seed) if samples is None else samples
    draws = s.shape[0]
    ranks = (s < u[None]).sum(axis=0)  # (n, d) in 0..draws
    lo50, hi50 = np.quantile(s, [0.25, 0.75], axis=0)
    lo90, hi90 = np.quantile(s, [0.05, 0.95], axis=0)
    in50 = (u >= lo50) & (u <= hi50)
    in90 = (u >= lo90) & (u <= hi90)
    rows = []
    for j, p in enumerate(est.prior.parameters):
        counts = np.histogram(ranks[:, j], bins=bins, range=(0, draws + 1))[0]
        chi = chisquare(counts)
        rows.append(
            {
                "parameter": p.path,
                "chi2": float(chi.statistic),
                "p": float(chi.pvalue),
                "uniform_at_1pct": bool(chi.pvalue >= 0.01),
                "coverage_50": float(in50[:, j].mean()),
                "coverage_90": float(in90[:, j].mean()),
            }
        )
    return {
        "ranks": ranks,
        "table": pd.DataFrame(rows),
        "n": len(u),
        "draws": draws,
        "bins": bins,
        "coverage_50": float(in50.mean()),
        "coverage_90": float(in90.mean()),
    }


def recovery_table(
    est: Estimator, u: np.ndarray, x_std: np.ndarray, *, draws=200, seed=0, samples=None
):
    """Known parameters back from their simulated statistics, per parameter.

    Columns: ``parameter``; ``corr`` (Pearson of posterior median with the truth, over the
    held-out runs); ``rmse_over_prior_sd`` (root mean square error of the posterior median, in
    prior sds: 1 is no better than guessing the prior's middle ... about 1.0, 0 is exact);
    ``posterior_sd_over_prior_sd`` (mean posterior sd over the prior's sd: how far the data pin
    the parameter down); ``coverage_90``. ``samples`` as in :func:`sbc`.
    """
    import pandas as pd

    s = est.sample_batched(draws, x_std, seed=seed) if samples is None else samples
    med = np.median(s, axis=0)
    sd = s.std(axis=0)
    prior_sd = 1 / math.sqrt(12)
    lo90, hi90 = np.quantile(s, [0.05, 0.95], axis=0)
    rows = []
    for j, p in enumerate(est.prior.parameters):
        err = med[:, j] - u[:, j]
        rows.append(
            {
                "parameter": p.path,
                "corr": float(np.corrcoef(med[:, j], u[:, j])[0, 1]),
                "rmse_over_prior_sd": float(np.sqrt(np.mean(err**2)) / prior_sd),
                "posterior_sd_over_prior_sd": float(sd[:, j].mean() / prior_sd),
                "coverage_90": float(((u[:, j] >= lo90[:, j]) & (u[:, j] <= hi90[:, j])).mean()),
            }
        )
    return pd.DataFrame(rows)


#: Principal directions of the simulated statistics whose variance is below this share of the
#: total are exact relations among them (a mean score is the mean of its rank bins' means):
#: :func:`typicality` leaves them out of the distance and reports where the observed data break
#: them.
RELATION_VARIANCE = 1e-6
#: ... and report a broken one only where the observed statistics depart from it by more than
#: this (z-scored units: a thousandth of the statistics' spread over the simulations) and by
#: more than ten times the farthest simulation: smaller departures are a target's rounding.
RELATION_FLOOR = 1e-3


@dataclass(frozen=True)
class Typicality:
    """How typical observed statistics are of a set of simulations (:func:`typicality`).

    Attributes
    ----------
    simulations : int
        Simulations compared with (those with every statistic).
    dims : int
        Principal directions the distance runs over (the others are exact relations).
    distance2 : float
        The observed statistics' squared Mahalanobis distance from the simulations' mean, over
        those directions.
    beyond : float
        Share of the simulations closer to their mean than the observed statistics are (0.5:
        as typical as the median simulation; above 0.99: further out than all but 1 %).
    marginal : DataFrame
        Per statistic: ``statistic``, ``below`` (share of simulations below the observed value,
        ties counted half) and ``tail`` (the two-sided share as extreme, ``2 min(below,
        1 - below)``), most extreme first.
    relations : DataFrame
        The exact relations the observed statistics break: per such direction, ``variance``
        (over the simulations), ``observed`` (the observed statistics' offset along it),
        ``simulated`` (the largest offset of any simulation) and ``statistics`` (the ones it
        weighs most, with their weights); only directions where the observed offset exceeds
        ten times the simulations' largest and :data:`RELATION_FLOOR`.
    """

    simulations: int
    dims: int
    distance2: float
    beyond: float
    marginal: object
    relations: object

    def outside(self, tail: float = 0.01) -> list[str]:
        """The statistics whose released value fewer than ``tail`` of the simulations reach
        as extreme (two-sided), most extreme first."""
        return self.marginal.loc[self.marginal["tail"] < tail, "statistic"].tolist()


def typicality(x_std: np.ndarray, names: list[str], observed: np.ndarray | None = None):
    """Whether the observed statistics look like one more simulation (a prior predictive check).

    ``x_std`` ``(n, m)``: simulated statistics, standardised (:func:`standardise`), so that the
    released data are the zero vector (``observed``, default zeros). An estimator is trained
    where simulations are; conditioned on data unlike any of them it extrapolates, and its
    posterior, however well calibrated on simulations (:func:`sbc`), can miss the data's own
    statistics (a posterior predictive row out of its interval). Three readings:

    * jointly: the squared Mahalanobis distance of the observed statistics from the
      simulations' mean (their covariance, statistics z-scored by their sd as sbi does), and
      the share of simulations closer (:attr:`Typicality.beyond`);
    * per statistic: the share of simulations below the observed value;
    * exact relations: principal directions along which the simulations do not vary (below
      :data:`RELATION_VARIANCE` of the total variance; a mean score and the means of its rank
      bins, say), left out of the distance, and listed where the observed statistics depart
      from them (targets taken from different sources: a paper's mean beside the released
      scores' bins).

    Statistics constant over the simulations (:func:`constant_statistics`) are left out, as
    training leaves them. The simulations' own distances are in-sample (the covariance is
    theirs), so they run a little short of a new simulation's: by about ``(m + 2) / n`` in
    relative terms for ``m`` statistics and ``n`` simulations (2.5 % for 49 and 2,000), which
    makes the observed statistics look that much further out. Deterministic: no random numbers.
    """
    import pandas as pd

    x = np.asarray(x_std, float)
    x = x[np.isfinite(x).all(axis=1)]
    obs = np.zeros(x.shape[1]) if observed is None else np.asarray(observed, float)
    if len(names) != x.shape[1] or obs.shape != (x.shape[1],):
        raise ValueError(
            f"{x.shape[1]} statistics, {len(names)} names and {obs.shape} observed values"
        )
    if len(x) <= x.shape[1]:
        raise ValueError(f"{len(x)} simulations for {x.shape[1]} statistics: too few to compare")
    held = set(constant_statistics(x))
    cols = [j for j in range(x.shape[1]) if j not in held]
    below = (x < obs).mean(axis=0) + 0.5 * (x == obs).mean(axis=0)
    marginal = pd.DataFrame(
        {"statistic": list(names), "below": below, "tail": 2 * np.minimum(below, 1 - below)}
    ).iloc[cols]
    marginal = marginal.sort_values("tail", kind="stable").reset_index(drop=True)
    mu, sd = x[:, cols].mean(axis=0), x[:, cols].std(axis=0)
    z = (x[:, cols] - mu) / sd
    z0 = (obs[cols] - mu) / sd
    var, vec = np.linalg.eigh(np.cov(z, rowvar=False))
    # each direction's sign fixed (its largest weight positive): the offsets read the same
    # whatever sign the linear algebra library returns
    vec *= np.where(vec[np.abs(vec).argmax(axis=0), np.arange(vec.shape[1])] < 0, -1.0, 1.0)
    keep = var > RELATION_VARIANCE * var.sum()
    pz, p0 = z @ vec, z0 @ vec  # z has mean 0: projections are offsets from the mean
    d2 = ((pz[:, keep] ** 2) / var[keep]).sum(axis=1)
    d2_obs = float((p0[keep] ** 2 / var[keep]).sum())
    rows = []
    for j in np.flatnonzero(~keep):
        largest = float(np.abs(pz[:, j]).max())
        if abs(p0[j]) > max(10 * largest, RELATION_FLOOR):
            top = np.argsort(-np.abs(vec[:, j]))[:4]
            rows.append(
                {
                    "variance": float(var[j]),
                    "observed": float(p0[j]),
                    "simulated": largest,
                    "statistics": "; ".join(f"{names[cols[i]]} ({vec[i, j]:+.2f})" for i in top),
                }
            )
    relations = pd.DataFrame(rows, columns=["variance", "observed", "simulated", "statistics"])
    return Typicality(
        simulations=len(x),
        dims=int(keep.sum()),
        distance2=d2_obs,
        beyond=float((d2 < d2_obs).mean()),
        marginal=marginal,
        relations=relations.sort_values("observed", key=np.abs, ascending=False).reset_index(
            drop=True
        ),
    )


def summarise_samples(prior: Prior, u: np.ndarray, points: dict[str, np.ndarray] | None = None):
    """Posterior medians and 90 % intervals per parameter, beside named point fits.

    ``points``: name -> parameter values ``(d,)`` (the shipped sets); each gets its value and
    its percentile in the posterior marginal. ``contraction`` is ``1 - posterior var / prior
    var`` (0: the data say nothing; 1: pinned down).
    """
    import pandas as pd

    v = prior.to_values(u)
    rows = []
    for j, p in enumerate(prior.parameters):
        q = np.quantile(v[:, j], [0.05, 0.5, 0.95])
        row = {
            "parameter": p.path,
            "prior": f"{p.shape} [{p.lo:g}, {p.hi:g}]",
            "median": float(q[1]),
            "q05": float(q[0]),
            "q95": float(q[2]),
            "contraction": float(1 - u[:, j].var() / (1 / 12)),
        }
        for name, vals in (points or {}).items():
            row[name] = float(vals[j])
            row[f"{name} percentile"] = float((v[:, j] < vals[j]).mean() * 100)
        rows.append(row)
    return pd.DataFrame(rows)


def fingerprint(obj) -> str:
    """A short hash of a JSON-able settings object (what a simulation store depends on)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def store_settings(
    protocol, base: Params, prior: Prior, moments: list[Moment], scale, seed
) -> dict:
    """What a :class:`SimulationStore`'s simulations depend on (compared on resume)."""
    return {
        "protocol": protocol.name,
        "protocol_hash": fingerprint(protocol.dump()),
        "params": base.name,
        "params_hash": fingerprint(base.dump()),
        # how the estimator is made (TRAINING_FIELDS) changes the training, not the simulations
        "prior": {k: v for k, v in prior.dump().items() if k not in TRAINING_FIELDS},
        "moments": [[m.name, list(m.path), m.value, m.scale] for m in moments],
        "scale": float(scale),
        "seed": int(seed),
        "chunk": CHUNK,
    }


# --------------------------------------------------------------------------- posterior predictive
_P: dict = {}


def _pred_init(protocol, base, prior, targets, real, scale, threads=1) -> None:
    import numba

    from memsim.sim.simulate import prepare

    numba.set_num_threads(threads)
    _P.update(
        protocol=protocol,
        prepared=prepare(protocol, scale),
        base=base,
        prior=prior,
        targets=targets,
        real=real,
        scale=scale,
        workspace={},
    )


def _pred_one(job: tuple) -> list[float]:
    """One posterior draw simulated at the study's scale: every target's simulated value."""
    from memsim.fit.calibrate import summarise_arrays
    from memsim.fit.compare import compare
    from memsim.sim.batch import simulate_many

    values, seed = job
    p = _P["prior"].params_at(_P["base"], np.asarray(values, float))
    try:
        (summary,) = simulate_many(
            _prepared_at(_P, _P["prior"], values),
            [(p, int(seed))],
            functools.partial(summarise_arrays, real=_P["real"], full=True),
            workspace=_P["workspace"],
        )
    except (ValueError, ZeroDivisionError, IndexError, FloatingPointError, UserError):
        return [math.nan] * len(_P["targets"].targets)
    table = compare(summary, _P["targets"], scale=_P["scale"])
    return [float(v) for v in table["simulated"]]


def predictive(
    protocol,
    base: Params,
    prior: Prior,
    targets,
    values: np.ndarray,
    seeds,
    *,
    real=None,
    scale: float = 1.0,
    workers: int = 1,
    progress: ProgressCallback | None = None,
    what: str = "posterior predictive",
) -> np.ndarray:
    """Simulate each parameter vector of ``values`` ``(k, d)`` with its seed, with every analysis
    of ``memsim run``: ``(k, targets)``, each target's simulated value (NaN where not computed)."""
    jobs = [(np.asarray(v, float), int(s)) for v, s in zip(values, seeds)]
    out = []
    report(progress, "infer", what, 0, len(jobs), unit="runs")
    if workers > 1 and len(jobs) > 1:
        from concurrent.futures import ProcessPoolExecutor

        from memsim.io import in_worker, spawn_context

        with ProcessPoolExecutor(
            min(workers, len(jobs)),
            mp_context=spawn_context(),
            initializer=in_worker,
            initargs=(os.getpid(), _pred_init, protocol, base, prior, targets, real, scale),
        ) as pool:
            for row in pool.map(_pred_one, jobs):
                out.append(row)
                report(progress, "infer", what, len(out), len(jobs), unit="runs")
    else:
        import numba

        _pred_init(protocol, base, prior, targets, real, scale, numba.config.NUMBA_NUM_THREADS)
        for job in jobs:
            out.append(_pred_one(job))
            report(progress, "infer", what, len(out), len(jobs), unit="runs")
    return np.array(out, float).reshape(len(jobs), len(targets.targets))


#: Targets that are distances to the released data (value 0): checked one-sided.
DISTANCES = ("ks", "counts_ks")


def predictive_table(sim: np.ndarray, targets, scale: float = 1.0):
    """Each target's predictive median and 90 % interval over the draws ``sim`` ``(k, targets)``
    beside its paper or released value.

    ``inside``: the value is within the 90 % interval (for a distance to the released data,
    :data:`DISTANCES`: the predictive median is within the tolerance; ``check`` says which);
    ``off_by``: how far outside it is (0 inside), ``off_by_tolerances`` the same in the
    target's tolerances.
    """
    import pandas as pd

    rows = []
    for j, t in enumerate(targets.targets):
        v = sim[:, j]
        v = v[np.isfinite(v)]
        value = t.value * (scale if t.path[0] in ("participants_kept", "participants_total") else 1)
        if v.size:
            q05, med, q95 = np.quantile(v, [0.05, 0.5, 0.95])
        else:
            q05 = med = q95 = math.nan
        if t.path[-1] in DISTANCES:
            # a distance (value 0) is never inside an interval of positive distances: it holds
            # when the predictive median is within the tolerance
            check = "median within tolerance"
            inside = bool(v.size and med <= value + t.tolerance)
            off = 0.0 if inside else med - value - t.tolerance
        else:
            check = "value inside 90 % interval"
            inside = bool(v.size and q05 <= value <= q95)
            off = 0.0 if inside else (q05 - value if value < q05 else value - q95)
        rows.append(
            {
                "target": t.name,
                "kind": t.kind,
                "value": value,
                "median": float(med),
                "q05": float(q05),
                "q95": float(q95),
                "check": check,
                "inside": inside,
                "off_by": float(off) if v.size else math.nan,
                "off_by_tolerances": float(off / t.tolerance) if v.size else math.nan,
                "tolerance": t.tolerance,
                "draws": int(v.size),
            }
        )
    return pd.DataFrame(rows)
