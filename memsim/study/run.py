"""``memsim run``: simulate a study, score it like a real log, analyse it, compare it.

In: a protocol, a parameter set, a seed, an output folder. Out (all in the
folder, each file written whole or not at all): ``trials.parquet``,
``videos.parquet``, ``participants.parquet``, ``scores.csv``,
``summary.json``, the figures; and a table on stdout of every paper statistic
beside the simulated one.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from memsim.errors import UserError
from memsim.io import write_text_atomic

__all__ = ["run_study", "simulate_with_progress", "load_real_scores", "REAL_SCORES"]


def _videomem_released(root: Path) -> pd.DataFrame:
    from memsim.analysis.scoring import read_scores

    return read_scores(root / "videomem" / "ground-truth_dev-set.csv")


def _memento_released(root: Path) -> pd.DataFrame:
    """Memento10k's released training scores in the VideoMem format: the *normalised* scores
    (referred to lag 80, as the protocol's memento_decay correction does), with decay_alpha."""
    from memsim.data import load_memento_scores

    m = load_memento_scores(root)
    return pd.DataFrame(
        {
            "video": m["video_id"],
            "short-term_memorability": m["scores_normalized_short_term"],
            "nb_short-term_annotations": m["annotations_short_term"],
            "decay_alpha": m["decay_alpha"],
        }
    )


# Released scores a protocol's simulated scores are set beside: protocol name -> loader(data root).
REAL_SCORES = {"videomem": _videomem_released, "memento10k": _memento_released}


def _json_default(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, (np.bool_,)):
        return bool(x)
    raise TypeError(type(x).__name__)


def _clean(obj):
    """JSON has no NaN: write null instead."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dumps_summary(summary: dict) -> str:
    return json.dumps(_clean(summary), indent=1, default=_json_default, allow_nan=False)


def load_real_scores(protocol_name: str, data: Path | None) -> pd.DataFrame | None:
    """The released scores for this protocol, or None when unknown or the data folder is absent."""
    if protocol_name not in REAL_SCORES:
        return None
    from memsim.data import data_dir

    try:
        root = data_dir(data)
    except UserError:
        if data is not None:
            raise
        return None
    return REAL_SCORES[protocol_name](root)


def simulate_with_progress(protocol, params, *, seed: int, scale: float, quiet: bool):
    """:func:`memsim.sim.simulate.simulate` with a progress bar over its stages."""
    from memsim.cli.progress import stage_progress
    from memsim.sim.simulate import simulate

    stages = ["campaign"] + [f"step {i + 1}" for i in range(len(protocol.steps))] + ["tables"]
    with stage_progress(stages, enabled=not quiet) as tick:
        return simulate(protocol, params, seed=seed, scale=scale, progress=tick)


def run_study(protocol, params, args, out: Path) -> int:
    from rich.console import Console

    from memsim.analysis.consistency import analyse, video_mean_rt
    from memsim.analysis.distributions import real_score_comparison
    from memsim.analysis.scoring import score, write_scores
    from memsim.fit.compare import compare, default_targets_path, load_targets
    from memsim.sim.simulate import write_simulation

    console = Console(width=max(120, Console().width))
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError("output exists and is not a directory", path=out)
    real = load_real_scores(protocol.name, getattr(args, "data", None))
    tpath = default_targets_path(protocol.name)
    targets = load_targets(tpath) if tpath is not None else None  # fail before the work
    t0 = time.perf_counter()
    sim = simulate_with_progress(
        protocol, params, seed=args.seed, scale=args.scale, quiet=args.quiet
    )
    t_sim = time.perf_counter() - t0
    # Parquet writing releases the GIL: let it run beside the scoring and analysis
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1)
    writing = pool.submit(write_simulation, sim, out)
    result = score(sim.trials, sim.protocol, validate=False)
    summary = analyse(result, truth=sim.videos, seed=args.seed)
    t_analyse = time.perf_counter() - t0 - t_sim
    summary["params"] = params.name
    summary["calibrated"] = params.calibrated
    summary["scale"] = args.scale
    if real is not None:
        summary["real"] = real_score_comparison(result.scores, real)
    columns = [s.scoring.column for s in sim.protocol.steps]
    V = sim.protocol.stimuli.count
    video_rt = pd.DataFrame({c: video_mean_rt(t, V) for c, t in zip(columns, result.tests)})

    writing.result()
    pool.shutdown()
    write_scores(result.scores, out / "scores.csv")
    write_text_atomic(out / "summary.json", dumps_summary(summary))
    figures = []
    if not args.no_figures:
        from memsim.viz.plots import run_figures

        figures = run_figures(summary, result.scores, video_rt, real, columns, out)
    t_total = time.perf_counter() - t0

    # ---- the comparison table
    from rich.table import Table

    from memsim.fit.compare import format_value

    title = (
        f"{sim.protocol.name}: {sim.trials.participant.nunique():,} participants, "
        f"{len(sim.trials):,} trials, seed {args.seed}, params {params.name}"
        f"{'' if params.calibrated else ' (uncalibrated)'}"
        f"{'' if args.scale == 1 else f', scale {args.scale}'}"
    )
    if targets is not None:
        table = compare(summary, targets, scale=args.scale)
        t = Table(title=title, title_justify="left")
        for col, just in (
            ("statistic", "left"),
            ("paper / data", "right"),
            ("simulated", "right"),
            ("tolerance", "right"),
            ("", "center"),
            ("kind", "left"),
        ):
            t.add_column(col, justify=just)
        for row in table.itertuples():
            mark = (
                "[green]ok[/]"
                if row.within
                else ("[red]off[/]" if row.kind == "fit" else "[yellow]off[/]")
            )
            t.add_row(
                row.target,
                format_value(row.value),
                format_value(row.simulated),
                "±" + format_value(row.tolerance),
                mark,
                row.kind,
            )
        console.print(t)
        n_fit = (table.kind == "fit").sum()
        n_ok = (table.within & (table.kind == "fit")).sum()
        console.print(
            f"fitted targets within tolerance: {n_ok}/{n_fit}; why a row is off, and why the "
            f"'report' rows cannot all hold with the released scores: docs/calibration.md"
        )
    else:
        console.print(title)
        for name in summary["steps"]:
            console.print(
                f"  {name}: kept {summary['participants_kept'][name]:,}, "
                f"mean score {summary['mean_score'][name]:.3f}, "
                f"human consistency {summary['human_consistency'][name]['mean']:.3f}"
            )
    truth = summary.get("truth") or {}
    if truth:
        parts = ", ".join(
            f"{c.removesuffix('_memorability')} {v['spearman']:.3f}" for c, v in truth.items()
        )
        console.print(
            f"observed scores vs the latent truth (Spearman): {parts} "
            f"- the most any predictor of these scores can reach"
        )
    if real is None and sim.protocol.name in REAL_SCORES:
        console.print(
            "released scores not found (pass --data or set MEMSIM_DATA): no real-vs-simulated rows"
        )
    console.print(
        f"simulated in {t_sim:.2f} s, scored and analysed in {t_analyse:.2f} s, "
        f"{t_total:.2f} s in all; wrote {out}/ "
        f"(trials.parquet, scores.csv, summary.json, {len(figures)} figures)"
    )
    return 0
