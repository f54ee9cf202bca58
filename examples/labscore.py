"""A lab's own scorer of memory-game logs, in plain pandas: the code under test in
``docs/testing.md``.

The lab logs one row per presentation in its own column names (:data:`LOG_COLUMNS` maps
memsim's trial-table names to them) and keeps its settings in a plain dict per session
(:func:`config_from_protocol` builds it from a memsim protocol, so memsim's strategies can
drive it). It implements VideoMem's scoring: participant filters per session, raw hit rate
per clip, and a linear lag correction (one line of hit rate on lag over all kept target
tests; each clip moved to the reference lag by a shift or a ratio).

The three buggy variants in ``labscore_bugs.py`` each change one piece of this file.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: memsim's trial-table names -> this lab's
LOG_COLUMNS = {
    "participant": "worker_id",
    "step": "session",
    "position": "trial",
    "video": "clip",
    "role": "trial_type",
    "repeat": "seen_before",
    "lag": "lag",
    "delay_s": "delay",
    "response": "key_pressed",
    "rt_s": "rt",
    "onset_s": "onset",
}
#: the corrections this scorer implements (memsim.testing.CORRECTION_KINDS names)
CORRECTIONS = ("none", "linear", "linear-ratio")


def config_from_protocol(protocol) -> dict:
    """The lab's settings, one dict per session, from a memsim protocol."""
    out = {}
    for s, step in enumerate(protocol.steps, start=1):
        f, c = step.filters, step.scoring.correction
        out[s] = {
            "column": step.scoring.column,
            "length": step.length,
            "min_completed": f.min_completed_fraction,
            "min_vigilance": f.min_vigilance_hit_rate,
            "min_hits": f.min_hit_rate,
            "max_false_alarms": f.max_false_alarm_rate,
            "false_alarms_below_hits": f.false_alarms_below_hits,
            "correction": c.kind if c.kind != "linear" else f"linear-{c.form}",
            "reference_lag": getattr(c, "reference_lag", None),
        }
    return out


# --------------------------------------------------------------------------- participants
def session_table(log: pd.DataFrame) -> pd.DataFrame:
    """Per worker and session: trials, target tests and hits, vigilance tests and hits,
    first showings and false alarms."""
    tests = log["seen_before"] & (log["trial_type"] == "target")
    vigilance = log["seen_before"] & (log["trial_type"] == "vigilance")
    first = ~log["seen_before"]
    pressed = log["key_pressed"]
    flags = pd.DataFrame(
        {
            "worker_id": log["worker_id"],
            "session": log["session"],
            "trials": 1,
            "targets": tests,
            "hits": tests & pressed,
            "vigilance": vigilance,
            "vigilance_hits": vigilance & pressed,
            "first_showings": first,
            "false_alarms": first & pressed,
        }
    )
    return flags.groupby(["worker_id", "session"], as_index=False).sum()


def kept_sessions(stats: pd.DataFrame, config: dict) -> pd.DataFrame:
    """The (worker, session) pairs that pass the session's filters. A rate without a
    denominator (NaN) fails nothing: its comparisons are False."""
    with np.errstate(invalid="ignore", divide="ignore"):
        hit_rate = stats["hits"] / stats["targets"]
        vig_rate = stats["vigilance_hits"] / stats["vigilance"]
        fa_rate = stats["false_alarms"] / stats["first_showings"]
    bad = pd.Series(False, index=stats.index)
    for session, cfg in config.items():
        here = stats["session"] == session
        fail = stats["trials"] / cfg["length"] < cfg["min_completed"]
        if cfg["min_vigilance"] is not None:
            fail |= vig_rate < cfg["min_vigilance"]
        if cfg["min_hits"] is not None:
            fail |= hit_rate < cfg["min_hits"]
        if cfg["max_false_alarms"] is not None:
            fail |= fa_rate > cfg["max_false_alarms"]
        if cfg["false_alarms_below_hits"]:
            fail |= fa_rate >= hit_rate
        bad |= here & fail
    return stats.loc[~bad, ["worker_id", "session"]]


