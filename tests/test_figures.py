"""Every figure the project draws, rendered from small synthetic inputs and checked as drawn.

For each figure (a run's Figs. 3-6 and score distributions, a sweep report's axis and frontier
figures, the predictor report, the shipped studies' figures): every title, label, tick label,
annotation and legend entry lies inside the canvas and no two overlap (matplotlib's tight
bounding boxes, :func:`memsim.viz.style.layout_problems`); no legend inside a panel covers a
plotted point; labels are human names, not raw column names or JSON; a figure carries
published reference values only where the protocol's own targets file supplies them.
"""

from __future__ import annotations

import itertools
import json
import re
import sys

import numpy as np
import pandas as pd
import pytest
from repo_scripts import load_script

from memsim.resources import repository_root
from memsim.viz import style

STEPS2 = ["short-term", "long-term"]
COLS2 = ["short-term_memorability", "long-term_memorability"]


@pytest.fixture
def drawn(monkeypatch):
    """Every figure saved through :func:`memsim.viz.style.save`: its path, layout problems
    and texts, checked before the figure is written."""
    seen = []
    real_save = style.save

    def save(fig, path, formats=None):
        out = real_save(fig, path, formats)
        texts = [t.get_text() for _, t, _ in style._texts(fig)]
        notes = [t.get_text() for ax in fig.axes for t in ax.texts if t.get_visible()]
        problems = style.layout_problems(fig)
        seen.append({"path": out, "problems": problems, "texts": texts, "notes": notes})
        return out

    monkeypatch.setattr(style, "save", save)
    monkeypatch.setattr(style, "DPI", 60)  # the layout is in points: a coarse raster is as good
    return seen


def _assert_clean(seen, *, at_least: int, published: bool | None = None):
    assert len(seen) >= at_least, [s["path"].name for s in seen]
    for s in seen:
        assert s["path"].exists() and s["path"].stat().st_size > 5000
        assert not s["problems"], f"{s['path'].name}: " + "; ".join(s["problems"])
        for t in s["texts"]:
            assert "_memorability" not in t and '{"' not in t and "step1" not in t, (
                f"{s['path'].name}: raw name in {t!r}"
            )
        if published is False:
            assert not any("published" in t or "paper" in t for t in s["texts"]), s["path"].name


# --------------------------------------------------------------------------- run figures
def _summary(steps: list[str], rng) -> dict:
    units = {"short-term": "lag (positions)", "long-term": "delay (hours)"}
    out = {
        "steps": steps,
        "lag_curve": {},
        "annotation_consistency": {},
        "spearman_brown": {},
        "human_consistency": {},
    }
    for k, step in enumerate(steps):
        lo, hi = (45.0, 100.0) if k == 0 else (24.0, 72.0)
        edges = np.linspace(lo, hi, 9)
        out["lag_curve"][step] = {
            "unit": units.get(step, "lag (positions)"),
            "slope": -0.0006,
            "intercept": 0.93,
            "bins": [
                {
                    "lo": a,
                    "hi": b,
                    "x": (a + b) / 2,
                    "hit_rate": 0.9 - 0.0006 * (a + b) / 2 + rng.normal(0, 0.005),
                    "annotations": 4000,
                }
                for a, b in itertools.pairwise(edges)
            ],
        }
        n = np.arange(2, 62 if k == 0 else 24, 2)
        r = 0.02 * n / (1 + 0.02 * n)
        out["annotation_consistency"][step] = {
            "curve": [
                {"N": int(a), "spearman": float(b + rng.normal(0, 0.01)), "sd": 0.03}
                for a, b in zip(n, r)
            ]
        }
        out["spearman_brown"][step] = {"predicted_curve": {"N": n.tolist(), "spearman": r.tolist()}}
        out["human_consistency"][step] = {"mean": 0.35 if k == 0 else 0.17}
    return out


def _scores(columns, rng, n=800) -> pd.DataFrame:
    df = pd.DataFrame({"video": np.arange(n)})
    for c in columns:
        df[c] = np.round(rng.beta(8, 2, n), 3)
    return df


