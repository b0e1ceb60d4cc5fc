"""The health-action policy: per trigger, rollback, hold or warn, defaults as before."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from controller.core.common.errors import ConfigError
from controller.core.rollouts import policy
from controller.core.rollouts.plan import Plan, load_plan, parse_plan
from controller.core.rollouts.policy import (
    DEFAULTS,
    TRIGGERS,
    HealthPolicy,
    Trigger,
    action_for,
    both_arms_tripped,
    decide,
)

STAGES = [{"percent": 5}, {"percent": 100}]


def plan(**extra: Any) -> Plan:
    return parse_plan({"stages": STAGES, **extra})


# (what, plan fields, trigger, guardrail index, in a watch, action, entry)
CASES: list[tuple[str, dict[str, Any], Trigger, int | None, bool, str, str]] = [
    # Defaults: what each trigger did before the policy.
    (
        "regression rolls back",
        {"guardrails": [{"metric": "error_rate"}]},
        "guardrail_regression",
        0,
        False,
        "rollback",
        "default",
    ),
    ("SRM pauses", {}, "sample_ratio_mismatch", None, False, "hold", "default"),
    ("no traffic pauses", {}, "no_traffic", None, False, "hold", "default"),
    ("past max_duration holds", {}, "inconclusive", None, False, "hold", "default"),
    ("advisor down alerts", {}, "advisor_unavailable", None, False, "warn", "default"),
    ("drift pauses", {}, "backend_drift", None, False, "hold", "default"),
    ("both arms alerts", {}, "units_in_both_arms", None, False, "warn", "default"),
    # The older plan fields still decide, in the policy's words.
    (
        "a pausing guardrail holds",
        {"guardrails": [{"metric": "error_rate", "action": "pause"}]},
        "guardrail_regression",
        0,
        False,
        "hold",
        "guardrails.0.action",
    ),
    (
        "srm_action rollback",
        {"srm_action": "rollback"},
        "sample_ratio_mismatch",
        None,
        False,
        "rollback",
        "srm_action",
    ),
    (
        "srm_action pause is the default",
        {"srm_action": "pause"},
        "sample_ratio_mismatch",
        None,
        False,
        "hold",
        "default",
    ),
    (
        "a watch that alerts warns",
        {
            "stages": [{"percent": 100}],
            "guardrails": [{"metric": "error_rate"}],
            "watch": {"duration": "1h", "on_regression": "alert"},
        },
        "guardrail_regression",
        0,
        True,
        "warn",
        "watch.on_regression",
    ),
    (
        "a watch's word only in a watch",
        {
            "stages": [{"percent": 100}],
            "guardrails": [{"metric": "error_rate"}],
            "watch": {"duration": "1h", "on_regression": "alert"},
        },
        "guardrail_regression",
        0,
        False,
        "rollback",
        "default",
    ),
    (
        "a pausing guardrail pauses in a watch too",
        {
            "stages": [{"percent": 100}],
            "guardrails": [{"metric": "error_rate", "action": "pause"}],
            "watch": {"duration": "1h", "on_regression": "rollback"},
        },
        "guardrail_regression",
        0,
        True,
        "hold",
        "guardrails.0.action",
    ),
    # The policy's entries.
    (
        "policy: regression warns",
        {
            "guardrails": [{"metric": "error_rate"}],
            "health_policy": {"guardrail_regression": "warn"},
        },
        "guardrail_regression",
        0,
        False,
        "warn",
        "health_policy.guardrail_regression",
    ),
    (
        "a guardrail's default word yields to the policy",
        {
            "guardrails": [{"metric": "error_rate", "action": "rollback"}],
            "health_policy": {"guardrail_regression": "warn"},
        },
        "guardrail_regression",
        0,
        False,
        "warn",
        "health_policy.guardrail_regression",
    ),
    (
        "a pausing guardrail beats the policy",
        {
            "guardrails": [{"metric": "error_rate", "action": "pause"}],
            "health_policy": {"guardrail_regression": "warn"},
        },
        "guardrail_regression",
        0,
        False,
        "hold",
        "guardrails.0.action",
    ),
    (
        "policy: SRM rolls back",
        {"health_policy": {"sample_ratio_mismatch": "rollback"}},
        "sample_ratio_mismatch",
        None,
        False,
        "rollback",
        "health_policy.sample_ratio_mismatch",
    ),
    (
        "the policy beats srm_action",
        {"srm_action": "rollback", "health_policy": {"sample_ratio_mismatch": "warn"}},
        "sample_ratio_mismatch",
        None,
        False,
        "warn",
        "health_policy.sample_ratio_mismatch",
    ),
    (
        "policy: no traffic rolls back",
        {"health_policy": {"no_traffic": "rollback"}},
        "no_traffic",
        None,
        False,
        "rollback",
        "health_policy.no_traffic",
    ),
    (
        "policy: inconclusive holds",
        {"health_policy": {"inconclusive": "hold"}},
        "inconclusive",
        None,
        False,
        "hold",
        "health_policy.inconclusive",
    ),
    (
        "policy: advisor down holds",
        {"health_policy": {"advisor_unavailable": "hold"}},
        "advisor_unavailable",
        None,
        False,
        "hold",
        "health_policy.advisor_unavailable",
    ),
    (
        "policy: drift rolls back",
        {"health_policy": {"backend_drift": "rollback"}},
        "backend_drift",
        None,
        False,
        "rollback",
        "health_policy.backend_drift",
    ),
    (
        "policy: drift warns",
        {"health_policy": {"backend_drift": "warn"}},
        "backend_drift",
        None,
        False,
        "warn",
        "health_policy.backend_drift",
    ),
    (
        "policy: both arms rolls back",
        {"health_policy": {"units_in_both_arms": "rollback"}},
        "units_in_both_arms",
        None,
        False,
        "rollback",
        "health_policy.units_in_both_arms",
    ),
    (
        "an entry for another trigger leaves this one",
        {"health_policy": {"no_traffic": "warn"}},
        "backend_drift",
        None,
        False,
        "hold",
        "default",
    ),
]


@pytest.mark.parametrize(
    ("fields", "trigger", "guardrail", "watching", "action", "entry"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_the_action_and_the_entry_applied(
    fields: dict[str, Any],
    trigger: Trigger,
    guardrail: int | None,
    watching: bool,
    action: str,
    entry: str,
) -> None:
    applied = action_for(
        plan(**fields).health_words, trigger, guardrail=guardrail, watching=watching
    )
    assert (applied.action, applied.entry) == (action, entry)
    assert applied.evidence() == {"trigger": trigger, "action": action, "policy_entry": entry}


@pytest.mark.parametrize("trigger", TRIGGERS)
def test_every_trigger_has_a_default_and_an_entry(trigger: Trigger) -> None:
    assert decide(trigger, None).action == DEFAULTS[trigger]
    for action in ("rollback", "hold", "warn"):
        chosen = decide(trigger, HealthPolicy.model_validate({trigger: action}))
        assert chosen.action == action
        assert chosen.entry == f"health_policy.{trigger}"


@pytest.mark.parametrize(
    ("both", "units", "policy", "tripped"),
    [
        (200, 10_000, None, True),  # 2% against the default 1%
        (1, 10_000, None, False),  # 0.01%
        (100, 10_000, None, False),  # exactly 1% is not past it
        (0, 0, None, False),
        (60, 10_000, {"both_arms_max_share": 0.005}, True),
        (400, 10_000, {"both_arms_max_share": 0.05}, False),
    ],
)
def test_units_in_both_arms(
    both: int, units: int, policy: dict[str, Any] | None, tripped: bool
) -> None:
    chosen = HealthPolicy.model_validate(policy) if policy is not None else None
    assert both_arms_tripped(both, units, chosen) is tripped


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        ({"no_traffic": "promote"}, "no_traffic"),
        ({"inconclusive": "advance"}, "inconclusive"),
        ({"kill_switch": "warn"}, "kill_switch"),
        ({"both_arms_max_share": 0}, "both_arms_max_share"),
        ({"both_arms_max_share": 0.9}, "both_arms_max_share"),
        ({"both_arms_max_share": "nan"}, "both_arms_max_share"),
    ],
)
def test_bad_policies_are_refused_with_the_field_named(policy: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=rf"health_policy\.{field}"):
        parse_plan({"stages": STAGES, "health_policy": policy})


def test_a_plan_with_windows_and_a_policy_reads_from_yaml_and_round_trips() -> None:
    text = """
