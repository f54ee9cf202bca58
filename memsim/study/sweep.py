"""Declarative what-if sweeps: a study file becomes a grid of cells, run anywhere, resumably.

In: a study file (``experiments/*.yaml``, schema :class:`Study`): a base
protocol, optional population parameters, the settings to ``vary`` (dotted
field paths with lists of values, or ``zip`` groups varied together),
replicates per cell, the statistics to collect and a seed.

Out: a folder holding ``study.yaml`` (the study as given), ``plan.json`` (every
resolved cell: coordinates, full protocol and parameters, seeds), one Parquet
shard per (cell, replicate) under ``shards/`` and, once all are in,
``results.parquet``: one row per (cell, replicate) with the cell coordinates,
the seed, the participant-minutes the campaign costs and the statistics.

Three properties hold whatever runs the cells:

- every cell is resolved and validated before anything runs (an unknown field
  path or an infeasible protocol is one :class:`UserError` naming the study
  file, the axis and the value);
- a cell's seeds come from the study seed and a hash of the cell's coordinates
  (``np.random.SeedSequence(seed, spawn_key=(*hash, replicate))``), so a result
  depends neither on worker count nor on the order cells finish — nor on which
  other cells the grid holds;
- shards are written atomically and existing shards are skipped, so a sweep
  killed at any moment (``kill -9`` included) resumes and ends with the same
  bytes as an uninterrupted run.

The cell function is one picklable callable, ``cell(spec) -> {name: float}``
(default :func:`run_cell`: simulate, then summarise), sent unchanged to a local
process pool or to a Dask cluster (``scheduler=``). The workers only compute;
this process writes every file, so workers need no shared file system.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from memsim.analysis.consistency import flatten_statistics
from memsim.errors import UserError
from memsim.io import (
    atomic_path,
    format_pydantic_error,
    load_yaml_mapping,
    read_text,
    write_text_atomic,
)
from memsim.progress import ProgressCallback, report

__all__ = [
    "Study",
    "Axis",
    "ZipGroup",
    "Plan",
    "load_study",
    "resolve_study",
    "run_sweep",
    "SweepResult",
    "run_cell",
    "cell_seeds",
    "minutes_per_participant",
]

DEFAULT_CELL = "memsim.study.sweep:run_cell"
PLAN_FILE = "plan.json"
STUDY_FILE = "study.yaml"
RESULTS_FILE = "results.parquet"
SHARD_DIR = "shards"
COST_COLUMN = "participant_minutes"
_RESERVED = {"cell", "replicate", "seed", "participants", COST_COLUMN}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------- schema
class Axis(_Frozen):
    """One setting varied over a list of values.

    ``path`` starts with ``protocol.`` or ``params.`` and walks the dumped
    mapping: keys by name, list items by 0-based index
    (``protocol.steps.0.items.0.repeat_lag``). A value replaces that whole
    subtree (``protocol.selection: [{kind: uniform}, ...]``). ``path: protocol``
    or ``path: params`` alone takes file names (relative to the study file)
    and swaps the whole protocol or parameter set. Axes apply in the order
    listed, so list a whole-file axis first.
    """

    path: str = Field(pattern=r"^(protocol|params)(\.[A-Za-z0-9_]+)*$")
    values: tuple[Any, ...] = Field(min_length=1)
    name: str | None = Field(
        default=None, description="column name in the results (default: the path)"
    )

    @model_validator(mode="after")
    def _files(self) -> Axis:
        if "." not in self.path and not all(isinstance(v, str) for v in self.values):
            raise ValueError(
                f"vary {self.path}: values must be file names (a whole {self.path} per value)"
            )
        return self

    @property
    def column(self) -> str:
        return self.name or self.path


class ZipGroup(_Frozen):
    """Axes varied together: the i-th cell of the group takes the i-th value of each."""

    zip: tuple[Axis, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _same_length(self) -> ZipGroup:
        n = {len(a.values) for a in self.zip}
        if len(n) > 1:
            lens = ", ".join(f"{a.column}: {len(a.values)}" for a in self.zip)
            raise ValueError(f"zip axes need as many values each ({lens})")
        return self


class Figure(_Frozen):
    """An extra report figure: ``y`` statistics against column ``x``, one line per ``by`` value."""

    x: str
    y: tuple[str, ...] = Field(min_length=1)
    by: str | None = None
    title: str | None = None


class Analysis(_Frozen):
    """How many random splits the default cell's analysis averages (the paper: 25 human splits)."""

    n_splits: Annotated[int, Field(ge=1, le=1000)] = 25
    repeats: Annotated[int, Field(ge=1, le=100)] = 3