def test_run_figures_two_steps_with_own_references(drawn, tmp_path):
    from memsim.fit.compare import figure_references, load_targets
    from memsim.resources import targets_path
    from memsim.viz.plots import run_figures

    rng = np.random.default_rng(1)
    refs = figure_references(load_targets(targets_path("videomem")))
    video_rt = pd.DataFrame({c: rng.normal(2, 0.3, 800) for c in COLS2})
    paths = run_figures(
        _summary(STEPS2, rng),
        _scores(COLS2, rng),
        video_rt,
        _scores(COLS2, rng, 2000),
        COLS2,
        tmp_path,
        refs,
    )
    assert [p.name for p in paths] == [
        "fig3_lag.png",
        "fig4_consistency.png",
        "fig5_st_vs_lt.png",
        "fig6_rt.png",
        "scores_real_vs_sim.png",
    ]
    _assert_clean(drawn, at_least=5)
    fig4 = next(s for s in drawn if s["path"].name == "fig4_consistency.png")
    assert "0.616 at 38" in fig4["texts"] and "0.364 at 13" in fig4["texts"]
    # every panel's y label is drawn (fig3's was clipped, LaMem's missing)
    fig3 = next(s for s in drawn if s["path"].name == "fig3_lag.png")
    assert fig3["texts"].count("correct recognition rate") == 2
    dist = next(s for s in drawn if s["path"].name == "scores_real_vs_sim.png")
    assert "density" in dist["texts"] and "fraction of videos at or below" in dist["texts"]


def test_run_figures_of_a_one_step_protocol_without_targets(drawn, tmp_path):
    """LaMem-like: one panel, so the titles must wrap to a narrow figure; no references."""
    from memsim.viz.plots import run_figures

    rng = np.random.default_rng(2)
    cols = ["memorability"]
    run_figures(
        _summary(["level"], rng),
        _scores(cols, rng),
        pd.DataFrame({"memorability": rng.normal(1, 0.2, 800)}),
        None,
        cols,
        tmp_path,
        None,
    )
    _assert_clean(drawn, at_least=3, published=False)
    fig3 = next(s for s in drawn if s["path"].name == "fig3_lag.png")
    assert "correct recognition rate" in fig3["texts"]


def test_memento_figures_carry_no_videomem_reference(drawn, tmp_path):
    """The marker follows the study's own targets file, not the step name "short-term"."""
    from memsim.fit.compare import figure_references, load_targets
    from memsim.resources import targets_path
    from memsim.viz.plots import run_figures

    rng = np.random.default_rng(3)
    refs = figure_references(load_targets(targets_path("memento10k")))
    run_figures(
        _summary(["short-term"], rng),
        _scores(["short-term_memorability"], rng),
        None,
        None,
        ["short-term_memorability"],
        tmp_path,
        refs,
    )
    _assert_clean(drawn, at_least=2)
    texts = " ".join(t for s in drawn for t in s["texts"])
    assert "0.616" not in texts and "0.364" not in texts


# --------------------------------------------------------------------------- sweep report
def _sweep_summary(rng, policies, budgets) -> pd.DataFrame:
    rows = []
    for cell, (p, b) in enumerate(itertools.product(policies, budgets)):
        row = {"cell": cell, "policy": p, "budget": b, "n": 3}
        for stat, base in (
            ("human_consistency.step1.mean", 0.3),
            ("truth.step1.spearman", 0.6),
            ("annotations_per_video.step1.mean", 30.0),
            ("participant_minutes", 1000.0),
        ):
            m = base * b / 6000 * (1 + rng.normal(0, 0.05))
            row[f"{stat}_mean"], row[f"{stat}_sd"] = m, abs(m) * 0.05
        rows.append(row)
    return pd.DataFrame(rows)


def test_sweep_report_figures(drawn, tmp_path):
    from memsim.study.report import frontier
    from memsim.viz.sweep import axis_figure, frontier_figure

    rng = np.random.default_rng(4)
    policies = [
        json.dumps({"kind": "uniform"}),
        json.dumps({"kind": "least_annotated", "pool": 5000}),
        json.dumps({"kind": "least_annotated", "pool": 200}),
        json.dumps({"kind": "adaptive", "pool": 1000}),
    ]
    summary = _sweep_summary(rng, policies, [3000, 6000, 10150])
    columns = {"policy": "string", "budget": "int64"}
    stats = ["human_consistency.step1.mean", "truth.step1.spearman"]
    axis_figure(tmp_path / "a.png", summary, columns, "budget", stats, ["policy"], "s: vs budget")
    axis_figure(tmp_path / "b.png", summary, columns, "policy", stats, ["budget"], "s: vs policy")
    axis_figure(
        tmp_path / "c.png",
        summary,
        columns,
        "annotations_per_video.step1.mean",
        stats[:1],
        ["policy"],
        "a study's own figure",
    )
    stat = stats[0]
    front = frontier(summary, stat)
    frontier_figure(tmp_path / "f.png", summary, front, stat, ["policy", "budget"], columns, "f")
    _assert_clean(drawn, at_least=4)
    notes = drawn[-1]["notes"]
    # frontier points are named by the values varied, never by a cell number
    assert len(notes) == len(front)
    assert all("budget" in t and ("pool" in t or "uniform" in t) for t in notes), notes


