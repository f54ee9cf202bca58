"""The docs, parameter files and code describe the product as it is, not how it was built.

A reader of the README, ``docs/``, ``calibration/``, ``protocols/``, ``experiments/``,
``memsim/`` or ``benchmarks/`` knows nothing of the project's work sessions, issue numbers or
rounds of work. A parameter set is named by its file and, where an older one matters, by the
commit that shipped it ("fit 14's set, commit a464a5b"); a measurement by what was measured,
its command and its commit or date; the chain of fits behind ``calibration/videomem.yaml`` as
a lineage ("fit 13 started from fit 12"). Development history goes to commit messages.

The patterns are narrow on purpose: "a participant's session", "the session's end",
"5 runs in 6.9 s", ``--runs 8`` and a progress bar's "12/12 runs 0:00:11" are the product's
own words and must not trip them (``test_patterns_tell_history_from_product_language``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from memsim.resources import repository_root

# (what it is, pattern); matched case-insensitively, line by line.
HISTORY = [
    # "session 3's set", "(session 5)", "the session-2 protocol", "sessions 4 and 5"
    ("a numbered work session", r"\bsessions?[- ]\d+"),
    # "earlier sessions", "this session": a participant's sessions are never qualified so
    ("a work session", r"\b(?:earlier|previous|past|this|these|those|later) sessions?\b"),
    # "the session's scratch scripts", "the session's GPU check"
    (
        "a work session's product",
        r"\bsession's (?:set|code|protocol|parameters|fit|scratch|gpu|check|lines|runs?)\b",
    ),
    # "the goals of issue 7", "issue #6"
    ("an issue number", r"\bissues? #?\d+"),
    # "in round 3": a numbered round of work (a benchmark's "round 0 warms the cache" is not)
    ("a numbered round of work", r"\b(?:in|from|since|after|before|until) rounds? \d+\b"),
    # "run 16's set", "runs 15-16;", "from run 12 (skew 0)", "(run 19 of its header)"; not
    # "--runs 8", "12/12 runs 0:00:11", "run 2026-11-26" or the verb ("runs 31 kinds of input")
    (
        "a numbered run of work",
        r"(?<![-\w])runs? \d+(?![:.]\d)(?!-\d\d-\d\d)"
        r"(?:\s*[-\u2013]\s*\d+"  # a range of runs
        r"|(?:\s*,\s*\d+|\s+and\s+\d+)*"  # or one run, or a list, then what follows it
        r"(?='s\b|\s*[(),;:.]|\s+(?:of|set|and|to|with|at|from|in|on)\b|\s*$))",
    ),
]
_PATTERNS = [(what, re.compile(p, re.IGNORECASE)) for what, p in HISTORY]

AREAS = ["README.md", "docs", "calibration", "protocols", "experiments", "memsim", "benchmarks"]
SUFFIXES = {".md", ".yaml", ".yml", ".py", ".sh", ".txt"}


def history_in(text: str) -> list[tuple[int, str, str]]:
    """(line number, what, line) for every line of ``text`` that narrates development history."""
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        for what, pattern in _PATTERNS:
            if pattern.search(line):
                found.append((n, what, line.strip()))
                break
    return found


def _files(root: Path, area: str) -> list[Path]:
    path = root / area
    if path.is_file():
        return [path]
    return sorted(
        p
        for p in path.rglob("*")
        if p.is_file() and p.suffix in SUFFIXES and "__pycache__" not in p.parts
    )


@pytest.mark.parametrize("area", AREAS)
def test_no_development_history(area):
    root = repository_root()
    if root is None:
        pytest.skip("an installed wheel has no docs to read")
    files = _files(root, area)
    assert files, f"nothing to read under {area}"
    hits = [
        f"{p.relative_to(root)}:{n}: {what}: {line}"
        for p in files
        for n, what, line in history_in(p.read_text(encoding="utf-8"))
    ]
    assert not hits, "development history (say it in a commit message instead):\n" + "\n".join(hits)


# Lines the docs once had (each must be caught) and the product's own words (none may be).
NARRATION = [
    "calibration/videomem.yaml as shipped in session 4 (run 19 of its header). Rerun",
    "of session 4, and the shipped protocol; rerun in session 5).",
    "the session-2 set showed the same direction, larger",
    "**What was left after session 3.** Over 50 seeds, 3 campaigns crossed 0.05",
    "Earlier sessions, from the hand-set alone at scale 0.3 without a polish",
    "as session 4 thought.",
    "Session 5 ran it on the device machine",
    "from the session's scratch scripts; the sets are not shipped.",
    "**Against the goals of issue 7:** short-term >= 0.50",
    "# The scale benchmark of issue 8: 1,000 full-scale VideoMem campaigns",
    "Of 100 seeds, 97 hold every acceptance row (run 16's set, without the familiarity",
    "5. *Half the lapses* (session 4, runs 15-16; ST KS 0.036 -> 0.032",
    "free, from run 12 (skew 0), full scale, seeds 1 2",
    "the session-3 full-scale runs 13, 14: 140 candidates in 229 s",
    "a 4-seed run 115 in 374 s;",
    "which was first tried in round 2",
    "runs 17-19 brought the ST-LT correlations to the paper's values",
]
PRODUCT = [
    "Rerun on 2026-11-26 with the same set and protocol: 5 runs in 6.9 s, tables unchanged",
    "end the participant's session after this many missed vigilance repeats",
    "is withdrawn when the session ends if step 1's filters drop its participant",
    "applies the withdrawal at the session's end; a session's slots; no session's verdict",
    "design-delay ━━━━━━━━━━ 12/12 runs 0:00:11 left 0:00:00",
    "$ python benchmarks/bench_sweep.py --runs 16         # load average 0.7 -> 1.2",
    "ran 1000 runs in 948.5 s (63.3 runs/min); 0 were already done",
    "the nine sweeps, 213 runs; study 1 took 9.4 s; run on 2026-11-26",
    "memsim run protocols/videomem.yaml --params calibration/videomem-from-scratch.yaml",
    "fit 13 started from fit 12; fits 15-16, commit 1d9e604; fit 16's set",
    "if rnd:  # round 0 warms the file cache and the bytecode",
    "updated as sessions end; the sessions of all participants assigned so far",
    "`tests/test_trials.py` runs 31 kinds of bad input through the CLI",
]


def test_patterns_tell_history_from_product_language():
    missed = [line for line in NARRATION if not history_in(line)]
    assert not missed, f"history not caught: {missed}"
    tripped = [line for line in PRODUCT if history_in(line)]
    assert not tripped, f"product language taken for history: {tripped}"
