"""Plans that cannot work are errors, risky ones warnings, each naming its field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from controller.core.common.errors import ConfigError
from controller.core.drafting.templates import TEMPLATES
from controller.core.machine import commands
from controller.core.rollouts.plan import DEFAULT_PLAN, Plan, load_plan, parse_plan
from controller.core.rollouts.planlint import Finding, errors, lint
from controller.core.trust.signing import generate_key
from controller.ctl.app import main
from controller.ctl.exits import EXIT_CONFIG
from controller.ctl.operate.commands import write_private_key

ROOT = Path(__file__).resolve().parents[4]
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def plan(*percents: float, last_units: int = 0, **top: Any) -> dict[str, Any]:
    """A plan over ``percents``, an error-rate guardrail, the 100% stage waiting for nobody."""
    stages: list[dict[str, Any]] = [{"percent": p} for p in percents]
    if percents[-1] == 100:
        stages[-1]["min_units_per_arm"] = last_units
    return {"stages": stages, "guardrails": [{"metric": "error_rate"}], **top}


def found(data: dict[str, Any]) -> list[tuple[str, str]]:
    return [(f.severity, f.field) for f in lint(parse_plan(data))]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (plan(1, 5, 25, 50, 100), []),
        # the README's Unleash example as it was: the 100% stage kept the default 100 units
        (
            plan(1, 5, 25, 50, 100, last_units=100),
            [("error", "stages[4].min_units_per_arm")],
        ),
        (plan(1, 100), [("warning", "stages[1].percent")]),  # from 1% straight to everyone
        (plan(5, 10), [("warning", "stages[1].percent")]),  # completes at 100% after 10%
        (plan(100), [("warning", "stages[0].percent")]),  # never a control arm
        (plan(25, 100), []),
        (plan(50), [("warning", "stages[0].percent")]),  # completes: everyone, not 50%
        (plan(5, 25, 50), [("warning", "stages[2].percent")]),
        (plan(5, 99.5), [("warning", "stages[1].percent")]),
        (
            {**plan(1, 25, 100), "guardrails": [{"metric": "error_rate", "dry_run": True}]},
            [("warning", "guardrails[*].dry_run")],
        ),
        (
            {
                **plan(1, 25, 100),
                "guardrails": [
                    {"metric": "error_rate", "dry_run": True},
                    {"metric": "latency_p99", "tolerance": 0.1, "relative": True},
                ],
            },
            [],
        ),
        ({**plan(1, 25, 100), "guardrails": []}, [("warning", "guardrails")]),
        (plan(1, 25, 100, min_metric_events=10**9), [("error", "min_metric_events")]),
        (plan(1, 25, 100, min_metric_events=500_000), [("warning", "min_metric_events")]),
        (plan(1, 25, 100, min_metric_events=10_000_000), [("warning", "min_metric_events")]),
        (plan(1, 25, 100, alpha=1e-300), [("error", "alpha")]),
        # a unit floor below the event floor: the stage holds past it, untested
        (
            {**plan(1, 25, 100), "stages": [{"percent": 1, "min_units_per_arm": 100}]},
            [("warning", "stages[0].min_units_per_arm"), ("warning", "stages[0].percent")],
        ),
        (
            {**plan(25, 100), "stages": [{"percent": 25, "min_units_per_arm": 99}]},
            [("warning", "stages[0].min_units_per_arm"), ("warning", "stages[0].percent")],
        ),
        # no unit floor at all is a choice (a stage moved by commands), not a slip
        (
            {**plan(25, 100), "stages": [{"percent": 25, "min_units_per_arm": 0}]},
            [("warning", "stages[0].percent")],
        ),
        (
            {
                **plan(25, 100, min_metric_events=50),
                "stages": [{"percent": 25, "min_units_per_arm": 50}, {"percent": 100}],
            },
            [("error", "stages[1].min_units_per_arm")],
        ),
        (
            {
                **plan(25, 100),
                "stages": [{"percent": 25, "min_units_per_arm": 10}],
                "guardrails": [{"metric": "error_rate", "dry_run": True}],
            },
            [("warning", "stages[0].percent"), ("warning", "guardrails[*].dry_run")],
        ),
        (plan(1, 25, 100, alpha=1e-4), [("warning", "alpha")]),
        (plan(1, 25, 100, alpha=0.001), []),
        (plan(1, 25, 100, srm_p_threshold=1e-12), [("error", "srm_p_threshold")]),
        (plan(1, 25, 100, srm_p_threshold=1e-6), [("warning", "srm_p_threshold")]),
        (
            plan(1, 100, last_units=10, alpha=1e-4, srm_p_threshold=1e-200),
            [
                ("error", "stages[1].min_units_per_arm"),
                ("error", "srm_p_threshold"),
                ("warning", "stages[1].percent"),
                ("warning", "alpha"),
            ],
        ),
    ],
)
def test_findings_name_the_field_errors_first(
    data: dict[str, Any], expected: list[tuple[str, str]]
) -> None:
    assert found(data) == expected


def test_a_plan_ending_below_100_says_completion_serves_everyone() -> None:
    (finding,) = lint(parse_plan(plan(5, 50)))
    assert finding.field == "stages[1].percent"
    assert finding.message.startswith("the plan ends at 50%, but it does not stop there")
    assert "serving 100%: a completed rollout gives the feature to every unit" in finding.message


def test_a_finding_reads_as_severity_field_and_why() -> None:
    (finding,) = lint(parse_plan(plan(1, 50, 100, last_units=100)))
    assert str(finding).startswith("error: stages[2].min_units_per_arm: at 100% every unit")
    assert "control arm stays empty" in finding.message
    assert finding.as_dict() == {
        "severity": "error",
        "field": "stages[2].min_units_per_arm",
        "message": finding.message,
    }
    assert errors([finding, Finding("warning", "alpha", "small")]) == [finding]


@pytest.mark.parametrize("built_in", [DEFAULT_PLAN, *TEMPLATES.values()], ids=lambda p: p.name)
def test_the_built_in_plans_have_no_findings(built_in: Plan) -> None:
    assert lint(built_in) == []


@pytest.mark.parametrize("path", sorted((ROOT / "ops" / "plans").glob("*.yaml")), ids=str)
def test_the_shipped_plans_have_no_findings(path: Path) -> None:
    assert lint(load_plan(path.read_text(encoding="utf-8"))) == []


def test_the_default_plan_written_out_is_the_one_start_uses() -> None:
    written = ROOT / "ops" / "plans" / "default.yaml"
    assert load_plan(written.read_text(encoding="utf-8")) == DEFAULT_PLAN


@pytest.mark.parametrize(
    ("yaml_text", "code", "lines"),
    [
        (
            "stages:\n  - {percent: 5}\n  - {percent: 100}\n",
            EXIT_CONFIG,
            ["invalid: plan 'default' cannot work:", "error: stages[1].min_units_per_arm:"],
        ),
        (
            "stages:\n  - {percent: 5}\n  - {percent: 100, min_units_per_arm: 0}\n"
            "guardrails:\n  - {metric: error_rate, dry_run: true}\n",
            0,
            ["valid plan", "warning: stages[1].percent:", "warning: guardrails[*].dry_run:"],
        ),
        (
            "stages:\n  - {percent: 5}\n  - {percent: 50}\nguardrails: [{metric: error_rate}]\n"
            "min_metric_events: 1000000000\n",
            EXIT_CONFIG,
            ["invalid: plan 'default' cannot work:", "error: min_metric_events:"],
        ),
        (
            "stages:\n  - {percent: 5}\n  - {percent: 50}\nalpha: 1.0e-12\n",
            EXIT_CONFIG,
            ["invalid: plan 'default' cannot work:", "error: alpha:"],
        ),
        (
            "stages:\n  - {percent: 5}\n  - {percent: 50}\nsrm_p_threshold: 1.0e-30\n",
            EXIT_CONFIG,
            ["invalid: plan 'default' cannot work:", "error: srm_p_threshold:"],
        ),
    ],
)
def test_plan_validate_prints_each_finding_with_its_field(
    yaml_text: str,
    code: int,
    lines: list[str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(yaml_text)
    assert main(["plan", "validate", str(path)]) == code
    out = capsys.readouterr().out
    for line in lines:
        assert line in out


def test_plan_validate_json_carries_the_findings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    risky, broken = tmp_path / "risky.yaml", tmp_path / "broken.yaml"
    guarded = "guardrails: [{metric: error_rate}]\n"
    risky.write_text("stages: [{percent: 1}, {percent: 100, min_units_per_arm: 0}]\n" + guarded)
    broken.write_text("stages:\n  - {percent: 1}\n  - {percent: 100}\n")
    assert main(["plan", "validate", "--json", str(risky), str(broken)]) == EXIT_CONFIG
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first["valid"] is True
    assert first["error"] is None
    assert [(f["severity"], f["field"]) for f in first["findings"]] == [
        ("warning", "stages[1].percent")
    ]
    assert second["valid"] is False
    assert "stages[1].min_units_per_arm" in second["error"]
    assert second["findings"][0]["field"] == "stages[1].min_units_per_arm"


def test_the_controller_refuses_to_start_a_plan_that_cannot_work() -> None:
    """A start command's plan goes through this; its error is the rejected decision's reason."""
    never_completes = plan(1, 25, 100, last_units=100)
    with pytest.raises(ConfigError, match=r"cannot work: error: stages\[2\]\.min_units_per_arm"):
        commands.plan(never_completes, backends=frozenset(), now=NOW)
    risky = plan(1, 100)  # warnings only: the operator was told when validating
    assert commands.plan(risky, backends=frozenset(), now=NOW) == parse_plan(risky)


DAILY_9 = "FREQ=DAILY;BYHOUR=9;BYMINUTE=0;BYSECOND=0"
# (what, a window of the plan, the field an error names at NOW, or None when it opens again)
WINDOWS_AT_NOW: list[tuple[str, dict[str, Any], str | None]] = [
    (
        "five days from 2024",
        {"kind": "allow", "rule": "FREQ=DAILY;COUNT=5", "duration": "1h"},
        "rule",
    ),
    (
        "until 2025",
        {"kind": "allow", "rule": f"{DAILY_9};UNTIL=20250101", "duration": "8h"},
        "rule",
    ),
    (
        "a freeze of 2025",
        {
            "kind": "deny",
            "rule": "FREQ=YEARLY;COUNT=1",
            "start": "2025-12-20T00:00:00",
            "duration": "14d",
        },
        "rule",
    ),
    (
        "a one-off of 2025",
        {"kind": "allow", "from": "2025-03-01T09:00:00", "to": "2025-03-02T09:00:00"},
        "to",
    ),
    (
        "a one-off closed a minute ago",
        {"kind": "allow", "from": "2026-11-22T09:00:00Z", "to": "2026-11-22T11:59:00Z"},
        "to",
    ),
    ("every day", {"kind": "allow", "rule": DAILY_9, "duration": "8h"}, None),
    ("until 2027", {"kind": "allow", "rule": f"{DAILY_9};UNTIL=20270101", "duration": "8h"}, None),
    (
        "five days from 2027",
        {
            "kind": "allow",
            "rule": "FREQ=DAILY;COUNT=5",
            "start": "2027-01-04T09:00:00",
            "duration": "1h",
        },
        None,
    ),
    (
        "its last opening still open",
        {
            "kind": "allow",
            "rule": "FREQ=DAILY;COUNT=1",
            "start": "2026-11-22T11:00:00",
            "duration": "2h",
        },
        None,
    ),
    (
        "a one-off open now",
        {"kind": "allow", "from": "2026-11-22T09:00:00Z", "to": "2026-11-22T12:01:00Z"},
        None,
    ),
    (
        "a one-off to come",
        {"kind": "deny", "from": "2026-12-21T00:00:00", "to": "2027-01-04T00:00:00"},
        None,
    ),
]


@pytest.mark.parametrize(
    ("window", "field"), [c[1:] for c in WINDOWS_AT_NOW], ids=[c[0] for c in WINDOWS_AT_NOW]
)
def test_a_window_that_never_opens_again_is_an_error_naming_its_field(
    window: dict[str, Any], field: str | None
) -> None:
    data = plan(25, 100, windows=[{"kind": "allow", "rule": DAILY_9, "duration": "8h"}, window])
    wrong = errors(lint(parse_plan(data), NOW))
    assert [f.field for f in wrong] == ([] if field is None else [f"windows[1].{field}"])
    assert lint(parse_plan(data)) == []  # without a clock, the plan alone is sound
    if field is None:
        assert commands.plan(data, backends=frozenset(), now=NOW) == parse_plan(data)
        return
    assert "never" in wrong[0].message
    with pytest.raises(ConfigError, match=rf"cannot work: error: windows\[1\]\.{field}: "):
        commands.plan(data, backends=frozenset(), now=NOW)


def test_plan_validate_and_start_refuse_a_window_whose_openings_are_over(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "over.yaml"
    window = "{kind: allow, rule: 'FREQ=DAILY;COUNT=5', duration: 1h}"
    path.write_text(
        "stages: [{percent: 5}, {percent: 100, min_units_per_arm: 0}]\n"
        f"guardrails: [{{metric: error_rate}}]\nwindows: [{window}]\n"
    )
    assert main(["plan", "validate", str(path)]) == EXIT_CONFIG
    assert "error: windows[0].rule: its COUNT or UNTIL ends it before" in capsys.readouterr().out
    write_private_key(tmp_path / "ops.key", generate_key()[0])
    monkeypatch.setenv("ROLLOUTCTL_KEY", str(tmp_path / "ops.key"))
    monkeypatch.setenv("ROLLOUTCTL_KEY_ID", "ops")
    monkeypatch.setenv("ROLLOUTCTL_ACTOR", "ana")
    assert main(["start", "f", "--plan", str(path)]) == EXIT_CONFIG
    assert "windows[0].rule" in capsys.readouterr().err


def test_a_plan_guarded_from_prometheus_alone_is_warned_of_unit_floors() -> None:
    total = 'sum(increase(r{f="{{flag}}",v="{{arm}}"}[{{window}}]))'
    sourced = {
        "metric": "error_rate",
        "source": "prometheus",
        "prometheus": {"count": total, "total": total},
    }
    plan = parse_plan(
        {
            "stages": [{"percent": 5}, {"percent": 100, "min_units_per_arm": 0}],
            "guardrails": [sourced],
        }
    )
    found = [f for f in lint(plan) if f.field == "stages[0].min_units_per_arm"]
    assert [f.severity for f in found] == ["warning"]
    assert "counted from exposure events only" in found[0].message
    both = plan.model_copy(
        update={
            "guardrails": [
                *plan.guardrails,
                *parse_plan(
                    {"stages": [{"percent": 100}], "guardrails": [{"metric": "latency_p99"}]}
                ).guardrails,
            ]
        }
    )
    assert not [f for f in lint(both) if "exposure events only" in f.message]


UNTIL_MID_DECEMBER = {"kind": "allow", "rule": f"{DAILY_9};UNTIL=20261215", "duration": "8h"}
UNTIL_FEBRUARY = {"kind": "allow", "rule": f"{DAILY_9};UNTIL=20270201", "duration": "8h"}
WINTER_FREEZE = {"kind": "deny", "from": "2026-11-20T00:00:00", "to": "2027-01-10T00:00:00"}
# (what, the plan's windows, whether they never allow a forward move again from NOW)
WINDOW_SETS_AT_NOW: list[tuple[str, list[dict[str, Any]], bool]] = [
    ("every opening left falls inside a freeze", [UNTIL_MID_DECEMBER, WINTER_FREEZE], True),
    ("some openings left after the freeze", [UNTIL_FEBRUARY, WINTER_FREEZE], False),
    ("a freeze alone: allowed outside it", [WINTER_FREEZE], False),
    ("an allow window and no freeze", [UNTIL_MID_DECEMBER], False),
]


@pytest.mark.parametrize(
    ("windows", "shut"),
    [c[1:] for c in WINDOW_SETS_AT_NOW],
    ids=[c[0] for c in WINDOW_SETS_AT_NOW],
)
def test_windows_that_together_never_open_again_are_an_error(
    windows: list[dict[str, Any]], shut: bool
) -> None:
    # Each window on its own opens again, and the allow window opened outside the
    # freeze in its first years: only taken together, from now, is every opening gone.
    data = plan(25, 100, windows=windows)
    wrong = errors(lint(parse_plan(data), NOW))
    assert [
        (f.field, "no window opens from 2026-11-22 12:00 UTC on" in f.message) for f in wrong
    ] == ([("windows", True)] if shut else [])
    if shut:
        with pytest.raises(ConfigError, match=r"cannot work: error: windows: no window opens"):
            commands.plan(data, backends=frozenset(), now=NOW)
