"""Pipelines: environments in order, once each; plans named or overridden; refusals named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.core.common.errors import ConfigError
from controller.core.release.checks import load_pipeline, parse_pipeline, window_problems
from controller.core.release.environments import Environments
from controller.core.release.pipeline import Pipeline
from controller.core.release.roles import Permission, Role, RoleBook
from tests.unit.core.release.pipelines import (
    ENVIRONMENTS,
    QUICK,
    STANDARD,
    pipeline,
    release,
    steps,
)

ROLES = RoleBook(
    roles=(Role(name="approver", actions=(Permission.APPROVE,), environments=("production",)),)
)
UNLEASH = {"backend": {"unleash": {"feature": "checkout"}}}
UNLEASH_IN_PROD = {"backend": {"unleash": {"feature": "checkout", "environment": "production"}}}
SHUT_ALLOW = {"kind": "allow", "from": "2001-01-01T00:00:00", "to": "2001-01-02T00:00:00"}
LONG_DENY = {"kind": "deny", "from": "2000-12-01T00:00:00", "to": "2001-02-01T00:00:00"}
BERLIN_HOURS = {
    "kind": "allow",
    "timezone": "Europe/Berlin",
    "rule": "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR;BYHOUR=9;BYMINUTE=0;BYSECOND=0",
    "duration": "8h",
}


def test_the_release_pipeline_reads() -> None:
    read = parse_pipeline(release(), environments=ENVIRONMENTS, roles=ROLES)
    assert read.environments == ("dev", "staging", "production")
    assert read.steps[1].soak == timedelta(hours=1)
    assert read.steps[2].approval is not None
    assert read.steps[2].approval.expires_after == timedelta(days=1)


PLANS: dict[str, tuple[dict[str, Any], str, str, list[float], int]] = {
    # case: (changes, environment, plan name, its stages' percents, its guardrails)
    "the pipeline's plan": ({}, "staging", "standard", [5, 100], 1),
    "overridden for dev": ({}, "dev", "standard", [100], 0),
    "a step's own plan": (
        {"steps": steps({}, {}, {"plan": "quick"})}, "production", "quick", [100], 0,
    ),
    "a step's own plan, overridden": (
        {
            "steps": steps({}, {}, {"plan": "quick"}),
            "overrides": {"production": {"guardrails": [{"metric": "latency_p99"}]}},
        },
        "production", "quick", [100], 1,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(PLANS))
def test_each_environment_runs_its_plan(case: str) -> None:
    changes, environment, name, percents, guardrails = PLANS[case]
    read = pipeline(**changes)
    assert read.plan_name(environment) == name
    plan = read.plan_for(environment)
    assert [stage.percent for stage in plan.stages] == percents
    assert len(plan.guardrails) == guardrails


REFUSED: dict[str, tuple[dict[str, Any], str]] = {
    # case: (changes to the release pipeline, the start of the refusal: the field, and why)
    "an unknown environment": (
        {"steps": steps({}, {"environment": "stagin"})},
        "steps.1.environment: unknown environment 'stagin'"
        " (this controller serves dev, staging, production)",
    ),
    "a cycle back to dev": (
        {"steps": [*steps(), {"environment": "dev"}]},
        "steps.3.environment: 'dev' already comes at steps.0; a pipeline visits each"
        " environment once (it cannot loop back)",
    ),
    "an environment twice in a row": (
        {"steps": steps({}, {"environment": "dev"})},
        "steps.1.environment: 'dev' already comes at steps.0",
    ),
    "an override for an environment not in the pipeline": (
        {"overrides": {"staging": {"alpha": 0.01}, "qa": {"alpha": 0.01}}},
        "overrides.qa: environment 'qa' is not in the pipeline (dev, staging, production)",
    ),
    "an override of no plan field": (
        {"overrides": {"dev": {"stagez": []}}},
        "overrides.dev.stagez: not a field of a plan",
    ),
    "an override that breaks the plan": (
        {"overrides": {"dev": {"stages": [{"percent": 50}, {"percent": 10}]}}},
        "overrides.dev.(plan): stage percents must increase, got [50.0, 10.0]",
    ),
    "an override with a bad value": (
        {"overrides": {"dev": {"stages": [{"percent": 101}]}}},
        "overrides.dev.stages.0.percent: Input should be less than or equal to 100",
    ),
    "an unknown plan on a step": (
        {"steps": steps({}, {"plan": "fast"})},
        "steps.1.plan: unknown plan 'fast' (plans: standard, quick)",
    ),
    "an unknown pipeline plan": ({"plan": "fast"}, "plan: unknown plan 'fast'"),
    "a step with no plan at all": (
        {"plan": None},
        "steps.0.plan: no plan; name one of plans, or give the pipeline a plan",
    ),
    "a soak on the first step": (
        {"steps": steps({"soak": "1h"})},
        "steps.0: the first step starts with the pipeline, so it has no soak, approval or windows",
    ),
    "an approval on the first step": (
        {"steps": steps({"approval": {"needs": [{"role": "approver"}]}})},
        "steps.0: the first step starts with the pipeline",
    ),
    "an approval role no key can hold": (
        {"steps": steps({}, {"approval": {"needs": [{"role": "approvers"}]}})},
        "steps.1.approval.needs.0.role: unknown role 'approvers'",
    ),
    "a soak past thirty days": (
        {"steps": steps({}, {"soak": "31d"})},
        "steps.1.soak: Input should be less than or equal to",
    ),
    "a window that never opens again": (
        {"steps": steps({}, {"windows": [SHUT_ALLOW, LONG_DENY]})},
        "steps.1.windows: windows.0: every opening in its first four years falls inside deny",
    ),
    "no steps": ({"steps": []}, "steps: Tuple should have at least 1 item"),
    "a bad pipeline name": ({"name": "check out"}, "name: String should match pattern"),
    "an unknown field": ({"stages": []}, "stages: Extra inputs are not permitted"),
    "a bad environment name": (
        {"steps": steps({}, {"environment": "Staging"})},
        "steps.1.environment: String should match pattern",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_refused_pipelines(case: str) -> None:
    changes, refusal = REFUSED[case]
    with pytest.raises(ConfigError) as caught:
        parse_pipeline(release(**changes), environments=ENVIRONMENTS, roles=ROLES)
    assert str(caught.value).startswith(f"invalid pipeline: {refusal}")


def test_every_unknown_environment_is_named_at_once() -> None:
    one = Environments(names=("production",), default="production")
    with pytest.raises(ConfigError) as caught:
        parse_pipeline(release(), environments=one)
    assert str(caught.value).count("unknown environment") == 2
    assert "steps.0.environment: unknown environment 'dev'" in str(caught.value)
    assert "steps.1.environment: unknown environment 'staging'" in str(caught.value)


BOTH = frozenset({"development", "production"})
UNLEASH_CASES: dict[str, tuple[dict[str, Any], frozenset[str], str | None]] = {
    # case: (changes, the Unleash server's environments, the refusal or None)
    "no step on Unleash": ({}, frozenset(), None),
    "steps on Unleash in environments it lacks": (
        {"plans": {"standard": {**STANDARD, **UNLEASH}, "quick": QUICK}},
        BOTH,
        "steps.0.environment: Unleash has no environment 'dev' (it has development, production);"
        " steps.1.environment: Unleash has no environment 'staging' (it has development,"
        " production)",
    ),
    "only production on Unleash, in its own environment": (
        {
            "plans": {"standard": STANDARD, "quick": {**QUICK, **UNLEASH_IN_PROD}},
            "steps": steps({}, {}, {"plan": "quick"}),
        },
        BOTH,
        None,
    ),
    "dev and staging the controller's, production on Unleash by its own name": (
        {"overrides": {"production": UNLEASH}},
        BOTH,
        None,
    ),
    "staging on open-source Unleash": (
        {"overrides": {"staging": UNLEASH}},
        BOTH,
        "steps.1.environment: Unleash has no environment 'staging' (it has development,"
        " production)",
    ),
    "production on Unleash by an override, which lacks it": (
        {"overrides": {"production": UNLEASH}},
        frozenset({"development"}),
        "steps.2.environment: Unleash has no environment 'production' (it has development)",
    ),
}


@pytest.mark.parametrize("case", sorted(UNLEASH_CASES))
def test_a_step_on_unleash_needs_its_environment_there(case: str) -> None:
    changes, have, refusal = UNLEASH_CASES[case]
    data = release(**changes)
    if refusal is None:
        assert parse_pipeline(data, environments=ENVIRONMENTS, unleash_environments=have)
        return
    with pytest.raises(ConfigError) as caught:
        parse_pipeline(data, environments=ENVIRONMENTS, unleash_environments=have)
    assert str(caught.value) == f"invalid pipeline: {refusal}"


def test_step_windows_reuse_the_release_windows() -> None:
    read = pipeline(steps=steps({}, {}, {"windows": [BERLIN_HOURS]}))
    assert read.steps[2].windows[0].timezone == "Europe/Berlin"


NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
FIVE_DAYS_OF_2024 = {"kind": "allow", "rule": "FREQ=DAILY;COUNT=5", "duration": "1h"}
PAST_UNTIL = {"kind": "allow", "rule": "FREQ=DAILY;UNTIL=20250101", "duration": "1h"}
PAST_ONE_OFF = {"kind": "allow", "from": "2025-03-01T09:00:00", "to": "2025-03-02T09:00:00"}
# (what, production's windows, the refusal at NOW or None)
STEP_WINDOWS: list[tuple[str, list[dict[str, Any]], str | None]] = [
    ("COUNT=5 from the default start", [FIVE_DAYS_OF_2024],
     "steps.2.windows[0].rule: its COUNT or UNTIL ends it before 2026-11-22 12:00 UTC"),
    ("a past UNTIL", [PAST_UNTIL],
     "steps.2.windows[0].rule: its COUNT or UNTIL ends it before 2026-11-22 12:00 UTC"),
    ("a past one-off allow", [PAST_ONE_OFF],
     "steps.2.windows[0].to: this one-off window closed before 2026-11-22 12:00 UTC"),
    ("weekday hours", [BERLIN_HOURS], None),
    ("none", [], None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("windows", "refusal"), [c[1:] for c in STEP_WINDOWS], ids=[c[0] for c in STEP_WINDOWS]
)
def test_a_step_whose_windows_never_open_again_is_named(
    windows: list[dict[str, Any]], refusal: str | None
) -> None:
    read = pipeline(steps=steps({}, {}, {"windows": windows}))
    found = window_problems(read, NOW)
    assert len(found) == (0 if refusal is None else 1)
    if refusal is not None:
        assert found[0].startswith(refusal)
        assert "never opens again" in found[0]


def test_a_pipeline_reads_from_yaml() -> None:
    text = """
