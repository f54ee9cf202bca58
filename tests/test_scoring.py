"""Scoring: a brute-force reference, invariances, bounds, corrections, recovery of the truth.

The property-based tests draw their logs from memsim.testing's strategies (the kit offered to
other people's scoring code), so a failure shrinks to a small log, printed whole."""

from __future__ import annotations

import io
import math
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tables import LT, MID, SMALL, ST, make_protocol, make_trials

from memsim.analysis.scoring import (
    CORRECTIONS,
    RATIO_FLOOR,
    correct,
    correction_x,
    count_column,
    read_scores,
    score,
    video_sums,
    write_scores,
)
from memsim.errors import UserError
from memsim.testing import protocols, studies
from memsim.testing.oracles import RATIO_TOLERANCE

DATA = Path(
    os.environ.get("MEMSIM_DATA", Path(__file__).resolve().parent.parent.parent / "shared" / "data")
)
REAL = DATA / "videomem" / "ground-truth_dev-set.csv"

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# drawn protocols (one or two steps, every correction kind, filters drawn) and logs with
# careless players among attentive ones
STUDIES = studies(protocols(), participants=(1, 6))


def small(seed, n_participants=25, n_returning=10, n_videos=40, bad=0.3, correction=None):
    trials, truth = make_trials(
        n_videos=n_videos,
        n_participants=n_participants,
        n_returning=n_returning,
        design=SMALL,
        seed=seed,
        bad_fraction=bad,
        lag_slope=-0.02,
    )
    return trials, truth, make_protocol(SMALL, correction=correction, n_videos=n_videos)


# --------------------------------------------------------------------------- brute force
def brute_force(trials: pd.DataFrame, protocol) -> dict:
    """Plain-Python scoring, row by row: {column: {video: (score, n)}} and {(p, step): kept}."""
    stats = defaultdict(lambda: defaultdict(int))
    for r in trials.itertuples(index=False):
        k = (int(r.participant), int(r.step))
        s = stats[k]
        s["n"] += 1
        if r.repeat and r.role == "vigilance":
            s["vt"] += 1
            s["vh"] += bool(r.response)
        if r.repeat and r.role == "target":
            s["tt"] += 1
            s["th"] += bool(r.response)
        if not r.repeat:
            s["f"] += 1
            s["fa"] += bool(r.response)
    kept = {}
    for (p, step), s in stats.items():
        f = protocol.steps[step - 1].filters
        vig = s["vh"] / s["vt"] if s["vt"] else math.nan
        hr = s["th"] / s["tt"] if s["tt"] else math.nan
        far = s["fa"] / s["f"] if s["f"] else math.nan
        ok = s["n"] / protocol.steps[step - 1].length >= f.min_completed_fraction
        if f.min_vigilance_hit_rate is not None and vig < f.min_vigilance_hit_rate:
            ok = False
        if f.min_hit_rate is not None and hr < f.min_hit_rate:
            ok = False
        if f.max_false_alarm_rate is not None and far > f.max_false_alarm_rate:
            ok = False
        if f.false_alarms_below_hits and far >= hr:
            ok = False
        kept[(p, step)] = ok
    out = {}
    for step, spec in enumerate(protocol.steps, start=1):
        ann = defaultdict(list)
        for r in trials.itertuples(index=False):
            if (
                r.step == step
                and r.repeat
                and r.role == "target"
                and kept[(int(r.participant), step)]
            ):
                ann[int(r.video)].append((float(bool(r.response)), float(r.lag)))
        corr = spec.scoring.correction
        res = {}
        if corr.kind in ("linear", "log_linear") and ann:
            f = (lambda x: x) if corr.kind == "linear" else math.log
            xs = [f(x) for a in ann.values() for _, x in a]
            hs = [h for a in ann.values() for h, _ in a]
            mx, mh = sum(xs) / len(xs), sum(hs) / len(hs)
            sxx = sum((x - mx) ** 2 for x in xs)
            slope = sum((x - mx) * (h - mh) for x, h in zip(xs, hs)) / sxx if sxx > 0 else 0.0
            ratio = getattr(corr, "form", "shift") == "ratio"
            for v, a in ann.items():
                raw = sum(h for h, _ in a) / len(a)
                ml = sum(f(x) for _, x in a) / len(a)
                if ratio:  # the fitted line h(x) = mh + slope (x - mx), at the reference over at ml
                    line = mh + slope * (ml - mx)
                    if abs(line) <= RATIO_TOLERANCE:  # rounding decides ratio or shift
                        res[v] = (None, len(a))
                        continue
                    if line < 0:  # no ratio: the shift
                        val = raw + slope * (f(corr.reference_lag) - ml)
                    else:
                        val = raw * (mh + slope * (f(corr.reference_lag) - mx)) / line
                else:
                    val = raw + slope * (f(corr.reference_lag) - ml)
                res[v] = (min(1.0, max(0.0, val)), len(a))
        elif corr.kind == "memento_decay":
            for v, a in ann.items():
                h = np.array([x[0] for x in a])
                lg = np.array([x[1] for x in a])
                alpha = np.polyfit(lg, h, 1)[0] if len(set(lg)) > 1 else 0.0
                res[v] = (
                    min(1.0, max(0.0, h.mean() + alpha * (corr.reference_lag - lg.mean()))),
                    len(a),
                )
        else:
            for v, a in ann.items():
                res[v] = (sum(h for h, _ in a) / len(a), len(a))
        out[spec.scoring.column] = res
    return {"scores": out, "kept": kept}


