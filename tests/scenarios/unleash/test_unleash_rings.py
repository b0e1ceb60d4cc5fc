"""A ring plan served by a real Unleash: the real SDK serves the arms the rules and Unleash's
bucketing say, at every stage, and no unit flips back to control as the rings widen.

The real daemon, broker and Redis, a real ``unleash-server`` on PostgreSQL and
the real ``UnleashClient`` refreshing every second. The expected arm of each
context is computed apart: the controller's own rule evaluation for audience
membership, and Unleash's documented ``flexibleRollout`` bucket
(``murmur3("<groupId>:<userId>") % 100 + 1 <= rollout``) for the share of a ring.
"""

from __future__ import annotations

import functools
import random
from typing import Any

import mmh3
import pytest

from controller.core.rollouts.plan import Plan, parse_plan
from controller.core.rules.matching import Audience
from controller.core.rules.targeting import Cohort
from controller.core.rules.text import parse
from controller.dev.unleash import UnleashServer
from tests.scenarios.harness import Scenario
from tests.scenarios.unleash.unleash_kit import App, Person, feature_name, rolling_at, serve_from
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

AUDIENCE = 'country in ["TH", "VN"]'
RINGS = [
    ('plan == "staff"', 100),
    ('app_version >= semver("2.3.0") and plan in ["pro", "free"]', 20),
    (None, 50),
    (None, 100),
]


def ring_plan(feature: str) -> Plan:
    stages = [
        {"percent": p, "min_duration": "1h", "min_units_per_arm": 20}
        | ({"audience": rule} if rule else {})
        for rule, p in RINGS
    ]
    return parse_plan(
        {
            "name": "unleash-rings",
            "audience": AUDIENCE,
            "stages": stages,
            "limits": {"error_rate": 0.05},
            "guardrails": [{"metric": "error_rate"}],
            "alpha": 0.01,
            "backend": {"unleash": {"feature": feature}},
        }
    )


def contexts(count: int = 3000) -> list[dict[str, Any]]:
    """Mixed contexts, some attributes missing (a missing one never widens an audience)."""
    pick = random.Random(26).choice
    out = []
    for i in range(count):
        context: dict[str, Any] = {"userId": f"user-{i}"}
        for name, values in (
            ("country", ["TH", "VN", "US", "th", None]),
            ("plan", ["staff", "pro", "free", None]),
            ("app_version", ["2.2.9", "2.3.0", "2.3.0-rc.1", "2.10.1", None]),
        ):
            value = pick(values)
            if value is not None:
                context[name] = value
        out.append(context)
    return out


def expected(feature: str, stage: int, context: dict[str, Any]) -> bool:
    """In the rollout's audience and, for some ring so far, in it and in its share."""
    if not Audience.of(parse(AUDIENCE)).matches(context):
        return False
    bucket = mmh3.hash(f"{feature}:{context['userId']}".encode(), seed=0, signed=False) % 100 + 1
    for rule, percent in RINGS[: stage + 1]:
        inside = rule is None or Audience.of(parse(rule)).matches(context)
        if inside and bucket <= percent:
            return True
    return False


def cohort(stage: int, context: dict[str, Any]) -> Cohort:
    """Where the context stands at ``stage`` (``core.targeting``), from the rules alone."""
    if not Audience.of(parse(AUDIENCE)).matches(context):
        return Cohort.OUTSIDE
    rings = list(dict.fromkeys(rule for rule, _ in RINGS[: stage + 1]))
    current = RINGS[stage][0]
    earlier = [r for r in rings if r != current]
    if any(r is None or Audience.of(parse(r)).matches(context) for r in earlier):
        return Cohort.CARRIED
    if current is None or Audience.of(parse(current)).matches(context):
        return Cohort.COMPARED
    return Cohort.OUTSIDE


async def test_a_ring_plan_served_by_unleash_gives_the_real_sdk_the_same_arms_at_every_stage(
    scenario: Scenario, unleash_server: UnleashServer, person: Person, app: App
) -> None:
    # Given a daemon serving from Unleash and a ring plan naming a feature
    feature, flag = feature_name(), "checkout.unleash-rings"
    serve_from(scenario, unleash_server)
    scenario.start_daemon()
    await scenario.start(flag, ring_plan(feature))
    people = contexts()
    treated_before: set[str] = set()
    for stage in range(len(RINGS)):
        if stage:  # When the operator promotes the rollout ring by ring
            await scenario.send(scenario.command("promote", flag), flag=flag)
        rollout = await scenario.until(
            functools.partial(rolling_at, scenario, flag, stage), timeout=30, what=f"stage {stage}"
        )
        # Then the real SDK, once refreshed, serves each context the arm the rules say
        await app.serves_version(feature, rollout["version"])

        def agrees(stage: int = stage) -> set[str]:
            served = {c["userId"] for c in people if app.flags.is_enabled(feature, dict(c))}
            want = {c["userId"] for c in people if expected(feature, stage, c)}
            assert served == want, (stage, len(served ^ want), sorted(served ^ want)[:5])
            return served

        treated = await eventually(agrees, timeout=30, what=f"the SDK to serve stage {stage}")
        # And each exposure names the unit's cohort: the current ring's, an earlier one's, none
        for c in people[:300]:
            assert app.cohorts[c["userId"]] == cohort(stage, c), (stage, c)
        # And no unit served treatment at an earlier ring is control now
        assert treated_before <= treated, sorted(treated_before - treated)[:5]
        assert len(treated) > len(treated_before) or stage == 0
        treated_before = treated
    # And the admin API shows one strategy per ring term, all in the feature's group
    now = await person.serving(feature)
    assert now is not None
    assert now["enabled"] is True
    assert now["strategies"] == 4
    # When a person edits one ring's constraint in Unleash
    await person.edit_first_constraint(feature, ["pro"])
    # Then within one sweep the rollout pauses, with an alert naming the change
    alert = await scenario.until(
        lambda: scenario.observed.alert_where(flag=flag, kind="backend_drift"),
        timeout=30,
        what="the drift alert",
    )
    assert "strategies of " + feature + " were changed" in alert["summary"]
    await scenario.until(
        lambda: scenario.observed.decision_where(flag=flag, action="pause:backend_drift"),
        timeout=30,
        what="the pause decision",
    )