def test_sweep_figure_with_many_lines_and_many_categories(drawn, tmp_path):
    from memsim.viz.sweep import axis_figure

    rng = np.random.default_rng(5)
    policies = [json.dumps({"kind": "least_annotated", "pool": p}) for p in range(100, 1100, 100)]
    summary = _sweep_summary(rng, policies, [3000, 6000])
    columns = {"policy": "string", "budget": "int64"}
    axis_figure(
        tmp_path / "a.png",
        summary,
        columns,
        "policy",
        ["human_consistency.step1.mean"],
        ["budget"],
        "ten categories on x",
    )
    axis_figure(
        tmp_path / "b.png",
        summary,
        columns,
        "budget",
        ["human_consistency.step1.mean"],
        ["policy"],
        "ten lines, eight shown",
    )
    _assert_clean(drawn, at_least=2)
    assert any("first 8 of 10" in t for t in drawn[-1]["texts"])


# --------------------------------------------------------------------------- predictors
def test_predictor_report_figure(drawn, tmp_path):
    from memsim.predict.report import paper_references
    from memsim.viz.predict import cv_figure

    models = ["ridge (COCO-80)", "ridge (title TF-IDF)", "ridge (both)", "mlp", "text"]
    summ = pd.DataFrame(
        [
            {"model": m, "target": t, "mean": 0.4 - 0.2 * k, "std": 0.02}
            for m in models
            for k, t in enumerate(COLS2)
        ]
    )
    ceil = pd.DataFrame(
        [
            {"target": t, "method": meth, "mean": v, "sd": 0.01}
            for t in COLS2
            for meth, v in (
                ("beta (released mean, variance - noise)", 0.6),
                ("released scores as truth (upper bound)", 0.7),
            )
        ]
    )
    table, human = paper_references("videomem")
    cv_figure(tmp_path / "cv.png", summ, ceil, "videomem", COLS2, paper_table=table, human=human)
    cv_figure(tmp_path / "cv2.png", summ, ceil, "memento10k", COLS2)
    _assert_clean(drawn, at_least=2)
    assert not any("published" in t for t in drawn[-1]["texts"])


# --------------------------------------------------------------------------- shipped studies
def _studies_module():
    return load_script("docs/studies/figures.py", "studies_figures")


_AXES = {
    "paper": {},
    "annotations": {"annotations_target": [5, 10, 20, 38, 60, 90, 150, 320]},
    "design-lags": {"target_lags": ["[10, 40]", "[20, 60]", "[45, 100]", "[80, 140]"]},
    "design-targets": {"targets": [20, 30, 40, 50]},
    "design-length": {"length": [120, 180, 240, 300]},
    "design-vigilance": {"vigilance": [5, 10, 20, 30]},
    "design-delay": {"delay_h": ["[0.25, 1]", "[2, 8]", "[24, 72]", "[96, 168]"]},
    "filters": {"max_fa_step1": [0.1, 0.2, 0.3, 0.5, 1.0], "min_vigilance": [0.0, 0.5, 0.7, 0.9]},
    "selection": {
        "policy": ['{"kind":"uniform"}', '{"kind":"least_annotated","pool":1000}'],
        "budget": [3000, 6000, 10150],
    },
    "protocols": {"design": [f"../protocols/{p}.yaml" for p in ("videomem", "memento10k")]},
}
# the posterior studies' cells (zipped axes, values as the sweep stores them: lists and
# mappings as compact JSON); each holds its study file's baseline cell
_CELLS = {
    "design-lags-posterior": [
        {"target_lags": f"[{lo},{hi}]", "reference_lag": hi}
        for lo, hi in ((10, 40), (20, 60), (45, 100), (80, 140), (100, 160))
    ],
    "design-targets-posterior": [
        {"targets": n, "fillers": 180 - 2 * n - 40} for n in (20, 30, 40, 50)
    ],
    "design-length-posterior": [
        {"length": n, "targets": t, "vigilance": v, "fillers": f}
        for n, t, v, f in ((120, 27, 13, 40), (180, 40, 20, 60), (240, 53, 27, 80))
    ],
    "design-vigilance-posterior": [
        {"vigilance": v, "fillers": 180 - 80 - 2 * v} for v in (5, 10, 20, 30)
    ],
    "design-delay-posterior": [
        {"delay_h": w} for w in ("[0.25,1]", "[2,8]", "[24,72]", "[96,168]")
    ],
    "protocols-posterior": [
        {"design": f"../protocols/{p}.yaml"} for p in ("videomem", "memento10k", "lamem")
    ],
    "selection-posterior": [
        {"policy": '{"kind":"uniform"}'},
        {"policy": '{"kind":"least_annotated","pool":1000}'},
        {"policy": '{"kind":"adaptive","pool":1000}'},
    ],
}


