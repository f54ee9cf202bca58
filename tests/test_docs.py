"""The docs show what the code prints: every Python block of the tutorial and the README runs,
each output shown under a block is what a fresh run prints, and so is every console block
marked ``regenerated``; every other console block carries the date it was run
(docs/blocks.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from repo_scripts import load_script

from memsim.resources import repository_root

ROOT = repository_root()


def _blocks():
    return load_script("docs/blocks.py", "docs_blocks")


@pytest.mark.slow
@pytest.mark.parametrize("page", _blocks().PAGES)
def test_page_outputs_match_a_fresh_run(page):
    blocks = _blocks()
    text = (ROOT / page).read_text(encoding="utf-8")
    run = blocks.blocks(text) + [c for c in blocks.consoles(text) if c.regenerated]
    assert run, f"{page} has no block to run"
    problems = blocks.check(ROOT / page)
    assert not problems, (
        f"{page}: shown output differs from a fresh run (python docs/blocks.py {page} --update "
        "rewrites it):\n" + "\n".join(problems)
    )


def test_blocks_parser_pairs_code_with_its_output(tmp_path):
    blocks = _blocks()
    page = tmp_path / "p.md"
    page.write_text(
        "text\n```python\nprint(1 + 1)\n```\n\n```output\n3\n```\n"
        "```python\nx = 5\n```\n```python\nprint(x)\n```\n```output\n5\n```\n"
    )
    found = blocks.blocks(page.read_text())
    assert [b.output for b in found] == ["3\n", None, "5\n"]
    problems = blocks.check(page)
    assert len(problems) == 1 and "+2" in problems[0]
    blocks.check(page, update=True)
    assert blocks.check(page) == [] and "```output\n2\n```" in page.read_text()


def test_api_reference_is_current():
    """docs/api.md is generated from the docstrings (docs/api_reference.py)."""
    r = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "api_reference.py"), "--check"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr


def test_every_console_block_is_regenerated_or_dated():
    blocks = _blocks()
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    undated = {str(p.relative_to(ROOT)): blocks.undated(p) for p in pages}
    assert not any(undated.values()), {p: u for p, u in undated.items() if u}


def test_console_blocks_split_commands_outputs_and_mask_times(tmp_path):
    blocks = _blocks()
    page = tmp_path / "p.md"
    page.write_text(
        "```console regenerated\n$ echo one; echo 'in 2.5 s'\nuno\n$ false\n$ echo $?\n1\n```\n"
        "```console ran 2026-12-02\n$ sleep 600\nnothing\n```\n"
    )
    found = blocks.consoles(page.read_text())
    assert [c.commands for c in found] == [
        ["echo one; echo 'in 2.5 s'", "false", "echo $?"],
        ["sleep 600"],
    ]
    assert found[0].regenerated and found[1].dated and not found[1].regenerated
    problems = blocks.check(page)  # the dated block is not run: no ten-minute wait
    assert len(problems) == 1 and "+one" in problems[0] and "-uno" in problems[0]
    blocks.check(page, update=True)
    assert blocks.check(page) == []
    assert "$ echo one; echo 'in 2.5 s'\none\nin 2.5 s\n$ false\n$ echo $?\n1\n" in page.read_text()
    assert blocks.mask("took 2.34 s, 1,200 runs/min") == "took <time>, <rate> runs/min"