class Study(_Frozen):
    """A what-if study: a base protocol, the grid to vary, replicates, statistics, seed."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    protocol: str = Field(description="base protocol file, relative to the study file")
    params: str | None = Field(
        default=None,
        description="population parameter file (default: the protocol's calibrated one)",
    )
    set: dict[str, Any] = Field(
        default_factory=dict,
        description="fixed changes to the base, {dotted path: value}, applied before any axis",
    )
    vary: tuple[Axis | ZipGroup, ...] = ()
    replicates: Annotated[int, Field(ge=1, le=100_000)] = 1
    statistics: tuple[str, ...] = Field(min_length=1)
    seed: Annotated[int, Field(ge=0, lt=2**63)]
    scale: Annotated[float, Field(gt=0, le=1)] = Field(
        default=1.0, description="simulate this share of the protocol's stimuli and participants"
    )
    common_random_numbers: bool = Field(
        default=False,
        description=(
            "replicate r of every cell uses the same seed (sharper differences between cells)"
        ),
    )
    cell: str = Field(default=DEFAULT_CELL, pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    missing: Literal["error", "nan"] = Field(
        default="error",
        description="a statistic a cell does not give: stop with an error, or record NaN "
        "(for grids mixing protocols whose steps differ)",
    )
    figures: tuple[Figure, ...] = ()
    analysis: Analysis = Field(
        default_factory=lambda: Analysis(), description="split counts of the analysis"
    )

    @model_validator(mode="after")
    def _check(self) -> Study:
        cols = [a.column for a in self.axes]
        dup = {c for c in cols if cols.count(c) > 1}
        if dup:
            raise ValueError(
                f"vary: column {sorted(dup)[0]!r} is used by two axes (give each a distinct name)"
            )
        clash = (set(cols) | set(self.statistics)) & _RESERVED
        clash |= set(cols) & set(self.statistics)
        if clash:
            raise ValueError(
                f"name {sorted(clash)[0]!r} is reserved or used twice (axis names and statistics)"
            )
        if len(set(self.statistics)) != len(self.statistics):
            raise ValueError("statistics: a name is listed twice")
        for path in self.set:
            if not re.fullmatch(r"(protocol|params)(\.[A-Za-z0-9_]+)+", path):
                raise ValueError(
                    f"set: {path!r} is not a dotted path starting with protocol. or params."
                )
        known = set(cols) | set(self.statistics) | {COST_COLUMN, "participants"}
        for i, f in enumerate(self.figures):
            for col in (f.x, *f.y, *((f.by,) if f.by else ())):
                if col not in known:
                    raise ValueError(
                        f"figures.{i}: no column {col!r} (axes, statistics or {COST_COLUMN})"
                    )
        return self

    @property
    def axes(self) -> list[Axis]:
        out: list[Axis] = []
        for entry in self.vary:
            out.extend(entry.zip if isinstance(entry, ZipGroup) else (entry,))
        return out


def load_study(path: str | os.PathLike[str]) -> Study:
    """Load and check a study file; any problem is a one-line :class:`UserError`."""
    data = load_yaml_mapping(path, "study file")
    try:
        return Study.model_validate(data)
    except ValidationError as exc:
        raise format_pydantic_error(exc, path) from None


# --------------------------------------------------------------------------- cells
class Plan(BaseModel):
    """Every resolved cell of a study; saved as ``plan.json`` and fingerprinted."""

    model_config = ConfigDict(frozen=True)

    study: dict
    columns: dict[str, str]  # axis column -> arrow type name
    cells: list[dict]  # {"cell", "coords": {column: value}, "protocol", "params", "minutes"}
    seeds: list[list[list[int]]]  # [cell][replicate] -> [simulation seed, analysis seed]
    fingerprint: str
    code: str = ""  # hash of memsim's source when the sweep started (not part of the fingerprint)

    @property
    def n_runs(self) -> int:
        return len(self.cells) * int(self.study["replicates"])


def _canonical(obj: Any) -> str:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def cell_seeds(
    study_seed: int, coords: dict, replicate: int, common: bool = False
) -> tuple[int, int]:
    """Two 63-bit seeds (simulation, analysis) for one replicate of one cell.

    ``SeedSequence(study_seed, spawn_key=(*h, replicate))`` where ``h`` is the
    SHA-256 of the canonical coordinates as eight 32-bit words; with
    ``common`` the coordinates are left out (common random numbers).
    """
    key: tuple[int, ...] = ()
    if not common:
        digest = hashlib.sha256(_canonical(coords).encode()).digest()
        key = tuple(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 32, 4))
    ss = np.random.SeedSequence(study_seed, spawn_key=(*key, replicate))
    a, b = ss.generate_state(2, dtype=np.uint64) >> np.uint64(1)
    return int(a), int(b)


def minutes_per_participant(protocol: dict) -> float:
    """Nominal crowd time of one participant doing every step: sum(length x (duration + gap)) /
    60."""
    st = protocol["stimuli"]
    per = float(st["duration_s"]) + float(st["gap_s"])
    return sum(int(s["length"]) for s in protocol["steps"]) * per / 60.0


def crowd_minutes(protocol: dict, result: dict, participants: float) -> float:
    """Participant-minutes a campaign costs, at the nominal pace (no key presses).

    With the cell's per-step head counts (``participants_total.step<i>``): the sum
    over steps of those who started it times its minutes; otherwise every
    participant is counted for every step.
    """
    st = protocol["stimuli"]
    per = (float(st["duration_s"]) + float(st["gap_s"])) / 60.0
    keys = [f"participants_total.step{i}" for i in range(1, len(protocol["steps"]) + 1)]
    if all(k in result for k in keys):
        return sum(
            float(result[k]) * int(s["length"]) * per for k, s in zip(keys, protocol["steps"])
        )
    return participants * minutes_per_participant(protocol)


def _nominal_participants(protocol: dict) -> int:
    stop = protocol["campaign"]["stop"]
    return int(stop["count"] if stop["kind"] == "participants" else stop["max_participants"])


def _walk(root: dict, path: str) -> tuple[Any, Any]:
    """The container holding ``path``'s last part and that part's key (a str or an index)."""
    parts = path.split(".")
    node: Any = root
    for depth, part in enumerate(parts):
        here = ".".join(parts[:depth])
        if isinstance(node, dict):
            if part not in node:
                known = ", ".join(node) or "none"
                raise KeyError(f"{here} has no field {part!r} (fields: {known})")
            key: Any = part
        elif isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise KeyError(f"{here} is a list of {len(node)}; {part!r} is not an index in it")
            key = int(part)
        else:
            raise KeyError(f"{here} is {_canonical(node)}, which has no fields")
        if depth == len(parts) - 1:
            return node, key
        node = node[key]
    raise KeyError(f"{path} names no field")  # pragma: no cover  (pattern needs two parts)


def _arrow_type(values: tuple[Any, ...]) -> str:
    """The results column type of an axis: its scalar type, else canonical JSON text."""
    if all(isinstance(v, bool) for v in values):
        return "bool"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "int64"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return "float64"
    if all(isinstance(v, str) for v in values):
        return "string"
    return "json"


def _column_value(value: Any, kind: str) -> Any:
    if kind == "json":
        return _canonical(value)
    if kind == "float64":
        return float(value)
    return value


def _params_api():
    try:
        return importlib.import_module("memsim.sim.params")
    except ModuleNotFoundError as exc:
        if exc.name != "memsim.sim.params":
            raise
        return None


def _base_params(study: Study, base_dir: Path, protocol, study_path) -> dict | None:
    api = _params_api()
    if api is None:
        if study.params is not None or any(a.path.startswith("params.") for a in study.axes):
            raise UserError(
                "population parameters need memsim.sim.params, which this install lacks",
                path=study_path,
            )
        return None  # no parameter model: the cell function gets params=None
    ppath = base_dir / study.params if study.params else api.default_params_path(protocol)
    return api.load_params(ppath).dump()


def resolve_study(study: Study, study_path: str | os.PathLike[str]) -> Plan:
    """Resolve and validate every cell of ``study``; raise one-line UserError on the first bad
    one."""
    from memsim.design.protocol import load_protocol, protocol_from_mapping

    study_path = Path(study_path)
    base_dir = study_path.parent
    proto_path = base_dir / study.protocol
    if not proto_path.is_file():
        raise UserError(f"protocol: no such file {proto_path}", path=study_path)
    base_proto = load_protocol(proto_path)
    base = {
        "protocol": base_proto.dump(),
        "params": _base_params(study, base_dir, base_proto, study_path),
    }
    api = _params_api()
    for path, value in study.set.items():
        if base["params"] is None and path.startswith("params."):
            raise UserError(f"set {path}: no population parameters to change", path=study_path)
        try:
            node, key = _walk(base, path)
        except KeyError as exc:
            raise UserError(
                f"set {path}: unknown field path: {exc.args[0]}", path=study_path
            ) from None
        node[key] = copy.deepcopy(value)

    # the grid: one "choice list" per vary entry, each choice a list of (axis, value) pairs
    entries: list[list[list[tuple[Axis, Any]]]] = []
    for entry in study.vary:
        axes = entry.zip if isinstance(entry, ZipGroup) else (entry,)
        entries.append([[(a, a.values[i]) for a in axes] for i in range(len(axes[0].values))])
    columns = {a.column: _arrow_type(a.values) for a in study.axes}

    files: dict[str, dict] = {}

    def whole(axis: Axis, value: str) -> dict:
        path = base_dir / value
        if value not in files:
            if not path.is_file():
                raise UserError(f"vary {axis.path} = {value}: no such file {path}", path=study_path)
            what = "protocol file" if axis.path == "protocol" else "parameter file"
            files[value] = load_yaml_mapping(path, what)
        return files[value]

    def apply(pairs: list[tuple[Axis, Any]]) -> dict:
        tree = copy.deepcopy(base)
        for axis, value in pairs:
            if "." not in axis.path:
                if axis.path == "params" and tree["params"] is None:
                    raise UserError(
                        "vary params: population parameters need memsim.sim.params", path=study_path
                    )
                tree[axis.path] = copy.deepcopy(whole(axis, value))
                continue
            if tree["params"] is None and axis.path.startswith("params."):
                raise UserError(
                    f"vary {axis.path}: no population parameters to vary", path=study_path
                )
            try:
                node, key = _walk(tree, axis.path)
            except KeyError as exc:
                raise UserError(
                    f"vary {axis.path}: unknown field path: {exc.args[0]}", path=study_path
                ) from None
            node[key] = copy.deepcopy(value)
        return tree

    def check(tree: dict) -> str | None:
        """The validation problem of a resolved cell, or None; also normalises it in place."""
        try:
            tree["protocol"] = protocol_from_mapping(tree["protocol"], "").dump()
            if tree["params"] is not None and api is not None:
                tree["params"] = api.params_from_mapping(tree["params"], "").dump()
        except UserError as exc:
            return str(exc)
        return None

    def show(pairs) -> str:
        return ", ".join(f"{a.path} = {_canonical(v)}" for a, v in pairs)

    lone: dict[str, str | None] = {}
    cells: list[dict] = []
    combos: list[list[list[tuple[Axis, Any]]]] = [
        []
    ]  # per cell: one choice (list of pairs) per entry
    for entry in entries:
        combos = [c + [choice] for c in combos for choice in entry]
    for index, choices in enumerate(combos):
        pairs = [pair for choice in choices for pair in choice]
        tree = apply(pairs)
        problem = check(tree)
        if problem is not None:
            # name the one vary entry (an axis or a zip group) that breaks the protocol alone, if
            # any
            for choice in choices:
                k = _canonical([[a.path, v] for a, v in choice])
                if k not in lone:
                    try:
                        lone[k] = check(apply(choice))
                    except UserError:  # a path that needs an earlier axis: not this entry alone
                        lone[k] = None
                if lone[k] is not None:
                    raise UserError(
                        f"vary {show(choice)}: infeasible cell: {lone[k]}", path=study_path
                    )
            raise UserError(f"vary {show(pairs)}: infeasible cell: {problem}", path=study_path)
        coords = {a.column: _column_value(v, columns[a.column]) for a, v in pairs}
        cells.append(
            {
                "cell": index,
                "coords": coords,
                "protocol": tree["protocol"],
                "params": tree["params"],
                "minutes": minutes_per_participant(tree["protocol"]),
            }
        )
    seeds = [
        [
            list(cell_seeds(study.seed, c["coords"], r, study.common_random_numbers))
            for r in range(study.replicates)
        ]
        for c in cells
    ]
    body = {
        "study": study.model_dump(mode="json"),
        "columns": columns,
        "cells": cells,
        "seeds": seeds,
    }
    body["study"].pop("description")  # wording changes do not change results
    fingerprint = hashlib.sha256(_canonical(body).encode()).hexdigest()
    return Plan(
        study=study.model_dump(mode="json"),
        columns=columns,
        cells=cells,
        seeds=seeds,
        fingerprint=fingerprint,
        code=code_hash(),
    )


def code_hash() -> str:
    """SHA-256 of memsim's Python sources: a resumed sweep warns when the code changed."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parent.parent  # the memsim package
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- the cell function
def run_cell(spec: dict) -> dict[str, float]:
    """Simulate one campaign and summarise it: the default cell function.

    Parameters
    ----------
    spec : dict
        ``protocol`` and ``params`` (dumped mappings), ``seed`` and
        ``analysis_seed`` (ints), ``scale`` (float), ``analysis`` (``n_splits``,
        ``repeats``; default 25 and 3), optionally ``statistics`` (the study's: the costly
        analyses none of them reads are skipped).

    Returns
    -------
    dict
        Every scalar statistic of :func:`memsim.analysis.consistency.analyse` (flattened by
        :func:`flatten_statistics`, with step-index aliases; without the costly analyses that
        ``statistics`` does not name), plus ``participants`` (participants who started step 1).
    """
    from memsim.analysis.consistency import analyse
    from memsim.analysis.scoring import score
    from memsim.sim.params import default_params_path, load_params, params_from_mapping
    from memsim.sim.simulate import simulate_arrays

    prepared = _prepared(spec["protocol"], float(spec.get("scale", 1.0)))
    protocol = prepared.protocol
    if spec.get("params") is None:
        params = load_params(default_params_path(protocol))
    else:
        params = params_from_mapping(spec["params"], "<cell>")
    # a cell needs statistics only: the campaign stays arrays, no trial DataFrame, no Parquet
    sim = simulate_arrays(prepared, params, seed=int(spec["seed"]), workspace=_workspace())
    split = spec.get("analysis") or {}
    wanted = spec.get("statistics")  # the study's: the costly analyses nobody reads are skipped
    # the simulator's tables meet the trial-table contract by construction (tests/test_run.py)
    stats = analyse(
        score(sim.trials, sim.protocol, validate=False),
        truth=sim.videos_frame(),
        seed=int(spec["analysis_seed"]),
        n_splits=int(split.get("n_splits", 25)),
        repeats=int(split.get("repeats", 3)),
        only=None if wanted is None else {w.split(".")[0] for w in wanted},
    )
    stats.pop("seed", None)
    out = flatten_statistics(stats)
    # step-index aliases (step1, step2, ...) so one study can compare protocols whose steps differ
    names = {}
    for i, s in enumerate(protocol.steps, start=1):
        names[s.name] = names[s.scoring.column] = f"step{i}"
    for key in list(out):
        parts = key.split(".")
        alias = ".".join(names.get(p, p) for p in parts)
        if alias != key:
            out.setdefault(alias, out[key])
    out["participants"] = float(sim.n_participants)
    return out