# --------------------------------------------------------------------------- lag correction
def one_line(tests: pd.DataFrame) -> tuple[float, float]:
    """Intercept and slope of hit (0/1) on lag, least squares over all the tests; slope 0
    when every test has the same lag."""
    x = tests["lag"].astype(float)
    h = tests["key_pressed"].astype(float)
    sxx = ((x - x.mean()) ** 2).sum()
    slope = ((x - x.mean()) * (h - h.mean())).sum() / sxx if sxx > 0 else 0.0
    return h.mean() - slope * x.mean(), slope


def clip_scores(tests: pd.DataFrame, line: pd.DataFrame, cfg: dict) -> pd.DataFrame:
    """Per clip: raw hit rate, number of tests, and the score at the reference lag.

    ``line`` has the intercept ``a`` and slope ``b`` each test is corrected with (the same
    line on every row for VideoMem's correction)."""
    t = pd.DataFrame(
        {
            "clip": tests["clip"].to_numpy(),
            "raw": tests["key_pressed"].to_numpy(float),
            "lag": tests["lag"].to_numpy(float),
            "a": line["a"].to_numpy(),
            "b": line["b"].to_numpy(),
        }
    )
    g = t.groupby("clip")
    per = g.mean()
    kind, ref = cfg["correction"], cfg["reference_lag"]
    if kind == "none":
        out = per["raw"]
    elif kind == "linear-shift":
        out = per["raw"] + per["b"] * (ref - per["lag"])
    elif kind == "linear-ratio":
        at_lag = per["a"] + per["b"] * per["lag"]
        with np.errstate(invalid="ignore", divide="ignore"):
            out = per["raw"] * (per["a"] + per["b"] * ref) / at_lag
        # where the line is at or below (about) 0 at the clip's mean lag there is no ratio:
        # such a clip is shifted instead, as VideoMem's reference scorer does
        shift = per["raw"] + per["b"] * (ref - per["lag"])
        out = out.where(at_lag > 1e-9, shift)
    else:
        raise ValueError(f"this scorer does not implement the {kind!r} correction")
    return pd.DataFrame({"score": out.clip(0.0, 1.0), "n": g.size()})


def global_line(kept_tests: pd.DataFrame, all_tests: pd.DataFrame) -> pd.DataFrame:
    """VideoMem's line: one fit over all kept target tests of the session."""
    a, b = one_line(kept_tests)
    return pd.DataFrame({"a": a, "b": b}, index=kept_tests.index)


# --------------------------------------------------------------------------- scores
def score(
    log: pd.DataFrame,
    config: dict,
    *,
    sessions=session_table,
    line=global_line,
) -> pd.DataFrame:
    """Scores per clip: ``clip``, then per session its score column and
    ``nb_<name>_annotations`` (a clip without kept tests in a session has NaN and 0)."""
    kept = kept_sessions(sessions(log), config)
    kept_keys = set(zip(kept["worker_id"], kept["session"]))
    tests = log[log["seen_before"] & (log["trial_type"] == "target")]
    is_kept = [k in kept_keys for k in zip(tests["worker_id"], tests["session"])]
    columns = {}
    for session, cfg in config.items():
        here = tests[tests["session"] == session]
        mine = here[np.asarray(is_kept, bool)[(tests["session"] == session).to_numpy()]]
        col = cfg["column"]
        count = "nb_" + col.removesuffix("_memorability") + "_annotations"
        if mine.empty:
            continue
        per = clip_scores(mine, line(mine, here), cfg)
        columns[col], columns[count] = per["score"], per["n"]
    out = pd.DataFrame(columns)  # aligned on the clip index: NaN where a session has no test
    for cfg in config.values():
        col = cfg["column"]
        count = "nb_" + col.removesuffix("_memorability") + "_annotations"
        if col not in out:
            out[col] = np.nan
        out[count] = out[count].fillna(0).astype("int64") if count in out else 0
    return out.rename_axis("clip").reset_index().sort_values("clip", ignore_index=True)
