"""What each population parameter does to the observable statistics (docs/model.md).

Each free parameter of the shipped VideoMem set is moved by one step, the
campaign re-simulated with the same seeds (common random numbers) and the change
of each statistic printed as a markdown table. Run from the repository root:

    python docs/sensitivity.py [--scale 0.3] [--seeds 1 2] [--update-docs]

``--update-docs`` rewrites the table between the markers in docs/model.md.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np

from memsim.design.protocol import load_protocol
from memsim.fit.calibrate import free_for, simulate_summary
from memsim.fit.compare import lookup
from memsim.paths import get_path, set_path
from memsim.sim.params import load_params, params_from_mapping

ROOT = Path(__file__).resolve().parent.parent
STATS = [  # (column title, path into the summary)
    ("kept ST", ("participants_kept", "short-term")),
    ("mean ST", ("mean_score", "short-term")),
    ("mean LT", ("mean_score", "long-term")),
    ("ST SD", ("scores", "columns", "short-term_memorability", "sd")),
    ("LT SD", ("scores", "columns", "long-term_memorability", "sd")),
    ("lag slope ×1e4", ("lag_curve", "short-term", "slope")),
    ("HC ST", ("human_consistency", "short-term", "mean")),
    ("HC LT", ("human_consistency", "long-term", "mean")),
    (
        "ST–LT ρ",
        (
            "score_correlation",
            "short-term_memorability ~ long-term_memorability",
            "all",
            "spearman",
        ),
    ),
    ("RT hit ST", ("response_times", "short-term", "mean_rt_recognitions_s")),
    ("RT–score r ST", ("response_times", "short-term", "video_rt_vs_score_pearson")),
]


def step_for(path: str, value: float) -> float:
    """One step of a parameter: a quarter unit on logit/log scales, a quarter of a spread,
    a few points of a share, a quarter of a time constant."""
    if path.endswith("corr"):
        return 0.2
    if path.endswith(("lapse_mean", "careless_share")):
        return 0.02
    if path.endswith("return_probability"):
        return 0.05
    if path.endswith("time_constant_s"):
        return 0.25 * value
    if path.endswith(("sd", "slope")):
        return 0.25 * max(abs(value), 0.1)
    return 0.25


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=0.3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--update-docs", action="store_true")
    args = ap.parse_args()
    protocol = load_protocol(ROOT / "protocols" / "videomem.yaml")
    params = load_params(ROOT / "calibration" / "videomem.yaml")

    def stats(p) -> np.ndarray:
        runs = [simulate_summary(protocol, p, seed, args.scale, full=True) for seed in args.seeds]
        return np.array([[lookup(r, path) for _, path in STATS] for r in runs]).mean(axis=0)

    base = stats(params)
    rows = []
    for f in free_for(params):
        d = copy.deepcopy(params.dump())
        v = get_path(d, f.path)
        h = step_for(f.path, v)
        set_path(d, f.path, v + h, create=True)
        delta = stats(params_from_mapping(d)) - base
        rows.append((f.path, v, h, delta))
    head = "| parameter (value, step) | " + " | ".join(t for t, _ in STATS) + " |"
    lines = [head, "| --- |" + " ---: |" * len(STATS)]
    fmt_base = [f"{base[0]:.0f}"] + [
        f"{x * 1e4:.2f}" if "1e4" in t else f"{x:.3f}" for (t, _), x in zip(STATS[1:], base[1:])
    ]
    lines.append("| *value at the shipped set* | " + " | ".join(fmt_base) + " |")
    for path, v, h, delta in rows:
        cells = []
        for (title, _), dx in zip(STATS, delta):
            x = dx * 1e4 if "1e4" in title else dx
            cells.append(f"{x:+.0f}" if title == "kept ST" else f"{x:+.3f}")
        lines.append(f"| `{path}` ({v:.3g}, +{h:.3g}) | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    cmd = (
        f"python docs/sensitivity.py --scale {args.scale} --seeds {' '.join(map(str, args.seeds))}"
        + (" --update-docs" if args.update_docs else "")
    )
    print(table)
    if args.update_docs:
        doc = ROOT / "docs" / "model.md"
        text = doc.read_text()
        start, end = "<!-- sensitivity:start -->", "<!-- sensitivity:end -->"
        block = f"{start}\nMeasured with `{cmd}`:\n\n{table}\n{end}"
        a, b = text.index(start), text.index(end) + len(end)
        doc.write_text(text[:a] + block + text[b:])


if __name__ == "__main__":
    main()
