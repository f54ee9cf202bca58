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

The cell function is one picklable callable, ``cell(spec) -> {name: float}``, chosen by
name from a registry (:data:`CELLS`; default ``campaign``, :func:`run_cell`: simulate,
then summarise), never imported from a path the study names: a study file is a
declaration, not code. Third-party cells register through the ``memsim.cells`` entry
point group (docs/sweeps.md). The function is sent unchanged to a local process pool or
to a Dask cluster (``scheduler=``). The workers only compute; this process writes every
file, so workers need no shared file system.

Nothing is created before everything the study needs is checked (every cell, the cell
function, the limits, the scheduler), and the folder itself appears whole: it is built as
a hidden sibling and renamed into place with its first finished run, so a sweep that
fails on its first cell leaves nothing.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import importlib
import importlib.metadata
import json
import math
import numbers
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Strict,
    Tag,
    ValidationError,
    model_validator,
)

from memsim import _jitcache, limits
from memsim.analysis.consistency import flatten_statistics
from memsim.design.protocol import Name, integer, number
from memsim.errors import UserError
from memsim.io import (
    atomic_path,
    check_output,
    forget_output,
    format_pydantic_error,
    load_yaml_mapping,
    read_text,
    remove_stale,
    staged_dir,
    write_text_atomic,
)
from memsim.paths import locate, set_path
from memsim.progress import ProgressCallback, TimeLeft, clock, report
from memsim.resources import is_protocol_name, posterior_path, protocol_path

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
    "CELLS",
    "CELL_GROUP",
    "register_cell",
    "get_cell",
    "cell_names",
    "cell_seeds",
    "minutes_per_participant",
]

DEFAULT_CELL = "campaign"
CELL_GROUP = "memsim.cells"  # the entry point group of third-party cell functions
# what studies and plans written before the registry named the default cell (resumable)
LEGACY_CELLS = {"memsim.study.sweep:run_cell": "campaign", "memsim.sweep:run_cell": "campaign"}
PLAN_FILE = "plan.json"
STUDY_FILE = "study.yaml"
RESULTS_FILE = "results.parquet"
SHARD_DIR = "shards"
COST_COLUMN = "participant_minutes"
_RESERVED = {"cell", "replicate", "seed", "participants", COST_COLUMN}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _non_finite(value: Any) -> bool:
    """True when ``value`` holds a NaN or an infinity anywhere (JSON, and seeds, have none)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_non_finite(v) for v in value)
    return False


def _yaml_file(value: str, what: str) -> str:
    """A file a study names: a YAML file (``.yaml`` / ``.yml``), relative to the study file."""
    if not value.endswith((".yaml", ".yml")) or "\0" in value:
        subject = "" if what == "must" else f"{what} "
        raise ValueError(f"{subject}must name a YAML file (.yaml or .yml), got {value[:60]!r}")
    return value


POSTERIOR_PREFIX = "posterior "


def _params_ref(value: str) -> str:
    """A study's population: a YAML parameter file, or ``posterior DIR`` (a folder written by
    ``memsim infer``: one posterior draw per replicate)."""
    if value.startswith(POSTERIOR_PREFIX):
        folder = value[len(POSTERIOR_PREFIX) :].strip()
        if not folder or "\0" in folder:
            raise ValueError("posterior: name the folder `memsim infer` wrote (posterior DIR)")
        return POSTERIOR_PREFIX + folder
    return _yaml_file(value, "must")


def posterior_folder(study: Study, base_dir: Path) -> Path | None:
    """The posterior folder of a study whose ``params`` is ``posterior DIR`` (None otherwise):
    ``DIR`` relative to the study file's folder, or a shipped posterior's name (``videomem``)."""
    if study.params is None or not study.params.startswith(POSTERIOR_PREFIX):
        return None
    return posterior_path(study.params[len(POSTERIOR_PREFIX) :], base_dir)


def _protocol_ref(value: str) -> str:
    """A study's base protocol: a shipped protocol's name, or a YAML file."""
    return value if is_protocol_name(value) else _yaml_file(value, "must")


def _cell_name(value: str) -> str:
    if value in LEGACY_CELLS:
        return LEGACY_CELLS[value]
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}", value):
        raise ValueError(
            f"{value[:60]!r} is not a cell name: cells are memsim's registered cell functions, "
            "chosen by name (default 'campaign'; docs/sweeps.md), never an import path"
        )
    return value


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
        if "." not in self.path:
            if not all(isinstance(v, str) for v in self.values):
                raise ValueError(
                    f"vary {self.path}: values must be file names (a whole {self.path} per value)"
                )
            for v in self.values:
                _yaml_file(v, f"vary {self.path}: a value")
        if _non_finite(self.values):
            raise ValueError(f"vary {self.path}: a value is NaN or infinite")
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


# an entry of `vary` is a zip group when it has `zip`, else an axis: errors then name the
# entry's own fields instead of both union branches
VaryEntry = Annotated[
    Annotated[Axis, Tag("axis")] | Annotated[ZipGroup, Tag("zip")],
    Discriminator(
        lambda v: (
            "zip" if (isinstance(v, dict) and "zip" in v) or isinstance(v, ZipGroup) else "axis"
        )
    ),
]


class Analysis(_Frozen):
    """How many random splits the default cell's analysis averages (the paper: 25 human splits)."""

    n_splits: integer(ge=1, le=1000) = 25
    repeats: integer(ge=1, le=100) = 3


