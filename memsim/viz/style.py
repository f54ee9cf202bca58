"""The figure style of the whole project: sizes, fonts, palette, human labels, saving.

Every figure memsim draws (a run's Figs. 3-6, a sweep report's panels and frontiers, the
predictor report, the shipped studies, the fit report) is made with :func:`figure` and
written with :func:`save`, so they share one look:

- sizes in inches per panel (:data:`PANEL`), fonts in points (:data:`RC`), constrained
  layout (titles, labels and legends are fitted into the canvas, never clipped);
- the Okabe-Ito palette (:data:`PALETTE`), safe for the common colour-vision deficiencies,
  with fixed roles: simulated data blue, released data vermillion, published reference
  values black;
- labels from one table of human names (:func:`label` for statistics and columns,
  :func:`value_label` for a swept value such as ``{"kind": "least_annotated", ...}``);
- PNG at 200 dpi, plus SVG or PDF on request (``formats``).

matplotlib is imported here only when a figure is drawn (Agg backend), never at
``import memsim``; the style is applied inside :func:`figure` with ``rc_context``, so a
notebook's own matplotlib settings are left alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

__all__ = [
    "DPI",
    "FORMATS",
    "PALETTE",
    "PANEL",
    "RC",
    "ROLE",
    "figure",
    "declutter",
    "label",
    "layout_problems",
    "legend_below",
    "parse_formats",
    "pyplot",
    "save",
    "styled",
    "subplots",
    "suptitle",
    "title",
    "value_label",
    "wrap",
]

#: Dots per inch of the PNG files.
DPI = 200
#: The file formats :func:`save` can write; PNG always, the vector ones on request.
FORMATS = ("png", "svg", "pdf")
#: Width and height (inches) of one panel; a figure is ``ncols x nrows`` panels.
PANEL = (4.4, 3.3)

#: Okabe & Ito (2008), "Color Universal Design": distinguishable with every common
#: colour-vision deficiency, and in greyscale by lightness for the first four.
PALETTE = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#E69F00",  # orange
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
    "#000000",  # black
)

#: Fixed colours of the roles a figure shows, the same in every figure.
ROLE = {
    "simulated": PALETTE[0],
    "released": PALETTE[1],
    "fit": PALETTE[2],
    "secondary": PALETTE[3],
    "reference": "#000000",
    "band": PALETTE[0],
    "neutral": "#7F7F7F",
}

#: matplotlib settings applied while a figure is drawn and saved.
RC = {
    "font.size": 9,
    "axes.titlesize": 9.5,
    "axes.titleweight": "regular",
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 7.5,
    "legend.title_fontsize": 7.5,
    "legend.frameon": True,
    "legend.framealpha": 0.9,
    "legend.edgecolor": "0.8",
    "figure.titlesize": 11,
    "figure.dpi": 100,
    "savefig.dpi": DPI,
    "axes.prop_cycle": None,  # set below (a cycler needs matplotlib)
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.5,
    "lines.markersize": 4,
    "errorbar.capsize": 2.5,
    "svg.fonttype": "none",  # SVG text stays text: searchable, editable
    "svg.hashsalt": "memsim",  # fixed element ids: the same figure gives the same SVG bytes
    "pdf.fonttype": 42,  # TrueType in PDFs: journals ask for it
    "figure.constrained_layout.h_pad": 0.06,
    "figure.constrained_layout.w_pad": 0.06,
}


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only, no window)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _rc() -> dict:
    from cycler import cycler

    return {**RC, "axes.prop_cycle": cycler(color=list(PALETTE))}


@contextlib.contextmanager
def styled() -> Iterator[None]:
    """Apply the project style to figures made inside the block (and only to them)."""
    import matplotlib

    with matplotlib.rc_context(_rc()):
        yield


def subplots(
    nrows: int = 1,
    ncols: int = 1,
    *,
    panel: tuple[float, float] = PANEL,
    title: str | None = None,
    squeeze: bool = False,
    **kw,
):
    """A figure of ``nrows x ncols`` panels with constrained layout: call inside
    :func:`styled` (:func:`figure` does).

    A :class:`matplotlib.figure.Figure` of its own, outside pyplot's registry of open figures
    (no global state, nothing left open when a caller forgets to close it, never a window):
    it draws on an Agg canvas (files only) and is saved through the canvas of each format."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=squeeze, **kw)
    if title:
        suptitle(fig, title)
    return fig, axes


