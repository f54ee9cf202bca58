"""The gallery: every figure memsim draws, redrawn from fresh small runs into docs/figures/.

    python docs/figures.py            # about a minute and a half on a 2-core machine

Writes ``docs/figures/*.png`` and ``docs/figures.md`` (the page is generated: edit this
script, not the page). Each figure is drawn by the function memsim itself uses and is
checked as drawn (:func:`memsim.viz.style.layout_problems`: every text inside the canvas,
no two overlapping, no legend over data); a problem stops the script. The shipped studies'
figures (docs/studies/*.png) come from full sweeps and are shown as they are; their own
script redraws them (``python docs/studies/figures.py STUDY``). Figures that need the
released data (score distributions, the predictor report) are left out, with a note,
where it is absent.

The gallery is drawn at 110 dpi to keep the repository small; memsim writes 200 dpi.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import memsim
from memsim.viz import style

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "figures"
PAGE = ROOT / "docs" / "figures.md"
GALLERY_DPI = 110

SWEEP = """\
name: selection-demo
description: selection policy x budget, a small demonstration
protocol: {protocol}
common_random_numbers: true
vary:
  - path: protocol.selection
    name: policy
    values:
      - {{kind: uniform}}
      - {{kind: least_annotated, pool: 5000}}
      - {{kind: least_annotated, pool: 1000}}
  - {{path: protocol.campaign.stop.count, name: budget, values: [3000, 6000, 10150]}}
replicates: 2
scale: 0.05
seed: 5
statistics:
  - human_consistency.step1.mean
  - human_consistency.step2.mean
  - annotations_per_video.step1.mean
  - truth.step1.spearman
figures:
  - x: annotations_per_video.step1.mean
    y: [human_consistency.step1.mean, truth.step1.spearman]
    by: policy
    title: "short term: consistency vs annotations per video"
