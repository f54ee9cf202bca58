"""The user's own names for the trial-table contract's columns and roles.

In: a mapping from contract names (``participant``, ``step``, ... and the roles ``target``,
``filler``, ``vigilance``) to the names a lab's own logs use. Out: :class:`Columns`, which
turns a contract table (:mod:`memsim.design.trials`) into one that looks like the lab's log,
and back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import pandas as pd

from memsim.design.trials import COLUMNS, ROLES
from memsim.errors import UserError

__all__ = ["Columns", "as_columns"]


def _frozen(m: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(m or {}))


@dataclass(frozen=True)
class Columns:
    """Contract names -> the user's names, for the trial table's columns and role labels.

    Parameters
    ----------
    names : mapping of str to str, optional
        Contract column (:data:`memsim.design.trials.COLUMNS`) -> the user's column name.
        Columns not named keep their contract name.
    roles : mapping of str to str, optional
        Contract role (``target``, ``filler``, ``vigilance``) -> the user's label.

    Raises
    ------
    UserError
        An unknown contract column or role, or two contract names given the same user name.
    """

    names: Mapping[str, str] = field(default_factory=dict)
    roles: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for what, given, known in (("column", self.names, COLUMNS), ("role", self.roles, ROLES)):
            unknown = [k for k in given if k not in known]
            if unknown:
                raise UserError(
                    f"unknown trial-table {what} {unknown[0]!r} in the column map "
                    f"(known: {', '.join(known)})"
                )
            full = [given.get(k, k) for k in known]
            dup = sorted({n for n in full if full.count(n) > 1})
            if dup:
                raise UserError(f"column map gives two {what}s the name {dup[0]!r}")
            bad = [v for v in given.values() if not isinstance(v, str) or not v]
            if bad:
                raise UserError(f"column map: {what} names must be non-empty text, got {bad[0]!r}")
        object.__setattr__(self, "names", _frozen(self.names))
        object.__setattr__(self, "roles", _frozen(self.roles))

    def __repr__(self) -> str:
        return f"Columns(names={dict(self.names)!r}, roles={dict(self.roles)!r})"

    def __hash__(self) -> int:
        return hash((tuple(sorted(self.names.items())), tuple(sorted(self.roles.items()))))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Columns):
            return NotImplemented
        return dict(self.names) == dict(other.names) and dict(self.roles) == dict(other.roles)

    def user(self, contract: str) -> str:
        """The user's name of a contract column."""
        return self.names.get(contract, contract)

    @property
    def video(self) -> str:
        """The user's name of the ``video`` column (scorers return scores keyed by it)."""
        return self.user("video")

    def to_user(self, trials: pd.DataFrame) -> pd.DataFrame:
        """A contract table (same rows and order) renamed to the user's columns and role labels."""
        out = trials.rename(columns=dict(self.names))
        if self.roles:
            role = self.user("role")
            cat = trials["role"].astype(pd.CategoricalDtype(list(ROLES)))
            out[role] = cat.cat.rename_categories([self.roles.get(r, r) for r in ROLES])
        return out

    def to_contract(self, log: pd.DataFrame) -> pd.DataFrame:
        """A table in the user's names back in contract names (role labels included)."""
        out = log.rename(columns={v: k for k, v in self.names.items()})
        if self.roles:
            back = {v: k for k, v in self.roles.items()}
            out["role"] = out["role"].astype(str).map(lambda r: back.get(r, r))
        return out


def as_columns(columns: Columns | Mapping[str, str] | None) -> Columns:
    """:class:`Columns` from a Columns, a plain column mapping, or None (the contract's names)."""
    if columns is None:
        return Columns()
    if isinstance(columns, Columns):
        return columns
    if isinstance(columns, Mapping):
        return Columns(names=columns)
    raise UserError(f"columns must be a mapping or Columns, got {type(columns).__name__}")
