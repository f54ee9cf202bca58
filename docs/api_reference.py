"""Write docs/api.md, the reference of memsim's public API, from the code's own docstrings.

``python docs/api_reference.py`` rewrites the page; ``--check`` exits 1 when the page differs
from what the code says (``tests/test_docs.py`` runs the check), so the reference cannot
drift from the signatures and docstrings it is made of.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import textwrap
from pathlib import Path

import memsim

PAGE = Path(__file__).resolve().parent / "api.md"

HEAD = """# The Python API

Generated from the docstrings by `python docs/api_reference.py`; do not edit by hand. Every
name below is importable from `memsim` itself (`import memsim; memsim.run(...)`), and loads
its stage on first use. [tutorial.md](tutorial.md) shows them at work.

`calibrate`, `recover`, `infer` and `sweep` with `workers` above 1 start worker processes
with `spawn`, and each worker imports the script being run again, as Python's
`multiprocessing` does. In a script, call them under `if __name__ == "__main__":`; a call from
the script's unguarded top level is refused before anything is written (a `UserError` naming
the script's line), since its workers could never start. A notebook needs no guard.
"""

SECTIONS = [
    ("Loading", ["load_protocol", "load_params", "params_for", "load_targets", "load_trials",
                 "shipped_protocols"]),
    ("The pipeline", ["simulate", "score", "analyse", "compare", "run"]),
    ("Fitting", ["calibrate", "recover", "compat", "infer", "posterior"]),
    ("Studies", ["sweep", "report"]),
    ("Results", ["Simulation", "ScoreResult", "Analysis", "RunResult", "Calibration", "Recovery",
                 "CompatResult", "Inference", "Posterior", "SweepResult", "SweepReport"]),
    ("Inputs and errors", ["Protocol", "Params", "Targets", "Progress", "UserError"]),
]  # fmt: skip


def _signature(obj) -> str:
    try:
        sig = str(inspect.signature(obj))
    except (TypeError, ValueError):
        return ""
    return sig


def _doc(obj) -> str:
    doc = inspect.getdoc(obj) or ""
    return textwrap.dedent(doc).strip()


def page() -> str:
    out = [HEAD]
    for title, names in SECTIONS:
        out.append(f"## {title}\n")
        for name in names:
            obj = getattr(memsim, name)
            if inspect.isclass(obj):
                out.append(f"### `memsim.{name}`\n")
                out.append(f"*class, defined in `{obj.__module__}`*\n")
            else:
                out.append(f"### `memsim.{name}{_signature(obj)}`\n")
            doc = _doc(obj)
            if doc:
                out.append("```text\n" + doc + "\n```\n")
    listed = {n for _, names in SECTIONS for n in names}
    missing = sorted(set(memsim.__all__) - listed - {"__version__"})
    if missing:
        raise SystemExit(f"public names missing from the reference: {missing}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when docs/api.md is stale")
    args = ap.parse_args(argv)
    text = page()
    if args.check:
        current = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
        if current != text:
            print(f"{PAGE} is stale: run python docs/api_reference.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
