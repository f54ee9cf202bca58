"""Command line: parses, calls and prints. No science lives here.

Every user mistake arrives as :class:`memsim.errors.UserError` and leaves as
one line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from memsim import __version__
from memsim.errors import UserError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (and still exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


# --------------------------------------------------------------------------- commands
def _cmd_validate(args: argparse.Namespace) -> int:
    from memsim.api import load_protocol
    from memsim.design.protocol import summary_lines

    failed = 0
    for i, path in enumerate(args.protocol):
        try:
            proto = load_protocol(path)
        except UserError as exc:  # one line per bad file; the others are still checked
            print(f"memsim validate: error: {exc}", file=sys.stderr)
            failed += 1
            continue
        if i:
            print()
        for line in summary_lines(proto):
            print(line)
        print(f"{path}: OK")
    if len(args.protocol) > 1:
        ok = len(args.protocol) - failed
        print(f"{ok} of {len(args.protocol)} protocols valid", file=sys.stderr if failed else None)
    return 2 if failed else 0


def _cmd_schema(args: argparse.Namespace) -> int:
    from memsim.design.protocol import protocol_json_schema

    print(protocol_json_schema())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="memsim",
        description="Simulate, score and analyse memorability annotation studies.",
    )
    parser.add_argument("--version", action="version", version=f"memsim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser(
        "validate",
        help="check protocol files and summarise them",
        description="Check protocol files (schema and feasibility) and print a one-screen "
        "summary of each. A problem is one line naming the file and the field; every file is "
        "checked, and the exit status is 2 when any failed.",
    )
    p.add_argument(
        "protocol",
        nargs="+",
        help="protocol YAML files (see docs/protocols.md), or shipped protocols by name",
    )
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser(
        "schema",
        help="print the JSON Schema of the protocol format",
        description="Print the JSON Schema (draft 2020-12) of the protocol format, "
        "for editors and other tools.",
    )
    p.set_defaults(func=_cmd_schema)

    from memsim.cli.commands import registrars

    for register in registrars():
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 a user's mistake)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, a usage mistake: argparse has printed its line
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"memsim {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("memsim: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `memsim schema | head`: the reader left, nothing is wrong
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