name: checkout-release
plans:
  standard:
    stages: [{percent: 5, min_duration: 1h}, {percent: 100, min_units_per_arm: 0}]
plan: standard
steps:
  - environment: dev
  - environment: production
    soak: 2h
    approval: {needs: [{role: approver, count: 2}]}
"""
    read = load_pipeline(text, environments=ENVIRONMENTS, roles=ROLES)
    assert read.environments == ("dev", "production")
    assert read.steps[1].soak == timedelta(hours=2)


EXAMPLES = sorted((Path(__file__).resolve().parents[4] / "examples" / "pipelines").glob("*.yaml"))


SERVED = Environments(names=("dev", "staging", "development", "production"), default="production")
"""The environments of the example pipelines: their own, and Unleash's open-source two."""


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.name)
def test_the_example_pipelines_read(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    read = load_pipeline(text, environments=SERVED, roles=ROLES, name=path.name)
    data = read.model_dump(mode="json", exclude_defaults=True)
    assert parse_pipeline(data, environments=SERVED, unleash_environments=BOTH) == read
    assert read.environments in {("dev", "staging", "production"), ("development", "production")}


def test_there_are_example_pipelines() -> None:
    assert [path.name for path in EXAMPLES] == ["checkout-release.yaml", "unleash-release.yaml"]


def test_a_step_served_by_unleash_runs_in_the_unleash_environment_of_its_name() -> None:
    served = {
        "stages": [{"percent": 100, "min_units_per_arm": 0}],
        "backend": {"unleash": {"feature": "checkout"}},
    }
    named = {**served, "backend": {"unleash": {"feature": "checkout", "environment": "production"}}}
    pipeline = Pipeline.model_validate(
        {
            "name": "unleash",
            "plans": {"served": served, "named": named},
            "steps": [
                {"environment": "development", "plan": "served"},
                {"environment": "production", "plan": "served"},
                {"environment": "staging", "plan": "named"},
            ],
        }
    )
    found = [pipeline.plan_for(e).unleash for e in pipeline.environments]
    assert [t.environment if t else None for t in found] == [
        "development",
        "production",
        "production",
    ]
    assert {t.feature if t else None for t in found} == {"checkout"}