class Study(_Frozen):
    """A what-if study: a base protocol, the grid to vary, replicates, statistics, seed."""

    name: Name
    description: str = Field(default="", max_length=10_000)
    protocol: Annotated[str, AfterValidator(_protocol_ref)] = Field(
        description="base protocol: a YAML file, relative to the study file, or a shipped "
        "protocol's name (videomem, memento10k, isola2011, lamem)"
    )
    params: Annotated[str, AfterValidator(_params_ref)] | None = Field(
        default=None,
        description="population parameter file (default: the protocol's calibrated one), or "
        "'posterior DIR': a folder written by `memsim infer`, one posterior draw per replicate",
    )
    set: dict[str, Any] = Field(
        default_factory=dict,
        description="fixed changes to the base, {dotted path: value}, applied before any axis",
    )
    vary: tuple[VaryEntry, ...] = ()
    replicates: integer(ge=1, le=100_000) = 1
    statistics: tuple[str, ...] = Field(min_length=1)
    seed: integer(ge=0, lt=2**63)
    scale: number(gt=0, le=1) = Field(
        default=1.0, description="simulate this share of the protocol's stimuli and participants"
    )
    common_random_numbers: Annotated[bool, Strict()] = Field(
        default=False,
        description=(
            "replicate r of every cell uses the same seed (sharper differences between cells)"
        ),
    )
    stimuli_seed: integer(ge=0, lt=2**63) | None = Field(
        default=None,
        description="every run plays the stimuli drawn with this seed, its participants, "
        "campaign and responses still its own: replicates are new campaigns on the same "
        "stimuli (simulate's stimuli_seed)",
    )
    cell: Annotated[str, AfterValidator(_cell_name)] = Field(
        default=DEFAULT_CELL,
        description="the cell function by its registered name (CELLS, or a memsim.cells entry "
        "point)",
    )
    missing: Literal["error", "nan"] = Field(
        default="error",
        description="a statistic a cell does not give: stop with an error, or record NaN "
        "(for grids mixing protocols whose steps differ)",
    )
    figures: tuple[Figure, ...] = ()
    baseline: dict[str, Any] | None = Field(
        default=None,
        description="a cell named by its value on every axis, {axis name: value}: `memsim "
        "report` adds each cell's difference to it within each replicate (paired: the same "
        "seed with common_random_numbers, the same posterior draw with 'posterior DIR')",
    )
    analysis: Analysis = Field(
        default_factory=lambda: Analysis(), description="split counts of the analysis"
    )

    @model_validator(mode="after")
    def _check(self) -> Study:
        if _non_finite(self.set):
            raise ValueError("set: a value is NaN or infinite")
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
        if self.baseline is not None:
            named = set(self.baseline)
            if named - set(cols):
                raise ValueError(f"baseline: no axis named {sorted(named - set(cols))[0]!r}")
            if set(cols) - named:
                raise ValueError(
                    f"baseline: name a value for every axis ({sorted(set(cols) - named)[0]!r} "
                    "has none)"
                )
            for a in self.axes:
                if self.baseline[a.column] not in a.values:
                    raise ValueError(
                        f"baseline: {self.baseline[a.column]!r} is not among the values of "
                        f"{a.column!r}"
                    )
            for entry in self.vary:  # zipped axes: their values at one position together
                if isinstance(entry, ZipGroup):
                    at = [self.baseline[z.column] for z in entry.zip]
                    if not any(list(vs) == at for vs in zip(*(z.values for z in entry.zip))):
                        raise ValueError(
                            "baseline: the zipped axes "
                            f"{', '.join(repr(z.column) for z in entry.zip)} never take the "
                            f"values {at} together"
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
        raise format_pydantic_error(_Untagged(exc), path, Study) from None


class _Untagged:
    """A ValidationError whose locations leave out the tags of ``vary``'s union (an error in
    ``vary.0.axis.values`` is shown as ``vary.0.values``)."""

    def __init__(self, exc: ValidationError) -> None:
        self.exc = exc

    def errors(self) -> list[dict]:
        out = []
        for e in self.exc.errors():
            loc = tuple(e.get("loc", ()))
            if len(loc) > 2 and loc[0] == "vary" and loc[2] in ("axis", "zip"):
                loc = loc[:2] + loc[3:]
            out.append({**e, "loc": loc})
        return out


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
    # with `params: posterior DIR`: replicate r's posterior draw, {parameter path: value}
    posterior: list[dict[str, float]] | None = None

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
    folder = posterior_folder(study, base_dir)
    if folder is not None:  # the set the posterior's fixed parameters come from
        path = folder / "base-params.yaml"
        if not path.is_file():
            raise UserError(
                f"params: posterior {folder}: no base-params.yaml there: not a folder written "
                "by `memsim infer`",
                path=study_path,
            )
        return api.load_params(path).dump()
    ppath = base_dir / study.params if study.params else api.default_params_path(protocol)
    return api.load_params(ppath).dump()


def grid_runs(study: Study) -> int:
    """Runs of ``study`` (cells x replicates), counted without resolving a cell."""
    cells = math.prod(
        len(e.zip[0].values) if isinstance(e, ZipGroup) else len(e.values) for e in study.vary
    )
    return cells * study.replicates


def resolve_study(
    study: Study, study_path: str | os.PathLike[str], *, allow_large: bool = False
) -> Plan:
    """Resolve and validate every cell of ``study``; raise one-line UserError on the first bad
    one.

    A study of more than :data:`memsim.limits.MAX_RUNS` runs is refused before any cell is
    resolved, unless ``allow_large``. Files the study names (``protocol``, ``params``, whole
    protocol or parameter axes) are YAML files, relative to the study file, and must load
    as their kind.
    """
    from memsim.design.protocol import load_protocol, protocol_from_mapping

    study_path = Path(study_path)
    try:
        limits.check_runs(grid_runs(study), allow_large, what="the study")
    except UserError as exc:
        raise UserError(str(exc), path=study_path) from None
    base_dir = study_path.parent
    proto_path = base_dir / study.protocol
    if is_protocol_name(study.protocol) and not proto_path.exists():
        proto_path = protocol_path(study.protocol)  # a shipped protocol by name
    if not proto_path.exists():
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
            node, key = locate(base, path)
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
                node, key = locate(tree, axis.path)
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
    # a study without stimuli_seed dumps as before the field, so its fingerprint is unchanged
    dumped = study.model_dump(
        mode="json", exclude={"stimuli_seed"} if study.stimuli_seed is None else None
    )
    draws = _posterior_draws(study, base_dir, study_path)
    return Plan(
        study=dumped,
        columns=columns,
        cells=cells,
        seeds=seeds,
        fingerprint=_fingerprint(dumped, columns, cells, seeds, draws),
        code=code_hash(),
        posterior=draws,
    )


def _posterior_draws(study: Study, base_dir: Path, study_path) -> list[dict] | None:
    """Replicate r's posterior draw (the r-th draw of the folder), for ``params: posterior DIR``.

    The draws set the posterior's parameters of every cell; an axis or ``set`` on one of them
    would be overwritten, so it is refused.
    """
    folder = posterior_folder(study, base_dir)
    if folder is None:
        return None
    from memsim.study.infer import posterior_draws

    try:
        draws = posterior_draws(folder, study.replicates)
    except UserError as exc:
        raise UserError(f"params: posterior: {exc}", path=study_path) from None
    paths = {f"params.{p}" for p in draws[0]}
    clash = sorted(paths & ({a.path for a in study.axes} | set(study.set)))
    if clash:
        raise UserError(
            f"{clash[0]}: set by each replicate's posterior draw; vary or set another parameter",
            path=study_path,
        )
    return draws


def _fingerprint(
    study: dict, columns: dict, cells: list, seeds: list, posterior: list | None = None
) -> str:
    body = {"study": dict(study), "columns": columns, "cells": cells, "seeds": seeds}
    if posterior is not None:  # the draws, not the folder's name, are what the runs depend on
        body["posterior"] = posterior
    body["study"].pop("description", None)  # wording changes do not change results
    body["study"].pop("baseline", None)  # nor does the cell the report compares with
    return hashlib.sha256(_canonical(body).encode()).hexdigest()


def plan_fingerprints(plan: Plan) -> set[str]:
    """The plan's fingerprint, and the ones it had when its cell was named the old way.

    Sweep folders started before the cell registry saved plans whose study named the
    default cell ``memsim.study.sweep:run_cell`` (or ``memsim.sweep:run_cell``); they
    resume.
    """
    out = {plan.fingerprint}
    cell = plan.study.get("cell")
    for old, new in LEGACY_CELLS.items():
        if new == cell:
            study = {**plan.study, "cell": old}
            out.add(_fingerprint(study, plan.columns, plan.cells, plan.seeds))
    return out


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
        ``repeats``; default 25 and 3), optionally ``statistics`` (the study's: the
        analyses none of them reads are skipped) and ``stimuli_seed`` (the study's: the
        stimuli drawn with it).

    Returns
    -------
    dict
        Every scalar statistic of :func:`memsim.analysis.consistency.analyse` (flattened by
        :func:`flatten_statistics`, with step-index aliases; without the analyses that
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
    stimuli_seed = spec.get("stimuli_seed")
    sim = simulate_arrays(
        prepared,
        params,
        seed=int(spec["seed"]),
        workspace=_workspace(),
        stimuli_seed=None if stimuli_seed is None else int(stimuli_seed),
    )
    split = spec.get("analysis") or {}
    wanted = spec.get("statistics")  # the study's: the analyses nobody reads are skipped
    only = None if wanted is None else {w.split(".")[0] for w in wanted}
    # the simulator's tables meet the trial-table contract by construction (tests/test_run.py)
    stats = analyse(
        score(sim.trials, sim.protocol, validate=False),
        truth=sim.videos_frame() if only is None or "truth" in only else None,
        seed=int(spec["analysis_seed"]),
        n_splits=int(split.get("n_splits", 25)),
        repeats=int(split.get("repeats", 3)),
        only=only,
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


# --------------------------------------------------------------------------- the cell registry
CELLS: dict[str, Callable[[dict], dict]] = {"campaign": run_cell}


def register_cell(name: str, fn: Callable[[dict], dict] | None = None):
    """Register a cell function under ``name`` (usable as a decorator).

    The function must be importable by reference (a module-level function) so that worker
    processes and Dask workers can receive it. A package registers its cells for every
    process, the CLI's included, through the ``memsim.cells`` entry point group instead::

        [project.entry-points."memsim.cells"]
        my-cell = "mypackage.cells:my_cell"
    """
    _cell_name(name)
    if name in LEGACY_CELLS:
        raise ValueError(f"{name!r} is a reserved cell name")

    def add(f: Callable[[dict], dict]) -> Callable[[dict], dict]:
        if not callable(f):
            raise TypeError(f"cell {name!r}: {f!r} is not callable")
        CELLS[name] = f
        return f

    return add if fn is None else add(fn)


def _entry_points() -> dict:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=CELL_GROUP)}