def as_dict(result, column):
    s = result.scores
    n = s[count_column(column)].to_numpy()
    return {int(v): (float(x), int(k)) for v, x, k in zip(s["video"], s[column], n) if k > 0}


def _same_params(a: dict, b: dict) -> bool:
    """Fitted correction parameters equal, NaN (a step without kept tests) equal to NaN."""
    if a.keys() != b.keys():
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, dict):
            if not (isinstance(y, dict) and _same_params(x, y)):
                return False
        elif not (x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))):
            return False
    return True


@FAST
@given(STUDIES)
def test_agrees_with_brute_force(study):
    trials, proto = study.trials, study.protocol
    res = score(trials, proto)
    ref = brute_force(trials, proto)
    kept = {
        (int(p), int(s)): bool(k)
        for p, s, k in res.participants[["participant", "step", "kept"]].itertuples(index=False)
    }
    assert kept == ref["kept"]
    for step in proto.steps:
        col = step.scoring.column
        got, want = as_dict(res, col), ref["scores"][col]
        assert got.keys() == want.keys()
        for v in want:
            assert got[v][1] == want[v][1]
            if want[v][0] is not None:
                assert got[v][0] == pytest.approx(want[v][0], abs=1e-9), (col, v)


@FAST
@given(STUDIES, st.integers(0, 2**32 - 1))
def test_invariant_to_row_order_and_participant_labels(study, perm_seed):
    trials, proto = study.trials, study.protocol
    res = score(trials, proto)
    rng = np.random.default_rng(perm_seed)
    shuffled = trials.sample(frac=1.0, random_state=rng.integers(2**31)).reset_index(drop=True)
    ids = trials["participant"].unique()
    new = dict(zip(ids, rng.permutation(len(ids)) * 1_000_003 - 5))  # any ints, any order
    shuffled["participant"] = shuffled["participant"].map(new)
    res2 = score(shuffled, proto)
    pd.testing.assert_frame_equal(
        res.scores, res2.scores, check_exact=False, rtol=1e-12, atol=1e-12
    )
    a = res.participants.assign(participant=res.participants["participant"].map(new))
    a = a.sort_values(["participant", "step"]).reset_index(drop=True)
    b = res2.participants.sort_values(["participant", "step"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


@FAST
@given(STUDIES)
def test_scores_in_unit_interval(study):
    res = score(study.trials, study.protocol)
    for step in study.protocol.steps:
        x = res.scores[step.scoring.column].dropna().to_numpy()
        assert ((x >= 0) & (x <= 1)).all()
    assert ((res.videos["raw"] >= 0) & (res.videos["raw"] <= 1)).all()


@FAST
@given(STUDIES)
def test_removing_a_filtered_participant_changes_nothing_else(study):
    trials, proto = study.trials, study.protocol
    res = score(trials, proto)
    dropped = res.participants[~res.participants["kept"]]
    if dropped.empty:
        return
    p, s = dropped.iloc[0][["participant", "step"]]
    rest = trials[~((trials["participant"] == p) & (trials["step"] == s))]
    if rest.empty:
        return
    res2 = score(rest, proto)
    pd.testing.assert_frame_equal(res.scores, res2.scores)
    others = res.participants[
        ~((res.participants["participant"] == p) & (res.participants["step"] == s))
    ]
    pd.testing.assert_frame_equal(
        others.reset_index(drop=True), res2.participants.reset_index(drop=True)
    )
    assert _same_params(res.corrections, res2.corrections)


def test_filter_reasons_name_the_first_failed_filter():
    trials, _, proto = small(5, n_participants=60, bad=0.5)
    parts = score(trials, proto).participants
    f1 = proto.steps[0].filters
    vig = parts[(parts["step"] == 1) & (parts["reason"] == "vigilance")]
    assert len(vig) and (vig["vigilance_hit_rate"] < f1.min_vigilance_hit_rate).all()
    kept = parts[parts["kept"]]
    assert (kept.loc[kept["step"] == 1, "false_alarm_rate"] <= f1.max_false_alarm_rate).all()
    assert (kept["reason"] == "").all()


# --------------------------------------------------------------------------- corrections
def _step1_tests(study):
    """The kept recognition tests of step 1: (video code, hit, lag, number of videos)."""
    res = score(study.trials, study.protocol)
    t = res.tests[0]
    return t.video, t.hit, t.lag, len(res.video_ids)


def annotations():
    """Annotations of drawn one-step games without filters (every participant's target
    tests kept, two participants or more)."""
    return studies(protocols(steps=1, filters=False), participants=(2, 6)).map(_step1_tests)


@FAST
@given(annotations(), st.integers(1, 150))
def test_linear_correction_unchanged_when_slope_is_zero(ann, ref):
    video, hit, lag, V = ann
    c = lag.mean().round()
    # mirror every annotation about c: the fitted slope is then exactly 0
    video, hit, lag = (
        np.concatenate([video, video]),
        np.concatenate([hit, hit]),
        np.concatenate([lag, 2 * c - lag]),
    )
    spec = type("S", (), {"kind": "linear", "reference_lag": ref})()
    s = video_sums(video, hit, lag, V)
    out, params = CORRECTIONS["linear"].fit(s, spec)
    assert params["slope"] == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(out, s.raw, atol=1e-12)


@FAST
@given(annotations(), st.integers(1, 150))
def test_linear_correction_moves_the_mean_to_the_reference_lag(ann, ref):
    video, hit, lag, V = ann
    spec = type("S", (), {"kind": "linear", "reference_lag": ref})()
    s = video_sums(video, hit, lag, V)
    out, p = CORRECTIONS["linear"].fit(s, spec)  # unclipped
    # annotation-weighted mean of corrected scores = the fitted line at the reference lag
    assert (s.n * out).sum() / s.n.sum() == pytest.approx(
        p["intercept"] + p["slope"] * ref, abs=1e-9
    )
    # and each video moved by slope x (reference lag - its mean lag)
    np.testing.assert_allclose(out - s.raw, p["slope"] * (ref - s.mean_lag), atol=1e-12)


@FAST
@given(annotations(), st.integers(1, 150))
def test_linear_ratio_correction_scales_by_the_line(ann, ref):
    """form ratio: each video's raw score times h(reference) / h(its mean lag), with h the
    same fitted line as the shift form."""
    video, hit, lag, V = ann
    s = video_sums(video, hit, lag, V)
    shift, p = CORRECTIONS["linear"].fit(
        s, type("S", (), {"kind": "linear", "reference_lag": ref})()
    )
    spec = type("S", (), {"kind": "linear", "reference_lag": ref, "form": "ratio"})()
    out, q = CORRECTIONS["linear"].fit(s, spec)
    assert q["slope"] == p["slope"] and q["form"] == "ratio" and p["form"] == "shift"
    h = lambda x: p["intercept"] + p["slope"] * x  # noqa: E731
    seen = s.n > 0
    line = h(s.mean_lag)
    has_ratio = seen & (line > RATIO_FLOOR)
    with np.errstate(invalid="ignore", divide="ignore"):
        want = s.raw * h(ref) / line
    np.testing.assert_allclose(out[has_ratio], want[has_ratio], rtol=1e-9, atol=1e-12)
    # no ratio where the line is at or below 0 at the video's mean lag: the shift instead
    np.testing.assert_array_equal(out[seen & ~has_ratio], shift[seen & ~has_ratio])
    assert np.isfinite(out[seen]).all()
    assert q["shifted"] == int((seen & ~has_ratio).sum())


def test_linear_ratio_without_a_ratio_shifts_the_video():
    """A line that crosses 0 within the lags: the video whose mean lag is past the crossing
    has no ratio and is shifted (a finite score, counted), the others scaled."""
    # hits at lag 10 (video 0), misses at 100 (video 1) and 300 (video 2): the line is
    # below 0 at lag 300
    video = np.array([0, 0, 1, 1, 2])
    hit = np.array([1.0, 1.0, 0.0, 0.0, 0.0])
    lag = np.array([10.0, 10.0, 100.0, 100.0, 300.0])
    s = video_sums(video, hit, lag, 3)
    spec = type("S", (), {"kind": "linear", "reference_lag": 100, "form": "ratio"})()
    out, q = CORRECTIONS["linear"].fit(s, spec)
    shift, _ = CORRECTIONS["linear"].fit(
        s, type("S", (), {"kind": "linear", "reference_lag": 100})()
    )
    a, b = q["intercept"], q["slope"]
    assert a + b * 300 < 0 and q["shifted"] == 1
    assert out[2] == shift[2] and np.isfinite(out).all()
    assert out[0] == pytest.approx(1.0 * (a + b * 100) / (a + b * 10))


def test_released_correction_tells_a_ratio_from_a_shift():
    """Scores corrected either way and written with 3 decimals: undoing them recovers every
    raw score, and the fitted change says which form was applied."""
    from memsim.fit.compat import released_correction

    rng = np.random.default_rng(4)
    n = rng.integers(30, 40, 3000)
    raw = rng.binomial(n, rng.beta(8, 1.5, 3000)) / n
    lag = 72.5 + rng.normal(0, 3, 3000)
    b, a = -0.0006, 0.92
    forms = {"shift": raw + b * (100 - lag), "ratio": raw * (a + b * 100) / (a + b * lag)}
    got = {}
    for form, sc in forms.items():
        real = pd.DataFrame(
            {"short-term_memorability": np.round(sc, 3), "nb_short-term_annotations": n}
        )
        got[form] = released_correction(real)
        assert got[form]["recovered"] > 0.99
    assert abs(got["shift"]["slope"]) < 0.002 and got["shift"]["intercept"] < -0.01
    assert abs(got["ratio"]["intercept"]) < 0.002 and got["ratio"]["slope"] < -0.01


@pytest.mark.skipif(not REAL.exists(), reason="released VideoMem data not present")
def test_released_videomem_correction_is_a_ratio():
    """The released short-term scores: every raw score is recovered, and score - raw is
    proportional to raw (intercept ~0), about -1.75 % of it."""
    from memsim.fit.compat import released_correction

    rc = released_correction(read_scores(REAL))
    assert rc["recovered"] == 1.0 and rc["videos"] == 7000
    assert abs(rc["intercept"]) < 0.002 and rc["slope"] < -0.012
    assert rc["mean_relative_change"] == pytest.approx(-0.0175, abs=0.0005)
    # the heavily annotated tenth was corrected less, and less alike, than the rest
    core, tail = rc["by_count"]["<= 45 annotations"], rc["by_count"]["> 45 annotations"]
    assert core["videos"] + tail["videos"] == 7000 and 0.05 < tail["videos"] / 7000 < 0.15
    assert core["mean_relative_change"] < tail["mean_relative_change"] - 0.002
    assert tail["sd_relative_change"] > 2 * core["sd_relative_change"]


@FAST
@given(annotations(), st.integers(1, 150))
def test_memento_decay_is_a_per_video_line_at_T(ann, T):
    video, hit, lag, V = ann
    spec = type("S", (), {"kind": "memento_decay", "reference_lag": T})()
    out, p = CORRECTIONS["memento_decay"].fit(video_sums(video, hit, lag, V), spec)
    for v in range(V):
        m = video == v
        if len(set(lag[m])) < 2:
            assert p["alpha"][v] == 0.0
            continue
        slope, icpt = np.polyfit(lag[m], hit[m], 1)
        assert p["alpha"][v] == pytest.approx(slope, abs=1e-9)
        assert out[v] == pytest.approx(icpt + slope * T, abs=1e-9)


def test_memento_alpha_zero_when_all_hits():
    video = np.zeros(5, np.int64)
    spec = type("S", (), {"kind": "memento_decay", "reference_lag": 80})()
    out, p = correct(video_sums(video, np.ones(5), np.arange(10.0, 60.0, 10.0), 1), spec)
    assert p["alpha"][0] == 0.0 and out[0] == 1.0  # as in the Memento10k release (raw 1 -> alpha 0)


def test_correction_x_log_linear():
    spec = type("S", (), {"kind": "log_linear", "reference_lag": 80})()
    np.testing.assert_allclose(correction_x(spec, np.array([1.0, np.e])), [0.0, 1.0])


def test_scores_converge_to_truth():
    design = MID
    proto = make_protocol(design, n_videos=200)
    errs, rhos = [], []
    for P in (60, 600, 3000):
        trials, truth = make_trials(
            n_videos=200,
            n_participants=P,
            design=design,
            seed=11,
            bad_fraction=0.1,
            lag_slope=-0.002,
        )
        s = score(trials, proto).scores.merge(truth, on="video", suffixes=("", "_true"))
        ok = s[ST].notna()
        errs.append(np.abs(s.loc[ok, ST] - s.loc[ok, ST + "_true"]).mean())
        rhos.append(np.corrcoef(s.loc[ok, ST], s.loc[ok, ST + "_true"])[0, 1])
    assert errs[0] > errs[1] > errs[2]
    assert rhos[0] < rhos[1] < rhos[2]
    # ~ 3000*10/200*0.9 = 135 annotations per video: binomial error ~0.025
    assert errs[2] < 0.04 and rhos[2] > 0.9


def test_count_column_rule():
    assert count_column("short-term_memorability") == "nb_short-term_annotations"
    assert count_column("recall") == "nb_recall_annotations"


# --------------------------------------------------------------------------- files
def test_write_read_roundtrip(tmp_path):
    trials, _, proto = small(1)
    res = score(trials, proto)
    path = tmp_path / "deep" / "scores.csv"
    write_scores(res.scores, path)
    back = read_scores(path)
    pd.testing.assert_frame_equal(back, res.scores, check_dtype=False)
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_write_is_atomic_on_failure(tmp_path):
    path = tmp_path / "scores.csv"
    path.write_text("old\n")

    class Boom(pd.DataFrame):
        def to_csv(self, *a, **k):
            super().to_csv(*a, **k)
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_scores(Boom({"video": [1], "x": [0.5]}), path)
    assert path.read_text() == "old\n" and len(list(tmp_path.iterdir())) == 1


def test_read_scores_bom_crlf(tmp_path):
    p = tmp_path / "gt.csv"
    p.write_bytes(
        "\ufeffvideo,short-term_memorability,nb_short-term_annotations\r\nvideo1.webm,0.9,30\r\n"
        "video2.webm,0.8,31\r\n".encode("utf-8")
    )
    df = read_scores(p)
    assert list(df.columns) == ["video", "short-term_memorability", "nb_short-term_annotations"]
    assert df["video"].tolist() == ["video1.webm", "video2.webm"]


@pytest.mark.parametrize(
    "text,words",
    [
        ("", "empty"),
        ("a,b\n1,2\n", "video"),
        ("video,x\n1,abc\n", "not numeric"),
        ("video,x\n1,0.5\n1,0.2\n", "duplicate"),
        ("video,short-term_memorability\n", "no rows"),
        (
            "video,short-term_memorability\nv1,1.5\n",
            r"a score outside \[0, 1\] \(1.5 for video v1\)",
        ),
        ("video,short-term_memorability\nv1,inf\n", "a score outside"),
        ("video,a_memorability,nb_a\nv1,0.5,-3\n", "not a whole number of at least 0"),
        ("video,a_memorability,nb_a\nv1,0.5,2.5\n", "not a whole number"),
    ],
)
def test_read_scores_errors(tmp_path, text, words):
    p = tmp_path / "s.csv"
    p.write_text(text)
    with pytest.raises(UserError, match=words):
        read_scores(p)
    with pytest.raises(UserError, match="no such"):
        read_scores(tmp_path / "missing.csv")


@pytest.mark.realdata
def test_read_real_ground_truth_unchanged():
    if not REAL.exists():
        pytest.skip(f"real data absent: {REAL}")
    raw = REAL.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw
    df = read_scores(REAL)
    assert list(df.columns) == [
        "video",
        ST,
        "nb_short-term_annotations",
        LT,
        "nb_long-term_annotations",
    ]
    assert len(df) == 7000
    assert df[ST].mean() == pytest.approx(0.859, abs=0.001)
    assert df[LT].mean() == pytest.approx(0.779, abs=0.001)
    assert df["nb_short-term_annotations"].min() >= 30
    # the values are the file's own text, parsed, nothing else
    ref = pd.read_csv(io.StringIO(raw.decode("utf-8-sig")))
    pd.testing.assert_frame_equal(df, ref)


def test_validate_false_accepts_any_role_encoding():
    trials, _, proto = small(2)
    want = score(trials, proto).scores
    for roles in (
        trials["role"].astype(str),
        trials["role"].cat.reorder_categories(["vigilance", "target", "filler"]),
    ):
        got = score(trials.assign(role=roles), proto, validate=False).scores
        pd.testing.assert_frame_equal(got, want)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-5, 60), max_size=200), st.booleans())
