"""``rolloutctl plan validate --traffic``: each stage's smallest detectable regression, and
``status``'s figure for the running stage."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from controller.core.reading.stage_power import running_lines
from controller.core.reading.views import RolloutStatus
from controller.ctl.app import main
from controller.ctl.exits import EXIT_CONFIG, EXIT_USAGE
from controller.ctl.looking.views import status_detail
from controller.ctl.operate.plan_power import rate
from controller.ctl.report.rollout_traffic import flag_traffic
from controller.ctl.usage import UsageError

PLANS = Path(__file__).resolve().parents[3] / "ops" / "plans"
DEFAULT = str(PLANS / "default.yaml")
STAGE_LINE = re.compile(
    r"^    stage 1 \(1%, [^)]+\): error rate detectable from \+[0-9,]+% \(80% power\);"
    r" p99 latency from \+[0-9,]+%; a new failure from [0-9.]+% of treatment's requests$"
)


def test_each_compared_stage_gets_a_line_with_every_guardrail(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["plan", "validate", "--traffic", "200/s", DEFAULT]) == 0
    out = capsys.readouterr().out.splitlines()
    assert any(STAGE_LINE.match(line) for line in out), out
    assert sum(line.startswith("    stage ") for line in out) == 4  # 100% has no control
    assert "design effect 2 assumed, a conservative default" in "\n".join(out)


def test_more_traffic_detects_smaller_regressions(capsys: pytest.CaptureFixture[str]) -> None:
    figures = []
    for traffic in ("20/s", "2000/s"):
        assert main(["plan", "validate", "--json", "--traffic", traffic, DEFAULT]) == 0
        shown = json.loads(capsys.readouterr().out)
        figures.append(shown["power"]["stages"][0]["guardrails"]["error_rate"]["effect"])
    assert figures[0] > figures[1] > 0


@pytest.mark.parametrize(
    ("strict", "code", "severity"), [([], 0, "warning"), (["--strict"], EXIT_CONFIG, "error")]
)
def test_a_stage_that_cannot_catch_less_than_the_bound_warns_or_fails(
    strict: list[str], code: int, severity: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["plan", "validate", "--json", "--traffic", "5/s", "--max-detectable", "100%"]
    assert main([*args, *strict, DEFAULT]) == code
    shown = json.loads(capsys.readouterr().out)
    flagged = [f for f in shown["findings"] if f["field"] == "stages[0]"]
    assert [f["severity"] for f in flagged] == [severity]
    assert "at this traffic (--max-detectable 100%)" in flagged[0]["message"]


def test_a_stage_that_catches_less_than_the_bound_passes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["--traffic", "1e6/min", "--max-detectable", "500%", "--strict", DEFAULT]
    assert main(["plan", "validate", "--json", *args]) == 0
    assert not json.loads(capsys.readouterr().out)["findings"]


@pytest.mark.parametrize(
    ("text", "per_s"), [("200/s", 200.0), ("900/min", 15.0), ("7200/h", 2.0), ("3", 3.0)]
)
def test_traffic_is_read_per_second_minute_or_hour(text: str, per_s: float) -> None:
    assert rate(text) == per_s


@pytest.mark.parametrize("bad", ["fast", "-2/s", "0/s", "200/day"])
def test_unreadable_traffic_is_refused(bad: str) -> None:
    with pytest.raises(UsageError, match="--traffic"):
        rate(bad)


def test_unreadable_traffic_exits_as_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "validate", "--traffic", "lots", DEFAULT]) == EXIT_USAGE
    assert "--traffic 'lots'" in capsys.readouterr().err


def _status(**over: Any) -> RolloutStatus:
    test = {
        "delta": 0.001, "variance": 4e-6, "n": 20_000, "half_width": 0.006,
        "lower": -0.005, "upper": 0.007, "regressed": False,
        "direction": "lower_is_better", "tolerance": 0.0, "alpha": 0.00625,
        "n_tune": 5000, "p_value": 1.0, "unit_of_analysis": "unit",
        "design_effect": 3.2, "widening": 1.8,
    }  # fmt: skip
    base: dict[str, Any] = {
        "flag": "checkout", "rollout_id": "r1", "plan": "default", "phase": "running",
        "stage": 1, "stages": 5, "percent": 5.0, "flag_version": 3,
        "time_in_stage_s": 600.0, "min_duration_s": 3600.0, "min_units_per_arm": 100,
        "verdict": "hold", "verdict_reason": "minimum stage time not reached",
        "evidence": {
            "arms": {
                "treatment": {"units": 200, "exposures": 1000, "requests": 1000, "errors": 10},
                "control": {"units": 3800, "exposures": 19000, "requests": 19000,
                            "errors": 190, "conversions": 950},
            },
            "guardrails": {"error_rate": test, "latency_p99": "insufficient data"},
            "latency": {"control": {"p50": 80.0, "p95": 180.0, "p99": 240.0, "count": 19000}},
        },
    }  # fmt: skip
    return RolloutStatus.model_validate({**base, **over})


def test_a_flags_rollout_gives_its_traffic_bases_and_design_effects() -> None:
    given, design = flag_traffic(_status())
    assert given["requests_per_s"] == pytest.approx(20_000 / 600)
    assert given["requests_per_unit"] == pytest.approx(5.0)
    assert given["error_rate"] == pytest.approx(0.01)
    assert given["conversion_rate"] == pytest.approx(0.05)
    assert given["latency_median_ms"] == 80.0
    assert given["design_effect"] == design["error_rate"] == 3.2


def test_a_rollout_with_no_traffic_gives_none() -> None:
    given, design = flag_traffic(_status(evidence={}))
    assert "requests_per_s" not in given
    assert design == {}


def test_status_shows_what_the_running_stage_detects_and_how_long_it_needs() -> None:
    lines = running_lines(_status(), 0.5)
    assert len(lines) == 1  # the p99 test has no figures yet
    assert re.match(
        r"^error rate: detectable from \+\d+% by the stage's minimum \(80% power\);"
        r" \+50% (now|in .+ more)$",
        lines[0],
    ), lines
    text = status_detail(_status(), effect=0.5)
    assert "  power: error rate: detectable from +" in text


def test_status_says_a_tiny_effect_needs_more_than_the_preview_looks_ahead() -> None:
    assert running_lines(_status(), 0.0001)[0].endswith("+0.01% in over 30 days")


def test_status_shows_what_the_running_stage_detects_of_a_count_per_exposure() -> None:
    evidence: Any = copy.deepcopy(_status().evidence.wire())
    test = {**evidence["guardrails"]["error_rate"], "delta": 0.0005, "variance": 2e-6}
    evidence["guardrails"] = {"crash_count": test, "exception_count": test}
    evidence["arms"]["control"]["crashes"] = 380  # 2% of control's exposures
    [line] = running_lines(_status(evidence=evidence), 0.5)  # no exception: no base
    assert re.match(
        r"^crashes per exposure: detectable from \+\d+% by the stage's minimum", line
    ), line


def test_a_test_from_an_older_gate_has_no_figure() -> None:
    older = {"delta": 0.001, "lower": -0.01, "upper": 0.02, "tolerance": 0.0}
    evidence = {**_status().evidence.wire(), "guardrails": {"error_rate": older}}
    assert running_lines(_status(evidence=evidence)) == []


def test_a_stage_with_few_units_in_its_smaller_arm_says_its_figure_is_optimistic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "short.yaml"
    plan.write_text(
        "stages:\n"
        "  - {percent: 2, min_duration: 10m, min_units_per_arm: 0}\n"
        "  - {percent: 50, min_duration: 1h, min_units_per_arm: 0}\n"
        "  - {percent: 100, min_duration: 0s, min_units_per_arm: 0}\n"
        "guardrails:\n  - {metric: error_rate}\n",
        encoding="utf-8",
    )
    args = ["--traffic", "30/s", "--requests-per-unit", "20", "--design-effect", "1"]
    assert main(["plan", "validate", *args, str(plan)]) == 0
    out = capsys.readouterr().out.splitlines()
    first = next(line for line in out if line.startswith("    stage 1 "))
    assert first.endswith(
        "(about 18 units in the smaller arm: optimistic where a few units send most requests;"
        " give --heavy-units)"
    )
    second = next(line for line in out if line.startswith("    stage 2 "))
    assert "optimistic" not in second
    assert main(["plan", "validate", *args, "--heavy-units", "1%:1000", str(plan)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "1.00% of units sending 1,000 each" in out[1]
    mixed = next(line for line in out if line.startswith("    stage 1 "))
    assert "optimistic" not in mixed
    assert _figure(mixed) > _figure(first)  # most such arms hold no heavy unit


def _figure(line: str) -> int:
    found = re.search(r"detectable from \+([0-9,]+)%", line)
    assert found, line
    return int(found.group(1).replace(",", ""))


@pytest.mark.parametrize(
    ("option", "text", "given"),
    [
        ("--heavy-units", "1%:1000", {"heavy_share": 0.01, "heavy_requests": 1000.0}),
        ("--heavy-units", "0.002:400", {"heavy_share": 0.002, "heavy_requests": 400.0}),
        ("--failing-units", "2%:50%", {"failing_share": 0.02, "failing_rate": 0.5}),
    ],
)
def test_unlike_units_are_read_as_a_share_and_a_value(
    option: str, text: str, given: dict[str, float], capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["plan", "validate", "--json", "--traffic", "200/s", "--error-rate", "5%"]
    args += ["--requests-per-unit", "20"]
    assert main([*args, option, text, DEFAULT]) == 0
    traffic = json.loads(capsys.readouterr().out)["power"]["traffic"]
    assert {key: traffic[key] for key in given} == pytest.approx(given)


@pytest.mark.parametrize(
    ("option", "text", "said"),
    [
        ("--heavy-units", "1%", "give a share of units and a value: 1%:1000"),
        ("--heavy-units", "lots:1000", "give a share of units and a value"),
        ("--heavy-units", "100%:1000", "the share of units must be below 100%"),
        ("--heavy-units", "1%:2", "traffic out of range: heavy_requests"),
        ("--failing-units", "2%:abc", "give a share of units and a value: 2%:50%"),
        ("--failing-units", "90%:50%", "failing_share and failing_rate exceed error_rate"),
    ],
)
def test_unreadable_unlike_units_are_a_usage_error(
    option: str, text: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plan", "validate", "--traffic", "200/s", option, text, DEFAULT]) == EXIT_USAGE
    assert said in capsys.readouterr().err


VALUE_PLAN = """\
stages:
  - {percent: 5, min_duration: 1h, min_units_per_arm: 0}
  - {percent: 100, min_duration: 0s, min_units_per_arm: 0}
