"""Oracles for a scorer under test: memsim's scoring as a reference, and laws any correct
scorer obeys.

A **scorer** is the user's code seen through one signature: ``scorer(log, protocol) ->
scores``, where ``log`` is a trial table in the user's column names (:class:`Columns`) and
``scores`` a DataFrame with one row per video: the video column (the user's name for
``video``), and per step of the protocol its score column (``step.scoring.column``); the
count column of each (``nb_..._annotations``) is compared too when present. A video the
scorer does not score in a step has no row or a NaN there. The protocol carries what the
scorer needs to know (filters, corrections); an adapter turns it into the scorer's own
settings.

Checks return :class:`Check` results; :func:`assert_scorer` raises
:class:`ScorerMismatch` (an ``AssertionError``) naming every failed check, for tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from types import SimpleNamespace

import numpy as np
import pandas as pd

from memsim.analysis.scoring import (
    ScoreResult,
    correct,
    correction_x,
    count_column,
    score,
    video_sums,
)
from memsim.design.protocol import Protocol, truth_column
from memsim.errors import UserError
from memsim.testing.columns import Columns, as_columns
from memsim.testing.logs import Study, lcm_denominator, relaxed_protocol, retime

__all__ = [
    "Scorer",
    "Case",
    "FORMS",
    "RATIO_TOLERANCE",
    "Reference",
    "reference",
    "reference_scorer",
    "Check",
    "ScorerMismatch",
    "Law",
    "LAWS",
    "check_reference",
    "check_law",
    "check_scorer",
    "assert_scorer",
]

Scorer = Callable[[pd.DataFrame, Protocol], pd.DataFrame]

#: the correction forms the reference computes for every step whose tests have lags
FORMS = ("none", "linear_shift", "linear_ratio", "log_linear", "memento_decay")
_SHOWN = 5  # differences listed per failed check
#: |fitted line at a video's mean lag| at or below which the linear ratio form is undefined
RATIO_TOLERANCE = 1e-9


# --------------------------------------------------------------------------- the reference
@dataclass(frozen=True)
class Reference:
    """memsim's scoring of a log, step by step.

    Attributes
    ----------
    protocol : Protocol
    result : ScoreResult
        :func:`memsim.analysis.scoring.score`'s whole result.
    scores : DataFrame
        VideoMem format: ``video``, per step its score column and count column.
    participants : DataFrame
        Per participant and step: the statistics the filters judge, ``kept`` and ``reason``
        (the first filter failed).
    corrections : dict
        Step name -> the fitted parameters of its correction.
    videos : DataFrame
        Per step and annotated video: ``annotations``, ``hits``, ``raw``, ``mean_lag``,
        ``score`` (the protocol's correction), and one column per :data:`FORMS` entry: the
        score under that correction, referred to the step's reference lag (the protocol's,
        else the longest target lag; NaN where the step's tests have no lag). Computed on
        first use. The linear ratio form divides by the fitted line at the video's mean lag;
        where that line is at or below 0 there is no ratio and memsim shifts the video
        instead; within :data:`RATIO_TOLERANCE` of 0, rounding decides between the two, and
        :func:`check_reference` accepts any answer.
    """

    protocol: Protocol
    result: ScoreResult

    @property
    def scores(self) -> pd.DataFrame:
        return self.result.scores

    @property
    def participants(self) -> pd.DataFrame:
        return self.result.participants

    @property
    def corrections(self) -> dict:
        return self.result.corrections

    @cached_property
    def videos(self) -> pd.DataFrame:
        return _with_forms(self.protocol, self.result)

    def step_scores(self, step: int) -> pd.Series:
        """Score per annotated video (index: video id) of 1-based ``step``."""
        col = self.protocol.steps[step - 1].scoring.column
        n = self.scores[count_column(col)].to_numpy()
        return pd.Series(
            self.scores[col].to_numpy(np.float64)[n > 0],
            index=self.scores["video"].to_numpy()[n > 0],
            name=col,
        )


def _form_specs(lag: float) -> dict:
    ns = SimpleNamespace
    return {
        "none": ns(kind="none"),
        "linear_shift": ns(kind="linear", reference_lag=lag, form="shift"),
        "linear_ratio": ns(kind="linear", reference_lag=lag, form="ratio"),
        "log_linear": ns(kind="log_linear", reference_lag=lag),
        "memento_decay": ns(kind="memento_decay", reference_lag=lag),
    }


def _reference_lag(step) -> float | None:
    ref = getattr(step.scoring.correction, "reference_lag", None)
    if ref is not None:
        return float(ref)
    his = [g.repeat_lag[1] for g in step.items if g.role == "target" and g.repeat_lag]
    return float(max(his)) if his else None


def _with_forms(protocol: Protocol, res: ScoreResult) -> pd.DataFrame:
    """memsim's per-video table with one column per correction form (:data:`FORMS`)."""
    n_videos = len(res.video_ids)
    parts = []
    for s, (step, tests) in enumerate(zip(protocol.steps, res.tests), start=1):
        rows = res.videos[res.videos["step"] == s].copy()
        has = np.bincount(tests.video, minlength=n_videos) > 0
        lag = _reference_lag(step)
        for form, spec in _form_specs(lag if lag is not None else np.nan).items():
            if form != "none" and (lag is None or np.isnan(tests.lag).any()):
                rows[form] = np.nan
                continue
            sums = video_sums(tests.video, tests.hit, correction_x(spec, tests.lag), n_videos)
            rows[form] = correct(sums, spec)[0][has]
        parts.append(rows)
    return pd.concat(parts, ignore_index=True) if parts else res.videos


def reference(study: Study | pd.DataFrame, protocol: Protocol | None = None) -> Reference:
    """memsim's scoring of a study's log (or of a contract trial table under ``protocol``)."""
    if isinstance(study, Study):
        trials, protocol = study.trials, protocol or study.protocol
    else:
        trials = study
        if protocol is None:
            raise UserError("reference: a trial table needs its protocol")
    return Reference(protocol=protocol, result=score(trials, protocol))


def reference_scorer(columns: Columns | dict | None = None) -> Scorer:
    """memsim's own scoring as a scorer of logs in the user's column names."""
    cm = as_columns(columns)

    def memsim_scorer(log: pd.DataFrame, protocol: Protocol) -> pd.DataFrame:
        return score(cm.to_contract(log), protocol).scores.rename(columns={"video": cm.video})

    return memsim_scorer


# --------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Check:
    """One oracle's verdict on a scorer and a study.

    ``applicable`` is False when the study gives the law nothing to test (e.g. no
    participant is filtered out); such a check is ``ok``. ``message`` says what failed.
    """

    name: str
    ok: bool
    applicable: bool = True
    message: str = ""


class ScorerMismatch(AssertionError):
    """A scorer failed the reference comparison or a law (the message names each)."""


@dataclass(frozen=True)
class _Out:
    """A scorer's output read per step: score (and count, when given) by video id."""

    scores: dict  # column -> Series (index video id, float64; NaN rows dropped)
    counts: dict  # column -> Series or None
    problem: str = ""


def _read(out, protocol: Protocol, video: str) -> _Out:
    if not isinstance(out, pd.DataFrame):
        return _Out({}, {}, f"the scorer returned {type(out).__name__}, not a DataFrame")
    if video not in out.columns:
        return _Out({}, {}, f"the scorer's output has no column {video!r}")
    scores, counts = {}, {}
    for step in protocol.steps:
        col = step.scoring.column
        if col not in out.columns:
            return _Out({}, {}, f"the scorer's output has no column {col!r}")
        vals = pd.to_numeric(out[col], errors="coerce").to_numpy(np.float64)
        vids = out[video].to_numpy()
        keep = ~np.isnan(vals)
        if pd.Series(vids[keep]).duplicated().any():
            return _Out({}, {}, f"the scorer's output lists a video twice in {col!r}")
        scores[col] = pd.Series(vals[keep], index=vids[keep].astype(np.int64)).sort_index()
        cc = count_column(col)
        counts[col] = (
            pd.Series(out[cc].to_numpy()[keep], index=vids[keep].astype(np.int64)).sort_index()
            if cc in out.columns
            else None
        )
    return _Out(scores, counts)


def _call(scorer: Scorer, study: Study, trials: pd.DataFrame, protocol: Protocol) -> _Out:
    return _read(scorer(study.columns.to_user(trials), protocol), protocol, study.columns.video)


def _fmt(x: float) -> str:
    return "NaN" if x is None or np.isnan(x) else f"{x:.6g}"


def _diff(a: pd.Series, b: pd.Series, atol: float) -> tuple[list, list, list]:
    """Videos only in a, only in b, and in both with values further apart than atol."""
    only_a = sorted(set(a.index) - set(b.index))
    only_b = sorted(set(b.index) - set(a.index))
    both = a.index.intersection(b.index)
    x, y = a.loc[both].to_numpy(np.float64), b.loc[both].to_numpy(np.float64)
    bad = ~((np.abs(x - y) <= atol) | (np.isnan(x) & np.isnan(y)))
    return only_a, only_b, [(v, xv, yv) for v, xv, yv in zip(both[bad], x[bad], y[bad])]


def _same(
    first: _Out, second: _Out, protocol: Protocol, atol: float, a: str, b: str, skip=None
) -> list:
    """Lines naming where two outputs of the scorer differ (a, b: what each was scored on;
    ``skip(step)``: video ids whose score is undefined, left out)."""
    lines = []
    for s, step in enumerate(protocol.steps, start=1):
        col = step.scoring.column
        out = skip(s) if skip is not None else []
        x = first.scores[col].drop(out, errors="ignore")
        y = second.scores[col].drop(out, errors="ignore")
        only_a, only_b, diff = _diff(x, y, atol)
        for v in only_a[:_SHOWN]:
            lines.append(f"step {s} video {v}: scored {_fmt(x[v])} {a}, not {b}")
        for v in only_b[:_SHOWN]:
            lines.append(f"step {s} video {v}: scored {_fmt(y[v])} {b}, not {a}")
        for v, x, y in diff[:_SHOWN]:
            lines.append(f"step {s} video {v}: {_fmt(x)} {a}, {_fmt(y)} {b}")
        ca, cb = first.counts.get(col), second.counts.get(col)
        if ca is not None and cb is not None:
            common = ca.index.intersection(cb.index)
            bad = common[ca.loc[common].to_numpy() != cb.loc[common].to_numpy()]
            for v in bad[:_SHOWN]:
                lines.append(
                    f"step {s} video {v}: {ca[v]} annotations {a}, {cb[v]} annotations {b}"
                )
    return lines


def _fail(name: str, head: str, lines: list) -> Check:
    return Check(name, False, True, head + "\n" + "\n".join("    " + ln for ln in lines))


# --------------------------------------------------------------------------- one case
class Case:
    """A scorer and a study under check: what every oracle needs, each computed once
    (the scorer's output on the log, memsim's reference)."""

    def __init__(self, scorer: Scorer, study: Study, *, seed: int = 0, atol: float = 1e-9):
        self.scorer, self.study, self.seed, self.atol = scorer, study, seed, atol
        self._base: _Out | None = None
        self._ref: Reference | None = None

    def run(self, trials: pd.DataFrame, protocol: Protocol | None = None) -> _Out:
        """The scorer's output on another log of the study (and protocol)."""
        return _call(self.scorer, self.study, trials, protocol or self.study.protocol)

    @property
    def base(self) -> _Out:
        """The scorer's output on the study's own log."""
        if self._base is None:
            self._base = self.run(self.study.trials)
        return self._base

    @property
    def reference(self) -> Reference:
        if self._ref is None:
            self._ref = reference(self.study)
        return self._ref

    def undefined(self, step: int) -> list:
        """Videos of the study's log whose score in ``step`` is undefined (see
        :func:`_ratio_undefined`); the laws leave them out."""
        want = self.reference.step_scores(step)
        return list(want.index[want.isna() | _ratio_undefined(self.reference, step, want.index)])


# --------------------------------------------------------------------------- reference check
def _filter_lines(ref: Reference) -> list[str]:
    p = ref.participants
    out = []
    for s in sorted(p["step"].unique()):
        rows = p[p["step"] == s]
        kept = ", ".join(str(int(x)) for x in rows.loc[rows["kept"], "participant"])
        dropped = ", ".join(
            f"{int(x)} ({r})"
            for x, r in zip(
                rows.loc[~rows["kept"], "participant"], rows.loc[~rows["kept"], "reason"]
            )
        )
        out.append(f"reference, step {s}: keeps {kept or 'nobody'}; drops {dropped or 'nobody'}")
    return out


def _ratio_undefined(ref: Reference, s: int, videos: pd.Index) -> np.ndarray:
    """Where the linear ratio form divides by the fitted line at a video's mean lag and that
    line is 0 (within :data:`RATIO_TOLERANCE`): 0/0 or x/0, whose value is rounding's choice
    (memsim gives NaN, -0 or a clipped 1 there; a correct scorer may give any of them)."""
    step = ref.protocol.steps[s - 1]
    c = step.scoring.correction
    if c.kind != "linear" or getattr(c, "form", "shift") != "ratio":
        return np.zeros(len(videos), bool)
    fit = ref.corrections[step.name]
    rows = ref.result.videos[ref.result.videos["step"] == s].set_index("video")
    line = fit["intercept"] + fit["slope"] * rows["mean_lag"].reindex(videos).to_numpy()
    return np.abs(line) <= RATIO_TOLERANCE


def check_reference(scorer: Scorer, study: Study, *, atol: float = 1e-9) -> Check:
    """The scorer's scores (and counts, when given) equal memsim's, video by video."""
    return _check_reference(Case(scorer, study, atol=atol))


def _check_reference(case: Case) -> Check:
    study, atol = case.study, case.atol
    ref = case.reference
    got = case.base
    if got.problem:
        return _fail("reference", got.problem, [])
    lines = []
    v = ref.result.videos
    for s, step in enumerate(study.protocol.steps, start=1):
        col = step.scoring.column
        want = ref.step_scores(s)
        undefined = want.index[want.isna() | _ratio_undefined(ref, s, want.index)]
        want = want.drop(undefined)
        mine = got.scores[col].drop(undefined, errors="ignore")
        only_ref, only_got, diff = _diff(want, mine, atol)
        rows = v[v["step"] == s].set_index("video")

        def why(vid, rows=rows):
            r = rows.loc[vid]
            return f"{int(r['annotations'])} kept annotations, raw {_fmt(r['raw'])}"

        for vid in only_ref[:_SHOWN]:
            lines.append(
                f"step {s} video {vid}: not scored, reference {_fmt(want[vid])} ({why(vid)})"
            )
        for vid in only_got[:_SHOWN]:
            lines.append(
                f"step {s} video {vid}: scored {_fmt(mine[vid])}, reference: no kept annotation"
            )
        for vid, x, y in diff[:_SHOWN]:
            lines.append(
                f"step {s} video {vid}: scored {_fmt(y)}, reference {_fmt(x)} ({why(vid)})"
            )
        counts = got.counts.get(col)
        if counts is not None:
            common = counts.index.intersection(rows.index)
            bad = [c for c in common if int(counts[c]) != int(rows.loc[c, "annotations"])]
            for vid in bad[:_SHOWN]:
                lines.append(
                    f"step {s} video {vid}: {counts[vid]} annotations, reference "
                    f"{int(rows.loc[vid, 'annotations'])}"
                )
    if not lines:
        return Check("reference", True)
    for name, params in ref.corrections.items():
        if params.get("kind") != "none":
            shown = ", ".join(
                f"{k} {_fmt(x) if isinstance(x, float) else x}" for k, x in params.items()
            )
            lines.append(f"reference correction, {name}: {shown}")
    return _fail("reference", "scores differ from memsim's:", lines + _filter_lines(ref))


# --------------------------------------------------------------------------- laws
@dataclass(frozen=True)
class Law:
    """A property every correct scorer has: ``check(case) -> Check`` (:class:`Case`)."""

    name: str
    statement: str
    check: Callable[[Case], Check]


def _law_row_order(case: Case) -> Check:
    study, atol = case.study, case.atol
    t = study.trials
    if len(t) < 2:
        return Check("row_order", True, False)
    perm = np.random.default_rng(case.seed).permutation(len(t))
    if (perm == np.arange(len(t))).all():
        perm = perm[::-1]
    a = case.base
    b = case.run(t.iloc[perm].reset_index(drop=True))
    lines = [a.problem or b.problem] if a.problem or b.problem else []
    lines += _same(
        a, b, study.protocol, atol, "in log order", "with the rows shuffled", case.undefined
    )
    if lines:
        return _fail("row_order", "shuffling the rows of the log changes the scores:", lines)
    return Check("row_order", True)


def _law_relabel(case: Case) -> Check:
    study, atol = case.study, case.atol
    rng = np.random.default_rng(case.seed)
    t = study.trials
    pids = np.unique(t["participant"].to_numpy())
    vids = np.unique(t["video"].to_numpy())
    # new ids in another order and far from the old ones (an id used as an index breaks)
    new_p = dict(zip(pids, (rng.permutation(len(pids)) + 1) * 1_000_003 + 17))
    new_v = dict(zip(vids, (rng.permutation(len(vids)) + 1) * 7_919 + 13))
    back_v = {int(b): int(a) for a, b in new_v.items()}
    u = t.copy()
    u["participant"] = t["participant"].map(new_p).astype(np.int64)
    u["video"] = t["video"].map(new_v).astype(np.int32)
    a = case.base
    b = case.run(u)
    if a.problem or b.problem:
        return _fail("relabel", "the scorer's output cannot be read:", [a.problem or b.problem])
    b = _Out(
        {c: s.rename(index=back_v).sort_index() for c, s in b.scores.items()},
        {
            c: (None if s is None else s.rename(index=back_v).sort_index())
            for c, s in b.counts.items()
        },
    )
    lines = _same(
        a,
        b,
        study.protocol,
        atol,
        "as labelled",
        "with participants and videos relabelled",
        case.undefined,
    )
    if lines:
        return _fail("relabel", "relabelling participants and videos changes the scores:", lines)
    return Check("relabel", True)


def _law_drop_filtered(case: Case) -> Check:
    study, atol = case.study, case.atol
    p = case.reference.participants
    out = p[~p["kept"]]
    if out.empty:
        return Check("drop_filtered", True, False)
    t = study.trials
    key = pd.MultiIndex.from_frame(t[["participant", "step"]].astype(np.int64))
    gone = pd.MultiIndex.from_frame(out[["participant", "step"]].astype(np.int64))
    rest = t[~key.isin(gone)].reset_index(drop=True)
    if rest.empty:
        return Check("drop_filtered", True, False)
    a = case.base
    b = case.run(rest)
    if a.problem or b.problem:
        return _fail(
            "drop_filtered", "the scorer's output cannot be read:", [a.problem or b.problem]
        )
    lines = _same(a, b, study.protocol, atol, "with them", "without them", case.undefined)
    if lines:
        who = ", ".join(
            f"participant {int(q)} step {int(s)} ({r})"
            for q, s, r in out[["participant", "step", "reason"]].itertuples(index=False)
        )
        return _fail(
            "drop_filtered",
            f"removing the sessions the protocol's filters drop ({who}) changes the scores:",
            lines,
        )
    return Check("drop_filtered", True)


def _copies(t: pd.DataFrame, n: int) -> list[pd.DataFrame]:
    """``n`` copies of the log, each with participant ids above all earlier ones."""
    base = int(t["participant"].max()) + 1
    pid = t["participant"].to_numpy()
    uniq, code = np.unique(pid, return_inverse=True)
    return [t.assign(participant=(base + k * len(uniq) + code).astype(np.int64)) for k in range(n)]


def _set_responses(t: pd.DataFrame, rows: np.ndarray, value: np.ndarray, protocol) -> None:
    """Set responses (and response times: a press at half the duration, no press NaN)."""
    resp = t["response"].to_numpy().copy()
    rt = t["rt_s"].to_numpy().copy()
    old = resp[rows]
    resp[rows] = value
    newly = rows[value & ~old]
    rt[newly] = np.float32(round(0.5 * protocol.stimuli.duration_s, 3))
    rt[rows[~value]] = np.nan
    t["response"] = resp
    t["rt_s"] = rt


def _law_zero_slope(case: Case) -> Check:
    study, atol = case.study, case.atol
    proto = study.protocol
    lagged = [
        s
        for s, step in enumerate(proto.steps, start=1)
        if hasattr(step.scoring.correction, "reference_lag")
    ]
    t = study.trials
    test = (t["repeat"] & (t["role"] == "target") & (t["lag"] >= 0)).to_numpy()
    in_lagged = t["step"].isin(lagged).to_numpy()
    if not (test & in_lagged).any():
        return Check("zero_slope", True, False)
    # every lag-corrected test answered both ways at the same lag: the fitted slope is 0
    copy = _copies(t[in_lagged], 1)[0].reset_index(drop=True)
    rows = np.flatnonzero(test[in_lagged])
    _set_responses(copy, rows, ~copy["response"].to_numpy()[rows], proto)
    relaxed = relaxed_protocol(proto)
    both = pd.concat([t, retime(copy, proto)], ignore_index=True)
    got = case.run(both, relaxed)
    if got.problem:
        return _fail("zero_slope", "the scorer's output cannot be read:", [got.problem])
    lines = []
    tests = both[(both["repeat"] & (both["role"] == "target")).to_numpy()]
    for s in lagged:
        col = proto.steps[s - 1].scoring.column
        # no filters: every test counts, and each is answered both ways: raw = 1/2
        raw = tests[tests["step"] == s].groupby("video")["response"].mean().astype(np.float64)
        raw.index = raw.index.astype(np.int64)
        _, _, diff = _diff(raw, got.scores[col], atol)
        missing = sorted(set(raw.index) - set(got.scores[col].index))
        for v in missing[:_SHOWN]:
            lines.append(f"step {s} video {v}: not scored (raw {_fmt(raw[v])})")
        for v, x, y in diff[:_SHOWN]:
            lines.append(f"step {s} video {v}: scored {_fmt(y)}, raw {_fmt(x)}")
    if lines:
        return _fail(
            "zero_slope",
            "with a fitted lag slope of exactly 0 (the log plus a copy of its participants "
            "answering every lag-corrected target test the other way, no filters) the scores "
            "should equal the raw hit rates:",
            lines,
        )
    return Check("zero_slope", True)


def _law_unit_interval(case: Case) -> Check:
    study = case.study
    got = case.base
    if got.problem:
        return _fail("unit_interval", "the scorer's output cannot be read:", [got.problem])
    lines = []
    for s, step in enumerate(study.protocol.steps, start=1):
        x = got.scores[step.scoring.column]
        bad = x[~((x >= 0) & (x <= 1))]
        for v, val in bad.iloc[:_SHOWN].items():
            lines.append(f"step {s} video {v}: {_fmt(val)}")
    if lines:
        return _fail("unit_interval", "scores outside [0, 1]:", lines)
    return Check("unit_interval", True)


def _law_toward_truth(case: Case) -> Check:
    study, atol = case.study, case.atol
    proto = study.protocol
    if study.truth is None:
        return Check("toward_truth", True, False)
    truth = study.truth.set_index("video")
    cols = [truth_column(step.scoring.column) for step in proto.steps]
    if any(c not in truth.columns for c in cols):
        return Check("toward_truth", True, False)
    t = study.trials
    test = (t["repeat"] & (t["role"] == "target")).to_numpy()
    if not test.any():
        return Check("toward_truth", True, False)
    vids = t["video"].to_numpy()
    steps = t["step"].to_numpy()
    p_of = np.array([truth.loc[v, cols[s - 1]] for v, s in zip(vids[test], steps[test])])
    n_copies = lcm_denominator(p_of)
    if n_copies is None:  # the construction needs truths on a grid (studies() draws them so)
        return Check("toward_truth", True, False)
    n_copies = max(n_copies, 2)
    relaxed = relaxed_protocol(proto, corrections=False)
    added = pd.concat(_copies(t, n_copies), ignore_index=True)
    a_test = np.flatnonzero(np.tile(test, n_copies))
    # per (step, video), the added tests hold exactly truth x their number of hits
    key = pd.DataFrame(
        {"s": np.tile(steps, n_copies)[a_test], "v": np.tile(vids, n_copies)[a_test]}
    )
    rank = key.groupby(["s", "v"]).cumcount().to_numpy()
    size = key.groupby(["s", "v"])["v"].transform("size").to_numpy()
    p = np.array([truth.loc[v, cols[s - 1]] for s, v in zip(key["s"], key["v"])])
    _set_responses(added, a_test, rank < np.round(p * size).astype(np.int64), proto)
    more = pd.concat([t, retime(added, proto)], ignore_index=True)
    a = case.run(t, relaxed)
    b = case.run(more, relaxed)
    if a.problem or b.problem:
        return _fail(
            "toward_truth", "the scorer's output cannot be read:", [a.problem or b.problem]
        )
    lines = []
    for s, step in enumerate(proto.steps, start=1):
        col = step.scoring.column
        x, y = a.scores[col], b.scores[col]
        for v in x.index.intersection(y.index):
            tv = float(truth.loc[v, cols[s - 1]])
            d0, d1 = x[v] - tv, y[v] - tv
            if abs(d1) > abs(d0) + atol or d0 * d1 < -atol * atol:
                lines.append(
                    f"step {s} video {v}: truth {_fmt(tv)}; scored {_fmt(x[v])} on the log, "
                    f"{_fmt(y[v])} with the added annotations"
                )
        for v in sorted(set(x.index) - set(y.index))[:_SHOWN]:
            lines.append(f"step {s} video {v}: no longer scored with the added annotations")
    if lines:
        return _fail(
            "toward_truth",
            f"adding {n_copies} copies of every participant whose target tests hit exactly the "
            "truth's share (no filters, no lag correction) should move every score toward "
            "the truth, not past it:",
            lines[: 2 * _SHOWN],
        )
    return Check("toward_truth", True)


#: every law, by name; :func:`check_scorer` runs them in this order
LAWS: dict[str, Law] = {
    law.name: law
    for law in (
        Law("row_order", "shuffling the log's rows leaves every score unchanged", _law_row_order),
        Law(
            "relabel",
            "relabelling participants and videos (other ids, another order) leaves every score "
            "unchanged",
            _law_relabel,
        ),
        Law(
            "drop_filtered",
            "removing the sessions the protocol's filters drop leaves every score unchanged",
            _law_drop_filtered,
        ),
        Law(
            "zero_slope",
            "when the fitted lag slope is exactly zero, lag-corrected scores equal raw hit rates",
            _law_zero_slope,
        ),
        Law("unit_interval", "every score lies in [0, 1]", _law_unit_interval),
        Law(
            "toward_truth",
            "adding annotations of the same truth moves every score toward it, never past it",
            _law_toward_truth,
        ),
    )
}


def check_law(
    law: str | Law, scorer: Scorer, study: Study, *, seed: int = 0, atol: float = 1e-9
) -> Check:
    """One law's verdict (``seed`` fixes the shuffles and relabellings)."""
    if isinstance(law, str):
        if law not in LAWS:
            raise UserError(f"unknown law {law!r} (known: {', '.join(LAWS)})")
        law = LAWS[law]
    return law.check(Case(scorer, study, seed=seed, atol=atol))


def check_scorer(
    scorer: Scorer,
    study: Study,
    *,
    laws: Iterable[str] | None = None,
    reference: bool = True,
    seed: int = 0,
    atol: float = 1e-9,
) -> list[Check]:
    """The reference comparison (unless ``reference=False``) and each law (default: all)."""
    names = list(LAWS) if laws is None else list(laws)
    unknown = [n for n in names if n not in LAWS]
    if unknown:
        raise UserError(f"unknown law {unknown[0]!r} (known: {', '.join(LAWS)})")
    case = Case(scorer, study, seed=seed, atol=atol)
    out = [_check_reference(case)] if reference else []
    return out + [LAWS[n].check(case) for n in names]


def assert_scorer(
    scorer: Scorer,
    study: Study,
    *,
    laws: Iterable[str] | None = None,
    reference: bool = True,
    seed: int = 0,
    atol: float = 1e-9,
) -> list[Check]:
    """:func:`check_scorer`, raising :class:`ScorerMismatch` listing every failed check.

    Returns the checks when all pass (their ``applicable`` flags say which had anything to
    test).
    """
    checks = check_scorer(scorer, study, laws=laws, reference=reference, seed=seed, atol=atol)
    failed = [c for c in checks if not c.ok]
    if failed:
        raise ScorerMismatch("\n".join(f"{c.name}: {c.message}" for c in failed))
    return checks
