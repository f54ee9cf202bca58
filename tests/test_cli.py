"""The command line: --version, --help everywhere, the schema command, one-line usage errors."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from memsim import __version__, cli
from memsim.design.protocol import load_protocol
from memsim.resources import protocol_path, shipped_dir


def _commands(
    parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    """Every (sub)command path of the parser, nested subcommands included, found by walking
    argparse."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append(prefix + (name,))
                out += _commands(sub, prefix + (name,))
    return out


COMMANDS = _commands(cli.build_parser())


def _exe() -> str:
    return shutil.which("memsim") or str(Path(sys.executable).with_name("memsim"))


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"memsim {__version__}" and err == ""


def test_top_level_help_lists_every_command(capsys):
    assert cli.main(["--help"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: memsim") and err == ""
    for path in COMMANDS:
        if len(path) == 1:
            assert path[0] in out


def test_the_foundation_commands_exist():
    assert {("validate",), ("schema",)} <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_has_help(path, capsys):
    assert cli.main([*path, "--help"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"usage: memsim {' '.join(path)}"), out[:200]
    assert err == ""
    assert len(out.splitlines()) >= 2


def test_schema_is_json_schema(capsys):
    assert cli.main(["schema"]) == 0
    out, err = capsys.readouterr()
    schema = json.loads(out)
    assert err == ""
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["type"] == "object"
    assert {"name", "stimuli", "steps", "selection", "campaign"} <= set(schema["properties"])
    assert schema.get("additionalProperties") is False  # closed field set, as the loader enforces
    # every reference resolves
    refs = set()

    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                refs.add(node["$ref"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schema)
    assert refs
    for ref in refs:
        assert ref.startswith("#/$defs/") and ref.split("/")[-1] in schema["$defs"], ref


def _check(instance, schema, root, where="") -> list[str]:
    """A small JSON Schema checker (the keywords pydantic emits), to hold the files against the
    schema."""
    if "$ref" in schema:
        return _check(instance, root["$defs"][schema["$ref"].split("/")[-1]], root, where)
    problems = []
    for key in ("anyOf", "oneOf"):
        if key in schema:
            ok = [s for s in schema[key] if not _check(instance, s, root, where)]
            if (key == "oneOf" and len(ok) != 1) or not ok:
                problems.append(f"{where}: matches {len(ok)} of {key}")
    types = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}
    t = schema.get("type")
    if t == "integer":
        if not isinstance(instance, int) or isinstance(instance, bool):
            return problems + [f"{where}: not an integer"]
    elif t == "number":
        if not isinstance(instance, (int, float)) or isinstance(instance, bool):
            return problems + [f"{where}: not a number"]
    elif t in types and not isinstance(instance, types[t]):
        return problems + [f"{where}: not {t}"]
    if "const" in schema and instance != schema["const"]:
        problems.append(f"{where}: != {schema['const']}")
    if "enum" in schema and instance not in schema["enum"]:
        problems.append(f"{where}: not in {schema['enum']}")
    for key, op in (
        ("minimum", float.__ge__),
        ("maximum", float.__le__),
        ("exclusiveMinimum", float.__gt__),
        ("exclusiveMaximum", float.__lt__),
    ):
        if key in schema and not op(float(instance), float(schema[key])):
            problems.append(f"{where}: violates {key}")
    if isinstance(instance, dict):
        props = schema.get("properties", {})
        for req in schema.get("required", []):
            if req not in instance:
                problems.append(f"{where}.{req}: missing")
        for k, v in instance.items():
            if k in props:
                problems += _check(v, props[k], root, f"{where}.{k}")
            elif schema.get("additionalProperties") is False:
                problems.append(f"{where}.{k}: not allowed")
    if isinstance(instance, list):
        prefix = schema.get("prefixItems", [])
        for i, v in enumerate(instance):
            sub = prefix[i] if i < len(prefix) else schema.get("items")
            if sub:
                problems += _check(v, sub, root, f"{where}.{i}")
    return problems


@pytest.mark.parametrize(
    "path", sorted((shipped_dir("protocols")).glob("*.yaml")), ids=lambda p: p.stem
)
def test_shipped_protocols_satisfy_the_schema(path):
    schema = json.loads(cli_schema_text())
    raw = yaml.safe_load(path.read_text())
    assert _check(raw, schema, schema) == []
    assert _check(load_protocol(path).dump(), schema, schema) == []


def test_schema_rejects_what_the_loader_rejects():
    schema = json.loads(cli_schema_text())
    raw = yaml.safe_load((protocol_path("videomem")).read_text())
    raw["stimuli"]["colour"] = "red"
    raw["steps"][0]["items"][0]["count"] = 0
    raw["selection"]["kind"] = "nope"
    problems = _check(raw, schema, schema)
    assert any("colour" in p for p in problems)
    assert any("items.0.count" in p for p in problems)
    assert any(p.startswith(".selection") for p in problems)


def cli_schema_text() -> str:
    out = subprocess.run([_exe(), "schema"], capture_output=True, text=True, check=True).stdout
    return out


USAGE_MISTAKES = [
    [],
    ["frobnicate"],
    ["--frobnicate"],
    ["validate"],
    ["validate", "--strictly", "a.yaml"],
    ["schema", "extra"],
]


@pytest.mark.parametrize("argv", USAGE_MISTAKES, ids=lambda a: " ".join(a) or "(nothing)")
def test_usage_mistake_is_one_line_exit_2(argv, capsys):
    assert cli.main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("memsim") and "error:" in lines[0] and "Traceback" not in err


def test_console_script_version_and_usage_mistake():
    res = subprocess.run([_exe(), "--version"], capture_output=True, text=True, check=False)
    assert (res.returncode, res.stdout.strip(), res.stderr) == (0, f"memsim {__version__}", "")
    res = subprocess.run([_exe(), "validate"], capture_output=True, text=True, check=False)
    assert res.returncode == 2 and res.stdout == "" and res.stderr.count("\n") == 1


def test_schema_into_a_closed_pipe_is_quiet():
    res = subprocess.run(
        f"'{_exe()}' schema | head -c 1", shell=True, capture_output=True, text=True, check=False
    )
    assert res.stdout == "{" and "Traceback" not in res.stderr and res.stderr == ""
