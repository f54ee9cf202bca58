"""Command line: parses, calls and prints. No science lives here.

Every user mistake arrives as :class:`memsim.errors.UserError` and leaves as
one line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import os
import sys
from pathlib import Path

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


# argparse destinations that name something a command writes (every other path-like argument
# is something it reads), and what each command writes there: a file or a folder
OUTPUT_ARGS = ("out", "json", "participants")
OUTPUT_KINDS = {
    "simulate": {"out": "dir"},
    "run": {"out": "dir"},
    "score": {"out": "file", "participants": "file"},
    "analyse": {"out": "dir"},
    "scores": {"json": "file"},
    "calibrate": {"out": "file"},
    "fit-report": {"out": "file"},
    "recover": {"out": "dir"},
    "compat": {"out": "file"},
    "infer": {"out": "dir"},
    "posterior": {"out": "file"},
    "sweep": {"out": "dir"},
    "predict cv": {"out": "dir"},
    "predict train": {"out": "file"},
    "predict apply": {"out": "file"},
}


def command_name(args: argparse.Namespace) -> str:
    """``run``, ``predict cv``: the (sub)command ``args`` were parsed for."""
    sub = getattr(args, "predict_command", None)
    return f"{args.command} {sub}" if sub else args.command


def _check_paths(args: argparse.Namespace) -> None:
    """Refuse, before a command starts, paths it must not touch.

    An output that exists and is a symbolic link, a device, a FIFO or a socket; an input
    that is a device, a FIFO or a socket (reading ``/dev/zero`` or a FIFO never ends).
    """
    from memsim.io import check_input, check_output

    kinds = OUTPUT_KINDS.get(command_name(args), {})
    files_out: list[tuple[str, Path]] = []  # output files, and the input files they must not be
    files_in: list[tuple[str, Path]] = []
    for dest, value in vars(args).items():
        values = value if isinstance(value, list) else [value]
        for v in values:
            if not isinstance(v, (str, Path)) or not str(v) or "\0" in str(v):
                continue
            if dest in OUTPUT_ARGS:
                if str(v) == "-":  # not stdout: a file named "-" would be written
                    raise UserError(
                        f"--{dest}: '-' would be a file named '-'; memsim writes its outputs "
                        "to files (give a path)"
                    )
                check_output(v, kinds.get(dest))
                if kinds.get(dest) == "file":
                    files_out.append((dest, Path(v)))
                continue
            try:
                special = not (Path(v).is_file() or Path(v).is_dir()) and Path(v).exists()
                if Path(v).is_file():
                    files_in.append((dest, Path(v)))
            except (OSError, ValueError):
                continue
            if special:
                check_input(v, "file")
    _check_distinct(files_out, files_in)


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
        return a.resolve() == b.resolve()
    except (OSError, ValueError):
        return False


def _check_distinct(files_out: list[tuple[str, Path]], files_in: list[tuple[str, Path]]) -> None:
    """Refuse an output file that is one of the command's inputs, or another of its outputs:
    writing it would destroy what was read, or what was just written."""
    for i, (dest, out) in enumerate(files_out):
        for other, path in files_in:
            if _same_file(out, path):
                raise UserError(
                    f"--{dest.replace('_', '-')} is the file given as {other.replace('_', '-')}: "
                    "writing it would destroy that input; give another path",
                    path=out,
                )
        for other, path in files_out[i + 1 :]:
            if _same_file(out, path):
                raise UserError(
                    f"--{dest.replace('_', '-')} and --{other.replace('_', '-')} name the same "
                    "file: give each its own",
                    path=out,
                )


def _os_error_line(exc: OSError) -> str:
    """One line for an OS error: the path(s) and the system's reason."""
    from memsim.io import target_of

    reason = exc.strerror or " ".join(str(exc).split()) or type(exc).__name__
    first, second = exc.filename, exc.filename2
    if first is not None and second is not None:
        if target_of(first) == target_of(second):  # the rename of a temporary into place
            return f"{target_of(second)}: cannot write: {reason}"
        return f"{target_of(first)} -> {target_of(second)}: {reason}"
    if first is not None:
        shown = target_of(first)
        return f"{shown}: {'cannot write: ' if shown != str(first) else ''}{reason}"
    return reason


def _error_line(exc: BaseException) -> str | None:
    """The one line for an error that is the input's or the machine's, not a bug; else None."""
    if isinstance(exc, UserError):
        return str(exc)
    if isinstance(exc, OSError):
        return _os_error_line(exc)
    if isinstance(exc, MemoryError):
        detail = " ".join(str(exc).split())
        return "out of memory" + (f" ({detail})" if detail else "") + "; the input is too large"
    if isinstance(exc, RecursionError):
        return "the input is nested too deeply to process"
    if isinstance(exc, ValueError) and "integer string conversion" in str(exc):
        return "the input holds an integer with thousands of digits"
    return None


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 a user's mistake).

    The one boundary between the library and the user: a mistake in the input
    (:class:`~memsim.errors.UserError`), an OS error on a path (a full disk, a folder that
    cannot be written), running out of memory or input nested too deeply becomes one line on
    stderr and exit status 2, and every file and folder the command created is removed
    (:func:`memsim.io.track_outputs`). Anything else is a bug and keeps its traceback.
    """
    from memsim.io import track_outputs

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, a usage mistake: argparse has printed its line
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if argv is None:
        # A whole process, which ends with this command: at its exit the interpreter would
        # walk every object the imports made (pandas, numba, scipy) in its final full
        # collections, 0.4-0.8 s after `memsim run` (measured); frozen, they are skipped, and
        # the memory goes back to the system with the process all the same.
        atexit.register(gc.freeze)
    with track_outputs() as outputs:
        try:
            _check_paths(args)
            return int(args.func(args) or 0)
        except BrokenPipeError:  # `memsim schema | head`: the reader left, nothing is wrong
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 141
        except SystemExit:
            raise
        except KeyboardInterrupt:
            outputs.remove()
            print("memsim: interrupted", file=sys.stderr)
            return 130
        except BaseException as exc:
            outputs.remove()
            line = _error_line(exc)
            if line is None:
                raise
            print(f"memsim {args.command}: error: {' '.join(line.split())}", file=sys.stderr)
            return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
