"""Run the blocks of a markdown page and check (or rewrite) the output shown under them.

Two kinds of block are run:

- ```python blocks run in order, in one namespace, in a fresh temporary folder (so the
  files they write go nowhere else). A block followed directly by an ```output block shows
  what it prints. Such blocks must print nothing that changes from run to run; an output
  block marked ``needs-data`` (```output needs-data) shows what the block prints with the
  released data, and is not compared where the data is absent (the block still runs).
- ```console blocks whose info string says ``regenerated`` hold ``$ command`` lines, each
  followed by what it prints on stdout. The commands run in order in one shell, in a fresh
  temporary folder that holds links to the repository's ``protocols``, ``experiments``,
  ``calibration``, ``tests``, ``benchmarks`` and ``docs``; each must finish within a minute.
  Times (``2.34 s``, ``1.2 min``), ``runs/min`` rates and the released-data folder are
  masked when comparing, so a run on another machine matches. ``needs-data`` in the info
  string: the block reads the released data and is skipped where it is absent.

A console block of a longer command is not run: its info string carries the date it was
run instead (```console ran 2026-12-02), and its ``$`` lines the command.

``python docs/blocks.py`` checks every page (or those named) against a fresh run (exit 1
and a diff when one differs); ``--update`` rewrites the outputs from the fresh run.
``tests/test_docs.py`` runs the check.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^```(\w*)([^\n]*)\n(.*?)^```[ \t]*$\n?", re.S | re.M)
ROOT = Path(__file__).resolve().parent.parent
#: The pages whose blocks are run (the default of ``python docs/blocks.py``).
PAGES = (
    "README.md",
    "docs/tutorial.md",
    "docs/protocols.md",
    "docs/scoring.md",
    "docs/sweeps.md",
    "docs/consistency.md",
)
#: Folders of the repository the console blocks see in their temporary folder.
LINKED = ("protocols", "experiments", "calibration", "tests", "benchmarks", "docs")
#: Seconds a regenerated command may take; a longer one carries its date instead.
LIMIT_S = 60
_DATE = re.compile(r"\bran \d{4}-\d{2}-\d{2}\b")


@dataclass
class Block:
    code: str
    output: str | None  # the shown output, None when the block has no output block
    span: tuple[int, int] | None  # where the output block's body sits in the page
    needs_data: bool = False  # the output block says "needs-data": what the released data give


def blocks(text: str) -> list[Block]:
    """The page's Python blocks with the output block that follows each (if any)."""
    found = list(FENCE.finditer(text))
    out = []
    for i, m in enumerate(found):
        if m.group(1) != "python":
            continue
        nxt = found[i + 1] if i + 1 < len(found) else None
        if nxt is not None and nxt.group(1) == "output" and not text[m.end() : nxt.start()].strip():
            needs = "needs-data" in nxt.group(2).split()
            out.append(Block(m.group(3), nxt.group(3), (nxt.start(3), nxt.end(3)), needs))
        else:
            out.append(Block(m.group(3), None, None))
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


@dataclass
class ConsoleBlock:
    commands: list[str]  # each "$ " command, continuation lines joined by newlines
    outputs: list[str]  # what is shown under each command
    span: tuple[int, int]  # where the block's body sits in the page
    regenerated: bool  # the info string says "regenerated": run and checked
    dated: bool  # the info string carries "ran YYYY-MM-DD": not run
    needs_data: bool  # the info string says "needs-data": skipped without the released data


def consoles(text: str) -> list[ConsoleBlock]:
    """The page's ```console blocks, each split into its commands and their outputs."""
    out = []
    for m in FENCE.finditer(text):
        if m.group(1) != "console":
            continue
        commands: list[str] = []
        outputs: list[str] = []
        cont = False
        for line in m.group(3).splitlines(keepends=True):
            if cont:
                commands[-1] += line
            elif line.startswith("$ "):
                commands.append(line[2:])
                outputs.append("")
            elif commands:
                outputs[-1] += line
            cont = bool(commands) and line.rstrip("\n").endswith("\\") and outputs[-1] == ""
        info = m.group(2)
        out.append(
            ConsoleBlock(
                [c.rstrip("\n") for c in commands],
                outputs,
                (m.start(3), m.end(3)),
                "regenerated" in info.split(),
                bool(_DATE.search(info)),
                "needs-data" in info.split(),
            )
        )
    return out