"""

STUDIES = [
    "paper", "annotations", "design", "design-posterior", "filters", "selection",
    "selection-posterior", "protocols", "protocols-posterior",
]  # fmt: skip


class Gallery:
    """Collects each figure as it is saved, after checking its layout."""

    def __init__(self) -> None:
        self.sections: list[tuple[str, str, list[tuple[str, str]]]] = []
        self.notes: list[str] = []
        self._save = style.save
        self._current: list[tuple[str, str]] = []

    def __enter__(self):
        def save(fig, path, formats=None):
            problems = style.layout_problems(fig)
            if problems:
                raise SystemExit(f"{Path(path).name}: " + "; ".join(problems))
            return self._save(fig, path, formats)

        style.save = save
        style.DPI = GALLERY_DPI  # the gallery only: memsim itself writes 200 dpi
        return self

    def __exit__(self, *exc):
        style.save = self._save

    def section(self, title: str, how: str, figures: list[tuple[Path, str]], prefix: str):
        kept = []
        for path, caption in figures:
            target = OUT / f"{prefix}{path.name}"
            shutil.copyfile(path, target)
            kept.append((target.name, caption))
        self.sections.append((title, how, kept))


def _run_figures(g: Gallery, tmp: Path) -> None:
    res = memsim.run("videomem", scale=0.2, seed=0)
    paths = res.figures(tmp / "videomem")
    captions = {
        "fig3_lag.png": "Fig. 3: hit rate against the retention interval, per step, binned "
        "with 95 % intervals, and the line the lag correction uses.",
        "fig4_consistency.png": "Fig. 4: annotation consistency against annotations per video, "
        "Spearman-Brown from the human split, and the published value from VideoMem's own "
        "targets file.",
        "fig5_st_vs_lt.png": "Fig. 5: short-term against long-term scores, and per-video mean "
        "response times.",
        "fig6_rt.png": "Fig. 6: per-video mean response time of correct recognitions against "
        "the score.",
        "scores_real_vs_sim.png": "Simulated against released score distributions (density "
        "and cumulative, with the KS distance).",
    }
    if res.released is None:
        g.notes.append("scores_real_vs_sim.png: the released scores were not found")
    g.section(
        "A run: `memsim run videomem` (here at `--scale 0.2`)",
        "Drawn by `memsim.viz.plots.run_figures` into the run's folder "
        "(`RunResult.figures(folder, formats=...)`; `--figure-formats svg,pdf` adds vector "
        "copies).",
        [(p, captions[p.name]) for p in paths],
        "run-",
    )
    one = memsim.run("lamem", scale=0.05, seed=0)
    paths = one.figures(tmp / "lamem")
    g.section(
        "A one-step protocol with one published value: `memsim run lamem`",
        "LaMem has one step, and its targets file one published value (human consistency "
        "0.68, a row of `memsim run lamem`'s table): one panel per figure.",
        [(p, f"{p.stem.split('_', 1)[0].replace('fig', 'Fig. ')}, LaMem.") for p in paths],
        "lamem-",
    )
    mem = memsim.run("memento10k", scale=0.1, seed=0)
    paths = [p for p in mem.figures(tmp / "memento10k") if "fig4" in p.name]
    g.section(
        "Another study's references: `memsim run memento10k`",
        "Marks come only from the study's own targets file (`calibration/memento10k-"
        "targets.yaml`), never from VideoMem's.",
        [(p, "Fig. 4, Memento10k.") for p in paths],
        "memento10k-",
    )


def _fit_report_figures(g: Gallery, tmp: Path) -> None:
    from memsim.study.fit_report import fit_report

    proto = memsim.load_protocol("videomem")
    params = memsim.load_params(protocol=proto)
    targets = memsim.load_targets(protocol=proto)
    with warnings.catch_warnings():  # one seed: its "sd over seeds" is NaN, as it should be
        warnings.simplefilter("ignore", RuntimeWarning)
        fit_report(proto, params, targets, seeds=(0,), scale=0.2, out=tmp / "fit" / "report.md")
    matched = tmp / "fit" / "figures" / "videomem_scores_count_matched.png"
    if not matched.exists():
        g.notes.append("the count-matched figure of `memsim fit-report`: no released scores")
        return
    g.section(
        "A fit report: `memsim fit-report videomem`",
        "Besides the run's figures (per seed 0), the simulated scores re-made at the released "
        "annotation counts, against the released ones.",
        [(matched, "Count-matched simulated scores against the released scores.")],
        "fit-report-",
    )


def _sweep_figures(g: Gallery, tmp: Path) -> None:
    study = tmp / "selection-demo.yaml"
    study.write_text(SWEEP.format(protocol=ROOT / "protocols" / "videomem.yaml"))
    memsim.sweep(study, tmp / "sweep", workers=1)
    rep = memsim.report(tmp / "sweep")
    pngs = [p for p in rep.written if p.suffix == ".png"]
    keep = [p for p in pngs if p.name.startswith("axis-")]
    keep += [p for p in pngs if p.name == "frontier-human_consistency.step1.mean.png"]
    keep += [p for p in pngs if p.name.startswith("figure-")]
    captions = {
        "axis": "Every statistic against one swept axis, a line per value of the others "
        "(mean, ±1 SD band over replicates).",
        "frontier": "Crowd time against a consistency: every cell, and the frontier of cells "
        "no cheaper cell beats, each named by the values varied.",
        "figure": "A figure the study file declares (`figures:`), any column on x.",
    }
    g.section(
        "A sweep report: `memsim report DIR`",
        "From a small sweep (3 policies x 3 budgets, scale 0.05, 2 replicates), drawn by "
        "`memsim.viz.sweep`.",
        [(p, captions[p.name.split("-")[0]]) for p in keep],
        "sweep-",
    )


def _predictor_figure(g: Gallery, tmp: Path) -> None:
    try:
        from memsim.data import data_dir
        from memsim.predict import report
        from memsim.predict.corpus import load_corpus
        from memsim.predict.pipeline import cross_validate, summarise

        corpus = load_corpus("videomem", data_dir(None))
    except Exception as exc:  # noqa: BLE001 - no data or no torch: say so on the page
        g.notes.append(f"cv.png of `memsim predict cv`: {str(exc).splitlines()[0]}")
        return
    cv = cross_validate(corpus, folds=5, seed=0, archs=(), use_embedding=False)
    summ = summarise(cv)
    ceil = report.ceilings(corpus, seed=0)
    report.write_outputs(tmp / "cv", cv, summ, ceil, corpus)
    g.section(
        "The predictor report: `memsim predict cv --out DIR`",
        "Here the ridge baselines only (`--models ''`, no networks), 5-fold CV on the released "
        "VideoMem labels.",
        [
            (
                tmp / "cv" / "cv.png",
                "Cross-validated Spearman per model, the noise ceilings, the "
                "published human consistency and best published model.",
            )
        ],
        "predict-",
    )


def _page(g: Gallery, seconds: float) -> str:
    lines = [
        "# Figures",
        "",
        "<!-- generated by: python docs/figures.py (do not edit by hand) -->",
        "",
        "Every figure memsim draws, in the project's style (`memsim/viz/style.py`: panel sizes, "
        "fonts, the Okabe-Ito palette, which is safe for the common colour-vision "
        "deficiencies, human names for statistics and swept values, constrained layout; PNG "
        "at 200 dpi, SVG or PDF on request). The figures below were drawn by "
        "`python docs/figures.py` from fresh small runs, each checked as drawn: every title, "
        "label, tick label and legend entry inside the canvas, no two overlapping, no legend "
        "over the data (`tests/test_figures.py` checks the same on synthetic inputs). They "
        f"are shown at {GALLERY_DPI} dpi to keep the repository small.",
        "",
        f"Regenerate: `python docs/figures.py` ({seconds:.0f} s for this page on a shared "
        "2-core machine).",
        "",
    ]
    for title, how, figures in g.sections:
        lines += [f"## {title}", "", how, ""]
        for name, caption in figures:
            lines += [f"![{caption}](figures/{name})", "", f"*{caption}* (`{name}`)", ""]
    lines += [
        "## The shipped studies",
        "",
        "Drawn by `python docs/studies/figures.py STUDY` from the sweeps of `experiments/` "
        "(commands in each write-up, [docs/studies](studies/README.md)), in the same style.",
        "",
    ]
    for s in STUDIES:
        page = s.removesuffix("-posterior")  # a study under the posterior is on its study's page
        label = f"{page}, under the posterior" if page != s else s
        lines += [f"![{label}](studies/{s}.png)", "", f"*[{label}](studies/{page}.md)*", ""]
    if g.notes:
        lines += ["## Not drawn here", ""] + [f"- {n}" for n in g.notes] + [""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.parse_args(argv)
    t0 = time.perf_counter()
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="memsim-gallery-") as tmp, Gallery() as g:
        tmp = Path(tmp)
        _run_figures(g, tmp)
        _fit_report_figures(g, tmp)
        _sweep_figures(g, tmp)
        _predictor_figure(g, tmp)
    PAGE.write_text(_page(g, time.perf_counter() - t0), encoding="utf-8")
    n = sum(len(f) for _, _, f in g.sections)
    print(f"wrote {PAGE} and {n} figures in {OUT}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
