"""Where the CLI finds the subcommands that live beside their stage.

Each module listed here has ``register(sub)`` that adds its parser(s); those
modules import only argparse at top level and their stage inside the handler,
so ``memsim --help`` stays fast. A module not yet written is skipped.
"""

from __future__ import annotations

import importlib

MODULES = [
    "memsim.cli.sim",  # simulate, run, bench
    "memsim.cli.score",  # score, analyse
    "memsim.cli.calibrate",  # calibrate, compat
    "memsim.cli.infer",  # infer
    "memsim.cli.sweep",  # sweep, report
    "memsim.cli.predict",  # predict cv / train / apply
]


def registrars() -> list:
    out = []
    for name in MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        out.append(mod.register)
    return out