_PREPARED: dict = {}  # (protocol, scale) -> PreparedProtocol, for the cells of one worker
_LOCAL = threading.local()  # a Dask worker may run cells on several threads of one process


def _workspace() -> dict:
    """This thread's table memory, reused from cell to cell (a cell keeps only statistics)."""
    if not hasattr(_LOCAL, "workspace"):
        _LOCAL.workspace = {}
    return _LOCAL.workspace


def _prepared(protocol: dict, scale: float):
    """The cell's protocol, validated, scaled and laid out once per worker process (the cells
    of a study mostly share one)."""
    from memsim.design.protocol import protocol_from_mapping
    from memsim.sim.simulate import prepare

    key = (_canonical(protocol), scale)
    if key not in _PREPARED:
        if len(_PREPARED) > 16:
            _PREPARED.clear()
        _PREPARED[key] = prepare(protocol_from_mapping(protocol, "<cell>"), scale)
    return _PREPARED[key]


def _preflight(spec: dict) -> None:
    """Cheap run-time feasibility of a cell: lag-constrained sequences for 32 participants per step.

    Schema validation cannot see that repeats may not fit a sequence (dead ends
    in placing them); this catches it before the sweep starts. Feasibility is a
    property of a step's layout, so each distinct layout is tried once (seed 0).
    """
    import numpy as np_

    from memsim.design.protocol import protocol_from_mapping
    from memsim.sim.sequence import generate_sequences, layout_for

    protocol = protocol_from_mapping(spec["protocol"], "")
    for s, step in enumerate(protocol.steps):
        if not any(g.repeat_lag is not None for g in step.items):
            continue
        key = (s, step.length, tuple((g.count, g.repeat_lag) for g in step.items))
        if key not in _FEASIBLE:
            generate_sequences(layout_for(step), 0, np_.arange(32, dtype=np_.int64), s)
            _FEASIBLE.add(key)