@contextlib.contextmanager
def figure(
    nrows: int = 1,
    ncols: int = 1,
    *,
    panel: tuple[float, float] = PANEL,
    title: str | None = None,
    **kw,
):
    """A styled figure of ``nrows x ncols`` panels (constrained layout), closed afterwards.

    Yields ``(fig, axes)`` with ``axes`` a 2-D array; draw and :func:`save` inside the
    block.
    """
    with styled():
        fig, axes = subplots(nrows, ncols, panel=panel, title=title, **kw)
        try:
            yield fig, axes
        finally:
            fig.clear()  # free the artists now rather than at the next garbage collection


def parse_formats(formats: str | Iterable[str] | None) -> tuple[str, ...]:
    """``"png,svg"`` or ``["pdf"]`` as a tuple of known formats, PNG always first."""
    if formats is None:
        return ("png",)
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    out = ["png"]
    for f in items:
        f = str(f).strip().lower().lstrip(".")
        if not f:
            continue
        if f not in FORMATS:
            from memsim.errors import UserError

            raise UserError(f"unknown figure format {f!r} (choose from {', '.join(FORMATS)})")
        if f not in out:
            out.append(f)
    return tuple(out)


def save(fig, path: str | os.PathLike[str], formats: str | Iterable[str] | None = None) -> Path:
    """Write ``fig`` to ``path`` (PNG, 200 dpi) and, on request, beside it as SVG / PDF.

    Each file is written to a temporary name and renamed into place. Returns the PNG's path.
    """
    from memsim.io import atomic_path

    path = Path(path).with_suffix(".png")
    with styled():
        for fmt in parse_formats(formats):
            with atomic_path(path.with_suffix(f".{fmt}")) as tmp:
                fig.savefig(tmp, format=fmt, dpi=DPI, metadata=_metadata(fmt))
    return path


def _metadata(fmt: str) -> dict:
    # no creation date: the same figure gives the same bytes (PDF/SVG carry one by default)
    if fmt == "pdf":
        return {"CreationDate": None, "Creator": "memsim"}
    if fmt == "svg":
        return {"Date": None, "Creator": "memsim"}
    return {"Software": "memsim (matplotlib)"}


