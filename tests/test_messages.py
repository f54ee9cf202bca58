"""What users see around the results: messages that help, tables that fit, help for every
option. One test per case of the issue "what users see" (several files at once for
``validate``; "did you mean" for any unknown field; ``score`` refusing a table its protocol
could not have produced; n/a rows not counted; the parameter set named; report tables at 80
columns; bench goals marked; help for every option)."""

from __future__ import annotations

import argparse
import io

import pandas as pd
import pytest
import yaml

from memsim import api, cli
from memsim.design.protocol import load_protocol, protocol_from_mapping
from memsim.design.trials import check_against_protocol
from memsim.errors import UserError
from memsim.resources import params_path, protocol_path, shipped_protocols, targets_path


def _mapping(name: str) -> dict:
    return yaml.safe_load(protocol_path(name).read_text())


# --------------------------------------------------------------------------- validate
def test_validate_takes_several_files_and_checks_them_all(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\n")
    files = [str(protocol_path("lamem")), str(bad), "videomem"]
    assert cli.main(["validate", *files]) == 2
    out, err = capsys.readouterr()
    assert f"{protocol_path('lamem')}: OK" in out and "videomem: OK" in out
    errors = [ln for ln in err.splitlines() if "error" in ln]
    assert len(errors) == 1 and str(bad) in errors[0]
    assert "2 of 3 protocols valid" in err
    assert cli.main(["validate", *(str(protocol_path(n)) for n in shipped_protocols())]) == 0


# --------------------------------------------------------------------------- did you mean
@pytest.mark.parametrize(
    ("where", "typo", "meant"),
    [
        (("steps", 0, "filters"), "min_vigilence_hit_rate", "min_vigilance_hit_rate"),  # optional
        (("steps", 0, "scoring", "correction"), "refrence_lag", "reference_lag"),  # in a union
        (("steps", 1, "items", 0, "source"), "rols", "roles"),  # a tagged source
        (("selection", "demand"), "shar", "share"),
        ((), "descripton", "description"),
    ],
)
def test_unknown_field_suggests_the_closest_valid_name(where, typo, meant):
    data = _mapping("videomem")
    node = data
    for part in where:
        node = node[part]
    node[typo] = 1
    with pytest.raises(UserError, match=rf"{typo}: unknown field \(did you mean '{meant}'"):
        protocol_from_mapping(data, "p.yaml")


def test_unknown_field_far_from_any_lists_the_valid_ones():
    data = _mapping("videomem")
    data["stimuli"]["colour"] = "red"
    with pytest.raises(UserError, match=r"stimuli\.colour: unknown field \(valid here: kind, "):
        protocol_from_mapping(data, "p.yaml")


def test_did_you_mean_in_parameter_and_study_files(tmp_path):
    from memsim.sim.params import params_from_mapping
    from memsim.study.sweep import load_study

    params = yaml.safe_load(params_path("videomem").read_text())
    params["participants"]["carless_share"] = 0.1
    with pytest.raises(UserError, match=r"did you mean 'careless_share'"):
        params_from_mapping(params, "p.yaml")
    study = tmp_path / "s.yaml"
    study.write_text("name: s\nprotocol: videomem.yaml\nreplicate: 2\nstatistics: [participants]\n")
    with pytest.raises(UserError, match=r"replicate: unknown field \(did you mean 'replicates'"):
        load_study(study)


# --------------------------------------------------------------------------- score check
@pytest.fixture(scope="module")
def tables():
    """Small simulated trial tables of every shipped protocol."""
    from memsim.api import load_params, simulate

    out = {}
    for name in shipped_protocols():
        proto = load_protocol(protocol_path(name))
        crowd = name if params_path(name) else "videomem"  # test data: any crowd will do
        out[name] = (proto, simulate(proto, load_params(crowd), seed=1, scale=0.02))
    return out


def test_every_shipped_protocol_accepts_its_own_simulated_table(tables):
    for _, (proto, sim) in tables.items():
        check_against_protocol(sim.trials, proto)


def test_score_refuses_a_table_of_another_protocol(tables, tmp_path, capsys):
    trials = tmp_path / "memento.parquet"
    tables["memento10k"][1].trials.to_parquet(trials)
    out = tmp_path / "scores.csv"
    args = ["score", str(trials), "--protocol", "videomem", "--out", str(out)]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "protocol 'videomem' has step 2 (long-term), but the table has no row for it" in err
    assert "--no-check" in err and not out.exists()
    assert cli.main([*args, "--no-check"]) == 0 and out.exists()


def test_check_names_lags_outside_the_protocols_range(tables):
    proto, sim = tables["videomem"]
    narrower = proto.updated({"steps.0.items.0.repeat_lag": [60, 100]})
    with pytest.raises(UserError, match=r"step 1 \(short-term\): .* target repeats have lags "):
        check_against_protocol(sim.trials, narrower)
    # the shipped protocol's pilot repeats its targets at 80-120: those lags are the protocol's
    both = r"outside the protocol's 60-100 or 80-120 \(the table's: 45-"
    with pytest.raises(UserError, match=both):
        check_against_protocol(sim.trials, narrower)
    pilot_ids = len(sim.participants) - sim.pilot.participants  # the pilot's players come last
    campaign = sim.trials[sim.trials["participant"] < pilot_ids]
    alone = narrower.updated({"campaign.pilot": None})
    with pytest.raises(UserError, match=r"outside the protocol's 60-100 \(the table's: 45-"):
        check_against_protocol(campaign, alone)


def test_check_names_roles_and_positions(tables):
    proto, sim = tables["isola2011"]
    trials = sim.trials.copy()
    trials["position"] = trials["position"].astype("int64") + proto.steps[0].length
    with pytest.raises(UserError, match=r"positions go up to \d+, but the protocol's sequence"):
        check_against_protocol(trials, proto)
    items = [g.model_dump() for g in proto.steps[0].items if g.role != "vigilance"]
    n_vig = sum(g.count for g in proto.steps[0].items if g.role == "vigilance")
    no_vigilance = proto.updated(
        {
            "steps.0.items": [*items, {"role": "filler", "count": 2 * n_vig}],
            "steps.0.filters.min_vigilance_hit_rate": None,
            "steps.0.stop_after_vigilance_misses": None,
        }
    )
    with pytest.raises(UserError, match=r"the table has role 'vigilance', but the protocol's"):
        check_against_protocol(sim.trials, no_vigilance)


# --------------------------------------------------------------------------- n/a rows
def test_fit_report_does_not_count_rows_without_data():
    from memsim.study.fit_report import fitted_counts

    table = pd.DataFrame(
        {
            "kind": ["fit", "fit", "fit", "report"],
            "within": [True, False, False, False],
            "status": ["ok", "off", "n/a", "off"],
        }
    )
    assert fitted_counts(table) == (1, 2, 1)


def _crowdless_protocol(tmp_path):
    """isola2011 renamed: a protocol without a parameter set of its own."""
    data = yaml.safe_load(protocol_path("isola2011").read_text())
    data["name"] = "crowdless"
    path = tmp_path / "crowdless.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_protocol_without_a_parameter_set_refuses_to_run(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", str(_crowdless_protocol(tmp_path)), "--scale", "0.02", "--out", str(out)]
    assert cli.main([*args, "--no-figures", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "'crowdless' has no parameter set of its own" in err
    assert "--params videomem" in err and not out.exists()
    with pytest.raises(UserError, match="no parameter set of its own"):
        api.params_for(load_protocol(tmp_path / "crowdless.yaml"))


def test_calibrate_names_its_own_option_when_the_protocol_has_no_set(tmp_path, capsys):
    args = ["calibrate", str(_crowdless_protocol(tmp_path)), "--out", str(tmp_path / "p.yaml")]
    args += ["--targets", str(targets_path("videomem"))]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pass --start FILE" in err


def test_run_names_the_parameter_set_and_why(tmp_path, capsys):
    out = tmp_path / "run"
    proto = _crowdless_protocol(tmp_path)
    args = ["run", str(proto), "--params", "videomem", "--scale", "0.02", "--out", str(out)]
    assert cli.main([*args, "--no-figures", "--quiet"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("parameters: videomem (")
    assert first.endswith("crowdless runs with another study's crowd)")
    args = ["run", "videomem", "--scale", "0.01", "--out", str(tmp_path / "v")]
    assert cli.main([*args, "--no-figures", "--quiet"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "calibration/videomem.yaml: the protocol's own calibrated set)" in first


def test_params_help_says_what_the_default_really_is(capsys):
    assert cli.main(["run", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "a protocol without one needs --params" in text


# --------------------------------------------------------------------------- tables
def _report(n_cells: int, axes: dict) -> object:
    from memsim.study.report import SweepReport

    stats = [
        "human_consistency.step1.mean",
        "annotation_consistency.step1.at_mean_annotations",
        "truth.step1.spearman",
        "annotations_per_video.step1.mean",
        "participant_minutes",
    ]
    rows = []
    for cell in range(n_cells):
        row = {"cell": cell, **{a: v[cell % len(v)] for a, v in axes.items()}}
        for i, s in enumerate(stats):
            row[f"{s}_mean"], row[f"{s}_sd"] = 0.1 * (i + 1) * 10 ** (i // 3 * 2), 0.012
        rows.append(row)
    return SweepReport(
        summary=pd.DataFrame(rows),
        frontiers={},
        study={"name": "demo", "replicates": 3},
        axes=list(axes),
        statistics=stats,
        written=[],
    )


@pytest.mark.parametrize(
    "report",
    [
        _report(3, {"annotations_target": [5, 38, 320]}),
        _report(
            12,
            {
                "policy": ['{"kind":"least_annotated","pool":1000}', '{"kind":"uniform"}'],
                "budget": [3000, 6000, 10150],
            },
        ),
    ],
    ids=["few cells", "many cells"],
)
def test_report_table_fits_80_columns(report):
    from rich.console import Console

    from memsim.cli.sweep import print_report

    buf = io.StringIO()
    print_report(report, console=Console(file=buf, width=80))
    text = buf.getvalue()
    assert max(len(ln) for ln in text.splitlines()) <= 80
    assert "…" not in text and '{"' not in text and "_mean" not in text.split("[1]")[0]
    assert "human consistency, step 1" in text


def test_bench_marks_goals_met_and_missed():
    from rich.console import Console

    from memsim.cli.format import print_bench

    r = {
        "threads": 2,
        "cpus": 2,
        "campaign": {
            "participants": 10150,
            "trials": 2_235_840,
            "simulate_s": 2.1,
            "simulate_and_write_s": 2.6,
            "peak_rss_mb": 1200.0,
            "scale": 1,
        },
        "kernel": {
            "trials_per_s_1_thread": 60e6,
            "trials_per_s_all_threads": 100e6,
            "speedup_all_threads": 1.66,
            "reference_trials_per_s": 30e3,
            "kernel_vs_reference": 2000,
        },
        "sequences": {"per_s_1_thread": 150_000, "ratio": 90},
    }
    buf = io.StringIO()
    print_bench(r, console=Console(file=buf, width=100))
    text = buf.getvalue()
    assert text.count(" met ") + text.count(" met│") >= 1 and "missed" in text
    assert "goals met: 4 of 6; missed: peak memory (process); kernel speed-up on 2 threads" in (
        " ".join(text.split())
    )


# --------------------------------------------------------------------------- help
def _actions(parser, name="memsim"):
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for sub, p in a.choices.items():
                yield from _actions(p, f"{name} {sub}")
        elif not isinstance(a, (argparse._HelpAction, argparse._VersionAction)):
            yield name, a, parser


def test_every_option_has_help_and_every_command_a_description():
    missing = [
        f"{name}: {a.option_strings or a.dest}"
        for name, a, _ in _actions(cli.build_parser())
        if not (a.help or "").strip()
    ]
    assert not missing, missing
    parsers = {name: p for name, _, p in _actions(cli.build_parser())}
    undescribed = [n for n, p in parsers.items() if not (p.description or "").strip()]
    assert not undescribed, undescribed
