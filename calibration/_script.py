"""What the calibration scripts share: the released VideoMem scores, protocol changes given as
dotted ``PATH=VALUE`` words, and seed ranges given as ``A-B``.

The scripts import it as ``_script`` (Python puts a script's own folder first on its path;
``tests/repo_scripts.load_script`` does the same for the tests that load them).
"""

from __future__ import annotations

import sys

import yaml

from memsim.data import released_scores
from memsim.errors import UserError


def released_videomem(data=None):
    """The released VideoMem dev-set scores (``--data``, else ``$MEMSIM_DATA`` or
    ``../shared/data``); None, with one line on stderr, where they are not found or the
    folder given is not there."""
    try:
        real = released_scores("videomem", data)
    except UserError as e:  # a folder that is not there, or a file that does not read
        print(e, file=sys.stderr)
        return None
    if real is None:
        print("no released VideoMem scores (--data or $MEMSIM_DATA)", file=sys.stderr)
    return real


def protocol_changes(words) -> dict:
    """``{dotted path: value}`` from ``PATH=VALUE`` words, each value read as YAML (``0.5``,
    ``null``, ``{share: 0.25, mean_excess: 0.35}``), for ``Protocol.updated``."""
    out = {}
    for word in words:
        path, _, value = word.partition("=")
        out[path] = yaml.safe_load(value)
    return out


def seed_range(text: str) -> range:
    """The seeds ``A`` to ``B`` of ``"A-B"`` (``"A"``: that seed alone)."""
    first, _, last = text.partition("-")
    return range(int(first), int(last or first) + 1)
