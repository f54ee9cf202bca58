"""The main job: simulate a study, score it like a real log, analyse it, set it beside the paper.

In: a protocol, a parameter set, a seed, a scale and, where the study released scores, the
data folder. Out: a :class:`RunResult` holding the simulation (trial table and latent truth),
the scores, every analysis, and the comparison with the study's targets file; its
:meth:`~RunResult.save` writes ``trials.parquet``, ``videos.parquet``,
``participants.parquet``, ``scores.csv``, ``summary.json`` and the figures. A run folder
cannot lie: it is written as a hidden sibling (``.NAME.<pid>-<token>.new``) and renamed
into place once every file is in, replacing an earlier run there whole, so a killed or
failed run leaves either the earlier folder, untouched, or none; never a mixture
(:func:`memsim.io.staged_dir`). ``memsim run`` is :func:`run_study` plus a printed table.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from memsim.analysis.consistency import Analysis, analyse, video_mean_rt
from memsim.analysis.distributions import real_score_comparison
from memsim.analysis.scoring import ScoreResult, score
from memsim.data import RELEASED_SCORES, released_scores
from memsim.design.protocol import Protocol
from memsim.design.scores import write_scores
from memsim.errors import UserError
from memsim.fit.compare import Targets, compare, default_targets_path, figure_references
from memsim.fit.compare import load_targets as _load_targets
from memsim.io import check_staged_dir, dumps_json, is_temp_name, staged_dir, write_text_atomic
from memsim.limits import check_seed
from memsim.progress import ProgressCallback, report
from memsim.sim.params import Params
from memsim.sim.simulate import Simulation, simulate, size_factor, write_simulation
from memsim.study.drawing import FigureDrawer

__all__ = [
    "RunResult",
    "run_study",
    "RUN_FILES",
    "run_folder_problem",
    "run_folder",
    "check_run_folder",
]

# what a run folder holds (figures: the paper's fig3-fig6 and the real-vs-simulated scores)
RUN_FILES = frozenset(
    {"trials.parquet", "videos.parquet", "participants.parquet", "scores.csv", "summary.json"}
)
# in each of memsim.viz.style.FORMATS (not imported here: it would import matplotlib)
_FIGURE = re.compile(r"(fig\d+_[a-z_]+|scores_real_vs_sim)\.(png|svg|pdf)")


def run_folder_problem(out: Path) -> str | None:
    """Why the existing folder ``out`` must not be replaced by a run (None: it may).

    A run replaces a folder whole, so only one that holds nothing but what memsim's runs
    and simulations write (and their temporary files) is replaced; any other file in it
    (``--out .`` by mistake, say) makes it someone else's.
    """
    foreign = sorted(
        p.name
        for p in out.iterdir()
        if not (
            p.is_file()
            and (p.name in RUN_FILES or _FIGURE.fullmatch(p.name) or is_temp_name(p.name))
        )
    )
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        return f"holds files that no memsim run writes ({shown})"
    return None


def run_folder(out: str | os.PathLike[str]) -> contextlib.AbstractContextManager[Path]:
    """Write a run folder whole: yields a temporary sibling, renamed to ``out`` on success.

    Refuses (one-line UserError, before the block runs) an ``out`` that is a file, a link or
    a device, or a folder holding files no run writes (:func:`run_folder_problem`).
    """
    return staged_dir(out, run_folder_problem)


def check_run_folder(out: str | os.PathLike[str]) -> None:
    """Refuse now (one-line UserError) an ``out`` that :func:`run_folder` would refuse."""
    check_staged_dir(out, run_folder_problem)


@dataclass
class RunResult:
    """A simulated study, scored and analysed, beside its study's published numbers.

    Attributes
    ----------
    simulation : Simulation
        The trial table and the latent truth (``simulation.trials``, ``.videos``,
        ``.participants``); ``simulation.protocol`` is the protocol as run (scaled).
    scored : ScoreResult
        Filters, raw and corrected scores (``scored.scores``: the VideoMem scores format).
    analysis : Analysis
        Every statistic (:class:`memsim.analysis.consistency.Analysis`), with ``real``
        (against the released scores, when found), ``params``, ``calibrated`` and ``scale``.
    comparison : DataFrame or None
        One row per target of the study's targets file (:func:`memsim.fit.compare.compare`):
        ``target``, ``value``, ``simulated``, ``tolerance``, ``status`` (ok / off / n/a),
        ``kind`` (fit / report), ``source``. None when the study has no targets file.
    targets : Targets or None
    released : DataFrame or None
        The released scores set beside the simulated ones (None: none known, or not found).
    seed : int
    scale : float
    seconds : dict
        Wall time of ``simulate`` and ``analyse`` (score and every analysis).
    written : list of Path
        Files written by :func:`run_study`'s ``out`` or by :meth:`save`.
    """

    simulation: Simulation
    scored: ScoreResult
    analysis: Analysis
    comparison: pd.DataFrame | None
    targets: Targets | None
    released: pd.DataFrame | None
    seed: int
    scale: float
    seconds: dict[str, float] = field(default_factory=dict)
    written: list[Path] = field(default_factory=list)

    @property
    def protocol(self) -> Protocol:
        return self.simulation.protocol

    @property
    def params(self) -> Params:
        return self.simulation.params

    @property
    def trials(self) -> pd.DataFrame:
        """The trial table."""
        return self.simulation.trials

    @property
    def scores(self) -> pd.DataFrame:
        """Per-video scores in the VideoMem ground-truth format."""
        return self.scored.scores

    @property
    def table(self) -> pd.DataFrame | None:
        """The comparison with the paper and the released data (``comparison``)."""
        return self.comparison

    def __repr__(self) -> str:  # a line, not the tables (a notebook prints it)
        within, counted = self.fitted
        fit = f", fitted targets within tolerance {within}/{counted}" if counted else ""
        return (
            f"RunResult(protocol={self.protocol.name!r}, params={self.params.name!r}, "
            f"seed={self.seed}, scale={self.scale}, trials={len(self.trials):,}{fit}, "
            f"files written={len(self.written)})"
        )

    @property
    def fitted(self) -> tuple[int, int]:
        """``(within tolerance, counted)`` over the ``fit`` rows that could be computed."""
        if self.comparison is None:
            return 0, 0
        fit = self.comparison[(self.comparison.kind == "fit") & (self.comparison.status != "n/a")]
        return int((fit.status == "ok").sum()), int(len(fit))

    @property
    def released_expected(self) -> bool:
        """The study has released scores that this run did not find (no data folder)."""
        return self.released is None and self.protocol.name in RELEASED_SCORES

    def video_rt(self) -> pd.DataFrame:
        """Per-video mean RT of correct recognitions, one column per scored step."""
        return _video_rt(self.protocol, self.scored)

    def figures(self, out: str | os.PathLike[str], *, formats=None) -> list[Path]:
        """Draw the paper's Figs. 3-6 from this run (and the real-vs-simulated score
        distributions when the released scores were found) into ``out``; the PNG paths.
        ``formats``: also ``"svg"`` and/or ``"pdf"`` beside each PNG."""
        from memsim.viz.plots import run_figures

        columns = [s.scoring.column for s in self.protocol.steps]
        return run_figures(
            self.analysis,
            self.scores,
            self.video_rt(),
            self.released,
            columns,
            out,
            figure_references(self.targets),
            formats=formats,
        )

    def save(
        self, out: str | os.PathLike[str], *, figures: bool = True, formats=None
    ) -> list[Path]:
        """Write every output of the run into ``out``, whole; the paths written (``formats``:
        figure formats besides PNG, ``"svg"`` and/or ``"pdf"``).

        An earlier run in ``out`` is replaced whole (:func:`run_folder`).
        """
        out = Path(out)
        with run_folder(out) as tmp:
            paths = write_simulation(self.simulation, tmp)
            paths += self._write_scores_and_summary(tmp)
            if figures:
                paths += self.figures(tmp, formats=formats)
        self.written = [out / p.name for p in paths]
        return self.written

    def _write_scores_and_summary(self, out: Path) -> list[Path]:
        write_scores(self.scores, out / "scores.csv")
        write_text_atomic(out / "summary.json", dumps_json(self.analysis))
        return [out / "scores.csv", out / "summary.json"]


def run_study(
    protocol: Protocol,
    params: Params,
    *,
    seed: int = 0,
    scale: float = 1.0,
    data: str | os.PathLike[str] | None = None,
    targets: Targets | str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    figures: bool = True,
    figure_formats=None,
    figure_workers: int | None = None,
    progress: ProgressCallback | None = None,
    stimuli_seed: int | None = None,
) -> RunResult:
    """Simulate, score, analyse and compare one study (the main job).

    Parameters
    ----------
    protocol, params : Protocol, Params
    seed : int
    scale : float
        Shrink stimuli and participants (0 < scale <= 1); head-count targets shrink with it.
    data : path, optional
        The real-data folder (default ``$MEMSIM_DATA``, else ``../shared/data``); without it
        the real-vs-simulated rows are ``n/a``.
    targets : Targets or path, optional
        Default: the protocol's own targets file, when it has one.
    out : path, optional
        Write every output there while the analyses run (the trial table is written on a
        second thread), whole (:func:`run_folder`: an earlier run there is replaced whole, a
        folder holding other files is refused before the work starts); without it nothing
        is written (call :meth:`RunResult.save`).
    figures : bool
        With ``out``: draw the figures too.
    figure_formats : str or sequence of str, optional
        Figure formats besides PNG: ``"svg"``, ``"pdf"`` (:func:`memsim.viz.style.save`).
    figure_workers : int, optional
        With ``out`` and ``figures``: worker processes that draw the figures while the run goes
        on (:class:`memsim.study.drawing.FigureDrawer`), forked before the simulation, on Linux
        while numba's threads are not yet running in this process; default: one per CPU the
        last minute left idle, at most 2 (:func:`memsim.study.drawing.default_workers`). 0
        draws them in this process after the analyses. The files are the same bytes.
    progress : callable, optional
        Receives :class:`memsim.progress.Progress` events of the simulation (task
        ``"simulate"``), then of scoring, analysis, writing and figures (task ``"analyse"``).
    stimuli_seed : int, optional
        Draw the stimuli with this seed, everything else with ``seed``
        (:func:`memsim.sim.simulate.simulate`): the same stimuli played by a new campaign.
        Recorded in the summary (``stimuli_seed``).
    """
    seed = check_seed(seed)
    if stimuli_seed is not None:
        stimuli_seed = check_seed(stimuli_seed, "stimuli_seed")
    if figure_workers is not None and figure_workers < 0:
        raise UserError(f"figure_workers must be 0 or more, not {figure_workers}")
    stage = run_folder(out) if out is not None else contextlib.nullcontext(None)
    with stage as out_dir:  # refuses a bad `out` before the work; renamed into place at the end
        result = _run(
            protocol,
            params,
            seed,
            scale,
            data,
            targets,
            out_dir,
            figures,
            figure_formats,
            figure_workers,
            progress,
            stimuli_seed,
        )
    if out is not None:
        result.written = [Path(out) / p.name for p in result.written]
    return result


def _video_rt(protocol: Protocol, scored: ScoreResult) -> pd.DataFrame:
    columns = [s.scoring.column for s in protocol.steps]
    V = protocol.stimuli.count
    return pd.DataFrame({c: video_mean_rt(t, V) for c, t in zip(columns, scored.tests)})


def _run(
    protocol,
    params,
    seed,
    scale,
    data,
    targets,
    out_dir,
    figures,
    figure_formats,
    figure_workers,
    progress,
    stimuli_seed=None,
) -> RunResult:
    real = released_scores(protocol.name, data)
    if targets is None:
        tpath = default_targets_path(protocol.name)
        targets = _load_targets(tpath) if tpath is not None else None
    elif not isinstance(targets, Targets):
        targets = _load_targets(targets)  # fail before the work
    drawer = FigureDrawer(figure_workers if out_dir is not None and figures else 0)
    # (forked here, before the simulation: the workers import matplotlib while it runs)
    try:
        return _run_drawing(
            protocol,
            params,
            seed,
            scale,
            real,
            targets,
            out_dir,
            figures,
            figure_formats,
            drawer,
            progress,
            stimuli_seed,
        )
    finally:
        drawer.close()  # on an error: no worker draws into a folder being removed


def _run_drawing(
    protocol,
    params,
    seed,
    scale,
    real,
    targets,
    out_dir,
    figures,
    formats,
    drawer,
    progress,
    stimuli_seed=None,
) -> RunResult:
    t0 = time.perf_counter()
    sim = simulate(
        protocol, params, seed=seed, scale=scale, progress=progress, stimuli_seed=stimuli_seed
    )
    t_sim = time.perf_counter() - t0
    pool = writing = None
    if out_dir is not None:  # Parquet writing releases the GIL: it runs beside the analyses
        pool = ThreadPoolExecutor(max_workers=1)
        writing = pool.submit(write_simulation, sim, out_dir)
    stages = ["score", "analyse"]
    if out_dir is not None:
        stages += ["write", "figures"] if figures else ["write"]
    draw = out_dir is not None and figures
    references = figure_references(targets) if draw else None
    n_score = 0
    if draw:
        from memsim.viz.plots import analysis_figures, score_figures

    def tick(stage: str) -> None:
        report(progress, "analyse", stage, stages.index(stage), len(stages), unit="stages")

    try:
        tick("score")
        scored = score(sim.trials, sim.protocol, validate=False)
        if draw:  # Figs. 5-6 and the score distributions need nothing more
            columns = [s.scoring.column for s in sim.protocol.steps]
            calls = score_figures(
                scored.scores,
                _video_rt(sim.protocol, scored),
                real,
                columns,
                out_dir,
                references,
                formats=formats,
            )
            n_score = len(calls)
            drawer.draw(calls)
        tick("analyse")
        summary = analyse(scored, truth=sim.videos, seed=seed)
        if draw:
            drawer.draw(analysis_figures(summary, out_dir, references, formats=formats))
        summary["params"] = params.name
        summary["calibrated"] = params.calibrated
        summary["scale"] = scale
        size = size_factor(protocol, scale)  # the head counts' factor
        if sim.protocol.stimuli.count > round(protocol.stimuli.count * scale):
            summary["size_factor"] = size  # the stimuli held at their floor: say so
        if stimuli_seed is not None:  # the stimuli of another seed (simulate's stimuli_seed)
            summary["stimuli_seed"] = stimuli_seed
        if sim.admissions:  # the later steps' quotas at work (steps[].max_share)
            summary["admissions"] = [
                {
                    "step": a.step,
                    "max_share": a.max_share,
                    "campaign": a.campaign,
                    "came_back": a.came_back,
                    "played": a.played,
                }
                for a in sim.admissions
            ]
        if sim.top_up is not None:  # what the campaign's top-up rounds did (campaign.top_up)
            t = sim.top_up
            summary["top_up"] = {
                "floor": t.floor,
                "rounds": t.rounds,
                "participants": t.participants,
                "kept_later_step": sum(t.kept),
                "first_participant": t.first_participant,
                "short_before": t.short_before,
                "short_after": t.short_after,
                "min_before": t.min_before,
                "min_after": t.min_after,
            }
        if sim.pilot is not None:  # what the pilot before the campaign played (campaign.pilot)
            summary["pilot"] = {
                "participants": sim.pilot.participants,
                "stimuli": sim.pilot.stimuli,
                "seed": sim.pilot.seed,
                "later_steps": list(sim.pilot.later),
                "shift_s": sim.pilot.shift_s,
            }
        if real is not None:
            summary["real"] = real_score_comparison(scored.scores, real)
        t_analyse = time.perf_counter() - t0 - t_sim
        # head counts at the factor the participants were scaled by (a floor on the stimuli)
        comparison = compare(summary, targets, scale=size) if targets is not None else None
        result = RunResult(
            simulation=sim,
            scored=scored,
            analysis=summary,
            comparison=comparison,
            targets=targets,
            released=real,
            seed=seed,
            scale=scale,
            seconds={"simulate": t_sim, "analyse": t_analyse},
        )
        if out_dir is not None:
            tick("write")
            written = writing.result()
            written += result._write_scores_and_summary(out_dir)
            if figures:
                tick("figures")
                drawn = drawer.paths()
                # in run_figures' order: Figs. 3-4, queued after the analyses, come first
                written += [p for p in drawn[n_score:] + drawn[:n_score] if p is not None]
            result.written = written
        report(progress, "analyse", "done", len(stages), len(stages), unit="stages")
    finally:
        if pool is not None:
            pool.shutdown()
    result.seconds["total"] = time.perf_counter() - t0
    return result