def cell_names() -> list[str]:
    """Every cell name a study may use: the registry's and the entry points'."""
    return sorted(set(CELLS) | set(_entry_points()))


def get_cell(name: str, study_path=None) -> Callable[[dict], dict]:
    """The cell function registered as ``name`` (or by a ``memsim.cells`` entry point).

    Only registered names resolve: a study file cannot make memsim import or call anything
    else. Loading an entry point imports the package that declared it (installed code).
    """
    name = LEGACY_CELLS.get(name, name)
    if name in CELLS:
        return CELLS[name]
    ep = _entry_points().get(name)
    if ep is None:
        known = ", ".join(cell_names())
        raise UserError(
            f"cell: no cell function named {name!r} (registered: {known}; docs/sweeps.md)",
            path=study_path,
        )
    try:
        fn = ep.load()
    except Exception as exc:  # noqa: BLE001 - a broken plugin is reported, not a memsim bug
        raise UserError(
            f"cell: the entry point {name} = {ep.value} cannot be loaded "
            f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})",
            path=study_path,
        ) from None
    if not callable(fn):
        raise UserError(
            f"cell: the entry point {name} = {ep.value} is not callable", path=study_path
        )
    return fn


# --------------------------------------------------------------------------- executors
def _worker_init(numba_threads: int) -> None:
    import signal

    import numba

    # numba is imported already: unpickling this initializer imported this module. So its
    # thread count is set at run time, not through NUMBA_NUM_THREADS: numba read that
    # variable at its import, and an environment changed after its threads started makes
    # the next compilation in this process raise ("Cannot set NUMBA_NUM_THREADS to a
    # different value once the threads have been launched").
    numba.set_num_threads(max(1, min(numba_threads, numba.config.NUMBA_NUM_THREADS)))
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
        from concurrent.futures import ProcessPoolExecutor

        from memsim.io import in_worker, spawn_context

        threads = max(1, (os.cpu_count() or 1) // workers)
        self.pool = ProcessPoolExecutor(
            workers,
            mp_context=spawn_context(),  # Ctrl-C reaches this process only
            initializer=in_worker,  # the workers die with this process (a kill leaves none)
            initargs=(os.getpid(), _worker_init, threads),
        )

    def run(self, fn, jobs):
        from concurrent.futures import as_completed

        futures = {self.pool.submit(fn, spec): key for key, spec in jobs}
        for fut in as_completed(futures):
            yield futures[fut], _call(fut.result, futures[fut])

    def close(self, wait: bool = True) -> None:
        self.pool.shutdown(wait=wait, cancel_futures=True)


def _probe_scheduler(address: str, timeout: float, ssl_context=None) -> None:
    """Check, with a plain socket, that a Dask scheduler answers at ``address``.

    A Dask peer sends its handshake as soon as a connection opens: an 8-byte length, then a
    small msgpack mapping naming its ``pickle-protocol``. Anything else (silence, an SSH or
    HTTP server, random bytes) is refused here, before Dask's client would wait for minutes
    or try to allocate a buffer of the length it read.
    """
    import socket
    import struct

    from distributed.comm.addressing import parse_address, parse_host_port

    scheme, loc = parse_address(address)
    host, port = parse_host_port(loc)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise UserError(f"--scheduler {address}: cannot connect ({exc.strerror or exc})") from None
    try:
        if ssl_context is not None:
            sock = ssl_context.wrap_socket(
                sock, server_hostname=host if ssl_context.check_hostname else None
            )

        def read(n: int) -> bytes:
            data = b""
            while len(data) < n:
                chunk = sock.recv(n - len(data))
                if not chunk:
                    raise UserError(
                        f"--scheduler {address}: the peer closed the connection without a Dask "
                        "handshake (is it a Dask scheduler?)"
                    )
                data += chunk
            return data

        total = struct.unpack("<Q", read(8))[0]
        if not 16 <= total <= 65536:
            raise UserError(
                f"--scheduler {address}: the peer is not a Dask scheduler (its first message "
                f"announces {total:,} bytes, not a handshake)"
            )
        body = read(total)
        n = struct.unpack("<Q", body[:8])[0]
        lengths = struct.unpack(f"<{n}Q", body[8 : 8 + 8 * n]) if 0 < n <= 8 else ()
        import msgpack

        first = body[8 + 8 * n : 8 + 8 * n + lengths[0]] if lengths else b""
        try:
            hello = msgpack.loads(first) if first else None
        except Exception:  # noqa: BLE001 - any undecodable handshake is "not Dask"
            hello = None
        if not isinstance(hello, dict) or "pickle-protocol" not in hello:
            raise UserError(
                f"--scheduler {address}: the peer is not a Dask scheduler (no Dask handshake)"
            )
    except TimeoutError:
        raise UserError(
            f"--scheduler {address}: no Dask handshake within {timeout:g} s "
            "(is it a Dask scheduler? for tls:// give the TLS options)"
        ) from None
    except OSError as exc:  # TLS failures are OSErrors too
        raise UserError(
            f"--scheduler {address}: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        ) from None
    finally:
        sock.close()


class _Dask:
    """An existing Dask cluster: the same cell function, shipped by reference.

    ``address``: ``tcp://host:port`` or ``tls://host:port`` (a bare ``host:port`` is tcp).
    TLS uses Dask's own security settings: ``tls`` gives the CA, certificate and key files
    (:class:`distributed.security.Security`); without them, Dask's configuration
    (``distributed.comm.tls.*``) applies. The scheduler is probed before Dask's client
    connects (:func:`_probe_scheduler`), all within ``timeout`` seconds.
    """

    def __init__(
        self, address: str, tag: str, timeout: float = 10.0, tls: dict | None = None
    ) -> None:
        try:
            from distributed import Client
            from distributed.security import Security
        except ImportError:
            raise UserError(
                "--scheduler needs dask.distributed: pip install 'memsim[dask]'"
            ) from None
        if "://" not in address:
            address = f"tcp://{address}"
        scheme = address.split("://", 1)[0]
        if scheme not in ("tcp", "tls"):
            raise UserError(
                f"--scheduler {address}: memsim talks to a scheduler over tcp:// or tls://, "
                f"not {scheme}://"
            )
        tls = {k: str(v) for k, v in (tls or {}).items() if v is not None}
        if tls and scheme != "tls":
            raise UserError(f"--scheduler {address}: the TLS options need a tls:// address")
        try:
            from distributed.comm.addressing import parse_address, parse_host_port

            parse_host_port(parse_address(address)[1])
        except (ValueError, TypeError) as exc:
            raise UserError(f"--scheduler {address}: not an address ({exc})") from None
        for key, path in tls.items():
            from memsim.io import check_input

            check_input(path, f"TLS file ({key})")
        try:
            security = Security(require_encryption=True, **tls) if scheme == "tls" else Security()
            ssl_context = (
                security.get_connection_args("client")["ssl_context"] if scheme == "tls" else None
            )
        except (OSError, ValueError) as exc:
            raise UserError(
                f"--scheduler {address}: the TLS settings do not load "
                f"({' '.join(str(exc).split())[:200]})"
            ) from None
        if scheme == "tls" and ssl_context is None:
            raise UserError(
                f"--scheduler {address}: no TLS certificates: give --tls-ca-file, --tls-cert "
                "and --tls-key, or set distributed.comm.tls in Dask's configuration"
            )
        _probe_scheduler(address, timeout, ssl_context)
        try:
            self.client = Client(
                address, timeout=f"{timeout}s", security=security, set_as_default=False
            )
        except (OSError, TimeoutError, ValueError, MemoryError) as exc:
            detail = " ".join(str(exc).split())[:200]
            raise UserError(f"--scheduler {address}: cannot connect ({detail})") from None
        self.tag = tag

    def run(self, fn, jobs):
        from distributed import as_completed

        futures = {}
        for key, spec in jobs:
            fut = self.client.submit(
                fn, spec, key=f"memsim-{self.tag}-{key[0]}-{key[1]}", pure=False
            )
            futures[fut.key] = (fut, key)
        name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"

        def result(fut):
            try:
                return fut.result()
            except (RuntimeError, ImportError) as exc:
                # the scheduler or a worker cannot unpickle the cell function: their
                # environment lacks memsim or the cell's package, not a bug of the cell
                text = " ".join(str(exc).split())
                if isinstance(exc, ImportError) or "deserializ" in text:
                    raise UserError(
                        f"the Dask cluster cannot load the cell function {name} "
                        f"({text[:160]}); install memsim, and the package of the cell, where "
                        "the scheduler and the workers run"
                    ) from None
                raise

        for fut in as_completed([f for f, _ in futures.values()], loop=self.client.loop):
            yield futures[fut.key][1], _call(lambda fut=fut: result(fut), futures[fut.key][1])

    def close(self, wait: bool = True) -> None:
        self.client.close()


# --------------------------------------------------------------------------- files
def _shard_done(path: Path) -> bool:
    """A shard is there and readable (its Parquet footer): a damaged one is run again."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file():
        return False
    try:
        pq.read_metadata(path)
    except (pa.ArrowException, OSError):
        return False
    return True


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


def _checked_result(result: Any, study_path) -> dict:
    """A cell function's result as ``{name: float}``, or one line saying what is wrong."""
    if not isinstance(result, Mapping):
        raise UserError(
            f"cell: the cell function returned {type(result).__name__}, not a mapping of "
            "statistic names to numbers",
            path=study_path,
        )
    out = {}
    for k, v in result.items():
        if not isinstance(k, str):
            raise UserError(
                f"cell: the cell function returned a key {k!r} that is not a statistic name",
                path=study_path,
            )
        if not isinstance(v, numbers.Real):
            raise UserError(
                f"cell: the cell function returned {type(v).__name__} for {k!r}, not a number",
                path=study_path,
            )
        out[k] = float(v)
    return out


def _row(plan: Plan, cell: int, replicate: int, result: Any, study_path) -> dict:
    c = plan.cells[cell]
    result = _checked_result(result, study_path)
    missing = [s for s in plan.study["statistics"] if s not in result]
    if missing and plan.study.get("missing") == "nan":
        result = {**result, **{s: math.nan for s in missing}}
    elif missing:
        close = difflib.get_close_matches(missing[0], list(result), n=3, cutoff=0.5)
        have = f"closest: {', '.join(close)}; " if close else ""
        raise UserError(
            f"statistics: the cell function gives no {missing[0]!r} ({have}it gives "
            f"{len(result)} statistics: memsim sweep STUDY --list-statistics)",
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


def _unstarted(out: Path) -> str | None:
    """Why ``out`` is not a sweep that never got going (None: it is one, or empty).

    Before the folder appeared atomically, a sweep killed between ``study.yaml`` and
    ``plan.json`` left ``study.yaml`` (and perhaps an empty ``shards/``) alone: such a folder
    holds no result and is started afresh.
    """
    for p in out.iterdir():
        if p.name.startswith("."):
            continue
        if p.name == STUDY_FILE and p.is_file():
            continue
        if p.name == SHARD_DIR and p.is_dir() and not any(p.glob("*.parquet")):
            continue
        return "exists and is not a sweep folder"
    return None


def _existing(out: Path, plan: Plan) -> dict | None:
    """Check that ``out`` may take ``plan`` without creating anything.

    None: ``out`` is to be created (absent, empty, or a sweep that never got going);
    otherwise ``out`` holds this plan's sweep, and the value is its saved plan (whose
    ``code`` says whether memsim's code changed since it started). A folder of another
    study is refused.
    """
    if not check_output(out, "dir"):
        return None
    plan_file = out / PLAN_FILE
    if not plan_file.exists():
        why = _unstarted(out)
        if why:
            raise UserError(f"{why}; use another --out", path=out)
        return None
    try:
        saved = json.loads(read_text(plan_file, "sweep plan", max_bytes=1 << 30))
    except (UserError, ValueError):
        saved = {}
    if not isinstance(saved, dict) or saved.get("fingerprint") not in plan_fingerprints(plan):
        raise UserError(
            "holds a sweep of a different study (or of a changed protocol or parameters); "
            "use another --out or delete it",
            path=out,
        )
    return saved


def _take_report_fields(out: Path, study_text: str, plan: Plan, saved: dict) -> None:
    """A resumed sweep takes the study's description and baseline as the file has them now:
    no run depends on them (they are not in the fingerprint), the report does. ``saved``:
    the folder's plan as :func:`_existing` read it."""
    now = json.loads(json.dumps(plan.model_dump()))["study"]
    if saved.get("study") == now:
        return
    write_text_atomic(out / STUDY_FILE, study_text)
    write_text_atomic(
        out / PLAN_FILE, json.dumps({**saved, "study": now}, indent=1, sort_keys=True) + "\n"
    )


def _create(out: Path, study_text: str, plan: Plan, first: tuple[Path, Any]) -> None:
    """Make the sweep folder appear whole: study, plan and the first finished run together."""
    with staged_dir(out, _unstarted) as tmp:
        write_text_atomic(tmp / STUDY_FILE, study_text)
        write_text_atomic(
            tmp / PLAN_FILE, json.dumps(plan.model_dump(), indent=1, sort_keys=True) + "\n"
        )
        shard, table = first
        _write_parquet(table, tmp / shard.relative_to(out))
    forget_output(out)  # from now on the folder is resumable state: kept even if a cell fails


def _clean_temps(out: Path) -> None:
    """Remove temp files a killed run left (atomic writes that never got renamed)."""
    for folder in (out, out / SHARD_DIR):
        if folder.is_dir():
            remove_stale(folder)


def combine(out: Path, plan: Plan) -> Path:
    """Gather every shard into ``results.parquet``, rows sorted by (cell, replicate)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _schema(plan)
    reps = int(plan.study["replicates"])

    def shard(c: int, r: int):
        path = _shard_path(out, c, r)
        try:
            return pq.read_table(path, schema=schema)
        except (pa.ArrowException, OSError) as exc:  # shards are written whole: damaged since
            why = " ".join(str(exc).split())[:120]
            raise UserError(
                f"not a readable shard of this sweep ({why}); delete it and rerun `memsim "
                "sweep` to simulate that run again",
                path=path,
            ) from None

    tables = [shard(c, r) for c in range(len(plan.cells)) for r in range(reps)]
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


def _check_memory(plan: Plan, study_path) -> None:
    """The campaign cell's memory estimate (:func:`memsim.limits.check_memory`), per cell."""
    seen = set()
    for c in plan.cells:
        p = c["protocol"]
        most = max(1, round(_nominal_participants(p) * float(plan.study["scale"])))
        rows = most * sum(int(s["length"]) for s in p["steps"])
        if rows in seen:
            continue
        seen.add(rows)
        where = ", ".join(f"{k} = {v}" for k, v in c["coords"].items()) or "the base protocol"
        try:
            limits.check_memory(
                rows, f"{most:,} participants", how="lower the study's scale or budgets"
            )
        except UserError as exc:
            raise UserError(f"vary {where}: {exc}", path=study_path) from None


def _spec(study: Study, plan: Plan, cell: dict, replicate: int, scale: float) -> dict:
    s_seed, a_seed = plan.seeds[cell["cell"]][replicate]
    params = cell["params"]
    if plan.posterior is not None:  # one posterior draw per replicate, the same in every cell
        params = copy.deepcopy(params)
        for path, value in plan.posterior[replicate].items():
            set_path(params, path, value, create=True)
    return {
        "protocol": cell["protocol"],
        "params": params,
        "seed": s_seed,
        "analysis_seed": a_seed,
        "scale": scale,
        "analysis": study.analysis.model_dump(),
        "statistics": list(study.statistics),
        "cell": cell["cell"],
        "replicate": replicate,
        "coords": cell["coords"],
        **({} if study.stimuli_seed is None else {"stimuli_seed": study.stimuli_seed}),
    }


def _cell_features(plan: Plan) -> dict[int, list[float]]:
    """Each cell's numeric swept values (a non-numeric axis: the position of its value)."""
    out = {}
    for c in plan.cells:
        feats = []
        for name, value in c["coords"].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                feats.append(float(value))
            else:
                values = list(dict.fromkeys(str(d["coords"][name]) for d in plan.cells))
                feats.append(float(values.index(str(value))))
        out[c["cell"]] = feats
    return out


def run_sweep(
    study_path: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    workers: int = 1,
    scheduler: str | None = None,
    cell_fn: Callable[[dict], dict] | None = None,
    allow_large: bool = False,
    connect_timeout: float = 10.0,
    tls: dict | None = None,
    progress: ProgressCallback | None = None,
    log: Callable[[str], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> SweepResult:
    """Run (or resume) the sweep of ``study_path`` into folder ``out``.

    Everything is checked before anything is created: the study, every cell, the cell
    function, the limits (:data:`memsim.limits.MAX_RUNS` runs; the memory of one run) and
    the scheduler. The folder then appears whole with its first finished run, so a sweep
    whose first cell fails leaves nothing; once it exists, it is kept (resumable).

    Parameters
    ----------
    workers : int
        Local worker processes (1 runs in this process). Ignored with ``scheduler``.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:port`` or ``tls://host:port``).
    cell_fn : callable, optional
        Overrides the study's ``cell`` (tests); must be picklable by reference.
    allow_large : bool
        Lift the limit on the number of runs.
    connect_timeout : float
        Seconds to reach the scheduler and get its handshake.
    tls : dict, optional
        ``tls_ca_file``, ``tls_client_cert``, ``tls_client_key`` (paths) for a ``tls://``
        scheduler; without them Dask's own configuration (``distributed.comm.tls``) applies.
    progress : callable, optional
        Receives a :class:`memsim.progress.Progress` per finished run (``detail``: the time
        left, from what each cell cost so far: :class:`memsim.progress.TimeLeft`).
    log, warn : callable, optional
        Receive the one-line plan of the sweep and any warning (a changed code base on
        resume, statistics no cell gave).

    Returns
    -------
    SweepResult
    """
    if workers < 1:
        raise UserError(f"--workers must be at least 1, got {workers}")
    if not (math.isfinite(connect_timeout) and connect_timeout > 0):
        raise UserError(f"--connect-timeout must be a positive number, got {connect_timeout}")
    study_path = Path(study_path)
    out = Path(out)
    check_output(out, "dir")
    study = load_study(study_path)
    fn = cell_fn or get_cell(study.cell, study_path)
    plan = resolve_study(study, study_path, allow_large=allow_large)  # every cell validated
    if fn is run_cell:
        _check_memory(plan, study_path)
    _check_cells(plan, fn, study_path)
    study_text = read_text(study_path, "study file", max_bytes=limits.YAML_MAX_BYTES)
    saved = _existing(out, plan)
    exists = saved is not None
    code_changed = exists and saved.get("code") != plan.code
    if exists:
        forget_output(out)  # a sweep folder is resumable state: what it gains is kept
        _clean_temps(out)
        _take_report_fields(out, study_text, plan, saved)

    reps = study.replicates
    jobs = [
        ((c["cell"], r), _spec(study, plan, c, r, study.scale))
        for c in plan.cells
        for r in range(reps)
        if not (exists and _shard_done(_shard_path(out, c["cell"], r)))
    ]
    skipped = plan.n_runs - len(jobs)
    if code_changed and jobs and skipped and warn:
        warn(
            f"warning: {out}: memsim's code changed since this sweep started; "
            "new shards may not match the old ones (delete the folder for a clean run)"
        )
    import pyarrow as pa

    schema = _schema(plan)
    executor: Any = None
    if jobs:  # reach the scheduler before anything is created
        if scheduler:
            executor = _Dask(scheduler, plan.fingerprint[:12], connect_timeout, tls)
        elif workers == 1 or len(jobs) == 1:
            executor = _Inline()
        else:
            executor = _ProcessPool(min(workers, len(jobs)))
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

    t0 = time.perf_counter()
    if jobs:
        finished = False
        done = skipped
        # the workers compile numba's kernels on a first run (seconds each): say so
        cold = progress is not None and not scheduler and _jitcache.cold("sim/kernel")
        note = "compiling kernels (first run only)" if cold else ""
        report(progress, "sweep", study.name, done, plan.n_runs, unit="runs", detail=note)
        # time left from what the runs cost so far, per participant-minute simulated (cells
        # differ: more participants, longer sequences); a cell not yet run is predicted from
        # its swept values
        warmup = 1 if scheduler else min(workers, len(jobs))  # their start-up fits nothing
        eta = TimeLeft([key[0] for key, _ in jobs], _cell_features(plan), warmup=warmup)
        last = t0
        try:
            for (cell, rep), result in executor.run(fn, jobs):
                row = _row(plan, cell, rep, result, study_path)
                table = pa.Table.from_pylist([row], schema=schema)
                shard = _shard_path(out, cell, rep)
                if exists:
                    _write_parquet(table, shard)
                else:
                    _create(out, study_text, plan, (shard, table))
                    exists = True
                done += 1
                now = time.perf_counter()
                eta.finished(cell, now - last, work=row[COST_COLUMN])
                last = now
                left = eta.left()
                report(
                    progress,
                    "sweep",
                    study.name,
                    done,
                    plan.n_runs,
                    unit="runs",
                    detail=f"~{clock(left)} left" if done < plan.n_runs and left else "",
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
                kept = len(list((out / SHARD_DIR).glob("*.parquet"))) if exists else 0
                raise UserError(
                    f"cell {cell} ({where}) replicate {rep} failed: {failed.error} "
                    + (f"(the {kept} finished runs are kept)" if exists else "(nothing written)"),
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
    fn = get_cell(study.cell, study_path)
    plan = resolve_study(study, study_path, allow_large=True)  # only the first cell runs
    return _checked_result(
        fn(_spec(study, plan, plan.cells[0], 0, min(scale, study.scale))), study_path
    )


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