stages: [{percent: 5}, {percent: 100}]
windows:
  - kind: allow
    name: business-hours
    timezone: Europe/Berlin
    rule: FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9;BYMINUTE=0;BYSECOND=0
    duration: 8h
  - {kind: deny, name: christmas, timezone: Europe/Berlin,
     from: "2026-12-21T00:00:00", to: "2027-01-04T00:00:00"}
health_policy: {no_traffic: warn, inconclusive: hold}
"""
    read = load_plan(text)
    assert read.windows is not None
    assert [w.name for w in read.windows] == ["business-hours", "christmas"]
    assert read.health_policy == HealthPolicy(no_traffic="warn", inconclusive="hold")
    assert Plan.model_validate_json(read.model_dump_json()) == read
    assert Plan.model_validate(read.model_dump(by_alias=True)) == read
    assert read.model_dump(mode="json")["windows"][1]["from"] == "2026-12-21T00:00:00"


def test_windows_and_the_policy_are_optional() -> None:
    bare = plan()
    assert bare.windows is None
    assert bare.health_policy is None
    assert plan(windows=[]).windows == ()


def test_a_bad_window_in_a_plan_is_refused_with_its_place() -> None:
    window = {"kind": "allow", "timezone": "Europe/Nowhere", "rule": "FREQ=DAILY", "duration": "1h"}
    with pytest.raises(ConfigError, match=r"windows\.0\.timezone: .*unknown time zone"):
        parse_plan({"stages": STAGES, "windows": [window]})
    with pytest.raises(ValidationError):
        Plan.model_validate({"stages": STAGES, "windows": [window] * 17})


@pytest.mark.parametrize(
    ("fields", "trigger", "index", "watching", "action", "entry"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_a_stored_plan_applies_the_same_entries(
    fields: dict[str, Any],
    trigger: Trigger,
    index: int | None,
    watching: bool,
    action: str,
    entry: str,
) -> None:
    # A plan is saved and sent in full: every field reads as written after a round trip.
    stored = Plan.model_validate_json(plan(**fields).model_dump_json())
    applied = action_for(stored.health_words, trigger, guardrail=index, watching=watching)
    assert (applied.action, applied.entry) == (action, entry)


def test_the_policy_reads_the_plans_words_not_the_plan_module() -> None:
    # The plan holds a policy, so the policy taking a Plan would tie the two in a circle.
    tree = ast.parse(Path(policy.__file__).read_text(encoding="utf-8"))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "pydantic" in imported  # the walk found the module's imports
    assert "controller.core.rollouts.plan" not in imported
