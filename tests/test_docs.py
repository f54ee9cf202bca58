"""The docs show what the code prints: every Python block of the tutorial and the README runs,
and each output shown under a block is what a fresh run prints (docs/blocks.py)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from memsim.resources import repository_root

ROOT = repository_root()


def _blocks():
    spec = importlib.util.spec_from_file_location("docs_blocks", ROOT / "docs" / "blocks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["docs_blocks"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize("page", ["docs/tutorial.md", "README.md"])
def test_page_outputs_match_a_fresh_run(page):
    blocks = _blocks()
    text = (ROOT / page).read_text(encoding="utf-8")
    assert blocks.blocks(text), f"{page} has no Python block"
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