def _study_results(study: str, rng) -> pd.DataFrame:
    if study in _CELLS:
        cells = _CELLS[study]
    else:
        axes = _AXES[study]
        cells = [dict(zip(axes, c)) for c in itertools.product(*axes.values())] or [{}]
    rows = []
    for cell, at in enumerate(cells):
        combo = list(at.values())
        for rep in range(3):
            row = dict(at, cell=cell, replicate=rep)
            scale = 1 + 0.1 * rng.normal()
            for s in (1, 2):
                na = (combo[0] if study == "annotations" else 30 / s) * scale
                r = 0.02 * na / (1 + 0.02 * na)
                row[f"annotations_per_video.step{s}.mean"] = na
                row[f"annotations_per_video.step{s}.min"] = na / 2
                row[f"annotations_per_video.step{s}.max"] = na * 2
                row[f"human_consistency.step{s}.mean_annotations_per_half"] = na / 2
                row[f"human_consistency.step{s}.mean"] = r
                row[f"annotation_consistency.step{s}.at_mean_annotations"] = r * 0.9
                row[f"truth.step{s}.spearman"] = min(0.95, 2 * r)
                row[f"participants_kept.step{s}"] = 9000 / s * scale
                row[f"mean_score_raw.step{s}"] = 0.87
                row[f"mean_score.step{s}"] = 0.86
                row[f"lag_curve.step{s}.slope"] = -0.0006 * scale
                lo, hi = (45, 100) if s == 1 else (24, 72)
                for i, x in enumerate(np.linspace(lo, hi, 8)):
                    row[f"lag_curve.step{s}.bins.{i}.x"] = x
                    row[f"lag_curve.step{s}.bins.{i}.hit_rate"] = 0.9 - 0.0006 * x * scale
                for k in range(2, 51, 2):
                    row[f"annotation_consistency.step{s}.curve@{k}"] = 0.02 * k / (1 + 0.02 * k)
                rt = f"response_times.step{s}"
                row[f"{rt}.mean_rt_recognitions_s"] = 1.4 * s
                row[f"{rt}.mean_rt_false_alarms_s"] = 3.2
                row[f"{rt}.video_rt_vs_score_pearson"] = -0.3 / s
            sc = "score_correlation.short-term_memorability ~ long-term_memorability"
            for k in ("all", "top500", "top100"):
                row[f"{sc}.{k}.spearman"] = 0.3 * scale
            row[f"{sc}.all.pearson"] = 0.33 * scale
            row["response_times.short-term ~ long-term.video_mean_rt_pearson"] = 0.29
            row["participant_minutes"] = 60_000 * scale
            row["participants"] = round(2000 * scale)  # every sweep's results have it (reserved)
            rows.append(row)
    return pd.DataFrame(rows)


def test_shipped_study_figures(drawn, tmp_path, capsys):
    figures = _studies_module()
    rng = np.random.default_rng(6)
    for study in [*_AXES, *_CELLS]:
        (tmp_path / study).mkdir()
        _study_results(study, rng).to_parquet(tmp_path / study / "results.parquet")
    out = tmp_path / "out"
    out.mkdir()
    with style.styled():
        for draw in figures.STUDIES.values():
            draw(tmp_path, out)
    capsys.readouterr()  # the tables they print
    assert sorted(s["path"].name for s in drawn) == sorted(f"{n}.png" for n in figures.STUDIES)
    _assert_clean(drawn, at_least=len(figures.STUDIES))