guardrails: [{metric: conversion_value}]
"""


def test_a_conversion_value_is_previewed_from_the_spread_given_or_says_what_it_assumed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(VALUE_PLAN, encoding="utf-8")
    args = ["plan", "validate", "--traffic", "200/s", "--design-effect", "1"]
    assert main([*args, str(path)]) == 0
    out = capsys.readouterr().out
    assert "conversion values of mean 1 and standard deviation 1 times it assumed" in out
    assert main([*args, "--json", str(path)]) == 0
    said = json.loads(capsys.readouterr().out)["power"]["traffic"]["assumed"]
    assert any("give --conversion-value" in each for each in said)
    assumed = re.search(r"conversion value detectable from -([0-9]+)%", out)
    assert assumed, out
    assert main([*args, "--json", "--conversion-value", "40/2.5", str(path)]) == 0
    power = json.loads(capsys.readouterr().out)["power"]
    assert (power["traffic"]["value_mean"], power["traffic"]["value_cv"]) == (40.0, 2.5)
    assert not any("conversion values" in said for said in power["traffic"]["assumed"])
    found = power["stages"][0]["guardrails"]["conversion_value"]
    assert found["base"] == 40.0
    assert found["effect"] * 100 > 2 * int(assumed.group(1))  # 2.5 times the spread


@pytest.mark.parametrize(
    ("text", "said"),
    [("40", "give two numbers: 40/2.5"), ("40/0", "both must be above 0"), ("x/1", "two")],
)
def test_an_unreadable_conversion_value_is_a_usage_error(
    text: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["plan", "validate", "--traffic", "200/s", "--conversion-value", text, DEFAULT]
    assert main(args) == EXIT_USAGE
    assert said in capsys.readouterr().err


RING_PLAN = """\
name: staff-first
audience: 'country == "TH"'
stages:
  - {audience: 'user_id in segment("staff")', percent: 100, min_duration: 5m}
  - {percent: 25, min_duration: 30m}
  - {percent: 100, min_duration: 10m}