_FEASIBLE: set = set()  # step layouts already placed by _preflight in this process
run_cell.preflight = _preflight  # type: ignore[attr-defined]


def import_cell(ref: str, study_path=None) -> Callable[[dict], dict]:
    """The callable named ``module:function``."""
    module, _, name = ref.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"cell: cannot import {ref} ({exc})", path=study_path) from None
    return fn


# --------------------------------------------------------------------------- executors
def _worker_init(numba_threads: int) -> None:
    import signal

    # set before the cell function first imports numba in this fresh (spawned) process
    os.environ.setdefault("NUMBA_NUM_THREADS", str(numba_threads))
    # Ctrl-C is the driver's to handle: workers finish their cell quietly, then exit
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class CellFailed(Exception):
    """A cell function raised: carries the (cell, replicate) key and the original error."""

    def __init__(self, key: tuple[int, int], error: BaseException) -> None:
        super().__init__(f"cell {key[0]} replicate {key[1]}: {error}")
        self.key = key
        self.error = error


def _call(get: Callable[[], dict], key: tuple[int, int]) -> dict:
    try:
        return get()
    except Exception as exc:  # noqa: BLE001 - re-raised with the cell named, original chained
        raise CellFailed(key, exc) from exc


class _Inline:
    """One worker: run in this process (no start-up cost, numba keeps every core)."""

    def run(self, fn, jobs: list[tuple[Any, dict]]) -> Iterator[tuple[Any, dict]]:
        for key, spec in jobs:
            yield key, _call(lambda spec=spec: fn(spec), key)

    def close(self, wait: bool = True) -> None:
        pass