def legend_below(fig, axes=None, *, ncols: int | None = None, **kw):
    """One legend for the whole figure, under the panels (it never covers data).

    Entries are gathered from ``axes`` (default: all of the figure's), each label once.
    """
    handles, labels = [], []
    for ax in axes if axes is not None else fig.axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab and not lab.startswith("_") and lab not in labels:
                handles.append(h)
                labels.append(lab)
    if not handles:
        return None
    if ncols is None:
        width = fig.get_size_inches()[0]
        longest = max(len(lab) for lab in labels)
        ncols = max(1, min(len(labels), int(width * 11 // max(longest, 8))))
    return fig.legend(handles, labels, loc="outside lower center", ncols=ncols, **kw)


def wrap(text: str, width_in: float, fontsize: float = 9.5) -> str:
    """``text`` broken into lines that fit ``width_in`` inches at ``fontsize`` points.

    A character of DejaVu Sans averages about 0.55 of the font size; 0.6 leaves a margin.
    """
    import textwrap

    chars = max(12, int(width_in * 72 / (0.6 * fontsize)))
    return "\n".join(textwrap.wrap(text, chars, break_on_hyphens=False)) or text


def title(ax, text: str, fontsize: float | None = None) -> None:
    """A panel title wrapped to the panel's width."""
    fig = ax.get_figure()
    size = fontsize or RC["axes.titlesize"]
    width = fig.get_size_inches()[0] * ax.get_position().width
    ax.set_title(wrap(text, width, size), fontsize=size)


def suptitle(fig, text: str) -> None:
    """The figure's title, wrapped to the figure's width."""
    fig.suptitle(wrap(text, fig.get_size_inches()[0] - 0.3, RC["figure.titlesize"]))


def declutter(fig, texts, *, step_pt: float = 7.0, tries: int = 6, hide: bool = False) -> int:
    """Move annotations (``texts``, in drawing order) up or down until none overlaps another.

    Each annotation that overlaps one placed before it (or any other text of the figure) is
    shifted by ``step_pt`` points, alternately below and above, at most ``tries`` times; with
    ``hide``, one that still overlaps is hidden. One draw measures them all. Returns the
    number hidden.
    """
    texts = [t for t in texts if t.get_text()]
    if not texts:
        return 0
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    mine = {id(t) for t in texts}
    placed = [t.get_window_extent(renderer) for _, t, _ in _texts(fig) if id(t) not in mine]
    canvas = fig.bbox
    hidden = 0
    for t in texts:
        x0, y0 = t.get_position()  # offset points (annotations with textcoords="offset points")
        for k in range(tries + 1):
            shift = step_pt * ((k + 1) // 2) * (1 if k % 2 else -1) if k else 0.0
            t.set_position((x0, y0 + shift))
            box = t.get_window_extent(renderer)
            inside = box.x0 >= canvas.x0 and box.x1 <= canvas.x1
            inside = inside and box.y0 >= canvas.y0 and box.y1 <= canvas.y1
            if inside and not any(box.overlaps(b) for b in placed):
                break
        else:
            if hide:
                t.set_visible(False)
                hidden += 1
                continue
        placed.append(t.get_window_extent(renderer))
    return hidden


def _texts(fig) -> list[tuple[str, object, object]]:
    """Every text the figure draws: ``(what, artist, owner)``; owner groups a legend's texts."""
    out, seen = [], set()

    def add(what, t, owner=None):
        if t is None or id(t) in seen:  # a figure's title is also one of its texts
            return
        seen.add(id(t))
        if t.get_visible() and t.get_text().strip():
            out.append((what, t, owner))

    add("figure title", getattr(fig, "_suptitle", None))
    add("figure x label", getattr(fig, "_supxlabel", None))
    add("figure y label", getattr(fig, "_supylabel", None))
    for t in fig.texts:
        add("figure text", t)
    legends = list(fig.legends)
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        name = ax.get_title() or f"panel {fig.axes.index(ax) + 1}"
        for t in (ax.title, getattr(ax, "_left_title", None), getattr(ax, "_right_title", None)):
            add(f"title of {name!r}", t)
        for axis, which in ((ax.xaxis, "x"), (ax.yaxis, "y")):
            if not axis.get_visible():
                continue
            add(f"{which} label of {name!r}", axis.label)
            add(f"{which} offset of {name!r}", axis.offsetText)
            try:  # the ticks actually drawn (those inside the view), as Axis.draw picks them
                ticks = axis._update_ticks()
            except AttributeError:  # pragma: no cover - a future matplotlib
                ticks = axis.get_major_ticks()
            for tick in ticks:
                for lab in (tick.label1, tick.label2):
                    if lab.get_visible():
                        add(f"{which} tick label {lab.get_text()!r} of {name!r}", lab)
        for t in ax.texts:
            add(f"text {t.get_text()!r} in {name!r}", t)
        if ax.get_legend() is not None:
            legends.append(ax.get_legend())
    for leg in legends:
        add("legend title", leg.get_title(), leg)
        for t in leg.get_texts():
            add(f"legend entry {t.get_text()!r}", t, leg)
    return out


def layout_problems(fig) -> list[str]:
    """What is wrong with the layout of ``fig``, as sentences ([] when nothing is).

    Checked on the figure as drawn (matplotlib's tight bounding boxes of each text):
    every title, label, tick label, annotation and legend entry lies inside the canvas;
    no two texts overlap; no legend overlaps a text outside it; no legend inside a panel
    covers a plotted point of that panel.
    """
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    canvas = fig.bbox
    tol = 1.0  # pixels: anti-aliasing, rounding
    problems = []
    items = [(what, t.get_window_extent(renderer), owner) for what, t, owner in _texts(fig)]
    for what, box, _ in items:
        if (
            box.x0 < canvas.x0 - tol
            or box.y0 < canvas.y0 - tol
            or box.x1 > canvas.x1 + tol
            or box.y1 > canvas.y1 + tol
        ):
            problems.append(f"{what} extends outside the figure")

    def overlap(a, b) -> bool:
        return min(a.x1, b.x1) - max(a.x0, b.x0) > tol and min(a.y1, b.y1) - max(a.y0, b.y0) > tol

    for i in range(len(items)):
        for j in range(i + 1, len(items)):
            if overlap(items[i][1], items[j][1]):
                problems.append(f"{items[i][0]} overlaps {items[j][0]}")
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    for leg in legends:
        frame = leg.get_window_extent(renderer)
        for what, box, owner in items:
            if owner is not leg and overlap(frame, box):
                problems.append(f"a legend overlaps {what}")
        ax = leg.axes if leg in [a.get_legend() for a in fig.axes] else None
        if ax is None:
            continue
        for line in ax.get_lines():
            xy = line.get_xydata()
            if len(xy) == 0:
                continue
            pts = line.get_transform().transform(np.asarray(xy, dtype=float))
            inside = (
                (pts[:, 0] > frame.x0)
                & (pts[:, 0] < frame.x1)
                & (pts[:, 1] > frame.y0)
                & (pts[:, 1] < frame.y1)
            )
            if inside.any():
                problems.append(
                    f"the legend of {ax.get_title()!r} covers {int(inside.sum())} point(s) of "
                    f"{line.get_label()!r}"
                )
    return problems


# --------------------------------------------------------------------------- labels
#: Human names of statistics, columns and their parts. A name not here is built from its
#: dotted parts (:func:`label`).
LABELS = {
    # whole names
    "participant_minutes": "crowd time (participant-minutes)",
    "participant_hours": "crowd time (participant-hours)",
    "participants": "participants recruited",
    "cell": "cell",
    "replicate": "replicate",
    "video": "video",
    "short-term_memorability": "short-term memorability",
    "long-term_memorability": "long-term memorability",
    "memorability": "memorability",
    "nb_short-term_annotations": "short-term annotations",
    "nb_long-term_annotations": "long-term annotations",
    "true_short_term": "true short-term memorability",
    "true_long_term": "true long-term memorability",
    # first parts of dotted statistics
    "human_consistency": "human consistency",
    "annotation_consistency": "annotation consistency",
    "annotations_per_video": "annotations per video",
    "participants_kept": "participants kept",
    "participants_total": "participants who started",
    "truth": "scores vs true memorability",
    "mean_score": "mean score",
    "mean_score_raw": "mean raw score",
    "lag_curve": "hit rate vs retention",
    "response_times": "response times",
    "score_correlation": "short-term vs long-term scores",
    "correction": "lag correction",
    "real": "simulated vs released scores",
    "count_matched": "count-matched scores",
    "quantiles": "score quantiles",
    # later parts
    "at_mean_annotations": "at the mean annotation count",
    "all_annotations_reading": "all-annotations reading",
    "all_videos": "all videos",
    "mean_annotations_per_half": "annotations per half",
    "participants_per_half": "participants per half",
    "mean_annotations": "mean annotations",
    "spearman": "Spearman",
    "pearson": "Pearson",
    "ks": "KS distance",
    "sd": "SD",
    "slope": "slope",
    "intercept": "intercept",
    "all": "all videos",
    "mean_rt_recognitions_s": "RT of recognitions (s)",
    "mean_rt_false_alarms_s": "RT of false alarms (s)",
    "video_rt_vs_score_pearson": "per-video RT vs score (r)",
    "video_mean_rt_pearson": "per-video mean RT, ST vs LT (r)",
    "mean_relative_change": "mean relative change",
    "median_relative_change": "median relative change",
    "reference_lag": "reference lag",
    "mean_lag": "mean lag",
}
_SUFFIX = {"mean": "mean", "min": "min", "max": "max", "videos": "videos", "n": "n"}
_STEP = re.compile(r"^step(\d+)$")
_TOP = re.compile(r"^top(\d+)$")
_CURVE = re.compile(r"^curve@(\d+)$")


def _part(part: str) -> str:
    if part in LABELS:
        return LABELS[part]
    if m := _STEP.match(part):
        return f"step {m.group(1)}"
    if m := _TOP.match(part):
        return f"top {m.group(1)} annotated"
    if m := _CURVE.match(part):
        return f"at {m.group(1)} annotations"
    if "~" in part:  # a pair of score columns
        a, b = (s.strip() for s in part.split("~", 1))
        return f"{_part(a)} vs {_part(b)}"
    words = part.replace("_memorability", "").replace("_", " ")
    return re.sub(r"\bstep(\d+)\b", r"step \1", words)


def label(name: str) -> str:
    """The human name of a statistic, a score column or a swept column.

    >>> label("human_consistency.step1.mean")
    'human consistency, step 1'
    >>> label("annotations_per_video.short-term.min")
    'annotations per video, short-term (min)'
    >>> label("short-term_memorability")
    'short-term memorability'
    >>> label("max_fa_step1")
    'max fa step 1'
    """
    name = str(name)
    if name in LABELS:
        return LABELS[name]
    # score-correlation names hold dots inside the pair ("a ~ b.all.spearman"): split on the
    # last dots only where a part is known
    parts = name.split(".")
    if len(parts) == 1:
        return _part(name)
    head, *rest = parts
    if head == "score_correlation":  # the pair of columns is the figure's, not the reader's
        rest = [p for p in rest if "~" not in p]
    suffix = ""
    if rest and rest[-1] in _SUFFIX and not (head == "human_consistency" and rest[-1] == "mean"):
        suffix = f" ({_SUFFIX[rest[-1]]})"
        rest = rest[:-1]
    elif rest and rest[-1] == "mean":  # human consistency: the mean over half-splits
        rest = rest[:-1]
    words = [_part(head), *(_part(p) for p in rest)]
    return ", ".join(w for w in words if w) + suffix


def value_label(value) -> str:
    """A swept value as a reader would say it.

    >>> value_label('{"kind":"least_annotated","pool":1000}')
    'least annotated, pool 1000'
    >>> value_label("[45, 100]")
    '45-100'
    >>> value_label("../protocols/memento10k.yaml")
    'memento10k'
    >>> value_label(0.30000000000000004)
    '0.3'
    """
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in "{[":
            try:
                value = json.loads(text)
            except ValueError:
                return value
        elif text.endswith((".yaml", ".yml")):
            return Path(text).stem
        else:
            return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        kind = value.get("kind")
        rest = [f"{_part(str(k))} {value_label(v)}" for k, v in value.items() if k != "kind"]
        head = [str(kind).replace("_", " ")] if kind is not None else []
        return ", ".join(head + rest) or "{}"
    if isinstance(value, (list, tuple)):
        if len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
            return f"{value_label(value[0])}-{value_label(value[1])}"
        return ", ".join(value_label(v) for v in value)
    return str(value)