def test_dense_code_shortcuts_give_the_factorize_codes(values, sort):
    """Sorted ids and small non-negative ids take shortcuts; the codes are factorize's."""
    from memsim.analysis.filters import dense_codes

    for dtype in (np.int64, np.int32):
        v = np.array(sorted(values) if sort else values, dtype=dtype)
        codes, uniq = dense_codes(v)
        c, u = pd.factorize(v)
        order = np.argsort(u, kind="stable")
        rank = np.empty(len(u), np.int64)
        rank[order] = np.arange(len(u))
        want_codes, want_uniq = rank[c], np.asarray(u)[order]
        assert codes.dtype == want_codes.dtype and np.array_equal(codes, want_codes)
        assert uniq.dtype == want_uniq.dtype and np.array_equal(uniq, want_uniq)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31))
def test_row_tally_is_the_bincount(seed):
    from memsim.analysis.filters import _tally_reference, _tally_rows

    rng = np.random.default_rng(seed)
    n, P, S = int(rng.integers(0, 300)), int(rng.integers(1, 20)), int(rng.integers(1, 4))
    pcode = rng.integers(0, P, n)
    step = rng.integers(1, S + 1, n).astype(np.int8)
    role = rng.integers(0, 3, n).astype(np.int8)
    repeat, response = rng.random(n) < 0.4, rng.random(n) < 0.5
    a = _tally_rows(pcode, step, role, repeat, response, S, P * S)
    b = _tally_reference(pcode, step, role, repeat, response, S, P * S)
    assert np.array_equal(a, b)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31))
def test_kept_rows_are_the_masks(seed):
    from memsim.analysis.scoring import _kept_rows, _kept_rows_reference

    rng = np.random.default_rng(seed)
    n, P, S = int(rng.integers(0, 300)), int(rng.integers(1, 20)), int(rng.integers(1, 4))
    pcode = rng.integers(0, P, n)
    step = rng.integers(1, S + 1, n).astype(np.int8)
    role = rng.integers(0, 3, n).astype(np.int8)
    repeat, response = rng.random(n) < 0.4, rng.random(n) < 0.5
    kept_g = rng.random(P * S) < 0.7
    want = _kept_rows_reference(pcode, step, role, repeat, response, kept_g, S)
    got = _kept_rows(pcode, step, role, repeat, response, kept_g, S, len(want[0]), len(want[1]))
    assert all(np.array_equal(a, b) for a, b in zip(got, want))