class _ProcessPool:
    """N local worker processes (``spawn``: no fork of a process whose numba threads are live)."""

    def __init__(self, workers: int) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        threads = max(1, (os.cpu_count() or 1) // workers)
        self.pool = ProcessPoolExecutor(
            workers,
            mp_context=mp.get_context("spawn"),
            initializer=_worker_init,
            initargs=(threads,),
        )

    def run(self, fn, jobs):
        from concurrent.futures import as_completed

        futures = {self.pool.submit(fn, spec): key for key, spec in jobs}
        for fut in as_completed(futures):
            yield futures[fut], _call(fut.result, futures[fut])

    def close(self, wait: bool = True) -> None:
        self.pool.shutdown(wait=wait, cancel_futures=True)


class _Dask:
    """An existing Dask cluster: the same cell function, shipped by reference."""

    def __init__(self, address: str, tag: str) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise UserError(
                "--scheduler needs dask.distributed: pip install 'memsim[dask]'"
            ) from None
        try:
            self.client = Client(address, timeout="20s", set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise UserError(f"--scheduler {address}: cannot connect ({exc})") from None
        self.tag = tag

    def run(self, fn, jobs):
        from distributed import as_completed

        futures = {}
        for key, spec in jobs:
            fut = self.client.submit(
                fn, spec, key=f"memsim-{self.tag}-{key[0]}-{key[1]}", pure=False
            )
            futures[fut.key] = (fut, key)
        for fut in as_completed([f for f, _ in futures.values()], loop=self.client.loop):
            yield futures[fut.key][1], _call(fut.result, futures[fut.key][1])

    def close(self, wait: bool = True) -> None:
        self.client.close()


# --------------------------------------------------------------------------- files
def _shard_path(out: Path, cell: int, replicate: int) -> Path:
    return out / SHARD_DIR / f"c{cell:06d}-r{replicate:05d}.parquet"


def _schema(plan: Plan):
    import pyarrow as pa

    types = {
        "bool": pa.bool_(),
        "int64": pa.int64(),
        "float64": pa.float64(),
        "string": pa.string(),
        "json": pa.string(),
    }
    fields = [pa.field("cell", pa.int64()), pa.field("replicate", pa.int64())]
    fields += [pa.field(c, types[t]) for c, t in plan.columns.items()]
    fields += [
        pa.field("seed", pa.int64()),
        pa.field("participants", pa.float64()),
        pa.field(COST_COLUMN, pa.float64()),
    ]
    fields += [pa.field(s, pa.float64()) for s in plan.study["statistics"]]
    return pa.schema(fields)


def _row(plan: Plan, cell: int, replicate: int, result: dict, study_path) -> dict:
    c = plan.cells[cell]
    missing = [s for s in plan.study["statistics"] if s not in result]
    if missing and plan.study.get("missing") == "nan":
        result = {**result, **{s: math.nan for s in missing}}
    elif missing:
        have = ", ".join(sorted(result)) or "none"
        raise UserError(
            f"statistics: the cell function gives no {missing[0]!r} (it gives: {have})",
            path=study_path,
        )
    nominal = max(1, round(_nominal_participants(c["protocol"]) * float(plan.study["scale"])))
    participants = float(result.get("participants", nominal))
    row = {"cell": cell, "replicate": replicate, **c["coords"]}
    row["seed"] = plan.seeds[cell][replicate][0]
    row["participants"] = participants
    row[COST_COLUMN] = crowd_minutes(c["protocol"], result, participants)
    row.update({s: float(result[s]) for s in plan.study["statistics"]})
    return row


def _write_parquet(table, path: Path) -> None:
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", write_statistics=False)


def _prepare(out: Path, study_text: str, plan: Plan) -> bool:
    """Create ``out`` for ``plan``, or check that it already belongs to it.

    Returns True when ``out`` was started by a different version of memsim's code.
    """
    plan_file = out / PLAN_FILE
    if plan_file.exists():
        try:
            saved = json.loads(plan_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            saved = {}
        old = saved.get("fingerprint")
        if old != plan.fingerprint:
            raise UserError(
                "holds a sweep of a different study (or of a changed protocol or parameters); "
                "use another --out or delete it",
                path=out,
            )
        return saved.get("code") != plan.code
    if out.exists() and (
        not out.is_dir() or any(not p.name.startswith(".") for p in out.iterdir())
    ):
        raise UserError("exists and is not a sweep folder; use another --out", path=out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / STUDY_FILE, study_text)
    write_text_atomic(plan_file, json.dumps(plan.model_dump(), indent=1, sort_keys=True) + "\n")
    return False


def _clean_temps(out: Path) -> None:
    """Remove temp files a killed run left (atomic writes that never got renamed)."""
    for folder in (out, out / SHARD_DIR):
        if folder.is_dir():
            for p in folder.glob(".*.tmp"):
                p.unlink(missing_ok=True)


def combine(out: Path, plan: Plan) -> Path:
    """Gather every shard into ``results.parquet``, rows sorted by (cell, replicate)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _schema(plan)
    reps = int(plan.study["replicates"])
    tables = [
        pq.read_table(_shard_path(out, c, r), schema=schema)
        for c in range(len(plan.cells))
        for r in range(reps)
    ]
    table = pa.concat_tables(tables).combine_chunks() if tables else schema.empty_table()
    path = out / RESULTS_FILE
    _write_parquet(table, path)
    return path


# --------------------------------------------------------------------------- the sweep
def _check_cells(plan: Plan, fn, study_path) -> None:
    """Run the cell function's ``preflight`` (if it has one) on every cell, before anything runs."""
    check = getattr(fn, "preflight", None)
    if check is None:
        return
    for c in plan.cells:
        try:
            check(
                {
                    "protocol": c["protocol"],
                    "params": c["params"],
                    "seed": plan.seeds[c["cell"]][0][0],
                }
            )
        except UserError as exc:
            where = ", ".join(f"{k} = {v}" for k, v in c["coords"].items()) or "the base protocol"
            raise UserError(f"vary {where}: infeasible cell: {exc}", path=study_path) from None


def run_sweep(
    study_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    workers: int = 1,
    scheduler: str | None = None,
    cell_fn: Callable[[dict], dict] | None = None,
    progress: ProgressCallback | None = None,
    log: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> SweepResult:
    """Run (or resume) the sweep of ``study_path`` into folder ``out``.

    Parameters
    ----------
    workers : int
        Local worker processes (1 runs in this process). Ignored with ``scheduler``.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:port``).
    cell_fn : callable, optional
        Overrides the study's ``cell`` (tests); must be picklable by reference.
    progress : callable, optional
        Receives a :class:`memsim.progress.Progress` per finished run (``detail``: the time
        left at the rate so far).
    log, warn : callable, optional
        Receive the one-line plan of the sweep and any warning (a changed code base on
        resume, statistics no cell gave).

    Returns
    -------
    SweepResult
    """
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    study_path = Path(study_path)
    out = Path(out)
    study = load_study(study_path)
    plan = resolve_study(study, study_path)  # everything validated before anything runs
    fn = cell_fn or import_cell(study.cell, study_path)
    _check_cells(plan, fn, study_path)
    code_changed = _prepare(out, read_text(study_path, "study file"), plan)
    _clean_temps(out)
    (out / SHARD_DIR).mkdir(exist_ok=True)

    reps = study.replicates
    jobs = []
    for c in plan.cells:
        for r in range(reps):
            if _shard_path(out, c["cell"], r).exists():
                continue
            s_seed, a_seed = plan.seeds[c["cell"]][r]
            spec = {
                "protocol": c["protocol"],
                "params": c["params"],
                "seed": s_seed,
                "analysis_seed": a_seed,
                "scale": study.scale,
                "analysis": study.analysis.model_dump(),
                "statistics": list(study.statistics),
                "cell": c["cell"],
                "replicate": r,
                "coords": c["coords"],
            }
            jobs.append(((c["cell"], r), spec))
    skipped = plan.n_runs - len(jobs)
    if code_changed and jobs and skipped and warn:
        warn(
            f"warning: {out}: memsim's code changed since this sweep started; "
            "new shards may not match the old ones (delete the folder for a clean run)"
        )
    if log:
        where = (
            f"Dask scheduler {scheduler}"
            if scheduler
            else f"{workers} local worker{'s' * (workers > 1)}"
        )
        resumed = f", {skipped} already done" if skipped else ""
        log(
            f"{study.name}: {len(plan.cells)} cells x {reps} replicates = {plan.n_runs} runs on "
            f"{where}{resumed}"
        )

    import pyarrow as pa

    schema = _schema(plan)
    t0 = time.perf_counter()
    if jobs:
        if scheduler:
            executor: Any = _Dask(scheduler, plan.fingerprint[:12])
        elif workers == 1 or len(jobs) == 1:
            executor = _Inline()
        else:
            executor = _ProcessPool(min(workers, len(jobs)))
        finished = False
        done = skipped
        report(progress, "sweep", study.name, done, plan.n_runs, unit="runs")
        try:
            for (cell, rep), result in executor.run(fn, jobs):
                row = _row(plan, cell, rep, result, study_path)
                _write_parquet(
                    pa.Table.from_pylist([row], schema=schema), _shard_path(out, cell, rep)
                )
                done += 1
                spent = time.perf_counter() - t0
                left = spent / (done - skipped) * (plan.n_runs - done)
                report(
                    progress,
                    "sweep",
                    study.name,
                    done,
                    plan.n_runs,
                    unit="runs",
                    detail=f"~{left:.0f} s left" if done < plan.n_runs else "",
                )
            finished = True
        except CellFailed as failed:
            cell, rep = failed.key
            where = (
                ", ".join(f"{k} = {v}" for k, v in plan.cells[cell]["coords"].items())
                or "the base protocol"
            )
            if isinstance(
                failed.error, UserError
            ):  # the user's cell cannot run: one line, resumable
                raise UserError(
                    f"cell {cell} ({where}) replicate {rep} failed: {failed.error} "
                    f"(the {len(list((out / SHARD_DIR).glob('*.parquet')))} finished runs are "
                    "kept)",
                    path=study_path,
                ) from None
            # a bug: keep its traceback, with the cell named above it
            raise failed.error from failed
        finally:
            # on an error or Ctrl-C, do not wait for running cells: their shards would be dropped
            # anyway
            executor.close(wait=finished)
    seconds = time.perf_counter() - t0
    results = combine(out, plan)
    if study.missing == "nan" and warn:
        import pyarrow.parquet as pq

        table = pq.read_table(results, columns=list(study.statistics))
        empty = [
            s
            for s in study.statistics
            if table.num_rows
            and table[s].to_numpy().dtype.kind == "f"
            and np.isnan(table[s].to_numpy()).all()
        ]
        if empty:
            warn(
                f"warning: no cell gave {len(empty)} of the statistics (all NaN): "
                f"{', '.join(empty[:5])}"
                + (" ..." if len(empty) > 5 else "")
                + " (check for typos: memsim sweep STUDY --list-statistics)"
            )
    return SweepResult(
        cells=len(plan.cells),
        replicates=reps,
        runs=plan.n_runs,
        skipped=skipped,
        ran=len(jobs),
        seconds=seconds,
        results=results,
    )


def list_statistics(study_path: str | os.PathLike[str], scale: float = 0.02) -> dict[str, float]:
    """What the study's cell function gives for its first cell, run once at a small ``scale``."""
    study_path = Path(study_path)
    study = load_study(study_path)
    plan = resolve_study(study, study_path)
    fn = import_cell(study.cell, study_path)
    c = plan.cells[0]
    s_seed, a_seed = plan.seeds[0][0]
    spec = {
        "protocol": c["protocol"],
        "params": c["params"],
        "seed": s_seed,
        "analysis_seed": a_seed,
        "scale": min(scale, study.scale),
        "analysis": study.analysis.model_dump(),
        "cell": 0,
        "replicate": 0,
        "coords": c["coords"],
    }
    return fn(spec)


def load_plan(out: str | os.PathLike[str]) -> Plan:
    """The plan saved in a sweep folder."""
    path = Path(out) / PLAN_FILE
    text = read_text(path, "sweep plan (is this a `memsim sweep` folder?)")
    try:
        return Plan.model_validate(json.loads(text))
    except (ValueError, ValidationError) as exc:
        raise UserError(f"damaged sweep plan ({str(exc).splitlines()[0]})", path=path) from None


@dataclass(frozen=True)
class SweepResult:
    """A finished :func:`run_sweep`.

    Attributes
    ----------
    cells, replicates, runs : int
        The study's size (``runs = cells x replicates``).
    skipped : int
        Runs already done in the folder (a resumed sweep).
    ran : int
        Runs done by this call.
    seconds : float
        Wall time of the runs of this call.
    results : Path
        ``results.parquet``: one row per cell and replicate (:meth:`table`).
    """

    cells: int
    replicates: int
    runs: int
    skipped: int
    ran: int
    seconds: float
    results: Path

    @property
    def runs_per_minute(self) -> float:
        """Runs per minute of this call (only the runs it did)."""
        return self.ran / self.seconds * 60.0 if self.seconds > 0 else math.inf

    def table(self):
        """The results as a DataFrame (cell coordinates, seed, cost, statistics)."""
        import pandas as pd

        return pd.read_parquet(self.results)