def test_posterior_study_table_pairs_each_cell_with_the_baseline_of_its_draw(
    drawn, tmp_path, capsys
):
    """A cell's difference is taken within each draw: draws that differ a lot from one another
    (0.1 apart) and a setting that moves each by a fixed amount give that amount exactly, on
    every draw, and the baseline row (VideoMem's policy) says so instead of a difference."""
    figures = _studies_module()
    df = _study_results("selection-posterior", np.random.default_rng(7))
    effect = {'{"kind":"uniform"}': -0.02, '{"kind":"adaptive","pool":1000}': 0.05}
    hc = "human_consistency.step1.mean"
    df[hc] = 0.3 + 0.1 * df["replicate"] + df["policy"].map(effect).fillna(0.0)
    (tmp_path / "selection-posterior").mkdir()
    df.to_parquet(tmp_path / "selection-posterior" / "results.parquet")
    with style.styled():
        figures.selection_posterior(tmp_path, tmp_path)
    rows = {
        line.split(" | ")[0].strip("| `"): line.split(" | ")
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| `")
    }
    assert rows['{"kind":"adaptive","pool":1000}'][2] == "+0.050 [+0.050, +0.050] (3 of 3)"
    assert rows['{"kind":"uniform"}'][2] == "-0.020 [-0.020, -0.020] (0 of 3)"
    assert rows['{"kind":"least_annotated","pool":1000}'][2] == "(VideoMem's)"
    # the level column is over the draws, not paired: their spread shows (0.35, 0.45, 0.55)
    assert rows['{"kind":"adaptive","pool":1000}'][1] == "0.450 [0.360, 0.540]"


def test_update_docs_replaces_only_the_block_it_names(tmp_path, monkeypatch, capsys):
    """A page with two generated blocks (a study and the same study under the posterior): the
    posterior's update rewrites its own block and leaves the other, and the text around both,
    as they were."""
    figures = _studies_module()
    df = _study_results("selection-posterior", np.random.default_rng(8))
    (tmp_path / "selection-posterior").mkdir()
    df.to_parquet(tmp_path / "selection-posterior" / "results.parquet")
    begin, end = figures.BEGIN, figures.END
    page = tmp_path / "selection.md"
    page.write_text(
        f"intro\n{begin.format('selection')}\nthe point fit's table\n{end}\nmiddle\n"
        f"{begin.format('selection-posterior')}\nold\n{end}\nclosing\n",
        encoding="utf-8",
    )
    argv = ["figures.py", "selection-posterior", "--runs", str(tmp_path), "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", [*argv, "--update-docs"])
    figures.main()
    capsys.readouterr()
    text = page.read_text(encoding="utf-8")
    assert text.startswith(f"intro\n{begin.format('selection')}\nthe point fit's table\n{end}\n")
    assert "\nmiddle\n" in text and text.endswith(f"{end}\nclosing\n")
    assert "old" not in text and "(VideoMem's)" in text
    assert text.count(end) == 2


def test_layout_check_finds_what_the_issue_reported(tmp_path):
    """The check itself: a clipped title, overlapping tick labels and a legend over the data
    are each reported."""
    plt = style.pyplot()
    fig, ax = plt.subplots(figsize=(3, 2))
    fig.suptitle("a title much too long for a figure this narrow, so it runs off both sides")
    ax.set_xticks(range(10), [f"label {i}" for i in range(10)])
    ax.plot(range(10), np.linspace(0, 1, 10), "o", label="points")
    ax.legend(loc="center")
    problems = style.layout_problems(fig)
    plt.close(fig)
    assert any("figure title extends outside" in p for p in problems)
    assert any("tick label" in p and "overlaps" in p for p in problems)
    assert any("covers" in p for p in problems)


def test_save_writes_vector_formats_on_request_and_the_same_bytes_twice(tmp_path):
    with style.figure(title="two saves") as (fig, axes):
        axes[0][0].plot([0, 1], [0, 1], label="a line")
        style.legend_below(fig)
        first = style.save(fig, tmp_path / "a", ("svg", "pdf"))
        style.save(fig, tmp_path / "b", "svg,pdf")
    assert first == tmp_path / "a.png"
    for ext in ("png", "svg", "pdf"):
        assert (tmp_path / f"a.{ext}").read_bytes() == (tmp_path / f"b.{ext}").read_bytes(), ext
    assert "two saves" in (tmp_path / "a.svg").read_text()  # text stays text
    with pytest.raises(Exception, match="unknown figure format 'jpeg'"):
        style.parse_formats("svg,jpeg")


def test_the_gallery_shows_every_kind_of_figure():
    """docs/figures.md (python docs/figures.py) shows each figure the project draws."""
    page = (repository_root() / "docs" / "figures.md").read_text(encoding="utf-8")
    drawn = [
        "fig3_lag.png",
        "fig4_consistency.png",
        "fig5_st_vs_lt.png",
        "fig6_rt.png",
        "scores_real_vs_sim.png",
        "scores_count_matched.png",
        "sweep-axis-",
        "sweep-frontier-",
        "sweep-figure-",
        "predict-cv.png",
        *(f"studies/{s}.png" for s in _studies_module().STUDIES),
    ]
    missing = [name for name in drawn if name not in page]
    assert not missing, missing
    for ref in re.findall(r"\]\((figures/[^)]+|studies/[^)]+\.png)\)", page):
        assert (repository_root() / "docs" / ref).exists(), ref
