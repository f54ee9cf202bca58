"""The protocol schema: shipped files, round trips, and one clear line for every broken file."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from memsim import cli
from memsim.design.protocol import (
    Protocol,
    find_arrangement,
    load_protocol,
    protocol_from_mapping,
    protocol_json_schema,
    summary_lines,
)
from memsim.errors import UserError
from memsim.resources import protocol_path, repository_root, shipped_dir

PROTOCOLS = sorted((shipped_dir("protocols")).glob("*.yaml"))
SHIPPED = ["isola2011", "lamem", "memento10k", "videomem"]


def videomem() -> dict:
    return yaml.safe_load((protocol_path("videomem")).read_text())


def run_validate(capsys, path) -> tuple[int, str, str]:
    code = cli.main(["validate", str(path)])
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- shipped files
def test_all_four_protocols_are_shipped():
    assert [p.stem for p in PROTOCOLS] == SHIPPED


@pytest.mark.parametrize("path", PROTOCOLS, ids=lambda p: p.stem)
def test_shipped_protocol_validates(path, capsys):
    code, out, err = run_validate(capsys, path)
    assert code == 0, err
    assert err == ""
    lines = out.splitlines()
    assert lines[-1] == f"{path}: OK"
    assert lines[0].startswith(path.stem)
    assert len(lines) <= 24  # one screen


@pytest.mark.parametrize("path", PROTOCOLS, ids=lambda p: p.stem)
def test_round_trip(path):
    proto = load_protocol(path)
    assert protocol_from_mapping(proto.dump()) == proto
    # through YAML text too, as a user would save it
    assert protocol_from_mapping(yaml.safe_load(yaml.safe_dump(proto.dump()))) == proto
    # and the dump is plain JSON
    assert protocol_from_mapping(json.loads(json.dumps(proto.dump()))) == proto


@pytest.mark.parametrize("path", PROTOCOLS, ids=lambda p: p.stem)
def test_every_fact_is_sourced(path):
    """Each line that sets a number carries a source tag, or sits just below/above one.

    Tags: [paper] (the study's paper), [paper?] (recalled, unchecked), [data] (measured on a
    released file) or [chosen] (no source; the comment gives the reason).
    """
    lines = path.read_text().splitlines()
    tagged = [bool(re.search(r"\[(paper\??|data|chosen)\]", line)) for line in lines]
    assert lines[0].startswith("#"), "the file opens with comments naming its source"
    for i, line in enumerate(lines):
        code = line.split("#", 1)[0]
        if not re.search(r":\s*[\[{]?\s*-?\d", code):
            continue  # sets no number
        window = tagged[max(0, i - 3) : i + 2]
        assert any(window), f"{path.name}:{i + 1} has no source tag nearby: {line.strip()}"


def test_videomem_is_the_spec_protocol():
    p = load_protocol(protocol_path("videomem"))
    s1, s2 = p.steps
    assert (p.stimuli.count, p.stimuli.duration_s, p.stimuli.gap_s) == (10_000, 7.0, 1.0)
    assert p.stimuli.response_ends_presentation
    assert s1.length == 180 and s2.length == 120
    assert [(g.role, g.count, g.repeat_lag) for g in s1.items] == [
        ("target", 40, (45, 100)),
        ("vigilance", 20, (3, 6)),
        ("filler", 60, None),
    ]
    assert s1.n_new == 120 and s2.n_new == 80
    assert s2.delay_h == (24, 72)
    assert s2.items[0].source.step == 1 and s2.items[0].source.roles == ("filler",)
    assert (
        s1.filters.max_false_alarm_rate,
        s2.filters.max_false_alarm_rate,
        s2.filters.min_hit_rate,
    ) == (
        0.30,
        0.40,
        0.15,
    )
    assert s1.scoring.correction.kind == "linear" and s1.scoring.correction.reference_lag == 100
    assert s2.scoring.correction.kind == "none"
    assert p.selection.kind == "least_annotated" and p.selection.pool == 1000
    assert p.presentation_s == 8.0


def test_other_protocols_carry_the_published_facts():
    m = load_protocol(protocol_path("memento10k"))
    (s,) = m.steps
    assert m.stimuli.duration_s == 3.0 and m.stimuli.response_ends_presentation
    lags = {g.role: g.repeat_lag for g in s.items if g.repeat_lag}
    assert lags == {"target": (9, 200), "vigilance": (2, 3)}
    assert s.scoring.correction.kind == "memento_decay" and s.scoring.correction.reference_lag == 80
    assert s.stop_after_vigilance_misses is not None
    assert m.campaign.stop.kind == "min_annotations" and m.campaign.stop.count == 100  # ~90 kept

    i = load_protocol(protocol_path("isola2011"))
    (s,) = i.steps
    assert (i.stimuli.kind, i.stimuli.count, i.stimuli.duration_s, i.stimuli.gap_s) == (
        "image",
        2222,
        1.0,
        1.4,
    )
    assert not i.stimuli.response_ends_presentation
    assert s.length == 120
    lags = {g.role: g.repeat_lag for g in s.items if g.repeat_lag}
    assert lags == {"target": (91, 109), "vigilance": (1, 7)}
    assert s.scoring.correction.kind == "none"
    assert i.campaign.stop.count == 81  # ~78 kept

    la = load_protocol(protocol_path("lamem"))
    assert la.stimuli.count == 60_000 and la.stimuli.kind == "image"
    assert la.steps[0].scoring.correction.kind != "none"


@pytest.mark.parametrize("path", PROTOCOLS, ids=lambda p: p.stem)
def test_stop_rule_can_reach_its_annotation_count(path):
    """The participant budget covers what the stop rule needs (the published annotation counts)."""
    p = load_protocol(path)
    stop = p.campaign.stop
    per = sum(g.count for g in p.steps[0].items if g.role == "target" and g.tested)
    if stop.kind == "min_annotations":
        assert stop.max_participants * per >= stop.count * p.stimuli.count
    else:
        assert (
            stop.count * per / p.stimuli.count > 30
        )  # VideoMem: >= 30 annotations per video on average


def test_summary_names_every_step_and_group():
    p = load_protocol(protocol_path("videomem"))
    text = "\n".join(summary_lines(p))
    for needle in (
        "10,000 videos",
        "45-100",
        "3-6",
        "drawn from step 1 fillers",
        "24-72 h",
        "lag 100",
    ):
        assert needle in text


# --------------------------------------------------------------------------- broken files
def _set(path: str, value):
    """A mutation that sets the dotted ``path`` (list indices as numbers) of the VideoMem
    mapping."""

    def apply(d):
        *parents, last = [int(x) if x.isdigit() else x for x in path.split(".")]
        node = d
        for k in parents:
            node = node[k]
        node[last] = value
        return d

    return apply


def _del(path: str):
    def apply(d):
        *parents, last = [int(x) if x.isdigit() else x for x in path.split(".")]
        node = d
        for k in parents:
            node = node[k]
        del node[last]
        return d

    return apply


def _chain(*fs):
    def apply(d):
        for f in fs:
            d = f(d)
        return d

    return apply


# (id, mutation of the VideoMem mapping, field path the one-line error must name)
BROKEN_MAPPINGS = [
    ("missing-stimuli", _del("stimuli"), "stimuli"),
    ("missing-scoring", _del("steps.0.scoring"), "steps.0.scoring"),
    ("missing-stop", _del("campaign.stop"), "campaign.stop"),
    ("missing-count", _del("stimuli.count"), "stimuli.count"),
    ("missing-kind", _del("selection.kind"), "selection.kind"),
    ("count-is-text", _set("stimuli.count", "many"), "stimuli.count"),
    ("count-is-quoted-number", _set("steps.0.items.0.count", "40"), "steps.0.items.0.count"),
    ("count-is-bool", _set("steps.0.items.1.count", True), "steps.0.items.1.count"),
    ("count-is-fraction", _set("steps.0.items.2.count", 60.5), "steps.0.items.2.count"),
    ("steps-is-mapping", _set("steps", {"name": "x"}), "steps"),
    ("stimuli-is-list", _set("stimuli", [1, 2]), "stimuli"),
    ("duration-is-text", _set("stimuli.duration_s", "seven"), "stimuli.duration_s"),
    (
        "bool-is-number",
        _set("stimuli.response_ends_presentation", 1),
        "stimuli.response_ends_presentation",
    ),
    ("negative-count", _set("steps.0.items.2.count", -5), "steps.0.items.2.count"),
    ("zero-count", _set("steps.1.items.1.count", 0), "steps.1.items.1.count"),
    ("huge-count", _set("stimuli.count", 10**12), "stimuli.count"),
    ("huge-length", _set("steps.0.length", 40_000), "steps.0.length"),
    ("negative-duration", _set("stimuli.duration_s", -7.0), "stimuli.duration_s"),
    ("infinite-gap", _set("stimuli.gap_s", float("inf")), "stimuli.gap_s"),
    (
        "nan-rate",
        _set("steps.0.filters.max_false_alarm_rate", float("nan")),
        "steps.0.filters.max_false_alarm_rate",
    ),
    ("rate-above-one", _set("steps.1.filters.min_hit_rate", 1.5), "steps.1.filters.min_hit_rate"),
    ("zero-arrival-rate", _set("campaign.arrivals.rate_per_h", 0), "campaign.arrivals.rate_per_h"),
    ("reversed-lags", _set("steps.0.items.0.repeat_lag", [100, 45]), "steps.0.items.0.repeat_lag"),
    (
        "lag-beyond-length",
        _set("steps.0.items.0.repeat_lag", [45, 180]),
        "steps.0.items.0.repeat_lag",
    ),
    ("lag-zero", _set("steps.0.items.1.repeat_lag", [0, 6]), "steps.0.items.1.repeat_lag"),
    ("lag-one-number", _set("steps.0.items.1.repeat_lag", [3]), "steps.0.items.1.repeat_lag"),
    (
        "lag-three-numbers",
        _set("steps.0.items.1.repeat_lag", [3, 4, 6]),
        "steps.0.items.1.repeat_lag",
    ),
    (
        "lags-impossible",
        _set("steps.0.items.0.repeat_lag", [150, 170]),
        "steps.0.items.0.repeat_lag",
    ),
    (
        # passes the counting bound, yet the vigilance pair finds no two free neighbours
        "lags-no-arrangement",
        _chain(
            _set("steps.0.length", 6),
            _set(
                "steps.0.items",
                [
                    {"role": "target", "count": 2, "repeat_lag": [3, 3]},
                    {"role": "vigilance", "count": 1, "repeat_lag": [1, 1]},
                ],
            ),
        ),
        "steps.0.items.1.repeat_lag",
    ),
    (
        "typo-in-item",
        lambda d: (d["steps"][0]["items"][0].update(repeat_lags=[45, 100]), d)[1],
        "steps.0.items.0.repeat_lags",
    ),
    ("typo-top-level", lambda d: (d.update(campain={}), d)[1], "campain"),
    ("unknown-selection-kind", _set("selection.kind", "least_anotated"), "selection.kind"),
    ("demand-share-above-one", _set("selection.demand.share", 1.5), "selection.demand.share"),
    ("demand-excess-zero", _set("selection.demand.mean_excess", 0), "selection.demand.mean_excess"),
    (
        "demand-typo",
        _set("selection.demand", {"share": 0.2, "mean_exces": 0.3}),
        "selection.demand.mean_exces",
    ),
    (
        "demand-with-random-pick",
        _set("steps.1.items.0.source.pick", "random"),
        "steps.1.items.0.source.demand",
    ),
    ("checks-zero", _set("selection.counts_every_h", 0), "selection.counts_every_h"),
    (
        "checks-without-verdicts",
        _set("selection.counts", "assigned"),
        "selection.counts_every_participants",
    ),
    (
        "participant-checks-zero",
        _set("selection.counts_every_participants", 0),
        "selection.counts_every_participants",
    ),
    (
        "checks-in-hours-and-participants",
        _set("selection.counts_every_h", 36),
        "selection.counts_every_participants",
    ),
    (
        "checks-and-a-delay",
        _set("selection.counts_delay_participants", 500),
        "selection.counts_delay_participants",
    ),
    (
        "delay-zero",
        _chain(
            _set("selection.counts_every_participants", None),
            _set("selection.counts_delay_participants", 0),
        ),
        "selection.counts_delay_participants",
    ),
    ("quota-on-step-1", _set("steps.0.max_share", 0.3), "steps.0.max_share"),
    ("quota-zero", _set("steps.1.max_share", 0), "steps.1.max_share"),
    ("quota-above-one", _set("steps.1.max_share", 1.5), "steps.1.max_share"),
    (
        "quota-with-returning-counts",
        _chain(_set("steps.1.max_share", 0.3), _set("selection.later_counts", "returning")),
        "steps.1.max_share",
    ),
    ("stop-share-zero", _set("campaign.stop.share", 0), "campaign.stop.share"),
    ("stop-share-above-one", _set("campaign.stop.share", 1.2), "campaign.stop.share"),
    ("stop-share-text", _set("campaign.stop.share", "0.65"), "campaign.stop.share"),
    (
        # 7,000 x 40 target tests cannot give 6,000 videos (share 0.6) 50 each
        "stop-share-beyond-the-cap",
        _chain(_set("campaign.stop.count", 50), _set("campaign.stop.max_participants", 7000)),
        "campaign.stop.max_participants",
    ),
    ("pick-floor-zero", _set("steps.1.items.0.source.floor", 0), "steps.1.items.0.source.floor"),
    (
        "pick-demand-follows-negative",
        _set("steps.1.items.0.source.demand_follows", -0.5),
        "steps.1.items.0.source.demand_follows",
    ),
    (
        "pick-demand-follows-a-random-pick",
        _chain(
            _set("steps.1.items.0.source.pick", "random"),
            _set("steps.1.items.0.source.demand", None),
            _set("steps.1.items.0.source.floor", None),
            _set("steps.1.items.0.source.demand_follows", 0.3),
        ),
        "steps.1.items.0.source.demand_follows",
    ),
    (
        "pick-demand-follows-no-selection-demand",
        _chain(_set("selection.demand", None), _set("steps.1.items.0.source.demand_follows", 0.3)),
        "steps.1.items.0.source.demand_follows",
    ),
    (
        "pick-kept-without-rounds",
        _set("steps.1.items.0.source.counts", "kept"),
        "steps.1.items.0.source.counts_every",
    ),
    (
        "pick-rounds-without-kept",
        _set("steps.1.items.0.source.counts_every", 50),
        "steps.1.items.0.source.counts_every",
    ),
    (
        "pick-rounds-zero",
        _chain(
            _set("steps.1.items.0.source.counts", "kept"),
            _set("steps.1.items.0.source.counts_every", 0),
        ),
        "steps.1.items.0.source.counts_every",
    ),
    (
        "pick-kept-with-random-pick",
        _chain(
            _set("steps.1.items.0.source.pick", "random"),
            _set("steps.1.items.0.source.demand", None),
            _set("steps.1.items.0.source.floor", None),
            _set("steps.1.items.0.source.counts", "kept"),
            _set("steps.1.items.0.source.counts_every", 5),
        ),
        "steps.1.items.0.source.counts",
    ),
    (
        "lookahead-unknown",
        _set("steps.1.items.0.source.lookahead", "oracle"),
        "steps.1.items.0.source.lookahead",
    ),
    (
        "lookahead-with-random-pick",
        _chain(
            _set("steps.1.items.0.source.pick", "random"),
            _set("steps.1.items.0.source.demand", None),
            _set("steps.1.items.0.source.floor", None),
            _set("steps.1.items.0.source.lookahead", "deficit"),
        ),
        "steps.1.items.0.source.lookahead",
    ),
    (
        "lookahead-viewers-without-lookahead",
        _set("steps.1.items.0.source.lookahead_viewers", "expected"),
        "steps.1.items.0.source.lookahead_viewers",
    ),
    (
        "lookahead-share-without-lookahead",
        _set("steps.1.items.0.source.lookahead_share", 0.5),
        "steps.1.items.0.source.lookahead_share",
    ),
    (
        "lookahead-share-above-one",
        _chain(
            _set("steps.1.items.0.source.lookahead", "deficit"),
            _set("steps.1.items.0.source.lookahead_share", 1.5),
        ),
        "steps.1.items.0.source.lookahead_share",
    ),
    ("later-pool-below-step-1", _set("selection.later_pool", 119), "selection.later_pool"),
    (
        "later-counts-without-pool",
        _chain(_set("selection.later_pool", None), _set("selection.later_counts", "returning")),
        "selection.later_counts",
    ),
    (
        "later-counts-unknown",
        _set("selection.later_counts", "returned"),
        "selection.later_counts",
    ),
    ("later-pool-above-stimuli", _set("selection.later_pool", 10001), "selection.later_pool"),
    (
        "floor-with-random-pick",
        _chain(
            _set("steps.1.items.0.source.pick", "random"),
            _set("steps.1.items.0.source.demand", None),
        ),
        "steps.1.items.0.source.floor",
    ),
    (
        "unknown-correction-kind",
        _set("steps.0.scoring.correction.kind", "quadratic"),
        "steps.0.scoring.correction.kind",
    ),
    ("unknown-role", _set("steps.0.items.2.role", "distractor"), "steps.0.items.2.role"),
    ("unknown-source", _set("steps.1.items.0.source", "old"), "steps.1.items.0.source"),
    ("counts-not-length", _set("steps.0.length", 181), "steps.0.length"),
    (
        "later-step-wants-too-many",
        _chain(_set("steps.1.items.0.count", 70), _set("steps.1.items.1.count", 50)),
        "steps.1.items.0.count",
    ),
    ("source-not-earlier", _set("steps.1.items.0.source.step", 2), "steps.1.items.0.source.step"),
    (
        "source-role-repeated",
        _set("steps.1.items.0.source.roles", ["filler", "filler"]),
        "steps.1.items.0.source.roles",
    ),
    ("source-role-empty", _set("steps.1.items.0.source.roles", []), "steps.1.items.0.source.roles"),
    ("pool-bigger-than-stimuli", _set("selection.pool", 20_000), "selection.pool"),
    ("pool-smaller-than-step", _set("selection.pool", 100), "selection.pool"),
    (
        "too-few-stimuli",
        _chain(_set("stimuli.count", 150), _set("selection.pool", 150)),
        "stimuli.count",
    ),
    ("delay-on-first-step", _set("steps.0.delay_h", [0, 1]), "steps.0.delay_h"),
    ("later-step-without-delay", _del("steps.1.delay_h"), "steps.1.delay_h"),
    ("reversed-delay", _set("steps.1.delay_h", [72, 24]), "steps.1.delay_h"),
    ("vigilance-without-lag", _del("steps.0.items.1.repeat_lag"), "steps.0.items.1.repeat_lag"),
    ("target-never-tested", _set("steps.0.items.2.role", "target"), "steps.0.items.2.repeat_lag"),
    ("filler-with-lag", _chain(_set("steps.0.items.1.role", "filler")), "steps.0.items.1.role"),
    (
        "reference-lag-outside",
        _set("steps.0.scoring.correction.reference_lag", 150),
        "steps.0.scoring.correction.reference_lag",
    ),
    (
        "correction-without-lags",
        _set("steps.1.scoring.correction", {"kind": "linear", "reference_lag": 10}),
        "steps.1.scoring.correction.kind",
    ),
    (
        "vigilance-filter-without-vigilance",
        _set("steps.1.filters.min_vigilance_hit_rate", 0.5),
        "steps.1.filters.min_vigilance_hit_rate",
    ),
    (
        "vigilance-stop-never-triggers",
        _set("steps.0.stop_after_vigilance_misses", 21),
        "steps.0.stop_after_vigilance_misses",
    ),
    (
        "duplicate-score-column",
        _set("steps.1.scoring.column", "short-term_memorability"),
        "steps.1.scoring.column",
    ),
    ("bad-score-column", _set("steps.1.scoring.column", "long term"), "steps.1.scoring.column"),
    ("duplicate-step-name", _set("steps.1.name", "short-term"), "steps.1.name"),
    ("empty-name", _set("name", ""), "name"),
    ("no-steps", _set("steps", []), "steps"),
    ("no-items", _set("steps.0.items", []), "steps.0.items"),
    ("no-tested-target", _set("steps.1.items.0.role", "filler"), "steps.1.items.0.role"),
    (
        "stop-budget-too-small",
        _set("campaign.stop", {"kind": "min_annotations", "count": 38, "max_participants": 1000}),
        "campaign.stop.max_participants",
    ),
    (
        "stop-missing-budget",
        _set("campaign.stop", {"kind": "min_annotations", "count": 38}),
        "campaign.stop.max_participants",
    ),
]

# (id, raw bytes of the file, what the one-line error must say besides the file name)
BROKEN_FILES = [
    ("empty-file", b"", "empty"),
    ("only-whitespace", b"  \n\n\t\n", "empty"),
    ("only-comments", b"# nothing here\n", "mapping"),
    ("unclosed-bracket", b"name: [videomem\n", "not valid YAML"),
    ("bad-indentation", b"name: x\n  stimuli: 3\n bad: 4\n", "not valid YAML"),
    ("tab-indentation", b"stimuli:\n\tcount: 3\n", "not valid YAML"),
    ("binary-garbage", bytes(range(128, 256)) * 4, "not UTF-8"),
    ("nul-bytes", b"\x00\x01\x02name: x", "YAML"),
    ("python-tag", b"name: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
    ("yaml-list", b"- name: videomem\n- steps: []\n", "mapping, got list"),
    ("yaml-scalar", b"just a sentence\n", "mapping, got str"),
    ("duplicate-key", None, "given twice"),
]


@pytest.mark.parametrize("case", BROKEN_MAPPINGS, ids=[c[0] for c in BROKEN_MAPPINGS])
def test_broken_protocol_is_one_line_exit_2(case, tmp_path, capsys):
    name, mutate, field = case
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(mutate(videomem()), sort_keys=False))
    code, out, err = run_validate(capsys, path)
    assert code == 2
    assert "OK" not in out and out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert "Traceback" not in line
    assert str(path) in line
    assert re.search(rf": {re.escape(field)}[.:]", line), line  # the field, or an element of it


@pytest.mark.parametrize("case", BROKEN_FILES, ids=[c[0] for c in BROKEN_FILES])
def test_broken_file_is_one_line_exit_2(case, tmp_path, capsys):
    name, raw, needle = case
    path = tmp_path / f"{name}.yaml"
    if raw is None:  # a key given twice: YAML itself would silently keep the last one
        text = (protocol_path("videomem")).read_text()
        raw = text.replace("  count: 10000", "  count: 10000\n  count: 9000", 1).encode()
    path.write_bytes(raw)
    code, out, err = run_validate(capsys, path)
    assert (code, out) == (2, "")
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert str(path) in lines[0] and needle in lines[0], lines[0]


@pytest.mark.parametrize("kind", ["directory", "missing", "unreadable"])
def test_bad_path_is_one_line_exit_2(kind, tmp_path, capsys):
    path = tmp_path / "p.yaml"
    if kind == "directory":
        path.mkdir()
    elif kind == "unreadable":
        if os.geteuid() == 0:
            pytest.skip("root reads any file")
        shutil.copy(protocol_path("videomem"), path)
        path.chmod(0)
    code, out, err = run_validate(capsys, path)
    assert (code, out) == (2, "")
    assert len(err.splitlines()) == 1 and str(path) in err


def test_there_are_at_least_30_distinct_broken_cases():
    assert len(BROKEN_MAPPINGS) + len(BROKEN_FILES) + 3 >= 30
    assert len({c[0] for c in BROKEN_MAPPINGS + BROKEN_FILES}) == len(BROKEN_MAPPINGS) + len(
        BROKEN_FILES
    )


def test_console_script_accepts_and_rejects(tmp_path):
    exe = shutil.which("memsim") or str(Path(sys.executable).with_name("memsim"))
    good = subprocess.run(
        [exe, "validate", str(protocol_path("videomem"))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert good.returncode == 0 and good.stdout.rstrip().endswith(": OK") and good.stderr == ""
    bad = tmp_path / "bad.yaml"
    data = videomem()
    data["steps"][0]["items"][0]["repeat_lag"] = [100, 45]
    bad.write_text(yaml.safe_dump(data))
    res = subprocess.run([exe, "validate", str(bad)], capture_output=True, text=True, check=False)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr
    assert f"{bad}: steps.0.items.0.repeat_lag: minimum 100 is above maximum 45" in res.stderr


def test_error_counts_further_problems(tmp_path):
    data = videomem()
    data["stimuli"]["count"] = -1
    data["stimuli"]["gap_s"] = "x"
    with pytest.raises(UserError, match=r"stimuli\.count: .* \(and 1 more problem\)"):
        protocol_from_mapping(data, "p.yaml")


def test_yaml_anchors_and_merge_keys_are_not_duplicates(tmp_path):
    text = (protocol_path("videomem")).read_text()
    text = text.replace(
        "  arrivals: {kind: poisson, rate_per_h: 60}",
        "  arrivals: &arr {kind: poisson, rate_per_h: 60}",
    )
    text += (
        "\nx-spare: {<<: *arr, rate_per_h: 30}\n"  # a merge key overridden explicitly is legal YAML
    )
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=r"x-spare: unknown field"):  # only the unknown key is wrong
        load_protocol(path)


def test_not_a_mapping_from_code():
    with pytest.raises(UserError, match="top level must be a mapping"):
        protocol_from_mapping([1, 2])  # type: ignore[arg-type]


def test_protocol_is_frozen():
    p = protocol_from_mapping(videomem())
    with pytest.raises(ValidationError):
        p.name = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        p.steps[0].length = 3  # type: ignore[misc]


# --------------------------------------------------------------------------- arrangement
def _brute_force(length: int, groups) -> bool:
    """Every way to place the pairs; tiny cases only."""
    pairs = [(lo, hi) for c, lo, hi in groups if hi > 0 for _ in range(c)]
    occ = [False] * length

    def rec(k: int) -> bool:
        if k == len(pairs):
            return True
        lo, hi = pairs[k]
        for p in range(length):
            for d in range(lo, hi + 1):
                q = p + d
                if q < length and not occ[p] and not occ[q]:
                    occ[p] = occ[q] = True
                    if rec(k + 1):
                        return True
                    occ[p] = occ[q] = False
        return False

    return rec(0)


@st.composite
def small_layouts(draw):
    length = draw(st.integers(2, 10))
    groups, used = [], 0
    for _ in range(draw(st.integers(1, 3))):
        lo = draw(st.integers(1, length - 1))
        hi = draw(st.integers(lo, length - 1))
        c = draw(st.integers(1, 3))
        if used + 2 * c > length:
            break
        groups.append((c, lo, hi))
        used += 2 * c
    if not groups:
        groups.append((1, 1, 1))
        used = 2
    if used < length:
        groups.append((length - used, 0, 0))
    return length, groups


@settings(max_examples=300)
@given(small_layouts())
def test_arrangement_check_is_exact_on_small_steps(layout):
    length, groups = layout
    assert (find_arrangement(length, groups) is None) == _brute_force(length, groups)


def test_arrangement_that_defeats_a_greedy_placement_is_found():
    # 2 at lag 2-3 and 1 at lag 1: only (0,3) (1,2)... arrangements work
    assert find_arrangement(4, [(1, 2, 3), (1, 1, 1)]) is None
    assert find_arrangement(8, [(3, 2, 3), (1, 3, 4)]) is None


def test_impossible_arrangement_names_the_group():
    fail = find_arrangement(180, [(40, 150, 170), (20, 3, 6), (60, 0, 0)])
    assert fail is not None and fail[0] == 0 and "at least 150" in fail[1]


def test_arrangement_check_is_fast_on_the_longest_steps():
    # 16,383 pairs at lags 1-2 in the longest sequence the trial table allows
    assert find_arrangement(32_766, [(16_383, 1, 2)]) is None


# --------------------------------------------------------------------------- hypothesis
@st.composite
def feasible_protocols(draw):
    """A random protocol built around one explicit arrangement, so that one surely exists."""
    length = draw(st.integers(8, 160))
    slots = list(range(length))
    order = draw(st.permutations(slots))
    n_pairs_max = length // 2
    n_targets = draw(st.integers(1, max(1, n_pairs_max - 1)))
    n_vig = draw(st.integers(0, n_pairs_max - n_targets))
    # pair up slots: consecutive entries of a random permutation, first < second
    pairs = [tuple(sorted(order[2 * i : 2 * i + 2])) for i in range(n_targets + n_vig)]
    lags_t = [b - a for a, b in pairs[:n_targets]]
    lags_v = [b - a for a, b in pairs[n_targets:]]
    widen = draw(st.integers(0, 5))
    items = [
        {
            "role": "target",
            "count": n_targets,
            "repeat_lag": [max(1, min(lags_t) - widen), min(length - 1, max(lags_t) + widen)],
        }
    ]
    if n_vig:
        items.append(
            {"role": "vigilance", "count": n_vig, "repeat_lag": [min(lags_v), max(lags_v)]}
        )
    n_fill = length - 2 * (n_targets + n_vig)
    if n_fill:
        items.append({"role": "filler", "count": n_fill})
    items = draw(st.permutations(items))
    n_new1 = n_targets + n_vig + n_fill
    steps = [
        {
            "name": "one",
            "length": length,
            "items": list(items),
            "filters": {"min_vigilance_hit_rate": 0.5} if n_vig else {},
            "scoring": {
                "column": "short-term_memorability",
                "correction": {
                    "kind": draw(st.sampled_from(["linear", "memento_decay", "log_linear"])),
                    "reference_lag": max(lags_t),
                },
            },
        }
    ]
    n_new = n_new1
    if n_fill and draw(st.booleans()):
        k = draw(st.integers(1, n_fill))
        extra = draw(st.integers(0, 50))
        steps.append(
            {
                "name": "two",
                "length": k + extra,
                "delay_h": sorted([draw(st.floats(0, 100)), draw(st.floats(0, 100))]),
                "items": [
                    {"role": "target", "count": k, "source": {"step": 1, "roles": ["filler"]}}
                ]
                + ([{"role": "filler", "count": extra}] if extra else []),
                "scoring": {"column": "long-term_memorability"},
            }
        )
        n_new += extra
    count = draw(st.integers(n_new, n_new + 1000))
    selection = draw(
        st.sampled_from(
            [
                {"kind": "uniform"},
                {"kind": "least_annotated", "pool": draw(st.integers(n_new1, count))},
            ]
        )
    )
    stop = draw(
        st.sampled_from(
            [
                {"kind": "participants", "count": 100},
                {
                    "kind": "min_annotations",
                    "count": 5,
                    "max_participants": -(-5 * count // n_targets),
                },
            ]
        )
    )
    return {
        "name": "random",
        "stimuli": {"kind": "video", "count": count, "duration_s": 1.0, "gap_s": 0.5},
        "steps": steps,
        "selection": selection,
        "campaign": {"arrivals": {"kind": "poisson", "rate_per_h": 10.0}, "stop": stop},
    }


@settings(max_examples=150)
@given(feasible_protocols())
def test_random_feasible_protocols_validate(data):
    proto = protocol_from_mapping(copy.deepcopy(data))
    assert isinstance(proto, Protocol)
    assert protocol_from_mapping(proto.dump()) == proto


# Ways to break a valid protocol: each returns a broken copy.
def _breakers():
    def lag_reversed(d):
        g = d["steps"][0]["items"][[i["role"] for i in d["steps"][0]["items"]].index("target")]
        lo, hi = g["repeat_lag"]
        g["repeat_lag"] = [hi + 1, lo]
        return d

    def lag_too_long(d):
        g = next(i for i in d["steps"][0]["items"] if i["role"] == "target")
        g["repeat_lag"] = [g["repeat_lag"][0], d["steps"][0]["length"]]
        return d

    def length_off(d):
        d["steps"][0]["length"] += 1
        return d

    def count_negative(d):
        d["steps"][0]["items"][0]["count"] = -d["steps"][0]["items"][0]["count"]
        return d

    def typo(d):
        d["steps"][0]["lenght"] = d["steps"][0].pop("length")
        return d

    def extra_key(d):
        d["stimuli"]["colour"] = "red"
        return d

    def too_few_stimuli(d):
        d["stimuli"]["count"] = sum(g["count"] for g in d["steps"][0]["items"]) - 1
        d["selection"] = {"kind": "uniform"}
        return d

    def pool_too_big(d):
        d["selection"] = {"kind": "least_annotated", "pool": d["stimuli"]["count"] + 1}
        return d

    def wrong_type(d):
        d["stimuli"]["duration_s"] = "long"
        return d

    def missing(d):
        del d["campaign"]
        return d

    def first_delay(d):
        d["steps"][0]["delay_h"] = [1, 2]
        return d

    def reference_out(d):
        g = next(i for i in d["steps"][0]["items"] if i["role"] == "target")
        d["steps"][0]["scoring"]["correction"]["reference_lag"] = g["repeat_lag"][1] + 1
        return d

    return [
        lag_reversed,
        lag_too_long,
        length_off,
        count_negative,
        typo,
        extra_key,
        too_few_stimuli,
        pool_too_big,
        wrong_type,
        missing,
        first_delay,
        reference_out,
    ]


@settings(max_examples=150)
@given(feasible_protocols(), st.sampled_from(_breakers()))
def test_random_broken_protocols_are_rejected(data, breaker):
    broken = breaker(copy.deepcopy(data))
    with pytest.raises(UserError) as info:
        protocol_from_mapping(broken, "random.yaml")
    msg = str(info.value)
    assert msg.startswith("random.yaml: ") and "\n" not in msg


# --------------------------------------------------------------------------- JSON schema
def test_schema_covers_every_field():
    schema = json.loads(protocol_json_schema())
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert set(schema["properties"]) == set(Protocol.model_fields)
    assert set(schema["required"]) == {"name", "stimuli", "steps", "selection", "campaign"}
    defs = schema["$defs"]
    for model in ("Stimuli", "Step", "ItemGroup", "Filters", "Scoring", "Campaign"):
        assert model in defs
    kinds = json.dumps(defs)
    for kind in (
        "linear",
        "memento_decay",
        "log_linear",
        "least_annotated",
        "uniform",
        "adaptive",
        "poisson",
        "participants",
        "min_annotations",
    ):
        assert f'"{kind}"' in kinds


def test_every_variant_describes_itself():
    """The summary asks each pluggable part to describe itself: no if-chain to update per
    variant."""
    from memsim.design import protocol as P

    for union in (P.Correction, P.Selection, P.StopRule, P.Arrivals):
        (inner, *_) = union.__metadata__ and (union.__origin__,)
        members = getattr(inner, "__args__", (inner,))
        for cls in members:
            fields = {k: 10 for k, f in cls.model_fields.items() if f.is_required()}
            if "max_participants" in fields:
                fields["max_participants"] = 100
            if "rate_per_h" in fields:
                fields["rate_per_h"] = 1.0
            text = cls(**fields).describe()
            assert isinstance(text, str) and text


def test_typo_is_reported_as_unknown_key_with_a_suggestion():
    data = videomem()
    data["selection"]["pol"] = data["selection"].pop("pool")
    with pytest.raises(
        UserError, match=r"^p\.yaml: selection\.pol: unknown field \(did you mean 'pool'\?\)"
    ):
        protocol_from_mapping(data, "p.yaml")


def test_quoted_number_gets_a_hint():
    data = videomem()
    data["stimuli"]["count"] = "10000"
    with pytest.raises(
        UserError, match=r"stimuli\.count: .*got str '10000' \(write the number without quotes\)"
    ):
        protocol_from_mapping(data, "p.yaml")


def test_docs_describe_every_field():
    """docs/protocols.md names every field of every model of the schema."""
    from memsim.design import protocol as P

    doc = (repository_root() / "docs" / "protocols.md").read_text()
    models = [
        P.Protocol,
        P.Stimuli,
        P.Step,
        P.ItemGroup,
        P.FromStep,
        P.Filters,
        P.Scoring,
        P.Campaign,
        P.TopUp,
        P.LeastAnnotated,
        P.UniformSelection,
        P.AdaptiveSelection,
        P.NoCorrection,
        P.LinearCorrection,
        P.MementoDecay,
        P.LogLinearDecay,
        P.PoissonArrivals,
        P.StopAfterParticipants,
        P.StopAtMinAnnotations,
    ]
    for model in models:
        for name in model.model_fields:
            assert f"`{name}`" in doc, f"{model.__name__}.{name} is not documented"
        kind = model.model_fields.get("kind")
        if kind is not None and isinstance(kind.default, str):  # a variant of a pluggable part
            assert f"`{kind.default}`" in doc, f"variant {kind.default} is not documented"


@pytest.mark.parametrize(
    "groups, ok",
    [
        ([(30, ["filler"]), (40, ["filler", "target"])], True),  # 30 fillers + 40 of 70 remaining
        ([(50, ["filler"]), (20, ["filler"])], False),  # each fits alone, together 70 > 60 fillers
        ([(61, ["filler"]), (9, ["target"])], False),
        ([(60, ["filler"]), (40, ["target"])], True),  # exactly everything
        ([(60, ["filler"]), (41, ["target", "filler"])], False),
    ],
)
def test_later_step_demands_meet_halls_condition(groups, ok):
    data = videomem()
    items = [{"role": "target", "count": c, "source": {"step": 1, "roles": r}} for c, r in groups]
    data["steps"][1]["items"] = items
    data["steps"][1]["length"] = sum(c for c, _ in groups)
    if ok:
        protocol_from_mapping(data)
    else:
        with pytest.raises(
            UserError, match=r"steps\.1\.items\.\d+\.count: needs \d+ items from step 1"
        ):
            protocol_from_mapping(data)