_MARK = "@@@memsim-docs-block@@@"


def _data_dir() -> str | None:
    try:
        from memsim.data import data_dir

        return str(data_dir(None))
    except Exception:  # noqa: BLE001 - no released data here: blocks that need it say so
        return None


def run_console(block: ConsoleBlock) -> list[str]:
    """Run a console block's commands in order, in one shell, in a fresh folder that links
    the repository's folders; the stdout of each."""
    script = ["set +e"]
    for cmd in block.commands:
        script += [cmd, f"__rc=$?; printf '{_MARK}\\n'; (exit $__rc)"]
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    data = _data_dir()
    if data:
        env["MEMSIM_DATA"] = data
    with tempfile.TemporaryDirectory(prefix="memsim-docs-") as tmp:
        for name in LINKED:
            if (ROOT / name).exists():
                os.symlink(ROOT / name, Path(tmp) / name)
        try:
            done = subprocess.run(
                ["bash", "-c", "\n".join(script)],
                cwd=tmp,
                env=env,
                capture_output=True,
                text=True,
                timeout=LIMIT_S * len(block.commands),
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(
                f"{block.commands[0]!r}: takes over a minute: show it as a dated block "
                "(```console ran YYYY-MM-DD) instead of a regenerated one"
            ) from None
    parts = done.stdout.split(f"{_MARK}\n")
    return parts[: len(block.commands)]


def mask(text: str) -> str:
    """``text`` with what changes from machine to machine masked: durations, rates, the
    released-data folder, trailing spaces."""
    data = _data_dir()
    if data:
        text = text.replace(data, "<data>")
    # a page regenerated on another machine shows that machine's data folder
    text = re.sub(r"(?<![\w<>])/[^\s:]*?/(?=(?:videomem|memento10k|trecvid2021)/)", "<data>/", text)
    text = re.sub(r"\d(?:[\d,]*\d)?(?:\.\d+)? ?(?:s|ms|min)\b", "<time>", text)
    text = re.sub(r"\d[\d,]*(?:\.\d+)? runs/min", "<rate> runs/min", text)
    return "\n".join(line.rstrip() for line in text.splitlines())


def _diff(shown: str, got: str, where: str) -> str:
    lines = difflib.unified_diff(
        shown.splitlines(), got.splitlines(), f"shown{where}", "fresh run", lineterm=""
    )
    return "\n".join(lines)


def check(path: Path, update: bool = False) -> list[str]:
    """Differences between the outputs shown in ``path`` and a fresh run ([] when none);
    with ``update``, write the fresh outputs into the page instead."""
    text = path.read_text(encoding="utf-8")
    edits: list[tuple[tuple[int, int], str]] = []
    problems = []
    found = blocks(text)
    if any(b.output is not None for b in found):
        no_data = _data_dir() is None
        for b, got in zip(found, run(text)):
            if b.output is None or (b.needs_data and no_data):
                continue
            if got != b.output:
                problems.append(_diff(b.output, got, ""))
                edits.append((b.span, got))
    for c in consoles(text):
        if not c.regenerated or (c.needs_data and _data_dir() is None):
            continue
        fresh = run_console(c)
        if any(mask(a) != mask(b) for a, b in zip(c.outputs, fresh)):
            for cmd, shown, got in zip(c.commands, c.outputs, fresh):
                if mask(shown) != mask(got):
                    problems.append(_diff(mask(shown), mask(got), f" ($ {cmd.splitlines()[0]})"))
            body = "".join(f"$ {cmd}\n{got}" for cmd, got in zip(c.commands, fresh))
            edits.append((c.span, body))
    if update and edits:
        new = text
        for (a, b), body in sorted(edits, reverse=True):
            new = new[:a] + body + new[b:]
        path.write_text(new, encoding="utf-8")
    return problems


def undated(path: Path) -> list[str]:
    """Console blocks of ``path`` that are neither regenerated nor dated (the first command
    of each)."""
    text = path.read_text(encoding="utf-8")
    return [
        (c.commands[0].splitlines()[0] if c.commands else "(no command)")
        for c in consoles(text)
        if not (c.regenerated or c.dated)
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "pages",
        nargs="*",
        type=Path,
        default=[ROOT / p for p in PAGES],
        help="markdown files (default: the README and the docs pages with blocks)",
    )
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
