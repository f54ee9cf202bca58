"""Run the Python blocks of a markdown page and check (or rewrite) the output shown under them.

A page's ```python blocks run in order, in one namespace, in a fresh temporary folder (so
the files they write go nowhere else). A block followed directly by an ```output block
shows what it prints: ``python docs/blocks.py docs/tutorial.md`` checks every such output
against a fresh run (exit 1 and a diff when one differs), ``--update`` rewrites them from
the fresh run. ``tests/test_docs.py`` runs the check for the tutorial and the README.

Blocks must print nothing that changes from run to run (times, absolute paths).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$\n?", re.S | re.M)


@dataclass
class Block:
    code: str
    output: str | None  # the shown output, None when the block has no output block
    span: tuple[int, int] | None  # where the output block's body sits in the page


def blocks(text: str) -> list[Block]:
    """The page's Python blocks with the output block that follows each (if any)."""
    found = list(FENCE.finditer(text))
    out = []
    for i, m in enumerate(found):
        if m.group(1) != "python":
            continue
        nxt = found[i + 1] if i + 1 < len(found) else None
        if nxt is not None and nxt.group(1) == "output" and not text[m.end() : nxt.start()].strip():
            out.append(Block(m.group(2), nxt.group(2), (nxt.start(2), nxt.end(2))))
        else:
            out.append(Block(m.group(2), None, None))
    return out


def run(text: str) -> list[str]:
    """Run every Python block of ``text`` in a fresh folder; what each printed."""
    printed = []
    namespace: dict = {"__name__": "__docs__"}
    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="memsim-docs-") as tmp:
        os.chdir(tmp)
        try:
            for b in blocks(text):
                buf = io.StringIO()
                with contextlib.redirect_stdout(buf):
                    exec(compile(b.code, "<docs block>", "exec"), namespace)  # noqa: S102
                printed.append(buf.getvalue())
        finally:
            os.chdir(here)
    return printed


def check(path: Path, update: bool = False) -> list[str]:
    """Differences between the outputs shown in ``path`` and a fresh run ([] when none);
    with ``update``, write the fresh outputs into the page instead."""
    text = path.read_text(encoding="utf-8")
    found = blocks(text)
    printed = run(text)
    problems = []
    new = text
    for b, got in reversed(list(zip(found, printed))):
        if b.output is None:
            continue
        if got != b.output:
            diff = difflib.unified_diff(
                b.output.splitlines(), got.splitlines(), "shown", "fresh run", lineterm=""
            )
            problems.append("\n".join(diff))
            new = new[: b.span[0]] + got + new[b.span[1] :]
    if update and new != text:
        path.write_text(new, encoding="utf-8")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pages", nargs="+", type=Path, help="markdown files")
    ap.add_argument("--update", action="store_true", help="rewrite the output blocks")
    args = ap.parse_args(argv)
    bad = 0
    for page in args.pages:
        problems = check(page, update=args.update)
        verb = "updated" if args.update else "differs"
        if not args.update:
            for p in problems:
                print(f"{page}: {verb}\n{p}\n", file=sys.stderr)
        bad += bool(problems) and not args.update
        print(f"{page}: {len(problems)} output block(s) {verb if problems else 'as shown'}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