guardrails: [{metric: error_rate}]
limits: {error_rate: 0.05, latency_p95_ms: 200%s}
"""


@pytest.mark.parametrize(
    ("proof", "said"),
    [
        ("", r"limits\.require_proof would need \d+ s at a 1\.0% base"),
        (", require_proof: true", r"shown under after \d+ s at a 1\.0% base: held within its"),
    ],
)
def test_a_limit_stage_says_what_it_catches_and_what_proof_costs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], proof: str, said: str
) -> None:
    path = tmp_path / "ring.yaml"
    path.write_text(RING_PLAN % proof)
    assert main(["plan", "validate", "--traffic", "12.5/s", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    (staff,) = [line for line in out if line.startswith("    stage 1 (100%, 5 min, no control)")]
    assert re.search(r"error rate against 5\.0%: caught above \d\.\d% \(3,750 requests\)", staff)
    assert re.search(said, staff), staff
    # p95 at the default 100/300 ms latency: 8% of requests slower than 200 ms, over 5%
    slow = "share of requests slower than 200 ms against 5.0%"
    assert slow in staff
    never = "never shown under at a 8.3% base" + (": the stage would never advance" * bool(proof))
    assert staff.endswith(never)


def test_the_json_preview_gives_each_limit_stage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ring.yaml"
    path.write_text(RING_PLAN % ", require_proof: true")
    assert main(["plan", "validate", "--json", "--traffic", "12.5/s", str(path)]) == 0
    stages = json.loads(capsys.readouterr().out)["power"]["limit_stages"]
    assert [s["stage"] for s in stages] == [0, 2]
    staff = stages[0]
    assert (staff["seconds"], staff["requests"], staff["require_proof"]) == (300.0, 3750.0, True)
    error_rate = staff["limits"]["error_rate"]
    assert (error_rate["ceiling"], error_rate["base"]) == (0.05, 0.01)
    assert 0 < error_rate["proof_seconds"] < 300
    assert staff["limits"]["latency_p95_ms"]["proof_seconds"] is None


NEW_FAILURES_PLAN = (
    "stages:\n"
    "  - {percent: 1, min_duration: 30m, min_units_per_arm: 0}\n"
    "  - {percent: 5, min_duration: 1h, min_units_per_arm: 0}\n"
    "  - {percent: 25, min_duration: 2h, min_units_per_arm: 0}\n"
    "  - {percent: 50, min_duration: 4h, min_units_per_arm: 0}\n"
    "  - {percent: 100, min_duration: 0s, min_units_per_arm: 0}\n"
    "guardrails:\n  - {metric: error_rate}\n  - {metric: new_failures}\n"
)
NEW_FAILURE_PART = re.compile(r"; a new failure from ([0-9.]+)% of treatment's requests")


@pytest.mark.parametrize(
    ("traffic", "said"),
    [
        # 10 requests per unit and a design effect of 2 assumed: the 1% stage catches a new
        # failure from 1.5% of its requests, the 5% stage from 0.15%
        ("200/s", "from stage 2"),
        ("2/s", "from stage 4"),  # 14,400 requests in treatment: from 0.35%
        ("0.5/s", "not by this plan"),  # 3,600: from 2%
    ],
)
def test_a_plan_with_new_failures_says_what_each_stage_and_the_plan_catch(
    traffic: str, said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "new.yaml"
    plan.write_text(NEW_FAILURES_PLAN, encoding="utf-8")
    assert main(["plan", "validate", "--traffic", traffic, str(plan)]) == 0
    out = capsys.readouterr().out.splitlines()
    stages = [line for line in out if line.startswith("    stage ")]
    assert len(stages) == 4
    figures = [float(m.group(1)) for line in stages if (m := NEW_FAILURE_PART.search(line))]
    assert len(figures) >= 2
    assert figures == sorted(figures, reverse=True)  # each stage sees more than the last
    assert out[-1] == f"    a new failure on 0.5% of requests: {said}"


def test_the_json_preview_gives_the_new_failures_figures_and_first_stage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "new.yaml"
    plan.write_text(NEW_FAILURES_PLAN, encoding="utf-8")
    assert main(["plan", "validate", "--json", "--traffic", "200/s", str(plan)]) == 0
    power = json.loads(capsys.readouterr().out)["power"]
    assert power["new_failure"] == {"rate": 0.005, "first_stage": 1}
    figures = [s["guardrails"]["new_failures"] for s in power["stages"]]
    assert [f["effect_is"] for f in figures] == ["share_of_treatment_requests"] * 4
    assert figures[0]["effect"] > 0.005 > figures[1]["effect"] > 0
    assert power["stages"][0]["guardrails"]["error_rate"]["effect_is"] == "relative"


def test_a_plan_without_new_failures_has_no_new_failure_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "errors.yaml"
    plan.write_text(NEW_FAILURES_PLAN.replace("  - {metric: new_failures}\n", ""), "utf-8")
    assert main(["plan", "validate", "--traffic", "200/s", str(plan)]) == 0
    out = capsys.readouterr().out
    assert "error rate detectable" in out
    assert "new failure" not in out
    assert main(["plan", "validate", "--json", "--traffic", "200/s", str(plan)]) == 0
    assert json.loads(capsys.readouterr().out)["power"]["new_failure"] is None
